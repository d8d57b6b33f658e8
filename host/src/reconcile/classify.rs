//! Classification: each observed guest against the snapshot becomes NOOP, CREATE, UPDATE, ADOPT,
//! SKIP (with a reason) or ERROR (with the message).
//!
//! Three steps so the caller can run the rules' diff however it likes (sync, async, batched):
//! [`match_guests`] finds each guest's NetBox VM, [`Matching::diff_pairs`] lists what to diff,
//! [`Matching::finish`] classifies with the diff results. [`super::reconcile`] chains them.

use guest_default::model::{FieldChange, GuestKind, JsonText, NetboxVm, ObjectSpec, Vm};

use serde::{Deserialize, Serialize};

use super::names::{self, Claim, Verdict};
use super::observed::{ObservedGuest, RulesResult};
use super::snapshot::{
    Identity, MISSING_RUNS_FIELD, NetboxRecord, ORPHAN_TAG, Snapshot, VM_ID_FIELD, VM_TYPE_FIELD,
};

/// The field name of a custom field in changes and policies.
pub fn cf(name: &str) -> String {
    format!("custom_fields.{name}")
}

/// One desired/current pair for the rules' `diff` (`current` absent: the VM is to be created;
/// the differ normalizes `current` with the rules' `normalize-current` itself).
#[derive(Debug, Clone, Copy)]
pub struct DiffPair<'a> {
    pub desired: &'a Vm,
    pub current: Option<&'a NetboxVm>,
}

/// The rules' answer for one pair: the field changes, or the rule error / trap message.
pub type DiffResult = Result<Vec<FieldChange>, String>;

/// The rules' `diff`, batched: one result per pair, in order. The rules runtime implements it;
/// tests use a closure.
pub trait Differ {
    fn diff(&mut self, pairs: &[DiffPair<'_>]) -> Vec<DiffResult>;
}

impl<F> Differ for F
where
    F: FnMut(&[DiffPair<'_>]) -> Vec<DiffResult>,
{
    fn diff(&mut self, pairs: &[DiffPair<'_>]) -> Vec<DiffResult> {
        self(pairs)
    }
}

/// A NetBox journal entry to add to a VM along with its write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// `info`, `success`, `warning` or `danger` (NetBox's journal kinds).
    pub kind: String,
    pub comments: String,
}

impl Journal {
    pub fn info(comments: String) -> Self {
        Journal {
            kind: "info".into(),
            comments,
        }
    }

    pub fn warning(comments: String) -> Self {
        Journal {
            kind: "warning".into(),
            comments,
        }
    }
}

/// What happens to one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Identity found, nothing to change: no request at all.
    Noop,
    /// No NetBox VM with this identity and no unowned one of the same name.
    Create,
    /// Identity found, some fields differ: only those are written.
    Update,
    /// An unowned NetBox VM of the same name gets the identity (and the changes).
    Adopt,
    /// Left alone, with the reason.
    Skip(String),
    /// Failed, with the message; no write for it.
    Error(String),
}

impl Class {
    /// `noop`, `create`, ... as in the report's counts.
    pub fn as_str(&self) -> &'static str {
        match self {
            Class::Noop => "noop",
            Class::Create => "create",
            Class::Update => "update",
            Class::Adopt => "adopt",
            Class::Skip(_) => "skip",
            Class::Error(_) => "error",
        }
    }
}

/// The classification of one guest.
#[derive(Debug, Clone, PartialEq)]
pub struct VmOutcome {
    pub cluster: String,
    pub cluster_id: u64,
    pub vmid: u32,
    pub kind: GuestKind,
    pub node: String,
    /// The NetBox name after this run when known, else the Proxmox name.
    pub name: Option<String>,
    pub class: Class,
    /// The NetBox VM written or kept (update, adopt, noop).
    pub netbox_id: Option<u64>,
    /// Its `last_updated`, for `apply`'s staleness check.
    pub last_updated: Option<String>,
    /// Field changes (old -> new); for a create, the create body (old is `null`).
    pub changes: Vec<FieldChange>,
    /// Objects the rules referenced that NetBox lacks (the plan keeps those the changes use).
    pub needs: Vec<ObjectSpec>,
    /// A journal entry to add to the VM with the write (orphan mark removed).
    pub journal: Option<Journal>,
    /// VMIDs of the same cluster whose renames must be written first (they free this name).
    pub after: Vec<u32>,
}

impl VmOutcome {
    /// `cluster/node/vmid`.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}", self.cluster, self.node, self.vmid)
    }

    /// The identity this VM has (or gets).
    pub fn identity(&self) -> Identity {
        Identity {
            cluster_id: self.cluster_id,
            vmid: self.vmid,
        }
    }
}

enum State<'a> {
    Decided(Class),
    Target {
        desired: &'a guest_default::model::DesiredVm,
        record: Option<&'a NetboxRecord>,
        adopt: bool,
    },
}

