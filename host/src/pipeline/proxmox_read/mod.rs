//! The Proxmox read phase: first [`discover`] each endpoint (`/cluster/status`: the cluster's
//! name, or the node's for a standalone node, and its nodes), then [`read_guests`]: per
//! endpoint `/cluster/resources?type=vm` once, then every guest's config with one concurrency
//! bound shared by all endpoints (`max_concurrency`); endpoints are read in parallel.
//!
//! Every failure is recorded against its scope: a listing that failed makes the cluster
//! incomplete, an offline node (595/596, `status: unknown` rows) makes the node incomplete, a
//! config that could not be read is a guest error (the guest is still reconciled, with its
//! config-derived fields unknown, and is never taken for gone).
//!
//! Edges: Proxmox client in, `guest_default::model::Guest` and [`ClusterRead`] out. Knows
//! nothing of NetBox except the cluster ids it is handed to label the scopes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use guest_default::model::{Guest, JsonReconcileInput, JsonText, NetboxVm, write_config_json};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::clients::http::RequestCounters;
use crate::clients::proxmox::{ClusterStatus, GuestKind, ProxmoxClient, ProxmoxError, RawObject};
use crate::config::Config;
use crate::pipeline::reconcile::{ClusterRead, GuestReadError, NodeRead};
use crate::pipeline::report::ErrorEntry;
use crate::progress::PhaseBar;
use compact_guest::{CompactGuest, GuestNames};
use guest_network::{KeptNetwork, NetworkAsk, NetworkSettings, NetworkSource, UnknownReason};

pub mod compact_guest;
pub mod guest_network;
pub mod packed_text;

/// Phase name in errors.
const PHASE: &str = "proxmox_read";

/// One reachable endpoint and what `/cluster/status` said about it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The configured endpoint name.
    pub name: String,
    pub client: ProxmoxClient,
    /// Cluster name (or standalone node name) and nodes.
    pub status: ClusterStatus,
}

impl Endpoint {
    /// The Proxmox cluster name used in scopes (`cluster/node/vmid`).
    pub fn cluster(&self) -> &str {
        &self.status.name
    }
}

/// The endpoints found, and those that could not be reached (their scopes are unknown).
#[derive(Debug, Default)]
pub struct Discovery {
    pub endpoints: Vec<Endpoint>,
    pub errors: Vec<ErrorEntry>,
}

/// Builds each endpoint's client and reads `/cluster/status`, all endpoints in parallel. An
/// endpoint that fails is an error of its scope (named by the endpoint), never fatal: its
/// cluster is then simply not managed in this run (no snapshot, no orphan action).
pub async fn discover(config: &Config, counters: Arc<RequestCounters>) -> Discovery {
    let mut tasks = JoinSet::new();
    let mut task_names = HashMap::new();
    for (index, ep) in config.proxmox.iter().enumerate() {
        let ep = ep.clone();
        let timeouts = config.timeouts;
        let counters = counters.clone();
        let name = ep.name.clone();
        let task = tasks.spawn(async move {
            let result = async {
                let client = ProxmoxClient::new(&ep, &timeouts, counters)?;
                let status = client.cluster_status().await?;
                Ok::<_, ProxmoxError>(Endpoint {
                    name: ep.name.clone(),
                    client,
                    status,
                })
            }
            .await;
            (index, ep.name, result)
        });
        task_names.insert(task.id(), name);
    }
    let mut found: BTreeMap<usize, Endpoint> = BTreeMap::new();
    let mut discovery = Discovery::default();
    while let Some(joined) = tasks.join_next().await {
        let (index, name, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                let name = task_names.remove(&e.id()).unwrap_or_default();
                discovery.errors.push(ErrorEntry::new(
                    name,
                    PHASE,
                    format!("endpoint not read, its cluster is left alone this run: {e}"),
                ));
                continue;
            }
        };
        match result {
            Ok(endpoint) => {
                found.insert(index, endpoint);
            }
            Err(e) => discovery.errors.push(ErrorEntry::new(
                name,
                PHASE,
                format!("endpoint not read, its cluster is left alone this run: {e}"),
            )),
        }
    }
    // Two endpoints pointing at the same cluster would make every guest appear twice.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (_, endpoint) in found {
        if let Some(first) = seen.get(endpoint.cluster()) {
            discovery.errors.push(ErrorEntry::new(
                &endpoint.name,
                PHASE,
                format!(
                    "endpoint reaches cluster '{}' already read through endpoint '{first}'; ignored",
                    endpoint.cluster()
                ),
            ));
            continue;
        }
        seen.insert(endpoint.cluster().to_owned(), endpoint.name.clone());
        discovery.endpoints.push(endpoint);
    }
    discovery
}

