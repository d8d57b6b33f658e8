//! normalize-desired: one Proxmox guest to the NetBox VM the default rules want.
//!
//! Fields derived from the config are `Keep` when the config was not read (unknown is not
//! absent). Every referenced object missing from `context.known` is listed in `needs` (the
//! node's device is not: the host preflights devices).

use crate::children::vdisk::{self, ConfigDisks};
use crate::config::ConfigView;
use crate::model::{
    Desired, DesiredVm, Field, Guest, GuestKind, JsonText, ObjectSpec, RuleError, Vm,
    push_json_escaped,
};
use crate::notes::notes;
use crate::platform::{QEMU_DEFAULT_OSTYPE, platform};
use crate::policy::{CF_NODE, CF_TAGS, CF_VM_ID, CF_VM_TYPE};
use crate::property::{PropertyString, parse_bool, trim};
use crate::settings::Prepared;
use crate::tags::{MANAGED_TAG, parse_tags};
use crate::{cpu, disks, memory, status};

/// NetBox's limit on VM names, in characters.
pub(crate) const NAME_MAX_CHARS: usize = 64;

/// The role / VM type of a guest kind: (slug, name, colour).
pub fn kind_object(kind: GuestKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        GuestKind::Qemu => ("virtual-machine-qemu", "Virtual Machine (QEMU)", "2196f3"),
        GuestKind::Lxc => ("container-lxc", "Container (LXC)", "ff9800"),
    }
}

fn error(guest: &Guest, code: &str, detail: impl std::fmt::Display) -> RuleError {
    RuleError::new(
        code,
        format!(
            "VM {}: {detail} (guest-default, normalize-desired)",
            guest.scope()
        ),
    )
}

/// The create attributes of a role (NetBox below 4.6) for a guest kind: constant, so built
/// once here rather than formatted per VM. Kept in step with `kind_object`'s colour by the
/// test `role_attrs_carry_the_kind_colour`.
fn role_attrs(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Qemu => "{\"color\":\"2196f3\",\"vm_role\":true}",
        GuestKind::Lxc => "{\"color\":\"ff9800\",\"vm_role\":true}",
    }
}

/// The `proxmox_tags` value: the `;`-joined slugs as a JSON string, built in one buffer
/// (joining first and then quoting cost two more allocations per VM).
fn managed_tags_json(tags: &[(String, String)]) -> String {
    let mut out = String::with_capacity(2 + tags.iter().map(|t| t.0.len() + 1).sum::<usize>());
    out.push('"');
    for (i, (slug, _)) in tags.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        push_json_escaped(&mut out, slug);
    }
    out.push('"');
    out
}

