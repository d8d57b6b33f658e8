//! The control surface of the simulators: a Rust API ([`Control`]) and the same operations
//! as a JSON HTTP API on loopback, for tests written in any language.
//!
//! Routes: `GET /counters`, `POST /counters/reset`, `GET|POST|DELETE /faults`,
//! `GET|POST /pve/guests`, `PATCH|DELETE /pve/guests/{vmid}`, `POST /pve/nodes/{node}/offline|online`,
//! `POST /pve/token-view`, `POST|DELETE /pve/config-faults`, `POST /pve/tasks`, `GET|POST|PATCH|DELETE /netbox/objects/{type}`,
//! `POST /netbox/settings`, `POST /netbox/reset`, `GET /endpoints`, `GET /health`. Guest routes take `?cluster=NAME`
//! when a vmid exists in several clusters.

use crate::inventory::{Guest, GuestKind, Task, generate_guest_with_seed};
use crate::netbox::NetboxSim;
use crate::pve::PveEndpoint;
use crate::service::{FaultPatch, FaultSettings, SeededDraws, ServiceCtl, ServiceKind};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A control operation that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Unknown cluster, node, guest or object type.
    #[error("control: not found: {0}")]
    NotFound(String),
    /// Already exists, or ambiguous without `cluster`.
    #[error("control: conflict: {0}")]
    Conflict(String),
    /// Malformed request.
    #[error("control: bad request: {0}")]
    BadRequest(String),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self {
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// Request counters of both services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CounterSnapshot {
    /// NetBox requests per method (`GET`, `POST`, `PATCH`, `PUT`, `DELETE`, `OTHER` if any). A bulk request counts once.
    pub netbox: BTreeMap<String, u64>,
    /// Proxmox requests per method, all endpoints together.
    pub pve: BTreeMap<String, u64>,
    /// Per `"METHOD /path"` (numeric segments as `{id}`), per service.
    pub paths: BTreeMap<String, BTreeMap<String, u64>>,
    /// Most NetBox writes (POST, PATCH, PUT, DELETE) in flight at once since the last reset,
    /// counted from a request's arrival to its answer: above 1 only when a client overlapped
    /// its writes.
    #[serde(default)]
    pub netbox_max_writes_in_flight: u64,
}

impl CounterSnapshot {
    /// NetBox requests of one method.
    pub fn netbox(&self, method: &str) -> u64 {
        self.netbox.get(method).copied().unwrap_or(0)
    }
    /// Proxmox requests of one method.
    pub fn pve(&self, method: &str) -> u64 {
        self.pve.get(method).copied().unwrap_or(0)
    }
    /// NetBox writes (POST + PATCH + PUT + DELETE).
    pub fn netbox_writes(&self) -> u64 {
        ["POST", "PATCH", "PUT", "DELETE"]
            .iter()
            .map(|m| self.netbox(m))
            .sum()
    }
}

/// A guest to add.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewGuest {
    /// Endpoint name; default: the endpoint owning `node`, else the first.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Default: the next free vmid of the endpoint.
    #[serde(default)]
    pub vmid: Option<u32>,
    /// `qemu` (default) or `lxc`.
    #[serde(default, rename = "type")]
    pub kind: Option<GuestKind>,
    /// Default: the endpoint's first node.
    #[serde(default)]
    pub node: Option<String>,
    /// `running` (default) or `stopped`.
    #[serde(default)]
    pub status: Option<String>,
    /// Raw config; absent: a realistic generated config.
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
}

/// A task to add.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewTask {
    /// Endpoint name; default: the endpoint owning `node`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Node that ran it.
    pub node: String,
    /// Guest the task is about (its `id`).
    #[serde(default)]
    pub vmid: Option<u32>,
    /// Task type (`qmstart`, `vzdump`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Default `root@pam`.
    #[serde(default)]
    pub user: Option<String>,
    /// Token name when a token started it.
    #[serde(default)]
    pub tokenid: Option<String>,
    /// Default `OK`; `RUNNING` makes a running task (no endtime).
    #[serde(default)]
    pub status: Option<String>,
    /// Default now.
    #[serde(default)]
    pub starttime: Option<u64>,
    /// Default starttime + 5 (none when running).
    #[serde(default)]
    pub endtime: Option<u64>,
}

