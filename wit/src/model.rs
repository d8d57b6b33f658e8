//! The plain-Rust mirror of the WIT types in `wit/v0.2.0/rules.wit`, with their friendly JSON.
//!
//! Shared by the default rules (native and WASM), rule modules written in Rust, and the host
//! (fixtures, `rules eval` output, plans, and the lenient parsing of raw Proxmox resource rows
//! and raw NetBox VM records). It knows nothing about wit-bindgen; `crate::component` converts.
//!
//! Friendly JSON: a `keep` field is absent, `clear` is `null`, `set(v)` is the plain value;
//! custom fields are a JSON object of values; JSON-text values (`JsonText`) appear as plain JSON.

use std::fmt;

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The NetBox version assumed when a context does not say (fixtures, `rules eval`).
pub const DEFAULT_NETBOX_VERSION: &str = "4.7.3";

/// The WIT package version this crate's bindings are generated from.
pub const WIT_VERSION: &str = "0.4.0";

// ---------------------------------------------------------------------------------------------
// JSON text
// ---------------------------------------------------------------------------------------------

/// A JSON value kept as its text (WIT `json`), so the WASM hot path never parses JSON.
///
/// In friendly JSON it appears as the plain value it holds; text that is not valid JSON is
/// shown as a JSON string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonText(pub String);

impl JsonText {
    /// JSON `null`.
    pub fn null() -> Self {
        JsonText("null".to_owned())
    }
    /// A JSON string holding `s`, escaped.
    pub fn string(s: &str) -> Self {
        let mut out = String::with_capacity(s.len() + 2);
        push_json_string(&mut out, s);
        JsonText(out)
    }
    /// A JSON number.
    pub fn uint(n: u64) -> Self {
        JsonText(n.to_string())
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True for the text `null` (surrounding whitespace allowed).
    pub fn is_null(&self) -> bool {
        Self::text_is_null(&self.0)
    }
    /// [`JsonText::is_null`] of a borrowed text.
    pub fn text_is_null(text: &str) -> bool {
        // Most texts have nothing to trim: an ASCII, non-space first and last byte says so
        // without `trim`'s UTF-8 decoding from both ends (~55 instructions a call in WASM).
        let plain =
            |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !(b as char).is_whitespace());
        let bytes = text.as_bytes();
        if plain(bytes.first()) && plain(bytes.last()) {
            bytes == b"null"
        } else {
            text.trim() == "null"
        }
    }
    /// Parses the text; invalid JSON becomes a JSON string of the text.
    pub fn to_value(&self) -> serde_json::Value {
        Self::text_to_value(&self.0)
    }
    /// [`JsonText::to_value`] of a borrowed text.
    pub fn text_to_value(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
    }
    /// The text of a JSON value.
    pub fn from_value(v: &serde_json::Value) -> Self {
        JsonText(v.to_string())
    }
    /// If the text is a JSON string, its unescaped content.
    pub fn as_string_value(&self) -> Option<String> {
        Self::text_string_value(&self.0)
    }
    /// [`JsonText::as_string_value`] of a borrowed text.
    pub fn text_string_value(text: &str) -> Option<String> {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

/// Appends `s` as a quoted, escaped JSON string (RFC 8259), without serde.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    push_json_escaped(out, s);
    out.push('"');
}

/// Appends the escaped content of a JSON string (no quotes). Escaping is per character, so
/// pieces may be appended one after another.
pub fn push_json_escaped(out: &mut String, s: &str) {
    // Runs of plain characters are copied whole (most strings have nothing to escape), found
    // eight bytes at a time.
    let bytes = s.as_bytes();
    let mut plain = 0;
    loop {
        let i = next_json_special(bytes, plain);
        let Some(&b) = bytes.get(i) else { break };
        out.push_str(&s[plain..i]);
        push_json_escape(out, b);
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
}

/// The position of the first byte at or after `from` that a JSON string cannot hold as it is
/// (`"`, `\`, or a control character below 0x20); `from.max(bytes.len())` when there is none.
///
/// Eight bytes per step (a word test for "any byte equal to / below"): strings here are mostly
/// plain, and a byte loop was the largest part of escaping a config and of scanning one.
#[inline]
pub fn next_json_special(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let slash = w ^ (ONES * u64::from(b'\\'));
        // Exact for "some byte is zero" and "some byte is below 0x20" (the classic word tests).
        let special = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        if special & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

/// The escape of one byte that JSON requires to be escaped (all are ASCII).
fn push_json_escape(out: &mut String, b: u8) {
    match b {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        b => {
            use fmt::Write;
            let _ = write!(out, "\\u{:04x}", b);
        }
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(JsonText::from_value(&v))
    }
}

/// Compares two JSON texts as values (numbers numerically, so `2` equals `2.0`).
pub fn json_text_eq(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => json_value_eq(&x, &y),
        _ => false,
    }
}

/// Compares two JSON values, numbers numerically.
pub fn json_value_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => x.as_f64() == y.as_f64(),
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_value_eq(p, q))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_value_eq(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// Field<T>
// ---------------------------------------------------------------------------------------------

/// One desired or current field (WIT `text-field`, `count-field`, ...).
///
/// Friendly JSON: absent = `Keep`, `null` = `Clear`, a value = `Set`. Use on struct fields with
/// `#[serde(default, skip_serializing_if = "Field::is_keep")]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Field<T> {
    /// The source does not know: leave NetBox as it is.
    #[default]
    Keep,
    /// Write this value.
    Set(T),
    /// Write the empty value (`null`, or `""` for NetBox text fields that are not nullable).
    Clear,
}

impl<T> Field<T> {
    /// True for `Keep`.
    pub fn is_keep(&self) -> bool {
        matches!(self, Field::Keep)
    }
    /// The set value, if any.
    pub fn as_set(&self) -> Option<&T> {
        match self {
            Field::Set(v) => Some(v),
            _ => None,
        }
    }
    /// The set value mapped by `f`; `Keep` and `Clear` stay as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Field<U> {
        match self {
            Field::Set(v) => Field::Set(f(v)),
            Field::Keep => Field::Keep,
            Field::Clear => Field::Clear,
        }
    }
    /// `Set(v)` for `Some(v)`, `Clear` for `None`.
    pub fn from_option(v: Option<T>) -> Self {
        match v {
            Some(v) => Field::Set(v),
            None => Field::Clear,
        }
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Set(v) => v.serialize(s),
            Field::Keep | Field::Clear => s.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Called only when the key is present (absent keys take the `Keep` default).
        Ok(Field::from_option(Option::<T>::deserialize(d)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Guest (Proxmox side)
// ---------------------------------------------------------------------------------------------

/// The kind of a Proxmox guest (`type` of a resource row).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// QEMU/KVM virtual machine.
    #[default]
    Qemu,
    /// LXC container.
    Lxc,
}

impl GuestKind {
    /// `qemu` or `lxc`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }
}

/// One Proxmox guest: a `/cluster/resources?type=vm` row plus its raw config.
///
/// Deserializes leniently from the raw row with two added keys, `cluster` and `config` (the raw
/// config object, `null`/absent when it was not read): 0/1, `"0"`/`"1"` and true/false booleans,
/// numbers as strings, unknown keys ignored. Config values become text (`4096` -> `"4096"`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Guest {
    /// Proxmox cluster name, or the node name of a standalone node.
    pub cluster: String,
    /// The VMID.
    pub vmid: u32,
    /// QEMU or LXC.
    pub kind: GuestKind,
    /// The node that owns the guest now.
    pub node: String,
    /// `name` of the row; absent for `status: unknown` rows.
    pub name: Option<String>,
    /// `running`, `stopped`, `paused`, `unknown`, ...
    pub status: String,
    /// True for a template.
    pub template: bool,
    /// `maxcpu` (fractional for LXC `cpulimit`).
    pub maxcpu: Option<f64>,
    /// `maxmem` in bytes.
    pub maxmem: Option<u64>,
    /// `maxdisk` in bytes (QEMU: boot disk only).
    pub maxdisk: Option<u64>,
    /// Raw `tags` of the row.
    pub tags: Option<String>,
    /// Resource pool.
    pub pool: Option<String>,
    /// Raw config properties in Proxmox's order, values as text.
    pub config: Vec<(String, String)>,
    /// False when the config could not be read (every config-derived field is then `Keep`).
    pub config_read: bool,
}

impl Guest {
    /// The value of a config key.
    pub fn config_value(&self, key: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// `cluster/node/vmid`, the scope used in error messages.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}", self.cluster, self.node, self.vmid)
    }
}

impl Serialize for Guest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Config<'a>(&'a [(String, String)]);
        impl Serialize for Config<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut st = s.serialize_struct("Guest", 14)?;
        st.serialize_field("cluster", &self.cluster)?;
        st.serialize_field("vmid", &self.vmid)?;
        st.serialize_field("type", &self.kind)?;
        st.serialize_field("node", &self.node)?;
        if let Some(n) = &self.name {
            st.serialize_field("name", n)?;
        }
        st.serialize_field("status", &self.status)?;
        st.serialize_field("template", &u8::from(self.template))?;
        if let Some(v) = self.maxcpu {
            st.serialize_field("maxcpu", &v)?;
        }
        if let Some(v) = self.maxmem {
            st.serialize_field("maxmem", &v)?;
        }
        if let Some(v) = self.maxdisk {
            st.serialize_field("maxdisk", &v)?;
        }
        if let Some(v) = &self.tags {
            st.serialize_field("tags", v)?;
        }
        if let Some(v) = &self.pool {
            st.serialize_field("pool", v)?;
        }
        if self.config_read {
            st.serialize_field("config", &Config(&self.config))?;
        } else {
            st.serialize_field("config", &Option::<()>::None)?;
        }
        st.end()
    }
}

