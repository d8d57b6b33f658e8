//! Classification tests: every class, adoption, collisions, identity problems, unmarking.

use guest_default::model::JsonText;
use serde_json::json;

use super::fixtures::*;
use super::*;

#[test]
fn a_world_in_step_is_all_noop() {
    let out = run(
        vec![guest(100).named("web"), guest(101).named("db").on("pve2")],
        vec![
            netbox_vm(10).named("web").identity(100),
            netbox_vm(11).named("db").identity(101).on("pve2"),
        ],
    );
    assert_eq!(out.len(), 2);
    for o in &out {
        assert_eq!(o.class, Class::Noop, "{o:?}");
        assert!(o.changes.is_empty());
    }
    assert_eq!(of(&out, 100).netbox_id, Some(10));
}

#[test]
fn a_new_guest_is_created_with_its_identity() {
    let out = run(vec![guest(100).named("web").lxc()], vec![]);
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Create);
    assert_eq!(o.netbox_id, None);
    assert_eq!(o.name.as_deref(), Some("web"));
    assert_eq!(change(o, "name"), (json!(null), json!("web")));
    assert_eq!(
        change(o, "custom_fields.proxmox_vm_id"),
        (json!(null), json!(100))
    );
    assert_eq!(
        change(o, "custom_fields.proxmox_vm_type"),
        (json!(null), json!("lxc"))
    );
}

#[test]
fn the_host_adds_identity_to_a_create_when_rules_forget_it() {
    let observed = guests(vec![guest(100).named("web")]);
    let snap = snapshot(vec![]);
    // Rules that return only the name.
    let mut rules = |items: &[RulesItem<'_>]| -> Vec<RulesResult> {
        items
            .iter()
            .map(|_| {
                RulesResult::Vm(
                    guest_default::model::ReconciledVm {
                        name: Some("web".into()),
                        needs: Vec::new(),
                        changes: vec![guest_default::model::FieldChange {
                            field: "name".into(),
                            old: JsonText::null(),
                            new: JsonText::string("web"),
                        }],
                        children: Vec::new(),
                    }
                    .into(),
                )
            })
            .collect()
    };
    let out = reconcile(&observed, &snap, &mut rules, &OutputContract::default());
    assert_eq!(
        fields(&out[0]),
        vec![
            "name",
            "custom_fields.proxmox_vm_id",
            "custom_fields.proxmox_vm_type"
        ]
    );
}

#[test]
fn a_memory_change_updates_only_memory() {
    let out = run(
        vec![guest(100).named("web").memory(4096)],
        vec![netbox_vm(10).named("web").identity(100)],
    );
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Update);
    assert_eq!(fields(o), vec!["memory"]);
    assert_eq!(change(o, "memory"), (json!(2048), json!(4096)));
    assert_eq!(o.last_updated.as_deref(), Some("2026-05-01T00:00:10Z"));
}

#[test]
fn a_rename_is_an_update_of_the_name_only() {
    let out = run(
        vec![guest(100).named("web-new")],
        vec![netbox_vm(10).named("web").identity(100)],
    );
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Update);
    assert_eq!(fields(o), vec!["name"]);
    assert_eq!(o.name.as_deref(), Some("web-new"));
}

#[test]
fn a_migration_is_an_update_of_device_and_node() {
    let out = run(
        vec![guest(100).named("web").on("pve2")],
        vec![netbox_vm(10).named("web").identity(100)],
    );
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Update);
    assert_eq!(fields(o), vec!["device", "custom_fields.proxmox_node"]);
    assert_eq!(
        change(o, "custom_fields.proxmox_node"),
        (json!("pve1"), json!("pve2"))
    );
}

