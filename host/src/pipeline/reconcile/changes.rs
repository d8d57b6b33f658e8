//! The field changes of one VM, packed: every field name and JSON text in one buffer.
//!
//! Why: the plan holds the changes of every VM from the rules' answer to the dispatch. As a
//! `Vec<FieldChange>` a create body of 16 fields is 48 strings, ~2 KB with the vector: ~200 MB
//! held at the peak of a 100k-VM first sync. Packed, it is two allocations of ~0.6 KB.
//!
//! Field names and common values are stored as codes ([`super::words`]).
//! Read through [`Change`] (borrowed `field`, `old`, `new`); serialized exactly as the list of
//! [`FieldChange`]s it replaces, so saved plans and reports keep their shape.

use std::fmt;

use guest_default::model::{FieldChange, JsonText};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::slots::{Slots, SlotsRef};
use super::words;

/// The changes of one VM, in order. See the module documentation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Every field name, old and new text, concatenated.
    text: String,
    /// Per change, the end offsets in `text` of its field, old and new.
    ends: Slots,
}

/// One change, borrowed from [`Changes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Change<'a> {
    pub field: &'a str,
    pub old: Json<'a>,
    pub new: Json<'a>,
}

/// A JSON text borrowed from [`Changes`]; the borrowed form of [`JsonText`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Json<'a>(pub &'a str);

impl Json<'_> {
    pub fn as_str(&self) -> &str {
        self.0
    }

    pub fn to_owned(&self) -> JsonText {
        JsonText(self.0.to_owned())
    }

    /// See [`JsonText::is_null`].
    pub fn is_null(&self) -> bool {
        JsonText::text_is_null(self.0)
    }

    /// See [`JsonText::to_value`].
    pub fn to_value(&self) -> serde_json::Value {
        JsonText::text_to_value(self.0)
    }

    /// See [`JsonText::as_string_value`].
    pub fn as_string_value(&self) -> Option<String> {
        JsonText::text_string_value(self.0)
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl Changes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The changes, borrowed.
    pub fn list(&self) -> ChangeList<'_> {
        ChangeList {
            text: &self.text,
            ends: self.ends.view(),
            start: 0,
        }
    }

    /// The change at `index`.
    pub fn get(&self, index: usize) -> Option<Change<'_>> {
        self.list().get(index)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Change<'_>> + '_ {
        self.list().iter()
    }

    /// The change of `field`.
    pub fn find(&self, field: &str) -> Option<Change<'_>> {
        self.list().find(field)
    }

    /// Appends a change. Panics past 4 GiB of text (a VM's changes are a few KB).
    pub fn push(&mut self, field: &str, old: &str, new: &str) {
        let mut end = |s: &str| {
            words::push(&mut self.text, s);
            u32::try_from(self.text.len()).expect("changes of one VM under 4 GiB")
        };
        let ends = [end(field), end(old), end(new)];
        self.ends.push(ends);
    }

    /// Keeps the changes `keep` accepts, in order (`keep` may see a change twice).
    pub fn retain(&mut self, mut keep: impl FnMut(Change<'_>) -> bool) {
        if self.iter().all(&mut keep) {
            return;
        }
        let before = self.take_for_rebuild();
        for c in before.iter().filter(|c| keep(*c)) {
            self.push(c.field, c.old.0, c.new.0);
        }
    }

    /// Sets the change of `field` (keeping its position) or appends one.
    pub fn set(&mut self, field: &str, old: &str, new: &str) {
        let Some(at) = self.iter().position(|c| c.field == field) else {
            return self.push(field, old, new);
        };
        let c = self.get(at).expect("found");
        if (c.old.0, c.new.0) == (old, new) {
            return;
        }
        let before = self.take_for_rebuild();
        for (i, c) in before.iter().enumerate() {
            match i == at {
                true => self.push(field, old, new),
                false => self.push(c.field, c.old.0, c.new.0),
            }
        }
    }

    /// Replaces the new value of `field`'s change; false when there is none.
    pub fn set_new(&mut self, field: &str, new: &str) -> bool {
        let Some(old) = self.find(field).map(|c| c.old.0.to_owned()) else {
            return false;
        };
        self.set(field, &old, new);
        true
    }

    /// Gives back the spare capacity left by pushes (the plan keeps the changes until the
    /// dispatch).
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// The changes as owned [`FieldChange`]s.
    pub fn to_vec(&self) -> Vec<FieldChange> {
        self.iter()
            .map(|c| FieldChange {
                field: c.field.to_owned(),
                old: c.old.to_owned(),
                new: c.new.to_owned(),
            })
            .collect()
    }

    /// Empties `self` for packing anew (with room for what it held) and returns what it held.
    fn take_for_rebuild(&mut self) -> Changes {
        let before = std::mem::take(self);
        self.text.reserve(before.text.len());
        self.ends.reserve(before.len());
        before
    }
}

/// Field changes borrowed from a packed buffer: a [`Changes`], or one child's changes in
/// [`super::ChildOperations`]. `ends` are offsets in `text`; the first change starts at
/// `start`, each next one where the one before ended.
#[derive(Clone, Copy, Default)]
pub struct ChangeList<'a> {
    text: &'a str,
    ends: SlotsRef<'a>,
    start: u32,
}

