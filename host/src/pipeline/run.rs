//! The sync orchestrator: config -> preflight -> (Proxmox read ∥ NetBox snapshot) -> reconcile
//! (rules in batches) -> plan -> dispatch -> task history -> report. One function per mode:
//! `sync` writes, `dry-run` and `plan` stop after the plan and create nothing, `apply` carries
//! out a saved plan after refusing targets that changed since.
//!
//! Edges: the phases are their own modules (pure ones in `reconcile`, `orphans`, `plan`,
//! `report`; I/O in `preflight`, `proxmox_read`, `snapshot`, `dispatch`, `task_history`); this
//! module only sequences them, times them and fills the run report. The rules module is called
//! through [`ModuleRules`], which batches and turns a trapped batch into per-VM errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use guest_default::model::{
    Context, FieldPolicy, JsonReconcileInput, JsonText, Ownership as RuleOwnership, Reconciled,
    RuleError, merge_policies,
};

use crate::clients::http::RequestCounters;
use crate::clients::netbox::{NetboxClient, NetboxError};
use crate::config::{Config, OrphanPolicy, Ownership};
use crate::pipeline::dispatch::children as children_dispatch;
use crate::pipeline::dispatch::{self, DispatchSettings};
use crate::pipeline::orphans::{self, OrphanSettings};
use crate::pipeline::plan::{Notice, OpKind, Operation, Plan};
use crate::pipeline::preflight::{self, ClusterSpec, PreflightError, PreflightInput};
use crate::pipeline::proxmox_read::{self, Discovery, ReadGuest};
use crate::pipeline::reconcile::{
    self, Answer, Class, NeedsInterner, ObservedGuest, OutputContract, Rules, RulesItem,
    RulesResult, SharedTexts, VmOutcome,
};
use crate::pipeline::report::{ErrorEntry, Mode, RulesInfo, RunReport};
use crate::pipeline::snapshot::children::{ChildrenSnapshot, VmChildren, VmCursor};
use crate::pipeline::snapshot::{self, SnapshotError};
use crate::pipeline::task_history::{self, TaskTarget, Unrecorded};
use crate::progress::Progress;
use crate::rules::memo::{KeyInput, Memo, MemoHeader, VmKey};
use crate::rules::record::{RecordError, Recorder};
use crate::rules::{BatchOutput, RulesError, RulesModule, RulesRuntime, RuntimeConfig, parallel};
use crate::safety::lease::{LeaseError, NetboxLease};

/// What a run does.
#[derive(Debug, Clone)]
pub enum RunMode {
    /// Reconcile and write.
    Sync,
    /// Reconcile and report what would be written.
    DryRun,
    /// Like `DryRun`; the caller saves the plan.
    Plan,
    /// Carry out a saved plan.
    Apply(Box<Plan>),
}

impl RunMode {
    fn report_mode(&self) -> Mode {
        match self {
            RunMode::Sync => Mode::Sync,
            RunMode::DryRun => Mode::DryRun,
            RunMode::Plan => Mode::Plan,
            RunMode::Apply(_) => Mode::Apply,
        }
    }

    fn is_preview(&self) -> bool {
        matches!(self, RunMode::DryRun | RunMode::Plan)
    }
}

/// A run's inputs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: Config,
    /// Rule module replacing the config's and the embedded default.
    pub rules: Option<PathBuf>,
    pub mode: RunMode,
    pub progress: Progress,
    /// The state dir holding the no-op memo ([`crate::rules::memo`]); `None`: no memo (`--no-memo`,
    /// `sync.memo = false`, or no state dir).
    pub memo_dir: Option<PathBuf>,
    /// Record every VM's rules input and answer as fixtures here ([`crate::rules::record`]).
    pub record: Option<PathBuf>,
}

/// A run's result.
#[derive(Debug)]
pub struct RunResult {
    pub report: RunReport,
    pub plan: Plan,
    pub exit_code: u8,
}

