//! Child operations in the plan: the rules' child changes of one VM (interfaces, MAC addresses,
//! IP addresses, virtual disks) turned into operations `apply` can carry out and check.
//!
//! Per child the plan keeps what the rules said (kind, key, parent key, field changes) plus
//! what the host knows from the children snapshot: the child's NetBox id and `last_updated`
//! (for `apply`'s staleness check), and the ids of the existing children and VLANs the
//! operations refer to by key (`child_ids`), so `apply` needs no snapshot. Children created in
//! the same plan get their ids during dispatch.
//!
//! Ownership is checked here again, whatever the rules say: a child is deleted only when the
//! snapshot shows it carrying the managed tag (`pve2netbox`), and only a child of this VM is
//! updated or deleted. A refused operation is dropped and reported per VM.
//!
//! Pure: no I/O. Edges: rules' child changes and the children snapshot in; child operations
//! and notices out.

use guest_default::children::ChildKind;

use super::child_ids::ChildIds;
use crate::pipeline::preflight::MANAGED_TAG;
pub use crate::pipeline::reconcile::{ChildAction, ChildOperation, ChildOperations, kind_word};
use crate::pipeline::snapshot::children::{Child, ChildrenSnapshot, LastUpdated, VlanRow, VmRows};

/// The key under which a child's (or VLAN's) NetBox id is kept in an operation's `child_ids`:
/// `interface:net0`, `mac-address:BC:24:11:2A:3B:4C`, `ip-address:10.0.0.5/24`,
/// `virtual-disk:scsi0`, `vlan:10`.
pub fn ref_key(kind: ChildKind, key: &str) -> String {
    let prefix = match kind {
        ChildKind::Interface => "interface",
        ChildKind::MacAddress => "mac-address",
        ChildKind::IpAddress => "ip-address",
        ChildKind::VirtualDisk => "virtual-disk",
    };
    format!("{prefix}:{key}")
}

/// The `child_ids` key of a VLAN by VID.
pub fn vlan_key(vid: u64) -> String {
    format!("vlan:{vid}")
}

/// One VM's child operations and the ids they refer to.
#[derive(Debug, Default, PartialEq)]
pub struct PlannedChildren {
    pub ops: ChildOperations,
    pub ids: ChildIds,
    /// Operations refused, each with why (for the plan's notices).
    pub refused: Vec<String>,
    /// Untagged VLANs left out, each with why: NetBox has no VLAN of that VID (or several).
    /// Said apart from the refusals: a site that keeps no VLANs in NetBox sees these on every
    /// run, which is not a problem to warn about.
    pub vlans_left_out: Vec<String>,
}

/// A current child as the snapshot has it.
struct Existing<'a> {
    id: u64,
    key: String,
    managed: bool,
    last_updated: Option<LastUpdated<'a>>,
}

