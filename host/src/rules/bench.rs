//! `rules bench`: the three rule calls over N generated VMs in batches, through a component and,
//! for the default rules, through the same logic compiled natively (`RuleSet`), with the ratio.
//!
//! Phases are timed separately and summed: all batches of normalize-desired, then of
//! normalize-current, then of diff. Building inputs (generation, cloning, pairing) is outside the
//! timed regions for both runs; the WASM times include the model <-> bindings conversions,
//! because the pipeline pays them too. This is a benchmark, not a test: nothing asserts on time.

use std::time::Instant;

use guest_default::model::{Context, Desired, DiffInput, Guest, NetboxVm, RuleSet, Vm};
use serde::Serialize;

use super::{RulesError, RulesModule};

/// Milliseconds per phase.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PhaseTimes {
    pub normalize_desired_ms: f64,
    pub normalize_current_ms: f64,
    pub diff_ms: f64,
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

/// The WASM run: times, fuel and tally.
#[derive(Clone, Debug, Serialize)]
pub struct WasmRun {
    pub times: PhaseTimes,
    pub fuel: u64,
    pub tally: Tally,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The input split into batches, current records aligned with their guests.
pub struct Workload {
    pub guests: Vec<Vec<Guest>>,
    pub current: Vec<Vec<Option<NetboxVm>>>,
}

impl Workload {
    /// Splits generated guests and records into batches of `batch`.
    pub fn new(guests: Vec<Guest>, current: Vec<Option<NetboxVm>>, batch: usize) -> Self {
        let batch = batch.max(1);
        let mut g = guests.into_iter().peekable();
        let mut c = current.into_iter();
        let mut out = Workload {
            guests: Vec::new(),
            current: Vec::new(),
        };
        while g.peek().is_some() {
            out.guests.push(g.by_ref().take(batch).collect());
            out.current.push(c.by_ref().take(batch).collect());
        }
        out
    }
}

/// Pairs desired VMs with their normalized current VMs (by position), counting the outcome.
fn pairs(
    desired: Vec<Vec<Result<Desired, guest_default::model::RuleError>>>,
    current: &[Vec<Option<NetboxVm>>],
    mut normalized: Vec<std::vec::IntoIter<Result<Vm, guest_default::model::RuleError>>>,
    tally: &mut Tally,
) -> Vec<Vec<DiffInput>> {
    desired
        .into_iter()
        .enumerate()
        .map(|(b, batch)| {
            batch
                .into_iter()
                .zip(&current[b])
                .filter_map(|(d, cur)| {
                    let cur_vm = match cur {
                        Some(_) => normalized[b].next().and_then(Result::ok),
                        None => None,
                    };
                    match d {
                        Ok(Desired::Vm(d)) => {
                            tally.desired_vms += 1;
                            Some(DiffInput {
                                desired: d.vm,
                                current: cur_vm,
                            })
                        }
                        Ok(Desired::Skip(_)) => {
                            tally.skipped += 1;
                            None
                        }
                        Err(_) => {
                            tally.rule_errors += 1;
                            None
                        }
                    }
                })
                .collect()
        })
        .collect()
}

fn existing(current: &[Vec<Option<NetboxVm>>]) -> Vec<Vec<NetboxVm>> {
    current
        .iter()
        .map(|b| b.iter().flatten().cloned().collect())
        .collect()
}

/// Runs the workload through a component.
pub fn run_wasm(module: &RulesModule, ctx: &Context, w: &Workload) -> Result<WasmRun, RulesError> {
    let mut times = PhaseTimes::default();
    let mut fuel = 0;
    let mut tally = Tally::default();

    let inputs = w.guests.clone();
    let t = Instant::now();
    let mut desired = Vec::with_capacity(inputs.len());
    for (i, batch) in inputs.into_iter().enumerate() {
        let out = module
            .normalize_desired(ctx, batch)
            .map_err(|e| e.in_batch(i))?;
        fuel += out.fuel;
        desired.push(out.items);
    }
    times.normalize_desired_ms = ms(t);

    let records = existing(&w.current);
    let t = Instant::now();
    let mut normalized = Vec::with_capacity(records.len());
    for (i, batch) in records.into_iter().enumerate() {
        let out = module
            .normalize_current(ctx, batch)
            .map_err(|e| e.in_batch(i))?;
        fuel += out.fuel;
        normalized.push(out.items.into_iter());
    }
    times.normalize_current_ms = ms(t);

    let diff_inputs = pairs(desired, &w.current, normalized, &mut tally);
    let t = Instant::now();
    for (i, batch) in diff_inputs.into_iter().enumerate() {
        let out = module.diff(ctx, batch).map_err(|e| e.in_batch(i))?;
        fuel += out.fuel;
        tally.changes += out.items.iter().flatten().map(Vec::len).sum::<usize>();
    }
    times.diff_ms = ms(t);
    times.total_ms = times.normalize_desired_ms + times.normalize_current_ms + times.diff_ms;
    Ok(WasmRun { times, fuel, tally })
}

/// Runs the workload through a rule set compiled natively. Not inlined, so profilers can
/// measure it alone.
#[inline(never)]
pub fn run_native<R: RuleSet>(ctx: &Context, w: &Workload) -> (PhaseTimes, Tally) {
    let mut times = PhaseTimes::default();
    let mut tally = Tally::default();

    let inputs = w.guests.clone();
    let t = Instant::now();
    let desired: Vec<_> = inputs
        .into_iter()
        .map(|b| R::normalize_desired(ctx, b))
        .collect();
    times.normalize_desired_ms = ms(t);

    let records = existing(&w.current);
    let t = Instant::now();
    let normalized: Vec<_> = records
        .into_iter()
        .map(|b| R::normalize_current(ctx, b).into_iter())
        .collect();
    times.normalize_current_ms = ms(t);

    let diff_inputs = pairs(desired, &w.current, normalized, &mut tally);
    let t = Instant::now();
    for batch in diff_inputs {
        let out = R::diff(ctx, batch);
        tally.changes += out.iter().flatten().map(Vec::len).sum::<usize>();
    }
    times.diff_ms = ms(t);
    times.total_ms = times.normalize_desired_ms + times.normalize_current_ms + times.diff_ms;
    (times, tally)
}
