//! `pve2netbox doctor [--config FILE]`: checks what a sync needs before it runs, one line per
//! check (`ok`, `warn`, `fail`), exit 1 if any check fails. Read-only except for one harmless
//! probe (below); it never creates, changes or deletes anything.
//!
//! Checks: the configuration; NetBox reachable, its version, the token can read VMs and can
//! write, the identity custom fields and the managed tag exist, the custom fields the rules set
//! exist on VMs; per Proxmox endpoint: reachable, version, cluster name, offline nodes, guests
//! visible to the token, one guest config readable, and (unless `sync.agent = false`) the
//! guest agent readable on one running guest with the agent enabled (`VM.GuestAgent.Audit` on
//! PVE 9, `VM.Monitor` on PVE 7/8).
//!
//! **Write probe.** NetBox checks permissions before it validates a body, so an empty
//! `POST /api/virtualization/virtual-machines/` with `{}` answers 403 ("You do not have
//! permission to perform this action.") to a read-only token or one without `add` rights, and
//! 400 (name required) to a token that may create VMs. Nothing is created either way. Chosen over
//! `OPTIONS`, whose `actions` depend on NetBox's metadata class and version. Only the create
//! right is probed; change and delete rights show up in the first sync that needs them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Value, json};

use super::rule_fields;
use crate::clients::http::RequestCounters;
use crate::clients::netbox::{MAX_TESTED, MIN_SUPPORTED, NetboxClient, NetboxError};
use crate::clients::proxmox::{GuestKind, ProxmoxClient};
use crate::config::Config;
use crate::pipeline::proxmox_read::guest_network::{
    self, NetworkAsk, NetworkSettings, NetworkSource, UnknownReason,
};

/// Running QEMU guests whose config `doctor` reads at most, looking for one with the agent on.
const AGENT_SAMPLE_CONFIGS: usize = 10;

/// Custom fields the sync keys and tracks VMs by (DESIGN.md "Identity").
pub const IDENTITY_CUSTOM_FIELDS: [(&str, &str); 4] = [
    ("proxmox_vm_id", "integer"),
    ("proxmox_vm_type", "text"),
    ("proxmox_node", "text"),
    ("proxmox_tags", "text"),
];
/// The tag marking VMs the sync manages.
pub const MANAGED_TAG: &str = "pve2netbox";
const VM_ENDPOINT: &str = "virtualization/virtual-machines";
const VM_OBJECT_TYPE: &str = "virtualization.virtualmachine";

/// Arguments of `doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Configuration file (default: `pve2netbox.toml` if present, else the environment alone).
    #[arg(long, env = "PVE2NETBOX_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but worth a look (or fixed by the first sync).
    Warn,
    /// A sync would fail.
    Fail,
}

/// One printed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Outcome.
    pub level: Level,
    /// What was checked: `config`, `netbox`, `proxmox pve-a`.
    pub scope: String,
    /// What was found.
    pub message: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        write!(f, "{level:<5}{}: {}", self.scope, self.message)
    }
}

struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, level: Level, scope: &str, message: impl Into<String>) {
        let check = Check {
            level,
            scope: scope.to_string(),
            message: message.into(),
        };
        // Printed as it happens: a slow endpoint should not hide the lines before it.
        println!("{check}");
        self.checks.push(check);
    }
}

/// Runs `doctor`.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            println!(
                "{}",
                Check {
                    level: Level::Fail,
                    scope: "config".into(),
                    message: err.to_string()
                }
            );
            return Ok(ExitCode::from(1));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let checks = runtime.block_on(check_all(&config));
    let failed = checks.iter().any(|c| c.level == Level::Fail);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs every check against a loaded configuration, printing each line as it is found.
pub async fn check_all(config: &Config) -> Vec<Check> {
    let mut report = Report { checks: Vec::new() };
    let source = match &config.file {
        Some(path) => format!("loaded from {}", path.display()),
        None => "built from the environment".to_string(),
    };
    report.push(
        Level::Ok,
        "config",
        format!("{source}: {} Proxmox endpoint(s)", config.proxmox.len()),
    );
    if let Some(rules) = &config.sync.rules
        && !rules.is_file()
    {
        report.push(
            Level::Fail,
            "config",
            format!("sync.rules: {} does not exist", rules.display()),
        );
    }
    let counters = Arc::new(RequestCounters::default());
    check_netbox(config, counters.clone(), &mut report).await;
    for endpoint in &config.proxmox {
        check_proxmox(config, endpoint, counters.clone(), &mut report).await;
    }
    report.checks
}

