//! The Proxmox VE simulator against the shapes of reference proxmox-netbox-apis.md part A.

mod common;

use common::{Pve, pve_client, start, start_cfg};
use pve2netbox_testkit::{InventorySpec, SimConfig, tls::fingerprint_sha256};
use serde_json::{Value, json};

fn reason(r: &reqwest::Response) -> Option<String> {
    r.extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).to_string())
}

#[tokio::test]
async fn tls_pins_leaf_fingerprint_and_token_auth_variants() {
    let sim = start(20, 2, 1).await;
    let pve = Pve::new(&sim, 0);
    // The presented leaf's SHA-256 is the printed fingerprint.
    let r = pve.get("/version").await;
    let info = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("tls info");
    assert_eq!(
        fingerprint_sha256(info.peer_certificate().expect("peer cert")),
        pve.ep.fingerprint
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["version"], "9.0.10");
    assert_eq!(v["data"]["release"], "9.0");

    // `PVEAPIToken ` with a space works too.
    let r = pve
        .client
        .get(format!("{}/api2/json/version", pve.ep.url))
        .header("Authorization", format!("PVEAPIToken {}", pve.ep.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // No credentials: 401 "No ticket", not JSON.
    let r = pve
        .client
        .get(format!("{}/api2/json/version", pve.ep.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(reason(&r).as_deref(), Some("No ticket"));
    assert_eq!(r.headers()["connection"], "close");
    let body = r.text().await.unwrap();
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "401 body must not be JSON: {body:?}"
    );

    // Bad secret: 401, PVE 9 reason.
    let bad = format!("{}x", pve.ep.token);
    let r = pve
        .client
        .get(format!("{}/api2/json/version", pve.ep.url))
        .header("Authorization", format!("PVEAPIToken={bad}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(reason(&r).as_deref(), Some("Authentication failed!"));
}

#[tokio::test]
async fn cluster_resources_shapes_and_errors() {
    let sim = start(200, 3, 1).await;
    let pve = Pve::new(&sim, 0);
    let (s, v) = pve.get_json("/cluster/resources?type=vm").await;
    assert_eq!(s, 200);
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 200);
    for r in rows {
        let t = r["type"].as_str().unwrap();
        assert!(t == "qemu" || t == "lxc");
        assert_eq!(r["id"], format!("{t}/{}", r["vmid"]));
        assert!(r["template"] == 0 || r["template"] == 1);
        assert!(
            r["maxmem"].as_u64().unwrap() >= 256 * 1024 * 1024,
            "bytes, not MiB: {r}"
        );
        assert!(r.get("name").is_some());
        if let Some(tags) = r.get("tags") {
            assert!(!tags.as_str().unwrap().is_empty());
        }
        if t == "qemu" {
            assert_eq!(r["disk"], 0);
        }
        assert!(r["memhost"].is_u64(), "PVE 9 has memhost");
    }
    assert!(rows.iter().any(|r| r["template"] == 1));
    assert!(rows.iter().any(|r| r.get("tags").is_some()));
    assert!(
        rows.iter().any(|r| r.get("tags").is_none()),
        "optional keys absent when unset"
    );

    let (s, v) = pve.get_json("/cluster/resources?type=node").await;
    assert_eq!(s, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 3);

    let r = pve.get("/cluster/resources?type=bogus").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        reason(&r).as_deref(),
        Some("Parameter verification failed.")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"], Value::Null);
    assert_eq!(
        v["errors"]["type"],
        "value 'bogus' does not have a value in the enumeration 'vm, storage, node, sdn'\n"
    );
    assert_eq!(v["message"], "Parameter verification failed.\n");

    // Unknown path: 501.
    let (s, v) = pve.get_json("/nodes/pve1/qemu/100/rrddata").await;
    assert_eq!(s, 501);
    assert_eq!(
        v["message"],
        "Method 'GET /nodes/pve1/qemu/100/rrddata' not implemented\n"
    );
}

#[tokio::test]
async fn offline_node_gives_unknown_rows_and_595() {
    let sim = start(60, 3, 1).await;
    let pve = Pve::new(&sim, 0);
    let (_, v) = pve.get_json("/cluster/resources?type=vm").await;
    let on_pve2: Vec<Value> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == "pve2")
        .cloned()
        .collect();
    assert!(!on_pve2.is_empty());
    let victim = on_pve2[0]["vmid"].as_u64().unwrap();
    let kind = on_pve2[0]["type"].as_str().unwrap().to_string();
    sim.control().set_node_online("pve2", false).unwrap();
    let (_, v) = pve.get_json("/cluster/resources?type=vm").await;
    for r in v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == "pve2")
    {
        assert_eq!(r["status"], "unknown");
        assert!(
            r.get("name").is_none() && r.get("maxmem").is_none() && r.get("template").is_none(),
            "{r}"
        );
    }
    let r = pve
        .get(&format!("/nodes/pve2/{kind}/{victim}/config"))
        .await;
    assert_eq!(r.status().as_u16(), 595);
    let (_, v) = pve.get_json("/nodes").await;
    let n2 = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "pve2")
        .unwrap()
        .clone();
    assert_eq!(n2["status"], "offline");
    assert!(n2["ssl_fingerprint"].as_str().unwrap().len() == 95);
    sim.control().set_node_online("pve2", true).unwrap();
    assert_eq!(
        pve.get(&format!("/nodes/pve2/{kind}/{victim}/config"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn config_digest_pending_and_wrong_node() {
    let sim = start(30, 2, 1).await;
    let pve = Pve::new(&sim, 0);
    let (_, v) = pve.get_json("/cluster/resources?type=vm").await;
    let q = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "qemu")
        .unwrap()
        .clone();
    let (vmid, node) = (
        q["vmid"].as_u64().unwrap(),
        q["node"].as_str().unwrap().to_string(),
    );
    let path = format!("/nodes/{node}/qemu/{vmid}/config");
    let (s, c1) = pve.get_json(&path).await;
    assert_eq!(s, 200);
    let cfg = &c1["data"];
    assert!(
        cfg["memory"].is_string(),
        "PVE 9: memory is a string: {cfg}"
    );
    assert!(cfg["cores"].is_u64());
    assert_eq!(cfg["digest"].as_str().unwrap().len(), 40);

    // An edit changes the digest.
    let mut patch = serde_json::Map::new();
    patch.insert("cores".into(), json!(16));
    sim.control()
        .update_guest(None, vmid as u32, &patch)
        .unwrap();
    let (_, c2) = pve.get_json(&path).await;
    assert_eq!(c2["data"]["cores"], 16);
    assert_ne!(c1["data"]["digest"], c2["data"]["digest"]);

    // Pending changes are applied unless current=1.
    let mut patch = serde_json::Map::new();
    patch.insert("pending".into(), json!({"cores": 32, "onboot": null}));
    sim.control()
        .update_guest(None, vmid as u32, &patch)
        .unwrap();
    let (_, pending) = pve.get_json(&path).await;
    let (_, current) = pve.get_json(&format!("{path}?current=1")).await;
    assert_eq!(pending["data"]["cores"], 32);
    assert!(pending["data"].get("onboot").is_none());
    assert_eq!(current["data"]["cores"], 16);

    // Wrong node: 500 with PVE's message.
    let other = if node == "pve1" { "pve2" } else { "pve1" };
    let r = pve.get(&format!("/nodes/{other}/qemu/{vmid}/config")).await;
    assert_eq!(r.status(), 500);
    assert_eq!(
        reason(&r).unwrap(),
        format!("Configuration file 'nodes/{other}/qemu-server/{vmid}.conf' does not exist")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"], Value::Null);
    assert_eq!(
        v["message"],
        format!("Configuration file 'nodes/{other}/qemu-server/{vmid}.conf' does not exist\n")
    );
}

#[tokio::test]
async fn pve7_switches_memory_type_and_message_placement() {
    let sim = start_cfg(SimConfig {
        inventory: InventorySpec {
            vms: 40,
            nodes: 1,
            clusters: 1,
            standalone: 0,
            seed: 5,
        },
        pve_version: "7".parse().unwrap(),
        ..SimConfig::default()
    })
    .await;
    let pve = Pve::new(&sim, 0);
    let (_, v) = pve.get_json("/version").await;
    assert_eq!(v["data"]["version"], "7.4-17");
    let (_, v) = pve.get_json("/cluster/resources?type=vm").await;
    let q = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "qemu")
        .unwrap()
        .clone();
    assert!(q.get("memhost").is_none());
    let (_, c) = pve
        .get_json(&format!("/nodes/pve1/qemu/{}/config", q["vmid"]))
        .await;
    assert!(c["data"]["memory"].is_u64(), "PVE 7: memory is an integer");
    let r = pve.get("/nodes/pve1/qemu/999999/config").await;
    assert_eq!(r.status(), 500);
    assert!(reason(&r).unwrap().starts_with("Configuration file"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"data": null}),
        "no message in the body before libpve-http-server-perl 5.2.0"
    );
}

#[tokio::test]
async fn token_view_hides_guests_silently() {
    let sim = start(20, 1, 1).await;
    let pve = Pve::new(&sim, 0);
    let (_, v) = pve.get_json("/cluster/resources?type=vm").await;
    let ids: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["vmid"].as_u64().unwrap())
        .collect();
    sim.control()
        .set_token_view(None, Some(ids[..5].iter().map(|v| *v as u32).collect()))
        .unwrap();
    let (s, v) = pve.get_json("/cluster/resources?type=vm").await;
    assert_eq!(s, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 5);
    let hidden = ids[10];
    let (_, all) = pve.get_json("/cluster/resources").await;
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["vmid"] != hidden)
    );
    let r = pve.get(&format!("/nodes/pve1/qemu/{hidden}/config")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        reason(&r).unwrap(),
        format!("Permission check failed (/vms/{hidden}, VM.Audit)")
    );
    sim.control().set_token_view(None, None).unwrap();
    let (_, v) = pve.get_json("/cluster/resources?type=vm").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn tasks_filters_paging_and_upids() {
    let sim = start(10, 1, 1).await;
    let pve = Pve::new(&sim, 0);
    let upids = sim
        .control()
        .add_tasks(
            (0..7)
                .map(|i| pve2netbox_testkit::NewTask {
                    node: "pve1".into(),
                    vmid: Some(4242),
                    kind: "qmstart".into(),
                    user: Some("sync@pve".into()),
                    tokenid: Some("netbox".into()),
                    starttime: Some(1_800_000_000 + i * 100),
                    ..Default::default()
                })
                .collect(),
        )
        .unwrap();
    assert!(
        upids[0].starts_with("UPID:pve1:") && upids[0].ends_with(":qmstart:4242:sync@pve!netbox:"),
        "{}",
        upids[0]
    );
    let (s, v) = pve.get_json("/nodes/pve1/tasks?vmid=4242&limit=3").await;
    assert_eq!(s, 200);
    assert_eq!(v["total"], 7);
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["starttime"], 1_800_000_600u64, "newest first");
    assert_eq!(rows[0]["id"], "4242");
    assert_eq!(rows[0]["user"], "sync@pve");
    assert_eq!(rows[0]["tokenid"], "netbox");
    assert_eq!(rows[0]["status"], "OK");
    let (_, v) = pve
        .get_json("/nodes/pve1/tasks?vmid=4242&limit=3&start=6")
        .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["starttime"], 1_800_000_000u64);
    let (_, v) = pve
        .get_json("/nodes/pve1/tasks?vmid=4242&since=1800000500")
        .await;
    assert_eq!(v["total"], 2);
    // UPID grammar: UPID:node:PID(8 hex):PSTART:STARTTIME(8 hex):type:id:user:
    let u = rows[0]["upid"].as_str().unwrap();
    let parts: Vec<&str> = u.split(':').collect();
    assert_eq!(parts.len(), 9);
    assert_eq!(parts[2].len(), 8);
    assert_eq!(u64::from_str_radix(parts[4], 16).unwrap(), 1_800_000_600);
}

