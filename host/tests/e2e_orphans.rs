//! End to end, orphans and partial reads: each orphan policy (`report`, `mark` with its
//! reversal, `delete` after N runs), the delete budget, and the scopes that were not read
//! completely (endpoint down, node offline, a guest the rules cannot read, a token that sees
//! fewer guests), which give per-scope errors, exit code 3 and no orphan action under any policy.

mod e2e_support;

use e2e_support::{Harness, cf, choice, spec, tag_slugs, vm_diff};
use serde_json::{Value, json};

const ORPHAN_TAG: &str = "pve2netbox-orphan";

fn harness(vms: usize, clusters: usize, seed: u64) -> Harness {
    let mut h = Harness::generated(spec(vms, 3 * clusters, clusters, 0, seed));
    h.set("task_history", false);
    h
}

fn vm_of(h: &Harness, cluster: &str, vmid: u32) -> Option<Value> {
    h.vms()
        .into_iter()
        .find(|v| cf(v, "proxmox_vm_id") == vmid && v["cluster"]["name"] == cluster)
}

/// Some guest of the first endpoint: `(cluster, vmid)`.
fn some_guest(h: &Harness, nth: usize) -> (String, u32) {
    let first = h.endpoints()[0].name.clone();
    let g = h
        .guests()
        .into_iter()
        .filter(|g| g["cluster"] == *first.as_str())
        .nth(nth)
        .expect("a guest");
    (first, g["vmid"].as_u64().unwrap_or_default() as u32)
}

#[test]
fn orphan_policy_report_changes_nothing() {
    let h = harness(20, 1, 31);
    h.sync_ok();
    let (cluster, vmid) = some_guest(&h, 3);
    h.remove_guest(&cluster, vmid);
    let before = h.vms();
    let mark = h.mark();
    let out = h.sync();
    assert!(out.code == 0, "report policy: {}", out.describe());
    assert_eq!(out.count("orphan"), 1, "{}", out.describe());
    h.assert_no_writes_since(&mark, "orphan policy report");
    assert!(vm_diff(&before, &h.vms()).is_empty());
}

#[test]
fn orphan_policy_mark_marks_then_reverses_when_the_guest_returns() {
    let mut h = harness(20, 1, 32);
    h.set("orphans", "mark");
    h.sync_ok();
    let (cluster, vmid) = some_guest(&h, 2);
    h.edit_guest(&cluster, vmid, json!({"status": "running"}));
    h.sync_ok();
    let original = vm_of(&h, &cluster, vmid).expect("vm");
    assert_eq!(choice(&original["status"]), "active");
    let vm_id = original["id"].as_u64().expect("id");
    let back = h.remove_guest(&cluster, vmid);

    let before = h.vms();
    let out = h.sync();
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.count("orphan"), 1);
    let diff = vm_diff(&before, &h.vms());
    assert_eq!(
        diff.keys().copied().collect::<Vec<_>>(),
        vec![vm_id],
        "{diff:#?}"
    );
    let vm = h.vm(vm_id).expect("marked, not deleted");
    assert_eq!(choice(&vm["status"]), "offline");
    assert!(tag_slugs(&vm).contains(&ORPHAN_TAG.to_string()), "{vm}");
    let journal: Vec<Value> = h
        .objects("journal-entries")
        .into_iter()
        .filter(|j| j["assigned_object_id"] == vm_id)
        .collect();
    assert_eq!(
        journal.len(),
        1,
        "one journal entry for the mark: {journal:#?}"
    );

    // Marked once: a second run with the guest still gone writes nothing.
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "second run with the orphan marked");

    // The guest comes back: tag removed, status restored, a journal entry says so.
    h.control().add_guest(back).expect("guest back");
    let out = h.sync_ok();
    assert_eq!(out.count("orphan"), 0);
    let vm = h.vm(vm_id).expect("same VM");
    assert_eq!(choice(&vm["status"]), "active");
    assert!(!tag_slugs(&vm).contains(&ORPHAN_TAG.to_string()), "{vm}");
    assert_eq!(
        tag_slugs(&vm),
        tag_slugs(&original),
        "tags as before the mark"
    );
    assert_eq!(
        h.vms().len(),
        before.len(),
        "no new VM for the returned guest"
    );
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun after the reversal");
}