/// A run that could not do its job (exit 1). Per-VM and per-scope failures are not errors here:
/// they are in the report.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync: netbox client: {0}")]
    Netbox(#[source] Box<NetboxError>),
    #[error("sync: loading the rules: {0}")]
    Rules(#[source] Box<RulesError>),
    #[error(transparent)]
    Preflight(Box<PreflightError>),
    #[error(transparent)]
    Snapshot(Box<SnapshotError>),
    #[error("apply: re-reading the plan's targets: {0}")]
    Stale(#[source] Box<NetboxError>),
    #[error("sync: no Proxmox endpoint could be read: {0}")]
    NoEndpoint(String),
    /// The NetBox run lease was refused or lost (see [`crate::safety::lease`]).
    #[error(transparent)]
    Lease(Box<LeaseError>),
    #[error(transparent)]
    Record(Box<RecordError>),
}

impl From<RecordError> for SyncError {
    fn from(e: RecordError) -> Self {
        SyncError::Record(Box::new(e))
    }
}

impl From<LeaseError> for SyncError {
    fn from(e: LeaseError) -> Self {
        SyncError::Lease(Box::new(e))
    }
}

impl From<PreflightError> for SyncError {
    fn from(e: PreflightError) -> Self {
        SyncError::Preflight(Box::new(e))
    }
}

impl From<SnapshotError> for SyncError {
    fn from(e: SnapshotError) -> Self {
        SyncError::Snapshot(Box::new(e))
    }
}

/// Loads the rule module: `path`, else the embedded default.
pub fn load_rules(path: Option<&Path>) -> Result<(RulesRuntime, RulesModule), SyncError> {
    let rules = |e: RulesError| SyncError::Rules(Box::new(e));
    let runtime = RulesRuntime::new(RuntimeConfig::default()).map_err(rules)?;
    let module = match path {
        Some(p) => runtime.load_file(p),
        None => runtime.load_default(),
    }
    .map_err(rules)?;
    Ok((runtime, module))
}

fn rules_info(module: &RulesModule) -> RulesInfo {
    let info = module.info();
    RulesInfo {
        name: info.name.clone(),
        version: info.version.clone(),
        wit: info.wit_version.clone(),
    }
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs one sync, dry-run, plan or apply.
pub async fn run(opts: RunOptions) -> Result<RunResult, SyncError> {
    let started = Instant::now();
    let config = &opts.config;
    let rules_path = opts.rules.clone().or_else(|| config.sync.rules.clone());
    // Rules first: a bad module fails before any request.
    let rules = load_rules(rules_path.as_deref())?;
    let pve_counters = Arc::new(RequestCounters::default());
    let nb_counters = Arc::new(RequestCounters::default());
    let netbox = NetboxClient::new(&config.netbox, &config.timeouts, nb_counters.clone())
        .map_err(|e| SyncError::Netbox(Box::new(e)))?;
    // The NetBox run lease: created before the first NetBox read (that moment bounds its
    // change-log check), taken by the first write only, given back on every way out.
    let lease = if opts.mode.is_preview() {
        NetboxLease::preview()
    } else {
        NetboxLease::new(&netbox, &config.netbox.url, config.sync.lock_ttl)
    };
    let result = run_phases(
        &opts,
        rules,
        &netbox,
        &lease,
        started,
        &pve_counters,
        &nb_counters,
    )
    .await;
    lease.release().await;
    result
}

/// The phases of [`run`], every NetBox write through `lease`.
async fn run_phases(
    opts: &RunOptions,
    (runtime, loaded): (RulesRuntime, RulesModule),
    netbox: &NetboxClient,
    lease: &NetboxLease,
    started: Instant,
    pve_counters: &Arc<RequestCounters>,
    nb_counters: &Arc<RequestCounters>,
) -> Result<RunResult, SyncError> {
    let module = &loaded;
    let config = &opts.config;
    let mut report = RunReport::new(opts.mode.report_mode());
    report.rules = rules_info(module);
    let progress = &opts.progress;
    // Before any request: a recording directory that cannot be written fails the run here.
    let mut recorder = match &opts.record {
        // `apply` carries out a saved plan: it asks the rules nothing to record.
        Some(dir) if !matches!(opts.mode, RunMode::Apply(_)) => {
            Some(Recorder::create(dir, report.mode.as_str())?)
        }
        _ => None,
    };

    // Preflight (with the discovery of the Proxmox clusters it makes NetBox clusters for).
    let t = Instant::now();
    let bar = progress.phase("preflight", None);
    let discovery = proxmox_read::discover(config, pve_counters.clone()).await;
    if discovery.endpoints.is_empty() {
        let why = discovery
            .errors
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(SyncError::NoEndpoint(if why.is_empty() {
            "no [[proxmox]] endpoint configured".into()
        } else {
            why
        }));
    }
    let input = PreflightInput {
        clusters: discovery
            .endpoints
            .iter()
            .map(|e| ClusterSpec {
                name: e.cluster().to_owned(),
                nodes: e.status.nodes.iter().map(|n| n.name.clone()).collect(),
            })
            .collect(),
        site: config.sync.site.clone(),
        orphans: config.sync.orphans,
        dry_run: opts.mode.is_preview(),
        task_history: config.sync.task_history,
    };
    let pre = preflight::run(netbox, &input, lease).await?;
    bar.finish(&format!(
        "{} clusters, {} objects created, {} missing",
        pre.cluster_ids.len(),
        pre.created,
        pre.pending.len()
    ));
    report.phases_ms.preflight = ms(t);

    if let RunMode::Apply(plan) = &opts.mode {
        let plan = (**plan).clone();
        return apply(
            netbox,
            lease,
            config,
            &pre,
            plan,
            report,
            progress,
            &discovery,
            started,
            pve_counters,
            nb_counters,
        )
        .await;
    }

    // Proxmox read ∥ NetBox snapshot.
    let read_bar = progress.phase("proxmox read", Some(0));
    let snap_bar = progress.phase("netbox snapshot", None);
    let t = Instant::now();
    let read_fut = async {
        let r = proxmox_read::read_guests(
            &discovery.endpoints,
            &pre.cluster_ids,
            config.sync.max_concurrency,
            // The guests' network views feed only the children, which are off unless asked.
            crate::pipeline::proxmox_read::guest_network::NetworkSettings {
                enabled: config.sync.children && config.sync.agent,
                ..crate::pipeline::proxmox_read::guest_network::NetworkSettings::of(&config.sync)
            },
            &read_bar,
        )
        .await;
        (r, ms(t))
    };
    let snap_fut = async {
        let s = if config.sync.children {
            let (vms, children) = snapshot::read_with_children(netbox, &pre).await;
            (vms, Some(children))
        } else {
            (snapshot::read(netbox, &pre).await, None)
        };
        (s, ms(t))
    };
    let ((mut read, read_ms), ((snap, children), snap_ms)) = tokio::join!(read_fut, snap_fut);
    let snap = snap?;
    if let Some(children) = &children {
        for e in children.errors() {
            tracing::warn!("NetBox children not read, so kept as they are: {e}");
        }
    }
    read_bar.finish(&format!("{} guests", read.guests.len()));
    snap_bar.finish(&format!("{} NetBox VMs", snap.records().len()));
    report.phases_ms.proxmox_read = read_ms;
    report.phases_ms.netbox_snapshot = snap_ms;

    // Reconcile.
    let t = Instant::now();
    let bar = progress.phase("reconcile", Some(read.guests.len() as u64));
    let ctx = context(config, module, &pre);
    if let Some(r) = recorder.as_mut() {
        r.set_context(&ctx, policy_overrides(config, &pre));
        if let Some(vlans) = children.as_ref().and_then(ChildrenSnapshot::vlans) {
            let vids: std::collections::BTreeSet<u64> = vlans.iter().map(|v| v.vid).collect();
            r.set_vlans(
                vids.into_iter()
                    .filter(|vid| crate::pipeline::plan::children::vlan_for(vlans, *vid).is_some())
                    .collect(),
            );
        }
    }
    let batch = config.sync.batch_size.max(1);
    // The rules run synchronously and wasmtime-wasi's blocking bindings start a runtime of
    // their own (e.g. when a module writes to stderr), which panics on a tokio worker thread:
    // tell tokio this thread blocks for the reconcile.
    let observed = observe(&read.guests);
    // A recording asks the module about every VM: a memo hit would leave its VM unrecorded.
    let memo_dir = opts.memo_dir.as_deref().filter(|_| recorder.is_none());
    let mut memo = memo_dir.map(|dir| {
        let header = MemoHeader::new(
            &config.netbox.url,
            module.memo_key(),
            &module.wit_version(),
            &ctx,
        );
        Memo::open(Memo::path(dir, &config.netbox.url), header)
    });
    let contract = OutputContract::with_custom_fields(pre.custom_fields.clone())
        .with_children(module.has_children())
        .writing_children(config.sync.children);
    let asked = tokio::task::block_in_place(|| {
        let mut rules = ModuleRules {
            module,
            ctx: &ctx,
            guests: &mut read.guests,
            batch,
            threads: parallel::threads(),
            needs: NeedsInterner::default(),
            memo: memo.as_mut(),
            spent: std::time::Duration::ZERO,
            spent_cpu: std::time::Duration::ZERO,
            recorder: recorder.as_mut(),
            children: children.as_ref(),
            contract: &contract,
            held: SharedTexts::default(),
        };
        let asked = reconcile::ask_all(&observed, &snap, &mut rules, &contract);
        (asked, rules.spent, rules.spent_cpu)
    });
    let (asked, rules_spent, rules_cpu) = asked;
    tracing::info!(
        rules_ms = rules_spent.as_secs_f64() * 1e3,
        rules_cpu_ms = rules_cpu.as_secs_f64() * 1e3,
        memo_hits = memo.as_ref().map_or(0, Memo::hits),
        guests = read.guests.len(),
        "rules step (memo keys, lookups and module calls)"
    );
    if let Some(r) = recorder {
        r.finish(module)?;
    }
    // The rules are done: their engine goes, and with it the instance pool's linear memories,
    // which stay resident between calls (up to 32 MiB per rules thread), and the guests read
    // (their configs, tens of MB at 100k guests), before the outcomes are made: held through
    // that, they made the first sync's peak with children.
    drop((loaded, runtime));
    let guests = read.guests.len() as u64;
    drop(read.guests);
    let mut outcomes = reconcile::classify_all(&observed, &snap, asked, &contract);
    // Saved once the reconcile phase is complete (a run stopped before never writes it).
    if let Some(memo) = &memo {
        report.memo.hits = memo.hits();
        if let Err(e) = memo.save() {
            tracing::warn!(error = %e, "the no-op memo was not saved; the next run asks the rules about every VM");
        }
    }
    bar.inc(guests);
    let findings = orphans::find_orphans(&read.reads, &observed, &snap, &orphan_settings(config));
    // Nor the snapshot (~0.4 KB per NetBox VM, and its children) nor the observed guests past
    // the orphans: the plan is built from the outcomes, and its operations are the first
    // sync's peak.
    drop((snap, observed));
    let mut plan = Plan::build_with_children(&mut outcomes, &findings, children.as_ref());
    drop(children);
    if !opts.mode.is_preview() {
        // A writing run prints no plan table: say here why a guest is skipped or written under a
        // temporary name (listed orphans are in the counts, every run, and would only repeat).
        for n in plan
            .notices
            .iter()
            .filter(|n| !matches!(n.kind.as_str(), "orphan" | "children" | "vlan"))
        {
            tracing::warn!(scope = %n.scope, kind = %n.kind, "{}", n.message);
        }
        // With `sync.children`, a `children` notice is a child write the host refused or a
        // field it left out (an operator's child, a VLAN it cannot tell): each is said.
        // Without it, one line for the children not applied (every created VM of a 0.3 module
        // has some), each VM's in the plan: an info line, since it is how every create goes
        // then, and a scheduled run that succeeds must print nothing.
        let held: Vec<&Notice> = plan
            .notices
            .iter()
            .filter(|n| n.kind == "children")
            .collect();
        if config.sync.children {
            for n in held {
                tracing::warn!(scope = %n.scope, "{}", n.message);
            }
            // VLANs a site does not keep in NetBox: in the plan, not worth a warning per run,
            // nor a line per NIC (a site without VLANs in NetBox has one per tagged NIC).
            let mut vlans = 0usize;
            for n in plan.notices.iter().filter(|n| n.kind == "vlan") {
                tracing::debug!(scope = %n.scope, "{}", n.message);
                vlans += 1;
            }
            if vlans > 0 {
                tracing::info!(
                    nics = vlans,
                    "{vlans} NICs name a VLAN NetBox does not have: their untagged VLAN is left \
                     out (each one at debug level and in `plan`)"
                );
            }
        } else if !held.is_empty() {
            let held = held.len();
            tracing::info!(
                vms = held,
                "child changes of {held} VMs not applied (children are written with \
                 sync.children = true)"
            );
        }
    }
    // Past the plan, no more of the outcomes than the task history reads.
    let outcomes: Vec<Journaled> = if config.sync.task_history && !opts.mode.is_preview() {
        // Into a list of their own: `collect` would reuse the outcomes' allocation in place
        // (~420 bytes an outcome, ~40 MB at 100k VMs) for the ~60-byte records, through the
        // dispatch, at a first sync's memory peak.
        let mut journaled = Vec::with_capacity(outcomes.len());
        journaled.extend(outcomes.into_iter().map(Journaled::from));
        journaled
    } else {
        Vec::new()
    };
    add_preflight_pending(&mut plan, &pre.pending);
    add_errors(&mut plan, &discovery.errors);
    bar.finish(&format!(
        "{} operations ({} create, {} update, {} adopt, {} noop)",
        plan.operations.len(),
        plan.summary.counts.create,
        plan.summary.counts.update,
        plan.summary.counts.adopt,
        plan.summary.counts.noop
    ));
    report.phases_ms.reconcile = ms(t);
    let counts_errors = RunReport::from_plan(report.mode, &plan);
    report.counts = counts_errors.counts;
    report.errors = counts_errors.errors;

    if opts.mode.is_preview() {
        return Ok(finish(report, plan, started, pve_counters, nb_counters));
    }

    // Dispatch. Every write goes through the lease: taken here if the plan writes anything
    // (and preflight did not take it already).
    let t = Instant::now();
    let bar = progress.phase("dispatch", Some(plan.operations.len() as u64));
    let settings = DispatchSettings {
        write_window: config.sync.write_window,
        write_concurrency: config.sync.write_concurrency,
        bulk: config.sync.bulk,
    };
    let writer = if plan.has_changes() {
        lease.ensure().await?
    } else {
        netbox
    };
    let done = dispatch::dispatch(writer, &plan.operations, &pre, settings, &bar).await;
    bar.finish(&format!(
        "{} writes, {} failed",
        done.done,
        done.failures.len()
    ));
    report.phases_ms.dispatch = ms(t);
    for failure in &done.failures {
        report.record_failure(failure.was, failure.entry.clone());
    }

    // Task history.
    if config.sync.task_history {
        let t = Instant::now();
        let targets = task_targets(&outcomes, &plan.operations, &done);
        let unrecorded = unrecorded_guests(&outcomes, &targets);
        // The outcomes have given all the phase needs (~0.1 KB a VM).
        drop(outcomes);
        let bar = progress.phase("task history", Some(targets.len() as u64));
        let history = task_history::run(
            netbox,
            &discovery.endpoints,
            &pre,
            targets,
            &unrecorded,
            config.sync.max_concurrency,
            &bar,
            lease,
        )
        .await?;
        bar.finish(&format!("{} journal entries", history.written));
        report.errors.extend(history.errors);
        report.phases_ms.task_history = ms(t);
    }
    Ok(finish(report, plan, started, pve_counters, nb_counters))
}

/// `apply`: refuse stale targets, then dispatch exactly the plan's operations.
#[allow(clippy::too_many_arguments)]
async fn apply(
    netbox: &NetboxClient,
    lease: &NetboxLease,
    config: &Config,
    pre: &preflight::Preflight,
    plan: Plan,
    mut report: RunReport,
    progress: &Progress,
    discovery: &Discovery,
    started: Instant,
    pve_counters: &Arc<RequestCounters>,
    nb_counters: &Arc<RequestCounters>,
) -> Result<RunResult, SyncError> {
    let planned = RunReport::from_plan(report.mode, &plan);
    report.counts = planned.counts;
    report.errors = planned.errors;
    report.errors.extend(discovery.errors.iter().cloned());
    let t = Instant::now();
    // The lease comes before the stale check, so no other run writes between that re-read
    // and our writes.
    let writer = if plan.has_changes() {
        lease.ensure().await?
    } else {
        netbox
    };
    let refused = dispatch::check_stale(writer, &plan.operations, pre)
        .await
        .map_err(|e| SyncError::Stale(Box::new(e)))?;
    let refused_children = children_dispatch::check_stale(writer, &plan.operations)
        .await
        .map_err(|e| SyncError::Stale(Box::new(e)))?;
    let mut ops: Vec<Operation> = Vec::new();
    let mut kept_index = Vec::new();
    for (index, op) in plan.operations.iter().enumerate() {
        match refused.iter().find(|(i, _)| *i == index) {
            Some((_, why)) => report.record_failure(
                class_word(op.op),
                ErrorEntry::new(&op.scope, "apply", format!("refused: {why}")),
            ),
            None => {
                let mut op = op.clone();
                // A child that moved since the plan is refused alone; children that needed
                // it fail in dispatch with the reason.
                let mut refused_here: Vec<usize> = Vec::new();
                for (_, child, why) in refused_children.iter().filter(|(i, _, _)| *i == index) {
                    refused_here.push(*child);
                    report.record_failure(
                        children_dispatch::CHILD_FAILURE,
                        ErrorEntry::new(&op.scope, "apply", format!("refused: {why}")),
                    );
                }
                let mut position = 0;
                op.children.retain(|_| {
                    position += 1;
                    !refused_here.contains(&(position - 1))
                });
                ops.push(op);
                kept_index.push(index);
            }
        }
    }
    let bar = progress.phase("dispatch", Some(ops.len() as u64));
    let settings = DispatchSettings {
        write_window: config.sync.write_window,
        write_concurrency: config.sync.write_concurrency,
        bulk: config.sync.bulk,
    };
    let done = dispatch::dispatch(writer, &ops, pre, settings, &bar).await;
    bar.finish(&format!(
        "{} writes, {} failed, {} refused",
        done.done,
        done.failures.len(),
        refused.len()
    ));
    for failure in &done.failures {
        report.record_failure(failure.was, failure.entry.clone());
    }
    report.phases_ms.dispatch = ms(t);
    Ok(finish(report, plan, started, pve_counters, nb_counters))
}

fn class_word(op: OpKind) -> &'static str {
    match op {
        OpKind::Create => "create",
        OpKind::Update => "update",
        OpKind::Adopt => "adopt",
        OpKind::Orphan => "orphan",
        OpKind::Delete => "delete",
        OpKind::CreateObject => "object",
    }
}

fn finish(
    mut report: RunReport,
    plan: Plan,
    started: Instant,
    pve: &RequestCounters,
    nb: &RequestCounters,
) -> RunResult {
    let p = pve.snapshot();
    let n = nb.snapshot();
    report.requests.proxmox = p.reads + p.writes;
    report.requests.netbox_read = n.reads;
    report.requests.netbox_write = n.writes;
    report.requests.netbox_retry_wait_ms = n.retry_wait_ms;
    report.phases_ms.total = ms(started);
    report
        .errors
        .sort_by(|a, b| (&a.scope, &a.phase, &a.message).cmp(&(&b.scope, &b.phase, &b.message)));
    report.errors.dedup();
    let exit_code = report.exit_code(false, plan.operations.len());
    RunResult {
        report,
        plan,
        exit_code,
    }
}

/// The rules' context: NetBox version, known objects, policies (module defaults, then the
/// config's overrides; `device` is ignored without a site, since no node device is made), and
/// the config's settings.
pub fn context(config: &Config, module: &RulesModule, pre: &preflight::Preflight) -> Context {
    let defaults = module.default_policies().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the rules' default policies could not be read; using none");
        Vec::new()
    });
    let overrides = policy_overrides(config, pre);
    Context {
        netbox_version: pre.netbox_version.clone(),
        known: pre.known.clone(),
        policies: merge_policies(defaults, &overrides),
        settings: config
            .rules
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), JsonText::from_value(v)))
            .collect(),
    }
}

