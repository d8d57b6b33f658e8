//! The Proxmox simulator's guest agent `network-get-interfaces`: the guest's NICs in the
//! literal shapes of reference A.3 (Linux and Windows), and the errors in PVE's order,
//! driven per guest through the control API's `agent_state`.

mod common;

use common::{Pve, start};
use pve2netbox_testkit::NewGuest;
use serde_json::{Map, json};

fn qemu(ostype: &str) -> NewGuest {
    let mut cfg = Map::new();
    cfg.insert("name".into(), json!("agent-test"));
    cfg.insert("ostype".into(), json!(ostype));
    cfg.insert("agent".into(), json!("1"));
    cfg.insert(
        "net0".into(),
        json!("virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1,tag=10"),
    );
    cfg.insert("net1".into(), json!("e1000=BC:24:11:00:00:01,bridge=vmbr1"));
    cfg.insert("ipconfig0".into(), json!("ip=10.0.0.5/24,gw=10.0.0.1"));
    NewGuest {
        config: Some(cfg),
        node: Some("pve1".into()),
        ..NewGuest::default()
    }
}

fn state(sim: &pve2netbox_testkit::SimHandle, vmid: u32, s: &str) {
    let mut patch = Map::new();
    patch.insert("agent_state".into(), json!(s));
    sim.control().update_guest(None, vmid, &patch).unwrap();
}

