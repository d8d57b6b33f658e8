//! A counting, fault-injecting HTTP proxy in front of a NetBox, simulated or real, so the
//! fault, kill and counting tests have one body for both.
//!
//! It serves plain HTTP on 127.0.0.1 and forwards every request to the upstream NetBox. In front
//! of the forwarding sits the simulators' own middleware ([`crate::service::layer`]), so its
//! counters count exactly as the simulated NetBox counts (every request on arrival, rejected and
//! failed writes included; a bulk request once) and its faults are the simulator's faults: 5xx and
//! 429 with `Retry-After`, timeouts held past the client's timeout, write-only faults, and an
//! answer dropped after NetBox committed the write (the request is forwarded, NetBox answers 2xx,
//! the proxy closes the connection instead of passing the answer on).
//!
//! **Kill points by committed write.** A write counts as committed when NetBox has answered it
//! with a 2xx, not when it arrives. [`NetboxProxy::hold_after_commits`] arms a point: once the
//! k-th write is committed, its answer and every later request are held (nothing more reaches
//! NetBox, no answer reaches the client) until [`NetboxProxy::release`], which drops them. A test
//! waits for [`NetboxProxy::holding`] and kills the client: the k-th write is in NetBox and the
//! client never learnt it, and no (k+1)-th write can race in before the kill.

