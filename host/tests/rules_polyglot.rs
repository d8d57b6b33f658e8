//! The example site's rules written in Python (`tests/rules-python/`, componentize-py) and in
//! JavaScript (`tests/rules-js/`, componentize-js) are built and pass the fixtures of
//! `tests/rules-example/` through `pve2netbox rules test`, as the Rust example does; they build on
//! the host's default rules (world `site-rules`, the `defaults` import), and the no-op memo knows
//! it.
//!
//! The tools are installed by the README's command (a Python venv and an npm directory inside
//! the repo, nothing global). Where they are missing, `host/build.rs` leaves `cfg(polyglot_python)`
//! / `cfg(polyglot_js)` unset and these tests are ignored with the install command as the reason.

#![cfg_attr(
    not(any(polyglot_python, polyglot_js)),
    allow(dead_code, unused_imports)
)]

mod rules_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pve2netbox::rules::{CacheMode, Limits, RulesRuntime, RuntimeConfig};
use rules_common::workspace;

/// Where the components and their compiled cache go (beside the Rust test guests).
fn out_dir() -> PathBuf {
    let dir = workspace()
        .join("target")
        .join("rules-guests")
        .join("polyglot");
    std::fs::create_dir_all(&dir).expect("create target/rules-guests/polyglot");
    dir
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `componentize-py` from the venv the README's install command makes.
fn build_python() -> PathBuf {
    let ws = workspace();
    let out = out_dir().join("rules_python.wasm");
    run(
        Command::new(ws.join("tests/rules-python/.venv/bin/componentize-py"))
            .current_dir(ws.join("tests/rules-python"))
            .arg("--wit-path")
            .arg(ws.join("wit/v0.3.0"))
            .args(["--world", "site-rules", "componentize", "app", "--output"])
            .arg(&out),
        "componentize-py",
    );
    out
}

/// `componentize-js` from the npm directory the README's install command fills.
fn build_js() -> PathBuf {
    let ws = workspace();
    let out = out_dir().join("rules_js.wasm");
    // Run from the workspace: componentize-js reads the WIT through a sandbox rooted there.
    run(
        Command::new(ws.join("tests/rules-js/node_modules/.bin/componentize-js"))
            .current_dir(&ws)
            .args([
                "tests/rules-js/rules.js",
                "--wit",
                "wit/v0.3.0",
                "--world-name",
                "site-rules",
                "--disable",
                "stdio",
                "random",
                "clocks",
                "http",
                "fetch-event",
                "--out",
            ])
            .arg(&out),
        "componentize-js",
    );
    out
}

/// `pve2netbox rules test MODULE tests/rules-example/fixtures/` passes every fixture.
fn passes_the_example_fixtures(module: &Path, name: &str) {
    let fixtures = workspace().join("tests/rules-example/fixtures");
    let count = std::fs::read_dir(&fixtures)
        .expect("fixtures")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert!(
        count >= 7,
        "expected the example's 7 fixtures, found {count}"
    );
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_pve2netbox"))
            .args(["--log", "warn", "rules", "test"])
            .arg(module)
            .arg(&fixtures)
            .arg("--cache-dir")
            .arg(out_dir().join("cache")),
        "pve2netbox rules test",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("({name} 0.1.0, WIT 0.3.0")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{count} passed, 0 failed")),
        "{stdout}"
    );
    // `rules test` also checks that the answers do not depend on the batch (the memo's promise).
    assert!(stdout.contains("PURE"), "{stdout}");
}

/// The module imports the default rules, so its memo key is not its file's hash alone: a new
/// pve2netbox (new default rules) must not reuse answers the old one memoized.
fn builds_on_the_host_default_rules(module: &Path) {
    let rt = RulesRuntime::new(RuntimeConfig {
        limits: Limits::default(),
        cache: CacheMode::Dir(out_dir().join("cache")),
    })
    .expect("runtime");
    let m = rt.load_file(module).expect("load");
    assert!(m.imports_defaults(), "{:?}", m.imports());
    assert_ne!(m.memo_key(), m.sha256());
    assert!(!rt.load_default().expect("default").imports_defaults());
}

#[test]
#[cfg_attr(
    not(polyglot_python),
    ignore = "componentize-py is not installed: python3 -m venv tests/rules-python/.venv && \
              tests/rules-python/.venv/bin/pip install -r tests/rules-python/requirements.txt"
)]
fn python_module_passes_the_example_fixtures() {
    let module = build_python();
    passes_the_example_fixtures(&module, "rules-python");
    builds_on_the_host_default_rules(&module);
}

#[test]
#[cfg_attr(
    not(polyglot_js),
    ignore = "componentize-js is not installed: npm ci --prefix tests/rules-js"
)]
fn javascript_module_passes_the_example_fixtures() {
    let module = build_js();
    passes_the_example_fixtures(&module, "rules-js");
    builds_on_the_host_default_rules(&module);
}
