//! Hostile and broken answers from either API give error values, never a panic: property tests
//! of NetBox error bodies, Proxmox error and success answers and NetBox list pages (arbitrary
//! bytes, JSON of the wrong shape, nulls, odd reason phrases) through the public clients
//! against a raw HTTP server on 127.0.0.1; fixed cases for garbage, truncated JSON,
//! `{"results": null}` and 50 MB fields; and a check that bulk writes stay under NetBox's
//! 2.5 MB body limit while every item is written.
//!
//! The raw server (not axum) is used where the answer itself is the input: it sends any status,
//! any reason-phrase bytes and any body exactly as given.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method as AxumMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use guest_default::model::{FieldChange, JsonText};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use pve2netbox::clients::http::{RequestCounters, Secret};
use pve2netbox::clients::netbox::{ErrorBody, NetboxClient, NetboxError};
use pve2netbox::clients::proxmox::{GuestKind, ProxmoxClient, ProxmoxError, TaskQuery};
use pve2netbox::config::{NetboxConfig, ProxmoxEndpoint, Timeouts};
use pve2netbox::pipeline::dispatch::{DispatchSettings, MAX_BULK_BODY_BYTES, dispatch};
use pve2netbox::pipeline::plan::{OpKind, Operation};
use pve2netbox::pipeline::preflight::Preflight;
use pve2netbox::progress::Progress;
use reqwest::Url;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PVE_TOKEN: &str = "sync@pve!netbox=0b5e7c1a-2222-4444-8888-abcdefabcdef";
const NB_TOKEN: &str = "nbt_AbCdEfGhIjKl.0123456789012345678901234567890123456789";

/// NetBox's `DATA_UPLOAD_MAX_MEMORY_SIZE` (2.5 MiB): a larger body gets a 500.
const NETBOX_BODY_LIMIT: usize = 2_621_440;

/// Upper bound on a client error's text: the message is clipped to 2000 characters; method,
/// path, status words and the clip note come on top.
const MAX_ERROR_TEXT_CHARS: usize = 2400;

/// Cases of the properties that go over HTTP (each case is one or a few local requests).
const HTTP_CASES: u32 = 512;
/// Cases of the in-memory properties.
const CASES: u32 = 2000;

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 server
// ---------------------------------------------------------------------------------------------

/// One canned answer: status, reason phrase bytes, body bytes.
#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    reason: Vec<u8>,
    body: Vec<u8>,
}

impl Canned {
    fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Canned {
            status,
            reason: b"Whatever".to_vec(),
            body: body.into(),
        }
    }
}

type Slot = Arc<Mutex<Canned>>;

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Answers every request with the slot's current answer, then closes the connection.
async fn raw_server(slot: Slot) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let slot = slot.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                let head_end = loop {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(p) = find(&buf, b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let c = slot.lock().unwrap().clone();
                let mut out = format!("HTTP/1.1 {} ", c.status).into_bytes();
                out.extend_from_slice(&c.reason);
                out.extend_from_slice(
                    format!(
                        "\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        c.body.len()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&c.body);
                let _ = sock.write_all(&out).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

fn quick_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(30),
        retry_budget: Duration::from_secs(1),
    }
}

fn pve_client(addr: SocketAddr) -> ProxmoxClient {
    let endpoint = ProxmoxEndpoint::new(
        "pve-a",
        Url::parse(&format!("http://{addr}")).unwrap(),
        Secret::new(PVE_TOKEN),
    );
    ProxmoxClient::new(&endpoint, &quick_timeouts(), Arc::default()).unwrap()
}

fn nb_client(addr: SocketAddr) -> NetboxClient {
    let config = NetboxConfig::new(
        Url::parse(&format!("http://{addr}")).unwrap(),
        Secret::new(NB_TOKEN),
    );
    NetboxClient::new(
        &config,
        &quick_timeouts(),
        Arc::new(RequestCounters::default()),
    )
    .unwrap()
}

/// A runtime, a raw server and its answer slot for one property.
struct Rig {
    rt: tokio::runtime::Runtime,
    slot: Slot,
    addr: SocketAddr,
}

impl Rig {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let slot: Slot = Arc::new(Mutex::new(Canned::json(200, "{}")));
        let addr = rt.block_on(raw_server(slot.clone()));
        Rig { rt, slot, addr }
    }

    fn answer(&self, canned: Canned) {
        *self.slot.lock().unwrap() = canned;
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::sample::select(vec![
            "NaN",
            "inf",
            "1e999",
            "-1",
            "18446744073709551616",
            "",
            "null",
            "\u{0}",
            "<html>",
            "does not exist",
        ])
        .prop_map(str::to_owned),
        (any::<char>(), 0usize..3000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// Any JSON value, a few levels deep, with odd strings and extreme numbers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        hostile_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(vec![
                            "detail",
                            "errors",
                            "__all__",
                            "non_field_errors",
                            "index",
                            "id",
                            "exception",
                            "error",
                            "custom_fields",
                            "message",
                            "data",
                            "results",
                        ])
                        .prop_map(str::to_owned),
                        "[a-z_]{0,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Bodies: arbitrary bytes, JSON of any shape, JSON cut short, HTML.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let text = v.to_string().into_bytes();
            let cut = i.index(text.len() + 1);
            text[..cut].to_vec()
        }),
        Just(b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>".to_vec()),
    ]
}

