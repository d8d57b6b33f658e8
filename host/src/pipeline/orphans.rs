//! Orphans: managed NetBox VMs (a `proxmox_vm_id` in a managed cluster) whose guest is missing
//! from a Proxmox scope that was read completely, and what the orphan policy does with them.
//!
//! Decisions:
//! - A scope not read completely (listing failed, node offline or not listed) gets no orphan
//!   action under any policy; its error comes from [`ClusterRead::errors`]. A guest whose config
//!   failed is still listed, so its VM is never missing.
//! - A shrunken view (a token that suddenly sees fewer guests) is told from deleted guests by
//!   counting the missing VMs not yet marked: more than `view_shrink_percent` of the cluster's
//!   managed VMs (at least one is always allowed), or fewer guests than `visible_last_run` by
//!   as much, makes the whole cluster incomplete, with an error.
//! - `mark` sets status `offline`, adds the tag `pve2netbox-orphan` and a journal entry, once
//!   (a marked VM is not written again). Reversible: when the guest is back, reconcile removes
//!   the tag and the normal diff restores the status.
//! - `delete` marks too and counts the consecutive fully read runs in the custom field
//!   `proxmox_missing_runs` (state kept in NetBox, none locally); the run that counts
//!   `delete_after_runs` deletes. A run where the scope is incomplete neither counts nor resets.
//! - The delete budget refuses every delete of a run when deletes × 100 > budget % × managed
//!   VMs (inclusive: exactly 10 % of the managed VMs may go). Refused deletes are counted and
//!   marked instead, and the run gets an error.

use std::collections::{BTreeMap, BTreeSet};

use guest_default::model::JsonText;
use serde::{Deserialize, Serialize};

use crate::pipeline::reconcile::{
    Changes, ClusterRead, Identity, Journal, MISSING_RUNS_FIELD, NetboxRecord, ORPHAN_TAG,
    ObservedGuest, Snapshot, cf,
};
use crate::pipeline::report::ErrorEntry;

/// Consecutive fully read runs a guest must be missing before `delete` removes its VM: one
/// run is too trigger-happy for a guest being moved between clusters or restored from backup.
pub const DEFAULT_DELETE_AFTER_RUNS: u32 = 3;
/// Share of the managed VMs one run may delete, in percent: a bigger loss is more likely a
/// read problem than a decommissioning wave.
pub const DEFAULT_DELETE_BUDGET_PERCENT: u32 = 10;
/// Share of a cluster's managed VMs that may newly go missing in one run, in percent, before
/// the view is taken as shrunk (token rights) rather than guests deleted.
pub const DEFAULT_VIEW_SHRINK_PERCENT: u32 = 10;
/// Missing guests always allowed per cluster and run, so a small cluster can lose one guest.
pub const VIEW_SHRINK_MIN_MISSING: usize = 1;

/// Phase name for orphan decisions in errors.
const PHASE: &str = "reconcile";

/// What to do with orphans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OrphanPolicy {
    /// List them in the report and plan; write nothing.
    #[default]
    Report,
    /// Status `offline`, tag `pve2netbox-orphan`, a journal entry.
    Mark,
    /// Mark, then delete after `delete_after_runs` consecutive runs missing.
    Delete,
}

/// Orphan settings (the `[sync]` config maps to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanSettings {
    pub policy: OrphanPolicy,
    pub delete_after_runs: u32,
    pub delete_budget_percent: u32,
    pub view_shrink_percent: u32,
}

impl Default for OrphanSettings {
    fn default() -> Self {
        OrphanSettings {
            policy: OrphanPolicy::Report,
            delete_after_runs: DEFAULT_DELETE_AFTER_RUNS,
            delete_budget_percent: DEFAULT_DELETE_BUDGET_PERCENT,
            view_shrink_percent: DEFAULT_VIEW_SHRINK_PERCENT,
        }
    }
}

/// What this run does with one orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanAction {
    /// Only listed (policy `report`, or already marked).
    Listed,
    /// Written: marked and/or counted.
    Mark,
    /// Deleted.
    Delete,
}

/// One managed VM whose guest is gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    pub cluster: String,
    pub cluster_id: u64,
    pub vmid: u32,
    /// `proxmox_node` of the VM, when set.
    pub node: Option<String>,
    pub netbox_id: u64,
    pub name: String,
    pub last_updated: Option<String>,
    pub action: OrphanAction,
    /// The mark's field changes (empty for `Listed` and `Delete`).
    pub changes: Changes,
    pub journal: Option<Journal>,
}

