//! End to end, kill and rerun: `pve2netbox sync` is killed with SIGKILL right after its k-th
//! NetBox write has been committed (its answer not yet received), for k at the run lease's first
//! write, spread over preflight, the VM writes, the first and last task-history journal write,
//! each cluster's task watermark write and the lease's last write, in single and bulk write mode,
//! one write window at a time and four in flight; each time a rerun must finish cleanly and leave exactly the state one clean sync makes (one VM
//! per guest, same fields, custom fields and tags, each task journaled once), and a further run
//! must write nothing. Both tiers.
//!
//! How a point is hit: the test kit's NetBox proxy sits between the binary and NetBox; armed with
//! k, it counts a write when NetBox has answered it with a 2xx (committed, not arrived) and from
//! the k-th on holds every answer and request, so the k-th write is in NetBox, the process never
//! learns it, and nothing more can reach NetBox before the kill, the last point included. Which
//! write the k-th is comes from the clean run's commit order (the proxy's log), and the killed
//! run's k-th commit is checked to be of the same kind. NetBox is emptied between points. The
//! real tier thins the points inside preflight and single mode's VM writes (see
//! [`REAL_PREFLIGHT_POINTS`]); every phase edge is killed at in both tiers.

mod e2e_state;
mod e2e_support;

use std::collections::BTreeSet;

use e2e_state::{NetboxState, assert_clean, assert_same};
use e2e_support::{Harness, real_mode, spec};

/// Guests over two clusters.
const GUESTS: usize = 24;
/// Kill points inside the VM writes of single mode (plus the first and last write), against
/// the simulator; bulk mode kills after each of its few VM writes.
const SINGLE_VM_POINTS: u64 = 10;
/// Kill points spread over preflight's writes (custom fields, tags, cluster type, clusters),
/// against the simulator.
const PREFLIGHT_POINTS: u64 = 6;
/// Fewest distinct kill points per mode against the simulator.
const MIN_POINTS: usize = 14;
/// Against the real NetBox each point costs a NetBox reset and three runs (~12 s), so the real
/// tier keeps every phase edge (the lease's writes, the first and last journal write, each
/// watermark write) and thins the middles: this many points in preflight and in single mode's
/// VM writes (bulk mode still kills after each VM write).
/// With four windows in flight the real tier kills only inside the VM writes.
const REAL_PREFLIGHT_POINTS: u64 = 2;
const REAL_SINGLE_VM_POINTS: u64 = 3;
const VM_PATHS: &str = "/api/virtualization/virtual-machines/";
const JOURNAL_PATHS: &str = "/api/extras/journal-entries/";
/// Task history's watermark: one PATCH per cluster, after the journal.
const WATERMARK_WRITE: &str = "PATCH /api/virtualization/clusters/";
/// The run lease (`safety::lease`): a tag created by the first write, deleted by the last.
const LEASE_TAKE: &str = "POST /api/extras/tags/";
const LEASE_RELEASE: &str = "DELETE /api/extras/tags/{id}/";

/// What a committed write was, by its place in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LeaseTake,
    Preflight,
    Vm,
    Journal,
    Watermark,
    LeaseRelease,
}

/// The kinds of a run's committed writes, in commit order: a tag created first is the lease's
/// take, a tag deleted its release (a run deletes no other tag), the others by path.
fn kinds(log: &[String]) -> Vec<Kind> {
    log.iter()
        .enumerate()
        .map(|(i, w)| match w.as_str() {
            w if i == 0 && w == LEASE_TAKE => Kind::LeaseTake,
            LEASE_RELEASE => Kind::LeaseRelease,
            w if w.starts_with(WATERMARK_WRITE) => Kind::Watermark,
            w if w.contains(VM_PATHS) => Kind::Vm,
            w if w.contains(JOURNAL_PATHS) => Kind::Journal,
            _ => Kind::Preflight,
        })
        .collect()
}

/// The 1-based positions of `kind` in a run's commit order.
fn positions(kinds: &[Kind], kind: Kind) -> Vec<u64> {
    kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == kind)
        .map(|(i, _)| i as u64 + 1)
        .collect()
}

/// `n` of `items` spread evenly, the first and last included when `n > 1`.
fn spread(items: &[u64], n: u64) -> impl Iterator<Item = u64> + '_ {
    let len = items.len() as u64;
    let n = n.min(len);
    (0..n).map(move |i| items[if n == 1 { 0 } else { i * (len - 1) / (n - 1) } as usize])
}

/// Write counts to kill at: the lease's take and release, `preflight_points` spread over
/// preflight, `vm_points` spread over the VM writes, the first and last journal write, and each
/// watermark write.
fn kill_points(kinds: &[Kind], preflight_points: u64, vm_points: u64) -> BTreeSet<u64> {
    let mut points = BTreeSet::new();
    points.extend(positions(kinds, Kind::LeaseTake));
    points.extend(positions(kinds, Kind::LeaseRelease));
    points.extend(spread(&positions(kinds, Kind::Preflight), preflight_points));
    points.extend(spread(&positions(kinds, Kind::Vm), vm_points));
    let journal = positions(kinds, Kind::Journal);
    points.extend(journal.first().copied());
    points.extend(journal.last().copied());
    points.extend(positions(kinds, Kind::Watermark));
    points
}

