//! The default rules exported against WIT `pve2netbox:rules@0.3.0`: the host's tests load it to
//! show that a module built before 0.4 still loads and maps VMs and their children exactly as
//! the default rules do through 0.4.
//!
//! Built by `host/tests/rules_common` for `wasm32-wasip2`, like the misbehaving modules.

#[cfg(target_arch = "wasm32")]
pve2netbox_rules::export_rules_v0_3!(guest_default::DefaultRules);
