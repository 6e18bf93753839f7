//! Serving the router on a listener: plaintext or TLS (HTTP/2 and HTTP/1.1 either way), with
//! limits on slow and oversized request heads, on connections and on HTTP/2 streams per
//! connection (AV-4), and graceful shutdown.
//!
//! Each connection is served in its own task, TLS handshake included, so a slow client holds
//! up nobody else. On shutdown the listener closes at once; idle connections close, requests
//! and streams in flight finish, up to the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::router::router;
use crate::state::AppState;
use crate::tls::Tls;

/// How the listener serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// After shutdown begins, how long requests in flight may take.
    pub grace: Duration,
    /// `None`: plaintext, for a TLS-terminating proxy in front.
    pub tls: Option<Arc<Tls>>,
    /// A client must send a whole request head within this (slow-client defence).
    pub header_read_timeout: Duration,
    /// The largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// Connections served at once: past it the listener stops accepting until one ends, and
    /// new ones wait in the kernel's backlog (each connection holds buffers and a task).
    pub max_connections: usize,
    /// Requests in flight at once on one HTTP/2 connection.
    pub http2_max_streams: u32,
}

impl ServeOptions {
    pub fn plaintext(grace: Duration) -> Self {
        Self {
            grace,
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            http2_max_streams: 100,
        }
    }
}

/// A TLS client that never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` completes, then stops accepting and lets requests in flight finish
/// for up to the grace period before closing what is left.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let app = router(state);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(options.http2_max_streams)
        .keep_alive_interval(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    // The graceful watcher drains them; past the grace period `cut` drops what is left, and
    // the tracker tells when every one is gone.
    let connections = tokio_util::task::TaskTracker::new();
    let cut = tokio_util::sync::CancellationToken::new();
    loop {
        // A slot first: at the limit nothing more is accepted until a connection ends.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small SSE writes must not wait for the client's delayed ACK (Nagle's algorithm).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            app: app.clone(),
            peer,
            builder: builder.clone(),
            watcher: graceful.watcher(),
            first_request_timeout: HANDSHAKE_TIMEOUT + options.header_read_timeout,
        };
        let tls = options.tls.clone();
        let cut = cut.clone();
        connections.spawn(async move {
            tokio::select! {
                () = connection.serve(stream, tls) => {}
                () = cut.cancelled() => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = options.grace.as_secs(),
        "shutting down: draining requests"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!("shutdown grace period over: closing open connections");
        }
    }
    // A request still running is dropped here, so that what its end writes (its settlement at
    // the reservation, its log entry) is queued before the writers are closed after `serve`.
    cut.cancel();
    connections.close();
    if tokio::time::timeout(CUT_WAIT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after being closed");
    }
    Ok(())
}

/// How long closed connections may take to let go of their requests.
const CUT_WAIT: Duration = Duration::from_secs(1);

/// One accepted connection and what it needs to be served.
struct Connection {
    app: Router,
    peer: SocketAddr,
    builder: Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    /// The handshake and the first request's head must come within this.
    first_request_timeout: Duration,
}

impl Connection {
    async fn serve(self, stream: TcpStream, tls: Option<Arc<Tls>>) {
        let Self {
            app,
            peer,
            builder,
            watcher,
            first_request_timeout,
        } = self;
        // A connection that has sent no request within the head's time holds a slot for
        // nothing: the protocol detection and an HTTP/2 preface have no timeout of their own.
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first_request = {
            let asked = Arc::clone(&asked);
            async move {
                tokio::time::sleep(first_request_timeout).await;
                if asked.load(std::sync::atomic::Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            }
        };
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            asked.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let result = match tls {
            None => {
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                tokio::select! {
                    result = watcher.watch(connection) => result,
                    () = first_request => return,
                }
            }
            Some(tls) => {
                let handshake =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await;
                let stream = match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                tokio::select! {
                    result = watcher.watch(connection) => result,
                    () = first_request => return,
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(error = %error, "connection ended with an error");
        }
    }
}

/// Serves `/metrics` alone on `listener` (plaintext, for a scraper on a private network) until
/// the task is dropped.
pub async fn serve_metrics(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, crate::router::metrics_router(state)).await
}
