use crate::pipeline::snapshot::children::ChildrenSnapshot;
use guest_default::model::{FieldPolicy, GuestKind, JsonText, KnownObject, NetboxVm};

use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).expect("url")
}

fn ctx() -> Context {
    Context {
        netbox_version: "4.7.3".into(),
        known: vec![KnownObject {
            kind: "platform".into(),
            key: "linux".into(),
            id: 3,
            name: "Linux".into(),
        }],
        policies: vec![FieldPolicy {
            field: "memory".into(),
            ownership: Ownership::Owned,
        }],
        settings: vec![("template_status".into(), JsonText("\"planned\"".into()))],
    }
}

fn header() -> MemoHeader {
    MemoHeader::new(&url("https://netbox.example/"), [7; 32], "0.2.0", &ctx())
}

fn guest() -> Guest {
    Guest {
        cluster: "pve-a".into(),
        vmid: 100,
        kind: GuestKind::Qemu,
        node: "pve1".into(),
        name: Some("web-1".into()),
        status: "running".into(),
        template: false,
        maxcpu: Some(2.0),
        maxmem: Some(4 << 30),
        maxdisk: Some(32 << 30),
        tags: Some("a;b".into()),
        pool: None,
        config: Vec::new(),
        config_read: true,
    }
}

fn current() -> NetboxVm {
    NetboxVm {
        id: 12,
        name: "web-1".into(),
        status: "active".into(),
        cluster: Some("pve-a".into()),
        vcpus: Some(2.0),
        memory: Some(4096),
        tags: vec!["pve2netbox".into()],
        custom_fields: vec![("proxmox_vm_id".into(), JsonText("100".into()))],
        last_updated: Some("2026-01-01T00:00:00Z".into()),
        ..NetboxVm::default()
    }
}

const CONFIG_TEXT: &str = "memory4096cores2";
const CONFIG_ENDS: &[u32] = &[6, 10, 15, 16];

fn key_of(memo: &Memo, guest: &Guest, config: (&str, &[u32]), cur: Option<&NetboxVm>) -> VmKey {
    memo.key(
        (1, guest.vmid),
        guest,
        config,
        cur,
        (&NetworkSource::default(), None),
    )
}

/// The WIT 0.3 inputs are part of the key: another agent answer, another reason for none,
/// other children, or children read where they were not, each miss the stored answer.
#[test]
fn a_changed_agent_answer_or_children_misses() {
    let dir = tempfile::tempdir().unwrap();
    let path = Memo::path(dir.path(), &url("https://netbox.example/"));
    let mut memo = Memo::open(path.clone(), header());
    let (g, cur) = (guest(), current());
    let config = (CONFIG_TEXT, CONFIG_ENDS);
    let agent = |text: &str| NetworkSource::Agent(JsonText(text.into()));
    let answer = r#"[{"name":"eth0","ip-addresses":[{"ip-address":"10.0.0.5","prefix":24}]}]"#;
    let snap = ChildrenSnapshot::from_json_for_tests(serde_json::json!({"interfaces": []}));
    let children = snap.vm_children(cur.id);
    let key = |memo: &Memo, network: &NetworkSource, children: Option<VmChildren<'_>>| {
        memo.key((1, g.vmid), &g, config, Some(&cur), (network, children))
    };
    let stored = key(&memo, &agent(answer), children);
    memo.record(&stored, Some("web-1"));
    memo.save().unwrap();
    let memo = Memo::open(path, header());
    let changed = answer.replace("10.0.0.5", "10.0.0.6");
    let other = ChildrenSnapshot::from_json_for_tests(serde_json::json!({"virtual_disks": []}));
    let unknown = |reason| {
        NetworkSource::Unknown(NetworkUnknown {
            reason,
            detail: String::new(),
        })
    };
    for (what, k) in [
        (
            "another agent answer",
            key(&memo, &agent(&changed), children),
        ),
        (
            "the same text from LXC",
            key(
                &memo,
                &NetworkSource::LxcInterfaces(JsonText(answer.into())),
                children,
            ),
        ),
        (
            "agent off",
            key(&memo, &unknown(UnknownReason::AgentOff), children),
        ),
        ("children not read", key(&memo, &agent(answer), None)),
        (
            "other kinds read",
            key(&memo, &agent(answer), other.vm_children(cur.id)),
        ),
    ] {
        assert_ne!(k.digest, stored.digest, "{what}");
        assert_eq!(memo.hit(&k), None, "{what}");
    }
    // Two reasons for no answer differ too.
    assert_ne!(
        key(&memo, &unknown(UnknownReason::TimedOut), None).digest,
        key(&memo, &unknown(UnknownReason::NoPermission), None).digest
    );
    let same = key(&memo, &agent(answer), children);
    assert_eq!(memo.hit(&same), Some(Some("web-1".into())));
}

