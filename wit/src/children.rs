//! The plain-Rust mirror of the WIT 0.3 child types (`wit/v0.3.0/rules.wit`), with friendly
//! JSON like `crate::model`: a `keep` field or collection is absent, `clear` is `null`, `set`
//! is the plain value.

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
pub struct ChildIdentity {
    pub id: u64,
    #[serde(default)]
    pub managed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// WIT `vm-interface`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmInterface {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ChildIdentity>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub enabled: Field<bool>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub mtu: Field<u64>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub description: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub mode: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub untagged_vlan: Field<u64>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub primary_mac_address: Field<String>,
}

/// WIT `vm-mac-address`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmMacAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ChildIdentity>,
    pub mac_address: String,
    #[serde(default)]
    pub interface: Option<String>,
}

/// WIT `vm-ip-address`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmIpAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ChildIdentity>,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub status: Field<String>,
    #[serde(default)]
    pub interface: Option<String>,
}

impl VmIpAddress {
    /// The child key: the address, then `@` and the VRF when it is in one.
    pub fn key(&self) -> String {
        match &self.vrf {
            Some(vrf) => format!("{}@{vrf}", self.address),
            None => self.address.clone(),
        }
    }
}

/// WIT `vm-virtual-disk`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmVirtualDisk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ChildIdentity>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub size: Field<u64>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub description: Field<String>,
}

/// WIT `vm-children`; every collection `keep` by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmChildren {
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub interfaces: Field<Vec<VmInterface>>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub mac_addresses: Field<Vec<VmMacAddress>>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub ip_addresses: Field<Vec<VmIpAddress>>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub virtual_disks: Field<Vec<VmVirtualDisk>>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub primary_ip4: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub primary_ip6: Field<String>,
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
