//! The `pve2netbox` command: everything lives in the library; this is the edge.

use std::ffi::{c_int, c_long};

// glibc's allocator spent a third of the reconcile phase in malloc/free (perf, 20k VMs): the
// rules boundary moves many small strings. mimalloc's thread-local size classes are made for that.
// The `system-allocator` feature keeps glibc's, for heap profilers that hook malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its index in `mi_option_t`, the same in mimalloc v3 (what
/// libmimalloc-sys builds by default) and v2. Declared by hand: libmimalloc-sys's `extended`
/// bindings list no constant for it.
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Milliseconds mimalloc waits before giving freed pages back to the OS (its default is 10,
/// and 10 times that for whole arenas). 0: at once. Why: the phases free large amounts (the
/// Proxmox listing, the rules' batches, the snapshot's pages) while the next phase allocates;
/// with the delay the freed pages stayed resident beside the new ones (peak RSS of a 20k-VM
/// rerun 175 -> 123 MiB with `MIMALLOC_PURGE_DELAY=0`, first sync 143 -> 122 MiB, same wall
/// time). `MIMALLOC_PURGE_DELAY` in the environment still decides when set.
const PURGE_DELAY_MS: c_long = 0;

unsafe extern "C" {
    /// mimalloc's option setter (in the static library the global allocator links).
    fn mi_option_set(option: c_int, value: c_long);
}

fn main() -> std::process::ExitCode {
    if cfg!(not(feature = "system-allocator")) && std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
    {
        // SAFETY: sets a plain integer option; mimalloc reads options with relaxed atomics
        // and allows setting them at any time (they take effect from the next purge).
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    pve2netbox::cli::main()
}
