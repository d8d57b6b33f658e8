//! An example site rule module: the default rules, plus
//! - tenant from the VM name prefix (`acme-web01` -> `acme`) through the setting `tenants`
//!   (`{"acme": "acme", "gx": "globex"}`), else the setting `default_tenant` (else no tenant);
//! - role from a Proxmox tag `role-<slug>` (`role-db` -> role `db`);
//! - `description` ignored by default (operators write it in NetBox);
//! - interfaces named by the guest (the agent's `ens18`, an LXC NIC's `name=`), not by the
//!   Proxmox device key `net0`, and every IP address in the VRF `guests`: the default rules'
//!   settings `interface_names = "agent"` and `ip_vrf = "guests"`, which the site's own
//!   configuration may still override (`ip_vrf = "blue"`).
//!
//! It delegates everything else to `guest_default::DefaultRules`, so it inherits their fixes.

use guest_default::DefaultRules;
use guest_default::settings::KnownIndex;
use pve2netbox_rules::children::{ChildChange, NetworkSource, VmChildren};
use pve2netbox_rules::model::{
    Context, Desired, DiffInput, Field, FieldChange, FieldPolicy, Guest, JsonText, ModuleInfo,
    NetboxVm, ObjectSpec, Ownership, RuleError, RuleSet, Vm, WIT_VERSION, merge_policies,
};

/// The prefix of Proxmox tags that name the VM's role.
const ROLE_TAG_PREFIX: &str = "role-";

/// The site's choices for the children, as default rules settings (name, JSON value): used
/// where the context does not set them itself.
const CHILD_SETTINGS: [(&str, &str); 2] =
    [("interface_names", "\"agent\""), ("ip_vrf", "\"guests\"")];

/// The context with the site's children settings added where it has none. Only the settings
/// are copied: the children steps read nothing else of the context.
fn children_context(ctx: &Context) -> Context {
    let mut settings = ctx.settings.clone();
    for (name, value) in CHILD_SETTINGS {
        if ctx.setting(name).is_none() {
            settings.push((name.to_owned(), JsonText(value.to_owned())));
        }
    }
    Context {
        settings,
        netbox_version: ctx.netbox_version.clone(),
        policies: ctx.policies.clone(),
        known: Vec::new(),
    }
}

/// The site's rules.
pub struct SiteRules;

/// The settings this module reads, parsed once per call.
struct SiteSettings {
    /// Name prefix -> tenant slug.
    tenants: Vec<(String, String)>,
    default_tenant: Option<String>,
}

impl SiteSettings {
    fn new(ctx: &Context) -> Result<Self, RuleError> {
        let bad = |name: &str, why: &str| {
            RuleError::new(
                "bad-setting",
                format!("setting {name}: {why} (rules-example, normalize-desired)"),
            )
        };
        let mut tenants = Vec::new();
        if let Some(v) = ctx.setting("tenants").map(JsonText::to_value) {
            let map = v
                .as_object()
                .ok_or_else(|| bad("tenants", "expected an object of prefix -> tenant slug"))?;
            for (prefix, slug) in map {
                let slug = slug
                    .as_str()
                    .ok_or_else(|| bad("tenants", "every tenant slug must be a string"))?;
                tenants.push((prefix.to_lowercase(), slug.to_owned()));
            }
        }
        let default_tenant = match ctx.setting("default_tenant").map(JsonText::to_value) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => return Err(bad("default_tenant", "expected a string")),
        };
        Ok(SiteSettings {
            tenants,
            default_tenant,
        })
    }

    /// The tenant of a VM name: the table entry of the text before the first `-`, else the
    /// default.
    fn tenant(&self, name: &str) -> Option<&str> {
        let prefix = name.split_once('-').map(|(p, _)| p.to_lowercase());
        prefix
            .and_then(|p| self.tenants.iter().find(|(k, _)| *k == p))
            .map(|(_, t)| t.as_str())
            .or(self.default_tenant.as_deref())
    }
}