fn state(h: &Harness) -> e2e_state::Read {
    e2e_state::read(|key| h.objects(key))
}

/// The clean run: the reference state and the kinds of its writes in commit order.
fn reference(h: &Harness) -> (NetboxState, Vec<Kind>) {
    h.reset_netbox();
    h.proxy().reset_counters();
    h.sync_ok();
    let read = state(h);
    assert_clean(&read, "clean sync");
    assert_eq!(read.state.vms.len(), GUESTS, "one VM per guest");
    assert!(
        !read.state.task_entries.is_empty(),
        "the inventory has task history (else the journal is not checked)"
    );
    let log = h.proxy().committed_log();
    let k = kinds(&log);
    for kind in [
        Kind::LeaseTake,
        Kind::Preflight,
        Kind::Vm,
        Kind::Journal,
        Kind::Watermark,
        Kind::LeaseRelease,
    ] {
        assert!(
            k.contains(&kind),
            "the clean run has no {kind:?} write: {log:#?}"
        );
    }
    (read.state, k)
}

/// Runs a sync and SIGKILLs it once NetBox has committed `k` writes ([`Harness::kill_after`]).
fn kill_after(h: &Harness, k: u64) -> Option<Vec<String>> {
    h.kill_after(k, &["sync"])
}

fn kill_and_rerun(bulk: bool, write_concurrency: i64, seed: u64) {
    let mode = match (bulk, write_concurrency) {
        (true, 1) => "bulk".to_owned(),
        (false, 1) => "single".to_owned(),
        (true, n) => format!("bulk, {n} windows in flight"),
        (false, n) => format!("single, {n} windows in flight"),
    };
    let mut h = Harness::generated(spec(GUESTS, 3, 2, 0, seed));
    h.set("bulk", bulk)
        .set("write_concurrency", write_concurrency);
    let (want, want_kinds) = reference(&h);
    // Bulk mode has few VM writes: kill after each of them.
    let vm_writes = positions(&want_kinds, Kind::Vm).len() as u64;
    let (preflight_points, single_vm_points) = if real_mode() {
        (REAL_PREFLIGHT_POINTS, REAL_SINGLE_VM_POINTS)
    } else {
        (PREFLIGHT_POINTS, SINGLE_VM_POINTS)
    };
    let mut points = kill_points(
        &want_kinds,
        preflight_points,
        if bulk { vm_writes } else { single_vm_points },
    );
    if real_mode() && write_concurrency > 1 {
        // What four windows in flight change is the VM writes: against the real NetBox only
        // those points (the simulator tier kills at every phase edge at 4 too).
        let vms = positions(&want_kinds, Kind::Vm);
        points.retain(|p| vms.contains(p));
    }
    println!("{mode}: clean run commits {want_kinds:?}; kill points {points:?}");
    if !real_mode() {
        assert!(
            points.len() >= MIN_POINTS,
            "{mode}: only {} distinct kill points",
            points.len()
        );
    }
    for &k in &points {
        let want_kind = want_kinds[k as usize - 1];
        let what = format!("{mode}, killed after write {k} ({want_kind:?})");
        h.reset_netbox();
        let log = kill_after(&h, k).unwrap_or_else(|| panic!("{what}: the run ended first"));
        // The k-th commit of the killed run is the write the point is named after (the later
        // entries are writes already in flight when the k-th committed).
        let got_kind = kinds(&log)[k as usize - 1];
        assert_eq!(
            got_kind, want_kind,
            "{what}: the killed run committed {log:#?}"
        );
        let out = h.sync();
        assert_eq!(
            out.code,
            0,
            "{what}: the rerun must finish:\n{}",
            out.describe()
        );
        let got = state(&h);
        assert_clean(&got, &what);
        assert_same(&want, &got.state, &what);
        let mark = h.mark();
        h.sync_ok();
        h.assert_no_writes_since(&mark, &format!("{what}: the run after the repair"));
    }
}

#[test]
fn single_mode_kill_at_any_write_then_rerun_repairs() {
    kill_and_rerun(false, 1, 91);
}

#[test]
fn single_mode_at_write_concurrency_4_kill_at_any_write_then_rerun_repairs() {
    kill_and_rerun(false, 4, 93);
}

#[test]
fn bulk_mode_kill_at_any_write_then_rerun_repairs() {
    kill_and_rerun(true, 1, 92);
}

#[test]
fn bulk_mode_at_write_concurrency_4_kill_at_any_write_then_rerun_repairs() {
    kill_and_rerun(true, 4, 94);
}

