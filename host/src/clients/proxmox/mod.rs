//! Proxmox VE API client: token authentication, the `{"data": …}` envelope, errors told apart by
//! status, lenient reading of Perl-shaped values. Read calls only: version, cluster status,
//! nodes, the guest inventory (`/cluster/resources?type=vm`, raw rows), guest configs (raw) and
//! tasks.
//!
//! Edges: knows nothing of NetBox or the rules; guest rows and configs are returned as raw JSON
//! objects for the rules layer to interpret. TLS and retries come from [`crate::clients::http`].

mod client;
mod error;
pub mod lenient;
mod types;

pub use client::ProxmoxClient;
pub use error::ProxmoxError;
pub use types::{
    ClusterStatus, ClusterStatusRow, GuestKind, NodeInfo, PveVersion, RawObject, Task, TaskOutcome,
    TaskPage, TaskQuery, TaskSource,
};
