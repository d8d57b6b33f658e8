//! Deterministic Proxmox inventories: N guests on M nodes in K clusters (plus standalone nodes)
//! from a seed.
//!
//! The generator only produces data (clusters, nodes, guests with raw config properties, tasks);
//! the PVE simulator serves it. Config values follow Proxmox's Perl typing: integers as JSON
//! numbers, booleans as 0/1, everything else (including `number` keys like `cpulimit`) as
//! strings. QEMU `memory` is kept as an integer here; the simulator renders it as a string for
//! PVE >= 8.1.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// First epoch second of generated task history (2026-01-01T00:00:00Z), fixed so inventories
/// are identical whatever day they are generated.
pub const TASK_EPOCH: u64 = 1_767_225_600;
/// Tasks are spread over this many seconds (30 days) after [`TASK_EPOCH`].
const TASK_SPAN_S: u64 = 30 * 86_400;

/// What to generate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventorySpec {
    /// Total guests (QEMU + LXC) over all endpoints.
    pub vms: usize,
    /// Nodes shared by the clustered endpoints (at least one per cluster).
    pub nodes: usize,
    /// Clustered endpoints.
    pub clusters: usize,
    /// Extra standalone single-node endpoints (no cluster row in `/cluster/status`).
    pub standalone: usize,
    /// Seed: the same spec gives the same inventory.
    pub seed: u64,
}

impl Default for InventorySpec {
    fn default() -> Self {
        InventorySpec {
            vms: 50,
            nodes: 3,
            clusters: 1,
            standalone: 0,
            seed: 1,
        }
    }
}

/// A generated inventory: one entry per Proxmox endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inventory {
    /// Clusters first, then standalone nodes.
    pub endpoints: Vec<EndpointInventory>,
}

/// One Proxmox endpoint (a cluster or a standalone node).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointInventory {
    /// Cluster name; for a standalone node, the node's name.
    pub name: String,
    /// True for a single node without a cluster.
    pub standalone: bool,
    /// Nodes; the first one is the node the endpoint's URL talks to.
    pub nodes: Vec<NodeSpec>,
    /// Guests, ordered by vmid.
    pub guests: Vec<Guest>,
    /// Finished tasks, any order.
    pub tasks: Vec<Task>,
}

/// A Proxmox node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Node name, unique over the whole inventory (`pve1`, `pve2`, ...).
    pub name: String,
    /// Corosync node id (0 when standalone).
    pub nodeid: u32,
    /// Address shown in `/cluster/status`.
    pub ip: String,
    /// Host CPUs.
    pub maxcpu: u32,
    /// Host memory in bytes.
    pub maxmem: u64,
}

/// Guest type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// A QEMU virtual machine.
    Qemu,
    /// An LXC container.
    Lxc,
}

impl GuestKind {
    /// `qemu` or `lxc`, as in API paths and resource rows.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }

    /// The directory of the guest's config file under `nodes/{node}/`.
    pub fn conf_dir(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu-server",
            GuestKind::Lxc => "lxc",
        }
    }
}

/// A guest: identity, placement, power state and raw config properties.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Guest {
    /// VMID, unique within the endpoint (not across endpoints).
    pub vmid: u32,
    /// QEMU or LXC.
    #[serde(rename = "type")]
    pub kind: GuestKind,
    /// Owning node.
    pub node: String,
    /// `running` or `stopped`.
    pub status: String,
    /// Raw config properties in file order (name, memory, disks, nets, tags, ...).
    pub config: Vec<(String, Value)>,
}

impl Guest {
    /// A bare QEMU guest (defaults everywhere), for tests: `Guest::qemu(100, "pve1").with("name", "web")`.
    pub fn qemu(vmid: u32, node: &str) -> Guest {
        Guest {
            vmid,
            kind: GuestKind::Qemu,
            node: node.to_string(),
            status: "stopped".into(),
            config: Vec::new(),
        }
    }

