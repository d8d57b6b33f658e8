//! A rule component that opens a TCP connection (`wasi:sockets` import), for the host's sandbox
//! tests: it answers every guest with a skip whose reason is `connected` or the error.
//!
//! The host loads it (Python and JavaScript runtimes import the sockets whether they use them or
//! not) and must give it nothing: no socket is permitted, so every connect fails.

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
            name: "imports-socket".into(),
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
        let probe: String = match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => "connected".into(),
            Err(e) => e.to_string(),
        };
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
