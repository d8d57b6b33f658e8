//! A guest's configured NICs: QEMU and LXC `netN` and QEMU cloud-init `ipconfigN` (reference
//! A.4 rules 4 and 11).
//!
//! QEMU `netN`: `virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1,tag=10` (a model used as key
//! carries the MAC; `model=…,macaddr=…` is valid too), plus `trunks`, `link_down`, `mtu`.
//! LXC `netN`: `name=eth0,bridge=…,hwaddr=…,ip=…,ip6=…,gw=…,type=veth`. `ipconfigN`:
//! `ip=…,gw=…,ip6=…,gw6=…`. An address setting is `dhcp`, `auto` (IPv6 SLAAC), `manual` or a
//! CIDR.

use std::borrow::Cow;

use thiserror::Error;

use super::ip::{Cidr, IpError};
use super::mac;
use super::text;
use crate::model::GuestKind;
use crate::property::{PropertyString, parse_bool};

/// The QEMU NIC models (keyAlias: `virtio=MAC`).
const QEMU_MODELS: [&str; 14] = [
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];

/// A NIC setting that could not be read; fails the VM (code `bad-config`), as a bad disk size
/// does: Proxmox never prints one, so it is a real problem worth seeing.
#[derive(Debug, Error, PartialEq)]
pub(crate) enum NicError {
    #[error("{key}: {what} {value:?} is not valid")]
    Value {
        key: String,
        what: &'static str,
        value: String,
    },
    #[error("{key}: {source}")]
    Address {
        key: String,
        #[source]
        source: IpError,
    },
}

/// How a NIC gets an address of one family.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum AddrMode {
    /// Not configured.
    #[default]
    None,
    /// `dhcp`.
    Dhcp,
    /// `auto` (IPv6 SLAAC).
    Auto,
    /// `manual`: configured inside the guest.
    Manual,
    /// A static address.
    Static(Cidr),
}

impl AddrMode {
    /// True when only the guest knows the address (`dhcp`, `auto`, `manual`).
    pub(crate) fn is_dynamic(&self) -> bool {
        matches!(self, AddrMode::Dhcp | AddrMode::Auto | AddrMode::Manual)
    }
}

/// One configured NIC, its texts borrowed from the config (only what a child keeps is copied).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Nic<'a> {
    /// The config key (`net0`); the interface's default name.
    pub(crate) key: &'a str,
    /// The index N of `netN` (orders NICs numerically: `net2` before `net10`).
    pub(crate) index: u32,
    /// QEMU model or `veth` (LXC `type`).
    pub(crate) model: &'a str,
    /// Normalized MAC, when set: borrowed from the config when it is already normal (Proxmox
    /// prints it so).
    pub(crate) mac: Option<Cow<'a, str>>,
    /// The MAC's octets, for matching the guest's own view of its NICs without text.
    pub(crate) mac_octets: Option<[u8; 6]>,
    pub(crate) bridge: Option<&'a str>,
    /// `tag=`, the access VLAN.
    pub(crate) tag: Option<u16>,
    /// True when `trunks=` is set.
    pub(crate) trunks: bool,
    pub(crate) firewall: bool,
    pub(crate) link_down: bool,
    /// `mtu=`; QEMU's `mtu=1` (use the bridge's) is `None` with `mtu_inherit` set.
    pub(crate) mtu: Option<u64>,
    pub(crate) mtu_inherit: bool,
    /// LXC: the name inside the container.
    pub(crate) guest_name: Option<&'a str>,
    /// LXC `ip`/`ip6`, or QEMU `ipconfigN` merged in by [`apply_ipconfig`].
    pub(crate) ip4: AddrMode,
    pub(crate) ip6: AddrMode,
}

/// The index of a `netN` key (`net0`..`net31`), if it is one.
pub(crate) fn net_index(key: &str) -> Option<u32> {
    index_of(key, "net")
}

/// The index of an `ipconfigN` key.
pub(crate) fn ipconfig_index(key: &str) -> Option<u32> {
    index_of(key, "ipconfig")
}