#[tokio::test]
async fn standalone_and_cluster_status_and_join() {
    let sim = start_cfg(SimConfig {
        inventory: InventorySpec {
            vms: 30,
            nodes: 2,
            clusters: 1,
            standalone: 1,
            seed: 9,
        },
        ..SimConfig::default()
    })
    .await;
    let eps = sim.pve_endpoints();
    assert_eq!(eps.len(), 2);
    let cl = Pve::new(&sim, 0);
    let (_, v) = cl.get_json("/cluster/status").await;
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.iter().filter(|r| r["type"] == "cluster").count(), 1);
    assert_eq!(rows[0]["quorate"], 1);
    let (_, join) = cl.get_json("/cluster/config/join").await;
    let list = join["data"]["nodelist"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|n| n["pve_fp"] == eps[0].fingerprint));

    let sa = Pve {
        client: pve_client(&eps[1]),
        ep: eps[1].clone(),
    };
    let (_, v) = sa.get_json("/cluster/status").await;
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "standalone: no cluster row");
    assert_eq!(rows[0]["type"], "node");
    assert_eq!(rows[0]["nodeid"], 0);
    assert_eq!(sa.get("/cluster/config/join").await.status(), 500);
    // Each endpoint has its own token and CA.
    assert_ne!(eps[0].token, eps[1].token);
    let wrong = pve_client(&eps[0]);
    assert!(
        wrong
            .get(format!("{}/api2/json/version", eps[1].url))
            .send()
            .await
            .is_err(),
        "another cluster's CA must not verify"
    );
}

