//! One writing run per NetBox at a time: a local lock file per NetBox URL, held with an OS
//! advisory lock ([`std::fs::File::try_lock`], `flock` on Unix) for as long as the run writes.
//!
//! The kernel releases the lock when its holder exits for any reason, SIGKILL included, so a
//! crashed run never leaves a stale lock: the next run simply takes it. The file itself holds
//! the holder's pid, host, start time and command (one JSON line), only for the refusal message.
//!
//! Path: `<state dir>/locks/<first 16 hex of sha256(normalized NetBox URL)>.lock`. The state
//! dir is `--state-dir` / `PVE2NETBOX_STATE_DIR`, else `$XDG_STATE_HOME/pve2netbox`, else
//! `$HOME/.local/state/pve2netbox`. The lock is local: runs on different hosts, or with
//! different state dirs, do not see each other; [`crate::safety::lease`] covers those, with a
//! lease held in NetBox from a run's first write.
//!
//! Edges: the file system only. The CLI takes the lock for `sync` (not `--dry-run`) and
//! `apply` before preflight (which may write); previews and `doctor` never take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::timefmt::rfc3339_utc;

/// Variable naming the state dir (the CLI's `--state-dir` reads it too).
pub const STATE_DIR_ENV: &str = "PVE2NETBOX_STATE_DIR";
/// Hex characters of the URL hash in the file name: 64 bits make a collision between two
/// NetBox URLs on one host practically impossible while keeping the name short.
const HASH_HEX_CHARS: usize = 16;
/// Attempts to lock the file at the path. A retry is needed only when the previous holder
/// removed the file between our open and our lock (see [`RunLock::acquire`]); more than a few
/// in a row means something keeps deleting it.
const MAX_ATTEMPTS: usize = 8;
/// Bytes of holder info read back: the JSON line is ~200 bytes; a bigger file is not ours.
const MAX_HOLDER_BYTES: u64 = 4096;

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum RunLockError {
    /// Another run holds it.
    #[error(
        "run lock: another pve2netbox run is writing to NetBox {netbox}: the lock {} is held by \
         {holder}. Wait for that run to finish (or stop it). The operating system releases the \
         lock when its holder exits, even if killed, so there is no file to delete; read-only \
         commands (`sync --dry-run`, `plan`, `doctor`) do not need the lock",
        path.display()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The NetBox URL (normalized, without credentials).
        netbox: String,
        /// Who holds it, as written in the file.
        holder: Box<Holder>,
    },
    /// No state dir is known.
    #[error(
        "run lock: no state directory for the lock file: set --state-dir, {STATE_DIR_ENV}, \
         XDG_STATE_HOME or HOME"
    )]
    NoStateDir,
    /// The lock file or its directory could not be used.
    #[error(
        "run lock: {action} {}: {source} (choose another directory with --state-dir or {STATE_DIR_ENV})",
        path.display()
    )]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// What a holder writes into the lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: Option<u32>,
    /// Host name.
    pub host: Option<String>,
    /// Start time, RFC 3339 UTC.
    pub started: Option<String>,
    /// The command (`sync`, `apply plan.json`).
    pub command: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(pid) = self.pid else {
            // Locked, but the holder has not written its details yet (or wrote garbage).
            return f.write_str("another process (its details are not written yet)");
        };
        write!(f, "pid {pid}")?;
        if let Some(host) = &self.host {
            write!(f, " on host {host}")?;
        }
        if let Some(command) = &self.command {
            write!(f, " (`pve2netbox {command}`)")?;
        }
        if let Some(started) = &self.started {
            write!(f, ", started {started}")?;
        }
        Ok(())
    }
}

/// A held run lock; released (and its file removed) on drop, or by the OS when the process dies.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `netbox` under `state_dir` (`None`: [`default_state_dir`]) without
    /// waiting; `command` is recorded for the message another run shows.
    pub fn acquire(
        state_dir: Option<&Path>,
        netbox: &Url,
        command: &str,
    ) -> Result<RunLock, RunLockError> {
        let state_dir = match state_dir {
            Some(dir) => dir.to_path_buf(),
            None => default_state_dir().ok_or(RunLockError::NoStateDir)?,
        };
        let path = lock_path(&state_dir, netbox);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| RunLockError::Io {
                action: "creating the lock directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| RunLockError::Io {
                action,
                path,
                source,
            }
        };
        for _ in 0..MAX_ATTEMPTS {
            // No truncation on open: the file may be another run's, whose details we read.
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io("opening the lock file"))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(RunLockError::Held {
                        holder: Box::new(read_holder(&mut file)),
                        path,
                        netbox: normalized_url(netbox),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io("locking the lock file")(e)),
            }
            // A holder removes the file before it unlocks; if that happened between our open
            // and our lock, we locked an unlinked file and must start over on the new path.
            if !same_file(&file, &path) {
                continue;
            }
            let holder = Holder {
                pid: Some(std::process::id()),
                host: hostname(),
                started: Some(rfc3339_utc(SystemTime::now())),
                command: Some(command.to_string()),
            };
            let line = serde_json::to_string(&holder).unwrap_or_default() + "\n";
            file.set_len(0).map_err(io("writing the lock file"))?;
            file.rewind().map_err(io("writing the lock file"))?;
            file.write_all(line.as_bytes())
                .map_err(io("writing the lock file"))?;
            tracing::debug!(lock = %path.display(), "run lock taken");
            return Ok(RunLock { file, path });
        }
        Err(io("locking the lock file")(std::io::Error::other(format!(
            "the file was replaced {MAX_ATTEMPTS} times while locking it"
        ))))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiting opener notices (see `acquire`); a run killed
        // before this leaves the file behind, unlocked, which is harmless.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

