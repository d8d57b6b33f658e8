//! End to end, `sync.children`: turned off, a run neither asks the guest agents nor reads
//! NetBox's children, and an existing VM gets no child change; on (the default), both reach the
//! rules, whose child changes are written (`e2e_children_write` checks each kind), in both tiers.

mod e2e_support;

use e2e_support::{Harness, spec};
use serde_json::Value;

const VMS: usize = 12;

/// The `children` notices of a saved plan (`plan --out`), by scope.
fn children_notices(h: &Harness, name: &str) -> Vec<(String, String)> {
    let path = h.path(name).display().to_string();
    let out = h.run(&["plan", "--no-memo", "--out", &path]);
    assert!(matches!(out.code, 0 | 2), "plan: {}", out.describe());
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("plan written")).expect("JSON");
    plan["notices"]
        .as_array()
        .unwrap_or_else(|| panic!("the plan has no notices: {plan:#}"))
        .iter()
        .filter(|n| n["kind"] == "children")
        .map(|n| {
            (
                n["scope"].as_str().unwrap_or_default().to_owned(),
                n["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn children_are_read_and_written_by_default_and_not_when_turned_off() {
    let mut h = Harness::generated(spec(VMS, 2, 1, 0, 131));
    h.set("task_history", false).set("children", false);
    let first = h.sync_ok();
    assert_eq!(first.count("create"), VMS as u64, "{}", first.describe());

    // A running QEMU guest whose agent answers with its addresses.
    let g = h.guest_of_type("qemu");
    let cluster = g["cluster"].as_str().unwrap_or_default().to_owned();
    let vmid = g["vmid"].as_u64().unwrap_or_default() as u32;
    h.edit_guest(
        &cluster,
        vmid,
        serde_json::json!({"status": "running", "agent": "1", "agent_state": "answering"}),
    );

    // Off: existing VMs keep their children, nothing about them is planned.
    let off = h.run(&["sync", "--dry-run", "--no-memo"]);
    off.expect_code(0);
    assert_eq!(off.count("noop"), VMS as u64, "{}", off.describe());
    assert_eq!(children_notices(&h, "off.json"), Vec::new());

    // The default (on): NetBox has no children for these VMs, so the rules want the config's interfaces and
    // disks, and the agent's addresses for the guest that answers; all written, the VMs
    // themselves left as they are (their only changes are children), and a rerun writes
    // nothing.
    h.sync.remove("children");
    let on = h.sync();
    on.expect_code(0);
    assert_eq!(
        on.count("noop") + on.count("update"),
        VMS as u64,
        "{}",
        on.describe()
    );
    assert!(on.count("update") >= VMS as u64 / 2, "{}", on.describe());
    assert_eq!(children_notices(&h, "on.json"), Vec::new());
    let vm = h
        .vms()
        .into_iter()
        .find(|v| e2e_support::cf(v, "proxmox_vm_id") == vmid)
        .expect("the agent's VM");
    let ips = h.api(
        "GET",
        "ipam/ip-addresses",
        &[("virtual_machine_id".into(), vm["id"].to_string())],
        None,
    );
    assert!(
        ips["count"].as_u64().is_some_and(|n| n > 0),
        "the answering agent's addresses are written: {ips}"
    );
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "a rerun with children");
}