    /// A bare LXC guest.
    pub fn lxc(vmid: u32, node: &str) -> Guest {
        Guest {
            vmid,
            kind: GuestKind::Lxc,
            node: node.to_string(),
            status: "stopped".into(),
            config: Vec::new(),
        }
    }

    /// Sets (or replaces) a config property.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Guest {
        let value = value.into();
        match self.config.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.config.push((key.to_string(), value)),
        }
        self
    }

    /// Sets the power state (`running` / `stopped`).
    pub fn with_status(mut self, status: &str) -> Guest {
        self.status = status.to_string();
        self
    }

    /// A config property.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.config.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// A finished (or running) Proxmox task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    /// Node that ran it.
    pub node: String,
    /// `UPID:node:PID:PSTART:STARTTIME:type:id:user:`.
    pub upid: String,
    /// Process id.
    pub pid: u32,
    /// Process start (jiffies).
    pub pstart: u64,
    /// Epoch seconds.
    pub starttime: u64,
    /// Epoch seconds; absent while running.
    pub endtime: Option<u64>,
    /// Task type (`qmstart`, `vzdump`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Task id (usually the vmid as a string, may be empty).
    pub id: String,
    /// User without the token part (`sync@pve`).
    pub user: String,
    /// Token name when a token started it.
    pub tokenid: Option<String>,
    /// `OK`, `WARNINGS: N`, an error text; `None` while running.
    pub status: Option<String>,
}

impl Task {
    /// Builds a task and its UPID from its parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: &str,
        pid: u32,
        pstart: u64,
        starttime: u64,
        endtime: Option<u64>,
        kind: &str,
        id: &str,
        user: &str,
        tokenid: Option<&str>,
        status: Option<&str>,
    ) -> Task {
        let full_user = match tokenid {
            Some(t) => format!("{user}!{t}"),
            None => user.to_string(),
        };
        let upid =
            format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{full_user}:");
        Task {
            node: node.to_string(),
            upid,
            pid,
            pstart,
            starttime,
            endtime,
            kind: kind.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            tokenid: tokenid.map(str::to_string),
            status: status.map(str::to_string),
        }
    }
}

const QEMU_ROLES: &[&str] = &[
    "web",
    "db",
    "app",
    "cache",
    "mq",
    "ci",
    "mon",
    "mail",
    "git",
    "k8s-worker",
    "proxy",
    "backup",
    "vpn",
    "ldap",
];
const LXC_ROLES: &[&str] = &[
    "dns", "ntp", "proxy", "redis", "nginx", "pihole", "syslog", "grafana", "minio",
];
const TAGS: &[&str] = &[
    "prod", "dev", "staging", "web", "db", "backup", "k8s", "critical", "legacy", "dmz",
];
const LINUX_OS: &[&str] = &["l26", "l26", "l26", "l26", "other"];
const WINDOWS_OS: &[&str] = &["win10", "win11", "win2k8", "win8", "win7"];
const LXC_OS: &[&str] = &[
    "debian",
    "debian",
    "ubuntu",
    "alpine",
    "centos",
    "fedora",
    "archlinux",
    "nixos",
];
const STORAGES: &[&str] = &["local-lvm", "local-lvm", "ceph", "nfs-vm"];
const NOTES_SINGLE: &[&str] = &[
    "frontend",
    "managed by ops",
    "legacy app, do not touch",
    "test box",
    "migrated from vmware",
];
const NOTES_MULTI: &[&str] = &[
    "Owner: team-platform\nTicket: OPS-1234\n",
    "# Build host\n\n* runs CI jobs\n* rebuilt monthly\n",
    "contact: dba@example.com\nbackup: nightly\nrestore tested 2025-11\n",
];

impl Inventory {
    /// Generates an inventory from `spec`; the same spec always gives the same inventory.
    pub fn generate(spec: &InventorySpec) -> Inventory {
        let mut guests: Vec<(usize, Guest, Vec<Task>)> = Vec::new();
        let mut endpoints = Self::generate_streaming(spec, |e, g, t| guests.push((e, g, t)));
        for (e, g, t) in guests {
            endpoints[e].guests.push(g);
            endpoints[e].tasks.extend(t);
        }
        Inventory { endpoints }
    }

