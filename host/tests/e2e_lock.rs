//! End to end, the run lock: one writing run per NetBox at a time.
//!
//! - A lock held (here by the test process, through the library) makes `sync` and `apply` exit 1
//!   before any request, with a message naming the lock file and its holder; `sync --dry-run`
//!   and `plan` are not blocked; once released, the same commands go through.
//! - A `pve2netbox sync` killed with SIGKILL while holding the lock (stuck on a slow Proxmox)
//!   leaves its lock file behind, and the next `sync` runs anyway: the OS released the lock.
//!
//! Simulators only (the lock is local; the real-NetBox tier adds nothing here). The binary is
//! driven like `e2e_smoke.rs`: a config file, tokens in environment variables, `--state-dir`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pve2netbox::config::Config;
use pve2netbox::run_lock::{self, RunLock};
use pve2netbox_testkit::{
    CounterSnapshot, FaultPatch, InventorySpec, ServiceKind, SimConfig, SimHandle, Simulators,
};
use serde_json::Value;

const NETBOX_TOKEN_VAR: &str = "E2E_LOCK_NETBOX_TOKEN";
const PVE_TOKEN_VAR: &str = "E2E_LOCK_PVE_TOKEN";
const VMS: usize = 8;
/// How long to wait for the child to write its holder details before giving up (a bound on a
/// hang, not a timing assertion: it normally takes well under a second).
const CHILD_LOCK_WAIT: Duration = Duration::from_secs(120);
/// Proxmox latency that keeps the child in discovery until it is killed.
const STUCK_LATENCY_MS: f64 = 3_600_000.0;

/// Simulators, a config file and a state dir in a tempdir.
struct Setup {
    // Field order: the simulators stop before their runtime goes.
    sim: SimHandle,
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let sim = rt
            .block_on(Simulators::start(SimConfig {
                inventory: InventorySpec {
                    vms: VMS,
                    nodes: 2,
                    clusters: 1,
                    standalone: 0,
                    seed: 5,
                },
                ..SimConfig::default()
            }))
            .expect("simulators start");
        let dir = tempfile::tempdir().expect("tempdir");
        let ep = &sim.pve_endpoints()[0];
        let text = format!(
            "[netbox]\nurl = \"{}\"\ntoken_env = \"{NETBOX_TOKEN_VAR}\"\n\n[[proxmox]]\n\
             name = \"{}\"\nurl = \"{}\"\ntoken_env = \"{PVE_TOKEN_VAR}\"\nfingerprint = \"{}\"\n",
            sim.netbox_url(),
            ep.name,
            ep.url,
            ep.fingerprint
        );
        let config = dir.path().join("pve2netbox.toml");
        std::fs::write(&config, text).expect("config written");
        Setup {
            sim,
            _rt: rt,
            dir,
            config,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The NetBox URL as the binary parses it from the config.
    fn netbox_url(&self) -> reqwest::Url {
        let text = std::fs::read_to_string(&self.config).expect("config");
        Config::from_toml(&self.config, &text)
            .expect("config parses")
            .netbox
            .url
    }

    fn lock_path(&self) -> PathBuf {
        run_lock::lock_path(&self.state_dir(), &self.netbox_url())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pve2netbox"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(["--output", "json", "--quiet"]);
        for (key, _) in std::env::vars() {
            if key.starts_with("PVE2NETBOX_") || key == "XDG_STATE_HOME" {
                cmd.env_remove(key);
            }
        }
        cmd.env("PVE2NETBOX_LOG", "warn")
            .env(NETBOX_TOKEN_VAR, self.sim.netbox_token())
            .env(PVE_TOKEN_VAR, &self.sim.pve_endpoints()[0].token);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run pve2netbox");
        Run::from(args, out)
    }

    fn counters(&self) -> CounterSnapshot {
        self.sim.control().counters()
    }

    fn vm_count(&self) -> usize {
        self.sim
            .control()
            .netbox_objects("virtual-machines")
            .expect("VMs")
            .len()
    }
}

struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(args: &[&str], out: Output) -> Run {
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "pve2netbox {:?}: exit {}\nstdout:\n{}\nstderr:\n{}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    fn report(&self) -> Value {
        self.stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null)
    }

    /// Exit 1 with the refusal naming the lock file and the holder's pid.
    fn expect_refused(&self, lock: &Path, pid: u32) {
        self.expect(1);
        for part in [
            "another pve2netbox run is writing to NetBox".to_string(),
            lock.display().to_string(),
            format!("held by pid {pid}"),
            "started ".to_string(),
            "Wait for that run to finish".to_string(),
        ] {
            assert!(
                self.stderr.contains(&part),
                "pve2netbox {:?}: {part:?} missing from stderr:\n{}",
                self.args,
                self.stderr
            );
        }
        assert!(
            self.report().is_null(),
            "a refused run prints no report: {}",
            self.stdout
        );
    }
}

