//! WIT 0.4's `reconcile` export written by hand: the batch read from the canonical ABI's
//! layout straight into `model`, the answers written from `model` straight into it.
//!
//! Why: wit-bindgen's glue for `reconcile` lifts the batch into the bindings' types (each field
//! read into an intermediate record), which the shell then moves into the model, and converts
//! the model's answers into the bindings' types (a new list per VM, each field name matched and
//! freed) before lowering them; its post-return then walks the answers again, freeing each string
//! and list by its own call. None of that is paid by the same rules compiled natively: ~5k
//! instructions per VM of the default rules (BENCHMARKS.md, sessions 22 and 23). Here the batch
//! is read once, the shared texts in place (copied only into the model's owned fields), and the
//! answers are one block: the results, then every nested list, their strings pointing into the
//! model's answers, which the block keeps until the post-return frees them with it (by a
//! [`FreeBlocks`] that may take them all at once: the default rules' arena counts them off).
//!
//! How it is tied to the WIT: everything but `reconcile` is still generated (the exporting
//! crate generates `v0.4.0/rules.wit`'s bindings with `reconcile` skipped, see
//! [`export_reconcile_direct!`](crate::export_reconcile_direct)), and the component's type (the
//! world the host typechecks at load) is that file's. Every offset below follows from the
//! canonical ABI's rules applied to 0.4's records in declared order (`layout`), with the pointer
//! size as wit-bindgen's own glue computes it, so the layout is the same natively; the tests
//! (`component_direct/tests.rs`) run this export and wit-bindgen's generated one on the same
//! lowered batch natively and read both answers back against the rules' own.
//!
//! Modules built with [`export_rules!`](crate::export_rules) keep wit-bindgen's glue.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};

use crate::children as c;
use crate::model::{self, RuleSet};
use crate::short_copy;

/// The size of a pointer (and of a length) in the module's memory: 4 in `wasm32`.
const P: usize = size_of::<usize>();

/// A field's (size, alignment) in the canonical ABI.
type Abi = (usize, usize);

const U8: Abi = (1, 1);
const U32: Abi = (4, 4);
const U64: Abi = (8, 8);
/// A `string` or a `list<T>`: its pointer and length.
const STR: Abi = (2 * P, P);
/// `option<T>` of a 4-byte `T` (`text-index`).
const OPT_U32: Abi = (8, 4);
/// `option<T>` of an 8-byte `T` (`u64`, `f64`).
const OPT_U64: Abi = (16, 8);
/// `option<string>`: the case byte, the string at `P`.
const OPT_STR: Abi = (3 * P, P);
/// `network-source`: the case byte, the payload at `P` (a string, or `network-unknown`: the
/// reason byte, the detail at `P`).
const NETWORK: Abi = (4 * P, P);
/// `child-op`: the case byte, the id at 8.
const CHILD_OP: Abi = (16, 8);

/// Where each field of a record sits, from the fields' (size, align) in declared order followed
/// by a `(0, 1)` placeholder, whose slot gets the record's size.
const fn layout<const N: usize>(fields: [Abi; N]) -> [usize; N] {
    let mut at = [0; N];
    let mut off = 0usize;
    let mut align = 1usize;
    let mut i = 0;
    while i < N {
        let a = fields[i].1;
        if a > align {
            align = a;
        }
        off = off.next_multiple_of(a);
        at[i] = off;
        off += fields[i].0;
        i += 1;
    }
    at[N - 1] = off.next_multiple_of(align);
    at
}

// The inputs.

/// `known-object`: kind, key, id, name (and its size).
const KNOWN: [usize; 5] = layout([STR, STR, U64, STR, (0, 1)]);
/// `field-policy`: field, ownership.
const POLICY: [usize; 3] = layout([STR, U8, (0, 1)]);
/// `tuple<string, json>`.
const PAIR: [usize; 3] = layout([STR, STR, (0, 1)]);
/// `guest-input`'s fields.
const G: [usize; 16] = layout([
    U32,     // cluster
    U32,     // vmid
    U8,      // kind
    U32,     // node
    OPT_STR, // name
    U32,     // status
    U8,      // template
    OPT_U64, // maxcpu
    OPT_U64, // maxmem
    OPT_U64, // maxdisk
    OPT_U32, // tags
    OPT_U32, // pool
    STR,     // config
    U8,      // config-read
    NETWORK, // network
    (0, 1),
]);
/// `netbox-record`'s fields.
const R: [usize; 21] = layout([
    U64,     // id
    STR,     // name
    U32,     // status
    OPT_U32, // cluster
    OPT_U32, // site
    OPT_U32, // device
    OPT_U32, // role
    OPT_U32, // vm-type
    OPT_U32, // platform
    OPT_U32, // tenant
    OPT_U64, // vcpus
    OPT_U64, // memory
    OPT_U64, // disk
    OPT_STR, // description
    OPT_STR, // comments
    OPT_STR, // serial
    OPT_U32, // start-on-boot
    STR,     // tags
    STR,     // custom-fields
    OPT_STR, // children
    (0, 1),
]);
/// `option<netbox-record>`: the case byte, the record at its alignment (8).
const OPT_RECORD: Abi = (8 + R[20], 8);
/// `reconcile-input`: guest, current.
const I: [usize; 3] = layout([(G[15], 8), OPT_RECORD, (0, 1)]);

