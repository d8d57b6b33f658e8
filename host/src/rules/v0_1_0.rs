//! The host side of WIT `pve2netbox:rules@0.1.0` (`wit/v0.1.0/`, frozen): only its (empty)
//! `types` import, which a 0.1 module imports under its own version and the linker must serve.
//!
//! One module per supported WIT version, as Zed's extension host does. A 0.1 module's exported
//! functions are called through the 0.2 bindings (`v0_2_0`): 0.2.0 carries every 0.1.0 type
//! and function unchanged, and wasmtime type-checks component values structurally, so the
//! 0.2 typed functions check against a 0.1 module at load and no logic is copied per version.
//! The `reconcile` of a 0.1 module is its three steps (`RulesModule::reconcile`).

wasmtime::component::bindgen!({
    inline: "
        package pve2netbox:host@0.1.0;
        world rules-types { import pve2netbox:rules/types@0.1.0; }
    ",
    path: "../wit/v0.1.0",
});

use self::pve2netbox::rules::types;

use super::store::State;

/// `types` has no functions, but the exported interface `use`s it, which makes it an import of
/// the component; the linker needs its (empty) host side.
impl types::Host for State {}

/// Links the contract's own imports (the empty `types` instance of 0.1).
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<State>,
) -> wasmtime::Result<()> {
    RulesTypes::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
}
