//! The NetBox children snapshot (`snapshot::read_with_children`) against the simulated and the
//! real NetBox: a managed VM's interfaces, MAC, IPs, VLAN, VRF, primary IPs and virtual disks,
//! made through NetBox's API as an operator would, render as the JSON of WIT
//! `netbox-vm.children`; children of a VM outside the managed clusters are not held; and (on the
//! simulator, which counts requests) each kind costs ceil(rows / 1000) reads and nothing per VM.

mod e2e_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use e2e_support::{Harness, cf, pages, require_simulator, spec};
use pve2netbox::clients::http::{RequestCounters, Secret};
use pve2netbox::clients::netbox::NetboxClient;
use pve2netbox::config::{NetboxConfig, Timeouts};
use pve2netbox::pipeline::preflight::Preflight;
use pve2netbox::pipeline::snapshot;
use pve2netbox::pipeline::snapshot::children::ChildrenSnapshot;
use reqwest::Url;
use serde_json::{Value, json};

/// Reads the VM and children snapshots of the harness's first cluster with the product's code.
fn read_children(h: &Harness) -> (Vec<u64>, ChildrenSnapshot) {
    let (url, token) = h.netbox_access();
    let cluster_name = h.endpoints()[0].name.clone();
    let cluster = h
        .objects("clusters")
        .into_iter()
        .find(|c| c["name"] == cluster_name.as_str())
        .expect("the sync made the cluster");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = NetboxClient::new(
            &NetboxConfig::new(Url::parse(&url).unwrap(), Secret::new(token)),
            &Timeouts::default(),
            Arc::new(RequestCounters::default()),
        )
        .unwrap();
        let status = client.status().await.unwrap();
        let pre = Preflight {
            capabilities: status.capabilities,
            cluster_ids: BTreeMap::from([(cluster_name, cluster["id"].as_u64().unwrap())]),
            ..Preflight::default()
        };
        let (vms, children) = snapshot::read_with_children(&client, &pre).await;
        let vms = vms.expect("the VM snapshot reads");
        (vms.records().iter().map(|r| r.id()).collect(), children)
    })
}

fn post(h: &Harness, path: &str, body: Value) -> Value {
    h.api("POST", path, &[], Some(&body))
}

fn id(v: &Value) -> u64 {
    v["id"].as_u64().unwrap_or_else(|| panic!("no id: {v}"))
}

