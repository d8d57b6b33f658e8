//! End to end, faults and kills with `sync.children = true`: guests with two NICs (one on a
//! VLAN), four agent addresses (IPv4 and IPv6 on each NIC), two disks, and a container with a
//! static address, written a few VMs per window.
//!
//! - **Faults:** with about one NetBox request in ten failing (5xx or 429 with `Retry-After`,
//!   timeouts past the client's timeout, writes committed whose answer is lost: the child POSTs
//!   of interfaces, MACs, IPs and disks, the primary MAC and primary IP PATCHes among them),
//!   repeated syncs converge to exactly the state one clean sync makes, with no interface, MAC,
//!   IP or disk twice after any run, and a further run writes nothing. Bulk and single mode.
//!   And every write's answer lost: each created interface, disk, MAC and IP is found again by
//!   its identity (never created twice), and a clean run converges.
//! - **Kills:** `sync` is SIGKILLed right after its k-th NetBox write is committed, for k at the
//!   first and last write of each child kind (interfaces, disks, MACs, IPs, primary MACs,
//!   primary IPs: "after the IPs' POST" is "before the primary IP PATCH"), from an empty NetBox
//!   and in a run that changes children (deletes among them); the rerun finishes with the state
//!   a clean sync makes, no duplicate, and a further run writes nothing.
//!
//! Both tiers, with the proxy's faults and kill points; the real tier runs fewer guests, fewer
//! rounds and fewer points (see the `REAL_` constants).

mod e2e_state;
mod e2e_support;

use std::collections::BTreeSet;

use e2e_state::{NetboxState, assert_clean, assert_same};
use e2e_support::{Harness, RunOutput, real_mode, spec};
use pve2netbox_testkit::{FaultPatch, Guest, Inventory};
use serde_json::{Value, json};

/// QEMU guests with children, against the simulator and the real NetBox.
const GUESTS: u32 = 12;
const REAL_GUESTS: u32 = 5;
/// VMs per write window: several windows, so children of one window follow VM writes of the
/// window before.
const WRITE_WINDOW: i64 = 4;
/// The VLAN every second guest's net0 is tagged with.
const VID: u64 = 10;
/// Faulty runs allowed before a run must exit 0.
const MAX_FAULTY_RUNS: usize = 8;
const FIRST_RUN_FAULT_SEED: u64 = 17;
/// The client's per-attempt timeout: the minimum against the simulator; above the real
/// NetBox's slowest answer here (see `e2e_faults`).
const SIM_REQUEST_TIMEOUT_SECS: u64 = 1;
const REAL_REQUEST_TIMEOUT_SECS: u64 = 10;
const TIMEOUT_HOLD_PAST_MS: u64 = 500;
/// Shares of NetBox requests failing, about 10 % in all.
const ERROR_RATE: f64 = 0.04;
const TIMEOUT_RATE: f64 = 0.02;
const DROP_AFTER_COMMIT_RATE: f64 = 0.04;
/// One round per status (and `Retry-After`), against the simulator and the real NetBox.
const ERROR_STATUSES: &[(u16, u64)] = &[(503, 0), (500, 0), (429, 1)];
const REAL_ERROR_STATUSES: &[(u16, u64)] = &[(503, 0)];

/// The retry budget of the run whose every answer is lost (each unconfirmed PATCH costs it).
const LOST_ANSWER_RETRY_BUDGET_SECS: u64 = 1;

const IFACES: &str = "/api/virtualization/interfaces/";
const MACS: &str = "/api/dcim/mac-addresses/";
const IPS: &str = "/api/ipam/ip-addresses/";
const DISKS: &str = "/api/virtualization/virtual-disks/";
const VMS: &str = "/api/virtualization/virtual-machines/";

fn guests() -> u32 {
    if real_mode() { REAL_GUESTS } else { GUESTS }
}

