//! Runs one guest (and optionally its NetBox record) through a loaded module, phase by phase,
//! the way `guest_default::model::Fixture::run` does natively: normalize-desired, then
//! normalize-current when the guest is not skipped and a record exists, then diff. A phase that
//! returns a rule error stops the run. Used by `rules test` and `rules eval`. For `rules test`
//! it also runs `reconcile` (what the sync calls) on the same guest and record, and compares it
//! with the three steps, and checks the purity the no-op memo relies on ([`check_purity`]).
//!
//! A WIT 0.3 module gets the fixture's network view and children, and its steps' children
//! (desired, current, child changes) fill the outcome's `children`, as the native run does; its
//! children's rule errors are its steps' own (a VM fails normalize-desired with its children's
//! error).

use guest_default::model::{
    ChildrenOutcome, Context, Desired, DiffInput, Fixture, FixtureOutcome, ReconcileInput,
    Reconciled, RuleError, merge_policies,
};

use super::convert::v3 as cv;
use super::{RulesError, RulesModule};

/// The outcome of one case and the fuel its calls consumed.
#[derive(Clone, Debug)]
pub struct CaseRun {
    pub outcome: FixtureOutcome,
    /// Fuel of all calls of the case (instantiation excluded).
    pub fuel: u64,
}

/// The context to call with: the module's default policies with `ctx.policies` as overrides.
pub fn effective_context(module: &RulesModule, ctx: &Context) -> Result<Context, RulesError> {
    let mut out = ctx.clone();
    out.policies = merge_policies(module.default_policies()?, &ctx.policies);
    Ok(out)
}

fn single<T>(items: Vec<Result<T, RuleError>>) -> Result<T, RuleError> {
    items.into_iter().next().unwrap_or_else(|| {
        Err(RuleError::new(
            "no-result",
            "the module returned no result for the single input",
        ))
    })
}

/// Runs one case with an already effective context.
pub fn run_case(
    module: &RulesModule,
    ctx: &Context,
    input: ReconcileInput,
) -> Result<CaseRun, RulesError> {
    if module.has_children() {
        return run_case_v3(module, ctx, input);
    }
    let ReconcileInput { guest, current, .. } = input;
    let mut fuel = 0;
    let mut outcome = FixtureOutcome::default();
    let d = module.normalize_desired(ctx, vec![guest])?;
    fuel += d.fuel;
    let desired = single(d.items);
    let desired_vm = match &desired {
        Ok(Desired::Vm(d)) => Some(d.vm.clone()),
        _ => None,
    };
    outcome.desired = Some(desired);
    let Some(desired_vm) = desired_vm else {
        return Ok(CaseRun { outcome, fuel });
    };
    let current = match current {
        None => None,
        Some(record) => {
            let c = module.normalize_current(ctx, vec![record])?;
            fuel += c.fuel;
            let c = single(c.items);
            let vm = c.as_ref().ok().cloned();
            outcome.current = Some(c);
            match vm {
                Some(vm) => Some(vm),
                None => return Ok(CaseRun { outcome, fuel }),
            }
        }
    };
    let changes = module.diff(
        ctx,
        vec![DiffInput {
            desired: desired_vm,
            current,
        }],
    )?;
    fuel += changes.fuel;
    outcome.changes = Some(single(changes.items));
    Ok(CaseRun { outcome, fuel })
}

/// A 0.3 module's case: its three steps with the children.
fn run_case_v3(
    module: &RulesModule,
    ctx: &Context,
    input: ReconcileInput,
) -> Result<CaseRun, RulesError> {
    use super::latest::types as w;
    let (steps, fuel) = module.steps_v3(ctx, vec![input])?;
    let mut outcome = FixtureOutcome::default();
    let mut kids = ChildrenOutcome::default();
    let Some(step) = steps.into_iter().next() else {
        outcome.desired = Some(single(Vec::new()));
        return Ok(CaseRun { outcome, fuel });
    };
    let done = |outcome: FixtureOutcome, kids: ChildrenOutcome| {
        let mut outcome = outcome;
        outcome.children = Some(kids);
        Ok(CaseRun { outcome, fuel })
    };
    match step.desired {
        Ok(w::Desired::Vm(mut d)) => {
            let children = std::mem::replace(&mut d.vm.children, cv::keep_children());
            kids.desired = Some(Ok(cv::children_from(children)));
            outcome.desired = Some(Ok(cv::desired_from(w::Desired::Vm(d))));
        }
        other => {
            outcome.desired = Some(other.map(cv::desired_from));
            return done(outcome, kids);
        }
    }
    match step.current {
        None => {}
        Some(Ok(mut vm)) => {
            let children = std::mem::replace(&mut vm.children, cv::keep_children());
            kids.current = Some(Ok(cv::children_from(children)));
            outcome.current = Some(Ok(cv::vm_from(vm)));
        }
        Some(Err(e)) => {
            outcome.current = Some(Err(e));
            return done(outcome, kids);
        }
    }
    match step.changes {
        Some(Ok(vc)) => {
            outcome.changes = Some(Ok(vc.changes.into_iter().map(cv::change_from).collect()));
            kids.changes = Some(Ok(vc
                .children
                .into_iter()
                .map(cv::child_change_from)
                .collect()));
        }
        Some(Err(e)) => outcome.changes = Some(Err(e)),
        None => outcome.changes = Some(single(Vec::new())),
    }
    done(outcome, kids)
}

