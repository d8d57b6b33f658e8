//! A small deterministic inventory generator for `rules bench`: N Proxmox guests with realistic
//! raw configs, and for most of them a NetBox record (some in step, some drifted), so all three
//! rule calls do real work. The test kit's generator may replace it later; this one exists so the
//! benchmark does not depend on the simulators.

use guest_default::model::{Guest, GuestKind, JsonText, NetboxVm};

/// SplitMix64: tiny, fast and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const NODES: &[&str] = &["pve1", "pve2", "pve3", "pve4"];
const TAGS: &[&str] = &["prod", "dev", "db", "web", "backup", "k8s", "legacy"];
const OSTYPES: &[&str] = &["l26", "l26", "l26", "win11", "win10", "other"];
const SIZES: &[&str] = &["8G", "32G", "50G", "100G", "1T", "512M", "2048M"];

/// `n` guests of cluster `cluster`, VMIDs from 100, deterministic for a given `seed`.
pub fn guests(cluster: &str, n: usize, seed: u64) -> Vec<Guest> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let vmid = 100 + i as u32;
            let lxc = rng.below(4) == 0;
            let node = rng.pick(NODES).to_string();
            let name = format!("{}-{vmid}", if lxc { "ct" } else { "vm" });
            let cores = 1 + rng.below(8);
            let memory_mib = 512 * (1 + rng.below(32));
            let tag_count = rng.below(3);
            let tags: Vec<&str> = (0..tag_count).map(|_| rng.pick(TAGS)).collect();
            let running = rng.below(5) != 0;
            let mut config: Vec<(String, String)> = Vec::with_capacity(12);
            let mut push = |k: &str, v: String| config.push((k.to_string(), v));
            if lxc {
                push("hostname", name.clone());
                push("arch", "amd64".into());
                push("ostype", "debian".into());
                push("cores", cores.to_string());
                push("memory", memory_mib.to_string());
                push("swap", "512".into());
                push(
                    "rootfs",
                    format!("local-lvm:vm-{vmid}-disk-0,size={}", rng.pick(SIZES)),
                );
                push(
                    "net0",
                    format!("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:{:02X}:{:02X}:{:02X},ip=dhcp,type=veth", vmid % 256, i % 256, (i / 256) % 256),
                );
                if rng.below(3) == 0 {
                    push("cpulimit", "1.5".into());
                }
            } else {
                push("name", name.clone());
                push("ostype", rng.pick(OSTYPES).to_string());
                push("sockets", "1".into());
                push("cores", cores.to_string());
                push("memory", memory_mib.to_string());
                push("boot", "order=scsi0;ide2;net0".into());
                push("scsihw", "virtio-scsi-single".into());
                push(
                    "scsi0",
                    format!(
                        "local-lvm:vm-{vmid}-disk-0,iothread=1,size={}",
                        rng.pick(SIZES)
                    ),
                );
                if rng.below(3) == 0 {
                    push(
                        "scsi1",
                        format!("local-lvm:vm-{vmid}-disk-1,size={}", rng.pick(SIZES)),
                    );
                }
                push("ide2", "none,media=cdrom".into());
                push(
                    "net0",
                    format!("virtio=BC:24:11:{:02X}:{:02X}:{:02X},bridge=vmbr0,firewall=1", vmid % 256, i % 256, (i / 256) % 256),
                );
                push("agent", "1".into());
                push("smbios1", format!("uuid=6f1e0c3a-0000-4000-8000-{vmid:012}"));
            }
            if !tags.is_empty() {
                push("tags", tags.join(";"));
            }
            if rng.below(4) == 0 {
                push("description", format!("Owner: team-{}\nTicket: OPS-{}", rng.below(9), rng.below(10_000)));
            }
            Guest {
                cluster: cluster.to_string(),
                vmid,
                kind: if lxc { GuestKind::Lxc } else { GuestKind::Qemu },
                node,
                name: Some(name),
                status: if running { "running" } else { "stopped" }.into(),
                template: false,
                maxcpu: Some(cores as f64),
                maxmem: Some(memory_mib * 1024 * 1024),
                maxdisk: Some(32 * 1024 * 1024 * 1024),
                tags: (!tags.is_empty()).then(|| tags.join(";")),
                pool: None,
                config,
                config_read: true,
            }
        })
        .collect()
}

/// NetBox records for about 90% of `guests` (ids from 1); a third of those have drifted (memory,
/// status or an operator tag), so diff finds work.
pub fn current_records(guests: &[Guest], seed: u64) -> Vec<Option<NetboxVm>> {
    let mut rng = Rng(seed ^ 0x5eed);
    guests
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if rng.below(10) == 0 {
                return None;
            }
            let drift = rng.below(3) == 0;
            let memory = g.maxmem.map(|b| b >> 20);
            let mut tags: Vec<String> = g
                .tags
                .as_deref()
                .unwrap_or("")
                .split(';')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            tags.push("pve2netbox".into());
            if drift {
                tags.push("operator-owned".into());
            }
            Some(NetboxVm {
                id: 1 + i as u64,
                name: g.name.clone().unwrap_or_default(),
                status: if g.status == "running" {
                    "active"
                } else {
                    "offline"
                }
                .into(),
                cluster: Some(g.cluster.clone()),
                device: Some(g.node.clone()),
                vcpus: g.maxcpu,
                memory: if drift { memory.map(|m| m * 2) } else { memory },
                disk: Some(32 * 1024),
                tags,
                custom_fields: vec![
                    ("proxmox_vm_id".into(), JsonText::uint(g.vmid.into())),
                    ("proxmox_vm_type".into(), JsonText::string(g.kind.as_str())),
                    ("proxmox_node".into(), JsonText::string(&g.node)),
                ],
                ..NetboxVm::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = guests("c", 50, 7);
        let b = guests("c", 50, 7);
        assert_eq!(a, b);
        assert_eq!(a.len(), 50);
        assert_ne!(a, guests("c", 50, 8));
        let cur = current_records(&a, 7);
        assert_eq!(cur.len(), 50);
        assert!(cur.iter().filter(|c| c.is_some()).count() > 30);
        assert_eq!(cur, current_records(&a, 7));
    }
}
