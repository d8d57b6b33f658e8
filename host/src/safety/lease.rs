//! One writing run per NetBox across machines: a lease held in NetBox itself, taken lazily just
//! before a run's first write, renewed while the run writes and released at its end. (The local
//! [`crate::safety::run_lock`] still stops a second run on the same host before it reads anything.)
//!
//! **The primitive.** The lease is a tag, slug and name [`LEASE_TAG`], whose description holds
//! its holder as JSON (`host`, `pid`, `run`, `since`, `expires`). NetBox has no compare-and-swap,
//! but a tag's slug and name are unique, so creating the tag is the atomic step: of two runs
//! creating it at once one gets the object, the other the uniqueness error (400). The loser reads
//! the holder and refuses ([`LeaseError::Held`]) unless the lease has expired, or belongs to a
//! process of this host that is gone; then it deletes the tag *by id* and creates it again, so
//! of two breakers only one wins (the other's delete finds nothing, its create fails). A tag is
//! the cheapest unique object a sync token may create anyway (preflight creates tags).
//!
//! **Lazily.** A run with nothing to write never touches the lease: a no-op rerun sends no write.
//! Every write goes through [`NetboxLease::ensure`], which takes (or renews) the lease and only
//! then hands out the client to write with: preflight's creates, `sync`'s dispatch and `apply`'s
//! stale check plus dispatch (sync.rs), task history's journal entries and watermarks.
//!
//! **Staleness.** Taken lazily, the lease comes after this run began reading NetBox: another run
//! may have written and released in between, and our plan would then create duplicates or
//! overwrite newer data. So after taking it we read NetBox's change log since our first read
//! (`/api/core/object-changes/?time_after=`, in NetBox's clock, estimated from the lease tag's
//! `created`): any change of the lease tag other than our own means another run held it while we
//! read, and we stop with [`LeaseError::Changed`] (exit 1, "run again": the next run reads the
//! new state) before writing anything. When we broke a dead run's lease, its last writes may
//! also fall in our window without a lease change, so then any change at all since our first
//! read stops us the same way. Stopping was chosen over re-planning: it needs no second pass of
//! the pipeline, and a concurrent run is exactly the case where one of the two should give way.
//! A change log we cannot read (no permission) is logged as a warning and the run goes on.
//!
//! **Renewal and release.** A background task PATCHes `expires` once more than half the TTL is
//! gone (checked [`RENEW_CHECKS_PER_TTL`] times per TTL, so a failed renewal is retried before
//! the lease expires); a renewal that finds the tag gone marks the lease lost and the next
//! [`NetboxLease::ensure`] fails. [`NetboxLease::release`] deletes the tag; sync.rs calls it on
//! every exit path. A killed run leaves its tag: it blocks other runs until `expires`, or until a
//! run on the same host sees that its pid is gone. Expiry compares the holder's clock (written
//! in `expires`) with ours: machines sharing a NetBox need clocks that agree (NTP) within a small
//! part of the TTL.
//!
//! Edges: NetBox tags and object changes through [`NetboxClient`]; the host name (or the hidden,
//! test-only [`HOST_ENV`]) and `/proc` for the same-host pid check.

use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::clients::netbox::{NetboxClient, NetboxError, Object};
use crate::safety::run_lock::{hostname, normalized_url};
use crate::timefmt::{parse_rfc3339, rfc3339_micros, rfc3339_utc};

/// Slug and name of the lease tag.
pub const LEASE_TAG: &str = "pve2netbox-run-lock";
/// Default lease time-to-live. Why 300 s: a run killed on another machine blocks the others
/// for at most 5 minutes, while renewal at half of it leaves 150 s, more than one request's
/// retry budget (60 s), to get a renewal through a NetBox hiccup.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(300);
/// Test-only: overrides the host name recorded in (and compared with) the lease, so one test
/// machine can play several hosts. Not a config key; not documented for users.
pub const HOST_ENV: &str = "PVE2NETBOX_LEASE_HOST";
const TAG_ENDPOINT: &str = "extras/tags";
const CHANGES_ENDPOINT: &str = "core/object-changes";
const TAG_FIELDS: &[&str] = &[
    "id",
    "name",
    "slug",
    "description",
    "created",
    "last_updated",
];
const CHANGE_FIELDS: &[&str] = &[
    "id",
    "time",
    "action",
    "changed_object_type",
    "changed_object_id",
    "object_repr",
];
/// `changed_object_type` of a tag in the change log.
const TAG_TYPE: &str = "extras.tag";
/// Create attempts: each retry follows a lease that vanished (released or broken) between our
/// create and our read; more in a row means something keeps churning the tag.
const MAX_ATTEMPTS: usize = 4;
/// Rows read when looking for any change after breaking a lease: one is enough to stop, the
/// rest only bounds the request.
const CHANGES_PROBE: usize = 50;
/// Host names are cut to this many characters: a tag description holds at most 200.
const MAX_HOST_CHARS: usize = 64;
/// Renewal checks per TTL: renewal is due at half the TTL, so the remaining checks retry a
/// failed renewal before expiry.
pub const RENEW_CHECKS_PER_TTL: u32 = 6;
/// Shortest pause between renewal checks, whatever the TTL.
const MIN_RENEW_CHECK: Duration = Duration::from_millis(100);