/// The config's policy overrides (and `device` ignored without a site), before the module's
/// defaults are merged under them.
pub fn policy_overrides(config: &Config, pre: &preflight::Preflight) -> Vec<FieldPolicy> {
    let mut overrides: Vec<FieldPolicy> = config
        .rules
        .policies
        .iter()
        .map(|(field, o)| FieldPolicy {
            field: field.clone(),
            ownership: match o {
                Ownership::Owned => RuleOwnership::Owned,
                Ownership::Merge => RuleOwnership::Merge,
                Ownership::Seed => RuleOwnership::Seed,
                Ownership::Ignore => RuleOwnership::Ignore,
            },
        })
        .collect();
    if !pre.has_site {
        overrides.push(FieldPolicy {
            field: "device".into(),
            ownership: RuleOwnership::Ignore,
        });
    }
    overrides
}

fn orphan_settings(config: &Config) -> OrphanSettings {
    OrphanSettings {
        policy: match config.sync.orphans {
            OrphanPolicy::Report => orphans::OrphanPolicy::Report,
            OrphanPolicy::Mark => orphans::OrphanPolicy::Mark,
            OrphanPolicy::Delete => orphans::OrphanPolicy::Delete,
        },
        delete_after_runs: config.sync.orphan_delete_after_runs,
        delete_budget_percent: u32::from(config.sync.delete_budget_percent),
        ..OrphanSettings::default()
    }
}

