//! The hand-written `reconcile` against wit-bindgen's generated one, natively: the same batch
//! lowered in 0.4's layout (as the host lowers it) goes through both exports, and the answers
//! each writes are read back and compared with the rules' own answers. The generated glue is
//! the reference: if the layout here were wrong, its answers would not read back either.

use std::alloc::{Layout, alloc, dealloc};

use super::layout::{
    CC, CUSTOM_FIELD, CUSTOM_FIELDS, ERR, FC, FIELD_NAMES, G, I, KNOWN, OTHER, P, PAIR, POLICY, R,
    RESULT, SPEC, VM,
};
use super::lift::{get, ptr_len};
use super::lower::{field_case, put_list, set};
use super::*;
use crate::children as c;
use crate::component::Component;
use crate::component::bindings::exports::pve2netbox::rules::reconcile as generated;
use crate::model::{
    Context, Desired, DiffInput, FieldChange, FieldPolicy, Guest, JsonReconcileInput, JsonText,
    KnownObject, ModuleInfo, NetboxVm, Ownership, Reconciled, ReconciledVm, RuleError, Vm,
};

/// Rules whose answers show every input field they were given, and use every answer shape.
struct Echo;

impl RuleSet for Echo {
    fn info() -> ModuleInfo {
        ModuleInfo {
            name: "echo".into(),
            version: "0".into(),
            wit_version: "0.4.0".into(),
        }
    }

    fn default_policies() -> Vec<FieldPolicy> {
        Vec::new()
    }

    fn normalize_desired(_: &Context, g: Vec<Guest>) -> Vec<Result<Desired, RuleError>> {
        g.iter().map(|_| Ok(Desired::Skip(String::new()))).collect()
    }

    fn normalize_current(_: &Context, r: Vec<NetboxVm>) -> Vec<Result<Vm, RuleError>> {
        r.iter().map(|_| Ok(Vm::default())).collect()
    }

    fn diff(_: &Context, p: Vec<DiffInput>) -> Vec<Result<Vec<FieldChange>, RuleError>> {
        p.iter().map(|_| Ok(Vec::new())).collect()
    }

    fn reconcile_json(ctx: &Context, items: Vec<JsonReconcileInput>) -> Vec<Answer> {
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| answer(ctx, i, item))
            .collect()
    }
}

fn change(field: &str, old: &str, new: &str) -> FieldChange {
    FieldChange {
        field: field.into(),
        old: JsonText(old.into()),
        new: JsonText(new.into()),
    }
}

/// The answer of input `i`: its whole input and the context as text, in every shape by turns.
fn answer(ctx: &Context, i: usize, item: JsonReconcileInput) -> Answer {
    let seen = format!("{ctx:?} {item:?}");
    match i % 3 {
        0 => {
            let mut changes: Vec<FieldChange> = FIELD_NAMES
                .iter()
                .enumerate()
                .map(|(n, f)| change(f, if n % 2 == 0 { "null" } else { "\"x\"" }, &seen))
                .collect();
            changes.push(change("custom_fields.proxmox_vm_id", "null", "7"));
            changes.push(change("custom_fields.", "1", "2"));
            changes.push(change("local_context_data", "{}", "é"));
            changes.push(change("", "", ""));
            let kids = [
                (c::ChildKind::Interface, c::ChildOp::Create, None),
                (
                    c::ChildKind::MacAddress,
                    c::ChildOp::Update(u64::MAX),
                    Some("net0"),
                ),
                (c::ChildKind::IpAddress, c::ChildOp::Delete(3), Some("")),
                (c::ChildKind::VirtualDisk, c::ChildOp::Update(1 << 40), None),
            ];
            Ok(Reconciled::Vm(ReconciledVm {
                name: item.guest.name.clone(),
                needs: ctx
                    .known
                    .iter()
                    .map(|k| model::ObjectSpec {
                        kind: k.kind.clone(),
                        key: k.key.clone(),
                        name: seen.clone(),
                        attrs: JsonText("{}".into()),
                    })
                    .collect(),
                changes: changes.clone(),
                children: kids
                    .into_iter()
                    .enumerate()
                    .map(|(n, (kind, op, parent))| c::ChildChange {
                        kind,
                        key: format!("key{n}"),
                        parent: parent.map(str::to_owned),
                        op,
                        changes: changes[..n * 3].to_vec(),
                    })
                    .collect(),
            }))
        }
        1 => Ok(Reconciled::Skip(seen)),
        _ => Err(RuleError::new("echo", seen)),
    }
}