/// The agent's answer for guest `i`: loopback, eth0 and eth1, each NIC with an IPv4, a global
/// IPv6 and its link-local address.
fn agent(i: u32, eth1_v4: &str) -> Value {
    let nic = |n: u32, v4: &str, v6: String| {
        json!({"name": format!("eth{n}"), "hardware-address": format!("bc:24:11:60:{i:02x}:0{n}"),
               "ip-addresses": [
                   {"ip-address": v4, "ip-address-type": "ipv4", "prefix": 24},
                   {"ip-address": v6, "ip-address-type": "ipv6", "prefix": 64},
                   {"ip-address": format!("fe80::be24:11ff:fe60:{i:02x}0{n}"),
                    "ip-address-type": "ipv6", "prefix": 64}]})
    };
    json!([
        {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
            {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
        nic(0, &format!("10.60.{i}.5"), format!("2001:db8:60:{i}::5")),
        nic(1, eth1_v4, format!("2001:db8:61:{i}::5")),
    ])
}

fn eth1_v4(i: u32) -> String {
    format!("10.61.{i}.5")
}

fn inventory(n: u32) -> Inventory {
    let mut inv = Inventory::generate(&spec(1, 1, 1, 0, 61));
    let node = inv.endpoints[0].nodes[0].name.clone();
    let mut guests: Vec<Guest> = (0..n)
        .map(|i| {
            let vmid = 200 + i;
            let tag = if i % 2 == 0 {
                format!(",tag={VID}")
            } else {
                String::new()
            };
            Guest::qemu(vmid, &node)
                .with("name", format!("kid-{i:02}"))
                .with("memory", "2048")
                .with("cores", 2)
                .with("ostype", "l26")
                .with("agent", "1")
                .with("scsi0", format!("local-lvm:vm-{vmid}-disk-0,size=16G"))
                .with(
                    "scsi1",
                    format!("local-lvm:vm-{vmid}-disk-1,size={}G", 4 + i),
                )
                .with(
                    "net0",
                    format!("virtio=BC:24:11:60:{i:02X}:00,bridge=vmbr0{tag}"),
                )
                .with(
                    "net1",
                    format!("virtio=BC:24:11:60:{i:02X}:01,bridge=vmbr1"),
                )
                .with_status("running")
        })
        .collect();
    guests.push(
        Guest::lxc(300, &node)
            .with("hostname", "kid-ct")
            .with("memory", 512)
            .with("ostype", "debian")
            .with("rootfs", "local-lvm:vm-300-disk-0,size=8G")
            .with(
                "net0",
                "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:61:00:00,ip=10.62.0.3/24,type=veth",
            )
            .with_status("running"),
    );
    inv.endpoints[0].guests = guests;
    inv.endpoints[0].tasks.clear();
    inv
}

/// A harness with children on, task history off (its journal has its own kill tests), the
/// agents answering, and `bulk` as given.
fn harness(bulk: bool) -> Harness {
    let n = guests();
    let mut h = Harness::with_inventory(inventory(n));
    h.set("task_history", false)
        .set("children", true)
        .set("bulk", bulk)
        .set("write_window", WRITE_WINDOW);
    let cluster = cluster(&h);
    for i in 0..n {
        h.edit_guest(
            &cluster,
            200 + i,
            json!({"agent_state": "answering", "agent_result": agent(i, &eth1_v4(i))}),
        );
    }
    h
}

fn cluster(h: &Harness) -> String {
    h.endpoints()[0].name.clone()
}

/// Empties NetBox and adds the VLAN the guests' tags name (an operator's object).
fn reset(h: &Harness) {
    h.reset_netbox();
    h.api(
        "POST",
        "ipam/vlans",
        &[],
        Some(&json!({"vid": VID, "name": "kids", "status": "active"})),
    );
}

fn state(h: &Harness) -> e2e_state::Read {
    e2e_state::read(|key| h.objects(key))
}

/// The state a clean sync makes from an empty NetBox, checked to hold every child kind.
fn clean_reference(h: &Harness) -> NetboxState {
    reset(h);
    h.sync_ok();
    let r = state(h);
    assert_clean(&r, "clean sync");
    let c = &r.state.children;
    let n = guests() as usize;
    assert_eq!(r.state.vms.len(), n + 1, "one VM per guest");
    assert_eq!(c.interfaces.len(), 2 * n + 1, "{:#?}", c.interfaces);
    assert_eq!(c.macs.len(), 2 * n + 1, "{:#?}", c.macs);
    assert_eq!(c.ips.len(), 4 * n + 1, "{:#?}", c.ips);
    assert_eq!(c.primary_ips.len(), n + 1, "{:#?}", c.primary_ips);
    assert!(
        c.interfaces
            .values()
            .any(|i| i["untagged_vlan"] == json!(VID)),
        "a NIC on the VLAN: {:#?}",
        c.interfaces
    );
    r.state
}

fn request_timeout_secs() -> u64 {
    if real_mode() {
        REAL_REQUEST_TIMEOUT_SECS
    } else {
        SIM_REQUEST_TIMEOUT_SECS
    }
}

/// Why a run did not exit 0, for the log: its first errors.
fn causes(out: &RunOutput) -> Vec<String> {
    out.errors()
        .iter()
        .take(5)
        .map(|e| {
            let m: String = e["message"]
                .as_str()
                .unwrap_or("-")
                .chars()
                .take(200)
                .collect();
            format!("{}: {m}", e["phase"].as_str().unwrap_or("-"))
        })
        .collect()
}

fn converges_under_netbox_faults(bulk: bool) {
    let mode = if bulk { "bulk" } else { "single" };
    let h = harness(bulk);
    let reference = clean_reference(&h);
    let statuses = if real_mode() {
        REAL_ERROR_STATUSES
    } else {
        ERROR_STATUSES
    };
    for (round, &(status, retry_after)) in statuses.iter().enumerate() {
        let what = format!("{mode}, {status} (Retry-After {retry_after} s)");
        reset(&h);
        let mut runs = Vec::new();
        let mut converged = false;
        for run in 1..=MAX_FAULTY_RUNS {
            let seed = (run == 1).then_some(FIRST_RUN_FAULT_SEED + round as u64);
            h.netbox_faults(&FaultPatch {
                error_rate: Some(ERROR_RATE),
                timeout_rate: Some(TIMEOUT_RATE),
                drop_after_commit_rate: Some(DROP_AFTER_COMMIT_RATE),
                error_status: Some(status),
                retry_after_s: Some(retry_after),
                timeout_hold_ms: Some(request_timeout_secs() * 1000 + TIMEOUT_HOLD_PAST_MS),
                seed,
                ..FaultPatch::default()
            });
            let committed = h.proxy().committed_writes();
            let mark = h.mark();
            let out = h.run(&[
                "sync",
                "--set",
                &format!("timeouts.request_secs={}", request_timeout_secs()),
            ]);
            h.clear_faults();
            let attempted = h.writes_since(&mark);
            let summary = format!(
                "run {run}: exit {}, {} errors, {attempted} writes sent, {} committed",
                out.code,
                out.errors().len(),
                h.proxy().committed_writes() - committed
            );
            println!("{what}: {summary}");
            for cause in causes(&out) {
                println!("{what}:   {cause}");
            }
            assert!(
                [0, 1, 3].contains(&out.code),
                "{what} {summary}: a fault must be a run error, not a crash:\n{}",
                out.describe()
            );
            // No duplicate child after any run, not only at the end.
            assert_clean(&state(&h), &format!("{what} after faulty run {run}"));
            converged = out.code == 0;
            runs.push(summary);
            if converged {
                break;
            }
        }
        assert!(
            converged,
            "{what}: no clean exit within {MAX_FAULTY_RUNS} runs:\n{}",
            runs.join("\n")
        );
        let mark = h.mark();
        h.sync_ok();
        h.assert_no_writes_since(&mark, &format!("{what}: the run after convergence"));
        let got = state(&h);
        assert_clean(&got, &what);
        assert_same(&reference, &got.state, &what);
    }
}

/// Every write's answer lost after NetBox committed it, in a run that writes the children of
/// VMs already in NetBox: each created child is found again by
/// its identity (the log says so per kind), none is created twice; the writes that cannot be
/// confirmed (PATCHes whose answer is lost on every try) fail the run, and a clean run then
/// converges and the next writes nothing.
fn every_answer_lost(bulk: bool) {
    let mode = if bulk { "bulk" } else { "single" };
    let h = harness(bulk);
    let reference = clean_reference(&h);
    reset(&h);
    // The VMs first (preflight stops a run at its first unconfirmed write), then their children.
    h.run(&["sync", "--set", "sync.children=false"])
        .expect_code(0);
    h.netbox_faults(&FaultPatch {
        drop_after_commit_rate: Some(1.0),
        writes_only: Some(true),
        ..FaultPatch::default()
    });
    // A PATCH whose answer is lost is resent until the retry budget ends: keep that short.
    let out = h.run(&[
        "sync",
        "--set",
        &format!("timeouts.retry_budget_secs={LOST_ANSWER_RETRY_BUDGET_SECS}"),
    ]);
    h.clear_faults();
    println!("{mode}, every answer lost: exit {}", out.code);
    for cause in causes(&out) {
        println!("{mode}:   {cause}");
    }
    assert!(
        [0, 1, 3].contains(&out.code),
        "{mode}: lost answers are run errors, not a crash:\n{}",
        out.describe()
    );
    let found: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("lost POST answer: the child was created"))
        .collect();
    for kind in [
        "interface '",
        "virtual disk '",
        "MAC address '",
        "IP address '",
    ] {
        assert!(
            found.iter().any(|l| l.contains(kind)),
            "{mode}: no {kind}...' found again after its lost answer:\n{}",
            out.describe()
        );
    }
    assert_clean(&state(&h), &format!("{mode}: after every answer was lost"));
    h.sync_ok();
    let got = state(&h);
    assert_clean(&got, mode);
    assert_same(
        &reference,
        &got.state,
        &format!("{mode}: after a clean run"),
    );
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, &format!("{mode}: the run after convergence"));
}

