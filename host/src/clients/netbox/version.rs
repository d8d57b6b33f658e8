//! NetBox version from `/api/status/` and what it implies for the API (proxmox-netbox-apis.md
//! B.10): the sync adapts its requests to these flags instead of comparing versions everywhere.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::clients::http::Secret;

/// Oldest NetBox release the sync supports: 4.2 moved cluster placement to scopes, which the
/// preflight relies on.
pub const MIN_SUPPORTED: NetboxVersion = NetboxVersion::new(4, 2, 0);
/// Newest release the API knowledge was checked against.
pub const MAX_TESTED: NetboxVersion = NetboxVersion::new(4, 7, u32::MAX);

/// A NetBox release number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetboxVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl NetboxVersion {
    /// A version.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// True when this is `major.minor` or newer.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for NetboxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for NetboxVersion {
    type Err = String;

    /// Reads `4.7.3`, `v4.6.0-beta1`, `4.7.3-Docker-3.2.1`, `4.5` (patch 0).
    fn from_str(text: &str) -> Result<Self, String> {
        let core = text.trim().trim_start_matches(['v', 'V']);
        let mut numbers = core
            .split(['.', '-', '+', ' '])
            .map_while(|part| part.parse::<u32>().ok());
        let major = numbers
            .next()
            .ok_or_else(|| format!("`{text}` is not a NetBox version"))?;
        let minor = numbers
            .next()
            .ok_or_else(|| format!("`{text}` has no minor version"))?;
        let patch = numbers.next().unwrap_or(0);
        Ok(Self::new(major, minor, patch))
    }
}

/// What the NetBox API can do, by version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// 4.2: clusters placed with `scope_type`/`scope_id` (was `site`); MACs are objects.
    pub cluster_scope: bool,
    /// 4.2: MAC addresses are objects (`dcim/mac-addresses`, an interface's
    /// `primary_mac_address`); before, `mac_address` is the interface's own field.
    pub mac_objects: bool,
    /// 4.5: VM `start_on_boot`.
    pub start_on_boot: bool,
    /// 4.5: v2 tokens (`Bearer nbt_…`).
    pub v2_tokens: bool,
    /// 4.5: `omit=` trimming.
    pub omit: bool,
    /// 4.6: VM `virtual_machine_type`.
    pub virtual_machine_type: bool,
    /// 4.6: `start=` cursor pagination.
    pub start_cursor: bool,
    /// 4.6: `ETag` / `If-Match`.
    pub etag: bool,
    /// 4.7: bulk errors as `{"detail", "errors": [{index|id, errors}]}`; ≤4.6 bulk PATCH and
    /// DELETE skip unknown ids silently (count the answer).
    pub structured_bulk_errors: bool,
    /// 4.7: `config_context` cached and `exclude=config_context` ignored.
    pub cached_config_context: bool,
}

impl Capabilities {
    /// The capabilities of a version.
    pub fn of(v: NetboxVersion) -> Self {
        Self {
            cluster_scope: v.at_least(4, 2),
            mac_objects: v.at_least(4, 2),
            start_on_boot: v.at_least(4, 5),
            v2_tokens: v.at_least(4, 5),
            omit: v.at_least(4, 5),
            virtual_machine_type: v.at_least(4, 6),
            start_cursor: v.at_least(4, 6),
            etag: v.at_least(4, 6),
            structured_bulk_errors: v.at_least(4, 7),
            cached_config_context: v.at_least(4, 7),
        }
    }
}

/// `GET /api/status/` summarized.
#[derive(Debug, Clone, PartialEq)]
pub struct NetboxStatus {
    /// Parsed version.
    pub version: NetboxVersion,
    /// `netbox-version` as sent (may carry a suffix such as `-Docker-3.2.1`).
    pub version_text: String,
    /// Capabilities of that version.
    pub capabilities: Capabilities,
    /// The whole status object.
    pub raw: Value,
}

impl NetboxStatus {
    /// Reads the status object.
    pub fn from_value(raw: Value) -> Result<Self, String> {
        let text = raw
            .get("netbox-version")
            .and_then(Value::as_str)
            .ok_or("the status has no `netbox-version`")?
            .to_string();
        let version: NetboxVersion = text.parse()?;
        Ok(Self {
            version,
            capabilities: Capabilities::of(version),
            version_text: text,
            raw,
        })
    }

    /// True when the netbox-branching plugin is installed.
    pub fn has_branching(&self) -> bool {
        self.raw
            .get("plugins")
            .and_then(Value::as_object)
            .is_some_and(|p| p.keys().any(|k| k.contains("branching")))
    }
}

