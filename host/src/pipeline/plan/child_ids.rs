//! The NetBox ids an operation's child writes refer to, by [`super::children::ref_key`]: a
//! list sorted by key.
//!
//! Why: the plan holds one per VM until the dispatch, and most hold one or two keys (the
//! untagged VLAN of a first sync). A `BTreeMap<String, u64>` with one key is a 368-byte node
//! plus the key's allocation: ~37 MB at 100k VMs. Sorted, the list is one allocation of 24
//! bytes a key plus the key's text, and reads and writes as the map did (`plan.json` an
//! object in key order).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ids by key, sorted by key, each key once.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChildIds(Vec<(Box<str>, u64)>);

impl ChildIds {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The id of `key`.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.find(key).ok().map(|i| self.0[i].1)
    }

    /// Sets the id of `key` (replacing the one it had).
    pub fn insert(&mut self, key: impl AsRef<str> + Into<Box<str>>, id: u64) {
        match self.find(key.as_ref()) {
            Ok(i) => self.0[i].1 = id,
            Err(i) => self.0.insert(i, (key.into(), id)),
        }
    }

    /// The ids in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, u64)> + '_ {
        self.0.iter().map(|(k, id)| (&**k, *id))
    }

    /// Gives back the spare capacity left by inserts (the plan keeps these until the dispatch).
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }
}

impl<K: Into<Box<str>>> FromIterator<(K, u64)> for ChildIds {
    /// A later id of the same key replaces the earlier one, as in a map.
    fn from_iter<I: IntoIterator<Item = (K, u64)>>(iter: I) -> Self {
        let mut out = ChildIds::new();
        for (k, id) in iter {
            let k: Box<str> = k.into();
            out.insert(k, id);
        }
        out.shrink_to_fit();
        out
    }
}

impl fmt::Debug for ChildIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for ChildIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for ChildIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, u64>::deserialize(d).map(|m| m.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_as_the_map_it_replaces() {
        let pairs = [
            ("vlan:10", 5),
            ("interface:net0", 11),
            ("ip-address:10.0.0.5/24@blue", 31),
            ("interface:nét1 ✓", 12),
            ("", 1),
        ];
        let ids: ChildIds = pairs.iter().map(|(k, v)| (*k, *v)).collect();
        let map: BTreeMap<String, u64> = pairs.iter().map(|(k, v)| ((*k).into(), *v)).collect();
        assert_eq!(
            serde_json::to_string(&ids).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let back: ChildIds = serde_json::from_str(&serde_json::to_string(&map).unwrap()).unwrap();
        assert_eq!(back, ids);
        assert_eq!(ids.len(), 5);
        for (k, v) in &map {
            assert_eq!(ids.get(k), Some(*v), "{k}");
        }
        assert_eq!(ids.get("vlan:1"), None);
        let keys: Vec<&str> = ids.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, map.keys().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn insert_keeps_one_id_per_key_in_order() {
        let mut ids = ChildIds::new();
        assert!(ids.is_empty() && ids.get("a").is_none());
        assert_eq!(serde_json::to_string(&ids).unwrap(), "{}");
        for (k, v) in [("b", 2), ("a", 1), ("c", 3), ("b", 20)] {
            ids.insert(k, v);
        }
        assert_eq!(
            ids.iter().collect::<Vec<_>>(),
            [("a", 1), ("b", 20), ("c", 3)]
        );
        let dup: ChildIds = [("x", 1), ("x", 2)].into_iter().collect();
        assert_eq!(dup.iter().collect::<Vec<_>>(), [("x", 2)]);
    }
}
