//! A list of row ids kept as the differences between neighbours, each a zigzag LEB128 varint.
//! Why: a listing's rows come in id order, so neighbours differ by little (NetBox hands out ids
//! in sequence): ~1 byte a row where a `u64` is 8. [`super::row_order::RowOrder`] keeps two
//! such lists per listing until its last page is in, at 100k VMs with children ~1.1M rows: as
//! `Vec<u64>` they were ~17 MB at the snapshot's memory peak.
//!
//! Any sequence round-trips (a step down, the listing out of order, costs a few bytes more);
//! the list is only appended to and read front to back.

/// Ids in the order they were pushed.
#[derive(Debug, Default, Clone)]
pub(crate) struct IdList {
    bytes: Vec<u8>,
    last: u64,
    len: usize,
}

impl IdList {
    /// An empty list with room for about `ids` ids in order.
    pub(crate) fn with_capacity(ids: usize) -> Self {
        IdList {
            // Ids in sequence differ by 1: one byte each.
            bytes: Vec::with_capacity(ids),
            last: 0,
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, id: u64) {
        let delta = id.wrapping_sub(self.last) as i64;
        // Zigzag: small steps either way are small numbers.
        let mut v = ((delta << 1) ^ (delta >> 63)) as u64;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.bytes.push(byte);
                break;
            }
            self.bytes.push(byte | 0x80);
        }
        self.last = id;
        self.len += 1;
    }

    /// The ids, in the order they were pushed.
    pub(crate) fn iter(&self) -> Ids<'_> {
        Ids {
            bytes: &self.bytes,
            last: 0,
            left: self.len,
        }
    }
}

/// The ids of an [`IdList`].
pub(crate) struct Ids<'a> {
    bytes: &'a [u8],
    last: u64,
    left: usize,
}

impl Iterator for Ids<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.left == 0 {
            return None;
        }
        let mut v = 0u64;
        let mut shift = 0;
        for (i, &byte) in self.bytes.iter().enumerate() {
            // A u64 takes at most 10 bytes; the list only holds what `push` wrote.
            v |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            shift += 7;
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                break;
            }
        }
        let delta = ((v >> 1) as i64) ^ -((v & 1) as i64);
        self.last = self.last.wrapping_add(delta as u64);
        self.left -= 1;
        Some(self.last)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Ids<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(ids: &[u64]) {
        let mut list = IdList::with_capacity(ids.len());
        for &id in ids {
            list.push(id);
        }
        assert_eq!(list.iter().len(), ids.len());
        assert_eq!(list.iter().collect::<Vec<_>>(), ids);
    }

    #[test]
    fn ids_come_back_in_order_pushed() {
        round_trip(&[]);
        round_trip(&[0]);
        round_trip(&[
            1,
            2,
            3,
            4,
            1000,
            1001,
            1001,
            7,
            0,
            u64::MAX,
            0,
            u64::MAX - 1,
            1 << 63,
        ]);
        round_trip(&[u64::MAX, u64::MAX, 0, 0]);
    }

    #[test]
    fn ids_in_sequence_take_a_byte_each() {
        let mut list = IdList::with_capacity(100_000);
        for id in 1..=100_000u64 {
            list.push(id);
        }
        assert_eq!(list.bytes.len(), 100_000);
        assert!(list.iter().eq(1..=100_000u64));
    }

    proptest! {
        #[test]
        fn any_ids_round_trip(ids in proptest::collection::vec(any::<u64>(), 0..200)) {
            round_trip(&ids);
        }

        #[test]
        fn near_ids_round_trip(start in any::<u64>(), steps in proptest::collection::vec(-300i64..300, 0..200)) {
            let ids: Vec<u64> = steps
                .iter()
                .scan(start, |id, step| {
                    *id = id.wrapping_add(*step as u64);
                    Some(*id)
                })
                .collect();
            round_trip(&ids);
        }
    }
}
