//! The `pve2netbox` command: everything lives in the library; this is the edge.

fn main() -> std::process::ExitCode {
    pve2netbox::cli::main()
}
