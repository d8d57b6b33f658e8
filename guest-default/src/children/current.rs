//! The VM's current children from the JSON text the host renders (WIT `netbox-vm.children`),
//! in comparable form: keys normalized as the desired children's are, ids and management kept.
//!
//! Lenient like `crate::model::NetboxVm`: choices as `{value,label}` or plain values, tags as
//! `{slug}` objects or slugs, a VRF as `{id,name}` or its name, nested MACs and VLANs trimmed to
//! the keys shown in the WIT. A collection whose key is absent was not read: `keep`.

use std::borrow::Cow;
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
struct Raw<'a> {
    #[serde(borrow)]
    interfaces: Option<Vec<RawInterface<'a>>>,
    #[serde(borrow)]
    mac_addresses: Option<Vec<RawMac<'a>>>,
    #[serde(borrow)]
    ip_addresses: Option<Vec<RawIp<'a>>>,
    #[serde(borrow)]
    virtual_disks: Option<Vec<RawDisk<'a>>>,
    #[serde(default, borrow)]
    primary_ip4: Option<RawPrimary<'a>>,
    #[serde(default, borrow)]
    primary_ip6: Option<RawPrimary<'a>>,
}

// Texts are borrowed from the JSON (decoded into their own string only when escaped).
#[derive(Deserialize)]
struct RawInterface<'a> {
    id: u64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    mtu: Option<u64>,
    #[serde(default, borrow)]
    description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    mode: Named<'a, ValueKey>,
    #[serde(default)]
    untagged_vlan: Option<RawVlan>,
    #[serde(default, borrow)]
    primary_mac_address: Option<RawMacRef<'a>>,
    #[serde(default, borrow)]
    mac_address: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tags: Vec<Named<'a, SlugKey>>,
}

#[derive(Deserialize)]
struct RawVlan {
    vid: u64,
}

#[derive(Deserialize)]
struct RawMacRef<'a> {
    #[serde(borrow)]
    mac_address: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawMac<'a> {
    id: u64,
    #[serde(borrow)]
    mac_address: Cow<'a, str>,
    #[serde(default)]
    assigned_object_id: Option<u64>,
    #[serde(default, borrow)]
    tags: Vec<Named<'a, SlugKey>>,
}

#[derive(Deserialize)]
struct RawIp<'a> {
    id: u64,
    #[serde(borrow)]
    address: Cow<'a, str>,
    #[serde(default, borrow)]
    vrf: Named<'a, NameKey>,
    #[serde(default, borrow)]
    status: Named<'a, ValueKey>,
    #[serde(default)]
    assigned_object_id: Option<u64>,
    #[serde(default, borrow)]
    tags: Vec<Named<'a, SlugKey>>,
}

#[derive(Deserialize)]
struct RawDisk<'a> {
    id: u64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, borrow)]
    description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tags: Vec<Named<'a, SlugKey>>,
}

#[derive(Deserialize)]
struct RawPrimary<'a> {
    #[serde(borrow)]
    address: Cow<'a, str>,
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
struct Named<'a, K>(Option<Cow<'a, str>>, PhantomData<K>);

impl<K> Default for Named<'_, K> {
    fn default() -> Self {
        Named(None, PhantomData)
    }
}

impl<'de: 'a, 'a, K: Key> Deserialize<'de> for Named<'a, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, K>(PhantomData<(&'a (), K)>);
        impl<'de: 'a, 'a, K: Key> Visitor<'de> for V<'a, K> {
            type Value = Named<'a, K>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a string or an object with `{}`", K::KEY.unwrap_or("?"))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Named(Some(Cow::Borrowed(v)), PhantomData))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Named(Some(Cow::Owned(v.to_owned())), PhantomData))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Named(Some(Cow::Owned(v)), PhantomData))
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
                        out = map.next_value::<Named<'a, StringOnly>>()?.0;
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
struct MemberName<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The plain-shape reading of the children text ([`super::json`]), straight into the
/// comparable children: no rows of their own and no second vectors (building the serde rows,
/// then the children from them, was about a third of the current children's cost per VM).
/// `None` hands the text to serde, which reads it into the rows above and [`build`]s them: the
/// same members read, the same defaults, a repeated read member or a value of another type
/// declined. The host renders the interfaces before the MACs and IPs that refer to them; a text
/// with them after is declined too (an address's interface is resolved as it is read).
mod plain {
    use std::borrow::Cow;