fn context() -> Context {
    Context {
        netbox_version: "4.7.3".into(),
        known: vec![
            KnownObject {
                kind: "site".into(),
                key: "dc1".into(),
                id: 1 << 33,
                name: "DC 1".into(),
            },
            KnownObject {
                kind: "tag".into(),
                key: "".into(),
                id: 0,
                name: "ノード".into(),
            },
        ],
        policies: [
            Ownership::Owned,
            Ownership::Merge,
            Ownership::Seed,
            Ownership::Ignore,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, ownership)| FieldPolicy {
            field: format!("f{i}"),
            ownership,
        })
        .collect(),
        settings: vec![("template_status".into(), JsonText("\"planned\"".into()))],
    }
}

/// The shared texts the batch refers to by index.
const TEXTS: [&str; 8] = [
    "prod", "pve1", "running", "web;db", "pool-a", "active", "", "ü",
];

/// `(index, input)`: the batch's inputs, in the model with their texts' indexes.
fn inputs() -> Vec<(Indexes, JsonReconcileInput)> {
    let networks = [
        c::NetworkSource::Agent(JsonText("[{\"name\":\"eth0\"}]".into())),
        c::NetworkSource::LxcInterfaces(JsonText("[]".into())),
        c::NetworkSource::Unknown(c::NetworkUnknown {
            reason: c::UnknownReason::AgentNotRunning,
            detail: "QEMU guest agent is not running".into(),
        }),
        c::NetworkSource::Unknown(c::NetworkUnknown {
            reason: c::UnknownReason::OtherError,
            detail: String::new(),
        }),
    ];
    (0..8u32)
        .map(|i| {
            let t = |n: u32| TEXTS[n as usize].to_owned();
            let full = i % 2 == 0;
            let ix = Indexes {
                tags: full.then_some(3),
                pool: full.then_some(4),
                record_opts: [0, 1, 6, 7, 2, 3, 4].map(|n| full.then_some(n)),
                start_on_boot: full.then_some(7),
                tags_list: if full { vec![3, 6, 7] } else { Vec::new() },
                custom_fields: if full {
                    vec![(0, 5), (6, 7)]
                } else {
                    Vec::new()
                },
            };
            let guest = Guest {
                cluster: t(0),
                vmid: 100 + i,
                kind: if i % 3 == 0 {
                    model::GuestKind::Lxc
                } else {
                    model::GuestKind::Qemu
                },
                node: t(1),
                name: full.then(|| format!("vm{i}")),
                status: t(2),
                template: i % 4 == 1,
                maxcpu: full.then_some(1.5),
                maxmem: full.then_some(u64::MAX - i as u64),
                maxdisk: (i % 3 == 1).then_some(1 << 35),
                tags: ix.tags.map(t),
                pool: ix.pool.map(t),
                config: Vec::new(),
                config_read: i % 4 != 3,
            };
            let current = (i % 4 != 2).then(|| NetboxVm {
                id: (1 << 40) + i as u64,
                name: format!("vm{i}-nb"),
                status: t(5),
                cluster: ix.record_opts[0].map(t),
                site: ix.record_opts[1].map(t),
                device: ix.record_opts[2].map(t),
                role: ix.record_opts[3].map(t),
                vm_type: ix.record_opts[4].map(t),
                platform: ix.record_opts[5].map(t),
                tenant: ix.record_opts[6].map(t),
                vcpus: full.then_some(2.25),
                memory: full.then_some(4096),
                disk: (i % 3 == 0).then_some(u64::MAX),
                description: if full { "a VM".into() } else { String::new() },
                comments: if full {
                    "ノード".into()
                } else {
                    String::new()
                },
                serial: if i == 4 { "S1".into() } else { String::new() },
                start_on_boot: ix.start_on_boot.map(t),
                tags: ix.tags_list.iter().map(|&n| t(n)).collect(),
                custom_fields: ix
                    .custom_fields
                    .iter()
                    .map(|&(n, v)| (t(n), JsonText(t(v))))
                    .collect(),
                last_updated: None,
            });
            let children = (current.is_some() && i % 3 != 1)
                .then(|| JsonText(format!("{{\"interfaces\":[{i}]}}")));
            let input = JsonReconcileInput {
                guest,
                config: format!("{{\"memory\":\"{}\"}}", 1024 * i),
                current,
                network: networks[i as usize % networks.len()].clone(),
                children,
            };
            (ix, input)
        })
        .collect()
}

