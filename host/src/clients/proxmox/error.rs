//! Proxmox API errors, told apart by status: 401 (credentials), 403 (ACL), 400 (parameters),
//! 500 (any `die`, including "configuration file does not exist" for a missing or migrated
//! guest), 501 (method unknown to this PVE version), 595/599 (the answering node cannot reach
//! the owning node), 596 (TLS between nodes). Messages come from the JSON `message` (PVE with
//! libpve-http-server-perl ≥ 5.2.0), else the `errors` map, else the HTTP reason phrase (older
//! servers put the text only there), else the body text.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::clients::http::{HttpError, RawResponse, clip_message};

/// A failed Proxmox call. `endpoint` is the configured endpoint name, `path` the API path.
#[derive(Debug, thiserror::Error)]
pub enum ProxmoxError {
    /// 401: the token is missing, malformed, unknown or expired.
    #[error(
        "proxmox {endpoint}: {path}: authentication failed (HTTP 401): {message}; check the API \
         token (USER@REALM!TOKENID=SECRET)"
    )]
    Unauthorized {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// Server's text.
        message: String,
    },
    /// 403: the token lacks a privilege, e.g. `Permission check failed (/vms/100, VM.Audit)`.
    #[error("proxmox {endpoint}: {path}: permission denied (HTTP 403): {message}")]
    Forbidden {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// Server's text.
        message: String,
    },
    /// 400: parameter verification failed.
    #[error("proxmox {endpoint}: {path}: invalid request (HTTP 400): {message}")]
    BadRequest {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// Server's text with the parameter errors.
        message: String,
        /// Parameter → message.
        errors: BTreeMap<String, String>,
    },
    /// 500: any server-side failure, including a guest config that does not exist on that node.
    #[error("proxmox {endpoint}: {path}: server error (HTTP 500): {message}")]
    Server {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// Server's text.
        message: String,
    },
    /// 501: this Proxmox version does not have the method.
    #[error(
        "proxmox {endpoint}: {path}: not implemented by this Proxmox version (HTTP 501): {message}"
    )]
    NotImplemented {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// Server's text.
        message: String,
    },
    /// 595 or 599: the node that answered could not reach the node that owns the resource.
    #[error("proxmox {endpoint}: {path}: node unreachable (HTTP {status}): {message}")]
    NodeUnreachable {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// 595 or 599.
        status: u16,
        /// Server's text.
        message: String,
    },
    /// 596: TLS failure between nodes (a node certificate changed).
    #[error("proxmox {endpoint}: {path}: TLS failure between cluster nodes (HTTP 596): {message}")]
    NodeTls {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// Server's text.
        message: String,
    },
    /// Any other status.
    #[error("proxmox {endpoint}: {path}: HTTP {status}: {message}")]
    Status {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// Status code.
        status: u16,
        /// Server's text.
        message: String,
    },
    /// No usable HTTP answer (connection, TLS, timeout).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A 2xx answer that is not the expected JSON.
    #[error("proxmox {endpoint}: {path}: unexpected answer: {message}")]
    Decode {
        /// Endpoint name.
        endpoint: String,
        /// API path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The client could not be built (token, TLS).
    #[error("proxmox {endpoint}: {message}")]
    Setup {
        /// Endpoint name.
        endpoint: String,
        /// What was wrong (never the token).
        message: String,
    },
}

impl ProxmoxError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::BadRequest { .. } => Some(400),
            Self::Server { .. } => Some(500),
            Self::NotImplemented { .. } => Some(501),
            Self::NodeUnreachable { status, .. } | Self::Status { status, .. } => Some(*status),
            Self::NodeTls { .. } => Some(596),
            Self::Http(_) | Self::Decode { .. } | Self::Setup { .. } => None,
        }
    }

    /// True for a 500 saying the guest's config file does not exist on that node (deleted, or
    /// migrated between the listing and the config read).
    pub fn is_missing_config(&self) -> bool {
        matches!(self, Self::Server { message, .. } if message.contains("does not exist"))
    }
}

/// The readable message of an error response (at most [`MAX_MESSAGE_CHARS`](crate::clients::http::MAX_MESSAGE_CHARS) characters).
pub(crate) fn error_message(resp: &RawResponse) -> (String, BTreeMap<String, String>) {
    let json: Option<Value> = serde_json::from_slice(&resp.body).ok();
    let mut errors = BTreeMap::new();
    if let Some(Value::Object(map)) = json.as_ref().and_then(|j| j.get("errors")) {
        for (param, msg) in map {
            let text = match msg {
                Value::String(s) => s.trim().to_string(),
                other => other.to_string(),
            };
            errors.insert(param.clone(), text);
        }
    }
    let message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            resp.custom_reason()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| {
            // 401 bodies are plain text (or empty), never JSON.
            (json.is_none() && !resp.body.is_empty())
                .then(|| resp.body_excerpt(300))
                .filter(|s| !s.is_empty())
        });
    let param_text = errors
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let message = clip_message(match (message, param_text.is_empty()) {
        (Some(m), true) => m,
        (Some(m), false) => format!("{} {param_text}", m.trim_end_matches('.').to_string() + ":"),
        (None, false) => param_text,
        // Nothing readable: the canonical reason ("Forbidden"), else say so.
        (None, true) => resp
            .status
            .canonical_reason()
            .map_or_else(|| "no message".to_string(), str::to_string),
    });
    (message, errors)
}