async fn check_netbox(config: &Config, counters: Arc<RequestCounters>, report: &mut Report) {
    let scope = "netbox";
    let client = match NetboxClient::new(&config.netbox, &config.timeouts, counters) {
        Ok(client) => client,
        Err(err) => return report.push(Level::Fail, scope, err.to_string()),
    };
    let status = match client.status().await {
        Ok(status) => status,
        Err(err) => return report.push(Level::Fail, scope, format!("not reachable: {err}")),
    };
    let version = status.version;
    let token = match client.token_kind() {
        crate::clients::netbox::TokenKind::V1 => "v1 token",
        crate::clients::netbox::TokenKind::V2 => "v2 token",
    };
    let base = format!(
        "NetBox {} at {} ({token})",
        status.version_text, config.netbox.url
    );
    if version < MIN_SUPPORTED {
        report.push(
            Level::Fail,
            scope,
            format!(
                "{base}: older than {}.{}, the oldest supported release",
                MIN_SUPPORTED.major, MIN_SUPPORTED.minor
            ),
        );
    } else if version > MAX_TESTED {
        report.push(
            Level::Warn,
            scope,
            format!(
                "{base}: newer than {}.{}, the newest release checked",
                MAX_TESTED.major, MAX_TESTED.minor
            ),
        );
    } else {
        report.push(Level::Ok, scope, base);
    }
    if client.token_kind() == crate::clients::netbox::TokenKind::V2
        && !status.capabilities.v2_tokens
    {
        report.push(
            Level::Fail,
            scope,
            "a v2 token (nbt_…) needs NetBox 4.5 or newer",
        );
    }

    match client.list_page(VM_ENDPOINT, &[], &["id"], 1, 0).await {
        Ok(page) => {
            let count = page.count.map_or("?".to_string(), |c| c.to_string());
            report.push(
                Level::Ok,
                scope,
                format!("token can read virtual machines ({count} in NetBox)"),
            );
        }
        Err(err) => {
            let message = match &err {
                NetboxError::Auth { .. } => format!("token rejected: {err}"),
                NetboxError::Forbidden { .. } => {
                    format!("token cannot read virtual machines: {err}")
                }
                _ => err.to_string(),
            };
            return report.push(Level::Fail, scope, message);
        }
    }

    match client.create(VM_ENDPOINT, &json!({}), &["id"]).await {
        Err(NetboxError::Validation { .. }) => report.push(
            Level::Ok,
            scope,
            "token can create virtual machines (probed with an empty POST, which NetBox rejected)",
        ),
        Err(err @ NetboxError::Forbidden { .. }) => report.push(
            Level::Fail,
            scope,
            format!("token is read-only: sync cannot write ({err})"),
        ),
        Err(err) => report.push(Level::Fail, scope, format!("write probe failed: {err}")),
        Ok(created) => report.push(
            Level::Warn,
            scope,
            format!(
                "write probe: NetBox accepted an empty virtual machine (id {}); delete it",
                created.get("id").cloned().unwrap_or(Value::Null)
            ),
        ),
    }

    for (name, kind) in IDENTITY_CUSTOM_FIELDS {
        match client.custom_field(name).await {
            Ok(Some(field)) => {
                let actual = field
                    .get("type")
                    .and_then(|t| t.get("value").or(Some(t)))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                let on_vms = field
                    .get("object_types")
                    .and_then(Value::as_array)
                    .is_some_and(|types| types.iter().any(|t| t.as_str() == Some(VM_OBJECT_TYPE)));
                if actual != kind {
                    report.push(
                        Level::Fail,
                        scope,
                        format!("custom field {name} has type {actual}, the sync needs {kind}"),
                    );
                } else if !on_vms {
                    report.push(
                        Level::Fail,
                        scope,
                        format!("custom field {name} is not enabled for {VM_OBJECT_TYPE}"),
                    );
                } else {
                    report.push(
                        Level::Ok,
                        scope,
                        format!("custom field {name} ({kind}) present"),
                    );
                }
            }
            Ok(None) => report.push(
                Level::Warn,
                scope,
                format!("custom field {name} missing: the first sync creates it"),
            ),
            Err(err) => report.push(Level::Fail, scope, format!("custom field {name}: {err}")),
        }
    }

    let tags = client
        .list_all(
            "extras/tags",
            &[("slug".to_string(), MANAGED_TAG.to_string())],
            &["id", "slug"],
        )
        .await;
    match tags {
        Ok(rows)
            if rows
                .iter()
                .any(|t| t.get("slug").and_then(Value::as_str) == Some(MANAGED_TAG)) =>
        {
            report.push(
                Level::Ok,
                scope,
                format!("managed tag {MANAGED_TAG} present"),
            )
        }
        Ok(_) => report.push(
            Level::Warn,
            scope,
            format!("managed tag {MANAGED_TAG} missing: the first sync creates it"),
        ),
        Err(err) => report.push(Level::Fail, scope, format!("managed tag: {err}")),
    }
    check_rule_custom_fields(config, &client, report).await;
}

