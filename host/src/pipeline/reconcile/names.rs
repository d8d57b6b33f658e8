//! Name uniqueness inside a NetBox cluster: NetBox refuses a second VM whose name equals another's
//! case-insensitively (`lower(name)`, per cluster and tenant; we check per cluster, which is
//! stricter and needs no tenant knowledge).
//!
//! Given the VMs that will be written or kept (claims) and the snapshot, decide which claims must
//! be skipped and in which order renames must run so that a name is freed before it is taken.
//! Decisions (each tested in `classify`'s tests):
//! - Two guests wanting the same name: the one whose NetBox VM already has it wins, else the
//!   lowest VMID; the other is skipped with a reason naming both. No `name (2)` suffixes. VMs
//!   that already share a name in NetBox (other tenants) are left as they are.
//! - A name held by a NetBox VM this run does not write (an orphan, an unowned VM that is not
//!   adopted, a skipped or failed guest's VM): the claim is skipped with a reason naming it.
//! - A rename chain (A takes B's old name while B is renamed away) is ordered: B first. A cycle
//!   (A and B swap names) cannot be written as it is, since NetBox never holds two VMs of one
//!   name: the member with the lowest VMID is parked under a temporary name
//!   ([`parking_name`]) this run, which frees its old name for the others, and takes its own
//!   name on the next run (a plain rename by then). Two runs, no operator: a cycle left alone
//!   would be skipped on every run for good.

use std::collections::{BTreeMap, BTreeSet};

use super::snapshot::{IdentityField, NetboxRecord, Snapshot, name_key};

/// A VM that will hold `final_name` after this run's writes.
#[derive(Debug, Clone)]
pub(crate) struct Claim<'a> {
    pub cluster_id: u64,
    pub vmid: u32,
    /// `cluster/node/vmid` of the guest.
    pub scope: String,
    pub final_name: String,
    /// The NetBox VM written (update, adopt, noop); `None` for a create.
    pub record: Option<&'a NetboxRecord>,
}

impl Claim<'_> {
    fn key(&self) -> (u64, String) {
        (self.cluster_id, name_key(&self.final_name))
    }

    /// True when the claim's NetBox VM already has the name `key` (case-insensitively).
    fn holds(&self, key: &str) -> bool {
        self.record.is_some_and(|r| name_key(r.vm.name()) == key)
    }
}

/// The name a VM of a rename cycle holds for one run (see the module documentation). Why this
/// form: unique in its cluster (one VMID each), well within NetBox's 64 characters, and it says
/// which tool set it.
pub(crate) fn parking_name(vmid: u32) -> String {
    format!("pve2netbox-swap-{vmid}")
}

/// The verdict for one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it after the renames of these VMIDs (same cluster).
    Keep { after: Vec<u32> },
    /// Write it with the name `name` instead of its own (a rename cycle is broken through it),
    /// after the renames of these VMIDs.
    Park { name: String, after: Vec<u32> },
    /// Leave it alone, with the reason.
    Skip(String),
}

/// Decides every claim; one verdict per claim, in order. (A parked claim takes its temporary name
/// in `claims`, so every rule sees the name it writes.)
pub(crate) fn resolve(mut claims: Vec<Claim<'_>>, snapshot: &Snapshot) -> Vec<Verdict> {
    let mut parked = vec![false; claims.len()];
    let mut skipped: Vec<Option<String>> = vec![None; claims.len()];
    // Each pass skips or parks at least one claim (a claim is parked at most once) or ends, so
    // this terminates within 2n+1 passes.
    loop {
        let active: Vec<usize> = (0..claims.len())
            .filter(|&i| skipped[i].is_none())
            .collect();
        if skip_shared_records(&claims, &active, &mut skipped)
            || skip_same_name(&claims, &active, &mut skipped)
            || skip_held_names(&claims, &active, snapshot, &mut skipped)
        {
            continue;
        }
        match order_renames(&claims, &active) {
            Ok(after) => {
                return (0..claims.len())
                    .map(|i| {
                        let after = after.get(&i).cloned().unwrap_or_default();
                        match skipped[i].take() {
                            Some(reason) => Verdict::Skip(reason),
                            None if parked[i] => Verdict::Park {
                                name: std::mem::take(&mut claims[i].final_name),
                                after,
                            },
                            None => Verdict::Keep { after },
                        }
                    })
                    .collect();
            }
            Err(Stuck { waiting, cycle }) => {
                // The cycle's lowest VMID not parked yet; none left only if a parking name is
                // itself part of a cycle (a VM already named so renamed away): then skip.
                let park = cycle
                    .iter()
                    .copied()
                    .filter(|&i| !parked[i])
                    .min_by_key(|&i| claims[i].vmid);
                if let Some(i) = park {
                    claims[i].final_name = parking_name(claims[i].vmid);
                    parked[i] = true;
                    continue;
                }
                for i in waiting {
                    skipped[i] = Some(format!(
                        "rename of NetBox VM to '{}' is part of a rename cycle in this cluster \
                         that a temporary name cannot break; NetBox cannot hold both names at \
                         once, rename one of them by hand",
                        claims[i].final_name
                    ));
                }
            }
        }
    }
}

