//! Task history: each reconciled VM's Proxmox tasks become NetBox journal entries on the VM
//! (kind by exit status: `OK` -> success, `WARNINGS: N` -> warning, an error -> danger; running
//! tasks wait for a later run), idempotent by UPID, read incrementally.
//!
//! The watermark T: each NetBox cluster carries the custom field `proxmox_tasks_since` (epoch
//! seconds), read by preflight with the clusters. Its meaning: every finished task of a managed
//! VM that started before T is recorded. A run reads, per node (not per VM),
//! `/nodes/{node}/tasks?since=T&source=all` in pages; only tasks starting at or after T can be
//! new, and only those of this run's reconciled VMs (by the vmid in the task's `id`, whatever
//! node ran it) are kept. Without T (first run, or the field unusable) each node's newest
//! [`FIRST_RUN_LOOKBACK_TASKS`] tasks are read instead of all history.
//!
//! Idempotence without reading every entry: only VMs with candidate tasks have their entries
//! read (`assigned_object_id` repeated, [`JOURNAL_IDS_PER_READ`] per request, tagged
//! `pve2netbox`, `created_after` a day before T), and a task whose UPID is already in one is
//! skipped. New entries are POSTed in bulk (independent and append-only, so a batch is safe;
//! a failed batch is split to isolate the bad entry).
//!
//! The new T, per cluster: the newest task end seen on any node (every task that started
//! before the read was returned, and the read came after that end) minus
//! [`CLOCK_SLACK_S`] for clock differences between nodes, but never past the start of a
//! managed VM's still-running task (it is recorded once it ends). It is written with one PATCH
//! of the cluster only after every node was read and every entry written (a crash between the
//! two means re-reading a window, never skipping one), and only when entries were written, on
//! the first run, or when T would move by [`WATERMARK_REFRESH_S`] (so activity of unmanaged
//! guests does not grow the read window forever); a rerun with nothing new writes nothing.
//! A noop rerun therefore costs one Proxmox page per node and, at most, a journal read for
//! the VMs of tasks that ended within [`CLOCK_SLACK_S`] of the newest end.
//!
//! **Late commits.** A NetBox under load may commit a journal POST after the client gave up on
//! it (its worker goes on after the connection is gone), even after the next run read the
//! journal and wrote the same entry again. No uniqueness in NetBox stops that, so the phase
//! repairs it: every journal read keeps, per `(VM, UPID)`, the entry with the lowest id and
//! deletes the others ([`Recorded::extra`]), and before a cluster's watermark moves past
//! entries this run wrote, their VMs' journal is read again and de-duplicated the same way; a
//! duplicate found there (a late commit landing while this run wrote) holds the watermark, so
//! the next run looks again. A write whose answer was lost is never re-sent in the same run.
//!
//! A guest this run could not journal ([`Unrecorded`]: its VM write failed, or the rules
//! failed on it) holds its cluster's T at the start of its oldest task read, so the run that
//! finally writes its VM still finds those tasks (a clean first run would have recorded them).
//!
//! Trade-off: a VM that becomes managed later (created by a later run) gets its tasks from T
//! on, not its older history.
//!
//! Edges: the Proxmox endpoints, preflight's watermarks and the written/kept VMs' NetBox ids
//! in; journal writes and the clusters' watermark out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::clients::netbox::NetboxClient;
use crate::clients::proxmox::{Task, TaskOutcome, TaskQuery, TaskSource};
use crate::pipeline::preflight::{MANAGED_TAG, Preflight, TASKS_SINCE_FIELD, VM_OBJECT_TYPE};
use crate::pipeline::proxmox_read::Endpoint;
use crate::pipeline::report::ErrorEntry;
use crate::progress::PhaseBar;
use crate::safety::lease::{LeaseError, NetboxLease};

