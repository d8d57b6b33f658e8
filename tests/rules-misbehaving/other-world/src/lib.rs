//! A component of another world (`pve2netbox:rules@0.99.0`), for the host's version refusal test.

wit_bindgen::generate!({ world: "rules", path: "wit" });

struct Module;

impl exports::pve2netbox::rules::reconcile::Guest for Module {
    fn info() -> String {
        "rules-other-world 0.99.0".into()
    }
}

// Exported only for the wasm target: the export names break a native cdylib link.
#[cfg(target_arch = "wasm32")]
export!(Module);
