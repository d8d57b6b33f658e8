//! The end-to-end harness shared by the `e2e_*` test files: simulated Proxmox (always) and a
//! simulated or real NetBox, a config file in a tempdir, the real `pve2netbox` binary run with
//! `--output json`, and NetBox state and write counts read back independently of the product.
//!
//! One switch selects the real NetBox: `PVE2NETBOX_E2E_NETBOX=real` with `NETBOX_URL`,
//! `NETBOX_TOKEN` (v2), `NETBOX_TOKEN_V1` and `NETBOX_TOKEN_RO` set (`tests/real-netbox/netbox.sh
//! env` prints them). Then every harness takes a process-wide mutex plus a lock directory (tests
//! against the one real NetBox run serially, across test binaries too), resets NetBox with
//! `netbox.sh reset` and reads state through the REST API.
//!
//! In both tiers the binary talks to NetBox through the test kit's [`NetboxProxy`]: NetBox
//! requests are counted there (the simulator's way: every request on arrival, rejected writes
//! included, a bulk request once), and NetBox faults and kill points are injected there, so a
//! fault or kill test has one body for both tiers. Against the real NetBox, "no write" is also
//! checked in its changelog (`/api/core/object-changes/`) and VMs' `last_updated`. Tests that
//! still need the simulated NetBox itself are named `sim_only_…` and call [`require_simulator`];
//! the real tier filters them out (`--skip sim_only_`), visibly.
//!
//! Edges: the testkit's `Simulators`, `Control` and `NetboxProxy`; the binary through its
//! command line only.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pve2netbox_testkit::{
    Control, CounterSnapshot, FaultPatch, Inventory, InventorySpec, NetboxProxy, NetboxVersion,
    NewGuest, PveEndpointInfo, SimConfig, SimHandle, Simulators,
};
use serde_json::{Map, Value, json};

/// The switch selecting the real NetBox.
pub const MODE_VAR: &str = "PVE2NETBOX_E2E_NETBOX";
/// Lock directory shared by every process running tests against the real NetBox, one per
/// NetBox (its port follows), so suites against two NetBox instances do not wait on each other.
const REAL_LOCK_PREFIX: &str = "pve2netbox-e2e-real-netbox";
/// How long to wait for another process holding the real NetBox (a whole suite may run there).
const REAL_LOCK_WAIT: Duration = Duration::from_secs(3600);
/// Objects per page when reading NetBox (its MAX_PAGE_SIZE default).
const PAGE: usize = 1000;
/// Writes of the NetBox run lease in a run that writes anything: its tag's create and, at the
/// end, its delete (`safety::lease`; a run with nothing to write takes no lease).
pub const LEASE_WRITES: u64 = 2;
/// Env variable names the config points at (tokens never go into the file).
const NETBOX_TOKEN_VAR: &str = "E2E_NETBOX_TOKEN";

/// Poll period of the proxy's hold flag while a run is to be killed.
const KILL_POLL: Duration = Duration::from_millis(1);
/// Longest wait for NetBox to finish the requests a killed run had sent.
const KILL_SETTLE_WAIT: Duration = Duration::from_secs(120);
/// Pause between a killed run and its rerun against the real NetBox (see [`Harness::kill_after`]).
const KILL_RERUN_PAUSE: Duration = Duration::from_secs(2);

static REAL_MUTEX: Mutex<()> = Mutex::new(());

/// Starting the simulators (in-process, on the harness's runtime).
type SimStart = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<SimHandle, pve2netbox_testkit::SimError>>>,
>;

/// True when the suite runs against the real NetBox.
pub fn real_mode() -> bool {
    std::env::var(MODE_VAR).is_ok_and(|v| v == "real")
}

/// The prefix of the tests that need the simulated NetBox (fault injection into NetBox, its
/// request counters). The real tier filters them out with `--skip sim_only_`, so libtest shows
/// them as "filtered out" instead of passing them without running.
pub const SIM_ONLY_PREFIX: &str = "sim_only_";

/// Panics in real mode: a `sim_only_` test was run against the real NetBox, where it would check
/// nothing. The real tier's command filters these tests out (`--skip sim_only_`).
pub fn require_simulator() {
    assert!(
        !real_mode(),
        "this test needs the simulated NetBox; run the real tier with `-- --skip {SIM_ONLY_PREFIX}`"
    );
}

/// Which NetBox token the config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// `nbt_…` Bearer token, read-write.
    V2,
    /// 40-character legacy token, read-write.
    V1,
    /// Read-only (writes get 403).
    ReadOnly,
}

struct RealNetbox {
    url: String,
    v2: String,
    v1: String,
    ro: String,
}

/// Holds the real NetBox for one test: the in-process mutex and the cross-process lock dir.
struct RealLock {
    _guard: MutexGuard<'static, ()>,
    dir: PathBuf,
}

