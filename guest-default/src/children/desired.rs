//! A guest's desired children: interfaces and MACs from `netN`, IP addresses from the guest's
//! runtime view (or its static configuration), virtual disks from its disks, primary IPs.
//!
//! Unknown is never absent: a config that was not read keeps everything; IPs are `keep` unless
//! a source knows them all (see [`ip_addresses`]).
//!
//! The children's texts are borrowed from what they come from (config keys and values, the
//! runtime answer's names, the settings' VRF) wherever a child keeps one as it is; only texts
//! built or normalized here (descriptions, address keys, a MAC not in normal form) are copied.

use std::borrow::Cow;
use std::net::IpAddr;

use thiserror::Error;

use super::ip::Cidr;
use super::model::{
    NetworkSource, UnknownReason, VmChildren, VmInterface, VmIpAddress, VmMacAddress, VmVirtualDisk,
};
use super::nic::{self, AddrMode, Nic, NicError};
use super::runtime::{self, RuntimeNic};
use super::settings::{ChildSettings, InterfaceNames};
use super::vdisk::{self, ConfigDisks};
use crate::config::is_disk_key;
use crate::disks::DiskError;
use crate::model::{Field, GuestKind};

/// Why a guest's children could not be computed; fails that VM.
#[derive(Debug, Error)]
pub(crate) enum DesiredError {
    #[error(transparent)]
    Nic(#[from] NicError),
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// What the children are computed from.
pub(crate) struct Sources<'a> {
    pub(crate) kind: GuestKind,
    pub(crate) config_read: bool,
    /// The raw config properties, in Proxmox's order.
    pub(crate) config: &'a [(&'a str, &'a str)],
    pub(crate) network: &'a NetworkSource,
    /// The config's disks when the caller read them for the VM's own `disk` too: the disk
    /// keys are then neither looked for nor read again (`None`: read here).
    pub(crate) disks: Option<&'a ConfigDisks<'a>>,
}

/// A text of the desired children (see the module documentation).
type Text<'a> = Cow<'a, str>;

/// One configured NIC with the interface name it gets.
struct Named<'a> {
    nic: Nic<'a>,
    name: Text<'a>,
}

/// What the config says: its NICs (numeric order, `ipconfigN` applied) and, with
/// `disks_wanted`, its disk keys with their values (config order). Every error the desired
/// children can have comes from here or from the disks' sizes.
#[allow(clippy::type_complexity)]
fn configured<'a>(
    src: &Sources<'a>,
    disks_wanted: bool,
) -> Result<(Vec<Nic<'a>>, Vec<(&'a str, &'a str)>), DesiredError> {
    let mut nics: Vec<Nic<'a>> = Vec::new();
    let mut disks: Vec<(&str, &str)> = Vec::new();
    // One pass over the keys (a guest has a few dozen), each told by its first byte before
    // any prefix is compared: the `ipconfigN` keys are kept aside and applied after every
    // NIC is read, in config order, so the errors are the same as two passes'.
    let qemu = src.kind == GuestKind::Qemu;
    let mut ipconfigs: Vec<(u32, &str, &str)> = Vec::new();
    for (k, v) in src.config {
        let first = k.as_bytes().first();
        if first == Some(&b'n') && nic::net_index(k).is_some() {
            nics.push(nic::parse_net(src.kind, k, v)?);
        } else if qemu
            && first == Some(&b'i')
            && let Some(i) = nic::ipconfig_index(k)
        {
            ipconfigs.push((i, k, v));
        } else if disks_wanted && is_disk_key(src.kind, k) {
            disks.push((k, v));
        }
    }
    nics.sort_by_key(|n| n.index);
    for (i, k, v) in ipconfigs {
        if let Some(n) = nics.iter_mut().find(|n| n.index == i) {
            nic::apply_ipconfig(n, k, v)?;
        }
    }
    Ok((nics, disks))
}