/// Phase name in errors.
pub const PHASE: &str = "task_history";
const JOURNAL_ENDPOINT: &str = "extras/journal-entries";
const CLUSTER_ENDPOINT: &str = "virtualization/clusters";
/// Tasks per Proxmox page: the API's default is 50; larger pages cut round trips without
/// making one answer large (a task row is ~250 bytes).
const TASK_PAGE: u64 = 500;
/// Without a watermark, the newest tasks read per node (one page): a first run records recent
/// history, not years of it.
pub const FIRST_RUN_LOOKBACK_TASKS: u64 = 500;
/// Journal entries per bulk POST: ~300 bytes each, so ~30 KB per request, far under NetBox's
/// 2.5 MB body limit, and a failed batch costs little to split.
const JOURNAL_BULK_ITEMS: usize = 100;
/// VM ids per journal read: `assigned_object_id=NNNNNN&` is ~26 bytes, so 100 ids keep the
/// request line under gunicorn's default 4094-byte limit.
pub const JOURNAL_IDS_PER_READ: usize = 100;
/// Seconds subtracted from the newest task end for the watermark: Proxmox stamps whole
/// seconds and cluster nodes' clocks differ by a little (corosync needs them in step).
pub const CLOCK_SLACK_S: i64 = 2;
/// How far before T the journal read looks (`created_after`): NetBox's clock is not Proxmox's,
/// and an entry for a task starting at or after T was written after T in Proxmox time; a day
/// covers any sane clock difference.
const JOURNAL_CREATED_SLACK_S: i64 = 86_400;
/// Move T without new entries once it lags this much (one PATCH a day at most), so tasks of
/// unmanaged guests do not grow the read window forever.
const WATERMARK_REFRESH_S: i64 = 86_400;

/// A VM whose tasks are copied.
#[derive(Debug, Clone)]
pub struct TaskTarget {
    /// Index into the endpoints.
    pub endpoint: usize,
    pub vmid: u32,
    pub netbox_id: u64,
}

/// A guest of this run whose tasks cannot be journaled now (its VM write failed, or the rules
/// failed on it): its tasks must not fall behind its cluster's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unrecorded {
    /// Index into the endpoints.
    pub endpoint: usize,
    pub vmid: u32,
}

/// What the phase did.
#[derive(Debug, Default)]
pub struct TaskHistoryOutcome {
    /// Journal entries written.
    pub written: usize,
    /// Clusters whose watermark was moved.
    pub watermarks: usize,
    /// Journal entries deleted because they repeated an entry (a write committed twice).
    pub duplicates_deleted: usize,
    pub errors: Vec<ErrorEntry>,
}

/// The UPID in a journal entry's comments (its first `UPID:` line).
pub fn upid_in(comments: &str) -> Option<&str> {
    comments
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("UPID:"))
}

/// The start time (epoch seconds) encoded in a UPID
/// (`UPID:node:PID:PSTART:STARTTIME:type:id:user:`).
pub fn upid_starttime(upid: &str) -> Option<i64> {
    let field = upid.split(':').nth(4)?;
    i64::from_str_radix(field, 16).ok()
}

/// `1970-01-01T00:00:00Z` from epoch seconds.
pub fn iso_utc(epoch: i64) -> String {
    crate::timefmt::rfc3339_of_epoch(epoch)
}

/// The journal kind of a finished task.
fn kind_of(task: &Task) -> &'static str {
    match task.outcome() {
        TaskOutcome::Ok => "success",
        TaskOutcome::Warnings => "warning",
        TaskOutcome::Failed | TaskOutcome::Running => "danger",
    }
}

/// The journal entry text: the UPID first (the idempotence key), then a line for people.
pub fn comments(task: &Task) -> String {
    let who = match &task.tokenid {
        Some(token) => format!("{}!{token}", task.user),
        None => task.user.clone(),
    };
    let when = match (task.starttime, task.endtime) {
        (Some(s), Some(e)) => format!("from {} to {}", iso_utc(s), iso_utc(e)),
        (Some(s), None) => format!("started {}", iso_utc(s)),
        _ => String::new(),
    };
    format!(
        "{}\nProxmox task {} on {} by {who} {when}: {}",
        task.upid,
        task.task_type,
        task.node,
        task.status.as_deref().unwrap_or("?")
    )
}

/// The guest a task is about: its `id` (the vmid for guest tasks), else the UPID's id field.
fn task_vmid(task: &Task) -> Option<u32> {
    let id = if task.id.is_empty() {
        task.upid.split(':').nth(6).unwrap_or("")
    } else {
        task.id.as_str()
    };
    id.parse().ok()
}

