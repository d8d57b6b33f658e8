use serde_json::{Value, json};

use super::super::{IpRef, Primaries};
use super::*;
use crate::pipeline::snapshot::primaries::PrimaryIps;

/// VM 7's children (and one row of VM 8, so that the pools hold other texts too).
fn rows() -> Value {
    json!({
        "interfaces": [
            {"id": 11, "virtual_machine": {"id": 7}, "name": "net0", "enabled": true,
             "mtu": 1500, "description": "uplink",
             "mode": {"value": "access", "label": "Access"},
             "untagged_vlan": {"id": 5, "vid": 10, "name": "v10"},
             "mac_address": "BC:24:11:2A:3B:4C",
             "tags": [{"id": 1, "name": "pve2netbox", "slug": "pve2netbox"}],
             "last_updated": "2026-01-02T03:04:05.123456Z"},
            {"id": 12, "virtual_machine": {"id": 7}, "name": "net1"},
            {"id": 13, "virtual_machine": {"id": 8}, "name": "eth0"}],
        "mac_addresses": [
            {"id": 21, "mac_address": "BC:24:11:2A:3B:4C",
             "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 11}],
        "ip_addresses": [
            {"id": 31, "address": "10.0.0.5/24", "vrf": {"id": 3, "name": "blue"},
             "status": {"value": "active", "label": "Active"},
             "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 11},
            {"id": 32, "address": "2001:db8::5/64",
             "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 12}],
        "virtual_disks": [
            {"id": 41, "virtual_machine": {"id": 7}, "name": "scsi0", "size": 32768,
             "description": "local-lvm", "tags": ["pve2netbox"]}]
    })
}

fn snapshot(rows: Value, ip4: Option<&str>) -> ChildrenSnapshot {
    let mut snap = ChildrenSnapshot::from_json_for_tests(rows);
    let ip = |address: &str| IpRef {
        id: 31,
        address: address.into(),
    };
    snap.set_primaries(PrimaryIps::from_iter([(
        7,
        Primaries {
            ip4: ip4.map(ip),
            ip6: None,
        },
    )]));
    snap
}

/// VM 7's key bytes and text.
fn keyed(snap: &ChildrenSnapshot) -> (Vec<u8>, String) {
    let c = snap.vm_children(7).expect("children read");
    let mut bytes = Vec::new();
    c.key_bytes(&mut bytes);
    (bytes, c.json())
}

#[test]
fn the_text_is_the_snapshots_rendering() {
    let snap = snapshot(rows(), Some("10.0.0.5/24"));
    for vm in [7, 8, 99] {
        assert_eq!(
            snap.vm_children(vm).map(|c| c.json()),
            snap.children_json(vm)
        );
    }
    let mut no_ips = rows();
    no_ips.as_object_mut().unwrap().remove("ip_addresses");
    let snap = snapshot(no_ips, Some("10.0.0.5/24"));
    assert_eq!(snap.vm_children(7).map(|c| c.json()), snap.children_json(7));
    // No kind read: not read, for both.
    let snap = snapshot(json!({}), None);
    assert!(snap.vm_children(7).is_none());
    assert!(snap.children_json(7).is_none());
}

#[test]
fn the_same_rows_read_in_another_order_key_the_same() {
    let base = keyed(&snapshot(rows(), Some("10.0.0.5/24")));
    // Each kind's rows reversed and another VM's rows first: every text sits elsewhere in
    // its pool, and the tag lists and choices are kept in another order.
    let mut other = rows();
    for (_, list) in other.as_object_mut().unwrap() {
        let list = list.as_array_mut().unwrap();
        list.reverse();
        list.insert(
            0,
            json!({"id": 1, "virtual_machine": {"id": 9}, "name": "x", "mac_address": "00:00:00:00:00:01",
                   "address": "192.0.2.1/32", "tags": ["other"],
                   "mode": {"value": "tagged"}, "status": {"value": "reserved"},
                   "assigned_object_type": "virtualization.vminterface",
                   "assigned_object_id": 1}),
        );
    }
    let moved = keyed(&snapshot(other, Some("10.0.0.5/24")));
    assert_eq!(moved, base);
}

/// Every field of every kind, and the kinds read and the primary IP: each change gives other
/// key bytes, and no two inputs share bytes unless they share the text.
#[test]
fn any_changed_byte_changes_the_key() {
    let set = |kind: &str, i: usize, field: &str, value: Value| {
        let mut v = rows();
        v[kind][i][field] = value;
        v
    };
    let mut cases: Vec<(String, Value, Option<&str>)> = Vec::new();
    let mut case = |what: String, v: Value, ip4: Option<&'static str>| cases.push((what, v, ip4));
    for (field, value) in [
        ("id", json!(14)),
        ("name", json!("net9")),
        ("name", json!("net")),
        ("enabled", json!(false)),
        ("enabled", json!(null)),
        ("mtu", json!(9000)),
        ("mtu", json!(null)),
        ("description", json!("uplinK")),
        ("description", json!(null)),
        ("mode", json!({"value": "tagged"})),
        ("mode", json!({"value": 1})),
        ("mode", json!(null)),
        ("untagged_vlan", json!({"id": 5, "vid": 11})),
        ("untagged_vlan", json!(null)),
        ("mac_address", json!("BC:24:11:2A:3B:4D")),
        ("tags", json!([])),
        ("tags", json!(["pve2netbox", "x"])),
    ] {
        case(
            format!("interface {field} {value}"),
            set("interfaces", 0, field, value),
            Some("10.0.0.5/24"),
        );
    }
    for (field, value) in [
        ("id", json!(20)),
        ("mac_address", json!("BC:24:11:2A:3B:4D")),
        ("assigned_object_id", json!(12)),
        ("assigned_object_type", json!("dcim.interface")),
        ("tags", json!(["t"])),
    ] {
        case(
            format!("mac {field} {value}"),
            set("mac_addresses", 0, field, value),
            Some("10.0.0.5/24"),
        );
    }
    for (field, value) in [
        ("id", json!(30)),
        ("address", json!("10.0.0.6/24")),
        ("vrf", json!({"id": 3, "name": "green"})),
        ("vrf", json!(null)),
        ("status", json!({"value": "reserved"})),
        ("status", json!(null)),
        ("assigned_object_id", json!(12)),
        ("tags", json!(["t"])),
    ] {
        case(
            format!("ip {field} {value}"),
            set("ip_addresses", 0, field, value),
            Some("10.0.0.5/24"),
        );
    }
    for (field, value) in [
        ("id", json!(40)),
        ("name", json!("scsi1")),
        ("size", json!(32769)),
        ("size", json!(null)),
        ("description", json!("")),
        ("tags", json!([])),
    ] {
        case(
            format!("disk {field} {value}"),
            set("virtual_disks", 0, field, value),
            Some("10.0.0.5/24"),
        );
    }
    for kind in [
        "interfaces",
        "mac_addresses",
        "ip_addresses",
        "virtual_disks",
    ] {
        let mut gone = rows();
        gone.as_object_mut().unwrap().remove(kind);
        case(format!("{kind} not read"), gone, Some("10.0.0.5/24"));
        let mut empty = rows();
        empty[kind] = json!([]);
        case(format!("{kind} empty"), empty, Some("10.0.0.5/24"));
    }
    let mut extra = rows();
    extra["interfaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": 15, "virtual_machine": {"id": 7}, "name": "net2"}));
    case("another interface".into(), extra, Some("10.0.0.5/24"));
    case("primary IP changed".into(), rows(), Some("10.0.0.6/24"));
    case("no primary IP".into(), rows(), None);

    let base = keyed(&snapshot(rows(), Some("10.0.0.5/24")));
    let keyed: Vec<(String, (Vec<u8>, String))> = cases
        .into_iter()
        .map(|(what, v, ip4)| (what, keyed(&snapshot(v, ip4))))
        .collect();
    for (what, (bytes, _)) in &keyed {
        assert_ne!(bytes, &base.0, "{what}: the same key bytes");
    }
    for (i, (a, (a_bytes, a_text))) in keyed.iter().enumerate() {
        for (b, (b_bytes, b_text)) in &keyed[i + 1..] {
            if a_bytes == b_bytes {
                assert_eq!(
                    a_text, b_text,
                    "{a} and {b}: the same key bytes, other texts"
                );
            }
        }
    }
}

/// A row's `last_updated` is not in the text, so it is not keyed: a row that differs in it
/// alone keys the same and renders the same text (were it ever rendered, this fails).
#[test]
fn last_updated_alone_is_not_keyed_and_not_rendered() {
    let base = keyed(&snapshot(rows(), Some("10.0.0.5/24")));
    for (kind, value) in [
        ("interfaces", json!("2026-01-02T03:04:05.123457Z")),
        ("interfaces", json!("yesterday")),
        ("interfaces", json!(null)),
        ("mac_addresses", json!("2026-01-02T03:04:05Z")),
        ("ip_addresses", json!("2026-01-02T03:04:05.000001Z")),
        ("virtual_disks", json!("another day")),
    ] {
        let mut v = rows();
        v[kind][0]["last_updated"] = value.clone();
        let changed = keyed(&snapshot(v, Some("10.0.0.5/24")));
        assert_eq!(changed.1, base.1, "{kind} {value}: the text changed");
        assert_eq!(changed.0, base.0, "{kind} {value}: the key changed");
    }
}

/// Numbers of several packed bytes (read as one word, or past eight bytes by the loop) and
/// texts: rows that differ in one seven-bit group of one number, or in one byte of one text,
/// each key otherwise.
#[test]
fn one_byte_changed_in_a_long_number_or_a_text_changes_the_key() {
    let set = |kind: &str, field: &str, value: Value| {
        let mut v = rows();
        v[kind][0][field] = value;
        keyed(&snapshot(v, Some("10.0.0.5/24"))).0
    };
    let mut keys = vec![(
        "base".to_owned(),
        keyed(&snapshot(rows(), Some("10.0.0.5/24"))).0,
    )];
    let big = 1u64 << 56;
    for group in [0, 1, 2, 3, 5, 7, 8, 9] {
        let bit = 1u64 << (7 * group);
        keys.push((
            format!("size +{bit}"),
            set("virtual_disks", "size", json!(big + bit)),
        ));
        keys.push((
            format!("mtu ^{bit}"),
            set("interfaces", "mtu", json!(u64::MAX ^ bit)),
        ));
    }
    keys.push(("size".into(), set("virtual_disks", "size", json!(big))));
    keys.push((
        "disk id".into(),
        set("virtual_disks", "id", json!(1u64 << 40)),
    ));
    let text = "a description long enough to span more than one word of key bytes";
    for at in [0, 7, 8, 31, text.len() - 1] {
        let mut changed = text.as_bytes().to_vec();
        changed[at] ^= 1;
        let changed = String::from_utf8(changed).expect("ASCII");
        keys.push((
            format!("description byte {at}"),
            set("virtual_disks", "description", json!(changed)),
        ));
    }
    keys.push((
        "description".into(),
        set("virtual_disks", "description", json!(text)),
    ));
    for (i, (a, a_bytes)) in keys.iter().enumerate() {
        for (b, b_bytes) in &keys[i + 1..] {
            assert_ne!(a_bytes, b_bytes, "{a} and {b}: the same key bytes");
        }
    }
}
