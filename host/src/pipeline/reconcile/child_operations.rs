//! The child changes of one VM, packed: every child's texts in one buffer, its fixed-size
//! records in another.
//!
//! Why: the rules' child changes are held from their answer to the dispatch, where they are
//! the plan's child operations. Kept as a list of records with their own strings (key, parent,
//! field-change text and offsets), a VM with two NICs, four IPs and two disks was ten 120-byte
//! records and some forty allocations, ~3 KB: ~300 MB held at the peak of a 100k-VM first sync.
//! Packed, it is two allocations of ~1.8 KB together.
//!
//! Field names and common values are stored as codes ([`words`]); keys, parents and
//! `last_updated` as they are.
//!
//! The same form carries the rules' answer (`op` and the id they named) and the plan's
//! operations (with the child's `last_updated`), so a plan that only takes the rules' creates
//! keeps their memory as it is. Read through [`ChildOperation`] (borrowed); serialized exactly as
//! the list of operations it replaces, so `plan.json` keeps its shape.

use std::fmt;
use std::num::NonZeroU64;

use guest_default::children::{ChildChange, ChildKind, ChildOp};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::changes::{ChangeList, Changes};
use super::slots::Slots;
use super::words;

/// The text bytes one field change takes (names and common values as codes, [`words`]).
fn fields_len(field: &str, old: &str, new: &str) -> usize {
    words::stored_len(field) + words::stored_len(old) + words::stored_len(new)
}

/// What to do with one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildAction {
    Create,
    Update,
    Delete,
}

/// One child write, borrowed from [`ChildOperations`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChildOperation<'a> {
    pub kind: ChildKind,
    /// The child's key (interface name, MAC, `address[@vrf]`, disk name).
    pub key: &'a str,
    /// The interface key of a MAC or IP address (after the change; for a delete, its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<&'a str>,
    pub op: ChildAction,
    /// The NetBox id of an updated or deleted child (NetBox ids start at 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<NonZeroU64>,
    /// Its `last_updated` when the plan was made: `apply` refuses the child when it moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<&'a str>,
    /// Field changes, old -> new (references as keys; `untagged_vlan` as the VID).
    #[serde(skip_serializing_if = "ChangeList::is_empty")]
    pub changes: ChangeList<'a>,
}

impl ChildOperation<'_> {
    /// `interface 'net0'`, for messages.
    pub fn label(&self) -> String {
        format!("{} '{}'", kind_word(self.kind), self.key)
    }

    /// [`ChildOperation::id`] as a number.
    pub fn netbox_id(&self) -> Option<u64> {
        self.id.map(NonZeroU64::get)
    }
}

/// `interface`, `MAC address`, `IP address`, `virtual disk`.
pub fn kind_word(kind: ChildKind) -> &'static str {
    match kind {
        ChildKind::Interface => "interface",
        ChildKind::MacAddress => "MAC address",
        ChildKind::IpAddress => "IP address",
        ChildKind::VirtualDisk => "virtual disk",
    }
}

/// One VM's child operations, packed (see the module documentation).
///
/// `slots` holds, per child: `[key end, parent end, last_updated end]` (offsets in `text`; the
/// key starts where the child before ended), `[meta, id low, id high]` (see [`Meta`]), then one
/// `[field end, old end, new end]` per field change. An absent parent or `last_updated` is an
/// empty span with its flag unset, so `None` and `Some("")` stay apart.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChildOperations {
    text: String,
    slots: Slots,
}

/// A child's second slot, word 0: kind (bits 0-1), action (2-3), has parent (4), has
/// `last_updated` (5), number of field changes (8-31).
struct Meta;

impl Meta {
    const PARENT: u32 = 1 << 4;
    const LAST_UPDATED: u32 = 1 << 5;
    const CHANGES_SHIFT: u32 = 8;