/// The guests Proxmox listed, as reconcile sees them (in the order of `guests`).
pub fn observe(guests: &[ReadGuest]) -> Vec<ObservedGuest> {
    guests
        .iter()
        .map(|read| {
            let g = read.guest();
            ObservedGuest {
                cluster: g.cluster().to_owned(),
                cluster_id: read.cluster_id,
                vmid: g.vmid(),
                kind: g.kind(),
                node: g.node().to_owned(),
                name: g.name().map(str::to_owned),
                endpoint: read.endpoint,
            }
        })
        .collect()
}

/// The rule module's `reconcile` in batches of `batch` guests; a failed batch (trap, limit)
/// makes its guests ERROR and the others go on.
pub struct ModuleRules<'a> {
    pub module: &'a RulesModule,
    pub ctx: &'a Context,
    /// The guests read, in the order of the observed guests the items point into. A guest's
    /// guest, config and network view are released once the rules will not be asked about it
    /// again.
    pub guests: &'a mut [ReadGuest],
    pub batch: usize,
    /// Batches asked at once (see [`parallel::threads`]); 1 while recording.
    pub threads: usize,
    pub needs: NeedsInterner,
    /// The no-op memo: answers the VMs whose inputs are those of a stored "no changes", and
    /// learns this run's "no changes" answers.
    pub memo: Option<&'a mut Memo>,
    /// Time spent in [`Rules::reconcile`]: the rules step (keys, lookups, calls).
    pub spent: std::time::Duration,
    /// CPU time of the whole process meanwhile (all threads), where the OS tells it: what
    /// the step costs on a busy machine, where wall time also counts other processes.
    pub spent_cpu: std::time::Duration,
    /// `--record`: gets every input asked and its answer (the memo is off when recording).
    pub recorder: Option<&'a mut Recorder>,
    /// NetBox's children of the snapshot's VMs (`sync.children`); `None`: not read.
    pub children: Option<&'a ChildrenSnapshot>,
    /// What the reconcile holds the answers to: each answer is settled against it as its
    /// batch returns ([`reconcile::settle_answer`]), not once every guest is answered.
    pub contract: &'a OutputContract,
    /// The texts of the child changes held back, shared between VMs.
    pub held: SharedTexts,
}

