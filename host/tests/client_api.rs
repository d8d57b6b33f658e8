//! The Proxmox and NetBox clients and `doctor` against small fake servers on 127.0.0.1:
//! exact paths, queries and headers of each call, envelope and error variants, pagination,
//! token forms, and the doctor's read-only token report.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pve2netbox::clients::http::{RequestCounters, Secret};
use pve2netbox::clients::netbox::{NetboxClient, NetboxError, TokenKind};
use pve2netbox::clients::proxmox::{GuestKind, ProxmoxClient, ProxmoxError, TaskQuery, TaskSource};
use pve2netbox::config::{Config, NetboxConfig, ProxmoxEndpoint, Timeouts};
use reqwest::Url;
use serde_json::{Value, json};

const PVE_TOKEN: &str = "sync@pve!netbox=0b5e7c1a-2222-4444-8888-abcdefabcdef";
const NB_V2_TOKEN: &str = "nbt_AbCdEfGhIjKl.0123456789012345678901234567890123456789";
const NB_V1_TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn quick_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(5),
        retry_budget: Duration::from_secs(2),
    }
}

/// Every request the fake saw: method, path, query, Authorization.
type Log = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn record(log: &Log, method: &str, uri: &Uri, headers: &HeaderMap) {
    log.lock().unwrap().push((
        method.to_string(),
        uri.path().to_string(),
        uri.query().unwrap_or("").to_string(),
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    ));
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ------------------------------------------------------------------------------------------
// Proxmox

fn fake_proxmox(log: Log) -> Router {
    async fn handler(State(log): State<Log>, uri: Uri, headers: HeaderMap) -> Response {
        record(&log, "GET", &uri, &headers);
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("PVEAPIToken={PVE_TOKEN}") {
            // 401: plain text, never JSON; the reason phrase carries the message.
            let mut resp = (StatusCode::UNAUTHORIZED, "invalid token value!\n").into_response();
            resp.extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(
                    b"invalid token value!",
                ));
            return resp;
        }
        match uri.path() {
            "/api2/json/version" => json_response(
                StatusCode::OK,
                json!({"data":{"version":"8.2.4","release":"8.2","repoid":"faa83925"}}),
            ),
            "/api2/json/cluster/status" => json_response(
                StatusCode::OK,
                json!({"data":[{"type":"node","id":"node/solo","name":"solo","nodeid":0,"local":1,"online":1,"level":""}]}),
            ),
            "/api2/json/nodes" => json_response(
                StatusCode::OK,
                json!({"data":[{"node":"solo","status":"online","maxcpu":8,"maxmem":"34359738368","ssl_fingerprint":"AB:CD"}]}),
            ),
            "/api2/json/cluster/resources" => json_response(
                StatusCode::OK,
                json!({"data":[
                    {"id":"qemu/100","type":"qemu","vmid":100,"node":"solo","name":"web01","status":"running","template":0,"maxmem":4294967296u64,"tags":"prod;web"},
                    {"id":"qemu/102","type":"qemu","vmid":"102","node":"solo","status":"unknown"}
                ]}),
            ),
            "/api2/json/nodes/solo/qemu/100/config" => json_response(
                StatusCode::OK,
                json!({"data":{"name":"web01","memory":"4096","onboot":1,"cpulimit":"1.5","digest":"3f2c"}}),
            ),
            "/api2/json/nodes/solo/qemu/999/config" => {
                // An old server: no `message` in the body, the text only in the reason phrase.
                let mut resp =
                    json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({"data": null}));
                resp.extensions_mut()
                    .insert(hyper::ext::ReasonPhrase::from_static(
                        b"Configuration file 'nodes/solo/qemu-server/999.conf' does not exist",
                    ));
                resp
            }
            "/api2/json/nodes/solo/lxc/101/config" => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"data": null, "message": "Configuration file 'nodes/solo/lxc/101.conf' does not exist\n"}),
            ),
            "/api2/json/nodes/gone/qemu/100/config" => {
                let mut resp = (StatusCode::from_u16(595).unwrap(), "").into_response();
                resp.extensions_mut()
                    .insert(hyper::ext::ReasonPhrase::from_static(b"No route to host"));
                resp
            }
            "/api2/json/nodes/solo/tasks" => json_response(
                StatusCode::OK,
                json!({"data":[
                    {"upid":"UPID:solo:0001A2B3:0C4D5E6F:66B2A1C0:qmstart:100:root@pam:","node":"solo","pid":107187,
                     "pstart":206397039,"starttime":1722982848,"endtime":1722982850,"type":"qmstart","id":"100",
                     "user":"root@pam","status":"OK"}],
                 "total": 7}),
            ),
            _ => json_response(
                StatusCode::NOT_IMPLEMENTED,
                json!({"data": null, "message": format!("Method 'GET {}' not implemented\n", uri.path())}),
            ),
        }
    }
    Router::new().fallback(handler).with_state(log)
}

