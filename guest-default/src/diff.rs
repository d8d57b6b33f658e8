//! diff: desired vs current `Vm` to field changes, honouring ownership.
//!
//! - `Keep` never changes anything; `ignore` is never written.
//! - Create (`current` is `None`): every `Set`/`Clear` field that is not `ignore`, `old` = `null`.
//! - Update: `owned` (and `merge` on non-set fields) writes when different; `seed` never.
//! - `tags` under `merge`: new = (current - previously managed) ∪ desired, where "previously
//!   managed" is the current `custom_fields.proxmox_tags`; `proxmox_tags` itself is written only
//!   when tags are (not for `ignore`, nor for `seed` after create).
//! - Compared normalised: vCPUs numerically at 2 decimals, tags as sets, text exactly (empty text
//!   equals `Clear`), custom fields as JSON values.
//! - Output in a fixed order: [`FIELD_ORDER`], then custom fields by name.
//!
//! JSON of values: a `Clear` is `null`, except `description`, `comments` and `serial`, which
//! NetBox does not allow to be null: `""`.

use crate::cpu::round2;
use crate::model::{
    DiffInput, Field, FieldChange, JsonText, Ownership, RuleError, Vm, format_f64, json_text_eq,
    push_json_string,
};
use crate::policy::{CF_TAGS, CUSTOM_FIELDS_PREFIX, Policies};
use crate::tags::split_managed;

/// The fixed fields in output order (NetBox API names).
pub const FIELD_ORDER: [&str; 16] = [
    "name",
    "status",
    "site",
    "device",
    "role",
    "virtual_machine_type",
    "platform",
    "tenant",
    "vcpus",
    "memory",
    "disk",
    "description",
    "comments",
    "serial",
    "start_on_boot",
    "tags",
];

const NULL: &str = "null";

struct Out {
    changes: Vec<FieldChange>,
    creating: bool,
}

impl Out {
    fn push(&mut self, field: String, old: String, new: String) {
        self.changes.push(FieldChange {
            field,
            old: JsonText(old),
            new: JsonText(new),
        });
    }

    /// Compares one field and records a change when the policy allows it.
    // One call site per field type; a parameter struct would only add noise.
    #[allow(clippy::too_many_arguments)]
    fn field<T>(
        &mut self,
        field: &'static str,
        own: Ownership,
        desired: &Field<T>,
        current: Option<&Field<T>>,
        norm: impl Fn(&T) -> bool,
        eq: impl Fn(&T, &T) -> bool,
        json: impl Fn(Option<&T>) -> String,
    ) {
        if desired.is_keep() || own == Ownership::Ignore {
            return;
        }
        // `norm` says whether a set value counts as a value (empty text does not).
        let d = desired.as_set().filter(|v| norm(v));
        if self.creating {
            self.push(field.to_owned(), NULL.to_owned(), json(d));
            return;
        }
        if own == Ownership::Seed {
            return;
        }
        let c = current.and_then(Field::as_set).filter(|v| norm(v));
        let same = match (d, c) {
            (None, None) => true,
            (Some(a), Some(b)) => eq(a, b),
            _ => false,
        };
        if !same {
            self.push(field.to_owned(), json(c), json(d));
        }
    }
}

fn any<T>(_: &T) -> bool {
    true
}
// `&String` because `Out::field` is generic over the field's value type (here `String`).
#[allow(clippy::ptr_arg)]
fn non_empty(s: &String) -> bool {
    !s.is_empty()
}
#[allow(clippy::ptr_arg)]
fn text_eq(a: &String, b: &String) -> bool {
    a == b
}
fn text_or_null(v: Option<&String>) -> String {
    match v {
        None => NULL.to_owned(),
        Some(s) => {
            let mut o = String::with_capacity(s.len() + 2);
            push_json_string(&mut o, s);
            o
        }
    }
}
fn text_or_blank(v: Option<&String>) -> String {
    match v {
        None => "\"\"".to_owned(),
        s => text_or_null(s),
    }
}
fn count_json(v: Option<&u64>) -> String {
    v.map_or_else(|| NULL.to_owned(), u64::to_string)
}
fn decimal_json(v: Option<&f64>) -> String {
    v.map_or_else(|| NULL.to_owned(), |x| format_f64(round2(*x)))
}
fn decimal_eq(a: &f64, b: &f64) -> bool {
    (a * 100.0).round() == (b * 100.0).round()
}
fn list_json(v: &[&str]) -> String {
    let mut o = String::with_capacity(2 + v.iter().map(|s| s.len() + 3).sum::<usize>());
    o.push('[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        push_json_string(&mut o, s);
    }
    o.push(']');
    o
}

fn sorted_set<'a>(v: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = v.collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The content of a JSON string literal without escapes, else a full parse.
fn json_string_content(text: &JsonText) -> Option<std::borrow::Cow<'_, str>> {
    let t = text.as_str().trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') && !t.contains('\\') {
        return Some(std::borrow::Cow::Borrowed(&t[1..t.len() - 1]));
    }
    text.as_string_value().map(std::borrow::Cow::Owned)
}

