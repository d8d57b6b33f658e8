//! Replaying fixtures (a recording of `sync --record`, or any fixture directory) through a
//! module, the way the sync calls it (`reconcile` in batches), and comparing two modules'
//! answers VM by VM: what `rules replay` and `rules diff` print.
//!
//! Edges: it reads fixture files and calls [`RulesModule::reconcile`]; it knows nothing of
//! Proxmox, NetBox or the rest of the plan (adoption, names, orphans), so its classes are the
//! rules' part of a plan: create (no NetBox record), update, noop, skip, error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use guest_default::children::{ChildChange, ChildOp};
use guest_default::model::{
    Context, FieldChange, Fixture, ObjectSpec, ReconcileInput, Reconciled, json_text_eq,
};
use serde::Serialize;

use super::{RulesModule, fixture::effective_context};

/// One fixture file of the directory replayed.
#[derive(Clone, Debug)]
pub struct Case {
    /// The file name.
    pub file: String,
    pub fixture: Fixture,
}

impl Case {
    /// `cluster/node/vmid` of the guest.
    pub fn scope(&self) -> String {
        self.fixture.guest.scope()
    }
}

/// A file of the directory that is not a fixture: its name and why.
pub type NotAFixture = (String, String);

/// Reads every `*.json` fixture of `dir` (sorted by name); a fixture without a context of its
/// own takes `recorded` (a recording's, [`super::record::recorded_context`]). Files that do
/// not parse are returned apart, with why, and the others replay.
pub fn load_cases(
    dir: &Path,
    recorded: Option<&Context>,
) -> std::io::Result<(Vec<Case>, Vec<NotAFixture>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut cases = Vec::with_capacity(paths.len());
    let mut bad = Vec::new();
    for path in paths {
        let file = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| super::record::read_fixture(&t, recorded).map_err(|e| e.to_string()))
        {
            Ok(fixture) => cases.push(Case { file, fixture }),
            Err(why) => bad.push((file, why)),
        }
    }
    Ok((cases, bad))
}

/// Leaves out what a plan would: an interface's untagged VLAN whose VID `vids` (the recorded
/// NetBox's VLANs, [`super::record::recorded_vlans`]) does not resolve, and an interface update
/// left with nothing in it, so a replay predicts the plan the recorded run would have made.
pub fn leave_out_unknown_vlans(answers: &mut [Answer], vids: &BTreeSet<u64>) {
    for answer in answers {
        let Answer::Vm { children, .. } = answer else {
            continue;
        };
        children.retain_mut(|child| {
            let unknown = |c: &FieldChange| {
                c.field == "untagged_vlan"
                    && c.new
                        .to_value()
                        .as_u64()
                        .is_some_and(|vid| !vids.contains(&vid))
            };
            if !child.changes.iter().any(unknown) {
                return true;
            }
            child.changes.retain(|c| !unknown(c));
            !(child.changes.is_empty() && matches!(child.op, ChildOp::Update(_)))
        });
    }
}

/// A module's answer for one case.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Vm {
        name: Option<String>,
        needs: Vec<ObjectSpec>,
        changes: Vec<FieldChange>,
        /// The child changes (interfaces, MAC and IP addresses, virtual disks; WIT 0.3).
        children: Vec<ChildChange>,
    },
    Skip(String),
    /// A rule error the module returned.
    Error {
        code: String,
        message: String,
    },
    /// The call itself failed for this VM (trap, limit): the message names the function.
    Failed(String),
}

impl Answer {
    fn from_result(r: Result<Reconciled, guest_default::model::RuleError>) -> Answer {
        match r {
            Ok(Reconciled::Vm(vm)) => Answer::Vm {
                name: vm.name,
                needs: vm.needs,
                changes: vm.changes,
                children: vm.children,
            },
            Ok(Reconciled::Skip(reason)) => Answer::Skip(reason),
            Err(e) => Answer::Error {
                code: e.code,
                message: e.message,
            },
        }
    }