fn pve_client(addr: SocketAddr, token: &str) -> ProxmoxClient {
    let endpoint = ProxmoxEndpoint::new(
        "pve-a",
        Url::parse(&format!("http://{addr}")).unwrap(),
        Secret::new(token),
    );
    ProxmoxClient::new(
        &endpoint,
        &quick_timeouts(),
        Arc::new(RequestCounters::default()),
    )
    .unwrap()
}

#[tokio::test]
async fn proxmox_reads_inventory_configs_and_tasks() {
    let log: Log = Arc::default();
    let addr = serve(fake_proxmox(log.clone())).await;
    let pve = pve_client(addr, PVE_TOKEN);

    assert_eq!(pve.version().await.unwrap().major(), Some(8));
    let status = pve.cluster_status().await.unwrap();
    assert!(status.standalone);
    assert_eq!(status.name, "solo");
    let nodes = pve.nodes().await.unwrap();
    assert_eq!(nodes[0].maxmem, Some(34359738368));
    assert!(nodes[0].is_online());

    let rows = pve.vm_resources().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["tags"], "prod;web");
    assert!(
        !rows[1].contains_key("name"),
        "raw rows are passed through untouched"
    );

    let config = pve
        .guest_config("solo", GuestKind::Qemu, 100)
        .await
        .unwrap();
    assert_eq!(config["memory"], "4096");

    let page = pve
        .tasks(
            "solo",
            &TaskQuery {
                vmid: Some(100),
                since: Some(1722900000),
                start: Some(0),
                limit: Some(50),
                source: Some(TaskSource::Archive),
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, Some(7));
    assert_eq!(page.tasks[0].task_type, "qmstart");

    let log = log.lock().unwrap();
    let paths: Vec<(&str, &str)> = log
        .iter()
        .map(|(_, p, q, _)| (p.as_str(), q.as_str()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/api2/json/version", ""),
            ("/api2/json/cluster/status", ""),
            ("/api2/json/nodes", ""),
            ("/api2/json/cluster/resources", "type=vm"),
            ("/api2/json/nodes/solo/qemu/100/config", ""),
            (
                "/api2/json/nodes/solo/tasks",
                "vmid=100&since=1722900000&start=0&limit=50&source=archive"
            ),
        ]
    );
    assert!(
        log.iter()
            .all(|(_, _, _, auth)| auth == &format!("PVEAPIToken={PVE_TOKEN}"))
    );
    assert_eq!(pve.http().counters().snapshot().reads, 6);
}

#[tokio::test]
async fn proxmox_errors_are_told_apart() {
    let log: Log = Arc::default();
    let addr = serve(fake_proxmox(log.clone())).await;
    let pve = pve_client(addr, PVE_TOKEN);

    let err = pve
        .guest_config("solo", GuestKind::Qemu, 999)
        .await
        .unwrap_err();
    assert!(err.is_missing_config(), "{err}");
    assert!(
        err.to_string().contains("999.conf' does not exist"),
        "reason phrase used: {err}"
    );

    let err = pve
        .guest_config("solo", GuestKind::Lxc, 101)
        .await
        .unwrap_err();
    assert!(err.is_missing_config(), "{err}");
    assert!(
        err.to_string()
            .ends_with("'nodes/solo/lxc/101.conf' does not exist"),
        "{err}"
    );

    let err = pve
        .guest_config("gone", GuestKind::Qemu, 100)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxmoxError::NodeUnreachable { status: 595, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("No route to host"), "{err}");

    let err = pve
        .get_data("nodes/solo/lxc/101/interfaces", vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, ProxmoxError::NotImplemented { .. }), "{err}");

    let bad = pve_client(addr, "sync@pve!netbox=wrong-secret");
    let err = bad.version().await.unwrap_err();
    assert!(matches!(err, ProxmoxError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("invalid token value!"), "{err}");
    assert!(
        !err.to_string().contains("wrong-secret"),
        "the token never appears: {err}"
    );
    assert!(!format!("{err:?}").contains("wrong-secret"));
    assert!(!format!("{bad:?}").contains("wrong-secret"));
}

