//! `pve2netbox rules check|test|eval|bench` through the real binary: exit codes, messages, JSON,
//! and a site's own module (`tests/rules-example`) loaded by the same binary mapping differently
//! from the embedded default.

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

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const GUEST: &str = r#"{
  "cluster": "lab", "vmid": 100, "type": "qemu", "node": "n1", "name": "web-1",
  "status": "running", "template": 0, "maxcpu": 2, "maxmem": 2147483648, "maxdisk": 34359738368,
  "tags": "prod;web",
  "config": {"name": "web-1", "memory": "2048", "cores": 2, "sockets": 1, "ostype": "l26",
             "scsi0": "local-lvm:vm-100-disk-0,size=32G", "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0"}
}"#;

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn check_default_prints_name_version_wit_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin(&["check", "default"], tmp.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("module:      embedded default"), "{stdout}");
    assert!(
        stdout.contains("wit:         0.4.0 (exports pve2netbox:rules/reconcile@0.4.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "exports:     info, default-policies, normalize-desired, normalize-current, diff, reconcile"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("reconcile:   one `reconcile` call per batch"),
        "{stdout}"
    );
    assert!(
        stdout.contains("name:        ") && stdout.contains("version:     "),
        "{stdout}"
    );
}

#[test]
fn check_fails_clearly_for_text_core_module_and_other_world() {
    let tmp = tempfile::tempdir().unwrap();
    let txt = write(tmp.path(), "notes.txt", "not wasm at all\n");
    let core = tmp.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let other = misbehaving("other-world");
    for (file, needle) in [
        (txt, "not a WebAssembly component"),
        (core, "core WebAssembly module"),
        (
            other,
            "this host supports pve2netbox:rules@0.1.x, pve2netbox:rules@0.2.x",
        ),
    ] {
        let out = bin(&["check", file.to_str().unwrap()], tmp.path());
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{file:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(needle), "{file:?}: {stderr}");
        assert!(
            stderr.contains(file.file_name().unwrap().to_str().unwrap()),
            "{stderr}"
        );
    }
}

