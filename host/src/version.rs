//! What `--version` says: the crate version, the git commit it was built from, the rules WIT
//! versions this host loads and the embedded default rules' name and version.
//!
//! Nothing here loads or compiles the embedded component (that costs a compile on a fresh
//! machine): its name and version come from `guest-default` itself, which the host also links
//! natively, the same code the component's `info` runs. A test checks both agree.

use guest_default::model::RuleSet as _;

/// The git commit of the build (`build.rs`): short hash, or `unknown` outside a checkout.
pub const GIT_COMMIT: &str = env!("PVE2NETBOX_GIT_COMMIT");

/// `guest-default` when the build compiled the embedded rules from the workspace, `prebuilt`
/// when a packager embedded a component built elsewhere (`PVE2NETBOX_DEFAULT_RULES_WASM`).
const EMBEDDED_RULES: &str = env!("PVE2NETBOX_EMBEDDED_RULES");

/// The short form (`-V`): `0.1.0 (abc1234)`.
pub fn short() -> String {
    format!("{} ({GIT_COMMIT})", env!("CARGO_PKG_VERSION"))
}

/// The long form (`--version`), after the program name.
pub fn long() -> String {
    let rules = if EMBEDDED_RULES == "prebuilt" {
        "prebuilt component (`pve2netbox rules check default` names it)".to_owned()
    } else {
        let info = guest_default::DefaultRules::info();
        format!("{} {} (WIT {})", info.name, info.version, info.wit_version)
    };
    format!(
        "{}\ncommit: {GIT_COMMIT}\nrules WIT versions: {}\nembedded rules: {rules}",
        env!("CARGO_PKG_VERSION"),
        crate::rules::supported_wit_text(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_commit_wit_versions_and_rules() {
        let text = long();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], env!("CARGO_PKG_VERSION"));
        assert_eq!(lines[1], format!("commit: {GIT_COMMIT}"));
        assert!(!GIT_COMMIT.is_empty());
        assert!(lines[2].contains("pve2netbox:rules@0.2.x"), "{text}");
        assert!(lines[3].starts_with("embedded rules: "), "{text}");
        assert!(short().starts_with(env!("CARGO_PKG_VERSION")));
    }
}
