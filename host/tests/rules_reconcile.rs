//! `RulesModule::reconcile`, what the sync calls: one fused call per batch for a WIT 0.4 module
//! (the embedded default), a 0.3 one (`tests/rules-v0-3`) or a 0.2 one (`tests/rules-v0-2`), the
//! three steps for a 0.1 module (`tests/rules-misbehaving/runaway`). All give what the three
//! steps give, and what the rules give natively; a 0.3 module maps VMs and their children as the
//! 0.4 default does, a 0.2 module maps VMs exactly as before and leaves children alone; a failed
//! batch fails alone, naming its first and last guest.

mod rules_common;

use guest_default::DefaultRules;
use guest_default::model::{
    Context, FieldChange, JsonText, NetboxVm, ReconcileInput, Reconciled, RuleSet,
};
use pve2netbox::rules::{
    CacheMode, LimitHit, Limits, Metering, RulesError, RulesModule, RulesRuntime, RuntimeConfig,
    fixture::effective_context, generate,
};
use rules_common::{guest, misbehave, misbehaving};

fn runtime(limits: Limits) -> RulesRuntime {
    RulesRuntime::new(RuntimeConfig {
        limits,
        cache: CacheMode::Disabled,
    })
    .expect("runtime")
}

fn fuel_runtime() -> RulesRuntime {
    runtime(Limits {
        metering: Metering::Fuel,
        ..Limits::default()
    })
}

/// Generated guests with their current records (about one in ten without one, a third drifted).
fn workload(n: usize) -> Vec<ReconcileInput> {
    let guests = generate::guests("lab", n, 3);
    let current = generate::current_records(&guests, 3);
    guests
        .into_iter()
        .zip(current)
        .map(|(guest, current)| ReconcileInput {
            guest,
            current,
            ..ReconcileInput::default()
        })
        .collect()
}

#[test]
fn fused_reconcile_of_the_default_agrees_with_its_three_steps_and_native() {
    let rt = fuel_runtime();
    let m = rt.load_default().expect("default rules");
    assert!(m.fuses_reconcile(), "the embedded default exports WIT 0.4");
    assert_eq!(m.wit_version(), "0.4.0");
    let ctx = effective_context(&m, &Context::default()).unwrap();
    let items = workload(300);

    let fused = m.reconcile(&ctx, items.clone()).expect("fused reconcile");
    let steps = m
        .reconcile_in_steps(&ctx, items.clone())
        .expect("the three steps");
    let native = DefaultRules::reconcile(&ctx, items);
    assert_eq!(fused.items.len(), 300);
    assert_eq!(fused.items, steps.items);
    assert_eq!(fused.items, native);

    // Not a vacuous comparison: the workload has creates and updates of several sizes.
    let vms: Vec<_> = fused
        .items
        .iter()
        .filter_map(|r| match r {
            Ok(Reconciled::Vm(v)) => Some(v),
            _ => None,
        })
        .collect();
    assert!(vms.len() > 200, "{} of 300 reconciled", vms.len());
    let sizes: std::collections::BTreeSet<usize> = vms.iter().map(|v| v.changes.len()).collect();
    assert!(sizes.len() > 2, "change counts {sizes:?}");
    assert!(vms.iter().all(|v| v.name.is_some()));

    // One call instead of three, and the desired VM never crosses the boundary: less fuel
    // (deterministic, unlike time).
    assert!(
        fused.fuel > 0 && fused.fuel < steps.fuel,
        "fused {} vs three steps {}",
        fused.fuel,
        steps.fuel
    );
}

fn record(id: u64, name: &str, status: &str) -> NetboxVm {
    NetboxVm {
        id,
        name: name.into(),
        status: status.into(),
        ..NetboxVm::default()
    }
}

fn change(field: &str, old: &str, new: &str) -> FieldChange {
    FieldChange {
        field: field.into(),
        old: JsonText(old.into()),
        new: JsonText(new.into()),
    }
}