/// The error [`desired_children`] would return for a guest whose VM step succeeds, without
/// building the children.
pub(crate) fn check_desired_children(src: &Sources<'_>) -> Result<(), DesiredError> {
    if !src.config_read {
        return Ok(());
    }
    // The disks' sizes are not checked again: the VM's own `disk` reads the same disk keys
    // with the same rules (`crate::disks::total_mib`) and fails first with `bad-disk-size`, in
    // `reconcile` as in the three steps.
    configured(src, false)?;
    Ok(())
}

/// The desired children of one guest.
pub(crate) fn desired_children<'a>(
    src: &Sources<'a>,
    set: &'a ChildSettings,
) -> Result<VmChildren<Text<'a>>, DesiredError> {
    if !src.config_read {
        return Ok(VmChildren::default());
    }
    let (nics, disks) = configured(src, src.disks.is_none())?;
    // The agent and the container's `ip` are guest software: an answer that is not the
    // documented shape counts as no answer (its children `keep`), so a guest cannot fail its
    // own VM's sync, nor make the sync delete what it reported before.
    let runtime = match src.network {
        NetworkSource::Agent(j) => runtime::parse_agent(j.as_str()).ok(),
        NetworkSource::LxcInterfaces(j) => runtime::parse_lxc(j.as_str()).ok(),
        NetworkSource::Unknown(_) => None,
    };
    // After the NICs, as when the disks are read here: a NIC's error is reported first.
    let read_here;
    let config_disks = match src.disks {
        Some(shared) => shared.as_ref().map_err(|e| DesiredError::Disk(e.clone()))?,
        None => {
            read_here = vdisk::config_disks(&disks)?;
            &read_here
        }
    };
    let mut out = VmChildren {
        virtual_disks: Field::Set(
            config_disks
                .iter()
                .map(|d| VmVirtualDisk {
                    identity: None,
                    name: Cow::Borrowed(d.name),
                    size: Field::Set(d.size_mib),
                    description: Field::Set(Cow::Borrowed(d.storage)),
                })
                .collect(),
        ),
        ..VmChildren::default()
    };
    // With agent names, a QEMU guest without an answer cannot name its interfaces.
    let Some(named) = name_nics(src.kind, nics, runtime.as_deref(), set.interface_names) else {
        return Ok(out);
    };
    out.interfaces = Field::Set(named.iter().map(interface).collect());
    if set.mac_objects {
        out.mac_addresses = Field::Set(
            named
                .iter()
                .filter_map(|n| {
                    n.nic.mac.as_ref().map(|m| VmMacAddress {
                        identity: None,
                        mac_address: m.clone(),
                        interface: Some(n.name.clone()),
                    })
                })
                .collect(),
        );
    }
    out.ip_addresses = ip_addresses(src, &named, runtime.as_deref(), set);
    if let Field::Set(ips) = &out.ip_addresses {
        let first = |v4: bool| {
            Field::from_option(
                ips.iter()
                    // A byte loop: `str::contains` goes through the standard library's
                    // searcher, a call per address through WASM.
                    .find(|ip| ip.address.bytes().any(|b| b == b'.') == v4)
                    .map(|ip| ip.address.clone()),
            )
        };
        out.primary_ip4 = first(true);
        out.primary_ip6 = first(false);
    }
    Ok(out)
}

