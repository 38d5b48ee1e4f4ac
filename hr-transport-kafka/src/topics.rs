use crate::{KafkaConfig, KafkaTransportError};
use hr_core::DataType;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// Creates the topics of `data_types` (and their `.dlq` topics) where missing.
///
/// Data topics are log-compacted: the latest envelope per key stays, so a new
/// target system can bootstrap the full state by reading from the beginning.
pub async fn ensure_topics(config: &KafkaConfig, data_types: &[DataType]) -> Result<(), KafkaTransportError> {
    let admin: AdminClient<DefaultClientContext> =
        config.client_config().create().map_err(|source| KafkaTransportError::Client { role: "admin client", brokers: config.brokers.clone(), source })?;
    let names: Vec<(String, bool)> = data_types.iter().flat_map(|t| [(config.topic(*t), true), (format!("{}.dlq", config.topic(*t)), false)]).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|(name, compact)| {
            let t = NewTopic::new(name, config.partitions, TopicReplication::Fixed(config.replication));
            if *compact {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| KafkaTransportError::Topic { topic: names.iter().map(|n| n.0.clone()).collect::<Vec<_>>().join(","), detail: e.to_string() })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaTransportError::Topic { topic, detail: code.to_string() }),
        }
    }
    Ok(())
}