/// The text indexes of one input (those not fixed by [`inputs`]).
struct Indexes {
    tags: Option<u32>,
    pool: Option<u32>,
    /// cluster, site, device, role, vm-type, platform, tenant.
    record_opts: [Option<u32>; 7],
    start_on_boot: Option<u32>,
    tags_list: Vec<u32>,
    custom_fields: Vec<(u32, u32)>,
}

// Lowering, as the host does: every string and list its own block, which the module owns.

fn block(size: usize, align: usize) -> *mut u8 {
    if size == 0 {
        return align as *mut u8;
    }
    let layout = Layout::from_size_align(size, align).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { alloc(layout) };
    assert!(!p.is_null());
    // SAFETY: fresh block of `size` bytes; zeroed so padding is defined.
    unsafe { p.write_bytes(0, size) };
    p
}

fn lower_str(s: &str) -> (*mut u8, usize) {
    let p = block(s.len(), 1);
    // SAFETY: `p` holds `s.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len()) };
    (p, s.len())
}

unsafe fn put_pair(base: *mut u8, at: usize, (p, n): (*mut u8, usize)) {
    unsafe { put_list(base, at, p, n) }
}

unsafe fn put_opt<T>(base: *mut u8, at: usize, payload_at: usize, v: Option<T>) {
    unsafe {
        set(base, at, u8::from(v.is_some()));
        if let Some(v) = v {
            set(base, at + payload_at, v);
        }
    }
}

unsafe fn put_owned_opt(base: *mut u8, at: usize, s: Option<&str>) {
    unsafe {
        set(base, at, u8::from(s.is_some()));
        if let Some(s) = s {
            put_pair(base, at + P, lower_str(s));
        }
    }
}

fn lower_params(ctx: &Context, items: &[(Indexes, JsonReconcileInput)]) -> Params {
    // SAFETY (every write): within blocks of the sizes the layout gives.
    unsafe {
        let known = block(ctx.known.len() * KNOWN[4], 8);
        for (i, k) in ctx.known.iter().enumerate() {
            let e = known.add(i * KNOWN[4]);
            put_pair(e, KNOWN[0], lower_str(&k.kind));
            put_pair(e, KNOWN[1], lower_str(&k.key));
            set(e, KNOWN[2], k.id);
            put_pair(e, KNOWN[3], lower_str(&k.name));
        }
        let policies = block(ctx.policies.len() * POLICY[2], P);
        for (i, p) in ctx.policies.iter().enumerate() {
            let e = policies.add(i * POLICY[2]);
            put_pair(e, POLICY[0], lower_str(&p.field));
            set(e, POLICY[1], p.ownership as u8);
        }
        let settings = block(ctx.settings.len() * PAIR[2], P);
        for (i, (n, v)) in ctx.settings.iter().enumerate() {
            let e = settings.add(i * PAIR[2]);
            put_pair(e, PAIR[0], lower_str(n));
            put_pair(e, PAIR[1], lower_str(&v.0));
        }
        let texts = block(TEXTS.len() * 2 * P, P);
        for (i, t) in TEXTS.iter().enumerate() {
            put_pair(texts, i * 2 * P, lower_str(t));
        }
        let list = block(items.len() * I[2], 8);
        for (i, (ix, item)) in items.iter().enumerate() {
            lower_input(list.add(i * I[2]), ix, item);
        }
        [
            lower_str(&ctx.netbox_version),
            (known, ctx.known.len()),
            (policies, ctx.policies.len()),
            (settings, ctx.settings.len()),
            (texts, TEXTS.len()),
            (list, items.len()),
        ]
    }
}

