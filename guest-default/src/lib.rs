//! pve2netbox's default rules: Proxmox guests to NetBox virtual machines.
//!
//! The logic is plain Rust, one small module per concern, tested natively, on the guest model
//! of the `pve2netbox-rules` library, whose `export_rules!` exports [`DefaultRules`] as the WASM
//! component the host embeds. The library's modules are re-exported here (`model`, `component`,
//! ...) for code written before the split.

pub mod arena;
pub mod children;

pub use pve2netbox_rules::{
    component, component_v0_2, component_v0_3, export_rules, export_rules_v0_2, export_rules_v0_3,
    model,
};

mod config;
mod cpu;
mod current;
mod desired;
pub mod diff;
mod disks;
mod memory;
mod notes;
mod numbers;
mod platform;
pub mod policy;
mod property;
pub mod settings;
mod status;
pub mod tags;
mod units;
mod word_hash;

pub use desired::kind_object;

use std::borrow::Cow;

use model::{
    Context, Desired, DiffInput, Field, FieldChange, FieldPolicy, Guest, JsonReconcileInput,
    ModuleInfo, NetboxVm, ReconcileInput, Reconciled, ReconciledVm, RuleError, RuleSet, Vm,
    WIT_VERSION,
};

/// The default rules (see `README.md` and `policy` for the choices).
pub struct DefaultRules;

impl RuleSet for DefaultRules {
    fn info() -> ModuleInfo {
        ModuleInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            wit_version: WIT_VERSION.to_owned(),
        }
    }

    /// The fields' defaults, then the child collections' (`children::default_policies`).
    fn default_policies() -> Vec<FieldPolicy> {
        let mut all = policy::default_policies();
        all.extend(children::default_policies());
        all
    }

    fn normalize_desired(ctx: &Context, guests: Vec<Guest>) -> Vec<Result<Desired, RuleError>> {
        match settings::Prepared::new(ctx) {
            Ok(p) => guests
                .into_iter()
                .map(|g| desired::desired(g, &p))
                .collect(),
            Err(e) => {
                let err = setting_error(e);
                guests.iter().map(|_| Err(err.clone())).collect()
            }
        }
    }

    fn normalize_current(_ctx: &Context, records: Vec<NetboxVm>) -> Vec<Result<Vm, RuleError>> {
        records
            .into_iter()
            .map(|r| Ok(current::current(r)))
            .collect()
    }

    fn diff(ctx: &Context, pairs: Vec<DiffInput>) -> Vec<Result<Vec<FieldChange>, RuleError>> {
        let pol = policy::Policies::new(ctx);
        pairs.iter().map(|p| diff::diff(&pol, p)).collect()
    }

    /// The three steps fused, one guest at a time: settings and policies are prepared once per
    /// batch, and the desired VM goes straight from `desired` into `diff` (no batch of desired
    /// VMs, no batch of pairs, no copies). It agrees with `model::reconcile_in_three_steps`
    /// (`tests/reconcile.rs`).
    fn reconcile(ctx: &Context, items: Vec<ReconcileInput>) -> Vec<Result<Reconciled, RuleError>> {
        let prepared = match settings::Prepared::new(ctx) {
            Ok(p) => p,
            Err(e) => {
                let err = setting_error(e);
                return items.iter().map(|_| Err(err.clone())).collect();
            }
        };
        let pol = policy::Policies::new(ctx);
        let kids = children::ChildContext::new(ctx);
        items
            .into_iter()
            .map(|item| reconcile_one(item, &prepared, &pol, &kids))
            .collect()
    }

    fn normalize_desired_children(
        ctx: &Context,
        guest: &Guest,
        network: &children::NetworkSource,
    ) -> Result<children::VmChildren, RuleError> {
        let config: Vec<(&str, &str)> = guest
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        children::normalize_desired_children(
            ctx,
            &children::GuestSources {
                kind: guest.kind,
                config_read: guest.config_read,
                config: &config,
                network,
            },
        )
    }

    fn normalize_current_children(
        _ctx: &Context,
        json: &str,
        read: bool,
    ) -> Result<children::VmChildren, RuleError> {
        children::normalize_current_children(json, read)
    }

    fn diff_children(
        ctx: &Context,
        desired: &children::VmChildren,
        current: Option<&children::VmChildren>,
        current_disk: Option<u64>,
        vm_changes: &mut Vec<FieldChange>,
    ) -> Result<Vec<children::ChildChange>, RuleError> {
        children::diff_children(ctx, desired, current, current_disk, vm_changes)
    }

    /// `reconcile` reading each config straight from its JSON text (`config::scan_json`, no
    /// owned pairs); a text that is not the plain WIT shape is parsed in full as the default
    /// does, with the same `bad-config` error. Agrees with `reconcile` (`tests/reconcile.rs`).
    fn reconcile_json(
        ctx: &Context,
        items: Vec<JsonReconcileInput>,
    ) -> Vec<Result<Reconciled, RuleError>> {
        let Ok(prepared) = settings::Prepared::new(ctx) else {
            // Every VM fails: bad configs with their own error, as the default orders them.
            return model::reconcile_json_by_parsing::<Self>(ctx, items);
        };
        let pol = policy::Policies::new(ctx);
        let kids = children::ChildContext::new(ctx);
        items
            .into_iter()
            .map(|item| reconcile_one_json(item, &prepared, &pol, &kids))
            .collect()
    }
}

