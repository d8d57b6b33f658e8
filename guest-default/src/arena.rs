//! A bump allocator for the WASM component, layered on the system allocator (dlmalloc).
//!
//! Why: a batch call allocates tens of thousands of small blocks (the host copies every input
//! string in through `cabi_realloc`, the rules build every output string) and frees nearly all
//! of them before the call ends (inputs dropped during the call, outputs in the post-return).
//! dlmalloc's malloc and free were the largest cost of a call; a bump pointer is a few
//! instructions and free is a counter decrement.
//!
//! Safety across calls: the arena is reset only when **no** arena block is live (a count of
//! allocations minus frees), so a reset never hands out memory someone still holds, whether the
//! host reuses the instance for the next call or not. A block that is never freed (a leak, a
//! static) only stops the resets: the chunks fill up and everything after that goes to dlmalloc,
//! which is where every allocation went before.
//!
//! Memory: freed arena blocks are not reused until the reset (except the most recent one), so a
//! call uses more memory than with dlmalloc alone, at most [`ARENA_MAX_BYTES`] more: chunks of
//! 1, 2, 4, 8 and 16 MiB are taken from dlmalloc on demand (a batch of 1000 VMs needs the first
//! two or three) and kept for the next call. Blocks above [`ARENA_MAX_BLOCK`] (batch lists) go
//! straight to dlmalloc.
//!
//! Registered as the global allocator of the default rules' component only (see `lib.rs`); a
//! rule crate of its own may register it too:
//! `#[global_allocator] static A: guest_default::arena::BatchArena = guest_default::arena::BatchArena::new();`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// The first chunk, in bytes; each further chunk is twice the previous one.
const FIRST_CHUNK_BYTES: usize = 1 << 20;
/// At most this many chunks (1+2+4+8+16 MiB).
const MAX_CHUNKS: usize = 5;
/// The most memory the arena holds, in bytes: the bound on its overhead over dlmalloc.
pub const ARENA_MAX_BYTES: usize = FIRST_CHUNK_BYTES * ((1 << MAX_CHUNKS) - 1);
/// Blocks larger than this (bytes) bypass the arena: they are few (whole batch lists) and
/// would use up a chunk quickly.
pub const ARENA_MAX_BLOCK: usize = 64 << 10;
/// Alignment of chunks, in bytes (any Rust type this crate allocates needs at most 16).
const CHUNK_ALIGN: usize = 16;

#[derive(Clone, Copy)]
struct Chunk {
    start: usize,
    end: usize,
}

struct State {
    chunks: [Chunk; MAX_CHUNKS],
    /// Chunks taken from the system allocator so far.
    count: usize,
    /// The chunk being bumped, the next free address in it and its end (0 before the first
    /// chunk, so the first allocation takes the slow path).
    current: usize,
    next: usize,
    end: usize,
    /// Arena blocks handed out and not yet freed.
    live: usize,
    /// Whether the system allocator has ever handed out a block of at most
    /// [`ARENA_MAX_BLOCK`] bytes (the arena was full, or a large block shrank). Until then a
    /// block's size alone says whose it is: the arena's blocks are never larger.
    spilled: bool,
}

/// The allocator; see the module documentation.
pub struct BatchArena {
    state: UnsafeCell<State>,
}

// SAFETY: `wasm32-wasip2` without the `atomics` feature has a single thread, so the state is
// never accessed concurrently. Elsewhere the type is not `Sync` and cannot be a global allocator.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for BatchArena {}

impl Default for BatchArena {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchArena {
    /// An arena that has no chunk yet.
    pub const fn new() -> Self {
        BatchArena {
            state: UnsafeCell::new(State {
                chunks: [Chunk { start: 0, end: 0 }; MAX_CHUNKS],
                count: 0,
                current: 0,
                next: 0,
                end: 0,
                live: 0,
                spilled: false,
            }),
        }
    }

    /// Whether `ptr` lies in one of the arena's chunks.
    fn owns(st: &State, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        st.chunks[..st.count]
            .iter()
            .any(|c| p >= c.start && p < c.end)
    }

