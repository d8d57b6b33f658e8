//! End to end, recording and replaying: `plan --record DIR` (and `sync --dry-run --record`,
//! `sync --record`) writes one fixture per VM with the module's answer and a manifest, secrets
//! redacted; the recording replays with no Proxmox and no NetBox through `rules test`,
//! `rules replay` and `rules diff`, which agree with what the run planned.

mod e2e_support;
mod rules_common;

use std::path::Path;
use std::process::{Command, Output};

use e2e_support::{Harness, spec};
use serde_json::{Map, Value, json};

const VMS: usize = 16;
const SECRET: &str = "hunter2-do-not-record";

fn rules(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pve2netbox"))
        .args(["--log", "warn", "rules"])
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .expect("run pve2netbox rules")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A synced estate, then a guest whose memory grew and which got a cloud-init password and
/// SSH keys in Proxmox. Returns the harness and that guest's VMID.
fn changed_estate(seed: u64) -> (Harness, u32) {
    let mut h = Harness::generated(spec(VMS, 2, 1, 0, seed));
    h.set("task_history", false);
    h.sync_ok();
    let guests = h.control().pve_guests(None).expect("guests");
    let qemu = guests
        .iter()
        .find(|g| g["type"] == "qemu" && g["template"].as_u64().unwrap_or(0) == 0)
        .expect("a QEMU guest");
    let vmid = u32::try_from(qemu["vmid"].as_u64().expect("vmid")).expect("vmid");
    let mut patch = Map::new();
    patch.insert("memory".into(), json!("12288"));
    patch.insert("cipassword".into(), json!(SECRET));
    patch.insert(
        "sshkeys".into(),
        json!(format!("ssh-ed25519%20AAAA{SECRET}%20me%40host")),
    );
    h.control()
        .update_guest(None, vmid, &patch)
        .expect("guest changed");
    (h, vmid)
}

fn fixture_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("fixtures"))
        .expect("fixtures/ of the recording")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