/// A bad setting as the rule error of every VM in the call; reported under normalize-desired,
/// the step that reads settings, by `reconcile` too so the two agree.
fn setting_error(e: settings::SettingError) -> RuleError {
    RuleError::new(
        "bad-setting",
        format!("{e} (guest-default, normalize-desired)"),
    )
}

/// The children settings and ownerships of a call, or their `bad-setting` error (reported for
/// each VM where its children's steps would report it).
type Kids = Result<children::ChildContext, RuleError>;

/// normalize-desired, normalize-current (only for a VM: a skip never compares) and diff of one
/// guest, then its children's three steps.
fn reconcile_one(
    item: ReconcileInput,
    prepared: &settings::Prepared,
    pol: &policy::Policies,
    kids: &Kids,
) -> Result<Reconciled, RuleError> {
    let ReconcileInput {
        guest,
        current,
        network,
        children,
    } = item;
    // Computed before the VM's desired state takes the guest; reported only for a guest the VM
    // steps reconcile (a skip or the VM's own error decides first, as in the three steps).
    let config: Vec<(&str, &str)> = guest
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let desired_children = desired_children(
        kids,
        &guest,
        &config,
        &network,
        compares_children(&current, &children),
    )
    .map(children::VmChildren::into_owned);
    drop(config);
    let desired = desired::desired(guest, prepared)?;
    compare(
        desired,
        current,
        Children {
            desired: desired_children,
            current: children,
        },
        pol,
        kids,
    )
}

/// [`reconcile_one`] for a guest whose config is JSON text.
fn reconcile_one_json(
    item: JsonReconcileInput,
    prepared: &settings::Prepared,
    pol: &policy::Policies,
    kids: &Kids,
) -> Result<Reconciled, RuleError> {
    let JsonReconcileInput {
        mut guest,
        config,
        current,
        network,
        children,
    } = item;
    let compares = compares_children(&current, &children);
    // The desired children borrow from the config's text (through `view`), the network
    // answer and the settings, all of which outlive the comparison.
    let pairs = config::scan_json(&config);
    let view: Option<Vec<(&str, &str)>> = pairs.as_ref().map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect()
    });
    match &view {
        Some(view) => {
            let cfg = config::ConfigView::from_pairs(guest.kind, view.iter().copied());
            // The disks read once for the VM's `disk` and its virtual disks, when both are
            // computed (the config's keys were sorted out for the VM just above).
            let disks = (compares && guest.config_read && kids.is_ok())
                .then(|| children::vdisk::config_disks(&cfg.disks));
            let desired_children = match &disks {
                Some(disks) => desired_children_sharing(kids, &guest, view, &network, disks),
                None => desired_children(kids, &guest, view, &network, compares),
            };
            let desired = desired::desired_with_disks(guest, cfg, prepared, disks.as_ref())?;
            compare(
                desired,
                current,
                Children {
                    desired: desired_children,
                    current: children,
                },
                pol,
                kids,
            )
        }
        None => {
            model::parse_guest_config(&mut guest, &config)?;
            let view: Vec<(&str, &str)> = guest
                .config
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let desired_children = desired_children(kids, &guest, &view, &network, compares)
                .map(children::VmChildren::into_owned);
            drop(view);
            compare(
                desired::desired(guest, prepared)?,
                current,
                Children {
                    desired: desired_children,
                    current: children,
                },
                pol,
                kids,
            )
        }
    }
}

/// Whether a guest's children can come to anything but an error: not for a VM that exists and
/// whose current children were not read (every collection then compares as `keep`, and the
/// VM's `disk` and primary IPs are left as the 0.2 diff has them).
fn compares_children(current: &Option<NetboxVm>, children: &Option<model::JsonText>) -> bool {
    current.is_none() || children.is_some()
}