    /// The word of its class for a VM with (`has_record`) or without a NetBox record.
    pub fn class(&self, has_record: bool) -> &'static str {
        match self {
            Answer::Vm { .. } if !has_record => "create",
            Answer::Vm {
                changes, children, ..
            } if changes.is_empty() && children.is_empty() => "noop",
            Answer::Vm { .. } => "update",
            Answer::Skip(_) => "skip",
            Answer::Error { .. } | Answer::Failed(_) => "error",
        }
    }

    /// As JSON: `{"name","needs","changes"}` (and `"children"` when there are child changes),
    /// `{"skip"}`, `{"error":{"code","message"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Answer::Vm {
                name,
                needs,
                changes,
                children,
            } => {
                let mut vm = json!({ "name": name, "needs": needs, "changes": changes });
                if !children.is_empty() {
                    vm["children"] = json!(children);
                }
                vm
            }
            Answer::Skip(reason) => json!({ "skip": reason }),
            Answer::Error { code, message } => {
                json!({ "error": { "code": code, "message": message } })
            }
            Answer::Failed(message) => {
                json!({ "error": { "code": "call-failed", "message": message } })
            }
        }
    }
}

/// Runs every case through `module`'s `reconcile`, `batch` cases per call, grouped by their
/// context (a recording has one). A failed batch is retried one case at a time, so only the
/// cases that fail alone fail; their message names the file, the VM and the function.
pub fn run(module: &RulesModule, cases: &[Case], batch: usize) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = vec![None; cases.len()];
    // Distinct contexts, each with the indices of its cases (in order).
    let mut groups: Vec<(&Context, Vec<usize>)> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(ctx, _)| **ctx == c.fixture.context)
        {
            Some((_, idx)) => idx.push(i),
            None => groups.push((&c.fixture.context, vec![i])),
        }
    }
    for (ctx, indices) in groups {
        let ctx = match effective_context(module, ctx) {
            Ok(ctx) => ctx,
            Err(e) => {
                for &i in &indices {
                    answers[i] = Some(Answer::Failed(format!(
                        "{}: default-policies: {e}",
                        cases[i].file
                    )));
                }
                continue;
            }
        };
        let input = |i: usize| ReconcileInput {
            guest: cases[i].fixture.guest.clone(),
            current: cases[i].fixture.current.clone(),
            network: cases[i].fixture.network.clone().unwrap_or_default(),
            children: cases[i].fixture.children.clone(),
        };
        for chunk in indices.chunks(batch.max(1)) {
            match module.reconcile(&ctx, chunk.iter().map(|&i| input(i)).collect()) {
                Ok(out) => {
                    for (&i, a) in chunk.iter().zip(out.items) {
                        answers[i] = Some(Answer::from_result(a));
                    }
                }
                Err(_) => {
                    for &i in chunk {
                        answers[i] = Some(match module.reconcile(&ctx, vec![input(i)]) {
                            Ok(out) => out.items.into_iter().next().map_or_else(
                                || Answer::Failed("reconcile returned no result".into()),
                                Answer::from_result,
                            ),
                            Err(e) => Answer::Failed(format!(
                                "fixture {}, VM {}, function reconcile: {e}",
                                cases[i].file,
                                cases[i].scope()
                            )),
                        });
                    }
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Answer::Failed("not replayed".into())))
        .collect()
}

/// The rules' part of the plan over a replay: counts per class, per field, and the objects
/// needed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PlanSummary {
    pub vms: usize,
    pub counts: BTreeMap<&'static str, usize>,
    /// Field -> VMs whose answer changes it.
    pub fields: BTreeMap<String, usize>,
    /// `kind/key` of each distinct object needed -> VMs needing it.
    pub needs: BTreeMap<String, usize>,
}

/// The classes of a replayed VM, in the order they are printed.
pub const CLASSES: [&str; 5] = ["create", "update", "noop", "skip", "error"];