struct Entry<'a> {
    guest: &'a ObservedGuest,
    state: State<'a>,
}

/// Each guest matched to its NetBox VM (or to none), before the diff.
pub struct Matching<'a> {
    snapshot: &'a Snapshot,
    entries: Vec<Entry<'a>>,
}

/// Finds each guest's NetBox VM: by identity, else an unowned VM of the same name to adopt.
pub fn match_guests<'a>(observed: &'a [ObservedGuest], snapshot: &'a Snapshot) -> Matching<'a> {
    let entries = observed
        .iter()
        .map(|guest| Entry {
            guest,
            state: match_one(guest, snapshot),
        })
        .collect();
    Matching { snapshot, entries }
}

fn match_one<'a>(guest: &'a ObservedGuest, snapshot: &'a Snapshot) -> State<'a> {
    let desired = match &guest.rules {
        RulesResult::Error(message) => return State::Decided(Class::Error(message.clone())),
        RulesResult::Skip(reason) => {
            return State::Decided(Class::Skip(format!("rules: {reason}")));
        }
        RulesResult::Vm(desired) => desired,
    };
    let identity = Identity {
        cluster_id: guest.cluster_id,
        vmid: guest.vmid,
    };
    match snapshot.by_identity(identity).as_slice() {
        [] => {}
        [record] => {
            let kind = guest.kind.as_str();
            return match record.vm_type.as_deref() {
                Some(other) if other != kind => State::Decided(Class::Error(format!(
                    "VMID {} was reused: {} has proxmox_vm_type '{other}' but the guest is \
                     {kind}; not overwriting it (delete or re-key the NetBox VM by hand)",
                    guest.vmid,
                    record.label()
                ))),
                _ => State::Target {
                    desired,
                    record: Some(record),
                    adopt: false,
                },
            };
        }
        records => {
            let list: Vec<String> = records.iter().map(|r| r.label()).collect();
            return State::Decided(Class::Error(format!(
                "duplicate identity: {} all have proxmox_vm_id {} in this cluster; \
                 left alone, remove the duplicates by hand",
                list.join(", "),
                guest.vmid
            )));
        }
    }
    let Some(name) = desired
        .vm
        .name
        .as_set()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
    else {
        return State::Decided(Class::Skip(
            "no usable name: the rules give none and NetBox has no VM with this identity".into(),
        ));
    };
    match snapshot.unowned_named(guest.cluster_id, name).as_slice() {
        [] => State::Target {
            desired,
            record: None,
            adopt: false,
        },
        [record] => State::Target {
            desired,
            record: Some(record),
            adopt: true,
        },
        records => {
            let list: Vec<String> = records.iter().map(|r| r.label()).collect();
            State::Decided(Class::Skip(format!(
                "cannot adopt: {} are all named '{name}' without proxmox_vm_id in this cluster",
                list.join(", ")
            )))
        }
    }
}

