//! The VMs' children in a comparable state: interfaces and virtual disks by VM identity and
//! name, MAC addresses by the interface they are on, IP addresses by address (and VRF), and each
//! VM's primary IPs by address; ids and timestamps left out. Duplicates are problems: an
//! interface or disk name twice on a VM, a MAC twice on an interface, an address twice in a VRF
//! (or the global table).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::e2e_support::{choice, tag_slugs};

/// What NetBox holds under the VMs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Children {
    /// `vm/name` -> content (`primary_mac_address` as the MAC itself, the VLAN as its VID).
    pub interfaces: BTreeMap<String, Value>,
    /// `vm/interface/MAC` (upper case) -> tag slugs; `-/MAC` when on no VM interface.
    pub macs: BTreeMap<String, Value>,
    /// `address@vrf` (`@` alone: the global table) -> where it is and its content.
    pub ips: BTreeMap<String, Value>,
    /// `vm/name` -> size and tags.
    pub disks: BTreeMap<String, Value>,
    /// `vm` -> `[primary_ip4, primary_ip6]` addresses (null when unset); VMs with neither left out.
    pub primary_ips: BTreeMap<String, Value>,
}

const IFACE_TYPE: &str = "virtualization.vminterface";

/// Reads the children of `vms` (`key_of`: VM id -> identity); duplicates go to `problems`.
pub fn read(
    objects: &dyn Fn(&str) -> Vec<Value>,
    vms: &[Value],
    key_of: &BTreeMap<u64, String>,
    problems: &mut Vec<String>,
) -> Children {
    let mut out = Children::default();
    let vm_key = |v: &Value| {
        v.as_u64()
            .or_else(|| v["id"].as_u64())
            .map(|id| key_of.get(&id).cloned().unwrap_or_else(|| format!("#{id}")))
            .unwrap_or_else(|| "-".to_owned())
    };
    let mut insert = |map: &mut BTreeMap<String, Value>, what: &str, key: String, v: Value| {
        if map.insert(key.clone(), v).is_some() {
            problems.push(format!("{what} {key} twice"));
        }
    };

    // Interface id -> `vm/name`, for the addresses on them.
    let mut iface_key: BTreeMap<u64, String> = BTreeMap::new();
    let interfaces = objects("interfaces");
    // Below NetBox 4.2 an interface has no `primary_mac_address` and there are no MAC objects.
    let mac_objects = interfaces
        .first()
        .is_some_and(|i| i.get("primary_mac_address").is_some());
    for i in interfaces {
        let key = format!(
            "{}/{}",
            vm_key(&i["virtual_machine"]),
            i["name"].as_str().unwrap_or_default()
        );
        if let Some(id) = i["id"].as_u64() {
            iface_key.insert(id, key.clone());
        }
        let content = json!({
            "enabled": i["enabled"],
            "mtu": i["mtu"],
            "description": i["description"],
            "mode": choice(&i["mode"]),
            "untagged_vlan": i["untagged_vlan"]["vid"],
            "primary_mac_address": i["primary_mac_address"]["mac_address"]
                .as_str()
                .or(i["mac_address"].as_str())
                .map(str::to_ascii_uppercase),
            "tags": tag_slugs(&i),
        });
        insert(&mut out.interfaces, "interface", key, content);
    }
    let on = |o: &Value| -> String {
        match (
            o["assigned_object_type"].as_str(),
            o["assigned_object_id"].as_u64(),
        ) {
            (Some(IFACE_TYPE), Some(id)) => iface_key
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("interface #{id}")),
            (Some(t), Some(id)) => format!("{t} #{id}"),
            _ => "-".to_owned(),
        }
    };
    let macs = if mac_objects {
        objects("mac-addresses")
    } else {
        Vec::new()
    };
    for m in macs {
        let mac = m["mac_address"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_uppercase();
        insert(
            &mut out.macs,
            "MAC address",
            format!("{}/{mac}", on(&m)),
            json!(tag_slugs(&m)),
        );
    }
    for ip in objects("ip-addresses") {
        let vrf = ip["vrf"]["name"].as_str().unwrap_or_default();
        let key = format!("{}@{vrf}", ip["address"].as_str().unwrap_or_default());
        let content = json!({
            "on": on(&ip),
            "status": choice(&ip["status"]),
            "role": choice(&ip["role"]),
            "dns_name": ip["dns_name"],
            "tags": tag_slugs(&ip),
        });
        insert(&mut out.ips, "IP address", key, content);
    }
    for d in objects("virtual-disks") {
        let key = format!(
            "{}/{}",
            vm_key(&d["virtual_machine"]),
            d["name"].as_str().unwrap_or_default()
        );
        let content = json!({"size": d["size"], "tags": tag_slugs(&d)});
        insert(&mut out.disks, "virtual disk", key, content);
    }
    for vm in vms {
        let p4 = &vm["primary_ip4"]["address"];
        let p6 = &vm["primary_ip6"]["address"];
        if !(p4.is_null() && p6.is_null()) {
            out.primary_ips.insert(vm_key(&vm["id"]), json!([p4, p6]));
        }
    }
    out
}

/// Where two children states differ, one line per child.
pub fn differences(want: &Children, got: &Children) -> Vec<String> {
    let mut out = Vec::new();
    for (what, a, b) in [
        ("interface", &want.interfaces, &got.interfaces),
        ("MAC address", &want.macs, &got.macs),
        ("IP address", &want.ips, &got.ips),
        ("virtual disk", &want.disks, &got.disks),
        ("primary IPs of", &want.primary_ips, &got.primary_ips),
    ] {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            match (a.get(key), b.get(key)) {
                (Some(x), Some(y)) if x == y => {}
                (x, y) => out.push(format!("{what} {key}: want {x:?} got {y:?}")),
            }
        }
    }
    out
}
