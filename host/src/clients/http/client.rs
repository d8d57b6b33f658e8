//! `HttpClient`: one reqwest client per endpoint with its TLS mode, timeouts, retry policy and
//! the run's request counters. It sends requests and returns raw responses (status, headers,
//! reason phrase, body); the Proxmox and NetBox clients give them meaning.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::retry::{RetryPolicy, retry_after};
use super::tls::{TlsError, TlsMode, client_config};

/// Time to establish a TCP + TLS connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most body bytes reserved up front from a response's `Content-Length` (a bigger body still
/// grows past it). Why: a length is only the server's claim, and up to six listings of four
/// pages each are read at once; a NetBox page of 1000 VMs is ~1.6 MB.
const BODY_RESERVE_MAX: usize = 16 << 20;

/// Time for one whole request. Generous: a 1000-VM NetBox page without `fields=` takes ~0.7 s on a
/// small server, and Proxmox proxies per-guest calls to other nodes with its own 30 s timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests sent during a run, every attempt counted (retries are real load on the server).
#[derive(Debug, Default)]
pub struct RequestCounters {
    reads: AtomicU64,
    writes: AtomicU64,
    retry_wait_ms: AtomicU64,
}

/// A copy of [`RequestCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCount {
    /// GET, HEAD and OPTIONS requests.
    pub reads: u64,
    /// POST, PUT, PATCH and DELETE requests.
    pub writes: u64,
    /// Milliseconds spent waiting before retries (`Retry-After` or backoff), as decided: what
    /// the client chose to wait, so tests can check a `Retry-After` was honoured without timing.
    pub retry_wait_ms: u64,
}

impl RequestCounters {
    /// The counts so far.
    pub fn snapshot(&self) -> RequestCount {
        RequestCount {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            retry_wait_ms: self.retry_wait_ms.load(Ordering::Relaxed),
        }
    }

    fn waited(&self, wait: Duration) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.retry_wait_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn count(&self, method: &Method) {
        let counter = if is_read(method) {
            &self.reads
        } else {
            &self.writes
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_idempotent(method: &Method) -> bool {
    *method != Method::POST && *method != Method::CONNECT
}

/// A response's body, each chunk copied into one buffer sized from `Content-Length` as it
/// arrives and then dropped. Why: collecting the body first (`Response::bytes`) held every
/// chunk, each pinning a piece of hyper's read buffer, and then copied them into one buffer
/// beside them: about twice a body per page in flight, with six listings of four pages each
/// read at once at the snapshot's memory peak.
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let claimed = resp
        .content_length()
        .map(|len| usize::try_from(len).unwrap_or(usize::MAX));
    let mut body = Vec::with_capacity(claimed.unwrap_or(0).min(BODY_RESERVE_MAX));
    while let Some(chunk) = resp.chunk().await? {
        append_chunk(&mut body, &chunk, claimed);
    }
    Ok(body)
}

/// Appends a body's chunk. Past the reserve, the buffer grows to the claimed length where
/// doubling would give as much or more (a 100k-VM `/cluster/resources` of ~20 MB took 32), else
/// as a `Vec` grows: a claim is believed only as far as the bytes already sent bear it out.
fn append_chunk(body: &mut Vec<u8>, chunk: &[u8], claimed: Option<usize>) {
    let needed = body.len() + chunk.len();
    if needed > body.capacity()
        && let Some(total) = claimed.filter(|&t| t >= needed && t <= 2 * body.capacity())
    {
        body.reserve_exact(total - body.len());
    }
    body.extend_from_slice(chunk);
}

/// Everything needed to build the client of one endpoint.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Service label for logs and errors, e.g. `proxmox pve-a` or `netbox`.
    pub service: String,
    /// Base URL; request paths are joined to it.
    pub base_url: Url,
    /// How the server certificate is trusted.
    pub tls: TlsMode,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout of one attempt.
    pub request_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Shared counters of the run.
    pub counters: Arc<RequestCounters>,
}

impl HttpSettings {
    /// Settings with default timeouts and retry policy.
    pub fn new(service: impl Into<String>, base_url: Url, tls: TlsMode) -> Self {
        Self {
            service: service.into(),
            base_url,
            tls,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            counters: Arc::default(),
        }
    }
}

/// One request: method, path relative to the base URL, query, extra headers, JSON body.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path relative to the base URL (no leading `/`).
    pub path: String,
    /// Query parameters, repeated keys allowed.
    pub query: Vec<(String, String)>,
    /// Body, sent as `application/json`.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// A request without query or body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    /// Adds query parameters.
    pub fn query<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.query
            .extend(pairs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets a JSON body.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(serde_json::to_vec(body).expect("a JSON value always serializes"));
        self
    }
}

/// A response as received, whatever its status.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The HTTP/1 reason phrase when the server sent a non-standard one (Proxmox puts its error
    /// message there), otherwise the canonical one.
    pub reason: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Attempts made, the first one included.
    pub attempts: u32,
    /// Time from the first attempt to this response.
    pub elapsed: Duration,
}

