//! Misbehaving rule modules are stopped by the runtime's limits with errors that name the
//! module, the limit and the batch; the batch gets no results; the same runtime (and module)
//! goes on working. Limits are tested at their exact boundary.

mod rules_common;

use std::time::Duration;

use guest_default::model::{Context, Desired};
use pve2netbox::rules::{
    CacheMode, DEFAULT_DEADLINE, DEFAULT_FUEL_BASE, LimitHit, Limits, Metering, RulesError,
    RulesModule, RulesRuntime, RuntimeConfig,
};
use rules_common::{guest, misbehave, misbehaving};

fn runtime(limits: Limits) -> RulesRuntime {
    RulesRuntime::new(RuntimeConfig {
        limits,
        cache: CacheMode::Disabled,
    })
    .expect("runtime")
}

fn runaway(rt: &RulesRuntime) -> RulesModule {
    rt.load_file(&misbehaving("runaway")).expect("load runaway")
}

fn three_guests() -> Vec<guest_default::model::Guest> {
    vec![guest(100, "a"), guest(101, "b"), guest(102, "c")]
}

/// The module still answers a good batch, and the default rules still run on the same runtime.
fn still_works(rt: &RulesRuntime, module: &RulesModule) {
    let out = module
        .normalize_desired(&Context::default(), three_guests())
        .expect("a good batch after a failed one");
    assert_eq!(out.items.len(), 3);
    assert!(
        matches!(&out.items[0], Ok(Desired::Vm(d)) if d.vm.name.as_set().map(String::as_str) == Some("a"))
    );
    let default = rt.load_default().expect("default rules");
    let out = default
        .normalize_desired(&Context::default(), three_guests())
        .expect("the default rules after a failed module");
    assert_eq!(out.items.len(), 3);
}

fn expect_limit(err: RulesError) -> (String, LimitHit) {
    let msg = err.to_string();
    match err {
        RulesError::Limit { limit, .. } => (msg, limit),
        other => panic!("expected a limit error, got: {other}"),
    }
}

fn assert_names_module_and_batch(msg: &str) {
    assert!(
        msg.contains("rules-misbehaving 0.1.0"),
        "module name missing: {msg}"
    );
    assert!(msg.contains("runaway.wasm"), "module file missing: {msg}");
    assert!(msg.contains("normalize-desired"), "call missing: {msg}");
    assert!(
        msg.contains("3 items, lab/n1/100 .. lab/n1/102"),
        "batch missing: {msg}"
    );
}

#[test]
fn infinite_loop_is_stopped_by_fuel() {
    let rt = runtime(Limits {
        metering: Metering::Fuel,
        fuel_base: 1_000_000,
        fuel_per_item: 1_000_000,
        ..Limits::default()
    });
    let m = runaway(&rt);
    let err = m
        .normalize_desired(&misbehave("loop", None), three_guests())
        .expect_err("a loop must not finish");
    let (msg, limit) = expect_limit(err);
    assert_names_module_and_batch(&msg);
    assert!(
        msg.contains("fuel limit (4000000 units = 1000000 base + 1000000 per item x 3 items)"),
        "{msg}"
    );
    assert!(matches!(
        limit,
        LimitHit::Fuel {
            budget: 4_000_000,
            items: 3,
            ..
        }
    ));
    still_works(&rt, &m);
}

#[test]
fn infinite_loop_is_stopped_by_the_wall_clock_deadline() {
    let rt = runtime(Limits {
        metering: Metering::Fuel,
        fuel_base: u64::MAX / 4,
        fuel_per_item: 0,
        deadline: Some(Duration::from_millis(100)),
        ..Limits::default()
    });
    let m = runaway(&rt);
    let err = m
        .normalize_desired(&misbehave("loop", None), three_guests())
        .expect_err("a loop must not finish");
    let (msg, limit) = expect_limit(err);
    assert_names_module_and_batch(&msg);
    assert!(msg.contains("wall-clock deadline (100 ms)"), "{msg}");
    assert_eq!(limit, LimitHit::Deadline(Duration::from_millis(100)));
    still_works(&rt, &m);
}

/// The default metering (no fuel, as the sync runs): the deadline alone stops a loop.
#[test]
fn infinite_loop_is_stopped_by_the_deadline_without_fuel() {
    let limits = Limits {
        deadline: Some(Duration::from_millis(100)),
        ..Limits::default()
    };
    assert_eq!(limits.metering, Metering::Deadline);
    let rt = runtime(limits);
    let m = runaway(&rt);
    let err = m
        .normalize_desired(&misbehave("loop", None), three_guests())
        .expect_err("a loop must not finish");
    let (msg, limit) = expect_limit(err);
    assert_names_module_and_batch(&msg);
    assert!(msg.contains("wall-clock deadline (100 ms)"), "{msg}");
    assert_eq!(limit, LimitHit::Deadline(Duration::from_millis(100)));
    let out = m
        .normalize_desired(&Context::default(), three_guests())
        .expect("a good batch after a failed one");
    assert_eq!(out.fuel, 0, "no fuel is counted without fuel metering");
    still_works(&rt, &m);
}

