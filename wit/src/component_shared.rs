// The wit-bindgen shells' shared part (`component` for WIT 0.4, `component_v0_3`), included
// by each over its own bindings `w`: the conversions to and from `model` and `children`, and
// the three steps, whose shapes the two versions share. Each shell defines `changes_out` (0.4
// changed `field-change`) and its own `info` and `reconcile`.

/// The `reconcile` interface's steps (all but `info` and `reconcile`), in an
/// `impl reconcile::Guest for Component<R>`.
macro_rules! shared_steps {
    () => {
    fn default_policies() -> Vec<w::FieldPolicy> {
        R::default_policies().into_iter().map(policy_out).collect()
    }

    fn normalize_desired(
        ctx: w::Context,
        guests: Vec<w::PveGuest>,
    ) -> Vec<Result<w::Desired, w::RuleError>> {
        let ctx = context_in(ctx);
        // A config that is not JSON fails its own guest only; the others go to the rules.
        with_failed_in_place(guests, guest_in, |good| {
            // The children first: the VM step takes the guests.
            let kids: Vec<_> = good
                .iter()
                .map(|(g, network)| R::normalize_desired_children(&ctx, g, network))
                .collect();
            let guests = good.into_iter().map(|(g, _)| g).collect();
            R::normalize_desired(&ctx, guests)
                .into_iter()
                .zip(kids)
                .map(|(r, kids)| match r {
                    Ok(model::Desired::Vm(d)) => {
                        let kids = kids.map_err(error_out)?;
                        Ok(w::Desired::Vm(w::DesiredVm {
                            vm: vm_out(d.vm, kids),
                            needs: needs_out(d.needs),
                        }))
                    }
                    Ok(model::Desired::Skip(reason)) => Ok(w::Desired::Skip(reason)),
                    Err(e) => Err(error_out(e)),
                })
                .collect()
        })
    }

    fn normalize_current(
        ctx: w::Context,
        records: Vec<w::NetboxVm>,
    ) -> Vec<Result<w::Vm, w::RuleError>> {
        let ctx = context_in(ctx);
        let (records, kids): (Vec<_>, Vec<_>) = records
            .into_iter()
            .map(|r| {
                let kids = R::normalize_current_children(&ctx, &r.children, r.children_read);
                (netbox_in(r), kids)
            })
            .unzip();
        R::normalize_current(&ctx, records)
            .into_iter()
            .zip(kids)
            .map(|(r, kids)| {
                let vm = r.map_err(error_out)?;
                Ok(vm_out(vm, kids.map_err(error_out)?))
            })
            .collect()
    }

    fn diff(ctx: w::Context, pairs: Vec<w::DiffInput>) -> Vec<Result<w::VmChanges, w::RuleError>> {
        let ctx = context_in(ctx);
        let (pairs, kids): (Vec<_>, Vec<_>) = pairs
            .into_iter()
            .map(|p| {
                let (desired, desired_kids) = vm_in(p.desired);
                let current = p.current.map(vm_in);
                let current_disk = current
                    .as_ref()
                    .and_then(|(vm, _)| vm.disk.as_set().copied());
                let (current, current_kids) = match current {
                    Some((vm, kids)) => (Some(vm), Some(kids)),
                    None => (None, None),
                };
                (
                    model::DiffInput { desired, current },
                    (desired_kids, current_kids, current_disk),
                )
            })
            .unzip();
        R::diff(&ctx, pairs)
            .into_iter()
            .zip(kids)
            .map(|(r, (desired, current, disk))| {
                let mut changes = r.map_err(error_out)?;
                let children =
                    R::diff_children(&ctx, &desired, current.as_ref(), disk, &mut changes)
                        .map_err(error_out)?;
                Ok(w::VmChanges {
                    changes: changes_out(changes),
                    children: children.into_iter().map(child_change_out).collect(),
                })
            })
            .collect()
    }
    };
}

macro_rules! field_conv {
    ($in:ident, $out:ident, $wty:ident, $t:ty, $to_model:expr, $to_wit:expr) => {
        fn $in(f: w::$wty) -> Field<$t> {
            match f {
                w::$wty::Keep => Field::Keep,
                w::$wty::Set(v) => Field::Set($to_model(v)),
                w::$wty::Clear => Field::Clear,
            }
        }
        fn $out(f: Field<$t>) -> w::$wty {
            match f {
                Field::Keep => w::$wty::Keep,
                Field::Set(v) => w::$wty::Set($to_wit(v)),
                Field::Clear => w::$wty::Clear,
            }
        }
    };
}

