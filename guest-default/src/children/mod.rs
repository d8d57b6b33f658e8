//! A VM's children (WIT 0.3): interfaces, MAC addresses, IP addresses, virtual disks and the
//! VM's primary IPs, in three steps like the VM itself.
//!
//! - [`normalize_desired_children`]: a guest's config and runtime network view to desired
//!   children (`desired`).
//! - [`normalize_current_children`]: NetBox's children JSON to current children (`current`).
//! - [`diff_children`]: desired against current to child changes (`diff`), adjusting the VM's
//!   own changes: `disk` kept equal to the sum of its virtual disks, `primary_ip4/6` added.
//!
//! Plain Rust, no WIT: the 0.3 component shell calls these. Ownership per collection comes
//! from the same policy list as fields ([`default_policies`] for the defaults and why).

mod current;
mod desired;
mod diff;
pub(crate) mod ip;
pub(crate) mod json;
pub(crate) mod mac;
/// The child types, from the library (`pve2netbox_rules::children`).
pub use pve2netbox_rules::children as model;
mod nic;
mod runtime;
mod settings;
pub(crate) mod text;
pub(crate) mod vdisk;

use std::borrow::Cow;

use crate::model::{
    Context, Field, FieldChange, FieldPolicy, GuestKind, JsonText, Ownership, RuleError,
};
use crate::policy::CUSTOM_FIELDS_PREFIX;

pub use model::*;

/// The child collections' default ownership, and why:
/// - `interfaces`, `mac_addresses`, `virtual_disks`: `owned`; they describe the guest's
///   hardware, which Proxmox knows. An operator's child of the same key is adopted; the
///   operator's other children stay.
/// - `ip_addresses`: `merge`; operators keep IPs by hand (a reserved address, a DNS name), and
///   an IP of the same address that the operator made is left exactly as it is.
/// - `primary_ip4`, `primary_ip6`: `seed`; set while NetBox has none, then the operator's
///   choice wins (which address is primary is a policy the guest cannot tell).
const DEFAULTS: [(&str, Ownership); 6] = [
    ("interfaces", Ownership::Owned),
    ("mac_addresses", Ownership::Owned),
    ("ip_addresses", Ownership::Merge),
    ("virtual_disks", Ownership::Owned),
    ("primary_ip4", Ownership::Seed),
    ("primary_ip6", Ownership::Seed),
];

/// The default ownership of the child collections (appended to the field defaults by a 0.3
/// module's `default-policies`).
pub fn default_policies() -> Vec<FieldPolicy> {
    crate::policy::to_policies(&DEFAULTS)
}

struct ChildPolicies {
    interfaces: Ownership,
    mac_addresses: Ownership,
    ip_addresses: Ownership,
    virtual_disks: Ownership,
    primary_ip4: Ownership,
    primary_ip6: Ownership,
    disk: Ownership,
}

impl ChildPolicies {
    fn new(ctx: &Context) -> Self {
        let get = |f: &str| {
            ctx.policy(f)
                .or_else(|| DEFAULTS.iter().find(|(d, _)| *d == f).map(|(_, o)| *o))
                .unwrap_or(Ownership::Owned)
        };
        ChildPolicies {
            interfaces: get("interfaces"),
            mac_addresses: get("mac_addresses"),
            ip_addresses: get("ip_addresses"),
            virtual_disks: get("virtual_disks"),
            primary_ip4: get("primary_ip4"),
            primary_ip6: get("primary_ip6"),
            disk: get("disk"),
        }
    }
}

/// What the desired children are computed from.
pub struct GuestSources<'a> {
    pub kind: GuestKind,
    pub config_read: bool,
    /// The raw config properties, in Proxmox's order.
    pub config: &'a [(&'a str, &'a str)],
    pub network: &'a NetworkSource,
}

fn setting_error(e: crate::settings::SettingError) -> RuleError {
    RuleError::new("bad-setting", format!("{e} (guest-default, children)"))
}

/// What the children steps read from the context (settings and ownerships), prepared once per
/// call rather than once per VM.
pub struct ChildContext {
    settings: settings::ChildSettings,
    policies: ChildPolicies,
}

impl ChildContext {
    /// Reads the children settings and ownerships. Rule error: `bad-setting`.
    pub fn new(ctx: &Context) -> Result<Self, RuleError> {
        Ok(ChildContext {
            settings: settings::ChildSettings::new(ctx).map_err(setting_error)?,
            policies: ChildPolicies::new(ctx),
        })
    }
}

fn desired_error(e: desired::DesiredError) -> RuleError {
    match e {
        desired::DesiredError::Disk(e) => {
            RuleError::new("bad-disk-size", format!("{e} (guest-default, children)"))
        }
        e => RuleError::new("bad-config", format!("{e} (guest-default, children)")),
    }
}