impl RawResponse {
    /// The non-canonical reason phrase, if the server sent one.
    pub fn custom_reason(&self) -> Option<&str> {
        let reason = self.reason.as_deref()?;
        (Some(reason) != self.status.canonical_reason()).then_some(reason)
    }

    /// The body as text, cut to `max` characters for error messages.
    pub fn body_excerpt(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(max) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_string(),
        }
    }

    /// A note for error messages when retries happened: ` (gave up after 5 attempts in 31.2 s)`.
    pub fn retry_note(&self) -> String {
        retry_note(self.attempts, self.elapsed)
    }
}

fn retry_note(attempts: u32, elapsed: Duration) -> String {
    if attempts > 1 {
        format!(
            " (gave up after {attempts} attempts in {:.1} s)",
            elapsed.as_secs_f64()
        )
    } else {
        String::new()
    }
}

/// What kind of failure an [`HttpError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// The connection could not be made (DNS, refused, TLS handshake, certificate).
    Connect,
    /// An idempotent request timed out on every attempt.
    Timeout,
    /// The connection failed while the request or response was in flight.
    Transport,
    /// A POST left the client but no answer came back (timeout, connection dropped, or a
    /// gateway error): it may have been applied. Look the object up by identity before
    /// sending it again.
    Ambiguous,
    /// The client could not be built or the URL is invalid.
    Setup,
}

/// A request that got no usable HTTP answer.
#[derive(Debug)]
pub struct HttpError {
    /// The failure kind.
    pub kind: HttpErrorKind,
    /// Service label (`proxmox pve-a`, `netbox`).
    pub service: String,
    /// Method of the request.
    pub method: Method,
    /// Path of the request (no query, no credentials).
    pub path: String,
    /// The underlying error chain as text.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// Time spent.
    pub elapsed: Duration,
}

fn kind_text(kind: HttpErrorKind) -> &'static str {
    match kind {
        HttpErrorKind::Connect => "cannot connect",
        HttpErrorKind::Timeout => "timed out",
        HttpErrorKind::Transport => "connection failed",
        HttpErrorKind::Ambiguous => {
            "outcome unknown, the write may have been applied (look the object up before retrying)"
        }
        HttpErrorKind::Setup => "client setup failed",
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {}: {}{}: {}",
            self.service,
            self.method,
            self.path,
            kind_text(self.kind),
            retry_note(self.attempts, self.elapsed),
            self.message
        )
    }
}

impl StdError for HttpError {}

impl HttpError {
    /// The whole message with its cause (same as `Display`).
    pub fn detail(&self) -> String {
        self.to_string()
    }
}