#[test]
fn bulk_every_child_answer_lost_is_found_by_identity() {
    every_answer_lost(true);
}

// The real tier runs the bulk variants of the two fault tests (each unconfirmed write costs the
// real NetBox's 10 s client timeout plus retries); single mode is the same lookup with one-item
// bodies and runs against the simulator. Both modes' kill tests run in both tiers.
#[test]
fn sim_only_single_every_child_answer_lost_is_found_by_identity() {
    every_answer_lost(false);
}

#[test]
fn bulk_children_converge_under_netbox_faults() {
    converges_under_netbox_faults(true);
}

#[test]
fn sim_only_single_children_converge_under_netbox_faults() {
    converges_under_netbox_faults(false);
}

/// What a committed write of a children run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    VmCreate,
    /// A VM PATCH: its fields, or (after its children) its primary IPs.
    VmUpdate,
    InterfaceCreate,
    /// An interface PATCH: its fields, or its primary MAC.
    InterfaceUpdate,
    MacCreate,
    IpCreate,
    IpUpdate,
    DiskCreate,
    DiskUpdate,
    Delete,
    Other,
}

fn kind(write: &str) -> Kind {
    let (method, path) = write.split_once(' ').unwrap_or(("", write));
    let on = |base: &str| path.starts_with(base);
    match method {
        "DELETE" if [IFACES, MACS, IPS, DISKS].iter().any(|b| on(b)) => Kind::Delete,
        "POST" if on(VMS) => Kind::VmCreate,
        "PATCH" if on(VMS) => Kind::VmUpdate,
        "POST" if on(IFACES) => Kind::InterfaceCreate,
        "PATCH" if on(IFACES) => Kind::InterfaceUpdate,
        "POST" if on(MACS) => Kind::MacCreate,
        "POST" if on(IPS) => Kind::IpCreate,
        "PATCH" if on(IPS) => Kind::IpUpdate,
        "POST" if on(DISKS) => Kind::DiskCreate,
        "PATCH" if on(DISKS) => Kind::DiskUpdate,
        _ => Kind::Other,
    }
}