#[tokio::test]
async fn agent_and_lxc_interfaces() {
    let sim = start(80, 1, 1).await;
    let pve = Pve::new(&sim, 0);
    let guests = sim.control().pve_guests(None).unwrap();
    let qemu_agent = guests
        .iter()
        .find(|g| g["type"] == "qemu" && g["status"] == "running" && g["config"]["agent"] == "1")
        .expect("a running qemu guest with agent");
    let (s, v) = pve
        .get_json(&format!(
            "/nodes/pve1/qemu/{}/agent/network-get-interfaces",
            qemu_agent["vmid"]
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["result"][0]["name"], "lo");
    let mac = v["data"]["result"][1]["hardware-address"].as_str().unwrap();
    assert_eq!(mac, mac.to_lowercase());
    let no_agent = guests
        .iter()
        .find(|g| g["type"] == "qemu" && g["config"].get("agent").is_none())
        .expect("qemu without agent");
    let (s, v) = pve
        .get_json(&format!(
            "/nodes/pve1/qemu/{}/agent/network-get-interfaces",
            no_agent["vmid"]
        ))
        .await;
    assert_eq!(s, 500);
    assert_eq!(v["message"], "No QEMU guest agent configured\n");
    let stopped_ct = guests
        .iter()
        .find(|g| g["type"] == "lxc" && g["status"] == "stopped")
        .expect("stopped ct");
    let (s, v) = pve
        .get_json(&format!(
            "/nodes/pve1/lxc/{}/interfaces",
            stopped_ct["vmid"]
        ))
        .await;
    assert_eq!((s, v), (200, json!({"data": null})));
}
