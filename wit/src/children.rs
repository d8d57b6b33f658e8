//! The plain-Rust mirror of the WIT 0.3 child types (`wit/v0.3.0/rules.wit`), with friendly
//! JSON like `crate::model`: a `keep` field or collection is absent, `clear` is `null`, `set`
//! is the plain value.
//!
//! The child records take their text type as a parameter, `String` by default (what the
//! component boundary, serde and most modules use). A module that reads NetBox's children
//! text itself can build them on text borrowed from it (`Cow<'a, str>`, copied only where it
//! normalizes a value) and compare them without copying each string; [`VmChildren::into_owned`]
//! turns them into the default form where an owned one is needed.

use serde::{Deserialize, Serialize};

use crate::model::{Field, FieldChange, JsonText};

/// The tag that marks children the sync created or adopted (the host's managed tag).
pub const MANAGED_TAG: &str = "pve2netbox";

/// The child collections a 0.3 policy can name (`field` of a `field-policy`), beside the VM's
/// own fields; a 0.2 module knows none of them.
pub const COLLECTIONS: [&str; 6] = [
    "interfaces",
    "mac_addresses",
    "ip_addresses",
    "virtual_disks",
    "primary_ip4",
    "primary_ip6",
];

/// Where a guest's runtime network view came from (WIT `network-source`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkSource {
    /// The agent's `network-get-interfaces` `result` array, as JSON.
    Agent(JsonText),
    /// The LXC `/interfaces` `data` array, as JSON.
    LxcInterfaces(JsonText),
    /// No runtime view.
    Unknown(NetworkUnknown),
}

impl Default for NetworkSource {
    /// What a 0.1/0.2 host passes: it never asks.
    fn default() -> Self {
        NetworkSource::Unknown(NetworkUnknown {
            reason: UnknownReason::NotAsked,
            detail: String::new(),
        })
    }
}

/// Why there is no runtime view (WIT `network-unknown`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkUnknown {
    pub reason: UnknownReason,
    #[serde(default)]
    pub detail: String,
}

/// WIT `network-unknown-reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownReason {
    AgentOff,
    NotRunning,
    AgentNotRunning,
    NoPermission,
    TimedOut,
    NotAsked,
    OtherError,
}

/// A current child's NetBox id and management (WIT `child-identity`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildIdentity<S = String> {
    pub id: u64,
    #[serde(default)]
    pub managed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<S>,
}

/// WIT `vm-interface`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmInterface<S = String> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ChildIdentity<S>>,
    pub name: S,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub enabled: Field<bool>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub mtu: Field<u64>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub description: Field<S>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub mode: Field<S>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub untagged_vlan: Field<u64>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub primary_mac_address: Field<S>,
}

/// WIT `vm-mac-address`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmMacAddress<S = String> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ChildIdentity<S>>,
    pub mac_address: S,
    #[serde(default)]
    pub interface: Option<S>,
}

/// WIT `vm-ip-address`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmIpAddress<S = String> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ChildIdentity<S>>,
    pub address: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<S>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub status: Field<S>,
    #[serde(default)]
    pub interface: Option<S>,
}

impl<S: AsRef<str>> VmIpAddress<S> {
    /// The child key: the address, then `@` and the VRF when it is in one.
    pub fn key(&self) -> String {
        let address = self.address.as_ref();
        match &self.vrf {
            Some(vrf) => format!("{address}@{}", vrf.as_ref()),
            None => address.to_owned(),
        }
    }
}

/// WIT `vm-virtual-disk`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmVirtualDisk<S = String> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ChildIdentity<S>>,
    pub name: S,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub size: Field<u64>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub description: Field<S>,
}

/// WIT `vm-children`; every collection `keep` by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmChildren<S = String> {
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub interfaces: Field<Vec<VmInterface<S>>>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub mac_addresses: Field<Vec<VmMacAddress<S>>>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub ip_addresses: Field<Vec<VmIpAddress<S>>>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub virtual_disks: Field<Vec<VmVirtualDisk<S>>>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub primary_ip4: Field<S>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub primary_ip6: Field<S>,
}

impl<S: Into<String>> VmChildren<S> {
    /// The same children with owned text (`String`), e.g. from ones borrowed from the text
    /// they were read from.
    pub fn into_owned(self) -> VmChildren {
        fn list<T, U>(f: Field<Vec<T>>, one: impl FnMut(T) -> U) -> Field<Vec<U>> {
            f.map(|v| v.into_iter().map(one).collect())
        }
        VmChildren {
            interfaces: list(self.interfaces, |i| VmInterface {
                identity: i.identity.map(ChildIdentity::into_owned),
                name: i.name.into(),
                enabled: i.enabled,
                mtu: i.mtu,
                description: i.description.map(Into::into),
                mode: i.mode.map(Into::into),
                untagged_vlan: i.untagged_vlan,
                primary_mac_address: i.primary_mac_address.map(Into::into),
            }),
            mac_addresses: list(self.mac_addresses, |m| VmMacAddress {
                identity: m.identity.map(ChildIdentity::into_owned),
                mac_address: m.mac_address.into(),
                interface: m.interface.map(Into::into),
            }),
            ip_addresses: list(self.ip_addresses, |a| VmIpAddress {
                identity: a.identity.map(ChildIdentity::into_owned),
                address: a.address.into(),
                vrf: a.vrf.map(Into::into),
                status: a.status.map(Into::into),
                interface: a.interface.map(Into::into),
            }),
            virtual_disks: list(self.virtual_disks, |d| VmVirtualDisk {
                identity: d.identity.map(ChildIdentity::into_owned),
                name: d.name.into(),
                size: d.size,
                description: d.description.map(Into::into),
            }),
            primary_ip4: self.primary_ip4.map(Into::into),
            primary_ip6: self.primary_ip6.map(Into::into),
        }
    }
}

impl<S: Into<String>> ChildIdentity<S> {
    /// The same identity with owned tags.
    pub fn into_owned(self) -> ChildIdentity {
        ChildIdentity {
            id: self.id,
            managed: self.managed,
            tags: self.tags.into_iter().map(Into::into).collect(),
        }
    }
}

/// WIT `child-kind`, in the order child changes are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChildKind {
    Interface,
    MacAddress,
    IpAddress,
    VirtualDisk,
}

/// WIT `child-op`. Friendly JSON: `"create"`, `{"update": 7}`, `{"delete": 7}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildOp {
    Create,
    Update(u64),
    Delete(u64),
}

/// WIT `child-change`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildChange {
    pub kind: ChildKind,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub op: ChildOp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}
