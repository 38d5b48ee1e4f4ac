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
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// The certificate chain and private key a server presents over TLS
/// (rustls; TLS 1.2 and 1.3, HTTP/1.1).
#[derive(Clone)]
pub struct TlsIdentity {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity([private key redacted])")
    }
}

/// A certificate or key that cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve TLS with {file}: {cause}")]
pub struct TlsError {
    /// The file concerned (certificate chain or key).
    pub file: String,
    /// What is wrong, without the key's content.
    pub cause: String,
}

impl TlsIdentity {
    /// Reads a PEM certificate chain (the server's certificate first) and a
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(certificate: &Path, key: &Path) -> Result<Self, TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let failed = |file: &Path, cause: String| TlsError { file: file.display().to_string(), cause };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
            .map_err(|e| failed(certificate, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| failed(certificate, e.to_string()))?;
        if chain.is_empty() {
            return Err(failed(certificate, "it holds no PEM certificate".into()));
        }
        // The key's own parse errors could quote it; say only that it is not one.
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|_| failed(key, "it holds no readable PEM private key".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| failed(certificate, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| failed(certificate, format!("the certificate and key do not go together: {e}")))?;
        Ok(TlsIdentity { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

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
    serve_tls_with_limits(listener, app, limits, None)
}

/// [`serve_with_limits`], over TLS with `tls` when given: the handshake
/// must finish within the header read timeout.
pub fn serve_tls_with_limits(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsIdentity>,
) -> impl Future<Output = ()> + Send + 'static {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    accept_loop(listener, app, connections, limits.header_read_timeout, tls)
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
    let tls = config.tls.clone();
    Ok(serve_tls_with_limits(listener, receiver(config), limits, tls))
}

async fn accept_loop(listener: TcpListener, app: Router, connections: Arc<Semaphore>, header_read_timeout: Duration, tls: Option<TlsIdentity>) {
    loop {
        // Waiting for a free slot before accepting leaves extra callers in the kernel's backlog.
        let Ok(slot) = connections.clone().acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                match tls.clone() {
                    None => tokio::spawn(serve_connection(stream, app, header_read_timeout, slot)),
                    Some(tls) => tokio::spawn(async move {
                        // A caller that never finishes its handshake holds a slot no longer than one that never sends its head.
                        match tokio::time::timeout(header_read_timeout, tls.acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => serve_connection(stream, app, header_read_timeout, slot).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }),
                };
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "receiver cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection<S>(stream: S, app: Router, header_read_timeout: Duration, _slot: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
