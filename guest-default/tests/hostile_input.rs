//! Hostile and broken input never panics the default rules: property tests over the public
//! entry points (the `RuleSet` trait, the lenient serde of raw Proxmox rows and raw NetBox
//! records, and the JSON helpers of `model`).
//!
//! The parsers themselves (property strings, sizes, memory, CPUs, tags, notes) are private;
//! they are reached through `normalize-desired` with configs full of odd values, which is how
//! the host reaches them too. Besides "no panic", each property checks what the output
//! promises: one result per input, errors with a code and a message, JSON text that is JSON,
//! tag slugs in NetBox's slug form, a description within NetBox's limit, and exact disk sums
//! for well-formed sizes.

use guest_default::DefaultRules;
use guest_default::diff::FIELD_ORDER;
use guest_default::model::{
    Context, Desired, DiffInput, Field, FieldPolicy, Guest, GuestKind, JsonText, NetboxVm,
    Ownership, RuleError, RuleSet, Vm, format_f64, json_text_eq, parse_bool, push_json_string,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Cases per property: enough to shake out parser edge cases, small enough that the file runs
/// in a few seconds in release.
const CASES: u32 = 1024;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Shrinking stays bounded so a failure reports in seconds.
        max_shrink_iters: 4096,
        // Shrunk failures become unit tests next to the fixed code, not regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Text that numbers, sizes and property strings must survive.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Arbitrary Unicode.
        any::<String>(),
        // Size-shaped: digits, fractions, units, suffixes, in any order.
        "[0-9]{0,25}(\\.[0-9]{0,15})?[KMGTkmgtBbiP ]{0,3}",
        // Numbers far beyond u64/f64, signs, exponents, hex, separators.
        "[-+]?[0-9]{15,45}(\\.[0-9]{0,5})?([eE][-+]?[0-9]{1,4})?",
        prop::sample::select(vec![
            "NaN",
            "nan",
            "inf",
            "-inf",
            "Infinity",
            "1e999",
            "-1e999",
            "1e308",
            "-0",
            "0x10",
            " 12 ",
            "1_000",
            "",
            " ",
            "\u{0}",
            "18446744073709551616",
            "4294967296",
            "1.7976931348623157e308",
            "5e-324",
            "current=",
            "current=,",
            "=",
            ",,,",
            "size=",
            "size=.5G",
            "size=1.G",
            "size=G",
            "size=99999999999999999999T",
            "size=17592186044416T",
            "media=cdrom",
            "```netbox-metadata",
            "```",
        ])
        .prop_map(str::to_owned),
        // Property strings with odd keys and values.
        "([a-z]{0,6}=?[0-9A-Za-z.:/ \u{e9}\u{a0}=]{0,12},?){0,6}",
        // Tag lists with every separator and odd characters.
        "([A-Za-z0-9_.+\u{e9}\u{4e2d}\u{1f600}-]{0,8}[;, \t\n]{0,2}){0,8}",
        // Notes with fences and blank lines.
        "((```netbox-metadata|```|[a-z \u{e9}]{0,20})\n?){0,8}",
        // A long line (NetBox's 200-character description limit, multi-byte characters).
        (any::<char>(), 150usize..400).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// The config keys the default rules read, plus disks and look-alikes.
fn config_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "name",
            "hostname",
            "memory",
            "vcpus",
            "cores",
            "sockets",
            "cpulimit",
            "ostype",
            "description",
            "onboot",
            "tags",
            "smbios1",
            "scsi0",
            "scsi1",
            "ide2",
            "sata0",
            "virtio0",
            "efidisk0",
            "tpmstate0",
            "rootfs",
            "mp0",
            "mp1",
            "unused0",
            "scsihw",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,8}[0-9]{0,3}",
    ]
}

/// A config value: hostile text, or a disk property string with a hostile size.
fn config_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => hostile_text(),
        1 => (hostile_text(), prop::option::of("(cdrom|disk|CDROM)")).prop_map(|(size, media)| {
            match media {
                Some(m) => format!("local-lvm:vm-1-disk-0,media={m},size={size}"),
                None => format!("local-lvm:vm-1-disk-0,iothread=1,size={size}"),
            }
        }),
    ]
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
            1e15,
            0.004,
            0.005,
        ]),
        0.0f64..512.0,
    ]
}

