//! `--metrics-file`: the run's outcome in the Prometheus text exposition format, for
//! node_exporter's textfile collector, written atomically at the end of every run.
//!
//! [`render`] is a pure function from what the run ended with ([`RunOutcome`]) to the text;
//! [`write_file`] adds the I/O: it reads the previous file back for the last success time (a
//! failed run keeps it, so "no success for an hour" can be alerted on), then writes a temporary
//! file in the same directory and renames it over the old one, so the collector never reads half
//! a file. The temporary name does not end in `.prom`, which the collector skips.
//!
//! Every series carries a `mode` label (`sync`, `dry-run`, `plan`, `apply`, `demo`): a
//! textfile directory may hold the files of several commands, and the collector refuses the
//! same series twice. Per-run figures are gauges (they describe the last run, they do not
//! accumulate), so no name ends in `_total`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::pipeline::report::{EXIT_CHANGES, EXIT_OK, Mode, RunReport};

/// The environment variable that sets `--metrics-file`.
pub const METRICS_FILE_ENV: &str = "PVE2NETBOX_METRICS_FILE";

/// Prefix of every metric name.
const PREFIX: &str = "pve2netbox_";
/// The metric that carries the last success time, read back from the previous file.
const LAST_SUCCESS: &str = "pve2netbox_last_success_timestamp_seconds";

/// Writing the metrics file failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics file {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics file {0}: the path names no file")]
    NoFileName(PathBuf),
}

/// What a run ended with, the input of [`render`].
#[derive(Debug, Clone, Copy)]
pub struct RunOutcome<'a> {
    /// The command that ran (`demo` for the demo, whose last report is a sync's).
    pub mode: Mode,
    /// The run's report; `None` when the run stopped before it had one (exit 1: a config,
    /// lock, preflight or NetBox failure).
    pub report: Option<&'a RunReport>,
    /// The process's exit code.
    pub exit_code: u8,
    /// When the run ended, in seconds since the Unix epoch.
    pub finished_at: f64,
    /// The last successful run before this one (seconds since the epoch), if any.
    pub previous_success: Option<f64>,
}

impl RunOutcome<'_> {
    /// A run succeeded when it did its job: exit 0, or 2 (a preview that found changes).
    /// Exit 3 (some VMs or scopes failed) and 1 are not successes.
    pub fn succeeded(&self) -> bool {
        matches!(self.exit_code, EXIT_OK | EXIT_CHANGES)
    }

    /// This run's end when it succeeded, else the previous success.
    pub fn last_success(&self) -> Option<f64> {
        if self.succeeded() {
            Some(self.finished_at)
        } else {
            self.previous_success
        }
    }
}

/// The current time in seconds since the Unix epoch (millisecond precision).
pub fn now_unix() -> f64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_millis() as f64) / 1000.0
}

/// One metric family being written: its `HELP` and `TYPE` lines come first, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: String,
    mode: &'a str,
}

impl Family<'_> {
    /// A sample with the `mode` label and `labels`.
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let mut text = format!("mode=\"{}\"", escape(self.mode));
        for (key, val) in labels {
            let _ = write!(text, ",{key}=\"{}\"", escape(val));
        }
        let _ = writeln!(self.out, "{}{{{text}}} {value}", self.name);
    }
}

