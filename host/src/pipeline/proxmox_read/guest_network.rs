//! A guest's runtime network view, as the rules take it (WIT `network-source`): whom to ask
//! ([`what_to_ask`]: the QEMU guest agent only for running guests whose config enables it, the
//! LXC interfaces endpoint only for running containers on PVE 8.1+), the call under its own
//! short time limit ([`read_network`]), and every outcome mapped to a [`NetworkSource`].
//!
//! A failure here is the guest's alone: it makes the guest's runtime view `unknown` with the
//! reason (so the children that would come from it are kept, never deleted), and never fails
//! the guest's VM record or the run.
//!
//! Edges: the Proxmox client in, `guest_default::children::NetworkSource` out. The shared read
//! bound (`max_concurrency`) is the caller's.

use std::collections::BTreeMap;
use std::time::Duration;

pub use guest_default::children::{NetworkSource, NetworkUnknown, UnknownReason};
use guest_default::model::JsonText;

use crate::clients::http::HttpErrorKind;
use crate::clients::proxmox::{GuestKind, ProxmoxClient, ProxmoxError, RawObject};
use crate::config::SyncConfig;
use crate::pipeline::proxmox_read::packed_text::PackedText;
use crate::rules::memo::NetworkKey;

/// Whether and how long to ask guests about their network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkSettings {
    /// `sync.agent`: false asks nobody (every guest `not-asked`).
    pub enabled: bool,
    /// `sync.agent_timeout_ms`: the limit of one call.
    pub timeout: Duration,
}

impl NetworkSettings {
    /// The settings of a run.
    pub fn of(sync: &SyncConfig) -> Self {
        Self {
            enabled: sync.agent,
            timeout: sync.agent_timeout,
        }
    }
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self::of(&SyncConfig::default())
    }
}

/// What to do for one guest.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkAsk {
    /// `GET …/qemu/{vmid}/agent/network-get-interfaces`.
    Agent,
    /// `GET …/lxc/{vmid}/interfaces`.
    LxcInterfaces,
    /// No call: the answer is already known.
    Known(NetworkSource),
}

/// Decides, without a call, whether the guest is asked. `config` is `None` when it could not
/// be read; `lxc_endpoint` is whether the endpoint's PVE has the LXC interfaces endpoint (8.1+;
/// `None`: its version is unknown, so it is asked and a 501 answers).
pub fn what_to_ask(
    settings: &NetworkSettings,
    kind: GuestKind,
    running: bool,
    config: Option<&RawObject>,
    lxc_endpoint: Option<bool>,
) -> NetworkAsk {
    if !settings.enabled {
        return known(
            UnknownReason::NotAsked,
            "agent reads are off (sync.agent = false)",
        );
    }
    let Some(config) = config else {
        return known(UnknownReason::NotAsked, "the config was not read");
    };
    match kind {
        GuestKind::Qemu if !agent_enabled(config) => {
            known(UnknownReason::AgentOff, "No QEMU guest agent configured")
        }
        _ if !running => known(UnknownReason::NotRunning, ""),
        GuestKind::Qemu => NetworkAsk::Agent,
        GuestKind::Lxc if lxc_endpoint == Some(false) => known(
            UnknownReason::NotAsked,
            "this Proxmox VE has no LXC interfaces endpoint (8.1 and later have it)",
        ),
        GuestKind::Lxc => NetworkAsk::LxcInterfaces,
    }
}

fn known(reason: UnknownReason, detail: &str) -> NetworkAsk {
    NetworkAsk::Known(unknown(reason, detail))
}

fn unknown(reason: UnknownReason, detail: &str) -> NetworkSource {
    NetworkSource::Unknown(NetworkUnknown {
        reason,
        detail: detail.to_owned(),
    })
}

/// True when the QEMU config's `agent` property enables the agent: `1`, `enabled=1,…`,
/// `1,fstrim_cloned_disks=1` (the first part without `=` is `enabled`), as qemu-server parses it.
pub fn agent_enabled(config: &RawObject) -> bool {
    let Some(value) = config.get("agent") else {
        return false;
    };
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let enabled = text.split(',').find_map(|part| match part.split_once('=') {
        Some((key, v)) if key.trim() == "enabled" => Some(v.trim().to_owned()),
        Some(_) => None,
        None => Some(part.trim().to_owned()),
    });
    matches!(
        enabled.map(|v| v.to_ascii_lowercase()).as_deref(),
        Some("1" | "on" | "yes" | "true")
    )
}

