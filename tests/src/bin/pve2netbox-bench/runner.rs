//! Drives the real `pve2netbox` binary as a child process, the way an operator does: a TOML
//! config file naming token variables, the tokens in the child's environment, each Proxmox
//! endpoint pinned by its certificate fingerprint, the JSON run report on stdout.
//!
//! While the child runs, its peak resident memory is sampled from `/proc/<pid>/status`
//! (`VmHWM`, the kernel's own high-water mark, so a sample taken late still sees an earlier
//! peak). Edges: a running [`SimHandle`] and a binary path in; [`Run`] out. Knows nothing of
//! which figure a run feeds.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pve2netbox_testkit::SimHandle;
use serde_json::Value;

/// Variable holding the NetBox token in the child's environment (never in the config file).
const NETBOX_TOKEN_VAR: &str = "BENCH_NETBOX_TOKEN";
/// Prefix of the per-endpoint Proxmox token variables (`BENCH_PVE_TOKEN_0`, ...).
const PVE_TOKEN_VAR_PREFIX: &str = "BENCH_PVE_TOKEN_";
/// How often `VmHWM` is sampled: short against any phase worth measuring (>= 100 ms).
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// One finished run of the binary.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command line after the binary (for the record).
    pub args: Vec<String>,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Wall time from spawn to exit: process start, component load and every phase.
    pub wall: Duration,
    /// The child's peak resident memory, in MiB, as last sampled.
    pub peak_rss_mb: f64,
    /// The JSON run report (or the `rules bench` object).
    pub report: Value,
    /// A sync's rules step in ms (memo keys, lookups and module calls), from its `rules step`
    /// log line.
    pub rules_ms: Option<f64>,
    /// The process's CPU time during that step (all threads, 10 ms resolution), same line.
    pub rules_cpu_ms: Option<f64>,
}

impl Run {
    /// `phases_ms.<phase>` of the run report.
    pub fn phase_ms(&self, phase: &str) -> Option<f64> {
        self.report["phases_ms"][phase].as_f64()
    }

    /// `counts.<what>` of the run report, 0 when absent.
    pub fn count(&self, what: &str) -> u64 {
        self.report["counts"][what].as_u64().unwrap_or(0)
    }
}