fn guest() -> impl Strategy<Value = Guest> {
    (
        (
            hostile_text(),
            any::<u32>(),
            prop_oneof![Just(GuestKind::Qemu), Just(GuestKind::Lxc)],
            hostile_text(),
            prop::option::of(hostile_text()),
            prop_oneof![
                prop::sample::select(vec!["running", "stopped", "paused", "unknown"])
                    .prop_map(str::to_owned),
                hostile_text(),
            ],
            any::<bool>(),
        ),
        (
            prop::option::of(any_f64()),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
            prop::option::of(hostile_text()),
            prop::option::of(hostile_text()),
            prop::collection::vec((config_key(), config_value()), 0..14),
            any::<bool>(),
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
                config,
                config_read,
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

/// Any JSON value, nested a few levels, with hostile strings and extreme numbers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Non-finite floats are not JSON: `Value::from` makes them `null`.
        any_f64().prop_map(Value::from),
        hostile_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{0,8}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Valid JSON text (custom field values and settings as the host sends them).
fn json_text() -> impl Strategy<Value = JsonText> {
    json_value().prop_map(|v| JsonText::from_value(&v))
}

fn context() -> impl Strategy<Value = Context> {
    let setting_value = prop_oneof![
        3 => json_text(),
        1 => prop::sample::select(vec![
            "\"planned\"", "\"active\"", "true", "false", "\"dc1\"", "\"\"", "null",
        ])
        .prop_map(|s| JsonText(s.to_owned())),
        // Not JSON at all: settings must still give an error value, not a panic.
        1 => hostile_text().prop_map(JsonText),
    ];
    let policy_field = prop_oneof![
        // The fixed fields as `diff` orders them, plus custom fields known and unknown.
        prop::sample::select(
            FIELD_ORDER
                .iter()
                .copied()
                .chain([
                    "custom_fields.proxmox_tags",
                    "custom_fields.proxmox_vm_id",
                    "custom_fields.x",
                ])
                .collect::<Vec<_>>(),
        )
        .prop_map(str::to_owned),
        hostile_text(),
    ];
    (
        prop_oneof![
            prop::sample::select(vec!["4.7.3", "4.6.0", "4.5", "4.2.9", "v4.4", "5.0", ""])
                .prop_map(str::to_owned),
            hostile_text(),
        ],
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "template_status",
                    "skip_templates",
                    "site",
                    "tenant",
                    "other",
                ]),
                setting_value,
            ),
            0..4,
        ),
        prop::collection::vec((policy_field, ownership()), 0..6),
    )
        .prop_map(|(netbox_version, settings, policies)| Context {
            netbox_version,
            known: Vec::new(),
            policies: policies
                .into_iter()
                .map(|(field, ownership)| FieldPolicy { field, ownership })
                .collect(),
            settings: settings
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        })
}

fn text_field() -> impl Strategy<Value = Field<String>> {
    prop_oneof![
        Just(Field::Keep),
        Just(Field::Clear),
        hostile_text().prop_map(Field::Set),
    ]
}

fn field_of<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Field<T>> {
    prop_oneof![
        Just(Field::Keep),
        Just(Field::Clear),
        s.prop_map(Field::Set)
    ]
    .boxed()
}

/// Any comparable VM, custom field values valid JSON.
fn vm() -> impl Strategy<Value = Vm> {
    (
        (
            text_field(),
            text_field(),
            text_field(),
            text_field(),
            text_field(),
            text_field(),
            text_field(),
            text_field(),
        ),
        (
            field_of(any_f64()),
            field_of(any::<u64>()),
            field_of(any::<u64>()),
            text_field(),
            text_field(),
            text_field(),
            text_field(),
            field_of(prop::collection::vec(hostile_text(), 0..5)),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("proxmox_tags".to_owned()),
                        Just("proxmox_vm_id".to_owned()),
                        "[a-z_]{1,8}",
                    ],
                    field_of(json_text()),
                ),
                0..5,
            ),
        ),
    )
        .prop_map(
            |(
                (name, status, site, device, role, vm_type, platform, tenant),
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
            )| Vm {
                name,
                status,
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
            },
        )
}

