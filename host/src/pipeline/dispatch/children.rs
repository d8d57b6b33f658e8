//! Child dispatch: writes the child operations of a window's VMs (interfaces, MAC addresses, IP
//! addresses, virtual disks) and the VMs' primary IPs, after the VMs' own writes.
//!
//! **Order**, in steps over the whole window, so NetBox accepts every request and each
//! reference exists before it is used (a created VM's id comes from the VM write before):
//! 1. deletes: IP addresses, MAC addresses, interfaces, virtual disks (an interface's delete
//!    would take its addresses with it; the VM write before cleared a primary IP the plan
//!    clears, and NetBox clears a deleted primary IP itself);
//! 2. interfaces (creates and updates; a primary MAC that is created or moved in this plan is
//!    left for step 6);
//! 3. virtual disks: each save makes NetBox set the VM's `disk` to their sum, so the VM write
//!    before leaves `disk` out of an update that has disk writes (`defers_vm_field`), and
//!    "the VM's disk is the sum of its virtual disks" holds after every request;
//! 4. MAC addresses, on their interfaces' ids; 5. IP addresses, likewise;
//! 6. the primary MACs left for later; 7. the VMs' primary IPs (the VM write before sends only
//!    their clearing), now that their addresses exist.
//!
//! Each step sends, per endpoint and method, one bulk request with `bulk = true` (split on
//! a refusal like the VM writes: by the items NetBox names, else in halves; not when NetBox did
//! not answer, which no item causes) or one request per child. A POST whose answer was lost is looked up by identity (an interface or disk by VM and
//! name, an address by interface and address) before it is sent again. A failed child is
//! reported against its VM with NetBox's message (an `enforce_unique` refusal of a duplicate IP
//! names the other object), and the children that needed it fail with the reason; the VM's
//! other children are written. Children of a VM whose own write failed are not sent.
//!
//! An IP address that moves from one VM to another is deleted from the first before any window
//! is written ([`release_moved_addresses`]): the VM that takes it may be in an earlier window.
//!
//! Edges: the plan's VM operations (with their child operations) and the ids of the VMs
//! written in; failures out. [`check_stale`] is `apply`'s guard for children.

use std::collections::{BTreeMap, BTreeSet};

use guest_default::children::ChildKind;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::clients::netbox::{NetboxClient, NetboxError};
use crate::pipeline::dispatch::{DispatchOutcome, Failure, MAX_BULK_BODY_BYTES, PHASE, Resolver};
use crate::pipeline::plan::children::{
    ChildAction, ChildOperation, ip_key_has_address, ref_key, vlan_key,
};
use crate::pipeline::plan::{OpKind, Operation};
use crate::pipeline::report::ErrorEntry;
use crate::pipeline::snapshot::VM_ENDPOINT;
use crate::pipeline::snapshot::children::{
    DISK_ENDPOINT, INTERFACE_ENDPOINT, IP_ENDPOINT, MAC_ENDPOINT, VMINTERFACE_TYPE,
};

/// `was` of a failed child write in [`Failure`]: reported, not counted as a VM failure.
pub const CHILD_FAILURE: &str = "child";
const PRIMARY_IPS: [&str; 2] = ["primary_ip4", "primary_ip6"];

fn endpoint(kind: ChildKind) -> &'static str {
    match kind {
        ChildKind::Interface => INTERFACE_ENDPOINT,
        ChildKind::MacAddress => MAC_ENDPOINT,
        ChildKind::IpAddress => IP_ENDPOINT,
        ChildKind::VirtualDisk => DISK_ENDPOINT,
    }
}

/// True when the VM write leaves `field` out for the child dispatch: a primary IP that is set
/// (its address may be created in this plan), and the `disk` of an update with virtual disk
/// writes (NetBox sets it from the disks).
pub fn defers_vm_field(op: &Operation, field: &str, new_is_null: bool) -> bool {
    if PRIMARY_IPS.contains(&field) {
        return !new_is_null;
    }
    field == "disk"
        && matches!(op.op, OpKind::Update | OpKind::Adopt)
        && op.children.iter().any(|c| c.kind == ChildKind::VirtualDisk)
}

/// One VM of the window with child writes.
struct VmState<'a> {
    index: usize,
    op: &'a Operation,
    vm_id: u64,
    /// Children and VLANs by [`ref_key`]: the plan's, then those created here.
    ids: BTreeMap<String, u64>,
}