fn id<T>(v: T) -> T {
    v
}

field_conv!(text_in, text_out, TextField, String, id, id);
field_conv!(ref_in, ref_out, RefField, String, id, id);
field_conv!(count_in, count_out, CountField, u64, id, id);
field_conv!(decimal_in, decimal_out, DecimalField, f64, id, id);
field_conv!(tags_in, tags_out, TagsField, Vec<String>, id, id);
field_conv!(bool_in, bool_out, BoolField, bool, id, id);
field_conv!(
    interfaces_in,
    interfaces_out,
    InterfacesField,
    Vec<c::VmInterface>,
    |l: Vec<w::VmInterface>| l.into_iter().map(interface_in).collect(),
    |l: Vec<c::VmInterface>| l.into_iter().map(interface_out).collect()
);
field_conv!(
    macs_in,
    macs_out,
    MacAddressesField,
    Vec<c::VmMacAddress>,
    |l: Vec<w::VmMacAddress>| l.into_iter().map(mac_in).collect(),
    |l: Vec<c::VmMacAddress>| l.into_iter().map(mac_out).collect()
);
field_conv!(
    ips_in,
    ips_out,
    IpAddressesField,
    Vec<c::VmIpAddress>,
    |l: Vec<w::VmIpAddress>| l.into_iter().map(ip_in).collect(),
    |l: Vec<c::VmIpAddress>| l.into_iter().map(ip_out).collect()
);
field_conv!(
    disks_in,
    disks_out,
    VirtualDisksField,
    Vec<c::VmVirtualDisk>,
    |l: Vec<w::VmVirtualDisk>| l.into_iter().map(vdisk_in).collect(),
    |l: Vec<c::VmVirtualDisk>| l.into_iter().map(vdisk_out).collect()
);
field_conv!(
    json_in,
    json_out,
    JsonField,
    model::JsonText,
    model::JsonText,
    |j: model::JsonText| j.0
);

fn ownership_in(o: w::Ownership) -> model::Ownership {
    match o {
        w::Ownership::Owned => model::Ownership::Owned,
        w::Ownership::Merge => model::Ownership::Merge,
        w::Ownership::Seed => model::Ownership::Seed,
        w::Ownership::Ignore => model::Ownership::Ignore,
    }
}

fn policy_out(p: model::FieldPolicy) -> w::FieldPolicy {
    w::FieldPolicy {
        field: p.field,
        ownership: match p.ownership {
            model::Ownership::Owned => w::Ownership::Owned,
            model::Ownership::Merge => w::Ownership::Merge,
            model::Ownership::Seed => w::Ownership::Seed,
            model::Ownership::Ignore => w::Ownership::Ignore,
        },
    }
}

fn context_in(c: w::Context) -> model::Context {
    model::Context {
        netbox_version: c.netbox_version,
        known: c
            .known
            .into_iter()
            .map(|k| model::KnownObject {
                kind: k.kind,
                key: k.key,
                id: k.id,
                name: k.name,
            })
            .collect(),
        policies: c
            .policies
            .into_iter()
            .map(|p| model::FieldPolicy {
                field: p.field,
                ownership: ownership_in(p.ownership),
            })
            .collect(),
        settings: c
            .settings
            .into_iter()
            .map(|(n, v)| (n, model::JsonText(v)))
            .collect(),
    }
}

/// The guest in model form with its network view, or its `bad-config` error
/// (`model::parse_guest_config`, the same error `reconcile` reports, so the two agree).
fn guest_in(g: w::PveGuest) -> Result<(model::Guest, c::NetworkSource), w::RuleError> {
    let (mut guest, config, network) = guest_parts(g);
    model::parse_guest_config(&mut guest, &config).map_err(error_out)?;
    Ok((guest, network))
}

