//! The component shells of `pve2netbox-rules` (`component`, `component_v0_3`, `component_v0_2`)
//! exporting the default rules, called natively: what crosses the WIT boundary, and in which
//! order.

mod v0_4 {
    use guest_default::DefaultRules;
    use pve2netbox_rules::component::Component;
    use pve2netbox_rules::component::bindings::exports::pve2netbox::rules::reconcile::Guest as _;
    use pve2netbox_rules::component::bindings::pve2netbox::rules::types as w;

    /// A batch's guests refer to its shared texts by index; a bad config fails its own guest
    /// in place; a create's field changes name their fields by case and have no old value.
    #[test]
    fn a_batch_shares_its_texts_and_changes_name_fields_by_case() {
        let texts: Vec<String> = ["prod", "pve1", "running"].map(String::from).into();
        let guest = |vmid: u32, config: &str| w::ReconcileInput {
            guest: w::GuestInput {
                cluster: 0,
                vmid,
                kind: w::GuestKind::Qemu,
                node: 1,
                name: Some(format!("web{vmid}")),
                status: 2,
                template: false,
                maxcpu: Some(2.0),
                maxmem: Some(1 << 30),
                maxdisk: None,
                tags: None,
                pool: None,
                config: config.into(),
                config_read: true,
                network: w::NetworkSource::Unknown(w::NetworkUnknown {
                    reason: w::NetworkUnknownReason::NotAsked,
                    detail: String::new(),
                }),
            },
            current: None,
        };
        let ctx = w::Context {
            netbox_version: "4.7.3".into(),
            known: Vec::new(),
            policies: Vec::new(),
            settings: Vec::new(),
        };
        let good = r#"{"memory":"1024"}"#;
        let batch = w::ReconcileBatch {
            texts,
            items: vec![guest(100, "not json"), guest(101, good)],
        };
        let out = Component::<DefaultRules>::reconcile(ctx, batch);
        let e = out[0].as_ref().unwrap_err();
        assert!(
            e.code == "bad-config" && e.message.contains("prod/pve1/100"),
            "{e:?}"
        );
        let Ok(w::Reconciled::Vm(vm)) = &out[1] else {
            panic!("{:?}", out[1]);
        };
        let memory = vm
            .changes
            .iter()
            .find(|c| matches!(c.field, w::FieldName::Memory))
            .expect("a memory change");
        assert_eq!((memory.old.as_deref(), memory.new.as_str()), (None, "1024"));
        assert!(
            vm.changes
                .iter()
                .any(|c| matches!(&c.field, w::FieldName::CustomField(n) if n == "proxmox_vm_id")),
            "{:?}",
            vm.changes
        );
    }
}

mod v0_3 {
    use guest_default::DefaultRules;
    use pve2netbox_rules::component_v0_3::Component;
    use pve2netbox_rules::component_v0_3::bindings::exports::pve2netbox::rules::reconcile::Guest as _;
    use pve2netbox_rules::component_v0_3::bindings::pve2netbox::rules::types as w;
    use pve2netbox_rules::model::with_failed_in_place;

    fn guest(vmid: u32, config: &str) -> w::PveGuest {
        w::PveGuest {
            cluster: "prod".into(),
            vmid,
            kind: w::GuestKind::Qemu,
            node: "pve1".into(),
            name: Some(format!("web{vmid}")),
            status: "running".into(),
            template: false,
            maxcpu: Some(2.0),
            maxmem: Some(1 << 30),
            maxdisk: None,
            tags: None,
            pool: None,
            config: config.into(),
            config_read: true,
            network: w::NetworkSource::Unknown(w::NetworkUnknown {
                reason: w::NetworkUnknownReason::NotAsked,
                detail: String::new(),
            }),
        }
    }

    fn context() -> w::Context {
        w::Context {
            netbox_version: "4.7.3".into(),
            known: Vec::new(),
            policies: Vec::new(),
            settings: Vec::new(),
        }
    }

    const GOOD: &str = r#"{"memory":"1024","scsi0":"local-lvm:vm-1-disk-0,size=8G"}"#;

