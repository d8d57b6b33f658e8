//! End to end, kill and rerun: `pve2netbox sync` is killed with SIGKILL right after its k-th
//! NetBox write has been committed (its answer not yet received), for k spread over preflight,
//! the VM writes, the task-history journal writes and the clusters' task watermark writes, in
//! single and bulk write mode, one write window at a time and four in flight; each time
//! a rerun must finish cleanly and leave exactly the state one clean sync makes (one VM per
//! guest, same fields, custom fields and tags, each task journaled once), and a further run
//! must write nothing.
//!
//! How a point is hit: the simulated NetBox answers every request `WRITE_LATENCY_MS` after
//! committing it; the test polls the simulator's write counter and kills the child as soon as
//! it reaches k, so the k-th write is in NetBox and the process never learns it. One simulator
//! per mode; NetBox is emptied between points. Simulator only. The binary is run directly
//! (not through the harness) because the test needs the child process to kill it.

mod e2e_state;
mod e2e_support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e_state::{NetboxState, assert_clean, assert_same};
use e2e_support::{require_simulator, spec};
use pve2netbox_testkit::{
    CounterSnapshot, FaultPatch, ServiceKind, SimConfig, SimHandle, Simulators,
};

/// Guests over two clusters.
const GUESTS: usize = 60;
/// Delay of every NetBox answer while a run is to be killed: long enough for the poller to
/// see the write counter move before the process sends its next request.
const WRITE_LATENCY_MS: f64 = 25.0;
/// Poll period of the write counter.
const POLL: Duration = Duration::from_millis(1);
/// Kill points inside the VM writes of single mode (plus the first and last write).
const SINGLE_VM_POINTS: u64 = 12;
/// Kill points spread over preflight's writes (custom fields, tags, cluster type, clusters).
const PREFLIGHT_POINTS: u64 = 6;
/// Fewest distinct kill points per mode.
const MIN_POINTS: usize = 15;
/// Env variable the config names for the NetBox token.
const NETBOX_TOKEN_VAR: &str = "E2E_KILL_NETBOX_TOKEN";
const VM_PATHS: &str = "/api/virtualization/virtual-machines/";
const JOURNAL_PATHS: &str = "/api/extras/journal-entries/";
/// Task history's watermark: one PATCH per cluster, the run's last writes.
const WATERMARK_WRITE: &str = "PATCH /api/virtualization/clusters/";

/// Simulators, a config, and the binary.
struct Rig {
    sim: SimHandle,
    // Kept after `sim`: the simulators stop before their runtime goes.
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

/// Where the writes of one clean run fall, by the order the phases write in.
#[derive(Debug, Clone, Copy)]
struct Phases {
    /// Writes before the first VM write (preflight, then objects the VMs need).
    before_vms: u64,
    /// VM writes.
    vms: u64,
    /// Journal writes (task history).
    journal: u64,
    /// Clusters' task watermark writes, after the journal.
    watermarks: u64,
}

impl Rig {
    fn start(bulk: bool, write_concurrency: i64, seed: u64) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let sim = rt
            .block_on(Simulators::start(SimConfig {
                inventory: spec(GUESTS, 3, 2, 0, seed),
                ..SimConfig::default()
            }))
            .expect("start the simulators");
        let rig = Rig {
            sim,
            _rt: rt,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        rig.write_config(bulk, write_concurrency);
        rig
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("pve2netbox.toml")
    }