/// Controls the running simulators (shared by the Rust API and the HTTP control API).
pub struct Control {
    pub(crate) pve: Vec<Arc<PveEndpoint>>,
    pub(crate) netbox: Arc<NetboxSim>,
    pub(crate) pve_ctl: Arc<ServiceCtl>,
    pub(crate) netbox_ctl: Arc<ServiceCtl>,
    pub(crate) netbox_base: String,
    pub(crate) seed: u64,
    pub(crate) pve_urls: Vec<String>,
    pub(crate) pve_ca_pems: Vec<String>,
}

impl Control {
    fn ctl(&self, s: ServiceKind) -> &ServiceCtl {
        match s {
            ServiceKind::Netbox => &self.netbox_ctl,
            ServiceKind::Pve => &self.pve_ctl,
        }
    }

    /// Request counters.
    pub fn counters(&self) -> CounterSnapshot {
        let mut paths = BTreeMap::new();
        paths.insert("netbox".to_string(), self.netbox_ctl.counters.paths());
        paths.insert("pve".to_string(), self.pve_ctl.counters.paths());
        CounterSnapshot {
            netbox: self.netbox_ctl.counters.methods(),
            pve: self.pve_ctl.counters.methods(),
            paths,
            netbox_max_writes_in_flight: self.netbox_ctl.counters.max_writes_in_flight(),
        }
    }

    /// Zeroes all counters.
    pub fn reset_counters(&self) {
        self.netbox_ctl.counters.reset();
        self.pve_ctl.counters.reset();
    }

    /// Changes a service's faults; absent keys keep their value.
    pub fn set_faults(&self, service: ServiceKind, patch: &FaultPatch) {
        let ctl = self.ctl(service);
        ctl.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply(patch);
        if let Some(seed) = patch.seed {
            *ctl.fault_rng.lock().unwrap_or_else(|e| e.into_inner()) = Some(SeededDraws::new(seed));
        }
    }

    /// Current faults of a service.
    pub fn faults(&self, service: ServiceKind) -> FaultSettings {
        self.ctl(service).faults()
    }

