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
//! and indexed by ranges (no small vector per VM), tag lists shared between rows that carry
//! the same tags, and MACs and IPs keep only whether they sit on a VM interface.
//!
//! Edges: NetBox client in; per VM the JSON text of WIT `netbox-vm.children` out
//! ([`ChildrenSnapshot::children_json`]).

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, Range};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use crate::clients::netbox::{Capabilities, ListRow, Listed, NetboxClient, NetboxError};

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

/// One shared copy of each list of tags seen in a listing.
#[derive(Default)]
struct TagLists(HashSet<Tags>);

impl TagLists {
    fn share(&mut self, tags: &mut Tags) {
        match self.0.get(tags) {
            Some(shared) => *tags = shared.clone(),
            None => {
                self.0.insert(tags.clone());
            }
        }
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
    /// The VM of the interface it is assigned to (set when the snapshot is assembled; 0
    /// before).
    #[serde(skip)]
    vm: u64,
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
    /// The VM of the interface it is assigned to (set when the snapshot is assembled; 0
    /// before).
    #[serde(skip)]
    vm: u64,
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

/// One VM's children, borrowed from the snapshot (each kind in id order).
#[derive(Debug, Clone, Copy, Default)]
pub struct VmRows<'a> {
    pub interfaces: &'a [InterfaceRow],
    pub macs: &'a [MacRow],
    pub ips: &'a [IpRow],
    pub disks: &'a [DiskRow],
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
    ($($t:ty => |$r:ident| $vm:expr),*) => {$(
        impl OfVm for $t {
            fn vm(&self) -> u64 {
                let $r = self;
                $vm
            }
            fn id(&self) -> u64 {
                self.id
            }
        }
    )*};
}
of_vm!(
    InterfaceRow => |r| r.virtual_machine.map_or(0, |v| v.id),
    MacRow => |r| r.vm,
    IpRow => |r| r.vm,
    DiskRow => |r| r.virtual_machine.map_or(0, |v| v.id)
);

/// Sorts `rows` by VM, then id, and sets each VM's range of them with `set`.
fn index_by_vm<T: OfVm>(
    rows: &mut [T],
    by_vm: &mut HashMap<u64, VmRanges>,
    set: impl Fn(&mut VmRanges) -> &mut Range<u32>,
) {
    if !rows.is_sorted_by_key(|r| (r.vm(), r.id())) {
        rows.sort_unstable_by_key(|r| (r.vm(), r.id()));
    }
    let mut start = 0usize;
    while start < rows.len() {
        let vm = rows[start].vm();
        let end = start + rows[start..].partition_point(|r| r.vm() == vm);
        // Row counts stay far below u32::MAX (a listing is refused past 10 million rows).
        *set(by_vm.entry(vm).or_default()) = start as u32..end as u32;
        start = end;
    }
}

/// Keeps the rows whose VM `keep` accepts, and gives back the room of many left out; whether
/// any row was left out.
fn retain_rows<T: OfVm>(rows: &mut Vec<T>, keep: &impl Fn(u64) -> bool) -> bool {
    let before = rows.len();
    rows.retain(|r| keep(r.vm()));
    if rows.len() < rows.capacity() / 2 {
        rows.shrink_to_fit();
    }
    rows.len() != before
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
    interfaces: Vec<InterfaceRow>,
    macs: Vec<MacRow>,
    ips: Vec<IpRow>,
    disks: Vec<DiskRow>,
    by_vm: HashMap<u64, VmRanges>,
    read: KindsRead,
    primaries: HashMap<u64, Primaries>,
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
fn choice(c: Option<&Choice>) -> Option<&serde_json::Value> {
    c.map(|c| &c.value).filter(|v| !v.is_null())
}

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
    fn of(r: &'a InterfaceRow) -> Self {
        // Where the primary MAC object is read, its address is the interface's MAC (NetBox's
        // own `mac_address` mirrors it); an empty one is none, as before.
        let mac = match &r.primary_mac_address {
            Some(m) => Some(m.mac_address.as_str()),
            None => r.mac_address.as_deref(),
        };
        InterfaceOut {
            id: r.id,
            name: &r.name,
            enabled: r.enabled,
            mtu: r.mtu,
            description: some_text(r.description.as_deref()),
            mode: choice(r.mode.as_ref()),
            untagged_vlan: r.untagged_vlan.as_ref().map(|v| VidOut { vid: v.vid }),
            mac_address: some_text(mac),
            tags: &r.tags,
        }
    }
}

impl<'a> MacOut<'a> {
    fn of(r: &'a MacRow) -> Self {
        MacOut {
            id: r.id,
            mac_address: &r.mac_address,
            assigned_object_id: r.assigned_object_id,
            tags: &r.tags,
        }
    }
}

impl<'a> IpOut<'a> {
    fn of(r: &'a IpRow) -> Self {
        IpOut {
            id: r.id,
            address: &r.address,
            vrf: r.vrf.as_ref().map(|v| v.name.as_str()),
            status: choice(r.status.as_ref()),
            assigned_object_id: r.assigned_object_id,
            tags: &r.tags,
        }
    }
}

impl<'a> DiskOut<'a> {
    fn of(r: &'a DiskRow) -> Self {
        DiskOut {
            id: r.id,
            name: &r.name,
            size: r.size,
            description: some_text(r.description.as_deref()),
            tags: &r.tags,
        }
    }
}

/// Renders one VM's rows as WIT `netbox-vm.children` (see [`Rendered`]); a kind not in `read`
/// is absent. Also what `rules bench --children` feeds the rules, so that it measures the text
/// a sync sends.
pub fn render_children(rows: &VmRows, read: KindsRead, primaries: Option<&Primaries>) -> String {
    fn list<'a, T, O>(on: bool, rows: &'a [T], of: impl Fn(&'a T) -> O) -> Option<Vec<O>> {
        on.then(|| rows.iter().map(of).collect())
    }
    fn primary(ip: Option<&IpRef>) -> Option<AddressOut<'_>> {
        ip.map(|p| AddressOut {
            address: &p.address,
        })
    }
    let rendered = Rendered {
        interfaces: list(read.interfaces, rows.interfaces, InterfaceOut::of),
        mac_addresses: list(read.mac_addresses, rows.macs, MacOut::of),
        ip_addresses: list(read.ip_addresses, rows.ips, IpOut::of),
        virtual_disks: list(read.virtual_disks, rows.disks, DiskOut::of),
        primary_ip4: primary(
            primaries
                .filter(|_| read.ip_addresses)
                .and_then(|p| p.ip4.as_ref()),
        ),
        primary_ip6: primary(
            primaries
                .filter(|_| read.ip_addresses)
                .and_then(|p| p.ip6.as_ref()),
        ),
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
        Some(render_children(&rows, r, self.primaries.get(&vm_id)))
    }

