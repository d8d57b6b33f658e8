//! The rule author's loop through the real binary: `rules new` scaffolds a crate that builds
//! and passes `rules test`; a failing fixture shows a field-level diff and `rules test --update`
//! rewrites its expected answer showing what changed; a module that traps names the fixture,
//! the VM and the function, in `rules test` and `rules replay` (where only that VM fails).

mod rules_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rules_common::{misbehaving, workspace};

fn bin(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pve2netbox"))
        .args(["--log", "warn", "rules"])
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .expect("run pve2netbox")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fixture of the default rules whose expected memory change is wrong (2048 instead of 4096).
fn copy_with_wrong_expectation(dir: &Path) -> PathBuf {
    let src = workspace().join("guest-default/fixtures/noop-current-equals-desired.json");
    let text = std::fs::read_to_string(&src).expect("fixture");
    // The record says 4096 MiB like the guest; make the record 2048 so the answer is a
    // memory change, and leave `expect.changes` at `[]`: the fixture now fails.
    let text = text.replacen("\"memory\": 4096,", "\"memory\": 2048,", 1);
    assert!(text.contains("\"memory\": 2048,"), "fixture shape changed");
    let path = dir.join("memory.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_failing_fixture_shows_a_field_diff_and_update_rewrites_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = copy_with_wrong_expectation(&dir);
    let before = std::fs::read_to_string(&path).unwrap();
    let fail = bin(&["test", "default", dir.to_str().unwrap()], tmp.path());
    assert_eq!(fail.status.code(), Some(1), "{}", text(&fail));
    let out = stdout(&fail);
    assert!(out.contains("FAIL  memory.json"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with('+') && l.contains("\"field\": \"memory\"")),
        "the diff shows the memory change the module made:\n{out}"
    );

    let update = bin(
        &["test", "default", dir.to_str().unwrap(), "--update"],
        tmp.path(),
    );
    assert!(update.status.success(), "{}", text(&update));
    let out = stdout(&update);
    assert!(out.contains("UPDATED  memory.json"), "{out}");
    assert!(out.contains("1 updated, 0 failed"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("+ ") && l.contains("\"field\": \"memory\"")),
        "it shows what changed:\n{out}"
    );
    let after = std::fs::read_to_string(&path).unwrap();
    // Only `expect` changed: everything before it is byte for byte the same.
    let head = |t: &str| t[..t.find("\"expect\"").unwrap()].to_owned();
    assert_eq!(head(&before), head(&after));

    let pass = bin(&["test", "default", dir.to_str().unwrap()], tmp.path());
    assert!(pass.status.success(), "{}", text(&pass));
    assert!(
        stdout(&pass).contains("1 passed, 0 failed"),
        "{}",
        text(&pass)
    );
}

/// Three guests sharing a context that makes the runaway module panic in the batch holding
/// VMID 101.
fn panicking_fixtures(dir: &Path) {
    for vmid in [100, 101, 102] {
        let fixture = serde_json::json!({
            "description": format!("guest {vmid}"),
            "guest": {
                "cluster": "lab", "vmid": vmid, "type": "qemu", "node": "n1",
                "name": format!("vm-{vmid}"), "status": "running", "config": {"memory": "1024"}
            },
            "context": {"settings": {"misbehave": "panic", "misbehave_vmid": "101"}},
            "expect": {}
        });
        std::fs::write(
            dir.join(format!("lab-{vmid}.json")),
            serde_json::to_string_pretty(&fixture).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn a_trapping_module_names_the_fixture_the_vm_and_the_function() {
    let module = misbehaving("runaway");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    panicking_fixtures(&dir);
    let test = bin(
        &["test", module.to_str().unwrap(), dir.to_str().unwrap()],
        tmp.path(),
    );
    assert_eq!(test.status.code(), Some(1), "{}", text(&test));
    let out = stdout(&test);
    let line = out
        .lines()
        .skip_while(|l| !l.starts_with("FAIL  lab-101.json"))
        .nth(1)
        .unwrap_or_else(|| panic!("no failure for lab-101.json:\n{out}"));
    assert!(
        line.contains("fixture lab-101.json")
            && line.contains("VM lab/n1/101")
            && line.contains("normalize-desired"),
        "{line}"
    );
    assert!(out.contains("PASS  lab-100.json"), "{out}");

    // Replay: the batch traps, then each VM alone: only 101 fails, named.
    let replay = bin(
        &[
            "replay",
            module.to_str().unwrap(),
            dir.to_str().unwrap(),
            "--output",
            "json",
        ],
        tmp.path(),
    );
    assert!(replay.status.success(), "{}", text(&replay));
    let report: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(report["summary"]["counts"]["error"], 1, "{report}");
    assert_eq!(report["summary"]["counts"]["create"], 2, "{report}");
    let failed = report["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["class"] == "error")
        .unwrap();
    let message = failed["answer"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("fixture lab-101.json")
            && message.contains("VM lab/n1/101")
            && message.contains("reconcile"),
        "{message}"
    );
}

/// `rules new` writes a crate that builds for wasm32-wasip2 with one cargo command and whose
/// three fixtures pass under `rules test` (the crate depends on this checkout's guest-default
/// and pve2netbox-rules;
/// the build is offline, from the registry cache the workspace's build filled).
#[test]
fn a_scaffolded_module_builds_and_passes_its_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let crate_dir = tmp.path().join("acme-rules");
    let guest_default = workspace().join("guest-default");
    let new = Command::new(env!("CARGO_BIN_EXE_pve2netbox"))
        .args(["rules", "new", "acme-rules", "--dir"])
        .arg(&crate_dir)
        .arg("--guest-default")
        .arg(&guest_default)
        .output()
        .expect("run rules new");
    assert!(new.status.success(), "{}", text(&new));
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/fixtures.rs",
        "README.md",
        "fixtures/new-guest-create.json",
        "fixtures/template-skipped.json",
        "fixtures/memory-changed-update.json",
    ] {
        assert!(crate_dir.join(f).is_file(), "{f} missing");
    }
    // A second run into the same directory refuses and writes nothing.
    let again = Command::new(env!("CARGO_BIN_EXE_pve2netbox"))
        .args(["rules", "new", "acme-rules", "--dir"])
        .arg(&crate_dir)
        .arg("--guest-default")
        .arg(&guest_default)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    // The workspace's lock file pins the versions the offline registry cache holds.
    std::fs::copy(workspace().join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--offline",
        ])
        .current_dir(&crate_dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target").join("rules-scaffold"),
        )
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("cargo build");
    assert!(build.status.success(), "{}", text(&build));
    let wasm = workspace().join("target/rules-scaffold/wasm32-wasip2/release/acme_rules.wasm");
    let test = bin(
        &[
            "test",
            wasm.to_str().unwrap(),
            crate_dir.join("fixtures").to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(test.status.success(), "{}", text(&test));
    let out = stdout(&test);
    assert!(out.contains("acme-rules 0.1.0"), "{out}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");
    // It starts as the default rules: over the default rules' fixtures they agree.
    let diff = bin(
        &[
            "diff",
            "default",
            wasm.to_str().unwrap(),
            crate_dir.join("fixtures").to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
}
