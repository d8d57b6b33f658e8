//! What a batch call reads from its `Context` once: the NetBox version, an index of known
//! objects, and the site settings the default rules understand.
//!
//! Settings (all optional, JSON values in `context.settings`):
//! - `template_status` (string, a NetBox VM status; default `offline`): the status of templates.
//! - `skip_templates` (bool, default false): templates become `Desired::Skip`.
//! - `site`, `tenant` (string slug): set `site`/`tenant` on every VM (their default policy is
//!   `ignore`, so a site also sets the policy to `owned` or `seed`).

use std::collections::HashSet;

use crate::model::{Context, DEFAULT_NETBOX_VERSION, JsonText};
use crate::status::NETBOX_STATUSES;
use crate::word_hash::BuildWordHasher;

/// A NetBox `major.minor` version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetboxVersion(pub u32, pub u32);

impl NetboxVersion {
    /// Parses `4.7.3`, `v4.6`, `4.5.0-beta1`; anything unreadable is the default version
    /// (the newest the rules know), so a new version string never makes rules fail.
    pub fn parse(text: &str) -> Self {
        Self::try_parse(text)
            .or_else(|| Self::try_parse(DEFAULT_NETBOX_VERSION))
            .unwrap_or(NetboxVersion(4, 7))
    }

    fn try_parse(text: &str) -> Option<Self> {
        let t = text.trim().trim_start_matches(['v', 'V']);
        let mut it = t.split(['.', '-']);
        let major = it.next()?.parse().ok()?;
        let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(NetboxVersion(major, minor))
    }

    /// True when this version is `major.minor` or later.
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= NetboxVersion(major, minor)
    }
}

/// The objects NetBox has, as a set of `(kind, key)`, built once per batch.
pub struct KnownIndex<'a> {
    // Not SipHash: looked up ~4 times per VM (see `word_hash`); the keys are NetBox's own.
    set: HashSet<(&'a str, &'a str), BuildWordHasher>,
}

impl<'a> KnownIndex<'a> {
    /// Indexes `ctx.known`.
    pub fn new(ctx: &'a Context) -> Self {
        KnownIndex {
            set: ctx
                .known
                .iter()
                .map(|k| (k.kind.as_str(), k.key.as_str()))
                .collect(),
        }
    }

    /// True when NetBox has the object `kind`/`key`.
    pub fn contains(&self, kind: &str, key: &str) -> bool {
        self.set.contains(&(kind, key))
    }
}

/// A setting that has the wrong type or value; it fails every VM of the call.
#[derive(Debug, thiserror::Error)]
#[error("setting {name} = {value}: {expected}")]
pub(crate) struct SettingError {
    pub(crate) name: &'static str,
    pub(crate) value: String,
    pub(crate) expected: &'static str,
}

/// Everything the default rules read from a context, parsed once per call.
pub(crate) struct Prepared<'a> {
    pub(crate) version: NetboxVersion,
    pub(crate) known: KnownIndex<'a>,
    pub(crate) template_status: String,
    pub(crate) skip_templates: bool,
    pub(crate) site: Option<String>,
    pub(crate) tenant: Option<String>,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(ctx: &'a Context) -> Result<Self, SettingError> {
        let template_status = match string_setting(ctx, "template_status")? {
            None => "offline".to_owned(),
            Some(s) if NETBOX_STATUSES.contains(&s.as_str()) => s,
            Some(s) => {
                return Err(SettingError {
                    name: "template_status",
                    value: s,
                    expected: "expected a NetBox VM status (offline, active, planned, staged, failed, decommissioning, paused)",
                });
            }
        };
        let skip_templates = match ctx.setting("skip_templates").map(JsonText::to_value) {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => b,
            Some(v) => {
                return Err(SettingError {
                    name: "skip_templates",
                    value: v.to_string(),
                    expected: "expected true or false",
                });
            }
        };
        Ok(Prepared {
            version: NetboxVersion::parse(&ctx.netbox_version),
            known: KnownIndex::new(ctx),
            template_status,
            skip_templates,
            site: string_setting(ctx, "site")?,
            tenant: string_setting(ctx, "tenant")?,
        })
    }
}

fn string_setting(ctx: &Context, name: &'static str) -> Result<Option<String>, SettingError> {
    match ctx.setting(name).map(JsonText::to_value) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(SettingError {
            name,
            value: v.to_string(),
            expected: "expected a string",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(NetboxVersion::parse("4.7.3"), NetboxVersion(4, 7));
        assert_eq!(NetboxVersion::parse("v4.5"), NetboxVersion(4, 5));
        assert_eq!(NetboxVersion::parse("4.6.0-beta1"), NetboxVersion(4, 6));
        assert_eq!(NetboxVersion::parse("5"), NetboxVersion(5, 0));
        assert_eq!(NetboxVersion::parse(""), NetboxVersion(4, 7));
        assert!(NetboxVersion(4, 10).at_least(4, 7));
        assert!(!NetboxVersion(4, 5).at_least(4, 6));
    }

    #[test]
    fn settings_are_checked() {
        let mut ctx = Context::default();
        ctx.settings
            .push(("template_status".into(), JsonText::string("planned")));
        assert_eq!(Prepared::new(&ctx).unwrap().template_status, "planned");
        ctx.settings[0].1 = JsonText::string("gone");
        assert!(Prepared::new(&ctx).is_err());
        ctx.settings[0] = ("skip_templates".into(), JsonText("1".into()));
        assert!(Prepared::new(&ctx).is_err());
    }
}
