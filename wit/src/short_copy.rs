//! Owned copies of short texts, copied a word at a time.
//!
//! Why: the shell copies each of the batch's shared texts (`reconcile-batch.texts`) into the
//! owned model once per use, ~14 per VM. Inside the component, `String::clone` copies through
//! `memory.copy`, which Cranelift compiles as a call into the host whatever the length, and
//! goes through `to_vec`'s general path; the texts are short (statuses, slugs, custom field
//! names and values), so up to [`WORDS_UP_TO`] bytes are copied here as at most four
//! overlapping words into an allocation of exactly their length, as `clone` makes.

use std::alloc::{Layout, alloc, handle_alloc_error};

/// The longest text copied word by word; longer ones go through `to_owned`.
pub(crate) const WORDS_UP_TO: usize = 32;

/// An owned copy of `s`, equal to `s.to_owned()`.
pub(crate) fn owned(s: &str) -> String {
    // SAFETY: `alloc` is the global allocator's.
    unsafe { owned_in(s, |l| alloc(l)) }
}

/// [`owned`], the copy's block (of up to [`WORDS_UP_TO`] bytes) from `alloc`.
///
/// # Safety
/// `alloc` must return a block of its (non-zero) layout that the global allocator frees, or
/// null.
#[inline(always)]
pub(crate) unsafe fn owned_in(s: &str, alloc: impl FnOnce(Layout) -> *mut u8) -> String {
    let n = s.len();
    if n == 0 || n > WORDS_UP_TO {
        return s.to_owned();
    }
    // `Vec<u8>`'s layout for capacity `n`, which `String::from_raw_parts` below requires.
    let Ok(layout) = Layout::array::<u8>(n) else {
        return s.to_owned();
    };
    // `layout` has a non-zero size (`n > 0`), as `alloc` requires.
    let dst = alloc(layout);
    if dst.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `dst` is a fresh allocation of `n` bytes, `s` is `n` bytes long (`1..=32`), so the
    // two do not overlap; the bytes copied are `s`'s, so they are UTF-8; the allocation's layout
    // is `Vec<u8>`'s for capacity `n` from the global allocator.
    unsafe {
        copy_short(s.as_ptr(), dst, n);
        String::from_raw_parts(dst, n, n)
    }
}

/// Copies `n` bytes (`1..=32`) from `src` to `dst` as overlapping words: every byte is written,
/// some twice with the same value.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `n` bytes, and they must not overlap.
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY (each call): `at + width <= n` (see the bounds of each arm).
    unsafe {
        match n {
            16.. => {
                word::<u64>(src, dst, 0);
                word::<u64>(src, dst, 8);
                word::<u64>(src, dst, n - 16);
                word::<u64>(src, dst, n - 8);
            }
            8.. => {
                word::<u64>(src, dst, 0);
                word::<u64>(src, dst, n - 8);
            }
            4.. => {
                word::<u32>(src, dst, 0);
                word::<u32>(src, dst, n - 4);
            }
            2.. => {
                word::<u16>(src, dst, 0);
                word::<u16>(src, dst, n - 2);
            }
            _ => word::<u8>(src, dst, 0),
        }
    }
}

/// Copies the `T` at byte `at` of `src` to byte `at` of `dst`, unaligned.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `at + size_of::<T>()` bytes.
#[inline(always)]
unsafe fn word<T: Copy>(src: *const u8, dst: *mut u8, at: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        let v = src.add(at).cast::<T>().read_unaligned();
        dst.add(at).cast::<T>().write_unaligned(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_copies_every_byte() {
        // Distinct bytes, so a byte copied from the wrong place shows.
        let all: String = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
        for n in 0..=all.len() {
            let s = &all[..n];
            let copy = owned(s);
            assert_eq!(copy, s, "length {n}");
            assert_eq!(copy.capacity(), n, "length {n}");
        }
    }

    #[test]
    fn multibyte_text_stays_utf8() {
        for s in [
            "é",
            "ü-tag",
            "ノード",
            "proxmox_ノード_été",
            "😀😀😀😀😀😀😀😀x",
        ] {
            assert_eq!(owned(s), s);
        }
    }
}
