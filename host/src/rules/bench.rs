//! `rules bench`: the path the sync runs, `reconcile` over N generated VMs in batches, through a
//! component ([`RulesModule::reconcile`]: one fused call per batch for a WIT 0.2 module, the
//! three steps for a 0.1 module) and, for the default rules, through the same logic compiled
//! natively (`RuleSet::reconcile`), with the ratio.
//!
//! The inputs (guests with their matched current records) are generated and copied outside the
//! timed region for both runs; the WASM time includes the model <-> bindings conversions, because
//! the sync pays them too. This is a benchmark, not a test: nothing asserts on time.

use std::time::Instant;

use guest_default::model::{
    Context, Guest, NetboxVm, ReconcileInput, Reconciled, RuleError, RuleSet,
};
use serde::Serialize;

use super::{RulesError, RulesModule};

/// Milliseconds of the run: the `reconcile` calls, which are the whole of it.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PhaseTimes {
    pub reconcile_ms: f64,
    pub total_ms: f64,
}

/// What one run produced, to check the two runs agree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub desired_vms: usize,
    pub skipped: usize,
    pub rule_errors: usize,
    pub changes: usize,
}

impl Tally {
    fn add(&mut self, results: &[Result<Reconciled, RuleError>]) {
        for r in results {
            match r {
                Ok(Reconciled::Vm(v)) => {
                    self.desired_vms += 1;
                    self.changes += v.changes.len();
                }
                Ok(Reconciled::Skip(_)) => self.skipped += 1,
                Err(_) => self.rule_errors += 1,
            }
        }
    }
}

/// The WASM run: times, fuel and tally.
#[derive(Clone, Debug, Serialize)]
pub struct WasmRun {
    pub times: PhaseTimes,
    pub fuel: u64,
    pub tally: Tally,
}

/// The input split into batches, each guest with the current record matched to it.
pub struct Workload {
    pub batches: Vec<Vec<ReconcileInput>>,
}

impl Workload {
    /// Pairs generated guests with their records (by position) in batches of `batch`.
    pub fn new(guests: Vec<Guest>, current: Vec<Option<NetboxVm>>, batch: usize) -> Self {
        let batch = batch.max(1);
        let mut items = guests
            .into_iter()
            .zip(current.into_iter().chain(std::iter::repeat(None)))
            .map(|(guest, current)| ReconcileInput { guest, current })
            .peekable();
        let mut batches = Vec::new();
        while items.peek().is_some() {
            batches.push(items.by_ref().take(batch).collect());
        }
        Workload { batches }
    }
}

/// Runs the workload through a component, as the sync does.
pub fn run_wasm(module: &RulesModule, ctx: &Context, w: &Workload) -> Result<WasmRun, RulesError> {
    let mut fuel = 0;
    let mut tally = Tally::default();
    let inputs = w.batches.clone();
    let mut outputs = Vec::with_capacity(inputs.len());
    let t = Instant::now();
    for (i, batch) in inputs.into_iter().enumerate() {
        let out = module.reconcile(ctx, batch).map_err(|e| e.in_batch(i))?;
        fuel += out.fuel;
        outputs.push(out.items);
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    // Counted and dropped outside the timed region, as the native run's results are.
    outputs.iter().for_each(|o| tally.add(o));
    Ok(WasmRun {
        times: PhaseTimes {
            reconcile_ms: ms,
            total_ms: ms,
        },
        fuel,
        tally,
    })
}

/// Runs the workload through a rule set compiled natively. Not inlined, so profilers can
/// measure it alone.
#[inline(never)]
pub fn run_native<R: RuleSet>(ctx: &Context, w: &Workload) -> (PhaseTimes, Tally) {
    let mut tally = Tally::default();
    let inputs = w.batches.clone();
    let mut outputs = Vec::with_capacity(inputs.len());
    let t = Instant::now();
    for batch in inputs {
        outputs.push(R::reconcile(ctx, batch));
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    outputs.iter().for_each(|o| tally.add(o));
    (
        PhaseTimes {
            reconcile_ms: ms,
            total_ms: ms,
        },
        tally,
    )
}
