//! Configuration: a TOML file, then `PVE2NETBOX_*` environment variables, then command-line
//! overrides, validated into one [`Config`]. Secrets never come from the file: each token is
//! named by `token_env` (a variable) or `token_file` (a file) and read only when a client is built.
//!
//! Layers, later wins: file < environment < flags ([`Config::apply_overrides`]). Every error
//! names the key and where its value came from (`file /etc/pve2netbox.toml`, `environment
//! variable PVE2NETBOX_SYNC_WRITE_WINDOW`, `flag --write-window`).
//!
//! # Environment variables
//!
//! `PVE2NETBOX_<SECTION>_<KEY>`, upper case, dots as `_`:
//!
//! | key | variable |
//! |---|---|
//! | `netbox.url` | `PVE2NETBOX_NETBOX_URL` |
//! | `sync.write_window` | `PVE2NETBOX_SYNC_WRITE_WINDOW` |
//! | `timeouts.request_secs` | `PVE2NETBOX_TIMEOUTS_REQUEST_SECS` |
//! | `proxmox[<i>].url` (by position, `i` = 0, 1, …; `i` = the count adds an endpoint) | `PVE2NETBOX_PROXMOX_0_URL` |
//! | `proxmox[name = "pve-a"].fingerprint` (by name: upper case, non-alphanumerics as `_`) | `PVE2NETBOX_PROXMOX_PVE_A_FINGERPRINT` |
//! | `rules.settings.<name>` (value parsed as JSON, else a string) | `PVE2NETBOX_RULES_SETTINGS_TENANT_PREFIX` → `tenant_prefix` |
//! | `rules.policies.<field>` (`__` stands for `.`) | `PVE2NETBOX_RULES_POLICIES_CUSTOM_FIELDS__PROXMOX_NODE=ignore` |
//!
//! A variable under one of these prefixes that matches no key is warned about (a typo must not
//! silently do nothing). Flags use the same dotted keys through [`Overrides`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::clients::http::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_BUDGET, Fingerprint, Secret,
    TlsMode,
};

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "PVE2NETBOX_";
/// Config file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "pve2netbox.toml";

/// Proxmox reads in flight for the whole run. Proxmox serves API calls with 3 pveproxy workers
/// per node; 16 across a run keeps a few clusters busy without queueing on one.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Upper bound of `max_concurrency`: beyond this the Proxmox daemons only queue.
pub const MAX_MAX_CONCURRENCY: usize = 256;
/// Operations per dispatch window: small enough that a failure stops early, large enough for
/// bulk requests to pay off.
pub const DEFAULT_WRITE_WINDOW: usize = 8;
/// Upper bound of `write_window`: a bulk body of 1000 VMs (~150 KB) stays far below NetBox's
/// 2.5 MB request limit.
pub const MAX_WRITE_WINDOW: usize = 1000;
/// Write windows in flight at once; 1 = one window after the other. Why 1: on a real NetBox
/// 4.7.3 (2 cores) a first sync of 500 VMs gained nothing at 2 and took up to twice as long at 4,
/// its VM creates serializing on the VM type's `virtual_machine_count` row and deadlocking
/// there (500s, retried or split), and the sequential dispatch already costs what posting the
/// same bodies one request at a time costs (BENCHMARKS.md, "Write concurrency").
pub const DEFAULT_WRITE_CONCURRENCY: usize = 1;
/// Upper bound of `write_concurrency`: NetBox serves writes with a few gunicorn workers, each
/// holding a database transaction; beyond this windows only queue there.
pub const MAX_WRITE_CONCURRENCY: usize = 16;
/// One bulk request per window by default. Why: on a real NetBox 4.7 a single-VM POST costs
/// ~70 ms and a bulk POST ~30 ms per VM (netbox-live.md 2.5), so a first sync of 100 VMs takes
/// ~2.5x less time and 8x fewer requests; a failed bulk request is split to isolate the bad item.
pub const DEFAULT_BULK: bool = true;
/// Consecutive runs a managed VM must be missing before `orphans = "delete"` deletes it.
pub const DEFAULT_ORPHAN_DELETE_AFTER_RUNS: u32 = 3;
/// Largest share (percent) of managed VMs one run may delete; more refuses all of that run's
/// deletes (a mis-scoped token makes VMs look gone).
pub const DEFAULT_DELETE_BUDGET_PERCENT: u8 = 10;
/// Guests per rules call: amortizes the WebAssembly call overhead while a trap costs one batch.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// How long one guest-agent or LXC-interfaces read may take. Why 4 s: a configured but dead
/// agent costs Proxmox its 3 s `guest-ping` timeout before it answers "QEMU guest agent is not
/// running"; a little above that keeps Proxmox's own words, far below the 30 s request timeout
/// that would let a few dozen dead agents hold every read slot of the run.
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(4);

/// Who decides a field once the VM exists (mirrors the WIT `ownership` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Proxmox wins.
    Owned,
    /// Set union (tags).
    Merge,
    /// Set on create, then the operator's.
    Seed,
    /// Never written.
    Ignore,
}

impl std::str::FromStr for Ownership {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "owned" => Ok(Self::Owned),
            "merge" => Ok(Self::Merge),
            "seed" => Ok(Self::Seed),
            "ignore" => Ok(Self::Ignore),
            other => Err(format!(
                "`{other}` is not one of owned, merge, seed, ignore"
            )),
        }
    }
}

/// What happens to a managed VM that is gone from a completely read scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanPolicy {
    /// Only report it.
    #[default]
    Report,
    /// Set status, a tag and a journal entry (reversible).
    Mark,
    /// Delete after `orphan_delete_after_runs` runs, within the delete budget.
    Delete,
}

impl std::str::FromStr for OrphanPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "report" => Ok(Self::Report),
            "mark" => Ok(Self::Mark),
            "delete" => Ok(Self::Delete),
            other => Err(format!("`{other}` is not one of report, mark, delete")),
        }
    }
}

/// Where a token comes from. Never from the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable's name.
    Env(String),
    /// A file holding the token (trailing whitespace ignored).
    File(PathBuf),
    /// A value given in code (`demo`, tests).
    Value(Secret),
}

impl TokenSource {
    /// Reads the token from the process environment or its file.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// Reads the token, looking variables up with `env` (tests pass a map).
    pub fn resolve_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret, ConfigError> {
        let secret = match self {
            Self::Value(secret) => secret.clone(),
            Self::Env(name) => {
                let value = env(name).ok_or_else(|| ConfigError::Token {
                    source_name: format!("environment variable {name}"),
                    message: "is not set".into(),
                })?;
                Secret::new(value.trim().to_string())
            }
            Self::File(path) => {
                let path = &expand_credentials_dir(path, env)?;
                warn_if_readable_by_others(path);
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Token {
                    source_name: format!("token file {}", path.display()),
                    message: e.to_string(),
                })?;
                Secret::new(text.trim().to_string())
            }
        };
        if secret.is_empty() {
            return Err(ConfigError::Token {
                source_name: self.describe(),
                message: "is empty".into(),
            });
        }
        Ok(secret)
    }

    /// Where the token comes from, for messages (never the token).
    pub fn describe(&self) -> String {
        match self {
            Self::Env(name) => format!("environment variable {name}"),
            Self::File(path) => format!("token file {}", path.display()),
            Self::Value(_) => "a value given in code".into(),
        }
    }
}

