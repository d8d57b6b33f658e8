//! The NetBox snapshot phase: every VM of the managed clusters, read once in pages of 1000 with
//! `fields=` trimming (pages in parallel once the count is known, see
//! [`NetboxClient::list_all`]), indexed by identity `(cluster id, proxmox_vm_id)` in a
//! [`Snapshot`]. No per-VM lookup, ever.
//!
//! One listing with `cluster_id` repeated (NetBox ORs repeated filters) covers all clusters, so
//! a run costs ceil(N / 1000) reads whatever the number of clusters. The identity custom field is
//! read from each row; no `cf_` filter is used here, so nothing depends on NetBox honouring one.
//!
//! Pages decode straight into [`SnapshotRow`]s (the VM model plus its cluster id), never into
//! JSON maps: at 100k VMs the maps took ~1 GB and most of the phase's CPU.
//!
//! Edges: NetBox client in, [`Snapshot`] (from `reconcile`) out.

use std::fmt;

use guest_default::model::NetboxVm;
use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::clients::netbox::{Capabilities, ListRow, Listed, NetboxClient, NetboxError};
use crate::pipeline::preflight::{Preflight, ref_id};
use crate::pipeline::reconcile::{NetboxRecord, SharedValues, Snapshot};
use children::{ChildrenSnapshot, IpRef, Primaries};
use primaries::PrimaryIps;

pub mod children;
mod packed_rows;
pub mod primaries;
pub mod sorted_near;
mod stamp;

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

/// One VM row of the listing: the rules' model of it, and the id of its cluster (the model only
/// keeps the cluster's name; the snapshot is keyed by id).
#[derive(Debug, Clone)]
pub struct SnapshotRow {
    /// `cluster.id`; `None` when the row has no cluster.
    pub cluster_id: Option<u64>,
    pub vm: NetboxVm,
    /// `primary_ip4`/`primary_ip6`, when the listing asked for them (the children snapshot).
    pub primaries: Primaries,
}

impl ListRow for SnapshotRow {
    fn row_id(&self) -> Option<u64> {
        Some(self.vm.id)
    }
}

impl<'de> Deserialize<'de> for SnapshotRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = SnapshotRow;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a NetBox virtual machine (object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SnapshotRow, A::Error> {
                let mut cluster_id = None;
                let mut primaries = Primaries::default();
                let tap = ClusterTap {
                    inner: map,
                    cluster_id: &mut cluster_id,
                    primaries: &mut primaries,
                    at: Tapped::Other,
                };
                let vm = NetboxVm::deserialize(MapAccessDeserializer::new(tap))?;
                Ok(SnapshotRow {
                    cluster_id,
                    vm,
                    primaries,
                })
            }
        }
        d.deserialize_map(RowVisitor)
    }
}

/// Hands a row's entries to [`NetboxVm`]'s own decoding, reading `cluster.id` and the primary
/// IPs on the way (those values alone go through a JSON value: small nested objects).
struct ClusterTap<'a, A> {
    inner: A,
    cluster_id: &'a mut Option<u64>,
    primaries: &'a mut Primaries,
    at: Tapped,
}

/// The entry [`ClusterTap`] is at.
#[derive(Clone, Copy, PartialEq)]
enum Tapped {
    Cluster,
    PrimaryIp4,
    PrimaryIp6,
    Other,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for ClusterTap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.inner.next_key::<Key<'de>>()? else {
            return Ok(None);
        };
        self.at = match key.as_str() {
            "cluster" => Tapped::Cluster,
            "primary_ip4" => Tapped::PrimaryIp4,
            "primary_ip6" => Tapped::PrimaryIp6,
            _ => Tapped::Other,
        };
        match key {
            Key::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::<A::Error>::new(k)),
            Key::Owned(k) => seed.deserialize(StringDeserializer::<A::Error>::new(k)),
        }
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        if self.at == Tapped::Other {
            return self.inner.next_value_seed(seed);
        }
        let value: Value = self.inner.next_value()?;
        match self.at {
            Tapped::Cluster => *self.cluster_id = ref_id(Some(&value)),
            // A primary IP that is not `{id, address, …}` is taken for none.
            Tapped::PrimaryIp4 => {
                self.primaries.ip4 = IpRef::deserialize(&value).ok();
            }
            Tapped::PrimaryIp6 => {
                self.primaries.ip6 = IpRef::deserialize(&value).ok();
            }
            Tapped::Other => {}
        }
        seed.deserialize(value).map_err(de::Error::custom)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A map key, borrowed from the page text when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(k) => k,
            Key::Owned(k) => k,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The record of a listed row when it is a VM of the `clusters` read. A row outside them is
/// dropped: NetBox ignores unknown filters, so such a row means the filter was not applied, and
/// it must never be matched or taken for an orphan. A row that does not parse (or whose texts
/// would pass what a record can hold) is skipped with a warning (it cannot be matched, so it is
/// never written). The records' repeated values are kept once in `shared`.
fn record_of(
    row: Listed<SnapshotRow>,
    clusters: &[u64],
    shared: &mut SharedValues,
) -> Option<NetboxRecord> {
    match row {
        Listed::Row(SnapshotRow {
            cluster_id: Some(cluster_id),
            vm,
            ..
        }) if clusters.contains(&cluster_id) => {
            let id = vm.id;
            NetboxRecord::new(cluster_id, vm, shared)
                .inspect_err(|error| {
                    tracing::warn!(netbox_id = id, error = %error, "NetBox VM not understood; left alone");
                })
                .ok()
        }
        Listed::Row(_) => None,
        Listed::Unreadable { id, error } => {
            tracing::warn!(netbox_id = ?id, error = %error, "NetBox VM not understood; left alone");
            None
        }
    }
}

