//! `pve2netbox rules new NAME [--dir DIR]`: writes a rule module crate that starts as the
//! default rules (it depends on `guest-default` and overrides what a site changes), three
//! example fixtures whose expected answers are the default rules' (computed here, natively, so
//! they match the rules this binary embeds), a native fixture test and a README on testing and
//! deploying. It builds with one `cargo build --release --target wasm32-wasip2`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use guest_default::model::{Expect, Fixture};

/// Arguments of `rules new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The crate's name (lowercase letters, digits, `-`, `_`); the component is
    /// `target/wasm32-wasip2/release/<name with _>.wasm`.
    name: String,
    /// Where to write it [default: ./NAME]; must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Where the crate gets `guest-default` (the guest model, bindings and default rules): a
    /// path to its directory in a pve2netbox checkout, or a git URL [default: the checkout this
    /// binary was built from, when it is still there].
    #[arg(long, value_name = "PATH|URL")]
    guest_default: Option<String>,
}

const CARGO_TOML: &str = include_str!("rules_new/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("rules_new/lib.rs.tmpl");
const FIXTURES_RS: &str = include_str!("rules_new/fixtures.rs.tmpl");
const README: &str = include_str!("rules_new/README.md.tmpl");
/// The example fixtures, `expect` left empty: filled with the default rules' answers.
const FIXTURES: [(&str, &str); 3] = [
    (
        "new-guest-create.json",
        include_str!("rules_new/new-guest-create.json"),
    ),
    (
        "template-skipped.json",
        include_str!("rules_new/template-skipped.json"),
    ),
    (
        "memory-changed-update.json",
        include_str!("rules_new/memory-changed-update.json"),
    ),
];

/// A crate name cargo accepts and that is a file name everywhere.
fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

/// The `guest-default = { ... }` source: a path or a git URL.
fn dependency(given: Option<&str>) -> anyhow::Result<String> {
    let given = match given {
        Some(g) => g.to_owned(),
        None => {
            // The checkout this binary was built from, when it still holds guest-default.
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-default");
            match built_from.canonicalize() {
                Ok(p) if p.join("Cargo.toml").is_file() => p.display().to_string(),
                _ => bail!(
                    "where should the module get guest-default (the guest model and default \
                     rules)? Pass --guest-default with the path of `guest-default` in a \
                     pve2netbox checkout, or a git URL"
                ),
            }
        }
    };
    let quoted = serde_json::to_string(&given)?;
    if given.contains("://") || given.starts_with("git@") {
        Ok(format!("git = {quoted}"))
    } else {
        let path = Path::new(&given);
        if !path.join("Cargo.toml").is_file() {
            bail!(
                "--guest-default {given}: no Cargo.toml there (expected the `guest-default` \
                 directory of a pve2netbox checkout)"
            );
        }
        let abs = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        Ok(format!(
            "path = {}",
            serde_json::to_string(&abs.display().to_string())?
        ))
    }
}

/// A fixture's text with `expect` set to the default rules' answer.
fn with_default_answer(name: &str, text: &str) -> anyhow::Result<String> {
    let fixture = Fixture::from_json(text).with_context(|| format!("example fixture {name}"))?;
    let outcome = fixture.run::<guest_default::DefaultRules>();
    let expect = crate::rules::update::updated_expect(&Expect::default(), &outcome);
    crate::rules::update::replace_expect(text, &expect)
        .with_context(|| format!("example fixture {name}: no expect"))
}

/// `rules new`.
pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    if !valid_name(&args.name) {
        bail!(
            "{:?} is not a module name: use lowercase letters, digits, `-` and `_`, starting \
             with a letter",
            args.name
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty; nothing written", dir.display());
    }
    let dep = dependency(args.guest_default.as_deref())?;
    let crate_ident = args.name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", &args.name)
            .replace("{{crate_ident}}", &crate_ident)
            .replace("{{guest_default}}", &dep)
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        (PathBuf::from("Cargo.toml"), fill(CARGO_TOML)),
        (PathBuf::from("src/lib.rs"), fill(LIB_RS)),
        (PathBuf::from("tests/fixtures.rs"), fill(FIXTURES_RS)),
        (PathBuf::from("README.md"), fill(README)),
        (PathBuf::from(".gitignore"), "/target\n".to_owned()),
    ];
    for (name, text) in FIXTURES {
        files.push((
            Path::new("fixtures").join(name),
            with_default_answer(name, text)?,
        ));
    }
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "wrote rule module `{}` in {} (guest-default: {dep})\n\nnext:\n  cd {}\n  cargo test                                      # the fixtures, natively\n  cargo build --release --target wasm32-wasip2\n  pve2netbox rules test target/wasm32-wasip2/release/{crate_ident}.wasm fixtures/\n\nREADME.md says how to review it against your estate and deploy it.",
        args.name,
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("site-rules"));
        assert!(valid_name("acme_rules2"));
        assert!(!valid_name("Site"));
        assert!(!valid_name("9rules"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn the_example_fixtures_get_the_default_rules_answers() {
        for (name, text) in FIXTURES {
            let filled = with_default_answer(name, text).expect("filled");
            let f = Fixture::from_json(&filled).expect("a fixture");
            assert!(
                f.check(&f.run::<guest_default::DefaultRules>()).is_ok(),
                "{name}"
            );
            let v: serde_json::Value = serde_json::from_str(&filled).unwrap();
            assert_ne!(v["expect"], serde_json::json!({}), "{name}: {filled}");
        }
    }
}