    fn write_config(&self, bulk: bool, write_concurrency: i64) {
        let mut root = toml::Table::new();
        let mut netbox = toml::Table::new();
        netbox.insert("url".into(), self.sim.netbox_url().into());
        netbox.insert("token_env".into(), NETBOX_TOKEN_VAR.into());
        root.insert("netbox".into(), netbox.into());
        let endpoints: Vec<toml::Value> = self
            .sim
            .pve_endpoints()
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                let mut t = toml::Table::new();
                t.insert("name".into(), ep.name.clone().into());
                t.insert("url".into(), ep.url.clone().into());
                t.insert("token_env".into(), format!("E2E_KILL_PVE_TOKEN_{i}").into());
                t.insert("fingerprint".into(), ep.fingerprint.clone().into());
                toml::Value::Table(t)
            })
            .collect();
        root.insert("proxmox".into(), endpoints.into());
        let mut sync = toml::Table::new();
        sync.insert("bulk".into(), bulk.into());
        sync.insert("write_concurrency".into(), write_concurrency.into());
        root.insert("sync".into(), sync.into());
        std::fs::write(
            self.config_path(),
            toml::to_string(&root).expect("config to TOML"),
        )
        .expect("write the config");
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pve2netbox"));
        cmd.arg("sync")
            .arg("--config")
            .arg(self.config_path())
            .args(["--output", "json"]);
        for (key, _) in std::env::vars() {
            if key.starts_with("PVE2NETBOX_") || key.starts_with("NETBOX_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PVE2NETBOX_LOG", "warn")
            .env(NETBOX_TOKEN_VAR, self.sim.netbox_token());
        for (i, ep) in self.sim.pve_endpoints().iter().enumerate() {
            cmd.env(format!("E2E_KILL_PVE_TOKEN_{i}"), &ep.token);
        }
        cmd
    }