impl<'de> Deserialize<'de> for Guest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(GuestVisitor)
    }
}

struct GuestVisitor;

impl<'de> Visitor<'de> for GuestVisitor {
    type Value = Guest;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Proxmox /cluster/resources row (object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Guest, A::Error> {
        let mut g = Guest {
            status: String::new(),
            ..Guest::default()
        };
        let mut vmid: Option<u32> = None;
        let mut kind: Option<GuestKind> = None;
        let mut id: Option<String> = None;
        let mut config: Option<Vec<(String, String)>> = None;
        let mut config_read: Option<bool> = None;
        let mut status: Option<String> = None;
        while let Some(key) = map.next_key::<KeyStr>()? {
            match key.0.as_str() {
                "cluster" => g.cluster = map.next_value::<Lenient>()?.text().unwrap_or_default(),
                "vmid" => {
                    vmid = match map.next_value::<Lenient>()?.uint() {
                        Some(n) => Some(u32::try_from(n).map_err(|_| {
                            de::Error::custom(format_args!("vmid {n} is out of range"))
                        })?),
                        None => None,
                    }
                }
                "type" | "kind" => {
                    if let Some(t) = map.next_value::<Lenient>()?.text() {
                        kind = Some(parse_kind(&t).ok_or_else(|| {
                            de::Error::custom(format_args!(
                                "unsupported guest type {t:?} (expected qemu or lxc)"
                            ))
                        })?);
                    }
                }
                "id" => id = map.next_value::<Lenient>()?.text(),
                "node" => g.node = map.next_value::<Lenient>()?.text().unwrap_or_default(),
                "name" => g.name = map.next_value::<Lenient>()?.text(),
                "status" => status = map.next_value::<Lenient>()?.text(),
                "template" => g.template = map.next_value::<Lenient>()?.boolean().unwrap_or(false),
                "maxcpu" => g.maxcpu = map.next_value::<Lenient>()?.float(),
                "maxmem" => g.maxmem = map.next_value::<Lenient>()?.uint(),
                "maxdisk" => g.maxdisk = map.next_value::<Lenient>()?.uint(),
                "tags" => g.tags = map.next_value::<Lenient>()?.text(),
                "pool" => g.pool = map.next_value::<Lenient>()?.text(),
                "config" => config = map.next_value::<ConfigObject>()?.0,
                "config_read" => config_read = map.next_value::<Lenient>()?.boolean(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // `id` ("qemu/100") stands in for a missing `type` or `vmid`.
        if let Some(id) = id.as_deref()
            && let Some((t, n)) = id.split_once('/')
        {
            if kind.is_none() {
                kind = parse_kind(t);
            }
            if vmid.is_none() {
                vmid = n.trim().parse().ok();
            }
        }
        g.vmid = vmid.ok_or_else(|| de::Error::missing_field("vmid"))?;
        g.kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        g.status = status.unwrap_or_else(|| "unknown".to_owned());
        g.config_read = config_read.unwrap_or(config.is_some());
        if g.config_read {
            g.config = config.unwrap_or_default();
        }
        Ok(g)
    }
}

fn parse_kind(t: &str) -> Option<GuestKind> {
    match t.trim() {
        "qemu" => Some(GuestKind::Qemu),
        "lxc" => Some(GuestKind::Lxc),
        _ => None,
    }
}

/// A map key that may be borrowed or owned (escaped keys).
struct KeyStr(String);

impl<'de> Deserialize<'de> for KeyStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyStr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyStr, E> {
                Ok(KeyStr(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<KeyStr, E> {
                Ok(KeyStr(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON scalar, read leniently (Proxmox's Perl-shaped values). Objects and arrays are kept
/// as JSON text.
#[derive(Debug)]
enum Lenient {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    Json(String),
}

impl Lenient {
    /// Text form: numbers in decimal, booleans as Perl's 1/0, null as None.
    fn text(self) -> Option<String> {
        match self {
            Lenient::Null => None,
            Lenient::Bool(b) => Some(if b { "1" } else { "0" }.to_owned()),
            Lenient::U64(n) => Some(n.to_string()),
            Lenient::I64(n) => Some(n.to_string()),
            Lenient::F64(f) => Some(format_f64(f)),
            Lenient::Str(s) | Lenient::Json(s) => Some(s),
        }
    }
    fn float(&self) -> Option<f64> {
        match self {
            Lenient::U64(n) => Some(*n as f64),
            Lenient::I64(n) => Some(*n as f64),
            Lenient::F64(f) if f.is_finite() => Some(*f),
            Lenient::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }
    fn uint(&self) -> Option<u64> {
        match self {
            Lenient::U64(n) => Some(*n),
            Lenient::I64(n) => u64::try_from(*n).ok(),
            Lenient::F64(f) if f.is_finite() && *f >= 0.0 => Some(*f as u64),
            Lenient::Str(s) => {
                let s = s.trim();
                s.parse::<u64>().ok().or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f as u64)
                })
            }
            _ => None,
        }
    }
    fn boolean(&self) -> Option<bool> {
        match self {
            Lenient::Bool(b) => Some(*b),
            Lenient::U64(n) => Some(*n != 0),
            Lenient::I64(n) => Some(*n != 0),
            Lenient::F64(f) => Some(*f != 0.0),
            Lenient::Str(s) => parse_bool(s),
            _ => None,
        }
    }
}

/// Perl/Proxmox booleans: `1|on|yes|true` and `0|off|no|false`, case-insensitive.
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    for t in ["1", "on", "yes", "true"] {
        if s.eq_ignore_ascii_case(t) {
            return Some(true);
        }
    }
    for f in ["0", "off", "no", "false"] {
        if s.eq_ignore_ascii_case(f) {
            return Some(false);
        }
    }
    None
}

/// Prints a float the way Proxmox/JSON readers expect: whole numbers without a fraction.
/// The text is always JSON that reads back: from 1e15 on, exponent form (`{f}` would print
/// up to 309 digits, which serde_json refuses as out of range near `f64::MAX`); NaN and
/// infinities, which have no JSON form, print as `null` (as serde_json does).
pub fn format_f64(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else if f.abs() < 1e15 {
        format!("{f}")
    } else {
        serde_json::Number::from_f64(f).map_or_else(|| "null".to_owned(), |n| n.to_string())
    }
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor)
    }
}

struct LenientVisitor;

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Lenient;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lenient, E> {
        Ok(Lenient::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
        Ok(Lenient::U64(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
        Ok(Lenient::I64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
        Ok(Lenient::F64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
        Ok(Lenient::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Lenient, E> {
        Ok(Lenient::Str(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
        Ok(Lenient::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
        Ok(Lenient::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Lenient, D::Error> {
        d.deserialize_any(LenientVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Lenient, A::Error> {
        let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Lenient::Json(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lenient, A::Error> {
        let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Lenient::Json(v.to_string()))
    }
}

/// A config in the WIT's form: one JSON object text, values as JSON strings, in config order.
pub fn config_to_json(config: &[(String, String)]) -> String {
    let len: usize = config.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
    let mut out = String::with_capacity(len + 2);
    write_config_json(
        &mut out,
        config.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    out
}

/// [`config_to_json`] of borrowed properties, appended to `out`.
pub fn write_config_json<'a>(
    out: &mut String,
    config: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    out.push('{');
    for (i, (k, v)) in config.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, k);
        out.push(':');
        push_json_string(out, v);
    }
    out.push('}');
}

/// Parses a config in the WIT's form (or a raw Proxmox config object, numbers and all) into
/// its properties in order; `null` is an empty config.
pub fn config_from_json(text: &str) -> Result<Vec<(String, String)>, serde_json::Error> {
    serde_json::from_str::<ConfigObject>(text).map(|c| c.0.unwrap_or_default())
}

/// The raw config object (`null` = not read), in document order, values as text.
struct ConfigObject(Option<Vec<(String, String)>>);

impl<'de> Deserialize<'de> for ConfigObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConfigObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a config object or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<ConfigObject, E> {
                Ok(ConfigObject(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ConfigObject, E> {
                Ok(ConfigObject(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ConfigObject, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigObject, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(24));
                while let Some(k) = map.next_key::<KeyStr>()? {
                    // A null value means "not set": leave the key out.
                    if let Some(v) = map.next_value::<Lenient>()?.text() {
                        out.push((k.0, v));
                    }
                }
                Ok(ConfigObject(Some(out)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ConfigObject, A::Error> {
                // Also accept the WIT shape: a list of [key, value] pairs.
                let mut out = Vec::new();
                while let Some((k, v)) = seq.next_element::<(KeyStr, Lenient)>()? {
                    if let Some(v) = v.text() {
                        out.push((k.0, v));
                    }
                }
                Ok(ConfigObject(Some(out)))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// VM (comparable shape)
// ---------------------------------------------------------------------------------------------

/// A NetBox VM in comparable form (desired or current). Field names follow NetBox's API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub name: Field<String>,
    /// `active`, `offline`, `planned`, `staged`, `failed`, `decommissioning`, `paused`.
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub status: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub site: Field<String>,
    /// The node's device, by name.
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub device: Field<String>,
    /// Device role slug (NetBox below 4.6).
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub role: Field<String>,
    /// `virtual_machine_type` slug (NetBox 4.6 and later).
    #[serde(
        default,
        skip_serializing_if = "Field::is_keep",
        rename = "virtual_machine_type"
    )]
    pub vm_type: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub platform: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub tenant: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub vcpus: Field<f64>,
    /// MB (Proxmox MiB map 1:1).
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub memory: Field<u64>,
    /// MB, the sum of the guest's disks.
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub disk: Field<u64>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub description: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub comments: Field<String>,
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub serial: Field<String>,
    /// `on`, `off`, `laststate` (NetBox 4.5+).
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub start_on_boot: Field<String>,
    /// Tag slugs.
    #[serde(default, skip_serializing_if = "Field::is_keep")]
    pub tags: Field<Vec<String>>,
    /// Custom fields by name; a name that is absent is `Keep`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "custom_field_map"
    )]
    pub custom_fields: Vec<(String, Field<JsonText>)>,
}

impl Vm {
    /// The custom field `name`, `Keep` when absent.
    pub fn custom_field(&self, name: &str) -> Option<&Field<JsonText>> {
        self.custom_fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f)
    }
}

/// Custom fields as a JSON object: `null` = Clear, value = Set; `Keep` entries are left out.
mod custom_field_map {
    use super::*;

    pub fn serialize<S: Serializer>(
        v: &[(String, Field<JsonText>)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, f) in v {
            match f {
                Field::Keep => {}
                Field::Clear => m.serialize_entry(k, &())?,
                Field::Set(j) => m.serialize_entry(k, j)?,
            }
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, Field<JsonText>)>, D::Error> {
        let m = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, v)| {
                let f = if v.is_null() {
                    Field::Clear
                } else {
                    Field::Set(JsonText::from_value(&v))
                };
                (k, f)
            })
            .collect())
    }
}

/// Name -> JSON text pairs as a JSON object.
mod json_pairs {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[(String, JsonText)], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for (k, j) in v {
            m.serialize_entry(k, j)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, JsonText)>, D::Error> {
        let m = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)?;
        Ok(m.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, JsonText::from_value(&v)))
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Objects, policies, context
// ---------------------------------------------------------------------------------------------

/// A referenced NetBox object the host should create when it is missing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// `platform`, `tag`, `role`, `vm-type`, `tenant`, `site`.
    pub kind: String,
    /// Slug (or name for objects without one).
    pub key: String,
    /// Display name.
    pub name: String,
    /// Further attributes of the create body, a JSON object.
    #[serde(default = "empty_object")]
    pub attrs: JsonText,
}

fn empty_object() -> JsonText {
    JsonText("{}".to_owned())
}

/// A NetBox object the host knows, with its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownObject {
    pub kind: String,
    pub key: String,
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub name: String,
}

/// Who decides a field once the VM exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Proxmox wins: a difference is changed back.
    Owned,
    /// Set union (tags): managed values added and removed, the operator's stay.
    Merge,
    /// Set on create, then the operator's.
    Seed,
    /// Never written.
    Ignore,
}

/// The ownership of one field (`memory`, `tags`, `custom_fields.proxmox_node`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldPolicy {
    pub field: String,
    pub ownership: Ownership,
}

/// Applies `overrides` on top of `defaults` (same field: the override wins; new fields appended).
pub fn merge_policies(defaults: Vec<FieldPolicy>, overrides: &[FieldPolicy]) -> Vec<FieldPolicy> {
    let mut out = defaults;
    for o in overrides {
        match out.iter_mut().find(|p| p.field == o.field) {
            Some(p) => p.ownership = o.ownership,
            None => out.push(o.clone()),
        }
    }
    out
}

/// What the host passes to every call.
///
/// Friendly JSON: `{"netbox_version":"4.7.3","known":[{kind,key,id,name}],
/// "policies":{"platform":"owned"},"settings":{"template_status":"planned"}}`, every key optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default = "default_netbox_version")]
    pub netbox_version: String,
    #[serde(default)]
    pub known: Vec<KnownObject>,
    #[serde(default, with = "policy_map")]
    pub policies: Vec<FieldPolicy>,
    #[serde(default, with = "json_pairs")]
    pub settings: Vec<(String, JsonText)>,
}

fn default_netbox_version() -> String {
    DEFAULT_NETBOX_VERSION.to_owned()
}

impl Default for Context {
    fn default() -> Self {
        Context {
            netbox_version: default_netbox_version(),
            known: Vec::new(),
            policies: Vec::new(),
            settings: Vec::new(),
        }
    }
}

impl Context {
    /// The setting `name`, as JSON text.
    pub fn setting(&self, name: &str) -> Option<&JsonText> {
        self.settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
    /// The ownership the context gives `field`, if listed.
    pub fn policy(&self, field: &str) -> Option<Ownership> {
        self.policies
            .iter()
            .find(|p| p.field == field)
            .map(|p| p.ownership)
    }
}

/// Policies as `{"field": "ownership"}` (a list of `{field, ownership}` is accepted too).
mod policy_map {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[FieldPolicy], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for p in v {
            m.serialize_entry(&p.field, &p.ownership)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FieldPolicy>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<FieldPolicy>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of field -> ownership, or a list of {field, ownership}")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((field, ownership)) = map.next_entry::<String, Ownership>()? {
                    out.push(FieldPolicy { field, ownership });
                }
                Ok(out)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<FieldPolicy>()? {
                    out.push(p);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// NetBox record
// ---------------------------------------------------------------------------------------------

/// A NetBox VM record as read, nested objects reduced to keys.
///
/// Deserializes leniently from the raw NetBox JSON (GET): nested `{id,url,display,name,slug}`
/// -> slug, else name; `status`/`start_on_boot` `{value,label}` -> value; `vcpus` float or
/// decimal string; tags -> slugs; `custom_fields` -> name -> JSON text; absent keys allowed
/// (`fields=` trimming). Plain keys (`"site":"dc1"`) are accepted too, which is also how it
/// serializes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetboxVm {
    pub id: u64,
    pub name: String,
    pub status: String,
    /// NetBox cluster name.
    pub cluster: Option<String>,
    pub site: Option<String>,
    pub device: Option<String>,
    pub role: Option<String>,
    pub vm_type: Option<String>,
    pub platform: Option<String>,
    pub tenant: Option<String>,
    pub vcpus: Option<f64>,
    pub memory: Option<u64>,
    pub disk: Option<u64>,
    pub description: String,
    pub comments: String,
    pub serial: String,
    pub start_on_boot: Option<String>,
    /// Tag slugs.
    pub tags: Vec<String>,
    /// Every custom field, name -> JSON value text (`null` when unset).
    pub custom_fields: Vec<(String, JsonText)>,
    /// `last_updated` (not in the WIT; the host uses it for stale-plan checks).
    pub last_updated: Option<String>,
}

impl NetboxVm {
    /// The custom field `name` as JSON text.
    pub fn custom_field(&self, name: &str) -> Option<&JsonText> {
        self.custom_fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

impl Serialize for NetboxVm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Cf<'a>(&'a [(String, JsonText)]);
        impl Serialize for Cf<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                json_pairs::serialize(self.0, s)
            }
        }
        let mut st = s.serialize_struct("NetboxVm", 20)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("cluster", &self.cluster)?;
        st.serialize_field("site", &self.site)?;
        st.serialize_field("device", &self.device)?;
        st.serialize_field("role", &self.role)?;
        st.serialize_field("virtual_machine_type", &self.vm_type)?;
        st.serialize_field("platform", &self.platform)?;
        st.serialize_field("tenant", &self.tenant)?;
        st.serialize_field("vcpus", &self.vcpus)?;
        st.serialize_field("memory", &self.memory)?;
        st.serialize_field("disk", &self.disk)?;
        st.serialize_field("description", &self.description)?;
        st.serialize_field("comments", &self.comments)?;
        st.serialize_field("serial", &self.serial)?;
        st.serialize_field("start_on_boot", &self.start_on_boot)?;
        st.serialize_field("tags", &self.tags)?;
        st.serialize_field("custom_fields", &Cf(&self.custom_fields))?;
        st.serialize_field("last_updated", &self.last_updated)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for NetboxVm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(NetboxVmVisitor)
    }
}

struct NetboxVmVisitor;

impl<'de> Visitor<'de> for NetboxVmVisitor {
    type Value = NetboxVm;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a NetBox virtual machine (object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NetboxVm, A::Error> {
        let mut vm = NetboxVm::default();
        let mut id = None;
        while let Some(key) = map.next_key::<KeyStr>()? {
            match key.0.as_str() {
                "id" => id = map.next_value::<Lenient>()?.uint(),
                "name" => vm.name = map.next_value::<Lenient>()?.text().unwrap_or_default(),
                "status" => vm.status = map.next_value::<ChoiceValue>()?.0.unwrap_or_default(),
                "cluster" => vm.cluster = map.next_value::<NestedKey>()?.0,
                "site" => vm.site = map.next_value::<NestedKey>()?.0,
                "device" => vm.device = map.next_value::<NestedKey>()?.0,
                "role" => vm.role = map.next_value::<NestedKey>()?.0,
                "virtual_machine_type" | "vm_type" => vm.vm_type = map.next_value::<NestedKey>()?.0,
                "platform" => vm.platform = map.next_value::<NestedKey>()?.0,
                "tenant" => vm.tenant = map.next_value::<NestedKey>()?.0,
                "vcpus" => vm.vcpus = map.next_value::<Lenient>()?.float(),
                "memory" => vm.memory = map.next_value::<Lenient>()?.uint(),
                "disk" => vm.disk = map.next_value::<Lenient>()?.uint(),
                "description" => {
                    vm.description = map.next_value::<Lenient>()?.text().unwrap_or_default()
                }
                "comments" => vm.comments = map.next_value::<Lenient>()?.text().unwrap_or_default(),
                "serial" => vm.serial = map.next_value::<Lenient>()?.text().unwrap_or_default(),
                "start_on_boot" => vm.start_on_boot = map.next_value::<ChoiceValue>()?.0,
                "tags" => vm.tags = map.next_value::<TagList>()?.0,
                "custom_fields" => vm.custom_fields = map.next_value::<CfPairs>()?.0,
                "last_updated" => vm.last_updated = map.next_value::<Lenient>()?.text(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        vm.id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        Ok(vm)
    }
}

/// `custom_fields` as name -> JSON text pairs.
struct CfPairs(Vec<(String, JsonText)>);

impl<'de> Deserialize<'de> for CfPairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        json_pairs::deserialize(d).map(CfPairs)
    }
}

/// A nested object reduced to its key (slug, else name); a plain string is already a key.
struct NestedKey(Option<String>);

impl<'de> Deserialize<'de> for NestedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NestedKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a nested object with slug or name, a key string, or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<NestedKey, E> {
                Ok(NestedKey(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NestedKey, E> {
                Ok(NestedKey(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NestedKey, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NestedKey, E> {
                Ok(NestedKey(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<NestedKey, E> {
                Ok(NestedKey(Some(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NestedKey, A::Error> {
                let (mut slug, mut name) = (None, None);
                while let Some(k) = map.next_key::<KeyStr>()? {
                    match k.0.as_str() {
                        "slug" => slug = map.next_value::<Lenient>()?.text(),
                        "name" => name = map.next_value::<Lenient>()?.text(),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(NestedKey(slug.or(name)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A NetBox choice: `{value,label}` -> value, or a plain string.
struct ChoiceValue(Option<String>);

impl<'de> Deserialize<'de> for ChoiceValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChoiceValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a choice {value,label}, a string, or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<ChoiceValue, E> {
                Ok(ChoiceValue(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ChoiceValue, E> {
                Ok(ChoiceValue(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ChoiceValue, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ChoiceValue, E> {
                Ok(ChoiceValue(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ChoiceValue, E> {
                Ok(ChoiceValue(Some(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChoiceValue, A::Error> {
                let mut value = None;
                while let Some(k) = map.next_key::<KeyStr>()? {
                    if k.0 == "value" {
                        value = map.next_value::<Lenient>()?.text();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ChoiceValue(value))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of nested tags (or slugs) -> slugs.
struct TagList(Vec<String>);

impl<'de> Deserialize<'de> for TagList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of tags")
            }
            fn visit_none<E: de::Error>(self) -> Result<TagList, E> {
                Ok(TagList(Vec::new()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TagList, E> {
                Ok(TagList(Vec::new()))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<TagList, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TagList, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(t) = seq.next_element::<NestedKey>()? {
                    if let Some(t) = t.0 {
                        out.push(t);
                    }
                }
                Ok(TagList(out))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// What the rules want for one guest, plus the objects to create first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredVm {
    pub vm: Vm,
    #[serde(default)]
    pub needs: Vec<ObjectSpec>,
}

/// The desired state for one guest.
///
/// Friendly JSON: `{"vm": {...}, "needs": [...]}` or `{"skip": "reason"}`.
// Mirrors the WIT variant; the `Vm` case is the common one, so boxing it would only add an
// allocation per VM.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Desired {
    /// Reconcile to this VM.
    Vm(DesiredVm),
    /// Leave the guest alone, with the reason.
    Skip(String),
}

impl Serialize for Desired {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Desired::Vm(d) => d.serialize(s),
            Desired::Skip(r) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("skip", r)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Desired {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            skip: Option<String>,
            #[serde(default)]
            vm: Option<Vm>,
            #[serde(default)]
            needs: Vec<ObjectSpec>,
        }
        let raw = Raw::deserialize(d)?;
        match (raw.skip, raw.vm) {
            (Some(reason), _) => Ok(Desired::Skip(reason)),
            (None, Some(vm)) => Ok(Desired::Vm(DesiredVm {
                vm,
                needs: raw.needs,
            })),
            (None, None) => Err(de::Error::custom("expected `vm` or `skip`")),
        }
    }
}

/// One pair to compare; `current` is `None` when the VM does not exist yet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiffInput {
    pub desired: Vm,
    #[serde(default)]
    pub current: Option<Vm>,
}

/// One guest for [`RuleSet::reconcile`], with the NetBox VM the host matched to it, the
/// guest's runtime network view and the VM's current children (WIT 0.3).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReconcileInput {
    pub guest: Guest,
    pub current: Option<NetboxVm>,
    /// WIT `pve-guest.network`: the agent's or the LXC interfaces' answer, or why there is
    /// none. The default (`unknown`, `not-asked`) keeps every child that would come from it.
    pub network: crate::children::NetworkSource,
    /// WIT `netbox-vm.children`: the current children as the host renders them. `None` means
    /// they were not read (WIT `children-read = false`, `children = "{}"`): every child
    /// collection is then `keep`. Ignored when `current` is `None` (nothing exists yet).
    pub children: Option<JsonText>,
}

/// One input of [`RuleSet::reconcile_json`]: a guest whose config is still the WIT's JSON text
/// (`guest.config` is empty), as a component receives it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonReconcileInput {
    pub guest: Guest,
    /// The config as one JSON object text (the WIT's `pve-guest.config`).
    pub config: String,
    pub current: Option<NetboxVm>,
    /// As [`ReconcileInput::network`].
    pub network: crate::children::NetworkSource,
    /// As [`ReconcileInput::children`].
    pub children: Option<JsonText>,
}

impl ReconcileInput {
    /// The current children as WIT 0.3 passes them: the JSON text and `children-read`.
    pub fn children_wit(&self) -> (&str, bool) {
        children_wit(self.children.as_ref())
    }
}

impl JsonReconcileInput {
    /// As [`ReconcileInput::children_wit`].
    pub fn children_wit(&self) -> (&str, bool) {
        children_wit(self.children.as_ref())
    }
}

/// `None` (not read) is `("{}", false)`.
pub fn children_wit(children: Option<&JsonText>) -> (&str, bool) {
    match children {
        Some(j) => (j.as_str(), true),
        None => ("{}", false),
    }
}

/// Parses `text` into `guest.config`, or the guest's `bad-config` error (reported under
/// normalize-desired, the step that reads the config, by `reconcile` too so the two agree).
pub fn parse_guest_config(guest: &mut Guest, text: &str) -> Result<(), RuleError> {
    guest.config = config_from_json(text).map_err(|e| {
        RuleError::new(
            "bad-config",
            format!(
                "the config of {} is not a JSON object of texts: {e} (guest-default, normalize-desired)",
                guest.scope()
            ),
        )
    })?;
    Ok(())
}

/// What [`RuleSet::reconcile`] decided for one guest.
#[derive(Clone, Debug, PartialEq)]
pub enum Reconciled {
    Vm(ReconciledVm),
    /// Leave the guest alone, with the reason.
    Skip(String),
}

/// The desired VM reduced to what the host needs: its name, its missing objects, its changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReconciledVm {
    /// The desired name when the rules set one.
    pub name: Option<String>,
    pub needs: Vec<ObjectSpec>,
    pub changes: Vec<FieldChange>,
    /// The child changes (WIT 0.3 `reconciled-vm.children`); always empty from a 0.1 or 0.2
    /// module, whose children are `keep`.
    pub children: Vec<crate::children::ChildChange>,
}

/// One field to write. `old`/`new` are JSON text, shown as plain JSON values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: JsonText,
    pub new: JsonText,
}

/// A per-VM problem the rules found; it fails that VM only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleError {
    /// Short machine-readable code, e.g. `bad-disk-size`.
    pub code: String,
    pub message: String,
}

impl RuleError {
    /// A rule error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        RuleError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RuleError {}

/// What a module says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub name: String,
    pub version: String,
    pub wit_version: String,
}

// ---------------------------------------------------------------------------------------------
// The rule set trait
// ---------------------------------------------------------------------------------------------

/// A rule module in plain Rust. `crate::export_rules!` turns an implementation into a WASM
/// component; the host and tests call it natively.
pub trait RuleSet {
    /// Name, version and WIT version.
    fn info() -> ModuleInfo;
    /// Default ownership of each field (fields not listed are `owned`).
    fn default_policies() -> Vec<FieldPolicy>;
    /// Guests to desired VMs, one result per guest, in order.
    fn normalize_desired(ctx: &Context, guests: Vec<Guest>) -> Vec<Result<Desired, RuleError>>;
    /// NetBox records to the comparable shape, one result per record, in order.
    fn normalize_current(ctx: &Context, records: Vec<NetboxVm>) -> Vec<Result<Vm, RuleError>>;
    /// Field changes per pair honouring `ctx.policies`, one result per pair, in order.
    fn diff(ctx: &Context, pairs: Vec<DiffInput>) -> Vec<Result<Vec<FieldChange>, RuleError>>;

    /// The three steps for each guest and its current record, one result per input, in order.
    /// The default runs them as three batches; a rule set may do it in one pass.
    fn reconcile(ctx: &Context, items: Vec<ReconcileInput>) -> Vec<Result<Reconciled, RuleError>> {
        reconcile_in_three_steps::<Self>(ctx, items)
    }

    /// [`Self::reconcile`] for guests whose config is still JSON text (what the component
    /// receives). The default parses each config (a bad one fails its own guest, `bad-config`)
    /// and calls `reconcile`; a rule set may read the text without building the pairs, as long
    /// as it answers the same.
    fn reconcile_json(
        ctx: &Context,
        items: Vec<JsonReconcileInput>,
    ) -> Vec<Result<Reconciled, RuleError>> {
        reconcile_json_by_parsing::<Self>(ctx, items)
    }

    /// A guest's desired children (WIT 0.3 `vm.children` of `normalize-desired`). The default
    /// is all `keep`: a rule set that does not model children leaves NetBox's alone.
    fn normalize_desired_children(
        _ctx: &Context,
        _guest: &Guest,
        _network: &crate::children::NetworkSource,
    ) -> Result<crate::children::VmChildren, RuleError> {
        Ok(crate::children::VmChildren::default())
    }

    /// A VM's current children from the host's JSON (WIT 0.3 `netbox-vm.children`).
    fn normalize_current_children(
        _ctx: &Context,
        _json: &str,
        _read: bool,
    ) -> Result<crate::children::VmChildren, RuleError> {
        Ok(crate::children::VmChildren::default())
    }

    /// The child changes of a pair (`current` absent: the VM is created), adjusting the VM's
    /// field changes `vm_changes` where children decide them (`disk`, primary IPs).
    fn diff_children(
        _ctx: &Context,
        _desired: &crate::children::VmChildren,
        _current: Option<&crate::children::VmChildren>,
        _current_disk: Option<u64>,
        _vm_changes: &mut Vec<FieldChange>,
    ) -> Result<Vec<crate::children::ChildChange>, RuleError> {
        Ok(Vec::new())
    }
}

/// [`RuleSet::reconcile_json`] by parsing each config and calling [`RuleSet::reconcile`]: a
/// config that does not parse fails its own guest only, in place.
pub fn reconcile_json_by_parsing<R: RuleSet + ?Sized>(
    ctx: &Context,
    items: Vec<JsonReconcileInput>,
) -> Vec<Result<Reconciled, RuleError>> {
    let parse = |i: JsonReconcileInput| {
        let mut guest = i.guest;
        parse_guest_config(&mut guest, &i.config)?;
        Ok(ReconcileInput {
            guest,
            current: i.current,
            network: i.network,
            children: i.children,
        })
    };
    with_failed_in_place(items, parse, |good| R::reconcile(ctx, good))
}

/// Converts `inputs`, hands those that convert to `rules` (one result each, in order), and puts
/// each conversion error back at its input's position: one result per input, in order.
pub fn with_failed_in_place<I, T, O, E>(
    inputs: Vec<I>,
    convert: impl Fn(I) -> Result<T, E>,
    rules: impl FnOnce(Vec<T>) -> Vec<Result<O, E>>,
) -> Vec<Result<O, E>> {
    let total = inputs.len();
    let mut failed = Vec::new();
    let mut good = Vec::with_capacity(total);
    for (i, input) in inputs.into_iter().enumerate() {
        match convert(input) {
            Ok(t) => good.push(t),
            Err(e) => failed.push((i, e)),
        }
    }
    if failed.is_empty() {
        return rules(good);
    }
    // Merged in one pass (ascending positions); results beyond a short answer keep their order.
    let mut results = rules(good).into_iter();
    let mut failed = failed.into_iter().peekable();
    let mut out = Vec::with_capacity(total);
    loop {
        if let Some((_, e)) = failed.next_if(|(i, _)| *i == out.len()) {
            out.push(Err(e));
        } else if let Some(r) = results.next() {
            out.push(r);
        } else {
            break;
        }
    }
    out.extend(failed.map(|(_, e)| Err(e)));
    out
}

/// Per input of [`reconcile_with`]: its diff input's position with the desired name and needs,
/// or the result decided before the diff.
type Slot = Result<(usize, Option<String>, Vec<ObjectSpec>), Result<Reconciled, RuleError>>;

/// [`RuleSet::reconcile`] as `normalize-desired`, `normalize-current` and `diff` batches: what
/// a rule set that does not fuse the steps gets, and what a fused one must agree with.
///
/// The children's steps run with the VM's, as a WIT 0.3 module's three steps do: a VM's
/// normalize-desired fails with its children's error ([`RuleSet::normalize_desired_children`]),
/// normalize-current with its current children's ([`RuleSet::normalize_current_children`]),
/// and the diff adds the child changes ([`RuleSet::diff_children`]). A skip decides before
/// any children step.
pub fn reconcile_in_three_steps<R: RuleSet + ?Sized>(
    ctx: &Context,
    items: Vec<ReconcileInput>,
) -> Vec<Result<Reconciled, RuleError>> {
    use crate::children::{NetworkSource, VmChildren};
    // What the children steps read, taken before the VM steps take the guests and records.
    let networks: Vec<NetworkSource> = items.iter().map(|i| i.network.clone()).collect();
    let texts: Vec<Option<JsonText>> = items
        .iter()
        .filter(|i| i.current.is_some())
        .map(|i| i.children.clone())
        .collect();
    let currents: Vec<Option<Option<u64>>> = items
        .iter()
        .map(|i| i.current.as_ref().map(|c| c.disk))
        .collect();
    // Per guest, and per record in order: the children of a step that succeeded.
    let mut desired_kids: Vec<Option<VmChildren>> = Vec::new();
    let mut current_kids: Vec<Option<VmChildren>> = Vec::new();
    let Ok(results) = reconcile_with::<std::convert::Infallible>(
        items,
        |guests| {
            let kids: Vec<_> = guests
                .iter()
                .zip(&networks)
                .map(|(g, n)| R::normalize_desired_children(ctx, g, n))
                .collect();
            let vms = R::normalize_desired(ctx, guests);
            Ok(vms
                .into_iter()
                .zip(kids)
                .map(|(vm, kids)| {
                    let (vm, kids) = match (vm, kids) {
                        (Ok(Desired::Vm(d)), Ok(k)) => (Ok(Desired::Vm(d)), Some(k)),
                        (Ok(Desired::Vm(_)), Err(e)) => (Err(e), None),
                        (other, _) => (other, None),
                    };
                    desired_kids.push(kids);
                    vm
                })
                .collect())
        },
        |records| {
            let kids: Vec<_> = texts
                .iter()
                .map(|t| {
                    let (json, read) = children_wit(t.as_ref());
                    R::normalize_current_children(ctx, json, read)
                })
                .collect();
            let vms = R::normalize_current(ctx, records);
            Ok(vms
                .into_iter()
                .zip(kids)
                .map(|(vm, kids)| {
                    let (vm, kids) = match (vm, kids) {
                        (Ok(vm), Ok(k)) => (Ok(vm), Some(k)),
                        (Ok(_), Err(e)) => (Err(e), None),
                        (Err(e), _) => (Err(e), None),
                    };
                    current_kids.push(kids);
                    vm
                })
                .collect())
        },
        |pairs| Ok(R::diff(ctx, pairs)),
    );
    let mut record = 0;
    results
        .into_iter()
        .zip(currents)
        .enumerate()
        .map(|(i, (result, current))| {
            let current = current.map(|disk| {
                record += 1;
                (
                    current_kids.get_mut(record - 1).and_then(Option::take),
                    disk,
                )
            });
            let mut vm = match result {
                Ok(Reconciled::Vm(vm)) => vm,
                decided => return decided,
            };
            let missing = || RuleError::new("contract", "a children step returned no result");
            let desired = desired_kids
                .get_mut(i)
                .and_then(Option::take)
                .ok_or_else(missing)?;
            let (current, disk) = match current {
                None => (None, None),
                Some((kids, disk)) => (Some(kids.ok_or_else(missing)?), disk),
            };
            vm.children = R::diff_children(ctx, &desired, current.as_ref(), disk, &mut vm.changes)?;
            Ok(Reconciled::Vm(vm))
        })
        .collect()
}

/// `reconcile` from the three steps given as batch calls that may fail as a whole (a host
/// calling a 0.1 module gets traps and limits as `E`). A step that returns too few results
/// fails the inputs it left without one.
pub fn reconcile_with<E>(
    items: Vec<ReconcileInput>,
    normalize_desired: impl FnOnce(Vec<Guest>) -> Result<Vec<Result<Desired, RuleError>>, E>,
    normalize_current: impl FnOnce(Vec<NetboxVm>) -> Result<Vec<Result<Vm, RuleError>>, E>,
    diff: impl FnOnce(Vec<DiffInput>) -> Result<Vec<Result<Vec<FieldChange>, RuleError>>, E>,
) -> Result<Vec<Result<Reconciled, RuleError>>, E> {
    let too_few =
        |step: &str| RuleError::new("contract", format!("{step} returned too few results"));
    let (guests, currents): (Vec<Guest>, Vec<Option<NetboxVm>>) =
        items.into_iter().map(|i| (i.guest, i.current)).unzip();
    let n = guests.len();
    let mut desired = normalize_desired(guests)?.into_iter();
    let records: Vec<NetboxVm> = currents.iter().flatten().cloned().collect();
    let mut normalized = if records.is_empty() {
        Vec::new().into_iter()
    } else {
        normalize_current(records)?.into_iter()
    };
    let mut slots: Vec<Slot> = Vec::with_capacity(n);
    let mut pairs = Vec::new();
    for current in currents {
        // Every present record was normalized: take its result even when the guest is not
        // diffed. A desired skip or error decides before a current error, as a fused rule set
        // that normalizes the record only for a VM would.
        let current = current.map(|_| {
            normalized
                .next()
                .unwrap_or_else(|| Err(too_few("normalize-current")))
        });
        let d = match desired.next() {
            Some(Ok(Desired::Vm(d))) => d,
            Some(Ok(Desired::Skip(reason))) => {
                slots.push(Err(Ok(Reconciled::Skip(reason))));
                continue;
            }
            Some(Err(e)) => {
                slots.push(Err(Err(e)));
                continue;
            }
            None => {
                slots.push(Err(Err(too_few("normalize-desired"))));
                continue;
            }
        };
        let current = match current.transpose() {
            Ok(current) => current,
            Err(e) => {
                slots.push(Err(Err(e)));
                continue;
            }
        };
        slots.push(Ok((pairs.len(), d.vm.name.as_set().cloned(), d.needs)));
        pairs.push(DiffInput {
            desired: d.vm,
            current,
        });
    }
    let mut diffs: Vec<Option<Result<Vec<FieldChange>, RuleError>>> = if pairs.is_empty() {
        Vec::new()
    } else {
        diff(pairs)?.into_iter().map(Some).collect()
    };
    Ok(slots
        .into_iter()
        .map(|slot| match slot {
            Ok((i, name, needs)) => match diffs.get_mut(i).and_then(Option::take) {
                Some(Ok(changes)) => Ok(Reconciled::Vm(ReconciledVm {
                    name,
                    needs,
                    changes,
                    children: Vec::new(),
                })),
                Some(Err(e)) => Err(e),
                None => Err(too_few("diff")),
            },
            Err(decided) => decided,
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// One rule test case (`fixtures/*.json`); see the crate README for the format.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub description: String,
    /// The guest, raw `/cluster/resources` row + `cluster` + `config`.
    pub guest: Guest,
    /// The raw NetBox record, when the VM exists.
    #[serde(default)]
    pub current: Option<NetboxVm>,
    /// The context; its `policies` are overrides applied on top of the module's defaults.
    #[serde(default)]
    pub context: Context,
    /// The guest's runtime network view (WIT 0.3 `pve-guest.network`); absent = not asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::children::NetworkSource>,
    /// The VM's current children as the host renders them (WIT 0.3 `netbox-vm.children`);
    /// absent while `current` is present = not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<JsonText>,
    pub expect: Expect,
}

/// What a fixture expects. Every part is optional; absent parts are not checked.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The desired VM (friendly), or `{"skip": "<substring of the reason>"}`.
    #[serde(default)]
    pub desired: Option<ExpectedDesired>,
    /// The objects the desired VM needs (compared as a set).
    #[serde(default)]
    pub needs: Option<Vec<ObjectSpec>>,
    /// The field changes of diff(desired, normalize-current(current)), in order.
    #[serde(default)]
    pub changes: Option<Vec<FieldChange>>,
    /// The code of the rule error of the first phase that fails.
    #[serde(default)]
    pub error: Option<String>,
    /// The desired children (friendly), compared whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_children: Option<crate::children::VmChildren>,
    /// The child changes, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<crate::children::ChildChange>>,
}

/// The expected desired state of a fixture.
#[allow(clippy::large_enum_variant)] // Test data; size does not matter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExpectedDesired {
    /// `{"skip": "..."}`: the reason must contain this text.
    Skip(SkipExpect),
    /// The friendly desired VM.
    Vm(Vm),
}

/// `{"skip": "..."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipExpect {
    pub skip: String,
}

/// What a fixture run produced, phase by phase (the host's WASM runner fills the same shape).
#[derive(Clone, Debug, Default)]
pub struct FixtureOutcome {
    pub desired: Option<Result<Desired, RuleError>>,
    pub current: Option<Result<Vm, RuleError>>,
    pub changes: Option<Result<Vec<FieldChange>, RuleError>>,
    /// The children steps, for a fixture that takes part in children (`Fixture::has_children`).
    pub children: Option<ChildrenOutcome>,
}

/// What the children steps of a fixture produced, step by step.
#[derive(Clone, Debug, Default)]
pub struct ChildrenOutcome {
    pub desired: Option<Result<crate::children::VmChildren, RuleError>>,
    pub current: Option<Result<crate::children::VmChildren, RuleError>>,
    pub changes: Option<Result<Vec<crate::children::ChildChange>, RuleError>>,
}

impl Fixture {
    /// Reads a fixture file's text.
    pub fn from_json(text: &str) -> Result<Fixture, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The context to call with: the module's defaults with the fixture's policy overrides.
    pub fn effective_context(&self, defaults: Vec<FieldPolicy>) -> Context {
        let mut ctx = self.context.clone();
        ctx.policies = merge_policies(defaults, &self.context.policies);
        ctx
    }

    /// Runs the fixture natively: normalize-desired, then (when the VM is not skipped and the
    /// fixture exists) normalize-current, then diff. A phase that errors stops the run.
    pub fn run<R: RuleSet>(&self) -> FixtureOutcome {
        let ctx = self.effective_context(R::default_policies());
        let mut out = FixtureOutcome::default();
        let desired = first(R::normalize_desired(&ctx, vec![self.guest.clone()]));
        let desired_vm = match &desired {
            Ok(Desired::Vm(d)) => Some(d.vm.clone()),
            _ => None,
        };
        out.desired = Some(desired);
        let Some(desired_vm) = desired_vm else {
            return out;
        };
        let current = match &self.current {
            None => None,
            Some(rec) => {
                let c = first(R::normalize_current(&ctx, vec![rec.clone()]));
                let vm = c.as_ref().ok().cloned();
                out.current = Some(c);
                match vm {
                    Some(vm) => Some(vm),
                    None => return out,
                }
            }
        };
        out.changes = Some(first(R::diff(
            &ctx,
            vec![DiffInput {
                desired: desired_vm,
                current,
            }],
        )));
        // Every fixture runs the children steps, as a WIT 0.3 module's steps do: they may
        // adjust the VM's changes (a create's primary IP from a static config address).
        out.children = Some(self.run_children::<R>(&ctx, &mut out));
        out
    }

    /// True when the fixture is about children (WIT 0.3): it has `network`, `children`,
    /// `expect.children` or `expect.desired_children`. The others are about the VM's fields
    /// (the children steps run for them too, without a network view or NetBox children).
    pub fn has_children(&self) -> bool {
        self.network.is_some()
            || self.children.is_some()
            || self.expect.children.is_some()
            || self.expect.desired_children.is_some()
    }

    /// The children steps after the VM's: desired children, current children (when the VM
    /// exists), their diff, which also adjusts the VM's changes in `out`.
    fn run_children<R: RuleSet>(&self, ctx: &Context, out: &mut FixtureOutcome) -> ChildrenOutcome {
        let mut co = ChildrenOutcome::default();
        let network = self.network.clone().unwrap_or_default();
        let desired = R::normalize_desired_children(ctx, &self.guest, &network);
        let d = desired.as_ref().ok().cloned();
        co.desired = Some(desired);
        let Some(d) = d else { return co };
        let current = match &self.current {
            None => None,
            Some(_) => {
                let (json, read) = match &self.children {
                    Some(j) => (j.as_str(), true),
                    None => ("{}", false),
                };
                let c = R::normalize_current_children(ctx, json, read);
                let cur = c.as_ref().ok().cloned();
                co.current = Some(c);
                match cur {
                    Some(c) => Some(c),
                    None => return co,
                }
            }
        };
        let Some(Ok(vm_changes)) = out.changes.as_mut() else {
            return co;
        };
        let current_disk = self.current.as_ref().and_then(|c| c.disk);
        co.changes = Some(R::diff_children(
            ctx,
            &d,
            current.as_ref(),
            current_disk,
            vm_changes,
        ));
        co
    }

    /// Checks an outcome against `expect`; the error lists every mismatch readably.
    pub fn check(&self, out: &FixtureOutcome) -> Result<(), String> {
        let mut problems: Vec<String> = Vec::new();
        let co = out.children.as_ref();
        let first_error = [
            out.desired.as_ref().and_then(|r| r.as_ref().err()),
            out.current.as_ref().and_then(|r| r.as_ref().err()),
            out.changes.as_ref().and_then(|r| r.as_ref().err()),
            co.and_then(|c| c.desired.as_ref())
                .and_then(|r| r.as_ref().err()),
            co.and_then(|c| c.current.as_ref())
                .and_then(|r| r.as_ref().err()),
            co.and_then(|c| c.changes.as_ref())
                .and_then(|r| r.as_ref().err()),
        ]
        .into_iter()
        .flatten()
        .next();
        match (&self.expect.error, first_error) {
            (Some(code), Some(e)) if &e.code == code => {}
            (Some(code), Some(e)) => {
                problems.push(format!("error: expected code {code:?}, got {e}"))
            }
            (Some(code), None) => problems.push(format!("error: expected code {code:?}, got none")),
            (None, Some(e)) => problems.push(format!("unexpected rule error: {e}")),
            (None, None) => {}
        }
        let desired = out.desired.as_ref().and_then(|r| r.as_ref().ok());
        if let Some(exp) = &self.expect.desired {
            match (exp, desired) {
                (ExpectedDesired::Skip(s), Some(Desired::Skip(reason))) => {
                    if !reason.contains(&s.skip) {
                        problems.push(format!(
                            "desired: skip reason {reason:?} does not contain {:?}",
                            s.skip
                        ));
                    }
                }
                (ExpectedDesired::Skip(s), other) => problems.push(format!(
                    "desired: expected skip {:?}, got {}",
                    s.skip,
                    to_json(&other)
                )),
                (ExpectedDesired::Vm(vm), Some(Desired::Vm(d))) => {
                    diff_json("desired", &to_value(vm), &to_value(&d.vm), &mut problems)
                }
                (ExpectedDesired::Vm(vm), other) => problems.push(format!(
                    "desired: expected {}, got {}",
                    to_json(vm),
                    to_json(&other)
                )),
            }
        }
        if let Some(needs) = &self.expect.needs {
            let got: &[ObjectSpec] = match desired {
                Some(Desired::Vm(d)) => &d.needs,
                _ => &[],
            };
            let mut a: Vec<serde_json::Value> = needs.iter().map(to_value).collect();
            let mut b: Vec<serde_json::Value> = got.iter().map(to_value).collect();
            a.sort_by_key(|v| v.to_string());
            b.sort_by_key(|v| v.to_string());
            if a != b {
                problems.push(format!(
                    "needs:\n  expected {}\n  got      {}",
                    serde_json::Value::Array(a),
                    serde_json::Value::Array(b)
                ));
            }
        }
        if let Some(changes) = &self.expect.changes {
            let got: &[FieldChange] = match &out.changes {
                Some(Ok(c)) => c,
                _ => &[],
            };
            let same = changes.len() == got.len()
                && changes.iter().zip(got).all(|(e, g)| {
                    e.field == g.field
                        && json_text_eq(&e.old.0, &g.old.0)
                        && json_text_eq(&e.new.0, &g.new.0)
                });
            if !same {
                let show = |c: &[FieldChange]| {
                    c.iter()
                        .map(|c| format!("\n    {}", to_json(c)))
                        .collect::<String>()
                };
                problems.push(format!(
                    "changes:\n  expected:{}\n  got:{}",
                    show(changes),
                    show(got)
                ));
            }
        }
        if let Some(exp) = &self.expect.desired_children {
            let got = co
                .and_then(|c| c.desired.as_ref())
                .and_then(|r| r.as_ref().ok());
            match got {
                Some(g) => diff_json(
                    "desired_children",
                    &to_value(exp),
                    &to_value(g),
                    &mut problems,
                ),
                None => problems.push("desired_children: expected, got none".to_owned()),
            }
        }
        if let Some(exp) = &self.expect.children {
            let got: &[crate::children::ChildChange] = match co.and_then(|c| c.changes.as_ref()) {
                Some(Ok(c)) => c,
                _ => &[],
            };
            let key = |c: &crate::children::ChildChange| {
                let mut v = to_value(c);
                // Field values compared as JSON values, like the VM's.
                if let Some(list) = v.get_mut("changes").and_then(|l| l.as_array_mut()) {
                    for f in list {
                        for k in ["old", "new"] {
                            if let Some(x) = f.get_mut(k) {
                                *x = normalize_numbers(x.take());
                            }
                        }
                    }
                }
                v
            };
            let a: Vec<serde_json::Value> = exp.iter().map(key).collect();
            let b: Vec<serde_json::Value> = got.iter().map(key).collect();
            if a != b {
                let show = |c: &[serde_json::Value]| {
                    c.iter().map(|c| format!("\n    {c}")).collect::<String>()
                };
                problems.push(format!(
                    "children:\n  expected:{}\n  got:{}",
                    show(&a),
                    show(&b)
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

/// Numbers as `f64` so `2` and `2.0` compare equal.
fn normalize_numbers(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Number(n), serde_json::Value::Number),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(normalize_numbers).collect())
        }
        other => other,
    }
}

fn first<T>(v: Vec<Result<T, RuleError>>) -> Result<T, RuleError> {
    v.into_iter().next().unwrap_or_else(|| {
        Err(RuleError::new(
            "no-result",
            "the module returned no result for the single input",
        ))
    })
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Lists the keys of two friendly objects that differ (numbers compared numerically).
fn diff_json(
    what: &str,
    expected: &serde_json::Value,
    got: &serde_json::Value,
    problems: &mut Vec<String>,
) {
    let empty = serde_json::Map::new();
    let e = expected.as_object().unwrap_or(&empty);
    let g = got.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = e.keys().chain(g.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (e.get(k), g.get(k)) {
            (Some(x), Some(y)) if json_value_eq(x, y) => {}
            (x, y) => problems.push(format!(
                "{what}.{k}: expected {}, got {}",
                x.map_or("<absent (keep)>".to_owned(), |v| v.to_string()),
                y.map_or("<absent (keep)>".to_owned(), |v| v.to_string())
            )),
        }
    }
}

/// Deserializes any model type from friendly JSON text.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_text_is_told_as_trim_would() {
        for (text, null) in [
            ("null", true),
            (" null\n", true),
            ("\u{a0}null\u{3000}", true),
            ("nul", false),
            ("nulll", false),
            ("\"null\"", false),
            ("", false),
            (" ", false),
            ("Null", false),
        ] {
            assert_eq!(JsonText::text_is_null(text), null, "{text:?}");
            assert_eq!(
                JsonText::text_is_null(text),
                text.trim() == "null",
                "{text:?}"
            );
        }
    }

    /// The escaping as first written (per `char`), the reference for the byte-wise version.
    fn reference(s: &str) -> String {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    // Found by `tests/hostile_input.rs`: `json_helpers_round_trip` shrunk to `f = NaN` (printed
    // `NaN`, not JSON), `diff_of_arbitrary_pairs_never_panics` to a current vCPUs of
    // `f64::MAX` (printed as 309 digits, which serde_json refuses as out of range). Both ended
    // in a change's `old`/`new`.
    #[test]
    fn floats_always_print_as_json() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(format_f64(f), "null");
        }
        assert_eq!(format_f64(2.0), "2");
        assert_eq!(format_f64(0.5), "0.5");
        assert_eq!(format_f64(1e300), "1e+300");
        for f in [f64::MAX, -f64::MAX, 1e15, 1.5e20, 5e-324, 0.1] {
            let text = format_f64(f);
            let back: f64 = serde_json::from_str(&text).expect("JSON");
            assert_eq!(back, f, "{text}");
            assert_eq!(text.parse::<f64>().ok(), Some(f), "{text}");
        }
    }

    #[test]
    fn escape_finder_stops_at_every_special_byte() {
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes.extend_from_slice("é\u{7f}~ ".as_bytes());
                bytes[at] = special;
                assert_eq!(next_json_special(&bytes, 0), at, "{special} at {at}");
            }
        }
        assert_eq!(next_json_special(b"plain text, twenty-three", 0), 24);
        assert_eq!(next_json_special(b"ab", 5), 5);
    }

    #[test]
    fn json_string_escaping() {
        for s in [
            "",
            "web01",
            "a\"b\\c",
            "line\nnext\r\t",
            "\u{1}\u{1f}x\u{8}",
            "é\"ü\n中",
            "\\",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            assert_eq!(out, reference(s), "{s:?}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }

    #[test]
    fn config_crosses_the_boundary_as_one_json_text_and_back() {
        let config: Vec<(String, String)> = [
            ("memory", "4096"),
            ("description", "line one\nline \"two\"\ttab \\ é"),
            ("scsi0", "local-lvm:vm-100-disk-0,size=32G"),
            ("empty", ""),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let text = config_to_json(&config);
        assert_eq!(config_from_json(&text).unwrap(), config, "{text}");
        assert_eq!(config_to_json(&[]), "{}");
        assert!(config_from_json("{}").unwrap().is_empty());
        assert!(config_from_json("null").unwrap().is_empty());
        // The raw Proxmox shape (numbers, 0/1) is accepted too; a null value is not set.
        let raw = config_from_json(r#"{"memory":4096,"onboot":1,"cpulimit":"1.5","tags":null}"#);
        let raw = raw.unwrap();
        assert_eq!(raw.len(), 3);
        assert_eq!(raw[0], ("memory".to_owned(), "4096".to_owned()));
        assert!(config_from_json("[1,").is_err());
        assert!(config_from_json("\"memory\"").is_err());
    }

    /// `reconcile_with` over scripted steps: guest `vmid` 1 is a VM, 2 is skipped, 3 is a rule
    /// error; the record of guest 2 fails to normalize (the skip still decides), so does the
    /// record of guest 4 (a VM: the record's error decides).
    #[test]
    fn reconcile_with_keeps_positions_and_precedence() {
        let input = |vmid: u32, current: bool| ReconcileInput {
            guest: Guest {
                vmid,
                ..Guest::default()
            },
            current: current.then(|| NetboxVm {
                id: u64::from(vmid),
                ..NetboxVm::default()
            }),
            ..ReconcileInput::default()
        };
        let vm = |name: &str| {
            let mut d = DesiredVm::default();
            d.vm.name = Field::Set(name.into());
            Ok(Desired::Vm(d))
        };
        let items = vec![
            input(1, true),
            input(2, true),
            input(3, false),
            input(4, true),
        ];
        let out = reconcile_with::<()>(
            items,
            |guests| {
                Ok(guests
                    .iter()
                    .map(|g| match g.vmid {
                        2 => Ok(Desired::Skip("template".into())),
                        3 => Err(RuleError::new("bad-config", "no disks")),
                        n => vm(&format!("vm{n}")),
                    })
                    .collect())
            },
            |records| {
                Ok(records
                    .iter()
                    .map(|r| match r.id {
                        1 => Ok(Vm::default()),
                        _ => Err(RuleError::new("bad-record", "broken")),
                    })
                    .collect())
            },
            |pairs| {
                assert_eq!(pairs.len(), 1, "only guest 1 is diffed");
                Ok(vec![Ok(Vec::new())])
            },
        )
        .unwrap();
        assert_eq!(
            out[0],
            Ok(Reconciled::Vm(ReconciledVm {
                name: Some("vm1".into()),
                ..ReconciledVm::default()
            }))
        );
        assert_eq!(out[1], Ok(Reconciled::Skip("template".into())));
        assert_eq!(out[2].as_ref().unwrap_err().code, "bad-config");
        assert_eq!(out[3].as_ref().unwrap_err().code, "bad-record");
    }

    /// A step that fails as a whole fails the call; one that returns too few results fails
    /// the inputs left without one.
    #[test]
    fn reconcile_with_reports_failed_and_short_steps() {
        let items = || vec![ReconcileInput::default(); 2];
        let failed = reconcile_with(
            items(),
            |_| Err("trap"),
            |_| Ok(Vec::new()),
            |_| Ok(Vec::new()),
        );
        assert_eq!(failed, Err("trap"));
        let short = reconcile_with::<()>(
            items(),
            |_| Ok(vec![Ok(Desired::Skip("x".into()))]),
            |_| Ok(Vec::new()),
            |_| Ok(Vec::new()),
        )
        .unwrap();
        assert_eq!(short[0], Ok(Reconciled::Skip("x".into())));
        assert!(
            short[1]
                .as_ref()
                .unwrap_err()
                .message
                .contains("normalize-desired")
        );
    }
}