/// The VM's current children, which the module gets rendered (`None`: not read).
fn children_of<'s>(
    children: Option<&'s ChildrenSnapshot>,
    current: Option<&reconcile::NetboxRecord>,
) -> Option<VmChildren<'s>> {
    children?.vm_children(current?.id())
}

/// One batch made ready for the module: each asked item's memo key, the memo's answers
/// (`None`: to be asked) and the inputs of the items to ask, in order.
struct Prepared {
    keys: Vec<Option<VmKey>>,
    answers: Vec<Option<RulesResult>>,
    input: Vec<JsonReconcileInput>,
}

/// What the memo says of one item: asked (its key's digest; the identity is the item's) or
/// answered (the stored answer's name). Small: one is held per item of the call, 24 bytes
/// (a hit's key is not needed: only the answers of the VMs asked are recorded).
enum Lookup {
    /// [`VmKey::digest`] in two halves: a `u128` would align the whole to 16 bytes.
    Asked([u64; 2]),
    Hit(Option<String>),
}

const _: () = assert!(std::mem::size_of::<Lookup>() <= 24);

impl Lookup {
    fn new(key: VmKey, hit: Option<Option<String>>) -> Self {
        match hit {
            Some(name) => Lookup::Hit(name),
            None => Lookup::Asked([key.digest as u64, (key.digest >> 64) as u64]),
        }
    }

