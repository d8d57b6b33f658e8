//! End to end, the no-op memo: a rerun whose inputs are unchanged is answered by the memo with
//! no writes and the same counts; what changes an input (Proxmox, NetBox, a rule setting, the
//! module) is still asked and written; `--no-memo` and `sync.memo = false` turn it off; a
//! corrupt memo is a full run; a running guest's agent counters, new on every read, do not
//! make it miss.

mod e2e_support;

use e2e_support::{Harness, spec};
use pve2netbox_testkit::{Guest, Inventory};
use serde_json::{Value, json};

const VMS: u64 = 24;

fn hits(out: &e2e_support::RunOutput) -> u64 {
    out.report["memo"]["hits"]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no memo.hits:\n{}", out.describe()))
}

/// The report's counts, to compare runs.
fn counts(out: &e2e_support::RunOutput) -> Value {
    out.report["counts"].clone()
}

/// A harness after a first sync and one no-op rerun (which stores the memo).
fn memoized(seed: u64) -> Harness {
    let mut h = Harness::generated(spec(VMS as usize, 2, 1, 0, seed));
    h.set("task_history", false);
    let first = h.sync_ok();
    assert_eq!(first.count("create"), VMS, "{}", first.describe());
    assert_eq!(hits(&first), 0, "creates are never memoized");
    let second = h.sync_ok();
    assert_eq!(second.count("noop"), VMS, "{}", second.describe());
    assert_eq!(hits(&second), 0, "{}", second.describe());
    h
}

#[test]
fn an_unchanged_rerun_is_answered_by_the_memo_with_no_writes_and_the_same_counts() {
    let h = memoized(91);
    let full = h.run(&["sync", "--no-memo"]);
    full.expect_code(0);
    assert_eq!(hits(&full), 0, "--no-memo asks the rules about every VM");
    let mark = h.mark();
    let out = h.sync_ok();
    h.assert_no_writes_since(&mark, "a memoized rerun");
    assert_eq!(hits(&out), VMS, "{}", out.describe());
    assert_eq!(counts(&out), counts(&full), "the memo changes no count");
    assert_eq!(out.report["requests"]["netbox_write"], 0);
    // Previews read it too (and find nothing to do).
    let dry = h.run(&["sync", "--dry-run"]);
    dry.expect_code(0);
    assert_eq!(hits(&dry), VMS, "{}", dry.describe());
    // The config key turns it off like the flag.
    let mut h = h;
    h.set("memo", false);
    let off = h.sync_ok();
    assert_eq!(hits(&off), 0, "sync.memo = false: {}", off.describe());
    assert_eq!(counts(&off), counts(&full));
}

#[test]
fn a_proxmox_or_netbox_change_after_a_memoized_run_is_still_written() {
    let h = memoized(92);
    assert_eq!(hits(&h.sync_ok()), VMS);
    // Proxmox: a guest's memory changes.
    let g = h.guest_of_type("qemu");
    let cluster = g["cluster"].as_str().unwrap_or_default().to_string();
    let vmid = g["vmid"].as_u64().unwrap_or_default() as u32;
    h.edit_guest(&cluster, vmid, json!({"memory": 4321}));
    let out = h.sync_ok();
    assert_eq!(out.count("update"), 1, "{}", out.describe());
    assert_eq!(hits(&out), VMS - 1, "{}", out.describe());
    // NetBox: an operator edits an owned field of another VM; the next run changes it back.
    let vm = h
        .vms()
        .into_iter()
        .find(|v| v["custom_fields"]["proxmox_vm_id"].as_u64() != Some(u64::from(vmid)))
        .expect("another VM");
    let id = vm["id"].as_u64().expect("id");
    let memory = vm["memory"].clone();
    h.patch("virtual-machines", id, json!({"memory": 1}));
    let out = h.sync_ok();
    assert_eq!(out.count("update"), 1, "{}", out.describe());
    // Asked: the edited VM, and the one updated by the run before (its write changed its
    // NetBox record, so its inputs are not those of a stored "no changes").
    assert_eq!(hits(&out), VMS - 2, "{}", out.describe());
    assert_eq!(h.vm(id).expect("the VM")["memory"], memory);
    // The VM just corrected is asked once more (no change now), then everything is memoized.
    let mark = h.mark();
    let out = h.sync_ok();
    assert_eq!(out.count("noop"), VMS, "{}", out.describe());
    assert_eq!(hits(&out), VMS - 1, "{}", out.describe());
    assert_eq!(hits(&h.sync_ok()), VMS);
    h.assert_no_writes_since(&mark, "the reruns after the changes");
}