#[tokio::test]
async fn linux_and_windows_answers() {
    let sim = start(1, 1, 1).await;
    let pve = Pve::new(&sim, 0);
    let (_, vmid) = sim.control().add_guest(qemu("l26")).unwrap();
    let (s, v) = pve
        .get_json(&format!(
            "/nodes/pve1/qemu/{vmid}/agent/network-get-interfaces"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    let r = &v["data"]["result"];
    assert_eq!(r[0]["name"], "lo");
    assert_eq!(r[0]["hardware-address"], "00:00:00:00:00:00");
    // Every interface reports its traffic counters, as a live guest's agent does.
    let mut eth0 = r[1].clone();
    let counters = eth0
        .as_object_mut()
        .and_then(|o| o.remove("statistics"))
        .expect("eth0 has statistics");
    assert_eq!(
        eth0,
        json!({"name": "eth0", "hardware-address": "bc:24:11:2a:3b:4c", "ip-addresses": [
            {"ip-address": "10.0.0.5", "ip-address-type": "ipv4", "prefix": 24},
            {"ip-address": "fe80::be24:11ff:fe2a:3b4c", "ip-address-type": "ipv6", "prefix": 64}]})
    );
    // ... which grow from one answer to the next.
    let (_, again) = pve
        .get_json(&format!(
            "/nodes/pve1/qemu/{vmid}/agent/network-get-interfaces"
        ))
        .await;
    let later = &again["data"]["result"][1]["statistics"];
    for key in ["rx-bytes", "rx-packets", "tx-bytes", "tx-packets"] {
        assert!(
            later[key].as_u64() > counters[key].as_u64(),
            "{key}: {counters} then {later}"
        );
    }
    assert_eq!(later["rx-errs"], 0);
    assert_eq!(r[2]["name"], "eth1");
    assert_eq!(r[2]["hardware-address"], "bc:24:11:00:00:01");
    assert_eq!(r.as_array().unwrap().len(), 3);

    let (_, win) = sim.control().add_guest(qemu("win11")).unwrap();
    let (s, v) = pve
        .get_json(&format!(
            "/nodes/pve1/qemu/{win}/agent/network-get-interfaces"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    let r = &v["data"]["result"];
    assert_eq!(r[0]["name"], "Loopback Pseudo-Interface 1");
    assert!(
        r[0].get("hardware-address").is_none(),
        "an interface without a MAC has no key"
    );
    assert_eq!(r[1]["name"], "Ethernet");
    assert_eq!(r[2]["name"], "Ethernet 2");
    assert_eq!(r[2]["hardware-address"], "bc:24:11:00:00:01");
}

#[tokio::test]
async fn agent_states_and_errors() {
    let sim = start(1, 1, 1).await;
    let pve = Pve::new(&sim, 0);
    let (_, vmid) = sim.control().add_guest(qemu("l26")).unwrap();
    let path = format!("/nodes/pve1/qemu/{vmid}/agent/network-get-interfaces");

    state(&sim, vmid, "dead");
    let (s, v) = pve.get_json(&path).await;
    assert_eq!(
        (s, &v["message"]),
        (500, &json!("QEMU guest agent is not running\n"))
    );
    state(&sim, vmid, "forbidden");
    let (s, v) = pve.get_json(&path).await;
    assert_eq!(
        (s, &v["message"]),
        (
            403,
            &json!(format!(
                "Permission check failed (/vms/{vmid}, VM.GuestAgent.Audit)\n"
            ))
        )
    );
    state(&sim, vmid, "answering");
    let (s, _) = pve.get_json(&path).await;
    assert_eq!(s, 200);

    let mut patch = Map::new();
    patch.insert("status".into(), json!("stopped"));
    sim.control().update_guest(None, vmid, &patch).unwrap();
    let (s, v) = pve.get_json(&path).await;
    assert_eq!(
        (s, &v["message"]),
        (500, &json!(format!("VM {vmid} is not running\n")))
    );
    state(&sim, vmid, "off");
    let (s, v) = pve.get_json(&path).await;
    assert_eq!(
        (s, &v["message"]),
        (500, &json!("No QEMU guest agent configured\n"))
    );
    let mut bad = Map::new();
    bad.insert("agent_state".into(), json!("sleepy"));
    assert!(sim.control().update_guest(None, vmid, &bad).is_err());
}

#[tokio::test]
async fn offline_node_gives_595() {
    let sim = start(1, 2, 1).await;
    let pve = Pve::new(&sim, 0);
    let mut g = qemu("l26");
    g.node = Some("pve2".into());
    let (_, vmid) = sim.control().add_guest(g).unwrap();
    let path = format!("/nodes/pve2/qemu/{vmid}/agent/network-get-interfaces");
    assert_eq!(pve.get(&path).await.status(), 200);
    sim.control().set_node_online("pve2", false).unwrap();
    assert_eq!(pve.get(&path).await.status().as_u16(), 595);
}

#[tokio::test]
async fn lxc_interfaces_list_every_nic() {
    let sim = start(1, 1, 1).await;
    let pve = Pve::new(&sim, 0);
    let mut cfg = Map::new();
    cfg.insert("hostname".into(), json!("dns"));
    cfg.insert(
        "net0".into(),
        json!("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5D:6E:7F,ip=10.0.0.5/24,type=veth"),
    );
    cfg.insert(
        "net1".into(),
        json!("name=mgmt,bridge=vmbr1,hwaddr=BC:24:11:00:00:02,ip=dhcp,type=veth"),
    );
    let (_, vmid) = sim
        .control()
        .add_guest(NewGuest {
            kind: Some(pve2netbox_testkit::GuestKind::Lxc),
            node: Some("pve1".into()),
            config: Some(cfg),
            ..NewGuest::default()
        })
        .unwrap();
    let (s, v) = pve
        .get_json(&format!("/nodes/pve1/lxc/{vmid}/interfaces"))
        .await;
    assert_eq!(s, 200, "{v}");
    let d = &v["data"];
    assert_eq!(d[0]["name"], "lo");
    assert_eq!(
        d[1],
        json!({"name": "eth0", "hwaddr": "bc:24:11:5d:6e:7f", "hardware-address": "bc:24:11:5d:6e:7f",
               "inet": "10.0.0.5/24", "inet6": "fe80::be24:11ff:fe5d:6e7f/64",
               "ip-addresses": [{"ip-address": "10.0.0.5", "ip-address-type": "inet", "prefix": 24},
                                {"ip-address": "fe80::be24:11ff:fe5d:6e7f", "ip-address-type": "inet6", "prefix": 64}]})
    );
    assert_eq!(d[2]["name"], "mgmt");
    assert_eq!(d[2]["hwaddr"], "bc:24:11:00:00:02");
}
