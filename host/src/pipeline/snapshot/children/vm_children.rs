//! One VM's children as the rendering reads them, borrowed from the snapshot: what the no-op
//! memo keys, and what is rendered for the module when the memo misses.
//!
//! Why: the memo keyed the rendered JSON text, so a memoized rerun rendered every VM's
//! children (serializing ~10 rows, an allocation) only to hash and drop the text: most of its
//! rules step with children. The text is a pure function of what a [`VmChildren`] holds (for
//! one host version, which is in every key), so keying that keys the same input; a text is
//! rendered only for a VM the memo misses.
//!
//! The key bytes hold every field of every row but one (destructured whole: a new field cannot
//! be left out unnoticed), texts, tag lists and choices by content, never by their place in the
//! kind's pool (that depends on the order NetBox's pages came in), so the same rows give the
//! same bytes from one run to the next. The one left out is a row's `last_updated`: the text
//! never holds it, so the module never sees it (keying it could only cost hits); its packed
//! bytes are skipped over, not decoded ([`Rows::map_unstamped`]).
//!
//! Edges: the snapshot's kept rows in; key bytes and the rendered text out.

use super::{
    ChildrenSnapshot, Disk, Interface, Ip, KindsRead, Mac, Pool, Rows, VmRows, render_children,
};
use crate::pipeline::snapshot::packed_rows::PackedRow;
use crate::pipeline::snapshot::sorted_near::Cursor;

/// One VM's children: its rows, the kinds read and its primary IPs' addresses.
#[derive(Debug, Clone, Copy)]
pub struct VmChildren<'a> {
    rows: VmRows<'a>,
    read: KindsRead,
    primaries: (Option<&'a str>, Option<&'a str>),
}

/// Where one thread's last lookups of a VM's rows and primary IPs ended: a memoized rerun asks
/// for the VMs mostly in id order (see [`crate::pipeline::snapshot::sorted_near`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct VmCursor {
    rows: Cursor,
    primaries: Cursor,
}

impl ChildrenSnapshot {
    /// The VM's children as [`ChildrenSnapshot::children_json`] renders them, or `None` when no
    /// kind was read (the same cases as there).
    pub fn vm_children(&self, vm_id: u64) -> Option<VmChildren<'_>> {
        self.vm_children_from(vm_id, &mut VmCursor::default())
    }

    /// [`ChildrenSnapshot::vm_children`], searching from where `at` last ended.
    pub fn vm_children_from(&self, vm_id: u64, at: &mut VmCursor) -> Option<VmChildren<'_>> {
        let r = self.read;
        if !(r.interfaces || r.mac_addresses || r.ip_addresses || r.virtual_disks) {
            return None;
        }
        Some(VmChildren {
            rows: self.vm_rows_from(vm_id, &mut at.rows).unwrap_or_default(),
            read: r,
            primaries: self.primaries.get_from(vm_id, &mut at.primaries),
        })
    }
}

impl<'a> VmChildren<'a> {
    /// The VM's packed rows of each kind, as they lie in the snapshot (for a prefetch: what
    /// [`VmChildren::key_bytes`] reads first).
    pub fn packed(&self) -> [&'a [u8]; 4] {
        let VmRows {
            interfaces,
            macs,
            ips,
            disks,
        } = self.rows;
        [interfaces.bytes, macs.bytes, ips.bytes, disks.bytes]
    }

    /// The JSON text of WIT `netbox-vm.children`.
    pub fn json(&self) -> String {
        render_children(&self.rows, self.read, self.primaries)
    }

