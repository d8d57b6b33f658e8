//! What every simulated service shares: request counters, latency profile, worker pool and
//! injected faults, applied by one axum middleware in front of the service's own router.
//!
//! Handlers report their modelled cost (a `Cost` response extension); the middleware turns
//! it into sleep time while holding a worker permit, so a bounded pool reproduces NetBox's
//! throughput ceiling. Faults (latency, jitter, 5xx, timeouts, connection drops after a
//! committed write) are decided here, never in handlers.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode};
use axum::middleware::Next;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long a "timeout" fault holds a request before answering 504 (60 s: longer than any
/// sane client timeout, so the client gives up first).
pub const DEFAULT_TIMEOUT_HOLD_MS: u64 = 60_000;

/// Which simulated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// The NetBox simulator.
    Netbox,
    /// The Proxmox VE simulators (all endpoints).
    Pve,
}

/// Latency profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// No modelled latency, no worker limit: for tests.
    #[default]
    Zero,
    /// NetBox 4.7.3 latencies measured on a 2-core machine (netbox-live.md 2.5), 2 NetBox
    /// workers, ~20 ms per Proxmox request.
    Realistic,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zero" => Ok(Profile::Zero),
            "realistic" => Ok(Profile::Realistic),
            other => Err(format!("unknown profile '{other}' (zero|realistic)")),
        }
    }
}

/// Injected faults of one service. Rates are probabilities in `0..=1` per request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultSettings {
    /// Added to every request.
    pub latency_ms: f64,
    /// Uniform extra `0..jitter_ms`.
    pub jitter_ms: f64,
    /// Share of requests answered with `error_status` before reaching the handler.
    pub error_rate: f64,
    /// Share of requests held for `timeout_hold_ms`, then answered 504 (the client should give up first).
    pub timeout_rate: f64,
    /// Share of successful writes whose connection is dropped after the commit, without a response.
    pub drop_after_commit_rate: f64,
    /// `Retry-After` seconds on injected errors (0: no header).
    pub retry_after_s: u64,
    /// Status of injected errors (default 503).
    pub error_status: u16,
    /// How long a timeout fault holds the request.
    pub timeout_hold_ms: u64,
    /// Seed of the fault draws, for a repeatable sequence (a test that must see a fault); the
    /// draws restart from it whenever it is set. Reads and writes draw from streams of their own,
    /// so the n-th write meets the same draw however the concurrent reads around it arrive.
    /// `None`: fresh randomness.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Errors and timeouts hit only writes (POST, PUT, PATCH, DELETE): reads answer normally, so
    /// a run gets past its reads to the writes the test is about.
    #[serde(default)]
    pub writes_only: bool,
}

impl Default for FaultSettings {
    fn default() -> Self {
        FaultSettings {
            latency_ms: 0.0,
            jitter_ms: 0.0,
            error_rate: 0.0,
            timeout_rate: 0.0,
            drop_after_commit_rate: 0.0,
            retry_after_s: 0,
            error_status: 503,
            timeout_hold_ms: DEFAULT_TIMEOUT_HOLD_MS,
            seed: None,
            writes_only: false,
        }
    }
}

/// A partial update of [`FaultSettings`]: absent keys keep their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPatch {
    /// Service to change (required on the control API).
    #[serde(default)]
    pub service: Option<ServiceKind>,
    /// See [`FaultSettings::latency_ms`].
    pub latency_ms: Option<f64>,
    /// See [`FaultSettings::jitter_ms`].
    pub jitter_ms: Option<f64>,
    /// See [`FaultSettings::error_rate`].
    pub error_rate: Option<f64>,
    /// See [`FaultSettings::timeout_rate`].
    pub timeout_rate: Option<f64>,
    /// See [`FaultSettings::drop_after_commit_rate`].
    pub drop_after_commit_rate: Option<f64>,
    /// See [`FaultSettings::retry_after_s`].
    pub retry_after_s: Option<u64>,
    /// See [`FaultSettings::error_status`].
    pub error_status: Option<u16>,
    /// See [`FaultSettings::timeout_hold_ms`].
    pub timeout_hold_ms: Option<u64>,
    /// See [`FaultSettings::seed`].
    pub seed: Option<u64>,
    /// See [`FaultSettings::writes_only`].
    pub writes_only: Option<bool>,
}

impl FaultSettings {
    pub(crate) fn apply(&mut self, p: &FaultPatch) {
        macro_rules! set {
            ($f:ident) => {
                if let Some(v) = p.$f {
                    self.$f = v;
                }
            };
        }
        set!(latency_ms);
        set!(jitter_ms);
        set!(error_rate);
        set!(timeout_rate);
        set!(drop_after_commit_rate);
        set!(retry_after_s);
        set!(error_status);
        set!(timeout_hold_ms);
        set!(writes_only);
        if p.seed.is_some() {
            self.seed = p.seed;
        }
    }
}

