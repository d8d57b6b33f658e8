//! End to end, the run lock: one writing run per NetBox at a time.
//!
//! The local lock (a file lock per host and state dir):
//! - A lock held (here by the test process, through the library) makes `sync` and `apply` exit 1
//!   before any request, with a message naming the lock file and its holder; `sync --dry-run`
//!   and `plan` are not blocked; once released, the same commands go through.
//! - A `pve2netbox sync` killed with SIGKILL while holding the lock (stuck on a slow Proxmox)
//!   leaves its lock file behind, and the next `sync` runs anyway: the OS released the lock.
//!
//! The NetBox lease (a tag in NetBox, across machines; `safety::lease`). Each "machine" is a
//! run with its own `--state-dir` (so the local lock does not meet) and its own host identity
//! (the hidden, test-only `PVE2NETBOX_LEASE_HOST`):
//! - a lease held by another machine refuses a writing run (exit 1, the holder named, nothing
//!   written) but not a preview; once it is gone, the run goes through;
//! - an expired lease of another machine is broken;
//! - a no-op rerun takes no lease (0 writes); a writing run takes one and gives it back;
//! - a run SIGKILLed after taking the lease leaves it: another machine is refused, a run on the
//!   same host breaks it at once (that pid is gone), another machine breaks it once it expires;
//! - a run that read NetBox before another run held the lease stops before writing.
//!
//! The local-lock tests use the simulators only (the lock is local); the lease tests run against
//! the real NetBox too (`PVE2NETBOX_E2E_NETBOX=real`). The binary is driven like
//! `e2e_smoke.rs`: a config file, tokens in environment variables, `--state-dir`.