// The answers.

/// `field-name`: the case byte, the name at `P` for `custom-field` and `other`.
const FIELD_NAME: Abi = (3 * P, P);
/// `field-change`: field, old, new.
const FC: [usize; 4] = layout([FIELD_NAME, OPT_STR, STR, (0, 1)]);
/// `object-spec`: kind, key, name, attrs.
const SPEC: [usize; 5] = layout([STR, STR, STR, STR, (0, 1)]);
/// `child-change`: kind, key, parent, op, changes.
const CC: [usize; 6] = layout([U8, STR, OPT_STR, CHILD_OP, STR, (0, 1)]);
/// `reconciled-vm`: name, needs, changes, children.
const VM: [usize; 5] = layout([OPT_STR, STR, STR, STR, (0, 1)]);
/// `reconciled`: the case byte, `reconciled-vm` or the skip's reason at `P`.
const RECONCILED: Abi = (P + VM[4], P);
/// `rule-error`: code, message.
const ERR: [usize; 3] = layout([STR, STR, (0, 1)]);
/// `result<reconciled, rule-error>`: the case byte, the payload at `P`.
const RESULT: usize = P + RECONCILED.0;

/// `field-name`'s case of a custom field (`custom_fields.<name>`), then of any other name; the
/// cases before are [`FIELD_NAMES`]'.
const CUSTOM_FIELD: u8 = 28;
const OTHER: u8 = 29;
/// `field-name`'s cases without a payload, in the order 0.4 declares them (their numbers):
/// what [`field_case`] matches, checked by the tests.
#[cfg(test)]
const FIELD_NAMES: [&str; CUSTOM_FIELD as usize] = [
    "name",
    "status",
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
    "primary_ip4",
    "primary_ip6",
    "enabled",
    "mtu",
    "mode",
    "untagged_vlan",
    "primary_mac_address",
    "mac_address",
    "interface",
    "address",
    "vrf",
    "size",
];
/// The prefix of a custom field's change (`custom_fields.proxmox_vm_id`).
const CUSTOM_FIELDS: &str = "custom_fields.";

/// The answers' block begins with the return area (the list's pointer and length), then what
/// the post-return needs to free the model's answers (their vector's pointer, capacity and
/// length, the block's size, the number of blocks the answers own and the largest's size), then
/// the results at `HEAD`.
const HEAD: usize = 8 * P;
const RET_AT: usize = 0;
const KEEP_AT: usize = 2 * P;
const TALLY_AT: usize = 6 * P;
const BLOCK_ALIGN: usize = 8;

/// Reads the `T` at byte `at` of `base`.
///
/// # Safety
/// `base + at` must be valid for reads of a `T`, aligned.
#[inline(always)]
unsafe fn get<T: Copy>(base: *const u8, at: usize) -> T {
    unsafe { base.add(at).cast::<T>().read() }
}

/// Writes `v` at byte `at` of `base`.
///
/// # Safety
/// `base + at` must be valid for writes of a `T`, aligned.
#[inline(always)]
unsafe fn set<T>(base: *mut u8, at: usize, v: T) {
    unsafe { base.add(at).cast::<T>().write(v) }
}

/// The string or list whose pointer and length are at `at`.
#[inline(always)]
unsafe fn ptr_len(base: *const u8, at: usize) -> (*mut u8, usize) {
    unsafe { (get(base, at), get(base, at + P)) }
}

/// The string at `at`, owned: the host allocated it for the module (one block of its length),
/// and the canonical ABI gives it to the callee.
#[inline(always)]
unsafe fn owned(base: *const u8, at: usize) -> String {
    unsafe {
        let (ptr, len) = ptr_len(base, at);
        String::from_raw_parts(ptr, len, len)
    }
}

/// The `option<string>` at `at`, owned.
#[inline(always)]
unsafe fn owned_opt(base: *const u8, at: usize) -> Option<String> {
    unsafe { (get::<u8>(base, at) != 0).then(|| owned(base, at + P)) }
}

/// Frees a list the host allocated (`len` elements of `size` bytes, `align`).
unsafe fn free_list(ptr: *mut u8, len: usize, size: usize, align: usize) {
    if len != 0 {
        unsafe { dealloc(ptr, Layout::from_size_align_unchecked(len * size, align)) }
    }
}