impl Orphan {
    /// `cluster/node/vmid` (`?` for an unknown node).
    pub fn scope(&self) -> String {
        let node = self.node.as_deref().unwrap_or("?");
        format!("{}/{node}/{}", self.cluster, self.vmid)
    }
}

/// Orphans found, and the errors of scopes that could not be judged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrphanFindings {
    /// Sorted by cluster, then VMID.
    pub orphans: Vec<Orphan>,
    /// Incomplete scopes, shrunken views, duplicates, a refused delete budget.
    pub errors: Vec<ErrorEntry>,
    /// True when the delete budget refused this run's deletes.
    pub deletes_refused: bool,
}

/// Finds the orphans of every managed cluster and applies `settings`.
pub fn find_orphans(
    reads: &[ClusterRead],
    observed: &[ObservedGuest],
    snapshot: &Snapshot,
    settings: &OrphanSettings,
) -> OrphanFindings {
    let mut findings = OrphanFindings::default();
    for read in reads {
        findings.errors.extend(read.errors());
    }
    let seen: BTreeSet<Identity> = observed
        .iter()
        .map(|g| Identity {
            cluster_id: g.cluster_id,
            vmid: g.vmid,
        })
        .collect();
    let duplicated: BTreeSet<Identity> = snapshot.duplicates().map(|(id, _)| id).collect();
    let mut by_cluster: BTreeMap<u64, Vec<&NetboxRecord>> = BTreeMap::new();
    for record in snapshot.records() {
        if let Some(id) = record.identity() {
            by_cluster.entry(id.cluster_id).or_default().push(record);
        }
    }
    for (cluster_id, records) in by_cluster {
        let Some(read) = reads.iter().find(|r| r.cluster_id == cluster_id) else {
            let name = records[0].vm.cluster().unwrap_or_default().to_owned();
            findings.errors.push(ErrorEntry::new(
                format!("{name} (NetBox cluster #{cluster_id})"),
                PHASE,
                "no Proxmox read for this managed cluster: no orphan action in it",
            ));
            continue;
        };
        if read.listing_error.is_some() {
            continue;
        }
        let missing: Vec<&NetboxRecord> = records
            .iter()
            .copied()
            .filter(|r| r.identity().is_some_and(|id| !seen.contains(&id)))
            .collect();
        let visible = observed
            .iter()
            .filter(|g| g.cluster_id == cluster_id)
            .count();
        if let Some(message) = shrunk(read, records.len(), &missing, visible, settings) {
            findings
                .errors
                .push(ErrorEntry::new(&read.cluster, PHASE, message));
            continue;
        }
        for record in missing {
            let Some(id) = record.identity() else {
                continue;
            };
            if !read.node_complete(record.node().as_deref()) {
                continue;
            }
            let mut orphan = Orphan {
                cluster: read.cluster.clone(),
                cluster_id,
                vmid: id.vmid,
                node: record.node(),
                netbox_id: record.id(),
                name: record.vm.name().to_owned(),
                last_updated: record.vm.last_updated().map(str::to_owned),
                action: OrphanAction::Listed,
                changes: Changes::new(),
                journal: None,
            };
            if duplicated.contains(&id) {
                findings.errors.push(ErrorEntry::new(
                    orphan.scope(),
                    PHASE,
                    format!(
                        "duplicate identity: several NetBox VMs have proxmox_vm_id {} and the \
                         guest is gone; left alone, remove them by hand",
                        id.vmid
                    ),
                ));
                continue;
            }
            decide(&mut orphan, record, settings);
            findings.orphans.push(orphan);
        }
    }
    findings.orphans.sort_by(|a, b| {
        (&a.cluster, a.cluster_id, a.vmid).cmp(&(&b.cluster, b.cluster_id, b.vmid))
    });
    apply_budget(&mut findings, snapshot, settings);
    findings
}

/// Why the cluster's view looks shrunk, if it does.
fn shrunk(
    read: &ClusterRead,
    managed: usize,
    missing: &[&NetboxRecord],
    visible: usize,
    settings: &OrphanSettings,
) -> Option<String> {
    let allowance = |base: usize| {
        (base * settings.view_shrink_percent as usize / 100).max(VIEW_SHRINK_MIN_MISSING)
    };
    let new_missing = missing.iter().filter(|r| !r.has_tag(ORPHAN_TAG)).count();
    if new_missing > allowance(managed) {
        return Some(format!(
            "{new_missing} of {managed} managed VMs newly missing from what Proxmox listed \
             (more than {} %): the token may see fewer guests; no orphan action in this cluster",
            settings.view_shrink_percent
        ));
    }
    match read.visible_last_run {
        Some(last) if last > visible + allowance(last) => Some(format!(
            "Proxmox listed {visible} guests, {last} in the previous run (more than {} % fewer): \
             the token may see fewer guests; no orphan action in this cluster",
            settings.view_shrink_percent
        )),
        _ => None,
    }
}