fn index_of(key: &str, prefix: &str) -> Option<u32> {
    // On the bytes: `strip_prefix` calls `memcmp`, a function call per key through WASM.
    let (k, p) = (key.as_bytes(), prefix.as_bytes());
    if k.len() < p.len() || k.iter().zip(p).any(|(a, b)| a != b) {
        return None;
    }
    // The digits read in the same pass that checks them (`str::parse` read them again: a
    // second loop, each paying an interruption check through WASM); what `u32` cannot hold
    // is none, as `parse` has it.
    let n = &k[p.len()..];
    if n.is_empty() || (n.len() > 1 && n[0] == b'0') {
        return None;
    }
    let mut index: u32 = 0;
    for &b in n {
        if !b.is_ascii_digit() {
            return None;
        }
        index = index.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(index)
}

/// Parses one `netN` value.
pub(crate) fn parse_net<'a>(
    kind: GuestKind,
    key: &'a str,
    value: &'a str,
) -> Result<Nic<'a>, NicError> {
    let index = net_index(key).unwrap_or(0);
    let bad = |what: &'static str, v: &str| NicError::Value {
        key: key.to_owned(),
        what,
        value: v.to_owned(),
    };
    let mut nic = Nic {
        key,
        index,
        ..Nic::default()
    };
    let default_key = match kind {
        GuestKind::Qemu => "model",
        GuestKind::Lxc => "name",
    };
    for part in text::split(value, b',') {
        let part = text::trim(part);
        if part.is_empty() {
            continue;
        }
        let (k, v) = match text::split_once(part, b'=') {
            Some((k, v)) => (text::trim(k), text::trim(v)),
            None => (default_key, part),
        };
        match (kind, k) {
            (GuestKind::Qemu, m) if QEMU_MODELS.contains(&m) => {
                nic.model = m;
                set_mac(&mut nic, v).ok_or_else(|| bad("MAC address", v))?;
            }
            (GuestKind::Qemu, "model") => nic.model = v,
            (GuestKind::Qemu, "macaddr") | (GuestKind::Lxc, "hwaddr") => {
                set_mac(&mut nic, v).ok_or_else(|| bad("MAC address", v))?;
            }
            (GuestKind::Lxc, "name") => nic.guest_name = Some(v),
            (GuestKind::Lxc, "type") => nic.model = v,
            (GuestKind::Lxc, "ip") => nic.ip4 = addr_mode(key, v, false)?,
            (GuestKind::Lxc, "ip6") => nic.ip6 = addr_mode(key, v, true)?,
            (_, "bridge") => nic.bridge = Some(v),
            (_, "tag") => {
                let tag: u16 = v.parse().map_err(|_| bad("VLAN tag", v))?;
                if !(1..=4094).contains(&tag) {
                    return Err(bad("VLAN tag", v));
                }
                nic.tag = Some(tag);
            }
            (_, "trunks") => nic.trunks = !v.is_empty(),
            (_, "firewall") => nic.firewall = parse_bool(v).ok_or_else(|| bad("firewall", v))?,
            (_, "link_down") => nic.link_down = parse_bool(v).ok_or_else(|| bad("link_down", v))?,
            (_, "mtu") => {
                let mtu: u64 = v.parse().map_err(|_| bad("MTU", v))?;
                if kind == GuestKind::Qemu && mtu == 1 {
                    nic.mtu_inherit = true;
                } else {
                    nic.mtu = Some(mtu);
                }
            }
            _ => {}
        }
    }
    if kind == GuestKind::Lxc && nic.model.is_empty() {
        nic.model = "veth";
    }
    Ok(nic)
}

/// Sets the NIC's MAC and its octets from `v`; `None` when `v` is not a MAC.
fn set_mac<'a>(nic: &mut Nic<'a>, v: &'a str) -> Option<()> {
    let m = mac::normalize_cow(v)?;
    nic.mac_octets = mac::octets(&m);
    nic.mac = Some(m);
    Some(())
}

/// Reads one address setting (`ip=` / `ip6=`).
fn addr_mode(key: &str, v: &str, v6: bool) -> Result<AddrMode, NicError> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "dhcp" => AddrMode::Dhcp,
        "auto" if v6 => AddrMode::Auto,
        "manual" => AddrMode::Manual,
        _ => {
            let c = Cidr::parse(v).map_err(|source| NicError::Address {
                key: key.to_owned(),
                source,
            })?;
            if c.addr.is_ipv6() != v6 {
                return Err(NicError::Value {
                    key: key.to_owned(),
                    what: if v6 { "IPv6 address" } else { "IPv4 address" },
                    value: v.to_owned(),
                });
            }
            AddrMode::Static(c)
        }
    })
}

