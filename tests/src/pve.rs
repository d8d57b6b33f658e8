//! The Proxmox VE simulator: one HTTPS endpoint per cluster (or standalone node) under
//! `/api2/json`, serving an [`EndpointInventory`] with PVE's quirks (reference
//! proxmox-netbox-apis.md, part A and section C).
//!
//! Modelled: token auth (`PVEAPIToken=` or with a space; 401 after a configurable delay with a
//! text body), the `{"data":..}` envelope with `errors`/`message` and the reason phrase, 501 for
//! unknown paths, 595 for proxied calls to an offline node, `Connection: close` after any
//! response >= 400, `/version`, `/cluster/status`, `/cluster/config/join`, `/cluster/resources`,
//! `/nodes`, guest `config` (pending vs `current=1`, `digest`), `pending`, `status/current`,
//! the QEMU agent's `network-get-interfaces`, LXC `interfaces`, node and cluster tasks, token
//! views that silently hide guests. Not modelled: tickets/CSRF, snapshots, the 5-minute stale
//! window of an offline node (its guests turn `unknown` at once), any write API.

use crate::control::ControlError;
use crate::inventory::{EndpointInventory, Guest, GuestKind, NodeSpec, Task};
use crate::rng::mix;
use crate::service::Cost;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Modelled cost of one Proxmox request in the `realistic` profile (pveproxy plus, for
/// per-guest calls, the proxy hop; the reference gives no measurement, ~20 ms is the brief's figure).
const REALISTIC_PVE_REQUEST: Duration = Duration::from_millis(20);
/// Default `limit` of `/nodes/{n}/tasks` (pve-manager `API2/Tasks.pm`).
const TASKS_DEFAULT_LIMIT: usize = 50;
/// Tasks per node in `/cluster/tasks` (PVE trims each node's list to 32 KiB, a few dozen rows).
const CLUSTER_TASKS_PER_NODE: usize = 50;
/// Bytes in a MiB (config `memory` is MiB, listings are bytes).
const MIB: u64 = 1024 * 1024;
/// LXC rootfs size used when the volume has no `size` (pve-manager fallback).
const LXC_DEFAULT_DISK: u64 = 4 * 1024 * MIB;

/// Proxmox VE major.minor, selecting version-dependent behaviour.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PveVersion {
    /// 7, 8 or 9.
    pub major: u8,
    /// Minor release.
    pub minor: u8,
}

impl Default for PveVersion {
    fn default() -> Self {
        PveVersion { major: 9, minor: 0 }
    }
}

impl std::str::FromStr for PveVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut it = s.split('.');
        let major: u8 = it
            .next()
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| format!("bad PVE version '{s}'"))?;
        if !(7..=9).contains(&major) {
            return Err(format!("PVE version '{s}' not simulated (7, 8 or 9)"));
        }
        let minor = match it.next() {
            Some(m) => m.parse().map_err(|_| format!("bad PVE version '{s}'"))?,
            None => match major {
                7 => 4,
                8 => 2,
                _ => 0,
            },
        };
        Ok(PveVersion { major, minor })
    }
}

impl PveVersion {
    fn version_string(self) -> String {
        match self.major {
            7 => format!("7.{}-17", self.minor),
            8 => format!("8.{}.4", self.minor),
            _ => format!("{}.{}.10", self.major, self.minor),
        }
    }
    /// QEMU `memory` is a property string from qemu-server 8.0.8 (PVE 8.1).
    fn memory_is_string(self) -> bool {
        (self.major, self.minor) >= (8, 1)
    }
    /// libpve-http-server-perl 5.2.0 (PVE 8.3/8.4 updates) puts `message` in error bodies.
    fn message_in_body(self) -> bool {
        (self.major, self.minor) >= (8, 3)
    }
    fn has_memhost(self) -> bool {
        self.major >= 9
    }
    /// `lxc/{id}/interfaces` exists from pve-container 5.0.6 (PVE 8.1).
    fn has_lxc_interfaces(self) -> bool {
        (self.major, self.minor) >= (8, 1)
    }
    /// `hardware-address`/`ip-addresses` in LXC interfaces from pve-container 5.2.6 (PVE 8.4).
    fn lxc_interfaces_full(self) -> bool {
        (self.major, self.minor) >= (8, 4)
    }
    fn auth_failed_reason(self) -> &'static str {
        if self.major >= 9 {
            "Authentication failed!"
        } else {
            "authentication failure"
        }
    }
}

struct NodeState {
    spec: NodeSpec,
    online: bool,
    fingerprint: String,
}