#[test]
fn a_changed_rule_setting_or_module_invalidates_the_memo() {
    let mut h = memoized(93);
    // A setting the default rules do not use still changes the context: a full run.
    h.rule_settings
        .insert("unused_by_the_rules".into(), 1.into());
    let out = h.sync_ok();
    assert_eq!(hits(&out), 0, "{}", out.describe());
    assert_eq!(out.count("noop"), VMS);
    assert_eq!(hits(&h.sync_ok()), VMS, "remembered under the new context");
    // A setting the rules do use: the template status.
    h.rule_settings
        .insert("template_status".into(), "offline".into());
    let out = h.sync_ok();
    assert_eq!(hits(&out), 0, "{}", out.describe());
    // Another module (the default rules with one more custom section: other bytes, same
    // logic) is a full run, then is remembered on its own.
    let mut bytes = pve2netbox::rules::default_component_bytes().to_vec();
    let name = b"memo-test";
    bytes.extend_from_slice(&[0, (1 + name.len() + 1) as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.push(1);
    let other = h.path("other.wasm");
    std::fs::write(&other, &bytes).expect("write the module");
    let other = other.display().to_string();
    let out = h.run(&["sync", "--rules", &other]);
    out.expect_code(0);
    assert_eq!(hits(&out), 0, "another module: {}", out.describe());
    assert_eq!(out.count("noop"), VMS, "{}", out.describe());
    let out = h.run(&["sync", "--rules", &other]);
    assert_eq!(hits(&out), VMS, "{}", out.describe());
}

#[test]
fn a_corrupt_memo_is_a_full_run() {
    let h = memoized(94);
    let dir = h.path("state").join("memo");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the memo dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "one memo per NetBox: {files:?}");
    let mut bytes = std::fs::read(&files[0]).expect("read the memo");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&files[0], &bytes).expect("corrupt the memo");
    let out = h.sync_ok();
    assert_eq!(hits(&out), 0, "{}", out.describe());
    assert_eq!(out.count("noop"), VMS);
    // Truncated: the same.
    let bytes = std::fs::read(&files[0]).expect("read the memo");
    std::fs::write(&files[0], &bytes[..bytes.len() - 1]).expect("truncate the memo");
    let out = h.sync_ok();
    assert_eq!(hits(&out), 0, "{}", out.describe());
    assert_eq!(hits(&h.sync_ok()), VMS, "rewritten whole by the full run");
}

/// Running QEMU guests whose agents answer with traffic `statistics` on every interface, which
/// grow with every read (the simulator's do, as a real agent's): the sync leaves them out of
/// the rules' input, so with children on the rerun after the one that stored the memo is
/// answered by it for every VM and writes nothing.
#[test]
fn growing_agent_counters_do_not_miss_the_memo() {
    let mut inv = Inventory::generate(&spec(1, 1, 1, 0, 95));
    let node = inv.endpoints[0].nodes[0].name.clone();
    let guests: Vec<Guest> = (0..3u32)
        .map(|i| {
            let vmid = 200 + i;
            Guest::qemu(vmid, &node)
                .with("name", format!("agent-{i}"))
                .with("memory", "2048")
                .with("cores", 2)
                .with("ostype", "l26")
                .with("agent", "1")
                .with("scsi0", format!("local-lvm:vm-{vmid}-disk-0,size=16G"))
                .with(
                    "net0",
                    format!("virtio=BC:24:11:00:{i:02X}:00,bridge=vmbr0"),
                )
                .with(
                    "net1",
                    format!("virtio=BC:24:11:00:{i:02X}:01,bridge=vmbr0"),
                )
                .with_status("running")
        })
        .collect();
    let vms = guests.len() as u64;
    inv.endpoints[0].guests = guests;
    inv.endpoints[0].tasks.clear();
    let mut h = Harness::with_inventory(inv);
    h.set("task_history", false).set("children", true);
    let agent_reads = |h: &Harness| -> u64 {
        h.control().counters().paths["pve"]
            .iter()
            .filter(|(path, _)| path.contains("agent/network-get-interfaces"))
            .map(|(_, n)| *n)
            .sum()
    };
    let first = h.sync_ok();
    assert_eq!(first.count("create"), vms, "{}", first.describe());
    let second = h.sync_ok();
    assert_eq!(second.count("noop"), vms, "{}", second.describe());
    assert_eq!(hits(&second), 0, "{}", second.describe());
    let mark = h.mark();
    let third = h.sync_ok();
    // Every run asked every agent, and got other counters each time.
    assert_eq!(agent_reads(&h), 3 * vms);
    assert_eq!(hits(&third), vms, "{}", third.describe());
    assert_eq!(third.count("noop"), vms, "{}", third.describe());
    h.assert_no_writes_since(&mark, "a rerun with only the agents' counters changed");
}

/// Enough VMs that a rerun's memo keys and lookups are split over several threads (each
/// takes a contiguous range of at least 256 VMs): every VM is answered by the memo, and a
/// change at each end of the guests (each in another thread's range) is asked and written,
/// the others still answered.
#[test]
fn a_memoized_rerun_split_over_threads_answers_every_vm_but_the_changed() {
    const MANY: u64 = 600;
    let mut h = Harness::generated(spec(MANY as usize, 2, 1, 0, 96));
    // Children off: the generated inventory's agent addresses repeat past 250 VMs.
    h.set("task_history", false);
    let first = h.sync_ok();
    assert_eq!(first.count("create"), MANY, "{}", first.describe());
    let second = h.sync_ok();
    assert_eq!(second.count("noop"), MANY, "{}", second.describe());
    let mark = h.mark();
    let third = h.sync_ok();
    assert_eq!(hits(&third), MANY, "{}", third.describe());
    assert_eq!(counts(&third), counts(&second), "the memo changes no count");
    h.assert_no_writes_since(&mark, "a memoized rerun");
    // The first and the last guest in the rules' order (cluster, VMID).
    let mut guests: Vec<(String, u32)> = h
        .guests()
        .iter()
        .map(|g| {
            let cluster = g["cluster"].as_str().unwrap_or_default().to_string();
            (cluster, g["vmid"].as_u64().unwrap_or_default() as u32)
        })
        .collect();
    guests.sort();
    let ends = [guests[0].clone(), guests[guests.len() - 1].clone()];
    for (cluster, vmid) in &ends {
        h.edit_guest(cluster, *vmid, json!({"memory": 4321}));
    }
    let out = h.sync_ok();
    assert_eq!(out.count("update"), 2, "{}", out.describe());
    assert_eq!(hits(&out), MANY - 2, "{}", out.describe());
    // The two updated VMs' NetBox records changed: asked once more, then all memoized.
    assert_eq!(hits(&h.sync_ok()), MANY - 2);
    let last = h.sync_ok();
    assert_eq!(hits(&last), MANY, "{}", last.describe());
    assert_eq!(last.count("noop"), MANY, "{}", last.describe());
}
