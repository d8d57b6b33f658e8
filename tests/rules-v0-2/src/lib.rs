//! The default rules exported against WIT `pve2netbox:rules@0.2.0`: the host's tests load it to
//! show that a module built before 0.3 still loads and maps VMs exactly as it did (the same
//! field changes as the 0.3 default for a guest whose children the 0.3 default leaves alone),
//! and that the sync keeps its VMs' children (`keep`).
//!
//! Built by `host/tests/rules_common` for `wasm32-wasip2`, like the misbehaving modules.

#[cfg(target_arch = "wasm32")]
guest_default::export_rules_v0_2!(guest_default::DefaultRules);