/// The token's form, which decides the `Authorization` keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TokenKind {
    /// Legacy 40-character token: `Authorization: Token <t>`.
    V1,
    /// NetBox 4.5+ `nbt_<key>.<token>`: `Authorization: Bearer <t>`.
    V2,
}

/// Prefix of v2 tokens.
pub const V2_TOKEN_PREFIX: &str = "nbt_";

impl TokenKind {
    /// Tells the kind from the token text. NetBox decides the same way (the `nbt_` prefix).
    pub fn detect(token: &Secret) -> Self {
        if bare_token(token.expose()).starts_with(V2_TOKEN_PREFIX) {
            Self::V2
        } else {
            Self::V1
        }
    }

    /// The `Authorization` header value for this token.
    pub fn header_value(self, token: &Secret) -> String {
        let bare = bare_token(token.expose());
        match self {
            Self::V1 => format!("Token {bare}"),
            Self::V2 => format!("Bearer {bare}"),
        }
    }
}

/// The token without a `Token `/`Bearer ` keyword pasted in front of it.
fn bare_token(text: &str) -> &str {
    let trimmed = text.trim();
    for keyword in ["token ", "bearer "] {
        if trimmed.len() > keyword.len() && trimmed[..keyword.len()].eq_ignore_ascii_case(keyword) {
            return trimmed[keyword.len()..].trim_start();
        }
    }
    trimmed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            "4.7.3".parse::<NetboxVersion>().unwrap(),
            NetboxVersion::new(4, 7, 3)
        );
        assert_eq!(
            "v4.6.0-beta1".parse::<NetboxVersion>().unwrap(),
            NetboxVersion::new(4, 6, 0)
        );
        assert_eq!(
            "4.7.3-Docker-3.2.1".parse::<NetboxVersion>().unwrap(),
            NetboxVersion::new(4, 7, 3)
        );
        assert_eq!(
            "4.5".parse::<NetboxVersion>().unwrap(),
            NetboxVersion::new(4, 5, 0)
        );
        assert!("four".parse::<NetboxVersion>().is_err());
        assert!("4".parse::<NetboxVersion>().is_err());
    }

    #[test]
    fn capabilities_follow_releases() {
        let c41 = Capabilities::of(NetboxVersion::new(4, 1, 9));
        assert!(!c41.cluster_scope && !c41.start_on_boot);
        let c42 = Capabilities::of(NetboxVersion::new(4, 2, 0));
        assert!(c42.cluster_scope && !c42.start_on_boot);
        let c45 = Capabilities::of(NetboxVersion::new(4, 5, 0));
        assert!(c45.start_on_boot && c45.v2_tokens && c45.omit && !c45.virtual_machine_type);
        let c46 = Capabilities::of(NetboxVersion::new(4, 6, 8));
        assert!(c46.virtual_machine_type && c46.start_cursor && !c46.structured_bulk_errors);
        let c47 = Capabilities::of(NetboxVersion::new(4, 7, 3));
        assert!(c47.structured_bulk_errors && c47.cached_config_context);
    }

    #[test]
    fn status_and_plugins() {
        let s = NetboxStatus::from_value(serde_json::json!({
            "django-version": "5.2", "netbox-version": "4.6.2", "plugins": {"netbox_branching": "1.1.3"}
        }))
        .unwrap();
        assert_eq!(s.version, NetboxVersion::new(4, 6, 2));
        assert!(s.has_branching());
        assert!(NetboxStatus::from_value(serde_json::json!({})).is_err());
    }

    #[test]
    fn token_kind_from_form() {
        let v2 = Secret::new("nbt_AbCdEfGhIjKl.0123456789012345678901234567890123456789");
        assert_eq!(TokenKind::detect(&v2), TokenKind::V2);
        assert!(TokenKind::V2.header_value(&v2).starts_with("Bearer nbt_"));
        let v1 = Secret::new("0123456789abcdef0123456789abcdef01234567");
        assert_eq!(TokenKind::detect(&v1), TokenKind::V1);
        assert_eq!(
            TokenKind::V1.header_value(&v1),
            "Token 0123456789abcdef0123456789abcdef01234567"
        );
        // A keyword pasted with the token is tolerated.
        let pasted = Secret::new("Bearer nbt_key.tok");
        assert_eq!(TokenKind::detect(&pasted), TokenKind::V2);
        assert_eq!(TokenKind::V2.header_value(&pasted), "Bearer nbt_key.tok");
        let pasted = Secret::new("Token abc");
        assert_eq!(TokenKind::V1.header_value(&pasted), "Token abc");
    }
}
