//! The `pve2netbox` command: everything lives in the library; this is the edge.

// glibc's allocator spent a third of the reconcile phase in malloc/free (perf, 20k VMs): the
// rules boundary moves many small strings. mimalloc's thread-local size classes are made for that.
// The `system-allocator` feature keeps glibc's, for heap profilers that hook malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(target_os = "linux", not(feature = "system-allocator")))]
mod mimalloc_options {
    use std::ffi::{CStr, c_char, c_int, c_long};

    /// mimalloc options this tool sets, each unless its environment variable is set: the index
    /// in `mi_option_t` (the same in mimalloc v3, what libmimalloc-sys builds by default, and
    /// v2; declared by hand: libmimalloc-sys's `extended` bindings list no constants for them),
    /// the value, and the variable.
    ///
    /// - `purge_delay` 0 (default 10 ms, and 10 times that for whole arenas): freed pages go
    ///   back to the OS at once. The phases free large amounts (the Proxmox listing, the rules'
    ///   batches, the snapshot's pages) while the next phase allocates; with the delay the freed
    ///   pages stayed resident beside the new ones (peak RSS of a 20k-VM rerun 175 -> 123 MiB,
    ///   first sync 143 -> 122 MiB, same wall time).
    /// - `arena_eager_commit` 0 (default 2: on Linux, arenas are committed up front): freed
    ///   pages of an eagerly committed arena stayed resident; committed on demand, they are
    ///   purged (100k-VM rerun, `/usr/bin/time` max RSS 311-321 -> 289-305 MB).
    const MI_OPTIONS: [(c_int, c_long, &CStr); 2] = [
        (15, 0, c"MIMALLOC_PURGE_DELAY"),
        (4, 0, c"MIMALLOC_ARENA_EAGER_COMMIT"),
    ];

    unsafe extern "C" {
        /// mimalloc's option setter (in the static library the global allocator links).
        fn mi_option_set(option: c_int, value: c_long);
        /// The C library's: `std::env` would allocate, and this runs before the first
        /// allocation.
        fn getenv(name: *const c_char) -> *mut c_char;
    }

    /// Runs [`set`] as a constructor, before Rust's runtime allocates anything: mimalloc
    /// reserves its first arena at the first allocation, with the options then in force (set
    /// in `main`, `arena_eager_commit` came too late and changed nothing).
    #[used]
    #[unsafe(link_section = ".init_array")]
    static SET_AT_LOAD: extern "C" fn() = set;

    extern "C" fn set() {
        for (option, value, env) in MI_OPTIONS {
            // SAFETY: `getenv` reads a NUL-terminated name; `mi_option_set` sets a plain
            // integer option (mimalloc reads options with relaxed atomics, at any time).
            unsafe {
                if getenv(env.as_ptr()).is_null() {
                    mi_option_set(option, value);
                }
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    pve2netbox::cli::main()
}