/// The children are keyed by their rows, not their rendered text: a VM whose child row
/// changed (any field the text shows) misses; the same rows, read again into another snapshot
/// in another order, or with another `last_updated` (not in the text), hit.
#[test]
fn a_changed_child_row_misses() {
    use serde_json::{Value, json};
    let dir = tempfile::tempdir().unwrap();
    let path = Memo::path(dir.path(), &url("https://netbox.example/"));
    let mut memo = Memo::open(path.clone(), header());
    let (g, cur) = (guest(), current());
    let vm = cur.id;
    let rows = |interface: Value| {
        json!({
            "interfaces": [interface,
                {"id": 12, "virtual_machine": {"id": vm}, "name": "net1"}],
            "ip_addresses": [{"id": 31, "address": "10.0.0.5/24",
                "status": {"value": "active"},
                "assigned_object_type": "virtualization.vminterface",
                "assigned_object_id": 11}]
        })
    };
    let net0 = json!({"id": 11, "virtual_machine": {"id": vm}, "name": "net0", "mtu": 1500,
        "mac_address": "BC:24:11:2A:3B:4C", "last_updated": "2026-01-02T03:04:05Z"});
    let key = |snap: &ChildrenSnapshot| memo_key(&memo, &g, &cur, snap.vm_children(vm));
    fn memo_key(memo: &Memo, g: &Guest, cur: &NetboxVm, c: Option<VmChildren<'_>>) -> VmKey {
        memo.key(
            (1, g.vmid),
            g,
            (CONFIG_TEXT, CONFIG_ENDS),
            Some(cur),
            (&NetworkSource::default(), c),
        )
    }
    let snap = ChildrenSnapshot::from_json_for_tests(rows(net0.clone()));
    let stored = key(&snap);
    memo.record(&stored, Some("web-1"));
    memo.save().unwrap();
    let memo = Memo::open(path, header());
    let with = |field: &str, value: Value| {
        let mut row = net0.clone();
        row[field] = value;
        ChildrenSnapshot::from_json_for_tests(rows(row))
    };
    for (field, value) in [
        ("name", json!("net2")),
        ("mtu", json!(9000)),
        ("mac_address", json!("BC:24:11:2A:3B:4D")),
        ("enabled", json!(false)),
    ] {
        let k = memo_key(&memo, &g, &cur, with(field, value.clone()).vm_children(vm));
        assert_ne!(k.digest, stored.digest, "{field} {value}");
        assert_eq!(memo.hit(&k), None, "{field} {value}");
    }
    let touched = with("last_updated", json!("2026-01-02T03:04:06Z"));
    let k = memo_key(&memo, &g, &cur, touched.vm_children(vm));
    assert_eq!(
        memo.hit(&k),
        Some(Some("web-1".into())),
        "last_updated alone"
    );
    // The same rows, another VM's first and each kind's in reverse: the texts sit elsewhere
    // in the snapshot, the key is the same.
    let mut moved = rows(net0);
    for list in moved.as_object_mut().unwrap().values_mut() {
        let list = list.as_array_mut().unwrap();
        list.reverse();
        list.insert(
            0,
            json!({"id": 1, "virtual_machine": {"id": 999}, "name": "x",
            "address": "192.0.2.1/32", "assigned_object_type": "virtualization.vminterface",
            "assigned_object_id": 1}),
        );
    }
    let moved = ChildrenSnapshot::from_json_for_tests(moved);
    let k = memo_key(&memo, &g, &cur, moved.vm_children(vm));
    assert_eq!(memo.hit(&k), Some(Some("web-1".into())));
}

