//! Lenient readers for Perl-shaped JSON: Proxmox encodes booleans as `0/1` (sometimes `"0"`),
//! `number` properties as strings (`"1.5"`), QEMU `memory` as a string from PVE 8.1, and leaves
//! keys out to mean "default". These helpers read what a value means, not how Perl printed it
//! (as Proxmox's own Rust client does with `proxmox_serde::perl`).

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A boolean from `true/false`, `0/1`, `"0"/"1"`, `"on"/"off"`, `"yes"/"no"`.
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "on" | "yes" | "true" => Some(true),
            "0" | "off" | "no" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A non-negative integer from a number or a numeric string (`"4096"`, `"4096.0"`).
pub fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f as u64)
            })
        }
        _ => None,
    }
}

/// A signed integer from a number or a numeric string.
pub fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A float from a number or a numeric string.
pub fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// A string from a string or a number (`id` of a task may be either).
pub fn as_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn value_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.unwrap_or(Value::Null))
}

/// serde `deserialize_with` for `Option<bool>`: lenient, and a value it cannot read is `None`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(as_bool(&value_or_null(d)?))
}

/// serde `deserialize_with` for `Option<u64>`.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(as_u64(&value_or_null(d)?))
}

/// serde `deserialize_with` for `Option<i64>`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(as_i64(&value_or_null(d)?))
}

/// serde `deserialize_with` for `Option<f64>`.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(as_f64(&value_or_null(d)?))
}

/// serde `deserialize_with` for `Option<String>` accepting numbers.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(as_string(&value_or_null(d)?))
}

/// serde `deserialize_with` for `String` accepting numbers; absent or null is empty.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(as_string(&value_or_null(d)?).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn perl_booleans() {
        for (v, want) in [
            (json!(1), Some(true)),
            (json!(0), Some(false)),
            (json!("1"), Some(true)),
            (json!("0"), Some(false)),
            (json!(true), Some(true)),
            (json!("off"), Some(false)),
            (json!("Yes"), Some(true)),
            (json!("maybe"), None),
            (json!(null), None),
            (json!([1]), None),
        ] {
            assert_eq!(as_bool(&v), want, "{v}");
        }
    }

    #[test]
    fn perl_numbers() {
        assert_eq!(as_u64(&json!("4096")), Some(4096));
        assert_eq!(as_u64(&json!(4096)), Some(4096));
        assert_eq!(as_u64(&json!(" 12 ")), Some(12));
        assert_eq!(as_u64(&json!(4096.0)), Some(4096));
        assert_eq!(as_u64(&json!("1.5")), None);
        assert_eq!(as_u64(&json!(-1)), None);
        assert_eq!(as_u64(&json!("current=4096")), None);
        assert_eq!(as_f64(&json!("1.5")), Some(1.5));
        assert_eq!(as_f64(&json!(0.0123)), Some(0.0123));
        assert_eq!(as_f64(&json!("NaN")), None);
        assert_eq!(as_i64(&json!("-3")), Some(-3));
        assert_eq!(as_string(&json!(100)), Some("100".into()));
        assert_eq!(as_string(&json!("100")), Some("100".into()));
    }
}
