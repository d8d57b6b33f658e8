//! The Proxmox read's guest network calls against the Proxmox simulator: who is asked (running
//! QEMU guests with the agent enabled, running containers on PVE 8.1+), what each answer
//! becomes (`agent`, `lxc-interfaces`, or `unknown` with its reason), that a stalled agent is
//! cut at `sync.agent_timeout_ms`, and that `sync.agent = false` asks nobody. Request counts come
//! from the simulator's own counters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pve2netbox::clients::http::{RequestCounters, Secret, TlsMode};
use pve2netbox::config::{Config, NetboxConfig, ProxmoxEndpoint};
use pve2netbox::pipeline::proxmox_read::guest_network::{
    NetworkSettings, NetworkSource, UnknownReason, outcome_name,
};
use pve2netbox::pipeline::proxmox_read::{self, ProxmoxRead};
use pve2netbox::progress::Progress;
use pve2netbox_testkit::{
    GuestKind, InventorySpec, NewGuest, PveVersion, SimConfig, SimHandle, Simulators,
};
use reqwest::Url;
use serde_json::{Value, json};

async fn start(pve: PveVersion) -> SimHandle {
    Simulators::start(SimConfig {
        inventory: InventorySpec {
            vms: 0,
            nodes: 1,
            clusters: 1,
            standalone: 0,
            seed: 1,
        },
        pve_version: pve,
        ..SimConfig::default()
    })
    .await
    .expect("simulators start")
}

fn config_of(sim: &SimHandle) -> Config {
    let ep = &sim.pve_endpoints()[0];
    let endpoint = ProxmoxEndpoint::new(
        ep.name.clone(),
        Url::parse(&ep.url).unwrap(),
        Secret::new(ep.token.clone()),
    )
    .with_tls(TlsMode::Pin(ep.fingerprint.parse().unwrap()));
    Config::new(
        NetboxConfig::new(
            Url::parse(sim.netbox_url()).unwrap(),
            Secret::new(sim.netbox_token()),
        ),
        vec![endpoint],
    )
}

fn add(sim: &SimHandle, vmid: u32, kind: GuestKind, status: &str, config: Value) {
    let Value::Object(config) = config else {
        panic!("config must be an object")
    };
    sim.control()
        .add_guest(NewGuest {
            vmid: Some(vmid),
            kind: Some(kind),
            node: Some("pve1".into()),
            status: Some(status.into()),
            config: Some(config),
            ..NewGuest::default()
        })
        .unwrap();
}

fn patch(sim: &SimHandle, vmid: u32, patch: Value) {
    let Value::Object(patch) = patch else {
        panic!("patch must be an object")
    };
    sim.control().update_guest(None, vmid, &patch).unwrap();
}

fn qemu_config(agent: Option<&str>) -> Value {
    let mut c = json!({"name": "vm", "ostype": "l26", "memory": "2048",
        "net0": "virtio=BC:24:11:2A:3B:4C,bridge=vmbr0", "ipconfig0": "ip=10.0.0.5/24"});
    if let Some(a) = agent {
        c["agent"] = json!(a);
    }
    c
}

fn lxc_config() -> Value {
    json!({"hostname": "ct", "memory": 512,
        "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5D:6E:7F,ip=10.0.1.5/24"})
}

async fn read(sim: &SimHandle, settings: NetworkSettings) -> ProxmoxRead {
    let config = config_of(sim);
    let counters = Arc::new(RequestCounters::default());
    let discovery = proxmox_read::discover(&config, counters).await;
    assert!(discovery.errors.is_empty(), "{:?}", discovery.errors);
    let cluster_ids: BTreeMap<String, u64> = discovery
        .endpoints
        .iter()
        .map(|e| (e.cluster().to_owned(), 1))
        .collect();
    let bar = Progress::quiet().phase("proxmox read", None);
    proxmox_read::read_guests(&discovery.endpoints, &cluster_ids, 2, settings, &bar).await
}

fn by_vmid(read: &ProxmoxRead) -> BTreeMap<u32, NetworkSource> {
    read.guests
        .iter()
        .map(|g| (g.guest().vmid(), g.network().clone()))
        .collect()
}

fn reason(source: &NetworkSource) -> Option<UnknownReason> {
    match source {
        NetworkSource::Unknown(u) => Some(u.reason),
        _ => None,
    }
}

fn detail(source: &NetworkSource) -> String {
    match source {
        NetworkSource::Unknown(u) => u.detail.clone(),
        other => panic!("not unknown: {other:?}"),
    }
}

/// Requests the simulator counted whose path contains `needle`.
fn calls(sim: &SimHandle, needle: &str) -> u64 {
    sim.control().counters().paths["pve"]
        .iter()
        .filter(|(path, _)| path.contains(needle))
        .map(|(_, n)| *n)
        .sum()
}

