//! `pve2netbox rules check|test|eval|bench|replay|diff|new`: rule modules in isolation, without
//! Proxmox or NetBox. `replay` and `diff` live in [`super::rules_replay`], `new` in
//! [`super::rules_new`].
//!
//! `FILE` is a `.wasm` component, or the word `default` for the rules embedded in this binary.
//! Parse first (clap, no I/O), then load the module through the same runtime the sync uses, so
//! what passes here behaves the same in production.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use guest_default::model::{
    Context, Desired, Fixture, FixtureOutcome, Guest, NetboxVm, Reconciled, RuleError,
};

use crate::rules::{
    self, CacheMode, DEFAULT_BATCH_SIZE, Limits, LoadKind, Metering, RulesModule, RulesRuntime,
    RuntimeConfig,
};

/// The default rules compiled natively, for `rules bench`'s comparison.
type NativeDefault = guest_default::DefaultRules;

/// The word that selects the embedded default rules instead of a file.
pub const DEFAULT_MODULE: &str = "default";

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print a module's name, version, WIT version, exports and imports; fail if this host
    /// cannot load it.
    Check {
        /// The component (`.wasm`), or `default` for the embedded rules.
        file: String,
        /// Also check against the NetBox of this sync config: the custom fields the module sets
        /// must exist on NetBox VMs (exit 1 naming those that do not).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Run every fixture (`*.json`) of DIR through the module; exit 1 on any failure.
    Test {
        /// The component (`.wasm`), or `default` for the embedded rules.
        file: String,
        /// Directory of fixture files (format: guest-default/README.md), or a recording of
        /// `sync --record` (its `fixtures/`).
        dir: PathBuf,
        /// Rewrite the expected answers of failing fixtures with what the module answers now
        /// (after a deliberate change), and fill in fixtures whose `expect` is empty; shows
        /// what changed in each file.
        #[arg(long)]
        update: bool,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Run a module over a recording (`sync --record DIR`) or a fixture directory and print the
    /// plan it would make: counts, fields changed, objects needed, per-VM changes.
    Replay {
        /// The component (`.wasm`), or `default` for the embedded rules.
        file: String,
        /// A recording directory, or a directory of fixtures.
        dir: PathBuf,
        /// `text` (a summary and the first VMs of each class) or `json` (every VM).
        #[arg(long, value_enum, default_value_t = super::OutputFormat::Text)]
        output: super::OutputFormat,
        /// VMs listed per class in text output.
        #[arg(long, default_value_t = 20)]
        examples: usize,
        /// VMs per `reconcile` call, as the sync's `batch_size`.
        #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
        batch: usize,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Show, VM by VM, where two modules answer differently over a recording (fields, needs,
    /// names, skips, errors); exit 2 when they differ, 0 when they agree everywhere.
    Diff {
        /// The module deployed now (`.wasm` or `default`).
        old: String,
        /// The module to deploy (`.wasm` or `default`).
        new: String,
        /// A recording directory, or a directory of fixtures.
        dir: PathBuf,
        /// `text` (totals and the first examples of each kind) or `json` (every VM).
        #[arg(long, value_enum, default_value_t = super::OutputFormat::Text)]
        output: super::OutputFormat,
        /// Examples shown per kind of difference in text output.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// VMs per `reconcile` call.
        #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
        batch: usize,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Write a new rule module crate: the default rules to start from, three fixtures, a README.
    New(super::rules_new::NewArgs),
    /// Map one guest and print `{"desired":..,"needs":..,"changes":..}` as JSON (WIT 0.3: also
    /// `desired_children`, `current_children` and the child changes `children`).
    Eval {
        /// The component (`.wasm`), or `default` (the default when neither FILE nor --rules is given).
        #[arg(conflicts_with = "rules")]
        file: Option<String>,
        /// Same as FILE.
        #[arg(long, value_name = "FILE")]
        rules: Option<String>,
        /// The Proxmox guest: a `/cluster/resources` row plus `cluster` and `config`.
        #[arg(long, value_name = "G.json", required_unless_present = "input")]
        guest: Option<PathBuf>,
        /// A fixture-shaped file with the whole input: `guest`, and optionally `current`,
        /// `context`, `network` and `children` (other keys, such as `expect`, are ignored). The
        /// other options override its parts.
        #[arg(long, value_name = "F.json")]
        input: Option<PathBuf>,
        /// The current NetBox record (raw API JSON), when the VM exists.
        #[arg(long, value_name = "C.json")]
        current: Option<PathBuf>,
        /// The context (NetBox version, known objects, policy overrides, settings).
        #[arg(long, value_name = "X.json")]
        context: Option<PathBuf>,
        /// The guest's network view (WIT 0.3), as in a fixture: `{"agent": [..]}` (the guest
        /// agent's `network-get-interfaces` result), `{"lxc-interfaces": [..]}` or
        /// `{"unknown": {"reason": "agent-off"}}`. Absent: not asked.
        #[arg(long, value_name = "N.json")]
        network: Option<PathBuf>,
        /// The VM's current children in NetBox (WIT 0.3), as the sync renders them:
        /// `{"interfaces": [..], "mac_addresses": [..], "ip_addresses": [..], "virtual_disks":
        /// [..], "primary_ip4": .., "primary_ip6": ..}`. Absent: not read (every child
        /// collection `keep`). Needs `--current`.
        #[arg(long, value_name = "K.json")]
        children: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Time `reconcile` (what the sync calls) over N generated VMs, through the component and
    /// (for the default rules) natively; prints JSON. Not a test.
    Bench {
        /// The component (`.wasm`), or `default` (the default).
        #[arg(default_value = DEFAULT_MODULE)]
        file: String,
        /// Number of generated VMs.
        #[arg(long, default_value_t = 100_000)]
        vms: usize,
        /// VMs per batch call.
        #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
        batch: usize,
        /// Generator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Meter by fuel (and report it per VM) instead of by deadline as the sync does; fuel
        /// costs ~15% more per call.
        #[arg(long)]
        fuel: bool,
        /// Give every VM two NICs, four IPs (guest agent) and two disks, and NetBox's children
        /// as a rerun finds them (WIT 0.3 inputs; a module before 0.3 ignores them).
        #[arg(long)]
        children: bool,
        /// Reconcile as into a NetBox that has none of the objects the VMs reference (the first
        /// sync: every VM lists them in `needs`). By default the context knows them all, as the
        /// sync's context does on every run after the first.
        #[arg(long)]
        first_sync: bool,
        /// Threads the batches run on, both sides [default: the cores available, as the sync
        /// uses]. `--threads 1` gives the one-thread figures.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32))]
        threads: Option<u16>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
}

/// Runtime options shared by the rules commands.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Directory of the compiled-component cache [default: $XDG_CACHE_HOME/pve2netbox/components].
    #[arg(long, env = "PVE2NETBOX_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the module on every run.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Fuel per call regardless of its size.
    #[arg(long, default_value_t = rules::DEFAULT_FUEL_BASE)]
    fuel_base: u64,
    /// Fuel added per item of a batch.
    #[arg(long, default_value_t = rules::DEFAULT_FUEL_PER_ITEM)]
    fuel_per_item: u64,
    /// Linear memory per call, in MiB.
    #[arg(long, default_value_t = rules::DEFAULT_MEMORY_BYTES >> 20)]
    memory_mib: usize,
    /// Wall-clock deadline per call, in milliseconds.
    #[arg(long, default_value_t = rules::DEFAULT_DEADLINE.as_millis() as u64)]
    deadline_ms: u64,
}

impl RuntimeArgs {
    /// `test` and `eval` meter by fuel (they report it); `check` and `bench` by deadline, as the
    /// sync does, unless `bench --fuel`.
    pub(super) fn config(&self, metering: Metering) -> RuntimeConfig {
        RuntimeConfig {
            limits: Limits {
                metering,
                fuel_base: self.fuel_base,
                fuel_per_item: self.fuel_per_item,
                memory_bytes: self.memory_mib.saturating_mul(1 << 20),
                deadline: Some(Duration::from_millis(self.deadline_ms)),
            },
            cache: if self.no_cache {
                CacheMode::Disabled
            } else {
                self.cache_dir
                    .clone()
                    .map_or(CacheMode::Default, CacheMode::Dir)
            },
        }
    }
}

pub fn run(command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Check {
            file,
            config,
            runtime,
        } => check(&file, config.as_deref(), &runtime),
        RulesCommand::Test {
            file,
            dir,
            update,
            runtime,
        } => test(
            &file,
            &rules::record::fixtures_dir(&dir),
            rules::record::recorded_context(&dir).as_ref(),
            update,
            &runtime,
        ),
        RulesCommand::Replay {
            file,
            dir,
            output,
            examples,
            batch,
            runtime,
        } => super::rules_replay::replay(&file, &dir, output, examples, batch, &runtime),
        RulesCommand::Diff {
            old,
            new,
            dir,
            output,
            examples,
            batch,
            runtime,
        } => super::rules_replay::diff(&old, &new, &dir, output, examples, batch, &runtime),
        RulesCommand::New(args) => super::rules_new::run(args),
        RulesCommand::Eval {
            file,
            rules,
            guest,
            input,
            current,
            context,
            network,
            children,
            runtime,
        } => {
            let file = file.or(rules).unwrap_or_else(|| DEFAULT_MODULE.to_string());
            let paths = EvalPaths {
                input: input.as_deref(),
                guest: guest.as_deref(),
                current: current.as_deref(),
                context: context.as_deref(),
                network: network.as_deref(),
                children: children.as_deref(),
            };
            eval(&file, &paths, &runtime)
        }
        RulesCommand::Bench {
            file,
            vms,
            batch,
            seed,
            fuel,
            children,
            first_sync,
            threads,
            runtime,
        } => {
            let threads = threads.map_or_else(rules::parallel::threads, usize::from);
            let workload = BenchWorkload {
                vms,
                batch,
                seed,
                children,
                first_sync,
                threads,
            };
            bench(&file, &workload, fuel, &runtime)
        }
    }
}

pub(super) fn load(
    file: &str,
    args: &RuntimeArgs,
    metering: Metering,
) -> anyhow::Result<(RulesRuntime, RulesModule)> {
    let runtime = RulesRuntime::new(args.config(metering))?;
    let module = if file == DEFAULT_MODULE {
        runtime.load_default()?
    } else {
        runtime.load_file(Path::new(file))?
    };
    Ok((runtime, module))
}

fn check(file: &str, config: Option<&Path>, args: &RuntimeArgs) -> anyhow::Result<ExitCode> {
    let (runtime, module) = load(file, args, Metering::Deadline)?;
    let info = module.info();
    let stats = module.load_stats();
    let limits = module.limits();
    println!("module:      {}", module.source());
    println!("name:        {}", info.name);
    println!("version:     {}", info.version);
    println!(
        "wit:         {} (exports {}; the module says {})",
        module.wit_version(),
        module.interface(),
        info.wit_version
    );
    println!("exports:     {}", module.functions().join(", "));
    println!(
        "children:    {}",
        if module.has_children() {
            "the guest's network view and NetBox's children in, child changes out (WIT 0.3 and later)"
        } else {
            "none (before WIT 0.3): the sync leaves its VMs' interfaces, IPs and disks alone"
        }
    );
    println!(
        "reconcile:   {}",
        if module.fuses_reconcile() {
            "one `reconcile` call per batch"
        } else {
            "normalize-desired, normalize-current and diff per batch (a WIT 0.1 module)"
        }
    );
    println!("imports:     {}", module.imports().join(", "));
    println!(
        "load:        {:.1} ms ({}), {:.1} ms with info()",
        stats.compile.as_secs_f64() * 1e3,
        match stats.kind {
            LoadKind::CacheHit => "from the cache",
            LoadKind::Compiled => "compiled",
        },
        stats.total.as_secs_f64() * 1e3
    );
    println!(
        "cache:       {}",
        runtime
            .cache_dir()
            .map_or("disabled".to_string(), |d| d.display().to_string())
    );
    println!(
        "limits:      {}, memory {} MiB, deadline {}",
        if limits.fuel() {
            format!(
                "fuel {} + {} per item",
                limits.fuel_base, limits.fuel_per_item
            )
        } else {
            "no fuel (metered by deadline)".to_string()
        },
        limits.memory_bytes >> 20,
        limits
            .deadline
            .map_or("none".to_string(), |d| format!("{} ms", d.as_millis()))
    );
    match config {
        None => Ok(ExitCode::SUCCESS),
        Some(path) => check_against_netbox(&module, path),
    }
}

/// `rules check --config`: the custom fields the module (and the config's policies) set exist
/// on the config's NetBox VMs.
fn check_against_netbox(module: &RulesModule, path: &Path) -> anyhow::Result<ExitCode> {
    let config = crate::config::Config::load(Some(path))?;
    let set = super::rule_fields::set_by(module, &config)?;
    let client = crate::clients::netbox::NetboxClient::new(
        &config.netbox,
        &config.timeouts,
        std::sync::Arc::new(crate::clients::http::RequestCounters::default()),
    )?;
    let missing = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(super::rule_fields::missing(&client, &set))
        .with_context(|| format!("listing the custom fields of {}", config.netbox.url))?;
    match super::rule_fields::verdict(module, set.len(), &missing) {
        Ok(line) => {
            println!("netbox:      {line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(line) => {
            println!("netbox:      {line}");
            Ok(ExitCode::from(1))
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {what} {}", path.display()))
}

/// The files `rules eval` reads its input from.
struct EvalPaths<'a> {
    input: Option<&'a Path>,
    guest: Option<&'a Path>,
    current: Option<&'a Path>,
    context: Option<&'a Path>,
    network: Option<&'a Path>,
    children: Option<&'a Path>,
}

/// A fixture-shaped input for `rules eval`: the fixture's input parts, anything else ignored.
#[derive(serde::Deserialize)]
struct EvalInput {
    guest: Guest,
    #[serde(default)]
    current: Option<NetboxVm>,
    #[serde(default)]
    context: Context,
    #[serde(default)]
    network: Option<guest_default::children::NetworkSource>,
    #[serde(default)]
    children: Option<guest_default::model::JsonText>,
}

impl EvalPaths<'_> {
    /// The input and context: the `--input` file's, each part replaced by its own option.
    fn read(&self) -> anyhow::Result<(guest_default::model::ReconcileInput, Context)> {
        let mut base = match self.input {
            Some(p) => read_json::<EvalInput>(p, "input")?,
            None => EvalInput {
                guest: Guest::default(),
                current: None,
                context: Context::default(),
                network: None,
                children: None,
            },
        };
        if let Some(p) = self.guest {
            base.guest = read_json(p, "guest")?;
        }
        if let Some(p) = self.current {
            base.current = Some(read_json(p, "current record")?);
        }
        if let Some(p) = self.context {
            base.context = read_json(p, "context")?;
        }
        if let Some(p) = self.network {
            base.network = Some(read_json(p, "network view")?);
        }
        if let Some(p) = self.children {
            base.children = Some(read_json(p, "current children")?);
        }
        if base.children.is_some() && base.current.is_none() {
            anyhow::bail!(
                "current children were given without a current record (--current, or `current` \
                 in the input): a VM that does not exist has no children"
            );
        }
        let input = guest_default::model::ReconcileInput {
            guest: base.guest,
            current: base.current,
            network: base.network.unwrap_or_default(),
            children: base.children,
        };
        Ok((input, base.context))
    }
}

fn eval(file: &str, paths: &EvalPaths<'_>, args: &RuntimeArgs) -> anyhow::Result<ExitCode> {
    let (input, ctx) = paths.read()?;
    let (_runtime, module) = load(file, args, Metering::Fuel)?;
    let ctx = rules::fixture::effective_context(&module, &ctx)?;
    let run = rules::fixture::run_case(&module, &ctx, input)?;
    let (json, failed) = outcome_json(&run.outcome, run.fuel);
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `{"desired":..,"needs":..,"changes":..,"fuel":..}`, plus `"error"` when a phase returned a
/// rule error (then the second value is true).
fn outcome_json(o: &FixtureOutcome, fuel: u64) -> (serde_json::Value, bool) {
    use serde_json::{Value, json};
    let mut out = serde_json::Map::new();
    let mut error = None;
    match &o.desired {
        Some(Ok(Desired::Vm(d))) => {
            out.insert("desired".into(), json!(d.vm));
            out.insert("needs".into(), json!(d.needs));
        }
        Some(Ok(Desired::Skip(reason))) => {
            out.insert("desired".into(), json!({ "skip": reason }));
            out.insert("needs".into(), json!([]));
        }
        Some(Err(e)) => {
            out.insert("desired".into(), Value::Null);
            out.insert("needs".into(), json!([]));
            error = Some(("normalize-desired", e));
        }
        None => {}
    }
    if let Some(Ok(vm)) = &o.current {
        out.insert("current".into(), json!(vm));
    } else if let Some(Err(e)) = &o.current {
        error = error.or(Some(("normalize-current", e)));
    }
    match &o.changes {
        Some(Ok(c)) => {
            out.insert("changes".into(), json!(c));
        }
        Some(Err(e)) => {
            out.insert("changes".into(), Value::Null);
            error = error.or(Some(("diff", e)));
        }
        None => {
            out.insert("changes".into(), Value::Null);
        }
    }
    if let Some(kids) = &o.children {
        for (key, part) in [
            (
                "desired_children",
                kids.desired.as_ref().map(|r| r.as_ref().map(|k| json!(k))),
            ),
            (
                "current_children",
                kids.current.as_ref().map(|r| r.as_ref().map(|k| json!(k))),
            ),
            (
                "children",
                kids.changes.as_ref().map(|r| r.as_ref().map(|k| json!(k))),
            ),
        ] {
            match part {
                Some(Ok(v)) => {
                    out.insert(key.into(), v);
                }
                Some(Err(e)) => error = error.or(Some((key, e))),
                None => {}
            }
        }
    }
    if let Some((phase, e)) = error {
        out.insert(
            "error".into(),
            json!({ "phase": phase, "code": e.code, "message": e.message }),
        );
    }
    out.insert("fuel".into(), json!(fuel));
    (Value::Object(out), error.is_some())
}

/// `rules test`: every fixture of `dir`; one without a context of its own takes `recorded`
/// (the recording's, when `dir` is a recording's fixtures).
fn test(
    file: &str,
    dir: &Path,
    recorded: Option<&Context>,
    update: bool,
    args: &RuntimeArgs,
) -> anyhow::Result<ExitCode> {
    let (_runtime, module) = load(file, args, Metering::Fuel)?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading fixture directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        anyhow::bail!("no fixture files (*.json) in {}", dir.display());
    }
    println!(
        "testing {} ({} {}, WIT {}; reconcile {}) with {} fixtures from {}",
        module.source(),
        module.info().name,
        module.info().version,
        module.wit_version(),
        if module.fuses_reconcile() {
            "fused, checked against the three steps"
        } else {
            "as the three steps"
        },
        paths.len(),
        dir.display()
    );
    let (mut passed, mut failed, mut updated) = (0usize, 0usize, 0usize);
    for path in &paths {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match test_one(&module, path, recorded) {
            // A fixture that checks nothing (`"expect": {}`) is filled in by --update.
            Ok((fuel, description, None)) if update && expects_nothing(path, recorded) => {
                match update_one(&module, path, recorded) {
                    Ok(Some(change)) => {
                        updated += 1;
                        println!("UPDATED  {name}  (fuel {fuel})  {description}");
                        println!("{}", indent(&change, "      "));
                    }
                    Ok(None) => {
                        failed += 1;
                        println!("FAIL  {name}  (fuel {fuel})  {description}: not updated");
                    }
                    Err(e) => {
                        failed += 1;
                        println!("FAIL  {name}  not updated: {e:#}");
                    }
                }
            }
            Ok((fuel, description, None)) => {
                passed += 1;
                println!("PASS  {name}  (fuel {fuel})  {description}");
            }
            Ok((fuel, description, Some(report))) if update => {
                match update_one(&module, path, recorded) {
                    Ok(Some(change)) => {
                        updated += 1;
                        println!("UPDATED  {name}  (fuel {fuel})  {description}");
                        println!("{}", indent(&change, "      "));
                    }
                    Ok(None) => {
                        failed += 1;
                        println!("FAIL  {name}  (fuel {fuel})  {description}");
                        println!("{}", indent(&report, "      "));
                        println!(
                            "      (not updated: the failure is not in what `expect` says, e.g. \
                         reconcile disagrees with the three steps)"
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        println!("FAIL  {name}  not updated: {e:#}");
                    }
                }
            }
            Ok((fuel, description, Some(report))) => {
                failed += 1;
                println!("FAIL  {name}  (fuel {fuel})  {description}");
                println!("{}", indent(&report, "      "));
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {name}");
                println!("{}", indent(&format!("{e:#}"), "      "));
            }
        }
    }
    failed += purity(&module, &paths, recorded)?;
    if update {
        println!("{passed} passed, {updated} updated, {failed} failed");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The purity the no-op memo relies on: each fixture's `reconcile` answer is the same alone
/// and in a batch of all of them, in file order and reversed. Prints the result; returns the
/// number of fixtures that failed it. (Fixtures that do not parse failed already.)
fn purity(
    module: &RulesModule,
    paths: &[PathBuf],
    recorded: Option<&Context>,
) -> anyhow::Result<usize> {
    let mut names = Vec::new();
    let mut fixtures = Vec::new();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        if let Ok(f) = rules::record::read_fixture(&text, recorded) {
            names.push(
                path.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            );
            fixtures.push(f);
        }
    }
    let problems = rules::fixture::check_purity(module, &fixtures)
        .context("checking that answers do not depend on the batch")?;
    if problems.is_empty() {
        println!(
            "PURE  {} fixtures: the same answer alone and in a batch, in either order (what the \
             no-op memo relies on)",
            fixtures.len()
        );
        return Ok(0);
    }
    for p in &problems {
        println!(
            "FAIL  {}  answers differently {} (a module must be pure: the no-op memo replays answers)",
            names[p.fixture], p.between
        );
        let pretty = |r| serde_json::to_string_pretty(&reconciled_json(r)).unwrap_or_default();
        println!(
            "{}",
            indent(&line_diff(&pretty(&p.first), &pretty(&p.second)), "      ")
        );
    }
    Ok(problems.len())
}

/// Rewrites the `expect` of the fixture at `path` with the module's answers; returns the
/// change of `expect` as a line diff, or `None` when the rewritten fixture would still fail
/// (nothing is written then).
fn update_one(
    module: &RulesModule,
    path: &Path,
    recorded: Option<&Context>,
) -> anyhow::Result<Option<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut fixture = rules::record::read_fixture(&text, recorded)
        .with_context(|| format!("parsing {}", path.display()))?;
    let run = rules::fixture::run_fixture(module, &fixture)
        .with_context(|| call_context(path, &fixture))?;
    let old = fixture.expect.clone();
    fixture.expect = rules::update::updated_expect(&old, &run.outcome);
    if fixture.check(&run.outcome).is_err() {
        return Ok(None);
    }
    if module.fuses_reconcile() && !rules::fixture::check_reconcile(module, &fixture)?.agrees() {
        return Ok(None);
    }
    let new_text = rules::update::replace_expect(&text, &fixture.expect)
        .with_context(|| format!("{}: no top-level \"expect\" to rewrite", path.display()))?;
    std::fs::write(path, new_text).with_context(|| format!("writing {}", path.display()))?;
    let pretty =
        |e| serde_json::to_string_pretty(&rules::update::expect_json(e)).unwrap_or_default();
    Ok(Some(format!(
        "--- expect before\n+++ expect now\n{}",
        line_diff(&pretty(&old), &pretty(&fixture.expect))
    )))
}

/// Whether the fixture at `path` checks nothing (its `expect` is empty).
fn expects_nothing(path: &Path, recorded: Option<&Context>) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| rules::record::read_fixture(&t, recorded).ok())
        .is_some_and(|f| {
            rules::update::expect_json(&f.expect)
                .as_object()
                .is_some_and(|m| m.is_empty())
        })
}

/// What a failed module call was about: the fixture file and the VM.
fn call_context(path: &Path, fixture: &Fixture) -> String {
    format!(
        "fixture {}, VM {}",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        fixture.guest.scope()
    )
}

/// Runs one fixture: (fuel, description, failure report).
fn test_one(
    module: &RulesModule,
    path: &Path,
    recorded: Option<&Context>,
) -> anyhow::Result<(u64, String, Option<String>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let fixture = rules::record::read_fixture(&text, recorded)
        .with_context(|| format!("parsing {}", path.display()))?;
    let run = rules::fixture::run_fixture(module, &fixture)
        .with_context(|| call_context(path, &fixture))?;
    // A 0.1 module's `reconcile` is its three steps run by the host: nothing to compare.
    let reconcile = if module.fuses_reconcile() {
        Some(
            rules::fixture::check_reconcile(module, &fixture)
                .with_context(|| call_context(path, &fixture))?,
        )
    } else {
        None
    };
    let mut report = fixture.check(&run.outcome).err().map(|problems| {
        let mut r = problems;
        // An answer the fixture did not expect: say which function gave it, for which VM.
        let (actual, _) = outcome_json(&run.outcome, run.fuel);
        if fixture.expect.error.is_none()
            && let Some(e) = actual.get("error")
        {
            r = format!(
                "VM {}: {} returned rule error {}: {}\n{r}",
                fixture.guest.scope(),
                e["phase"].as_str().unwrap_or("?"),
                e["code"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("?")
            );
        }
        let expected = expected_json(&fixture);
        let (actual, _) = outcome_json(&run.outcome, run.fuel);
        let actual = strip_unexpected(actual, &expected);
        let _ = write!(
            r,
            "\n--- expected\n+++ actual\n{}",
            line_diff(
                &serde_json::to_string_pretty(&expected).unwrap_or_default(),
                &serde_json::to_string_pretty(&actual).unwrap_or_default()
            )
        );
        r
    });
    if let Some(disagreement) = reconcile.as_ref().and_then(reconcile_report) {
        report = Some(match report {
            Some(r) => format!("{r}\n{disagreement}"),
            None => disagreement,
        });
    }
    Ok((run.fuel, fixture.description.clone(), report))
}

/// Why `reconcile` disagrees with the three steps, with a diff; `None` when it agrees.
fn reconcile_report(check: &rules::fixture::ReconcileCheck) -> Option<String> {
    if check.agrees() {
        return None;
    }
    let pretty = |r| serde_json::to_string_pretty(&reconciled_json(r)).unwrap_or_default();
    Some(format!(
        "reconcile disagrees with normalize-desired + normalize-current + diff (a module's \
         `reconcile` must return what its three steps do)\n--- the three steps\n+++ reconcile\n{}",
        line_diff(&pretty(&check.in_steps), &pretty(&check.reconciled))
    ))
}

/// One `reconcile` result as JSON: `{"name":..,"needs":..,"changes":..}`, `{"skip":..}` or
/// `{"error":{"code":..,"message":..}}`.
fn reconciled_json(r: &Result<Reconciled, RuleError>) -> serde_json::Value {
    use serde_json::json;
    match r {
        Ok(Reconciled::Vm(v)) if v.children.is_empty() => {
            json!({ "name": v.name, "needs": v.needs, "changes": v.changes })
        }
        Ok(Reconciled::Vm(v)) => {
            json!({ "name": v.name, "needs": v.needs, "changes": v.changes, "children": v.children })
        }
        Ok(Reconciled::Skip(reason)) => json!({ "skip": reason }),
        Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
    }
}

/// The parts a fixture expects, in the shape `outcome_json` prints.
fn expected_json(f: &Fixture) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let Some(d) = &f.expect.desired {
        out.insert("desired".into(), serde_json::json!(d));
    }
    if let Some(n) = &f.expect.needs {
        out.insert("needs".into(), serde_json::json!(n));
    }
    if let Some(c) = &f.expect.changes {
        out.insert("changes".into(), serde_json::json!(c));
    }
    if let Some(d) = &f.expect.desired_children {
        out.insert("desired_children".into(), serde_json::json!(d));
    }
    if let Some(c) = &f.expect.children {
        out.insert("children".into(), serde_json::json!(c));
    }
    if let Some(code) = &f.expect.error {
        out.insert("error".into(), serde_json::json!({ "code": code }));
    }
    serde_json::Value::Object(out)
}

/// Keeps only the keys the fixture checks, so the diff shows what matters.
fn strip_unexpected(actual: serde_json::Value, expected: &serde_json::Value) -> serde_json::Value {
    match (actual, expected) {
        (serde_json::Value::Object(mut a), serde_json::Value::Object(e)) => {
            a.retain(|k, _| e.contains_key(k));
            if let (Some(err), Some(serde_json::Value::Object(_))) =
                (a.get_mut("error"), e.get("error"))
                && let serde_json::Value::Object(m) = err
            {
                m.retain(|k, _| k == "code");
            }
            serde_json::Value::Object(a)
        }
        (a, _) => a,
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line diff (longest common subsequence): ` ` same, `-` expected only, `+` actual only.
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] > lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    out.trim_end().to_string()
}

/// What `rules bench` runs: how many VMs, in which batches, on how many threads.
struct BenchWorkload {
    vms: usize,
    batch: usize,
    seed: u64,
    children: bool,
    /// The context knows none of the referenced objects (see `RulesCommand::Bench`).
    first_sync: bool,
    threads: usize,
}

fn bench(
    file: &str,
    w: &BenchWorkload,
    fuel: bool,
    args: &RuntimeArgs,
) -> anyhow::Result<ExitCode> {
    let &BenchWorkload {
        vms,
        batch,
        seed,
        children,
        first_sync,
        threads,
    } = w;
    use rules::bench::{Workload, first_mismatch, known_objects, run_native, run_wasm};
    let metering = if fuel {
        Metering::Fuel
    } else {
        Metering::Deadline
    };
    let (_runtime, module) = load(file, args, metering)?;
    let guests = rules::generate::guests("bench", vms, seed);
    let current = rules::generate::current_records(&guests, seed);
    let mut workload = Workload::new(guests, current, batch);
    if children {
        workload = workload.with_children();
    }
    let mut ctx = rules::fixture::effective_context(&module, &Context::default())?;
    if !first_sync {
        // The objects a first sync would have created: what the module asks for with none known.
        ctx.known = known_objects(&module, &ctx, &workload, threads)?;
    }

    // Each side: an untimed warm-up pass, then the timed one, on the same JSON input.
    let (wasm, wasm_out) = run_wasm(&module, &ctx, &workload, threads)?;
    let native =
        (file == DEFAULT_MODULE).then(|| run_native::<NativeDefault>(&ctx, &workload, threads));
    let mismatch = native
        .as_ref()
        .and_then(|(_, native_out)| first_mismatch(&wasm_out, native_out));
    drop(wasm_out);
    let per_vm = |ms: f64| if vms == 0 { 0.0 } else { ms * 1e3 / vms as f64 };
    let stats = module.load_stats();
    let report = serde_json::json!({
        "module": module.source(),
        "name": module.info().name,
        "version": module.info().version,
        "vms": vms,
        "batch": batch,
        "threads": threads,
        "input": "reconcile on each config as JSON text with its matched record (what the sync sends), both sides",
        "children": children,
        "context": if first_sync {
            "first sync: no referenced object known, every VM lists its objects in needs"
        } else {
            "every referenced object known, as on every sync after the first"
        },
        "known_objects": ctx.known.len(),
        "warm_up": "one untimed pass per side before its timed pass",
        "times": "total_ms is wall time; cpu_ms the process's CPU time meanwhile (all threads)",
        "load_ms": stats.compile.as_secs_f64() * 1e3,
        "load": match stats.kind { LoadKind::CacheHit => "cache", LoadKind::Compiled => "compiled" },
        "reconcile": if module.fuses_reconcile() { "fused" } else { "three steps" },
        "wasm_ms": wasm.times,
        "wasm_us_per_vm": per_vm(wasm.times.total_ms),
        "metering": if fuel { "fuel" } else { "deadline" },
        "fuel_total": fuel.then_some(wasm.fuel),
        "fuel_per_vm": fuel.then(|| if vms == 0 { 0 } else { wasm.fuel / vms as u64 }),
        "native_ms": native.as_ref().map(|(p, _)| p.times),
        "native_us_per_vm": native.as_ref().map(|(p, _)| per_vm(p.times.total_ms)),
        "ratio": native.as_ref().map(|(p, _)| if p.times.total_ms > 0.0 { wasm.times.total_ms / p.times.total_ms } else { 0.0 }),
        "tally": wasm.tally,
        "native_agrees": native.as_ref().map(|_| mismatch.is_none()),
        // No portable hardware counter (virtual machines often have none): count them with
        // callgrind on the two timed functions, each alone (BENCHMARKS.md).
        "instructions_per_vm": serde_json::Value::Null,
        "instructions_how": "valgrind --tool=callgrind --toggle-collect='*bench::measure_wasm*' \
            pve2netbox rules bench --vms 10000 --threads 1 (then '*bench::measure_native*'); the \
            'Collected' count is one timed pass: divide by --vms (one thread: callgrind's \
            toggle follows the thread that enters the function)",
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some((index, wasm, native)) = mismatch {
        eprintln!(
            "error: the component and the native rules answer differently, first at VM {index}:\n  \
             wasm:   {wasm}\n  native: {native}"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_that_disagrees_with_the_steps_is_reported() {
        use guest_default::model::{FieldChange, JsonText, ReconciledVm};
        use rules::fixture::ReconcileCheck;
        let vm = |new: &str| {
            Ok(Reconciled::Vm(ReconciledVm {
                name: Some("web-1".into()),
                needs: Vec::new(),
                changes: vec![FieldChange {
                    field: "memory".into(),
                    old: JsonText("1024".into()),
                    new: JsonText(new.into()),
                }],
                children: Vec::new(),
            }))
        };
        let same = ReconcileCheck {
            reconciled: vm("2048"),
            in_steps: vm("2048"),
        };
        assert_eq!(reconcile_report(&same), None);
        let changed = ReconcileCheck {
            reconciled: vm("4096"),
            in_steps: vm("2048"),
        };
        let r = reconcile_report(&changed).expect("a disagreement");
        assert!(r.starts_with("reconcile disagrees with"), "{r}");
        let line =
            |mark: char, text: &str| r.lines().any(|l| l.starts_with(mark) && l.contains(text));
        assert!(
            line('-', "\"new\": 2048") && line('+', "\"new\": 4096"),
            "{r}"
        );
        let skipped = ReconcileCheck {
            reconciled: Ok(Reconciled::Skip("template".into())),
            in_steps: Err(RuleError::new("bad-config", "no memory")),
        };
        let r = reconcile_report(&skipped).expect("a disagreement");
        let line =
            |mark: char, text: &str| r.lines().any(|l| l.starts_with(mark) && l.contains(text));
        assert!(
            line('+', "\"skip\": \"template\"") && line('-', "\"bad-config\""),
            "{r}"
        );
    }

    #[test]
    fn line_diff_marks_changed_lines() {
        let d = line_diff(
            "{\n  \"a\": 1,\n  \"b\": 2\n}",
            "{\n  \"a\": 1,\n  \"b\": 3\n}",
        );
        assert_eq!(d, "  {\n    \"a\": 1,\n-   \"b\": 2\n+   \"b\": 3\n  }");
    }
}