/// Changes for one pair.
pub(crate) fn diff(pol: &Policies, input: &DiffInput) -> Result<Vec<FieldChange>, RuleError> {
    let d = &input.desired;
    let c = input.current.as_ref();
    for (field, value) in [("name", &d.name), ("status", &d.status)] {
        if matches!(value, Field::Clear) {
            return Err(RuleError::new(
                "bad-desired",
                format!(
                    "the desired {field} is `clear`, but NetBox requires a {field} (guest-default, diff)"
                ),
            ));
        }
    }
    let creating = c.is_none();
    let mut out = Out {
        // A create writes nearly every field: size for all of them at once. An update usually
        // changes none or a few (an empty `Vec` does not allocate).
        changes: if creating {
            Vec::with_capacity(FIELD_ORDER.len() + d.custom_fields.len())
        } else {
            Vec::new()
        },
        creating,
    };
    macro_rules! text {
        ($f:literal, $own:ident, $field:ident, $json:expr) => {
            out.field(
                $f,
                pol.$own,
                &d.$field,
                c.map(|c| &c.$field),
                non_empty,
                text_eq,
                $json,
            )
        };
    }
    text!("name", name, name, text_or_null);
    text!("status", status, status, text_or_null);
    text!("site", site, site, text_or_null);
    text!("device", device, device, text_or_null);
    text!("role", role, role, text_or_null);
    text!("virtual_machine_type", vm_type, vm_type, text_or_null);
    text!("platform", platform, platform, text_or_null);
    text!("tenant", tenant, tenant, text_or_null);
    out.field(
        "vcpus",
        pol.vcpus,
        &d.vcpus,
        c.map(|c| &c.vcpus),
        any,
        decimal_eq,
        decimal_json,
    );
    out.field(
        "memory",
        pol.memory,
        &d.memory,
        c.map(|c| &c.memory),
        any,
        u64::eq,
        count_json,
    );
    out.field(
        "disk",
        pol.disk,
        &d.disk,
        c.map(|c| &c.disk),
        any,
        u64::eq,
        count_json,
    );
    text!("description", description, description, text_or_blank);
    text!("comments", comments, comments, text_or_blank);
    text!("serial", serial, serial, text_or_blank);
    text!("start_on_boot", start_on_boot, start_on_boot, text_or_null);
    let tags_written = tags(&mut out, pol, d, c);
    custom_fields(&mut out, pol, d, c, tags_written);
    Ok(out.changes)
}

/// The tags change; returns whether tags are under the sync's control for this pair (so
/// `proxmox_tags` may be written).
fn tags(out: &mut Out, pol: &Policies, d: &Vm, c: Option<&Vm>) -> bool {
    let own = pol.tags;
    let desired: &[String] = match &d.tags {
        Field::Keep => return false,
        Field::Set(v) => v,
        Field::Clear => &[],
    };
    if own == Ownership::Ignore {
        return false;
    }
    let desired_set = sorted_set(desired.iter().map(String::as_str));
    let Some(cur) = c else {
        out.push("tags".to_owned(), NULL.to_owned(), list_json(&desired_set));
        return true;
    };
    if own == Ownership::Seed {
        return false;
    }
    let current_set = sorted_set(cur.tags.as_set().into_iter().flatten().map(String::as_str));
    let new_set = if own == Ownership::Merge {
        let managed_text = match cur.custom_field(CF_TAGS) {
            Some(Field::Set(t)) => json_string_content(t),
            _ => None,
        };
        let managed: Vec<&str> = managed_text
            .as_deref()
            .map_or_else(Vec::new, |t| split_managed(t).collect());
        sorted_set(
            current_set
                .iter()
                .filter(|t| !managed.contains(t))
                .chain(desired_set.iter())
                .copied(),
        )
    } else {
        desired_set
    };
    if new_set != current_set {
        out.push(
            "tags".to_owned(),
            list_json(&current_set),
            list_json(&new_set),
        );
    }
    true
}

fn custom_fields(out: &mut Out, pol: &Policies, d: &Vm, c: Option<&Vm>, tags_written: bool) {
    let mut desired: Vec<&(String, Field<JsonText>)> = d.custom_fields.iter().collect();
    desired.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in desired {
        if value.is_keep() || (name == CF_TAGS && !tags_written) {
            continue;
        }
        let own = pol.custom(name);
        if own == Ownership::Ignore || (own == Ownership::Seed && !out.creating) {
            continue;
        }
        let new = value.as_set().filter(|v| !v.is_null());
        // Not `format!`: this runs for every custom field of every changed VM.
        let field = || {
            let mut f = String::with_capacity(CUSTOM_FIELDS_PREFIX.len() + name.len());
            f.push_str(CUSTOM_FIELDS_PREFIX);
            f.push_str(name);
            f
        };
        if out.creating {
            let new = new.map_or_else(|| NULL.to_owned(), |v| v.0.clone());
            out.push(field(), NULL.to_owned(), new);
            continue;
        }
        let old = c
            .and_then(|c| c.custom_field(name))
            .and_then(Field::as_set)
            .filter(|v| !v.is_null());
        let same = match (new, old) {
            (None, None) => true,
            (Some(a), Some(b)) => json_text_eq(&a.0, &b.0),
            _ => false,
        };
        if !same {
            out.push(
                field(),
                old.map_or_else(|| NULL.to_owned(), |v| v.0.clone()),
                new.map_or_else(|| NULL.to_owned(), |v| v.0.clone()),
            );
        }
    }
}