/// The binary and the config it is pointed at for one simulator instance.
pub struct Binary {
    exe: PathBuf,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Binary {
    /// The binary without a config (for `rules bench`).
    pub fn new(exe: &Path) -> Self {
        Self {
            exe: exe.to_path_buf(),
            config: None,
            env: Vec::new(),
        }
    }

    /// The binary pointed at `sim`: writes `dir/pve2netbox.toml` (one `[[proxmox]]` table per
    /// endpoint, pinned fingerprint, tokens by variable, `sync.children` as given) and keeps the
    /// tokens for the child's environment. `children` is always written: the VM-only workloads'
    /// guests are not built to have unique addresses, and their figures compare with earlier
    /// sessions' only with the VM records alone.
    pub fn for_sim(
        exe: &Path,
        sim: &SimHandle,
        dir: &Path,
        children: bool,
    ) -> anyhow::Result<Self> {
        let mut text = format!(
            "[netbox]\nurl = \"{}\"\ntoken_env = \"{NETBOX_TOKEN_VAR}\"\n",
            sim.netbox_url()
        );
        let mut env = vec![(NETBOX_TOKEN_VAR.to_string(), sim.netbox_token().to_string())];
        for (i, ep) in sim.pve_endpoints().iter().enumerate() {
            let var = format!("{PVE_TOKEN_VAR_PREFIX}{i}");
            text.push_str(&format!(
                "\n[[proxmox]]\nname = \"{}\"\nurl = \"{}\"\ntoken_env = \"{var}\"\nfingerprint = \"{}\"\n",
                ep.name, ep.url, ep.fingerprint
            ));
            env.push((var, ep.token.clone()));
        }
        text.push_str(&format!(
            "\n[sync]\nsite = \"bench-dc\"\nchildren = {children}\n"
        ));
        // This simulator's own state dir (run lock, no-op memo).
        env.push((
            "PVE2NETBOX_STATE_DIR".to_string(),
            dir.join("state").display().to_string(),
        ));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("pve2netbox.toml");
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        Ok(Self {
            exe: exe.to_path_buf(),
            config: Some(config),
            env,
        })
    }

    /// Compiled rule modules cached in `dir` alone, so the first run compiles the embedded
    /// rules as a user's first sync after an install or upgrade does (the compile's memory is
    /// part of that run's peak), and later runs load them.
    pub fn own_component_cache(mut self, dir: &Path) -> Self {
        self.env.push((
            "PVE2NETBOX_CACHE_DIR".to_string(),
            dir.display().to_string(),
        ));
        self
    }

    /// `pve2netbox sync --config … --output json --quiet <extra>`; exit codes 0 and 2 (dry-run
    /// with changes) are success, anything else is an error carrying the report's errors.
    pub async fn sync(&self, extra: &[&str]) -> anyhow::Result<Run> {
        let config = self
            .config
            .as_ref()
            .context("sync needs a config (Binary::for_sim)")?;
        let mut args: Vec<String> = vec![
            "sync".into(),
            "--config".into(),
            config.display().to_string(),
            "--output".into(),
            "json".into(),
            "--quiet".into(),
            "--log-format".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let run = self.run(args, SYNC_LOG).await?;
        if run.code != 0 && run.code != 2 {
            bail!(
                "pve2netbox {} exited {}: errors {}",
                run.args.join(" "),
                run.code,
                first_errors(&run.report)
            );
        }
        Ok(run)
    }

    /// `pve2netbox rules bench default --vms N [--first-sync]` (prints one JSON object).
    pub async fn rules_bench(&self, vms: usize, first_sync: bool) -> anyhow::Result<Run> {
        let mut args = ["rules", "bench", "default", "--vms", &vms.to_string()]
            .map(String::from)
            .to_vec();
        if first_sync {
            args.push("--first-sync".into());
        }
        let run = self.run(args, "warn").await?;
        if run.code != 0 {
            bail!("pve2netbox rules bench exited {}", run.code);
        }
        Ok(run)
    }

    async fn run(&self, args: Vec<String>, log: &str) -> anyhow::Result<Run> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(&args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PVE2NETBOX_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let pid = child.id().context("child pid")?;
        let mut stdout = child.stdout.take().context("child stdout")?;
        let mut stderr = child.stderr.take().context("child stderr")?;
        // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
        let out_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut buf).await;
            buf
        });
        let err_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut buf).await;
            buf
        });
        let mut peak_kib = 0u64;
        let mut tick = tokio::time::interval(RSS_SAMPLE_EVERY);
        let status = loop {
            tokio::select! {
                status = child.wait() => break status.context("waiting for the child")?,
                _ = tick.tick() => {
                    if let Some(kib) = vm_hwm_kib(pid) {
                        peak_kib = peak_kib.max(kib);
                    }
                }
            }
        };
        let wall = start.elapsed();
        let stdout = String::from_utf8_lossy(&out_task.await.unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_task.await.unwrap_or_default()).into_owned();
        let report = parse_report(&stdout).with_context(|| {
            format!(
                "no JSON on stdout of pve2netbox {} (exit {:?}); stderr tail: {}",
                args.join(" "),
                status.code(),
                tail(&stderr, 2000)
            )
        })?;
        Ok(Run {
            args,
            code: status.code().unwrap_or(-1),
            wall,
            peak_rss_mb: peak_kib as f64 / 1024.0,
            report,
            rules_ms: rules_step(&stderr, "rules_ms"),
            rules_cpu_ms: rules_step(&stderr, "rules_cpu_ms"),
        })
    }
}

/// The log filter of a sync: warnings, and the sync's `rules step` line.
const SYNC_LOG: &str = "warn,pve2netbox::pipeline::run=info";

/// The field `field` of the `rules step` line in a JSON log.
fn rules_step(stderr: &str, field: &str) -> Option<f64> {
    stderr.lines().find_map(|l| {
        let v: Value = serde_json::from_str(l.trim()).ok()?;
        v["fields"][field].as_f64()
    })
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The whole stdout as one JSON value, else its last line that parses (text before it may
/// be a table or a notice).
fn parse_report(stdout: &str) -> Option<Value> {
    serde_json::from_str(stdout.trim()).ok().or_else(|| {
        stdout.lines().rev().find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        })
    })
}

fn first_errors(report: &Value) -> String {
    match report["errors"].as_array() {
        Some(errors) => {
            let shown: Vec<String> = errors.iter().take(3).map(Value::to_string).collect();
            format!("({} in all) {}", errors.len(), shown.join("; "))
        }
        None => "none reported".into(),
    }
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}