    fn kind(meta: u32) -> ChildKind {
        match meta & 3 {
            0 => ChildKind::Interface,
            1 => ChildKind::MacAddress,
            2 => ChildKind::IpAddress,
            _ => ChildKind::VirtualDisk,
        }
    }

    fn action(meta: u32) -> ChildAction {
        match (meta >> 2) & 3 {
            0 => ChildAction::Create,
            1 => ChildAction::Update,
            _ => ChildAction::Delete,
        }
    }

    fn pack(kind: ChildKind, action: ChildAction, parent: bool, last_updated: bool) -> u32 {
        let kind = match kind {
            ChildKind::Interface => 0,
            ChildKind::MacAddress => 1,
            ChildKind::IpAddress => 2,
            ChildKind::VirtualDisk => 3,
        };
        let action = match action {
            ChildAction::Create => 0,
            ChildAction::Update => 1,
            ChildAction::Delete => 2,
        };
        kind | action << 2
            | if parent { Self::PARENT } else { 0 }
            | if last_updated { Self::LAST_UPDATED } else { 0 }
    }
}

/// Field changes as `(field, old, new)` texts, for [`ChildOperations::push_parts`].
pub type FieldTexts<'a> = (&'a str, &'a str, &'a str);

impl ChildOperations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `texts` bytes of text and `slots` slots (see [`ChildOperations::room_for`]).
    fn with_capacity(texts: usize, slots: usize) -> Self {
        ChildOperations {
            text: String::with_capacity(texts),
            slots: Slots::with_capacity(slots),
        }
    }

    /// The text bytes and slots `op` takes.
    fn room_for(op: &ChildOperation<'_>) -> (usize, usize) {
        let text = op.key.len()
            + op.parent.map_or(0, str::len)
            + op.last_updated.map_or(0, str::len)
            + op.changes
                .iter()
                .map(|c| fields_len(c.field, c.old.0, c.new.0))
                .sum::<usize>();
        (text, 2 + op.changes.len())
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The number of children.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            ops: self,
            slot: 0,
            start: 0,
        }
    }

    /// The child at `index`.
    pub fn get(&self, index: usize) -> Option<ChildOperation<'_>> {
        self.iter().nth(index)
    }

    /// Appends a child. Panics past 4 GiB of text (a VM's children are a few KB).
    pub fn push(&mut self, op: ChildOperation<'_>) {
        self.push_parts(op, op.changes.iter().map(|c| (c.field, c.old.0, c.new.0)));
    }

    /// Appends `op` with the field changes `changes` instead of its own.
    pub fn push_parts<'c>(
        &mut self,
        op: ChildOperation<'_>,
        changes: impl IntoIterator<Item = FieldTexts<'c>>,
    ) {
        let text = &mut self.text;
        let mut end = |s: &str| {
            text.push_str(s);
            u32::try_from(text.len()).expect("children of one VM under 4 GiB")
        };
        let head = [
            end(op.key),
            end(op.parent.unwrap_or("")),
            end(op.last_updated.unwrap_or("")),
        ];
        let id = op.netbox_id().unwrap_or(0);
        let at = self.slots.len();
        self.slots.push(head);
        self.slots.push([0, id as u32, (id >> 32) as u32]);
        let mut count: u32 = 0;
        let text = &mut self.text;
        let mut word = |s: &str| {
            words::push(text, s);
            u32::try_from(text.len()).expect("children of one VM under 4 GiB")
        };
        for (field, old, new) in changes {
            let ends = [word(field), word(old), word(new)];
            self.slots.push(ends);
            count += 1;
        }
        assert!(count < 1 << 24, "under 2^24 field changes per child");
        let [_, id_low, id_high] = self.slots.get(at + 1).expect("pushed above");
        let meta = Meta::pack(
            op.kind,
            op.op,
            op.parent.is_some(),
            op.last_updated.is_some(),
        ) | count << Meta::CHANGES_SHIFT;
        self.slots.set(at + 1, [meta, id_low, id_high]);
    }

    /// Keeps the children `keep` accepts, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(ChildOperation<'_>) -> bool) {
        let kept: Vec<bool> = self.iter().map(&mut keep).collect();
        if kept.iter().all(|k| *k) {
            return;
        }
        let before = std::mem::take(self);
        *self = before
            .iter()
            .zip(kept)
            .filter_map(|(op, k)| k.then_some(op))
            .collect();
    }

    /// Where the two buffers are, for tests that memory is reused.
    #[cfg(test)]
    pub(crate) fn buffers(&self) -> (usize, usize) {
        (self.text.as_ptr() as usize, self.slots.as_ptr())
    }

    /// Gives back the spare capacity left by pushes (the plan keeps the children until the
    /// dispatch).
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.slots.shrink_to_fit();
    }
}