/// What allocates the model's copies of the batch's shared texts in [`reconcile_with`]: the
/// global allocator itself, called without its shims (the default rules' arena, inlined).
///
/// # Safety
/// `alloc` must return a block that the global allocator frees with `layout`, or null.
pub unsafe trait AllocBlocks {
    /// A block of `layout` (non-zero size), or null.
    ///
    /// # Safety
    /// As `GlobalAlloc::alloc`.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8;
}

/// The global allocator through `std::alloc`.
pub struct Global;

// SAFETY: `std::alloc::alloc` is the global allocator's.
unsafe impl AllocBlocks for Global {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { alloc(layout) }
    }
}

/// The batch's shared texts, read in place (borrowed for the call, freed at its end).
struct Texts<'a, A> {
    ptr: *mut u8,
    len: usize,
    alloc: &'a A,
}

impl<A: AllocBlocks> Texts<'_, A> {
    /// The text of index `i`; the host only sends indexes within `texts`, and one that is not
    /// is its bug, which traps the batch.
    #[inline(always)]
    fn get(&self, i: u32) -> &str {
        let i = i as usize;
        assert!(i < self.len, "text index {i} out of {}", self.len);
        // SAFETY: within the list; the canonical ABI hands over valid UTF-8.
        unsafe {
            let (ptr, len) = ptr_len(self.ptr, i * 2 * P);
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr, len))
        }
    }

    fn owned(&self, i: u32) -> String {
        // SAFETY: `AllocBlocks`' contract is `owned_in`'s.
        unsafe { short_copy::owned_in(self.get(i), |l| self.alloc.alloc(l)) }
    }

    /// An `option<text-index>` at `at` of `base`, as an owned copy.
    #[inline(always)]
    unsafe fn opt(&self, base: *const u8, at: usize) -> Option<String> {
        unsafe { (get::<u8>(base, at) != 0).then(|| self.owned(get(base, at + 4))) }
    }
}

impl<A> Drop for Texts<'_, A> {
    fn drop(&mut self) {
        for i in 0..self.len {
            // SAFETY: each text is a block the host allocated and gave to the module.
            unsafe { drop(owned(self.ptr, i * 2 * P)) }
        }
        unsafe { free_list(self.ptr, self.len, 2 * P, P) }
    }
}

/// `option<u64>` or `option<f64>` at `at`.
#[inline(always)]
unsafe fn opt_wide<T: Copy>(base: *const u8, at: usize) -> Option<T> {
    unsafe { (get::<u8>(base, at) != 0).then(|| get(base, at + 8)) }
}

/// The flat parameters of `reconcile` (`context`, then `reconcile-batch`): each string and
/// list a pointer and a length.
pub type Params = [(*mut u8, usize); 6];

/// `reconcile`'s export: lifts the call's parameters, runs the rules' `reconcile_json`, and
/// returns the return area (the answers' list).
///
/// # Safety
/// As the canonical ABI's lifting of `reconcile`'s parameters in the module: `params` are what
/// the host lowered for this call, the module now owns them. The result must be handed to
/// [`post_return`] once the host has read it.
pub unsafe fn reconcile<R: RuleSet>(params: Params) -> *mut u8 {
    unsafe { reconcile_with::<R, _>(params, &Global) }
}

/// [`reconcile`], the model's copies of the shared texts allocated by `alloc`.
///
/// # Safety
/// As [`reconcile`].
pub unsafe fn reconcile_with<R: RuleSet, A: AllocBlocks>(params: Params, alloc: &A) -> *mut u8 {
    let [nv, known, policies, settings, texts, items] = params;
    let ctx = unsafe { context(nv, known, policies, settings) };
    let texts = Texts {
        ptr: texts.0,
        len: texts.1,
        alloc,
    };
    let (ptr, len) = items;
    let mut inputs = Vec::with_capacity(len);
    for i in 0..len {
        inputs.push(unsafe { input(&texts, ptr.add(i * I[2])) });
    }
    unsafe { free_list(ptr, len, I[2], 8) };
    let answers = R::reconcile_json(&ctx, inputs);
    drop(texts);
    drop(ctx);
    lower(answers)
}

/// `reconcile`'s post-return: drops the answers the block kept and frees the block.
///
/// # Safety
/// `ret` must be what [`reconcile`] returned, once.
pub unsafe fn post_return(ret: *mut u8) {
    unsafe {
        let (ptr, cap, len): (*mut Answer, usize, usize) = (
            get(ret, KEEP_AT),
            get(ret, KEEP_AT + P),
            get(ret, KEEP_AT + 2 * P),
        );
        drop(Vec::from_raw_parts(ptr, len, cap));
        let size: usize = get(ret, KEEP_AT + 3 * P);
        dealloc(ret, Layout::from_size_align_unchecked(size, BLOCK_ALIGN));
    }
}

