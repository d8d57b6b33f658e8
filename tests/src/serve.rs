//! Binding and serving: plain HTTP (NetBox, control API) and HTTPS (Proxmox) through
//! axum-server, with a service wrapper that can drop a connection without answering.
//!
//! hyper closes a connection without writing a response when the service returns an error;
//! the wrapper turns a [`DropConnection`] response extension into such an error. That is how
//! "the write was committed but the client never saw the answer" is simulated.

use crate::service::DropConnection;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::Response;
use axum_server::Handle;
use std::convert::Infallible;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Error returned to hyper to make it drop the connection.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose by the simulator (drop_after_commit fault)")]
pub(crate) struct ConnectionDropped;

#[derive(Clone)]
pub(crate) struct Dropper(Router);

impl Service<Request<hyper::body::Incoming>> for Dropper {
    type Response = Response<Body>;
    type Error = ConnectionDropped;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, ConnectionDropped>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let mut router = self.0.clone();
        Box::pin(async move {
            let resp =
                match <Router as Service<Request>>::call(&mut router, req.map(Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
            if resp.extensions().get::<DropConnection>().is_some() {
                Err(ConnectionDropped)
            } else {
                Ok(resp)
            }
        })
    }
}

#[derive(Clone)]
struct MakeDropper(Router);

impl Service<SocketAddr> for MakeDropper {
    type Response = Dropper;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Dropper, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _addr: SocketAddr) -> Self::Future {
        std::future::ready(Ok(Dropper(self.0.clone())))
    }
}

/// Worker threads of each simulated service's runtime (the machine they run on has 2 cores).
const SERVICE_WORKER_THREADS: usize = 2;

/// The threads one simulated service runs on.
///
/// Why not the caller's runtime: a real NetBox and a real Proxmox are other machines (or at
/// least other processes). Sharing one tokio runtime made them queue behind each other: a
/// zero-latency Proxmox serving 100k configs kept the workers busy, so NetBox's pages waited
/// in the run queue and the client's snapshot looked slower than it was. Separate runtimes
/// still share the CPU, but the OS scheduler shares it fairly.
pub(crate) struct ServiceRuntime {
    /// Always `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
}

impl ServiceRuntime {
    /// Starts the runtime; `name` names its threads (seen in `top -H`, `perf`).
    pub(crate) fn new(name: &str) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SERVICE_WORKER_THREADS)
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.as_ref().expect("runtime lives until drop").handle()
    }
}

impl Drop for ServiceRuntime {
    fn drop(&mut self) {
        // Dropping a runtime waits for its blocking tasks, which panics inside async code (the
        // simulators are usually dropped there); stop it without waiting.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Binds `127.0.0.1:port` (0 = any free port).
pub(crate) fn bind_loopback(port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(("127.0.0.1", port))?;
    l.set_nonblocking(true)?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

/// Serves `router` over plain HTTP on `rt` until `handle` shuts down.
pub(crate) fn spawn_http(
    rt: &tokio::runtime::Handle,
    listener: TcpListener,
    router: Router,
    handle: Handle,
) {
    rt.spawn(async move {
        let server = axum_server::from_tcp(listener).handle(handle);
        if let Err(e) = server.serve(MakeDropper(router)).await {
            tracing::error!(error = %e, "simulator http server stopped");
        }
    });
}

/// Serves `router` over HTTPS with `tls` on `rt` until `handle` shuts down.
pub(crate) fn spawn_https(
    rt: &tokio::runtime::Handle,
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    handle: Handle,
) {
    rt.spawn(async move {
        let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
        let server = axum_server::tls_rustls::from_tcp_rustls(listener, config).handle(handle);
        if let Err(e) = server.serve(MakeDropper(router)).await {
            tracing::error!(error = %e, "simulator https server stopped");
        }
    });
}