    /// One whole run; its exit code and output for messages.
    fn sync(&self) -> (i32, String) {
        let out = self.command().output().expect("run pve2netbox");
        let text = format!(
            "exit {:?}\nstdout:\n{}\nstderr (tail):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn netbox_writes(&self) -> u64 {
        self.sim.control().counters().netbox_writes()
    }

    fn set_latency(&self, ms: f64) {
        self.sim.control().set_faults(
            ServiceKind::Netbox,
            &FaultPatch {
                latency_ms: Some(ms),
                ..FaultPatch::default()
            },
        );
    }

    fn state(&self) -> e2e_state::Read {
        e2e_state::read(|key| {
            self.sim
                .control()
                .netbox_objects(key)
                .unwrap_or_else(|e| panic!("objects {key}: {e}"))
        })
    }

    /// Empties NetBox and the counters.
    fn reset(&self) {
        self.sim.control().netbox_reset();
        self.sim.control().clear_faults();
        self.sim.control().reset_counters();
    }

    /// Runs a sync and SIGKILLs it once NetBox has committed `k` writes. `None` when the run
    /// ended before that.
    fn kill_after(&self, k: u64) -> Option<u64> {
        self.set_latency(WRITE_LATENCY_MS);
        let mut child: Child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pve2netbox");
        let killed = loop {
            if child.try_wait().expect("poll the child").is_some() {
                break None;
            }
            let writes = self.netbox_writes();
            if writes >= k {
                // `Child::kill` is SIGKILL on Unix: no cleanup runs in the process.
                child.kill().expect("kill pve2netbox");
                break Some(writes);
            }
            std::thread::sleep(POLL);
        };
        let _ = child.wait();
        self.set_latency(0.0);
        killed.map(|_| self.netbox_writes())
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn phases(counters: &CounterSnapshot) -> Phases {
    let mut p = Phases {
        before_vms: 0,
        vms: 0,
        journal: 0,
        watermarks: 0,
    };
    for (path, n) in counters.paths.get("netbox").into_iter().flatten() {
        if path.starts_with("GET") {
            continue;
        }
        if path.starts_with(WATERMARK_WRITE) {
            p.watermarks += n;
        } else if path.contains(VM_PATHS) {
            p.vms += n;
        } else if path.contains(JOURNAL_PATHS) {
            p.journal += n;
        } else {
            p.before_vms += n;
        }
    }
    p
}

/// The clean run: the reference state and where its writes fall.
fn reference(rig: &Rig) -> (NetboxState, Phases) {
    rig.reset();
    let (code, out) = rig.sync();
    assert_eq!(code, 0, "clean sync:\n{out}");
    let read = rig.state();
    assert_clean(&read, "clean sync");
    assert_eq!(read.state.vms.len(), GUESTS, "one VM per guest");
    assert!(
        !read.state.task_entries.is_empty(),
        "the inventory has task history (else the journal is not checked)"
    );
    let p = phases(&rig.sim.control().counters());
    assert!(
        p.before_vms > 0 && p.vms > 0 && p.journal > 0 && p.watermarks > 0,
        "{p:?}"
    );
    (read.state, p)
}

/// `n` points spread over `first..first + len` (both ends included when `n > 1`).
fn spread(first: u64, len: u64, n: u64) -> impl Iterator<Item = u64> {
    let n = n.min(len).max(1);
    (0..n).map(move |i| first + if n == 1 { 0 } else { i * (len - 1) / (n - 1) })
}

/// Write counts to kill at: [`PREFLIGHT_POINTS`] spread over preflight, `vm_points` spread over
/// the VM writes (first and last included), the first and last journal write, and each
/// watermark write.
fn kill_points(p: Phases, vm_points: u64) -> BTreeSet<u64> {
    let mut points: BTreeSet<u64> = spread(1, p.before_vms, PREFLIGHT_POINTS).collect();
    points.extend(spread(p.before_vms + 1, p.vms, vm_points));
    let last_vm = p.before_vms + p.vms;
    points.insert(last_vm + 1);
    points.insert(last_vm + p.journal);
    points.extend(last_vm + p.journal + 1..=last_vm + p.journal + p.watermarks);
    points
}

fn kill_and_rerun(bulk: bool, write_concurrency: i64, seed: u64) {
    let mode = match (bulk, write_concurrency) {
        (true, 1) => "bulk".to_owned(),
        (false, 1) => "single".to_owned(),
        (true, n) => format!("bulk, {n} windows in flight"),
        (false, n) => format!("single, {n} windows in flight"),
    };
    let rig = Rig::start(bulk, write_concurrency, seed);
    let (want, p) = reference(&rig);
    // Bulk mode has few VM writes: kill after each of them.
    let points = kill_points(p, if bulk { p.vms } else { SINGLE_VM_POINTS });
    println!("{mode}: clean run writes {p:?}; kill points {points:?}");
    assert!(
        points.len() >= MIN_POINTS,
        "{mode}: only {} distinct kill points",
        points.len()
    );
    for &k in &points {
        rig.reset();
        let what = format!("{mode}, killed after write {k}");
        let at = rig
            .kill_after(k)
            .unwrap_or_else(|| panic!("{what}: the run ended before write {k}"));
        let (code, out) = rig.sync();
        assert_eq!(
            code, 0,
            "{what} (at {at} writes): the rerun must finish:\n{out}"
        );
        let got = rig.state();
        assert_clean(&got, &what);
        assert_same(&want, &got.state, &what);
        let before = rig.netbox_writes();
        let (code, out) = rig.sync();
        assert_eq!(code, 0, "{what}: second rerun:\n{out}");
        assert_eq!(
            rig.netbox_writes(),
            before,
            "{what}: the run after the repair must write nothing:\n{out}"
        );
    }
}

#[test]
fn sim_only_single_mode_kill_at_any_write_then_rerun_repairs() {
    require_simulator();
    kill_and_rerun(false, 1, 91);
}

#[test]
fn sim_only_single_mode_at_write_concurrency_4_kill_at_any_write_then_rerun_repairs() {
    require_simulator();
    kill_and_rerun(false, 4, 93);
}

#[test]
fn sim_only_bulk_mode_kill_at_any_write_then_rerun_repairs() {
    require_simulator();
    kill_and_rerun(true, 1, 92);
}

#[test]
fn sim_only_bulk_mode_at_write_concurrency_4_kill_at_any_write_then_rerun_repairs() {
    require_simulator();
    kill_and_rerun(true, 4, 94);
}

/// Guards the kill-point arithmetic the tests rely on.
#[test]
fn sim_only_kill_points_cover_every_phase() {
    let p = Phases {
        before_vms: 10,
        vms: 60,
        journal: 3,
        watermarks: 2,
    };
    let points = kill_points(p, 12);
    assert!(points.contains(&1) && points.contains(&10), "preflight");
    assert!(points.contains(&11) && points.contains(&70), "VM writes");
    assert!(points.contains(&71) && points.contains(&73), "journal");
    assert!(points.contains(&74) && points.contains(&75), "watermarks");
    assert!(points.iter().all(|k| *k >= 1 && *k <= 75));
    assert_eq!(points.iter().filter(|k| **k <= 10).count(), 6);
    assert!(points.len() >= 22, "{points:?}");
}
