//! WIT 0.4's `reconcile-batch` written into the module's memory by hand.
//!
//! Why: wasmtime's derived lowering stores each field of each record through the general
//! per-type path (the field's offset computed, the memory looked up again for every field), a
//! part of the default rules' crossing that the same rules compiled natively do not pay
//! (BENCHMARKS.md, session 21). Here each VM's strings and lists are
//! allocated in the module first (one `realloc` call each, as the canonical ABI requires),
//! then its fixed-size record is written with one look-up of the memory. Offsets follow from
//! the bindings' own ABI of each field, in the order 0.4 declares them; the records' sizes are
//! checked against the bindings' when this compiles.
//!
//! A module that declares another string encoding than UTF-8 is lowered by wasmtime's own
//! path. Like `answers`, this uses wasmtime's hidden `ComponentType`/`Lower` items, which the
//! exact pin of wasmtime keeps stable.

use std::mem::MaybeUninit;

use wasmtime::ValRaw;
use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

use super::v0_4_0::types as w;

/// The batch `reconcile` takes, lowered by hand (see the module's docs).
pub(crate) struct BatchIn<'a>(pub(crate) &'a w::ReconcileBatch);

// SAFETY: the type, ABI and flat form are the bindings' `reconcile-batch`.
unsafe impl ComponentType for BatchIn<'_> {
    type Lower = <w::ReconcileBatch as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <w::ReconcileBatch as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <w::ReconcileBatch as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes only within allocations `realloc` returned (checked by wasmtime against the
// memory's bounds) or the parameter area wasmtime hands over.
unsafe impl Lower for BatchIn<'_> {
    /// The call's parameters fit the flat form: the batch is the two lists' pointers and
    /// lengths, their contents in memory.
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        dst: &mut MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        if !matches!(cx.options().string_encoding, StringEncoding::Utf8) {
            return self.0.linear_lower_to_flat(cx, ty, dst);
        }
        let (texts, items) = (texts(cx, &self.0.texts)?, items(cx, &self.0.items)?);
        // Pointers and lengths as 64-bit values, as wasmtime writes them.
        let flat = [texts.0, texts.1, items.0, items.1].map(|v| ValRaw::i64(v as i64));
        // SAFETY: the bindings' lowered form of a two-field record is its fields' forms in
        // order (`#[repr(C)]`), each a list's two `ValRaw`s: four `ValRaw`s (size checked
        // below).
        unsafe {
            dst.as_mut_ptr().cast::<[ValRaw; 4]>().write(flat);
        }
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        if !matches!(cx.options().string_encoding, StringEncoding::Utf8) {
            return self.0.linear_lower_to_memory(cx, ty, offset);
        }
        let texts = texts(cx, &self.0.texts)?;
        let items = items(cx, &self.0.items)?;
        let m = cx.as_slice_mut();
        pair(m, offset, texts);
        pair(m, offset + 8, items);
        Ok(())
    }
}

/// The largest string the canonical ABI can carry (wasmtime's own bound).
const MAX_STRING_BYTES: usize = (1 << 31) - 1;

type Lowered<T> = wasmtime::Result<T>;

/// Where each field of a record sits, from the fields' (size, align) in declared order
/// followed by a `(0, 1)` placeholder, whose slot gets the record's size.
const fn layout<const N: usize>(fields: [(u32, u32); N]) -> [usize; N] {
    let mut at = [0; N];
    let mut off = 0usize;
    let mut align = 1usize;
    let mut i = 0;
    while i < N {
        let a = fields[i].1 as usize;
        if a > align {
            align = a;
        }
        off = off.next_multiple_of(a);
        at[i] = off;
        off += fields[i].0 as usize;
        i += 1;
    }
    at[N - 1] = off.next_multiple_of(align);
    at
}

macro_rules! abi {
    ($t:ty) => {
        (
            <$t as ComponentType>::ABI.size32,
            <$t as ComponentType>::ABI.align32,
        )
    };
}

/// Where an `option<T>`'s value sits after its case byte.
const fn payload(align: u32) -> usize {
    1usize.next_multiple_of(align as usize)
}

