//! The plan: the deterministic, ordered list of NetBox writes one run makes, built from the
//! reconcile outcomes and the orphan findings. It is serializable (`plan --out plan.json`,
//! versioned by `plan_version`), readable back for `apply`, and printable as a table.
//!
//! Order: objects the VMs need (`needs` actually used by a change, deduplicated, by kind and
//! key) first; then VM writes sorted by cluster and VMID, except that a VM taking a name another
//! VM gives up in a rename comes after that rename; deletes last. A VM's child writes
//! (interfaces, MAC and IP addresses, virtual disks: [`ChildOperations`]) ride on its write, in
//! the rules' order; dispatch orders them (`children_dispatch`). Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use guest_default::model::{GuestKind, ObjectSpec};
use serde::{Deserialize, Serialize};

use crate::pipeline::orphans::{OrphanAction, OrphanFindings};
use crate::pipeline::reconcile::{Changes, Class, Journal, VmOutcome};
use crate::pipeline::report::{Counts, ErrorEntry};
use crate::pipeline::snapshot::children::ChildrenSnapshot;
use child_ids::ChildIds;
use children::{ChildAction, ChildOperations};

pub mod child_ids;
pub mod children;

/// Version of the plan file's shape; `apply` refuses other versions. 2 added the VMs' child
/// operations (`children`, `child_ids`): a pve2netbox that reads only 1 would apply a plan
/// without its children, so it must refuse it.
pub const PLAN_VERSION: u32 = 2;
/// Older plan versions this pve2netbox still applies (a version-1 plan has no children).
const READS_VERSIONS: [u32; 2] = [1, PLAN_VERSION];

/// Errors reading a plan file.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan: not a pve2netbox plan (JSON): {0}")]
    Json(#[source] serde_json::Error),
    #[error(
        "plan: plan_version {found} is not supported; this pve2netbox reads plan_version 1 and {PLAN_VERSION}"
    )]
    Version { found: String },
    #[error("plan: cannot read the file: {0}")]
    Read(#[source] std::io::Error),
}

/// The kind of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Create a referenced object (platform, tag, role, ...) the rules listed in `needs`.
    CreateObject,
    /// POST a new VM; `changes` are the create body.
    Create,
    /// PATCH the changed fields.
    Update,
    /// PATCH an unowned VM: the identity plus the changes.
    Adopt,
    /// PATCH an orphan: the mark and/or the missing-run count.
    Orphan,
    /// DELETE an orphan.
    Delete,
}

impl OpKind {
    fn symbol(self) -> &'static str {
        match self {
            OpKind::CreateObject | OpKind::Create => "+",
            OpKind::Update => "~",
            OpKind::Adopt => "&",
            OpKind::Orphan => "!",
            OpKind::Delete => "-",
        }
    }

    fn word(self) -> &'static str {
        match self {
            OpKind::CreateObject => "create object",
            OpKind::Create => "create",
            OpKind::Update => "update",
            OpKind::Adopt => "adopt",
            OpKind::Orphan => "mark orphan",
            OpKind::Delete => "delete orphan",
        }
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub op: OpKind,
    /// `cluster/node/vmid` for a VM, `kind:key` for an object.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// NetBox cluster id (a create sets it as the VM's cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<GuestKind>,
    /// The NetBox VM written, when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netbox_id: Option<u64>,
    /// The VM's name (after the write), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `last_updated` of the target when the plan was made: `apply` refuses when it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    /// Field changes, old -> new (references as keys, tags as slug lists).
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub changes: Changes,
    /// The object to create (`create_object`). Boxed, like `journal`: few operations have one,
    /// and inline they were ~130 of the ~400 bytes every operation of a plan takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Box<ObjectSpec>>,
    /// A journal entry to add to the VM after the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<Box<Journal>>,
    /// The VM's child writes (create, update, adopt).
    #[serde(default, skip_serializing_if = "ChildOperations::is_empty")]
    pub children: ChildOperations,
    /// NetBox ids of the existing children and VLANs the child writes and primary IPs refer
    /// to, by [`children::ref_key`].
    #[serde(default, skip_serializing_if = "ChildIds::is_empty")]
    pub child_ids: ChildIds,
}

