//! The default rules' component exports (WIT 0.4): `reconcile`, the sync's call, read and
//! written by hand (`pve2netbox_rules::component_direct`: wit-bindgen's glue for it cost ~5k
//! instructions a VM that the rules compiled natively do not pay); the other functions, and the
//! component's type, are wit-bindgen's, generated here from the same `rules.wit` with
//! `reconcile` skipped and the library's bindings' types.
//!
//! Generated in this crate rather than the library: wit-bindgen names its exported macros after
//! the interface, so the library cannot hold a second set for the same interface, and the
//! component's type it emits must be linked only into the module that exports it.

use pve2netbox_rules::component::Component;
use pve2netbox_rules::component::bindings::exports::pve2netbox::rules::reconcile::Guest as Generated;
use pve2netbox_rules::component::bindings::pve2netbox::rules::types as w;

use crate::DefaultRules;

wit_bindgen::generate!({
    world: "rules",
    path: "../wit/v0.4.0",
    skip: ["reconcile"],
    with: {
        "pve2netbox:rules/types@0.4.0": pve2netbox_rules::component::bindings::pve2netbox::rules::types,
    },
});

/// The default rules' shell.
struct Shell;

type Rules = Component<DefaultRules>;

/// The generated functions, as the library's shell implements them (all but `reconcile`).
impl exports::pve2netbox::rules::reconcile::Guest for Shell {
    fn info() -> w::ModuleInfo {
        Rules::info()
    }

    fn default_policies() -> Vec<w::FieldPolicy> {
        Rules::default_policies()
    }

    fn normalize_desired(
        ctx: w::Context,
        guests: Vec<w::PveGuest>,
    ) -> Vec<Result<w::Desired, w::RuleError>> {
        Rules::normalize_desired(ctx, guests)
    }

    fn normalize_current(
        ctx: w::Context,
        records: Vec<w::NetboxVm>,
    ) -> Vec<Result<w::Vm, w::RuleError>> {
        Rules::normalize_current(ctx, records)
    }

    fn diff(ctx: w::Context, pairs: Vec<w::DiffInput>) -> Vec<Result<w::VmChanges, w::RuleError>> {
        Rules::diff(ctx, pairs)
    }
}

export!(Shell);

// The shared texts' copies come from the arena directly (no call through the global
// allocator's shims), and the post-return frees the answers' blocks by counting them off it
// (`BulkFree`).
pve2netbox_rules::export_reconcile_direct!(
    DefaultRules,
    alloc = &crate::ALLOCATOR,
    free = crate::ALLOCATOR.bulk_free()
);
