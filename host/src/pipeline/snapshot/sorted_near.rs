//! Finding an entry in a list sorted by VM id when the VMs are asked mostly in that order.
//!
//! Why: a memoized rerun looks every VM's children and primary IPs up once, in the guests'
//! order, and NetBox numbers VMs as they are created, so the next VM is mostly the entry after
//! the last one found. A binary search over 100k entries took ~17 steps whose branches the CPU
//! mostly mispredicts (~9% of a memoized 30k rerun's keys, the two lists together); trying the
//! last place and the next first takes two compares.
//!
//! Edges: a sorted slice and the caller's cursor in; the entry's index out.

/// Where the last search of a caller ended, for [`find_from`]: one per thread walking VMs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor(usize);

/// The index of the entry whose key is `key` in `list` (sorted by `key_of`, each key once), as
/// a binary search finds it; tries where `at` last ended and the entry after first.
pub fn find_from<T>(
    list: &[T],
    key: u64,
    key_of: impl Fn(&T) -> u64,
    at: &mut Cursor,
) -> Option<usize> {
    for i in [at.0, at.0 + 1] {
        if list.get(i).is_some_and(|e| key_of(e) == key) {
            at.0 = i;
            return Some(i);
        }
    }
    let found = list.binary_search_by_key(&key, key_of);
    // A miss leaves the cursor where the key would be: the next VM is likely after it.
    at.0 = found.unwrap_or_else(|i| i);
    found.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_a_binary_search_finds_in_any_order() {
        let list: Vec<u64> = (0..200).map(|i| 3 * i + 1).collect();
        let mut orders: Vec<Vec<u64>> = vec![
            (0..700).collect(),
            (0..700).rev().collect(),
            (0..700).map(|i| (i * 389) % 700).collect(),
        ];
        orders.push(vec![1, 1, 4, 4, 598, 0, 1, 700, 597, 598]);
        for order in orders {
            let mut at = Cursor::default();
            for key in order {
                let want = list.binary_search(&key).ok();
                assert_eq!(find_from(&list, key, |e| *e, &mut at), want, "{key}");
            }
        }
        assert_eq!(
            find_from(&[] as &[u64], 5, |e| *e, &mut Cursor::default()),
            None
        );
    }
}
