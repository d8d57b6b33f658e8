//! The NetBox side of reconcile: the VMs of the managed clusters, indexed by identity
//! `(cluster id, proxmox_vm_id)` and, for VMs without identity, by `(cluster id, lowercase name)`.
//!
//! Built by the snapshot phase from the records it read (one paged list, no per-VM lookups);
//! pure data from here on. The identity custom fields are read here once, leniently.

use std::collections::BTreeMap;

use guest_default::model::{JsonText, NetboxVm};
use serde::{Deserialize, Serialize};

use super::compact::{CompactVm, SharedValues, TooLarge};

/// Custom field holding the VMID (integer): half of a NetBox VM's identity.
pub const VM_ID_FIELD: &str = "proxmox_vm_id";
/// Custom field holding `qemu` or `lxc`: a change under the same VMID means the id was reused.
pub const VM_TYPE_FIELD: &str = "proxmox_vm_type";
/// Custom field holding the node the guest was on when last synced.
pub const NODE_FIELD: &str = "proxmox_node";
/// Custom field (integer) counting consecutive fully read runs in which the guest was missing;
/// written only under the `delete` orphan policy, so the count survives between runs with no
/// local state. Preflight must create it next to the identity fields.
pub const MISSING_RUNS_FIELD: &str = "proxmox_missing_runs";
/// Tag put on a VM whose guest disappeared (orphan policy `mark` or `delete`); removed when the
/// guest comes back.
pub const ORPHAN_TAG: &str = "pve2netbox-orphan";

/// The identity of a managed NetBox VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: u64,
    pub vmid: u32,
}

/// What a record's `proxmox_vm_id` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityField {
    /// Unset (`null` or absent): an unowned VM, a candidate for adoption.
    Absent,
    /// A VMID.
    Valid(u32),
    /// Set to something that is not a VMID (hand edit): left alone, reported.
    Invalid(String),
}

/// One NetBox VM of a managed cluster, with its identity fields read.
#[derive(Debug, Clone)]
pub struct NetboxRecord {
    /// NetBox id of the VM's cluster (the snapshot reads per managed cluster).
    pub cluster_id: u64,
    /// The record as read, compact: [`CompactVm::to_vm`] makes the rules' model of it.
    pub vm: CompactVm,
    pub identity: IdentityField,
    /// `proxmox_missing_runs`, 0 when unset.
    pub missing_runs: u32,
}

impl NetboxRecord {
    /// Reads the identity fields of `vm`, a VM of the NetBox cluster `cluster_id`, and keeps
    /// it compact, its repeated values in `shared`.
    pub fn new(cluster_id: u64, vm: NetboxVm, shared: &mut SharedValues) -> Result<Self, TooLarge> {
        let identity = match vm.custom_field(VM_ID_FIELD).map(JsonText::to_value) {
            None | Some(serde_json::Value::Null) => IdentityField::Absent,
            Some(value) => match as_u32(&value) {
                Some(vmid) => IdentityField::Valid(vmid),
                None => IdentityField::Invalid(value.to_string()),
            },
        };
        let missing_runs = vm
            .custom_field(MISSING_RUNS_FIELD)
            .and_then(|t| as_u32(&t.to_value()))
            .unwrap_or(0);
        Ok(NetboxRecord {
            cluster_id,
            vm: CompactVm::new(vm, shared)?,
            identity,
            missing_runs,
        })
    }

    /// A custom field holding non-empty text, read when asked (kept as the record's JSON).
    fn text_field(&self, name: &str) -> Option<String> {
        self.vm
            .custom_field(name)
            .and_then(JsonText::text_string_value)
            .filter(|s| !s.is_empty())
    }

    /// `proxmox_vm_type`, when set.
    pub fn vm_type(&self) -> Option<String> {
        self.text_field(VM_TYPE_FIELD)
    }

    /// `proxmox_node`, when set.
    pub fn node(&self) -> Option<String> {
        self.text_field(NODE_FIELD)
    }

    /// The NetBox id of the VM.
    pub fn id(&self) -> u64 {
        self.vm.id()
    }

    /// The identity, when `proxmox_vm_id` holds a VMID.
    pub fn identity(&self) -> Option<Identity> {
        match self.identity {
            IdentityField::Valid(vmid) => Some(Identity {
                cluster_id: self.cluster_id,
                vmid,
            }),
            _ => None,
        }
    }

