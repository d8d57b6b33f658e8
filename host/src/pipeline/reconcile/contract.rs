//! What a rule module's answer may ask the host to write, checked before anything is planned.
//!
//! The WIT contract defines the VM fields a module decides (the `vm` record: name, status, ...,
//! tags) and custom fields by name. A module is a site's code: an answer outside the contract fails
//! that VM only, with a rule error and no write. Why each check matters:
//! - a field the contract does not define (`cluster`, `id`, `primary_ip4`) would re-home, re-key
//!   or rewrite what the host owns;
//! - a `tags` value that is not a list of slugs used to be written as `[]`, stripping every tag,
//!   the operators' included;
//! - a custom field NetBox does not have fails the whole bulk request it travels in, taking the
//!   other VMs of the window with it.
//!
//! WIT 0.3 adds the VM's children: a 0.3 module may also set `primary_ip4`/`primary_ip6` (an
//! address key or `null`), and its child changes ([`OutputContract::check_children`]) must name
//! only the fields the WIT's `child-change` lists for their kind, a delete none, and only MAC and
//! IP addresses a parent interface. A 0.1 or 0.2 module may do neither.

use std::collections::BTreeSet;

use guest_default::children::ChildKind;
use guest_default::diff::FIELD_ORDER;
use guest_default::policy::CUSTOM_FIELDS_PREFIX;

use super::changes::Changes;
use super::child_operations::{ChildAction, ChildOperations};

/// The VM fields only a WIT 0.3 module may set: the primary IPs, by address key.
pub const PRIMARY_IP_FIELDS: [&str; 2] = ["primary_ip4", "primary_ip6"];

/// The fields a child change may carry, per kind (WIT 0.3 `child-change`). `mac_address` is
/// the interface's own field below NetBox 4.2, where there are no MAC objects.
fn child_fields(kind: ChildKind) -> &'static [&'static str] {
    match kind {
        ChildKind::Interface => &[
            "name",
            "enabled",
            "mtu",
            "description",
            "mode",
            "untagged_vlan",
            "primary_mac_address",
            "mac_address",
            "tags",
        ],
        ChildKind::MacAddress => &["mac_address", "interface", "tags"],
        ChildKind::IpAddress => &["address", "vrf", "status", "interface", "tags"],
        ChildKind::VirtualDisk => &["name", "size", "description", "tags"],
    }
}

/// The limits a rule module's changes must stay within.
#[derive(Debug, Clone, Default)]
pub struct OutputContract {
    /// The custom fields on NetBox VMs (existing, or created by this run's preflight). `None`:
    /// not checked (unit tests without a NetBox).
    custom_fields: Option<BTreeSet<String>>,
    /// The module speaks WIT 0.3: primary IPs and child changes are part of its contract.
    children: bool,
    /// This run writes the child changes and primary IPs (`sync.children`); otherwise they
    /// are held back and reported per VM.
    writes_children: bool,
}

impl OutputContract {
    /// A contract that also checks custom field names against `custom_fields`.
    pub fn with_custom_fields(custom_fields: BTreeSet<String>) -> Self {
        OutputContract {
            custom_fields: Some(custom_fields),
            children: false,
            writes_children: false,
        }
    }

    /// The contract of a WIT 0.3 module (`true`): it may set the primary IPs and return child
    /// changes.
    pub fn with_children(mut self, children: bool) -> Self {
        self.children = children;
        self
    }

    /// Whether this run writes child changes and primary IPs (`true`, `sync.children`) or
    /// holds them back as a notice per VM (`false`).
    pub fn writing_children(mut self, writes: bool) -> Self {
        self.writes_children = writes;
        self
    }

    /// Whether child changes and primary IPs are written this run.
    pub fn writes_children(&self) -> bool {
        self.writes_children && self.children
    }

    /// Whether primary IPs and child changes are allowed (a WIT 0.3 module).
    pub fn allows_children(&self) -> bool {
        self.children
    }

