//! End to end, task history: Proxmox tasks become journal entries once each, read per node
//! from the cluster's watermark (`proxmox_tasks_since`), so a rerun with no new task reads
//! little and writes nothing, and a lost watermark means re-reading, never duplicates.
//! Simulated Proxmox; simulated NetBox, or the real one with `PVE2NETBOX_E2E_NETBOX=real`
//! (request counts are checked with the simulator only).

mod e2e_support;

use std::collections::BTreeMap;

use e2e_support::{Harness, Mark, cf, pages, real_mode, spec};
use pve2netbox_testkit::NewTask;
use serde_json::{Value, json};

/// NetBox reads a rerun may make beyond the snapshot pages: the status, 8 preflight lists
/// (custom fields, tags, sites, roles, clusters, platforms, tenants, VM types) and a journal
/// read for tasks that ended within the watermark's clock slack.
const RERUN_READ_CONSTANT: u64 = 10;
const WATERMARK: &str = "proxmox_tasks_since";

fn upid_of(entry: &Value) -> Option<String> {
    entry["comments"]
        .as_str()?
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("UPID:"))
        .map(str::to_string)
}

/// UPID -> how many journal entries carry it.
fn upid_counts(h: &Harness) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in h.objects("journal-entries") {
        if let Some(upid) = upid_of(&entry) {
            *counts.entry(upid).or_insert(0) += 1;
        }
    }
    counts
}

fn assert_no_duplicates(h: &Harness, what: &str) {
    let dup: Vec<_> = upid_counts(h).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        dup.is_empty(),
        "{what}: UPIDs recorded more than once: {dup:?}"
    );
}

/// The NetBox cluster of the (only) Proxmox cluster.
fn cluster(h: &Harness) -> Value {
    let name = h.endpoints()[0].name.clone();
    h.objects("clusters")
        .into_iter()
        .find(|c| c["name"] == name.as_str())
        .expect("the cluster")
}

fn watermark(h: &Harness) -> Option<i64> {
    cf(&cluster(h), WATERMARK).as_i64()
}

/// Read requests since `mark` whose `GET /path` key contains `needle`: the binary's NetBox
/// requests (proxy, both tiers) or the simulated Proxmox's.
fn path_reads_since(h: &Harness, mark: &Mark, service: &str, needle: &str) -> u64 {
    let (now, before) = match service {
        "netbox" => (h.proxy().counters(), &mark.netbox),
        _ => (h.control().counters(), &mark.sim),
    };
    now.paths
        .get(service)
        .into_iter()
        .flatten()
        .filter(|(p, _)| p.starts_with("GET") && p.contains(needle))
        .map(|(p, n)| {
            n - before
                .paths
                .get(service)
                .and_then(|m| m.get(p))
                .copied()
                .unwrap_or(0)
        })
        .sum()
}

/// A finished task of `guest` started at `start` (now when `None`).
fn task_of(guest: &Value, kind: &str, start: Option<u64>) -> NewTask {
    NewTask {
        cluster: guest["cluster"].as_str().map(str::to_string),
        node: guest["node"].as_str().unwrap_or_default().to_string(),
        vmid: guest["vmid"].as_u64().map(|v| v as u32),
        kind: kind.into(),
        status: Some("OK".into()),
        starttime: start,
        ..NewTask::default()
    }
}

#[test]
fn rerun_without_new_tasks_reads_within_bound_and_writes_nothing() {
    let n = if real_mode() { 200 } else { 1500 };
    let nodes = 4;
    let h = Harness::generated(spec(n, nodes, 1, 0, 31));
    h.sync_ok();
    let entries = h.objects("journal-entries").len();
    assert!(entries > 0, "the generated tasks were recorded");
    assert_no_duplicates(&h, "first run");
    assert!(
        watermark(&h).is_some(),
        "the first run saves the cluster's watermark"
    );

    let mark = h.mark();
    let out = h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun without new tasks");
    assert_eq!(out.report["requests"]["netbox_write"], 0);
    assert_eq!(h.objects("journal-entries").len(), entries);
    {
        let reads = h.reads_since(&mark);
        let bound = pages(n) + RERUN_READ_CONSTANT;
        let journal = path_reads_since(&h, &mark, "netbox", "journal-entries");
        let tasks = path_reads_since(&h, &mark, "pve", "/tasks");
        println!(
            "rerun of {n} VMs: {reads} NetBox reads ({journal} journal), {tasks} Proxmox task \
             reads (bound {bound})"
        );
        assert!(
            reads <= bound,
            "rerun of {n} VMs read NetBox {reads} times, more than ceil(N/1000) + \
             {RERUN_READ_CONSTANT} = {bound}"
        );
        assert!(journal <= 1, "{journal} journal reads on a rerun");
        assert_eq!(tasks, nodes as u64, "one task listing per node, not per VM");
    }
}

#[test]
fn new_tasks_are_recorded_once_on_the_next_run() {
    let h = Harness::generated(spec(8, 2, 1, 0, 32));
    h.sync_ok();
    let before = upid_counts(&h);
    let first_mark = watermark(&h).expect("watermark after the first run");

    let guests = h.guests();
    let added = h
        .control()
        .add_tasks(vec![
            task_of(&guests[0], "qmreboot", None),
            task_of(&guests[1], "vzdump", None),
        ])
        .expect("add tasks");
    let mark = h.mark();
    h.sync_ok();
    let after = upid_counts(&h);
    for upid in &added {
        assert_eq!(after.get(upid), Some(&1), "{upid} recorded once");
    }
    assert_eq!(after.len(), before.len() + added.len());
    assert_no_duplicates(&h, "second run");
    {
        let paths = h.write_paths_since(&mark);
        // One bulk POST of the entries, one PATCH of the cluster's watermark, and the run
        // lease's create and delete.
        assert_eq!(
            paths.values().sum::<u64>(),
            2 + e2e_support::LEASE_WRITES,
            "writes of the second run: {paths:?}"
        );
    }
    assert!(
        watermark(&h).expect("watermark") > first_mark,
        "the watermark moves past the new tasks"
    );

    // And a third run has nothing to do.
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "third run");
    assert_eq!(upid_counts(&h), after);
}