/// One guest as read: the model the rules take, and which endpoint it came from.
#[derive(Debug, Clone)]
pub struct ReadGuest {
    /// Index into the endpoints given to [`read_guests`].
    pub endpoint: usize,
    pub cluster_id: u64,
    /// The guest without its config (its properties are in `config`, packed), compact. The
    /// rules take [`ReadGuest::rules_input_json`].
    guest: CompactGuest,
    config: PackedConfig,
    /// The guest's runtime network view (agent, LXC interfaces, or why there is none).
    network: KeptNetwork,
}

impl ReadGuest {
    /// The guest as a rule component takes it: the config as the WIT's JSON text, written
    /// straight from the packed properties (building the pairs first only to write them out
    /// again was a quarter of the sync's reconcile phase outside the rules).
    /// `children` is NetBox's rendering of the VM's current children (`None`: not read).
    pub fn rules_input_json(
        &self,
        current: Option<NetboxVm>,
        children: Option<JsonText>,
    ) -> JsonReconcileInput {
        JsonReconcileInput {
            guest: self.guest.to_guest(),
            config: self.config.to_json(),
            current,
            network: self.network.source(),
            children,
        }
    }

    /// [`ReadGuest::rules_input_json`] for the last time the rules are asked about the guest:
    /// the guest and the network view are moved into the input and the config is freed, while
    /// the rules' answers grow. Kept, the configs of 100k guests are ~45 MB, their agent
    /// answers (~1.2 KB each) ~120 MB and the guests' own texts (cluster, node, name, status,
    /// tags: ~12 MB) until the reconcile ends, the latter two held twice while a batch is
    /// asked. Nothing past the rules reads them (the observed guests are copied before the
    /// rules): the guest's own texts are then gone ([`ReadGuest::guest`] keeps its cluster,
    /// node, VMID and numbers), [`ReadGuest::network`] is `unknown`/`not-asked` and
    /// [`ReadGuest::config_packed`] empty.
    pub fn take_rules_input_json(
        &mut self,
        current: Option<NetboxVm>,
        children: Option<JsonText>,
    ) -> JsonReconcileInput {
        let input = JsonReconcileInput {
            guest: self.guest.take_guest(),
            config: self.config.to_json(),
            current,
            network: std::mem::take(&mut self.network).into_source(),
            children,
        };
        self.config = PackedConfig::default();
        input
    }

    /// The guest as read, without its config.
    pub fn guest(&self) -> &CompactGuest {
        &self.guest
    }

    /// What the guest itself said about its network (WIT `network-source`): the agent's
    /// `result` (without `statistics`), the container's interfaces, or `unknown` with the reason.
    pub fn network(&self) -> NetworkSource {
        self.network.source()
    }

    /// The network view as kept (its answer's text packed).
    pub fn network_kept(&self) -> &KeptNetwork {
        &self.network
    }

    /// The config as packed: every key and value concatenated, and the end offset of each
    /// (what the no-op memo hashes; the JSON text the rules get is written from it).
    pub fn config_packed(&self) -> (&str, &[u32]) {
        (&self.config.text, &self.config.ends)
    }
}

/// A guest's config properties (`(key, value)` texts in Proxmox's order) in one buffer. Why:
/// as a `Vec<(String, String)>` a 20-property config costs ~2 KB (two allocations per
/// property), which at 100k guests was ~200 MB held from the read to the reconcile.
#[derive(Debug, Clone, Default)]
struct PackedConfig {
    /// Every key and value, concatenated.
    text: Box<str>,
    /// End offset in `text` of each key and value, alternately.
    ends: Box<[u32]>,
}