    fn is_asked(&self) -> bool {
        matches!(self, Lookup::Asked(_))
    }
}

/// Items a key thread is given at least: starting a thread costs about as much as keying a
/// hundred VMs, so a small call (an adoption's second ask) stays on the calling thread.
const MIN_KEY_RANGE: usize = 256;

/// Items whose key inputs are gathered at once on a key thread, in one buffer it reuses.
const KEY_CHUNK: usize = 256;

impl ModuleRules<'_> {
    /// Each item's [`Lookup`] in order (empty without a memo), the whole call in one pass on
    /// up to `threads` threads, each given a contiguous range and writing into its part of
    /// one result. A key reads ~1 KB of inputs per VM (cache misses, not arithmetic), which
    /// with the lookups is most of a memoized rerun's rules step. Why one pass and not one
    /// per window: threads started per window (~100 at 100k VMs) each allocated their key
    /// inputs afresh, and the allocator gives a finished thread's pages back at once, so every
    /// window paid thread start-up and page faults.
    fn call_lookups(&self, items: &[RulesItem<'_>], threads: usize) -> Vec<Lookup> {
        let Some(memo) = self.memo.as_deref() else {
            return Vec::new();
        };
        let (guests, snapshot) = (&*self.guests, self.children);
        // Every slot is written below (the ranges cover the items).
        let mut out: Vec<Lookup> = std::iter::repeat_with(|| Lookup::Asked([0; 2]))
            .take(items.len())
            .collect();
        parallel::map_ranges(items, &mut out, threads, MIN_KEY_RANGE, |items, out| {
            let mut inputs: Vec<KeyInput<'_>> = Vec::with_capacity(KEY_CHUNK.min(items.len()));
            let mut buf = Vec::with_capacity(4096);
            let mut finder = memo.finder();
            // This thread's children lookups each start where its last ended: its range's
            // VMs come mostly in id order.
            let mut cursor = VmCursor::default();
            for (items, out) in items.chunks(KEY_CHUNK).zip(out.chunks_mut(KEY_CHUNK)) {
                inputs.clear();
                inputs.extend(items.iter().map(|item| {
                    let read = &guests[item.guest];
                    // Keyed by everything the module gets, its network view and children
                    // included.
                    (
                        (read.cluster_id, read.guest().vmid()),
                        read.guest().key(),
                        read.config_packed(),
                        item.current.map(|r| &r.vm),
                        read.network_kept().memo_key(),
                        snapshot.zip(item.current).and_then(|(snap, current)| {
                            snap.vm_children_from(current.id(), &mut cursor)
                        }),
                    )
                }));
                memo.keys_each(&inputs, &mut buf, |i, key| {
                    out[i] = Lookup::new(key, finder.hit(&key));
                });
            }
        });
        out
    }

    /// The children texts of a window's items the memo did not answer (one per item, `None`
    /// for a hit; empty when no item needs one: without children, or all hits), on up to
    /// `threads` threads: rendering them is most of preparing a first sync's inputs. Only a
    /// window's texts are held at once.
    fn window_texts(
        &self,
        window: &[&[RulesItem<'_>]],
        lookups: &[Vec<Lookup>],
        threads: usize,
    ) -> Vec<Vec<Option<JsonText>>> {
        let asked = |lookups: &[Lookup], i: usize| lookups.get(i).is_none_or(Lookup::is_asked);
        let Some(snapshot) = self.children else {
            return Vec::new();
        };
        let none_asked = window
            .iter()
            .zip(lookups)
            .all(|(chunk, l)| (0..chunk.len()).all(|i| !asked(l, i)));
        if none_asked {
            return Vec::new();
        }
        let work: Vec<_> = window.iter().zip(lookups).collect();
        parallel::map_batches(work, threads, |_, (chunk, lookups)| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let children =
                        children_of(Some(snapshot), item.current).filter(|_| asked(lookups, i))?;
                    Some(JsonText(children.json()))
                })
                .collect()
        })
    }

    /// A batch's memo hits and the inputs of the rest (by its `lookups`); the config and
    /// network view of each guest asked for the last time go with its input. A hit's are left
    /// to be freed with the others after the rules step: a hit's answer is a name, so holding
    /// them costs no peak, and freeing 100k configs one by one was a large part of a memoized
    /// rerun's step.
    fn prepare(
        &mut self,
        chunk: &[RulesItem<'_>],
        lookups: Vec<Lookup>,
        texts: Vec<Option<JsonText>>,
    ) -> Prepared {
        let mut keys = Vec::with_capacity(chunk.len());
        let mut answers: Vec<Option<RulesResult>> = Vec::with_capacity(chunk.len());
        let mut input: Vec<JsonReconcileInput> = Vec::with_capacity(chunk.len());
        let (mut lookups, mut texts) = (lookups.into_iter(), texts.into_iter());
        for item in chunk {
            let (lookup, children) = (lookups.next(), texts.next().flatten());
            let digest = match lookup {
                Some(Lookup::Hit(name)) => {
                    // Not recorded: its key is not kept.
                    keys.push(None);
                    answers.push(Some(RulesResult::Vm(Answer {
                        name,
                        ..Answer::default()
                    })));
                    continue;
                }
                Some(Lookup::Asked([lo, hi])) => Some(u128::from(lo) | (u128::from(hi) << 64)),
                None => None,
            };
            let read = &self.guests[item.guest];
            keys.push(digest.map(|digest| VmKey {
                identity: (read.cluster_id, read.guest().vmid()),
                digest,
            }));
            answers.push(None);
            let read = &mut self.guests[item.guest];
            // The rules' model of the NetBox VM, made for this batch only.
            let current = item.current.map(|r| r.vm.to_vm());
            input.push(if item.again {
                read.rules_input_json(current, children)
            } else {
                read.take_rules_input_json(current, children)
            });
            if let (Some(r), Some(i)) = (self.recorder.as_deref_mut(), input.last()) {
                r.input(i);
            }
        }
        Prepared {
            keys,
            answers,
            input,
        }
    }

    /// A batch's results in order (memo hits and the module's answers merged) onto `out`; the
    /// module's "no changes" answers are remembered.
    fn merge(
        &mut self,
        index: usize,
        keys: Vec<Option<VmKey>>,
        answers: Vec<Option<RulesResult>>,
        answer: Result<BatchOutput<Result<Reconciled, RuleError>>, RulesError>,
        out: &mut Vec<RulesResult>,
    ) {
        let asked: Vec<Option<&VmKey>> = keys
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.is_none())
            .map(|(k, _)| k.as_ref())
            .collect();
        let results = if asked.is_empty() {
            Vec::new()
        } else {
            if let Some(r) = self.recorder.as_deref_mut() {
                match &answer {
                    Ok(out) => r.answered(&out.items),
                    Err(e) => r.failed(&e.to_string()),
                }
            }
            match answer {
                Ok(out) => out
                    .items
                    .into_iter()
                    .zip(&asked)
                    .map(|(answer, key)| {
                        // Only "no changes" is remembered: not a skip, an error or a
                        // failed batch, and not an answer that needs objects.
                        if let (Some(memo), Some(key), Ok(Reconciled::Vm(vm))) =
                            (self.memo.as_deref_mut(), key, &answer)
                            && vm.changes.is_empty()
                            && vm.needs.is_empty()
                            && vm.children.is_empty()
                        {
                            memo.record(key, vm.name.as_deref());
                        }
                        let mut result = RulesResult::from(answer);
                        reconcile::settle_answer(&mut result, self.contract, &mut self.held);
                        self.needs.intern(&mut result);
                        result
                    })
                    .collect(),
                Err(e) => {
                    // The batch's index is already in the error.
                    let message = e.to_string();
                    tracing::error!(batch = index, error = %message, "rules batch failed");
                    vec![RulesResult::Error(message); asked.len()]
                }
            }
        };
        let mut results = results.into_iter();
        out.extend(answers.into_iter().map(|a| {
            a.or_else(|| results.next()).unwrap_or_else(|| {
                RulesResult::Error("the rules returned fewer results than asked".into())
            })
        }));
    }
}