/// Starts a gauge family.
fn gauge<'a>(out: &'a mut String, mode: &'a str, name: &str, help: &str) -> Family<'a> {
    let name = format!("{PREFIX}{name}");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    Family { out, name, mode }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Seconds from milliseconds, as the text format writes them (`1.234`).
fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The text exposition of a run's outcome. Without a report (a run that stopped early) only
/// the exit code and the times are written: counts from nowhere would read as real zeros.
pub fn render(outcome: &RunOutcome<'_>) -> String {
    let mut out = String::new();
    let mode = outcome.mode.as_str();

    let mut build = gauge(
        &mut out,
        mode,
        "build_info",
        "The pve2netbox binary that ran: version and git commit (value 1).",
    );
    build.sample(
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", crate::version::GIT_COMMIT),
        ],
        1,
    );

    gauge(
        &mut out,
        mode,
        "exit_code",
        "Exit code of the last run: 0 ok, 1 error, 2 plan has changes, 3 some VMs or scopes failed.",
    )
    .sample(&[], outcome.exit_code);
    gauge(
        &mut out,
        mode,
        "last_run_timestamp_seconds",
        "When the last run ended, in seconds since the Unix epoch.",
    )
    .sample(&[], outcome.finished_at);
    gauge(
        &mut out,
        mode,
        "last_success_timestamp_seconds",
        "When the last successful run (exit 0 or 2) ended, in seconds since the Unix epoch; 0: never.",
    )
    .sample(&[], outcome.last_success().unwrap_or(0.0));

    let Some(report) = outcome.report else {
        return out;
    };

    if !report.rules.name.is_empty() {
        gauge(
            &mut out,
            mode,
            "rules_info",
            "The rule module of the last run: name, version and WIT version (value 1).",
        )
        .sample(
            &[
                ("name", report.rules.name.as_str()),
                ("version", report.rules.version.as_str()),
                ("wit", report.rules.wit.as_str()),
            ],
            1,
        );
    }

    let c = &report.counts;
    let mut vms = gauge(
        &mut out,
        mode,
        "vms",
        "VMs per classification in the last run (orphan: managed VMs missing from Proxmox).",
    );
    for (class, n) in [
        ("noop", c.noop),
        ("create", c.create),
        ("update", c.update),
        ("adopt", c.adopt),
        ("orphan", c.orphan),
        ("skip", c.skip),
        ("error", c.error),
    ] {
        vms.sample(&[("class", class)], n);
    }

    gauge(
        &mut out,
        mode,
        "errors",
        "Problems reported by the last run, per VM or per scope (cluster, node, run).",
    )
    .sample(&[], report.errors.len());

    let r = &report.requests;
    let mut requests = gauge(
        &mut out,
        mode,
        "requests",
        "HTTP requests made by the last run, per service and access.",
    );
    requests.sample(&[("service", "proxmox"), ("access", "read")], r.proxmox);
    requests.sample(&[("service", "netbox"), ("access", "read")], r.netbox_read);
    requests.sample(
        &[("service", "netbox"), ("access", "write")],
        r.netbox_write,
    );

    let p = &report.phases_ms;
    let mut phases = gauge(
        &mut out,
        mode,
        "phase_duration_seconds",
        "Wall time of each phase of the last run.",
    );
    for (phase, ms) in [
        ("preflight", p.preflight),
        ("proxmox_read", p.proxmox_read),
        ("netbox_snapshot", p.netbox_snapshot),
        ("reconcile", p.reconcile),
        ("dispatch", p.dispatch),
        ("task_history", p.task_history),
    ] {
        phases.sample(&[("phase", phase)], seconds(ms));
    }
    gauge(
        &mut out,
        mode,
        "run_duration_seconds",
        "Wall time of the last run, all phases.",
    )
    .sample(&[], seconds(p.total));

    gauge(
        &mut out,
        mode,
        "memo_hits",
        "VMs of the last run answered by the no-op memo instead of the rules.",
    )
    .sample(&[], report.memo.hits);
    out
}