/// Merges QEMU cloud-init `ipconfigN` (`ip=…,ip6=…`) into the NIC of the same index.
pub(crate) fn apply_ipconfig(nic: &mut Nic<'_>, key: &str, value: &str) -> Result<(), NicError> {
    let p = PropertyString::parse(value, "ip");
    let (ip4, ip6) = p.get2("ip", "ip6");
    if let Some(v) = ip4 {
        nic.ip4 = addr_mode(key, v, false)?;
    }
    if let Some(v) = ip6 {
        nic.ip6 = addr_mode(key, v, true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_model_alias_carries_the_mac() {
        let n = parse_net(
            GuestKind::Qemu,
            "net0",
            "virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1,tag=10",
        )
        .unwrap();
        assert_eq!(n.model, "virtio");
        assert_eq!(n.mac.as_deref(), Some("BC:24:11:2A:3B:4C"));
        assert_eq!(n.bridge, Some("vmbr0"));
        assert_eq!(n.tag, Some(10));
        assert!(n.firewall && !n.link_down && !n.trunks);
    }

    #[test]
    fn qemu_explicit_model_and_options() {
        let n = parse_net(
            GuestKind::Qemu,
            "net12",
            "model=e1000,macaddr=bc:24:11:00:00:01,bridge=vmbr1,link_down=1,mtu=9000,trunks=10;20-30",
        )
        .unwrap();
        assert_eq!(n.index, 12);
        assert_eq!(n.model, "e1000");
        assert_eq!(n.mac.as_deref(), Some("BC:24:11:00:00:01"));
        assert!(n.link_down && n.trunks);
        assert_eq!(n.mtu, Some(9000));
        let inherit = parse_net(GuestKind::Qemu, "net1", "virtio=BC:24:11:00:00:02,mtu=1").unwrap();
        assert!(inherit.mtu_inherit);
        assert_eq!(inherit.mtu, None);
    }

    #[test]
    fn lxc_net_reads_name_and_addresses() {
        let n = parse_net(
            GuestKind::Lxc,
            "net0",
            "name=eth0,bridge=vmbr0,firewall=1,gw=10.0.0.1,hwaddr=BC:24:11:5D:6E:7F,ip=10.0.0.5/24,type=veth",
        )
        .unwrap();
        assert_eq!(n.guest_name, Some("eth0"));
        assert_eq!(n.model, "veth");
        assert_eq!(n.ip4, AddrMode::Static(Cidr::parse("10.0.0.5/24").unwrap()));
        assert_eq!(n.ip6, AddrMode::None);
        let d = parse_net(
            GuestKind::Lxc,
            "net1",
            "name=eth1,bridge=vmbr1,hwaddr=BC:24:11:00:00:02,ip=dhcp,ip6=auto,type=veth",
        )
        .unwrap();
        assert_eq!((d.ip4, d.ip6), (AddrMode::Dhcp, AddrMode::Auto));
    }

    #[test]
    fn ipconfig_merges_into_the_nic() {
        let mut n = parse_net(GuestKind::Qemu, "net0", "virtio=BC:24:11:2A:3B:4C").unwrap();
        apply_ipconfig(
            &mut n,
            "ipconfig0",
            "ip=10.0.0.5/24,gw=10.0.0.1,ip6=2001:db8::5/64",
        )
        .unwrap();
        assert_eq!(n.ip4, AddrMode::Static(Cidr::parse("10.0.0.5/24").unwrap()));
        assert_eq!(
            n.ip6,
            AddrMode::Static(Cidr::parse("2001:db8::5/64").unwrap())
        );
        apply_ipconfig(&mut n, "ipconfig0", "ip=dhcp,ip6=auto").unwrap();
        assert_eq!(
            (n.ip4.clone(), n.ip6.clone()),
            (AddrMode::Dhcp, AddrMode::Auto)
        );
        assert!(n.ip4.is_dynamic());
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse_net(GuestKind::Qemu, "net3", "virtio=BC:24:11,bridge=vmbr0").unwrap_err();
        assert!(e.to_string().contains("net3"), "{e}");
        assert!(parse_net(GuestKind::Qemu, "net0", "virtio=BC:24:11:2A:3B:4C,tag=5000").is_err());
        assert!(parse_net(GuestKind::Qemu, "net0", "virtio=BC:24:11:2A:3B:4C,tag=x").is_err());
        let mut n = Nic::default();
        assert!(apply_ipconfig(&mut n, "ipconfig0", "ip=2001:db8::1/64").is_err());
        assert!(apply_ipconfig(&mut n, "ipconfig0", "ip=10.0.0.5").is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(net_index("net0"), Some(0));
        assert_eq!(net_index("net31"), Some(31));
        assert_eq!(net_index("net"), None);
        assert_eq!(net_index("net01"), None);
        assert_eq!(net_index("netx"), None);
        assert_eq!(ipconfig_index("ipconfig2"), Some(2));
        // As the digits' `str::parse` read them (the first reading), to the edge of `u32`.
        for n in [
            "0",
            "7",
            "10",
            "31",
            "4294967295",
            "4294967296",
            "99999999999",
            "+1",
            "-1",
        ] {
            let key = format!("net{n}");
            let refused = n.starts_with(['+', '-']) || (n.len() > 1 && n.starts_with('0'));
            let by_parse = (!refused).then(|| n.parse::<u32>().ok()).flatten();
            assert_eq!(net_index(&key), by_parse, "{key}");
        }
        assert_eq!(net_index("net4294967295"), Some(u32::MAX));
        assert_eq!(net_index("net4294967296"), None);
    }
}