fn sources<'a>(src: &GuestSources<'a>) -> desired::Sources<'a> {
    desired::Sources {
        kind: src.kind,
        config_read: src.config_read,
        config: src.config,
        network: src.network,
        disks: None,
    }
}

/// A guest's desired children. Rule errors: `bad-setting`, `bad-config` (a `netN` or
/// `ipconfigN` value Proxmox would not print), `bad-disk-size`.
pub fn normalize_desired_children(
    ctx: &Context,
    src: &GuestSources<'_>,
) -> Result<VmChildren, RuleError> {
    normalize_desired_children_with(&ChildContext::new(ctx)?, src)
}

/// [`normalize_desired_children`] with the context prepared.
pub fn normalize_desired_children_with(
    prep: &ChildContext,
    src: &GuestSources<'_>,
) -> Result<VmChildren, RuleError> {
    read_desired_children(prep, src).map(VmChildren::into_owned)
}

/// [`normalize_desired_children_with`] on text borrowed from the guest's config, its runtime
/// answer and the settings (copied only where a value is built or normalized), for
/// [`diff_children_with`] in the same call, as [`read_current_children`] is.
pub fn read_desired_children<'a>(
    prep: &'a ChildContext,
    src: &GuestSources<'a>,
) -> Result<VmChildren<Cow<'a, str>>, RuleError> {
    desired::desired_children(&sources(src), &prep.settings).map_err(desired_error)
}

/// [`read_desired_children`] with the config's disks read already for the VM's own `disk`
/// (`vdisk::config_disks` of the same config): a call that computes both reads each disk once.
pub(crate) fn read_desired_children_sharing<'a>(
    prep: &'a ChildContext,
    src: &GuestSources<'a>,
    disks: &'a vdisk::ConfigDisks<'a>,
) -> Result<VmChildren<Cow<'a, str>>, RuleError> {
    let src = desired::Sources {
        disks: Some(disks),
        ..sources(src)
    };
    desired::desired_children(&src, &prep.settings).map_err(desired_error)
}

/// The error [`normalize_desired_children_with`] would report for this guest, without building
/// the children: for a VM whose current children were not read, every collection compares as
/// `keep` and nothing but the error can come of them (the three steps report it, so `reconcile`
/// must too).
pub fn check_desired_children(src: &GuestSources<'_>) -> Result<(), RuleError> {
    desired::check_desired_children(&sources(src)).map_err(desired_error)
}

/// A VM's current children from the host's JSON (`children-read` false: all `keep`). Rule
/// error: `bad-children`.
pub fn normalize_current_children(json: &str, read: bool) -> Result<VmChildren, RuleError> {
    current::current_children(json, read, current::Tags::All)
        .map(VmChildren::into_owned)
        .map_err(current_error)
}

/// [`normalize_current_children`] on text borrowed from `json` (copied only where a value is
/// normalized or unescaped), for [`diff_children_with`] in the same call: building owned
/// strings that the diff only compares was a large part of the current children's cost. For
/// the same reason a managed child's tag list is left empty (`managed` is set): the diff reads
/// the tags of a child it adopts only, which is never a managed one.
pub fn read_current_children(
    json: &str,
    read: bool,
) -> Result<VmChildren<Cow<'_, str>>, RuleError> {
    current::current_children(json, read, current::Tags::Unmanaged).map_err(current_error)
}

fn current_error(e: current::CurrentError) -> RuleError {
    RuleError::new("bad-children", format!("{e} (guest-default, children)"))
}

/// The child changes of one VM, and its field changes adjusted: `current` is `None` when the
/// VM is created; `vm_changes` are the VM's own changes as the 0.2 diff made them (`disk` is
/// replaced by the sum of the virtual disks whenever the VM will have any, and `primary_ip4`,
/// `primary_ip6` are added), `current_disk` the VM's `disk` in NetBox.
pub fn diff_children(
    ctx: &Context,
    desired: &VmChildren,
    current: Option<&VmChildren>,
    current_disk: Option<u64>,
    vm_changes: &mut Vec<FieldChange>,
) -> Result<Vec<ChildChange>, RuleError> {
    Ok(diff_children_with(
        &ChildContext::new(ctx)?,
        desired,
        current,
        current_disk,
        vm_changes,
    ))
}

