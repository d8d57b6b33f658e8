//! `ProxmoxClient`: the read calls the sync needs, over one endpoint's [`HttpClient`], with
//! `PVEAPIToken=` authentication. Unwraps the `{"data": …}` envelope and maps error statuses.

use std::sync::Arc;

use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::Value;

use super::error::{ProxmoxError, from_response};
use super::types::{
    ClusterStatus, ClusterStatusRow, GuestKind, NodeInfo, PveVersion, RawObject, Task, TaskPage,
    TaskQuery,
};
use crate::clients::http::{
    HttpClient, HttpSettings, RawResponse, Request, RequestCounters, RetryPolicy, Secret,
};
use crate::config::{ProxmoxEndpoint, Timeouts};

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

/// The rows of a `{"data": [rows]}` answer, each as the JSON text of an object of only its keys
/// in `keep`; the answer back when it is not of that shape (`data` may be `null`: no rows).
fn trimmed_rows(
    resp: RawResponse,
    keep: &'static [&'static str],
) -> Result<Vec<Box<str>>, Box<RawResponse>> {
    let mut de = serde_json::Deserializer::from_slice(&resp.body);
    match EnvelopeSeed(keep)
        .deserialize(&mut de)
        .and_then(|rows| de.end().map(|()| rows))
    {
        Ok(rows) => Ok(rows),
        Err(_) => Err(Box::new(resp)),
    }
}