/// What frees the answers' blocks in [`post_return_with`]: an allocator that can free many
/// blocks cheaper than one call each (the default rules' arena only counts them).
///
/// # Safety
/// `free` must free a block the global allocator handed out with `layout`, as `dealloc` would.
pub unsafe trait FreeBlocks {
    /// Frees the block at `ptr` of `layout`.
    ///
    /// # Safety
    /// `ptr` is a live block of the global allocator with `layout`, not used afterwards.
    unsafe fn free(&mut self, ptr: *mut u8, layout: Layout);

    /// Frees, without being shown them, the `blocks` blocks the answers own but their own
    /// vector (each string and nested list, none larger than `largest` bytes), if it can;
    /// `false` to be handed each by [`free`](Self::free) instead.
    ///
    /// # Safety
    /// The blocks are live blocks of the global allocator, not used afterwards.
    unsafe fn free_unseen(&mut self, blocks: usize, largest: usize) -> bool {
        let _ = (blocks, largest);
        false
    }
}

/// [`post_return`], each of the answers' blocks (and the answers' own block) handed to `f`
/// instead of dropped. The walk destructures every answer type in full, so a field added to
/// one fails to compile here rather than leaking.
///
/// # Safety
/// As [`post_return`].
pub unsafe fn post_return_with<F: FreeBlocks>(ret: *mut u8, f: &mut F) {
    unsafe {
        let (ptr, cap, len): (*mut Answer, usize, usize) = (
            get(ret, KEEP_AT),
            get(ret, KEEP_AT + P),
            get(ret, KEEP_AT + 2 * P),
        );
        let answers = Vec::from_raw_parts(ptr, len, cap);
        if f.free_unseen(get(ret, TALLY_AT), get(ret, TALLY_AT + P)) {
            // What the answers own is freed: only their vector is left.
            free_vec(f, answers, |_, a| std::mem::forget(a));
        } else {
            free_vec(f, answers, free_answer);
        }
        let size: usize = get(ret, KEEP_AT + 3 * P);
        f.free(ret, Layout::from_size_align_unchecked(size, BLOCK_ALIGN));
    }
}

unsafe fn free_string<F: FreeBlocks>(f: &mut F, s: String) {
    let mut s = std::mem::ManuallyDrop::new(s);
    if s.capacity() != 0 {
        // SAFETY: the string's own block (`Vec<u8>`'s layout for its capacity).
        unsafe {
            f.free(
                s.as_mut_ptr(),
                Layout::from_size_align_unchecked(s.capacity(), 1),
            )
        }
    }
}

unsafe fn free_vec<T, F: FreeBlocks>(f: &mut F, v: Vec<T>, mut each: impl FnMut(&mut F, T)) {
    let mut v = std::mem::ManuallyDrop::new(v);
    for i in 0..v.len() {
        // SAFETY: each element is read once and the vector never dropped.
        each(f, unsafe { v.as_ptr().add(i).read() });
    }
    if v.capacity() != 0 && size_of::<T>() != 0 {
        // SAFETY: the vector's own block (its layout for its capacity).
        unsafe {
            let layout = Layout::array::<T>(v.capacity()).unwrap_unchecked();
            f.free(v.as_mut_ptr().cast(), layout);
        }
    }
}

fn free_answer<F: FreeBlocks>(f: &mut F, a: Answer) {
    // SAFETY (each call): the answers' own strings and vectors, given up here.
    unsafe {
        match a {
            Ok(model::Reconciled::Vm(model::ReconciledVm {
                name,
                needs,
                changes,
                children,
            })) => {
                if let Some(name) = name {
                    free_string(f, name);
                }
                free_vec(f, needs, |f, n| {
                    let model::ObjectSpec {
                        kind,
                        key,
                        name,
                        attrs,
                    } = n;
                    free_string(f, kind);
                    free_string(f, key);
                    free_string(f, name);
                    free_string(f, attrs.0);
                });
                free_vec(f, changes, free_change);
                free_vec(f, children, |f, ch| {
                    let c::ChildChange {
                        kind: _,
                        key,
                        parent,
                        op: _,
                        changes,
                    } = ch;
                    free_string(f, key);
                    if let Some(p) = parent {
                        free_string(f, p);
                    }
                    free_vec(f, changes, free_change);
                });
            }
            Ok(model::Reconciled::Skip(reason)) => free_string(f, reason),
            Err(model::RuleError { code, message }) => {
                free_string(f, code);
                free_string(f, message);
            }
        }
    }
}

