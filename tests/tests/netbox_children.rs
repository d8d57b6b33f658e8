//! The NetBox simulator's VM children: interfaces, MAC addresses, IP addresses, VRFs,
//! VLANs and virtual disks, with NetBox's own validation and literal error bodies
//! (reference B.3, B.4, B.7; netbox-live.md 2.1 and 2.4).

mod common;

use common::{Nb, start, start_cfg};
use pve2netbox_testkit::{InventorySpec, SimConfig};
use serde_json::{Value, json};

const VMS: &str = "/api/virtualization/virtual-machines/";
const IFACES: &str = "/api/virtualization/interfaces/";
const MACS: &str = "/api/dcim/mac-addresses/";
const IPS: &str = "/api/ipam/ip-addresses/";
const DISKS: &str = "/api/virtualization/virtual-disks/";

async fn new_vm(nb: &Nb, name: &str, cluster: u64) -> u64 {
    let (s, v) = nb
        .post(
            VMS,
            json!({"name": name, "cluster": cluster, "status": "active"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_u64().unwrap()
}

async fn created(nb: &Nb, path: &str, body: Value) -> Value {
    let (s, v) = nb.post(path, body).await;
    assert_eq!(s, 201, "{v}");
    v
}

fn ids(list: &Value) -> Vec<u64> {
    let mut out: Vec<u64> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    out.sort_unstable();
    out
}

#[tokio::test]
async fn interfaces_macs_and_their_validation() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vm1 = new_vm(&nb, "web01", cluster).await;
    let vm2 = new_vm(&nb, "web02", cluster).await;

    let eth0 = created(&nb, IFACES, json!({"virtual_machine": vm1, "name": "eth0"})).await;
    assert_eq!(eth0["enabled"], true);
    assert_eq!(eth0["mode"], Value::Null);
    assert_eq!(eth0["mac_address"], Value::Null);
    assert_eq!(eth0["mac_addresses"], json!([]));
    assert_eq!(eth0["virtual_machine"]["id"], vm1);
    let eth0 = eth0["id"].as_u64().unwrap();
    // Names are unique per VM, case-sensitive; the same name on another VM is fine.
    let (s, v) = nb
        .post(IFACES, json!({"virtual_machine": vm1, "name": "eth0"}))
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"__all__": ["Interface with this Virtual machine and Name already exists."]})
        )
    );
    created(&nb, IFACES, json!({"virtual_machine": vm1, "name": "ETH0"})).await;
    let other = created(&nb, IFACES, json!({"virtual_machine": vm2, "name": "eth0"})).await;
    let other = other["id"].as_u64().unwrap();

    // MACs are objects (4.2+), stored upper case.
    let mac = created(
        &nb,
        MACS,
        json!({"mac_address": "bc:24:11:2a:3b:4c", "assigned_object_type": "virtualization.vminterface", "assigned_object_id": eth0}),
    )
    .await;
    assert_eq!(mac["mac_address"], "BC:24:11:2A:3B:4C");
    assert_eq!(mac["assigned_object"]["id"], eth0);
    assert_eq!(mac["assigned_object"]["virtual_machine"]["id"], vm1);
    let (s, v) = nb
        .post(MACS, json!({"mac_address": "bc:24:11:zz:3b:4c"}))
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"mac_address": ["Invalid MAC address format: bc:24:11:zz:3b:4c"]})
        )
    );
    let mac = mac["id"].as_u64().unwrap();
    let (s, v) = nb
        .patch(
            &format!("{IFACES}{eth0}/"),
            json!({"primary_mac_address": mac}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["primary_mac_address"]["id"], mac);
    assert_eq!(v["mac_address"], "BC:24:11:2A:3B:4C");
    assert_eq!(v["mac_addresses"][0]["id"], mac);
    // A MAC assigned to another interface cannot be this one's primary.
    let (s, v) = nb
        .patch(
            &format!("{IFACES}{other}/"),
            json!({"primary_mac_address": mac}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"primary_mac_address": ["MAC address BC:24:11:2A:3B:4C is assigned to a different interface (eth0)."]})
        )
    );

    // Bulk create is atomic with 4.7's structured errors.
    let (s, v) = nb
        .post(
            IFACES,
            json!([{"virtual_machine": vm2, "name": "eth1"}, {"virtual_machine": vm2, "name": "eth1"}]),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"detail": "1 of 2 objects could not be created.", "errors": [{"index": 1, "errors": {"__all__": ["Interface with this Virtual machine and Name already exists."]}}]})
        )
    );
    let (_, l) = nb.get(&format!("{IFACES}?virtual_machine_id={vm2}")).await;
    assert_eq!(l["count"], 1, "the failed bulk created nothing");
    let (_, vm) = nb.get(&format!("{VMS}{vm1}/")).await;
    assert_eq!(vm["interface_count"], 2);
}

