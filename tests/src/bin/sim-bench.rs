//! `sim-bench`: measures the simulators in the `zero` profile (a benchmark, not a test):
//! memory held for N guests in Proxmox plus N VMs in NetBox, and requests per second of
//! typical calls with concurrent keep-alive clients in the same process (the load generator
//! shares the CPU, so figures are a lower bound).

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `--only`: the scenario filter, set once in `main`.
static ONLY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[derive(Parser, Debug)]
#[command(name = "sim-bench")]
struct Args {
    /// Guests in Proxmox and VMs in NetBox.
    #[arg(long, default_value_t = 100_000)]
    vms: usize,
    /// Nodes.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Seconds per throughput scenario.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Run only the scenarios whose name contains this text (case-insensitive).
    #[arg(long)]
    only: Option<String>,
}

/// Drains a response; true when it was a 200.
async fn ok(r: reqwest::Result<reqwest::Response>) -> bool {
    match r {
        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
        _ => false,
    }
}

type Call = Arc<
    dyn Fn(
            reqwest::Client,
            u64,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send
        + Sync,
>;

async fn run(
    name: &str,
    pid: u32,
    client: reqwest::Client,
    seconds: u64,
    concurrency: usize,
    call: Call,
) -> f64 {
    if let Some(only) = ONLY.get()
        && !name.to_lowercase().contains(&only.to_lowercase())
    {
        return 0.0;
    }
    let cpu0 = cpu_of(pid);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, call, done, failed) =
            (client.clone(), call.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w as u64 * 7919;
            while Instant::now() < deadline {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if call(client.clone(), i >> 16).await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed) as f64;
    let rate = n / secs;
    let cpu_us = (cpu_of(pid) - cpu0) * 1e6 / n.max(1.0);
    println!(
        "| {name} | {rate:.0} | {cpu_us:.0} | {:.0} | {} |",
        2e6 / cpu_us.max(1.0),
        failed.load(Ordering::Relaxed)
    );
    rate
}

/// Resident memory of a process, MB.
fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU seconds of a process (clock ticks of 10 ms).
fn cpu_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some((rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The simulator child process and its connection lines.
struct Child {
    child: std::process::Child,
    vars: std::collections::HashMap<String, String>,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_sim(vms: usize, nodes: usize) -> anyhow::Result<Child> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?.with_file_name("pve2netbox-sim");
    let mut child = std::process::Command::new(&exe)
        .args([
            "--vms",
            &vms.to_string(),
            "--nodes",
            &nodes.to_string(),
            "--profile",
            "zero",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", exe.display()))?;
    let out = child.stdout.take().context("child stdout")?;
    let mut vars = std::collections::HashMap::new();
    for line in std::io::BufReader::new(out).lines() {
        let line = line?;
        if let Some((k, v)) = line.split_once('=') {
            vars.insert(k.to_string(), v.to_string());
        }
        if line.starts_with("CONTROL_URL=") {
            break;
        }
    }
    Ok(Child { child, vars })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if let Some(o) = &a.only {
        let _ = ONLY.set(o.clone());
    }
    let t0 = Instant::now();
    let sim = spawn_sim(a.vms, a.nodes)?;
    let pid = sim.child.id();
    let var = |k: &str| {
        sim.vars
            .get(k)
            .cloned()
            .with_context(|| format!("{k} not printed"))
    };
    let (control, nb_url, nb_token) = (
        var("CONTROL_URL")?,
        var("NETBOX_URL")?,
        var("NETBOX_TOKEN")?,
    );
    let (pve_url, pve_token) = (var("PVE_URL")?, var("PVE_TOKEN")?);
    println!(
        "simulator process with {} Proxmox guests: ready in {:.1} s, RSS {:.0} MB",
        a.vms,
        t0.elapsed().as_secs_f64(),
        rss_of(pid)
    );

    // Fill NetBox through the control API as a first sync would leave it.
    let cc = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let cc = cc.clone();
        async move {
            let r = cc.post(path).json(&body).send().await?;
            anyhow::ensure!(
                r.status() == 201,
                "control POST failed: {}",
                r.text().await.unwrap_or_default()
            );
            Ok::<(), anyhow::Error>(())
        }
    };
    post(
        format!("{control}/netbox/objects/sites"),
        json!({"name": "DC1", "slug": "dc1"}),
    )
    .await?;
    post(
        format!("{control}/netbox/objects/cluster-types"),
        json!({"name": "Proxmox VE", "slug": "proxmox-ve"}),
    )
    .await?;
    post(
        format!("{control}/netbox/objects/clusters"),
        json!({"name": "pve-cl1", "type": 1, "scope_type": "dcim.site", "scope_id": 1}),
    )
    .await?;
    post(
        format!("{control}/netbox/objects/tags"),
        json!({"name": "pve2netbox", "slug": "pve2netbox"}),
    )
    .await?;
    for (n, t) in [
        ("proxmox_vm_id", "integer"),
        ("proxmox_vm_type", "text"),
        ("proxmox_node", "text"),
    ] {
        post(
            format!("{control}/netbox/objects/custom-fields"),
            json!({"name": n, "type": t, "object_types": ["virtualization.virtualmachine"]}),
        )
        .await?;
    }
    let t1 = Instant::now();
    for chunk in (0..a.vms).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"name": format!("vm-{i:06}"), "cluster": 1, "status": "active", "vcpus": 2, "memory": 2048, "disk": 32768,
                            "description": "generated by sim-bench", "tags": [1],
                            "custom_fields": {"proxmox_vm_id": 100 + i, "proxmox_vm_type": "qemu", "proxmox_node": "pve1"}}))
            .collect();
        post(
            format!("{control}/netbox/objects/virtual-machines"),
            Value::Array(batch),
        )
        .await?;
    }
    println!(
        "+ {} NetBox VMs (seeded via the control API, no change records): loaded in {:.1} s, RSS {:.0} MB",
        a.vms,
        t1.elapsed().as_secs_f64(),
        rss_of(pid)
    );

    let guests: Arc<Vec<(String, String, u64)>> = Arc::new(
        cc.get(format!("{control}/pve/guests"))
            .send()
            .await?
            .json::<Vec<Value>>()
            .await?
            .into_iter()
            .map(|g| {
                (
                    g["node"].as_str().unwrap_or("").to_string(),
                    g["type"].as_str().unwrap_or("").to_string(),
                    g["vmid"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
    );
    let ep_ca = cc
        .get(format!("{control}/endpoints"))
        .send()
        .await?
        .json::<Value>()
        .await?;
    let fp = ep_ca["pve"][0]["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("PVE fingerprint {fp}");
    let ca = ep_ca["pve"][0]["ca_pem"]
        .as_str()
        .context("ca_pem in /endpoints")?;
    let pve_client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let nb_client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let auth = format!("Bearer {nb_token}");
    let pve_auth = format!("PVEAPIToken={pve_token}");
    let n = a.vms as u64;

    println!(
        "\n| scenario ({} clients, {} s each) | req/s (shared CPU) | server CPU µs/req | req/s on 2 cores (server alone) | failed |",
        a.concurrency, a.seconds
    );
    println!("|---|---:|---:|---:|---:|");
    let (u, h) = (nb_url.clone(), auth.clone());
    run(
        "NetBox GET one VM",
        pid,
        nb_client.clone(),
        a.seconds,
        a.concurrency,
        Arc::new(move |c, i| {
            let (u, h) = (u.clone(), h.clone());
            Box::pin(async move {
                let r = c
                    .get(format!(
                        "{u}/api/virtualization/virtual-machines/{}/",
                        1 + i % n
                    ))
                    .header("Authorization", h)
                    .send()
                    .await;
                ok(r).await
            })
        }),
    )
    .await;
    let (u, h, g) = (pve_url.clone(), pve_auth.clone(), guests.clone());
    run(
        "PVE GET guest config",
        pid,
        pve_client.clone(),
        a.seconds,
        a.concurrency,
        Arc::new(move |c, i| {
            let (u, h, g) = (u.clone(), h.clone(), g.clone());
            Box::pin(async move {
                let (node, kind, vmid) = &g[(i % g.len() as u64) as usize];
                let r = c
                    .get(format!("{u}/api2/json/nodes/{node}/{kind}/{vmid}/config"))
                    .header("Authorization", h)
                    .send()
                    .await;
                ok(r).await
            })
        }),
    )
    .await;
    let (u, h) = (nb_url.clone(), auth.clone());
    run(
        "NetBox PATCH one VM",
        pid,
        nb_client.clone(),
        a.seconds,
        a.concurrency,
        Arc::new(move |c, i| {
            let (u, h) = (u.clone(), h.clone());
            Box::pin(async move {
                let r = c
                    .patch(format!(
                        "{u}/api/virtualization/virtual-machines/{}/",
                        1 + i % n
                    ))
                    .header("Authorization", h)
                    .json(&json!({"vcpus": 1 + i % 8, "comments": format!("rev {i}")}))
                    .send()
                    .await;
                ok(r).await
            })
        }),
    )
    .await;
    let (u, h) = (nb_url.clone(), auth.clone());
    run("NetBox GET page of 1000, fields=, id__gt", pid, nb_client.clone(), a.seconds, a.concurrency.min(4), Arc::new(move |c, i| {
        let (u, h) = (u.clone(), h.clone());
        Box::pin(async move {
            let r = c
                .get(format!("{u}/api/virtualization/virtual-machines/?limit=1000&ordering=id&id__gt={}&fields=id,name,cluster,custom_fields,last_updated", i % n.saturating_sub(1000).max(1)))
                .header("Authorization", h)
                .send()
                .await;
            ok(r).await
        })
    }))
    .await;
    // The pipeline's snapshot: offset pages over one filtered listing (`cluster_id`,
    // `ordering=id`), each page an independent request (it fetches them in parallel).
    let (u, h) = (nb_url.clone(), auth.clone());
    let pages = n.div_ceil(1000).max(1);
    run("NetBox GET page of 1000 by offset, cluster_id, fields=", pid, nb_client.clone(), a.seconds, a.concurrency.min(4), Arc::new(move |c, i| {
        let (u, h) = (u.clone(), h.clone());
        Box::pin(async move {
            let r = c
                .get(format!("{u}/api/virtualization/virtual-machines/?cluster_id=1&ordering=id&fields=id,name,cluster,custom_fields,last_updated&exclude=config_context&limit=1000&offset={}", (i % pages) * 1000))
                .header("Authorization", h)
                .send()
                .await;
            ok(r).await
        })
    }))
    .await;
    let (u, h) = (nb_url.clone(), auth.clone());
    run(
        "NetBox GET ?cf_proxmox_vm_id= (scan)",
        pid,
        nb_client.clone(),
        a.seconds,
        a.concurrency.min(4),
        Arc::new(move |c, i| {
            let (u, h) = (u.clone(), h.clone());
            Box::pin(async move {
                let r = c
                    .get(format!(
                        "{u}/api/virtualization/virtual-machines/?cf_proxmox_vm_id={}",
                        100 + i % n
                    ))
                    .header("Authorization", h)
                    .send()
                    .await;
                ok(r).await
            })
        }),
    )
    .await;
    let (u, h) = (pve_url.clone(), pve_auth.clone());
    run(
        "PVE GET /cluster/resources?type=vm (all guests)",
        pid,
        pve_client.clone(),
        a.seconds,
        2,
        Arc::new(move |c, _| {
            let (u, h) = (u.clone(), h.clone());
            Box::pin(async move {
                let r = c
                    .get(format!("{u}/api2/json/cluster/resources?type=vm"))
                    .header("Authorization", h)
                    .send()
                    .await;
                ok(r).await
            })
        }),
    )
    .await;
    println!("\nsimulator RSS at the end {:.0} MB", rss_of(pid));
    drop(sim);
    Ok(())
}