/// `guest-input`'s fields (and its size last).
const G: [usize; 16] = layout([
    abi!(u32),              // cluster
    abi!(u32),              // vmid
    abi!(w::GuestKind),     // kind
    abi!(u32),              // node
    abi!(Option<String>),   // name
    abi!(u32),              // status
    abi!(bool),             // template
    abi!(Option<f64>),      // maxcpu
    abi!(Option<u64>),      // maxmem
    abi!(Option<u64>),      // maxdisk
    abi!(Option<u32>),      // tags
    abi!(Option<u32>),      // pool
    abi!(String),           // config
    abi!(bool),             // config-read
    abi!(w::NetworkSource), // network
    (0, 1),                 // (size)
]);
/// `netbox-record`'s fields (and its size last).
const R: [usize; 21] = layout([
    abi!(u64),             // id
    abi!(String),          // name
    abi!(u32),             // status
    abi!(Option<u32>),     // cluster
    abi!(Option<u32>),     // site
    abi!(Option<u32>),     // device
    abi!(Option<u32>),     // role
    abi!(Option<u32>),     // vm-type
    abi!(Option<u32>),     // platform
    abi!(Option<u32>),     // tenant
    abi!(Option<f64>),     // vcpus
    abi!(Option<u64>),     // memory
    abi!(Option<u64>),     // disk
    abi!(Option<String>),  // description
    abi!(Option<String>),  // comments
    abi!(Option<String>),  // serial
    abi!(Option<u32>),     // start-on-boot
    abi!(Vec<u32>),        // tags
    abi!(Vec<(u32, u32)>), // custom-fields
    abi!(Option<String>),  // children
    (0, 1),                // (size)
]);
/// `reconcile-input`'s fields (and its size last).
const I: [usize; 3] = layout([abi!(w::GuestInput), abi!(Option<w::NetboxRecord>), (0, 1)]);
/// Where an `option<netbox-record>`'s record sits.
const RECORD_AT: usize = payload(<w::NetboxRecord as ComponentType>::ABI.align32);
/// `option<f64>`'s and `option<u64>`'s value.
const WIDE_AT: usize = payload(8);
/// `network-source`'s payload (every case's payload aligns to 4).
const NETWORK_AT: usize = 4;

const _: () = {
    assert!(G[15] == <w::GuestInput as ComponentType>::SIZE32);
    assert!(R[20] == <w::NetboxRecord as ComponentType>::SIZE32);
    assert!(I[2] == <w::ReconcileInput as ComponentType>::SIZE32);
    assert!(<w::ReconcileInput as ComponentType>::ALIGN32 == 8);
    assert!(<w::NetworkSource as ComponentType>::SIZE32 == 16);
    assert!(<w::NetworkUnknown as ComponentType>::SIZE32 == 12);
    assert!(<Option<u32> as ComponentType>::SIZE32 == 8);
    assert!(<Option<String> as ComponentType>::SIZE32 == 12);
    assert!(size_of::<<w::ReconcileBatch as ComponentType>::Lower>() == size_of::<[ValRaw; 4]>());
    assert!(align_of::<<w::ReconcileBatch as ComponentType>::Lower>() == align_of::<ValRaw>());
};

fn put(m: &mut [u8], at: usize, bytes: &[u8]) {
    m[at..at + bytes.len()].copy_from_slice(bytes);
}

fn u32_to(m: &mut [u8], at: usize, v: u32) {
    put(m, at, &v.to_le_bytes());
}

/// A string's or list's pointer and length.
fn pair(m: &mut [u8], at: usize, (ptr, len): (usize, usize)) {
    u32_to(m, at, ptr as u32);
    u32_to(m, at + 4, len as u32);
}

/// An `option<T>` of a 4-byte `T` (`text-index`).
fn opt_u32(m: &mut [u8], at: usize, v: Option<u32>) {
    m[at] = u8::from(v.is_some());
    if let Some(v) = v {
        u32_to(m, at + 4, v);
    }
}

/// An `option<T>` of an 8-byte `T`.
fn opt_wide(m: &mut [u8], at: usize, v: Option<[u8; 8]>) {
    m[at] = u8::from(v.is_some());
    if let Some(v) = v {
        put(m, at + WIDE_AT, &v);
    }
}

fn opt_pair(m: &mut [u8], at: usize, v: Option<(usize, usize)>) {
    m[at] = u8::from(v.is_some());
    if let Some(p) = v {
        pair(m, at + 4, p);
    }
}

