//! Secrets never leak: every command, at the most verbose log level (`--log
//! pve2netbox=trace,trace`, every crate at trace), in text and JSON log formats, with known
//! Proxmox and NetBox tokens (v2 `nbt_<key>.<secret>` and v1) in its environment, and no token
//! secret may appear on stdout, on stderr, or in a file the run writes (plan, lock file).
//!
//! Commands: `sync --dry-run`, `plan --out`, `apply`, `sync` (creates, then an update), `doctor`,
//! `rules check` and `rules eval`; and the failure paths, where tokens are most likely to be
//! echoed: a config file holding a token (refused), NetBox answering 403 to unknown v2 and v1
//! tokens, Proxmox answering 401 to an unknown token, and a Proxmox certificate-pin mismatch.
//! Plus the `Debug` renderings of the library's config and clients, and the warning for a token
//! file readable by others.
//!
//! Simulators only; the binary is driven like `e2e_smoke.rs`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use pve2netbox::clients::http::RequestCounters;
use pve2netbox::clients::netbox::NetboxClient;
use pve2netbox::clients::proxmox::ProxmoxClient;
use pve2netbox::config::{Config, TokenSource};
use pve2netbox_testkit::{InventorySpec, SimConfig, SimHandle, Simulators};
use serde_json::{Map, json};

/// Variables holding the simulator's real tokens.
const NB_V2_VAR: &str = "SCAN_NETBOX_TOKEN_V2";
const NB_V1_VAR: &str = "SCAN_NETBOX_TOKEN_V1";
const PVE_VAR: &str = "SCAN_PVE_TOKEN";
/// Variables holding tokens the simulators do not know (auth failures).
const NB_BAD_V2_VAR: &str = "SCAN_NETBOX_BAD_V2";
const NB_BAD_V1_VAR: &str = "SCAN_NETBOX_BAD_V1";
const PVE_BAD_VAR: &str = "SCAN_PVE_BAD";
/// Distinctive tokens the simulators reject.
const NB_BAD_V2: &str = "nbt_LeakProbeKy1.LeakProbeV2Secret0123456789abcdefghijklmn";
const NB_BAD_V1: &str = "LeakProbeV1Secret0123456789abcdefghijklm";
const PVE_BAD: &str = "sync@pve!netbox=LeakProbePveSecret-0123-4567-89ab-cdef01234567";
/// The most verbose filter: our crate and every dependency at trace.
const TRACE_ALL: &str = "pve2netbox=trace,trace";
/// A well-formed SHA-256 pin that matches no simulator certificate.
const WRONG_PIN: &str = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:\
                         00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