impl Operation {
    /// The creation of a NetBox object a VM write refers to.
    pub fn create_object(spec: ObjectSpec) -> Self {
        Operation {
            op: OpKind::CreateObject,
            scope: format!("{}:{}", spec.kind, spec.key),
            cluster: None,
            cluster_id: None,
            vmid: None,
            kind: None,
            netbox_id: None,
            name: Some(spec.name.clone()),
            last_updated: None,
            changes: Changes::new(),
            object: Some(Box::new(spec)),
            journal: None,
            children: ChildOperations::new(),
            child_ids: ChildIds::new(),
        }
    }

    fn vm(op: OpKind, cluster: &str, cluster_id: u64, vmid: u32, scope: String) -> Self {
        Operation {
            op,
            scope,
            cluster: Some(cluster.to_owned()),
            cluster_id: Some(cluster_id),
            vmid: Some(vmid),
            kind: None,
            netbox_id: None,
            name: None,
            last_updated: None,
            changes: Changes::new(),
            object: None,
            journal: None,
            children: ChildOperations::new(),
            child_ids: ChildIds::new(),
        }
    }
}

/// A VM left alone (skip) or an orphan only listed, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub scope: String,
    /// `skip`, `orphan`, `rename` (a VM written under a temporary name this run), `children`
    /// (child changes not applied or refused) or `vlan` (an untagged VLAN NetBox lacks).
    pub kind: String,
    /// Shared text: with `sync.children` off, every VM of a first sync gets the same "children
    /// not applied" message, one ~200-byte copy per VM (~25 MB at 100k VMs) when owned.
    #[serde(with = "shared_text")]
    pub message: Arc<str>,
}

/// (De)serializes an `Arc<str>` as a JSON string (serde's `rc` feature would rebuild the
/// workspace's dependents for this one field).
mod shared_text {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

/// Counts of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// Per VM, as in the run report.
    pub counts: Counts,
    pub objects: u64,
    pub orphan_marks: u64,
    pub deletes: u64,
    /// Operations in the plan (NetBox writes, journal entries aside).
    pub writes: u64,
    /// Child writes (interfaces, MAC and IP addresses, virtual disks) riding on them.
    #[serde(default)]
    pub child_writes: u64,
}

/// The plan of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub plan_version: u32,
    pub summary: Summary,
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub notices: Vec<Notice>,
    /// Per VM and per scope, sorted by scope.
    #[serde(default)]
    pub errors: Vec<ErrorEntry>,
}

impl Plan {
    /// Builds the plan from the classified VMs and the orphan findings (any input order).
    /// Takes each outcome's changes and needs (moved, not copied: at 100k creates they are
    /// most of the run's memory); the outcomes keep the rest for the task history.
    pub fn build(outcomes: &mut [VmOutcome], orphans: &OrphanFindings) -> Plan {
        Self::build_with_children(outcomes, orphans, None)
    }