/// The custom fields the configured rules set exist on NetBox VMs (see `rule_fields`).
async fn check_rule_custom_fields(config: &Config, client: &NetboxClient, report: &mut Report) {
    let scope = "rules";
    // A missing module file is reported with the config.
    if config.sync.rules.as_ref().is_some_and(|p| !p.is_file()) {
        return;
    }
    let module = match crate::pipeline::run::load_rules(config.sync.rules.as_deref()) {
        Ok((_runtime, module)) => module,
        Err(err) => return report.push(Level::Fail, scope, err.to_string()),
    };
    let set = match rule_fields::set_by(&module, config) {
        Ok(set) => set,
        Err(err) => return report.push(Level::Fail, scope, err.to_string()),
    };
    match rule_fields::missing(client, &set).await {
        Ok(missing) => match rule_fields::verdict(&module, set.len(), &missing) {
            Ok(line) => report.push(Level::Ok, scope, line),
            Err(line) => report.push(Level::Fail, scope, line),
        },
        Err(err) => report.push(Level::Fail, scope, format!("listing custom fields: {err}")),
    }
}

async fn check_proxmox(
    config: &Config,
    endpoint: &crate::config::ProxmoxEndpoint,
    counters: Arc<RequestCounters>,
    report: &mut Report,
) {
    let scope = format!("proxmox {}", endpoint.name);
    let scope = scope.as_str();
    let client = match ProxmoxClient::new(endpoint, &config.timeouts, counters) {
        Ok(client) => client,
        Err(err) => return report.push(Level::Fail, scope, err.to_string()),
    };
    let major = match client.version().await {
        Ok(v) => {
            report.push(
                Level::Ok,
                scope,
                format!("Proxmox VE {} at {}", v.version, endpoint.url),
            );
            v.major()
        }
        Err(err) => return report.push(Level::Fail, scope, format!("not reachable: {err}")),
    };
    match client.cluster_status().await {
        Ok(status) if status.standalone => {
            report.push(Level::Ok, scope, format!("standalone node {}", status.name))
        }
        Ok(status) => {
            let quorum = match status.quorate {
                Some(false) => ", NOT quorate",
                _ => "",
            };
            let level = if status.quorate == Some(false) {
                Level::Warn
            } else {
                Level::Ok
            };
            report.push(
                level,
                scope,
                format!(
                    "cluster {} ({} nodes{quorum})",
                    status.name,
                    status.nodes.len()
                ),
            );
        }
        Err(err) => report.push(
            Level::Fail,
            scope,
            format!("cannot read the cluster status (the token needs Sys.Audit on /): {err}"),
        ),
    }
    match client.nodes().await {
        Ok(nodes) => {
            for node in nodes.iter().filter(|n| !n.is_online()) {
                report.push(
                    Level::Warn,
                    scope,
                    format!(
                        "node {} is {}: its guests are reported, not synced, and get no orphan action",
                        node.node, node.status
                    ),
                );
            }
        }
        Err(err) => report.push(Level::Warn, scope, format!("cannot list nodes: {err}")),
    }
    let rows = match client.vm_resources().await {
        Ok(rows) => rows,
        Err(err) => return report.push(Level::Fail, scope, format!("cannot list guests: {err}")),
    };
    if rows.is_empty() {
        return report.push(
            Level::Warn,
            scope,
            "the token sees no guests: it needs VM.Audit (the PVEAuditor role on /), or the \
             endpoint has none",
        );
    }
    let qemu = rows
        .iter()
        .filter(|r| r.get("type").and_then(Value::as_str) == Some("qemu"))
        .count();
    let lxc = rows
        .iter()
        .filter(|r| r.get("type").and_then(Value::as_str) == Some("lxc"))
        .count();
    report.push(
        Level::Ok,
        scope,
        format!("token sees {} guests ({qemu} qemu, {lxc} lxc)", rows.len()),
    );
    // One config read proves VM.Audit on configs and the proxy path to a node.
    let sample = rows.iter().find_map(|row| {
        let kind = GuestKind::parse(row.get("type")?.as_str()?)?;
        let node = row.get("node")?.as_str()?;
        let vmid = crate::clients::proxmox::lenient::as_u64(row.get("vmid")?)?;
        (row.get("status").and_then(Value::as_str) != Some("unknown")).then_some((node, kind, vmid))
    });
    if let Some((node, kind, vmid)) = sample {
        match client.guest_config(node, kind, vmid).await {
            Ok(_) => report.push(
                Level::Ok,
                scope,
                format!("guest config readable ({node}/{vmid})"),
            ),
            Err(err) => report.push(
                Level::Fail,
                scope,
                format!("cannot read guest configs: {err}"),
            ),
        }
    }
    check_agent(config, &client, &rows, major, scope, report).await;
}

