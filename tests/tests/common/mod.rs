//! Shared helpers of the simulator tests: start simulators, build clients that trust the
//! Proxmox CA (never `danger_accept_invalid_certs`), small request helpers.
#![allow(dead_code)]

use pve2netbox_testkit::{InventorySpec, PveEndpointInfo, SimConfig, SimHandle, Simulators};
use serde_json::Value;

pub async fn start(vms: usize, nodes: usize, clusters: usize) -> SimHandle {
    start_cfg(SimConfig {
        inventory: InventorySpec {
            vms,
            nodes,
            clusters,
            standalone: 0,
            seed: 42,
        },
        ..SimConfig::default()
    })
    .await
}

pub async fn start_cfg(cfg: SimConfig) -> SimHandle {
    Simulators::start(cfg).await.expect("simulators start")
}

/// A client that verifies the endpoint's chain against its CA.
pub fn pve_client(ep: &PveEndpointInfo) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ep.ca_pem.as_bytes()).expect("ca pem");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_info(true)
        .build()
        .expect("client")
}

pub struct Pve {
    pub client: reqwest::Client,
    pub ep: PveEndpointInfo,
}

impl Pve {
    pub fn new(sim: &SimHandle, i: usize) -> Pve {
        let ep = sim.pve_endpoints()[i].clone();
        Pve {
            client: pve_client(&ep),
            ep,
        }
    }
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api2/json{path}", self.ep.url))
            .header("Authorization", format!("PVEAPIToken={}", self.ep.token))
            .send()
            .await
            .expect("pve request")
    }
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let s = r.status().as_u16();
        (s, r.json().await.expect("pve json"))
    }
}

pub struct Nb {
    pub client: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Nb {
    pub fn new(sim: &SimHandle) -> Nb {
        Nb {
            client: reqwest::Client::new(),
            url: sim.netbox_url().to_string(),
            token: sim.netbox_token().to_string(),
        }
    }
    pub fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(m, format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {}", self.token))
    }
    pub async fn send(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.req(m, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("netbox request");
        let s = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            s,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        )
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, body).await
    }

    /// The objects a sync's preflight creates: returns (site, cluster, role) ids.
    pub async fn preflight(&self) -> (u64, u64, u64) {
        let (s, site) = self
            .post(
                "/api/dcim/sites/",
                serde_json::json!({"name": "DC1", "slug": "dc1"}),
            )
            .await;
        assert_eq!(s, 201, "{site}");
        let (s, ct) = self
            .post(
                "/api/virtualization/cluster-types/",
                serde_json::json!({"name": "Proxmox VE", "slug": "proxmox-ve"}),
            )
            .await;
        assert_eq!(s, 201, "{ct}");
        let (s, cl) = self
            .post("/api/virtualization/clusters/", serde_json::json!({"name": "pve-cl1", "type": {"slug": "proxmox-ve"}, "scope_type": "dcim.site", "scope_id": site["id"]}))
            .await;
        assert_eq!(s, 201, "{cl}");
        let (s, role) = self
            .post(
                "/api/dcim/device-roles/",
                serde_json::json!({"name": "VM", "slug": "vm", "vm_role": true}),
            )
            .await;
        assert_eq!(s, 201, "{role}");
        for (name, kind) in [
            ("proxmox_vm_id", "integer"),
            ("proxmox_vm_type", "text"),
            ("proxmox_node", "text"),
        ] {
            let (s, cf) = self
                .post("/api/extras/custom-fields/", serde_json::json!({"name": name, "type": kind, "object_types": ["virtualization.virtualmachine"]}))
                .await;
            assert_eq!(s, 201, "{cf}");
        }
        let (s, tag) = self
            .post(
                "/api/extras/tags/",
                serde_json::json!({"name": "pve2netbox", "slug": "pve2netbox"}),
            )
            .await;
        assert_eq!(s, 201, "{tag}");
        (
            site["id"].as_u64().unwrap(),
            cl["id"].as_u64().unwrap(),
            role["id"].as_u64().unwrap(),
        )
    }
}
