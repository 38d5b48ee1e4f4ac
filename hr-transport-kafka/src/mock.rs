use crate::KafkaTransportError;
use rdkafka::bindings as rdsys;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;
use std::ffi::CStr;

/// librdkafka's in-process mock cluster: a zero-setup Kafka for the demo and
/// fast tests. Not a substitute for a real broker in CI.
///
/// The consumer-group join delay is set to 0 (the mock's default waits 3 s).
pub struct EmbeddedKafka {
    cluster: *mut rdsys::rd_kafka_mock_cluster_t,
    bootstrap: String,
    // The cluster runs on this client's threads; it must outlive the cluster.
    _client: BaseProducer,
}

// The mock cluster is internally synchronized by librdkafka; the pointer is
// only used to configure it and to destroy it once.
unsafe impl Send for EmbeddedKafka {}
unsafe impl Sync for EmbeddedKafka {}

impl EmbeddedKafka {
    /// Starts a single-broker mock cluster on a loopback port.
    pub fn start() -> Result<Self, KafkaTransportError> {
        let client: BaseProducer = ClientConfig::new().set("log_level", "3").create().map_err(|e| KafkaTransportError::Mock(e.to_string()))?;
        // SAFETY: the client handle is valid for the call; the returned cluster
        // is destroyed in Drop before the client is dropped (field order).
        let cluster = unsafe { rdsys::rd_kafka_mock_cluster_new(client.client().native_ptr(), 1) };
        if cluster.is_null() {
            return Err(KafkaTransportError::Mock("rd_kafka_mock_cluster_new returned null".into()));
        }
        // SAFETY: cluster is non-null and owned by us.
        let bootstrap = unsafe {
            rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
            CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(cluster)).to_string_lossy().into_owned()
        };
        Ok(EmbeddedKafka { cluster, bootstrap, _client: client })
    }

    /// Creates the topics of `data_types` (and their `.dlq` topics): the mock
    /// cluster does not implement the admin API that [`crate::ensure_topics`] uses.
    pub fn create_topics(&self, config: &crate::KafkaConfig, data_types: &[hr_core::DataType]) -> Result<(), KafkaTransportError> {
        for t in data_types {
            for name in [config.topic(*t), format!("{}.dlq", config.topic(*t))] {
                let c_name = std::ffi::CString::new(name.clone()).map_err(|e| KafkaTransportError::Topic { topic: name.clone(), detail: e.to_string() })?;
                // SAFETY: cluster is valid for self's lifetime; the name is a valid C string.
                let err = unsafe { rdsys::rd_kafka_mock_topic_create(self.cluster, c_name.as_ptr(), config.partitions, 1) };
                if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return Err(KafkaTransportError::Topic { topic: name, detail: format!("{err:?}") });
                }
            }
        }
        Ok(())
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        // SAFETY: created in start(), destroyed exactly once here.
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.cluster) };
    }
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka").field("bootstrap", &self.bootstrap).finish()
    }
}