/// A guest as the simulator holds it. The config is one compact text (`key\tT\tvalue\n`
/// lines, `T` = `n` for a JSON number or `s` for a string, `\n` and `\\` escaped): ~600
/// bytes per guest instead of ~3 KB as a map of JSON values, so 100k guests stay small.
pub(crate) struct GuestState {
    kind: GuestKind,
    node: String,
    status: String,
    text: String,
    /// Pending changes: `Some(v)` sets, `None` deletes on the next start.
    pending: Vec<(String, Option<Value>)>,
    digest: [u8; 20],
    edits: u64,
    agent_running: bool,
    /// The token lacks the agent privilege on this guest (403), as on PVE 7/8 without
    /// `VM.Monitor` or PVE 9 without `VM.GuestAgent.Audit`.
    agent_forbidden: bool,
    /// The agent call answers 595 (the owning node dropped out between the config read and the
    /// agent call, the race a sync sees on a failing node).
    agent_unreachable: bool,
    /// How long a dead agent's answer is held in every profile (the `realistic` profile holds
    /// at least qemu-server's 3 s ping timeout); lets a `zero`-profile test see a stall.
    agent_stall: Duration,
    /// The agent's `network-get-interfaces` result as set through the control API
    /// (`agent_result`), replacing the one derived from the config: lets a test reorder
    /// interfaces, move an address to another NIC or write a MAC or IPv6 address differently.
    /// Its interfaces without `statistics` are given growing counters like the derived ones.
    agent_result: Option<Value>,
    /// Answers the agent gave: its interfaces' traffic counters grow with each, as a live
    /// guest's do between two reads.
    agent_reads: AtomicU64,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl GuestState {
    pub(crate) fn from_guest(g: Guest) -> Self {
        let mut s = GuestState {
            kind: g.kind,
            node: g.node,
            status: g.status,
            text: String::new(),
            pending: Vec::new(),
            digest: [0; 20],
            edits: 0,
            agent_running: true,
            agent_forbidden: false,
            agent_unreachable: false,
            agent_stall: Duration::ZERO,
            agent_result: None,
            agent_reads: AtomicU64::new(0),
        };
        for (k, v) in g.config {
            s.append(&k, &v);
        }
        s.text.shrink_to_fit();
        s.touch();
        s
    }

    fn append(&mut self, key: &str, v: &Value) {
        let (t, raw) = match v {
            Value::Number(n) => ('n', n.to_string()),
            Value::Bool(b) => ('n', u8::from(*b).to_string()),
            Value::String(s) => ('s', escape(s)),
            other => ('s', escape(&other.to_string())),
        };
        self.text.push_str(key);
        self.text.push('\t');
        self.text.push(t);
        self.text.push('\t');
        self.text.push_str(&raw);
        self.text.push('\n');
    }

    /// `(key, is_number, escaped raw value)` in file order.
    fn entries(&self) -> impl Iterator<Item = (&str, bool, &str)> {
        self.text.lines().filter_map(|l| {
            let mut p = l.splitn(3, '\t');
            Some((p.next()?, p.next()? == "n", p.next()?))
        })
    }

    fn value_of(number: bool, raw: &str) -> Value {
        if number {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
        } else {
            Value::String(unescape(raw))
        }
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.entries()
            .find(|(k, _, _)| *k == key)
            .map(|(_, n, raw)| Self::value_of(n, raw))
    }

    /// A string property as stored (keys read internally never contain escapes).
    fn get_str(&self, key: &str) -> Option<&str> {
        self.entries()
            .find(|(k, n, _)| *k == key && !n)
            .map(|(_, _, raw)| raw)
    }

    fn config_pairs(&self) -> Vec<(String, Value)> {
        self.entries()
            .map(|(k, n, raw)| (k.to_string(), Self::value_of(n, raw)))
            .collect()
    }

    fn set(&mut self, key: &str, v: Option<Value>) {
        let old = std::mem::take(&mut self.text);
        let mut replaced = false;
        for line in old.lines() {
            if line.split('\t').next() == Some(key) {
                if let Some(v) = v.as_ref().filter(|v| !v.is_null()) {
                    if !replaced {
                        self.append(key, v);
                    }
                    replaced = true;
                }
                continue;
            }
            self.text.push_str(line);
            self.text.push('\n');
        }
        if !replaced && let Some(v) = v.as_ref().filter(|v| !v.is_null()) {
            self.append(key, v);
        }
    }

    fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// Recomputes the digest: it changes on every edit, like the SHA-1 of the config file.
    fn touch(&mut self) {
        self.edits += 1;
        let mut h = Sha256::new();
        h.update(self.edits.to_le_bytes());
        h.update(self.text.as_bytes());
        for (k, v) in &self.pending {
            h.update(k.as_bytes());
            h.update(
                v.as_ref()
                    .map(Value::to_string)
                    .unwrap_or_default()
                    .as_bytes(),
            );
        }
        // 40 hex digits, the shape of PVE's SHA-1 digest.
        self.digest.copy_from_slice(&h.finalize()[..20]);
    }

    fn name(&self, vmid: u32) -> String {
        match self.kind {
            GuestKind::Qemu => self
                .get_str("name")
                .map(str::to_string)
                .unwrap_or_else(|| format!("VM {vmid}")),
            GuestKind::Lxc => self
                .get_str("hostname")
                .map(|h| h.split_whitespace().collect::<String>())
                .unwrap_or_else(|| format!("CT{vmid}")),
        }
    }

    fn memory_mib(&self) -> u64 {
        match self.get("memory") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(512),
            Some(Value::String(s)) => prop(&s, "current")
                .and_then(|v| v.parse().ok())
                .unwrap_or(512),
            _ => 512,
        }
    }

    fn template(&self) -> bool {
        self.get("template")
            .is_some_and(|v| v.as_i64() == Some(1) || v.as_str() == Some("1"))
    }

    fn int(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    fn maxcpu(&self, host_cpus: u32) -> Value {
        match self.kind {
            GuestKind::Qemu => {
                let n = self.int("vcpus").unwrap_or_else(|| {
                    self.int("sockets").unwrap_or(1) * self.int("cores").unwrap_or(1)
                });
                json!(n.min(u64::from(host_cpus)))
            }
            GuestKind::Lxc => {
                if let Some(c) = self.int("cores") {
                    json!(c)
                } else if let Some(l) = self
                    .get_str("cpulimit")
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|l| *l > 0.0)
                {
                    json!(l)
                } else {
                    json!(host_cpus)
                }
            }
        }
    }

    fn maxdisk(&self) -> u64 {
        match self.kind {
            GuestKind::Qemu => self.boot_disk_size().unwrap_or(0),
            GuestKind::Lxc => self
                .get_str("rootfs")
                .and_then(|r| prop(r, "size"))
                .and_then(parse_size)
                .unwrap_or(LXC_DEFAULT_DISK),
        }
    }

    /// QEMU's `maxdisk` is the boot disk only: the first disk of `boot: order=`, else the
    /// first of scsi0/virtio0/sata0/ide0.
    fn boot_disk_size(&self) -> Option<u64> {
        let is_disk = |k: &str| {
            ["ide", "scsi", "virtio", "sata"]
                .iter()
                .any(|p| k.strip_prefix(p).is_some_and(|n| n.parse::<u32>().is_ok()))
        };
        let size_of = |k: &str| -> Option<u64> {
            let v = self.get_str(k)?;
            if prop(v, "media") == Some("cdrom") {
                return None;
            }
            prop(v, "size").and_then(parse_size)
        };
        if let Some(order) = self.get_str("boot").and_then(|b| prop(b, "order")) {
            for k in order.split(';') {
                if is_disk(k)
                    && let Some(s) = size_of(k)
                {
                    return Some(s);
                }
            }
        }
        ["scsi0", "virtio0", "sata0", "ide0"]
            .iter()
            .find_map(|k| size_of(k))
    }
}

/// A property-string value: `key=value`, or the part without `=` for `default_key`.
pub(crate) fn prop<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if k == key => return Some(v),
            None if key == "current" || key == "file" || key == "volume" => return Some(part),
            _ => {}
        }
    }
    None
}

/// PVE size strings: `^\d+(\.\d+)?([KMGT](iB)?)?$`, binary units, no unit = bytes.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.strip_suffix("iB").unwrap_or(s);
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.parse().ok()?;
    Some((v * mult as f64) as u64)
}

pub(crate) struct PveState {
    nodes: Vec<NodeState>,
    guests: BTreeMap<u32, GuestState>,
    tasks: HashMap<String, Vec<Task>>,
    view: Option<HashSet<u32>>,
    /// Guests whose config read fails: vmid -> (HTTP status, message).
    config_faults: HashMap<u32, (u16, String)>,
    config_version: u32,
}

impl PveState {
    fn visible(&self, vmid: u32) -> bool {
        self.view.as_ref().is_none_or(|v| v.contains(&vmid))
    }
    fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.spec.name == name)
    }
}

/// One simulated Proxmox endpoint.
pub(crate) struct PveEndpoint {
    pub(crate) name: String,
    pub(crate) standalone: bool,
    pub(crate) version: PveVersion,
    /// `USER@REALM!TOKENID`.
    pub(crate) token_id: String,
    pub(crate) token_secret: String,
    pub(crate) auth_fail_delay: Duration,
    pub(crate) fingerprint: String,
    pub(crate) state: RwLock<PveState>,
}