/// Maps an error response to the error enum.
pub(crate) fn from_response(endpoint: &str, path: &str, resp: &RawResponse) -> ProxmoxError {
    let (message, errors) = error_message(resp);
    let message = format!("{message}{}", resp.retry_note());
    let endpoint = endpoint.to_string();
    let path = path.to_string();
    match resp.status.as_u16() {
        400 => ProxmoxError::BadRequest {
            endpoint,
            path,
            message,
            errors,
        },
        401 => ProxmoxError::Unauthorized {
            endpoint,
            path,
            message,
        },
        403 => ProxmoxError::Forbidden {
            endpoint,
            path,
            message,
        },
        500 => ProxmoxError::Server {
            endpoint,
            path,
            message,
        },
        501 => ProxmoxError::NotImplemented {
            endpoint,
            path,
            message,
        },
        status @ (595 | 599) => ProxmoxError::NodeUnreachable {
            endpoint,
            path,
            status,
            message,
        },
        596 => ProxmoxError::NodeTls {
            endpoint,
            path,
            message,
        },
        status => ProxmoxError::Status {
            endpoint,
            path,
            status,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::http::MAX_MESSAGE_CHARS;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;
    use std::time::Duration;

    fn resp(status: u16, reason: Option<&str>, body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            reason: reason.map(str::to_string),
            body: body.as_bytes().to_vec(),
            attempts: 1,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn message_from_json_body() {
        let r = resp(
            500,
            Some("Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist"),
            r#"{"data":null,"message":"Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist\n"}"#,
        );
        let err = from_response("pve-a", "nodes/pve2/qemu/100/config", &r);
        assert!(err.is_missing_config());
        assert_eq!(
            err.to_string(),
            "proxmox pve-a: nodes/pve2/qemu/100/config: server error (HTTP 500): Configuration file \
             'nodes/pve2/qemu-server/100.conf' does not exist"
        );
    }

    #[test]
    fn message_from_reason_phrase_when_body_has_none() {
        // Before libpve-http-server-perl 5.2.0 the text is only in the reason phrase.
        let r = resp(500, Some("VM 100 is not running"), r#"{"data":null}"#);
        let err = from_response("pve-a", "p", &r);
        assert!(err.to_string().ends_with("VM 100 is not running"), "{err}");
    }

    #[test]
    fn parameter_errors_are_listed() {
        let r = resp(
            400,
            Some("Parameter verification failed."),
            r#"{"data":null,"errors":{"vmid":"value does not look like a valid VM ID\n"},"message":"Parameter verification failed.\n"}"#,
        );
        let err = from_response("pve-a", "p", &r);
        match &err {
            ProxmoxError::BadRequest {
                message, errors, ..
            } => {
                assert_eq!(
                    message,
                    "Parameter verification failed: vmid: value does not look like a valid VM ID"
                );
                assert_eq!(errors["vmid"], "value does not look like a valid VM ID");
            }
            other => panic!("{other:?}"),
        }
        let old = resp(
            400,
            Some("Parameter verification failed."),
            r#"{"data":null,"errors":{"type":"value 'x' does not have a value in the enumeration 'vm, storage, node, sdn'\n"}}"#,
        );
        let err = from_response("pve-a", "p", &old);
        assert!(err.to_string().contains("type: value 'x'"), "{err}");
    }

    // Found by `tests/hostile_input.rs` (`proxmox_error_answers_become_errors`, shrunk to a
    // 403 with an empty reason phrase and an empty body): the error ended in an empty message.
    #[test]
    fn blank_answers_still_give_a_message() {
        for (status, reason, body, want) in [
            (403, Some(""), "", "Forbidden"),
            (
                500,
                Some("  "),
                r#"{"data":null,"message":" "}"#,
                "Internal Server Error",
            ),
            (595, None, "", "no message"),
            (599, Some("\t"), "", "no message"),
        ] {
            let (message, _) = error_message(&resp(status, reason, body));
            assert_eq!(message, want, "{status} {reason:?} {body:?}");
        }
    }

    // A huge `message` (or `errors` map) must not become a multi-megabyte log line; found
    // while writing `tests/hostile_input.rs`.
    #[test]
    fn huge_messages_are_clipped() {
        let body = format!(
            r#"{{"data":null,"message":"{}","errors":{{"vmid":"{}"}}}}"#,
            "x".repeat(3_000_000),
            "y".repeat(3_000_000)
        );
        let (message, errors) = error_message(&resp(400, None, &body));
        assert!(message.chars().count() < MAX_MESSAGE_CHARS + 50);
        assert!(message.ends_with("more bytes not shown)"), "{message:.40}");
        assert_eq!(errors["vmid"].len(), 3_000_000);
    }

    #[test]
    fn statuses_are_told_apart() {
        let cases = [
            (401, Some("No ticket"), "", "authentication failed"),
            (401, None, "invalid token value!\n", "invalid token value!"),
            (
                403,
                None,
                r#"{"data":null,"message":"Permission check failed (/vms/100, VM.Audit)\n"}"#,
                "permission denied",
            ),
            (
                501,
                None,
                r#"{"data":null,"message":"Method 'GET /nodes/pve1/lxc/101/interfaces' not implemented\n"}"#,
                "not implemented",
            ),
            (
                595,
                Some("No route to host"),
                "",
                "node unreachable (HTTP 595): No route to host",
            ),
            (596, Some("certificate verify failed"), "", "TLS failure"),
            (502, None, "", "HTTP 502"),
        ];
        for (status, reason, body, want) in cases {
            let err = from_response("pve-a", "p", &resp(status, reason, body));
            assert_eq!(err.status(), Some(status));
            assert!(err.to_string().contains(want), "{status}: {err}");
        }
        assert!(matches!(
            from_response("e", "p", &resp(401, Some("No ticket"), "")),
            ProxmoxError::Unauthorized { .. }
        ));
        assert!(matches!(
            from_response("e", "p", &resp(595, None, "")),
            ProxmoxError::NodeUnreachable { .. }
        ));
    }
}