/// Without fuel, a runtime without a deadline would never stop a loop: it is refused.
#[test]
fn deadline_metering_without_a_deadline_is_refused() {
    assert_eq!(Limits::default().deadline, Some(DEFAULT_DEADLINE));
    let err = RulesRuntime::new(RuntimeConfig {
        limits: Limits {
            deadline: None,
            ..Limits::default()
        },
        cache: CacheMode::Disabled,
    })
    .err()
    .expect("no bound on run time must be refused");
    assert!(err.to_string().contains("needs a deadline"), "{err}");
}

#[test]
fn memory_hog_is_stopped_by_the_memory_limit() {
    let rt = runtime(Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    });
    let m = runaway(&rt);
    let err = m
        .normalize_desired(&misbehave("hog", None), three_guests())
        .expect_err("a hog must not finish");
    let (msg, limit) = expect_limit(err);
    assert_names_module_and_batch(&msg);
    assert!(
        msg.contains("memory limit (33554432 bytes = 32 MiB per call"),
        "{msg}"
    );
    assert!(
        matches!(limit, LimitHit::Memory { limit: 33_554_432, requested } if requested > 33_554_432)
    );
    still_works(&rt, &m);
}

#[test]
fn panic_is_a_trap_that_shows_the_panic_message() {
    let rt = runtime(Limits::default());
    let m = runaway(&rt);
    let err = m
        .normalize_desired(&misbehave("panic", None), three_guests())
        .expect_err("a panic must fail the batch");
    let msg = err.to_string();
    assert!(matches!(err, RulesError::Trap { .. }), "{msg}");
    assert_names_module_and_batch(&msg);
    assert!(
        msg.contains("deliberate panic in normalize-desired"),
        "{msg}"
    );
    still_works(&rt, &m);
}

#[test]
fn unreachable_is_a_trap() {
    let rt = runtime(Limits::default());
    let m = runaway(&rt);
    let err = m
        .normalize_desired(&misbehave("unreachable", None), three_guests())
        .expect_err("unreachable must fail the batch");
    let msg = err.to_string();
    assert!(matches!(err, RulesError::Trap { .. }), "{msg}");
    assert_names_module_and_batch(&msg);
    assert!(msg.contains("unreachable"), "{msg}");
    still_works(&rt, &m);
}

#[test]
fn memory_limit_boundary_one_page_under_passes_one_over_fails() {
    const LIMIT: usize = 8 << 20;
    const PAGE: usize = 64 << 10;
    let rt = runtime(Limits {
        memory_bytes: LIMIT,
        ..Limits::default()
    });
    let m = runaway(&rt);
    for ok in [LIMIT - PAGE, LIMIT] {
        let out = m
            .normalize_desired(&misbehave("grow-to", Some(ok)), three_guests())
            .unwrap_or_else(|e| {
                panic!("growing to {ok} bytes must pass under a {LIMIT}-byte limit: {e}")
            });
        assert!(out.items.iter().all(Result::is_ok), "{:?}", out.items);
    }
    let err = m
        .normalize_desired(&misbehave("grow-to", Some(LIMIT + PAGE)), three_guests())
        .expect_err("one page over the limit must fail");
    let (msg, limit) = expect_limit(err);
    assert_eq!(
        limit,
        LimitHit::Memory {
            limit: LIMIT,
            requested: LIMIT + PAGE
        },
        "{msg}"
    );
}

#[test]
fn fuel_limit_boundary_smallest_budget_passes_one_unit_less_fails() {
    let ctx = Context::default();
    let cache = tempfile::tempdir().unwrap(); // compile once for the ~20 runtimes below
    let run = |budget: u64| {
        let rt = RulesRuntime::new(RuntimeConfig {
            limits: Limits {
                metering: Metering::Fuel,
                fuel_base: budget,
                fuel_per_item: 0,
                ..Limits::default()
            },
            cache: CacheMode::Dir(cache.path().to_path_buf()),
        })
        .expect("runtime");
        runaway(&rt).normalize_desired(&ctx, three_guests())
    };
    let used = run(DEFAULT_FUEL_BASE).expect("probe run").fuel;
    assert!(used > 0);
    assert_eq!(
        run(used).expect("the measured budget passes").fuel,
        used,
        "fuel is deterministic"
    );

    // wasmtime checks fuel at loop headers and calls, not per instruction, so the smallest
    // sufficient budget can be below the measured use; find it, then test both sides of it.
    let (mut lo, mut hi) = (0u64, used); // run(lo) fails, run(hi) passes
    assert!(run(lo).is_err());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if run(mid).is_ok() { hi = mid } else { lo = mid }
    }
    assert!(run(hi).is_ok(), "the smallest sufficient budget passes");
    let (_, limit) = expect_limit(run(hi - 1).expect_err("one unit less fails"));
    assert!(matches!(limit, LimitHit::Fuel { budget, .. } if budget == hi - 1));
    assert!(
        hi > used / 2,
        "the boundary {hi} is near the measured use {used}"
    );
}

