//! Freeing the answers one block at a time: the walk [`post_return_with`](super::post_return_with)
//! makes when its [`FreeBlocks`] cannot free them unseen, each string and vector handed to it.

use std::alloc::Layout;

use super::{Answer, FreeBlocks};
use crate::children as c;
use crate::model;

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

pub(super) unsafe fn free_vec<T, F: FreeBlocks>(
    f: &mut F,
    v: Vec<T>,
    mut each: impl FnMut(&mut F, T),
) {
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

pub(super) fn free_answer<F: FreeBlocks>(f: &mut F, a: Answer) {
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