    /// Clears all faults of both services.
    pub fn clear_faults(&self) {
        for s in [ServiceKind::Netbox, ServiceKind::Pve] {
            *self.ctl(s).faults.lock().unwrap_or_else(|e| e.into_inner()) =
                FaultSettings::default();
            *self
                .ctl(s)
                .fault_rng
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    fn endpoint(&self, name: &str) -> Result<&Arc<PveEndpoint>, ControlError> {
        self.pve
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| ControlError::NotFound(format!("no Proxmox endpoint '{name}'")))
    }

    /// The endpoint holding `vmid` (or the named one).
    fn endpoint_of(
        &self,
        cluster: Option<&str>,
        vmid: u32,
    ) -> Result<&Arc<PveEndpoint>, ControlError> {
        if let Some(c) = cluster {
            return self.endpoint(c);
        }
        let hits: Vec<&Arc<PveEndpoint>> = self.pve.iter().filter(|e| e.has_guest(vmid)).collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => Err(ControlError::NotFound(format!(
                "no guest {vmid} in any Proxmox endpoint"
            ))),
            many => Err(ControlError::Conflict(format!(
                "vmid {vmid} exists in {}: pass cluster",
                many.iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn endpoint_of_node(&self, node: &str) -> Result<&Arc<PveEndpoint>, ControlError> {
        self.pve
            .iter()
            .find(|e| e.node_names().iter().any(|n| n == node))
            .ok_or_else(|| ControlError::NotFound(format!("no Proxmox node '{node}'")))
    }

    /// Adds a guest; returns `(endpoint name, vmid)`.
    pub fn add_guest(&self, g: NewGuest) -> Result<(String, u32), ControlError> {
        let ep = match (&g.cluster, &g.node) {
            (Some(c), _) => self.endpoint(c)?,
            (None, Some(n)) => self.endpoint_of_node(n)?,
            (None, None) => self
                .pve
                .first()
                .ok_or_else(|| ControlError::NotFound("no Proxmox endpoint".into()))?,
        };
        let node = g
            .node
            .clone()
            .or_else(|| ep.node_names().first().cloned())
            .unwrap_or_default();
        let vmid = g.vmid.unwrap_or_else(|| ep.next_free_vmid());
        let kind = g.kind.unwrap_or(GuestKind::Qemu);
        let mut guest = match &g.config {
            Some(cfg) => {
                let mut guest = match kind {
                    GuestKind::Qemu => Guest::qemu(vmid, &node),
                    GuestKind::Lxc => Guest::lxc(vmid, &node),
                };
                for (k, v) in cfg {
                    guest = guest.with(k, v.clone());
                }
                guest
            }
            None => generate_guest_with_seed(self.seed, kind, vmid, &node),
        };
        guest.status = g.status.clone().unwrap_or_else(|| "running".into());
        ep.add_guest(guest)?;
        Ok((ep.name.clone(), vmid))
    }

    /// Edits a guest: config keys (null deletes), and `node`, `status`, `name`, `tags`,
    /// `pending`, `delete`, `agent_running`.
    pub fn update_guest(
        &self,
        cluster: Option<&str>,
        vmid: u32,
        patch: &Map<String, Value>,
    ) -> Result<(), ControlError> {
        self.endpoint_of(cluster, vmid)?.update_guest(vmid, patch)
    }

    /// Removes a guest.
    pub fn remove_guest(&self, cluster: Option<&str>, vmid: u32) -> Result<(), ControlError> {
        self.endpoint_of(cluster, vmid)?.remove_guest(vmid)
    }

    /// Guests of one endpoint (or all) as JSON.
    pub fn pve_guests(&self, cluster: Option<&str>) -> Result<Vec<Value>, ControlError> {
        let eps: Vec<&Arc<PveEndpoint>> = match cluster {
            Some(c) => vec![self.endpoint(c)?],
            None => self.pve.iter().collect(),
        };
        Ok(eps
            .iter()
            .flat_map(|e| {
                e.guests_json().into_iter().map(move |mut g| {
                    g["cluster"] = json!(e.name);
                    g
                })
            })
            .collect())
    }

    /// Takes a node offline (595 for proxied calls, `unknown` rows) or back online.
    pub fn set_node_online(&self, node: &str, online: bool) -> Result<(), ControlError> {
        if self.pve.iter().any(|e| e.set_node_online(node, online)) {
            Ok(())
        } else {
            Err(ControlError::NotFound(format!("no Proxmox node '{node}'")))
        }
    }

    /// Limits what the token sees (`None`: everything); on one endpoint or all.
    pub fn set_token_view(
        &self,
        cluster: Option<&str>,
        vmids: Option<Vec<u32>>,
    ) -> Result<(), ControlError> {
        match cluster {
            Some(c) => self.endpoint(c)?.set_view(vmids),
            None => self.pve.iter().for_each(|e| e.set_view(vmids.clone())),
        }
        Ok(())
    }

    /// Makes the config reads (`GET /nodes/{n}/{qemu|lxc}/{vmid}/config`) of these guests
    /// fail with `status` and `message`; on one endpoint or all.
    pub fn set_config_faults(
        &self,
        cluster: Option<&str>,
        vmids: &[u32],
        status: u16,
        message: &str,
    ) -> Result<(), ControlError> {
        if !(400..=599).contains(&status) {
            return Err(ControlError::BadRequest(format!(
                "config fault status {status} is not an error status (400-599)"
            )));
        }
        match cluster {
            Some(c) => self.endpoint(c)?.set_config_faults(vmids, status, message),
            None => self
                .pve
                .iter()
                .for_each(|e| e.set_config_faults(vmids, status, message)),
        }
        Ok(())
    }

    /// Clears the config read faults of one endpoint or all.
    pub fn clear_config_faults(&self, cluster: Option<&str>) -> Result<(), ControlError> {
        match cluster {
            Some(c) => self.endpoint(c)?.clear_config_faults(),
            None => self.pve.iter().for_each(|e| e.clear_config_faults()),
        }
        Ok(())
    }

    /// Adds tasks; returns their UPIDs.
    pub fn add_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<String>, ControlError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut upids = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            let ep = match &t.cluster {
                Some(c) => self.endpoint(c)?,
                None => self.endpoint_of_node(&t.node)?,
            };
            let running = t.status.as_deref() == Some("RUNNING");
            let start = t.starttime.unwrap_or(now);
            let end = if running {
                None
            } else {
                Some(t.endtime.unwrap_or(start + 5))
            };
            let status = if running {
                None
            } else {
                Some(t.status.clone().unwrap_or_else(|| "OK".into()))
            };
            let task = Task::new(
                &t.node,
                4000 + i as u32,
                (start % 0x0FFF_FFFF) + 1000,
                start,
                end,
                &t.kind,
                &t.vmid.map(|v| v.to_string()).unwrap_or_default(),
                t.user.as_deref().unwrap_or("root@pam"),
                t.tokenid.as_deref(),
                status.as_deref(),
            );
            upids.push(task.upid.clone());
            ep.add_task(task)?;
        }
        Ok(upids)
    }

    /// Every NetBox object of a type (`virtual-machines`, `journal-entries`, `tags`, ...), fully rendered.
    pub fn netbox_objects(&self, type_key: &str) -> Result<Vec<Value>, ControlError> {
        self.netbox
            .objects(type_key, &self.netbox_base)
            .ok_or_else(|| ControlError::NotFound(format!("no NetBox object type '{type_key}'")))
    }

    /// How many NetBox objects of a type there are (cheap: nothing rendered).
    pub fn netbox_count(&self, type_key: &str) -> Result<usize, ControlError> {
        self.netbox
            .count(type_key)
            .ok_or_else(|| ControlError::NotFound(format!("no NetBox object type '{type_key}'")))
    }

    /// Creates NetBox objects directly (no auth, latency or counters); one object or a list, atomic.
    pub fn netbox_create(&self, type_key: &str, body: &Value) -> Result<Vec<Value>, ControlError> {
        self.netbox
            .create_objects(type_key, body, &self.netbox_base)
            .map_err(|e| ControlError::BadRequest(e.to_string()))
    }

    /// Changes NetBox objects directly (no auth, latency, counters or change records): one
    /// `{"id": N, ...}` or a list of them, applied as PATCHes with NetBox's validation, atomic.
    pub fn netbox_update(&self, type_key: &str, body: &Value) -> Result<Vec<Value>, ControlError> {
        self.netbox
            .update_objects(type_key, body, &self.netbox_base)
            .map_err(|e| ControlError::BadRequest(e.to_string()))
    }

    /// Deletes NetBox objects directly, with NetBox's cascades (an interface takes its IP and
    /// MAC addresses along), atomic.
    pub fn netbox_delete(&self, type_key: &str, ids: &[u32]) -> Result<(), ControlError> {
        self.netbox
            .delete_objects(type_key, ids)
            .map_err(|e| ControlError::BadRequest(e.to_string()))
    }

    /// NetBox's `ENFORCE_GLOBAL_UNIQUE` setting (default true).
    pub fn netbox_enforce_global_unique(&self, on: bool) {
        self.netbox.write().enforce_global_unique = on;
    }

    /// Empties NetBox.
    pub fn netbox_reset(&self) {
        self.netbox.reset();
    }

    /// Whether NetBox records object changes (on by default; bulk loads may turn it off).
    pub fn netbox_record_changes(&self, on: bool) {
        self.netbox.write().record_changes = on;
    }
}

#[derive(Deserialize)]
struct ClusterQ {
    cluster: Option<String>,
}

type Ctl = State<Arc<Control>>;

/// The control API's router.
pub(crate) fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/endpoints", get(endpoints))
        .route(
            "/counters",
            get(|State(c): Ctl| async move { Json(c.counters()) }),
        )
        .route(
            "/counters/reset",
            post(|State(c): Ctl| async move {
                c.reset_counters();
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/faults",
            get(get_faults)
                .post(post_faults)
                .delete(|State(c): Ctl| async move {
                    c.clear_faults();
                    Json(json!({"ok": true}))
                }),
        )
        .route("/pve/guests", get(list_guests).post(add_guest))
        .route(
            "/pve/guests/{vmid}",
            patch(patch_guest).delete(delete_guest),
        )
        .route("/pve/nodes/{node}/{state}", post(node_state))
        .route("/pve/token-view", post(token_view))
        .route(
            "/pve/config-faults",
            post(config_faults).delete(clear_config_faults),
        )
        .route("/pve/tasks", post(add_tasks))
        .route(
            "/netbox/objects/{kind}",
            get(nb_objects)
                .post(nb_create)
                .patch(nb_update)
                .delete(nb_delete),
        )
        .route("/netbox/settings", post(nb_settings))
        .route(
            "/netbox/reset",
            post(|State(c): Ctl| async move {
                c.netbox_reset();
                Json(json!({"ok": true}))
            }),
        )
        .with_state(control)
}

async fn endpoints(State(c): Ctl) -> Json<Value> {
    let pve: Vec<Value> = c
        .pve
        .iter()
        .zip(c.pve_urls.iter().zip(&c.pve_ca_pems))
        .map(|(e, (url, ca))| json!({"name": e.name, "url": url, "fingerprint": e.fingerprint, "ca_pem": ca, "standalone": e.standalone,
                               "version": format!("{}.{}", e.version.major, e.version.minor), "nodes": e.node_names()}))
        .collect();
    Json(json!({"pve": pve, "netbox": {"url": c.netbox_base, "version": c.netbox.version.full()}}))
}

async fn get_faults(State(c): Ctl) -> Json<Value> {
    Json(json!({"netbox": c.faults(ServiceKind::Netbox), "pve": c.faults(ServiceKind::Pve)}))
}

async fn post_faults(
    State(c): Ctl,
    body: Result<Json<FaultPatch>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ControlError> {
    let Json(p) = body.map_err(|e| ControlError::BadRequest(e.body_text()))?;
    let service = p
        .service
        .ok_or_else(|| ControlError::BadRequest("service is required (netbox|pve)".into()))?;
    c.set_faults(service, &p);
    Ok(Json(json!(c.faults(service))))
}

async fn list_guests(
    State(c): Ctl,
    Query(q): Query<ClusterQ>,
) -> Result<Json<Value>, ControlError> {
    Ok(Json(json!(c.pve_guests(q.cluster.as_deref())?)))
}

async fn add_guest(
    State(c): Ctl,
    body: Result<Json<NewGuest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    let Json(g) = body.map_err(|e| ControlError::BadRequest(e.body_text()))?;
    let (cluster, vmid) = c.add_guest(g)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"cluster": cluster, "vmid": vmid})),
    ))
}

