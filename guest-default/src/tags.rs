//! Proxmox tags to NetBox tag slugs.
//!
//! Split on `[;, ]+` (`;` canonical, `,` and spaces from old hand edits), lowercase, slugify
//! (letters, digits, `_` and `-` kept, any other run becomes one `-`, no leading or trailing
//! `-`), de-duplicate, sort. The tag's NetBox name is the lowercased Proxmox tag.

use crate::property::trim;

/// The tag that marks VMs pve2netbox manages.
pub const MANAGED_TAG: &str = "pve2netbox";

/// One tag: (slug, name), sorted by slug, unique.
pub(crate) fn parse_tags(raw: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in raw.split([';', ',', ' ', '\t', '\n']) {
        if t.is_empty() {
            continue;
        }
        let name = t.to_lowercase();
        let slug = slugify(&name);
        if slug.is_empty() {
            continue;
        }
        out.push((slug, name));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// A NetBox slug of lowercase text.
pub(crate) fn slugify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut dash = false;
    for c in s.chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            if c == '-' {
                if !dash && !out.is_empty() {
                    out.push('-');
                }
                dash = true;
            } else {
                out.push(c);
                dash = false;
            }
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Splits a `proxmox_tags` custom field value back into slugs.
pub(crate) fn split_managed(text: &str) -> impl Iterator<Item = &str> {
    text.split(';').map(trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slugs(raw: &str) -> Vec<String> {
        parse_tags(raw).into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn separators_case_and_order() {
        assert_eq!(slugs("prod;web"), ["prod", "web"]);
        assert_eq!(slugs("Web, prod  db;;"), ["db", "prod", "web"]);
        assert_eq!(slugs("web;WEB;web"), ["web"]);
        assert_eq!(slugs(""), Vec::<String>::new());
    }

    #[test]
    fn slugify_odd_characters() {
        assert_eq!(slugify("os.debian+12"), "os-debian-12");
        assert_eq!(slugify("--a__b--"), "a__b");
        assert_eq!(slugify("+++"), "");
        assert_eq!(
            parse_tags("Team.Ops")[0],
            ("team-ops".into(), "team.ops".into())
        );
    }

    #[test]
    fn managed_text_round_trip() {
        assert_eq!(
            split_managed("db;prod;").collect::<Vec<_>>(),
            ["db", "prod"]
        );
    }
}
