//! The scheduling examples in `docs/`, checked as far as a machine without Kubernetes or cron
//! allows: each file is parsed and its fields that matter are checked, then its command line and
//! environment run against the simulators, as the scheduler would run them, and must sync.
//!
//! - `docs/kubernetes-cronjob.yaml`: the CronJob (`concurrencyPolicy: Forbid`, every 15 minutes,
//!   non-root as the image's user, tokens from a Secret, state on a persistent volume) runs its
//!   container's command, args and env, with each volume a directory and the ConfigMap's file in
//!   it; twice, the second run writing nothing.
//! - `docs/pve2netbox.cron`: the `/etc/cron.d` line runs through `/bin/sh -c` with cron's
//!   variables, the packaged example configuration (`packaging/pve2netbox.toml`) and token files
//!   in its credentials directory; a successful run prints nothing (cron mails any output).
//!
//! The only edits are those an operator makes: the example URLs and the Proxmox fingerprint in
//! the configuration become the simulators', and the paths under `/etc` and `/var` are moved
//! into a temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pve2netbox_testkit::{InventorySpec, SimConfig, SimHandle, Simulators};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const VMS: usize = 12;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn simulators() -> SimHandle {
    Simulators::start(SimConfig {
        inventory: InventorySpec {
            vms: VMS,
            nodes: 2,
            clusters: 1,
            standalone: 0,
            seed: 15,
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulators start")
}

/// The minutes of the hour a cron minute field (`*/15`, `7-59/15`, `0,30`, `5`) fires at.
fn cron_minutes(field: &str) -> BTreeSet<u32> {
    let mut minutes = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse::<u32>().expect("numeric step")),
            None => (item, 1),
        };
        let (first, last) = match range {
            "*" => (0, 59),
            _ => match range.split_once('-') {
                Some((a, b)) => (
                    a.parse().expect("range start"),
                    b.parse().expect("range end"),
                ),
                None => {
                    let m: u32 = range.parse().expect("minute");
                    (m, if item.contains('/') { 59 } else { m })
                }
            },
        };
        assert!(
            step > 0 && first <= last && last <= 59,
            "bad minute item {item}"
        );
        minutes.extend((first..=last).step_by(step as usize));
    }
    minutes
}

/// Asserts that a 5-field schedule fires every 15 minutes, every hour of every day.
fn assert_every_quarter_hour(schedule: &str) {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "schedule {schedule:?}");
    assert_eq!(&fields[1..], ["*", "*", "*", "*"], "schedule {schedule:?}");
    let minutes: Vec<u32> = cron_minutes(fields[0]).into_iter().collect();
    assert_eq!(
        minutes.len(),
        4,
        "schedule {schedule:?} fires at {minutes:?}"
    );
    for pair in minutes.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            15,
            "schedule {schedule:?} fires at {minutes:?}"
        );
    }
}

#[test]
fn cron_minute_fields_parse() {
    assert_eq!(cron_minutes("*/15"), BTreeSet::from([0, 15, 30, 45]));
    assert_eq!(cron_minutes("7-59/15"), BTreeSet::from([7, 22, 37, 52]));
    assert_eq!(cron_minutes("7/15"), BTreeSet::from([7, 22, 37, 52]));
    assert_eq!(cron_minutes("0,30"), BTreeSet::from([0, 30]));
}

/// The example configuration with the operator's edits: the simulators' URLs and the Proxmox
/// certificate's fingerprint in place of the placeholders. Returns the TOML and the names of
/// the token variables or files it uses for NetBox and for the one Proxmox endpoint.
fn fill_in_site(example: &str, sim: &SimHandle) -> (String, toml::Table) {
    let mut config: toml::Table = toml::from_str(example).expect("the example config is TOML");
    let netbox = config["netbox"].as_table_mut().expect("[netbox]");
    assert_eq!(netbox["url"].as_str(), Some("https://netbox.example.com"));
    netbox.insert("url".into(), sim.netbox_url().into());
    let endpoints = config["proxmox"].as_array_mut().expect("[[proxmox]]");
    assert_eq!(endpoints.len(), 1, "the example names one Proxmox endpoint");
    let endpoint = endpoints[0].as_table_mut().expect("a [[proxmox]] table");
    let ep = &sim.pve_endpoints()[0];
    assert!(
        endpoint["url"]
            .as_str()
            .is_some_and(|u| u.contains("example.com")),
        "{endpoint:?}"
    );
    endpoint.insert("url".into(), ep.url.clone().into());
    endpoint.insert("fingerprint".into(), ep.fingerprint.clone().into());
    let text = toml::to_string(&config).expect("config to TOML");
    (text, config)
}

