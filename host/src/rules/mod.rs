//! The rules runtime: runs rule components (WIT `pve2netbox:rules`) under wasmtime.
//!
//! Edges: it takes and returns `guest_default::model` types and knows nothing of HTTP, Proxmox
//! or NetBox. One [`RulesRuntime`] owns the wasmtime `Engine` (a wall-clock deadline by epoch
//! interruption, or fuel metering: see [`Metering`]), the on-disk cache of compiled
//! components and the [`Limits`]. A [`RulesModule`] is a loaded, checked component: its WIT
//! version was read from its exports before instantiation, its imports were checked against the
//! allowed set, and its `info` was read. Each batch call gets a fresh `Store` and instance (a
//! trapped instance is poisoned), whose linear memory comes from a pool of slots that stay
//! resident between calls; a trap or an exceeded limit fails that call with an error naming the
//! module, the limit and the batch, and the module stays usable for the next batch.
//!
//! Layout: `loader` (what a file is), `cache` (compiled artifacts on disk), `store` (the per-call
//! store and its WASI context, which grants nothing), `limits`, `error`, `v0_3_0` (bindings of
//! WIT 0.3.0, through which 0.4 modules are called too; `latest` points at it), `v0_4_0` (the
//! two functions 0.4 changed: `diff` and the batch `reconcile`), `defaults` (the default rules as the `defaults` import of
//! world `site-rules`, for modules in languages that cannot link them), `v0_2_0` (bindings of WIT 0.2.0, through which 0.1
//! modules are called too), `v0_1_0` (the host side of 0.1's `types` import), `convert` (model
//! <-> each version's bindings), `fixture` (running `rules test` fixtures), `generate` and
//! `bench` (the `rules bench` workload), `parallel` (batches on several threads, for the sync and
//! the bench alike), `record` (a run's rules input and answers as fixtures:
//! `--record`), `replay` (`rules replay` and `rules diff`) and `update` (`rules test --update`).
//!
//! The loader reads the WIT version a module exports and picks its bindings ([`Exports`]).
//! The sync calls [`RulesModule::reconcile_json`] (its configs are already JSON text; callers
//! holding properties use [`RulesModule::reconcile`]): one `reconcile` call per batch for a 0.2
//! or 0.3 module, the three steps (`normalize-desired`, `normalize-current`, `diff`) for a 0.1
//! module. Only a 0.3 or 0.4 module sees the network source and the children and returns child
//! changes; a 0.1 or 0.2 module's answers have none (its children are `keep`). A 0.4 module's
//! `reconcile` takes the batch at once, its repeating texts shared ([`convert::v4::batch_to`]).

mod answers;
mod batch_abi;
pub mod bench;
mod cache;
mod compile;
mod convert;
mod defaults;
mod error;
pub mod fixture;
pub mod generate;
mod limits;
mod loader;
pub mod memo;
pub mod parallel;
pub mod record;
pub mod replay;
mod store;
pub mod update;
mod v0_1_0;
mod v0_2_0;
mod v0_3_0;
mod v0_4_0;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use guest_default::model::{
    self, Context, Desired, DiffInput, FieldChange, FieldPolicy, Guest, JsonReconcileInput,
    ModuleInfo, NetboxVm, ReconcileInput, Reconciled, RuleError, Vm,
};
use sha2::{Digest, Sha256};
use wasmtime::component::{Instance, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store, Trap};

pub use cache::{CacheMode, LoadKind, default_dir as default_cache_dir};
pub use error::{BatchRef, ModuleLabel, RulesError};
pub use limits::{
    DEFAULT_DEADLINE, DEFAULT_FUEL_BASE, DEFAULT_FUEL_PER_ITEM, DEFAULT_MEMORY_BYTES, EPOCH_TICK,
    INSTANTIATE_FUEL, LOAD_FUEL, LimitHit, Limits, Metering,
};

use store::State;

/// The rules WIT versions this host loads, for people: `pve2netbox:rules@0.1.x, …`.
pub fn supported_wit_text() -> String {
    loader::supported_text()
}
use v0_3_0 as latest;

/// The default rules component, built by `build.rs` from `guest-default/`.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/default_rules.rs"));
}

/// The source label of the embedded module.
pub const EMBEDDED_SOURCE: &str = "embedded default";

/// Items per batch call the pipeline should use. Why: per-VM cost is lowest around 1000 (call
/// overhead amortized, guest memory growth still small); see the toolchain measurements.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// Set to `1` to write `/tmp/perf-<pid>.map` naming the compiled rule functions, for profiling.
const PERFMAP_ENV: &str = "PVE2NETBOX_RULES_PERFMAP";

/// The embedded default component's bytes.
pub fn default_component_bytes() -> &'static [u8] {
    embedded::DEFAULT_RULES_WASM
}

/// How to build a [`RulesRuntime`].
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// Per-call limits.
    pub limits: Limits,
    /// Where compiled components are cached.
    pub cache: CacheMode,
}

/// The results of one batch call, one per input in order, and the fuel the call consumed.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOutput<T> {
    pub items: Vec<T>,
    /// Fuel consumed by the call itself (instantiation excluded); 0 unless metering by fuel.
    pub fuel: u64,
}

