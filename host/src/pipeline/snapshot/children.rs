//! The NetBox children snapshot: the VM interfaces, MAC addresses, IP addresses (those assigned
//! to VM interfaces), virtual disks and VLANs the managed VMs' children need, each kind read
//! once in pages of 1000 with `fields=` (see [`NetboxClient::list_rows_into`]), all kinds in
//! parallel, indexed in memory by VM id. No per-VM or per-interface read, ever: a run costs
//! ceil(rows / 1000) reads per kind.
//!
//! Scope: interfaces are filtered by `cluster_id` (NetBox's VM-interface filter); MACs and IPs
//! by `assigned_object_type=virtualization.vminterface` and kept when assigned to one of those
//! interfaces; virtual disks have no cluster filter, so they are kept when their VM is one of
//! the managed VMs ([`ChildrenSnapshot::retain_vms`]). VLANs are few and any of them may be the
//! one a NIC's tag needs, so all are read (for the writes; the rendering takes an interface's
//! untagged VLAN from the interface row).
//!
//! A kind whose read failed, or that had a row this code does not understand, is not read: its
//! key is absent from every VM's rendering (the rules keep those children), never an empty
//! list. MACs and IPs are attributed through the interfaces, so they are not read either when
//! the interfaces were not. Below NetBox 4.2 there are no MAC objects (the interface's own
//! `mac_address` is rendered), and `mac_addresses` is absent.
//!
//! Memory: at 100k VMs a snapshot holds a million rows, so each kind's rows are kept as one
//! list converted as its pages arrive (no list of every page's rows beside it), sorted by VM
//! and indexed by ranges (no small vector per VM). A kept row is only what the rendering and
//! the plan read: ids as numbers, its texts as spans of one buffer per kind ([`Pool`]), its
//! `last_updated` as a number where NetBox's text comes back from it exactly
//! ([`LastUpdated`]), its tag list and choice values as indexes into lists kept once per kind,
//! and for MACs and IPs the VM interface they sit on (~110 bytes a row with its text, where
//! NetBox's shape as structs of strings was ~250 and several allocations). Once a kind is
//! read and placed under its VMs, each VM's rows are packed in one byte buffer per kind
//! (`packed_rows`: varints, ids and micros as differences; ~64 -> ~25 bytes a row besides
//! the text) and read back row by row as they were kept.
//!
//! Edges: NetBox client in; per VM the JSON text of WIT `netbox-vm.children` out
//! ([`ChildrenSnapshot::children_json`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::ops::{Deref, Range};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use crate::clients::netbox::{Capabilities, ListRow, Listed, NetboxClient, NetboxError};

use super::packed_rows::{PackedRow, RowReader, RowWriter, StampCode, read_alone, write_alone};
use super::primaries::PrimaryIps;
use super::sorted_near::Cursor;
use super::stamp;
pub use super::stamp::LastUpdated;
pub use vm_children::{VmChildren, VmCursor};

mod vm_children;
mod vm_index;

use vm_index::VmIndex;

/// VM interfaces.
pub const INTERFACE_ENDPOINT: &str = "virtualization/interfaces";
/// MAC address objects (NetBox 4.2+).
pub const MAC_ENDPOINT: &str = "dcim/mac-addresses";
/// IP addresses.
pub const IP_ENDPOINT: &str = "ipam/ip-addresses";
/// Virtual disks.
pub const DISK_ENDPOINT: &str = "virtualization/virtual-disks";
/// VLANs.
pub const VLAN_ENDPOINT: &str = "ipam/vlans";
/// `assigned_object_type` of an address on a VM interface.
pub const VMINTERFACE_TYPE: &str = "virtualization.vminterface";

/// A kind of child that could not be read; that kind counts as not read for every VM.
#[derive(Debug, thiserror::Error)]
pub enum ChildrenError {
    #[error("netbox_snapshot: reading {kind}: {source}")]
    Read {
        kind: &'static str,
        #[source]
        source: NetboxError,
    },
    #[error(
        "netbox_snapshot: {kind} row {id:?} not understood ({error}); {kind} are left alone this run"
    )]
    Unreadable {
        kind: &'static str,
        id: Option<u64>,
        error: String,
    },
    #[error("netbox_snapshot: {kind} not read because the VM interfaces were not")]
    NoInterfaces { kind: &'static str },
}

/// A nested object reduced to its id.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
struct Ref {
    id: u64,
}

/// A choice (`{value, label}`), rendered as `{value}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Choice {
    pub value: serde_json::Value,
}

/// A nested VLAN: `{id, vid}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VlanRef {
    pub id: u64,
    pub vid: u64,
}

/// A nested MAC address: `{id, mac_address}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MacRef {
    pub id: u64,
    pub mac_address: String,
}

/// A nested VRF: `{id, name}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VrfRef {
    pub id: u64,
    pub name: String,
}

/// A nested IP address: `{id, address}` (a VM's primary IPs).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct IpRef {
    pub id: u64,
    pub address: String,
}

/// A row's tags as slugs, shared between the rows that carry the same ones (most rows of a
/// kind carry the same tags: a list each was ~0.1 KB per row).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tags(Arc<[String]>);

impl Default for Tags {
    fn default() -> Self {
        Tags(Arc::from(Vec::new()))
    }
}

impl Deref for Tags {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Tags(Arc::from(slugs(d)?)))
    }
}

/// A text in a kind's [`Pool`]: where it starts and how long it is; [`Span::NONE`] for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// No text (a `null` or absent member; an empty text is a span of length 0).
    const NONE: Span = Span {
        start: u32::MAX,
        len: 0,
    };
}

/// A row's `last_updated`: microseconds since the Unix epoch when NetBox's text comes back
/// from them exactly ([`stamp::parse`]), else a span of the pool's text (high bit set: start in
/// the low 32 bits, length in the next 31), or none. A number instead of ~27 bytes of text:
/// over half of the rows' text at 100k VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u64);

impl Stamp {
    const NONE: Stamp = Stamp(u64::MAX);
    const TEXT: u64 = 1 << 63;
}

/// `Pool::choices` index of no choice (absent or `null`).
const NO_CHOICE: u32 = u32::MAX;

/// The texts, tag lists and choice values of one kind's rows: a row holds spans of one text
/// buffer and indexes into the lists (one allocation per kind instead of a few per row: at
/// 100k VMs with children, ~1M rows of names, MACs, addresses and `last_updated`).
#[derive(Debug, Default)]
pub struct Pool {
    text: String,
    tags: Vec<Tags>,
    choices: Vec<serde_json::Value>,
}

/// The pool of a VM without rows of a kind.
static EMPTY_POOL: Pool = Pool {
    text: String::new(),
    tags: Vec::new(),
    choices: Vec::new(),
};

impl Pool {
    fn text(&self, s: Span) -> Option<&str> {
        (s != Span::NONE).then(|| &self.text[s.start as usize..(s.start + s.len) as usize])
    }

    /// [`Pool::text`]'s bytes, for a key: without checking that the span starts and ends on
    /// a character's boundary (a text was kept whole, and a key reads bytes).
    fn text_bytes(&self, s: Span) -> Option<&[u8]> {
        (s != Span::NONE)
            .then(|| &self.text.as_bytes()[s.start as usize..(s.start + s.len) as usize])
    }

    /// A text every row has (`name`, `address`, `mac_address`).
    fn required(&self, s: Span) -> &str {
        self.text(s).unwrap_or_default()
    }

    fn tags(&self, i: u32) -> &[String] {
        &self.tags[i as usize]
    }

    fn choice(&self, i: u32) -> Option<&serde_json::Value> {
        self.choices.get(i as usize)
    }

    fn stamp(&self, s: Stamp) -> Option<LastUpdated<'_>> {
        if s == Stamp::NONE {
            None
        } else if s.0 & Stamp::TEXT == 0 {
            Some(LastUpdated::Micros(s.0))
        } else {
            let (start, len) = (s.0 as u32, (s.0 & !Stamp::TEXT) >> 32);
            let text = &self.text[start as usize..start as usize + len as usize];
            Some(LastUpdated::Text(text))
        }
    }
}

