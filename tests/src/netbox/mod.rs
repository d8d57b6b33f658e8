//! The NetBox simulator: HTTP under `/api/`, token auth, list/detail/write/bulk endpoints for
//! the types in [`schema`], `/api/status/`, NetBox's error bodies and headers
//! (reference B.1-B.8, netbox-live.md section 2).
//!
//! Version switches (4.2-4.7): `virtual_machine_type` (4.6), `start_on_boot`/`owner`/v2
//! tokens/`omit` (4.5), cluster `scope_*` (4.2), `start=` cursor and ETag/If-Match (4.6),
//! bulk error shapes (4.7 structured, <= 4.6 bare list and silent skips),
//! `exclude=config_context` honoured up to 4.6.

mod query;
mod render;
pub(crate) mod schema;
pub(crate) mod store;

use crate::rng::Rng;
use crate::service::{Committed, Cost};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use query::Filter;
use render::{Render, Sel};
use schema::{TYPES, Ty, Ver};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use store::{Store, WriteError, iso};

/// NetBox's `MAX_PAGE_SIZE` default: larger `limit`s (and `limit=0`) are capped silently.
pub const MAX_PAGE_SIZE: usize = 1000;
/// NetBox's `PAGINATE_COUNT` default.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Django's `DATA_UPLOAD_MAX_MEMORY_SIZE` (2.5 MB): larger bodies get a 500.
pub const MAX_BODY_BYTES: usize = 2_621_440;
/// Hard cap on what the simulator reads at all (beyond NetBox's limit, to answer its 500).
const READ_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// A NetBox version: the simulator covers 4.0 to 4.7.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct NetboxVersion {
    /// Always 4.
    pub major: u8,
    /// 0..=7.
    pub minor: u8,
}

impl Default for NetboxVersion {
    fn default() -> Self {
        NetboxVersion { major: 4, minor: 7 }
    }
}

impl std::str::FromStr for NetboxVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('.')
            .ok_or_else(|| format!("bad NetBox version '{s}' (e.g. 4.7)"))?;
        let b = b.split('.').next().unwrap_or(b);
        let v = NetboxVersion {
            major: a.parse().map_err(|_| format!("bad NetBox version '{s}'"))?,
            minor: b.parse().map_err(|_| format!("bad NetBox version '{s}'"))?,
        };
        if v.major != 4 || v.minor > 7 {
            return Err(format!("NetBox version '{s}' not simulated (4.0 to 4.7)"));
        }
        Ok(v)
    }
}

impl NetboxVersion {
    fn ver(self) -> Ver {
        (self.major, self.minor)
    }
    /// The full version string `/api/status/` reports.
    pub fn full(self) -> String {
        let patch = match self.minor {
            7 => 3,
            6 => 8,
            5 => 8,
            4 => 10,
            3 => 7,
            2 => 9,
            _ => 11,
        };
        format!("{}.{}.{patch}", self.major, self.minor)
    }
}

/// An API token the simulator accepts.
#[derive(Clone)]
pub(crate) struct TokenRec {
    /// v1: the 40 chars; v2: `nbt_<key>.<token>`.
    pub(crate) plaintext: String,
    pub(crate) write_enabled: bool,
}

/// The NetBox simulator's state.
pub(crate) struct NetboxSim {
    pub(crate) version: NetboxVersion,
    pub(crate) store: RwLock<Store>,
    pub(crate) tokens: Vec<TokenRec>,
    /// Bumped on every write lock, so cached listings know when the data changed.
    generation: AtomicU64,
    listings: Mutex<ListingCache>,
    rows: Mutex<RowCache>,
}

/// Most rendered rows remembered per data generation: a 100k-VM snapshot with children (100k
/// VMs, 200k interfaces, 200k MACs, 400k IPs, 200k disks: 1.1M rows), with room to spare. Was
/// 250,000, sized for the VMs alone: a snapshot with children read more rows than that, so
/// the cache was emptied several times per snapshot and every page was rendered again
/// (~9 s of the simulator's CPU per 100k-VM snapshot, on the cores the client runs on).
const ROW_CACHE_ENTRIES: usize = 2_000_000;

/// Listed rows as rendered JSON text, valid for one data generation and keyed by the request's
/// selection and base URL: rendering was ~55 ms of CPU per 1000-row page (nested objects built
/// as JSON values, then serialized), which made the simulator, not the client, the bound of a
/// 100k-VM snapshot. The text is byte for byte what rendering gives.
#[derive(Default)]
struct RowCache {
    generation: u64,
    /// Per type and selection, the rendered rows by id: a page hashes its selection text once,
    /// not once per row (~1 s of the simulator's CPU over a 100k-VM snapshot with children).
    entries: HashMap<(Ty, Arc<str>), HashMap<u32, Arc<str>>>,
    /// Rows held, all selections together.
    len: usize,
}

/// Most distinct listings (query strings without `limit`/`offset`) remembered per data
/// generation: a sync pages through a handful at a time; each costs 4 bytes per matching row.
const LISTING_CACHE_ENTRIES: usize = 32;