/// The WASM side of the host: one engine, the component cache and the limits.
pub struct RulesRuntime {
    engine: Engine,
    linker: Linker<State>,
    cache: cache::ComponentCache,
    limits: Limits,
    ticker: Option<Ticker>,
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while a deadline is configured.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl RulesRuntime {
    /// Creates the engine (fuel only when metering by fuel; epoch interruption when a deadline is
    /// set; pooled instances), the linker (WASI p2, sync) and the cache. Fails when nothing would
    /// bound a call's run time (deadline metering without a deadline).
    pub fn new(cfg: RuntimeConfig) -> Result<Self, RulesError> {
        if !cfg.limits.fuel() && cfg.limits.deadline.is_none() {
            return Err(RulesError::Engine(
                "metering by deadline needs a deadline: set one, or meter by fuel (a runaway \
                 rule module would otherwise never stop)"
                    .into(),
            ));
        }
        let mut config = Config::new();
        config.consume_fuel(cfg.limits.fuel());
        config.epoch_interruption(cfg.limits.deadline.is_some());
        // No `compiler_inlining`: ~4% fewer instructions per VM, but wasmtime holds the whole
        // module's IR to inline it, and compiling the default rules then peaks at ~650 MiB
        // instead of ~70 (a first sync compiles them; BENCHMARKS.md, session 20).
        if std::env::var_os(PERFMAP_ENV).is_some_and(|v| v == "1") {
            // Names JIT code in `perf report` (and lets a callgrind profile be mapped by hand).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Before the pool is set: a compile engine needs no instance pool.
        let compile_config = config.clone();
        let engine = new_engine(&mut config, &cfg.limits)?;

        let mut linker = Linker::<State>::new(&engine);
        // Every WASI p2 interface is linked (Rust's std needs io and cli even when unused, Python
        // and JavaScript runtimes import clocks, filesystem and sockets too), and the WASI context
        // of each store grants nothing (see `store::new_store`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| v0_1_0::add_to_linker(&mut linker))
            .and_then(|()| v0_2_0::add_to_linker(&mut linker))
            .and_then(|()| v0_3_0::add_to_linker(&mut linker))
            .and_then(|()| v0_4_0::add_to_linker(&mut linker))
            .map_err(|e| RulesError::Engine(format!("linking WASI: {e:#}")))?;

        // Without its ticker the deadline would never fire and a runaway module would run
        // forever: a ticker that cannot start is an engine error, not a missing feature.
        let ticker = match cfg.limits.deadline {
            None => None,
            Some(_) => {
                let stop = Arc::new(AtomicBool::new(false));
                let (e, s) = (engine.clone(), stop.clone());
                let thread = std::thread::Builder::new()
                    .name("rules-epoch".into())
                    .spawn(move || {
                        while !s.load(Ordering::Relaxed) {
                            std::thread::sleep(EPOCH_TICK);
                            e.increment_epoch();
                        }
                    })
                    .map_err(|e| {
                        RulesError::Engine(format!(
                            "cannot start the deadline's epoch ticker thread: {e}"
                        ))
                    })?;
                Some(Ticker {
                    stop,
                    thread: Some(thread),
                })
            }
        };

        let cache = cache::ComponentCache::new(&engine, compile_config, &cfg.cache);
        Ok(RulesRuntime {
            engine,
            linker,
            cache,
            limits: cfg.limits,
            ticker,
        })
    }

    /// The limits every call of modules loaded by this runtime gets.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The cache directory, when caching.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.dir()
    }

    /// Loads the embedded default rules.
    pub fn load_default(&self) -> Result<RulesModule, RulesError> {
        self.load_bytes(default_component_bytes(), EMBEDDED_SOURCE.to_string())
    }

    /// Loads a rule component from a `.wasm` file.
    pub fn load_file(&self, path: &Path) -> Result<RulesModule, RulesError> {
        let bytes = std::fs::read(path).map_err(|source| RulesError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_bytes(&bytes, path.display().to_string())
    }

    /// Loads a rule component from its bytes; `source` names it in messages.
    pub fn load_bytes(&self, bytes: &[u8], source: String) -> Result<RulesModule, RulesError> {
        let started = Instant::now();
        let mut label = ModuleLabel { source, name: None };
        loader::check_header(bytes, &label)?;
        let (component, load_kind) =
            self.cache
                .load(&self.engine, bytes)
                .map_err(|e| RulesError::Load {
                    module: Box::new(label.clone()),
                    phase: "compile",
                    message: format!("{e:#}"),
                })?;
        let compile_time = started.elapsed();
        // The version is read from the component's type, before anything is linked or run.
        let inspection = loader::inspect(&self.engine, &component, &label)?;
        let link_err = |message: String| RulesError::Load {
            module: Box::new(label.clone()),
            phase: "link",
            message,
        };
        let exports = match inspection.wit {
            wit @ ((0, 1, _) | (0, 2, _)) => Exports::Old(
                v0_2_0::Exports::new(&component, &inspection.interface, wit).map_err(link_err)?,
            ),
            (0, minor @ (3 | 4), _) => Exports::V3(
                latest::Exports::new(&component, &inspection.interface, minor == 4)
                    .map_err(link_err)?,
            ),
            other => {
                // `loader::inspect` only lets supported versions through.
                return Err(RulesError::UnsupportedWorld {
                    module: Box::new(label),
                    found: format!("it implements WIT {other:?}"),
                    supported: loader::supported_text(),
                });
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| link_err(format!("{e:#}")))?;
        // A `site-rules` module calls the embedded default rules through its `defaults` import.
        let defaults = if defaults::imports_defaults(&inspection.imports) {
            Some(self.load_default()?)
        } else {
            None
        };
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let memo_key = match &defaults {
            None => sha256,
            Some(d) => {
                let mut h = Sha256::new();
                h.update(sha256);
                h.update(d.inner.sha256);
                h.finalize().into()
            }
        };
        let mut module = RulesModule {
            inner: Arc::new(ModuleInner {
                engine: self.engine.clone(),
                pre,
                exports,
                limits: self.limits.clone(),
                label: label.clone(),
                info: ModuleInfo {
                    name: String::new(),
                    version: String::new(),
                    wit_version: String::new(),
                },
                inspection,
                sha256,
                memo_key,
                defaults,
                load: LoadStats {
                    kind: load_kind,
                    compile: compile_time,
                    total: Duration::ZERO,
                },
            }),
        };
        let info = module
            .call("info", 0, BatchRef::default, |store, inst, ex| {
                // Signatures are checked once here, so later calls cannot fail on them.
                ex.typecheck(inst, store)?;
                ex.info(inst, store)
            })
            .map_err(|e| match e {
                RulesError::Trap { message, .. } | RulesError::Contract { message, .. } => {
                    RulesError::Load {
                        module: Box::new(label.clone()),
                        phase: "info",
                        message,
                    }
                }
                other => other,
            })?
            .0;
        label.name = Some(format!("{} {}", info.name, info.version));
        let inner = Arc::get_mut(&mut module.inner).expect("not shared yet");
        let (w0, w1, w2) = inner.inspection.wit;
        if info.wit_version != format!("{w0}.{w1}.{w2}") {
            tracing::warn!(
                module = %label,
                claimed = %info.wit_version,
                exported = %inner.inspection.interface,
                "the module's info() names a WIT version other than the one it exports; trusting the export"
            );
        }
        inner.info = info;
        inner.label = label;
        inner.load.total = started.elapsed();
        tracing::debug!(
            module = %inner.label,
            load = ?inner.load.kind,
            compile_ms = inner.load.compile.as_secs_f64() * 1e3,
            "rules module loaded"
        );
        Ok(module)
    }
}

/// The engine, with instances from a pooling allocator whose linear memories stay resident
/// between calls (see [`limits::pool_config`]): each call still gets its own store and a fresh
/// instance, but not fresh pages. Falls back to on-demand allocation when the pool's address space
/// cannot be reserved (e.g. under `ulimit -v`), which is slower but otherwise the same.
fn new_engine(config: &mut Config, limits: &Limits) -> Result<Engine, RulesError> {
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(limits::pool_config(
        limits,
    )));
    match Engine::new(config) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            tracing::warn!(
                error = %format!("{e:#}"),
                "cannot reserve the rules instance pool; instantiating each call on demand (slower)"
            );
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(config).map_err(|e| RulesError::Engine(format!("{e:#}")))
        }
    }
}

