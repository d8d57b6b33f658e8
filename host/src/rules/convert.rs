//! Conversions between the plain-Rust model (`guest_default::model`) and the WIT bindings of each
//! supported version: `v4` for WIT 0.4 (the latest: its batch and its field changes; its other
//! types are 0.3's), `v3` for 0.3, `v2` for 0.2 and 0.1 (whose types 0.2 carries unchanged). The
//! shared part is one body (`shared_conversions!`) over each version's types, so no logic is
//! copied per version; what 0.3 adds (network source, children, child changes) is in `v3` only.
//!
//! Inputs and outputs are moved field by field, never cloned, except the context, which the
//! facade borrows (one clone per batch, not per VM). Model-only data (`NetboxVm::last_updated`)
//! stays on the host side.

/// `Field<T>` <-> the WIT variant of that field kind (`keep | set(T) | clear`).
macro_rules! field_conv {
    ($to:ident, $from:ident, $wit:ident, $t:ty) => {
        fn $to(f: m::Field<$t>) -> w::$wit {
            match f {
                m::Field::Keep => w::$wit::Keep,
                m::Field::Set(v) => w::$wit::Set(v),
                m::Field::Clear => w::$wit::Clear,
            }
        }
        fn $from(f: w::$wit) -> m::Field<$t> {
            match f {
                w::$wit::Keep => m::Field::Keep,
                w::$wit::Set(v) => m::Field::Set(v),
                w::$wit::Clear => m::Field::Clear,
            }
        }
    };
}

