//! `ProxmoxClient`: the read calls the sync needs, over one endpoint's [`HttpClient`], with
//! `PVEAPIToken=` authentication. Unwraps the `{"data": …}` envelope and maps error statuses.

use std::sync::Arc;

use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ProxmoxError, from_response};
use super::types::{
    ClusterStatus, ClusterStatusRow, GuestKind, NodeInfo, PveVersion, RawObject, Task, TaskPage,
    TaskQuery,
};
use crate::config::{ProxmoxEndpoint, Timeouts};
use crate::http::{
    HttpClient, HttpSettings, RawResponse, Request, RequestCounters, RetryPolicy, Secret,
};

/// Answers at most this large are decoded on the calling task (a config is ~1 KB); larger
/// ones, the `/cluster/resources` listing (~400 bytes per guest), on tokio's blocking pool.
/// Why: decoding 100k rows takes a runtime worker for a second or more, stalling the I/O of
/// every task on it (the config reads and the NetBox snapshot running beside them).
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// The JSON of an answer, or why it is not JSON.
fn parse_envelope(resp: &RawResponse) -> Result<Value, String> {
    serde_json::from_slice(&resp.body)
        .map_err(|e| format!("not JSON: {e}: {}", resp.body_excerpt(200)))
}

/// A Proxmox VE endpoint (a cluster or a standalone node). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProxmoxClient {
    http: HttpClient,
    endpoint: String,
}

/// The API root under an endpoint URL: `https://host:8006` → `https://host:8006/api2/json/`.
fn api_base(url: &Url) -> Url {
    let mut base = url.clone();
    let path = base.path().trim_end_matches('/').to_string();
    if path.ends_with("/api2/json") {
        base.set_path(&format!("{path}/"));
    } else {
        base.set_path(&format!("{path}/api2/json/"));
    }
    base.set_query(None);
    base
}

/// Checks the `USER@REALM!TOKENID=SECRET` form without ever printing the token.
fn check_token_form(token: &Secret) -> Result<(), String> {
    let text = token.expose();
    let (id, secret) = text
        .rsplit_once('=')
        .ok_or("the API token has no `=` before its secret")?;
    if !id.contains('!') || !id.contains('@') || secret.is_empty() {
        return Err("the API token is not of the form USER@REALM!TOKENID=SECRET".into());
    }
    if text.chars().any(|c| c.is_control() || c == ' ') {
        return Err("the API token contains spaces or control characters".into());
    }
    Ok(())
}

impl ProxmoxClient {
    /// Builds the client for a configured endpoint, reading its token.
    pub fn new(
        endpoint: &ProxmoxEndpoint,
        timeouts: &Timeouts,
        counters: Arc<RequestCounters>,
    ) -> Result<Self, ProxmoxError> {
        let token = endpoint.token.resolve().map_err(|e| ProxmoxError::Setup {
            endpoint: endpoint.name.clone(),
            message: e.to_string(),
        })?;
        Self::with_token(endpoint, &token, timeouts, counters)
    }

    /// Builds the client with a token already read.
    pub fn with_token(
        endpoint: &ProxmoxEndpoint,
        token: &Secret,
        timeouts: &Timeouts,
        counters: Arc<RequestCounters>,
    ) -> Result<Self, ProxmoxError> {
        let setup = |message: String| ProxmoxError::Setup {
            endpoint: endpoint.name.clone(),
            message,
        };
        check_token_form(token)
            .map_err(|m| setup(format!("{m} (from {})", endpoint.token.describe())))?;
        let auth = HeaderValue::from_str(&format!("PVEAPIToken={}", token.expose()))
            .map_err(|_| setup("the API token is not a valid header value".into()))?;
        let mut settings = HttpSettings::new(
            format!("proxmox {}", endpoint.name),
            api_base(&endpoint.url),
            endpoint.tls.clone(),
        );
        settings.connect_timeout = timeouts.connect;
        settings.request_timeout = timeouts.request;
        // Default retryable statuses (429, 502-504): a Proxmox 500 is a deterministic `die`
        // (often "does not exist") and 595/596 mean a node is down: retrying only delays the
        // scope error the pipeline must record.
        settings.retry = RetryPolicy {
            budget: timeouts.retry_budget,
            ..RetryPolicy::default()
        };
        settings.counters = counters;
        let http = HttpClient::new(settings, Some(auth))?;
        Ok(Self {
            http,
            endpoint: endpoint.name.clone(),
        })
    }

    /// The endpoint name.
    pub fn name(&self) -> &str {
        &self.endpoint
    }