    use super::super::json::{Reader, Seen};
    use super::super::model::{VmChildren, VmInterface, VmIpAddress, VmMacAddress, VmVirtualDisk};
    use super::{TagList, Tags, Text, identity, ip, mac, text as field};
    use crate::children::model::MANAGED_TAG;
    use crate::model::Field;

    type R<'a, 'r> = &'r mut Reader<'a>;

    pub(super) fn children(json: &str, keep: Tags) -> Option<VmChildren<Text<'_>>> {
        let mut r = Reader::new(json);
        let mut out = VmChildren::default();
        let (mut ip4, mut ip6) = (None, None);
        let mut seen = Seen::default();
        r.object(|r, name| {
            match name {
                "interfaces" => {
                    // MACs or IPs read before: their interfaces were looked up in none.
                    if seen.has(1) || seen.has(2) {
                        return None;
                    }
                    seen.first(0)?;
                    if let Some(list) = list(r, |r| interface(r, keep))? {
                        out.interfaces = Field::Set(list);
                    }
                }
                "mac_addresses" => {
                    seen.first(1)?;
                    let ifaces = &out.interfaces;
                    if let Some(list) = list(r, |r| mac_address(r, ifaces, keep))? {
                        out.mac_addresses = Field::Set(list);
                    }
                }
                "ip_addresses" => {
                    seen.first(2)?;
                    let ifaces = &out.interfaces;
                    if let Some(list) = list(r, |r| ip_address(r, ifaces, keep))? {
                        out.ip_addresses = Field::Set(list);
                    }
                }
                "virtual_disks" => {
                    seen.first(3)?;
                    if let Some(list) = list(r, |r| disk(r, keep))? {
                        out.virtual_disks = Field::Set(list);
                    }
                }
                "primary_ip4" => {
                    seen.first(4)?;
                    ip4 = opt(r, |r| member_text(r, "address"))?;
                }
                "primary_ip6" => {
                    seen.first(5)?;
                    ip6 = opt(r, |r| member_text(r, "address"))?;
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        r.end()?;
        // Primary IPs are only comparable when the addresses were read.
        if let Field::Set(ips) = &out.ip_addresses {
            out.primary_ip4 = Field::from_option(ip4.map(|p| primary_key(ips, p)));
            out.primary_ip6 = Field::from_option(ip6.map(|p| primary_key(ips, p)));
        }
        Some(out)
    }

    /// A primary IP's key: NetBox's primary is one of the VM's addresses, whose key was just
    /// made, so the text is matched against those before it is normalized again (~300 WASM
    /// instructions an address). Only an address still borrowed is matched: that one is its
    /// own unchanged text, so the key [`ip::normalize_key_of`] would make of the same text.
    fn primary_key<'a>(ips: &[VmIpAddress<Text<'a>>], text: Text<'a>) -> Text<'a> {
        let same = ips.iter().find_map(|ip| match &ip.address {
            Cow::Borrowed(a) if *a == text => Some(*a),
            _ => None,
        });
        match same {
            Some(a) => Cow::Borrowed(a),
            None => ip::normalize_key_of(text),
        }
    }

    /// `Option<Vec<T>>`: `null` is `None`.
    fn list<'a, T>(
        r: R<'a, '_>,
        mut item: impl FnMut(R<'a, '_>) -> Option<T>,
    ) -> Option<Option<Vec<T>>> {
        if r.null()? {
            return Some(None);
        }
        let mut out = Vec::with_capacity(4);
        r.array(|r| {
            out.push(item(r)?);
            Some(())
        })?;
        Some(Some(out))
    }

    /// `Option<T>` of a member with `#[serde(default)]`: `null` is `None`.
    fn opt<'a, T>(r: R<'a, '_>, read: impl FnOnce(R<'a, '_>) -> Option<T>) -> Option<Option<T>> {
        if r.null()? {
            Some(None)
        } else {
            read(r).map(Some)
        }
    }

