//! Fluent test fixtures (kube-rs style): `guest(100).named("web").on("pve2")`,
//! `netbox_vm(12).named("web").identity(100)`, and fake rules ([`FakeRules`]).
//!
//! A guest and a NetBox VM built with the same name, node and memory are in step: the fake diff
//! finds nothing to change.

use guest_default::model::{
    DesiredVm, Field, FieldChange, GuestKind, JsonText, NetboxVm, ObjectSpec, ReconciledVm,
    RuleError, Vm,
};

use super::{
    MISSING_RUNS_FIELD, NODE_FIELD, NetboxRecord, ObservedGuest, OutputContract, Rules, RulesItem,
    RulesResult, SharedValues, Snapshot, VM_ID_FIELD, VM_TYPE_FIELD, VmOutcome, reconcile,
};

pub(crate) const CLUSTER: &str = "pve-a";
pub(crate) const CLUSTER_ID: u64 = 1;
const DEFAULT_NODE: &str = "pve1";
const DEFAULT_MEMORY: u64 = 2048;

/// What the fake rules make of one guest.
#[derive(Clone, Debug)]
pub(crate) enum Spec {
    Vm(Box<DesiredVm>),
    Skip(String),
    Error(String),
}

/// A guest under construction.
pub(crate) struct GuestBuilder {
    guest: ObservedGuest,
    desired: DesiredVm,
    rules: Option<Spec>,
}

/// A QEMU guest `vmid` named `vm-<vmid>` on `pve1` of `pve-a`, 2048 MB, status active.
pub(crate) fn guest(vmid: u32) -> GuestBuilder {
    let name = format!("vm-{vmid}");
    let mut b = GuestBuilder {
        guest: ObservedGuest {
            cluster: CLUSTER.into(),
            cluster_id: CLUSTER_ID,
            vmid,
            kind: GuestKind::Qemu,
            node: DEFAULT_NODE.into(),
            name: None,
            endpoint: 0,
        },
        desired: DesiredVm::default(),
        rules: None,
    };
    b.desired.vm.status = Field::Set("active".into());
    b.desired.vm.memory = Field::Set(DEFAULT_MEMORY);
    b.named(&name).on(DEFAULT_NODE)
}

impl GuestBuilder {
    pub(crate) fn named(mut self, name: &str) -> Self {
        self.guest.name = Some(name.into());
        self.desired.vm.name = Field::Set(name.into());
        self
    }

    /// An `unknown` row: no name, the rules keep the name.
    pub(crate) fn unnamed(mut self) -> Self {
        self.guest.name = None;
        self.desired.vm.name = Field::Keep;
        self
    }

    pub(crate) fn on(mut self, node: &str) -> Self {
        self.guest.node = node.into();
        self.desired.vm.device = Field::Set(node.into());
        set_cf(&mut self.desired.vm, NODE_FIELD, JsonText::string(node));
        self
    }

    pub(crate) fn lxc(mut self) -> Self {
        self.guest.kind = GuestKind::Lxc;
        self
    }

    pub(crate) fn in_cluster(mut self, name: &str, id: u64) -> Self {
        self.guest.cluster = name.into();
        self.guest.cluster_id = id;
        self
    }

    pub(crate) fn memory(mut self, mb: u64) -> Self {
        self.desired.vm.memory = Field::Set(mb);
        self
    }

    pub(crate) fn tags(mut self, tags: &[&str]) -> Self {
        self.desired.vm.tags = Field::Set(tags.iter().map(|t| t.to_string()).collect());
        self
    }

    /// The rules set a custom field (e.g. a broken rule writing `proxmox_vm_id`).
    pub(crate) fn custom(mut self, name: &str, value: JsonText) -> Self {
        set_cf(&mut self.desired.vm, name, value);
        self
    }

    pub(crate) fn platform(mut self, key: &str) -> Self {
        self.desired.vm.platform = Field::Set(key.into());
        self
    }

    pub(crate) fn needs(mut self, kind: &str, key: &str) -> Self {
        self.desired.needs.push(ObjectSpec {
            kind: kind.into(),
            key: key.into(),
            name: key.to_uppercase(),
            attrs: JsonText("{}".into()),
        });
        self
    }

    pub(crate) fn rules_skip(mut self, reason: &str) -> Self {
        self.rules = Some(Spec::Skip(reason.into()));
        self
    }

    pub(crate) fn rules_error(mut self, code: &str, message: &str) -> Self {
        self.rules = Some(Spec::Error(format!(
            "rule error {}",
            RuleError::new(code, message)
        )));
        self
    }

    pub(crate) fn build(self) -> ObservedGuest {
        self.build_with_rules().0
    }