    /// [`Plan::build`], with the VMs' child changes turned into child operations against
    /// NetBox's children (`children`: the snapshot, when it was read).
    pub fn build_with_children(
        outcomes: &mut [VmOutcome],
        orphans: &OrphanFindings,
        children: Option<&ChildrenSnapshot>,
    ) -> Plan {
        let mut sorted: Vec<&mut VmOutcome> = outcomes.iter_mut().collect();
        sorted.sort_by(|a, b| {
            (&a.cluster, a.cluster_id, a.vmid).cmp(&(&b.cluster, b.cluster_id, b.vmid))
        });
        let mut counts = Counts::default();
        let mut notices = Vec::new();
        let mut errors = Vec::new();
        let mut objects: BTreeMap<(String, String), ObjectSpec> = BTreeMap::new();
        // The objects first (they lead the plan), so that the plan's list can be made its
        // size at once and the VM writes ordered in it where they are: kept per cluster and
        // copied into the plan, a 100k-VM first sync held its operations (~400 bytes each)
        // twice at its memory peak.
        let mut room = 0;
        for o in &mut sorted {
            if matches!(o.class, Class::Create | Class::Update | Class::Adopt) {
                room += 1;
                for spec in std::mem::take(&mut o.needs) {
                    if uses(&spec, &o.changes) {
                        objects
                            .entry((spec.kind.clone(), spec.key.clone()))
                            .or_insert_with(|| Arc::unwrap_or_clone(spec));
                    }
                }
            }
        }
        room += orphans
            .orphans
            .iter()
            .filter(|o| matches!(o.action, OrphanAction::Mark | OrphanAction::Delete))
            .count();
        let mut operations: Vec<Operation> = Vec::with_capacity(objects.len() + room);
        operations.extend(objects.into_values().map(Operation::create_object));
        let first_write = operations.len();
        // Per VM write (from `first_write`), the VMIDs whose renames it must follow.
        let mut after: Vec<Vec<u32>> = Vec::new();
        let mut deletes = Vec::new();

        for o in sorted {
            // Reported for every class (a VM with no field change may still have child
            // changes); only its own writes depend on the class.
            if let Some(message) = o.children_not_applied.take() {
                notices.push(Notice {
                    scope: o.scope(),
                    kind: "children".into(),
                    message,
                });
            }
            let op = match &o.class {
                Class::Noop => {
                    counts.noop += 1;
                    continue;
                }
                Class::Skip(reason) => {
                    counts.skip += 1;
                    notices.push(Notice {
                        scope: o.scope(),
                        kind: "skip".into(),
                        message: reason.as_str().into(),
                    });
                    continue;
                }
                Class::Error(message) => {
                    counts.error += 1;
                    errors.push(ErrorEntry::new(o.scope(), "reconcile", message.clone()));
                    continue;
                }
                Class::Create => {
                    counts.create += 1;
                    OpKind::Create
                }
                Class::Update => {
                    counts.update += 1;
                    OpKind::Update
                }
                Class::Adopt => {
                    counts.adopt += 1;
                    OpKind::Adopt
                }
            };
            if let Some(message) = o.notice.take() {
                notices.push(Notice {
                    scope: o.scope(),
                    kind: "rename".into(),
                    message: message.into(),
                });
            }
            let mut operation = Operation::vm(op, &o.cluster, o.cluster_id, o.vmid, o.scope());
            operation.kind = Some(o.kind);
            operation.netbox_id = o.netbox_id;
            // Taken, not copied: past the plan an outcome serves the task history alone.
            operation.name = o.name.take();
            operation.last_updated = o.last_updated.take();
            operation.changes = std::mem::take(&mut o.changes);
            operation.journal = o.journal.take().map(Box::new);
            let child_changes = std::mem::take(&mut o.children);
            let primaries: Vec<String> = ["primary_ip4", "primary_ip6"]
                .iter()
                .filter_map(|f| operation.changes.find(f))
                .filter_map(|c| c.new.as_string_value())
                .collect();
            if !child_changes.is_empty() || !primaries.is_empty() {
                let planned =
                    children::plan_children(o.netbox_id, child_changes, &primaries, children);
                for (kind, message) in planned
                    .refused
                    .into_iter()
                    .map(|m| ("children", m))
                    .chain(planned.vlans_left_out.into_iter().map(|m| ("vlan", m)))
                {
                    notices.push(Notice {
                        scope: o.scope(),
                        kind: kind.into(),
                        message: message.into(),
                    });
                }
                operation.children = planned.ops;
                operation.child_ids = planned.ids;
            }
            // Its only changes were children the host left out (an untagged VLAN NetBox
            // lacks): nothing to write, as for a NOOP.
            if op == OpKind::Update
                && operation.changes.is_empty()
                && operation.children.is_empty()
                && operation.journal.is_none()
            {
                counts.update -= 1;
                counts.noop += 1;
                continue;
            }
            operations.push(operation);
            after.push(std::mem::take(&mut o.after));
        }

        for orphan in &orphans.orphans {
            counts.orphan += 1;
            let op = match orphan.action {
                OrphanAction::Listed => {
                    notices.push(Notice {
                        scope: orphan.scope(),
                        kind: "orphan".into(),
                        message: format!(
                            "NetBox VM #{} '{}' has no guest in Proxmox",
                            orphan.netbox_id, orphan.name
                        )
                        .into(),
                    });
                    continue;
                }
                OrphanAction::Mark => OpKind::Orphan,
                OrphanAction::Delete => OpKind::Delete,
            };
            let mut operation = Operation::vm(
                op,
                &orphan.cluster,
                orphan.cluster_id,
                orphan.vmid,
                orphan.scope(),
            );
            operation.netbox_id = Some(orphan.netbox_id);
            operation.name = Some(orphan.name.clone());
            operation.last_updated = orphan.last_updated.clone();
            operation.changes = orphan.changes.clone();
            operation.journal = orphan.journal.clone().map(Box::new);
            if op == OpKind::Delete {
                deletes.push(operation);
            } else {
                operations.push(operation);
                after.push(Vec::new());
            }
        }
        errors.extend(orphans.errors.iter().cloned());
        errors.sort_by(|a, b| {
            (&a.scope, &a.phase, &a.message).cmp(&(&b.scope, &b.phase, &b.message))
        });
        errors.dedup();

        order_writes(&mut operations[first_write..], &after);
        drop(after);
        deletes.sort_by(|a, b| {
            (&a.cluster, a.cluster_id, a.vmid).cmp(&(&b.cluster, b.cluster_id, b.vmid))
        });
        operations.extend(deletes);
        // An update left with nothing to write had its room.
        if operations.len() < operations.capacity() {
            operations.shrink_to_fit();
        }

        let count = |k: OpKind| operations.iter().filter(|o| o.op == k).count() as u64;
        let summary = Summary {
            counts,
            objects: count(OpKind::CreateObject),
            orphan_marks: count(OpKind::Orphan),
            deletes: count(OpKind::Delete),
            writes: operations.len() as u64,
            child_writes: operations.iter().map(|o| o.children.len() as u64).sum(),
        };
        Plan {
            plan_version: PLAN_VERSION,
            summary,
            operations,
            notices,
            errors,
        }
    }

