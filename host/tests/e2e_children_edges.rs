//! End to end, `sync.children = true` at its edges:
//!
//! - below NetBox 4.2 (no MAC objects) the interface's own `mac_address` carries the MAC: a
//!   first sync writes it, a rerun writes nothing, a changed MAC is one interface update
//!   (simulator only: the real tier's NetBox is 4.7);
//! - with `rules.settings.ip_vrf` the IP addresses are written into that VRF (sent as
//!   `{"name": …}`), an address an operator keeps in the global table is no duplicate there,
//!   and a rerun writes nothing;
//! - an IP address that moves from one VM to another converges in one run in either direction,
//!   one VM per write window (the VM that takes it may be written first), and a rerun writes
//!   nothing.

mod e2e_support;

use e2e_support::{Harness, require_simulator, spec};
use pve2netbox_testkit::{Guest, Inventory, NetboxVersion};
use serde_json::{Value, json};

/// Two QEMU guests with an agent and two NICs each (110 `alpha`, 111 `beta`).
fn inventory() -> Inventory {
    let mut inv = Inventory::generate(&spec(1, 1, 1, 0, 9));
    let node = inv.endpoints[0].nodes[0].name.clone();
    let guest = |vmid: u32, name: &str| {
        Guest::qemu(vmid, &node)
            .with("name", name)
            .with("memory", "1024")
            .with("cores", 1)
            .with("ostype", "l26")
            .with("agent", "1")
            .with("scsi0", format!("local-lvm:vm-{vmid}-disk-0,size=8G"))
            .with(
                "net0",
                format!("virtio=BC:24:11:70:{vmid:02X}:00,bridge=vmbr0"),
            )
            .with(
                "net1",
                format!("virtio=BC:24:11:70:{vmid:02X}:01,bridge=vmbr0"),
            )
            .with_status("running")
    };
    inv.endpoints[0].guests = vec![guest(110, "alpha"), guest(111, "beta")];
    inv.endpoints[0].tasks.clear();
    inv
}

/// The agent's answer for guest `vmid`: `eth0` and `eth1` with these IPv4 addresses (/24).
fn agent(vmid: u32, eth0: &[&str], eth1: &[&str]) -> Value {
    let nic = |n: u32, addrs: &[&str]| {
        let list: Vec<Value> = addrs
            .iter()
            .map(|a| json!({"ip-address": a, "ip-address-type": "ipv4", "prefix": 24}))
            .collect();
        json!({"name": format!("eth{n}"), "hardware-address": format!("bc:24:11:70:{vmid:02x}:0{n}"),
               "ip-addresses": list})
    };
    json!([nic(0, eth0), nic(1, eth1)])
}

fn prepare(mut h: Harness) -> Harness {
    h.set("task_history", false).set("children", true);
    let c = cluster(&h);
    h.edit_guest(
        &c,
        110,
        json!({"agent_state": "answering", "agent_result": agent(110, &["10.70.0.10"], &["10.70.1.10"])}),
    );
    h.edit_guest(
        &c,
        111,
        json!({"agent_state": "answering", "agent_result": agent(111, &["10.70.0.11"], &["10.70.1.11"])}),
    );
    h
}

fn cluster(h: &Harness) -> String {
    h.endpoints()[0].name.clone()
}

fn list(h: &Harness, path: &str, filters: &[(&str, String)]) -> Vec<Value> {
    let mut query: Vec<(String, String)> = vec![("limit".into(), "1000".into())];
    query.extend(filters.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let page = h.api("GET", path, &query, None);
    assert!(page["next"].is_null(), "GET {path}: more than one page");
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no results: {page}"))
        .clone()
}

fn vm_id(h: &Harness, name: &str) -> u64 {
    h.vm_named(name)["id"].as_u64().expect("VM id")
}

/// `address` -> (VM name, interface name, VRF name) of every IP address on a VM interface.
fn ips(h: &Harness) -> Vec<(String, String, String, String)> {
    let ifaces = list(h, "virtualization/interfaces", &[]);
    let mut out: Vec<(String, String, String, String)> = list(h, "ipam/ip-addresses", &[])
        .into_iter()
        .filter_map(|ip| {
            let iface = ifaces
                .iter()
                .find(|i| i["id"] == ip["assigned_object_id"])?;
            Some((
                ip["address"].as_str()?.to_owned(),
                iface["virtual_machine"]["name"].as_str()?.to_owned(),
                iface["name"].as_str()?.to_owned(),
                ip["vrf"]["name"].as_str().unwrap_or("").to_owned(),
            ))
        })
        .collect();
    out.sort();
    out
}

fn rerun_writes_nothing(h: &Harness, what: &str) {
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, &format!("the rerun after {what}"));
}

