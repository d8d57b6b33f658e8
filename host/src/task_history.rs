//! Task history: each reconciled VM's Proxmox tasks become NetBox journal entries on the VM
//! (kind by exit status: `OK` -> success, `WARNINGS: N` -> warning, an error -> danger; running
//! tasks wait for a later run), idempotent by UPID.
//!
//! Cost on a rerun: the entries this tool wrote are read once, paged (`assigned_object_type`
//! = VMs, tagged `pve2netbox`, trimmed to `assigned_object_id,comments`); their UPIDs give each
//! VM's newest recorded task start, and Proxmox is asked per VM only for tasks `since` then.
//! Nothing new means no NetBox write at all. New entries are POSTed in bulk (journal entries
//! are independent and append-only, so a batch is safe; a failed batch is split to isolate the
//! bad entry).
//!
//! Trade-off: the read grows with the number of recorded entries, not VMs (~1000 entries per
//! read). Keeping a per-VM "newest task" custom field would make it ceil(N/1000) but would write
//! into every VM whenever it has a new task; the journal stays the single source of truth.
//!
//! Edges: the Proxmox endpoints and the written/kept VMs' NetBox ids in; journal writes out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::netbox::NetboxClient;
use crate::preflight::{MANAGED_TAG, VM_OBJECT_TYPE};
use crate::progress::PhaseBar;
use crate::proxmox::{Task, TaskOutcome, TaskQuery};
use crate::proxmox_read::Endpoint;
use crate::report::ErrorEntry;

/// Phase name in errors.
pub const PHASE: &str = "task_history";
const JOURNAL_ENDPOINT: &str = "extras/journal-entries";
/// Tasks per Proxmox page: the API's default is 50; larger pages cut round trips on a first
/// run without making one answer large (a task row is ~250 bytes).
const TASK_PAGE: u64 = 500;
/// Journal entries per bulk POST: ~300 bytes each, so ~30 KB per request, far under NetBox's
/// 2.5 MB body limit, and a failed batch costs little to split.
const JOURNAL_BULK_ITEMS: usize = 100;

/// A VM whose tasks are copied.
#[derive(Debug, Clone)]
pub struct TaskTarget {
    /// Index into the endpoints.
    pub endpoint: usize,
    /// `cluster/node/vmid`.
    pub scope: String,
    pub node: String,
    pub vmid: u32,
    pub netbox_id: u64,
}