/// The desired state of one guest.
pub(crate) fn desired(mut guest: Guest, p: &Prepared) -> Result<Desired, RuleError> {
    let config = std::mem::take(&mut guest.config);
    let cfg = ConfigView::from_pairs(
        guest.kind,
        config.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    desired_with(guest, cfg, p)
}

/// The desired state of one guest whose config has been read into `cfg` (`guest.config` is
/// not looked at).
pub(crate) fn desired_with(
    guest: Guest,
    cfg: ConfigView<'_>,
    p: &Prepared,
) -> Result<Desired, RuleError> {
    desired_with_disks(guest, cfg, p, None)
}

/// [`desired_with`], the `disk` summed from `disks` when the caller has read them (as the
/// virtual disks, `vdisk::config_disks` of `cfg.disks`) rather than from the config again.
pub(crate) fn desired_with_disks(
    mut guest: Guest,
    cfg: ConfigView<'_>,
    p: &Prepared,
    disks: Option<&ConfigDisks<'_>>,
) -> Result<Desired, RuleError> {
    if guest.template && p.skip_templates {
        return Ok(Desired::Skip(format!(
            "VM {} is a template and the setting skip_templates is true",
            guest.scope()
        )));
    }
    let read = guest.config_read;
    let bad_config = |e: crate::numbers::ConfigNumberError| error(&guest, "bad-config", e);

    // Everything that borrows the config, computed before moving strings out of the guest.
    // The config name is only a fallback: not copied when the row has a name.
    let row_has_name = guest.name.as_deref().is_some_and(|n| !trim(n).is_empty());
    let config_name: Option<String> = if read && !row_has_name {
        let n = match guest.kind {
            GuestKind::Qemu => cfg.name,
            GuestKind::Lxc => cfg.hostname,
        };
        Some(match n.map(trim).filter(|n| !n.is_empty()) {
            Some(n) => n.to_owned(),
            None => format!("vm-{}", guest.vmid),
        })
    } else {
        None
    };
    let vcpus = cpu::vcpus(&guest, &cfg).map_err(bad_config)?;
    let memory = memory::memory(&guest, &cfg).map_err(bad_config)?;
    let disk = if read {
        let total = match disks {
            Some(d) => d
                .as_ref()
                .map(|d| vdisk::total_mib(d))
                .map_err(|e| error(&guest, "bad-disk-size", e)),
            None => disks::total_mib(&cfg.disks).map_err(|e| error(&guest, "bad-disk-size", e)),
        };
        match total? {
            0 => Field::Clear,
            n => Field::Set(n),
        }
    } else {
        Field::Keep
    };
    let platform = if read {
        let ostype = match (cfg.ostype, guest.kind) {
            (Some(o), _) => Some(o),
            (None, GuestKind::Qemu) => Some(QEMU_DEFAULT_OSTYPE),
            (None, GuestKind::Lxc) => None,
        };
        ostype.and_then(|o| platform(guest.kind, o))
    } else {
        None
    };
    let (description, comments) = match (read, cfg.description) {
        (false, _) => (Field::Keep, Field::Keep),
        (true, None) => (Field::Clear, Field::Clear),
        (true, Some(note)) => notes(note),
    };
    let start_on_boot = if read && p.version.at_least(4, 5) {
        let on = match cfg.onboot {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| {
                error(
                    &guest,
                    "bad-config",
                    format_args!("config onboot={v:?} is not a boolean"),
                )
            })?,
        };
        Field::Set(if on { "on" } else { "off" }.to_owned())
    } else {
        Field::Keep
    };
    let serial = match (read, guest.kind) {
        (true, GuestKind::Qemu) => Field::from_option(
            cfg.smbios1
                .and_then(|s| PropertyString::parse(s, "uuid").get("uuid"))
                .map(str::to_owned),
        ),
        _ => Field::Keep,
    };
    let tags_raw = guest.tags.as_deref().or(if read { cfg.tags } else { None });
    let proxmox_tags = tags_raw.map(parse_tags).unwrap_or_default();
    drop(cfg);

    let status = status::status(&guest, p.version, &p.template_status);
    let (kind_slug, kind_name, _) = kind_object(guest.kind);
    let name = match guest.name.take().filter(|n| !trim(n).is_empty()) {
        Some(n) => Field::Set(n),
        None => config_name.map_or(Field::Keep, Field::Set),
    };
    if let Field::Set(n) = &name
        && n.chars().count() > NAME_MAX_CHARS
    {
        return Err(RuleError::new(
            "bad-name",
            format!(
                "VM {}: name {n:?} is longer than NetBox's {NAME_MAX_CHARS} characters (guest-default, normalize-desired)",
                guest.scope()
            ),
        ));
    }

    let mut needs = Vec::new();
    let mut need = |kind: &str, key: &str, name: &str, attrs: &str| {
        if !p.known.contains(kind, key) {
            needs.push(ObjectSpec {
                kind: kind.to_owned(),
                key: key.to_owned(),
                name: name.to_owned(),
                attrs: JsonText(attrs.to_owned()),
            });
        }
    };
    let platform = match platform {
        Some((slug, pname)) => {
            need("platform", slug, pname, "{}");
            Field::Set(slug.to_owned())
        }
        None => Field::Keep,
    };
    let (role, vm_type) = if p.version.at_least(4, 6) {
        need("vm-type", kind_slug, kind_name, "{}");
        (Field::Keep, Field::Set(kind_slug.to_owned()))
    } else {
        need("role", kind_slug, kind_name, role_attrs(guest.kind));
        (Field::Set(kind_slug.to_owned()), Field::Keep)
    };
    let tenant = match &p.tenant {
        Some(t) => {
            need("tenant", t, t, "{}");
            Field::Set(t.clone())
        }
        None => Field::Keep,
    };
    let site = p.site.clone().map_or(Field::Keep, Field::Set);

    let mut tag_slugs: Vec<String> = Vec::with_capacity(proxmox_tags.len() + 1);
    for (slug, tname) in &proxmox_tags {
        need("tag", slug, tname, "{}");
    }
    need(
        "tag",
        MANAGED_TAG,
        MANAGED_TAG,
        "{\"description\":\"Managed by pve2netbox\"}",
    );
    let managed_text = if proxmox_tags.is_empty() {
        Field::Clear
    } else {
        Field::Set(JsonText(managed_tags_json(&proxmox_tags)))
    };
    tag_slugs.extend(proxmox_tags.into_iter().map(|t| t.0));
    if let Err(at) = tag_slugs.binary_search_by(|s| s.as_str().cmp(MANAGED_TAG)) {
        tag_slugs.insert(at, MANAGED_TAG.to_owned());
    }

    let custom_fields = vec![
        (
            CF_VM_ID.to_owned(),
            Field::Set(JsonText::uint(u64::from(guest.vmid))),
        ),
        (
            CF_VM_TYPE.to_owned(),
            Field::Set(JsonText::string(guest.kind.as_str())),
        ),
        (
            CF_NODE.to_owned(),
            Field::Set(JsonText::string(&guest.node)),
        ),
        (CF_TAGS.to_owned(), managed_text),
    ];
    let device = if guest.node.is_empty() {
        Field::Keep
    } else {
        Field::Set(guest.node)
    };
    Ok(Desired::Vm(DesiredVm {
        vm: Vm {
            name,
            status,
            site,
            device,
            role,
            vm_type,
            platform,
            tenant,
            vcpus,
            memory,
            disk,
            description,
            comments,
            serial,
            start_on_boot,
            tags: Field::Set(tag_slugs),
            custom_fields,
        },
        needs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_attrs_carry_the_kind_colour() {
        for kind in [GuestKind::Qemu, GuestKind::Lxc] {
            let (_, _, colour) = kind_object(kind);
            assert_eq!(
                role_attrs(kind),
                format!("{{\"color\":\"{colour}\",\"vm_role\":true}}")
            );
        }
    }

    #[test]
    fn managed_tags_are_joined_and_quoted() {
        let tags = crate::tags::parse_tags("web;Prod;db");
        assert_eq!(managed_tags_json(&tags), "\"db;prod;web\"");
        assert_eq!(managed_tags_json(&[]), "\"\"");
    }
}
