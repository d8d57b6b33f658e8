//! Host bindings of WIT `pve2netbox:rules@0.4.0` (`wit/v0.4.0/`), the latest version: its types,
//! and the two functions whose shape 0.4 changed (`diff`, whose `field-change` is 0.4's, and
//! `reconcile`, which takes a `reconcile-batch`).
//!
//! A 0.4 module's other functions (`info`, `default-policies`, `normalize-desired`,
//! `normalize-current`) have 0.3's types exactly, and wasmtime checks a component function's
//! types by structure, not by package: they are called through `v0_3_0`, so `rules eval`,
//! `rules test` and the `defaults` import serve both versions with one body. `v0_3_0::Exports`
//! holds this module's [`Exports`] for a 0.4 module and calls these two through it; `diff`'s
//! answer is handed back in 0.3's shape (`convert::v4::vm_changes_to_v3`).

use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};

wasmtime::component::bindgen!({
    inline: "
        package pve2netbox:host@0.4.0;
        world rules-imports-v0-4 {
            import pve2netbox:rules/types@0.4.0;
        }
    ",
    path: "../wit/v0.4.0",
});

pub(crate) use self::pve2netbox::rules::types;
use guest_default::model::{Reconciled, RuleError};
use types::{ReconcileBatch, RuleError as WitRuleError, VmChanges};

use super::answers::Answers;
use super::batch_abi::BatchIn;
use super::store::State;
use super::v0_3_0::types as v3;

/// `types` has no functions, but the exported interface `use`s it, which makes it an import of
/// the component; the linker needs its (empty) host side.
impl types::Host for State {}

/// Links the contract's own import (the empty `types` instance of 0.4).
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<State>,
) -> wasmtime::Result<()> {
    RulesImportsV04::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
}

type DiffFn<'a> =
    TypedFunc<(&'a v3::Context, &'a [v3::DiffInput]), (Vec<Result<VmChanges, WitRuleError>>,)>;
/// `reconcile`'s answer is lifted by [`Answers`] straight into the model (see `answers`); its
/// type is checked as the bindings' `list<result<reconciled, rule-error>>`.
/// The batch is lowered by [`BatchIn`] (see `batch_abi`).
type ReconcileFn<'a> = TypedFunc<(&'a v3::Context, BatchIn<'a>), (Answers,)>;

/// The export indices of the functions 0.4 changed, in one component.
pub(crate) struct Exports {
    diff: ComponentExportIndex,
    reconcile: ComponentExportIndex,
}

impl Exports {
    /// Looks the functions up under the exported interface `interface` (its exact name).
    pub(crate) fn new(component: &Component, interface: &str) -> Result<Self, String> {
        let iface = component
            .get_export_index(None, interface)
            .ok_or_else(|| format!("no exported instance `{interface}`"))?;
        let func = |name: &str| {
            component
                .get_export_index(Some(&iface), name)
                .ok_or_else(|| format!("`{interface}` does not export function `{name}`"))
        };
        Ok(Exports {
            diff: func("diff")?,
            reconcile: func("reconcile")?,
        })
    }

    /// Checks both functions' signatures against the contract.
    pub(crate) fn typecheck(
        &self,
        instance: &Instance,
        store: &mut Store<State>,
    ) -> wasmtime::Result<()> {
        let _: DiffFn<'_> = instance.get_typed_func(&mut *store, self.diff)?;
        let _: ReconcileFn<'_> = instance.get_typed_func(&mut *store, self.reconcile)?;
        Ok(())
    }

    pub(crate) fn diff(
        &self,
        i: &Instance,
        s: &mut Store<State>,
        ctx: &v3::Context,
        pairs: &[v3::DiffInput],
    ) -> wasmtime::Result<Vec<Result<VmChanges, WitRuleError>>> {
        let f: DiffFn<'_> = i.get_typed_func(&mut *s, self.diff)?;
        Ok(f.call(s, (ctx, pairs))?.0)
    }

    /// The fused call, on one batch: the answers in the model's types.
    pub(crate) fn reconcile(
        &self,
        i: &Instance,
        s: &mut Store<State>,
        ctx: &v3::Context,
        batch: &ReconcileBatch,
    ) -> wasmtime::Result<Vec<Result<Reconciled, RuleError>>> {
        let f: ReconcileFn<'_> = i.get_typed_func(&mut *s, self.reconcile)?;
        Ok(f.call(s, (ctx, BatchIn(batch)))?.0.0)
    }
}
