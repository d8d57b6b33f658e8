//! `NetboxClient`: generic REST calls on any NetBox endpoint (VMs, tags, platforms, roles,
//! devices, clusters, custom fields, journal entries): status, paginated listing with `fields=`
//! and parallel pages, get, create, patch and delete, single and bulk.
//!
//! Endpoints are named by their path under `/api/`, e.g. `virtualization/virtual-machines`.
//! Objects travel as raw JSON: the phases decide what they mean. A listing can also be decoded
//! straight into a typed row ([`NetboxClient::list_rows`]): a 100k-VM snapshot held as JSON maps
//! took ~10 KB per row and most of the phase's CPU.

use std::sync::{Arc, OnceLock};

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode, Url};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::error::{NetboxError, from_response};
use super::row_order::RowOrder;
use super::version::{NetboxStatus, TokenKind};
use crate::clients::http::{
    HttpClient, HttpSettings, RawResponse, Request, RequestCounters, RetryPolicy, Secret,
};
use crate::config::{NetboxConfig, Timeouts};

/// A NetBox object as JSON.
pub type Object = Map<String, Value>;

/// Rows per page: NetBox's `MAX_PAGE_SIZE` default; larger values are capped silently.
pub const PAGE_SIZE: usize = 1000;
/// Pages fetched at once once the count is known. Small: NetBox is CPU-bound on Python and
/// gains little from concurrency (netbox-live.md §2.5), but 2–4 pages overlap network and JSON
/// decoding with the server's work.
pub const PAGE_PARALLELISM: usize = 4;
/// Pages of one listing started and not yet converted, at most. Why: against a fast server the
/// fetches outrun the decoding, and when the listing's task is not polled for a while (the
/// snapshot's listings and the Proxmox read share one task) decoded pages outran their
/// conversion: every fetched body (~1.6 MB per 1000 VMs) or decoded page waited in memory, ~55
/// MB of a 100k-VM rerun with children. Twice the fetches in flight keeps the decoder fed.
const PAGES_UNCONSUMED: usize = 2 * PAGE_PARALLELISM;

/// Most rows one listing may have. Why: the page offsets are planned from the server's `count`
/// and a broken or hostile server could claim 2^64 rows (or keep sending `next` forever); ten
/// million VMs is far beyond any NetBox, so past it the answer is refused, not followed.
pub const MAX_LIST_ROWS: usize = 10_000_000;

/// Retry 429, 500 (except `RequestDataTooBig`, which the same body will hit again), 502–504.
fn netbox_retryable(status: StatusCode, _: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    match status.as_u16() {
        429 | 502..=504 => true,
        500 => !String::from_utf8_lossy(body).contains("RequestDataTooBig"),
        _ => false,
    }
}

/// A 500 whose body is NetBox's report of a PostgreSQL deadlock (`{"error": "deadlock
/// detected ...", "exception": "OperationalError"}`): PostgreSQL aborted the request's whole
/// transaction (every NetBox write request is one), so nothing was written and even a POST may
/// be sent again. Concurrent writes (`sync.write_concurrency`) can meet one; see dispatch's lock
/// order.
fn netbox_rolled_back(status: StatusCode, _: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    if status != StatusCode::INTERNAL_SERVER_ERROR {
        return false;
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let error = body.get("error").and_then(Value::as_str).unwrap_or("");
    let exception = body.get("exception").and_then(Value::as_str).unwrap_or("");
    error.trim_start().starts_with("deadlock detected") || exception == "DeadlockDetected"
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Total matching rows (`null` in cursor mode).
    pub count: Option<u64>,
    /// Whether NetBox says there is a next page.
    pub has_next: bool,
    /// The rows.
    pub results: Vec<Object>,
}

/// A row type a listing decodes into ([`NetboxClient::list_rows`]); its `id` orders the rows
/// and finds the ones a moving listing repeats.
pub trait ListRow: DeserializeOwned + Send + 'static {
    /// The row's NetBox id, when it has one.
    fn row_id(&self) -> Option<u64>;
}

impl ListRow for Object {
    fn row_id(&self) -> Option<u64> {
        self.get("id").and_then(Value::as_u64)
    }
}

