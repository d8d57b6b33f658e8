//! The host side of `pve2netbox:rules/defaults@0.3.0`, the import of world `site-rules`: a module
//! that builds on the default rules (a Python or JavaScript module, which cannot link the
//! `guest-default` crate) calls them here.
//!
//! Each call runs the embedded default rules in a store of their own, under the calling module's
//! limits (a fresh instance per call, as for any batch call). A failure of theirs (a trap, an
//! exceeded limit) traps the calling module's batch with the default rules' error as the cause.
//! The types are the 0.3 bindings' own on both sides, so nothing is converted.

use super::RulesModule;
use super::store::State;
use super::v0_3_0::defaults::Host;
use super::v0_3_0::types::{
    Context, Desired, DiffInput, FieldPolicy, NetboxVm, PveGuest, RuleError, Vm, VmChanges,
};

/// The import interface, without its version.
pub(crate) const DEFAULTS_INTERFACE: &str = "pve2netbox:rules/defaults";

/// Whether a component's imports include the default rules.
pub(crate) fn imports_defaults(imports: &[String]) -> bool {
    imports.iter().any(|i| {
        i.strip_prefix(DEFAULTS_INTERFACE)
            .is_some_and(|rest| rest.starts_with('@'))
    })
}

impl State {
    /// The default rules this store's module builds on. The loader links them for every module
    /// that imports `defaults`, so their absence is a host bug, reported as a trap.
    fn defaults(&self) -> wasmtime::Result<RulesModule> {
        self.defaults.clone().ok_or_else(|| {
            wasmtime::Error::msg("the host did not link the default rules for this module")
        })
    }
}

/// The default rules' error as the cause of the calling module's trap.
fn failed(e: super::RulesError) -> wasmtime::Error {
    wasmtime::Error::msg(format!("the host's default rules failed: {e}"))
}

impl Host for State {
    fn default_policies(&mut self) -> wasmtime::Result<Vec<FieldPolicy>> {
        self.defaults()?
            .call_latest("default-policies", 0, |s, i, ex| ex.default_policies(i, s))
            .map_err(failed)
    }

    fn normalize_desired(
        &mut self,
        ctx: Context,
        guests: Vec<PveGuest>,
    ) -> wasmtime::Result<Vec<Result<Desired, RuleError>>> {
        self.defaults()?
            .call_latest("normalize-desired", guests.len(), |s, i, ex| {
                ex.normalize_desired(i, s, &ctx, &guests)
            })
            .map_err(failed)
    }

    fn normalize_current(
        &mut self,
        ctx: Context,
        records: Vec<NetboxVm>,
    ) -> wasmtime::Result<Vec<Result<Vm, RuleError>>> {
        self.defaults()?
            .call_latest("normalize-current", records.len(), |s, i, ex| {
                ex.normalize_current(i, s, &ctx, &records)
            })
            .map_err(failed)
    }

    fn diff(
        &mut self,
        ctx: Context,
        pairs: Vec<DiffInput>,
    ) -> wasmtime::Result<Vec<Result<VmChanges, RuleError>>> {
        self.defaults()?
            .call_latest("diff", pairs.len(), |s, i, ex| ex.diff(i, s, &ctx, &pairs))
            .map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_is_recognized_by_interface_not_by_prefix() {
        let with = ["pve2netbox:rules/defaults@0.3.0".to_string()];
        assert!(imports_defaults(&with));
        let without = [
            "pve2netbox:rules/types@0.3.0".to_string(),
            "pve2netbox:rules/defaults-extra@0.3.0".to_string(),
        ];
        assert!(!imports_defaults(&without));
    }
}
