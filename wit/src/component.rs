//! The wit-bindgen shell of WIT 0.4 (`wit/v0.4.0`), the latest: bindings, conversions to and
//! from `model` and `children` (moves, no copies but the batch's shared texts'), and the adapter
//! that exports any `RuleSet` as the `rules` world.
//!
//! A rule crate exports its rules with `pve2netbox_rules::export_rules!(MyRules);` (guarded by
//! `#[cfg(target_arch = "wasm32")]`; a crate building on the default rules depends on
//! `guest-default` with `default-features = false` so their own exports are not linked in too).
//!
//! The three steps are 0.3's (`component_shared.rs`, shared with `component_v0_3`); `reconcile`
//! takes 0.4's batch, whose repeating texts cross once (`reconcile-batch.texts`), and the field
//! changes go out with their names as `field-name` cases and a `null` old value absent.

use std::marker::PhantomData;

use crate::children as c;
use crate::model::{self, Field, RuleSet, with_failed_in_place};
use crate::short_copy;

/// The generated bindings of `wit/v0.4.0` (world `rules`).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rules",
        path: "v0.4.0",
        pub_export_macro: true,
        export_macro_name: "__export_rules_world",
        default_bindings_module: "pve2netbox_rules::component::bindings",
    });
}

use bindings::exports::pve2netbox::rules::reconcile;
use bindings::pve2netbox::rules::types as w;

include!("component_shared.rs");

/// Adapts a `RuleSet` to the generated `reconcile` interface.
pub struct Component<R>(PhantomData<R>);

impl<R: RuleSet> reconcile::Guest for Component<R> {
    fn info() -> w::ModuleInfo {
        let i = R::info();
        w::ModuleInfo {
            name: i.name,
            version: i.version,
            // The version this shell implements, whatever the rule set says.
            wit_version: model::WIT_VERSION.to_owned(),
        }
    }

    shared_steps!();

    fn reconcile(
        ctx: w::Context,
        batch: w::ReconcileBatch,
    ) -> Vec<Result<w::Reconciled, w::RuleError>> {
        let ctx = context_in(ctx);
        let w::ReconcileBatch { texts, items } = batch;
        // The host only sends indexes within `texts`; one that is not is its bug, and traps the
        // batch.
        let text = |i: w::TextIndex| short_copy::owned(&texts[i as usize]);
        // The configs and children stay JSON text: the rule set reads them (a bad one fails
        // its own guest).
        let items = items
            .into_iter()
            .map(|i| {
                let g = i.guest;
                let guest = model::Guest {
                    cluster: text(g.cluster),
                    vmid: g.vmid,
                    kind: match g.kind {
                        w::GuestKind::Qemu => model::GuestKind::Qemu,
                        w::GuestKind::Lxc => model::GuestKind::Lxc,
                    },
                    node: text(g.node),
                    name: g.name,
                    status: text(g.status),
                    template: g.template,
                    maxcpu: g.maxcpu,
                    maxmem: g.maxmem,
                    maxdisk: g.maxdisk,
                    tags: g.tags.map(text),
                    pool: g.pool.map(text),
                    config: Vec::new(),
                    config_read: g.config_read,
                };
                let (current, children) = match i.current {
                    Some(r) => {
                        let children = r.children.map(model::JsonText);
                        let record = model::NetboxVm {
                            id: r.id,
                            name: r.name,
                            status: text(r.status),
                            cluster: r.cluster.map(text),
                            site: r.site.map(text),
                            device: r.device.map(text),
                            role: r.role.map(text),
                            vm_type: r.vm_type.map(text),
                            platform: r.platform.map(text),
                            tenant: r.tenant.map(text),
                            vcpus: r.vcpus,
                            memory: r.memory,
                            disk: r.disk,
                            description: r.description.unwrap_or_default(),
                            comments: r.comments.unwrap_or_default(),
                            serial: r.serial.unwrap_or_default(),
                            start_on_boot: r.start_on_boot.map(text),
                            tags: r.tags.into_iter().map(text).collect(),
                            custom_fields: r
                                .custom_fields
                                .into_iter()
                                .map(|(n, v)| (text(n), model::JsonText(text(v))))
                                .collect(),
                            last_updated: None,
                        };
                        (Some(record), children)
                    }
                    None => (None, None),
                };
                model::JsonReconcileInput {
                    guest,
                    config: g.config,
                    current,
                    network: network_in(g.network),
                    children,
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
/// pve2netbox_rules::export_rules!(MyRules);
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

/// The prefix of a custom field's change (`custom_fields.proxmox_vm_id`).
const CUSTOM_FIELDS: &str = "custom_fields.";

/// 0.4's field changes: the name as a case, a `null` old value absent.
fn changes_out(changes: Vec<model::FieldChange>) -> Vec<w::FieldChange> {
    changes
        .into_iter()
        .map(|c| w::FieldChange {
            field: field_name_out(c.field),
            old: (c.old.0 != "null").then_some(c.old.0),
            new: c.new.0,
        })
        .collect()
}

/// A field's name as its `field-name` case (the host maps the cases back to these names).
fn field_name_out(mut name: String) -> w::FieldName {
    use w::FieldName as F;
    match name.as_str() {
        "name" => F::Name,
        "status" => F::Status,
        "site" => F::Site,
        "device" => F::Device,
        "role" => F::Role,
        "virtual_machine_type" => F::VmType,
        "platform" => F::Platform,
        "tenant" => F::Tenant,
        "vcpus" => F::Vcpus,
        "memory" => F::Memory,
        "disk" => F::Disk,
        "description" => F::Description,
        "comments" => F::Comments,
        "serial" => F::Serial,
        "start_on_boot" => F::StartOnBoot,
        "tags" => F::Tags,
        "primary_ip4" => F::PrimaryIp4,
        "primary_ip6" => F::PrimaryIp6,
        "enabled" => F::Enabled,
        "mtu" => F::Mtu,
        "mode" => F::Mode,
        "untagged_vlan" => F::UntaggedVlan,
        "primary_mac_address" => F::PrimaryMacAddress,
        "mac_address" => F::MacAddress,
        "interface" => F::Interface,
        "address" => F::Address,
        "vrf" => F::Vrf,
        "size" => F::Size,
        n if n.len() > CUSTOM_FIELDS.len() && n.starts_with(CUSTOM_FIELDS) => {
            // In place: no second allocation for the name.
            name.drain(..CUSTOM_FIELDS.len());
            F::CustomField(name)
        }
        _ => F::Other(name),
    }
}
