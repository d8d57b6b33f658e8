//! End to end, `sync`: first sync, zero-write rerun, dry run, several endpoints and clusters,
//! v1 and v2 tokens, bulk versus single writes, task history into journal entries.
//! Simulated Proxmox; simulated NetBox, or the real one with `PVE2NETBOX_E2E_NETBOX=real`.

mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};

use e2e_support::{Harness, Token, cf, choice, pages, spec, tag_slugs, vm_state};
use pve2netbox_testkit::NewTask;
use serde_json::{Value, json};

/// Reads beyond the snapshot pages a rerun may make: NetBox status, the preflight lists
/// (custom fields, tags, sites, roles, clusters, platforms, tenants, VM types; one request
/// each) and at most one task-history journal read (tasks ending within the watermark's
/// clock slack; see e2e_tasks.rs).
const RERUN_READ_CONSTANT: u64 = 10;

fn guest_name(g: &Value) -> String {
    let cfg = &g["config"];
    cfg["name"]
        .as_str()
        .or(cfg["hostname"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("vm-{}", g["vmid"]))
}

#[test]
fn first_sync_creates_one_vm_per_guest_with_mapped_fields() {
    let h = Harness::generated(spec(40, 3, 1, 0, 11));
    let guests = h.guests();
    let out = h.sync_ok();
    assert_eq!(
        out.count("create"),
        guests.len() as u64,
        "{}",
        out.describe()
    );
    assert_eq!(out.count("error"), 0);
    assert_eq!(out.report["report_version"], 1);
    assert_eq!(out.report["mode"], "sync");
    assert!(out.errors().is_empty(), "{}", out.describe());

    let vms = h.vms();
    assert_eq!(vms.len(), guests.len(), "one NetBox VM per guest");
    let cluster = &h.endpoints()[0].name;
    let by_vmid: BTreeMap<u64, &Value> = vms
        .iter()
        .map(|v| {
            (
                cf(v, "proxmox_vm_id").as_u64().expect("proxmox_vm_id set"),
                v,
            )
        })
        .collect();
    assert_eq!(by_vmid.len(), guests.len(), "identities are unique");
    for g in &guests {
        let vmid = g["vmid"].as_u64().expect("vmid");
        let vm = by_vmid[&vmid];
        let scope = format!("{cluster}/{vmid}");
        assert_eq!(vm["name"], guest_name(g), "{scope}: name");
        assert_eq!(vm["cluster"]["name"], *cluster, "{scope}: cluster");
        assert_eq!(cf(vm, "proxmox_vm_type"), &g["type"], "{scope}: type");
        assert_eq!(cf(vm, "proxmox_node"), &g["node"], "{scope}: node");
        let status = if g["status"] == "running" {
            "active"
        } else {
            "offline"
        };
        assert_eq!(choice(&vm["status"]), status, "{scope}: status");
        assert!(
            tag_slugs(vm).contains(&"pve2netbox".to_string()),
            "{scope}: managed tag"
        );
        let mem = &g["config"]["memory"];
        let mem = mem.as_u64().or_else(|| {
            mem.as_str()
                .and_then(|s| s.trim_start_matches("current=").parse().ok())
        });
        if let Some(mib) = mem {
            assert_eq!(vm["memory"].as_u64(), Some(mib), "{scope}: memory (MiB)");
        }
        let vmtype = &vm["virtual_machine_type"];
        let want = if g["type"] == "qemu" {
            "virtual-machine-qemu"
        } else {
            "container-lxc"
        };
        assert_eq!(vmtype["slug"], want, "{scope}: virtual_machine_type");
        if let Some(tags) = g["config"]["tags"].as_str() {
            for t in tags.split([';', ',', ' ']).filter(|t| !t.is_empty()) {
                assert!(
                    tag_slugs(vm).contains(&t.to_lowercase()),
                    "{scope}: tag {t} in {:?}",
                    tag_slugs(vm)
                );
            }
        }
    }
}

#[test]
fn rerun_with_nothing_changed_writes_nothing_and_reads_few_pages() {
    // Past one NetBox page (1000) in both tiers, so the client's parallel offset paging,
    // de-duplication and id-order repair meet the real NetBox's paging too: every VM is found
    // exactly once (all noop, none created again), in few page reads.
    let n = 1200;
    let h = Harness::generated(spec(n, 4, 1, 0, 12));
    h.sync_ok();
    let vms = h.vms();
    let ids: BTreeSet<u64> = vms.iter().filter_map(|v| v["id"].as_u64()).collect();
    assert_eq!((vms.len(), ids.len()), (n, n), "one VM per guest");
    let mark = h.mark();
    let out = h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun");
    assert_eq!(out.count("noop"), n as u64, "{}", out.describe());
    assert_eq!(out.report["requests"]["netbox_write"], 0);
    for kind in ["create", "update", "adopt", "orphan", "error"] {
        assert_eq!(out.count(kind), 0, "{kind}: {}", out.describe());
    }
    let reads = h.reads_since(&mark);
    let bound = pages(n) + RERUN_READ_CONSTANT;
    println!("rerun of {n} VMs: {reads} NetBox reads (bound {bound})");
    assert!(
        reads <= bound,
        "rerun of {n} VMs read NetBox {reads} times, more than ceil(N/1000) + {RERUN_READ_CONSTANT} = {bound}"
    );
}

#[test]
fn dry_run_writes_nothing_and_exits_2() {
    let h = Harness::generated(spec(12, 2, 1, 0, 13));
    let mark = h.mark();
    let out = h.run(&["sync", "--dry-run"]);
    out.expect_code(2);
    assert_eq!(out.report["mode"], "dry-run");
    assert_eq!(out.count("create"), 12);
    h.assert_no_writes_since(&mark, "dry run on an empty NetBox");
    assert!(h.vms().is_empty());
    // After a real sync, a dry run finds nothing to do.
    h.sync_ok();
    let mark = h.mark();
    h.run(&["sync", "--dry-run"]).expect_code(0);
    h.assert_no_writes_since(&mark, "dry run after a sync");
}

#[test]
fn several_endpoints_and_clusters_keep_overlapping_vmids_apart() {
    // Two clusters and one standalone node; every endpoint numbers its guests from 100.
    let h = Harness::generated(spec(45, 5, 2, 1, 14));
    let guests = h.guests();
    let out = h.sync_ok();
    assert_eq!(out.count("create"), guests.len() as u64);
    let vms = h.vms();
    assert_eq!(vms.len(), guests.len());
    let mut want: BTreeSet<(String, u64)> = BTreeSet::new();
    for g in &guests {
        want.insert((
            g["cluster"].as_str().unwrap_or_default().to_string(),
            g["vmid"].as_u64().unwrap_or_default(),
        ));
    }
    let got: BTreeSet<(String, u64)> = vms
        .iter()
        .map(|v| {
            (
                v["cluster"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                cf(v, "proxmox_vm_id").as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(got, want, "one VM per (cluster, vmid)");
    let clusters: BTreeSet<String> = h
        .objects("clusters")
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    for ep in h.endpoints() {
        assert!(
            clusters.contains(&ep.name),
            "cluster {} in {clusters:?}",
            ep.name
        );
    }
    let overlapping = guests.iter().filter(|g| g["vmid"] == 100).count();
    assert!(
        overlapping >= 2,
        "the inventory has vmid 100 in several clusters"
    );
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "rerun over three endpoints");
}

#[test]
fn v1_token_syncs_and_v2_token_rerun_writes_nothing() {
    let mut h = Harness::generated(spec(10, 2, 1, 0, 15));
    h.token = Token::V1;
    let out = h.sync_ok();
    assert_eq!(out.count("create"), 10);
    h.token = Token::V2;
    let mark = h.mark();
    let out = h.sync_ok();
    assert_eq!(out.count("noop"), 10);
    h.assert_no_writes_since(&mark, "v2 rerun after a v1 sync");
    // And the other way round after a change.
    let g = h.guest_of_type("qemu");
    let cluster = g["cluster"].as_str().unwrap_or_default().to_string();
    h.edit_guest(
        &cluster,
        g["vmid"].as_u64().unwrap_or(0) as u32,
        json!({"memory": 3072}),
    );
    h.token = Token::V1;
    let out = h.sync_ok();
    assert_eq!(out.count("update"), 1, "{}", out.describe());
}

#[test]
fn bulk_and_single_write_modes_reach_the_same_netbox_state() {
    let mut h = Harness::generated(spec(60, 3, 2, 0, 16));
    h.set("bulk", false);
    h.sync_ok();
    let single = vm_state(&h.vms());
    let single_writes = h.proxy().counters().netbox_writes();
    h.reset_netbox();
    h.proxy().reset_counters();
    h.set("bulk", true);
    let out = h.sync_ok();
    assert_eq!(out.count("create"), 60);
    let bulk = vm_state(&h.vms());
    assert_eq!(single.len(), 60);
    if single != bulk {
        let diff: Vec<String> = single
            .keys()
            .chain(bulk.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| single.get(*k) != bulk.get(*k))
            .map(|k| {
                format!(
                    "{k}:\n  single {:?}\n  bulk   {:?}",
                    single.get(k),
                    bulk.get(k)
                )
            })
            .collect();
        panic!("bulk and single states differ:\n{}", diff.join("\n"));
    }
    let bulk_writes = h.proxy().counters().netbox_writes();
    assert!(
        bulk_writes < single_writes,
        "bulk mode should need fewer write requests ({bulk_writes}) than single ({single_writes})"
    );
    // A rerun in bulk mode writes nothing either.
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "bulk rerun");
}

fn journal_of(h: &Harness, vm_id: u64) -> Vec<Value> {
    h.objects("journal-entries")
        .into_iter()
        .filter(|j| j["assigned_object_id"] == vm_id)
        .collect()
}

fn upids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|j| {
            j["comments"]
                .as_str()?
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("UPID:"))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn task_history_becomes_journal_entries_without_duplicates() {
    let h = Harness::generated(spec(6, 2, 1, 0, 17));
    let g = h.guest_of_type("qemu");
    let cluster = g["cluster"].as_str().unwrap_or_default().to_string();
    let vmid = g["vmid"].as_u64().unwrap_or(0) as u32;
    let node = g["node"].as_str().unwrap_or_default().to_string();
    let task = |kind: &str, status: &str, start: u64| NewTask {
        cluster: Some(cluster.clone()),
        node: node.clone(),
        vmid: Some(vmid),
        kind: kind.into(),
        status: Some(status.into()),
        starttime: Some(start),
        ..NewTask::default()
    };
    let added = h
        .control()
        .add_tasks(vec![
            task("qmstart", "OK", 1_770_000_000),
            task("vzdump", "WARNINGS: 2", 1_770_000_100),
            task(
                "qmshutdown",
                "command 'qm shutdown' failed: got timeout",
                1_770_000_200,
            ),
        ])
        .expect("add tasks");
    h.sync_ok();
    let vm = h
        .vms()
        .into_iter()
        .find(|v| cf(v, "proxmox_vm_id") == vmid)
        .expect("the VM");
    let vm_id = vm["id"].as_u64().expect("id");
    let entries = journal_of(&h, vm_id);
    let recorded = upids(&entries);
    for upid in &added {
        assert_eq!(
            recorded.iter().filter(|u| *u == upid).count(),
            1,
            "{upid} recorded once in {recorded:#?}"
        );
    }
    let kind_of = |upid: &str| {
        entries
            .iter()
            .find(|j| j["comments"].as_str().is_some_and(|c| c.contains(upid)))
            .map(|j| choice(&j["kind"]).to_string())
            .unwrap_or_default()
    };
    assert_eq!(kind_of(&added[0]), "success");
    assert_eq!(kind_of(&added[1]), "warning");
    assert_eq!(kind_of(&added[2]), "danger");
    let total = h.objects("journal-entries").len();

    // Rerun: nothing new, no write, no duplicate.
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "task-history rerun");
    assert_eq!(h.objects("journal-entries").len(), total);

    // One new task: exactly one new entry.
    let newer = h
        .control()
        .add_tasks(vec![task("qmreboot", "OK", 1_770_000_300)])
        .expect("add task");
    let mark = h.mark();
    h.sync_ok();
    assert_eq!(h.objects("journal-entries").len(), total + 1);
    // The entry, then the cluster's task watermark (`proxmox_tasks_since`) moves past it.
    assert_eq!(
        h.writes_since(&mark),
        2 + e2e_support::LEASE_WRITES,
        "one journal entry and one watermark PATCH written (plus the run lease):\n{}",
        h.writes_detail(&mark)
    );
    assert!(upids(&journal_of(&h, vm_id)).contains(&newer[0]));
}

#[test]
fn task_history_off_writes_no_journal() {
    let mut h = Harness::generated(spec(5, 1, 1, 0, 18));
    h.set("task_history", false);
    h.sync_ok();
    assert!(
        h.objects("journal-entries").is_empty(),
        "task_history = false writes no journal entry"
    );
}

#[test]
fn netbox_5xx_on_every_write_fails_the_run_without_partial_duplicates() {
    let h = Harness::generated(spec(8, 2, 1, 0, 19));
    h.sync_ok();
    let g = h.guest_of_type("qemu");
    let cluster = g["cluster"].as_str().expect("cluster").to_string();
    let vmid = g["vmid"].as_u64().expect("vmid") as u32;
    h.edit_guest(&cluster, vmid, json!({"memory": 5120}));
    // Only writes fail: the run reads Proxmox and NetBox, plans the update, and meets the 500s
    // at its first write (the run lease).
    h.netbox_faults(&pve2netbox_testkit::FaultPatch {
        error_rate: Some(1.0),
        error_status: Some(500),
        writes_only: Some(true),
        ..Default::default()
    });
    let mark = h.mark();
    let committed = h.proxy().committed_writes();
    let out = h.sync();
    assert_eq!(
        out.code,
        1,
        "a NetBox answering 500 to every write fails the run: {}",
        out.describe()
    );
    let attempted: u64 = h.write_paths_since(&mark).values().sum();
    assert!(attempted > 0, "writes were attempted: {}", out.describe());
    assert!(h.reads_since(&mark) > 0, "reads went through");
    assert_eq!(
        h.proxy().committed_writes(),
        committed,
        "no write reached NetBox past the faults"
    );
    h.clear_faults();
    let out = h.sync_ok();
    assert_eq!(out.count("update"), 1, "{}", out.describe());
    let vms = h.vms();
    assert_eq!(vms.len(), 8);
    let names: std::collections::BTreeSet<&str> =
        vms.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names.len(), 8, "no duplicate: {vms:#?}");
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "the run after the faults");
}
