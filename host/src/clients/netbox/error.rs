//! NetBox API errors and the parsing of NetBox's many error bodies into readable messages.
//!
//! Shapes (netbox-live.md §2.4, proxmox-netbox-apis.md B.5/B.8): field errors `{field: [msg]}`,
//! object-level `{"__all__": [msg]}` (4.7) or `{"non_field_errors": [msg]}` (≤4.6), custom field
//! errors `{"custom_fields": {name: "msg"}}` (a string, not a list), `{"detail": msg}`, 4.7 bulk
//! `{"detail", "errors": [{"index"|"id", "errors": {…}}]}`, ≤4.6 bulk POST a bare list aligned
//! with the input, the 500 `{"error", "exception": "RequestDataTooBig", …}`, and HTML pages
//! for unknown URLs. Every 403 is either bad credentials or a missing permission, told apart by
//! `detail`.

use reqwest::Method;
use serde_json::{Map, Value};

use crate::clients::http::{HttpError, RawResponse, clip_message};

/// One item's errors in a failed bulk request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemError {
    /// Position in the request list (bulk POST; ≤4.6 bare lists).
    pub index: Option<usize>,
    /// Object id (bulk PATCH/DELETE in 4.7).
    pub id: Option<u64>,
    /// The item's own errors.
    pub errors: ErrorBody,
}

/// A parsed NetBox error body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorBody {
    /// `detail`, or the 500 body's `error`.
    pub detail: Option<String>,
    /// Object-level messages (`__all__`, `non_field_errors`, a bare list of strings).
    pub non_field: Vec<String>,
    /// Field → messages; custom fields as `custom_fields.<name>`.
    pub fields: Vec<(String, Vec<String>)>,
    /// Per-item errors of a bulk request.
    pub items: Vec<ItemError>,
    /// The exception class of a 500 JSON body (`RequestDataTooBig`).
    pub exception: Option<String>,
    /// A non-JSON body, summarized (`an HTML page`, or a text excerpt).
    pub text: Option<String>,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Null => Vec::new(),
        Value::Object(_) => vec![value.to_string()],
        other => vec![other.to_string()],
    }
}

