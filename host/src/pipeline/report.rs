//! The run report: the one JSON object of DESIGN.md ("Command line and outputs"), its text
//! rendering for people, and the exit-code rule.
//!
//! Pure data: the I/O phases fill in `requests` and `phases_ms`, the plan fills in `counts` and
//! the per-VM and per-scope `errors` (see [`RunReport::from_plan`]); printing is the CLI's job.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::pipeline::plan::Plan;

/// Version of the JSON report's shape; bumped on any incompatible change.
pub const REPORT_VERSION: u32 = 1;

/// Exit code: success with nothing left to do.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run could not do its job (config, preflight, NetBox unreachable, ...).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: `plan` or `sync --dry-run` found changes to make.
pub const EXIT_CHANGES: u8 = 2;
/// Exit code: the run finished, but some VMs or scopes failed.
pub const EXIT_PARTIAL: u8 = 3;

/// What kind of run produced the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Sync,
    DryRun,
    Plan,
    Apply,
    Demo,
}

impl Mode {
    /// The JSON spelling (`dry-run`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::DryRun => "dry-run",
            Mode::Plan => "plan",
            Mode::Apply => "apply",
            Mode::Demo => "demo",
        }
    }

    /// True for the modes that only compute what would change.
    pub fn is_preview(self) -> bool {
        matches!(self, Mode::DryRun | Mode::Plan)
    }
}

/// VMs per classification. `orphan` counts managed VMs found missing from a fully read scope,
/// whatever the orphan policy did with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counts {
    pub noop: u64,
    pub create: u64,
    pub update: u64,
    pub adopt: u64,
    pub orphan: u64,
    pub skip: u64,
    pub error: u64,
}

/// HTTP requests made, per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Requests {
    pub proxmox: u64,
    pub netbox_read: u64,
    pub netbox_write: u64,
    /// Milliseconds the NetBox client chose to wait before retries (`Retry-After` or backoff):
    /// shows a `Retry-After` was honoured without timing the run.
    #[serde(default)]
    pub netbox_retry_wait_ms: u64,
}

/// Wall time per phase, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PhasesMs {
    pub preflight: u64,
    pub proxmox_read: u64,
    pub netbox_snapshot: u64,
    pub reconcile: u64,
    pub dispatch: u64,
    pub task_history: u64,
    pub total: u64,
}

/// The rule module that computed the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RulesInfo {
    pub name: String,
    pub version: String,
    pub wit: String,
}

/// What the no-op memo answered this run (all zero with `--no-memo` or without a memo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MemoCounts {
    /// VMs whose rules call the memo answered: inputs byte-for-byte those of a stored "no changes".
    pub hits: u64,
}

/// One problem, against the scope it concerns: `cluster`, `cluster/node` or `cluster/node/vmid`
/// (`run` for the whole run, e.g. a refused delete budget).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    pub scope: String,
    /// `preflight`, `proxmox_read`, `netbox_snapshot`, `reconcile`, `dispatch`, `task_history`.
    pub phase: String,
    pub message: String,
}

impl ErrorEntry {
    pub fn new(scope: impl Into<String>, phase: &str, message: impl Into<String>) -> Self {
        ErrorEntry {
            scope: scope.into(),
            phase: phase.to_owned(),
            message: message.into(),
        }
    }
}

/// The run report, exactly the JSON shape of DESIGN.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub report_version: u32,
    pub mode: Mode,
    pub counts: Counts,
    pub requests: Requests,
    pub phases_ms: PhasesMs,
    pub rules: RulesInfo,
    #[serde(default)]
    pub memo: MemoCounts,
    pub errors: Vec<ErrorEntry>,
}

impl RunReport {
    /// An empty report for `mode`.
    pub fn new(mode: Mode) -> Self {
        RunReport {
            report_version: REPORT_VERSION,
            mode,
            counts: Counts::default(),
            requests: Requests::default(),
            phases_ms: PhasesMs::default(),
            rules: RulesInfo::default(),
            memo: MemoCounts::default(),
            errors: Vec::new(),
        }
    }