#[test]
fn a_recorded_plan_replays_without_proxmox_or_netbox_with_secrets_redacted() {
    let (h, vmid) = changed_estate(71);
    // Outside the harness's directory, which goes with the simulators.
    let keep = tempfile::tempdir().unwrap();
    let rec = keep.path().join("rec");
    let plan_json = h.path("plan.json");
    let out = h.run(&[
        "plan",
        "--out",
        plan_json.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
    ]);
    out.expect_code(2);
    assert_eq!(out.count("update"), 1, "{}", out.describe());
    assert!(
        out.stderr
            .contains("recorded the rules' input and answers of")
            && out.stderr.contains(rec.to_str().unwrap()),
        "the run says where it wrote:\n{}",
        out.stderr
    );

    // One fixture per VM, a manifest, and no secret anywhere.
    let files = fixture_files(&rec);
    assert_eq!(files.len(), VMS, "{files:?}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("recording.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["vms"], json!(VMS));
    assert_eq!(manifest["mode"], "plan");
    assert_eq!(manifest["module"]["source"], "embedded default");
    assert_eq!(manifest["redacted"]["cipassword"], 1, "{manifest}");
    assert_eq!(manifest["redacted"]["sshkeys"], 1, "{manifest}");
    // The context is written once, in the manifest; no fixture repeats it.
    assert_eq!(manifest["recording_version"], 2, "{manifest}");
    assert!(manifest["context"].is_object(), "{manifest}");
    for f in &files {
        let t = std::fs::read_to_string(f).unwrap();
        assert!(!t.contains(SECRET), "{} holds the secret", f.display());
        let v: Value = serde_json::from_str(&t).unwrap();
        assert!(
            v.get("context").is_none(),
            "{} repeats the context",
            f.display()
        );
    }
    // The changed guest's fixture: its answer is the memory change, its secrets redacted.
    let changed = files
        .iter()
        .find(|f| f.to_string_lossy().ends_with(&format!("-{vmid}.json")))
        .expect("the changed guest's fixture");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(changed).unwrap()).unwrap();
    assert_eq!(fixture["guest"]["config"]["cipassword"], "<redacted>");
    assert_eq!(fixture["guest"]["config"]["sshkeys"], "<redacted>");
    assert_eq!(fixture["guest"]["config"]["memory"], "12288");
    assert!(fixture["current"]["id"].is_u64(), "{fixture}");
    let changes = fixture["expect"]["changes"].as_array().expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c["field"] == "memory" && c["new"] == json!(12288)),
        "{fixture}"
    );

    // Replayed with nothing running: the recorded answers are the module's answers.
    drop(h);
    let cache = tempfile::tempdir().unwrap();
    let test = rules(&["test", "default", rec.to_str().unwrap()], cache.path());
    assert!(test.status.success(), "{}", text(&test));
    assert!(
        String::from_utf8_lossy(&test.stdout).contains(&format!("{VMS} passed, 0 failed")),
        "{}",
        text(&test)
    );
    let replay = rules(
        &[
            "replay",
            "default",
            rec.to_str().unwrap(),
            "--output",
            "json",
        ],
        cache.path(),
    );
    assert!(replay.status.success(), "{}", text(&replay));
    let report: Value = serde_json::from_slice(&replay.stdout).expect("replay JSON");
    assert_eq!(report["summary"]["counts"]["update"], 1, "{report}");
    assert_eq!(
        report["summary"]["counts"]["noop"],
        json!(VMS - 1),
        "{report}"
    );
    assert_eq!(report["summary"]["fields"]["memory"], 1, "{report}");
    let replay_text = rules(&["replay", "default", rec.to_str().unwrap()], cache.path());
    let t = String::from_utf8_lossy(&replay_text.stdout);
    assert!(t.contains("plan: 0 create, 1 update"), "{t}");
    assert!(t.contains("memory: "), "per-field changes are listed: {t}");

    // The same module agrees with itself everywhere: exit 0.
    let same = rules(
        &["diff", "default", "default", rec.to_str().unwrap()],
        cache.path(),
    );
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(
        String::from_utf8_lossy(&same.stdout).contains(&format!("agree on all {VMS} VMs")),
        "{}",
        text(&same)
    );

    // A recording of layout 1 (the context in every fixture) still reads: the same results.
    for f in &files {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        v["context"] = manifest["context"].clone();
        std::fs::write(f, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
    let mut old_manifest = manifest.clone();
    old_manifest["recording_version"] = json!(1);
    std::fs::write(
        rec.join("recording.json"),
        serde_json::to_string_pretty(&old_manifest).unwrap(),
    )
    .unwrap();
    let test = rules(&["test", "default", rec.to_str().unwrap()], cache.path());
    assert!(
        String::from_utf8_lossy(&test.stdout).contains(&format!("{VMS} passed, 0 failed")),
        "{}",
        text(&test)
    );
    let replay = rules(
        &[
            "replay",
            "default",
            rec.to_str().unwrap(),
            "--output",
            "json",
        ],
        cache.path(),
    );
    let old_report: Value = serde_json::from_slice(&replay.stdout).expect("replay JSON");
    assert_eq!(old_report["summary"], report["summary"], "{old_report}");
}

#[test]
fn a_different_module_is_shown_per_vm_with_totals_and_exit_2() {
    let (mut h, _) = changed_estate(72);
    // The example module gives every VM this tenant (the default rules leave tenants alone).
    h.rule_settings
        .insert("default_tenant".into(), "internal".into());
    // With children: the example names interfaces as the guest does and puts IPs in a VRF.
    h.set("children", true);
    let keep = tempfile::tempdir().unwrap();
    let rec = keep.path().join("rec");
    let out = h.run(&["sync", "--dry-run", "--record", rec.to_str().unwrap()]);
    out.expect_code(2);
    drop(h);
    let example = rules_common::site_example();
    let cache = tempfile::tempdir().unwrap();
    let diff = rules(
        &[
            "diff",
            "default",
            example.to_str().unwrap(),
            rec.to_str().unwrap(),
            "--output",
            "json",
        ],
        cache.path(),
    );
    assert_eq!(diff.status.code(), Some(2), "{}", text(&diff));
    let report: Value = serde_json::from_slice(&diff.stdout).expect("diff JSON");
    // Every VM: the example sets the tenant (and needs it created), the default rules do not.
    assert_eq!(report["differ"], json!(VMS), "{report}");
    assert_eq!(report["fields"]["tenant"], json!(VMS), "{report}");
    assert_eq!(report["kinds"]["needs"], json!(VMS), "{report}");
    assert_eq!(report["vms"], json!(VMS));
    let first = &report["differences"][0];
    assert!(first["scope"].as_str().unwrap().contains('/'), "{first}");
    assert!(!first["kinds"].as_array().unwrap().is_empty(), "{first}");
    // The children's differences are their own kind, per child and field, with totals.
    let with_children = report["kinds"]["children"].as_u64().unwrap_or(0);
    assert!(with_children > 0, "{report}");
    assert!(
        report["children"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "{report}"
    );
    let d = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kinds"].as_array().unwrap().contains(&json!("children")))
        .expect("a VM whose children differ");
    let child = &d["children"][0];
    assert!(
        child["kind"].is_string() && child["key"].is_string() && child["field"].is_string(),
        "{d}"
    );
    let d = rules(
        &[
            "diff",
            "default",
            example.to_str().unwrap(),
            rec.to_str().unwrap(),
            "--examples",
            "1",
        ],
        cache.path(),
    );
    let t = String::from_utf8_lossy(&d.stdout);
    assert_eq!(d.status.code(), Some(2), "{}", text(&d));
    assert!(t.contains("VMs differ: fields "), "{t}");
    assert!(t.contains("children (VMs): "), "{t}");
    assert!(t.contains("\nchildren ("), "{t}");
    assert!(t.contains("old: ") || t.contains("| new "), "{t}");
}

#[test]
fn a_replay_leaves_out_an_untagged_vlan_the_recorded_netbox_lacked_as_the_plan_did() {
    // The generated estate tags some NICs with VLANs the simulated NetBox does not have: the
    // plan leaves those VLANs out ("VLANs not found"), so the replay must too.
    let (mut h, _) = changed_estate(73);
    h.set("children", true);
    let keep = tempfile::tempdir().unwrap();
    let rec = keep.path().join("rec");
    h.run(&["sync", "--dry-run", "--record", rec.to_str().unwrap()])
        .expect_code(2);
    drop(h);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("recording.json")).unwrap())
            .unwrap();
    let vids: std::collections::BTreeSet<u64> = manifest["vlans"]
        .as_array()
        .unwrap_or_else(|| panic!("the run's VLANs are recorded: {manifest}"))
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let unknown_vlan = |children: &Value| {
        children.as_array().into_iter().flatten().any(|c| {
            c["changes"].as_array().into_iter().flatten().any(|f| {
                f["field"] == "untagged_vlan"
                    && f["new"].as_u64().is_some_and(|v| !vids.contains(&v))
            })
        })
    };
    let recorded = fixture_files(&rec)
        .iter()
        .filter(|f| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            unknown_vlan(&v["expect"]["children"])
        })
        .count();
    assert!(
        recorded > 0,
        "no recorded answer tags a NIC with a VLAN NetBox lacks"
    );
    let cache = tempfile::tempdir().unwrap();
    let replay = rules(
        &[
            "replay",
            "default",
            rec.to_str().unwrap(),
            "--output",
            "json",
        ],
        cache.path(),
    );
    assert!(replay.status.success(), "{}", text(&replay));
    let report: Value = serde_json::from_slice(&replay.stdout).expect("replay JSON");
    for vm in report["vms"].as_array().expect("vms") {
        assert!(!unknown_vlan(&vm["answer"]["children"]), "{vm}");
    }
}