#[test]
fn module_is_shared_across_threads_with_a_store_per_call() {
    let rt = runtime(Limits::default());
    let m = runaway(&rt);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                s.spawn(move || {
                    let ctx = if t % 2 == 0 {
                        Context::default()
                    } else {
                        misbehave("panic", None)
                    };
                    (t, m.normalize_desired(&ctx, three_guests()).is_ok())
                })
            })
            .collect();
        for h in handles {
            let (t, ok) = h.join().expect("thread");
            assert_eq!(ok, t % 2 == 0, "thread {t}");
        }
    });
}

/// The limits again through a WIT 0.2 module's one fused `reconcile` call (`tests/rules-v0-2`,
/// the default rules misbehaving on request), not the three steps of the 0.1 runaway module: a
/// loop is stopped by the deadline (the sync's metering) and by fuel, a hog by the memory limit,
/// a panic is a trap with its message; each fails that batch only, naming its guests, and the
/// next batch of the same module maps its VMs.
mod wit_0_2_reconcile {
    use super::*;
    use guest_default::model::{ReconcileInput, Reconciled};
    use pve2netbox::rules::fixture::effective_context;

    fn module(rt: &RulesRuntime) -> RulesModule {
        let m = rt
            .load_file(&rules_common::v0_2_module())
            .expect("the 0.2 module");
        assert!(
            m.fuses_reconcile(),
            "a 0.2 module is called through reconcile"
        );
        m
    }

    fn items() -> Vec<ReconcileInput> {
        three_guests()
            .into_iter()
            .map(|guest| ReconcileInput {
                guest,
                current: None,
                ..ReconcileInput::default()
            })
            .collect()
    }

    /// The module's effective context with the `misbehave` setting added.
    fn asking(m: &RulesModule, kind: &str) -> Context {
        let mut ctx = effective_context(m, &Context::default()).expect("context");
        ctx.settings.extend(misbehave(kind, None).settings);
        ctx
    }

    /// The batch failed, named by its first and last guest; the next batch maps every VM.
    fn failed_alone(m: &RulesModule, msg: &str) {
        assert!(
            msg.contains("reconcile of batch (3 items, lab/n1/100 .. lab/n1/102)"),
            "{msg}"
        );
        let ctx = effective_context(m, &Context::default()).expect("context");
        let next = m.reconcile(&ctx, items()).expect("the next batch");
        assert_eq!(next.items.len(), 3);
        assert!(
            next.items
                .iter()
                .all(|r| matches!(r, Ok(Reconciled::Vm(_)))),
            "{:?}",
            next.items
        );
    }

    #[test]
    fn a_loop_is_stopped_by_the_deadline() {
        let rt = runtime(Limits {
            deadline: Some(Duration::from_millis(100)),
            ..Limits::default()
        });
        let m = module(&rt);
        let err = m
            .reconcile(&asking(&m, "loop"), items())
            .expect_err("a loop must not finish");
        let (msg, limit) = expect_limit(err);
        assert!(msg.contains("wall-clock deadline (100 ms)"), "{msg}");
        assert_eq!(limit, LimitHit::Deadline(Duration::from_millis(100)));
        failed_alone(&m, &msg);
    }

    #[test]
    fn a_loop_is_stopped_by_fuel() {
        let rt = runtime(Limits {
            metering: Metering::Fuel,
            fuel_base: 1_000_000,
            fuel_per_item: 1_000_000,
            ..Limits::default()
        });
        let m = module(&rt);
        let err = m
            .reconcile(&asking(&m, "loop"), items())
            .expect_err("a loop must not finish");
        let (msg, limit) = expect_limit(err);
        assert!(
            matches!(
                limit,
                LimitHit::Fuel {
                    budget: 4_000_000,
                    items: 3,
                    ..
                }
            ),
            "{msg}"
        );
        failed_alone(&m, &msg);
    }

    #[test]
    fn a_hog_is_stopped_by_the_memory_limit() {
        let rt = runtime(Limits {
            memory_bytes: 32 << 20,
            ..Limits::default()
        });
        let m = module(&rt);
        let err = m
            .reconcile(&asking(&m, "hog"), items())
            .expect_err("a hog must not finish");
        let (msg, limit) = expect_limit(err);
        assert!(
            matches!(limit, LimitHit::Memory { limit: 33_554_432, requested } if requested > 33_554_432),
            "{msg}"
        );
        failed_alone(&m, &msg);
    }

    #[test]
    fn a_panic_is_a_trap_with_its_message() {
        let rt = runtime(Limits::default());
        let m = module(&rt);
        let err = m
            .reconcile(&asking(&m, "panic"), items())
            .expect_err("a panic must fail the batch");
        let msg = err.to_string();
        assert!(matches!(err, RulesError::Trap { .. }), "{msg}");
        assert!(msg.contains("deliberate panic in a 0.2 reconcile"), "{msg}");
        failed_alone(&m, &msg);
    }
}
