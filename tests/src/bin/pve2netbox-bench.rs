//! `pve2netbox-bench`: measures the real `pve2netbox` binary against the in-process
//! simulators and prints ONE JSON object of figures, each next to its goal and measured in the
//! same run as its reference (issue 7). A benchmark, not a test: nothing here runs under
//! `cargo test`, and no test asserts on time.
//!
//! ```text
//! cargo run --release -p pve2netbox-testkit --bin pve2netbox-bench -- [--quick] [--out DIR]
//! ```
//!
//! Stages: the rules (`rules bench`), then per VM count of the growth series one zero-profile
//! simulator (first sync, no-op rerun, memoized no-op rerun, and at the stated scales the Proxmox read bound, the
//! NetBox snapshot bound and the peak RSS), then the realistic profile (single vs bulk writes,
//! write windows in flight at 1, 2 and 4, end to end). The growth plot goes to `--out` as `bench-growth.svg`, the object also as
//! `bench.json`. Progress goes to stderr.

#[path = "pve2netbox-bench/children.rs"]
mod children;
#[path = "pve2netbox-bench/cpu_split.rs"]
mod cpu_split;
#[path = "pve2netbox-bench/figures.rs"]
mod figures;
#[path = "pve2netbox-bench/plot.rs"]
mod plot;
#[path = "pve2netbox-bench/runner.rs"]
mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use pve2netbox_testkit::{
    FaultPatch, InventorySpec, Profile, ServiceKind, SimConfig, SimHandle, Simulators,
};
use serde_json::{Map, Value, json};

use figures::{Figure, Goal, round};
use runner::{Binary, Run};

/// Proxmox latency of the read-bound run, per request (the issue's 20 ms).
const PVE_LATENCY_MS: f64 = 20.0;
/// Proxmox reads in flight for the read-bound run (the issue's 32).
const READ_CONCURRENCY: usize = 32;
/// Latency injected per NetBox request in the snapshot-bound run: about what a `fields=`
/// page of 1000 VMs costs a real NetBox 4.7 (netbox-live.md 2.5: ~0.11 s).
const PAGE_LATENCY_MS: f64 = 100.0;
/// Rows per snapshot page (host `netbox::client::PAGE_SIZE`; the testkit cannot import it).
const PAGE_SIZE: usize = 1000;
/// Pages fetched in parallel (host `netbox::client::PAGE_PARALLELISM`).
const PAGE_PARALLELISM: usize = 4;
/// Generator seed: the same inventory in every run.
const SEED: u64 = 1;
/// The peak-memory goal, 300 MB (decimal, the issue's unit), in the MiB `VmHWM` is reported in
/// (rounded down to a tenth so that the goal text stays short).
const PEAK_RSS_GOAL_MIB: f64 = 286.1;
/// Guests per Proxmox node, as a mid-size estate (the simulator caps nothing).
const VMS_PER_NODE: usize = 5000;
/// Nodes at most (sim-bench's 100k layout).
const MAX_NODES: usize = 20;
/// Phases of the run report, in pipeline order.
const PHASES: [&str; 7] = [
    "preflight",
    "proxmox_read",
    "netbox_snapshot",
    "reconcile",
    "dispatch",
    "task_history",
    "total",
];
/// Below this a phase's time is noise for the growth exponent.
const EXPONENT_MIN_MS: f64 = 20.0;

#[derive(Parser, Debug)]
#[command(
    name = "pve2netbox-bench",
    about = "Benchmarks of pve2netbox against the simulators"
)]
struct Args {
    /// The reduced set (under a minute): smaller scales, same figures.
    #[arg(long)]
    quick: bool,
    /// Where `bench.json` and `bench-growth.svg` go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The `pve2netbox` binary [default: next to this one].
    #[arg(long)]
    pve2netbox: Option<PathBuf>,
    /// Stages to leave out: rules, growth, bulk, concurrency, e2e. Repeatable.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// VMs of the end-to-end stage instead of the mode's (the full 10,000 takes ~12 minutes
    /// in the realistic profile).
    #[arg(long)]
    e2e_vms: Option<usize>,
    /// VM counts of the growth series instead of the mode's (comma-separated); the bound,
    /// no-op and memory figures run at whichever of them is their scale.
    #[arg(long, value_delimiter = ',')]
    growth: Vec<usize>,
    /// Runs of each bound figure (read, snapshot) in the same simulator; the figure is their
    /// median, every run's value is in its detail. Repeating shows the spread on a noisy machine.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// At each growth scale only the first sync (it fills NetBox) and the bound figures: no
    /// rerun, so no growth rerun points, no-op or memory figures. To measure the bounds quickly.
    #[arg(long)]
    bounds_only: bool,
    /// The children workload at each growth scale (`sync.children = true`; every VM with two
    /// NICs, four agent-reported IPs and two disks): the read, snapshot (per kind), no-op and
    /// memory figures at every growth count, no memoized rerun.
    #[arg(long)]
    children: bool,
}

/// One VM count of the growth series: its first sync, its no-op rerun (the rules asked about
/// every VM: the memo is empty after a first sync) and its memoized rerun, when they ran.
type GrowthPoint = (usize, Option<Run>, Option<Run>, Option<Run>);

