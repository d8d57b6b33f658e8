//! A guest's virtual disks (NetBox `virtualization.virtualdisk`) from its config.
//!
//! The same disks `crate::disks::total_mib` counts, one virtual disk each, so the VM's `disk`
//! (their sum) and the virtual disks always agree: `scsiN|ideN|sataN|virtioN|efidiskN|tpmstateN`
//! (QEMU) and `rootfs|mpN` (LXC); not `unusedN` (detached), not `media=cdrom` (ISO, cloud-init),
//! not disks without `size=` (pass-through `/dev/…` without a size, bind mounts, empty drives).
//! Named by the config key, sized in whole MiB rounded up, the storage in the description.

use super::text::split_once;
use crate::disks::DiskError;
use crate::property::PropertyString;
use crate::units::{bytes_to_mib_ceil, parse_size};

/// One virtual disk the config describes, its texts borrowed from the config.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ConfigDisk<'a> {
    /// The config key (`scsi0`, `rootfs`, `mp0`).
    pub(crate) name: &'a str,
    pub(crate) size_mib: u64,
    /// The storage (`local-lvm`), or the device path of a pass-through disk.
    pub(crate) storage: &'a str,
}

/// The virtual disks of a config, or the first disk whose size does not read: what the VM's
/// own `disk` and its virtual disks are both computed from when one call does both.
pub(crate) type ConfigDisks<'a> = Result<Vec<ConfigDisk<'a>>, DiskError>;

