//! Asking the CPU for a VM's key inputs a few VMs before they are hashed.
//!
//! Why: a memoized rerun's rules step is the keys, and a key reads ~1 KB per VM spread over a
//! dozen allocations made at different times (the guest's texts, the packed config and network
//! answer, the compact NetBox record): hashing is cheap, waiting for each of those cache misses
//! in turn was most of the step. Prefetches let the misses of the next VMs overlap the hashing
//! of this one. They are hints only: they change no byte that is hashed, and a prefetch of an
//! address that is not mapped does nothing.
//!
//! Two stages, because the texts' addresses are read from the records: the records first, then
//! (once those are likely in cache) the texts they point to.

use super::{GuestKey, KeyInput, NetworkKey};
use guest_default::children::NetworkUnknown;

/// VMs between asking for a VM's texts and hashing them: enough misses in flight to cover a
/// memory round trip while each VM's hashing takes a fraction of one.
pub const TEXTS_AHEAD: usize = 4;
/// VMs between asking for a VM's records (guest, NetBox record) and asking for their texts.
pub const RECORDS_AHEAD: usize = 2 * TEXTS_AHEAD;

/// Bytes of one text asked for at most: past that the hardware's own prefetcher, following the
/// reads, does it.
const MAX_TEXT: usize = 2048;
/// Bytes a cache line holds on the CPUs this runs on.
const LINE: usize = 64;

/// First stage: the records whose fields hold the texts' addresses (the guest's are already in
/// the item: its key is built from the read guest before the batch is hashed), and the
/// children's rows.
pub fn records(item: &KeyInput<'_>) {
    let (_, _, _, current, _, children) = *item;
    if let Some(vm) = current {
        value(vm);
    }
    // The children's packed rows (their texts are read through them, and not asked for).
    for rows in children.iter().flat_map(|c| c.packed()) {
        text(rows);
    }
}

/// Second stage: every text the key of `item` will hash.
pub fn texts(item: &KeyInput<'_>) {
    let (_, guest, (config, ends), current, network, _) = *item;
    let GuestKey {
        cluster,
        node,
        name,
        status,
        tags,
        pool,
        config: pairs,
        ..
    } = guest;
    for s in [cluster, node, status] {
        text(s.as_bytes());
    }
    for s in [name, tags, pool].into_iter().flatten() {
        text(s.as_bytes());
    }
    // Read guests keep their config packed; `pairs` is empty then.
    if let Some((k, v)) = pairs.first() {
        text(k.as_bytes());
        text(v.as_bytes());
    }
    text(config.as_bytes());
    slice(ends);
    match network {
        NetworkKey::Agent(t) | NetworkKey::LxcInterfaces(t) => text(t.as_bytes()),
        NetworkKey::Unknown(NetworkUnknown { detail, .. }) => text(detail.as_bytes()),
    }
    if let Some(vm) = current {
        let parts = vm.parts();
        text(parts.text.as_bytes());
        slice(parts.ends);
    }
}

fn value<T>(v: &T) {
    let bytes = std::mem::size_of_val(v);
    let start = std::ptr::from_ref(v).cast::<u8>();
    lines(start, bytes);
}

fn slice<T>(s: &[T]) {
    lines(s.as_ptr().cast(), std::mem::size_of_val(s));
}

fn text(t: &[u8]) {
    lines(t.as_ptr(), t.len());
}

/// Every cache line of `len` bytes from `start` (at most [`MAX_TEXT`]).
fn lines(start: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let len = len.min(MAX_TEXT);
    let mut offset = 0;
    while offset < len {
        line(start.wrapping_add(offset));
        offset += LINE;
    }
    // The last line, when `start` is not at a line's start.
    line(start.wrapping_add(len - 1));
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn line(p: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is a hint: it never faults (whatever the address) and has no effect
    // the program can observe but timing.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn line(_: *const u8) {}
