//! The custom fields a rule module sets that NetBox VMs lack, checked by `doctor` and by
//! `rules check --config`: a site hears of them before a sync fails the VMs whose answers set
//! them (the reconcile phase holds every answer to the fields NetBox has).
//!
//! A module names the fields it sets in its `default-policies` (the WIT asks it to list each
//! one); the config's `[rules.policies]` may add more. Fields the sync's preflight creates
//! (`proxmox_vm_id`, ...) count as present.

use std::collections::BTreeSet;

use guest_default::policy::CUSTOM_FIELDS_PREFIX;
use serde_json::Value;

use crate::clients::netbox::{NetboxClient, NetboxError};
use crate::config::{Config, OrphanPolicy};
use crate::pipeline::preflight::{VM_OBJECT_TYPE, cf_applies_to, required_custom_fields};
use crate::rules::{RulesError, RulesModule};

/// The custom field names the module's policies and the config's overrides name.
pub(crate) fn set_by(
    module: &RulesModule,
    config: &Config,
) -> Result<BTreeSet<String>, RulesError> {
    let from_module = module.default_policies()?.into_iter().map(|p| p.field);
    let from_config = config.rules.policies.keys().cloned();
    Ok(from_module
        .chain(from_config)
        .filter_map(|field| field.strip_prefix(CUSTOM_FIELDS_PREFIX).map(str::to_owned))
        .collect())
}

/// Of `names`, those that are neither custom fields on NetBox VMs nor created by the sync.
pub(crate) async fn missing(
    client: &NetboxClient,
    names: &BTreeSet<String>,
) -> Result<Vec<String>, NetboxError> {
    let rows = client
        .list_all("extras/custom-fields", &[], &["name", "object_types"])
        .await?;
    let mut present: BTreeSet<String> = rows
        .iter()
        .filter(|row| cf_applies_to(row, VM_OBJECT_TYPE))
        .filter_map(|row| row.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    present.extend(
        required_custom_fields(OrphanPolicy::Delete)
            .into_iter()
            .map(|(name, ..)| name.to_owned()),
    );
    Ok(names
        .iter()
        .filter(|name| !present.contains(*name))
        .cloned()
        .collect())
}

/// The line to print for `missing`'s answer: `Ok` with a summary, or `Err` naming each field.
pub(crate) fn verdict(
    module: &RulesModule,
    set: usize,
    missing: &[String],
) -> Result<String, String> {
    let info = module.info();
    let who = format!("rules `{} {}`", info.name, info.version);
    if missing.is_empty() {
        Ok(format!(
            "{who}: the {set} custom field(s) the rules set exist on NetBox VMs or are created by the first sync"
        ))
    } else {
        Err(format!(
            "{who} set custom field(s) NetBox VMs do not have: {}; every VM whose answer sets one \
             fails until the field is created in NetBox (or the rules change)",
            missing.join(", ")
        ))
    }
}