#[test]
fn sim_only_below_netbox_4_2_the_interface_holds_its_own_mac() {
    require_simulator();
    let h = prepare(Harness::with_inventory_on_netbox(
        inventory(),
        NetboxVersion { major: 4, minor: 1 },
    ));
    let mark = h.mark();
    h.sync_ok();
    let paths = h.write_paths_since(&mark);
    assert!(
        paths
            .keys()
            .all(|p| !p.contains("/api/dcim/mac-addresses/")),
        "no MAC objects below 4.2: {paths:#?}"
    );
    let alpha = vm_id(&h, "alpha");
    let ifaces = list(
        &h,
        "virtualization/interfaces",
        &[("virtual_machine_id", alpha.to_string())],
    );
    let macs: Vec<(String, String)> = ifaces
        .iter()
        .map(|i| {
            assert!(
                i.get("primary_mac_address").is_none(),
                "a 4.1 interface: {i:#}"
            );
            (
                i["name"].as_str().unwrap_or("").to_owned(),
                i["mac_address"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        macs,
        vec![
            ("net0".to_owned(), "BC:24:11:70:6E:00".to_owned()),
            ("net1".to_owned(), "BC:24:11:70:6E:01".to_owned())
        ]
    );
    assert_eq!(ips(&h).len(), 4, "{:#?}", ips(&h));
    rerun_writes_nothing(&h, "a first sync on NetBox 4.1");

    // The NIC's MAC changes; the guest's agent reports the new one.
    let mut answer = agent(110, &["10.70.0.10"], &["10.70.1.10"]);
    answer[1]["hardware-address"] = json!("bc:24:11:70:6e:99");
    h.edit_guest(
        &cluster(&h),
        110,
        json!({"net1": "virtio=BC:24:11:70:6E:99,bridge=vmbr0", "agent_result": answer}),
    );
    let mark = h.mark();
    h.sync_ok();
    let paths = h.write_paths_since(&mark);
    let child_writes: Vec<&String> = paths
        .keys()
        .filter(|p| !p.contains("/api/extras/tags/"))
        .collect();
    assert_eq!(
        child_writes,
        vec!["PATCH /api/virtualization/interfaces/{id}/"],
        "a changed MAC is the interface's own field: {paths:#?}"
    );
    let net1 = list(
        &h,
        "virtualization/interfaces",
        &[("virtual_machine_id", alpha.to_string())],
    )
    .into_iter()
    .find(|i| i["name"] == "net1")
    .expect("net1");
    assert_eq!(net1["mac_address"], "BC:24:11:70:6E:99");
    rerun_writes_nothing(&h, "a MAC changed on NetBox 4.1");
}

#[test]
fn ips_in_a_vrf_are_written_into_it() {
    let mut h = prepare(Harness::with_inventory(inventory()));
    h.rule_settings.insert("ip_vrf".into(), "blue".into());
    h.api(
        "POST",
        "ipam/vrfs",
        &[],
        Some(&json!({"name": "blue", "enforce_unique": true})),
    );
    // An operator's address in the global table that one of the guests has in the VRF.
    h.api(
        "POST",
        "ipam/ip-addresses",
        &[],
        Some(&json!({"address": "10.70.0.10/24", "status": "active"})),
    );
    h.sync_ok();
    let got = ips(&h);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got.iter().all(|(_, _, _, vrf)| vrf == "blue"),
        "every synced IP in the VRF: {got:#?}"
    );
    let primary = h.vm_named("alpha")["primary_ip4"].clone();
    assert_eq!(primary["address"], "10.70.0.10/24", "{primary:#}");
    let global: Vec<Value> = list(
        &h,
        "ipam/ip-addresses",
        &[("address", "10.70.0.10/24".into())],
    )
    .into_iter()
    .filter(|ip| ip["vrf"].is_null())
    .collect();
    assert_eq!(global.len(), 1, "the operator's global address stays");
    rerun_writes_nothing(&h, "a first sync into a VRF");
}

/// A move: what, alpha's eth0 and eth1, beta's eth0 and eth1, who holds the address then.
type Move = (
    &'static str,
    [&'static [&'static str]; 4],
    (&'static str, &'static str),
);

#[test]
fn an_ip_moving_to_another_vm_converges_in_one_run() {
    let mut h = prepare(Harness::with_inventory(inventory()));
    // One VM per window: in one of the two directions the VM that takes the address is
    // written before the one that gives it up.
    h.set("write_window", 1);
    h.sync_ok();
    let c = cluster(&h);
    let moves: [Move; 2] = [
        (
            "10.70.0.10 from alpha to beta",
            [
                &[],
                &["10.70.1.10"],
                &["10.70.0.11", "10.70.0.10"],
                &["10.70.1.11"],
            ],
            ("beta", "net0"),
        ),
        (
            "10.70.0.10 back from beta to alpha",
            [
                &[],
                &["10.70.1.10", "10.70.0.10"],
                &["10.70.0.11"],
                &["10.70.1.11"],
            ],
            ("alpha", "net1"),
        ),
    ];
    for (what, [a0, a1, b0, b1], (vm, iface)) in moves {
        h.edit_guest(&c, 110, json!({"agent_result": agent(110, a0, a1)}));
        h.edit_guest(&c, 111, json!({"agent_result": agent(111, b0, b1)}));
        h.proxy().reset_counters();
        let out = h.sync();
        assert_eq!(out.code, 0, "{what} in one run:\n{}", out.describe());
        // The address is freed before it is taken, whichever VM's window comes first.
        let log = h.proxy().committed_log();
        let first = |w: &str| log.iter().position(|l| l.starts_with(w));
        assert!(
            first("DELETE /api/ipam/ip-addresses/") < first("POST /api/ipam/ip-addresses/"),
            "{what}: {log:#?}"
        );
        let holder: Vec<(String, String)> = ips(&h)
            .into_iter()
            .filter(|(a, ..)| a == "10.70.0.10/24")
            .map(|(_, vm, iface, _)| (vm, iface))
            .collect();
        let want = (vm.to_owned(), iface.to_owned());
        assert_eq!(holder, vec![want], "{what}");
        rerun_writes_nothing(&h, what);
    }
}
