//! End to end, changes in Proxmox: each change kind updates exactly its fields with one PATCH
//! (memory, rename, migration between nodes, a tag removed in Proxmox while an operator's tag
//! stays, notes, power state); adoption of an unowned same-name VM; a case-insensitive name
//! collision of two guests.

mod e2e_support;

use std::collections::BTreeSet;

use e2e_support::{Harness, cf, choice, spec, tag_slugs, vm_diff};
use pve2netbox_testkit::NewGuest;
use serde_json::{Value, json};

/// The guest chosen for a change: its cluster, vmid and NetBox VM id after the first sync.
struct Target {
    cluster: String,
    vmid: u32,
    vm_id: u64,
    guest: Value,
}

fn target(h: &Harness, kind: &str) -> Target {
    let guest = h.guest_of_type(kind);
    let cluster = guest["cluster"].as_str().unwrap_or_default().to_string();
    let vmid = guest["vmid"].as_u64().unwrap_or_default() as u32;
    let vm_id = h
        .vms()
        .iter()
        .find(|v| cf(v, "proxmox_vm_id") == vmid && v["cluster"]["name"] == *cluster.as_str())
        .and_then(|v| v["id"].as_u64())
        .unwrap_or_else(|| panic!("no NetBox VM for {cluster}/{vmid}"));
    Target {
        cluster,
        vmid,
        vm_id,
        guest,
    }
}

/// Syncs, applies `patch` to one guest in Proxmox, syncs again, and checks that exactly that VM
/// got exactly `fields` changed, by one update (one PATCH request in the simulator; in the real
/// NetBox, one changelog entry whose pre/post data differ in exactly those fields).
fn change_updates_exactly(
    h: &Harness,
    kind: &str,
    before_first_sync: Option<Value>,
    patch: Value,
    fields: &[&str],
) -> (Target, Value) {
    if let Some(pre) = before_first_sync {
        let g = h.guest_of_type(kind);
        h.edit_guest(
            g["cluster"].as_str().unwrap_or_default(),
            g["vmid"].as_u64().unwrap_or_default() as u32,
            pre,
        );
    }
    h.sync_ok();
    let t = target(h, kind);
    h.edit_guest(&t.cluster, t.vmid, patch.clone());
    let before = h.vms();
    let mark = h.mark();
    let out = h.sync_ok();
    let after = h.vms();
    let want: BTreeSet<String> = fields.iter().map(|f| f.to_string()).collect();
    assert_eq!(out.count("update"), 1, "{patch}: {}", out.describe());
    assert_eq!(out.count("create") + out.count("adopt"), 0);
    let diff = vm_diff(&before, &after);
    assert_eq!(
        diff.keys().copied().collect::<Vec<_>>(),
        vec![t.vm_id],
        "{patch}: only the changed guest's VM changes: {diff:#?}"
    );
    assert_eq!(diff[&t.vm_id], want, "{patch}: changed fields");
    let updates = h.vm_updates_since(&mark);
    assert_eq!(
        updates.len(),
        1,
        "{patch}: one VM update:\n{}",
        h.writes_detail(&mark)
    );
    if let Some(changed) = &updates[0].fields {
        assert_eq!(updates[0].vm_id, t.vm_id);
        assert_eq!(changed, &want, "{patch}: fields of the logged update");
    }
    // And nothing else was written (no per-run stamp, no journal entry), but the run lease.
    assert_eq!(
        h.writes_since(&mark),
        1 + e2e_support::LEASE_WRITES,
        "{patch}: one write in all (plus the run lease):\n{}",
        h.writes_detail(&mark)
    );
    // A rerun writes nothing.
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun after the change");
    let vm = h.vm(t.vm_id).expect("the VM is still there");
    (t, vm)
}

fn small() -> Harness {
    let mut h = Harness::generated(spec(12, 3, 1, 0, 21));
    // No task history: a change test counts VM writes only.
    h.set("task_history", false);
    h
}

#[test]
fn memory_change_patches_only_memory() {
    let h = small();
    let (_, vm) = change_updates_exactly(&h, "qemu", None, json!({"memory": 12345}), &["memory"]);
    assert_eq!(vm["memory"], 12345);
}

#[test]
fn rename_patches_only_name() {
    let h = small();
    let (_, vm) =
        change_updates_exactly(&h, "qemu", None, json!({"name": "renamed-web"}), &["name"]);
    assert_eq!(vm["name"], "renamed-web");
}

#[test]
fn lxc_rename_patches_only_name() {
    let h = small();
    let (_, vm) = change_updates_exactly(&h, "lxc", None, json!({"name": "renamed-ct"}), &["name"]);
    assert_eq!(vm["name"], "renamed-ct");
}

