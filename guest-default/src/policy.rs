//! Field ownership: the default policies and their lookup during `diff`.
//!
//! Defaults, and why:
//! - `name`, `status`, `device`, `vcpus`, `memory`, `disk`, `start_on_boot`: `owned`; Proxmox is
//!   the source of truth for what runs where and how big it is.
//! - `description`, `comments`: `owned`; they mirror the Proxmox note (edit the note, not NetBox).
//! - `role`, `virtual_machine_type`, `platform`: `seed`; set on create, then operators may
//!   refine them (e.g. a more specific platform) without the sync undoing it.
//! - `tags`: `merge`; tags from Proxmox are added and removed (tracked in `proxmox_tags`), tags
//!   an operator added stay.
//! - `site`, `tenant`, `serial`: `ignore`; the default rules have no reliable source (a site
//!   sets the `site`/`tenant` settings or a rule module, plus a policy, to use them; `serial`
//!   is computed from the QEMU SMBIOS UUID for sites that opt in).
//! - `custom_fields.proxmox_*`: `owned`; they carry identity and sync state.
//!
//! During `diff` a field's ownership comes from `context.policies` (the host applies site
//! overrides to the module's defaults); a field missing there falls back to these defaults,
//! then to `owned` (the WIT rule for unlisted fields). `merge` on a field that is not a set
//! behaves as `owned`.

use crate::model::{Context, FieldPolicy, Ownership};

/// Custom field: the VMID (integer), part of the identity.
pub const CF_VM_ID: &str = "proxmox_vm_id";
/// Custom field: `qemu` or `lxc`.
pub const CF_VM_TYPE: &str = "proxmox_vm_type";
/// Custom field: the node name.
pub const CF_NODE: &str = "proxmox_node";
/// Custom field: the `;`-joined sorted tag slugs the sync applied from Proxmox.
pub const CF_TAGS: &str = "proxmox_tags";

/// The prefix of custom field names in policies and changes.
pub const CUSTOM_FIELDS_PREFIX: &str = "custom_fields.";

const DEFAULTS: [(&str, Ownership); 20] = [
    ("name", Ownership::Owned),
    ("status", Ownership::Owned),
    ("site", Ownership::Ignore),
    ("device", Ownership::Owned),
    ("role", Ownership::Seed),
    ("virtual_machine_type", Ownership::Seed),
    ("platform", Ownership::Seed),
    ("tenant", Ownership::Ignore),
    ("vcpus", Ownership::Owned),
    ("memory", Ownership::Owned),
    ("disk", Ownership::Owned),
    ("description", Ownership::Owned),
    ("comments", Ownership::Owned),
    ("serial", Ownership::Ignore),
    ("start_on_boot", Ownership::Owned),
    ("tags", Ownership::Merge),
    ("custom_fields.proxmox_vm_id", Ownership::Owned),
    ("custom_fields.proxmox_vm_type", Ownership::Owned),
    ("custom_fields.proxmox_node", Ownership::Owned),
    ("custom_fields.proxmox_tags", Ownership::Owned),
];

/// The default rules' policies.
pub fn default_policies() -> Vec<FieldPolicy> {
    to_policies(&DEFAULTS)
}

/// A table of (field, ownership) as the WIT's policy list.
pub(crate) fn to_policies(table: &[(&str, Ownership)]) -> Vec<FieldPolicy> {
    table
        .iter()
        .map(|(f, o)| FieldPolicy {
            field: (*f).to_owned(),
            ownership: *o,
        })
        .collect()
}

/// Ownership of every fixed field plus custom fields, resolved once per `diff` call.
pub(crate) struct Policies<'a> {
    pub(crate) name: Ownership,
    pub(crate) status: Ownership,
    pub(crate) site: Ownership,
    pub(crate) device: Ownership,
    pub(crate) role: Ownership,
    pub(crate) vm_type: Ownership,
    pub(crate) platform: Ownership,
    pub(crate) tenant: Ownership,
    pub(crate) vcpus: Ownership,
    pub(crate) memory: Ownership,
    pub(crate) disk: Ownership,
    pub(crate) description: Ownership,
    pub(crate) comments: Ownership,
    pub(crate) serial: Ownership,
    pub(crate) start_on_boot: Ownership,
    pub(crate) tags: Ownership,
    /// Custom field name (without prefix) -> ownership, from the context.
    custom: Vec<(&'a str, Ownership)>,
}

impl<'a> Policies<'a> {
    pub(crate) fn new(ctx: &'a Context) -> Self {
        let get = |field: &str| resolve(ctx, field);
        Policies {
            name: get("name"),
            status: get("status"),
            site: get("site"),
            device: get("device"),
            role: get("role"),
            vm_type: get("virtual_machine_type"),
            platform: get("platform"),
            tenant: get("tenant"),
            vcpus: get("vcpus"),
            memory: get("memory"),
            disk: get("disk"),
            description: get("description"),
            comments: get("comments"),
            serial: get("serial"),
            start_on_boot: get("start_on_boot"),
            tags: get("tags"),
            custom: ctx
                .policies
                .iter()
                .filter_map(|p| {
                    p.field
                        .strip_prefix(CUSTOM_FIELDS_PREFIX)
                        .map(|n| (n, p.ownership))
                })
                .collect(),
        }
    }

    /// Ownership of the custom field `name`.
    pub(crate) fn custom(&self, name: &str) -> Ownership {
        if let Some((_, o)) = self.custom.iter().find(|(n, _)| *n == name) {
            return *o;
        }
        DEFAULTS
            .iter()
            .find(|(f, _)| f.strip_prefix(CUSTOM_FIELDS_PREFIX) == Some(name))
            .map_or(Ownership::Owned, |(_, o)| *o)
    }
}

fn resolve(ctx: &Context, field: &str) -> Ownership {
    ctx.policy(field)
        .or_else(|| DEFAULTS.iter().find(|(f, _)| *f == field).map(|(_, o)| *o))
        .unwrap_or(Ownership::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_overrides_defaults() {
        let mut ctx = Context::default();
        ctx.policies.push(FieldPolicy {
            field: "platform".into(),
            ownership: Ownership::Owned,
        });
        ctx.policies.push(FieldPolicy {
            field: "custom_fields.proxmox_node".into(),
            ownership: Ownership::Ignore,
        });
        let p = Policies::new(&ctx);
        assert_eq!(p.platform, Ownership::Owned);
        assert_eq!(p.role, Ownership::Seed);
        assert_eq!(p.tags, Ownership::Merge);
        assert_eq!(p.custom("proxmox_node"), Ownership::Ignore);
        assert_eq!(p.custom("proxmox_vm_id"), Ownership::Owned);
        assert_eq!(p.custom("site_owner"), Ownership::Owned);
    }

    #[test]
    fn defaults_cover_every_fixed_field() {
        let d = default_policies();
        for f in crate::diff::FIELD_ORDER {
            assert!(d.iter().any(|p| p.field == f), "{f}");
        }
    }
}
