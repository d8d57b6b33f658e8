//! Classification: each observed guest against the snapshot becomes NOOP, CREATE, UPDATE, ADOPT,
//! SKIP (with a reason) or ERROR (with the message).
//!
//! The host matches each guest to its NetBox VM by identity, then asks the rules (one batched
//! [`Rules::reconcile`]) for the desired name, the objects it needs and the changes against that
//! VM. A guest without one that the rules name like an unowned NetBox VM adopts it: the rules are
//! asked again for those few, against the VM to adopt.

use std::collections::HashSet;
use std::sync::Arc;

use guest_default::model::{GuestKind, JsonText, ObjectSpec};
use serde::{Deserialize, Serialize};

use super::changes::Changes;
use super::contract::OutputContract;
use super::names::{self, Claim, Verdict};
use super::observed::{Answer, ObservedGuest, RulesResult};
use super::snapshot::{
    Identity, MISSING_RUNS_FIELD, NetboxRecord, ORPHAN_TAG, Snapshot, VM_ID_FIELD, VM_TYPE_FIELD,
};

/// The field name of a custom field in changes and policies.
pub fn cf(name: &str) -> String {
    format!("custom_fields.{name}")
}

/// One guest for the rules: its position in the observed guests, and the NetBox VM matched to
/// it (absent: the VM is to be created, and the changes are its create body). The rules' model
/// of the VM is made from the record when its batch is asked ([`CompactVm::to_vm`]).
///
/// [`CompactVm::to_vm`]: super::CompactVm::to_vm
#[derive(Debug, Clone, Copy)]
pub struct RulesItem<'a> {
    pub guest: usize,
    pub current: Option<&'a NetboxRecord>,
    /// The rules may be asked about this guest again (to adopt an unowned VM of its name), so
    /// its input must be kept; otherwise this is the last time and it may be released.
    pub again: bool,
}