impl PveEndpoint {
    /// Builds an endpoint from a skeleton (nodes) and already converted guests.
    pub(crate) fn with_state(
        inv: EndpointInventory,
        guests: BTreeMap<u32, GuestState>,
        task_list: Vec<Task>,
        version: PveVersion,
        token_secret: String,
        auth_fail_delay: Duration,
        fingerprint: String,
    ) -> Self {
        let entry = inv
            .nodes
            .first()
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let nodes = inv
            .nodes
            .into_iter()
            .map(|spec| {
                // Only the entry node's certificate is served; the others get a stable,
                // distinct fingerprint so `/nodes` looks like a real cluster.
                let fp = if spec.name == entry {
                    fingerprint.clone()
                } else {
                    let d = Sha256::digest(format!("{}/{}", inv.name, spec.name));
                    d.iter()
                        .map(|b| format!("{b:02X}"))
                        .collect::<Vec<_>>()
                        .join(":")
                };
                NodeState {
                    spec,
                    online: true,
                    fingerprint: fp,
                }
            })
            .collect();
        let mut tasks: HashMap<String, Vec<Task>> = HashMap::new();
        for t in task_list {
            tasks.entry(t.node.clone()).or_default().push(t);
        }
        for list in tasks.values_mut() {
            list.sort_by_key(|t| t.starttime);
            list.shrink_to_fit();
        }
        PveEndpoint {
            name: inv.name,
            standalone: inv.standalone,
            version,
            token_id: "sync@pve!netbox".to_string(),
            token_secret,
            auth_fail_delay,
            fingerprint,
            state: RwLock::new(PveState {
                nodes,
                guests,
                tasks,
                view: None,
                config_faults: HashMap::new(),
                config_version: 3,
            }),
        }
    }

    /// The full token value for `Authorization: PVEAPIToken=<token>`.
    pub(crate) fn token(&self) -> String {
        format!("{}={}", self.token_id, self.token_secret)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, PveState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, PveState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn node_names(&self) -> Vec<String> {
        self.read()
            .nodes
            .iter()
            .map(|n| n.spec.name.clone())
            .collect()
    }

    pub(crate) fn has_guest(&self, vmid: u32) -> bool {
        self.read().guests.contains_key(&vmid)
    }

    pub(crate) fn next_free_vmid(&self) -> u32 {
        self.read().guests.keys().next_back().map_or(100, |v| v + 1)
    }

    pub(crate) fn add_guest(&self, g: Guest) -> Result<(), ControlError> {
        let mut st = self.write();
        if st.guests.contains_key(&g.vmid) {
            return Err(ControlError::Conflict(format!(
                "pve {}: vmid {} already exists",
                self.name, g.vmid
            )));
        }
        if st.node(&g.node).is_none() {
            return Err(ControlError::NotFound(format!(
                "pve {}: no node '{}'",
                self.name, g.node
            )));
        }
        st.guests.insert(g.vmid, GuestState::from_guest(g));
        Ok(())
    }

    pub(crate) fn remove_guest(&self, vmid: u32) -> Result<(), ControlError> {
        match self.write().guests.remove(&vmid) {
            Some(_) => Ok(()),
            None => Err(ControlError::NotFound(format!(
                "pve {}: no guest {vmid}",
                self.name
            ))),
        }
    }

    /// Applies a control-API patch: `node`, `status`, `agent_running`, `pending` (object of
    /// pending sets, null = pending delete), `delete` (list of keys) are special; `name` is
    /// `hostname` for LXC; `tags` may be a list; every other key is a config key (null deletes).
    pub(crate) fn update_guest(
        &self,
        vmid: u32,
        patch: &Map<String, Value>,
    ) -> Result<(), ControlError> {
        let mut st = self.write();
        let node_ok: HashSet<String> = st.nodes.iter().map(|n| n.spec.name.clone()).collect();
        let g = st
            .guests
            .get_mut(&vmid)
            .ok_or_else(|| ControlError::NotFound(format!("pve {}: no guest {vmid}", self.name)))?;
        for (k, v) in patch {
            match k.as_str() {
                "node" => {
                    let n = v
                        .as_str()
                        .ok_or_else(|| ControlError::BadRequest("node must be a string".into()))?;
                    if !node_ok.contains(n) {
                        return Err(ControlError::NotFound(format!(
                            "pve {}: no node '{n}'",
                            self.name
                        )));
                    }
                    g.node = n.to_string();
                }
                "status" => {
                    let s = v.as_str().ok_or_else(|| {
                        ControlError::BadRequest("status must be a string".into())
                    })?;
                    if s != "running" && s != "stopped" {
                        return Err(ControlError::BadRequest(format!(
                            "status '{s}': running|stopped"
                        )));
                    }
                    g.status = s.to_string();
                    if s == "stopped" || s == "running" {
                        // Starting applies pending changes, as `qm start` does.
                        if s == "running" {
                            let pending = std::mem::take(&mut g.pending);
                            for (pk, pv) in pending {
                                g.set(&pk, pv);
                            }
                        }
                    }
                }
                "agent_running" => g.agent_running = v.as_bool().unwrap_or(true),
                // `answering`, `dead` (configured, not running: 500 after the ping timeout),
                // `forbidden` (403), `off` (no agent configured: sets config `agent` to 0),
                // `unreachable` (595: the node dropped out after the config was read).
                "agent_state" => match v.as_str() {
                    Some("answering") => {
                        g.agent_running = true;
                        g.agent_forbidden = false;
                        g.agent_unreachable = false;
                    }
                    Some("dead") => {
                        g.agent_running = false;
                        g.agent_forbidden = false;
                        g.agent_unreachable = false;
                    }
                    Some("forbidden") => g.agent_forbidden = true,
                    Some("off") => {
                        g.agent_forbidden = false;
                        g.agent_unreachable = false;
                        g.set("agent", Some(json!("0")));
                    }
                    Some("unreachable") => g.agent_unreachable = true,
                    _ => {
                        return Err(ControlError::BadRequest(
                            "agent_state: answering|dead|forbidden|off|unreachable".into(),
                        ));
                    }
                },
                "agent_stall_ms" => {
                    g.agent_stall = Duration::from_millis(v.as_u64().ok_or_else(|| {
                        ControlError::BadRequest("agent_stall_ms must be a whole number".into())
                    })?);
                }
                // A literal agent answer (`result` array); null goes back to the derived one.
                "agent_result" => {
                    g.agent_result = match v {
                        Value::Null => None,
                        Value::Array(_) => Some(v.clone()),
                        _ => {
                            return Err(ControlError::BadRequest(
                                "agent_result must be a list of interfaces or null".into(),
                            ));
                        }
                    };
                }
                "pending" => {
                    let obj = v.as_object().ok_or_else(|| {
                        ControlError::BadRequest("pending must be an object".into())
                    })?;
                    for (pk, pv) in obj {
                        g.pending.retain(|(k2, _)| k2 != pk);
                        g.pending.push((
                            pk.clone(),
                            if pv.is_null() { None } else { Some(pv.clone()) },
                        ));
                    }
                }
                "delete" => {
                    for key in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        g.set(key, None);
                    }
                }
                "tags" => {
                    let t = match v {
                        Value::Array(a) => a
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(";"),
                        Value::Null => String::new(),
                        other => other.as_str().unwrap_or_default().to_string(),
                    };
                    g.set(
                        "tags",
                        if t.is_empty() {
                            None
                        } else {
                            Some(Value::String(t))
                        },
                    );
                }
                "name" if g.kind == GuestKind::Lxc => g.set("hostname", Some(v.clone())),
                key => g.set(key, Some(v.clone())),
            }
        }
        g.touch();
        Ok(())
    }

