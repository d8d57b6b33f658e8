//! Replaying fixtures (a recording of `sync --record`, or any fixture directory) through a
//! module, the way the sync calls it (`reconcile` in batches), and comparing two modules'
//! answers VM by VM: what `rules replay` and `rules diff` print.
//!
//! Edges: it reads fixture files and calls [`RulesModule::reconcile`]; it knows nothing of
//! Proxmox, NetBox or the rest of the plan (adoption, names, orphans), so its classes are the
//! rules' part of a plan: create (no NetBox record), update, noop, skip, error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// Reads every `*.json` fixture of `dir` (sorted by name). Files that do not parse are
/// returned apart, with why, and the others replay.
pub fn load_cases(dir: &Path) -> std::io::Result<(Vec<Case>, Vec<NotAFixture>)> {
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
            .and_then(|t| Fixture::from_json(&t).map_err(|e| e.to_string()))
        {
            Ok(fixture) => cases.push(Case { file, fixture }),
            Err(why) => bad.push((file, why)),
        }
    }
    Ok((cases, bad))
}

/// A module's answer for one case.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Vm {
        name: Option<String>,
        needs: Vec<ObjectSpec>,
        changes: Vec<FieldChange>,
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
            Answer::Vm { changes, .. } if changes.is_empty() => "noop",
            Answer::Vm { .. } => "update",
            Answer::Skip(_) => "skip",
            Answer::Error { .. } | Answer::Failed(_) => "error",
        }
    }

    /// As JSON: `{"name","needs","changes"}`, `{"skip"}`, `{"error":{"code","message"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Answer::Vm {
                name,
                needs,
                changes,
            } => json!({ "name": name, "needs": needs, "changes": changes }),
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
    /// The kinds of disagreement: `fields`, `needs`, `name`, `skip`, `error`, `other`.
    pub kinds: Vec<&'static str>,
    /// Fields whose change differs: field -> (old module's change, new module's change);
    /// `null` where a module changes nothing.
    pub fields: BTreeMap<String, [serde_json::Value; 2]>,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// The kinds of disagreement, in the order they are reported.
pub const KINDS: [&str; 6] = ["fields", "needs", "name", "skip", "error", "other"];

/// Compares two answers for one case; `None` when they agree.
pub fn compare(case: &Case, old: &Answer, new: &Answer) -> Option<VmDifference> {
    if same_answer(old, new) {
        return None;
    }
    let mut kinds = Vec::new();
    let mut fields = BTreeMap::new();
    match (old, new) {
        (
            Answer::Vm {
                name: n1,
                needs: d1,
                changes: c1,
            },
            Answer::Vm {
                name: n2,
                needs: d2,
                changes: c2,
            },
        ) => {
            let by_field = |c: &[FieldChange]| -> BTreeMap<String, FieldChange> {
                c.iter().map(|c| (c.field.clone(), c.clone())).collect()
            };
            let (a, b) = (by_field(c1), by_field(c2));
            for field in a.keys().chain(b.keys()) {
                let (x, y) = (a.get(field), b.get(field));
                let same = match (x, y) {
                    (Some(x), Some(y)) => {
                        json_text_eq(&x.old.0, &y.old.0) && json_text_eq(&x.new.0, &y.new.0)
                    }
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    let show = |c: Option<&FieldChange>| {
                        c.map_or(
                            serde_json::Value::Null,
                            |c| serde_json::json!({ "old": c.old, "new": c.new }),
                        )
                    };
                    fields.insert(field.clone(), [show(x), show(y)]);
                }
            }
            if !fields.is_empty() {
                kinds.push("fields");
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
            },
            Answer::Vm {
                name: n2,
                needs: d2,
                changes: c2,
            },
        ) => {
            n1 == n2
                && same_needs(d1, d2)
                && c1.len() == c2.len()
                && c1.iter().zip(c2).all(|(x, y)| {
                    x.field == y.field
                        && json_text_eq(&x.old.0, &y.old.0)
                        && json_text_eq(&x.new.0, &y.new.0)
                })
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
        }
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