impl PackedConfig {
    fn pack(pairs: &[(String, String)]) -> Option<Self> {
        let mut text = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(pairs.len() * 2);
        for (key, value) in pairs {
            text.push_str(key);
            ends.push(u32::try_from(text.len()).ok()?);
            text.push_str(value);
            ends.push(u32::try_from(text.len()).ok()?);
        }
        Some(Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        })
    }

    /// The properties as borrowed `(key, value)` texts, in order.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0usize;
        let mut piece = move |end: u32| {
            let end = end as usize;
            let s = &self.text[start..end];
            start = end;
            s
        };
        self.ends
            .chunks_exact(2)
            .map(move |kv| (piece(kv[0]), piece(kv[1])))
    }

    /// The properties as one JSON object of strings, as `model::config_to_json` writes them.
    fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + self.ends.len() * 3 + 2);
        write_config_json(&mut out, self.pairs());
        out
    }
}

/// Everything the phase read.
#[derive(Debug, Default)]
pub struct ProxmoxRead {
    /// Sorted by cluster, then VMID.
    pub guests: Vec<ReadGuest>,
    /// One per endpoint, in the endpoints' order.
    pub reads: Vec<ClusterRead>,
}

/// Reads every endpoint's guests and configs, and the runtime network of the guests `network`
/// says to ask ([`guest_network::what_to_ask`]) under the same concurrency bound. `cluster_ids`
/// maps a Proxmox cluster name to its NetBox cluster id.
pub async fn read_guests(
    endpoints: &[Endpoint],
    cluster_ids: &BTreeMap<String, u64>,
    max_concurrency: usize,
    network: NetworkSettings,
    bar: &PhaseBar,
) -> ProxmoxRead {
    let limit = Arc::new(Semaphore::new(max_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut task_endpoints = HashMap::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let endpoint = endpoint.clone();
        let cluster_id = cluster_ids.get(endpoint.cluster()).copied().unwrap_or(0);
        let limit = limit.clone();
        let bar_total = bar_handle(bar);
        let task = tasks.spawn(async move {
            let out = read_endpoint(
                index,
                &endpoint,
                cluster_id,
                limit,
                (max_concurrency, network),
                &bar_total,
            )
            .await;
            (index, out)
        });
        task_endpoints.insert(task.id(), (index, cluster_id));
    }
    let mut per_endpoint: BTreeMap<usize, (ClusterRead, Vec<ReadGuest>)> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, out)) => {
                per_endpoint.insert(index, out);
            }
            // A task that panicked read nothing usable: its cluster gets a failed listing, so
            // it is reported and none of its VMs can look deleted.
            Err(e) => {
                if let Some(&(index, cluster_id)) = task_endpoints.get(&e.id()) {
                    let read = unread_cluster(&endpoints[index], cluster_id, &e);
                    per_endpoint.insert(index, (read, Vec::new()));
                }
            }
        }
    }
    let mut read = ProxmoxRead::default();
    let mut lists = Vec::with_capacity(per_endpoint.len());
    for (_, (cluster_read, guests)) in per_endpoint {
        read.reads.push(cluster_read);
        lists.push(guests);
    }
    // One endpoint's list is taken as it is, several are joined into a list sized once: at
    // 100k guests a regrown or copied list is ~30 MB held twice, at the read's memory peak.
    read.guests = match lists.len() {
        1 => lists.pop().unwrap_or_default(),
        _ => {
            let mut all = Vec::with_capacity(lists.iter().map(Vec::len).sum());
            for guests in lists {
                all.extend(guests);
            }
            all
        }
    };
    read.guests.sort_by(|a, b| {
        (a.guest.cluster(), a.guest.vmid()).cmp(&(b.guest.cluster(), b.guest.vmid()))
    });
    tracing::info!(
        outcomes = ?guest_network::tally(read.guests.iter().map(|g| g.network.outcome_name())),
        "guest network reads"
    );
    read
}

/// What a spawned endpoint task may touch of the phase bar: a clone of the indicatif handle
/// (shared state inside), or nothing when no bar is drawn.
#[derive(Clone)]
struct BarHandle(Option<indicatif::ProgressBar>);