fn free_change<F: FreeBlocks>(f: &mut F, ch: model::FieldChange) {
    let model::FieldChange { field, old, new } = ch;
    // SAFETY: the change's own strings.
    unsafe {
        free_string(f, field);
        free_string(f, old.0);
        free_string(f, new.0);
    }
}

unsafe fn context(
    nv: (*mut u8, usize),
    known: (*mut u8, usize),
    policies: (*mut u8, usize),
    settings: (*mut u8, usize),
) -> model::Context {
    unsafe {
        let mut k = Vec::with_capacity(known.1);
        for i in 0..known.1 {
            let e = known.0.add(i * KNOWN[4]);
            k.push(model::KnownObject {
                kind: owned(e, KNOWN[0]),
                key: owned(e, KNOWN[1]),
                id: get(e, KNOWN[2]),
                name: owned(e, KNOWN[3]),
            });
        }
        free_list(known.0, known.1, KNOWN[4], 8);
        let mut p = Vec::with_capacity(policies.1);
        for i in 0..policies.1 {
            let e = policies.0.add(i * POLICY[2]);
            p.push(model::FieldPolicy {
                field: owned(e, POLICY[0]),
                ownership: match get::<u8>(e, POLICY[1]) {
                    0 => model::Ownership::Owned,
                    1 => model::Ownership::Merge,
                    2 => model::Ownership::Seed,
                    3 => model::Ownership::Ignore,
                    n => panic!("invalid ownership case {n}"),
                },
            });
        }
        free_list(policies.0, policies.1, POLICY[2], P);
        let mut s = Vec::with_capacity(settings.1);
        for i in 0..settings.1 {
            let e = settings.0.add(i * PAIR[2]);
            s.push((owned(e, PAIR[0]), model::JsonText(owned(e, PAIR[1]))));
        }
        free_list(settings.0, settings.1, PAIR[2], P);
        model::Context {
            netbox_version: String::from_raw_parts(nv.0, nv.1, nv.1),
            known: k,
            policies: p,
            settings: s,
        }
    }
}

/// One `reconcile-input` at `e`.
unsafe fn input<A: AllocBlocks>(texts: &Texts<'_, A>, e: *const u8) -> model::JsonReconcileInput {
    unsafe {
        let guest = model::Guest {
            cluster: texts.owned(get(e, G[0])),
            vmid: get(e, G[1]),
            kind: match get::<u8>(e, G[2]) {
                0 => model::GuestKind::Qemu,
                1 => model::GuestKind::Lxc,
                n => panic!("invalid guest-kind case {n}"),
            },
            node: texts.owned(get(e, G[3])),
            name: owned_opt(e, G[4]),
            status: texts.owned(get(e, G[5])),
            template: get::<u8>(e, G[6]) != 0,
            maxcpu: opt_wide(e, G[7]),
            maxmem: opt_wide(e, G[8]),
            maxdisk: opt_wide(e, G[9]),
            tags: texts.opt(e, G[10]),
            pool: texts.opt(e, G[11]),
            config: Vec::new(),
            config_read: get::<u8>(e, G[13]) != 0,
        };
        let config = owned(e, G[12]);
        let network = network(e.add(G[14]));
        let (current, children) = match get::<u8>(e, I[1]) {
            0 => (None, None),
            _ => {
                let r = e.add(I[1] + 8);
                let children = owned_opt(r, R[19]).map(model::JsonText);
                (Some(record(texts, r)), children)
            }
        };
        model::JsonReconcileInput {
            guest,
            config,
            current,
            network,
            children,
        }
    }
}

/// The `network-source` at `n`.
unsafe fn network(n: *const u8) -> c::NetworkSource {
    unsafe {
        match get::<u8>(n, 0) {
            0 => c::NetworkSource::Agent(model::JsonText(owned(n, P))),
            1 => c::NetworkSource::LxcInterfaces(model::JsonText(owned(n, P))),
            _ => {
                use c::UnknownReason as U;
                let reason = match get::<u8>(n, P) {
                    0 => U::AgentOff,
                    1 => U::NotRunning,
                    2 => U::AgentNotRunning,
                    3 => U::NoPermission,
                    4 => U::TimedOut,
                    5 => U::NotAsked,
                    6 => U::OtherError,
                    n => panic!("invalid network-unknown-reason case {n}"),
                };
                c::NetworkSource::Unknown(c::NetworkUnknown {
                    reason,
                    detail: owned(n, 2 * P),
                })
            }
        }
    }
}