#[test]
fn migration_between_nodes_patches_node_and_device() {
    let mut h = small();
    // With a site, node devices exist and `device` follows the guest.
    h.set("site", "e2e-dc");
    let g = h.guest_of_type("qemu");
    let from = g["node"].as_str().unwrap_or_default().to_string();
    let to = h.endpoints()[0]
        .nodes
        .iter()
        .find(|n| **n != from)
        .cloned()
        .expect("another node");
    let (_, vm) = change_updates_exactly(
        &h,
        "qemu",
        None,
        json!({"node": to}),
        &["device", "custom_fields.proxmox_node"],
    );
    assert_eq!(cf(&vm, "proxmox_node"), to.as_str());
    assert_eq!(vm["device"]["name"], to.as_str());
}

#[test]
fn migration_without_site_patches_only_the_node_field() {
    let h = small();
    let g = h.guest_of_type("lxc");
    let from = g["node"].as_str().unwrap_or_default().to_string();
    let to = h.endpoints()[0]
        .nodes
        .iter()
        .find(|n| **n != from)
        .cloned()
        .expect("another node");
    let (_, vm) = change_updates_exactly(
        &h,
        "lxc",
        None,
        json!({"node": to}),
        &["custom_fields.proxmox_node"],
    );
    assert!(vm["device"].is_null(), "no site: no device");
}