unsafe fn lower_input(e: *mut u8, ix: &Indexes, item: &JsonReconcileInput) {
    let g = &item.guest;
    unsafe {
        set(e, G[0], 0u32);
        set(e, G[1], g.vmid);
        set(e, G[2], g.kind as u8);
        set(e, G[3], 1u32);
        put_owned_opt(e, G[4], g.name.as_deref());
        set(e, G[5], 2u32);
        set(e, G[6], u8::from(g.template));
        put_opt(e, G[7], 8, g.maxcpu);
        put_opt(e, G[8], 8, g.maxmem);
        put_opt(e, G[9], 8, g.maxdisk);
        put_opt(e, G[10], 4, ix.tags);
        put_opt(e, G[11], 4, ix.pool);
        put_pair(e, G[12], lower_str(&item.config));
        set(e, G[13], u8::from(g.config_read));
        let n = e.add(G[14]);
        match &item.network {
            c::NetworkSource::Agent(j) => {
                set(n, 0, 0u8);
                put_pair(n, P, lower_str(&j.0));
            }
            c::NetworkSource::LxcInterfaces(j) => {
                set(n, 0, 1u8);
                put_pair(n, P, lower_str(&j.0));
            }
            c::NetworkSource::Unknown(u) => {
                set(n, 0, 2u8);
                set(n, P, u.reason as u8);
                put_pair(n, 2 * P, lower_str(&u.detail));
            }
        }
        set(e, I[1], u8::from(item.current.is_some()));
        let Some(r) = &item.current else { return };
        let m = e.add(I[1] + 8);
        set(m, R[0], r.id);
        put_pair(m, R[1], lower_str(&r.name));
        set(m, R[2], 5u32);
        for (k, v) in ix.record_opts.iter().enumerate() {
            put_opt(m, R[3 + k], 4, *v);
        }
        put_opt(m, R[10], 8, r.vcpus);
        put_opt(m, R[11], 8, r.memory);
        put_opt(m, R[12], 8, r.disk);
        let absent_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        put_owned_opt(m, R[13], absent_empty(&r.description).as_deref());
        put_owned_opt(m, R[14], absent_empty(&r.comments).as_deref());
        put_owned_opt(m, R[15], absent_empty(&r.serial).as_deref());
        put_opt(m, R[16], 4, ix.start_on_boot);
        let tags = block(ix.tags_list.len() * 4, 4);
        for (k, t) in ix.tags_list.iter().enumerate() {
            set(tags, k * 4, *t);
        }
        put_pair(m, R[17], (tags, ix.tags_list.len()));
        let cf = block(ix.custom_fields.len() * 8, 4);
        for (k, (n, v)) in ix.custom_fields.iter().enumerate() {
            set(cf, k * 8, *n);
            set(cf, k * 8 + 4, *v);
        }
        put_pair(m, R[18], (cf, ix.custom_fields.len()));
        put_owned_opt(m, R[19], item.children.as_ref().map(|j| j.0.as_str()));
    }
}

// Reading the answers back (copies: the module still owns them until its post-return).

unsafe fn read_str(base: *const u8, at: usize) -> String {
    unsafe {
        let (p, n) = ptr_len(base, at);
        String::from_utf8(std::slice::from_raw_parts(p, n).to_vec()).unwrap()
    }
}

unsafe fn read_opt_str(base: *const u8, at: usize) -> Option<String> {
    unsafe {
        match get::<u8>(base, at) {
            0 => None,
            1 => Some(read_str(base, at + P)),
            n => panic!("option case {n}"),
        }
    }
}

unsafe fn read_list<T>(
    base: *const u8,
    at: usize,
    size: usize,
    align: usize,
    one: impl Fn(*const u8) -> T,
) -> Vec<T> {
    unsafe {
        let (p, n) = ptr_len(base, at);
        assert!(
            (p as usize).is_multiple_of(align),
            "list aligned to {align}"
        );
        (0..n).map(|i| one(p.add(i * size))).collect()
    }
}

unsafe fn read_change(e: *const u8) -> FieldChange {
    unsafe {
        let field = match get::<u8>(e, FC[0]) {
            CUSTOM_FIELD => format!("{CUSTOM_FIELDS}{}", read_str(e, FC[0] + P)),
            OTHER => read_str(e, FC[0] + P),
            n => FIELD_NAMES[n as usize].to_owned(),
        };
        FieldChange {
            field,
            old: JsonText(read_opt_str(e, FC[1]).unwrap_or_else(|| "null".into())),
            new: JsonText(read_str(e, FC[2])),
        }
    }
}

