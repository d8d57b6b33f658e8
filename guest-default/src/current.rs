//! normalize-current: a NetBox record to the comparable `Vm` shape.
//!
//! Every field becomes `Set` or `Clear` (NetBox knows all of them): empty text is `Clear`, so it
//! compares equal to a desired `Clear`; tags are sorted and de-duplicated; a custom field whose
//! value is `null` is `Clear`.

use crate::model::{Field, NetboxVm, Vm};

fn text(s: String) -> Field<String> {
    if s.is_empty() {
        Field::Clear
    } else {
        Field::Set(s)
    }
}

/// The comparable shape of a NetBox record.
pub(crate) fn current(rec: NetboxVm) -> Vm {
    let mut tags = rec.tags;
    tags.sort_unstable();
    tags.dedup();
    Vm {
        name: text(rec.name),
        status: text(rec.status),
        site: Field::from_option(rec.site),
        device: Field::from_option(rec.device),
        role: Field::from_option(rec.role),
        vm_type: Field::from_option(rec.vm_type),
        platform: Field::from_option(rec.platform),
        tenant: Field::from_option(rec.tenant),
        vcpus: Field::from_option(rec.vcpus),
        memory: Field::from_option(rec.memory),
        disk: Field::from_option(rec.disk),
        description: text(rec.description),
        comments: text(rec.comments),
        serial: text(rec.serial),
        start_on_boot: Field::from_option(rec.start_on_boot),
        tags: Field::Set(tags),
        custom_fields: rec
            .custom_fields
            .into_iter()
            .map(|(n, v)| {
                let f = if v.is_null() {
                    Field::Clear
                } else {
                    Field::Set(v)
                };
                (n, f)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JsonText;

    #[test]
    fn empty_text_and_null_custom_fields_are_clear() {
        let rec = NetboxVm {
            id: 7,
            name: "web01".into(),
            status: "active".into(),
            tags: vec!["web".into(), "prod".into(), "web".into()],
            custom_fields: vec![
                ("proxmox_vm_id".into(), JsonText("100".into())),
                ("proxmox_tags".into(), JsonText("null".into())),
            ],
            ..NetboxVm::default()
        };
        let vm = current(rec);
        assert_eq!(vm.name, Field::Set("web01".into()));
        assert_eq!(vm.description, Field::Clear);
        assert_eq!(vm.platform, Field::Clear);
        assert_eq!(vm.tags, Field::Set(vec!["prod".into(), "web".into()]));
        assert_eq!(vm.custom_field("proxmox_tags"), Some(&Field::Clear));
        assert_eq!(
            vm.custom_field("proxmox_vm_id"),
            Some(&Field::Set(JsonText("100".into())))
        );
    }
}