#[test]
fn orphan_policy_delete_deletes_after_n_runs() {
    let mut h = harness(20, 1, 33);
    h.set("orphans", "delete")
        .set("orphan_delete_after_runs", 2);
    h.sync_ok();
    let (cluster, vmid) = some_guest(&h, 5);
    let vm_id = vm_of(&h, &cluster, vmid)
        .and_then(|v| v["id"].as_u64())
        .expect("vm");
    h.remove_guest(&cluster, vmid);
    let out = h.sync_ok();
    assert_eq!(out.count("orphan"), 1);
    let vm = h.vm(vm_id).expect("run 1 of 2: still there");
    assert!(tag_slugs(&vm).contains(&ORPHAN_TAG.to_string()));
    assert_eq!(h.vms().len(), 20);
    let out = h.sync_ok();
    assert!(
        h.vm(vm_id).is_none(),
        "run 2 of 2 deletes: {}",
        out.describe()
    );
    assert_eq!(h.vms().len(), 19);
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun after the delete");
}

#[test]
fn delete_budget_refuses_a_run_deleting_too_many() {
    let mut h = harness(20, 1, 34);
    h.set("orphans", "delete")
        .set("orphan_delete_after_runs", 1)
        .set("delete_budget_percent", 5);
    h.sync_ok();
    // Two of twenty (10 %) gone: more than the 5 % budget allows.
    let gone: Vec<(String, u32)> = [1, 7].iter().map(|i| some_guest(&h, *i)).collect();
    for (c, v) in &gone {
        h.remove_guest(c, *v);
    }
    let out = h.sync();
    assert_eq!(
        out.code,
        3,
        "a refused budget is a failure: {}",
        out.describe()
    );
    assert_eq!(h.vms().len(), 20, "nothing deleted");
    assert!(
        out.errors()
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains("budget"))),
        "the error names the budget: {}",
        out.describe()
    );
    // Within budget (10 %), the same orphans are deleted.
    h.set("delete_budget_percent", 10);
    let out = h.sync();
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(h.vms().len(), 18);
    for (c, v) in &gone {
        assert!(vm_of(&h, c, *v).is_none());
    }
}

/// Every orphan policy, each with a removed guest inside the incomplete scope: the run ends
/// with exit 3, an error for the scope, no NetBox write at all, and the scope's VMs exactly as
/// they were.
fn partial_read_never_acts(
    seed: u64,
    clusters: usize,
    break_it: impl Fn(&mut Harness) -> (String, Vec<u32>),
    expect_scope: impl Fn(&Harness, &str) -> String,
) {
    for policy in ["report", "mark", "delete"] {
        let mut h = harness(20 * clusters, clusters, seed);
        h.set("orphans", policy)
            .set("orphan_delete_after_runs", 1)
            .set("delete_budget_percent", 100);
        h.sync_ok();
        let (cluster, untouched) = break_it(&mut h);
        let before = h.vms();
        let mark = h.mark();
        let out = h.sync();
        assert_eq!(out.code, 3, "{policy}: {}", out.describe());
        // Nothing else changed in Proxmox: a run that could not read a scope has nothing to
        // write at all (no delete, no mark, no field guessed from what was not read).
        h.assert_no_writes_since(&mark, &format!("{policy}\n{}", out.describe()));
        let scope = expect_scope(&h, &cluster);
        assert!(
            !out.errors_in(&scope).is_empty(),
            "{policy}: an error for scope {scope}: {}",
            out.describe()
        );
        let after = h.vms();
        assert_eq!(after.len(), before.len(), "{policy}: nothing deleted");
        for vmid in &untouched {
            let a = before.iter().find(|v| {
                cf(v, "proxmox_vm_id") == *vmid && v["cluster"]["name"] == *cluster.as_str()
            });
            let b = after.iter().find(|v| {
                cf(v, "proxmox_vm_id") == *vmid && v["cluster"]["name"] == *cluster.as_str()
            });
            assert!(b.is_some(), "{policy}: {cluster}/{vmid} still there");
            assert_eq!(
                a.map(e2e_support::vm_content),
                b.map(e2e_support::vm_content),
                "{policy}: {cluster}/{vmid} untouched"
            );
        }
        let marked = after
            .iter()
            .filter(|v| tag_slugs(v).contains(&ORPHAN_TAG.to_string()))
            .count();
        assert_eq!(marked, 0, "{policy}: nothing marked as orphan");
    }
}

