//! Whether the brokers answer, watched in the background so a system can
//! say so at once (in its log and its `/healthz`) instead of hanging.

use crate::{KafkaConfig, KafkaTransportError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a [`BrokerWatch`] last saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerStatus {
    /// Not asked yet.
    Unknown,
    /// The brokers answered a metadata request.
    Reachable,
    /// They did not; why.
    Unreachable(String),
}

/// Asks the brokers for metadata every interval on a task of its own, logs
/// each change as a warning (when they stop answering, and when they answer
/// again: both matter to an operator reading warnings only) and keeps the
/// latest [`BrokerStatus`]. Dropping it stops the task.
#[derive(Debug)]
pub struct BrokerWatch {
    status: watch::Receiver<BrokerStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl BrokerWatch {
    /// Starts watching `config`'s brokers, asking every `every` (each ask
    /// times out after `every`, at most 3 s). Needs a Tokio runtime.
    pub fn start(config: &KafkaConfig, every: Duration) -> Result<BrokerWatch, KafkaTransportError> {
        let client: BaseConsumer =
            config.client_config().create().map_err(|source| KafkaTransportError::Client { role: "broker watch", brokers: config.brokers.clone(), source })?;
        let client = Arc::new(client);
        let (tx, status) = watch::channel(BrokerStatus::Unknown);
        let brokers = config.brokers.clone();
        let task = tokio::spawn(async move {
            loop {
                let now = ask(&client, every.min(Duration::from_secs(3))).await;
                let before = tx.send_replace(now.clone());
                log_change(&brokers, &before, &now);
                tokio::time::sleep(every).await;
            }
        });
        Ok(BrokerWatch { status, task })
    }

    /// The latest status.
    pub fn status(&self) -> BrokerStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every later status (for waiting on a change).
    pub fn subscribe(&self) -> watch::Receiver<BrokerStatus> {
        self.status.clone()
    }
}

impl Drop for BrokerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn ask(client: &Arc<BaseConsumer>, timeout: Duration) -> BrokerStatus {
    let client = client.clone();
    match tokio::task::spawn_blocking(move || client.fetch_metadata(None, timeout)).await {
        Ok(Ok(_)) => BrokerStatus::Reachable,
        Ok(Err(e)) => BrokerStatus::Unreachable(format!("no answer to a metadata request within {} ms: {e}", timeout.as_millis())),
        Err(join) => BrokerStatus::Unreachable(format!("the metadata request did not complete: {join}")),
    }
}

fn log_change(brokers: &str, before: &BrokerStatus, now: &BrokerStatus) {
    match (before, now) {
        (BrokerStatus::Reachable, BrokerStatus::Unreachable(reason)) | (BrokerStatus::Unknown, BrokerStatus::Unreachable(reason)) => {
            tracing::warn!(brokers, reason = %reason, "Kafka brokers unreachable; retrying")
        }
        (BrokerStatus::Unreachable(_), BrokerStatus::Reachable) => tracing::warn!(brokers, "Kafka brokers reachable again"),
        _ => {}
    }
}