impl RealLock {
    fn take(url: &str) -> RealLock {
        let guard = REAL_MUTEX.lock().unwrap_or_else(|e| e.into_inner());
        let key: String = url
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir = std::env::temp_dir().join(format!("{REAL_LOCK_PREFIX}-{key}.lock"));
        let deadline = std::time::Instant::now() + REAL_LOCK_WAIT;
        loop {
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::write(dir.join("pid"), std::process::id().to_string())
                        .expect("write the lock's pid file");
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A lock left by a dead process is taken over.
                    let holder = std::fs::read_to_string(dir.join("pid"))
                        .ok()
                        .and_then(|p| p.trim().parse::<u32>().ok());
                    if let Some(pid) = holder
                        && !Path::new(&format!("/proc/{pid}")).exists()
                    {
                        let _ = std::fs::remove_dir_all(&dir);
                        continue;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the real NetBox is held by process {holder:?} ({})",
                        dir.display()
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("creating {}: {e}", dir.display()),
            }
        }
        RealLock { _guard: guard, dir }
    }
}

impl Drop for RealLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf()
}

fn reset_real_netbox() {
    let script = workspace().join("tests/real-netbox/netbox.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("reset")
        .output()
        .expect("run netbox.sh reset");
    assert!(
        out.status.success(),
        "{} reset failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A point in time to count NetBox traffic from.
#[derive(Debug, Clone)]
pub struct Mark {
    /// The simulators' counters (Proxmox in both tiers; NetBox in the simulator tier).
    pub sim: CounterSnapshot,
    /// The proxy's counters: the binary's NetBox requests, in both tiers.
    pub netbox: CounterSnapshot,
    /// Highest object-change id.
    change_id: u64,
    /// Real NetBox: every VM's `last_updated` (a no-op save leaves no changelog entry).
    vms: Option<BTreeMap<u64, String>>,
}

impl Mark {
    /// The highest object-change id at the mark: changes logged after it have higher ids.
    pub fn change_id(&self) -> u64 {
        self.change_id
    }
}

/// One update of a VM as NetBox saw it.
#[derive(Debug, Clone)]
pub struct VmUpdate {
    pub vm_id: u64,
    /// Changed fields (`custom_fields.x` for custom fields); `None` when the NetBox at hand
    /// does not record the data (the simulator's changelog has no pre/post data).
    pub fields: Option<BTreeSet<String>>,
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct RunOutput {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The last JSON object on stdout (`Value::Null` if none).
    pub report: Value,
}

impl RunOutput {
    /// The output of a finished `pve2netbox` process run with `args`.
    pub fn of(args: Vec<String>, out: std::process::Output) -> RunOutput {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let report = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(Value::is_object)
            .unwrap_or(Value::Null);
        RunOutput {
            args,
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            report,
        }
    }

    /// `report.counts.<kind>`.
    pub fn count(&self, kind: &str) -> u64 {
        self.report["counts"][kind]
            .as_u64()
            .unwrap_or_else(|| panic!("report has no counts.{kind}:\n{}", self.describe()))
    }

    /// `report.errors`; empty when the run printed no report at all.
    pub fn errors(&self) -> Vec<Value> {
        if self.report.is_null() {
            return Vec::new();
        }
        self.report["errors"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("report has no `errors` list:\n{}", self.describe()))
    }

    /// The errors whose scope starts with `prefix`.
    pub fn errors_in(&self, prefix: &str) -> Vec<Value> {
        self.errors()
            .into_iter()
            .filter(|e| e["scope"].as_str().is_some_and(|s| s.starts_with(prefix)))
            .collect()
    }

    /// Panics (with the run's output) unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "unexpected exit code of pve2netbox {:?}\n{}",
            self.args,
            self.describe()
        );
        self
    }

    /// Everything about the run, for failure messages.
    pub fn describe(&self) -> String {
        let tail: String = {
            let lines: Vec<&str> = self.stderr.lines().collect();
            let from = lines.len().saturating_sub(40);
            lines[from..].join("\n")
        };
        // A panic's message comes before its (long) backtrace.
        let panic: String = match self.stderr.find("panicked at") {
            Some(at) => self.stderr[at..]
                .lines()
                .take(6)
                .collect::<Vec<_>>()
                .join("\n"),
            None => String::new(),
        };
        format!(
            "args: {:?}\nexit: {}\nstdout:\n{}\n{panic}\nstderr (tail):\n{}",
            self.args, self.code, self.stdout, tail
        )
    }
}

/// Simulated Proxmox, a NetBox (simulated or real), a tempdir with the config.
pub struct Harness {
    // Field order matters: the proxy and the simulators stop before their runtime goes.
    proxy: NetboxProxy,
    sim: SimHandle,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    real: Option<RealNetbox>,
    http: reqwest::Client,
    /// Which NetBox token the config names.
    pub token: Token,
    /// `[sync]` keys written into the config.
    pub sync: toml::Table,
    /// Extra `[rules.settings]`.
    pub rule_settings: toml::Table,
    /// `[rules.policies]`: field -> ownership.
    pub rule_policies: toml::Table,
    /// Endpoints (by index) whose URL points at a closed port.
    pub down: BTreeSet<usize>,
    /// Endpoints (by index) left out of the config; empty: all.
    pub omit: BTreeSet<usize>,
    _lock: Option<RealLock>,
}

impl Harness {
    /// Simulators serving a generated inventory, with `sync.children = false`: the tests on
    /// generated inventories are about the VM record (its writes counted, killed and faulted
    /// VM by VM; clusters whose guests share addresses); a VM's children have their own tests
    /// (`e2e_children_*`), which turn them on or remove the key to get the default.
    pub fn generated(spec: InventorySpec) -> Harness {
        let mut h = Self::start(|cfg| {
            let cfg = SimConfig {
                inventory: spec,
                ..cfg
            };
            Box::pin(Simulators::start(cfg))
        });
        h.set("children", false);
        h
    }

    /// Simulators serving a given inventory.
    pub fn with_inventory(inv: Inventory) -> Harness {
        Self::start(|cfg| Box::pin(Simulators::start_with_inventory(cfg, inv)))
    }

    /// Simulators serving a given inventory, the simulated NetBox at `netbox` (a `sim_only_`
    /// test: the real tier has its own NetBox's version).
    pub fn with_inventory_on_netbox(inv: Inventory, netbox: NetboxVersion) -> Harness {
        Self::start(move |cfg| {
            let cfg = SimConfig {
                netbox_version: netbox,
                ..cfg
            };
            Box::pin(Simulators::start_with_inventory(cfg, inv))
        })
    }

    fn start(make: impl FnOnce(SimConfig) -> SimStart) -> Harness {
        let (lock, real) = if real_mode() {
            let var = |name: &str| {
                std::env::var(name).unwrap_or_else(|_| {
                    panic!(
                        "{MODE_VAR}=real needs {name}: eval \"$(tests/real-netbox/netbox.sh env)\""
                    )
                })
            };
            let real = RealNetbox {
                url: var("NETBOX_URL").trim_end_matches('/').to_string(),
                v2: var("NETBOX_TOKEN"),
                v1: var("NETBOX_TOKEN_V1"),
                ro: var("NETBOX_TOKEN_RO"),
            };
            let lock = RealLock::take(&real.url);
            reset_real_netbox();
            (Some(lock), Some(real))
        } else {
            (None, None)
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let sim = rt
            .block_on(make(SimConfig::default()))
            .expect("start the simulators");
        let upstream = match &real {
            Some(r) => r.url.clone(),
            None => sim.netbox_url().to_string(),
        };
        let proxy = NetboxProxy::start(&upstream).expect("start the NetBox proxy");
        Harness {
            proxy,
            sim,
            rt,
            dir: tempfile::tempdir().expect("tempdir"),
            real,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("http client"),
            token: Token::V2,
            sync: toml::Table::new(),
            rule_settings: toml::Table::new(),
            rule_policies: toml::Table::new(),
            down: BTreeSet::new(),
            omit: BTreeSet::new(),
            _lock: lock,
        }
    }

    /// The simulators' control API.
    pub fn control(&self) -> &Control {
        self.sim.control()
    }

    /// The proxy between the binary and NetBox: its counters, faults and kill points.
    pub fn proxy(&self) -> &NetboxProxy {
        &self.proxy
    }

    /// Injects NetBox faults (in the proxy, so in both tiers); absent keys keep their value.
    pub fn netbox_faults(&self, patch: &FaultPatch) {
        self.proxy.set_faults(patch);
    }

    /// Clears the NetBox faults and any Proxmox faults.
    pub fn clear_faults(&self) {
        self.proxy.clear_faults();
        self.control().clear_faults();
    }

    /// The simulated Proxmox endpoints.
    pub fn endpoints(&self) -> Vec<PveEndpointInfo> {
        self.sim.pve_endpoints()
    }

    /// True when the NetBox is the real one.
    pub fn is_real(&self) -> bool {
        self.real.is_some()
    }

    /// Sets a `[sync]` key.
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        self.sync.insert(key.to_string(), value.into());
        self
    }

    /// A path inside the test's tempdir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The NetBox URL the binary is given: the proxy's.
    fn netbox_url(&self) -> String {
        self.proxy.url().to_string()
    }

    /// NetBox's own URL, for the harness's reads and operator edits (not counted by the proxy).
    fn netbox_direct_url(&self) -> String {
        match &self.real {
            Some(r) => r.url.clone(),
            None => self.sim.netbox_url().to_string(),
        }
    }

    /// The NetBox at hand (sim or real) and its read-write token, for tests that call the
    /// product's library against it directly.
    pub fn netbox_access(&self) -> (String, String) {
        (self.netbox_url(), self.token_value(Token::V2))
    }

    fn token_value(&self, token: Token) -> String {
        match (&self.real, token) {
            (Some(r), Token::V2) => r.v2.clone(),
            (Some(r), Token::V1) => r.v1.clone(),
            (Some(r), Token::ReadOnly) => r.ro.clone(),
            (None, Token::V2) => self.sim.netbox_token().to_string(),
            (None, Token::V1) => self.sim.netbox_token_v1().to_string(),
            (None, Token::ReadOnly) => self.sim.netbox_token_readonly().to_string(),
        }
    }

    /// Writes the config file (NetBox, every endpoint with its pinned fingerprint, `[sync]`).
    pub fn write_config(&self) -> PathBuf {
        let mut root = toml::Table::new();
        let mut netbox = toml::Table::new();
        netbox.insert("url".into(), self.netbox_url().into());
        netbox.insert("token_env".into(), NETBOX_TOKEN_VAR.into());
        root.insert("netbox".into(), netbox.into());
        let dead = dead_port();
        let mut endpoints = Vec::new();
        for (i, ep) in self.endpoints().iter().enumerate() {
            if self.omit.contains(&i) {
                continue;
            }
            let mut t = toml::Table::new();
            t.insert("name".into(), ep.name.clone().into());
            let url = if self.down.contains(&i) {
                format!("https://127.0.0.1:{dead}")
            } else {
                ep.url.clone()
            };
            t.insert("url".into(), url.into());
            t.insert("token_env".into(), format!("E2E_PVE_TOKEN_{i}").into());
            t.insert("fingerprint".into(), ep.fingerprint.clone().into());
            endpoints.push(toml::Value::Table(t));
        }
        root.insert("proxmox".into(), endpoints.into());
        root.insert("sync".into(), self.sync.clone().into());
        let mut rules = toml::Table::new();
        if !self.rule_settings.is_empty() {
            rules.insert("settings".into(), self.rule_settings.clone().into());
        }
        if !self.rule_policies.is_empty() {
            rules.insert("policies".into(), self.rule_policies.clone().into());
        }
        if !rules.is_empty() {
            root.insert("rules".into(), rules.into());
        }
        let path = self.path("pve2netbox.toml");
        std::fs::write(&path, toml::to_string(&root).expect("config to TOML")).expect("config");
        path
    }

    /// Runs `pve2netbox <args…> --config FILE` (plus `--output json` except for `doctor` and
    /// `rules`).
    pub fn run(&self, args: &[&str]) -> RunOutput {
        let (mut cmd, all) = self.command(args);
        let out = cmd.output().expect("run the pve2netbox binary");
        RunOutput::of(all, out)
    }

    /// The command [`Harness::run`] runs, and its arguments: for a test that adds environment
    /// variables or spawns and kills the process ([`RunOutput::of`] reads its output).
    pub fn command(&self, args: &[&str]) -> (Command, Vec<String>) {
        let config = self.write_config();
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.push("--config".into());
        all.push(config.display().to_string());
        if !matches!(args.first(), Some(&"doctor" | &"rules")) {
            all.push("--output".into());
            all.push("json".into());
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pve2netbox"));
        cmd.args(&all);
        for (key, _) in std::env::vars() {
            if key.starts_with("PVE2NETBOX_") || key.starts_with("NETBOX_") {
                cmd.env_remove(key);
            }
        }
        // The test's own state dir (run lock, no-op memo), never the user's.
        cmd.env("PVE2NETBOX_LOG", "info")
            .env("PVE2NETBOX_STATE_DIR", self.path("state"))
            .env(NETBOX_TOKEN_VAR, self.token_value(self.token));
        for (i, ep) in self.endpoints().iter().enumerate() {
            cmd.env(format!("E2E_PVE_TOKEN_{i}"), &ep.token);
        }
        (cmd, all)
    }

    /// `pve2netbox sync`.
    pub fn sync(&self) -> RunOutput {
        self.run(&["sync"])
    }

    /// `pve2netbox sync`, which must exit 0.
    pub fn sync_ok(&self) -> RunOutput {
        let out = self.sync();
        out.expect_code(0);
        out
    }

    /// Runs `pve2netbox <args…>`, SIGKILLs it once NetBox has committed `k` writes (counted by the
    /// proxy from now; [`NetboxProxy::hold_after_commits`]), and returns the killed run's
    /// committed writes (`METHOD /path`, in commit order); `None` when the run ended before its
    /// k-th commit.
    pub fn kill_after(&self, k: u64, args: &[&str]) -> Option<Vec<String>> {
        self.proxy.reset_counters();
        self.proxy.hold_after_commits(k);
        let (mut cmd, _) = self.command(args);
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn pve2netbox");
        let killed = loop {
            if self.proxy.holding() {
                // `Child::kill` is SIGKILL on Unix: no cleanup runs in the process.
                child.kill().expect("kill pve2netbox");
                break true;
            }
            if child.try_wait().expect("poll the child").is_some() {
                break false;
            }
            std::thread::sleep(KILL_POLL);
        };
        let _ = child.wait();
        // Requests the run had sent before the hold may still be in NetBox (a real NetBox under
        // load works on, and commits, a request whose client is gone): the rerun comes after
        // them, as an operator's would, rather than racing them (the lease would then stop it,
        // correctly).
        let deadline = std::time::Instant::now() + KILL_SETTLE_WAIT;
        while self.proxy.in_flight() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "NetBox still works on the killed run's requests after {KILL_SETTLE_WAIT:?}"
            );
            std::thread::sleep(KILL_POLL);
        }
        // An operator's rerun comes a while after the kill. Against the real NetBox it must: the
        // rerun that breaks the dead run's lease stops (correctly, "run it again") on any change
        // it places after its first read, and its estimate of that moment in NetBox's clock is
        // off by about a request's latency, so a rerun started within milliseconds of the dead
        // run's last commit can take that commit for a concurrent run's.
        if self.is_real() {
            std::thread::sleep(KILL_RERUN_PAUSE);
        }
        // The held connections are dropped now that nobody waits on them.
        self.proxy.release();
        killed.then(|| self.proxy.committed_log())
    }

    // -- NetBox state -----------------------------------------------------------------------

    /// Every object of a type (`virtual-machines`, `journal-entries`, `tags`, `clusters`, ...).
    pub fn objects(&self, key: &str) -> Vec<Value> {
        match &self.real {
            None => self
                .control()
                .netbox_objects(key)
                .unwrap_or_else(|e| panic!("sim objects {key}: {e}")),
            Some(_) => self.api_list(api_path(key), &[]),
        }
    }

    /// Every VM.
    pub fn vms(&self) -> Vec<Value> {
        self.objects("virtual-machines")
    }

    /// The VM with this name (exactly one).
    pub fn vm_named(&self, name: &str) -> Value {
        let vms: Vec<Value> = self
            .vms()
            .into_iter()
            .filter(|v| v["name"] == name)
            .collect();
        assert_eq!(vms.len(), 1, "expected one VM named {name}, got {vms:#?}");
        vms.into_iter().next().unwrap_or_default()
    }

    /// The VM with this NetBox id.
    pub fn vm(&self, id: u64) -> Option<Value> {
        self.vms().into_iter().find(|v| v["id"] == id)
    }

    fn api_list(&self, path: &str, filters: &[(&str, String)]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            let mut query: Vec<(String, String)> = vec![
                ("limit".into(), PAGE.to_string()),
                ("offset".into(), offset.to_string()),
            ];
            query.extend(filters.iter().map(|(k, v)| (k.to_string(), v.clone())));
            let page = self.api("GET", path, &query, None);
            // A page without `results` or `count` is a changed API shape: fail loudly rather than
            // read it as "nothing there", which would make "no writes" pass without checking.
            let results = page["results"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| panic!("GET {path}: a page without `results`: {page}"));
            let n = results.len();
            out.extend(results);
            offset += n;
            let count = page["count"]
                .as_u64()
                .unwrap_or_else(|| panic!("GET {path}: a page without `count`: {page}"))
                as usize;
            if n == 0 || offset >= count {
                return out;
            }
        }
    }

    /// One REST call to the NetBox at hand with the read-write v2 (sim: main) token.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Value {
        let url = format!(
            "{}/api/{}/",
            self.netbox_direct_url(),
            path.trim_matches('/')
        );
        let token = self.token_value(Token::V2);
        let auth = if token.starts_with("nbt_") {
            format!("Bearer {token}")
        } else {
            format!("Token {token}")
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method.clone(), &url)
            .query(query)
            .header("Authorization", auth)
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async move {
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            assert!(
                status.is_success(),
                "{method} {url} {query:?} -> {status}: {text}"
            );
            if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
            }
        })
    }

    /// Creates an object as an operator would (REST, counted like any client's write).
    pub fn create(&self, key: &str, body: Value) -> Value {
        self.api("POST", api_path(key), &[], Some(&body))
    }

    /// Edits an object as an operator would.
    pub fn patch(&self, key: &str, id: u64, body: Value) -> Value {
        self.api(
            "PATCH",
            &format!("{}/{id}", api_path(key)),
            &[],
            Some(&body),
        )
    }

    /// Empties NetBox (sim: in place; real: `netbox.sh reset`).
    pub fn reset_netbox(&self) {
        match &self.real {
            None => self.control().netbox_reset(),
            Some(_) => reset_real_netbox(),
        }
    }

    // -- counting ---------------------------------------------------------------------------

    /// Remembers the traffic so far.
    pub fn mark(&self) -> Mark {
        Mark {
            sim: self.control().counters(),
            netbox: self.proxy.counters(),
            change_id: self.last_change_id(),
            vms: self.real.as_ref().map(|_| self.vm_stamps()),
        }
    }

    fn last_change_id(&self) -> u64 {
        let page = self.api(
            "GET",
            "core/object-changes",
            &[
                ("limit".into(), "1".into()),
                ("ordering".into(), "-id".into()),
            ],
            None,
        );
        match page["results"].as_array() {
            Some(rows) if rows.is_empty() => 0,
            Some(rows) => rows[0]["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("an object change without an id: {page}")),
            None => panic!("GET core/object-changes: a page without `results`: {page}"),
        }
    }

    fn vm_stamps(&self) -> BTreeMap<u64, String> {
        self.api_list("virtualization/virtual-machines", &[])
            .into_iter()
            .filter_map(|v| {
                let stamp = v["last_updated"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a VM without `last_updated`: {v}"));
                Some((v["id"].as_u64()?, stamp.to_string()))
            })
            .collect()
    }

    /// The changelog entries after the mark (real NetBox only).
    fn changes_since(&self, change_id: u64) -> Vec<Value> {
        let mut all = self.api_list("core/object-changes", &[("id__gt", change_id.to_string())]);
        // Unknown filters are ignored by NetBox: filter again here.
        all.retain(|c| c["id"].as_u64().is_some_and(|id| id > change_id));
        all.sort_by_key(|c| c["id"].as_u64());
        all
    }

    /// Requests per `METHOD /path` the proxy counted since the mark whose method matches.
    fn proxy_paths_since(&self, mark: &Mark, reads: bool) -> BTreeMap<String, u64> {
        let now = self.proxy.counters();
        let empty = BTreeMap::new();
        let before = mark.netbox.paths.get("netbox").unwrap_or(&empty);
        now.paths
            .get("netbox")
            .into_iter()
            .flatten()
            .filter(|(p, _)| p.starts_with("GET ") == reads)
            .filter_map(|(p, n)| {
                let old = before.get(p).copied().unwrap_or(0);
                (*n > old).then(|| (p.clone(), n - old))
            })
            .collect()
    }

    /// The binary's NetBox write requests since the mark, counted by the proxy in both tiers the
    /// simulator's way: a bulk request once, retries and rejected writes included.
    pub fn writes_since(&self, mark: &Mark) -> u64 {
        self.proxy.counters().netbox_writes() - mark.netbox.netbox_writes()
    }

    /// Real NetBox: changelog entries since the mark plus VMs whose `last_updated` moved without
    /// one (a no-op save). `None` for the simulator.
    fn real_changes_since(&self, mark: &Mark) -> Option<u64> {
        let vms = mark.vms.as_ref()?;
        let changes = self.changes_since(mark.change_id);
        let logged: BTreeSet<u64> = changes
            .iter()
            .filter(|c| c["changed_object_type"] == "virtualization.virtualmachine")
            .filter_map(|c| c["changed_object_id"].as_u64())
            .collect();
        let silent = self
            .vm_stamps()
            .iter()
            .filter(|(id, stamp)| {
                vms.get(id).is_some_and(|old| old != *stamp) && !logged.contains(id)
            })
            .count();
        Some(changes.len() as u64 + silent as u64)
    }

    /// What the writes since the mark were, for failure messages: the proxy's write requests per
    /// path and the changelog's entries.
    pub fn writes_detail(&self, mark: &Mark) -> String {
        let mut lines: Vec<String> = self
            .proxy_paths_since(mark, false)
            .iter()
            .map(|(path, n)| format!("{path}: {n}"))
            .collect();
        lines.extend(self.changes_since(mark.change_id).iter().map(|c| {
            format!(
                "changelog: {} {} #{} {}",
                choice(&c["action"]),
                c["changed_object_type"].as_str().unwrap_or(""),
                c["changed_object_id"],
                c["object_repr"].as_str().unwrap_or("")
            )
        }));
        lines.join("\n")
    }

    /// Panics unless the binary sent no NetBox write since the mark (and, against the real
    /// NetBox, nothing changed in its changelog or VMs' `last_updated`).
    pub fn assert_no_writes_since(&self, mark: &Mark, what: &str) {
        let n = self.writes_since(mark);
        let changed = self.real_changes_since(mark).unwrap_or(0);
        assert!(
            n == 0 && changed == 0,
            "{what}: expected no NetBox write, got {n} write requests and {changed} changes:\n{}",
            self.writes_detail(mark)
        );
    }

    /// The binary's NetBox read requests since the mark (proxy, both tiers).
    pub fn reads_since(&self, mark: &Mark) -> u64 {
        self.proxy.counters().netbox("GET") - mark.netbox.netbox("GET")
    }

    /// The binary's NetBox write requests since the mark per `METHOD /path` (proxy, both tiers).
    pub fn write_paths_since(&self, mark: &Mark) -> BTreeMap<String, u64> {
        self.proxy_paths_since(mark, false)
    }

    /// The binary's NetBox read requests since the mark per `GET /path` (proxy, both tiers).
    pub fn read_paths_since(&self, mark: &Mark) -> BTreeMap<String, u64> {
        self.proxy_paths_since(mark, true)
    }

    /// VM updates since the mark. Real NetBox: from the changelog, with the changed fields.
    /// Simulator: one entry per single-object PATCH request (fields unknown), ids unknown (0).
    pub fn vm_updates_since(&self, mark: &Mark) -> Vec<VmUpdate> {
        // Both NetBoxes keep a changelog with pre/post data, so one reading serves both, and a
        // bulk PATCH of several VMs counts once per VM, as NetBox logs it.
        self.changes_since(mark.change_id)
            .into_iter()
            .filter(|c| {
                c["changed_object_type"] == "virtualization.virtualmachine"
                    && choice(&c["action"]) == "update"
            })
            .map(|c| VmUpdate {
                vm_id: c["changed_object_id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("an object change without changed_object_id: {c}")),
                fields: Some(changed_keys(&c["prechange_data"], &c["postchange_data"])),
            })
            .collect()
    }

    // -- Proxmox side -----------------------------------------------------------------------

    /// The guests as the control API shows them (`vmid`, `type`, `node`, `status`, `config`,
    /// `cluster`).
    pub fn guests(&self) -> Vec<Value> {
        self.control().pve_guests(None).expect("pve guests")
    }

    /// The first guest of a type (`qemu`/`lxc`) in the first endpoint.
    pub fn guest_of_type(&self, kind: &str) -> Value {
        let first = &self.endpoints()[0].name;
        self.guests()
            .into_iter()
            .find(|g| g["type"] == kind && g["cluster"] == *first.as_str())
            .unwrap_or_else(|| panic!("no {kind} guest in {first}"))
    }

    /// Edits a guest in Proxmox (control API patch: config keys, `node`, `status`, `name`, `tags`).
    pub fn edit_guest(&self, cluster: &str, vmid: u32, patch: Value) {
        let Value::Object(p) = patch else {
            panic!("a guest patch is an object")
        };
        self.control()
            .update_guest(Some(cluster), vmid, &p)
            .unwrap_or_else(|e| panic!("edit guest {cluster}/{vmid}: {e}"));
    }

    /// Removes a guest from Proxmox and returns it as a [`NewGuest`] that puts it back.
    pub fn remove_guest(&self, cluster: &str, vmid: u32) -> NewGuest {
        let g = self
            .control()
            .pve_guests(Some(cluster))
            .expect("guests")
            .into_iter()
            .find(|g| g["vmid"] == vmid)
            .unwrap_or_else(|| panic!("no guest {cluster}/{vmid}"));
        self.control()
            .remove_guest(Some(cluster), vmid)
            .expect("remove guest");
        NewGuest {
            cluster: Some(cluster.to_string()),
            vmid: Some(vmid),
            kind: serde_json::from_value(g["type"].clone()).ok(),
            node: g["node"].as_str().map(str::to_string),
            status: g["status"].as_str().map(str::to_string),
            config: g["config"].as_object().cloned(),
        }
    }
}

/// A TCP port nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The REST path of an object type key.
pub fn api_path(key: &str) -> &'static str {
    match key {
        "virtual-machines" => "virtualization/virtual-machines",
        "clusters" => "virtualization/clusters",
        "cluster-types" => "virtualization/cluster-types",
        "journal-entries" => "extras/journal-entries",
        "tags" => "extras/tags",
        "custom-fields" => "extras/custom-fields",
        "sites" => "dcim/sites",
        "devices" => "dcim/devices",
        "platforms" => "dcim/platforms",
        "manufacturers" => "dcim/manufacturers",
        "device-types" => "dcim/device-types",
        "device-roles" => "dcim/device-roles",
        "virtual-machine-types" => "virtualization/virtual-machine-types",
        "tenants" => "tenancy/tenants",
        "object-changes" => "core/object-changes",
        "interfaces" => "virtualization/interfaces",
        "virtual-disks" => "virtualization/virtual-disks",
        "mac-addresses" => "dcim/mac-addresses",
        "ip-addresses" => "ipam/ip-addresses",
        "vlans" => "ipam/vlans",
        "vrfs" => "ipam/vrfs",
        other => panic!("e2e harness: no API path for object type {other}"),
    }
}

/// A choice value (`{"value": "active", "label": ...}` or a plain string).
pub fn choice(v: &Value) -> &str {
    v["value"].as_str().or(v.as_str()).unwrap_or("")
}

/// A VM's tag slugs, sorted.
pub fn tag_slugs(vm: &Value) -> Vec<String> {
    let mut t: Vec<String> = vm["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["slug"].as_str().or(t.as_str()).map(str::to_string))
        .collect();
    t.sort();
    t
}

/// A VM's custom field.
pub fn cf<'a>(vm: &'a Value, name: &str) -> &'a Value {
    &vm["custom_fields"][name]
}

