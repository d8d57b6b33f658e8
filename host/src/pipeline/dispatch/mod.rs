//! Dispatch: carries out a plan's operations against NetBox, gently and in order.
//!
//! First the objects the VMs need (`create_object`, skipped when they already exist; with `bulk`,
//! one request per kind first), all of them before any VM write, then the
//! VM writes in windows of `write_window` operations: one write at a time, or, with
//! `bulk = true`, one bulk request per run of same-method operations inside a window (order is
//! kept, so a rename that frees a name still precedes the VM taking it).
//!
//! **Concurrency.** Up to `write_concurrency` windows are in flight at once. Windows start in plan
//! order; a window waits while an earlier window still in flight touches one of its VMs (by
//! identity or NetBox id) or one of its names (a name given up, taken or held, compared the way
//! NetBox's uniqueness does, case-insensitively): so a parking rename lands before the write
//! that takes its name, and a VM's own writes stay in order. Each window records into its own
//! outcome and the outcomes are joined in window order, so failures and ids come out the same
//! whatever order the windows finish in. At 1 (the default) this is the sequential dispatch.
//!
//! **Lock order.** NetBox 4.7 keeps a count of VMs on each VM type and updates that row in the
//! write's transaction (`virtual_machine_count`; no other counter moves with a VM write: clusters,
//! sites, platforms and tags keep none, and a VM's own interface and disk counts are on its own
//! row, which one window alone touches). Concurrent requests that take two type rows in
//! opposite orders deadlock; PostgreSQL aborts one (a 500 the NetBox client retries, since
//! nothing was written). So every request takes them in one global order: a bulk create's items
//! go sorted by VM type id ([`lock_order`]), and a request whose order NetBox chooses (it walks a
//! bulk PATCH or DELETE by VM name) and that may take two type rows — a bulk delete of several
//! VMs (their types are not in the plan), or VM type changes — runs alone ([`runs_alone`]). A
//! request taking one type row at most cannot close a cycle, so the rest overlap freely.
//! The lease is taken before dispatch and released after it (sync.rs); its renewals go through
//! its own lock, never through a window. NetBox bulk writes are
//! all-or-nothing: a failed bulk request is split (by the item indexes NetBox names, else in
//! halves) until the bad items are isolated; the rest is applied and each bad item reported.
//! Bulk bodies stay under [`MAX_BULK_BODY_BYTES`].
//!
//! A POST whose answer was lost (ambiguous) is never sent again blindly: the VM is looked up
//! by identity (`cluster_id` + `cf_proxmox_vm_id`), a needed object by slug, first; when that
//! lookup fails, the operation fails (the next run sees what was stored).
//!
//! Bodies are built from the field changes: references (keys) resolved to ids, tags as ids,
//! `custom_fields.X` merged into one `custom_fields` object, the cluster set on create.
//!
//! Edges: plan operations and preflight's known objects in; per-operation failures and the ids
//! of created VMs out. [`check_stale`] is `apply`'s guard.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use guest_default::model::ObjectSpec;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::clients::netbox::{NetboxClient, NetboxError};
use crate::pipeline::plan::{OpKind, Operation};
use crate::pipeline::preflight::{Preflight, VM_OBJECT_TYPE, object_body, object_endpoint, ref_id};
use crate::pipeline::reconcile::VM_ID_FIELD;
use crate::pipeline::report::ErrorEntry;
use crate::pipeline::snapshot::VM_ENDPOINT;
use crate::progress::PhaseBar;

pub mod children;

/// Phase name in errors.
pub const PHASE: &str = "dispatch";
/// Largest bulk body sent: NetBox refuses bodies over 2.5 MB (`DATA_UPLOAD_MAX_MEMORY_SIZE`)
/// with a 500; 2 MB leaves room for proxies that count headers too.
pub const MAX_BULK_BODY_BYTES: usize = 2_000_000;
/// Ids per filtered re-read (`id=` repeated): keeps the URL under common 8 KB proxy limits.
const IDS_PER_READ: usize = 400;
const JOURNAL_ENDPOINT: &str = "extras/journal-entries";
/// Needed objects per bulk create: a few hundred small bodies (~100 bytes each) is one quick
/// transaction; a site with thousands of distinct Proxmox tags gets several.
const OBJECTS_PER_BULK: usize = 250;

/// How dispatch writes.
#[derive(Debug, Clone, Copy)]
pub struct DispatchSettings {
    pub write_window: usize,
    /// Windows in flight at once (1: one after the other).
    pub write_concurrency: usize,
    pub bulk: bool,
}

/// One operation that failed (or was refused).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Index into the dispatched operations.
    pub index: usize,
    /// The report class it was counted in: `create`, `update`, `adopt`, `orphan`, `delete`,
    /// `object`.
    pub was: &'static str,
    pub entry: ErrorEntry,
}

/// What dispatch did.
#[derive(Debug, Default)]
pub struct DispatchOutcome {
    pub failures: Vec<Failure>,
    /// `(cluster name, vmid)` -> NetBox id of each VM written (created ones included).
    pub vm_ids: BTreeMap<(String, u32), u64>,
    /// Operations carried out.
    pub done: usize,
}

impl DispatchOutcome {
    /// Appends a later window's outcome.
    fn join(&mut self, later: DispatchOutcome) {
        self.failures.extend(later.failures);
        self.vm_ids.extend(later.vm_ids);
        self.done += later.done;
    }

    fn fail(&mut self, index: usize, op: &Operation, message: impl Into<String>) {
        self.failures.push(Failure {
            index,
            was: was(op.op),
            entry: ErrorEntry::new(&op.scope, PHASE, message),
        });
    }

    /// True when operation `index` failed.
    pub fn failed(&self, index: usize) -> bool {
        self.failures.iter().any(|f| f.index == index)
    }
}

fn was(op: OpKind) -> &'static str {
    match op {
        OpKind::CreateObject => "object",
        OpKind::Create => "create",
        OpKind::Update => "update",
        OpKind::Adopt => "adopt",
        OpKind::Orphan => "orphan",
        OpKind::Delete => "delete",
    }
}

/// Resolves references (keys) to ids: preflight's known objects plus those dispatch creates.
#[derive(Debug, Clone)]
pub struct Resolver {
    ids: BTreeMap<(String, String), u64>,
    clusters: BTreeMap<String, u64>,
}