impl Drop for RulesRuntime {
    fn drop(&mut self) {
        self.ticker.take();
    }
}

/// How long loading took, and whether the compiled code came from the cache.
#[derive(Clone, Copy, Debug)]
pub struct LoadStats {
    pub kind: LoadKind,
    /// Compile or deserialize.
    pub compile: Duration,
    /// Everything, including the `info` call.
    pub total: Duration,
}

/// A loaded rule module. Cheap to clone, `Send + Sync`: the pre-linked instance is shared, and
/// every call makes its own store.
#[derive(Clone)]
pub struct RulesModule {
    inner: Arc<ModuleInner>,
}

/// The bindings a loaded module is called through, by the WIT version it exports.
enum Exports {
    /// WIT 0.1 and 0.2 (`v0_2_0`; a 0.1 module has no fused `reconcile`).
    Old(v0_2_0::Exports),
    /// WIT 0.3 and 0.4 (`latest`; a 0.4 module's `diff` and `reconcile` through `v0_4_0`).
    V3(latest::Exports),
}

impl Exports {
    fn has_reconcile(&self) -> bool {
        match self {
            Exports::Old(ex) => ex.has_reconcile(),
            Exports::V3(_) => true,
        }
    }

    fn typecheck(&self, i: &Instance, s: &mut Store<State>) -> wasmtime::Result<()> {
        match self {
            Exports::Old(ex) => ex.typecheck(i, s),
            Exports::V3(ex) => ex.typecheck(i, s),
        }
    }

    fn info(&self, i: &Instance, s: &mut Store<State>) -> wasmtime::Result<ModuleInfo> {
        Ok(match self {
            Exports::Old(ex) => convert::v2::info_from(ex.info(i, s)?),
            Exports::V3(ex) => convert::v3::info_from(ex.info(i, s)?),
        })
    }

    fn default_policies(
        &self,
        i: &Instance,
        s: &mut Store<State>,
    ) -> wasmtime::Result<Vec<FieldPolicy>> {
        Ok(match self {
            Exports::Old(ex) => ex
                .default_policies(i, s)?
                .into_iter()
                .map(convert::v2::policy_from)
                .collect(),
            Exports::V3(ex) => ex
                .default_policies(i, s)?
                .into_iter()
                .map(convert::v3::policy_from)
                .collect(),
        })
    }
}