/// Summarizes `answers` (in the order of `cases`).
pub fn summarize(cases: &[Case], answers: &[Answer]) -> PlanSummary {
    let mut s = PlanSummary {
        vms: cases.len(),
        ..PlanSummary::default()
    };
    for class in CLASSES {
        s.counts.insert(class, 0);
    }
    for (case, answer) in cases.iter().zip(answers) {
        *s.counts
            .entry(answer.class(case.fixture.current.is_some()))
            .or_default() += 1;
        if let Answer::Vm { needs, changes, .. } = answer {
            for c in changes {
                *s.fields.entry(c.field.clone()).or_default() += 1;
            }
            for n in needs {
                *s.needs.entry(format!("{}/{}", n.kind, n.key)).or_default() += 1;
            }
        }
    }
    s
}

/// Where two modules disagree about one VM.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VmDifference {
    pub file: String,
    pub scope: String,
    /// The kinds of disagreement: `fields`, `children`, `needs`, `name`, `skip`, `error`,
    /// `other`.
    pub kinds: Vec<&'static str>,
    /// Fields whose change differs: field -> (old module's change, new module's change);
    /// `null` where a module changes nothing.
    pub fields: BTreeMap<String, [serde_json::Value; 2]>,
    /// Child changes that differ, by child and field.
    pub children: Vec<ChildDifference>,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// The kinds of disagreement, in the order they are reported.
pub const KINDS: [&str; 7] = [
    "fields", "children", "needs", "name", "skip", "error", "other",
];

/// Where two modules' changes of one child differ: one changes a field of it the other does
/// not, or the same field differently (`field` is that field), or only one of them creates,
/// updates or deletes the child, or they do different things with it (`field` is `op`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChildDifference {
    /// `interface`, `mac-address`, `ip-address` or `virtual-disk`.
    pub kind: String,
    /// The child's key (its name, address or MAC).
    pub key: String,
    pub field: String,
    /// The old and the new module's side: for a field `{"old","new"}` or `null` (no change of
    /// it); for `op` the child change (`{"op","parent","changes"}`) or `null` (none).
    pub sides: [serde_json::Value; 2],
}

impl ChildDifference {
    /// `kind field`, the key its VMs are counted under.
    pub fn total_key(&self) -> String {
        format!("{} {}", self.kind, self.field)
    }
}

/// The word of a child kind as the WIT's friendly JSON spells it.
fn kind_word(c: &ChildChange) -> String {
    match serde_json::to_value(c.kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{:?}", c.kind),
    }
}

/// Child changes by (kind, key).
fn by_child(c: &[ChildChange]) -> BTreeMap<(String, &str), &ChildChange> {
    c.iter()
        .map(|c| ((kind_word(c), c.key.as_str()), c))
        .collect()
}

/// One side of a field change: `{"old","new"}`, `null` for none.
fn field_side(c: Option<&FieldChange>) -> serde_json::Value {
    c.map_or(
        serde_json::Value::Null,
        |c| serde_json::json!({ "old": c.old, "new": c.new }),
    )
}

fn same_change(x: &FieldChange, y: &FieldChange) -> bool {
    x.field == y.field && json_text_eq(&x.old.0, &y.old.0) && json_text_eq(&x.new.0, &y.new.0)
}

/// Field changes by field; the differing fields with both sides.
fn field_differences(
    a: &[FieldChange],
    b: &[FieldChange],
) -> Vec<(String, [serde_json::Value; 2])> {
    let by_field = |c: &[FieldChange]| -> BTreeMap<String, FieldChange> {
        c.iter().map(|c| (c.field.clone(), c.clone())).collect()
    };
    let (a, b) = (by_field(a), by_field(b));
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for field in a.keys().chain(b.keys()) {
        if !seen.insert(field) {
            continue;
        }
        let (x, y) = (a.get(field), b.get(field));
        let same = match (x, y) {
            (Some(x), Some(y)) => same_change(x, y),
            (None, None) => true,
            _ => false,
        };
        if !same {
            out.push((field.clone(), [field_side(x), field_side(y)]));
        }
    }
    out
}