#[test]
fn an_unowned_vm_of_the_same_name_is_adopted_case_insensitively() {
    let out = run(
        vec![guest(100).named("web").memory(4096)],
        vec![netbox_vm(10).named("WEB")],
    );
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Adopt);
    assert_eq!(o.netbox_id, Some(10));
    assert_eq!(
        fields(o),
        vec![
            "name",
            "memory",
            "custom_fields.proxmox_node",
            "custom_fields.proxmox_vm_id",
            "custom_fields.proxmox_vm_type"
        ]
    );
    assert_eq!(
        change(o, "custom_fields.proxmox_vm_id"),
        (json!(null), json!(100))
    );
}

#[test]
fn adoption_stays_in_its_cluster() {
    let out = run(
        vec![guest(100).named("web")],
        vec![netbox_vm(10).named("web").in_cluster("pve-b", 2)],
    );
    assert_eq!(of(&out, 100).class, Class::Create);
}

#[test]
fn a_guest_with_identity_never_adopts_a_same_name_unowned_vm() {
    let out = run(
        vec![guest(100).named("web")],
        vec![
            netbox_vm(10).named("web").identity(100),
            netbox_vm(11).named("web"),
        ],
    );
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Noop);
    assert_eq!(o.netbox_id, Some(10));
}

#[test]
fn two_unowned_candidates_make_adoption_ambiguous() {
    let out = run(
        vec![guest(100).named("web")],
        vec![netbox_vm(10).named("web"), netbox_vm(11).named("Web")],
    );
    match &of(&out, 100).class {
        Class::Skip(reason) => {
            assert!(reason.contains("#10") && reason.contains("#11"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_new_guests_with_one_name_create_the_lowest_vmid_only() {
    let out = run(
        vec![guest(101).named("WEB"), guest(100).named("web")],
        vec![],
    );
    assert_eq!(of(&out, 100).class, Class::Create);
    match &of(&out, 101).class {
        Class::Skip(reason) => {
            assert!(
                reason.contains("pve-a/pve1/100") && reason.contains("pve-a/pve1/101"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(of(&out, 101).changes.is_empty());
}

#[test]
fn the_guest_already_holding_a_name_keeps_it_over_a_lower_vmid() {
    let out = run(
        vec![guest(100).named("web"), guest(200).named("web")],
        vec![netbox_vm(20).named("web").identity(200)],
    );
    assert_eq!(of(&out, 200).class, Class::Noop);
    assert!(matches!(of(&out, 100).class, Class::Skip(_)));
}

#[test]
fn two_guests_never_adopt_the_same_vm() {
    let out = run(
        vec![guest(100).named("web"), guest(101).named("WEB")],
        vec![netbox_vm(10).named("Web")],
    );
    assert_eq!(of(&out, 100).class, Class::Adopt);
    assert!(matches!(of(&out, 101).class, Class::Skip(_)));
}

#[test]
fn a_create_on_a_name_held_by_an_orphan_is_skipped_naming_it() {
    // Guest 100 was destroyed; a new guest 105 got its name.
    let out = run(
        vec![guest(105).named("web")],
        vec![netbox_vm(10).named("web").identity(100)],
    );
    match &of(&out, 105).class {
        Class::Skip(reason) => {
            assert!(
                reason.contains("#10") && reason.contains("proxmox_vm_id 100"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rename_onto_an_unowned_vm_name_is_skipped() {
    let out = run(
        vec![guest(100).named("db")],
        vec![
            netbox_vm(10).named("web").identity(100),
            netbox_vm(11).named("db"),
        ],
    );
    assert!(matches!(of(&out, 100).class, Class::Skip(_)));
    assert!(of(&out, 100).changes.is_empty());
}

#[test]
fn a_rename_frees_its_name_before_a_create_takes_it() {
    // 100 renamed web -> web-old in Proxmox, a new guest 101 is called web.
    let out = run(
        vec![guest(100).named("web-old"), guest(101).named("web")],
        vec![netbox_vm(10).named("web").identity(100)],
    );
    assert_eq!(of(&out, 100).class, Class::Update);
    assert_eq!(of(&out, 101).class, Class::Create);
    assert_eq!(of(&out, 101).after, vec![100]);
    assert!(of(&out, 100).after.is_empty());
}

#[test]
fn a_rename_onto_the_name_of_a_vm_renamed_away_is_ordered_after_it() {
    // 101 renamed to 100's old name while 100 got a new one.
    let out = run(
        vec![guest(100).named("alpha"), guest(101).named("web")],
        vec![
            netbox_vm(10).named("web").identity(100),
            netbox_vm(11).named("db").identity(101),
        ],
    );
    assert_eq!(of(&out, 101).class, Class::Update);
    assert_eq!(of(&out, 101).after, vec![100]);
}

/// The new value of `field`'s change, as JSON.
fn new_value(o: &VmOutcome, field: &str) -> Option<serde_json::Value> {
    o.changes.find(field).map(|c| c.new.to_value())
}

#[test]
fn swapped_names_go_through_a_temporary_name() {
    let out = run(
        vec![guest(100).named("db"), guest(101).named("web")],
        vec![
            netbox_vm(10).named("web").identity(100),
            netbox_vm(11).named("db").identity(101),
        ],
    );
    // The lowest VMID is parked, which frees "web" for 101, written after it.
    let parked = of(&out, 100);
    assert_eq!(parked.class, Class::Update);
    assert_eq!(
        new_value(parked, "name"),
        Some(json!("pve2netbox-swap-100"))
    );
    assert_eq!(parked.name.as_deref(), Some("pve2netbox-swap-100"));
    assert!(parked.after.is_empty());
    let notice = parked.notice.as_deref().unwrap_or_default();
    assert!(
        notice.contains("rename cycle") && notice.contains("'db'"),
        "{notice}"
    );
    let other = of(&out, 101);
    assert_eq!(other.class, Class::Update);
    assert_eq!(new_value(other, "name"), Some(json!("web")));
    assert_eq!(other.after, vec![100]);
    assert_eq!(other.notice, None);
}

#[test]
fn the_run_after_a_parking_gives_the_vm_its_own_name() {
    // What NetBox holds after the run above.
    let out = run(
        vec![guest(100).named("db"), guest(101).named("web")],
        vec![
            netbox_vm(10).named("pve2netbox-swap-100").identity(100),
            netbox_vm(11).named("web").identity(101),
        ],
    );
    let vm = of(&out, 100);
    assert_eq!(vm.class, Class::Update);
    assert_eq!(new_value(vm, "name"), Some(json!("db")));
    assert_eq!(vm.notice, None);
    assert_eq!(of(&out, 101).class, Class::Noop);
}

#[test]
fn a_three_way_rotation_parks_one_vm_and_orders_the_others() {
    // a -> b -> c -> a: 100 takes 101's name, 101 takes 102's, 102 takes 100's.
    let out = run(
        vec![
            guest(100).named("b"),
            guest(101).named("c"),
            guest(102).named("a"),
        ],
        vec![
            netbox_vm(10).named("a").identity(100),
            netbox_vm(11).named("b").identity(101),
            netbox_vm(12).named("c").identity(102),
        ],
    );
    assert_eq!(
        new_value(of(&out, 100), "name"),
        Some(json!("pve2netbox-swap-100"))
    );
    // 102 takes "a" once 100 left it; 101 takes "c" once 102 left it.
    assert_eq!(of(&out, 102).after, vec![100]);
    assert_eq!(of(&out, 101).after, vec![102]);
    for vmid in [101, 102] {
        assert_eq!(of(&out, vmid).class, Class::Update);
        assert_eq!(of(&out, vmid).notice, None);
    }
}

#[test]
fn a_parking_name_taken_by_another_vm_leaves_the_cycle_skipped() {
    let out = run(
        vec![guest(100).named("db"), guest(101).named("web")],
        vec![
            netbox_vm(10).named("web").identity(100),
            netbox_vm(11).named("db").identity(101),
            netbox_vm(12).named("PVE2NETBOX-SWAP-100"),
        ],
    );
    for vmid in [100, 101] {
        let o = of(&out, vmid);
        assert!(matches!(o.class, Class::Skip(_)), "{vmid}: {:?}", o.class);
        assert!(o.changes.is_empty());
    }
}

#[test]
fn a_reused_vmid_of_another_type_is_an_error_not_an_overwrite() {
    let out = run(
        vec![guest(100).named("web").lxc()],
        vec![netbox_vm(10).named("web").identity(100)],
    );
    let o = of(&out, 100);
    match &o.class {
        Class::Error(message) => {
            assert!(
                message.contains("reused") && message.contains("#10"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(o.changes.is_empty());
}

#[test]
fn duplicate_identities_are_reported_and_left_alone() {
    let out = run(
        vec![guest(100).named("web").memory(4096)],
        vec![
            netbox_vm(10).named("web").identity(100),
            netbox_vm(11).named("web-copy").identity(100),
        ],
    );
    let o = of(&out, 100);
    match &o.class {
        Class::Error(message) => {
            assert!(
                message.contains("#10") && message.contains("#11"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(o.changes.is_empty());
}

#[test]
fn rule_skips_and_errors_pass_through() {
    let out = run(
        vec![
            guest(100).rules_skip("template"),
            guest(101).rules_error("bad-config", "no disks"),
        ],
        vec![],
    );
    assert_eq!(of(&out, 100).class, Class::Skip("rules: template".into()));
    assert_eq!(
        of(&out, 101).class,
        Class::Error("rule error bad-config: no disks".into())
    );
}

#[test]
fn a_diff_error_or_a_trap_fails_only_those_vms() {
    let (observed, mut fake) = guests_and_rules(vec![guest(100), guest(101)]);
    let snap = snapshot(vec![]);
    let mut rules = |items: &[RulesItem<'_>]| -> Vec<RulesResult> {
        let mut out = fake.reconcile(items);
        out[1] = RulesResult::Error("rule error bad-disk: size".into());
        out
    };
    let out = reconcile(&observed, &snap, &mut rules, &OutputContract::default());
    assert_eq!(fake.calls, 1, "one batch");
    assert_eq!(of(&out, 100).class, Class::Create);
    assert!(matches!(&of(&out, 101).class, Class::Error(m) if m.contains("bad-disk")));

    // A batch answering the wrong number of results fails the whole batch.
    let mut short = |_: &[RulesItem<'_>]| -> Vec<RulesResult> { Vec::new() };
    let out = reconcile(&observed, &snap, &mut short, &OutputContract::default());
    for o in &out {
        assert!(matches!(&o.class, Class::Error(m) if m.contains("0 results for 2")));
    }
}

#[test]
fn an_answer_outside_the_contract_fails_only_its_vm_with_no_write() {
    let (observed, mut fake) = guests_and_rules(vec![guest(100), guest(101), guest(102)]);
    let snap = snapshot(vec![netbox_vm(7).identity(101)]);
    let mut rules = |items: &[RulesItem<'_>]| -> Vec<RulesResult> {
        let mut out = fake.reconcile(items);
        if let RulesResult::Vm(answer) = &mut out[0] {
            answer.changes.push("cluster", "1", "2");
        }
        if let RulesResult::Vm(answer) = &mut out[1] {
            answer.changes.push("tags", "[\"prod\"]", "\"prod\"");
        }
        out
    };
    let contract = OutputContract::default();
    let out = reconcile(&observed, &snap, &mut rules, &contract);
    let error = |vmid| match &of(&out, vmid).class {
        Class::Error(m) => m.clone(),
        other => panic!("{vmid}: expected an error, got {other:?}"),
    };
    assert!(error(100).contains("'cluster'"), "{}", error(100));
    assert!(
        error(101).contains("not a list of tag slugs"),
        "{}",
        error(101)
    );
    assert!(of(&out, 100).changes.is_empty() && of(&out, 101).changes.is_empty());
    assert_eq!(of(&out, 102).class, Class::Create);
}

#[test]
fn an_unnamed_guest_without_identity_is_skipped() {
    let out = run(vec![guest(100).unnamed()], vec![]);
    assert!(matches!(&of(&out, 100).class, Class::Skip(r) if r.contains("no usable name")));
}

#[test]
fn an_unnamed_guest_with_identity_keeps_its_name() {
    let out = run(
        vec![guest(100).unnamed()],
        vec![netbox_vm(10).named("web").identity(100)],
    );
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Noop);
    assert_eq!(o.name.as_deref(), Some("web"));
}

#[test]
fn a_returning_guest_loses_its_orphan_mark() {
    let out = run(
        vec![guest(100).named("web").tags(&["prod"])],
        vec![
            netbox_vm(10)
                .named("web")
                .identity(100)
                .status("offline")
                .tags(&["pve2netbox-orphan", "prod", "ops"])
                .missing_runs(2),
        ],
    );
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Update);
    assert_eq!(change(o, "status"), (json!("offline"), json!("active")));
    let (_, tags) = change(o, "tags");
    assert_eq!(tags, json!(["ops", "prod"]));
    assert_eq!(
        change(o, "custom_fields.proxmox_missing_runs"),
        (json!(2), json!(null))
    );
    assert!(
        o.journal
            .as_ref()
            .is_some_and(|j| j.comments.contains("back"))
    );
}

#[test]
fn an_unmarked_vm_gets_no_tag_change() {
    let out = run(
        vec![guest(100).named("web").tags(&["prod"])],
        vec![netbox_vm(10).named("web").identity(100).tags(&["prod"])],
    );
    assert_eq!(of(&out, 100).class, Class::Noop);
    assert_eq!(of(&out, 100).journal, None);
}

#[test]
fn rules_never_rekey_an_existing_vm() {
    let out = run(
        vec![
            guest(100)
                .named("web")
                .custom("proxmox_vm_id", JsonText::uint(999)),
        ],
        vec![netbox_vm(10).named("web").identity(100)],
    );
    assert_eq!(of(&out, 100).class, Class::Noop);
}

#[test]
fn outcomes_are_sorted_by_cluster_then_vmid_whatever_the_input_order() {
    let make = || {
        vec![
            guest(300).in_cluster("pve-b", 2),
            guest(100),
            guest(200).in_cluster("pve-b", 2),
            guest(50),
        ]
    };
    let out = run(make(), vec![]);
    let mut reversed = make();
    reversed.reverse();
    let out2 = run(reversed, vec![]);
    let order: Vec<(String, u32)> = out.iter().map(|o| (o.cluster.clone(), o.vmid)).collect();
    assert_eq!(
        order,
        vec![
            ("pve-a".into(), 50),
            ("pve-a".into(), 100),
            ("pve-b".into(), 200),
            ("pve-b".into(), 300)
        ]
    );
    assert_eq!(out, out2);
}

#[test]
fn identity_fields_are_read_leniently() {
    let record = netbox_vm(10)
        .cf("proxmox_vm_id", JsonText("\"100\"".into()))
        .build();
    assert_eq!(record.identity, IdentityField::Valid(100));
    let record = netbox_vm(10)
        .cf("proxmox_vm_id", JsonText("\"abc\"".into()))
        .build();
    assert!(matches!(record.identity, IdentityField::Invalid(_)));
    let record = netbox_vm(10).build();
    assert_eq!(record.identity, IdentityField::Absent);
}

#[test]
fn a_vm_with_an_invalid_identity_is_neither_adopted_nor_overwritten() {
    let out = run(
        vec![guest(100).named("web")],
        vec![
            netbox_vm(10)
                .named("web")
                .cf("proxmox_vm_id", JsonText("\"abc\"".into())),
        ],
    );
    match &of(&out, 100).class {
        Class::Skip(reason) => assert!(reason.contains("invalid proxmox_vm_id"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn vms_already_sharing_a_name_in_netbox_are_left_as_they_are() {
    // NetBox allows equal names in different tenants; both exist today.
    let out = run(
        vec![
            guest(100).named("web"),
            guest(101).named("web").memory(4096),
        ],
        vec![
            netbox_vm(10).named("web").identity(100),
            netbox_vm(11).named("web").identity(101),
        ],
    );
    assert_eq!(of(&out, 100).class, Class::Noop);
    assert_eq!(of(&out, 101).class, Class::Update);
    assert!(of(&out, 101).after.is_empty());
}

#[test]
fn a_container_matches_its_own_type_and_updates_memory() {
    let out = run(
        vec![guest(100).named("ct").lxc().memory(512)],
        vec![netbox_vm(10).named("ct").identity(100).lxc().memory(1024)],
    );
    let o = of(&out, 100);
    assert_eq!(o.class, Class::Update);
    assert_eq!(change(o, "memory"), (json!(1024), json!(512)));
    assert_eq!(fields(o), vec!["memory"]);
}

#[test]
fn the_rules_are_asked_once_and_again_only_for_adoptions() {
    let (observed, mut rules) = guests_and_rules(vec![
        guest(100).named("web"),
        guest(101).named("db"),
        guest(102),
    ]);
    let snap = snapshot(vec![
        netbox_vm(11).named("db"),
        netbox_vm(12).named("vm-102").identity(102),
    ]);
    let out = reconcile(&observed, &snap, &mut rules, &OutputContract::default());
    assert_eq!(rules.calls, 2, "one batch, then one for the adoption");
    assert_eq!(of(&out, 100).class, Class::Create);
    assert_eq!(of(&out, 101).class, Class::Adopt);
    assert_eq!(of(&out, 102).class, Class::Noop);

    let (observed, mut rules) = guests_and_rules(vec![guest(100).named("web")]);
    reconcile(
        &observed,
        &snapshot(vec![]),
        &mut rules,
        &OutputContract::default(),
    );
    assert_eq!(rules.calls, 1, "nothing to adopt: one batch");
}

/// Every call to the rules is made by `ask_all`, adoptions included: the rules (and what only
/// they need) can be dropped before `classify_all`, which gives the outcomes `reconcile` gives.
#[test]
fn the_rules_are_done_before_the_outcomes_are_made() {
    let guests = || vec![guest(100).named("web"), guest(101).named("db"), guest(102)];
    let snap = snapshot(vec![
        netbox_vm(11).named("db"),
        netbox_vm(12).named("vm-102").identity(102),
    ]);
    let contract = OutputContract::default();
    let (observed, mut rules) = guests_and_rules(guests());
    let asked = ask_all(&observed, &snap, &mut rules, &contract);
    assert_eq!(rules.calls, 2, "one batch, then one for the adoption");
    drop(rules);
    let outcomes = classify_all(&observed, &snap, asked, &contract);

    let (observed, mut rules) = guests_and_rules(guests());
    let whole = reconcile(&observed, &snap, &mut rules, &contract);
    assert_eq!(outcomes, whole);
    assert_eq!(of(&outcomes, 101).class, Class::Adopt);
}

#[test]
fn only_a_guest_that_may_adopt_is_marked_to_be_asked_again() {
    let (observed, mut fake) = guests_and_rules(vec![
        guest(100).named("web"),
        guest(101).named("spare"),
        guest(102).named("db").in_cluster("pve-b", 2),
    ]);
    let snap = snapshot(vec![
        netbox_vm(10).named("web").identity(100),
        // Unowned, in the first cluster only: 101 may adopt it, 102 (another cluster) may not.
        netbox_vm(11).named("spare"),
    ]);
    let mut asked: Vec<Vec<(u32, bool)>> = Vec::new();
    let mut rules = |items: &[RulesItem<'_>]| {
        asked.push(
            items
                .iter()
                .map(|i| (observed[i.guest].vmid, i.again))
                .collect(),
        );
        fake.reconcile(items)
    };
    let out = reconcile(&observed, &snap, &mut rules, &OutputContract::default());
    assert_eq!(
        asked,
        vec![
            vec![(100, false), (101, true), (102, false)],
            vec![(101, false)]
        ],
        "(vmid, again) per call: the sync frees a config as soon as `again` is false"
    );
    assert_eq!(of(&out, 101).class, Class::Adopt);
    assert_eq!(of(&out, 102).class, Class::Create);
}

/// Rules that create the VM `web` with a primary IPv4 and one interface.
fn rules_with_children(items: &[RulesItem<'_>]) -> Vec<RulesResult> {
    use guest_default::children::{ChildChange, ChildKind, ChildOp};
    use guest_default::model::{FieldChange, ReconciledVm};
    let change = |field: &str, new: JsonText| FieldChange {
        field: field.into(),
        old: JsonText::null(),
        new,
    };
    items
        .iter()
        .map(|_| {
            RulesResult::Vm(
                ReconciledVm {
                    name: Some("web".into()),
                    needs: Vec::new(),
                    changes: vec![
                        change("name", JsonText::string("web")),
                        change("primary_ip4", JsonText::string("10.0.0.5/24")),
                    ],
                    children: vec![ChildChange {
                        kind: ChildKind::Interface,
                        key: "net0".into(),
                        parent: None,
                        op: ChildOp::Create,
                        changes: vec![change("name", JsonText::string("net0"))],
                    }],
                }
                .into(),
            )
        })
        .collect()
}

/// A 0.3 module's child changes and primary IPs are not written yet: the VM is created with its
/// own fields, and the outcome says per VM what was not applied (the plan lists it).
#[test]
fn child_changes_are_reported_as_not_applied() {
    let observed = guests(vec![guest(100).named("web")]);
    let snap = snapshot(vec![]);
    let contract = OutputContract::default().with_children(true);
    let mut rules = rules_with_children;
    let mut out = reconcile(&observed, &snap, &mut rules, &contract);
    let o = &out[0];
    assert_eq!(o.class, Class::Create);
    assert!(o.changes.find("primary_ip4").is_none(), "{o:?}");
    let notice = o.children_not_applied.as_deref().expect("a notice");
    assert!(
        notice.contains("1 interface change") && notice.contains("primary_ip4"),
        "{notice}"
    );
    let plan = crate::pipeline::plan::Plan::build(&mut out, &Default::default());
    assert!(
        plan.notices
            .iter()
            .any(|n| n.kind == "children" && n.scope == "pve-a/pve1/100"),
        "{:?}",
        plan.notices
    );
}

/// Settled as they arrive (what the rules runtime does per batch), the answers' child changes
/// are dropped at once and the outcomes, the plan and its JSON are those of answers held back
/// after every guest was answered; VMs with the same changes held back share one text.
#[test]
fn answers_settled_as_they_arrive_give_the_same_plan() {
    let observed = guests(vec![guest(100).named("web"), guest(101).named("web2")]);
    let snap = snapshot(vec![]);
    let contract = OutputContract::default().with_children(true);
    let mut held = super::SharedTexts::default();
    let mut settled = |items: &[RulesItem<'_>]| {
        let mut answers = rules_with_children(items);
        for answer in &mut answers {
            super::settle_answer(answer, &contract, &mut held);
            let RulesResult::Vm(vm) = answer else {
                panic!("an answer: {answer:?}");
            };
            assert!(vm.children.is_empty(), "{vm:?}");
            assert!(vm.changes.find("primary_ip4").is_none(), "{vm:?}");
        }
        answers
    };
    let mut early = reconcile(&observed, &snap, &mut settled, &contract);
    let mut late = reconcile(&observed, &snap, &mut rules_with_children, &contract);
    assert_eq!(early, late);
    let (a, b) = (
        &early[0].children_not_applied,
        &early[1].children_not_applied,
    );
    assert!(
        std::sync::Arc::ptr_eq(a.as_ref().expect("a notice"), b.as_ref().expect("a notice")),
        "one shared text"
    );
    let early = crate::pipeline::plan::Plan::build(&mut early, &Default::default());
    let late = crate::pipeline::plan::Plan::build(&mut late, &Default::default());
    assert_eq!(early.to_json(), late.to_json());
    let held = early.notices.iter().filter(|n| n.kind == "children");
    assert_eq!(held.count(), 2, "{:?}", early.notices);
}

/// An answer outside the contract is its error when settled early, as when checked late.
#[test]
fn an_answer_settled_early_is_still_held_to_the_contract() {
    let observed = guests(vec![guest(100).named("web")]);
    let snap = snapshot(vec![]);
    // A module before WIT 0.3 may not return child changes.
    let contract = OutputContract::default();
    let mut held = super::SharedTexts::default();
    let mut settled = |items: &[RulesItem<'_>]| {
        let mut answers = rules_with_children(items);
        for answer in &mut answers {
            super::settle_answer(answer, &contract, &mut held);
        }
        answers
    };
    let early = reconcile(&observed, &snap, &mut settled, &contract);
    let late = reconcile(&observed, &snap, &mut rules_with_children, &contract);
    assert!(matches!(early[0].class, Class::Error(_)), "{:?}", early[0]);
    assert_eq!(early, late);
}

/// With `sync.children`, the child changes and primary IPs are planned: the VM's write carries
/// its child operations, the table shows them, and nothing is reported as not applied.
#[test]
fn child_changes_are_planned_when_the_run_writes_children() {
    let observed = guests(vec![guest(100).named("web")]);
    let snap = snapshot(vec![]);
    let contract = OutputContract::default()
        .with_children(true)
        .writing_children(true);
    let mut rules = rules_with_children;
    let mut out = reconcile(&observed, &snap, &mut rules, &contract);
    let o = &out[0];
    assert_eq!(o.class, Class::Create);
    assert!(o.children_not_applied.is_none());
    assert!(o.changes.find("primary_ip4").is_some(), "{o:?}");
    let plan = crate::pipeline::plan::Plan::build(&mut out, &Default::default());
    assert!(plan.notices.is_empty(), "{:?}", plan.notices);
    assert_eq!(plan.summary.child_writes, 1);
    let op = &plan.operations[0];
    assert_eq!(op.children.len(), 1);
    assert_eq!(op.children.get(0).unwrap().key, "net0");
    let table = plan.render_table();
    assert!(table.contains("+ interface 'net0'  (create)"), "{table}");
    assert!(table.contains("Children: 1 writes"), "{table}");
    let back = crate::pipeline::plan::Plan::from_json(&plan.to_json()).expect("round trip");
    assert_eq!(back, plan);
}

/// A VM whose only changes are its children is an update (their writes ride on it).
#[test]
fn a_vm_with_only_child_changes_is_updated() {
    let observed = guests(vec![guest(100).named("web")]);
    let snap = snapshot(vec![netbox_vm(10).named("web").identity(100)]);
    let contract = OutputContract::default()
        .with_children(true)
        .writing_children(true);
    let mut rules = |items: &[RulesItem<'_>]| -> Vec<RulesResult> {
        rules_with_children(items)
            .into_iter()
            .map(|r| match r {
                RulesResult::Vm(mut vm) => {
                    vm.changes.clear();
                    RulesResult::Vm(vm)
                }
                other => other,
            })
            .collect()
    };
    let out = reconcile(&observed, &snap, &mut rules, &contract);
    assert_eq!(out[0].class, Class::Update, "{:?}", out[0]);
    assert!(out[0].changes.is_empty());
    assert_eq!(out[0].children.len(), 1);
}

/// The same answer from a module before WIT 0.3 is outside its contract: a rule error, no write.
#[test]
fn child_changes_from_a_0_2_module_fail_the_vm() {
    let observed = guests(vec![guest(100).named("web")]);
    let snap = snapshot(vec![]);
    let mut rules = rules_with_children;
    let out = reconcile(&observed, &snap, &mut rules, &OutputContract::default());
    match &out[0].class {
        Class::Error(message) => assert!(message.contains("primary_ip4"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
}
