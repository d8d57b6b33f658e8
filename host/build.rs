//! Builds the default rules component (`guest-default`) for `wasm32-wasip2` and embeds it.
//!
//! Like wasmtime's `crates/test-programs/artifacts/build.rs`: a nested `cargo build` with its own
//! `CARGO_TARGET_DIR` under `OUT_DIR` (the outer build holds the lock of the shared `target/`, so
//! sharing it would deadlock), the outer flags removed (they are for the host target), exact
//! `rerun-if-changed` lines from the guest's `.d` dep file, and a generated `default_rules.rs`
//! that `host/src/rules/embedded.rs` includes (`include_bytes!` needs a literal path).
//!
//! `PVE2NETBOX_DEFAULT_RULES_WASM=/path/to/rules.wasm` skips the nested build and embeds that file
//! instead (for packagers who build the component separately).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_PACKAGE: &str = "guest-default";
const GUEST_ARTIFACT: &str = "guest_default";
const TARGET: &str = "wasm32-wasip2";
const PREBUILT_ENV: &str = "PVE2NETBOX_DEFAULT_RULES_WASM";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ lives inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    git_commit(&workspace);
    polyglot_tools(&workspace);
    println!("cargo:rerun-if-env-changed={PREBUILT_ENV}");
    // `--version` names the embedded rules from `guest-default` itself unless they are prebuilt.
    println!(
        "cargo:rustc-env=PVE2NETBOX_EMBEDDED_RULES={}",
        if env::var_os(PREBUILT_ENV).is_some() {
            "prebuilt"
        } else {
            GUEST_PACKAGE
        }
    );
    let wasm = match env::var_os(PREBUILT_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            assert!(
                path.is_file(),
                "{PREBUILT_ENV}={} is not a file; unset it to build `{GUEST_PACKAGE}` here",
                path.display()
            );
            path
        }
        None => build_guest(&workspace, &out_dir),
    };

    // Copy next to the generated source so the embedded bytes do not depend on the nested target
    // dir staying as it is.
    let embedded = out_dir.join("default_rules.wasm");
    fs::copy(&wasm, &embedded).unwrap_or_else(|e| {
        panic!(
            "cannot copy {} to {}: {e}",
            wasm.display(),
            embedded.display()
        )
    });
    let source = format!(
        "/// The default rules component (`{GUEST_PACKAGE}` built for `{TARGET}`), embedded at build time.\n\
         pub(crate) static DEFAULT_RULES_WASM: &[u8] = include_bytes!({:?});\n",
        embedded.display().to_string()
    );
    fs::write(out_dir.join("default_rules.rs"), source).expect("write default_rules.rs");
}

/// Sets `cfg(polyglot_python)` and `cfg(polyglot_js)` when the tools that build the Python and
/// JavaScript rule modules of `tests/` (componentize-py, componentize-js) are installed where the
/// README's command puts them, so `host/tests/rules_polyglot.rs` builds and tests the modules;
/// without them those tests are ignored, with the install command as the reason. Watches the
/// tool when present, else its directory (installing the tools adds to it).
fn polyglot_tools(workspace: &Path) {
    for (cfg, dir, tool) in [
        (
            "polyglot_python",
            "tests/rules-python",
            ".venv/bin/componentize-py",
        ),
        (
            "polyglot_js",
            "tests/rules-js",
            "node_modules/.bin/componentize-js",
        ),
    ] {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
        let path = workspace.join(dir).join(tool);
        if path.is_file() {
            println!("cargo:rustc-cfg={cfg}");
            println!("cargo:rerun-if-changed={}", path.display());
        } else {
            println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
        }
    }
}

/// Sets `PVE2NETBOX_GIT_COMMIT` for `--version`: `$PVE2NETBOX_GIT_COMMIT` when set (packagers
/// building from a tarball of a known commit), else `git rev-parse --short HEAD` in a checkout,
/// else `unknown` (a tarball without git must still build).
fn git_commit(workspace: &Path) {
    const COMMIT_ENV: &str = "PVE2NETBOX_GIT_COMMIT";
    println!("cargo:rerun-if-env-changed={COMMIT_ENV}");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = env::var(COMMIT_ENV)
        .ok()
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rerun when HEAD moves: HEAD itself (a checkout), the branch it points at (a commit),
    // packed refs. Only files that exist: cargo reruns a script on every build for a missing one.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).is_file()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env={COMMIT_ENV}={commit}");
}