/// Allocates `bytes` in the module (`align`), as the canonical ABI's `realloc(0, 0, ..)`.
fn alloc<T>(cx: &mut LowerContext<'_, T>, align: u32, bytes: usize) -> Lowered<usize> {
    cx.realloc(0, 0, align, bytes)
}

/// Copies a string into the module: its pointer and length.
fn string<T>(cx: &mut LowerContext<'_, T>, s: &str) -> Lowered<(usize, usize)> {
    if s.len() > MAX_STRING_BYTES {
        return Err(wasmtime::Error::msg(format!(
            "string length of {} too large to copy into wasm",
            s.len()
        )));
    }
    let ptr = alloc(cx, 1, s.len())?;
    put(cx.as_slice_mut(), ptr, s.as_bytes());
    Ok((ptr, s.len()))
}

fn opt_string<T>(cx: &mut LowerContext<'_, T>, s: Option<&str>) -> Lowered<Option<(usize, usize)>> {
    s.map(|s| string(cx, s)).transpose()
}

/// A list of `len` elements of `size` bytes (`align`), each written by `each` into the
/// module's memory at its offset.
fn list<T, E>(
    cx: &mut LowerContext<'_, T>,
    items: &[E],
    size: usize,
    align: u32,
    mut each: impl FnMut(&mut [u8], usize, &E),
) -> Lowered<(usize, usize)> {
    let bytes = items
        .len()
        .checked_mul(size)
        .ok_or_else(|| wasmtime::Error::msg("size overflow copying a list"))?;
    let ptr = alloc(cx, align, bytes)?;
    let m = cx.as_slice_mut();
    for (i, e) in items.iter().enumerate() {
        each(m, ptr + i * size, e);
    }
    Ok((ptr, items.len()))
}

/// `reconcile-batch.texts`: the list, then each text (one `realloc` each).
fn texts<T>(cx: &mut LowerContext<'_, T>, texts: &[String]) -> Lowered<(usize, usize)> {
    let (ptr, len) = list(cx, texts, 8, 4, |_, _, _| {})?;
    for (i, t) in texts.iter().enumerate() {
        let s = string(cx, t)?;
        pair(cx.as_slice_mut(), ptr + i * 8, s);
    }
    Ok((ptr, len))
}

/// `reconcile-batch.items`: the list, then each input's strings and lists, then its record.
fn items<T>(cx: &mut LowerContext<'_, T>, items: &[w::ReconcileInput]) -> Lowered<(usize, usize)> {
    let (ptr, len) = list(cx, items, I[2], 8, |_, _, _| {})?;
    for (i, item) in items.iter().enumerate() {
        input(cx, ptr + i * I[2], item)?;
    }
    Ok((ptr, len))
}

fn input<T>(cx: &mut LowerContext<'_, T>, at: usize, item: &w::ReconcileInput) -> Lowered<()> {
    let g = &item.guest;
    let name = opt_string(cx, g.name.as_deref())?;
    let config = string(cx, &g.config)?;
    let (case, text, reason) = match &g.network {
        w::NetworkSource::Agent(t) => (0u8, t, None),
        w::NetworkSource::LxcInterfaces(t) => (1, t, None),
        w::NetworkSource::Unknown(u) => (2, &u.detail, Some(reason(u.reason))),
    };
    let network = string(cx, text)?;
    let current = match &item.current {
        Some(r) => Some(record_parts(cx, r)?),
        None => None,
    };
    let m = cx.as_slice_mut();
    let gm = &mut m[at..at + I[2]];
    u32_to(gm, G[0], g.cluster);
    u32_to(gm, G[1], g.vmid);
    gm[G[2]] = match g.kind {
        w::GuestKind::Qemu => 0,
        w::GuestKind::Lxc => 1,
    };
    u32_to(gm, G[3], g.node);
    opt_pair(gm, G[4], name);
    u32_to(gm, G[5], g.status);
    gm[G[6]] = u8::from(g.template);
    opt_wide(gm, G[7], g.maxcpu.map(f64::to_le_bytes));
    opt_wide(gm, G[8], g.maxmem.map(u64::to_le_bytes));
    opt_wide(gm, G[9], g.maxdisk.map(u64::to_le_bytes));
    opt_u32(gm, G[10], g.tags);
    opt_u32(gm, G[11], g.pool);
    pair(gm, G[12], config);
    gm[G[13]] = u8::from(g.config_read);
    gm[G[14]] = case;
    match reason {
        // `network-unknown`: the reason, then the detail at 4.
        Some(r) => {
            gm[G[14] + NETWORK_AT] = r;
            pair(gm, G[14] + NETWORK_AT + 4, network);
        }
        None => pair(gm, G[14] + NETWORK_AT, network),
    }
    match (&item.current, current) {
        (Some(r), Some(parts)) => {
            gm[I[1]] = 1;
            record(&mut gm[I[1] + RECORD_AT..], r, parts);
        }
        _ => gm[I[1]] = 0,
    }
    Ok(())
}