    /// Marks a node online/offline; returns false if the node is not in this endpoint.
    pub(crate) fn set_node_online(&self, node: &str, online: bool) -> bool {
        let mut st = self.write();
        match st.nodes.iter_mut().find(|n| n.spec.name == node) {
            Some(n) => {
                n.online = online;
                true
            }
            None => false,
        }
    }

    /// Makes the config reads of these guests fail with `status` and `message` (control API).
    pub(crate) fn set_config_faults(&self, vmids: &[u32], status: u16, message: &str) {
        let mut st = self.write();
        for v in vmids {
            st.config_faults.insert(*v, (status, message.to_string()));
        }
    }

    /// Clears every config read fault.
    pub(crate) fn clear_config_faults(&self) {
        self.write().config_faults.clear();
    }

    pub(crate) fn set_view(&self, vmids: Option<Vec<u32>>) {
        self.write().view = vmids.map(|v| v.into_iter().collect());
    }

    pub(crate) fn add_task(&self, t: Task) -> Result<(), ControlError> {
        let mut st = self.write();
        if st.node(&t.node).is_none() {
            return Err(ControlError::NotFound(format!(
                "pve {}: no node '{}'",
                self.name, t.node
            )));
        }
        let list = st.tasks.entry(t.node.clone()).or_default();
        let pos = list.partition_point(|x| x.starttime <= t.starttime);
        list.insert(pos, t);
        Ok(())
    }

