//! NetBox state: compact rows per type, unique indexes, write validation with NetBox's literal
//! error bodies, and transactions with an undo log (bulk writes are all-or-nothing).
//!
//! Rows keep references as ids and values in a small enum; the API layer renders nested JSON
//! on read. Uniqueness uses hash indexes so 100k VMs validate in O(1) per write.

use super::schema::{self, Def, Field, Kind, OnDelete, Order, TYPES, Ty, UniqueErr, Ver};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A stored field value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Str(Box<str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Ref(u32),
    Json(Box<Value>),
    List(Box<[String]>),
    /// An object's state before or after a change (object changes' `prechange_data` and
    /// `postchange_data`), serialized on read.
    Snap(Box<Row>),
}

impl Val {
    pub(crate) fn as_ref_id(&self) -> Option<u32> {
        match self {
            Val::Ref(id) => Some(*id),
            _ => None,
        }
    }
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) vals: Box<[Val]>,
    pub(crate) tags: Vec<u32>,
    /// Set custom field values (unset ones render as null).
    pub(crate) cf: Vec<(Arc<str>, Value)>,
    pub(crate) created: i64,
    pub(crate) updated: i64,
    /// Natural-sort key of the ordering field.
    pub(crate) nat: Box<str>,
}

impl Row {
    pub(crate) fn get(&self, ty: Ty, field: &str) -> &Val {
        match TYPES[ty].field(field) {
            Some((i, _)) => &self.vals[i],
            None => &Val::Null,
        }
    }
    pub(crate) fn cf_value(&self, name: &str) -> Option<&Value> {
        self.cf.iter().find(|(k, _)| &**k == name).map(|(_, v)| v)
    }

    /// Whether two states of an object serialize alike in the change log, which leaves out
    /// `last_updated` (`CHANGELOG_SKIP_EMPTY_CHANGES`): a save that changes nothing else
    /// writes no change record.
    pub(crate) fn same_data(&self, other: &Row) -> bool {
        fn sorted(r: &Row) -> (Vec<u32>, Vec<(&str, &Value)>) {
            let mut t = r.tags.clone();
            t.sort_unstable();
            let mut c: Vec<(&str, &Value)> = r.cf.iter().map(|(k, v)| (&**k, v)).collect();
            c.sort_by(|a, b| a.0.cmp(b.0));
            (t, c)
        }
        self.vals == other.vals && sorted(self) == sorted(other)
    }
}

#[derive(Default)]
pub(crate) struct Table {
    pub(crate) rows: BTreeMap<u32, Row>,
    next_id: u32,
    uniq: Vec<HashMap<Box<str>, u32>>,
}

/// A custom field definition, as needed by validation, rendering and filters.
#[derive(Debug, Clone)]
pub(crate) struct CfDef {
    pub(crate) name: Arc<str>,
    pub(crate) kind: String,
    pub(crate) filter_logic: String,
    pub(crate) required: bool,
    pub(crate) default: Value,
    pub(crate) min: Option<i64>,
    pub(crate) max: Option<i64>,
}

/// Field and object errors of one object, rendered as NetBox's 400 body.
#[derive(Debug, Default, Clone)]
pub(crate) struct Errors(pub(crate) Map<String, Value>);

impl Errors {
    pub(crate) fn field(&mut self, name: &str, msg: impl Into<String>) {
        let e = self.0.entry(name.to_string()).or_insert_with(|| json!([]));
        if let Some(a) = e.as_array_mut() {
            a.push(Value::String(msg.into()));
        }
    }
    pub(crate) fn all(&mut self, msg: impl Into<String>) {
        self.field("__all__", msg)
    }
    pub(crate) fn cf(&mut self, name: &str, msg: String) {
        let e = self
            .0
            .entry("custom_fields".to_string())
            .or_insert_with(|| json!({}));
        if let Some(m) = e.as_object_mut() {
            m.insert(name.to_string(), Value::String(msg));
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// A write that failed.
#[derive(Debug)]
pub(crate) enum WriteError {
    Invalid(Errors),
    NotFound,
    /// 409 protected delete.
    Protected(String),
}

enum Undo {
    Inserted(Ty, u32),
    Replaced(Ty, u32, Row),
    Removed(Ty, u32, Row),
}

/// Ids selected by a filter through a relation, by (type, related type, wanted ids).
pub(crate) type DerivedIds = HashMap<(Ty, Ty, Vec<u32>), Arc<HashSet<u32>>>;

/// The whole NetBox state.
pub(crate) struct Store {
    pub(crate) version: Ver,
    pub(crate) tables: Vec<Table>,
    last_micros: i64,
    undo: Vec<Undo>,
    /// `X-Request-ID` of the request being served (recorded in object changes).
    pub(crate) request_id: String,
    /// Whether object changes are recorded (off for bulk loads through the Rust API).
    pub(crate) record_changes: bool,
    /// `changelog_message` of the delete being served (writes take it from their body).
    pub(crate) changelog_message: String,
    /// NetBox's `ENFORCE_GLOBAL_UNIQUE` (default true): IPs outside a VRF must be unique.
    pub(crate) enforce_global_unique: bool,
    /// The ids a filter through a relation selects (`query::derived_ids`), by (type, related
    /// type, wanted ids); emptied by every write lock (`NetboxSim::write`). Each page request
    /// compiles its filter again, and without this every page of an interface or IP listing
    /// filtered by cluster or VM scanned every row of the kind: ~76% of the simulator's time in
    /// a 100k-VM snapshot with children, which made the simulator the bound of the phase.
    pub(crate) derived: Mutex<DerivedIds>,
    /// IP addresses by (VRF, host), for `get_duplicates` in O(1) (a scan per write made a
    /// 10k-VM sync with four IPs each quadratic).
    ip_hosts: HashMap<(Option<u32>, IpAddr), BTreeSet<u32>>,
    /// Virtual disks by VM, for the disk sum checked and set on every VM and disk write.
    disks_by_vm: HashMap<u32, BTreeSet<u32>>,
    /// Rows with a generic `assigned_object` (IPs, MACs, ...) by (type, model, object id),
    /// for [`Store::assigned_to`]: an interface's rendering lists its MACs and counts its IPs,
    /// and a scan of every row per write made a 100k-VM sync with children quadratic.
    assigned: HashMap<(Ty, Box<str>, i64), BTreeSet<u32>>,
}

/// Current time in microseconds since the epoch.
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// `2026-05-01T12:34:56.789012Z` (NetBox's datetime format).
pub(crate) fn iso(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses `YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|+HH:MM]` to microseconds (filters).
pub(crate) fn parse_iso(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    let (time, offset) = match rest.find(['Z', '+']).or_else(|| rest.rfind('-')) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut tp = time.split(':');
    let hh: i64 = tp
        .next()
        .filter(|x| !x.is_empty())
        .map_or(Some(0), |x| x.parse().ok())?;
    let mm: i64 = tp.next().map_or(Some(0), |x| x.parse().ok())?;
    let sec: f64 = tp.next().map_or(Some(0.0), |x| x.parse().ok())?;
    let off_min = match offset {
        "" | "Z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (h, mi) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
            sign * (h.parse::<i64>().ok()? * 60 + mi.parse::<i64>().ok()?)
        }
    };
    // days_from_civil
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 - off_min * 60;
    Some(secs * 1_000_000 + (sec * 1_000_000.0) as i64)
}

/// NetBox's natural ordering key: digit runs zero-padded to 8 places.
pub(crate) fn naturalize(s: &str) -> Box<str> {
    let mut out = String::with_capacity(s.len() + 8);
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push_str(&format!("{digits:0>8}"));
                digits.clear();
            }
            out.push(c);
        }
    }
    if !digits.is_empty() {
        out.push_str(&format!("{digits:0>8}"));
    }
    out.truncate(100);
    out.into_boxed_str()
}