async fn patch_guest(
    State(c): Ctl,
    Path(vmid): Path<u32>,
    Query(q): Query<ClusterQ>,
    body: Result<Json<Map<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ControlError> {
    let Json(p) = body.map_err(|e| ControlError::BadRequest(e.body_text()))?;
    c.update_guest(q.cluster.as_deref(), vmid, &p)?;
    Ok(Json(json!({"ok": true})))
}

async fn delete_guest(
    State(c): Ctl,
    Path(vmid): Path<u32>,
    Query(q): Query<ClusterQ>,
) -> Result<Json<Value>, ControlError> {
    c.remove_guest(q.cluster.as_deref(), vmid)?;
    Ok(Json(json!({"ok": true})))
}

async fn node_state(
    State(c): Ctl,
    Path((node, state)): Path<(String, String)>,
) -> Result<Json<Value>, ControlError> {
    let online = match state.as_str() {
        "online" => true,
        "offline" => false,
        other => {
            return Err(ControlError::NotFound(format!(
                "no route /pve/nodes/{node}/{other} (offline|online)"
            )));
        }
    };
    c.set_node_online(&node, online)?;
    Ok(Json(json!({"ok": true})))
}

/// Body: a list of vmids, `null`, or `{"vmids": [...]|null, "cluster": "name"}`.
async fn token_view(State(c): Ctl, Json(body): Json<Value>) -> Result<Json<Value>, ControlError> {
    let parse = |v: &Value| -> Result<Option<Vec<u32>>, ControlError> {
        match v {
            Value::Null => Ok(None),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|n| n as u32)
                        .ok_or_else(|| ControlError::BadRequest("vmids must be integers".into()))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Err(ControlError::BadRequest(
                "expected a list of vmids or null".into(),
            )),
        }
    };
    let (cluster, vmids) = match &body {
        Value::Object(m) => (
            m.get("cluster").and_then(Value::as_str),
            parse(m.get("vmids").unwrap_or(&Value::Null))?,
        ),
        other => (None, parse(other)?),
    };
    c.set_token_view(cluster, vmids)?;
    Ok(Json(json!({"ok": true})))
}