/// A memo in a temp dir with one entry saved ("no changes" for `guest()` against `current()`).
fn saved(dir: &Path) -> (PathBuf, VmKey) {
    let path = Memo::path(dir, &url("https://netbox.example/"));
    let mut memo = Memo::open(path.clone(), header());
    let key = key_of(
        &memo,
        &guest(),
        (CONFIG_TEXT, CONFIG_ENDS),
        Some(&current()),
    );
    assert_eq!(memo.hit(&key), None, "an empty memo answers nothing");
    memo.record(&key, Some("web-1"));
    memo.save().expect("save");
    (path, key)
}

#[test]
fn round_trip_answers_the_same_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, key) = saved(dir.path());
    let memo = Memo::open(path.clone(), header());
    let again = key_of(
        &memo,
        &guest(),
        (CONFIG_TEXT, CONFIG_ENDS),
        Some(&current()),
    );
    assert_eq!(again, key, "the same inputs give the same key");
    assert_eq!(memo.hit(&again), Some(Some("web-1".to_string())));
    assert_eq!(memo.hits(), 1);
    // A hit is carried into the next memo.
    memo.save().expect("save");
    let third = Memo::open(path, header());
    assert_eq!(third.hit(&key), Some(Some("web-1".to_string())));
}

/// Lookups made on several threads at once (as the sync's key threads do) are all counted and
/// all carried into the saved memo.
#[test]
fn hits_found_on_several_threads_are_counted_and_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Memo::path(dir.path(), &url("https://netbox.example/"));
    let mut memo = Memo::open(path.clone(), header());
    let keys: Vec<VmKey> = (0..64u32)
        .map(|vmid| {
            let mut g = guest();
            g.vmid = 100 + vmid;
            key_of(&memo, &g, (CONFIG_TEXT, CONFIG_ENDS), Some(&current()))
        })
        .collect();
    for key in &keys {
        memo.record(key, Some("web"));
    }
    memo.save().expect("save");
    let memo = Memo::open(path.clone(), header());
    let (left, right) = keys.split_at(keys.len() / 2);
    std::thread::scope(|s| {
        for half in [left, right] {
            let memo = &memo;
            s.spawn(move || {
                for key in half {
                    assert_eq!(memo.hit(key), Some(Some("web".to_string())));
                }
            });
        }
    });
    assert_eq!(memo.hits(), keys.len() as u64);
    assert_eq!(memo.len(), keys.len(), "every hit is kept for the next run");
    memo.save().expect("save");
    let next = Memo::open(path, header());
    assert!(keys.iter().all(|k| next.hit(k).is_some()));
}