/// A WIT 0.1 module still loads, and `rules test` runs it (its `reconcile` is its three steps).
#[test]
fn check_and_test_run_a_wit_0_1_module() {
    let tmp = tempfile::tempdir().unwrap();
    let old = misbehaving("runaway");
    let out = bin(&["check", old.to_str().unwrap()], tmp.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("wit:         0.1.0 (exports pve2netbox:rules/reconcile@0.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "exports:     info, default-policies, normalize-desired, normalize-current, diff\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("reconcile:   normalize-desired, normalize-current and diff per batch"),
        "{stdout}"
    );

    let fixtures = tmp.path().join("fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    let guest: serde_json::Value = serde_json::from_str(GUEST).unwrap();
    let fixture = serde_json::json!({
        "description": "the runaway module's tiny mapping",
        "guest": guest,
        "current": {"id": 7, "name": "web-1", "status": {"value": "offline"}},
        "expect": {"changes": [{"field": "status", "old": "offline", "new": "active"}]}
    });
    write(&fixtures, "a.json", &fixture.to_string());
    let out = bin(
        &["test", old.to_str().unwrap(), fixtures.to_str().unwrap()],
        tmp.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("WIT 0.1.0; reconcile as the three steps"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}

#[test]
fn eval_default_prints_desired_needs_and_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let g = write(tmp.path(), "g.json", GUEST);
    let out = bin(
        &["eval", "default", "--guest", g.to_str().unwrap()],
        tmp.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(v["desired"]["name"], "web-1", "{v}");
    assert!(v["needs"].is_array(), "{v}");
    let changes = v["changes"].as_array().expect("changes (a create body)");
    assert!(
        changes
            .iter()
            .any(|c| c["field"] == "name" && c["new"] == "web-1"),
        "{v}"
    );
    assert!(v["fuel"].as_u64().unwrap() > 0);
}

/// A rule author tries a VM with its children: a fixture file as the whole input, or the
/// network view and NetBox's children as files of their own; both give the fixture's changes.
#[test]
fn eval_takes_a_network_view_and_children() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = workspace().join("guest-default/fixtures/nic-removed.json");
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let expected = &f["expect"]["children"];
    assert!(expected.as_array().is_some_and(|a| !a.is_empty()), "{f}");
    let from_fixture = bin(&["eval", "--input", fixture.to_str().unwrap()], tmp.path());
    let (stdout, stderr) = text(&from_fixture);
    assert!(from_fixture.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(&v["children"], expected, "{v}");
    assert!(v["desired_children"]["interfaces"].is_array(), "{v}");
    assert!(v["current_children"]["interfaces"].is_array(), "{v}");

    let part = |name: &str, key: &str| write(tmp.path(), name, &f[key].to_string());
    let (g, c, x, n, k) = (
        part("g.json", "guest"),
        part("c.json", "current"),
        part("x.json", "context"),
        part("n.json", "network"),
        part("k.json", "children"),
    );
    let args = |with_children: bool| {
        let mut a = vec!["eval", "default", "--guest", g.to_str().unwrap()];
        a.extend([
            "--current",
            c.to_str().unwrap(),
            "--context",
            x.to_str().unwrap(),
        ]);
        a.extend(["--network", n.to_str().unwrap()]);
        if with_children {
            a.extend(["--children", k.to_str().unwrap()]);
        }
        a
    };
    let out = bin(&args(true), tmp.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let parts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(&parts["children"], expected, "{parts}");
    // Without --children the current children were not read: nothing is planned for them.
    let out = bin(&args(false), tmp.path());
    let unread: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(unread["children"], serde_json::json!([]), "{unread}");

    // Children without a current record are refused with a clear message.
    let out = bin(
        &[
            "eval",
            "--guest",
            g.to_str().unwrap(),
            "--children",
            k.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("without a current record"), "{stderr}");
}

#[test]
fn eval_with_a_current_record_that_matches_has_fewer_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let g = write(tmp.path(), "g.json", GUEST);
    let create = bin(
        &["eval", "--rules", "default", "--guest", g.to_str().unwrap()],
        tmp.path(),
    );
    let created: serde_json::Value = serde_json::from_slice(&create.stdout).unwrap();
    let current = write(
        tmp.path(),
        "c.json",
        r#"{"id": 7, "name": "web-1", "status": {"value": "active"}, "tags": [],
            "custom_fields": {}}"#,
    );
    let update = bin(
        &[
            "eval",
            "default",
            "--guest",
            g.to_str().unwrap(),
            "--current",
            current.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let (stdout, stderr) = text(&update);
    assert!(update.status.success(), "{stdout}\n{stderr}");
    let updated: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let n = |v: &serde_json::Value| v["changes"].as_array().map_or(0, Vec::len);
    assert!(
        n(&updated) < n(&created),
        "create {created}\nupdate {updated}"
    );
    assert!(
        !updated["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "name"),
        "{updated}"
    );
}

#[test]
fn test_reports_pass_and_fail_with_a_diff_and_fuel() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = tmp.path().join("fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    // Find what the default rules say, then write one fixture that agrees and one that does not.
    let g = write(tmp.path(), "g.json", GUEST);
    let eval = bin(
        &["eval", "default", "--guest", g.to_str().unwrap()],
        tmp.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let guest: serde_json::Value = serde_json::from_str(GUEST).unwrap();
    let good = serde_json::json!({
        "description": "agrees with the module",
        "guest": guest,
        "expect": {"desired": v["desired"], "changes": v["changes"]}
    });
    let mut wrong_desired = v["desired"].clone();
    wrong_desired["name"] = "something-else".into();
    let bad = serde_json::json!({
        "description": "expects another name",
        "guest": guest,
        "expect": {"desired": wrong_desired}
    });
    write(&fixtures, "a-good.json", &good.to_string());
    write(&fixtures, "b-bad.json", &bad.to_string());

    let out = bin(&["test", "default", fixtures.to_str().unwrap()], tmp.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS  a-good.json  (fuel "), "{stdout}");
    assert!(
        stdout.contains("WIT 0.4.0; reconcile fused, checked against the three steps"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL  b-bad.json  (fuel "), "{stdout}");
    assert!(
        stdout.contains("desired.name: expected \"something-else\", got \"web-1\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("-       \"name\": \"something-else\"")
            || stdout.contains("-     \"name\": \"something-else\""),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
    // The purity check runs over every fixture that parses (the default rules are pure).
    assert!(
        stdout.contains("PURE  2 fixtures: the same answer alone and in a batch"),
        "{stdout}"
    );

    std::fs::remove_file(fixtures.join("b-bad.json")).unwrap();
    let out = bin(&["test", "default", fixtures.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", text(&out).0);
}

#[test]
fn bench_prints_wasm_and_native_times_and_their_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    // By deadline as the sync runs (no fuel reported), and by fuel.
    for fuel in [false, true] {
        let mut args = vec!["bench", "default", "--vms", "300", "--batch", "100"];
        if fuel {
            args.push("--fuel");
        }
        let out = bin(&args, tmp.path());
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["vms"], 300);
        assert!(v["wasm_ms"]["total_ms"].is_number(), "{v}");
        assert!(v["wasm_ms"]["reconcile_ms"].is_number(), "{v}");
        assert_eq!(v["reconcile"], "fused", "{v}");
        assert!(v["native_ms"]["total_ms"].is_number(), "{v}");
        assert!(v["ratio"].is_number(), "{v}");
        assert_eq!(v["native_agrees"], true, "{v}");
        if fuel {
            assert_eq!(v["metering"], "fuel", "{v}");
            assert!(v["fuel_per_vm"].as_u64().unwrap() > 0, "{v}");
        } else {
            assert_eq!(v["metering"], "deadline", "{v}");
            assert!(v["fuel_per_vm"].is_null(), "{v}");
        }
    }
}

/// The site example (issue 3, point 7): the same binary loads it with `--rules` and maps the same
/// guest differently from the embedded default; its own fixtures pass under `rules test`.
#[test]
fn site_example_module_maps_differently_from_the_default() {
    let example = workspace().join("tests").join("rules-example");
    let manifest = std::fs::read_to_string(example.join("Cargo.toml"))
        .expect("tests/rules-example/Cargo.toml (the site example module) must exist");
    let package = manifest
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("name = ")
                .map(|n| n.trim_matches('"').to_string())
        })
        .expect("package name");
    rules_common::build_guests(&[&package]);
    let wasm = rules_common::artifact(&package);
    let tmp = tempfile::tempdir().unwrap();

    let check = bin(&["check", wasm.to_str().unwrap()], tmp.path());
    assert!(check.status.success(), "{}", text(&check).1);

    let fixtures = example.join("fixtures");
    if fixtures.is_dir() {
        let out = bin(
            &["test", wasm.to_str().unwrap(), fixtures.to_str().unwrap()],
            tmp.path(),
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("0 failed"), "{stdout}");
    }

    // A guest the example's rules care about: its name prefix and tags are in every fixture
    // of the example; use each fixture's guest and compare with the default.
    let mut differs = 0;
    let mut guests: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    guests.sort();
    for fixture in guests
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
    {
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        let g = write(tmp.path(), "g.json", &f["guest"].to_string());
        let mut args = vec!["eval", "--guest", g.to_str().unwrap()];
        let site = bin(
            &[&args[..], &["--rules", wasm.to_str().unwrap()]].concat(),
            tmp.path(),
        );
        args.insert(1, "default");
        let default = bin(&args, tmp.path());
        let s: serde_json::Value = serde_json::from_slice(&site.stdout).unwrap_or_default();
        let d: serde_json::Value = serde_json::from_slice(&default.stdout).unwrap_or_default();
        if s["desired"] != d["desired"] || s["changes"] != d["changes"] {
            differs += 1;
        }
    }
    assert!(
        differs > 0,
        "the site example maps every fixture guest exactly like the default"
    );
}