/// The rules' `reconcile`, batched: one result per item, in order. The rules runtime
/// implements it; tests use a fake or a closure.
pub trait Rules {
    fn reconcile(&mut self, items: &[RulesItem<'_>]) -> Vec<RulesResult>;
}

impl<F> Rules for F
where
    F: FnMut(&[RulesItem<'_>]) -> Vec<RulesResult>,
{
    fn reconcile(&mut self, items: &[RulesItem<'_>]) -> Vec<RulesResult> {
        self(items)
    }
}

/// Asks the rules about `items`; an answer of the wrong length fails every item of the call,
/// and an answer outside the `contract` fails its own item.
fn ask(
    rules: &mut impl Rules,
    items: &[RulesItem<'_>],
    contract: &OutputContract,
) -> Vec<RulesResult> {
    if items.is_empty() {
        return Vec::new();
    }
    let mut answers = rules.reconcile(items);
    if answers.len() == items.len() {
        for answer in &mut answers {
            if let RulesResult::Vm(vm) = answer
                && let Err(message) = contract
                    .check(&vm.changes)
                    .and_then(|()| contract.check_children(&vm.children))
            {
                *answer = RulesResult::Error(message);
            }
        }
        return answers;
    }
    let message = format!(
        "rules returned {} results for {} guests",
        answers.len(),
        items.len()
    );
    vec![RulesResult::Error(message); items.len()]
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
    /// The Proxmox endpoint the guest was read from.
    pub endpoint: usize,
    /// The NetBox name after this run when known, else the Proxmox name.
    pub name: Option<String>,
    pub class: Class,
    /// The NetBox VM written or kept (update, adopt, noop).
    pub netbox_id: Option<u64>,
    /// Its `last_updated`, for `apply`'s staleness check.
    pub last_updated: Option<String>,
    /// Field changes (old -> new); for a create, the create body (old is `null`).
    pub changes: Changes,
    /// Objects the rules referenced that NetBox lacks (the plan keeps those the changes use).
    pub needs: Vec<Arc<ObjectSpec>>,
    /// A journal entry to add to the VM with the write (orphan mark removed).
    pub journal: Option<Journal>,
    /// VMIDs of the same cluster whose renames must be written first (they free this name).
    pub after: Vec<u32>,
    /// Something a person should know about this write (e.g. a temporary name), for the plan.
    pub notice: Option<String>,
    /// The child changes and primary IPs the rules returned that this run does not write
    /// ([`hold_back_children`]), for the plan's warnings; any class but skip and error.
    /// Shared: VMs with the same child changes held back (every VM of a first sync without
    /// `sync.children`) share one text.
    pub children_not_applied: Option<Arc<str>>,
    /// The child changes this run writes (`sync.children` with a WIT 0.3 module): the plan
    /// turns them into child operations of the VM's write.
    pub children: super::child_operations::ChildOperations,
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
        answer: Answer,
        record: Option<&'a NetboxRecord>,
        adopt: bool,
    },
}

/// What the identity says about a guest, before the rules.
enum Found<'a> {
    /// No NetBox VM has its identity.
    Nothing,
    /// Exactly one, of the guest's type.
    Record(&'a NetboxRecord),
    /// A conflict the host decides on its own (reused VMID, duplicate identity).
    Conflict(Class),
}

/// Classifies every observed guest: match by identity, ask the rules (their answers held to the
/// `contract`), adopt by name, classify. Outcomes are sorted by cluster, then VMID.
pub fn reconcile(
    observed: &[ObservedGuest],
    snapshot: &Snapshot,
    rules: &mut impl Rules,
    contract: &OutputContract,
) -> Vec<VmOutcome> {
    let asked = ask_all(observed, snapshot, rules, contract);
    classify_all(observed, snapshot, asked, contract)
}

/// Every guest's answer, or what the host decided without one: the part of [`reconcile`] that
/// asks the rules (adoptions included). The rules are not asked again after it.
pub struct Asked<'a> {
    /// One per observed guest, an adoption's second answer in its guest's place.
    answers: Vec<RulesResult>,
    targets: Vec<Target<'a>>,
}

/// What the host made of a guest's answer, kept beside the answers rather than moved into a
/// second list with them: both lists of 100k answers were a first sync's peak with children.
enum Target<'a> {
    Decided(Class),
    /// Its answer is a VM's, to be classified against `record`.
    Vm {
        record: Option<&'a NetboxRecord>,
        adopt: bool,
    },
}

/// The first half of [`reconcile`]: match by identity, ask the rules, adopt by name. Why apart
/// from [`classify_all`]: the caller can release what only the rules needed (their engine's
/// linear memories, the read guests) before the outcomes are made, which was the peak of a
/// first sync with children.
pub fn ask_all<'a>(
    observed: &[ObservedGuest],
    snapshot: &'a Snapshot,
    rules: &mut impl Rules,
    contract: &OutputContract,
) -> Asked<'a> {
    let found: Vec<Found<'_>> = observed.iter().map(|g| find(g, snapshot)).collect();
    let items: Vec<RulesItem<'_>> = found
        .iter()
        .enumerate()
        .map(|(guest, f)| RulesItem {
            guest,
            current: match f {
                Found::Record(r) => Some(*r),
                _ => None,
            },
            again: matches!(f, Found::Nothing) && snapshot.has_unowned(observed[guest].cluster_id),
        })
        .collect();
    let mut answers = ask(rules, &items, contract);
    let mut adoptions: Vec<(RulesItem<'_>, &NetboxRecord)> = Vec::new();
    let mut targets: Vec<Target<'_>> = Vec::with_capacity(observed.len());
    for ((guest, found), answer) in observed.iter().zip(found).zip(&mut answers) {
        let answer = match answer {
            RulesResult::Error(message) => {
                targets.push(Target::Decided(Class::Error(std::mem::take(message))));
                continue;
            }
            RulesResult::Skip(reason) => {
                targets.push(Target::Decided(Class::Skip(format!("rules: {reason}"))));
                continue;
            }
            RulesResult::Vm(answer) => answer,
        };
        let target = match found {
            Found::Conflict(class) => Target::Decided(class),
            Found::Record(record) => Target::Vm {
                record: Some(record),
                adopt: false,
            },
            Found::Nothing => match by_name(guest, answer, snapshot) {
                Ok(None) => Target::Vm {
                    record: None,
                    adopt: false,
                },
                Ok(Some(record)) => {
                    let item = RulesItem {
                        guest: targets.len(),
                        current: Some(record),
                        again: false,
                    };
                    adoptions.push((item, record));
                    // Replaced by the second answer below.
                    Target::Decided(Class::Error("adoption was not reconciled".into()))
                }
                Err(class) => Target::Decided(class),
            },
        };
        targets.push(target);
    }
    let items: Vec<RulesItem<'_>> = adoptions.iter().map(|(item, _)| *item).collect();
    for ((item, record), answer) in adoptions.iter().zip(ask(rules, &items, contract)) {
        targets[item.guest] = match &answer {
            RulesResult::Vm(_) => Target::Vm {
                record: Some(record),
                adopt: true,
            },
            RulesResult::Skip(reason) => Target::Decided(Class::Skip(format!("rules: {reason}"))),
            RulesResult::Error(message) => Target::Decided(Class::Error(message.clone())),
        };
        answers[item.guest] = answer;
    }
    Asked { answers, targets }
}

/// The second half of [`reconcile`]: each guest's outcome from what [`ask_all`] returned for the
/// same `observed` guests, names settled; sorted by cluster, then VMID.
pub fn classify_all(
    observed: &[ObservedGuest],
    snapshot: &Snapshot,
    asked: Asked<'_>,
    contract: &OutputContract,
) -> Vec<VmOutcome> {
    let Asked { answers, targets } = asked;
    let states = answers
        .into_iter()
        .zip(targets)
        .map(|(answer, target)| match (target, answer) {
            (Target::Vm { record, adopt }, RulesResult::Vm(answer)) => State::Target {
                answer,
                record,
                adopt,
            },
            (Target::Decided(class), _) => State::Decided(class),
            // A target is a VM's only with a VM's answer (above).
            (Target::Vm { .. }, _) => {
                State::Decided(Class::Error("the rules' answer went missing".into()))
            }
        });
    let mut held = SharedTexts::default();
    let mut outcomes: Vec<(VmOutcome, Option<&NetboxRecord>)> = observed
        .iter()
        .zip(states)
        .map(|(guest, state)| classify(guest, state, contract.writes_children(), &mut held))
        .collect();
    apply_names(&mut outcomes, snapshot);
    let mut out: Vec<VmOutcome> = outcomes.into_iter().map(|(o, _)| o).collect();
    out.sort_by(|a, b| (&a.cluster, a.cluster_id, a.vmid).cmp(&(&b.cluster, b.cluster_id, b.vmid)));
    out
}

/// Holds back what this run does not write: a WIT 0.3 module's child changes (interfaces, MAC
/// and IP addresses, virtual disks) and the primary IPs (which name IP addresses that would not
/// exist), when `sync.children` is off. They are dropped from the answer here, and the message
/// returned says per VM what was not applied, so that nothing a module returns is lost
/// silently. A VM's own fields are written as before (its `disk` is the sum of its virtual
/// disks, which NetBox accepts also while the VM has none).
fn hold_back_children(answer: &mut Answer) -> Option<String> {
    use guest_default::children::ChildKind;
    let held = |field: &str| super::contract::PRIMARY_IP_FIELDS.contains(&field);
    let primary: Vec<String> = answer
        .changes
        .iter()
        .filter(|c| held(c.field))
        .map(|c| c.field.to_owned())
        .collect();
    if !primary.is_empty() {
        answer.changes.retain(|c| !held(c.field));
    }
    let children = std::mem::take(&mut answer.children);
    if children.is_empty() && primary.is_empty() {
        return None;
    }
    let count = |kind: ChildKind| children.iter().filter(|c| c.kind == kind).count();
    let mut parts: Vec<String> = [
        (ChildKind::Interface, "interface"),
        (ChildKind::MacAddress, "MAC address"),
        (ChildKind::IpAddress, "IP address"),
        (ChildKind::VirtualDisk, "virtual disk"),
    ]
    .into_iter()
    .filter_map(|(kind, what)| match count(kind) {
        0 => None,
        1 => Some(format!("1 {what} change")),
        n => Some(format!("{n} {what} changes")),
    })
    .collect();
    parts.extend(primary);
    Some(format!(
        "not applied: {} (a VM's interfaces, MAC and IP addresses, virtual disks and primary \
         IPs are written with sync.children = true)",
        parts.join(", ")
    ))
}

/// What [`reconcile`] does to each answer, done as the answer arrives (the rules runtime calls
/// it per batch): an answer outside the `contract` becomes its error and, when this run does
/// not write children, the child changes are held back ([`hold_back_children`]) at once.
/// Why: held until every guest was answered, a 100k-VM sync without `sync.children` kept
/// every VM's child changes (~2 KB each, ~190 MB) only to count them. The result is the one
/// [`reconcile`] makes of the answer later (it checks the contract again, which a settled
/// answer passes, and takes the held-back message).
pub fn settle_answer(result: &mut RulesResult, contract: &OutputContract, held: &mut SharedTexts) {
    let RulesResult::Vm(vm) = result else {
        return;
    };
    if let Err(message) = contract
        .check(&vm.changes)
        .and_then(|()| contract.check_children(&vm.children))
    {
        *result = RulesResult::Error(message);
        return;
    }
    if !contract.writes_children() && vm.children_not_applied.is_none() {
        vm.children_not_applied = hold_back_children(vm).map(|t| held.share(t));
    }
}

/// Equal texts given out as one shared allocation (the few distinct "children not applied"
/// messages of a run).
#[derive(Debug, Default)]
pub struct SharedTexts(HashSet<Arc<str>>);

impl SharedTexts {
    fn share(&mut self, text: String) -> Arc<str> {
        if let Some(shared) = self.0.get(text.as_str()) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = text.into();
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// The guest's NetBox VM by identity (cluster, `proxmox_vm_id`).
fn find<'a>(guest: &ObservedGuest, snapshot: &'a Snapshot) -> Found<'a> {
    let identity = Identity {
        cluster_id: guest.cluster_id,
        vmid: guest.vmid,
    };
    match snapshot.by_identity(identity).as_slice() {
        [] => Found::Nothing,
        [record] => {
            let kind = guest.kind.as_str();
            match record.vm_type().as_deref() {
                Some(other) if other != kind => Found::Conflict(Class::Error(format!(
                    "VMID {} was reused: {} has proxmox_vm_type '{other}' but the guest is \
                     {kind}; not overwriting it (delete or re-key the NetBox VM by hand)",
                    guest.vmid,
                    record.label()
                ))),
                _ => Found::Record(record),
            }
        }
        records => {
            let list: Vec<String> = records.iter().map(|r| r.label()).collect();
            Found::Conflict(Class::Error(format!(
                "duplicate identity: {} all have proxmox_vm_id {} in this cluster; \
                 left alone, remove the duplicates by hand",
                list.join(", "),
                guest.vmid
            )))
        }
    }
}

/// For a guest without identity: the unowned NetBox VM of its desired name to adopt (`None`:
/// create), or why it is skipped.
fn by_name<'a>(
    guest: &ObservedGuest,
    answer: &Answer,
    snapshot: &'a Snapshot,
) -> Result<Option<&'a NetboxRecord>, Class> {
    let Some(name) = answer
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    else {
        return Err(Class::Skip(
            "no usable name: the rules give none and NetBox has no VM with this identity".into(),
        ));
    };
    match snapshot.unowned_named(guest.cluster_id, name).as_slice() {
        [] => Ok(None),
        [record] => Ok(Some(record)),
        records => {
            let list: Vec<String> = records.iter().map(|r| r.label()).collect();
            Err(Class::Skip(format!(
                "cannot adopt: {} are all named '{name}' without proxmox_vm_id in this cluster",
                list.join(", ")
            )))
        }
    }
}