    /// `Ok` when every child change is one the contract allows; otherwise why not, naming the
    /// child and the field.
    pub fn check_children(&self, children: &ChildOperations) -> Result<(), String> {
        if children.is_empty() {
            return Ok(());
        }
        if !self.children {
            return Err(format!(
                "rules returned {} child changes, but only a WIT 0.3 module may change a VM's \
                 interfaces, MAC addresses, IP addresses and virtual disks",
                children.len()
            ));
        }
        for child in children.iter() {
            let kind = child_kind_name(child.kind);
            let name = format!("{kind} '{}'", child.key);
            if child.key.is_empty() {
                return Err(format!("rules returned a {kind} change without a key"));
            }
            let parented = matches!(child.kind, ChildKind::MacAddress | ChildKind::IpAddress);
            if child.parent.is_some() && !parented {
                return Err(format!(
                    "rules gave {name} a parent interface; only MAC and IP addresses have one"
                ));
            }
            if child.op == ChildAction::Delete && !child.changes.is_empty() {
                return Err(format!(
                    "rules delete {name} with field changes; a delete carries none"
                ));
            }
            let allowed = child_fields(child.kind);
            for change in child.changes.iter() {
                if !allowed.contains(&change.field) {
                    return Err(format!(
                        "rules changed '{}' of {name}, which is not a field of a {kind} (it may \
                         have {})",
                        change.field,
                        allowed.join(", ")
                    ));
                }
                if change.field == "tags" && !is_slug_list(&change.new.to_value()) {
                    return Err(format!(
                        "rules set 'tags' of {name} to {}, not a list of tag slugs",
                        change.new.as_str()
                    ));
                }
            }
        }
        Ok(())
    }

    /// `Ok` when every change is one the contract allows; otherwise why not, naming the field.
    pub fn check(&self, changes: &Changes) -> Result<(), String> {
        for change in changes.iter() {
            if let Some(name) = change.field.strip_prefix(CUSTOM_FIELDS_PREFIX) {
                if let Some(known) = &self.custom_fields
                    && !known.contains(name)
                {
                    return Err(format!(
                        "rules set custom field '{name}', which does not exist on NetBox \
                         virtual machines (create it in NetBox, or change the rules)"
                    ));
                }
                continue;
            }
            if PRIMARY_IP_FIELDS.contains(&change.field) && self.children {
                let new = change.new.to_value();
                if !(new.is_null() || new.is_string()) {
                    return Err(format!(
                        "rules set '{}' to {}, not an IP address key or null",
                        change.field,
                        change.new.as_str()
                    ));
                }
                continue;
            }
            if !FIELD_ORDER.contains(&change.field) {
                return Err(format!(
                    "rules changed '{}', which is not a field rule modules may write (they may \
                     write {} and custom fields)",
                    change.field,
                    FIELD_ORDER.join(", ")
                ));
            }
            if change.field == "tags" && !is_slug_list(&change.new.to_value()) {
                return Err(format!(
                    "rules set 'tags' to {}, not a list of tag slugs (a tag-less VM is `[]`)",
                    change.new.as_str()
                ));
            }
        }
        Ok(())
    }
}

/// A JSON list of strings.
fn is_slug_list(v: &serde_json::Value) -> bool {
    v.as_array()
        .is_some_and(|items| items.iter().all(serde_json::Value::is_string))
}

