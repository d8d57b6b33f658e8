//! NetBox state for the convergence tests (`e2e_faults`, `e2e_kill`): every VM keyed by its
//! identity (cluster name + `proxmox_vm_id`) with its normalized content, journal entries keyed
//! by UPID, and the organisational objects by slug or name, with ids and timestamps left out,
//! plus each VM's children (interfaces, MAC addresses, IP addresses, virtual disks, primary IPs,
//! see [`children`]) and the duplicates found on the way. Two NetBoxes that hold the same
//! objects give equal states whatever their ids.
//!
//! Edges: reads objects through a caller's function (the simulator's control API); knows the
//! harness only through `e2e_support::vm_content`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;

use crate::e2e_support::{choice, vm_content};

pub mod children;

/// Organisational object types compared, with the key naming one object.
const OBJECT_TYPES: &[(&str, &str)] = &[
    ("manufacturers", "slug"),
    ("device-types", "slug"),
    ("device-roles", "slug"),
    ("platforms", "slug"),
    ("sites", "slug"),
    ("devices", "name"),
    ("cluster-types", "slug"),
    ("clusters", "name"),
    ("virtual-machine-types", "slug"),
    ("tenants", "slug"),
    ("tags", "slug"),
    ("custom-fields", "name"),
];

/// A journal entry without its ids: the VM it is on (by identity), kind, text.
pub type Entry = (String, String, String);

/// What NetBox holds, comparable across NetBoxes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetboxState {
    /// `cluster/vmid` -> normalized fields (custom fields and tag slugs included).
    pub vms: BTreeMap<String, BTreeMap<String, Value>>,
    /// UPID -> the entries carrying it (one when there is no duplicate).
    pub task_entries: BTreeMap<String, Vec<Entry>>,
    /// Journal entries without a UPID (orphan notes), sorted.
    pub other_entries: Vec<Entry>,
    /// Object type -> slugs or names, sorted (duplicates kept, so they show).
    pub objects: BTreeMap<String, Vec<String>>,
    /// The VMs' children, keyed by the VM's identity.
    pub children: children::Children,
}

/// A state and the identity problems found while reading it.
#[derive(Debug, Clone)]
pub struct Read {
    pub state: NetboxState,
    /// Duplicated identities or names, VMs without identity, repeated UPIDs or objects.
    pub problems: Vec<String>,
}

/// Reads the state with `objects(type_key)` returning every object of a type.
pub fn read(objects: impl Fn(&str) -> Vec<Value>) -> Read {
    let mut problems = Vec::new();
    let mut state = NetboxState::default();
    let vms = objects("virtual-machines");
    let mut key_of: BTreeMap<u64, String> = BTreeMap::new();
    let mut names: BTreeMap<(String, String), u64> = BTreeMap::new();
    for vm in &vms {
        let id = vm["id"].as_u64().unwrap_or(0);
        let cluster = vm["cluster"]["name"].as_str().unwrap_or("-").to_string();
        let name = vm["name"].as_str().unwrap_or_default().to_lowercase();
        if let Some(first) = names.insert((cluster.clone(), name.clone()), id) {
            problems.push(format!(
                "VM name {name:?} twice in cluster {cluster}: #{first} and #{id}"
            ));
        }
        let key = match vm["custom_fields"]["proxmox_vm_id"].as_u64() {
            Some(vmid) => format!("{cluster}/{vmid}"),
            None => {
                problems.push(format!(
                    "VM #{id} {name:?} in {cluster} has no proxmox_vm_id"
                ));
                format!("{cluster}/name:{name}")
            }
        };
        if state.vms.insert(key.clone(), vm_content(vm)).is_some() {
            problems.push(format!("identity {key} held by several VMs (one is #{id})"));
        }
        key_of.insert(id, key);
    }
    for j in objects("journal-entries") {
        let vm = j["assigned_object_id"]
            .as_u64()
            .and_then(|id| key_of.get(&id).cloned())
            .unwrap_or_else(|| format!("object #{}", j["assigned_object_id"]));
        let comments = j["comments"].as_str().unwrap_or_default().to_string();
        let entry = (vm, choice(&j["kind"]).to_string(), comments.clone());
        match comments
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("UPID:"))
        {
            Some(upid) => state
                .task_entries
                .entry(upid.to_string())
                .or_default()
                .push(entry),
            None => state.other_entries.push(entry),
        }
    }
    for (upid, entries) in &state.task_entries {
        if entries.len() > 1 {
            problems.push(format!("task {upid} journaled {} times", entries.len()));
        }
    }
    state.other_entries.sort();
    for (kind, field) in OBJECT_TYPES {
        let mut keys: Vec<String> = objects(kind)
            .iter()
            .map(|o| o[*field].as_str().unwrap_or_default().to_string())
            // The run lease is coordination, not synced state: a run killed while holding it
            // leaves it until it expires or the next writing run breaks it (safety::lease).
            .filter(|k| !(*kind == "tags" && k == pve2netbox::safety::lease::LEASE_TAG))
            .collect();
        keys.sort();
        for pair in keys.windows(2) {
            if pair[0] == pair[1] {
                problems.push(format!("{kind} {:?} twice", pair[0]));
            }
        }
        state.objects.insert((*kind).to_string(), keys);
    }
    state.children = children::read(&objects, &vms, &key_of, &mut problems);
    Read { state, problems }
}