/// A raw NetBox record as the snapshot reads it: nested objects, choices, odd types.
fn netbox_record_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "id",
        "name",
        "status",
        "cluster",
        "site",
        "device",
        "role",
        "virtual_machine_type",
        "platform",
        "tenant",
        "vcpus",
        "memory",
        "disk",
        "description",
        "comments",
        "serial",
        "start_on_boot",
        "tags",
        "custom_fields",
        "last_updated",
        "config_context",
    ]);
    let value = prop_oneof![
        json_value(),
        prop::sample::select(vec![
            serde_json::json!({"id": 1, "slug": "dc1", "name": "DC 1"}),
            serde_json::json!({"value": "active", "label": "Active"}),
            serde_json::json!({"value": null}),
            serde_json::json!([{"slug": "prod"}, {"name": "x"}, "web", null, 3]),
            serde_json::json!({"proxmox_tags": "a;b", "proxmox_vm_id": "100"}),
            serde_json::json!("2.50"),
            serde_json::json!(2.5),
            serde_json::json!(-1),
        ]),
    ];
    (
        any::<u64>(),
        prop::collection::vec((key, value), 0..12),
        any::<bool>(),
    )
        .prop_map(|(id, pairs, with_id)| {
            let mut m = Map::new();
            if with_id {
                m.insert("id".into(), Value::from(id));
            }
            for (k, v) in pairs {
                m.insert(k.to_owned(), v);
            }
            Value::Object(m)
        })
}