/// One row of a typed listing: decoded, or an object that did not decode as `T` (with its id
/// when it has one, and why). One such row never fails its page.
#[derive(Debug, Clone)]
pub enum Listed<T> {
    Row(T),
    Unreadable { id: Option<u64>, error: String },
}

impl<T: ListRow> Listed<T> {
    pub(crate) fn id(&self) -> Option<u64> {
        match self {
            Listed::Row(row) => row.row_id(),
            Listed::Unreadable { id, .. } => *id,
        }
    }
}

/// A listing page as NetBox sends it, decoded in one pass (the fast path of [`decode_page`]).
#[derive(serde::Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct WirePage<T> {
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    next: Option<IgnoredAny>,
    results: Vec<T>,
}

/// One decoded page of a typed listing.
struct TypedPage<T> {
    count: Option<u64>,
    has_next: bool,
    results: Vec<Listed<T>>,
}

/// Decodes a listing page. Fast path: the text straight into `T` rows. When that fails (a row
/// `T` does not accept, or a malformed page), the page is decoded again as JSON values, which
/// tells a malformed page (an error, as before) from single rows `T` refuses (kept as
/// [`Listed::Unreadable`]); the fallback is the slow path only for such pages.
fn decode_page<T: ListRow>(path: &str, resp: &RawResponse) -> Result<TypedPage<T>, NetboxError> {
    if let Ok(page) = serde_json::from_slice::<WirePage<T>>(&resp.body) {
        return Ok(TypedPage {
            count: page.count,
            has_next: page.next.is_some(),
            results: page.results.into_iter().map(Listed::Row).collect(),
        });
    }
    let page = NetboxClient::value_page(path, resp)?;
    let results = page
        .results
        .into_iter()
        .map(|row| {
            let id = row.row_id();
            match serde_json::from_value::<T>(Value::Object(row)) {
                Ok(row) => Listed::Row(row),
                Err(e) => Listed::Unreadable {
                    id,
                    error: e.to_string(),
                },
            }
        })
        .collect();
    Ok(TypedPage {
        count: page.count,
        has_next: page.has_next,
        results,
    })
}

/// Pages at most this large are decoded on the calling task: moving them to the blocking pool
/// costs more than decoding them (a thread hand-off each way, tens of microseconds).
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Large pages decoded at once, over every listing of the process: one per core. Why: decoding
/// is CPU-bound, so more at once is no faster, but each one in the blocking pool is a thread
/// (the snapshot's seven listings had 200+ threads at once), and each thread holds its own
/// allocator cache of the rows it decoded: ~100 MiB of a 100k-VM snapshot with children.
static DECODE_SLOTS: std::sync::LazyLock<Semaphore> = std::sync::LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
});

/// [`decode_page`] on tokio's blocking pool for a large page. Why: a 1000-VM page is ~1 MB
/// and ~10 ms of decoding; on a runtime worker that stalls every other task's I/O on that
/// thread (the other pages in flight, the Proxmox reads running beside the snapshot), so
/// fewer requests stay in flight.
async fn decode_off_runtime<T: ListRow>(
    path: String,
    resp: RawResponse,
) -> Result<TypedPage<T>, NetboxError> {
    if resp.body.len() <= INLINE_DECODE_BYTES {
        return decode_page(&path, &resp);
    }
    let _slot = DECODE_SLOTS
        .acquire()
        .await
        .expect("the decode slots are never closed");
    tokio::task::spawn_blocking(move || decode_page(&path, &resp))
        .await
        .map_err(|e| NetboxError::Setup {
            message: format!("page decoding task failed: {e}"),
        })?
}

/// A NetBox instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetboxClient {
    http: HttpClient,
    token_kind: TokenKind,
    status: Arc<OnceLock<NetboxStatus>>,
}

/// The API root: `https://nb.example.com` → `https://nb.example.com/` (paths add `api/…`);
/// a URL given with `/api` keeps the prefix before it.
fn root_url(url: &Url) -> Url {
    let mut root = url.clone();
    let path = root.path().trim_end_matches('/');
    let path = path.strip_suffix("/api").unwrap_or(path).to_string();
    root.set_path(&format!("{path}/"));
    root.set_query(None);
    root
}

