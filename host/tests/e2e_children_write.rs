//! End to end, `sync.children = true`: the sync writes each VM's interfaces, MAC addresses, IP
//! addresses, virtual disks and primary IP, in both tiers.
//!
//! - a first sync writes them all, and a rerun writes nothing, also when the agent answers its
//!   interfaces in another order, with MACs in upper case and an IPv6 address spelled out;
//! - each change kind writes exactly its objects (read from NetBox's change log, which both
//!   tiers keep): NIC added, MAC changed, NIC removed, VLAN changed, disk resized, disk
//!   detached, IP added, IP moved to another NIC, primary IP changed;
//! - an operator's own interface, IP and disk survive, and a VM whose virtual disks another
//!   tool made converges (adopted, its `disk` kept equal to their sum);
//! - an agent that is dead, forbidden (403) or unreachable (595) deletes nothing.

mod e2e_support;

use std::collections::BTreeSet;

use e2e_support::{Harness, Mark, choice, spec};
use pve2netbox_testkit::{Guest, Inventory};
use serde_json::{Value, json};

const CLUSTER_VMS: u32 = 3;

/// The guests of these tests: a QEMU VM with an answering agent and two NICs (100), a stopped
/// QEMU VM with a VLAN-tagged NIC and two disks (101), a running container with a static
/// address (102).
fn inventory() -> Inventory {
    let mut inv = Inventory::generate(&spec(1, 1, 1, 0, 7));
    let node = inv.endpoints[0].nodes[0].name.clone();
    let web = Guest::qemu(100, &node)
        .with("name", "web")
        .with("memory", "2048")
        .with("cores", 2)
        .with("ostype", "l26")
        .with("agent", "1")
        .with("scsi0", "local-lvm:vm-100-disk-0,size=32G")
        .with("net0", "virtio=BC:24:11:00:01:00,bridge=vmbr0")
        .with("net1", "virtio=BC:24:11:00:01:01,bridge=vmbr0")
        .with_status("running");
    let db = Guest::qemu(101, &node)
        .with("name", "db")
        .with("memory", "4096")
        .with("cores", 2)
        .with("ostype", "l26")
        .with("agent", "0")
        .with("scsi0", "local-lvm:vm-101-disk-0,size=20G")
        .with("scsi1", "local-lvm:vm-101-disk-1,size=10G")
        .with("net0", "virtio=BC:24:11:00:02:00,bridge=vmbr0,tag=10")
        .with_status("stopped");
    let ct = Guest::lxc(102, &node)
        .with("hostname", "ct")
        .with("memory", 512)
        .with("ostype", "debian")
        .with("rootfs", "local-lvm:vm-102-disk-0,size=8G")
        .with(
            "net0",
            "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:03:00,ip=10.1.2.3/24,type=veth",
        )
        .with_status("running");
    inv.endpoints[0].guests = vec![web, db, ct];
    inv.endpoints[0].tasks.clear();
    inv
}