fn network_in(n: w::NetworkSource) -> c::NetworkSource {
    use c::UnknownReason as R;
    use w::NetworkUnknownReason as W;
    match n {
        w::NetworkSource::Agent(j) => c::NetworkSource::Agent(model::JsonText(j)),
        w::NetworkSource::LxcInterfaces(j) => c::NetworkSource::LxcInterfaces(model::JsonText(j)),
        w::NetworkSource::Unknown(u) => c::NetworkSource::Unknown(c::NetworkUnknown {
            reason: match u.reason {
                W::AgentOff => R::AgentOff,
                W::NotRunning => R::NotRunning,
                W::AgentNotRunning => R::AgentNotRunning,
                W::NoPermission => R::NoPermission,
                W::TimedOut => R::TimedOut,
                W::NotAsked => R::NotAsked,
                W::OtherError => R::OtherError,
            },
            detail: u.detail,
        }),
    }
}

/// The guest in model form without its config, the config's JSON text, and its network view.
fn guest_parts(g: w::PveGuest) -> (model::Guest, String, c::NetworkSource) {
    let guest = model::Guest {
        cluster: g.cluster,
        vmid: g.vmid,
        kind: match g.kind {
            w::GuestKind::Qemu => model::GuestKind::Qemu,
            w::GuestKind::Lxc => model::GuestKind::Lxc,
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
        config: Vec::new(),
        config_read: g.config_read,
    };
    (guest, g.config, network_in(g.network))
}

fn netbox_in(r: w::NetboxVm) -> model::NetboxVm {
    model::NetboxVm {
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
        custom_fields: r
            .custom_fields
            .into_iter()
            .map(|(n, v)| (n, model::JsonText(v)))
            .collect(),
        last_updated: None,
    }
}

/// The VM and its children.
fn vm_in(v: w::Vm) -> (model::Vm, c::VmChildren) {
    let vm = model::Vm {
        name: text_in(v.name),
        status: text_in(v.status),
        site: ref_in(v.site),
        device: ref_in(v.device),
        role: ref_in(v.role),
        vm_type: ref_in(v.vm_type),
        platform: ref_in(v.platform),
        tenant: ref_in(v.tenant),
        vcpus: decimal_in(v.vcpus),
        memory: count_in(v.memory),
        disk: count_in(v.disk),
        description: text_in(v.description),
        comments: text_in(v.comments),
        serial: text_in(v.serial),
        start_on_boot: text_in(v.start_on_boot),
        tags: tags_in(v.tags),
        custom_fields: v
            .custom_fields
            .into_iter()
            .map(|(n, f)| (n, json_in(f)))
            .collect(),
    };
    (vm, children_in(v.children))
}

fn vm_out(v: model::Vm, children: c::VmChildren) -> w::Vm {
    w::Vm {
        name: text_out(v.name),
        status: text_out(v.status),
        site: ref_out(v.site),
        device: ref_out(v.device),
        role: ref_out(v.role),
        vm_type: ref_out(v.vm_type),
        platform: ref_out(v.platform),
        tenant: ref_out(v.tenant),
        vcpus: decimal_out(v.vcpus),
        memory: count_out(v.memory),
        disk: count_out(v.disk),
        description: text_out(v.description),
        comments: text_out(v.comments),
        serial: text_out(v.serial),
        start_on_boot: text_out(v.start_on_boot),
        tags: tags_out(v.tags),
        custom_fields: v
            .custom_fields
            .into_iter()
            .map(|(n, f)| (n, json_out(f)))
            .collect(),
        children: children_out(children),
    }
}

fn children_in(k: w::VmChildren) -> c::VmChildren {
    c::VmChildren {
        interfaces: interfaces_in(k.interfaces),
        mac_addresses: macs_in(k.mac_addresses),
        ip_addresses: ips_in(k.ip_addresses),
        virtual_disks: disks_in(k.virtual_disks),
        primary_ip4: text_in(k.primary_ip4),
        primary_ip6: text_in(k.primary_ip6),
    }
}

fn children_out(k: c::VmChildren) -> w::VmChildren {
    w::VmChildren {
        interfaces: interfaces_out(k.interfaces),
        mac_addresses: macs_out(k.mac_addresses),
        ip_addresses: ips_out(k.ip_addresses),
        virtual_disks: disks_out(k.virtual_disks),
        primary_ip4: text_out(k.primary_ip4),
        primary_ip6: text_out(k.primary_ip6),
    }
}

fn identity_in(i: w::ChildIdentity) -> c::ChildIdentity {
    c::ChildIdentity {
        id: i.id,
        managed: i.managed,
        tags: i.tags,
    }
}

fn identity_out(i: c::ChildIdentity) -> w::ChildIdentity {
    w::ChildIdentity {
        id: i.id,
        managed: i.managed,
        tags: i.tags,
    }
}

fn interface_in(i: w::VmInterface) -> c::VmInterface {
    c::VmInterface {
        identity: i.identity.map(identity_in),
        name: i.name,
        enabled: bool_in(i.enabled),
        mtu: count_in(i.mtu),
        description: text_in(i.description),
        mode: text_in(i.mode),
        untagged_vlan: count_in(i.untagged_vlan),
        primary_mac_address: text_in(i.primary_mac_address),
    }
}

fn interface_out(i: c::VmInterface) -> w::VmInterface {
    w::VmInterface {
        identity: i.identity.map(identity_out),
        name: i.name,
        enabled: bool_out(i.enabled),
        mtu: count_out(i.mtu),
        description: text_out(i.description),
        mode: text_out(i.mode),
        untagged_vlan: count_out(i.untagged_vlan),
        primary_mac_address: text_out(i.primary_mac_address),
    }
}

fn mac_in(m: w::VmMacAddress) -> c::VmMacAddress {
    c::VmMacAddress {
        identity: m.identity.map(identity_in),
        mac_address: m.mac_address,
        interface: m.interface,
    }
}

fn mac_out(m: c::VmMacAddress) -> w::VmMacAddress {
    w::VmMacAddress {
        identity: m.identity.map(identity_out),
        mac_address: m.mac_address,
        interface: m.interface,
    }
}

fn ip_in(a: w::VmIpAddress) -> c::VmIpAddress {
    c::VmIpAddress {
        identity: a.identity.map(identity_in),
        address: a.address,
        vrf: a.vrf,
        status: text_in(a.status),
        interface: a.interface,
    }
}

fn ip_out(a: c::VmIpAddress) -> w::VmIpAddress {
    w::VmIpAddress {
        identity: a.identity.map(identity_out),
        address: a.address,
        vrf: a.vrf,
        status: text_out(a.status),
        interface: a.interface,
    }
}

fn vdisk_in(d: w::VmVirtualDisk) -> c::VmVirtualDisk {
    c::VmVirtualDisk {
        identity: d.identity.map(identity_in),
        name: d.name,
        size: count_in(d.size),
        description: text_in(d.description),
    }
}

fn vdisk_out(d: c::VmVirtualDisk) -> w::VmVirtualDisk {
    w::VmVirtualDisk {
        identity: d.identity.map(identity_out),
        name: d.name,
        size: count_out(d.size),
        description: text_out(d.description),
    }
}

fn child_change_out(ch: c::ChildChange) -> w::ChildChange {
    w::ChildChange {
        kind: match ch.kind {
            c::ChildKind::Interface => w::ChildKind::Interface,
            c::ChildKind::MacAddress => w::ChildKind::MacAddress,
            c::ChildKind::IpAddress => w::ChildKind::IpAddress,
            c::ChildKind::VirtualDisk => w::ChildKind::VirtualDisk,
        },
        key: ch.key,
        parent: ch.parent,
        op: match ch.op {
            c::ChildOp::Create => w::ChildOp::Create,
            c::ChildOp::Update(id) => w::ChildOp::Update(id),
            c::ChildOp::Delete(id) => w::ChildOp::Delete(id),
        },
        changes: changes_out(ch.changes),
    }
}

fn needs_out(needs: Vec<model::ObjectSpec>) -> Vec<w::ObjectSpec> {
    needs
        .into_iter()
        .map(|n| w::ObjectSpec {
            kind: n.kind,
            key: n.key,
            name: n.name,
            attrs: n.attrs.0,
        })
        .collect()
}

fn reconciled_out(r: model::Reconciled) -> w::Reconciled {
    match r {
        model::Reconciled::Skip(reason) => w::Reconciled::Skip(reason),
        model::Reconciled::Vm(r) => w::Reconciled::Vm(w::ReconciledVm {
            name: r.name,
            needs: needs_out(r.needs),
            changes: changes_out(r.changes),
            children: r.children.into_iter().map(child_change_out).collect(),
        }),
    }
}

fn error_out(e: model::RuleError) -> w::RuleError {
    w::RuleError {
        code: e.code,
        message: e.message,
    }
}
