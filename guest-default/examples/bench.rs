//! Native timing of the default rules on generated guests (not a test; prints, never asserts).
//!
//! `cargo run --release -p guest-default --example bench [-- N]` (N defaults to 100000).

use std::time::Instant;

use guest_default::DefaultRules;
use guest_default::model::{
    Context, Desired, DiffInput, Guest, GuestKind, JsonText, NetboxVm, RuleSet,
};

/// Batch size, as the host calls the component (amortises call overhead, bounds memory).
const BATCH: usize = 1000;

fn guest(i: u32) -> Guest {
    let lxc = i.is_multiple_of(4);
    let mut config = vec![
        ("name".to_owned(), format!("vm-{i}")),
        ("cores".to_owned(), "2".to_owned()),
        ("sockets".to_owned(), "1".to_owned()),
        ("memory".to_owned(), "4096".to_owned()),
        (
            "ostype".to_owned(),
            if lxc { "debian" } else { "l26" }.to_owned(),
        ),
        ("onboot".to_owned(), "1".to_owned()),
        ("scsihw".to_owned(), "virtio-scsi-single".to_owned()),
        (
            "net0".to_owned(),
            "virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1".to_owned(),
        ),
        (
            "description".to_owned(),
            "web frontend\nowner: ops\n".to_owned(),
        ),
        (
            "smbios1".to_owned(),
            "uuid=6c8f1e2a-1b2c-4d3e-8f90-a1b2c3d4e5f6".to_owned(),
        ),
    ];
    if lxc {
        config.push(("rootfs".into(), format!("local-lvm:vm-{i}-disk-0,size=8G")));
        config.push((
            "mp0".into(),
            format!("local-lvm:vm-{i}-disk-1,mp=/srv,size=16G"),
        ));
    } else {
        config.push((
            "scsi0".into(),
            format!("local-lvm:vm-{i}-disk-0,iothread=1,size=32G"),
        ));
        config.push(("ide2".into(), "none,media=cdrom".into()));
        config.push((
            "efidisk0".into(),
            format!("local-lvm:vm-{i}-disk-2,size=4M"),
        ));
    }
    Guest {
        cluster: "prod".into(),
        vmid: 100 + i,
        kind: if lxc { GuestKind::Lxc } else { GuestKind::Qemu },
        node: format!("pve{}", i % 8),
        name: Some(format!("vm-{i}")),
        status: if i.is_multiple_of(3) {
            "stopped"
        } else {
            "running"
        }
        .into(),
        template: false,
        maxcpu: Some(2.0),
        maxmem: Some(4 << 30),
        maxdisk: Some(32 << 30),
        tags: Some("prod;web".into()),
        pool: None,
        config,
        config_read: true,
    }
}

/// The NetBox record of guest `i`, with one field in ten changed so diff finds work.
fn current(i: u32) -> NetboxVm {
    let lxc = i.is_multiple_of(4);
    NetboxVm {
        id: u64::from(i) + 1,
        name: format!("vm-{i}"),
        status: if i.is_multiple_of(3) {
            "offline"
        } else {
            "active"
        }
        .into(),
        cluster: Some("prod".into()),
        device: Some(format!("pve{}", (i + u32::from(i.is_multiple_of(10))) % 8)),
        vm_type: Some(
            if lxc {
                "container-lxc"
            } else {
                "virtual-machine-qemu"
            }
            .into(),
        ),
        platform: Some(if lxc { "debian" } else { "linux" }.into()),
        vcpus: Some(2.0),
        memory: Some(4096),
        disk: Some(if lxc { 24576 } else { 32772 }),
        description: "web frontend".into(),
        comments: "web frontend\nowner: ops".into(),
        start_on_boot: Some("on".into()),
        tags: vec!["prod".into(), "pve2netbox".into(), "web".into()],
        custom_fields: vec![
            ("proxmox_vm_id".into(), JsonText((100 + i).to_string())),
            (
                "proxmox_vm_type".into(),
                JsonText::string(if lxc { "lxc" } else { "qemu" }),
            ),
            (
                "proxmox_node".into(),
                JsonText::string(&format!("pve{}", i % 8)),
            ),
            ("proxmox_tags".into(), JsonText::string("prod;web")),
        ],
        ..NetboxVm::default()
    }
}

/// CPU time of this thread in ns (Linux `/proc/thread-self/schedstat`), so a loaded machine
/// does not inflate the numbers; 0 where unavailable.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let ctx = Context {
        policies: DefaultRules::default_policies(),
        ..Context::default()
    };
    let guests: Vec<Guest> = (0..n).map(guest).collect();
    let currents: Vec<NetboxVm> = (0..n).map(current).collect();

    // Lenient parsing of raw rows, as the host's Proxmox client does.
    let raw: Vec<String> = guests
        .iter()
        .map(|g| serde_json::to_string(g).expect("serialize"))
        .collect();
    let t = Instant::now();
    let parsed = raw
        .iter()
        .filter(|r| serde_json::from_str::<Guest>(r).is_ok())
        .count();
    let parse = t.elapsed();

    let t = Instant::now();
    let cpu0 = cpu_ns();
    let (mut changes, mut changed_vms) = (0usize, 0usize);
    let mut phases = [std::time::Duration::ZERO; 3];
    let mut guests = guests.into_iter();
    let mut currents = currents.into_iter();
    loop {
        let g: Vec<Guest> = guests.by_ref().take(BATCH).collect();
        if g.is_empty() {
            break;
        }
        let c: Vec<NetboxVm> = currents.by_ref().take(g.len()).collect();
        let t0 = Instant::now();
        let desired = DefaultRules::normalize_desired(&ctx, g);
        let t1 = Instant::now();
        let current = DefaultRules::normalize_current(&ctx, c);
        let t2 = Instant::now();
        phases[0] += t1 - t0;
        phases[1] += t2 - t1;
        let pairs: Vec<DiffInput> = desired
            .into_iter()
            .zip(current)
            .filter_map(|(d, c)| match (d, c) {
                (Ok(Desired::Vm(d)), Ok(c)) => Some(DiffInput {
                    desired: d.vm,
                    current: Some(c),
                }),
                _ => None,
            })
            .collect();
        let t3 = Instant::now();
        let diffs = DefaultRules::diff(&ctx, pairs);
        phases[2] += t3.elapsed();
        for r in diffs {
            let r = r.expect("diff");
            changes += r.len();
            changed_vms += usize::from(!r.is_empty());
        }
    }
    let reconcile = t.elapsed();
    let reconcile_cpu_ms = cpu_ns().saturating_sub(cpu0) as f64 / 1e6;
    println!(
        "{n} guests: lenient JSON parse of raw rows {:.1} ms ({parsed} ok); \
         normalize-desired + normalize-current + diff {:.1} ms wall, {reconcile_cpu_ms:.1} ms CPU ({:.2} µs/VM CPU), \
         {changed_vms} VMs with {changes} changes; phases desired/current/diff {:.1}/{:.1}/{:.1} ms",
        parse.as_secs_f64() * 1e3,
        reconcile.as_secs_f64() * 1e3,
        reconcile_cpu_ms * 1e3 / f64::from(n.max(1)),
        phases[0].as_secs_f64() * 1e3,
        phases[1].as_secs_f64() * 1e3,
        phases[2].as_secs_f64() * 1e3,
    );
}
