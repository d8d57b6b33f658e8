//! HTTP plumbing against fake servers on 127.0.0.1: retries honour `Retry-After`, a POST is
//! never retried once it may have been received, connection failures before sending are
//! retried, TLS pinning accepts the right certificate and refuses a wrong one, a CA file works,
//! and secrets stay out of Debug output.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use pve2netbox::clients::http::{
    Fingerprint, HttpClient, HttpErrorKind, HttpSettings, Request, RetryPolicy, TlsMode,
};
use reqwest::{Method, Url};

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A retry policy with short steps so the tests stay quick (a test never asserts on time).
fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_attempts: 5,
        budget: Duration::from_secs(10),
        ..RetryPolicy::default()
    }
}

fn client(base: &str, tls: TlsMode) -> HttpClient {
    let mut settings = HttpSettings::new("test", Url::parse(base).unwrap(), tls);
    settings.retry = quick_policy();
    settings.request_timeout = Duration::from_secs(5);
    HttpClient::new(settings, None).unwrap()
}

#[tokio::test]
async fn get_retries_after_503_and_honours_retry_after() {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let router = Router::new().route(
        "/thing",
        get(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", "1".parse().unwrap());
                    (StatusCode::SERVICE_UNAVAILABLE, headers, "busy").into_response()
                } else {
                    (StatusCode::OK, "done").into_response()
                }
            }
        }),
    );
    let addr = serve(router).await;
    let http = client(&format!("http://{addr}/"), TlsMode::default());
    let resp = http
        .send(&Request::new(Method::GET, "thing"))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.attempts, 2);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // The wait it chose is recorded (no wall-clock assertions in tests): exactly Retry-After.
    assert_eq!(http.counters().snapshot().retry_wait_ms, 1000);
    assert_eq!(http.counters().snapshot().reads, 2);
    assert_eq!(http.counters().snapshot().writes, 0);
}

#[tokio::test]
async fn retry_after_beyond_the_budget_gives_up_at_once() {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let router = Router::new().route(
        "/thing",
        get(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async {
                let mut headers = HeaderMap::new();
                headers.insert("retry-after", "3600".parse().unwrap());
                (StatusCode::TOO_MANY_REQUESTS, headers, "slow down")
            }
        }),
    );
    let addr = serve(router).await;
    let http = client(&format!("http://{addr}/"), TlsMode::default());
    let resp = http
        .send(&Request::new(Method::GET, "thing"))
        .await
        .unwrap();
    assert_eq!(resp.status, 429);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        http.counters().snapshot().retry_wait_ms,
        0,
        "a wait past the budget is not waited"
    );
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_the_attempt_limit() {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let router = Router::new().route(
        "/thing",
        any(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::BAD_GATEWAY }
        }),
    );
    let addr = serve(router).await;
    let http = client(&format!("http://{addr}/"), TlsMode::default());
    let resp = http
        .send(&Request::new(Method::PATCH, "thing"))
        .await
        .unwrap();
    assert_eq!(resp.status, 502);
    assert_eq!(resp.attempts, 5);
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    assert!(
        resp.retry_note().contains("gave up after 5 attempts"),
        "{}",
        resp.retry_note()
    );
}

#[tokio::test]
async fn post_is_not_retried_after_a_gateway_error() {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let router = Router::new().route(
        "/things/",
        any(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::SERVICE_UNAVAILABLE }
        }),
    );
    let addr = serve(router).await;
    let http = client(&format!("http://{addr}/"), TlsMode::default());
    let req = Request::new(Method::POST, "things/").json(&serde_json::json!({"name": "vm"}));
    let err = http.send(&req).await.unwrap_err();
    assert_eq!(err.kind, HttpErrorKind::Ambiguous);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(err.to_string().contains("look the object up"), "{err}");
    assert_eq!(http.counters().snapshot().writes, 1);
}

#[tokio::test]
async fn post_is_retried_after_429() {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let router = Router::new().route(
        "/things/",
        any(move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", "0".parse().unwrap());
                    (StatusCode::TOO_MANY_REQUESTS, headers, "").into_response()
                } else {
                    (StatusCode::CREATED, "{\"id\":1}").into_response()
                }
            }
        }),
    );
    let addr = serve(router).await;
    let http = client(&format!("http://{addr}/"), TlsMode::default());
    let req = Request::new(Method::POST, "things/").json(&serde_json::json!({"name": "vm"}));
    let resp = http.send(&req).await.unwrap();
    assert_eq!(resp.status, 201);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// A POST answered with what the policy calls rolled back (NetBox: a deadlock 500) is sent
/// again; under the default policy the same answer is returned as is, after one attempt.
#[tokio::test]
async fn post_is_retried_when_the_policy_says_it_rolled_back() {
    fn deadlock(status: reqwest::StatusCode, _: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
        status == 500 && body.starts_with(b"deadlock")
    }
    for (rolled_back, attempts, last) in [(Some(deadlock as _), 2, 201), (None, 1, 500)] {
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = hits.clone();
        let router = Router::new().route(
            "/things/",
            any(move || {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        (StatusCode::INTERNAL_SERVER_ERROR, "deadlock detected").into_response()
                    } else {
                        (StatusCode::CREATED, "{\"id\":1}").into_response()
                    }
                }
            }),
        );
        let addr = serve(router).await;
        let mut settings = HttpSettings::new(
            "test",
            Url::parse(&format!("http://{addr}/")).unwrap(),
            TlsMode::default(),
        );
        settings.retry = quick_policy();
        if let Some(f) = rolled_back {
            settings.retry.rolled_back = f;
        }
        let http = HttpClient::new(settings, None).unwrap();
        let req = Request::new(Method::POST, "things/").json(&serde_json::json!({"name": "vm"}));
        let resp = http.send(&req).await.unwrap();
        assert_eq!(resp.status, last);
        assert_eq!(hits.load(Ordering::SeqCst), attempts);
    }
}

