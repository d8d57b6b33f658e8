//! The answer reader on memory laid out by hand as the canonical ABI lays out 0.4's types.

use super::*;

/// A module's memory being written: every value at the next free offset, aligned.
#[derive(Default)]
struct Memory(Vec<u8>);

impl Memory {
    fn alloc(&mut self, size: usize, align: usize) -> usize {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0xAA);
        }
        let at = self.0.len();
        self.0.resize(at + size, 0);
        at
    }
    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn u32(&mut self, at: usize, v: usize) {
        self.put(at, &(v as u32).to_le_bytes());
    }
    /// Writes the bytes of a string and its pointer and length at `at`.
    fn string(&mut self, at: usize, s: &[u8]) {
        let ptr = self.alloc(s.len(), 1);
        self.put(ptr, s);
        self.u32(at, ptr);
        self.u32(at + 4, s.len());
    }
    fn option_string(&mut self, at: usize, s: Option<&str>) {
        if let Some(s) = s {
            self.0[at] = 1;
            self.string(at + 4, s.as_bytes());
        }
    }
    /// A list of `n` elements of `size` bytes, its pointer and length at `at`; the elements'
    /// offsets.
    fn list(&mut self, at: usize, n: usize, size: usize, align: usize) -> Vec<usize> {
        let ptr = self.alloc(n * size, align);
        self.u32(at, ptr);
        self.u32(at + 4, n);
        (0..n).map(|i| ptr + i * size).collect()
    }
    /// A `field-change`: its case (and payload), old value and new value.
    fn field_change(
        &mut self,
        at: usize,
        case: u8,
        payload: Option<&str>,
        old: Option<&str>,
        new: &str,
    ) {
        self.0[at] = case;
        if let Some(p) = payload {
            self.string(at + 4, p.as_bytes());
        }
        self.option_string(at + 12, old);
        self.string(at + 24, new.as_bytes());
    }
}

fn read(mem: &Memory, ptr: usize, len: usize) -> Lifted<Vec<Result<m::Reconciled, m::RuleError>>> {
    let mut r = Reader {
        memory: &mem.0,
        charge: |_| Ok(()),
    };
    answers(&mut r, ptr, len)
}

/// Three answers: a VM with a need, three changes and a child change; a skip; a rule error.
fn three_answers() -> (Memory, usize) {
    let mut mem = Memory::default();
    mem.alloc(3, 1); // nothing starts at 0
    let outer = mem.alloc(8, 4);
    let results = mem.list(outer, 3, RESULT, 4);
    let vm = results[0] + 8; // the result's payload at 4, the reconciled-vm's at 4 more
    mem.option_string(vm, Some("web-1"));
    let needs = mem.list(vm + 12, 1, OBJECT_SPEC, 4);
    for (i, s) in ["tag", "db", "DB", "{}"].iter().enumerate() {
        mem.string(needs[0] + 8 * i, s.as_bytes());
    }
    let changes = mem.list(vm + 20, 3, FIELD_CHANGE, 4);
    mem.field_change(changes[0], 9, None, None, "4096");
    mem.field_change(changes[1], 28, Some("proxmox_vm_id"), Some("100"), "101");
    mem.field_change(changes[2], 29, Some("x_y"), Some("\"a\""), "\"b\"");
    let kids = mem.list(vm + 28, 1, CHILD_CHANGE, 8);
    let kid = kids[0];
    mem.0[kid] = 2;
    mem.string(kid + 4, b"10.0.0.5/24");
    mem.option_string(kid + 12, Some("net0"));
    mem.0[kid + 24] = 1;
    mem.put(kid + 32, &7u64.to_le_bytes());
    let kid_changes = mem.list(kid + 40, 1, FIELD_CHANGE, 4);
    mem.field_change(
        kid_changes[0],
        25,
        None,
        Some("\"10.0.0.4/24\""),
        "\"10.0.0.5/24\"",
    );
    // The skip.
    mem.0[results[1] + 4] = 1;
    mem.string(results[1] + 8, b"template");
    // The rule error.
    mem.0[results[2]] = 1;
    mem.string(results[2] + 4, b"bad-config");
    mem.string(results[2] + 12, "config ü".as_bytes());
    (mem, outer)
}

fn change(field: &str, old: &str, new: &str) -> m::FieldChange {
    m::FieldChange {
        field: field.into(),
        old: m::JsonText(old.into()),
        new: m::JsonText(new.into()),
    }
}

#[test]
fn every_kind_of_answer_reads_as_the_model_has_it() {
    let (mem, outer) = three_answers();
    let got = read(&mem, u32_at(&mem.0, outer), u32_at(&mem.0, outer + 4)).unwrap();
    let vm = m::Reconciled::Vm(m::ReconciledVm {
        name: Some("web-1".into()),
        needs: vec![m::ObjectSpec {
            kind: "tag".into(),
            key: "db".into(),
            name: "DB".into(),
            attrs: m::JsonText("{}".into()),
        }],
        changes: vec![
            change("memory", "null", "4096"),
            change("custom_fields.proxmox_vm_id", "100", "101"),
            change("x_y", "\"a\"", "\"b\""),
        ],
        children: vec![c::ChildChange {
            kind: c::ChildKind::IpAddress,
            key: "10.0.0.5/24".into(),
            parent: Some("net0".into()),
            op: c::ChildOp::Update(7),
            changes: vec![change("address", "\"10.0.0.4/24\"", "\"10.0.0.5/24\"")],
        }],
    });
    assert_eq!(
        got,
        vec![
            Ok(vm),
            Ok(m::Reconciled::Skip("template".into())),
            Err(m::RuleError::new("bad-config", "config ü")),
        ]
    );
    // An empty list reads as no answers wherever it points.
    assert_eq!(read(&mem, 0, 0).unwrap(), vec![]);
}