/// Kill points: the first and last committed write of each kind the children phase makes, and
/// the last write before the first primary IP PATCH that follows the child writes.
fn kill_points(log: &[String], thin: bool) -> BTreeSet<u64> {
    let kinds: Vec<Kind> = log.iter().map(|w| kind(w)).collect();
    let mut points = BTreeSet::new();
    let child_kinds: BTreeSet<Kind> = kinds
        .iter()
        .copied()
        .filter(|k| !matches!(k, Kind::Other | Kind::VmCreate))
        .collect();
    for k in child_kinds {
        let at: Vec<u64> = (1..=kinds.len() as u64)
            .filter(|p| kinds[*p as usize - 1] == k)
            .collect();
        points.extend(at.first());
        if !thin {
            points.extend(at.last());
        }
    }
    // The primary IP PATCHes come after each window's IPs: kill just before the first one.
    if let Some(first) = (1..kinds.len())
        .find(|&p| kinds[p] == Kind::VmUpdate && kinds[..p].contains(&Kind::IpCreate))
    {
        points.insert(first as u64);
    }
    points
}

/// Kills each point of the run `prepare` leads to, reruns, and compares with `want`.
fn kill_and_rerun(h: &Harness, mode: &str, want: &NetboxState, prepare: &dyn Fn(&Harness)) {
    prepare(h);
    h.proxy().reset_counters();
    h.sync_ok();
    let log = h.proxy().committed_log();
    let points = kill_points(&log, real_mode());
    println!("{mode}: the run commits {log:#?}\nkill points {points:?}");
    assert!(
        points.len() >= 3,
        "{mode}: only {} kill points in {log:#?}",
        points.len()
    );
    for &k in &points {
        let want_kind = kind(&log[k as usize - 1]);
        let what = format!("{mode}, killed after write {k} ({want_kind:?})");
        prepare(h);
        let got_log = h
            .kill_after(k, &["sync"])
            .unwrap_or_else(|| panic!("{what}: the run ended first"));
        assert_eq!(
            kind(&got_log[k as usize - 1]),
            want_kind,
            "{what}: the killed run committed {got_log:#?}"
        );
        assert_clean(&state(h), &format!("{what}: after the kill"));
        let out = h.sync();
        assert_eq!(
            out.code,
            0,
            "{what}: the rerun must finish:\n{}",
            out.describe()
        );
        let got = state(h);
        assert_clean(&got, &what);
        assert_same(want, &got.state, &what);
        let mark = h.mark();
        h.sync_ok();
        h.assert_no_writes_since(&mark, &format!("{what}: the run after the repair"));
    }
}