    /// Whether the block at `ptr` of `size` bytes is an arena block: by its size alone until
    /// the system allocator has handed out a small block (see `spilled`), by its address after.
    #[inline(always)]
    fn is_arena_block(st: &State, ptr: *mut u8, size: usize) -> bool {
        size <= ARENA_MAX_BLOCK && (!st.spilled || Self::owns(st, ptr))
    }

    /// The fast path of `bump`: the block fits in the current chunk. Null otherwise.
    #[inline(always)]
    fn bump_fast(st: &mut State, layout: Layout) -> *mut u8 {
        // The alignment is a power of two: round up with a mask, not a division.
        let mask = layout.align() - 1;
        let start = (st.next + mask) & !mask;
        // `next <= end`, so `start` passes `end` only by less than the alignment; compared as
        // a room check so nothing overflows.
        if layout.size() <= ARENA_MAX_BLOCK && start <= st.end && layout.size() <= st.end - start {
            st.next = start + layout.size();
            st.live += 1;
            return start as *mut u8;
        }
        std::ptr::null_mut()
    }

    /// Bumps `layout` out of the chunks, taking a new chunk when needed; null when the arena
    /// cannot serve it (the caller then uses the system allocator).
    ///
    /// # Safety
    /// Same contract as `GlobalAlloc::alloc`.
    unsafe fn bump(&self, st: &mut State, layout: Layout) -> *mut u8 {
        if layout.size() > ARENA_MAX_BLOCK {
            return std::ptr::null_mut();
        }
        loop {
            if st.current < st.count {
                let chunk = st.chunks[st.current];
                let start = st.next.next_multiple_of(layout.align());
                if let Some(end) = start.checked_add(layout.size())
                    && end <= chunk.end
                {
                    st.next = end;
                    st.live += 1;
                    return start as *mut u8;
                }
                if st.current + 1 < st.count {
                    st.current += 1;
                    st.next = st.chunks[st.current].start;
                    st.end = st.chunks[st.current].end;
                    continue;
                }
            }
            if st.count == MAX_CHUNKS {
                return std::ptr::null_mut();
            }
            let bytes = FIRST_CHUNK_BYTES << st.count;
            // SAFETY: non-zero size, valid power-of-two alignment.
            let start =
                unsafe { System.alloc(Layout::from_size_align_unchecked(bytes, CHUNK_ALIGN)) }
                    as usize;
            if start == 0 {
                return std::ptr::null_mut();
            }
            st.chunks[st.count] = Chunk {
                start,
                end: start + bytes,
            };
            st.current = st.count;
            st.count += 1;
            st.next = start;
            st.end = start + bytes;
        }
    }

    /// `alloc` past its fast path: a new chunk, or the system allocator. Out of line so the
    /// fast path stays a leaf without a stack frame.
    ///
    /// # Safety
    /// Same contract as `GlobalAlloc::alloc`.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, st: &mut State, layout: Layout) -> *mut u8 {
        let p = unsafe { self.bump(st, layout) };
        if p.is_null() {
            st.spilled |= layout.size() <= ARENA_MAX_BLOCK;
            unsafe { System.alloc(layout) }
        } else {
            p
        }
    }

    /// Records the free of an arena block.
    #[inline(always)]
    fn release(st: &mut State, ptr: *mut u8, size: usize) {
        st.live -= 1;
        if st.live == 0 {
            // Nothing is live: the whole arena is free again.
            st.current = 0;
            st.next = st.chunks[0].start;
            st.end = st.chunks[0].end;
        } else if ptr as usize + size == st.next {
            // The most recent block (a temporary, or a vector that just moved): take it back.
            st.next = ptr as usize;
        }
    }
}

