//! `DefaultRules::reconcile` (the fused one-pass version) agrees exactly with
//! `model::reconcile_in_three_steps::<DefaultRules>` (normalize-desired, normalize-current and
//! diff as three batches): on every fixture, with and without its current record, and on
//! generated batches of plausible guests, records and contexts.
//!
//! The generators stay close to real data (valid configs mostly, a few broken values and
//! settings), so most cases reach the diff; a separate test checks that they do, so the
//! agreement is not won on skips and errors alone.

use std::path::Path;

use guest_default::DefaultRules;
use guest_default::diff::FIELD_ORDER;
use guest_default::model::{
    Context, Desired, Field, FieldPolicy, Fixture, Guest, GuestKind, JsonReconcileInput, JsonText,
    KnownObject, NetboxVm, Ownership, ReconcileInput, Reconciled, RuleError, RuleSet,
    config_to_json, reconcile_in_three_steps,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

type Results = Vec<Result<Reconciled, RuleError>>;

/// The fused and the three-step answers for the same inputs. The fused answer from the
/// configs as JSON text (`reconcile_json`, what the component runs) must be the fused one.
fn both(ctx: &Context, items: Vec<ReconcileInput>) -> (Results, Results) {
    let as_json = items
        .iter()
        .cloned()
        .map(|mut i| JsonReconcileInput {
            config: config_to_json(&std::mem::take(&mut i.guest.config)),
            guest: i.guest,
            current: i.current,
            network: i.network,
            children: i.children,
        })
        .collect();
    let from_json = DefaultRules::reconcile_json(ctx, as_json);
    let fused = DefaultRules::reconcile(ctx, items.clone());
    assert_eq!(from_json, fused, "reconcile_json differs from reconcile");
    let steps = reconcile_in_three_steps::<DefaultRules>(ctx, items);
    (fused, steps)
}

/// What kinds of answer a set of results holds, to show the comparisons are not vacuous.
#[derive(Debug, Default)]
struct Seen {
    named: usize,
    unnamed: usize,
    with_changes: usize,
    no_changes: usize,
    with_needs: usize,
    with_children: usize,
    skips: usize,
    errors: usize,
}

impl Seen {
    fn add(&mut self, results: &Results) {
        for r in results {
            match r {
                Ok(Reconciled::Vm(v)) => {
                    if v.name.is_some() {
                        self.named += 1;
                    } else {
                        self.unnamed += 1;
                    }
                    if v.changes.is_empty() {
                        self.no_changes += 1;
                    } else {
                        self.with_changes += 1;
                    }
                    if !v.needs.is_empty() {
                        self.with_needs += 1;
                    }
                    if !v.children.is_empty() {
                        self.with_children += 1;
                    }
                }
                Ok(Reconciled::Skip(_)) => self.skips += 1,
                Err(_) => self.errors += 1,
            }
        }
    }
}

fn fixtures() -> Vec<(String, Fixture)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let text = std::fs::read_to_string(path).expect("fixture text");
            let fixture =
                Fixture::from_json(&text).unwrap_or_else(|e| panic!("{name}: not a fixture: {e}"));
            (name.into_owned(), fixture)
        })
        .collect()
}

#[test]
fn fused_agrees_with_three_steps_on_every_fixture() {
    let all = fixtures();
    assert!(all.len() >= 30, "expected at least 30 fixtures");
    let mut seen = Seen::default();
    let mut with_current = 0;
    for (name, f) in &all {
        let ctx = f.effective_context(DefaultRules::default_policies());
        let with = ReconcileInput {
            guest: f.guest.clone(),
            current: f.current.clone(),
            network: f.network.clone().unwrap_or_default(),
            children: f.children.clone(),
        };
        let without = ReconcileInput {
            guest: f.guest.clone(),
            current: None,
            network: f.network.clone().unwrap_or_default(),
            children: None,
        };
        with_current += usize::from(f.current.is_some());
        // One guest per call, then both in one batch (the batch must not mix them up).
        for items in [
            vec![with.clone()],
            vec![without.clone()],
            vec![with, without],
        ] {
            let (fused, steps) = both(&ctx, items);
            assert_eq!(fused, steps, "{name}: fused reconcile differs");
            seen.add(&fused);
        }
    }
    assert!(with_current >= 10, "too few fixtures with a current record");
    assert!(
        seen.named > 0
            && seen.with_changes > 0
            && seen.no_changes > 0
            && seen.with_needs > 0
            && seen.with_children > 0
            && seen.skips > 0
            && seen.errors > 0,
        "fixtures should reach every kind of answer: {seen:?}"
    );
}