/// A finder answers as `hit` does whatever order it is asked in (in order, backwards, at
/// random, VMs not in the file, this run's new entries, a changed input), and its hits are
/// counted once it is dropped.
#[test]
fn a_finder_answers_as_hit_in_any_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Memo::path(dir.path(), &url("https://netbox.example/"));
    let mut memo = Memo::open(path.clone(), header());
    let key = |memo: &Memo, vmid: u32, config: &str| {
        let mut g = guest();
        g.vmid = vmid;
        key_of(memo, &g, (config, &[config.len() as u32]), Some(&current()))
    };
    // Every third VMID of 100..160 stored, with its VMID as the name.
    for vmid in (100..160).step_by(3) {
        memo.record(&key(&memo, vmid, "a"), Some(&vmid.to_string()));
    }
    memo.save().expect("save");
    let mut memo = Memo::open(path, header());
    // Recorded this run, not in the file.
    memo.record(&key(&memo, 131, "a"), Some("131"));
    let expect = |vmid: u32, config: &str| {
        let stored = vmid == 131 || ((100..160).contains(&vmid) && (vmid - 100).is_multiple_of(3));
        (stored && config == "a").then(|| Some(vmid.to_string()))
    };
    let mut asks: Vec<(u32, &str)> = (95..165).map(|v| (v, "a")).collect();
    asks.extend((95..165).rev().map(|v| (v, "a")));
    asks.extend([
        (103, "b"),
        (103, "a"),
        (157, "a"),
        (100, "a"),
        (131, "a"),
        (200, "a"),
    ]);
    let mut hits = 0;
    {
        let mut finder = memo.finder();
        for &(vmid, config) in &asks {
            let want = expect(vmid, config);
            hits += u64::from(want.is_some());
            assert_eq!(
                finder.hit(&key(&memo, vmid, config)),
                want,
                "{vmid} {config}"
            );
        }
        assert_eq!(memo.hits(), 0, "counted when the finder is dropped");
    }
    assert!(hits > 40, "the asks are not vacuous: {hits}");
    assert_eq!(memo.hits(), hits);
}

#[test]
fn the_file_name_is_per_netbox_url_under_memo() {
    let a = Memo::path(Path::new("state"), &url("https://netbox.example/"));
    let b = Memo::path(Path::new("state"), &url("https://other.example/"));
    assert_ne!(a, b);
    assert!(a.starts_with("state/memo"), "{}", a.display());
    assert_eq!(a.extension().and_then(|e| e.to_str()), Some("memo"));
}

#[test]
fn a_missing_memo_is_a_full_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Memo::path(dir.path(), &url("https://netbox.example/"));
    let memo = Memo::open(path, header());
    let key = key_of(
        &memo,
        &guest(),
        (CONFIG_TEXT, CONFIG_ENDS),
        Some(&current()),
    );
    assert_eq!(memo.hit(&key), None);
}

#[test]
fn a_truncated_or_corrupt_memo_is_a_full_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, key) = saved(dir.path());
    let bytes = std::fs::read(&path).expect("read");
    // Every truncation, and a flipped bit in every byte, reads as empty.
    for len in 0..bytes.len() {
        std::fs::write(&path, &bytes[..len]).expect("write");
        let memo = Memo::open(path.clone(), header());
        assert_eq!(memo.hit(&key), None, "truncated to {len} bytes");
    }
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        std::fs::write(&path, &bad).expect("write");
        let memo = Memo::open(path.clone(), header());
        assert_eq!(memo.hit(&key), None, "byte {i} changed");
    }
    // Garbage that is not a memo at all.
    std::fs::write(&path, b"not a memo").expect("write");
    assert_eq!(Memo::open(path.clone(), header()).hit(&key), None);
    // And the intact file still answers (the checks above are not vacuous).
    std::fs::write(&path, &bytes).expect("write");
    assert!(Memo::open(path, header()).hit(&key).is_some());
}

#[test]
fn a_foreign_memo_is_a_full_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, key) = saved(dir.path());
    let mut other_ctx = ctx();
    other_ctx.netbox_version = "4.8.0".into();
    let foreign = [
        MemoHeader::new(&url("https://other.example/"), [7; 32], "0.2.0", &ctx()),
        MemoHeader::new(&url("https://netbox.example/"), [8; 32], "0.2.0", &ctx()),
        MemoHeader::new(&url("https://netbox.example/"), [7; 32], "0.3.0", &ctx()),
        MemoHeader {
            host: "0.0.0-other".into(),
            ..header()
        },
        MemoHeader::new(
            &url("https://netbox.example/"),
            [7; 32],
            "0.2.0",
            &other_ctx,
        ),
    ];
    for h in foreign {
        let memo = Memo::open(path.clone(), h.clone());
        // Even the stored digest is not answered under another header.
        assert_eq!(memo.hit(&key), None, "{h:?}");
    }
    assert!(Memo::open(path, header()).hit(&key).is_some());
}

