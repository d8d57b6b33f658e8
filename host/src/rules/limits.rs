//! Per-call resource limits of a rule module: fuel, memory and an optional wall-clock deadline.
//!
//! Every batch call gets a fresh `Store`, so every limit here is per batch call. How a call's run
//! time is bounded is the [`Metering`] of the runtime (one engine per process, so one per
//! runtime): the wall-clock deadline (epoch interruption, a ticker thread) by default, because it
//! costs a compare per loop header where fuel costs a counter update per basic block (fuel was
//! ~15% of a default-rules call); or fuel, which is deterministic (the same module and input
//! always stop at the same point) and budgetable, so `rules test` and `rules eval` use it to
//! report the fuel a fixture used, as Shopify's function-runner does. With fuel, a deadline may
//! still be set as a second bound.

use std::time::Duration;

use wasmtime::{PoolingAllocationConfig, ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Fuel for a call with no items. Why: a Rust module's per-call set-up (parsing `settings`,
/// indexing `known`) costs a few hundred thousand units, but a JavaScript module's runtime
/// (componentize-js) spends ~15-20 M on any call; 200 M leaves 10x over that (BENCHMARKS.md).
pub const DEFAULT_FUEL_BASE: u64 = 200_000_000;

/// Fuel for instantiating the module before each call (its start-up code), apart from the call's
/// budget so the budget measures the call alone. Why: a Rust component starts in a few thousand
/// units; 10 M stops a module stuck in its start function without ever limiting a real one.
pub const INSTANTIATE_FUEL: u64 = 10_000_000;

/// Fuel of the `info` call made when a module is loaded. Why: `info` returns three strings;
/// a fixed budget keeps loading independent of the configured per-call limits.
pub const LOAD_FUEL: u64 = 10_000_000;

/// Fuel per item of a batch (guest, record or pair). Why: per VM and `reconcile` call, with two
/// NICs, four IPs and two disks, the default rules use ~0.3 M units, the example site's rules in
/// Python ~3 M and in JavaScript ~57 M in batches of 100 (more per VM in larger batches: its
/// engine's cost grows with the batch; `rules bench --fuel` prints the figure; BENCHMARKS.md);
/// 100 M fits all three. Fuel only meters `rules test`, `rules eval` and `rules bench --fuel`,
/// where the deadline still stops a runaway loop.
pub const DEFAULT_FUEL_PER_ITEM: u64 = 100_000_000;

/// Linear memory per store, in bytes. Why: a batch of 1000 guests with full configs and the
/// context is a few MB inside the guest; 256 MiB is ample headroom and still bounds a memory hog
/// well below what a small sync host has.
pub const DEFAULT_MEMORY_BYTES: usize = 256 << 20;

/// Table elements per store. Why: Rust components use a few hundred (function pointers); the
/// wasmtime default is unlimited.
pub const DEFAULT_TABLE_ELEMENTS: usize = 100_000;

/// Component instances a runtime's pool holds at once, i.e. concurrent calls. Why: the sync calls
/// the rules on one thread per core (`parallel::threads`, capped at this); 32 leaves room for
/// machines with more cores and for parallel callers of a shared `RulesModule` while
/// each memory slot reserves only address space (~4 GiB, for bounds-check-free code), not memory.
pub const POOL_INSTANCES: u32 = 32;

/// Linear memory, in bytes, a pool slot keeps resident between calls. Why: a call of 1000 VMs
/// touches ~5 MiB of guest memory; with the memory kept, wasmtime resets only the pages the call
/// dirtied instead of unmapping them, so the next call does not fault every page in again.
/// Bounded by the memory limit, and at most this much RSS per slot in use.
pub const LINEAR_MEMORY_KEEP_RESIDENT_BYTES: usize = 32 << 20;

/// Table memory, in bytes, a pool slot keeps resident. Why: a Rust component's tables hold a few
/// hundred function references (a few KiB); the same reasoning as for linear memory.
pub const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;

/// The default wall-clock deadline of a call. Why: a batch of 1000 VMs takes ~0.1-0.5 s in the
/// default rules, ~1 s in the example site's rules in Python and ~4.5 s in JavaScript without
/// children (an interpreter; with children a JavaScript module needs `batch_size = 100`:
/// BENCHMARKS.md); 30 s leaves ~6x on a slow, busy host, and still stops a runaway module within
/// half a minute (every batch of a sync gets its own deadline).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// How often the epoch ticker thread advances the engine's epoch when a deadline is set. Why:
/// 10 ms is the granularity wasmtime's examples use; a deadline is rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a guest's stderr kept per call, to show a panic message in the error. Why: a panic
/// message is a few hundred bytes; more is noise. Writes beyond it fail like a closed pipe.
pub const GUEST_STDERR_CAPTURE_BYTES: usize = 16 << 10;

/// How a runtime bounds the run time of a call. Fixed per runtime: it changes the compiled code
/// (and so the compiled-module cache key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Metering {
    /// The wall-clock `deadline` alone (epoch interruption); fuel is neither counted nor reported
    /// (`BatchOutput::fuel` is 0). The fast mode, for `sync`, `plan` and `bench`.
    #[default]
    Deadline,
    /// Fuel budgets (`fuel_base` + `fuel_per_item`), plus the `deadline` when one is set.
    /// Deterministic and reported per call, for `rules test` and `rules eval`.
    Fuel,
}

