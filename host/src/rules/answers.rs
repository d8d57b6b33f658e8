//! The answers of WIT 0.4's `reconcile`, lifted straight from the module's memory into the
//! host's model (`Reconciled`, `RuleError`).
//!
//! Why: wasmtime's derived lift reads each field through the general per-type path (each
//! field's offset computed, each string's encoding looked up, each list element bounds-checked
//! apart) into the bindings' types, which the host then converted into the model: 8.1k
//! instructions per VM of the default rules' 74k (BENCHMARKS.md, session 21), none of which the
//! same rules compiled natively pay. Here the answer list is walked with the layout of 0.4's
//! frozen types (checked against the bindings' own ABI when this compiles; the bindings'
//! typecheck still checks the module's types at load), and each string is bounds-checked,
//! charged to wasmtime's host-call fuel and validated as UTF-8 as wasmtime does, then built once
//! as the model's `String`.
//!
//! A module that declares another string encoding (the canonical ABI allows UTF-16) is lifted
//! by wasmtime's own path and converted as before.
//!
//! The `ComponentType`/`Lift` items used here are hidden from wasmtime's docs and outside its
//! stability promise; the workspace pins wasmtime exactly, so a change there fails to compile
//! here rather than misbehaving.

use guest_default::children as c;
use guest_default::model as m;
use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift};

use super::convert::v4 as cv;
use super::v0_4_0::types as w;

/// How the bindings type (and would lift) `reconcile`'s answer.
type Generic = Vec<Result<w::Reconciled, w::RuleError>>;

/// One answer per guest, in the model's types: `reconcile`'s result as the host reads it.
pub(crate) struct Answers(pub(crate) Vec<Result<m::Reconciled, m::RuleError>>);

// SAFETY: the same type, ABI and lowered form as `Generic`, which wasmtime implements.
unsafe impl ComponentType for Answers {
    type Lower = <Generic as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <Generic as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Generic as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: reads only through bounds-checked slices of the module's memory.
unsafe impl Lift for Answers {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        if !is_utf8(cx) {
            return <Generic as Lift>::linear_lift_from_flat(cx, ty, src).map(from_generic);
        }
        let (ptr, len) = (src[0].get_u32() as usize, src[1].get_u32() as usize);
        lift(cx, ptr, len)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        if !is_utf8(cx) {
            return <Generic as Lift>::linear_lift_from_memory(cx, ty, bytes).map(from_generic);
        }
        lift(cx, u32_at(bytes, 0), u32_at(bytes, 4))
    }
}

fn is_utf8(cx: &LiftContext<'_>) -> bool {
    matches!(cx.options().string_encoding, StringEncoding::Utf8)
}

/// The answers lifted the general way, converted.
fn from_generic(g: Generic) -> Answers {
    Answers(
        g.into_iter()
            .map(|r| r.map(cv::reconciled_from).map_err(cv::rule_error_from))
            .collect(),
    )
}

fn lift(cx: &mut LiftContext<'_>, ptr: usize, len: usize) -> wasmtime::Result<Answers> {
    let memory = cx.memory();
    let mut r = Reader {
        memory,
        charge: |n: usize| cx.consume_fuel(n),
    };
    answers(&mut r, ptr, len).map(Answers)
}

// The canonical ABI's sizes of 0.4's answer types in a 32-bit memory; the offsets below follow
// from them (a variant's payload after its case byte, at its alignment).
/// `result<reconciled, rule-error>`: the case byte, the payload at 4.
const RESULT: usize = 44;
/// `field-change`: `field` (a `field-name`, 12) at 0, `old` (`option<string>`, 12) at 12,
/// `new` at 24.
const FIELD_CHANGE: usize = 32;
/// `child-change`: `kind` at 0, `key` at 4, `parent` at 12, `op` (aligned to 8: the case byte,
/// the id at 8) at 24, `changes` at 40.
const CHILD_CHANGE: usize = 48;
/// `object-spec`: four strings.
const OBJECT_SPEC: usize = 32;

