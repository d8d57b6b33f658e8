//! Conversions between the plain-Rust model (`guest_default::model`) and the latest WIT bindings.
//! They serve every supported WIT version: a 0.1 module is called through the latest bindings
//! (see `v0_2_0`), so there is one body and no per-version copy.
//!
//! Inputs and outputs are moved field by field, never cloned, except the context, which the
//! facade borrows (one clone per batch, not per VM). Model-only data (`NetboxVm::last_updated`)
//! stays on the host side.

use guest_default::model as m;

use super::latest::types as w;

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

pub(crate) fn guest_to(g: m::Guest) -> w::PveGuest {
    let config = m::config_to_json(&g.config);
    guest_with_config_to(g, config)
}

/// The guest with its config already as the WIT's JSON text (`g.config` is not read).
fn guest_with_config_to(g: m::Guest, config: String) -> w::PveGuest {
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

fn object_spec_from(n: w::ObjectSpec) -> m::ObjectSpec {
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
        }),
        w::Reconciled::Skip(reason) => m::Reconciled::Skip(reason),
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
}