/// The conversions every WIT version shares, written once over the version's types `w`. The
/// records 0.3 widened get the extra fields' values (`keep`, not asked, not read) from the caller.
macro_rules! shared_conversions {
    (
        guest: { $($guest_extra:tt)* },
        netbox: { $($netbox_extra:tt)* },
        vm: { $($vm_extra:tt)* } $(,)?
    ) => {

/// The guest with its config already as the WIT's JSON text (`g.config` is not read).
pub(crate) fn guest_with_config_to(g: m::Guest, config: String) -> w::PveGuest {
    w::PveGuest {
        cluster: g.cluster,
        vmid: g.vmid,
        kind: match g.kind {
            m::GuestKind::Qemu => w::GuestKind::Qemu,
            m::GuestKind::Lxc => w::GuestKind::Lxc,
        },
        node: g.node,
        name: g.name,
        status: g.status,
        template: g.template,
        maxcpu: g.maxcpu,
        maxmem: g.maxmem,
        maxdisk: g.maxdisk,
        tags: g.tags,
        pool: g.pool,
        config,
        config_read: g.config_read,
        $($guest_extra)*
    }
}

pub(crate) fn guest_to(g: m::Guest) -> w::PveGuest {
    let config = m::config_to_json(&g.config);
    guest_with_config_to(g, config)
}

field_conv!(text_to, text_from, TextField, String);
field_conv!(ref_to, ref_from, RefField, String);
field_conv!(count_to, count_from, CountField, u64);
field_conv!(decimal_to, decimal_from, DecimalField, f64);
field_conv!(tags_to, tags_from, TagsField, Vec<String>);

fn json_to(f: m::Field<m::JsonText>) -> w::JsonField {
    match f {
        m::Field::Keep => w::JsonField::Keep,
        m::Field::Set(v) => w::JsonField::Set(v.0),
        m::Field::Clear => w::JsonField::Clear,
    }
}

fn json_from(f: w::JsonField) -> m::Field<m::JsonText> {
    match f {
        w::JsonField::Keep => m::Field::Keep,
        w::JsonField::Set(v) => m::Field::Set(m::JsonText(v)),
        w::JsonField::Clear => m::Field::Clear,
    }
}

fn ownership_to(o: m::Ownership) -> w::Ownership {
    match o {
        m::Ownership::Owned => w::Ownership::Owned,
        m::Ownership::Merge => w::Ownership::Merge,
        m::Ownership::Seed => w::Ownership::Seed,
        m::Ownership::Ignore => w::Ownership::Ignore,
    }
}

pub(crate) fn policy_from(p: w::FieldPolicy) -> m::FieldPolicy {
    m::FieldPolicy {
        field: p.field,
        ownership: match p.ownership {
            w::Ownership::Owned => m::Ownership::Owned,
            w::Ownership::Merge => m::Ownership::Merge,
            w::Ownership::Seed => m::Ownership::Seed,
            w::Ownership::Ignore => m::Ownership::Ignore,
        },
    }
}

/// The context, copied: the facade borrows it so one context serves many batches.
pub(crate) fn context_to(c: &m::Context) -> w::Context {
    w::Context {
        netbox_version: c.netbox_version.clone(),
        known: c
            .known
            .iter()
            .map(|k| w::KnownObject {
                kind: k.kind.clone(),
                key: k.key.clone(),
                id: k.id,
                name: k.name.clone(),
            })
            .collect(),
        policies: c
            .policies
            .iter()
            .map(|p| w::FieldPolicy {
                field: p.field.clone(),
                ownership: ownership_to(p.ownership),
            })
            .collect(),
        settings: c
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
    }
}

pub(crate) fn netbox_vm_to(r: m::NetboxVm) -> w::NetboxVm {
    w::NetboxVm {
        id: r.id,
        name: r.name,
        status: r.status,
        cluster: r.cluster,
        site: r.site,
        device: r.device,
        role: r.role,
        vm_type: r.vm_type,
        platform: r.platform,
        tenant: r.tenant,
        vcpus: r.vcpus,
        memory: r.memory,
        disk: r.disk,
        description: r.description,
        comments: r.comments,
        serial: r.serial,
        start_on_boot: r.start_on_boot,
        tags: r.tags,
        custom_fields: r.custom_fields.into_iter().map(|(k, v)| (k, v.0)).collect(),
        $($netbox_extra)*
    }
}

pub(crate) fn vm_to(v: m::Vm) -> w::Vm {
    w::Vm {
        name: text_to(v.name),
        status: text_to(v.status),
        site: ref_to(v.site),
        device: ref_to(v.device),
        role: ref_to(v.role),
        vm_type: ref_to(v.vm_type),
        platform: ref_to(v.platform),
        tenant: ref_to(v.tenant),
        vcpus: decimal_to(v.vcpus),
        memory: count_to(v.memory),
        disk: count_to(v.disk),
        description: text_to(v.description),
        comments: text_to(v.comments),
        serial: text_to(v.serial),
        start_on_boot: text_to(v.start_on_boot),
        tags: tags_to(v.tags),
        custom_fields: v
            .custom_fields
            .into_iter()
            .map(|(k, f)| (k, json_to(f)))
            .collect(),
        $($vm_extra)*
    }
}

pub(crate) fn vm_from(v: w::Vm) -> m::Vm {
    m::Vm {
        name: text_from(v.name),
        status: text_from(v.status),
        site: ref_from(v.site),
        device: ref_from(v.device),
        role: ref_from(v.role),
        vm_type: ref_from(v.vm_type),
        platform: ref_from(v.platform),
        tenant: ref_from(v.tenant),
        vcpus: decimal_from(v.vcpus),
        memory: count_from(v.memory),
        disk: count_from(v.disk),
        description: text_from(v.description),
        comments: text_from(v.comments),
        serial: text_from(v.serial),
        start_on_boot: text_from(v.start_on_boot),
        tags: tags_from(v.tags),
        custom_fields: v
            .custom_fields
            .into_iter()
            .map(|(k, f)| (k, json_from(f)))
            .collect(),
    }
}

pub(crate) fn diff_input_to(d: m::DiffInput) -> w::DiffInput {
    w::DiffInput {
        desired: vm_to(d.desired),
        current: d.current.map(vm_to),
    }
}

pub(crate) fn rule_error_from(e: w::RuleError) -> m::RuleError {
    m::RuleError {
        code: e.code,
        message: e.message,
    }
}

pub(crate) fn object_spec_from(n: w::ObjectSpec) -> m::ObjectSpec {
    m::ObjectSpec {
        kind: n.kind,
        key: n.key,
        name: n.name,
        attrs: m::JsonText(n.attrs),
    }
}

pub(crate) fn desired_from(d: w::Desired) -> m::Desired {
    match d {
        w::Desired::Vm(d) => m::Desired::Vm(m::DesiredVm {
            vm: vm_from(d.vm),
            needs: d.needs.into_iter().map(object_spec_from).collect(),
        }),
        w::Desired::Skip(reason) => m::Desired::Skip(reason),
    }
}

pub(crate) fn change_from(c: w::FieldChange) -> m::FieldChange {
    m::FieldChange {
        field: c.field,
        old: m::JsonText(c.old),
        new: m::JsonText(c.new),
    }
}

pub(crate) fn info_from(i: w::ModuleInfo) -> m::ModuleInfo {
    m::ModuleInfo {
        name: i.name,
        version: i.version,
        wit_version: i.wit_version,
    }
}

    };
}

