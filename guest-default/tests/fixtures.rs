//! Runs every `fixtures/*.json` case through `DefaultRules` natively (the host's `rules test`
//! runs the same files through the WASM component).

use std::path::Path;

use guest_default::DefaultRules;
use guest_default::model::Fixture;

/// Runs every fixture in `dir` and returns how many there are and the failures, one readable
/// block per file; with `children_only`, only the fixtures that take part in children.
fn run_dir(dir: &Path, children_only: bool) -> (usize, Vec<String>) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(path).expect("fixture text");
        let fixture = match Fixture::from_json(&text) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{name}: not a fixture: {e}"));
                continue;
            }
        };
        if children_only && !fixture.has_children() {
            continue;
        }
        count += 1;
        if let Err(msg) = fixture.check(&fixture.run::<DefaultRules>()) {
            failures.push(format!("{name} ({}):\n{msg}", fixture.description));
        }
    }
    (count, failures)
}

#[test]
fn every_fixture_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let (count, failures) = run_dir(&dir, false);
    assert!(count >= 30, "expected at least 30 fixtures, found {count}");
    assert!(
        failures.is_empty(),
        "{} of {count} fixtures failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The children fixtures (WIT 0.3 inputs and expectations; see README "Fixtures"), which live
/// beside the others so that one `rules test` runs them all.
#[test]
fn every_children_fixture_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let (count, failures) = run_dir(&dir, true);
    assert!(
        count >= 25,
        "expected at least 25 children fixtures, found {count}"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} children fixtures failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The checker itself must catch a wrong desired value, a wrong change list and a missing error.
#[test]
fn checker_reports_mismatches() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let text = std::fs::read_to_string(dir.join("qemu-pve9-create.json")).expect("fixture");
    let mut fixture = Fixture::from_json(&text).expect("fixture parses");
    let mut expect = fixture.expect.clone();
    if let Some(guest_default::model::ExpectedDesired::Vm(vm)) = &mut expect.desired {
        vm.disk = guest_default::model::Field::Set(1);
        vm.platform = guest_default::model::Field::Keep;
    }
    if let Some(changes) = &mut expect.changes {
        changes.pop();
    }
    expect.error = Some("bad-disk-size".into());
    fixture.expect = expect;
    let msg = fixture
        .check(&fixture.run::<DefaultRules>())
        .expect_err("mismatches must be reported");
    for needle in [
        "desired.disk: expected 1, got 544772",
        "desired.platform: expected <absent (keep)>",
        "changes:",
        "error: expected code \"bad-disk-size\", got none",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
    }
}

/// The checker must catch a wrong child change and a missing children error.
#[test]
fn checker_reports_child_mismatches() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let text = std::fs::read_to_string(dir.join("disk-resized.json")).expect("fixture");
    let mut fixture = Fixture::from_json(&text).expect("fixture parses");
    let children = fixture.expect.children.as_mut().expect("expects children");
    children[0].key = "scsi9".into();
    fixture.expect.error = Some("bad-config".into());
    let msg = fixture
        .check(&fixture.run::<DefaultRules>())
        .expect_err("mismatches must be reported");
    for needle in [
        "children:",
        "scsi9",
        "error: expected code \"bad-config\", got none",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
    }
}