/// Runs the nested `cargo build` and returns the component's path.
fn build_guest(workspace: &Path, out_dir: &Path) -> PathBuf {
    ensure_target();
    let target_dir = out_dir.join("guest-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--package")
        .arg(GUEST_PACKAGE)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        // The workspace's release profile keeps line tables for host backtraces; the embedded
        // component does not need them (2.8 MB vs ~0.2 MB, and slower to compile at load).
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        // Outer flags and wrappers are for the host target (and clippy), not for the guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CARGO_BUILD_TARGET");
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run `cargo build --target {TARGET} -p {GUEST_PACKAGE}`: {e}")
    });
    if !status.success() {
        if !target_installed() {
            panic!(
                "the Rust target `{TARGET}` is not installed, so the default rules cannot be built: \
                 run `rustup target add {TARGET}`, or set {PREBUILT_ENV}=/path/to/rules.wasm"
            );
        }
        panic!(
            "building the default rules (`cargo build --release --target {TARGET} -p {GUEST_PACKAGE}`) \
             failed ({status}); the compiler output is above. Fix `{GUEST_PACKAGE}`, or set \
             {PREBUILT_ENV}=/path/to/rules.wasm to embed a prebuilt component"
        );
    }

    let release = target_dir.join(TARGET).join("release");
    let wasm = release.join(format!("{GUEST_ARTIFACT}.wasm"));
    assert!(
        wasm.is_file(),
        "`cargo build` succeeded but {} is missing; is `{GUEST_PACKAGE}` still a cdylib?",
        wasm.display()
    );

    // Exact inputs from the dep file, plus the manifest and the WIT (read by a proc macro).
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join(GUEST_PACKAGE).join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    let dep_file = release.join(format!("{GUEST_ARTIFACT}.d"));
    match fs::read_to_string(&dep_file) {
        Ok(text) => {
            for dep in dep_file_inputs(&text) {
                println!("cargo:rerun-if-changed={dep}");
            }
        }
        // Without a dep file, watch the whole crate (cargo scans directories recursively).
        Err(_) => println!(
            "cargo:rerun-if-changed={}",
            workspace.join(GUEST_PACKAGE).display()
        ),
    }
    wasm
}

/// The inputs listed in a Makefile-style dep file (`out: in1 in2`, spaces escaped as `\ `).
fn dep_file_inputs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut current = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    current.push(' ');
                    chars.next();
                }
                ' ' => {
                    if !current.is_empty() {
                        out.push(std::mem::take(&mut current));
                    }
                }
                c => current.push(c),
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Adds the wasm target to the active rustup toolchain when it is missing.
///
/// rustup installs the `targets` of `rust-toolchain.toml` only when it installs the toolchain
/// itself; a machine that already had Rust 1.95.0 (or runs with `RUSTUP_AUTO_INSTALL=0`) lacks the
/// target, and the README's first command would fail after minutes of building. rustup sets
/// `RUSTUP_TOOLCHAIN` for the processes it starts, so the target goes to exactly the toolchain that
/// builds us. Without rustup (a distribution's Rust), the panic after a failed build says what to do.
fn ensure_target() {
    if target_installed() {
        return;
    }
    let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") else {
        return;
    };
    let toolchain = toolchain.to_string_lossy();
    match Command::new("rustup")
        .args(["target", "add", TARGET, "--toolchain", &toolchain])
        .status()
    {
        // Cargo shows this again on later builds of the crate (cached build-script output).
        Ok(status) if status.success() => println!(
            "cargo:warning=the Rust target `{TARGET}` was missing from toolchain {toolchain}; \
             this build added it with rustup"
        ),
        Ok(status) => println!("cargo:warning=`rustup target add {TARGET}` failed ({status})"),
        Err(e) => println!("cargo:warning=cannot run `rustup target add {TARGET}`: {e}"),
    }
}

/// True when the sysroot of the active toolchain has the wasm target's standard library.
fn target_installed() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .is_some_and(|sysroot| {
            Path::new(&sysroot)
                .join("lib/rustlib")
                .join(TARGET)
                .is_dir()
        })
}
