//! `sync`, `plan`, `apply` and `demo`: parse the flags into a validated [`Config`] (file, then
//! `PVE2NETBOX_*` variables, then flags), run the pipeline, print the report on stdout (text or
//! one JSON object) and return the exit code of DESIGN.md. Logs and progress go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::OutputFormat;
use crate::config::{Config, Overrides};
use crate::pipeline::plan::Plan;
use crate::pipeline::report::{EXIT_ERROR, Mode, RunReport};
use crate::pipeline::run::{self as sync, RunMode, RunOptions, RunResult};
use crate::progress::Progress;
use crate::safety::run_lock::RunLock;

/// Flags shared by `sync`, `plan` and `apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Configuration file (default: `pve2netbox.toml` if present, else the environment alone).
    #[arg(long, env = "PVE2NETBOX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rule module (`.wasm`) replacing the config's and the embedded default rules.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// How the run report is written to stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Any config key, as in the environment table: `--set sync.write_window=16`,
    /// `--set proxmox.pve-a.url=https://…`, `--set rules.settings.site=dc1`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// `sync.max_concurrency`: Proxmox reads in flight for the whole run.
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// `sync.write_window`: operations per dispatch window.
    #[arg(long)]
    pub write_window: Option<usize>,
    /// `sync.bulk`: one bulk request per window (default true; false: one write at a time).
    #[arg(long)]
    pub bulk: Option<bool>,
    /// `sync.orphans`: report, mark or delete.
    #[arg(long)]
    pub orphans: Option<String>,
    /// `sync.site`: site slug for clusters and node devices.
    #[arg(long)]
    pub site: Option<String>,
    /// `sync.task_history`: copy Proxmox tasks into journal entries.
    #[arg(long)]
    pub task_history: Option<bool>,
    /// Directory of local state: the run lock of `sync` and `apply`, the no-op memo
    /// [default: $XDG_STATE_HOME/pve2netbox, else ~/.local/state/pve2netbox].
    #[arg(long, env = crate::safety::run_lock::STATE_DIR_ENV, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Write the run's metrics here at its end (Prometheus text format, for node_exporter's
    /// textfile collector; written atomically, also when the run fails).
    #[arg(long, env = crate::metrics::METRICS_FILE_ENV, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Ask the rules about every VM: neither read nor write the no-op memo (`sync.memo = false`).
    #[arg(long)]
    pub no_memo: bool,
    /// Record every VM's rules input (guest, NetBox record, context) and the module's answer
    /// as fixtures in DIR, secrets redacted, for `rules replay|diff|test` (not with `apply`;
    /// the no-op memo is not used while recording).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
}

impl RunArgs {
    /// The validated config: file < environment < flags.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        let mut overrides = Overrides::new();
        for item in &self.set {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("--set {item}: expected KEY=VALUE"))?;
            overrides.set(key.trim(), value.trim(), "--set");
        }
        let flags: [(&str, Option<String>, &str); 6] = [
            (
                "sync.max_concurrency",
                self.max_concurrency.map(|v| v.to_string()),
                "--max-concurrency",
            ),
            (
                "sync.write_window",
                self.write_window.map(|v| v.to_string()),
                "--write-window",
            ),
            ("sync.bulk", self.bulk.map(|v| v.to_string()), "--bulk"),
            ("sync.orphans", self.orphans.clone(), "--orphans"),
            ("sync.site", self.site.clone(), "--site"),
            (
                "sync.task_history",
                self.task_history.map(|v| v.to_string()),
                "--task-history",
            ),
        ];
        for (key, value, flag) in flags {
            if let Some(value) = value {
                overrides.set(key, value, flag);
            }
        }
        config.apply_overrides(&overrides)?;
        Ok(config)
    }
}