    /// The guest and what the fake rules make of it.
    pub(crate) fn build_with_rules(self) -> (ObservedGuest, Spec) {
        let guest = self.guest;
        let mut desired = self.desired;
        set_cf(
            &mut desired.vm,
            VM_ID_FIELD,
            JsonText::uint(u64::from(guest.vmid)),
        );
        set_cf(
            &mut desired.vm,
            VM_TYPE_FIELD,
            JsonText::string(guest.kind.as_str()),
        );
        let spec = self.rules.unwrap_or(Spec::Vm(Box::new(desired)));
        (guest, spec)
    }
}

impl From<GuestBuilder> for ObservedGuest {
    fn from(b: GuestBuilder) -> Self {
        b.build()
    }
}

fn set_cf(vm: &mut Vm, name: &str, value: JsonText) {
    vm.custom_fields.retain(|(n, _)| n != name);
    vm.custom_fields.push((name.into(), Field::Set(value)));
}

/// A NetBox VM under construction.
pub(crate) struct RecordBuilder {
    cluster_id: u64,
    vm: NetboxVm,
}

/// NetBox VM `id` named `vm-<id>` in cluster 1 on `pve1`, 2048 MB, active, no identity.
pub(crate) fn netbox_vm(id: u64) -> RecordBuilder {
    let vm = NetboxVm {
        id,
        name: format!("vm-{id}"),
        status: "active".into(),
        cluster: Some(CLUSTER.into()),
        device: Some(DEFAULT_NODE.into()),
        memory: Some(DEFAULT_MEMORY),
        last_updated: Some(format!("2026-05-01T00:00:{:02}Z", id % 60)),
        custom_fields: vec![
            (VM_ID_FIELD.into(), JsonText::null()),
            (VM_TYPE_FIELD.into(), JsonText::null()),
            (NODE_FIELD.into(), JsonText::null()),
            (MISSING_RUNS_FIELD.into(), JsonText::null()),
        ],
        ..NetboxVm::default()
    };
    RecordBuilder {
        cluster_id: CLUSTER_ID,
        vm,
    }
}

impl RecordBuilder {
    pub(crate) fn named(mut self, name: &str) -> Self {
        self.vm.name = name.into();
        self
    }

    /// Managed: `proxmox_vm_id` = vmid, a QEMU guest on `pve1` (change with `.lxc()`, `.on()`).
    pub(crate) fn identity(self, vmid: u32) -> Self {
        self.cf(VM_ID_FIELD, JsonText::uint(u64::from(vmid)))
            .cf(VM_TYPE_FIELD, JsonText::string("qemu"))
            .cf(NODE_FIELD, JsonText::string(DEFAULT_NODE))
    }

    pub(crate) fn lxc(self) -> Self {
        self.cf(VM_TYPE_FIELD, JsonText::string("lxc"))
    }

    pub(crate) fn on(mut self, node: &str) -> Self {
        self.vm.device = Some(node.into());
        self.cf(NODE_FIELD, JsonText::string(node))
    }

    pub(crate) fn in_cluster(mut self, name: &str, id: u64) -> Self {
        self.vm.cluster = Some(name.into());
        self.cluster_id = id;
        self
    }

    pub(crate) fn memory(mut self, mb: u64) -> Self {
        self.vm.memory = Some(mb);
        self
    }

    pub(crate) fn status(mut self, status: &str) -> Self {
        self.vm.status = status.into();
        self
    }