/// The filtered and ordered ids of recent offset listings, valid for one data generation, so
/// that the pages of one listing (a snapshot reads 100 pages of 1000 at 100k VMs, in parallel)
/// cost one filter and sort instead of one each. Concurrent requests for the same listing wait
/// for the first one's result.
#[derive(Default)]
struct ListingCache {
    generation: u64,
    entries: HashMap<(Ty, String), Listing>,
}

/// One listing's ids, filled by the first request that needs them.
type Listing = Arc<OnceLock<Arc<[u32]>>>;

/// Tokens made for a simulator: (v2 read-write, v1 read-write, v2 read-only).
pub(crate) fn make_tokens(seed: u64) -> (String, String, String) {
    let mut rng = Rng::new(seed ^ 0x4E45_5442_4F58);
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = |n: usize| -> String {
        (0..n)
            .map(|_| ALNUM[rng.below(ALNUM.len() as u64) as usize] as char)
            .collect()
    };
    let v2 = format!("nbt_{}.{}", s(12), s(40));
    let v1 = s(40);
    let ro = format!("nbt_{}.{}", s(12), s(40));
    (v2, v1, ro)
}

impl NetboxSim {
    pub(crate) fn new(version: NetboxVersion, tokens: Vec<TokenRec>) -> Self {
        NetboxSim {
            version,
            store: RwLock::new(Store::new(version.ver())),
            tokens,
            generation: AtomicU64::new(0),
            listings: Mutex::new(ListingCache::default()),
            rows: Mutex::new(RowCache::default()),
        }
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The store for writing; invalidates cached listings and derived filters (even if the writer ends up
    /// changing nothing, which is rare and only costs a recomputation).
    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        let mut guard = self.store.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        guard
            .derived
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        guard
    }

    /// The ids of a listing in order, computed once per data generation. Call with the
    /// store's read lock held (`st`), so the generation read here is the one `st` shows.
    fn listing(&self, ty: Ty, key: String, compute: impl FnOnce() -> Vec<u32>) -> Arc<[u32]> {
        let generation = self.generation.load(Ordering::SeqCst);
        let cell = {
            let mut cache = self.listings.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation != generation {
                cache.entries.clear();
                cache.generation = generation;
            }
            if cache.entries.len() >= LISTING_CACHE_ENTRIES
                && !cache.entries.contains_key(&(ty, key.clone()))
            {
                cache.entries.clear();
            }
            cache.entries.entry((ty, key)).or_default().clone()
        };
        cell.get_or_init(|| compute().into()).clone()
    }

    /// The rows `ids` of a listing rendered with `sel` as JSON texts, from the row cache when
    /// this data generation already rendered them for the same selection (`sel_key`, the
    /// request's selection parameters and base URL). Call with the store's read lock held.
    fn rendered_rows(
        &self,
        r: &Render<'_>,
        ty: Ty,
        ids: &[u32],
        sel: &Sel,
        sel_key: &Arc<str>,
    ) -> Vec<Arc<str>> {
        let generation = self.generation.load(Ordering::SeqCst);
        let table = &r.st.tables[ty].rows;
        let mut out: Vec<Option<Arc<str>>> = {
            let mut cache = self.rows.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation != generation {
                cache.entries.clear();
                cache.len = 0;
                cache.generation = generation;
            }
            match cache.entries.get(&(ty, sel_key.clone())) {
                Some(rows) => ids.iter().map(|id| rows.get(id).cloned()).collect(),
                None => vec![None; ids.len()],
            }
        };
        let mut fresh = Vec::new();
        for (slot, id) in out.iter_mut().zip(ids) {
            if slot.is_none()
                && let Some(row) = table.get(id)
            {
                let text: Arc<str> = r.render(ty, *id, row, sel).to_string().into();
                fresh.push((*id, text.clone()));
                *slot = Some(text);
            }
        }
        if !fresh.is_empty() {
            let mut cache = self.rows.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation == generation {
                // Full: keep what is there rather than emptying it. Emptying made a listing
                // larger than the cache miss on every page, every time it was read.
                let room = ROW_CACHE_ENTRIES.saturating_sub(cache.len);
                let cache = &mut *cache;
                let rows = cache.entries.entry((ty, sel_key.clone())).or_default();
                for (id, text) in fresh.into_iter().take(room) {
                    if rows.insert(id, text).is_none() {
                        cache.len += 1;
                    }
                }
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Empties NetBox (ids restart at 1).
    pub(crate) fn reset(&self) {
        *self.write() = Store::new(self.version.ver());
    }

    /// Every object of a type, fully rendered (control API).
    pub(crate) fn objects(&self, key: &str, base: &str) -> Option<Vec<Value>> {
        let ty = schema::type_by_key(key)?;
        let st = self.read();
        let r = Render::new(&st, base.to_string());
        Some(
            st.tables[ty]
                .rows
                .iter()
                .map(|(id, row)| r.render(ty, *id, row, &Sel::Full))
                .collect(),
        )
    }

    /// How many objects of a type NetBox holds (without rendering them).
    pub(crate) fn count(&self, key: &str) -> Option<usize> {
        let ty = schema::type_by_key(key)?;
        Some(self.read().tables[ty].rows.len())
    }

    /// Creates objects directly (control API, Rust API): one object or a list, atomic.
    pub(crate) fn create_objects(
        &self,
        key: &str,
        body: &Value,
        base: &str,
    ) -> Result<Vec<Value>, Value> {
        let ty = schema::type_by_key(key)
            .ok_or_else(|| json!({"detail": format!("unknown object type '{key}'")}))?;
        let items: Vec<&Value> = match body {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let mut st = self.write();
        // Seeding through the control API is not an API request: no change records.
        let record = std::mem::replace(&mut st.record_changes, false);
        st.begin();
        let mut ids = Vec::new();
        for (i, it) in items.iter().enumerate() {
            match st.create(ty, it) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    st.rollback();
                    st.record_changes = record;
                    return Err(json!({"index": i, "errors": write_error_body(e)}));
                }
            }
        }
        st.commit();
        st.record_changes = record;
        drop(st);
        let st = self.read();
        let r = Render::new(&st, base.to_string());
        Ok(ids
            .iter()
            .filter_map(|id| {
                st.row(ty, *id)
                    .map(|row| r.render(ty, *id, row, &Sel::Full))
            })
            .collect())
    }
}

impl NetboxSim {
    /// Changes objects directly (control API): a list of `{"id": N, field: value, ...}`
    /// applied as PATCHes, atomic, no change records. Returns the rendered objects.
    pub(crate) fn update_objects(
        &self,
        key: &str,
        body: &Value,
        base: &str,
    ) -> Result<Vec<Value>, Value> {
        let ty = schema::type_by_key(key)
            .ok_or_else(|| json!({"detail": format!("unknown object type '{key}'")}))?;
        let items: Vec<&Value> = match body {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let mut st = self.write();
        let record = std::mem::replace(&mut st.record_changes, false);
        st.begin();
        let mut ids = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let res = match it.get("id").and_then(Value::as_u64) {
                Some(id) => st.update(ty, id as u32, it, true).map(|()| id as u32),
                None => Err(WriteError::NotFound),
            };
            match res {
                Ok(id) => ids.push(id),
                Err(e) => {
                    st.rollback();
                    st.record_changes = record;
                    return Err(json!({"index": i, "errors": write_error_body(e)}));
                }
            }
        }
        st.commit();
        st.record_changes = record;
        drop(st);
        let st = self.read();
        let r = Render::new(&st, base.to_string());
        Ok(ids
            .iter()
            .filter_map(|id| {
                st.row(ty, *id)
                    .map(|row| r.render(ty, *id, row, &Sel::Full))
            })
            .collect())
    }

    /// Deletes objects directly (control API), with NetBox's cascades, atomic, no change records.
    pub(crate) fn delete_objects(&self, key: &str, ids: &[u32]) -> Result<(), Value> {
        let ty = schema::type_by_key(key)
            .ok_or_else(|| json!({"detail": format!("unknown object type '{key}'")}))?;
        let mut st = self.write();
        let record = std::mem::replace(&mut st.record_changes, false);
        st.begin();
        for (i, id) in ids.iter().enumerate() {
            if let Err(e) = st.delete(ty, *id) {
                st.rollback();
                st.record_changes = record;
                return Err(json!({"index": i, "errors": write_error_body(e)}));
            }
        }
        st.commit();
        st.record_changes = record;
        Ok(())
    }
}

fn write_error_body(e: WriteError) -> Value {
    match e {
        WriteError::Invalid(errs) => errs.into_value(),
        WriteError::NotFound => json!({"detail": "Not found."}),
        WriteError::Protected(d) => json!({"detail": d}),
    }
}

pub(crate) fn router(sim: Arc<NetboxSim>) -> Router {
    Router::new().fallback(handle).with_state(sim)
}

type Resp = Response<Body>;

/// What a request looks like to the handlers.
struct Req {
    method: Method,
    path: String,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    base: String,
    request_id: String,
}

impl Req {
    fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    }
}

fn uuid4() -> String {
    let a: u128 = rand::random();
    let b = a.to_be_bytes();
    let mut b2 = b;
    b2[6] = (b[6] & 0x0f) | 0x40;
    b2[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b2);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn detail(status: StatusCode, msg: &str) -> Resp {
    json_resp(status, &json!({"detail": msg}))
}

/// Django's HTML 404 for URLs outside the API's routes.
fn html_404(path: &str) -> Resp {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>Page Not Found | NetBox</title></head>\n<body>\n<h1>Page Not Found</h1>\n<p>The requested page ({path}) does not exist.</p>\n</body>\n</html>\n"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn cost(resp: &mut Resp, ms: f64) {
    resp.extensions_mut()
        .insert(Cost(Duration::from_secs_f64(ms.max(0.0) / 1000.0)));
}

async fn handle(State(sim): State<Arc<NetboxSim>>, req: Request) -> Resp {
    let (parts, body) = req.into_parts();
    let params: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let body = match axum::body::to_bytes(body, READ_LIMIT_BYTES).await {
        Ok(b) => b,
        Err(_) => Bytes::new(),
    };
    let request_id = uuid4();
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        params,
        headers: parts.headers,
        body,
        base: format!("http://{host}"),
        request_id: request_id.clone(),
    };
    let mut resp = dispatch(&sim, &req);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{}.{}", sim.version.major, sim.version.minor)) {
        h.insert("api-version", v);
    }
    h.insert(
        "vary",
        HeaderValue::from_static("HX-Request, Cookie, origin"),
    );
    resp
}

enum Route {
    Root,
    Status,
    List(Ty),
    Detail(Ty, u32),
}

fn resolve(sim: &NetboxSim, path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/api/")?;
    if rest.is_empty() {
        return Some(Route::Root);
    }
    if !rest.ends_with('/') {
        return None;
    }
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match segs.as_slice() {
        ["status"] => Some(Route::Status),
        [app, key] => schema::find_type(app, key, sim.version.ver()).map(Route::List),
        [app, key, id] => {
            let ty = schema::find_type(app, key, sim.version.ver())?;
            id.parse::<u32>().ok().map(|id| Route::Detail(ty, id))
        }
        _ => None,
    }
}

/// Auth: `Token`/`Bearer` keyword, version from the `nbt_` prefix; every failure is 403.
fn authenticate<'a>(sim: &'a NetboxSim, headers: &HeaderMap) -> Result<&'a TokenRec, &'static str> {
    let Some(h) = headers.get("authorization").and_then(|h| h.to_str().ok()) else {
        return Err("Authentication credentials were not provided.");
    };
    let mut parts = h.split_whitespace();
    let keyword = parts.next().unwrap_or("").to_ascii_lowercase();
    if keyword != "token" && keyword != "bearer" {
        return Err("Authentication credentials were not provided.");
    }
    let Some(tok) = parts.next() else {
        return Err("Invalid token header. No credentials provided.");
    };
    let v2 = tok.starts_with("nbt_");
    if v2 && sim.version.ver() < (4, 5) {
        return Err("Invalid token");
    }
    match sim.tokens.iter().find(|t| t.plaintext == tok) {
        Some(t) => Ok(t),
        None if v2 => Err("Invalid v2 token"),
        None if sim.version.ver() >= (4, 5) => Err("Invalid v1 token"),
        None => Err("Invalid token"),
    }
}