/// [`diff_children`] with the context prepared, either side's children in either text type
/// (those of [`read_desired_children`] and [`read_current_children`] borrow their inputs).
pub fn diff_children_with<D: AsRef<str>, C: AsRef<str>>(
    prep: &ChildContext,
    desired: &VmChildren<D>,
    current: Option<&VmChildren<C>>,
    current_disk: Option<u64>,
    vm_changes: &mut Vec<FieldChange>,
) -> Vec<ChildChange> {
    let pol = &prep.policies;
    let legacy_mac = !prep.settings.mac_objects;
    let mut out = Vec::new();
    diff::collection(
        pol.interfaces,
        &desired.interfaces,
        current.map(|c| &c.interfaces),
        legacy_mac,
        &mut out,
    );
    if !legacy_mac {
        diff::collection(
            pol.mac_addresses,
            &desired.mac_addresses,
            current.map(|c| &c.mac_addresses),
            legacy_mac,
            &mut out,
        );
    }
    diff::collection(
        pol.ip_addresses,
        &desired.ip_addresses,
        current.map(|c| &c.ip_addresses),
        legacy_mac,
        &mut out,
    );
    diff::collection(
        pol.virtual_disks,
        &desired.virtual_disks,
        current.map(|c| &c.virtual_disks),
        legacy_mac,
        &mut out,
    );
    let creating = current.is_none();
    if let Some(sum) = diff::disk_total_after(current.map(|c| &c.virtual_disks), &out) {
        set_disk(vm_changes, sum, current_disk, creating, pol.disk);
    }
    let cleared = Field::Clear;
    for (field, own, d, c) in [
        (
            "primary_ip4",
            pol.primary_ip4,
            &desired.primary_ip4,
            current.map(|c| &c.primary_ip4),
        ),
        (
            "primary_ip6",
            pol.primary_ip6,
            &desired.primary_ip6,
            current.map(|c| &c.primary_ip6),
        ),
    ] {
        // A primary IP whose address this diff deletes is gone once the children are written
        // (NetBox clears it with the address): a `seed` policy sets the next one now, not in
        // the next run.
        let deleted = c
            .and_then(Field::as_set)
            .is_some_and(|address| deletes_address(&out, address.as_ref()));
        let c = if deleted { Some(&cleared) } else { c };
        if let Some(change) = primary(field, own, d, c) {
            vm_changes.push(change);
        }
    }
    vm_changes.sort_by_key(|c| vm_field_rank(&c.field));
    out
}

/// Replaces the VM's `disk` change so that it equals the virtual disks' sum: NetBox refuses any
/// other value once the VM has virtual disks (also ones another tool made).
fn set_disk(
    changes: &mut Vec<FieldChange>,
    sum: u64,
    current: Option<u64>,
    creating: bool,
    own: Ownership,
) {
    changes.retain(|c| c.field != "disk");
    let writes = match own {
        Ownership::Ignore => false,
        Ownership::Seed => creating,
        Ownership::Owned | Ownership::Merge => creating || current != Some(sum),
    };
    if writes {
        changes.push(FieldChange {
            field: "disk".to_owned(),
            old: current.map_or_else(JsonText::null, JsonText::uint),
            new: JsonText::uint(sum),
        });
    }
}

/// Whether `changes` delete the IP address `address` (its key is the address, or the address
/// and `@vrf`).
fn deletes_address(changes: &[ChildChange], address: &str) -> bool {
    changes.iter().any(|ch| {
        ch.kind == ChildKind::IpAddress
            && matches!(ch.op, ChildOp::Delete(_))
            && (ch.key == address
                || ch
                    .key
                    .strip_prefix(address)
                    .is_some_and(|rest| rest.starts_with('@')))
    })
}

/// The change of a primary IP field, when the policy lets the sync write it.
fn primary<D: AsRef<str>, C: AsRef<str>>(
    field: &str,
    own: Ownership,
    desired: &Field<D>,
    current: Option<&Field<C>>,
) -> Option<FieldChange> {
    if desired.is_keep() || own == Ownership::Ignore {
        return None;
    }
    let d = desired.as_set().map(AsRef::as_ref);
    let c = match current {
        None => None,
        Some(Field::Keep) => return None,
        Some(f) => f.as_set().map(AsRef::as_ref),
    };
    let writes = match own {
        Ownership::Seed => c.is_none() && d.is_some(),
        _ => c != d && (current.is_some() || d.is_some()),
    };
    let json = |v: Option<&str>| v.map_or_else(JsonText::null, JsonText::string);
    writes.then(|| FieldChange {
        field: field.to_owned(),
        old: json(c),
        new: json(d),
    })
}

/// The order of VM field changes: the 0.2 order, the primary IPs after `tags`, custom fields
/// last (a stable sort keeps the 0.2 diff's own order within each rank).
fn vm_field_rank(field: &str) -> usize {
    let fixed = crate::diff::FIELD_ORDER.len();
    if field.starts_with(CUSTOM_FIELDS_PREFIX) {
        return fixed + 2;
    }
    match field {
        "primary_ip4" => fixed,
        "primary_ip6" => fixed + 1,
        f => fixed_rank(f).unwrap_or(fixed + 2),
    }
}