/// Who holds a lease, as its tag's description says.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseHolder {
    /// Host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Process id on that host.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Random id of the run (tells our own ambiguous create from another run's).
    #[serde(default)]
    pub run: Option<String>,
    /// When the lease was taken, RFC 3339 UTC.
    #[serde(default)]
    pub since: Option<String>,
    /// When it expires unless renewed, RFC 3339 UTC (the holder's clock).
    #[serde(default)]
    pub expires: Option<String>,
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.is_none() && self.pid.is_none() {
            return f.write_str("an unknown holder (the tag's description is not a lease)");
        }
        let unknown = "?".to_string();
        write!(
            f,
            "host {}, pid {}",
            self.host.as_ref().unwrap_or(&unknown),
            self.pid.map_or(unknown.clone(), |p| p.to_string())
        )?;
        if let Some(run) = &self.run {
            write!(f, " (run {run})")?;
        }
        write!(
            f,
            ", since {}, expires {}",
            self.since.as_ref().unwrap_or(&unknown),
            self.expires.as_ref().unwrap_or(&unknown)
        )
    }
}

/// The lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another run holds it.
    #[error(
        "run lock: another pve2netbox run is writing to NetBox {netbox}: its lease (tag \
         `{LEASE_TAG}` #{tag_id}) is held by {holder}. This run wrote nothing. Wait for that run \
         to finish; a lease left by a killed run is broken automatically once it expires (by a \
         run on the same host as soon as that pid is gone). Delete the tag in NetBox only if you \
         are sure that run is not running; read-only commands (`sync --dry-run`, `plan`, \
         `doctor`) do not need the lease"
    )]
    Held {
        /// The NetBox URL (normalized, without credentials).
        netbox: String,
        /// The lease tag's id.
        tag_id: u64,
        /// Who holds it.
        holder: Box<LeaseHolder>,
    },
    /// Another run wrote (or may have written) after this run began reading.
    #[error(
        "run lock: NetBox {netbox} changed during this run: {why}. This run wrote nothing (its \
         plan may be stale); run it again"
    )]
    Changed {
        /// The NetBox URL.
        netbox: String,
        /// What the change log showed.
        why: String,
    },
    /// A request about the lease failed.
    #[error("run lock: {action} on NetBox {netbox}: {source}")]
    Netbox {
        /// The NetBox URL.
        netbox: String,
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: Box<NetboxError>,
    },
    /// The lease cannot be used (a preview, a finished run, a lost or refused lease).
    #[error("run lock on NetBox {netbox}: {why}")]
    Unavailable {
        /// The NetBox URL (empty for a preview).
        netbox: String,
        /// Why.
        why: String,
    },
}