/// A server that reads a request and closes the connection without answering: the request
/// may have been applied.
async fn dropping_server() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 8192];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn dropped_connection_after_post_is_ambiguous_and_not_retried() {
    let (addr, hits) = dropping_server().await;
    let http = client(&format!("http://{addr}/"), TlsMode::default());
    let req = Request::new(Method::POST, "things/").json(&serde_json::json!({"name": "vm"}));
    let err = http.send(&req).await.unwrap_err();
    assert_eq!(err.kind, HttpErrorKind::Ambiguous, "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dropped_connection_after_get_is_retried() {
    let (addr, hits) = dropping_server().await;
    let http = client(&format!("http://{addr}/"), TlsMode::default());
    let err = http
        .send(&Request::new(Method::GET, "things/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, HttpErrorKind::Transport, "{err}");
    assert_eq!(err.attempts, 5);
    assert!(hits.load(Ordering::SeqCst) >= 5);
}

#[tokio::test]
async fn refused_connection_is_retried_even_for_post() {
    // Bind and drop a listener to get a port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let http = client(&format!("http://{addr}/"), TlsMode::default());
    let req = Request::new(Method::POST, "things/").json(&serde_json::json!({}));
    let err = http.send(&req).await.unwrap_err();
    assert_eq!(err.kind, HttpErrorKind::Connect, "{err}");
    assert_eq!(
        err.attempts, 5,
        "a refused connection never reached the server: safe to retry"
    );
}

// ------------------------------------------------------------------------------------------
// TLS

struct Pki {
    ca_pem: String,
    leaf_der: Vec<u8>,
    addr: SocketAddr,
}

/// Serves HTTPS on 127.0.0.1 with a leaf certificate (SANs `localhost`, `127.0.0.1`) signed by
/// a fresh CA.
async fn tls_server() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_config));
    let router = Router::new().route("/api2/json/version", get(|| async { "{\"data\":{}}" }));
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, config)
            .serve(router.into_make_service())
            .await
            .unwrap();
    });
    Pki {
        ca_pem: ca.pem(),
        leaf_der: leaf.der().to_vec(),
        addr,
    }
}

#[tokio::test]
async fn fingerprint_pin_accepts_the_right_certificate() {
    let pki = tls_server().await;
    let pin = Fingerprint::of_der(&pki.leaf_der);
    let http = client(
        &format!("https://127.0.0.1:{}/", pki.addr.port()),
        TlsMode::Pin(pin),
    );
    let resp = http
        .send(&Request::new(Method::GET, "api2/json/version"))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    // Also by a host name the certificate was not checked for: the pin alone decides.
    let http = client(
        &format!("https://localhost:{}/", pki.addr.port()),
        TlsMode::Pin(pin),
    );
    assert_eq!(
        http.send(&Request::new(Method::GET, "api2/json/version"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn wrong_fingerprint_refuses_the_connection() {
    let pki = tls_server().await;
    let wrong = Fingerprint([0xAB; 32]);
    let http = client(
        &format!("https://127.0.0.1:{}/", pki.addr.port()),
        TlsMode::Pin(wrong),
    );
    let err = http
        .send(&Request::new(Method::GET, "api2/json/version"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, HttpErrorKind::Connect, "{}", err.detail());
    let detail = err.detail();
    assert!(detail.contains("fingerprint mismatch"), "{detail}");
    assert!(
        detail.contains(&Fingerprint::of_der(&pki.leaf_der).to_string()),
        "{detail}"
    );
}

#[tokio::test]
async fn default_verification_refuses_an_unknown_ca_and_ca_file_trusts_it() {
    let pki = tls_server().await;
    let url = format!("https://127.0.0.1:{}/", pki.addr.port());
    let http = client(&url, TlsMode::default());
    let err = http
        .send(&Request::new(Method::GET, "api2/json/version"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, HttpErrorKind::Connect);
    assert!(
        err.detail().to_lowercase().contains("certificate"),
        "{}",
        err.detail()
    );

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("pve-root-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let http = client(
        &url,
        TlsMode::Verify {
            ca_file: Some(ca_file),
        },
    );
    assert_eq!(
        http.send(&Request::new(Method::GET, "api2/json/version"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn insecure_accepts_any_certificate() {
    let pki = tls_server().await;
    let http = client(
        &format!("https://127.0.0.1:{}/", pki.addr.port()),
        TlsMode::Insecure,
    );
    assert_eq!(
        http.send(&Request::new(Method::GET, "api2/json/version"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[test]
fn authorization_header_is_not_in_debug_output() {
    let settings = HttpSettings::new(
        "test",
        Url::parse("http://127.0.0.1:1/").unwrap(),
        TlsMode::default(),
    );
    let http = HttpClient::new(
        settings,
        Some(reqwest::header::HeaderValue::from_static(
            "Token s3cr3t-value",
        )),
    )
    .unwrap();
    assert!(!format!("{http:?}").contains("s3cr3t-value"));
}