fn dispatch(sim: &NetboxSim, req: &Req) -> Resp {
    let Some(route) = resolve(sim, &req.path) else {
        if req.path.starts_with("/api/") && !req.path.ends_with('/') && req.method == Method::GET {
            // Django's APPEND_SLASH.
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            let q = if req.params.is_empty() {
                String::new()
            } else {
                format!("?{}", encode(&req.params))
            };
            if let Ok(v) = HeaderValue::from_str(&format!("{}/{q}", req.path)) {
                r.headers_mut().insert("location", v);
            }
            return r;
        }
        let mut r = html_404(&req.path);
        cost(&mut r, 20.0);
        return r;
    };
    let token = match authenticate(sim, &req.headers) {
        Ok(t) => t,
        Err(msg) => {
            let mut r = detail(StatusCode::FORBIDDEN, msg);
            cost(&mut r, 10.0);
            return r;
        }
    };
    let write = matches!(
        req.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let allowed = match &route {
        Route::Root | Route::Status => req.method == Method::GET || req.method == Method::HEAD,
        Route::List(ty) | Route::Detail(ty, _) => !TYPES[*ty].read_only || !write,
    };
    if !allowed && req.method != Method::OPTIONS {
        let mut r = detail(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Method \"{}\" not allowed.", req.method),
        );
        cost(&mut r, 10.0);
        return r;
    }
    if write && !token.write_enabled {
        let mut r = detail(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
        );
        cost(&mut r, 10.0);
        return r;
    }
    if write && req.body.len() > MAX_BODY_BYTES {
        let mut r = json_resp(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.", "exception": "RequestDataTooBig",
                    "netbox_version": sim.version.full(), "python_version": "3.13.5"}),
        );
        cost(&mut r, 30.0);
        return r;
    }
    match route {
        Route::Root => {
            let mut r = json_resp(
                StatusCode::OK,
                &json!({
                "circuits": format!("{}/api/circuits/", req.base), "core": format!("{}/api/core/", req.base),
                "dcim": format!("{}/api/dcim/", req.base), "extras": format!("{}/api/extras/", req.base),
                "ipam": format!("{}/api/ipam/", req.base), "plugins": format!("{}/api/plugins/", req.base),
                "status": format!("{}/api/status/", req.base), "tenancy": format!("{}/api/tenancy/", req.base),
                "users": format!("{}/api/users/", req.base), "virtualization": format!("{}/api/virtualization/", req.base),
                "vpn": format!("{}/api/vpn/", req.base), "wireless": format!("{}/api/wireless/", req.base)}),
            );
            cost(&mut r, 6.0);
            r
        }
        Route::Status => {
            let mut r = json_resp(
                StatusCode::OK,
                &json!({
                "django-version": "5.2.9", "hostname": "netbox-sim",
                "installed-apps": {"django_filters": "25.1", "django_tables2": "2.7.5", "drf_spectacular": "0.28.0",
                                   "rest_framework": "3.16.1", "taggit": "6.1.0"},
                "netbox-version": sim.version.full(),
                "netbox-full-version": format!("{} (simulated)", sim.version.full()),
                "plugins": {}, "python-version": "3.13.5", "rq-workers-running": 1}),
            );
            cost(&mut r, 8.0);
            r
        }
        Route::List(ty) => match req.method {
            Method::GET | Method::HEAD => list(sim, req, ty),
            Method::POST => create(sim, req, ty),
            Method::PATCH | Method::PUT => bulk_update(sim, req, ty),
            Method::DELETE => bulk_delete(sim, req, ty),
            _ => detail(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("Method \"{}\" not allowed.", req.method),
            ),
        },
        Route::Detail(ty, id) => match req.method {
            Method::GET | Method::HEAD => get_one(sim, req, ty, id),
            Method::PATCH | Method::PUT => update_one(sim, req, ty, id),
            Method::DELETE => delete_one(sim, req, ty, id),
            _ => detail(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("Method \"{}\" not allowed.", req.method),
            ),
        },
    }
}