    /// Appends every byte the text is made of, unambiguously (lengths, presence and each row's
    /// start are marked): equal bytes give equal texts. Not `last_updated`: the text has none.
    pub fn key_bytes(&self, out: &mut Vec<u8>) {
        let KindsRead {
            interfaces,
            mac_addresses,
            ip_addresses,
            virtual_disks,
            vlans,
        } = self.read;
        out.extend(
            [
                interfaces,
                mac_addresses,
                ip_addresses,
                virtual_disks,
                vlans,
            ]
            .map(u8::from),
        );
        let mut k = KeyWriter(out);
        let VmRows {
            interfaces,
            macs,
            ips,
            disks,
        } = self.rows;
        k.rows(interfaces, |k, r: Interface, p| {
            let Interface {
                id,
                // Read back as 0: the VM's range says it, and the VM is keyed apart.
                vm: _,
                mtu,
                untagged_vid,
                name,
                description,
                mac,
                // Not in the text (see the module's doc).
                last_updated: _,
                tags,
                mode,
                enabled,
            } = r;
            k.u64(id);
            k.opt_u64(mtu);
            k.opt_u64(untagged_vid);
            for s in [name, description, mac] {
                k.text(p.text_bytes(s));
            }
            k.tags(p.tags(tags));
            k.choice(p.choice(mode));
            k.0.push(match enabled {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            });
        });
        k.rows(macs, |k, r: Mac, p| {
            let Mac {
                id,
                vm: _,
                assigned,
                mac,
                // Not in the text (see the module's doc).
                last_updated: _,
                tags,
            } = r;
            k.u64(id);
            k.opt_u64(assigned.map(|a| a.get()));
            k.text(p.text_bytes(mac));
            k.tags(p.tags(tags));
        });
        k.rows(ips, |k, r: Ip, p| {
            let Ip {
                id,
                vm: _,
                assigned,
                address,
                vrf,
                // Not in the text (see the module's doc).
                last_updated: _,
                tags,
                status,
            } = r;
            k.u64(id);
            k.opt_u64(assigned.map(|a| a.get()));
            k.text(p.text_bytes(address));
            k.text(p.text_bytes(vrf));
            k.tags(p.tags(tags));
            k.choice(p.choice(status));
        });
        k.rows(disks, |k, r: Disk, p| {
            let Disk {
                id,
                vm: _,
                size,
                name,
                description,
                // Not in the text (see the module's doc).
                last_updated: _,
                tags,
            } = r;
            k.u64(id);
            k.opt_u64(size);
            k.text(p.text_bytes(name));
            k.text(p.text_bytes(description));
            k.tags(p.tags(tags));
        });
        let (ip4, ip6) = self.primaries;
        k.text(ip4.map(str::as_bytes));
        k.text(ip6.map(str::as_bytes));
    }
}

/// Appends key bytes: numbers little-endian, options and texts with a tag and a length.
struct KeyWriter<'o>(&'o mut Vec<u8>);

impl KeyWriter<'_> {
    /// Each row of one kind, its start marked with 1, the kind's end with 0.
    fn rows<'a, R: PackedRow + 'a>(
        &mut self,
        rows: Rows<'a, R>,
        mut row: impl FnMut(&mut Self, R, &'a Pool),
    ) {
        for (r, pool) in rows.map_unstamped(|r, p| (r, p)) {
            self.0.push(1);
            row(self, r, pool);
        }
        self.0.push(0);
    }

    /// Eight bytes, not a varint: a varint's loop cost more than the bytes it saved in the
    /// hash (perf of a memoized 30k sync: the key's writing +~70%, XXH3 -~10%).
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.u64(v);
            }
        }
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// A text's bytes after their length.
    fn bytes(&mut self, s: &[u8]) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
    }

    fn text(&mut self, s: Option<&[u8]>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.bytes(s);
            }
        }
    }

    fn tags(&mut self, tags: &[String]) {
        self.u64(tags.len() as u64);
        for t in tags {
            self.str(t);
        }
    }

    /// A choice's value: a text as itself (the usual case, no serializing), anything else as
    /// its JSON text.
    fn choice(&mut self, v: Option<&serde_json::Value>) {
        match v {
            None => self.0.push(0),
            Some(serde_json::Value::String(s)) => {
                self.0.push(1);
                self.str(s);
            }
            Some(other) => {
                self.0.push(2);
                self.str(&other.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests;
