//! Reconcile: observed Proxmox guests (with the rules' desired VMs) against the NetBox snapshot,
//! classified per VM. Pure: no I/O; the rules' `reconcile` is plugged in as [`Rules`].
//!
//! Edges: the Proxmox read phase produces [`ObservedGuest`]s and [`ClusterRead`]s, the snapshot
//! phase a [`Snapshot`]; `orphans` and `plan` consume the [`VmOutcome`]s.

mod changes;
pub(crate) mod child_operations;
mod classify;
mod compact;
mod contract;
mod names;
mod observed;
mod scope;
mod slots;
mod snapshot;
mod words;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

pub use changes::{Change, ChangeList, Changes, Json};
pub use child_operations::{ChildAction, ChildOperation, ChildOperations, kind_word};
pub use classify::{
    Asked, Class, Journal, Rules, RulesItem, SharedTexts, VmOutcome, ask_all, cf, classify_all,
    reconcile, settle_answer,
};
pub use compact::{CompactVm, Parts, SharedValues, TooLarge};
pub use contract::OutputContract;
pub use observed::{Answer, NeedsInterner, ObservedGuest, RulesResult};
pub use scope::{ClusterRead, GuestReadError, NodeRead};
pub use snapshot::{
    Identity, IdentityField, MISSING_RUNS_FIELD, NODE_FIELD, NetboxRecord, ORPHAN_TAG, Snapshot,
    VM_ID_FIELD, VM_TYPE_FIELD, name_key,
};