impl ErrorBody {
    /// Parses a body of any shape; never fails.
    pub fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => Self::from_value(&value),
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let trimmed = text.trim();
                let lower = trimmed
                    .get(..trimmed.len().min(200))
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let summary = if trimmed.is_empty() {
                    None
                } else if lower.starts_with("<!doctype html")
                    || lower.starts_with("<html")
                    || lower.contains("<html")
                {
                    Some(
                        "an HTML page (not an API answer: wrong URL, or a proxy's error page)"
                            .to_string(),
                    )
                } else {
                    let cut: String = trimmed.chars().take(300).collect();
                    Some(cut)
                };
                Self {
                    text: summary,
                    ..Self::default()
                }
            }
        }
    }

    /// Parses a JSON error value.
    pub fn from_value(value: &Value) -> Self {
        let mut out = Self::default();
        match value {
            Value::Object(map) => out.read_object(map),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                out.non_field = strings(value);
            }
            Value::Array(items) => {
                // ≤4.6 bulk POST: one entry per input item, `{}` for the valid ones.
                for (index, item) in items.iter().enumerate() {
                    let errors = Self::from_value(item);
                    if !errors.is_empty() {
                        out.items.push(ItemError {
                            index: Some(index),
                            id: None,
                            errors,
                        });
                    }
                }
            }
            Value::String(s) => out.detail = Some(s.clone()),
            _ => out.text = Some(value.to_string()),
        }
        out
    }

    fn read_object(&mut self, map: &Map<String, Value>) {
        for (key, value) in map {
            match key.as_str() {
                "detail" => self.detail = strings(value).into_iter().next(),
                "error" if map.contains_key("exception") => {
                    self.detail = strings(value).into_iter().next();
                }
                "exception" => self.exception = value.as_str().map(str::to_string),
                "netbox_version" | "python_version" if map.contains_key("exception") => {}
                "__all__" | "non_field_errors" => self.non_field.extend(strings(value)),
                "errors" if value.is_array() => {
                    for item in value.as_array().into_iter().flatten() {
                        let Some(obj) = item.as_object() else {
                            continue;
                        };
                        self.items.push(ItemError {
                            index: obj.get("index").and_then(Value::as_u64).map(|i| i as usize),
                            id: obj.get("id").and_then(Value::as_u64),
                            errors: obj.get("errors").map(Self::from_value).unwrap_or_default(),
                        });
                    }
                }
                _ => match value {
                    // `custom_fields: {name: "msg"}` and other nested serializers.
                    Value::Object(inner) => {
                        for (sub, msg) in inner {
                            self.fields.push((format!("{key}.{sub}"), strings(msg)));
                        }
                    }
                    other => self.fields.push((key.clone(), strings(other))),
                },
            }
        }
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.detail.is_none()
            && self.non_field.is_empty()
            && self.fields.is_empty()
            && self.items.is_empty()
            && self.exception.is_none()
            && self.text.is_none()
    }

    /// One readable line: detail, object-level messages, `field: msg`, `item N: …`; at most
    /// `MAX_MESSAGE_CHARS` (2000) characters plus a note of what was cut.
    pub fn message(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match (&self.exception, &self.detail) {
            (Some(exc), Some(detail)) => parts.push(format!("{exc}: {detail}")),
            (Some(exc), None) => parts.push(exc.clone()),
            (None, Some(detail)) => parts.push(detail.clone()),
            (None, None) => {}
        }
        parts.extend(self.non_field.iter().cloned());
        for (field, msgs) in &self.fields {
            // `{"errors": null}`, `{"name": []}`, `{"name": [""]}` name no problem.
            let msgs: Vec<&str> = msgs
                .iter()
                .map(String::as_str)
                .filter(|m| !m.trim().is_empty())
                .collect();
            if !msgs.is_empty() {
                parts.push(format!("{field}: {}", msgs.join(" ")));
            }
        }
        for item in &self.items {
            let label = match (item.index, item.id) {
                (_, Some(id)) => format!("object id {id}"),
                (Some(index), None) => format!("item {index}"),
                (None, None) => "an item".to_string(),
            };
            parts.push(format!("{label}: {}", item.errors.message()));
        }
        if let Some(text) = &self.text {
            parts.push(text.clone());
        }
        // A blank `detail` or message (`""`, `{"detail": " "}`) says nothing.
        parts.retain(|p| !p.trim().is_empty());
        if parts.is_empty() {
            "no error message in the answer".into()
        } else {
            clip_message(parts.join("; "))
        }
    }

    /// The bulk item indexes that failed (for splitting a bulk request).
    pub fn failed_indexes(&self) -> Vec<usize> {
        self.items.iter().filter_map(|i| i.index).collect()
    }

    /// The bulk object ids that failed.
    pub fn failed_ids(&self) -> Vec<u64> {
        self.items.iter().filter_map(|i| i.id).collect()
    }
}

/// NetBox's answer to a write by a token without the right (a read-only token, or a missing
/// model permission).
pub const PERMISSION_DENIED_DETAIL: &str = "You do not have permission to perform this action";