    /// One VM's children rows (`None`: it has none, or none were read).
    pub fn vm_rows(&self, vm_id: u64) -> Option<VmRows<'_>> {
        fn slice<'a, T>(rows: &'a [T], r: &Range<u32>) -> &'a [T] {
            &rows[r.start as usize..r.end as usize]
        }
        let r = self.by_vm.get(&vm_id)?;
        Some(VmRows {
            interfaces: slice(&self.interfaces, &r.interfaces),
            macs: slice(&self.macs, &r.macs),
            ips: slice(&self.ips, &r.ips),
            disks: slice(&self.disks, &r.disks),
        })
    }

    /// Sorts each kind by VM and sets every VM's ranges.
    fn index(&mut self) {
        self.by_vm.clear();
        index_by_vm(&mut self.interfaces, &mut self.by_vm, |r| &mut r.interfaces);
        index_by_vm(&mut self.macs, &mut self.by_vm, |r| &mut r.macs);
        index_by_vm(&mut self.ips, &mut self.by_vm, |r| &mut r.ips);
        index_by_vm(&mut self.disks, &mut self.by_vm, |r| &mut r.disks);
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
        self.interfaces.len() + self.macs.len() + self.ips.len() + self.disks.len()
    }

    /// Keeps only the children of the VMs `keep` accepts (the managed VMs): virtual disks are
    /// read without a cluster filter.
    pub fn retain_vms(&mut self, keep: impl Fn(u64) -> bool) {
        let removed = retain_rows(&mut self.interfaces, &keep)
            | retain_rows(&mut self.macs, &keep)
            | retain_rows(&mut self.ips, &keep)
            | retain_rows(&mut self.disks, &keep);
        // Rows stay in their order, so only the ranges can change, and only when rows went
        // (usually none do: every VM in the managed clusters is managed).
        if removed {
            self.index();
        }
        self.primaries.retain(|id, _| keep(*id));
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
            kind(&v, "interfaces"),
            kind(&v, "mac_addresses"),
            kind(&v, "ip_addresses"),
            kind(&v, "virtual_disks"),
            &mut errors,
        );
        if let Some(vlans) = kind(&v, "vlans") {
            snap.read.vlans = true;
            snap.vlans = vlans;
        }
        snap
    }

    /// Sets the VMs' primary IPs (read with the VMs).
    pub fn set_primaries(&mut self, primaries: HashMap<u64, Primaries>) {
        self.primaries = primaries;
    }
}

/// A row whose tag list can be shared with other rows' ([`TagLists`]).
trait Tagged {
    fn tags_mut(&mut self) -> Option<&mut Tags>;
}

macro_rules! tagged {
    ($($t:ty),*) => {$(
        impl Tagged for $t {
            fn tags_mut(&mut self) -> Option<&mut Tags> {
                Some(&mut self.tags)
            }
        }
    )*};
}
tagged!(InterfaceRow, MacRow, IpRow, DiskRow);

impl Tagged for VlanRow {
    fn tags_mut(&mut self) -> Option<&mut Tags> {
        None
    }
}

/// Takes one kind's rows as their pages are consumed: each row kept (its tags shared), the
/// first row not understood remembered (the kind then counts as not read).
struct KindRows {
    kind: &'static str,
    tags: TagLists,
    unreadable: Option<(Option<u64>, String)>,
}

impl KindRows {
    fn new(kind: &'static str) -> Self {
        KindRows {
            kind,
            tags: TagLists::default(),
            unreadable: None,
        }
    }