/// Gives every NIC its interface name; `None` when agent names are wanted and unknown.
fn name_nics<'a>(
    kind: GuestKind,
    nics: Vec<Nic<'a>>,
    runtime: Option<&[RuntimeNic<'a>]>,
    names: InterfaceNames,
) -> Option<Vec<Named<'a>>> {
    if names == InterfaceNames::Agent && kind == GuestKind::Qemu && runtime.is_none() {
        return None;
    }
    Some(
        nics.into_iter()
            .map(|nic| {
                let name = match (names, kind) {
                    (InterfaceNames::Config, _) => None,
                    (InterfaceNames::Agent, GuestKind::Lxc) => nic.guest_name.map(Cow::Borrowed),
                    // The first guest interface with the NIC's MAC: the physical one comes
                    // before a bond or bridge on top of it in the agent's (kernel) order. A NIC
                    // the guest has not brought up keeps its device key.
                    (InterfaceNames::Agent, GuestKind::Qemu) => runtime
                        .unwrap_or_default()
                        .iter()
                        .find(|r| r.mac.is_some() && r.mac == nic.mac_octets)
                        .map(|r| r.name.clone()),
                };
                let name = name.unwrap_or(Cow::Borrowed(nic.key));
                Named { nic, name }
            })
            .collect(),
    )
}

/// The interface of one NIC.
fn interface<'a>(n: &Named<'a>) -> VmInterface<Text<'a>> {
    let nic = &n.nic;
    // Sized once: `model`, " on " and the bridge, ", firewall".
    let bridge_len = nic.bridge.as_ref().map_or(0, |b| 4 + b.len());
    let mut description = String::with_capacity(nic.model.len() + bridge_len + 10);
    description.push_str(nic.model);
    if let Some(b) = &nic.bridge {
        description.push_str(" on ");
        description.push_str(b);
    }
    if nic.firewall {
        description.push_str(", firewall");
    }
    let (mode, vlan) = match (nic.tag, nic.trunks) {
        (Some(tag), false) => (Field::Set("access".into()), Field::Set(u64::from(tag))),
        (tag, true) => (
            Field::Set("tagged".into()),
            Field::from_option(tag.map(u64::from)),
        ),
        (None, false) => (Field::Clear, Field::Clear),
    };
    VmInterface {
        identity: None,
        name: n.name.clone(),
        enabled: Field::Set(!nic.link_down),
        mtu: if nic.mtu_inherit {
            Field::Keep
        } else {
            Field::from_option(nic.mtu)
        },
        description: Field::Set(Cow::Owned(description)),
        mode,
        untagged_vlan: vlan,
        // Below NetBox 4.2 this is the interface's own `mac_address` field; the diff names it.
        // A NIC without a MAC (an LXC NIC before its first start) does not know it yet.
        primary_mac_address: nic.mac.clone().map_or(Field::Keep, Field::Set),
    }
}

/// The IP addresses, or `keep` when no source knows them all.
///
/// - A runtime view (agent, LXC interfaces): its addresses, each on the configured NIC with
///   the same MAC (LXC: the same name first). Addresses on guest interfaces that are not a
///   Proxmox NIC (tunnels, `docker0`, no MAC) are left out; a bond or bridge inside the guest
///   carries its NIC's MAC, so its addresses land on that NIC.
/// - No runtime view: the config's static addresses (LXC `ip=`/`ip6=`, QEMU cloud-init
///   `ipconfigN`), only when every NIC's addresses are static or unset and at least one is
///   static; and for QEMU only when the agent is off (an agent that is on but silent will
///   answer again, and its addresses must not flap).
fn ip_addresses<'a>(
    src: &Sources<'_>,
    named: &[Named<'a>],
    runtime: Option<&[RuntimeNic]>,
    set: &'a ChildSettings,
) -> Field<Vec<VmIpAddress<Text<'a>>>> {
    let mut out: Vec<VmIpAddress<Text<'a>>> = Vec::new();
    let mut push = |cidr: Cidr, n: &Named<'a>, status: &'static str| {
        if super::ip::is_left_out(cidr.addr) || set.excludes(&cidr) {
            return;
        }
        let ip = VmIpAddress {
            identity: None,
            address: Cow::Owned(cidr.key()),
            vrf: set.vrf.as_deref().map(Cow::Borrowed),
            status: Field::Set(Cow::Borrowed(status)),
            interface: Some(n.name.clone()),
        };
        // The same key (address and VRF) once, without writing the keys out.
        if !out
            .iter()
            .any(|o| o.address == ip.address && o.vrf == ip.vrf)
        {
            out.push(ip);
        }
    };
    match runtime {
        Some(rt) => {
            for n in named {
                let found = rt.iter().filter(|r| {
                    (src.kind == GuestKind::Lxc && n.nic.guest_name == Some(r.name.as_ref()))
                        || (r.mac.is_some() && r.mac == n.nic.mac_octets)
                });
                for r in found {
                    for c in &r.addrs {
                        push(*c, n, runtime_status(&n.nic, c.addr, n.nic.mac_octets));
                    }
                }
            }
            Field::Set(out)
        }
        None => {
            let agent_off = matches!(
                src.network,
                NetworkSource::Unknown(u) if u.reason == UnknownReason::AgentOff
            );
            if src.kind == GuestKind::Qemu && !agent_off {
                return Field::Keep;
            }
            let modes = || named.iter().flat_map(|n| [&n.nic.ip4, &n.nic.ip6]);
            if modes().any(AddrMode::is_dynamic)
                || !modes().any(|m| matches!(m, AddrMode::Static(_)))
            {
                return Field::Keep;
            }
            for n in named {
                for m in [&n.nic.ip4, &n.nic.ip6] {
                    if let AddrMode::Static(c) = m {
                        push(*c, n, "active");
                    }
                }
            }
            Field::Set(out)
        }
    }
}

