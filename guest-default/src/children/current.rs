//! The VM's current children from the JSON text the host renders (WIT `netbox-vm.children`),
//! in comparable form: keys normalized as the desired children's are, ids and management kept.
//!
//! Lenient like `crate::model::NetboxVm`: choices as `{value,label}` or plain values, tags as
//! `{slug}` objects or slugs, a VRF as `{id,name}` or its name, nested MACs and VLANs trimmed to
//! the keys shown in the WIT. A collection whose key is absent was not read: `keep`.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    mode: Named<ValueKey>,
    #[serde(default)]
    untagged_vlan: Option<RawVlan>,
    #[serde(default)]
    primary_mac_address: Option<RawMacRef>,
    #[serde(default)]
    mac_address: Option<String>,
    #[serde(default)]
    tags: Vec<Named<SlugKey>>,
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
    tags: Vec<Named<SlugKey>>,
}

#[derive(Deserialize)]
struct RawIp {
    id: u64,
    address: String,
    #[serde(default)]
    vrf: Named<NameKey>,
    #[serde(default)]
    status: Named<ValueKey>,
    #[serde(default)]
    assigned_object_id: Option<u64>,
    #[serde(default)]
    tags: Vec<Named<SlugKey>>,
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
    tags: Vec<Named<SlugKey>>,
}

#[derive(Deserialize)]
struct RawPrimary {
    address: String,
}

/// The member of an object that names it: a choice's `value`, a VRF's `name`, a tag's `slug`.
trait Key {
    const KEY: Option<&'static str>;
}

#[derive(Default)]
struct ValueKey;
impl Key for ValueKey {
    const KEY: Option<&'static str> = Some("value");
}

#[derive(Default)]
struct NameKey;
impl Key for NameKey {
    const KEY: Option<&'static str> = Some("name");
}

#[derive(Default)]
struct SlugKey;
impl Key for SlugKey {
    const KEY: Option<&'static str> = Some("slug");
}

/// A plain string, or an object whose `K::KEY` member is a string (a choice `{value,label}`, a
/// VRF `{id,name}`, a tag `{slug}`); anything else (`null`, a number, an object without the
/// member) is `None`. Read straight from the text: no `serde_json::Value` is built, which was
/// a large part of the children's cost per VM.
struct Named<K>(Option<String>, PhantomData<K>);

impl<K> Default for Named<K> {
    fn default() -> Self {
        Named(None, PhantomData)
    }
}

impl<'de, K: Key> Deserialize<'de> for Named<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(PhantomData<K>);
        impl<'de, K: Key> Visitor<'de> for V<K> {
            type Value = Named<K>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a string or an object with `{}`", K::KEY.unwrap_or("?"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Named(Some(v.to_owned()), PhantomData))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Named(Some(v), PhantomData))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Named::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Named::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Named::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Named::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Named::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Named::default())
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Named::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<MemberName<'de>>()? {
                    // The last of a repeated member wins, as in a parsed JSON object.
                    if K::KEY == Some(key.0.as_ref()) {
                        out = map.next_value::<Named<StringOnly>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Named(out, PhantomData))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The member itself: only a string counts (an object there is not a name).
#[derive(Default)]
struct StringOnly;
impl Key for StringOnly {
    // No member matches: a nested object reads as `None`.
    const KEY: Option<&'static str> = None;
}

/// An object member's name, borrowed when it has no escape.
struct MemberName<'a>(std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MemberName(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

fn identity(id: u64, tags: Vec<Named<SlugKey>>) -> ChildIdentity {
    let mut tags: Vec<String> = tags.into_iter().filter_map(|t| t.0).collect();
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
    // A VM has a few interfaces: a list beats a hash map.
    let names: Vec<(u64, String)> = raw
        .interfaces
        .iter()
        .flatten()
        .map(|i| (i.id, i.name.clone()))
        .collect();
    let iface_of = |id: Option<u64>| {
        id.and_then(|id| names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()))
    };
    let mut out = VmChildren::default();
    if let Some(list) = raw.interfaces {
        out.interfaces = Field::Set(
            list.into_iter()
                .map(|i| VmInterface {
                    identity: Some(identity(i.id, i.tags)),
                    name: i.name,
                    enabled: Field::Set(i.enabled.unwrap_or(true)),
                    mtu: Field::from_option(i.mtu),
                    description: text(i.description),
                    mode: text(i.mode.0),
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
                    identity: Some(identity(m.id, m.tags)),
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
                    identity: Some(identity(a.id, a.tags)),
                    address: ip::normalize_key(&a.address),
                    vrf: a.vrf.0,
                    status: text(a.status.0),
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
                    identity: Some(identity(d.id, d.tags)),
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