/// Reason-phrase bytes HTTP allows: tab, visible ASCII, space, obs-text.
fn reason() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..80)
}

// ---------------------------------------------------------------------------------------------
// NetBox error bodies (in memory)
// ---------------------------------------------------------------------------------------------

fn check_error_body(body: &ErrorBody) -> Result<(), TestCaseError> {
    let m = body.message();
    prop_assert!(!m.is_empty());
    prop_assert!(
        m.chars().count() <= 2000 + 60,
        "message of {} characters",
        m.chars().count()
    );
    for i in body.failed_indexes() {
        prop_assert!(body.items.iter().any(|it| it.index == Some(i)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(CASES))]

    /// Any bytes parse into an error body with a readable, bounded message.
    #[test]
    fn netbox_error_bodies_from_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        check_error_body(&ErrorBody::parse(&bytes))?;
    }

    /// Any JSON (wrong types in every slot NetBox uses) parses the same way, as text and as a
    /// value.
    #[test]
    fn netbox_error_bodies_from_any_json(v in json_value()) {
        let parsed = ErrorBody::parse(v.to_string().as_bytes());
        check_error_body(&parsed)?;
        check_error_body(&ErrorBody::from_value(&v))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Over HTTP: Proxmox
// ---------------------------------------------------------------------------------------------

/// Error statuses the clients do not retry (retries are covered in `client_http.rs` and would
/// only make this slow).
fn pve_error_status() -> impl Strategy<Value = u16> {
    prop::sample::select(vec![
        400u16, 401, 403, 404, 405, 409, 418, 500, 501, 505, 595, 596, 599, 600, 999,
    ])
}

/// The server's message an error carries, if its variant has one.
fn pve_message(e: &ProxmoxError) -> Option<&str> {
    match e {
        ProxmoxError::Unauthorized { message, .. }
        | ProxmoxError::Forbidden { message, .. }
        | ProxmoxError::BadRequest { message, .. }
        | ProxmoxError::Server { message, .. }
        | ProxmoxError::NotImplemented { message, .. }
        | ProxmoxError::NodeUnreachable { message, .. }
        | ProxmoxError::NodeTls { message, .. }
        | ProxmoxError::Status { message, .. }
        | ProxmoxError::Decode { message, .. } => Some(message),
        _ => None,
    }
}

fn nb_message(e: &NetboxError) -> Option<&str> {
    match e {
        NetboxError::Auth { message, .. }
        | NetboxError::Forbidden { message, .. }
        | NetboxError::NotFound { message, .. }
        | NetboxError::Validation { message, .. }
        | NetboxError::Conflict { message, .. }
        | NetboxError::PreconditionFailed { message, .. }
        | NetboxError::Server { message, .. }
        | NetboxError::Status { message, .. }
        | NetboxError::Decode { message, .. } => Some(message),
        _ => None,
    }
}

/// Every error carries a message that says something.
fn check_message(message: Option<&str>) -> Result<(), TestCaseError> {
    if let Some(m) = message {
        prop_assert!(!m.trim().is_empty(), "blank message");
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!text.is_empty());
    prop_assert!(
        text.chars().count() <= MAX_ERROR_TEXT_CHARS,
        "error of {} characters",
        text.chars().count()
    );
    prop_assert!(!text.contains("0b5e7c1a"), "the token leaked: {text:.200}");
    Ok(())
}

/// Any Proxmox error answer (status, reason phrase, body) becomes the error of its status with
/// a readable, bounded message.
#[test]
fn proxmox_error_answers_become_errors() {
    let rig = Rig::new();
    let pve = pve_client(rig.addr);
    let mut runner = TestRunner::new(proptest_config(HTTP_CASES));
    runner
        .run(
            &(pve_error_status(), reason(), body()),
            |(status, reason, body)| {
                rig.answer(Canned {
                    status,
                    reason,
                    body,
                });
                let err = rig
                    .rt
                    .block_on(pve.vm_resources())
                    .expect_err("an error status is an error");
                prop_assert_eq!(err.status(), Some(status), "{}", err);
                let want_kind = match status {
                    400 => matches!(err, ProxmoxError::BadRequest { .. }),
                    401 => matches!(err, ProxmoxError::Unauthorized { .. }),
                    403 => matches!(err, ProxmoxError::Forbidden { .. }),
                    500 => matches!(err, ProxmoxError::Server { .. }),
                    595 | 599 => matches!(err, ProxmoxError::NodeUnreachable { .. }),
                    _ => true,
                };
                prop_assert!(want_kind, "{status} gave {err:?}");
                check_message(pve_message(&err))?;
                check_text(&err.to_string())
            },
        )
        .unwrap();
}

/// Any 200 answer to each Proxmox read is either read or a `Decode` error naming the path.
#[test]
fn proxmox_success_answers_decode_or_error() {
    let rig = Rig::new();
    let pve = pve_client(rig.addr);
    let envelope = prop_oneof![
        body(),
        (json_value(), prop::option::of(json_value())).prop_map(|(data, total)| {
            let mut m = serde_json::Map::new();
            m.insert("data".into(), data);
            if let Some(t) = total {
                m.insert("total".into(), t);
            }
            Value::Object(m).to_string().into_bytes()
        }),
        prop::collection::vec(
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "type",
                        "name",
                        "node",
                        "nodeid",
                        "local",
                        "online",
                        "status",
                        "vmid",
                        "maxmem",
                        "upid",
                        "starttime",
                        "id",
                        "version",
                        "release",
                    ]),
                    json_value()
                ),
                0..8
            ),
            0..4
        )
        .prop_map(|rows| {
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
                .collect();
            json!({"data": rows}).to_string().into_bytes()
        }),
    ];
    let mut runner = TestRunner::new(proptest_config(HTTP_CASES));
    runner
        .run(&envelope, |body| {
            rig.answer(Canned::json(200, body));
            let results: Vec<Result<(), ProxmoxError>> = rig.rt.block_on(async {
                vec![
                    pve.version().await.map(drop),
                    pve.cluster_status().await.map(drop),
                    pve.nodes().await.map(drop),
                    pve.vm_resources().await.map(drop),
                    pve.guest_config("pve1", GuestKind::Qemu, 100)
                        .await
                        .map(drop),
                    pve.tasks("pve1", &TaskQuery::default()).await.map(drop),
                ]
            });
            for r in results {
                if let Err(e) = r {
                    prop_assert!(
                        matches!(e, ProxmoxError::Decode { .. }),
                        "a 200 answer gave {e:?}"
                    );
                    prop_assert!(e.to_string().starts_with("proxmox pve-a: "));
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Over HTTP: NetBox
// ---------------------------------------------------------------------------------------------

/// Any NetBox error answer becomes the error of its status with a bounded message.
#[test]
fn netbox_error_answers_become_errors() {
    let rig = Rig::new();
    let nb = nb_client(rig.addr);
    // 429, 500 (unless `RequestDataTooBig`) and 502-504 are retried: left out to stay quick.
    let status = prop::sample::select(vec![
        400u16, 401, 403, 404, 405, 409, 412, 413, 418, 501, 505, 599, 600, 999,
    ]);
    let mut runner = TestRunner::new(proptest_config(HTTP_CASES));
    runner
        .run(
            &(status, reason(), body(), any::<bool>()),
            |(status, reason, body, write)| {
                rig.answer(Canned {
                    status,
                    reason,
                    body,
                });
                let err = rig
                    .rt
                    .block_on(async {
                        if write {
                            nb.create(
                                "virtualization/virtual-machines",
                                &json!({"name": "x"}),
                                &[],
                            )
                            .await
                            .map(drop)
                        } else {
                            nb.list_page("virtualization/virtual-machines", &[], &[], 10, 0)
                                .await
                                .map(drop)
                        }
                    })
                    .expect_err("an error status is an error");
                prop_assert_eq!(err.status(), Some(status), "{}", err);
                if status == 400 {
                    prop_assert!(err.body().is_some(), "a 400 keeps its parsed body");
                }
                check_message(nb_message(&err))?;
                check_text(&err.to_string())
            },
        )
        .unwrap();
}

/// A 200 list page with any shape: read when `results` is a list of objects, else a `Decode`
/// error; `count` and `next` of the wrong type never fail the read.
#[test]
fn netbox_list_pages_decode_or_error() {
    let rig = Rig::new();
    let nb = nb_client(rig.addr);
    let results = prop_oneof![
        json_value(),
        prop::collection::vec(
            prop_oneof![
                3 => prop::collection::vec(("[a-z_]{1,8}", json_value()), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                1 => json_value(),
            ],
            0..5
        )
        .prop_map(Value::Array),
    ];
    let page = (
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(results),
    );
    let mut runner = TestRunner::new(proptest_config(HTTP_CASES));
    runner
        .run(&page, |(count, next, results)| {
            let mut m = serde_json::Map::new();
            if let Some(c) = count {
                m.insert("count".into(), c);
            }
            if let Some(n) = next {
                m.insert("next".into(), n);
            }
            let readable = match &results {
                Some(Value::Array(rows)) => rows.iter().all(Value::is_object),
                _ => false,
            };
            let rows = match &results {
                Some(Value::Array(rows)) => rows.len(),
                _ => 0,
            };
            if let Some(r) = results {
                m.insert("results".into(), r);
            }
            rig.answer(Canned::json(200, Value::Object(m).to_string()));
            let got = rig.rt.block_on(nb.list_page(
                "virtualization/virtual-machines",
                &[],
                &["id"],
                1000,
                0,
            ));
            match got {
                Ok(page) => {
                    prop_assert!(readable, "an unreadable page was read");
                    prop_assert_eq!(page.results.len(), rows);
                }
                Err(e) => {
                    prop_assert!(!readable, "a readable page failed: {e}");
                    prop_assert!(matches!(e, NetboxError::Decode { .. }), "{e:?}");
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Fixed broken answers, both clients
// ---------------------------------------------------------------------------------------------

/// 50 MB: far beyond any real field, small enough for a test.
const HUGE: usize = 50 << 20;

fn decode_message(e: &ProxmoxError) -> String {
    match e {
        ProxmoxError::Decode { message, .. } => message.clone(),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn proxmox_garbage_truncated_and_wrong_types_are_clear_errors() {
    let rig = Rig::new();
    let pve = pve_client(rig.addr);
    let run = |body: &str| {
        rig.answer(Canned::json(200, body.to_owned()));
        rig.rt.block_on(pve.vm_resources())
    };
    let cases = [
        ("<html>Bad Gateway</html>", "not JSON"),
        (r#"{"data":[{"vmid":100,"name":"web"#, "not JSON"),
        ("", "not JSON"),
        ("[1,2]", "not a JSON object"),
        (r#"{"total":3}"#, "no `data` key"),
        (r#"{"data":{"vmid":100}}"#, "expected a list, got an object"),
        (r#"{"data":"qemu/100"}"#, "expected a list, got a string"),
        (r#"{"data":[1]}"#, "a row is not an object"),
    ];
    for (body, want) in cases {
        let e = run(body).expect_err(body);
        let m = decode_message(&e);
        assert!(m.contains(want), "{body}: {m}");
        assert!(
            e.to_string()
                .starts_with("proxmox pve-a: cluster/resources: unexpected answer"),
            "{e}"
        );
    }
    // `data: null` is "no guests" (what PVE sends for an empty list on some paths).
    assert_eq!(run(r#"{"data":null}"#).unwrap().len(), 0);

    rig.answer(Canned::json(200, r#"{"data":[]}"#));
    let e = rig
        .rt
        .block_on(pve.guest_config("pve1", GuestKind::Lxc, 101))
        .unwrap_err();
    assert!(decode_message(&e).contains("expected an object, got a list"));
    let e = rig.rt.block_on(pve.cluster_status()).unwrap_err();
    assert!(decode_message(&e).contains("neither a cluster nor a node row"));
    rig.answer(Canned::json(200, r#"{"data":{"version":9}}"#));
    // Lenient: a number where a string belongs is read as its text.
    assert_eq!(rig.rt.block_on(pve.version()).unwrap().version, "9");
    rig.answer(Canned::json(200, r#"{"data":"9.0"}"#));
    let e = rig.rt.block_on(pve.version()).unwrap_err();
    assert!(matches!(e, ProxmoxError::Decode { .. }), "{e:?}");
}

#[test]
fn proxmox_fifty_megabyte_fields() {
    let rig = Rig::new();
    let pve = pve_client(rig.addr);
    // A 50 MB guest name is data, not a failure: it is read whole.
    let name = "n".repeat(HUGE);
    rig.answer(Canned::json(
        200,
        format!(r#"{{"data":[{{"vmid":100,"type":"qemu","node":"pve1","name":"{name}"}}]}}"#),
    ));
    let rows = rig.rt.block_on(pve.vm_resources()).unwrap();
    assert_eq!(rows[0]["name"].as_str().map(str::len), Some(HUGE));
    // A 50 MB error message is clipped to a readable line.
    rig.answer(Canned::json(
        500,
        format!(r#"{{"data":null,"message":"{name}"}}"#),
    ));
    let e = rig.rt.block_on(pve.vm_resources()).unwrap_err();
    assert!(matches!(e, ProxmoxError::Server { .. }), "{e:.100}");
    let text = e.to_string();
    assert!(
        text.chars().count() < MAX_ERROR_TEXT_CHARS,
        "{}",
        text.len()
    );
    assert!(text.ends_with("more bytes not shown)"), "{text:.100}");
}

#[test]
fn netbox_garbage_truncated_and_null_results_are_clear_errors() {
    let rig = Rig::new();
    let nb = nb_client(rig.addr);
    let list = || {
        rig.rt
            .block_on(nb.list_page("virtualization/virtual-machines", &[], &["id"], 1000, 0))
    };
    let cases = [
        ("garbage \u{0} bytes", "not JSON"),
        (r#"{"count":1,"results":[{"id":1,"name":"we"#, "not JSON"),
        (
            r#"{"count":1,"next":null,"results":null}"#,
            "without `results`",
        ),
        (r#"{"count":1}"#, "without `results`"),
        (r#"{"results":{"id":1}}"#, "without `results`"),
        (r#"{"results":[1]}"#, "expected an object"),
        ("[]", "expected an object"),
    ];
    for (body, want) in cases {
        rig.answer(Canned::json(200, body));
        let e = list().expect_err(body);
        assert!(matches!(e, NetboxError::Decode { .. }), "{body}: {e:?}");
        assert!(e.to_string().contains(want), "{body}: {e}");
        assert!(
            e.to_string()
                .starts_with("netbox: GET api/virtualization/virtual-machines/: unexpected answer"),
            "{e}"
        );
    }
    // Wrong types for `count` and `next` do not fail a page whose rows are readable.
    rig.answer(Canned::json(
        200,
        r#"{"count":"many","next":7,"results":[{"id":1}]}"#,
    ));
    let page = list().unwrap();
    assert_eq!(
        (page.count, page.has_next, page.results.len()),
        (None, true, 1)
    );

    rig.answer(Canned::json(200, "not json"));
    let e = rig.rt.block_on(nb.status()).unwrap_err();
    assert!(matches!(e, NetboxError::Decode { .. }), "{e:?}");
    rig.answer(Canned::json(201, r#"{"id":1"#));
    let e = rig
        .rt
        .block_on(nb.create_bulk("virtualization/virtual-machines", &[json!({})], &[]))
        .unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");
    rig.answer(Canned::json(201, r#"{"id":1}"#));
    let e = rig
        .rt
        .block_on(nb.create_bulk("virtualization/virtual-machines", &[json!({})], &[]))
        .unwrap_err();
    assert!(e.to_string().contains("expected a list"), "{e}");
}

#[test]
fn netbox_listings_that_claim_absurd_sizes_are_refused_not_followed() {
    let rig = Rig::new();
    let nb = nb_client(rig.addr);
    let list_all = || {
        rig.rt
            .block_on(nb.list_all("virtualization/virtual-machines", &[], &["id"]))
    };
    // A count of 2^64 - 1 would plan that many page offsets.
    rig.answer(Canned::json(
        200,
        r#"{"count":18446744073709551615,"next":"x","results":[{"id":1}]}"#,
    ));
    let e = list_all().expect_err("absurd count");
    assert!(e.to_string().contains("claims 18446744073709551615"), "{e}");
    // No count and a `next` on every page (the same rows each time) would be followed forever.
    rig.answer(Canned::json(
        200,
        r#"{"count":null,"next":"x","results":[{"id":1},{"id":2}]}"#,
    ));
    let e = list_all().expect_err("endless next");
    assert!(
        e.to_string().contains("only repeats rows already read"),
        "{e}"
    );
}

#[test]
fn netbox_fifty_megabyte_fields() {
    let rig = Rig::new();
    let nb = nb_client(rig.addr);
    let comments = "c".repeat(HUGE);
    rig.answer(Canned::json(
        200,
        format!(r#"{{"count":1,"next":null,"results":[{{"id":1,"comments":"{comments}"}}]}}"#),
    ));
    let page = rig
        .rt
        .block_on(nb.list_page("virtualization/virtual-machines", &[], &[], 1000, 0))
        .unwrap();
    assert_eq!(
        page.results[0]["comments"].as_str().map(str::len),
        Some(HUGE)
    );
    // A validation error echoing a 50 MB value is clipped to a readable line; the parsed body
    // keeps it all.
    rig.answer(Canned::json(
        400,
        format!(
            r#"{{"comments":["Ensure this field has no more than 10 characters: {comments}"]}}"#
        ),
    ));
    let e = rig
        .rt
        .block_on(nb.create(
            "virtualization/virtual-machines",
            &json!({"name": "x"}),
            &[],
        ))
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, NetboxError::Validation { .. }), "{text:.100}");
    assert!(
        text.chars().count() < MAX_ERROR_TEXT_CHARS,
        "{}",
        text.len()
    );
    assert!(text.contains("comments: Ensure this field"), "{text:.200}");
    let body = e.body().unwrap();
    assert!(body.fields[0].1[0].len() > HUGE);
}

// ---------------------------------------------------------------------------------------------
// Bulk bodies stay under NetBox's limit
// ---------------------------------------------------------------------------------------------

/// A fake NetBox VM endpoint for bulk writes: refuses bodies over 2.5 MB like NetBox (500
/// `RequestDataTooBig`), answers bulk POST/PATCH with the objects, and records every body size.
/// One request the fake saw: method, body bytes, items, status answered.
type Seen = (String, usize, usize, u16);

#[derive(Clone, Default)]
struct BulkFake {
    seen: Arc<Mutex<Vec<Seen>>>,
    next_id: Arc<Mutex<u64>>,
}

fn bulk_fake(state: BulkFake) -> Router {
    async fn handler(State(s): State<BulkFake>, method: AxumMethod, body: Bytes) -> Response {
        let items: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
        let record = |status: u16| {
            s.seen
                .lock()
                .unwrap()
                .push((method.to_string(), body.len(), items.len(), status));
        };
        if body.len() > NETBOX_BODY_LIMIT {
            record(500);
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "application/json")],
                r#"{"error":"Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.","exception":"RequestDataTooBig","netbox_version":"4.7.3","python_version":"3.13.5"}"#,
            )
                .into_response();
        }
        let out: Vec<Value> = items
            .iter()
            .map(|item| match item.get("id") {
                Some(id) => json!({"id": id}),
                None => {
                    let mut n = s.next_id.lock().unwrap();
                    *n += 1;
                    json!({"id": *n})
                }
            })
            .collect();
        let status = if method == AxumMethod::POST { 201 } else { 200 };
        record(status);
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            Value::Array(out).to_string(),
        )
            .into_response()
    }
    Router::new()
        .route(
            "/api/virtualization/virtual-machines/",
            axum::routing::post(handler).patch(handler),
        )
        // Like NetBox, the fake reads any body and answers a too large one itself.
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(state)
}

fn change(field: &str, new: Value) -> FieldChange {
    FieldChange {
        field: field.into(),
        old: JsonText::null(),
        new: JsonText::from_value(&new),
    }
}

fn vm_op(kind: OpKind, vmid: u32, netbox_id: Option<u64>, comments: &str) -> Operation {
    Operation {
        op: kind,
        scope: format!("pve-a/pve1/{vmid}"),
        cluster: Some("pve-a".into()),
        cluster_id: Some(3),
        vmid: Some(vmid),
        kind: None,
        netbox_id,
        name: Some(format!("vm{vmid}")),
        last_updated: None,
        changes: vec![
            change("name", json!(format!("vm{vmid}"))),
            change("comments", json!(comments)),
            change("custom_fields.proxmox_vm_id", json!(vmid)),
        ]
        .into(),
        object: None,
        journal: None,
        children: Default::default(),
        child_ids: Default::default(),
    }
}

/// A window of VMs with ~400 KB comments each (4.8 MB in all, per method) is written in bulk
/// requests that each stay under `MAX_BULK_BODY_BYTES` (so under NetBox's 2.5 MB), and every
/// VM is written. Sending the window as one body, or splitting only after NetBox refuses it,
/// fails the size check.
#[test]
fn bulk_bodies_are_split_under_the_limit_and_all_items_are_written() {
    const VMS: u32 = 12;
    let comments = "é".repeat(200_000); // 400 KB of UTF-8
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = BulkFake::default();
    let addr = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = bulk_fake(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        addr
    });
    let nb = nb_client(addr);
    let mut ops: Vec<Operation> = (0..VMS)
        .map(|i| vm_op(OpKind::Create, 100 + i, None, &comments))
        .collect();
    ops.extend((0..VMS).map(|i| {
        vm_op(
            OpKind::Update,
            200 + i,
            Some(1000 + u64::from(i)),
            &comments,
        )
    }));
    let preflight = Preflight {
        cluster_ids: [("pve-a".to_owned(), 3)].into_iter().collect(),
        ..Preflight::default()
    };
    let progress = Progress::quiet();
    let bar = progress.phase("dispatch", None);
    let outcome = rt.block_on(dispatch(
        &nb,
        &ops,
        &preflight,
        DispatchSettings {
            write_window: 100,
            write_concurrency: 1,
            bulk: true,
        },
        &bar,
    ));

    let seen = fake.seen.lock().unwrap().clone();
    let total_body: usize = seen.iter().map(|s| s.1).sum();
    // Each method's items alone are well over NetBox's limit: the window must be split.
    assert!(total_body > 2 * NETBOX_BODY_LIMIT, "{total_body}");
    for (method, bytes, items, status) in &seen {
        let what = format!("{method} body of {bytes} bytes ({items} items, answered {status})");
        assert!(*bytes < NETBOX_BODY_LIMIT, "{what}");
        assert!(*bytes <= MAX_BULK_BODY_BYTES, "{what}");
        assert!(*items >= 1, "{what}");
    }
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(outcome.done, 2 * VMS as usize);
    assert_eq!(outcome.vm_ids.len(), 2 * VMS as usize);
    for method in ["POST", "PATCH"] {
        let requests: Vec<_> = seen.iter().filter(|s| s.0 == method).collect();
        let items: usize = requests.iter().map(|s| s.2).sum();
        assert_eq!(items, VMS as usize, "{method}: every item sent once");
        assert!(
            requests.len() >= 3 && requests.len() < VMS as usize,
            "{method}: {} requests: split, but still in bulk",
            requests.len()
        );
    }
}