#[test]
fn proxmox_client_refuses_a_malformed_token_without_echoing_it() {
    let endpoint = ProxmoxEndpoint::new(
        "pve-a",
        Url::parse("http://127.0.0.1:1").unwrap(),
        Secret::new("plainsecret123"),
    );
    let err = ProxmoxClient::new(&endpoint, &Timeouts::default(), Arc::default()).unwrap_err();
    assert!(matches!(err, ProxmoxError::Setup { .. }));
    assert!(!err.to_string().contains("plainsecret123"), "{err}");
}

// ------------------------------------------------------------------------------------------
// NetBox

#[derive(Clone)]
struct FakeNetbox {
    log: Log,
    vms: usize,
    read_only: bool,
}

fn fake_netbox(state: FakeNetbox) -> Router {
    async fn handler(
        State(state): State<FakeNetbox>,
        method: axum::http::Method,
        uri: Uri,
        headers: HeaderMap,
        Query(query): Query<Vec<(String, String)>>,
        body: String,
    ) -> Response {
        record(&state.log, method.as_str(), &uri, &headers);
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {NB_V2_TOKEN}") && auth != format!("Token {NB_V1_TOKEN}") {
            return json_response(StatusCode::FORBIDDEN, json!({"detail": "Invalid v2 token"}));
        }
        let q: HashMap<&str, &str> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match (method.as_str(), uri.path()) {
            ("GET", "/api/status/") => json_response(
                StatusCode::OK,
                json!({"netbox-version": "4.7.3", "django-version": "5.2.8", "plugins": {}}),
            ),
            ("GET", "/api/virtualization/virtual-machines/") => {
                let limit: usize = q
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(50)
                    .min(1000);
                let offset: usize = q.get("offset").and_then(|l| l.parse().ok()).unwrap_or(0);
                let end = (offset + limit).min(state.vms);
                let results: Vec<Value> = (offset..end)
                    .map(|i| json!({"id": i + 1, "name": format!("vm-{:05}", i + 1), "custom_fields": {"proxmox_vm_id": 100 + i}}))
                    .collect();
                let next = (end < state.vms).then(|| {
                    format!(
                        "http://nb/api/virtualization/virtual-machines/?limit={limit}&offset={end}"
                    )
                });
                json_response(
                    StatusCode::OK,
                    json!({"count": state.vms, "next": next, "previous": null, "results": results}),
                )
            }
            ("POST", "/api/virtualization/virtual-machines/") => {
                if state.read_only {
                    return json_response(
                        StatusCode::FORBIDDEN,
                        json!({"detail": "You do not have permission to perform this action."}),
                    );
                }
                let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if parsed.is_array() {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({"detail":"1 of 3 objects could not be created.","errors":[{"index":1,"errors":{"__all__":["Virtual machine name must be unique per cluster and tenant."]}}]}),
                    );
                }
                json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"name": ["This field is required."]}),
                )
            }
            ("PATCH", "/api/virtualization/virtual-machines/") => {
                // ≤4.6 behaviour: unknown ids are skipped silently.
                let items: Vec<Value> = serde_json::from_str(&body).unwrap();
                let known: Vec<Value> = items
                    .into_iter()
                    .filter(|i| i["id"].as_u64() != Some(999999))
                    .collect();
                json_response(StatusCode::OK, Value::Array(known))
            }
            ("DELETE", "/api/virtualization/virtual-machines/5/") => {
                StatusCode::NO_CONTENT.into_response()
            }
            ("DELETE", "/api/virtualization/virtual-machines/6/") => json_response(
                StatusCode::NOT_FOUND,
                json!({"detail": "No VirtualMachine matches the given query."}),
            ),
            ("GET", "/api/extras/custom-fields/") => {
                // Like NetBox with a filter it does not know: the filter is ignored, every
                // custom field comes back. The client must check names itself.
                json_response(
                    StatusCode::OK,
                    json!({"count": 2, "next": null, "previous": null, "results": [
                        {"id": 1, "name": "proxmox_vm_id", "type": {"value": "integer", "label": "Integer"}, "object_types": ["virtualization.virtualmachine"]},
                        {"id": 2, "name": "proxmox_node", "type": {"value": "longtext", "label": "Text (long)"}, "object_types": ["virtualization.virtualmachine"]}
                    ]}),
                )
            }
            ("GET", "/api/extras/tags/") => json_response(
                StatusCode::OK,
                json!({"count": 0, "next": null, "previous": null, "results": []}),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                [("content-type", "text/html")],
                "<!DOCTYPE html><html><body>Page Not Found</body></html>",
            )
                .into_response(),
        }
    }
    Router::new().fallback(handler).with_state(state)
}