/// What changed, and the guest, NetBox record and packed config (text, ends) with the change.
type Variant = (&'static str, Guest, Option<NetboxVm>, String, Vec<u32>);

#[test]
fn a_changed_byte_in_any_key_part_misses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, key) = saved(dir.path());
    let base = || (guest(), current());
    let mut variants: Vec<Variant> = Vec::new();
    let cfg = || (CONFIG_TEXT.to_string(), CONFIG_ENDS.to_vec());
    let mut add = |what, g: Guest, c: Option<NetboxVm>, (t, e): (String, Vec<u32>)| {
        variants.push((what, g, c, t, e));
    };
    let (mut g, c) = base();
    g.maxmem = Some(8 << 30);
    add("guest maxmem", g, Some(c), cfg());
    let (mut g, c) = base();
    g.node = "pve2".into();
    add("guest node", g, Some(c), cfg());
    let (mut g, c) = base();
    g.maxcpu = Some(2.5);
    add("guest maxcpu", g, Some(c), cfg());
    let (mut g, c) = base();
    g.tags = Some("a;c".into());
    add("guest tags", g, Some(c), cfg());
    let (mut g, c) = base();
    g.config_read = false;
    add("guest config read", g, Some(c), cfg());
    let (g, c) = base();
    add(
        "config value",
        g,
        Some(c),
        ("memory8192cores2".into(), CONFIG_ENDS.to_vec()),
    );
    let (g, c) = base();
    add(
        "config split",
        g,
        Some(c),
        (CONFIG_TEXT.into(), vec![6, 11, 15, 16]),
    );
    let (g, mut c) = base();
    c.memory = Some(2048);
    add("current memory", g, Some(c), cfg());
    let (g, mut c) = base();
    c.tags.push("orphaned".into());
    add("current tags", g, Some(c), cfg());
    let (g, mut c) = base();
    c.custom_fields[0].1 = JsonText("101".into());
    add("current custom field", g, Some(c), cfg());
    let (g, mut c) = base();
    c.description = "x".into();
    add("current description", g, Some(c), cfg());
    let (g, _) = base();
    add("no current", g, None, cfg());
    for (what, g, c, text, ends) in &variants {
        let memo = Memo::open(path.clone(), header());
        let k = key_of(&memo, g, (text, ends), c.as_ref());
        assert_ne!(k.digest, key.digest, "{what}");
        assert_eq!(memo.hit(&k), None, "{what}");
    }
    // Each part of the context is in the key too (through the header and the digest).
    let mut changed = Vec::new();
    let mut c = ctx();
    c.known[0].id = 4;
    changed.push(c);
    let mut c = ctx();
    c.policies[0].ownership = Ownership::Ignore;
    changed.push(c);
    let mut c = ctx();
    c.settings[0].1 = JsonText("\"active\"".into());
    changed.push(c);
    for c in changed {
        assert_ne!(context_hash(&c), context_hash(&ctx()), "{c:?}");
        let h = MemoHeader::new(&url("https://netbox.example/"), [7; 32], "0.2.0", &c);
        let memo = Memo::open(path.clone(), h);
        let k = key_of(
            &memo,
            &guest(),
            (CONFIG_TEXT, CONFIG_ENDS),
            Some(&current()),
        );
        assert_ne!(k.digest, key.digest, "{c:?}");
    }
}

#[test]
fn only_this_runs_entries_are_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, key) = saved(dir.path());
    // A run that does not see the VM (or gets an answer with changes) drops its entry.
    Memo::open(path.clone(), header()).save().expect("save");
    assert_eq!(Memo::open(path, header()).hit(&key), None);
}