#[test]
fn a_wit_0_1_module_reconciles_through_its_three_steps() {
    let rt = fuel_runtime();
    let m = rt.load_file(&misbehaving("runaway")).expect("0.1 module");
    assert!(!m.fuses_reconcile());
    let items = vec![
        // Exists, status differs: one change.
        ReconcileInput {
            guest: guest(100, "a"),
            current: Some(record(7, "a", "offline")),
            ..ReconcileInput::default()
        },
        // New: the create body (name and status).
        ReconcileInput {
            guest: guest(101, "b"),
            current: None,
            ..ReconcileInput::default()
        },
        // Exists and agrees: nothing to do.
        ReconcileInput {
            guest: guest(102, "c"),
            current: Some(record(8, "c", "active")),
            ..ReconcileInput::default()
        },
    ];
    let out = m
        .reconcile(&Context::default(), items.clone())
        .expect("reconcile of a 0.1 module");
    let vm = |name: &str, changes: Vec<FieldChange>| {
        Ok(Reconciled::Vm(guest_default::model::ReconciledVm {
            name: Some(name.into()),
            needs: Vec::new(),
            changes,
            children: Vec::new(),
        }))
    };
    assert_eq!(
        out.items,
        vec![
            vm("a", vec![change("status", "\"offline\"", "\"active\"")]),
            vm(
                "b",
                vec![
                    change("name", "null", "\"b\""),
                    change("status", "null", "\"active\"")
                ]
            ),
            vm("c", vec![]),
        ]
    );
    // The fuel is the three calls'.
    assert!(out.fuel > 0);
    assert_eq!(
        out,
        m.reconcile_in_steps(&Context::default(), items).unwrap()
    );
}

#[test]
fn a_trap_in_a_wit_0_1_reconcile_fails_that_batch_only() {
    let rt = runtime(Limits::default());
    let m = rt.load_file(&misbehaving("runaway")).expect("0.1 module");
    let items: Vec<_> = [(100, "a"), (101, "b"), (102, "c")]
        .into_iter()
        .map(|(id, n)| ReconcileInput {
            guest: guest(id, n),
            current: None,
            ..ReconcileInput::default()
        })
        .collect();
    let err = m
        .reconcile(&misbehave("panic", None), items.clone())
        .expect_err("a panic fails the batch")
        .in_batch(4);
    let msg = err.to_string();
    assert!(matches!(err, RulesError::Trap { .. }), "{msg}");
    assert!(
        msg.contains("normalize-desired of batch 4 (3 items, lab/n1/100 .. lab/n1/102) trapped"),
        "{msg}"
    );
    assert!(msg.contains("deliberate panic"), "{msg}");
    let next = m
        .reconcile(&Context::default(), items)
        .expect("the next batch");
    assert_eq!(next.items.len(), 3);
    assert!(next.items.iter().all(Result::is_ok));
}

/// The default module stopped inside `reconcile` (its memory limit, hit while the call's input
/// is lowered) fails that batch, named by its first and last guest; the next batch of the same
/// module runs.
#[test]
fn a_failed_fused_reconcile_fails_that_batch_only() {
    const LIMIT: usize = 16 << 20;
    let rt = runtime(Limits {
        memory_bytes: LIMIT,
        ..Limits::default()
    });
    let m: RulesModule = rt.load_default().expect("default rules");
    assert!(m.fuses_reconcile());
    let ctx = effective_context(&m, &Context::default()).unwrap();
    let mut huge = guest(200, "huge");
    huge.config.push(("description".into(), "x".repeat(LIMIT)));
    let bad = vec![
        ReconcileInput {
            guest: guest(199, "small"),
            current: None,
            ..ReconcileInput::default()
        },
        ReconcileInput {
            guest: huge,
            current: None,
            ..ReconcileInput::default()
        },
    ];
    let err = m.reconcile(&ctx, bad).expect_err("over the memory limit");
    let msg = err.to_string();
    assert!(
        matches!(err.limit(), Some(LimitHit::Memory { limit, .. }) if *limit == LIMIT),
        "{msg}"
    );
    assert!(
        msg.contains("reconcile of batch (2 items, lab/n1/199 .. lab/n1/200) stopped"),
        "{msg}"
    );
    let good = m
        .reconcile(&ctx, workload(50))
        .expect("the next batch of the same module");
    assert_eq!(good.items.len(), 50);
    assert!(
        good.items
            .iter()
            .any(|r| matches!(r, Ok(Reconciled::Vm(_))))
    );
}

