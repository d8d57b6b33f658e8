//! Shared helpers of the `rules_*` integration tests: building the guest components of
//! `tests/rules-misbehaving/`, `tests/rules-example/`, `tests/rules-v0-2/` and
//! `tests/rules-v0-3/` for `wasm32-wasip2`, and small inputs.
//!
//! Guests are built with the `CARGO` that runs the tests, into `target/rules-guests` (not the
//! shared `target/` the test build holds the lock of), once per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use guest_default::model::{Context, Guest, GuestKind, JsonText};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    workspace().join("target").join("rules-guests")
}

/// Builds `packages` for wasm32-wasip2 in release; panics with cargo's output on failure.
pub fn build_guests(packages: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(workspace().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().expect("run cargo build for the test guests");
    assert!(
        out.status.success(),
        "building {packages:?} for wasm32-wasip2 failed (is the target installed? \
         `rustup target add wasm32-wasip2`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The built component of `package`.
pub fn artifact(package: &str) -> PathBuf {
    target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// The misbehaving components, built once per test binary.
pub const MISBEHAVING: &[&str] = &[
    "rules-misbehaving-runaway",
    "rules-misbehaving-other-world",
    "rules-misbehaving-imports-fs",
    "rules-misbehaving-imports-socket",
    "rules-misbehaving-imports-clock",
];

/// Path of a misbehaving component (`runaway`, `other-world`, `imports-fs`, `imports-socket`,
/// `imports-clock`).
pub fn misbehaving(which: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_guests(MISBEHAVING));
    artifact(&format!("rules-misbehaving-{which}"))
}

/// The default rules exported as a WIT 0.2 module (`tests/rules-v0-2`), built once per test
/// binary.
pub fn v0_2_module() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_guests(&["rules-v0-2"]));
    artifact("rules-v0-2")
}

/// The default rules exported as a WIT 0.3 module (`tests/rules-v0-3`), built once per test
/// binary.
pub fn v0_3_module() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_guests(&["rules-v0-3"]));
    artifact("rules-v0-3")
}

/// A QEMU guest with a small config.
pub fn guest(vmid: u32, name: &str) -> Guest {
    Guest {
        cluster: "lab".into(),
        vmid,
        kind: GuestKind::Qemu,
        node: "n1".into(),
        name: Some(name.into()),
        status: "running".into(),
        template: false,
        maxcpu: Some(2.0),
        maxmem: Some(2048 << 20),
        maxdisk: Some(32 << 30),
        tags: Some("prod;web".into()),
        pool: None,
        config: vec![
            ("name".into(), name.into()),
            ("memory".into(), "2048".into()),
            ("cores".into(), "2".into()),
            (
                "scsi0".into(),
                format!("local-lvm:vm-{vmid}-disk-0,size=32G"),
            ),
            ("ostype".into(), "l26".into()),
        ],
        config_read: true,
    }
}

/// A context whose `settings` select a misbehaviour of the runaway module.
pub fn misbehave(kind: &str, bytes: Option<usize>) -> Context {
    let mut ctx = Context::default();
    ctx.settings
        .push(("misbehave".into(), JsonText::string(kind)));
    if let Some(b) = bytes {
        ctx.settings
            .push(("bytes".into(), JsonText::uint(b as u64)));
    }
    ctx
}

/// The site example module (`tests/rules-example`), built once per test binary.
pub fn site_example() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_guests(&["rules-example"]));
    artifact("rules-example")
}