/// Where two states differ, one line per VM, UPID or object type (empty: equal).
pub fn differences(want: &NetboxState, got: &NetboxState) -> Vec<String> {
    let mut out = Vec::new();
    for key in want.vms.keys().chain(got.vms.keys()) {
        let (a, b) = (want.vms.get(key), got.vms.get(key));
        if a == b
            || out
                .iter()
                .any(|l: &String| l.starts_with(&format!("VM {key}:")))
        {
            continue;
        }
        match (a, b) {
            (Some(_), None) => out.push(format!("VM {key}: missing")),
            (None, Some(_)) => out.push(format!("VM {key}: unexpected")),
            (Some(a), Some(b)) => {
                let fields: Vec<String> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|f| a.get(*f) != b.get(*f))
                    .map(|f| format!("{f}: want {:?} got {:?}", a.get(f), b.get(f)))
                    .collect();
                out.push(format!("VM {key}: {}", fields.join("; ")));
            }
            (None, None) => {}
        }
    }
    for upid in want.task_entries.keys().chain(got.task_entries.keys()) {
        let (a, b) = (want.task_entries.get(upid), got.task_entries.get(upid));
        if a != b && !out.iter().any(|l| l.contains(upid.as_str())) {
            out.push(format!("journal {upid}: want {a:?} got {b:?}"));
        }
    }
    if want.other_entries != got.other_entries {
        out.push(format!(
            "journal entries without UPID: want {:?} got {:?}",
            want.other_entries, got.other_entries
        ));
    }
    out.extend(children::differences(&want.children, &got.children));
    for (kind, keys) in &want.objects {
        if got.objects.get(kind) != Some(keys) {
            out.push(format!(
                "{kind}: want {keys:?} got {:?}",
                got.objects.get(kind)
            ));
        }
    }
    out
}

/// Panics with the differences (first 40) unless `got` equals `want`.
pub fn assert_same(want: &NetboxState, got: &NetboxState, what: &str) {
    let diff = differences(want, got);
    if !diff.is_empty() {
        let shown: Vec<&String> = diff.iter().take(40).collect();
        panic!(
            "{what}: NetBox differs from a clean sync in {} places:\n{}",
            diff.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Panics unless the read found no duplicate or identity problem.
pub fn assert_clean(read: &Read, what: &str) {
    assert!(
        read.problems.is_empty(),
        "{what}: {} identity problems:\n{}",
        read.problems.len(),
        read.problems.join("\n")
    );
}