mod e2e_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pve2netbox::config::Config;
use pve2netbox::safety::run_lock::{self, RunLock};
use pve2netbox::timefmt;
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
fn sim_only_a_held_lock_refuses_sync_and_apply_before_any_request_but_not_previews() {
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
fn sim_only_a_run_killed_while_holding_the_lock_does_not_block_the_next() {
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

// -- the NetBox lease (across machines) ------------------------------------------------------

use e2e_support::{Harness, RunOutput, spec};
use pve2netbox::safety::lease::{HOST_ENV, LEASE_TAG, LeaseHolder};
use serde_json::json;
use std::time::SystemTime;

/// Guests of the lease tests.
const LEASE_VMS: usize = 6;
/// Proxmox latency that holds a run in discovery while the test plays another machine.
const SLOW_PVE_MS: f64 = 3_000.0;
/// Bound on waiting for a child to reach a point (a hang guard, not a timing assertion).
const CHILD_WAIT: Duration = Duration::from_secs(120);
/// The short lease TTL of the expiry test, in seconds.
const SHORT_TTL_SECS: u64 = 2;

/// The command of `pve2netbox <args>` run as if on machine `host`: its own state dir (the
/// local lock is per state dir) and its own host identity in the lease.
fn on_host(h: &Harness, host: &str, args: &[&str]) -> (Command, Vec<String>) {
    let state = h.path(&format!("state-{host}"));
    let mut all: Vec<&str> = args.to_vec();
    all.push("--state-dir");
    all.push(state.to_str().expect("utf-8 path"));
    let (mut cmd, all) = h.command(&all);
    cmd.env(HOST_ENV, host);
    (cmd, all)
}

fn run_on(h: &Harness, host: &str, args: &[&str]) -> RunOutput {
    let (mut cmd, all) = on_host(h, host, args);
    RunOutput::of(all, cmd.output().expect("run pve2netbox"))
}

/// The lease tags in NetBox.
fn leases(h: &Harness) -> Vec<Value> {
    h.objects("tags")
        .into_iter()
        .filter(|t| t["slug"] == LEASE_TAG)
        .collect()
}

fn holder_of(tag: &Value) -> LeaseHolder {
    serde_json::from_str(tag["description"].as_str().unwrap_or("")).unwrap_or_default()
}

fn holder(host: &str, pid: u32, expires: SystemTime) -> LeaseHolder {
    LeaseHolder {
        host: Some(host.into()),
        pid: Some(pid),
        run: Some("feedfacefeedface".into()),
        since: Some(timefmt::rfc3339_utc(SystemTime::now())),
        expires: Some(timefmt::rfc3339_utc(expires)),
    }
}

/// Creates a lease as another machine's run would; returns its tag id.
fn plant(h: &Harness, holder: &LeaseHolder) -> u64 {
    let tag = h.create(
        "tags",
        json!({
            "name": LEASE_TAG,
            "slug": LEASE_TAG,
            "description": serde_json::to_string(holder).expect("holder JSON"),
        }),
    );
    tag["id"].as_u64().expect("tag id")
}

fn unplant(h: &Harness, id: u64) {
    h.api("DELETE", &format!("extras/tags/{id}"), &[], None);
}

/// The newest change log id.
fn last_change(h: &Harness) -> u64 {
    h.objects("object-changes")
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Changes after `after`, oldest first, as `(action, type, object id)`.
fn changes_since(h: &Harness, after: u64) -> Vec<(String, String, u64)> {
    let mut rows: Vec<(u64, (String, String, u64))> = h
        .objects("object-changes")
        .iter()
        .filter(|c| c["id"].as_u64().is_some_and(|id| id > after))
        .map(|c| {
            (
                c["id"].as_u64().unwrap_or(0),
                (
                    e2e_support::choice(&c["action"]).to_string(),
                    c["changed_object_type"].as_str().unwrap_or("").to_string(),
                    c["changed_object_id"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|r| r.1).collect()
}

/// The lease tag's changes after `after`, as `(action, tag id)`.
fn lease_changes_since(h: &Harness, after: u64) -> Vec<(String, u64)> {
    let lease_ids: BTreeSet<u64> = h
        .objects("object-changes")
        .iter()
        .filter(|c| c["object_repr"] == LEASE_TAG && c["changed_object_type"] == "extras.tag")
        .filter_map(|c| c["changed_object_id"].as_u64())
        .collect();
    changes_since(h, after)
        .into_iter()
        .filter(|(_, ty, id)| ty == "extras.tag" && lease_ids.contains(id))
        .map(|(action, _, id)| (action, id))
        .collect()
}

fn assert_stderr(out: &RunOutput, parts: &[&str]) {
    for part in parts {
        assert!(
            out.stderr.contains(part),
            "{part:?} missing from stderr:\n{}",
            out.describe()
        );
    }
}

#[test]
fn a_lease_held_by_another_machine_refuses_writing_runs_and_names_its_holder() {
    let h = Harness::generated(spec(LEASE_VMS, 2, 1, 0, 31));
    let planted = plant(
        &h,
        &holder(
            "sync-b.example",
            4242,
            SystemTime::now() + Duration::from_secs(3600),
        ),
    );
    let before = last_change(&h);
    let out = run_on(&h, "sync-a", &["sync"]);
    out.expect_code(1);
    assert_stderr(
        &out,
        &[
            "another pve2netbox run is writing to NetBox",
            &format!("tag `{LEASE_TAG}` #{planted}"),
            "host sync-b.example, pid 4242 (run feedfacefeedface), since 20",
            ", expires 20",
            "This run wrote nothing",
            "Wait for that run to finish",
        ],
    );
    assert!(out.report.is_null(), "a refused run prints no report");
    assert_eq!(
        changes_since(&h, before),
        Vec::new(),
        "a refused run changes nothing in NetBox (not even preflight's objects)"
    );
    assert!(h.vms().is_empty());

    // A preview needs no lease.
    run_on(&h, "sync-a", &["sync", "--dry-run"]).expect_code(2);

    // Released by its holder: the run goes through and gives its own lease back.
    unplant(&h, planted);
    run_on(&h, "sync-a", &["sync"]).expect_code(0);
    assert_eq!(h.vms().len(), LEASE_VMS);
    assert!(leases(&h).is_empty(), "released: {:?}", leases(&h));
}

#[test]
fn an_expired_lease_of_another_machine_is_broken() {
    let h = Harness::generated(spec(LEASE_VMS, 2, 1, 0, 32));
    let planted = plant(
        &h,
        &holder(
            "sync-b.example",
            4242,
            SystemTime::now() - Duration::from_secs(60),
        ),
    );
    let before = last_change(&h);
    let out = run_on(&h, "sync-a", &["sync"]);
    out.expect_code(0);
    assert_stderr(
        &out,
        &["breaking a stale NetBox run lease", "it expired at"],
    );
    assert_eq!(h.vms().len(), LEASE_VMS);
    assert!(leases(&h).is_empty(), "released: {:?}", leases(&h));
    let changes = lease_changes_since(&h, before);
    assert_eq!(
        changes.first(),
        Some(&("delete".to_string(), planted)),
        "the stale lease is deleted first: {changes:?}"
    );
    let own: Vec<&(String, u64)> = changes.iter().filter(|c| c.1 != planted).collect();
    assert_eq!(own.len(), 2, "one lease taken and given back: {changes:?}");
    assert_eq!((own[0].0.as_str(), own[1].0.as_str()), ("create", "delete"));
}

#[test]
fn a_noop_rerun_takes_no_lease_and_a_writing_run_gives_its_lease_back() {
    let h = Harness::generated(spec(LEASE_VMS, 2, 1, 0, 33));
    let before = last_change(&h);
    run_on(&h, "sync-a", &["sync"]).expect_code(0);
    assert!(leases(&h).is_empty(), "released: {:?}", leases(&h));
    let lease = lease_changes_since(&h, before);
    // Taken once (by preflight's first create), kept through dispatch and task history.
    assert_eq!(lease.len(), 2, "{lease:?}");
    assert_eq!(
        (lease[0].0.as_str(), lease[1].0.as_str()),
        ("create", "delete")
    );
    assert_eq!(lease[0].1, lease[1].1);

    let mark = h.mark();
    let before = last_change(&h);
    let out = run_on(&h, "sync-a", &["sync"]);
    out.expect_code(0);
    h.assert_no_writes_since(&mark, "a no-op rerun");
    assert_eq!(out.report["requests"]["netbox_write"], json!(0));
    assert_eq!(
        lease_changes_since(&h, before),
        Vec::new(),
        "no lease taken"
    );
}

/// Kills the child (SIGKILL) if the test fails before doing so.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `sync` on `host` (with `extra` arguments) and SIGKILLs it as soon as its lease is in
/// NetBox; returns its pid. The lease's create is the run's first write: the proxy holds its
/// answer (and everything after), so the run cannot go on, or release the lease, before the kill.
fn kill_after_lease(h: &Harness, host: &str, extra: &[&str]) -> u32 {
    h.proxy()
        .hold_after_commits(h.proxy().committed_writes() + 1);
    let mut args = vec!["sync"];
    args.extend_from_slice(extra);
    let (mut cmd, _) = on_host(h, host, &args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = Reap(Some(cmd.spawn().expect("spawn pve2netbox")));
    let pid = child.0.as_ref().map(Child::id).unwrap_or(0);
    let deadline = Instant::now() + CHILD_WAIT;
    loop {
        if leases(h).iter().any(|t| holder_of(t).pid == Some(pid)) {
            break;
        }
        let exited = child.0.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(
            exited.is_none(),
            "the run on {host} ended ({exited:?}) before it was seen holding the lease"
        );
        assert!(Instant::now() < deadline, "no lease from the run on {host}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut child = child.0.take().expect("child");
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reap");
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    }
    h.proxy().release();
    pid
}

#[test]
fn a_lease_left_by_a_killed_run_is_broken_by_its_host_at_once_and_by_others_once_expired() {
    let h = Harness::generated(spec(LEASE_VMS, 2, 1, 0, 34));
    let pid = kill_after_lease(&h, "sync-a", &[]);
    let left = leases(&h);
    assert_eq!(left.len(), 1, "the killed run leaves its lease");
    assert_eq!(holder_of(&left[0]).host.as_deref(), Some("sync-a"));
    // The killed run may have written some or all of its changes before the kill (a real
    // NetBox answers fast): a change made now gives every later run a write, so a lease to
    // take and a stale one to break.
    rename_a_guest(&h, "renamed-after-first-kill");

    // Another machine cannot tell whether that run is alive: refused until it expires.
    let out = run_on(&h, "sync-b", &["sync"]);
    out.expect_code(1);
    assert_stderr(&out, &[&format!("held by host sync-a, pid {pid} ")]);

    // The same host sees that the pid is gone and breaks the lease at once.
    let out = run_on(&h, "sync-a", &["sync"]);
    out.expect_code(0);
    assert_stderr(&out, &[&format!("its process {pid} on this host is gone")]);
    assert_eq!(h.vms().len(), LEASE_VMS);
    assert!(leases(&h).is_empty(), "released: {:?}", leases(&h));

    // A short TTL: another machine breaks the killed run's lease once it has expired.
    rename_a_guest(&h, "renamed-before-second-kill");
    let ttl = format!("sync.lock_ttl_secs={SHORT_TTL_SECS}");
    let pid = kill_after_lease(&h, "sync-a", &["--set", &ttl]);
    let left = leases(&h);
    assert_eq!(holder_of(&left[0]).pid, Some(pid));
    rename_a_guest(&h, "renamed-after-second-kill");
    // Past its expiry (it was taken, and at most renewed, before the kill).
    std::thread::sleep(Duration::from_secs(SHORT_TTL_SECS + 1));
    let out = run_on(&h, "sync-b", &["sync"]);
    out.expect_code(0);
    assert_stderr(
        &out,
        &["breaking a stale NetBox run lease", "it expired at"],
    );
    assert!(leases(&h).is_empty(), "released: {:?}", leases(&h));
    assert!(
        h.vms()
            .iter()
            .any(|v| v["name"] == "renamed-after-second-kill"),
        "the run after the break wrote"
    );
}

/// Renames the first QEMU guest in Proxmox, so the next run has a write to make.
fn rename_a_guest(h: &Harness, name: &str) {
    let guest = h.guest_of_type("qemu");
    let (cluster, vmid) = (
        guest["cluster"].as_str().expect("cluster").to_string(),
        guest["vmid"].as_u64().expect("vmid") as u32,
    );
    h.edit_guest(&cluster, vmid, json!({ "name": name }));
}

#[test]
fn a_run_that_read_netbox_before_another_run_held_the_lease_stops_before_writing() {
    let h = Harness::generated(spec(LEASE_VMS, 2, 1, 0, 35));
    run_on(&h, "sync-a", &["sync"]).expect_code(0);
    rename_a_guest(&h, "renamed-meanwhile");

    // Run A starts and is held in Proxmox discovery...
    h.control().set_faults(
        ServiceKind::Pve,
        &FaultPatch {
            latency_ms: Some(SLOW_PVE_MS),
            ..FaultPatch::default()
        },
    );
    let pve_before: u64 = h.control().counters().pve.values().sum();
    let (mut cmd, args) = on_host(&h, "sync-a", &["sync"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Reap(Some(cmd.spawn().expect("spawn pve2netbox")));
    let deadline = Instant::now() + CHILD_WAIT;
    while h.control().counters().pve.values().sum::<u64>() == pve_before {
        assert!(Instant::now() < deadline, "run A never asked Proxmox");
        std::thread::sleep(Duration::from_millis(5));
    }
    // ...while machine B's run takes the lease, writes, and gives it back.
    let b = plant(
        &h,
        &holder(
            "sync-b.example",
            4242,
            SystemTime::now() + Duration::from_secs(300),
        ),
    );
    unplant(&h, b);
    h.control().clear_faults();

    let before = last_change(&h);
    let out = RunOutput::of(
        args,
        child
            .0
            .take()
            .expect("child")
            .wait_with_output()
            .expect("run A ends"),
    );
    out.expect_code(1);
    assert_stderr(
        &out,
        &[
            "changed during this run",
            "another pve2netbox run held the lease after this run began reading NetBox",
            "run it again",
        ],
    );
    let changes = changes_since(&h, before);
    assert!(
        changes.iter().all(|(_, ty, _)| ty == "extras.tag"),
        "run A wrote nothing but its own lease: {changes:?}"
    );
    assert!(leases(&h).is_empty(), "run A gave its lease back");
    assert!(!h.vms().iter().any(|v| v["name"] == "renamed-meanwhile"));

    // Run again: it reads the new state and writes.
    run_on(&h, "sync-a", &["sync"]).expect_code(0);
    assert!(h.vms().iter().any(|v| v["name"] == "renamed-meanwhile"));
}
