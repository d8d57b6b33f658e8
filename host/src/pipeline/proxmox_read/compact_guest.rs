//! A read guest's record ([`Guest`] without its config, which is kept packed beside it) as the
//! Proxmox read keeps it until the rules: numbers as numbers, the cluster and node names shared
//! by the guests that have them, the guest's own texts (name, status, tags, pool) end to end in
//! one buffer. Why: a [`Guest`] is 232 bytes inline plus an allocation per text (~300 bytes a
//! guest, ~30 MB at 100k VMs held from the read to the reconcile, at the rerun's memory
//! peak); this is 96 bytes plus its texts.
//!
//! The rules get the [`Guest`] back field for field ([`CompactGuest::to_guest`]); the no-op
//! memo keys a borrowed view of the same fields ([`CompactGuest::key`]), so a key is the same
//! bytes as the [`Guest`]'s.
//!
//! Edges: the parsed [`Guest`] in; [`Guest`] and [`GuestKey`] out.

use std::collections::HashSet;
use std::sync::Arc;

use guest_default::model::{Guest, GuestKind};

use crate::rules::memo::GuestKey;

/// The cluster and node names of one endpoint's guests, each kept once.
#[derive(Debug, Default)]
pub struct GuestNames(HashSet<Arc<str>>);

impl GuestNames {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(kept) = self.0.get(name) {
            return kept.clone();
        }
        let kept: Arc<str> = Arc::from(name);
        self.0.insert(kept.clone());
        kept
    }
}

/// `flags` bits: which optional fields are present, and the two booleans.
const TEMPLATE: u8 = 1;
const CONFIG_READ: u8 = 1 << 1;
const HAS_NAME: u8 = 1 << 2;
const HAS_TAGS: u8 = 1 << 3;
const HAS_POOL: u8 = 1 << 4;
const HAS_MAXCPU: u8 = 1 << 5;
const HAS_MAXMEM: u8 = 1 << 6;
const HAS_MAXDISK: u8 = 1 << 7;

/// A [`Guest`] without its config, compact (see the module doc).
#[derive(Debug, Clone)]
pub struct CompactGuest {
    cluster: Arc<str>,
    node: Arc<str>,
    /// `name`, `status`, `tags`, `pool` end to end (an absent one is empty here).
    text: Box<str>,
    /// End offset of each of the four in `text`.
    ends: [u32; 4],
    maxcpu: f64,
    maxmem: u64,
    maxdisk: u64,
    vmid: u32,
    kind: GuestKind,
    flags: u8,
}

impl CompactGuest {
    /// The guest, its cluster and node names kept in `names`. Its `config` must have been
    /// taken (it is not kept). Hands the guest back when its texts pass 4 GiB (no resource
    /// row's do).
    pub fn new(guest: Guest, names: &mut GuestNames) -> Result<Self, Box<Guest>> {
        let own = [&guest.name, &guest.tags, &guest.pool]
            .iter()
            .map(|t| t.as_ref().map_or(0, String::len))
            .sum::<usize>()
            + guest.status.len();
        if u32::try_from(own).is_err() {
            return Err(Box::new(guest));
        }
        let Guest {
            cluster,
            vmid,
            kind,
            node,
            name,
            status,
            template,
            maxcpu,
            maxmem,
            maxdisk,
            tags,
            pool,
            config,
            config_read,
        } = guest;
        debug_assert!(config.is_empty(), "the config is kept packed, apart");
        let mut text = String::with_capacity(own);
        let mut ends = [0u32; 4];
        for (end, t) in ends.iter_mut().zip([
            name.as_deref(),
            Some(&status),
            tags.as_deref(),
            pool.as_deref(),
        ]) {
            text.push_str(t.unwrap_or_default());
            // Below 4 GiB: checked above.
            *end = text.len() as u32;
        }
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        Ok(CompactGuest {
            cluster: names.get(&cluster),
            node: names.get(&node),
            text: text.into_boxed_str(),
            ends,
            maxcpu: maxcpu.unwrap_or_default(),
            maxmem: maxmem.unwrap_or_default(),
            maxdisk: maxdisk.unwrap_or_default(),
            vmid,
            kind,
            flags: flag(template, TEMPLATE)
                | flag(config_read, CONFIG_READ)
                | flag(name.is_some(), HAS_NAME)
                | flag(tags.is_some(), HAS_TAGS)
                | flag(pool.is_some(), HAS_POOL)
                | flag(maxcpu.is_some(), HAS_MAXCPU)
                | flag(maxmem.is_some(), HAS_MAXMEM)
                | flag(maxdisk.is_some(), HAS_MAXDISK),
        })
    }

