//! The children workload (issue 18 item 9, used by `pve2netbox-bench --children` and
//! `pve2netbox-sim --children`): every guest a running QEMU VM with two NICs (the first tagged
//! with one of [`CHILDREN_VLAN_VIDS`]), two disks and an answering guest agent that reports four
//! addresses (an IPv4 and a global IPv6 per NIC, plus their link-local addresses, which the
//! default rules leave out).
//!
//! Addresses and MACs are derived from the guest's position in the inventory, so they are unique
//! over the whole estate (the simulated NetBox enforces global uniqueness, as NetBox does by
//! default). Edges: an inventory spec in (its endpoints, nodes, VMIDs and names are the
//! generator's), started simulators out, the VLANs created in their NetBox.

use std::ops::Range;

use serde_json::{Map, Value, json};

use crate::inventory::{Guest, Inventory};
use crate::sim::{SimConfig, SimError, SimHandle, Simulators};

/// VIDs of the workload's VLANs; NIC 0 of the `i`th guest is tagged with the `i % len`th.
pub const CHILDREN_VLAN_VIDS: Range<usize> = 10..18;

/// Why the workload could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The simulators did not start.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The control API refused a setting.
    #[error("children workload: {what}: {message}")]
    Control {
        /// What was being set.
        what: String,
        /// The control API's message.
        message: String,
    },
}

/// MAC of NIC `nic` of the `i`th guest (lower case, as the agent reports it).
fn mac(i: usize, nic: usize) -> String {
    format!(
        "bc:24:1{nic}:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// IPv4 of NIC `nic` of the `i`th guest, in a /24: host part 1..=254 (NetBox refuses a
/// network ID or broadcast address on an interface), unique up to 4M guests.
fn ipv4(i: usize, nic: usize) -> String {
    let (net, host) = (i / 254, 1 + i % 254);
    format!(
        "10.{}.{}.{host}",
        64 * nic + ((net >> 8) & 0x3f),
        net & 0xff
    )
}

/// Global IPv6 of NIC `nic` of the `i`th guest, in a /64 (host part never 0: a network ID).
/// Past 65,535 guests the host part takes two groups (one group holds 16 bits: as one group
/// those addresses were invalid, and the agent answers carrying them were refused whole).
fn ipv6(i: usize, nic: usize) -> String {
    let host = i + 1;
    if host > 0xffff {
        format!("2001:db8:{nic}::{:x}:{:x}", host >> 16, host & 0xffff)
    } else {
        format!("2001:db8:{nic}::{host:x}")
    }
}

/// The agent's `network-get-interfaces` answer for the `i`th guest (reference shape: loopback
/// first, MACs in lower case).
fn agent_result(i: usize) -> Value {
    let mut out = vec![
        json!({"name": "lo", "hardware-address": "00:00:00:00:00:00",
        "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                         {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}]}),
    ];
    for nic in 0..2 {
        out.push(json!({
            "name": format!("eth{nic}"),
            "hardware-address": mac(i, nic),
            "ip-addresses": [
                {"ip-address": ipv4(i, nic), "ip-address-type": "ipv4", "prefix": 24},
                {"ip-address": ipv6(i, nic), "ip-address-type": "ipv6", "prefix": 64},
                {"ip-address": format!("fe80::be24:1{nic}ff:fe00:{:x}", i & 0xffff),
                 "ip-address-type": "ipv6", "prefix": 64},
            ],
        }));
    }
    Value::Array(out)
}

/// The `i`th guest of the workload, on the node and with the VMID and name the generator gave it.
fn guest(i: usize, g: &Guest) -> Guest {
    let name = g
        .get("name")
        .or_else(|| g.get("hostname"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("vm-{}", g.vmid), str::to_string);
    let vmid = g.vmid;
    Guest::qemu(vmid, &g.node)
        .with("name", name)
        .with("memory", 2048)
        .with("cores", 2)
        .with("ostype", "l26")
        .with("agent", "1")
        .with("scsihw", "virtio-scsi-single")
        .with("scsi0", format!("local-lvm:vm-{vmid}-disk-0,size=32G"))
        .with("scsi1", format!("local-lvm:vm-{vmid}-disk-1,size=8G"))
        .with(
            "net0",
            format!(
                "virtio={},bridge=vmbr0,tag={}",
                mac(i, 0).to_uppercase(),
                vid(i)
            ),
        )
        .with(
            "net1",
            format!("virtio={},bridge=vmbr1", mac(i, 1).to_uppercase()),
        )
        .with_status("running")
}

/// The VID NIC 0 of the `i`th guest is tagged with.
fn vid(i: usize) -> usize {
    CHILDREN_VLAN_VIDS.start + i % CHILDREN_VLAN_VIDS.len()
}

/// Starts the simulators with the children workload of `cfg.inventory.vms` guests: the
/// generator's endpoints, nodes, VMIDs and names, the guests rewritten to the workload, the
/// VLANs created in the simulated NetBox and each guest's agent answer set.
pub async fn start_children_workload(cfg: SimConfig) -> Result<SimHandle, WorkloadError> {
    let spec = cfg.inventory.clone();
    let mut inv = Inventory::generate(&spec);
    let mut placed: Vec<(String, u32, usize)> = Vec::with_capacity(spec.vms);
    let mut i = 0usize;
    for ep in &mut inv.endpoints {
        for g in &mut ep.guests {
            *g = guest(i, g);
            placed.push((ep.name.clone(), g.vmid, i));
            i += 1;
        }
        ep.tasks.clear();
    }
    let sim = Simulators::start_with_inventory(cfg, inv).await?;
    let ctl = sim.control();
    let vlans: Vec<Value> = CHILDREN_VLAN_VIDS
        .map(|vid| json!({"vid": vid, "name": format!("v{vid}"), "status": "active"}))
        .collect();
    ctl.netbox_create("vlans", &Value::Array(vlans))
        .map_err(|e| WorkloadError::Control {
            what: "creating the VLANs".into(),
            message: e.to_string(),
        })?;
    for (cluster, vmid, i) in placed {
        let mut patch = Map::new();
        patch.insert("agent_result".into(), agent_result(i));
        ctl.update_guest(Some(&cluster), vmid, &patch)
            .map_err(|e| WorkloadError::Control {
                what: format!("setting the agent answer of {vmid}"),
                message: e.to_string(),
            })?;
    }
    Ok(sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_macs_are_unique_over_a_large_estate() {
        let n = 300_000;
        let mut seen = std::collections::HashSet::new();
        for i in 0..n {
            for nic in 0..2 {
                assert!(seen.insert(mac(i, nic)), "MAC {i} {nic}");
                let v4 = ipv4(i, nic);
                let host = v4.rsplit('.').next().unwrap();
                assert!(
                    host != "0" && host != "255",
                    "{v4}: a network ID or broadcast"
                );
                assert!(seen.insert(v4), "IPv4 {i} {nic}");
                let v6 = ipv6(i, nic);
                assert!(
                    v6.parse::<std::net::Ipv6Addr>().is_ok(),
                    "{v6}: not an IPv6 address"
                );
                assert!(seen.insert(v6), "IPv6 {i} {nic}");
            }
        }
    }
}
