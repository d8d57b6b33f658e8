//! The VM's current children from the JSON text the host renders (WIT `netbox-vm.children`),
//! in comparable form: keys normalized as the desired children's are, ids and management kept.
//!
//! Lenient like `crate::model::NetboxVm`: choices as `{value,label}` or plain values, tags as
//! `{slug}` objects or slugs, a VRF as `{id,name}` or its name, nested MACs and VLANs trimmed to
//! the keys shown in the WIT. A collection whose key is absent was not read: `keep`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::ip;
use super::mac;
use super::model::{
    ChildIdentity, MANAGED_TAG, VmChildren, VmInterface, VmIpAddress, VmMacAddress, VmVirtualDisk,
};
use crate::model::Field;

/// A children text that is not the documented shape; fails that VM (the host rendered it, so it
/// is a bug worth seeing, not something to guess around).
#[derive(Debug, Error)]
#[error("the current children are not the documented JSON: {0}")]
pub(crate) struct CurrentError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct Raw {
    interfaces: Option<Vec<RawInterface>>,
    mac_addresses: Option<Vec<RawMac>>,
    ip_addresses: Option<Vec<RawIp>>,
    virtual_disks: Option<Vec<RawDisk>>,
    #[serde(default)]
    primary_ip4: Option<RawPrimary>,
    #[serde(default)]
    primary_ip6: Option<RawPrimary>,
}

#[derive(Deserialize)]
struct RawInterface {
    id: u64,
    name: String,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    mtu: Option<u64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    mode: Option<Value>,
    #[serde(default)]
    untagged_vlan: Option<RawVlan>,
    #[serde(default)]
    primary_mac_address: Option<RawMacRef>,
    #[serde(default)]
    mac_address: Option<String>,
    #[serde(default)]
    tags: Vec<Value>,
}

#[derive(Deserialize)]
struct RawVlan {
    vid: u64,
}

#[derive(Deserialize)]
struct RawMacRef {
    mac_address: String,
}

#[derive(Deserialize)]
struct RawMac {
    id: u64,
    mac_address: String,
    #[serde(default)]
    assigned_object_id: Option<u64>,
    #[serde(default)]
    tags: Vec<Value>,
}

#[derive(Deserialize)]
struct RawIp {
    id: u64,
    address: String,
    #[serde(default)]
    vrf: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    assigned_object_id: Option<u64>,
    #[serde(default)]
    tags: Vec<Value>,
}

#[derive(Deserialize)]
struct RawDisk {
    id: u64,
    name: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<Value>,
}

#[derive(Deserialize)]
struct RawPrimary {
    address: String,
}