#[test]
fn endpoint_down_gives_a_scope_error_and_no_orphan_action() {
    partial_read_never_acts(
        41,
        2,
        |h| {
            let cluster = h.endpoints()[1].name.clone();
            let vmids: Vec<u32> = h
                .guests()
                .iter()
                .filter(|g| g["cluster"] == *cluster.as_str())
                .filter_map(|g| g["vmid"].as_u64().map(|v| v as u32))
                .collect();
            h.down.insert(1);
            (cluster, vmids)
        },
        |h, _| h.endpoints()[1].name.clone(),
    );
}

#[test]
fn offline_node_gives_a_scope_error_and_no_orphan_action() {
    partial_read_never_acts(
        42,
        1,
        |h| {
            let ep = h.endpoints()[0].clone();
            // Not the node the endpoint's URL talks to.
            let node = ep.nodes[1].clone();
            let on_node: Vec<u32> = h
                .guests()
                .iter()
                .filter(|g| g["node"] == *node.as_str())
                .filter_map(|g| g["vmid"].as_u64().map(|v| v as u32))
                .collect();
            assert!(on_node.len() >= 2, "guests on {node}");
            // One of its guests is really gone; the node being offline hides that.
            h.remove_guest(&ep.name, on_node[0]);
            h.control().set_node_online(&node, false).expect("offline");
            (ep.name.clone(), on_node)
        },
        |h, cluster| format!("{cluster}/{}", h.endpoints()[0].nodes[1]),
    );
}

#[test]
fn token_seeing_fewer_guests_gives_a_scope_error_and_no_orphan_action() {
    partial_read_never_acts(
        43,
        1,
        |h| {
            let cluster = h.endpoints()[0].name.clone();
            let all: Vec<u32> = h
                .guests()
                .iter()
                .filter_map(|g| g["vmid"].as_u64().map(|v| v as u32))
                .collect();
            let (visible, hidden) = all.split_at(all.len() / 2);
            h.control()
                .set_token_view(Some(&cluster), Some(visible.to_vec()))
                .expect("token view");
            (cluster, hidden.to_vec())
        },
        |h, _| h.endpoints()[0].name.clone(),
    );
}

/// How a guest's config can fail: its read answers an error, or it reads but the rules cannot
/// use it (`onboot` not a boolean).
#[derive(Clone, Copy, Debug)]
enum ConfigFault {
    ReadFails(u16),
    Unusable,
}

#[test]
fn unreadable_guest_config_is_an_error_not_an_orphan() {
    for fault in [
        ConfigFault::ReadFails(500),
        ConfigFault::ReadFails(403),
        ConfigFault::Unusable,
    ] {
        for policy in ["report", "mark", "delete"] {
            let mut h = harness(20, 1, 44);
            h.set("orphans", policy)
                .set("orphan_delete_after_runs", 1)
                .set("delete_budget_percent", 100);
            h.sync_ok();
            let (cluster, vmid) = some_guest(&h, 4);
            match fault {
                ConfigFault::ReadFails(status) => h
                    .control()
                    .set_config_faults(Some(&cluster), &[vmid], status, "got timeout")
                    .expect("config fault"),
                ConfigFault::Unusable => h.edit_guest(&cluster, vmid, json!({"onboot": "maybe"})),
            }
            let vm_before = vm_of(&h, &cluster, vmid).expect("vm");
            let mark = h.mark();
            let out = h.sync();
            let what = format!("{fault:?}, {policy}");
            assert_eq!(out.code, 3, "{what}: {}", out.describe());
            // A failed read is a guest-scope error; the guest itself is reconciled from its
            // resource row with every config-derived field kept (here: nothing to write).
            // A config the rules cannot use fails the guest (ERROR).
            let vm_errors = match fault {
                ConfigFault::ReadFails(_) => 0,
                ConfigFault::Unusable => 1,
            };
            assert_eq!(out.count("error"), vm_errors, "{what}: {}", out.describe());
            assert!(
                !out.errors_in(&format!("{cluster}/")).is_empty(),
                "{what}: an error for the guest: {}",
                out.describe()
            );
            assert_eq!(out.count("orphan"), 0, "{what}");
            h.assert_no_writes_since(&mark, "a failed guest");
            let vm_after = vm_of(&h, &cluster, vmid).expect("not deleted");
            assert_eq!(
                e2e_support::vm_content(&vm_before),
                e2e_support::vm_content(&vm_after),
                "{what}: untouched"
            );
        }
    }
}
