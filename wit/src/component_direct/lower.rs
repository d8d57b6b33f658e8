//! Writing the answers: the model's answers lowered as the canonical ABI's
//! `list<result<reconciled, rule-error>>` into one block that also keeps them, each nested list
//! placed by a [`Cursor`] that counts the heap blocks the answers own.

use std::alloc::{Layout, alloc, handle_alloc_error};

use super::Answer;
use super::layout::{
    BLOCK_ALIGN, CC, CUSTOM_FIELD, CUSTOM_FIELDS, ERR, FC, HEAD, KEEP_AT, OTHER, P, RESULT, RET_AT,
    SPEC, TALLY_AT, VM,
};
use crate::children as c;
use crate::model;

/// Writes `v` at byte `at` of `base`.
///
/// # Safety
/// `base + at` must be valid for writes of a `T`, aligned.
#[inline(always)]
pub(super) unsafe fn set<T>(base: *mut u8, at: usize, v: T) {
    unsafe { base.add(at).cast::<T>().write(v) }
}

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
/// far own (what [`free_answer`](super::free::free_answer) would free of them; the answers' own
/// vector aside).
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
pub(super) unsafe fn put_list(base: *mut u8, at: usize, ptr: *mut u8, len: usize) {
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
pub(super) fn lower(answers: Vec<Answer>) -> *mut u8 {
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
pub(super) fn field_case(name: &str) -> (u8, Option<&str>) {
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
