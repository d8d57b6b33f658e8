//! The site settings the children rules read from `context.settings`, parsed once per call.
//!
//! - `interface_names` (`"config"` default, or `"agent"`): name interfaces by the Proxmox device
//!   key (`net0`), or by the guest's own name (the agent interface with the NIC's MAC; an LXC
//!   NIC's `name=`). With `"agent"`, a QEMU guest whose agent did not answer keeps its
//!   interfaces, MACs and IPs as they are (a fallback to `net0` would rename them back and forth).
//! - `ip_vrf` (string, VRF name; default none): the VRF of every IP address.
//! - `ip_exclude` (list of CIDR strings): addresses inside any of them are left out, besides
//!   loopback, link-local, unspecified and multicast, which always are.

use crate::model::{Context, JsonText};
use crate::settings::{NetboxVersion, SettingError};

use super::ip::Cidr;

/// How interfaces are named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum InterfaceNames {
    #[default]
    Config,
    Agent,
}

/// The children settings.
#[derive(Clone, Debug)]
pub(crate) struct ChildSettings {
    pub(crate) interface_names: InterfaceNames,
    pub(crate) vrf: Option<String>,
    pub(crate) exclude: Vec<Cidr>,
    /// NetBox 4.2 and later: MAC addresses are objects.
    pub(crate) mac_objects: bool,
}

impl ChildSettings {
    pub(crate) fn new(ctx: &Context) -> Result<Self, SettingError> {
        let err = |name, v: &JsonText, expected| SettingError {
            name,
            value: v.as_str().to_owned(),
            expected,
        };
        let mut s = ChildSettings {
            interface_names: InterfaceNames::Config,
            vrf: None,
            exclude: Vec::new(),
            mac_objects: NetboxVersion::parse(&ctx.netbox_version).at_least(4, 2),
        };
        if let Some(v) = ctx.setting("interface_names").filter(|v| !v.is_null()) {
            s.interface_names = match v.as_string_value().as_deref() {
                Some("config") => InterfaceNames::Config,
                Some("agent") => InterfaceNames::Agent,
                _ => return Err(err("interface_names", v, "\"config\" or \"agent\"")),
            };
        }
        if let Some(v) = ctx.setting("ip_vrf").filter(|v| !v.is_null()) {
            let name = v
                .as_string_value()
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| err("ip_vrf", v, "a VRF name"))?;
            s.vrf = Some(name.trim().to_owned());
        }
        if let Some(v) = ctx.setting("ip_exclude").filter(|v| !v.is_null()) {
            const WANT: &str = "a list of CIDR strings (\"10.99.0.0/16\")";
            let list = match v.to_value() {
                serde_json::Value::Array(list) => list,
                _ => return Err(err("ip_exclude", v, WANT)),
            };
            for item in list {
                let cidr = item
                    .as_str()
                    .and_then(|t| Cidr::parse(t).ok())
                    .ok_or_else(|| err("ip_exclude", v, WANT))?;
                s.exclude.push(cidr);
            }
        }
        Ok(s)
    }

    /// True when `cidr`'s address is inside an excluded network.
    pub(crate) fn excludes(&self, cidr: &Cidr) -> bool {
        self.exclude.iter().any(|n| n.contains(cidr.addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(settings: &[(&str, &str)]) -> Context {
        Context {
            settings: settings
                .iter()
                .map(|(n, v)| ((*n).to_owned(), JsonText((*v).to_owned())))
                .collect(),
            ..Context::default()
        }
    }

    #[test]
    fn defaults() {
        let s = ChildSettings::new(&Context::default()).unwrap();
        assert_eq!(s.interface_names, InterfaceNames::Config);
        assert!(s.vrf.is_none() && s.exclude.is_empty() && s.mac_objects);
    }

    #[test]
    fn reads_every_setting() {
        let s = ChildSettings::new(&ctx(&[
            ("interface_names", "\"agent\""),
            ("ip_vrf", "\"blue\""),
            ("ip_exclude", "[\"10.99.0.0/16\",\"fd00::/8\"]"),
        ]))
        .unwrap();
        assert_eq!(s.interface_names, InterfaceNames::Agent);
        assert_eq!(s.vrf.as_deref(), Some("blue"));
        assert!(s.excludes(&Cidr::parse("10.99.3.4/24").unwrap()));
        assert!(!s.excludes(&Cidr::parse("10.98.3.4/24").unwrap()));
    }

    #[test]
    fn bad_settings_are_errors() {
        for (n, v) in [
            ("interface_names", "\"guest\""),
            ("ip_vrf", "3"),
            ("ip_exclude", "\"10.0.0.0/8\""),
            ("ip_exclude", "[\"10.0.0.0\"]"),
        ] {
            let e = ChildSettings::new(&ctx(&[(n, v)])).unwrap_err();
            assert_eq!(e.name, n);
        }
    }

    #[test]
    fn old_netbox_has_no_mac_objects() {
        let c = Context {
            netbox_version: "4.1.11".into(),
            ..Context::default()
        };
        assert!(!ChildSettings::new(&c).unwrap().mac_objects);
    }
}
