//! Who used the CPU while the NetBox snapshot was being read: the NetBox simulator, the
//! Proxmox simulator (both threads of this bench process) or the sync (the child process).
//!
//! Why: the simulators run in the bench process on the cores the sync runs on, so a snapshot
//! phase over its bound may be the client's time or the simulator's. Sampled from `/proc`
//! every [`SAMPLE_EVERY`] while the sync runs; the window is the snapshot's listing requests
//! as the NetBox simulator counts them (from the first sample that saw one to the first that
//! saw the last one), so the rest of the run (reconcile, plan) is left out. The sync's figure
//! is its whole process: the Proxmox read runs beside the snapshot and is in it.
//!
//! Edges: the listing request count and `/proc` in; [`CpuSplit`] out (JSON for the figure's
//! detail). Linux only; elsewhere every CPU figure reads 0.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::figures::round;

/// Between samples: short against a 10 s phase, cheap against the work measured.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// `/proc` counts CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Thread names of the simulators' runtimes (`sim.rs`), as `/proc` shows them.
const NETBOX_SIM_THREADS: &str = "sim-netbox";
const PVE_SIM_THREADS: &str = "sim-pve";

/// Which simulator a thread of this process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Netbox,
    Pve,
}

/// One sample: the listing requests counted so far and the CPU seconds used so far, the
/// simulators' per thread (a thread's time leaves the process's sums when it ends, as the
/// runtimes' blocking threads do, so the window sums each thread's own difference).
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    listing_requests: u64,
    sync_s: f64,
    threads: HashMap<u64, (Side, f64)>,
}

impl Sample {
    /// Now, with `listing_requests` the snapshot listings the NetBox simulator has counted.
    pub fn take(listing_requests: u64) -> Self {
        let mut threads = HashMap::new();
        let mut sync_s = 0.0;
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let dir = task.path();
                let tid = task.file_name().to_string_lossy().parse::<u64>().ok();
                if let (Some(tid), Some((name, cpu))) = (tid, stat_cpu(&dir.join("stat"))) {
                    let side = match name.as_str() {
                        NETBOX_SIM_THREADS => Some(Side::Netbox),
                        PVE_SIM_THREADS => Some(Side::Pve),
                        _ => None,
                    };
                    if let Some(side) = side {
                        threads.insert(tid, (side, cpu));
                    }
                }
                // The sync is a child of whichever thread spawned it; a process's own figure
                // keeps the time of its ended threads.
                let kids = std::fs::read_to_string(dir.join("children")).unwrap_or_default();
                for pid in kids.split_whitespace() {
                    if let Some((_, cpu)) = stat_cpu(format!("/proc/{pid}/stat").as_ref()) {
                        sync_s += cpu;
                    }
                }
            }
        }
        Sample {
            at: Instant::now(),
            listing_requests,
            sync_s,
            threads,
        }
    }
}

/// The comm name and user + system CPU seconds of a `/proc/.../stat` file.
fn stat_cpu(path: &std::path::Path) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    // After the name: state is field 3, utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SECOND))
}

/// CPU seconds used in the snapshot's window, per side.
#[derive(Debug, Clone, Copy)]
pub struct CpuSplit {
    window_s: f64,
    sync_s: f64,
    netbox_sim_s: f64,
    pve_sim_s: f64,
}

impl CpuSplit {
    /// The window from the first sample that counted a listing request to the first that
    /// counted the last one; `None` when the samples saw no listing.
    pub fn of(samples: &[Sample]) -> Option<Self> {
        let last = samples.last()?.listing_requests;
        let start = samples
            .iter()
            .position(|s| s.listing_requests > 0)
            .map(|i| i.saturating_sub(1))?;
        let end = samples.iter().position(|s| s.listing_requests == last)?;
        let window = &samples[start..=end];
        let (a, b) = (&window[0], &window[window.len() - 1]);
        // Each simulator thread's time from its first to its last sample in the window (a
        // thread started inside it from 0, one that ended inside it up to its last sample).
        let mut first: HashMap<u64, f64> = a.threads.iter().map(|(t, (_, c))| (*t, *c)).collect();
        let mut last: HashMap<u64, (Side, f64)> = HashMap::new();
        for s in window {
            for (tid, (side, cpu)) in &s.threads {
                first.entry(*tid).or_insert(0.0);
                last.insert(*tid, (*side, *cpu));
            }
        }
        let side_s = |want: Side| -> f64 {
            last.iter()
                .filter(|(_, (side, _))| *side == want)
                .map(|(tid, (_, cpu))| (cpu - first.get(tid).copied().unwrap_or(0.0)).max(0.0))
                .sum()
        };
        Some(CpuSplit {
            window_s: b.at.duration_since(a.at).as_secs_f64(),
            sync_s: (b.sync_s - a.sync_s).max(0.0),
            netbox_sim_s: side_s(Side::Netbox),
            pve_sim_s: side_s(Side::Pve),
        })
    }

    /// One line for the progress output.
    pub fn line(&self) -> String {
        format!(
            "  snapshot CPU over its {:.1} s of listing requests: sync process {:.1} s (with its Proxmox read), NetBox simulator {:.1} s, Proxmox simulator {:.1} s ({:.2} of {} cores busy)",
            self.window_s,
            self.sync_s,
            self.netbox_sim_s,
            self.pve_sim_s,
            self.cores_busy(),
            cores()
        )
    }

    fn cores_busy(&self) -> f64 {
        if self.window_s > 0.0 {
            (self.sync_s + self.netbox_sim_s + self.pve_sim_s) / self.window_s
        } else {
            0.0
        }
    }

    /// The figure's detail.
    pub fn json(&self) -> Value {
        json!({
            "window_s": round(self.window_s),
            "sync_process_cpu_s": round(self.sync_s),
            "netbox_simulator_cpu_s": round(self.netbox_sim_s),
            "proxmox_simulator_cpu_s": round(self.pve_sim_s),
            "cores_busy": round(self.cores_busy()),
            "cores": cores(),
            "how": "user + system CPU from /proc every 50 ms while the sync ran, between the first and the last snapshot listing request the NetBox simulator counted; the sync process includes its Proxmox read (it runs beside the snapshot); other processes on the machine are not counted (see machine.load)",
        })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