impl VmState<'_> {
    fn id_of(&self, kind: ChildKind, key: &str) -> Result<u64, String> {
        self.ids.get(&ref_key(kind, key)).copied().ok_or_else(|| {
            format!(
                "its {} '{key}' is not in NetBox (not written)",
                crate::pipeline::plan::children::kind_word(kind)
            )
        })
    }

    /// Whether the plan writes the child `kind`/`key` of this VM.
    fn writes(&self, kind: ChildKind, key: &str) -> bool {
        self.op
            .children
            .iter()
            .any(|c| c.kind == kind && c.key == key && c.op != ChildAction::Delete)
    }
}

/// How a created child is found again after a lost answer.
#[derive(Debug, Clone)]
enum Lookup {
    /// An interface or virtual disk by VM and name.
    ByVm {
        endpoint: &'static str,
        vm: u64,
        name: String,
    },
    /// A MAC or IP address by interface and value (`mac_address` / `address`).
    ByInterface {
        endpoint: &'static str,
        iface: u64,
        field: &'static str,
        value: String,
    },
}

/// One request of a step.
struct Item {
    /// Index into the window's [`VmState`]s.
    vm: usize,
    /// What the failure message names (`interface 'net0'`, `primary IPs`).
    label: String,
    /// The NetBox id written (PATCH, DELETE).
    id: Option<u64>,
    body: Value,
    /// The ref key a created child's id is kept under.
    created: Option<String>,
    lookup: Option<Lookup>,
}

/// A step's requests to one endpoint with one method.
struct Group {
    endpoint: &'static str,
    method: Method,
    items: Vec<Item>,
}