/// The agent's answer as the rules get it: the guest's interfaces, each without its
/// `statistics`. Why: those are traffic counters, new on every read of a running guest, which
/// no rule maps to NetBox; kept, they would make every such guest's input differ from the last
/// run's, so the no-op memo could never answer for it, and they are a fifth of the answer's
/// size. Everything else stays as the guest wrote it.
pub fn kept_agent_answer(mut interfaces: Vec<serde_json::Value>) -> String {
    for interface in &mut interfaces {
        if let serde_json::Value::Object(fields) = interface {
            fields.remove("statistics");
        }
    }
    serde_json::Value::Array(interfaces).to_string()
}

/// Carries out `ask` for one guest within `timeout`; every outcome is a [`NetworkSource`].
pub async fn read_network(
    client: &ProxmoxClient,
    node: &str,
    vmid: u64,
    ask: NetworkAsk,
    timeout: Duration,
) -> NetworkSource {
    let call = async {
        match ask {
            NetworkAsk::Known(source) => Ok(source),
            NetworkAsk::Agent => client
                .agent_network_interfaces(node, vmid)
                .await
                .map(|interfaces| NetworkSource::Agent(JsonText(kept_agent_answer(interfaces)))),
            NetworkAsk::LxcInterfaces => {
                client
                    .lxc_interfaces(node, vmid)
                    .await
                    .map(|answer| match answer {
                        Some(text) => NetworkSource::LxcInterfaces(JsonText(text)),
                        None => unknown(UnknownReason::NotRunning, "the container is not running"),
                    })
            }
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(source)) => source,
        Ok(Err(e)) => from_error(&e),
        Err(_) => unknown(
            UnknownReason::TimedOut,
            &format!("no answer within {} ms", timeout.as_millis()),
        ),
    }
}

/// The reason a failed call gives (reference A.2/A.3: the agent's errors are all 500, told
/// apart by their text; 403 is the missing privilege; 595/599 the owning node unreachable).
pub fn from_error(e: &ProxmoxError) -> NetworkSource {
    let reason = match e {
        ProxmoxError::Forbidden { .. } => UnknownReason::NoPermission,
        ProxmoxError::Server { message, .. } => {
            if message.contains("guest agent is not running") {
                UnknownReason::AgentNotRunning
            } else if message.contains("No QEMU guest agent configured") {
                UnknownReason::AgentOff
            } else if message.contains("is not running") {
                UnknownReason::NotRunning
            } else {
                UnknownReason::OtherError
            }
        }
        ProxmoxError::NodeUnreachable { .. } => UnknownReason::TimedOut,
        ProxmoxError::NotImplemented { .. } => UnknownReason::NotAsked,
        ProxmoxError::Http(h) if h.kind == HttpErrorKind::Timeout => UnknownReason::TimedOut,
        _ => UnknownReason::OtherError,
    };
    let detail = match e {
        ProxmoxError::Forbidden { message, .. }
        | ProxmoxError::Server { message, .. }
        | ProxmoxError::NotImplemented { message, .. }
        | ProxmoxError::NodeUnreachable { message, .. } => message.clone(),
        other => other.to_string(),
    };
    unknown(reason, &detail)
}

/// The WIT name of an outcome (`agent`, `lxc-interfaces`, or the unknown reason), for counts.
pub fn outcome_name(source: &NetworkSource) -> &'static str {
    match source {
        NetworkSource::Agent(_) => "agent",
        NetworkSource::LxcInterfaces(_) => "lxc-interfaces",
        NetworkSource::Unknown(u) => reason_name(u.reason),
    }
}

fn reason_name(reason: UnknownReason) -> &'static str {
    match reason {
        UnknownReason::AgentOff => "agent-off",
        UnknownReason::NotRunning => "not-running",
        UnknownReason::AgentNotRunning => "agent-not-running",
        UnknownReason::NoPermission => "no-permission",
        UnknownReason::TimedOut => "timed-out",
        UnknownReason::NotAsked => "not-asked",
        UnknownReason::OtherError => "other-error",
    }
}

/// How many guests ended with each outcome (named by [`outcome_name`]), for the report and
/// metrics.
pub fn tally(outcomes: impl IntoIterator<Item = &'static str>) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for outcome in outcomes {
        *counts.entry(outcome).or_insert(0) += 1;
    }
    counts
}

/// A guest's network view as the read keeps it until the rules: an answer's text packed
/// ([`PackedText`]: the answers of 100k guests are held through the NetBox snapshot, the
/// rerun's memory peak), or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum KeptNetwork {
    Agent(PackedText),
    LxcInterfaces(PackedText),
    Unknown(NetworkUnknown),
}

impl Default for KeptNetwork {
    /// As [`NetworkSource`]'s default (`unknown`, `not-asked`).
    fn default() -> Self {
        KeptNetwork::keep(NetworkSource::default())
    }
}