fn encode(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn csv_set(v: &str) -> HashSet<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `fields` > `omit` (4.5+) > `brief` (GET only, any non-empty value) > `exclude` (<= 4.6).
fn selection(sim: &NetboxSim, req: &Req) -> Sel {
    if let Some(f) = req.param("fields").filter(|f| !f.is_empty()) {
        return Sel::Fields(csv_set(f));
    }
    if sim.version.ver() >= (4, 5)
        && let Some(o) = req.param("omit").filter(|o| !o.is_empty())
    {
        return Sel::Omit(csv_set(o));
    }
    if req.method == Method::GET && req.param("brief").is_some_and(|b| !b.is_empty()) {
        return Sel::Brief;
    }
    if sim.version.ver() <= (4, 6)
        && let Some(e) = req.param("exclude")
        && csv_set(e).contains("config_context")
    {
        return Sel::Omit(["config_context".to_string()].into_iter().collect());
    }
    Sel::Full
}

/// Realistic per-row cost of a list page: 1000 rows take ~0.5 s full, ~0.17 s brief,
/// ~0.11 s with `fields=` (netbox-live.md 2.5).
fn per_row_ms(sel: &Sel) -> f64 {
    match sel {
        Sel::Full | Sel::Omit(_) => 0.43,
        Sel::Brief => 0.095,
        Sel::Fields(_) => 0.035,
    }
}

fn parse_body(req: &Req) -> Result<Value, Box<Resp>> {
    let mut body = parse_json_body(req)?;
    if req.method != Method::DELETE
        && let Some(fields) = req.param("fields")
    {
        drop_unlisted_keys(&mut body, fields);
    }
    Ok(body)
}

/// NetBox builds a write's serializer with only the `fields=` it was asked for, so a key of the
/// body that is not listed is silently dropped (a POST then misses required fields, a PATCH
/// changes nothing). Bulk items keep `id`, which NetBox reads before the serializer.
fn drop_unlisted_keys(body: &mut Value, fields: &str) {
    let listed: Vec<&str> = fields.split(',').map(str::trim).collect();
    let keep = |k: &str, bulk: bool| listed.contains(&k) || (bulk && k == "id");
    match body {
        Value::Object(map) => map.retain(|k, _| keep(k, false)),
        Value::Array(items) => {
            for item in items {
                if let Value::Object(map) = item {
                    map.retain(|k, _| keep(k, true));
                }
            }
        }
        _ => {}
    }
}

fn parse_json_body(req: &Req) -> Result<Value, Box<Resp>> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        // Python's json module wording, as DRF relays it.
        let text = String::from_utf8_lossy(&req.body);
        let char_idx: usize = text
            .split('\n')
            .take(e.line().saturating_sub(1))
            .map(|l| l.chars().count() + 1)
            .sum::<usize>()
            + e.column().saturating_sub(1);
        Box::new(detail(
            StatusCode::BAD_REQUEST,
            &format!(
                "JSON parse error - Expecting value: line {} column {} (char {char_idx})",
                e.line(),
                e.column()
            ),
        ))
    })
}