impl Resolver {
    pub fn new(preflight: &Preflight) -> Self {
        let ids = preflight
            .known
            .iter()
            .map(|k| ((k.kind.clone(), k.key.clone()), k.id))
            .collect();
        Resolver {
            ids,
            clusters: preflight.cluster_ids.clone(),
        }
    }

    pub(crate) fn id(&self, kind: &str, key: &str) -> Option<u64> {
        self.ids.get(&(kind.to_owned(), key.to_owned())).copied()
    }

    /// The NetBox cluster of an operation: by the Proxmox cluster's name (a plan made before
    /// preflight created the cluster holds a placeholder id), else the id in the plan.
    fn cluster_id(&self, op: &Operation) -> Option<u64> {
        op.cluster
            .as_ref()
            .and_then(|c| self.clusters.get(c).copied())
            .or(op.cluster_id)
            .filter(|id| !Preflight::is_placeholder(*id))
    }
}

/// The reference kind of a VM field, for fields that hold keys.
fn reference_kind(field: &str) -> Option<&'static str> {
    Some(match field {
        "site" => "site",
        "device" => "device",
        "role" => "role",
        "virtual_machine_type" => "vm-type",
        "platform" => "platform",
        "tenant" => "tenant",
        "cluster" => "cluster",
        _ => return None,
    })
}

/// The PATCH/POST body of a VM operation.
pub fn vm_body(op: &Operation, resolver: &Resolver) -> Result<Map<String, Value>, String> {
    let mut body = Map::new();
    let mut custom_fields = Map::new();
    for change in &op.changes {
        // Written by the child dispatch, after the children they depend on.
        if children::defers_vm_field(op, change.field, change.new.is_null()) {
            continue;
        }
        let new = change.new.to_value();
        if let Some(name) = change.field.strip_prefix("custom_fields.") {
            custom_fields.insert(name.to_owned(), new);
            continue;
        }
        let value = if let Some(kind) = reference_kind(change.field) {
            match &new {
                Value::Null => Value::Null,
                Value::String(key) => json!(resolver.id(kind, key).ok_or_else(|| format!(
                    "{} '{key}' does not exist in NetBox (field {})",
                    kind, change.field
                ))?),
                other => other.clone(),
            }
        } else if change.field == "tags" {
            let slugs = new.as_array().cloned().unwrap_or_default();
            let mut ids = Vec::with_capacity(slugs.len());
            for slug in slugs {
                match slug.as_str() {
                    Some(slug) => {
                        ids.push(json!(resolver.id("tag", slug).ok_or_else(|| format!(
                            "tag '{slug}' does not exist in NetBox"
                        ))?))
                    }
                    None => ids.push(slug),
                }
            }
            Value::Array(ids)
        } else {
            new
        };
        body.insert(change.field.to_owned(), value);
    }
    if !custom_fields.is_empty() {
        body.insert("custom_fields".into(), Value::Object(custom_fields));
    }
    if op.op == OpKind::Create {
        let cluster = resolver
            .cluster_id(op)
            .ok_or_else(|| "its NetBox cluster does not exist".to_owned())?;
        body.insert("cluster".into(), json!(cluster));
    }
    Ok(body)
}

/// Carries out `ops` in order. Every failure is recorded against its operation; nothing aborts
/// the run.
pub async fn dispatch(
    client: &NetboxClient,
    ops: &[Operation],
    preflight: &Preflight,
    settings: DispatchSettings,
    bar: &PhaseBar,
) -> DispatchOutcome {
    let mut resolver = Resolver::new(preflight);
    let mut out = DispatchOutcome::default();
    let cf_ready = preflight.custom_fields.contains(VM_ID_FIELD);

    let object_ops: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].op == OpKind::CreateObject)
        .collect();
    if settings.bulk {
        create_objects_in_bulk(client, ops, &object_ops, &mut resolver).await;
    }
    for &index in &object_ops {
        let op = &ops[index];
        bar.inc(1);
        let Some(spec) = &op.object else {
            out.fail(index, op, "create_object without an object");
            continue;
        };
        match create_object(client, spec, &resolver).await {
            Ok(Some(id)) => {
                resolver
                    .ids
                    .insert((spec.kind.clone(), spec.key.clone()), id);
                out.done += 1;
            }
            Ok(None) => out.done += 1,
            Err(message) => out.fail(index, op, message),
        }
    }

    // An IP address moving between two VMs is freed before either VM's window.
    let released = children::moved_address_deletes(ops);
    children::release_moved_addresses(client, ops, &released, settings.bulk, &mut out).await;
    let released = &released;

    let vm_ops: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].op != OpKind::CreateObject)
        .collect();
    let windows: Vec<&[usize]> = vm_ops.chunks(settings.write_window.max(1)).collect();
    let touched: Vec<BTreeSet<Touch>> = windows.iter().map(|w| touches(ops, w)).collect();
    let alone: Vec<bool> = windows
        .iter()
        .map(|w| runs_alone(ops, w, settings.bulk))
        .collect();
    let limit = settings.write_concurrency.max(1);
    let mut results: Vec<Option<DispatchOutcome>> = windows.iter().map(|_| None).collect();
    let mut in_flight = FuturesUnordered::new();
    let mut running: BTreeSet<usize> = BTreeSet::new();
    let mut next = 0;
    loop {
        // Start windows in plan order while there is room and the next one shares nothing
        // with a window still in flight (the earlier ones not in flight are done); a window
        // that must run alone waits for all of them, and holds back the next.
        while next < windows.len()
            && running.len() < limit
            && if alone[next] {
                running.is_empty()
            } else {
                running
                    .iter()
                    .all(|&r| !alone[r] && touched[r].is_disjoint(&touched[next]))
            }
        {
            let (index, window) = (next, windows[next]);
            let shared = WindowShared {
                bulk: settings.bulk,
                resolver: &resolver,
                cf_ready,
                released,
                bar,
            };
            in_flight.push(async move {
                let outcome = write_window(client, ops, window, shared).await;
                (index, outcome)
            });
            running.insert(index);
            next += 1;
        }
        let Some((index, outcome)) = in_flight.next().await else {
            break;
        };
        running.remove(&index);
        results[index] = Some(outcome);
    }
    for outcome in results.into_iter().flatten() {
        out.join(outcome);
    }
    out
}

/// What a write window touches that another window's writes must not overlap with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Touch {
    /// A VM by identity (cluster name, vmid).
    Vm(String, u32),
    /// A VM by NetBox id.
    Id(u64),
    /// A VM name, lower-cased: NetBox's uniqueness of names (per cluster and tenant) ignores
    /// case. Compared across clusters, which only serializes more than needed.
    Name(String),
}