#[test]
fn save_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = saved(dir.path());
    let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

/// The key depends on the file's secret: a new memo file (a new secret) keys the same inputs
/// differently, a reopened one the same way, so a stored digest is only ever compared with keys
/// made under its own secret.
#[test]
fn keys_are_under_the_files_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, key) = saved(dir.path());
    let again = |memo: &Memo| key_of(memo, &guest(), (CONFIG_TEXT, CONFIG_ENDS), Some(&current()));
    assert_eq!(again(&Memo::open(path.clone(), header())), key, "reopened");
    let other = tempfile::tempdir().expect("tempdir");
    let fresh = Memo::open(
        Memo::path(other.path(), &url("https://netbox.example/")),
        header(),
    );
    assert_ne!(again(&fresh).digest, key.digest, "another file's secret");
}

/// A batch's keys (made while the inputs of the VMs further on are prefetched) are each VM's
/// key made alone, in order, past the prefetch distances and up to the batch's last VM.
#[test]
fn a_batchs_keys_are_each_vms_key_alone() {
    use crate::pipeline::reconcile::SharedValues;
    let memo = Memo::open(PathBuf::from("unused.memo"), header());
    let mut shared = SharedValues::default();
    let n = 3 * prefetch::RECORDS_AHEAD + 1;
    let guests: Vec<Guest> = (0..n as u32)
        .map(|i| Guest {
            vmid: 100 + i,
            name: Some(format!("web-{i}")),
            ..guest()
        })
        .collect();
    let records: Vec<Option<CompactVm>> = (0..n)
        .map(|i| {
            (i % 3 != 0).then(|| {
                let vm = NetboxVm {
                    id: i as u64,
                    ..current()
                };
                CompactVm::new(vm, &mut shared).expect("fits")
            })
        })
        .collect();
    let answers: Vec<String> = (0..n)
        .map(|i| format!("[{{\"name\":\"eth{i}\"}}]"))
        .collect();
    let unknown = NetworkUnknown {
        reason: UnknownReason::NotRunning,
        detail: String::new(),
    };
    let snap = ChildrenSnapshot::from_json_for_tests(serde_json::json!({"interfaces": []}));
    let items: Vec<KeyInput<'_>> = (0..n)
        .map(|i| {
            let network = if i % 2 == 0 {
                NetworkKey::Agent(&answers[i])
            } else {
                NetworkKey::Unknown(&unknown)
            };
            (
                (1, guests[i].vmid),
                GuestKey::from(&guests[i]),
                (CONFIG_TEXT, CONFIG_ENDS),
                records[i].as_ref(),
                network,
                snap.vm_children(i as u64).filter(|_| i % 4 == 0),
            )
        })
        .collect();
    let alone: Vec<VmKey> = items
        .iter()
        .map(|item| memo.key_with(&mut Vec::new(), item))
        .collect();
    assert_eq!(memo.keys(&items), alone);
    let distinct: std::collections::HashSet<u128> = alone.iter().map(|k| k.digest).collect();
    assert_eq!(
        distinct.len(),
        n,
        "every VM's inputs differ, and so do their keys"
    );
}

