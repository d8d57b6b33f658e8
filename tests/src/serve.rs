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

/// Binds `127.0.0.1:port` (0 = any free port).
pub(crate) fn bind_loopback(port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(("127.0.0.1", port))?;
    l.set_nonblocking(true)?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

/// Serves `router` over plain HTTP until `handle` shuts down.
pub(crate) fn spawn_http(listener: TcpListener, router: Router, handle: Handle) {
    tokio::spawn(async move {
        let server = axum_server::from_tcp(listener).handle(handle);
        if let Err(e) = server.serve(MakeDropper(router)).await {
            tracing::error!(error = %e, "simulator http server stopped");
        }
    });
}

/// Serves `router` over HTTPS with `tls` until `handle` shuts down.
pub(crate) fn spawn_https(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    handle: Handle,
) {
    tokio::spawn(async move {
        let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
        let server = axum_server::tls_rustls::from_tcp_rustls(listener, config).handle(handle);
        if let Err(e) = server.serve(MakeDropper(router)).await {
            tracing::error!(error = %e, "simulator https server stopped");
        }
    });
}
