//! End to end, `--metrics-file`: the file a run leaves is valid Prometheus text (parsed with
//! `prometheus-parse`, and with `promtool` where Debian's `prometheus` package is installed),
//! its values are those of the run's JSON report, and a failed run keeps the last success time.
//! Also checks the example alert rules in `docs/alerts.yml` with `promtool`.

mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use e2e_support::{Harness, RunOutput, spec, workspace};
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::Value;

/// The samples of a metrics file, by metric name and sorted labels.
struct Metrics {
    samples: BTreeMap<(String, String), f64>,
    labels: BTreeMap<String, Vec<BTreeMap<String, String>>>,
}

impl Metrics {
    fn read(path: &Path) -> Metrics {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
        let mut samples = BTreeMap::new();
        let mut labels: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
        for s in scrape.samples {
            let value = match s.value {
                Sample::Gauge(v) => v,
                other => panic!("{}: every metric is a gauge, got {other:?}", s.metric),
            };
            assert!(
                scrape.docs.contains_key(&s.metric),
                "{} has no HELP line:\n{text}",
                s.metric
            );
            let set: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let key = set
                .iter()
                .filter(|(k, _)| *k != "mode")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let previous = samples.insert((s.metric.clone(), key.clone()), value);
            assert!(previous.is_none(), "{}{{{key}}} twice:\n{text}", s.metric);
            labels.entry(s.metric).or_default().push(set);
        }
        Metrics { samples, labels }
    }

    /// The value of `name{labels}` (labels other than `mode`, sorted: `class=noop`).
    fn get(&self, name: &str, labels: &str) -> f64 {
        *self
            .samples
            .get(&(name.to_owned(), labels.to_owned()))
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in {:?}", self.samples.keys()))
    }

    fn has(&self, name: &str) -> bool {
        self.labels.contains_key(name)
    }

    /// Every sample carries `mode="<mode>"`.
    fn assert_mode(&self, mode: &str) {
        for (name, sets) in &self.labels {
            for set in sets {
                assert_eq!(set.get("mode").map(String::as_str), Some(mode), "{name}");
            }
        }
    }
}

/// Checks every value against the JSON report of the same run.
fn assert_matches_report(m: &Metrics, report: &Value, exit_code: i32) {
    for class in [
        "noop", "create", "update", "adopt", "orphan", "skip", "error",
    ] {
        assert_eq!(
            m.get("pve2netbox_vms", &format!("class={class}")),
            report["counts"][class].as_f64().unwrap(),
            "{class}"
        );
    }
    let requests = &report["requests"];
    assert_eq!(
        m.get("pve2netbox_requests", "access=read,service=proxmox"),
        requests["proxmox"].as_f64().unwrap()
    );
    assert_eq!(
        m.get("pve2netbox_requests", "access=read,service=netbox"),
        requests["netbox_read"].as_f64().unwrap()
    );
    assert_eq!(
        m.get("pve2netbox_requests", "access=write,service=netbox"),
        requests["netbox_write"].as_f64().unwrap()
    );
    let phases = report["phases_ms"].as_object().unwrap();
    for (phase, ms) in phases {
        let seconds = ms.as_f64().unwrap() / 1000.0;
        let got = if phase == "total" {
            m.get("pve2netbox_run_duration_seconds", "")
        } else {
            m.get(
                "pve2netbox_phase_duration_seconds",
                &format!("phase={phase}"),
            )
        };
        assert!((got - seconds).abs() < 1e-9, "{phase}: {got} != {seconds}");
    }
    assert_eq!(
        m.get("pve2netbox_memo_hits", ""),
        report["memo"]["hits"].as_f64().unwrap()
    );
    assert_eq!(
        m.get("pve2netbox_errors", ""),
        report["errors"].as_array().unwrap().len() as f64
    );
    assert_eq!(m.get("pve2netbox_exit_code", ""), f64::from(exit_code));
    let rules = &report["rules"];
    let info = format!(
        "name={},version={},wit={}",
        rules["name"].as_str().unwrap(),
        rules["version"].as_str().unwrap(),
        rules["wit"].as_str().unwrap()
    );
    assert_eq!(m.get("pve2netbox_rules_info", &info), 1.0);
    assert_eq!(m.labels["pve2netbox_build_info"].len(), 1);
}