#[tokio::test]
async fn ip_uniqueness_global_and_per_vrf() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vm = new_vm(&nb, "db01", cluster).await;
    let eth0 = created(&nb, IFACES, json!({"virtual_machine": vm, "name": "eth0"})).await;
    let eth0 = eth0["id"].as_u64().unwrap();
    let ip = created(
        &nb,
        IPS,
        json!({"address": "10.0.0.5/24", "assigned_object_type": "virtualization.vminterface", "assigned_object_id": eth0}),
    )
    .await;
    assert_eq!(ip["family"], json!({"value": 4, "label": "IPv4"}));
    assert_eq!(ip["status"], json!({"value": "active", "label": "Active"}));
    assert_eq!(ip["assigned_object"]["id"], eth0);
    // Same host under another mask: refused in the global table.
    let (s, v) = nb.post(IPS, json!({"address": "10.0.0.5/16"})).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"address": ["Duplicate IP address found in global table: 10.0.0.5/24"]})
        )
    );
    // Shared roles may repeat.
    created(&nb, IPS, json!({"address": "10.0.0.5/24", "role": "vip"})).await;
    // VRFs: enforce_unique (default true) applies per VRF; off, duplicates pass.
    let red = created(
        &nb,
        "/api/ipam/vrfs/",
        json!({"name": "red", "rd": "65000:1"}),
    )
    .await;
    assert_eq!(red["enforce_unique"], true);
    let loose = created(
        &nb,
        "/api/ipam/vrfs/",
        json!({"name": "loose", "enforce_unique": false}),
    )
    .await;
    created(
        &nb,
        IPS,
        json!({"address": "10.0.0.5/24", "vrf": red["id"]}),
    )
    .await;
    let (s, v) = nb
        .post(IPS, json!({"address": "10.0.0.5/32", "vrf": red["id"]}))
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"address": ["Duplicate IP address found in VRF red: 10.0.0.5/24"]})
        )
    );
    created(
        &nb,
        IPS,
        json!({"address": "10.0.0.5/24", "vrf": loose["id"]}),
    )
    .await;
    created(
        &nb,
        IPS,
        json!({"address": "10.0.0.5/24", "vrf": loose["id"]}),
    )
    .await;
    // IPv6 is stored the way NetBox prints it.
    let v6 = created(&nb, IPS, json!({"address": "2001:DB8:0:0::1/64"})).await;
    assert_eq!(v6["address"], "2001:db8::1/64");
    assert_eq!(v6["family"], json!({"value": 6, "label": "IPv6"}));
    let (s, v) = nb.post(IPS, json!({"address": "2001:db8::1/128"})).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"address": ["Duplicate IP address found in global table: 2001:db8::1/64"]})
        )
    );
}