fn reason(r: w::NetworkUnknownReason) -> u8 {
    use w::NetworkUnknownReason as N;
    match r {
        N::AgentOff => 0,
        N::NotRunning => 1,
        N::AgentNotRunning => 2,
        N::NoPermission => 3,
        N::TimedOut => 4,
        N::NotAsked => 5,
        N::OtherError => 6,
    }
}

/// What a record's strings and lists were lowered to.
struct RecordParts {
    name: (usize, usize),
    description: Option<(usize, usize)>,
    comments: Option<(usize, usize)>,
    serial: Option<(usize, usize)>,
    tags: (usize, usize),
    custom_fields: (usize, usize),
    children: Option<(usize, usize)>,
}

fn record_parts<T>(cx: &mut LowerContext<'_, T>, r: &w::NetboxRecord) -> Lowered<RecordParts> {
    Ok(RecordParts {
        name: string(cx, &r.name)?,
        description: opt_string(cx, r.description.as_deref())?,
        comments: opt_string(cx, r.comments.as_deref())?,
        serial: opt_string(cx, r.serial.as_deref())?,
        tags: list(cx, &r.tags, 4, 4, |m, at, &t| u32_to(m, at, t))?,
        custom_fields: list(cx, &r.custom_fields, 8, 4, |m, at, &(n, v)| {
            u32_to(m, at, n);
            u32_to(m, at + 4, v);
        })?,
        children: opt_string(cx, r.children.as_deref())?,
    })
}

/// A `netbox-record` at the start of `m`.
fn record(m: &mut [u8], r: &w::NetboxRecord, p: RecordParts) {
    put(m, R[0], &r.id.to_le_bytes());
    pair(m, R[1], p.name);
    u32_to(m, R[2], r.status);
    opt_u32(m, R[3], r.cluster);
    opt_u32(m, R[4], r.site);
    opt_u32(m, R[5], r.device);
    opt_u32(m, R[6], r.role);
    opt_u32(m, R[7], r.vm_type);
    opt_u32(m, R[8], r.platform);
    opt_u32(m, R[9], r.tenant);
    opt_wide(m, R[10], r.vcpus.map(f64::to_le_bytes));
    opt_wide(m, R[11], r.memory.map(u64::to_le_bytes));
    opt_wide(m, R[12], r.disk.map(u64::to_le_bytes));
    opt_pair(m, R[13], p.description);
    opt_pair(m, R[14], p.comments);
    opt_pair(m, R[15], p.serial);
    opt_u32(m, R[16], r.start_on_boot);
    pair(m, R[17], p.tags);
    pair(m, R[18], p.custom_fields);
    opt_pair(m, R[19], p.children);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_canonical_abi_puts_them() {
        // Each field at its alignment, the size rounded to the largest one.
        assert_eq!(
            layout([(4, 4), (1, 1), (8, 8), (1, 1), (0, 1)]),
            [0, 4, 8, 16, 24]
        );
        // 0.4's records, worked out by hand from the canonical ABI (an `option<T>` is its case
        // byte and `T` at `T`'s alignment; a string or list two 32-bit words).
        assert_eq!(
            G,
            [
                0, 4, 8, 12, 16, 28, 32, 40, 56, 72, 88, 96, 104, 112, 116, 136
            ]
        );
        assert_eq!(
            R,
            [
                0, 8, 16, 20, 28, 36, 44, 52, 60, 68, 80, 96, 112, 128, 140, 152, 164, 172, 180,
                188, 200
            ]
        );
        assert_eq!(I, [0, 136, 344]);
        assert_eq!((RECORD_AT, WIDE_AT), (8, 8));
    }
}
