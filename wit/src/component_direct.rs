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
//! world the host typechecks at load) is that file's. Every offset (`component_direct/layout.rs`)
//! follows from the canonical ABI's rules applied to 0.4's records in declared order (`layout`),
//! with the pointer size as wit-bindgen's own glue computes it, so the layout is the same
//! natively; the tests (`component_direct/tests.rs`) run this export and wit-bindgen's generated
//! one on the same lowered batch natively and read both answers back against the rules' own.
//!
//! Its parts: `layout` (the canonical ABI's offsets of 0.4's records), `lift` (the batch read
//! into the model), `lower` (the answers written into one block) and `free` (the post-return's
//! walk handing each of the answers' blocks to a [`FreeBlocks`]).
//!
//! Modules built with [`export_rules!`](crate::export_rules) keep wit-bindgen's glue.

mod free;
mod layout;
mod lift;
mod lower;

use std::alloc::{Layout, alloc, dealloc};

use crate::model::{self, RuleSet};
use free::{free_answer, free_vec};
use layout::{BLOCK_ALIGN, I, KEEP_AT, P, TALLY_AT};
use lift::{Texts, context, free_list, get, input};

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
    lower::lower(answers)
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

type Answer = Result<model::Reconciled, model::RuleError>;

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