/// `virtualization/virtual-machines` (or `/api/…/`) → `api/virtualization/virtual-machines/`.
pub fn endpoint_path(endpoint: &str) -> String {
    let trimmed = endpoint.trim_matches('/');
    let trimmed = trimmed.strip_prefix("api/").unwrap_or(trimmed);
    format!("api/{trimmed}/")
}

fn fields_param(fields: &[&str]) -> Option<(String, String)> {
    (!fields.is_empty()).then(|| ("fields".to_string(), fields.join(",")))
}

/// `fields=` of a write. NetBox 4.x applies `fields` to the serializer of a POST or PATCH too:
/// a body key not listed is silently dropped (a PATCH then changes nothing, a POST fails with
/// "This field cannot be blank"). So every key of the bodies is listed as well.
fn write_fields_param(fields: &[&str], bodies: &[Value]) -> Option<(String, String)> {
    if fields.is_empty() {
        return None;
    }
    let mut all: Vec<&str> = fields.to_vec();
    for key in bodies
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|o| o.keys())
    {
        if !all.contains(&key.as_str()) {
            all.push(key);
        }
    }
    fields_param(&all)
}

impl NetboxClient {
    /// Builds the client for the configured NetBox, reading its token.
    pub fn new(
        config: &NetboxConfig,
        timeouts: &Timeouts,
        counters: Arc<RequestCounters>,
    ) -> Result<Self, NetboxError> {
        let token = config.token.resolve().map_err(|e| NetboxError::Setup {
            message: e.to_string(),
        })?;
        Self::with_token(config, &token, timeouts, counters)
    }

    /// Builds the client with a token already read. v1 or v2 is told from the token's form.
    pub fn with_token(
        config: &NetboxConfig,
        token: &Secret,
        timeouts: &Timeouts,
        counters: Arc<RequestCounters>,
    ) -> Result<Self, NetboxError> {
        let token_kind = TokenKind::detect(token);
        let auth = HeaderValue::from_str(&token_kind.header_value(token)).map_err(|_| {
            NetboxError::Setup {
                message: format!(
                    "the token from {} is not a valid header value",
                    config.token.describe()
                ),
            }
        })?;
        let mut settings = HttpSettings::new("netbox", root_url(&config.url), config.tls.clone());
        settings.connect_timeout = timeouts.connect;
        settings.request_timeout = timeouts.request;
        settings.retry = RetryPolicy {
            budget: timeouts.retry_budget,
            retryable_status: netbox_retryable,
            rolled_back: netbox_rolled_back,
            ..RetryPolicy::default()
        };
        settings.counters = counters;
        Ok(Self {
            http: HttpClient::new(settings, Some(auth))?,
            token_kind,
            status: Arc::new(OnceLock::new()),
        })
    }

    /// v1 or v2.
    pub fn token_kind(&self) -> TokenKind {
        self.token_kind
    }

    /// The underlying HTTP client (counters, base URL).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The status read by the first [`NetboxClient::status`] call, if any.
    pub fn cached_status(&self) -> Option<&NetboxStatus> {
        self.status.get()
    }

    async fn send(&self, req: Request) -> Result<RawResponse, NetboxError> {
        let resp = self.http.send(&req).await?;
        if !resp.status.is_success() {
            return Err(from_response(&req.method, &req.path, &resp));
        }
        Ok(resp)
    }

    fn decode(method: &Method, path: &str, resp: &RawResponse) -> Result<Value, NetboxError> {
        serde_json::from_slice(&resp.body).map_err(|e| NetboxError::Decode {
            method: method.clone(),
            path: path.to_string(),
            message: format!("not JSON ({e}): {}", resp.body_excerpt(200)),
        })
    }

    fn expect_object(method: &Method, path: &str, value: Value) -> Result<Object, NetboxError> {
        match value {
            Value::Object(map) => Ok(map),
            other => Err(NetboxError::Decode {
                method: method.clone(),
                path: path.to_string(),
                message: format!("expected an object, got {other}"),
            }),
        }
    }

