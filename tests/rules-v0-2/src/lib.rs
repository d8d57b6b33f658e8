//! The default rules exported against WIT `pve2netbox:rules@0.2.0`: the host's tests load it to
//! show that a module built before 0.3 still loads and maps VMs exactly as it did (the same
//! field changes as the 0.3 default for a guest whose children the 0.3 default leaves alone),
//! and that the sync keeps its VMs' children (`keep`).
//!
//! It also misbehaves on request, so the sandbox's limits are tested through a 0.2 module's one
//! fused `reconcile` call too: the context setting `misbehave` (a JSON string) makes
//! `normalize-desired`, which the 0.2 `reconcile` runs first, spin forever (`"loop"`), allocate
//! until stopped (`"hog"`) or panic (`"panic"`). Without the setting it is the default rules.
//!
//! Built by `host/tests/rules_common` for `wasm32-wasip2`, like the misbehaving modules.

use guest_default::DefaultRules;
use pve2netbox_rules::model::{
    Context, Desired, DiffInput, FieldChange, FieldPolicy, Guest, ModuleInfo, NetboxVm, RuleError,
    RuleSet, Vm,
};

/// The default rules, misbehaving when the context asks (see the crate documentation).
pub struct MaybeMisbehaving;

/// Does what the context's `misbehave` setting asks; returns when it asks nothing.
fn misbehave(ctx: &Context) {
    let Some(kind) = ctx
        .settings
        .iter()
        .find(|(k, _)| k == "misbehave")
        .and_then(|(_, v)| v.to_value().as_str().map(str::to_owned))
    else {
        return;
    };
    match kind.as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "hog" => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                kept.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&kept);
            }
        }
        "panic" => panic!("deliberate panic in a 0.2 reconcile"),
        _ => {}
    }
}

impl RuleSet for MaybeMisbehaving {
    fn info() -> ModuleInfo {
        DefaultRules::info()
    }

    fn default_policies() -> Vec<FieldPolicy> {
        DefaultRules::default_policies()
    }

    fn normalize_desired(ctx: &Context, guests: Vec<Guest>) -> Vec<Result<Desired, RuleError>> {
        misbehave(ctx);
        DefaultRules::normalize_desired(ctx, guests)
    }

    fn normalize_current(ctx: &Context, records: Vec<NetboxVm>) -> Vec<Result<Vm, RuleError>> {
        DefaultRules::normalize_current(ctx, records)
    }

    fn diff(ctx: &Context, pairs: Vec<DiffInput>) -> Vec<Result<Vec<FieldChange>, RuleError>> {
        DefaultRules::diff(ctx, pairs)
    }
}

#[cfg(target_arch = "wasm32")]
pve2netbox_rules::export_rules_v0_2!(crate::MaybeMisbehaving);