/// The file's entries are searched as a sorted list: entries out of order (or a VM twice) are
/// not a memo this host wrote, and read as empty; the same file in order answers.
#[test]
fn entries_out_of_order_are_a_full_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Memo::path(dir.path(), &url("https://netbox.example/"));
    let mut memo = Memo::open(path.clone(), header());
    let keys: Vec<VmKey> = [100u32, 101]
        .iter()
        .map(|&vmid| {
            let mut g = guest();
            g.vmid = vmid;
            key_of(&memo, &g, (CONFIG_TEXT, CONFIG_ENDS), Some(&current()))
        })
        .collect();
    for key in &keys {
        memo.record(key, Some("web"));
    }
    memo.save().expect("save");
    let bytes = std::fs::read(&path).expect("read");
    // Each entry: identity (12), digest (16), a name of 3 bytes (1 + 8 + 3); then the checksum.
    let entry = 12 + 16 + 1 + 8 + 3;
    let body = bytes.len() - 32;
    let (first, second) = (body - 2 * entry, body - entry);
    for (swap, twice) in [(true, false), (false, true)] {
        let mut bad = bytes[..body].to_vec();
        if swap {
            bad[first..body].rotate_left(entry);
        }
        if twice {
            bad.copy_within(first..second, second);
        }
        let sum = Sha256::digest(&bad);
        bad.extend_from_slice(&sum);
        std::fs::write(&path, &bad).expect("write");
        let memo = Memo::open(path.clone(), header());
        assert!(keys.iter().all(|k| memo.hit(k).is_none()), "swap {swap}");
    }
    std::fs::write(&path, &bytes).expect("write");
    let memo = Memo::open(path, header());
    assert!(keys.iter().all(|k| memo.hit(k).is_some()));
}

/// A memo read from a file and recorded into: the file's entries (replaced when recorded
/// again) and the new ones are all found, and all saved.
#[test]
fn entries_read_and_recorded_are_found_and_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Memo::path(dir.path(), &url("https://netbox.example/"));
    let key = |memo: &Memo, vmid: u32, name: &str| {
        let mut g = guest();
        g.vmid = vmid;
        g.name = Some(name.into());
        key_of(memo, &g, (CONFIG_TEXT, CONFIG_ENDS), Some(&current()))
    };
    let mut memo = Memo::open(path.clone(), header());
    for vmid in [100, 102, 104] {
        let k = key(&memo, vmid, "a");
        memo.record(&k, Some("a"));
    }
    memo.save().expect("save");
    let mut memo = Memo::open(path.clone(), header());
    // VM 102 answered again on other inputs; VMs 101 and 105 new.
    let changed = key(&memo, 102, "b");
    memo.record(&changed, Some("b"));
    for vmid in [101, 105] {
        let k = key(&memo, vmid, "c");
        memo.record(&k, Some("c"));
    }
    let old_102 = key(&memo, 102, "a");
    assert_eq!(
        memo.hit(&old_102),
        None,
        "the recorded answer replaced the file's"
    );
    let found = |memo: &Memo| {
        assert_eq!(memo.hit(&key(memo, 100, "a")), Some(Some("a".into())));
        assert_eq!(memo.hit(&key(memo, 102, "b")), Some(Some("b".into())));
        assert_eq!(memo.hit(&key(memo, 105, "c")), Some(Some("c".into())));
        assert_eq!(memo.hit(&key(memo, 101, "c")), Some(Some("c".into())));
    };
    found(&memo);
    assert_eq!(memo.hits(), 4);
    // VM 104 neither hit nor recorded: not saved.
    assert_eq!(memo.len(), 4);
    memo.save().expect("save");
    let memo = Memo::open(path, header());
    found(&memo);
    assert_eq!(memo.hit(&key(&memo, 104, "a")), None);
}