fn classify<'a>(
    g: &ObservedGuest,
    state: State<'a>,
    writes_children: bool,
    held: &mut SharedTexts,
) -> (VmOutcome, Option<&'a NetboxRecord>) {
    let mut outcome = VmOutcome {
        cluster: g.cluster.clone(),
        cluster_id: g.cluster_id,
        vmid: g.vmid,
        kind: g.kind,
        node: g.node.clone(),
        endpoint: g.endpoint,
        name: g.name.clone(),
        class: Class::Noop,
        netbox_id: None,
        last_updated: None,
        changes: Changes::new(),
        needs: Vec::new(),
        journal: None,
        after: Vec::new(),
        notice: None,
        children_not_applied: None,
        children: Default::default(),
    };
    let (answer, record, adopt) = match state {
        State::Decided(class) => {
            outcome.class = class;
            return (outcome, None);
        }
        State::Target {
            answer,
            record,
            adopt,
        } => (answer, record, adopt),
    };
    if let Some(r) = record {
        outcome.netbox_id = Some(r.id());
        outcome.last_updated = r.vm.last_updated().map(str::to_owned);
        outcome.name = Some(r.vm.name().to_owned());
    }
    let mut answer = answer;
    if writes_children {
        outcome.children = std::mem::take(&mut answer.children);
    } else {
        outcome.children_not_applied = match answer.children_not_applied.take() {
            Some(settled) => Some(settled),
            None => hold_back_children(&mut answer).map(|t| held.share(t)),
        };
    }
    let mut changes = answer.changes;
    outcome.needs = answer.needs;
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
            // A VM whose only changes are its children is updated (their writes ride on it).
            outcome.class = if changes.is_empty() && outcome.children.is_empty() {
                Class::Noop
            } else {
                Class::Update
            };
        }
    }
    if let Some(name) = changes.find("name").and_then(|c| c.new.as_string_value()) {
        outcome.name = Some(name);
    } else if record.is_none() {
        outcome.class = Class::Skip(
            "no usable name: the rules' create body has no name and NetBox requires one".into(),
        );
    }
    changes.shrink_to_fit();
    outcome.changes = changes;
    (outcome, record)
}