    fn text<'a>(r: R<'a, '_>) -> Option<Text<'a>> {
        r.str().map(Cow::Borrowed)
    }

    /// An object's required string member `key` (serde's `{address}`, `{mac_address}` rows).
    fn member_text<'a>(r: R<'a, '_>, key: &str) -> Option<Text<'a>> {
        let mut value = None;
        let mut seen = Seen::default();
        r.object(|r, member| {
            if member == key {
                seen.first(0)?;
                value = Some(text(r)?);
                Some(())
            } else {
                r.skip()
            }
        })?;
        value
    }

    /// `Named`: a string, an object's `key` string member (the last one wins; an object there
    /// reads as `None`), anything else `None`.
    fn named<'a>(r: R<'a, '_>, key: &str) -> Option<Option<Text<'a>>> {
        Some(match r.peek()? {
            b'"' => Some(text(r)?),
            b'{' => {
                let mut out = None;
                r.object(|r, name| {
                    if name == key {
                        out = if r.peek()? == b'"' {
                            Some(text(r)?)
                        } else {
                            r.skip()?;
                            None
                        };
                        Some(())
                    } else {
                        r.skip()
                    }
                })?;
                out
            }
            _ => {
                r.skip()?;
                None
            }
        })
    }

    /// `#[serde(default)] tags: Vec<Named<SlugKey>>`, the slugs only (`null` is not a list:
    /// declined). With [`Tags::Unmanaged`], a list holding the managed tag is scanned and not
    /// built; any other list is read again from its start and built.
    fn tags<'a>(r: R<'a, '_>, keep: Tags) -> Option<TagList<'a>> {
        if keep == Tags::Unmanaged {
            let start = r.clone();
            let mut managed = false;
            r.array(|r| {
                if let Some(slug) = named(r, "slug")? {
                    managed |= slug == MANAGED_TAG;
                }
                Some(())
            })?;
            if managed {
                return Some(TagList::Managed);
            }
            *r = start;
        }
        // Sized for the usual one tag (the managed one): growing from empty costs a second
        // call through the allocator.
        let mut out = Vec::with_capacity(1);
        r.array(|r| {
            if let Some(slug) = named(r, "slug")? {
                out.push(slug);
            }
            Some(())
        })?;
        Some(TagList::Slugs(out))
    }

