//! A rule component that misbehaves on request, for the host's limit tests.
//!
//! It implements `pve2netbox:rules@0.1.0` like any site module would. The behaviour of
//! `normalize-desired` is chosen by the context setting `misbehave` (a JSON string):
//! `"loop"` spins forever, `"hog"` allocates memory until stopped, `"grow-to"` grows linear
//! memory to exactly `bytes` (a JSON number) total, `"panic"` panics and `"unreachable"` executes
//! the `unreachable` instruction; with `misbehave_vmid` (a JSON number or string) only in the
//! batch that holds that guest. Without the setting it is a tiny well-behaved module (name and
//! status only), so the same file also proves the runtime keeps working after a failure.

wit_bindgen::generate!({ world: "rules", path: "../../../wit/v0.1.0" });

use exports::pve2netbox::rules::reconcile::Guest as Reconcile;
use pve2netbox::rules::types::{
    Context, CountField, DecimalField, Desired, DesiredVm, DiffInput, FieldChange, FieldPolicy,
    JsonField, ModuleInfo, NetboxVm, PveGuest as ProxmoxGuest, RefField, RuleError, TagsField,
    TextField, Vm,
};

struct Misbehaving;

fn setting<'a>(ctx: &'a Context, name: &str) -> Option<&'a str> {
    ctx.settings
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

fn empty_vm() -> Vm {
    Vm {
        name: TextField::Keep,
        status: TextField::Keep,
        site: RefField::Keep,
        device: RefField::Keep,
        role: RefField::Keep,
        vm_type: RefField::Keep,
        platform: RefField::Keep,
        tenant: RefField::Keep,
        vcpus: DecimalField::Keep,
        memory: CountField::Keep,
        disk: CountField::Keep,
        description: TextField::Keep,
        comments: TextField::Keep,
        serial: TextField::Keep,
        start_on_boot: TextField::Keep,
        tags: TagsField::Keep,
        custom_fields: Vec::<(String, JsonField)>::new(),
    }
}

/// Grows linear memory 0 so that it is `target` bytes in total (or more, rounded to a page).
#[cfg(target_arch = "wasm32")]
fn grow_to(target: usize) -> bool {
    // Leave a free 64 KiB chunk in the allocator first, so lowering the result later does not
    // need to grow memory past the limit this probe sets up exactly.
    drop(Vec::<u8>::with_capacity(64 * 1024));
    let page = 65536;
    let current = core::arch::wasm32::memory_size(0) * page;
    if target <= current {
        return true;
    }
    let pages = (target - current).div_ceil(page);
    core::arch::wasm32::memory_grow(0, pages) != usize::MAX
}

#[cfg(not(target_arch = "wasm32"))]
fn grow_to(_target: usize) -> bool {
    true
}

fn text(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Reconcile for Misbehaving {
    fn info() -> ModuleInfo {
        ModuleInfo {
            name: "rules-misbehaving".into(),
            version: "0.1.0".into(),
            wit_version: "0.1.0".into(),
        }
    }

    fn default_policies() -> Vec<FieldPolicy> {
        Vec::new()
    }

    fn normalize_desired(
        ctx: Context,
        guests: Vec<ProxmoxGuest>,
    ) -> Vec<Result<Desired, RuleError>> {
        // `misbehave_vmid` limits the misbehaviour to the batch holding that guest.
        let in_this_batch = setting(&ctx, "misbehave_vmid")
            .and_then(|v| v.parse::<u32>().ok())
            .is_none_or(|vmid| guests.iter().any(|g| g.vmid == vmid));
        let misbehave = setting(&ctx, "misbehave").filter(|_| in_this_batch);
        match misbehave {
            Some("loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("hog") => {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Reserve without touching: growth, not memset, is what this probes, and
                    // it keeps the fuel per MiB tiny so the memory limit is what stops it.
                    kept.push(Vec::with_capacity(1 << 20));
                    std::hint::black_box(&kept);
                }
            }
            Some("grow-to") => {
                let bytes: usize = setting(&ctx, "bytes")
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0);
                if !grow_to(bytes) {
                    return guests
                        .iter()
                        .map(|_| {
                            Err(RuleError {
                                code: "grow-failed".into(),
                                message: format!("memory.grow to {bytes} bytes returned -1"),
                            })
                        })
                        .collect();
                }
            }
            Some("panic") => panic!("misbehaving module: deliberate panic in normalize-desired"),
            Some("unreachable") => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
            }
            _ => {}
        }
        guests
            .into_iter()
            .map(|g| {
                let mut vm = empty_vm();
                vm.name = match g.name {
                    Some(n) => TextField::Set(n),
                    None => TextField::Keep,
                };
                vm.status = TextField::Set(if g.status == "running" {
                    "active".into()
                } else {
                    "offline".into()
                });
                Ok(Desired::Vm(DesiredVm {
                    vm,
                    needs: Vec::new(),
                }))
            })
            .collect()
    }

    fn normalize_current(_ctx: Context, records: Vec<NetboxVm>) -> Vec<Result<Vm, RuleError>> {
        records
            .into_iter()
            .map(|r| {
                let mut vm = empty_vm();
                vm.name = TextField::Set(r.name);
                vm.status = TextField::Set(r.status);
                Ok(vm)
            })
            .collect()
    }

    fn diff(_ctx: Context, pairs: Vec<DiffInput>) -> Vec<Result<Vec<FieldChange>, RuleError>> {
        pairs
            .into_iter()
            .map(|p| {
                let mut out = Vec::new();
                for (field, want, have) in [
                    ("name", &p.desired.name, p.current.as_ref().map(|c| &c.name)),
                    (
                        "status",
                        &p.desired.status,
                        p.current.as_ref().map(|c| &c.status),
                    ),
                ] {
                    let old = match have {
                        Some(TextField::Set(v)) => text(v),
                        _ => "null".to_string(),
                    };
                    if let TextField::Set(v) = want {
                        let new = text(v);
                        if new != old {
                            out.push(FieldChange {
                                field: field.into(),
                                old,
                                new,
                            });
                        }
                    }
                }
                Ok(out)
            })
            .collect()
    }
}

// Exported only for the wasm target: the export names break a native cdylib link.
#[cfg(target_arch = "wasm32")]
export!(Misbehaving);
