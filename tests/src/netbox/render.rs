//! Rendering stored rows as NetBox API JSON: nested brief references, `{value,label}`
//! choices, float decimals, every custom field of the type (null when unset), tags, computed
//! counts; and the `fields=` / `omit=` / `brief` selections.

use super::schema::{self, Kind, TYPES, Ty};
use super::store::{CfDef, Row, Store, Val, cluster_site, iso};
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Which keys of an object to render.
pub(crate) enum Sel {
    Full,
    Brief,
    Fields(HashSet<String>),
    Omit(HashSet<String>),
}

impl Sel {
    fn wants(&self, name: &str) -> bool {
        match self {
            Sel::Full | Sel::Brief => true,
            Sel::Fields(f) => f.contains(name),
            Sel::Omit(o) => !o.contains(name),
        }
    }
}

/// Reverse reference counts per `(type, field)`, computed at most once per request.
type CountCache = RefCell<HashMap<(Ty, &'static str), Rc<HashMap<u32, u64>>>>;

/// Per-request rendering context (caches custom field lists and reverse counts).
pub(crate) struct Render<'a> {
    pub(crate) st: &'a Store,
    /// `http://host:port`, as NetBox builds absolute URLs from the request's Host.
    pub(crate) base: String,
    cfs: RefCell<HashMap<Ty, Rc<Vec<CfDef>>>>,
    counts: CountCache,
}

impl<'a> Render<'a> {
    pub(crate) fn new(st: &'a Store, base: String) -> Self {
        Render {
            st,
            base,
            cfs: RefCell::default(),
            counts: RefCell::default(),
        }
    }

    pub(crate) fn cf_defs(&self, ty: Ty) -> Rc<Vec<CfDef>> {
        self.cfs
            .borrow_mut()
            .entry(ty)
            .or_insert_with(|| Rc::new(self.st.cf_defs(ty)))
            .clone()
    }

    /// How many `from` rows reference each id through `field` (computed once per request).
    fn count(&self, from: Ty, field: &'static str, id: u32) -> u64 {
        let map = self
            .counts
            .borrow_mut()
            .entry((from, field))
            .or_insert_with(|| {
                let mut m = HashMap::new();
                for r in self.st.tables[from].rows.values() {
                    if let Some(t) = r.get(from, field).as_ref_id() {
                        *m.entry(t).or_insert(0) += 1;
                    }
                }
                Rc::new(m)
            })
            .clone();
        map.get(&id).copied().unwrap_or(0)
    }

    fn tagged_items(&self, tag: u32) -> u64 {
        let map = self
            .counts
            .borrow_mut()
            .entry((schema::TAG, "tags"))
            .or_insert_with(|| {
                let mut m = HashMap::new();
                for t in &self.st.tables {
                    for r in t.rows.values() {
                        for id in &r.tags {
                            *m.entry(*id).or_insert(0) += 1;
                        }
                    }
                }
                Rc::new(m)
            })
            .clone();
        map.get(&tag).copied().unwrap_or(0)
    }

    pub(crate) fn url(&self, ty: Ty, id: u32) -> String {
        format!(
            "{}/api/{}/{}/{id}/",
            self.base, TYPES[ty].app, TYPES[ty].key
        )
    }

    /// Brief form of a referenced object, or null.
    pub(crate) fn nested(&self, ty: Ty, id: u32) -> Value {
        match self.st.row(ty, id) {
            Some(r) => self.render(ty, id, r, &Sel::Brief),
            None => Value::Null,
        }
    }

    /// Renders one object.
    pub(crate) fn render(&self, ty: Ty, id: u32, row: &Row, sel: &Sel) -> Value {
        let t = &TYPES[ty];
        let mut m = Map::new();
        if matches!(sel, Sel::Brief) {
            for name in t.brief {
                if let Some(v) = self.value(ty, id, row, name) {
                    m.insert((*name).to_string(), v);
                }
            }
            return Value::Object(m);
        }
        for name in self.full_keys(ty) {
            if sel.wants(name)
                && let Some(v) = self.value(ty, id, row, name)
            {
                m.insert(name.to_string(), v);
            }
        }
        Value::Object(m)
    }

