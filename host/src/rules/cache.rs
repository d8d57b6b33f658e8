//! The on-disk cache of compiled components: compile once (~75 ms per 100 KB), then load the
//! serialized artifact (~0.2 ms).
//!
//! A cache file is named by the SHA-256 of (cache format, host version, wasmtime version, the
//! engine's compatibility hash, the module's SHA-256), so a different module, wasmtime, engine
//! configuration (fuel, epoch) or CPU never finds it. Its content is a magic string, the SHA-256
//! of the payload and the payload (`Component::serialize`). Only files that carry our magic and a
//! matching checksum are ever handed to `Component::deserialize` (which trusts its input); any
//! other file, a truncated write or a payload wasmtime refuses is treated as a miss: recompile and
//! overwrite. Writes go to a temporary file renamed into place, so readers never see half a file.
//! The cache directory is the user's own; like any cache of native code, whoever can write it can
//! run code as that user.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::compile::compile_apart;

/// Versions the file layout; bump it to orphan every existing cache file.
const CACHE_FORMAT: &str = "pve2netbox-rules-cache/1";
/// The file header.
const MAGIC: &[u8; 16] = b"pve2netbox-cwasm";
/// The wasmtime the workspace pins (`=48.0.8`); artifacts are tied to the exact version.
const WASMTIME_VERSION: &str = "48.0.8";

/// Where compiled components are cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// `$PVE2NETBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/pve2netbox/components`, else
    /// `$HOME/.cache/pve2netbox/components`; no cache when none is set.
    #[default]
    Default,
    /// This directory.
    Dir(PathBuf),
    /// Compile on every load.
    Disabled,
}

impl CacheMode {
    /// The directory this mode uses, if any.
    pub fn dir(&self) -> Option<PathBuf> {
        match self {
            CacheMode::Disabled => None,
            CacheMode::Dir(d) => Some(d.clone()),
            CacheMode::Default => default_dir(),
        }
    }
}

/// The variable naming the cache directory, for every command (`rules` commands also take
/// `--cache-dir`); a service points it at its own cache (systemd's `CacheDirectory=`).
pub const CACHE_DIR_ENV: &str = "PVE2NETBOX_CACHE_DIR";

/// `$PVE2NETBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/pve2netbox/components`, else
/// `$HOME/.cache/pve2netbox/components`.
pub fn default_dir() -> Option<PathBuf> {
    default_dir_from(&|name| std::env::var_os(name))
}

/// [`default_dir`] with the environment looked up by `var` (empty values count as unset).
fn default_dir_from(var: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(CACHE_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("pve2netbox").join("components"))
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash is stable across runs
/// (std's `DefaultHasher` is not guaranteed to be).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

/// The cache of one engine.
pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    /// SHA-256 of everything but the module, hex.
    engine_key: [u8; 32],
    /// What the engine was built from, for [`compile_apart`].
    compile_config: Config,
}

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadKind {
    /// Deserialized from the on-disk cache.
    CacheHit,
    /// Compiled (and written to the cache when there is one).
    Compiled,
}

impl ComponentCache {
    /// `compile_config` is the configuration `engine` was built from.
    pub(crate) fn new(engine: &Engine, compile_config: Config, mode: &CacheMode) -> Self {
        let mut h = ShaHasher(Sha256::new());
        CACHE_FORMAT.hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        WASMTIME_VERSION.hash(&mut h);
        engine.precompile_compatibility_hash().hash(&mut h);
        ComponentCache {
            dir: mode.dir(),
            engine_key: h.0.finalize().into(),
            compile_config,
        }
    }

    /// The cache directory, if caching.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path_for(&self, module_sha: &[u8; 32]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut h = Sha256::new();
        h.update(self.engine_key);
        h.update(module_sha);
        Some(dir.join(format!("{}.cwasm", hex::encode(h.finalize()))))
    }

    /// The component for `bytes`: from the cache when a valid entry exists, else compiled apart
    /// (see [`compile_apart`]) and stored. Cache I/O problems are logged and never fail the load.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, LoadKind)> {
        let module_sha: [u8; 32] = Sha256::digest(bytes).into();
        let path = self.path_for(&module_sha);
        if let Some(path) = &path
            && let Some(c) = read_entry(engine, path)
        {
            return Ok((c, LoadKind::CacheHit));
        }
        let (component, payload) = compile_apart(&self.compile_config, engine, bytes)?;
        if let Some(path) = &path
            && let Err(e) = write_entry(path, &payload)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-rules cache");
        }
        Ok((component, LoadKind::Compiled))
    }
}

fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let data = fs::read(path).ok()?;
    let payload = verify(&data);
    let Some(payload) = payload else {
        tracing::warn!(path = %path.display(), "ignoring a corrupt compiled-rules cache entry; recompiling");
        return None;
    };
    // SAFETY: `deserialize` trusts its input to be wasmtime's own output. These bytes are: they
    // sit in our cache directory under a name derived from this engine's configuration, carry our
    // magic, and their SHA-256 matches the one written with them, so they are exactly what
    // `Component::serialize` produced (wasmtime further checks its version and configuration
    // header and refuses a mismatch, which we treat as a miss).
    match unsafe { Component::deserialize(engine, payload) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable compiled-rules cache entry; recompiling");
            None
        }
    }
}

/// The payload of a cache file when its magic and checksum are right.
fn verify(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < 32 {
        return None;
    }
    let (sum, payload) = rest.split_at(32);
    (Sha256::digest(payload).as_slice() == sum).then_some(payload)
}

fn write_entry(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&Sha256::digest(payload))?;
        f.write_all(payload)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_only_our_checksummed_files() {
        let payload = b"compiled";
        let mut good = MAGIC.to_vec();
        good.extend_from_slice(&Sha256::digest(payload));
        good.extend_from_slice(payload);
        assert_eq!(verify(&good), Some(payload.as_slice()));

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verify(&flipped), None);
        assert_eq!(verify(&good[..good.len() - 1]), None);
        assert_eq!(verify(b"\0asm\x0d\0\x01\0"), None);
        assert_eq!(verify(&good[..20]), None);
    }

    #[test]
    fn default_dir_follows_the_variable_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = env(&[
            (CACHE_DIR_ENV, "/var/cache/pve2netbox"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            default_dir_from(&all),
            Some(PathBuf::from("/var/cache/pve2netbox"))
        );
        let xdg = env(&[
            (CACHE_DIR_ENV, ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            default_dir_from(&xdg),
            Some(PathBuf::from("/x/pve2netbox/components"))
        );
        let home = env(&[("HOME", "/h")]);
        assert_eq!(
            default_dir_from(&home),
            Some(PathBuf::from("/h/.cache/pve2netbox/components"))
        );
        assert_eq!(default_dir_from(&env(&[])), None);
    }
}
