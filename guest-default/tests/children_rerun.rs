//! Zero-write rerun of children: for every children fixture, render the desired children as
//! the host would read them back from NetBox after applying the plan (managed tag, ids, NetBox's
//! own spellings: `{value,label}` choices, nested MAC and VLAN, lowercase-insensitive MACs),
//! normalize them as current, and diff again: nothing may change.

use std::path::Path;

use guest_default::DefaultRules;
use guest_default::children::{VmChildren, VmInterface};
use guest_default::model::{Field, FieldChange, Fixture, RuleSet};
use serde_json::{Value, json};

fn set<T: Clone>(f: &Field<Vec<T>>) -> Option<Vec<T>> {
    f.as_set().cloned()
}

/// The JSON the host would render for `d` once NetBox holds it.
fn render(d: &VmChildren) -> Value {
    let tags = json!([{"slug": "pve2netbox"}]);
    let mut out = serde_json::Map::new();
    let ifaces: Vec<VmInterface> = set(&d.interfaces).unwrap_or_default();
    let id_of = |name: &Option<String>| {
        name.as_ref()
            .and_then(|n| ifaces.iter().position(|i| &i.name == n))
            .map(|p| 100 + p as u64)
    };
    if let Some(list) = set(&d.interfaces) {
        let v: Vec<Value> = list
            .iter()
            .enumerate()
            .map(|(i, x)| {
                json!({
                    "id": 100 + i as u64,
                    "name": x.name,
                    "enabled": x.enabled.as_set().copied().unwrap_or(true),
                    "mtu": x.mtu.as_set(),
                    "description": x.description.as_set().cloned().unwrap_or_default(),
                    "mode": x.mode.as_set().map(|m| json!({"value": m, "label": m})),
                    "untagged_vlan": x.untagged_vlan.as_set().map(|v| json!({"id": 9000 + v, "vid": v})),
                    "primary_mac_address": x.primary_mac_address.as_set()
                        .map(|m| json!({"id": 1, "mac_address": m.to_lowercase()})),
                    "tags": tags,
                })
            })
            .collect();
        out.insert("interfaces".into(), Value::Array(v));
    }
    if let Some(list) = set(&d.mac_addresses) {
        let v: Vec<Value> = list
            .iter()
            .enumerate()
            .map(|(i, m)| {
                json!({"id": 200 + i as u64, "mac_address": m.mac_address.to_lowercase(),
                "assigned_object_id": id_of(&m.interface), "tags": tags})
            })
            .collect();
        out.insert("mac_addresses".into(), Value::Array(v));
    }
    if let Some(list) = set(&d.ip_addresses) {
        let v: Vec<Value> = list
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({"id": 300 + i as u64, "address": a.address,
                "vrf": a.vrf.as_ref().map(|n| json!({"id": 7, "name": n})),
                "status": a.status.as_set().map(|s| json!({"value": s, "label": s})),
                "assigned_object_id": id_of(&a.interface), "tags": tags})
            })
            .collect();
        out.insert("ip_addresses".into(), Value::Array(v));
        let primary = |f: &Field<String>| f.as_set().map(|a| json!({"id": 1, "address": a}));
        out.insert("primary_ip4".into(), primary(&d.primary_ip4).into());
        out.insert("primary_ip6".into(), primary(&d.primary_ip6).into());
    }
    if let Some(list) = set(&d.virtual_disks) {
        let v: Vec<Value> = list
            .iter()
            .enumerate()
            .map(|(i, x)| {
                json!({"id": 400 + i as u64, "name": x.name, "size": x.size.as_set(),
                "description": x.description.as_set().cloned().unwrap_or_default(), "tags": tags})
            })
            .collect();
        out.insert("virtual_disks".into(), Value::Array(v));
    }
    Value::Object(out)
}

#[test]
fn a_rerun_after_the_plan_writes_no_child() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("children fixtures") {
        let path = entry.expect("entry").path();
        let fixture = Fixture::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if !fixture.has_children() {
            continue; // the VM-only fixtures
        }
        let ctx = fixture.effective_context(DefaultRules::default_policies());
        let network = fixture.network.clone().unwrap_or_default();
        let Ok(desired) = DefaultRules::normalize_desired_children(&ctx, &fixture.guest, &network)
        else {
            continue; // the error fixtures
        };
        let text = render(&desired).to_string();
        let current = DefaultRules::normalize_current_children(&ctx, &text, true)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let mut vm_changes: Vec<FieldChange> = Vec::new();
        let changes =
            DefaultRules::diff_children(&ctx, &desired, Some(&current), None, &mut vm_changes)
                .unwrap();
        assert!(changes.is_empty(), "{}: {changes:?}", path.display());
        // Only `disk` may appear (the test passes no current disk); no primary IP change.
        assert!(
            vm_changes.iter().all(|c| c.field == "disk"),
            "{}: {vm_changes:?}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} fixtures checked");
}