/// Writes the child operations and deferred primary IPs of the window's VM operations
/// (`window`: indexes into `ops`), after their VM writes recorded in `out`.
pub async fn write_children(
    client: &NetboxClient,
    ops: &[Operation],
    window: &[usize],
    resolver: &Resolver,
    bulk: bool,
    released: &BTreeSet<(usize, usize)>,
    out: &mut DispatchOutcome,
) {
    let mut states: Vec<VmState<'_>> = Vec::new();
    for &index in window {
        let op = &ops[index];
        let deferred = PRIMARY_IPS
            .iter()
            .any(|f| op.changes.find(f).is_some_and(|c| !c.new.is_null()));
        if op.children.is_empty() && !deferred {
            continue;
        }
        if !matches!(op.op, OpKind::Create | OpKind::Update | OpKind::Adopt) {
            continue;
        }
        // The VM write failed: its children wait for the next run (the failure is reported).
        if out
            .failures
            .iter()
            .any(|f| f.index == index && f.was != "journal")
        {
            continue;
        }
        let vm_id = match (&op.cluster, op.vmid) {
            (Some(cluster), Some(vmid)) => out.vm_ids.get(&(cluster.clone(), vmid)).copied(),
            _ => None,
        }
        .or(op.netbox_id);
        let Some(vm_id) = vm_id else { continue };
        states.push(VmState {
            index,
            op,
            vm_id,
            ids: op
                .child_ids
                .iter()
                .map(|(k, id)| (k.to_owned(), id))
                .collect(),
        });
    }
    if states.is_empty() {
        return;
    }

    // 1. Deletes, addresses before their interfaces.
    for kind in [
        ChildKind::IpAddress,
        ChildKind::MacAddress,
        ChildKind::Interface,
        ChildKind::VirtualDisk,
    ] {
        let groups = build(&states, out, |s, push| {
            for (_, c) in s.op.children.iter().enumerate().filter(|(pos, c)| {
                c.kind == kind
                    && c.op == ChildAction::Delete
                    && !released.contains(&(s.index, *pos))
            }) {
                push(c.netbox_id().map(|id| Item {
                    vm: 0,
                    label: c.label(),
                    id: Some(id),
                    body: json!({ "id": id }),
                    created: None,
                    lookup: None,
                }))
                .ok_or_else(|| (c.label(), "delete without a NetBox id".to_owned()))?;
            }
            Ok(())
        });
        send(
            client,
            groups,
            endpoint(kind),
            Method::DELETE,
            bulk,
            &mut states,
            out,
        )
        .await;
    }

    // 2-5. Creates and updates, kind by kind.
    for kind in [
        ChildKind::Interface,
        ChildKind::VirtualDisk,
        ChildKind::MacAddress,
        ChildKind::IpAddress,
    ] {
        for action in [ChildAction::Update, ChildAction::Create] {
            let groups = build(&states, out, |s, push| {
                for c in
                    s.op.children
                        .iter()
                        .filter(|c| c.kind == kind && c.op == action)
                {
                    if let Some(item) = child_item(s, &c, resolver).map_err(|m| (c.label(), m))? {
                        push(Some(item));
                    }
                }
                Ok(())
            });
            let method = if action == ChildAction::Create {
                Method::POST
            } else {
                Method::PATCH
            };
            send(
                client,
                groups,
                endpoint(kind),
                method,
                bulk,
                &mut states,
                out,
            )
            .await;
        }
    }

    // 6. Primary MACs created or moved in this plan.
    let groups = build(&states, out, |s, push| {
        for c in s.op.children.iter().filter(|c| {
            c.kind == ChildKind::Interface && c.op != ChildAction::Delete && defers_mac(s, c)
        }) {
            let Some(mac) = c
                .changes
                .find("primary_mac_address")
                .and_then(|m| m.new.as_string_value())
            else {
                continue;
            };
            let iface = s
                .id_of(ChildKind::Interface, c.key)
                .map_err(|m| (c.label(), m))?;
            let mac_id = s
                .id_of(ChildKind::MacAddress, &mac)
                .map_err(|m| (c.label(), format!("primary MAC not set: {m}")))?;
            push(Some(Item {
                vm: 0,
                label: c.label(),
                id: Some(iface),
                body: json!({"id": iface, "primary_mac_address": mac_id}),
                created: None,
                lookup: None,
            }));
        }
        Ok(())
    });
    send(
        client,
        groups,
        INTERFACE_ENDPOINT,
        Method::PATCH,
        bulk,
        &mut states,
        out,
    )
    .await;

    // 7. The VMs' primary IPs, now that their addresses exist.
    let groups = build(&states, out, |s, push| {
        let mut body = Map::new();
        for field in PRIMARY_IPS {
            let Some(address) =
                s.op.changes
                    .find(field)
                    .and_then(|c| c.new.as_string_value())
            else {
                continue;
            };
            let prefix = ref_key(ChildKind::IpAddress, "");
            let id = s
                .ids
                .iter()
                .find(|(k, _)| {
                    k.strip_prefix(&prefix)
                        .is_some_and(|key| ip_key_has_address(key, &address))
                })
                .map(|(_, id)| *id)
                .ok_or_else(|| {
                    (
                        format!("{field} '{address}'"),
                        "not set: that IP address is not in NetBox on this VM (not written)"
                            .to_owned(),
                    )
                })?;
            body.insert(field.to_owned(), json!(id));
        }
        if !body.is_empty() {
            body.insert("id".into(), json!(s.vm_id));
            push(Some(Item {
                vm: 0,
                label: "primary IPs".into(),
                id: Some(s.vm_id),
                body: Value::Object(body),
                created: None,
                lookup: None,
            }));
        }
        Ok(())
    });
    send(
        client,
        groups,
        VM_ENDPOINT,
        Method::PATCH,
        bulk,
        &mut states,
        out,
    )
    .await;
}

/// The IP address deletes (operation index, child index) that free an address another VM of
/// the plan creates: NetBox refuses the create while the old one exists (`enforce_unique`
/// compares the host address, whatever the prefix length, within a VRF or the global table),
/// and the two VMs may sit in different windows, the taker's first.
pub fn moved_address_deletes(ops: &[Operation]) -> BTreeSet<(usize, usize)> {
    // "10.0.0.5/24@blue" -> ("10.0.0.5", "blue").
    let host = |key: &str| {
        let (address, vrf) = key.split_once('@').unwrap_or((key, ""));
        let ip = address.split('/').next().unwrap_or(address);
        (ip.to_ascii_lowercase(), vrf.to_owned())
    };
    let is_ip = |c: &ChildOperation<'_>, action: ChildAction| {
        c.kind == ChildKind::IpAddress && c.op == action
    };
    // Only the hosts some VM deletes can be moving: few or none, where every VM's creates
    // are ~400,000 addresses on a 100k-VM first sync (~90 MB as a map of them all).
    let mut created: BTreeMap<(String, String), BTreeSet<usize>> = ops
        .iter()
        .flat_map(|op| op.children.iter())
        .filter(|c| is_ip(c, ChildAction::Delete))
        .map(|c| (host(c.key), BTreeSet::new()))
        .collect();
    if created.is_empty() {
        return BTreeSet::new();
    }
    for (index, op) in ops.iter().enumerate() {
        for c in op.children.iter().filter(|c| is_ip(c, ChildAction::Create)) {
            if let Some(by) = created.get_mut(&host(c.key)) {
                by.insert(index);
            }
        }
    }
    let mut out = BTreeSet::new();
    for (index, op) in ops.iter().enumerate() {
        for (pos, c) in op.children.iter().enumerate() {
            if is_ip(&c, ChildAction::Delete)
                && created
                    .get(&host(c.key))
                    .is_some_and(|by| by.iter().any(|&i| i != index))
            {
                out.insert((index, pos));
            }
        }
    }
    out
}