/// The lease of one run. Cheap to pass by reference; see the module doc.
#[derive(Debug)]
pub struct NetboxLease {
    /// `None`: a preview, which never writes.
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    client: NetboxClient,
    netbox: String,
    ttl: Duration,
    host: String,
    pid: u32,
    run: String,
    /// When this run began reading NetBox (our clock).
    reads_since: SystemTime,
    state: Mutex<State>,
    renewer: StdMutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
enum State {
    Free,
    Held(Held),
    /// Not usable any more; why.
    Closed(String),
}

#[derive(Debug)]
struct Held {
    id: u64,
    since: String,
    /// When the current `expires` was computed.
    renewed: Instant,
}

/// What to do with a lease someone else holds.
enum Verdict {
    Refuse,
    Break(String),
}

impl NetboxLease {
    /// The lease of a writing run on `netbox`, not taken yet (no request). Call it before the
    /// run's first NetBox read: that moment bounds the change-log check.
    pub fn new(client: &NetboxClient, netbox: &Url, ttl: Duration) -> Self {
        let host: String = std::env::var(HOST_ENV)
            .ok()
            .filter(|h| !h.trim().is_empty())
            .or_else(hostname)
            .unwrap_or_else(|| "unknown-host".into())
            .trim()
            .chars()
            .take(MAX_HOST_CHARS)
            .collect();
        let pid = std::process::id();
        let now = SystemTime::now();
        let seed = format!("{host}/{pid}/{}", micros(now));
        let mut run = hex::encode(Sha256::digest(seed.as_bytes()));
        run.truncate(16);
        Self {
            inner: Some(Arc::new(Inner {
                client: client.clone(),
                netbox: normalized_url(netbox),
                ttl: ttl.max(Duration::from_secs(1)),
                host,
                pid,
                run,
                reads_since: now,
                state: Mutex::new(State::Free),
                renewer: StdMutex::new(None),
            })),
        }
    }

    /// The lease of a preview: [`NetboxLease::ensure`] always fails, so a write is a bug caught.
    pub fn preview() -> Self {
        Self { inner: None }
    }

    /// Takes the lease if this run does not hold it yet (renews it when more than half its TTL
    /// is gone) and returns the client to write with. Every NetBox write of a run goes through
    /// here first.
    pub async fn ensure(&self) -> Result<&NetboxClient, LeaseError> {
        let Some(inner) = &self.inner else {
            return Err(LeaseError::Unavailable {
                netbox: String::new(),
                why: "a preview (`sync --dry-run`, `plan`) never writes".into(),
            });
        };
        let mut state = inner.state.lock().await;
        match &mut *state {
            State::Held(held) => {
                if held.renewed.elapsed() >= inner.ttl / 2
                    && let Err(why) = inner.renew(held).await
                {
                    *state = State::Closed(why.clone());
                    return Err(inner.unavailable(why));
                }
                Ok(&inner.client)
            }
            State::Closed(why) => Err(inner.unavailable(why.clone())),
            State::Free => match inner.acquire().await {
                Ok(held) => {
                    tracing::info!(tag = held.id, run = %inner.run, "NetBox run lease taken");
                    *state = State::Held(held);
                    drop(state);
                    start_renewer(inner);
                    Ok(&inner.client)
                }
                Err(e) => {
                    *state = State::Closed(format!("the lease was not taken: {e}"));
                    Err(e)
                }
            },
        }
    }

    /// Gives the lease back (DELETE of its tag) if this run holds it. Never fails: a lease not
    /// released expires.
    pub async fn release(&self) {
        let Some(inner) = &self.inner else { return };
        let renewer = inner
            .renewer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = renewer {
            task.abort();
        }
        let mut state = inner.state.lock().await;
        if let State::Held(held) = &*state {
            match inner.client.delete(TAG_ENDPOINT, held.id).await {
                Ok(_) => tracing::info!(tag = held.id, "NetBox run lease released"),
                Err(e) => tracing::warn!(
                    tag = held.id,
                    error = %e,
                    "the NetBox run lease was not released; it expires within {} s",
                    inner.ttl.as_secs()
                ),
            }
        }
        *state = State::Closed("the run has finished".into());
    }
}

/// Renews the lease in the background while it is held (dispatch writes for longer than a TTL
/// without coming back here).
fn start_renewer(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let period = (inner.ttl / RENEW_CHECKS_PER_TTL).max(MIN_RENEW_CHECK);
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(inner) = weak.upgrade() else { return };
            let mut state = inner.state.lock().await;
            let State::Held(held) = &mut *state else {
                return;
            };
            if held.renewed.elapsed() < inner.ttl / 2 {
                continue;
            }
            if let Err(why) = inner.renew(held).await {
                tracing::error!("{why}");
                *state = State::Closed(why);
                return;
            }
        }
    });
    *inner
        .renewer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
}

impl Inner {
    fn unavailable(&self, why: String) -> LeaseError {
        LeaseError::Unavailable {
            netbox: self.netbox.clone(),
            why,
        }
    }

