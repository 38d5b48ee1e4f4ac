//! # hr-transport-rest
//!
//! Consistent, synchronous propagation over HTTP: [`RestPropagator`] calls
//! every target and returns only when each applied every change (or says
//! which target failed with what), and [`receiver`] builds the axum `Router`
//! a target system mounts in front of its [`hr_core::Sink`];
//! [`serve_receiver`] serves it with every limit of its [`ReceiverConfig`]
//! (token checked before any body byte is read, body size, concurrency,
//! in-flight bytes, header and request timeouts, connection cap).
//!
//! ```
//! use hr_core::{ChangeEnvelope, DataType, MasterData, MemorySink, Propagator, Sink};
//! use hr_transport_rest::{serve_receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget};
//! use std::sync::Arc;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let sink = Arc::new(MemorySink::default());
//! let config = ReceiverConfig::new(sink.clone(), vec![DataType::MasterData]).with_token("4f9c0a6b2e8d17f3a5c9e0b4d6f1a2c8").unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let url = format!("http://{}", listener.local_addr().unwrap());
//! tokio::spawn(serve_receiver(listener, config).unwrap());
//!
//! let target = RestTarget::new("erp", &url, vec![DataType::MasterData]).with_token("4f9c0a6b2e8d17f3a5c9e0b4d6f1a2c8");
//! let propagator = RestPropagator::new(RestConfig::new(vec![target])).unwrap();
//! let md = MasterData { set: "grade".into(), code: "G1".into(), name: "Staff".into(), attributes: Default::default() };
//! let change = ChangeEnvelope::upsert(DataType::MasterData, md.key(), 1, "hr", &md).unwrap();
//! let receipt = propagator.propagate(&[change]).await.unwrap();
//! assert!(receipt.is_applied(), "a REST target answers once it applied the batch");
//! assert_eq!(receipt.delivered().total("erp"), 1);
//! assert_eq!(sink.digest(DataType::MasterData).await.unwrap().count, 1);
//! # });
//! ```
#![warn(missing_docs)]

mod client;
mod idempotency;
mod openapi;
mod serve;
mod server;
mod strict;
mod token;

pub use client::{RestConfig, RestPropagator, RestTarget, RestTransportError};
pub use idempotency::MAX_IDEMPOTENCY_KEY_BYTES;
pub use serve::{serve_receiver, serve_tls_with_limits, serve_with_limits, ConnectionLimits, TlsError, TlsIdentity};
pub use server::{
    metrics_endpoint, receiver, HealthCheck, MetricsRender, ReceiverConfig, ReceiverError, BUCKETS_PATH, CHANGES_PATH, DIGEST_PATH, ENTRIES_PATH,
};
pub use token::{bearer_matches, check_token_strength, json_error, token_matches, unauthorized, WeakToken, MIN_TOKEN_BYTES};