/// Arguments of `sync`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Show what would change (the plan table), write nothing; exit 2 when there are changes.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Where to write the plan (JSON), the input of `apply`.
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// A plan written by `plan --out`.
    pub plan: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Arguments of `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Guests in the simulated Proxmox.
    #[arg(long, default_value_t = crate::cli::demo::DEFAULT_VMS)]
    pub vms: usize,
    /// Rule module (`.wasm`) instead of the embedded default rules.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// How each run's report is written to stdout (JSON: one object per line).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Simulator latency: `realistic` (NetBox 4.7 on 2 cores) or `zero` (fast).
    #[arg(long, default_value = "realistic")]
    pub profile: pve2netbox_testkit::Profile,
    /// One bulk request per write window (`false`: one write at a time).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub bulk: bool,
    /// Write the metrics of the demo's last run (the rerun) here at its end (Prometheus text format, for node_exporter's
    /// textfile collector; written atomically, also when the run fails).
    #[arg(long, env = crate::metrics::METRICS_FILE_ENV, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// How long an idle blocking thread lives. Why short: the snapshot's pages and the Proxmox
/// listing are decoded on blocking threads, and their rows are freed on the runtime's; the
/// allocator gives those blocks back only when the thread that made them allocates again or
/// exits. With tokio's 10 s, a snapshot that finished before the Proxmox read kept ~250 MiB of
/// freed rows resident until then (a memoized no-op rerun at 100k VMs with children: 480-530
/// -> 268-298 MiB). A thread started again costs tens of microseconds.
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(100);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the async runtime")
}

/// Prints a run's report (and, for previews in text form, the plan table).
pub(crate) fn print(result: &RunResult, output: OutputFormat, quiet: bool, table: bool) {
    match output {
        OutputFormat::Json => println!("{}", result.report.to_json()),
        OutputFormat::Text => {
            if table {
                print!("{}", result.plan.render_table());
            }
            if quiet {
                for e in &result.report.errors {
                    eprintln!("error: {} [{}]: {}", e.scope, e.phase, e.message);
                }
            } else {
                print!("{}", result.report.render_text());
            }
        }
    }
}

fn run_mode(args: &RunArgs, mode: RunMode, quiet: bool) -> anyhow::Result<RunResult> {
    let config = args.load_config()?;
    // Writing runs hold the NetBox's run lock from before preflight (which may write) to the end.
    let _lock = match &mode {
        RunMode::Sync => Some("sync"),
        RunMode::Apply(_) => Some("apply"),
        RunMode::DryRun | RunMode::Plan => None,
    }
    .map(|command| RunLock::acquire(args.state_dir.as_deref(), &config.netbox.url, command))
    .transpose()?;
    if args.record.is_some() && matches!(mode, RunMode::Apply(_)) {
        anyhow::bail!(
            "--record is for sync, sync --dry-run and plan: apply carries out a saved plan and asks the rules nothing"
        );
    }
    let progress = Progress::new(quiet);
    let memo_dir = if args.no_memo || !config.sync.memo || args.record.is_some() {
        None
    } else {
        let dir = args
            .state_dir
            .clone()
            .or_else(crate::safety::run_lock::default_state_dir);
        if dir.is_none() {
            tracing::info!("no state dir (set --state-dir or HOME): no no-op memo this run");
        }
        dir
    };
    let opts = RunOptions {
        config,
        rules: args.rules.clone(),
        mode,
        progress: progress.clone(),
        memo_dir,
        record: args.record.clone(),
    };
    let result = runtime()?.block_on(sync::run(opts));
    progress.detach();
    Ok(result?)
}

/// `pve2netbox sync [--dry-run]`.
pub fn sync(args: SyncArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let mode = if args.dry_run {
        RunMode::DryRun
    } else {
        RunMode::Sync
    };
    let metrics_mode = if args.dry_run {
        Mode::DryRun
    } else {
        Mode::Sync
    };
    let result = with_metrics(args.run.metrics_file.as_deref(), metrics_mode, || {
        let result = run_mode(&args.run, mode, quiet)?;
        print(&result, args.run.output, quiet, args.dry_run);
        Ok(result)
    })?;
    Ok(ExitCode::from(result.exit_code))
}

/// `pve2netbox plan --out plan.json`.
pub fn plan(args: PlanArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let result = with_metrics(args.run.metrics_file.as_deref(), Mode::Plan, || {
        let result = run_mode(&args.run, RunMode::Plan, quiet)?;
        std::fs::File::create(&args.out)
            .and_then(|file| result.plan.write_json(file))
            .with_context(|| format!("writing the plan to {}", args.out.display()))?;
        print(&result, args.run.output, quiet, true);
        Ok(result)
    })?;
    if !quiet {
        eprintln!("plan written to {}", args.out.display());
    }
    Ok(ExitCode::from(result.exit_code))
}

/// `pve2netbox apply plan.json`.
pub fn apply(args: ApplyArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let result = with_metrics(args.run.metrics_file.as_deref(), Mode::Apply, || {
        let plan =
            Plan::read_file(&args.plan).with_context(|| format!("plan {}", args.plan.display()))?;
        let result = run_mode(&args.run, RunMode::Apply(Box::new(plan)), quiet)?;
        print(&result, args.run.output, quiet, false);
        Ok(result)
    })?;
    Ok(ExitCode::from(result.exit_code))
}

/// `pve2netbox demo`.
pub fn demo(args: DemoArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let opts = crate::cli::demo::DemoOptions {
        vms: args.vms,
        rules: args.rules,
        profile: args.profile,
        bulk: args.bulk,
        output: args.output,
        quiet,
    };
    let outcome = runtime().and_then(|rt| rt.block_on(crate::cli::demo::run(opts)));
    if let Some(path) = &args.metrics_file {
        match &outcome {
            Ok((code, last)) => write_metrics(path, Mode::Demo, Some(last), *code),
            Err(_) => write_metrics(path, Mode::Demo, None, EXIT_ERROR),
        }
    }
    let (code, _) = outcome?;
    Ok(ExitCode::from(code))
}

/// Runs `run` and, with a metrics file, writes its outcome there whatever it was: the report
/// and exit code of a finished run, exit 1 without a report for a run that stopped early.
fn with_metrics(
    path: Option<&std::path::Path>,
    mode: Mode,
    run: impl FnOnce() -> anyhow::Result<RunResult>,
) -> anyhow::Result<RunResult> {
    let outcome = run();
    if let Some(path) = path {
        match &outcome {
            Ok(result) => write_metrics(path, mode, Some(&result.report), result.exit_code),
            Err(_) => write_metrics(path, mode, None, EXIT_ERROR),
        }
    }
    outcome
}

/// Writes the metrics file; a failure is logged and does not change the run's exit code (the
/// run did its job; an alert on the last run's age notices a file that stopped changing).
fn write_metrics(path: &std::path::Path, mode: Mode, report: Option<&RunReport>, code: u8) {
    if let Err(e) = crate::metrics::write_file(path, mode, report, code) {
        tracing::error!("{e}");
    }
}