    /// Like [`Inventory::generate`], but hands each guest (with its tasks and endpoint index)
    /// to `sink` as it is made, and returns the endpoints without guests or tasks: large
    /// inventories never exist twice in memory.
    pub fn generate_streaming(
        spec: &InventorySpec,
        mut sink: impl FnMut(usize, Guest, Vec<Task>),
    ) -> Vec<EndpointInventory> {
        let mut rng = Rng::new(spec.seed);
        let clusters = spec.clusters;
        let nodes_total = spec.nodes.max(clusters);
        let mut endpoints: Vec<EndpointInventory> = Vec::new();
        let mut node_no = 0usize;
        for k in 0..clusters {
            // Round-robin split of the nodes, so every cluster gets at least one.
            let count = nodes_total / clusters + usize::from(k < nodes_total % clusters);
            let nodes = (0..count)
                .map(|i| {
                    node_no += 1;
                    make_node(&mut rng, node_no, (i + 1) as u32)
                })
                .collect();
            endpoints.push(EndpointInventory {
                name: format!("pve-cl{}", k + 1),
                standalone: false,
                nodes,
                guests: Vec::new(),
                tasks: Vec::new(),
            });
        }
        for _ in 0..spec.standalone {
            node_no += 1;
            let node = make_node(&mut rng, node_no, 0);
            endpoints.push(EndpointInventory {
                name: node.name.clone(),
                standalone: true,
                nodes: vec![node],
                guests: Vec::new(),
                tasks: Vec::new(),
            });
        }
        let node_slots: Vec<(usize, usize)> = endpoints
            .iter()
            .enumerate()
            .flat_map(|(e, ep)| (0..ep.nodes.len()).map(move |n| (e, n)))
            .collect();
        if node_slots.is_empty() {
            return endpoints;
        }
        // Each endpoint numbers its guests from 100 (with occasional gaps), so VMIDs overlap
        // across clusters, as they do in real estates: identity must include the cluster.
        let mut next_vmid: Vec<u32> = vec![100; endpoints.len()];
        for g in 0..spec.vms {
            let (e, n) = node_slots[if g < node_slots.len() {
                g
            } else {
                rng.below(node_slots.len() as u64) as usize
            }];
            if rng.chance(0.05) {
                next_vmid[e] += 1 + rng.below(20) as u32;
            }
            let vmid = next_vmid[e];
            next_vmid[e] += 1;
            let node = endpoints[e].nodes[n].name.clone();
            let kind = if rng.chance(0.35) {
                GuestKind::Lxc
            } else {
                GuestKind::Qemu
            };
            let guest = generate_guest(&mut rng, kind, vmid, &node);
            let tasks = generate_tasks(&mut rng, &guest);
            sink(e, guest, tasks);
        }
        endpoints
    }

    /// Number of guests over all endpoints.
    pub fn guest_count(&self) -> usize {
        self.endpoints.iter().map(|e| e.guests.len()).sum()
    }
}

fn make_node(rng: &mut Rng, no: usize, nodeid: u32) -> NodeSpec {
    NodeSpec {
        name: format!("pve{no}"),
        nodeid,
        ip: format!("192.0.2.{}", 10 + no % 240),
        maxcpu: *rng.pick(&[16, 32, 48, 64]),
        maxmem: *rng.pick(&[128u64, 256, 384, 512]) * 1024 * 1024 * 1024,
    }
}

fn mac(rng: &mut Rng) -> String {
    let b = rng.next_u64().to_be_bytes();
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
}

fn size(rng: &mut Rng) -> &'static str {
    rng.pick::<&str>(&[
        "8G", "16G", "32G", "32G", "50G", "64G", "100G", "128G", "250G", "500G", "1T", "1536M",
        "2T",
    ])
}