/// Fills a [`Pool`] as a kind's rows arrive: each text appended, each tag list and choice
/// value kept once.
#[derive(Default)]
struct PoolBuilder {
    pool: Pool,
    tags: HashMap<Tags, u32>,
    choices: HashMap<String, u32>,
}

impl PoolBuilder {
    fn text(&mut self, t: &str) -> Result<Span, String> {
        let start = self.pool.text.len();
        // `Span::NONE` starts at u32::MAX: every text ends below it.
        if start + t.len() >= u32::MAX as usize {
            return Err("the kind's texts pass 4 GiB".into());
        }
        self.pool.text.push_str(t);
        Ok(Span {
            start: start as u32,
            len: t.len() as u32,
        })
    }

    fn opt_text(&mut self, t: Option<&str>) -> Result<Span, String> {
        t.map_or(Ok(Span::NONE), |t| self.text(t))
    }

    fn stamp(&mut self, t: Option<&str>) -> Result<Stamp, String> {
        let Some(t) = t else {
            return Ok(Stamp::NONE);
        };
        if let Some(micros) = stamp::parse(t) {
            return Ok(Stamp(micros));
        }
        if t.len() >= 1 << 31 {
            return Err("a last_updated text passes 2 GiB".into());
        }
        let span = self.text(t)?;
        Ok(Stamp(
            Stamp::TEXT | (u64::from(span.len) << 32) | u64::from(span.start),
        ))
    }

    fn tags(&mut self, tags: Tags) -> u32 {
        let next = self.pool.tags.len() as u32;
        match self.tags.entry(tags) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                self.pool.tags.push(e.key().clone());
                *e.insert(next)
            }
        }
    }

    /// A choice's value ([`NO_CHOICE`] when absent or `null`, which the rendering leaves out).
    fn choice(&mut self, c: Option<Choice>) -> u32 {
        let Some(value) = c.map(|c| c.value).filter(|v| !v.is_null()) else {
            return NO_CHOICE;
        };
        let next = self.pool.choices.len() as u32;
        match self.choices.entry(value.to_string()) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                self.pool.choices.push(value);
                *e.insert(next)
            }
        }
    }

    /// The pool, without the room its text grew into.
    fn finish(self) -> Pool {
        let mut pool = self.pool;
        pool.text.shrink_to_fit();
        pool
    }
}

/// Whether `assigned_object_type` names a VM interface (all the snapshot needs of it).
fn on_vminterface<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let kind: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
    Ok(kind.as_deref() == Some(VMINTERFACE_TYPE))
}

/// Tags as slugs, from `[{slug, …}]` or `["slug"]`.
fn slugs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tag {
        Object { slug: String },
        Slug(String),
    }
    let tags: Option<Vec<Tag>> = Option::deserialize(d)?;
    Ok(tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| match t {
            Tag::Object { slug } | Tag::Slug(slug) => slug,
        })
        .collect())
}

/// One VM interface as read and rendered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct InterfaceRow {
    pub id: u64,
    #[serde(default, skip_serializing)]
    virtual_machine: Option<Ref>,
    pub name: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub mtu: Option<u64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub mode: Option<Choice>,
    #[serde(default)]
    pub untagged_vlan: Option<VlanRef>,
    #[serde(default)]
    pub primary_mac_address: Option<MacRef>,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    /// For `apply`'s staleness check; not shown to the rules.
    #[serde(default, skip_serializing)]
    pub last_updated: Option<String>,
}

/// One MAC address object as read and rendered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MacRow {
    pub id: u64,
    pub mac_address: String,
    #[serde(
        default,
        rename = "assigned_object_type",
        deserialize_with = "on_vminterface",
        skip_serializing
    )]
    on_vminterface: bool,
    #[serde(default)]
    pub assigned_object_id: Option<u64>,
    #[serde(default)]
    pub tags: Tags,
    /// For `apply`'s staleness check; not shown to the rules.
    #[serde(default, skip_serializing)]
    pub last_updated: Option<String>,
}

/// One IP address as read and rendered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct IpRow {
    pub id: u64,
    pub address: String,
    #[serde(default)]
    pub vrf: Option<VrfRef>,
    #[serde(default)]
    pub status: Option<Choice>,
    #[serde(
        default,
        rename = "assigned_object_type",
        deserialize_with = "on_vminterface",
        skip_serializing
    )]
    on_vminterface: bool,
    #[serde(default)]
    pub assigned_object_id: Option<u64>,
    #[serde(default)]
    pub tags: Tags,
    /// For `apply`'s staleness check; not shown to the rules.
    #[serde(default, skip_serializing)]
    pub last_updated: Option<String>,
}

/// One virtual disk as read and rendered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DiskRow {
    pub id: u64,
    #[serde(default, skip_serializing)]
    virtual_machine: Option<Ref>,
    pub name: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    /// For `apply`'s staleness check; not shown to the rules.
    #[serde(default, skip_serializing)]
    pub last_updated: Option<String>,
}

/// One VLAN (for the writes: which VLAN a NIC's tag means).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VlanRow {
    pub id: u64,
    pub vid: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing)]
    site: Option<Ref>,
    #[serde(default, skip_serializing)]
    group: Option<Ref>,
}

impl VlanRow {
    /// The VLAN's site id, when it has one.
    pub fn site_id(&self) -> Option<u64> {
        self.site.map(|r| r.id)
    }
    /// The VLAN's group id, when it has one.
    pub fn group_id(&self) -> Option<u64> {
        self.group.map(|r| r.id)
    }
}

macro_rules! list_row {
    ($($t:ty),*) => {$(
        impl ListRow for $t {
            fn row_id(&self) -> Option<u64> {
                Some(self.id)
            }
        }
    )*};
}
list_row!(InterfaceRow, MacRow, IpRow, DiskRow, VlanRow);

/// The fields read per kind (`id` is always added).
pub fn interface_fields(caps: &Capabilities) -> Vec<&'static str> {
    let mut f = vec![
        "id",
        "virtual_machine",
        "name",
        "enabled",
        "mtu",
        "description",
        "mode",
        "untagged_vlan",
        "mac_address",
        "tags",
        "last_updated",
    ];
    if caps.mac_objects {
        f.push("primary_mac_address");
    }
    f
}
pub const MAC_FIELDS: &[&str] = &[
    "id",
    "mac_address",
    "assigned_object_type",
    "assigned_object_id",
    "tags",
    "last_updated",
];
pub const IP_FIELDS: &[&str] = &[
    "id",
    "address",
    "vrf",
    "status",
    "assigned_object_type",
    "assigned_object_id",
    "tags",
    "last_updated",
];
pub const DISK_FIELDS: &[&str] = &[
    "id",
    "virtual_machine",
    "name",
    "size",
    "description",
    "tags",
    "last_updated",
];
pub const VLAN_FIELDS: &[&str] = &["id", "vid", "name", "site", "group"];

/// A VM's primary IPs, from the VM listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Primaries {
    pub ip4: Option<IpRef>,
    pub ip6: Option<IpRef>,
}

/// A VM interface as the snapshot keeps it (texts in its kind's [`Pool`]). The MAC is the
/// primary MAC object's address where there is one, else the interface's own field: all the
/// rendering reads of either.
#[derive(Debug, Clone)]
pub struct Interface {
    id: u64,
    vm: u64,
    mtu: Option<u64>,
    untagged_vid: Option<u64>,
    name: Span,
    description: Span,
    mac: Span,
    last_updated: Stamp,
    tags: u32,
    mode: u32,
    enabled: Option<bool>,
}

/// A MAC address object as the snapshot keeps it. `assigned`: the VM interface it sits on
/// (`None` when on anything else, or on none).
#[derive(Debug, Clone)]
pub struct Mac {
    id: u64,
    vm: u64,
    assigned: Option<NonZeroU64>,
    mac: Span,
    last_updated: Stamp,
    tags: u32,
}

/// An IP address as the snapshot keeps it (`assigned` as for [`Mac`]; `vrf` its name).
#[derive(Debug, Clone)]
pub struct Ip {
    id: u64,
    vm: u64,
    assigned: Option<NonZeroU64>,
    address: Span,
    vrf: Span,
    last_updated: Stamp,
    tags: u32,
    status: u32,
}