#[test]
fn tag_removed_in_proxmox_goes_while_operator_tag_stays() {
    let h = small();
    let g = h.guest_of_type("qemu");
    let cluster = g["cluster"].as_str().unwrap_or_default().to_string();
    let vmid = g["vmid"].as_u64().unwrap_or_default() as u32;
    h.edit_guest(&cluster, vmid, json!({"tags": "e2e-keep;e2e-drop"}));
    h.sync_ok();
    let t = target(&h, "qemu");
    // An operator adds a tag of their own in NetBox.
    h.create(
        "tags",
        json!({"name": "operator-owned", "slug": "operator-owned"}),
    );
    let vm = h.vm(t.vm_id).expect("vm");
    let mut tags: Vec<Value> = tag_slugs(&vm)
        .into_iter()
        .map(|s| json!({ "slug": s }))
        .collect();
    tags.push(json!({"slug": "operator-owned"}));
    h.patch("virtual-machines", t.vm_id, json!({ "tags": tags }));
    // A rerun keeps the operator's tag and writes nothing.
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun after an operator tag");

    h.edit_guest(&cluster, vmid, json!({"tags": "e2e-keep"}));
    let before = h.vms();
    let mark = h.mark();
    let out = h.sync_ok();
    assert_eq!(out.count("update"), 1, "{}", out.describe());
    let diff = vm_diff(&before, &h.vms());
    let want: BTreeSet<String> = ["tags", "custom_fields.proxmox_tags"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(diff.get(&t.vm_id), Some(&want), "{diff:#?}");
    assert_eq!(diff.len(), 1, "{diff:#?}");
    let vm = h.vm(t.vm_id).expect("vm");
    assert_eq!(
        tag_slugs(&vm),
        vec!["e2e-keep", "operator-owned", "pve2netbox"],
        "the removed Proxmox tag goes, the operator's stays"
    );
    assert_eq!(cf(&vm, "proxmox_tags"), "e2e-keep");
    assert_eq!(h.vm_updates_since(&mark).len(), 1);
}

#[test]
fn notes_change_patches_only_description() {
    let h = small();
    let (t, vm) = change_updates_exactly(
        &h,
        "qemu",
        Some(json!({"description": "first note"})),
        json!({"description": "second note"}),
        &["description"],
    );
    assert_eq!(vm["description"], "second note");
    let _ = t.guest;
}

#[test]
fn multi_line_note_fills_comments() {
    let h = small();
    let (_, vm) = change_updates_exactly(
        &h,
        "lxc",
        Some(json!({"description": "one line"})),
        json!({"description": "headline\nmore detail\n"}),
        &["description", "comments"],
    );
    assert_eq!(vm["description"], "headline");
    assert!(
        vm["comments"]
            .as_str()
            .is_some_and(|c| c.contains("more detail")),
        "{vm}"
    );
}

#[test]
fn stopping_a_guest_patches_only_status() {
    let h = small();
    let (_, vm) = change_updates_exactly(
        &h,
        "qemu",
        Some(json!({"status": "running"})),
        json!({"status": "stopped"}),
        &["status"],
    );
    assert_eq!(choice(&vm["status"]), "offline");
}

#[test]
fn unowned_same_name_vm_is_adopted_case_insensitively() {
    let h = small();
    h.sync_ok();
    let cluster = h.endpoints()[0].name.clone();
    let cluster_id = h
        .objects("clusters")
        .into_iter()
        .find(|c| c["name"] == *cluster.as_str())
        .and_then(|c| c["id"].as_u64())
        .expect("cluster made by the first sync");
    // An operator made this VM by hand, before pve2netbox knew the guest.
    let manual = h.create(
        "virtual-machines",
        json!({"name": "Legacy-App", "cluster": cluster_id, "status": "active",
               "comments": "made by hand"}),
    );
    let manual_id = manual["id"].as_u64().expect("id");
    let (c, vmid) = h
        .control()
        .add_guest(NewGuest {
            cluster: Some(cluster.clone()),
            config: Some(
                json!({"name": "legacy-app", "memory": 2048, "cores": 2})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            ..NewGuest::default()
        })
        .expect("add guest");
    let vms_before = h.vms().len();
    let out = h.sync_ok();
    assert_eq!(out.count("adopt"), 1, "{}", out.describe());
    assert_eq!(out.count("create"), 0, "{}", out.describe());
    assert_eq!(h.vms().len(), vms_before, "no duplicate");
    let vm = h.vm(manual_id).expect("the hand-made VM is kept");
    assert_eq!(cf(&vm, "proxmox_vm_id"), vmid, "{c}/{vmid}: identity set");
    assert!(tag_slugs(&vm).contains(&"pve2netbox".to_string()));
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun after adoption");
}

#[test]
fn case_insensitive_name_collision_gives_one_vm_and_a_skip() {
    let h = small();
    let cluster = h.endpoints()[0].name.clone();
    for name in ["twin-box", "TWIN-box"] {
        h.control()
            .add_guest(NewGuest {
                cluster: Some(cluster.clone()),
                config: Some(
                    json!({ "name": name, "memory": 1024 })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
                ..NewGuest::default()
            })
            .expect("add guest");
    }
    let guests = h.guests().len() as u64;
    let out = h.sync();
    assert!(
        out.code == 0 || out.code == 3,
        "a skip is not a failure of the run: {}",
        out.describe()
    );
    assert_eq!(out.count("skip"), 1, "{}", out.describe());
    assert!(
        out.stderr.contains("collides case-insensitively"),
        "a plain sync says why it skipped: {}",
        out.describe()
    );
    assert_eq!(out.count("create"), guests - 1, "{}", out.describe());
    let twins: Vec<Value> = h
        .vms()
        .into_iter()
        .filter(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.to_lowercase().starts_with("twin-box"))
        })
        .collect();
    assert_eq!(twins.len(), 1, "one VM, no `name (2)`: {twins:#?}");
    // Stable: a rerun skips again and writes nothing.
    let mark = h.mark();
    let out = h.sync();
    assert_eq!(out.count("skip"), 1);
    h.assert_no_writes_since(&mark, "rerun with a collision");
}

#[test]
fn swapped_names_are_written_through_a_temporary_name_in_two_runs() {
    let h = small();
    h.sync_ok();
    let first = h.endpoints()[0].name.clone();
    let mut pair: Vec<Value> = h
        .guests()
        .into_iter()
        .filter(|g| g["type"] == "qemu" && g["cluster"] == *first.as_str())
        .take(2)
        .collect();
    assert_eq!(pair.len(), 2, "two QEMU guests in {first}");
    pair.sort_by_key(|g| g["vmid"].as_u64());
    let vmid = |g: &Value| g["vmid"].as_u64().unwrap_or_default() as u32;
    let vm_of = |g: &Value| {
        h.vms()
            .into_iter()
            .find(|v| cf(v, "proxmox_vm_id") == vmid(g) && v["cluster"]["name"] == *first.as_str())
            .unwrap_or_else(|| panic!("no NetBox VM for {}", vmid(g)))
    };
    let (low, high) = (vm_of(&pair[0]), vm_of(&pair[1]));
    let (low_name, high_name) = (low["name"].clone(), high["name"].clone());
    h.edit_guest(&first, vmid(&pair[0]), json!({ "name": high_name }));
    h.edit_guest(&first, vmid(&pair[1]), json!({ "name": low_name }));

    let parking = format!("pve2netbox-swap-{}", vmid(&pair[0]));
    // The plan says what will happen, and why.
    let plan = h.path("swap-plan.json").display().to_string();
    h.run(&["plan", "--out", &plan]).expect_code(2);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).expect("plan written")).expect("JSON");
    let notices = saved["notices"].as_array().cloned().unwrap_or_default();
    assert!(
        notices.iter().any(|n| n["kind"] == "rename"
            && n["message"]
                .as_str()
                .is_some_and(|m| m.contains("rename cycle"))),
        "the plan tells of the temporary name: {notices:#?}"
    );
    // First run: the lower VMID is parked, the other takes its old name.
    let out = h.sync_ok();
    assert_eq!(out.count("update"), 2, "{}", out.describe());
    assert!(out.stderr.contains(&parking), "{}", out.describe());
    assert_eq!(out.count("skip"), 0, "{}", out.describe());
    assert_eq!(h.vm(id_of(&low)).expect("kept")["name"], json!(parking));
    assert_eq!(h.vm(id_of(&high)).expect("kept")["name"], low_name);
    // Second run: the parked VM gets its own name.
    let out = h.sync_ok();
    assert_eq!(out.count("update"), 1, "{}", out.describe());
    assert_eq!(h.vm(id_of(&low)).expect("kept")["name"], high_name);
    assert_eq!(h.vm(id_of(&high)).expect("kept")["name"], low_name);
    // Then nothing more.
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun after the swap");
}

fn id_of(vm: &Value) -> u64 {
    vm["id"].as_u64().unwrap_or_default()
}
