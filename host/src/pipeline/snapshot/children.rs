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
//! Edges: NetBox client in; per VM the JSON text of WIT `netbox-vm.children` out
//! ([`ChildrenSnapshot::children_json`]).

use std::collections::HashMap;

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
    #[serde(default, deserialize_with = "slugs")]
    pub tags: Vec<String>,
    /// For `apply`'s staleness check; not shown to the rules.
    #[serde(default, skip_serializing)]
    pub last_updated: Option<String>,
}

/// One MAC address object as read and rendered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MacRow {
    pub id: u64,
    pub mac_address: String,
    #[serde(default, skip_serializing)]
    assigned_object_type: Option<String>,
    #[serde(default)]
    pub assigned_object_id: Option<u64>,
    #[serde(default, deserialize_with = "slugs")]
    pub tags: Vec<String>,
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
    #[serde(default, skip_serializing)]
    assigned_object_type: Option<String>,
    #[serde(default)]
    pub assigned_object_id: Option<u64>,
    #[serde(default, deserialize_with = "slugs")]
    pub tags: Vec<String>,
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
    #[serde(default, deserialize_with = "slugs")]
    pub tags: Vec<String>,
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

/// One VM's children.
#[derive(Debug, Default)]
pub struct VmRows {
    pub interfaces: Vec<InterfaceRow>,
    pub macs: Vec<MacRow>,
    pub ips: Vec<IpRow>,
    pub disks: Vec<DiskRow>,
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

/// The children of the managed VMs, by VM id.
#[derive(Debug, Default)]
pub struct ChildrenSnapshot {
    by_vm: HashMap<u64, VmRows>,
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
        interfaces: list(read.interfaces, &rows.interfaces, InterfaceOut::of),
        mac_addresses: list(read.mac_addresses, &rows.macs, MacOut::of),
        ip_addresses: list(read.ip_addresses, &rows.ips, IpOut::of),
        virtual_disks: list(read.virtual_disks, &rows.disks, DiskOut::of),
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
        let empty = VmRows::default();
        let rows = self.by_vm.get(&vm_id).unwrap_or(&empty);
        Some(render_children(rows, r, self.primaries.get(&vm_id)))
    }

    /// One VM's children rows (`None`: it has none, or none were read).
    pub fn vm_rows(&self, vm_id: u64) -> Option<&VmRows> {
        self.by_vm.get(&vm_id)
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
            .map(|v| v.interfaces.len() + v.macs.len() + v.ips.len() + v.disks.len())
            .sum()
    }