/// Applies the policy to one orphan.
fn decide(orphan: &mut Orphan, record: &NetboxRecord, settings: &OrphanSettings) {
    let marked = record.has_tag(ORPHAN_TAG);
    match settings.policy {
        OrphanPolicy::Report => {}
        OrphanPolicy::Mark if marked => {}
        OrphanPolicy::Mark => mark(orphan, record, None, settings),
        OrphanPolicy::Delete => {
            let count = record.missing_runs.saturating_add(1);
            if count >= settings.delete_after_runs.max(1) {
                orphan.action = OrphanAction::Delete;
            } else {
                mark(orphan, record, Some(count), settings);
            }
        }
    }
}

/// Turns `orphan` into a mark (tag, status, journal when newly marked; the count under `delete`).
fn mark(orphan: &mut Orphan, record: &NetboxRecord, count: Option<u32>, settings: &OrphanSettings) {
    orphan.action = OrphanAction::Mark;
    orphan.changes.clear();
    if !record.has_tag(ORPHAN_TAG) {
        if record.vm.status() != "offline" {
            orphan.changes.push(
                "status",
                JsonText::string(record.vm.status()).as_str(),
                JsonText::string("offline").as_str(),
            );
        }
        let mut old = record.vm.tags().to_vec();
        old.sort();
        let mut new = old.clone();
        new.push(ORPHAN_TAG.to_owned());
        new.sort();
        orphan.changes.push(
            "tags",
            JsonText::from_value(&serde_json::json!(old)).as_str(),
            JsonText::from_value(&serde_json::json!(new)).as_str(),
        );
        let mut comments = format!(
            "pve2netbox: guest {} is no longer in Proxmox (scope read completely); marked as \
             orphan, status was '{}'.",
            orphan.scope(),
            record.vm.status()
        );
        if settings.policy == OrphanPolicy::Delete {
            comments.push_str(&format!(
                " It will be deleted after {} consecutive runs missing.",
                settings.delete_after_runs.max(1)
            ));
        }
        orphan.journal = Some(Journal::warning(comments));
    }
    if let Some(count) = count {
        let old = if record.missing_runs == 0 {
            JsonText::null()
        } else {
            JsonText::uint(u64::from(record.missing_runs))
        };
        orphan.changes.push(
            &cf(MISSING_RUNS_FIELD),
            old.as_str(),
            JsonText::uint(u64::from(count)).as_str(),
        );
    }
}