/// Two guests adopting one NetBox VM: the lowest VMID adopts it. Returns true when it skipped any.
fn skip_shared_records(
    claims: &[Claim<'_>],
    active: &[usize],
    skipped: &mut [Option<String>],
) -> bool {
    let mut by_record: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for &i in active {
        if let Some(record) = claims[i].record {
            by_record.entry(record.id()).or_default().push(i);
        }
    }
    let mut any = false;
    for (_, mut members) in by_record.into_iter().filter(|(_, m)| m.len() > 1) {
        members.sort_by_key(|&i| claims[i].vmid);
        let w = &claims[members[0]];
        for &i in &members[1..] {
            let c = &claims[i];
            skipped[i] = Some(format!(
                "{} and {} both match {} by name case-insensitively; NetBox allows one: \
                 kept {}, skipped {}",
                w.scope,
                c.scope,
                c.record.map(NetboxRecord::label).unwrap_or_default(),
                w.scope,
                c.scope
            ));
            any = true;
        }
    }
    any
}

/// Two active claims on one name: keep one. Returns true when it skipped any.
fn skip_same_name(claims: &[Claim<'_>], active: &[usize], skipped: &mut [Option<String>]) -> bool {
    let mut groups: BTreeMap<(u64, String), Vec<usize>> = BTreeMap::new();
    for &i in active {
        groups.entry(claims[i].key()).or_default().push(i);
    }
    let mut any = false;
    for ((_, key), members) in groups.into_iter().filter(|(_, m)| m.len() > 1) {
        // VMs that already have the name in NetBox stay as they are (NetBox holds them today,
        // e.g. in different tenants); only a new claim on the name can collide.
        let mut members = members;
        members.sort_by_key(|&i| claims[i].vmid);
        let (holding, taking): (Vec<usize>, Vec<usize>) =
            members.iter().partition(|&&i| claims[i].holds(&key));
        let winner = match (holding.first(), taking.first()) {
            (Some(&w), _) => w,
            (None, Some(&w)) => w,
            (None, None) => continue,
        };
        let w = &claims[winner];
        for &i in taking.iter().filter(|&&i| i != winner) {
            let c = &claims[i];
            skipped[i] = Some(format!(
                "name '{}' of {} collides case-insensitively with '{}' of {} in this cluster; \
                 NetBox allows one: kept {}, skipped {}",
                c.final_name, c.scope, w.final_name, w.scope, w.scope, c.scope
            ));
            any = true;
        }
    }
    any
}

/// A claim on a name held by a NetBox VM this run leaves as it is. Returns true when it skipped any.
fn skip_held_names(
    claims: &[Claim<'_>],
    active: &[usize],
    snapshot: &Snapshot,
    skipped: &mut [Option<String>],
) -> bool {
    let written: BTreeSet<u64> = active
        .iter()
        .filter_map(|&i| claims[i].record.map(NetboxRecord::id))
        .collect();
    let mut holders: BTreeMap<(u64, String), &NetboxRecord> = BTreeMap::new();
    for record in snapshot.records() {
        if !written.contains(&record.id()) {
            holders
                .entry((record.cluster_id, name_key(record.vm.name())))
                .or_insert(record);
        }
    }
    let mut any = false;
    for &i in active {
        let key = claims[i].key();
        if claims[i].holds(&key.1) {
            continue;
        }
        if let Some(holder) = holders.get(&key) {
            let whose = match &holder.identity {
                IdentityField::Valid(vmid) => {
                    format!("proxmox_vm_id {vmid}, not written in this run")
                }
                IdentityField::Absent => "no proxmox_vm_id, not adopted".to_owned(),
                IdentityField::Invalid(v) => format!("invalid proxmox_vm_id {v}"),
            };
            skipped[i] = Some(format!(
                "name '{}' is taken case-insensitively in this cluster by {} ({whose}); \
                 NetBox allows one",
                claims[i].final_name,
                holder.label()
            ));
            any = true;
        }
    }
    any
}

/// Claims that cannot be ordered: all of them (`waiting`: caught in a rename cycle or waiting on
/// one), and the claims of one cycle among them.
struct Stuck {
    waiting: Vec<usize>,
    cycle: Vec<usize>,
}

/// For each active claim, the VMIDs whose renames free its name.
fn order_renames(
    claims: &[Claim<'_>],
    active: &[usize],
) -> Result<BTreeMap<usize, Vec<u32>>, Stuck> {
    // The claims renaming a NetBox VM away from its current name, by (cluster, that name):
    // indexed once so a first sync of N creates is O(N log N), not N x N scans.
    let mut renamed_away: BTreeMap<(u64, String), Vec<usize>> = BTreeMap::new();
    for &j in active {
        if let Some(record) = claims[j].record {
            let held = name_key(record.vm.name());
            if claims[j].key().1 != held {
                renamed_away
                    .entry((claims[j].cluster_id, held))
                    .or_default()
                    .push(j);
            }
        }
    }
    let mut deps: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in active {
        let key = claims[i].key();
        if claims[i].holds(&key.1) {
            continue;
        }
        // The VMs renamed away from the name this claim takes.
        let freed_by: Vec<usize> = renamed_away
            .get(&key)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&j| j != i)
            .collect();
        if !freed_by.is_empty() {
            deps.insert(i, freed_by);
        }
    }
    // Kahn's algorithm: whatever cannot be placed waits on a cycle.
    let mut placed: BTreeSet<usize> = active
        .iter()
        .copied()
        .filter(|i| !deps.contains_key(i))
        .collect();
    loop {
        let ready: Vec<usize> = deps
            .iter()
            .filter(|(i, d)| !placed.contains(i) && d.iter().all(|j| placed.contains(j)))
            .map(|(i, _)| *i)
            .collect();
        if ready.is_empty() {
            break;
        }
        placed.extend(ready);
    }
    let stuck: Vec<usize> = deps
        .keys()
        .copied()
        .filter(|i| !placed.contains(i))
        .collect();
    if !stuck.is_empty() {
        let cycle = one_cycle(&deps, &placed, stuck[0]);
        return Err(Stuck {
            waiting: stuck,
            cycle,
        });
    }
    Ok(deps
        .into_iter()
        .map(|(i, d)| (i, d.iter().map(|&j| claims[j].vmid).collect()))
        .collect())
}

/// The claims of one dependency cycle, found by walking from the unplaced claim `start`. Why a
/// walk finds one: an unplaced claim waits on at least one unplaced claim (else Kahn's algorithm
/// would have placed it), so following those never ends and must come back to a claim it saw.
fn one_cycle(
    deps: &BTreeMap<usize, Vec<usize>>,
    placed: &BTreeSet<usize>,
    start: usize,
) -> Vec<usize> {
    let mut path: Vec<usize> = Vec::new();
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    let mut at = start;
    loop {
        if let Some(&from) = seen.get(&at) {
            return path.split_off(from);
        }
        seen.insert(at, path.len());
        path.push(at);
        let next = deps
            .get(&at)
            .and_then(|d| d.iter().copied().find(|j| !placed.contains(j)));
        match next {
            Some(j) => at = j,
            // Not reached (see above); an empty cycle makes the caller skip the claims instead.
            None => return Vec::new(),
        }
    }
}