/// All fixtures sharing one context in one batch: the per-batch preparation serves every item.
#[test]
fn fused_agrees_on_one_batch_of_every_fixture() {
    let ctx = Context {
        policies: DefaultRules::default_policies(),
        ..Context::default()
    };
    let items: Vec<_> = fixtures()
        .into_iter()
        .flat_map(|(_, f)| {
            [
                ReconcileInput {
                    guest: f.guest.clone(),
                    current: f.current,
                    network: f.network.clone().unwrap_or_default(),
                    children: f.children,
                },
                ReconcileInput {
                    guest: f.guest,
                    current: None,
                    network: f.network.unwrap_or_default(),
                    children: None,
                },
            ]
        })
        .collect();
    let n = items.len();
    let (fused, steps) = both(&ctx, items);
    assert_eq!(fused.len(), n);
    assert_eq!(fused, steps);
}

// ---------------------------------------------------------------------------------------------
// Generated batches
// ---------------------------------------------------------------------------------------------

fn texts(values: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(values.to_vec())
        .prop_map(str::to_owned)
        .boxed()
}

/// Config properties the default rules read, mostly well formed, a few broken
/// (`bad-config`, `bad-disk-size`) or odd.
fn config_pair() -> impl Strategy<Value = (String, String)> {
    prop::sample::select(vec![
        ("name", "cfg-name"),
        ("hostname", "ct01"),
        ("memory", "4096"),
        ("memory", "current=2048"),
        ("memory", "lots"),
        ("cores", "2"),
        ("cores", "4"),
        ("sockets", "2"),
        ("vcpus", "3"),
        ("cpulimit", "1.5"),
        ("cpulimit", "0.001"),
        ("ostype", "l26"),
        ("ostype", "win11"),
        ("ostype", "debian"),
        ("ostype", "plan9"),
        ("description", "web frontend\nowner: ops\n"),
        ("description", "one line"),
        ("description", "```netbox-metadata\nx: 1\n```\nkept"),
        ("onboot", "1"),
        ("onboot", "0"),
        ("tags", "prod;web"),
        (
            "smbios1",
            "uuid=6c8f1e2a-1b2c-4d3e-8f90-a1b2c3d4e5f6,manufacturer=x",
        ),
        ("scsi0", "local-lvm:vm-100-disk-0,iothread=1,size=32G"),
        ("scsi1", "ceph:vm-100-disk-1,discard=on,size=1.5T"),
        ("ide2", "none,media=cdrom"),
        ("efidisk0", "local-lvm:vm-100-disk-2,efitype=4m,size=4M"),
        ("virtio0", "local:100/vm-100-disk-0.qcow2,size=10G"),
        ("unused0", "local-lvm:vm-100-disk-9"),
        ("rootfs", "local-lvm:subvol-100-disk-0,size=8G"),
        ("mp0", "local-lvm:subvol-100-disk-1,mp=/data,size=100G"),
        ("mp1", "/srv/bind,mp=/bind"),
        ("sata0", "local:vm-100-disk-3,size=12Q"),
        // NICs, a few broken: their `bad-config` must come from `reconcile` also when the
        // children are not compared (an existing VM whose children were not read).
        ("net0", "virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1"),
        ("net1", "e1000=bc:24:11:00:00:01,bridge=vmbr1,tag=10"),
        (
            "net0",
            "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5D:6E:7F,ip=dhcp,type=veth",
        ),
        ("net2", "virtio=not-a-mac,bridge=vmbr0"),
        ("net1", "virtio=BC:24:11:00:00:02,tag=99999"),
        ("ipconfig0", "ip=10.0.0.5/24,gw=10.0.0.1"),
        ("ipconfig1", "ip=10.0.0.999/24"),
    ])
    .prop_map(|(k, v)| (k.to_owned(), v.to_owned()))
}

