//! The wit-bindgen shell: WIT bindings, conversions to and from `model` (moves, no clones),
//! and the adapter that exports any `RuleSet` as the `rules` world.
//!
//! Another crate exports its rules with `guest_default::export_rules!(MyRules);` (guarded by
//! `#[cfg(target_arch = "wasm32")]`, and depending on guest-default with
//! `default-features = false` so the default rules' own exports are not linked in too).

use std::marker::PhantomData;

use crate::model::{self, Field, RuleSet, with_failed_in_place};

/// The generated bindings of `wit/v0.2.0` (world `rules`).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rules",
        path: "../wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_rules_world",
        default_bindings_module: "guest_default::component::bindings",
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
            wit_version: i.wit_version,
        }
    }

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
        // The configs stay JSON text: the rule set reads them (a bad one fails its own guest).
        let items = items
            .into_iter()
            .map(|i| {
                let (guest, config) = guest_parts(i.guest);
                model::JsonReconcileInput {
                    guest,
                    config,
                    current: i.current.map(netbox_in),
                }
            })
            .collect();
        R::reconcile_json(&ctx, items)
            .into_iter()
            .map(|r| r.map(reconciled_out).map_err(error_out))
            .collect()
    }
}

/// Exports a `RuleSet` implementation as the component's `reconcile` interface.
///
/// ```text
/// #[cfg(target_arch = "wasm32")]
/// guest_default::export_rules!(MyRules);
/// ```
#[macro_export]
macro_rules! export_rules {
    ($rules:ty) => {
        type __Pve2netboxRulesComponent = $crate::component::Component<$rules>;
        $crate::component::bindings::__export_rules_world!(
            __Pve2netboxRulesComponent with_types_in $crate::component::bindings
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DefaultRules;
    use reconcile::Guest as _;

    fn guest(vmid: u32, config: &str) -> w::PveGuest {
        w::PveGuest {
            cluster: "prod".into(),
            vmid,
            kind: w::GuestKind::Qemu,
            node: "pve1".into(),
            name: Some(format!("web{vmid}")),
            status: "running".into(),
            template: false,
            maxcpu: Some(2.0),
            maxmem: Some(1 << 30),
            maxdisk: None,
            tags: None,
            pool: None,
            config: config.into(),
            config_read: true,
        }
    }

    fn context() -> w::Context {
        w::Context {
            netbox_version: "4.7.3".into(),
            known: Vec::new(),
            policies: Vec::new(),
            settings: Vec::new(),
        }
    }

    const GOOD: &str = r#"{"memory":"1024","scsi0":"local-lvm:vm-1-disk-0,size=8G"}"#;

    #[test]
    fn a_config_that_is_not_json_fails_its_own_guest_in_place() {
        let guests = vec![
            guest(100, "not json"),
            guest(101, GOOD),
            guest(102, "[1]"),
            guest(103, GOOD),
            guest(104, "{"),
        ];
        let items: Vec<_> = guests
            .iter()
            .cloned()
            .map(|guest| w::ReconcileInput {
                guest,
                current: None,
            })
            .collect();
        let reconciled = Component::<DefaultRules>::reconcile(context(), items);
        let desired = Component::<DefaultRules>::normalize_desired(context(), guests);
        assert_eq!(reconciled.len(), 5);
        for (i, (r, d)) in reconciled.iter().zip(&desired).enumerate() {
            let vmid = 100 + i;
            match (r, d) {
                (Err(r), Err(d)) => {
                    assert_eq!(r.code, "bad-config");
                    assert!(r.message.contains(&format!("prod/pve1/{vmid}")), "{r:?}");
                    // The same error as normalize-desired, so `rules test` finds them equal.
                    assert_eq!((&r.code, &r.message), (&d.code, &d.message));
                }
                (Ok(w::Reconciled::Vm(r)), Ok(w::Desired::Vm(_))) => {
                    assert_eq!(r.name.as_deref(), Some(format!("web{vmid}").as_str()));
                    assert!(r.changes.iter().any(|c| c.field == "memory"), "{i}");
                }
                _ => panic!("position {i}: reconcile {r:?}, normalize-desired {d:?}"),
            }
        }
        assert!(reconciled[0].is_err() && reconciled[2].is_err() && reconciled[4].is_err());
    }

    #[test]
    fn failed_inputs_keep_their_positions() {
        let halve = |n: u32| {
            if n.is_multiple_of(2) {
                Ok(n / 2)
            } else {
                Err(w::RuleError {
                    code: "odd".into(),
                    message: n.to_string(),
                })
            }
        };
        let show = |out: Vec<Result<u32, w::RuleError>>| -> Vec<String> {
            out.into_iter()
                .map(|r| match r {
                    Ok(n) => n.to_string(),
                    Err(e) => format!("!{}", e.message),
                })
                .collect()
        };
        let run = |inputs: Vec<u32>| {
            show(with_failed_in_place(inputs, halve, |good| {
                good.into_iter().map(Ok).collect()
            }))
        };
        assert_eq!(run(vec![1, 2, 3, 4, 5]), ["!1", "1", "!3", "2", "!5"]);
        assert_eq!(run(vec![2, 4]), ["1", "2"]);
        assert_eq!(run(vec![1, 3]), ["!1", "!3"]);
        assert!(run(Vec::new()).is_empty());
    }
}