/// One VM's inputs with every kind of child row, large ids, sizes and `last_updated` of each
/// form (micros, a text, none), so that multi-byte numbers and skipped stamps are keyed.
fn golden_children() -> ChildrenSnapshot {
    use serde_json::json;
    let vm = current().id;
    ChildrenSnapshot::from_json_for_tests(json!({
        "interfaces": [
            {"id": 4_000_000_011u64, "virtual_machine": {"id": vm}, "name": "net0", "enabled": false,
             "mtu": 9000, "description": "uplink",
             "mode": {"value": "access", "label": "Access"},
             "untagged_vlan": {"id": 5, "vid": 4094, "name": "v4094"},
             "mac_address": "BC:24:11:2A:3B:4C",
             "tags": [{"id": 1, "name": "pve2netbox", "slug": "pve2netbox"}],
             "last_updated": "2026-01-02T03:04:05.123456Z"},
            {"id": 4_000_000_012u64, "virtual_machine": {"id": vm}, "name": "net1",
             "last_updated": "not a stamp", "mode": {"value": 7}, "enabled": true},
            {"id": 4_000_000_900u64, "virtual_machine": {"id": vm}, "name": "net2",
             "last_updated": null, "mtu": 0}],
        "mac_addresses": [
            {"id": 21, "mac_address": "BC:24:11:2A:3B:4C",
             "assigned_object_type": "virtualization.vminterface",
             "assigned_object_id": 4_000_000_011u64,
             "last_updated": "2026-01-02T03:04:05.123999Z", "tags": ["a", "b"]}],
        "ip_addresses": [
            {"id": 31, "address": "10.0.0.5/24", "vrf": {"id": 3, "name": "blue"},
             "status": {"value": "active", "label": "Active"},
             "assigned_object_type": "virtualization.vminterface",
             "assigned_object_id": 4_000_000_011u64,
             "last_updated": "1999-12-31T23:59:59Z"},
            {"id": 300_000, "address": "2001:db8::5/64",
             "assigned_object_type": "virtualization.vminterface",
             "assigned_object_id": 4_000_000_012u64, "last_updated": "later"}],
        "virtual_disks": [
            {"id": 41, "virtual_machine": {"id": vm}, "name": "scsi0",
             "size": 4_611_686_018_427_387_904u64, "description": "local-lvm",
             "tags": ["pve2netbox"], "last_updated": "2026-01-02T03:04:05Z"},
            {"id": 42, "virtual_machine": {"id": vm}, "name": "scsi1", "size": null}]
    }))
}

/// The bytes a VM's key is made of and its digest under a fixed secret, pinned (taken from
/// the code that wrote the memos in use): how they are written may change, what they are may
/// not, or a stored memo would miss (never hit wrongly: any byte still changes the key).
#[test]
fn the_key_is_the_one_stored_memos_were_keyed_on() {
    use crate::pipeline::reconcile::SharedValues;
    let snap = golden_children();
    let cur = CompactVm::new(current(), &mut SharedValues::default()).expect("fits");
    let g = guest();
    let children = snap.vm_children(cur.id());
    // Every row is the VM's (each kind's last row is rendered).
    let text = children.expect("children read").json();
    for last in ["net2", "BC:24:11:2A:3B:4C", "2001:db8::5/64", "scsi1"] {
        assert!(text.contains(last), "{last} in {text}");
    }
    let network = NetworkKey::Agent("[{\"name\":\"eth0\",\"ip-addresses\":[]}]");
    let mut bytes = Vec::new();
    encode_vm(
        &mut bytes,
        GuestKey::from(&g),
        (CONFIG_TEXT, CONFIG_ENDS),
        Some(&cur),
    );
    encode_children(&mut bytes, network, children);
    assert_eq!(
        (bytes.len(), hex::encode(Sha256::digest(&bytes)).as_str()),
        (
            927,
            "4bfe58a722d01999cbcd59b3f2c48dcfdd5193083f76ef44db2e107276f17171"
        )
    );
    let mut memo = Memo::open(PathBuf::from("unused.memo"), header());
    *memo.secret = [5; SECRET_LEN];
    memo.prefix = b"a fixed run part".to_vec();
    let item = (
        (1, g.vmid),
        GuestKey::from(&g),
        (CONFIG_TEXT, CONFIG_ENDS),
        Some(&cur),
        network,
        children,
    );
    let digest = 0x0f11_e9e7_2bf2_316b_5ebb_d9d2_3a10_b6fc;
    assert_eq!(memo.key_with(&mut Vec::new(), &item).digest, digest);
    assert_eq!(memo.keys(&[item])[0].digest, digest);
}
