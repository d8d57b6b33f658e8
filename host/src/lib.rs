//! pve2netbox keeps NetBox's virtual machines in step with Proxmox VE.
//!
//! The host does the I/O (Proxmox reads, one NetBox snapshot, a gentle write queue); the mapping
//! and diff rules run in a WebAssembly component behind the versioned WIT contract in `wit/`.
//! The folders follow that story:
//!
//! - [`pipeline`]: the phases of a run, in order, each a function from data to data; a VM's
//!   children (interfaces, MACs, IPs, disks) live beside the VM code of each phase;
//! - [`clients`]: the Proxmox VE and NetBox API clients over one HTTP layer;
//! - [`rules`]: the WebAssembly rules runtime, its cache, and the no-op memo;
//! - [`safety`]: what keeps two runs apart (the local run lock, the lease held in NetBox);
//! - [`cli`]: the commands, `demo` and `doctor` among them;
//! - beside them, what every room uses: [`config`], [`logging`], [`progress`], [`metrics`],
//!   [`timefmt`], [`version`].

pub mod cli;
pub mod clients;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod rules;
pub mod safety;
pub mod timefmt;
pub mod version;