impl BarHandle {
    fn add_total(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc_length(n);
        }
    }
    fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
}

fn bar_handle(bar: &PhaseBar) -> BarHandle {
    BarHandle(bar.indicatif())
}

/// Reads one endpoint: its listing, then its configs with at most `workers` in flight (and
/// never more than the shared `limit` allows across endpoints).
async fn read_endpoint(
    index: usize,
    endpoint: &Endpoint,
    cluster_id: u64,
    limit: Arc<Semaphore>,
    (workers, network): (usize, NetworkSettings),
    bar: &BarHandle,
) -> (ClusterRead, Vec<ReadGuest>) {
    let cluster = endpoint.cluster().to_owned();
    let mut read = ClusterRead {
        cluster: cluster.clone(),
        cluster_id,
        listing_error: None,
        nodes: endpoint
            .status
            .nodes
            .iter()
            .map(|n| {
                let online = n.online.unwrap_or(true);
                NodeRead {
                    name: n.name.clone(),
                    online,
                    listed: true,
                    message: (!online).then(|| "offline in /cluster/status".to_owned()),
                }
            })
            .collect(),
        guest_errors: Vec::new(),
        visible_last_run: None,
    };
    let rows = {
        let _permit = limit.clone().acquire_owned().await;
        endpoint.client.vm_resources_keeping(GUEST_ROW_KEYS).await
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            read.listing_error = Some(e.to_string());
            return (read, Vec::new());
        }
    };
    bar.add_total(rows.len() as u64);
    // Every row is classified (node online?) before any config answer can mark a node down.
    // Off the runtime threads: 100k rows are parsed again from their text, and the I/O of the
    // other endpoints and of the NetBox snapshot would wait meanwhile.
    let (mut rows, mut read, mut guests, jobs) = {
        let cluster = cluster.clone();
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || {
            let mut guests: Vec<ReadGuest> = Vec::with_capacity(rows.len());
            let jobs = classify_rows(
                &rows,
                (index, cluster_id, &cluster),
                &mut read,
                &mut guests,
                &bar,
            );
            (rows, read, guests, jobs)
        })
        .await
        .expect("classifying rows does not panic")
    };
    // The configs are read by at most `workers` tasks, each taking the next guest as soon as its
    // previous answer is in: a free slot starts the next request on the same task, with no hop
    // through this one, which meanwhile turns answers into guests. Answers wait in a channel of
    // `workers` places, so read configs never pile up (as JSON maps they were ~4 KB each) and a
    // waiting task per guest is never kept (spawning all at once held ~1.8 KB per guest).
    let lxc_endpoint = lxc_interfaces_known(endpoint, &jobs, network, &limit).await;
    let jobs_total = jobs.len();
    let jobs = Arc::new(std::sync::Mutex::new(jobs.into_iter()));
    let (answers, mut answered) = tokio::sync::mpsc::channel(workers.max(1));
    let mut readers = JoinSet::new();
    for _ in 0..workers.clamp(1, jobs_total.max(1)) {
        readers.spawn(read_configs(
            endpoint.client.clone(),
            jobs.clone(),
            limit.clone(),
            (network, lxc_endpoint),
            answers.clone(),
        ));
    }
    drop(answers);
    let mut taken = ConfigsTaken {
        index,
        cluster_id,
        cluster: &cluster,
        names: GuestNames::default(),
        rows: &mut rows,
        bar,
    };
    while let Some(answer) = answered.recv().await {
        taken.take(answer, &mut read, &mut guests);
    }
    // A reader that panicked took the guest it was reading with it: the scope is then not
    // read completely, which must never look like guests deleted in Proxmox.
    while let Some(joined) = readers.join_next().await {
        if let Err(e) = joined {
            read.listing_error = Some(format!("a config reader failed: {e}"));
        }
    }
    read.guest_errors
        .sort_by(|a, b| (a.vmid, &a.node).cmp(&(b.vmid, &b.node)));
    (read, guests)
}