/// Everything the operations of `window` touch: their VMs, and every name they give up, take
/// or hold.
fn touches(ops: &[Operation], window: &[usize]) -> BTreeSet<Touch> {
    let mut set = BTreeSet::new();
    for op in window.iter().map(|&i| &ops[i]) {
        if let (Some(cluster), Some(vmid)) = (&op.cluster, op.vmid) {
            set.insert(Touch::Vm(cluster.clone(), vmid));
        }
        if let Some(id) = op.netbox_id {
            set.insert(Touch::Id(id));
        }
        if let Some(name) = &op.name {
            set.insert(Touch::Name(name.to_lowercase()));
        }
        for change in op.changes.iter().filter(|c| c.field == "name") {
            for name in [change.old, change.new]
                .iter()
                .filter_map(|side| side.as_string_value())
            {
                set.insert(Touch::Name(name.to_lowercase()));
            }
        }
    }
    set
}

/// What every write window of a dispatch shares.
#[derive(Clone, Copy)]
struct WindowShared<'a> {
    bulk: bool,
    resolver: &'a Resolver,
    cf_ready: bool,
    /// IP address deletes done before the windows (`children::release_moved_addresses`).
    released: &'a BTreeSet<(usize, usize)>,
    bar: &'a PhaseBar,
}

/// One window's operations, in order, into an outcome of its own.
async fn write_window(
    client: &NetboxClient,
    ops: &[Operation],
    window: &[usize],
    shared: WindowShared<'_>,
) -> DispatchOutcome {
    let WindowShared {
        bulk,
        resolver,
        cf_ready,
        released,
        bar,
    } = shared;
    let mut out = DispatchOutcome::default();
    if bulk {
        for (method, run) in bulk_runs(ops, window) {
            bulk_run(client, ops, run, method, resolver, cf_ready, &mut out).await;
            bar.inc(run.len() as u64);
        }
    } else {
        for &index in window {
            single(client, ops, index, resolver, cf_ready, &mut out).await;
            bar.inc(1);
        }
    }
    // The VMs' children, once the VMs are written (a created VM's id is known now).
    children::write_children(client, ops, window, resolver, bulk, released, &mut out).await;
    out
}

/// The bulk requests of a window: consecutive operations of one method form one.
fn bulk_runs<'w>(ops: &[Operation], window: &'w [usize]) -> Vec<(Method, &'w [usize])> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < window.len() {
        let method = method_of(ops[window[start]].op);
        let mut end = start + 1;
        while end < window.len() && method_of(ops[window[end]].op) == method {
            end += 1;
        }
        runs.push((method, &window[start..end]));
        start = end;
    }
    runs
}

/// How many VM type rows (NetBox's `virtual_machine_count`) an operation's write may update:
/// a delete its VM's type (not in the plan, so assumed set), a type change the old and the new
/// type, a create its new type (creates are ordered by [`lock_order`], so not counted here).
fn type_rows(op: &Operation) -> usize {
    match op.op {
        OpKind::Delete => 1,
        OpKind::Create | OpKind::CreateObject => 0,
        OpKind::Update | OpKind::Adopt | OpKind::Orphan => op
            .changes
            .iter()
            .filter(|c| c.field == "virtual_machine_type")
            .map(|c| usize::from(!c.old.is_null()) + usize::from(!c.new.is_null()))
            .sum(),
    }
}

/// Whether a window must have NetBox to itself: one of its requests may lock two VM type rows
/// in an order NetBox chooses (a bulk PATCH or DELETE walks its VMs by name; one PATCH moves
/// the old type's count before the new one's), so overlapping it with another such request
/// could deadlock.
fn runs_alone(ops: &[Operation], window: &[usize], bulk: bool) -> bool {
    if bulk {
        bulk_runs(ops, window)
            .into_iter()
            .filter(|(method, _)| *method != Method::POST)
            .any(|(_, run)| run.iter().map(|&i| type_rows(&ops[i])).sum::<usize>() > 1)
    } else {
        window.iter().any(|&i| type_rows(&ops[i]) > 1)
    }
}

/// Sorts a bulk create's items by VM type id (untyped first; plan order among equals): NetBox
/// creates them in body order, each one updating its type's VM count, so every create request
/// locks the type rows in the same order and concurrent ones queue instead of deadlocking.
fn lock_order(items: &mut [(usize, Value)]) {
    items.sort_by_key(|(_, body)| body.get("virtual_machine_type").and_then(Value::as_u64));
}

fn method_of(op: OpKind) -> Method {
    match op {
        OpKind::Create | OpKind::CreateObject => Method::POST,
        OpKind::Update | OpKind::Adopt | OpKind::Orphan => Method::PATCH,
        OpKind::Delete => Method::DELETE,
    }
}

/// Creates the missing `needs` objects of each kind in one bulk POST (a first sync needs a dozen
/// platforms and tags; one request each cost ~70 ms on a real NetBox). The created ids go into the
/// resolver, so the one-by-one pass after it finds them known. A failed bulk request changed
/// nothing, or (answer lost) created objects that the one-by-one pass then finds by slug: either
/// way that pass, with its lookup-and-retry, settles every object and names a bad one.
async fn create_objects_in_bulk(
    client: &NetboxClient,
    ops: &[Operation],
    object_ops: &[usize],
    resolver: &mut Resolver,
) {
    let mut by_endpoint: BTreeMap<&str, Vec<&ObjectSpec>> = BTreeMap::new();
    for spec in object_ops.iter().filter_map(|&i| ops[i].object.as_deref()) {
        let Some(endpoint) = object_endpoint(&spec.kind) else {
            continue;
        };
        let group = by_endpoint.entry(endpoint).or_default();
        let missing = resolver.id(&spec.kind, &spec.key).is_none();
        if missing && !group.iter().any(|s| s.key == spec.key) {
            group.push(spec);
        }
    }
    for (endpoint, specs) in by_endpoint {
        for specs in specs.chunks(OBJECTS_PER_BULK).filter(|c| c.len() > 1) {
            create_object_chunk(client, endpoint, specs, resolver).await;
        }
    }
}