    /// Every key of the full representation, in NetBox's order.
    pub(crate) fn full_keys(&self, ty: Ty) -> Vec<&'static str> {
        let t = &TYPES[ty];
        let v = self.st.version;
        let mut keys: Vec<&'static str> = vec!["id", "url", "display_url", "display"];
        keys.extend(t.fields.iter().filter(|f| f.in_version(v)).map(|f| f.name));
        keys.extend(extra_keys(ty, v));
        if t.tags {
            keys.push("tags");
        }
        if t.custom_fields {
            keys.push("custom_fields");
        }
        if ty == schema::OBJECT_CHANGE {
            keys.push("time");
        } else {
            keys.extend(["created", "last_updated"]);
        }
        keys
    }

    fn value(&self, ty: Ty, id: u32, row: &Row, name: &str) -> Option<Value> {
        let t = &TYPES[ty];
        Some(match name {
            "id" => json!(id),
            "url" => json!(self.url(ty, id)),
            "display_url" => json!(format!("{}/{}/{}/{id}/", self.base, t.app, t.key)),
            "display" => json!(self.st.display_of(ty, row)),
            "created" => json!(iso(row.created)),
            "last_updated" => json!(iso(row.updated)),
            "time" => json!(iso(row.created)),
            "tags" => Value::Array(
                row.tags
                    .iter()
                    .map(|tid| self.nested(schema::TAG, *tid))
                    .collect(),
            ),
            "custom_fields" => {
                let defs = self.cf_defs(ty);
                let mut m = Map::new();
                for d in defs.iter() {
                    m.insert(
                        d.name.to_string(),
                        row.cf_value(&d.name).cloned().unwrap_or(Value::Null),
                    );
                }
                Value::Object(m)
            }
            "prechange_data" | "postchange_data" if ty == schema::OBJECT_CHANGE => {
                self.change_data(row, name)
            }
            _ => match t.field(name) {
                // A field of other versions (4.0-4.1's interface `mac_address`) may be computed
                // under the same name in this one.
                Some((i, f)) if f.in_version(self.st.version) => {
                    self.field_value(&f.kind, &row.vals[i])
                }
                _ => return self.extra(ty, id, row, name),
            },
        })
    }

    /// An object change's `prechange_data`/`postchange_data` as the API shows them: the
    /// object serialized like Django's serializer (model fields with raw values, foreign keys
    /// as ids, decimals as strings, `custom_fields`, tag names sorted), less `created`,
    /// `last_updated` and private fields; `{}` where there is no state (before a create,
    /// after a delete), since NetBox serves the "clean" data (4.7.3 `ObjectChangeSerializer`).
    fn change_data(&self, change: &Row, name: &str) -> Value {
        let oc = schema::OBJECT_CHANGE;
        let Val::Snap(row) = change.get(oc, name) else {
            return json!({});
        };
        let model = change
            .get(oc, "changed_object_type")
            .as_str()
            .unwrap_or_default();
        let id = change.get(oc, "changed_object_id").as_int().unwrap_or(0) as u32;
        let Some(ty) = schema::type_by_model(model) else {
            return json!({});
        };
        let t = &TYPES[ty];
        let mut m = Map::new();
        for (i, f) in t.fields.iter().enumerate() {
            if !self.st.field_available(f) {
                continue;
            }
            let v = match (&f.kind, &row.vals[i]) {
                (_, Val::Null) => Value::Null,
                (Kind::Decimal, Val::Float(x)) => {
                    // DecimalField: vcpus has 2 places, u_height 1.
                    let places = if f.name == "u_height" { 1 } else { 2 };
                    json!(format!("{x:.places$}"))
                }
                (Kind::Decimal, Val::Int(x)) => json!(format!("{x}.00")),
                (_, Val::Ref(r)) => json!(r),
                (kind, v) => self.field_value(kind, v),
            };
            let v = match (&f.kind, v) {
                // Choices are stored as their value.
                (Kind::Choice(_), Value::Object(mut o)) => o.remove("value").unwrap_or(Value::Null),
                (_, v) => v,
            };
            m.insert(f.name.to_string(), v);
        }
        if ty == schema::VM {
            m.insert("config_template".to_string(), Value::Null);
            if self.st.version >= (4, 5) {
                m.insert("owner".to_string(), Value::Null);
            }
            m.insert(
                "interface_count".to_string(),
                json!(self.count(schema::VMINTERFACE, "virtual_machine", id)),
            );
            m.insert(
                "virtual_disk_count".to_string(),
                json!(self.count(schema::VDISK, "virtual_machine", id)),
            );
        }
        if t.custom_fields {
            let mut cf = Map::new();
            for d in self.cf_defs(ty).iter() {
                cf.insert(
                    d.name.to_string(),
                    row.cf_value(&d.name).cloned().unwrap_or(Value::Null),
                );
            }
            m.insert("custom_fields".to_string(), Value::Object(cf));
        }
        if t.tags {
            let mut names: Vec<String> = row
                .tags
                .iter()
                .filter_map(|tid| self.st.row(schema::TAG, *tid))
                .map(|r| {
                    r.get(schema::TAG, "name")
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            names.sort();
            m.insert("tags".to_string(), json!(names));
        }
        Value::Object(m)
    }

    fn field_value(&self, kind: &Kind, v: &Val) -> Value {
        match (kind, v) {
            (_, Val::Null) => Value::Null,
            (Kind::Choice(choices), Val::Str(s)) => {
                let label = choices
                    .iter()
                    .find(|(c, _)| *c == &**s)
                    .map_or(&**s, |(_, l)| l);
                json!({"value": &**s, "label": label})
            }
            (Kind::Fk(target, _), Val::Ref(id)) => self.nested(*target, *id),
            (_, Val::Str(s)) => json!(&**s),
            (_, Val::Int(i)) => json!(i),
            (_, Val::Float(x)) => json!(x),
            (_, Val::Bool(b)) => json!(b),
            (_, Val::Ref(id)) => json!(id),
            (_, Val::Json(j)) => (**j).clone(),
            (_, Val::List(l)) => json!(l),
            (_, Val::Snap(_)) => Value::Null,
        }
    }

    fn extra(&self, ty: Ty, id: u32, row: &Row, name: &str) -> Option<Value> {
        let user = || json!({"id": 1, "url": format!("{}/api/users/users/1/", self.base), "display": "admin", "username": "admin"});
        Some(match (ty, name) {
            (schema::DEVICE, "primary_ip" | "primary_ip4" | "primary_ip6")
            | (_, "owner" | "config_template" | "group" | "virtual_chassis") => Value::Null,
            (_, "config_context") => json!({}),
            (_, "_depth") => json!(0),
            // `PREFER_IPV4` is false by default: IPv6 first.
            (schema::VM, "primary_ip") => {
                match row
                    .get(ty, "primary_ip6")
                    .as_ref_id()
                    .or_else(|| row.get(ty, "primary_ip4").as_ref_id())
                {
                    Some(ip) => self.nested(schema::IPADDR, ip),
                    None => Value::Null,
                }
            }
            (schema::VM, "interface_count") => {
                json!(self.count(schema::VMINTERFACE, "virtual_machine", id))
            }
            (schema::VMINTERFACE, "mac_address") => match row
                .get(ty, "primary_mac_address")
                .as_ref_id()
                .and_then(|m| self.st.row(schema::MACADDR, m))
            {
                Some(m) => self.field_value(&Kind::Text, m.get(schema::MACADDR, "mac_address")),
                None => Value::Null,
            },
            (schema::VMINTERFACE, "mac_addresses") => Value::Array(
                self.st
                    .assigned_to(schema::MACADDR, TYPES[ty].model, id)
                    .into_iter()
                    .map(|m| self.nested(schema::MACADDR, m))
                    .collect(),
            ),
            (schema::VMINTERFACE, "tagged_vlans") | (schema::IPADDR, "nat_outside") => json!([]),
            (schema::VMINTERFACE, "count_ipaddresses") => json!(
                self.st
                    .assigned_to(schema::IPADDR, TYPES[ty].model, id)
                    .len()
            ),
            (schema::VMINTERFACE, "count_fhrp_groups") => json!(0),
            (schema::IPADDR, "family") => {
                let fam = crate::netbox::store::ip_family(
                    row.get(ty, "address").as_str().unwrap_or_default(),
                );
                json!({"value": fam, "label": format!("IPv{fam}")})
            }
            (schema::IPADDR, "nat_inside") => Value::Null,
            (schema::VM, "virtual_disk_count") => {
                json!(self.count(schema::VDISK, "virtual_machine", id))
            }
            (schema::CLUSTER, "scope") => match cluster_site(row) {
                Some(s) => self.nested(schema::SITE, s),
                None => Value::Null,
            },
            (schema::CLUSTER, "device_count") => json!(self.count(schema::DEVICE, "cluster", id)),
            (schema::CLUSTER, "virtualmachine_count") => {
                json!(self.count(schema::VM, "cluster", id))
            }
            (schema::DEVICE_ROLE, "device_count") => json!(self.count(schema::DEVICE, "role", id)),
            (schema::DEVICE_ROLE, "virtualmachine_count") => {
                json!(self.count(schema::VM, "role", id))
            }
            (schema::MANUFACTURER, "devicetype_count") => {
                json!(self.count(schema::DEVICE_TYPE, "manufacturer", id))
            }
            (schema::DEVICE_TYPE, "device_count") => {
                json!(self.count(schema::DEVICE, "device_type", id))
            }
            (schema::VM_TYPE, "virtual_machine_count") => {
                json!(self.count(schema::VM, "virtual_machine_type", id))
            }
            (schema::TAG, "tagged_items") => json!(self.tagged_items(id)),
            (schema::JOURNAL | schema::IPADDR | schema::MACADDR, "assigned_object") => {
                let model = row
                    .get(ty, "assigned_object_type")
                    .as_str()
                    .unwrap_or_default();
                let oid = row.get(ty, "assigned_object_id").as_int().unwrap_or(0);
                match schema::type_by_model(model) {
                    Some(t) => self.nested(t, oid as u32),
                    None => Value::Null,
                }
            }
            (schema::JOURNAL, "created_by") | (schema::OBJECT_CHANGE, "user") => user(),
            (schema::OBJECT_CHANGE, "changed_object") => {
                let model = row
                    .get(ty, "changed_object_type")
                    .as_str()
                    .unwrap_or_default();
                let oid = row.get(ty, "changed_object_id").as_int().unwrap_or(0);
                match schema::type_by_model(model) {
                    Some(t) => self.nested(t, oid as u32),
                    None => Value::Null,
                }
            }
            (schema::CUSTOM_FIELD, "related_object_type" | "choice_set") => Value::Null,
            _ => return None,
        })
    }
}

/// Computed read-only keys per type and version.
fn extra_keys(ty: Ty, v: (u8, u8)) -> Vec<&'static str> {
    match ty {
        schema::VM => {
            let mut k = vec!["primary_ip"];
            if v >= (4, 5) {
                k.push("owner");
            }
            k.extend([
                "config_template",
                "interface_count",
                "virtual_disk_count",
                "config_context",
            ]);
            k
        }
        schema::CLUSTER => {
            let mut k = vec!["group"];
            if v >= (4, 2) {
                k.push("scope");
            }
            k.extend(["device_count", "virtualmachine_count"]);
            k
        }
        schema::DEVICE => vec!["primary_ip", "primary_ip4", "primary_ip6", "config_context"],
        schema::DEVICE_ROLE => {
            let mut k = vec!["device_count", "virtualmachine_count"];
            if v >= (4, 3) {
                k.push("_depth");
            }
            k
        }
        schema::PLATFORM if v >= (4, 4) => vec!["_depth"],
        schema::MANUFACTURER => vec!["devicetype_count"],
        schema::DEVICE_TYPE => vec!["device_count"],
        schema::VM_TYPE => vec!["virtual_machine_count"],
        schema::TAG => vec!["tagged_items"],
        schema::JOURNAL => vec!["assigned_object", "created_by"],
        schema::VMINTERFACE if v >= (4, 2) => vec![
            "mac_address",
            "mac_addresses",
            "tagged_vlans",
            "count_ipaddresses",
            "count_fhrp_groups",
        ],
        schema::VMINTERFACE => vec!["tagged_vlans", "count_ipaddresses", "count_fhrp_groups"],
        schema::IPADDR => vec!["family", "assigned_object", "nat_inside", "nat_outside"],
        schema::MACADDR => vec!["assigned_object"],
        schema::OBJECT_CHANGE => vec!["user", "changed_object"],
        schema::CUSTOM_FIELD => vec!["related_object_type", "choice_set"],
        _ => vec![],
    }
}
