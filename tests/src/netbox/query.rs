//! List queries: filters (generic per field kind, custom fields, tags, `q`, change times),
//! ordering, and which parameters are reserved. Unknown parameters are ignored, as NetBox
//! does (a misspelled `cf_` filter returns everything).

use super::schema::{self, Kind, Order, TYPES, Ty};
use super::store::{CfDef, Row, Store, Val, parse_iso};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

/// Parameters that are not filters.
pub(crate) const RESERVED: &[&str] = &[
    "limit",
    "offset",
    "start",
    "ordering",
    "fields",
    "omit",
    "brief",
    "exclude",
    "format",
    "include",
    "background",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Gt,
    Gte,
    Lt,
    Lte,
}

fn cmp_op(op: Op, a: f64, b: f64) -> bool {
    match op {
        Op::Gt => a > b,
        Op::Gte => a >= b,
        Op::Lt => a < b,
        Op::Lte => a <= b,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StrMode {
    Exact,
    IExact,
    IContains,
    IStarts,
    IEnds,
}

enum Pred {
    Ids(Arc<HashSet<u32>>, bool),
    IdCmp(Op, i64),
    Str {
        fi: usize,
        vals: Vec<String>,
        mode: StrMode,
        negate: bool,
    },
    Empty {
        fi: usize,
        want_empty: bool,
    },
    Refs {
        fi: usize,
        ids: Vec<Option<u32>>,
        negate: bool,
    },
    Num {
        fi: usize,
        vals: Vec<f64>,
        negate: bool,
    },
    NumCmp {
        fi: usize,
        op: Op,
        v: f64,
    },
    Bool {
        fi: usize,
        v: bool,
    },
    TagsAll(Vec<u32>),
    TagsAny(Vec<u32>),
    TagsNone(Vec<u32>),
    Cf {
        name: String,
        kind: CfKind,
        vals: Vec<String>,
        negate: bool,
    },
    CfCmp {
        name: String,
        op: Op,
        v: f64,
    },
    CfEmpty {
        name: String,
        want_empty: bool,
    },
    Q(String),
    Time {
        created: bool,
        op: Op,
        micros: i64,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum CfKind {
    IntExact,
    TextLoose,
    TextExact,
    Bool,
    Other,
}

/// A compiled filter set.
pub(crate) struct Filter {
    ty: Ty,
    preds: Vec<Pred>,
    /// Scans custom field data (JSONB in NetBox): costs more in the realistic profile.
    pub(crate) scans_cf: bool,
}

fn bad(errs: &mut Map<String, Value>, key: &str, msg: String) {
    errs.insert(key.to_string(), json!([msg]));
}

fn split_lookup(key: &str) -> (&str, Option<&str>) {
    match key.rsplit_once("__") {
        Some((base, lk))
            if [
                "n", "gt", "gte", "lt", "lte", "ic", "nic", "ie", "nie", "isw", "iew", "empty",
                "any",
            ]
            .contains(&lk) =>
        {
            (base, Some(lk))
        }
        _ => (key, None),
    }
}

impl Filter {
    /// Compiles query parameters; 400 bodies for values NetBox rejects.
    pub(crate) fn compile(
        st: &Store,
        ty: Ty,
        cfs: &[CfDef],
        params: &[(String, String)],
    ) -> Result<Filter, Value> {
        let t = &TYPES[ty];
        let mut errs = Map::new();
        let mut preds = Vec::new();
        let mut scans_cf = false;
        // Group repeated parameters (OR within a parameter, AND across).
        let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
        for (k, v) in params {
            if RESERVED.contains(&k.as_str()) {
                continue;
            }
            match grouped.iter_mut().find(|(gk, _)| *gk == k) {
                Some((_, vs)) => vs.push(v),
                None => grouped.push((k, vec![v])),
            }
        }
        for (key, vals) in grouped {
            let (base, lookup) = split_lookup(key);
            // id
            if base == "id" {
                let mut nums = Vec::new();
                for v in &vals {
                    match v.trim().parse::<i64>() {
                        Ok(n) => nums.push(n),
                        Err(_) => bad(&mut errs, key, "Enter a number.".into()),
                    }
                }
                match lookup {
                    None => preds.push(Pred::Ids(
                        Arc::new(nums.iter().map(|n| *n as u32).collect()),
                        false,
                    )),
                    Some("n") => preds.push(Pred::Ids(
                        Arc::new(nums.iter().map(|n| *n as u32).collect()),
                        true,
                    )),
                    Some(op @ ("gt" | "gte" | "lt" | "lte")) => {
                        if let Some(n) = nums.first() {
                            preds.push(Pred::IdCmp(parse_op(op), *n));
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if base == "q" && lookup.is_none() {
                if let Some(v) = vals.first().filter(|v| !v.trim().is_empty()) {
                    preds.push(Pred::Q(v.trim().to_lowercase()));
                }
                continue;
            }
            if base == "tag" || base == "tag_id" {
                let mut ids = Vec::new();
                for v in &vals {
                    let found = if base == "tag" {
                        st.tables[schema::TAG]
                            .rows
                            .iter()
                            .find(|(_, r)| r.get(schema::TAG, "slug").as_str() == Some(v))
                            .map(|(i, _)| *i)
                    } else {
                        v.parse::<u32>()
                            .ok()
                            .filter(|i| st.row(schema::TAG, *i).is_some())
                    };
                    match found {
                        Some(i) => ids.push(i),
                        None => bad(
                            &mut errs,
                            key,
                            format!(
                                "Select a valid choice. {v} is not one of the available choices."
                            ),
                        ),
                    }
                }
                preds.push(match lookup {
                    Some("n") => Pred::TagsNone(ids),
                    Some("any") => Pred::TagsAny(ids),
                    _ => Pred::TagsAll(ids),
                });
                continue;
            }
            if let Some((created, op)) = time_filter(ty, base, lookup) {
                match vals.first().and_then(|v| parse_iso(v)) {
                    Some(micros) => {
                        let ops: &[Op] = match op {
                            Some(o) => &[o][..],
                            None => &[Op::Gte, Op::Lte][..],
                        };
                        for o in ops {
                            preds.push(Pred::Time {
                                created,
                                op: *o,
                                micros,
                            });
                        }
                    }
                    None => bad(&mut errs, key, "Enter a valid date/time.".into()),
                }
                continue;
            }
            if let Some(cf_name) = base.strip_prefix("cf_") {
                let Some(def) = cfs.iter().find(|d| &*d.name == cf_name) else {
                    continue;
                };
                if def.filter_logic == "disabled" {
                    continue;
                }
                scans_cf = true;
                let kind = match (def.kind.as_str(), def.filter_logic.as_str()) {
                    ("integer", _) => CfKind::IntExact,
                    ("text" | "longtext" | "url", "loose") => CfKind::TextLoose,
                    ("text" | "longtext" | "url", _) => CfKind::TextExact,
                    ("boolean", _) => CfKind::Bool,
                    _ => CfKind::Other,
                };
                if kind == CfKind::IntExact && lookup != Some("empty") {
                    for v in &vals {
                        if v.trim().parse::<i64>().is_err() {
                            bad(&mut errs, key, "Enter a whole number.".into());
                        }
                    }
                }
                let name = cf_name.to_string();
                match lookup {
                    None => preds.push(Pred::Cf {
                        name,
                        kind,
                        vals: vals.iter().map(|s| s.to_string()).collect(),
                        negate: false,
                    }),
                    Some("n") => preds.push(Pred::Cf {
                        name,
                        kind,
                        vals: vals.iter().map(|s| s.to_string()).collect(),
                        negate: true,
                    }),
                    Some("empty") => preds.push(Pred::CfEmpty {
                        name,
                        want_empty: is_true(vals[0]),
                    }),
                    Some("ic") => preds.push(Pred::Cf {
                        name,
                        kind: CfKind::TextLoose,
                        vals: vals.iter().map(|s| s.to_string()).collect(),
                        negate: false,
                    }),
                    Some(op @ ("gt" | "gte" | "lt" | "lte")) => {
                        if let Some(x) = vals.first().and_then(|v| v.trim().parse::<f64>().ok()) {
                            preds.push(Pred::CfCmp {
                                name,
                                op: parse_op(op),
                                v: x,
                            });
                        }
                    }
                    _ => {}
                }
                continue;
            }
            // Filters through a relation (interface -> VM -> cluster, address -> interface
            // -> VM): resolved to the matching ids now, since rows alone cannot answer them.
            if lookup.is_none()
                && let Some(ids) = derived_ids(st, ty, base, &vals, key, &mut errs)
            {
                preds.push(Pred::Ids(ids, false));
                continue;
            }
            // Reference filters: `{f}_id` (ids) and `{f}` (slug, or name when no slug).
            let (fname, by_id) = match base.strip_suffix("_id") {
                Some(f)
                    if t.field(f)
                        .is_some_and(|(_, fd)| matches!(fd.kind, Kind::Fk(..))) =>
                {
                    (f, true)
                }
                _ => (base, false),
            };
            let Some((fi, fd)) = t.field(fname) else {
                continue;
            };
            if !st.field_available(fd) {
                continue;
            }
            match fd.kind {
                Kind::Fk(target, _) => {
                    let mut ids = Vec::new();
                    for v in &vals {
                        if *v == "null" {
                            ids.push(None);
                            continue;
                        }
                        let found = if by_id {
                            v.parse::<u32>()
                                .ok()
                                .filter(|i| st.row(target, *i).is_some())
                        } else {
                            let tt = &TYPES[target];
                            let attr = if tt.has_slug() { "slug" } else { tt.display };
                            st.tables[target]
                                .rows
                                .iter()
                                .find(|(_, r)| r.get(target, attr).as_str() == Some(v))
                                .map(|(i, _)| *i)
                        };
                        match found {
                            Some(i) => ids.push(Some(i)),
                            None => bad(
                                &mut errs,
                                key,
                                format!(
                                    "Select a valid choice. {v} is not one of the available choices."
                                ),
                            ),
                        }
                    }
                    preds.push(Pred::Refs {
                        fi,
                        ids,
                        negate: lookup == Some("n"),
                    });
                }
                Kind::Str(_)
                | Kind::Text
                | Kind::Slug
                | Kind::Color
                | Kind::Choice(_)
                | Kind::Plain(_) => {
                    // VM and device names filter case-insensitively (iexact) [live].
                    let exact_mode =
                        if fname == "name" && (ty == schema::VM || ty == schema::DEVICE) {
                            StrMode::IExact
                        } else {
                            StrMode::Exact
                        };
                    let (mode, negate) = match lookup {
                        None => (exact_mode, false),
                        Some("n") => (exact_mode, true),
                        Some("ic") => (StrMode::IContains, false),
                        Some("nic") => (StrMode::IContains, true),
                        Some("ie") => (StrMode::IExact, false),
                        Some("nie") => (StrMode::IExact, true),
                        Some("isw") => (StrMode::IStarts, false),
                        Some("iew") => (StrMode::IEnds, false),
                        Some("empty") => {
                            preds.push(Pred::Empty {
                                fi,
                                want_empty: is_true(vals[0]),
                            });
                            continue;
                        }
                        _ => continue,
                    };
                    let vals = vals
                        .iter()
                        .map(|v| {
                            if mode == StrMode::Exact {
                                v.to_string()
                            } else {
                                v.to_lowercase()
                            }
                        })
                        .collect();
                    preds.push(Pred::Str {
                        fi,
                        vals,
                        mode,
                        negate,
                    });
                }
                Kind::Int(_) | Kind::Decimal => {
                    let mut nums = Vec::new();
                    for v in &vals {
                        match v.trim().parse::<f64>() {
                            Ok(n) => nums.push(n),
                            Err(_) => bad(&mut errs, key, "Enter a number.".into()),
                        }
                    }
                    match lookup {
                        None => preds.push(Pred::Num {
                            fi,
                            vals: nums,
                            negate: false,
                        }),
                        Some("n") => preds.push(Pred::Num {
                            fi,
                            vals: nums,
                            negate: true,
                        }),
                        Some("empty") => preds.push(Pred::Empty {
                            fi,
                            want_empty: is_true(vals[0]),
                        }),
                        Some(op @ ("gt" | "gte" | "lt" | "lte")) => {
                            if let Some(n) = nums.first() {
                                preds.push(Pred::NumCmp {
                                    fi,
                                    op: parse_op(op),
                                    v: *n,
                                });
                            }
                        }
                        _ => {}
                    }
                }
                Kind::Bool => preds.push(Pred::Bool {
                    fi,
                    v: is_true(vals[0]),
                }),
                Kind::Json | Kind::StrList => {}
            }
        }
        if errs.is_empty() {
            Ok(Filter {
                ty,
                preds,
                scans_cf,
            })
        } else {
            Err(Value::Object(errs))
        }
    }

    /// The id range implied by `id__gt`/`id__gte` (lets a cursor-style scan start mid-table).
    pub(crate) fn min_id(&self) -> u32 {
        self.preds
            .iter()
            .filter_map(|p| match p {
                Pred::IdCmp(Op::Gt, n) => Some((*n + 1).max(0) as u32),
                Pred::IdCmp(Op::Gte, n) => Some((*n).max(0) as u32),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn matches(&self, id: u32, r: &Row) -> bool {
        let ty = self.ty;
        self.preds.iter().all(|p| match p {
            Pred::Ids(ids, neg) => ids.contains(&id) != *neg,
            Pred::IdCmp(op, n) => cmp_op(*op, f64::from(id), *n as f64),
            Pred::Str {
                fi,
                vals,
                mode,
                negate,
            } => {
                let s = match &r.vals[*fi] {
                    Val::Str(s) => s.to_string(),
                    Val::Null => String::new(),
                    other => format!("{other:?}"),
                };
                let hit = vals.iter().any(|v| str_match(&s, v, *mode));
                hit != *negate
            }
            Pred::Empty { fi, want_empty } => {
                let empty = matches!(&r.vals[*fi], Val::Null)
                    || matches!(&r.vals[*fi], Val::Str(s) if s.is_empty());
                empty == *want_empty
            }
            Pred::Refs { fi, ids, negate } => ids.contains(&r.vals[*fi].as_ref_id()) != *negate,
            Pred::Num { fi, vals, negate } => {
                let x = num(&r.vals[*fi]);
                x.is_some_and(|x| vals.iter().any(|v| (*v - x).abs() < 1e-9)) != *negate
            }
            Pred::NumCmp { fi, op, v } => num(&r.vals[*fi]).is_some_and(|x| cmp_op(*op, x, *v)),
            Pred::Bool { fi, v } => r.vals[*fi] == Val::Bool(*v),
            Pred::TagsAll(ids) => ids.iter().all(|t| r.tags.contains(t)),
            Pred::TagsAny(ids) => ids.iter().any(|t| r.tags.contains(t)),
            Pred::TagsNone(ids) => !ids.iter().any(|t| r.tags.contains(t)),
            Pred::Cf {
                name,
                kind,
                vals,
                negate,
            } => {
                let v = r.cf_value(name);
                let hit = vals.iter().any(|want| cf_match(v, want, *kind));
                hit != *negate
            }
            Pred::CfCmp { name, op, v } => r
                .cf_value(name)
                .and_then(Value::as_f64)
                .is_some_and(|x| cmp_op(*op, x, *v)),
            Pred::CfEmpty { name, want_empty } => {
                let empty = r
                    .cf_value(name)
                    .is_none_or(|v| v.is_null() || v.as_str() == Some(""));
                empty == *want_empty
            }
            Pred::Q(q) => TYPES[ty].q.iter().any(|f| {
                r.get(ty, f)
                    .as_str()
                    .is_some_and(|s| s.to_lowercase().contains(q.as_str()))
            }),
            Pred::Time {
                created,
                op,
                micros,
            } => {
                let t = if *created { r.created } else { r.updated };
                cmp_op(*op, t as f64, *micros as f64)
            }
        })
    }
}

/// `cluster_id` on VM interfaces, `virtual_machine_id` and `vminterface_id` on IP and MAC
/// addresses (reference B.4): the ids of the rows they select, or None for other filters.
fn derived_ids(
    st: &Store,
    ty: Ty,
    base: &str,
    vals: &[&str],
    key: &str,
    errs: &mut Map<String, Value>,
) -> Option<Arc<HashSet<u32>>> {
    let target = match (ty, base) {
        (schema::VMINTERFACE, "cluster_id") => schema::CLUSTER,
        (schema::IPADDR | schema::MACADDR, "virtual_machine_id") => schema::VM,
        (schema::IPADDR | schema::MACADDR, "vminterface_id") => schema::VMINTERFACE,
        _ => return None,
    };
    let mut want = Vec::new();
    for v in vals {
        match v
            .parse::<u32>()
            .ok()
            .filter(|i| st.row(target, *i).is_some())
        {
            Some(i) => want.push(i),
            None => bad(
                errs,
                key,
                format!("Select a valid choice. {v} is not one of the available choices."),
            ),
        }
    }
    let key = (ty, target, want);
    let mut cache = st.derived.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ids) = cache.get(&key) {
        return Some(ids.clone());
    }
    let want = &key.2;
    let ids: Arc<HashSet<u32>> = Arc::new(
        st.tables[ty]
            .rows
            .iter()
            .filter(|(_, r)| {
                let hit = match target {
                    schema::CLUSTER => r
                        .get(ty, "virtual_machine")
                        .as_ref_id()
                        .and_then(|vm| st.row(schema::VM, vm))
                        .and_then(|vm| vm.get(schema::VM, "cluster").as_ref_id()),
                    schema::VM => st
                        .assigned_vminterface(ty, r)
                        .and_then(|i| st.vm_of_interface(i)),
                    _ => st.assigned_vminterface(ty, r),
                };
                hit.is_some_and(|h| want.contains(&h))
            })
            .map(|(i, _)| *i)
            .collect(),
    );
    cache.insert(key, ids.clone());
    Some(ids)
}

fn parse_op(s: &str) -> Op {
    match s {
        "gt" => Op::Gt,
        "gte" => Op::Gte,
        "lt" => Op::Lt,
        _ => Op::Lte,
    }
}

fn is_true(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t"
    )
}

fn time_filter(ty: Ty, base: &str, lookup: Option<&str>) -> Option<(bool, Option<Op>)> {
    let op = match lookup {
        None => None,
        Some(l @ ("gt" | "gte" | "lt" | "lte")) => Some(parse_op(l)),
        _ => return None,
    };
    match base {
        "created" => Some((true, op)),
        "last_updated" => Some((false, op)),
        // Journal entries: created_after / created_before.
        "created_after" if ty == schema::JOURNAL => Some((true, Some(Op::Gte))),
        "created_before" if ty == schema::JOURNAL => Some((true, Some(Op::Lte))),
        // Object changes: `time_after` / `time_before` (NetBox's DateTimeFromToRangeFilter on
        // `time`, inclusive); a change's `time` is its row's `created`.
        "time_after" if ty == schema::OBJECT_CHANGE => Some((true, Some(Op::Gte))),
        "time_before" if ty == schema::OBJECT_CHANGE => Some((true, Some(Op::Lte))),
        _ => None,
    }
}

fn num(v: &Val) -> Option<f64> {
    match v {
        Val::Int(i) => Some(*i as f64),
        Val::Float(x) => Some(*x),
        _ => None,
    }
}

fn str_match(s: &str, want: &str, mode: StrMode) -> bool {
    match mode {
        StrMode::Exact => s == want,
        StrMode::IExact => s.to_lowercase() == want,
        StrMode::IContains => s.to_lowercase().contains(want),
        StrMode::IStarts => s.to_lowercase().starts_with(want),
        StrMode::IEnds => s.to_lowercase().ends_with(want),
    }
}

fn cf_match(v: Option<&Value>, want: &str, kind: CfKind) -> bool {
    let Some(v) = v else { return false };
    match kind {
        CfKind::IntExact => want
            .trim()
            .parse::<i64>()
            .ok()
            .is_some_and(|w| v.as_i64() == Some(w)),
        CfKind::TextLoose => v
            .as_str()
            .is_some_and(|s| s.to_lowercase().contains(&want.to_lowercase())),
        CfKind::TextExact => v.as_str() == Some(want),
        CfKind::Bool => v.as_bool() == Some(is_true(want)),
        CfKind::Other => match v {
            Value::String(s) => s == want,
            other => want.parse::<Value>().is_ok_and(|w| w == *other),
        },
    }
}

/// Sorts matched rows by `ordering=` (unknown fields ignored) or the type's default.
pub(crate) fn sort(ty: Ty, rows: &mut [(u32, &Row)], ordering: Option<&str>) {
    let t = &TYPES[ty];
    let keys: Vec<(String, bool)> = ordering
        .map(|o| {
            o.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| match k.strip_prefix('-') {
                    Some(k) => (k.to_string(), true),
                    None => (k.to_string(), false),
                })
                .filter(|(k, _)| {
                    k == "id" || k == "created" || k == "last_updated" || t.field(k).is_some()
                })
                .collect()
        })
        .unwrap_or_default();
    if keys.is_empty() {
        match t.order {
            Order::Name | Order::Field(_) => {
                rows.sort_by(|a, b| a.1.nat.cmp(&b.1.nat).then(a.0.cmp(&b.0)))
            }
            Order::CreatedDesc => {
                rows.sort_by(|a, b| b.1.created.cmp(&a.1.created).then(b.0.cmp(&a.0)))
            }
        }
        return;
    }
    rows.sort_by(|a, b| {
        for (k, desc) in &keys {
            let o = match k.as_str() {
                "id" => a.0.cmp(&b.0),
                "created" => a.1.created.cmp(&b.1.created),
                "last_updated" => a.1.updated.cmp(&b.1.updated),
                "name" if matches!(t.order, Order::Name) => a.1.nat.cmp(&b.1.nat),
                f => cmp_val(a.1.get(ty, f), b.1.get(ty, f)),
            };
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.0.cmp(&b.0)
    });
}

fn cmp_val(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        // PostgreSQL sorts NULLs last in ascending order.
        (Val::Null, _) => Ordering::Greater,
        (_, Val::Null) => Ordering::Less,
        (Val::Str(x), Val::Str(y)) => x.cmp(y),
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Val::Ref(x), Val::Ref(y)) => x.cmp(y),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}