const AGENT: &str = "agent/network-get-interfaces";
const LXC: &str = "lxc/{id}/interfaces";

fn settings(timeout_ms: u64) -> NetworkSettings {
    NetworkSettings {
        enabled: true,
        timeout: Duration::from_millis(timeout_ms),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_outcome_is_recorded_per_guest() {
    let sim = start(PveVersion { major: 9, minor: 0 }).await;
    add(
        &sim,
        200,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    add(
        &sim,
        201,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("enabled=1")),
    );
    patch(
        &sim,
        201,
        json!({"agent_state": "dead", "agent_stall_ms": 5_000}),
    );
    add(
        &sim,
        202,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    patch(&sim, 202, json!({"agent_state": "forbidden"}));
    add(
        &sim,
        203,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    patch(&sim, 203, json!({"agent_state": "unreachable"}));
    add(&sim, 204, GuestKind::Qemu, "running", qemu_config(None));
    add(
        &sim,
        205,
        GuestKind::Qemu,
        "stopped",
        qemu_config(Some("1")),
    );
    add(
        &sim,
        206,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    patch(&sim, 206, json!({"agent_state": "dead"}));
    add(
        &sim,
        207,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("0")),
    );
    add(&sim, 300, GuestKind::Lxc, "running", lxc_config());
    add(&sim, 301, GuestKind::Lxc, "stopped", lxc_config());
    sim.control().reset_counters();

    // A stall of 5 s against a limit of 500 ms: the guest can only come out `timed-out` if
    // the limit cut the call (the simulator answers `agent-not-running` after the stall).
    let read = read(&sim, settings(500)).await;
    let net = by_vmid(&read);
    assert_eq!(net.len(), 10, "{net:?}");

    let NetworkSource::Agent(text) = &net[&200] else {
        panic!("200: {:?}", net[&200]);
    };
    let answer: Value = serde_json::from_str(&text.0).unwrap();
    let eth0 = answer
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap();
    assert_eq!(eth0["hardware-address"], "bc:24:11:2a:3b:4c");
    assert_eq!(eth0["ip-addresses"][0]["ip-address"], "10.0.0.5");

    assert_eq!(reason(&net[&201]), Some(UnknownReason::TimedOut));
    assert!(detail(&net[&201]).contains("500 ms"), "{:?}", net[&201]);
    assert_eq!(reason(&net[&202]), Some(UnknownReason::NoPermission));
    assert!(detail(&net[&202]).contains("VM.GuestAgent.Audit"));
    assert_eq!(reason(&net[&203]), Some(UnknownReason::TimedOut), "595");
    assert_eq!(reason(&net[&204]), Some(UnknownReason::AgentOff));
    assert_eq!(reason(&net[&205]), Some(UnknownReason::NotRunning));
    assert_eq!(reason(&net[&206]), Some(UnknownReason::AgentNotRunning));
    assert_eq!(detail(&net[&206]), "QEMU guest agent is not running");
    assert_eq!(reason(&net[&207]), Some(UnknownReason::AgentOff));

    let NetworkSource::LxcInterfaces(text) = &net[&300] else {
        panic!("300: {:?}", net[&300]);
    };
    let answer: Value = serde_json::from_str(&text.0).unwrap();
    assert!(
        answer
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["hwaddr"] == "bc:24:11:5d:6e:7f"),
        "{answer}"
    );
    assert_eq!(reason(&net[&301]), Some(UnknownReason::NotRunning));

    // Asked: the five running QEMU guests with the agent on, and the running container.
    assert_eq!(calls(&sim, AGENT), 5);
    assert_eq!(calls(&sim, LXC), 1);
    // Every guest is still there with its config read: a network failure is the network's.
    assert!(read.reads[0].guest_errors.is_empty(), "{:?}", read.reads);
    assert!(read.guests.iter().all(|g| g.guest().key().config_read));

    let counts = pve2netbox::pipeline::proxmox_read::guest_network::tally(
        read.guests.iter().map(|g| g.network_kept().outcome_name()),
    );
    assert_eq!(counts["timed-out"], 2);
    assert_eq!(counts["agent-off"], 2);
    assert_eq!(outcome_name(&net[&300]), "lxc-interfaces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reads_off_ask_nobody() {
    let sim = start(PveVersion { major: 9, minor: 0 }).await;
    add(
        &sim,
        200,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    add(&sim, 300, GuestKind::Lxc, "running", lxc_config());
    sim.control().reset_counters();
    let off = NetworkSettings {
        enabled: false,
        ..settings(500)
    };
    let read = read(&sim, off).await;
    for (vmid, source) in by_vmid(&read) {
        assert_eq!(reason(&source), Some(UnknownReason::NotAsked), "{vmid}");
    }
    assert_eq!(calls(&sim, AGENT), 0);
    assert_eq!(calls(&sim, LXC), 0);
    assert_eq!(calls(&sim, "version"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_on_pve_before_8_1_are_not_asked() {
    let sim = start(PveVersion { major: 8, minor: 0 }).await;
    add(&sim, 300, GuestKind::Lxc, "running", lxc_config());
    add(
        &sim,
        200,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    sim.control().reset_counters();
    let read = read(&sim, settings(500)).await;
    let net = by_vmid(&read);
    assert_eq!(reason(&net[&300]), Some(UnknownReason::NotAsked));
    assert!(detail(&net[&300]).contains("8.1"), "{:?}", net[&300]);
    assert_eq!(calls(&sim, LXC), 0, "no 501 is provoked");
    assert_eq!(calls(&sim, "/version"), 1, "one version read per endpoint");
    // PVE 8 wants VM.Monitor for the agent, which the simulated token lacks.
    assert_eq!(reason(&net[&200]), Some(UnknownReason::NoPermission));
    assert!(detail(&net[&200]).contains("VM.Monitor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_whose_config_failed_is_not_asked() {
    let sim = start(PveVersion { major: 9, minor: 0 }).await;
    add(
        &sim,
        200,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    add(
        &sim,
        201,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    sim.control()
        .set_config_faults(None, &[201], 500, "got timeout")
        .unwrap();
    sim.control().reset_counters();
    let read = read(&sim, settings(500)).await;
    let net = by_vmid(&read);
    assert!(
        matches!(net[&200], NetworkSource::Agent(_)),
        "{:?}",
        net[&200]
    );
    assert_eq!(reason(&net[&201]), Some(UnknownReason::NotAsked));
    assert_eq!(calls(&sim, AGENT), 1);
}

/// Many dead agents with a long stall and two read slots: every one is cut at the limit and the
/// configs of the others are all read (the read ends; its duration is not asserted here, the
/// benchmark measures it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_agents_do_not_hold_the_read() {
    let sim = start(PveVersion { major: 9, minor: 0 }).await;
    for vmid in 200..212 {
        add(
            &sim,
            vmid,
            GuestKind::Qemu,
            "running",
            qemu_config(Some("1")),
        );
        patch(
            &sim,
            vmid,
            json!({"agent_state": "dead", "agent_stall_ms": 3_000}),
        );
    }
    for vmid in 212..220 {
        add(
            &sim,
            vmid,
            GuestKind::Qemu,
            "running",
            qemu_config(Some("1")),
        );
    }
    let read = read(&sim, settings(200)).await;
    let net = by_vmid(&read);
    assert_eq!(net.len(), 20);
    for vmid in 200..212 {
        assert_eq!(reason(&net[&vmid]), Some(UnknownReason::TimedOut), "{vmid}");
    }
    for vmid in 212..220 {
        assert!(matches!(net[&vmid], NetworkSource::Agent(_)), "{vmid}");
    }
}

/// The doctor line about the agent, for the endpoint of `sim`.
async fn doctor_agent_line(sim: &SimHandle) -> pve2netbox::cli::doctor::Check {
    let mut config = config_of(sim);
    config.sync.agent_timeout = Duration::from_millis(500);
    let checks = pve2netbox::cli::doctor::check_all(&config).await;
    checks
        .into_iter()
        .find(|c| c.scope.starts_with("proxmox") && c.message.contains("agent"))
        .unwrap_or_else(|| panic!("no agent check"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_missing_agent_privilege() {
    use pve2netbox::cli::doctor::Level;
    let sim = start(PveVersion { major: 9, minor: 0 }).await;
    // The first running QEMU guest has no agent; the doctor looks further.
    add(&sim, 199, GuestKind::Qemu, "running", qemu_config(None));
    add(
        &sim,
        200,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    let ok = doctor_agent_line(&sim).await;
    assert_eq!(ok.level, Level::Ok, "{ok}");
    assert!(ok.message.contains("200"), "{ok}");
    patch(&sim, 200, json!({"agent_state": "forbidden"}));
    let denied = doctor_agent_line(&sim).await;
    assert_eq!(denied.level, Level::Warn, "{denied}");
    assert!(
        denied.message.contains("grant VM.GuestAgent.Audit"),
        "{denied}"
    );
    // A dead agent still proves the permission: Proxmox checks it first.
    patch(&sim, 200, json!({"agent_state": "dead"}));
    let dead = doctor_agent_line(&sim).await;
    assert_eq!(dead.level, Level::Ok, "{dead}");

    let old = start(PveVersion { major: 8, minor: 2 }).await;
    add(
        &old,
        200,
        GuestKind::Qemu,
        "running",
        qemu_config(Some("1")),
    );
    let denied = doctor_agent_line(&old).await;
    assert_eq!(denied.level, Level::Warn, "{denied}");
    assert!(denied.message.contains("grant VM.Monitor"), "{denied}");
}