    fn nb(&self, action: &'static str) -> impl FnOnce(NetboxError) -> LeaseError + '_ {
        move |e| LeaseError::Netbox {
            netbox: self.netbox.clone(),
            action,
            source: Box::new(e),
        }
    }

    fn description(&self, since: &str, expires: SystemTime) -> String {
        let holder = LeaseHolder {
            host: Some(self.host.clone()),
            pid: Some(self.pid),
            run: Some(self.run.clone()),
            since: Some(since.to_string()),
            expires: Some(rfc3339_utc(expires)),
        };
        serde_json::to_string(&holder).unwrap_or_default()
    }

    /// Creates the lease tag, breaking a stale one, then checks the change log.
    async fn acquire(&self) -> Result<Held, LeaseError> {
        let mut broken: Vec<(u64, LeaseHolder)> = Vec::new();
        let mut last_error = None;
        for _ in 0..MAX_ATTEMPTS {
            let started = Instant::now();
            let since = rfc3339_utc(SystemTime::now());
            let body = json!({
                "name": LEASE_TAG,
                "slug": LEASE_TAG,
                "description": self.description(&since, SystemTime::now() + self.ttl),
            });
            let created = self.client.create(TAG_ENDPOINT, &body, TAG_FIELDS).await;
            let received = SystemTime::now();
            let existing = match created {
                Ok(tag) => return self.taken(&tag, since, started, received, &broken).await,
                Err(e) if e.is_ambiguous() || matches!(e, NetboxError::Validation { .. }) => {
                    match self.read_tag().await? {
                        Some(tag) if holder_of(&tag).run.as_deref() == Some(self.run.as_str()) => {
                            // Our create landed although its answer was lost.
                            let now = SystemTime::now();
                            return self.taken(&tag, since, started, now, &broken).await;
                        }
                        Some(tag) => tag,
                        None => {
                            // Released or broken between our create and our read: again.
                            last_error = Some(e);
                            continue;
                        }
                    }
                }
                Err(e) => return Err(self.nb("creating the lease tag")(e)),
            };
            let id = object_id(&existing);
            let holder = holder_of(&existing);
            match self.verdict(&existing, &holder) {
                Verdict::Refuse => {
                    return Err(LeaseError::Held {
                        netbox: self.netbox.clone(),
                        tag_id: id,
                        holder: Box::new(holder),
                    });
                }
                Verdict::Break(why) => {
                    tracing::warn!(tag = id, holder = %holder, "breaking a stale NetBox run lease: {why}");
                    self.client
                        .delete(TAG_ENDPOINT, id)
                        .await
                        .map_err(self.nb("deleting a stale lease tag"))?;
                    broken.push((id, holder));
                }
            }
        }
        Err(match last_error {
            Some(e) => self.nb("creating the lease tag")(e),
            None => self.unavailable(format!(
                "the lease tag `{LEASE_TAG}` kept changing while this run took it \
                 ({MAX_ATTEMPTS} attempts)"
            )),
        })
    }

    /// The lease is ours: check the change log, and give it back if another run wrote since
    /// our first read.
    async fn taken(
        &self,
        tag: &Object,
        since: String,
        started: Instant,
        received: SystemTime,
        broken: &[(u64, LeaseHolder)],
    ) -> Result<Held, LeaseError> {
        let id = object_id(tag);
        if let Err(e) = self.check_changes(tag, received, broken).await {
            if let Err(d) = self.client.delete(TAG_ENDPOINT, id).await {
                tracing::warn!(tag = id, error = %d, "the NetBox run lease was not released");
            }
            return Err(e);
        }
        Ok(Held {
            id,
            since,
            renewed: started,
        })
    }

    /// Whether anyone held the lease (or, after a break, wrote anything) since this run began
    /// reading; see the module doc.
    async fn check_changes(
        &self,
        tag: &Object,
        received: SystemTime,
        broken: &[(u64, LeaseHolder)],
    ) -> Result<(), LeaseError> {
        let Some(created) = tag
            .get("created")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
        else {
            tracing::warn!("the lease tag has no `created` time; the change log is not checked");
            return Ok(());
        };
        // NetBox's clock minus ours, never overestimated: NetBox stamped `created` before we
        // received the answer. So `from` is at or before our first read in NetBox's clock (by
        // at most the request's time in flight), and a change log entry (stamped at the end of
        // its request, after its object's `created`) made after our first read is never missed.
        let skew = micros(created) - micros(received);
        let from = micros(self.reads_since) + skew;
        let after = iso_micros(from);
        let our_id = object_id(tag);
        let filters = vec![
            ("changed_object_type".to_string(), TAG_TYPE.to_string()),
            ("object_repr".to_string(), LEASE_TAG.to_string()),
            ("time_after".to_string(), after.clone()),
        ];
        let rows = match self
            .client
            .list_all(CHANGES_ENDPOINT, &filters, CHANGE_FIELDS)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "NetBox's change log could not be read; writes made by another run while this one read NetBox are not detected");
                return Ok(());
            }
        };
        let since = |row: &Object| {
            row.get("time")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
                .is_some_and(|t| micros(t) >= from)
        };
        let is_lease = |row: &Object| {
            row.get("changed_object_type").and_then(Value::as_str) == Some(TAG_TYPE)
                && row.get("object_repr").and_then(Value::as_str) == Some(LEASE_TAG)
        };
        let others: Vec<&Object> = rows
            .iter()
            .filter(|r| since(r) && is_lease(r))
            .filter(|r| {
                let (oid, action) = (changed_id(r), action(r));
                let ours = oid == our_id && action == "create";
                let our_break = action == "delete" && broken.iter().any(|(b, _)| *b == oid);
                !ours && !our_break
            })
            .collect();
        if let Some(first) = others.first() {
            return Err(LeaseError::Changed {
                netbox: self.netbox.clone(),
                why: format!(
                    "another pve2netbox run held the lease after this run began reading NetBox \
                     (change log: {} of lease tag #{} at {}; {} lease change(s) since {after})",
                    action(first),
                    changed_id(first),
                    first.get("time").and_then(Value::as_str).unwrap_or("?"),
                    others.len()
                ),
            });
        }
        let Some((_, holder)) = broken.first() else {
            return Ok(());
        };
        let filters = vec![("time_after".to_string(), after.clone())];
        let page = match self
            .client
            .list_page(CHANGES_ENDPOINT, &filters, CHANGE_FIELDS, CHANGES_PROBE, 0)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "NetBox's change log could not be read after breaking a lease");
                return Ok(());
            }
        };
        let writes: Vec<&Object> = page
            .results
            .iter()
            .filter(|r| since(r) && !is_lease(r))
            .collect();
        if let Some(first) = writes.first() {
            return Err(LeaseError::Changed {
                netbox: self.netbox.clone(),
                why: format!(
                    "the stale lease broken here ({holder}) may have been used to write after \
                     this run began reading NetBox (change log since {after}: {} of {} #{}{})",
                    action(first),
                    first
                        .get("changed_object_type")
                        .and_then(Value::as_str)
                        .unwrap_or("?"),
                    changed_id(first),
                    if writes.len() > 1 {
                        format!(" and {} more", writes.len() - 1)
                    } else {
                        String::new()
                    }
                ),
            });
        }
        Ok(())
    }

    /// Whether a lease someone else holds may be broken.
    fn verdict(&self, tag: &Object, holder: &LeaseHolder) -> Verdict {
        let now = SystemTime::now();
        match holder.expires.as_deref().and_then(parse_rfc3339) {
            Some(expires) if expires <= now => {
                return Verdict::Break(format!(
                    "it expired at {}",
                    holder.expires.as_deref().unwrap_or("?")
                ));
            }
            Some(_) => {}
            None => {
                // Not a lease description: judge by the tag's last change and our TTL.
                let stale = tag
                    .get("last_updated")
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339)
                    .is_some_and(|t| t + self.ttl <= now);
                if stale {
                    return Verdict::Break(
                        "its description is unreadable and it is older than the TTL".into(),
                    );
                }
            }
        }
        if holder.host.as_deref() == Some(self.host.as_str())
            && let Some(pid) = holder.pid
            && !pid_alive(pid)
        {
            return Verdict::Break(format!("its process {pid} on this host is gone"));
        }
        Verdict::Refuse
    }

    /// The lease tag, if it exists (the slug filter's answer is checked row by row).
    async fn read_tag(&self) -> Result<Option<Object>, LeaseError> {
        let rows = self
            .client
            .list_all(
                TAG_ENDPOINT,
                &[("slug".to_string(), LEASE_TAG.to_string())],
                TAG_FIELDS,
            )
            .await
            .map_err(self.nb("reading the lease tag"))?;
        Ok(rows
            .into_iter()
            .find(|t| t.get("slug").and_then(Value::as_str) == Some(LEASE_TAG)))
    }

    /// PATCHes a new `expires`; `Err` when the lease is lost (its tag is gone).
    async fn renew(&self, held: &mut Held) -> Result<(), String> {
        let started = Instant::now();
        let body =
            json!({"description": self.description(&held.since, SystemTime::now() + self.ttl)});
        match self
            .client
            .patch(TAG_ENDPOINT, held.id, &body, &["id"])
            .await
        {
            Ok(_) => {
                held.renewed = started;
                tracing::debug!(tag = held.id, "NetBox run lease renewed");
                Ok(())
            }
            Err(NetboxError::NotFound { .. }) => Err(format!(
                "the lease (tag `{LEASE_TAG}` #{}) was deleted or broken by someone else while \
                 this run held it; writes stop here, run again",
                held.id
            )),
            Err(e) => {
                tracing::warn!(tag = held.id, error = %e, "the NetBox run lease was not renewed; retrying");
                Ok(())
            }
        }
    }
}