    /// Guests as `{vmid, type, node, status, config}` objects (control API reads).
    pub(crate) fn guests_json(&self) -> Vec<Value> {
        let st = self.read();
        st.guests
            .iter()
            .map(|(vmid, g)| {
                let cfg: Map<String, Value> = g.config_pairs().into_iter().collect();
                json!({"vmid": vmid, "type": g.kind.as_str(), "node": g.node, "status": g.status,
                       "digest": g.digest_hex(), "config": cfg})
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The router of one endpoint (the service middleware is added by the caller).
pub(crate) fn router(ep: Arc<PveEndpoint>) -> Router {
    Router::new().fallback(handle).with_state(ep)
}

type Resp = Response<Body>;

fn json_response(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

fn ok<T: Serialize>(data: T) -> Resp {
    #[derive(Serialize)]
    struct Env<T> {
        data: T,
    }
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&Env { data }).unwrap_or_default(),
    )
}

/// A PVE error: JSON envelope, `message` in the body only on new servers, always in the reason phrase.
fn error(ep: &PveEndpoint, status: u16, message: &str, errors: Option<Value>) -> Resp {
    let mut body = Map::new();
    body.insert("data".into(), Value::Null);
    if let Some(e) = errors {
        body.insert("errors".into(), e);
    }
    if ep.version.message_in_body() {
        body.insert("message".into(), Value::String(format!("{message}\n")));
    }
    let mut r = json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    set_reason(&mut r, message);
    r
}

/// An injected failure with the body PVE gives for that status: none for 401 and the
/// AnyEvent::HTTP codes 595-599 (only the reason phrase), the JSON envelope otherwise.
fn failure(ep: &PveEndpoint, status: u16, message: &str) -> Resp {
    if status == 401 || (595..=599).contains(&status) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        set_reason(&mut r, message);
        return r;
    }
    error(ep, status, message, None)
}

fn set_reason(r: &mut Resp, message: &str) {
    let clean: String = message
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    if let Ok(rp) = hyper::ext::ReasonPhrase::try_from(clean.into_bytes()) {
        r.extensions_mut().insert(rp);
    }
}

/// 595 from AnyEvent::HTTP when the entry node cannot reach `{node}`: no JSON body.
fn unreachable_node() -> Resp {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::from_u16(595).unwrap_or(StatusCode::BAD_GATEWAY);
    set_reason(
        &mut r,
        "Errors during connection establishment, proxy handshake: No route to host",
    );
    r
}

/// Why authentication failed, or the authenticated token.
enum Auth {
    Ok,
    NoTicket,
    Bad,
}

fn authenticate(ep: &PveEndpoint, headers: &HeaderMap) -> Auth {
    let mut seen = false;
    for h in headers.get_all("authorization") {
        let Ok(v) = h.to_str() else { continue };
        // Server regex `(?:^|\s)PVEAPIToken(?:=| )([^;]*)`.
        let mut rest = None;
        for (i, _) in v.match_indices("PVEAPIToken") {
            if i == 0 || v[..i].ends_with(char::is_whitespace) {
                let after = &v[i + "PVEAPIToken".len()..];
                if let Some(r) = after.strip_prefix('=').or_else(|| after.strip_prefix(' ')) {
                    rest = Some(r.split(';').next().unwrap_or(""));
                    break;
                }
            }
        }
        let Some(value) = rest else { continue };
        seen = true;
        // The id is split from the secret on the last '='.
        if let Some((id, secret)) = value.trim().rsplit_once('=')
            && id == ep.token_id
            && secret == ep.token_secret
        {
            return Auth::Ok;
        }
    }
    if seen { Auth::Bad } else { Auth::NoTicket }
}

async fn handle(
    State(ep): State<Arc<PveEndpoint>>,
    Query(q): Query<Vec<(String, String)>>,
    req: Request,
) -> Resp {
    let mut resp = match authenticate(&ep, req.headers()) {
        // The guest listing (100k rows: seconds of rendering) on the blocking pool: on a
        // runtime worker it stalls every other simulated server's requests on that thread,
        // which a real Proxmox (another machine) never does to NetBox.
        Auth::Ok if req.uri().path().ends_with("/cluster/resources") => {
            let ep_ = ep.clone();
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            tokio::task::spawn_blocking(move || route(&ep_, &method, &path, &q))
                .await
                .unwrap_or_else(|e| error(&ep, 500, &format!("rendering failed: {e}"), None))
        }
        Auth::Ok => route(&ep, req.method(), req.uri().path(), &q),
        fail => {
            if !ep.auth_fail_delay.is_zero() {
                tokio::time::sleep(ep.auth_fail_delay).await;
            }
            let reason = match fail {
                Auth::NoTicket => "No ticket",
                _ => ep.version.auth_failed_reason(),
            };
            let body = if ep.version.message_in_body() {
                format!("{reason}\n")
            } else {
                String::new()
            };
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain;charset=UTF-8"),
            );
            set_reason(&mut r, reason);
            r
        }
    };
    // pveproxy closes the connection after any response >= 400.
    if resp.status().as_u16() >= 400 {
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
    }
    resp.headers_mut()
        .insert("server", HeaderValue::from_static("pve-api-daemon/3.0"));
    let cost = match resp.extensions().get::<AgentStall>() {
        Some(AgentStall(hold)) => {
            let hold = *hold;
            resp.extensions_mut().insert(crate::service::Hold(hold));
            REALISTIC_PVE_REQUEST + AGENT_PING_TIMEOUT.max(hold)
        }
        None => REALISTIC_PVE_REQUEST,
    };
    resp.extensions_mut().insert(Cost(cost));
    resp
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn route(ep: &PveEndpoint, method: &Method, path: &str, q: &[(String, String)]) -> Resp {
    let Some(rest) = path.strip_prefix("/api2/json") else {
        return not_implemented(ep, method, path);
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if method != Method::GET {
        return not_implemented(ep, method, rest);
    }
    match segs.as_slice() {
        ["version"] => ok(json!({"version": ep.version.version_string(),
            "release": format!("{}.{}", ep.version.major, ep.version.minor), "repoid": "3c1f2a9e"})),
        ["cluster", "status"] => cluster_status(ep),
        ["cluster", "config", "join"] => cluster_join(ep),
        ["cluster", "resources"] => cluster_resources(ep, param(q, "type")),
        ["cluster", "tasks"] => cluster_tasks(ep),
        ["nodes"] => nodes(ep),
        ["nodes", node, "tasks"] => with_node(ep, node, || node_tasks(ep, node, q)),
        ["nodes", node, kind @ ("qemu" | "lxc"), vmid, tail @ ..] => {
            let kind = if *kind == "qemu" {
                GuestKind::Qemu
            } else {
                GuestKind::Lxc
            };
            let tail = tail.join("/");
            let Some(vmid) = vmid
                .parse::<u32>()
                .ok()
                .filter(|v| (100..=999_999_999).contains(v))
            else {
                return error(
                    ep,
                    400,
                    "Parameter verification failed.",
                    Some(json!({"vmid": "value does not look like a valid VM ID\n"})),
                );
            };
            match tail.as_str() {
                "config"
                | "pending"
                | "status/current"
                | "agent/network-get-interfaces"
                | "interfaces" => {
                    with_node(ep, node, || guest_call(ep, node, kind, vmid, &tail, q))
                }
                _ => not_implemented(ep, method, rest),
            }
        }
        _ => not_implemented(ep, method, rest),
    }
}

fn not_implemented(ep: &PveEndpoint, method: &Method, path: &str) -> Resp {
    error(
        ep,
        501,
        &format!("Method '{method} {path}' not implemented"),
        None,
    )
}

/// Checks the node exists and is reachable before a proxied call.
fn with_node(ep: &PveEndpoint, node: &str, f: impl FnOnce() -> Resp) -> Resp {
    let online = ep.read().node(node).map(|n| n.online);
    match online {
        None => error(
            ep,
            500,
            &format!(
                "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
            ),
            None,
        ),
        Some(false) => unreachable_node(),
        Some(true) => f(),
    }
}

fn cluster_status(ep: &PveEndpoint) -> Resp {
    let st = ep.read();
    let mut rows = Vec::new();
    if !ep.standalone {
        rows.push(
            json!({"type": "cluster", "id": "cluster", "name": ep.name, "nodes": st.nodes.len(),
            "quorate": i32::from(st.nodes.iter().filter(|n| n.online).count() * 2 > st.nodes.len()),
            "version": st.config_version}),
        );
    }
    // Node rows come in hash order, not by name or id.
    let mut nodes: Vec<&NodeState> = st.nodes.iter().collect();
    nodes.sort_by_key(|n| mix(n.spec.nodeid.into(), 7));
    for (i, n) in nodes.iter().enumerate() {
        let local = if ep.standalone {
            1
        } else {
            i32::from(n.spec.name == st.nodes[0].spec.name)
        };
        let _ = i;
        rows.push(json!({"type": "node", "id": format!("node/{}", n.spec.name), "name": n.spec.name,
            "nodeid": n.spec.nodeid, "ip": n.spec.ip, "local": local, "online": i32::from(n.online), "level": ""}));
    }
    ok(rows)
}

fn cluster_join(ep: &PveEndpoint) -> Resp {
    if ep.standalone {
        // [unverified] pve-manager's text when corosync.conf is missing.
        return error(
            ep,
            500,
            "node is not in a cluster, no join info available!",
            None,
        );
    }
    let st = ep.read();
    let nodelist: Vec<Value> = st
        .nodes
        .iter()
        .map(|n| {
            json!({"name": n.spec.name, "nodeid": n.spec.nodeid.to_string(), "pve_addr": n.spec.ip,
            "pve_fp": n.fingerprint, "quorum_votes": "1", "ring0_addr": n.spec.ip})
        })
        .collect();
    ok(
        json!({"config_digest": hex::encode(&Sha256::digest(ep.name.as_bytes())[..20]), "nodelist": nodelist,
        "preferred_node": st.nodes[0].spec.name,
        "totem": {"cluster_name": ep.name, "config_version": st.config_version.to_string(),
                  "interface": {"0": {"linknumber": "0"}}, "ip_version": "ipv4-6", "link_mode": "passive",
                  "secauth": "on", "version": "2"}}),
    )
}

#[derive(Serialize)]
struct ResourceRow<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    vmid: u32,
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maxcpu: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maxmem: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memhost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maxdisk: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netin: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diskread: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diskwrite: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<&'a str>,
}

fn resource_row<'a>(
    ep: &PveEndpoint,
    st: &'a PveState,
    vmid: u32,
    g: &'a GuestState,
) -> ResourceRow<'a> {
    let node = st.node(&g.node);
    let online = node.is_some_and(|n| n.online);
    let mut row = ResourceRow {
        id: format!("{}/{vmid}", g.kind.as_str()),
        kind: g.kind.as_str(),
        vmid,
        node: &g.node,
        name: None,
        status: "unknown",
        template: None,
        maxcpu: None,
        cpu: None,
        maxmem: None,
        mem: None,
        memhost: None,
        maxdisk: None,
        disk: None,
        netin: None,
        netout: None,
        diskread: None,
        diskwrite: None,
        uptime: None,
        // Config-derived keys stay present even for an unreachable node.
        tags: g.get_str("tags").filter(|t| !t.is_empty()),
        lock: g.get_str("lock"),
    };
    if !online {
        return row;
    }
    let running = g.status == "running";
    let h = mix(u64::from(vmid), 1);
    let maxmem = g.memory_mib() * MIB;
    let maxdisk = g.maxdisk();
    row.name = Some(g.name(vmid));
    row.status = if running { "running" } else { "stopped" };
    row.template = Some(u8::from(g.template()));
    row.maxcpu = Some(g.maxcpu(node.map_or(1, |n| n.spec.maxcpu)));
    row.maxmem = Some(maxmem);
    row.maxdisk = Some(maxdisk);
    let r = |x: u64| if running { x } else { 0 };
    row.cpu = Some(if running {
        (h % 500) as f64 / 10_000.0
    } else {
        0.0
    });
    row.mem = Some(r(maxmem / 100 * (20 + h % 60)));
    if ep.version.has_memhost() {
        row.memhost = Some(r(maxmem / 100 * (25 + h % 60)));
    }
    row.disk = Some(match g.kind {
        GuestKind::Qemu => 0,
        GuestKind::Lxc => r(maxdisk / 100 * (10 + h % 70)),
    });
    row.netin = Some(r(h % 9_000_000_000));
    row.netout = Some(r((h >> 8) % 4_000_000_000));
    row.diskread = Some(r((h >> 16) % 90_000_000_000));
    row.diskwrite = Some(r((h >> 24) % 30_000_000_000));
    row.uptime = Some(r(h % 8_000_000));
    row
}