/// The `netbox-record` at `r`.
unsafe fn record<A: AllocBlocks>(texts: &Texts<'_, A>, r: *const u8) -> model::NetboxVm {
    unsafe {
        let (tags_ptr, tags_len) = ptr_len(r, R[17]);
        let mut tags = Vec::with_capacity(tags_len);
        for i in 0..tags_len {
            tags.push(texts.owned(get(tags_ptr, i * 4)));
        }
        free_list(tags_ptr, tags_len, 4, 4);
        let (cf_ptr, cf_len) = ptr_len(r, R[18]);
        let mut custom_fields = Vec::with_capacity(cf_len);
        for i in 0..cf_len {
            custom_fields.push((
                texts.owned(get(cf_ptr, i * 8)),
                model::JsonText(texts.owned(get(cf_ptr, i * 8 + 4))),
            ));
        }
        free_list(cf_ptr, cf_len, 8, 4);
        model::NetboxVm {
            id: get(r, R[0]),
            name: owned(r, R[1]),
            status: texts.owned(get(r, R[2])),
            cluster: texts.opt(r, R[3]),
            site: texts.opt(r, R[4]),
            device: texts.opt(r, R[5]),
            role: texts.opt(r, R[6]),
            vm_type: texts.opt(r, R[7]),
            platform: texts.opt(r, R[8]),
            tenant: texts.opt(r, R[9]),
            vcpus: opt_wide(r, R[10]),
            memory: opt_wide(r, R[11]),
            disk: opt_wide(r, R[12]),
            description: owned_opt(r, R[13]).unwrap_or_default(),
            comments: owned_opt(r, R[14]).unwrap_or_default(),
            serial: owned_opt(r, R[15]).unwrap_or_default(),
            start_on_boot: texts.opt(r, R[16]),
            tags,
            custom_fields,
            last_updated: None,
        }
    }
}

type Answer = Result<model::Reconciled, model::RuleError>;

/// The bytes the nested lists of `answers` take, each list at 8-byte alignment.
fn nested_bytes(answers: &[Answer]) -> usize {
    let list = |n: usize, size: usize| (n * size).next_multiple_of(8);
    answers
        .iter()
        .map(|a| match a {
            Ok(model::Reconciled::Vm(v)) => {
                list(v.needs.len(), SPEC[4])
                    + list(v.changes.len(), FC[3])
                    + list(v.children.len(), CC[5])
                    + v.children
                        .iter()
                        .map(|c| list(c.changes.len(), FC[3]))
                        .sum::<usize>()
            }
            _ => 0,
        })
        .sum()
}

/// Where the next nested list goes in the block, and the heap blocks the answers written so
/// far own (what [`free_answer`] would free of them; the answers' own vector aside).
struct Cursor {
    base: *mut u8,
    next: usize,
    blocks: usize,
    largest: usize,
}

impl Cursor {
    /// Counts a block of `bytes` (none when `bytes` is 0: no allocation).
    #[inline(always)]
    fn owns(&mut self, bytes: usize) {
        self.blocks += usize::from(bytes != 0);
        self.largest = self.largest.max(bytes);
    }

    #[inline(always)]
    fn string(&mut self, s: &String) {
        self.owns(s.capacity());
    }

    #[inline(always)]
    fn vec<T>(&mut self, v: &Vec<T>) {
        self.owns(v.capacity() * size_of::<T>());
    }

    /// Room for `n` elements of `size` bytes: their address.
    fn take(&mut self, n: usize, size: usize) -> *mut u8 {
        let at = self.next;
        self.next += (n * size).next_multiple_of(8);
        // SAFETY: `nested_bytes` counted this list into the block.
        unsafe { self.base.add(at) }
    }
}

/// Writes a string's pointer and length at `at` (the bytes stay the model's).
#[inline(always)]
unsafe fn put_str(base: *mut u8, at: usize, s: &str) {
    unsafe {
        set(base, at, s.as_ptr());
        set(base, at + P, s.len());
    }
}

#[inline(always)]
unsafe fn put_list(base: *mut u8, at: usize, ptr: *mut u8, len: usize) {
    unsafe {
        set(base, at, ptr);
        set(base, at + P, len);
    }
}

#[inline(always)]
unsafe fn put_opt_str(base: *mut u8, at: usize, s: Option<&str>) {
    unsafe {
        match s {
            Some(s) => {
                set(base, at, 1u8);
                put_str(base, at + P, s);
            }
            None => set(base, at, 0u8),
        }
    }
}