fn token_setting<'a>(table: &'a toml::Table, key: &str) -> Option<&'a str> {
    table.get(key).and_then(toml::Value::as_str)
}

/// The report on stdout (the last JSON object).
fn report(stdout: &str) -> Value {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .unwrap_or(Value::Null)
}

fn netbox_vm_count(sim: &SimHandle) -> usize {
    sim.control()
        .netbox_objects("virtual-machines")
        .expect("VM listing")
        .len()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

// -- Kubernetes ---------------------------------------------------------------------------------

fn by_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} in the example");
    found[0]
}

fn str_at<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {node:?}"))
}

fn list<'a>(node: &'a Yaml, what: &str) -> &'a [Yaml] {
    node.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {node:?}"))
}

/// `ENTRYPOINT ["/usr/bin/pve2netbox"]` and `USER 65532:65532` of the Containerfile.
fn image_entrypoint_and_user() -> (String, i64) {
    let containerfile = read("Containerfile");
    let line = |word: &str| {
        containerfile
            .lines()
            .find_map(|l| l.strip_prefix(word))
            .unwrap_or_else(|| panic!("Containerfile has no {word}"))
            .trim()
            .to_string()
    };
    let entrypoint: Vec<String> =
        serde_json::from_str(&line("ENTRYPOINT ")).expect("ENTRYPOINT in exec form");
    let user = line("USER ");
    let uid = user.split(':').next().and_then(|u| u.parse().ok());
    (
        entrypoint.into_iter().next().expect("an entrypoint"),
        uid.unwrap_or_else(|| panic!("USER {user}: expected a numeric uid")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_cronjob_example_is_well_formed_and_its_container_syncs() {
    let docs = YamlLoader::load_from_str(&read("docs/kubernetes-cronjob.yaml"))
        .expect("docs/kubernetes-cronjob.yaml is YAML");
    let cronjob = by_kind(&docs, "CronJob");
    let config_map = by_kind(&docs, "ConfigMap");
    let claim = by_kind(&docs, "PersistentVolumeClaim");

    // The CronJob: every 15 minutes, one run at a time, not retried in a loop.
    assert_eq!(cronjob["apiVersion"].as_str(), Some("batch/v1"));
    let spec = &cronjob["spec"];
    assert_every_quarter_hour(str_at(&spec["schedule"], "spec.schedule"));
    assert_eq!(spec["concurrencyPolicy"].as_str(), Some("Forbid"));
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"].as_i64(), Some(0));
    let pod = &job["template"]["spec"];
    assert!(
        matches!(pod["restartPolicy"].as_str(), Some("Never" | "OnFailure")),
        "restartPolicy: {:?}",
        pod["restartPolicy"]
    );

    // Non-root, as the image's user, with the image's binary.
    let (entrypoint, image_uid) = image_entrypoint_and_user();
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["runAsUser"].as_i64(), Some(image_uid));
    let containers = list(&pod["containers"], "containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    let command: Vec<&str> = list(&container["command"], "command")
        .iter()
        .map(|c| str_at(c, "command"))
        .collect();
    assert_eq!(command, [entrypoint.as_str()]);
    let args: Vec<&str> = list(&container["args"], "args")
        .iter()
        .map(|a| str_at(a, "args"))
        .collect();
    assert_eq!(args.first(), Some(&"sync"), "{args:?}");

    // Volumes: each mount is a directory here; the ConfigMap's keys are files in its mount.
    let volumes: BTreeMap<&str, &Yaml> = list(&pod["volumes"], "volumes")
        .iter()
        .map(|v| (str_at(&v["name"], "volume name"), v))
        .collect();
    let root = tempfile::tempdir().expect("tempdir");
    let mut mounts: Vec<(String, PathBuf, &Yaml)> = Vec::new();
    for mount in list(&container["volumeMounts"], "volumeMounts") {
        let name = str_at(&mount["name"], "volumeMount name");
        let volume = volumes
            .get(name)
            .unwrap_or_else(|| panic!("volumeMount {name} names no volume"));
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).expect("volume dir");
        mounts.push((
            str_at(&mount["mountPath"], "mountPath").to_string(),
            dir,
            volume,
        ));
    }
    let remap = |value: &str| -> String {
        for (mount_path, dir, _) in &mounts {
            if let Some(rest) = value.strip_prefix(mount_path.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", dir.display());
            }
        }
        value.to_string()
    };

    // The state directory is on the persistent volume the example claims.
    let env = list(&container["env"], "env");
    let env_value = |name: &str| {
        env.iter()
            .find(|e| e["name"].as_str() == Some(name))
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("env {name} is not set to a value"))
    };
    let state_dir = env_value("PVE2NETBOX_STATE_DIR");
    let state_volume = mounts
        .iter()
        .find(|(path, _, _)| state_dir == path || state_dir.starts_with(&format!("{path}/")))
        .map(|(_, _, volume)| *volume)
        .unwrap_or_else(|| panic!("PVE2NETBOX_STATE_DIR={state_dir} is on no volume"));
    assert_eq!(
        state_volume["persistentVolumeClaim"]["claimName"].as_str(),
        claim["metadata"]["name"].as_str(),
        "the state is not on the example's PersistentVolumeClaim"
    );

    // The ConfigMap holds no token; each token variable it names comes from a Secret.
    let sim = simulators().await;
    let config_file = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1])
        .expect("--config in args");
    let (config_mount, config_dir, config_volume) = mounts
        .iter()
        .find(|(path, _, _)| config_file.starts_with(&format!("{path}/")))
        .expect("the config file is on a volume");
    assert_eq!(
        config_volume["configMap"]["name"].as_str(),
        config_map["metadata"]["name"].as_str()
    );
    let key = &config_file[config_mount.len() + 1..];
    let example = str_at(&config_map["data"][key], "ConfigMap data");
    let (config_text, config) = fill_in_site(example, &sim);
    std::fs::write(config_dir.join(key), config_text).expect("config file");
    let netbox_var = token_setting(config["netbox"].as_table().expect("[netbox]"), "token_env")
        .expect("netbox.token_env");
    let pve_var = token_setting(
        config["proxmox"][0].as_table().expect("[[proxmox]]"),
        "token_env",
    )
    .expect("proxmox.token_env");
    let mut secret_values = BTreeMap::new();
    let mut from_secret = BTreeSet::new();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pve2netbox"));
    cmd.env_clear();
    for var in env {
        let name = str_at(&var["name"], "env name");
        if let Some(value) = var["value"].as_str() {
            cmd.env(name, remap(value));
            continue;
        }
        let secret = &var["valueFrom"]["secretKeyRef"];
        let secret_key = str_at(&secret["key"], "secretKeyRef.key");
        assert!(secret["name"].as_str().is_some(), "{name}: secret name");
        // The Secret the operator created, with the simulators' tokens under its keys.
        let token = if name == netbox_var {
            sim.netbox_token().to_string()
        } else if name == pve_var {
            sim.pve_endpoints()[0].token.clone()
        } else {
            panic!("{name} comes from a Secret but the config does not use it")
        };
        secret_values.insert(secret_key.to_string(), token.clone());
        from_secret.insert(name.to_string());
        cmd.env(name, token);
    }
    assert_eq!(
        from_secret,
        BTreeSet::from([netbox_var.to_string(), pve_var.to_string()]),
        "every token variable must come from the Secret"
    );
    assert!(
        !secret_values
            .values()
            .any(|token| example.contains(token.as_str())),
        "a token in the ConfigMap"
    );
    cmd.args(args.iter().map(|a| remap(a)));

    // First run: every guest becomes a NetBox VM.
    let out = cmd.output().await.expect("the binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let first = report(&stdout);
    assert_eq!(first["counts"]["create"], VMS, "{first}");
    assert_eq!(first["counts"]["error"], 0, "{first}");
    assert_eq!(netbox_vm_count(&sim), VMS);
    let state = mounts
        .iter()
        .find(|(p, _, _)| p == state_dir)
        .expect("state mount");
    assert!(
        state.1.join("locks").is_dir(),
        "the run lock was not taken in the state volume"
    );
    let cache_dir = remap(env_value("PVE2NETBOX_CACHE_DIR"));
    assert!(
        !files_under(Path::new(&cache_dir)).is_empty(),
        "the compiled rules were not cached in {cache_dir}"
    );

    // The next scheduled run, a new pod on the same volumes: nothing to write.
    let writes = sim.control().counters().netbox_writes();
    let out = cmd.output().await.expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(report(&stdout)["counts"]["noop"], VMS, "{stdout}");
    assert_eq!(sim.control().counters().netbox_writes(), writes);
}