    /// True when the plan writes anything.
    pub fn has_changes(&self) -> bool {
        !self.operations.is_empty()
    }

    /// The plan file's JSON (pretty, stable field order).
    pub fn to_json(&self) -> String {
        // Plain data with string keys always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the plan file's JSON (the bytes of [`Plan::to_json`] and a newline) as it is
    /// rendered: a first sync's plan of 10k VMs with children is ~90 MB of JSON, which need not
    /// be held as one text beside the plan.
    pub fn write_json(&self, out: impl std::io::Write) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(out);
        serde_json::to_writer_pretty(&mut out, self)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Reads a plan file's JSON, refusing other plan versions.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        check_version(serde_json::from_str(text))?;
        serde_json::from_str(text).map_err(PlanError::Json)
    }

    /// Reads a plan file, refusing other plan versions. Streams it twice (the version, then
    /// the plan) rather than holding its text and a `serde_json::Value` of it: for a large
    /// plan those were several times the plan itself (~620 MiB to apply a 90 MB plan).
    pub fn read_file(path: &std::path::Path) -> Result<Plan, PlanError> {
        let open = || {
            std::fs::File::open(path)
                .map(std::io::BufReader::new)
                .map_err(PlanError::Read)
        };
        check_version(serde_json::from_reader(open()?))?;
        serde_json::from_reader(open()?).map_err(PlanError::Json)
    }

    /// The plan for people: one line per write with per-field `old → new`, then skips,
    /// listed orphans and errors.
    pub fn render_table(&self) -> String {
        let s = &self.summary;
        let c = &s.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan: {} to create, {} to update, {} to adopt, {} orphan marks, {} deletes, \
             {} objects to create ({} unchanged, {} skipped, {} errors)",
            c.create,
            c.update,
            c.adopt,
            s.orphan_marks,
            s.deletes,
            s.objects,
            c.noop,
            c.skip,
            c.error
        );
        if s.child_writes > 0 {
            let _ = writeln!(
                out,
                "Children: {} writes (interfaces, MAC and IP addresses, virtual disks)",
                s.child_writes
            );
        }
        if self.operations.is_empty() {
            let _ = writeln!(out, "No changes.");
        }
        let width = self
            .operations
            .iter()
            .flat_map(|o| o.changes.iter().map(|c| c.field.chars().count()))
            .max()
            .unwrap_or(0);
        for op in &self.operations {
            let name = op.name.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                "{} {} {}  ({})",
                op.op.symbol(),
                op.scope,
                name,
                op.op.word()
            );
            for change in &op.changes {
                let new = show(&change.new.to_value());
                let line = if op.op == OpKind::Create {
                    new
                } else {
                    format!("{} → {new}", show(&change.old.to_value()))
                };
                let _ = writeln!(out, "    {:<width$}  {line}", change.field);
            }
            if let Some(journal) = &op.journal {
                let _ = writeln!(out, "    journal ({}): {}", journal.kind, journal.comments);
            }
            render_children(&mut out, &op.children);
        }
        for (title, kind) in [
            ("Named for now (rename cycles)", "rename"),
            ("Skipped", "skip"),
            ("Children not applied", "children"),
            ("VLANs not found", "vlan"),
            ("Orphans (listed only)", "orphan"),
        ] {
            let items: Vec<&Notice> = self.notices.iter().filter(|n| n.kind == kind).collect();
            if !items.is_empty() {
                let _ = writeln!(out, "{title}:");
                // A VLAN missing from NetBox is usually missing for many NICs: past a few, one
                // line says how many more (each one is in the plan file).
                let shown = if kind == "vlan" {
                    VLAN_NOTICES_SHOWN
                } else {
                    items.len()
                };
                for n in items.iter().take(shown) {
                    let _ = writeln!(out, "  {}: {}", n.scope, n.message);
                }
                if items.len() > shown {
                    let _ = writeln!(
                        out,
                        "  … and {} more like these (each one is in the plan file: `plan --out FILE`)",
                        items.len() - shown
                    );
                }
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "Errors:");
            for e in &self.errors {
                let _ = writeln!(out, "  {} [{}]: {}", e.scope, e.phase, e.message);
            }
        }
        out
    }
}