    /// A report holding the plan's counts and its errors (per VM, per scope, refused deletes).
    /// Dispatch adds its own failures afterwards with [`RunReport::record_failure`].
    pub fn from_plan(mode: Mode, plan: &Plan) -> Self {
        let mut report = RunReport::new(mode);
        report.counts = plan.summary.counts;
        report.errors = plan.errors.clone();
        report
    }

    /// Records a VM whose planned write failed in dispatch: it moves from its planned class to
    /// `error` (`was` is the class it was counted in: `create`, `update`, `adopt` or `orphan`;
    /// an orphan stays counted as orphan, the failure only adds the error).
    pub fn record_failure(&mut self, was: &str, entry: ErrorEntry) {
        let counter = match was {
            "create" => Some(&mut self.counts.create),
            "update" => Some(&mut self.counts.update),
            "adopt" => Some(&mut self.counts.adopt),
            _ => None,
        };
        if let Some(counter) = counter {
            *counter = counter.saturating_sub(1);
            self.counts.error += 1;
        }
        self.errors.push(entry);
    }

    /// The exit code of the run (DESIGN.md): 1 when the run could not do its job (`fatal`),
    /// 3 when it finished with a failed VM or scope, 2 when a preview (`plan`, `dry-run`) has
    /// `pending_operations`, 0 otherwise.
    ///
    /// Failures win over pending changes: a cron job must hear about a failed VM even in
    /// `--dry-run`, and `plan` still writes its file either way.
    pub fn exit_code(&self, fatal: bool, pending_operations: usize) -> u8 {
        if fatal {
            EXIT_ERROR
        } else if self.counts.error > 0 || !self.errors.is_empty() {
            EXIT_PARTIAL
        } else if self.mode.is_preview() && pending_operations > 0 {
            EXIT_CHANGES
        } else {
            EXIT_OK
        }
    }

    /// The report as one line of JSON (the `--output json` form).
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The report for people: counts, per-phase times, requests, errors.
    pub fn render_text(&self) -> String {
        let c = &self.counts;
        let p = &self.phases_ms;
        let r = &self.requests;
        let mut out = String::new();
        let rules = if self.rules.name.is_empty() {
            String::new()
        } else {
            format!(
                " (rules {} {}, wit {})",
                self.rules.name, self.rules.version, self.rules.wit
            )
        };
        let _ = writeln!(out, "pve2netbox {}{rules}", self.mode.as_str());
        let _ = writeln!(
            out,
            "  VMs:      {} noop, {} create, {} update, {} adopt, {} orphan, {} skip, {} error",
            c.noop, c.create, c.update, c.adopt, c.orphan, c.skip, c.error
        );
        let _ = writeln!(
            out,
            "  requests: {} proxmox, {} netbox read, {} netbox write",
            r.proxmox, r.netbox_read, r.netbox_write
        );
        let _ = writeln!(
            out,
            "  time:     preflight {}, proxmox read {}, netbox snapshot {}, reconcile {}, \
             dispatch {}, task history {}, total {}",
            ms(p.preflight),
            ms(p.proxmox_read),
            ms(p.netbox_snapshot),
            ms(p.reconcile),
            ms(p.dispatch),
            ms(p.task_history),
            ms(p.total)
        );
        let _ = writeln!(
            out,
            "  memo:     {} VMs answered without a rules call (inputs unchanged since a \
             \"no changes\")",
            self.memo.hits
        );
        if !self.errors.is_empty() {
            let _ = writeln!(out, "  errors:   {}", self.errors.len());
            for e in &self.errors {
                let _ = writeln!(out, "    {} [{}]: {}", e.scope, e.phase, e.message);
            }
        }
        out
    }
}