/// A virtual disk as the snapshot keeps it.
#[derive(Debug, Clone)]
pub struct Disk {
    id: u64,
    vm: u64,
    size: Option<u64>,
    name: Span,
    description: Span,
    last_updated: Stamp,
    tags: u32,
}

/// A row as NetBox lists it, turned into what the snapshot keeps of it.
trait Wire: ListRow {
    type Kept;
    fn keep(self, pool: &mut PoolBuilder) -> Result<Self::Kept, String>;
}

/// Where the rows are assigned to a VM interface (all the snapshot needs of the type).
fn vminterface(on_vminterface: bool, id: Option<u64>) -> Option<NonZeroU64> {
    id.filter(|_| on_vminterface).and_then(NonZeroU64::new)
}

impl Wire for InterfaceRow {
    type Kept = Interface;
    fn keep(self, pool: &mut PoolBuilder) -> Result<Interface, String> {
        let mac = match &self.primary_mac_address {
            Some(m) => Some(m.mac_address.as_str()),
            None => self.mac_address.as_deref(),
        };
        Ok(Interface {
            id: self.id,
            vm: self.virtual_machine.map_or(0, |v| v.id),
            mtu: self.mtu,
            untagged_vid: self.untagged_vlan.as_ref().map(|v| v.vid),
            name: pool.text(&self.name)?,
            description: pool.opt_text(self.description.as_deref())?,
            mac: pool.opt_text(mac)?,
            last_updated: pool.stamp(self.last_updated.as_deref())?,
            tags: pool.tags(self.tags),
            mode: pool.choice(self.mode),
            enabled: self.enabled,
        })
    }
}

impl Wire for MacRow {
    type Kept = Mac;
    fn keep(self, pool: &mut PoolBuilder) -> Result<Mac, String> {
        Ok(Mac {
            id: self.id,
            vm: 0,
            assigned: vminterface(self.on_vminterface, self.assigned_object_id),
            mac: pool.text(&self.mac_address)?,
            last_updated: pool.stamp(self.last_updated.as_deref())?,
            tags: pool.tags(self.tags),
        })
    }
}

impl Wire for IpRow {
    type Kept = Ip;
    fn keep(self, pool: &mut PoolBuilder) -> Result<Ip, String> {
        Ok(Ip {
            id: self.id,
            vm: 0,
            assigned: vminterface(self.on_vminterface, self.assigned_object_id),
            address: pool.text(&self.address)?,
            vrf: pool.opt_text(self.vrf.as_ref().map(|v| v.name.as_str()))?,
            last_updated: pool.stamp(self.last_updated.as_deref())?,
            tags: pool.tags(self.tags),
            status: pool.choice(self.status),
        })
    }
}

impl Wire for DiskRow {
    type Kept = Disk;
    fn keep(self, pool: &mut PoolBuilder) -> Result<Disk, String> {
        Ok(Disk {
            id: self.id,
            vm: self.virtual_machine.map_or(0, |v| v.id),
            size: self.size,
            name: pool.text(&self.name)?,
            description: pool.opt_text(self.description.as_deref())?,
            last_updated: pool.stamp(self.last_updated.as_deref())?,
            tags: pool.tags(self.tags),
        })
    }
}

impl Wire for VlanRow {
    type Kept = VlanRow;
    fn keep(self, _: &mut PoolBuilder) -> Result<VlanRow, String> {
        Ok(self)
    }
}

/// One kind's rows as their pages arrive, before they are placed under their VMs: each row
/// packed alone after its VM (0 for MACs and IPs: theirs is known once the interfaces are),
/// its texts in the pool.
///
/// Why: the rows of every kind are held at once when the listings end, while the Proxmox read
/// may still be running: a run's memory peak. Packed alone a row is ~30 bytes (its id and
/// `last_updated` whole), where the kept struct was 48-96 and its list grew by doubling: at
/// 100k VMs with children, ~30 MB instead of ~75.
#[derive(Debug)]
struct Staged<R> {
    bytes: Vec<u8>,
    pool: Pool,
    kind: PhantomData<R>,
}

impl<R: PackedRow + OfVm> Staged<R> {
    fn push(bytes: &mut Vec<u8>, row: &R) {
        write_alone(bytes, row.vm(), row);
    }

    /// Each row with its VM as staged, in the order they came.
    fn rows(&self) -> impl Iterator<Item = (u64, R)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < self.bytes.len()).then(|| {
                let (vm, row, next) = read_alone(&self.bytes, at);
                at = next;
                (vm, row)
            })
        })
    }
}

/// One kind's rows as the snapshot keeps them once indexed: each VM's rows packed one after
/// the other (`packed_rows`; a VM's ranges are byte ranges), their texts in the pool.
#[derive(Debug)]
struct Packed<R> {
    bytes: Vec<u8>,
    pool: Pool,
    kind: PhantomData<R>,
}

impl<R> Default for Packed<R> {
    fn default() -> Self {
        Packed {
            bytes: Vec::new(),
            pool: Pool::default(),
            kind: PhantomData,
        }
    }
}

impl<R: PackedRow + OfVm> Packed<R> {
    /// Packs `staged`'s rows sorted by VM, then id, and sets each VM's byte range with `set`.
    /// A row's VM is `vm_of` its staged VM and itself; rows of VM 0 (none) are left out.
    fn of(
        staged: Staged<R>,
        by_vm: &mut VmIndex,
        set: impl Fn(&mut VmRanges) -> &mut Range<u32>,
        vm_of: impl Fn(u64, &R) -> u64,
    ) -> Self {
        // Where each row is, by VM and id. A listing is refused past 10 million rows and a row
        // staged is at most ~140 bytes: offsets stay under 4 GiB.
        let mut order: Vec<(u64, u64, u32)> = Vec::new();
        let mut at = 0;
        while at < staged.bytes.len() {
            let (vm, row, next) = read_alone::<R>(&staged.bytes, at);
            let vm = vm_of(vm, &row);
            if vm != 0 {
                order.push((vm, row.id(), at as u32));
            }
            at = next;
        }
        order.sort_unstable();
        let mut bytes = Vec::new();
        let mut ranges = Vec::new();
        let mut start = 0usize;
        while start < order.len() {
            let vm = order[start].0;
            let end = start + order[start..].partition_point(|o| o.0 == vm);
            let from = bytes.len();
            let mut w = RowWriter::new(&mut bytes);
            for &(_, _, at) in &order[start..end] {
                let (_, row, _) = read_alone::<R>(&staged.bytes, at as usize);
                w.row(&row);
            }
            // Packed rows are smaller than staged ones: the buffer stays under 4 GiB too.
            ranges.push((vm, from as u32..bytes.len() as u32));
            start = end;
        }
        by_vm.set_all(ranges, set);
        bytes.shrink_to_fit();
        Packed {
            bytes,
            pool: staged.pool,
            kind: PhantomData,
        }
    }
}

impl<R: PackedRow> Packed<R> {
    /// Keeps only the bytes of the VMs in `by_vm` (their ranges move) when many were left
    /// out; the texts stay in the pool (rows left out are few, their texts short).
    fn retain(&mut self, by_vm: &mut VmIndex, set: impl Fn(&mut VmRanges) -> &mut Range<u32>) {
        let kept: usize = by_vm.values_mut().map(|r| set(r).len()).sum();
        if kept * 2 >= self.bytes.len() {
            return;
        }
        let mut bytes = Vec::with_capacity(kept);
        for ranges in by_vm.values_mut() {
            let r = set(ranges);
            let from = bytes.len() as u32;
            bytes.extend_from_slice(&self.bytes[r.start as usize..r.end as usize]);
            *r = from..bytes.len() as u32;
        }
        self.bytes = bytes;
    }

    /// Rows in `range` (a VM's).
    fn count(&self, r: &Range<u32>) -> usize {
        Rows::<R>::of(self, r).map(|_, _| ()).count()
    }
}

/// One VM's rows of one kind (in id order), with the pool of their texts.
#[derive(Debug)]
pub struct Rows<'a, R> {
    bytes: &'a [u8],
    pool: &'a Pool,
    kind: PhantomData<R>,
}

impl<R> Clone for Rows<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Rows<'_, R> {}

