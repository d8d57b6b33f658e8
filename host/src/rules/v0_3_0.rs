//! Host bindings of WIT `pve2netbox:rules@0.3.0` (`wit/v0.3.0/`): the types, and the exported
//! functions as typed functions looked up once per component by export index. A 0.4 module is
//! called through these too, but for the two functions 0.4 changed (`diff`, `reconcile`), which
//! go through `v0_4_0` (see there why that is sound).
//!
//! 0.3.0 keeps every function of 0.2.0 but widens records (`pve-guest.network`,
//! `netbox-vm.children`, `vm.children`, `reconciled-vm.children`) and `diff`'s result
//! (`vm-changes`), so a 0.1 or 0.2 module no longer type-checks against these Rust types: those
//! are called through `v0_2_0`, with `convert` moving the model into either version's types.
//!
//! Bindgen generates the types and the `defaults` import of world `site-rules` (a world that
//! imports `types` and `defaults`; the host side of `defaults` is in `super::defaults`); every
//! exported function's signature is checked when the module is loaded (before any batch), and one
//! loaded component serves every call without resolving names again.

use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};

wasmtime::component::bindgen!({
    inline: "
        package pve2netbox:host@0.3.0;
        world rules-imports {
            import pve2netbox:rules/types@0.3.0;
            import pve2netbox:rules/defaults@0.3.0;
        }
    ",
    path: "../wit/v0.3.0",
    // A failing call of the default rules traps the calling module's batch.
    imports: { default: trappable },
});

pub(crate) use self::pve2netbox::rules::{defaults, types};
use types::{
    Context, Desired, DiffInput, FieldPolicy, ModuleInfo, NetboxVm, PveGuest, ReconcileInput,
    Reconciled, RuleError, Vm, VmChanges,
};

use super::store::State;

/// `types` has no functions, but the exported interface `use`s it, which makes it an import of
/// the component; the linker needs its (empty) host side.
impl types::Host for State {}

/// Links the contract's own imports (the empty `types` instance of 0.3, and `defaults`).
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<State>,
) -> wasmtime::Result<()> {
    RulesImports::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
}

type InfoFn = TypedFunc<(), (ModuleInfo,)>;
type PoliciesFn = TypedFunc<(), (Vec<FieldPolicy>,)>;
type DesiredFn<'a> = TypedFunc<(&'a Context, &'a [PveGuest]), (Vec<Result<Desired, RuleError>>,)>;
type CurrentFn<'a> = TypedFunc<(&'a Context, &'a [NetboxVm]), (Vec<Result<Vm, RuleError>>,)>;
type DiffFn<'a> = TypedFunc<(&'a Context, &'a [DiffInput]), (Vec<Result<VmChanges, RuleError>>,)>;
type ReconcileFn<'a> =
    TypedFunc<(&'a Context, &'a [ReconcileInput]), (Vec<Result<Reconciled, RuleError>>,)>;

/// The export indices of the `reconcile` interface's functions in one component.
pub(crate) struct Exports {
    /// A 0.4 module's `diff` and `reconcile`.
    v4: Option<super::v0_4_0::Exports>,
    info: ComponentExportIndex,
    default_policies: ComponentExportIndex,
    normalize_desired: ComponentExportIndex,
    normalize_current: ComponentExportIndex,
    diff: ComponentExportIndex,
    reconcile: ComponentExportIndex,
}

impl Exports {
    /// Looks the functions up under the exported interface `interface` (its exact name), of
    /// WIT 0.4 when `v4`.
    pub(crate) fn new(component: &Component, interface: &str, v4: bool) -> Result<Self, String> {
        let iface = component
            .get_export_index(None, interface)
            .ok_or_else(|| format!("no exported instance `{interface}`"))?;
        let func = |name: &str| {
            component
                .get_export_index(Some(&iface), name)
                .ok_or_else(|| format!("`{interface}` does not export function `{name}`"))
        };
        Ok(Exports {
            v4: if v4 {
                Some(super::v0_4_0::Exports::new(component, interface)?)
            } else {
                None
            },
            info: func("info")?,
            default_policies: func("default-policies")?,
            normalize_desired: func("normalize-desired")?,
            normalize_current: func("normalize-current")?,
            diff: func("diff")?,
            reconcile: func("reconcile")?,
        })
    }