/// The WIT's name of a child kind, for messages.
fn child_kind_name(kind: ChildKind) -> &'static str {
    match kind {
        ChildKind::Interface => "interface",
        ChildKind::MacAddress => "mac-address",
        ChildKind::IpAddress => "ip-address",
        ChildKind::VirtualDisk => "virtual-disk",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_default::children::{ChildChange, ChildOp};

    fn changes(list: &[(&str, &str)]) -> Changes {
        let mut c = Changes::new();
        for (field, new) in list {
            c.push(field, "null", new);
        }
        c
    }

    #[test]
    fn contract_fields_and_tag_lists_pass() {
        let c = changes(&[
            ("name", "\"web\""),
            ("memory", "2048"),
            ("tags", "[\"prod\",\"pve2netbox\"]"),
            ("tags", "[]"),
            ("custom_fields.anything", "1"),
        ]);
        assert_eq!(OutputContract::default().check(&c), Ok(()));
    }

    #[test]
    fn fields_outside_the_contract_fail_naming_the_field() {
        for field in ["cluster", "id", "primary_ip4", "custom_fieldsx"] {
            let err = OutputContract::default()
                .check(&changes(&[("name", "\"a\""), (field, "1")]))
                .expect_err(field);
            assert!(err.contains(&format!("'{field}'")), "{err}");
        }
    }

    #[test]
    fn tags_that_are_not_a_list_of_slugs_fail() {
        for bad in ["null", "\"prod\"", "{}", "[1]", "[\"a\",null]"] {
            let err = OutputContract::default()
                .check(&changes(&[("tags", bad)]))
                .expect_err(bad);
            assert!(err.contains("not a list of tag slugs"), "{bad}: {err}");
        }
    }

    #[test]
    fn custom_fields_are_checked_against_netbox_when_known() {
        let contract =
            OutputContract::with_custom_fields(BTreeSet::from(["proxmox_vm_id".to_owned()]));
        assert_eq!(
            contract.check(&changes(&[("custom_fields.proxmox_vm_id", "1")])),
            Ok(())
        );
        let err = contract
            .check(&changes(&[("custom_fields.owner_team", "\"db\"")]))
            .expect_err("unknown custom field");
        assert!(err.contains("'owner_team'"), "{err}");
    }

    fn child(kind: ChildKind, key: &str, op: ChildOp, fields: &[(&str, &str)]) -> ChildChange {
        ChildChange {
            kind,
            key: key.into(),
            parent: None,
            op,
            changes: fields
                .iter()
                .map(|(f, new)| guest_default::model::FieldChange {
                    field: (*f).into(),
                    old: guest_default::model::JsonText::null(),
                    new: guest_default::model::JsonText((*new).into()),
                })
                .collect(),
        }
    }

    #[test]
    fn primary_ips_are_for_wit_0_3_modules_only() {
        let c = changes(&[("primary_ip4", "\"10.0.0.5/24\""), ("primary_ip6", "null")]);
        let old = OutputContract::default()
            .check(&c)
            .expect_err("a 0.2 module");
        assert!(old.contains("'primary_ip4'"), "{old}");
        let v3 = OutputContract::default().with_children(true);
        assert_eq!(v3.check(&c), Ok(()));
        let err = v3
            .check(&changes(&[("primary_ip4", "7")]))
            .expect_err("not a key");
        assert!(err.contains("not an IP address key"), "{err}");
    }

    #[test]
    fn child_changes_name_their_kinds_fields_only() {
        let v3 = OutputContract::default().with_children(true);
        let good = [
            child(
                ChildKind::Interface,
                "net0",
                ChildOp::Create,
                &[
                    ("name", "\"net0\""),
                    ("mtu", "9000"),
                    ("tags", "[\"pve2netbox\"]"),
                ],
            ),
            ChildChange {
                parent: Some("net0".into()),
                ..child(
                    ChildKind::IpAddress,
                    "10.0.0.5/24@blue",
                    ChildOp::Create,
                    &[("address", "\"10.0.0.5/24\""), ("vrf", "\"blue\"")],
                )
            },
            child(ChildKind::VirtualDisk, "scsi0", ChildOp::Delete(41), &[]),
            child(
                ChildKind::MacAddress,
                "BC:24:11:2A:3B:4C",
                ChildOp::Update(21),
                &[("interface", "\"net0\"")],
            ),
        ];
        let good = ChildOperations::from(good.to_vec());
        assert_eq!(v3.check_children(&good), Ok(()));
        // A 0.2 contract refuses any child change.
        let old = OutputContract::default().check_children(&good).unwrap_err();
        assert!(old.contains("WIT 0.3"), "{old}");
        for (bad, needle) in [
            (
                child(
                    ChildKind::VirtualDisk,
                    "scsi0",
                    ChildOp::Update(41),
                    &[("mtu", "1")],
                ),
                "'mtu' of virtual-disk 'scsi0'",
            ),
            (
                child(
                    ChildKind::Interface,
                    "net0",
                    ChildOp::Delete(11),
                    &[("mtu", "1")],
                ),
                "a delete carries none",
            ),
            (
                ChildChange {
                    parent: Some("net0".into()),
                    ..child(ChildKind::VirtualDisk, "scsi0", ChildOp::Create, &[])
                },
                "only MAC and IP addresses",
            ),
            (
                child(ChildKind::Interface, "", ChildOp::Create, &[]),
                "without a key",
            ),
            (
                child(
                    ChildKind::IpAddress,
                    "10.0.0.5/24",
                    ChildOp::Create,
                    &[("tags", "\"x\"")],
                ),
                "not a list of tag slugs",
            ),
        ] {
            let err = v3
                .check_children(&ChildOperations::from(vec![bad]))
                .expect_err(needle);
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