/// Runs `$body` with `$cv` naming the conversions and `$ex` the exports of the module's WIT
/// version, for the calls whose shape all versions share.
macro_rules! per_version {
    ($module:expr, |$cv:ident, $ex:ident| $body:expr) => {
        match &$module.inner.exports {
            Exports::Old($ex) => {
                use convert::v2 as $cv;
                $body
            }
            Exports::V3($ex) => {
                use convert::v3 as $cv;
                $body
            }
        }
    };
}

/// The three steps of one input through a 0.3 module, as it answered them (`rules test` and
/// `rules eval` show them; [`RulesModule::reconcile_in_steps`] combines them).
pub(crate) struct StepsV3 {
    pub(crate) desired: Result<latest::types::Desired, RuleError>,
    /// Present when the input had a record.
    pub(crate) current: Option<Result<latest::types::Vm, RuleError>>,
    /// Present when the guest was diffed (a VM, and its record normalized).
    pub(crate) changes: Option<Result<latest::types::VmChanges, RuleError>>,
}

impl StepsV3 {
    /// The steps combined as `reconcile` answers: a skip or the first error decides.
    fn reconciled(self) -> Result<Reconciled, RuleError> {
        use convert::v3 as cv;
        let d = match self.desired? {
            latest::types::Desired::Skip(reason) => return Ok(Reconciled::Skip(reason)),
            latest::types::Desired::Vm(d) => d,
        };
        if let Some(current) = self.current {
            current?;
        }
        let changes = self
            .changes
            .unwrap_or_else(|| Err(RuleError::new("contract", "diff returned too few results")))?;
        Ok(Reconciled::Vm(model::ReconciledVm {
            name: match d.vm.name {
                latest::types::TextField::Set(name) => Some(name),
                _ => None,
            },
            needs: d.needs.into_iter().map(cv::object_spec_from).collect(),
            changes: changes.changes.into_iter().map(cv::change_from).collect(),
            children: changes
                .children
                .into_iter()
                .map(cv::child_change_from)
                .collect(),
        }))
    }
}

struct ModuleInner {
    engine: Engine,
    pre: InstancePre<State>,
    exports: Exports,
    limits: Limits,
    label: ModuleLabel,
    info: ModuleInfo,
    inspection: loader::Inspection,
    /// SHA-256 of the component's bytes.
    sha256: [u8; 32],
    /// What the no-op memo is keyed by: `sha256`, and for a module that imports the default
    /// rules also theirs (a new pve2netbox may change its answers).
    memo_key: [u8; 32],
    /// The embedded default rules, when the module imports them (`defaults`).
    defaults: Option<RulesModule>,
    load: LoadStats,
}

/// `netbox VM <id> (<name>)` of a record of any WIT version.
macro_rules! netbox_id {
    ($r:expr) => {
        format!("netbox VM {} ({})", $r.id, $r.name)
    };
}

/// `cluster/node/vmid` of a guest of any WIT version.
macro_rules! guest_id {
    ($g:expr) => {
        format!("{}/{}/{}", $g.cluster, $g.node, $g.vmid)
    };
}

fn batch_of<T>(items: &[T], id: impl Fn(usize, &T) -> String) -> BatchRef {
    BatchRef {
        index: None,
        items: items.len(),
        first: items.first().map(|t| id(0, t)),
        last: items.last().map(|t| id(items.len() - 1, t)),
    }
}

impl RulesModule {
    /// Name, version and WIT version, as the module reports them.
    pub fn info(&self) -> &ModuleInfo {
        &self.inner.info
    }

    /// "embedded default" or the file path.
    pub fn source(&self) -> &str {
        &self.inner.label.source
    }

    /// The label used in error messages.
    pub fn label(&self) -> &ModuleLabel {
        &self.inner.label
    }

    /// The exported rules interface, e.g. `pve2netbox:rules/reconcile@0.2.0`.
    pub fn interface(&self) -> &str {
        &self.inner.inspection.interface
    }

    /// The WIT version of the exported interface (`0.2.0`), read from the component's type.
    pub fn wit_version(&self) -> String {
        let (a, b, c) = self.inner.inspection.wit;
        format!("{a}.{b}.{c}")
    }

    /// Whether the module exports WIT 0.3 or later: it sees the network source and the
    /// children, and its answers carry child changes.
    pub fn has_children(&self) -> bool {
        matches!(self.inner.exports, Exports::V3(_))
    }

    /// Whether [`Self::reconcile`] is one fused `reconcile` call (WIT 0.2 and later) rather
    /// than the three steps of a 0.1 module.
    pub fn fuses_reconcile(&self) -> bool {
        self.inner.exports.has_reconcile()
    }

    /// The functions the rules interface exports.
    pub fn functions(&self) -> &[String] {
        &self.inner.inspection.functions
    }

    /// The component's imports.
    pub fn imports(&self) -> &[String] {
        &self.inner.inspection.imports
    }

    /// SHA-256 of the component's bytes.
    pub fn sha256(&self) -> [u8; 32] {
        self.inner.sha256
    }

    /// What the memo of no-op answers is keyed by: [`Self::sha256`], mixed with the embedded
    /// default rules' for a module that imports them, since their answers are part of its own.
    pub fn memo_key(&self) -> [u8; 32] {
        self.inner.memo_key
    }