/// Python-style repr of a JSON value (DRF's error messages print Python dicts).
pub(crate) fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Store {
    pub(crate) fn new(version: Ver) -> Self {
        let tables = TYPES
            .iter()
            .map(|t| Table {
                rows: BTreeMap::new(),
                next_id: 1,
                uniq: vec![HashMap::new(); t.uniques.len()],
            })
            .collect();
        Store {
            version,
            tables,
            last_micros: 0,
            undo: Vec::new(),
            request_id: String::new(),
            record_changes: true,
            changelog_message: String::new(),
            enforce_global_unique: true,
            derived: Mutex::new(HashMap::new()),
            ip_hosts: HashMap::new(),
            disks_by_vm: HashMap::new(),
            assigned: HashMap::new(),
        }
    }

    /// Strictly increasing timestamps: every write gets a new `last_updated`.
    pub(crate) fn tick(&mut self) -> i64 {
        self.last_micros = now_micros().max(self.last_micros + 1);
        self.last_micros
    }

    pub(crate) fn row(&self, ty: Ty, id: u32) -> Option<&Row> {
        self.tables[ty].rows.get(&id)
    }

    pub(crate) fn field_available(&self, f: &Field) -> bool {
        f.in_version(self.version)
    }

    /// Custom fields defined for a type (by its `app.model` label), ordered by weight then name.
    pub(crate) fn cf_defs(&self, ty: Ty) -> Vec<CfDef> {
        let model = TYPES[ty].model;
        let mut out: Vec<(i64, CfDef)> = self.tables[schema::CUSTOM_FIELD]
            .rows
            .values()
            .filter(|r| matches!(r.get(schema::CUSTOM_FIELD, "object_types"), Val::List(l) if l.iter().any(|m| m == model)))
            .map(|r| {
                let s = |f: &str| r.get(schema::CUSTOM_FIELD, f).as_str().unwrap_or_default().to_string();
                let weight = r.get(schema::CUSTOM_FIELD, "weight").as_int().unwrap_or(100);
                let default = match r.get(schema::CUSTOM_FIELD, "default") {
                    Val::Json(v) => (**v).clone(),
                    _ => Value::Null,
                };
                (
                    weight,
                    CfDef {
                        name: Arc::from(s("name")),
                        kind: s("type"),
                        filter_logic: s("filter_logic"),
                        required: matches!(r.get(schema::CUSTOM_FIELD, "required"), Val::Bool(true)),
                        default,
                        min: r.get(schema::CUSTOM_FIELD, "validation_minimum").as_int(),
                        max: r.get(schema::CUSTOM_FIELD, "validation_maximum").as_int(),
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        out.into_iter().map(|(_, d)| d).collect()
    }

    // -- raw row maintenance (indexes kept in step) --------------------------------------------

    fn uniq_key(&self, ty: Ty, ui: usize, row: &Row) -> Option<Box<str>> {
        let u = &TYPES[ty].uniques[ui];
        if let Some(f) = u.when_set
            && row.get(ty, f).is_null()
        {
            return None;
        }
        if let Some(f) = u.when_null
            && !row.get(ty, f).is_null()
        {
            return None;
        }
        let mut key = String::new();
        for (i, f) in u.fields.iter().enumerate() {
            let part = match row.get(ty, f) {
                Val::Null => "\u{2205}".to_string(),
                Val::Str(s) if i == 0 && u.ci => s.to_lowercase(),
                Val::Str(s) => s.to_string(),
                Val::Ref(id) => id.to_string(),
                Val::Int(i) => i.to_string(),
                other => format!("{other:?}"),
            };
            key.push_str(&part);
            key.push('\u{1f}');
        }
        Some(key.into_boxed_str())
    }

    fn ip_host_key(ty: Ty, row: &Row) -> Option<(Option<u32>, IpAddr)> {
        let (_, host) = normalize_cidr(row.get(ty, "address").as_str()?)?;
        Some((row.get(ty, "vrf").as_ref_id(), host))
    }

    /// The VM of a virtual disk row.
    fn disk_vm(ty: Ty, row: &Row) -> Option<u32> {
        (ty == schema::VDISK)
            .then(|| row.get(ty, "virtual_machine").as_ref_id())
            .flatten()
    }

    /// The (type, model, id) a row with a generic `assigned_object` is assigned to.
    fn assigned_key(ty: Ty, row: &Row) -> Option<(Ty, Box<str>, i64)> {
        TYPES[ty].field("assigned_object_type")?;
        let model = row.get(ty, "assigned_object_type").as_str()?.into();
        Some((ty, model, row.get(ty, "assigned_object_id").as_int()?))
    }

    fn raw_insert(&mut self, ty: Ty, id: u32, row: Row) {
        if ty == schema::IPADDR
            && let Some(k) = Self::ip_host_key(ty, &row)
        {
            self.ip_hosts.entry(k).or_default().insert(id);
        }
        if let Some(vm) = Self::disk_vm(ty, &row) {
            self.disks_by_vm.entry(vm).or_default().insert(id);
        }
        if let Some(k) = Self::assigned_key(ty, &row) {
            self.assigned.entry(k).or_default().insert(id);
        }
        for ui in 0..TYPES[ty].uniques.len() {
            if let Some(k) = self.uniq_key(ty, ui, &row) {
                self.tables[ty].uniq[ui].insert(k, id);
            }
        }
        self.tables[ty].rows.insert(id, row);
    }

    fn raw_remove(&mut self, ty: Ty, id: u32) -> Option<Row> {
        let row = self.tables[ty].rows.remove(&id)?;
        if ty == schema::IPADDR
            && let Some(k) = Self::ip_host_key(ty, &row)
            && let Some(ids) = self.ip_hosts.get_mut(&k)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.ip_hosts.remove(&k);
            }
        }
        if let Some(vm) = Self::disk_vm(ty, &row)
            && let Some(ids) = self.disks_by_vm.get_mut(&vm)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.disks_by_vm.remove(&vm);
            }
        }
        if let Some(k) = Self::assigned_key(ty, &row)
            && let Some(ids) = self.assigned.get_mut(&k)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.assigned.remove(&k);
            }
        }
        for ui in 0..TYPES[ty].uniques.len() {
            if let Some(k) = self.uniq_key(ty, ui, &row)
                && self.tables[ty].uniq[ui].get(&k) == Some(&id)
            {
                self.tables[ty].uniq[ui].remove(&k);
            }
        }
        Some(row)
    }

    // -- transactions ---------------------------------------------------------------------------

    pub(crate) fn begin(&mut self) {
        self.undo.clear();
    }

    pub(crate) fn rollback(&mut self) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Inserted(ty, id) => {
                    self.raw_remove(ty, id);
                }
                Undo::Replaced(ty, id, old) => {
                    self.raw_remove(ty, id);
                    self.raw_insert(ty, id, old);
                }
                Undo::Removed(ty, id, old) => self.raw_insert(ty, id, old),
            }
        }
    }

    pub(crate) fn commit(&mut self) {
        self.undo.clear();
    }

    fn put(&mut self, ty: Ty, id: u32, row: Row) {
        match self.raw_remove(ty, id) {
            Some(old) => self.undo.push(Undo::Replaced(ty, id, old)),
            None => self.undo.push(Undo::Inserted(ty, id)),
        }
        self.raw_insert(ty, id, row);
    }

    fn del(&mut self, ty: Ty, id: u32) {
        if let Some(old) = self.raw_remove(ty, id) {
            self.undo.push(Undo::Removed(ty, id, old));
        }
    }

    /// Records a change with the object's state before (`pre`, update and delete) and after
    /// (`post`, create and update), as NetBox's change logging does.
    fn record_change(
        &mut self,
        action: &str,
        ty: Ty,
        id: u32,
        repr: String,
        pre: Option<Row>,
        post: Option<Row>,
    ) {
        if !self.record_changes || ty == schema::OBJECT_CHANGE {
            return;
        }
        let message = std::mem::take(&mut self.changelog_message);
        let now = self.tick();
        let oc = schema::OBJECT_CHANGE;
        let mut vals = default_vals(oc, self.version);
        let set = |vals: &mut [Val], f: &str, v: Val| {
            if let Some((i, _)) = TYPES[oc].field(f) {
                vals[i] = v;
            }
        };
        set(&mut vals, "user_name", Val::Str("admin".into()));
        set(
            &mut vals,
            "request_id",
            Val::Str(self.request_id.clone().into()),
        );
        set(&mut vals, "action", Val::Str(action.into()));
        set(
            &mut vals,
            "changed_object_type",
            Val::Str(TYPES[ty].model.into()),
        );
        set(&mut vals, "changed_object_id", Val::Int(i64::from(id)));
        set(&mut vals, "object_repr", Val::Str(repr.into()));
        set(&mut vals, "message", Val::Str(message.into()));
        let snap = |r: Option<Row>| r.map_or(Val::Null, |r| Val::Snap(Box::new(r)));
        set(&mut vals, "prechange_data", snap(pre));
        set(&mut vals, "postchange_data", snap(post));
        let row = Row {
            vals: vals.into(),
            tags: vec![],
            cf: vec![],
            created: now,
            updated: now,
            nat: "".into(),
        };
        let cid = self.tables[oc].next_id;
        self.tables[oc].next_id += 1;
        self.put(oc, cid, row);
    }

    // -- writes ---------------------------------------------------------------------------------

    /// Creates an object from a write body (validated like NetBox does).
    pub(crate) fn create(&mut self, ty: Ty, body: &Value) -> Result<u32, WriteError> {
        self.take_message(body);
        let mac = self.interface_mac(ty, body)?;
        let mut row = self.parse(ty, body, None, false)?;
        let now = self.tick();
        row.created = now;
        row.updated = now;
        let id = self.tables[ty].next_id;
        self.tables[ty].next_id += 1;
        self.finish_write(ty, id, row, None)?;
        if let Some(mac) = mac {
            self.set_interface_mac(id, mac)?;
        }
        Ok(id)
    }

    /// 4.7's writable interface `mac_address` (netbox-live.md 2.1: a POST with it creates a
    /// MAC object that becomes the primary MAC). Ignored before 4.7 (read-only in 4.2-4.6).
    /// `Some(None)` clears the primary MAC.
    fn interface_mac(&self, ty: Ty, body: &Value) -> Result<Option<Option<String>>, WriteError> {
        if ty != schema::VMINTERFACE || self.version < (4, 7) {
            return Ok(None);
        }
        match body.get("mac_address") {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(raw)) if raw.is_empty() => Ok(Some(None)),
            Some(Value::String(raw)) => match normalize_mac(raw) {
                Some(m) => Ok(Some(Some(m))),
                None => {
                    let mut errs = Errors::default();
                    errs.field("mac_address", format!("Invalid MAC address format: {raw}"));
                    Err(WriteError::Invalid(errs))
                }
            },
            Some(other) => {
                let mut errs = Errors::default();
                errs.field(
                    "mac_address",
                    format!("Invalid MAC address format: {other}"),
                );
                Err(WriteError::Invalid(errs))
            }
        }
    }

    /// Creates or updates an interface's primary MAC object to `mac` (or clears the primary).
    fn set_interface_mac(&mut self, iface: u32, mac: Option<String>) -> Result<(), WriteError> {
        let it = schema::VMINTERFACE;
        let Some(row) = self.row(it, iface).cloned() else {
            return Ok(());
        };
        let primary = row.get(it, "primary_mac_address").as_ref_id();
        match (mac, primary) {
            (None, None) => Ok(()),
            (None, Some(_)) => self.update(it, iface, &json!({"primary_mac_address": null}), true),
            (Some(m), Some(p)) => {
                if self
                    .row(schema::MACADDR, p)
                    .is_some_and(|r| r.get(schema::MACADDR, "mac_address").as_str() == Some(&m))
                {
                    return Ok(());
                }
                self.update(schema::MACADDR, p, &json!({"mac_address": m}), true)
            }
            (Some(m), None) => {
                let mid = self.create(
                    schema::MACADDR,
                    &json!({"mac_address": m, "assigned_object_type": TYPES[it].model, "assigned_object_id": iface}),
                )?;
                self.update(it, iface, &json!({"primary_mac_address": mid}), true)
            }
        }
    }

    /// Updates an object (`partial` = PATCH). Bumps `last_updated` even when nothing changes.
    pub(crate) fn update(
        &mut self,
        ty: Ty,
        id: u32,
        body: &Value,
        partial: bool,
    ) -> Result<(), WriteError> {
        let old = self.row(ty, id).cloned().ok_or(WriteError::NotFound)?;
        self.take_message(body);
        let mac = self.interface_mac(ty, body)?;
        let mut row = self.parse(ty, body, Some(&old), partial)?;
        row.created = old.created;
        row.updated = self.tick();
        self.finish_write(ty, id, row, Some(old))?;
        match mac {
            Some(mac) => self.set_interface_mac(id, mac),
            None => Ok(()),
        }
    }

    fn finish_write(
        &mut self,
        ty: Ty,
        id: u32,
        mut row: Row,
        old: Option<Row>,
    ) -> Result<(), WriteError> {
        self.clean(ty, id, &mut row)?;
        // Unique constraints.
        let mut errs = Errors::default();
        for (ui, u) in TYPES[ty].uniques.iter().enumerate() {
            if let Some(k) = self.uniq_key(ty, ui, &row)
                && let Some(other) = self.tables[ty].uniq[ui].get(&k)
                && *other != id
            {
                match u.err {
                    UniqueErr::Field(f, msg) => errs.field(f, msg),
                    UniqueErr::All(msg) => errs.all(msg),
                }
            }
        }
        if !errs.is_empty() {
            return Err(WriteError::Invalid(errs));
        }
        row.nat = match TYPES[ty].order {
            Order::Name => naturalize(row.get(ty, "name").as_str().unwrap_or_default()),
            Order::Field(f) => naturalize(row.get(ty, f).as_str().unwrap_or_default()),
            _ => "".into(),
        };
        let repr = self.display_of(ty, &row);
        // Only clusters have a site to compare (and `cluster_site` reads cluster fields).
        let old_site = old
            .as_ref()
            .filter(|_| ty == schema::CLUSTER)
            .map(cluster_site);
        let post = row.clone();
        self.put(ty, id, row);
        match old {
            Some(old) if old.same_data(&post) => self.changelog_message.clear(),
            Some(old) => self.record_change("update", ty, id, repr, Some(old), Some(post)),
            None => self.record_change("create", ty, id, repr, None, Some(post)),
        }
        self.after_write(ty, id, old_site);
        Ok(())
    }

    /// A write body's `changelog_message` (any object, any type) for its change record.
    fn take_message(&mut self, body: &Value) {
        self.changelog_message = body
            .get("changelog_message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }

    /// Side effects NetBox performs on save.
    fn after_write(&mut self, ty: Ty, id: u32, old_cluster_site: Option<Option<u32>>) {
        match ty {
            schema::VDISK => {
                if let Some(vm) = self
                    .row(ty, id)
                    .and_then(|r| r.get(ty, "virtual_machine").as_ref_id())
                {
                    self.recompute_vm_disk(vm);
                }
            }
            schema::CLUSTER => {
                // Saving a cluster re-sites its VMs when its site changed.
                let new_site = self.row(ty, id).map(cluster_site).unwrap_or(None);
                if old_cluster_site.is_some_and(|o| o != new_site)
                    && let Some(site) = new_site
                {
                    let (si, _) = TYPES[schema::VM].field("site").expect("vm.site");
                    let ids: Vec<u32> = self.tables[schema::VM]
                        .rows
                        .iter()
                        .filter(|(_, r)| r.get(schema::VM, "cluster").as_ref_id() == Some(id))
                        .map(|(i, _)| *i)
                        .collect();
                    for vid in ids {
                        if let Some(mut r) = self.row(schema::VM, vid).cloned() {
                            r.vals[si] = Val::Ref(site);
                            self.put(schema::VM, vid, r);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// `vm.disk` = sum of its virtual disks (null when none), via `.update()`: no `last_updated` bump.
    fn recompute_vm_disk(&mut self, vm: u32) {
        let sizes = self.disk_sizes(vm);
        let (di, _) = TYPES[schema::VM].field("disk").expect("vm.disk");
        if let Some(mut r) = self.row(schema::VM, vm).cloned() {
            r.vals[di] = if sizes.is_empty() {
                Val::Null
            } else {
                Val::Int(sizes.iter().sum())
            };
            self.put(schema::VM, vm, r);
        }
    }

    /// The sizes of the VM's virtual disks, in id order.
    fn disk_sizes(&self, vm: u32) -> Vec<i64> {
        self.disks_by_vm.get(&vm).map_or_else(Vec::new, |ids| {
            ids.iter()
                .filter_map(|d| self.row(schema::VDISK, *d))
                .map(|r| r.get(schema::VDISK, "size").as_int().unwrap_or(0))
                .collect()
        })
    }

    /// Ids of the `gty` rows (journal, IP, MAC) whose generic `assigned_object` is `model` `id`,
    /// in id order.
    pub(crate) fn assigned_to(&self, gty: Ty, model: &str, id: u32) -> Vec<u32> {
        self.assigned
            .get(&(gty, model.into(), i64::from(id)))
            .map_or_else(Vec::new, |ids| ids.iter().copied().collect())
    }

    /// The VM interface a row (IP, MAC) is assigned to, if it is assigned to one.
    pub(crate) fn assigned_vminterface(&self, gty: Ty, r: &Row) -> Option<u32> {
        (r.get(gty, "assigned_object_type").as_str() == Some("virtualization.vminterface"))
            .then(|| r.get(gty, "assigned_object_id").as_int())
            .flatten()
            .and_then(|i| u32::try_from(i).ok())
    }

    /// The VM owning an interface.
    pub(crate) fn vm_of_interface(&self, iface: u32) -> Option<u32> {
        self.row(schema::VMINTERFACE, iface)
            .and_then(|r| r.get(schema::VMINTERFACE, "virtual_machine").as_ref_id())
    }

    pub(crate) fn display_of(&self, ty: Ty, row: &Row) -> String {
        let t = &TYPES[ty];
        match ty {
            schema::JOURNAL => iso(row.created),
            // `VLAN.__str__`: "name (vid)".
            schema::VLAN => format!(
                "{} ({})",
                row.get(ty, "name").as_str().unwrap_or_default(),
                row.get(ty, "vid").as_int().unwrap_or(0)
            ),
            schema::DEVICE if row.get(ty, "name").is_null() => {
                let dt = row
                    .get(ty, "device_type")
                    .as_ref_id()
                    .and_then(|d| self.row(schema::DEVICE_TYPE, d));
                let model = dt.and_then(|d| {
                    d.get(schema::DEVICE_TYPE, "model")
                        .as_str()
                        .map(str::to_string)
                });
                format!("{} ({})", model.unwrap_or_default(), "unnamed")
            }
            _ => match row.get(ty, t.display) {
                Val::Str(s) => s.to_string(),
                Val::Null => String::new(),
                other => format!("{other:?}"),
            },
        }
    }

    /// Deletes an object, applying PROTECT / SET_NULL / CASCADE of everything pointing at it.
    pub(crate) fn delete(&mut self, ty: Ty, id: u32) -> Result<(), WriteError> {
        let row = self.row(ty, id).cloned().ok_or(WriteError::NotFound)?;
        let mut blockers = Vec::new();
        self.collect_protected(ty, id, &mut blockers);
        if !blockers.is_empty() {
            return Err(WriteError::Protected(format!(
                "Unable to delete object. {} dependent objects were found: {}",
                blockers.len(),
                blockers.join(", ")
            )));
        }
        self.delete_cascade(ty, id, &row);
        Ok(())
    }

    fn collect_protected(&self, ty: Ty, id: u32, out: &mut Vec<String>) {
        for (oty, t) in TYPES.iter().enumerate() {
            for (fi, f) in t.fields.iter().enumerate() {
                if let Kind::Fk(target, on_del) = f.kind
                    && target == ty
                {
                    for (oid, r) in &self.tables[oty].rows {
                        if r.vals[fi] == Val::Ref(id) {
                            match on_del {
                                OnDelete::Protect => out.push(self.display_of(oty, r)),
                                OnDelete::Cascade if !(oty == ty && *oid == id) => {
                                    self.collect_protected(oty, *oid, out)
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }

    fn delete_cascade(&mut self, ty: Ty, id: u32, row: &Row) {
        let repr = self.display_of(ty, row);
        self.del(ty, id);
        self.record_change("delete", ty, id, repr, Some(row.clone()), None);
        for (oty, t) in TYPES.iter().enumerate() {
            for (fi, f) in t.fields.iter().enumerate() {
                if let Kind::Fk(target, on_del) = f.kind
                    && target == ty
                {
                    let hits: Vec<u32> = self.tables[oty]
                        .rows
                        .iter()
                        .filter(|(_, r)| r.vals[fi] == Val::Ref(id))
                        .map(|(i, _)| *i)
                        .collect();
                    for oid in hits {
                        match on_del {
                            OnDelete::Cascade => {
                                if let Some(r) = self.row(oty, oid).cloned() {
                                    self.delete_cascade(oty, oid, &r);
                                }
                            }
                            // SET_NULL is an UPDATE without save(): no last_updated bump.
                            _ => {
                                if let Some(mut r) = self.row(oty, oid).cloned() {
                                    r.vals[fi] = Val::Null;
                                    self.put(oty, oid, r);
                                }
                            }
                        }
                    }
                }
            }
        }
        // Generic relations (Django `GenericRelation` deletes along): journal entries go with
        // their object, and an interface's IP and MAC addresses with the interface
        // (`VMInterface.ip_addresses` / `mac_addresses`). Deleted tags leave their objects.
        let model = TYPES[ty].model;
        for gty in [schema::JOURNAL, schema::IPADDR, schema::MACADDR] {
            for j in self.assigned_to(gty, model, id) {
                if let Some(r) = self.row(gty, j).cloned() {
                    self.delete_cascade(gty, j, &r);
                }
            }
        }
        if ty == schema::TAG {
            for oty in 0..TYPES.len() {
                let hits: Vec<u32> = self.tables[oty]
                    .rows
                    .iter()
                    .filter(|(_, r)| r.tags.contains(&id))
                    .map(|(i, _)| *i)
                    .collect();
                for oid in hits {
                    if let Some(mut r) = self.row(oty, oid).cloned() {
                        r.tags.retain(|t| *t != id);
                        self.put(oty, oid, r);
                    }
                }
            }
        }
        if ty == schema::VDISK
            && let Some(vm) = row.get(ty, "virtual_machine").as_ref_id()
            && self.row(schema::VM, vm).is_some()
        {
            self.recompute_vm_disk(vm);
        }
    }

    // -- parsing and validation -----------------------------------------------------------------

    /// Resolves a reference: id, numeric string, or attribute dict.
    pub(crate) fn resolve_ref(&self, target: Ty, v: &Value) -> Result<Option<u32>, String> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => {
                let id = n.as_u64().ok_or_else(|| unrecognized(v))?;
                let id = u32::try_from(id).map_err(|_| unrecognized(v))?;
                if self.row(target, id).is_some() {
                    Ok(Some(id))
                } else {
                    Err(format!(
                        "Related object not found using the provided numeric ID: {id}"
                    ))
                }
            }
            Value::String(s) if s.parse::<u32>().is_ok() => {
                self.resolve_ref(target, &json!(s.parse::<u32>().unwrap_or(0)))
            }
            Value::Object(attrs) => {
                let hits: Vec<u32> = self.tables[target]
                    .rows
                    .iter()
                    .filter(|(id, r)| {
                        attrs
                            .iter()
                            .all(|(k, want)| attr_matches(target, **id, r, k, want))
                    })
                    .map(|(id, _)| *id)
                    .take(2)
                    .collect();
                match hits.as_slice() {
                    [one] => Ok(Some(*one)),
                    [] => Err(format!(
                        "Related object not found using the provided attributes: {}",
                        py_repr(v)
                    )),
                    _ => Err(format!(
                        "Multiple objects match the provided attributes: {}",
                        py_repr(v)
                    )),
                }
            }
            _ => Err(unrecognized(v)),
        }
    }

    fn parse(
        &self,
        ty: Ty,
        body: &Value,
        base: Option<&Row>,
        partial: bool,
    ) -> Result<Row, WriteError> {
        let t = &TYPES[ty];
        let mut errs = Errors::default();
        let Some(obj) = body.as_object() else {
            let got = match body {
                Value::Array(_) => "list",
                Value::String(_) => "str",
                Value::Number(_) => "int",
                Value::Bool(_) => "bool",
                _ => "NoneType",
            };
            errs.field(
                "non_field_errors",
                format!("Invalid data. Expected a dictionary, but got {got}."),
            );
            return Err(WriteError::Invalid(errs));
        };
        let mut row = match (base, partial) {
            (Some(b), true) => b.clone(),
            (Some(b), false) => Row {
                vals: default_vals(ty, self.version).into(),
                tags: vec![],
                cf: b.cf.clone(),
                created: 0,
                updated: 0,
                nat: "".into(),
            },
            (None, _) => Row {
                vals: default_vals(ty, self.version).into(),
                tags: vec![],
                cf: vec![],
                created: 0,
                updated: 0,
                nat: "".into(),
            },
        };
        for (i, f) in t.fields.iter().enumerate() {
            if !self.field_available(f) {
                continue;
            }
            match obj.get(f.name) {
                Some(v) => match self.parse_value(f, v) {
                    Ok(val) => row.vals[i] = val,
                    Err(msg) => errs.field(f.name, msg),
                },
                None if f.required && !partial => errs.field(f.name, "This field is required."),
                None => {}
            }
        }
        if t.tags {
            self.parse_tags(ty, obj, &mut row, &mut errs);
        }
        if t.custom_fields {
            self.parse_cfs(ty, obj, &mut row, base.is_none(), &mut errs);
        }
        if errs.is_empty() {
            Ok(row)
        } else {
            Err(WriteError::Invalid(errs))
        }
    }

    fn parse_value(&self, f: &Field, v: &Value) -> Result<Val, String> {
        if v.is_null() {
            return if f.nullable {
                Ok(Val::Null)
            } else {
                Err("This field may not be null.".into())
            };
        }
        match f.kind {
            Kind::Str(_) | Kind::Slug => {
                let max = if let Kind::Str(m) = f.kind { m } else { 100 };
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
                    _ => return Err("Not a valid string.".into()),
                };
                if s.trim().is_empty() && f.required {
                    return Err("This field may not be blank.".into());
                }
                if matches!(f.kind, Kind::Slug) {
                    if !is_slug(&s) {
                        return Err("Enter a valid \u{201c}slug\u{201d} consisting of letters, numbers, underscores or hyphens.".into());
                    }
                    if s.chars().count() > 100 {
                        return Err("Ensure this field has no more than 100 characters.".into());
                    }
                } else if s.chars().count() > max {
                    return Err(format!("Ensure this field has no more than {max} characters."));
                }
                Ok(Val::Str(s.trim().into()))
            }
            Kind::Text => match v {
                Value::String(s) => Ok(Val::Str(s.as_str().into())),
                Value::Number(n) => Ok(Val::Str(n.to_string().into())),
                _ => Err("Not a valid string.".into()),
            },
            Kind::Color => match v.as_str() {
                Some(s) if s.len() == 6 && s.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Val::Str(s.to_ascii_lowercase().into())),
                _ => Err("Enter a valid hexadecimal RGB color code.".into()),
            },
            Kind::Int(min) => {
                let i = match v {
                    Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64)),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| "A valid integer is required.".to_string())?;
                if i < min {
                    return Err(format!("Ensure this value is greater than or equal to {min}."));
                }
                Ok(Val::Int(i))
            }
            Kind::Decimal => {
                let x = match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| "A valid number is required.".to_string())?;
                let scaled = x * 100.0;
                if (scaled - scaled.round()).abs() > 1e-6 {
                    return Err("Ensure that there are no more than 2 decimal places.".into());
                }
                if x.abs() >= 10_000.0 {
                    return Err("Ensure that there are no more than 6 digits in total.".into());
                }
                if f.name == "vcpus" && x < 0.01 {
                    return Err("Ensure this value is greater than or equal to 0.01.".into());
                }
                Ok(Val::Float((scaled.round()) / 100.0))
            }
            Kind::Bool => match v {
                Value::Bool(b) => Ok(Val::Bool(*b)),
                Value::Number(n) if n.as_i64() == Some(1) => Ok(Val::Bool(true)),
                Value::Number(n) if n.as_i64() == Some(0) => Ok(Val::Bool(false)),
                Value::String(s) => match s.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" | "y" | "t" => Ok(Val::Bool(true)),
                    "false" | "0" | "no" | "off" | "n" | "f" => Ok(Val::Bool(false)),
                    _ => Err("Must be a valid boolean.".into()),
                },
                _ => Err("Must be a valid boolean.".into()),
            },
            Kind::Choice(choices) => match v {
                Value::Object(_) | Value::Array(_) => {
                    Err("Value must be passed directly (e.g. \"foo\": 123); do not use a dictionary or list.".into())
                }
                _ => {
                    let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    if choices.iter().any(|(c, _)| *c == s) {
                        Ok(Val::Str(s.into()))
                    } else {
                        Err(format!("{s} is not a valid choice."))
                    }
                }
            },
            Kind::Plain(choices) => {
                let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                if choices.contains(&s.as_str()) { Ok(Val::Str(s.into())) } else { Err(format!("\"{s}\" is not a valid choice.")) }
            }
            Kind::Fk(target, _) => self.resolve_ref(target, v).map(|o| o.map_or(Val::Null, Val::Ref)),
            Kind::Json => Ok(Val::Json(Box::new(v.clone()))),
            Kind::StrList => {
                let items = v.as_array().ok_or_else(|| format!("Expected a list of items but got type \"{}\".", json_type(v)))?;
                let mut out = Vec::new();
                for it in items {
                    let s = it.as_str().ok_or_else(|| "Not a valid string.".to_string())?;
                    if f.name == "object_types" && schema::type_by_model(s).is_none() {
                        return Err(format!("Invalid object type: {s}"));
                    }
                    out.push(s.to_string());
                }
                Ok(Val::List(out.into_boxed_slice()))
            }
        }
    }

    fn parse_tags(&self, ty: Ty, obj: &Map<String, Value>, row: &mut Row, errs: &mut Errors) {
        let resolve = |list: &Value, errs: &mut Errors, key: &str| -> Vec<u32> {
            let mut ids = Vec::new();
            let Some(items) = list.as_array() else {
                errs.field(
                    key,
                    format!(
                        "Expected a list of items but got type \"{}\".",
                        json_type(list)
                    ),
                );
                return ids;
            };
            for it in items {
                match self.resolve_ref(schema::TAG, it) {
                    Ok(Some(id)) => ids.push(id),
                    Ok(None) => errs.field(key, "This field may not be null."),
                    Err(e) => errs.field(key, e),
                }
            }
            ids
        };
        let _ = ty;
        if let Some(v) = obj.get("tags") {
            let mut ids = resolve(v, errs, "tags");
            ids.sort_unstable();
            ids.dedup();
            row.tags = ids;
        } else if self.version >= (4, 6) {
            if let Some(v) = obj.get("add_tags") {
                for id in resolve(v, errs, "add_tags") {
                    if !row.tags.contains(&id) {
                        row.tags.push(id);
                    }
                }
            }
            if let Some(v) = obj.get("remove_tags") {
                let rm = resolve(v, errs, "remove_tags");
                row.tags.retain(|t| !rm.contains(t));
            }
            row.tags.sort_unstable();
        }
    }

    fn parse_cfs(
        &self,
        ty: Ty,
        obj: &Map<String, Value>,
        row: &mut Row,
        creating: bool,
        errs: &mut Errors,
    ) {
        let defs = self.cf_defs(ty);
        match obj.get("custom_fields") {
            None | Some(Value::Null) => {}
            Some(Value::Object(given)) => {
                for (k, v) in given {
                    let Some(def) = defs.iter().find(|d| &*d.name == k.as_str()) else {
                        errs.cf(
                            k,
                            format!("Custom field '{k}' does not exist for this object type."),
                        );
                        continue;
                    };
                    if let Err(msg) = validate_cf(def, v) {
                        errs.all(format!("Invalid value for custom field '{k}': {msg}"));
                        continue;
                    }
                    row.cf.retain(|(n, _)| **n != **k);
                    if !v.is_null() {
                        row.cf.push((def.name.clone(), v.clone()));
                    }
                }
            }
            Some(_) => errs.field("custom_fields", "Invalid data. Expected a dictionary."),
        }
        if creating {
            for d in &defs {
                if !d.default.is_null()
                    && row.cf_value(&d.name).is_none()
                    && obj
                        .get("custom_fields")
                        .is_none_or(|c| c.get(&*d.name).is_none())
                {
                    row.cf.push((d.name.clone(), d.default.clone()));
                }
            }
        }
        for d in defs.iter().filter(|d| d.required) {
            if row.cf_value(&d.name).is_none() {
                errs.all(format!("Missing required custom field '{}'.", d.name));
            }
        }
    }

    /// Model-level validation (`clean()`), plus save-time defaults.
    fn clean(&self, ty: Ty, id: u32, row: &mut Row) -> Result<(), WriteError> {
        let mut errs = Errors::default();
        let idx = |f: &str| TYPES[ty].field(f).map(|(i, _)| i).expect("known field");
        match ty {
            schema::VM => {
                let site = row.vals[idx("site")].as_ref_id();
                let cluster = row.vals[idx("cluster")].as_ref_id();
                let device = row.vals[idx("device")].as_ref_id();
                if site.is_none() && cluster.is_none() && device.is_none() {
                    errs.all("A virtual machine must be assigned to a site, cluster, or device.");
                }
                let csite = cluster
                    .and_then(|c| self.row(schema::CLUSTER, c))
                    .and_then(cluster_site);
                if let (Some(s), Some(cs)) = (site, csite)
                    && s != cs
                {
                    let cname = self.name_of(schema::CLUSTER, cluster.unwrap_or(0));
                    errs.field(
                        "cluster",
                        format!(
                            "The selected cluster ({cname}) is not assigned to this site ({}).",
                            self.name_of(schema::SITE, s)
                        ),
                    );
                }
                if let Some(d) = device {
                    let dcluster = self
                        .row(schema::DEVICE, d)
                        .and_then(|r| r.get(schema::DEVICE, "cluster").as_ref_id());
                    match (cluster, dcluster) {
                        (Some(c), Some(dc)) if c != dc => errs.field(
                            "device",
                            format!(
                                "The selected device ({}) is not assigned to this cluster ({}).",
                                self.name_of(schema::DEVICE, d),
                                self.name_of(schema::CLUSTER, c)
                            ),
                        ),
                        (None, Some(dc)) => errs.field(
                            "cluster",
                            format!(
                                "Must specify the assigned device's cluster ({}).",
                                self.name_of(schema::CLUSTER, dc)
                            ),
                        ),
                        (Some(_), None) if self.version < (4, 6) => errs.field(
                            "device",
                            "The selected device is not assigned to a cluster.",
                        ),
                        _ => {}
                    }
                }
                // `VirtualMachine.clean`: a primary IP has the field's family and is assigned
                // to one of this VM's interfaces.
                for (field, family) in [("primary_ip4", 4u8), ("primary_ip6", 6u8)] {
                    let Some(ip) = row.vals[idx(field)].as_ref_id() else {
                        continue;
                    };
                    let Some(ipr) = self.row(schema::IPADDR, ip) else {
                        continue;
                    };
                    let addr = ipr
                        .get(schema::IPADDR, "address")
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let version = ip_family(&addr);
                    if version != family {
                        errs.field(
                            field,
                            format!("Must be an IPv{family} address. ({addr} is an IPv{version} address.)"),
                        );
                    } else if self
                        .assigned_vminterface(schema::IPADDR, ipr)
                        .and_then(|i| self.vm_of_interface(i))
                        != Some(id)
                    {
                        errs.field(
                            field,
                            format!(
                                "The specified IP address ({addr}) is not assigned to this VM."
                            ),
                        );
                    }
                }
                let disk = row.vals[idx("disk")].as_int();
                if let Some(disk) = disk {
                    let sizes = self.disk_sizes(id);
                    let sum: i64 = sizes.iter().sum();
                    if !sizes.is_empty() && sum != disk {
                        errs.field("disk", format!("The specified disk size ({disk}) must match the aggregate size of assigned virtual disks ({sum})."));
                    }
                }
                if errs.is_empty() && site.is_none() {
                    // A VM without a site inherits its cluster's or device's site on save.
                    let inherited = csite.or_else(|| {
                        device
                            .and_then(|d| self.row(schema::DEVICE, d))
                            .and_then(|r| r.get(schema::DEVICE, "site").as_ref_id())
                    });
                    if let Some(s) = inherited {
                        row.vals[idx("site")] = Val::Ref(s);
                    }
                }
            }
            schema::CLUSTER if self.version >= (4, 2) => {
                let st = row.vals[idx("scope_type")].clone();
                let sid = row.vals[idx("scope_id")].as_int();
                match (st.as_str(), sid) {
                    (None, None) => {}
                    (Some("dcim.site"), Some(s)) => {
                        if self.row(schema::SITE, s as u32).is_none() {
                            errs.field(
                                "scope",
                                format!(
                                    "Related object not found using the provided numeric ID: {s}"
                                ),
                            );
                        }
                    }
                    (Some(_), None) => errs.field("scope", "Please select a scope."),
                    (None, Some(_)) => errs.field("scope_type", "Please select a scope type."),
                    (Some(other), Some(_)) => errs.field(
                        "scope_type",
                        format!("{other} scopes are not simulated (only dcim.site)."),
                    ),
                }
                let name = row.vals[idx("name")]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let site = cluster_site(row);
                if site.is_some()
                    && self.tables[schema::CLUSTER].rows.iter().any(|(oid, r)| {
                        *oid != id
                            && r.get(ty, "name").as_str() == Some(name.as_str())
                            && cluster_site(r) == site
                    })
                {
                    errs.all("A cluster with this name already exists at this site.");
                }
            }
            schema::DEVICE => {
                let site = row.vals[idx("site")].as_ref_id();
                if let Some(c) = row.vals[idx("cluster")].as_ref_id()
                    && let Some(cs) = self.row(schema::CLUSTER, c).and_then(cluster_site)
                    && Some(cs) != site
                {
                    errs.field(
                        "cluster",
                        format!(
                            "The assigned cluster belongs to a different site ({})",
                            self.name_of(schema::SITE, cs)
                        ),
                    );
                }
            }
            schema::VMINTERFACE => {
                // 4.0-4.1: the interface's own MAC, stored upper case as NetBox renders it.
                if self.version < (4, 2)
                    && let Some(raw) = row.vals[idx("mac_address")].as_str().map(str::to_owned)
                {
                    match normalize_mac(&raw) {
                        Some(m) => row.vals[idx("mac_address")] = Val::Str(m.into()),
                        None if raw.is_empty() => row.vals[idx("mac_address")] = Val::Null,
                        None => errs.field("mac_address", "Enter a valid MAC address."),
                    }
                }
                if let Some(mtu) = row.vals[idx("mtu")].as_int()
                    && mtu > 65536
                {
                    errs.field("mtu", "Ensure this value is less than or equal to 65536.");
                }
                // `BaseInterface.clean`: the primary MAC is unassigned or assigned to this interface.
                if self.version >= (4, 2)
                    && let Some(mac) = row.vals[idx("primary_mac_address")].as_ref_id()
                    && let Some(mr) = self.row(schema::MACADDR, mac)
                {
                    let mine = mr.get(schema::MACADDR, "assigned_object_type").as_str()
                        == Some(TYPES[ty].model)
                        && mr.get(schema::MACADDR, "assigned_object_id").as_int()
                            == Some(i64::from(id));
                    if !mr.get(schema::MACADDR, "assigned_object_type").is_null() && !mine {
                        let other = mr
                            .get(schema::MACADDR, "assigned_object_type")
                            .as_str()
                            .and_then(schema::type_by_model)
                            .zip(mr.get(schema::MACADDR, "assigned_object_id").as_int())
                            .map(|(t, i)| self.name_of(t, i as u32))
                            .unwrap_or_default();
                        errs.field(
                            "primary_mac_address",
                            format!(
                                "MAC address {} is assigned to a different interface ({other}).",
                                mr.get(schema::MACADDR, "mac_address")
                                    .as_str()
                                    .unwrap_or_default()
                            ),
                        );
                    }
                }
            }
            schema::MACADDR => {
                let raw = row.vals[idx("mac_address")]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                match normalize_mac(&raw) {
                    Some(m) => row.vals[idx("mac_address")] = Val::Str(m.into()),
                    None => errs.field("mac_address", format!("Invalid MAC address format: {raw}")),
                }
            }
            schema::VLAN if row.vals[idx("vid")].as_int().is_some_and(|v| v > 4094) => {
                errs.field("vid", "Ensure this value is less than or equal to 4094.");
            }
            schema::IPADDR => {
                let raw = row.vals[idx("address")]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                match normalize_cidr(&raw) {
                    None => errs.field("address", format!("Invalid IP address format: {raw}")),
                    Some((canon, host)) => {
                        row.vals[idx("address")] = Val::Str(canon.into());
                        let vrf = row.vals[idx("vrf")].as_ref_id();
                        let enforce = match vrf {
                            None => self.enforce_global_unique,
                            Some(v) => self.row(schema::VRF, v).is_some_and(|r| {
                                r.get(schema::VRF, "enforce_unique") == &Val::Bool(true)
                            }),
                        };
                        let role = row.vals[idx("role")].as_str();
                        if enforce && !role.is_some_and(|r| schema::IP_ROLES_NONUNIQUE.contains(&r))
                        {
                            // `IPAddress.get_duplicates`: same VRF, same host, another object;
                            // `.first()` in the model's ordering.
                            let dup = self
                                .ip_hosts
                                .get(&(vrf, host))
                                .into_iter()
                                .flatten()
                                .filter(|oid| **oid != id)
                                .filter_map(|oid| self.row(ty, *oid))
                                .map(|r| {
                                    r.get(ty, "address")
                                        .as_str()
                                        .unwrap_or_default()
                                        .to_string()
                                })
                                .min();
                            if let Some(dup) = dup {
                                let table = match vrf {
                                    Some(v) => format!("VRF {}", self.name_of(schema::VRF, v)),
                                    None => "global table".to_string(),
                                };
                                errs.field(
                                    "address",
                                    format!("Duplicate IP address found in {table}: {dup}"),
                                );
                            }
                        }
                    }
                }
                // `IPAddress.clean`: a VM's primary IP may move between its own interfaces,
                // not to another object (nor be unassigned).
                if let Some(orig) = self.row(ty, id) {
                    let parent_of = |r: &Row| {
                        self.assigned_vminterface(ty, r)
                            .and_then(|i| self.vm_of_interface(i))
                    };
                    if let Some(vm) = parent_of(orig)
                        && let Some(vr) = self.row(schema::VM, vm)
                        && ["primary_ip4", "primary_ip6"]
                            .iter()
                            .any(|f| vr.get(schema::VM, f).as_ref_id() == Some(id))
                        && parent_of(row) != Some(vm)
                    {
                        errs.all(
                            "Cannot reassign IP address while it is designated as the primary \
                             IP for the parent object",
                        );
                    }
                }
            }
            schema::JOURNAL => {
                let model = row.vals[idx("assigned_object_type")]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let oid = row.vals[idx("assigned_object_id")].as_int().unwrap_or(0);
                let exists = schema::type_by_model(&model)
                    .and_then(|t| self.row(t, oid as u32))
                    .is_some();
                if !exists {
                    errs.all(format!("Invalid assigned_object: {model} ID {oid}"));
                }
            }
            schema::CUSTOM_FIELD => {
                let name = row.vals[idx("name")]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    errs.field(
                        "name",
                        "Only alphanumeric characters and underscores are allowed.",
                    );
                } else if name.contains("__") {
                    errs.field(
                        "name",
                        "Double underscores are not permitted in custom field names.",
                    );
                }
            }
            _ => {}
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(WriteError::Invalid(errs))
        }
    }

    pub(crate) fn name_of(&self, ty: Ty, id: u32) -> String {
        self.row(ty, id)
            .map(|r| self.display_of(ty, r))
            .unwrap_or_default()
    }
}

/// 4 or 6: the family of an address (`10.0.0.5/24`, `2001:db8::1/64`).
pub(crate) fn ip_family(addr: &str) -> u8 {
    if addr.contains(':') { 6 } else { 4 }
}

/// An address with its mask as NetBox stores it (`str(IPNetwork)`: canonical, IPv6
/// compressed lower case), and its host part; None when it does not parse. A bare address
/// gets the full-length mask, as netaddr gives it.
pub(crate) fn normalize_cidr(s: &str) -> Option<(String, std::net::IpAddr)> {
    let (host, mask) = match s.trim().split_once('/') {
        Some((h, m)) => (h, Some(m)),
        None => (s.trim(), None),
    };
    let ip: std::net::IpAddr = host.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let mask: u8 = match mask {
        Some(m) => m.parse().ok().filter(|m| *m <= max)?,
        None => max,
    };
    Some((format!("{ip}/{mask}"), ip))
}

/// A MAC address as NetBox stores and shows it (`BC:24:11:2A:3B:4C`), from colon, dash or
/// bare hex forms; None when it is not 48 bits of hex.
pub(crate) fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    Some(
        (0..6)
            .map(|i| &up[2 * i..2 * i + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// The site of a cluster (4.2+: `scope_type = dcim.site`).
pub(crate) fn cluster_site(r: &Row) -> Option<u32> {
    match (
        r.get(schema::CLUSTER, "scope_type").as_str(),
        r.get(schema::CLUSTER, "scope_id").as_int(),
    ) {
        (Some("dcim.site"), Some(id)) => u32::try_from(id).ok(),
        _ => None,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn unrecognized(v: &Value) -> String {
    format!(
        "Related objects must be referenced by numeric ID or by dictionary of attributes. Received an unrecognized value: {}",
        py_repr(v)
    )
}

fn attr_matches(ty: Ty, id: u32, r: &Row, key: &str, want: &Value) -> bool {
    if key == "id" || key == "pk" {
        return want.as_u64() == Some(u64::from(id));
    }
    match r.get(ty, key) {
        Val::Str(s) => want.as_str() == Some(&**s),
        Val::Int(i) => want.as_i64() == Some(*i),
        Val::Ref(rid) => want.as_u64() == Some(u64::from(*rid)),
        Val::Bool(b) => want.as_bool() == Some(*b),
        Val::Null => want.is_null() && TYPES[ty].field(key).is_some(),
        _ => false,
    }
}

/// Default values of every field of a type (fields of later releases are Null).
pub(crate) fn default_vals(ty: Ty, version: Ver) -> Vec<Val> {
    TYPES[ty]
        .fields
        .iter()
        .map(|f| {
            if !f.in_version(version) {
                return Val::Null;
            }
            match f.default {
                Def::Null => Val::Null,
                Def::Blank => match f.kind {
                    Kind::Str(_) | Kind::Text | Kind::Slug => Val::Str("".into()),
                    _ => Val::Null,
                },
                Def::Str(s) => Val::Str(s.into()),
                Def::Bool(b) => Val::Bool(b),
                Def::Int(i) => Val::Int(i),
                Def::Float(x) => Val::Float(x),
                Def::EmptyList => Val::List(Box::default()),
            }
        })
        .collect()
}

fn validate_cf(d: &CfDef, v: &Value) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    match d.kind.as_str() {
        "integer" => {
            let i = v
                .as_i64()
                .filter(|_| !v.is_boolean())
                .ok_or("Value must be an integer.")?;
            if let Some(min) = d.min
                && i < min
            {
                return Err(format!("Value must be at least {min}"));
            }
            if let Some(max) = d.max
                && i > max
            {
                return Err(format!("Value must not exceed {max}"));
            }
            Ok(())
        }
        "decimal" => {
            if v.is_number() || v.as_str().is_some_and(|s| s.parse::<f64>().is_ok()) {
                Ok(())
            } else {
                Err("Value must be a decimal.".into())
            }
        }
        "boolean" => v
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| "Value must be true or false.".into()),
        "text" | "longtext" | "url" | "select" => v
            .as_str()
            .map(|_| ())
            .ok_or_else(|| "Value must be a string.".into()),
        "date" => v
            .as_str()
            .filter(|s| s.len() == 10 && parse_iso(s).is_some())
            .map(|_| ())
            .ok_or_else(|| "Date values must be in ISO 8601 format (YYYY-MM-DD).".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        let t = 1_767_225_600_123_456;
        assert_eq!(iso(t), "2026-01-01T00:00:00.123456Z");
        assert_eq!(parse_iso(&iso(t)), Some(t));
        assert_eq!(parse_iso("2026-01-01"), Some(1_767_225_600_000_000));
        assert_eq!(
            parse_iso("2026-01-01T01:00:00+01:00"),
            Some(1_767_225_600_000_000)
        );
    }

    #[test]
    fn natural_order() {
        assert!(naturalize("vm-9") < naturalize("vm-10"));
        assert_eq!(py_repr(&json!({"name": "prod"})), "{'name': 'prod'}");
    }
}
