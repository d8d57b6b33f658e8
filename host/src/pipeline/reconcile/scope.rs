//! Which Proxmox scopes were read completely: an endpoint/cluster, a node, a guest.
//!
//! The Proxmox read phase fills one [`ClusterRead`] per endpoint; orphan handling asks it whether
//! a VM's absence can be trusted, and the report lists every incomplete scope as an error. A scope
//! that was not read completely is never treated as "gone".

use serde::{Deserialize, Serialize};

use crate::pipeline::report::ErrorEntry;

/// Phase name used for errors about reads.
const READ_PHASE: &str = "proxmox_read";

/// How one endpoint/cluster was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRead {
    /// Proxmox cluster name (or the node name of a standalone node), as in guests' scopes.
    pub cluster: String,
    /// The NetBox cluster it maps to.
    pub cluster_id: u64,
    /// `None` when `/cluster/resources` was listed completely; else why not (endpoint down,
    /// 401/403, timeout, ...). A failed listing makes every node and guest of it unknown.
    pub listing_error: Option<String>,
    /// The cluster's nodes as listed.
    #[serde(default)]
    pub nodes: Vec<NodeRead>,
    /// Guests whose config read failed.
    #[serde(default)]
    pub guest_errors: Vec<GuestReadError>,
    /// Guests the same token saw in the previous run, when the read phase knows it; a drop
    /// beyond the shrink allowance means the view shrank (token rights), not that guests left.
    #[serde(default)]
    pub visible_last_run: Option<usize>,
}

/// How one node was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRead {
    pub name: String,
    /// `online` in `/cluster/resources?type=node` (offline and `unknown` are not).
    pub online: bool,
    /// Its guests were listed with names (no 595/596, no `status: unknown` rows).
    pub listed: bool,
    /// Why not, when not online or not listed.
    #[serde(default)]
    pub message: Option<String>,
}

impl NodeRead {
    /// A node that was read fine.
    pub fn ok(name: &str) -> Self {
        NodeRead {
            name: name.to_owned(),
            online: true,
            listed: true,
            message: None,
        }
    }

    /// True when the node's guests are all known.
    pub fn complete(&self) -> bool {
        self.online && self.listed
    }
}

/// A guest whose config could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestReadError {
    pub vmid: u32,
    pub node: String,
    pub message: String,
}

impl ClusterRead {
    /// A cluster read completely with these nodes.
    pub fn complete(cluster: &str, cluster_id: u64, nodes: &[&str]) -> Self {
        ClusterRead {
            cluster: cluster.to_owned(),
            cluster_id,
            listing_error: None,
            nodes: nodes.iter().map(|n| NodeRead::ok(n)).collect(),
            guest_errors: Vec::new(),
            visible_last_run: None,
        }
    }

    /// True when the cluster was listed and every node was read.
    pub fn all_nodes_complete(&self) -> bool {
        self.listing_error.is_none() && self.nodes.iter().all(NodeRead::complete)
    }

    /// Whether a guest last seen on `node` (`None`: not known) would have been seen if it
    /// still existed. Unknown node: only when every node was read.
    pub fn node_complete(&self, node: Option<&str>) -> bool {
        if self.listing_error.is_some() {
            return false;
        }
        match node.and_then(|n| self.nodes.iter().find(|r| r.name == n)) {
            Some(read) => read.complete(),
            None => self.all_nodes_complete(),
        }
    }

    /// One error per incomplete scope: the cluster, each node, each guest.
    pub fn errors(&self) -> Vec<ErrorEntry> {
        if let Some(message) = &self.listing_error {
            return vec![ErrorEntry::new(
                &self.cluster,
                READ_PHASE,
                format!("cluster not read completely, no orphan action in it: {message}"),
            )];
        }
        let mut out = Vec::new();
        for node in self.nodes.iter().filter(|n| !n.complete()) {
            let state = if node.online { "not listed" } else { "offline" };
            let why = node.message.as_deref().unwrap_or("no detail");
            out.push(ErrorEntry::new(
                format!("{}/{}", self.cluster, node.name),
                READ_PHASE,
                format!("node {state} ({why}), no orphan action for its guests"),
            ));
        }
        for guest in &self.guest_errors {
            out.push(ErrorEntry::new(
                format!("{}/{}/{}", self.cluster, guest.node, guest.vmid),
                READ_PHASE,
                format!("config not read: {}", guest.message),
            ));
        }
        out
    }
}
