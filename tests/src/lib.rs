//! pve2netbox test kit: faithful Proxmox VE and NetBox simulators (quirks, version switches,
//! latency profiles, fault injection, request counters), a deterministic inventory generator,
//! and the control API that drives them. Used by end-to-end tests, benchmarks and
//! `pve2netbox demo`; it does not depend on the host crate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pve2netbox_testkit::SimError> {
//! use pve2netbox_testkit::{SimConfig, Simulators};
//! let sim = Simulators::start(SimConfig::default()).await?;
//! let pve = &sim.pve_endpoints()[0];
//! println!("{} {} {}", pve.url, sim.netbox_url(), sim.control().counters().netbox("GET"));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod control;
pub mod inventory;
mod netbox;
pub mod proxy;
mod pve;
mod rng;
mod serve;
pub mod service;
mod sim;
pub mod tls;
pub mod workload;

pub use control::{Control, ControlError, CounterSnapshot, NewGuest, NewTask};
pub use inventory::{
    EndpointInventory, Guest, GuestKind, Inventory, InventorySpec, NodeSpec, Task,
};
pub use netbox::{DEFAULT_PAGE_SIZE, MAX_BODY_BYTES, MAX_PAGE_SIZE, NetboxVersion};
pub use proxy::{NetboxProxy, ProxyError};
pub use pve::PveVersion;
pub use service::{FaultPatch, FaultSettings, Profile, ServiceKind};
pub use sim::{
    PveEndpointInfo, REALISTIC_NETBOX_WORKERS, SimConfig, SimError, SimHandle, Simulators,
};
pub use workload::{CHILDREN_VLAN_VIDS, WorkloadError, start_children_workload};