fn list(sim: &NetboxSim, req: &Req, ty: Ty) -> Resp {
    let st = sim.read();
    let r = Render::new(&st, req.base.clone());
    let cfs = r.cf_defs(ty);
    let filter = match Filter::compile(&st, ty, &cfs, &req.params) {
        Ok(f) => f,
        Err(body) => {
            let mut resp = json_resp(StatusCode::BAD_REQUEST, &body);
            cost(&mut resp, 60.0);
            return resp;
        }
    };
    let limit = match req.param("limit").map(|l| l.trim().parse::<i64>()) {
        Some(Ok(0)) => MAX_PAGE_SIZE,
        Some(Ok(n)) if n > 0 => (n as usize).min(MAX_PAGE_SIZE),
        _ => DEFAULT_PAGE_SIZE,
    };
    let sel = selection(sim, req);
    // Everything `selection` and the rendered URLs depend on.
    let sel_key: Arc<str> = encode(
        &["fields", "omit", "brief", "exclude"]
            .iter()
            .filter_map(|k| req.param(k).map(|v| (k.to_string(), v.to_string())))
            .chain([("base".to_string(), req.base.clone())])
            .collect::<Vec<_>>(),
    )
    .into();
    let table = &st.tables[ty].rows;
    let scanned = table.len();
    let mut out = Map::new();
    let results: Vec<Arc<str>>;
    if sim.version.ver() >= (4, 6)
        && let Some(start) = req.param("start")
    {
        if req.param("offset").is_some() || req.param("ordering").is_some() {
            return detail(
                StatusCode::BAD_REQUEST,
                "The start parameter cannot be combined with offset or ordering.",
            );
        }
        let Ok(start) = start.trim().parse::<u32>() else {
            return json_resp(
                StatusCode::BAD_REQUEST,
                &json!({"start": ["A valid integer is required."]}),
            );
        };
        let page: Vec<(u32, &store::Row)> = table
            .range(start.max(filter.min_id())..)
            .filter(|(id, row)| filter.matches(**id, row))
            .take(limit)
            .map(|(i, r)| (*i, r))
            .collect();
        let next = if page.len() == limit {
            page.last().map(|(last, _)| {
                let mut p: Vec<(String, String)> = req
                    .params
                    .iter()
                    .filter(|(k, _)| k != "start")
                    .cloned()
                    .collect();
                p.push(("start".into(), (last + 1).to_string()));
                json!(format!("{}{}?{}", req.base, req.path, encode(&p)))
            })
        } else {
            None
        };
        let page_ids: Vec<u32> = page.iter().map(|(id, _)| *id).collect();
        results = sim.rendered_rows(&r, ty, &page_ids, &sel, &sel_key);
        out.insert("count".into(), Value::Null);
        out.insert("next".into(), next.unwrap_or(Value::Null));
        out.insert("previous".into(), Value::Null);
    } else {
        let offset = req
            .param("offset")
            .and_then(|o| o.trim().parse::<usize>().ok())
            .unwrap_or(0);
        // Every parameter but the page window decides the rows and their order.
        let key = encode(
            &req.params
                .iter()
                .filter(|(k, _)| k != "limit" && k != "offset")
                .cloned()
                .collect::<Vec<_>>(),
        );
        let ids = sim.listing(ty, key, || {
            let mut rows: Vec<(u32, &store::Row)> = table
                .range(filter.min_id()..)
                .filter(|(id, row)| filter.matches(**id, row))
                .map(|(i, r)| (*i, r))
                .collect();
            query::sort(ty, &mut rows, req.param("ordering"));
            rows.into_iter().map(|(id, _)| id).collect()
        });
        let count = ids.len();
        let page_ids: Vec<u32> = ids
            .get(offset..)
            .unwrap_or_default()
            .iter()
            .take(limit)
            .copied()
            .collect();
        results = sim.rendered_rows(&r, ty, &page_ids, &sel, &sel_key);
        let link = |off: Option<usize>| {
            let mut p: Vec<(String, String)> = req
                .params
                .iter()
                .filter(|(k, _)| k != "limit" && k != "offset")
                .cloned()
                .collect();
            p.push(("limit".into(), limit.to_string()));
            if let Some(o) = off {
                p.push(("offset".into(), o.to_string()));
            }
            json!(format!("{}{}?{}", req.base, req.path, encode(&p)))
        };
        out.insert("count".into(), json!(count));
        out.insert(
            "next".into(),
            if offset + limit < count {
                link(Some(offset + limit))
            } else {
                Value::Null
            },
        );
        out.insert(
            "previous".into(),
            if offset == 0 {
                Value::Null
            } else if offset <= limit {
                link(None)
            } else {
                link(Some(offset - limit))
            },
        );
    }
    let n = results.len();
    // `{"count":..,"next":..,"previous":..,"results":[..]}`: the keys in the order a JSON map
    // serializes them, with the cached row texts spliced in.
    let mut body = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
    body.pop();
    body.extend_from_slice(b",\"results\":[");
    for (i, row) in results.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(row.as_bytes());
    }
    body.extend_from_slice(b"]}");
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    // cf lookups scan custom field JSON on every row (no index in NetBox).
    let scan = if filter.scans_cf {
        scanned as f64 * 0.004
    } else {
        0.0
    };
    cost(&mut resp, 75.0 + n as f64 * per_row_ms(&sel) + scan);
    resp
}

