//! The loader refuses what is not a rules component of a supported version; modules that import
//! the filesystem, sockets, clocks or the environment load and get nothing real (the sandbox);
//! the compiled-component cache hits, misses and recovers from corruption.

mod rules_common;

use guest_default::model::{Context, Desired};
use pve2netbox::rules::{
    CacheMode, Limits, LoadKind, Metering, RulesError, RulesRuntime, RuntimeConfig,
};
use rules_common::misbehaving;

fn runtime(cache: CacheMode) -> RulesRuntime {
    RulesRuntime::new(RuntimeConfig {
        limits: Limits::default(),
        cache,
    })
    .expect("runtime")
}

fn load_err(bytes: &[u8], name: &str) -> RulesError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    match runtime(CacheMode::Disabled).load_file(&path) {
        Ok(_) => panic!("{name} must be refused"),
        Err(e) => e,
    }
}

#[test]
fn default_module_reports_its_world_and_exports() {
    let m = runtime(CacheMode::Disabled)
        .load_default()
        .expect("default rules load");
    assert_eq!(m.source(), "embedded default");
    assert_eq!(m.wit_version(), "0.4.0");
    assert_eq!(m.interface(), "pve2netbox:rules/reconcile@0.4.0");
    assert_eq!(m.info().wit_version, "0.4.0");
    assert!(m.fuses_reconcile());
    assert!(m.has_children());
    assert!(!m.info().name.is_empty());
    for f in [
        "info",
        "default-policies",
        "normalize-desired",
        "normalize-current",
        "diff",
        "reconcile",
    ] {
        assert!(
            m.functions().iter().any(|x| x == f),
            "{f} missing in {:?}",
            m.functions()
        );
    }
    assert!(
        m.imports()
            .iter()
            .all(|i| !i.starts_with("wasi:filesystem") && !i.starts_with("wasi:sockets")),
        "{:?}",
        m.imports()
    );
}

