//! The WIT 0.3 shell (`wit/v0.3.0`), kept so a crate can still build a 0.3 module from a
//! `RuleSet` (`pve2netbox_rules::export_rules_v0_3!(MyRules);`): the host keeps loading 0.3
//! modules, and its tests need a real one to show that they map VMs exactly as before.
//!
//! The same adapter as the 0.4 shell (`component`; the conversions and the three steps are
//! shared, `component_shared.rs`) but for `reconcile`, which takes each guest with its record
//! as 0.3 sends them, and `field-change`, whose name and `old` are text. A 0.3 module reports
//! WIT version `0.3.0` whatever the rule set says.

use std::marker::PhantomData;

use crate::children as c;
use crate::model::{self, Field, RuleSet, with_failed_in_place};

/// The generated bindings of `wit/v0.3.0` (its world `rules`, under a name of its own).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    // A world of its own name, as `component_v0_2`'s: its generated macros must not collide
    // with the 0.4 world's (`component`). The host reads the exported interface, never the
    // world's name.
    wit_bindgen::generate!({
        inline: "
            package pve2netbox:shell@0.3.0;
            world rules-v0-3 { export pve2netbox:rules/reconcile@0.3.0; }
        ",
        world: "rules-v0-3",
        path: "v0.3.0",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_rules_world_v0_3",
        default_bindings_module: "pve2netbox_rules::component_v0_3::bindings",
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
            wit_version: "0.3.0".to_owned(),
        }
    }

    shared_steps!();

    fn reconcile(
        ctx: w::Context,
        items: Vec<w::ReconcileInput>,
    ) -> Vec<Result<w::Reconciled, w::RuleError>> {
        let ctx = context_in(ctx);
        // The configs and children stay JSON text: the rule set reads them (a bad one fails
        // its own guest).
        let items = items
            .into_iter()
            .map(|i| {
                let (guest, config, network) = guest_parts(i.guest);
                let (current, children) = match i.current {
                    Some(mut r) => {
                        let children = r
                            .children_read
                            .then(|| model::JsonText(std::mem::take(&mut r.children)));
                        (Some(netbox_in(r)), children)
                    }
                    None => (None, None),
                };
                model::JsonReconcileInput {
                    guest,
                    config,
                    current,
                    network,
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

/// Exports a `RuleSet` implementation as a WIT 0.3 component.
///
/// ```text
/// #[cfg(target_arch = "wasm32")]
/// pve2netbox_rules::export_rules_v0_3!(MyRules);
/// ```
#[macro_export]
macro_rules! export_rules_v0_3 {
    ($rules:ty) => {
        type __Pve2netboxRulesComponentV03 = $crate::component_v0_3::Component<$rules>;
        $crate::component_v0_3::bindings::__export_rules_world_v0_3!(
            __Pve2netboxRulesComponentV03 with_types_in $crate::component_v0_3::bindings
        );
    };
}

/// 0.3's field changes: name and values as text.
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