/// One node's tasks: everything started at or after `since` (all pages), or without a
/// watermark the newest [`FIRST_RUN_LOOKBACK_TASKS`]. Running tasks included (`source=all`):
/// they hold the watermark back.
async fn node_tasks(
    endpoint: &Endpoint,
    node: &str,
    since: Option<i64>,
) -> Result<Vec<Task>, String> {
    let limit = if since.is_some() {
        TASK_PAGE
    } else {
        FIRST_RUN_LOOKBACK_TASKS
    };
    let mut tasks = Vec::new();
    let mut start = 0u64;
    loop {
        let query = TaskQuery {
            vmid: None,
            since,
            start: Some(start),
            limit: Some(limit),
            source: Some(TaskSource::All),
        };
        let page = endpoint
            .client
            .tasks(node, &query)
            .await
            .map_err(|e| e.to_string())?;
        let got = page.tasks.len() as u64;
        tasks.extend(page.tasks);
        start += got;
        let more = page.total.map_or(got == limit, |total| start < total);
        if since.is_none() || got == 0 || !more {
            break;
        }
    }
    Ok(tasks)
}

/// The watermark a complete read of a cluster's nodes supports: the newest task end minus
/// [`CLOCK_SLACK_S`], never past the start of a still-running task of a managed VM. `None`
/// when no task has ended.
pub(crate) fn next_watermark(tasks: &[Task], managed: impl Fn(&Task) -> bool) -> Option<i64> {
    let running = |t: &&Task| t.outcome() == TaskOutcome::Running;
    let newest_end = tasks
        .iter()
        .filter(|t| !running(t))
        .filter_map(|t| t.endtime.or(t.starttime))
        .max()?;
    let oldest_running = tasks
        .iter()
        .filter(running)
        .filter(|t| managed(t))
        .filter_map(|t| t.starttime)
        .min();
    let mark = newest_end - CLOCK_SLACK_S;
    Some(oldest_running.map_or(mark, |start| mark.min(start)))
}

/// The start of the oldest task of an unrecorded guest in `tasks`: the watermark must not pass
/// it, or the run that records the guest would not read that task again. `None`: no such task.
pub(crate) fn oldest_unrecorded(tasks: &[Task], unrecorded: impl Fn(&Task) -> bool) -> Option<i64> {
    tasks
        .iter()
        .filter(|t| unrecorded(t))
        .filter_map(|t| t.starttime.or_else(|| upid_starttime(&t.upid)))
        .min()
}

/// True when the watermark should be written: it moves forward and entries were recorded,
/// or there was none yet, or it lags by [`WATERMARK_REFRESH_S`].
pub(crate) fn should_move(old: Option<i64>, new: i64, wrote_entries: bool) -> bool {
    match old {
        None => true,
        Some(old) => new > old && (wrote_entries || new - old >= WATERMARK_REFRESH_S),
    }
}

/// One Proxmox cluster's share of the phase.
struct ClusterRun {
    endpoint: usize,
    /// The NetBox cluster (None: a preview placeholder, never written).
    cluster_id: Option<u64>,
    since: Option<i64>,
    /// Targets by vmid.
    targets: BTreeMap<u32, TaskTarget>,
    /// Guests not journaled this run, by vmid: they hold the watermark.
    unrecorded: BTreeSet<u32>,
    tasks: Vec<Task>,
    /// Every node read and every entry written: the watermark may move.
    complete: bool,
    written: usize,
    /// NetBox ids of the VMs this run wrote entries for.
    written_vms: BTreeSet<u64>,
}

/// What the journal holds for some VMs.
#[derive(Debug, Default)]
struct Recorded {
    /// `(vm id, upid)` of the entries recorded.
    known: BTreeSet<(u64, String)>,
    /// Ids of entries that repeat a `(vm id, upid)` of a lower id: a write committed twice.
    extra: Vec<u64>,
}

impl Recorded {
    /// Folds journal rows (`id`, `assigned_object_id`, `comments`) in: per `(vm, upid)` the
    /// lowest id is the entry, every other id is extra.
    fn add_rows(&mut self, rows: Vec<serde_json::Map<String, Value>>) {
        let mut first: BTreeMap<(u64, String), u64> = BTreeMap::new();
        let mut ids = Vec::new();
        for row in rows {
            let (Some(id), Some(vm)) = (
                row.get("id").and_then(Value::as_u64),
                row.get("assigned_object_id").and_then(Value::as_u64),
            ) else {
                continue;
            };
            let Some(upid) = row
                .get("comments")
                .and_then(Value::as_str)
                .and_then(upid_in)
            else {
                continue;
            };
            let key = (vm, upid.to_owned());
            match first.get_mut(&key) {
                Some(kept) if *kept > id => {
                    ids.push(*kept);
                    *kept = id;
                }
                Some(_) => ids.push(id),
                None => {
                    first.insert(key, id);
                }
            }
        }
        self.known.extend(first.into_keys());
        self.extra.extend(ids);
    }
}