fn nb_client(addr: SocketAddr, token: &str) -> NetboxClient {
    let config = NetboxConfig::new(
        Url::parse(&format!("http://{addr}")).unwrap(),
        Secret::new(token),
    );
    NetboxClient::new(
        &config,
        &quick_timeouts(),
        Arc::new(RequestCounters::default()),
    )
    .unwrap()
}

async fn start_netbox(vms: usize, read_only: bool) -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let addr = serve(fake_netbox(FakeNetbox {
        log: log.clone(),
        vms,
        read_only,
    }))
    .await;
    (addr, log)
}

#[tokio::test]
async fn netbox_status_and_token_forms() {
    let (addr, log) = start_netbox(0, false).await;
    let v2 = nb_client(addr, NB_V2_TOKEN);
    assert_eq!(v2.token_kind(), TokenKind::V2);
    let status = v2.status().await.unwrap();
    assert_eq!(status.version_text, "4.7.3");
    assert!(status.capabilities.virtual_machine_type && status.capabilities.structured_bulk_errors);
    let v1 = nb_client(addr, NB_V1_TOKEN);
    assert_eq!(v1.token_kind(), TokenKind::V1);
    v1.status().await.unwrap();
    let auths: Vec<String> = log.lock().unwrap().iter().map(|r| r.3.clone()).collect();
    assert_eq!(
        auths,
        vec![
            format!("Bearer {NB_V2_TOKEN}"),
            format!("Token {NB_V1_TOKEN}")
        ]
    );

    let bad = nb_client(addr, "nbt_bad.bad");
    let err = bad.status().await.unwrap_err();
    assert!(matches!(err, NetboxError::Auth { .. }), "{err}");
    assert!(!format!("{err} {err:?} {bad:?}").contains("nbt_bad.bad"));
}

#[tokio::test]
async fn netbox_list_all_pages_in_parallel_and_trims_fields() {
    let (addr, log) = start_netbox(2500, false).await;
    let nb = nb_client(addr, NB_V2_TOKEN);
    let rows = nb
        .list_all(
            "virtualization/virtual-machines",
            &[("cluster_id".to_string(), "3".to_string())],
            &["name", "custom_fields"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2500);
    let ids: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=2500).collect::<Vec<u64>>());
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 3, "ceil(2500 / 1000) pages");
    let mut offsets: Vec<String> = Vec::new();
    for (method, path, query, _) in log.iter() {
        assert_eq!(method, "GET");
        assert_eq!(path, "/api/virtualization/virtual-machines/");
        assert!(
            query.starts_with("cluster_id=3&ordering=id&fields=name%2Ccustom_fields%2Cid&"),
            "{query}"
        );
        assert!(query.contains("limit=1000"), "{query}");
        offsets.push(query.rsplit("offset=").next().unwrap().to_string());
    }
    offsets.sort();
    assert_eq!(offsets, vec!["0", "1000", "2000"]);
    assert_eq!(nb.http().counters().snapshot().reads, 3);
}

#[tokio::test]
async fn netbox_empty_listing_is_one_request() {
    let (addr, log) = start_netbox(0, false).await;
    let nb = nb_client(addr, NB_V2_TOKEN);
    let rows = nb
        .list_all("virtualization/virtual-machines", &[], &["id"])
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn netbox_writes_and_their_errors() {
    let (addr, log) = start_netbox(3, false).await;
    let nb = nb_client(addr, NB_V2_TOKEN);

    let err = nb
        .create("virtualization/virtual-machines", &json!({}), &["id"])
        .await
        .unwrap_err();
    assert!(matches!(err, NetboxError::Validation { .. }), "{err}");
    assert!(
        err.to_string().contains("name: This field is required."),
        "{err}"
    );

    let items = vec![
        json!({"name": "a"}),
        json!({"name": "A"}),
        json!({"name": "b"}),
    ];
    let err = nb
        .create_bulk("virtualization/virtual-machines", &items, &["id"])
        .await
        .unwrap_err();
    assert_eq!(err.body().unwrap().failed_indexes(), vec![1]);
    assert!(
        err.to_string()
            .contains("item 1: Virtual machine name must be unique"),
        "{err}"
    );

    let err = nb
        .patch_bulk(
            "virtualization/virtual-machines",
            &[
                json!({"id": 1, "vcpus": 2}),
                json!({"id": 999999, "vcpus": 2}),
            ],
            &["id"],
        )
        .await
        .unwrap_err();
    match err {
        NetboxError::Incomplete {
            missing,
            sent,
            returned,
            ..
        } => {
            assert_eq!((missing, sent, returned), (vec![999999], 2, 1));
        }
        other => panic!("{other}"),
    }

    assert!(
        nb.delete("virtualization/virtual-machines", 5)
            .await
            .unwrap()
    );
    assert!(
        !nb.delete("virtualization/virtual-machines", 6)
            .await
            .unwrap(),
        "already gone is fine"
    );

    let err = nb
        .list_all("virtualization/nope", &[], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, NetboxError::UnknownEndpoint { .. }), "{err}");

    let log = log.lock().unwrap();
    let writes: Vec<(&str, &str, &str)> = log
        .iter()
        .filter(|r| r.0 != "GET")
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        writes,
        vec![
            // `fields=` trims write responses too, and real NetBox drops body keys it does not
            // list, so every key sent is listed.
            ("POST", "/api/virtualization/virtual-machines/", "fields=id"),
            (
                "POST",
                "/api/virtualization/virtual-machines/",
                "fields=id%2Cname"
            ),
            (
                "PATCH",
                "/api/virtualization/virtual-machines/",
                "fields=id%2Cvcpus"
            ),
            ("DELETE", "/api/virtualization/virtual-machines/5/", ""),
            ("DELETE", "/api/virtualization/virtual-machines/6/", ""),
        ],
        "a 400 on POST is never retried"
    );
}

