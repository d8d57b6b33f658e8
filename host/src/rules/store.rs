//! The per-call `Store`: its WASI context (which grants nothing), limiter, fuel and deadline.
//!
//! A store lives for one batch call. A trapped instance is poisoned ("cannot enter component
//! instance"), and a fresh store costs ~10 µs, so there is no reuse to get wrong.

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{Deterministic, WasiCtx, WasiCtxView, WasiView};

use super::limits::{GUEST_STDERR_CAPTURE_BYTES, Limiter, Limits};

/// Host state of one call.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) stderr: MemoryOutputPipe,
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

/// A store for one call, fuel and deadline not yet set.
pub(crate) fn new_store(engine: &Engine, limits: &Limits) -> Store<State> {
    let stderr = MemoryOutputPipe::new(GUEST_STDERR_CAPTURE_BYTES);
    // WasiCtxBuilder's defaults deny everything we care about, and we rely on that: no
    // environment variables, no arguments, no preopened directories (so `wasi:filesystem` has
    // nothing to open), no socket address allowed and no name lookup (so `wasi:sockets` cannot
    // connect), stdin closed, stdout discarded. The loader additionally refuses components that
    // import filesystem, sockets or clocks at all (`loader::check_imports`), so the clocks here
    // are never reached. Randomness is made deterministic; stderr is captured (bounded) so a
    // panic message can be shown in the error.
    let wasi = WasiCtx::builder()
        .stderr(stderr.clone())
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
