use crate::{KafkaConfig, KafkaTransportError};
use async_trait::async_trait;
use hr_core::{Confirmation, DataType, PropagateError, PropagationReport, TargetFailure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far one consumer group is behind the produced records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// The group.
    pub group: String,
    /// Records produced but not yet committed by the group, per topic.
    pub lag: BTreeMap<String, i64>,
}

impl GroupLag {
    /// Total lag over topics.
    pub fn total(&self) -> i64 {
        self.lag.values().sum()
    }
}

/// The lag of each group on the topics of `data_types`: produced (high
/// watermark) minus committed offsets.
pub async fn group_lag(config: &KafkaConfig, groups: &[&str], data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
    LagMonitor::new(config, groups)?.lag(data_types).await
}

/// Watches how far consumer groups are behind. It keeps its clients
/// (creating them makes each look cost tens of milliseconds) and each
/// topic's partition list; one look is one request for every partition's
/// end offset and one per group for its committed offsets, on a thread of
/// the blocking pool.
#[derive(Clone)]
pub struct LagMonitor {
    config: KafkaConfig,
    inner: Arc<Clients>,
}

struct Clients {
    probe: BaseConsumer,
    readers: Vec<(String, BaseConsumer)>,
    partitions: Mutex<BTreeMap<String, Vec<i32>>>,
}

impl Drop for Clients {
    fn drop(&mut self) {
        close_at_once(std::mem::take(&mut self.readers));
    }
}

/// Drops `clients` each on its own thread and returns once all are closed:
/// rdkafka closes a consumer that names a group by polling in 100 ms steps,
/// so closing several one after another adds up.
pub(crate) fn close_at_once<T: Send>(clients: Vec<T>) {
    if clients.len() < 2 {
        return drop(clients);
    }
    std::thread::scope(|scope| {
        for client in clients {
            scope.spawn(move || drop(client));
        }
    });
}

impl LagMonitor {
    /// A monitor of `groups` on `config`'s broker and topics.
    pub fn new(config: &KafkaConfig, groups: &[&str]) -> Result<Self, KafkaTransportError> {
        let readers = groups.iter().map(|g| Ok((g.to_string(), Self::client(config, Some(g))?))).collect::<Result<Vec<_>, KafkaTransportError>>()?;
        let clients = Clients { probe: Self::client(config, None)?, readers, partitions: Mutex::new(BTreeMap::new()) };
        Ok(LagMonitor { config: config.clone(), inner: Arc::new(clients) })
    }

    /// Watches `group` too: one more client, the others kept (a monitor
    /// built up one target at a time). A monitor already shared with a
    /// confirmation in flight is built again with every group.
    pub fn watch_group(&mut self, group: &str) -> Result<(), KafkaTransportError> {
        if self.inner.readers.iter().any(|(g, _)| g == group) {
            return Ok(());
        }
        let reader = Self::client(&self.config, Some(group))?;
        match Arc::get_mut(&mut self.inner) {
            Some(clients) => clients.readers.push((group.to_string(), reader)),
            None => {
                let mut groups: Vec<&str> = self.inner.readers.iter().map(|(g, _)| g.as_str()).collect();
                groups.push(group);
                *self = LagMonitor::new(&self.config, &groups)?;
            }
        }
        Ok(())
    }

    /// A client of `config`'s brokers; with `group`, one that reads that
    /// group's committed offsets.
    fn client(config: &KafkaConfig, group: Option<&str>) -> Result<BaseConsumer, KafkaTransportError> {
        let mut c = config.client_config();
        if let Some(g) = group {
            // A consumer that never subscribes does not join the group; it only reads its offsets.
            c.set("group.id", g);
        }
        c.create().map_err(|source| KafkaTransportError::Client { role: "consumer", brokers: config.brokers.clone(), source })
    }

    /// Each group's lag on the topics of `data_types`.
    pub async fn lag(&self, data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
        let probe = self.clone();
        let data_types = data_types.to_vec();
        tokio::task::spawn_blocking(move || probe.lag_blocking(&data_types))
            .await
            .map_err(|e| KafkaTransportError::Subscriber { group: "-".into(), detail: e.to_string() })?
    }

