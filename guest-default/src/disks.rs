//! The disk total of a guest in MiB (NetBox `disk`).
//!
//! Counts the disk keys `config` recognised; skips `media=cdrom` (ISO, cloud-init) and disks
//! without `size=` (pass-through `/dev/...`, LXC bind mounts, empty drives). Each disk is rounded
//! up to whole MiB, then summed. A malformed size is an error for the whole VM (code
//! `bad-disk-size`): summing the rest would write a wrong total, and PVE itself never prints
//! one, so it signals a real problem worth seeing.

use thiserror::Error;

use crate::property::PropertyString;
use crate::units::{SizeError, bytes_to_mib_ceil, parse_size};

/// A disk whose size could not be read.
#[derive(Clone, Debug, Error)]
#[error("disk {key}: {source}")]
pub(crate) struct DiskError {
    pub(crate) key: String,
    #[source]
    pub(crate) source: SizeError,
}

/// Sums the disks (`(key, property string)`) in MiB; `Ok(0)` when there are none.
pub(crate) fn total_mib(disks: &[(&str, &str)]) -> Result<u64, DiskError> {
    let mut total: u64 = 0;
    for (key, value) in disks {
        // One scan for both keys (this loop runs for every disk of every guest).
        let (media, size) = PropertyString::parse(value, "file").get2("media", "size");
        if media.is_some_and(|m| m.eq_ignore_ascii_case("cdrom")) {
            continue;
        }
        let Some(size) = size else {
            continue;
        };
        let bytes = parse_size(size).map_err(|source| DiskError {
            key: (*key).to_owned(),
            source,
        })?;
        total = total.saturating_add(bytes_to_mib_ceil(bytes));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_qemu_disks_and_skips_cdrom() {
        let disks = [
            ("scsi0", "local-lvm:vm-100-disk-0,iothread=1,size=32G"),
            ("scsi1", "ceph:vm-100-disk-1,discard=on,size=500G"),
            ("ide2", "none,media=cdrom"),
            ("efidisk0", "local-lvm:vm-100-disk-2,efitype=4m,size=4M"),
        ];
        assert_eq!(total_mib(&disks).unwrap(), 32768 + 512000 + 4);
    }

    #[test]
    fn cdrom_with_size_and_cloudinit_are_skipped() {
        let disks = [
            ("ide2", "local:iso/debian.iso,media=cdrom,size=600M"),
            ("ide0", "local-lvm:vm-100-cloudinit,media=cdrom,size=4M"),
            ("virtio0", "local:100/vm-100-disk-0.qcow2,size=1.5G"),
        ];
        assert_eq!(total_mib(&disks).unwrap(), 1536);
    }

    #[test]
    fn passthrough_and_bind_mounts_without_size_are_skipped() {
        let disks = [
            ("sata0", "/dev/disk/by-id/ata-WDC_WD40EFRX"),
            ("rootfs", "local-lvm:vm-101-disk-0,size=8G"),
            ("mp1", "/mnt/bindsrc,mp=/data"),
        ];
        assert_eq!(total_mib(&disks).unwrap(), 8192);
    }

    #[test]
    fn small_disks_round_up_per_disk() {
        let disks = [
            ("efidisk0", "local-lvm:vm-1-disk-1,efitype=2m,size=528K"),
            ("tpmstate0", "local-lvm:vm-1-disk-2,size=4M,version=v2.0"),
            ("scsi0", "local-lvm:vm-1-disk-0,size=10737418240"),
        ];
        assert_eq!(total_mib(&disks).unwrap(), 1 + 4 + 10240);
    }

    #[test]
    fn malformed_size_names_the_disk() {
        let err = total_mib(&[("scsi0", "local:vm-1-disk-0,size=big")]).unwrap_err();
        assert_eq!(err.key, "scsi0");
        assert!(err.to_string().contains("scsi0"));
    }
}