fn etag(st: &Store, ty: Ty, id: u32) -> Option<String> {
    st.row(ty, id).map(|r| format!("W/\"{}\"", iso(r.updated)))
}

fn with_etag(sim: &NetboxSim, st: &Store, ty: Ty, id: u32, mut resp: Resp) -> Resp {
    if sim.version.ver() >= (4, 6)
        && let Some(e) = etag(st, ty, id)
        && let Ok(v) = HeaderValue::from_str(&e)
    {
        resp.headers_mut().insert("etag", v);
    }
    resp
}

fn not_found(ty: Ty) -> Resp {
    let mut r = detail(
        StatusCode::NOT_FOUND,
        &format!("No {} matches the given query.", TYPES[ty].class),
    );
    cost(&mut r, 60.0);
    r
}

fn get_one(sim: &NetboxSim, req: &Req, ty: Ty, id: u32) -> Resp {
    let st = sim.read();
    let Some(row) = st.row(ty, id) else {
        return not_found(ty);
    };
    let r = Render::new(&st, req.base.clone());
    let mut resp = json_resp(StatusCode::OK, &r.render(ty, id, row, &selection(sim, req)));
    cost(&mut resp, 75.0);
    with_etag(sim, &st, ty, id, resp)
}

fn render_ids(sim: &NetboxSim, req: &Req, ty: Ty, ids: &[u32]) -> Vec<Value> {
    let st = sim.read();
    let r = Render::new(&st, req.base.clone());
    let sel = selection(sim, req);
    ids.iter()
        .filter_map(|id| st.row(ty, *id).map(|row| r.render(ty, *id, row, &sel)))
        .collect()
}