/// The variable a `token_file` may start with: systemd sets it for a service to the directory
/// where `LoadCredential=` put the unit's credentials (readable by the service's user alone, even
/// a `DynamicUser=`). The path is not fixed, so a config names the variable, not the directory.
pub const CREDENTIALS_DIR_VAR: &str = "CREDENTIALS_DIRECTORY";

/// The spellings of [`CREDENTIALS_DIR_VAR`] as a path's first component.
const CREDENTIALS_DIR_PREFIXES: [&str; 2] = ["$CREDENTIALS_DIRECTORY", "${CREDENTIALS_DIRECTORY}"];

/// The rest of `path` after a leading `$CREDENTIALS_DIRECTORY`, if it has one.
fn credentials_relative(path: &Path) -> Option<&Path> {
    CREDENTIALS_DIR_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix).ok())
}

/// `path` with a leading `$CREDENTIALS_DIRECTORY` replaced by the variable's value; other paths
/// as they are (no other expansion: a `$` elsewhere is part of a file name).
fn expand_credentials_dir(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, ConfigError> {
    let Some(rest) = credentials_relative(path) else {
        return Ok(path.to_path_buf());
    };
    match env(CREDENTIALS_DIR_VAR).filter(|dir| !dir.is_empty()) {
        Some(dir) => Ok(Path::new(&dir).join(rest)),
        None => Err(ConfigError::Token {
            source_name: format!("token file {}", path.display()),
            message: format!(
                "names ${CREDENTIALS_DIR_VAR}, which is not set: systemd sets it for a service \
                 with LoadCredential=; elsewhere set it to the directory holding the token files"
            ),
        }),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o044 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "token file is readable by group or others; restrict it with chmod 600"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// The NetBox instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetboxConfig {
    /// Base URL, e.g. `https://netbox.example.com` (the client adds `/api/`).
    pub url: Url,
    /// The API token's source; v1 or v2 is told from the token itself.
    pub token: TokenSource,
    /// Certificate trust.
    pub tls: TlsMode,
}

impl NetboxConfig {
    /// A NetBox config with a token given in code and verified TLS.
    pub fn new(url: Url, token: Secret) -> Self {
        Self {
            url,
            token: TokenSource::Value(token),
            tls: TlsMode::default(),
        }
    }
}

/// One Proxmox endpoint: a cluster or a standalone node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxmoxEndpoint {
    /// Unique label used in logs, errors and report scopes.
    pub name: String,
    /// Base URL, e.g. `https://pve-a.example.com:8006` (the client adds `/api2/json/`).
    pub url: Url,
    /// The API token's source (`USER@REALM!TOKENID=SECRET`).
    pub token: TokenSource,
    /// Certificate trust.
    pub tls: TlsMode,
}

impl ProxmoxEndpoint {
    /// An endpoint with a token given in code and verified TLS.
    pub fn new(name: impl Into<String>, url: Url, token: Secret) -> Self {
        Self {
            name: name.into(),
            url,
            token: TokenSource::Value(token),
            tls: TlsMode::default(),
        }
    }

    /// Replaces the TLS mode.
    pub fn with_tls(mut self, tls: TlsMode) -> Self {
        self.tls = tls;
        self
    }
}

/// `[sync]`: how the run behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Proxmox reads in flight, whole run.
    pub max_concurrency: usize,
    /// Operations per dispatch window.
    pub write_window: usize,
    /// Windows in flight at once (windows that do not depend on each other).
    pub write_concurrency: usize,
    /// One bulk request per window.
    pub bulk: bool,
    /// Orphan policy.
    pub orphans: OrphanPolicy,
    /// Runs missing before an orphan is deleted.
    pub orphan_delete_after_runs: u32,
    /// Largest share of managed VMs one run may delete, in percent.
    pub delete_budget_percent: u8,
    /// Copy Proxmox tasks into NetBox journal entries.
    pub task_history: bool,
    /// Rule module; `None` = the embedded default rules.
    pub rules: Option<PathBuf>,
    /// Guests per rules call.
    pub batch_size: usize,
    /// Site slug for the clusters and node devices, if any.
    pub site: Option<String>,
    /// Time-to-live of the NetBox run lease (`lock_ttl_secs`; see [`crate::safety::lease`]).
    pub lock_ttl: Duration,
    /// Keep the no-op memo in the state dir and skip the rules call for unchanged VMs
    /// (see [`crate::rules::memo`]).
    pub memo: bool,
    /// Ask running guests for their network (QEMU guest agent, LXC interfaces); `false` leaves
    /// every guest's runtime network unknown (`not-asked`) and sends no such call.
    pub agent: bool,
    /// Read, plan and write a VM's children (`children`): the guests' network views and
    /// NetBox's interfaces, MACs, IPs and virtual disks reach the rules, whose child changes and
    /// primary IPs are planned and written (`pipeline::plan::children`, `pipeline::dispatch::children`). On by
    /// default: an operator who runs the sync expects interfaces and IPs written, and the
    /// managed tag keeps the sync off their own. Off, a 0.3 module's child changes are reported
    /// per VM as not applied.
    pub children: bool,
    /// Time limit of one agent or LXC-interfaces read (`agent_timeout_ms`).
    pub agent_timeout: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            write_window: DEFAULT_WRITE_WINDOW,
            write_concurrency: DEFAULT_WRITE_CONCURRENCY,
            bulk: DEFAULT_BULK,
            orphans: OrphanPolicy::Report,
            orphan_delete_after_runs: DEFAULT_ORPHAN_DELETE_AFTER_RUNS,
            delete_budget_percent: DEFAULT_DELETE_BUDGET_PERCENT,
            task_history: true,
            rules: None,
            batch_size: DEFAULT_BATCH_SIZE,
            site: None,
            lock_ttl: crate::safety::lease::DEFAULT_LEASE_TTL,
            memo: true,
            agent: true,
            children: true,
            agent_timeout: DEFAULT_AGENT_TIMEOUT,
        }
    }
}

/// `[rules.settings]` and `[rules.policies]`: what the rules component is given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RulesConfig {
    /// Free settings, passed to the rules as JSON.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Ownership overrides per field (`memory`, `tags`, `custom_fields.proxmox_node`).
    pub policies: BTreeMap<String, Ownership>,
}

/// `[timeouts]`, in seconds in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// One attempt of one request.
    pub request: Duration,
    /// Total retry time of one request.
    pub retry_budget: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
            retry_budget: DEFAULT_RETRY_BUDGET,
        }
    }
}

/// The validated configuration of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// NetBox.
    pub netbox: NetboxConfig,
    /// Proxmox endpoints, in file order.
    pub proxmox: Vec<ProxmoxEndpoint>,
    /// `[sync]`.
    pub sync: SyncConfig,
    /// `[rules.*]`.
    pub rules: RulesConfig,
    /// `[timeouts]`.
    pub timeouts: Timeouts,
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
    raw: RawConfig,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag (its label, e.g. `--write-window`).
    Flag(String),
    /// Built in code.
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::Code => f.write_str("configuration built in code"),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types (the message names them).
    #[error("config: {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with the key, line and column.
        message: String,
    },
    /// A key has an unusable value.
    #[error("config: `{key}` (from {origin}): {message}")]
    Invalid {
        /// Dotted key, e.g. `proxmox[1].fingerprint` or `sync.write_window`.
        key: String,
        /// Where its value came from.
        origin: Origin,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A token could not be read.
    #[error("config: token from {source_name} {message}")]
    Token {
        /// Where the token should come from (never the token).
        source_name: String,
        /// What went wrong.
        message: String,
    },
}