use crate::service::{
    self, Committed, DropConnection, FaultPatch, FaultSettings, Profile, SeededDraws, ServiceCtl,
    ServiceKind, normalize_path,
};
use crate::{CounterSnapshot, serve};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, Response, StatusCode};
use axum::middleware::from_fn_with_state;
use axum_server::Handle;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Largest request body forwarded (NetBox's own limit is far below).
const MAX_FORWARDED_BODY: usize = 256 * 1024 * 1024;
/// Time the proxy gives NetBox for one request: longer than any client timeout in the tests.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// How long an idle connection to NetBox is kept for reuse: below gunicorn's keep-alive (2 s),
/// so the proxy never sends a request down a connection gunicorn is closing (a race that ends
/// in a connection error, which the proxy can only answer with a 502 NetBox never gave).
const UPSTREAM_IDLE: Duration = Duration::from_secs(1);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream URL does not parse.
    #[error("proxy upstream {url}: {reason}")]
    Upstream {
        /// The URL given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The runtime or the listening socket could not be made.
    #[error("proxy: {0}")]
    Io(#[from] std::io::Error),
}

/// Forwarding state shared by the handler and the test.
struct Forward {
    upstream: String,
    client: reqwest::Client,
    committed: AtomicU64,
    /// `METHOD /path` of each committed write, in commit order.
    committed_log: Mutex<Vec<String>>,
    /// The armed kill point (committed writes), 0: none.
    hold_at: AtomicU64,
    /// True while answers and requests are held.
    holding: watch::Sender<bool>,
    /// Requests sent to NetBox and not answered yet.
    in_flight: AtomicU64,
}

/// Counts a request in flight to NetBox until dropped.
struct InFlight(Arc<Forward>);

impl InFlight {
    fn start(fwd: Arc<Forward>) -> Self {
        fwd.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(fwd)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running proxy; stops when dropped.
pub struct NetboxProxy {
    url: String,
    ctl: Arc<ServiceCtl>,
    fwd: Arc<Forward>,
    handle: Handle,
    // Kept last: the server stops before its runtime goes.
    _rt: serve::ServiceRuntime,
}

impl NetboxProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Result<NetboxProxy, ProxyError> {
        let upstream = upstream.trim_end_matches('/').to_string();
        reqwest::Url::parse(&upstream).map_err(|e| ProxyError::Upstream {
            url: upstream.clone(),
            reason: e.to_string(),
        })?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .pool_idle_timeout(UPSTREAM_IDLE)
            .build()
            .map_err(|e| ProxyError::Upstream {
                url: upstream.clone(),
                reason: e.to_string(),
            })?;
        let rt = serve::ServiceRuntime::new("netbox-proxy")?;
        let (listener, addr) = serve::bind_loopback(0)?;
        let ctl = ServiceCtl::new(ServiceKind::Netbox, Profile::Zero, None);
        let fwd = Arc::new(Forward {
            upstream,
            client,
            committed: AtomicU64::new(0),
            committed_log: Mutex::new(Vec::new()),
            hold_at: AtomicU64::new(0),
            holding: watch::channel(false).0,
            in_flight: AtomicU64::new(0),
        });
        let router = Router::new()
            .fallback(forward)
            .with_state(fwd.clone())
            .layer(from_fn_with_state(ctl.clone(), service::layer));
        let handle = Handle::new();
        serve::spawn_http(rt.handle(), listener, router, handle.clone());
        Ok(NetboxProxy {
            url: format!("http://{addr}"),
            ctl,
            fwd,
            handle,
            _rt: rt,
        })
    }

    /// The proxy's base URL (`http://127.0.0.1:PORT`), to give the client instead of NetBox's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Changes the faults; absent keys keep their value (as the simulator's control API).
    pub fn set_faults(&self, patch: &FaultPatch) {
        self.ctl
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply(patch);
        if let Some(seed) = patch.seed {
            *self.ctl.fault_rng.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(SeededDraws::new(seed));
        }
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        *self.ctl.faults.lock().unwrap_or_else(|e| e.into_inner()) = FaultSettings::default();
        *self.ctl.fault_rng.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Requests so far, counted as the simulated NetBox counts them (under `netbox`).
    pub fn counters(&self) -> CounterSnapshot {
        CounterSnapshot {
            netbox: self.ctl.counters.methods(),
            pve: BTreeMap::new(),
            paths: BTreeMap::from([("netbox".to_string(), self.ctl.counters.paths())]),
            netbox_max_writes_in_flight: self.ctl.counters.max_writes_in_flight(),
        }
    }

    /// Writes NetBox answered with a 2xx so far.
    pub fn committed_writes(&self) -> u64 {
        self.fwd.committed.load(Ordering::SeqCst)
    }

    /// `METHOD /path` (numeric segments as `{id}`) of every committed write, in order.
    pub fn committed_log(&self) -> Vec<String> {
        self.fwd
            .committed_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Zeroes the counters and the committed-write log.
    pub fn reset_counters(&self) {
        self.ctl.counters.reset();
        self.fwd.committed.store(0, Ordering::SeqCst);
        self.fwd
            .committed_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Arms a kill point: once `k` writes (counted from the last reset) are committed, hold the
    /// k-th answer and everything after it.
    pub fn hold_after_commits(&self, k: u64) {
        self.fwd.hold_at.store(k, Ordering::SeqCst);
    }

    /// True once the armed point was reached (answers and requests are being held).
    pub fn holding(&self) -> bool {
        *self.fwd.holding.borrow()
    }

    /// Requests forwarded to NetBox whose answer has not come back yet. After a client is
    /// killed, NetBox may still be working on (and commit) what it sent: wait for 0 first.
    pub fn in_flight(&self) -> u64 {
        self.fwd.in_flight.load(Ordering::SeqCst)
    }

    /// Disarms the kill point and drops every held request's connection without an answer.
    pub fn release(&self) {
        self.fwd.hold_at.store(0, Ordering::SeqCst);
        self.fwd.holding.send_replace(false);
    }
}

impl Drop for NetboxProxy {
    fn drop(&mut self) {
        self.release();
        self.handle.shutdown();
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Headers of one hop only, or recomputed by the next hop.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            // The body is passed on as it comes: ask NetBox for an unencoded one.
            | "accept-encoding"
    )
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp
}

/// A response that makes the server close the connection without answering.
fn dropped() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    resp.extensions_mut().insert(DropConnection);
    resp
}

/// Waits while the proxy holds, then drops the connection.
async fn hold(fwd: &Forward) -> Response<Body> {
    let mut rx = fwd.holding.subscribe();
    let _ = rx.wait_for(|held| !*held).await;
    dropped()
}

async fn forward(State(fwd): State<Arc<Forward>>, req: Request) -> Response<Body> {
    if *fwd.holding.borrow() {
        return hold(&fwd).await;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_FORWARDED_BODY).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("proxy: request body: {e}")),
    };
    let target = format!(
        "{}{}",
        fwd.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut out = fwd.client.request(parts.method.clone(), &target).body(body);
    for (name, value) in &parts.headers {
        // The client's Host is kept, so the URLs NetBox renders point at the proxy.
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    // The exchange with NetBox runs on its own task: a client that goes away (killed) does not
    // cancel it, just as NetBox goes on with a request whose client left; its commit is counted.
    let exchange = tokio::spawn(exchange(
        fwd.clone(),
        out,
        parts.method.clone(),
        parts.uri.path().to_string(),
    ));
    let resp = match exchange.await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("proxy: exchange: {e}")),
    };
    if *fwd.holding.borrow() {
        return hold(&fwd).await;
    }
    resp
}

/// Sends one request to NetBox and builds the answer to pass on, counting a committed write.
async fn exchange(
    fwd: Arc<Forward>,
    out: reqwest::RequestBuilder,
    method: Method,
    path: String,
) -> Response<Body> {
    let sent = InFlight::start(fwd.clone());
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("proxy: upstream: {e}")),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("proxy: upstream body: {e}"),
            );
        }
    };
    drop(sent);
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            resp.headers_mut().append(name, value.clone());
        }
    }
    if !is_read(&method) && status.is_success() {
        resp.extensions_mut().insert(Committed);
        let n = {
            // One lock for the count and the log, so the log's order is the count's order.
            let mut log = fwd.committed_log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(format!("{method} {}", normalize_path(&path)));
            fwd.committed.fetch_add(1, Ordering::SeqCst) + 1
        };
        let at = fwd.hold_at.load(Ordering::SeqCst);
        if at != 0 && n >= at {
            fwd.holding.send_replace(true);
        }
    }
    resp
}