impl<R> Default for Rows<'_, R> {
    fn default() -> Self {
        Rows {
            bytes: &[],
            pool: &EMPTY_POOL,
            kind: PhantomData,
        }
    }
}

impl<'a, R: PackedRow> Rows<'a, R> {
    fn of(packed: &'a Packed<R>, r: &Range<u32>) -> Self {
        Rows {
            bytes: &packed.bytes[r.start as usize..r.end as usize],
            pool: &packed.pool,
            kind: PhantomData,
        }
    }

    /// Each row, read back, given to `f` with the pool.
    fn map<O>(self, f: impl Fn(R, &'a Pool) -> O + 'a) -> impl Iterator<Item = O> + 'a
    where
        R: 'a,
    {
        self.map_from(RowReader::new(self.bytes), f)
    }

    /// [`Rows::map`] with each row's `last_updated` skipped, read as none: for the memo's key,
    /// which never holds it.
    fn map_unstamped<O>(self, f: impl FnMut(R, &'a Pool) -> O + 'a) -> impl Iterator<Item = O> + 'a
    where
        R: 'a,
    {
        self.map_from(RowReader::without_stamps(self.bytes), f)
    }

    fn map_from<O>(
        self,
        mut reader: RowReader<'a>,
        mut f: impl FnMut(R, &'a Pool) -> O + 'a,
    ) -> impl Iterator<Item = O> + 'a
    where
        R: 'a,
    {
        std::iter::from_fn(move || reader.next_row::<R>()).map(move |r| f(r, self.pool))
    }
}

/// What the plan reads of a current child: its id, its key's texts (an interface's or disk's
/// name, a MAC, an IP's address and VRF name), its tags and `last_updated`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Child<'a> {
    pub id: u64,
    pub name: &'a str,
    pub vrf: Option<&'a str>,
    pub tags: &'a [String],
    pub last_updated: Option<LastUpdated<'a>>,
}

/// One VM's children, borrowed from the snapshot (each kind in id order).
#[derive(Debug, Clone, Copy, Default)]
pub struct VmRows<'a> {
    interfaces: Rows<'a, Interface>,
    macs: Rows<'a, Mac>,
    ips: Rows<'a, Ip>,
    disks: Rows<'a, Disk>,
}

impl<'a> VmRows<'a> {
    pub fn interfaces(&self) -> impl Iterator<Item = Child<'a>> + 'a {
        self.interfaces.map(|r, p| Child {
            id: r.id,
            name: p.required(r.name),
            vrf: None,
            tags: p.tags(r.tags),
            last_updated: p.stamp(r.last_updated),
        })
    }

    pub fn macs(&self) -> impl Iterator<Item = Child<'a>> + 'a {
        self.macs.map(|r, p| Child {
            id: r.id,
            name: p.required(r.mac),
            vrf: None,
            tags: p.tags(r.tags),
            last_updated: p.stamp(r.last_updated),
        })
    }

    pub fn ips(&self) -> impl Iterator<Item = Child<'a>> + 'a {
        self.ips.map(|r, p| Child {
            id: r.id,
            name: p.required(r.address),
            vrf: p.text(r.vrf),
            tags: p.tags(r.tags),
            last_updated: p.stamp(r.last_updated),
        })
    }

    pub fn disks(&self) -> impl Iterator<Item = Child<'a>> + 'a {
        self.disks.map(|r, p| Child {
            id: r.id,
            name: p.required(r.name),
            vrf: None,
            tags: p.tags(r.tags),
            last_updated: p.stamp(r.last_updated),
        })
    }
}

/// Where one VM's rows are in the snapshot's lists of each kind.
#[derive(Debug, Clone, Default)]
struct VmRanges {
    interfaces: Range<u32>,
    macs: Range<u32>,
    ips: Range<u32>,
    disks: Range<u32>,
}

/// A row's VM (0: none; NetBox ids start at 1), the key the snapshot sorts and indexes by.
trait OfVm {
    fn vm(&self) -> u64;
    fn id(&self) -> u64;
}

macro_rules! of_vm {
    ($($t:ty),*) => {$(
        impl OfVm for $t {
            fn vm(&self) -> u64 {
                self.vm
            }
            fn id(&self) -> u64 {
                self.id
            }
        }
    )*};
}
of_vm!(Interface, Mac, Ip, Disk);

impl Span {
    fn code(self) -> Option<(u32, u32)> {
        (self != Span::NONE).then_some((self.start, self.len))
    }

    fn of_code(code: Option<(u32, u32)>) -> Span {
        code.map_or(Span::NONE, |(start, len)| Span { start, len })
    }
}

impl Stamp {
    fn code(self) -> StampCode {
        if self == Stamp::NONE {
            StampCode::None
        } else if self.0 & Stamp::TEXT == 0 {
            StampCode::Micros(self.0)
        } else {
            StampCode::Text {
                start: self.0 as u32,
                len: ((self.0 & !Stamp::TEXT) >> 32) as u32,
            }
        }
    }

    fn of_code(code: StampCode) -> Stamp {
        match code {
            StampCode::None => Stamp::NONE,
            StampCode::Micros(m) => Stamp(m),
            StampCode::Text { start, len } => {
                Stamp(Stamp::TEXT | (u64::from(len) << 32) | u64::from(start))
            }
        }
    }
}

// Packed rows leave out `vm` (the VM's range says it; read back as 0).
impl PackedRow for Interface {
    fn write(&self, w: &mut RowWriter<'_>) {
        w.id(self.id);
        w.opt_u64(self.mtu);
        w.opt_u64(self.untagged_vid);
        w.span(self.name.code());
        w.span(self.description.code());
        w.span(self.mac.code());
        w.stamp(self.last_updated.code());
        w.index(self.tags);
        w.index(self.mode);
        w.opt_bool(self.enabled);
    }

    fn read(r: &mut RowReader<'_>) -> Self {
        Interface {
            id: r.id(),
            vm: 0,
            mtu: r.opt_u64(),
            untagged_vid: r.opt_u64(),
            name: Span::of_code(r.span()),
            description: Span::of_code(r.span()),
            mac: Span::of_code(r.span()),
            last_updated: Stamp::of_code(r.stamp()),
            tags: r.index(),
            mode: r.index(),
            enabled: r.opt_bool(),
        }
    }
}

impl PackedRow for Mac {
    fn write(&self, w: &mut RowWriter<'_>) {
        w.id(self.id);
        w.u64(self.assigned.map_or(0, NonZeroU64::get));
        w.span(self.mac.code());
        w.stamp(self.last_updated.code());
        w.index(self.tags);
    }

    fn read(r: &mut RowReader<'_>) -> Self {
        Mac {
            id: r.id(),
            vm: 0,
            assigned: NonZeroU64::new(r.u64()),
            mac: Span::of_code(r.span()),
            last_updated: Stamp::of_code(r.stamp()),
            tags: r.index(),
        }
    }
}

impl PackedRow for Ip {
    fn write(&self, w: &mut RowWriter<'_>) {
        w.id(self.id);
        w.u64(self.assigned.map_or(0, NonZeroU64::get));
        w.span(self.address.code());
        w.span(self.vrf.code());
        w.stamp(self.last_updated.code());
        w.index(self.tags);
        w.index(self.status);
    }

    fn read(r: &mut RowReader<'_>) -> Self {
        Ip {
            id: r.id(),
            vm: 0,
            assigned: NonZeroU64::new(r.u64()),
            address: Span::of_code(r.span()),
            vrf: Span::of_code(r.span()),
            last_updated: Stamp::of_code(r.stamp()),
            tags: r.index(),
            status: r.index(),
        }
    }
}

impl PackedRow for Disk {
    fn write(&self, w: &mut RowWriter<'_>) {
        w.id(self.id);
        w.opt_u64(self.size);
        w.span(self.name.code());
        w.span(self.description.code());
        w.stamp(self.last_updated.code());
        w.index(self.tags);
    }

