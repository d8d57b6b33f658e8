//! Puts a paged listing's rows in id order without duplicates, converting them as their pages
//! arrive.
//!
//! Why: a 100k-VM snapshot used to hold every page until the last one came and only then
//! deduplicated, ordered and converted its rows: ~300 ms of work after the last response,
//! added to the phase's wall time. Pages come back in offset order almost always, and NetBox
//! orders by id, so rows are converted as soon as the pages before them are in; only a listing
//! that turns out not to be in id order (or repeats rows) pays for a sort at the end.
//!
//! The result is exactly what deduplicating all rows (the first seen in offset order wins) and
//! then sorting them stably by id would give: rows converted before the order broke are merged
//! with the sorted rest, ties going to the earlier ones.

use std::collections::{BTreeMap, HashSet};

use super::client::{ListRow, Listed};
use super::id_list::IdList;

/// Rows reserved for ahead at most (~130 MB of 528-byte VM records). Why: the count is the
/// server's word, and one that lies must not reserve gigabytes.
const MAX_RESERVED_ROWS: usize = 250_000;

/// The order key of a row: its id, 0 without one (as the rows without an id sort first).
fn key<T: ListRow>(row: &Listed<T>) -> u64 {
    row.id().unwrap_or(0)
}

/// Rows of a listing, page by page, turned into `U` by `convert` (`None`: left out).
pub(crate) struct RowOrder<T, U, F> {
    convert: F,
    page_size: usize,
    /// Pages that came before an earlier page; taken once the pages before them are in.
    waiting: BTreeMap<usize, Vec<Listed<T>>>,
    /// The offset of the next page to take.
    next_offset: usize,
    /// Every row id taken so far, duplicates included (for [`RowOrder::seen_ids`]).
    ids: IdList,
    /// Converted rows in id order, and their keys (for the merge after rows came out of order).
    out: Vec<U>,
    out_keys: IdList,
    /// The key and the id of the last row taken while the rows were in order.
    last_key: u64,
    last_id: Option<u64>,
    /// Set once a row came out of order: the ids seen so far, and the rows from then on
    /// (deduplicated, not yet converted).
    unordered: Option<(HashSet<u64>, Vec<Listed<T>>)>,
}

impl<T: ListRow, U, F: FnMut(Listed<T>) -> Option<U>> RowOrder<T, U, F> {
    /// Expects pages at offsets 0, `page_size`, 2 x `page_size`, ... in any arrival order, and
    /// about `rows` rows (the server's count: room for at most [`MAX_RESERVED_ROWS`] is
    /// reserved ahead, so a count that lies costs no memory).
    pub(crate) fn new(page_size: usize, rows: usize, convert: F) -> Self {
        let capacity = rows.min(MAX_RESERVED_ROWS);
        RowOrder {
            convert,
            page_size: page_size.max(1),
            waiting: BTreeMap::new(),
            next_offset: 0,
            ids: IdList::with_capacity(capacity),
            out: Vec::with_capacity(capacity),
            out_keys: IdList::with_capacity(capacity),
            last_key: 0,
            last_id: None,
            unordered: None,
        }
    }

    /// Adds the page at `offset`, and takes every page that is now next in offset order.
    pub(crate) fn push(&mut self, offset: usize, rows: Vec<Listed<T>>) {
        self.waiting.insert(offset, rows);
        while let Some(rows) = self.waiting.remove(&self.next_offset) {
            self.next_offset += self.page_size;
            rows.into_iter().for_each(|row| self.take(row));
        }
    }

    fn take(&mut self, row: Listed<T>) {
        let id = row.id();
        self.place(row, id);
        if let Some(id) = id {
            self.ids.push(id);
        }
    }

    /// Converts the row, holds it (once the rows came out of order) or drops it (a duplicate).
    fn place(&mut self, row: Listed<T>, id: Option<u64>) {
        if let Some((seen, held)) = &mut self.unordered {
            if id.is_none_or(|id| seen.insert(id)) {
                held.push(row);
            }
            return;
        }
        let k = key(&row);
        if k < self.last_key {
            // Out of order: from here on rows are held, deduplicated against all seen before.
            let mut seen: HashSet<u64> = self.ids.iter().collect();
            let mut held = Vec::new();
            if id.is_none_or(|id| seen.insert(id)) {
                held.push(row);
            }
            self.unordered = Some((seen, held));
            return;
        }
        // In order, a duplicate can only be the row with an id just before.
        if id.is_some() && id == self.last_id {
            return;
        }
        self.last_key = k;
        self.last_id = id.or(self.last_id);
        if let Some(u) = (self.convert)(row) {
            self.out.push(u);
            self.out_keys.push(k);
        }
    }

    /// Pages taken so far (the pages at offsets 0, `page_size`, ... up to the first missing).
    pub(crate) fn pages_taken(&self) -> usize {
        self.next_offset / self.page_size
    }

    /// Every row id seen so far (duplicates included).
    pub(crate) fn seen_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.ids.iter()
    }

    /// The converted rows in id order. Pages never taken (a gap in the offsets) are taken now,
    /// in offset order.
    pub(crate) fn finish(mut self) -> Vec<U> {
        for (_, rows) in std::mem::take(&mut self.waiting) {
            rows.into_iter().for_each(|row| self.take(row));
        }
        let Some((_, mut held)) = self.unordered.take() else {
            return self.out;
        };
        held.sort_by_key(key);
        let convert = &mut self.convert;
        let late = held.into_iter().filter_map(|row| {
            let k = key(&row);
            convert(row).map(|u| (k, u))
        });
        merge_by_key(self.out_keys.iter().zip(self.out), late)
    }
}

