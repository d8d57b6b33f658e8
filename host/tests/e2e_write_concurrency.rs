//! End to end, `sync.write_concurrency`: with 4 windows in flight a run makes the same reports
//! (counts, notices, errors, write requests) and leaves the same NetBox as at 1, through a first
//! sync, a rename chain (a VM takes the name another gives up in the same run), a name swap
//! (parked under a temporary name, then settled) and a rerun that writes nothing; the writes of
//! separate windows really overlap at 4 and never at 1 (counted at the test kit's proxy, so in
//! both tiers); and bulk writes at 4 that create and delete QEMU and LXC VMs in the same requests
//! converge with no failed VM (NetBox counts each VM type's VMs in the write's transaction:
//! requests locking two types in opposite orders would deadlock). Faults and kills at 4 are in
//! `e2e_faults.rs` and `e2e_kill.rs`.

mod e2e_state;
mod e2e_support;

use e2e_state::{NetboxState, assert_clean, assert_same};
use e2e_support::{Harness, RunOutput, cf, spec};
use pve2netbox_testkit::{FaultPatch, NewGuest};
use serde_json::{Value, json};

/// Guests over two clusters; with [`WINDOW`] that is many windows per run.
const GUESTS: usize = 48;
const SEED: u64 = 131;
/// Operations per window: one, so the rename run's writes are separate windows that may or may
/// not go together (the chain's two renames may not, nor the swap's).
const WINDOW: i64 = 1;
/// Delay of every simulated NetBox answer in the overlap test: long enough that windows
/// started together are in flight together.
const LATENCY_MS: f64 = 15.0;

/// What must not depend on the write concurrency: the report without its timings.
fn comparable(out: &RunOutput) -> Value {
    let r = &out.report;
    json!({
        "exit": out.code,
        "counts": r["counts"],
        "errors": r["errors"],
        "notices": r["notices"],
        "netbox_write": r["requests"]["netbox_write"],
    })
}

fn harness(concurrency: i64, bulk: bool) -> Harness {
    let mut h = Harness::generated(spec(GUESTS, 3, 2, 0, SEED));
    h.set("write_window", WINDOW)
        .set("write_concurrency", concurrency)
        .set("bulk", bulk);
    h
}

/// The runs of one concurrency: their comparable reports and the NetBox they leave.
fn scenario(concurrency: i64, bulk: bool) -> (Vec<Value>, NetboxState) {
    let what = format!("write_concurrency {concurrency}, bulk {bulk}");
    let h = harness(concurrency, bulk);
    let mut reports = vec![comparable(&h.sync_ok())];

    // The first cluster's QEMU guests by VMID: a rename chain (the lowest takes the name the
    // third gives up) and a swap (second and fourth).
    let cluster = h.endpoints()[0].name.clone();
    let mut guests: Vec<Value> = h
        .guests()
        .into_iter()
        .filter(|g| g["type"] == "qemu" && g["cluster"] == *cluster.as_str())
        .collect();
    guests.sort_by_key(|g| g["vmid"].as_u64());
    assert!(guests.len() >= 4, "{what}: four QEMU guests in {cluster}");
    let vmid = |g: &Value| g["vmid"].as_u64().expect("vmid") as u32;
    // A guest's name as the first sync wrote it.
    let vms = h.vms();
    let name = |g: &Value| {
        vms.iter()
            .find(|v| {
                cf(v, "proxmox_vm_id") == vmid(g) && v["cluster"]["name"] == *cluster.as_str()
            })
            .and_then(|v| v["name"].as_str())
            .unwrap_or_else(|| panic!("{what}: no NetBox VM for {}", vmid(g)))
            .to_owned()
    };
    let (a, b, c, d) = (&guests[0], &guests[1], &guests[2], &guests[3]);
    h.edit_guest(&cluster, vmid(c), json!({ "name": "chain-freed-name" }));
    h.edit_guest(&cluster, vmid(a), json!({ "name": name(c) }));
    h.edit_guest(&cluster, vmid(b), json!({ "name": name(d) }));
    h.edit_guest(&cluster, vmid(d), json!({ "name": name(b) }));

    let out = h.sync_ok();
    assert!(
        out.count("update") >= 4,
        "{what}: chain and swap: {}",
        out.describe()
    );
    reports.push(comparable(&out));
    // The parked VM of the swap gets its own name.
    reports.push(comparable(&h.sync_ok()));
    let mark = h.mark();
    reports.push(comparable(&h.sync_ok()));
    h.assert_no_writes_since(&mark, &format!("{what}: rerun"));

    let read = e2e_state::read(|key| h.objects(key));
    assert_clean(&read, &what);
    (reports, read.state)
}

fn same_at_1_and_4(bulk: bool) {
    let (reports_1, state_1) = scenario(1, bulk);
    let (reports_4, state_4) = scenario(4, bulk);
    assert_eq!(
        reports_1, reports_4,
        "bulk {bulk}: the reports at write_concurrency 1 and 4 differ"
    );
    assert_same(
        &state_1,
        &state_4,
        &format!("bulk {bulk}: write_concurrency 4 against 1"),
    );
}

#[test]
fn single_writes_make_the_same_reports_and_netbox_at_write_concurrency_1_and_4() {
    same_at_1_and_4(false);
}

#[test]
fn bulk_writes_make_the_same_reports_and_netbox_at_write_concurrency_1_and_4() {
    same_at_1_and_4(true);
}