    fn expect_list(
        method: &Method,
        path: &str,
        value: Value,
        sent: usize,
    ) -> Result<Vec<Object>, NetboxError> {
        let Value::Array(items) = value else {
            return Err(NetboxError::Decode {
                method: method.clone(),
                path: path.to_string(),
                message: "expected a list for a bulk request".into(),
            });
        };
        let objects: Vec<Object> = items
            .into_iter()
            .map(|v| Self::expect_object(method, path, v))
            .collect::<Result<_, _>>()?;
        if objects.len() != sent && *method == Method::POST {
            return Err(NetboxError::Decode {
                method: method.clone(),
                path: path.to_string(),
                message: format!("{sent} objects sent, {} returned", objects.len()),
            });
        }
        Ok(objects)
    }

    /// `GET /api/status/`: version and capabilities (cached for the client's life).
    pub async fn status(&self) -> Result<NetboxStatus, NetboxError> {
        let path = "api/status/";
        let resp = self.send(Request::new(Method::GET, path)).await?;
        let value = Self::decode(&Method::GET, path, &resp)?;
        let status = NetboxStatus::from_value(value).map_err(|message| NetboxError::Decode {
            method: Method::GET,
            path: path.into(),
            message,
        })?;
        let _ = self.status.set(status.clone());
        Ok(status)
    }

    /// One page: `filters` as given (repeat a key for OR), `fields=` trimming, `ordering=id`
    /// unless the filters order otherwise.
    pub async fn list_page(
        &self,
        endpoint: &str,
        filters: &[(String, String)],
        fields: &[&str],
        limit: usize,
        offset: usize,
    ) -> Result<Page, NetboxError> {
        let (path, resp) = self
            .fetch_page(endpoint, filters, fields, limit, offset)
            .await?;
        Self::value_page(&path, &resp)
    }

    /// The request of one listing page, undecoded (decoding is left to the caller, outside the
    /// page concurrency bound: it is local CPU, not load on NetBox).
    async fn fetch_page(
        &self,
        endpoint: &str,
        filters: &[(String, String)],
        fields: &[&str],
        limit: usize,
        offset: usize,
    ) -> Result<(String, RawResponse), NetboxError> {
        let path = endpoint_path(endpoint);
        let mut query: Vec<(String, String)> = filters.to_vec();
        if !filters.iter().any(|(k, _)| k == "ordering") {
            // Offset paging over the default `name` order skips or repeats rows during writes.
            query.push(("ordering".into(), "id".into()));
        }
        query.extend(fields_param(fields));
        // ≤4.6 computes config_context for every VM row even with `fields=`; 4.7 ignores this.
        query.push(("exclude".into(), "config_context".into()));
        query.push(("limit".into(), limit.to_string()));
        query.push(("offset".into(), offset.to_string()));
        let resp = self
            .send(Request::new(Method::GET, path.clone()).query(query))
            .await?;
        Ok((path, resp))
    }