/// Command-line overrides, applied after the environment: dotted keys as in the environment
/// table (`sync.write_window`, `proxmox.pve-a.url`, `proxmox.0.url`, `rules.settings.x`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    entries: Vec<(String, String, Origin)>,
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`; `flag` names the flag for error messages (e.g. `--rules`).
    pub fn set(&mut self, key: &str, value: impl Into<String>, flag: &str) -> &mut Self {
        self.entries.push((
            key.to_string(),
            value.into(),
            Origin::Flag(flag.to_string()),
        ));
        self
    }

    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Raw layer: what the file says, all optional, plus where every value came from.

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    netbox: RawNetbox,
    #[serde(default)]
    proxmox: Vec<RawProxmox>,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(skip)]
    origins: BTreeMap<String, Origin>,
    #[serde(skip)]
    base: Origin0,
}

/// The origin of values not overridden (the file, or code).
#[derive(Debug, Clone, Default)]
struct Origin0(Option<PathBuf>);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetbox {
    url: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    /// Only here to give a clear error.
    token: Option<toml::Value>,
    fingerprint: Option<String>,
    ca_file: Option<PathBuf>,
    insecure: Option<bool>,
    #[serde(skip)]
    token_value: Option<Secret>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxmox {
    name: Option<String>,
    url: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    token: Option<toml::Value>,
    fingerprint: Option<String>,
    ca_file: Option<PathBuf>,
    insecure: Option<bool>,
    #[serde(skip)]
    token_value: Option<Secret>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    max_concurrency: Option<i64>,
    write_window: Option<i64>,
    write_concurrency: Option<i64>,
    bulk: Option<bool>,
    orphans: Option<String>,
    orphan_delete_after_runs: Option<i64>,
    delete_budget_percent: Option<i64>,
    task_history: Option<bool>,
    rules: Option<PathBuf>,
    batch_size: Option<i64>,
    site: Option<String>,
    lock_ttl_secs: Option<i64>,
    memo: Option<bool>,
    agent: Option<bool>,
    children: Option<bool>,
    agent_timeout_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    policies: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect_secs: Option<i64>,
    request_secs: Option<i64>,
    retry_budget_secs: Option<i64>,
}

/// Keys settable by environment or flag, per section (proxmox keys are per endpoint).
const NETBOX_KEYS: &[&str] = &[
    "url",
    "token_env",
    "token_file",
    "fingerprint",
    "ca_file",
    "insecure",
];
const PROXMOX_KEYS: &[&str] = &[
    "name",
    "url",
    "token_env",
    "token_file",
    "fingerprint",
    "ca_file",
    "insecure",
];
const SYNC_KEYS: &[&str] = &[
    "max_concurrency",
    "write_window",
    "write_concurrency",
    "bulk",
    "orphans",
    "orphan_delete_after_runs",
    "delete_budget_percent",
    "task_history",
    "rules",
    "batch_size",
    "site",
    "lock_ttl_secs",
    "memo",
    "agent",
    "children",
    "agent_timeout_ms",
];
const TIMEOUT_KEYS: &[&str] = &["connect_secs", "request_secs", "retry_budget_secs"];
/// Variables that share the prefix but are not config keys (the CLI's own).
const NON_CONFIG_VARS: &[&str] = &["PVE2NETBOX_LOG", "PVE2NETBOX_CONFIG"];

fn env_name(parts: &[&str]) -> String {
    let mut name = ENV_PREFIX.to_string();
    name.push_str(&parts.join("_").to_ascii_uppercase());
    name
}

/// An endpoint name as it appears in a variable name: upper case, non-alphanumerics as `_`.
fn env_label(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl RawConfig {
    fn origin_of(&self, key: &str) -> Origin {
        if let Some(origin) = self.origins.get(key) {
            return origin.clone();
        }
        match &self.base.0 {
            Some(path) => Origin::File(path.clone()),
            None => Origin::Code,
        }
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: self.origin_of(key),
            message: message.into(),
        }
    }

    /// A relative path is taken relative to the config file when it came from the file, else
    /// relative to the working directory.
    fn resolve_path(&self, key: &str, path: &Path) -> PathBuf {
        match (self.origin_of(key), path.is_relative()) {
            (Origin::File(file), true) => file
                .parent()
                .map(|dir| dir.join(path))
                .unwrap_or_else(|| path.to_path_buf()),
            _ => path.to_path_buf(),
        }
    }

    /// Applies the `PVE2NETBOX_*` variables in `env`.
    fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        // Sorted so `PROXMOX_0_*` comes before `PROXMOX_1_*` and endpoints append in order.
        vars.sort();
        for (name, value) in vars {
            if NON_CONFIG_VARS.contains(&name.as_str()) {
                continue;
            }
            match self.env_key(&name) {
                Some(key) => self.set(&key, &value, Origin::Env(name.clone()))?,
                None => {
                    let rest = &name[ENV_PREFIX.len()..];
                    let in_section = ["NETBOX_", "PROXMOX_", "SYNC_", "RULES_", "TIMEOUTS_"]
                        .iter()
                        .any(|s| rest.starts_with(s));
                    // A variable named like `PVE2NETBOX_NETBOX_TOKEN` is someone's token
                    // variable (named by token_env), not a typo.
                    if in_section && !rest.ends_with("_TOKEN") {
                        tracing::warn!(variable = %name, "environment variable matches no configuration key; ignored");
                    }
                }
            }
        }
        Ok(())
    }

    /// The dotted key a variable sets, if any.
    fn env_key(&self, name: &str) -> Option<String> {
        for key in NETBOX_KEYS {
            if name == env_name(&["netbox", key]) {
                return Some(format!("netbox.{key}"));
            }
        }
        for key in SYNC_KEYS {
            if name == env_name(&["sync", key]) {
                return Some(format!("sync.{key}"));
            }
        }
        for key in TIMEOUT_KEYS {
            if name == env_name(&["timeouts", key]) {
                return Some(format!("timeouts.{key}"));
            }
        }
        if let Some(rest) = name.strip_prefix("PVE2NETBOX_RULES_SETTINGS_") {
            return (!rest.is_empty())
                .then(|| format!("rules.settings.{}", rest.to_ascii_lowercase()));
        }
        if let Some(rest) = name.strip_prefix("PVE2NETBOX_RULES_POLICIES_") {
            return (!rest.is_empty()).then(|| {
                format!(
                    "rules.policies.{}",
                    rest.to_ascii_lowercase().replace("__", ".")
                )
            });
        }
        let rest = name.strip_prefix("PVE2NETBOX_PROXMOX_")?;
        // Longest key suffix first: `_TOKEN_FILE` before `_FILE`-like overlaps.
        let mut keys: Vec<&str> = PROXMOX_KEYS.to_vec();
        keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
        for key in keys {
            let suffix = format!("_{}", key.to_ascii_uppercase());
            let Some(selector) = rest.strip_suffix(&suffix) else {
                continue;
            };
            if selector.is_empty() {
                continue;
            }
            if selector.bytes().all(|b| b.is_ascii_digit()) {
                return Some(format!("proxmox.{selector}.{key}"));
            }
            if let Some(pos) = self
                .proxmox
                .iter()
                .position(|p| p.name.as_deref().map(env_label).as_deref() == Some(selector))
            {
                return Some(format!("proxmox.{pos}.{key}"));
            }
        }
        None
    }

    /// Sets one dotted key from text.
    fn set(&mut self, key: &str, value: &str, origin: Origin) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            key: key.to_string(),
            origin: origin.clone(),
            message,
        };
        let int = |text: &str| -> Result<i64, ConfigError> {
            text.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("`{text}` is not an integer")))
        };
        let boolean = |text: &str| -> Result<bool, ConfigError> {
            parse_bool(text).ok_or_else(|| bad(format!("`{text}` is not a boolean (true/false)")))
        };
        let parts: Vec<&str> = key.splitn(3, '.').collect();
        let recorded_key: String;
        match parts.as_slice() {
            ["netbox", field] => {
                let nb = &mut self.netbox;
                match *field {
                    "url" => nb.url = Some(value.to_string()),
                    "token_env" => {
                        nb.token_env = Some(value.to_string());
                        nb.token_file = None;
                        nb.token_value = None;
                    }
                    "token_file" => {
                        nb.token_file = Some(PathBuf::from(value));
                        nb.token_env = None;
                        nb.token_value = None;
                    }
                    "fingerprint" => {
                        nb.fingerprint = Some(value.to_string());
                        nb.ca_file = None;
                        nb.insecure = None;
                    }
                    "ca_file" => {
                        nb.ca_file = Some(PathBuf::from(value));
                        nb.fingerprint = None;
                        nb.insecure = None;
                    }
                    "insecure" => {
                        let on = boolean(value)?;
                        nb.insecure = Some(on);
                        if on {
                            nb.fingerprint = None;
                            nb.ca_file = None;
                        }
                    }
                    _ => return Err(bad("unknown key in [netbox]".into())),
                }
                recorded_key = key.to_string();
            }
            ["proxmox", selector, field] => {
                let index = match selector.parse::<usize>() {
                    Ok(i) => i,
                    Err(_) => self
                        .proxmox
                        .iter()
                        .position(|p| p.name.as_deref() == Some(*selector))
                        .ok_or_else(|| {
                            bad(format!("no [[proxmox]] endpoint is named `{selector}`"))
                        })?,
                };
                if index == self.proxmox.len() {
                    self.proxmox.push(RawProxmox::default());
                } else if index > self.proxmox.len() {
                    return Err(bad(format!(
                        "endpoint {index} does not exist; {} are configured, so the next new one is {}",
                        self.proxmox.len(),
                        self.proxmox.len()
                    )));
                }
                let ep = &mut self.proxmox[index];
                match *field {
                    "name" => ep.name = Some(value.to_string()),
                    "url" => ep.url = Some(value.to_string()),
                    "token_env" => {
                        ep.token_env = Some(value.to_string());
                        ep.token_file = None;
                        ep.token_value = None;
                    }
                    "token_file" => {
                        ep.token_file = Some(PathBuf::from(value));
                        ep.token_env = None;
                        ep.token_value = None;
                    }
                    "fingerprint" => {
                        ep.fingerprint = Some(value.to_string());
                        ep.ca_file = None;
                        ep.insecure = None;
                    }
                    "ca_file" => {
                        ep.ca_file = Some(PathBuf::from(value));
                        ep.fingerprint = None;
                        ep.insecure = None;
                    }
                    "insecure" => {
                        let on = boolean(value)?;
                        ep.insecure = Some(on);
                        if on {
                            ep.fingerprint = None;
                            ep.ca_file = None;
                        }
                    }
                    _ => return Err(bad("unknown key in [[proxmox]]".into())),
                }
                recorded_key = format!("proxmox[{index}].{field}");
            }
            ["sync", field] => {
                let s = &mut self.sync;
                match *field {
                    "max_concurrency" => s.max_concurrency = Some(int(value)?),
                    "write_window" => s.write_window = Some(int(value)?),
                    "write_concurrency" => s.write_concurrency = Some(int(value)?),
                    "bulk" => s.bulk = Some(boolean(value)?),
                    "orphans" => s.orphans = Some(value.to_string()),
                    "orphan_delete_after_runs" => s.orphan_delete_after_runs = Some(int(value)?),
                    "delete_budget_percent" => s.delete_budget_percent = Some(int(value)?),
                    "task_history" => s.task_history = Some(boolean(value)?),
                    "rules" => s.rules = Some(PathBuf::from(value)),
                    "batch_size" => s.batch_size = Some(int(value)?),
                    "site" => s.site = Some(value.to_string()),
                    "lock_ttl_secs" => s.lock_ttl_secs = Some(int(value)?),
                    "memo" => s.memo = Some(boolean(value)?),
                    "agent" => s.agent = Some(boolean(value)?),
                    "children" => s.children = Some(boolean(value)?),
                    "agent_timeout_ms" => s.agent_timeout_ms = Some(int(value)?),
                    _ => return Err(bad("unknown key in [sync]".into())),
                }
                recorded_key = key.to_string();
            }
            ["timeouts", field] => {
                let t = &mut self.timeouts;
                match *field {
                    "connect_secs" => t.connect_secs = Some(int(value)?),
                    "request_secs" => t.request_secs = Some(int(value)?),
                    "retry_budget_secs" => t.retry_budget_secs = Some(int(value)?),
                    _ => return Err(bad("unknown key in [timeouts]".into())),
                }
                recorded_key = key.to_string();
            }
            ["rules", "settings", name] => {
                let json = serde_json::from_str::<serde_json::Value>(value)
                    .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
                let toml_value = toml::Value::try_from(&json)
                    .unwrap_or_else(|_| toml::Value::String(value.to_string()));
                self.rules.settings.insert((*name).to_string(), toml_value);
                recorded_key = key.to_string();
            }
            ["rules", "policies", field] => {
                self.rules
                    .policies
                    .insert((*field).to_string(), value.to_string());
                recorded_key = key.to_string();
            }
            _ => return Err(bad("unknown configuration key".into())),
        }
        self.origins.insert(recorded_key, origin);
        Ok(())
    }

    fn validate(&self) -> Result<Config, ConfigError> {
        let netbox = self.validate_netbox()?;
        if self.proxmox.is_empty() {
            return Err(self.invalid(
                "proxmox",
                "no Proxmox endpoint configured: add a [[proxmox]] table (name, url, token_env)",
            ));
        }
        let mut proxmox = Vec::with_capacity(self.proxmox.len());
        for (i, raw) in self.proxmox.iter().enumerate() {
            let ep = self.validate_proxmox(i, raw)?;
            if proxmox.iter().any(|p: &ProxmoxEndpoint| p.name == ep.name) {
                return Err(self.invalid(
                    &format!("proxmox[{i}].name"),
                    format!(
                        "endpoint name `{}` is used twice; names must be unique",
                        ep.name
                    ),
                ));
            }
            proxmox.push(ep);
        }
        Ok(Config {
            netbox,
            proxmox,
            sync: self.validate_sync()?,
            rules: self.validate_rules()?,
            timeouts: self.validate_timeouts()?,
            file: self.base.0.clone(),
            raw: self.clone(),
        })
    }

    fn validate_url(&self, key: &str, url: Option<&str>) -> Result<Url, ConfigError> {
        let text = url.ok_or_else(|| self.invalid(key, "is required"))?;
        let url = Url::parse(text)
            .map_err(|e| self.invalid(key, format!("`{text}` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(self.invalid(key, format!("`{text}`: the scheme must be https (or http)")));
        }
        if url.host_str().is_none() {
            return Err(self.invalid(key, format!("`{text}` has no host")));
        }
        Ok(url)
    }

    #[allow(clippy::too_many_arguments)]
    fn validate_token(
        &self,
        prefix: &str,
        token: &Option<toml::Value>,
        token_env: &Option<String>,
        token_file: &Option<PathBuf>,
        token_value: &Option<Secret>,
    ) -> Result<TokenSource, ConfigError> {
        if token.is_some() {
            return Err(self.invalid(
                &format!("{prefix}.token"),
                "tokens are never read from the config file (it is often world-readable and \
                 ends up in backups and repositories); set token_env = \"VARIABLE\" or \
                 token_file = \"/path/to/file\" instead",
            ));
        }
        if let Some(secret) = token_value {
            return Ok(TokenSource::Value(secret.clone()));
        }
        match (token_env, token_file) {
            (Some(_), Some(_)) => Err(self.invalid(
                &format!("{prefix}.token_file"),
                "set only one of token_env and token_file",
            )),
            (Some(name), None) if name.trim().is_empty() => {
                Err(self.invalid(&format!("{prefix}.token_env"), "is empty"))
            }
            (Some(name), None) => Ok(TokenSource::Env(name.clone())),
            // Expanded when read: the variable belongs to the run, not to the file.
            (None, Some(path)) if credentials_relative(path).is_some() => {
                Ok(TokenSource::File(path.clone()))
            }
            (None, Some(path)) => {
                let key = format!("{prefix}.token_file");
                Ok(TokenSource::File(self.resolve_path(&key, path)))
            }
            (None, None) => Err(self.invalid(
                &format!("{prefix}.token_env"),
                "no token source: set token_env (an environment variable's name) or token_file",
            )),
        }
    }

    fn validate_tls(
        &self,
        prefix: &str,
        fingerprint: &Option<String>,
        ca_file: &Option<PathBuf>,
        insecure: Option<bool>,
    ) -> Result<TlsMode, ConfigError> {
        let insecure = insecure.unwrap_or(false);
        let count = usize::from(fingerprint.is_some())
            + usize::from(ca_file.is_some())
            + usize::from(insecure);
        if count > 1 {
            return Err(self.invalid(
                &format!("{prefix}.fingerprint"),
                "fingerprint, ca_file and insecure exclude each other: choose one",
            ));
        }
        if let Some(text) = fingerprint {
            let key = format!("{prefix}.fingerprint");
            let pin: Fingerprint = text.parse().map_err(|e: String| self.invalid(&key, e))?;
            return Ok(TlsMode::Pin(pin));
        }
        if let Some(path) = ca_file {
            let key = format!("{prefix}.ca_file");
            return Ok(TlsMode::Verify {
                ca_file: Some(self.resolve_path(&key, path)),
            });
        }
        if insecure {
            return Ok(TlsMode::Insecure);
        }
        Ok(TlsMode::default())
    }

    fn validate_netbox(&self) -> Result<NetboxConfig, ConfigError> {
        let nb = &self.netbox;
        Ok(NetboxConfig {
            url: self.validate_url("netbox.url", nb.url.as_deref())?,
            token: self.validate_token(
                "netbox",
                &nb.token,
                &nb.token_env,
                &nb.token_file,
                &nb.token_value,
            )?,
            tls: self.validate_tls("netbox", &nb.fingerprint, &nb.ca_file, nb.insecure)?,
        })
    }

    fn validate_proxmox(&self, i: usize, raw: &RawProxmox) -> Result<ProxmoxEndpoint, ConfigError> {
        let prefix = format!("proxmox[{i}]");
        let name = raw
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                self.invalid(
                    &format!("{prefix}.name"),
                    "is required (a unique label such as \"pve-a\")",
                )
            })?;
        if name.contains('/') {
            return Err(self.invalid(
                &format!("{prefix}.name"),
                "must not contain `/` (it separates scopes in reports: endpoint/node/vmid)",
            ));
        }
        Ok(ProxmoxEndpoint {
            url: self.validate_url(&format!("{prefix}.url"), raw.url.as_deref())?,
            token: self.validate_token(
                &prefix,
                &raw.token,
                &raw.token_env,
                &raw.token_file,
                &raw.token_value,
            )?,
            tls: self.validate_tls(&prefix, &raw.fingerprint, &raw.ca_file, raw.insecure)?,
            name,
        })
    }

    fn int_in(
        &self,
        key: &str,
        value: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            return Err(self.invalid(key, format!("{v} is out of range: must be {min} to {max}")));
        }
        Ok(v)
    }

    fn validate_sync(&self) -> Result<SyncConfig, ConfigError> {
        let s = &self.sync;
        let orphans = match &s.orphans {
            None => OrphanPolicy::Report,
            Some(text) => text
                .parse()
                .map_err(|e: String| self.invalid("sync.orphans", e))?,
        };
        Ok(SyncConfig {
            max_concurrency: self.int_in(
                "sync.max_concurrency",
                s.max_concurrency,
                DEFAULT_MAX_CONCURRENCY as i64,
                1,
                MAX_MAX_CONCURRENCY as i64,
            )? as usize,
            write_window: self.int_in(
                "sync.write_window",
                s.write_window,
                DEFAULT_WRITE_WINDOW as i64,
                1,
                MAX_WRITE_WINDOW as i64,
            )? as usize,
            write_concurrency: self.int_in(
                "sync.write_concurrency",
                s.write_concurrency,
                DEFAULT_WRITE_CONCURRENCY as i64,
                1,
                MAX_WRITE_CONCURRENCY as i64,
            )? as usize,
            bulk: s.bulk.unwrap_or(DEFAULT_BULK),
            orphans,
            orphan_delete_after_runs: self.int_in(
                "sync.orphan_delete_after_runs",
                s.orphan_delete_after_runs,
                i64::from(DEFAULT_ORPHAN_DELETE_AFTER_RUNS),
                1,
                1000,
            )? as u32,
            delete_budget_percent: self.int_in(
                "sync.delete_budget_percent",
                s.delete_budget_percent,
                i64::from(DEFAULT_DELETE_BUDGET_PERCENT),
                0,
                100,
            )? as u8,
            task_history: s.task_history.unwrap_or(true),
            rules: s.rules.as_ref().map(|p| self.resolve_path("sync.rules", p)),
            batch_size: self.int_in(
                "sync.batch_size",
                s.batch_size,
                DEFAULT_BATCH_SIZE as i64,
                1,
                100_000,
            )? as usize,
            site: s.site.clone().filter(|v| !v.is_empty()),
            // Up to a day: a longer lease only makes a killed run block the others longer.
            lock_ttl: Duration::from_secs(self.int_in(
                "sync.lock_ttl_secs",
                s.lock_ttl_secs,
                crate::safety::lease::DEFAULT_LEASE_TTL.as_secs() as i64,
                1,
                86_400,
            )? as u64),
            memo: s.memo.unwrap_or(true),
            agent: s.agent.unwrap_or(true),
            children: s.children.unwrap_or(true),
            agent_timeout: Duration::from_millis(self.int_in(
                "sync.agent_timeout_ms",
                s.agent_timeout_ms,
                DEFAULT_AGENT_TIMEOUT.as_millis() as i64,
                100,
                120_000,
            )? as u64),
        })
    }

    fn validate_rules(&self) -> Result<RulesConfig, ConfigError> {
        let settings = match serde_json::to_value(&self.rules.settings) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(self.invalid("rules.settings", "cannot be expressed as JSON")),
        };
        let mut policies = BTreeMap::new();
        for (field, text) in &self.rules.policies {
            let key = format!("rules.policies.{field}");
            let ownership: Ownership = text.parse().map_err(|e: String| self.invalid(&key, e))?;
            policies.insert(field.clone(), ownership);
        }
        Ok(RulesConfig { settings, policies })
    }

    fn validate_timeouts(&self) -> Result<Timeouts, ConfigError> {
        let t = &self.timeouts;
        let secs = |key: &str, v: Option<i64>, d: Duration| -> Result<Duration, ConfigError> {
            let v = self.int_in(key, v, d.as_secs() as i64, 1, 3600)?;
            Ok(Duration::from_secs(v as u64))
        };
        Ok(Timeouts {
            connect: secs(
                "timeouts.connect_secs",
                t.connect_secs,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            request: secs(
                "timeouts.request_secs",
                t.request_secs,
                DEFAULT_REQUEST_TIMEOUT,
            )?,
            retry_budget: secs(
                "timeouts.retry_budget_secs",
                t.retry_budget_secs,
                DEFAULT_RETRY_BUDGET,
            )?,
        })
    }

    fn from_config(config: &Config) -> Self {
        let tls = |mode: &TlsMode| -> (Option<String>, Option<PathBuf>, Option<bool>) {
            match mode {
                TlsMode::Verify { ca_file } => (None, ca_file.clone(), None),
                TlsMode::Pin(pin) => (Some(pin.to_string()), None, None),
                TlsMode::Insecure => (None, None, Some(true)),
            }
        };
        let token = |source: &TokenSource| -> (Option<String>, Option<PathBuf>, Option<Secret>) {
            match source {
                TokenSource::Env(name) => (Some(name.clone()), None, None),
                TokenSource::File(path) => (None, Some(path.clone()), None),
                TokenSource::Value(secret) => (None, None, Some(secret.clone())),
            }
        };
        let (fingerprint, ca_file, insecure) = tls(&config.netbox.tls);
        let (token_env, token_file, token_value) = token(&config.netbox.token);
        let netbox = RawNetbox {
            url: Some(config.netbox.url.to_string()),
            token_env,
            token_file,
            token: None,
            fingerprint,
            ca_file,
            insecure,
            token_value,
        };
        let proxmox = config
            .proxmox
            .iter()
            .map(|ep| {
                let (fingerprint, ca_file, insecure) = tls(&ep.tls);
                let (token_env, token_file, token_value) = token(&ep.token);
                RawProxmox {
                    name: Some(ep.name.clone()),
                    url: Some(ep.url.to_string()),
                    token_env,
                    token_file,
                    token: None,
                    fingerprint,
                    ca_file,
                    insecure,
                    token_value,
                }
            })
            .collect();
        let s = &config.sync;
        let orphans = match s.orphans {
            OrphanPolicy::Report => "report",
            OrphanPolicy::Mark => "mark",
            OrphanPolicy::Delete => "delete",
        };
        let settings =
            toml::Value::try_from(serde_json::Value::Object(config.rules.settings.clone()))
                .ok()
                .and_then(|v| v.as_table().cloned())
                .unwrap_or_default();
        let policies = config
            .rules
            .policies
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Ownership::Owned => "owned",
                    Ownership::Merge => "merge",
                    Ownership::Seed => "seed",
                    Ownership::Ignore => "ignore",
                };
                (k.clone(), text.to_string())
            })
            .collect();
        RawConfig {
            netbox,
            proxmox,
            sync: RawSync {
                max_concurrency: Some(s.max_concurrency as i64),
                write_window: Some(s.write_window as i64),
                write_concurrency: Some(s.write_concurrency as i64),
                bulk: Some(s.bulk),
                orphans: Some(orphans.to_string()),
                orphan_delete_after_runs: Some(i64::from(s.orphan_delete_after_runs)),
                delete_budget_percent: Some(i64::from(s.delete_budget_percent)),
                task_history: Some(s.task_history),
                rules: s.rules.clone(),
                batch_size: Some(s.batch_size as i64),
                site: s.site.clone(),
                lock_ttl_secs: Some(s.lock_ttl.as_secs() as i64),
                memo: Some(s.memo),
                agent: Some(s.agent),
                children: Some(s.children),
                agent_timeout_ms: Some(s.agent_timeout.as_millis() as i64),
            },
            rules: RawRules { settings, policies },
            timeouts: RawTimeouts {
                connect_secs: Some(config.timeouts.connect.as_secs() as i64),
                request_secs: Some(config.timeouts.request.as_secs() as i64),
                retry_budget_secs: Some(config.timeouts.retry_budget.as_secs() as i64),
            },
            origins: BTreeMap::new(),
            base: Origin0(config.file.clone()),
        }
    }
}

impl Config {
    /// Builds a configuration in code (for `demo` and tests): default `[sync]`, rules and
    /// timeouts; change the public fields as needed.
    pub fn new(netbox: NetboxConfig, proxmox: Vec<ProxmoxEndpoint>) -> Self {
        let mut config = Self {
            netbox,
            proxmox,
            sync: SyncConfig::default(),
            rules: RulesConfig::default(),
            timeouts: Timeouts::default(),
            file: None,
            raw: RawConfig::default(),
        };
        config.raw = RawConfig::from_config(&config);
        config
    }

    /// Loads `path` (or, with `None`, `pve2netbox.toml` if it exists, else the environment
    /// alone), then applies the process's `PVE2NETBOX_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`Config::load`] with an explicit environment (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let default = Path::new(DEFAULT_CONFIG_FILE);
        let path = match path {
            Some(p) => Some(p),
            None if default.exists() => Some(default),
            None => None,
        };
        let mut raw = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse_raw(path, &text)?
            }
            None => RawConfig::default(),
        };
        raw.apply_env(env)?;
        raw.validate()
    }

    /// Parses TOML text as if read from `path` (no environment applied).
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::parse_raw(path, text)?.validate()
    }

    fn parse_raw(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        raw.base = Origin0(Some(path.to_path_buf()));
        Ok(raw)
    }

    /// Applies command-line overrides (after the environment) and validates again.
    pub fn apply_overrides(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        if overrides.is_empty() {
            return Ok(());
        }
        // Fields changed in code since loading win over the stored layers.
        let mut raw = if self.raw_matches() {
            self.raw.clone()
        } else {
            let mut raw = RawConfig::from_config(self);
            raw.origins = self.raw.origins.clone();
            raw
        };
        for (key, value, origin) in &overrides.entries {
            raw.set(key, value, origin.clone())?;
        }
        *self = raw.validate()?;
        Ok(())
    }

    fn raw_matches(&self) -> bool {
        match self.raw.validate() {
            Ok(c) => {
                c.netbox == self.netbox
                    && c.proxmox == self.proxmox
                    && c.sync == self.sync
                    && c.rules == self.rules
                    && c.timeouts == self.timeouts
            }
            Err(_) => false,
        }
    }

    /// The endpoint named `name`.
    pub fn endpoint(&self, name: &str) -> Option<&ProxmoxEndpoint> {
        self.proxmox.iter().find(|p| p.name == name)
    }

    /// Where the value of `key` (e.g. `sync.write_window`, `proxmox[0].url`) came from.
    pub fn origin_of(&self, key: &str) -> Origin {
        self.raw.origin_of(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[netbox]
url = "https://netbox.example.com"
token_env = "NETBOX_TOKEN"

[[proxmox]]
name = "pve-a"
url = "https://pve-a.example.com:8006"
token_env = "PVE_TOKEN"
fingerprint = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"

[[proxmox]]
name = "pve-b"
url = "https://pve-b.example.com:8006"
token_file = "pve-b.token"
ca_file = "pve-root-ca.pem"

[sync]
write_window = 4
orphans = "mark"
rules = "site.wasm"

[rules.settings]
tenant_prefix = "t-"
limits = { max = 3 }

[rules.policies]
tags = "merge"
"custom_fields.proxmox_node" = "ignore"
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pve2netbox.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_with_env(Some(&path), env(vars))
    }

    #[test]
    fn loads_the_documented_shape_with_defaults() {
        let config = Config::from_toml(Path::new("/etc/p2n/pve2netbox.toml"), FILE).unwrap();
        assert_eq!(config.netbox.url.as_str(), "https://netbox.example.com/");
        assert_eq!(config.netbox.token, TokenSource::Env("NETBOX_TOKEN".into()));
        assert_eq!(config.proxmox.len(), 2);
        assert!(matches!(config.proxmox[0].tls, TlsMode::Pin(_)));
        assert_eq!(
            config.proxmox[1].token,
            TokenSource::File(PathBuf::from("/etc/p2n/pve-b.token"))
        );
        assert_eq!(
            config.proxmox[1].tls,
            TlsMode::Verify {
                ca_file: Some(PathBuf::from("/etc/p2n/pve-root-ca.pem"))
            }
        );
        assert_eq!(config.sync.write_window, 4);
        assert_eq!(config.sync.max_concurrency, DEFAULT_MAX_CONCURRENCY);
        assert_eq!(config.sync.orphans, OrphanPolicy::Mark);
        assert_eq!(config.sync.rules, Some(PathBuf::from("/etc/p2n/site.wasm")));
        assert!(config.sync.task_history);
        assert_eq!(config.sync.delete_budget_percent, 10);
        assert_eq!(config.sync.orphan_delete_after_runs, 3);
        assert_eq!(
            config.rules.settings["tenant_prefix"],
            serde_json::json!("t-")
        );
        assert_eq!(
            config.rules.settings["limits"],
            serde_json::json!({"max": 3})
        );
        assert_eq!(config.rules.policies["tags"], Ownership::Merge);
        assert_eq!(
            config.rules.policies["custom_fields.proxmox_node"],
            Ownership::Ignore
        );
        assert_eq!(config.timeouts, Timeouts::default());
    }

    #[test]
    fn environment_overrides_file_values() {
        let config = load(
            FILE,
            &[
                ("PVE2NETBOX_SYNC_WRITE_WINDOW", "2"),
                ("PVE2NETBOX_NETBOX_URL", "https://nb.internal"),
                ("PVE2NETBOX_PROXMOX_PVE_B_INSECURE", "true"),
                ("PVE2NETBOX_PROXMOX_0_URL", "https://10.0.0.1:8006"),
                ("PVE2NETBOX_RULES_SETTINGS_MAX_VMS", "12"),
                (
                    "PVE2NETBOX_RULES_POLICIES_CUSTOM_FIELDS__PROXMOX_NODE",
                    "owned",
                ),
                ("PVE2NETBOX_TIMEOUTS_REQUEST_SECS", "5"),
                ("PVE2NETBOX_LOG", "debug"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(config.sync.write_window, 2);
        assert_eq!(config.netbox.url.as_str(), "https://nb.internal/");
        assert_eq!(config.proxmox[1].tls, TlsMode::Insecure);
        assert_eq!(config.proxmox[0].url.as_str(), "https://10.0.0.1:8006/");
        assert_eq!(config.rules.settings["max_vms"], serde_json::json!(12));
        assert_eq!(
            config.rules.policies["custom_fields.proxmox_node"],
            Ownership::Owned
        );
        assert_eq!(config.timeouts.request, Duration::from_secs(5));
        assert_eq!(
            config.origin_of("sync.write_window"),
            Origin::Env("PVE2NETBOX_SYNC_WRITE_WINDOW".into())
        );
    }

    #[test]
    fn environment_alone_builds_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert!(matches!(
            Config::load_with_env(Some(&missing), env(&[])),
            Err(ConfigError::Read { .. })
        ));
        let vars = env(&[
            ("PVE2NETBOX_NETBOX_URL", "https://nb"),
            ("PVE2NETBOX_NETBOX_TOKEN_ENV", "NB"),
            ("PVE2NETBOX_PROXMOX_0_NAME", "a"),
            ("PVE2NETBOX_PROXMOX_0_URL", "https://a:8006"),
            ("PVE2NETBOX_PROXMOX_0_TOKEN_ENV", "A"),
            ("PVE2NETBOX_PROXMOX_1_NAME", "b"),
            ("PVE2NETBOX_PROXMOX_1_URL", "https://b:8006"),
            ("PVE2NETBOX_PROXMOX_1_TOKEN_FILE", "/run/secrets/b"),
        ]);
        let mut raw = RawConfig::default();
        raw.apply_env(vars).unwrap();
        let config = raw.validate().unwrap();
        assert_eq!(config.proxmox.len(), 2);
        assert_eq!(
            config.proxmox[1].token,
            TokenSource::File("/run/secrets/b".into())
        );
        assert!(config.file.is_none());
    }

    #[test]
    fn write_concurrency_defaults_to_one_and_is_bounded() {
        assert_eq!(load(FILE, &[]).unwrap().sync.write_concurrency, 1);
        let file = FILE.replace(
            "write_window = 4",
            "write_window = 4\nwrite_concurrency = 4",
        );
        assert_eq!(load(&file, &[]).unwrap().sync.write_concurrency, 4);
        let config = load(FILE, &[("PVE2NETBOX_SYNC_WRITE_CONCURRENCY", "2")]).unwrap();
        assert_eq!(config.sync.write_concurrency, 2);
        for bad in ["0", "17"] {
            let err = load(FILE, &[("PVE2NETBOX_SYNC_WRITE_CONCURRENCY", bad)]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("sync.write_concurrency")
                    && text.contains("PVE2NETBOX_SYNC_WRITE_CONCURRENCY"),
                "{text}"
            );
        }
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let err = load(&FILE.replace("write_window = 4", "write_window = 0"), &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("sync.write_window") && text.contains("pve2netbox.toml"),
            "{text}"
        );

        let err = load(&FILE.replace("write_window = 4", "write_windw = 4"), &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("write_windw") && text.contains("pve2netbox.toml"),
            "{text}"
        );

        let err = load(FILE, &[("PVE2NETBOX_SYNC_BULK", "maybe")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("sync.bulk") && text.contains("PVE2NETBOX_SYNC_BULK"),
            "{text}"
        );

        let err = load(&FILE.replace("AB:CD:EF:01", "AB:CD"), &[]).unwrap_err();
        assert!(err.to_string().contains("proxmox[0].fingerprint"), "{err}");

        let err = load(
            &FILE.replace("orphans = \"mark\"", "orphans = \"purge\""),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("sync.orphans"), "{err}");

        let err = load(&FILE.replace("\"merge\"", "\"mine\""), &[]).unwrap_err();
        assert!(err.to_string().contains("rules.policies.tags"), "{err}");
    }

    #[test]
    fn a_token_in_the_file_is_refused_with_the_reason() {
        let text = FILE.replace(
            "token_env = \"NETBOX_TOKEN\"",
            "token = \"0123456789abcdef\"",
        );
        let err = load(&text, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("netbox.token") && msg.contains("token_env"),
            "{msg}"
        );
        assert!(
            !msg.contains("0123456789abcdef"),
            "the error must not echo the token: {msg}"
        );
    }

    #[test]
    fn tls_options_exclude_each_other_in_the_file() {
        let text = FILE.replace(
            "ca_file = \"pve-root-ca.pem\"",
            "ca_file = \"x.pem\"\ninsecure = true",
        );
        let err = load(&text, &[]).unwrap_err();
        assert!(err.to_string().contains("proxmox[1]"), "{err}");
    }

    #[test]
    fn overrides_apply_after_environment() {
        let mut config = load(FILE, &[("PVE2NETBOX_SYNC_WRITE_WINDOW", "2")]).unwrap();
        let mut overrides = Overrides::new();
        overrides
            .set("sync.write_window", "6", "--write-window")
            .set("sync.bulk", "true", "--bulk")
            .set("proxmox.pve-a.url", "https://pve-a2:8006", "--set");
        config.apply_overrides(&overrides).unwrap();
        assert_eq!(config.sync.write_window, 6);
        assert!(config.sync.bulk);
        assert_eq!(config.proxmox[0].url.as_str(), "https://pve-a2:8006/");
        // Unchanged keys keep their file values.
        assert_eq!(config.sync.orphans, OrphanPolicy::Mark);

        let mut bad = Overrides::new();
        bad.set("sync.max_concurrency", "0", "--max-concurrency");
        let err = config.apply_overrides(&bad).unwrap_err();
        assert!(err.to_string().contains("--max-concurrency"), "{err}");
    }

    #[test]
    fn agent_reads_are_on_by_default_and_can_be_turned_off_or_shortened() {
        let config = load(FILE, &[]).unwrap();
        assert!(config.sync.agent);
        assert_eq!(config.sync.agent_timeout, DEFAULT_AGENT_TIMEOUT);
        let config = load(
            FILE,
            &[
                ("PVE2NETBOX_SYNC_AGENT", "false"),
                ("PVE2NETBOX_SYNC_AGENT_TIMEOUT_MS", "750"),
            ],
        )
        .unwrap();
        assert!(!config.sync.agent);
        assert_eq!(config.sync.agent_timeout, Duration::from_millis(750));
        let err = load(FILE, &[("PVE2NETBOX_SYNC_AGENT_TIMEOUT_MS", "5")]).unwrap_err();
        assert!(err.to_string().contains("agent_timeout_ms"), "{err}");
    }

    #[test]
    fn config_built_in_code_takes_overrides() {
        let nb = NetboxConfig::new(
            Url::parse("http://127.0.0.1:1").unwrap(),
            Secret::new("nbt_abc.def"),
        );
        let pve = ProxmoxEndpoint::new(
            "sim",
            Url::parse("http://127.0.0.1:2").unwrap(),
            Secret::new("t"),
        );
        let mut config = Config::new(nb, vec![pve]);
        config.sync.bulk = true;
        let mut overrides = Overrides::new();
        overrides.set("sync.write_window", "3", "--write-window");
        config.apply_overrides(&overrides).unwrap();
        assert_eq!(config.sync.write_window, 3);
        assert!(
            config.sync.bulk,
            "a field changed in code survives overrides"
        );
        assert!(matches!(config.netbox.token, TokenSource::Value(_)));
    }

    #[test]
    fn token_sources_resolve_and_redact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "secret-value\n").unwrap();
        let secret = TokenSource::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "secret-value");
        assert_eq!(format!("{secret:?}"), "***");

        let source = TokenSource::Env("MY_TOKEN".into());
        let got = source
            .resolve_with(&|name| (name == "MY_TOKEN").then(|| "v".to_string()))
            .unwrap();
        assert_eq!(got.expose(), "v");
        let err = source.resolve_with(&|_| None).unwrap_err();
        assert!(err.to_string().contains("MY_TOKEN"), "{err}");
        let err = source.resolve_with(&|_| Some("  ".into())).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");

        let nb = NetboxConfig::new(
            Url::parse("https://nb").unwrap(),
            Secret::new("very-secret-token"),
        );
        assert!(!format!("{nb:?}").contains("very-secret-token"));
    }

    #[test]
    fn token_file_under_the_credentials_directory_is_read_from_that_variable() {
        let creds = tempfile::tempdir().unwrap();
        std::fs::write(creds.path().join("netbox.token"), "nb-secret\n").unwrap();
        let dir = creds.path().to_str().unwrap().to_string();
        let env = move |name: &str| (name == CREDENTIALS_DIR_VAR).then(|| dir.clone());
        let config = Config::from_toml(
            Path::new("/etc/pve2netbox/pve2netbox.toml"),
            r#"
[netbox]
url = "https://nb.example.com"
token_file = "$CREDENTIALS_DIRECTORY/netbox.token"

[[proxmox]]
name = "pve-a"
url = "https://pve-a.example.com:8006"
token_file = "${CREDENTIALS_DIRECTORY}/pve-a.token"
insecure = true
"#,
        )
        .unwrap();
        // Not taken relative to the config file's directory, and read through the variable.
        assert_eq!(
            config.netbox.token,
            TokenSource::File("$CREDENTIALS_DIRECTORY/netbox.token".into())
        );
        assert_eq!(
            config.netbox.token.resolve_with(&env).unwrap().expose(),
            "nb-secret"
        );
        // A credential that was not loaded names the file it looked for.
        let err = config.proxmox[0].token.resolve_with(&env).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{}/pve-a.token", creds.path().display())),
            "{err}"
        );
        // Outside systemd, without the variable: a message saying what to set.
        let err = config.netbox.token.resolve_with(&|_| None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("$CREDENTIALS_DIRECTORY, which is not set")
                && msg.contains("LoadCredential="),
            "{msg}"
        );
        // Only a leading variable is special; elsewhere `$` is part of a name.
        let plain = Path::new("/srv/$CREDENTIALS_DIRECTORY/t");
        assert_eq!(expand_credentials_dir(plain, &env).unwrap(), plain);
    }
}