impl KeptNetwork {
    /// Keeps `source`, its answer's text packed.
    pub fn keep(source: NetworkSource) -> Self {
        match source {
            NetworkSource::Agent(text) => KeptNetwork::Agent(PackedText::pack(text.as_str())),
            NetworkSource::LxcInterfaces(text) => {
                KeptNetwork::LxcInterfaces(PackedText::pack(text.as_str()))
            }
            NetworkSource::Unknown(unknown) => KeptNetwork::Unknown(unknown),
        }
    }

    /// The view as it was kept: what the rules get.
    pub fn source(&self) -> NetworkSource {
        match self {
            KeptNetwork::Agent(packed) => NetworkSource::Agent(JsonText(packed.unpack())),
            KeptNetwork::LxcInterfaces(packed) => {
                NetworkSource::LxcInterfaces(JsonText(packed.unpack()))
            }
            KeptNetwork::Unknown(unknown) => NetworkSource::Unknown(unknown.clone()),
        }
    }

    /// [`KeptNetwork::source`], freeing what was kept.
    pub fn into_source(self) -> NetworkSource {
        match self {
            KeptNetwork::Unknown(unknown) => NetworkSource::Unknown(unknown),
            kept => kept.source(),
        }
    }

    /// The view as the no-op memo keys it: the packed text, which is equal exactly when the
    /// answers are.
    pub fn memo_key(&self) -> NetworkKey<'_> {
        match self {
            KeptNetwork::Agent(packed) => NetworkKey::Agent(packed.as_str()),
            KeptNetwork::LxcInterfaces(packed) => NetworkKey::LxcInterfaces(packed.as_str()),
            KeptNetwork::Unknown(unknown) => NetworkKey::Unknown(unknown),
        }
    }

    /// As [`outcome_name`].
    pub fn outcome_name(&self) -> &'static str {
        match self {
            KeptNetwork::Agent(_) => "agent",
            KeptNetwork::LxcInterfaces(_) => "lxc-interfaces",
            KeptNetwork::Unknown(u) => reason_name(u.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(agent: Option<&str>) -> RawObject {
        let mut c = RawObject::new();
        if let Some(a) = agent {
            c.insert("agent".into(), json!(a));
        }
        c
    }

    fn reason(ask: NetworkAsk) -> Option<UnknownReason> {
        match ask {
            NetworkAsk::Known(NetworkSource::Unknown(u)) => Some(u.reason),
            _ => None,
        }
    }

    #[test]
    fn the_agent_property_is_read_as_qemu_server_does() {
        for on in [
            "1",
            "enabled=1",
            "1,fstrim_cloned_disks=1",
            "type=virtio,enabled=1",
            "on",
        ] {
            assert!(agent_enabled(&config(Some(on))), "{on}");
        }
        for off in ["0", "enabled=0", "0,fstrim_cloned_disks=1", "type=isa", ""] {
            assert!(!agent_enabled(&config(Some(off))), "{off}");
        }
        assert!(!agent_enabled(&config(None)));
        let mut numeric = RawObject::new();
        numeric.insert("agent".into(), json!(1));
        assert!(agent_enabled(&numeric));
    }

    #[test]
    fn only_running_guests_with_a_source_are_asked() {
        let on = NetworkSettings::default();
        let agent = config(Some("1"));
        let q = GuestKind::Qemu;
        let l = GuestKind::Lxc;
        assert_eq!(
            what_to_ask(&on, q, true, Some(&agent), None),
            NetworkAsk::Agent
        );
        assert_eq!(
            reason(what_to_ask(&on, q, true, Some(&config(None)), None)),
            Some(UnknownReason::AgentOff)
        );
        assert_eq!(
            reason(what_to_ask(&on, q, false, Some(&agent), None)),
            Some(UnknownReason::NotRunning)
        );
        assert_eq!(
            reason(what_to_ask(&on, q, true, None, None)),
            Some(UnknownReason::NotAsked)
        );
        let off = NetworkSettings {
            enabled: false,
            ..on
        };
        assert_eq!(
            reason(what_to_ask(&off, q, true, Some(&agent), None)),
            Some(UnknownReason::NotAsked)
        );
        let ct = config(None);
        assert_eq!(
            what_to_ask(&on, l, true, Some(&ct), Some(true)),
            NetworkAsk::LxcInterfaces
        );
        assert_eq!(
            what_to_ask(&on, l, true, Some(&ct), None),
            NetworkAsk::LxcInterfaces
        );
        assert_eq!(
            reason(what_to_ask(&on, l, true, Some(&ct), Some(false))),
            Some(UnknownReason::NotAsked)
        );
        assert_eq!(
            reason(what_to_ask(&on, l, false, Some(&ct), Some(true))),
            Some(UnknownReason::NotRunning)
        );
    }

    fn server(message: &str) -> ProxmoxError {
        ProxmoxError::Server {
            endpoint: "pve".into(),
            path: "p".into(),
            message: message.into(),
        }
    }

    fn reason_of(e: ProxmoxError) -> UnknownReason {
        match from_error(&e) {
            NetworkSource::Unknown(u) => u.reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_map_to_their_reasons() {
        assert_eq!(
            reason_of(server("QEMU guest agent is not running")),
            UnknownReason::AgentNotRunning
        );
        assert_eq!(
            reason_of(server("VM 100 is not running")),
            UnknownReason::NotRunning
        );
        assert_eq!(
            reason_of(server("No QEMU guest agent configured")),
            UnknownReason::AgentOff
        );
        assert_eq!(
            reason_of(server("Agent error: Guest agent command failed")),
            UnknownReason::OtherError
        );
        assert_eq!(
            reason_of(ProxmoxError::Forbidden {
                endpoint: "pve".into(),
                path: "p".into(),
                message: "Permission check failed (/vms/100, VM.GuestAgent.Audit)".into(),
            }),
            UnknownReason::NoPermission
        );
        assert_eq!(
            reason_of(ProxmoxError::NodeUnreachable {
                endpoint: "pve".into(),
                path: "p".into(),
                status: 595,
                message: "No route to host".into(),
            }),
            UnknownReason::TimedOut
        );
        assert_eq!(
            reason_of(ProxmoxError::NotImplemented {
                endpoint: "pve".into(),
                path: "p".into(),
                message: "Method 'GET /nodes/pve1/lxc/101/interfaces' not implemented".into(),
            }),
            UnknownReason::NotAsked
        );
        match from_error(&server("QEMU guest agent is not running")) {
            NetworkSource::Unknown(u) => assert_eq!(u.detail, "QEMU guest agent is not running"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_agent_answer_is_kept_without_statistics_and_otherwise_unchanged() {
        let with = |rx: u64| {
            json!([
                {"name": "lo", "hardware-address": "00:00:00:00:00:00",
                 "statistics": {"rx-bytes": rx, "tx-bytes": 1}},
                {"name": "eth0", "hardware-address": "bc:24:11:2a:3b:4c", "ip-addresses": [
                    {"ip-address": "10.0.0.5", "ip-address-type": "ipv4", "prefix": 24}],
                 "statistics": {"rx-bytes": rx * 2}},
                {"name": "tun0"},
                "not an interface"
            ])
        };
        let list = |v: serde_json::Value| v.as_array().cloned().unwrap_or_default();
        let kept = kept_agent_answer(list(with(1)));
        // Other counters, the same answer; nothing else is touched.
        assert_eq!(kept, kept_agent_answer(list(with(987_654))));
        let mut expected = with(1);
        for i in 0..2 {
            expected[i]
                .as_object_mut()
                .and_then(|o| o.remove("statistics"))
                .expect("statistics");
        }
        assert_eq!(kept, expected.to_string());
        assert!(!kept.contains("statistics"));
        // A guest's own statistics-free answer is the text it always gave.
        let plain = json!([{"name": "eth0", "ip-addresses": []}]);
        assert_eq!(kept_agent_answer(list(plain.clone())), plain.to_string());
    }

    #[test]
    fn a_kept_view_gives_back_what_it_was_given() {
        let answer = r#"[{"hardware-address":"bc:24:11:2a:3b:4c","name":"eth0"}]"#;
        for source in [
            NetworkSource::Agent(JsonText(answer.into())),
            NetworkSource::LxcInterfaces(JsonText(answer.into())),
            unknown(UnknownReason::TimedOut, "no answer within 5000 ms"),
        ] {
            let kept = KeptNetwork::keep(source.clone());
            assert_eq!(kept.source(), source);
            assert_eq!(kept.outcome_name(), outcome_name(&source));
            assert_eq!(kept.clone().into_source(), source);
        }
        // Two answers key alike exactly when their texts are equal.
        let key = |text: &str| KeptNetwork::keep(NetworkSource::Agent(JsonText(text.into())));
        assert_eq!(key(answer).memo_key(), key(answer).memo_key());
        assert_ne!(
            key(answer).memo_key(),
            key(&answer.replace("4c", "4d")).memo_key()
        );
        assert_eq!(KeptNetwork::default().source(), NetworkSource::default());
    }

    #[test]
    fn outcomes_are_counted_by_name() {
        let sources = [
            NetworkSource::Agent(JsonText("[]".into())),
            unknown(UnknownReason::TimedOut, ""),
            unknown(UnknownReason::TimedOut, "x"),
        ];
        let counts = tally(sources.iter().map(outcome_name));
        assert_eq!(counts.get("agent"), Some(&1));
        assert_eq!(counts.get("timed-out"), Some(&2));
        assert_eq!(counts.len(), 2);
    }
}