/// What the phase did.
#[derive(Debug, Default)]
pub struct TaskHistoryOutcome {
    /// Journal entries written.
    pub written: usize,
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

/// What was recorded per NetBox VM id: the UPIDs and the newest start time.
#[derive(Debug, Default, Clone)]
struct Recorded {
    upids: BTreeSet<String>,
    newest: Option<i64>,
}

/// `1970-01-01T00:00:00Z` from epoch seconds (UTC, proleptic Gregorian).
pub fn iso_utc(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
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

/// Reads the entries the tool wrote, indexed by VM id.
async fn recorded(client: &NetboxClient) -> Result<BTreeMap<u64, Recorded>, String> {
    let filters = vec![
        ("assigned_object_type".to_owned(), VM_OBJECT_TYPE.to_owned()),
        ("tag".to_owned(), MANAGED_TAG.to_owned()),
    ];
    let rows = client
        .list_all(
            JOURNAL_ENDPOINT,
            &filters,
            &["assigned_object_id", "comments"],
        )
        .await
        .map_err(|e| format!("reading the journal entries pve2netbox wrote: {e}"))?;
    let mut out: BTreeMap<u64, Recorded> = BTreeMap::new();
    for row in rows {
        let Some(vm) = row.get("assigned_object_id").and_then(Value::as_u64) else {
            continue;
        };
        let Some(upid) = row
            .get("comments")
            .and_then(Value::as_str)
            .and_then(upid_in)
        else {
            continue;
        };
        let entry = out.entry(vm).or_default();
        if let Some(start) = upid_starttime(upid) {
            entry.newest = Some(entry.newest.map_or(start, |n| n.max(start)));
        }
        entry.upids.insert(upid.to_owned());
    }
    Ok(out)
}

/// Every finished task of one guest started at or after `since`, all pages.
async fn guest_tasks(
    endpoint: &Endpoint,
    node: &str,
    vmid: u32,
    since: Option<i64>,
) -> Result<Vec<Task>, String> {
    let mut tasks = Vec::new();
    let mut start = 0u64;
    loop {
        let query = TaskQuery {
            vmid: Some(u64::from(vmid)),
            since,
            start: Some(start),
            limit: Some(TASK_PAGE),
            source: None,
        };
        let page = endpoint
            .client
            .tasks(node, &query)
            .await
            .map_err(|e| e.to_string())?;
        let got = page.tasks.len() as u64;
        tasks.extend(page.tasks);
        start += got;
        let more = page.total.map_or(got == TASK_PAGE, |total| start < total);
        if got == 0 || !more {
            break;
        }
    }
    Ok(tasks)
}

/// Copies new tasks of `targets` into journal entries.
pub async fn run(
    client: &NetboxClient,
    endpoints: &[Endpoint],
    targets: &[TaskTarget],
    max_concurrency: usize,
    bar: &PhaseBar,
) -> TaskHistoryOutcome {
    let mut out = TaskHistoryOutcome::default();
    if targets.is_empty() {
        return out;
    }
    let recorded = match recorded(client).await {
        Ok(r) => Arc::new(r),
        Err(message) => {
            // Without the record, writing could duplicate entries: skip the phase.
            out.errors.push(ErrorEntry::new("netbox", PHASE, message));
            return out;
        }
    };
    let limit = Arc::new(Semaphore::new(max_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for target in targets.iter().cloned() {
        let Some(endpoint) = endpoints.get(target.endpoint).cloned() else {
            continue;
        };
        let limit = limit.clone();
        let recorded = recorded.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let known = recorded.get(&target.netbox_id);
            let since = known.and_then(|r| r.newest);
            let result = guest_tasks(&endpoint, &target.node, target.vmid, since).await;
            let result = result.map(|list| {
                list.into_iter()
                    .filter(|t| t.outcome() != TaskOutcome::Running)
                    .filter(|t| known.is_none_or(|r| !r.upids.contains(&t.upid)))
                    .collect::<Vec<_>>()
            });
            (target, result)
        });
    }
    let mut entries: Vec<(u64, i64, String, Value)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((target, result)) = joined else {
            continue;
        };
        bar.inc(1);
        match result {
            Ok(new) => {
                for task in new {
                    let body = json!({
                        "assigned_object_type": VM_OBJECT_TYPE,
                        "assigned_object_id": target.netbox_id,
                        "kind": kind_of(&task),
                        "comments": comments(&task),
                        "tags": [{"slug": MANAGED_TAG}],
                    });
                    let start = task.starttime.unwrap_or(0);
                    entries.push((target.netbox_id, start, task.upid.clone(), body));
                }
            }
            Err(message) => out.errors.push(ErrorEntry::new(
                &target.scope,
                PHASE,
                format!("tasks not read: {message}"),
            )),
        }
    }
    // Oldest first per VM, so NetBox's `created` order follows the tasks'.
    entries.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    let bodies: Vec<(u64, Value)> = entries.into_iter().map(|e| (e.0, e.3)).collect();
    let mut queue: Vec<Vec<(u64, Value)>> = bodies
        .chunks(JOURNAL_BULK_ITEMS)
        .rev()
        .map(<[_]>::to_vec)
        .collect();
    while let Some(group) = queue.pop() {
        let items: Vec<Value> = group.iter().map(|(_, b)| b.clone()).collect();
        match client.create_bulk(JOURNAL_ENDPOINT, &items, &["id"]).await {
            Ok(_) => out.written += group.len(),
            Err(e) if group.len() == 1 || e.is_ambiguous() => {
                // A lost answer is not retried: the next run sees what was stored.
                for (vm, _) in &group {
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
    out
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

    #[test]
    fn iso_dates_are_utc() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(1_722_982_848), "2024-08-06T22:20:48Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