unsafe fn read_answers(ret: *const u8) -> Vec<Answer> {
    unsafe {
        read_list(ret, 0, RESULT, P, |e| match get::<u8>(e, 0) {
            0 => {
                let r = e.add(P);
                Ok(match get::<u8>(r, 0) {
                    0 => {
                        let v = r.add(P);
                        Reconciled::Vm(ReconciledVm {
                            name: read_opt_str(v, VM[0]),
                            needs: read_list(v, VM[1], SPEC[4], P, |s| model::ObjectSpec {
                                kind: read_str(s, SPEC[0]),
                                key: read_str(s, SPEC[1]),
                                name: read_str(s, SPEC[2]),
                                attrs: JsonText(read_str(s, SPEC[3])),
                            }),
                            changes: read_list(v, VM[2], FC[3], P, |f| read_change(f)),
                            children: read_list(v, VM[3], CC[5], 8, |k| c::ChildChange {
                                kind: [
                                    c::ChildKind::Interface,
                                    c::ChildKind::MacAddress,
                                    c::ChildKind::IpAddress,
                                    c::ChildKind::VirtualDisk,
                                ][get::<u8>(k, CC[0]) as usize],
                                key: read_str(k, CC[1]),
                                parent: read_opt_str(k, CC[2]),
                                op: match get::<u8>(k, CC[3]) {
                                    0 => c::ChildOp::Create,
                                    1 => c::ChildOp::Update(get(k, CC[3] + 8)),
                                    2 => c::ChildOp::Delete(get(k, CC[3] + 8)),
                                    n => panic!("child-op case {n}"),
                                },
                                changes: read_list(k, CC[4], FC[3], P, |f| read_change(f)),
                            }),
                        })
                    }
                    1 => Reconciled::Skip(read_str(r, P)),
                    n => panic!("reconciled case {n}"),
                })
            }
            1 => Err(RuleError {
                code: read_str(e, P + ERR[0]),
                message: read_str(e, P + ERR[1]),
            }),
            n => panic!("result case {n}"),
        })
    }
}

fn call_generated(params: Params) -> Vec<Answer> {
    let [a, b, c, d, e, f] = params;
    // SAFETY: the parameters are a batch lowered as the canonical ABI lowers it (natively:
    // wit-bindgen's glue computes the same layout with the native pointer size).
    unsafe {
        let ret = generated::_export_reconcile_cabi::<Component<Echo>>(
            a.0, a.1, b.0, b.1, c.0, c.1, d.0, d.1, e.0, e.1, f.0, f.1,
        );
        let answers = read_answers(ret);
        generated::__post_return_reconcile::<Component<Echo>>(ret);
        answers
    }
}

fn call_direct(params: Params) -> Vec<Answer> {
    // SAFETY: as `call_generated`.
    unsafe {
        let ret = reconcile::<Echo>(params);
        let answers = read_answers(ret);
        post_return(ret);
        answers
    }
}

#[test]
fn the_hand_written_export_reads_and_writes_what_the_generated_one_does() {
    let ctx = context();
    let items = inputs();
    let expected = Echo::reconcile_json(&ctx, items.iter().map(|(_, i)| i.clone()).collect());
    assert!(
        expected
            .iter()
            .any(|a| matches!(a, Ok(Reconciled::Vm(v)) if v.children.len() == 4))
    );
    let generated = call_generated(lower_params(&ctx, &items));
    assert_eq!(
        generated, expected,
        "the test's layout against wit-bindgen's"
    );
    let direct = call_direct(lower_params(&ctx, &items));
    assert_eq!(direct, expected);
}

#[test]
fn an_empty_batch_answers_an_empty_list() {
    let ctx = Context::default();
    assert_eq!(call_direct(lower_params(&ctx, &[])), Vec::new());
    assert_eq!(call_generated(lower_params(&ctx, &[])), Vec::new());
}

#[test]
fn field_cases_follow_the_wit_file() {
    // The cases in the order `rules.wit` declares `field-name` (kebab-case there).
    let wit = include_str!("../../v0.4.0/rules.wit");
    let body = &wit[wit.find("variant field-name {").unwrap()..];
    let body = &body[..body.find('}').unwrap()];
    let cases: Vec<&str> = body
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| l.trim_end_matches(',').trim_start_matches('%'))
        .collect();
    assert_eq!(cases.len(), FIELD_NAMES.len() + 2);
    assert_eq!(cases[CUSTOM_FIELD as usize], "custom-field(string)");
    assert_eq!(cases[OTHER as usize], "other(string)");
    for (n, name) in FIELD_NAMES.iter().enumerate() {
        assert_eq!(field_case(name), (n as u8, None));
        let kebab = match *name {
            "virtual_machine_type" => "vm-type".to_owned(),
            other => other.replace('_', "-"),
        };
        assert_eq!(cases[n], kebab);
    }
    assert_eq!(field_case("custom_fields.a"), (CUSTOM_FIELD, Some("a")));
    assert_eq!(
        field_case("custom_fields."),
        (OTHER, Some("custom_fields."))
    );
    assert_eq!(field_case("Name"), (OTHER, Some("Name")));
}

