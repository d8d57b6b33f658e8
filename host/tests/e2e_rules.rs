//! End to end, a rule module that traps: its VMs are ERROR with a message naming the module,
//! NetBox gets no write for them (and no orphan action), the run finishes with its report and
//! exit code 3, and the next run with good rules goes on normally.

mod e2e_support;
#[path = "rules_common/mod.rs"]
mod rules_common;

use e2e_support::{Harness, spec};
use serde_json::json;

/// Syncs with good rules, changes a guest, then syncs with the `runaway` module set to
/// misbehave as `trap`.
fn trapping_module(trap: &str) {
    let runaway = rules_common::misbehaving("runaway");
    {
        let mut h = Harness::generated(spec(12, 2, 1, 0, 61));
        h.set("task_history", false)
            .set("orphans", "delete")
            .set("orphan_delete_after_runs", 1)
            .set("delete_budget_percent", 100);
        h.sync_ok();
        let g = h.guest_of_type("qemu");
        let cluster = g["cluster"].as_str().unwrap_or_default().to_string();
        let vmid = g["vmid"].as_u64().unwrap_or_default() as u32;
        h.edit_guest(&cluster, vmid, json!({"memory": 4321}));
        h.rule_settings.insert("misbehave".into(), trap.into());
        let before = h.vms();
        let mark = h.mark();
        let out = h.run(&["sync", "--rules", &runaway.display().to_string()]);
        assert_eq!(out.code, 3, "{trap}: {}", out.describe());
        assert_eq!(
            out.count("error"),
            12,
            "{trap}: every VM of the batch: {}",
            out.describe()
        );
        assert_eq!(out.count("orphan"), 0, "{trap}: failed VMs are not orphans");
        assert!(
            out.errors().iter().any(|e| e["message"]
                .as_str()
                .is_some_and(|m| m.contains("rules-misbehaving") || m.contains("runaway"))),
            "{trap}: the error names the module: {}",
            out.describe()
        );
        h.assert_no_writes_since(&mark, "a trapping rule module");
        assert_eq!(before.len(), h.vms().len());
        // The next run with the default rules does the pending change.
        h.rule_settings.clear();
        let out = h.sync_ok();
        assert_eq!(out.count("update"), 1, "{trap}: {}", out.describe());
    }
}

#[test]
fn rule_module_hitting_unreachable_fails_its_vms_without_writes_and_the_host_finishes() {
    trapping_module("unreachable");
}

/// A Rust panic in the module also writes its message to the module's stderr.
#[test]
fn rule_module_panicking_fails_its_vms_without_writes_and_the_host_finishes() {
    trapping_module("panic");
}

/// A trap fails its own batch only: with batches of 4, the 4 VMs of the batch holding the
/// trapping guest are ERROR and unwritten, the other 8 are created, and the next run creates
/// the 4.
#[test]
fn a_trap_in_one_batch_leaves_the_other_batches_written() {
    let runaway = rules_common::misbehaving("runaway");
    let runaway = runaway.display().to_string();
    let mut h = Harness::generated(spec(12, 2, 1, 0, 62));
    h.set("task_history", false).set("batch_size", 4);
    let trapping = h.guest_of_type("qemu")["vmid"]
        .as_u64()
        .expect("a qemu guest's vmid");
    h.rule_settings.insert("misbehave".into(), "panic".into());
    h.rule_settings
        .insert("misbehave_vmid".into(), (trapping as i64).into());
    let out = h.run(&["sync", "--rules", &runaway]);
    assert_eq!(out.code, 3, "{}", out.describe());
    assert_eq!(out.count("error"), 4, "one batch of 4: {}", out.describe());
    assert_eq!(
        out.count("create"),
        8,
        "the other batches: {}",
        out.describe()
    );
    assert!(
        out.errors().iter().any(|e| e["scope"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("/{trapping}")))),
        "the trapping guest is among the errors: {}",
        out.describe()
    );
    assert_eq!(h.vms().len(), 8, "the failed batch wrote nothing");
    h.rule_settings.clear();
    let out = h.run(&["sync", "--rules", &runaway]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.count("create"), 4, "{}", out.describe());
    assert_eq!(h.vms().len(), 12);
}
