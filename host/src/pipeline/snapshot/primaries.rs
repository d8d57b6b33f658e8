//! Each VM's primary IPs (`primary_ip4`, `primary_ip6` of the VM listing) as the children
//! snapshot keeps them: one list of fixed entries sorted by VM id and the addresses end to end
//! in one text. Why: a map of VM id to two `{id, address}` records was ~14 MB at 100k VMs
//! (a hash table of 72-byte entries and two allocations per VM), held at the rerun's memory
//! peak; this is ~24 bytes a VM plus the addresses. Only the addresses are kept: the rendering
//! (`{"address": …}`) reads nothing else.
//!
//! Edges: the VM listing's [`Primaries`] in; a VM's addresses out ([`PrimaryIps::get`]).

use super::children::Primaries;
use super::sorted_near::{Cursor, find_from};

/// Length of an absent address (every kept address is shorter).
const ABSENT: u32 = u32::MAX;

/// One VM's entry: its addresses at `start` in the text, the IPv4 one then the IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    vm: u64,
    start: u64,
    len4: u32,
    len6: u32,
}

/// The VMs' primary IP addresses; a VM with neither has no entry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PrimaryIps {
    /// Sorted by `vm` once [`PrimaryIps::finish`]ed, one per VM.
    entries: Vec<Entry>,
    text: String,
}

