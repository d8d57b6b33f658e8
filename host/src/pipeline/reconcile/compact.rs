//! A NetBox VM record held compactly for the snapshot's lifetime.
//!
//! At 100k VMs the snapshot's records were ~1.2 KB each as [`NetboxVm`]s (every text its own
//! allocation), resident with everything else at the end of the snapshot phase. Here a record
//! keeps its numbers as numbers, its own texts (name, description, comments, serial,
//! `last_updated`, custom field values) end to end in one buffer, and the values VMs repeat
//! (status, cluster, site, device, role, type, platform, tenant, `start_on_boot`, tag slugs,
//! custom field names) in one [`Shared`] per distinct combination, interned per snapshot. The
//! [`NetboxVm`] the rules get is made again, one batch at a time ([`CompactVm::to_vm`]), equal
//! to the one read.

use std::collections::HashSet;
use std::sync::Arc;

use guest_default::model::{JsonText, NetboxVm};

/// The values many VMs of a snapshot have in common, as read.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct Shared {
    status: String,
    cluster: Option<String>,
    site: Option<String>,
    device: Option<String>,
    role: Option<String>,
    vm_type: Option<String>,
    platform: Option<String>,
    tenant: Option<String>,
    start_on_boot: Option<String>,
    tags: Vec<String>,
    /// The custom fields' names, in the record's order (their values are the record's own).
    cf_names: Vec<String>,
    /// Whether `last_updated` is set (its text is then the record's fifth).
    has_last_updated: bool,
}

/// The [`Shared`] values of one snapshot, each kept once.
#[derive(Debug, Default)]
pub struct SharedValues(HashSet<Arc<Shared>>);