fn node_row(ep: &PveEndpoint, n: &NodeState, with_type: bool) -> Value {
    let mut row = json!({"node": n.spec.name, "id": format!("node/{}", n.spec.name), "type": "node",
        "status": if n.online { "online" } else { "offline" }, "ssl_fingerprint": n.fingerprint});
    if with_type {
        // `/cluster/resources` node rows have no ssl_fingerprint.
        if let Some(m) = row.as_object_mut() {
            m.remove("ssl_fingerprint");
            m.insert("level".into(), json!(""));
        }
    }
    if n.online {
        let h = mix(u64::from(n.spec.nodeid), ep.name.len() as u64);
        if let Some(m) = row.as_object_mut() {
            m.insert("level".into(), json!(""));
            m.insert("cpu".into(), json!((h % 300) as f64 / 1000.0));
            m.insert("maxcpu".into(), json!(n.spec.maxcpu));
            m.insert("mem".into(), json!(n.spec.maxmem / 100 * (20 + h % 50)));
            m.insert("maxmem".into(), json!(n.spec.maxmem));
            m.insert("disk".into(), json!(9_876_543_210u64));
            m.insert("maxdisk".into(), json!(100_000_000_000u64));
            m.insert("uptime".into(), json!(1_000_000 + h % 5_000_000));
        }
    }
    row
}

fn cluster_resources(ep: &PveEndpoint, kind: Option<&str>) -> Resp {
    let (vms, nodes, storage) = match kind {
        None => (true, true, true),
        Some("vm") => (true, false, false),
        Some("node") => (false, true, false),
        Some("storage") => (false, false, true),
        Some("sdn") => (false, false, false),
        Some(other) => {
            return error(
                ep,
                400,
                "Parameter verification failed.",
                Some(
                    json!({"type": format!("value '{other}' does not have a value in the enumeration 'vm, storage, node, sdn'\n")}),
                ),
            );
        }
    };
    let st = ep.read();
    let mut out: Vec<u8> = Vec::with_capacity(if vms { st.guests.len() * 420 } else { 4096 });
    out.extend_from_slice(b"{\"data\":[");
    let mut first = true;
    let mut push = |out: &mut Vec<u8>, bytes: Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&bytes);
    };
    if nodes {
        for n in &st.nodes {
            push(
                &mut out,
                serde_json::to_vec(&node_row(ep, n, true)).unwrap_or_default(),
            );
        }
    }
    if storage {
        for n in st.nodes.iter().filter(|n| n.online) {
            for (sid, plugin, content) in [
                ("local", "dir", "iso,vztmpl,backup"),
                ("local-lvm", "lvmthin", "rootdir,images"),
            ] {
                let row = json!({"id": format!("storage/{}/{sid}", n.spec.name), "type": "storage", "node": n.spec.name,
                    "storage": sid, "status": "available", "plugintype": plugin, "content": content, "shared": 0,
                    "disk": 12_345_678_900u64, "maxdisk": 500_000_000_000u64});
                push(&mut out, serde_json::to_vec(&row).unwrap_or_default());
            }
        }
    }
    if vms {
        for (vmid, g) in st.guests.iter().filter(|(v, _)| st.visible(**v)) {
            push(
                &mut out,
                serde_json::to_vec(&resource_row(ep, &st, *vmid, g)).unwrap_or_default(),
            );
        }
    }
    out.extend_from_slice(b"]}");
    json_response(StatusCode::OK, out)
}

fn nodes(ep: &PveEndpoint) -> Resp {
    let st = ep.read();
    ok(st
        .nodes
        .iter()
        .map(|n| node_row(ep, n, false))
        .collect::<Vec<_>>())
}