impl BatchArena {
    /// The canonical ABI's `realloc` (the component's `cabi_realloc` export) served by this
    /// arena directly: what std's own `cabi_realloc` does, without its two calls through the
    /// global allocator's shims (inside the component each call costs an entry and an
    /// interruption check, and the host calls `realloc` for every string and list it passes in).
    ///
    /// # Safety
    /// As the canonical ABI's `realloc`: `align` a power of two; `old_ptr` a block of
    /// `old_len` bytes (`align`) from this allocator when `old_len` is not zero.
    pub unsafe fn cabi_realloc(
        &self,
        old_ptr: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        let layout;
        // SAFETY: the caller's contract (as std's `cabi_realloc`, which assumes the same).
        let ptr = unsafe {
            if old_len == 0 {
                if new_len == 0 {
                    return align as *mut u8;
                }
                layout = Layout::from_size_align_unchecked(new_len, align);
                self.alloc(layout)
            } else {
                layout = Layout::from_size_align_unchecked(old_len, align);
                self.realloc(old_ptr, layout, new_len)
            }
        };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        ptr
    }
}

/// Frees many arena blocks at once ([`BatchArena::bulk_free`]): each is only counted (no call
/// into the allocator, no take-back of the most recent block), and the count is taken off the
/// live blocks when this is dropped, which resets the arena when nothing is left live. Blocks
/// that are not the arena's go to the system allocator at once.
///
/// Why: the component's post-return frees every string and list of the answers (~20 a VM),
/// each a call through the global allocator's `__rust_dealloc`; counted here they cost a few
/// instructions each (BENCHMARKS.md, session 23).
pub struct BulkFree<'a> {
    arena: &'a BatchArena,
    freed: usize,
}

impl BatchArena {
    /// A [`BulkFree`] of this arena.
    pub fn bulk_free(&self) -> BulkFree<'_> {
        BulkFree {
            arena: self,
            freed: 0,
        }
    }
}

impl BulkFree<'_> {
    /// Frees the block at `ptr` of `layout`.
    ///
    /// # Safety
    /// As `GlobalAlloc::dealloc` on the arena.
    #[inline(always)]
    pub unsafe fn free(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: single-threaded (see the `Sync` impl); the reference ends here.
        let st = unsafe { &*self.arena.state.get() };
        if BatchArena::is_arena_block(st, ptr, layout.size()) {
            self.freed += 1;
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

impl Drop for BulkFree<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `free`.
        let st = unsafe { &mut *self.arena.state.get() };
        st.live -= self.freed;
        if st.live == 0 {
            st.current = 0;
            st.next = st.chunks[0].start;
            st.end = st.chunks[0].end;
        }
    }
}

// SAFETY: `free` frees each block as `dealloc` does, but for the take-back of the most recent
// block, which is only an optimization.
unsafe impl pve2netbox_rules::component_direct::FreeBlocks for BulkFree<'_> {
    #[inline(always)]
    unsafe fn free(&mut self, ptr: *mut u8, layout: Layout) {
        unsafe { BulkFree::free(self, ptr, layout) }
    }

    /// Until the system allocator has handed out a small block, a block's size alone says
    /// it is the arena's (see `spilled`): then blocks none larger than the arena's are all
    /// counted at once.
    unsafe fn free_unseen(&mut self, blocks: usize, largest: usize) -> bool {
        // SAFETY: as in `free`.
        let st = unsafe { &*self.arena.state.get() };
        let all_arena = !st.spilled && largest <= ARENA_MAX_BLOCK;
        if all_arena {
            self.freed += blocks;
        }
        all_arena
    }
}

// SAFETY: the arena's own `alloc`, whose blocks its `dealloc` (the global allocator's, where
// the component registers it) frees.
unsafe impl pve2netbox_rules::component_direct::AllocBlocks for BatchArena {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { GlobalAlloc::alloc(self, layout) }
    }
}