/// The UPIDs already recorded on `vm_ids` (entries tagged `pve2netbox`, created after
/// `created_after`), and the entries recorded twice.
async fn recorded(
    client: &NetboxClient,
    vm_ids: &[u64],
    created_after: Option<i64>,
) -> Result<Recorded, String> {
    let mut out = Recorded::default();
    for chunk in vm_ids.chunks(JOURNAL_IDS_PER_READ) {
        let mut filters = vec![
            ("assigned_object_type".to_owned(), VM_OBJECT_TYPE.to_owned()),
            ("tag".to_owned(), MANAGED_TAG.to_owned()),
        ];
        if let Some(after) = created_after {
            filters.push(("created_after".to_owned(), iso_utc(after)));
        }
        filters.extend(
            chunk
                .iter()
                .map(|id| ("assigned_object_id".to_owned(), id.to_string())),
        );
        let rows = client
            .list_all(
                JOURNAL_ENDPOINT,
                &filters,
                &["id", "assigned_object_id", "comments"],
            )
            .await
            .map_err(|e| format!("reading the journal entries of {} VMs: {e}", chunk.len()))?;
        out.add_rows(rows);
    }
    Ok(out)
}

/// Deletes journal entries recorded twice ([`Recorded::extra`]); the message of the first
/// failure otherwise. A refused lease ends the phase.
async fn delete_extra(
    lease: &NetboxLease,
    extra: &[u64],
) -> Result<Result<usize, String>, LeaseError> {
    let mut deleted = 0;
    for chunk in extra.chunks(JOURNAL_BULK_ITEMS) {
        let writer = lease.ensure().await?;
        if let Err(e) = writer.delete_bulk(JOURNAL_ENDPOINT, chunk).await {
            return Ok(Err(format!(
                "{} journal entries recorded twice not deleted (the next run tries again): {e}",
                chunk.len()
            )));
        }
        deleted += chunk.len();
    }
    if deleted > 0 {
        tracing::warn!(
            deleted,
            "deleted journal entries recorded twice (a write NetBox committed after its answer was lost)"
        );
    }
    Ok(Ok(deleted))
}