#[test]
fn children_snapshot_renders_what_netbox_holds() {
    let h = Harness::generated(spec(3, 1, 1, 0, 5));
    h.sync_ok();
    let mut vms = h.vms();
    vms.sort_by_key(|v| cf(v, "proxmox_vm_id").as_u64());
    let (vm, bare) = (id(&vms[0]), id(&vms[1]));

    let vlan = id(&post(&h, "ipam/vlans", json!({"vid": 10, "name": "v10"})));
    let vrf = id(&post(&h, "ipam/vrfs", json!({"name": "blue"})));
    let net0 = id(&post(
        &h,
        "virtualization/interfaces",
        json!({"virtual_machine": vm, "name": "net0", "mtu": 1500, "description": "uplink",
               "mode": "access", "untagged_vlan": vlan, "tags": [{"slug": "pve2netbox"}]}),
    ));
    let net1 = id(&post(
        &h,
        "virtualization/interfaces",
        json!({"virtual_machine": vm, "name": "net1", "enabled": false}),
    ));
    let mac = id(&post(
        &h,
        "dcim/mac-addresses",
        json!({"mac_address": "BC:24:11:2A:3B:4C",
               "assigned_object_type": "virtualization.vminterface", "assigned_object_id": net0}),
    ));
    h.api(
        "PATCH",
        &format!("virtualization/interfaces/{net0}"),
        &[],
        Some(&json!({"primary_mac_address": mac})),
    );
    let ip4 = id(&post(
        &h,
        "ipam/ip-addresses",
        json!({"address": "10.0.0.5/24", "status": "active",
               "assigned_object_type": "virtualization.vminterface", "assigned_object_id": net0}),
    ));
    let ip6 = id(&post(
        &h,
        "ipam/ip-addresses",
        json!({"address": "2001:db8::5/64", "status": "active", "vrf": vrf,
               "tags": [{"slug": "pve2netbox"}],
               "assigned_object_type": "virtualization.vminterface", "assigned_object_id": net1}),
    ));
    // Not on any interface: not one of the VM's children.
    post(&h, "ipam/ip-addresses", json!({"address": "10.9.9.9/32"}));
    h.api(
        "PATCH",
        &format!("virtualization/virtual-machines/{vm}"),
        &[],
        Some(&json!({"primary_ip4": ip4, "primary_ip6": ip6})),
    );
    let scsi0 = id(&post(
        &h,
        "virtualization/virtual-disks",
        json!({"virtual_machine": vm, "name": "scsi0", "size": 32768, "description": "local-lvm"}),
    ));
    let scsi1 = id(&post(
        &h,
        "virtualization/virtual-disks",
        json!({"virtual_machine": vm, "name": "scsi1", "size": 1024}),
    ));

    // A VM of a cluster the sync does not manage, with children of its own.
    let cluster_type = h.objects("clusters")[0]["type"]["id"].as_u64().unwrap();
    let other = id(&post(
        &h,
        "virtualization/clusters",
        json!({"name": "not-managed", "type": cluster_type}),
    ));
    let outsider = id(&post(
        &h,
        "virtualization/virtual-machines",
        json!({"name": "outsider", "cluster": other}),
    ));
    let foreign = id(&post(
        &h,
        "virtualization/interfaces",
        json!({"virtual_machine": outsider, "name": "eth0"}),
    ));
    post(
        &h,
        "ipam/ip-addresses",
        json!({"address": "10.8.8.8/24", "assigned_object_type": "virtualization.vminterface",
               "assigned_object_id": foreign}),
    );
    post(
        &h,
        "virtualization/virtual-disks",
        json!({"virtual_machine": outsider, "name": "sda", "size": 10}),
    );

    let (managed, children) = read_children(&h);
    assert!(!managed.contains(&outsider));
    assert!(children.errors().is_empty(), "{:?}", children.errors());
    let rendered: Value = serde_json::from_str(&children.children_json(vm).unwrap()).unwrap();
    // Trimmed as WIT `netbox-vm.children` says: no nulls or empty texts, choices as values,
    // a VRF by name, nested objects without their ids, `enabled` only when false.
    let expected = json!({
        "interfaces": [
            {"id": net0, "name": "net0", "mtu": 1500, "description": "uplink",
             "mode": "access", "untagged_vlan": {"vid": 10},
             "mac_address": "BC:24:11:2A:3B:4C", "tags": ["pve2netbox"]},
            {"id": net1, "name": "net1", "enabled": false}],
        "mac_addresses": [
            {"id": mac, "mac_address": "BC:24:11:2A:3B:4C", "assigned_object_id": net0}],
        "ip_addresses": [
            {"id": ip4, "address": "10.0.0.5/24", "status": "active",
             "assigned_object_id": net0},
            {"id": ip6, "address": "2001:db8::5/64", "vrf": "blue", "status": "active",
             "assigned_object_id": net1, "tags": ["pve2netbox"]}],
        "virtual_disks": [
            {"id": scsi0, "name": "scsi0", "size": 32768, "description": "local-lvm"},
            {"id": scsi1, "name": "scsi1", "size": 1024}],
        "primary_ip4": {"address": "10.0.0.5/24"},
        "primary_ip6": {"address": "2001:db8::5/64"},
    });
    assert_eq!(rendered, expected);

    let empty: Value = serde_json::from_str(&children.children_json(bare).unwrap()).unwrap();
    assert_eq!(
        empty,
        json!({"interfaces": [], "mac_addresses": [], "ip_addresses": [], "virtual_disks": []})
    );
    // Only the managed VM's seven children are held: the outsider's interface, IP and disk
    // are not.
    assert_eq!(children.rows(), 7);
    assert!(children.vlans().unwrap().iter().any(|v| v.id == vlan));
}