    fn has(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    /// The `i`-th of name, status, tags, pool.
    fn piece(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text
            .get(start..self.ends[i] as usize)
            .unwrap_or_default()
    }

    /// The Proxmox cluster name (or the standalone node's).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The VMID.
    pub fn vmid(&self) -> u32 {
        self.vmid
    }

    /// QEMU or LXC.
    pub fn kind(&self) -> GuestKind {
        self.kind
    }

    /// The node that owns the guest now.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `name` of the row (absent for `status: unknown` rows, and once taken).
    pub fn name(&self) -> Option<&str> {
        self.has(HAS_NAME).then(|| self.piece(0))
    }

    /// The fields as the memo keys them (an empty config: it is keyed packed, apart).
    pub fn key(&self) -> GuestKey<'_> {
        GuestKey {
            cluster: &self.cluster,
            vmid: self.vmid,
            kind: self.kind,
            node: &self.node,
            name: self.name(),
            status: self.piece(1),
            template: self.has(TEMPLATE),
            maxcpu: self.has(HAS_MAXCPU).then_some(self.maxcpu),
            maxmem: self.has(HAS_MAXMEM).then_some(self.maxmem),
            maxdisk: self.has(HAS_MAXDISK).then_some(self.maxdisk),
            tags: self.has(HAS_TAGS).then(|| self.piece(2)),
            pool: self.has(HAS_POOL).then(|| self.piece(3)),
            config: &[],
            config_read: self.has(CONFIG_READ),
        }
    }

    /// The [`Guest`] the rules take (its `config` empty).
    pub fn to_guest(&self) -> Guest {
        let k = self.key();
        Guest {
            cluster: k.cluster.to_owned(),
            vmid: k.vmid,
            kind: k.kind,
            node: k.node.to_owned(),
            name: k.name.map(str::to_owned),
            status: k.status.to_owned(),
            template: k.template,
            maxcpu: k.maxcpu,
            maxmem: k.maxmem,
            maxdisk: k.maxdisk,
            tags: k.tags.map(str::to_owned),
            pool: k.pool.map(str::to_owned),
            config: Vec::new(),
            config_read: k.config_read,
        }
    }

    /// [`CompactGuest::to_guest`], freeing the guest's own texts (they then read as absent or
    /// empty; the names shared with other guests stay).
    pub fn take_guest(&mut self) -> Guest {
        let guest = self.to_guest();
        self.text = Box::default();
        self.ends = [0; 4];
        self.flags &= !(HAS_NAME | HAS_TAGS | HAS_POOL);
        guest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(name: Option<&str>, status: &str, tags: Option<&str>, pool: Option<&str>) -> Guest {
        Guest {
            cluster: "pve-a".into(),
            vmid: 101,
            kind: GuestKind::Lxc,
            node: "node-ü1".into(),
            name: name.map(Into::into),
            status: status.into(),
            template: false,
            maxcpu: Some(1.5),
            maxmem: None,
            maxdisk: Some(0),
            tags: tags.map(Into::into),
            pool: pool.map(Into::into),
            config: Vec::new(),
            config_read: true,
        }
    }

    #[test]
    fn guests_come_back_field_for_field() {
        let mut names = GuestNames::default();
        let cases = [
            guest(Some("web-1"), "running", Some("prod;web"), Some("pool-a")),
            guest(None, "unknown", None, None),
            // Empty texts stay present, apart from absent ones.
            guest(Some(""), "", Some(""), Some("")),
            guest(Some("ünïcode ✓"), "stopped", None, Some("プール")),
            Guest {
                template: true,
                config_read: false,
                maxcpu: None,
                maxmem: Some(u64::MAX),
                maxdisk: None,
                kind: GuestKind::Qemu,
                ..guest(Some("t"), "stopped", Some("a"), None)
            },
            Guest::default(),
        ];
        for g in cases {
            let compact = CompactGuest::new(g.clone(), &mut names).unwrap();
            assert_eq!(compact.to_guest(), g);
            assert_eq!(GuestKey::from(&g), compact.key());
            assert_eq!(
                (
                    compact.cluster(),
                    compact.vmid(),
                    compact.kind(),
                    compact.node()
                ),
                (g.cluster.as_str(), g.vmid, g.kind, g.node.as_str())
            );
            assert_eq!(compact.name(), g.name.as_deref());
        }
    }

    #[test]
    fn names_are_shared_and_take_frees_the_texts() {
        let mut names = GuestNames::default();
        let a = CompactGuest::new(guest(Some("a"), "running", None, None), &mut names).unwrap();
        let mut b = CompactGuest::new(guest(Some("b"), "running", None, None), &mut names).unwrap();
        assert!(Arc::ptr_eq(&a.cluster, &b.cluster) && Arc::ptr_eq(&a.node, &b.node));
        let taken = b.take_guest();
        assert_eq!(taken, guest(Some("b"), "running", None, None));
        assert!(b.text.is_empty());
        assert_eq!((b.name(), b.key().status, b.vmid()), (None, "", 101));
    }
}
