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
    let mut names: Vec<(String, bool)> =
        data_types.iter().flat_map(|t| config.topics_to_read(*t)).flat_map(|topic| [(format!("{topic}.dlq"), false), (topic, true)]).collect();
    // Most calls find every topic there: no create request then (which some
    // clusters, like librdkafka's mock, do not serve).
    let existing = existing_topics(config).await;
    names.retain(|(name, _)| !existing.contains(name));
    if names.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        config.client_config().create().map_err(|source| KafkaTransportError::Client { role: "admin client", brokers: config.brokers.clone(), source })?;
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

/// The topics the cluster has, or none when it cannot say within 5 s (then
/// every topic is asked for, and the broker answers for those that exist).
async fn existing_topics(config: &KafkaConfig) -> std::collections::BTreeSet<String> {
    let client_config = config.client_config();
    let (answer, answered) = tokio::sync::oneshot::channel();
    // The answer goes back before the client is dropped: a client's teardown
    // waits for its threads (about 100 ms), which the caller need not wait for.
    // A client that cannot be made drops the sender: no answer, none known.
    tokio::task::spawn_blocking(move || {
        let Ok(client) = client_config.create::<rdkafka::consumer::BaseConsumer>() else { return };
        let metadata = rdkafka::consumer::Consumer::fetch_metadata(&client, None, std::time::Duration::from_secs(5));
        let _ = answer.send(metadata.map(|m| m.topics().iter().map(|t| t.name().to_string()).collect()).unwrap_or_default());
        drop(client);
    });
    answered.await.unwrap_or_default()
}