/// `850 ms` below a second, `12.3 s` above: readable at a glance.
fn ms(value: u64) -> String {
    if value < 1000 {
        format!("{value} ms")
    } else {
        format!("{:.1} s", value as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_exactly_the_design_shape() {
        let mut report = RunReport::new(Mode::DryRun);
        report.counts.create = 2;
        report.requests.netbox_read = 3;
        report.phases_ms.total = 1234;
        report.rules = RulesInfo {
            name: "default".into(),
            version: "0.1.0".into(),
            wit: "0.1.0".into(),
        };
        report.errors.push(ErrorEntry::new(
            "pve-a/pve2",
            "proxmox_read",
            "node offline (595)",
        ));
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let expected = serde_json::json!({
            "report_version": 1, "mode": "dry-run",
            "counts": {"noop": 0, "create": 2, "update": 0, "adopt": 0, "orphan": 0, "skip": 0, "error": 0},
            "requests": {"proxmox": 0, "netbox_read": 3, "netbox_write": 0, "netbox_retry_wait_ms": 0},
            "phases_ms": {"preflight": 0, "proxmox_read": 0, "netbox_snapshot": 0, "reconcile": 0,
                          "dispatch": 0, "task_history": 0, "total": 1234},
            "rules": {"name": "default", "version": "0.1.0", "wit": "0.1.0"},
            "memo": {"hits": 0},
            "errors": [{"scope": "pve-a/pve2", "phase": "proxmox_read", "message": "node offline (595)"}]
        });
        assert_eq!(value, expected);
        let back: RunReport = serde_json::from_value(value).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn every_mode_has_its_design_spelling() {
        for (mode, text) in [
            (Mode::Sync, "sync"),
            (Mode::DryRun, "dry-run"),
            (Mode::Plan, "plan"),
            (Mode::Apply, "apply"),
            (Mode::Demo, "demo"),
        ] {
            assert_eq!(serde_json::to_value(mode).unwrap(), text);
            assert_eq!(mode.as_str(), text);
        }
    }

    #[test]
    fn exit_codes_follow_the_design_rule() {
        let clean = RunReport::new(Mode::Sync);
        assert_eq!(clean.exit_code(false, 0), EXIT_OK);
        assert_eq!(clean.exit_code(true, 0), EXIT_ERROR);
        // A sync has applied its plan: pending operations are not "changes to review".
        assert_eq!(clean.exit_code(false, 4), EXIT_OK);

        let plan = RunReport::new(Mode::Plan);
        assert_eq!(plan.exit_code(false, 0), EXIT_OK);
        assert_eq!(plan.exit_code(false, 1), EXIT_CHANGES);
        let dry = RunReport::new(Mode::DryRun);
        assert_eq!(dry.exit_code(false, 1), EXIT_CHANGES);

        let mut failed_vm = RunReport::new(Mode::DryRun);
        failed_vm.counts.error = 1;
        assert_eq!(failed_vm.exit_code(false, 5), EXIT_PARTIAL);
        assert_eq!(failed_vm.exit_code(true, 5), EXIT_ERROR);

        let mut failed_scope = RunReport::new(Mode::Sync);
        failed_scope
            .errors
            .push(ErrorEntry::new("pve-a", "proxmox_read", "endpoint down"));
        assert_eq!(failed_scope.exit_code(false, 0), EXIT_PARTIAL);
    }

    #[test]
    fn a_dispatch_failure_moves_the_vm_to_error() {
        let mut report = RunReport::new(Mode::Sync);
        report.counts.update = 2;
        report.record_failure(
            "update",
            ErrorEntry::new("pve-a/pve1/100", "dispatch", "400 name must be unique"),
        );
        assert_eq!(report.counts.update, 1);
        assert_eq!(report.counts.error, 1);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.exit_code(false, 0), EXIT_PARTIAL);
    }

    #[test]
    fn text_shows_counts_times_and_errors() {
        let mut report = RunReport::new(Mode::Sync);
        report.counts.update = 3;
        report.phases_ms.dispatch = 850;
        report.phases_ms.total = 12_345;
        report.errors.push(ErrorEntry::new(
            "pve-a/pve1/100",
            "reconcile",
            "rule error bad-config: no disks",
        ));
        let text = report.render_text();
        assert!(text.contains("3 update"), "{text}");
        assert!(text.contains("dispatch 850 ms"), "{text}");
        assert!(text.contains("total 12.3 s"), "{text}");
        assert!(
            text.contains("pve-a/pve1/100 [reconcile]: rule error bad-config: no disks"),
            "{text}"
        );
    }
}