/// `network_to`, the guest's network view in the version's types (0.3 and 0.4 share it).
macro_rules! network_conv {
    () => {
        pub(crate) fn network_to(n: c::NetworkSource) -> w::NetworkSource {
            use c::UnknownReason as R;
            use w::NetworkUnknownReason as W;
            match n {
                c::NetworkSource::Agent(j) => w::NetworkSource::Agent(j.0),
                c::NetworkSource::LxcInterfaces(j) => w::NetworkSource::LxcInterfaces(j.0),
                c::NetworkSource::Unknown(u) => w::NetworkSource::Unknown(w::NetworkUnknown {
                    reason: match u.reason {
                        R::AgentOff => W::AgentOff,
                        R::NotRunning => W::NotRunning,
                        R::AgentNotRunning => W::AgentNotRunning,
                        R::NoPermission => W::NoPermission,
                        R::TimedOut => W::TimedOut,
                        R::NotAsked => W::NotAsked,
                        R::OtherError => W::OtherError,
                    },
                    detail: u.detail,
                }),
            }
        }
    };
}

/// WIT 0.2 (and 0.1): no children cross; a 0.2 answer's child changes are empty.
pub(crate) mod v2 {
    use guest_default::model as m;

    use super::super::v0_2_0::types as w;

    shared_conversions!(guest: {}, netbox: {}, vm: {});

    pub(crate) fn reconcile_input_to(i: m::JsonReconcileInput) -> w::ReconcileInput {
        w::ReconcileInput {
            guest: guest_with_config_to(i.guest, i.config),
            current: i.current.map(netbox_vm_to),
        }
    }

    pub(crate) fn reconciled_from(r: w::Reconciled) -> m::Reconciled {
        match r {
            w::Reconciled::Vm(v) => m::Reconciled::Vm(m::ReconciledVm {
                name: v.name,
                needs: v.needs.into_iter().map(object_spec_from).collect(),
                changes: v.changes.into_iter().map(change_from).collect(),
                children: Vec::new(),
            }),
            w::Reconciled::Skip(reason) => m::Reconciled::Skip(reason),
        }
    }
}

/// WIT 0.3: the network source and the children JSON in, child changes out.
pub(crate) mod v3 {
    use guest_default::children as c;
    use guest_default::model as m;

    use super::super::latest::types as w;

    shared_conversions!(
        guest: { network: network_to(c::NetworkSource::default()), },
        netbox: { children: "{}".to_owned(), children_read: false, },
        vm: { children: keep_children(), },
    );

    /// Every child collection `keep`: what a model `Vm` (which has no children) says.
    pub(crate) fn keep_children() -> w::VmChildren {
        w::VmChildren {
            interfaces: w::InterfacesField::Keep,
            mac_addresses: w::MacAddressesField::Keep,
            ip_addresses: w::IpAddressesField::Keep,
            virtual_disks: w::VirtualDisksField::Keep,
            primary_ip4: w::TextField::Keep,
            primary_ip6: w::TextField::Keep,
        }
    }

    network_conv!();

    /// The guest with its network view.
    pub(crate) fn guest_network_to(g: m::Guest, network: c::NetworkSource) -> w::PveGuest {
        let mut out = guest_to(g);
        out.network = network_to(network);
        out
    }

    /// The NetBox record with its children JSON (`None`: not read).
    pub(crate) fn netbox_children_to(r: m::NetboxVm, children: Option<m::JsonText>) -> w::NetboxVm {
        let mut out = netbox_vm_to(r);
        if let Some(text) = children {
            out.children = text.0;
            out.children_read = true;
        }
        out
    }

    pub(crate) fn reconcile_input_to(i: m::JsonReconcileInput) -> w::ReconcileInput {
        let mut guest = guest_with_config_to(i.guest, i.config);
        guest.network = network_to(i.network);
        w::ReconcileInput {
            guest,
            current: i.current.map(|r| netbox_children_to(r, i.children)),
        }
    }