/// The fixture's guest, record, network view and children as one input.
pub fn fixture_input(fixture: &Fixture) -> ReconcileInput {
    ReconcileInput {
        guest: fixture.guest.clone(),
        current: fixture.current.clone(),
        network: fixture.network.clone().unwrap_or_default(),
        children: fixture.children.clone(),
    }
}

/// Runs a fixture through the module.
pub fn run_fixture(module: &RulesModule, fixture: &Fixture) -> Result<CaseRun, RulesError> {
    let ctx = effective_context(module, &fixture.context)?;
    run_case(module, &ctx, fixture_input(fixture))
}

/// `reconcile` of one fixture, as the sync runs it and as the three steps.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconcileCheck {
    /// [`RulesModule::reconcile`]: the module's fused `reconcile` (WIT 0.2 and later), or its
    /// three steps.
    pub reconciled: Result<Reconciled, RuleError>,
    /// [`RulesModule::reconcile_in_steps`]: `normalize-desired`, `normalize-current`, `diff`.
    pub in_steps: Result<Reconciled, RuleError>,
}

impl ReconcileCheck {
    /// Whether `reconcile` agrees with the three steps: the same desired name, needs and
    /// changes, or the same skip reason, or the same rule error.
    pub fn agrees(&self) -> bool {
        self.reconciled == self.in_steps
    }
}

/// Runs the fixture's guest and record through `reconcile` and through the three steps.
pub fn check_reconcile(
    module: &RulesModule,
    fixture: &Fixture,
) -> Result<ReconcileCheck, RulesError> {
    let ctx = effective_context(module, &fixture.context)?;
    let input = || vec![fixture_input(fixture)];
    Ok(ReconcileCheck {
        reconciled: single(module.reconcile(&ctx, input())?.items),
        in_steps: single(module.reconcile_in_steps(&ctx, input())?.items),
    })
}

/// A fixture whose `reconcile` answer depends on what else is in the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Impurity {
    /// Index of the fixture in the slice given to [`check_purity`].
    pub fixture: usize,
    /// Where it differed: `"alone and in the batch"` or `"forward and reversed batch"`.
    pub between: &'static str,
    /// The two answers.
    pub first: Result<Reconciled, RuleError>,
    pub second: Result<Reconciled, RuleError>,
}

/// Checks what the no-op memo relies on: a fixture's `reconcile` answer is the same alone and
/// in a batch, whatever the batch's order. For each distinct context among the fixtures, every
/// fixture's guest and record go in one batch in file order and in one in reverse order: each
/// item must get the same answer in both, and a fixture whose own context it is must also get
/// its answer alone.
pub fn check_purity(
    module: &RulesModule,
    fixtures: &[Fixture],
) -> Result<Vec<Impurity>, RulesError> {
    // Each fixture's context, as an index into the distinct ones.
    let mut contexts: Vec<Context> = Vec::new();
    let mut own = Vec::with_capacity(fixtures.len());
    for f in fixtures {
        let ctx = effective_context(module, &f.context)?;
        own.push(match contexts.iter().position(|c| *c == ctx) {
            Some(i) => i,
            None => {
                contexts.push(ctx);
                contexts.len() - 1
            }
        });
    }
    let input = fixture_input;
    let inputs = || -> Vec<ReconcileInput> { fixtures.iter().map(input).collect() };
    let mut problems = Vec::new();
    for (c, ctx) in contexts.iter().enumerate() {
        let forward = module.reconcile(ctx, inputs())?.items;
        let mut reversed_in = inputs();
        reversed_in.reverse();
        let mut reversed = module.reconcile(ctx, reversed_in)?.items;
        reversed.reverse();
        for (i, (fw, rv)) in forward.iter().zip(&reversed).enumerate() {
            if fw != rv && !problems.iter().any(|p: &Impurity| p.fixture == i) {
                problems.push(Impurity {
                    fixture: i,
                    between: "forward and reversed batch",
                    first: fw.clone(),
                    second: rv.clone(),
                });
                continue;
            }
            if own[i] != c {
                continue;
            }
            let alone = single(module.reconcile(ctx, vec![input(&fixtures[i])])?.items);
            if alone != *fw && !problems.iter().any(|p: &Impurity| p.fixture == i) {
                problems.push(Impurity {
                    fixture: i,
                    between: "alone and in the batch",
                    first: alone,
                    second: fw.clone(),
                });
            }
        }
    }
    problems.sort_by_key(|p| p.fixture);
    Ok(problems)
}