/// Deletes the addresses [`moved_address_deletes`] found, before any window is written, so
/// the VM that takes an address can create it whichever window it is in.
pub async fn release_moved_addresses(
    client: &NetboxClient,
    ops: &[Operation],
    released: &BTreeSet<(usize, usize)>,
    bulk: bool,
    out: &mut DispatchOutcome,
) {
    let mut states: Vec<VmState<'_>> = Vec::new();
    let mut items = Vec::new();
    for &(index, pos) in released {
        let op = &ops[index];
        let Some(c) = op.children.get(pos) else {
            continue;
        };
        if states.last().is_none_or(|s| s.index != index) {
            states.push(VmState {
                index,
                op,
                vm_id: op.netbox_id.unwrap_or_default(),
                ids: BTreeMap::new(),
            });
        }
        let vm = states.len() - 1;
        match c.netbox_id() {
            Some(id) => items.push(Item {
                vm,
                label: c.label(),
                id: Some(id),
                body: json!({ "id": id }),
                created: None,
                lookup: None,
            }),
            None => fail(out, &states[vm], &c.label(), "delete without a NetBox id"),
        }
    }
    send(
        client,
        items,
        IP_ENDPOINT,
        Method::DELETE,
        bulk,
        &mut states,
        out,
    )
    .await;
}

/// Whether an interface's primary MAC waits for step 6: it is set to a MAC that this plan
/// creates or moves, or that has no id yet.
fn defers_mac(s: &VmState<'_>, c: &ChildOperation<'_>) -> bool {
    c.changes
        .find("primary_mac_address")
        .and_then(|m| m.new.as_string_value())
        .is_some_and(|mac| {
            s.writes(ChildKind::MacAddress, &mac)
                || !s.ids.contains_key(&ref_key(ChildKind::MacAddress, &mac))
        })
}

/// The request items of one step: `each` pushes a VM's items (`None`: nothing), or names a
/// child it cannot write (reported, the VM's other items still go).
fn build<'a, F>(states: &[VmState<'a>], out: &mut DispatchOutcome, mut each: F) -> Vec<Item>
where
    F: FnMut(
        &VmState<'a>,
        &mut dyn FnMut(Option<Item>) -> Option<()>,
    ) -> Result<(), (String, String)>,
{
    let mut items = Vec::new();
    for (vm, s) in states.iter().enumerate() {
        let mut mine: Vec<Item> = Vec::new();
        let result = each(s, &mut |item| {
            let mut item = item?;
            item.vm = vm;
            mine.push(item);
            Some(())
        });
        if let Err((label, message)) = result {
            fail(out, s, &label, &message);
        }
        items.extend(mine);
    }
    items
}

fn fail(out: &mut DispatchOutcome, s: &VmState<'_>, label: &str, message: &str) {
    out.failures.push(Failure {
        index: s.index,
        was: CHILD_FAILURE,
        entry: ErrorEntry::new(&s.op.scope, PHASE, format!("{label}: {message}")),
    });
}

