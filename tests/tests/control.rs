//! The control API over HTTP: counters, faults, guest changes, node state, token views,
//! NetBox object reads, as a test in another language would drive them.

mod common;

use common::{Nb, Pve, start};
use serde_json::{Value, json};

async fn ctl(
    c: &reqwest::Client,
    sim: &pve2netbox_testkit::SimHandle,
    m: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = c.request(m, format!("{}{path}", sim.control_url()));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn counters_and_reset() {
    let sim = start(5, 1, 1).await;
    let c = reqwest::Client::new();
    let nb = Nb::new(&sim);
    let pve = Pve::new(&sim, 0);
    nb.get("/api/status/").await;
    nb.get("/api/virtualization/virtual-machines/1/").await;
    nb.post(
        "/api/extras/tags/",
        json!([{"name": "a", "slug": "a"}, {"name": "b", "slug": "b"}]),
    )
    .await;
    pve.get("/version").await;
    let (s, v) = ctl(&c, &sim, reqwest::Method::GET, "/counters", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["netbox"],
        json!({"GET": 2, "POST": 1, "PATCH": 0, "PUT": 0, "DELETE": 0})
    );
    assert_eq!(v["pve"]["GET"], 1);
    assert_eq!(
        v["paths"]["netbox"]["GET /api/virtualization/virtual-machines/{id}/"],
        1
    );
    assert_eq!(v["paths"]["pve"]["GET /api2/json/version"], 1);
    ctl(&c, &sim, reqwest::Method::POST, "/counters/reset", None).await;
    let (_, v) = ctl(&c, &sim, reqwest::Method::GET, "/counters", None).await;
    assert_eq!(v["netbox"]["GET"], 0);
    assert_eq!(v["pve"]["GET"], 0);
}

#[tokio::test]
async fn faults_errors_retry_after_and_drop_after_commit() {
    let sim = start(5, 1, 1).await;
    let c = reqwest::Client::new();
    let nb = Nb::new(&sim);
    let (s, v) = ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/faults",
        Some(json!({"service": "netbox", "error_rate": 1.0, "retry_after_s": 7})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["error_rate"], 1.0);
    let r = nb
        .req(reqwest::Method::GET, "/api/status/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    // Absent keys keep their value.
    let (_, v) = ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/faults",
        Some(json!({"service": "netbox", "latency_ms": 1})),
    )
    .await;
    assert_eq!(
        (v["error_rate"].as_f64(), v["retry_after_s"].as_u64()),
        (Some(1.0), Some(7))
    );
    ctl(&c, &sim, reqwest::Method::DELETE, "/faults", None).await;
    assert_eq!(nb.get("/api/status/").await.0, 200);

    // A write is committed but the connection drops before the answer.
    ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/faults",
        Some(json!({"service": "netbox", "drop_after_commit_rate": 1.0})),
    )
    .await;
    let r = nb
        .req(reqwest::Method::POST, "/api/extras/tags/")
        .json(&json!({"name": "t", "slug": "t"}))
        .send()
        .await;
    assert!(r.is_err(), "the client sees no response");
    ctl(&c, &sim, reqwest::Method::DELETE, "/faults", None).await;
    let (s, tags) = ctl(&c, &sim, reqwest::Method::GET, "/netbox/objects/tags", None).await;
    assert_eq!(s, 200);
    assert_eq!(tags.as_array().unwrap().len(), 1, "but the tag exists");
    assert_eq!(tags[0]["slug"], "t");

    let (s, _) = ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/faults",
        Some(json!({"service": "nope"})),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn guests_nodes_and_token_view_over_http() {
    let sim = start(10, 2, 1).await;
    let c = reqwest::Client::new();
    let pve = Pve::new(&sim, 0);
    let (s, v) = ctl(&c, &sim, reqwest::Method::POST, "/pve/guests",
        Some(json!({"vmid": 5000, "type": "lxc", "node": "pve2", "config": {"hostname": "new-ct", "memory": 512, "tags": "a;b"}}))).await;
    assert_eq!(s, 201, "{v}");
    let (_, res) = pve.get_json("/cluster/resources?type=vm").await;
    let row = res["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vmid"] == 5000)
        .unwrap()
        .clone();
    assert_eq!(
        (
            row["name"].as_str(),
            row["tags"].as_str(),
            row["maxmem"].as_u64()
        ),
        (Some("new-ct"), Some("a;b"), Some(512 * 1024 * 1024))
    );
    // Rename + migrate.
    let (s, _) = ctl(
        &c,
        &sim,
        reqwest::Method::PATCH,
        "/pve/guests/5000",
        Some(json!({"name": "renamed", "node": "pve1", "tags": ["x"]})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, cfg) = pve.get_json("/nodes/pve1/lxc/5000/config").await;
    assert_eq!(cfg["data"]["hostname"], "renamed");
    assert_eq!(cfg["data"]["tags"], "x");
    assert_eq!(pve.get("/nodes/pve2/lxc/5000/config").await.status(), 500);
    // Node offline / online.
    let (s, _) = ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/pve/nodes/pve1/offline",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        pve.get("/nodes/pve1/lxc/5000/config")
            .await
            .status()
            .as_u16(),
        595
    );
    ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/pve/nodes/pve1/online",
        None,
    )
    .await;
    assert_eq!(
        ctl(
            &c,
            &sim,
            reqwest::Method::POST,
            "/pve/nodes/pve9/offline",
            None
        )
        .await
        .0,
        404
    );
    // Token view.
    ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/pve/token-view",
        Some(json!([5000])),
    )
    .await;
    let (_, res) = pve.get_json("/cluster/resources?type=vm").await;
    assert_eq!(res["data"].as_array().unwrap().len(), 1);
    ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/pve/token-view",
        Some(Value::Null),
    )
    .await;
    // Delete.
    assert_eq!(
        ctl(&c, &sim, reqwest::Method::DELETE, "/pve/guests/5000", None)
            .await
            .0,
        200
    );
    assert_eq!(
        ctl(&c, &sim, reqwest::Method::DELETE, "/pve/guests/5000", None)
            .await
            .0,
        404
    );
    let (_, res) = pve.get_json("/cluster/resources?type=vm").await;
    assert_eq!(res["data"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn ambiguous_vmid_needs_cluster() {
    let sim = start(10, 2, 2).await;
    let c = reqwest::Client::new();
    let (s, v) = ctl(
        &c,
        &sim,
        reqwest::Method::PATCH,
        "/pve/guests/100",
        Some(json!({"cores": 3})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = ctl(
        &c,
        &sim,
        reqwest::Method::PATCH,
        "/pve/guests/100?cluster=pve-cl2",
        Some(json!({"cores": 3})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, g) = ctl(
        &c,
        &sim,
        reqwest::Method::GET,
        "/pve/guests?cluster=pve-cl2",
        None,
    )
    .await;
    assert_eq!(g[0]["config"]["cores"], 3);
    let (_, e) = ctl(&c, &sim, reqwest::Method::GET, "/endpoints", None).await;
    assert_eq!(e["pve"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn config_faults_fail_chosen_guests_with_pve_bodies() {
    let sim = start(4, 1, 1).await;
    let c = reqwest::Client::new();
    let pve = Pve::new(&sim, 0);
    let (_, guests) = ctl(&c, &sim, reqwest::Method::GET, "/pve/guests", None).await;
    let path = |i: usize| {
        let g = &guests[i];
        format!(
            "/nodes/{}/{}/{}/config",
            g["node"].as_str().unwrap(),
            g["type"].as_str().unwrap(),
            g["vmid"]
        )
    };
    let (v0, v1) = (guests[0]["vmid"].clone(), guests[1]["vmid"].clone());
    let (s, _) = ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/pve/config-faults",
        Some(json!({"vmids": [v0], "status": 500, "message": "unable to read config"})),
    )
    .await;
    assert_eq!(s, 200);
    // The chosen guest fails with PVE's envelope (PVE 9 puts the message in the body too);
    // the others still read.
    let r = pve.get(&path(0)).await;
    assert_eq!(r.status().as_u16(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"data": null, "message": "unable to read config\n"})
    );
    let (s, v) = pve.get_json(&path(1)).await;
    assert_eq!(s, 200);
    assert!(v["data"]["digest"].is_string());
    // The listing is unaffected: only the config read fails.
    let (_, res) = pve.get_json("/cluster/resources?type=vm").await;
    assert_eq!(res["data"].as_array().unwrap().len(), 4);
    // A proxy failure code has no body; the default status and message apply when absent.
    ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/pve/config-faults",
        Some(json!({"vmids": [v1], "status": 595, "message": "No route to host"})),
    )
    .await;
    let r = pve.get(&path(1)).await;
    assert_eq!(r.status().as_u16(), 595);
    assert!(r.bytes().await.unwrap().is_empty());
    ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/pve/config-faults",
        Some(json!({"vmids": [v0]})),
    )
    .await;
    let (s, v) = pve.get_json(&path(0)).await;
    assert_eq!(
        (s, v),
        (500, json!({"data": null, "message": "got timeout\n"}))
    );
    // Bad requests are refused; DELETE clears everything.
    let (s, _) = ctl(
        &c,
        &sim,
        reqwest::Method::POST,
        "/pve/config-faults",
        Some(json!({"vmids": [v0], "status": 200})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = ctl(
        &c,
        &sim,
        reqwest::Method::DELETE,
        "/pve/config-faults",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(pve.get_json(&path(0)).await.0, 200);
    assert_eq!(pve.get_json(&path(1)).await.0, 200);
}