/// The read of an endpoint whose task failed (a panic): the listing failed, nothing else known.
fn unread_cluster(
    endpoint: &Endpoint,
    cluster_id: u64,
    failure: &tokio::task::JoinError,
) -> ClusterRead {
    ClusterRead {
        cluster: endpoint.cluster().to_owned(),
        cluster_id,
        listing_error: Some(format!(
            "reading endpoint '{}' failed ({failure}); its cluster is left alone this run",
            endpoint.name
        )),
        nodes: Vec::new(),
        guest_errors: Vec::new(),
        visible_last_run: None,
    }
}

/// Classifies the listed rows: a guest to read the config of becomes a job; a guest of a node
/// offline or not reporting becomes a guest without config; a row without vmid/type, an error.
fn classify_rows(
    rows: &[Box<str>],
    (index, cluster_id, cluster): (usize, u64, &str),
    read: &mut ClusterRead,
    guests: &mut Vec<ReadGuest>,
    bar: &BarHandle,
) -> Vec<ConfigJob> {
    let mut jobs: Vec<ConfigJob> = Vec::new();
    let mut names = GuestNames::default();
    for (row_index, text) in rows.iter().enumerate() {
        let row = &unpack_row(text);
        let node = str_key(row, "node").unwrap_or_default();
        let vmid = row
            .get("vmid")
            .and_then(crate::clients::proxmox::lenient::as_u64);
        let kind = str_key(row, "type").and_then(|t| GuestKind::parse(&t));
        let status = str_key(row, "status").unwrap_or_default();
        let node_read = read.nodes.iter_mut().find(|n| n.name == node);
        if status == "unknown" {
            // The node stopped reporting: its rows carry no name and stale or no values.
            if let Some(n) = node_read {
                n.listed = false;
                n.message
                    .get_or_insert_with(|| "guests reported with status unknown".to_owned());
            }
        } else if node_read.is_none() && !node.is_empty() {
            // A node the status did not list (joined meanwhile): known only through its rows.
            read.nodes.push(NodeRead::ok(&node));
        }
        let online = read
            .nodes
            .iter()
            .find(|n| n.name == node)
            .is_none_or(|n| n.online && n.listed);
        match (vmid, kind) {
            (Some(vmid), Some(kind)) if online && status != "unknown" => {
                jobs.push(ConfigJob {
                    row_index,
                    node,
                    kind,
                    vmid,
                    running: status == "running",
                });
            }
            (Some(_), Some(_)) => {
                bar.inc();
                let network = KeptNetwork::Unknown(guest_network::NetworkUnknown {
                    reason: UnknownReason::NotAsked,
                    detail: "the node is offline or not reporting".into(),
                });
                let cluster = (cluster, &mut names);
                if let Some(g) = build_guest(index, cluster_id, cluster, row, (None, network), read)
                {
                    guests.push(g);
                }
            }
            _ => {
                bar.inc();
                read.guest_errors.push(GuestReadError {
                    vmid: vmid.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
                    node: node.clone(),
                    message: format!(
                        "resource row {} has no usable vmid/type; skipped",
                        str_key(row, "id").unwrap_or_default()
                    ),
                });
            }
        }
    }
    jobs
}

/// A guest whose config is to be read (and then maybe its network).
struct ConfigJob {
    /// Index of its row in the listing.
    row_index: usize,
    node: String,
    kind: GuestKind,
    vmid: u64,
    /// `status: running` in the listing.
    running: bool,
}

/// A config answer for the row at the index, and the guest's network view.
type ConfigAnswer = (usize, Result<RawObject, ProxmoxError>, KeptNetwork);

/// Whether the endpoint's PVE has the LXC interfaces endpoint (8.1+), read from `/version`
/// only when a running container is to be asked; `None` when that is unknown (then it is asked,
/// and a 501 answers `not-asked`).
async fn lxc_interfaces_known(
    endpoint: &Endpoint,
    jobs: &[ConfigJob],
    network: NetworkSettings,
    limit: &Semaphore,
) -> Option<bool> {
    if !network.enabled || !jobs.iter().any(|j| j.kind == GuestKind::Lxc && j.running) {
        return None;
    }
    let _permit = limit.acquire().await.ok()?;
    match endpoint.client.version().await {
        Ok(version) => version.at_least(8, 1),
        Err(e) => {
            tracing::warn!(endpoint = %endpoint.name, error = %e, "Proxmox version not read; containers are asked for their interfaces all the same");
            None
        }
    }
}