/// A failed NetBox call. `path` is the API path (`api/virtualization/virtual-machines/`).
#[derive(Debug, thiserror::Error)]
pub enum NetboxError {
    /// 403 for the credentials themselves: missing, invalid, disabled or expired token.
    #[error("netbox: {method} {path}: authentication failed (HTTP 403): {message}")]
    Auth {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// NetBox's text.
        message: String,
    },
    /// 403 for a valid token without the permission (or a read-only token writing).
    #[error("netbox: {method} {path}: permission denied (HTTP 403): {message}")]
    Forbidden {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// NetBox's text.
        message: String,
    },
    /// 404 with a JSON body: the object does not exist.
    #[error("netbox: {method} {path}: not found (HTTP 404): {message}")]
    NotFound {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// NetBox's text.
        message: String,
    },
    /// 404 with an HTML page: the URL is not an API endpoint (wrong base URL or NetBox version).
    #[error(
        "netbox: {method} {path}: no such API endpoint (HTTP 404, HTML page): check the NetBox URL and version"
    )]
    UnknownEndpoint {
        /// Method.
        method: Method,
        /// API path.
        path: String,
    },
    /// 400: validation failed; `body` keeps the structure (bulk item indexes and ids).
    #[error("netbox: {method} {path}: rejected (HTTP 400): {message}")]
    Validation {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// Readable message.
        message: String,
        /// Parsed body (boxed: keeps `Result<_, NetboxError>` small).
        body: Box<ErrorBody>,
    },
    /// 409: a protected object (dependents exist) or a conflict.
    #[error("netbox: {method} {path}: conflict (HTTP 409): {message}")]
    Conflict {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// Readable message.
        message: String,
    },
    /// 412: the object changed since it was read (`If-Match`).
    #[error("netbox: {method} {path}: changed since it was read (HTTP 412): {message}")]
    PreconditionFailed {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// Readable message.
        message: String,
    },
    /// 5xx after retries (or a POST's 500).
    #[error("netbox: {method} {path}: server error (HTTP {status}): {message}")]
    Server {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// Status.
        status: u16,
        /// Readable message.
        message: String,
        /// Parsed body (boxed: keeps `Result<_, NetboxError>` small).
        body: Box<ErrorBody>,
    },
    /// Any other status.
    #[error("netbox: {method} {path}: HTTP {status}: {message}")]
    Status {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// Status.
        status: u16,
        /// Readable message.
        message: String,
    },
    /// A bulk PATCH/DELETE answered with fewer objects than sent (≤4.6 skips unknown ids).
    #[error(
        "netbox: {method} {path}: {sent} objects sent, {returned} returned; not applied: ids {missing:?}"
    )]
    Incomplete {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// Objects sent.
        sent: usize,
        /// Objects returned.
        returned: usize,
        /// Ids sent but not returned.
        missing: Vec<u64>,
    },
    /// No usable HTTP answer (connection, TLS, timeout, ambiguous POST).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A 2xx answer that is not the expected JSON.
    #[error("netbox: {method} {path}: unexpected answer: {message}")]
    Decode {
        /// Method.
        method: Method,
        /// API path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The client could not be built (token, TLS, URL).
    #[error("netbox: {message}")]
    Setup {
        /// What was wrong (never the token).
        message: String,
    },
}