/// A choice `{value,label}` or a plain string.
fn choice(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("value").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A VRF `{id,name}` or its name.
fn vrf_name(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn identity(id: u64, tags: &[Value]) -> ChildIdentity {
    let mut tags: Vec<String> = tags
        .iter()
        .filter_map(|t| match t {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("slug").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        })
        .collect();
    tags.sort();
    tags.dedup();
    ChildIdentity {
        id,
        managed: tags.iter().any(|t| t == MANAGED_TAG),
        tags,
    }
}

fn text(v: Option<String>) -> Field<String> {
    Field::from_option(v.filter(|s| !s.is_empty()))
}

/// The current children; all `keep` when they were not read.
pub(crate) fn current_children(json: &str, read: bool) -> Result<VmChildren, CurrentError> {
    if !read {
        return Ok(VmChildren::default());
    }
    let raw: Raw = serde_json::from_str(json)?;
    let names: HashMap<u64, String> = raw
        .interfaces
        .iter()
        .flatten()
        .map(|i| (i.id, i.name.clone()))
        .collect();
    let iface_of = |id: Option<u64>| id.and_then(|id| names.get(&id).cloned());
    let mut out = VmChildren::default();
    if let Some(list) = raw.interfaces {
        out.interfaces = Field::Set(
            list.into_iter()
                .map(|i| VmInterface {
                    identity: Some(identity(i.id, &i.tags)),
                    name: i.name,
                    enabled: Field::Set(i.enabled.unwrap_or(true)),
                    mtu: Field::from_option(i.mtu),
                    description: text(i.description),
                    mode: text(choice(i.mode.as_ref())),
                    untagged_vlan: Field::from_option(i.untagged_vlan.map(|v| v.vid)),
                    primary_mac_address: Field::from_option(
                        i.primary_mac_address
                            .map(|m| m.mac_address)
                            .or(i.mac_address)
                            .filter(|m| !m.is_empty())
                            .map(|m| mac::normalize(&m).unwrap_or(m)),
                    ),
                })
                .collect(),
        );
    }
    if let Some(list) = raw.mac_addresses {
        out.mac_addresses = Field::Set(
            list.into_iter()
                .map(|m| VmMacAddress {
                    identity: Some(identity(m.id, &m.tags)),
                    mac_address: mac::normalize(&m.mac_address).unwrap_or(m.mac_address),
                    interface: iface_of(m.assigned_object_id),
                })
                .collect(),
        );
    }
    if let Some(list) = raw.ip_addresses {
        out.ip_addresses = Field::Set(
            list.into_iter()
                .map(|a| VmIpAddress {
                    identity: Some(identity(a.id, &a.tags)),
                    address: ip::normalize_key(&a.address),
                    vrf: vrf_name(a.vrf.as_ref()),
                    status: text(choice(a.status.as_ref())),
                    interface: iface_of(a.assigned_object_id),
                })
                .collect(),
        );
        // Primary IPs are only comparable when the addresses were read.
        out.primary_ip4 =
            Field::from_option(raw.primary_ip4.map(|p| ip::normalize_key(&p.address)));
        out.primary_ip6 =
            Field::from_option(raw.primary_ip6.map(|p| ip::normalize_key(&p.address)));
    }
    if let Some(list) = raw.virtual_disks {
        out.virtual_disks = Field::Set(
            list.into_iter()
                .map(|d| VmVirtualDisk {
                    identity: Some(identity(d.id, &d.tags)),
                    name: d.name,
                    size: Field::from_option(d.size),
                    description: text(d.description),
                })
                .collect(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"interfaces": [{"id": 11, "name": "net0", "enabled": true, "mtu": null,
        "description": "", "mode": {"value": "access", "label": "Access"}, "untagged_vlan": {"id": 5, "vid": 10},
        "primary_mac_address": {"id": 21, "mac_address": "bc:24:11:2a:3b:4c"},
        "tags": [{"slug": "pve2netbox"}]}],
      "mac_addresses": [{"id": 21, "mac_address": "BC:24:11:2A:3B:4C", "assigned_object_id": 11}],
      "ip_addresses": [{"id": 31, "address": "2001:0DB8:0:0::5/64", "vrf": {"id": 2, "name": "blue"},
        "status": "active", "assigned_object_id": 11, "tags": ["pve2netbox", "dns"]}],
      "virtual_disks": [{"id": 41, "name": "scsi0", "size": 32768, "description": "local-lvm", "tags": []}],
      "primary_ip4": null, "primary_ip6": {"id": 31, "address": "2001:db8::5/64"}}"#;

    #[test]
    fn reads_the_documented_shape() {
        let c = current_children(SAMPLE, true).unwrap();
        let Field::Set(ifs) = &c.interfaces else {
            panic!()
        };
        assert_eq!(ifs[0].mode, Field::Set("access".into()));
        assert_eq!(ifs[0].untagged_vlan, Field::Set(10));
        assert_eq!(
            ifs[0].primary_mac_address,
            Field::Set("BC:24:11:2A:3B:4C".into())
        );
        assert_eq!(ifs[0].description, Field::Clear);
        assert!(ifs[0].identity.as_ref().unwrap().managed);
        let Field::Set(ips) = &c.ip_addresses else {
            panic!()
        };
        assert_eq!(ips[0].key(), "2001:db8::5/64@blue");
        assert_eq!(ips[0].interface.as_deref(), Some("net0"));
        assert_eq!(
            ips[0].identity.as_ref().unwrap().tags,
            ["dns", "pve2netbox"]
        );
        assert_eq!(c.primary_ip4, Field::Clear);
        assert_eq!(c.primary_ip6, Field::Set("2001:db8::5/64".into()));
        let Field::Set(disks) = &c.virtual_disks else {
            panic!()
        };
        assert!(!disks[0].identity.as_ref().unwrap().managed);
    }

    #[test]
    fn unread_and_absent_collections_are_keep() {
        assert_eq!(
            current_children("{}", false).unwrap(),
            VmChildren::default()
        );
        let c = current_children(r#"{"virtual_disks": []}"#, true).unwrap();
        assert!(c.interfaces.is_keep() && c.ip_addresses.is_keep() && c.primary_ip4.is_keep());
        assert_eq!(c.virtual_disks, Field::Set(vec![]));
    }

    #[test]
    fn bad_text_is_an_error() {
        assert!(current_children("[]", true).is_err());
        assert!(current_children(r#"{"interfaces":[{"name":"x"}]}"#, true).is_err());
    }
}