    fn read(r: &mut RowReader<'_>) -> Self {
        Disk {
            id: r.id(),
            vm: 0,
            size: r.opt_u64(),
            name: Span::of_code(r.span()),
            description: Span::of_code(r.span()),
            last_updated: Stamp::of_code(r.stamp()),
            tags: r.index(),
        }
    }
}

/// Which kinds were read completely.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindsRead {
    pub interfaces: bool,
    pub mac_addresses: bool,
    pub ip_addresses: bool,
    pub virtual_disks: bool,
    pub vlans: bool,
}

/// The children of the managed VMs, by VM id: each kind's rows in one list, sorted by VM,
/// and each VM's ranges of them.
#[derive(Debug, Default)]
pub struct ChildrenSnapshot {
    interfaces: Packed<Interface>,
    macs: Packed<Mac>,
    ips: Packed<Ip>,
    disks: Packed<Disk>,
    by_vm: VmIndex,
    read: KindsRead,
    primaries: PrimaryIps,
    vlans: Vec<VlanRow>,
    errors: Vec<ChildrenError>,
}

/// The JSON object of WIT `netbox-vm.children`; a `None` collection is absent (not read).
///
/// Trimmed to what the WIT documents: a member without a value (`null`, an empty text, no
/// tags) is absent, choices are their value, a VRF its name, tags their slugs, an untagged
/// VLAN `{vid}`, a primary IP `{address}`; no ids but the children's own. Every byte here is
/// walked by the rules for every VM (about half of the text NetBox's shape had was nulls,
/// nested ids and `{value}` wrappers).
#[derive(Serialize)]
struct Rendered<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    interfaces: Option<Vec<InterfaceOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac_addresses: Option<Vec<MacOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_addresses: Option<Vec<IpOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    virtual_disks: Option<Vec<DiskOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_ip4: Option<AddressOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_ip6: Option<AddressOut<'a>>,
}

fn no_tags(tags: &&[String]) -> bool {
    tags.is_empty()
}

/// A text that has a value: empty texts are left out like nulls (the rules read both as none).
fn some_text(t: Option<&str>) -> Option<&str> {
    t.filter(|t| !t.is_empty())
}

/// A choice's value (`null` left out).

#[derive(Serialize)]
struct InterfaceOut<'a> {
    id: u64,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    untagged_vlan: Option<VidOut>,
    /// The primary MAC object's address (NetBox 4.2+), else the interface's own field.
    #[serde(skip_serializing_if = "Option::is_none")]
    mac_address: Option<&'a str>,
    #[serde(skip_serializing_if = "no_tags")]
    tags: &'a [String],
}

#[derive(Serialize)]
struct VidOut {
    vid: u64,
}

#[derive(Serialize)]
struct MacOut<'a> {
    id: u64,
    mac_address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    assigned_object_id: Option<u64>,
    #[serde(skip_serializing_if = "no_tags")]
    tags: &'a [String],
}

#[derive(Serialize)]
struct IpOut<'a> {
    id: u64,
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vrf: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assigned_object_id: Option<u64>,
    #[serde(skip_serializing_if = "no_tags")]
    tags: &'a [String],
}

#[derive(Serialize)]
struct DiskOut<'a> {
    id: u64,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "no_tags")]
    tags: &'a [String],
}

#[derive(Serialize)]
struct AddressOut<'a> {
    address: &'a str,
}

impl<'a> InterfaceOut<'a> {
    fn of(r: Interface, p: &'a Pool) -> Self {
        // Where the primary MAC object is read, its address is the interface's MAC (NetBox's
        // own `mac_address` mirrors it; `Interface::mac` is the one that applies); an empty
        // one is none, as before.
        InterfaceOut {
            id: r.id,
            name: p.required(r.name),
            // Enabled is NetBox's default, which the WIT says an absent `enabled` means: only
            // a disabled interface carries the member (two tokens fewer per interface to read).
            enabled: r.enabled.filter(|e| !e),
            mtu: r.mtu,
            description: some_text(p.text(r.description)),
            mode: p.choice(r.mode),
            untagged_vlan: r.untagged_vid.map(|vid| VidOut { vid }),
            mac_address: some_text(p.text(r.mac)),
            tags: p.tags(r.tags),
        }
    }
}

impl<'a> MacOut<'a> {
    fn of(r: Mac, p: &'a Pool) -> Self {
        MacOut {
            id: r.id,
            mac_address: p.required(r.mac),
            assigned_object_id: r.assigned.map(NonZeroU64::get),
            tags: p.tags(r.tags),
        }
    }
}

impl<'a> IpOut<'a> {
    fn of(r: Ip, p: &'a Pool) -> Self {
        IpOut {
            id: r.id,
            address: p.required(r.address),
            vrf: p.text(r.vrf),
            status: p.choice(r.status),
            assigned_object_id: r.assigned.map(NonZeroU64::get),
            tags: p.tags(r.tags),
        }
    }
}

impl<'a> DiskOut<'a> {
    fn of(r: Disk, p: &'a Pool) -> Self {
        DiskOut {
            id: r.id,
            name: p.required(r.name),
            size: r.size,
            description: some_text(p.text(r.description)),
            tags: p.tags(r.tags),
        }
    }
}

/// Renders one VM's rows as WIT `netbox-vm.children` (see [`Rendered`]); a kind not in `read`
/// is absent.
fn render_children(
    rows: &VmRows,
    read: KindsRead,
    primaries: (Option<&str>, Option<&str>),
) -> String {
    fn list<'a, T: PackedRow + 'a, O>(
        on: bool,
        rows: Rows<'a, T>,
        of: impl Fn(T, &'a Pool) -> O + 'a,
    ) -> Option<Vec<O>> {
        on.then(|| rows.map(of).collect())
    }
    // A primary IP is rendered with the IP addresses (it is one of them).
    fn primary(address: Option<&str>, ips_read: bool) -> Option<AddressOut<'_>> {
        address
            .filter(|_| ips_read)
            .map(|address| AddressOut { address })
    }
    let rendered = Rendered {
        interfaces: list(read.interfaces, rows.interfaces, InterfaceOut::of),
        mac_addresses: list(read.mac_addresses, rows.macs, MacOut::of),
        ip_addresses: list(read.ip_addresses, rows.ips, IpOut::of),
        virtual_disks: list(read.virtual_disks, rows.disks, DiskOut::of),
        primary_ip4: primary(primaries.0, read.ip_addresses),
        primary_ip6: primary(primaries.1, read.ip_addresses),
    };
    serde_json::to_string(&rendered).expect("the children always serialize")
}

impl ChildrenSnapshot {
    /// The VM's children as the JSON text of WIT `netbox-vm.children` (collections in id
    /// order; a kind not read is absent), or `None` when no kind was read (the VM's children
    /// count as not read: `children-read = false`).
    pub fn children_json(&self, vm_id: u64) -> Option<String> {
        let r = self.read;
        if !(r.interfaces || r.mac_addresses || r.ip_addresses || r.virtual_disks) {
            return None;
        }
        let rows = self.vm_rows(vm_id).unwrap_or_default();
        Some(render_children(&rows, r, self.primaries.get(vm_id)))
    }