/// "VLANs not found" lines the table shows before it only counts the rest.
const VLAN_NOTICES_SHOWN: usize = 10;

/// Only a plan file's `plan_version`; the rest is skipped unread.
#[derive(Deserialize)]
struct VersionOnly {
    plan_version: Option<serde_json::Value>,
}

fn check_version(peek: Result<VersionOnly, serde_json::Error>) -> Result<(), PlanError> {
    let version = peek.map_err(PlanError::Json)?.plan_version;
    let known = version
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .is_some_and(|v| READS_VERSIONS.iter().any(|r| u64::from(*r) == v));
    if known {
        return Ok(());
    }
    let found = version.map_or_else(|| "(absent)".to_owned(), |v| v.to_string());
    Err(PlanError::Version { found })
}

/// A VM's child writes for people: one line per child (`+` create, `~` update, `-` delete),
/// with its fields below it as for the VM.
fn render_children(out: &mut String, children: &ChildOperations) {
    for child in children.iter() {
        let (symbol, word) = match child.op {
            ChildAction::Create => ("+", "create"),
            ChildAction::Update => ("~", "update"),
            ChildAction::Delete => ("-", "delete"),
        };
        let on = child.parent.map(|p| format!(" on {p}")).unwrap_or_default();
        let id = child.id.map(|id| format!(" #{id}")).unwrap_or_default();
        let _ = writeln!(out, "    {symbol} {}{id}{on}  ({word})", child.label());
        let width = child
            .changes
            .iter()
            .map(|c| c.field.chars().count())
            .max()
            .unwrap_or(0);
        for change in child.changes.iter() {
            let new = show(&change.new.to_value());
            let line = if child.op == ChildAction::Create {
                new
            } else {
                format!("{} → {new}", show(&change.old.to_value()))
            };
            let _ = writeln!(out, "        {:<width$}  {line}", change.field);
        }
    }
}

/// True when a change of the VM refers to the object `spec` (so it must exist first).
fn uses(spec: &ObjectSpec, changes: &Changes) -> bool {
    let field = match spec.kind.as_str() {
        "platform" => "platform",
        "role" => "role",
        "vm-type" => "virtual_machine_type",
        "tenant" => "tenant",
        "site" => "site",
        "device" => "device",
        "tag" => "tags",
        // An object kind this host does not know: keep it rather than fail the write.
        _ => return true,
    };
    let key = serde_json::Value::String(spec.key.clone());
    changes.iter().any(|c| {
        c.field == field
            && match c.new.to_value() {
                serde_json::Value::Array(items) => items.contains(&key),
                value => value == key,
            }
    })
}

/// Orders the VM writes in place: by cluster, and in each cluster by VMID, a rename's taker
/// after the VM that frees the name. `after[i]` are the VMIDs `writes[i]` must follow.
fn order_writes(writes: &mut [Operation], after: &[Vec<u32>]) {
    // Positions, stably by cluster (the writes come in cluster order, marks after).
    let mut by_cluster: Vec<usize> = (0..writes.len()).collect();
    let cluster = |i: usize| (writes[i].cluster.as_deref(), writes[i].cluster_id);
    by_cluster.sort_by(|&a, &b| cluster(a).cmp(&cluster(b)));
    let mut source: Vec<usize> = Vec::with_capacity(writes.len());
    for group in by_cluster.chunk_by(|&a, &b| cluster(a) == cluster(b)) {
        let items: Vec<(Option<u32>, OpKind, &[u32])> = group
            .iter()
            .map(|&i| (writes[i].vmid, writes[i].op, after[i].as_slice()))
            .collect();
        source.extend(cluster_order(&items).into_iter().map(|at| group[at]));
    }
    permute(writes, &source);
}

