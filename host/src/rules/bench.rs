//! `rules bench`: the path the sync runs, like for like. The sync calls `reconcile` on each
//! guest's config as JSON text (the WIT's `pve-guest.config`) with its matched NetBox record, in
//! batches; the bench does the same over N generated VMs, through a component
//! ([`RulesModule::reconcile_json`]: one fused call per batch for a WIT 0.2 module, the three
//! steps for a 0.1 module) and, for the default rules, through the same Rust logic compiled
//! natively on the same JSON input (`RuleSet::reconcile_json`).
//!
//! Both are warmed the same way (one untimed pass each, so the host heap and the instance pool's
//! pages are touched before either timed pass), the inputs are built and copied outside the
//! timed region, and the two outputs are compared item by item: a mismatch fails the bench. The
//! WASM time includes the model <-> bindings conversions, because the sync pays them too.
//!
//! Instructions per VM: where the machine has no usable hardware counter (virtual machines often
//! have none), `callgrind` counts them: the timed passes are the functions [`measure_wasm`] and
//! [`measure_native`] (never inlined), so `--toggle-collect` on each gives its instructions
//! alone (see BENCHMARKS.md). This is a benchmark, not a test: nothing asserts on time.

use std::time::Instant;

use guest_default::model::{
    self, Context, Guest, JsonReconcileInput, KnownObject, NetboxVm, Reconciled, RuleError, RuleSet,
};
use serde::Serialize;

use super::{RulesError, RulesModule, parallel};

/// Milliseconds of the run: the `reconcile` calls, which are the whole of it.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PhaseTimes {
    pub reconcile_ms: f64,
    /// Wall time.
    pub total_ms: f64,
    /// CPU time of the process meanwhile (all threads; 10 ms resolution), where the OS tells
    /// it: on a loaded machine wall time counts other processes too, and with several threads
    /// it is less than the CPU time spent.
    pub cpu_ms: Option<f64>,
    /// Threads the batches ran on (as the sync runs them: see [`parallel::threads`]).
    pub threads: usize,
}

impl PhaseTimes {
    fn of(ms: f64, cpu_ms: Option<f64>, threads: usize) -> Self {
        PhaseTimes {
            reconcile_ms: ms,
            total_ms: ms,
            cpu_ms,
            threads,
        }
    }
}

/// Wall and CPU time of `f`, in milliseconds.
fn timed<T>(f: impl FnOnce() -> T) -> (f64, Option<f64>, T) {
    let cpu = parallel::process_cpu_ns();
    let t = Instant::now();
    let out = f();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let cpu_ms = match (cpu, parallel::process_cpu_ns()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
        _ => None,
    };
    (ms, cpu_ms, out)
}

/// What one run produced, summed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub desired_vms: usize,
    pub skipped: usize,
    pub rule_errors: usize,
    pub changes: usize,
    /// Child changes (WIT 0.3).
    pub child_changes: usize,
}

impl Tally {
    fn add(&mut self, results: &[Result<Reconciled, RuleError>]) {
        for r in results {
            match r {
                Ok(Reconciled::Vm(v)) => {
                    self.desired_vms += 1;
                    self.changes += v.changes.len();
                    self.child_changes += v.children.len();
                }
                Ok(Reconciled::Skip(_)) => self.skipped += 1,
                Err(_) => self.rule_errors += 1,
            }
        }
    }
}

/// The answers of one pass, batch by batch.
pub type Outputs = Vec<Vec<Result<Reconciled, RuleError>>>;

/// The objects a first sync through `module` creates: what an untimed pass asks for in `needs`
/// with `ctx` (not through [`measure_wasm`], so callgrind's toggle does not count it).
pub fn known_objects(
    module: &RulesModule,
    ctx: &Context,
    w: &Workload,
    threads: usize,
) -> Result<Vec<KnownObject>, RulesError> {
    let (_, _, (_, outputs)) = pass_wasm(module, ctx, w.batches.clone(), threads)?;
    Ok(known_from_needs(&outputs))
}

