//! `pve2netbox rules replay FILE DIR` and `pve2netbox rules diff OLD NEW DIR`: a module over a
//! recording (`sync --record DIR`) or any fixture directory, printed for people (`text`) or
//! tools (`json`). The work is in [`crate::rules::replay`]; this module reads and prints.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::OutputFormat;
use super::rules_cmd::{RuntimeArgs, load};
use crate::rules::record::{fixtures_dir, read_manifest, recorded_context, recorded_vlans};
use crate::rules::replay::{self, Answer, Case, KINDS, VmDifference};
use crate::rules::{Metering, RulesModule};

/// A module's answers over the cases of DIR, less what the recorded run's plan would have left
/// out (an untagged VLAN its NetBox lacked).
fn answers(module: &RulesModule, cases: &[Case], batch: usize, dir: &Path) -> Vec<Answer> {
    let mut answers = replay::run(module, cases, batch);
    if let Some(vids) = recorded_vlans(dir) {
        replay::leave_out_unknown_vlans(&mut answers, &vids);
    }
    answers
}

/// The cases of DIR, with a line saying what they are; unreadable files are reported on
/// stderr and left out (the others replay).
fn cases(dir: &Path) -> anyhow::Result<(Vec<Case>, String)> {
    let fixtures = fixtures_dir(dir);
    let (cases, bad) = replay::load_cases(&fixtures, recorded_context(dir).as_ref())
        .with_context(|| format!("reading fixture directory {}", fixtures.display()))?;
    for (file, why) in &bad {
        eprintln!("warning: {file}: not a fixture, left out: {why}");
    }
    if cases.is_empty() {
        anyhow::bail!("no fixture files (*.json) in {}", fixtures.display());
    }
    let from = match read_manifest(dir) {
        Some(m) => format!(
            "{} VMs recorded by `{}` at {} with {} {}",
            cases.len(),
            m.mode,
            m.recorded_at,
            m.module.name,
            m.module.version
        ),
        None => format!("{} fixtures", cases.len()),
    };
    Ok((cases, format!("{from} from {}", dir.display())))
}

fn label(module: &RulesModule) -> String {
    format!(
        "{} ({} {})",
        module.source(),
        module.info().name,
        module.info().version
    )
}

/// One answer's changes, one line each: `field: old -> new`.
fn change_lines(answer: &Answer, out: &mut String) {
    match answer {
        Answer::Vm {
            needs,
            changes,
            children,
            ..
        } => {
            for c in changes {
                let _ = writeln!(out, "      {}: {} -> {}", c.field, c.old.0, c.new.0);
            }
            for c in children {
                let _ = writeln!(
                    out,
                    "      {} {}: {}",
                    serde_json::to_value(c.kind).unwrap_or_default(),
                    c.key,
                    serde_json::to_value(c.op).unwrap_or_default()
                );
                for f in &c.changes {
                    let _ = writeln!(out, "        {}: {} -> {}", f.field, f.old.0, f.new.0);
                }
            }
            for n in needs {
                let _ = writeln!(out, "      needs {} {:?}", n.kind, n.key);
            }
        }
        Answer::Skip(reason) => {
            let _ = writeln!(out, "      skip: {reason}");
        }
        Answer::Error { code, message } => {
            let _ = writeln!(out, "      rule error {code}: {message}");
        }
        Answer::Failed(message) => {
            let _ = writeln!(out, "      failed: {message}");
        }
    }
}