/// The privilege the guest agent calls need on this Proxmox VE major version.
fn agent_privilege(major: Option<u32>) -> &'static str {
    match major {
        Some(m) if m >= 9 => "VM.GuestAgent.Audit",
        Some(_) => "VM.Monitor",
        None => "VM.GuestAgent.Audit (PVE 9) or VM.Monitor (PVE 7/8)",
    }
}

/// Asks the guest agent of one running QEMU guest whose config enables it. Proxmox checks the
/// privilege before it looks at the agent, so any answer but 403 proves the token may ask.
async fn check_agent(
    config: &Config,
    client: &ProxmoxClient,
    rows: &[crate::clients::proxmox::RawObject],
    major: Option<u32>,
    scope: &str,
    report: &mut Report,
) {
    let settings = NetworkSettings::of(&config.sync);
    if !settings.enabled {
        return report.push(
            Level::Ok,
            scope,
            "guest agent reads are off (sync.agent = false); not checked",
        );
    }
    let running_qemu = rows.iter().filter_map(|row| {
        (row.get("type").and_then(Value::as_str) == Some("qemu")
            && row.get("status").and_then(Value::as_str) == Some("running")
            && row
                .get("template")
                .and_then(crate::clients::proxmox::lenient::as_u64)
                != Some(1))
        .then_some(())?;
        let node = row.get("node")?.as_str()?;
        let vmid = crate::clients::proxmox::lenient::as_u64(row.get("vmid")?)?;
        Some((node, vmid))
    });
    let mut sample = None;
    for (node, vmid) in running_qemu.take(AGENT_SAMPLE_CONFIGS) {
        if let Ok(cfg) = client.guest_config(node, GuestKind::Qemu, vmid).await
            && guest_network::agent_enabled(&cfg)
        {
            sample = Some((node, vmid));
            break;
        }
    }
    let Some((node, vmid)) = sample else {
        return report.push(
            Level::Ok,
            scope,
            format!(
                "guest agent permission not checked: no running QEMU guest with the agent enabled                  among the first {AGENT_SAMPLE_CONFIGS} (the token needs {})",
                agent_privilege(major)
            ),
        );
    };
    let answer =
        guest_network::read_network(client, node, vmid, NetworkAsk::Agent, settings.timeout).await;
    let privilege = agent_privilege(major);
    match answer {
        NetworkSource::Unknown(u) if u.reason == UnknownReason::NoPermission => report.push(
            Level::Warn,
            scope,
            format!(
                "the token may not ask the guest agent ({node}/{vmid}: {}): grant {privilege}                  on /vms (e.g. a role with {privilege} beside PVEAuditor); until then every                  guest's runtime network (agent addresses) stays unknown and its agent-derived                  children are left as they are",
                u.detail
            ),
        ),
        NetworkSource::Unknown(u)
            if matches!(u.reason, UnknownReason::TimedOut | UnknownReason::OtherError) =>
        {
            report.push(
                Level::Warn,
                scope,
                format!(
                    "guest agent permission not proven ({node}/{vmid}): {} {}",
                    guest_network::outcome_name(&NetworkSource::Unknown(u.clone())),
                    u.detail
                ),
            )
        }
        NetworkSource::Unknown(u) => report.push(
            Level::Ok,
            scope,
            format!(
                "guest agent permission ({privilege}) present ({node}/{vmid}: {})",
                if u.detail.is_empty() {
                    guest_network::outcome_name(&NetworkSource::Unknown(u.clone())).to_owned()
                } else {
                    u.detail.clone()
                }
            ),
        ),
        NetworkSource::Agent(_) | NetworkSource::LxcInterfaces(_) => report.push(
            Level::Ok,
            scope,
            format!("guest agent readable ({node}/{vmid}, {privilege})"),
        ),
    }
}
