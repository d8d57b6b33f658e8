//! Reading the batch: `reconcile`'s parameters lifted from the canonical ABI's layout straight
//! into `model` (the context, each input, its network and NetBox record), the shared texts read
//! in place, and the host's lists freed once read.

use std::alloc::{Layout, dealloc};

use super::AllocBlocks;
use super::layout::{G, I, KNOWN, P, PAIR, POLICY, R};
use crate::children as c;
use crate::model;
use crate::short_copy;

/// Reads the `T` at byte `at` of `base`.
///
/// # Safety
/// `base + at` must be valid for reads of a `T`, aligned.
#[inline(always)]
pub(super) unsafe fn get<T: Copy>(base: *const u8, at: usize) -> T {
    unsafe { base.add(at).cast::<T>().read() }
}

/// The string or list whose pointer and length are at `at`.
#[inline(always)]
pub(super) unsafe fn ptr_len(base: *const u8, at: usize) -> (*mut u8, usize) {
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
pub(super) unsafe fn free_list(ptr: *mut u8, len: usize, size: usize, align: usize) {
    if len != 0 {
        unsafe { dealloc(ptr, Layout::from_size_align_unchecked(len * size, align)) }
    }
}

/// The batch's shared texts, read in place (borrowed for the call, freed at its end).
pub(super) struct Texts<'a, A> {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
    pub(super) alloc: &'a A,
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

pub(super) unsafe fn context(
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
pub(super) unsafe fn input<A: AllocBlocks>(
    texts: &Texts<'_, A>,
    e: *const u8,
) -> model::JsonReconcileInput {
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