#[cfg(target_pointer_width = "64")]
#[test]
fn layouts_are_the_canonical_abis() {
    // Worked out by hand from the canonical ABI with 8-byte pointers (wasm32 has 4: the same
    // rules give the sizes the host asserts, `RESULT` 44, `FC` 32, `CC` 48, `I` 344).
    assert_eq!(FC, [0, 24, 48, 64]);
    assert_eq!(CC, [0, 8, 24, 48, 64, 80]);
    assert_eq!(SPEC[4], 64);
    assert_eq!(RESULT, 8 + 8 + VM[4]);
    assert_eq!(VM, [0, 24, 40, 56, 72]);
    assert_eq!(I[1], G[15]);
}

/// Frees through the global allocator and counts the blocks.
struct Counting(usize);

// SAFETY: frees as `dealloc` does.
unsafe impl FreeBlocks for Counting {
    unsafe fn free(&mut self, ptr: *mut u8, layout: Layout) {
        self.0 += 1;
        unsafe { dealloc(ptr, layout) }
    }
}

/// The heap blocks an answer owns: each string and vector with a capacity.
fn blocks(a: &Answer) -> usize {
    let s = |s: &String| usize::from(s.capacity() != 0);
    let v = |n: usize| usize::from(n != 0);
    let change = |c: &FieldChange| s(&c.field) + s(&c.old.0) + s(&c.new.0);
    match a {
        Ok(Reconciled::Vm(vm)) => {
            vm.name.as_ref().map_or(0, s)
                + v(vm.needs.capacity())
                + vm.needs
                    .iter()
                    .map(|n| s(&n.kind) + s(&n.key) + s(&n.name) + s(&n.attrs.0))
                    .sum::<usize>()
                + v(vm.changes.capacity())
                + vm.changes.iter().map(change).sum::<usize>()
                + v(vm.children.capacity())
                + vm.children
                    .iter()
                    .map(|k| {
                        s(&k.key)
                            + k.parent.as_ref().map_or(0, s)
                            + v(k.changes.capacity())
                            + k.changes.iter().map(change).sum::<usize>()
                    })
                    .sum::<usize>()
        }
        Ok(Reconciled::Skip(r)) => s(r),
        Err(e) => s(&e.code) + s(&e.message),
    }
}

#[test]
fn the_post_return_hands_over_every_block_of_the_answers_once() {
    let ctx = context();
    let items = inputs();
    let expected = Echo::reconcile_json(&ctx, items.iter().map(|(_, i)| i.clone()).collect());
    // The answers' vector and the block, then what the answers own.
    let want = 2 + expected.iter().map(blocks).sum::<usize>();
    let mut counting = Counting(0);
    // SAFETY: as `call_direct`.
    unsafe {
        let ret = reconcile::<Echo>(lower_params(&ctx, &items));
        assert_eq!(read_answers(ret), expected);
        post_return_with(ret, &mut counting);
    }
    assert_eq!(counting.0, want);
}

/// Takes every block the answers own at once, recording how many and the largest; frees the
/// rest (the answers' vector, the block) through the global allocator.
#[derive(Default)]
struct Unseen {
    blocks: usize,
    largest: usize,
    seen: usize,
}

// SAFETY: frees as `dealloc` does; the blocks it takes unseen are leaked (a test).
unsafe impl FreeBlocks for Unseen {
    unsafe fn free(&mut self, ptr: *mut u8, layout: Layout) {
        self.seen += 1;
        unsafe { dealloc(ptr, layout) }
    }

    unsafe fn free_unseen(&mut self, blocks: usize, largest: usize) -> bool {
        (self.blocks, self.largest) = (blocks, largest);
        true
    }
}

#[test]
fn the_answers_tally_is_what_the_walk_frees() {
    let ctx = context();
    let items = inputs();
    let expected = Echo::reconcile_json(&ctx, items.iter().map(|(_, i)| i.clone()).collect());
    let mut unseen = Unseen::default();
    // SAFETY: as `call_direct`.
    unsafe {
        let ret = reconcile::<Echo>(lower_params(&ctx, &items));
        post_return_with(ret, &mut unseen);
    }
    assert_eq!(unseen.seen, 2, "the answers' vector and the block");
    assert_eq!(unseen.blocks, expected.iter().map(blocks).sum::<usize>());
    let largest = expected
        .iter()
        .filter_map(|a| match a {
            Ok(Reconciled::Vm(v)) => v.changes.iter().map(|c| c.new.0.capacity()).max(),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(unseen.largest >= largest);
}