#[test]
fn refuses_a_text_file() {
    let e = load_err(b"(component)\n", "rules.wat");
    assert!(matches!(e, RulesError::NotComponent { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("rules.wat")
            && msg.contains("not a WebAssembly component")
            && msg.contains("text"),
        "{msg}"
    );
}

#[test]
fn refuses_a_core_module() {
    // The smallest valid core module: magic and version 1, no sections.
    let e = load_err(b"\0asm\x01\0\0\0", "core.wasm");
    let msg = e.to_string();
    assert!(matches!(e, RulesError::NotComponent { .. }), "{msg}");
    assert!(
        msg.contains("core.wasm") && msg.contains("core WebAssembly module"),
        "{msg}"
    );
}

#[test]
fn refuses_a_truncated_component() {
    let bytes = std::fs::read(misbehaving("runaway")).unwrap();
    let e = load_err(&bytes[..bytes.len() / 2], "truncated.wasm");
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            RulesError::Load {
                phase: "compile",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("truncated.wasm"), "{msg}");
}

/// The version is read from the exported interface: 0.1 and 0.2 modules load beside the 0.3
/// default in the same runtime, the 0.1 one without the fused `reconcile`, neither with children.
#[test]
fn wit_0_1_and_0_2_modules_load_beside_the_0_3_default() {
    let rt = runtime(CacheMode::Disabled);
    let old = rt.load_file(&misbehaving("runaway")).expect("a 0.1 module");
    assert_eq!(old.wit_version(), "0.1.0");
    assert_eq!(old.interface(), "pve2netbox:rules/reconcile@0.1.0");
    assert!(!old.fuses_reconcile());
    assert!(!old.has_children());
    assert!(!old.functions().iter().any(|f| f == "reconcile"));
    assert!(
        old.imports()
            .iter()
            .any(|i| i == "pve2netbox:rules/types@0.1.0"),
        "{:?}",
        old.imports()
    );
    let v2 = rt
        .load_file(&rules_common::v0_2_module())
        .expect("a 0.2 module");
    assert_eq!(v2.wit_version(), "0.2.0");
    assert_eq!(v2.info().wit_version, "0.2.0");
    assert!(v2.fuses_reconcile() && !v2.has_children());
    assert!(
        v2.imports()
            .iter()
            .any(|i| i == "pve2netbox:rules/types@0.2.0"),
        "{:?}",
        v2.imports()
    );
    let new = rt.load_default().expect("the 0.3 default");
    assert!(new.fuses_reconcile() && new.has_children());
    assert!(
        new.imports()
            .iter()
            .any(|i| i == "pve2netbox:rules/types@0.4.0"),
        "{:?}",
        new.imports()
    );
}

#[test]
fn refuses_another_world_naming_the_supported_versions() {
    let e = runtime(CacheMode::Disabled)
        .load_file(&misbehaving("other-world"))
        .err()
        .expect("another world must be refused");
    let msg = e.to_string();
    assert!(matches!(e, RulesError::UnsupportedWorld { .. }), "{msg}");
    assert!(msg.contains("rules_misbehaving_other_world.wasm"), "{msg}");
    assert!(msg.contains("pve2netbox:rules@0.99.0"), "{msg}");
    assert!(
        msg.contains(
            "this host supports pve2netbox:rules@0.1.x, pve2netbox:rules@0.2.x, \
             pve2netbox:rules@0.3.x, pve2netbox:rules@0.4.x"
        ),
        "{msg}"
    );
}

/// The skip reason a probe module (`imports-fs`, `imports-socket`, `imports-clock`) answers
/// with: what it read through the import.
fn probe(which: &str) -> String {
    let m = runtime(CacheMode::Disabled)
        .load_file(&misbehaving(which))
        .unwrap_or_else(|e| panic!("{which} must load (its import is linked, inert): {e}"));
    let out = m
        .normalize_desired(&Context::default(), vec![rules_common::guest(100, "probe")])
        .expect("the probe call");
    match out.items.into_iter().next() {
        Some(Ok(Desired::Skip(reason))) => reason,
        other => panic!("{which}: expected a skip carrying the probe, got {other:?}"),
    }
}

#[test]
fn a_module_reading_a_file_finds_no_directory() {
    let reason = probe("imports-fs");
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert!(
        hostname.is_empty() || reason != hostname,
        "the module read the host's file: {reason:?}"
    );
    // No preopened directory holds `/etc/hostname`, so for the module it does not exist.
    assert!(reason.contains("No such file or directory"), "{reason}");
}

#[test]
fn a_module_opening_a_socket_is_denied() {
    let reason = probe("imports-socket");
    assert_ne!(reason, "connected");
    assert!(
        reason.to_lowercase().contains("denied") || reason.contains("not permitted"),
        "{reason}"
    );
}

#[test]
fn a_module_reading_the_clock_and_environment_sees_1970_and_nothing() {
    // `<seconds since the Unix epoch> <environment variables>`: the wall clock is virtual and
    // the environment empty, on every run.
    assert_eq!(probe("imports-clock"), "0 0");
    assert_eq!(probe("imports-clock"), "0 0");
}

#[test]
fn cache_hits_after_the_first_compile_and_recovers_from_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(CacheMode::Dir(dir.path().to_path_buf()));
    let path = misbehaving("runaway");
    let first = rt.load_file(&path).expect("first load");
    assert_eq!(first.load_stats().kind, LoadKind::Compiled);
    let second = rt.load_file(&path).expect("second load");
    assert_eq!(second.load_stats().kind, LoadKind::CacheHit);
    assert_eq!(second.info(), first.info());

    // A new runtime (a new process, in effect) hits the same entry.
    let again = runtime(CacheMode::Dir(dir.path().to_path_buf()));
    assert_eq!(
        again.load_file(&path).unwrap().load_stats().kind,
        LoadKind::CacheHit
    );

    // Another engine configuration (fuel metering on) never uses it.
    let fuel = RulesRuntime::new(RuntimeConfig {
        limits: Limits {
            metering: Metering::Fuel,
            ..Limits::default()
        },
        cache: CacheMode::Dir(dir.path().to_path_buf()),
    })
    .unwrap();
    assert_eq!(
        fuel.load_file(&path).unwrap().load_stats().kind,
        LoadKind::Compiled
    );

    // Corrupt every entry: loads recompile, work, and rewrite the cache.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        let mut bytes = std::fs::read(e).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(e, bytes).unwrap();
    }
    let recovered = rt.load_file(&path).expect("load over a corrupt entry");
    assert_eq!(recovered.load_stats().kind, LoadKind::Compiled);
    recovered
        .normalize_desired(&Default::default(), vec![rules_common::guest(100, "a")])
        .expect("the recompiled module runs");
    assert_eq!(
        rt.load_file(&path).unwrap().load_stats().kind,
        LoadKind::CacheHit
    );
}