    /// Whether the module builds on the host's default rules (world `site-rules`).
    pub fn imports_defaults(&self) -> bool {
        self.inner.defaults.is_some()
    }

    /// Load timing and cache use.
    pub fn load_stats(&self) -> LoadStats {
        self.inner.load
    }

    /// The limits of each call.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The module's default ownership of each field.
    pub fn default_policies(&self) -> Result<Vec<FieldPolicy>, RulesError> {
        let (out, _) = self.call(
            "default-policies",
            0,
            BatchRef::default,
            |store, inst, ex| ex.default_policies(inst, store),
        )?;
        Ok(out)
    }

    /// Proxmox guests to desired VMs, one result per guest, in order. A 0.3 module's desired
    /// children are not returned (see [`Self::reconcile_in_steps`]); its guests' network view
    /// is `unknown` (not asked).
    pub fn normalize_desired(
        &self,
        ctx: &Context,
        guests: Vec<Guest>,
    ) -> Result<BatchOutput<Result<Desired, RuleError>>, RulesError> {
        per_version!(self, |cv, ex| {
            let wctx = cv::context_to(ctx);
            let input: Vec<_> = guests.into_iter().map(cv::guest_to).collect();
            let n = input.len();
            let (out, fuel) = self.call(
                "normalize-desired",
                n,
                || batch_of(&input, |_, g| guest_id!(g)),
                |store, inst, _| ex.normalize_desired(inst, store, &wctx, &input),
            )?;
            let items = self.check_len("normalize-desired", n, out, || {
                batch_of(&input, |_, g| guest_id!(g))
            })?;
            Ok(BatchOutput {
                items: items
                    .into_iter()
                    .map(|r| r.map(cv::desired_from).map_err(cv::rule_error_from))
                    .collect(),
                fuel,
            })
        })
    }

    /// NetBox records to the comparable shape, one result per record, in order (a 0.3
    /// module's current children are not returned; its records' children are not read).
    pub fn normalize_current(
        &self,
        ctx: &Context,
        records: Vec<NetboxVm>,
    ) -> Result<BatchOutput<Result<Vm, RuleError>>, RulesError> {
        per_version!(self, |cv, ex| {
            let wctx = cv::context_to(ctx);
            let input: Vec<_> = records.into_iter().map(cv::netbox_vm_to).collect();
            let n = input.len();
            let (out, fuel) = self.call(
                "normalize-current",
                n,
                || batch_of(&input, |_, r| netbox_id!(r)),
                |store, inst, _| ex.normalize_current(inst, store, &wctx, &input),
            )?;
            let items = self.check_len("normalize-current", n, out, || {
                batch_of(&input, |_, r| netbox_id!(r))
            })?;
            Ok(BatchOutput {
                items: items
                    .into_iter()
                    .map(|r| r.map(cv::vm_from).map_err(cv::rule_error_from))
                    .collect(),
                fuel,
            })
        })
    }

    /// Field changes per pair, honouring `ctx.policies`, one result per pair, in order (the
    /// pairs' children are `keep`, so a 0.3 module returns no child change).
    pub fn diff(
        &self,
        ctx: &Context,
        pairs: Vec<DiffInput>,
    ) -> Result<BatchOutput<Result<Vec<FieldChange>, RuleError>>, RulesError> {
        let n = pairs.len();
        let name = |i: usize, name: Option<&str>| match name {
            Some(name) => format!("pair {i} ({name})"),
            None => format!("pair {i}"),
        };
        match &self.inner.exports {
            Exports::Old(ex) => {
                use convert::v2 as cv;
                let wctx = cv::context_to(ctx);
                let input: Vec<_> = pairs.into_iter().map(cv::diff_input_to).collect();
                let id = |i: usize, p: &v0_2_0::types::DiffInput| match &p.desired.name {
                    v0_2_0::types::TextField::Set(n) => name(i, Some(n)),
                    _ => name(i, None),
                };
                let (out, fuel) = self.call(
                    "diff",
                    n,
                    || batch_of(&input, id),
                    |store, inst, _| ex.diff(inst, store, &wctx, &input),
                )?;
                let items = self.check_len("diff", n, out, || batch_of(&input, id))?;
                Ok(BatchOutput {
                    items: items
                        .into_iter()
                        .map(|r| {
                            r.map(|cs| cs.into_iter().map(cv::change_from).collect())
                                .map_err(cv::rule_error_from)
                        })
                        .collect(),
                    fuel,
                })
            }
            Exports::V3(ex) => {
                use convert::v3 as cv;
                let wctx = cv::context_to(ctx);
                let input: Vec<_> = pairs.into_iter().map(cv::diff_input_to).collect();
                let id = |i: usize, p: &latest::types::DiffInput| match &p.desired.name {
                    latest::types::TextField::Set(n) => name(i, Some(n)),
                    _ => name(i, None),
                };
                let (out, fuel) = self.call(
                    "diff",
                    n,
                    || batch_of(&input, id),
                    |store, inst, _| ex.diff(inst, store, &wctx, &input),
                )?;
                let items = self.check_len("diff", n, out, || batch_of(&input, id))?;
                Ok(BatchOutput {
                    items: items
                        .into_iter()
                        .map(|r| {
                            r.map(|vc| vc.changes.into_iter().map(cv::change_from).collect())
                                .map_err(cv::rule_error_from)
                        })
                        .collect(),
                    fuel,
                })
            }
        }
    }