/// Config JSON: Perl-typed values, `memory` per version, `digest` last.
fn config_json(ep: &PveEndpoint, g: &GuestState, apply_pending: bool) -> Value {
    let mut m = Map::new();
    for (k, v) in g.config_pairs() {
        m.insert(k, v);
    }
    if apply_pending {
        for (k, v) in &g.pending {
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    if g.kind == GuestKind::Qemu
        && let Some(mem) = m.get_mut("memory")
    {
        let mib = match mem {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => prop(s, "current").and_then(|v| v.parse().ok()),
            _ => None,
        };
        if let Some(mib) = mib {
            *mem = if ep.version.memory_is_string() {
                json!(mib.to_string())
            } else {
                json!(mib)
            };
        }
    }
    m.insert("digest".into(), json!(g.digest_hex()));
    Value::Object(m)
}

fn guest_call(
    ep: &PveEndpoint,
    node: &str,
    kind: GuestKind,
    vmid: u32,
    tail: &str,
    q: &[(String, String)],
) -> Resp {
    let st = ep.read();
    if !st.visible(vmid) {
        let privilege = if tail.starts_with("agent") {
            "VM.GuestAgent.Audit"
        } else {
            "VM.Audit"
        };
        return error(
            ep,
            403,
            &format!("Permission check failed (/vms/{vmid}, {privilege})"),
            None,
        );
    }
    let g = match st.guests.get(&vmid) {
        Some(g) if g.kind == kind && g.node == node => g,
        _ => {
            return error(
                ep,
                500,
                &format!(
                    "Configuration file 'nodes/{node}/{}/{vmid}.conf' does not exist",
                    kind.conf_dir()
                ),
                None,
            );
        }
    };
    match tail {
        "config" => {
            if let Some((status, message)) = st.config_faults.get(&vmid) {
                return failure(ep, *status, message);
            }
            if let Some(snap) = param(q, "snapshot") {
                return error(ep, 500, &format!("snapshot '{snap}' does not exist"), None);
            }
            let current =
                param(q, "current").is_some_and(|v| matches!(v, "1" | "true" | "yes" | "on"));
            ok(config_json(ep, g, !current))
        }
        "pending" => {
            let mut keys: BTreeMap<String, Value> = BTreeMap::new();
            for (k, v) in g.config_pairs() {
                keys.insert(k.clone(), json!({"key": k, "value": v}));
            }
            for (k, v) in &g.pending {
                let e = keys.entry(k.clone()).or_insert_with(|| json!({"key": k}));
                match v {
                    Some(v) => e["pending"] = v.clone(),
                    None => e["delete"] = json!(1),
                }
            }
            ok(keys.into_values().collect::<Vec<_>>())
        }
        "status/current" => {
            let running = g.status == "running";
            let mut s = json!({"vmid": vmid, "name": g.name(vmid), "status": g.status,
                "maxmem": g.memory_mib() * MIB, "maxdisk": g.maxdisk(),
                "uptime": if running { mix(u64::from(vmid), 1) % 8_000_000 } else { 0 }, "ha": {"managed": 0}});
            if kind == GuestKind::Qemu {
                s["qmpstatus"] = json!(g.status);
                if agent_enabled(g) {
                    s["agent"] = json!(1);
                }
            }
            if let Some(t) = g.get_str("tags") {
                s["tags"] = json!(t);
            }
            ok(s)
        }
        "agent/network-get-interfaces" if kind == GuestKind::Qemu => agent_interfaces(ep, vmid, g),
        "interfaces" if kind == GuestKind::Lxc => lxc_interfaces(ep, vmid, g),
        _ => not_implemented(
            ep,
            &Method::GET,
            &format!("/nodes/{node}/{}/{vmid}/{tail}", kind.as_str()),
        ),
    }
}

fn agent_enabled(g: &GuestState) -> bool {
    g.get_str("agent")
        .map(|a| {
            let v = prop(a, "enabled").or_else(|| a.split(',').next().filter(|p| !p.contains('=')));
            matches!(
                v.map(str::to_ascii_lowercase).as_deref(),
                Some("1" | "on" | "yes" | "true")
            )
        })
        .unwrap_or(false)
}

/// The guest's IPv4 (from `ipconfig0`/LXC `ip=`, else derived from the vmid) and prefix.
fn guest_ipv4(g: &GuestState, vmid: u32) -> (String, u8) {
    let from = g
        .get_str("ipconfig0")
        .and_then(|c| prop(c, "ip"))
        .or_else(|| g.get_str("net0").and_then(|n| prop(n, "ip")));
    if let Some((ip, pfx)) = from.and_then(|s| s.split_once('/')) {
        return (ip.to_string(), pfx.parse().unwrap_or(24));
    }
    (
        format!(
            "10.{}.{}.{}",
            100 + vmid % 100,
            (vmid / 100) % 250,
            2 + vmid % 250
        ),
        24,
    )
}

/// qemu-server's `guest-ping` timeout: a configured but dead agent answers after it.
const AGENT_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Marker extension: the response waited for the agent's ping timeout (modelled as a cost, so
/// the `zero` profile answers at once and `realistic` takes the 3 s), or the guest's
/// `agent_stall_ms` (held in every profile).
#[derive(Debug, Clone, Copy)]
struct AgentStall(Duration);

fn agent_interfaces(ep: &PveEndpoint, vmid: u32, g: &GuestState) -> Resp {
    if g.agent_forbidden && ep.version.major >= 9 {
        return error(
            ep,
            403,
            &format!("Permission check failed (/vms/{vmid}, VM.GuestAgent.Audit)"),
            None,
        );
    }
    if ep.version.major < 9 {
        // PVE 7/8 need VM.Monitor, which PVEAuditor lacks.
        return error(
            ep,
            403,
            &format!("Permission check failed (/vms/{vmid}, VM.Monitor)"),
            None,
        );
    }
    if g.agent_unreachable {
        return unreachable_node();
    }
    if !agent_enabled(g) {
        return error(ep, 500, "No QEMU guest agent configured", None);
    }
    if g.status != "running" {
        return error(ep, 500, &format!("VM {vmid} is not running"), None);
    }
    if !g.agent_running {
        let mut r = error(ep, 500, "QEMU guest agent is not running", None);
        r.extensions_mut().insert(AgentStall(g.agent_stall));
        return r;
    }
    ok(json!({"result": agent_result(g, vmid)}))
}

/// The configured NICs `netN` in index order: (N, lowercase MAC).
fn guest_nics(g: &GuestState) -> Vec<(u32, Option<String>)> {
    (0..32)
        .filter_map(|n| {
            let net = g.get_str(&format!("net{n}"))?;
            let mac = prop(net, "hwaddr")
                .or_else(|| {
                    net.split(',')
                        .next()
                        .and_then(|p| p.split_once('='))
                        .map(|(_, m)| m)
                        .filter(|m| m.len() == 17)
                })
                .or_else(|| prop(net, "macaddr"))
                .map(str::to_ascii_lowercase);
            Some((n, mac))
        })
        .collect()
}

/// The IPv4 a guest's NIC `n` reports: net0's from the config (or the vmid), the others
/// derived from the vmid in their own 10.x range.
fn nic_ipv4(g: &GuestState, vmid: u32, n: u32) -> (String, u8) {
    if n == 0 {
        return guest_ipv4(g, vmid);
    }
    (
        format!(
            "10.{}.{}.{}",
            200 + n % 50,
            (vmid / 250) % 250,
            2 + vmid % 250
        ),
        24,
    )
}

/// The EUI-64 link-local address of a MAC (`fe80::be24:11ff:fe2a:3b4c`).
fn link_local(mac: &str) -> Option<String> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect::<Option<_>>()?;
    if b.len() != 6 {
        return None;
    }
    Some(format!(
        "fe80::{:x}:{:x}:{:x}:{:x}",
        u16::from_be_bytes([b[0] ^ 0x02, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]])
    ))
}

/// `network-get-interfaces` as the guest answers it (reference A.3): the answer set through the
/// control API, or loopback first, then one interface per configured NIC with its MAC in lower
/// case, its IPv4 and its link-local IPv6. Windows guests (`ostype` w*) name them `Ethernet`,
/// `Ethernet 2`, ... and report their loopback without `hardware-address`. Every interface
/// without `statistics` gets its traffic counters, which grow with every answer as a live
/// guest's do.
fn agent_result(g: &GuestState, vmid: u32) -> Vec<Value> {
    let read = g.agent_reads.fetch_add(1, Ordering::Relaxed) + 1;
    let mut out = match &g.agent_result {
        Some(Value::Array(set)) => set.clone(),
        _ => derived_agent_result(g, vmid),
    };
    for (i, interface) in (0u64..).zip(&mut out) {
        if let Value::Object(fields) = interface {
            fields
                .entry("statistics")
                .or_insert_with(|| statistics(vmid, i, read));
        }
    }
    out
}