impl Rules for ModuleRules<'_> {
    /// The memo keys and lookups of every item first, in one pass on the threads; then
    /// batches in windows of `threads`: each window's children texts rendered (the VMs asked
    /// only), its batches prepared in order (hits, inputs), asked at once on up to `threads`
    /// threads (the path `rules bench` times), then merged in order, so the answers, the memo
    /// and the plan are those of one thread.
    /// A window holds at most `threads` batches of inputs at once.
    fn reconcile(&mut self, items: &[RulesItem<'_>]) -> Vec<RulesResult> {
        let started = Instant::now();
        let cpu_started = parallel::process_cpu_ns();
        // A recording pairs each batch's inputs with its answers as they come: one at a time.
        let threads = if self.recorder.is_some() {
            1
        } else {
            self.threads.max(1)
        };
        let chunks: Vec<&[RulesItem<'_>]> = items.chunks(self.batch.max(1)).collect();
        let mut out = Vec::with_capacity(items.len());
        let mut lookups = self.call_lookups(items, threads).into_iter();
        for (w, window) in chunks.chunks(threads).enumerate() {
            let first = w * threads;
            let mut pending = Vec::with_capacity(window.len());
            let mut inputs = Vec::with_capacity(window.len());
            // Without a memo there are no lookups: every item is asked.
            let window_lookups: Vec<Vec<Lookup>> = window
                .iter()
                .map(|chunk| lookups.by_ref().take(chunk.len()).collect())
                .collect();
            let texts = self.window_texts(window, &window_lookups, threads);
            let mut texts = texts.into_iter();
            for (chunk, lookups) in window.iter().zip(window_lookups) {
                let p = self.prepare(chunk, lookups, texts.next().unwrap_or_default());
                pending.push((p.keys, p.answers));
                inputs.push(p.input);
            }
            // A batch the memo answered whole is not called.
            let answers = self
                .module
                .reconcile_json_batches(self.ctx, inputs, first, threads);
            for (j, ((keys, hits), answer)) in pending.into_iter().zip(answers).enumerate() {
                self.merge(first + j, keys, hits, answer, &mut out);
            }
        }
        self.spent += started.elapsed();
        if let (Some(a), Some(b)) = (cpu_started, parallel::process_cpu_ns()) {
            self.spent_cpu += std::time::Duration::from_nanos(b.saturating_sub(a));
        }
        out
    }
}

/// Preflight objects a preview would create, listed first in the plan.
fn add_preflight_pending(plan: &mut Plan, pending: &[guest_default::model::ObjectSpec]) {
    if pending.is_empty() {
        return;
    }
    let ops: Vec<Operation> = pending
        .iter()
        .cloned()
        .map(Operation::create_object)
        .collect();
    plan.summary.objects += ops.len() as u64;
    plan.summary.writes += ops.len() as u64;
    plan.operations.splice(0..0, ops);
}

fn add_errors(plan: &mut Plan, errors: &[ErrorEntry]) {
    plan.errors.extend(errors.iter().cloned());
    plan.errors
        .sort_by(|a, b| (&a.scope, &a.phase, &a.message).cmp(&(&b.scope, &b.phase, &b.message)));
    plan.errors.dedup();
}

/// What the task history needs of a guest's outcome once the plan holds its writes. The
/// outcomes themselves (~400 bytes each, with their texts) are not kept through the dispatch.
struct Journaled {
    endpoint: usize,
    cluster: String,
    vmid: u32,
    netbox_id: Option<u64>,
    /// Kept or written (noop, create, update, adopt): its tasks are copied.
    kept_or_written: bool,
    /// Left alone on purpose: its tasks are neither copied nor wait for it.
    skipped: bool,
}

impl From<VmOutcome> for Journaled {
    fn from(o: VmOutcome) -> Self {
        Journaled {
            endpoint: o.endpoint,
            cluster: o.cluster,
            vmid: o.vmid,
            netbox_id: o.netbox_id,
            kept_or_written: matches!(
                o.class,
                Class::Noop | Class::Create | Class::Update | Class::Adopt
            ),
            skipped: matches!(o.class, Class::Skip(_)),
        }
    }
}

/// The VMs whose tasks are copied: every guest kept or written without failure.
fn task_targets(
    outcomes: &[Journaled],
    ops: &[Operation],
    done: &dispatch::DispatchOutcome,
) -> Vec<TaskTarget> {
    // A failed child write leaves its VM written: its tasks are still copied.
    let failed: std::collections::BTreeSet<(String, u32)> = done
        .failures
        .iter()
        .filter(|f| f.was != children_dispatch::CHILD_FAILURE)
        .filter_map(|f| {
            let op = ops.get(f.index)?;
            Some((op.cluster.clone()?, op.vmid?))
        })
        .collect();
    outcomes
        .iter()
        .filter(|o| o.kept_or_written)
        .filter(|o| !failed.contains(&(o.cluster.clone(), o.vmid)))
        .filter_map(|o| {
            let netbox_id = done
                .vm_ids
                .get(&(o.cluster.clone(), o.vmid))
                .copied()
                .or(o.netbox_id)?;
            Some(TaskTarget {
                endpoint: o.endpoint,
                vmid: o.vmid,
                netbox_id,
            })
        })
        .collect()
}

/// The guests whose tasks this run cannot journal although it should (not targets: their VM
/// write failed, or the rules failed on them); skipped guests are left out on purpose (they
/// stay out of NetBox and must not hold the task watermark forever).
fn unrecorded_guests(outcomes: &[Journaled], targets: &[TaskTarget]) -> Vec<Unrecorded> {
    let recorded: std::collections::BTreeSet<(usize, u32)> =
        targets.iter().map(|t| (t.endpoint, t.vmid)).collect();
    outcomes
        .iter()
        .filter(|o| !o.skipped)
        .filter(|o| !recorded.contains(&(o.endpoint, o.vmid)))
        .map(|o| Unrecorded {
            endpoint: o.endpoint,
            vmid: o.vmid,
        })
        .collect()
}