    /// The three steps for each guest and its matched NetBox record, one result per input, in
    /// order: what the sync runs (through [`Self::reconcile_json`]). A 0.2 or 0.3 module answers
    /// in one `reconcile` call; a 0.1 module in its three steps ([`Self::reconcile_in_steps`]).
    /// A failed call (trap, limit, contract) fails the whole batch and no other.
    pub fn reconcile(
        &self,
        ctx: &Context,
        items: Vec<ReconcileInput>,
    ) -> Result<BatchOutput<Result<Reconciled, RuleError>>, RulesError> {
        if !self.inner.exports.has_reconcile() {
            return self.reconcile_in_steps(ctx, items);
        }
        let items = items
            .into_iter()
            .map(|mut i| {
                let config = model::config_to_json(&std::mem::take(&mut i.guest.config));
                JsonReconcileInput {
                    guest: i.guest,
                    config,
                    current: i.current,
                    network: i.network,
                    children: i.children,
                }
            })
            .collect();
        self.reconcile_json(ctx, items)
    }

    /// [`Self::reconcile`] for guests whose config is already the WIT's JSON text (what the
    /// sync holds): it crosses as it is. A 0.1 module gets it back as properties. Only a 0.3
    /// module is given the network source and the children.
    pub fn reconcile_json(
        &self,
        ctx: &Context,
        items: Vec<JsonReconcileInput>,
    ) -> Result<BatchOutput<Result<Reconciled, RuleError>>, RulesError> {
        if !self.inner.exports.has_reconcile() {
            // Parsed back into properties (a text that does not parse fails its own guest, as
            // `bad-config`); the call's own failure fails the batch.
            let mut failure = None;
            let mut fuel = 0;
            let items = model::with_failed_in_place(
                items,
                |i| {
                    let mut guest = i.guest;
                    model::parse_guest_config(&mut guest, &i.config)?;
                    Ok(ReconcileInput {
                        guest,
                        current: i.current,
                        network: i.network,
                        children: i.children,
                    })
                },
                |good| match self.reconcile_in_steps(ctx, good) {
                    Ok(out) => {
                        fuel = out.fuel;
                        out.items
                    }
                    Err(e) => {
                        failure = Some(e);
                        Vec::new()
                    }
                },
            );
            return match failure {
                Some(e) => Err(e),
                None => Ok(BatchOutput { items, fuel }),
            };
        }
        if let Exports::V3(ex) = &self.inner.exports
            && let Some(v4) = ex.v4()
        {
            return self.reconcile_v4(v4, ctx, items);
        }
        per_version!(self, |cv, ex| {
            let wctx = cv::context_to(ctx);
            let input: Vec<_> = items.into_iter().map(cv::reconcile_input_to).collect();
            let n = input.len();
            let (out, fuel) = self.call(
                "reconcile",
                n,
                || batch_of(&input, |_, i| guest_id!(i.guest)),
                |store, inst, _| ex.reconcile(inst, store, &wctx, &input),
            )?;
            let items = self.check_len("reconcile", n, out, || {
                batch_of(&input, |_, i| guest_id!(i.guest))
            })?;
            Ok(BatchOutput {
                items: items
                    .into_iter()
                    .map(|r| r.map(cv::reconciled_from).map_err(cv::rule_error_from))
                    .collect(),
                fuel,
            })
        })
    }

    /// [`Self::reconcile_json`] through a WIT 0.4 module: one `reconcile-batch`.
    fn reconcile_v4(
        &self,
        v4: &v0_4_0::Exports,
        ctx: &Context,
        items: Vec<JsonReconcileInput>,
    ) -> Result<BatchOutput<Result<Reconciled, RuleError>>, RulesError> {
        use convert::v4 as cv;
        let wctx = convert::v3::context_to(ctx);
        let n = items.len();
        let batch = cv::batch_to(items);
        let batch_ref = || BatchRef {
            index: None,
            items: n,
            first: (n > 0).then(|| cv::guest_id(&batch, 0)),
            last: (n > 0).then(|| cv::guest_id(&batch, n - 1)),
        };
        let (out, fuel) = self.call("reconcile", n, batch_ref, |store, inst, _| {
            v4.reconcile(inst, store, &wctx, &batch)
        })?;
        // Lifted straight into the model (`answers`).
        let items = self.check_len("reconcile", n, out, batch_ref)?;
        Ok(BatchOutput { items, fuel })
    }

    /// [`Self::reconcile_json`] for several batches at once, on up to `threads` threads (see
    /// [`parallel`]): one result per batch, in order, each batch with its own store, deadline and
    /// error (a batch's error names its index in `batches`, plus `first_index`). An empty batch
    /// is answered empty without a call (the memo may have answered all of a batch).
    pub fn reconcile_json_batches(
        &self,
        ctx: &Context,
        batches: Vec<Vec<JsonReconcileInput>>,
        first_index: usize,
        threads: usize,
    ) -> Vec<Result<BatchOutput<Result<Reconciled, RuleError>>, RulesError>> {
        // Only the batches with a call take a thread.
        let threads = threads.min(batches.iter().filter(|b| !b.is_empty()).count());
        parallel::map_batches(batches, threads, |i, batch| {
            if batch.is_empty() {
                return Ok(BatchOutput {
                    items: Vec::new(),
                    fuel: 0,
                });
            }
            self.reconcile_json(ctx, batch)
                .map_err(|e| e.in_batch(first_index + i))
        })
    }