    /// Keeps only the children of the VMs `keep` accepts (the managed VMs): virtual disks are
    /// read without a cluster filter.
    pub fn retain_vms(&mut self, keep: impl Fn(u64) -> bool) {
        self.by_vm.retain(|id, _| keep(*id));
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

/// A kind's rows, or why it was not read.
fn rows_of<T>(
    kind: &'static str,
    listed: Result<Vec<Listed<T>>, NetboxError>,
    errors: &mut Vec<ChildrenError>,
) -> Option<Vec<T>> {
    let listed = match listed {
        Ok(rows) => rows,
        Err(source) => {
            errors.push(ChildrenError::Read { kind, source });
            return None;
        }
    };
    let mut rows = Vec::with_capacity(listed.len());
    for row in listed {
        match row {
            Listed::Row(row) => rows.push(row),
            Listed::Unreadable { id, error } => {
                errors.push(ChildrenError::Unreadable { kind, id, error });
                return None;
            }
        }
    }
    Some(rows)
}

/// Reads the children of the VMs of `clusters` (NetBox cluster ids), every kind in parallel.
/// Never fails: a kind that could not be read is recorded ([`ChildrenSnapshot::errors`]) and
/// counts as not read.
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
    let (ifaces, macs, ips, disks, vlans) = tokio::join!(
        client.list_rows::<InterfaceRow>(INTERFACE_ENDPOINT, &by_cluster, &iface_fields),
        async {
            if caps.mac_objects {
                Some(
                    client
                        .list_rows::<MacRow>(MAC_ENDPOINT, &on_vminterface, MAC_FIELDS)
                        .await,
                )
            } else {
                None
            }
        },
        client.list_rows::<IpRow>(IP_ENDPOINT, &on_vminterface, IP_FIELDS),
        client.list_rows::<DiskRow>(DISK_ENDPOINT, &[], DISK_FIELDS),
        client.list_rows::<VlanRow>(VLAN_ENDPOINT, &[], VLAN_FIELDS),
    );
    let mut errors = Vec::new();
    let ifaces = rows_of("VM interfaces", ifaces, &mut errors);
    let macs = macs.and_then(|m| rows_of("MAC addresses", m, &mut errors));
    let ips = rows_of("IP addresses", ips, &mut errors);
    let disks = rows_of("virtual disks", disks, &mut errors);
    let vlans = rows_of("VLANs", vlans, &mut errors);
    let mut snap = assemble(ifaces, macs, ips, disks, &mut errors);
    snap.read.vlans = vlans.is_some();
    snap.vlans = vlans.unwrap_or_default();
    for e in &errors {
        tracing::warn!(error = %e, "NetBox children not read; those children are left alone");
    }
    snap.errors = errors;
    snap
}

/// The VLANs alone, for a run whose clusters do not exist in NetBox yet (a `plan` before the
/// first sync): no VM has children to read, but its interfaces' untagged VLANs must be found.
pub async fn read_vlans(client: &NetboxClient) -> ChildrenSnapshot {
    let mut snap = ChildrenSnapshot::default();
    let mut errors = Vec::new();
    let vlans = client
        .list_rows::<VlanRow>(VLAN_ENDPOINT, &[], VLAN_FIELDS)
        .await;
    if let Some(vlans) = rows_of("VLANs", vlans, &mut errors) {
        snap.read.vlans = true;
        snap.vlans = vlans;
    }
    for e in &errors {
        tracing::warn!(error = %e, "NetBox VLANs not read; untagged VLANs are left out");
    }
    snap.errors = errors;
    snap
}

/// Indexes the rows read by VM id. MACs and IPs are attributed through the interfaces (only
/// those on an interface read here are kept).
fn assemble(
    ifaces: Option<Vec<InterfaceRow>>,
    macs: Option<Vec<MacRow>>,
    ips: Option<Vec<IpRow>>,
    disks: Option<Vec<DiskRow>>,
    errors: &mut Vec<ChildrenError>,
) -> ChildrenSnapshot {
    let mut snap = ChildrenSnapshot::default();
    let mut iface_vm: HashMap<u64, u64> = HashMap::new();
    if let Some(ifaces) = ifaces {
        snap.read.interfaces = true;
        for row in ifaces {
            let Some(vm) = row.virtual_machine.map(|r| r.id) else {
                continue;
            };
            iface_vm.insert(row.id, vm);
            snap.by_vm.entry(vm).or_default().interfaces.push(row);
        }
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
    let vm_of = |kind: Option<&str>, iface: Option<u64>| -> Option<u64> {
        if kind != Some(VMINTERFACE_TYPE) {
            return None;
        }
        iface_vm.get(&iface?).copied()
    };
    if snap.read.interfaces {
        if let Some(macs) = macs {
            snap.read.mac_addresses = true;
            for row in macs {
                if let Some(vm) = vm_of(row.assigned_object_type.as_deref(), row.assigned_object_id)
                {
                    snap.by_vm.entry(vm).or_default().macs.push(row);
                }
            }
        }
        if let Some(ips) = ips {
            snap.read.ip_addresses = true;
            for row in ips {
                if let Some(vm) = vm_of(row.assigned_object_type.as_deref(), row.assigned_object_id)
                {
                    snap.by_vm.entry(vm).or_default().ips.push(row);
                }
            }
        }
    }
    if let Some(disks) = disks {
        snap.read.virtual_disks = true;
        for row in disks {
            if let Some(vm) = row.virtual_machine.map(|r| r.id) {
                snap.by_vm.entry(vm).or_default().disks.push(row);
            }
        }
    }
    // Listings come in id order already; sorted again so the rendering never depends on it.
    for rows in snap.by_vm.values_mut() {
        rows.interfaces.sort_unstable_by_key(|r| r.id);
        rows.macs.sort_unstable_by_key(|r| r.id);
        rows.ips.sort_unstable_by_key(|r| r.id);
        rows.disks.sort_unstable_by_key(|r| r.id);
    }
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
        let listed: Result<Vec<Listed<DiskRow>>, NetboxError> = Ok(vec![Listed::Unreadable {
            id: Some(4),
            error: "size: invalid type".into(),
        }]);
        assert!(rows_of("virtual disks", listed, &mut errors).is_none());
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