fn kills_converge(bulk: bool) {
    let mode = if bulk { "bulk" } else { "single" };
    let h = harness(bulk);
    let c = cluster(&h);
    let first_state = clean_reference(&h);
    // From an empty NetBox: every child is created.
    kill_and_rerun(&h, &format!("{mode}, first sync"), &first_state, &|h| {
        reset(h)
    });

    // A run that changes children: guest 0 loses net1 (its MAC and IPs go with it) and a disk,
    // guest 1's eth1 address changes (the old one deleted, a new one created), guest 2's disk
    // grows.
    let change = |h: &Harness, on: bool| {
        let guest0 = if on {
            json!({"delete": ["net1", "scsi1"]})
        } else {
            json!({"net1": "virtio=BC:24:11:60:00:01,bridge=vmbr1",
                   "scsi1": "local-lvm:vm-200-disk-1,size=4G"})
        };
        h.edit_guest(&c, 200, guest0);
        let v4 = if on {
            "10.63.1.5".to_owned()
        } else {
            eth1_v4(1)
        };
        h.edit_guest(&c, 201, json!({"agent_result": agent(1, &v4)}));
        let size = if on { 32 } else { 6 };
        h.edit_guest(
            &c,
            202,
            json!({"scsi1": format!("local-lvm:vm-202-disk-1,size={size}G")}),
        );
    };
    let synced_then_changed = |h: &Harness| {
        change(h, false);
        reset(h);
        h.sync_ok();
        change(h, true);
    };
    synced_then_changed(&h);
    h.sync_ok();
    let changed = state(&h);
    assert_clean(&changed, "the changed state");
    assert_ne!(
        changed.state.children, first_state.children,
        "the change changes children"
    );
    kill_and_rerun(
        &h,
        &format!("{mode}, a run that changes children"),
        &changed.state,
        &synced_then_changed,
    );
}

#[test]
fn bulk_kill_in_the_children_phase_then_rerun_repairs() {
    kills_converge(true);
}

#[test]
fn single_kill_in_the_children_phase_then_rerun_repairs() {
    kills_converge(false);
}
