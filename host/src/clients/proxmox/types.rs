//! Typed answers of the small Proxmox calls (version, cluster status, nodes, tasks), read
//! leniently. Guest listings and configs stay raw JSON objects: the rules layer interprets them.

use serde::Deserialize;

use super::lenient;

/// A raw JSON object as Proxmox sent it (a `/cluster/resources` row or a guest config).
pub type RawObject = serde_json::Map<String, serde_json::Value>;

/// `qemu` or `lxc`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// A QEMU virtual machine.
    Qemu,
    /// An LXC container.
    Lxc,
}

impl GuestKind {
    /// The path segment (`qemu`, `lxc`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qemu => "qemu",
            Self::Lxc => "lxc",
        }
    }

    /// From a resource row's `type`; `None` for anything else (`openvz`, storage rows).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "qemu" => Some(Self::Qemu),
            "lxc" => Some(Self::Lxc),
            _ => None,
        }
    }
}

impl std::fmt::Display for GuestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /version`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PveVersion {
    /// `9.0.10`, or `7.4-17` on PVE 7.
    #[serde(default, deserialize_with = "lenient::string")]
    pub version: String,
    /// `x.y`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub release: String,
    /// Git revision.
    #[serde(default, deserialize_with = "lenient::string")]
    pub repoid: String,
}

impl PveVersion {
    /// The major version (7, 8, 9), if the text starts with one.
    pub fn major(&self) -> Option<u32> {
        let text = if self.version.is_empty() {
            &self.release
        } else {
            &self.version
        };
        text.split(['.', '-']).next()?.parse().ok()
    }

    /// The minor version (`8.1.4` → 1; `7.4-17` → 4), if the text has one.
    pub fn minor(&self) -> Option<u32> {
        let text = if self.version.is_empty() {
            &self.release
        } else {
            &self.version
        };
        text.split(['.', '-']).nth(1)?.parse().ok()
    }

    /// Whether this is `major.minor` or later; `None` when the version text is not understood.
    pub fn at_least(&self, major: u32, minor: u32) -> Option<bool> {
        Some((self.major()?, self.minor()?) >= (major, minor))
    }
}

/// One row of `GET /cluster/status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClusterStatusRow {
    /// `cluster` or `node`.
    #[serde(default, rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
    /// Cluster or node name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// Node id in the cluster (0 on a standalone node).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub nodeid: Option<u64>,
    /// Node IP.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub ip: Option<String>,
    /// Node online (0/1).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub online: Option<bool>,
    /// The node answering the call (0/1).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub local: Option<bool>,
    /// Cluster quorate (0/1), cluster row only.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub quorate: Option<bool>,
    /// Node count, cluster row only.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub nodes: Option<u64>,
}

/// `GET /cluster/status` summarized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterStatus {
    /// The cluster's name, or the node's name for a standalone node (no `cluster` row).
    pub name: String,
    /// True when there was no `cluster` row.
    pub standalone: bool,
    /// Quorum, when a cluster.
    pub quorate: Option<bool>,
    /// Node rows, sorted by name (Proxmox returns them in hash order).
    pub nodes: Vec<ClusterStatusRow>,
}

impl ClusterStatus {
    /// Summarizes the rows. `None` when there is neither a cluster row nor a node row.
    pub fn from_rows(rows: Vec<ClusterStatusRow>) -> Option<Self> {
        let cluster = rows.iter().find(|r| r.kind == "cluster").cloned();
        let mut nodes: Vec<ClusterStatusRow> =
            rows.into_iter().filter(|r| r.kind == "node").collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        match cluster {
            Some(c) => Some(Self {
                name: c.name,
                standalone: false,
                quorate: c.quorate,
                nodes,
            }),
            None => {
                let local = nodes
                    .iter()
                    .find(|n| n.local == Some(true))
                    .or_else(|| nodes.first())?
                    .name
                    .clone();
                Some(Self {
                    name: local,
                    standalone: true,
                    quorate: None,
                    nodes,
                })
            }
        }
    }
}

/// One row of `GET /nodes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub node: String,
    /// `online`, `offline` or `unknown`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    /// SHA-256 fingerprint of the node's certificate (colon hex).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub ssl_fingerprint: Option<String>,
    /// CPUs.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub maxcpu: Option<f64>,
    /// Memory, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxmem: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub uptime: Option<u64>,
}

impl NodeInfo {
    /// True when the node reports `online`.
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }
}

/// One task of `GET /nodes/{node}/tasks`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
pub struct Task {
    /// Unique task id, `UPID:node:pid:pstart:starttime:type:id:user:`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub upid: String,
    /// Node that ran it.
    #[serde(default, deserialize_with = "lenient::string")]
    pub node: String,
    /// Task type (`qmstart`, `vzdump`, …).
    #[serde(default, rename = "type", deserialize_with = "lenient::string")]
    pub task_type: String,
    /// Object id, a string (the VMID for guest tasks), may be empty.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// User that started it.
    #[serde(default, deserialize_with = "lenient::string")]
    pub user: String,
    /// API token id, when a token started it.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub tokenid: Option<String>,
    /// `OK`, `WARNINGS: N`, an error text, `RUNNING`; absent while unknown.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// Start, epoch seconds.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub starttime: Option<i64>,
    /// End, epoch seconds.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub endtime: Option<i64>,
}