    pub(crate) fn reconciled_from(r: w::Reconciled) -> m::Reconciled {
        match r {
            w::Reconciled::Vm(v) => m::Reconciled::Vm(m::ReconciledVm {
                name: v.name,
                needs: v.needs.into_iter().map(object_spec_from).collect(),
                changes: v.changes.into_iter().map(change_from).collect(),
                children: v.children.into_iter().map(child_change_from).collect(),
            }),
            w::Reconciled::Skip(reason) => m::Reconciled::Skip(reason),
        }
    }

    pub(crate) fn child_change_from(ch: w::ChildChange) -> c::ChildChange {
        c::ChildChange {
            kind: match ch.kind {
                w::ChildKind::Interface => c::ChildKind::Interface,
                w::ChildKind::MacAddress => c::ChildKind::MacAddress,
                w::ChildKind::IpAddress => c::ChildKind::IpAddress,
                w::ChildKind::VirtualDisk => c::ChildKind::VirtualDisk,
            },
            key: ch.key,
            parent: ch.parent,
            op: match ch.op {
                w::ChildOp::Create => c::ChildOp::Create,
                w::ChildOp::Update(id) => c::ChildOp::Update(id),
                w::ChildOp::Delete(id) => c::ChildOp::Delete(id),
            },
            changes: ch.changes.into_iter().map(change_from).collect(),
        }
    }

    fn bool_from(f: w::BoolField) -> m::Field<bool> {
        match f {
            w::BoolField::Keep => m::Field::Keep,
            w::BoolField::Set(v) => m::Field::Set(v),
            w::BoolField::Clear => m::Field::Clear,
        }
    }

    /// A collection field with each item converted.
    macro_rules! list_from {
        ($f:expr, $wit:ident, $item:expr) => {
            match $f {
                w::$wit::Keep => m::Field::Keep,
                w::$wit::Set(v) => m::Field::Set(v.into_iter().map($item).collect()),
                w::$wit::Clear => m::Field::Clear,
            }
        };
    }

    fn identity_from(i: w::ChildIdentity) -> c::ChildIdentity {
        c::ChildIdentity {
            id: i.id,
            managed: i.managed,
            tags: i.tags,
        }
    }