fn committed(mut r: Resp, ms: f64) -> Resp {
    r.extensions_mut().insert(Committed);
    cost(&mut r, ms);
    r
}

fn invalid(body: Value) -> Resp {
    let mut r = json_resp(StatusCode::BAD_REQUEST, &body);
    cost(&mut r, 50.0);
    r
}

fn write_err(ty: Ty, e: WriteError) -> Resp {
    match e {
        WriteError::Invalid(errs) => invalid(errs.into_value()),
        WriteError::NotFound => not_found(ty),
        WriteError::Protected(d) => detail(StatusCode::CONFLICT, &d),
    }
}

fn create(sim: &NetboxSim, req: &Req, ty: Ty) -> Resp {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Value::Array(items) = body else {
        let mut st = sim.write();
        st.request_id = req.request_id.clone();
        st.begin();
        return match st.create(ty, &body) {
            Ok(id) => {
                st.commit();
                drop(st);
                let v = render_ids(sim, req, ty, &[id]).pop().unwrap_or(Value::Null);
                committed(json_resp(StatusCode::CREATED, &v), 70.0)
            }
            Err(e) => {
                st.rollback();
                write_err(ty, e)
            }
        };
    };
    let n = items.len();
    let mut st = sim.write();
    st.request_id = req.request_id.clone();
    if sim.version.ver() >= (4, 7) {
        st.begin();
        let mut ids = Vec::new();
        let mut errors = Vec::new();
        let mut protected = false;
        for (i, it) in items.iter().enumerate() {
            match st.create(ty, it) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    protected |= matches!(e, WriteError::Protected(_));
                    errors.push(json!({"index": i, "errors": write_error_body(e)}));
                }
            }
        }
        if !errors.is_empty() {
            st.rollback();
            let status = if protected {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            let mut r = json_resp(
                status,
                &json!({"detail": format!("{} of {n} objects could not be created.", errors.len()), "errors": errors}),
            );
            cost(&mut r, 30.0 * n as f64);
            return r;
        }
        st.commit();
        drop(st);
        return committed(
            json_resp(
                StatusCode::CREATED,
                &Value::Array(render_ids(sim, req, ty, &ids)),
            ),
            (30.0 * n as f64).max(70.0),
        );
    }
    // <= 4.6: validate every item against the current state first (bare list of errors),
    // then save in turn; an in-batch collision hits the database constraint (500).
    let mut per_item = Vec::new();
    let mut any = false;
    for it in &items {
        st.begin();
        match st.create(ty, it) {
            Ok(_) => per_item.push(json!({})),
            Err(e) => {
                any = true;
                per_item.push(write_error_body(e));
            }
        }
        st.rollback();
    }
    if any {
        return invalid(Value::Array(per_item));
    }
    st.begin();
    let mut ids = Vec::new();
    for it in &items {
        match st.create(ty, it) {
            Ok(id) => ids.push(id),
            Err(_) => {
                st.rollback();
                return json_resp(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({
                    "error": "duplicate key value violates unique constraint", "exception": "IntegrityError",
                    "netbox_version": sim.version.full(), "python_version": "3.13.5"}),
                );
            }
        }
    }
    st.commit();
    drop(st);
    committed(
        json_resp(
            StatusCode::CREATED,
            &Value::Array(render_ids(sim, req, ty, &ids)),
        ),
        (30.0 * n as f64).max(70.0),
    )
}

fn if_match_failed(sim: &NetboxSim, st: &Store, req: &Req, ty: Ty, id: u32) -> Option<Resp> {
    if sim.version.ver() < (4, 6) {
        return None;
    }
    let want = req.headers.get("if-match").and_then(|h| h.to_str().ok())?;
    let current = etag(st, ty, id)?;
    if want.trim() == "*" || want.split(',').any(|w| w.trim() == current) {
        return None;
    }
    let r = detail(StatusCode::PRECONDITION_FAILED, "Precondition failed.");
    Some(with_etag(sim, st, ty, id, r))
}

fn update_one(sim: &NetboxSim, req: &Req, ty: Ty, id: u32) -> Resp {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let partial = req.method == Method::PATCH;
    let mut st = sim.write();
    if st.row(ty, id).is_none() {
        return not_found(ty);
    }
    if let Some(r) = if_match_failed(sim, &st, req, ty, id) {
        return r;
    }
    st.request_id = req.request_id.clone();
    st.begin();
    match st.update(ty, id, &body, partial) {
        Ok(()) => {
            st.commit();
            drop(st);
            let v = render_ids(sim, req, ty, &[id]).pop().unwrap_or(Value::Null);
            let st = sim.read();
            let r = with_etag(sim, &st, ty, id, json_resp(StatusCode::OK, &v));
            committed(r, 130.0)
        }
        Err(e) => {
            st.rollback();
            write_err(ty, e)
        }
    }
}