/// How a finished task ended, from its `status` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// `OK`.
    Ok,
    /// `WARNINGS: N`.
    Warnings,
    /// Any other text.
    Failed,
    /// `RUNNING` or absent.
    Running,
}

impl Task {
    /// How the task ended.
    pub fn outcome(&self) -> TaskOutcome {
        match self.status.as_deref().map(str::trim) {
            None | Some("") | Some("RUNNING") => TaskOutcome::Running,
            Some("OK") => TaskOutcome::Ok,
            Some(s) if s.starts_with("WARNINGS") => TaskOutcome::Warnings,
            Some(_) => TaskOutcome::Failed,
        }
    }
}

/// Which tasks `GET /nodes/{node}/tasks` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSource {
    /// Finished tasks (Proxmox's default).
    Archive,
    /// Running tasks.
    Active,
    /// Both.
    All,
}

/// Parameters of a task listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only tasks of this guest.
    pub vmid: Option<u64>,
    /// Only tasks started at or after this epoch second.
    pub since: Option<i64>,
    /// Offset into the list (newest first).
    pub start: Option<u64>,
    /// Page size (Proxmox default 50).
    pub limit: Option<u64>,
    /// Finished, running or all.
    pub source: Option<TaskSource>,
}

impl TaskQuery {
    pub(crate) fn to_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(v) = self.vmid {
            pairs.push(("vmid".into(), v.to_string()));
        }
        if let Some(v) = self.since {
            pairs.push(("since".into(), v.to_string()));
        }
        if let Some(v) = self.start {
            pairs.push(("start".into(), v.to_string()));
        }
        if let Some(v) = self.limit {
            pairs.push(("limit".into(), v.to_string()));
        }
        if let Some(source) = self.source {
            let text = match source {
                TaskSource::Archive => "archive",
                TaskSource::Active => "active",
                TaskSource::All => "all",
            };
            pairs.push(("source".into(), text.into()));
        }
        pairs
    }
}

/// One page of tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPage {
    /// Tasks, newest first.
    pub tasks: Vec<Task>,
    /// All matching tasks (not just this page), when Proxmox says.
    pub total: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_name_or_standalone_node() {
        let rows: Vec<ClusterStatusRow> = serde_json::from_value(json!([
            {"type":"node","id":"node/pve2","name":"pve2","nodeid":2,"ip":"192.0.2.12","local":0,"online":0,"level":""},
            {"type":"cluster","id":"cluster","name":"prod-cl","nodes":3,"quorate":1,"version":7},
            {"type":"node","id":"node/pve1","name":"pve1","nodeid":1,"ip":"192.0.2.11","local":1,"online":1,"level":""}
        ]))
        .unwrap();
        let status = ClusterStatus::from_rows(rows).unwrap();
        assert_eq!(status.name, "prod-cl");
        assert!(!status.standalone);
        assert_eq!(status.quorate, Some(true));
        assert_eq!(status.nodes[0].name, "pve1");
        assert_eq!(status.nodes[1].online, Some(false));

        let rows: Vec<ClusterStatusRow> = serde_json::from_value(json!([
            {"type":"node","id":"node/solo","name":"solo","nodeid":0,"local":"1","online":"1"}
        ]))
        .unwrap();
        let status = ClusterStatus::from_rows(rows).unwrap();
        assert_eq!(status.name, "solo");
        assert!(status.standalone);
        assert!(ClusterStatus::from_rows(vec![]).is_none());
    }

    #[test]
    fn tasks_parse_leniently() {
        let tasks: Vec<Task> = serde_json::from_value(json!([
            {"upid":"UPID:pve1:0001A2B3:0C4D5E6F:66B2A1C0:qmstart:100:root@pam:","node":"pve1","pid":107187,
             "pstart":206397039,"starttime":1722982848,"endtime":"1722982850","type":"qmstart","id":100,
             "user":"root@pam","status":"OK"},
            {"upid":"UPID:pve1:x:vzdump:100:sync@pve!netbox:","node":"pve1","starttime":1722900000,
             "type":"vzdump","id":"100","user":"sync@pve","tokenid":"netbox","status":"WARNINGS: 2"},
            {"upid":"UPID:pve1:y","type":"qmstop","status":"command 'x' failed: exit code 1"},
            {"upid":"UPID:pve1:z","type":"qmigrate","status":"RUNNING"}
        ]))
        .unwrap();
        assert_eq!(tasks[0].id, "100");
        assert_eq!(tasks[0].endtime, Some(1722982850));
        assert_eq!(tasks[0].outcome(), TaskOutcome::Ok);
        assert_eq!(tasks[1].tokenid.as_deref(), Some("netbox"));
        assert_eq!(tasks[1].outcome(), TaskOutcome::Warnings);
        assert_eq!(tasks[2].outcome(), TaskOutcome::Failed);
        assert_eq!(tasks[2].starttime, None);
        assert_eq!(tasks[3].outcome(), TaskOutcome::Running);
    }

    #[test]
    fn version_major() {
        let v: PveVersion =
            serde_json::from_value(json!({"version":"7.4-17","release":"7.4","repoid":"x"}))
                .unwrap();
        assert_eq!(v.major(), Some(7));
        let v: PveVersion =
            serde_json::from_value(json!({"version":"9.0.10","release":"9.0"})).unwrap();
        assert_eq!(v.major(), Some(9));
    }
}
