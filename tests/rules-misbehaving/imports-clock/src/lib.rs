//! A rule component that reads the wall clock (`wasi:clocks` import), for the host's capability
//! tests.
//!
//! The host must refuse it when loading: rules must be deterministic, and a clock would make the
//! same inputs map differently from run to run (e.g. a `last seen` stamp written into every VM).

wit_bindgen::generate!({ world: "rules", path: "../../../wit/v0.1.0" });

use exports::pve2netbox::rules::reconcile::Guest as Reconcile;
use pve2netbox::rules::types::{
    Context, Desired, DiffInput, FieldChange, FieldPolicy, ModuleInfo, NetboxVm,
    PveGuest as ProxmoxGuest, RuleError, Vm,
};

struct Module;

impl Reconcile for Module {
    fn info() -> ModuleInfo {
        ModuleInfo {
            name: "imports-clock".into(),
            version: "0.1.0".into(),
            wit_version: "0.1.0".into(),
        }
    }

    fn default_policies() -> Vec<FieldPolicy> {
        Vec::new()
    }

    fn normalize_desired(
        _ctx: Context,
        guests: Vec<ProxmoxGuest>,
    ) -> Vec<Result<Desired, RuleError>> {
        let probe = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        guests
            .iter()
            .map(|_| Ok(Desired::Skip(probe.clone())))
            .collect()
    }

    fn normalize_current(_ctx: Context, records: Vec<NetboxVm>) -> Vec<Result<Vm, RuleError>> {
        records
            .iter()
            .map(|_| {
                Err(RuleError {
                    code: "unsupported".into(),
                    message: "probe module".into(),
                })
            })
            .collect()
    }

    fn diff(_ctx: Context, pairs: Vec<DiffInput>) -> Vec<Result<Vec<FieldChange>, RuleError>> {
        pairs.iter().map(|_| Ok(Vec::new())).collect()
    }
}

// Exported only for the wasm target: the export names break a native cdylib link.
#[cfg(target_arch = "wasm32")]
export!(Module);
