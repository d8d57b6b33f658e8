//! Desired against current children: the child changes, honouring each collection's ownership,
//! and the VM-level changes that follow from them (`disk`, `primary_ip4`, `primary_ip6`).
//!
//! Per collection (see the WIT's `field-policy` for the meaning of each ownership):
//! - `keep` desired, `ignore`, or current children not read (for a VM that exists): nothing.
//! - A desired child without a current one of its key: `create`, with the managed tag.
//! - With one: `update` with the differing fields when it is managed (`owned`, `merge`), or
//!   adoption when it is the operator's and the collection is `owned` (the fields plus the
//!   managed tag); `seed` and an operator's child under `merge` are left alone.
//! - A current child no desired child has: `delete`, only when it is managed and the collection
//!   is `owned` or `merge`.
//!
//! Output: by kind, then key (then op, for a deleted and a created child of one key).

use std::borrow::Cow;

use super::model::{
    ChildChange, ChildIdentity, ChildKind, ChildOp, MANAGED_TAG, VmInterface, VmIpAddress,
    VmMacAddress, VmVirtualDisk,
};
use crate::model::{Field, FieldChange, JsonText, Ownership};

/// What the diff reads of a child of either side: its kind, key, identity and parent.
pub(crate) trait Keyed {
    const KIND: ChildKind;
    /// The child's text type (`String`, or `Cow<str>` for current children borrowed from
    /// NetBox's text).
    type Text: AsRef<str>;
    /// The child key, borrowed where the child holds it as it is.
    fn key(&self) -> Cow<'_, str>;
    /// Whether the child's key is `key`, without writing it out.
    fn key_is(&self, key: &str) -> bool {
        self.key() == key
    }
    fn identity(&self) -> Option<&ChildIdentity<Self::Text>>;
    fn parent(&self) -> Option<String>;
}

/// A desired child compared with a current one of the same kind (`Cur`, whatever its text).
pub(crate) trait Child<Cur: Keyed>: Keyed {
    /// The fields to write: all known ones for a create (`cur` absent), the differing ones for
    /// an update.
    fn fields(&self, cur: Option<&Cur>, out: &mut Fields);
}

/// Field changes being collected for one child.
pub(crate) struct Fields {
    pub(crate) list: Vec<FieldChange>,
    /// Below NetBox 4.2 the primary MAC is the interface's own `mac_address` field.
    legacy_mac: bool,
}

/// A text field's set value as `&str`, whatever the side's text type.
fn set_text<S: AsRef<str>>(f: &Field<S>) -> Option<&str> {
    f.as_set().map(AsRef::as_ref)
}

impl Fields {
    fn push(&mut self, field: &str, old: String, new: String) {
        self.list.push(FieldChange {
            field: field.to_owned(),
            old: JsonText(old),
            new: JsonText(new),
        });
    }

    /// Compares one field given as each side's set value (`None`: clear); `keep` never writes,
    /// a create (`current` absent) writes only set values.
    fn compare<T: PartialEq + ?Sized>(
        &mut self,
        name: &str,
        desired: Option<&T>,
        current: Option<Option<&T>>,
        json: impl Fn(Option<&T>) -> String,
    ) {
        match current {
            // A create has no old value: `null`, also for text NetBox keeps as `""`.
            None => {
                if desired.is_some() {
                    self.push(name, "null".to_owned(), json(desired));
                }
            }
            Some(c) => {
                if c != desired {
                    self.push(name, json(c), json(desired));
                }
            }
        }
    }

    /// Compares one field of a plain value (a flag, a number).
    fn field<T: PartialEq>(
        &mut self,
        name: &str,
        desired: &Field<T>,
        current: Option<&Field<T>>,
        json: impl Fn(Option<&T>) -> String,
    ) {
        if !desired.is_keep() {
            self.compare(name, desired.as_set(), current.map(Field::as_set), json);
        }
    }

    /// Compares one text field, each side with its own text type.
    fn text<D: AsRef<str>, C: AsRef<str>>(
        &mut self,
        name: &str,
        desired: &Field<D>,
        current: Option<&Field<C>>,
        json: impl Fn(Option<&str>) -> String,
    ) {
        if !desired.is_keep() {
            self.compare(name, set_text(desired), current.map(set_text), json);
        }
    }

    /// An optional text (the interface a MAC or IP is on) compared without copying it.
    fn opt_text(&mut self, name: &str, desired: Option<&str>, current: Option<Option<&str>>) {
        match current {
            None if desired.is_some() => self.push(name, "null".to_owned(), text_json(desired)),
            Some(c) if c != desired => self.push(name, text_json(c), text_json(desired)),
            _ => {}
        }
    }