/// Merges two runs sorted by key; on equal keys `first`'s items come first (a stable sort of
/// `first` followed by `second`).
fn merge_by_key<U>(
    first: impl ExactSizeIterator<Item = (u64, U)>,
    second: impl Iterator<Item = (u64, U)>,
) -> Vec<U> {
    let mut merged = Vec::with_capacity(first.len());
    let mut first = first.peekable();
    for (k, u) in second {
        while let Some((_, a)) = first.next_if(|(ka, _)| *ka <= k) {
            merged.push(a);
        }
        merged.push(u);
    }
    merged.extend(first.map(|(_, a)| a));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A row: its id (if any) and a tag telling copies of the same id apart.
    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    struct Row(Option<u64>, u32);

    impl ListRow for Row {
        fn row_id(&self) -> Option<u64> {
            self.0
        }
    }

    /// What the listing promised before rows were converted as they came: deduplicate all rows
    /// (the first seen wins), sort stably by id, convert.
    fn reference(pages: &[Vec<Row>], keep: impl Fn(&Row) -> bool) -> Vec<Row> {
        let mut seen = HashSet::new();
        let mut rows: Vec<Row> = pages
            .iter()
            .flatten()
            .filter(|r| r.0.is_none_or(|id| seen.insert(id)))
            .cloned()
            .collect();
        rows.sort_by_key(|r| r.0.unwrap_or(0));
        rows.into_iter().filter(|r| keep(r)).collect()
    }

    fn ordered(pages: &[Vec<Row>], arrival: &[usize], keep: impl Fn(&Row) -> bool) -> Vec<Row> {
        let size = 3;
        let mut order = RowOrder::new(size, 0, |row: Listed<Row>| match row {
            Listed::Row(r) => keep(&r).then_some(r),
            Listed::Unreadable { .. } => None,
        });
        for &i in arrival {
            order.push(
                i * size,
                pages[i].iter().cloned().map(Listed::Row).collect(),
            );
        }
        order.finish()
    }

    fn pages_of(ids: Vec<Option<u64>>) -> Vec<Vec<Row>> {
        let rows: Vec<Row> = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| Row(id, i as u32))
            .collect();
        rows.chunks(3).map(<[Row]>::to_vec).collect()
    }

    #[test]
    fn pages_taken_counts_the_pages_in_order_only() {
        let mut order = RowOrder::new(2, 0, |row: Listed<Row>| match row {
            Listed::Row(r) => Some(r),
            Listed::Unreadable { .. } => None,
        });
        let page = |ids: [u64; 2]| ids.map(|id| Listed::Row(Row(Some(id), 0))).to_vec();
        order.push(2, page([3, 4]));
        assert_eq!(order.pages_taken(), 0);
        order.push(0, page([1, 2]));
        assert_eq!(order.pages_taken(), 2);
        order.push(6, page([7, 8]));
        assert_eq!(order.pages_taken(), 2);
    }

    #[test]
    fn rows_in_order_are_kept_as_they_come() {
        let pages = pages_of((1..=7).map(Some).collect());
        let got = ordered(&pages, &[2, 0, 1], |_| true);
        assert_eq!(got, reference(&pages, |_| true));
        assert_eq!(got.len(), 7);
    }

    #[test]
    fn a_row_repeated_by_the_next_page_is_kept_once() {
        let pages = pages_of(vec![Some(1), Some(2), Some(3), Some(3), Some(4)]);
        let got = ordered(&pages, &[0, 1], |_| true);
        assert_eq!(
            got,
            vec![
                Row(Some(1), 0),
                Row(Some(2), 1),
                Row(Some(3), 2),
                Row(Some(4), 4)
            ]
        );
    }

    #[test]
    fn rows_out_of_order_are_merged_with_those_taken_before() {
        let ids = [5, 9, 12, 3, 9, 14, 1, 12, 20].map(Some).to_vec();
        let pages = pages_of(ids);
        let got = ordered(&pages, &[1, 2, 0], |_| true);
        assert_eq!(got, reference(&pages, |_| true));
        let got_ids: Vec<u64> = got.iter().filter_map(|r| r.0).collect();
        assert_eq!(got_ids, [1, 3, 5, 9, 12, 14, 20]);
    }

    proptest! {
        #[test]
        fn same_rows_as_deduplicating_then_sorting(
            ids in prop::collection::vec(prop::option::weighted(0.95, 0u64..40), 0..40),
            sorted in any::<bool>(),
            arrival_seed in any::<u64>(),
            drop_mod in 1u32..5,
        ) {
            let mut ids = ids;
            if sorted {
                ids.sort_by_key(|id| id.unwrap_or(0));
            }
            let pages = pages_of(ids);
            // Any arrival order of the pages.
            let mut arrival: Vec<usize> = (0..pages.len()).collect();
            let mut s = arrival_seed;
            for i in (1..arrival.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                arrival.swap(i, (s >> 33) as usize % (i + 1));
            }
            let keep = |r: &Row| drop_mod == 1 || !r.1.is_multiple_of(drop_mod);
            prop_assert_eq!(ordered(&pages, &arrival, keep), reference(&pages, keep));
        }
    }
}