fn existing(rows: Option<VmRows<'_>>, kind: ChildKind) -> Vec<Existing<'_>> {
    fn of(c: Child<'_>, key: String) -> Existing<'_> {
        Existing {
            id: c.id,
            key,
            managed: c.tags.iter().any(|t| t == MANAGED_TAG),
            last_updated: c.last_updated,
        }
    }
    let Some(rows) = rows else {
        return Vec::new();
    };
    match kind {
        ChildKind::Interface => rows
            .interfaces()
            .map(|c| of(c, c.name.to_owned()))
            .collect(),
        ChildKind::MacAddress => rows
            .macs()
            .map(|c| of(c, c.name.to_ascii_uppercase()))
            .collect(),
        ChildKind::IpAddress => rows
            .ips()
            .map(|c| {
                let key = match c.vrf {
                    Some(vrf) => format!("{}@{}", c.name, vrf),
                    None => c.name.to_owned(),
                };
                of(c, key)
            })
            .collect(),
        ChildKind::VirtualDisk => rows.disks().map(|c| of(c, c.name.to_owned())).collect(),
    }
}

/// The VLAN a VID means: the only VLAN with it, else the only global one (no site, no group)
/// with it; `None` when there is none or the choice is ambiguous.
pub fn vlan_for(vlans: &[VlanRow], vid: u64) -> Option<u64> {
    let with: Vec<&VlanRow> = vlans.iter().filter(|v| v.vid == vid).collect();
    match with.as_slice() {
        [one] => Some(one.id),
        many => {
            let global: Vec<&&VlanRow> = many
                .iter()
                .filter(|v| v.site_id().is_none() && v.group_id().is_none())
                .collect();
            match global.as_slice() {
                [one] => Some(one.id),
                _ => None,
            }
        }
    }
}

/// Turns one VM's child changes into child operations. `vm_id`: the NetBox VM (absent for a
/// create: it has no children yet); `primaries`: the primary IP keys the VM's own changes set.
/// When every change is planned as the rules gave it (a first sync's creates), the operations
/// are the changes' own memory; otherwise they are packed anew without spare room.
pub fn plan_children(
    vm_id: Option<u64>,
    changes: ChildOperations,
    primaries: &[String],
    snapshot: Option<&ChildrenSnapshot>,
) -> PlannedChildren {
    let rows = vm_id.and_then(|id| snapshot.and_then(|s| s.vm_rows(id)));
    let vlans = snapshot.and_then(ChildrenSnapshot::vlans).unwrap_or(&[]);
    let mut out = PlannedChildren::default();
    let mut wanted_refs: Vec<(ChildKind, String)> = Vec::new();
    let planned: Vec<Option<Planned<'_>>> = changes
        .iter()
        .map(|change| child_operation(change, rows, vlans, &mut out, &mut wanted_refs))
        .collect();
    let as_given = planned
        .iter()
        .all(|p| p.is_some_and(|p| p.last_updated.is_none() && !p.vlan_left_out));
    out.ops = if as_given {
        changes
    } else {
        let mut ops = ChildOperations::new();
        for (change, planned) in changes.iter().zip(&planned) {
            let Some(planned) = planned else { continue };
            // NetBox's text back from the snapshot's compact form, copied into the operations.
            let stamp = planned.last_updated.map(|t| t.to_string());
            let op = ChildOperation {
                last_updated: stamp.as_deref(),
                ..change
            };
            let kept = change
                .changes
                .iter()
                .filter(|c| !(planned.vlan_left_out && c.field == "untagged_vlan"))
                .map(|c| (c.field, c.old.0, c.new.0));
            ops.push_parts(op, kept);
        }
        ops.shrink_to_fit();
        ops
    };
    for (kind, key) in wanted_refs {
        if let Some(c) = existing(rows, kind).iter().find(|c| c.key == key) {
            out.ids.insert(ref_key(kind, &key), c.id);
        }
    }
    for address in primaries {
        for c in existing(rows, ChildKind::IpAddress) {
            if ip_key_has_address(&c.key, address) {
                out.ids.insert(ref_key(ChildKind::IpAddress, &c.key), c.id);
            }
        }
    }
    out.ids.shrink_to_fit();
    out
}

/// How one child change is planned, when it is: with the child's `last_updated` from the
/// snapshot, and without its untagged VLAN when NetBox lacks it.
#[derive(Clone, Copy)]
struct Planned<'s> {
    last_updated: Option<LastUpdated<'s>>,
    vlan_left_out: bool,
}

/// How one child change is planned, or `None` when it is refused or left with nothing to
/// write (said in `out`); the references it needs go to `wanted_refs`.
fn child_operation<'s>(
    change: ChildOperation<'_>,
    rows: Option<VmRows<'s>>,
    vlans: &[VlanRow],
    out: &mut PlannedChildren,
    wanted_refs: &mut Vec<(ChildKind, String)>,
) -> Option<Planned<'s>> {
    // Made only for a message: most changes are planned without one.
    let label = || change.label();
    let mut planned = Planned {
        last_updated: None,
        vlan_left_out: false,
    };
    if change.op != ChildAction::Create {
        // An id the rules gave as 0 reads back as none: NetBox ids start at 1, so it is no
        // child of this VM either.
        let id = change.netbox_id().unwrap_or(0);
        let current = existing(rows, change.kind);
        let Some(found) = current.iter().find(|c| c.id == id && id != 0) else {
            out.refused.push(format!(
                "{} #{id} not written: it is not one of this VM's {}s in NetBox",
                label(),
                kind_word(change.kind)
            ));
            return None;
        };
        if change.op == ChildAction::Delete && !found.managed {
            out.refused.push(format!(
                "{} #{id} not deleted: it does not carry the managed tag \
                 '{MANAGED_TAG}' (an operator's own)",
                label()
            ));
            return None;
        }
        planned.last_updated = found.last_updated;
    }
    let fields = change.changes;
    if let Some(vid) = fields
        .find("untagged_vlan")
        .and_then(|c| c.new.to_value().as_u64())
    {
        match vlan_for(vlans, vid) {
            Some(vlan_id) => {
                out.ids.insert(vlan_key(vid), vlan_id);
            }
            None => {
                out.vlans_left_out.push(format!(
                    "{}: untagged VLAN {vid} left out: NetBox has no VLAN with \
                     VID {vid}, or several and none of them global",
                    label()
                ));
                planned.vlan_left_out = true;
                let others = fields.iter().filter(|c| c.field != "untagged_vlan").count();
                if others == 0 && change.op == ChildAction::Update {
                    return None;
                }
            }
        }
    }
    if let Some(parent) = change.parent {
        wanted_refs.push((ChildKind::Interface, parent.to_owned()));
    }
    if let Some(mac) = fields
        .find("primary_mac_address")
        .and_then(|c| c.new.as_string_value())
    {
        wanted_refs.push((ChildKind::MacAddress, mac));
    }
    Some(planned)
}