/// The real (non-placeholder) managed clusters' NetBox ids, sorted.
fn managed_clusters(preflight: &Preflight) -> Vec<u64> {
    let mut clusters: Vec<u64> = preflight
        .cluster_ids
        .values()
        .copied()
        .filter(|id| !Preflight::is_placeholder(*id))
        .collect();
    clusters.sort_unstable();
    clusters.dedup();
    clusters
}

/// Reads the VMs of the real (non-placeholder) managed clusters.
pub async fn read(client: &NetboxClient, preflight: &Preflight) -> Result<Snapshot, SnapshotError> {
    let clusters = managed_clusters(preflight);
    if clusters.is_empty() {
        return Ok(Snapshot::default());
    }
    let filters: Vec<(String, String)> = clusters
        .iter()
        .map(|id| ("cluster_id".to_owned(), id.to_string()))
        .collect();
    let fields = vm_fields(&preflight.capabilities);
    let mut shared = SharedValues::default();
    let records = client
        .list_rows_into(VM_ENDPOINT, &filters, &fields, |row| {
            record_of(row, &clusters, &mut shared)
        })
        .await
        .map_err(|source| SnapshotError::Read {
            clusters: clusters.clone(),
            source,
        })?;
    Ok(Snapshot::new(records))
}

/// [`read`] and, in parallel with it, the children of the same VMs
/// ([`children::read`]); the VM listing also reads their primary IPs. The children are
/// kept only for the VMs the snapshot holds. A children read that failed is recorded in the
/// [`ChildrenSnapshot`], never an error of the run.
pub async fn read_with_children(
    client: &NetboxClient,
    preflight: &Preflight,
) -> (Result<Snapshot, SnapshotError>, ChildrenSnapshot) {
    let clusters = managed_clusters(preflight);
    if clusters.is_empty() {
        return (Ok(Snapshot::default()), children::read_vlans(client).await);
    }
    let filters: Vec<(String, String)> = clusters
        .iter()
        .map(|id| ("cluster_id".to_owned(), id.to_string()))
        .collect();
    let mut fields = vm_fields(&preflight.capabilities);
    fields.extend(["primary_ip4", "primary_ip6"]);
    let mut primaries = PrimaryIps::default();
    let mut shared = SharedValues::default();
    let vms = client.list_rows_into(
        VM_ENDPOINT,
        &filters,
        &fields,
        |row: Listed<SnapshotRow>| {
            // A VM whose primary IPs cannot be kept is not understood (as a record that
            // cannot be kept): never matched, so never written.
            let row = match row {
                Listed::Row(r) => match primaries.push(r.vm.id, &r.primaries) {
                    Ok(()) => Listed::Row(r),
                    Err(error) => Listed::Unreadable {
                        id: Some(r.vm.id),
                        error,
                    },
                },
                other => other,
            };
            record_of(row, &clusters, &mut shared)
        },
    );
    let kids = children::read(client, &clusters, &preflight.capabilities);
    let (vms, mut kids) = tokio::join!(vms, kids);
    let snapshot = match vms {
        Ok(records) => Snapshot::new(records),
        Err(source) => {
            return (
                Err(SnapshotError::Read {
                    clusters: clusters.clone(),
                    source,
                }),
                kids,
            );
        }
    };
    let managed: std::collections::HashSet<u64> =
        snapshot.records().iter().map(NetboxRecord::id).collect();
    kids.set_primaries(primaries.finish());
    kids.retain_vms(|id| managed.contains(&id));
    (Ok(snapshot), kids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A row decoded from text (the fast path) and from a JSON value (the fallback path).
    fn decoded(row: Value) -> Vec<Listed<SnapshotRow>> {
        let from_text: SnapshotRow = serde_json::from_str(&row.to_string()).unwrap();
        let from_value: SnapshotRow = serde_json::from_value(row).unwrap();
        assert_eq!(from_text.cluster_id, from_value.cluster_id);
        assert_eq!(from_text.vm, from_value.vm);
        vec![Listed::Row(from_text)]
    }

    #[test]
    fn rows_become_records_with_their_cluster() {
        let rows: Vec<Listed<SnapshotRow>> = [
            json!({"id": 7, "name": "web", "status": {"value": "active", "label": "Active"},
                   "cluster": {"id": 3, "name": "pve-a"},
                   "custom_fields": {"proxmox_vm_id": 100, "proxmox_vm_type": "qemu"},
                   "last_updated": "2026-01-01T00:00:00Z"}),
            json!({"id": 8, "name": "no-cluster"}),
            json!({"id": 9, "name": "other", "cluster": {"id": 4, "name": "pve-b"}}),
        ]
        .into_iter()
        .flat_map(decoded)
        .chain([Listed::Unreadable {
            id: Some(10),
            error: "tags: invalid type".into(),
        }])
        .collect();
        let records: Vec<NetboxRecord> = rows
            .into_iter()
            .filter_map(|r| record_of(r, &[3], &mut SharedValues::default()))
            .collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].vm.cluster(), Some("pve-a"));
        assert_eq!(records[0].cluster_id, 3);
        let identity = records[0].identity().unwrap();
        assert_eq!((identity.cluster_id, identity.vmid), (3, 100));
        assert_eq!(records[0].vm.last_updated(), Some("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn optional_fields_follow_the_version() {
        let old = Capabilities::of(crate::clients::netbox::NetboxVersion::new(4, 2, 0));
        assert!(!vm_fields(&old).contains(&"virtual_machine_type"));
        let new = Capabilities::of(crate::clients::netbox::NetboxVersion::new(4, 7, 3));
        assert!(vm_fields(&new).contains(&"virtual_machine_type"));
        assert!(vm_fields(&new).contains(&"start_on_boot"));
    }
}