    /// A topic's partitions, from the cache or the broker (an empty answer is not cached).
    fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>, KafkaTransportError> {
        if let Some(known) = self.inner.partitions.lock().unwrap_or_else(|p| p.into_inner()).get(topic) {
            return Ok(known.clone());
        }
        let metadata = self.inner.probe.fetch_metadata(Some(topic), timeout).map_err(|source| KafkaTransportError::Offsets {
            group: "-".into(),
            topic: topic.to_string(),
            source,
        })?;
        let ids: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        if !ids.is_empty() {
            self.inner.partitions.lock().unwrap_or_else(|p| p.into_inner()).insert(topic.to_string(), ids.clone());
        }
        Ok(ids)
    }

    fn lag_blocking(&self, data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
        let timeout = Duration::from_secs(10);
        let mut places: Vec<(String, i32)> = Vec::new();
        for topic in data_types.iter().flat_map(|t| self.config.topics_to_read(*t)) {
            places.extend(self.partitions(&topic, timeout)?.into_iter().map(|p| (topic.clone(), p)));
        }
        let clients = &*self.inner;
        let mut all = TopicPartitionList::new();
        for (topic, partition) in &places {
            all.add_partition_offset(topic, *partition, Offset::End).map_err(|source| KafkaTransportError::Offsets {
                group: "-".into(),
                topic: topic.clone(),
                source,
            })?;
        }
        // One ListOffsets request for every partition's end (a timestamp of "end" asks for the high watermark).
        let ends = clients.probe.offsets_for_times(all.clone(), timeout).map_err(|source| KafkaTransportError::Offsets {
            group: "-".into(),
            topic: "*".into(),
            source,
        })?;
        let high: BTreeMap<(String, i32), i64> = ends
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => Ok(((e.topic().to_string(), e.partition()), o)),
                other => Err(KafkaTransportError::Offsets {
                    group: "-".into(),
                    topic: format!("{}/{} (end offset {other:?})", e.topic(), e.partition()),
                    source: rdkafka::error::KafkaError::OffsetFetch(rdkafka::types::RDKafkaErrorCode::InvalidArgument),
                }),
            })
            .collect::<Result<_, _>>()?;
        let committed: Vec<(String, TopicPartitionList)> = clients
            .readers
            .iter()
            .map(|(group, reader)| {
                reader.committed_offsets(all.clone(), timeout).map(|c| (group.clone(), c)).map_err(|source| KafkaTransportError::Offsets {
                    group: group.clone(),
                    topic: "*".into(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (group, committed) in committed {
            let mut lag: BTreeMap<String, i64> = BTreeMap::new();
            for ((topic, partition), hi) in &high {
                let done = match committed.find_partition(topic, *partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                *lag.entry(topic.clone()).or_default() += (hi - done).max(0);
            }
            out.push(GroupLag { group, lag });
        }
        Ok(out)
    }

    /// Makes the next look ask the broker for the topics' partitions again
    /// (it keeps them otherwise): for a monitor kept across runs, so a
    /// partition added meanwhile is waited for too.
    pub fn forget_partitions(&self) {
        self.inner.partitions.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Waits until every group committed everything produced to the topics
    /// of `data_types`, calling `on_lag` with the total lag after each look,
    /// or fails with each group's lag at the deadline.
    pub async fn wait(&self, data_types: &[DataType], deadline: Duration, mut on_lag: impl FnMut(i64)) -> Result<(), KafkaTransportError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let lags = match self.lag(data_types).await {
                Ok(lags) => lags,
                // Coordinator moves and metadata refreshes after a broker restart are transient.
                Err(e) if started.elapsed() < deadline => {
                    tracing::debug!(error = %e, "offsets not readable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            on_lag(lags.iter().map(GroupLag::total).sum());
            if lags.iter().all(|l| l.total() == 0) {
                return Ok(());
            }
            if started.elapsed() >= deadline {
                let lag = lags.iter().map(|l| format!("{}: {}", l.group, l.total())).collect::<Vec<_>>().join(", ");
                return Err(KafkaTransportError::NotCaughtUp { waited_ms: started.elapsed().as_millis(), lag });
            }
            tokio::time::sleep(pause).await;
            // Real-time changes land within milliseconds: look often at first, then back off.
            if started.elapsed() > Duration::from_millis(50) {
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// Waits until every group committed everything produced to the topics of
/// `data_types` (its sink applied it), or fails with each group's lag.
pub async fn wait_until_applied(config: &KafkaConfig, groups: &[&str], data_types: &[DataType], deadline: Duration) -> Result<(), KafkaTransportError> {
    LagMonitor::new(config, groups)?.wait(data_types, deadline, |_| {}).await
}

/// Where one target's consumer group must commit past for one partition's
/// share of a batch to count as applied.
#[derive(Debug, Clone)]
pub(crate) struct AppliedOffsets {
    target: String,
    group: String,
    data_type: DataType,
    topic: String,
    partition: i32,
    last: i64,
    records: u64,
}

impl AppliedOffsets {
    /// `records` records of `data_type` for `target`, the last at offset `last` of `topic`/`partition`.
    pub(crate) fn new(target: &str, group: &str, data_type: DataType, topic: &str, partition: i32, last: i64, records: u64) -> Self {
        AppliedOffsets { target: target.into(), group: group.into(), data_type, topic: topic.into(), partition, last, records }
    }

    /// Records not yet applied, when the group committed `committed` (the next offset it will read).
    fn unapplied(&self, committed: Option<i64>) -> u64 {
        let behind = (self.last + 1 - committed.unwrap_or(0)).max(0) as u64;
        behind.min(self.records)
    }
}

impl LagMonitor {
    /// A confirmation that waits until each group committed past its goals.
    pub(crate) fn confirmation(&self, goals: Vec<AppliedOffsets>) -> OffsetConfirmation {
        OffsetConfirmation { monitor: self.clone(), goals }
    }

    /// The offsets `group` committed on `places`, read on the blocking pool.
    async fn committed(&self, group: &str, places: Vec<(String, i32)>) -> Result<BTreeMap<(String, i32), i64>, KafkaTransportError> {
        let inner = self.inner.clone();
        let group = group.to_string();
        tokio::task::spawn_blocking(move || {
            let Some((_, reader)) = inner.readers.iter().find(|(g, _)| *g == group) else {
                return Err(KafkaTransportError::Subscriber { group, detail: "not a group this monitor reads".into() });
            };
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in &places {
                tpl.add_partition(topic, *partition);
            }
            let committed = reader.committed_offsets(tpl, Duration::from_secs(10)).map_err(|source| KafkaTransportError::Offsets {
                group: group.clone(),
                topic: "*".into(),
                source,
            })?;
            Ok(committed
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                    _ => None,
                })
                .collect())
        })
        .await
        .map_err(|e| KafkaTransportError::Subscriber { group: "-".into(), detail: e.to_string() })?
    }
}

/// Confirms a Kafka batch: done when every target's group committed past
/// the batch's last offset in each partition its records went to.
pub(crate) struct OffsetConfirmation {
    monitor: LagMonitor,
    goals: Vec<AppliedOffsets>,
}

impl OffsetConfirmation {
    /// One look: each goal's unapplied records (0 when applied).
    async fn look(&self) -> Result<Vec<u64>, KafkaTransportError> {
        let mut by_group: BTreeMap<&str, Vec<(String, i32)>> = BTreeMap::new();
        for g in &self.goals {
            by_group.entry(&g.group).or_default().push((g.topic.clone(), g.partition));
        }
        let reads = by_group.into_iter().map(|(group, places)| async move { (group, self.monitor.committed(group, places).await) });
        let mut committed: BTreeMap<&str, BTreeMap<(String, i32), i64>> = BTreeMap::new();
        for (group, offsets) in futures::future::join_all(reads).await {
            committed.insert(group, offsets?);
        }
        Ok(self.goals.iter().map(|g| g.unapplied(committed[g.group.as_str()].get(&(g.topic.clone(), g.partition)).copied())).collect())
    }

    /// Per target and data type, what the goals that are met applied.
    fn applied(&self, unapplied: &[u64]) -> PropagationReport {
        let mut behind: BTreeMap<(&str, DataType), bool> = BTreeMap::new();
        for (g, left) in self.goals.iter().zip(unapplied) {
            *behind.entry((&g.target, g.data_type)).or_default() |= *left > 0;
        }
        let mut report = PropagationReport::default();
        for g in &self.goals {
            if !behind[&(g.target.as_str(), g.data_type)] {
                report.add(&g.target, g.data_type, g.records);
            }
        }
        report
    }

    /// Each target still behind, and by how much.
    fn behind(&self, unapplied: &[u64], waited: Duration, cause: Option<&KafkaTransportError>) -> Vec<TargetFailure> {
        let mut left: BTreeMap<(&str, &str, DataType), u64> = BTreeMap::new();
        for (g, n) in self.goals.iter().zip(unapplied).filter(|(_, n)| **n > 0) {
            *left.entry((&g.target, &g.group, g.data_type)).or_default() += n;
        }
        left.into_iter()
            .map(|((target, group, data_type), n)| TargetFailure {
                target: target.into(),
                cause: match cause {
                    Some(e) => format!("cannot tell whether {n} {data_type} record(s) were applied after {} ms: {e}", waited.as_millis()),
                    None => {
                        format!("{n} {data_type} record(s) not applied after {} ms (consumer group {group} has not committed past them)", waited.as_millis())
                    }
                },
                retriable: true,
            })
            .collect()
    }
}

#[async_trait]
impl Confirmation for OffsetConfirmation {
    async fn wait(&self, deadline: Duration, progress: &mut (dyn FnMut(u64) + Send)) -> Result<PropagationReport, PropagateError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut unapplied: Vec<u64> = self.goals.iter().map(|g| g.records).collect();
        loop {
            let error = match self.look().await {
                Ok(now) => {
                    unapplied = now;
                    progress(unapplied.iter().sum());
                    if unapplied.iter().all(|n| *n == 0) {
                        return Ok(self.applied(&unapplied));
                    }
                    None
                }
                // Coordinator moves and metadata refreshes after a broker restart are transient.
                Err(e) => {
                    tracing::debug!(error = %e, "committed offsets not readable yet; retrying");
                    Some(e)
                }
            };
            if started.elapsed() >= deadline {
                return Err(PropagateError::incomplete(self.applied(&unapplied), self.behind(&unapplied, started.elapsed(), error.as_ref())));
            }
            tokio::time::sleep(pause).await;
            // Real-time changes land within milliseconds: look often at first, then back off.
            if started.elapsed() > Duration::from_millis(50) {
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(monitor: &LagMonitor) -> Vec<&str> {
        monitor.inner.readers.iter().map(|(g, _)| g.as_str()).collect()
    }

    #[test]
    fn a_monitor_built_one_target_at_a_time_holds_one_reader_per_group() {
        // Creating clients makes no connection: no broker is needed.
        let config = KafkaConfig::new("127.0.0.1:1");
        let mut monitor = LagMonitor::new(&config, &["hr.payroll"]).unwrap();
        monitor.watch_group("hr.erp").unwrap();
        monitor.watch_group("hr.payroll").unwrap();
        assert_eq!(groups(&monitor), ["hr.payroll", "hr.erp"]);
        // Shared with a confirmation in flight: built again, with every group.
        let in_flight = monitor.clone();
        monitor.watch_group("hr.orgchart").unwrap();
        assert_eq!(groups(&monitor), ["hr.payroll", "hr.erp", "hr.orgchart"]);
        assert_eq!(groups(&in_flight), ["hr.payroll", "hr.erp"]);
    }
}