impl SharedValues {
    fn intern(&mut self, shared: Shared) -> Arc<Shared> {
        if let Some(found) = self.0.get(&shared) {
            return Arc::clone(found);
        }
        let shared = Arc::new(shared);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// A [`CompactVm`]'s parts as it keeps them: two records with the same parts are the same
/// record.
#[derive(Debug, PartialEq)]
pub struct Parts<'a> {
    pub id: u64,
    pub vcpus: Option<f64>,
    pub memory: Option<u64>,
    pub disk: Option<u64>,
    pub status: &'a str,
    /// Cluster, site, device, role, type, platform, tenant, `start_on_boot`.
    pub keys: [Option<&'a str>; 8],
    pub tags: &'a [String],
    pub cf_names: &'a [String],
    pub has_last_updated: bool,
    /// The record's own texts end to end, and where each ends.
    pub text: &'a str,
    pub ends: &'a [u32],
}

/// A record whose own texts do not fit the 4 GiB a compact record can index.
#[derive(Debug, thiserror::Error)]
#[error("NetBox VM #{id}: its texts pass 4 GiB")]
pub struct TooLarge {
    pub id: u64,
}

/// The texts every record has, before `last_updated` and the custom field values.
const NAME: usize = 0;
const DESCRIPTION: usize = 1;
const COMMENTS: usize = 2;
const SERIAL: usize = 3;
const FIXED_TEXTS: usize = 4;

/// One NetBox VM, compact (see the module's doc).
#[derive(Debug, Clone)]
pub struct CompactVm {
    id: u64,
    vcpus: Option<f64>,
    memory: Option<u64>,
    disk: Option<u64>,
    shared: Arc<Shared>,
    /// Name, description, comments, serial, `last_updated` when set, then each custom field's
    /// JSON text, end to end.
    text: Box<str>,
    /// Where each text of `text` ends.
    ends: Box<[u32]>,
}

impl CompactVm {
    /// `vm` compacted, its repeated values shared through `shared`.
    pub fn new(vm: NetboxVm, shared: &mut SharedValues) -> Result<Self, TooLarge> {
        let NetboxVm {
            id,
            name,
            status,
            cluster,
            site,
            device,
            role,
            vm_type,
            platform,
            tenant,
            vcpus,
            memory,
            disk,
            description,
            comments,
            serial,
            start_on_boot,
            tags,
            custom_fields,
            last_updated,
        } = vm;
        let (cf_names, cf_values): (Vec<String>, Vec<JsonText>) = custom_fields.into_iter().unzip();
        let texts = [name.as_str(), &description, &comments, &serial]
            .into_iter()
            .chain(last_updated.as_deref())
            .chain(cf_values.iter().map(JsonText::as_str));
        let mut text = String::with_capacity(
            [&name, &description, &comments, &serial]
                .iter()
                .map(|s| s.len())
                .sum::<usize>()
                + last_updated.as_ref().map_or(0, String::len)
                + cf_values.iter().map(|v| v.0.len()).sum::<usize>(),
        );
        let mut ends = Vec::with_capacity(FIXED_TEXTS + 1 + cf_values.len());
        for t in texts {
            text.push_str(t);
            ends.push(u32::try_from(text.len()).map_err(|_| TooLarge { id })?);
        }
        let shared = shared.intern(Shared {
            status,
            cluster,
            site,
            device,
            role,
            vm_type,
            platform,
            tenant,
            start_on_boot,
            tags,
            cf_names,
            has_last_updated: last_updated.is_some(),
        });
        Ok(CompactVm {
            id,
            vcpus,
            memory,
            disk,
            shared,
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        })
    }

    /// The `i`th text.
    fn text(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// Index of the first custom field value's text.
    fn first_cf(&self) -> usize {
        FIXED_TEXTS + usize::from(self.shared.has_last_updated)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> &str {
        self.text(NAME)
    }

    pub fn status(&self) -> &str {
        &self.shared.status
    }

    /// The NetBox cluster's name.
    pub fn cluster(&self) -> Option<&str> {
        self.shared.cluster.as_deref()
    }

    /// Tag slugs.
    pub fn tags(&self) -> &[String] {
        &self.shared.tags
    }

    pub fn last_updated(&self) -> Option<&str> {
        self.shared.has_last_updated.then(|| self.text(FIXED_TEXTS))
    }

    /// The custom field `name`'s JSON text.
    pub fn custom_field(&self, name: &str) -> Option<&str> {
        let at = self.shared.cf_names.iter().position(|n| n == name)?;
        Some(self.text(self.first_cf() + at))
    }

    /// Every part of the record, borrowed (the memo keys the record by them without making
    /// the [`NetboxVm`]). Destructured whole, so a new part cannot be left out.
    pub fn parts(&self) -> Parts<'_> {
        let CompactVm {
            id,
            vcpus,
            memory,
            disk,
            shared,
            text,
            ends,
        } = self;
        let Shared {
            status,
            cluster,
            site,
            device,
            role,
            vm_type,
            platform,
            tenant,
            start_on_boot,
            tags,
            cf_names,
            has_last_updated,
        } = &**shared;
        Parts {
            id: *id,
            vcpus: *vcpus,
            memory: *memory,
            disk: *disk,
            status,
            keys: [
                cluster,
                site,
                device,
                role,
                vm_type,
                platform,
                tenant,
                start_on_boot,
            ]
            .map(|k| k.as_deref()),
            tags,
            cf_names,
            has_last_updated: *has_last_updated,
            text,
            ends,
        }
    }

    /// The record as read.
    pub fn to_vm(&self) -> NetboxVm {
        let s = &*self.shared;
        let first_cf = self.first_cf();
        NetboxVm {
            id: self.id,
            name: self.text(NAME).to_owned(),
            status: s.status.clone(),
            cluster: s.cluster.clone(),
            site: s.site.clone(),
            device: s.device.clone(),
            role: s.role.clone(),
            vm_type: s.vm_type.clone(),
            platform: s.platform.clone(),
            tenant: s.tenant.clone(),
            vcpus: self.vcpus,
            memory: self.memory,
            disk: self.disk,
            description: self.text(DESCRIPTION).to_owned(),
            comments: self.text(COMMENTS).to_owned(),
            serial: self.text(SERIAL).to_owned(),
            start_on_boot: s.start_on_boot.clone(),
            tags: s.tags.clone(),
            custom_fields: s
                .cf_names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), JsonText(self.text(first_cf + i).to_owned())))
                .collect(),
            last_updated: self.last_updated().map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varied() -> Vec<NetboxVm> {
        let full = NetboxVm {
            id: 42,
            name: "wéb-01 ✓".into(),
            status: "active".into(),
            cluster: Some("pve-a".into()),
            site: Some("dc1".into()),
            device: Some("node-1".into()),
            role: Some("server".into()),
            vm_type: Some("standard".into()),
            platform: Some("debian-12".into()),
            tenant: Some("ops".into()),
            vcpus: Some(2.5),
            memory: Some(4096),
            disk: Some(0),
            description: "línea\n\"quoted\"".into(),
            comments: "日本語".into(),
            serial: "S-1".into(),
            start_on_boot: Some("on".into()),
            tags: vec!["a".into(), "b-β".into()],
            custom_fields: vec![
                ("proxmox_vm_id".into(), JsonText("100".into())),
                ("proxmox_vm_type".into(), JsonText("\"qemu\"".into())),
                ("unset".into(), JsonText::null()),
                ("flag".into(), JsonText("true".into())),
                ("ratio".into(), JsonText("-1.5e3".into())),
                ("list".into(), JsonText("[1,\"x\",null]".into())),
                ("object".into(), JsonText("{\"k\":{\"n\":[]}}".into())),
                ("empty_text".into(), JsonText("\"\"".into())),
                ("unicode".into(), JsonText("\"ü\\u00e9\"".into())),
                ("blank".into(), JsonText(String::new())),
            ],
            last_updated: Some("2026-12-06T23:12:15.123456Z".into()),
        };
        let empty_not_absent = NetboxVm {
            id: 7,
            cluster: Some(String::new()),
            site: Some(String::new()),
            start_on_boot: Some(String::new()),
            tags: vec![String::new()],
            custom_fields: vec![(String::new(), JsonText(String::new()))],
            last_updated: Some(String::new()),
            vcpus: Some(0.0),
            memory: Some(0),
            ..NetboxVm::default()
        };
        vec![
            full.clone(),
            NetboxVm::default(),
            empty_not_absent,
            NetboxVm {
                id: 43,
                name: "other".into(),
                last_updated: None,
                custom_fields: Vec::new(),
                ..full.clone()
            },
            NetboxVm {
                id: 44,
                custom_fields: full.custom_fields.iter().rev().cloned().collect(),
                ..full
            },
        ]
    }

    #[test]
    fn a_record_comes_back_as_read() {
        let mut shared = SharedValues::default();
        for vm in varied() {
            let compact = CompactVm::new(vm.clone(), &mut shared).unwrap();
            assert_eq!(compact.to_vm(), vm);
            assert_eq!(compact.id(), vm.id);
            assert_eq!(compact.name(), vm.name);
            assert_eq!(compact.status(), vm.status);
            assert_eq!(compact.cluster(), vm.cluster.as_deref());
            assert_eq!(compact.tags(), vm.tags);
            assert_eq!(compact.last_updated(), vm.last_updated.as_deref());
            for (name, value) in &vm.custom_fields {
                assert_eq!(compact.custom_field(name), Some(value.as_str()), "{name}");
            }
            assert_eq!(compact.custom_field("not-there"), None);
        }
    }

    #[test]
    fn repeated_values_are_kept_once() {
        let mut shared = SharedValues::default();
        let vms = varied();
        let a = CompactVm::new(vms[0].clone(), &mut shared).unwrap();
        let b = CompactVm::new(
            NetboxVm {
                id: 99,
                name: "another".into(),
                ..vms[0].clone()
            },
            &mut shared,
        )
        .unwrap();
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        // Absent and empty differ, and so does the order of the custom fields.
        for vm in &vms[1..] {
            let c = CompactVm::new(vm.clone(), &mut shared).unwrap();
            assert!(!Arc::ptr_eq(&a.shared, &c.shared), "#{}", vm.id);
        }
        assert_eq!(shared.0.len(), vms.len());
        assert_eq!(b.name(), "another");
        assert_eq!(a.name(), vms[0].name);
    }

    #[test]
    fn records_with_the_same_parts_are_the_same() {
        let mut shared = SharedValues::default();
        let vms = varied();
        let compact: Vec<CompactVm> = vms
            .iter()
            .map(|vm| CompactVm::new(vm.clone(), &mut shared).unwrap())
            .collect();
        for (i, a) in compact.iter().enumerate() {
            for (j, b) in compact.iter().enumerate() {
                assert_eq!(a.parts() == b.parts(), vms[i] == vms[j], "{i} {j}");
            }
        }
        // Texts moved from one field to the next are told apart by their ends.
        let moved = |name: &str, description: &str| {
            let vm = NetboxVm {
                name: name.into(),
                description: description.into(),
                ..NetboxVm::default()
            };
            CompactVm::new(vm, &mut SharedValues::default()).unwrap()
        };
        assert_ne!(moved("ab", "c").parts(), moved("a", "bc").parts());
    }

    #[test]
    fn the_buffer_holds_the_texts_exactly() {
        let vm = &varied()[0];
        let compact = CompactVm::new(vm.clone(), &mut SharedValues::default()).unwrap();
        let own: usize = [&vm.name, &vm.description, &vm.comments, &vm.serial]
            .iter()
            .map(|s| s.len())
            .sum::<usize>()
            + vm.last_updated.as_ref().map_or(0, String::len)
            + vm.custom_fields
                .iter()
                .map(|(_, v)| v.0.len())
                .sum::<usize>();
        assert_eq!(compact.text.len(), own);
        assert_eq!(compact.ends.len(), FIXED_TEXTS + 1 + vm.custom_fields.len());
    }
}