fn holder_of(tag: &Object) -> LeaseHolder {
    tag.get("description")
        .and_then(Value::as_str)
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default()
}

fn object_id(o: &Object) -> u64 {
    o.get("id").and_then(Value::as_u64).unwrap_or(0)
}

fn changed_id(row: &Object) -> u64 {
    row.get("changed_object_id")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// A change's action: `{value, label}` in NetBox 4.x, a plain string in older renderings.
fn action(row: &Object) -> &str {
    let a = row.get("action");
    a.and_then(|a| a.get("value"))
        .or(a)
        .and_then(Value::as_str)
        .unwrap_or("?")
}

/// Whether a process of this host still runs (a zombie does not). Without `/proc` nothing can
/// be told and the holder is assumed alive (its lease then ends at expiry).
fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        // A lease with our pid but another run id was left by an earlier process.
        return false;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn micros(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i128,
        Err(e) => -(e.duration().as_micros() as i128),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of microseconds since the epoch (NetBox's own precision).
fn iso_micros(us: i128) -> String {
    rfc3339_micros(UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        let at = UNIX_EPOCH + Duration::new(1_764_111_504, 609_862_000);
        let text = iso_micros(micros(at));
        assert_eq!(text, "2025-11-25T22:58:24.609862Z");
        assert_eq!(parse_rfc3339(&text), Some(at));
        assert_eq!(
            parse_rfc3339("2025-11-25T23:58:24.609862+01:00"),
            Some(at),
            "offsets"
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(UNIX_EPOCH + Duration::from_secs(951_782_400))
        );
        assert_eq!(
            parse_rfc3339(&rfc3339_utc(
                UNIX_EPOCH + Duration::from_secs(4_107_542_399)
            )),
            Some(UNIX_EPOCH + Duration::from_secs(4_107_542_399))
        );
        for bad in ["", "2025-13-01T00:00:00Z", "2025-11-25", "x-y-zT1:2:3Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_holder_reads_back_and_names_itself() {
        let holder = LeaseHolder {
            host: Some("pve-sync-b".into()),
            pid: Some(4242),
            run: Some("0123456789abcdef".into()),
            since: Some("2026-01-01T00:00:00Z".into()),
            expires: Some("2026-01-01T00:05:00Z".into()),
        };
        let text = serde_json::to_string(&holder).unwrap();
        assert!(
            text.len() + MAX_HOST_CHARS < 200,
            "fits a tag description: {text}"
        );
        let mut tag = Object::new();
        tag.insert("description".into(), Value::String(text));
        assert_eq!(holder_of(&tag), holder);
        assert_eq!(
            holder.to_string(),
            "host pve-sync-b, pid 4242 (run 0123456789abcdef), since 2026-01-01T00:00:00Z, \
             expires 2026-01-01T00:05:00Z"
        );
        tag.insert(
            "description".into(),
            Value::String("an operator's tag".into()),
        );
        assert_eq!(holder_of(&tag), LeaseHolder::default());
        assert!(
            LeaseHolder::default()
                .to_string()
                .contains("unknown holder")
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pids_alive_and_gone() {
        // Our parent runs; our own pid is never "another live holder".
        assert!(pid_alive(std::os::unix::process::parent_id()));
        assert!(!pid_alive(std::process::id()));
        // Above the kernel's pid_max (at most 2^22).
        assert!(!pid_alive(u32::MAX - 1));
    }

    #[test]
    fn actions_of_both_renderings() {
        let row = |v: Value| -> Object { serde_json::from_value(v).unwrap() };
        assert_eq!(
            action(&row(
                json!({"action": {"value": "delete", "label": "Deleted"}})
            )),
            "delete"
        );
        assert_eq!(action(&row(json!({"action": "create"}))), "create");
    }
}