    /// The underlying HTTP client (counters, base URL).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    fn decode_error(&self, path: &str, message: String) -> ProxmoxError {
        ProxmoxError::Decode {
            endpoint: self.endpoint.clone(),
            path: path.to_string(),
            message,
        }
    }

    /// GET `path` (relative to `/api2/json/`) and return the envelope's `data` and `total`.
    pub async fn get_data(
        &self,
        path: &str,
        query: Vec<(String, String)>,
    ) -> Result<(Value, Option<u64>), ProxmoxError> {
        let req = Request::new(Method::GET, path).query(query);
        let resp = self.http.send(&req).await?;
        if !resp.status.is_success() {
            return Err(from_response(&self.endpoint, path, &resp));
        }
        let envelope = if resp.body.len() <= INLINE_DECODE_BYTES {
            parse_envelope(&resp)
        } else {
            tokio::task::spawn_blocking(move || parse_envelope(&resp))
                .await
                .unwrap_or_else(|e| Err(format!("decoding task failed: {e}")))
        };
        let envelope = envelope.map_err(|message| self.decode_error(path, message))?;
        let Value::Object(mut map) = envelope else {
            return Err(self.decode_error(path, "the answer is not a JSON object".into()));
        };
        let data = map
            .remove("data")
            .ok_or_else(|| self.decode_error(path, "the answer has no `data` key".into()))?;
        let total = map.get("total").and_then(super::lenient::as_u64);
        Ok((data, total))
    }

    async fn get_typed<T: DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(String, String)>,
    ) -> Result<T, ProxmoxError> {
        let (data, _) = self.get_data(path, query).await?;
        serde_json::from_value(data).map_err(|e| self.decode_error(path, e.to_string()))
    }

    fn objects(&self, path: &str, data: Value) -> Result<Vec<RawObject>, ProxmoxError> {
        match data {
            Value::Null => Ok(Vec::new()),
            Value::Array(rows) => rows
                .into_iter()
                .map(|row| match row {
                    Value::Object(map) => Ok(map),
                    other => {
                        Err(self.decode_error(path, format!("a row is not an object: {other}")))
                    }
                })
                .collect(),
            other => {
                Err(self.decode_error(path, format!("expected a list, got {}", kind_of(&other))))
            }
        }
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<PveVersion, ProxmoxError> {
        self.get_typed("version", Vec::new()).await
    }

    /// `GET /cluster/status`: the cluster's name, or the node's for a standalone node.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ProxmoxError> {
        let path = "cluster/status";
        let rows: Vec<ClusterStatusRow> = self.get_typed(path, Vec::new()).await?;
        ClusterStatus::from_rows(rows)
            .ok_or_else(|| self.decode_error(path, "neither a cluster nor a node row".into()))
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ProxmoxError> {
        self.get_typed("nodes", Vec::new()).await
    }

    /// `GET /cluster/resources?type=vm`: one raw row per guest the token may audit.
    /// Guests on a silent node come back as `status: "unknown"` rows without `name`.
    pub async fn vm_resources(&self) -> Result<Vec<RawObject>, ProxmoxError> {
        let path = "cluster/resources";
        let (data, _) = self
            .get_data(path, vec![("type".into(), "vm".into())])
            .await?;
        self.objects(path, data)
    }

    /// `GET /nodes/{node}/{qemu|lxc}/{vmid}/config`: the raw config (pending changes applied, as
    /// Proxmox does without `current=1`).
    pub async fn guest_config(
        &self,
        node: &str,
        kind: GuestKind,
        vmid: u64,
    ) -> Result<RawObject, ProxmoxError> {
        let path = format!(
            "nodes/{}/{}/{vmid}/config",
            path_segment(node),
            kind.as_str()
        );
        let (data, _) = self.get_data(&path, Vec::new()).await?;
        match data {
            Value::Object(map) => Ok(map),
            other => Err(self.decode_error(
                &path,
                format!("expected an object, got {}", kind_of(&other)),
            )),
        }
    }

    /// `GET /nodes/{node}/tasks`: one page of tasks, newest first.
    pub async fn tasks(&self, node: &str, query: &TaskQuery) -> Result<TaskPage, ProxmoxError> {
        let path = format!("nodes/{}/tasks", path_segment(node));
        let (data, total) = self.get_data(&path, query.to_pairs()).await?;
        let tasks: Vec<Task> = match data {
            Value::Null => Vec::new(),
            data => {
                serde_json::from_value(data).map_err(|e| self.decode_error(&path, e.to_string()))?
            }
        };
        Ok(TaskPage { tasks, total })
    }
}

/// Escapes a node name for a URL path (names are DNS labels; this only guards odd input).
fn path_segment(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                vec![c.to_string()]
            } else {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_is_added_once() {
        let u = |s: &str| api_base(&Url::parse(s).unwrap()).to_string();
        assert_eq!(u("https://pve:8006"), "https://pve:8006/api2/json/");
        assert_eq!(u("https://pve:8006/"), "https://pve:8006/api2/json/");
        assert_eq!(
            u("https://pve:8006/api2/json"),
            "https://pve:8006/api2/json/"
        );
        assert_eq!(
            u("https://proxy/pve/api2/json/"),
            "https://proxy/pve/api2/json/"
        );
    }

    #[test]
    fn token_form_is_checked_without_echo() {
        assert!(check_token_form(&Secret::new("root@pam!sync=8a0f-uuid")).is_ok());
        assert!(check_token_form(&Secret::new("sync@pve!netbox=a=b")).is_ok());
        let err = check_token_form(&Secret::new("just-a-secret-value")).unwrap_err();
        assert!(!err.contains("just-a-secret-value"));
        assert!(check_token_form(&Secret::new("root@pam=x")).is_err());
    }

    #[test]
    fn node_names_are_path_safe() {
        assert_eq!(path_segment("pve-1.lab"), "pve-1.lab");
        assert_eq!(path_segment("a/b"), "a%2Fb");
    }
}