    /// The name of the interface `id` (when read), as `super::build` finds it.
    fn interface_of<'a>(
        ifaces: &Field<Vec<VmInterface<Text<'a>>>>,
        id: Option<u64>,
    ) -> Option<Text<'a>> {
        let id = id?;
        ifaces
            .as_set()?
            .iter()
            .find(|i| i.identity.as_ref().is_some_and(|x| x.id == id))
            .map(|i| i.name.clone())
    }

    fn interface<'a>(r: R<'a, '_>, keep: Tags) -> Option<VmInterface<Text<'a>>> {
        let (mut id, mut name, mut tag_list) = (None, None, TagList::none());
        let (mut enabled, mut mtu, mut description, mut mode) = (None, None, None, None);
        let (mut vid, mut primary_mac, mut own_mac) = (None, None, None);
        let mut seen = Seen::default();
        r.object(|r, member| {
            match member {
                "id" => {
                    seen.first(0)?;
                    id = Some(r.u64()?);
                }
                "name" => {
                    seen.first(1)?;
                    name = Some(text(r)?);
                }
                "enabled" => {
                    seen.first(2)?;
                    enabled = opt(r, |r| r.bool())?;
                }
                "mtu" => {
                    seen.first(3)?;
                    mtu = opt(r, |r| r.u64())?;
                }
                "description" => {
                    seen.first(4)?;
                    description = opt(r, text)?;
                }
                "mode" => {
                    seen.first(5)?;
                    mode = named(r, "value")?;
                }
                "untagged_vlan" => {
                    seen.first(6)?;
                    vid = opt(r, vlan_vid)?;
                }
                "primary_mac_address" => {
                    seen.first(7)?;
                    primary_mac = opt(r, |r| member_text(r, "mac_address"))?;
                }
                "mac_address" => {
                    seen.first(8)?;
                    own_mac = opt(r, text)?;
                }
                "tags" => {
                    seen.first(9)?;
                    tag_list = tags(r, keep)?;
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        Some(VmInterface {
            identity: Some(identity(id?, tag_list)),
            name: name?,
            enabled: Field::Set(enabled.unwrap_or(true)),
            mtu: Field::from_option(mtu),
            description: field(description),
            mode: field(mode),
            untagged_vlan: Field::from_option(vid),
            primary_mac_address: Field::from_option(
                primary_mac
                    .or(own_mac)
                    .filter(|m| !m.is_empty())
                    .map(mac::normalize_or_keep),
            ),
        })
    }

    /// `{vid}` (required).
    fn vlan_vid(r: R<'_, '_>) -> Option<u64> {
        let mut vid = None;
        let mut seen = Seen::default();
        r.object(|r, member| {
            if member == "vid" {
                seen.first(0)?;
                vid = Some(r.u64()?);
                Some(())
            } else {
                r.skip()
            }
        })?;
        vid
    }

    fn mac_address<'a>(
        r: R<'a, '_>,
        ifaces: &Field<Vec<VmInterface<Text<'a>>>>,
        keep: Tags,
    ) -> Option<VmMacAddress<Text<'a>>> {
        let (mut id, mut address, mut assigned, mut tag_list) = (None, None, None, TagList::none());
        let mut seen = Seen::default();
        r.object(|r, member| {
            match member {
                "id" => {
                    seen.first(0)?;
                    id = Some(r.u64()?);
                }
                "mac_address" => {
                    seen.first(1)?;
                    address = Some(text(r)?);
                }
                "assigned_object_id" => {
                    seen.first(2)?;
                    assigned = opt(r, |r| r.u64())?;
                }
                "tags" => {
                    seen.first(3)?;
                    tag_list = tags(r, keep)?;
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        Some(VmMacAddress {
            identity: Some(identity(id?, tag_list)),
            mac_address: mac::normalize_or_keep(address?),
            interface: interface_of(ifaces, assigned),
        })
    }

    fn ip_address<'a>(
        r: R<'a, '_>,
        ifaces: &Field<Vec<VmInterface<Text<'a>>>>,
        keep: Tags,
    ) -> Option<VmIpAddress<Text<'a>>> {
        let (mut id, mut address, mut assigned, mut tag_list) = (None, None, None, TagList::none());
        let (mut vrf, mut status) = (None, None);
        let mut seen = Seen::default();
        r.object(|r, member| {
            match member {
                "id" => {
                    seen.first(0)?;
                    id = Some(r.u64()?);
                }
                "address" => {
                    seen.first(1)?;
                    address = Some(text(r)?);
                }
                "vrf" => {
                    seen.first(2)?;
                    vrf = named(r, "name")?;
                }
                "status" => {
                    seen.first(3)?;
                    status = named(r, "value")?;
                }
                "assigned_object_id" => {
                    seen.first(4)?;
                    assigned = opt(r, |r| r.u64())?;
                }
                "tags" => {
                    seen.first(5)?;
                    tag_list = tags(r, keep)?;
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        Some(VmIpAddress {
            identity: Some(identity(id?, tag_list)),
            address: ip::normalize_key_of(address?),
            vrf,
            status: field(status),
            interface: interface_of(ifaces, assigned),
        })
    }

    fn disk<'a>(r: R<'a, '_>, keep: Tags) -> Option<VmVirtualDisk<Text<'a>>> {
        let (mut id, mut name, mut tag_list) = (None, None, TagList::none());
        let (mut size, mut description) = (None, None);
        let mut seen = Seen::default();
        r.object(|r, member| {
            match member {
                "id" => {
                    seen.first(0)?;
                    id = Some(r.u64()?);
                }
                "name" => {
                    seen.first(1)?;
                    name = Some(text(r)?);
                }
                "size" => {
                    seen.first(2)?;
                    size = opt(r, |r| r.u64())?;
                }
                "description" => {
                    seen.first(3)?;
                    description = opt(r, text)?;
                }
                "tags" => {
                    seen.first(4)?;
                    tag_list = tags(r, keep)?;
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        Some(VmVirtualDisk {
            identity: Some(identity(id?, tag_list)),
            name: name?,
            size: Field::from_option(size),
            description: field(description),
        })
    }
}

/// Text borrowed from the children JSON (owned where it was unescaped or normalized).
type Text<'a> = Cow<'a, str>;

/// A child's identity from its id and its tags' slugs.
/// Which tag lists a read builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tags {
    /// Every child's (the current children as the host asks for them).
    All,
    /// Those of children without the managed tag only: a managed child's list is left empty,
    /// `managed` set. The diff reads the tags of an operator's child only (adopting it keeps
    /// them), and building every managed child's list (an allocation, a sort, a free) was
    /// ~3k WASM instructions per VM with ten children.
    Unmanaged,
}

/// A child's tags as read: the slugs, or only that the managed tag is among them.
enum TagList<'a> {
    Managed,
    Slugs(Vec<Text<'a>>),
}

impl TagList<'_> {
    /// No `tags` member.
    fn none() -> Self {
        TagList::Slugs(Vec::new())
    }
}

fn identity(id: u64, tags: TagList<'_>) -> ChildIdentity<Text<'_>> {
    let mut tags = match tags {
        TagList::Managed => {
            return ChildIdentity {
                id,
                managed: true,
                tags: Vec::new(),
            };
        }
        TagList::Slugs(tags) => tags,
    };
    if tags.len() > 1 {
        tags.sort();
        tags.dedup();
    }
    ChildIdentity {
        id,
        managed: tags.iter().any(|t| t == MANAGED_TAG),
        tags,
    }
}

fn text(v: Option<Text<'_>>) -> Field<Text<'_>> {
    Field::from_option(v.filter(|s| !s.is_empty()))
}

/// The current children, on text borrowed from `json`; all `keep` when they were not read.
/// Read in the plain shape when it is one, by serde otherwise (which words the error of a text
/// that is not the documented shape, and builds every tag list whatever `keep` says).
pub(crate) fn current_children(
    json: &str,
    read: bool,
    keep: Tags,
) -> Result<VmChildren<Text<'_>>, CurrentError> {
    if !read {
        return Ok(VmChildren::default());
    }
    match plain::children(json, keep) {
        Some(children) => Ok(children),
        None => Ok(build(serde_json::from_str(json)?)),
    }
}

/// Slugs of a serde-read tag list (a tag without one is left out).
fn slugs(tags: Vec<Named<'_, SlugKey>>) -> Vec<Text<'_>> {
    tags.into_iter().filter_map(|t| t.0).collect()
}

/// The comparable children of the serde-read rows.
fn build(raw: Raw<'_>) -> VmChildren<Text<'_>> {
    // A VM has a few interfaces: a search of the list beats a map (or a copy of the names).
    let interfaces = &raw.interfaces;
    let iface_of = |id: Option<u64>| {
        id.and_then(|id| {
            interfaces
                .iter()
                .flatten()
                .find(|i| i.id == id)
                .map(|i| i.name.clone())
        })
    };
    let mut out = VmChildren::default();
    if let Some(list) = raw.mac_addresses {
        out.mac_addresses = Field::Set(
            list.into_iter()
                .map(|m| VmMacAddress {
                    identity: Some(identity(m.id, TagList::Slugs(slugs(m.tags)))),
                    mac_address: mac::normalize_or_keep(m.mac_address),
                    interface: iface_of(m.assigned_object_id),
                })
                .collect(),
        );
    }
    if let Some(list) = raw.ip_addresses {
        out.ip_addresses = Field::Set(
            list.into_iter()
                .map(|a| VmIpAddress {
                    identity: Some(identity(a.id, TagList::Slugs(slugs(a.tags)))),
                    address: ip::normalize_key_of(a.address),
                    vrf: a.vrf.0,
                    status: text(a.status.0),
                    interface: iface_of(a.assigned_object_id),
                })
                .collect(),
        );
        // Primary IPs are only comparable when the addresses were read.
        out.primary_ip4 =
            Field::from_option(raw.primary_ip4.map(|p| ip::normalize_key_of(p.address)));
        out.primary_ip6 =
            Field::from_option(raw.primary_ip6.map(|p| ip::normalize_key_of(p.address)));
    }
    if let Some(list) = raw.interfaces {
        out.interfaces = Field::Set(
            list.into_iter()
                .map(|i| VmInterface {
                    identity: Some(identity(i.id, TagList::Slugs(slugs(i.tags)))),
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
                            .map(mac::normalize_or_keep),
                    ),
                })
                .collect(),
        );
    }
    if let Some(list) = raw.virtual_disks {
        out.virtual_disks = Field::Set(
            list.into_iter()
                .map(|d| VmVirtualDisk {
                    identity: Some(identity(d.id, TagList::Slugs(slugs(d.tags)))),
                    name: d.name,
                    size: Field::from_option(d.size),
                    description: text(d.description),
                })
                .collect(),
        );
    }
    out
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
        let c = current_children(SAMPLE, true, Tags::All).unwrap();
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

    /// The host's trimmed rendering of `SAMPLE` (WIT `netbox-vm.children`: no nulls or empty
    /// texts, choices as values, a VRF by name, tags as slugs, nested objects without ids).
    const TRIMMED: &str = r#"{"interfaces": [{"id": 11, "name": "net0", "enabled": true,
        "mode": "access", "untagged_vlan": {"vid": 10}, "mac_address": "bc:24:11:2a:3b:4c",
        "tags": ["pve2netbox"]}],
      "mac_addresses": [{"id": 21, "mac_address": "BC:24:11:2A:3B:4C", "assigned_object_id": 11}],
      "ip_addresses": [{"id": 31, "address": "2001:0DB8:0:0::5/64", "vrf": "blue",
        "status": "active", "assigned_object_id": 11, "tags": ["pve2netbox", "dns"]}],
      "virtual_disks": [{"id": 41, "name": "scsi0", "size": 32768, "description": "local-lvm"}],
      "primary_ip6": {"address": "2001:db8::5/64"}}"#;

    #[test]
    fn the_trimmed_text_reads_as_the_full_one() {
        assert_eq!(
            current_children(TRIMMED, true, Tags::All).unwrap(),
            current_children(SAMPLE, true, Tags::All).unwrap()
        );
        assert!(
            plain::children(TRIMMED, Tags::All).is_some(),
            "the plain reader takes it"
        );
    }

    #[test]
    fn unread_and_absent_collections_are_keep() {
        assert_eq!(
            current_children("{}", false, Tags::All).unwrap(),
            VmChildren::default()
        );
        let c = current_children(r#"{"virtual_disks": []}"#, true, Tags::All).unwrap();
        assert!(c.interfaces.is_keep() && c.ip_addresses.is_keep() && c.primary_ip4.is_keep());
        assert_eq!(c.virtual_disks, Field::Set(vec![]));
    }

    /// Every children text of the fixtures, the sample, and edge shapes: what the plain
    /// reader accepts it reads exactly as serde; the documented shapes it must accept.
    #[test]
    fn the_plain_reader_agrees_with_serde_or_declines() {
        let mut must_accept = vec![SAMPLE.to_owned(), TRIMMED.to_owned(), "{}".to_owned()];
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        for f in std::fs::read_dir(dir).unwrap() {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(f.unwrap().path()).unwrap()).unwrap();
            if let Some(c) = v.get("children") {
                must_accept.push(c.to_string());
            }
        }
        assert!(
            must_accept.len() > 20,
            "fixtures with children: {}",
            must_accept.len()
        );
        let edges = [
            r#"{"interfaces": null, "ip_addresses": [], "primary_ip4": null}"#,
            r#"{"interfaces": [{"id": 1, "name": "a", "mode": "access", "tags": ["x", {"slug": "y"}, 3, null, [1]]}]}"#,
            r#"{"interfaces": [{"id": 1, "name": "a", "mode": {"value": {"x": 1}}, "untagged_vlan": null, "enabled": false, "mtu": 9000}]}"#,
            r#"{"interfaces": [{"id": 1, "name": "a", "mode": {"value": "a", "value": "b"}, "primary_mac_address": null, "mac_address": "bc-24-11-00-00-01"}]}"#,
            r#"{"ip_addresses": [{"id": 2, "address": "10.0.0.1/24", "vrf": "blue", "status": null, "assigned_object_id": null}], "primary_ip6": {"address": "::1/128", "id": 9}}"#,
            r#"{"virtual_disks": [{"id": 3, "name": "scsi0", "size": null, "description": null, "extra": {"a": [1.5e3, -2, true]}}], "other": "x"}"#,
            // The primary IPs before the addresses; addresses on an interface not read.
            r#"{"primary_ip4": {"address": "10.0.0.1/24"}, "interfaces": [{"id": 1, "name": "a"}], "ip_addresses": [{"id": 2, "address": "10.0.0.1/24", "assigned_object_id": 7}]}"#,
            r#"{"primary_ip6": {"address": "2001:db8:0::1/64"}, "ip_addresses": null}"#,
            r#"{"mac_addresses": [{"id": 2, "mac_address": "bc:24:11:00:00:01", "assigned_object_id": 1}]}"#,
            // The primary IPs matched against the addresses: one of them as written, one
            // normalized (its address copied), one not among them, one trimmed.
            r#"{"ip_addresses": [{"id": 2, "address": "10.0.0.1/24"}, {"id": 3, "address": "2001:db8:0::1/64"}], "primary_ip4": {"address": "10.0.0.1/24"}, "primary_ip6": {"address": "2001:db8:0::1/64"}}"#,
            r#"{"ip_addresses": [{"id": 2, "address": "2001:db8::1/64", "vrf": "blue"}], "primary_ip4": {"address": " 10.0.0.9/24"}, "primary_ip6": {"address": "2001:DB8::1/64"}}"#,
            r#"{"ip_addresses": [{"id": 2, "address": " x "}], "primary_ip4": {"address": " x "}, "primary_ip6": {"address": "2001:db8::1/64"}}"#,
            // Tag lists with the managed tag among others, or not at all.
            r#"{"virtual_disks": [{"id": 3, "name": "d", "tags": [{"slug": "dns"}, 5, "pve2netbox", {"name": "x"}]}, {"id": 4, "name": "e", "tags": ["dns", {"slug": "ops"}, "dns"]}, {"id": 5, "name": "f", "tags": [{"slug": "pve2netbox"}, {"slug": "pve2netbox"}]}]}"#,
        ];
        for t in edges {
            must_accept.push(t.to_owned());
        }
        for t in &must_accept {
            let plain = plain::children(t, Tags::All);
            let serde = serde_json::from_str::<Raw<'_>>(t).map(build).unwrap();
            assert_eq!(plain.as_ref(), Some(&serde), "{t}");
            // The diff's read: the same, but a managed child's tag list left empty.
            let mut unmanaged = serde;
            clear_managed_tags(&mut unmanaged);
            assert_eq!(plain::children(t, Tags::Unmanaged), Some(unmanaged), "{t}");
        }
        // Declined (serde decides: some are errors, some it reads).
        for t in [
            r#"{"interfaces": [{"id": 1, "id": 2, "name": "a"}]}"#,
            r#"{"interfaces": [{"id": 1, "name": "a\u0062"}]}"#,
            r#"{"interfaces": [{"id": 1.0, "name": "a"}]}"#,
            r#"{"interfaces": [{"id": 1, "name": "a", "tags": null}]}"#,
            r#"{"interfaces": [{"name": "a"}]}"#,
            r#"{"virtual_disks": [{"id": 3, "name": "d", "size": -1}]}"#,
            r#"{"interfaces": [], "interfaces": []}"#,
            r#"{"interfaces": []} x"#,
            "[]",
            // The interfaces after the MACs or IPs that refer to them.
            r#"{"mac_addresses": [{"id": 2, "mac_address": "BC:24:11:00:00:01", "assigned_object_id": 1}], "interfaces": [{"id": 1, "name": "a"}]}"#,
            r#"{"ip_addresses": [], "interfaces": []}"#,
        ] {
            assert!(plain::children(t, Tags::All).is_none(), "{t}");
            assert!(plain::children(t, Tags::Unmanaged).is_none(), "{t}");
            let _ = current_children(t, true, Tags::All);
        }
        assert_eq!(
            current_children(
                r#"{"interfaces": [{"id": 1, "name": "a\u0062"}]}"#,
                true,
                Tags::All
            )
            .unwrap()
            .interfaces,
            Field::Set(vec![VmInterface {
                identity: Some(ChildIdentity {
                    id: 1,
                    managed: false,
                    tags: vec![]
                }),
                name: "ab".into(),
                enabled: Field::Set(true),
                mtu: Field::Clear,
                description: Field::Clear,
                mode: Field::Clear,
                untagged_vlan: Field::Clear,
                primary_mac_address: Field::Clear,
            }])
        );
    }

    /// Empties the tag list of every managed child, as [`Tags::Unmanaged`] reads it.
    fn clear_managed_tags(c: &mut VmChildren<Text<'_>>) {
        fn clear(identity: &mut Option<ChildIdentity<Text<'_>>>) {
            if let Some(i) = identity.as_mut().filter(|i| i.managed) {
                i.tags.clear();
            }
        }
        if let Field::Set(v) = &mut c.interfaces {
            v.iter_mut().for_each(|x| clear(&mut x.identity));
        }
        if let Field::Set(v) = &mut c.mac_addresses {
            v.iter_mut().for_each(|x| clear(&mut x.identity));
        }
        if let Field::Set(v) = &mut c.ip_addresses {
            v.iter_mut().for_each(|x| clear(&mut x.identity));
        }
        if let Field::Set(v) = &mut c.virtual_disks {
            v.iter_mut().for_each(|x| clear(&mut x.identity));
        }
    }

    #[test]
    fn interfaces_after_their_addresses_are_still_found() {
        let c = current_children(
            r#"{"ip_addresses": [{"id": 2, "address": "10.0.0.1/24", "assigned_object_id": 1}],
                "interfaces": [{"id": 1, "name": "net0"}]}"#,
            true,
            Tags::All,
        )
        .unwrap();
        let Field::Set(ips) = &c.ip_addresses else {
            panic!()
        };
        assert_eq!(ips[0].interface.as_deref(), Some("net0"));
    }

    #[test]
    fn bad_text_is_an_error() {
        assert!(current_children("[]", true, Tags::All).is_err());
        assert!(current_children(r#"{"interfaces":[{"name":"x"}]}"#, true, Tags::All).is_err());
    }
}