/// Normalized value of a field for comparisons: nested objects by `name`/`slug`, tags by
/// slug, choices by value.
fn norm(key: &str, v: &Value) -> Value {
    match (key, v) {
        ("tags", _) => json!(tag_slugs(&json!({ "tags": v }))),
        (_, Value::Object(o)) if o.contains_key("value") && o.contains_key("label") => {
            o["value"].clone()
        }
        (_, Value::Object(o)) if o.contains_key("id") => o
            .get("slug")
            .or_else(|| o.get("name"))
            .cloned()
            .unwrap_or_else(|| o["id"].clone()),
        _ => v.clone(),
    }
}

/// Fields that describe a VM's content (no ids, timestamps or URLs).
pub const VM_FIELDS: &[&str] = &[
    "name",
    "status",
    "site",
    "cluster",
    "device",
    "role",
    "virtual_machine_type",
    "platform",
    "tenant",
    "vcpus",
    "memory",
    "disk",
    "description",
    "comments",
    "serial",
    "start_on_boot",
    "tags",
];

/// A VM's content, normalized: [`VM_FIELDS`] plus each custom field as `custom_fields.x`.
pub fn vm_content(vm: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in VM_FIELDS {
        if let Some(v) = vm.get(*f) {
            out.insert((*f).to_string(), norm(f, v));
        }
    }
    if let Some(cfs) = vm["custom_fields"].as_object() {
        for (k, v) in cfs {
            out.insert(format!("custom_fields.{k}"), v.clone());
        }
    }
    out
}