/// Copies new tasks of `targets` into journal entries and moves the clusters' watermarks.
/// Every write goes through `lease` first; a refused lease ends the phase with its error.
/// `targets` is taken: each goes into its cluster's map as it is (a copy of every target beside
/// the list was ~15 MB at 100k VMs, at the end of a no-op rerun, its memory peak).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: &NetboxClient,
    endpoints: &[Endpoint],
    pre: &Preflight,
    targets: Vec<TaskTarget>,
    unrecorded: &[Unrecorded],
    max_concurrency: usize,
    bar: &PhaseBar,
    lease: &NetboxLease,
) -> Result<TaskHistoryOutcome, LeaseError> {
    let mut out = TaskHistoryOutcome::default();
    let mut runs: BTreeMap<usize, ClusterRun> = BTreeMap::new();
    for target in targets {
        let Some(endpoint) = endpoints.get(target.endpoint) else {
            continue;
        };
        let run = runs.entry(target.endpoint).or_insert_with(|| {
            let name = endpoint.cluster();
            ClusterRun {
                endpoint: target.endpoint,
                cluster_id: pre
                    .cluster_ids
                    .get(name)
                    .copied()
                    .filter(|id| !Preflight::is_placeholder(*id)),
                since: pre
                    .tasks_since
                    .get(name)
                    .copied()
                    .filter(|_| pre.tasks_since_field),
                targets: BTreeMap::new(),
                unrecorded: BTreeSet::new(),
                tasks: Vec::new(),
                complete: true,
                written: 0,
                written_vms: BTreeSet::new(),
            }
        });
        run.targets.insert(target.vmid, target);
    }
    for guest in unrecorded {
        // Only clusters read this run can move their watermark.
        if let Some(run) = runs.get_mut(&guest.endpoint) {
            run.unrecorded.insert(guest.vmid);
        }
    }

    // Proxmox: one listing per node of every cluster with targets.
    let limit = Arc::new(Semaphore::new(max_concurrency.max(1)));
    let mut reads = JoinSet::new();
    for run in runs.values() {
        let endpoint = endpoints[run.endpoint].clone();
        for node in endpoint.status.nodes.iter().map(|n| n.name.clone()) {
            let (limit, endpoint, since, index) =
                (limit.clone(), endpoint.clone(), run.since, run.endpoint);
            reads.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = node_tasks(&endpoint, &node, since).await;
                (index, format!("{}/{node}", endpoint.cluster()), result)
            });
        }
    }
    while let Some(joined) = reads.join_next().await {
        let Ok((index, scope, result)) = joined else {
            continue;
        };
        let Some(run) = runs.get_mut(&index) else {
            continue;
        };
        match result {
            Ok(tasks) => run.tasks.extend(tasks),
            Err(message) => {
                // Tasks of an unread node may be older than anything read elsewhere: the
                // watermark stays.
                run.complete = false;
                out.errors.push(ErrorEntry::new(
                    scope,
                    PHASE,
                    format!("tasks not read: {message}"),
                ));
            }
        }
    }

    // Candidates: finished tasks of targets not before the watermark, once per UPID.
    let mut entries: Vec<(u64, i64, String, Value)> = Vec::new();
    let mut cluster_of_vm: BTreeMap<u64, usize> = BTreeMap::new();
    for run in runs.values_mut() {
        bar.inc(run.targets.len() as u64);
        let mut seen = BTreeSet::new();
        let candidates: Vec<(&TaskTarget, &Task)> = run
            .tasks
            .iter()
            .filter(|t| t.outcome() != TaskOutcome::Running)
            .filter(|t| {
                run.since
                    .is_none_or(|s| t.starttime.is_some_and(|st| st >= s))
            })
            .filter(|t| seen.insert(t.upid.clone()))
            .filter_map(|t| Some((run.targets.get(&task_vmid(t)?)?, t)))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let mut vm_ids: Vec<u64> = candidates.iter().map(|(g, _)| g.netbox_id).collect();
        vm_ids.sort_unstable();
        vm_ids.dedup();
        let created_after = run.since.map(|s| s - JOURNAL_CREATED_SLACK_S);
        let Recorded { known, extra } = match recorded(client, &vm_ids, created_after).await {
            Ok(rec) => rec,
            Err(message) => {
                // Without the record, writing could duplicate entries: skip this cluster.
                run.complete = false;
                let cluster = endpoints[run.endpoint].cluster();
                out.errors.push(ErrorEntry::new(cluster, PHASE, message));
                continue;
            }
        };
        match delete_extra(lease, &extra).await? {
            Ok(n) => out.duplicates_deleted += n,
            Err(message) => {
                run.complete = false;
                let cluster = endpoints[run.endpoint].cluster();
                out.errors.push(ErrorEntry::new(cluster, PHASE, message));
            }
        }
        for (target, task) in candidates {
            if known.contains(&(target.netbox_id, task.upid.clone())) {
                continue;
            }
            let body = json!({
                "assigned_object_type": VM_OBJECT_TYPE,
                "assigned_object_id": target.netbox_id,
                "kind": kind_of(task),
                "comments": comments(task),
                "tags": [{"slug": MANAGED_TAG}],
            });
            cluster_of_vm.insert(target.netbox_id, run.endpoint);
            entries.push((
                target.netbox_id,
                task.starttime.unwrap_or(0),
                task.upid.clone(),
                body,
            ));
        }
    }

    // Oldest first per VM, so NetBox's `created` order follows the tasks'.
    entries.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    // The bodies are moved into their groups, not copied: a first sync of 100k VMs holds
    // some of its tasks' journal bodies (~0.6 KB each), and a copy of all was the phase's peak.
    let mut bodies = entries.into_iter().map(|e| (e.0, e.3)).peekable();
    let mut queue: Vec<Vec<(u64, Value)>> = Vec::new();
    while bodies.peek().is_some() {
        queue.push(bodies.by_ref().take(JOURNAL_BULK_ITEMS).collect());
    }
    // Popped from the end: the oldest group first.
    queue.reverse();
    while let Some(group) = queue.pop() {
        let items: Vec<Value> = group.iter().map(|(_, b)| b.clone()).collect();
        let writer = lease.ensure().await?;
        match writer.create_bulk(JOURNAL_ENDPOINT, &items, &["id"]).await {
            Ok(_) => {
                out.written += group.len();
                for (vm, _) in &group {
                    if let Some(run) = cluster_of_vm.get(vm).and_then(|e| runs.get_mut(e)) {
                        run.written += 1;
                        run.written_vms.insert(*vm);
                    }
                }
            }
            Err(e) if group.len() == 1 || e.is_ambiguous() => {
                // A lost answer is not retried: the next run re-reads the window (the
                // watermark stays) and sees what was stored.
                for (vm, _) in &group {
                    if let Some(run) = cluster_of_vm.get(vm).and_then(|e| runs.get_mut(e)) {
                        run.complete = false;
                    }
                    out.errors.push(ErrorEntry::new(
                        format!("NetBox VM #{vm}"),
                        PHASE,
                        format!("journal entry not written: {e}"),
                    ));
                }
            }
            Err(_) => {
                let mut first = group;
                let second = first.split_off(first.len() / 2);
                queue.push(second);
                queue.push(first);
            }
        }
    }

    // Watermarks: only after the entries they vouch for are stored.
    if !pre.tasks_since_field {
        return Ok(out);
    }
    // Look again before the watermark moves past what this run wrote: an entry of an earlier
    // run whose answer was lost may have committed after this run read the journal.
    for run in runs.values_mut() {
        if !run.complete || run.written_vms.is_empty() {
            continue;
        }
        let vm_ids: Vec<u64> = run.written_vms.iter().copied().collect();
        let created_after = run.since.map(|s| s - JOURNAL_CREATED_SLACK_S);
        let cluster = endpoints[run.endpoint].cluster();
        let extra = match recorded(client, &vm_ids, created_after).await {
            Ok(rec) => rec.extra,
            Err(message) => {
                run.complete = false;
                out.errors.push(ErrorEntry::new(cluster, PHASE, message));
                continue;
            }
        };
        if extra.is_empty() {
            continue;
        }
        // Late commits are landing: the next run looks again from the old watermark.
        run.complete = false;
        match delete_extra(lease, &extra).await? {
            Ok(n) => out.duplicates_deleted += n,
            Err(message) => out.errors.push(ErrorEntry::new(cluster, PHASE, message)),
        }
    }
    for run in runs.values() {
        let (Some(cluster_id), true) = (run.cluster_id, run.complete) else {
            continue;
        };
        let managed = |t: &Task| task_vmid(t).is_some_and(|v| run.targets.contains_key(&v));
        let Some(mark) = next_watermark(&run.tasks, managed) else {
            continue;
        };
        let held = |t: &Task| task_vmid(t).is_some_and(|v| run.unrecorded.contains(&v));
        let mark = oldest_unrecorded(&run.tasks, held).map_or(mark, |start| mark.min(start));
        if !should_move(run.since, mark, run.written > 0) {
            continue;
        }
        let body = json!({"custom_fields": {TASKS_SINCE_FIELD: mark}});
        match lease
            .ensure()
            .await?
            .patch(CLUSTER_ENDPOINT, cluster_id, &body, &["id"])
            .await
        {
            Ok(_) => out.watermarks += 1,
            Err(e) => out.errors.push(ErrorEntry::new(
                endpoints[run.endpoint].cluster(),
                PHASE,
                format!("task watermark {TASKS_SINCE_FIELD} not saved (the next run re-reads from the old one): {e}"),
            )),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upids_and_times_are_read_back() {
        let upid = "UPID:pve1:0001A2B3:0C4D5E6F:66B2A1C0:qmstart:100:root@pam:";
        assert_eq!(upid_starttime(upid), Some(0x66B2_A1C0));
        let task = Task {
            upid: upid.into(),
            node: "pve1".into(),
            task_type: "qmstart".into(),
            id: "100".into(),
            user: "root@pam".into(),
            tokenid: None,
            status: Some("WARNINGS: 2".into()),
            starttime: Some(0x66B2_A1C0),
            endtime: Some(0x66B2_A1C2),
        };
        let text = comments(&task);
        assert_eq!(upid_in(&text), Some(upid));
        assert!(text.contains("qmstart on pve1 by root@pam"), "{text}");
        assert_eq!(kind_of(&task), "warning");
        assert_eq!(upid_in("no upid here"), None);
    }

    fn task(vmid: &str, status: Option<&str>, start: i64, end: Option<i64>) -> Task {
        Task {
            upid: format!("UPID:pve1:00000001:00000001:{start:08X}:qmstart:{vmid}:root@pam:"),
            node: "pve1".into(),
            task_type: "qmstart".into(),
            id: vmid.into(),
            user: "root@pam".into(),
            tokenid: None,
            status: status.map(str::to_owned),
            starttime: Some(start),
            endtime: end,
        }
    }

    #[test]
    fn the_watermark_follows_the_newest_end_and_waits_for_running_tasks() {
        let managed = |t: &Task| t.id == "100";
        let done = vec![
            task("100", Some("OK"), 1_000, Some(1_010)),
            task("200", Some("OK"), 1_050, Some(1_100)),
        ];
        // Unmanaged guests' tasks move it too: the read covered them.
        assert_eq!(next_watermark(&done, managed), Some(1_100 - CLOCK_SLACK_S));
        // A managed VM's running task holds it at its start (recorded once it ends).
        let mut running = done.clone();
        running.push(task("100", Some("RUNNING"), 1_020, None));
        assert_eq!(next_watermark(&running, managed), Some(1_020));
        // An unmanaged guest's running task does not.
        let mut other = done.clone();
        other.push(task("300", None, 1_020, None));
        assert_eq!(next_watermark(&other, managed), Some(1_100 - CLOCK_SLACK_S));
        assert_eq!(next_watermark(&[], managed), None);
    }

    #[test]
    fn the_watermark_moves_forward_only_when_worth_a_write() {
        assert!(should_move(None, 5, false), "first run saves it");
        assert!(should_move(Some(5), 6, true), "new entries");
        assert!(
            !should_move(Some(5), 6, false),
            "nothing recorded, small lag"
        );
        assert!(should_move(Some(5), 5 + WATERMARK_REFRESH_S, false));
        assert!(
            !should_move(Some(5), 5, true),
            "never backwards or in place"
        );
        assert!(!should_move(Some(5), 4, true));
    }

    #[test]
    fn an_unrecorded_guest_holds_the_watermark_at_its_oldest_task() {
        let tasks = vec![
            task("100", Some("OK"), 1_000, Some(1_010)),
            task("200", Some("OK"), 1_030, Some(1_040)),
            task("200", Some("OK"), 1_020, Some(1_025)),
            task("100", Some("OK"), 1_050, Some(1_100)),
        ];
        let unrecorded = |t: &Task| t.id == "200";
        assert_eq!(oldest_unrecorded(&tasks, unrecorded), Some(1_020));
        assert_eq!(oldest_unrecorded(&tasks, |t: &Task| t.id == "300"), None);
        // Together with the newest end, the next run reads from 1_020 on: both of 200's
        // tasks are read again, and the watermark still moves past what was read before.
        let mark = next_watermark(&tasks, |t: &Task| t.id == "100").unwrap();
        let held = oldest_unrecorded(&tasks, unrecorded).map_or(mark, |s| mark.min(s));
        assert_eq!(held, 1_020);
        assert!(should_move(Some(900), held, true));
        assert!(
            !should_move(Some(1_020), held, true),
            "never past the unread task"
        );
    }

    #[test]
    fn tasks_belong_to_the_vmid_in_their_id() {
        assert_eq!(task_vmid(&task("100", Some("OK"), 1, Some(2))), Some(100));
        let mut t = task("101", Some("OK"), 1, Some(2));
        t.id.clear();
        assert_eq!(task_vmid(&t), Some(101), "from the UPID");
        assert_eq!(task_vmid(&task("", Some("OK"), 1, Some(2))), None);
    }

    #[test]
    fn an_entry_recorded_twice_keeps_its_lowest_id() {
        let row = |id: u64, vm: u64, upid: &str| {
            let v = json!({"id": id, "assigned_object_id": vm, "comments": format!("{upid}\nProxmox task")});
            v.as_object().cloned().expect("an object")
        };
        let a = "UPID:pve1:0000A:0000B:65000000:qmstart:100:root@pam:";
        let b = "UPID:pve1:0000C:0000D:65000001:qmstop:100:root@pam:";
        let mut rec = Recorded::default();
        rec.add_rows(vec![
            row(9, 1, a),
            row(4, 1, a),
            row(7, 1, a),
            row(5, 1, b),
            // The same task on another VM is not a duplicate.
            row(6, 2, a),
        ]);
        rec.extra.sort_unstable();
        assert_eq!(rec.extra, vec![7, 9]);
        assert_eq!(rec.known.len(), 3);
        assert!(rec.known.contains(&(1, a.to_owned())));
    }

    #[test]
    fn iso_dates_are_utc() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(1_722_982_848), "2024-08-06T22:20:48Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