/// Rows per kind well past one page, made directly in the simulator (the control API does not
/// count): the read costs ceil(rows / 1000) GETs per kind, whatever the number of VMs.
#[test]
fn sim_only_children_snapshot_reads_one_page_per_thousand_rows() {
    require_simulator();
    let h = Harness::generated(spec(30, 2, 1, 0, 9));
    h.sync_ok();
    let vms: Vec<u64> = h.vms().iter().map(id).collect();
    let per_vm = 80; // 30 VMs x 80 = 2400 interfaces
    let ifaces: Vec<Value> = vms
        .iter()
        .flat_map(|vm| {
            (0..per_vm).map(move |i| json!({"virtual_machine": vm, "name": format!("n{i}")}))
        })
        .collect();
    let made = h
        .control()
        .netbox_create("interfaces", &json!(ifaces))
        .unwrap();
    assert_eq!(made.len(), vms.len() * per_vm);
    // One IPv4 per interface for the first 1500 (two pages), one MAC each for the first 1001.
    let ips: Vec<Value> = made
        .iter()
        .take(1500)
        .enumerate()
        .map(|(n, i)| {
            json!({"address": format!("10.{}.{}.{}/16", 20 + n / 60000, (n / 250) % 250, 1 + n % 250),
                   "assigned_object_type": "virtualization.vminterface", "assigned_object_id": i["id"]})
        })
        .collect();
    h.control()
        .netbox_create("ip-addresses", &json!(ips))
        .unwrap();
    let macs: Vec<Value> = made
        .iter()
        .take(1001)
        .enumerate()
        .map(|(n, i)| {
            json!({"mac_address": format!("BC:24:11:00:{:02X}:{:02X}", n / 256, n % 256),
                   "assigned_object_type": "virtualization.vminterface", "assigned_object_id": i["id"]})
        })
        .collect();
    h.control()
        .netbox_create("mac-addresses", &json!(macs))
        .unwrap();
    let disks: Vec<Value> = vms
        .iter()
        .flat_map(|vm| {
            (0..40).map(move |i| json!({"virtual_machine": vm, "name": format!("d{i}"), "size": 1}))
        })
        .collect();
    h.control()
        .netbox_create("virtual-disks", &json!(disks))
        .unwrap();

    h.control().reset_counters();
    let (managed, children) = read_children(&h);
    assert_eq!(managed.len(), vms.len());
    assert!(children.errors().is_empty(), "{:?}", children.errors());
    let reads = h.control().counters().paths["netbox"].clone();
    let gets = |path: &str| {
        reads
            .get(&format!("GET /api/{path}/"))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(gets("virtualization/interfaces"), pages(2400));
    assert_eq!(gets("ipam/ip-addresses"), pages(1500));
    assert_eq!(gets("dcim/mac-addresses"), pages(1001));
    assert_eq!(gets("virtualization/virtual-disks"), pages(1200));
    assert_eq!(gets("ipam/vlans"), 1);
    assert_eq!(gets("virtualization/virtual-machines"), pages(vms.len()));
    let total: u64 = reads
        .iter()
        .filter(|(k, _)| k.starts_with("GET "))
        .map(|(_, n)| n)
        .sum();
    // The five kinds and the VMs above, plus `/api/status/`: nothing per VM or per interface.
    let listed = pages(2400) + pages(1500) + pages(1001) + pages(1200) + 1 + pages(vms.len());
    assert_eq!(total, listed + 1, "{reads:?}");
    assert_eq!(children.rows(), 2400 + 1500 + 1001 + 1200);

    // Every VM renders its own children, no one else's.
    let first: Value = serde_json::from_str(&children.children_json(vms[0]).unwrap()).unwrap();
    assert_eq!(first["interfaces"].as_array().unwrap().len(), per_vm);
    assert_eq!(first["virtual_disks"].as_array().unwrap().len(), 40);
}