/// What the children steps read of one guest.
fn guest_sources<'a>(
    guest: &Guest,
    config: &'a [(&'a str, &'a str)],
    network: &'a children::NetworkSource,
) -> children::GuestSources<'a> {
    children::GuestSources {
        kind: guest.kind,
        config_read: guest.config_read,
        config,
        network,
    }
}

/// A guest's desired children from its config properties, borrowing their texts; when they
/// cannot be compared (`compares` false) only their error, with every collection `keep`.
fn desired_children<'a>(
    kids: &'a Kids,
    guest: &Guest,
    config: &'a [(&'a str, &'a str)],
    network: &'a children::NetworkSource,
    compares: bool,
) -> Result<children::VmChildren<Cow<'a, str>>, RuleError> {
    let kids = kids.as_ref().map_err(Clone::clone)?;
    let src = guest_sources(guest, config, network);
    if compares {
        children::read_desired_children(kids, &src)
    } else {
        children::check_desired_children(&src).map(|()| children::VmChildren::default())
    }
}

/// [`desired_children`] of a guest whose children are compared, its disks read already.
fn desired_children_sharing<'a>(
    kids: &'a Kids,
    guest: &Guest,
    config: &'a [(&'a str, &'a str)],
    network: &'a children::NetworkSource,
    disks: &'a children::vdisk::ConfigDisks<'a>,
) -> Result<children::VmChildren<Cow<'a, str>>, RuleError> {
    let kids = kids.as_ref().map_err(Clone::clone)?;
    let src = guest_sources(guest, config, network);
    children::read_desired_children_sharing(kids, &src, disks)
}

/// The children side of one guest: its desired children (or their error), in either text
/// type, and NetBox's current children JSON (`None`: not read).
struct Children<D> {
    desired: Result<children::VmChildren<D>, RuleError>,
    current: Option<model::JsonText>,
}

/// normalize-current (for a VM) and diff of a desired state, then the children's.
fn compare<D: AsRef<str>>(
    desired: Desired,
    current: Option<NetboxVm>,
    kids: Children<D>,
    pol: &policy::Policies,
    prep: &Kids,
) -> Result<Reconciled, RuleError> {
    let desired = match desired {
        Desired::Vm(d) => d,
        Desired::Skip(reason) => return Ok(Reconciled::Skip(reason)),
    };
    // In the order of the three steps' errors: normalize-desired (the VM's, then its
    // children's), normalize-current (likewise), diff.
    let desired_children = kids.desired?;
    let current_disk = current.as_ref().and_then(|c| c.disk);
    let current_children = match &current {
        Some(_) => {
            let (json, read) = model::children_wit(kids.current.as_ref());
            Some(children::read_current_children(json, read)?)
        }
        None => None,
    };
    let pair = DiffInput {
        desired: desired.vm,
        current: current.map(current::current),
    };
    let mut changes = diff::diff(pol, &pair)?;
    // The children's settings error was reported with the desired children.
    let children = match prep {
        Ok(prep) => children::diff_children_with(
            prep,
            &desired_children,
            current_children.as_ref(),
            current_disk,
            &mut changes,
        ),
        Err(e) => return Err(e.clone()),
    };
    // The name moves out of the compared VM once the diff is done with it.
    let name = match pair.desired.name {
        Field::Set(name) => Some(name),
        Field::Keep | Field::Clear => None,
    };
    Ok(Reconciled::Vm(ReconciledVm {
        name,
        needs: desired.needs,
        changes,
        children,
    }))
}

// The default rules' own exports (see `export`); off for crates that export their own rules
// (see `component`).
#[cfg(all(target_arch = "wasm32", feature = "export-default"))]
mod export;

// The default rules' component allocates through a bump arena (see `arena` for why and why it
// is safe across calls). Tied to the same feature so a crate exporting its own rules chooses
// its own allocator.
#[cfg(all(target_arch = "wasm32", feature = "export-default"))]
#[global_allocator]
static ALLOCATOR: arena::BatchArena = arena::BatchArena::new();

// The component's `cabi_realloc` (the canonical ABI's allocator, which the host calls for every
// string and list it passes in) straight into the arena. std defines a weak one that goes
// through the global allocator's shims; this definition replaces it.
#[cfg(all(target_arch = "wasm32", feature = "export-default"))]
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    // SAFETY: the canonical ABI's contract for `realloc`, which `cabi_realloc` implements.
    unsafe { ALLOCATOR.cabi_realloc(old_ptr, old_len, align, new_len) }
}
