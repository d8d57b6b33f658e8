//! `pve2netbox demo`: the whole product in one command, with nothing to install. Starts the
//! Proxmox and NetBox simulators in-process (a 3-node cluster, 200 guests, the realistic
//! latency profile by default), then:
//!
//! 1. syncs with the embedded default rules (or `--rules`), showing progress, each VM's
//!    interfaces, MAC and IP addresses and virtual disks included (`sync.children` is on for
//!    the demo whatever the default);
//! 2. changes a few guests in the simulated Proxmox: memory, a rename, a migration, a removed
//!    tag, a NIC added, an address its guest agent reports changed, a deleted guest;
//! 3. makes the plan and shows it, then applies it;
//! 4. reruns the sync, which must write nothing.
//!
//! One report per run on stdout (one JSON object per line with `--output json`); narration and
//! progress on stderr. Edges: the test kit's simulators and [`crate::pipeline::run::run`]; the demo has no
//! logic of its own beyond choosing the guests to change.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use pve2netbox_testkit::{InventorySpec, Profile, SimConfig, SimHandle, Simulators};
use reqwest::Url;
use serde_json::{Map, Value, json};

use crate::cli::OutputFormat;
use crate::cli::sync_cmd::print;
use crate::clients::http::{Secret, TlsMode};
use crate::config::{Config, NetboxConfig, ProxmoxEndpoint};
use crate::pipeline::report::{EXIT_ERROR, EXIT_OK, RunReport};
use crate::pipeline::run::{self as sync, RunMode, RunOptions, RunResult};
use crate::progress::Progress;

/// Guests in the demo's Proxmox by default.
pub const DEFAULT_VMS: usize = 200;
/// Nodes of the demo cluster: a migration needs at least two.
const DEMO_NODES: usize = 3;
/// The site the demo configures (created by preflight, since the config names it).
const DEMO_SITE: &str = "demo-dc";

/// What `demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub vms: usize,
    pub rules: Option<PathBuf>,
    pub profile: Profile,
    pub bulk: bool,
    pub output: OutputFormat,
    pub quiet: bool,
}

/// The config of a run against the simulators: tokens given in code, the Proxmox certificate
/// pinned by its fingerprint.
pub fn sim_config(sim: &SimHandle) -> anyhow::Result<Config> {
    let netbox = NetboxConfig::new(
        Url::parse(sim.netbox_url()).context("simulated NetBox URL")?,
        Secret::new(sim.netbox_token().to_owned()),
    );
    let mut endpoints = Vec::new();
    for ep in sim.pve_endpoints() {
        let pin = ep
            .fingerprint
            .parse()
            .map_err(|e| anyhow::anyhow!("simulated Proxmox fingerprint: {e:?}"))?;
        endpoints.push(
            ProxmoxEndpoint::new(
                ep.name.clone(),
                Url::parse(&ep.url).context("simulated Proxmox URL")?,
                Secret::new(ep.token.clone()),
            )
            .with_tls(TlsMode::Pin(pin)),
        );
    }
    Ok(Config::new(netbox, endpoints))
}

