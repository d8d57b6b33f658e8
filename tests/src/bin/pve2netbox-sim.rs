//! `pve2netbox-sim`: runs the Proxmox VE and NetBox simulators until stopped, printing
//! `KEY=value` connection lines on stdout (logs go to stderr).

use anyhow::Context;
use clap::Parser;
use pve2netbox_testkit::{
    InventorySpec, NetboxVersion, Profile, PveVersion, SimConfig, Simulators,
    start_children_workload,
};
use std::io::Write;
use std::time::Duration;

/// Proxmox VE + NetBox simulators for pve2netbox (127.0.0.1 only).
#[derive(Parser, Debug)]
#[command(name = "pve2netbox-sim", version)]
struct Args {
    /// Guests over all endpoints.
    #[arg(long, default_value_t = 50)]
    vms: usize,
    /// Nodes shared by the clusters.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Clusters (one Proxmox endpoint each).
    #[arg(long, default_value_t = 1)]
    clusters: usize,
    /// Extra standalone single-node endpoints.
    #[arg(long, default_value_t = 0)]
    standalone: usize,
    /// zero | realistic.
    #[arg(long, default_value = "zero")]
    profile: Profile,
    /// Inventory and token seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Proxmox VE version: 7, 8, 9 or major.minor (e.g. 8.0, 8.3).
    #[arg(long, default_value = "9")]
    pve_version: PveVersion,
    /// NetBox version 4.2 to 4.7.
    #[arg(long, default_value = "4.7")]
    netbox_version: NetboxVersion,
    /// First Proxmox port (endpoint i listens on P+i-1); 0 = free ports.
    #[arg(long, default_value_t = 0)]
    pve_port: u16,
    /// NetBox port; 0 = a free port.
    #[arg(long, default_value_t = 0)]
    netbox_port: u16,
    /// Control API port; 0 = a free port.
    #[arg(long, default_value_t = 0)]
    control_port: u16,
    /// Delay before a Proxmox 401, in milliseconds (real Proxmox: 3000).
    #[arg(long, default_value_t = 0)]
    pve_auth_delay_ms: u64,
    /// The children workload: every guest a running QEMU VM with two NICs, an agent reporting
    /// four addresses and two disks (the test kit's `start_children_workload`).
    #[arg(long)]
    children: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = SimConfig {
        inventory: InventorySpec {
            vms: a.vms,
            nodes: a.nodes,
            clusters: a.clusters,
            standalone: a.standalone,
            seed: a.seed,
        },
        profile: a.profile,
        pve_version: a.pve_version,
        netbox_version: a.netbox_version,
        pve_port: a.pve_port,
        netbox_port: a.netbox_port,
        control_port: a.control_port,
        pve_auth_fail_delay: Duration::from_millis(a.pve_auth_delay_ms),
        netbox_workers: None,
    };
    let sim = if a.children {
        start_children_workload(cfg)
            .await
            .context("starting the simulators with the children workload")?
    } else {
        Simulators::start(cfg)
            .await
            .context("starting the simulators")?
    };
    let eps = sim.pve_endpoints();
    let mut out = String::new();
    if let Some(first) = eps.first() {
        out.push_str(&format!(
            "PVE_URL={}\nPVE_TOKEN={}\nPVE_FINGERPRINT={}\n",
            first.url, first.token, first.fingerprint
        ));
    }
    out.push_str(&format!("PVE_COUNT={}\n", eps.len()));
    for (i, e) in eps.iter().enumerate() {
        let n = i + 1;
        out.push_str(&format!(
            "PVE_NAME_{n}={}\nPVE_URL_{n}={}\nPVE_TOKEN_{n}={}\nPVE_FINGERPRINT_{n}={}\n",
            e.name, e.url, e.token, e.fingerprint
        ));
    }
    out.push_str(&format!(
        "NETBOX_URL={}\nNETBOX_TOKEN={}\nNETBOX_TOKEN_V1={}\nNETBOX_TOKEN_RO={}\nCONTROL_URL={}\n",
        sim.netbox_url(),
        sim.netbox_token(),
        sim.netbox_token_v1(),
        sim.netbox_token_readonly(),
        sim.control_url()
    ));
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .context("writing connection lines")?;
    stdout.flush().context("flushing stdout")?;
    drop(stdout);
    eprintln!("pve2netbox-sim: serving; stop with Ctrl-C or SIGTERM");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sim.shutdown();
    Ok(())
}