/// The fields that differ between two renderings of one VM.
pub fn changed_fields(before: &Value, after: &Value) -> BTreeSet<String> {
    let (a, b) = (vm_content(before), vm_content(after));
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Changed keys of a changelog entry's pre/post data (custom fields one by one).
fn changed_keys(pre: &Value, post: &Value) -> BTreeSet<String> {
    let empty = Map::new();
    let (a, b) = (
        pre.as_object().unwrap_or(&empty),
        post.as_object().unwrap_or(&empty),
    );
    let mut out = BTreeSet::new();
    for k in a.keys().chain(b.keys()) {
        if k == "last_updated" {
            continue;
        }
        if k == "custom_fields" {
            let (ca, cb) = (&a.get(k).cloned(), &b.get(k).cloned());
            let ca = ca
                .as_ref()
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let cb = cb
                .as_ref()
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for ck in ca.keys().chain(cb.keys()) {
                if ca.get(ck) != cb.get(ck) {
                    out.insert(format!("custom_fields.{ck}"));
                }
            }
            continue;
        }
        if a.get(k) != b.get(k) {
            out.insert(k.clone());
        }
    }
    out
}

/// Per VM id, the fields that changed between two lists of VMs; created and deleted VMs are
/// listed with the field `<created>` / `<deleted>`.
pub fn vm_diff(before: &[Value], after: &[Value]) -> BTreeMap<u64, BTreeSet<String>> {
    let index = |l: &[Value]| -> BTreeMap<u64, Value> {
        l.iter()
            .filter_map(|v| Some((v["id"].as_u64()?, v.clone())))
            .collect()
    };
    let (a, b) = (index(before), index(after));
    let mut out = BTreeMap::new();
    for (id, old) in &a {
        match b.get(id) {
            None => {
                out.insert(*id, BTreeSet::from(["<deleted>".to_string()]));
            }
            Some(new) => {
                let f = changed_fields(old, new);
                if !f.is_empty() {
                    out.insert(*id, f);
                }
            }
        }
    }
    for id in b.keys().filter(|id| !a.contains_key(id)) {
        out.insert(*id, BTreeSet::from(["<created>".to_string()]));
    }
    out
}

/// The whole VM state keyed by `(cluster name, proxmox_vm_id)` (unmanaged VMs by name), with
/// ids and timestamps left out: equal for two NetBoxes that hold the same VMs.
pub fn vm_state(vms: &[Value]) -> BTreeMap<String, BTreeMap<String, Value>> {
    vms.iter()
        .map(|v| {
            let key = format!(
                "{}/{}",
                norm("cluster", &v["cluster"]),
                match cf(v, "proxmox_vm_id") {
                    Value::Null => format!("name:{}", v["name"]),
                    id => id.to_string(),
                }
            );
            (key, vm_content(v))
        })
        .collect()
}

/// `ceil(n / 1000)`: NetBox list pages for n objects.
pub fn pages(n: usize) -> u64 {
    n.div_ceil(PAGE) as u64
}

/// A small generated inventory.
pub fn spec(
    vms: usize,
    nodes: usize,
    clusters: usize,
    standalone: usize,
    seed: u64,
) -> InventorySpec {
    InventorySpec {
        vms,
        nodes,
        clusters,
        standalone,
        seed,
    }
}
