//! The NetBox snapshot phase: every VM of the managed clusters, read once in pages of 1000 with
//! `fields=` trimming (pages in parallel once the count is known, see
//! [`NetboxClient::list_all`]), indexed by identity `(cluster id, proxmox_vm_id)` in a
//! [`Snapshot`]. No per-VM lookup, ever.
//!
//! One listing with `cluster_id` repeated (NetBox ORs repeated filters) covers all clusters, so
//! a run costs ceil(N / 1000) reads whatever the number of clusters. The identity custom field is
//! read from each row; no `cf_` filter is used here, so nothing depends on NetBox honouring one.
//!
//! Edges: NetBox client in, [`Snapshot`] (from `reconcile`) out.

use guest_default::model::NetboxVm;
use serde_json::Value;

use crate::netbox::{Capabilities, NetboxClient, NetboxError, Object};
use crate::preflight::{Preflight, ref_id};
use crate::reconcile::{NetboxRecord, Snapshot};

/// The VM endpoint.
pub const VM_ENDPOINT: &str = "virtualization/virtual-machines";

/// A snapshot that could not be read: the run stops (nothing can be classified without it).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("netbox_snapshot: reading the VMs of clusters {clusters:?}: {source}")]
    Read {
        clusters: Vec<u64>,
        #[source]
        source: NetboxError,
    },
}

/// The VM fields the rules compare, plus what the host needs (`id`, `cluster`, `last_updated`).
pub fn vm_fields(caps: &Capabilities) -> Vec<&'static str> {
    let mut fields = vec![
        "id",
        "name",
        "status",
        "cluster",
        "site",
        "device",
        "role",
        "platform",
        "tenant",
        "vcpus",
        "memory",
        "disk",
        "description",
        "comments",
        "serial",
        "tags",
        "custom_fields",
        "last_updated",
    ];
    if caps.virtual_machine_type {
        fields.push("virtual_machine_type");
    }
    if caps.start_on_boot {
        fields.push("start_on_boot");
    }
    fields
}

/// Turns listed rows into records; a row that does not parse is skipped with a warning (it
/// cannot be matched, so it is never written).
pub fn records_from_rows(rows: Vec<Object>) -> Vec<NetboxRecord> {
    rows.into_iter()
        .filter_map(|row| {
            let cluster_id = ref_id(row.get("cluster"))?;
            let id = row.get("id").and_then(Value::as_u64);
            match serde_json::from_value::<NetboxVm>(Value::Object(row)) {
                Ok(vm) => Some(NetboxRecord::new(cluster_id, vm)),
                Err(e) => {
                    tracing::warn!(netbox_id = ?id, error = %e, "NetBox VM not understood; left alone");
                    None
                }
            }
        })
        .collect()
}

/// Reads the VMs of the real (non-placeholder) managed clusters.
pub async fn read(client: &NetboxClient, preflight: &Preflight) -> Result<Snapshot, SnapshotError> {
    let mut clusters: Vec<u64> = preflight
        .cluster_ids
        .values()
        .copied()
        .filter(|id| !Preflight::is_placeholder(*id))
        .collect();
    clusters.sort_unstable();
    clusters.dedup();
    if clusters.is_empty() {
        return Ok(Snapshot::default());
    }
    let filters: Vec<(String, String)> = clusters
        .iter()
        .map(|id| ("cluster_id".to_owned(), id.to_string()))
        .collect();
    let fields = vm_fields(&preflight.capabilities);
    let rows = client
        .list_all(VM_ENDPOINT, &filters, &fields)
        .await
        .map_err(|source| SnapshotError::Read {
            clusters: clusters.clone(),
            source,
        })?;
    // NetBox ignores unknown filters: a row outside the managed clusters means the filter was
    // not applied, and those rows must never be matched or taken for orphans.
    let rows: Vec<Object> = rows
        .into_iter()
        .filter(|r| ref_id(r.get("cluster")).is_some_and(|c| clusters.contains(&c)))
        .collect();
    Ok(Snapshot::new(records_from_rows(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_records_with_their_cluster() {
        let rows = vec![
            json!({"id": 7, "name": "web", "status": {"value": "active", "label": "Active"},
                   "cluster": {"id": 3, "name": "pve-a"},
                   "custom_fields": {"proxmox_vm_id": 100, "proxmox_vm_type": "qemu"},
                   "last_updated": "2026-01-01T00:00:00Z"}),
            json!({"id": 8, "name": "no-cluster"}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let records = records_from_rows(rows);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].cluster_id, 3);
        let identity = records[0].identity().unwrap();
        assert_eq!((identity.cluster_id, identity.vmid), (3, 100));
        assert_eq!(
            records[0].vm.last_updated.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn optional_fields_follow_the_version() {
        let old = Capabilities::of(crate::netbox::NetboxVersion::new(4, 2, 0));
        assert!(!vm_fields(&old).contains(&"virtual_machine_type"));
        let new = Capabilities::of(crate::netbox::NetboxVersion::new(4, 7, 3));
        assert!(vm_fields(&new).contains(&"virtual_machine_type"));
        assert!(vm_fields(&new).contains(&"start_on_boot"));
    }
}