    /// A create's key field.
    fn key_field(&mut self, name: &str, value: &str) {
        self.push(name, "null".to_owned(), text_json(Some(value)));
    }
}

fn text_json(v: Option<&str>) -> String {
    v.map_or_else(|| "null".to_owned(), |s| JsonText::string(s).0)
}
fn blank_json(v: Option<&str>) -> String {
    v.map_or_else(|| "\"\"".to_owned(), |s| JsonText::string(s).0)
}
fn count_json(v: Option<&u64>) -> String {
    v.map_or_else(|| "null".to_owned(), u64::to_string)
}
fn bool_json(v: Option<&bool>) -> String {
    v.map_or_else(|| "null".to_owned(), bool::to_string)
}

/// An optional text as `&str`.
fn opt_str<S: AsRef<str>>(v: &Option<S>) -> Option<&str> {
    v.as_ref().map(AsRef::as_ref)
}

impl<S: AsRef<str>> Keyed for VmInterface<S> {
    const KIND: ChildKind = ChildKind::Interface;
    type Text = S;
    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.name.as_ref())
    }
    fn identity(&self) -> Option<&ChildIdentity<S>> {
        self.identity.as_ref()
    }
    fn parent(&self) -> Option<String> {
        None
    }
}

impl<D: AsRef<str>, C: AsRef<str>> Child<VmInterface<C>> for VmInterface<D> {
    fn fields(&self, cur: Option<&VmInterface<C>>, out: &mut Fields) {
        if cur.is_none() {
            out.key_field("name", self.name.as_ref());
        }
        out.field("enabled", &self.enabled, cur.map(|c| &c.enabled), bool_json);
        out.field("mtu", &self.mtu, cur.map(|c| &c.mtu), count_json);
        out.text(
            "description",
            &self.description,
            cur.map(|c| &c.description),
            blank_json,
        );
        out.text("mode", &self.mode, cur.map(|c| &c.mode), text_json);
        out.field(
            "untagged_vlan",
            &self.untagged_vlan,
            cur.map(|c| &c.untagged_vlan),
            count_json,
        );
        let mac_field = if out.legacy_mac {
            "mac_address"
        } else {
            "primary_mac_address"
        };
        out.text(
            mac_field,
            &self.primary_mac_address,
            cur.map(|c| &c.primary_mac_address),
            text_json,
        );
    }
}

impl<S: AsRef<str>> Keyed for VmMacAddress<S> {
    const KIND: ChildKind = ChildKind::MacAddress;
    type Text = S;
    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.mac_address.as_ref())
    }
    fn identity(&self) -> Option<&ChildIdentity<S>> {
        self.identity.as_ref()
    }
    fn parent(&self) -> Option<String> {
        opt_str(&self.interface).map(str::to_owned)
    }
}

impl<D: AsRef<str>, C: AsRef<str>> Child<VmMacAddress<C>> for VmMacAddress<D> {
    fn fields(&self, cur: Option<&VmMacAddress<C>>, out: &mut Fields) {
        if cur.is_none() {
            out.key_field("mac_address", self.mac_address.as_ref());
        }
        out.opt_text(
            "interface",
            opt_str(&self.interface),
            cur.map(|c| opt_str(&c.interface)),
        );
    }
}

impl<S: AsRef<str>> Keyed for VmIpAddress<S> {
    const KIND: ChildKind = ChildKind::IpAddress;
    type Text = S;
    fn key(&self) -> Cow<'_, str> {
        match self.vrf {
            None => Cow::Borrowed(self.address.as_ref()),
            Some(_) => Cow::Owned(VmIpAddress::key(self)),
        }
    }
    fn key_is(&self, key: &str) -> bool {
        let address = self.address.as_ref();
        match &self.vrf {
            None => key == address,
            // `address@vrf`, compared piece by piece.
            Some(vrf) => key
                .strip_prefix(address)
                .and_then(|rest| rest.strip_prefix('@'))
                .is_some_and(|v| v == vrf.as_ref()),
        }
    }
    fn identity(&self) -> Option<&ChildIdentity<S>> {
        self.identity.as_ref()
    }
    fn parent(&self) -> Option<String> {
        opt_str(&self.interface).map(str::to_owned)
    }
}