#[tokio::test]
async fn primary_ips_must_be_on_the_vms_interfaces() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vm1 = new_vm(&nb, "app01", cluster).await;
    let vm2 = new_vm(&nb, "app02", cluster).await;
    let i1 = created(&nb, IFACES, json!({"virtual_machine": vm1, "name": "eth0"})).await["id"]
        .as_u64()
        .unwrap();
    let i2 = created(&nb, IFACES, json!({"virtual_machine": vm2, "name": "eth0"})).await["id"]
        .as_u64()
        .unwrap();
    let on = |iface: u64, a: &str| json!({"address": a, "assigned_object_type": "virtualization.vminterface", "assigned_object_id": iface});
    let ip1 = created(&nb, IPS, on(i1, "198.18.0.10/15")).await["id"]
        .as_u64()
        .unwrap();
    let ip2 = created(&nb, IPS, on(i2, "198.18.0.11/15")).await["id"]
        .as_u64()
        .unwrap();
    let ip6 = created(&nb, IPS, on(i1, "2001:db8::10/64")).await["id"]
        .as_u64()
        .unwrap();
    let (s, v) = nb
        .patch(&format!("{VMS}{vm1}/"), json!({"primary_ip4": ip2}))
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"primary_ip4": ["The specified IP address (198.18.0.11/15) is not assigned to this VM."]})
        )
    );
    let (s, v) = nb
        .patch(&format!("{VMS}{vm1}/"), json!({"primary_ip4": ip6}))
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"primary_ip4": ["Must be an IPv4 address. (2001:db8::10/64 is an IPv6 address.)"]})
        )
    );
    let (s, v) = nb
        .patch(
            &format!("{VMS}{vm1}/"),
            json!({"primary_ip4": ip1, "primary_ip6": ip6}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["primary_ip4"]["id"], ip1);
    assert_eq!(v["primary_ip4"]["address"], "198.18.0.10/15");
    assert_eq!(v["primary_ip6"]["id"], ip6);
    assert_eq!(
        v["primary_ip"]["id"], ip6,
        "PREFER_IPV4 is false by default"
    );
    let (_, l) = nb
        .get(&format!("{VMS}?id={vm1}&fields=id,primary_ip4"))
        .await;
    assert_eq!(l["results"][0]["primary_ip4"]["id"], ip1);

    // Deleting an interface takes its addresses along and clears the primary IPs.
    let mac = created(
        &nb,
        MACS,
        json!({"mac_address": "BC:24:11:00:00:01", "assigned_object_type": "virtualization.vminterface", "assigned_object_id": i1}),
    )
    .await["id"]
        .as_u64()
        .unwrap();
    let (s, _) = nb.delete(&format!("{IFACES}{i1}/"), None).await;
    assert_eq!(s, 204);
    for (path, id) in [(IPS, ip1), (IPS, ip6), (MACS, mac)] {
        let (s, _) = nb.get(&format!("{path}{id}/")).await;
        assert_eq!(s, 404, "{path}{id} went with its interface");
    }
    let (s, _) = nb.get(&format!("{IPS}{ip2}/")).await;
    assert_eq!(s, 200, "another VM's address stays");
    let (_, v) = nb.get(&format!("{VMS}{vm1}/")).await;
    assert_eq!(
        (&v["primary_ip4"], &v["primary_ip6"], &v["interface_count"]),
        (&Value::Null, &Value::Null, &json!(0))
    );
    // Each deletion is in the change log.
    let (_, ch) = nb
        .get("/api/core/object-changes/?action=delete&limit=100")
        .await;
    let deleted: Vec<(String, u64)> = ch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["changed_object_type"].as_str().unwrap().to_string(),
                c["changed_object_id"].as_u64().unwrap(),
            )
        })
        .collect();
    for want in [
        ("virtualization.vminterface".to_string(), i1),
        ("ipam.ipaddress".to_string(), ip1),
        ("ipam.ipaddress".to_string(), ip6),
        ("dcim.macaddress".to_string(), mac),
    ] {
        assert!(deleted.contains(&want), "{want:?} in {deleted:?}");
    }
}