    fn take<T: Tagged>(&mut self, row: Listed<T>) -> Option<T> {
        match row {
            Listed::Row(mut row) => {
                if let Some(tags) = row.tags_mut() {
                    self.tags.share(tags);
                }
                Some(row)
            }
            Listed::Unreadable { id, error } => {
                self.unreadable.get_or_insert((id, error));
                None
            }
        }
    }

    /// The kind's rows, or `None` (with why in `errors`) when the read failed or a row was
    /// not understood.
    fn finish<T>(
        self,
        listed: Result<Vec<T>, NetboxError>,
        errors: &mut Vec<ChildrenError>,
    ) -> Option<Vec<T>> {
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
            (Ok(rows), None) => Some(rows),
        }
    }
}

/// Lists one kind, its rows taken by a [`KindRows`] as the pages come.
async fn list_kind<T: ListRow + Tagged>(
    client: &NetboxClient,
    kind: &'static str,
    endpoint: &str,
    filters: &[(String, String)],
    fields: &[&str],
    errors: &mut Vec<ChildrenError>,
) -> Option<Vec<T>> {
    let mut taker = KindRows::new(kind);
    let listed = client
        .list_rows_into(endpoint, filters, fields, |row| taker.take(row))
        .await;
    taker.finish(listed, errors)
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
        list_kind::<VlanRow>(client, "VLANs", VLAN_ENDPOINT, &[], VLAN_FIELDS, &mut e5),
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
    let vlans = list_kind::<VlanRow>(
        client,
        "VLANs",
        VLAN_ENDPOINT,
        &[],
        VLAN_FIELDS,
        &mut errors,
    )
    .await;
    if let Some(vlans) = vlans {
        snap.read.vlans = true;
        snap.vlans = vlans;
    }
    for e in &errors {
        tracing::warn!(error = %e, "NetBox VLANs not read; untagged VLANs are left out");
    }
    snap.errors = errors;
    snap
}

/// Places each kind's rows under their VM: interfaces and disks by their own VM, MACs and IPs
/// through the VM interface they are assigned to (left out when on anything else). A kind
/// `None` is not read; MACs and IPs are not read without the interfaces.
fn assemble(
    ifaces: Option<Vec<InterfaceRow>>,
    macs: Option<Vec<MacRow>>,
    ips: Option<Vec<IpRow>>,
    disks: Option<Vec<DiskRow>>,
    errors: &mut Vec<ChildrenError>,
) -> ChildrenSnapshot {
    let mut snap = ChildrenSnapshot::default();
    if let Some(mut ifaces) = ifaces {
        snap.read.interfaces = true;
        ifaces.retain(|r| r.vm() != 0);
        snap.interfaces = ifaces;
    } else {
        for (kind, present) in [
            ("MAC addresses", macs.is_some()),
            ("IP addresses", ips.is_some()),
        ] {
            if present {
                errors.push(ChildrenError::NoInterfaces { kind });
            }
        }
    }
    if snap.read.interfaces {
        let iface_vm: HashMap<u64, u64> = snap.interfaces.iter().map(|r| (r.id, r.vm())).collect();
        let vm_of = |on_vminterface: bool, iface: Option<u64>| -> u64 {
            match iface {
                Some(iface) if on_vminterface => iface_vm.get(&iface).copied().unwrap_or(0),
                _ => 0,
            }
        };
        if let Some(mut macs) = macs {
            snap.read.mac_addresses = true;
            for r in &mut macs {
                r.vm = vm_of(r.on_vminterface, r.assigned_object_id);
            }
            macs.retain(|r| r.vm != 0);
            snap.macs = macs;
        }
        if let Some(mut ips) = ips {
            snap.read.ip_addresses = true;
            for r in &mut ips {
                r.vm = vm_of(r.on_vminterface, r.assigned_object_id);
            }
            ips.retain(|r| r.vm != 0);
            snap.ips = ips;
        }
    }
    if let Some(mut disks) = disks {
        snap.read.virtual_disks = true;
        disks.retain(|r| r.vm() != 0);
        snap.disks = disks;
    }
    snap.index();
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
        let mut snap = assemble(Some(i), Some(m), Some(ip), Some(d), &mut errors);
        snap.read.vlans = true;
        snap.set_primaries(HashMap::from([(
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
                    {"id": 11, "name": "net0", "enabled": true, "mode": "access",
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
        let snap = assemble(Some(i), None, None, Some(d), &mut errors);
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
        let snap = assemble(None, Some(m), Some(ip), None, &mut errors);
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
        let rows: Vec<DiskRow> = [Listed::Unreadable {
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
    fn interface_fields_follow_the_version() {
        let old = Capabilities::of(crate::clients::netbox::NetboxVersion::new(4, 1, 0));
        assert!(!interface_fields(&old).contains(&"primary_mac_address"));
        assert!(interface_fields(&old).contains(&"mac_address"));
        let new = Capabilities::of(crate::clients::netbox::NetboxVersion::new(4, 7, 3));
        assert!(interface_fields(&new).contains(&"primary_mac_address"));
    }
}