/// One reader: takes jobs until none is left, each read holding a slot of the shared `limit`
/// (released as soon as the answer is in, before it is handed over).
async fn read_configs(
    client: ProxmoxClient,
    jobs: Arc<std::sync::Mutex<std::vec::IntoIter<ConfigJob>>>,
    limit: Arc<Semaphore>,
    (network, lxc_endpoint): (NetworkSettings, Option<bool>),
    answers: tokio::sync::mpsc::Sender<ConfigAnswer>,
) {
    loop {
        let permit = limit
            .acquire()
            .await
            .expect("the read limit is never closed");
        // The lock is held only to take the next job, never across an await.
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).next();
        let Some(job) = job else {
            return;
        };
        let result = client.guest_config(&job.node, job.kind, job.vmid).await;
        drop(permit);
        // The network call takes a slot of its own: a dead agent holds it at most the agent
        // timeout, and config reads go on in the other slots meanwhile.
        let ask = guest_network::what_to_ask(
            &network,
            job.kind,
            job.running,
            result.as_ref().ok(),
            lxc_endpoint,
        );
        let source = match ask {
            NetworkAsk::Known(source) => source,
            ask => {
                let _permit = limit
                    .acquire()
                    .await
                    .expect("the read limit is never closed");
                guest_network::read_network(&client, &job.node, job.vmid, ask, network.timeout)
                    .await
            }
        };
        let kept = KeptNetwork::keep(source);
        if answers.send((job.row_index, result, kept)).await.is_err() {
            // The endpoint's read was dropped: nobody waits for the rest.
            return;
        }
    }
}

/// Turns finished config reads of one endpoint into guests (or guest errors).
struct ConfigsTaken<'a> {
    index: usize,
    cluster_id: u64,
    cluster: &'a str,
    names: GuestNames,
    /// The listed rows; each is taken (freed) as its guest is built: ~20 MB at 100k guests,
    /// at the end of the read, the run's memory peak.
    rows: &'a mut [Box<str>],
    bar: &'a BarHandle,
}

impl ConfigsTaken<'_> {
    fn take(
        &mut self,
        (row_index, result, network): ConfigAnswer,
        read: &mut ClusterRead,
        guests: &mut Vec<ReadGuest>,
    ) {
        self.bar.inc();
        let row = &unpack_row(&std::mem::take(&mut self.rows[row_index]));
        let config = match result {
            Ok(config) => Some(config),
            Err(e) => {
                let node = str_key(row, "node").unwrap_or_default();
                let vmid = row
                    .get("vmid")
                    .and_then(crate::clients::proxmox::lenient::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0);
                if matches!(e.status(), Some(595 | 596 | 599))
                    && let Some(n) = read.nodes.iter_mut().find(|n| n.name == node)
                {
                    n.listed = false;
                    n.message.get_or_insert_with(|| e.to_string());
                }
                let why = if e.is_missing_config() {
                    format!("config gone since the listing (migrated or deleted): {e}")
                } else {
                    e.to_string()
                };
                read.guest_errors.push(GuestReadError {
                    vmid,
                    node,
                    message: why,
                });
                None
            }
        };
        if let Some(g) = build_guest(
            self.index,
            self.cluster_id,
            (self.cluster, &mut self.names),
            row,
            (config, network),
            read,
        ) {
            guests.push(g);
        }
    }
}

/// The keys of a `/cluster/resources` row that [`Guest`]'s decoding and this phase read (the
/// rest, usage counters, are ignored by both).
const GUEST_ROW_KEYS: &[&str] = &[
    "cluster",
    "vmid",
    "type",
    "kind",
    "id",
    "node",
    "name",
    "status",
    "template",
    "maxcpu",
    "maxmem",
    "maxdisk",
    "tags",
    "pool",
    "config",
    "config_read",
];

/// A listed row, from the JSON text the Proxmox client kept of it (text it wrote, so it parses).
fn unpack_row(text: &str) -> RawObject {
    serde_json::from_str(text).unwrap_or_default()
}