impl<D: AsRef<str>, C: AsRef<str>> Child<VmIpAddress<C>> for VmIpAddress<D> {
    fn fields(&self, cur: Option<&VmIpAddress<C>>, out: &mut Fields) {
        if cur.is_none() {
            out.key_field("address", self.address.as_ref());
            if let Some(vrf) = &self.vrf {
                out.key_field("vrf", vrf.as_ref());
            }
        }
        out.text("status", &self.status, cur.map(|c| &c.status), text_json);
        out.opt_text(
            "interface",
            opt_str(&self.interface),
            cur.map(|c| opt_str(&c.interface)),
        );
    }
}

impl<S: AsRef<str>> Keyed for VmVirtualDisk<S> {
    const KIND: ChildKind = ChildKind::VirtualDisk;
    type Text = S;
    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.name.as_ref())
    }
    fn identity(&self) -> Option<&ChildIdentity<S>> {
        self.identity.as_ref()
    }
    fn parent(&self) -> Option<String> {
        None
    }
}

impl<D: AsRef<str>, C: AsRef<str>> Child<VmVirtualDisk<C>> for VmVirtualDisk<D> {
    fn fields(&self, cur: Option<&VmVirtualDisk<C>>, out: &mut Fields) {
        if cur.is_none() {
            out.key_field("name", self.name.as_ref());
        }
        out.field("size", &self.size, cur.map(|c| &c.size), count_json);
        out.text(
            "description",
            &self.description,
            cur.map(|c| &c.description),
            blank_json,
        );
    }
}

fn tags_json<S: AsRef<str>>(tags: &[S]) -> String {
    let mut sorted: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    sorted.dedup();
    serde_json::to_string(&sorted).unwrap_or_else(|_| "[]".to_owned())
}

/// The changes of one collection, appended to `out`. `current` is `None` when the VM does not
/// exist yet (it has no children).
pub(crate) fn collection<D: Child<C>, C: Keyed>(
    own: Ownership,
    desired: &Field<Vec<D>>,
    current: Option<&Field<Vec<C>>>,
    legacy_mac: bool,
    out: &mut Vec<ChildChange>,
) {
    if desired.is_keep() || own == Ownership::Ignore {
        return;
    }
    let cur: &[C] = match current {
        None | Some(Field::Clear) => &[],
        Some(Field::Set(v)) => v,
        Some(Field::Keep) => return,
    };
    let want: &[D] = desired.as_set().map_or(&[], Vec::as_slice);
    let managed = |c: &C| c.identity().is_some_and(|i| i.managed);
    // Keys are compared in place (`key_is`) and the bookkeeping is a bit set: the usual VM
    // has a few children, and through WASM each small vector's allocation cost more than the
    // comparisons it saved.
    let mut matched = Marks::new(cur.len());
    let start = out.len();
    for (j, d) in want.iter().enumerate() {
        let key = d.key();
        if want[..j].iter().any(|p| p.key_is(&key)) {
            continue; // a duplicate desired key: the first wins
        }
        // Prefer a managed match, so an operator's duplicate is never adopted over ours.
        let pick = (0..cur.len())
            .filter(|&i| !matched.get(i) && cur[i].key_is(&key))
            .min_by_key(|&i| !managed(&cur[i]));
        let mut fields = Fields {
            list: Vec::new(),
            legacy_mac,
        };
        match pick {
            None => {
                d.fields(None, &mut fields);
                fields.push("tags", "null".to_owned(), tags_json(&[MANAGED_TAG]));
                out.push(ChildChange {
                    kind: D::KIND,
                    key: key.into_owned(),
                    parent: d.parent(),
                    op: ChildOp::Create,
                    changes: fields.list,
                });
            }
            Some(i) => {
                matched.set(i);
                let c = &cur[i];
                let Some(ident) = c.identity() else { continue };
                let adopt = !ident.managed && own == Ownership::Owned;
                if own == Ownership::Seed || !(ident.managed || adopt) {
                    continue;
                }
                d.fields(Some(c), &mut fields);
                if adopt {
                    let mut tags: Vec<&str> = ident.tags.iter().map(AsRef::as_ref).collect();
                    tags.push(MANAGED_TAG);
                    fields.push("tags", tags_json(&ident.tags), tags_json(&tags));
                }
                if !fields.list.is_empty() {
                    out.push(ChildChange {
                        kind: D::KIND,
                        key: key.into_owned(),
                        parent: d.parent(),
                        op: ChildOp::Update(ident.id),
                        changes: fields.list,
                    });
                }
            }
        }
    }
    if matches!(own, Ownership::Owned | Ownership::Merge) {
        for (i, c) in cur.iter().enumerate() {
            if matched.get(i) || !managed(c) {
                continue;
            }
            let Some(ident) = c.identity() else { continue };
            out.push(ChildChange {
                kind: C::KIND,
                key: c.key().into_owned(),
                parent: c.parent(),
                op: ChildOp::Delete(ident.id),
                changes: Vec::new(),
            });
        }
    }
    out[start..].sort_by(|a, b| a.key.cmp(&b.key).then(op_rank(&a.op).cmp(&op_rank(&b.op))));
}

