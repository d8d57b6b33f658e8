//! Proxmox `ostype` to a NetBox platform (slug, readable name).
//!
//! Every QEMU (`other wxp w2k w2k3 w2k8 wvista win7 win8 win10 win11 l24 l26 solaris`) and LXC
//! (`debian devuan ubuntu centos fedora opensuse archlinux alpine gentoo nixos unmanaged`)
//! value has an entry; names follow proxbox where it has one (`l26`, `win10`, `debian`) so
//! existing platforms are reused. An unknown value gives no platform (`Keep`).

use crate::model::GuestKind;
use crate::property::trim;

/// (ostype, slug, name) for QEMU.
const QEMU: [(&str, &str, &str); 13] = [
    ("other", "other", "Other"),
    ("wxp", "windows-xp", "Windows XP"),
    ("w2k", "windows-2000", "Windows 2000"),
    ("w2k3", "windows-server-2003", "Windows Server 2003"),
    ("w2k8", "windows-server-2008", "Windows Vista / Server 2008"),
    ("wvista", "windows-vista", "Windows Vista"),
    ("win7", "windows-7", "Windows 7 / Server 2008 R2"),
    ("win8", "windows-8", "Windows 8 / Server 2012"),
    ("win10", "windows-10", "Windows 10"),
    ("win11", "windows-11", "Windows 11"),
    ("l24", "linux-2-4", "Linux (kernel 2.4)"),
    ("l26", "linux", "Linux (kernel 2.6 or newer)"),
    ("solaris", "solaris", "Solaris"),
];

/// (ostype, slug, name) for LXC.
const LXC: [(&str, &str, &str); 11] = [
    ("debian", "debian", "Debian"),
    ("devuan", "devuan", "Devuan"),
    ("ubuntu", "ubuntu", "Ubuntu"),
    ("centos", "centos", "CentOS"),
    ("fedora", "fedora", "Fedora"),
    ("opensuse", "opensuse", "openSUSE"),
    ("archlinux", "arch-linux", "Arch Linux"),
    ("alpine", "alpine-linux", "Alpine Linux"),
    ("gentoo", "gentoo", "Gentoo"),
    ("nixos", "nixos", "NixOS"),
    ("unmanaged", "unmanaged-container", "Unmanaged container"),
];

/// QEMU's default `ostype` when the config has none.
pub(crate) const QEMU_DEFAULT_OSTYPE: &str = "other";

/// The platform (slug, name) of an ostype, if known.
pub(crate) fn platform(kind: GuestKind, ostype: &str) -> Option<(&'static str, &'static str)> {
    let table: &[(&str, &str, &str)] = match kind {
        GuestKind::Qemu => &QEMU,
        GuestKind::Lxc => &LXC,
    };
    let ostype = trim(ostype);
    table
        .iter()
        .find(|(o, _, _)| o.eq_ignore_ascii_case(ostype))
        .map(|(_, slug, name)| (*slug, *name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ostype_has_a_slug_shaped_entry() {
        for (o, slug, name) in QEMU.iter().chain(LXC.iter()) {
            assert!(!name.is_empty(), "{o}");
            assert!(
                slug.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{slug}"
            );
        }
        assert_eq!(
            platform(GuestKind::Qemu, "l26"),
            Some(("linux", "Linux (kernel 2.6 or newer)"))
        );
        assert_eq!(
            platform(GuestKind::Lxc, "debian"),
            Some(("debian", "Debian"))
        );
        assert_eq!(platform(GuestKind::Lxc, "l26"), None);
        assert_eq!(platform(GuestKind::Qemu, "beos"), None);
    }

    #[test]
    fn slugs_are_unique() {
        let mut slugs: Vec<&str> = QEMU.iter().chain(LXC.iter()).map(|e| e.1).collect();
        slugs.sort_unstable();
        let n = slugs.len();
        slugs.dedup();
        assert_eq!(n, slugs.len());
    }
}