/// The disks' total in MiB, as `crate::disks::total_mib` sums the same config (every disk
/// rounded up on its own, the sum saturating).
pub(crate) fn total_mib(disks: &[ConfigDisk<'_>]) -> u64 {
    disks
        .iter()
        .fold(0u64, |total, d| total.saturating_add(d.size_mib))
}

/// The virtual disks of `disks` (`(key, property string)` pairs, disk keys only, config order).
pub(crate) fn config_disks<'a>(
    disks: &[(&'a str, &'a str)],
) -> Result<Vec<ConfigDisk<'a>>, DiskError> {
    let mut out = Vec::with_capacity(disks.len());
    for &(key, value) in disks {
        // The four keys in one scan of the parts (first occurrences, as `get` finds them):
        // a scan per key, and `str::split_once`'s searcher, cost ~1.5k WASM instructions a
        // disk.
        let (mut media, mut size, mut file, mut volume) = (None, None, None, None);
        for (k, v) in PropertyString::parse(value, "file").parts() {
            let slot = match k {
                "media" => &mut media,
                "size" => &mut size,
                "file" => &mut file,
                "volume" => &mut volume,
                _ => continue,
            };
            slot.get_or_insert(v);
        }
        if media.is_some_and(|m| m.eq_ignore_ascii_case("cdrom")) {
            continue;
        }
        let Some(size) = size else { continue };
        let bytes = parse_size(size).map_err(|source| DiskError {
            key: key.to_owned(),
            source,
        })?;
        let file = file.or(volume).unwrap_or_default();
        let storage = match split_once(file, b':') {
            Some((storage, _)) if file.as_bytes().first() != Some(&b'/') => storage,
            _ => file,
        };
        out.push(ConfigDisk {
            name: key,
            size_mib: bytes_to_mib_ceil(bytes),
            storage,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::total_mib;

    #[test]
    fn reference_qemu_disks() {
        let disks = [
            ("scsi0", "local-lvm:vm-100-disk-0,iothread=1,size=32G"),
            ("scsi1", "ceph:vm-100-disk-1,discard=on,size=500G"),
            ("ide2", "none,media=cdrom"),
            ("efidisk0", "local-lvm:vm-100-disk-2,efitype=4m,size=4M"),
        ];
        let v = config_disks(&disks).unwrap();
        let names: Vec<_> = v.iter().map(|d| (d.name, d.size_mib, d.storage)).collect();
        assert_eq!(
            names,
            [
                ("scsi0", 32768, "local-lvm"),
                ("scsi1", 512000, "ceph"),
                ("efidisk0", 4, "local-lvm")
            ]
        );
        assert_eq!(
            v.iter().map(|d| d.size_mib).sum::<u64>(),
            total_mib(&disks).unwrap()
        );
    }

    #[test]
    fn lxc_and_passthrough() {
        let disks = [
            ("rootfs", "local-lvm:vm-101-disk-0,size=8G"),
            ("mp0", "local-lvm:vm-101-disk-1,mp=/srv,backup=1,size=16G"),
            ("mp1", "/mnt/bindsrc,mp=/data"),
            ("sata1", "/dev/disk/by-id/ata-WDC_WD40EFRX,size=3907018584K"),
            ("sata2", "/dev/disk/by-id/ata-other"),
        ];
        let v = config_disks(&disks).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].storage, "/dev/disk/by-id/ata-WDC_WD40EFRX");
        assert_eq!(v[2].size_mib, 3_815_448);
        assert_eq!(
            v.iter().map(|d| d.size_mib).sum::<u64>(),
            total_mib(&disks).unwrap()
        );
    }

    #[test]
    fn cloudinit_and_iso_are_not_disks() {
        let disks = [
            ("ide0", "local-lvm:vm-100-cloudinit,media=cdrom,size=4M"),
            ("ide2", "local:iso/debian.iso,media=cdrom,size=600M"),
        ];
        assert!(config_disks(&disks).unwrap().is_empty());
    }

    /// Each key's first occurrence, `volume` when there is no `file`, a path's colon kept.
    #[test]
    fn first_occurrences_and_volume() {
        let disks = [
            (
                "scsi0",
                "size=1G,media=disk,file=a:1,size=2G,media=cdrom,file=b:2",
            ),
            ("mp0", " volume = store:subvol-1 , size=1M, mp=/x"),
            ("sata0", "/dev/a:b,size=1M"),
            ("scsi1", "x:1,volume=y:2,size=1M"),
        ];
        let v = config_disks(&disks).unwrap();
        let got: Vec<_> = v.iter().map(|d| (d.name, d.size_mib, d.storage)).collect();
        assert_eq!(
            got,
            [
                ("scsi0", 1024, "a"),
                ("mp0", 1, "store"),
                ("sata0", 1, "/dev/a:b"),
                ("scsi1", 1, "x")
            ]
        );
    }

    #[test]
    fn malformed_size_names_the_disk() {
        let e = config_disks(&[("virtio0", "local:1/vm-1-disk-0.qcow2,size=big")]).unwrap_err();
        assert_eq!(e.key, "virtio0");
    }

    /// The VM's `disk` read from the virtual disks is the one `crate::disks` reads from the
    /// config: the same total, or the same disk's error worded the same.
    #[test]
    fn the_total_is_the_vm_disk_total() {
        let sets: [&[(&str, &str)]; 7] = [
            &[
                ("scsi0", "local-lvm:vm-100-disk-0,iothread=1,size=32G"),
                ("ide2", "none,media=cdrom"),
                ("efidisk0", "local-lvm:vm-100-disk-2,efitype=4m,size=528K"),
            ],
            &[("scsi0", "size=1G,media=disk,size=2G,media=cdrom")],
            &[("ide0", "x:1,media=CDROM,size=4M"), ("mp1", "/mnt/a,mp=/b")],
            &[],
            &[("scsi0", "a:1,size=16E"), ("scsi1", "a:2,size=16E")],
            &[
                ("scsi0", "a:1,size=1G"),
                ("scsi1", "a:2,size=big"),
                ("scsi2", "size=x"),
            ],
            &[
                ("scsi0", "a:1,media=cdrom,size=big"),
                ("scsi1", "a:2,size=1.5"),
            ],
        ];
        for disks in sets {
            let shared = config_disks(disks).map(|d| super::total_mib(&d));
            match (shared, total_mib(disks)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{disks:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{disks:?}"),
                (a, b) => panic!("{disks:?}: {a:?} against {b:?}"),
            }
        }
    }
}