/// Guards the kill-point arithmetic the tests rely on.
#[test]
fn kill_points_cover_every_phase() {
    let mut log = vec![LEASE_TAKE.to_string()];
    log.extend((0..9).map(|_| "POST /api/extras/custom-fields/".to_string()));
    log.extend((0..60).map(|_| format!("POST {VM_PATHS}")));
    log.extend((0..3).map(|_| format!("POST {JOURNAL_PATHS}")));
    log.extend((0..2).map(|_| format!("{WATERMARK_WRITE}{{id}}/")));
    log.push(LEASE_RELEASE.to_string());
    let k = kinds(&log);
    assert_eq!(k[0], Kind::LeaseTake);
    assert_eq!(k[75], Kind::LeaseRelease);
    let points = kill_points(&k, PREFLIGHT_POINTS, 12);
    assert!(
        points.contains(&1) && points.contains(&76),
        "the lease's writes"
    );
    assert!(points.contains(&2) && points.contains(&10), "preflight");
    assert!(points.contains(&11) && points.contains(&70), "VM writes");
    assert!(points.contains(&71) && points.contains(&73), "journal");
    assert!(points.contains(&74) && points.contains(&75), "watermarks");
    assert!(points.iter().all(|p| *p >= 1 && *p <= 76));
    assert_eq!(points.iter().filter(|p| (2..=10).contains(*p)).count(), 6);
    assert!(points.len() >= 24, "{points:?}");
}

/// The name a rename cycle parks its lowest VMID under for one run (`reconcile/names.rs`).
fn parking_name(vmid: u64) -> String {
    format!("pve2netbox-swap-{vmid}")
}

/// Two guests swap names: NetBox never holds two VMs of one name, so the run parks the lower
/// VMID under a temporary name, renames the other into the freed name, and the next run gives
/// the parked VM its own. Killed right after the parking rename committed (before the second
/// rename), a rerun must finish the swap: the state two clean runs make, no duplicate, and a
/// further run writes nothing. Single mode, where the two renames are separate writes.
#[test]
fn kill_between_a_parking_rename_and_the_second_rename_then_rerun_repairs() {
    let mut h = Harness::generated(spec(GUESTS, 3, 2, 0, 95));
    h.set("bulk", false);
    let cluster = h.endpoints()[0].name.clone();
    let mut guests: Vec<serde_json::Value> = h
        .guests()
        .into_iter()
        .filter(|g| g["type"] == "qemu" && g["cluster"] == *cluster.as_str())
        .collect();
    guests.sort_by_key(|g| g["vmid"].as_u64());
    assert!(guests.len() >= 2, "two QEMU guests in {cluster}");
    let vmid = |g: &serde_json::Value| g["vmid"].as_u64().expect("vmid");
    let (low, high) = (vmid(&guests[0]), vmid(&guests[1]));
    let set_names = |low_to: &str, high_to: &str| {
        h.edit_guest(&cluster, low as u32, serde_json::json!({ "name": low_to }));
        h.edit_guest(
            &cluster,
            high as u32,
            serde_json::json!({ "name": high_to }),
        );
    };
    // The NetBox name of a guest's VM.
    let netbox_name = |id: u64| {
        h.vms()
            .into_iter()
            .find(|v| {
                e2e_support::cf(v, "proxmox_vm_id") == id
                    && v["cluster"]["name"] == *cluster.as_str()
            })
            .and_then(|v| v["name"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no NetBox VM for {id}"))
    };

    // The reference: a first sync, the swap in Proxmox, the run that parks, the run that settles.
    h.reset_netbox();
    h.sync_ok();
    let (low_before, high_before) = (netbox_name(low), netbox_name(high));
    set_names(&high_before, &low_before);
    h.sync_ok();
    assert_eq!(
        netbox_name(low),
        parking_name(low),
        "the lower VMID is parked"
    );
    assert_eq!(netbox_name(high), low_before);
    h.sync_ok();
    assert_eq!(netbox_name(low), high_before, "the parked VM settles");
    let want = state(&h);
    assert_clean(&want, "the clean swap");

    // Again from an empty NetBox, killed after the swap run's first VM write: the parking.
    h.reset_netbox();
    set_names(&low_before, &high_before);
    h.sync_ok();
    set_names(&high_before, &low_before);
    let log = kill_after(&h, 2).expect("the swap run ended before its second write");
    assert_eq!(
        kinds(&log)[..2],
        [Kind::LeaseTake, Kind::Vm],
        "the killed run committed {log:#?}"
    );
    assert_eq!(
        (netbox_name(low), netbox_name(high)),
        (parking_name(low), high_before.clone()),
        "killed between the parking rename and the second rename"
    );
    let out = h.sync();
    assert_eq!(out.code, 0, "the rerun must finish:\n{}", out.describe());
    let got = state(&h);
    assert_clean(&got, "after the rerun");
    assert_same(
        &want.state,
        &got.state,
        "killed between the renames, then rerun",
    );
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "the run after the repair");
}