const _: () = {
    assert!(<Result<w::Reconciled, w::RuleError> as ComponentType>::SIZE32 == RESULT);
    assert!(<Result<w::Reconciled, w::RuleError> as ComponentType>::ALIGN32 == 4);
    assert!(<w::Reconciled as ComponentType>::SIZE32 == 40);
    assert!(<w::ReconciledVm as ComponentType>::SIZE32 == 36);
    assert!(<w::RuleError as ComponentType>::SIZE32 == 16);
    assert!(<w::FieldChange as ComponentType>::SIZE32 == FIELD_CHANGE);
    assert!(<w::FieldChange as ComponentType>::ALIGN32 == 4);
    assert!(<w::FieldName as ComponentType>::SIZE32 == 12);
    assert!(<w::ChildChange as ComponentType>::SIZE32 == CHILD_CHANGE);
    assert!(<w::ChildChange as ComponentType>::ALIGN32 == 8);
    assert!(<w::ChildOp as ComponentType>::SIZE32 == 16);
    assert!(<w::ObjectSpec as ComponentType>::SIZE32 == OBJECT_SPEC);
    assert!(<w::ObjectSpec as ComponentType>::ALIGN32 == 4);
};

/// The names of `field-name`'s cases without a payload, in the order 0.4 declares them (its
/// case numbers); `custom-field` is case 28, `other` 29.
pub(crate) const FIELD_NAMES: [&str; 28] = [
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

/// The module's memory, and what charges the host-call fuel for what is copied out of it.
struct Reader<'a, F> {
    memory: &'a [u8],
    charge: F,
}

type Lifted<T> = wasmtime::Result<T>;

fn bad(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("invalid {what} in the module's answer"))
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(word)
}

impl<'a, F: FnMut(usize) -> Lifted<()>> Reader<'a, F> {
    /// The `len` elements of `size` bytes at `ptr`, checked as wasmtime checks a list; the
    /// fuel is charged for their host form (`host_size` bytes each).
    fn list(
        &mut self,
        ptr: usize,
        len: usize,
        size: usize,
        align: usize,
        host_size: usize,
    ) -> Lifted<&'a [u8]> {
        let end = len
            .checked_mul(size)
            .and_then(|n| ptr.checked_add(n))
            .filter(|&end| end <= self.memory.len())
            .ok_or_else(|| wasmtime::Error::msg("list pointer/length out of bounds of memory"))?;
        if !ptr.is_multiple_of(align) {
            return Err(wasmtime::Error::msg("list pointer is not aligned"));
        }
        match len.checked_mul(host_size) {
            Some(n) => (self.charge)(n)?,
            None => return Err(wasmtime::Error::msg("list too long")),
        }
        Ok(&self.memory[ptr..end])
    }

    /// The list whose pointer and length are the 8 bytes at `at`, each element read by `one`.
    fn list_of<T>(
        &mut self,
        at: &[u8],
        size: usize,
        align: usize,
        mut one: impl FnMut(&mut Self, &'a [u8]) -> Lifted<T>,
    ) -> Lifted<Vec<T>> {
        let (ptr, len) = (u32_at(at, 0), u32_at(at, 4));
        let bytes = self.list(ptr, len, size, align, size_of::<T>())?;
        let mut out = Vec::with_capacity(len);
        for e in bytes.chunks_exact(size) {
            out.push(one(self, e)?);
        }
        Ok(out)
    }

    /// The string whose pointer and length are the 8 bytes at `at`.
    fn string(&mut self, at: &[u8]) -> Lifted<String> {
        let (ptr, len) = (u32_at(at, 0), u32_at(at, 4));
        let end = ptr
            .checked_add(len)
            .filter(|&end| end <= self.memory.len())
            .ok_or_else(|| wasmtime::Error::msg("string pointer/length out of bounds of memory"))?;
        (self.charge)(len)?;
        let bytes = &self.memory[ptr..end];
        if short_ascii(bytes) {
            // SAFETY: ASCII is UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) }.to_owned());
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(wasmtime::Error::msg(format!(
                "invalid utf-8 in the module's answer: {e}"
            ))),
        }
    }

    /// An `option<string>` (12 bytes: the case byte, the string at 4).
    fn option_string(&mut self, at: &[u8]) -> Lifted<Option<String>> {
        match at[0] {
            0 => Ok(None),
            1 => self.string(&at[4..12]).map(Some),
            _ => Err(bad("option discriminant")),
        }
    }
}

/// Whether `b` is ASCII, answered for up to 16 bytes with two overlapping word tests (most of
/// an answer's strings: field values, keys, names); `false` for a longer one, which
/// `from_utf8` then checks. Why: on such short strings `from_utf8`'s setup costs more than
/// the check itself (~35 instructions a string against ~10 here; BENCHMARKS.md, session 22).
fn short_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"));
    let half = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"));
    match n {
        17.. => false,
        8.. => (word(0) | word(n - 8)) & HIGH == 0,
        4.. => (half(0) | half(n - 4)) & 0x8080_8080 == 0,
        1.. => (b[0] | b[n / 2] | b[n - 1]) < 0x80,
        0 => true,
    }
}