/// A module built against WIT 0.2 (`tests/rules-v0-2`, the default rules through the 0.2 shell)
/// maps VMs exactly as before: it passes every VM fixture of the default rules (but those whose
/// create seeds a primary IP, a 0.3 field), its `reconcile`
/// agrees with its three steps, it returns no child change, and where the 0.3 default's children
/// are `keep` (NetBox's children not read) both give the same VM changes.
#[test]
fn a_wit_0_2_module_maps_vms_as_before_and_keeps_children() {
    use guest_default::model::Fixture;
    use pve2netbox::rules::fixture::{check_reconcile, run_fixture};
    let rt = fuel_runtime();
    let v2 = rt
        .load_file(&rules_common::v0_2_module())
        .expect("the 0.2 module");
    let v3 = rt.load_default().expect("the 0.3 default");
    assert!(!v2.has_children() && v3.has_children());
    let dir = rules_common::workspace()
        .join("guest-default")
        .join("fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut vm_only = 0;
    for path in &files {
        let f = Fixture::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Children fixtures, and VM fixtures whose create seeds a primary IP (a 0.3 field).
        let primary_ip = f
            .expect
            .changes
            .iter()
            .flatten()
            .any(|c| c.field.starts_with("primary_ip"));
        if f.has_children() || primary_ip {
            continue;
        }
        vm_only += 1;
        let name = path.display();
        let run = run_fixture(&v2, &f).expect("the fixture runs");
        if let Err(problems) = f.check(&run.outcome) {
            panic!("{name}: {problems}");
        }
        assert!(check_reconcile(&v2, &f).unwrap().agrees(), "{name}");
    }
    assert!(vm_only >= 30, "only {vm_only} VM fixtures");

    // Existing VMs (children not read: `keep`): the same VM changes from both, no child change.
    let ctx2 = effective_context(&v2, &Context::default()).unwrap();
    let ctx3 = effective_context(&v3, &Context::default()).unwrap();
    let items: Vec<ReconcileInput> = workload(200)
        .into_iter()
        .filter(|i| i.current.is_some())
        .collect();
    let old = v2.reconcile(&ctx2, items.clone()).unwrap().items;
    let new = v3.reconcile(&ctx3, items).unwrap().items;
    assert_eq!(old.len(), new.len());
    for (o, n) in old.iter().zip(&new) {
        if let Ok(Reconciled::Vm(v)) = o {
            assert!(v.children.is_empty(), "a 0.2 module has no child change");
        }
        assert_eq!(o, n);
    }
}

/// A module built against WIT 0.3 (`tests/rules-v0-3`, the default rules through the 0.3 shell)
/// still loads and maps VMs and their children exactly as the 0.4 default and the native rules
/// do, on the sync's path (`reconcile_json`, with children, in batches) and through its three
/// steps (every fixture of the default rules).
#[test]
fn a_wit_0_3_module_maps_vms_and_children_as_the_0_4_default() {
    use guest_default::model::Fixture;
    use pve2netbox::rules::bench::Workload;
    use pve2netbox::rules::fixture::{check_reconcile, run_fixture};
    let rt = fuel_runtime();
    let v3 = rt
        .load_file(&rules_common::v0_3_module())
        .expect("the 0.3 module");
    let v4 = rt.load_default().expect("the 0.4 default");
    assert_eq!(
        (v3.wit_version(), v4.wit_version()),
        ("0.3.0".into(), "0.4.0".into())
    );
    assert_eq!(v3.info().wit_version, "0.3.0");
    assert!(v3.has_children() && v3.fuses_reconcile());

    let ctx = effective_context(&v4, &Context::default()).unwrap();
    assert_eq!(ctx, effective_context(&v3, &Context::default()).unwrap());
    let guests = generate::guests("lab", 300, 5);
    let current = generate::current_records(&guests, 5);
    let w = Workload::new(guests, current, 64).with_children();
    let mut creates_with_children = 0;
    for batch in w.batches {
        let old = v3.reconcile_json(&ctx, batch.clone()).unwrap().items;
        let new = v4.reconcile_json(&ctx, batch.clone()).unwrap().items;
        let native = DefaultRules::reconcile_json(&ctx, batch);
        assert_eq!(old, native);
        assert_eq!(new, native);
        creates_with_children += new
            .iter()
            .filter(|r| matches!(r, Ok(Reconciled::Vm(v)) if !v.children.is_empty()))
            .count();
    }
    // Not vacuous: VMs whose children are written, through both versions alike.
    assert!(creates_with_children > 10, "{creates_with_children}");

    let dir = rules_common::workspace()
        .join("guest-default")
        .join("fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        n += 1;
        let f = Fixture::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.display();
        let run = run_fixture(&v3, &f).expect("the fixture runs");
        if let Err(problems) = f.check(&run.outcome) {
            panic!("{name}: {problems}");
        }
        assert!(check_reconcile(&v3, &f).unwrap().agrees(), "{name}");
    }
    assert!(n >= 80, "only {n} fixtures");
}