impl PrimaryIps {
    /// Adds the VM's primary IPs (nothing when it has none). Errs, adding nothing, when an
    /// address is too long to be kept (4 GiB: no address is).
    pub fn push(&mut self, vm: u64, p: &Primaries) -> Result<(), String> {
        let (ip4, ip6) = (p.ip4.as_ref(), p.ip6.as_ref());
        if ip4.is_none() && ip6.is_none() {
            return Ok(());
        }
        let len = |ip: Option<&super::children::IpRef>| match ip {
            None => Ok(ABSENT),
            Some(ip) => u32::try_from(ip.address.len())
                .ok()
                .filter(|l| *l != ABSENT)
                .ok_or_else(|| format!("primary IP address of {} bytes", ip.address.len())),
        };
        let entry = Entry {
            vm,
            start: self.text.len() as u64,
            len4: len(ip4)?,
            len6: len(ip6)?,
        };
        for ip in [ip4, ip6].into_iter().flatten() {
            self.text.push_str(&ip.address);
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Sorts the entries by VM (the listing hands rows in id order, so this is usually a
    /// check), keeps the last entry of a VM listed twice, and frees the room the lists grew into.
    pub fn finish(mut self) -> Self {
        if !self.entries.is_sorted_by(|a, b| a.vm < b.vm) {
            // Stable: of two entries of one VM the later one stays last, and is kept.
            self.entries.sort_by_key(|e| e.vm);
            let mut kept: Vec<Entry> = Vec::with_capacity(self.entries.len());
            for e in self.entries.drain(..) {
                match kept.last_mut() {
                    Some(last) if last.vm == e.vm => *last = e,
                    _ => kept.push(e),
                }
            }
            self.entries = kept;
        }
        self.entries.shrink_to_fit();
        self.text.shrink_to_fit();
        self
    }

    /// The VM's primary IPv4 and IPv6 addresses (`None`: it has that one not set).
    pub fn get(&self, vm: u64) -> (Option<&str>, Option<&str>) {
        self.get_from(vm, &mut Cursor::default())
    }

    /// [`PrimaryIps::get`], searching from where `at` last ended (see [`find_from`]).
    pub fn get_from(&self, vm: u64, at: &mut Cursor) -> (Option<&str>, Option<&str>) {
        let Some(i) = find_from(&self.entries, vm, |e| e.vm, at) else {
            return (None, None);
        };
        let e = self.entries[i];
        let start = e.start as usize;
        let text =
            |from: usize, len: u32| (len != ABSENT).then(|| &self.text[from..from + len as usize]);
        let len4 = if e.len4 == ABSENT { 0 } else { e.len4 as usize };
        (text(start, e.len4), text(start + len4, e.len6))
    }

    /// Keeps the entries of the VMs `keep` accepts (their addresses stay where they are).
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|e| keep(e.vm));
    }

    /// VMs with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no VM has a primary IP.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<(u64, Primaries)> for PrimaryIps {
    /// The entries of rows made in code (addresses far below 4 GiB).
    fn from_iter<I: IntoIterator<Item = (u64, Primaries)>>(iter: I) -> Self {
        let mut out = PrimaryIps::default();
        for (vm, p) in iter {
            out.push(vm, &p).expect("addresses made in code fit");
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::children::IpRef;
    use super::*;

    fn ip(address: &str) -> Option<IpRef> {
        Some(IpRef {
            id: 1,
            address: address.into(),
        })
    }

    fn both(ip4: Option<IpRef>, ip6: Option<IpRef>) -> Primaries {
        Primaries { ip4, ip6 }
    }

    #[test]
    fn addresses_come_back_as_pushed() {
        let cases = [
            (3, both(ip("10.0.0.5/24"), None)),
            (1, both(None, ip("fd00::5/64"))),
            (7, both(ip("192.0.2.1/32"), ip("2001:db8::1/128"))),
            // Empty texts are present, not absent; non-ASCII texts keep their bytes.
            (9, both(ip(""), ip(""))),
            (11, both(ip("äddress/ünicode ✓"), ip(""))),
            (12, both(None, None)),
        ];
        let ips: PrimaryIps = cases.iter().cloned().collect();
        for (vm, p) in &cases {
            let want = (
                p.ip4.as_ref().map(|i| i.address.as_str()),
                p.ip6.as_ref().map(|i| i.address.as_str()),
            );
            assert_eq!(ips.get(*vm), want, "vm {vm}");
        }
        // A VM with neither address takes no entry; an unknown VM has none.
        assert_eq!(ips.len(), 5);
        assert_eq!(ips.get(2), (None, None));
        assert_eq!(ips.get(u64::MAX), (None, None));
    }

    #[test]
    fn the_last_of_a_vm_listed_twice_is_kept_and_retain_keeps_texts() {
        let mut ips: PrimaryIps = [
            (5, both(ip("10.0.0.1/24"), None)),
            (2, both(ip("10.0.0.2/24"), ip("fd00::2/64"))),
            (5, both(None, ip("fd00::5/64"))),
        ]
        .into_iter()
        .collect();
        assert_eq!(ips.len(), 2);
        assert_eq!(ips.get(5), (None, Some("fd00::5/64")));
        ips.retain(|vm| vm == 2);
        assert_eq!(ips.get(2), (Some("10.0.0.2/24"), Some("fd00::2/64")));
        assert_eq!(ips.get(5), (None, None));
        assert!(!ips.is_empty());
        ips.retain(|_| false);
        assert!(ips.is_empty());
    }

    #[test]
    fn many_vms_in_order_are_found() {
        let mut ips = PrimaryIps::default();
        for vm in 0..5000u64 {
            let v6 = (vm % 3 != 0).then(|| format!("fd00::{vm:x}/64"));
            let p = both(
                ip(&format!("10.{}.{}.1/24", vm / 256, vm % 256)),
                v6.as_deref().and_then(ip),
            );
            ips.push(vm * 2, &p).unwrap();
        }
        let ips = ips.finish();
        for vm in 0..5000u64 {
            let (v4, v6) = ips.get(vm * 2);
            assert_eq!(
                v4,
                Some(format!("10.{}.{}.1/24", vm / 256, vm % 256).as_str())
            );
            assert_eq!(
                v6.map(str::to_owned),
                (vm % 3 != 0).then(|| format!("fd00::{vm:x}/64"))
            );
            assert_eq!(ips.get(vm * 2 + 1), (None, None));
        }
    }
}