    #[test]
    fn a_config_that_is_not_json_fails_its_own_guest_in_place() {
        let guests = vec![
            guest(100, "not json"),
            guest(101, GOOD),
            guest(102, "[1]"),
            guest(103, GOOD),
            guest(104, "{"),
        ];
        let items: Vec<_> = guests
            .iter()
            .cloned()
            .map(|guest| w::ReconcileInput {
                guest,
                current: None,
            })
            .collect();
        let reconciled = Component::<DefaultRules>::reconcile(context(), items);
        let desired = Component::<DefaultRules>::normalize_desired(context(), guests);
        assert_eq!(reconciled.len(), 5);
        for (i, (r, d)) in reconciled.iter().zip(&desired).enumerate() {
            let vmid = 100 + i;
            match (r, d) {
                (Err(r), Err(d)) => {
                    assert_eq!(r.code, "bad-config");
                    assert!(r.message.contains(&format!("prod/pve1/{vmid}")), "{r:?}");
                    // The same error as normalize-desired, so `rules test` finds them equal.
                    assert_eq!((&r.code, &r.message), (&d.code, &d.message));
                }
                (Ok(w::Reconciled::Vm(r)), Ok(w::Desired::Vm(_))) => {
                    assert_eq!(r.name.as_deref(), Some(format!("web{vmid}").as_str()));
                    assert!(r.changes.iter().any(|c| c.field == "memory"), "{i}");
                }
                _ => panic!("position {i}: reconcile {r:?}, normalize-desired {d:?}"),
            }
        }
        assert!(reconciled[0].is_err() && reconciled[2].is_err() && reconciled[4].is_err());
    }

    #[test]
    fn failed_inputs_keep_their_positions() {
        let halve = |n: u32| {
            if n.is_multiple_of(2) {
                Ok(n / 2)
            } else {
                Err(w::RuleError {
                    code: "odd".into(),
                    message: n.to_string(),
                })
            }
        };
        let show = |out: Vec<Result<u32, w::RuleError>>| -> Vec<String> {
            out.into_iter()
                .map(|r| match r {
                    Ok(n) => n.to_string(),
                    Err(e) => format!("!{}", e.message),
                })
                .collect()
        };
        let run = |inputs: Vec<u32>| {
            show(with_failed_in_place(inputs, halve, |good| {
                good.into_iter().map(Ok).collect()
            }))
        };
        assert_eq!(run(vec![1, 2, 3, 4, 5]), ["!1", "1", "!3", "2", "!5"]);
        assert_eq!(run(vec![2, 4]), ["1", "2"]);
        assert_eq!(run(vec![1, 3]), ["!1", "!3"]);
        assert!(run(Vec::new()).is_empty());
    }
}

mod v0_2 {
    use guest_default::DefaultRules;
    use pve2netbox_rules::component_v0_2::Component;
    use pve2netbox_rules::component_v0_2::bindings::exports::pve2netbox::rules::reconcile::Guest as _;

    /// A 0.2 module says 0.2.0 and lists no child collection among its policies.
    #[test]
    fn says_0_2_and_has_no_child_policies() {
        assert_eq!(Component::<DefaultRules>::info().wit_version, "0.2.0");
        let fields: Vec<String> = Component::<DefaultRules>::default_policies()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert!(fields.iter().any(|f| f == "memory"), "{fields:?}");
        for child in ["interfaces", "ip_addresses", "virtual_disks", "primary_ip4"] {
            assert!(!fields.iter().any(|f| f == child), "{child} in {fields:?}");
        }
    }
}

/// The library's list of child collections is the one the default rules give policies for.
#[test]
fn the_default_child_policies_are_the_collections() {
    let mut fields: Vec<String> = guest_default::children::default_policies()
        .into_iter()
        .map(|p| p.field)
        .collect();
    fields.sort();
    let mut collections = pve2netbox_rules::children::COLLECTIONS.to_vec();
    collections.sort();
    assert_eq!(fields, collections);
}