/// The request of a create or update; `None` for an update with nothing left to send now (its
/// only change, a primary MAC, waits for step 6): a PATCH of nothing still bumps
/// `last_updated` in NetBox and logs a change.
fn child_item(
    s: &VmState<'_>,
    c: &ChildOperation<'_>,
    resolver: &Resolver,
) -> Result<Option<Item>, String> {
    let mut body = Map::new();
    let creating = c.op == ChildAction::Create;
    if creating && matches!(c.kind, ChildKind::Interface | ChildKind::VirtualDisk) {
        body.insert("virtual_machine".into(), json!(s.vm_id));
    }
    let mut iface_id = None;
    for change in c.changes.iter() {
        let new = change.new.to_value();
        match (c.kind, change.field) {
            (_, "tags") => {
                let slugs = new.as_array().cloned().unwrap_or_default();
                let tags: Vec<Value> = slugs
                    .iter()
                    .map(|t| match t.as_str() {
                        Some(slug) => resolver
                            .id("tag", slug)
                            .map_or_else(|| json!({ "slug": slug }), |id| json!(id)),
                        None => t.clone(),
                    })
                    .collect();
                body.insert("tags".into(), Value::Array(tags));
            }
            (ChildKind::Interface, "untagged_vlan") => {
                let vlan = match new.as_u64() {
                    None => Value::Null,
                    Some(vid) => json!(
                        s.ids
                            .get(&vlan_key(vid))
                            .ok_or_else(|| format!("VLAN {vid} is not in NetBox"))?
                    ),
                };
                body.insert("untagged_vlan".into(), vlan);
            }
            (ChildKind::Interface, "primary_mac_address") => {
                let value = match new.as_str() {
                    None => Value::Null,
                    Some(_) if defers_mac(s, c) => continue,
                    Some(mac) => json!(s.id_of(ChildKind::MacAddress, mac)?),
                };
                body.insert("primary_mac_address".into(), value);
            }
            (ChildKind::MacAddress | ChildKind::IpAddress, "interface") => match new.as_str() {
                None => {
                    body.insert("assigned_object_type".into(), Value::Null);
                    body.insert("assigned_object_id".into(), Value::Null);
                }
                Some(key) => {
                    let id = s.id_of(ChildKind::Interface, key)?;
                    iface_id = Some(id);
                    body.insert("assigned_object_type".into(), json!(VMINTERFACE_TYPE));
                    body.insert("assigned_object_id".into(), json!(id));
                }
            },
            (ChildKind::IpAddress, "vrf") => {
                let vrf = match new.as_str() {
                    None => Value::Null,
                    Some(name) => json!({ "name": name }),
                };
                body.insert("vrf".into(), vrf);
            }
            (_, field) => {
                body.insert(field.to_owned(), new);
            }
        }
    }
    let lookup = creating.then(|| match c.kind {
        ChildKind::Interface | ChildKind::VirtualDisk => Some(Lookup::ByVm {
            endpoint: endpoint(c.kind),
            vm: s.vm_id,
            name: c.key.to_owned(),
        }),
        ChildKind::MacAddress => iface_id.map(|iface| Lookup::ByInterface {
            endpoint: MAC_ENDPOINT,
            iface,
            field: "mac_address",
            value: c.key.to_owned(),
        }),
        ChildKind::IpAddress => iface_id.map(|iface| Lookup::ByInterface {
            endpoint: IP_ENDPOINT,
            iface,
            field: "address",
            value: body
                .get("address")
                .and_then(Value::as_str)
                .unwrap_or(c.key)
                .to_owned(),
        }),
    });
    if !creating {
        if body.is_empty() {
            return Ok(None);
        }
        let id = c.netbox_id().ok_or("update without a NetBox id")?;
        body.insert("id".into(), json!(id));
    }
    Ok(Some(Item {
        vm: 0,
        label: c.label(),
        id: c.netbox_id(),
        body: Value::Object(body),
        created: creating.then(|| ref_key(c.kind, c.key)),
        lookup: lookup.flatten(),
    }))
}