#[tokio::test]
async fn filters_and_pages_for_the_snapshot() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let (_, cl2) = nb
        .post(
            "/api/virtualization/clusters/",
            json!({"name": "pve-cl2", "type": {"slug": "proxmox-ve"}}),
        )
        .await;
    let cl2 = cl2["id"].as_u64().unwrap();
    let a = new_vm(&nb, "a", cluster).await;
    let b = new_vm(&nb, "b", cl2).await;
    let mut a_ifaces = Vec::new();
    let mut a_ips = Vec::new();
    let mut a_macs = Vec::new();
    for (vm, n) in [(a, 3), (b, 2)] {
        for i in 0..n {
            let iface = created(
                &nb,
                IFACES,
                json!({"virtual_machine": vm, "name": format!("net{i}")}),
            )
            .await["id"]
                .as_u64()
                .unwrap();
            let ip = created(&nb, IPS, json!({"address": format!("10.{vm}.{i}.1/24"), "assigned_object_type": "virtualization.vminterface", "assigned_object_id": iface})).await["id"].as_u64().unwrap();
            let mac = created(&nb, MACS, json!({"mac_address": format!("BC:24:11:00:{vm:02X}:{i:02X}"), "assigned_object_type": "virtualization.vminterface", "assigned_object_id": iface})).await["id"].as_u64().unwrap();
            if vm == a {
                a_ifaces.push(iface);
                a_ips.push(ip);
                a_macs.push(mac);
            }
        }
    }
    let (_, l) = nb
        .get(&format!("{IFACES}?cluster_id={cluster}&limit=1000"))
        .await;
    assert_eq!(ids(&l), a_ifaces);
    let (_, l) = nb
        .get(&format!("{IFACES}?virtual_machine_id={a}&limit=1000"))
        .await;
    assert_eq!(ids(&l), a_ifaces);
    let (_, l) = nb
        .get(&format!("{IPS}?virtual_machine_id={a}&limit=1000"))
        .await;
    assert_eq!(ids(&l), a_ips);
    let (_, l) = nb
        .get(&format!("{MACS}?virtual_machine_id={a}&limit=1000"))
        .await;
    assert_eq!(ids(&l), a_macs);
    let (_, l) = nb
        .get(&format!(
            "{IPS}?vminterface_id={}&vminterface_id={}",
            a_ifaces[0], a_ifaces[2]
        ))
        .await;
    assert_eq!(ids(&l), vec![a_ips[0], a_ips[2]]);
    let (s, v) = nb.get(&format!("{IPS}?virtual_machine_id=9999")).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"virtual_machine_id": ["Select a valid choice. 9999 is not one of the available choices."]})
        )
    );
    // Cursor-style paging with fields= over all five interfaces.
    let mut seen = Vec::new();
    let mut last = 0;
    loop {
        let (_, p) = nb
            .get(&format!(
                "{IFACES}?id__gt={last}&ordering=id&limit=2&fields=id,name,virtual_machine,primary_mac_address"
            ))
            .await;
        let rows = p["results"].as_array().unwrap().clone();
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 4, "{keys:?}");
            last = r["id"].as_u64().unwrap();
            seen.push(last);
        }
    }
    assert_eq!(seen.len(), 5);
}

#[tokio::test]
async fn virtual_disks_set_the_vm_disk() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vm = new_vm(&nb, "files01", cluster).await;
    let d0 = created(
        &nb,
        DISKS,
        json!({"virtual_machine": vm, "name": "scsi0", "size": 32768}),
    )
    .await;
    created(
        &nb,
        DISKS,
        json!({"virtual_machine": vm, "name": "scsi1", "size": 1024}),
    )
    .await;
    let (_, v) = nb.get(&format!("{VMS}{vm}/")).await;
    assert_eq!(
        (&v["disk"], &v["virtual_disk_count"]),
        (&json!(33792), &json!(2))
    );
    let (s, v) = nb
        .patch(&format!("{VMS}{vm}/"), json!({"disk": 32768}))
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"disk": ["The specified disk size (32768) must match the aggregate size of assigned virtual disks (33792)."]})
        )
    );
    let (s, _) = nb.delete(&format!("{DISKS}{}/", d0["id"]), None).await;
    assert_eq!(s, 204);
    let (_, v) = nb.get(&format!("{VMS}{vm}/")).await;
    assert_eq!(v["disk"], 1024);
    let (_, l) = nb.get(&format!("{DISKS}?virtual_machine_id={vm}")).await;
    assert_eq!(l["count"], 1);
}

#[tokio::test]
async fn vlans_on_interfaces() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vm = new_vm(&nb, "fw01", cluster).await;
    let vlan = created(
        &nb,
        "/api/ipam/vlans/",
        json!({"vid": 10, "name": "servers"}),
    )
    .await;
    assert_eq!(vlan["display"], "servers (10)");
    assert_eq!(
        vlan["status"],
        json!({"value": "active", "label": "Active"})
    );
    let (s, v) = nb
        .post("/api/ipam/vlans/", json!({"vid": 4095, "name": "x"}))
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"vid": ["Ensure this value is less than or equal to 4094."]})
        )
    );
    let iface = created(
        &nb,
        IFACES,
        json!({"virtual_machine": vm, "name": "net0", "mode": "access", "untagged_vlan": vlan["id"]}),
    )
    .await;
    assert_eq!(iface["mode"], json!({"value": "access", "label": "Access"}));
    assert_eq!(iface["untagged_vlan"]["vid"], 10);
    // Deleting the VLAN leaves the interface untagged (SET_NULL).
    let (s, _) = nb
        .delete(&format!("/api/ipam/vlans/{}/", vlan["id"]), None)
        .await;
    assert_eq!(s, 204);
    let (_, v) = nb.get(&format!("{IFACES}{}/", iface["id"])).await;
    assert_eq!(v["untagged_vlan"], Value::Null);
}