async fn create_object_chunk(
    client: &NetboxClient,
    endpoint: &str,
    specs: &[&ObjectSpec],
    resolver: &mut Resolver,
) {
    let bodies: Vec<Value> = specs.iter().map(|spec| object_body(spec)).collect();
    match client.create_bulk(endpoint, &bodies, &["id"]).await {
        Ok(created) => {
            for (spec, obj) in specs.iter().zip(created) {
                if let Some(id) = obj.get("id").and_then(Value::as_u64) {
                    resolver
                        .ids
                        .insert((spec.kind.clone(), spec.key.clone()), id);
                }
            }
        }
        Err(e) => tracing::debug!(
            endpoint, objects = specs.len(), error = %e,
            "bulk create of needed objects failed; creating them one by one"
        ),
    }
}

/// Creates a `needs` object; `Ok(None)` when it exists already (a plan applied twice, or an
/// object preflight made meanwhile).
async fn create_object(
    client: &NetboxClient,
    spec: &ObjectSpec,
    resolver: &Resolver,
) -> Result<Option<u64>, String> {
    if resolver.id(&spec.kind, &spec.key).is_some() {
        return Ok(None);
    }
    let Some(endpoint) = object_endpoint(&spec.kind) else {
        // Kinds only preflight makes (custom fields, cluster type, ...) are in a plan made
        // against a NetBox without them; this run's preflight, which `apply` runs before
        // dispatch, has ensured them.
        return Ok(None);
    };
    let body = object_body(spec);
    match client.create(endpoint, &body, &["id"]).await {
        Ok(obj) => Ok(obj.get("id").and_then(Value::as_u64)),
        Err(e) => {
            // Made meanwhile by someone else (400 "already exists"), or by this POST whose
            // answer was lost: use it.
            let found = client
                .list_all(endpoint, &[("slug".into(), spec.key.clone())], &["slug"])
                .await
                .map(|rows| {
                    rows.into_iter()
                        .find(|r| r.get("slug").and_then(Value::as_str) == Some(&spec.key))
                        .and_then(|r| r.get("id").and_then(Value::as_u64))
                });
            match found {
                Ok(Some(id)) => Ok(Some(id)),
                // Known absent after a lost answer or a server-side failure (not a refusal of
                // the body): one more POST cannot duplicate it, and spares every VM that
                // needs the object a failed run.
                Ok(None) if e.is_ambiguous() || matches!(e.status(), Some(429 | 500..=599)) => {
                    client
                        .create(endpoint, &body, &["id"])
                        .await
                        .map(|obj| obj.get("id").and_then(Value::as_u64))
                        .map_err(|e2| format!("{e2} (after: {e})"))
                }
                _ => Err(e.to_string()),
            }
        }
    }
}

/// The identity of a create operation.
fn identity(op: &Operation, resolver: &Resolver) -> Option<(u64, u32)> {
    Some((resolver.cluster_id(op)?, op.vmid?))
}

/// Finds NetBox VMs by identity with one filtered paged read per [`IDS_PER_READ`] identities.
/// Returns `(cluster id, vmid)` -> `(NetBox id, last_updated)`. Empty when the identity custom
/// field does not exist (NetBox would ignore the filter and return everything).
pub async fn lookup_identities(
    client: &NetboxClient,
    identities: &[(u64, u32)],
    cf_ready: bool,
) -> Result<BTreeMap<(u64, u32), (u64, Option<String>)>, NetboxError> {
    let mut found = BTreeMap::new();
    if !cf_ready || identities.is_empty() {
        return Ok(found);
    }
    let wanted: BTreeSet<(u64, u32)> = identities.iter().copied().collect();
    let list: Vec<(u64, u32)> = wanted.iter().copied().collect();
    for chunk in list.chunks(IDS_PER_READ) {
        let clusters: BTreeSet<u64> = chunk.iter().map(|(c, _)| *c).collect();
        let mut filters: Vec<(String, String)> = clusters
            .iter()
            .map(|c| ("cluster_id".to_owned(), c.to_string()))
            .collect();
        filters.extend(
            chunk
                .iter()
                .map(|(_, v)| (format!("cf_{VM_ID_FIELD}"), v.to_string())),
        );
        let rows = client
            .list_all(
                VM_ENDPOINT,
                &filters,
                &["cluster", "custom_fields", "last_updated"],
            )
            .await?;
        for row in rows {
            let Some(cluster) = ref_id(row.get("cluster")) else {
                continue;
            };
            let vmid = row
                .get("custom_fields")
                .and_then(|c| c.get(VM_ID_FIELD))
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok());
            let Some(vmid) = vmid else { continue };
            if wanted.contains(&(cluster, vmid)) {
                let id = row.get("id").and_then(Value::as_u64).unwrap_or(0);
                let updated = row
                    .get("last_updated")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                found.insert((cluster, vmid), (id, updated));
            }
        }
    }
    Ok(found)
}

/// One operation, one request (plus its journal entry).
async fn single(
    client: &NetboxClient,
    ops: &[Operation],
    index: usize,
    resolver: &Resolver,
    cf_ready: bool,
    out: &mut DispatchOutcome,
) {
    let op = &ops[index];
    let result: Result<Option<u64>, String> = match op.op {
        OpKind::CreateObject => return,
        OpKind::Delete => match op.netbox_id {
            Some(id) => client
                .delete(VM_ENDPOINT, id)
                .await
                .map(|_| None)
                .map_err(|e| e.to_string()),
            None => Err("delete without a NetBox id".into()),
        },
        OpKind::Create => match vm_body(op, resolver) {
            Err(m) => Err(m),
            Ok(body) => create_vm(client, op, Value::Object(body), resolver, cf_ready).await,
        },
        OpKind::Update | OpKind::Adopt | OpKind::Orphan => {
            match (op.netbox_id, vm_body(op, resolver)) {
                (None, _) => Err("update without a NetBox id".into()),
                (_, Err(m)) => Err(m),
                // Nothing to write (e.g. only a journal entry): no request, as for a NOOP.
                (Some(id), Ok(body)) if body.is_empty() => Ok(Some(id)),
                (Some(id), Ok(body)) => client
                    .patch(VM_ENDPOINT, id, &Value::Object(body), &["id"])
                    .await
                    .map(|_| Some(id))
                    .map_err(|e| e.to_string()),
            }
        }
    };
    finish(client, ops, index, result, out).await;
}

