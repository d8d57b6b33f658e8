//! Each VM's place in the kinds' packed rows, by VM id: a list sorted by id, searched.
//!
//! Why not a hash map: a memoized rerun looks every VM up once, and with a hash table each
//! lookup was two cache misses (the control bytes, then the bucket) at a random place: ~12% of
//! that rules step at 30k VMs. The rules are asked in the guests' order and NetBox numbers VMs
//! as they are created, so the ids asked come mostly in ascending order, and a binary search
//! then walks lines the lookup before it just read. Also smaller (no empty buckets).
//!
//! Edges: the kinds' ranges in (each kind's VMs in ascending order), a VM's ranges out.

use std::ops::Range;

use super::VmRanges;
use crate::pipeline::snapshot::sorted_near::{Cursor, find_from};

/// VM id and its ranges, sorted by id, one entry per VM.
#[derive(Debug, Default)]
pub(super) struct VmIndex(Vec<(u64, VmRanges)>);

impl VmIndex {
    /// Sets one kind's range of each VM in `ranges` (VM ids ascending, each once) with `set`;
    /// a VM not yet indexed gets an entry, its other kinds empty. One merge per kind.
    pub(super) fn set_all(
        &mut self,
        ranges: Vec<(u64, Range<u32>)>,
        set: impl Fn(&mut VmRanges) -> &mut Range<u32>,
    ) {
        debug_assert!(ranges.is_sorted_by(|a, b| a.0 < b.0));
        let old = std::mem::take(&mut self.0);
        let mut merged = Vec::with_capacity(old.len().max(ranges.len()));
        let mut old = old.into_iter().peekable();
        for (vm, range) in ranges {
            while let Some(e) = old.next_if(|e| e.0 < vm) {
                merged.push(e);
            }
            let mut entry = old
                .next_if(|e| e.0 == vm)
                .unwrap_or_else(|| (vm, VmRanges::default()));
            *set(&mut entry.1) = range;
            merged.push(entry);
        }
        merged.extend(old);
        merged.shrink_to_fit();
        self.0 = merged;
    }

    /// The VM's ranges, searching from where `at` last ended (see [`find_from`]).
    pub(super) fn get_from(&self, vm: u64, at: &mut Cursor) -> Option<&VmRanges> {
        let i = find_from(&self.0, vm, |e| e.0, at)?;
        Some(&self.0[i].1)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.0.retain(|e| keep(e.0));
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &VmRanges> {
        self.0.iter().map(|e| &e.1)
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut VmRanges> {
        self.0.iter_mut().map(|e| &mut e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_merge_into_one_sorted_entry_per_vm() {
        let mut index = VmIndex::default();
        index.set_all(vec![(2, 0..1), (5, 1..3)], |r| &mut r.disks);
        index.set_all(vec![(1, 0..4), (5, 4..6), (9, 6..7)], |r| &mut r.interfaces);
        let ids: Vec<u64> = index.0.iter().map(|e| e.0).collect();
        assert_eq!(ids, [1, 2, 5, 9]);
        let get = |vm| index.get_from(vm, &mut Cursor::default());
        let five = get(5).expect("indexed");
        assert_eq!((five.disks.clone(), five.interfaces.clone()), (1..3, 4..6));
        assert_eq!(get(2).map(|r| r.interfaces.clone()), Some(0..0));
        assert!(get(3).is_none() && get(10).is_none());
        index.retain(|vm| vm != 5);
        assert!(index.get_from(5, &mut Cursor::default()).is_none());
        assert_eq!(index.len(), 3);
    }
}