/// The answers as the canonical ABI's `list<result<reconciled, rule-error>>`, in one block
/// that also keeps them (see [`HEAD`]): the return area.
fn lower(answers: Vec<Answer>) -> *mut u8 {
    let results = HEAD + answers.len() * RESULT;
    let size = results.next_multiple_of(8) + nested_bytes(&answers);
    // SAFETY: non-zero size (`HEAD`), power-of-two alignment.
    let layout = unsafe { Layout::from_size_align_unchecked(size, BLOCK_ALIGN) };
    let block = unsafe { alloc(layout) };
    if block.is_null() {
        handle_alloc_error(layout);
    }
    let mut cur = Cursor {
        base: block,
        next: results.next_multiple_of(8),
        blocks: 0,
        largest: 0,
    };
    let mut answers = std::mem::ManuallyDrop::new(answers);
    // SAFETY: every write is within the block (`results` and `nested_bytes` count them).
    unsafe {
        let list = block.add(HEAD);
        for (i, a) in answers.iter().enumerate() {
            result(&mut cur, list.add(i * RESULT), a);
        }
        put_list(block, RET_AT, list, answers.len());
        set(block, KEEP_AT, answers.as_mut_ptr());
        set(block, KEEP_AT + P, answers.capacity());
        set(block, KEEP_AT + 2 * P, answers.len());
        set(block, KEEP_AT + 3 * P, size);
        set(block, TALLY_AT, cur.blocks);
        set(block, TALLY_AT + P, cur.largest);
    }
    block
}

/// One `result<reconciled, rule-error>` at `e`.
unsafe fn result(cur: &mut Cursor, e: *mut u8, a: &Answer) {
    unsafe {
        match a {
            Ok(r) => {
                set(e, 0, 0u8);
                let r_at = e.add(P);
                match r {
                    model::Reconciled::Vm(v) => {
                        set(r_at, 0, 0u8);
                        reconciled_vm(cur, r_at.add(P), v);
                    }
                    model::Reconciled::Skip(reason) => {
                        cur.string(reason);
                        set(r_at, 0, 1u8);
                        put_str(r_at, P, reason);
                    }
                }
            }
            Err(err) => {
                cur.string(&err.code);
                cur.string(&err.message);
                set(e, 0, 1u8);
                put_str(e, P + ERR[0], &err.code);
                put_str(e, P + ERR[1], &err.message);
            }
        }
    }
}

unsafe fn reconciled_vm(cur: &mut Cursor, v_at: *mut u8, v: &model::ReconciledVm) {
    unsafe {
        if let Some(name) = &v.name {
            cur.string(name);
        }
        put_opt_str(v_at, VM[0], v.name.as_deref());
        cur.vec(&v.needs);
        cur.vec(&v.changes);
        cur.vec(&v.children);
        let needs = cur.take(v.needs.len(), SPEC[4]);
        for (i, n) in v.needs.iter().enumerate() {
            cur.string(&n.kind);
            cur.string(&n.key);
            cur.string(&n.name);
            cur.string(&n.attrs.0);
            let s = needs.add(i * SPEC[4]);
            put_str(s, SPEC[0], &n.kind);
            put_str(s, SPEC[1], &n.key);
            put_str(s, SPEC[2], &n.name);
            put_str(s, SPEC[3], &n.attrs.0);
        }
        put_list(v_at, VM[1], needs, v.needs.len());
        let changes = changes(cur, &v.changes);
        put_list(v_at, VM[2], changes, v.changes.len());
        let kids = cur.take(v.children.len(), CC[5]);
        for (i, ch) in v.children.iter().enumerate() {
            child_change(cur, kids.add(i * CC[5]), ch);
        }
        put_list(v_at, VM[3], kids, v.children.len());
    }
}

unsafe fn child_change(cur: &mut Cursor, e: *mut u8, ch: &c::ChildChange) {
    unsafe {
        set(
            e,
            CC[0],
            match ch.kind {
                c::ChildKind::Interface => 0u8,
                c::ChildKind::MacAddress => 1,
                c::ChildKind::IpAddress => 2,
                c::ChildKind::VirtualDisk => 3,
            },
        );
        cur.string(&ch.key);
        if let Some(p) = &ch.parent {
            cur.string(p);
        }
        cur.vec(&ch.changes);
        put_str(e, CC[1], &ch.key);
        put_opt_str(e, CC[2], ch.parent.as_deref());
        match ch.op {
            c::ChildOp::Create => set(e, CC[3], 0u8),
            c::ChildOp::Update(id) => {
                set(e, CC[3], 1u8);
                set(e, CC[3] + 8, id);
            }
            c::ChildOp::Delete(id) => {
                set(e, CC[3], 2u8);
                set(e, CC[3] + 8, id);
            }
        }
        let changes = changes(cur, &ch.changes);
        put_list(e, CC[4], changes, ch.changes.len());
    }
}

/// A `list<field-change>`: each name as its case, a `null` old value absent.
unsafe fn changes(cur: &mut Cursor, changes: &[model::FieldChange]) -> *mut u8 {
    let list = cur.take(changes.len(), FC[3]);
    for (i, ch) in changes.iter().enumerate() {
        unsafe {
            cur.string(&ch.field);
            cur.string(&ch.old.0);
            cur.string(&ch.new.0);
            let e = list.add(i * FC[3]);
            let (case, payload) = field_case(&ch.field);
            set(e, FC[0], case);
            if let Some(p) = payload {
                put_str(e, FC[0] + P, p);
            }
            let old = ch.old.0.as_str();
            put_opt_str(e, FC[1], (old != "null").then_some(old));
            put_str(e, FC[2], &ch.new.0);
        }
    }
    list
}