/// True when the IP key `key` (`address[@vrf]`) is the address `address`.
pub fn ip_key_has_address(key: &str, address: &str) -> bool {
    key == address
        || key
            .strip_prefix(address)
            .is_some_and(|rest| rest.starts_with('@'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_default::children::{ChildChange, ChildOp};

    use crate::pipeline::reconcile::child_operations::tests::change;

    fn changes(list: Vec<ChildChange>) -> ChildOperations {
        ChildOperations::from(list)
    }

    fn snapshot() -> ChildrenSnapshot {
        ChildrenSnapshot::from_json_for_tests(serde_json::json!({
            "interfaces": [
                {"id": 11, "virtual_machine": {"id": 7}, "name": "net0",
                 "tags": [{"slug": "pve2netbox"}], "last_updated": "2026-01-01T00:00:00Z"},
                {"id": 12, "virtual_machine": {"id": 7}, "name": "mgmt", "tags": []}],
            "ip_addresses": [
                {"id": 31, "address": "10.0.0.5/24", "vrf": {"id": 2, "name": "blue"},
                 "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 11,
                 "tags": ["pve2netbox"]}],
            "vlans": [{"id": 5, "vid": 10}, {"id": 6, "vid": 20, "site": {"id": 1}},
                      {"id": 7, "vid": 20, "site": {"id": 2}}]
        }))
    }

    #[test]
    fn operations_carry_ids_last_updated_and_references() {
        let snap = snapshot();
        let planned = plan_children(
            Some(7),
            changes(vec![
                change(
                    ChildKind::Interface,
                    "net0",
                    ChildOp::Update(11),
                    &[("untagged_vlan", "10")],
                ),
                change(
                    ChildKind::IpAddress,
                    "10.0.0.9/24",
                    ChildOp::Create,
                    &[("address", "\"10.0.0.9/24\"")],
                ),
            ]),
            &["10.0.0.5/24".to_owned()],
            Some(&snap),
        );
        assert!(planned.refused.is_empty(), "{:?}", planned.refused);
        assert_eq!(planned.ops.len(), 2);
        assert_eq!(
            planned.ops.get(0).unwrap().last_updated,
            Some("2026-01-01T00:00:00Z")
        );
        // As `plan.json` has always written an operation (ids as numbers, texts as strings).
        assert_eq!(
            serde_json::to_value(&planned.ops).unwrap(),
            serde_json::json!([
                {"kind": "interface", "key": "net0", "op": "update", "id": 11,
                 "last_updated": "2026-01-01T00:00:00Z",
                 "changes": [{"field": "untagged_vlan", "old": null, "new": 10}]},
                {"kind": "ip-address", "key": "10.0.0.9/24", "parent": "net0", "op": "create",
                 "changes": [{"field": "address", "old": null, "new": "10.0.0.9/24"}]}
            ])
        );
        let back: ChildOperations =
            serde_json::from_value(serde_json::to_value(&planned.ops).unwrap()).unwrap();
        assert_eq!(back, planned.ops);
        assert_eq!(
            planned.ids,
            ChildIds::from_iter([
                ("interface:net0", 11),
                ("ip-address:10.0.0.5/24@blue", 31),
                ("vlan:10", 5),
            ])
        );
    }

    #[test]
    fn an_operators_child_is_never_deleted_nor_another_vms_touched() {
        let snap = snapshot();
        let planned = plan_children(
            Some(7),
            changes(vec![
                change(ChildKind::Interface, "mgmt", ChildOp::Delete(12), &[]),
                change(ChildKind::Interface, "x", ChildOp::Delete(99), &[]),
                change(ChildKind::Interface, "net0", ChildOp::Delete(11), &[]),
            ]),
            &[],
            Some(&snap),
        );
        assert_eq!(planned.ops.len(), 1);
        assert_eq!(planned.ops.get(0).unwrap().netbox_id(), Some(11));
        assert_eq!(planned.refused.len(), 2, "{:?}", planned.refused);
        assert!(planned.refused[0].contains("managed tag"));
    }

    #[test]
    fn creates_planned_as_given_keep_their_memory_and_a_refusal_repacks() {
        let snap = snapshot();
        let creates: Vec<ChildChange> = (0..10)
            .map(|i| {
                change(
                    ChildKind::IpAddress,
                    &format!("10.0.0.{i}/24"),
                    ChildOp::Create,
                    &[("address", "\"x\"")],
                )
            })
            .collect();
        let given = changes(creates.clone());
        let (at, json) = (given.buffers(), serde_json::to_value(&given).unwrap());
        let planned = plan_children(None, given, &[], Some(&snap));
        assert_eq!(
            planned.ops.buffers(),
            at,
            "no second allocation per VM (the first sync's memory peak)"
        );
        assert_eq!(serde_json::to_value(&planned.ops).unwrap(), json);

        let mut with_refused = creates;
        with_refused.push(change(
            ChildKind::Interface,
            "mgmt",
            ChildOp::Delete(12),
            &[],
        ));
        let planned = plan_children(Some(7), changes(with_refused), &[], Some(&snap));
        assert_eq!(planned.ops.len(), 10, "the operator's interface is refused");
        assert_eq!(planned.refused.len(), 1);
        assert_eq!(serde_json::to_value(&planned.ops).unwrap(), json);
        let last = planned.ops.get(9).unwrap();
        assert_eq!((last.key, last.parent), ("10.0.0.9/24", Some("net0")));
    }

    #[test]
    fn a_zero_id_is_no_child_of_the_vm() {
        let planned = plan_children(
            Some(7),
            changes(vec![change(
                ChildKind::Interface,
                "net0",
                ChildOp::Update(0),
                &[("mtu", "9000")],
            )]),
            &[],
            Some(&snapshot()),
        );
        assert!(planned.ops.is_empty());
        assert!(
            planned.refused[0].contains("#0 not written"),
            "{:?}",
            planned.refused
        );
    }

    #[test]
    fn an_ambiguous_vlan_is_left_out_and_said() {
        let snap = snapshot();
        let planned = plan_children(
            Some(7),
            changes(vec![change(
                ChildKind::Interface,
                "net0",
                ChildOp::Update(11),
                &[("untagged_vlan", "20")],
            )]),
            &[],
            Some(&snap),
        );
        assert!(planned.ops.is_empty(), "nothing else to write");
        assert!(planned.refused.is_empty());
        assert!(
            planned.vlans_left_out[0].contains("VLAN 20"),
            "{:?}",
            planned.vlans_left_out
        );
    }

    #[test]
    fn ip_keys_match_addresses_with_or_without_a_vrf() {
        assert!(ip_key_has_address("10.0.0.5/24", "10.0.0.5/24"));
        assert!(ip_key_has_address("10.0.0.5/24@blue", "10.0.0.5/24"));
        assert!(!ip_key_has_address("10.0.0.55/24", "10.0.0.5/24"));
        assert!(!ip_key_has_address("10.0.0.5/2", "10.0.0.5/24"));
    }
}