// -- cron ---------------------------------------------------------------------------------------

/// The directories of the cron example and the package, moved under the test's root.
const SYSTEM_DIRS: [&str; 3] = [
    "/etc/pve2netbox",
    "/var/lib/pve2netbox",
    "/var/cache/pve2netbox",
];

struct CronFile {
    env: Vec<(String, String)>,
    schedule: String,
    user: String,
    command: String,
}

/// An `/etc/cron.d` file: `NAME=value` lines, then one job line (5 fields, user, command).
fn parse_cron_d(text: &str) -> CronFile {
    let mut env = Vec::new();
    let mut jobs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A job line starts with its minute field (`*`, `7-59/15`, `@hourly`); anything else
        // with a `=` sets a variable.
        let job = line.starts_with(|c: char| c == '*' || c == '@' || c.is_ascii_digit());
        match line.split_once('=') {
            Some((name, value)) if !job => {
                env.push((name.trim().to_string(), value.trim().to_string()));
            }
            _ => jobs.push(line),
        }
    }
    assert_eq!(jobs.len(), 1, "expected one job line: {jobs:?}");
    let mut rest = jobs[0];
    let mut fields = Vec::new();
    for _ in 0..6 {
        let (field, tail) = rest.split_once(char::is_whitespace).expect("6 fields");
        fields.push(field);
        rest = tail.trim_start();
    }
    CronFile {
        env,
        schedule: fields[..5].join(" "),
        user: fields[5].to_string(),
        command: rest.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_line_example_syncs_with_the_packaged_config_and_prints_nothing() {
    let cron = parse_cron_d(&read("docs/pve2netbox.cron"));
    assert_every_quarter_hour(&cron.schedule);
    assert_eq!(
        cron.user, "pve2netbox",
        "the job runs as its own user, not root"
    );

    let root = tempfile::tempdir().expect("tempdir");
    let moved = |path: &str| format!("{}{path}", root.path().display());
    let mut command = cron.command.clone();
    for dir in SYSTEM_DIRS {
        command = command.replace(dir, &moved(dir));
        std::fs::create_dir_all(moved(dir)).expect("system dir");
    }
    let root_text = root.path().display().to_string();
    for word in command.split_whitespace() {
        let value = word.split_once('=').map_or(word, |(_, value)| value);
        assert!(
            !value.starts_with('/') || value.starts_with(&root_text),
            "the cron line uses a path this test does not move: {value}"
        );
    }

    // The packaged example configuration, filled in; each token in the credentials directory
    // under the name its token_file gives.
    let sim = simulators().await;
    let (config_text, config) = fill_in_site(&read("packaging/pve2netbox.toml"), &sim);
    std::fs::write(moved("/etc/pve2netbox/pve2netbox.toml"), config_text).expect("config");
    let credentials = command
        .split_whitespace()
        .find_map(|word| word.strip_prefix("CREDENTIALS_DIRECTORY="))
        .expect("the cron line sets CREDENTIALS_DIRECTORY")
        .to_string();
    std::fs::create_dir_all(&credentials).expect("credentials dir");
    let tokens = [
        (
            config["netbox"].as_table().expect("[netbox]"),
            sim.netbox_token().to_string(),
        ),
        (
            config["proxmox"][0].as_table().expect("[[proxmox]]"),
            sim.pve_endpoints()[0].token.clone(),
        ),
    ];
    for (table, token) in tokens {
        let file = token_setting(table, "token_file").expect("token_file");
        let name = file
            .strip_prefix("$CREDENTIALS_DIRECTORY/")
            .unwrap_or_else(|| panic!("token_file {file} is not a credential"));
        let path = Path::new(&credentials).join(name);
        std::fs::write(&path, format!("{token}\n")).expect("token file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    // cron: `/bin/sh -c` with the file's variables, HOME and LOGNAME of the user; the binary
    // under test first on PATH.
    let bin_dir = root.path().join("bin");
    std::fs::create_dir(&bin_dir).expect("bin dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pve2netbox"), bin_dir.join("pve2netbox"))
        .expect("symlink");
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.env_clear()
        .env("HOME", moved("/var/lib/pve2netbox"))
        .env("LOGNAME", &cron.user);
    for (name, value) in &cron.env {
        let value = if name == "PATH" {
            format!("{}:{value}", bin_dir.display())
        } else {
            value.clone()
        };
        cmd.env(name, value);
    }
    cmd.arg("-c").arg(&command);
    let out = cmd.output().await.expect("sh runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{command}\n{stdout}\n{stderr}");
    assert_eq!(
        (stdout.as_ref(), stderr.as_ref()),
        ("", ""),
        "a successful run must print nothing (cron mails any output)"
    );
    assert_eq!(netbox_vm_count(&sim), VMS, "the cron line did not sync");
    assert!(Path::new(&moved("/var/lib/pve2netbox/locks")).is_dir());
    assert!(
        !files_under(Path::new(&moved("/var/cache/pve2netbox"))).is_empty(),
        "the compiled rules were not cached in the cron line's cache directory"
    );
}
