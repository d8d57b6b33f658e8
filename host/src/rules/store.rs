//! The per-call `Store`: its WASI context (which grants nothing), limiter, fuel and deadline,
//! and the clocks a module sees (virtual: they never reveal the host's time).
//!
//! A store lives for one batch call. A trapped instance is poisoned ("cannot enter component
//! instance"), and a fresh store costs ~10 µs, so there is no reuse to get wrong.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView,
};

use super::RulesModule;
use super::limits::{GUEST_STDERR_CAPTURE_BYTES, Limiter, Limits};

/// Host state of one call.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) stderr: MemoryOutputPipe,
    /// The embedded default rules, for a module that imports them (`super::defaults`).
    pub(crate) defaults: Option<RulesModule>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The fixed bytes behind `wasi:random`: rules must be deterministic, and Rust's `HashMap`
/// seeds itself from it.
const RANDOM_BYTES: [u8; 8] = [0x5e, 0xed, 0x0f, 0x0a, 0xbc, 0x12, 0x34, 0x77];

/// The wall clock a module sees: always the Unix epoch (1970-01-01T00:00:00Z), so a module
/// learns nothing of the host's time and answers the same on every run.
struct EpochWallClock;

impl HostWallClock for EpochWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The monotonic clock a module sees: it starts at 0 in every store and advances 1 µs per
/// reading, so a language runtime that measures elapsed time (or waits for the clock to move)
/// sees it move, deterministically, and nothing of the host's time or load leaks in.
#[derive(Default)]
struct CountingMonotonicClock {
    readings: std::sync::atomic::AtomicU64,
}

impl HostMonotonicClock for CountingMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        let n = self
            .readings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        n.saturating_mul(1_000)
    }
}

/// A store for one call, fuel and deadline not yet set. `defaults` are the default rules the
/// module imports, if it does.
pub(crate) fn new_store(
    engine: &Engine,
    limits: &Limits,
    defaults: Option<RulesModule>,
) -> Store<State> {
    let stderr = MemoryOutputPipe::new(GUEST_STDERR_CAPTURE_BYTES);
    // WasiCtxBuilder's defaults deny everything we care about, and we rely on that: no
    // environment variables, no arguments, no preopened directories (so `wasi:filesystem` has
    // nothing to open), no socket address allowed and no name lookup (so `wasi:sockets` cannot
    // connect), stdin closed, stdout discarded. Python and JavaScript runtimes import all of
    // them, so the loader lets them be imported (`loader::check_imports`) and this context
    // makes them inert. The clocks are virtual (above) and randomness is deterministic, so a
    // module stays a pure function of its input (the no-op memo relies on it); stderr is
    // captured (bounded) so a panic message can be shown in the error.
    let wasi = WasiCtx::builder()
        .stderr(stderr.clone())
        .wall_clock(EpochWallClock)
        .monotonic_clock(CountingMonotonicClock::default())
        .secure_random(Deterministic::new(RANDOM_BYTES.to_vec()))
        .insecure_random(Deterministic::new(RANDOM_BYTES.to_vec()))
        .insecure_random_seed(0)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let mut store = Store::new(
        engine,
        State {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            stderr,
            defaults,
        },
    );
    store.limiter(|s| &mut s.limiter);
    if let Some(ticks) = limits.deadline_ticks() {
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
    }
    store
}

impl State {
    /// The end of what the guest wrote to stderr, lossily decoded.
    pub(crate) fn stderr_tail(&self) -> String {
        const SHOW: usize = 2048;
        let bytes = self.stderr.contents();
        let start = bytes.len().saturating_sub(SHOW);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}