fn requests(c: &CounterSnapshot) -> u64 {
    c.netbox.values().sum::<u64>() + c.pve.values().sum::<u64>()
}

#[test]
fn a_held_lock_refuses_sync_and_apply_before_any_request_but_not_previews() {
    let s = Setup::new();
    let plan = s.dir.path().join("plan.json");
    let plan_arg = plan.to_str().expect("utf-8 path");
    s.run(&["plan", "--out", plan_arg]).expect(2);

    let lock = RunLock::acquire(Some(&s.state_dir()), &s.netbox_url(), "test-holder")
        .expect("the test takes the lock");
    assert_eq!(lock.path(), s.lock_path());
    let before = s.counters();
    let pid = std::process::id();
    s.run(&["sync"]).expect_refused(lock.path(), pid);
    s.run(&["apply", plan_arg]).expect_refused(lock.path(), pid);
    let after = s.counters();
    assert_eq!(
        requests(&after),
        requests(&before),
        "a refused run sends no request at all (the lock comes before preflight): {before:?} -> {after:?}"
    );
    assert_eq!(s.vm_count(), 0);

    // Previews do not take the lock.
    let dry = s.run(&["sync", "--dry-run"]);
    dry.expect(2);
    assert!(!dry.stderr.contains("run lock"), "{}", dry.stderr);
    assert_eq!(dry.report()["counts"]["create"], VMS as u64);
    let plan2 = s.dir.path().join("plan2.json");
    s.run(&["plan", "--out", plan2.to_str().expect("utf-8 path")])
        .expect(2);
    assert_eq!(
        s.counters().netbox_writes(),
        before.netbox_writes(),
        "previews write nothing"
    );

    // Released: the same commands go through.
    drop(lock);
    let applied = s.run(&["apply", plan_arg]);
    applied.expect(0);
    assert_eq!(s.vm_count(), VMS);
    s.run(&["sync"]).expect(0);
    assert!(
        !s.lock_path().exists(),
        "a finished run removes its lock file"
    );
}

/// Kills the child (SIGKILL) if the test fails before doing so.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_run_killed_while_holding_the_lock_does_not_block_the_next() {
    let s = Setup::new();
    // The child gets stuck in Proxmox discovery, after taking the lock.
    s.sim.control().set_faults(
        ServiceKind::Pve,
        &FaultPatch {
            latency_ms: Some(STUCK_LATENCY_MS),
            ..FaultPatch::default()
        },
    );
    let log = std::fs::File::create(s.dir.path().join("child.log")).expect("child log");
    let mut cmd = s.command(&[
        "sync",
        "--set",
        "timeouts.request_secs=3600",
        "--set",
        "timeouts.retry_budget_secs=3600",
    ]);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .stdin(Stdio::null());
    let mut child = KillOnDrop(cmd.spawn().expect("spawn the first sync"));
    let pid = child.0.id();
    let path = s.lock_path();

    let deadline = Instant::now() + CHILD_LOCK_WAIT;
    loop {
        let holder: Option<run_lock::Holder> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(t.trim()).ok());
        if holder.as_ref().and_then(|h| h.pid) == Some(pid) {
            break;
        }
        if let Some(status) = child.0.try_wait().expect("child status") {
            panic!(
                "the first sync exited ({status}) before it was killed:\n{}",
                std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the first sync did not write its holder details into {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // While it lives, a second sync is refused, naming it.
    s.run(&["sync"]).expect_refused(&path, pid);

    // SIGKILL: no destructor runs, the file stays, the kernel drops the lock.
    child.0.kill().expect("SIGKILL the first sync");
    let status = child.0.wait().expect("reap the first sync");
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    }
    let left = std::fs::read_to_string(&path).expect("the killed run left its lock file");
    assert!(left.contains(&format!("\"pid\":{pid}")), "{left}");

    s.sim.control().clear_faults();
    let next = s.run(&["sync"]);
    next.expect(0);
    assert_eq!(next.report()["counts"]["create"], VMS as u64);
    assert_eq!(s.vm_count(), VMS);
}