#[tokio::test]
async fn custom_field_lookup_never_trusts_an_ignored_filter() {
    let (addr, _) = start_netbox(0, false).await;
    let nb = nb_client(addr, NB_V2_TOKEN);
    assert!(nb.custom_field_exists("proxmox_vm_id").await.unwrap());
    assert!(!nb.custom_field_exists("proxmox_vm_type").await.unwrap());
}

#[tokio::test]
async fn doctor_reports_a_read_only_token_and_fails() {
    let (nb_addr, _) = start_netbox(3, true).await;
    let pve_addr = serve(fake_proxmox(Arc::default())).await;
    let mut config = Config::new(
        NetboxConfig::new(
            Url::parse(&format!("http://{nb_addr}")).unwrap(),
            Secret::new(NB_V2_TOKEN),
        ),
        vec![ProxmoxEndpoint::new(
            "pve-a",
            Url::parse(&format!("http://{pve_addr}")).unwrap(),
            Secret::new(PVE_TOKEN),
        )],
    );
    config.timeouts = quick_timeouts();
    let checks = pve2netbox::cli::doctor::check_all(&config).await;
    let lines: Vec<String> = checks.iter().map(ToString::to_string).collect();
    let text = lines.join("\n");
    use pve2netbox::cli::doctor::Level;
    let fail = |needle: &str| {
        checks
            .iter()
            .any(|c| c.level == Level::Fail && c.message.contains(needle))
    };
    assert!(fail("token is read-only: sync cannot write"), "{text}");
    assert!(
        fail("custom field proxmox_node has type longtext"),
        "{text}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.level == Level::Warn && c.message.contains("proxmox_vm_type missing")),
        "{text}"
    );
    assert!(
        checks.iter().any(|c| c.level == Level::Warn && c.message.contains("managed tag pve2netbox missing")),
        "{text}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.scope == "proxmox pve-a" && c.message.contains("standalone node solo")),
        "{text}"
    );
    assert!(
        checks.iter().any(|c| c.scope == "proxmox pve-a"
            && c.message.contains("token sees 2 guests (2 qemu, 0 lxc)")),
        "{text}"
    );
    assert!(
        fail("") && !text.contains(NB_V2_TOKEN) && !text.contains("0b5e7c1a"),
        "{text}"
    );
}

#[tokio::test]
async fn doctor_passes_with_a_writable_token() {
    let (nb_addr, _) = start_netbox(3, false).await;
    let pve_addr = serve(fake_proxmox(Arc::default())).await;
    let config = Config::new(
        NetboxConfig::new(
            Url::parse(&format!("http://{nb_addr}")).unwrap(),
            Secret::new(NB_V1_TOKEN),
        ),
        vec![ProxmoxEndpoint::new(
            "pve-a",
            Url::parse(&format!("http://{pve_addr}")).unwrap(),
            Secret::new(PVE_TOKEN),
        )],
    );
    let checks = pve2netbox::cli::doctor::check_all(&config).await;
    let text: Vec<String> = checks.iter().map(ToString::to_string).collect();
    assert!(
        checks
            .iter()
            .any(|c| c.message.contains("token can create virtual machines")),
        "{text:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.message.contains("guest config readable (solo/100)")),
        "{text:?}"
    );
}