/// Which current children a desired one matched: bits for up to 64 (every VM seen so far),
/// a vector beyond.
enum Marks {
    Bits(u64),
    Many(Vec<bool>),
}

impl Marks {
    fn new(n: usize) -> Self {
        if n <= 64 {
            Marks::Bits(0)
        } else {
            Marks::Many(vec![false; n])
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Marks::Bits(b) => b & (1 << i) != 0,
            Marks::Many(v) => v[i],
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Marks::Bits(b) => *b |= 1 << i,
            Marks::Many(v) => v[i] = true,
        }
    }
}

/// Deletes before creates of the same key (an IP moving into a VRF and back, say).
fn op_rank(op: &ChildOp) -> u8 {
    match op {
        ChildOp::Delete(_) => 0,
        ChildOp::Update(_) => 1,
        ChildOp::Create => 2,
    }
}

/// The sum of the VM's virtual disks once `changes` are applied, or `None` when it will have
/// none or the current ones are unknown.
pub(crate) fn disk_total_after<S>(
    current: Option<&Field<Vec<VmVirtualDisk<S>>>>,
    changes: &[ChildChange],
) -> Option<u64> {
    let cur: &[VmVirtualDisk<S>] = match current {
        None | Some(Field::Clear) => &[],
        Some(Field::Set(v)) => v,
        Some(Field::Keep) => return None,
    };
    let size_in = |c: &ChildChange| {
        c.changes
            .iter()
            .find(|f| f.field == "size")
            .and_then(|f| f.new.as_str().parse::<u64>().ok())
    };
    let disk_changes = || changes.iter().filter(|c| c.kind == ChildKind::VirtualDisk);
    let mut total = 0u64;
    let mut any = false;
    for d in cur {
        let Some(id) = d.identity.as_ref().map(|i| i.id) else {
            continue;
        };
        if disk_changes().any(|c| c.op == ChildOp::Delete(id)) {
            continue;
        }
        let size = disk_changes()
            .find(|c| c.op == ChildOp::Update(id))
            .and_then(size_in)
            .or_else(|| d.size.as_set().copied())
            .unwrap_or(0);
        total = total.saturating_add(size);
        any = true;
    }
    for c in disk_changes().filter(|c| c.op == ChildOp::Create) {
        total = total.saturating_add(size_in(c).unwrap_or(0));
        any = true;
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(id: Option<u64>, managed: bool, name: &str, size: u64) -> VmVirtualDisk {
        VmVirtualDisk {
            identity: id.map(|id| ChildIdentity {
                id,
                managed,
                tags: if managed {
                    vec![MANAGED_TAG.into()]
                } else {
                    vec![]
                },
            }),
            name: name.into(),
            size: Field::Set(size),
            description: Field::Set("local-lvm".into()),
        }
    }

    fn run(
        own: Ownership,
        d: Vec<VmVirtualDisk>,
        c: Option<Vec<VmVirtualDisk>>,
    ) -> Vec<ChildChange> {
        let mut out = Vec::new();
        let cur = c.map(Field::Set);
        collection(own, &Field::Set(d), cur.as_ref(), false, &mut out);
        out
    }

    #[test]
    fn create_carries_the_key_and_managed_tag() {
        let out = run(
            Ownership::Owned,
            vec![disk(None, false, "scsi0", 32768)],
            None,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].op, ChildOp::Create);
        let fields: Vec<_> = out[0]
            .changes
            .iter()
            .map(|f| (f.field.as_str(), f.new.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("name", "\"scsi0\""),
                ("size", "32768"),
                ("description", "\"local-lvm\""),
                ("tags", "[\"pve2netbox\"]")
            ]
        );
    }

    #[test]
    fn an_ip_key_is_compared_as_written() {
        let ip = |address: &str, vrf: Option<&str>| VmIpAddress::<String> {
            identity: None,
            address: address.into(),
            vrf: vrf.map(Into::into),
            status: Field::Keep,
            interface: None,
        };
        let ips = [
            ip("10.0.0.5/24", None),
            ip("10.0.0.5/24", Some("blue")),
            ip("10.0.0.5/24", Some("")),
            ip("10.0.0.5/24@x", Some("y")),
            ip("10.0.0.5/24", Some("x@y")),
        ];
        let keys = [
            "10.0.0.5/24",
            "10.0.0.5/24@blue",
            "10.0.0.5/24@",
            "10.0.0.5/24@x@y",
            "10.0.0.5/24@blu",
            "10.0.0.5/2",
            "",
        ];
        for a in &ips {
            for k in keys {
                assert_eq!(a.key_is(k), Keyed::key(a) == k, "{a:?} {k}");
            }
        }
    }

    #[test]
    fn many_children_are_matched_and_deleted_past_the_bit_set() {
        // 64 (every bit) and 70 (past the bit set) managed disks, all but five still wanted
        // (the last one wanted is d63 or d69): the five go, nothing else changes.
        for n in [64, 70] {
            let cur: Vec<_> = (0..n)
                .map(|i| disk(Some(i), true, &format!("d{i}"), 10))
                .collect();
            let want: Vec<_> = (0..n)
                .filter(|i| i % 14 != 3)
                .map(|i| disk(None, false, &format!("d{i}"), 10))
                .collect();
            let out = run(Ownership::Owned, want, Some(cur));
            let deleted: Vec<_> = out.iter().map(|c| (c.key.as_str(), c.op)).collect();
            assert_eq!(
                deleted,
                [
                    ("d17", ChildOp::Delete(17)),
                    ("d3", ChildOp::Delete(3)),
                    ("d31", ChildOp::Delete(31)),
                    ("d45", ChildOp::Delete(45)),
                    ("d59", ChildOp::Delete(59)),
                ],
                "{n}"
            );
        }
    }

    #[test]
    fn equal_children_change_nothing() {
        let out = run(
            Ownership::Owned,
            vec![disk(None, false, "scsi0", 32768)],
            Some(vec![disk(Some(4), true, "scsi0", 32768)]),
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn only_managed_children_are_deleted() {
        let out = run(
            Ownership::Owned,
            vec![],
            Some(vec![
                disk(Some(4), true, "scsi1", 10),
                disk(Some(5), false, "hand", 10),
            ]),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].key.as_str(), out[0].op),
            ("scsi1", ChildOp::Delete(4))
        );
    }

    #[test]
    fn owned_adopts_merge_and_seed_leave_the_operators_alone() {
        let cur = || Some(vec![disk(Some(5), false, "scsi0", 100)]);
        let want = || vec![disk(None, false, "scsi0", 200)];
        let owned = run(Ownership::Owned, want(), cur());
        assert_eq!(owned[0].op, ChildOp::Update(5));
        assert!(
            owned[0]
                .changes
                .iter()
                .any(|f| f.field == "tags" && f.new.as_str() == "[\"pve2netbox\"]")
        );
        assert!(run(Ownership::Merge, want(), cur()).is_empty());
        assert!(run(Ownership::Seed, want(), cur()).is_empty());
        assert!(run(Ownership::Ignore, want(), cur()).is_empty());
        assert!(
            run(Ownership::Seed, want(), Some(vec![]))
                .iter()
                .all(|c| c.op == ChildOp::Create)
        );
    }

    #[test]
    fn keep_and_unread_change_nothing() {
        let mut out = Vec::new();
        let cur = Field::Set(vec![disk(Some(4), true, "scsi0", 1)]);
        collection::<VmVirtualDisk, VmVirtualDisk>(
            Ownership::Owned,
            &Field::Keep,
            Some(&cur),
            false,
            &mut out,
        );
        collection::<VmVirtualDisk, VmVirtualDisk>(
            Ownership::Owned,
            &Field::Set(vec![]),
            Some(&Field::Keep),
            false,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn disk_total_follows_the_plan() {
        let cur = Field::Set(vec![
            disk(Some(4), true, "scsi0", 100),
            disk(Some(5), true, "scsi1", 50),
            disk(Some(6), false, "other", 7),
        ]);
        let mut out = Vec::new();
        collection(
            Ownership::Owned,
            &Field::Set(vec![
                disk(None, false, "scsi0", 200),
                disk(None, false, "scsi2", 30),
            ]),
            Some(&cur),
            false,
            &mut out,
        );
        assert_eq!(disk_total_after(Some(&cur), &out), Some(200 + 7 + 30));
        assert_eq!(disk_total_after::<String>(Some(&Field::Keep), &out), None);
        assert_eq!(disk_total_after::<String>(None, &[]), None);
    }
}