/// Where the NetBox token comes from in a config.
enum NbToken {
    Env(&'static str),
    File(PathBuf),
    /// Literally in the file (a config error).
    Inline(String),
}

struct Scan {
    // Field order: the simulators stop before their runtime goes.
    sim: SimHandle,
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    /// (label, text) of everything that must never be printed.
    secrets: Vec<(String, String)>,
}

/// What one run printed and wrote.
struct Captured {
    label: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Scan {
    fn new() -> Scan {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let sim = rt
            .block_on(Simulators::start(SimConfig {
                inventory: InventorySpec {
                    vms: 6,
                    nodes: 2,
                    clusters: 1,
                    standalone: 0,
                    seed: 3,
                },
                ..SimConfig::default()
            }))
            .expect("simulators start");
        let mut secrets = Vec::new();
        let mut add = |label: &str, token: &str, secret_part: &str| {
            assert!(secret_part.len() >= 16, "{label}: a distinctive secret");
            secrets.push((format!("{label} (whole token)"), token.to_string()));
            secrets.push((format!("{label} (secret part)"), secret_part.to_string()));
        };
        let v2 = sim.netbox_token().to_string();
        assert!(v2.starts_with("nbt_"), "the simulator's NetBox speaks v2");
        add("NetBox v2 token", &v2, after(&v2, '.'));
        let v1 = sim.netbox_token_v1().to_string();
        add("NetBox v1 token", &v1, &v1);
        let pve = sim.pve_endpoints()[0].token.clone();
        add("Proxmox token", &pve, after(&pve, '='));
        add("unknown NetBox v2 token", NB_BAD_V2, after(NB_BAD_V2, '.'));
        add("unknown NetBox v1 token", NB_BAD_V1, NB_BAD_V1);
        add("unknown Proxmox token", PVE_BAD, after(PVE_BAD, '='));
        Scan {
            sim,
            _rt: rt,
            dir: tempfile::tempdir().expect("tempdir"),
            secrets,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A token file holding `token`, mode 0600.
    fn token_file(&self, name: &str, token: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, format!("{token}\n")).expect("token file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    /// Writes a config named `name`.
    fn config(&self, name: &str, nb: NbToken, pve_var: &str, pin: Option<&str>) -> PathBuf {
        let ep = &self.sim.pve_endpoints()[0];
        let token_line = match nb {
            NbToken::Env(var) => format!("token_env = \"{var}\""),
            NbToken::File(path) => format!("token_file = \"{}\"", path.display()),
            NbToken::Inline(token) => format!("token = \"{token}\""),
        };
        let text = format!(
            "[netbox]\nurl = \"{}\"\n{token_line}\n\n[[proxmox]]\nname = \"{}\"\nurl = \"{}\"\n\
             token_env = \"{pve_var}\"\nfingerprint = \"{}\"\n",
            self.sim.netbox_url(),
            ep.name,
            ep.url,
            pin.unwrap_or(&ep.fingerprint),
        );
        let path = self.path(name);
        std::fs::write(&path, text).expect("config");
        path
    }

    /// Runs `pve2netbox --log <trace> --log-format <format> <args…>` with every token in its
    /// environment, and checks its output and `files` for secrets.
    fn run(&self, format: &str, args: &[&str], files: &[&Path]) -> Captured {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pve2netbox"));
        cmd.args(["--log", TRACE_ALL, "--log-format", format])
            .args(args)
            .current_dir(self.dir.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("PVE2NETBOX_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PVE2NETBOX_STATE_DIR", self.path("state"))
            .env("PVE2NETBOX_CACHE_DIR", self.path("cache"))
            .env(NB_V2_VAR, self.sim.netbox_token())
            .env(NB_V1_VAR, self.sim.netbox_token_v1())
            .env(PVE_VAR, &self.sim.pve_endpoints()[0].token)
            .env(NB_BAD_V2_VAR, NB_BAD_V2)
            .env(NB_BAD_V1_VAR, NB_BAD_V1)
            .env(PVE_BAD_VAR, PVE_BAD);
        let out = cmd.output().expect("run pve2netbox");
        let captured = Captured {
            label: format!("pve2netbox {args:?} (log format {format})"),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !(captured.stdout.is_empty() && captured.stderr.is_empty()),
            "{}: printed nothing",
            captured.label
        );
        self.assert_clean(&format!("{} stdout", captured.label), &captured.stdout);
        self.assert_clean(&format!("{} stderr", captured.label), &captured.stderr);
        for file in files {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", captured.label, file.display()));
            self.assert_clean(&format!("{}: {}", captured.label, file.display()), &text);
        }
        for file in files_under(&self.path("state")) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            self.assert_clean(&format!("{}: {}", captured.label, file.display()), &text);
        }
        captured
    }

    /// Panics, naming the secret and showing the line, if `text` holds any secret.
    fn assert_clean(&self, what: &str, text: &str) {
        for (label, secret) in &self.secrets {
            if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
                // Shown with the secret masked: test logs get copied around too.
                let shown: String = line
                    .replace(secret.as_str(), "<THE SECRET>")
                    .chars()
                    .take(400)
                    .collect();
                panic!("{label} leaked in {what}:\n{shown}");
            }
        }
    }
}

impl Captured {
    fn expect(&self, code: i32) -> &Captured {
        assert_eq!(
            self.code,
            code,
            "{}: exit {}\nstdout:\n{}\nstderr (tail):\n{}",
            self.label,
            self.code,
            self.stdout,
            tail(&self.stderr)
        );
        self
    }

    /// Proves the run did what the case is about: `counts.<kind>` of its JSON report.
    fn expect_count(&self, kind: &str, n: u64) -> &Captured {
        let report: serde_json::Value = self
            .stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        assert_eq!(
            report["counts"][kind].as_u64(),
            Some(n),
            "{}: counts.{kind}\nstdout:\n{}",
            self.label,
            self.stdout
        );
        self
    }

    /// Proves the case reached the failure it is about.
    fn expect_in_output(&self, needle: &str) -> &Captured {
        assert!(
            self.stdout.contains(needle) || self.stderr.contains(needle),
            "{}: {needle:?} expected in the output\nstdout:\n{}\nstderr (tail):\n{}",
            self.label,
            self.stdout,
            tail(&self.stderr)
        );
        self
    }
}

fn after(token: &str, sep: char) -> &str {
    token
        .rsplit_once(sep)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("token without {sep:?}"))
}

/// The last lines of stderr that are not dependencies' trace noise (wasmtime alone prints
/// thousands), for failure messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("TRACE") || l.contains("pve2netbox"))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

const GUEST: &str = r#"{
  "cluster": "lab", "vmid": 100, "type": "qemu", "node": "n1", "name": "web-1",
  "status": "running", "template": 0, "maxcpu": 2, "maxmem": 2147483648, "maxdisk": 34359738368,
  "config": {"name": "web-1", "memory": "2048", "cores": 2, "scsi0": "local-lvm:vm-100-disk-0,size=32G"}
}"#;

#[test]
fn no_command_prints_or_writes_a_token_at_trace_level() {
    let s = Scan::new();
    let v2 = s.config("v2.toml", NbToken::Env(NB_V2_VAR), PVE_VAR, None);
    let v1_file = s.token_file("netbox-v1.token", s.sim.netbox_token_v1());
    let v1 = s.config("v1.toml", NbToken::File(v1_file), PVE_VAR, None);
    let guest = s.path("guest.json");
    std::fs::write(&guest, GUEST).expect("guest file");
    let (v2, v1, guest) = (
        v2.to_str().expect("utf-8"),
        v1.to_str().expect("utf-8"),
        guest.to_str().expect("utf-8"),
    );

    for (format, cores) in [("text", 7), ("json", 9)] {
        s.sim.control().netbox_reset();
        let plan = s.path(&format!("plan-{format}.json"));
        let plan_arg = plan.to_str().expect("utf-8");
        for output in ["text", "json"] {
            s.run(
                format,
                &["sync", "--dry-run", "--config", v2, "--output", output],
                &[],
            )
            .expect(2);
        }
        s.run(
            format,
            &[
                "plan", "--config", v2, "--out", plan_arg, "--output", "json",
            ],
            &[&plan],
        )
        .expect(2);
        s.run(format, &["apply", plan_arg, "--config", v2], &[&plan])
            .expect(0);
        // An update (and task history) through the v1 token read from a file.
        let vmid = s.sim.control().pve_guests(None).expect("guests")[0]["vmid"]
            .as_u64()
            .expect("vmid") as u32;
        let mut patch = Map::new();
        patch.insert("cores".into(), json!(cores));
        s.sim
            .control()
            .update_guest(None, vmid, &patch)
            .expect("edit a guest");
        s.run(format, &["sync", "--config", v1, "--output", "json"], &[])
            .expect(0)
            .expect_count("update", 1);
        s.run(format, &["sync", "--config", v2], &[]).expect(0);
        s.run(format, &["doctor", "--config", v2], &[]).expect(0);
        s.run(format, &["doctor", "--config", v1], &[]).expect(0);
        s.run(format, &["rules", "check", "default"], &[]).expect(0);
        s.run(format, &["rules", "eval", "default", "--guest", guest], &[])
            .expect(0);
    }
}

#[test]
fn failures_do_not_echo_tokens_at_trace_level() {
    let s = Scan::new();
    let inline = s.config(
        "inline.toml",
        NbToken::Inline(s.sim.netbox_token().to_string()),
        PVE_VAR,
        None,
    );
    let bad_v2 = s.config("bad-v2.toml", NbToken::Env(NB_BAD_V2_VAR), PVE_VAR, None);
    let bad_v1_file = s.token_file("bad-v1.token", NB_BAD_V1);
    let bad_v1 = s.config("bad-v1.toml", NbToken::File(bad_v1_file), PVE_VAR, None);
    let bad_pve = s.config("bad-pve.toml", NbToken::Env(NB_V2_VAR), PVE_BAD_VAR, None);
    let pin = s.config(
        "pin.toml",
        NbToken::Env(NB_V2_VAR),
        PVE_VAR,
        Some(WRONG_PIN),
    );
    let [inline, bad_v2, bad_v1, bad_pve, pin] =
        [&inline, &bad_v2, &bad_v1, &bad_pve, &pin].map(|p| p.to_str().expect("utf-8"));

    for format in ["text", "json"] {
        // The config file holds a token: refused before anything runs, without echoing it.
        for cmd in ["sync", "doctor"] {
            s.run(format, &[cmd, "--config", inline], &[])
                .expect(1)
                .expect_in_output("netbox.token");
        }
        // NetBox answers 403 to tokens it does not know (v2 and v1).
        for config in [bad_v2, bad_v1] {
            s.run(format, &["sync", "--config", config], &[])
                .expect(1)
                .expect_in_output("403");
            s.run(format, &["sync", "--dry-run", "--config", config], &[])
                .expect(1);
            s.run(format, &["doctor", "--config", config], &[])
                .expect(1)
                .expect_in_output("403");
        }
        // Proxmox answers 401 to a token it does not know.
        s.run(format, &["sync", "--config", bad_pve], &[])
            .expect(1)
            .expect_in_output("401");
        s.run(format, &["doctor", "--config", bad_pve], &[])
            .expect(1);
        // The Proxmox certificate does not match the pin.
        s.run(format, &["sync", "--config", pin], &[])
            .expect(1)
            .expect_in_output("fingerprint");
        s.run(format, &["doctor", "--config", pin], &[]).expect(1);
    }
}

#[test]
fn debug_renderings_of_config_and_clients_hide_tokens() {
    let s = Scan::new();
    let v1_file = s.token_file("netbox-v1.token", s.sim.netbox_token_v1());
    let path = s.config("v1.toml", NbToken::File(v1_file), PVE_VAR, None);
    let env = vec![(PVE_VAR.to_string(), s.sim.pve_endpoints()[0].token.clone())];
    let mut config = Config::load_with_env(Some(&path), env.clone()).expect("config");
    let counters = Arc::new(RequestCounters::default());

    let nb_secret = config.netbox.token.resolve().expect("v1 token from file");
    let pve_token = &config.proxmox[0].token;
    let pve_secret = pve_token
        .resolve_with(&|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("Proxmox token from env");
    let netbox = NetboxClient::with_token(
        &config.netbox,
        &nb_secret,
        &config.timeouts,
        counters.clone(),
    )
    .expect("NetBox client");
    let proxmox =
        ProxmoxClient::with_token(&config.proxmox[0], &pve_secret, &config.timeouts, counters)
            .expect("Proxmox client");
    s.assert_clean(
        "Debug of a resolved NetBox Secret",
        &format!("{nb_secret:?}"),
    );
    s.assert_clean(
        "Display of a resolved NetBox Secret",
        &format!("{nb_secret}"),
    );
    s.assert_clean(
        "Debug of a resolved Proxmox Secret",
        &format!("{pve_secret:?}"),
    );
    s.assert_clean("Debug of the NetBox client", &format!("{netbox:?}"));
    s.assert_clean("Debug of the Proxmox client", &format!("{proxmox:?}"));

    // Tokens given in code live inside the config: its Debug (pretty too) must hide them.
    config.netbox.token = TokenSource::Value(nb_secret.clone());
    config.proxmox[0].token = TokenSource::Value(pve_secret.clone());
    s.assert_clean("Debug of a Config", &format!("{config:?}"));
    s.assert_clean("pretty Debug of a Config", &format!("{config:#?}"));

    // A config error about a token in the file.
    let inline = s.config(
        "inline.toml",
        NbToken::Inline(s.sim.netbox_token().to_string()),
        PVE_VAR,
        None,
    );
    let err = Config::load_with_env(Some(&inline), env).expect_err("a token in the file");
    s.assert_clean("a config error's Display", &err.to_string());
    s.assert_clean("a config error's Debug", &format!("{err:?}"));
}

#[test]
fn a_token_file_readable_by_others_is_warned_about() {
    let s = Scan::new();
    let file = s.token_file("netbox.token", s.sim.netbox_token());
    let config = s.config("file.toml", NbToken::File(file.clone()), PVE_VAR, None);
    let config = config.to_str().expect("utf-8");
    let warning = "token file is readable by group or others";

    let private = s.run("text", &["sync", "--dry-run", "--config", config], &[]);
    private.expect(2);
    assert!(
        !private.stderr.contains(warning),
        "mode 0600 is not warned about:\n{}",
        tail(&private.stderr)
    );
    for mode in [0o644, 0o640] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let open = s.run("text", &["sync", "--dry-run", "--config", config], &[]);
        open.expect(2);
        let line = open
            .stderr
            .lines()
            .find(|l| l.contains(warning))
            .unwrap_or_else(|| {
                panic!(
                    "mode {mode:o}: no warning in stderr:\n{}",
                    tail(&open.stderr)
                )
            });
        assert!(
            line.contains(&file.display().to_string()) && line.contains("chmod 600"),
            "the warning names the file and the fix: {line}"
        );
    }
}
