//! The WIT 0.2 shell (`wit/v0.2.0`), kept so a crate can still build a 0.2 module from a
//! `RuleSet` (`pve2netbox_rules::export_rules_v0_2!(MyRules);`): the host keeps loading 0.1 and
//! 0.2 modules, and its tests need a real 0.2 module to show that they map VMs exactly as
//! before.
//!
//! A 0.2 module knows no children: it reports WIT version `0.2.0` whatever the rule set says,
//! leaves the child collections out of its default policies, and its `reconcile` is the rule
//! set's three VM steps (`model::reconcile_with`) so that no child step adjusts the VM's
//! changes (`disk`, primary IPs). The sync keeps the children of its VMs (`keep`).

use std::marker::PhantomData;

use crate::model::{self, Field, RuleSet, with_failed_in_place};

/// The generated bindings of `wit/v0.2.0` (world `rules`).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    // A world of its own name: its generated macros must not collide with the 0.3 world's
    // (`component`), which is also called `rules`. The host reads the exported interface,
    // never the world's name.
    wit_bindgen::generate!({
        inline: "
            package pve2netbox:shell@0.2.0;
            world rules-v0-2 { export pve2netbox:rules/reconcile@0.2.0; }
        ",
        world: "rules-v0-2",
        path: "v0.2.0",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_rules_world_v0_2",
        default_bindings_module: "pve2netbox_rules::component_v0_2::bindings",
    });
}

use bindings::exports::pve2netbox::rules::reconcile;
use bindings::pve2netbox::rules::types as w;

/// Adapts a `RuleSet` to the generated `reconcile` interface.
pub struct Component<R>(PhantomData<R>);

impl<R: RuleSet> reconcile::Guest for Component<R> {
    fn info() -> w::ModuleInfo {
        let i = R::info();
        w::ModuleInfo {
            name: i.name,
            version: i.version,
            wit_version: "0.2.0".to_owned(),
        }
    }

    fn default_policies() -> Vec<w::FieldPolicy> {
        R::default_policies()
            .into_iter()
            .filter(|p| !crate::children::COLLECTIONS.contains(&p.field.as_str()))
            .map(policy_out)
            .collect()
    }

    fn normalize_desired(
        ctx: w::Context,
        guests: Vec<w::PveGuest>,
    ) -> Vec<Result<w::Desired, w::RuleError>> {
        let ctx = context_in(ctx);
        // A config that is not JSON fails its own guest only; the others go to the rules.
        with_failed_in_place(guests, guest_in, |good| {
            R::normalize_desired(&ctx, good)
                .into_iter()
                .map(|r| r.map(desired_out).map_err(error_out))
                .collect()
        })
    }

    fn normalize_current(
        ctx: w::Context,
        records: Vec<w::NetboxVm>,
    ) -> Vec<Result<w::Vm, w::RuleError>> {
        let ctx = context_in(ctx);
        let records = records.into_iter().map(netbox_in).collect();
        R::normalize_current(&ctx, records)
            .into_iter()
            .map(|r| r.map(vm_out).map_err(error_out))
            .collect()
    }

    fn diff(
        ctx: w::Context,
        pairs: Vec<w::DiffInput>,
    ) -> Vec<Result<Vec<w::FieldChange>, w::RuleError>> {
        let ctx = context_in(ctx);
        let pairs = pairs
            .into_iter()
            .map(|p| model::DiffInput {
                desired: vm_in(p.desired),
                current: p.current.map(vm_in),
            })
            .collect();
        R::diff(&ctx, pairs)
            .into_iter()
            .map(|r| r.map(changes_out).map_err(error_out))
            .collect()
    }

    fn reconcile(
        ctx: w::Context,
        items: Vec<w::ReconcileInput>,
    ) -> Vec<Result<w::Reconciled, w::RuleError>> {
        let ctx = context_in(ctx);
        // The VM's three steps only (see the module doc); a bad config fails its own guest.
        with_failed_in_place(
            items,
            |i| {
                Ok(model::ReconcileInput {
                    guest: guest_in(i.guest)?,
                    current: i.current.map(netbox_in),
                    ..model::ReconcileInput::default()
                })
            },
            |good| {
                let Ok(out) = model::reconcile_with::<std::convert::Infallible>(
                    good,
                    |guests| Ok(R::normalize_desired(&ctx, guests)),
                    |records| Ok(R::normalize_current(&ctx, records)),
                    |pairs| Ok(R::diff(&ctx, pairs)),
                );
                out.into_iter()
                    .map(|r| r.map(reconciled_out).map_err(error_out))
                    .collect()
            },
        )
    }
}

/// Exports a `RuleSet` implementation as a WIT 0.2 component (no children).
///
/// ```text
/// #[cfg(target_arch = "wasm32")]
/// pve2netbox_rules::export_rules_v0_2!(MyRules);
/// ```
#[macro_export]
macro_rules! export_rules_v0_2 {
    ($rules:ty) => {
        type __Pve2netboxRulesComponentV02 = $crate::component_v0_2::Component<$rules>;
        $crate::component_v0_2::bindings::__export_rules_world_v0_2!(
            __Pve2netboxRulesComponentV02 with_types_in $crate::component_v0_2::bindings
        );
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

/// The guest in model form, or its `bad-config` error (`model::parse_guest_config`, the same
/// error `reconcile` reports, so the two agree).
fn guest_in(g: w::PveGuest) -> Result<model::Guest, w::RuleError> {
    let (mut guest, config) = guest_parts(g);
    model::parse_guest_config(&mut guest, &config).map_err(error_out)?;
    Ok(guest)
}

/// The guest in model form without its config, and the config's JSON text.
fn guest_parts(g: w::PveGuest) -> (model::Guest, String) {
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
    (guest, g.config)
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

fn vm_in(v: w::Vm) -> model::Vm {
    model::Vm {
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
    }
}

fn vm_out(v: model::Vm) -> w::Vm {
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

fn changes_out(changes: Vec<model::FieldChange>) -> Vec<w::FieldChange> {
    changes
        .into_iter()
        .map(|c| w::FieldChange {
            field: c.field,
            old: c.old.0,
            new: c.new.0,
        })
        .collect()
}

fn desired_out(d: model::Desired) -> w::Desired {
    match d {
        model::Desired::Skip(reason) => w::Desired::Skip(reason),
        model::Desired::Vm(d) => w::Desired::Vm(w::DesiredVm {
            vm: vm_out(d.vm),
            needs: needs_out(d.needs),
        }),
    }
}

fn reconciled_out(r: model::Reconciled) -> w::Reconciled {
    match r {
        model::Reconciled::Skip(reason) => w::Reconciled::Skip(reason),
        model::Reconciled::Vm(r) => w::Reconciled::Vm(w::ReconciledVm {
            name: r.name,
            needs: needs_out(r.needs),
            changes: changes_out(r.changes),
        }),
    }
}

fn error_out(e: model::RuleError) -> w::RuleError {
    w::RuleError {
        code: e.code,
        message: e.message,
    }
}