#[test]
fn a_malformed_answer_is_an_error_not_a_panic() {
    let (mem, outer) = three_answers();
    let (ptr, len) = (u32_at(&mem.0, outer), u32_at(&mem.0, outer + 4));
    let vm = ptr + 8;
    let changes = u32_at(&mem.0, vm + 20);
    let kids = u32_at(&mem.0, vm + 28);
    let fails = |edit: &dyn Fn(&mut Memory), what: &str| {
        let mut bad = Memory(mem.0.clone());
        edit(&mut bad);
        let e = read(&bad, ptr, len).unwrap_err().to_string();
        assert!(e.contains(what), "{e} does not say {what}");
    };
    let end = mem.0.len();
    fails(&|m| m.0[ptr] = 2, "result discriminant");
    fails(&|m| m.0[ptr + 4] = 2, "reconciled discriminant");
    fails(&|m| m.0[vm] = 2, "option discriminant");
    fails(&|m| m.0[changes] = 30, "field-name discriminant");
    fails(&|m| m.0[kids] = 4, "child-kind discriminant");
    fails(&|m| m.0[kids + 24] = 3, "child-op discriminant");
    // The name's text past the end of memory, then its length so.
    fails(&|m| m.u32(vm + 4, end), "out of bounds");
    fails(&|m| m.u32(vm + 8, usize::MAX >> 32), "out of bounds");
    // The changes' list past the end, and the children's not aligned to 8.
    fails(&|m| m.u32(vm + 24, 1 << 20), "out of bounds");
    fails(&|m| m.u32(vm + 28, kids + 4), "not aligned");
    // A name that is not UTF-8.
    fails(
        &|m| {
            let p = u32_at(&m.0, vm + 4);
            m.0[p] = 0xFF;
        },
        "utf-8",
    );
    assert!(
        read(&mem, end - 4, 1).is_err(),
        "the outer list past the end"
    );
}

#[test]
fn what_is_copied_out_is_charged_to_the_fuel() {
    let (mem, outer) = three_answers();
    let (ptr, len) = (u32_at(&mem.0, outer), u32_at(&mem.0, outer + 4));
    let mut spent = 0;
    let mut r = Reader {
        memory: &mem.0,
        charge: |n| {
            spent += n;
            Ok(())
        },
    };
    answers(&mut r, ptr, len).unwrap();
    // At least the strings' bytes (the lists' host forms come on top).
    assert!(spent > "web-1tagdbDB{}4096proxmox_vm_id".len(), "{spent}");
    let mut left = 100usize;
    let mut r = Reader {
        memory: &mem.0,
        charge: |n| match left.checked_sub(n) {
            Some(l) => {
                left = l;
                Ok(())
            }
            None => Err(wasmtime::Error::msg("fuel exhausted")),
        },
    };
    assert!(answers(&mut r, ptr, len).is_err());
}

#[test]
fn the_field_names_are_in_the_order_0_4_declares_its_cases() {
    let wit = include_str!("../../../../wit/v0.4.0/rules.wit");
    let body = wit.split("variant field-name {").nth(1).unwrap();
    let body = &body[..body.find('}').unwrap()];
    let cases: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| l.trim_end_matches(',').trim_start_matches('%').to_owned())
        .collect();
    assert_eq!(cases.len(), FIELD_NAMES.len() + 2);
    assert_eq!(cases[28..], ["custom-field(string)", "other(string)"]);
    for (case, name) in cases.iter().zip(FIELD_NAMES) {
        let expected = match case.as_str() {
            "vm-type" => "virtual_machine_type".to_owned(),
            other => other.replace('-', "_"),
        };
        assert_eq!(name, expected, "case {case}");
    }
    // And the same names as the bindings' cases map to.
    use w::FieldName as F;
    let bound = [
        F::Name,
        F::Status,
        F::Site,
        F::Device,
        F::Role,
        F::VmType,
        F::Platform,
        F::Tenant,
        F::Vcpus,
        F::Memory,
        F::Disk,
        F::Description,
        F::Comments,
        F::Serial,
        F::StartOnBoot,
        F::Tags,
        F::PrimaryIp4,
        F::PrimaryIp6,
        F::Enabled,
        F::Mtu,
        F::Mode,
        F::UntaggedVlan,
        F::PrimaryMacAddress,
        F::MacAddress,
        F::Interface,
        F::Address,
        F::Vrf,
        F::Size,
    ];
    for (case, name) in bound.into_iter().zip(FIELD_NAMES) {
        assert_eq!(cv::field_name_from(case), name);
    }
}

#[test]
fn the_short_ascii_test_sees_every_byte() {
    let all: Vec<u8> = (b'a'..=b'z').chain(b'0'..=b'9').collect();
    for n in 0..=all.len() {
        let b = &all[..n];
        // Up to 16 bytes answered here; longer ones left to `from_utf8`.
        assert_eq!(short_ascii(b), n <= 16, "length {n}");
        for i in 0..n {
            let mut c = b.to_vec();
            c[i] = 0xC3;
            assert!(!short_ascii(&c), "length {n}, byte {i}");
        }
    }
    // A multibyte string and one that is not UTF-8 at all, both short.
    assert!(!short_ascii("größe".as_bytes()));
    assert!(!short_ascii(&[b'a', 0xFF, b'b']));
}
