//! A rule component that reads a file (`wasi:filesystem` import), for the host's sandbox tests:
//! it answers every guest with a skip whose reason is the file's text or the error.
//!
//! The host loads it (Python and JavaScript runtimes import the filesystem whether they read
//! files or not) and must give it nothing: no directory is preopened, so every open fails.

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
            name: "imports-fs".into(),
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
        let probe: String =
            std::fs::read_to_string("/etc/hostname").unwrap_or_else(|e| e.to_string());
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