    pub(crate) fn tags(mut self, tags: &[&str]) -> Self {
        self.vm.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    pub(crate) fn missing_runs(self, n: u32) -> Self {
        self.cf(MISSING_RUNS_FIELD, JsonText::uint(u64::from(n)))
    }

    pub(crate) fn cf(mut self, name: &str, value: JsonText) -> Self {
        self.vm.custom_fields.retain(|(n, _)| n != name);
        self.vm.custom_fields.push((name.into(), value));
        self
    }

    pub(crate) fn build(self) -> NetboxRecord {
        NetboxRecord::new(self.cluster_id, self.vm, &mut SharedValues::default())
            .expect("a fixture's texts fit a record")
    }
}

impl From<RecordBuilder> for NetboxRecord {
    fn from(b: RecordBuilder) -> Self {
        b.build()
    }
}

/// A snapshot of these records.
pub(crate) fn snapshot(records: Vec<RecordBuilder>) -> Snapshot {
    Snapshot::new(records.into_iter().map(RecordBuilder::build).collect())
}

/// Guests built.
pub(crate) fn guests(guests: Vec<GuestBuilder>) -> Vec<ObservedGuest> {
    guests.into_iter().map(GuestBuilder::build).collect()
}

/// Guests built, with fake rules that answer for them.
pub(crate) fn guests_and_rules(guests: Vec<GuestBuilder>) -> (Vec<ObservedGuest>, FakeRules) {
    let (observed, specs) = guests
        .into_iter()
        .map(GuestBuilder::build_with_rules)
        .unzip();
    (observed, FakeRules { specs, calls: 0 })
}

/// Reconciles with the fake rules.
pub(crate) fn run(guests: Vec<GuestBuilder>, records: Vec<RecordBuilder>) -> Vec<VmOutcome> {
    let (observed, mut rules) = guests_and_rules(guests);
    let snap = snapshot(records);
    reconcile(&observed, &snap, &mut rules, &OutputContract::default())
}

/// The outcome of `vmid` (first cluster that has it).
pub(crate) fn of(outcomes: &[VmOutcome], vmid: u32) -> &VmOutcome {
    outcomes
        .iter()
        .find(|o| o.vmid == vmid)
        .unwrap_or_else(|| panic!("no outcome for vmid {vmid}"))
}

/// The changed field names of an outcome.
pub(crate) fn fields(outcome: &VmOutcome) -> Vec<&str> {
    outcome.changes.iter().map(|c| c.field).collect()
}

/// The change of `field` as (old, new) JSON values.
pub(crate) fn change(outcome: &VmOutcome, field: &str) -> (serde_json::Value, serde_json::Value) {
    let c = outcome
        .changes
        .iter()
        .find(|c| c.field == field)
        .unwrap_or_else(|| panic!("no change of {field} in {:?}", outcome.changes));
    (c.old.to_value(), c.new.to_value())
}

/// Fake rules: each guest's [`Spec`]; the diff owns every field except tags, merged (set
/// union) as the default rules do; a create lists every set field with old `null`.
pub(crate) struct FakeRules {
    specs: Vec<Spec>,
    /// How many batches were asked.
    pub(crate) calls: usize,
}

impl Rules for FakeRules {
    fn reconcile(&mut self, items: &[RulesItem<'_>]) -> Vec<RulesResult> {
        self.calls += 1;
        items
            .iter()
            .map(|item| match &self.specs[item.guest] {
                Spec::Vm(d) => RulesResult::Vm(
                    ReconciledVm {
                        name: d.vm.name.as_set().cloned(),
                        needs: d.needs.clone(),
                        changes: diff_one(&d.vm, item.current.map(|r| r.vm.to_vm()).as_ref()),
                        children: Vec::new(),
                    }
                    .into(),
                ),
                Spec::Skip(reason) => RulesResult::Skip(reason.clone()),
                Spec::Error(message) => RulesResult::Error(message.clone()),
            })
            .collect()
    }
}

fn diff_one(d: &Vm, c: Option<&NetboxVm>) -> Vec<FieldChange> {
    use serde_json::{Value, json};
    let mut out = Vec::new();
    let mut field = |name: &str, want: Option<Value>, have: Option<Value>| {
        let have = have.unwrap_or(Value::Null);
        if let Some(want) = want
            && want != have
        {
            out.push(FieldChange {
                field: name.into(),
                old: JsonText::from_value(&have),
                new: JsonText::from_value(&want),
            });
        }
    };
    fn want<T: serde::Serialize>(f: &Field<T>) -> Option<Value> {
        match f {
            Field::Keep => None,
            Field::Clear => Some(Value::Null),
            Field::Set(v) => Some(json!(v)),
        }
    }
    field("name", want(&d.name), c.map(|c| json!(c.name)));
    field("status", want(&d.status), c.map(|c| json!(c.status)));
    field(
        "device",
        want(&d.device),
        c.and_then(|c| c.device.as_ref().map(|v| json!(v))),
    );
    field(
        "platform",
        want(&d.platform),
        c.and_then(|c| c.platform.as_ref().map(|v| json!(v))),
    );
    field(
        "memory",
        want(&d.memory),
        c.and_then(|c| c.memory.map(|v| json!(v))),
    );
    if let Field::Set(tags) = &d.tags {
        let mut have: Vec<String> = c.map(|c| c.tags.clone()).unwrap_or_default();
        have.sort();
        let mut merged = have.clone();
        merged.extend(tags.iter().cloned());
        merged.sort();
        merged.dedup();
        field("tags", Some(json!(merged)), c.map(|_| json!(have)));
    }
    for (name, f) in &d.custom_fields {
        let want = match f {
            Field::Keep => None,
            Field::Clear => Some(Value::Null),
            Field::Set(v) => Some(v.to_value()),
        };
        let have = c.and_then(|c| c.custom_field(name)).map(JsonText::to_value);
        field(&format!("custom_fields.{name}"), want, have);
    }
    out
}