    /// `reconcile` as `normalize-desired`, `normalize-current` and `diff` batch calls
    /// (`model::reconcile_with`): how a 0.1 module reconciles, and what a 0.2 or 0.3 module's
    /// fused `reconcile` must agree with (`rules test` compares them). A 0.3 module's steps
    /// carry the children ([`Self::steps_v3`]). The fuel is the three calls'.
    pub fn reconcile_in_steps(
        &self,
        ctx: &Context,
        items: Vec<ReconcileInput>,
    ) -> Result<BatchOutput<Result<Reconciled, RuleError>>, RulesError> {
        if let Exports::V3(_) = &self.inner.exports {
            let (steps, fuel) = self.steps_v3(ctx, items)?;
            return Ok(BatchOutput {
                items: steps.into_iter().map(StepsV3::reconciled).collect(),
                fuel,
            });
        }
        let fuel = std::cell::Cell::new(0);
        let items = model::reconcile_with(
            items,
            |guests| {
                let out = self.normalize_desired(ctx, guests)?;
                fuel.set(fuel.get() + out.fuel);
                Ok(out.items)
            },
            |records| {
                let out = self.normalize_current(ctx, records)?;
                fuel.set(fuel.get() + out.fuel);
                Ok(out.items)
            },
            |pairs| {
                let out = self.diff(ctx, pairs)?;
                fuel.set(fuel.get() + out.fuel);
                Ok(out.items)
            },
        )?;
        Ok(BatchOutput {
            items,
            fuel: fuel.get(),
        })
    }

    /// The three steps of a 0.3 module for `items`, with their children, one [`StepsV3`] per
    /// input in order, and the fuel of the calls. A record is normalized whatever the guest's
    /// answer; a pair is diffed when the guest is a VM and its record (if any) normalized. A
    /// 0.1 or 0.2 module has no such steps: a host bug, reported as a contract error.
    pub(crate) fn steps_v3(
        &self,
        ctx: &Context,
        items: Vec<ReconcileInput>,
    ) -> Result<(Vec<StepsV3>, u64), RulesError> {
        use convert::v3 as cv;
        use latest::types as w;
        let Exports::V3(ex) = &self.inner.exports else {
            return Err(RulesError::Contract {
                module: Box::new(self.inner.label.clone()),
                call: "normalize-desired",
                batch: Box::default(),
                message: format!("WIT {} has no children steps", self.wit_version()),
            });
        };
        let wctx = cv::context_to(ctx);
        let n = items.len();
        let mut guests = Vec::with_capacity(n);
        let mut records = Vec::new();
        let mut has_record = Vec::with_capacity(n);
        for i in items {
            guests.push(cv::guest_network_to(i.guest, i.network));
            has_record.push(i.current.is_some());
            if let Some(r) = i.current {
                records.push(cv::netbox_children_to(r, i.children));
            }
        }
        let (desired, mut fuel) = self.call(
            "normalize-desired",
            n,
            || batch_of(&guests, |_, g| guest_id!(g)),
            |store, inst, _| ex.normalize_desired(inst, store, &wctx, &guests),
        )?;
        let desired = self.check_len("normalize-desired", n, desired, || {
            batch_of(&guests, |_, g| guest_id!(g))
        })?;
        let current = if records.is_empty() {
            Vec::new()
        } else {
            let m = records.len();
            let (c, f) = self.call(
                "normalize-current",
                m,
                || batch_of(&records, |_, r| netbox_id!(r)),
                |store, inst, _| ex.normalize_current(inst, store, &wctx, &records),
            )?;
            fuel += f;
            self.check_len("normalize-current", m, c, || {
                batch_of(&records, |_, r| netbox_id!(r))
            })?
        };
        let mut current = current.into_iter();
        let mut out = Vec::with_capacity(n);
        let mut pairs = Vec::new();
        let mut paired = Vec::new();
        for (d, has) in desired.into_iter().zip(has_record) {
            let c = if has {
                current.next().map(|r| r.map_err(cv::rule_error_from))
            } else {
                None
            };
            let d = d.map_err(cv::rule_error_from);
            if let Ok(w::Desired::Vm(dv)) = &d {
                match &c {
                    None => pairs.push(w::DiffInput {
                        desired: dv.vm.clone(),
                        current: None,
                    }),
                    Some(Ok(vm)) => pairs.push(w::DiffInput {
                        desired: dv.vm.clone(),
                        current: Some(vm.clone()),
                    }),
                    Some(Err(_)) => {}
                }
                if !matches!(c, Some(Err(_))) {
                    paired.push(out.len());
                }
            }
            out.push(StepsV3 {
                desired: d,
                current: c,
                changes: None,
            });
        }
        if !pairs.is_empty() {
            let m = pairs.len();
            let id = |i: usize, _: &w::DiffInput| format!("pair {i}");
            let (changes, f) = self.call(
                "diff",
                m,
                || batch_of(&pairs, id),
                |store, inst, _| ex.diff(inst, store, &wctx, &pairs),
            )?;
            fuel += f;
            let changes = self.check_len("diff", m, changes, || batch_of(&pairs, id))?;
            for (at, c) in paired.into_iter().zip(changes) {
                out[at].changes = Some(c.map_err(cv::rule_error_from));
            }
        }
        Ok((out, fuel))
    }