#[test]
fn recording_ignores_the_memo_and_apply_refuses_it() {
    let (h, _) = changed_estate(73);
    // A memoized rerun would answer unchanged VMs without asking the module.
    h.run(&["sync", "--dry-run"]);
    let rec = h.path("rec");
    let out = h.run(&["sync", "--record", rec.to_str().unwrap()]);
    out.expect_code(0);
    assert_eq!(out.report["memo"]["hits"], 0, "{}", out.describe());
    assert_eq!(fixture_files(&rec).len(), VMS);
    // A second recording into the same directory replaces the first, stale files included.
    std::fs::write(rec.join("fixtures").join("gone-1.json"), "{}").unwrap();
    let again = h.run(&["sync", "--dry-run", "--record", rec.to_str().unwrap()]);
    again.expect_code(0);
    assert_eq!(fixture_files(&rec).len(), VMS);
    // A directory that is not a recording is never written into.
    let foreign = h.path("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let refused = h.run(&[
        "plan",
        "--out",
        h.path("p.json").to_str().unwrap(),
        "--record",
        foreign.to_str().unwrap(),
    ]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("not empty and holds no recording"),
        "{}",
        refused.describe()
    );
    let plan = h.path("plan.json");
    h.run(&["plan", "--out", plan.to_str().unwrap()]);
    let apply = h.run(&[
        "apply",
        plan.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
    ]);
    apply.expect_code(1);
    assert!(
        apply.stderr.contains("--record is for sync"),
        "{}",
        apply.describe()
    );
}