/// Method names counted separately; others are counted under `OTHER`.
const COUNTED_METHODS: [&str; 6] = ["GET", "POST", "PATCH", "PUT", "DELETE", "OTHER"];

/// Request counters of one service.
#[derive(Default)]
pub(crate) struct Counters {
    by_method: [AtomicU64; 6],
    by_path: Mutex<HashMap<String, u64>>,
    /// Writes between arrival and answer now, and the most seen at once since the last reset.
    writes_in_flight: AtomicU64,
    max_writes_in_flight: AtomicU64,
}

/// Counts one write in flight until dropped (the answer is built, or the handler is gone).
struct WriteInFlight<'a>(&'a Counters);

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        self.0.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Counters {
    fn record(&self, method: &Method, path: &str) {
        let i = COUNTED_METHODS
            .iter()
            .position(|m| *m == method.as_str())
            .unwrap_or(5);
        self.by_method[i].fetch_add(1, Ordering::Relaxed);
        let key = format!("{} {}", method.as_str(), normalize_path(path));
        *self
            .by_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    /// Counts a write as in flight for the guard's life; reads are not counted.
    fn write_started(&self, method: &Method) -> Option<WriteInFlight<'_>> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        let now = self.writes_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_writes_in_flight.fetch_max(now, Ordering::SeqCst);
        Some(WriteInFlight(self))
    }

    pub(crate) fn max_writes_in_flight(&self) -> u64 {
        self.max_writes_in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn methods(&self) -> BTreeMap<String, u64> {
        COUNTED_METHODS
            .iter()
            .enumerate()
            .map(|(i, m)| (m.to_string(), self.by_method[i].load(Ordering::Relaxed)))
            .filter(|(m, n)| m != "OTHER" || *n > 0)
            .collect()
    }

    pub(crate) fn paths(&self) -> BTreeMap<String, u64> {
        self.by_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub(crate) fn reset(&self) {
        for c in &self.by_method {
            c.store(0, Ordering::Relaxed);
        }
        // The writes in flight now are still in flight: the most since the reset starts there.
        self.max_writes_in_flight.store(
            self.writes_in_flight.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
        self.by_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Replaces numeric path segments by `{id}`, so 100k VMs give one counter key, not 100k.
pub(crate) fn normalize_path(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Modelled server-side cost of a request, set by handlers as a response extension; the
/// middleware sleeps for it when the profile is `realistic`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost(pub(crate) Duration);

/// A hold set by a handler that applies in every profile (a test's stalled guest agent); the
/// middleware answers no sooner than it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hold(pub(crate) Duration);

/// Marker extension: the request was a committed write (eligible for drop-after-commit).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed;

/// Marker extension: drop the connection instead of sending this response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// The seeded fault draws: one stream for reads, one for writes. Reads run in parallel and
/// reach the service in an order that varies from run to run; with one shared stream, which
/// write met a fault (and whether any did) would vary with them.
pub(crate) struct SeededDraws {
    reads: rand::rngs::StdRng,
    writes: rand::rngs::StdRng,
}

impl SeededDraws {
    pub(crate) fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        SeededDraws {
            reads: rand::rngs::StdRng::seed_from_u64(seed),
            // Any other seed: the two streams must not repeat each other.
            writes: rand::rngs::StdRng::seed_from_u64(seed ^ 0x5bd1_e995_9e37_79b9),
        }
    }

    fn stream(&mut self, method: &Method) -> &mut rand::rngs::StdRng {
        if is_read(method) {
            &mut self.reads
        } else {
            &mut self.writes
        }
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Per-service runtime controls shared by the middleware and the control API.
pub(crate) struct ServiceCtl {
    pub(crate) kind: ServiceKind,
    pub(crate) profile: Profile,
    pub(crate) faults: Mutex<FaultSettings>,
    /// The seeded fault draws while `faults.seed` is set.
    pub(crate) fault_rng: Mutex<Option<SeededDraws>>,
    pub(crate) counters: Counters,
    /// Bounded worker pool (NetBox realistic: 2 gunicorn-like workers); `None` = unbounded.
    workers: Option<Semaphore>,
}

impl ServiceCtl {
    pub(crate) fn new(kind: ServiceKind, profile: Profile, workers: Option<usize>) -> Arc<Self> {
        Arc::new(ServiceCtl {
            kind,
            profile,
            faults: Mutex::new(FaultSettings::default()),
            fault_rng: Mutex::new(None),
            counters: Counters::default(),
            workers: workers.map(Semaphore::new),
        })
    }

    pub(crate) fn faults(&self) -> FaultSettings {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The middleware: count, maybe inject a fault, hold a worker for the modelled latency.
pub(crate) async fn layer(
    State(ctl): State<Arc<ServiceCtl>>,
    req: Request,
    next: Next,
) -> Response<Body> {
    ctl.counters.record(req.method(), req.uri().path());
    let _write = ctl.counters.write_started(req.method());
    let faults = ctl.faults();
    let draw = |r: &mut dyn rand::RngCore| {
        (
            faults.error_rate > 0.0 && r.random::<f64>() < faults.error_rate,
            faults.timeout_rate > 0.0 && r.random::<f64>() < faults.timeout_rate,
            faults.drop_after_commit_rate > 0.0
                && r.random::<f64>() < faults.drop_after_commit_rate,
            if faults.jitter_ms > 0.0 {
                r.random::<f64>() * faults.jitter_ms
            } else {
                0.0
            },
        )
    };
    let (mut fail, mut timeout, drop_roll, jitter) = {
        let mut seeded = ctl.fault_rng.lock().unwrap_or_else(|e| e.into_inner());
        match seeded.as_mut() {
            Some(r) => draw(r.stream(req.method())),
            None => draw(&mut rand::rng()),
        }
    };
    if faults.writes_only && is_read(req.method()) {
        (fail, timeout) = (false, false);
    }
    let extra = Duration::from_secs_f64((faults.latency_ms + jitter).max(0.0) / 1000.0);
    let _permit = match &ctl.workers {
        Some(s) => s.acquire().await.ok(),
        None => None,
    };
    let started = Instant::now();
    if timeout {
        tokio::time::sleep(Duration::from_millis(faults.timeout_hold_ms)).await;
        return fault_response(ctl.kind, StatusCode::GATEWAY_TIMEOUT, 0);
    }
    if fail {
        sleep_until(started, extra).await;
        let status =
            StatusCode::from_u16(faults.error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return fault_response(ctl.kind, status, faults.retry_after_s);
    }
    let mut resp = next.run(req).await;
    let modelled = match (ctl.profile, resp.extensions().get::<Cost>()) {
        (Profile::Realistic, Some(Cost(d))) => *d,
        _ => Duration::ZERO,
    };
    let modelled = resp
        .extensions()
        .get::<Hold>()
        .map_or(modelled, |Hold(hold)| modelled.max(*hold));
    sleep_until(started, modelled + extra).await;
    if drop_roll && resp.extensions().get::<Committed>().is_some() {
        resp.extensions_mut().insert(DropConnection);
    }
    resp
}

/// How much of an injected delay is slept on a blocking thread rather than tokio's timer.
/// Why: tokio's timer has millisecond granularity and rounds up; measured on the bench machine,
/// `tokio::time::sleep(20 ms)` took 21.3 ms on average, so "20 ms per request" was 6.5 % more
/// and every bound ratio measured against the simulators carried that error. Finishing the last
/// 2 ms with `std::thread::sleep` (nanosecond timer) brought the mean to 20.3-20.5 ms.
const PRECISE_TAIL: Duration = Duration::from_millis(2);

/// Sleeps until `total` has passed since `started`, within a fraction of a millisecond.
async fn sleep_until(started: Instant, total: Duration) {
    let deadline = started + total;
    if let Some(coarse) = total
        .checked_sub(PRECISE_TAIL)
        .and_then(|t| t.checked_sub(started.elapsed()))
    {
        tokio::time::sleep(coarse).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        // A blocking thread holds only the tail (at most PRECISE_TAIL), so a burst of requests
        // needs few of them.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
    }
}

fn fault_response(kind: ServiceKind, status: StatusCode, retry_after_s: u64) -> Response<Body> {
    let (ctype, body) = match kind {
        // What a reverse proxy in front of gunicorn answers.
        ServiceKind::Netbox => (
            "text/html",
            format!(
                "<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>\n",
                status
            ),
        ),
        ServiceKind::Pve => (
            "application/json;charset=UTF-8",
            "{\"data\":null}".to_string(),
        ),
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static(ctype));
    if retry_after_s > 0 {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(retry_after_s));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// The n-th write meets the same draw however many reads came before it.
    #[test]
    fn seeded_writes_draw_the_same_whatever_the_reads_around_them() {
        let writes_after = |reads_between: usize| {
            let mut draws = SeededDraws::new(7);
            (0..20)
                .map(|_| {
                    for _ in 0..reads_between {
                        draws.stream(&Method::GET).random::<f64>();
                    }
                    draws.stream(&Method::POST).random::<f64>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(writes_after(0), writes_after(3));
        let mut reads = SeededDraws::new(7);
        let first_read = reads.stream(&Method::GET).random::<f64>();
        assert_ne!(
            first_read,
            writes_after(0)[0],
            "the two streams repeat each other"
        );
    }
}