/// How the scale runs go (from the command line).
struct RunOpts {
    /// Runs per bound figure.
    repeat: usize,
    /// First sync and bound figures only.
    bounds_only: bool,
    /// The children workload, every figure at every growth count.
    children: bool,
}

impl RunOpts {
    /// Whether a figure stated at `scale` is taken at `n`.
    fn at(&self, scale: usize, n: usize) -> bool {
        self.children || n == scale
    }
}

/// The scales of one mode.
struct Scales {
    growth: Vec<usize>,
    rules: usize,
    noop: usize,
    read: usize,
    snapshot: usize,
    rss: usize,
    bulk: usize,
    concurrency: usize,
    e2e: usize,
}

impl Scales {
    /// The issue's scales.
    fn full() -> Self {
        Self {
            growth: vec![1_000, 10_000, 100_000],
            rules: 100_000,
            noop: 10_000,
            read: 10_000,
            snapshot: 100_000,
            rss: 100_000,
            bulk: 1_000,
            concurrency: 500,
            e2e: 10_000,
        }
    }

    /// Reduced so the whole set fits in a minute on 2 shared cores.
    fn quick() -> Self {
        Self {
            growth: vec![100, 1_000, 5_000],
            rules: 10_000,
            noop: 1_000,
            read: 1_000,
            snapshot: 5_000,
            rss: 5_000,
            bulk: 50,
            concurrency: 50,
            e2e: 100,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let exe = match &args.pve2netbox {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("bench binary has no directory")?
            .join("pve2netbox"),
    };
    anyhow::ensure!(
        exe.exists(),
        "{} not found: build it (cargo build --release -p pve2netbox) or pass --pve2netbox PATH",
        exe.display()
    );
    let mut scales = if args.quick {
        Scales::quick()
    } else {
        Scales::full()
    };
    if let Some(n) = args.e2e_vms {
        scales.e2e = n;
    }
    if !args.growth.is_empty() {
        scales.growth = args.growth.clone();
    }
    let opts = RunOpts {
        repeat: args.repeat.max(1),
        bounds_only: args.bounds_only,
        children: args.children,
    };
    let full = Scales::full();
    std::fs::create_dir_all(&args.out)?;
    let work = args.out.join("work");
    let skip = |stage: &str| args.skip.iter().any(|s| s == stage);

    let mut figs: BTreeMap<&'static str, Figure> = BTreeMap::new();
    let mut load = vec![load_sample("start")];

    if !skip("rules") {
        progress(&format!("rules bench at {} VMs", scales.rules));
        rules_figures(&exe, scales.rules, full.rules, &mut figs).await;
        load.push(load_sample("after rules"));
    }

    let mut growth: Vec<GrowthPoint> = Vec::new();
    if !skip("growth") {
        for &n in &scales.growth {
            progress(&format!("zero profile at {n} VMs"));
            let (first, rerun, memo) =
                scale_run(&exe, n, &scales, &full, &opts, &work, &mut figs).await;
            growth.push((n, first, rerun, memo));
            load.push(load_sample(&format!("after zero profile {n}")));
        }
    }

    if !skip("bulk") {
        progress(&format!(
            "realistic profile: single vs bulk, {} VMs",
            scales.bulk
        ));
        let fig = bulk_figure(&exe, scales.bulk, &work).await;
        figs.insert(
            "bulk_speedup",
            fig.unwrap_or_else(|e| fail(e, "ratio", scales.bulk, full.bulk)),
        );
        load.push(load_sample("after bulk"));
    }

    if !skip("concurrency") {
        progress(&format!(
            "realistic profile: write windows in flight, {} VMs",
            scales.concurrency
        ));
        let fig = concurrency_figure(&exe, scales.concurrency, &work).await;
        figs.insert(
            "write_concurrency_4_speedup",
            fig.unwrap_or_else(|e| fail(e, "ratio", scales.concurrency, full.concurrency)),
        );
        load.push(load_sample("after concurrency"));
    }

    if !skip("e2e") {
        progress(&format!(
            "realistic profile: end to end, {} VMs",
            scales.e2e
        ));
        e2e_figures(&exe, scales.e2e, full.e2e, &work, &mut figs).await;
        load.push(load_sample("after e2e"));
    }

    let svg = args.out.join("bench-growth.svg");
    let growth_json = growth_json(&growth);
    if !growth.is_empty() {
        let series = |pick: fn(&GrowthPoint) -> Option<&Run>| {
            PHASES
                .iter()
                .map(|p| {
                    let pts = growth
                        .iter()
                        .filter_map(|g| Some((g.0 as f64, pick(g)?.phase_ms(p)?)))
                        .collect();
                    (p.to_string(), pts)
                })
                .collect()
        };
        plot::growth_svg(
            &svg,
            &[
                plot::Panel {
                    title: "first sync (zero profile)",
                    series: series(|g| g.1.as_ref()),
                },
                plot::Panel {
                    title: "no-op rerun (zero profile)",
                    series: series(|g| g.2.as_ref()),
                },
                plot::Panel {
                    title: "memoized no-op rerun (zero profile)",
                    series: series(|g| g.3.as_ref()),
                },
            ],
        )?;
    }

    let figures: Map<String, Value> = figs
        .iter()
        .map(|(k, f)| (k.to_string(), f.to_json()))
        .collect();
    let out = json!({
        "bench_version": 1,
        "mode": if args.quick { "quick" } else { "full" },
        "workload": if args.children {
            "children: every VM 2 NICs, 4 agent IPs, 2 disks; sync.children = true"
        } else {
            "VMs (sync.children off)"
        },
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "pve2netbox": exe.display().to_string(),
        "machine": machine(load),
        "duration_s": round(started.elapsed().as_secs_f64()),
        "figures": figures,
        "growth": growth_json,
        "plot": svg.display().to_string(),
    });
    let text = serde_json::to_string_pretty(&out)?;
    std::fs::write(args.out.join("bench.json"), &text)?;
    println!("{text}");
    Ok(())
}

fn progress(msg: &str) {
    eprintln!("[pve2netbox-bench] {msg}");
}

fn fail(e: anyhow::Error, unit: &'static str, vms: usize, goal_vms: usize) -> Figure {
    progress(&format!("failed: {e:#}"));
    Figure::failed(format!("{e:#}"), unit, vms, goal_vms, Goal::None)
}

/// `reconcile_ms_100k` and `wasm_native_ratio` from one `rules bench` run (both timed in the
/// same process over the same generated VMs), with the context of a sync after the first (every
/// referenced object known); the same two with `_first_sync` from a run whose context knows none,
/// so every VM lists its objects in `needs`.
async fn rules_figures(
    exe: &Path,
    n: usize,
    goal_n: usize,
    figs: &mut BTreeMap<&'static str, Figure>,
) {
    for (first_sync, reconcile, ratio) in [
        (false, "reconcile_ms_100k", "wasm_native_ratio"),
        (
            true,
            "reconcile_ms_100k_first_sync",
            "wasm_native_ratio_first_sync",
        ),
    ] {
        match Binary::new(exe).rules_bench(n, first_sync).await {
            Ok(run) => {
                let r = &run.report;
                let wasm = r["wasm_ms"]["total_ms"].as_f64().unwrap_or(f64::NAN);
                let native = r["native_ms"]["total_ms"].as_f64().unwrap_or(f64::NAN);
                let detail = json!({
                    "command": format!("pve2netbox {}", run.args.join(" ")),
                    "input": r["input"], "context": r["context"], "warm_up": r["warm_up"],
                    "wasm_ms": r["wasm_ms"], "native_ms": r["native_ms"],
                    "native_agrees": r["native_agrees"], "fuel_per_vm": r["fuel_per_vm"],
                    "load": r["load"], "batch": r["batch"],
                    "instructions_how": r["instructions_how"],
                });
                figs.insert(
                    reconcile,
                    Figure::new(wasm, "ms", n, goal_n, Goal::AtMost(1000.0))
                        .with_detail(detail.clone()),
                );
                figs.insert(
                    ratio,
                    Figure::new(wasm / native, "ratio", n, goal_n, Goal::AtMost(2.5)).with_detail(
                        json!({"wasm_ms": round(wasm), "native_ms": round(native),
                               "context": r["context"],
                               "like_for_like": "both sides take each config as JSON text; 2.0 stays the stretch goal"}),
                    ),
                );
            }
            Err(e) => {
                figs.insert(reconcile, fail(e, "ms", n, goal_n));
            }
        }
    }
}

async fn start_sim(n: usize, profile: Profile) -> anyhow::Result<SimHandle> {
    Simulators::start(sim_config(n, profile))
        .await
        .context("starting the simulators")
}

fn sim_config(n: usize, profile: Profile) -> SimConfig {
    SimConfig {
        inventory: InventorySpec {
            vms: n,
            nodes: (n / VMS_PER_NODE).clamp(2, MAX_NODES),
            clusters: 1,
            standalone: 0,
            seed: SEED,
        },
        profile,
        ..SimConfig::default()
    }
}

/// One zero-profile simulator with `n` guests: first sync and rerun (the growth points),
/// plus whichever of the bound, no-op and memory figures are stated at `n`.
async fn scale_run(
    exe: &Path,
    n: usize,
    s: &Scales,
    full: &Scales,
    opts: &RunOpts,
    work: &Path,
    figs: &mut BTreeMap<&'static str, Figure>,
) -> (Option<Run>, Option<Run>, Option<Run>) {
    let sim = if opts.children {
        pve2netbox_testkit::start_children_workload(sim_config(n, Profile::Zero))
            .await
            .context("starting the simulators with the children workload")
    } else {
        start_sim(n, Profile::Zero).await
    };
    let sim = match sim {
        Ok(sim) => sim,
        Err(e) => {
            progress(&format!("zero profile {n}: {e:#}"));
            return (None, None, None);
        }
    };
    let dir = work.join(format!(
        "zero-{n}{}",
        if opts.children { "-children" } else { "" }
    ));
    // A cache of its own: the first sync's peak is a user's first sync's, compile included.
    let bin = Binary::for_sim(exe, &sim, &dir, opts.children)
        .map(|bin| bin.own_component_cache(&dir.join("component-cache")));
    let bin = match bin {
        Ok(b) => b,
        Err(e) => {
            progress(&format!("zero profile {n}: {e:#}"));
            return (None, None, None);
        }
    };
    let first = match bin.sync(&[]).await {
        Ok(run) => run,
        Err(e) => {
            progress(&format!("first sync at {n}: {e:#}"));
            return (None, None, None);
        }
    };
    progress(&format!(
        "  first sync {:.1} s, created {}, peak RSS {:.0} MiB",
        first.wall.as_secs_f64(),
        first.count("create"),
        first.peak_rss_mb
    ));

    let rerun = if opts.bounds_only {
        None
    } else {
        Some(rerun_figures(&bin, &sim, &first, n, (s, full), opts, figs).await)
    };
    // The memoized rerun comes right after the rerun that stored the memo, before the bound
    // figures (their runs are previews, which read and rewrite the memo too).
    let memo = match &rerun {
        Some(Ok(rerun)) => memo_figure(&bin, rerun, n, s, full, figs).await.ok(),
        _ => None,
    };
    // A memoized rerun is a user's steady state: its peak is one of the figure's runs.
    if let (Some(m), Some(fig)) = (&memo, figs.get_mut("peak_rss_mb_100k"))
        && n == s.rss
    {
        if let Ok(v) = &mut fig.value {
            *v = v.max(m.peak_rss_mb);
        }
        if let Value::Object(detail) = &mut fig.detail {
            detail.insert("memo_rerun_mb".into(), json!(round(m.peak_rss_mb)));
        }
    }
    if opts.at(s.read, n) {
        let fig = repeated(opts.repeat, || read_bound(&bin, &sim, n)).await;
        figs.insert(
            "read_bound_ratio",
            fig.unwrap_or_else(|e| fail(e, "ratio", n, full.read)),
        );
        figs.entry("read_bound_ratio")
            .and_modify(|f| f.goal_vms = full.read);
    }
    if opts.at(s.snapshot, n) {
        let fig = repeated(opts.repeat, || snapshot_bound(&bin, &sim, n, opts.children)).await;
        figs.insert(
            "snapshot_bound_ratio",
            fig.unwrap_or_else(|e| fail(e, "ratio", n, full.snapshot)),
        );
        figs.entry("snapshot_bound_ratio")
            .and_modify(|f| f.goal_vms = full.snapshot);
    }
    sim.shutdown();
    (Some(first), rerun.and_then(Result::ok), memo)
}

/// The memoized no-op rerun: the rerun before stored the memo (the module answered "no
/// changes" for every VM), so this one's rules step hashes inputs and looks them up instead of
/// calling the module. The figure is the rules step's time (the sync's `rules step` log line:
/// memo keys, lookups and any module calls), next to the same step of the rerun before.
async fn memo_figure(
    bin: &Binary,
    rerun: &Run,
    n: usize,
    s: &Scales,
    full: &Scales,
    figs: &mut BTreeMap<&'static str, Figure>,
) -> anyhow::Result<Run> {
    let memo = bin.sync(&[]).await;
    match &memo {
        Ok(m) => {
            // "?" where the run's log did not give the figure.
            let ms = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{}", round(v)));
            progress(&format!(
                "  memoized rerun {:.1} s, peak RSS {:.0} MiB, rules step {} ms, CPU {} ms (rerun before: {} ms, CPU {} ms), {} memo hits",
                m.wall.as_secs_f64(),
                m.peak_rss_mb,
                ms(m.rules_ms),
                ms(m.rules_cpu_ms),
                ms(rerun.rules_ms),
                ms(rerun.rules_cpu_ms),
                m.report["memo"]["hits"]
            ))
        }
        Err(e) => progress(&format!("  memoized rerun at {n}: {e:#}")),
    }
    if n == s.rss {
        let fig = match &memo {
            Ok(m) => Figure::new(
                m.rules_ms.unwrap_or(f64::NAN),
                "ms",
                n,
                full.rss,
                Goal::AtMost(100.0),
            )
            .with_detail(json!({
                "how": "the `rules step` log line (rules_ms) of a third sync, after a no-op rerun stored the memo",
                "memo_hits": m.report["memo"]["hits"],
                "rules_cpu_ms": m.rules_cpu_ms.map(round),
                "rerun_rules_ms": rerun.rules_ms.map(round),
                "rerun_rules_cpu_ms": rerun.rules_cpu_ms.map(round),
                "rerun_memo_hits": rerun.report["memo"]["hits"],
                "reconcile_phase_ms": m.phase_ms("reconcile"),
                "rerun_reconcile_phase_ms": rerun.phase_ms("reconcile"),
                "netbox_writes": m.report["requests"]["netbox_write"],
            })),
            Err(e) => fail(anyhow::anyhow!("{e:#}"), "ms", n, full.rss),
        };
        figs.insert("memo_rerun_rules_ms_100k", fig);
    }
    memo
}

/// The no-op rerun and the figures taken from it (no-op requests, peak RSS).
async fn rerun_figures(
    bin: &Binary,
    sim: &SimHandle,
    first: &Run,
    n: usize,
    (s, full): (&Scales, &Scales),
    opts: &RunOpts,
    figs: &mut BTreeMap<&'static str, Figure>,
) -> anyhow::Result<Run> {
    sim.control().reset_counters();
    let rerun = bin.sync(&[]).await;
    let counters = sim.control().counters();
    if let Ok(r) = &rerun {
        progress(&format!(
            "  rerun {:.1} s, peak RSS {:.0} MiB",
            r.wall.as_secs_f64(),
            r.peak_rss_mb
        ));
    }
    if rerun.is_ok() {
        progress(&format!(
            "  rerun: {} NetBox writes, {} NetBox reads",
            counters.netbox_writes(),
            counters.netbox("GET")
        ));
    }
    if opts.at(s.noop, n) {
        // The children's listings are pages too: with children the goal counts every kind's.
        let child_pages: usize = if opts.children {
            children::SNAPSHOT_KINDS[1..]
                .iter()
                .map(|k| {
                    sim.control()
                        .netbox_count(k.1)
                        .unwrap_or(0)
                        .div_ceil(PAGE_SIZE)
                })
                .sum()
        } else {
            0
        };
        noop_figures(&rerun, &counters, n, child_pages, full.noop, figs);
    }
    if opts.at(s.rss, n) {
        let fig = match &rerun {
            Ok(r) => Figure::new(
                first.peak_rss_mb.max(r.peak_rss_mb),
                "MiB",
                n,
                full.rss,
                Goal::AtMost(PEAK_RSS_GOAL_MIB),
            )
            .with_detail(json!({
                "first_sync_mb": round(first.peak_rss_mb),
                "rerun_mb": round(r.peak_rss_mb),
                "how": "max VmHWM of the sync process, sampled every 20 ms: the first sync, the no-op rerun and the memoized rerun after it",
            })),
            Err(e) => Figure::new(
                first.peak_rss_mb,
                "MiB",
                n,
                full.rss,
                Goal::AtMost(PEAK_RSS_GOAL_MIB),
            )
            .with_detail(
                json!({"first_sync_mb": round(first.peak_rss_mb), "rerun_error": format!("{e:#}")}),
            ),
        };
        figs.insert("peak_rss_mb_100k", fig);
    }
    rerun
}

/// `runs` measurements of one figure: the median run's figure, with every run's value (in
/// order) and the spread in its detail. A failed run fails the figure.
async fn repeated<F, Fut>(runs: usize, mut measure: F) -> anyhow::Result<Figure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Figure>>,
{
    let mut figs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let fig = measure().await?;
        progress(&format!("  bound run: {:?}", fig.value));
        figs.push(fig);
    }
    if runs == 1 {
        return Ok(figs.pop().expect("one run"));
    }
    let values: Vec<f64> = figs
        .iter()
        .map(|f| f.value.clone().unwrap_or(f64::NAN))
        .collect();
    let mut order: Vec<usize> = (0..figs.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let median = order[order.len() / 2];
    let mut fig = figs.swap_remove(median);
    if let Value::Object(detail) = &mut fig.detail {
        detail.insert(
            "runs".into(),
            json!(values.iter().copied().map(round).collect::<Vec<_>>()),
        );
        detail.insert(
            "range".into(),
            json!([
                round(values[order[0]]),
                round(values[order[order.len() - 1]])
            ]),
        );
        detail.insert("value_is".into(), json!("the median run"));
    }
    Ok(fig)
}

fn noop_figures(
    rerun: &anyhow::Result<Run>,
    counters: &pve2netbox_testkit::CounterSnapshot,
    n: usize,
    child_pages: usize,
    goal_n: usize,
    figs: &mut BTreeMap<&'static str, Figure>,
) {
    match rerun {
        Ok(r) => {
            let writes = counters.netbox_writes() as f64;
            let reads = counters.netbox("GET") as f64;
            let paths = counters.paths.get("netbox").cloned().unwrap_or_default();
            let read_goal = (n.div_ceil(PAGE_SIZE) + child_pages) as f64 + 10.0;
            figs.insert(
                "noop_rerun_netbox_writes",
                Figure::new(writes, "requests", n, goal_n, Goal::Equals(0.0)).with_detail(json!({
                    "counts": r.report["counts"],
                    "report_requests": r.report["requests"],
                })),
            );
            figs.insert(
                "noop_rerun_netbox_reads",
                Figure::new(reads, "requests", n, goal_n, Goal::AtMost(read_goal)).with_detail(
                    json!({
                        "goal_formula": "ceil(N/1000) + the children kinds' ceil(rows/1000) + 10",
                        "netbox_requests_by_path": paths,
                        "phases_ms": r.report["phases_ms"],
                    }),
                ),
            );
        }
        Err(e) => {
            figs.insert(
                "noop_rerun_netbox_writes",
                fail(anyhow::anyhow!("{e:#}"), "requests", n, goal_n),
            );
        }
    }
}

/// Proxmox read of `n` guests at 20 ms per request, 32 in flight: the `proxmox_read` phase
/// over ceil(N_requests/C) x latency, N_requests the Proxmox GETs the run sent (configs, and the
/// guest-agent and LXC-interfaces calls of running guests, which share the bound). A dry run
/// without task history, so nothing else waits on Proxmox.
async fn read_bound(bin: &Binary, sim: &SimHandle, n: usize) -> anyhow::Result<Figure> {
    sim.control().set_faults(
        ServiceKind::Pve,
        &FaultPatch {
            latency_ms: Some(PVE_LATENCY_MS),
            ..FaultPatch::default()
        },
    );
    sim.control().reset_counters();
    let c = READ_CONCURRENCY.to_string();
    let run = bin
        .sync(&[
            "--dry-run",
            "--task-history",
            "false",
            "--max-concurrency",
            &c,
        ])
        .await;
    let pve_gets = sim.control().counters().pve("GET");
    sim.control().clear_faults();
    let run = run?;
    let phase = run
        .phase_ms("proxmox_read")
        .context("no proxmox_read phase")?;
    let requests = (pve_gets as usize).max(n);
    let bound = requests.div_ceil(READ_CONCURRENCY) as f64 * PVE_LATENCY_MS;
    progress(&format!(
        "  proxmox read {phase:.0} ms, {pve_gets} Proxmox GETs, bound ceil({requests}/{READ_CONCURRENCY}) x {PVE_LATENCY_MS} ms = {bound:.0} ms, ratio {:.3} (goal <= 1.15)",
        phase / bound
    ));
    Ok(
        Figure::new(phase / bound, "ratio", n, n, Goal::AtMost(1.15)).with_detail(json!({
            "proxmox_read_ms": phase,
            "bound_ms": bound,
            "bound": format!("ceil({requests}/{READ_CONCURRENCY}) x {PVE_LATENCY_MS} ms"),
            "proxmox_get_requests": pve_gets,
            "injected_latency_ms": PVE_LATENCY_MS,
        })),
    )
}

/// NetBox snapshot of `n` VMs with every request taking 100 ms: the `netbox_snapshot` phase
/// over pages x page latency / parallel pages.
async fn snapshot_bound(
    bin: &Binary,
    sim: &SimHandle,
    n: usize,
    children: bool,
) -> anyhow::Result<Figure> {
    sim.control().set_faults(
        ServiceKind::Netbox,
        &FaultPatch {
            latency_ms: Some(PAGE_LATENCY_MS),
            ..FaultPatch::default()
        },
    );
    sim.control().reset_counters();
    // Sampled beside the run: who used the CPU while the snapshot's pages were read.
    let listing_requests = || {
        let counters = sim.control().counters();
        let paths = counters.paths.get("netbox");
        children::SNAPSHOT_KINDS
            .iter()
            .filter_map(|(_, _, path)| paths.and_then(|p| p.get(*path)))
            .sum::<u64>()
    };
    let mut samples = vec![cpu_split::Sample::take(listing_requests())];
    let run = {
        let sync = bin.sync(&["--dry-run", "--task-history", "false"]);
        tokio::pin!(sync);
        let mut tick = tokio::time::interval(cpu_split::SAMPLE_EVERY);
        loop {
            tokio::select! {
                run = &mut sync => break run,
                _ = tick.tick() => samples.push(cpu_split::Sample::take(listing_requests())),
            }
        }
    };
    let counters = sim.control().counters();
    sim.control().clear_faults();
    let run = run?;
    let phase = run
        .phase_ms("netbox_snapshot")
        .context("no netbox_snapshot phase")?;
    let cpu = cpu_split::CpuSplit::of(&samples);
    if let Some(cpu) = &cpu {
        progress(&cpu.line());
    }
    let cpu = cpu.map_or(Value::Null, |c| c.json());
    let vm_pages = counters
        .paths
        .get("netbox")
        .and_then(|p| p.get("GET /api/virtualization/virtual-machines/"))
        .copied();
    if children {
        return children_snapshot_figure(sim, &counters, phase, n, cpu);
    }
    let pages = n.div_ceil(PAGE_SIZE);
    let bound = pages as f64 * PAGE_LATENCY_MS / PAGE_PARALLELISM as f64;
    Ok(
        Figure::new(phase / bound, "ratio", n, n, Goal::AtMost(1.2)).with_detail(json!({
            "netbox_snapshot_ms": phase,
            "bound_ms": bound,
            "bound": format!("{pages} pages x {PAGE_LATENCY_MS} ms / {PAGE_PARALLELISM}"),
            "vm_list_requests": vm_pages,
            "cpu_during_snapshot": cpu,
            "note": "the first page is fetched alone (it gives the count), so the floor is (1 + ceil((pages-1)/4)) / (pages/4)",
        })),
    )
}

/// The snapshot with children: per kind, the listing requests the run sent over ceil(rows/1000)
/// (rows as NetBox holds them), each printed; the figure is the phase over its time bound. The
/// kinds are listed side by side, each [`PAGE_PARALLELISM`] pages at a time, so the bound is the
/// largest kind's pages x latency / parallelism.
fn children_snapshot_figure(
    sim: &SimHandle,
    counters: &pve2netbox_testkit::CounterSnapshot,
    phase: f64,
    n: usize,
    cpu: Value,
) -> anyhow::Result<Figure> {
    let paths = counters.paths.get("netbox").cloned().unwrap_or_default();
    let mut kinds = Map::new();
    let mut worst_pages = 0usize;
    let mut worst_ratio = 0.0f64;
    for (kind, type_key, path) in children::SNAPSHOT_KINDS {
        let rows = sim
            .control()
            .netbox_count(type_key)
            .map_err(|e| anyhow::anyhow!("counting {kind}: {e}"))?;
        let pages = rows.div_ceil(PAGE_SIZE).max(1);
        let requests = paths.get(path).copied().unwrap_or(0);
        let ratio = requests as f64 / pages as f64;
        worst_pages = worst_pages.max(pages);
        worst_ratio = worst_ratio.max(ratio);
        progress(&format!(
            "  snapshot {kind}: {rows} rows, {requests} GETs, bound ceil(rows/1000) = {pages}, ratio {:.3} (goal <= 1.2)",
            ratio
        ));
        kinds.insert(
            kind.into(),
            json!({"rows": rows, "get_requests": requests, "pages_bound": pages,
                   "ratio": round(ratio), "goal": "<= 1.2", "holds": ratio <= 1.2}),
        );
    }
    let bound = worst_pages as f64 * PAGE_LATENCY_MS / PAGE_PARALLELISM as f64;
    progress(&format!(
        "  snapshot phase {phase:.0} ms, bound {bound:.0} ms ({worst_pages} pages of the largest kind x {PAGE_LATENCY_MS} ms / {PAGE_PARALLELISM}), ratio {:.3} (goal <= 1.2)",
        phase / bound
    ));
    Ok(
        Figure::new(phase / bound, "ratio", n, n, Goal::AtMost(1.2)).with_detail(json!({
            "netbox_snapshot_ms": phase,
            "bound_ms": bound,
            "bound": format!("{worst_pages} pages of the largest kind x {PAGE_LATENCY_MS} ms / {PAGE_PARALLELISM} (kinds listed side by side)"),
            "by_kind": kinds,
            "worst_kind_page_ratio": round(worst_ratio),
            "netbox_requests_by_path": paths,
            "cpu_during_snapshot": cpu,
        })),
    )
}

/// First sync of `n` VMs in the realistic profile with single writes, then (fresh
/// simulators, same inventory) with bulk writes: wall-time ratio.
async fn bulk_figure(exe: &Path, n: usize, work: &Path) -> anyhow::Result<Figure> {
    let mut runs = Vec::new();
    for bulk in ["false", "true"] {
        let sim = start_sim(n, Profile::Realistic).await?;
        let bin = Binary::for_sim(exe, &sim, &work.join(format!("bulk-{bulk}-{n}")), false)?;
        let run = bin.sync(&["--bulk", bulk]).await?;
        let writes = sim.control().counters().netbox_writes();
        progress(&format!(
            "  bulk={bulk}: {:.1} s, {writes} NetBox writes",
            run.wall.as_secs_f64()
        ));
        runs.push((run, writes));
        sim.shutdown();
    }
    let (single, bulk) = (&runs[0], &runs[1]);
    let ratio = single.0.wall.as_secs_f64() / bulk.0.wall.as_secs_f64();
    let dispatch = |r: &Run| r.phase_ms("dispatch").unwrap_or(f64::NAN);
    Ok(
        Figure::new(ratio, "ratio", n, 1_000, Goal::None).with_detail(json!({
            "single_s": round(single.0.wall.as_secs_f64()),
            "bulk_s": round(bulk.0.wall.as_secs_f64()),
            "single_netbox_writes": single.1,
            "bulk_netbox_writes": bulk.1,
            "dispatch_ms": {"single": dispatch(&single.0), "bulk": dispatch(&bulk.0)},
            "dispatch_speedup": round(dispatch(&single.0) / dispatch(&bulk.0)),
            "config": "defaults (write_window 8), --bulk false vs --bulk true",
        })),
    )
}

/// Write windows in flight (`sync.write_concurrency`) 1, 2 and 4 in the realistic profile,
/// fresh simulators each, default bulk writes: the figure is dispatch at 1 over dispatch at 4.
/// The simulated NetBox has 2 workers like a small gunicorn: this shows what the client can
/// overlap, not what a real NetBox gains (`tests/real-netbox/bench.sh --write-concurrency`).
async fn concurrency_figure(exe: &Path, n: usize, work: &Path) -> anyhow::Result<Figure> {
    let mut rows = Map::new();
    let mut dispatch_at = BTreeMap::new();
    for c in [1usize, 2, 4] {
        let sim = start_sim(n, Profile::Realistic).await?;
        let bin = Binary::for_sim(exe, &sim, &work.join(format!("concurrency-{c}-{n}")), false)?;
        let set = format!("sync.write_concurrency={c}");
        let run = bin
            .sync(&["--task-history", "false", "--set", &set])
            .await?;
        let counters = sim.control().counters();
        let dispatch = run.phase_ms("dispatch").unwrap_or(f64::NAN);
        progress(&format!(
            "  write_concurrency={c}: dispatch {dispatch:.0} ms, {:.1} s, at most {} writes in flight",
            run.wall.as_secs_f64(),
            counters.netbox_max_writes_in_flight
        ));
        rows.insert(
            c.to_string(),
            json!({"wall_s": round(run.wall.as_secs_f64()), "dispatch_ms": dispatch,
                   "netbox_writes": counters.netbox_writes(),
                   "max_writes_in_flight": counters.netbox_max_writes_in_flight}),
        );
        dispatch_at.insert(c, dispatch);
        sim.shutdown();
    }
    let ratio = dispatch_at[&1] / dispatch_at[&4];
    Ok(
        Figure::new(ratio, "ratio", n, 500, Goal::None).with_detail(json!({
            "by_write_concurrency": rows,
            "config": "defaults (bulk, write_window 8), task history off, --set sync.write_concurrency=1|2|4",
            "note": "simulated NetBox with 2 workers; the real NetBox figures are in BENCHMARKS.md",
        })),
    )
}

/// End to end in the realistic profile: first sync and rerun wall times (process start to
/// exit), with the recommended large-estate settings `--bulk true --write-window 100`.
async fn e2e_figures(
    exe: &Path,
    n: usize,
    goal_n: usize,
    work: &Path,
    figs: &mut BTreeMap<&'static str, Figure>,
) {
    let result: anyhow::Result<(Run, Run)> = async {
        let sim = start_sim(n, Profile::Realistic).await?;
        let bin = Binary::for_sim(exe, &sim, &work.join(format!("e2e-{n}")), false)?;
        let flags = ["--bulk", "true", "--write-window", "100"];
        let first = bin.sync(&flags).await?;
        progress(&format!("  first sync {:.1} s", first.wall.as_secs_f64()));
        let rerun = bin.sync(&flags).await?;
        progress(&format!("  rerun {:.1} s", rerun.wall.as_secs_f64()));
        sim.shutdown();
        Ok((first, rerun))
    }
    .await;
    match result {
        Ok((first, rerun)) => {
            let detail = |r: &Run| {
                json!({"phases_ms": r.report["phases_ms"], "counts": r.report["counts"],
                       "requests": r.report["requests"], "command": r.args.join(" ")})
            };
            figs.insert(
                "e2e_first_sync_s_10k",
                Figure::new(first.wall.as_secs_f64(), "s", n, goal_n, Goal::None)
                    .with_detail(detail(&first)),
            );
            figs.insert(
                "e2e_rerun_s_10k",
                Figure::new(rerun.wall.as_secs_f64(), "s", n, goal_n, Goal::None)
                    .with_detail(detail(&rerun)),
            );
        }
        Err(e) => {
            figs.insert("e2e_first_sync_s_10k", fail(e, "s", n, goal_n));
        }
    }
}

/// Phase times per VM count and each phase's worst growth exponent between neighbouring
/// counts (1.0 = linear; phases under 20 ms are noise and skipped).
/// The first sync (1), the rerun (2) or the memoized rerun (3) of a growth point.
fn pick_run(g: &GrowthPoint, pick: usize) -> Option<&Run> {
    match pick {
        1 => g.1.as_ref(),
        2 => g.2.as_ref(),
        _ => g.3.as_ref(),
    }
}

fn growth_json(growth: &[GrowthPoint]) -> Value {
    let mut out = Map::new();
    out.insert(
        "vms".into(),
        json!(growth.iter().map(|g| g.0).collect::<Vec<_>>()),
    );
    for (label, pick) in [
        ("first_sync", 1usize),
        ("rerun", 2usize),
        ("memo_rerun", 3usize),
    ] {
        let mut phases = Map::new();
        let mut exponents = Map::new();
        for p in PHASES {
            let pts: Vec<(usize, Option<f64>)> = growth
                .iter()
                .map(|g| (g.0, pick_run(g, pick).and_then(|r| r.phase_ms(p))))
                .collect();
            phases.insert(p.into(), json!(pts.iter().map(|x| x.1).collect::<Vec<_>>()));
            let worst = pts
                .windows(2)
                .filter_map(|w| match (w[0].1, w[1].1) {
                    (Some(a), Some(b)) if a >= EXPONENT_MIN_MS && b > 0.0 => {
                        Some((b / a).ln() / (w[1].0 as f64 / w[0].0 as f64).ln())
                    }
                    _ => None,
                })
                .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))));
            exponents.insert(p.into(), json!(worst.map(round)));
        }
        let walls: Vec<Option<f64>> = growth
            .iter()
            .map(|g| {
                let run = pick_run(g, pick);
                run.map(|r| round(r.wall.as_secs_f64()))
            })
            .collect();
        let rss: Vec<Option<f64>> = growth
            .iter()
            .map(|g| {
                let run = if pick == 1 {
                    g.1.as_ref()
                } else {
                    g.2.as_ref()
                };
                run.map(|r| round(r.peak_rss_mb))
            })
            .collect();
        out.insert(
            label.into(),
            json!({"phases_ms": phases, "worst_exponent": exponents, "wall_s": walls, "peak_rss_mb": rss}),
        );
    }
    Value::Object(out)
}

fn load_sample(when: &str) -> Value {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({"when": when, "loadavg": load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")})
}

fn machine(load: Vec<Value>) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_mb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib / 1024);
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu": model,
        "memory_mb": mem_mb,
        "load": load,
    })
}
