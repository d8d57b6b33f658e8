//! Host bindings of WIT `pve2netbox:rules@0.1.0` (`wit/v0.1.0/`, frozen once released).
//!
//! One module per supported WIT version, as Zed's extension host does: when 0.2 ships it gets
//! its own `v0_2_0.rs` and `latest` moves there; this module then only adapts 0.1 modules to the
//! latest types with `From` conversions and never copies logic.
//!
//! Bindgen generates the types only (a world that imports `types`); the five exported functions
//! are typed functions looked up once per component by export index, so their signatures are
//! type-checked when the module is loaded (before any batch), and one loaded component serves
//! every call without resolving names again.

use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};

wasmtime::component::bindgen!({
    inline: "
        package pve2netbox:host@0.1.0;
        world rules-types { import pve2netbox:rules/types@0.1.0; }
    ",
    path: "../wit/v0.1.0",
});

pub(crate) use self::pve2netbox::rules::types;
use types::{
    Context, Desired, DiffInput, FieldChange, FieldPolicy, ModuleInfo, NetboxVm, PveGuest,
    RuleError, Vm,
};

use super::store::State;

/// `types` has no functions, but the exported interface `use`s it, which makes it an import of
/// the component; the linker needs its (empty) host side.
impl types::Host for State {}

/// Links the contract's own imports (the empty `types` instance).
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<State>,
) -> wasmtime::Result<()> {
    RulesTypes::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
}

type InfoFn = TypedFunc<(), (ModuleInfo,)>;
type PoliciesFn = TypedFunc<(), (Vec<FieldPolicy>,)>;
type DesiredFn<'a> = TypedFunc<(&'a Context, &'a [PveGuest]), (Vec<Result<Desired, RuleError>>,)>;
type CurrentFn<'a> = TypedFunc<(&'a Context, &'a [NetboxVm]), (Vec<Result<Vm, RuleError>>,)>;
type DiffFn<'a> =
    TypedFunc<(&'a Context, &'a [DiffInput]), (Vec<Result<Vec<FieldChange>, RuleError>>,)>;

/// The export indices of `reconcile`'s functions in one component.
pub(crate) struct Exports {
    info: ComponentExportIndex,
    default_policies: ComponentExportIndex,
    normalize_desired: ComponentExportIndex,
    normalize_current: ComponentExportIndex,
    diff: ComponentExportIndex,
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
            info: func("info")?,
            default_policies: func("default-policies")?,
            normalize_desired: func("normalize-desired")?,
            normalize_current: func("normalize-current")?,
            diff: func("diff")?,
        })
    }

    /// Checks every function's signature against the contract.
    pub(crate) fn typecheck(
        &self,
        instance: &Instance,
        store: &mut Store<State>,
    ) -> wasmtime::Result<()> {
        instance.get_typed_func::<(), (ModuleInfo,)>(&mut *store, self.info)?;
        instance.get_typed_func::<(), (Vec<FieldPolicy>,)>(&mut *store, self.default_policies)?;
        let _: DesiredFn<'_> = instance.get_typed_func(&mut *store, self.normalize_desired)?;
        let _: CurrentFn<'_> = instance.get_typed_func(&mut *store, self.normalize_current)?;
        let _: DiffFn<'_> = instance.get_typed_func(&mut *store, self.diff)?;
        Ok(())
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
    ) -> wasmtime::Result<Vec<Result<Vec<FieldChange>, RuleError>>> {
        let f: DiffFn<'_> = i.get_typed_func(&mut *s, self.diff)?;
        Ok(f.call(s, (ctx, pairs))?.0)
    }
}