/// What a config read fault answers when the body does not say.
const DEFAULT_CONFIG_FAULT_STATUS: u16 = 500;
const DEFAULT_CONFIG_FAULT_MESSAGE: &str = "got timeout";

#[derive(Deserialize)]
struct ConfigFaults {
    cluster: Option<String>,
    vmids: Vec<u32>,
    status: Option<u16>,
    message: Option<String>,
}

/// Body: `{"cluster"?, "vmids": [...], "status"? (500), "message"? ("got timeout")}`.
async fn config_faults(
    State(c): Ctl,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ControlError> {
    let f: ConfigFaults =
        serde_json::from_value(body).map_err(|e| ControlError::BadRequest(e.to_string()))?;
    c.set_config_faults(
        f.cluster.as_deref(),
        &f.vmids,
        f.status.unwrap_or(DEFAULT_CONFIG_FAULT_STATUS),
        f.message.as_deref().unwrap_or(DEFAULT_CONFIG_FAULT_MESSAGE),
    )?;
    Ok(Json(json!({"ok": true})))
}

async fn clear_config_faults(
    State(c): Ctl,
    Query(q): Query<ClusterQ>,
) -> Result<Json<Value>, ControlError> {
    c.clear_config_faults(q.cluster.as_deref())?;
    Ok(Json(json!({"ok": true})))
}

async fn add_tasks(
    State(c): Ctl,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    let tasks: Vec<NewTask> = match body {
        Value::Array(_) => serde_json::from_value(body),
        one => serde_json::from_value(one).map(|t| vec![t]),
    }
    .map_err(|e| ControlError::BadRequest(e.to_string()))?;
    let upids = c.add_tasks(tasks)?;
    Ok((StatusCode::CREATED, Json(json!({"upids": upids}))))
}

async fn nb_objects(State(c): Ctl, Path(kind): Path<String>) -> Result<Json<Value>, ControlError> {
    Ok(Json(json!(c.netbox_objects(&kind)?)))
}

async fn nb_update(
    State(c): Ctl,
    Path(kind): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ControlError> {
    Ok(Json(json!(c.netbox_update(&kind, &body)?)))
}

/// Body: a list of ids.
async fn nb_delete(
    State(c): Ctl,
    Path(kind): Path<String>,
    Json(ids): Json<Vec<u32>>,
) -> Result<StatusCode, ControlError> {
    c.netbox_delete(&kind, &ids)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body: `{"enforce_global_unique": bool}`.
async fn nb_settings(State(c): Ctl, Json(body): Json<Value>) -> Result<Json<Value>, ControlError> {
    match body.get("enforce_global_unique").and_then(Value::as_bool) {
        Some(on) => c.netbox_enforce_global_unique(on),
        None => {
            return Err(ControlError::BadRequest(
                "expected {\"enforce_global_unique\": true|false}".to_string(),
            ));
        }
    }
    Ok(Json(json!({"ok": true})))
}

async fn nb_create(
    State(c): Ctl,
    Path(kind): Path<String>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    Ok((
        StatusCode::CREATED,
        Json(json!(c.netbox_create(&kind, &body)?)),
    ))
}