    /// Checks every function's signature against the contract.
    pub(crate) fn typecheck(
        &self,
        instance: &Instance,
        store: &mut Store<State>,
    ) -> wasmtime::Result<()> {
        let _: InfoFn = instance.get_typed_func(&mut *store, self.info)?;
        let _: PoliciesFn = instance.get_typed_func(&mut *store, self.default_policies)?;
        let _: DesiredFn<'_> = instance.get_typed_func(&mut *store, self.normalize_desired)?;
        let _: CurrentFn<'_> = instance.get_typed_func(&mut *store, self.normalize_current)?;
        if let Some(v4) = &self.v4 {
            return v4.typecheck(instance, store);
        }
        let _: DiffFn<'_> = instance.get_typed_func(&mut *store, self.diff)?;
        let _: ReconcileFn<'_> = instance.get_typed_func(&mut *store, self.reconcile)?;
        Ok(())
    }

    /// A 0.4 module's own `diff` and `reconcile`; `None` for a 0.3 module.
    pub(crate) fn v4(&self) -> Option<&super::v0_4_0::Exports> {
        self.v4.as_ref()
    }

    pub(crate) fn info(&self, i: &Instance, s: &mut Store<State>) -> wasmtime::Result<ModuleInfo> {
        let f: InfoFn = i.get_typed_func(&mut *s, self.info)?;
        Ok(f.call(s, ())?.0)
    }

    pub(crate) fn default_policies(
        &self,
        i: &Instance,
        s: &mut Store<State>,
    ) -> wasmtime::Result<Vec<FieldPolicy>> {
        let f: PoliciesFn = i.get_typed_func(&mut *s, self.default_policies)?;
        Ok(f.call(s, ())?.0)
    }

    pub(crate) fn normalize_desired(
        &self,
        i: &Instance,
        s: &mut Store<State>,
        ctx: &Context,
        guests: &[PveGuest],
    ) -> wasmtime::Result<Vec<Result<Desired, RuleError>>> {
        let f: DesiredFn<'_> = i.get_typed_func(&mut *s, self.normalize_desired)?;
        Ok(f.call(s, (ctx, guests))?.0)
    }

    pub(crate) fn normalize_current(
        &self,
        i: &Instance,
        s: &mut Store<State>,
        ctx: &Context,
        records: &[NetboxVm],
    ) -> wasmtime::Result<Vec<Result<Vm, RuleError>>> {
        let f: CurrentFn<'_> = i.get_typed_func(&mut *s, self.normalize_current)?;
        Ok(f.call(s, (ctx, records))?.0)
    }

    pub(crate) fn diff(
        &self,
        i: &Instance,
        s: &mut Store<State>,
        ctx: &Context,
        pairs: &[DiffInput],
    ) -> wasmtime::Result<Vec<Result<VmChanges, RuleError>>> {
        if let Some(v4) = &self.v4 {
            use super::convert::v4 as cv;
            return Ok(v4
                .diff(i, s, ctx, pairs)?
                .into_iter()
                .map(|r| r.map(cv::vm_changes_to_v3).map_err(cv::rule_error_to_v3))
                .collect());
        }
        let f: DiffFn<'_> = i.get_typed_func(&mut *s, self.diff)?;
        Ok(f.call(s, (ctx, pairs))?.0)
    }

    /// The fused call of a 0.3 module (a 0.4 module's: [`Self::v4`]).
    pub(crate) fn reconcile(
        &self,
        i: &Instance,
        s: &mut Store<State>,
        ctx: &Context,
        items: &[ReconcileInput],
    ) -> wasmtime::Result<Vec<Result<Reconciled, RuleError>>> {
        let f: ReconcileFn<'_> = i.get_typed_func(&mut *s, self.reconcile)?;
        Ok(f.call(s, (ctx, items))?.0)
    }
}