/// `promtool check metrics` on the file: Prometheus's own parser and its naming lints.
fn promtool_check_metrics(path: &Path) {
    let text = std::fs::read(path).unwrap();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian: apt-get install prometheus)");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&text)
    );
}

fn run_demo(metrics: &Path) -> RunOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pve2netbox"));
    let args: Vec<String> = [
        "--quiet",
        "demo",
        "--vms",
        "20",
        "--profile",
        "zero",
        "--output",
        "json",
        "--metrics-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([metrics.display().to_string()])
    .collect();
    cmd.args(&args).env_remove("PVE2NETBOX_METRICS_FILE");
    RunOutput::of(args, cmd.output().expect("run pve2netbox demo"))
}

#[test]
fn demo_metrics_are_the_json_report_of_its_last_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pve2netbox.prom");
    let out = run_demo(&path);
    out.expect_code(0);
    let m = Metrics::read(&path);
    m.assert_mode("demo");
    // The last JSON object on stdout is the rerun's report.
    assert_matches_report(&m, &out.report, out.code);
    assert_eq!(
        m.get("pve2netbox_last_success_timestamp_seconds", ""),
        m.get("pve2netbox_last_run_timestamp_seconds", ""),
        "a successful run is the last success"
    );
}

#[test]
fn sync_metrics_follow_the_report_and_a_failed_run_keeps_the_last_success() {
    let mut h = Harness::generated(spec(12, 2, 1, 0, 31));
    let path = h.path("textfile").join("pve2netbox.prom");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let metrics_flag = path.display().to_string();

    let out = h.run(&["sync", "--metrics-file", &metrics_flag]);
    out.expect_code(0);
    let first = Metrics::read(&path);
    first.assert_mode("sync");
    assert_matches_report(&first, &out.report, 0);
    let success = first.get("pve2netbox_last_success_timestamp_seconds", "");
    assert!(success > 1.6e9, "a Unix time: {success}");

    // Every Proxmox endpoint down: the run cannot do its job (exit 1, no report). The variable
    // sets the path this time, as a unit file's `Environment=` would.
    h.down = (0..h.endpoints().len()).collect();
    let (mut cmd, args) = h.command(&["sync"]);
    cmd.env("PVE2NETBOX_METRICS_FILE", &path);
    let failed = RunOutput::of(args, cmd.output().unwrap());
    failed.expect_code(1);
    let after = Metrics::read(&path);
    assert_eq!(after.get("pve2netbox_exit_code", ""), 1.0);
    assert_eq!(
        after.get("pve2netbox_last_success_timestamp_seconds", ""),
        success,
        "the failed run keeps the previous success"
    );
    assert!(
        after.get("pve2netbox_last_run_timestamp_seconds", "") >= success,
        "the failed run is the last run"
    );
    assert!(
        !after.has("pve2netbox_vms"),
        "no counts without a report: they would read as real zeros"
    );
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["pve2netbox.prom"], "no temporary file left");
}

#[test]
#[ignore = "needs promtool (Debian: apt-get install prometheus); run with --ignored"]
fn promtool_accepts_the_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pve2netbox.prom");
    run_demo(&path).expect_code(0);
    promtool_check_metrics(&path);
}

#[test]
#[ignore = "needs promtool (Debian: apt-get install prometheus); run with --ignored"]
fn promtool_checks_and_tests_the_example_alert_rules() {
    let docs = workspace().join("docs");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&docs)
            .output()
            .expect("promtool (Debian: apt-get install prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