/// Renders an error and its sources as one line, dropping repeats (reqwest and hyper often
/// nest the same text).
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The HTTP client of one endpoint. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    settings: Arc<HttpSettings>,
    auth: Option<HeaderValue>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("service", &self.settings.service)
            .field("base_url", &self.settings.base_url.as_str())
            .field("tls", &self.settings.tls)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client. `authorization` is sent on every request and marked sensitive (hyper
    /// and reqwest then never print it).
    pub fn new(
        settings: HttpSettings,
        authorization: Option<HeaderValue>,
    ) -> Result<Self, HttpError> {
        let setup_error = |message: String| HttpError {
            kind: HttpErrorKind::Setup,
            service: settings.service.clone(),
            method: Method::GET,
            path: String::new(),
            message,
            attempts: 0,
            elapsed: Duration::ZERO,
        };
        if settings.tls == TlsMode::Insecure && settings.base_url.scheme() == "https" {
            tracing::warn!(
                service = %settings.service,
                url = %settings.base_url,
                "TLS certificate verification is OFF for this endpoint (insecure = true): \
                 anyone on the network path can impersonate it and read its token"
            );
        }
        let tls = client_config(&settings.tls).map_err(|e: TlsError| setup_error(e.to_string()))?;
        let inner = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("pve2netbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup_error(error_chain(&e)))?;
        let auth = authorization.map(|mut value| {
            value.set_sensitive(true);
            value
        });
        Ok(Self {
            inner,
            settings: Arc::new(settings),
            auth,
        })
    }

    /// The service label.
    pub fn service(&self) -> &str {
        &self.settings.service
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.settings.base_url
    }

    /// The run's request counters this client adds to.
    pub fn counters(&self) -> &Arc<RequestCounters> {
        &self.settings.counters
    }

    fn error(
        &self,
        kind: HttpErrorKind,
        req: &Request,
        message: String,
        attempts: u32,
        start: Instant,
    ) -> HttpError {
        HttpError {
            kind,
            service: self.settings.service.clone(),
            method: req.method.clone(),
            path: req.path.clone(),
            message,
            attempts,
            elapsed: start.elapsed(),
        }
    }

    /// Sends a request, retrying as the policy allows, and returns the final response whatever
    /// its status. Errors only when no usable HTTP answer came back.
    pub async fn send(&self, req: &Request) -> Result<RawResponse, HttpError> {
        let url = self.settings.base_url.join(&req.path).map_err(|e| {
            self.error(
                HttpErrorKind::Setup,
                req,
                format!("invalid path: {e}"),
                0,
                Instant::now(),
            )
        })?;
        let policy = &self.settings.retry;
        let idempotent = is_idempotent(&req.method);
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.settings.counters.count(&req.method);
            let mut builder = self.inner.request(req.method.clone(), url.clone());
            if !req.query.is_empty() {
                builder = builder.query(&req.query);
            }
            if let Some(auth) = &self.auth {
                builder = builder.header(reqwest::header::AUTHORIZATION, auth.clone());
            }
            if let Some(body) = &req.body {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            builder = builder.header(reqwest::header::ACCEPT, "application/json");
            // Outcome of this attempt: a response, or an error with "was it maybe sent".
            let outcome = match builder.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let reason = resp
                        .extensions()
                        .get::<hyper::ext::ReasonPhrase>()
                        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
                        .or_else(|| status.canonical_reason().map(str::to_string));
                    match read_body(resp).await {
                        Ok(body) => Ok(RawResponse {
                            status,
                            headers,
                            reason,
                            body,
                            attempts: attempt,
                            elapsed: start.elapsed(),
                        }),
                        Err(e) => Err((e.is_timeout(), true, error_chain(&e))),
                    }
                }
                Err(e) => Err((e.is_timeout(), !e.is_connect(), error_chain(&e))),
            };
            let elapsed = start.elapsed();
            let budget_left = policy.budget.saturating_sub(elapsed);
            let attempts_left = attempt < policy.max_attempts;
            match outcome {
                Ok(resp) => {
                    let status = resp.status;
                    let retryable = if idempotent {
                        (policy.retryable_status)(status, &resp.headers, &resp.body)
                    } else {
                        // 429 refused the request before the application saw it; the policy
                        // knows answers whose write was rolled back.
                        status == StatusCode::TOO_MANY_REQUESTS
                            || (policy.rolled_back)(status, &resp.headers, &resp.body)
                    };
                    if !idempotent && matches!(status.as_u16(), 502..=504) {
                        return Err(self.error(
                            HttpErrorKind::Ambiguous,
                            req,
                            format!("HTTP {status} from a gateway: the upstream may have committed the write"),
                            attempt,
                            start,
                        ));
                    }
                    if !retryable || !attempts_left {
                        return Ok(resp);
                    }
                    let wait =
                        retry_after(&resp.headers).unwrap_or_else(|| policy.backoff(attempt));
                    if wait > budget_left {
                        tracing::warn!(
                            service = %self.settings.service, method = %req.method, path = %req.path,
                            status = status.as_u16(), wait_s = wait.as_secs_f64(),
                            "not retrying: the wait the server asks for exceeds the retry budget"
                        );
                        return Ok(resp);
                    }
                    tracing::debug!(
                        service = %self.settings.service, method = %req.method, path = %req.path,
                        status = status.as_u16(), attempt, wait_ms = wait.as_millis() as u64,
                        "retrying after a transient status"
                    );
                    self.settings.counters.waited(wait);
                    tokio::time::sleep(wait).await;
                }
                Err((timeout, maybe_sent, message)) => {
                    if !idempotent && maybe_sent {
                        return Err(self.error(
                            HttpErrorKind::Ambiguous,
                            req,
                            message,
                            attempt,
                            start,
                        ));
                    }
                    let wait = policy.backoff(attempt);
                    if !attempts_left || wait > budget_left {
                        let kind = if !maybe_sent {
                            HttpErrorKind::Connect
                        } else if timeout {
                            HttpErrorKind::Timeout
                        } else {
                            HttpErrorKind::Transport
                        };
                        return Err(self.error(kind, req, message, attempt, start));
                    }
                    tracing::debug!(
                        service = %self.settings.service, method = %req.method, path = %req.path,
                        attempt, error = %message, "retrying after a connection error"
                    );
                    self.settings.counters.waited(wait);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::append_chunk;

    /// Chunks of `len` bytes in all, appended to a buffer reserved `reserve` bytes.
    fn body(reserve: usize, chunks: &[usize], claimed: Option<usize>) -> Vec<u8> {
        let mut body = Vec::with_capacity(reserve);
        for &n in chunks {
            append_chunk(&mut body, &vec![7; n], claimed);
        }
        assert_eq!(body.len(), chunks.iter().sum::<usize>());
        body
    }

    #[test]
    fn a_body_past_its_reserve_grows_to_the_claimed_length() {
        let b = body(1000, &[600, 600, 300], Some(1500));
        assert_eq!(b.capacity(), 1500);
    }

    #[test]
    fn a_claim_past_doubling_or_short_of_the_bytes_is_not_believed() {
        // Doubling (or more) as a `Vec` grows: never the claimed 10 000 at once.
        let b = body(1000, &[600, 600], Some(10_000));
        assert!(
            b.capacity() >= 1200 && b.capacity() < 10_000,
            "{}",
            b.capacity()
        );
        // A server that sends more than it claimed still gets all its bytes kept.
        let b = body(1000, &[600, 600, 600], Some(1100));
        assert!(b.capacity() >= 1800);
        // No claim: as a `Vec` grows.
        assert!(body(0, &[10, 20], None).capacity() >= 30);
    }
}
