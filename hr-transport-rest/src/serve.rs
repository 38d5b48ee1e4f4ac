//! Serving the receiver, and any other router, with connection-level limits.
//!
//! `axum::serve` accepts every connection and waits forever for its first
//! bytes (its HTTP version detection has no timeout) and for its headers, so
//! idle or trickling connections pile up. This serves plain HTTP/1.1 with
//! hyper directly: a header read timeout (which also closes idle keep-alive
//! connections), a small per-connection read buffer and a connection cap.

use crate::server::{receiver, ReceiverConfig, ReceiverError};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest read buffer of one connection, and so the largest request head
/// (hyper's default is about 400 kB; request heads here are well under 1 kB).
const CONNECTION_BUFFER: usize = 64 << 10;

/// What `axum::serve` cannot limit: how long a connection may take to send
/// a request head (and stay idle between requests), and how many
/// connections are served at once (more wait in the kernel's backlog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to send a request head; an idle connection is closed after it.
    pub header_read_timeout: Duration,
    /// Connections served at once (at least one).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// The receiver's defaults: 10 s to send a head, 256 connections.
    fn default() -> Self {
        ConnectionLimits { header_read_timeout: Duration::from_secs(10), max_connections: 256 }
    }
}

/// Serves any `app` on `listener` within `limits`: for the other HTTP
/// endpoints a deployment exposes (the hub's real-time API, a metrics
/// endpoint), which `axum::serve` would leave open to idle and trickling
/// connections. Returns the server as a future to spawn; it runs until
/// dropped.
pub fn serve_with_limits(listener: TcpListener, app: Router, limits: ConnectionLimits) -> impl Future<Output = ()> + Send + 'static {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    accept_loop(listener, app, connections, limits.header_read_timeout)
}

/// Serves [`receiver`]`(config)` on `listener` with every limit of `config`,
/// including those `axum::serve` cannot apply (header read timeout,
/// connection cap). Refuses a receiver without a token on anything but a
/// loopback address. Returns the server as a future to spawn; it runs until
/// dropped.
///
/// ```no_run
/// # async fn run(sink: std::sync::Arc<hr_core::SqliteSink>) -> Result<(), Box<dyn std::error::Error>> {
/// use hr_core::DataType;
/// use hr_transport_rest::{serve_receiver, ReceiverConfig};
/// let config = ReceiverConfig::new(sink, vec![DataType::Compensation]).with_token(&std::env::var("HR_SYSTEM_TOKEN")?)?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// tokio::spawn(serve_receiver(listener, config)?);
/// # Ok(()) }
/// ```
pub fn serve_receiver(listener: TcpListener, config: ReceiverConfig) -> Result<impl Future<Output = ()> + Send + 'static, ReceiverError> {
    let address = listener.local_addr()?;
    if config.token.is_none() && !address.ip().is_loopback() {
        return Err(ReceiverError::OpenOnNetwork(address));
    }
    let limits = ConnectionLimits { header_read_timeout: config.header_read_timeout, max_connections: config.max_connections };
    Ok(serve_with_limits(listener, receiver(config), limits))
}

async fn accept_loop(listener: TcpListener, app: Router, connections: Arc<Semaphore>, header_read_timeout: Duration) {
    loop {
        // Waiting for a free slot before accepting leaves extra callers in the kernel's backlog.
        let Ok(slot) = connections.clone().acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, app.clone(), header_read_timeout, slot));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "receiver cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, app: Router, header_read_timeout: Duration, _slot: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(CONNECTION_BUFFER)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "receiver connection ended with an error");
    }
}
