//! The offsets of the packed changes ([`super::Changes`], [`super::ChildOperations`]): triples
//! of `u32` words, stored as `u16`s while every word fits.
//!
//! Why: the offsets were most of what a VM's changes hold. A create with two NICs, four IPs
//! and two disks has ~80 triples (12 bytes each, ~950 bytes) against ~510 bytes of text, and
//! a VM's text is far below 64 KiB, so its offsets fit in `u16`s (a created child's id is 0, a
//! child's meta word counts a few field changes). A word that does not fit (a long text, a
//! NetBox id past 65,535) widens the whole list once; reading gives the same `u32`s either way.

use std::ops::Range;

/// Owned triples (see the module documentation).
#[derive(Clone, Debug)]
pub enum Slots {
    Narrow(Vec<[u16; 3]>),
    Wide(Vec<[u32; 3]>),
}

impl Default for Slots {
    fn default() -> Self {
        Slots::Narrow(Vec::new())
    }
}

/// The triple as `u16`s when every word fits.
fn narrow(slot: [u32; 3]) -> Option<[u16; 3]> {
    let [a, b, c] = slot;
    Some([
        u16::try_from(a).ok()?,
        u16::try_from(b).ok()?,
        u16::try_from(c).ok()?,
    ])
}

fn wide(slot: [u16; 3]) -> [u32; 3] {
    slot.map(u32::from)
}

impl Slots {
    pub fn with_capacity(n: usize) -> Self {
        Slots::Narrow(Vec::with_capacity(n))
    }

    pub fn len(&self) -> usize {
        match self {
            Slots::Narrow(v) => v.len(),
            Slots::Wide(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        match self {
            Slots::Narrow(v) => v.capacity(),
            Slots::Wide(v) => v.capacity(),
        }
    }

    pub fn reserve(&mut self, additional: usize) {
        match self {
            Slots::Narrow(v) => v.reserve(additional),
            Slots::Wide(v) => v.reserve(additional),
        }
    }

    pub fn shrink_to_fit(&mut self) {
        match self {
            Slots::Narrow(v) => v.shrink_to_fit(),
            Slots::Wide(v) => v.shrink_to_fit(),
        }
    }

    /// The whole list as `u32`s, with room for what it held.
    fn widen(&mut self) -> &mut Vec<[u32; 3]> {
        if let Slots::Narrow(v) = self {
            let mut w = Vec::with_capacity(v.capacity());
            w.extend(v.iter().map(|s| wide(*s)));
            *self = Slots::Wide(w);
        }
        match self {
            Slots::Wide(w) => w,
            Slots::Narrow(_) => unreachable!("widened above"),
        }
    }

    pub fn push(&mut self, slot: [u32; 3]) {
        match (&mut *self, narrow(slot)) {
            (Slots::Narrow(v), Some(n)) => v.push(n),
            (Slots::Wide(v), _) => v.push(slot),
            (Slots::Narrow(_), None) => self.widen().push(slot),
        }
    }

    /// Replaces the triple at `index` (which exists).
    pub fn set(&mut self, index: usize, slot: [u32; 3]) {
        match (&mut *self, narrow(slot)) {
            (Slots::Narrow(v), Some(n)) => v[index] = n,
            (Slots::Wide(v), _) => v[index] = slot,
            (Slots::Narrow(_), None) => self.widen()[index] = slot,
        }
    }

    pub fn view(&self) -> SlotsRef<'_> {
        match self {
            Slots::Narrow(v) => SlotsRef::Narrow(v),
            Slots::Wide(v) => SlotsRef::Wide(v),
        }
    }

    pub fn get(&self, index: usize) -> Option<[u32; 3]> {
        self.view().get(index)
    }

    /// Where the buffer is, for tests that memory is reused.
    #[cfg(test)]
    pub(crate) fn as_ptr(&self) -> usize {
        match self {
            Slots::Narrow(v) => v.as_ptr() as usize,
            Slots::Wide(v) => v.as_ptr() as usize,
        }
    }
}

/// Equal when they hold the same triples, however stored.
impl PartialEq for Slots {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for Slots {}

/// Borrowed triples, a whole [`Slots`] or part of one.
#[derive(Clone, Copy, Debug)]
pub enum SlotsRef<'a> {
    Narrow(&'a [[u16; 3]]),
    Wide(&'a [[u32; 3]]),
}

impl Default for SlotsRef<'_> {
    fn default() -> Self {
        SlotsRef::Narrow(&[])
    }
}

impl<'a> SlotsRef<'a> {
    pub fn len(&self) -> usize {
        match self {
            SlotsRef::Narrow(v) => v.len(),
            SlotsRef::Wide(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> Option<[u32; 3]> {
        match self {
            SlotsRef::Narrow(v) => v.get(index).map(|s| wide(*s)),
            SlotsRef::Wide(v) => v.get(index).copied(),
        }
    }

    pub fn last(&self) -> Option<[u32; 3]> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The triples in `range` (which lies within).
    pub fn slice(&self, range: Range<usize>) -> SlotsRef<'a> {
        match *self {
            SlotsRef::Narrow(v) => SlotsRef::Narrow(&v[range]),
            SlotsRef::Wide(v) => SlotsRef::Wide(&v[range]),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = [u32; 3]> + use<'a> {
        let list = *self;
        (0..list.len()).map(move |i| list.get(i).expect("index in range"))
    }
}

impl PartialEq for SlotsRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Triples read back as pushed, narrow while every word fits and wide after one does not;
    /// lists of the same triples are equal however stored.
    #[test]
    fn reads_back_what_was_pushed_narrow_or_wide() {
        let small = [[0, 1, 2], [3, u32::from(u16::MAX), 7]];
        let mut s = Slots::default();
        for t in small {
            s.push(t);
        }
        assert!(matches!(s, Slots::Narrow(_)));
        assert_eq!(s.view().iter().collect::<Vec<_>>(), small.to_vec());
        let big = [5, 1 << 16, u32::MAX];
        s.push(big);
        assert!(
            matches!(s, Slots::Wide(_)),
            "a word past u16 widens the list"
        );
        let all: Vec<[u32; 3]> = s.view().iter().collect();
        assert_eq!(all, vec![small[0], small[1], big]);
        assert_eq!(s.get(2), Some(big));
        assert_eq!(s.get(3), None);
        assert_eq!(s.view().slice(1..3).iter().collect::<Vec<_>>(), all[1..]);

        let mut wide = Slots::Wide(small.to_vec());
        let mut narrow = Slots::default();
        for t in small {
            narrow.push(t);
        }
        assert_eq!(wide, narrow);
        narrow.push([1, 2, 3]);
        assert_ne!(wide, narrow);
        wide.push([1, 2, 3]);
        assert_eq!(wide, narrow);
    }

    /// `set` replaces in place, and widens a narrow list when the new triple needs it.
    #[test]
    fn set_replaces_and_widens_when_needed() {
        let mut s = Slots::with_capacity(4);
        s.push([1, 2, 3]);
        s.push([4, 5, 6]);
        s.set(1, [7, 8, 9]);
        assert!(matches!(s, Slots::Narrow(_)));
        assert_eq!(s.get(1), Some([7, 8, 9]));
        s.set(0, [70_000, 0, 1]);
        assert!(matches!(s, Slots::Wide(_)));
        assert_eq!(
            s.view().iter().collect::<Vec<_>>(),
            vec![[70_000, 0, 1], [7, 8, 9]]
        );
        assert!(s.capacity() >= 4, "widening keeps the room");
    }
}