/// The most NetBox writes in flight at once during one first sync (task history off: its
/// journal writes have their own concurrency), counted by the test kit's proxy in front of the
/// NetBox at hand, which also adds [`LATENCY_MS`] to every answer so windows have time to meet.
fn max_writes_in_flight(concurrency: i64, bulk: bool) -> u64 {
    let mut h = harness(concurrency, bulk);
    h.set("task_history", false);
    h.netbox_faults(&FaultPatch {
        latency_ms: Some(LATENCY_MS),
        ..FaultPatch::default()
    });
    h.proxy().reset_counters();
    let out = h.sync_ok();
    h.clear_faults();
    assert_eq!(out.count("create"), GUESTS as u64, "{}", out.describe());
    let n = h.proxy().counters().netbox_max_writes_in_flight;
    println!("write_concurrency {concurrency}, bulk {bulk}: at most {n} writes in flight");
    n
}

#[test]
fn windows_overlap_at_write_concurrency_4_and_never_at_1() {
    for bulk in [false, true] {
        assert_eq!(
            max_writes_in_flight(1, bulk),
            1,
            "bulk {bulk}: one write at a time at write_concurrency 1"
        );
        let n = max_writes_in_flight(4, bulk);
        assert!(
            n > 1,
            "bulk {bulk}: windows must overlap at write_concurrency 4 (at most {n} in flight)"
        );
        assert!(
            n <= 4,
            "bulk {bulk}: {n} writes in flight, above the limit 4"
        );
    }
}

/// Guests over two clusters for the mixed creates and deletes: enough that removing two per
/// cluster stays within the shrunk-view guard (10 % of a cluster's managed VMs per run).
const MIXED_GUESTS: usize = 120;

/// Per cluster, one QEMU and one LXC guest (cluster, VMID): the lowest VMIDs.
fn one_of_each(h: &Harness) -> Vec<(String, u32)> {
    let mut picked = Vec::new();
    for cluster in h.endpoints().into_iter().map(|e| e.name) {
        for kind in ["qemu", "lxc"] {
            let mut found: Vec<u32> = h
                .guests()
                .into_iter()
                .filter(|g| g["type"] == kind && g["cluster"] == *cluster.as_str())
                .map(|g| g["vmid"].as_u64().expect("vmid") as u32)
                .collect();
            found.sort();
            let first = found
                .first()
                .unwrap_or_else(|| panic!("{cluster}: no {kind} guest"));
            picked.push((cluster.clone(), *first));
        }
    }
    picked
}

/// Every VM type's `virtual_machine_count` is the number of its VMs (a real NetBox keeps the
/// count; the simulator's types may not carry one).
fn assert_type_counts(h: &Harness, what: &str) {
    let vms = h.vms();
    for t in h.objects("virtual-machine-types") {
        let Some(count) = t["virtual_machine_count"].as_u64() else {
            continue;
        };
        let id = t["id"].as_u64();
        let actual = vms
            .iter()
            .filter(|v| v["virtual_machine_type"]["id"].as_u64() == id)
            .count() as u64;
        assert_eq!(count, actual, "{what}: VM type {}", t["slug"]);
    }
}

#[test]
fn mixed_qemu_and_lxc_creates_and_deletes_converge_at_write_concurrency_4() {
    // Default window (8): each bulk request mixes QEMU and LXC VMs.
    let mut h = Harness::generated(spec(MIXED_GUESTS, 3, 2, 0, SEED));
    h.set("write_concurrency", 4)
        .set("bulk", true)
        .set("orphans", "delete")
        .set("orphan_delete_after_runs", 1)
        .set("delete_budget_percent", 100);
    let out = h.sync_ok();
    assert_eq!(
        out.count("create"),
        MIXED_GUESTS as u64,
        "{}",
        out.describe()
    );
    assert!(out.errors().is_empty(), "first sync: {}", out.describe());
    assert_type_counts(&h, "first sync");

    // Gone from Proxmox: one of each type per cluster, deleted by the next run.
    let gone = one_of_each(&h);
    for (c, v) in &gone {
        h.remove_guest(c, *v);
    }
    let out = h.sync_ok();
    assert_eq!(out.count("orphan"), gone.len() as u64, "{}", out.describe());
    assert!(out.errors().is_empty(), "deletes: {}", out.describe());
    assert_eq!(h.vms().len(), MIXED_GUESTS - gone.len(), "deleted");
    assert_type_counts(&h, "after the deletes");

    // One run that creates as many new guests and deletes as many others, both types.
    let more = one_of_each(&h);
    for (c, v) in &more {
        h.remove_guest(c, *v);
    }
    for (c, v) in &gone {
        let kind = if gone
            .iter()
            .filter(|(gc, _)| gc == c)
            .position(|g| g.1 == *v)
            == Some(0)
        {
            "qemu"
        } else {
            "lxc"
        };
        h.control()
            .add_guest(NewGuest {
                cluster: Some(c.clone()),
                kind: serde_json::from_value(json!(kind)).ok(),
                ..NewGuest::default()
            })
            .expect("add guest");
    }
    let out = h.sync_ok();
    assert_eq!(out.count("create"), gone.len() as u64, "{}", out.describe());
    assert_eq!(out.count("orphan"), more.len() as u64, "{}", out.describe());
    assert!(
        out.errors().is_empty(),
        "creates and deletes: {}",
        out.describe()
    );
    assert_eq!(h.vms().len(), MIXED_GUESTS - more.len());
    assert_type_counts(&h, "after creates and deletes");

    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun after creates and deletes");
    assert_clean(
        &e2e_state::read(|key| h.objects(key)),
        "mixed creates and deletes",
    );
}