/// A field's `field-name` case and, for `custom-field` and `other`, its text.
fn field_case(name: &str) -> (u8, Option<&str>) {
    let case = match name {
        "name" => 0,
        "status" => 1,
        "site" => 2,
        "device" => 3,
        "role" => 4,
        "virtual_machine_type" => 5,
        "platform" => 6,
        "tenant" => 7,
        "vcpus" => 8,
        "memory" => 9,
        "disk" => 10,
        "description" => 11,
        "comments" => 12,
        "serial" => 13,
        "start_on_boot" => 14,
        "tags" => 15,
        "primary_ip4" => 16,
        "primary_ip6" => 17,
        "enabled" => 18,
        "mtu" => 19,
        "mode" => 20,
        "untagged_vlan" => 21,
        "primary_mac_address" => 22,
        "mac_address" => 23,
        "interface" => 24,
        "address" => 25,
        "vrf" => 26,
        "size" => 27,
        n if n.len() > CUSTOM_FIELDS.len() && n.starts_with(CUSTOM_FIELDS) => {
            return (CUSTOM_FIELD, Some(&n[CUSTOM_FIELDS.len()..]));
        }
        n => return (OTHER, Some(n)),
    };
    (case, None)
}

/// Exports `reconcile` of a `RuleSet` by hand: the two core functions the canonical ABI looks
/// for (`reconcile` and its post-return), calling [`reconcile`] and [`post_return`]. The crate
/// also exports the interface's other functions and the component's type, with wit-bindgen's
/// bindings of `v0.4.0/rules.wit` generated with `skip: ["reconcile"]` over
/// [`component::bindings`](crate::component::bindings)' types (see `guest-default`'s `export`).
///
/// ```text
/// #[cfg(target_arch = "wasm32")]
/// pve2netbox_rules::export_reconcile_direct!(MyRules);
/// ```
///
/// With `alloc = A, free = F`, the shared texts' copies are allocated by `A` (an
/// [`AllocBlocks`], [`reconcile_with`]) and the post-return hands the answers' blocks to `F` (a
/// [`FreeBlocks`], dropped after them) instead of dropping them ([`post_return_with`]).
#[macro_export]
macro_rules! export_reconcile_direct {
    ($rules:ty, alloc = $alloc:expr, free = $free:expr) => {
        $crate::export_reconcile_direct!(@reconcile $rules, $alloc);

        #[unsafe(export_name = "cabi_post_pve2netbox:rules/reconcile@0.4.0#reconcile")]
        unsafe extern "C" fn __pve2netbox_rules_reconcile_post_return(ret: *mut u8) {
            let mut free = $free;
            // SAFETY: the canonical ABI calls it once with what the export returned.
            unsafe { $crate::component_direct::post_return_with(ret, &mut free) }
        }
    };
    ($rules:ty) => {
        $crate::export_reconcile_direct!(@reconcile $rules, &$crate::component_direct::Global);

        #[unsafe(export_name = "cabi_post_pve2netbox:rules/reconcile@0.4.0#reconcile")]
        unsafe extern "C" fn __pve2netbox_rules_reconcile_post_return(ret: *mut u8) {
            // SAFETY: the canonical ABI calls it once with what the export returned.
            unsafe { $crate::component_direct::post_return(ret) }
        }
    };
    (@reconcile $rules:ty, $alloc:expr) => {
        #[unsafe(export_name = "pve2netbox:rules/reconcile@0.4.0#reconcile")]
        unsafe extern "C" fn __pve2netbox_rules_reconcile(
            a0: *mut u8,
            a1: usize,
            a2: *mut u8,
            a3: usize,
            a4: *mut u8,
            a5: usize,
            a6: *mut u8,
            a7: usize,
            a8: *mut u8,
            a9: usize,
            a10: *mut u8,
            a11: usize,
        ) -> *mut u8 {
            $crate::component_direct::run_ctors_once();
            // SAFETY: the canonical ABI's call of this export.
            unsafe {
                $crate::component_direct::reconcile_with::<$rules, _>([
                    (a0, a1),
                    (a2, a3),
                    (a4, a5),
                    (a6, a7),
                    (a8, a9),
                    (a10, a11),
                ], $alloc)
            }
        }
    };
}

/// What wit-bindgen's exports do first: run the module's static constructors once (wasi-libc's
/// environment).
#[doc(hidden)]
pub fn run_ctors_once() {
    #[cfg(target_arch = "wasm32")]
    wit_bindgen::rt::run_ctors_once();
}

#[cfg(test)]
mod tests;