// SAFETY: blocks are handed out at most once until freed: the bump pointer only moves past
// handed-out memory, and moves back only over the most recent block when it is freed, or to the
// start when no block is live. Blocks lie inside chunks owned by the arena for its lifetime.
unsafe impl GlobalAlloc for BatchArena {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see the `Sync` impl); no reference to the state outlives
        // this call.
        let st = unsafe { &mut *self.state.get() };
        let p = Self::bump_fast(st, layout);
        if !p.is_null() {
            return p;
        }
        unsafe { self.alloc_slow(st, layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let st = unsafe { &mut *self.state.get() };
        if Self::is_arena_block(st, ptr, layout.size()) {
            Self::release(st, ptr, layout.size());
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let st = unsafe { &mut *self.state.get() };
        if !Self::is_arena_block(st, ptr, layout.size()) {
            st.spilled |= new_size <= ARENA_MAX_BLOCK;
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let p = ptr as usize;
        if new_size <= layout.size() {
            // Shrinking in place; the block keeps its (larger) footprint until the reset.
            if p + layout.size() == st.next {
                st.next = p + new_size;
            }
            return ptr;
        }
        // Growing the most recent block (a string or vector being pushed to): extend in place.
        if p + layout.size() == st.next
            && new_size <= ARENA_MAX_BLOCK
            && p.checked_add(new_size).is_some_and(|end| end <= st.end)
        {
            st.next = p + new_size;
            return ptr;
        }
        // SAFETY: `new_size` is non-zero (it is larger than the old size) and the caller
        // guarantees it does not overflow when rounded to the alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for `layout.size()` bytes and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    fn live(a: &BatchArena) -> usize {
        unsafe { (*a.state.get()).live }
    }

    #[test]
    fn resets_only_when_nothing_is_live() {
        let a = BatchArena::new();
        unsafe {
            let x = a.alloc(layout(24, 8));
            let y = a.alloc(layout(5, 1));
            let z = a.alloc(layout(16, 16));
            assert_eq!(x as usize % 8, 0);
            assert_eq!(z as usize % 16, 0);
            assert!(x < y && y < z);
            x.write_bytes(1, 24);
            y.write_bytes(2, 5);
            a.dealloc(x, layout(24, 8));
            // `y` and `z` still live: a new block must not overlap them.
            let w = a.alloc(layout(8, 8));
            assert!(w as usize >= z as usize + 16);
            assert_eq!(*y, 2);
            for (p, l) in [(y, layout(5, 1)), (z, layout(16, 16)), (w, layout(8, 8))] {
                a.dealloc(p, l);
            }
            assert_eq!(live(&a), 0);
            // Everything freed: the arena starts over.
            assert_eq!(a.alloc(layout(24, 8)), x);
        }
    }

    #[test]
    fn cabi_realloc_allocates_grows_and_answers_empty() {
        let a = BatchArena::new();
        unsafe {
            // An empty block is its alignment, nothing allocated.
            assert_eq!(a.cabi_realloc(std::ptr::null_mut(), 0, 8, 0) as usize, 8);
            assert_eq!(live(&a), 0);
            let p = a.cabi_realloc(std::ptr::null_mut(), 0, 4, 6);
            assert!(!p.is_null() && (p as usize).is_multiple_of(4));
            std::ptr::copy_nonoverlapping(b"abcdef".as_ptr(), p, 6);
            let q = a.cabi_realloc(p, 6, 4, 12);
            assert_eq!(std::slice::from_raw_parts(q, 6), b"abcdef");
            assert_eq!(live(&a), 1);
            a.dealloc(q, layout(12, 4));
            assert_eq!(live(&a), 0);
        }
    }

    #[test]
    fn bulk_free_counts_arena_blocks_and_resets_when_nothing_is_live() {
        let a = BatchArena::new();
        unsafe {
            let keep = a.alloc(layout(8, 8));
            let x = a.alloc(layout(24, 8));
            let big = a.alloc(layout(ARENA_MAX_BLOCK + 1, 8));
            let mut bulk = a.bulk_free();
            bulk.free(x, layout(24, 8));
            bulk.free(big, layout(ARENA_MAX_BLOCK + 1, 8));
            drop(bulk);
            // `keep` is still live: no reset, a new block does not overlap it.
            assert_eq!(live(&a), 1);
            let y = a.alloc(layout(8, 8));
            assert!(y as usize >= keep as usize + 8);
            let mut bulk = a.bulk_free();
            bulk.free(keep, layout(8, 8));
            bulk.free(y, layout(8, 8));
            drop(bulk);
            assert_eq!(live(&a), 0);
            // Nothing live: the arena starts over.
            assert_eq!(a.alloc(layout(8, 8)), keep);
        }
    }

    #[test]
    fn blocks_are_freed_unseen_only_while_size_says_whose_they_are() {
        use pve2netbox_rules::component_direct::FreeBlocks;
        let a = BatchArena::new();
        unsafe {
            let x = a.alloc(layout(24, 8));
            let y = a.alloc(layout(5, 1));
            let mut bulk = a.bulk_free();
            // A block larger than the arena's may be the system's: each must be seen.
            assert!(!FreeBlocks::free_unseen(&mut bulk, 2, ARENA_MAX_BLOCK + 1));
            assert!(FreeBlocks::free_unseen(&mut bulk, 2, 24));
            drop(bulk);
            assert_eq!(live(&a), 0);
            assert_eq!(
                a.alloc(layout(24, 8)),
                x,
                "nothing live: the arena starts over"
            );
            // Once the system allocator has handed out a small block, size says nothing.
            (*a.state.get()).spilled = true;
            let mut bulk = a.bulk_free();
            assert!(!FreeBlocks::free_unseen(&mut bulk, 1, 24));
            bulk.free(x, layout(24, 8));
            drop(bulk);
            assert_eq!(live(&a), 0);
            let _ = y;
        }
    }

    #[test]
    fn realloc_grows_in_place_and_keeps_contents() {
        let a = BatchArena::new();
        unsafe {
            let keep = a.alloc(layout(4, 4));
            let p = a.alloc(layout(3, 1));
            p.copy_from_nonoverlapping(b"abc".as_ptr(), 3);
            let q = a.realloc(p, layout(3, 1), 100);
            assert_eq!(p, q, "the most recent block grows in place");
            let r = a.alloc(layout(1, 1));
            let s = a.realloc(q, layout(100, 1), 200);
            assert_ne!(s, q, "a block that is not the last one moves");
            assert_eq!(std::slice::from_raw_parts(s, 3), b"abc");
            for (p, l) in [(keep, layout(4, 4)), (r, layout(1, 1)), (s, layout(200, 1))] {
                a.dealloc(p, l);
            }
            assert_eq!(live(&a), 0);
        }
    }

    #[test]
    fn large_blocks_and_full_chunks_fall_back_to_the_system() {
        let a = BatchArena::new();
        unsafe {
            let big = a.alloc(layout(ARENA_MAX_BLOCK + 1, 8));
            let st = &*a.state.get();
            assert!(!BatchArena::owns(st, big));
            a.dealloc(big, layout(ARENA_MAX_BLOCK + 1, 8));
            // Fill every chunk, then one more block: it must come from the system.
            let l = layout(ARENA_MAX_BLOCK, 8);
            let mut blocks = Vec::new();
            for _ in 0..ARENA_MAX_BYTES / ARENA_MAX_BLOCK {
                blocks.push(a.alloc(l));
            }
            let extra = a.alloc(l);
            assert!(!BatchArena::owns(&*a.state.get(), extra));
            a.dealloc(extra, l);
            for b in blocks {
                assert!(BatchArena::owns(&*a.state.get(), b));
                a.dealloc(b, l);
            }
            assert_eq!(live(&a), 0);
        }
    }

    #[test]
    fn a_large_block_shrunk_small_stays_the_systems() {
        let a = BatchArena::new();
        unsafe {
            let keep = a.alloc(layout(8, 8));
            let big = a.alloc(layout(ARENA_MAX_BLOCK + 1, 8));
            let small = a.realloc(big, layout(ARENA_MAX_BLOCK + 1, 8), 16);
            assert!(!BatchArena::owns(&*a.state.get(), small));
            a.dealloc(small, layout(16, 8));
            assert_eq!(
                live(&a),
                1,
                "the system's block is not the arena's to count"
            );
            a.dealloc(keep, layout(8, 8));
            assert_eq!(live(&a), 0);
        }
    }
}
