use crate::KafkaTransportError;
use rdkafka::bindings as rdsys;
use rdkafka::client::Client;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// librdkafka's in-process mock cluster: a zero-setup Kafka for the demo and
/// fast tests (feature `embedded`). Not a substitute for a real broker in CI.
///
/// The cluster lives on a thread of its own, held through rdkafka's
/// [`MockCluster`](rdkafka::mocking::MockCluster); this handle only sends it
/// requests, so it can be shared between threads and tasks. The
/// consumer-group join delay is set to 0 (the mock's default waits 3 s
/// before the first rebalance of every group).
pub struct EmbeddedKafka {
    bootstrap: String,
    requests: Option<mpsc::Sender<TopicRequest>>,
    owner: Option<JoinHandle<()>>,
}

/// Creates one topic on the cluster's thread and answers with the outcome.
struct TopicRequest {
    name: String,
    partitions: i32,
    reply: mpsc::Sender<Result<(), String>>,
}

impl EmbeddedKafka {
    /// Starts a single-broker mock cluster on a loopback port.
    pub fn start() -> Result<Self, KafkaTransportError> {
        let (started, starting) = mpsc::channel();
        let (requests, incoming) = mpsc::channel::<TopicRequest>();
        let owner = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || host_cluster(started, incoming))
            .map_err(|e| KafkaTransportError::Mock(format!("cannot start its thread: {e}")))?;
        let bootstrap = starting.recv().map_err(|_| KafkaTransportError::Mock("its thread ended while starting".into()))?.map_err(KafkaTransportError::Mock)?;
        Ok(EmbeddedKafka { bootstrap, requests: Some(requests), owner: Some(owner) })
    }

    /// Creates the topics of `data_types` (and their `.dlq` topics) where
    /// missing: the mock cluster does not implement the admin API that
    /// [`crate::ensure_topics`] uses.
    pub fn create_topics(&self, config: &crate::KafkaConfig, data_types: &[hr_core::DataType]) -> Result<(), KafkaTransportError> {
        for topic in data_types.iter().flat_map(|t| config.topics_to_read(*t)) {
            for name in [format!("{topic}.dlq"), topic] {
                let (reply, answer) = mpsc::channel();
                let request = TopicRequest { name: name.clone(), partitions: config.partitions, reply };
                let gone = || KafkaTransportError::Topic { topic: name.clone(), detail: "the embedded cluster has stopped".into() };
                self.requests.as_ref().ok_or_else(gone)?.send(request).map_err(|_| gone())?;
                answer.recv().map_err(|_| gone())?.map_err(|detail| KafkaTransportError::Topic { topic: name.clone(), detail })?;
            }
        }
        Ok(())
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

/// The cluster's thread: starts it, reports its bootstrap servers, serves
/// topic requests until the handle is dropped, then destroys it.
fn host_cluster(started: mpsc::Sender<Result<String, String>>, requests: mpsc::Receiver<TopicRequest>) {
    // `test.mock.num.brokers` makes this client own a mock cluster, destroyed with it.
    let client: BaseProducer = match ClientConfig::new().set("test.mock.num.brokers", "1").set("log_level", "3").create() {
        Ok(client) => client,
        Err(e) => return drop(started.send(Err(e.to_string()))),
    };
    let Some(cluster) = client.client().mock_cluster() else {
        return drop(started.send(Err("librdkafka created no mock cluster".into())));
    };
    start_groups_without_delay(client.client());
    if started.send(Ok(cluster.bootstrap_servers())).is_err() {
        return;
    }
    for request in requests {
        // Asking for a topic that exists (another audience's call) is not an error, as with ensure_topics.
        let outcome = match cluster.create_topic(&request.name, request.partitions, 1) {
            Err(rdkafka::error::KafkaError::MockCluster(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => Ok(()),
            other => other.map_err(|e| e.to_string()),
        };
        let _ = request.reply.send(outcome);
    }
}

/// The one setting rdkafka's mock wrapper does not offer: without it every
/// new consumer group waits 3 s for more members before its first rebalance.
fn start_groups_without_delay(client: &Client<DefaultProducerContext>) {
    // SAFETY: the client is alive for the call and owns the mock cluster the
    // pointer names (checked non-null); the setter only stores an integer.
    unsafe {
        let cluster = rdsys::rd_kafka_handle_mock_cluster(client.native_ptr());
        if !cluster.is_null() {
            rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        // Closing the channel ends the cluster's thread, which destroys it.
        drop(self.requests.take());
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka").field("bootstrap", &self.bootstrap).finish()
    }
}