/// Moves `items[source[i]]` to `i`, for every `i`, in place (`source` a permutation).
fn permute<T>(items: &mut [T], source: &[usize]) {
    let mut placed = vec![false; items.len()];
    for start in 0..items.len() {
        let mut at = start;
        while !placed[at] {
            placed[at] = true;
            let from = source[at];
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// One cluster's VM writes (VMID, kind, the VMIDs it must follow) by VMID, a rename's taker
/// after the VM that frees the name: the order as indices into `ops`.
fn cluster_order(ops: &[(Option<u32>, OpKind, &[u32])]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&at| (ops[at].0, ops[at].1));
    let present: BTreeSet<u32> = ops.iter().filter_map(|op| op.0).collect();
    // Kahn's algorithm over the sorted list: the lowest-sorted operation whose predecessors are
    // written (or not in the plan) goes next. A linear rescan per step was quadratic and stalled
    // plans of 100,000 VMs.
    let mut blocked_by: Vec<usize> = Vec::with_capacity(ops.len());
    let mut waiters: std::collections::HashMap<u32, Vec<usize>> = std::collections::HashMap::new();
    for (index, &at) in order.iter().enumerate() {
        let deps: BTreeSet<u32> = ops[at]
            .2
            .iter()
            .copied()
            .filter(|v| present.contains(v))
            .collect();
        for v in &deps {
            waiters.entry(*v).or_default().push(index);
        }
        blocked_by.push(deps.len());
    }
    let mut ready: BTreeSet<usize> = (0..ops.len()).filter(|&i| blocked_by[i] == 0).collect();
    let mut remaining: BTreeSet<usize> = (0..ops.len()).collect();
    let mut out = Vec::with_capacity(ops.len());
    let mut done: BTreeSet<u32> = BTreeSet::new();
    while let Some(&first) = remaining.first() {
        // Reconcile has removed cycles; falling back to the first pending operation keeps the
        // order total even if one slipped through.
        let next = ready.pop_first().unwrap_or(first);
        if !remaining.remove(&next) {
            continue;
        }
        if let Some(v) = ops[order[next]].0
            && done.insert(v)
        {
            for &waiter in waiters.get(&v).map(Vec::as_slice).unwrap_or_default() {
                blocked_by[waiter] -= 1;
                if blocked_by[waiter] == 0 && remaining.contains(&waiter) {
                    ready.insert(waiter);
                }
            }
        }
        out.push(order[next]);
    }
    out
}

/// A JSON value for people: strings bare, `null` as `—`, lists as `[a, b]`.
fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) if s.is_empty() => "\"\"".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::orphans::{OrphanPolicy, OrphanSettings, find_orphans};
    use crate::pipeline::reconcile::fixtures::*;
    use crate::pipeline::reconcile::{ClusterRead, OutputContract, reconcile};
    use crate::pipeline::report::{Mode, RunReport};

    fn plan_of(
        guests_: Vec<GuestBuilder>,
        records: Vec<RecordBuilder>,
        policy: OrphanPolicy,
    ) -> Plan {
        let (observed, mut rules) = guests_and_rules(guests_);
        let snap = snapshot(records);
        let mut outcomes = reconcile(&observed, &snap, &mut rules, &OutputContract::default());
        let reads = vec![
            ClusterRead::complete(CLUSTER, CLUSTER_ID, &["pve1", "pve2"]),
            ClusterRead::complete("pve-b", 2, &["pve1"]),
        ];
        let settings = OrphanSettings {
            policy,
            delete_after_runs: 1,
            delete_budget_percent: 100,
            view_shrink_percent: 100,
        };
        let findings = find_orphans(&reads, &observed, &snap, &settings);
        Plan::build(&mut outcomes, &findings)
    }

    fn order(plan: &Plan) -> Vec<String> {
        plan.operations
            .iter()
            .map(|o| format!("{:?} {}", o.op, o.scope))
            .collect()
    }

    #[test]
    fn a_world_in_step_gives_an_empty_plan() {
        let plan = plan_of(
            vec![guest(100).named("web")],
            vec![netbox_vm(10).named("web").identity(100)],
            OrphanPolicy::Delete,
        );
        assert!(!plan.has_changes());
        assert_eq!(plan.summary.counts.noop, 1);
        assert_eq!(plan.summary.writes, 0);
        assert!(plan.render_table().contains("No changes."));
        let report = RunReport::from_plan(Mode::Plan, &plan);
        assert_eq!(report.exit_code(false, plan.operations.len()), 0);
    }

    fn mixed_guests() -> Vec<GuestBuilder> {
        vec![
            guest(300)
                .in_cluster("pve-b", 2)
                .platform("debian")
                .needs("platform", "debian"),
            guest(101).named("db").memory(4096),
            guest(100)
                .named("web")
                .platform("debian")
                .needs("platform", "debian"),
            guest(102)
                .named("cache")
                .tags(&["prod"])
                .needs("tag", "prod")
                .needs("tenant", "unused"),
            guest(103).named("legacy"),
        ]
    }

    fn mixed_records() -> Vec<RecordBuilder> {
        vec![
            netbox_vm(11).named("db").identity(101),
            netbox_vm(12).named("gone").identity(150),
            netbox_vm(13).named("LEGACY"),
            netbox_vm(14)
                .named("old")
                .identity(90)
                .in_cluster("pve-b", 2),
        ]
    }

    #[test]
    fn permute_puts_every_item_in_its_place_for_every_order_of_six() {
        let n: usize = 6;
        let mut checked = 0;
        for code in 0..n.pow(n as u32) {
            let source: Vec<usize> = (0..n as u32).map(|d| code / n.pow(d) % n).collect();
            if (0..n).any(|i| !source.contains(&i)) {
                continue;
            }
            let mut items: Vec<String> = (0..n).map(|i| format!("op{i}")).collect();
            permute(&mut items, &source);
            let want: Vec<String> = source.iter().map(|i| format!("op{i}")).collect();
            assert_eq!(items, want, "{source:?}");
            checked += 1;
        }
        assert_eq!(checked, 720);
        permute::<u8>(&mut [], &[]);
    }

    #[test]
    fn objects_first_then_cluster_and_vmid_then_deletes() {
        let plan = plan_of(mixed_guests(), mixed_records(), OrphanPolicy::Delete);
        assert_eq!(
            order(&plan),
            vec![
                "CreateObject platform:debian",
                "CreateObject tag:prod",
                "Create pve-a/pve1/100",
                "Update pve-a/pve1/101",
                "Create pve-a/pve1/102",
                "Adopt pve-a/pve1/103",
                "Create pve-b/pve1/300",
                "Delete pve-a/pve1/150",
                "Delete pve-b/pve1/90",
            ]
        );
        let c = plan.summary.counts;
        assert_eq!(
            (c.create, c.update, c.adopt, c.orphan, c.noop),
            (3, 1, 1, 2, 0)
        );
        assert_eq!(
            (
                plan.summary.objects,
                plan.summary.deletes,
                plan.summary.writes
            ),
            (2, 2, 9)
        );
        // The list is sized once, not grown by doubling.
        assert_eq!(plan.operations.capacity(), plan.operations.len());
        // Each write carries what apply needs.
        let update = &plan.operations[3];
        assert_eq!(update.netbox_id, Some(11));
        assert_eq!(update.last_updated.as_deref(), Some("2026-05-01T00:00:11Z"));
        assert_eq!(update.changes.len(), 1);
        let delete = &plan.operations[7];
        assert_eq!(delete.netbox_id, Some(12));
        assert!(delete.last_updated.is_some());
    }

    #[test]
    fn the_order_does_not_depend_on_the_input_order() {
        let a = plan_of(mixed_guests(), mixed_records(), OrphanPolicy::Mark);
        let mut g = mixed_guests();
        g.reverse();
        let mut r = mixed_records();
        r.reverse();
        let b = plan_of(g, r, OrphanPolicy::Mark);
        assert_eq!(a, b);
        // Orphans marked in a cluster fit the room made for it.
        assert_eq!(a.operations.capacity(), a.operations.len());
        assert_eq!(a.to_json(), b.to_json());
    }

    #[test]
    fn a_rename_comes_before_the_create_that_takes_its_name() {
        // 100 renamed web -> zz-web; new guest 50 called web (a lower VMID).
        let plan = plan_of(
            vec![guest(100).named("zz-web"), guest(50).named("web")],
            vec![netbox_vm(10).named("web").identity(100)],
            OrphanPolicy::Report,
        );
        assert_eq!(
            order(&plan),
            vec!["Update pve-a/pve1/100", "Create pve-a/pve1/50"]
        );
    }

    #[test]
    fn the_plan_survives_a_json_round_trip() {
        let plan = plan_of(mixed_guests(), mixed_records(), OrphanPolicy::Mark);
        let text = plan.to_json();
        let back = Plan::from_json(&text).unwrap();
        assert_eq!(back, plan);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["plan_version"], 2);
        let update = value["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["op"] == "update")
            .unwrap();
        assert_eq!(
            update["changes"],
            serde_json::json!([{"field": "memory", "old": 2048, "new": 4096}])
        );
    }

    #[test]
    fn another_plan_version_is_refused() {
        let mut value: serde_json::Value = serde_json::from_str(
            &plan_of(vec![guest(100)], vec![], OrphanPolicy::Report).to_json(),
        )
        .unwrap();
        value["plan_version"] = serde_json::json!(3);
        let err = Plan::from_json(&value.to_string()).unwrap_err();
        assert!(matches!(err, PlanError::Version { .. }));
        assert!(err.to_string().contains("plan_version 3"), "{err}");
        // A version-1 plan (no children) is still applied.
        value["plan_version"] = serde_json::json!(1);
        assert!(Plan::from_json(&value.to_string()).is_ok());
        assert!(matches!(
            Plan::from_json("not json"),
            Err(PlanError::Json(_))
        ));
    }

    #[test]
    fn the_plan_file_is_streamed_as_its_text_and_read_back() {
        let plan = plan_of(mixed_guests(), mixed_records(), OrphanPolicy::Mark);
        let mut bytes = Vec::new();
        plan.write_json(&mut bytes).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            plan.to_json() + "\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Plan::read_file(&path).unwrap().to_json(), plan.to_json());
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        value["plan_version"] = serde_json::json!(3);
        std::fs::write(&path, value.to_string()).unwrap();
        assert!(matches!(
            Plan::read_file(&path),
            Err(PlanError::Version { .. })
        ));
        assert!(matches!(
            Plan::read_file(&dir.path().join("absent.json")),
            Err(PlanError::Read(_))
        ));
    }

    #[test]
    fn the_table_counts_vlan_notices_past_the_first_few() {
        let mut plan = plan_of(mixed_guests(), mixed_records(), OrphanPolicy::Mark);
        let vlan = |i: usize| Notice {
            scope: format!("pve-a/pve1/{}", 200 + i),
            kind: "vlan".into(),
            message: format!("interface 'net0': untagged VLAN {i} left out").into(),
        };
        plan.notices.extend((0..VLAN_NOTICES_SHOWN + 3).map(vlan));
        let table = plan.render_table();
        let last = VLAN_NOTICES_SHOWN - 1;
        assert!(
            table.contains(&format!("untagged VLAN {last} left out")),
            "{table}"
        );
        let hidden = VLAN_NOTICES_SHOWN;
        assert!(
            !table.contains(&format!("untagged VLAN {hidden} left out")),
            "{table}"
        );
        assert!(table.contains("… and 3 more like these"), "{table}");
        // The plan itself keeps every one.
        assert_eq!(
            plan.notices.iter().filter(|n| n.kind == "vlan").count(),
            VLAN_NOTICES_SHOWN + 3
        );
    }

    #[test]
    fn the_table_shows_old_and_new_per_field() {
        let plan = plan_of(mixed_guests(), mixed_records(), OrphanPolicy::Mark);
        let table = plan.render_table();
        assert!(table.contains("~ pve-a/pve1/101 db  (update)"), "{table}");
        assert!(table.contains("memory"), "{table}");
        assert!(table.contains("2048 → 4096"), "{table}");
        assert!(
            table.contains("! pve-a/pve1/150 gone  (mark orphan)"),
            "{table}"
        );
        assert!(table.contains("active → offline"), "{table}");
        assert!(table.contains("+ platform:debian"), "{table}");
    }

    #[test]
    fn skips_errors_and_listed_orphans_are_kept_for_people() {
        let plan = plan_of(
            vec![
                guest(100).named("web"),
                guest(101).named("WEB"),
                guest(102).rules_error("bad-config", "no disks"),
            ],
            vec![netbox_vm(12).named("gone").identity(150)],
            OrphanPolicy::Report,
        );
        let c = plan.summary.counts;
        assert_eq!((c.create, c.skip, c.error, c.orphan), (1, 1, 1, 1));
        assert_eq!(plan.errors.len(), 1);
        assert_eq!(plan.errors[0].scope, "pve-a/pve1/102");
        let kinds: Vec<&str> = plan.notices.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(kinds, vec!["skip", "orphan"]);
        let report = RunReport::from_plan(Mode::DryRun, &plan);
        assert_eq!(report.counts, plan.summary.counts);
        assert_eq!(report.exit_code(false, plan.operations.len()), 3);
    }
}
