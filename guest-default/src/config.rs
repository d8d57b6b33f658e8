//! One pass over a guest's raw config, picking out the keys the default rules read.
//!
//! Borrows from the guest (no copies). Disk keys are recognised here so `disks` never sees
//! look-alikes such as `scsihw` or `unused0`.

use crate::model::{Guest, GuestKind};

/// The config keys the default rules use, borrowed from the guest.
#[derive(Default)]
pub(crate) struct ConfigView<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) memory: Option<&'a str>,
    pub(crate) vcpus: Option<&'a str>,
    pub(crate) cores: Option<&'a str>,
    pub(crate) sockets: Option<&'a str>,
    pub(crate) cpulimit: Option<&'a str>,
    pub(crate) ostype: Option<&'a str>,
    pub(crate) description: Option<&'a str>,
    pub(crate) onboot: Option<&'a str>,
    pub(crate) tags: Option<&'a str>,
    pub(crate) smbios1: Option<&'a str>,
    /// Disk keys and their property strings, in config order.
    pub(crate) disks: Vec<(&'a str, &'a str)>,
}

impl<'a> ConfigView<'a> {
    /// Reads the guest's config (empty when it was not read).
    pub(crate) fn new(guest: &'a Guest) -> Self {
        let mut v = ConfigView::default();
        for (k, val) in &guest.config {
            let val = val.as_str();
            match k.as_str() {
                "name" => v.name = Some(val),
                "hostname" => v.hostname = Some(val),
                "memory" => v.memory = Some(val),
                "vcpus" => v.vcpus = Some(val),
                "cores" => v.cores = Some(val),
                "sockets" => v.sockets = Some(val),
                "cpulimit" => v.cpulimit = Some(val),
                "ostype" => v.ostype = Some(val),
                "description" => v.description = Some(val),
                "onboot" => v.onboot = Some(val),
                "tags" => v.tags = Some(val),
                "smbios1" => v.smbios1 = Some(val),
                key if is_disk_key(guest.kind, key) => v.disks.push((key, val)),
                _ => {}
            }
        }
        v
    }
}

/// True for the config keys that are disks of this guest kind: `scsiN|ideN|sataN|virtioN|
/// efidiskN|tpmstateN` (QEMU), `rootfs|mpN` (LXC). `unusedN` (detached) is not a disk.
pub(crate) fn is_disk_key(kind: GuestKind, key: &str) -> bool {
    let numbered = |prefix: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match kind {
        GuestKind::Qemu => ["scsi", "ide", "sata", "virtio", "efidisk", "tpmstate"]
            .iter()
            .any(|p| numbered(p)),
        GuestKind::Lxc => key == "rootfs" || numbered("mp"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_keys() {
        for k in [
            "scsi0",
            "scsi30",
            "ide2",
            "sata5",
            "virtio15",
            "efidisk0",
            "tpmstate0",
        ] {
            assert!(is_disk_key(GuestKind::Qemu, k), "{k}");
        }
        for k in [
            "scsihw", "unused0", "scsi", "net0", "rootfs", "mp0", "virtio-x",
        ] {
            assert!(!is_disk_key(GuestKind::Qemu, k), "{k}");
        }
        for k in ["rootfs", "mp0", "mp255"] {
            assert!(is_disk_key(GuestKind::Lxc, k), "{k}");
        }
        for k in ["mp", "unused1", "scsi0", "mpx"] {
            assert!(!is_disk_key(GuestKind::Lxc, k), "{k}");
        }
    }
}