/// POSTs a VM; after an ambiguous failure, looks it up by identity before one more try.
async fn create_vm(
    client: &NetboxClient,
    op: &Operation,
    body: Value,
    resolver: &Resolver,
    cf_ready: bool,
) -> Result<Option<u64>, String> {
    match client.create(VM_ENDPOINT, &body, &["id"]).await {
        Ok(obj) => Ok(obj.get("id").and_then(Value::as_u64)),
        Err(e) if e.is_ambiguous() => {
            let key = identity(op, resolver);
            let found = match key {
                Some(key) => lookup_identities(client, &[key], cf_ready)
                    .await
                    .map_err(|le| format!("{e}; and the identity lookup failed: {le}"))?
                    .get(&key)
                    .map(|(id, _)| *id),
                None => None,
            };
            match found {
                Some(id) => {
                    tracing::info!(scope = %op.scope, id, "lost POST answer: the VM was created");
                    Ok(Some(id))
                }
                None => client
                    .create(VM_ENDPOINT, &body, &["id"])
                    .await
                    .map(|obj| obj.get("id").and_then(Value::as_u64))
                    .map_err(|e2| format!("{e2} (after a lost answer: {e})")),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Records the result of operation `index` and writes its journal entry.
async fn finish(
    client: &NetboxClient,
    ops: &[Operation],
    index: usize,
    result: Result<Option<u64>, String>,
    out: &mut DispatchOutcome,
) {
    let op = &ops[index];
    match result {
        Err(message) => out.fail(index, op, message),
        Ok(id) => {
            out.done += 1;
            if let (Some(id), Some(cluster), Some(vmid)) = (id, &op.cluster, op.vmid)
                && op.op != OpKind::Delete
            {
                out.vm_ids.insert((cluster.clone(), vmid), id);
            }
            if let (Some(journal), Some(id)) = (&op.journal, id.or(op.netbox_id))
                && op.op != OpKind::Delete
            {
                let body = json!({"assigned_object_type": VM_OBJECT_TYPE,
                                  "assigned_object_id": id, "kind": journal.kind,
                                  "comments": journal.comments});
                if let Err(e) = client.create(JOURNAL_ENDPOINT, &body, &["id"]).await {
                    // The VM write happened; a missing note is reported, not counted as a VM error.
                    out.failures.push(Failure {
                        index,
                        was: "journal",
                        entry: ErrorEntry::new(
                            &op.scope,
                            PHASE,
                            format!("journal entry not written: {e}"),
                        ),
                    });
                }
            }
        }
    }
}

/// One run of same-method operations as bulk requests, split until the bad items are isolated.
async fn bulk_run(
    client: &NetboxClient,
    ops: &[Operation],
    run: &[usize],
    method: Method,
    resolver: &Resolver,
    cf_ready: bool,
    out: &mut DispatchOutcome,
) {
    let mut items: Vec<(usize, Value)> = Vec::new();
    for &index in run {
        let op = &ops[index];
        let body = if method == Method::DELETE {
            match op.netbox_id {
                Some(id) => Ok(json!({ "id": id })),
                None => Err("delete without a NetBox id".to_owned()),
            }
        } else {
            vm_body(op, resolver).and_then(|mut body| {
                if method == Method::PATCH {
                    let id = op.netbox_id.ok_or("update without a NetBox id")?;
                    body.insert("id".into(), json!(id));
                }
                Ok(Value::Object(body))
            })
        };
        match body {
            // Nothing to write (only children, or a journal entry): no request, as for a
            // NOOP; a PATCH of nothing would still bump `last_updated`.
            Ok(body)
                if method == Method::PATCH && body.as_object().is_some_and(|b| b.len() == 1) =>
            {
                finish(client, ops, index, Ok(ops[index].netbox_id), out).await;
            }
            Ok(body) => items.push((index, body)),
            Err(message) => out.fail(index, &ops[index], message),
        }
    }
    if method == Method::POST {
        lock_order(&mut items);
    }
    // Work list of groups still to send; a failed group is split and pushed back.
    let mut queue: Vec<Vec<(usize, Value)>> = vec![items];
    while let Some(group) = queue.pop() {
        if group.is_empty() {
            continue;
        }
        let size: usize = group.iter().map(|(_, b)| b.to_string().len() + 1).sum();
        if size > MAX_BULK_BODY_BYTES && group.len() > 1 {
            let mut group = group;
            let second = group.split_off(group.len() / 2);
            queue.push(second);
            queue.push(group);
            continue;
        }
        let bodies: Vec<Value> = group.iter().map(|(_, b)| b.clone()).collect();
        let result = match method {
            Method::POST => client
                .create_bulk(VM_ENDPOINT, &bodies, &["id"])
                .await
                .map(|objs| {
                    objs.iter()
                        .map(|o| o.get("id").and_then(Value::as_u64))
                        .collect::<Vec<_>>()
                }),
            Method::PATCH => client
                .patch_bulk(VM_ENDPOINT, &bodies, &["id"])
                .await
                .map(|_| group.iter().map(|(i, _)| ops[*i].netbox_id).collect()),
            _ => {
                let ids: Vec<u64> = group
                    .iter()
                    .filter_map(|(i, _)| ops[*i].netbox_id)
                    .collect();
                client
                    .delete_bulk(VM_ENDPOINT, &ids)
                    .await
                    .map(|()| vec![None; group.len()])
            }
        };
        match result {
            Ok(ids) => {
                for ((index, _), id) in group.iter().zip(ids) {
                    finish(client, ops, *index, Ok(id), out).await;
                }
            }
            Err(e) if group.len() == 1 => {
                let (index, body) = group.into_iter().next().expect("one item");
                let result = if method == Method::POST && e.is_ambiguous() {
                    create_vm_after_lost(client, &ops[index], body, resolver, cf_ready, &e).await
                } else {
                    Err(e.to_string())
                };
                finish(client, ops, index, result, out).await;
            }
            Err(e) if method == Method::POST && e.is_ambiguous() => {
                // Some may exist now: keep those, send the rest again one by one.
                let keys: Vec<(u64, u32)> = group
                    .iter()
                    .filter_map(|(i, _)| identity(&ops[*i], resolver))
                    .collect();
                let found = match lookup_identities(client, &keys, cf_ready).await {
                    Ok(found) => found,
                    Err(le) => {
                        // Unknown which exist: sending them again could duplicate them.
                        for (index, _) in group {
                            let message = format!("{e}; and the identity lookup failed: {le}");
                            out.fail(index, &ops[index], message);
                        }
                        continue;
                    }
                };
                for (index, body) in group {
                    let hit = identity(&ops[index], resolver).and_then(|k| found.get(&k));
                    match hit {
                        Some((id, _)) => finish(client, ops, index, Ok(Some(*id)), out).await,
                        None => queue.push(vec![(index, body)]),
                    }
                }
            }
            Err(e) => {
                // NetBox names the bad items (4.7: `errors[].index` / `.id`): fail those, resend
                // the rest; without names, halve the group until each bad item stands alone.
                let (bad_index, bad_ids) = e
                    .body()
                    .map(|b| (b.failed_indexes(), b.failed_ids()))
                    .unwrap_or_default();
                let is_bad = |pos: usize, index: usize| {
                    bad_index.contains(&pos)
                        || ops[index].netbox_id.is_some_and(|id| bad_ids.contains(&id))
                };
                let named = group
                    .iter()
                    .enumerate()
                    .any(|(pos, (index, _))| is_bad(pos, *index));
                if named {
                    let mut rest = Vec::new();
                    for (pos, (index, body)) in group.into_iter().enumerate() {
                        if is_bad(pos, index) {
                            let detail = item_message(&e, pos, ops[index].netbox_id);
                            out.fail(index, &ops[index], detail);
                        } else {
                            rest.push((index, body));
                        }
                    }
                    queue.push(rest);
                } else {
                    let mut group = group;
                    let second = group.split_off(group.len() / 2);
                    queue.push(second);
                    queue.push(group);
                }
            }
        }
    }
}

async fn create_vm_after_lost(
    client: &NetboxClient,
    op: &Operation,
    body: Value,
    resolver: &Resolver,
    cf_ready: bool,
    first: &NetboxError,
) -> Result<Option<u64>, String> {
    if let Some(key) = identity(op, resolver) {
        let found = lookup_identities(client, &[key], cf_ready)
            .await
            .map_err(|le| format!("{first}; and the identity lookup failed: {le}"))?;
        if let Some((id, _)) = found.get(&key) {
            return Ok(Some(*id));
        }
    }
    client
        .create(VM_ENDPOINT, &body, &["id"])
        .await
        .map(|obj| obj.get("id").and_then(Value::as_u64))
        .map_err(|e| format!("{e} (after a lost answer: {first})"))
}

/// The message NetBox gave for one bulk item, else the whole error.
fn item_message(e: &NetboxError, pos: usize, id: Option<u64>) -> String {
    e.body()
        .and_then(|b| {
            b.items
                .iter()
                .find(|i| i.index == Some(pos) || (i.id.is_some() && i.id == id))
        })
        .map(|i| format!("rejected in a bulk request: {}", i.errors.message()))
        .unwrap_or_else(|| e.to_string())
}

/// The `last_updated` of each object of `endpoint` among `ids` that still exists: one filtered
/// paged read per [`IDS_PER_READ`] ids (`id=` repeated). `apply`'s staleness guards use it, for
/// VMs and for their children.
pub(crate) async fn last_updated_by_id(
    client: &NetboxClient,
    endpoint: &str,
    ids: &[u64],
) -> Result<BTreeMap<u64, Option<String>>, NetboxError> {
    let mut current = BTreeMap::new();
    for chunk in ids.chunks(IDS_PER_READ) {
        let filters: Vec<(String, String)> = chunk
            .iter()
            .map(|id| ("id".to_owned(), id.to_string()))
            .collect();
        for row in client
            .list_all(endpoint, &filters, &["last_updated"])
            .await?
        {
            if let Some(id) = row.get("id").and_then(Value::as_u64) {
                let updated = row
                    .get("last_updated")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                current.insert(id, updated);
            }
        }
    }
    Ok(current)
}

/// `apply`'s guard: re-reads every target of `ops` (one filtered paged read, `id=` repeated)
/// and the identities of its creates; returns the operations to refuse, with why. A target
/// whose `last_updated` moved since the plan, or that is gone, is refused; so is a create whose
/// VM now exists.
pub async fn check_stale(
    client: &NetboxClient,
    ops: &[Operation],
    preflight: &Preflight,
) -> Result<Vec<(usize, String)>, NetboxError> {
    let resolver = Resolver::new(preflight);
    let targets: Vec<u64> = ops.iter().filter_map(|o| o.netbox_id).collect();
    let current = last_updated_by_id(client, VM_ENDPOINT, &targets).await?;
    let creates: Vec<(u64, u32)> = ops
        .iter()
        .filter(|o| o.op == OpKind::Create)
        .filter_map(|o| identity(o, &resolver))
        .collect();
    let cf_ready = preflight.custom_fields.contains(VM_ID_FIELD);
    let existing = lookup_identities(client, &creates, cf_ready).await?;
    let mut refused = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        if let Some(id) = op.netbox_id {
            match current.get(&id) {
                None => refused.push((index, format!("NetBox VM #{id} is gone since the plan"))),
                Some(now) if op.last_updated.is_some() && *now != op.last_updated => {
                    refused.push((
                        index,
                        format!(
                            "NetBox VM #{id} changed since the plan (last_updated {} -> {}); \
                             make a new plan",
                            op.last_updated.as_deref().unwrap_or("?"),
                            now.as_deref().unwrap_or("?")
                        ),
                    ))
                }
                Some(_) => {}
            }
        } else if op.op == OpKind::Create
            && let Some(key) = identity(op, &resolver)
            && let Some((id, _)) = existing.get(&key)
        {
            refused.push((
                index,
                format!("the VM exists since the plan (NetBox VM #{id}); make a new plan"),
            ));
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_default::model::{FieldChange, JsonText, KnownObject};

    fn preflight() -> Preflight {
        let k = |kind: &str, key: &str, id| KnownObject {
            kind: kind.into(),
            key: key.into(),
            id,
            name: key.into(),
        };
        Preflight {
            known: vec![
                k("tag", "pve2netbox", 1),
                k("tag", "prod", 2),
                k("platform", "linux", 5),
                k("device", "pve1", 9),
            ],
            cluster_ids: [("pve-a".to_owned(), 3)].into_iter().collect(),
            ..Preflight::default()
        }
    }

    fn change(field: &str, old: &str, new: &str) -> FieldChange {
        FieldChange {
            field: field.into(),
            old: JsonText(old.into()),
            new: JsonText(new.into()),
        }
    }

    fn op(kind: OpKind, changes: Vec<FieldChange>) -> Operation {
        Operation {
            op: kind,
            scope: "pve-a/pve1/100".into(),
            cluster: Some("pve-a".into()),
            cluster_id: Some(crate::pipeline::preflight::PLACEHOLDER_ID_BASE),
            vmid: Some(100),
            kind: None,
            netbox_id: None,
            name: None,
            last_updated: None,
            changes: changes.into(),
            object: None,
            journal: None,
            children: Default::default(),
            child_ids: Default::default(),
        }
    }

    #[test]
    fn create_body_resolves_keys_merges_custom_fields_and_sets_the_cluster() {
        let o = op(
            OpKind::Create,
            vec![
                change("name", "null", "\"web\""),
                change("platform", "null", "\"linux\""),
                change("device", "null", "\"pve1\""),
                change("tags", "null", "[\"prod\",\"pve2netbox\"]"),
                change("memory", "null", "2048"),
                change("custom_fields.proxmox_vm_id", "null", "100"),
                change("custom_fields.proxmox_tags", "null", "\"prod\""),
                change("tenant", "null", "null"),
            ],
        );
        let body = vm_body(&o, &Resolver::new(&preflight())).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"name": "web", "platform": 5, "device": 9, "tags": [2, 1], "memory": 2048,
                   "tenant": null, "cluster": 3,
                   "custom_fields": {"proxmox_vm_id": 100, "proxmox_tags": "prod"}})
        );
    }

    #[test]
    fn an_unknown_reference_fails_only_that_operation() {
        let o = op(OpKind::Update, vec![change("platform", "null", "\"bsd\"")]);
        let err = vm_body(&o, &Resolver::new(&preflight())).unwrap_err();
        assert!(err.contains("platform 'bsd'"), "{err}");
        let o = op(OpKind::Update, vec![change("tags", "[]", "[\"nope\"]")]);
        assert!(vm_body(&o, &Resolver::new(&preflight())).is_err());
    }

    /// A NetBox on a loopback socket answering request n with `answers[n]` (the last one
    /// repeats): `None` drops the connection unanswered (a write committed whose answer is
    /// lost), `Some((status, json))` answers. Returns its URL and the request lines received.
    fn scripted_netbox(
        answers: Vec<Option<(u16, &'static str)>>,
    ) -> (reqwest::Url, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                log.lock().unwrap().push(line.trim().to_owned());
                let answer = answers[n.min(answers.len() - 1)];
                if let Some((status, body)) = answer {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        });
        (url.parse().unwrap(), seen)
    }

    fn client(url: reqwest::Url) -> NetboxClient {
        let token = crate::clients::http::Secret::new("0".repeat(40));
        let config = crate::config::NetboxConfig::new(url, token.clone());
        let timeouts = crate::config::Timeouts::default();
        NetboxClient::with_token(&config, &token, &timeouts, Default::default()).unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_needed_object_whose_create_failed_is_created_once_more_only_when_absent() {
        let spec = ObjectSpec {
            kind: "platform".into(),
            key: "bsd".into(),
            name: "BSD".into(),
            attrs: Default::default(),
        };
        let empty = r#"{"count":0,"next":null,"previous":null,"results":[]}"#;
        let stored = r#"{"count":1,"next":null,"previous":null,"results":[{"id":4,"slug":"bsd"}]}"#;
        let methods = |seen: &std::sync::Mutex<Vec<String>>| -> Vec<String> {
            let seen = seen.lock().unwrap();
            seen.iter()
                .map(|l| l[..l.find(' ').unwrap()].to_owned())
                .collect()
        };
        let resolver = Resolver::new(&preflight());
        // Answer lost, not stored: looked up, then sent once more.
        let (url, seen) =
            scripted_netbox(vec![None, Some((200, empty)), Some((201, r#"{"id":7}"#))]);
        let got = block_on(create_object(&client(url), &spec, &resolver));
        assert_eq!(got, Ok(Some(7)));
        assert_eq!(methods(&seen), ["POST", "GET", "POST"]);
        // Answer lost, stored: found by its slug, not sent again.
        let (url, seen) = scripted_netbox(vec![None, Some((200, stored))]);
        let got = block_on(create_object(&client(url), &spec, &resolver));
        assert_eq!(got, Ok(Some(4)));
        assert_eq!(methods(&seen), ["POST", "GET"]);
        // Refused (400) and absent: the refusal stands.
        let refused = r#"{"slug":["Enter a valid slug."]}"#;
        let (url, seen) = scripted_netbox(vec![Some((400, refused)), Some((200, empty))]);
        let got = block_on(create_object(&client(url), &spec, &resolver));
        assert!(got.is_err(), "{got:?}");
        assert_eq!(methods(&seen), ["POST", "GET"]);
    }

    #[test]
    fn needed_objects_of_one_kind_go_in_one_bulk_request_else_one_by_one() {
        let spec = |kind: &str, key: &str| ObjectSpec {
            kind: kind.into(),
            key: key.into(),
            name: key.to_uppercase(),
            attrs: Default::default(),
        };
        let specs = [
            spec("platform", "bsd"),
            spec("platform", "plan9"),
            spec("platform", "bsd"),
            spec("tag", "only-one"),
        ];
        let ops: Vec<Operation> = specs
            .iter()
            .map(|s| {
                let mut o = op(OpKind::CreateObject, Vec::new());
                o.object = Some(Box::new(s.clone()));
                o
            })
            .collect();
        let indexes: Vec<usize> = (0..ops.len()).collect();
        // Both platforms (the repeated key once) in one POST; a single tag is left to the
        // one-by-one pass.
        let (url, seen) = scripted_netbox(vec![Some((201, r#"[{"id":5},{"id":6}]"#))]);
        let mut resolver = Resolver::new(&preflight());
        block_on(create_objects_in_bulk(
            &client(url),
            &ops,
            &indexes,
            &mut resolver,
        ));
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(seen.lock().unwrap()[0].starts_with("POST /api/dcim/platforms/"));
        assert_eq!(resolver.id("platform", "bsd"), Some(5));
        assert_eq!(resolver.id("platform", "plan9"), Some(6));
        assert_eq!(resolver.id("tag", "only-one"), None);
        // A refused bulk request leaves every object to the one-by-one pass.
        let refused = r#"{"detail":"1 of 2 objects could not be created.","errors":[]}"#;
        let (url, _) = scripted_netbox(vec![Some((400, refused))]);
        let mut resolver = Resolver::new(&preflight());
        block_on(create_objects_in_bulk(
            &client(url),
            &ops,
            &indexes,
            &mut resolver,
        ));
        assert_eq!(resolver.id("platform", "bsd"), None);
    }

    #[test]
    fn a_lost_bulk_create_is_not_sent_again_when_the_lookup_fails() {
        let (url, seen) = scripted_netbox(vec![None, Some((403, r#"{"detail":"no"}"#))]);
        let client = client(url);
        let mut pre = preflight();
        pre.custom_fields.insert(VM_ID_FIELD.to_owned());
        let mut ops = Vec::new();
        for vmid in [100, 101] {
            let mut o = op(
                OpKind::Create,
                vec![change("name", "null", &format!("\"vm{vmid}\""))],
            );
            o.vmid = Some(vmid);
            ops.push(o);
        }
        let mut out = DispatchOutcome::default();
        block_on(bulk_run(
            &client,
            &ops,
            &[0, 1],
            Method::POST,
            &Resolver::new(&pre),
            true,
            &mut out,
        ));
        let seen = seen.lock().unwrap().clone();
        let posts = seen.iter().filter(|l| l.starts_with("POST")).count();
        assert_eq!(posts, 1, "the VMs may exist: no second POST: {seen:?}");
        assert!(
            seen.iter().any(|l| l.starts_with("GET")),
            "looked up: {seen:?}"
        );
        assert_eq!(out.failures.len(), 2, "{:?}", out.failures);
        for f in &out.failures {
            assert!(f.entry.message.contains("identity lookup failed"), "{f:?}");
        }
        assert!(out.vm_ids.is_empty());
    }

    #[test]
    fn windows_that_share_a_vm_or_a_name_touch_the_same_thing() {
        // 101 gives up "web" (parking rename), 100 takes "WEB" (NetBox compares names
        // case-insensitively), 102 is unrelated, 101's later write is its own VM again.
        let mut freeing = op(
            OpKind::Update,
            vec![change("name", "\"web\"", "\"pve2netbox-swap-101\"")],
        );
        freeing.vmid = Some(101);
        freeing.netbox_id = Some(11);
        let mut taking = op(OpKind::Update, vec![change("name", "\"db\"", "\"WEB\"")]);
        taking.netbox_id = Some(10);
        let mut other = op(OpKind::Create, vec![change("name", "null", "\"mail\"")]);
        other.vmid = Some(102);
        let mut again = op(OpKind::Orphan, vec![change("description", "\"\"", "\"x\"")]);
        again.vmid = Some(101);
        again.netbox_id = Some(11);
        let ops = [freeing, taking, other, again];
        let t = |i: usize| touches(&ops, &[i]);
        assert!(!t(0).is_disjoint(&t(1)), "a name freed, then taken");
        assert!(
            t(0).is_disjoint(&t(2)) && t(1).is_disjoint(&t(2)),
            "unrelated"
        );
        assert!(!t(0).is_disjoint(&t(3)), "one VM's writes");
        assert!(
            t(1).contains(&Touch::Name("db".into())),
            "the name given up"
        );
    }

    /// Creates go in VM type id order whatever the plan's order (untyped first, plan order
    /// among equals), so two create requests never take two type rows in opposite orders.
    #[test]
    fn bulk_creates_take_the_vm_type_rows_in_one_order() {
        let body = |t: Value| {
            let mut b = Map::new();
            if !t.is_null() {
                b.insert("virtual_machine_type".into(), t);
            }
            Value::Object(b)
        };
        let mut a = vec![
            (0, body(json!(2))),
            (1, body(json!(1))),
            (2, body(Value::Null)),
            (3, body(json!(2))),
            (4, body(json!(1))),
        ];
        let mut b: Vec<(usize, Value)> = a.iter().rev().cloned().collect();
        lock_order(&mut a);
        lock_order(&mut b);
        let types = |items: &[(usize, Value)]| -> Vec<Option<u64>> {
            items
                .iter()
                .map(|(_, b)| b.get("virtual_machine_type").and_then(Value::as_u64))
                .collect()
        };
        assert_eq!(types(&a), [None, Some(1), Some(1), Some(2), Some(2)]);
        assert_eq!(types(&a), types(&b), "one order whatever the plan's");
        let order: Vec<usize> = a.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [2, 1, 4, 0, 3], "stable among equal types");
    }

    /// A window runs alone when one of its requests may take two type rows in an order NetBox
    /// chooses: several deletes in one bulk DELETE, or a type change; creates and plain updates
    /// overlap.
    #[test]
    fn windows_that_may_lock_two_type_rows_in_netbox_order_run_alone() {
        let delete = |id| {
            let mut o = op(OpKind::Delete, Vec::new());
            o.netbox_id = Some(id);
            o
        };
        let ops = vec![
            op(
                OpKind::Create,
                vec![change("virtual_machine_type", "null", "\"qemu\"")],
            ),
            op(
                OpKind::Create,
                vec![change("virtual_machine_type", "null", "\"lxc\"")],
            ),
            delete(7),
            delete(8),
            op(OpKind::Update, vec![change("vcpus", "2.0", "4")]),
            op(
                OpKind::Update,
                vec![change("virtual_machine_type", "\"qemu\"", "\"lxc\"")],
            ),
            op(
                OpKind::Adopt,
                vec![change("virtual_machine_type", "null", "\"lxc\"")],
            ),
            op(
                OpKind::Adopt,
                vec![change("virtual_machine_type", "null", "\"qemu\"")],
            ),
        ];
        for (window, bulk, alone) in [
            (&[0, 1][..], true, false),
            (&[0, 1, 4][..], true, false),
            (&[2][..], true, false),
            (&[2, 3][..], true, true),
            (&[2, 0, 3][..], true, false),
            (&[2, 3][..], false, false),
            (&[5][..], false, true),
            (&[6][..], true, false),
            (&[6, 4, 7][..], true, true),
            (&[6, 0, 7][..], true, false),
        ] {
            assert_eq!(
                runs_alone(&ops, window, bulk),
                alone,
                "{window:?} bulk {bulk}"
            );
        }
    }

    #[test]
    fn an_update_body_holds_only_the_changes() {
        let o = op(OpKind::Update, vec![change("vcpus", "2.0", "4")]);
        let body = vm_body(&o, &Resolver::new(&preflight())).unwrap();
        assert_eq!(Value::Object(body), json!({"vcpus": 4}));
    }
}