/// Runs the demo; the exit code is 0 when the final rerun wrote nothing. Also returns the
/// rerun's report (what `--metrics-file` describes).
pub async fn run(opts: DemoOptions) -> anyhow::Result<(u8, RunReport)> {
    let started = Instant::now();
    let progress = Progress::new(opts.quiet);
    let sim = Simulators::start(SimConfig {
        inventory: InventorySpec {
            vms: opts.vms,
            nodes: DEMO_NODES,
            clusters: 1,
            standalone: 0,
            seed: 1,
        },
        profile: opts.profile,
        ..SimConfig::default()
    })
    .await
    .context("starting the simulators")?;
    progress.note(&format!(
        "demo: simulated Proxmox cluster '{}' ({} nodes, {} guests) at {}, simulated NetBox at {} \
         ({:?} latency profile)",
        sim.pve_endpoints()[0].name,
        DEMO_NODES,
        opts.vms,
        sim.pve_endpoints()[0].url,
        sim.netbox_url(),
        opts.profile
    ));
    let mut config = sim_config(&sim)?;
    config.sync.site = Some(DEMO_SITE.to_owned());
    config.sync.bulk = opts.bulk;
    // The demo shows the children (a NIC added, an IP changed) whatever the default is.
    config.sync.children = true;

    // The no-op memo lives as long as the demo's simulators: a state dir of its own, removed at
    // the end, so the rerun shows the memo answering the unchanged guests.
    let memo_dir = DemoStateDir::new();
    let run = |mode: RunMode| {
        let opts = RunOptions {
            config: config.clone(),
            rules: opts.rules.clone(),
            mode,
            progress: progress.clone(),
            memo_dir: memo_dir.path(),
            record: None,
        };
        sync::run(opts)
    };
    let show = |title: &str, result: &RunResult, table: bool| {
        progress.note(&format!("\n== {title} =="));
        // The report goes to stdout; on a terminal that is where the bars are drawn too.
        progress.suspend(|| print(result, opts.output, opts.quiet, table));
    };

    progress.note("\n-- 1. first sync: every guest becomes a NetBox VM --");
    let first = run(RunMode::Sync).await?;
    show("first sync", &first, false);

    progress.note("\n-- 2. changes in Proxmox --");
    for line in change_guests(&sim)? {
        progress.note(&format!("   {line}"));
    }

    progress.note("\n-- 3. plan, then apply --");
    let plan = run(RunMode::Plan).await?;
    show("plan", &plan, true);
    let applied = run(RunMode::Apply(Box::new(plan.plan.clone()))).await?;
    show("apply", &applied, false);

    progress.note("\n-- 4. rerun: nothing changed, nothing written --");
    let rerun = run(RunMode::Sync).await?;
    show("rerun", &rerun, false);

    progress.detach();
    let writes = rerun.report.requests.netbox_write;
    progress.note(&format!(
        "\ndemo finished in {:.1} s: first sync {} NetBox write requests, apply {} ({} of them for \
         interfaces, MAC and IP addresses, virtual disks), rerun {} (reads {})",
        started.elapsed().as_secs_f64(),
        first.report.requests.netbox_write,
        applied.report.requests.netbox_write,
        plan.plan.summary.child_writes,
        writes,
        rerun.report.requests.netbox_read
    ));
    if writes != 0 {
        eprintln!("demo: the rerun wrote {writes} times to NetBox; it should write nothing");
        return Ok((EXIT_ERROR, rerun.report));
    }
    let code = if applied.exit_code == EXIT_OK && rerun.exit_code == EXIT_OK {
        EXIT_OK
    } else {
        rerun.exit_code.max(applied.exit_code)
    };
    Ok((code, rerun.report))
}

/// A temporary state dir for the demo's memo, removed when dropped; `None` when the system's
/// temporary directory cannot be written (the demo then runs without a memo).
struct DemoStateDir(Option<std::path::PathBuf>);

impl DemoStateDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("pve2netbox-demo-{}", std::process::id()));
        DemoStateDir(std::fs::create_dir_all(&dir).is_ok().then_some(dir))
    }

    fn path(&self) -> Option<std::path::PathBuf> {
        self.0.clone()
    }
}