    /// The children of a desired or current VM (for `rules eval` and `rules test`).
    pub(crate) fn children_from(k: w::VmChildren) -> c::VmChildren {
        c::VmChildren {
            interfaces: list_from!(k.interfaces, InterfacesField, |i: w::VmInterface| {
                c::VmInterface {
                    identity: i.identity.map(identity_from),
                    name: i.name,
                    enabled: bool_from(i.enabled),
                    mtu: count_from(i.mtu),
                    description: text_from(i.description),
                    mode: text_from(i.mode),
                    untagged_vlan: count_from(i.untagged_vlan),
                    primary_mac_address: text_from(i.primary_mac_address),
                }
            }),
            mac_addresses: list_from!(k.mac_addresses, MacAddressesField, |a: w::VmMacAddress| {
                c::VmMacAddress {
                    identity: a.identity.map(identity_from),
                    mac_address: a.mac_address,
                    interface: a.interface,
                }
            }),
            ip_addresses: list_from!(k.ip_addresses, IpAddressesField, |a: w::VmIpAddress| {
                c::VmIpAddress {
                    identity: a.identity.map(identity_from),
                    address: a.address,
                    vrf: a.vrf,
                    status: text_from(a.status),
                    interface: a.interface,
                }
            }),
            virtual_disks: list_from!(k.virtual_disks, VirtualDisksField, |d: w::VmVirtualDisk| {
                c::VmVirtualDisk {
                    identity: d.identity.map(identity_from),
                    name: d.name,
                    size: count_from(d.size),
                    description: text_from(d.description),
                }
            }),
            primary_ip4: text_from(k.primary_ip4),
            primary_ip6: text_from(k.primary_ip6),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn vm_round_trips_through_the_bindings() {
            let vm = m::Vm {
                name: m::Field::Set("web-1".into()),
                status: m::Field::Clear,
                vcpus: m::Field::Set(2.5),
                memory: m::Field::Set(4096),
                tags: m::Field::Set(vec!["a".into(), "b".into()]),
                custom_fields: vec![
                    (
                        "proxmox_vm_id".into(),
                        m::Field::Set(m::JsonText("100".into())),
                    ),
                    ("gone".into(), m::Field::Clear),
                ],
                ..m::Vm::default()
            };
            assert_eq!(vm_from(vm_to(vm.clone())), vm);
        }

        #[test]
        fn children_cross_as_text_and_not_read_is_empty() {
            let r = netbox_children_to(m::NetboxVm::default(), None);
            assert_eq!((r.children.as_str(), r.children_read), ("{}", false));
            let text = m::JsonText(r#"{"interfaces":[]}"#.into());
            let r = netbox_children_to(m::NetboxVm::default(), Some(text.clone()));
            assert_eq!(
                (r.children.as_str(), r.children_read),
                (text.as_str(), true)
            );
            let g = guest_network_to(
                m::Guest::default(),
                c::NetworkSource::Agent(m::JsonText("[]".into())),
            );
            assert!(matches!(g.network, w::NetworkSource::Agent(t) if t == "[]"));
        }
    }
}

/// WIT 0.4: the sync's `reconcile` batch (the repeating texts once, by index) and 0.4's field
/// changes (names as cases, a `null` old value absent). The three steps use `v3`'s types.
pub(crate) mod v4 {
    use std::hash::BuildHasher;

    use foldhash::fast::RandomState;
    use guest_default::children as c;
    use guest_default::model as m;
    use hashbrown::HashTable;
    use hashbrown::hash_table::Entry;

    use super::super::v0_3_0::types as v3;
    use super::super::v0_4_0::types as w;

    network_conv!();

    /// A batch's distinct texts, each given an index the first time it is seen.
    ///
    /// Most texts repeat the one the VM before had in the same field (cluster, status, custom
    /// field names), so a text is first compared with that one (its field's [`Slot`]) and only
    /// hashed when they differ. The table holds indexes into `list`, which owns the texts and
    /// is the batch's `texts` as it is.
    #[derive(Default)]
    struct Texts {
        list: Vec<String>,
        table: HashTable<u32>,
        hasher: RandomState,
        /// The index of the text each slot had last, [`NONE`] before it had one.
        previous: Vec<u32>,
    }

    /// No text yet in a slot.
    const NONE: u32 = u32::MAX;

    /// Where a text sits in a VM's input; the last text seen there is compared first.
    #[derive(Clone, Copy)]
    enum Slot {
        /// One of the fields of one text (numbered in [`batch_to`]).
        Field(usize),
        /// The `n`th NetBox tag.
        Tag(usize),
        /// The `n`th custom field's name (`true`: its value).
        Custom(usize, bool),
    }

    /// Fields with one text each (the guest's five, the record's nine).
    const FIELDS: usize = 14;
    /// List items that get a slot of their own; later ones are only hashed.
    const LIST_SLOTS: usize = 16;

    impl Slot {
        /// Its position in `Texts::previous`, if it has one.
        fn index(self) -> Option<usize> {
            match self {
                Slot::Field(i) => Some(i),
                Slot::Tag(n) => (n < LIST_SLOTS).then(|| FIELDS + n),
                Slot::Custom(n, value) => {
                    (n < LIST_SLOTS).then(|| FIELDS + LIST_SLOTS + 2 * n + usize::from(value))
                }
            }
        }
    }

    impl Texts {
        /// Sized for `vms` VMs: about one distinct text each (a custom field's value such as
        /// the VMID), so the table does not grow while the batch is built.
        fn with_capacity(vms: usize) -> Self {
            Texts {
                list: Vec::with_capacity(vms),
                table: HashTable::with_capacity(vms),
                hasher: RandomState::default(),
                previous: vec![NONE; FIELDS + 3 * LIST_SLOTS],
            }
        }

        fn of(&mut self, slot: Slot, text: String) -> w::TextIndex {
            let Some(slot) = slot.index() else {
                return self.find_or_add(text);
            };
            let last = self.previous[slot];
            if last != NONE && self.list[last as usize] == text {
                return last;
            }
            let i = self.find_or_add(text);
            self.previous[slot] = i;
            i
        }

        fn find_or_add(&mut self, text: String) -> w::TextIndex {
            let Texts {
                list,
                table,
                hasher,
                ..
            } = self;
            let hash = hasher.hash_one(text.as_str());
            let entry = table.entry(
                hash,
                |&i| list[i as usize] == text,
                |&i| hasher.hash_one(list[i as usize].as_str()),
            );
            match entry {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    let i = list.len() as u32;
                    list.push(text);
                    e.insert(i);
                    i
                }
            }
        }

        /// The texts in index order.
        fn into_list(self) -> Vec<String> {
            self.list
        }
    }

    /// Empty text as absent, as 0.4 sends it.
    fn non_empty(text: String) -> Option<String> {
        (!text.is_empty()).then_some(text)
    }

    /// The batch `reconcile` takes: every guest and record, their repeating texts shared.
    pub(crate) fn batch_to(items: Vec<m::JsonReconcileInput>) -> w::ReconcileBatch {
        use Slot::Field as F;
        let mut texts = Texts::with_capacity(items.len());
        let items = items
            .into_iter()
            .map(|i| {
                let g = i.guest;
                let guest = w::GuestInput {
                    cluster: texts.of(F(0), g.cluster),
                    vmid: g.vmid,
                    kind: match g.kind {
                        m::GuestKind::Qemu => w::GuestKind::Qemu,
                        m::GuestKind::Lxc => w::GuestKind::Lxc,
                    },
                    node: texts.of(F(1), g.node),
                    name: g.name,
                    status: texts.of(F(2), g.status),
                    template: g.template,
                    maxcpu: g.maxcpu,
                    maxmem: g.maxmem,
                    maxdisk: g.maxdisk,
                    tags: g.tags.map(|t| texts.of(F(3), t)),
                    pool: g.pool.map(|t| texts.of(F(4), t)),
                    config: i.config,
                    config_read: g.config_read,
                    network: network_to(i.network),
                };
                let children = i.children;
                let current = i.current.map(|r| w::NetboxRecord {
                    id: r.id,
                    name: r.name,
                    status: texts.of(F(5), r.status),
                    cluster: r.cluster.map(|t| texts.of(F(6), t)),
                    site: r.site.map(|t| texts.of(F(7), t)),
                    device: r.device.map(|t| texts.of(F(8), t)),
                    role: r.role.map(|t| texts.of(F(9), t)),
                    vm_type: r.vm_type.map(|t| texts.of(F(10), t)),
                    platform: r.platform.map(|t| texts.of(F(11), t)),
                    tenant: r.tenant.map(|t| texts.of(F(12), t)),
                    vcpus: r.vcpus,
                    memory: r.memory,
                    disk: r.disk,
                    description: non_empty(r.description),
                    comments: non_empty(r.comments),
                    serial: non_empty(r.serial),
                    start_on_boot: r.start_on_boot.map(|t| texts.of(F(13), t)),
                    tags: r
                        .tags
                        .into_iter()
                        .enumerate()
                        .map(|(n, t)| texts.of(Slot::Tag(n), t))
                        .collect(),
                    custom_fields: r
                        .custom_fields
                        .into_iter()
                        .enumerate()
                        .map(|(k, (n, v))| {
                            (
                                texts.of(Slot::Custom(k, false), n),
                                texts.of(Slot::Custom(k, true), v.0),
                            )
                        })
                        .collect(),
                    children: children.map(|t| t.0),
                });
                w::ReconcileInput { guest, current }
            })
            .collect();
        w::ReconcileBatch {
            texts: texts.into_list(),
            items,
        }
    }

    /// `cluster/node/vmid` of the batch's `i`th guest, for error messages.
    pub(crate) fn guest_id(batch: &w::ReconcileBatch, i: usize) -> String {
        let g = &batch.items[i].guest;
        let text = |t: w::TextIndex| batch.texts.get(t as usize).map_or("?", String::as_str);
        format!("{}/{}/{}", text(g.cluster), text(g.node), g.vmid)
    }

    /// A field's name back from its case (the module's `field-name`).
    pub(crate) fn field_name_from(f: w::FieldName) -> String {
        use w::FieldName as F;
        match f {
            F::Name => "name",
            F::Status => "status",
            F::Site => "site",
            F::Device => "device",
            F::Role => "role",
            F::VmType => "virtual_machine_type",
            F::Platform => "platform",
            F::Tenant => "tenant",
            F::Vcpus => "vcpus",
            F::Memory => "memory",
            F::Disk => "disk",
            F::Description => "description",
            F::Comments => "comments",
            F::Serial => "serial",
            F::StartOnBoot => "start_on_boot",
            F::Tags => "tags",
            F::PrimaryIp4 => "primary_ip4",
            F::PrimaryIp6 => "primary_ip6",
            F::Enabled => "enabled",
            F::Mtu => "mtu",
            F::Mode => "mode",
            F::UntaggedVlan => "untagged_vlan",
            F::PrimaryMacAddress => "primary_mac_address",
            F::MacAddress => "mac_address",
            F::Interface => "interface",
            F::Address => "address",
            F::Vrf => "vrf",
            F::Size => "size",
            F::CustomField(name) => return format!("custom_fields.{name}"),
            F::Other(name) => return name,
        }
        .to_owned()
    }

    /// An absent old value is `null`.
    fn old_from(old: Option<String>) -> String {
        old.unwrap_or_else(|| "null".to_owned())
    }

    pub(crate) fn change_from(c: w::FieldChange) -> m::FieldChange {
        m::FieldChange {
            field: field_name_from(c.field),
            old: m::JsonText(old_from(c.old)),
            new: m::JsonText(c.new),
        }
    }

    fn child_kind_from(k: w::ChildKind) -> c::ChildKind {
        match k {
            w::ChildKind::Interface => c::ChildKind::Interface,
            w::ChildKind::MacAddress => c::ChildKind::MacAddress,
            w::ChildKind::IpAddress => c::ChildKind::IpAddress,
            w::ChildKind::VirtualDisk => c::ChildKind::VirtualDisk,
        }
    }

    fn child_op_from(op: w::ChildOp) -> c::ChildOp {
        match op {
            w::ChildOp::Create => c::ChildOp::Create,
            w::ChildOp::Update(id) => c::ChildOp::Update(id),
            w::ChildOp::Delete(id) => c::ChildOp::Delete(id),
        }
    }

    pub(crate) fn child_change_from(ch: w::ChildChange) -> c::ChildChange {
        c::ChildChange {
            kind: child_kind_from(ch.kind),
            key: ch.key,
            parent: ch.parent,
            op: child_op_from(ch.op),
            changes: ch.changes.into_iter().map(change_from).collect(),
        }
    }

    pub(crate) fn rule_error_from(e: w::RuleError) -> m::RuleError {
        m::RuleError {
            code: e.code,
            message: e.message,
        }
    }

    fn object_spec_from(n: w::ObjectSpec) -> m::ObjectSpec {
        m::ObjectSpec {
            kind: n.kind,
            key: n.key,
            name: n.name,
            attrs: m::JsonText(n.attrs),
        }
    }

    pub(crate) fn reconciled_from(r: w::Reconciled) -> m::Reconciled {
        match r {
            w::Reconciled::Vm(v) => m::Reconciled::Vm(m::ReconciledVm {
                name: v.name,
                needs: v.needs.into_iter().map(object_spec_from).collect(),
                changes: v.changes.into_iter().map(change_from).collect(),
                children: v.children.into_iter().map(child_change_from).collect(),
            }),
            w::Reconciled::Skip(reason) => m::Reconciled::Skip(reason),
        }
    }

    /// 0.4's `diff` answer in 0.3's shape, which `rules eval` and `rules test` read.
    pub(crate) fn vm_changes_to_v3(vc: w::VmChanges) -> v3::VmChanges {
        let change = |c: w::FieldChange| v3::FieldChange {
            field: field_name_from(c.field),
            old: old_from(c.old),
            new: c.new,
        };
        v3::VmChanges {
            changes: vc.changes.into_iter().map(change).collect(),
            children: vc
                .children
                .into_iter()
                .map(|ch| v3::ChildChange {
                    kind: match ch.kind {
                        w::ChildKind::Interface => v3::ChildKind::Interface,
                        w::ChildKind::MacAddress => v3::ChildKind::MacAddress,
                        w::ChildKind::IpAddress => v3::ChildKind::IpAddress,
                        w::ChildKind::VirtualDisk => v3::ChildKind::VirtualDisk,
                    },
                    key: ch.key,
                    parent: ch.parent,
                    op: match ch.op {
                        w::ChildOp::Create => v3::ChildOp::Create,
                        w::ChildOp::Update(id) => v3::ChildOp::Update(id),
                        w::ChildOp::Delete(id) => v3::ChildOp::Delete(id),
                    },
                    changes: ch.changes.into_iter().map(change).collect(),
                })
                .collect(),
        }
    }

    pub(crate) fn rule_error_to_v3(e: w::RuleError) -> v3::RuleError {
        v3::RuleError {
            code: e.code,
            message: e.message,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn repeating_texts_cross_once_and_empty_texts_are_absent() {
            let item = |vmid: u32, node: &str| m::JsonReconcileInput {
                guest: m::Guest {
                    cluster: "prod".into(),
                    node: node.into(),
                    vmid,
                    status: "running".into(),
                    ..m::Guest::default()
                },
                config: "{}".into(),
                current: Some(m::NetboxVm {
                    name: format!("vm{vmid}"),
                    status: "active".into(),
                    cluster: Some("prod".into()),
                    tags: vec!["pve2netbox".into()],
                    custom_fields: vec![("proxmox_node".into(), m::JsonText::string(node))],
                    ..m::NetboxVm::default()
                }),
                children: Some(m::JsonText("{}".into())),
                ..m::JsonReconcileInput::default()
            };
            let batch = batch_to(vec![
                item(100, "pve1"),
                item(101, "pve1"),
                item(102, "pve2"),
            ]);
            let mut texts = batch.texts.clone();
            texts.sort();
            assert_eq!(
                texts,
                [
                    "\"pve1\"",
                    "\"pve2\"",
                    "active",
                    "prod",
                    "proxmox_node",
                    "pve1",
                    "pve2",
                    "pve2netbox",
                    "running"
                ]
            );
            let text = |i: u32| batch.texts[i as usize].as_str();
            let third = &batch.items[2];
            assert_eq!(
                (text(third.guest.cluster), text(third.guest.node)),
                ("prod", "pve2")
            );
            assert_eq!(guest_id(&batch, 2), "prod/pve2/102");
            let record = third.current.as_ref().unwrap();
            assert_eq!(record.name, "vm102");
            assert_eq!(record.description, None);
            assert_eq!(record.children.as_deref(), Some("{}"));
            let (n, v) = record.custom_fields[0];
            assert_eq!((text(n), text(v)), ("proxmox_node", "\"pve2\""));
        }

        #[test]
        fn a_text_has_one_index_whatever_field_or_position_it_comes_in() {
            let mut texts = Texts::with_capacity(2);
            let a = texts.of(Slot::Field(0), "prod".into());
            // The same text in its slot again, in another slot, and past the list slots.
            assert_eq!(texts.of(Slot::Field(0), "prod".into()), a);
            assert_eq!(texts.of(Slot::Tag(3), "prod".into()), a);
            assert_eq!(texts.of(Slot::Tag(LIST_SLOTS + 5), "prod".into()), a);
            // A slot whose text changes, then changes back.
            let b = texts.of(Slot::Field(0), "dev".into());
            assert_ne!(a, b);
            assert_eq!(texts.of(Slot::Field(0), "prod".into()), a);
            assert_eq!(texts.of(Slot::Custom(1, true), "dev".into()), b);
            let c = texts.of(Slot::Custom(LIST_SLOTS, false), "x".into());
            assert_eq!(texts.into_list(), ["prod", "dev", "x"]);
            assert_eq!((a, b, c), (0, 1, 2));
        }

        #[test]
        fn field_names_and_null_old_values_come_back_as_text() {
            let c = change_from(w::FieldChange {
                field: w::FieldName::VmType,
                old: None,
                new: "\"vm\"".into(),
            });
            assert_eq!(
                (c.field.as_str(), c.old.as_str(), c.new.as_str()),
                ("virtual_machine_type", "null", "\"vm\"")
            );
            let name = |f| field_name_from(f);
            assert_eq!(
                name(w::FieldName::CustomField("proxmox_vm_id".into())),
                "custom_fields.proxmox_vm_id"
            );
            assert_eq!(name(w::FieldName::Other("x_y".into())), "x_y");
            assert_eq!(name(w::FieldName::PrimaryMacAddress), "primary_mac_address");
        }
    }
}