fn answers<F: FnMut(usize) -> Lifted<()>>(
    r: &mut Reader<'_, F>,
    ptr: usize,
    len: usize,
) -> Lifted<Vec<Result<m::Reconciled, m::RuleError>>> {
    let host_size = size_of::<Result<m::Reconciled, m::RuleError>>();
    let bytes = r.list(ptr, len, RESULT, 4, host_size)?;
    let mut out = Vec::with_capacity(len);
    for e in bytes.chunks_exact(RESULT) {
        out.push(match e[0] {
            0 => Ok(reconciled(r, &e[4..])?),
            1 => Err(m::RuleError {
                code: r.string(&e[4..12])?,
                message: r.string(&e[12..20])?,
            }),
            _ => return Err(bad("result discriminant")),
        });
    }
    Ok(out)
}

/// A `reconciled` (40 bytes: the case byte, the payload at 4).
fn reconciled<F: FnMut(usize) -> Lifted<()>>(
    r: &mut Reader<'_, F>,
    b: &[u8],
) -> Lifted<m::Reconciled> {
    match b[0] {
        0 => {
            // `reconciled-vm`: `name` at 0, `needs` at 12, `changes` at 20, `children` at 28.
            let v = &b[4..40];
            Ok(m::Reconciled::Vm(m::ReconciledVm {
                name: r.option_string(&v[0..12])?,
                needs: r.list_of(&v[12..20], OBJECT_SPEC, 4, object_spec)?,
                changes: r.list_of(&v[20..28], FIELD_CHANGE, 4, field_change)?,
                children: r.list_of(&v[28..36], CHILD_CHANGE, 8, child_change)?,
            }))
        }
        1 => Ok(m::Reconciled::Skip(r.string(&b[4..12])?)),
        _ => Err(bad("reconciled discriminant")),
    }
}

fn object_spec<F: FnMut(usize) -> Lifted<()>>(
    r: &mut Reader<'_, F>,
    b: &[u8],
) -> Lifted<m::ObjectSpec> {
    Ok(m::ObjectSpec {
        kind: r.string(&b[0..8])?,
        key: r.string(&b[8..16])?,
        name: r.string(&b[16..24])?,
        attrs: m::JsonText(r.string(&b[24..32])?),
    })
}

/// A `field-change`, its name and `null` old value as the model has them.
fn field_change<F: FnMut(usize) -> Lifted<()>>(
    r: &mut Reader<'_, F>,
    b: &[u8],
) -> Lifted<m::FieldChange> {
    let field = match b[0] as usize {
        n if n < FIELD_NAMES.len() => FIELD_NAMES[n].to_owned(),
        28 => {
            let name = r.string(&b[4..12])?;
            let mut field = String::with_capacity(CUSTOM_FIELDS.len() + name.len());
            field.push_str(CUSTOM_FIELDS);
            field.push_str(&name);
            field
        }
        29 => r.string(&b[4..12])?,
        _ => return Err(bad("field-name discriminant")),
    };
    let old = match r.option_string(&b[12..24])? {
        Some(old) => old,
        None => "null".to_owned(),
    };
    Ok(m::FieldChange {
        field,
        old: m::JsonText(old),
        new: m::JsonText(r.string(&b[24..32])?),
    })
}

/// The prefix of a custom field's change name (`custom_fields.proxmox_vm_id`).
const CUSTOM_FIELDS: &str = "custom_fields.";

fn child_change<F: FnMut(usize) -> Lifted<()>>(
    r: &mut Reader<'_, F>,
    b: &[u8],
) -> Lifted<c::ChildChange> {
    let kind = match b[0] {
        0 => c::ChildKind::Interface,
        1 => c::ChildKind::MacAddress,
        2 => c::ChildKind::IpAddress,
        3 => c::ChildKind::VirtualDisk,
        _ => return Err(bad("child-kind discriminant")),
    };
    let op = match b[24] {
        0 => c::ChildOp::Create,
        1 => c::ChildOp::Update(u64_at(b, 32)),
        2 => c::ChildOp::Delete(u64_at(b, 32)),
        _ => return Err(bad("child-op discriminant")),
    };
    Ok(c::ChildChange {
        kind,
        key: r.string(&b[4..12])?,
        parent: r.option_string(&b[12..24])?,
        op,
        changes: r.list_of(&b[40..48], FIELD_CHANGE, 4, field_change)?,
    })
}

#[cfg(test)]
mod tests;