    /// A listing page as JSON objects.
    fn value_page(path: &str, resp: &RawResponse) -> Result<Page, NetboxError> {
        let value = Self::decode(&Method::GET, path, resp)?;
        let mut map = Self::expect_object(&Method::GET, path, value)?;
        let results = match map.remove("results") {
            Some(Value::Array(rows)) => rows
                .into_iter()
                .map(|row| Self::expect_object(&Method::GET, path, row))
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(NetboxError::Decode {
                    method: Method::GET,
                    path: path.to_string(),
                    message: "a listing without `results`".into(),
                });
            }
        };
        Ok(Page {
            count: map.get("count").and_then(Value::as_u64),
            has_next: map.get("next").is_some_and(|n| !n.is_null()),
            results,
        })
    }

    async fn typed_page<T: ListRow>(
        &self,
        endpoint: &str,
        filters: &[(String, String)],
        fields: &[&str],
        limit: usize,
        offset: usize,
    ) -> Result<TypedPage<T>, NetboxError> {
        let (path, resp) = self
            .fetch_page(endpoint, filters, fields, limit, offset)
            .await?;
        decode_off_runtime(path, resp).await
    }

    /// Every row matching `filters`, trimmed to `fields` (`id` is always added), in pages of
    /// [`PAGE_SIZE`]; once the first page gives the count, the remaining pages are fetched
    /// [`PAGE_PARALLELISM`] at a time. Rows are returned in id order without duplicates.
    ///
    /// NetBox ignores unknown filters: check a custom field exists
    /// ([`NetboxClient::custom_field_exists`]) before trusting a `cf_…` filter.
    pub async fn list_all(
        &self,
        endpoint: &str,
        filters: &[(String, String)],
        fields: &[&str],
    ) -> Result<Vec<Object>, NetboxError> {
        self.list_rows::<Object>(endpoint, filters, fields)
            .await?
            .into_iter()
            .map(|row| match row {
                Listed::Row(object) => Ok(object),
                // Unreachable: every JSON object is an `Object`; kept total all the same.
                Listed::Unreadable { error, .. } => Err(NetboxError::Decode {
                    method: Method::GET,
                    path: endpoint.to_string(),
                    message: error,
                }),
            })
            .collect()
    }

    /// [`NetboxClient::list_all`] decoding each row straight into `T`; a row `T` refuses is
    /// returned as [`Listed::Unreadable`] (the caller decides), a malformed page is an error.
    pub async fn list_rows<T: ListRow>(
        &self,
        endpoint: &str,
        filters: &[(String, String)],
        fields: &[&str],
    ) -> Result<Vec<Listed<T>>, NetboxError> {
        self.list_rows_into(endpoint, filters, fields, Some).await
    }

    /// [`NetboxClient::list_rows`], each row turned by `convert` (`None`: left out) as its page
    /// is consumed. Why: a list of every row beside the list of what they become was ~45 MB
    /// of a 100k-VM snapshot, at the run's memory peak.
    pub async fn list_rows_into<T: ListRow, U>(
        &self,
        endpoint: &str,
        filters: &[(String, String)],
        fields: &[&str],
        mut convert: impl FnMut(Listed<T>) -> Option<U> + Send,
    ) -> Result<Vec<U>, NetboxError> {
        let mut fields: Vec<&str> = fields.to_vec();
        if !fields.is_empty() && !fields.contains(&"id") {
            fields.push("id");
        }
        let first: TypedPage<T> = self
            .typed_page(endpoint, filters, &fields, PAGE_SIZE, 0)
            .await?;
        // A server with a smaller MAX_PAGE_SIZE caps `limit`: page by what it actually returns.
        let page_size = first.results.len();
        let expected = first
            .count
            .map_or(page_size, |c| c.min(MAX_LIST_ROWS as u64) as usize);
        let mut rows = RowOrder::new(page_size, expected, &mut convert);
        let mut has_next = first.has_next;
        let count = first.count;
        rows.push(0, first.results);
        let mut next_offset = page_size;
        if has_next && page_size > 0 {
            let too_many = |rows: u64| NetboxError::Decode {
                method: Method::GET,
                path: endpoint.to_string(),
                message: format!(
                    "the listing claims {rows} or more rows, over the {MAX_LIST_ROWS} this tool reads"
                ),
            };
            if let Some(count) = count {
                if count > MAX_LIST_ROWS as u64 {
                    return Err(too_many(count));
                }
                let offsets: Vec<usize> = (page_size..count as usize).step_by(page_size).collect();
                let semaphore = Arc::new(Semaphore::new(PAGE_PARALLELISM));
                let mut tasks = JoinSet::new();
                let filters: Arc<Vec<(String, String)>> = Arc::new(filters.to_vec());
                let fields: Arc<Vec<String>> =
                    Arc::new(fields.iter().map(|f| f.to_string()).collect());
                let spawn_page = |tasks: &mut JoinSet<_>, offset: usize| {
                    let client = self.clone();
                    let endpoint = endpoint.to_string();
                    let filters = filters.clone();
                    let fields = fields.clone();
                    let semaphore = semaphore.clone();
                    tasks.spawn(async move {
                        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                        let fetched = {
                            let _permit = semaphore
                                .acquire_owned()
                                .await
                                .expect("semaphore is never closed");
                            client
                                .fetch_page(&endpoint, &filters, &fields, page_size, offset)
                                .await
                        };
                        // Decoded after the permit is released (the next page's request
                        // overlaps this page's decoding) and off the runtime threads.
                        let page = match fetched {
                            Ok((path, resp)) => decode_off_runtime::<T>(path, resp).await,
                            Err(e) => Err(e),
                        };
                        (offset, page)
                    });
                };
                // Pages are started in offset order, and only while fewer than
                // `PAGES_UNCONSUMED` are started and not yet converted, so the next page to
                // convert is always among them (no wait on a page that cannot start).
                let mut pending = offsets.iter().copied();
                let mut started = 0usize;
                let mut converted = 0usize;
                loop {
                    while started - converted < PAGES_UNCONSUMED {
                        let Some(offset) = pending.next() else { break };
                        spawn_page(&mut tasks, offset);
                        started += 1;
                    }
                    let Some(joined) = tasks.join_next().await else {
                        break;
                    };
                    let (offset, page) = joined.map_err(|e| NetboxError::Setup {
                        message: format!("page task failed: {e}"),
                    })?;
                    let page = page?;
                    if offset == *offsets.last().expect("at least one offset") {
                        has_next = page.has_next;
                    }
                    // Converted now when the pages before it are in, while later pages are
                    // still on the wire.
                    rows.push(offset, page.results);
                    converted = rows.pages_taken() - 1;
                }
                next_offset = offsets.last().map_or(page_size, |o| o + page_size);
            }
            // Rows added while reading (or no count): follow on sequentially. A page of rows all
            // seen before means the listing moved under us (or the server repeats itself): the
            // read is incomplete, which is an error, never a shorter list.
            let mut ids: std::collections::HashSet<u64> = if has_next {
                rows.seen_ids().collect()
            } else {
                Default::default()
            };
            while has_next {
                if next_offset >= MAX_LIST_ROWS {
                    return Err(too_many(next_offset as u64));
                }
                let page: TypedPage<T> = self
                    .typed_page(endpoint, filters, &fields, page_size, next_offset)
                    .await?;
                let fresh = page
                    .results
                    .iter()
                    .filter_map(Listed::id)
                    .filter(|id| ids.insert(*id));
                if !page.results.is_empty() && fresh.count() == 0 {
                    return Err(NetboxError::Decode {
                        method: Method::GET,
                        path: endpoint.to_string(),
                        message: format!(
                            "the page at offset {next_offset} only repeats rows already read; the listing changed while it was read or the server repeats itself"
                        ),
                    });
                }
                has_next = page.has_next && !page.results.is_empty();
                rows.push(next_offset, page.results);
                next_offset += page_size;
            }
        }
        Ok(rows.finish())
    }

    /// `GET /api/{endpoint}/{id}/`; `None` when it does not exist.
    pub async fn get(
        &self,
        endpoint: &str,
        id: u64,
        fields: &[&str],
    ) -> Result<Option<Object>, NetboxError> {
        let path = format!("{}{id}/", endpoint_path(endpoint));
        let req = Request::new(Method::GET, path.clone()).query(fields_param(fields));
        match self.send(req).await {
            Ok(resp) => {
                let value = Self::decode(&Method::GET, &path, &resp)?;
                Ok(Some(Self::expect_object(&Method::GET, &path, value)?))
            }
            Err(NetboxError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST one object. Never retried after it may have reached NetBox: on an ambiguous
    /// failure ([`NetboxError::is_ambiguous`]) look the object up before trying again.
    pub async fn create(
        &self,
        endpoint: &str,
        body: &Value,
        fields: &[&str],
    ) -> Result<Object, NetboxError> {
        let path = endpoint_path(endpoint);
        let req = Request::new(Method::POST, path.clone())
            .query(write_fields_param(fields, std::slice::from_ref(body)))
            .json(body);
        let resp = self.send(req).await?;
        let value = Self::decode(&Method::POST, &path, &resp)?;
        Self::expect_object(&Method::POST, &path, value)
    }

    /// POST a list: one all-or-nothing transaction; objects return in request order.
    pub async fn create_bulk(
        &self,
        endpoint: &str,
        items: &[Value],
        fields: &[&str],
    ) -> Result<Vec<Object>, NetboxError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let path = endpoint_path(endpoint);
        let req = Request::new(Method::POST, path.clone())
            .query(write_fields_param(fields, items))
            .json(&Value::Array(items.to_vec()));
        let resp = self.send(req).await?;
        let value = Self::decode(&Method::POST, &path, &resp)?;
        Self::expect_list(&Method::POST, &path, value, items.len())
    }

    /// PATCH one object with only the given fields.
    pub async fn patch(
        &self,
        endpoint: &str,
        id: u64,
        body: &Value,
        fields: &[&str],
    ) -> Result<Object, NetboxError> {
        let path = format!("{}{id}/", endpoint_path(endpoint));
        let req = Request::new(Method::PATCH, path.clone())
            .query(write_fields_param(fields, std::slice::from_ref(body)))
            .json(body);
        let resp = self.send(req).await?;
        let value = Self::decode(&Method::PATCH, &path, &resp)?;
        Self::expect_object(&Method::PATCH, &path, value)
    }

    /// PATCH a list of `{"id": …, field: value}`. All or nothing; NetBox ≤4.6 skips unknown ids
    /// silently, so a short answer is [`NetboxError::Incomplete`].
    pub async fn patch_bulk(
        &self,
        endpoint: &str,
        items: &[Value],
        fields: &[&str],
    ) -> Result<Vec<Object>, NetboxError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let path = endpoint_path(endpoint);
        let mut fields = fields.to_vec();
        if !fields.is_empty() && !fields.contains(&"id") {
            fields.push("id");
        }
        let req = Request::new(Method::PATCH, path.clone())
            .query(write_fields_param(&fields, items))
            .json(&Value::Array(items.to_vec()));
        let resp = self.send(req).await?;
        let value = Self::decode(&Method::PATCH, &path, &resp)?;
        let objects = Self::expect_list(&Method::PATCH, &path, value, items.len())?;
        if objects.len() != items.len() {
            let returned: std::collections::HashSet<u64> = objects
                .iter()
                .filter_map(|o| o.get("id").and_then(Value::as_u64))
                .collect();
            let missing = items
                .iter()
                .filter_map(|i| i.get("id").and_then(Value::as_u64))
                .filter(|id| !returned.contains(id))
                .collect();
            return Err(NetboxError::Incomplete {
                method: Method::PATCH,
                path,
                sent: items.len(),
                returned: objects.len(),
                missing,
            });
        }
        Ok(objects)
    }

    /// DELETE one object. `Ok(false)` when it was already gone (so a retried delete whose first
    /// answer was lost is not an error).
    pub async fn delete(&self, endpoint: &str, id: u64) -> Result<bool, NetboxError> {
        let path = format!("{}{id}/", endpoint_path(endpoint));
        match self.send(Request::new(Method::DELETE, path)).await {
            Ok(_) => Ok(true),
            Err(NetboxError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// DELETE a list of ids in one transaction.
    pub async fn delete_bulk(&self, endpoint: &str, ids: &[u64]) -> Result<(), NetboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let path = endpoint_path(endpoint);
        let body = Value::Array(ids.iter().map(|id| json!({ "id": id })).collect());
        self.send(Request::new(Method::DELETE, path).json(&body))
            .await?;
        Ok(())
    }

    /// The custom field named exactly `name`, if it exists. The `name` filter's answer is
    /// checked row by row: an ignored filter would return every custom field.
    pub async fn custom_field(&self, name: &str) -> Result<Option<Object>, NetboxError> {
        let rows = self
            .list_all(
                "extras/custom-fields",
                &[("name".to_string(), name.to_string())],
                &["id", "name", "type", "object_types", "filter_logic"],
            )
            .await?;
        Ok(rows
            .into_iter()
            .find(|row| row.get("name").and_then(Value::as_str) == Some(name)))
    }

    /// True when a custom field named exactly `name` exists.
    pub async fn custom_field_exists(&self, name: &str) -> Result<bool, NetboxError> {
        Ok(self.custom_field(name).await?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(
            endpoint_path("virtualization/virtual-machines"),
            "api/virtualization/virtual-machines/"
        );
        assert_eq!(endpoint_path("/api/extras/tags/"), "api/extras/tags/");
        let u = |s: &str| root_url(&Url::parse(s).unwrap()).to_string();
        assert_eq!(u("https://nb.example.com"), "https://nb.example.com/");
        assert_eq!(u("https://nb.example.com/api/"), "https://nb.example.com/");
        assert_eq!(
            u("https://example.com/netbox"),
            "https://example.com/netbox/"
        );
    }

    fn response(body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::OK,
            headers: reqwest::header::HeaderMap::new(),
            reason: None,
            body: body.as_bytes().to_vec(),
            attempts: 1,
            elapsed: std::time::Duration::ZERO,
        }
    }

    /// Rows with an `id` that must be a number (to tell a refused row from a good one).
    #[derive(Debug, serde::Deserialize)]
    struct Numbered {
        id: u64,
    }

    impl ListRow for Numbered {
        fn row_id(&self) -> Option<u64> {
            Some(self.id)
        }
    }

    #[test]
    fn typed_pages_keep_good_rows_and_refuse_malformed_pages() {
        let ok = decode_page::<Numbered>(
            "p",
            &response(
                r#"{"count": 2, "next": "http://x/?offset=2", "results": [{"id": 1}, {"id": 2}]}"#,
            ),
        )
        .unwrap();
        assert_eq!(
            (ok.count, ok.has_next, ok.results.len()),
            (Some(2), true, 2)
        );
        // One row the type refuses: the page still decodes, that row is unreadable.
        let mixed = decode_page::<Numbered>(
            "p",
            &response(r#"{"count": 2, "next": null, "results": [{"id": 1}, {"id": "x"}]}"#),
        )
        .unwrap();
        assert!(!mixed.has_next);
        assert!(matches!(mixed.results[0], Listed::Row(Numbered { id: 1 })));
        assert!(matches!(
            mixed.results[1],
            Listed::Unreadable { id: None, .. }
        ));
        // A page that is not a listing, or a row that is not an object, fails the page.
        for body in [
            r#"{"count": 1}"#,
            r#"{"count": 1, "results": [1]}"#,
            r#"{"count": 1, "results": [{"id": 1}"#,
        ] {
            assert!(
                decode_page::<Object>("p", &response(body)).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn request_data_too_big_is_not_retried() {
        let h = reqwest::header::HeaderMap::new();
        assert!(netbox_retryable(
            StatusCode::INTERNAL_SERVER_ERROR,
            &h,
            b"{\"error\":\"x\"}"
        ));
        assert!(!netbox_retryable(
            StatusCode::INTERNAL_SERVER_ERROR,
            &h,
            br#"{"exception":"RequestDataTooBig"}"#
        ));
        assert!(netbox_retryable(StatusCode::SERVICE_UNAVAILABLE, &h, b""));
        assert!(!netbox_retryable(StatusCode::BAD_REQUEST, &h, b""));
    }

    /// NetBox's answer to a deadlocked request (as 4.7 sends it) proves the write rolled back;
    /// other 500s after a POST stay ambiguous.
    #[test]
    fn a_deadlock_answer_is_a_rolled_back_write() {
        let h = reqwest::header::HeaderMap::new();
        let deadlock = br#"{"error": "deadlock detected\nDETAIL:  Process 30880 waits for ShareLock on transaction 61376; blocked by process 30849.", "exception": "OperationalError", "netbox_version": "4.7.3", "python_version": "3.13.5"}"#;
        assert!(netbox_rolled_back(
            StatusCode::INTERNAL_SERVER_ERROR,
            &h,
            deadlock
        ));
        let other = br#"{"error": "server closed the connection unexpectedly", "exception": "OperationalError"}"#;
        assert!(!netbox_rolled_back(
            StatusCode::INTERNAL_SERVER_ERROR,
            &h,
            other
        ));
        assert!(!netbox_rolled_back(
            StatusCode::INTERNAL_SERVER_ERROR,
            &h,
            b"deadlock detected"
        ));
        assert!(!netbox_rolled_back(StatusCode::BAD_REQUEST, &h, deadlock));
    }
}