/// Refuses all deletes when they exceed the budget; they are marked and counted instead.
fn apply_budget(findings: &mut OrphanFindings, snapshot: &Snapshot, settings: &OrphanSettings) {
    let deletes = findings
        .orphans
        .iter()
        .filter(|o| o.action == OrphanAction::Delete)
        .count();
    let managed = snapshot.managed_count();
    if deletes == 0 || deletes * 100 <= settings.delete_budget_percent as usize * managed {
        return;
    }
    findings.deletes_refused = true;
    findings.errors.push(ErrorEntry::new(
        "run",
        PHASE,
        format!(
            "delete budget: this run would delete {deletes} of {managed} managed VMs, more than \
             {} %; no VM deleted (check the Proxmox read, or raise delete_budget_percent)",
            settings.delete_budget_percent
        ),
    ));
    let records: BTreeMap<u64, &NetboxRecord> =
        snapshot.records().iter().map(|r| (r.id(), r)).collect();
    for orphan in findings
        .orphans
        .iter_mut()
        .filter(|o| o.action == OrphanAction::Delete)
    {
        if let Some(record) = records.get(&orphan.netbox_id) {
            let count = record.missing_runs.saturating_add(1);
            mark(orphan, record, Some(count), settings);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pipeline::reconcile::fixtures::*;
    use crate::pipeline::reconcile::{GuestReadError, NodeRead};

    fn settings(policy: OrphanPolicy) -> OrphanSettings {
        OrphanSettings {
            policy,
            ..OrphanSettings::default()
        }
    }

    fn complete() -> Vec<ClusterRead> {
        vec![ClusterRead::complete(
            CLUSTER,
            CLUSTER_ID,
            &["pve1", "pve2"],
        )]
    }

    /// Ten managed VMs 100..=109 on pve1; the guests listed are `present`.
    fn world(present: &[u32]) -> (Vec<ObservedGuest>, Snapshot) {
        let records = (100..110)
            .map(|v| {
                netbox_vm(u64::from(v))
                    .named(&format!("vm-{v}"))
                    .identity(v)
            })
            .collect();
        let observed = guests(present.iter().map(|&v| guest(v)).collect());
        (observed, snapshot(records))
    }

    fn all_but(missing: u32) -> Vec<u32> {
        (100..110).filter(|&v| v != missing).collect()
    }

    #[test]
    fn report_lists_and_writes_nothing() {
        let (observed, snap) = world(&all_but(105));
        let f = find_orphans(
            &complete(),
            &observed,
            &snap,
            &settings(OrphanPolicy::Report),
        );
        assert_eq!(f.orphans.len(), 1);
        let o = &f.orphans[0];
        assert_eq!(
            (o.vmid, o.netbox_id, o.action),
            (105, 105, OrphanAction::Listed)
        );
        assert!(o.changes.is_empty() && o.journal.is_none());
        assert!(f.errors.is_empty());
    }

    #[test]
    fn mark_sets_offline_tags_and_journals_once() {
        let (observed, snap) = world(&all_but(105));
        let f = find_orphans(&complete(), &observed, &snap, &settings(OrphanPolicy::Mark));
        let o = &f.orphans[0];
        assert_eq!(o.action, OrphanAction::Mark);
        let fields: Vec<&str> = o.changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["status", "tags"]);
        assert_eq!(o.changes.get(0).unwrap().new.to_value(), json!("offline"));
        assert_eq!(
            o.changes.get(1).unwrap().new.to_value(),
            json!(["pve2netbox-orphan"])
        );
        let journal = o.journal.as_ref().unwrap();
        assert_eq!(journal.kind, "warning");
        assert!(
            journal.comments.contains("pve-a/pve1/105"),
            "{}",
            journal.comments
        );

        // Next run: already marked, nothing written.
        let snap = snapshot(vec![
            netbox_vm(105)
                .identity(105)
                .status("offline")
                .tags(&["pve2netbox-orphan"]),
        ]);
        let f = find_orphans(&complete(), &[], &snap, &settings(OrphanPolicy::Mark));
        assert_eq!(f.orphans[0].action, OrphanAction::Listed);
        assert!(f.orphans[0].changes.is_empty());
    }

    #[test]
    fn delete_counts_runs_in_netbox_then_deletes() {
        let s = settings(OrphanPolicy::Delete);
        let (observed, snap) = world(&all_but(105));
        let first = find_orphans(&complete(), &observed, &snap, &s);
        let o = &first.orphans[0];
        assert_eq!(o.action, OrphanAction::Mark);
        let count = o
            .changes
            .iter()
            .find(|c| c.field == "custom_fields.proxmox_missing_runs");
        assert_eq!(count.unwrap().old.to_value(), json!(null));
        assert_eq!(count.unwrap().new.to_value(), json!(1));

        let counted = |n: u32| {
            let mut records: Vec<_> = (100..110)
                .filter(|&v| v != 105)
                .map(|v| netbox_vm(u64::from(v)).identity(v))
                .collect();
            records.push(
                netbox_vm(105)
                    .identity(105)
                    .status("offline")
                    .tags(&["pve2netbox-orphan"])
                    .missing_runs(n),
            );
            snapshot(records)
        };
        let second = find_orphans(&complete(), &observed, &counted(1), &s);
        let o = &second.orphans[0];
        assert_eq!(o.action, OrphanAction::Mark);
        // Already marked: only the count moves, no second journal entry.
        assert_eq!(o.changes.len(), 1);
        assert_eq!(o.changes.get(0).unwrap().new.to_value(), json!(2));
        assert!(o.journal.is_none());

        let third = find_orphans(&complete(), &observed, &counted(2), &s);
        assert_eq!(third.orphans[0].action, OrphanAction::Delete);
        assert!(!third.deletes_refused);
    }

    #[test]
    fn delete_after_one_run_deletes_at_once() {
        let s = OrphanSettings {
            policy: OrphanPolicy::Delete,
            delete_after_runs: 1,
            ..OrphanSettings::default()
        };
        let (observed, snap) = world(&all_but(105));
        let f = find_orphans(&complete(), &observed, &snap, &s);
        assert_eq!(f.orphans[0].action, OrphanAction::Delete);
    }

    /// `n` managed VMs of which the first `deleted` are gone, deletable this run.
    fn budget_world(n: u32, deleted: u32) -> (Vec<ObservedGuest>, Snapshot, Vec<ClusterRead>) {
        let records = (0..n)
            .map(|v| netbox_vm(u64::from(v) + 1).identity(1000 + v))
            .collect();
        let observed = guests((deleted..n).map(|v| guest(1000 + v)).collect());
        let mut read = ClusterRead::complete(CLUSTER, CLUSTER_ID, &["pve1"]);
        // A big deletion wave: the shrink guard must not be what stops it here.
        read.visible_last_run = None;
        (observed, snapshot(records), vec![read])
    }

    fn budget_settings() -> OrphanSettings {
        OrphanSettings {
            policy: OrphanPolicy::Delete,
            delete_after_runs: 1,
            view_shrink_percent: 100,
            ..OrphanSettings::default()
        }
    }

    #[test]
    fn the_delete_budget_allows_exactly_ten_percent() {
        let (observed, snap, reads) = budget_world(100, 10);
        let f = find_orphans(&reads, &observed, &snap, &budget_settings());
        assert!(!f.deletes_refused);
        let deletes = f
            .orphans
            .iter()
            .filter(|o| o.action == OrphanAction::Delete)
            .count();
        assert_eq!(deletes, 10);
        assert!(f.errors.is_empty());
    }

    #[test]
    fn the_delete_budget_refuses_all_deletes_just_over_ten_percent() {
        let (observed, snap, reads) = budget_world(100, 11);
        let f = find_orphans(&reads, &observed, &snap, &budget_settings());
        assert!(f.deletes_refused);
        assert_eq!(f.orphans.len(), 11);
        for o in &f.orphans {
            assert_eq!(o.action, OrphanAction::Mark, "{o:?}");
        }
        assert_eq!(f.errors.len(), 1);
        assert_eq!(f.errors[0].scope, "run");
        assert!(
            f.errors[0].message.contains("11 of 100"),
            "{}",
            f.errors[0].message
        );
    }

    /// Every cause of an incomplete read, as (reads, guests listed).
    fn incomplete_cases() -> Vec<(&'static str, Vec<ClusterRead>)> {
        let base = || ClusterRead::complete(CLUSTER, CLUSTER_ID, &["pve1", "pve2"]);
        let mut down = base();
        down.listing_error = Some("connection refused".into());
        let mut offline = base();
        offline.nodes[0] = NodeRead {
            name: "pve1".into(),
            online: false,
            listed: false,
            message: Some("595 No route to host".into()),
        };
        let mut unlisted = base();
        unlisted.nodes[0].listed = false;
        unlisted.nodes[0].message = Some("status unknown rows".into());
        vec![
            ("endpoint down", vec![down]),
            ("node offline", vec![offline]),
            ("node not listed", vec![unlisted]),
            ("no read at all", vec![]),
        ]
    }

    #[test]
    fn an_incomplete_scope_gets_no_orphan_action_under_any_policy() {
        for policy in [
            OrphanPolicy::Report,
            OrphanPolicy::Mark,
            OrphanPolicy::Delete,
        ] {
            for (cause, reads) in incomplete_cases() {
                let (observed, snap) = world(&all_but(105));
                let s = OrphanSettings {
                    policy,
                    delete_after_runs: 1,
                    ..OrphanSettings::default()
                };
                let f = find_orphans(&reads, &observed, &snap, &s);
                assert!(f.orphans.is_empty(), "{policy:?} {cause}: {:?}", f.orphans);
                assert!(!f.errors.is_empty(), "{policy:?} {cause}: no error");
            }
        }
    }

    #[test]
    fn a_shrunken_view_gets_no_orphan_action_under_any_policy() {
        for policy in [
            OrphanPolicy::Report,
            OrphanPolicy::Mark,
            OrphanPolicy::Delete,
        ] {
            // The token sees 5 of 10 guests.
            let (observed, snap) = world(&[100, 101, 102, 103, 104]);
            let f = find_orphans(&complete(), &observed, &snap, &settings(policy));
            assert!(f.orphans.is_empty(), "{policy:?}");
            assert_eq!(f.errors.len(), 1);
            assert!(
                f.errors[0].message.contains("5 of 10"),
                "{}",
                f.errors[0].message
            );

            // Known from the previous run: 20 guests then, 10 now.
            let mut reads = complete();
            reads[0].visible_last_run = Some(20);
            let (observed, snap) = world(&all_but(105));
            let f = find_orphans(&reads, &observed, &snap, &settings(policy));
            assert!(f.orphans.is_empty(), "{policy:?}");
            assert!(f.errors[0].message.contains("previous run"));
        }
    }

    #[test]
    fn already_marked_orphans_do_not_count_as_a_shrink() {
        // Three guests gone long ago (marked), one newly gone: a normal deletion.
        let mut records: Vec<_> = (100..110)
            .map(|v| netbox_vm(u64::from(v)).identity(v))
            .collect();
        for v in [106u32, 107, 108] {
            records[(v - 100) as usize] = netbox_vm(u64::from(v))
                .identity(v)
                .status("offline")
                .tags(&["pve2netbox-orphan"]);
        }
        let observed = guests((100..106).map(guest).collect());
        let f = find_orphans(
            &complete(),
            &observed,
            &snapshot(records),
            &settings(OrphanPolicy::Mark),
        );
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.orphans.len(), 4);
        let marked: Vec<u32> = f
            .orphans
            .iter()
            .filter(|o| o.action == OrphanAction::Mark)
            .map(|o| o.vmid)
            .collect();
        assert_eq!(marked, vec![109]);
    }

    #[test]
    fn an_offline_node_spares_only_its_own_vms() {
        let mut reads = complete();
        reads[0].nodes[1] = NodeRead {
            name: "pve2".into(),
            online: false,
            listed: false,
            message: None,
        };
        let snap = snapshot(vec![
            netbox_vm(1).identity(100),
            netbox_vm(2).identity(101).on("pve2"),
            netbox_vm(3).identity(102).cf(
                crate::pipeline::reconcile::NODE_FIELD,
                guest_default::model::JsonText::null(),
            ),
            netbox_vm(4).identity(103),
        ]);
        let observed = guests(vec![guest(103)]);
        let s = OrphanSettings {
            view_shrink_percent: 100,
            ..settings(OrphanPolicy::Mark)
        };
        let f = find_orphans(&reads, &observed, &snap, &s);
        let vmids: Vec<u32> = f.orphans.iter().map(|o| o.vmid).collect();
        // 101 was on the offline node, 102's node is unknown: both spared.
        assert_eq!(vmids, vec![100]);
        assert_eq!(f.errors.len(), 1);
        assert_eq!(f.errors[0].scope, "pve-a/pve2");
    }

    #[test]
    fn a_failed_guest_config_is_a_guest_scope_error_and_never_an_orphan() {
        let mut reads = complete();
        reads[0].guest_errors.push(GuestReadError {
            vmid: 105,
            node: "pve1".into(),
            message: "500 timeout".into(),
        });
        // The guest is still listed (its row), so it is observed.
        let (observed, snap) = world(&(100..110).collect::<Vec<_>>());
        let f = find_orphans(&reads, &observed, &snap, &settings(OrphanPolicy::Delete));
        assert!(f.orphans.is_empty());
        assert_eq!(f.errors.len(), 1);
        assert_eq!(f.errors[0].scope, "pve-a/pve1/105");
    }

    #[test]
    fn duplicated_identities_of_a_gone_guest_are_reported_not_deleted() {
        let mut records: Vec<_> = (100..110)
            .map(|v| netbox_vm(u64::from(v)).identity(v))
            .collect();
        records.push(netbox_vm(200).named("copy").identity(105));
        let observed = guests(all_but(105).into_iter().map(guest).collect());
        let s = OrphanSettings {
            policy: OrphanPolicy::Delete,
            delete_after_runs: 1,
            view_shrink_percent: 100,
            ..OrphanSettings::default()
        };
        let f = find_orphans(&complete(), &observed, &snapshot(records), &s);
        assert!(f.orphans.is_empty(), "{:?}", f.orphans);
        assert!(
            f.errors
                .iter()
                .all(|e| e.message.contains("duplicate identity"))
        );
        assert!(!f.errors.is_empty());
    }

    #[test]
    fn unowned_vms_are_never_orphans() {
        let snap = snapshot(vec![netbox_vm(1).named("by-hand")]);
        let f = find_orphans(&complete(), &[], &snap, &settings(OrphanPolicy::Delete));
        assert!(f.orphans.is_empty() && f.errors.is_empty());
    }
}