/// `rules replay`.
pub fn replay(
    file: &str,
    dir: &Path,
    output: OutputFormat,
    examples: usize,
    batch: usize,
    args: &RuntimeArgs,
) -> anyhow::Result<ExitCode> {
    let (cases, from) = cases(dir)?;
    let (_runtime, module) = load(file, args, Metering::Deadline)?;
    let answers = answers(&module, &cases, batch, dir);
    let summary = replay::summarize(&cases, &answers);
    if output == OutputFormat::Json {
        let vms: Vec<serde_json::Value> = cases
            .iter()
            .zip(&answers)
            .map(|(c, a)| {
                serde_json::json!({
                    "file": c.file,
                    "scope": c.scope(),
                    "class": a.class(c.fixture.current.is_some()),
                    "answer": a.to_json(),
                })
            })
            .collect();
        let report = serde_json::json!({
            "module": crate::rules::record::recorded_module(&module),
            "dir": dir.display().to_string(),
            "summary": summary,
            "vms": vms,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(out, "replaying {from}\nthrough {}", label(&module));
    let counts: Vec<String> = replay::CLASSES
        .iter()
        .map(|k| format!("{} {k}", summary.counts.get(k).copied().unwrap_or(0)))
        .collect();
    let _ = writeln!(out, "\nplan: {}", counts.join(", "));
    if !summary.fields.is_empty() {
        let fields: Vec<String> = summary
            .fields
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "fields changed (VMs): {}", fields.join(", "));
    }
    if !summary.needs.is_empty() {
        let needs: Vec<String> = summary
            .needs
            .iter()
            .map(|(k, v)| format!("{k} ({v} VMs)"))
            .collect();
        let _ = writeln!(out, "objects needed: {}", needs.join(", "));
    }
    for class in ["create", "update", "skip", "error"] {
        let of_class: Vec<(&Case, &Answer)> = cases
            .iter()
            .zip(&answers)
            .filter(|(c, a)| a.class(c.fixture.current.is_some()) == class)
            .collect();
        if of_class.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{class} ({}{}):",
            of_class.len(),
            if of_class.len() > examples {
                format!(", the first {examples}; --output json lists all")
            } else {
                String::new()
            }
        );
        for (c, a) in of_class.into_iter().take(examples) {
            let name = match a {
                Answer::Vm { name: Some(n), .. } => n.clone(),
                _ => c.fixture.guest.name.clone().unwrap_or_default(),
            };
            let _ = writeln!(out, "  {} {name}  ({})", c.scope(), c.file);
            change_lines(a, &mut out);
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `rules diff`: exit 2 when the modules differ on any VM.
pub fn diff(
    old: &str,
    new: &str,
    dir: &Path,
    output: OutputFormat,
    examples: usize,
    batch: usize,
    args: &RuntimeArgs,
) -> anyhow::Result<ExitCode> {
    let (cases, from) = cases(dir)?;
    let (_old_runtime, old_module) = load(old, args, Metering::Deadline).context("loading OLD")?;
    let (_new_runtime, new_module) = load(new, args, Metering::Deadline).context("loading NEW")?;
    let old_answers = answers(&old_module, &cases, batch, dir);
    let new_answers = answers(&new_module, &cases, batch, dir);
    let differences: Vec<VmDifference> = cases
        .iter()
        .zip(old_answers.iter().zip(&new_answers))
        .filter_map(|(c, (a, b))| replay::compare(c, a, b))
        .collect();
    let mut by_kind: std::collections::BTreeMap<&str, usize> =
        KINDS.iter().map(|k| (*k, 0)).collect();
    let mut by_field: std::collections::BTreeMap<&str, usize> = Default::default();
    // `kind field` of a child -> VMs where it differs.
    let mut by_child: std::collections::BTreeMap<String, usize> = Default::default();
    for d in &differences {
        for k in &d.kinds {
            *by_kind.entry(k).or_default() += 1;
        }
        for f in d.fields.keys() {
            *by_field.entry(f).or_default() += 1;
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &d.children {
            if seen.insert(c.total_key()) {
                *by_child.entry(c.total_key()).or_default() += 1;
            }
        }
    }
    let code = if differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    };
    if output == OutputFormat::Json {
        let report = serde_json::json!({
            "old": crate::rules::record::recorded_module(&old_module),
            "new": crate::rules::record::recorded_module(&new_module),
            "dir": dir.display().to_string(),
            "vms": cases.len(),
            "differ": differences.len(),
            "kinds": by_kind,
            "fields": by_field,
            "children": by_child,
            "differences": differences,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(code);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "comparing over {from}\n  old: {}\n  new: {}",
        label(&old_module),
        label(&new_module)
    );
    if differences.is_empty() {
        let _ = writeln!(
            out,
            "\nthe modules agree on all {} VMs (same changes, needs, names, skips and errors)",
            cases.len()
        );
        print!("{out}");
        return Ok(code);
    }
    let kinds: Vec<String> = KINDS
        .iter()
        .map(|k| format!("{k} {}", by_kind.get(k).copied().unwrap_or(0)))
        .collect();
    let _ = writeln!(
        out,
        "\n{} of {} VMs differ: {}",
        differences.len(),
        cases.len(),
        kinds.join(", ")
    );
    if !by_field.is_empty() {
        let fields: Vec<String> = by_field.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "fields (VMs): {}", fields.join(", "));
    }
    if !by_child.is_empty() {
        let children: Vec<String> = by_child.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "children (VMs): {}", children.join(", "));
    }
    for kind in KINDS {
        let of_kind: Vec<&VmDifference> = differences
            .iter()
            .filter(|d| d.kinds.contains(&kind))
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{kind} ({} VMs{}):",
            of_kind.len(),
            if of_kind.len() > examples {
                format!(", the first {examples}; --output json lists all")
            } else {
                String::new()
            }
        );
        for d in of_kind.into_iter().take(examples) {
            let _ = writeln!(out, "  {}  ({})", d.scope, d.file);
            if kind == "fields" {
                for (field, [a, b]) in &d.fields {
                    let _ = writeln!(out, "      {field}: old {} | new {}", side(a), side(b));
                }
            } else if kind == "children" {
                for c in &d.children {
                    let [a, b] = &c.sides;
                    let (a, b) = if c.field == "op" {
                        (child_side(a), child_side(b))
                    } else {
                        (side(a), side(b))
                    };
                    let _ = writeln!(
                        out,
                        "      {} {} {}: old {a} | new {b}",
                        c.kind, c.key, c.field
                    );
                }
            } else {
                let _ = writeln!(out, "      old: {}", d.old);
                let _ = writeln!(out, "      new: {}", d.new);
            }
        }
    }
    print!("{out}");
    Ok(code)
}

/// One module's change of a whole child: its op and changes, or `no change`.
fn child_side(v: &serde_json::Value) -> String {
    if v.is_null() {
        "no change".to_owned()
    } else {
        let changes: Vec<String> = v["changes"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| format!("{} {} -> {}", c["field"], c["old"], c["new"]))
                    .collect()
            })
            .unwrap_or_default();
        if changes.is_empty() {
            v["op"].to_string()
        } else {
            format!("{} ({})", v["op"], changes.join(", "))
        }
    }
}

/// One module's change of a field: `a -> b`, or `no change`.
fn side(v: &serde_json::Value) -> String {
    if v.is_null() {
        "no change".to_owned()
    } else {
        format!("{} -> {}", v["old"], v["new"])
    }
}
