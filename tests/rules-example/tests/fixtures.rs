//! Runs every `fixtures/*.json` case through `SiteRules` natively.

use std::path::Path;

use pve2netbox_rules::model::Fixture;
use rules_example::SiteRules;

#[test]
fn every_fixture_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "expected at least 7 fixtures");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("fixture text");
        let name = path.display();
        match Fixture::from_json(&text) {
            Err(e) => failures.push(format!("{name}: not a fixture: {e}")),
            Ok(f) => {
                if let Err(msg) = f.check(&f.run::<SiteRules>()) {
                    failures.push(format!("{name} ({}):\n{msg}", f.description));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