impl<'a> ChangeList<'a> {
    pub(super) fn new(text: &'a str, ends: SlotsRef<'a>, start: u32) -> Self {
        ChangeList { text, ends, start }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The change at `index`.
    pub fn get(&self, index: usize) -> Option<Change<'a>> {
        let [field, old, new] = self.ends.get(index)?;
        let start = match index {
            0 => self.start,
            _ => self.ends.get(index - 1).expect("the change before")[2],
        };
        let text: &'a str = self.text;
        let span = |from: u32, to: u32| words::read(&text[from as usize..to as usize]);
        Some(Change {
            field: span(start, field),
            old: Json(span(field, old)),
            new: Json(span(old, new)),
        })
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Change<'a>> + use<'a> {
        let list = *self;
        (0..list.len()).map(move |i| list.get(i).expect("index in range"))
    }

    /// The change of `field`.
    pub fn find(&self, field: &str) -> Option<Change<'a>> {
        self.iter().find(|c| c.field == field)
    }
}

impl PartialEq for ChangeList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl fmt::Debug for ChangeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for ChangeList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'a> IntoIterator for &'a Changes {
    type Item = Change<'a>;
    type IntoIter = Box<dyn ExactSizeIterator<Item = Change<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl From<&[FieldChange]> for Changes {
    fn from(changes: &[FieldChange]) -> Self {
        let mut out = Changes {
            text: String::with_capacity(
                changes
                    .iter()
                    .map(|c| {
                        words::stored_len(&c.field)
                            + words::stored_len(&c.old.0)
                            + words::stored_len(&c.new.0)
                    })
                    .sum(),
            ),
            ends: Slots::with_capacity(changes.len()),
        };
        for c in changes {
            out.push(&c.field, &c.old.0, &c.new.0);
        }
        out
    }
}

impl From<Vec<FieldChange>> for Changes {
    fn from(changes: Vec<FieldChange>) -> Self {
        Changes::from(changes.as_slice())
    }
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Changes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<FieldChange>::deserialize(d).map(Changes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(field: &str, old: &str, new: &str) -> FieldChange {
        FieldChange {
            field: field.into(),
            old: JsonText(old.into()),
            new: JsonText(new.into()),
        }
    }

    fn sample() -> Vec<FieldChange> {
        vec![
            change("name", "null", "\"vm1\""),
            change("vcpus", "1", "2"),
            change("custom_fields.proxmox_vm_id", "null", "101"),
        ]
    }

    #[test]
    fn packs_and_reads_back_every_change_in_order() {
        let packed = Changes::from(sample());
        assert_eq!(packed.len(), 3);
        assert_eq!(packed.to_vec(), sample());
        let second = packed.get(1).unwrap();
        assert_eq!(
            (second.field, second.old.0, second.new.0),
            ("vcpus", "1", "2")
        );
        assert_eq!(packed.get(3), None);
        assert_eq!(
            packed
                .find("name")
                .unwrap()
                .new
                .as_string_value()
                .as_deref(),
            Some("vm1")
        );
        assert!(packed.find("name").unwrap().old.is_null());
    }

    /// A text past what `u16` offsets reach reads back whole, as do the changes before and
    /// after it, and the list equals one packed from the same changes.
    #[test]
    fn a_text_past_64_kib_reads_back_whole() {
        let long = format!("\"{}\"", "x".repeat(70_000));
        let changes = vec![
            change("name", "null", "\"vm1\""),
            change("comments", "null", &long),
            change("memory", "1024", "2048"),
        ];
        let packed = Changes::from(changes.clone());
        assert_eq!(packed.to_vec(), changes);
        assert_eq!(packed.find("comments").unwrap().new.0, long);
        assert_eq!(packed.get(2).unwrap().old.0, "1024");
        let mut rebuilt = Changes::new();
        for c in &changes {
            rebuilt.push(&c.field, &c.old.0, &c.new.0);
        }
        assert_eq!(rebuilt, packed);
        rebuilt.retain(|c| c.field != "comments");
        assert_eq!(
            rebuilt.to_vec(),
            vec![changes[0].clone(), changes[2].clone()]
        );
    }

    #[test]
    fn set_replaces_in_place_or_appends_and_retain_keeps_order() {
        let mut packed = Changes::from(sample());
        packed.set("vcpus", "1", "4");
        packed.set("memory", "null", "2048");
        let fields: Vec<&str> = packed.iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            ["name", "vcpus", "custom_fields.proxmox_vm_id", "memory"]
        );
        assert_eq!(packed.find("vcpus").unwrap().new.0, "4");
        assert!(packed.set_new("memory", "4096"));
        assert!(!packed.set_new("disk", "1"));
        assert_eq!(packed.find("memory").unwrap().old.0, "null");
        packed.retain(|c| c.field != "vcpus");
        let fields: Vec<&str> = packed.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["name", "custom_fields.proxmox_vm_id", "memory"]);
        packed.clear();
        assert!(packed.is_empty());
    }

    #[test]
    fn serializes_like_the_list_of_field_changes_and_back() {
        let packed = Changes::from(sample());
        let as_list = serde_json::to_value(sample()).unwrap();
        assert_eq!(serde_json::to_value(&packed).unwrap(), as_list);
        assert_eq!(
            as_list[0],
            json!({"field": "name", "old": null, "new": "vm1"})
        );
        let back: Changes = serde_json::from_value(as_list).unwrap();
        assert_eq!(back, packed);
    }
}
