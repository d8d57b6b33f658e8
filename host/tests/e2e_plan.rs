//! End to end, `plan --out` then `apply`: the plan writes nothing, `apply` does exactly the
//! plan, and a target an operator edited after the plan is refused while the rest is applied.
//! Also `doctor` with a read-only token.

mod e2e_support;

use e2e_support::{Harness, Token, cf, spec, vm_diff};
use serde_json::{Value, json};

fn plan_file(h: &Harness) -> String {
    h.path("plan.json").display().to_string()
}

#[test]
fn plan_then_apply_does_exactly_the_plan() {
    let mut h = Harness::generated(spec(15, 2, 1, 0, 51));
    h.set("task_history", false);
    let plan = plan_file(&h);
    let mark = h.mark();
    let out = h.run(&["plan", "--out", &plan]);
    out.expect_code(2);
    assert_eq!(out.report["mode"], "plan");
    assert_eq!(out.count("create"), 15);
    h.assert_no_writes_since(&mark, "plan on an empty NetBox");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).expect("plan written")).expect("JSON");
    assert!(saved.is_object(), "the plan is a JSON object");

    let out = h.run(&["apply", &plan]);
    out.expect_code(0);
    assert_eq!(out.report["mode"], "apply");
    assert_eq!(h.vms().len(), 15);
    let mark = h.mark();
    let out = h.sync_ok();
    assert_eq!(
        out.count("noop"),
        15,
        "apply left nothing to do: {}",
        out.describe()
    );
    h.assert_no_writes_since(&mark, "sync after apply");

    // A change: plan shows it, apply carries out just that.
    let g = h.guest_of_type("qemu");
    let cluster = g["cluster"].as_str().unwrap_or_default().to_string();
    let vmid = g["vmid"].as_u64().unwrap_or_default() as u32;
    h.edit_guest(&cluster, vmid, json!({"memory": 7777}));
    let out = h.run(&["plan", "--out", &plan]);
    out.expect_code(2);
    assert_eq!(out.count("update"), 1);
    let before = h.vms();
    h.run(&["apply", &plan]).expect_code(0);
    let diff = vm_diff(&before, &h.vms());
    assert_eq!(diff.len(), 1, "{diff:#?}");
    let changed = diff.values().next().cloned().unwrap_or_default();
    assert_eq!(changed.into_iter().collect::<Vec<_>>(), vec!["memory"]);
}

#[test]
fn apply_refuses_a_target_edited_after_the_plan() {
    let mut h = Harness::generated(spec(15, 2, 1, 0, 52));
    h.set("task_history", false);
    h.sync_ok();
    let qemu: Vec<Value> = h
        .guests()
        .into_iter()
        .filter(|g| g["type"] == "qemu")
        .take(2)
        .collect();
    assert_eq!(qemu.len(), 2);
    let cluster = qemu[0]["cluster"].as_str().unwrap_or_default().to_string();
    let ids: Vec<(u32, u64)> = qemu
        .iter()
        .map(|g| {
            let vmid = g["vmid"].as_u64().unwrap_or_default() as u32;
            h.edit_guest(&cluster, vmid, json!({"memory": 9000}));
            let id = h
                .vms()
                .iter()
                .find(|v| cf(v, "proxmox_vm_id") == vmid)
                .and_then(|v| v["id"].as_u64())
                .expect("vm");
            (vmid, id)
        })
        .collect();
    let plan = plan_file(&h);
    let out = h.run(&["plan", "--out", &plan]);
    out.expect_code(2);
    assert_eq!(out.count("update"), 2);

    // An operator edits the first target in NetBox after the plan was made.
    let (stale_vmid, stale_id) = ids[0];
    let (_, fresh_id) = ids[1];
    h.patch(
        "virtual-machines",
        stale_id,
        json!({"comments": "edited by an operator after the plan"}),
    );
    let out = h.run(&["apply", &plan]);
    out.expect_code(3);
    let refused = out.errors();
    assert!(
        refused.iter().any(|e| {
            e["scope"]
                .as_str()
                .is_some_and(|s| s.ends_with(&format!("/{stale_vmid}")))
                && e["message"].as_str().is_some_and(|m| m.contains("refused"))
        }),
        "the stale target is refused: {}",
        out.describe()
    );
    let stale = h.vm(stale_id).expect("vm");
    assert_ne!(stale["memory"], 9000, "refused: not written");
    assert_eq!(stale["comments"], "edited by an operator after the plan");
    let fresh = h.vm(fresh_id).expect("vm");
    assert_eq!(fresh["memory"], 9000, "the other target is applied");
}

#[test]
fn doctor_with_a_read_only_token_says_it_cannot_write() {
    let mut h = Harness::generated(spec(5, 1, 1, 0, 53));
    h.token = Token::ReadOnly;
    let out = h.run(&["doctor"]);
    assert_eq!(
        out.code,
        1,
        "a token that cannot write fails doctor: {}",
        out.describe()
    );
    let text = out.stdout.to_lowercase();
    assert!(
        text.contains("read-only") && text.contains("cannot write"),
        "doctor says the token cannot write:\n{}",
        out.stdout
    );
    // With a read-write token, the write check passes.
    h.token = Token::V2;
    let out = h.run(&["doctor"]);
    assert!(
        out.stdout.contains("can create virtual machines"),
        "{}",
        out.describe()
    );
    // And a sync with the read-only token fails without writing.
    // (The refused write attempt is a request, so compare state, not request counts.)
    h.token = Token::ReadOnly;
    let out = h.sync();
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("403") || out.stderr.to_lowercase().contains("permission"),
        "the error says NetBox refused the write: {}",
        out.describe()
    );
    assert!(h.objects("custom-fields").is_empty(), "nothing created");
    assert!(h.vms().is_empty(), "nothing created");
}

#[test]
fn doctor_and_rules_check_name_a_custom_field_the_rules_set_that_netbox_lacks() {
    let mut h = Harness::generated(spec(3, 1, 1, 0, 54));
    let out = h.run(&["doctor"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("rules: rules `")),
        "the default rules' custom fields are the sync's own: {}",
        out.describe()
    );
    // A policy for a custom field NetBox does not have: the rules (as configured) set it.
    h.rule_policies
        .insert("custom_fields.owner_team".into(), "owned".into());
    let out = h.run(&["doctor"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("fail") && l.contains("owner_team")),
        "doctor names the missing custom field: {}",
        out.describe()
    );
    let check = h.run(&["rules", "check", "default"]);
    let stdout = &check.stdout;
    assert_eq!(check.code, 1, "{}", check.describe());
    assert!(stdout.contains("owner_team"), "{stdout}");
}