/// Where two lists of child changes differ, child by child (in any order).
fn child_differences(a: &[ChildChange], b: &[ChildChange]) -> Vec<ChildDifference> {
    let (a, b) = (by_child(a), by_child(b));
    let mut keys: Vec<&(String, &str)> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let whole = |c: Option<&&ChildChange>| {
        c.map_or(
            serde_json::Value::Null,
            |c| serde_json::json!({ "op": c.op, "parent": c.parent, "changes": c.changes }),
        )
    };
    let mut out = Vec::new();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        let diff = |field: String, sides| ChildDifference {
            kind: k.0.clone(),
            key: k.1.to_owned(),
            field,
            sides,
        };
        match (x, y) {
            (Some(x), Some(y)) if x.op == y.op && x.parent == y.parent => {
                for (field, sides) in field_differences(&x.changes, &y.changes) {
                    out.push(diff(field, sides));
                }
            }
            _ => out.push(diff("op".to_owned(), [whole(x), whole(y)])),
        }
    }
    out
}

/// Compares two answers for one case; `None` when they agree.
pub fn compare(case: &Case, old: &Answer, new: &Answer) -> Option<VmDifference> {
    if same_answer(old, new) {
        return None;
    }
    let mut kinds = Vec::new();
    let mut fields = BTreeMap::new();
    let mut children = Vec::new();
    match (old, new) {
        (
            Answer::Vm {
                name: n1,
                needs: d1,
                changes: c1,
                children: k1,
            },
            Answer::Vm {
                name: n2,
                needs: d2,
                changes: c2,
                children: k2,
            },
        ) => {
            fields.extend(field_differences(c1, c2));
            if !fields.is_empty() {
                kinds.push("fields");
            }
            children = child_differences(k1, k2);
            if !children.is_empty() {
                kinds.push("children");
            }
            if !same_needs(d1, d2) {
                kinds.push("needs");
            }
            if n1 != n2 {
                kinds.push("name");
            }
            if kinds.is_empty() {
                // Same fields in another order, or parts a newer answer carries.
                kinds.push("other");
            }
        }
        (Answer::Skip(_), _) | (_, Answer::Skip(_))
            if !matches!(old, Answer::Error { .. } | Answer::Failed(_))
                && !matches!(new, Answer::Error { .. } | Answer::Failed(_)) =>
        {
            kinds.push("skip")
        }
        _ => kinds.push("error"),
    }
    Some(VmDifference {
        file: case.file.clone(),
        scope: case.scope(),
        kinds,
        fields,
        children,
        old: old.to_json(),
        new: new.to_json(),
    })
}

fn same_needs(a: &[ObjectSpec], b: &[ObjectSpec]) -> bool {
    let key = |v: &[ObjectSpec]| {
        let mut k: Vec<String> = v
            .iter()
            .map(|o| serde_json::to_string(o).unwrap_or_default())
            .collect();
        k.sort();
        k
    };
    key(a) == key(b)
}