/// Sends one step's items to `endpoint` with `method`: bulk (split on failure) or one by one.
async fn send(
    client: &NetboxClient,
    items: Vec<Item>,
    endpoint: &'static str,
    method: Method,
    bulk: bool,
    states: &mut [VmState<'_>],
    out: &mut DispatchOutcome,
) {
    if items.is_empty() {
        return;
    }
    let group = Group {
        endpoint,
        method,
        items,
    };
    if bulk {
        send_bulk(client, group, states, out).await;
    } else {
        for item in group.items {
            let result = send_one(client, group.endpoint, &group.method, &item).await;
            settle(item, result, states, out);
        }
    }
}

/// Records one item's result: a created child's id, or the failure.
fn settle(
    item: Item,
    result: Result<Option<u64>, String>,
    states: &mut [VmState<'_>],
    out: &mut DispatchOutcome,
) {
    let s = &mut states[item.vm];
    match result {
        Ok(id) => {
            out.done += 1;
            if let (Some(key), Some(id)) = (item.created, id) {
                s.ids.insert(key, id);
            }
        }
        Err(message) => fail(out, s, &item.label, &message),
    }
}

/// One request; a POST whose answer was lost is looked up before it is sent again.
async fn send_one(
    client: &NetboxClient,
    endpoint: &str,
    method: &Method,
    item: &Item,
) -> Result<Option<u64>, String> {
    let id_of = |o: &crate::clients::netbox::Object| o.get("id").and_then(Value::as_u64);
    match *method {
        Method::DELETE => {
            let id = item.id.ok_or("delete without a NetBox id")?;
            client
                .delete(endpoint, id)
                .await
                .map(|_| None)
                .map_err(|e| e.to_string())
        }
        Method::PATCH => {
            let id = item.id.ok_or("update without a NetBox id")?;
            let mut body = item.body.clone();
            if let Some(b) = body.as_object_mut() {
                b.remove("id");
            }
            client
                .patch(endpoint, id, &body, &["id"])
                .await
                .map(|o| id_of(&o).or(Some(id)))
                .map_err(|e| e.to_string())
        }
        _ => match client.create(endpoint, &item.body, &["id"]).await {
            Ok(o) => Ok(id_of(&o)),
            Err(e) if e.is_ambiguous() => create_after_lost(client, endpoint, item, &e).await,
            Err(e) => Err(e.to_string()),
        },
    }
}

/// After a lost POST answer: the child if NetBox has it, else one more POST.
async fn create_after_lost(
    client: &NetboxClient,
    endpoint: &str,
    item: &Item,
    first: &NetboxError,
) -> Result<Option<u64>, String> {
    let Some(lookup) = &item.lookup else {
        return Err(format!(
            "{first} (the answer was lost and the child cannot be looked up; the next run sees \
             whether it was created)"
        ));
    };
    match find(client, lookup).await {
        Ok(Some(id)) => {
            tracing::info!(child = %item.label, id, "lost POST answer: the child was created");
            Ok(Some(id))
        }
        Ok(None) => client
            .create(endpoint, &item.body, &["id"])
            .await
            .map(|o| o.get("id").and_then(Value::as_u64))
            .map_err(|e| format!("{e} (after a lost answer: {first})")),
        Err(le) => Err(format!("{first}; and the lookup failed: {le}")),
    }
}

/// A created child by its identity (one filtered read).
async fn find(client: &NetboxClient, lookup: &Lookup) -> Result<Option<u64>, NetboxError> {
    let (endpoint, filters, field, value, parent) = match lookup {
        Lookup::ByVm { endpoint, vm, name } => (
            *endpoint,
            vec![
                ("virtual_machine_id".to_owned(), vm.to_string()),
                ("name".to_owned(), name.clone()),
            ],
            "name",
            name.clone(),
            *vm,
        ),
        Lookup::ByInterface {
            endpoint,
            iface,
            field,
            value,
        } => (
            *endpoint,
            vec![
                ("vminterface_id".to_owned(), iface.to_string()),
                ((*field).to_owned(), value.clone()),
            ],
            *field,
            value.clone(),
            *iface,
        ),
    };
    let parent_fields: &[&str] = match lookup {
        Lookup::ByVm { .. } => &["virtual_machine"],
        Lookup::ByInterface { .. } => &["assigned_object_type", "assigned_object_id"],
    };
    let mut fields = vec![field];
    fields.extend_from_slice(parent_fields);
    let rows = client.list_all(endpoint, &filters, &fields).await?;
    // NetBox ignores a filter it does not know: compare again here, the parent too (a MAC is
    // not unique, and another VM's interface may hold the same one).
    let on_parent = |r: &crate::clients::netbox::Object| match lookup {
        Lookup::ByVm { .. } => {
            let vm = r.get("virtual_machine");
            vm.and_then(|v| v.get("id").and_then(Value::as_u64).or(v.as_u64())) == Some(parent)
        }
        Lookup::ByInterface { .. } => {
            r.get("assigned_object_type").and_then(Value::as_str) == Some(VMINTERFACE_TYPE)
                && r.get("assigned_object_id").and_then(Value::as_u64) == Some(parent)
        }
    };
    Ok(rows
        .iter()
        .find(|r| {
            on_parent(r)
                && r.get(field)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case(&value))
        })
        .and_then(|r| r.get("id").and_then(Value::as_u64)))
}

/// Bulk requests, split until the bad items are isolated (as for VM writes).
async fn send_bulk(
    client: &NetboxClient,
    group: Group,
    states: &mut [VmState<'_>],
    out: &mut DispatchOutcome,
) {
    let Group {
        endpoint,
        method,
        items,
    } = group;
    let mut queue: Vec<Vec<Item>> = vec![items];
    while let Some(mut items) = queue.pop() {
        if items.is_empty() {
            continue;
        }
        let size: usize = items.iter().map(|i| i.body.to_string().len() + 1).sum();
        if items.len() > 1 && size > MAX_BULK_BODY_BYTES {
            let second = items.split_off(items.len() / 2);
            queue.push(second);
            queue.push(items);
            continue;
        }
        if items.len() == 1 {
            let item = items.pop().expect("one item");
            let result = send_one(client, endpoint, &method, &item).await;
            settle(item, result, states, out);
            continue;
        }
        let bodies: Vec<Value> = items.iter().map(|i| i.body.clone()).collect();
        let result: Result<Vec<Option<u64>>, NetboxError> = match method {
            Method::POST => client
                .create_bulk(endpoint, &bodies, &["id"])
                .await
                .map(|objs| {
                    objs.iter()
                        .map(|o| o.get("id").and_then(Value::as_u64))
                        .collect()
                }),
            Method::PATCH => client
                .patch_bulk(endpoint, &bodies, &["id"])
                .await
                .map(|_| items.iter().map(|i| i.id).collect()),
            _ => {
                let ids: Vec<u64> = items.iter().filter_map(|i| i.id).collect();
                client
                    .delete_bulk(endpoint, &ids)
                    .await
                    .map(|()| vec![None; items.len()])
            }
        };
        match result {
            Ok(ids) => {
                for (item, id) in items.into_iter().zip(ids) {
                    settle(item, Ok(id), states, out);
                }
            }
            // Some may exist now: each is looked up before it is sent again.
            Err(e) if method == Method::POST && e.is_ambiguous() => {
                for item in items {
                    let result = create_after_lost(client, endpoint, &item, &e).await;
                    settle(item, result, states, out);
                }
            }
            // NetBox could not be reached or did not answer, retries included: no item is to
            // blame, and halving would send each half through the same retries again.
            Err(e @ NetboxError::Http(_)) => {
                let message = e.to_string();
                for item in items {
                    settle(item, Err(message.clone()), states, out);
                }
            }
            Err(e) => {
                let (bad_index, bad_ids) = e
                    .body()
                    .map(|b| (b.failed_indexes(), b.failed_ids()))
                    .unwrap_or_default();
                let bad_index: BTreeSet<usize> = bad_index.into_iter().collect();
                let is_bad = |pos: usize, item: &Item| {
                    bad_index.contains(&pos) || item.id.is_some_and(|id| bad_ids.contains(&id))
                };
                if items.iter().enumerate().any(|(pos, i)| is_bad(pos, i)) {
                    let mut rest = Vec::new();
                    for (pos, item) in items.into_iter().enumerate() {
                        if is_bad(pos, &item) {
                            let message = item_message(&e, pos, item.id);
                            settle(item, Err(message), states, out);
                        } else {
                            rest.push(item);
                        }
                    }
                    queue.push(rest);
                } else {
                    let second = items.split_off(items.len() / 2);
                    queue.push(second);
                    queue.push(items);
                }
            }
        }
    }
}

/// The message NetBox gave for one bulk item, else the whole error.
fn item_message(e: &NetboxError, pos: usize, id: Option<u64>) -> String {
    e.body()
        .and_then(|b| {
            b.items
                .iter()
                .find(|i| i.index == Some(pos) || (i.id.is_some() && i.id == id))
        })
        .map(|i| i.errors.message())
        .unwrap_or_else(|| e.to_string())
}

/// `apply`'s guard for children: re-reads every updated or deleted child of `ops` (filtered
/// reads per kind, [`crate::pipeline::dispatch::last_updated_by_id`]) and returns `(operation, child,
/// why)` for each one that is gone or whose `last_updated` moved since the plan.
pub async fn check_stale(
    client: &NetboxClient,
    ops: &[Operation],
) -> Result<Vec<(usize, usize, String)>, NetboxError> {
    let mut by_kind: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for op in ops {
        for c in op.children.iter().filter(|c| c.op != ChildAction::Create) {
            if let Some(id) = c.netbox_id() {
                by_kind.entry(endpoint(c.kind)).or_default().push(id);
            }
        }
    }
    let mut current: BTreeMap<(&'static str, u64), Option<String>> = BTreeMap::new();
    for (endpoint, ids) in by_kind {
        for (id, updated) in
            crate::pipeline::dispatch::last_updated_by_id(client, endpoint, &ids).await?
        {
            current.insert((endpoint, id), updated);
        }
    }
    let mut refused = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        for (child, c) in op.children.iter().enumerate() {
            let Some(id) = c.netbox_id().filter(|_| c.op != ChildAction::Create) else {
                continue;
            };
            match current.get(&(endpoint(c.kind), id)) {
                None => refused.push((
                    index,
                    child,
                    format!("{} #{id} is gone since the plan", c.label()),
                )),
                Some(now) if c.last_updated.is_some() && now.as_deref() != c.last_updated => {
                    refused.push((
                        index,
                        child,
                        format!(
                            "{} #{id} changed since the plan (last_updated {} -> {}); make a \
                             new plan",
                            c.label(),
                            c.last_updated.unwrap_or("?"),
                            now.as_deref().unwrap_or("?")
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::reconcile::{ChangeList, Changes};
    use std::num::NonZeroU64;

    fn op_with(children: Vec<ChildOperation<'_>>, changes: &[(&str, &str)]) -> Operation {
        let mut c = Changes::new();
        for (f, v) in changes {
            c.push(f, "null", v);
        }
        Operation {
            op: OpKind::Update,
            scope: "pve-a/pve1/100".into(),
            cluster: Some("pve-a".into()),
            cluster_id: Some(1),
            vmid: Some(100),
            kind: None,
            netbox_id: Some(7),
            name: None,
            last_updated: None,
            changes: c,
            object: None,
            journal: None,
            children: children.into_iter().collect(),
            child_ids: Default::default(),
        }
    }

    fn disk(op: ChildAction) -> ChildOperation<'static> {
        ChildOperation {
            kind: ChildKind::VirtualDisk,
            key: "scsi0",
            parent: None,
            op,
            id: None,
            last_updated: None,
            changes: ChangeList::default(),
        }
    }

    #[test]
    fn the_vm_write_leaves_set_primary_ips_and_a_recomputed_disk_to_the_children() {
        let plain = op_with(vec![], &[]);
        assert!(defers_vm_field(&plain, "primary_ip4", false));
        assert!(
            !defers_vm_field(&plain, "primary_ip4", true),
            "a clear goes first"
        );
        assert!(!defers_vm_field(&plain, "disk", false));
        let disks = op_with(vec![disk(ChildAction::Create)], &[]);
        assert!(defers_vm_field(&disks, "disk", false));
        let mut create = disks.clone();
        create.op = OpKind::Create;
        assert!(
            !defers_vm_field(&create, "disk", false),
            "a new VM has no disks yet: its disk is valid"
        );
    }

    fn ip(key: &str, op: ChildAction) -> ChildOperation<'_> {
        ChildOperation {
            kind: ChildKind::IpAddress,
            key,
            parent: Some("net0"),
            op,
            id: NonZeroU64::new(31).filter(|_| op != ChildAction::Create),
            last_updated: None,
            changes: ChangeList::default(),
        }
    }

    #[test]
    fn an_address_deleted_here_and_created_by_another_vm_is_freed_first() {
        use ChildAction::{Create, Delete};
        // A first sync: only creates, so nothing moves.
        let creates = [
            op_with(vec![ip("10.0.0.5/24", Create)], &[]),
            op_with(vec![ip("10.0.0.6/24", Create)], &[]),
        ];
        assert!(moved_address_deletes(&creates).is_empty());
        let ops = [
            // VM 0 gives up 10.0.0.5 (another prefix length, same host) and a VRF's 10.0.0.6.
            op_with(
                vec![
                    disk(Create),
                    ip("10.0.0.5/16", Delete),
                    ip("10.0.0.6/24@blue", Delete),
                    ip("2001:DB8::1/64", Delete),
                ],
                &[],
            ),
            // VM 1 takes 10.0.0.5 and the global 10.0.0.6; VM 0 itself re-creates the IPv6.
            op_with(
                vec![ip("10.0.0.5/24", Create), ip("10.0.0.6/24", Create)],
                &[],
            ),
        ];
        let mut with_own = ops.clone();
        with_own[0].children.push(ip("2001:db8::1/64", Create));
        assert_eq!(
            moved_address_deletes(&with_own),
            BTreeSet::from([(0, 1)]),
            "the VRF's address and an address the same VM re-creates stay in its window"
        );
        let mut taken_elsewhere = ops;
        taken_elsewhere[1]
            .children
            .push(ip("2001:db8::1/48", Create));
        assert_eq!(
            moved_address_deletes(&taken_elsewhere),
            BTreeSet::from([(0, 1), (0, 3)]),
            "the host compares without case or prefix length"
        );
    }
}