/// NetBox's status for an address the guest reports: `dhcp` or `slaac` when the NIC's
/// configuration says so (or the IPv6 interface identifier is the MAC's EUI-64), else `active`.
fn runtime_status(nic: &Nic, addr: IpAddr, mac: Option<[u8; 6]>) -> &'static str {
    let mode = if addr.is_ipv4() { &nic.ip4 } else { &nic.ip6 };
    match mode {
        AddrMode::Dhcp => "dhcp",
        AddrMode::Auto => "slaac",
        _ if mac.is_some_and(|m| super::ip::is_eui64_of(addr, m)) => "slaac",
        _ => "active",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::model::NetworkUnknown;
    use crate::model::{Context, JsonText};

    fn settings(names: InterfaceNames) -> ChildSettings {
        let mut s = ChildSettings::new(&Context::default()).unwrap();
        s.interface_names = names;
        s
    }

    fn run(
        kind: GuestKind,
        config: &[(&str, &str)],
        network: NetworkSource,
        names: InterfaceNames,
    ) -> VmChildren {
        let src = Sources {
            kind,
            config_read: true,
            config,
            network: &network,
            disks: None,
        };
        desired_children(&src, &settings(names))
            .unwrap()
            .into_owned()
    }

    fn agent(json: &str) -> NetworkSource {
        NetworkSource::Agent(JsonText(json.to_owned()))
    }

    fn unknown(reason: UnknownReason) -> NetworkSource {
        NetworkSource::Unknown(NetworkUnknown {
            reason,
            detail: String::new(),
        })
    }

    const TWO_NICS: [(&str, &str); 2] = [
        ("net1", "e1000=BC:24:11:00:00:01,bridge=vmbr1"),
        ("net0", "virtio=BC:24:11:2A:3B:4C,bridge=vmbr0"),
    ];

    fn names(c: &VmChildren) -> Vec<String> {
        c.interfaces
            .as_set()
            .map(|l| l.iter().map(|i| i.name.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn nics_are_in_numeric_order_and_keep_their_key_without_an_agent_name() {
        let answer = r#"[{"name":"ens18","hardware-address":"bc:24:11:2a:3b:4c"}]"#;
        let c = run(
            GuestKind::Qemu,
            &TWO_NICS,
            agent(answer),
            InterfaceNames::Agent,
        );
        // net1's NIC is not up in the guest: it keeps its device key.
        assert_eq!(names(&c), ["ens18", "net1"]);
    }

    #[test]
    fn agent_names_without_an_answer_keep_the_network() {
        let c = run(
            GuestKind::Qemu,
            &TWO_NICS,
            unknown(UnknownReason::AgentNotRunning),
            InterfaceNames::Agent,
        );
        assert!(c.interfaces.is_keep() && c.mac_addresses.is_keep() && c.ip_addresses.is_keep());
        assert!(
            c.virtual_disks.as_set().is_some(),
            "disks do not depend on names"
        );
    }

    #[test]
    fn an_address_on_two_nics_is_planned_once() {
        let answer = r#"[{"name":"eth0","hardware-address":"bc:24:11:2a:3b:4c","ip-addresses":[{"ip-address":"10.0.0.5","prefix":24}]},
            {"name":"eth1","hardware-address":"bc:24:11:00:00:01","ip-addresses":[{"ip-address":"10.0.0.5","prefix":24}]}]"#;
        let c = run(
            GuestKind::Qemu,
            &TWO_NICS,
            agent(answer),
            InterfaceNames::Config,
        );
        let ips = c.ip_addresses.as_set().unwrap();
        assert_eq!(ips.len(), 1);
        assert_eq!(ips[0].interface.as_deref(), Some("net0"));
        assert_eq!(c.primary_ip4, Field::Set("10.0.0.5/24".into()));
        assert_eq!(c.primary_ip6, Field::Clear);
    }

    #[test]
    fn lxc_matches_by_name_when_the_old_endpoint_has_no_mac() {
        let cfg = [(
            "net0",
            "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5D:6E:7F,ip=dhcp",
        )];
        let answer = r#"[{"name":"eth0","inet":"10.0.0.9/24"}]"#;
        let c = run(
            GuestKind::Lxc,
            &cfg,
            NetworkSource::LxcInterfaces(JsonText(answer.into())),
            InterfaceNames::Config,
        );
        let ips = c.ip_addresses.as_set().unwrap();
        assert_eq!(
            (
                ips[0].address.as_str(),
                ips[0].status.as_set().map(String::as_str)
            ),
            ("10.0.0.9/24", Some("dhcp"))
        );
    }

    #[test]
    fn qemu_static_config_is_used_only_when_the_agent_is_off() {
        let cfg = [
            ("net0", "virtio=BC:24:11:2A:3B:4C,bridge=vmbr0"),
            ("ipconfig0", "ip=10.0.0.5/24,gw=10.0.0.1"),
        ];
        let off = run(
            GuestKind::Qemu,
            &cfg,
            unknown(UnknownReason::AgentOff),
            InterfaceNames::Config,
        );
        assert_eq!(off.ip_addresses.as_set().map(Vec::len), Some(1));
        for reason in [
            UnknownReason::NotRunning,
            UnknownReason::AgentNotRunning,
            UnknownReason::NoPermission,
            UnknownReason::TimedOut,
            UnknownReason::NotAsked,
            UnknownReason::OtherError,
        ] {
            let c = run(
                GuestKind::Qemu,
                &cfg,
                unknown(reason),
                InterfaceNames::Config,
            );
            assert!(c.ip_addresses.is_keep(), "{reason:?}");
            assert!(c.primary_ip4.is_keep(), "{reason:?}");
        }
    }

    #[test]
    fn config_not_read_keeps_everything() {
        let network = agent("[]");
        let src = Sources {
            kind: GuestKind::Qemu,
            config_read: false,
            config: &[],
            network: &network,
            disks: None,
        };
        let set = settings(InterfaceNames::Config);
        let c = desired_children(&src, &set).unwrap();
        assert_eq!(c.into_owned(), VmChildren::default());
    }

    #[test]
    fn no_nics_is_an_empty_set_not_keep() {
        let c = run(GuestKind::Qemu, &[], agent("[]"), InterfaceNames::Config);
        assert_eq!(c.interfaces, Field::Set(vec![]));
        assert_eq!(c.ip_addresses, Field::Set(vec![]));
    }
}