fn same_answer(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (
            Answer::Vm {
                name: n1,
                needs: d1,
                changes: c1,
                children: k1,
            },
            Answer::Vm {
                name: n2,
                needs: d2,
                changes: c2,
                children: k2,
            },
        ) => {
            n1 == n2
                && same_needs(d1, d2)
                && c1.len() == c2.len()
                && c1.iter().zip(c2).all(|(x, y)| same_change(x, y))
                && child_differences(k1, k2).is_empty()
        }
        // Rule errors agree on their code; the message may name the module.
        (Answer::Error { code: c1, .. }, Answer::Error { code: c2, .. }) => c1 == c2,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_default::model::{Guest, JsonText};

    fn case() -> Case {
        let guest: Guest = serde_json::from_value(serde_json::json!({
            "cluster": "pve", "node": "n1", "vmid": 100, "type": "qemu", "name": "web",
            "status": "running", "config": {}
        }))
        .unwrap();
        Case {
            file: "pve-100.json".into(),
            fixture: Fixture {
                description: String::new(),
                guest,
                current: None,
                context: Context::default(),
                network: None,
                children: None,
                expect: Default::default(),
            },
        }
    }

    fn vm(changes: &[(&str, &str, &str)]) -> Answer {
        Answer::Vm {
            name: Some("web".into()),
            needs: Vec::new(),
            changes: changes
                .iter()
                .map(|(f, o, n)| FieldChange {
                    field: (*f).into(),
                    old: JsonText((*o).into()),
                    new: JsonText((*n).into()),
                })
                .collect(),
            children: Vec::new(),
        }
    }

    fn with_children(answer: Answer, children: serde_json::Value) -> Answer {
        match answer {
            Answer::Vm {
                name,
                needs,
                changes,
                ..
            } => Answer::Vm {
                name,
                needs,
                changes,
                children: serde_json::from_value(children).unwrap(),
            },
            other => other,
        }
    }

    #[test]
    fn an_untagged_vlan_the_recorded_netbox_lacked_is_left_out_as_the_plan_does() {
        let nic = |key: &str, op: serde_json::Value, vid: u64| {
            serde_json::json!({"kind": "interface", "key": key, "op": op,
                   "changes": [{"field": "untagged_vlan", "old": null, "new": vid},
                               {"field": "mtu", "old": null, "new": 1500}]})
        };
        let mut answers = vec![with_children(
            vm(&[]),
            serde_json::json!([
                // Known VID: kept whole.
                nic("net0", serde_json::json!({"update": 4}), 10),
                // Unknown VID on an update: the VLAN goes, the MTU stays.
                nic("net1", serde_json::json!({"update": 5}), 75),
                // Unknown VID, nothing else: the update goes.
                {"kind": "interface", "key": "net2", "op": {"update": 6},
                 "changes": [{"field": "untagged_vlan", "old": null, "new": 75}]},
                // A create keeps its other fields and stays.
                {"kind": "interface", "key": "net3", "op": "create",
                 "changes": [{"field": "untagged_vlan", "old": null, "new": 75}]},
            ]),
        )];
        leave_out_unknown_vlans(&mut answers, &BTreeSet::from([10]));
        let Answer::Vm { children, .. } = &answers[0] else {
            panic!("a VM answer")
        };
        let keys: Vec<&str> = children.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["net0", "net1", "net3"]);
        assert_eq!(children[0].changes.len(), 2);
        assert_eq!(children[1].changes.len(), 1);
        assert_eq!(children[1].changes[0].field, "mtu");
        assert!(children[2].changes.is_empty());
    }

    #[test]
    fn child_changes_differ_by_child_and_field() {
        let c = case();
        let old = with_children(
            vm(&[]),
            serde_json::json!([
                {"kind": "interface", "key": "net0", "op": {"update": 7},
                 "changes": [{"field": "mtu", "old": 1500, "new": 9000}]},
                {"kind": "ip-address", "key": "10.0.0.5/24", "parent": "net0", "op": "create",
                 "changes": [{"field": "vrf", "old": null, "new": "guests"}]},
                {"kind": "virtual-disk", "key": "scsi0", "op": {"update": 3},
                 "changes": [{"field": "size", "old": 1000, "new": 2000}]}
            ]),
        );
        // The same child changes in another order agree; numbers compare as values.
        let reordered = with_children(
            vm(&[]),
            serde_json::json!([
                {"kind": "virtual-disk", "key": "scsi0", "op": {"update": 3},
                 "changes": [{"field": "size", "old": 1000.0, "new": 2000}]},
                {"kind": "ip-address", "key": "10.0.0.5/24", "parent": "net0", "op": "create",
                 "changes": [{"field": "vrf", "old": null, "new": "guests"}]},
                {"kind": "interface", "key": "net0", "op": {"update": 7},
                 "changes": [{"field": "mtu", "old": 1500, "new": 9000}]}
            ]),
        );
        assert_eq!(compare(&c, &old, &reordered), None);
        let new = with_children(
            vm(&[]),
            serde_json::json!([
                {"kind": "interface", "key": "net0", "op": {"update": 7},
                 "changes": [{"field": "mtu", "old": 1500, "new": 9000},
                             {"field": "description", "old": "", "new": "uplink"}]},
                {"kind": "ip-address", "key": "10.0.0.5/24", "parent": "net0", "op": "create",
                 "changes": [{"field": "vrf", "old": null, "new": "blue"}]},
                {"kind": "mac-address", "key": "bc:24:11:00:00:01", "op": "create"}
            ]),
        );
        let d = compare(&c, &old, &new).expect("differs");
        assert_eq!(d.kinds, ["children"]);
        assert!(d.fields.is_empty());
        let got: Vec<(String, String, String)> = d
            .children
            .iter()
            .map(|x| (x.kind.clone(), x.key.clone(), x.field.clone()))
            .collect();
        let want = [
            ("interface", "net0", "description"),
            ("ip-address", "10.0.0.5/24", "vrf"),
            ("mac-address", "bc:24:11:00:00:01", "op"),
            ("virtual-disk", "scsi0", "op"),
        ]
        .map(|(k, key, f)| (k.to_owned(), key.to_owned(), f.to_owned()));
        assert_eq!(got, want);
        // Both sides are shown: a field's change or null, a child's whole change or null.
        assert!(d.children[0].sides[0].is_null());
        assert_eq!(d.children[0].sides[1]["new"], "uplink");
        assert_eq!(d.children[1].sides[0]["new"], "guests");
        assert_eq!(d.children[1].sides[1]["new"], "blue");
        assert!(d.children[2].sides[0].is_null());
        assert_eq!(d.children[2].sides[1]["op"], "create");
        assert_eq!(d.children[3].sides[0]["op"]["update"], 3);
        assert!(d.children[3].sides[1].is_null());
        assert_eq!(d.children[1].total_key(), "ip-address vrf");
        // A VM whose only changes are its children's is an update, not a noop.
        assert_eq!(new.class(true), "update");
        assert_eq!(vm(&[]).class(true), "noop");
    }

    #[test]
    fn equal_answers_agree_and_numbers_compare_as_values() {
        let c = case();
        assert_eq!(
            compare(
                &c,
                &vm(&[("memory", "1024", "2048")]),
                &vm(&[("memory", "1024", "2048.0")])
            ),
            None
        );
    }

    #[test]
    fn a_changed_field_is_named_with_both_sides() {
        let c = case();
        let d = compare(
            &c,
            &vm(&[("memory", "1024", "2048")]),
            &vm(&[("memory", "1024", "2048"), ("tenant", "null", "\"acme\"")]),
        )
        .expect("differs");
        assert_eq!(d.kinds, ["fields"]);
        assert_eq!(d.fields.len(), 1);
        assert!(d.fields["tenant"][0].is_null(), "{:?}", d.fields);
        assert_eq!(d.fields["tenant"][1]["new"], "acme");
    }

    #[test]
    fn skips_and_errors_are_their_own_kinds() {
        let c = case();
        let skip = Answer::Skip("template".into());
        let err = Answer::Error {
            code: "bad-setting".into(),
            message: "x".into(),
        };
        assert_eq!(compare(&c, &vm(&[]), &skip).unwrap().kinds, ["skip"]);
        assert_eq!(compare(&c, &skip, &err).unwrap().kinds, ["error"]);
        let same_code = Answer::Error {
            code: "bad-setting".into(),
            message: "other words".into(),
        };
        assert_eq!(compare(&c, &err, &same_code), None);
    }

    #[test]
    fn the_summary_counts_classes_fields_and_needs() {
        let mut with_record = case();
        with_record.fixture.current = Some(
            serde_json::from_value(
                serde_json::json!({"id": 1, "name": "web", "status": {"value": "active"}}),
            )
            .unwrap(),
        );
        let cases = vec![case(), with_record.clone(), with_record];
        let answers = vec![
            vm(&[]),
            vm(&[("memory", "1", "2")]),
            Answer::Skip("template".into()),
        ];
        let s = summarize(&cases, &answers);
        assert_eq!(s.counts["create"], 1);
        assert_eq!(s.counts["update"], 1);
        assert_eq!(s.counts["skip"], 1);
        assert_eq!(s.counts["noop"], 0);
        assert_eq!(s.fields["memory"], 1);
    }
}