/// The role slug of the first `role-<slug>` tag among the desired tag slugs.
fn role_from_tags(vm: &Vm) -> Option<&str> {
    vm.tags
        .as_set()?
        .iter()
        .find_map(|t| t.strip_prefix(ROLE_TAG_PREFIX))
        .filter(|r| !r.is_empty())
}

impl RuleSet for SiteRules {
    fn info() -> ModuleInfo {
        ModuleInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            wit_version: WIT_VERSION.to_owned(),
        }
    }

    fn default_policies() -> Vec<FieldPolicy> {
        let site = [
            ("tenant", Ownership::Owned),
            ("role", Ownership::Owned),
            ("description", Ownership::Ignore),
        ];
        let site: Vec<FieldPolicy> = site
            .iter()
            .map(|(f, o)| FieldPolicy {
                field: (*f).to_owned(),
                ownership: *o,
            })
            .collect();
        merge_policies(DefaultRules::default_policies(), &site)
    }

    fn normalize_desired(ctx: &Context, guests: Vec<Guest>) -> Vec<Result<Desired, RuleError>> {
        let settings = match SiteSettings::new(ctx) {
            Ok(s) => s,
            Err(e) => return guests.iter().map(|_| Err(e.clone())).collect(),
        };
        let known = KnownIndex::new(ctx);
        let mut out = DefaultRules::normalize_desired(ctx, guests);
        for result in &mut out {
            let Ok(Desired::Vm(d)) = result else {
                continue;
            };
            // The name the default rules chose (row name, config name or vm-<vmid>).
            if let Field::Set(name) = &d.vm.name
                && let Some(tenant) = settings.tenant(name)
            {
                if !known.contains("tenant", tenant) {
                    d.needs.push(ObjectSpec {
                        kind: "tenant".into(),
                        key: tenant.into(),
                        name: tenant.into(),
                        attrs: JsonText("{}".into()),
                    });
                }
                d.vm.tenant = Field::Set(tenant.to_owned());
            }
            if let Some(role) = role_from_tags(&d.vm).map(str::to_owned) {
                if !known.contains("role", &role) {
                    d.needs.push(ObjectSpec {
                        kind: "role".into(),
                        key: role.clone(),
                        name: role.clone(),
                        attrs: JsonText("{\"color\":\"9e9e9e\",\"vm_role\":true}".into()),
                    });
                }
                d.vm.role = Field::Set(role);
            }
        }
        out
    }

    fn normalize_current(ctx: &Context, records: Vec<NetboxVm>) -> Vec<Result<Vm, RuleError>> {
        DefaultRules::normalize_current(ctx, records)
    }

    fn diff(ctx: &Context, pairs: Vec<DiffInput>) -> Vec<Result<Vec<FieldChange>, RuleError>> {
        DefaultRules::diff(ctx, pairs)
    }

    fn normalize_desired_children(
        ctx: &Context,
        guest: &Guest,
        network: &NetworkSource,
    ) -> Result<VmChildren, RuleError> {
        DefaultRules::normalize_desired_children(&children_context(ctx), guest, network)
    }

    fn normalize_current_children(
        ctx: &Context,
        json: &str,
        read: bool,
    ) -> Result<VmChildren, RuleError> {
        DefaultRules::normalize_current_children(ctx, json, read)
    }

    fn diff_children(
        ctx: &Context,
        desired: &VmChildren,
        current: Option<&VmChildren>,
        current_disk: Option<u64>,
        vm_changes: &mut Vec<FieldChange>,
    ) -> Result<Vec<ChildChange>, RuleError> {
        DefaultRules::diff_children(
            &children_context(ctx),
            desired,
            current,
            current_disk,
            vm_changes,
        )
    }
}

#[cfg(target_arch = "wasm32")]
pve2netbox_rules::export_rules!(SiteRules);
