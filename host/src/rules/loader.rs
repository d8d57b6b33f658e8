//! What a module file is, decided before anything runs: a component (not a core module or some
//! other file), which rules world and WIT version it exports, and whether its imports stay inside
//! the capabilities a rule module may have.
//!
//! The header is checked on the raw bytes; exports and imports are read from the compiled
//! component's type (`Component::component_type`), which costs no instantiation. A module of
//! another world or an unsupported WIT version is refused with the supported versions in the
//! message; a forbidden import is refused naming the capability (Zed's and Spin's habit).

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::error::{ModuleLabel, RulesError};

/// The interface every rules world exports, without its version.
pub(crate) const RULES_INTERFACE: &str = "pve2netbox:rules/reconcile";
/// The types interface the rules world imports (type definitions only).
const TYPES_INTERFACE: &str = "pve2netbox:rules/types";

/// The WIT versions this host loads, `(major, minor)`: a module built against any patch of one
/// of them matches (wasmtime resolves semver-compatible names).
pub(crate) const SUPPORTED: &[(u64, u64)] = &[(0, 1), (0, 2), (0, 3), (0, 4)];

/// Human-readable list of supported versions.
pub(crate) fn supported_text() -> String {
    SUPPORTED
        .iter()
        .map(|(a, b)| format!("pve2netbox:rules@{a}.{b}.x"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Interface prefixes a rule module may import. Rust's standard library links `wasi:io` and
/// `wasi:cli` (streams, exit, environment) even when unused, and `wasi:random` for `HashMap`
/// seeds; Python (componentize-py) and JavaScript (componentize-js) runtimes import the clocks,
/// the filesystem and the sockets too, whether the module uses them or not. The store makes all
/// of them inert or deterministic (`store::new_store`): no preopened directory, no socket
/// permitted, no environment, virtual clocks, fixed randomness. What stays refused is what the
/// host does not provide at all (`wasi:http`, other worlds' interfaces).
const ALLOWED_IMPORTS: &[&str] = &[
    "wasi:io/",
    "wasi:cli/",
    "wasi:random/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// What a supported rules world looks like from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inspection {
    /// The exact version of the exported interface, e.g. `(0, 4, 0)`; it decides the bindings
    /// (0.4, 0.3, or 0.2 with or without the fused `reconcile`).
    pub(crate) wit: (u64, u64, u64),
    /// `pve2netbox:rules/reconcile@0.2.0`.
    pub(crate) interface: String,
    /// The exported functions of the interface.
    pub(crate) functions: Vec<String>,
    /// Every import of the component.
    pub(crate) imports: Vec<String>,
}

/// Refuses bytes that are not a binary component, saying what they are instead.
pub(crate) fn check_header(bytes: &[u8], module: &ModuleLabel) -> Result<(), RulesError> {
    let not = |reason: String| RulesError::NotComponent {
        module: Box::new(module.clone()),
        reason,
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let text = bytes.iter().take(64).all(|b| b.is_ascii() && *b != 0);
        return Err(not(if bytes.is_empty() {
            "the file is empty".into()
        } else if text {
            "the file is text, not a WebAssembly binary (WAT text is not accepted; give the .wasm file)"
                .into()
        } else {
            "the file has no WebAssembly header (`\\0asm`)".into()
        }));
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(not(
            "it is a core WebAssembly module; a rule module must be a component \
             (build it with `cargo build --target wasm32-wasip2`, or wrap a core module with \
             `wasm-tools component new`)"
                .into(),
        )),
        other => Err(not(format!(
            "unknown WebAssembly version/layer bytes {other:02x?}"
        ))),
    }
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// Reads the exported rules world and checks the imports of a compiled component.
pub(crate) fn inspect(
    engine: &Engine,
    component: &Component,
    module: &ModuleLabel,
) -> Result<Inspection, RulesError> {
    let ty = component.component_type();
    let exports: Vec<(String, ComponentItem)> = ty
        .exports(engine)
        .map(|(name, ext)| (name.to_string(), ext.ty))
        .collect();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();

    let rules_export = exports.iter().find_map(|(name, item)| {
        let (iface, version) = name.split_once('@').unwrap_or((name.as_str(), ""));
        (iface == RULES_INTERFACE).then_some((name.clone(), version.to_string(), item))
    });
    let Some((interface, version, item)) = rules_export else {
        let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
        return Err(RulesError::UnsupportedWorld {
            module: Box::new(module.clone()),
            found: format!(
                "it does not export `{RULES_INTERFACE}`, so it implements another world (its exports: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
            supported: supported_text(),
        });
    };
    let wit = parse_version(&version).ok_or_else(|| RulesError::UnsupportedWorld {
        module: Box::new(module.clone()),
        found: format!("it exports `{interface}` without a usable version"),
        supported: supported_text(),
    })?;
    if !SUPPORTED.contains(&(wit.0, wit.1)) {
        return Err(RulesError::UnsupportedWorld {
            module: Box::new(module.clone()),
            found: format!(
                "it implements pve2netbox:rules@{version} (WIT version {version} is not supported by this host{})",
                if (wit.0, wit.1) > *SUPPORTED.last().expect("one supported version") {
                    "; a newer pve2netbox may load it"
                } else {
                    ""
                }
            ),
            supported: supported_text(),
        });
    }
    let functions = match item {
        ComponentItem::ComponentInstance(inst) => inst
            .exports(engine)
            .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
            .map(|(n, _)| n.to_string())
            .collect(),
        _ => Vec::new(),
    };

    check_imports(&imports, wit, module)?;
    Ok(Inspection {
        wit,
        interface,
        functions,
        imports,
    })
}

/// Refuses any import outside `ALLOWED_IMPORTS` (and the contract's own types interface),
/// naming the capability it would give.
fn check_imports(
    imports: &[String],
    wit: (u64, u64, u64),
    module: &ModuleLabel,
) -> Result<(), RulesError> {
    // Every forbidden import, the most telling capability first.
    let mut forbidden: Vec<(u8, &str, &str)> = Vec::new();
    for import in imports {
        if ALLOWED_IMPORTS.iter().any(|p| import.starts_with(p)) {
            continue;
        }
        if let Some(v) = import
            .strip_prefix(TYPES_INTERFACE)
            .and_then(|r| r.strip_prefix('@'))
            && parse_version(v).is_some_and(|v| (v.0, v.1) == (wit.0, wit.1))
        {
            continue;
        }
        // The default rules (world `site-rules`) exist in 0.3 only: 0.4 left them there.
        if let Some(v) = import
            .strip_prefix(super::defaults::DEFAULTS_INTERFACE)
            .and_then(|r| r.strip_prefix('@'))
            && parse_version(v).is_some_and(|v| (v.0, v.1) == (0, 3) && (wit.0, wit.1) == (0, 3))
        {
            continue;
        }
        let (rank, capability) = if import.starts_with("wasi:http/") {
            (0, "outgoing HTTP")
        } else {
            (1, "an interface this host does not provide to rule modules")
        };
        forbidden.push((rank, import, capability));
    }
    forbidden.sort();
    if let Some((_, import, capability)) = forbidden.first() {
        let others: Vec<&str> = forbidden[1..].iter().map(|(_, i, _)| *i).collect();
        return Err(RulesError::ForbiddenImport {
            module: Box::new(module.clone()),
            import: import.to_string(),
            capability: if others.is_empty() {
                capability.to_string()
            } else {
                format!("{capability}; also imports {}", others.join(", "))
            },
            allowed: "wasi:io, wasi:cli (no environment, no arguments, stdin closed), \
                      wasi:random (deterministic), wasi:clocks (virtual: the wall clock says \
                      1970-01-01), wasi:filesystem (no directory), wasi:sockets (none permitted), \
                      pve2netbox:rules/types and, in 0.3, pve2netbox:rules/defaults"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> ModuleLabel {
        ModuleLabel {
            source: "x.wasm".into(),
            name: None,
        }
    }

    #[test]
    fn header_tells_component_core_module_text_and_empty_apart() {
        assert!(check_header(b"\0asm\x0d\0\x01\0rest", &label()).is_ok());
        let core = check_header(b"\0asm\x01\0\0\0", &label()).unwrap_err();
        assert!(
            core.to_string().contains("core WebAssembly module"),
            "{core}"
        );
        let text = check_header(b"(component)\n", &label()).unwrap_err();
        assert!(text.to_string().contains("text"), "{text}");
        let empty = check_header(b"", &label()).unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
        let bin = check_header(&[0xff, 0xfe, 0, 1, 2, 3, 4, 5], &label()).unwrap_err();
        assert!(bin.to_string().contains("no WebAssembly header"), "{bin}");
    }

    #[test]
    fn imports_outside_the_allowed_set_are_refused_by_capability() {
        // What Python and JavaScript runtimes import: linked, and inert (`store`).
        let ok = [
            "wasi:io/streams@0.2.6".to_string(),
            "wasi:cli/stderr@0.2.6".to_string(),
            "wasi:random/random@0.2.6".to_string(),
            "wasi:filesystem/preopens@0.2.9".to_string(),
            "wasi:sockets/tcp@0.2.9".to_string(),
            "wasi:clocks/wall-clock@0.2.9".to_string(),
            "pve2netbox:rules/types@0.1.0".to_string(),
        ];
        assert!(check_imports(&ok, (0, 1, 0), &label()).is_ok());
        for (import, cap) in [
            ("wasi:http/outgoing-handler@0.2.6", "outgoing HTTP"),
            ("pve2netbox:rules/types@0.2.0", "does not provide"),
            ("pve2netbox:rules/defaults@0.3.0", "does not provide"),
            ("example:log/log", "does not provide"),
        ] {
            let e = check_imports(&[import.to_string()], (0, 1, 0), &label()).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(import) && msg.contains(cap), "{msg}");
        }
    }

    #[test]
    fn every_supported_version_is_named() {
        assert_eq!(
            supported_text(),
            "pve2netbox:rules@0.1.x, pve2netbox:rules@0.2.x, pve2netbox:rules@0.3.x, \
             pve2netbox:rules@0.4.x"
        );
        let v4 = ["pve2netbox:rules/types@0.4.0".to_string()];
        assert!(check_imports(&v4, (0, 4, 0), &label()).is_ok());
        assert!(check_imports(&v4, (0, 3, 0), &label()).is_err());
        let v3 = ["pve2netbox:rules/types@0.3.0".to_string()];
        assert!(check_imports(&v3, (0, 3, 0), &label()).is_ok());
        assert!(check_imports(&v3, (0, 2, 0), &label()).is_err());
        // A 0.2 module imports the 0.2 types, not the 0.1 ones.
        let v2 = ["pve2netbox:rules/types@0.2.0".to_string()];
        assert!(check_imports(&v2, (0, 2, 0), &label()).is_ok());
        let v1 = ["pve2netbox:rules/types@0.1.0".to_string()];
        assert!(check_imports(&v1, (0, 2, 1), &label()).is_err());
        // The default rules are importable by a 0.3 module only.
        let d3 = ["pve2netbox:rules/defaults@0.3.0".to_string()];
        assert!(check_imports(&d3, (0, 3, 0), &label()).is_ok());
        assert!(check_imports(&d3, (0, 2, 0), &label()).is_err());
        assert!(check_imports(&d3, (0, 4, 0), &label()).is_err());
        let d4 = ["pve2netbox:rules/defaults@0.4.0".to_string()];
        assert!(check_imports(&d4, (0, 4, 0), &label()).is_err());
    }

    #[test]
    fn versions_parse_with_prerelease() {
        assert_eq!(parse_version("0.1.0"), Some((0, 1, 0)));
        assert_eq!(parse_version("0.2.1-rc.1"), Some((0, 2, 1)));
        assert_eq!(parse_version("x"), None);
    }
}
