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

use std::collections::BTreeSet;

use guest_default::diff::FIELD_ORDER;
use guest_default::policy::CUSTOM_FIELDS_PREFIX;

use super::changes::Changes;

/// The limits a rule module's changes must stay within.
#[derive(Debug, Clone, Default)]
pub struct OutputContract {
    /// The custom fields on NetBox VMs (existing, or created by this run's preflight). `None`:
    /// not checked (unit tests without a NetBox).
    custom_fields: Option<BTreeSet<String>>,
}

impl OutputContract {
    /// A contract that also checks custom field names against `custom_fields`.
    pub fn with_custom_fields(custom_fields: BTreeSet<String>) -> Self {
        OutputContract {
            custom_fields: Some(custom_fields),
        }
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
            if !FIELD_ORDER.contains(&change.field) {
                return Err(format!(
                    "rules changed '{}', which is not a field rule modules may write (they may \
                     write {} and custom fields)",
                    change.field,
                    FIELD_ORDER.join(", ")
                ));
            }
            if change.field == "tags" {
                let new = change.new.to_value();
                let slugs_only = new
                    .as_array()
                    .is_some_and(|items| items.iter().all(serde_json::Value::is_string));
                if !slugs_only {
                    return Err(format!(
                        "rules set 'tags' to {}, not a list of tag slugs (a tag-less VM is `[]`)",
                        change.new.as_str()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