/// `$XDG_STATE_HOME/pve2netbox`, else `$HOME/.local/state/pve2netbox`.
pub fn default_state_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local").join("state")))?;
    Some(base.join("pve2netbox"))
}

/// The lock file of `netbox` under `state_dir`.
pub fn lock_path(state_dir: &Path, netbox: &Url) -> PathBuf {
    state_dir
        .join("locks")
        .join(format!("{}.lock", url_file_stem(netbox)))
}

/// The file name (without extension) of `netbox`'s files in the state dir: the first hex
/// characters of the SHA-256 of its normalized URL (the lock's, and the no-op memo's).
pub fn url_file_stem(netbox: &Url) -> String {
    let digest = Sha256::digest(normalized_url(netbox).as_bytes());
    let mut name = hex::encode(digest);
    name.truncate(HASH_HEX_CHARS);
    name
}

/// The URL that identifies a NetBox: scheme, host, port and path, without credentials, query,
/// fragment or trailing slash (`Url` already lower-cases the host and drops a default port).
pub fn normalized_url(netbox: &Url) -> String {
    let mut url = netbox.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.as_str().trim_end_matches('/').to_string()
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.take(MAX_HOLDER_BYTES).read_to_string(&mut text);
    serde_json::from_str(text.trim()).unwrap_or_default()
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Without inode numbers the file is never removed (an unlocked leftover is harmless).
#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> bool {
    false
}

pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn one_holder_at_a_time_and_the_message_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let nb = url("https://netbox.example.com/");
        let first = RunLock::acquire(Some(dir.path()), &nb, "sync").unwrap();
        let err = RunLock::acquire(Some(dir.path()), &nb, "apply p.json").unwrap_err();
        let RunLockError::Held { holder, path, .. } = &err else {
            panic!("expected Held, got {err:?}");
        };
        assert_eq!(path, first.path());
        assert_eq!(holder.pid, Some(std::process::id()));
        assert_eq!(holder.command.as_deref(), Some("sync"));
        let msg = err.to_string();
        for part in [
            &first.path().display().to_string(),
            &format!("pid {}", std::process::id()),
            "`pve2netbox sync`",
            "started 20",
            "https://netbox.example.com",
            "no file to delete",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
        // Another NetBox has its own lock.
        let other = RunLock::acquire(Some(dir.path()), &url("https://nb2.example.com"), "sync");
        assert!(other.is_ok());
        drop(first);
        let again = RunLock::acquire(Some(dir.path()), &nb, "sync").unwrap();
        drop(again);
    }

    #[test]
    fn release_removes_the_file_and_an_unlocked_leftover_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let nb = url("http://127.0.0.1:8080");
        let path = lock_path(dir.path(), &nb);
        let lock = RunLock::acquire(Some(dir.path()), &nb, "sync").unwrap();
        assert!(path.exists());
        drop(lock);
        assert!(!path.exists());
        // What a killed run leaves: the file with its details, no lock.
        std::fs::write(
            &path,
            r#"{"pid":1,"host":"gone","started":"x","command":"sync"}"#,
        )
        .unwrap();
        let lock = RunLock::acquire(Some(dir.path()), &nb, "sync").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("\"pid\":{}", std::process::id())),
            "{text}"
        );
        drop(lock);
    }

    #[test]
    fn the_url_is_normalized_before_hashing() {
        let dir = Path::new("/s");
        let a = lock_path(dir, &url("https://NetBox.Example.com:443/"));
        assert_eq!(a, lock_path(dir, &url("https://netbox.example.com")));
        assert_eq!(
            a,
            lock_path(dir, &url("https://user:pw@netbox.example.com/?x=1"))
        );
        assert_ne!(a, lock_path(dir, &url("https://netbox.example.com:8443")));
        assert_ne!(a, lock_path(dir, &url("http://netbox.example.com")));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), HASH_HEX_CHARS + ".lock".len(), "{name}");
        assert_eq!(a.parent().unwrap(), Path::new("/s/locks"));
        assert_eq!(
            normalized_url(&url("https://u:p@nb.example.com/netbox/?q#f")),
            "https://nb.example.com/netbox"
        );
    }

    #[test]
    fn holder_text_without_details() {
        assert_eq!(
            Holder::default().to_string(),
            "another process (its details are not written yet)"
        );
    }
}