fn guest() -> impl Strategy<Value = Guest> {
    (
        (
            texts(&["prod", "lab"]),
            100u32..106,
            prop_oneof![Just(GuestKind::Qemu), Just(GuestKind::Lxc)],
            texts(&["pve1", "pve2"]),
            prop::option::weighted(
                0.8,
                texts(&[
                    "web01",
                    "db-1",
                    "acme-app",
                    "",
                    "  ",
                    "a-name-that-is-much-too-long-for-netbox-which-allows-64-characters-only",
                ]),
            ),
            texts(&["running", "stopped", "paused", "unknown"]),
            prop::bool::weighted(0.15),
        ),
        (
            prop::option::of(prop::sample::select(vec![0.0, 0.5, 1.0, 2.0, 4.0, 1.555])),
            prop::option::of(prop::sample::select(vec![
                0u64,
                536_870_912,
                4_294_967_296,
                1_000_000_000,
            ])),
            prop::option::of(prop::sample::select(vec![0u64, 34_359_738_368])),
            prop::option::of(texts(&["prod;web", "Prod, web  db", "", "role-db;x y"])),
            prop::option::of(texts(&["prod"])),
            prop::collection::vec(config_pair(), 0..10),
            prop::bool::weighted(0.85),
        ),
    )
        .prop_map(
            |(
                (cluster, vmid, kind, node, name, status, template),
                (maxcpu, maxmem, maxdisk, tags, pool, config, config_read),
            )| Guest {
                cluster,
                vmid,
                kind,
                node,
                name,
                status,
                template,
                maxcpu,
                maxmem,
                maxdisk,
                tags,
                pool,
                // A config that was not read is `{}` on the wire.
                config: if config_read { config } else { Vec::new() },
                config_read,
            },
        )
}

