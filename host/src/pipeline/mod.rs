//! The phases of a run, in the order they run. Each phase is a function from data to data; only
//! [`run`] sequences them, times them and fills the run report:
//!
//! ```text
//! config ─► preflight ─► proxmox_read ─┐
//!                                      ├─► reconcile ─► plan ─► dispatch ─► task_history ─► report
//!           snapshot ──────────────────┘      (orphans found beside the plan)
//! ```
//!
//! A VM's children (interfaces, MAC addresses, IP addresses, virtual disks) are read, planned and
//! written by a `children` module inside the phase that handles the VM: the guests' network views
//! in [`proxmox_read::guest_network`], NetBox's children in [`snapshot::children`], their
//! operations in [`plan::children`], their ordered writes in [`dispatch::children`].

// In pipeline order; the blank lines keep the formatter from sorting them.
pub mod preflight;

pub mod proxmox_read;

pub mod snapshot;

pub mod reconcile;

pub mod plan;

pub mod orphans;

pub mod dispatch;

pub mod task_history;

pub mod report;

// Sequences the phases above.
pub mod run;
