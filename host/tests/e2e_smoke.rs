//! End-to-end smoke test: the real binary against the in-process simulators (zero latency),
//! driven the way an operator drives it: a TOML config file, tokens in environment variables,
//! the Proxmox certificate pinned by fingerprint, the JSON report on stdout.
//!
//! Checks: a dry-run on an empty NetBox writes nothing; the first sync creates every guest as a NetBox VM with its identity; a rerun sends
//! zero NetBox writes (counted by the simulator) and few reads; a change shows up in
//! `sync --dry-run` (exit 2, still no write) and `plan`/`apply` carry it out exactly.

use std::path::Path;

use pve2netbox_testkit::{InventorySpec, SimConfig, SimHandle, Simulators};
use serde_json::{Map, Value, json};

const VMS: usize = 40;
const NETBOX_TOKEN_VAR: &str = "E2E_SMOKE_NETBOX_TOKEN";
const PVE_TOKEN_VAR: &str = "E2E_SMOKE_PVE_TOKEN";

fn write_config(dir: &Path, sim: &SimHandle) -> std::path::PathBuf {
    let ep = &sim.pve_endpoints()[0];
    let text = format!(
        r#"[netbox]
url = "{netbox}"
token_env = "{NETBOX_TOKEN_VAR}"

[[proxmox]]
name = "{name}"
url = "{url}"
token_env = "{PVE_TOKEN_VAR}"
fingerprint = "{fingerprint}"

[sync]
site = "smoke-dc"
"#,
        netbox = sim.netbox_url(),
        name = ep.name,
        url = ep.url,
        fingerprint = ep.fingerprint,
    );
    let path = dir.join("pve2netbox.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

struct Run {
    code: i32,
    report: Value,
    stderr: String,
}

async fn pve2netbox(sim: &SimHandle, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pve2netbox"))
        .args(args)
        .args(["--output", "json", "--quiet"])
        .env(NETBOX_TOKEN_VAR, sim.netbox_token())
        .env(PVE_TOKEN_VAR, &sim.pve_endpoints()[0].token)
        .env("PVE2NETBOX_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report on stdout: {stdout}\nstderr: {stderr}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        report,
        stderr,
    }
}

fn vms(sim: &SimHandle) -> Vec<Value> {
    sim.control()
        .netbox_objects("virtual-machines")
        .expect("VM listing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_only_first_sync_creates_then_rerun_writes_nothing_then_plan_apply() {
    let sim = Simulators::start(SimConfig {
        inventory: InventorySpec {
            vms: VMS,
            nodes: 2,
            clusters: 1,
            standalone: 0,
            seed: 7,
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulators start");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &sim);
    let config = config.to_str().expect("utf-8 path");

    // A dry-run against an empty NetBox creates nothing, not even the cluster it plans for.
    let preview = pve2netbox(&sim, &["sync", "--dry-run", "--config", config]).await;
    assert_eq!(
        preview.code, 2,
        "dry-run: {}\n{}",
        preview.report, preview.stderr
    );
    assert_eq!(
        preview.report["counts"]["create"],
        json!(VMS),
        "{}",
        preview.report
    );
    assert_eq!(sim.control().counters().netbox_writes(), 0);
    assert!(vms(&sim).is_empty());

    // First sync: every guest becomes a VM keyed by (cluster, proxmox_vm_id).
    let first = pve2netbox(&sim, &["sync", "--config", config]).await;
    assert_eq!(
        first.code, 0,
        "first sync: {}\n{}",
        first.report, first.stderr
    );
    assert_eq!(
        first.report["counts"]["create"],
        json!(VMS),
        "{}",
        first.report
    );
    assert_eq!(
        first.report["counts"]["error"],
        json!(0),
        "{}",
        first.report
    );
    let created = vms(&sim);
    assert_eq!(created.len(), VMS);
    let mut vmids: Vec<u64> = created
        .iter()
        .map(|vm| {
            vm["custom_fields"]["proxmox_vm_id"]
                .as_u64()
                .expect("identity set")
        })
        .collect();
    vmids.sort_unstable();
    vmids.dedup();
    assert_eq!(vmids.len(), VMS, "one VM per VMID");
    assert!(
        created
            .iter()
            .all(|vm| vm["cluster"]["name"] == json!(sim.pve_endpoints()[0].name))
    );
    assert!(
        created.iter().all(|vm| !vm["device"].is_null()),
        "node devices set"
    );

    // Rerun: zero NetBox writes, reads bounded by one snapshot page plus preflight.
    sim.control().reset_counters();
    let rerun = pve2netbox(&sim, &["sync", "--config", config]).await;
    assert_eq!(rerun.code, 0, "rerun: {}\n{}", rerun.report, rerun.stderr);
    assert_eq!(
        rerun.report["counts"]["noop"],
        json!(VMS),
        "{}",
        rerun.report
    );
    assert_eq!(sim.control().counters().netbox_writes(), 0);
    assert_eq!(rerun.report["requests"]["netbox_write"], json!(0));
    let reads = sim.control().counters().netbox("GET");
    assert!(reads <= 20, "rerun made {reads} NetBox reads");

    // A change in Proxmox: dry-run shows it (exit 2) and writes nothing.
    let vmid = u32::try_from(vmids[0]).expect("vmid");
    let mut patch = Map::new();
    patch.insert("name".into(), json!("smoke-renamed"));
    sim.control()
        .update_guest(None, vmid, &patch)
        .expect("guest renamed");
    sim.control().reset_counters();
    let dry = pve2netbox(&sim, &["sync", "--dry-run", "--config", config]).await;
    assert_eq!(dry.code, 2, "dry-run: {}\n{}", dry.report, dry.stderr);
    assert_eq!(dry.report["counts"]["update"], json!(1));
    assert_eq!(sim.control().counters().netbox_writes(), 0);

    // plan --out, then apply: exactly one PATCH, then nothing left to do.
    let plan_path = dir.path().join("plan.json");
    let plan_path = plan_path.to_str().expect("utf-8 path");
    let plan = pve2netbox(&sim, &["plan", "--config", config, "--out", plan_path]).await;
    assert_eq!(plan.code, 2, "plan: {}\n{}", plan.report, plan.stderr);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(plan_path).expect("plan file")).unwrap();
    assert_eq!(saved["operations"].as_array().map(Vec::len), Some(1));
    sim.control().reset_counters();
    let applied = pve2netbox(&sim, &["apply", plan_path, "--config", config]).await;
    assert_eq!(
        applied.code, 0,
        "apply: {}\n{}",
        applied.report, applied.stderr
    );
    assert_eq!(sim.control().counters().netbox("PATCH"), 1);
    assert!(
        vms(&sim)
            .iter()
            .any(|vm| vm["name"] == json!("smoke-renamed"))
    );
    let last = pve2netbox(&sim, &["sync", "--config", config]).await;
    assert_eq!(last.code, 0);
    assert_eq!(last.report["requests"]["netbox_write"], json!(0));
}