/// The children of a [`ChildOperations`], in order.
pub struct Iter<'a> {
    ops: &'a ChildOperations,
    slot: usize,
    start: u32,
}

impl<'a> Iterator for Iter<'a> {
    type Item = ChildOperation<'a>;

    fn next(&mut self) -> Option<ChildOperation<'a>> {
        let slots = self.ops.slots.view();
        let [key, parent, last_updated] = slots.get(self.slot)?;
        let [meta, id_low, id_high] = slots.get(self.slot + 1).expect("a child's second slot");
        let count = (meta >> Meta::CHANGES_SHIFT) as usize;
        let changes = slots.slice(self.slot + 2..self.slot + 2 + count);
        let text: &'a str = &self.ops.text;
        let span = |from: u32, to: u32| &text[from as usize..to as usize];
        let op = ChildOperation {
            kind: Meta::kind(meta),
            key: span(self.start, key),
            parent: (meta & Meta::PARENT != 0).then(|| span(key, parent)),
            op: Meta::action(meta),
            id: NonZeroU64::new(u64::from(id_high) << 32 | u64::from(id_low)),
            last_updated: (meta & Meta::LAST_UPDATED != 0).then(|| span(parent, last_updated)),
            changes: ChangeList::new(text, changes, last_updated),
        };
        self.slot += 2 + count;
        self.start = changes.last().map_or(last_updated, |c| c[2]);
        Some(op)
    }
}

impl<'a> FromIterator<ChildOperation<'a>> for ChildOperations {
    /// Packed with no spare room.
    fn from_iter<I: IntoIterator<Item = ChildOperation<'a>>>(iter: I) -> Self {
        let ops: Vec<ChildOperation<'a>> = iter.into_iter().collect();
        let (text, slots) = ops
            .iter()
            .map(ChildOperations::room_for)
            .fold((0, 0), |(t, s), (a, b)| (t + a, s + b));
        let mut out = ChildOperations::with_capacity(text, slots);
        for op in ops {
            out.push(op);
        }
        out
    }
}

/// The rules' child changes of one VM: each `op` and the id it names (an id the rules gave as
/// 0 reads back as none, which the plan refuses as it refused the 0).
impl From<Vec<ChildChange>> for ChildOperations {
    fn from(changes: Vec<ChildChange>) -> Self {
        let text: usize = changes
            .iter()
            .map(|c| {
                c.key.len()
                    + c.parent.as_ref().map_or(0, String::len)
                    + c.changes
                        .iter()
                        .map(|f| fields_len(&f.field, &f.old.0, &f.new.0))
                        .sum::<usize>()
            })
            .sum();
        let slots = changes.iter().map(|c| 2 + c.changes.len()).sum();
        let mut out = ChildOperations::with_capacity(text, slots);
        for c in &changes {
            let (op, id) = match c.op {
                ChildOp::Create => (ChildAction::Create, 0),
                ChildOp::Update(id) => (ChildAction::Update, id),
                ChildOp::Delete(id) => (ChildAction::Delete, id),
            };
            let head = ChildOperation {
                kind: c.kind,
                key: &c.key,
                parent: c.parent.as_deref(),
                op,
                id: NonZeroU64::new(id),
                last_updated: None,
                changes: ChangeList::default(),
            };
            out.push_parts(
                head,
                c.changes
                    .iter()
                    .map(|f| (f.field.as_str(), f.old.0.as_str(), f.new.0.as_str())),
            );
        }
        out
    }
}