fn uuid(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

fn tags(rng: &mut Rng) -> Option<String> {
    let n = rng.below(4) as usize;
    if n == 0 {
        return None;
    }
    let mut t: Vec<&str> = (0..n).map(|_| *rng.pick(TAGS)).collect();
    t.sort_unstable();
    t.dedup();
    Some(t.join(";"))
}

fn notes(rng: &mut Rng) -> Option<String> {
    match rng.below(10) {
        0..=4 => None,
        5..=7 => Some(format!("{}\n", rng.pick(NOTES_SINGLE))),
        _ => Some(rng.pick(NOTES_MULTI).to_string()),
    }
}

/// One realistic guest (used by the generator and by the control API's "add a guest" without a config).
pub fn generate_guest_with_seed(seed: u64, kind: GuestKind, vmid: u32, node: &str) -> Guest {
    let mut rng = Rng::new(seed ^ u64::from(vmid));
    generate_guest(&mut rng, kind, vmid, node)
}

fn generate_guest(rng: &mut Rng, kind: GuestKind, vmid: u32, node: &str) -> Guest {
    let template = rng.chance(0.03);
    let running = !template && rng.chance(0.8);
    let mut g = match kind {
        GuestKind::Qemu => generate_qemu(rng, vmid, node),
        GuestKind::Lxc => generate_lxc(rng, vmid, node),
    };
    if let Some(t) = tags(rng) {
        g = g.with("tags", t);
    }
    if let Some(n) = notes(rng) {
        g = g.with("description", n);
    }
    if rng.chance(0.005) {
        g = g.with("lock", "backup");
    }
    if template {
        g = g.with("template", 1);
    }
    g.status = if running { "running" } else { "stopped" }.into();
    g
}

fn generate_qemu(rng: &mut Rng, vmid: u32, node: &str) -> Guest {
    let windows = rng.chance(0.15);
    let role = rng.pick(QEMU_ROLES);
    let mut name = format!("{role}-{vmid:05}");
    if rng.chance(0.02) {
        name = name.to_uppercase();
    }
    let storage = *rng.pick(STORAGES);
    let mut g = Guest::qemu(vmid, node)
        .with("name", name)
        .with("cores", *rng.pick(&[1, 2, 2, 4, 4, 8]))
        .with("sockets", if rng.chance(0.1) { 2 } else { 1 })
        .with(
            "memory",
            *rng.pick(&[512, 1024, 2048, 2048, 4096, 8192, 16384]),
        )
        .with(
            "ostype",
            if windows {
                *rng.pick(WINDOWS_OS)
            } else {
                *rng.pick(LINUX_OS)
            },
        )
        .with("scsihw", "virtio-scsi-single");
    if rng.chance(0.3) {
        g = g.with("balloon", *rng.pick(&[0, 512, 1024]));
    }
    match rng.below(10) {
        0..=5 => g = g.with("agent", "1"),
        6 => g = g.with("agent", "1,fstrim_cloned_disks=1"),
        7 => g = g.with("agent", "0"),
        _ => {}
    }
    if rng.chance(0.6) {
        g = g.with("onboot", i64::from(rng.chance(0.8)));
    }
    let boot_disk = if rng.chance(0.2) { "virtio0" } else { "scsi0" };
    g = g.with(
        boot_disk,
        format!("{storage}:vm-{vmid}-disk-0,iothread=1,size={}", size(rng)),
    );
    let mut disk_no = 1;
    if rng.chance(0.3) {
        g = g.with(
            "scsi1",
            format!(
                "{storage}:vm-{vmid}-disk-{disk_no},discard=on,size={}",
                size(rng)
            ),
        );
        disk_no += 1;
    }
    if windows {
        g = g
            .with("bios", "ovmf")
            .with(
                "efidisk0",
                format!(
                    "{storage}:vm-{vmid}-disk-{disk_no},efitype=4m,pre-enrolled-keys=1,size=528K"
                ),
            )
            .with(
                "tpmstate0",
                format!(
                    "{storage}:vm-{vmid}-disk-{},size=4M,version=v2.0",
                    disk_no + 1
                ),
            )
            .with(
                "ide2",
                "local:iso/virtio-win-0.1.262.iso,media=cdrom,size=708140K",
            );
    } else if rng.chance(0.3) {
        g = g
            .with("ide2", format!("{storage}:vm-{vmid}-cloudinit,media=cdrom"))
            .with(
                "ipconfig0",
                format!(
                    "ip=10.{}.{}.{}/24,gw=10.{}.{}.1",
                    vmid % 200,
                    (vmid / 200) % 250,
                    10 + vmid % 200,
                    vmid % 200,
                    (vmid / 200) % 250
                ),
            );
    } else {
        g = g.with("ide2", "none,media=cdrom");
    }
    if rng.chance(0.05) {
        g = g.with("unused0", format!("{storage}:vm-{vmid}-disk-9"));
    }
    g = g.with("boot", format!("order={boot_disk};ide2;net0"));
    let tag = if rng.chance(0.4) {
        format!(",tag={}", 10 + rng.below(90))
    } else {
        String::new()
    };
    g = g.with(
        "net0",
        format!("virtio={},bridge=vmbr0,firewall=1{tag}", mac(rng)),
    );
    if rng.chance(0.15) {
        g = g.with("net1", format!("e1000={},bridge=vmbr1", mac(rng)));
    }
    if rng.chance(0.05) {
        g = g.with("cpulimit", "1.5");
    }
    g.with("cpu", *rng.pick(&["x86-64-v2-AES", "host", "kvm64"]))
        .with("numa", 0)
        .with("smbios1", format!("uuid={}", uuid(rng)))
        .with("vmgenid", uuid(rng))
        .with(
            "meta",
            format!(
                "creation-qemu=9.0.2,ctime={}",
                TASK_EPOCH - 86_400 * (1 + rng.below(700))
            ),
        )
}

fn generate_lxc(rng: &mut Rng, vmid: u32, node: &str) -> Guest {
    let storage = *rng.pick(STORAGES);
    let mut g = Guest::lxc(vmid, node)
        .with("hostname", format!("ct-{}-{vmid:05}", rng.pick(LXC_ROLES)))
        .with("ostype", *rng.pick(LXC_OS))
        .with("arch", "amd64");
    if rng.chance(0.85) {
        g = g.with("cores", *rng.pick(&[1, 1, 2, 4]));
    }
    g = g
        .with("memory", *rng.pick(&[256, 512, 512, 1024, 2048, 4096]))
        .with("swap", 512)
        .with(
            "rootfs",
            format!(
                "{storage}:vm-{vmid}-disk-0,size={}",
                *rng.pick(&["4G", "8G", "8G", "16G", "32G"])
            ),
        );
    if rng.chance(0.15) {
        g = g.with(
            "mp0",
            format!(
                "{storage}:vm-{vmid}-disk-1,mp=/srv,backup=1,size={}",
                size(rng)
            ),
        );
    }
    if rng.chance(0.05) {
        g = g.with("mp1", "/mnt/bindsrc,mp=/data");
    }
    let net = if rng.chance(0.7) {
        let o = vmid % 250;
        format!(
            "name=eth0,bridge=vmbr0,firewall=1,gw=10.1.{o}.1,hwaddr={},ip=10.1.{o}.{}/24,type=veth",
            mac(rng),
            2 + vmid % 250
        )
    } else {
        format!(
            "name=eth0,bridge=vmbr0,hwaddr={},ip=dhcp,ip6=auto,type=veth",
            mac(rng)
        )
    };
    g = g.with("net0", net);
    if rng.chance(0.6) {
        g = g.with("onboot", i64::from(rng.chance(0.8)));
    }
    if rng.chance(0.05) {
        g = g.with("cpulimit", "0.5");
    }
    g.with("unprivileged", 1).with("features", "nesting=1")
}

fn generate_tasks(rng: &mut Rng, g: &Guest) -> Vec<Task> {
    let n = rng.below(3);
    let types: &[&str] = match g.kind {
        GuestKind::Qemu => &["qmstart", "qmshutdown", "vzdump", "qmigrate", "qmreboot"],
        GuestKind::Lxc => &["vzstart", "vzshutdown", "vzdump", "vzmigrate"],
    };
    (0..n)
        .map(|_| {
            let start = TASK_EPOCH + rng.below(TASK_SPAN_S);
            let end = start + 1 + rng.below(600);
            let status = match rng.below(20) {
                0 => "WARNINGS: 2".to_string(),
                1 => format!(
                    "command '{}' failed: exit code 1",
                    if g.kind == GuestKind::Qemu {
                        "qm"
                    } else {
                        "pct"
                    }
                ),
                _ => "OK".to_string(),
            };
            let by_token = rng.chance(0.3);
            Task::new(
                &g.node,
                (rng.below(0x3F_FFFF) + 1000) as u32,
                rng.below(0x0FFF_FFFF) + 100_000,
                start,
                Some(end),
                rng.pick::<&str>(types),
                &g.vmid.to_string(),
                if by_token { "sync@pve" } else { "root@pam" },
                by_token.then_some("netbox"),
                Some(&status),
            )
        })
        .collect()
}

/// The config of a guest as a JSON object (for display and tests).
pub fn config_json(g: &Guest) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in &g.config {
        m.insert(k.clone(), v.clone());
    }
    json!(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_inventory() {
        let spec = InventorySpec {
            vms: 300,
            nodes: 5,
            clusters: 2,
            standalone: 1,
            seed: 7,
        };
        let a = serde_json::to_string(&Inventory::generate(&spec)).unwrap();
        let b = serde_json::to_string(&Inventory::generate(&spec)).unwrap();
        assert_eq!(a, b);
        let other = serde_json::to_string(&Inventory::generate(&InventorySpec { seed: 8, ..spec }))
            .unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn shape_of_inventory() {
        let spec = InventorySpec {
            vms: 2000,
            nodes: 5,
            clusters: 2,
            standalone: 1,
            seed: 3,
        };
        let inv = Inventory::generate(&spec);
        assert_eq!(inv.endpoints.len(), 3);
        assert_eq!(inv.guest_count(), 2000);
        assert_eq!(
            inv.endpoints[0].nodes.len() + inv.endpoints[1].nodes.len(),
            5
        );
        assert!(inv.endpoints[2].standalone && inv.endpoints[2].nodes[0].nodeid == 0);
        let all: Vec<&Guest> = inv.endpoints.iter().flat_map(|e| &e.guests).collect();
        let lxc = all.iter().filter(|g| g.kind == GuestKind::Lxc).count();
        assert!(lxc > 400 && lxc < 1000, "lxc share {lxc}");
        assert!(all.iter().any(|g| g.get("template").is_some()));
        assert!(all.iter().any(|g| g.get("efidisk0").is_some()));
        assert!(all.iter().any(|g| g.get("unused0").is_some()));
        assert!(all.iter().any(|g| {
            g.get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| d.lines().count() > 1)
        }));
        assert!(
            all.iter()
                .any(|g| g.get("agent").and_then(Value::as_str) == Some("0"))
        );
        // VMIDs are unique per endpoint and overlap across endpoints.
        for ep in &inv.endpoints {
            let mut ids: Vec<u32> = ep.guests.iter().map(|g| g.vmid).collect();
            ids.dedup();
            assert_eq!(ids.len(), ep.guests.len());
        }
        assert_eq!(
            inv.endpoints[0].guests[0].vmid,
            inv.endpoints[1].guests[0].vmid
        );
    }

    #[test]
    fn upid_grammar() {
        let t = Task::new(
            "pve1",
            107187,
            206397039,
            1722982848,
            Some(1722982850),
            "qmstart",
            "100",
            "sync@pve",
            Some("netbox"),
            Some("OK"),
        );
        assert_eq!(
            t.upid,
            "UPID:pve1:0001A2B3:0C4D5E6F:66B2A1C0:qmstart:100:sync@pve!netbox:"
        );
    }
}