/// The envelope object: its `data` decoded by [`RowsVisitor`], other keys skipped.
struct EnvelopeSeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed {
    type Value = Vec<Box<str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed {
    type Value = Vec<Box<str>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with `data`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rows = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "data" {
                rows = Some(map.next_value_seed(RowsVisitor(self.0))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        rows.ok_or_else(|| de::Error::missing_field("data"))
    }
}

/// `data`: `null` or a list of row objects.
struct RowsVisitor(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for RowsVisitor {
    type Value = Vec<Box<str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RowsVisitor {
    type Value = Vec<Box<str>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of objects or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::new();
        while let Some(row) = seq.next_element_seed(RowSeed(self.0))? {
            rows.push(row);
        }
        Ok(rows)
    }
}

/// One row object, as the JSON text of its keys in the list. Why text: as JSON maps the rows of
/// a 100k-guest listing were ~56 MB, beside the 33 MB answer they were decoded from, at the
/// run's memory peak; as text they are ~20 MB.
struct RowSeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for RowSeed {
    type Value = Box<str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed {
    type Value = Box<str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a row object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut row = RowText::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.0.contains(&key.as_ref()) {
                let value: Value = map.next_value()?;
                row.push(&key, &value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(row.finish())
    }
}

/// The JSON text of an object, written key by key.
#[derive(Default)]
struct RowText(String);

impl RowText {
    fn push(&mut self, key: &str, value: &Value) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push_str(&Value::from(key).to_string());
        self.0.push(':');
        self.0.push_str(&value.to_string());
    }

    fn finish(mut self) -> Box<str> {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0.into_boxed_str()
    }
}

/// A row object as the JSON text of its keys in `keep` (what [`trimmed_rows`] makes of it).
fn row_text(row: &RawObject, keep: &[&str]) -> Box<str> {
    let mut text = RowText::default();
    for (key, value) in row.iter().filter(|(key, _)| keep.contains(&key.as_str())) {
        text.push(key, value);
    }
    text.finish()
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
        let resp = self.get_ok(path, query).await?;
        self.envelope_data(path, resp).await
    }

    /// GET `path`; an error status is an error.
    async fn get_ok(
        &self,
        path: &str,
        query: Vec<(String, String)>,
    ) -> Result<RawResponse, ProxmoxError> {
        let req = Request::new(Method::GET, path).query(query);
        let resp = self.http.send(&req).await?;
        if !resp.status.is_success() {
            return Err(from_response(&self.endpoint, path, &resp));
        }
        Ok(resp)
    }

    /// The envelope's `data` and `total` of a successful answer.
    async fn envelope_data(
        &self,
        path: &str,
        resp: RawResponse,
    ) -> Result<(Value, Option<u64>), ProxmoxError> {
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

    /// [`Self::vm_resources`] keeping of each row only the keys in `keep`, as the JSON text of
    /// an object, decoded straight from the answer's text. Why: as full JSON maps the rows took
    /// ~2 KB per guest (~200 MB at 100k guests, held beside the NetBox snapshot while they were
    /// read and trimmed). An answer that does not decode so is decoded as
    /// [`Self::vm_resources`] does, so its errors are the same.
    pub async fn vm_resources_keeping(
        &self,
        keep: &'static [&'static str],
    ) -> Result<Vec<Box<str>>, ProxmoxError> {
        let path = "cluster/resources";
        let resp = self
            .get_ok(path, vec![("type".into(), "vm".into())])
            .await?;
        let decoded = if resp.body.len() <= INLINE_DECODE_BYTES {
            trimmed_rows(resp, keep)
        } else {
            match tokio::task::spawn_blocking(move || trimmed_rows(resp, keep)).await {
                Ok(decoded) => decoded,
                Err(e) => {
                    return Err(self.decode_error(path, format!("decoding task failed: {e}")));
                }
            }
        };
        match decoded {
            Ok(rows) => Ok(rows),
            Err(resp) => {
                let (data, _) = self.envelope_data(path, *resp).await?;
                let rows = self.objects(path, data)?;
                Ok(rows.iter().map(|row| row_text(row, keep)).collect())
            }
        }
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

    /// `GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces`: the answer's `data.result`
    /// list (the guest's own reply, unchanged). Errors as Proxmox gives them (500 `QEMU guest
    /// agent is not running`, 403, 595, ...); the caller bounds the time.
    pub async fn agent_network_interfaces(
        &self,
        node: &str,
        vmid: u64,
    ) -> Result<Vec<Value>, ProxmoxError> {
        let path = format!(
            "nodes/{}/qemu/{vmid}/agent/network-get-interfaces",
            path_segment(node)
        );
        let (data, _) = self.get_data(&path, Vec::new()).await?;
        match data {
            Value::Object(mut map) => match map.remove("result") {
                Some(Value::Array(result)) => Ok(result),
                Some(other) => Err(self.decode_error(
                    &path,
                    format!("`result` is {}, not a list", kind_of(&other)),
                )),
                None => Err(self.decode_error(&path, "the answer has no `result`".into())),
            },
            other => Err(self.decode_error(
                &path,
                format!("expected an object, got {}", kind_of(&other)),
            )),
        }
    }

    /// `GET /nodes/{node}/lxc/{vmid}/interfaces` (PVE 8.1+): the JSON text of the `data` list,
    /// or `None` for `{"data": null}` (a stopped container).
    pub async fn lxc_interfaces(
        &self,
        node: &str,
        vmid: u64,
    ) -> Result<Option<String>, ProxmoxError> {
        let path = format!("nodes/{}/lxc/{vmid}/interfaces", path_segment(node));
        let (data, _) = self.get_data(&path, Vec::new()).await?;
        match data {
            Value::Null => Ok(None),
            list @ Value::Array(_) => Ok(Some(list.to_string())),
            other => {
                Err(self.decode_error(&path, format!("expected a list, got {}", kind_of(&other))))
            }
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

    fn answer(body: &str) -> RawResponse {
        RawResponse {
            status: reqwest::StatusCode::OK,
            headers: reqwest::header::HeaderMap::new(),
            reason: None,
            body: body.as_bytes().to_vec(),
            attempts: 1,
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn trimmed_rows_keep_only_the_listed_keys() {
        const KEEP: &[&str] = &["vmid", "name", "tags"];
        let body = r#"{"data":[{"vmid":100,"cpu":0.5,"name":"web","netin":7,"tags":"a;b"},
            {"vmid":101,"mem":{"nested":[1,2]}}],"total":2}"#;
        let rows: Vec<RawObject> = trimmed_rows(answer(body), KEEP)
            .unwrap()
            .iter()
            .map(|text| serde_json::from_str(text).unwrap())
            .collect();
        let full: Value = serde_json::from_str(body).unwrap();
        let expected: Vec<RawObject> = full["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let mut row = row.as_object().unwrap().clone();
                row.retain(|k, _| KEEP.contains(&k.as_str()));
                row
            })
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(rows[0].len(), 3);
        assert_eq!(rows[1].len(), 1);
    }

    #[test]
    fn trimmed_rows_hand_back_what_is_not_a_row_list() {
        const KEEP: &[&str] = &["vmid"];
        assert!(
            trimmed_rows(answer(r#"{"data":null}"#), KEEP)
                .unwrap()
                .is_empty()
        );
        for body in [
            r#"{"data":[1]}"#,
            r#"{"data":{"vmid":1}}"#,
            r#"{"errors":{}}"#,
            r#"[]"#,
            r#"{"data":[]} trailing"#,
            "not json",
        ] {
            let back = trimmed_rows(answer(body), KEEP).unwrap_err();
            assert_eq!(back.body, body.as_bytes(), "{body}");
        }
    }

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