fn delete_one(sim: &NetboxSim, req: &Req, ty: Ty, id: u32) -> Resp {
    // An optional body may carry `changelog_message`.
    let message = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|b| b.get("changelog_message")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut st = sim.write();
    st.request_id = req.request_id.clone();
    st.changelog_message = message;
    st.begin();
    match st.delete(ty, id) {
        Ok(()) => {
            st.commit();
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            committed(r, 100.0)
        }
        Err(e) => {
            st.rollback();
            write_err(ty, e)
        }
    }
}

/// Checks a bulk PATCH/PUT/DELETE body: a list of objects with distinct ids.
fn bulk_items(sim: &NetboxSim, req: &Req) -> Result<Vec<(u32, Value)>, Box<Resp>> {
    let body = parse_body(req)?;
    let Value::Array(items) = body else {
        let got = if body.is_object() { "dict" } else { "str" };
        return Err(Box::new(detail(
            StatusCode::BAD_REQUEST,
            &format!("Expected a list of objects, but got {got}."),
        )));
    };
    let n = items.len();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, it) in items.into_iter().enumerate() {
        match it.get("id").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))) {
            Some(id) if seen.insert(id) => out.push((id as u32, it)),
            Some(id) => errors.push(json!({"index": i, "errors": {"id": [format!("Object with ID {id} is listed more than once.")]}})),
            None if sim.version.ver() >= (4, 7) => errors.push(json!({"index": i, "errors": {"id": ["This field is required."]}})),
            None => return Err(Box::new(invalid(json!({"id": ["This field is required."]})))),
        }
    }
    if !errors.is_empty() {
        return Err(Box::new(invalid(
            json!({"detail": format!("{} of {n} objects failed validation.", errors.len()), "errors": errors}),
        )));
    }
    Ok(out)
}

fn bulk_update(sim: &NetboxSim, req: &Req, ty: Ty) -> Resp {
    let items = match bulk_items(sim, req) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let n = items.len();
    let partial = req.method == Method::PATCH;
    let new_style = sim.version.ver() >= (4, 7);
    let mut st = sim.write();
    st.request_id = req.request_id.clone();
    let missing: Vec<u32> = items
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| st.row(ty, *id).is_none())
        .collect();
    if new_style && !missing.is_empty() {
        let errors: Vec<Value> =
            missing.iter().map(|id| json!({"id": id, "errors": {"id": [format!("Object with ID {id} does not exist")]}})).collect();
        return invalid(
            json!({"detail": format!("{} of {n} objects could not be found.", missing.len()), "errors": errors}),
        );
    }
    st.begin();
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    for (id, body) in &items {
        if missing.contains(id) {
            continue; // <= 4.6 filters pk__in: unknown ids are skipped silently.
        }
        match st.update(ty, *id, body, partial) {
            Ok(()) => ids.push(*id),
            Err(e) if new_style => errors.push(json!({"id": id, "errors": write_error_body(e)})),
            Err(e) => {
                st.rollback();
                return write_err(ty, e);
            }
        }
    }
    if !errors.is_empty() {
        st.rollback();
        return invalid(
            json!({"detail": format!("{} of {n} objects could not be updated.", errors.len()), "errors": errors}),
        );
    }
    st.commit();
    drop(st);
    committed(
        json_resp(
            StatusCode::OK,
            &Value::Array(render_ids(sim, req, ty, &ids)),
        ),
        (25.0 * n as f64).max(130.0),
    )
}

fn bulk_delete(sim: &NetboxSim, req: &Req, ty: Ty) -> Resp {
    let items = match bulk_items(sim, req) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let n = items.len();
    let mut st = sim.write();
    st.request_id = req.request_id.clone();
    let missing: Vec<u32> = items
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| st.row(ty, *id).is_none())
        .collect();
    if sim.version.ver() >= (4, 7) && !missing.is_empty() {
        let errors: Vec<Value> =
            missing.iter().map(|id| json!({"id": id, "errors": {"id": [format!("Object with ID {id} does not exist")]}})).collect();
        return invalid(
            json!({"detail": format!("{} of {n} objects could not be found.", missing.len()), "errors": errors}),
        );
    }
    st.begin();
    for (id, item) in &items {
        if missing.contains(id) {
            continue;
        }
        st.changelog_message = item
            .get("changelog_message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Err(e) = st.delete(ty, *id) {
            st.rollback();
            return write_err(ty, e);
        }
    }
    st.commit();
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    committed(r, (25.0 * n as f64).max(100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!("4.7".parse::<NetboxVersion>().unwrap().full(), "4.7.3");
        assert_eq!("4.1".parse::<NetboxVersion>().unwrap().full(), "4.1.11");
        assert!("4.8".parse::<NetboxVersion>().is_err());
        assert!("5.0".parse::<NetboxVersion>().is_err());
    }

    #[test]
    fn tokens_have_netbox_shapes() {
        let (v2, v1, ro) = make_tokens(1);
        assert!(v2.starts_with("nbt_") && v2.len() == 4 + 12 + 1 + 40);
        assert_eq!(v1.len(), 40);
        assert_ne!(v2, ro);
    }
}