/// A fixed field's position in `crate::diff::FIELD_ORDER` (a test keeps the two equal): one
/// `match` on the name instead of comparing it with each name in turn, as the sort calls this
/// twice per comparison.
fn fixed_rank(field: &str) -> Option<usize> {
    Some(match field {
        "name" => 0,
        "status" => 1,
        "site" => 2,
        "device" => 3,
        "role" => 4,
        "virtual_machine_type" => 5,
        "platform" => 6,
        "tenant" => 7,
        "vcpus" => 8,
        "memory" => 9,
        "disk" => 10,
        "description" => 11,
        "comments" => 12,
        "serial" => 13,
        "start_on_boot" => 14,
        "tags" => 15,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(field: &str) -> FieldChange {
        FieldChange {
            field: field.to_owned(),
            old: JsonText::null(),
            new: JsonText::null(),
        }
    }

    #[test]
    fn primary_ip_seed_sets_only_when_netbox_has_none() {
        let want = Field::Set("10.0.0.5/24".to_owned());
        let none = Field::<String>::Clear;
        let other = Field::Set("10.0.0.9/24".to_owned());
        assert!(primary("primary_ip4", Ownership::Seed, &want, Some(&none)).is_some());
        assert!(primary("primary_ip4", Ownership::Seed, &want, Some(&other)).is_none());
        assert!(primary("primary_ip4", Ownership::Owned, &want, Some(&other)).is_some());
        assert!(
            primary::<_, String>("primary_ip4", Ownership::Owned, &want, Some(&Field::Keep))
                .is_none()
        );
        assert!(primary("primary_ip4", Ownership::Ignore, &want, Some(&none)).is_none());
        assert!(
            primary(
                "primary_ip4",
                Ownership::Owned,
                &Field::<String>::Keep,
                Some(&other)
            )
            .is_none()
        );
        // Owned and nothing wanted: the sync's own choice is cleared.
        let cleared = primary(
            "primary_ip4",
            Ownership::Owned,
            &Field::<String>::Clear,
            Some(&other),
        )
        .unwrap();
        assert!(cleared.new.is_null());
        // A created VM with no address wants no change.
        assert!(
            primary::<String, String>("primary_ip4", Ownership::Owned, &Field::Clear, None)
                .is_none()
        );
    }

    #[test]
    fn a_primary_ip_whose_address_is_deleted_counts_as_unset() {
        let delete = |key: &str| ChildChange {
            kind: ChildKind::IpAddress,
            key: key.to_owned(),
            parent: Some("net0".to_owned()),
            op: ChildOp::Delete(7),
            changes: Vec::new(),
        };
        assert!(deletes_address(&[delete("10.0.0.5/24")], "10.0.0.5/24"));
        assert!(deletes_address(
            &[delete("10.0.0.5/24@blue")],
            "10.0.0.5/24"
        ));
        assert!(!deletes_address(&[delete("10.0.0.55/24")], "10.0.0.5/24"));
        let mut update = delete("10.0.0.5/24");
        update.op = ChildOp::Update(7);
        assert!(!deletes_address(&[update], "10.0.0.5/24"));
    }

    #[test]
    fn disk_follows_the_virtual_disks() {
        let mut changes = vec![change("memory"), change("disk")];
        set_disk(&mut changes, 100, Some(100), false, Ownership::Owned);
        assert_eq!(changes.len(), 1, "equal disk: the 0.2 change is dropped");
        set_disk(&mut changes, 120, Some(100), false, Ownership::Owned);
        assert_eq!(changes[1].new.as_str(), "120");
        let mut seed = vec![change("disk")];
        set_disk(&mut seed, 120, Some(100), false, Ownership::Seed);
        assert!(seed.is_empty());
        set_disk(&mut seed, 120, None, true, Ownership::Seed);
        assert_eq!(seed.len(), 1);
    }

    #[test]
    fn the_fixed_ranks_are_the_field_order() {
        for (i, f) in crate::diff::FIELD_ORDER.iter().enumerate() {
            assert_eq!(fixed_rank(f), Some(i), "{f}");
        }
        for f in ["primary_ip4", "custom_fields.x", "", "names", "Name"] {
            assert_eq!(fixed_rank(f), None, "{f}");
        }
    }

    #[test]
    fn vm_changes_keep_the_field_order() {
        let mut v = [
            change("custom_fields.proxmox_node"),
            change("primary_ip6"),
            change("tags"),
            change("primary_ip4"),
            change("disk"),
            change("name"),
        ];
        v.sort_by_key(|c| vm_field_rank(&c.field));
        let order: Vec<&str> = v.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            order,
            [
                "name",
                "disk",
                "tags",
                "primary_ip4",
                "primary_ip6",
                "custom_fields.proxmox_node"
            ]
        );
    }
}