    /// One VM's children rows (`None`: it has none, or none were read).
    pub fn vm_rows(&self, vm_id: u64) -> Option<VmRows<'_>> {
        self.vm_rows_from(vm_id, &mut Cursor::default())
    }

    /// [`ChildrenSnapshot::vm_rows`], searching from where `at` last ended.
    fn vm_rows_from(&self, vm_id: u64, at: &mut Cursor) -> Option<VmRows<'_>> {
        let r = self.by_vm.get_from(vm_id, at)?;
        Some(VmRows {
            interfaces: Rows::of(&self.interfaces, &r.interfaces),
            macs: Rows::of(&self.macs, &r.macs),
            ips: Rows::of(&self.ips, &r.ips),
            disks: Rows::of(&self.disks, &r.disks),
        })
    }

    /// Which kinds were read completely.
    pub fn kinds_read(&self) -> KindsRead {
        self.read
    }

    /// Why a kind was not read (empty when all were).
    pub fn errors(&self) -> &[ChildrenError] {
        &self.errors
    }

    /// Every VLAN, when they were read (what a NIC's tag may refer to).
    pub fn vlans(&self) -> Option<&[VlanRow]> {
        self.read.vlans.then_some(&self.vlans[..])
    }

    /// Children rows held (every kind), for the report.
    pub fn rows(&self) -> usize {
        self.by_vm
            .values()
            .map(|r| {
                self.interfaces.count(&r.interfaces)
                    + self.macs.count(&r.macs)
                    + self.ips.count(&r.ips)
                    + self.disks.count(&r.disks)
            })
            .sum()
    }

    /// Keeps only the children of the VMs `keep` accepts (the managed VMs): virtual disks are
    /// read without a cluster filter.
    pub fn retain_vms(&mut self, keep: impl Fn(u64) -> bool) {
        let before = self.by_vm.len();
        self.by_vm.retain(&keep);
        // Usually none go: every VM in the managed clusters is managed.
        if self.by_vm.len() != before {
            self.interfaces
                .retain(&mut self.by_vm, |r| &mut r.interfaces);
            self.macs.retain(&mut self.by_vm, |r| &mut r.macs);
            self.ips.retain(&mut self.by_vm, |r| &mut r.ips);
            self.disks.retain(&mut self.by_vm, |r| &mut r.disks);
        }
        self.primaries.retain(keep);
    }

    /// A snapshot from listing rows as JSON (`interfaces`, `mac_addresses`, `ip_addresses`,
    /// `virtual_disks`, `vlans`; an absent kind is not read), for unit tests elsewhere.
    #[cfg(test)]
    pub fn from_json_for_tests(v: serde_json::Value) -> Self {
        fn kind<T: serde::de::DeserializeOwned>(v: &serde_json::Value, k: &str) -> Option<Vec<T>> {
            v.get(k)
                .map(|rows| serde_json::from_value(rows.clone()).expect("test rows"))
        }
        let mut errors = Vec::new();
        let mut snap = assemble(
            kind::<InterfaceRow>(&v, "interfaces").map(staged),
            kind::<MacRow>(&v, "mac_addresses").map(staged),
            kind::<IpRow>(&v, "ip_addresses").map(staged),
            kind::<DiskRow>(&v, "virtual_disks").map(staged),
            &mut errors,
        );
        if let Some(vlans) = kind(&v, "vlans") {
            snap.read.vlans = true;
            snap.vlans = vlans;
        }
        snap
    }

    /// A snapshot of rows as NetBox lists them, every child kind read (VLANs not), as a sync
    /// would keep them: what `rules bench --children` renders, so that it measures the text a
    /// sync sends.
    pub fn from_rows(
        interfaces: Vec<InterfaceRow>,
        macs: Vec<MacRow>,
        ips: Vec<IpRow>,
        disks: Vec<DiskRow>,
    ) -> Self {
        let mut errors = Vec::new();
        assemble(
            Some(staged(interfaces)),
            Some(staged(macs)),
            Some(staged(ips)),
            Some(staged(disks)),
            &mut errors,
        )
    }

    /// Sets the VMs' primary IPs (read with the VMs).
    pub fn set_primaries(&mut self, primaries: PrimaryIps) {
        self.primaries = primaries;
    }
}

/// A kind's rows staged as a listing stages them (rows made in code, which stay far below the
/// pool's 4 GiB).
fn staged<W: Wire>(rows: Vec<W>) -> Staged<W::Kept>
where
    W::Kept: PackedRow + OfVm,
{
    let mut pool = PoolBuilder::default();
    let mut bytes = Vec::new();
    for row in rows {
        let kept = row.keep(&mut pool).expect("rows made in code fit the pool");
        Staged::push(&mut bytes, &kept);
    }
    Staged {
        bytes,
        pool: pool.finish(),
        kind: PhantomData,
    }
}

/// Takes one kind's rows as their pages are consumed: each row kept in the kind's pool, the
/// first row not understood remembered (the kind then counts as not read).
struct KindRows {
    kind: &'static str,
    pool: PoolBuilder,
    unreadable: Option<(Option<u64>, String)>,
}

impl KindRows {
    fn new(kind: &'static str) -> Self {
        KindRows {
            kind,
            pool: PoolBuilder::default(),
            unreadable: None,
        }
    }

    fn take<W: Wire>(&mut self, row: Listed<W>) -> Option<W::Kept> {
        let (id, error) = match row {
            Listed::Row(row) => {
                let id = row.row_id();
                match row.keep(&mut self.pool) {
                    Ok(kept) => return Some(kept),
                    Err(error) => (id, error),
                }
            }
            Listed::Unreadable { id, error } => (id, error),
        };
        self.unreadable.get_or_insert((id, error));
        None
    }

    /// What the listing gave and the kind's pool, or `None` (with why in `errors`) when the
    /// read failed or a row was not understood.
    fn finish<T>(
        self,
        listed: Result<T, NetboxError>,
        errors: &mut Vec<ChildrenError>,
    ) -> Option<(T, Pool)> {
        let kind = self.kind;
        match (listed, self.unreadable) {
            (Err(source), _) => {
                errors.push(ChildrenError::Read { kind, source });
                None
            }
            (Ok(_), Some((id, error))) => {
                errors.push(ChildrenError::Unreadable { kind, id, error });
                None
            }
            (Ok(listed), None) => Some((listed, self.pool.finish())),
        }
    }
}

/// Lists one child kind, each row staged as its page comes (see [`Staged`]).
async fn list_kind<W: Wire>(
    client: &NetboxClient,
    kind: &'static str,
    endpoint: &str,
    filters: &[(String, String)],
    fields: &[&str],
    errors: &mut Vec<ChildrenError>,
) -> Option<Staged<W::Kept>>
where
    W::Kept: PackedRow + OfVm,
{
    let mut taker = KindRows::new(kind);
    let mut bytes = Vec::new();
    // The listing still drops duplicates before a row is staged; its order does not matter
    // here (the rows are sorted by VM and id when placed), so it collects nothing.
    let listed = client
        .list_rows_into(endpoint, filters, fields, |row: Listed<W>| {
            taker.take(row).map(|kept| Staged::push(&mut bytes, &kept))
        })
        .await;
    let (_, pool) = taker.finish(listed, errors)?;
    Some(Staged {
        bytes,
        pool,
        kind: PhantomData,
    })
}

/// Lists every VLAN.
async fn list_vlans(
    client: &NetboxClient,
    errors: &mut Vec<ChildrenError>,
) -> Option<Vec<VlanRow>> {
    let mut taker = KindRows::new("VLANs");
    let listed = client
        .list_rows_into(VLAN_ENDPOINT, &[], VLAN_FIELDS, |row: Listed<VlanRow>| {
            taker.take(row)
        })
        .await;
    taker.finish(listed, errors).map(|(rows, _)| rows)
}

/// Reads the children of `clusters`' VMs (see the module documentation). Never fails: a kind
/// that could not be read is recorded in [`ChildrenSnapshot::errors`] and left absent.
pub async fn read(
    client: &NetboxClient,
    clusters: &[u64],
    caps: &Capabilities,
) -> ChildrenSnapshot {
    if clusters.is_empty() {
        return ChildrenSnapshot::default();
    }
    let by_cluster: Vec<(String, String)> = clusters
        .iter()
        .map(|id| ("cluster_id".to_owned(), id.to_string()))
        .collect();
    let on_vminterface = vec![(
        "assigned_object_type".to_owned(),
        VMINTERFACE_TYPE.to_owned(),
    )];
    let iface_fields = interface_fields(caps);
    let (mut e1, mut e2, mut e3, mut e4, mut e5) = Default::default();
    let (ifaces, macs, ips, disks, vlans) = tokio::join!(
        list_kind::<InterfaceRow>(
            client,
            "VM interfaces",
            INTERFACE_ENDPOINT,
            &by_cluster,
            &iface_fields,
            &mut e1
        ),
        async {
            if caps.mac_objects {
                list_kind::<MacRow>(
                    client,
                    "MAC addresses",
                    MAC_ENDPOINT,
                    &on_vminterface,
                    MAC_FIELDS,
                    &mut e2,
                )
                .await
            } else {
                None
            }
        },
        list_kind::<IpRow>(
            client,
            "IP addresses",
            IP_ENDPOINT,
            &on_vminterface,
            IP_FIELDS,
            &mut e3
        ),
        list_kind::<DiskRow>(
            client,
            "virtual disks",
            DISK_ENDPOINT,
            &[],
            DISK_FIELDS,
            &mut e4
        ),
        list_vlans(client, &mut e5),
    );
    let mut errors: Vec<ChildrenError> = [e1, e2, e3, e4, e5].into_iter().flatten().collect();
    let mut snap = assemble(ifaces, macs, ips, disks, &mut errors);
    snap.read.vlans = vlans.is_some();
    snap.vlans = vlans.unwrap_or_default();
    for e in &errors {
        tracing::warn!(error = %e, "NetBox children not read; those children are left alone");
    }
    snap.errors = errors;
    snap
}