/// The limits of every batch call, configurable per runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel or deadline (see [`Metering`]).
    pub metering: Metering,
    /// Fuel for a call regardless of its size (instantiation has its own `INSTANTIATE_FUEL`).
    pub fuel_base: u64,
    /// Fuel added per item of the batch.
    pub fuel_per_item: u64,
    /// Maximum linear memory of the module's store, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock bound per call ([`DEFAULT_DEADLINE`] by default). Required with
    /// [`Metering::Deadline`]; optional with fuel.
    pub deadline: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            metering: Metering::default(),
            fuel_base: DEFAULT_FUEL_BASE,
            fuel_per_item: DEFAULT_FUEL_PER_ITEM,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            deadline: Some(DEFAULT_DEADLINE),
        }
    }
}

impl Limits {
    /// The fuel budget of a call with `items` items (saturating).
    pub fn fuel_for(&self, items: usize) -> u64 {
        self.fuel_base
            .saturating_add(self.fuel_per_item.saturating_mul(items as u64))
    }

    /// Whether calls are metered with fuel.
    pub fn fuel(&self) -> bool {
        self.metering == Metering::Fuel
    }

    /// The deadline in epoch ticks, rounded up, at least one.
    pub(crate) fn deadline_ticks(&self) -> Option<u64> {
        self.deadline.map(|d| {
            let tick = EPOCH_TICK.as_nanos();
            (d.as_nanos().div_ceil(tick)).max(1) as u64
        })
    }
}

/// The instance pool of a runtime with these limits. The slots' maximum memory stays wasmtime's
/// (the whole 32-bit space): the per-store [`Limiter`] enforces `memory_bytes`, so a module that
/// asks for more still fails with the memory limit named, at instantiation as at `memory.grow`.
pub(crate) fn pool_config(limits: &Limits) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        // A Rust component instantiates a few core modules (its code plus adapter shims), each
        // with at most one memory and one table.
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .table_elements(DEFAULT_TABLE_ELEMENTS)
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT_BYTES.min(limits.memory_bytes))
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
    pool
}

/// Which limit stopped a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// The fuel budget ran out.
    Fuel {
        /// The budget of the call.
        budget: u64,
        /// The items it was computed for.
        items: usize,
        /// The limits it was computed from.
        base: u64,
        per_item: u64,
    },
    /// The module tried to grow its memory past the limit.
    Memory {
        /// The limit, in bytes.
        limit: usize,
        /// The size it asked for, in bytes.
        requested: usize,
    },
    /// The wall-clock deadline passed.
    Deadline(Duration),
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Fuel {
                budget,
                items,
                base,
                per_item,
            } => write!(
                f,
                "fuel limit ({budget} units = {base} base + {per_item} per item x {items} items)"
            ),
            LimitHit::Memory { limit, requested } => write!(
                f,
                "memory limit ({limit} bytes = {} MiB per call; the module asked for {requested} bytes)",
                limit >> 20
            ),
            LimitHit::Deadline(d) => write!(f, "wall-clock deadline ({} ms)", d.as_millis()),
        }
    }
}

/// `StoreLimits` (with `memory_size` set: it is unlimited otherwise) plus a record of the growth
/// it refused, because a refused growth surfaces as a guest trap (`unreachable` in Rust's OOM
/// handler, or wasmtime's "forcing trap" error) that is not a `wasmtime::Trap` to classify.
pub(crate) struct Limiter {
    inner: StoreLimits,
    memory_bytes: usize,
    /// The memory size a refused `memory.grow` asked for.
    pub(crate) refused_memory: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(DEFAULT_TABLE_ELEMENTS)
                .trap_on_grow_failure(true)
                .build(),
            memory_bytes: limits.memory_bytes,
            refused_memory: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.refused_memory = Some(desired);
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuel_budget_is_base_plus_per_item() {
        let l = Limits {
            fuel_base: 10,
            fuel_per_item: 3,
            ..Limits::default()
        };
        assert_eq!(l.fuel_for(0), 10);
        assert_eq!(l.fuel_for(4), 22);
        let huge = Limits {
            fuel_base: u64::MAX,
            ..l
        };
        assert_eq!(huge.fuel_for(5), u64::MAX);
    }

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let mut l = Limits {
            deadline: None,
            ..Limits::default()
        };
        assert_eq!(l.deadline_ticks(), None);
        l.deadline = Some(Duration::from_millis(1));
        assert_eq!(l.deadline_ticks(), Some(1));
        l.deadline = Some(Duration::from_millis(25));
        assert_eq!(l.deadline_ticks(), Some(3));
    }

    #[test]
    fn limiter_records_refused_growth_only() {
        let limits = Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        };
        let mut lim = Limiter::new(&limits);
        assert!(lim.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(lim.refused_memory, None);
        assert!(
            lim.memory_growing(1 << 20, (1 << 20) + 65536, None)
                .is_err()
        );
        assert_eq!(lim.refused_memory, Some((1 << 20) + 65536));
    }
}