#[test]
fn a_lost_watermark_rereads_without_duplicates() {
    // A crash after the journal writes but before the watermark PATCH leaves an older (or no)
    // watermark behind: the next run re-reads that window and must not record anything twice.
    let h = Harness::generated(spec(10, 2, 1, 0, 33));
    h.sync_ok();
    let recorded = upid_counts(&h);
    assert!(!recorded.is_empty(), "the generated tasks were recorded");
    let cluster_id = cluster(&h)["id"].as_u64().expect("cluster id");
    let guest = h.guest_of_type("qemu");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();

    for (round, old) in [Value::Null, json!(1_000_000)].into_iter().enumerate() {
        let added = h
            .control()
            // Distinct start seconds: the simulator's UPIDs of same-second tasks coincide.
            .add_tasks(vec![task_of(
                &guest,
                "qmstart",
                Some(now + round as u64 * 10),
            )])
            .expect("add task");
        // The state a crash before the PATCH would leave: the watermark of before the new task.
        h.patch(
            "clusters",
            cluster_id,
            json!({"custom_fields": {WATERMARK: old}}),
        );
        let before = upid_counts(&h);
        h.sync_ok();
        let after = upid_counts(&h);
        assert_no_duplicates(&h, &format!("round {round}"));
        assert_eq!(
            after.get(&added[0]),
            Some(&1),
            "round {round}: new task once"
        );
        let new: Vec<&String> = after.keys().filter(|u| !before.contains_key(*u)).collect();
        assert_eq!(
            new,
            vec![&added[0]],
            "round {round}: only the new task is recorded"
        );
        assert!(
            watermark(&h).is_some(),
            "round {round}: watermark saved again"
        );
    }
}

#[test]
fn task_history_off_reads_no_tasks_and_writes_no_journal() {
    let mut h = Harness::generated(spec(5, 1, 1, 0, 34));
    h.set("task_history", false);
    let mark = h.mark();
    h.sync_ok();
    assert!(h.objects("journal-entries").is_empty());
    {
        let tasks = path_reads_since(&h, &mark, "pve", "/tasks");
        assert_eq!(tasks, 0, "no task listing with task history off");
    }
    assert!(watermark(&h).is_none(), "no watermark without task history");
}

/// A journal POST NetBox commits after its client gave up (its worker goes on without the
/// connection) can land after the next run wrote the same entry: a task recorded twice. The
/// next run that reads that VM's journal keeps the oldest entry and deletes the other, and the
/// run after that writes nothing. (The late commit is made here as an operator's write of the
/// same entry.)
#[test]
fn a_journal_entry_recorded_twice_is_deleted_by_the_next_run() {
    let h = Harness::generated(spec(10, 2, 1, 0, 34));
    h.sync_ok();
    let before = upid_counts(&h);
    let guest = h.guest_of_type("qemu");
    let vmid = guest["vmid"].as_u64().expect("vmid");
    let vm_id = h
        .vms()
        .iter()
        .find(|v| cf(v, "proxmox_vm_id") == vmid)
        .and_then(|v| v["id"].as_u64())
        .expect("the guest's VM");
    let kept = h
        .objects("journal-entries")
        .into_iter()
        .filter(|e| e["assigned_object_id"] == vm_id)
        .min_by_key(|e| e["id"].as_u64())
        .expect("the guest's tasks were recorded");
    let upid = upid_of(&kept).expect("a UPID");
    h.create(
        "journal-entries",
        json!({
            "assigned_object_type": "virtualization.virtualmachine",
            "assigned_object_id": vm_id,
            "kind": e2e_support::choice(&kept["kind"]),
            "comments": kept["comments"],
            "tags": [{"slug": "pve2netbox"}],
        }),
    );
    assert_eq!(upid_counts(&h).get(&upid), Some(&2), "the duplicate is in");

    // A new task of the guest: the next run reads its VM's journal.
    let added = h
        .control()
        .add_tasks(vec![task_of(&guest, "qmreboot", None)])
        .expect("add a task");
    let mark = h.mark();
    h.sync_ok();
    let after = upid_counts(&h);
    assert_eq!(after.get(&upid), Some(&1), "{upid} is recorded once again");
    assert!(
        h.objects("journal-entries")
            .iter()
            .any(|e| e["id"] == kept["id"]),
        "the oldest entry is the one kept"
    );
    assert_eq!(after.get(&added[0]), Some(&1), "the new task recorded once");
    assert_eq!(after.len(), before.len() + 1);
    assert_no_duplicates(&h, "the run after the duplicate");
    let paths = h.write_paths_since(&mark);
    assert_eq!(
        paths
            .get("DELETE /api/extras/journal-entries/")
            .copied()
            .unwrap_or(0),
        1,
        "one bulk DELETE of the duplicate: {paths:?}"
    );

    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "the run after the repair");
    assert_eq!(upid_counts(&h), after);
}