#[tokio::test]
async fn interface_mac_address_is_writable_in_47_and_ignored_before() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vm = new_vm(&nb, "mac01", cluster).await;
    let iface = created(
        &nb,
        IFACES,
        json!({"virtual_machine": vm, "name": "net0", "mac_address": "bc:24:11:2a:3b:4c"}),
    )
    .await;
    assert_eq!(iface["mac_address"], "BC:24:11:2A:3B:4C");
    let mac = iface["primary_mac_address"]["id"].as_u64().unwrap();
    let (_, m) = nb.get(&format!("{MACS}{mac}/")).await;
    assert_eq!(m["assigned_object"]["id"], iface["id"]);
    // A new address updates the same MAC object.
    let (s, v) = nb
        .patch(
            &format!("{IFACES}{}/", iface["id"]),
            json!({"mac_address": "BC:24:11:00:00:09"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["primary_mac_address"]["id"], mac);
    assert_eq!(v["mac_address"], "BC:24:11:00:00:09");
    let (_, l) = nb.get(MACS).await;
    assert_eq!(l["count"], 1);

    let sim = start_cfg(SimConfig {
        inventory: InventorySpec {
            vms: 1,
            nodes: 1,
            clusters: 1,
            standalone: 0,
            seed: 1,
        },
        netbox_version: "4.6".parse().unwrap(),
        ..SimConfig::default()
    })
    .await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vm = new_vm(&nb, "mac01", cluster).await;
    let iface = created(
        &nb,
        IFACES,
        json!({"virtual_machine": vm, "name": "net0", "mac_address": "bc:24:11:2a:3b:4c"}),
    )
    .await;
    assert_eq!(iface["mac_address"], Value::Null, "read-only in 4.2-4.6");
    let (_, l) = nb.get(MACS).await;
    assert_eq!(l["count"], 0);
}

#[tokio::test]
async fn control_api_adds_changes_and_deletes_children() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vm = new_vm(&nb, "ops01", cluster).await;
    let ctl = sim.control();
    let iface = ctl
        .netbox_create(
            "interfaces",
            &json!({"virtual_machine": vm, "name": "eth0", "mac_address": "BC:24:11:00:00:01"}),
        )
        .unwrap();
    let iface = iface[0]["id"].as_u64().unwrap();
    let ip = ctl
        .netbox_create(
            "ip-addresses",
            &json!({"address": "10.1.0.1/24", "assigned_object_type": "virtualization.vminterface", "assigned_object_id": iface}),
        )
        .unwrap()[0]["id"]
        .as_u64()
        .unwrap();
    // Changes go through NetBox's validation.
    let err = ctl
        .netbox_update("virtual-machines", &json!([{"id": vm, "primary_ip6": ip}]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Must be an IPv6 address."), "{err}");
    let v = ctl
        .netbox_update("virtual-machines", &json!([{"id": vm, "primary_ip4": ip}]))
        .unwrap();
    assert_eq!(v[0]["primary_ip4"]["id"], ip);
    // The global uniqueness switch.
    assert!(
        ctl.netbox_create("ip-addresses", &json!({"address": "10.1.0.1/32"}))
            .is_err()
    );
    ctl.netbox_enforce_global_unique(false);
    ctl.netbox_create("ip-addresses", &json!({"address": "10.1.0.1/32"}))
        .unwrap();
    // Deleting takes the interface's addresses along; nothing was counted or logged.
    ctl.netbox_delete("interfaces", &[iface as u32]).unwrap();
    assert_eq!(ctl.netbox_objects("mac-addresses").unwrap().len(), 0);
    assert_eq!(ctl.netbox_objects("ip-addresses").unwrap().len(), 1);
    let (_, ch) = nb
        .get("/api/core/object-changes/?changed_object_type=virtualization.vminterface")
        .await;
    assert_eq!(ch["count"], 0);
}
