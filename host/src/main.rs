//! The `pve2netbox` command: everything lives in the library; this is the edge.

// glibc's allocator spent a third of the reconcile phase in malloc/free (perf, 20k VMs): the
// rules boundary moves many small strings. mimalloc's thread-local size classes are made for that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pve2netbox::cli::main()
}