fn str_key(row: &RawObject, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The rules' guest: the raw row plus `cluster` and `config` (`null` when not read).
fn build_guest(
    endpoint: usize,
    cluster_id: u64,
    (cluster, names): (&str, &mut GuestNames),
    row: &RawObject,
    (config, network): (Option<RawObject>, KeptNetwork),
    read: &mut ClusterRead,
) -> Option<ReadGuest> {
    let mut raw = row.clone();
    raw.insert("cluster".into(), Value::String(cluster.to_owned()));
    raw.insert("config".into(), config.map_or(Value::Null, Value::Object));
    match serde_json::from_value::<Guest>(Value::Object(raw)) {
        Ok(mut guest) => {
            let config = std::mem::take(&mut guest.config);
            // Over 4 GiB of config or row text: not a Proxmox guest.
            let kept = match PackedConfig::pack(&config) {
                Some(packed) => CompactGuest::new(guest, names).map(|g| (g, packed)),
                None => Err(Box::new(guest)),
            };
            match kept {
                Ok((guest, packed)) => Some(ReadGuest {
                    endpoint,
                    cluster_id,
                    guest,
                    config: packed,
                    network,
                }),
                Err(guest) => {
                    let Guest { vmid, node, .. } = *guest;
                    read.guest_errors.push(GuestReadError {
                        vmid,
                        node,
                        message: "config too large; skipped".into(),
                    });
                    None
                }
            }
        }
        Err(e) => {
            read.guest_errors.push(GuestReadError {
                vmid: row
                    .get("vmid")
                    .and_then(crate::clients::proxmox::lenient::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                node: str_key(row, "node").unwrap_or_default(),
                message: format!("resource row not understood: {e}"),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_default::model::config_to_json;

    #[test]
    fn a_packed_config_is_written_as_the_json_the_pairs_give() {
        let pairs: Vec<(String, String)> = [
            ("name", "web-1"),
            ("description", "line 1\nline \"2\"\ttab \\ back"),
            ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0"),
            ("tags", "prod;web"),
            ("empty", ""),
            ("unicode", "caf\u{e9} \u{1f600} \u{1}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let packed = PackedConfig::pack(&pairs).expect("small");
        assert_eq!(packed.to_json(), config_to_json(&pairs));
        let unpacked: Vec<(&str, &str)> = packed.pairs().collect();
        let expected: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(unpacked, expected);
        assert_eq!(PackedConfig::default().to_json(), "{}");
    }

    #[test]
    fn the_last_input_takes_the_guest_and_network_view_and_frees_the_config() {
        let pairs = vec![("memory".to_owned(), "2048".to_owned())];
        let agent = NetworkSource::Agent(JsonText(r#"[{"name":"eth0"}]"#.into()));
        let mut read = ReadGuest {
            endpoint: 0,
            cluster_id: 1,
            guest: CompactGuest::new(
                Guest {
                    vmid: 100,
                    name: Some("web".into()),
                    ..Guest::default()
                },
                &mut GuestNames::default(),
            )
            .expect("small"),
            config: PackedConfig::pack(&pairs).expect("small"),
            network: KeptNetwork::keep(agent.clone()),
        };
        // Asked again later (an adoption): the guest keeps everything.
        let first = read.rules_input_json(None, None);
        assert_eq!(first.network, agent);
        assert_eq!(first.config, r#"{"memory":"2048"}"#);
        assert_eq!(read.network(), agent);
        // The last time: the same input, and the guest holds neither afterwards.
        let last = read.take_rules_input_json(None, Some(JsonText("{}".into())));
        assert_eq!(
            (&last.guest, &last.config, &last.network),
            (&first.guest, &first.config, &first.network)
        );
        assert_eq!(last.children, Some(JsonText("{}".into())));
        assert_eq!(read.network(), NetworkSource::default());
        assert_eq!(read.config_packed(), ("", &[][..]));
        assert_eq!(first.guest.name.as_deref(), Some("web"));
        assert_eq!((read.guest().name(), read.guest().vmid()), (None, 100));
    }
}