/// The objects the answers list in `needs`, once each (by kind and key, in first-seen order),
/// as NetBox objects with ids: the context of a sync that runs after the objects were created.
pub fn known_from_needs(outputs: &Outputs) -> Vec<KnownObject> {
    let mut seen = std::collections::HashSet::new();
    let mut known = Vec::new();
    for spec in outputs.iter().flatten().filter_map(|r| match r {
        Ok(Reconciled::Vm(v)) => Some(&v.needs),
        _ => None,
    }) {
        for need in spec {
            if seen.insert((need.kind.as_str(), need.key.as_str())) {
                known.push(KnownObject {
                    kind: need.kind.clone(),
                    key: need.key.clone(),
                    id: known.len() as u64 + 1,
                    name: need.name.clone(),
                });
            }
        }
    }
    known
}

/// One timed pass: times, fuel (WASM metered by fuel only) and tally.
#[derive(Clone, Debug, Serialize)]
pub struct Pass {
    pub times: PhaseTimes,
    pub fuel: u64,
    pub tally: Tally,
}

/// The input split into batches, each guest (config as JSON text) with the current record
/// matched to it: what the sync gives `reconcile`.
pub struct Workload {
    pub batches: Vec<Vec<JsonReconcileInput>>,
}

impl Workload {
    /// Pairs generated guests with their records (by position) in batches of `batch`; each
    /// config becomes the JSON text the sync sends.
    pub fn new(guests: Vec<Guest>, current: Vec<Option<NetboxVm>>, batch: usize) -> Self {
        let batch = batch.max(1);
        let mut items = guests
            .into_iter()
            .zip(current.into_iter().chain(std::iter::repeat(None)))
            .map(|(mut guest, current)| {
                let config = model::config_to_json(&std::mem::take(&mut guest.config));
                JsonReconcileInput {
                    guest,
                    config,
                    current,
                    ..JsonReconcileInput::default()
                }
            })
            .peekable();
        let mut batches = Vec::new();
        while items.peek().is_some() {
            batches.push(items.by_ref().take(batch).collect());
        }
        Workload { batches }
    }

    /// Gives every VM two NICs and two disks in its config, a guest agent answer with four
    /// addresses (an IPv4 and an IPv6 per NIC, plus loopback), and, when the VM exists, NetBox's
    /// children as a rerun finds them (two interfaces, two MACs, four IPs, two virtual disks,
    /// the primary IPv4): the like-for-like workload of a VM with its children (WIT 0.3). Built
    /// outside any timed region.
    pub fn with_children(mut self) -> Self {
        for item in self.batches.iter_mut().flatten() {
            add_children(item);
        }
        self
    }

    /// VMs in the workload.
    pub fn len(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }

    /// Whether the workload has no VM.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs the workload through a component as the sync does (its batches on `threads` threads):
/// one untimed warm-up pass, then the timed pass. Returns the timed pass and its answers.
pub fn run_wasm(
    module: &RulesModule,
    ctx: &Context,
    w: &Workload,
    threads: usize,
) -> Result<(Pass, Outputs), RulesError> {
    pass_wasm(module, ctx, w.batches.clone(), threads)?;
    let (ms, cpu_ms, (fuel, outputs)) = measure_wasm(module, ctx, w.batches.clone(), threads)?;
    // Counted outside the timed region, as the native pass's results are.
    let mut tally = Tally::default();
    outputs.iter().for_each(|o| tally.add(o));
    Ok((
        Pass {
            times: PhaseTimes::of(ms, cpu_ms, threads),
            fuel,
            tally,
        },
        outputs,
    ))
}

/// What a timed pass through the component gives: wall ms, CPU ms, then fuel and answers.
pub type WasmPass = (f64, Option<f64>, (u64, Outputs));

/// The timed pass through the component. Not inlined, and not what the warm-up calls, so
/// callgrind's `--toggle-collect` counts this pass alone (every thread's instructions).
#[inline(never)]
pub fn measure_wasm(
    module: &RulesModule,
    ctx: &Context,
    inputs: Vec<Vec<JsonReconcileInput>>,
    threads: usize,
) -> Result<WasmPass, RulesError> {
    pass_wasm(module, ctx, inputs, threads)
}

/// One pass through the component, its batches through
/// [`RulesModule::reconcile_json_batches`] as the sync's: the first failed batch fails it.
#[inline(never)]
fn pass_wasm(
    module: &RulesModule,
    ctx: &Context,
    inputs: Vec<Vec<JsonReconcileInput>>,
    threads: usize,
) -> Result<WasmPass, RulesError> {
    let (ms, cpu_ms, results) = timed(|| module.reconcile_json_batches(ctx, inputs, 0, threads));
    let mut fuel = 0;
    let mut outputs = Vec::with_capacity(results.len());
    for out in results {
        let out = out?;
        fuel += out.fuel;
        outputs.push(out.items);
    }
    Ok((ms, cpu_ms, (fuel, outputs)))
}

/// Runs the workload through a rule set compiled natively, on the same JSON input and the same
/// threads, warmed the same way as [`run_wasm`].
pub fn run_native<R: RuleSet>(ctx: &Context, w: &Workload, threads: usize) -> (Pass, Outputs) {
    pass_native::<R>(ctx, w.batches.clone(), threads);
    let (ms, cpu_ms, outputs) = measure_native::<R>(ctx, w.batches.clone(), threads);
    let mut tally = Tally::default();
    outputs.iter().for_each(|o| tally.add(o));
    (
        Pass {
            times: PhaseTimes::of(ms, cpu_ms, threads),
            fuel: 0,
            tally,
        },
        outputs,
    )
}

/// The timed native pass: (wall ms, CPU ms, answers). Not inlined, and not what the warm-up
/// calls, so profilers can measure it alone.
#[inline(never)]
pub fn measure_native<R: RuleSet>(
    ctx: &Context,
    inputs: Vec<Vec<JsonReconcileInput>>,
    threads: usize,
) -> (f64, Option<f64>, Outputs) {
    pass_native::<R>(ctx, inputs, threads)
}

/// One native pass, its batches spread over threads by the same [`parallel::map_batches`].
#[inline(never)]
fn pass_native<R: RuleSet>(
    ctx: &Context,
    inputs: Vec<Vec<JsonReconcileInput>>,
    threads: usize,
) -> (f64, Option<f64>, Outputs) {
    timed(|| parallel::map_batches(inputs, threads, |_, batch| R::reconcile_json(ctx, batch)))
}

/// The first VM whose answers differ: (its index in the workload, the WASM answer, the native
/// answer, each as debug text); `None` when every answer agrees.
pub fn first_mismatch(wasm: &Outputs, native: &Outputs) -> Option<(usize, String, String)> {
    let mut a = wasm.iter().flatten();
    let mut b = native.iter().flatten();
    let show = |r: Option<&Result<Reconciled, RuleError>>| {
        r.map_or_else(|| "(no answer)".to_string(), |r| format!("{r:?}"))
    };
    let mut i = 0;
    loop {
        match (a.next(), b.next()) {
            (None, None) => return None,
            (x, y) if x != y => return Some((i, show(x), show(y))),
            _ => i += 1,
        }
    }
}

/// See [`Workload::with_children`]. Kind-aware, so that a rerun is exact: NetBox's children are
/// what the default rules would have written from this config and network view (a QEMU guest's
/// NICs `virtio=MAC`, disks `scsi0`/`scsi1`, the agent's answer; a container's NICs
/// `name=ethN,hwaddr=MAC,ip=dhcp`, disks `rootfs`/`mp0`, the LXC interfaces answer, its IPv4s
/// `dhcp`), and the VM's `disk` is their sum, as NetBox requires once a VM has virtual disks.
/// The first version gave containers QEMU keys, which a container does not read: ~11 child
/// changes per existing container, ~2.4 per existing VM.
fn add_children(item: &mut JsonReconcileInput) {
    use crate::pipeline::snapshot::children::{
        ChildrenSnapshot, IpRef, Primaries, VMINTERFACE_TYPE,
    };
    use crate::pipeline::snapshot::primaries::PrimaryIps;
    use guest_default::children::NetworkSource;
    use guest_default::model::GuestKind;
    use serde_json::{Value, json};
    let vmid = item.guest.vmid;
    let lxc = item.guest.kind == GuestKind::Lxc;
    let mac = |nic: u32| {
        format!(
            "BC:24:{:02X}:{:02X}:{:02X}:{:02X}",
            (vmid >> 16) & 0xff,
            (vmid >> 8) & 0xff,
            vmid & 0xff,
            nic
        )
    };
    let v4 = |nic: u32| format!("10.{}.{}.{}", nic, (vmid >> 8) & 0xff, vmid & 0xff);
    // In the normal (RFC 5952) form, as NetBox returns an address and agents report one; the
    // first versions wrote `2001:db8:0::N`, a form NetBox never returns.
    let v6 = |nic: u32| match nic {
        0 => format!("2001:db8::{vmid:x}"),
        _ => format!("2001:db8:{nic}::{vmid:x}"),
    };
    let mut config: serde_json::Map<String, Value> =
        serde_json::from_str(&item.config).unwrap_or_default();
    // The generator's own NIC and disks are replaced by the workload's.
    for key in ["net0", "rootfs", "scsi0", "scsi1"] {
        config.remove(key);
    }
    let (disk_keys, nic_model) = if lxc {
        (["rootfs", "mp0"], "veth")
    } else {
        config.insert("agent".into(), json!("1"));
        (["scsi0", "scsi1"], "virtio")
    };
    for nic in 0..2 {
        let value = if lxc {
            format!(
                "name=eth{nic},bridge=vmbr{nic},hwaddr={},ip=dhcp,type=veth",
                mac(nic)
            )
        } else {
            format!("virtio={},bridge=vmbr{nic}", mac(nic))
        };
        config.insert(format!("net{nic}"), json!(value));
    }
    let mp = if lxc { ",mp=/data" } else { "" };
    config.insert(
        disk_keys[0].into(),
        json!(format!("local-lvm:vm-{vmid}-disk-0,size=32G")),
    );
    config.insert(
        disk_keys[1].into(),
        json!(format!("local-lvm:vm-{vmid}-disk-1{mp},size=64G")),
    );
    item.config = Value::Object(config).to_string();
    let mut answer = vec![
        json!({"name": "lo", "hardware-address": "00:00:00:00:00:00",
        "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]}),
    ];
    let (t4, t6) = if lxc {
        ("inet", "inet6")
    } else {
        ("ipv4", "ipv6")
    };
    for nic in 0..2 {
        answer.push(json!({"name": format!("eth{nic}"),
            "hardware-address": mac(nic).to_lowercase(),
            "ip-addresses": [
                {"ip-address": v4(nic), "ip-address-type": t4, "prefix": 24},
                {"ip-address": v6(nic), "ip-address-type": t6, "prefix": 64}]}));
    }
    let answer = model::JsonText(Value::Array(answer).to_string());
    item.network = if lxc {
        NetworkSource::LxcInterfaces(answer)
    } else {
        NetworkSource::Agent(answer)
    };
    let Some(current) = item.current.as_mut() else {
        return;
    };
    current.disk = Some(32768 + 65536);
    // NetBox's rows as its API lists them, rendered by the sync's own code: the rules read
    // exactly the text a sync sends them.
    let tags = json!([{"id": 1, "name": "pve2netbox", "slug": "pve2netbox"}]);
    let v4_status = if lxc { "dhcp" } else { "active" };
    let (mut ifaces, mut macs, mut ips) = (Vec::new(), Vec::new(), Vec::new());
    for nic in 0..2u64 {
        let iface = 100 + nic;
        ifaces.push(
            json!({"id": iface, "virtual_machine": {"id": 1}, "name": format!("net{nic}"),
            "enabled": true, "mtu": null, "description": format!("{nic_model} on vmbr{nic}"),
            "mode": null, "untagged_vlan": null, "primary_mac_address": {"id": 200 + nic,
            "mac_address": mac(nic as u32)}, "mac_address": mac(nic as u32), "tags": tags}),
        );
        macs.push(json!({"id": 200 + nic, "mac_address": mac(nic as u32),
            "assigned_object_type": VMINTERFACE_TYPE, "assigned_object_id": iface,
            "tags": tags}));
        ips.push(
            json!({"id": 300 + 2 * nic, "address": format!("{}/24", v4(nic as u32)),
            "vrf": null, "status": {"value": v4_status, "label": v4_status},
            "assigned_object_type": VMINTERFACE_TYPE, "assigned_object_id": iface,
            "tags": tags}),
        );
        ips.push(
            json!({"id": 301 + 2 * nic, "address": format!("{}/64", v6(nic as u32)),
            "vrf": null, "status": {"value": "active", "label": "Active"},
            "assigned_object_type": VMINTERFACE_TYPE, "assigned_object_id": iface,
            "tags": tags}),
        );
    }
    let disks = json!([
        {"id": 400, "virtual_machine": {"id": 1}, "name": disk_keys[0], "size": 32768,
         "description": "local-lvm", "tags": tags},
        {"id": 401, "virtual_machine": {"id": 1}, "name": disk_keys[1], "size": 65536,
         "description": "local-lvm", "tags": tags}]);
    fn rows_of<T: serde::de::DeserializeOwned>(v: Value) -> Vec<T> {
        serde_json::from_value(v).expect("the workload's rows are NetBox's shape")
    }
    let mut snapshot = ChildrenSnapshot::from_rows(
        rows_of(Value::Array(ifaces)),
        rows_of(Value::Array(macs)),
        rows_of(Value::Array(ips)),
        rows_of(disks),
    );
    let primaries = Primaries {
        ip4: Some(IpRef {
            id: 300,
            address: format!("{}/24", v4(0)),
        }),
        ip6: Some(IpRef {
            id: 301,
            address: format!("{}/64", v6(0)),
        }),
    };
    snapshot.set_primaries(PrimaryIps::from_iter([(1, primaries)]));
    let children = snapshot
        .children_json(1)
        .expect("every kind of the workload is read");
    item.children = Some(model::JsonText(children));
}

#[cfg(test)]
mod tests {
    use guest_default::DefaultRules;
    use guest_default::children::ChildOp;

    use super::*;
    use crate::rules::generate;

    /// The context of a run after the first: once the objects the first pass asked for are
    /// known, no VM asks for any, and the rest of each answer is the same.
    #[test]
    fn known_objects_from_the_needs_leave_none_needed() {
        let guests = generate::guests("bench", 300, 1);
        let current = generate::current_records(&guests, 1);
        let w = Workload::new(guests, current, 64);
        let mut ctx = Context {
            policies: DefaultRules::default_policies(),
            ..Context::default()
        };
        let (_, first) = run_native::<DefaultRules>(&ctx, &w, 1);
        let known = known_from_needs(&first);
        let kinds: std::collections::BTreeSet<&str> =
            known.iter().map(|k| k.kind.as_str()).collect();
        assert!(
            kinds.contains("platform") && kinds.contains("tag"),
            "{kinds:?}"
        );
        let mut pairs: Vec<_> = known.iter().map(|k| (&k.kind, &k.key)).collect();
        pairs.sort();
        pairs.dedup();
        assert_eq!(pairs.len(), known.len(), "each object once");
        ctx.known = known.clone();
        let (_, later) = run_native::<DefaultRules>(&ctx, &w, 1);
        for (a, b) in first.iter().flatten().zip(later.iter().flatten()) {
            match (a, b) {
                (Ok(Reconciled::Vm(a)), Ok(Reconciled::Vm(b))) => {
                    assert!(b.needs.is_empty(), "{:?}", b.needs);
                    assert_eq!((&a.name, &a.changes), (&b.name, &b.changes));
                }
                (a, b) => assert_eq!(a, b),
            }
        }
    }

    /// `--children` is an exact rerun: every VM that exists gets no child change (and no
    /// `disk` change), containers included; a created VM gets its two interfaces, two MACs,
    /// four IPs and two disks.
    #[test]
    fn the_children_workload_is_an_exact_rerun() {
        let guests = generate::guests("bench", 200, 1);
        let current = generate::current_records(&guests, 1);
        let exists: Vec<bool> = current.iter().map(Option::is_some).collect();
        let lxc = guests
            .iter()
            .zip(&exists)
            .filter(|(g, e)| **e && g.kind == guest_default::model::GuestKind::Lxc)
            .count();
        assert!(lxc > 10, "the workload should have existing containers");
        let w = Workload::new(guests, current, 50).with_children();
        // As `rules bench` calls: the module's default policies, nothing else.
        let ctx = Context {
            policies: DefaultRules::default_policies(),
            ..Context::default()
        };
        let (_, outputs) = run_native::<DefaultRules>(&ctx, &w, 2);
        for (i, (r, exists)) in outputs.iter().flatten().zip(exists).enumerate() {
            let Ok(Reconciled::Vm(v)) = r else {
                panic!("VM {i}: {r:?}")
            };
            if exists {
                assert!(v.children.is_empty(), "VM {i}: {:?}", v.children);
                assert!(v.changes.iter().all(|c| c.field != "disk"), "VM {i}");
            } else {
                assert_eq!(v.children.len(), 10, "VM {i}: {:?}", v.children);
                assert!(v.children.iter().all(|c| c.op == ChildOp::Create));
            }
        }
    }
}
