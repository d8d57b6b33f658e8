//! Proxmox status to NetBox VM status.
//!
//! running -> active, stopped -> offline, paused -> paused (NetBox 4.7+, else offline), a
//! template -> offline or the `template_status` setting. Anything else (`unknown` from a silent
//! node) is `Keep`: never force a value the source does not know.

use crate::model::{Field, Guest};
use crate::settings::NetboxVersion;

/// NetBox's VM status choices (the `template_status` setting must be one of them).
pub(crate) const NETBOX_STATUSES: [&str; 7] = [
    "offline",
    "active",
    "planned",
    "staged",
    "failed",
    "decommissioning",
    "paused",
];

/// The desired status.
pub(crate) fn status(
    guest: &Guest,
    version: NetboxVersion,
    template_status: &str,
) -> Field<String> {
    if guest.template {
        return Field::Set(template_status.to_owned());
    }
    let s = match guest.status.as_str() {
        "running" => "active",
        "stopped" => "offline",
        "paused" if version.at_least(4, 7) => "paused",
        "paused" => "offline",
        _ => return Field::Keep,
    };
    Field::Set(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: &str, template: bool, v: (u32, u32)) -> Field<String> {
        let g = Guest {
            status: status.to_owned(),
            template,
            ..Guest::default()
        };
        super::status(&g, NetboxVersion(v.0, v.1), "offline")
    }

    #[test]
    fn mapping() {
        assert_eq!(run("running", false, (4, 7)), Field::Set("active".into()));
        assert_eq!(run("stopped", false, (4, 7)), Field::Set("offline".into()));
        assert_eq!(run("paused", false, (4, 7)), Field::Set("paused".into()));
        assert_eq!(run("paused", false, (4, 6)), Field::Set("offline".into()));
        assert_eq!(run("stopped", true, (4, 7)), Field::Set("offline".into()));
        assert_eq!(run("unknown", false, (4, 7)), Field::Keep);
        assert_eq!(run("", false, (4, 7)), Field::Keep);
    }
}