/// The last success time in a previous metrics file, if it holds one other than "never".
pub fn previous_success(text: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(LAST_SUCCESS)?;
            // The name must end here: `{labels} value` or ` value`.
            let value = match rest.chars().next()? {
                '{' => rest.rsplit_once('}')?.1,
                ' ' => rest,
                _ => return None,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .find(|v| v.is_finite() && *v > 0.0)
}

/// Writes the metrics of a run ending now to `path`: the previous file's last success is kept
/// when this run did not succeed.
pub fn write_file(
    path: &Path,
    mode: Mode,
    report: Option<&RunReport>,
    exit_code: u8,
) -> Result<(), MetricsError> {
    let previous = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| previous_success(&text));
    let text = render(&RunOutcome {
        mode,
        report,
        exit_code,
        finished_at: now_unix(),
        previous_success: previous,
    });
    write_atomically(path, text.as_bytes())
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`:
/// a reader sees the old file or the new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), MetricsError> {
    let io = |action: &'static str| {
        move |source: std::io::Error| MetricsError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let name = path
        .file_name()
        .ok_or_else(|| MetricsError::NoFileName(path.to_path_buf()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&temp).map_err(io("creating a temporary file"))?;
        file.write_all(bytes)
            .map_err(io("writing the temporary file"))?;
        file.sync_all().map_err(io("syncing the temporary file"))?;
        std::fs::rename(&temp, path).map_err(io("renaming the temporary file over it"))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::report::{ErrorEntry, RulesInfo};

    fn sample_report() -> RunReport {
        let mut report = RunReport::new(Mode::Sync);
        report.counts.noop = 7;
        report.counts.orphan = 2;
        report.requests.netbox_write = 3;
        report.phases_ms.reconcile = 1250;
        report.phases_ms.total = 4000;
        report.memo.hits = 5;
        report.rules = RulesInfo {
            name: "site \"a\"".into(),
            version: "1.0.0".into(),
            wit: "0.2.0".into(),
        };
        report
            .errors
            .push(ErrorEntry::new("pve-a", "proxmox_read", "down"));
        report
    }

    fn outcome(report: Option<&RunReport>, exit_code: u8, previous: Option<f64>) -> RunOutcome<'_> {
        RunOutcome {
            mode: Mode::Sync,
            report,
            exit_code,
            finished_at: 1_700_000_100.5,
            previous_success: previous,
        }
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let report = sample_report();
        let text = render(&outcome(Some(&report), 3, None));
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(kind, "gauge", "{line}");
                assert!(
                    !name.ends_with("_total"),
                    "{name}: gauges do not end in _total"
                );
                declared.push(name.to_owned());
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
                assert!(name.starts_with(PREFIX), "{name}");
            }
        }
        let unique: std::collections::BTreeSet<_> = declared.iter().collect();
        assert_eq!(unique.len(), declared.len(), "each family once:\n{text}");
    }

    #[test]
    fn values_come_from_the_report() {
        let report = sample_report();
        let text = render(&outcome(Some(&report), 3, Some(1_699_999_000.0)));
        for line in [
            "pve2netbox_vms{mode=\"sync\",class=\"noop\"} 7",
            "pve2netbox_vms{mode=\"sync\",class=\"orphan\"} 2",
            "pve2netbox_requests{mode=\"sync\",service=\"netbox\",access=\"write\"} 3",
            "pve2netbox_phase_duration_seconds{mode=\"sync\",phase=\"reconcile\"} 1.25",
            "pve2netbox_run_duration_seconds{mode=\"sync\"} 4",
            "pve2netbox_memo_hits{mode=\"sync\"} 5",
            "pve2netbox_errors{mode=\"sync\"} 1",
            "pve2netbox_exit_code{mode=\"sync\"} 3",
            "pve2netbox_rules_info{mode=\"sync\",name=\"site \\\"a\\\"\",version=\"1.0.0\",wit=\"0.2.0\"} 1",
            // Exit 3 is not a success: the previous success stays.
            "pve2netbox_last_success_timestamp_seconds{mode=\"sync\"} 1699999000",
            "pve2netbox_last_run_timestamp_seconds{mode=\"sync\"} 1700000100.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn a_success_sets_the_last_success_time() {
        let report = sample_report();
        for code in [EXIT_OK, EXIT_CHANGES] {
            let text = render(&outcome(Some(&report), code, Some(5.0)));
            assert_eq!(previous_success(&text), Some(1_700_000_100.5), "{text}");
        }
    }

    #[test]
    fn a_run_without_report_writes_no_counts_and_never_is_zero() {
        let text = render(&outcome(None, 1, None));
        assert!(
            text.contains("pve2netbox_exit_code{mode=\"sync\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pve2netbox_last_success_timestamp_seconds{mode=\"sync\"} 0"),
            "{text}"
        );
        assert!(!text.contains("pve2netbox_vms"), "{text}");
        assert_eq!(previous_success(&text), None, "0 means never");
    }

    #[test]
    fn previous_success_reads_only_its_own_metric() {
        let text = "# HELP pve2netbox_last_success_timestamp_seconds x\n\
                    pve2netbox_last_success_timestamp_seconds_other 9\n\
                    pve2netbox_last_success_timestamp_seconds{mode=\"a}b\"} 42.5\n";
        assert_eq!(previous_success(text), Some(42.5));
        assert_eq!(previous_success("garbage\n"), None);
    }

    #[test]
    fn failed_runs_keep_the_last_success_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pve2netbox.prom");
        let report = sample_report();
        write_file(&path, Mode::Sync, Some(&report), EXIT_OK).unwrap();
        let first = previous_success(&std::fs::read_to_string(&path).unwrap()).unwrap();
        write_file(&path, Mode::Sync, None, 1).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(previous_success(&text), Some(first), "{text}");
        assert!(text.contains("pve2netbox_exit_code{mode=\"sync\"} 1"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pve2netbox.prom"], "no temporary file left");
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("pve2netbox.prom");
        let err = write_file(&path, Mode::Sync, None, 1).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