impl fmt::Debug for ChildOperations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for ChildOperations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// One operation as `plan.json` has it, read back.
#[derive(Deserialize)]
struct OwnedOperation {
    kind: ChildKind,
    key: String,
    #[serde(default)]
    parent: Option<String>,
    op: ChildAction,
    #[serde(default)]
    id: Option<NonZeroU64>,
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(default)]
    changes: Changes,
}

impl<'de> Deserialize<'de> for ChildOperations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Packing;
        impl<'de> Visitor<'de> for Packing {
            type Value = ChildOperations;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of child operations")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = ChildOperations::new();
                while let Some(o) = seq.next_element::<OwnedOperation>()? {
                    out.push(ChildOperation {
                        kind: o.kind,
                        key: &o.key,
                        parent: o.parent.as_deref(),
                        op: o.op,
                        id: o.id,
                        last_updated: o.last_updated.as_deref(),
                        changes: o.changes.list(),
                    });
                }
                out.shrink_to_fit();
                Ok(out)
            }
        }
        d.deserialize_seq(Packing)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use guest_default::model::{FieldChange, JsonText};
    use serde_json::json;

    /// A rules' child change with `fields` set from null (MACs and IPs on `net0`), for tests.
    pub(crate) fn change(
        kind: ChildKind,
        key: &str,
        op: ChildOp,
        fields: &[(&str, &str)],
    ) -> ChildChange {
        ChildChange {
            kind,
            key: key.into(),
            parent: matches!(kind, ChildKind::IpAddress | ChildKind::MacAddress)
                .then(|| "net0".to_owned()),
            op,
            changes: fields
                .iter()
                .map(|(f, v)| FieldChange {
                    field: (*f).into(),
                    old: JsonText::null(),
                    new: JsonText((*v).into()),
                })
                .collect(),
        }
    }

    /// The operations as the list of owned records they replace would serialize.
    fn as_records(changes: &[ChildChange]) -> serde_json::Value {
        changes
            .iter()
            .map(|c| {
                let (op, id) = match c.op {
                    ChildOp::Create => ("create", None),
                    ChildOp::Update(id) => ("update", NonZeroU64::new(id)),
                    ChildOp::Delete(id) => ("delete", NonZeroU64::new(id)),
                };
                let mut o = json!({"kind": c.kind, "key": c.key});
                if let Some(p) = &c.parent {
                    o["parent"] = json!(p);
                }
                o["op"] = json!(op);
                if let Some(id) = id {
                    o["id"] = json!(id);
                }
                if !c.changes.is_empty() {
                    o["changes"] = serde_json::to_value(&c.changes).unwrap();
                }
                o
            })
            .collect()
    }

    #[test]
    fn packs_every_child_and_reads_it_back_in_order() {
        let changes = vec![
            change(
                ChildKind::Interface,
                "net0",
                ChildOp::Update(11),
                &[("mtu", "9000"), ("untagged_vlan", "10")],
            ),
            change(ChildKind::IpAddress, "10.0.0.5/24", ChildOp::Create, &[]),
            change(
                ChildKind::VirtualDisk,
                "scsi0",
                ChildOp::Delete(u64::MAX),
                &[],
            ),
            change(
                ChildKind::MacAddress,
                "BC:24:11:2A:3B:4C",
                ChildOp::Create,
                &[("mac_address", "\"BC:24:11:2A:3B:4C\"")],
            ),
        ];
        let packed = ChildOperations::from(changes.clone());
        assert_eq!(packed.len(), 4);
        assert_eq!(serde_json::to_value(&packed).unwrap(), as_records(&changes));
        let first = packed.get(0).unwrap();
        assert_eq!(
            (first.kind, first.key, first.op, first.netbox_id()),
            (ChildKind::Interface, "net0", ChildAction::Update, Some(11))
        );
        assert_eq!(first.parent, None);
        assert_eq!(first.changes.find("untagged_vlan").unwrap().new.0, "10");
        assert_eq!(packed.get(1).unwrap().parent, Some("net0"));
        assert!(packed.get(1).unwrap().changes.is_empty());
        assert_eq!(packed.get(2).unwrap().netbox_id(), Some(u64::MAX));
        assert_eq!(packed.get(3).unwrap().kind, ChildKind::MacAddress);
        assert_eq!(packed.get(4), None);
        assert_eq!(
            (packed.text.capacity(), packed.slots.capacity()),
            (packed.text.len(), packed.slots.len()),
            "no spare room"
        );
    }

    #[test]
    fn round_trips_through_json_with_empty_and_unicode_texts() {
        let mut packed = ChildOperations::new();
        let mut lu = ChildOperations::new();
        lu.push(ChildOperation {
            kind: ChildKind::Interface,
            key: "",
            parent: Some(""),
            op: ChildAction::Update,
            id: NonZeroU64::new(3),
            last_updated: Some(""),
            changes: ChangeList::default(),
        });
        let owned = Changes::from(vec![
            FieldChange {
                field: "description".into(),
                old: JsonText("\"\"".into()),
                new: JsonText("\"Zürich ✓ 東京\"".into()),
            },
            FieldChange {
                field: "".into(),
                old: JsonText::null(),
                new: JsonText("null".into()),
            },
        ]);
        packed.push(lu.get(0).unwrap());
        packed.push(ChildOperation {
            kind: ChildKind::IpAddress,
            key: "fe80::1/64@ünï",
            parent: None,
            op: ChildAction::Create,
            id: None,
            last_updated: Some("2026-01-01T00:00:00.123456Z"),
            changes: owned.list(),
        });
        let got = packed.get(0).unwrap();
        assert_eq!(
            (got.key, got.parent, got.last_updated),
            ("", Some(""), Some(""))
        );
        let got = packed.get(1).unwrap();
        assert_eq!(got.parent, None);
        assert_eq!(got.changes, owned.list());
        assert_eq!(got.changes.get(0).unwrap().new.0, "\"Zürich ✓ 東京\"");
        let text = serde_json::to_string(&packed).unwrap();
        let back: ChildOperations = serde_json::from_str(&text).unwrap();
        assert_eq!(back, packed);
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        let empty: ChildOperations = serde_json::from_str("[]").unwrap();
        assert!(empty.is_empty() && empty.get(0).is_none());
    }

    #[test]
    fn many_children_keep_their_places_and_retain_keeps_order() {
        let changes: Vec<ChildChange> = (0..1000)
            .map(|i| {
                let fields: Vec<(String, String)> = (0..i % 7)
                    .map(|f| (format!("f{f}"), format!("\"v{i}.{f}\"")))
                    .collect();
                let fields: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(f, v)| (f.as_str(), v.as_str()))
                    .collect();
                change(
                    ChildKind::IpAddress,
                    &format!("10.{}.{}.1/24", i / 256, i % 256),
                    ChildOp::Update(i + 1),
                    &fields,
                )
            })
            .collect();
        let mut packed = ChildOperations::from(changes.clone());
        assert_eq!(serde_json::to_value(&packed).unwrap(), as_records(&changes));
        packed.retain(|c| c.netbox_id().is_some_and(|id| id % 3 == 0));
        let kept: Vec<ChildChange> = changes
            .into_iter()
            .filter(|c| matches!(c.op, ChildOp::Update(id) if id % 3 == 0))
            .collect();
        assert_eq!(packed.len(), 333);
        assert_eq!(serde_json::to_value(&packed).unwrap(), as_records(&kept));
        let all: ChildOperations = packed.iter().collect();
        assert_eq!(all, packed);
    }
}