/// Only the VLANs (no managed cluster yet, so no children; the writes may still need them).
pub async fn read_vlans(client: &NetboxClient) -> ChildrenSnapshot {
    let mut snap = ChildrenSnapshot::default();
    let mut errors = Vec::new();
    if let Some(vlans) = list_vlans(client, &mut errors).await {
        snap.read.vlans = true;
        snap.vlans = vlans;
    }
    for e in &errors {
        tracing::warn!(error = %e, "NetBox VLANs not read; untagged VLANs are left out");
    }
    snap.errors = errors;
    snap
}

/// A row's VM as staged (interfaces and disks name their own).
fn own_vm<R>(vm: u64, _: &R) -> u64 {
    vm
}

/// Places each kind's rows under their VM: interfaces and disks by their own VM, MACs and IPs
/// through the VM interface they are assigned to (left out when on anything else). A kind
/// `None` is not read; MACs and IPs are not read without the interfaces.
fn assemble(
    ifaces: Option<Staged<Interface>>,
    macs: Option<Staged<Mac>>,
    ips: Option<Staged<Ip>>,
    disks: Option<Staged<Disk>>,
    errors: &mut Vec<ChildrenError>,
) -> ChildrenSnapshot {
    let mut snap = ChildrenSnapshot::default();
    let by_vm = &mut snap.by_vm;
    if let Some(disks) = disks {
        snap.read.virtual_disks = true;
        snap.disks = Packed::of(disks, by_vm, |r| &mut r.disks, own_vm);
    }
    let Some(ifaces) = ifaces else {
        for (kind, present) in [
            ("MAC addresses", macs.is_some()),
            ("IP addresses", ips.is_some()),
        ] {
            if present {
                errors.push(ChildrenError::NoInterfaces { kind });
            }
        }
        return snap;
    };
    snap.read.interfaces = true;
    {
        let iface_vm: HashMap<u64, u64> = ifaces
            .rows()
            .filter(|(vm, _)| *vm != 0)
            .map(|(vm, r)| (r.id, vm))
            .collect();
        let vm_of = |iface: Option<NonZeroU64>| -> u64 {
            iface.map_or(0, |i| iface_vm.get(&i.get()).copied().unwrap_or(0))
        };
        if let Some(macs) = macs {
            snap.read.mac_addresses = true;
            snap.macs = Packed::of(macs, by_vm, |r| &mut r.macs, |_, r| vm_of(r.assigned));
        }
        if let Some(ips) = ips {
            snap.read.ip_addresses = true;
            snap.ips = Packed::of(ips, by_vm, |r| &mut r.ips, |_, r| vm_of(r.assigned));
        }
    }
    snap.interfaces = Packed::of(ifaces, by_vm, |r| &mut r.interfaces, own_vm);
    snap
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn rows<T: serde::de::DeserializeOwned>(v: Value) -> Vec<T> {
        serde_json::from_value(v).unwrap()
    }

    fn sample() -> (Vec<InterfaceRow>, Vec<MacRow>, Vec<IpRow>, Vec<DiskRow>) {
        (
            rows(json!([
                {"id": 12, "virtual_machine": {"id": 7, "name": "web"}, "name": "net1",
                 "tags": [], "mode": null},
                {"id": 11, "virtual_machine": {"id": 7}, "name": "net0", "enabled": true,
                 "mode": {"value": "access", "label": "Access"},
                 "untagged_vlan": {"id": 5, "vid": 10, "name": "v10"},
                 "primary_mac_address": {"id": 21, "mac_address": "BC:24:11:2A:3B:4C"},
                 "mac_address": "BC:24:11:2A:3B:4C",
                 "tags": [{"id": 1, "name": "pve2netbox", "slug": "pve2netbox"}]},
                {"id": 13, "virtual_machine": {"id": 8}, "name": "eth0"}])),
            rows(json!([
                {"id": 21, "mac_address": "BC:24:11:2A:3B:4C",
                 "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 11},
                {"id": 22, "mac_address": "BC:24:11:00:00:01",
                 "assigned_object_type": "dcim.interface", "assigned_object_id": 11}])),
            rows(json!([
                {"id": 31, "address": "10.0.0.5/24", "vrf": null,
                 "status": {"value": "active", "label": "Active"},
                 "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 11,
                 "tags": []},
                {"id": 32, "address": "10.0.0.6/24",
                 "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 999},
                {"id": 33, "address": "10.0.0.7/24",
                 "assigned_object_type": "dcim.interface", "assigned_object_id": 12}])),
            rows(json!([
                {"id": 41, "virtual_machine": {"id": 7}, "name": "scsi0", "size": 32768,
                 "description": "local-lvm", "tags": ["pve2netbox"]}])),
        )
    }

    fn rendered(snap: &ChildrenSnapshot, vm: u64) -> Option<Value> {
        snap.children_json(vm)
            .map(|t| serde_json::from_str(&t).unwrap())
    }

    #[test]
    fn children_are_indexed_by_vm_and_rendered_as_the_wit_shows() {
        let (i, m, ip, d) = sample();
        let mut errors = Vec::new();
        let mut snap = assemble(
            Some(staged(i)),
            Some(staged(m)),
            Some(staged(ip)),
            Some(staged(d)),
            &mut errors,
        );
        snap.read.vlans = true;
        snap.set_primaries(PrimaryIps::from_iter([(
            7,
            Primaries {
                ip4: Some(IpRef {
                    id: 31,
                    address: "10.0.0.5/24".into(),
                }),
                ip6: None,
            },
        )]));
        assert!(errors.is_empty());
        let v = rendered(&snap, 7).unwrap();
        assert_eq!(
            v,
            json!({
                "interfaces": [
                    {"id": 11, "name": "net0", "mode": "access",
                     "untagged_vlan": {"vid": 10}, "mac_address": "BC:24:11:2A:3B:4C",
                     "tags": ["pve2netbox"]},
                    {"id": 12, "name": "net1"}],
                "mac_addresses": [{"id": 21, "mac_address": "BC:24:11:2A:3B:4C",
                                   "assigned_object_id": 11}],
                "ip_addresses": [{"id": 31, "address": "10.0.0.5/24", "status": "active",
                                  "assigned_object_id": 11}],
                "virtual_disks": [{"id": 41, "name": "scsi0", "size": 32768,
                                   "description": "local-lvm", "tags": ["pve2netbox"]}],
                "primary_ip4": {"address": "10.0.0.5/24"}})
        );
        // A VM with no children has empty collections, not absent ones.
        assert_eq!(
            rendered(&snap, 99).unwrap(),
            json!({"interfaces": [], "mac_addresses": [], "ip_addresses": [],
                   "virtual_disks": []})
        );
        snap.retain_vms(|id| id == 8);
        assert_eq!(snap.rows(), 1);
    }

    #[test]
    fn a_kind_not_read_is_absent_never_empty() {
        let (i, _, ip, d) = sample();
        let mut errors = Vec::new();
        // Below NetBox 4.2 (no MAC objects) and with the IP read failed.
        let snap = assemble(Some(staged(i)), None, None, Some(staged(d)), &mut errors);
        let v = rendered(&snap, 7).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 2, "{v}");
        assert!(v.get("interfaces").is_some() && v.get("virtual_disks").is_some());
        assert!(
            v.get("primary_ip4").is_none(),
            "primary IPs come with the addresses"
        );

        // Without the interfaces, MACs and IPs cannot be placed: not read either.
        let mut errors = Vec::new();
        let (_, m, _, _) = sample();
        let snap = assemble(None, Some(staged(m)), Some(staged(ip)), None, &mut errors);
        assert_eq!(errors.len(), 2);
        assert_eq!(
            rendered(&snap, 7),
            None,
            "nothing read: the children count as not read"
        );
    }

    #[test]
    fn an_unreadable_row_makes_its_kind_unread() {
        let mut errors = Vec::new();
        let mut taker = KindRows::new("virtual disks");
        let rows: Vec<Disk> = [Listed::<DiskRow>::Unreadable {
            id: Some(4),
            error: "size: invalid type".into(),
        }]
        .into_iter()
        .filter_map(|row| taker.take(row))
        .collect();
        assert!(taker.finish(Ok(rows), &mut errors).is_none());
        assert!(errors[0].to_string().contains("virtual disks row Some(4)"));
    }

    #[test]
    fn packed_rows_come_back_field_for_field() {
        // Edges of every packed field: unicode and empty texts, absent and extreme numbers,
        // ids out of order and far apart, `last_updated` going back in time and as text.
        let big = u64::MAX;
        let snap = ChildrenSnapshot::from_rows(
            rows(json!([
                {"id": big, "virtual_machine": {"id": 7}, "name": "n\u{e9}t \u{1f600}",
                 "enabled": false, "mtu": big, "description": "",
                 "untagged_vlan": {"id": 1, "vid": 0, "name": "v0"}, "mac_address": "",
                 "last_updated": "2026-12-06T10:00:00.123456Z"},
                {"id": 5, "virtual_machine": {"id": 7}, "name": "", "mtu": 0,
                 "description": "d\u{e9}", "last_updated": "2020-01-01T00:00:00.000001Z"},
                {"id": 6, "virtual_machine": {"id": 7}, "name": "net2",
                 "last_updated": "not a \u{2713} stamp"}])),
            Vec::new(),
            rows(json!([
                {"id": 1, "address": "fe80::1/64", "vrf": {"id": 3, "name": "\u{e9}"},
                 "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 5},
                {"id": 2, "address": "10.0.0.1/8", "vrf": {"id": 4, "name": ""},
                 "assigned_object_type": "virtualization.vminterface", "assigned_object_id": big}])),
            rows(json!([
                {"id": 40, "virtual_machine": {"id": 7}, "name": "scsi0", "size": big},
                {"id": 41, "virtual_machine": {"id": 7}, "name": "scsi1", "size": 0,
                 "description": "x"}])),
        );
        assert_eq!(
            rendered(&snap, 7).unwrap(),
            json!({
                "interfaces": [
                    {"id": 5, "name": "", "mtu": 0, "description": "d\u{e9}"},
                    {"id": 6, "name": "net2"},
                    {"id": big, "name": "n\u{e9}t \u{1f600}", "enabled": false, "mtu": big,
                     "untagged_vlan": {"vid": 0}}],
                "mac_addresses": [],
                "ip_addresses": [
                    {"id": 1, "address": "fe80::1/64", "vrf": "\u{e9}",
                     "assigned_object_id": 5},
                    {"id": 2, "address": "10.0.0.1/8", "vrf": "", "assigned_object_id": big}],
                "virtual_disks": [
                    {"id": 40, "name": "scsi0", "size": big},
                    {"id": 41, "name": "scsi1", "size": 0, "description": "x"}],
            })
        );
        let rows = snap.vm_rows(7).unwrap();
        let stamps: Vec<Option<LastUpdated>> = rows.interfaces().map(|c| c.last_updated).collect();
        assert_eq!(
            stamps,
            [
                Some(LastUpdated::Micros(
                    stamp::parse("2020-01-01T00:00:00.000001Z").unwrap()
                )),
                Some(LastUpdated::Text("not a \u{2713} stamp")),
                Some(LastUpdated::Micros(
                    stamp::parse("2026-12-06T10:00:00.123456Z").unwrap()
                )),
            ]
        );
        assert_eq!(
            rows.disks().map(|c| c.last_updated).collect::<Vec<_>>(),
            [None, None]
        );
        assert_eq!(snap.rows(), 7);
    }

    #[test]
    fn vms_left_out_take_their_packed_rows_with_them() {
        // Disks of 100 VMs, of which 3 are kept: the buffer is repacked, the kept render as
        // before.
        let disks: Vec<DiskRow> = rows(Value::Array(
            (1..=100u64)
                .map(|vm| {
                    json!({"id": 1000 + vm, "virtual_machine": {"id": vm},
                                 "name": format!("d{vm}"), "size": vm})
                })
                .collect(),
        ));
        let mut snap = ChildrenSnapshot::from_rows(Vec::new(), Vec::new(), Vec::new(), disks);
        let before = rendered(&snap, 50);
        let full = snap.disks.bytes.len();
        snap.retain_vms(|vm| [2, 50, 99].contains(&vm));
        assert!(
            snap.disks.bytes.len() * 10 < full,
            "{} of {full}",
            snap.disks.bytes.len()
        );
        assert_eq!(snap.rows(), 3);
        assert_eq!(rendered(&snap, 50), before);
        assert_eq!(
            rendered(&snap, 99).unwrap()["virtual_disks"],
            json!([{"id": 1099, "name": "d99", "size": 99}])
        );
        assert!(snap.vm_rows(51).is_none());
    }

    #[test]
    fn rows_keep_their_texts_in_one_pool_per_kind() {
        let (i, m, mut ip, d) = sample();
        // Same address in a VRF named "" and in none: the key tells them apart.
        ip.push(
            serde_json::from_value(json!({"id": 34, "address": "10.0.0.5/24",
                "vrf": {"id": 2, "name": ""}, "status": {"value": "active", "label": "Active"},
                "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 12,
                "tags": [], "last_updated": "2026-12-06T10:00:00.123456Z"}))
            .unwrap(),
        );
        let mut errors = Vec::new();
        let snap = assemble(
            Some(staged(i)),
            Some(staged(m)),
            Some(staged(ip)),
            Some(staged(d)),
            &mut errors,
        );
        // One list per distinct tag list and choice value, shared by the rows that carry it.
        assert_eq!(
            snap.ips.pool.tags.len(),
            1,
            "[] and absent tags are one list"
        );
        assert_eq!(snap.ips.pool.choices, vec![json!("active")]);
        let ip_rows: usize = snap.by_vm.values().map(|r| snap.ips.count(&r.ips)).sum();
        assert_eq!(ip_rows, 2, "only the rows on a VM interface");
        let rows = snap.vm_rows(7).unwrap();
        let ips: Vec<Child> = rows.ips().collect();
        assert_eq!(
            ips,
            vec![
                Child {
                    id: 31,
                    name: "10.0.0.5/24",
                    vrf: None,
                    tags: &[],
                    last_updated: None,
                },
                Child {
                    id: 34,
                    name: "10.0.0.5/24",
                    vrf: Some(""),
                    tags: &[],
                    last_updated: Some(LastUpdated::Micros(
                        stamp::parse("2026-12-06T10:00:00.123456Z").unwrap()
                    )),
                },
            ]
        );
        let names: Vec<&str> = rows.interfaces().map(|c| c.name).collect();
        assert_eq!(names, ["net0", "net1"], "in id order");
        assert_eq!(rows.interfaces().next().unwrap().tags, ["pve2netbox"]);
        assert_eq!(
            rows.macs().map(|c| c.name).collect::<Vec<_>>(),
            ["BC:24:11:2A:3B:4C"]
        );
        assert_eq!(rows.disks().map(|c| c.id).collect::<Vec<_>>(), [41]);
        // The texts are one buffer per kind, without spare room.
        assert_eq!(snap.disks.pool.text, "scsi0local-lvm");
        assert_eq!(snap.disks.pool.text.capacity(), snap.disks.pool.text.len());
    }

    #[test]
    fn interface_fields_follow_the_version() {
        let old = Capabilities::of(crate::clients::netbox::NetboxVersion::new(4, 1, 0));
        assert!(!interface_fields(&old).contains(&"primary_mac_address"));
        assert!(interface_fields(&old).contains(&"mac_address"));
        let new = Capabilities::of(crate::clients::netbox::NetboxVersion::new(4, 7, 3));
        assert!(interface_fields(&new).contains(&"primary_mac_address"));
    }
}