/// Puts the identity custom fields into a create or adopt body, overriding what rules said.
fn set_identity(changes: &mut Changes, vmid: u32, kind: GuestKind, record: Option<&NetboxRecord>) {
    let old = |name: &str| {
        record
            .and_then(|r| r.vm.custom_field(name))
            .map(|t| JsonText(t.to_owned()))
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
fn set_change(changes: &mut Changes, field: &str, old: JsonText, new: JsonText) {
    changes.set(field, old.as_str(), new.as_str());
}

/// Removes an orphan mark from a VM whose guest is back: the orphan tag and the missing-run
/// count. The status is restored by the normal diff. Returns true when the VM was marked.
fn unmark(record: &NetboxRecord, changes: &mut Changes) -> bool {
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
        match changes.find("tags").map(|c| without(&c.new.to_value())) {
            Some(new) => {
                changes.set_new("tags", new.as_str());
            }
            None => {
                let mut old = record.vm.tags().to_vec();
                old.sort();
                let old = serde_json::json!(old);
                changes.push(
                    "tags",
                    JsonText::from_value(&old).as_str(),
                    without(&old).as_str(),
                );
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

fn skip(outcome: &mut VmOutcome, reason: String) {
    outcome.class = Class::Skip(reason);
    outcome.changes.clear();
    outcome.children = Default::default();
    outcome.needs.clear();
    outcome.journal = None;
}

/// Writes the VM under the temporary name `name` this run (its rename is part of a cycle).
fn park(outcome: &mut VmOutcome, name: String, after: Vec<u32>) {
    let own = outcome.name.clone().unwrap_or_default();
    // The claim was a rename, so the rules' changes hold the name; if not, nothing to park.
    if !outcome
        .changes
        .set_new("name", JsonText::string(&name).as_str())
    {
        return skip(
            outcome,
            format!("rename to '{own}' is part of a rename cycle in this cluster"),
        );
    }
    outcome.notice = Some(format!(
        "named '{name}' for now: its rename to '{own}' is part of a rename cycle in this cluster \
         (names swapped in Proxmox), and NetBox cannot hold two VMs named alike; the next run \
         gives it '{own}'"
    ));
    outcome.name = Some(name);
    outcome.after = after;
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
    let verdicts = names::resolve(claims, snapshot);
    for (&i, verdict) in writes.iter().zip(verdicts) {
        let outcome = &mut outcomes[i].0;
        match verdict {
            Verdict::Keep { after } => outcome.after = after,
            Verdict::Park { name, after } => park(outcome, name, after),
            Verdict::Skip(reason) => skip(outcome, reason),
        }
    }
}
