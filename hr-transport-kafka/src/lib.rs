//! # hr-transport-kafka
//!
//! Asynchronous, durable fan-out of HR change envelopes over Apache Kafka.
//!
//! * [`KafkaPropagator`] implements [`hr_core::Propagator`]: one topic per data
//!   type (`hr.v1.<type>`), keyed by record key so each key keeps its order,
//!   idempotent producer with `acks=all`; `propagate` returns only once the
//!   broker durably accepted every record. Its targets are consumer groups
//!   ([`KafkaConfig::group`]); the receipt's `applied()` waits until each
//!   group committed past the batch's offsets, which a subscriber does only
//!   after its sink applied them.
//! * [`KafkaSubscriber`] feeds a target system's [`hr_core::Sink`]: one consumer
//!   group per system, offsets stored only after the sink applied the batch
//!   (at-least-once; the sink's version rule makes it exactly-once in effect),
//!   poison records to `<topic>.dlq`.
//! * [`wait_until_applied`] waits until given groups consumed everything
//!   produced by anyone, and [`group_lag`] reports how far behind they are.
//! * `EmbeddedKafka` (feature `embedded`) starts librdkafka's in-process mock
//!   cluster, so examples and fast tests run with nothing installed.
//!
//! ```
//! use hr_core::{ChangeEnvelope, DataType, MasterData, MemorySink, Propagator, Sink};
//! use hr_transport_kafka::{EmbeddedKafka, KafkaConfig, KafkaPropagator, KafkaSubscriber};
//! use std::sync::Arc;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let kafka = EmbeddedKafka::start().unwrap();
//! let config = KafkaConfig::new(kafka.bootstrap_servers());
//! kafka.create_topics(&config, &[DataType::MasterData]).unwrap(); // ensure_topics(...) on a real broker
//!
//! let sink = Arc::new(MemorySink::default());
//! let subscriber = KafkaSubscriber::start(&config, &config.group("erp"), &[DataType::MasterData], sink.clone()).unwrap();
//!
//! let md = MasterData { set: "md.category".into(), code: "C1".into(), name: "Food".into(), attributes: Default::default() };
//! let change = ChangeEnvelope::upsert(DataType::MasterData, md.key(), 1, "sales", &md).unwrap();
//! let propagator = KafkaPropagator::new(&config).unwrap().with_target("erp", &[DataType::MasterData]).unwrap();
//! let receipt = propagator.propagate(&[change]).await.unwrap(); // the broker holds it
//!
//! let applied = receipt.applied(std::time::Duration::from_secs(30)).await.unwrap(); // erp applied it
//! assert_eq!(applied.total("erp"), 1);
//! assert_eq!(sink.digest(DataType::MasterData).await.unwrap().count, 1);
//! subscriber.shutdown().await.unwrap();
//! # });
//! ```
#![warn(missing_docs)]
// KafkaError, which our errors carry as their source, is itself that large;
// these errors come from set-up and broker trouble, never once per record.
#![allow(clippy::result_large_err)]

mod config;
mod confirm;
mod dead_letters;
mod error;
mod health;
#[cfg(feature = "embedded")]
mod mock;
mod producer;
mod subscriber;
mod topics;

pub use config::KafkaConfig;
pub use confirm::{group_lag, wait_until_applied, GroupLag, LagMonitor};
pub use dead_letters::{read_dead_letters, replay_dead_letters, DeadLetter, DEAD_LETTER_READER};
pub use error::KafkaTransportError;
pub use health::{BrokerStatus, BrokerWatch};
#[cfg(feature = "embedded")]
pub use mock::EmbeddedKafka;
pub use producer::KafkaPropagator;
pub use subscriber::{KafkaSubscriber, SubscriberStats, DLQ_ERROR_HEADER, DLQ_PAYLOAD_BYTES_HEADER};
pub use topics::ensure_topics;