fn opt(values: &[&'static str]) -> BoxedStrategy<Option<String>> {
    prop::option::of(texts(values)).boxed()
}

/// A NetBox record, often close to what the rules want, sometimes far from it.
fn record() -> impl Strategy<Value = NetboxVm> {
    let custom_field = (
        texts(&[
            "proxmox_vm_id",
            "proxmox_vm_type",
            "proxmox_node",
            "proxmox_tags",
            "site_owner",
        ]),
        prop::sample::select(vec![
            "100",
            "101",
            "\"qemu\"",
            "\"lxc\"",
            "\"pve1\"",
            "\"pve2\"",
            "null",
            "\"prod;web\"",
            "\"\"",
            "7",
        ])
        .prop_map(|s| JsonText(s.to_owned())),
    );
    (
        (
            1u64..50,
            texts(&["web01", "db-1", "old-name", ""]),
            texts(&["active", "offline", "paused", "planned"]),
            opt(&["prod", "lab"]),
            opt(&["dc1", "dc2"]),
            opt(&["pve1", "pve2"]),
            opt(&["virtual-machine-qemu", "container-lxc", "db"]),
            opt(&["virtual-machine-qemu", "container-lxc"]),
            opt(&["linux", "windows-11", "other"]),
            opt(&["acme"]),
        ),
        (
            prop::option::of(prop::sample::select(vec![0.5, 1.0, 2.0, 4.0, 1.56])),
            prop::option::of(prop::sample::select(vec![512u64, 2048, 4096, 953])),
            prop::option::of(prop::sample::select(vec![32_768u64, 544_772, 8192])),
            texts(&["", "web frontend", "one line"]),
            texts(&["", "web frontend\nowner: ops"]),
            texts(&["", "6c8f1e2a-1b2c-4d3e-8f90-a1b2c3d4e5f6"]),
            opt(&["on", "off", "laststate"]),
            prop::collection::vec(
                texts(&["prod", "web", "db", "pve2netbox", "operator"]),
                0..5,
            ),
            prop::collection::vec(custom_field, 0..6),
        ),
    )
        .prop_map(
            |(
                (id, name, status, cluster, site, device, role, vm_type, platform, tenant),
                (
                    vcpus,
                    memory,
                    disk,
                    description,
                    comments,
                    serial,
                    start_on_boot,
                    tags,
                    custom_fields,
                ),
            )| NetboxVm {
                id,
                name,
                status,
                cluster,
                site,
                device,
                role,
                vm_type,
                platform,
                tenant,
                vcpus,
                memory,
                disk,
                description,
                comments,
                serial,
                start_on_boot,
                tags,
                custom_fields,
                last_updated: None,
            },
        )
}

fn ownership() -> impl Strategy<Value = Ownership> {
    prop_oneof![
        Just(Ownership::Owned),
        Just(Ownership::Merge),
        Just(Ownership::Seed),
        Just(Ownership::Ignore),
    ]
}

/// The module's defaults with a few overrides, a NetBox version per mapping era, some known
/// objects, and settings that are rarely wrong (a wrong one fails the whole batch).
fn context() -> impl Strategy<Value = Context> {
    let policy_field = prop::sample::select(
        FIELD_ORDER
            .iter()
            .copied()
            .chain([
                "custom_fields.proxmox_tags",
                "custom_fields.proxmox_node",
                "custom_fields.site_owner",
            ])
            .collect::<Vec<_>>(),
    )
    .prop_map(str::to_owned);
    let known = prop::sample::subsequence(
        vec![
            ("platform", "linux"),
            ("vm-type", "virtual-machine-qemu"),
            ("vm-type", "container-lxc"),
            ("role", "virtual-machine-qemu"),
            ("tag", "pve2netbox"),
            ("tag", "prod"),
            ("tag", "web"),
            ("tenant", "acme"),
        ],
        0..=8,
    );
    let good_setting = prop::sample::select(vec![
        ("template_status", "\"planned\""),
        ("skip_templates", "true"),
        ("skip_templates", "false"),
        ("site", "\"dc1\""),
        ("tenant", "\"acme\""),
        ("tenant", "\"\""),
    ]);
    let bad_setting = prop::sample::select(vec![
        ("template_status", "\"gone\""),
        ("skip_templates", "1"),
        ("site", "7"),
    ]);
    (
        texts(&["4.4.0", "4.5.1", "4.6.0", "4.7.3"]),
        known,
        prop::collection::vec((policy_field, ownership()), 0..4),
        prop::collection::vec(good_setting, 0..3),
        prop::option::weighted(0.05, bad_setting),
    )
        .prop_map(|(netbox_version, known, overrides, good, bad)| {
            let overrides: Vec<_> = overrides
                .into_iter()
                .map(|(field, ownership)| FieldPolicy { field, ownership })
                .collect();
            Context {
                netbox_version,
                known: known
                    .into_iter()
                    .enumerate()
                    .map(|(i, (kind, key))| KnownObject {
                        kind: kind.to_owned(),
                        key: key.to_owned(),
                        id: i as u64 + 1,
                        name: key.to_owned(),
                    })
                    .collect(),
                policies: guest_default::model::merge_policies(
                    DefaultRules::default_policies(),
                    &overrides,
                ),
                settings: good
                    .into_iter()
                    .chain(bad)
                    .map(|(k, v)| (k.to_owned(), JsonText(v.to_owned())))
                    .collect(),
            }
        })
}

/// The NetBox record that holds exactly what the rules want for `guest` (`keep` fields get a
/// value of their own), so a batch also has VMs already in step; `None` for a skip or an error.
fn record_in_step(ctx: &Context, guest: &Guest) -> Option<NetboxVm> {
    let desired = DefaultRules::normalize_desired(ctx, vec![guest.clone()]);
    let Some(Ok(Desired::Vm(d))) = desired.into_iter().next() else {
        return None;
    };
    let vm = d.vm;
    let text = |f: Field<String>| match f {
        Field::Set(s) => s,
        Field::Keep | Field::Clear => String::new(),
    };
    let opt = |f: Field<String>| match f {
        Field::Set(s) => Some(s),
        Field::Keep => Some("kept".to_owned()),
        Field::Clear => None,
    };
    Some(NetboxVm {
        id: 1,
        name: text(vm.name),
        status: text(vm.status),
        cluster: Some(guest.cluster.clone()),
        site: opt(vm.site),
        device: opt(vm.device),
        role: opt(vm.role),
        vm_type: opt(vm.vm_type),
        platform: opt(vm.platform),
        tenant: opt(vm.tenant),
        vcpus: vm.vcpus.as_set().copied(),
        memory: vm.memory.as_set().copied(),
        disk: vm.disk.as_set().copied(),
        description: text(vm.description),
        comments: text(vm.comments),
        serial: text(vm.serial),
        start_on_boot: opt(vm.start_on_boot),
        tags: vm.tags.as_set().cloned().unwrap_or_default(),
        custom_fields: vm
            .custom_fields
            .into_iter()
            .map(|(n, f)| match f {
                Field::Set(j) => (n, j),
                Field::Keep | Field::Clear => (n, JsonText::null()),
            })
            .collect(),
        last_updated: None,
    })
}

/// Which record a generated guest is matched with.
#[derive(Clone, Debug)]
enum Current {
    /// The VM does not exist yet.
    Absent,
    /// A record unrelated to the guest.
    Other(Box<NetboxVm>),
    /// The record of a VM in step with the guest.
    InStep,
}

/// A context and a batch of guests, each with or without a matched record.
fn batch() -> impl Strategy<Value = (Context, Vec<ReconcileInput>)> {
    let current = prop_oneof![
        2 => Just(Current::Absent),
        2 => record().prop_map(|r| Current::Other(Box::new(r))),
        1 => Just(Current::InStep),
    ];
    (context(), prop::collection::vec((guest(), current), 0..8)).prop_map(|(ctx, items)| {
        let items = items
            .into_iter()
            .map(|(guest, current)| {
                let current = match current {
                    Current::Absent => None,
                    Current::Other(r) => Some(*r),
                    Current::InStep => record_in_step(&ctx, &guest),
                };
                ReconcileInput {
                    guest,
                    current,
                    ..ReconcileInput::default()
                }
            })
            .collect();
        (ctx, items)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fused_agrees_with_three_steps_on_generated_batches((ctx, items) in batch()) {
        let n = items.len();
        let (fused, steps) = both(&ctx, items);
        prop_assert_eq!(fused.len(), n);
        prop_assert_eq!(fused, steps);
    }
}

/// The generated batches reach every kind of answer in good numbers, so the property above
/// compares diffs, names and needs, not only skips and errors.
#[test]
fn generated_batches_reach_every_kind_of_answer() {
    let mut runner = TestRunner::deterministic();
    let strategy = batch();
    let mut seen = Seen::default();
    for _ in 0..300 {
        let (ctx, items) = strategy
            .new_tree(&mut runner)
            .expect("a generated batch")
            .current();
        seen.add(&DefaultRules::reconcile(&ctx, items));
    }
    let total = seen.named + seen.unnamed + seen.skips + seen.errors;
    assert!(
        seen.named * 2 > total
            && seen.unnamed > 0
            && seen.with_changes * 3 > total
            && seen.no_changes > 0
            && seen.with_needs > 0
            && seen.with_children > 0
            && seen.skips > 0
            && seen.errors > 0,
        "{seen:?}"
    );
}

/// Settings are read once per batch: a bad one fails every item of the fused call with the same
/// error as the three steps, including items that would otherwise be skipped.
#[test]
fn a_bad_setting_fails_every_item_alike() {
    let ctx = Context {
        settings: vec![("skip_templates".into(), JsonText("\"yes\"".into()))],
        policies: DefaultRules::default_policies(),
        ..Context::default()
    };
    let template = Guest {
        cluster: "prod".into(),
        vmid: 100,
        node: "pve1".into(),
        name: Some("web01".into()),
        status: "stopped".into(),
        template: true,
        config_read: true,
        ..Guest::default()
    };
    let plain = Guest {
        template: false,
        ..template.clone()
    };
    let items = vec![
        ReconcileInput {
            guest: template,
            ..ReconcileInput::default()
        },
        ReconcileInput {
            guest: plain,
            current: Some(NetboxVm::default()),
            ..ReconcileInput::default()
        },
    ];
    let (fused, steps) = both(&ctx, items);
    assert_eq!(fused, steps);
    for r in &fused {
        assert!(
            matches!(r, Err(e) if e.code == "bad-setting" && e.message.contains("skip_templates")),
            "{r:?}"
        );
    }
}