impl<'a> Matching<'a> {
    /// The pairs to diff, in order; pass the results to [`Matching::finish`] in the same order.
    pub fn diff_pairs(&self) -> Vec<DiffPair<'a>> {
        self.entries
            .iter()
            .filter_map(|e| match e.state {
                State::Target {
                    desired, record, ..
                } => Some(DiffPair {
                    desired: &desired.vm,
                    current: record.map(|r| &r.vm),
                }),
                State::Decided(_) => None,
            })
            .collect()
    }

    /// Classifies every guest with the diff results (one per [`Matching::diff_pairs`] pair).
    /// Outcomes are sorted by cluster, then VMID.
    pub fn finish(self, results: Vec<DiffResult>) -> Vec<VmOutcome> {
        let expected = self.diff_pairs().len();
        let mut results = results.into_iter();
        let mismatch = (results.len() != expected).then(|| {
            format!(
                "rules diff returned {} results for {expected} pairs",
                results.len()
            )
        });
        let mut outcomes: Vec<(VmOutcome, Option<&'a NetboxRecord>)> = Vec::new();
        for entry in &self.entries {
            let result = match entry.state {
                State::Target { .. } => Some(results.next().unwrap_or_else(|| {
                    Err(mismatch.clone().unwrap_or_else(|| "no diff result".into()))
                })),
                State::Decided(_) => None,
            };
            let result = match (&mismatch, result) {
                (Some(m), Some(_)) => Some(Err(m.clone())),
                (_, r) => r,
            };
            outcomes.push(classify(entry, result));
        }
        apply_names(&mut outcomes, self.snapshot);
        let mut out: Vec<VmOutcome> = outcomes.into_iter().map(|(o, _)| o).collect();
        out.sort_by(|a, b| {
            (&a.cluster, a.cluster_id, a.vmid).cmp(&(&b.cluster, b.cluster_id, b.vmid))
        });
        out
    }
}

fn classify<'a>(
    entry: &Entry<'a>,
    result: Option<DiffResult>,
) -> (VmOutcome, Option<&'a NetboxRecord>) {
    let g = entry.guest;
    let mut outcome = VmOutcome {
        cluster: g.cluster.clone(),
        cluster_id: g.cluster_id,
        vmid: g.vmid,
        kind: g.kind,
        node: g.node.clone(),
        name: g.name.clone(),
        class: Class::Noop,
        netbox_id: None,
        last_updated: None,
        changes: Vec::new(),
        needs: Vec::new(),
        journal: None,
        after: Vec::new(),
    };
    let (desired, record, adopt) = match &entry.state {
        State::Decided(class) => {
            outcome.class = class.clone();
            return (outcome, None);
        }
        State::Target {
            desired,
            record,
            adopt,
        } => (*desired, *record, *adopt),
    };
    if let Some(r) = record {
        outcome.netbox_id = Some(r.id());
        outcome.last_updated = r.vm.last_updated.clone();
        outcome.name = Some(r.vm.name.clone());
    }
    let mut changes = match result {
        Some(Ok(changes)) => changes,
        Some(Err(message)) => {
            outcome.class = Class::Error(format!("rules diff failed: {message}"));
            return (outcome, record);
        }
        None => Vec::new(),
    };
    outcome.needs = desired.needs.clone();
    match record {
        None => {
            set_identity(&mut changes, g.vmid, g.kind, None);
            outcome.class = Class::Create;
        }
        Some(r) if adopt => {
            set_identity(&mut changes, g.vmid, g.kind, Some(r));
            outcome.class = Class::Adopt;
        }
        Some(r) => {
            // Identity is the host's: a rule never re-keys a VM.
            let id_field = cf(VM_ID_FIELD);
            changes.retain(|c| c.field != id_field);
            outcome.journal = unmark(r, &mut changes).then(|| {
                Journal::info(format!(
                    "pve2netbox: guest {} is back in Proxmox; orphan mark removed",
                    g.scope()
                ))
            });
            outcome.class = if changes.is_empty() {
                Class::Noop
            } else {
                Class::Update
            };
        }
    }
    if let Some(name) = changes
        .iter()
        .find(|c| c.field == "name")
        .and_then(|c| c.new.as_string_value())
    {
        outcome.name = Some(name);
    } else if record.is_none() {
        outcome.class = Class::Skip(
            "no usable name: the rules' create body has no name and NetBox requires one".into(),
        );
    }
    outcome.changes = changes;
    (outcome, record)
}