/// The agent's answer for VM 100: eth0 with 10.0.100.5/24 (+ a global IPv6), eth1 with
/// 10.0.101.5/24, each with its link-local address; `extra` adds addresses per NIC.
fn agent(eth0: &[(&str, u8)], eth1: &[(&str, u8)]) -> Value {
    let addrs = |list: &[(&str, u8)], ll: &str| {
        let mut v: Vec<Value> = list
            .iter()
            .map(|(ip, p)| {
                let kind = if ip.contains(':') { "ipv6" } else { "ipv4" };
                json!({"ip-address": ip, "ip-address-type": kind, "prefix": p})
            })
            .collect();
        v.push(json!({"ip-address": ll, "ip-address-type": "ipv6", "prefix": 64}));
        v
    };
    json!([
        {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
            {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
        {"name": "eth0", "hardware-address": "bc:24:11:00:01:00",
         "ip-addresses": addrs(eth0, "fe80::be24:11ff:fe00:100")},
        {"name": "eth1", "hardware-address": "bc:24:11:00:01:01",
         "ip-addresses": addrs(eth1, "fe80::be24:11ff:fe00:101")}
    ])
}

const BASE_ETH0: &[(&str, u8)] = &[("10.0.100.5", 24), ("2001:db8::5", 64)];
const BASE_ETH1: &[(&str, u8)] = &[("10.0.101.5", 24)];

/// A harness with the three guests, children on, task history off, VLAN 10 in NetBox.
fn harness() -> Harness {
    let mut h = Harness::with_inventory(inventory());
    h.set("task_history", false).set("children", true);
    let cluster = h.endpoints()[0].name.clone();
    h.edit_guest(
        &cluster,
        100,
        json!({"agent_state": "answering", "agent_result": agent(BASE_ETH0, BASE_ETH1)}),
    );
    h.api(
        "POST",
        "ipam/vlans",
        &[],
        Some(&json!({"vid": 10, "name": "v10", "status": "active"})),
    );
    h
}

fn cluster(h: &Harness) -> String {
    h.endpoints()[0].name.clone()
}

/// Every row of `path` matching `filters` (the tests' NetBoxes hold far fewer than a page).
fn list(h: &Harness, path: &str, filters: &[(&str, String)]) -> Vec<Value> {
    let mut query: Vec<(String, String)> = vec![("limit".into(), "1000".into())];
    query.extend(filters.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let page = h.api("GET", path, &query, None);
    let rows = page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no results: {page}"))
        .clone();
    assert!(
        page["next"].is_null(),
        "GET {path}: more than one page in a test NetBox"
    );
    rows
}

fn vm_id(h: &Harness, name: &str) -> u64 {
    h.vm_named(name)["id"].as_u64().expect("VM id")
}

fn interfaces(h: &Harness, vm: u64) -> Vec<Value> {
    list(
        h,
        "virtualization/interfaces",
        &[("virtual_machine_id", vm.to_string())],
    )
}

fn disks(h: &Harness, vm: u64) -> Vec<Value> {
    list(
        h,
        "virtualization/virtual-disks",
        &[("virtual_machine_id", vm.to_string())],
    )
}

fn ips(h: &Harness, vm: u64) -> Vec<Value> {
    list(
        h,
        "ipam/ip-addresses",
        &[("virtual_machine_id", vm.to_string())],
    )
}

fn names(rows: &[Value], field: &str) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn tagged(row: &Value) -> bool {
    row["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["slug"] == "pve2netbox"))
}

/// The (action, object type) pairs NetBox logged since the mark, the run lease's tag aside.
fn changed(h: &Harness, mark: &Mark) -> BTreeSet<(String, String)> {
    let id = mark.change_id();
    list(h, "core/object-changes", &[("id__gt", id.to_string())])
        .into_iter()
        .filter(|c| c["id"].as_u64().is_some_and(|i| i > id))
        .filter(|c| c["changed_object_type"] != "extras.tag")
        .map(|c| {
            (
                choice(&c["action"]).to_owned(),
                c["changed_object_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, t)| ((*a).to_owned(), (*t).to_owned()))
        .collect()
}

/// Syncs and checks that exactly these kinds of objects were written, then that a rerun
/// writes nothing.
fn expect_writes(h: &Harness, what: &str, want: &[(&str, &str)]) {
    let mark = h.mark();
    let out = h.sync();
    out.expect_code(0);
    assert_eq!(
        changed(h, &mark),
        set(want),
        "{what}: {}\n{}",
        h.writes_detail(&mark),
        out.describe()
    );
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, &format!("the rerun after {what}"));
}

const IFACE: &str = "virtualization.vminterface";
const MAC: &str = "dcim.macaddress";
const IP: &str = "ipam.ipaddress";
const DISK: &str = "virtualization.virtualdisk";
const VM: &str = "virtualization.virtualmachine";

#[test]
fn a_first_sync_writes_every_child_and_a_rerun_writes_nothing() {
    first_sync_and_reruns(&harness());
}

/// The same without bulk requests, one VM per window and two windows in flight: each VM's
/// children still follow its own write.
#[test]
fn one_by_one_and_two_windows_at_once_write_the_same() {
    let mut h = harness();
    h.set("bulk", false)
        .set("write_window", 1)
        .set("write_concurrency", 2);
    first_sync_and_reruns(&h);
}

fn first_sync_and_reruns(h: &Harness) {
    let first = h.sync_ok();
    assert_eq!(
        first.count("create"),
        u64::from(CLUSTER_VMS),
        "{}",
        first.describe()
    );

    let web = vm_id(h, "web");
    let ifaces = interfaces(h, web);
    assert_eq!(
        names(&ifaces, "name"),
        BTreeSet::from(["net0".into(), "net1".into()])
    );
    assert!(ifaces.iter().all(tagged), "managed interfaces: {ifaces:#?}");
    for i in &ifaces {
        let mac = i["primary_mac_address"]["mac_address"]
            .as_str()
            .unwrap_or("");
        assert!(mac.starts_with("BC:24:11:00:01:0"), "primary MAC of {i:#}");
    }
    let web_ips = ips(h, web);
    assert_eq!(
        names(&web_ips, "address"),
        BTreeSet::from([
            "10.0.100.5/24".into(),
            "2001:db8::5/64".into(),
            "10.0.101.5/24".into()
        ]),
        "the agent's addresses, link-local and loopback left out"
    );
    let net1 = ifaces.iter().find(|i| i["name"] == "net1").expect("net1");
    let on_net1: Vec<&Value> = web_ips
        .iter()
        .filter(|ip| ip["assigned_object_id"] == net1["id"])
        .collect();
    assert_eq!(
        on_net1.len(),
        1,
        "the IP of the second NIC is on it: {web_ips:#?}"
    );
    let vm = h.vm_named("web");
    assert_eq!(vm["primary_ip4"]["address"], "10.0.100.5/24", "{vm:#}");
    assert_eq!(vm["primary_ip6"]["address"], "2001:db8::5/64", "{vm:#}");

    let db = vm_id(h, "db");
    let db_disks = disks(h, db);
    let sizes: BTreeSet<(String, u64)> = db_disks
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("").to_owned(),
                d["size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        BTreeSet::from([("scsi0".into(), 20480), ("scsi1".into(), 10240)])
    );
    assert_eq!(
        h.vm_named("db")["disk"],
        30720,
        "VM disk = sum of its disks"
    );
    let db_net0 = &interfaces(h, db)[0];
    assert_eq!(db_net0["untagged_vlan"]["vid"], 10, "{db_net0:#}");
    assert_eq!(choice(&db_net0["mode"]), "access");

    let ct = h.vm_named("ct");
    assert_eq!(ct["primary_ip4"]["address"], "10.1.2.3/24", "{ct:#}");

    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "a rerun with nothing changed");

    // The same answer in another order, MACs upper case, the IPv6 address spelled out.
    let mut answer = agent(
        &[("10.0.100.5", 24), ("2001:0DB8:0:0:0:0:0:0005", 64)],
        BASE_ETH1,
    );
    let list = answer.as_array_mut().expect("list");
    list.swap(1, 2);
    for nic in list.iter_mut() {
        let mac = nic["hardware-address"]
            .as_str()
            .unwrap_or("")
            .to_uppercase();
        nic["hardware-address"] = json!(mac);
    }
    h.edit_guest(&cluster(h), 100, json!({"agent_result": answer}));
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "the same addresses written differently");
}

#[test]
fn each_change_writes_exactly_its_objects() {
    let mut h = harness();
    // The sync's own choice of primary IPv4 follows the guest (not only seeded).
    h.rule_policies.insert("primary_ip4".into(), "owned".into());
    h.sync_ok();
    let c = cluster(&h);
    let db = vm_id(&h, "db");

    h.edit_guest(
        &c,
        101,
        json!({"net1": "virtio=BC:24:11:00:02:01,bridge=vmbr0"}),
    );
    expect_writes(
        &h,
        "a NIC added",
        &[("create", IFACE), ("create", MAC), ("update", IFACE)],
    );
    assert_eq!(interfaces(&h, db).len(), 2);

    h.edit_guest(
        &c,
        101,
        json!({"net1": "virtio=BC:24:11:00:02:99,bridge=vmbr0"}),
    );
    expect_writes(
        &h,
        "a MAC changed",
        &[("create", MAC), ("delete", MAC), ("update", IFACE)],
    );
    let net1 = interfaces(&h, db)
        .into_iter()
        .find(|i| i["name"] == "net1")
        .expect("net1");
    assert_eq!(
        net1["primary_mac_address"]["mac_address"],
        "BC:24:11:00:02:99"
    );

    h.edit_guest(&c, 101, json!({"delete": ["net1"]}));
    expect_writes(&h, "a NIC removed", &[("delete", MAC), ("delete", IFACE)]);
    assert_eq!(
        names(&interfaces(&h, db), "name"),
        BTreeSet::from(["net0".into()])
    );

    h.api(
        "POST",
        "ipam/vlans",
        &[],
        Some(&json!({"vid": 20, "name": "v20", "status": "active"})),
    );
    h.edit_guest(
        &c,
        101,
        json!({"net0": "virtio=BC:24:11:00:02:00,bridge=vmbr0,tag=20"}),
    );
    expect_writes(&h, "a VLAN changed", &[("update", IFACE)]);
    assert_eq!(interfaces(&h, db)[0]["untagged_vlan"]["vid"], 20);

    h.edit_guest(
        &c,
        101,
        json!({"scsi1": "local-lvm:vm-101-disk-1,size=12G"}),
    );
    expect_writes(&h, "a disk resized", &[("update", DISK)]);
    assert_eq!(h.vm_named("db")["disk"], 20480 + 12288);

    h.edit_guest(&c, 101, json!({"delete": ["scsi1"]}));
    expect_writes(&h, "a disk detached", &[("delete", DISK)]);
    assert_eq!(
        names(&disks(&h, db), "name"),
        BTreeSet::from(["scsi0".into()])
    );
    assert_eq!(h.vm_named("db")["disk"], 20480);

    let web = vm_id(&h, "web");
    let eth0_more = [("10.0.100.5", 24), ("2001:db8::5", 64), ("10.0.100.6", 24)];
    h.edit_guest(
        &c,
        100,
        json!({"agent_result": agent(&eth0_more, BASE_ETH1)}),
    );
    expect_writes(&h, "an IP added", &[("create", IP)]);

    let eth1_more = [("10.0.101.5", 24), ("10.0.100.6", 24)];
    h.edit_guest(
        &c,
        100,
        json!({"agent_result": agent(BASE_ETH0, &eth1_more)}),
    );
    expect_writes(&h, "an IP moved to another NIC", &[("update", IP)]);
    let moved = ips(&h, web)
        .into_iter()
        .find(|ip| ip["address"] == "10.0.100.6/24")
        .expect("10.0.100.6");
    let net1 = interfaces(&h, web)
        .into_iter()
        .find(|i| i["name"] == "net1")
        .expect("net1");
    assert_eq!(moved["assigned_object_id"], net1["id"]);

    // The primary IPv4 10.0.100.5 goes away: cleared (by its delete), then the next one.
    h.edit_guest(
        &c,
        100,
        json!({"agent_result": agent(&[("2001:db8::5", 64)], &eth1_more)}),
    );
    expect_writes(
        &h,
        "the primary IP changed",
        &[("delete", IP), ("update", VM)],
    );
    assert_eq!(h.vm_named("web")["primary_ip4"]["address"], "10.0.101.5/24");
}

#[test]
fn an_operators_children_survive_and_disks_made_elsewhere_converge() {
    let h = harness();
    h.sync_ok();
    let web = vm_id(&h, "web");
    // The operator's own interface with an address, and a disk, on a synced VM.
    let mgmt = h.api(
        "POST",
        "virtualization/interfaces",
        &[],
        Some(&json!({"virtual_machine": web, "name": "mgmt"})),
    );
    h.api(
        "POST",
        "ipam/ip-addresses",
        &[],
        Some(&json!({"address": "192.168.50.5/24", "status": "active",
                     "assigned_object_type": "virtualization.vminterface",
                     "assigned_object_id": mgmt["id"]})),
    );
    h.api(
        "POST",
        "virtualization/virtual-disks",
        &[],
        Some(&json!({"virtual_machine": web, "name": "backup", "size": 500})),
    );
    // Another tool's version of the sync's disk: no managed tag, another size.
    let scsi0 = disks(&h, web)
        .into_iter()
        .find(|d| d["name"] == "scsi0")
        .expect("scsi0");
    let scsi0_id = scsi0["id"].as_u64().expect("id");
    h.api(
        "PATCH",
        &format!("virtualization/virtual-disks/{scsi0_id}"),
        &[],
        Some(&json!({"tags": [], "size": 1000})),
    );

    let mark = h.mark();
    h.sync_ok();
    assert_eq!(
        changed(&h, &mark),
        set(&[("update", DISK)]),
        "only the adopted disk is written: {}",
        h.writes_detail(&mark)
    );
    let now = disks(&h, web);
    assert_eq!(
        names(&now, "name"),
        BTreeSet::from(["scsi0".into(), "backup".into()])
    );
    let scsi0 = now.iter().find(|d| d["name"] == "scsi0").expect("scsi0");
    assert_eq!(scsi0["size"], 32768);
    assert!(tagged(scsi0), "adopted: {scsi0:#}");
    assert_eq!(h.vm_named("web")["disk"], 32768 + 500);
    assert!(names(&interfaces(&h, web), "name").contains("mgmt"));
    assert!(names(&ips(&h, web), "address").contains("192.168.50.5/24"));

    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "the rerun after adopting");
}

#[test]
fn an_agent_that_does_not_answer_deletes_nothing() {
    let h = harness();
    h.sync_ok();
    let web = vm_id(&h, "web");
    let before = names(&ips(&h, web), "address");
    assert_eq!(before.len(), 3);
    for state in ["dead", "forbidden", "unreachable"] {
        let c = cluster(&h);
        h.edit_guest(&c, 100, json!({"agent_state": "answering"}));
        h.edit_guest(&c, 100, json!({"agent_state": state}));
        let mark = h.mark();
        let out = h.sync();
        out.expect_code(0);
        h.assert_no_writes_since(&mark, &format!("agent {state}"));
        assert_eq!(names(&ips(&h, web), "address"), before, "agent {state}");
    }
}

#[test]
fn a_plan_lists_child_operations_and_apply_carries_them_out() {
    let h = harness();
    let path = h.path("plan.json").display().to_string();
    let out = h.run(&["plan", "--no-memo", "--out", &path]);
    out.expect_code(2);
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("plan")).expect("JSON");
    assert_eq!(plan["plan_version"], 2);
    let web = plan["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .find(|o| o["vmid"] == 100)
        .expect("web");
    let kinds: Vec<(&str, &str)> = web["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or(""),
                c["key"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(kinds.contains(&("interface", "net1")), "{kinds:?}");
    assert!(
        kinds.contains(&("ip-address", "10.0.101.5/24")),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("virtual-disk", "scsi0")), "{kinds:?}");

    let applied = h.run(&["apply", &path]);
    applied.expect_code(0);
    let web_id = vm_id(&h, "web");
    assert_eq!(interfaces(&h, web_id).len(), 2);
    assert_eq!(ips(&h, web_id).len(), 3);
    let db = vm_id(&h, "db");
    assert_eq!(
        interfaces(&h, db)[0]["untagged_vlan"]["vid"],
        10,
        "a plan made before the cluster exists still finds the VLAN"
    );
    let mark = h.mark();
    h.sync_ok();
    h.assert_no_writes_since(&mark, "a sync after apply");
}

#[test]
fn apply_refuses_a_child_changed_since_the_plan() {
    let h = harness();
    h.sync_ok();
    let c = cluster(&h);
    h.edit_guest(
        &c,
        101,
        json!({"scsi1": "local-lvm:vm-101-disk-1,size=12G"}),
    );
    let path = h.path("plan.json").display().to_string();
    h.run(&["plan", "--no-memo", "--out", &path]).expect_code(2);
    let db = vm_id(&h, "db");
    let scsi1 = disks(&h, db)
        .into_iter()
        .find(|d| d["name"] == "scsi1")
        .expect("scsi1");
    h.api(
        "PATCH",
        &format!("virtualization/virtual-disks/{}", scsi1["id"]),
        &[],
        Some(&json!({"description": "touched by hand"})),
    );
    let out = h.run(&["apply", &path]);
    out.expect_code(3);
    let errors = out.errors();
    assert!(
        errors.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("changed since the plan"))),
        "{}",
        out.describe()
    );
    let scsi1 = disks(&h, db)
        .into_iter()
        .find(|d| d["name"] == "scsi1")
        .expect("scsi1");
    assert_eq!(scsi1["size"], 10240, "the refused disk is not written");
}