/// The agent's answer derived from the config (see [`agent_result`]), without counters.
fn derived_agent_result(g: &GuestState, vmid: u32) -> Vec<Value> {
    let windows = g.get_str("ostype").is_some_and(|o| o.starts_with('w'));
    let mut out = Vec::new();
    if windows {
        out.push(
            json!({"name": "Loopback Pseudo-Interface 1", "ip-addresses": [
            {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
            {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]}),
        );
    } else {
        out.push(
            json!({"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
            {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
            {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}]}),
        );
    }
    for (i, (n, mac)) in guest_nics(g).into_iter().enumerate() {
        let name = match (windows, i) {
            (true, 0) => "Ethernet".to_string(),
            (true, _) => format!("Ethernet {}", i + 1),
            (false, _) => format!("eth{i}"),
        };
        let (ip, pfx) = nic_ipv4(g, vmid, n);
        let mut addrs = vec![json!({"ip-address": ip, "ip-address-type": "ipv4", "prefix": pfx})];
        if let Some(ll) = mac.as_deref().and_then(link_local) {
            addrs.push(json!({"ip-address": ll, "ip-address-type": "ipv6", "prefix": 64}));
        }
        let mut nic = json!({"name": name, "ip-addresses": addrs});
        if let Some(mac) = mac {
            nic["hardware-address"] = json!(mac);
        }
        out.push(nic);
    }
    out
}

/// An interface's counters at the guest's `read`th answer (from 1): packets and bytes grow with
/// each answer, by amounts that differ per guest and interface, errors and drops stay 0.
fn statistics(vmid: u32, interface: u64, read: u64) -> Value {
    let rate = 1 + mix(u64::from(vmid), interface) % 4096;
    let (rx_packets, tx_packets) = (read * rate, read * rate.div_ceil(2));
    json!({"rx-bytes": rx_packets * 1_214, "rx-packets": rx_packets, "rx-errs": 0,
           "rx-dropped": 0, "tx-bytes": tx_packets * 873, "tx-packets": tx_packets,
           "tx-errs": 0, "tx-dropped": 0})
}

fn lxc_interfaces(ep: &PveEndpoint, vmid: u32, g: &GuestState) -> Resp {
    if !ep.version.has_lxc_interfaces() {
        return not_implemented(
            ep,
            &Method::GET,
            &format!("/nodes/{}/lxc/{vmid}/interfaces", g.node),
        );
    }
    if g.status != "running" {
        return ok(Value::Null);
    }
    let full = ep.version.lxc_interfaces_full();
    let mut lo = json!({"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"});
    if full {
        lo["hardware-address"] = json!("00:00:00:00:00:00");
        lo["ip-addresses"] = json!([{"ip-address": "127.0.0.1", "ip-address-type": "inet", "prefix": 8},
                                    {"ip-address": "::1", "ip-address-type": "inet6", "prefix": 128}]);
    }
    let mut out = vec![lo];
    // One entry per configured NIC, named by its `name=`; the deprecated `inet`/`inet6` keys
    // hold the last address of each family.
    for (i, (n, mac)) in guest_nics(g).into_iter().enumerate() {
        let name = g
            .get_str(&format!("net{n}"))
            .and_then(|c| prop(c, "name"))
            .map_or_else(|| format!("eth{i}"), str::to_string);
        let mac = mac.unwrap_or_else(|| "bc:24:11:00:00:00".into());
        let (ip, pfx) = nic_ipv4(g, vmid, n);
        let mut eth = json!({"name": name, "hwaddr": mac, "inet": format!("{ip}/{pfx}")});
        let ll = link_local(&mac);
        if let Some(ll) = &ll {
            eth["inet6"] = json!(format!("{ll}/64"));
        }
        if full {
            eth["hardware-address"] = json!(mac);
            let mut addrs =
                vec![json!({"ip-address": ip, "ip-address-type": "inet", "prefix": pfx})];
            if let Some(ll) = ll {
                addrs.push(json!({"ip-address": ll, "ip-address-type": "inet6", "prefix": 64}));
            }
            eth["ip-addresses"] = json!(addrs);
        }
        out.push(eth);
    }
    ok(json!(out))
}

#[derive(Serialize)]
struct TaskRow<'a> {
    upid: &'a str,
    node: &'a str,
    pid: u32,
    pstart: u64,
    starttime: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    endtime: Option<u64>,
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokenid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
}

fn task_row(t: &Task) -> TaskRow<'_> {
    TaskRow {
        upid: &t.upid,
        node: &t.node,
        pid: t.pid,
        pstart: t.pstart,
        starttime: t.starttime,
        endtime: t.endtime,
        kind: &t.kind,
        id: &t.id,
        user: &t.user,
        tokenid: t.tokenid.as_deref(),
        status: if t.endtime.is_none() {
            Some("RUNNING")
        } else {
            t.status.as_deref()
        },
    }
}

fn task_visible(st: &PveState, t: &Task) -> bool {
    t.id.parse::<u32>()
        .map_or(true, |v| st.visible(v) || !st.guests.contains_key(&v))
}

fn node_tasks(ep: &PveEndpoint, node: &str, q: &[(String, String)]) -> Resp {
    let num = |k: &str| param(q, k).and_then(|v| v.parse::<u64>().ok());
    let start = num("start").unwrap_or(0) as usize;
    let limit = num("limit").map_or(TASKS_DEFAULT_LIMIT, |l| l as usize);
    let vmid = param(q, "vmid");
    let since = num("since");
    let until = num("until");
    let source = param(q, "source").unwrap_or("archive");
    let typefilter = param(q, "typefilter");
    let userfilter = param(q, "userfilter");
    let errors_only = param(q, "errors").is_some_and(|v| v == "1");
    let st = ep.read();
    let empty = Vec::new();
    let list = st.tasks.get(node).unwrap_or(&empty);
    let matching: Vec<&Task> = list
        .iter()
        .rev()
        .filter(|t| match source {
            "active" => t.endtime.is_none(),
            "all" => true,
            _ => t.endtime.is_some(),
        })
        .filter(|t| vmid.is_none_or(|v| t.id == v))
        .filter(|t| since.is_none_or(|s| t.starttime >= s))
        .filter(|t| until.is_none_or(|u| t.starttime <= u))
        .filter(|t| typefilter.is_none_or(|f| t.kind == f))
        .filter(|t| userfilter.is_none_or(|f| t.user.contains(f)))
        .filter(|t| !errors_only || t.status.as_deref().is_some_and(|s| s != "OK"))
        .filter(|t| task_visible(&st, t))
        .collect();
    let total = matching.len();
    let page: Vec<TaskRow> = matching
        .into_iter()
        .skip(start)
        .take(limit)
        .map(task_row)
        .collect();
    #[derive(Serialize)]
    struct Env<'a> {
        data: Vec<TaskRow<'a>>,
        total: usize,
    }
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&Env { data: page, total }).unwrap_or_default(),
    )
}

fn cluster_tasks(ep: &PveEndpoint) -> Resp {
    let st = ep.read();
    let mut all: Vec<&Task> = st
        .nodes
        .iter()
        .filter(|n| n.online)
        .flat_map(|n| {
            st.tasks
                .get(&n.spec.name)
                .into_iter()
                .flat_map(|l| l.iter().rev().take(CLUSTER_TASKS_PER_NODE))
        })
        .filter(|t| task_visible(&st, t))
        .collect();
    all.sort_by_key(|t| std::cmp::Reverse(t.starttime));
    ok(all.into_iter().map(task_row).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_props() {
        assert_eq!(parse_size("32G"), Some(32 << 30));
        assert_eq!(parse_size("528K"), Some(528 << 10));
        assert_eq!(parse_size("1536M"), Some(1536 << 20));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(
            prop("local-lvm:vm-1-disk-0,iothread=1,size=32G", "size"),
            Some("32G")
        );
        assert_eq!(prop("4096", "current"), Some("4096"));
        assert_eq!(prop("current=2048", "current"), Some("2048"));
    }

    #[test]
    fn version_switches() {
        let v7: PveVersion = "7".parse().unwrap();
        let v80: PveVersion = "8.0".parse().unwrap();
        let v8: PveVersion = "8".parse().unwrap();
        let v9: PveVersion = "9".parse().unwrap();
        assert!(
            !v7.memory_is_string()
                && !v80.memory_is_string()
                && v8.memory_is_string()
                && v9.memory_is_string()
        );
        assert!(!v7.message_in_body() && !v8.message_in_body() && v9.message_in_body());
        assert_eq!(v7.version_string(), "7.4-17");
        assert!("6".parse::<PveVersion>().is_err());
    }
}
