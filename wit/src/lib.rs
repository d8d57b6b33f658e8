//! Write pve2netbox rule modules in Rust.
//!
//! pve2netbox keeps NetBox's virtual machines in step with Proxmox VE. How a Proxmox guest
//! becomes a NetBox VM (its name, tenant, role, tags, interfaces, IPs, disks, and which fields
//! NetBox's operators own) is decided by a *rule module*: a WebAssembly component implementing
//! the WIT world `pve2netbox:rules/rules` shipped in this package (`v0.4.0/rules.wit`; the
//! host still loads `v0.1.0`, `v0.2.0` and `v0.3.0` modules). This crate is everything a Rust
//! module needs:
//!
//! - [`model`]: the WIT types as plain Rust with a friendly JSON form (guests, NetBox records,
//!   desired VMs, field changes, policies, the context), the [`RuleSet`] trait a module
//!   implements, and the fixture format `pve2netbox rules test` reads ([`model::Fixture`]), so a
//!   module's fixtures also run natively under `cargo test`;
//! - [`children`]: the WIT 0.3 child types (interfaces, MAC and IP addresses, virtual disks);
//! - [`export_rules!`]: exports a [`RuleSet`] as the component (WIT 0.4), through the
//!   wit-bindgen bindings in [`component`]; [`export_rules_v0_3!`] and [`export_rules_v0_2!`]
//!   build a 0.3 or 0.2 module.
//!
//! Most sites start from pve2netbox's default rules (the `guest-default` crate, which
//! implements [`RuleSet`] on this model) and override only what they change:
//! `pve2netbox rules new NAME` writes such a crate, with fixtures and a README on testing,
//! recording, reviewing and deploying it.
//!
//! # Example
//!
//! A complete rule set that only names VMs and skips templates. Every step has a default for
//! the rest: `reconcile` runs the three steps, children are `keep` (NetBox's are left alone).
//!
//! ```
//! use pve2netbox_rules::model::{
//!     Context, Desired, DesiredVm, DiffInput, Field, FieldChange, FieldPolicy, Guest,
//!     JsonText, ModuleInfo, NetboxVm, RuleError, RuleSet, Vm, WIT_VERSION,
//! };
//!
//! pub struct NamesOnly;
//!
//! impl RuleSet for NamesOnly {
//!     fn info() -> ModuleInfo {
//!         ModuleInfo {
//!             name: "names-only".into(),
//!             version: "0.1.0".into(),
//!             wit_version: WIT_VERSION.into(),
//!         }
//!     }
//!
//!     fn default_policies() -> Vec<FieldPolicy> {
//!         Vec::new() // every field `owned`
//!     }
//!
//!     fn normalize_desired(_ctx: &Context, guests: Vec<Guest>) -> Vec<Result<Desired, RuleError>> {
//!         guests
//!             .into_iter()
//!             .map(|g| match (g.template, g.name) {
//!                 (true, _) => Ok(Desired::Skip("a template".into())),
//!                 (false, Some(name)) => Ok(Desired::Vm(DesiredVm {
//!                     vm: Vm { name: Field::Set(name), ..Vm::default() },
//!                     needs: Vec::new(),
//!                 })),
//!                 (false, None) => Err(RuleError::new("no-name", format!("VM {} has no name", g.vmid))),
//!             })
//!             .collect()
//!     }
//!
//!     fn normalize_current(_ctx: &Context, records: Vec<NetboxVm>) -> Vec<Result<Vm, RuleError>> {
//!         records
//!             .into_iter()
//!             .map(|r| Ok(Vm { name: Field::Set(r.name), ..Vm::default() }))
//!             .collect()
//!     }
//!
//!     fn diff(_ctx: &Context, pairs: Vec<DiffInput>) -> Vec<Result<Vec<FieldChange>, RuleError>> {
//!         let json = |f: Option<&String>| JsonText(serde_json::to_string(&f).unwrap());
//!         pairs
//!             .iter()
//!             .map(|p| {
//!                 let new = p.desired.name.as_set();
//!                 let old = p.current.as_ref().and_then(|c| c.name.as_set());
//!                 Ok(if new.is_some() && new != old {
//!                     vec![FieldChange { field: "name".into(), old: json(old), new: json(new) }]
//!                 } else {
//!                     Vec::new()
//!                 })
//!             })
//!             .collect()
//!     }
//! }
//!
//! // The component's exports (`cargo build --release --target wasm32-wasip2`, with
//! // `crate-type = ["cdylib", "rlib"]`).
//! #[cfg(target_arch = "wasm32")]
//! pve2netbox_rules::export_rules!(NamesOnly);
//!
//! // Natively, the same rules run under `cargo test`, fixtures included.
//! let fixture = pve2netbox_rules::model::Fixture::from_json(r#"{
//!     "description": "a new VM is named after its guest",
//!     "guest": {"cluster": "prod", "vmid": 100, "type": "qemu", "node": "pve1",
//!               "name": "web01", "status": "running", "config": {}},
//!     "expect": {"desired": {"name": "web01"},
//!                "changes": [{"field": "name", "old": null, "new": "web01"}]}
//! }"#).unwrap();
//! assert!(fixture.check(&fixture.run::<NamesOnly>()).is_ok());
//! ```
//!
//! # Versions
//!
//! [`model::WIT_VERSION`] is the WIT version [`export_rules!`] implements. The host loads any
//! module of a version it knows; a module built against an older WIT keeps working.

pub mod children;
pub mod component;
pub mod component_direct;
pub mod component_v0_2;
pub mod component_v0_3;
mod memcmp;
pub mod model;
mod short_copy;

pub use model::RuleSet;
