//! A rule component that reads the wall clock (`wasi:clocks` import) and the environment, for the
//! host's sandbox tests: it answers every guest with a skip whose reason is what it read
//! (`<seconds since 1970> <number of environment variables>`).
//!
//! The host loads it (Python and JavaScript runtimes import the clocks whether they read them or
//! not) and must give it nothing real: the wall clock says 1970-01-01 and the environment is
//! empty, so the same inputs map the same way on every run.

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
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let probe = format!("{secs} {}", std::env::vars().count());
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