impl NetboxError {
    /// The HTTP status, when NetBox answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Auth { .. } | Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } | Self::UnknownEndpoint { .. } => Some(404),
            Self::Validation { .. } => Some(400),
            Self::Conflict { .. } => Some(409),
            Self::PreconditionFailed { .. } => Some(412),
            Self::Server { status, .. } | Self::Status { status, .. } => Some(*status),
            Self::Incomplete { .. } | Self::Http(_) | Self::Decode { .. } | Self::Setup { .. } => {
                None
            }
        }
    }

    /// True for a POST whose outcome is unknown: look the object up by identity before
    /// sending it again.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Self::Http(e) if e.kind == crate::clients::http::HttpErrorKind::Ambiguous)
    }

    /// The parsed body of a 400 (bulk item errors included).
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            Self::Validation { body, .. } | Self::Server { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// Maps an error response to the error enum.
pub(crate) fn from_response(method: &Method, path: &str, resp: &RawResponse) -> NetboxError {
    let body = Box::new(ErrorBody::parse(&resp.body));
    let request_id = resp
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|id| format!(" [X-Request-ID {id}]"))
        .unwrap_or_default();
    let message = format!("{}{}{request_id}", body.message(), resp.retry_note());
    let method = method.clone();
    let path = path.to_string();
    match resp.status.as_u16() {
        400 => NetboxError::Validation {
            method,
            path,
            message,
            body,
        },
        403 => {
            let detail = body.detail.clone().unwrap_or_default();
            let permission = detail.starts_with(PERMISSION_DENIED_DETAIL)
                || body
                    .non_field
                    .iter()
                    .any(|m| m.starts_with(PERMISSION_DENIED_DETAIL));
            if permission {
                NetboxError::Forbidden {
                    method,
                    path,
                    message,
                }
            } else {
                NetboxError::Auth {
                    method,
                    path,
                    message,
                }
            }
        }
        404 if body.text.is_some() && body.detail.is_none() => {
            NetboxError::UnknownEndpoint { method, path }
        }
        404 => NetboxError::NotFound {
            method,
            path,
            message,
        },
        409 => NetboxError::Conflict {
            method,
            path,
            message,
        },
        412 => NetboxError::PreconditionFailed {
            method,
            path,
            message,
        },
        status @ 500..=599 => NetboxError::Server {
            method,
            path,
            status,
            message,
            body,
        },
        status => NetboxError::Status {
            method,
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
    use reqwest::header::{HeaderMap, HeaderValue};
    use std::time::Duration;

    fn msg(body: &str) -> String {
        ErrorBody::parse(body.as_bytes()).message()
    }

    // Literal bodies from netbox-live.md §2.4 (NetBox 4.7.3).
    #[test]
    fn literal_bodies_from_a_live_netbox() {
        assert_eq!(
            msg(r#"{"__all__":["Virtual machine name must be unique per cluster and tenant."]}"#),
            "Virtual machine name must be unique per cluster and tenant."
        );
        assert_eq!(
            msg(r#"{"detail":"No VirtualMachine matches the given query."}"#),
            "No VirtualMachine matches the given query."
        );
        let bulk = ErrorBody::parse(
            br#"{"detail":"1 of 3 objects could not be created.","errors":[{"index":1,"errors":{"__all__":["Virtual machine name must be unique per cluster and tenant."]}}]}"#,
        );
        assert_eq!(bulk.failed_indexes(), vec![1]);
        assert_eq!(
            bulk.message(),
            "1 of 3 objects could not be created.; item 1: Virtual machine name must be unique per cluster and tenant."
        );
        let bulk = ErrorBody::parse(
            br#"{"detail":"1 of 2 objects could not be found.","errors":[{"id":999999,"errors":{"id":["Object with ID 999999 does not exist"]}}]}"#,
        );
        assert_eq!(bulk.failed_ids(), vec![999999]);
        assert!(
            bulk.message()
                .contains("object id 999999: id: Object with ID 999999 does not exist")
        );
        let bulk = ErrorBody::parse(
            br#"{"detail":"1 of 1 objects failed validation.","errors":[{"index":0,"errors":{"id":["This field is required."]}}]}"#,
        );
        assert_eq!(bulk.failed_indexes(), vec![0]);
        assert_eq!(
            msg(
                r#"{"__all__":["Invalid value for custom field 'proxmox_vm_id': Value must be an integer."]}"#
            ),
            "Invalid value for custom field 'proxmox_vm_id': Value must be an integer."
        );
        assert_eq!(
            msg(
                r#"{"custom_fields":{"nope":"Custom field 'nope' does not exist for this object type."}}"#
            ),
            "custom_fields.nope: Custom field 'nope' does not exist for this object type."
        );
        assert_eq!(
            msg(
                r#"{"status":["running is not a valid choice."],"cluster":["Related object not found using the provided numeric ID: 9999"]}"#
            ),
            // Fields in key order (serde_json maps are sorted): stable messages across runs.
            "cluster: Related object not found using the provided numeric ID: 9999; status: running is not a valid choice."
        );
        assert_eq!(
            msg(
                r#"{"tags":["Related object not found using the provided attributes: {'name': 'prod'}"]}"#
            ),
            "tags: Related object not found using the provided attributes: {'name': 'prod'}"
        );
        assert_eq!(
            msg(r#"{"cf_proxmox_vm_id":["Enter a whole number."]}"#),
            "cf_proxmox_vm_id: Enter a whole number."
        );
        assert_eq!(
            msg(r#"{"detail":"JSON parse error - Expecting value: line 1 column 9 (char 8)"}"#),
            "JSON parse error - Expecting value: line 1 column 9 (char 8)"
        );
        assert_eq!(
            msg(r#"{"detail":"Method \"PUT\" not allowed."}"#),
            "Method \"PUT\" not allowed."
        );
        assert_eq!(
            msg(
                r#"{"error": "Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.", "exception": "RequestDataTooBig", "netbox_version": "4.7.3", "python_version": "3.13.5"}"#
            ),
            "RequestDataTooBig: Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE."
        );
    }

    #[test]
    fn older_netbox_shapes() {
        assert_eq!(
            msg(r#"{"non_field_errors":["The fields name, cluster must make a unique set."]}"#),
            "The fields name, cluster must make a unique set."
        );
        // ≤4.6 bulk POST: a bare list aligned with the input.
        let body = ErrorBody::parse(br#"[{}, {"__all__":["Virtual machine name must be unique per cluster and tenant."]}, {}]"#);
        assert_eq!(body.failed_indexes(), vec![1]);
        assert_eq!(
            body.message(),
            "item 1: Virtual machine name must be unique per cluster and tenant."
        );
        assert_eq!(msg(r#"["Some serializer error"]"#), "Some serializer error");
    }

    // A 50 MB `detail` (a proxy or NetBox echoing a huge value back) must not become a 50 MB
    // log line; found while writing `tests/hostile_input.rs`.
    #[test]
    fn huge_messages_are_clipped() {
        let body = format!(r#"{{"detail":"{}","name":["bad"]}}"#, "é".repeat(5_000_000));
        let parsed = ErrorBody::parse(body.as_bytes());
        let m = parsed.message();
        assert!(m.chars().count() < MAX_MESSAGE_CHARS + 50, "{}", m.len());
        assert!(
            m.starts_with("éé") && m.ends_with("more bytes not shown)"),
            "{m:.40}"
        );
        assert_eq!(parsed.detail.as_ref().map(|d| d.len()), Some(10_000_000));
        assert_eq!(clip_message("short".into()), "short");
    }

    // Found by `tests/hostile_input.rs` (`netbox_error_bodies_from_any_json` shrunk to the body
    // `""`, `netbox_error_answers_become_errors` to `{"errors":null}`): a blank detail or a
    // field without messages gave an empty message, an error that says nothing.
    #[test]
    fn blank_messages_say_there_is_none() {
        // The second shrunk input: `{"errors":null}` gave "errors: ".
        for body in [
            r#""""#,
            r#"{"detail":""}"#,
            r#"{"__all__":["", " "]}"#,
            r#"[" "]"#,
            r#"{"errors":null}"#,
            r#"{"name":[""],"custom_fields":{"x":[]}}"#,
        ] {
            assert_eq!(msg(body), "no error message in the answer", "{body}");
        }
        assert_eq!(
            msg(r#"{"detail":"","__all__":["x"]}"#),
            "x",
            "blank parts are dropped, the rest kept"
        );
    }

    #[test]
    fn html_and_empty_bodies() {
        let html = ErrorBody::parse(
            b"<!DOCTYPE html>\n<html><head><title>Page Not Found</title></head></html>",
        );
        assert!(html.message().contains("HTML page"));
        assert_eq!(msg(""), "no error message in the answer");
    }

    fn resp(status: u16, body: &str) -> RawResponse {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("5f1e"));
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            reason: None,
            body: body.as_bytes().to_vec(),
            attempts: 1,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        let p = "api/virtualization/virtual-machines/";
        let m = Method::POST;
        assert!(matches!(
            from_response(&m, p, &resp(403, r#"{"detail":"Invalid v2 token"}"#)),
            NetboxError::Auth { .. }
        ));
        assert!(matches!(
            from_response(
                &m,
                p,
                &resp(
                    403,
                    r#"{"detail":"Authentication credentials were not provided."}"#
                )
            ),
            NetboxError::Auth { .. }
        ));
        let forbidden = from_response(
            &m,
            p,
            &resp(
                403,
                r#"{"detail":"You do not have permission to perform this action."}"#,
            ),
        );
        assert!(
            matches!(forbidden, NetboxError::Forbidden { .. }),
            "{forbidden}"
        );
        assert!(matches!(
            from_response(&m, p, &resp(404, "<html><body>Not found</body></html>")),
            NetboxError::UnknownEndpoint { .. }
        ));
        assert!(matches!(
            from_response(
                &m,
                p,
                &resp(
                    404,
                    r#"{"detail":"No VirtualMachine matches the given query."}"#
                )
            ),
            NetboxError::NotFound { .. }
        ));
        let v = from_response(
            &m,
            p,
            &resp(
                400,
                r#"{"__all__":["A virtual machine must be assigned to a site, cluster, or device."]}"#,
            ),
        );
        assert!(
            v.to_string().contains("must be assigned")
                && v.to_string().contains("X-Request-ID 5f1e"),
            "{v}"
        );
        assert!(matches!(
            from_response(
                &m,
                p,
                &resp(
                    409,
                    r#"{"detail":"Unable to delete object. 3 dependent objects were found"}"#
                )
            ),
            NetboxError::Conflict { .. }
        ));
        assert!(matches!(
            from_response(&m, p, &resp(412, r#"{"detail":"Precondition failed."}"#)),
            NetboxError::PreconditionFailed { .. }
        ));
        let big = from_response(
            &m,
            p,
            &resp(
                500,
                r#"{"error":"Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.","exception":"RequestDataTooBig","netbox_version":"4.7.3","python_version":"3.13.5"}"#,
            ),
        );
        assert_eq!(big.status(), Some(500));
        assert!(big.to_string().contains("RequestDataTooBig"), "{big}");
    }
}