    fn check_len<T>(
        &self,
        call: &'static str,
        expected: usize,
        out: Vec<T>,
        batch: impl FnOnce() -> BatchRef,
    ) -> Result<Vec<T>, RulesError> {
        if out.len() == expected {
            return Ok(out);
        }
        Err(RulesError::Contract {
            module: Box::new(self.inner.label.clone()),
            call,
            batch: Box::new(batch()),
            message: format!(
                "returned {} results for {expected} inputs (one per input, in order, is required)",
                out.len()
            ),
        })
    }

    /// One call in a fresh store: instantiate (fuel `INSTANTIATE_FUEL`), set the call's budget
    /// (`LOAD_FUEL` for `info`, else the limits' budget for `items`), call, and classify a
    /// failure by the limit that caused it.
    fn call<R>(
        &self,
        call: &'static str,
        items: usize,
        batch: impl FnOnce() -> BatchRef,
        f: impl FnOnce(&mut Store<State>, &Instance, &Exports) -> wasmtime::Result<R>,
    ) -> Result<(R, u64), RulesError> {
        let inner = &*self.inner;
        let limits = &inner.limits;
        let budget = if call == "info" {
            LOAD_FUEL
        } else {
            limits.fuel_for(items)
        };
        let fuel = limits.fuel();
        let mut store = store::new_store(&inner.engine, limits, inner.defaults.clone());
        let mut instantiated = false;
        let run = |store: &mut Store<State>| -> wasmtime::Result<R> {
            if fuel {
                store.set_fuel(INSTANTIATE_FUEL)?;
            }
            let instance = inner.pre.instantiate(&mut *store)?;
            instantiated = true;
            if fuel {
                store.set_fuel(budget)?;
            }
            f(store, &instance, &inner.exports)
        };
        let result = run(&mut store);
        match result {
            Ok(r) if fuel => {
                let left = store.get_fuel().unwrap_or(0);
                Ok((r, budget.saturating_sub(left)))
            }
            Ok(r) => Ok((r, 0)),
            // A module stuck in its start-up code ran out of the instantiation allowance.
            Err(e) if !instantiated => Err(self.classify(
                &store,
                e,
                call,
                (0, INSTANTIATE_FUEL, INSTANTIATE_FUEL, 0),
                batch(),
            )),
            Err(e) => Err(self.classify(
                &store,
                e,
                call,
                (items, budget, limits.fuel_base, limits.fuel_per_item),
                batch(),
            )),
        }
    }

    /// One call of a WIT 0.3 module through its own bindings (the `defaults` import calls the
    /// embedded default rules so, with the caller's types as they are).
    pub(crate) fn call_latest<R>(
        &self,
        call: &'static str,
        items: usize,
        f: impl FnOnce(&mut Store<State>, &Instance, &latest::Exports) -> wasmtime::Result<R>,
    ) -> Result<R, RulesError> {
        self.call(call, items, BatchRef::default, |s, i, ex| match ex {
            Exports::V3(ex) => f(s, i, ex),
            Exports::Old(_) => Err(wasmtime::Error::msg(format!(
                "{call} needs a WIT 0.3 module, and {} exports {}",
                self.inner.label,
                self.interface()
            ))),
        })
        .map(|(r, _)| r)
    }

    fn classify(
        &self,
        store: &Store<State>,
        err: wasmtime::Error,
        call: &'static str,
        (items, budget, base, per_item): (usize, u64, u64, u64),
        batch: BatchRef,
    ) -> RulesError {
        let batch = Box::new(batch);
        let inner = &*self.inner;
        let module = Box::new(inner.label.clone());
        let limit = if let Some(requested) = store.data().limiter.refused_memory {
            Some(LimitHit::Memory {
                limit: inner.limits.memory_bytes,
                requested,
            })
        } else {
            match err.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => Some(LimitHit::Fuel {
                    budget,
                    items,
                    base,
                    per_item,
                }),
                Some(Trap::Interrupt) => inner.limits.deadline.map(LimitHit::Deadline),
                _ => None,
            }
        };
        match limit {
            Some(limit) => RulesError::Limit {
                module,
                call,
                batch,
                limit,
            },
            None => RulesError::Trap {
                module,
                call,
                batch,
                message: trap_message(&err),
                guest_stderr: store.data().stderr_tail(),
            },
        }
    }
}

/// The trap's cause and the top of the wasm backtrace, on one line each.
fn trap_message(err: &wasmtime::Error) -> String {
    let cause = err
        .downcast_ref::<Trap>()
        .map(|t| t.to_string())
        .unwrap_or_else(|| err.root_cause().to_string());
    let context = err.to_string();
    if context == cause || context.is_empty() {
        cause
    } else {
        // `context` is "error while executing at wasm backtrace: ..." (several lines); keep the
        // first frames so the function is visible.
        let frames: Vec<&str> = context.lines().take(4).map(str::trim).collect();
        format!("{cause} ({})", frames.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn module_is_send_and_sync() {
        assert_send_sync::<RulesModule>();
        assert_send_sync::<RulesRuntime>();
    }
}