/// A raw `/cluster/resources` row plus `cluster` and `config`, as the host builds it.
fn guest_row_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "cluster",
            "vmid",
            "type",
            "kind",
            "id",
            "node",
            "name",
            "status",
            "template",
            "maxcpu",
            "maxmem",
            "maxdisk",
            "tags",
            "pool",
            "config",
            "config_read",
            "lock",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,6}",
    ];
    let value = prop_oneof![
        json_value(),
        prop::sample::select(vec![
            serde_json::json!("qemu"),
            serde_json::json!("lxc"),
            serde_json::json!("qemu/100"),
            serde_json::json!("lxc/x"),
            serde_json::json!("100"),
            serde_json::json!(4294967296u64),
            serde_json::json!("1e3"),
            serde_json::json!(1.5e300),
            serde_json::json!("NaN"),
        ]),
        prop::collection::vec(
            (config_key(), config_value().prop_map(Value::String)),
            0..10
        )
        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
    ];
    (
        prop::option::of(any::<u32>()),
        prop::option::of(prop::sample::select(vec!["qemu", "lxc", "openvz"])),
        prop::collection::vec((key, value), 0..12),
    )
        .prop_map(|(vmid, kind, pairs)| {
            let mut m = Map::new();
            if let Some(v) = vmid {
                m.insert("vmid".into(), Value::from(v));
            }
            if let Some(k) = kind {
                m.insert("type".into(), Value::from(k));
            }
            for (k, v) in pairs {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

// ---------------------------------------------------------------------------------------------
// Checks of what the rules promise
// ---------------------------------------------------------------------------------------------

fn is_json(text: &JsonText) -> bool {
    serde_json::from_str::<Value>(text.as_str()).is_ok()
}

fn check_error(e: &RuleError) -> Result<(), TestCaseError> {
    prop_assert!(!e.code.is_empty(), "error without a code: {e:?}");
    prop_assert!(
        e.message.contains("guest-default"),
        "error message does not name the module: {e:?}"
    );
    Ok(())
}

/// What a desired VM promises whatever the guest was.
fn check_desired(g: &Guest, d: &Desired) -> Result<(), TestCaseError> {
    let Desired::Vm(d) = d else {
        return Ok(());
    };
    let vm = &d.vm;
    if let Field::Set(n) = &vm.name {
        prop_assert!(!n.trim().is_empty(), "blank name for {g:?}");
        prop_assert!(n.chars().count() <= 64, "name over 64 characters");
    }
    prop_assert!(!matches!(vm.name, Field::Clear), "name cleared");
    if let Field::Set(v) = vm.vcpus {
        prop_assert!(
            v.is_finite() && v > 0.0,
            "vcpus {v} is not a positive number (maxcpu {:?})",
            g.maxcpu
        );
    }
    if let Field::Set(desc) = &vm.description {
        prop_assert!(desc.chars().count() <= 200, "description over 200 chars");
        prop_assert!(!desc.is_empty());
    }
    match &vm.tags {
        Field::Set(tags) => {
            prop_assert!(
                tags.windows(2).all(|w| w[0] < w[1]),
                "tags not sorted/unique"
            );
            prop_assert!(
                tags.iter().any(|t| t == "pve2netbox"),
                "managed tag missing"
            );
            for t in tags {
                prop_assert!(
                    !t.is_empty()
                        && !t.starts_with('-')
                        && !t.ends_with('-')
                        && !t.contains("--")
                        && t.chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '-'),
                    "tag {t:?} is not a slug"
                );
            }
        }
        other => prop_assert!(false, "tags must be set, got {other:?}"),
    }
    for (name, f) in &vm.custom_fields {
        if let Field::Set(j) = f {
            prop_assert!(is_json(j), "custom field {name} is not JSON: {j:?}");
        }
    }
    for spec in &d.needs {
        prop_assert!(!spec.key.is_empty(), "a need without a key: {spec:?}");
        prop_assert!(is_json(&spec.attrs), "attrs not JSON: {spec:?}");
    }
    Ok(())
}

fn run_desired(
    ctx: &Context,
    guests: Vec<Guest>,
) -> Result<Vec<Result<Desired, RuleError>>, TestCaseError> {
    let n = guests.len();
    let out = DefaultRules::normalize_desired(ctx, guests.clone());
    prop_assert_eq!(out.len(), n, "one result per guest");
    for (g, r) in guests.iter().zip(&out) {
        match r {
            Ok(d) => check_desired(g, d)?,
            Err(e) => check_error(e)?,
        }
    }
    Ok(out)
}

fn with_default_policies(mut ctx: Context) -> Context {
    ctx.policies =
        guest_default::model::merge_policies(DefaultRules::default_policies(), &ctx.policies);
    ctx
}

fn check_changes(
    changes: &Result<Vec<guest_default::model::FieldChange>, RuleError>,
) -> Result<(), TestCaseError> {
    match changes {
        Ok(changes) => {
            for c in changes {
                prop_assert!(!c.field.is_empty());
                prop_assert!(
                    is_json(&c.old),
                    "old of {} is not JSON: {:?}",
                    c.field,
                    c.old
                );
                prop_assert!(
                    is_json(&c.new),
                    "new of {} is not JSON: {:?}",
                    c.field,
                    c.new
                );
            }
        }
        Err(e) => check_error(e)?,
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// normalize-desired over guests full of odd config values: one result per guest, never a
    /// panic, each result a VM keeping the promises above or a rule error.
    #[test]
    fn normalize_desired_never_panics(
        ctx in context(),
        guests in prop::collection::vec(guest(), 1..4),
    ) {
        run_desired(&with_default_policies(ctx), guests)?;
    }

    /// The whole native rule path: desired, then current, then diff, with arbitrary policies.
    #[test]
    fn rule_path_never_panics_and_writes_json(
        ctx in context(),
        g in guest(),
        record in prop::option::of(netbox_record_json()),
    ) {
        let ctx = with_default_policies(ctx);
        let desired = run_desired(&ctx, vec![g])?.remove(0);
        let Ok(Desired::Vm(d)) = desired else { return Ok(()); };
        let current = match record.map(serde_json::from_value::<NetboxVm>) {
            None | Some(Err(_)) => None,
            Some(Ok(rec)) => {
                let out = DefaultRules::normalize_current(&ctx, vec![rec]);
                prop_assert_eq!(out.len(), 1);
                match out.into_iter().next() {
                    Some(Ok(vm)) => Some(vm),
                    Some(Err(e)) => { check_error(&e)?; return Ok(()); }
                    None => None,
                }
            }
        };
        let out = DefaultRules::diff(&ctx, vec![DiffInput { desired: d.vm, current }]);
        prop_assert_eq!(out.len(), 1);
        check_changes(&out[0])?;
    }

    /// diff over arbitrary desired/current pairs (NaN and infinite vCPUs, empty and huge text,
    /// `clear` names): a change list of JSON values or a rule error, never a panic.
    #[test]
    fn diff_of_arbitrary_pairs_never_panics(
        ctx in context(),
        pairs in prop::collection::vec((vm(), prop::option::of(vm())), 1..4),
    ) {
        let ctx = with_default_policies(ctx);
        let n = pairs.len();
        let input: Vec<DiffInput> = pairs
            .into_iter()
            .map(|(desired, current)| DiffInput { desired, current })
            .collect();
        let out = DefaultRules::diff(&ctx, input);
        prop_assert_eq!(out.len(), n);
        for r in &out {
            check_changes(r)?;
        }
    }

    /// JSON text that is not JSON (custom field values straight from a broken host): diff
    /// passes it on or errors, it does not panic.
    #[test]
    fn diff_with_invalid_json_text_never_panics(
        ctx in context(),
        mut desired in vm(),
        mut current in vm(),
        junk in prop::collection::vec(("[a-z_]{1,8}", hostile_text()), 1..4),
    ) {
        for (k, v) in &junk {
            desired.custom_fields.push((k.clone(), Field::Set(JsonText(v.clone()))));
            current.custom_fields.push((k.clone(), Field::Set(JsonText(v.clone()))));
        }
        current.custom_fields.push(("proxmox_tags".into(), Field::Set(JsonText(junk[0].1.clone()))));
        let out = DefaultRules::diff(
            &with_default_policies(ctx),
            vec![DiffInput { desired, current: Some(current) }],
        );
        prop_assert_eq!(out.len(), 1);
    }

    /// The lenient serde of a raw Proxmox row (wrong types, nulls, numbers as strings, nested
    /// values where scalars belong) gives a `Guest` or an error, from text and from a value,
    /// and any `Guest` it gives goes through normalize-desired.
    #[test]
    fn raw_guest_rows_deserialize_or_error(row in guest_row_json(), ctx in context()) {
        let text = row.to_string();
        let from_text = serde_json::from_str::<Guest>(&text);
        let from_value = serde_json::from_value::<Guest>(row);
        prop_assert_eq!(from_text.is_ok(), from_value.is_ok(), "text and value paths agree");
        if let Ok(g) = from_text {
            // Not compared whole: serde_json may read a float's text one ulp away from the
            // value it printed, which shows in a nested value kept as text.
            let v = from_value.as_ref().ok();
            prop_assert_eq!(v.map(|v| (v.vmid, v.kind)), Some((g.vmid, g.kind)));
            // A Guest serializes back to a row that reads the same.
            let again = serde_json::to_string(&g).expect("a Guest serializes");
            let back: Guest = serde_json::from_str(&again).expect("its own JSON reads back");
            prop_assert_eq!(back.vmid, g.vmid);
            prop_assert_eq!(back.kind, g.kind);
            run_desired(&with_default_policies(ctx), vec![g])?;
        }
    }

    /// The lenient serde of a raw NetBox record, then normalize-current.
    #[test]
    fn raw_netbox_records_deserialize_or_error(rec in netbox_record_json(), ctx in context()) {
        let text = rec.to_string();
        let from_text = serde_json::from_str::<NetboxVm>(&text);
        let from_value = serde_json::from_value::<NetboxVm>(rec);
        prop_assert_eq!(from_text.is_ok(), from_value.is_ok(), "text and value paths agree");
        if let Ok(r) = from_text {
            for (name, v) in &r.custom_fields {
                prop_assert!(is_json(v), "custom field {name} is not JSON: {v:?}");
            }
            let out = DefaultRules::normalize_current(&with_default_policies(ctx), vec![r]);
            prop_assert_eq!(out.len(), 1);
        }
    }

    /// Arbitrary text as a row, a record, or any model type: an error, never a panic.
    #[test]
    fn arbitrary_text_is_an_error_not_a_panic(text in prop_oneof![
        any::<String>(),
        "[\\[\\]{}\":,0-9a-z ]{0,64}",
    ]) {
        let _ = serde_json::from_str::<Guest>(&text);
        let _ = serde_json::from_str::<NetboxVm>(&text);
        let _ = serde_json::from_str::<Vm>(&text);
        let _ = serde_json::from_str::<Context>(&text);
        let _ = serde_json::from_str::<Desired>(&text);
        let _ = guest_default::model::Fixture::from_json(&text);
    }

    /// Well-formed sizes give the exact disk total (each disk rounded up to MiB): the size
    /// parser neither overflows nor loses bytes on the sizes PVE prints.
    #[test]
    fn disk_sizes_sum_exactly(
        sizes in prop::collection::vec((1u64..1_000_000, 0usize..5), 1..5),
    ) {
        const UNITS: [(&str, u64); 5] = [("", 1), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)];
        let mut config = Vec::new();
        let mut want: u64 = 0;
        for (i, (n, u)) in sizes.iter().enumerate() {
            let (unit, mult) = UNITS[*u];
            config.push((format!("scsi{i}"), format!("local:vm-1-disk-{i},size={n}{unit}")));
            want += (n * mult).div_ceil(1 << 20);
        }
        let g = Guest { vmid: 100, node: "pve1".into(), config, config_read: true, ..Guest::default() };
        let out = DefaultRules::normalize_desired(&Context::default(), vec![g]);
        match &out[0] {
            Ok(Desired::Vm(d)) => prop_assert_eq!(&d.vm.disk, &Field::Set(want)),
            other => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    /// Strings escape to JSON that reads back as the same string; JSON text helpers never panic.
    #[test]
    fn json_helpers_round_trip(s in any::<String>(), t in hostile_text(), f in any_f64()) {
        let mut out = String::new();
        push_json_string(&mut out, &s);
        prop_assert_eq!(serde_json::from_str::<String>(&out).ok(), Some(s.clone()));
        let j = JsonText::string(&s);
        prop_assert_eq!(j.as_string_value(), Some(s));
        let raw = JsonText(t.clone());
        let _ = raw.to_value();
        let _ = raw.is_null();
        let _ = json_text_eq(&t, raw.as_str());
        let _ = parse_bool(&t);
        let printed = format_f64(f);
        if f.is_finite() {
            let back: f64 = printed.parse().expect("a finite float prints as a number");
            prop_assert!(back == f || (back - f).abs() <= f.abs() * 1e-15, "{f} -> {printed}");
        } else {
            prop_assert!(is_json(&JsonText(printed.clone())), "{f} prints as {printed:?}, not JSON");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deep nesting and size
// ---------------------------------------------------------------------------------------------

/// Nesting far beyond serde_json's recursion limit in every lenient slot: an error (or a value
/// kept as text), never a stack overflow.
#[test]
fn deeply_nested_values_are_refused_or_kept_as_text() {
    for depth in [10usize, 100, 126, 127, 128, 129, 1_000, 100_000] {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let nested_obj = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        for (slot, value) in [
            ("name", &nested),
            ("maxcpu", &nested_obj),
            ("tags", &nested),
        ] {
            let row = format!(r#"{{"vmid":100,"type":"qemu","{slot}":{value}}}"#);
            let _ = serde_json::from_str::<Guest>(&row);
        }
        let row = format!(r#"{{"vmid":100,"type":"qemu","config":{{"description":{nested}}}}}"#);
        if let Ok(g) = serde_json::from_str::<Guest>(&row) {
            let out = DefaultRules::normalize_desired(&Context::default(), vec![g]);
            assert_eq!(out.len(), 1);
        }
        for slot in ["site", "tags", "custom_fields", "status", "vcpus"] {
            let rec = format!(r#"{{"id":1,"{slot}":{nested}}}"#);
            let _ = serde_json::from_str::<NetboxVm>(&rec);
        }
    }
}

/// A 4 MB note and a 4 MB tag string go through normalize-desired: the description is cut to
/// NetBox's limit, the note goes to comments whole.
#[test]
fn huge_notes_and_tags_are_handled() {
    let note = format!("{}\nsecond line", "é".repeat(2 << 20));
    let tags = "tag;".repeat(1 << 20);
    let g = Guest {
        vmid: 100,
        node: "pve1".into(),
        name: Some("web".into()),
        tags: Some(tags),
        config: vec![("description".into(), note.clone())],
        config_read: true,
        ..Guest::default()
    };
    let out = DefaultRules::normalize_desired(&Context::default(), vec![g]);
    let Ok(Desired::Vm(d)) = &out[0] else {
        panic!("{:?}", out[0]);
    };
    assert_eq!(
        d.vm.description.as_set().map(|s| s.chars().count()),
        Some(200)
    );
    assert_eq!(d.vm.comments, Field::Set(note));
    assert_eq!(
        d.vm.tags,
        Field::Set(vec!["pve2netbox".to_owned(), "tag".to_owned()])
    );
}
