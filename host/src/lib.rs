//! pve2netbox keeps NetBox's virtual machines in step with Proxmox VE.
//!
//! The host does the I/O (Proxmox reads, one NetBox snapshot, a gentle write queue); the mapping
//! and diff rules run in a WebAssembly component behind the versioned WIT contract in `wit/`.
//! Each pipeline phase is its own module and a function from data to data:
//!
//! ```text
//! config ─► preflight ─► proxmox_read ─┐
//!                                      ├─► reconcile ─► plan ─► dispatch ─► task_history ─► report
//!           snapshot ──────────────────┘
//! ```

pub mod children_dispatch;
pub mod children_plan;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod guest_network;
pub mod http;
pub mod logging;
pub mod memo;
pub mod metrics;
pub mod netbox;
pub mod netbox_lease;
pub mod orphans;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod proxmox;
pub mod proxmox_read;
pub mod reconcile;
pub mod report;
pub mod rules;
pub mod run_lock;
pub mod snapshot;
pub mod snapshot_children;
pub mod sync;
pub mod task_history;
pub mod timefmt;
pub mod version;