impl Drop for DemoStateDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Changes five guests in the simulated Proxmox; returns what was done, for people.
fn change_guests(sim: &SimHandle) -> anyhow::Result<Vec<String>> {
    let control = sim.control();
    let cluster = sim.pve_endpoints()[0].name.clone();
    let nodes = sim.pve_endpoints()[0].nodes.clone();
    let guests = control
        .pve_guests(Some(&cluster))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = |g: &Value, k: &str| g["config"].get(k).cloned();
    let vmid = |g: &Value| g["vmid"].as_u64().and_then(|v| u32::try_from(v).ok());
    let qemu: Vec<&Value> = guests.iter().filter(|g| g["type"] == "qemu").collect();
    let tagged: Vec<&Value> = guests
        .iter()
        .filter(|g| {
            cfg(g, "tags")
                .and_then(|t| t.as_str().map(str::to_owned))
                .is_some()
        })
        .collect();
    if qemu.len() < 3 || guests.len() < 5 {
        bail!("the demo needs at least 5 guests, 3 of them QEMU (try --vms 20 or more)");
    }
    let mut used: Vec<u32> = Vec::new();
    let mut pick = |list: &[&Value]| -> Option<Value> {
        let g = list
            .iter()
            .find(|g| vmid(g).is_some_and(|v| !used.contains(&v)))?;
        used.push(vmid(g)?);
        Some((*g).clone())
    };
    let mut done = Vec::new();
    let update = |v: u32, patch: Value| -> anyhow::Result<()> {
        let patch: Map<String, Value> = patch.as_object().cloned().unwrap_or_default();
        control
            .update_guest(Some(&cluster), v, &patch)
            .map_err(|e| anyhow::anyhow!("{e}"))
    };

    let g = pick(&qemu).context("no QEMU guest left")?;
    let v = vmid(&g).unwrap_or_default();
    let memory = cfg(&g, "memory")
        .and_then(|m| {
            m.as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or(m.as_u64())
        })
        .unwrap_or(2048);
    update(v, json!({"memory": (memory * 2).to_string()}))?;
    done.push(format!("memory of {v}: {memory} -> {} MiB", memory * 2));

    let g = pick(&qemu).context("no QEMU guest left")?;
    let v = vmid(&g).unwrap_or_default();
    let name = format!("renamed-{v}");
    update(v, json!({"name": name}))?;
    done.push(format!("guest {v} renamed to {name}"));

    let g = pick(&qemu).context("no QEMU guest left")?;
    let v = vmid(&g).unwrap_or_default();
    let from = g["node"].as_str().unwrap_or_default().to_owned();
    let to = nodes
        .iter()
        .find(|n| **n != from)
        .cloned()
        .context("no other node")?;
    update(v, json!({"node": to}))?;
    done.push(format!("guest {v} migrated from {from} to {to}"));

    if let Some(g) = pick(&tagged) {
        let v = vmid(&g).unwrap_or_default();
        let tags = cfg(&g, "tags")
            .and_then(|t| t.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut list: Vec<&str> = tags
            .split([';', ',', ' '])
            .filter(|t| !t.is_empty())
            .collect();
        let removed = list.pop().unwrap_or_default().to_owned();
        update(v, json!({"tags": list.join(";")}))?;
        done.push(format!("tag '{removed}' removed from guest {v}"));
    }

    // Children: running QEMU guests whose agent answers and that have one NIC.
    let one_nic: Vec<&Value> = qemu
        .iter()
        .copied()
        .filter(|g| {
            g["status"] == "running"
                && cfg(g, "agent").is_some_and(|a| a.as_str().is_some_and(|a| a.starts_with('1')))
                && cfg(g, "net0").is_some()
                && cfg(g, "net1").is_none()
        })
        .collect();
    if let Some(g) = pick(&one_nic) {
        let v = vmid(&g).unwrap_or_default();
        let mac = demo_mac(0xd0, v);
        update(v, json!({"net1": format!("virtio={mac},bridge=vmbr1")}))?;
        done.push(format!(
            "NIC net1 ({mac}) added to guest {v} (its agent reports it with an address)"
        ));
    }
    if let Some(g) = pick(&one_nic) {
        let v = vmid(&g).unwrap_or_default();
        let mac = cfg(&g, "net0")
            .and_then(|n| n.as_str().and_then(nic_mac))
            .context("the guest's net0 has no MAC")?;
        let ip = format!("10.250.{}.{}", (v / 250) % 250, 2 + v % 250);
        update(
            v,
            json!({"agent_result": [
                {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
                    {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                {"name": "eth0", "hardware-address": mac.to_ascii_lowercase(), "ip-addresses": [
                    {"ip-address": ip, "ip-address-type": "ipv4", "prefix": 24}]}
            ]}),
        )?;
        done.push(format!(
            "the address of guest {v}'s net0 changed to {ip}/24 (as its guest agent reports)"
        ));
    }

    let all: Vec<&Value> = guests.iter().collect();
    let g = pick(&all).context("no guest left")?;
    let v = vmid(&g).unwrap_or_default();
    control
        .remove_guest(Some(&cluster), v)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    done.push(format!(
        "guest {v} deleted (an orphan: reported, NetBox keeps it under the default policy)"
    ));
    Ok(done)
}

/// A MAC in Proxmox's `BC:24:11` range, unique per VMID.
fn demo_mac(octet: u8, vmid: u32) -> String {
    format!(
        "BC:24:11:{octet:02X}:{:02X}:{:02X}",
        (vmid >> 8) & 0xff,
        vmid & 0xff
    )
}

/// The MAC of a QEMU NIC (`virtio=BC:24:11:2A:3B:4C,bridge=vmbr0`).
fn nic_mac(net: &str) -> Option<String> {
    let (_, mac) = net.split(',').next()?.split_once('=')?;
    (mac.len() == 17).then(|| mac.to_owned())
}