    /// True when the VM carries the tag `slug`.
    pub fn has_tag(&self, slug: &str) -> bool {
        self.vm.tags().iter().any(|t| t == slug)
    }

    /// `#id 'name'`, how messages name a NetBox VM.
    pub fn label(&self) -> String {
        format!("NetBox VM #{} '{}'", self.vm.id(), self.vm.name())
    }
}

/// A VMID in JSON: an integer, or (leniently) a string of digits.
fn as_u32(value: &serde_json::Value) -> Option<u32> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The case-insensitive key NetBox's uniqueness uses for names (`lower(name)`).
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The NetBox VMs of the managed clusters, indexed.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sorted by NetBox id, so every walk is deterministic.
    records: Vec<NetboxRecord>,
    /// Each valid identity with the index of its record, sorted (duplicates side by side, in
    /// id order). A sorted list, not a map of lists: indexing 100k records in a map took ~40 ms
    /// after the snapshot's last page, most of it one small allocation per identity.
    by_identity: Vec<(Identity, usize)>,
    unowned: BTreeMap<(u64, String), Vec<usize>>,
}

impl Snapshot {
    /// Indexes `records` (any order).
    pub fn new(mut records: Vec<NetboxRecord>) -> Self {
        // Usually already in id order (the listing's): skip the stable sort's scratch copy.
        if !records.is_sorted_by_key(NetboxRecord::id) {
            records.sort_by_key(NetboxRecord::id);
        }
        let mut by_identity: Vec<(Identity, usize)> = Vec::with_capacity(records.len());
        let mut unowned: BTreeMap<(u64, String), Vec<usize>> = BTreeMap::new();
        for (i, record) in records.iter().enumerate() {
            match record.identity {
                IdentityField::Valid(vmid) => by_identity.push((
                    Identity {
                        cluster_id: record.cluster_id,
                        vmid,
                    },
                    i,
                )),
                IdentityField::Absent => unowned
                    .entry((record.cluster_id, name_key(record.vm.name())))
                    .or_default()
                    .push(i),
                IdentityField::Invalid(_) => {}
            }
        }
        // Usually sorted already: VMs created in VMID order get ids in that order.
        if !by_identity.is_sorted() {
            by_identity.sort_unstable();
        }
        Snapshot {
            records,
            by_identity,
            unowned,
        }
    }

    /// Every record, by NetBox id.
    pub fn records(&self) -> &[NetboxRecord] {
        &self.records
    }

    /// The records holding `identity`: none, one, or duplicates made by another tool.
    pub fn by_identity(&self, identity: Identity) -> Vec<&NetboxRecord> {
        let start = self.by_identity.partition_point(|(i, _)| *i < identity);
        self.by_identity[start..]
            .iter()
            .take_while(|(i, _)| *i == identity)
            .map(|&(_, r)| &self.records[r])
            .collect()
    }

    /// The unowned records (no `proxmox_vm_id`) of the cluster named `name`, case-insensitively.
    pub fn unowned_named(&self, cluster_id: u64, name: &str) -> Vec<&NetboxRecord> {
        self.pick(self.unowned.get(&(cluster_id, name_key(name))))
    }

    /// Whether the cluster has any unowned record (a guest without identity may adopt one).
    pub fn has_unowned(&self, cluster_id: u64) -> bool {
        self.unowned
            .range((cluster_id, String::new())..)
            .next()
            .is_some_and(|((cluster, _), _)| *cluster == cluster_id)
    }

    /// Identities held by more than one record, with those records.
    pub fn duplicates(&self) -> impl Iterator<Item = (Identity, Vec<&NetboxRecord>)> {
        self.by_identity
            .chunk_by(|(a, _), (b, _)| a == b)
            .filter(|same| same.len() > 1)
            .map(|same| {
                (
                    same[0].0,
                    same.iter().map(|&(_, r)| &self.records[r]).collect(),
                )
            })
    }

    /// Number of managed VMs (a valid identity), the base of the delete budget.
    pub fn managed_count(&self) -> usize {
        self.by_identity.len()
    }

    fn pick(&self, idx: Option<&Vec<usize>>) -> Vec<&NetboxRecord> {
        idx.map(|v| v.iter().map(|&i| &self.records[i]).collect())
            .unwrap_or_default()
    }
}