/// Puts the identity custom fields into a create or adopt body, overriding what rules said.
fn set_identity(
    changes: &mut Vec<FieldChange>,
    vmid: u32,
    kind: GuestKind,
    record: Option<&NetboxRecord>,
) {
    let old = |name: &str| {
        record
            .and_then(|r| r.vm.custom_field(name).cloned())
            .unwrap_or_else(JsonText::null)
    };
    set_change(
        changes,
        &cf(VM_ID_FIELD),
        old(VM_ID_FIELD),
        JsonText::uint(u64::from(vmid)),
    );
    let kind_now = JsonText::string(kind.as_str());
    let kind_old = old(VM_TYPE_FIELD);
    if record.is_none() || kind_old.as_string_value().as_deref() != Some(kind.as_str()) {
        set_change(changes, &cf(VM_TYPE_FIELD), kind_old, kind_now);
    }
}

/// Replaces the change of `field` (keeping its position) or appends one.
fn set_change(changes: &mut Vec<FieldChange>, field: &str, old: JsonText, new: JsonText) {
    match changes.iter_mut().find(|c| c.field == field) {
        Some(c) => {
            c.old = old;
            c.new = new;
        }
        None => changes.push(FieldChange {
            field: field.to_owned(),
            old,
            new,
        }),
    }
}

/// Removes an orphan mark from a VM whose guest is back: the orphan tag and the missing-run
/// count. The status is restored by the normal diff. Returns true when the VM was marked.
fn unmark(record: &NetboxRecord, changes: &mut Vec<FieldChange>) -> bool {
    let tagged = record.has_tag(ORPHAN_TAG);
    if tagged {
        let without = |tags: &serde_json::Value| -> JsonText {
            let list: Vec<serde_json::Value> = tags
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|t| t.as_str() != Some(ORPHAN_TAG))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            JsonText::from_value(&serde_json::Value::Array(list))
        };
        match changes.iter_mut().find(|c| c.field == "tags") {
            Some(c) => c.new = without(&c.new.to_value()),
            None => {
                let mut old = record.vm.tags.clone();
                old.sort();
                let old = serde_json::json!(old);
                changes.push(FieldChange {
                    field: "tags".into(),
                    new: without(&old),
                    old: JsonText::from_value(&old),
                });
            }
        }
    }
    if record.missing_runs > 0 {
        set_change(
            changes,
            &cf(MISSING_RUNS_FIELD),
            JsonText::uint(u64::from(record.missing_runs)),
            JsonText::null(),
        );
    }
    tagged || record.missing_runs > 0
}

/// Applies the name rules of [`names`] to the outcomes that write or keep a VM.
fn apply_names(outcomes: &mut [(VmOutcome, Option<&NetboxRecord>)], snapshot: &Snapshot) {
    let writes: Vec<usize> = (0..outcomes.len())
        .filter(|&i| {
            matches!(
                outcomes[i].0.class,
                Class::Noop | Class::Create | Class::Update | Class::Adopt
            )
        })
        .collect();
    let claims: Vec<Claim<'_>> = writes
        .iter()
        .map(|&i| {
            let (o, record) = &outcomes[i];
            Claim {
                cluster_id: o.cluster_id,
                vmid: o.vmid,
                scope: o.scope(),
                final_name: o.name.clone().unwrap_or_default(),
                record: *record,
            }
        })
        .collect();
    let verdicts = names::resolve(&claims, snapshot);
    for (&i, verdict) in writes.iter().zip(verdicts) {
        let outcome = &mut outcomes[i].0;
        match verdict {
            Verdict::Keep { after } => outcome.after = after,
            Verdict::Skip(reason) => {
                outcome.class = Class::Skip(reason);
                outcome.changes.clear();
                outcome.needs.clear();
                outcome.journal = None;
            }
        }
    }
}
