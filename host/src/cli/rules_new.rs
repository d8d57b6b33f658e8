//! `pve2netbox rules new NAME [--dir DIR]`: writes a rule module crate that starts as the
//! default rules (it depends on the `pve2netbox-rules` library for the guest model and the
//! export macro, and on `guest-default` for the default rules, and overrides what a site
//! changes), three
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
    /// Where the crate gets `guest-default` (the default rules) and, beside it, the
    /// `pve2netbox-rules` library (`wit/`: the guest model and bindings): the path of
    /// `guest-default` in a pve2netbox checkout, or the git URL of one [default: the checkout
    /// this binary was built from, when it is still there].
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

/// Where the scaffold's two dependencies come from.
#[derive(Debug, PartialEq)]
struct Sources {
    /// `pve2netbox-rules = { ... }`'s source.
    rules_lib: String,
    /// `guest-default = { ... }`'s source.
    guest_default: String,
}

/// The library's directory in a checkout, relative to `guest-default`'s.
const RULES_LIB_BESIDE: &str = "../wit";

/// The sources of both dependencies: one git URL for both (cargo finds each crate by name in
/// the repository), or the path of `guest-default` and the library beside it.
fn dependencies(given: Option<&str>) -> anyhow::Result<Sources> {
    let given = match given {
        Some(g) => g.to_owned(),
        None => {
            // The checkout this binary was built from, when it still holds guest-default.
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-default");
            match built_from.canonicalize() {
                Ok(p) if p.join("Cargo.toml").is_file() => p.display().to_string(),
                _ => bail!(
                    "where should the module get guest-default (the default rules) and \
                     pve2netbox-rules (the guest model)? Pass --guest-default with the path of \
                     `guest-default` in a pve2netbox checkout, or a git URL"
                ),
            }
        }
    };
    let quoted = serde_json::to_string(&given)?;
    if given.contains("://") || given.starts_with("git@") {
        let git = format!("git = {quoted}");
        return Ok(Sources {
            rules_lib: git.clone(),
            guest_default: git,
        });
    }
    let path = Path::new(&given);
    if !path.join("Cargo.toml").is_file() {
        bail!(
            "--guest-default {given}: no Cargo.toml there (expected the `guest-default` \
             directory of a pve2netbox checkout)"
        );
    }
    let lib = path.join(RULES_LIB_BESIDE);
    let lib_manifest = std::fs::read_to_string(lib.join("Cargo.toml")).unwrap_or_default();
    if !lib_manifest.contains("name = \"pve2netbox-rules\"") {
        bail!(
            "--guest-default {given}: no pve2netbox-rules library beside it ({} should be the \
             checkout's `wit/` crate); pass the `guest-default` directory of a pve2netbox \
             checkout from this version on, or a git URL",
            lib.display()
        );
    }
    let abs = |p: &Path| -> anyhow::Result<String> {
        let abs = p.canonicalize().unwrap_or_else(|_| p.to_owned());
        Ok(format!(
            "path = {}",
            serde_json::to_string(&abs.display().to_string())?
        ))
    };
    Ok(Sources {
        rules_lib: abs(&lib)?,
        guest_default: abs(path)?,
    })
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
    let deps = dependencies(args.guest_default.as_deref())?;
    let crate_ident = args.name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", &args.name)
            .replace("{{crate_ident}}", &crate_ident)
            .replace("{{rules_lib}}", &deps.rules_lib)
            .replace("{{guest_default}}", &deps.guest_default)
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
        "wrote rule module `{}` in {} (pve2netbox-rules: {}, guest-default: {})\n\nnext:\n  cd {}\n  cargo test                                      # the fixtures, natively\n  cargo build --release --target wasm32-wasip2\n  pve2netbox rules test target/wasm32-wasip2/release/{crate_ident}.wasm fixtures/\n\nREADME.md says how to review it against your estate and deploy it.",
        args.name,
        dir.display(),
        deps.rules_lib,
        deps.guest_default,
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
    fn both_dependencies_come_from_one_checkout_or_one_repository() {
        let git = dependencies(Some("https://example.org/pve2netbox.git")).unwrap();
        assert_eq!(
            git.rules_lib,
            r#"git = "https://example.org/pve2netbox.git""#
        );
        assert_eq!(git.guest_default, git.rules_lib);
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = dependencies(Some(checkout.join("guest-default").to_str().unwrap())).unwrap();
        let lib = checkout.join("wit").canonicalize().unwrap();
        assert_eq!(
            path.rules_lib,
            format!("path = {:?}", lib.display().to_string())
        );
        assert!(
            path.guest_default.ends_with(r#"guest-default""#),
            "{path:?}"
        );
        // A directory without the library beside it is refused, with the reason.
        let tmp = tempfile::tempdir().unwrap();
        let lone = tmp.path().join("guest-default");
        std::fs::create_dir(&lone).unwrap();
        std::fs::write(
            lone.join("Cargo.toml"),
            "[package]\nname = \"guest-default\"\n",
        )
        .unwrap();
        let err = dependencies(Some(lone.to_str().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no pve2netbox-rules library"), "{err}");
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
