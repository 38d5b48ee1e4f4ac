//! The hub: turns a merged state into deltas with its [`Ledger`], sends them
//! through the [`Router`], records them only once every target has them, and
//! confirms and reconciles what the target systems hold.

use crate::config::{group_name, HubConfig};
use crate::console::Console;
use hr_core::{ChangeEnvelope, DataType, Delta, Digest, Ledger, MergedState, PropagationReport, Propagator, Router};
use hr_transport_kafka::{KafkaConfig, KafkaPropagator, KafkaTransportError, LagMonitor};
use hr_transport_rest::{RestConfig, RestPropagator, RestTarget, RestTransportError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What one sync sent.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    /// Changes planned and delivered (each counted once, whatever the fan-out).
    pub sent: u64,
    /// Per target and data type, what was delivered (REST targets by name;
    /// Kafka as `kafka`, which means accepted by the broker).
    pub delivered: PropagationReport,
}

/// One target's state of one data type compared with the hub's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    /// Live records the target holds.
    pub records: u64,
    /// Live records the hub sent.
    pub hub_records: u64,
    /// Whether the digests are equal (same keys, versions and deletions).
    pub digest_matches: bool,
}

/// The hub of one deployment.
pub struct Hub {
    ledger: Ledger,
    router: Router,
    monitor: LagMonitor,
    kafka_types: Vec<DataType>,
    groups: Vec<String>,
    rest: Arc<RestPropagator>,
    allow_mass_delete: bool,
}

impl Hub {
    /// A hub sending Kafka routes to `kafka` (whose topics must exist) and
    /// REST routes to `rest_targets`; `kafka.topic_prefix` names the groups.
    pub fn new(config: &HubConfig, mut kafka: KafkaConfig, rest: RestConfig, ledger: Ledger) -> anyhow::Result<Self> {
        let policy = config.policy();
        let kafka_types = policy.data_types_via("kafka");
        if let Some(t) = kafka_types.iter().find(|t| t.is_sensitive()) {
            anyhow::ensure!(
                config.sensitive_on_kafka,
                "the configuration routes {t} over Kafka, where every consumer of the topic can read it; route it over REST, or set sensitive_on_kafka = true"
            );
        }
        kafka.allow_sensitive = config.sensitive_on_kafka;
        let groups: Vec<String> = policy
            .targets
            .iter()
            .filter(|(_, t)| t.data_types.iter().any(|d| kafka_types.contains(d)))
            .map(|(name, _)| group_name(&kafka.topic_prefix, name))
            .collect();
        let monitor = LagMonitor::new(&kafka, &groups.iter().map(String::as_str).collect::<Vec<_>>())?;
        let rest = Arc::new(RestPropagator::new(rest)?);
        let router = Router::new(policy).with("kafka", Arc::new(KafkaPropagator::new(&kafka)?)).with("rest", rest.clone());
        Ok(Hub { ledger, router, monitor, kafka_types, groups, rest, allow_mass_delete: false })
    }

    /// REST targets from the configuration: each target's `url` and the
    /// token in its `token_env`, restricted to the data types routed to REST.
    pub fn rest_targets(config: &HubConfig) -> anyhow::Result<Vec<RestTarget>> {
        let rest_types = config.policy().data_types_via("rest");
        let mut targets = vec![];
        for (name, t) in &config.targets {
            let types: Vec<DataType> = t.data_types.iter().copied().filter(|d| rest_types.contains(d)).collect();
            let url = match (&t.url, types.first()) {
                (Some(url), _) => url,
                (None, None) => continue,
                (None, Some(t)) => anyhow::bail!("target {name} receives {t} over REST but has no url in the configuration"),
            };
            let mut target = RestTarget::new(name, url, types);
            if let Some(var) = &t.token_env {
                let token = std::env::var(var).map_err(|_| anyhow::anyhow!("target {name}: environment variable {var} (its token) is not set"))?;
                target = target.with_token(&token);
            }
            targets.push(target);
        }
        Ok(targets)
    }

    /// Lets the next syncs delete more than the ledger's guard allows (an
    /// operator's decision after a refused run, e.g. a real mass departure).
    pub fn allow_mass_delete(&mut self, allow: bool) {
        self.allow_mass_delete = allow;
    }

    /// The ledger (digests of what was sent).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The consumer groups that must apply the Kafka routes.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The data types routed over Kafka.
    pub fn kafka_types(&self) -> &[DataType] {
        &self.kafka_types
    }

    /// Sends the deltas of every data type.
    pub async fn sync(&mut self, state: &MergedState) -> anyhow::Result<SyncOutcome> {
        self.sync_types(state, &DataType::ALL).await
    }

    /// Plans the deltas of `types`, propagates them in one call, and records
    /// them in the ledger only once every target has them, so a failed call
    /// is simply sent again by the next sync.
    pub async fn sync_types(&mut self, state: &MergedState, types: &[DataType]) -> anyhow::Result<SyncOutcome> {
        let mut deltas = vec![];
        for t in types {
            deltas.push((*t, self.ledger.plan_state(state, *t, "hr-hub", self.allow_mass_delete)?));
        }
        self.send(deltas).await
    }

    /// Sends individual changes at once (real time): `Some(record)` upserts,
    /// `None` deletes. Only the named keys are looked at, so the cost does not
    /// grow with the data type's size.
    ///
    /// The merged state of the next periodic sync must include them, or that
    /// sync undoes them.
    pub async fn sync_changes<T: serde::Serialize>(&mut self, data_type: DataType, changes: &[(&str, Option<&T>)]) -> anyhow::Result<SyncOutcome> {
        let mut raw = Vec::with_capacity(changes.len());
        for (key, record) in changes {
            raw.push((*key, record.map(serde_json::value::to_raw_value).transpose()?));
        }
        let delta = self.ledger.plan_changes(data_type, raw, "hr-hub")?;
        self.send(vec![(data_type, delta)]).await
    }

    async fn send(&mut self, deltas: Vec<(DataType, Delta)>) -> anyhow::Result<SyncOutcome> {
        let batch: Vec<ChangeEnvelope> = deltas.iter().flat_map(|(_, d)| d.changes.iter().cloned()).collect();
        if batch.is_empty() {
            return Ok(SyncOutcome::default());
        }
        let delivered = self.router.propagate(&batch).await?;
        for (t, delta) in &deltas {
            self.ledger.commit(*t, delta)?;
        }
        Ok(SyncOutcome { sent: batch.len() as u64, delivered })
    }

    /// Waits until every consumer group applied everything produced to the
    /// topics of `types`; `on_lag` sees the total lag after each look.
    pub async fn wait_applied(&self, types: &[DataType], deadline: Duration, on_lag: impl FnMut(i64)) -> Result<(), KafkaTransportError> {
        let types: Vec<DataType> = types.iter().copied().filter(|t| self.kafka_types.contains(t)).collect();
        if types.is_empty() || self.groups.is_empty() {
            return Ok(());
        }
        self.monitor.wait(&types, deadline, on_lag).await
    }

    /// Waits until every group applied everything on every Kafka route,
    /// showing a bar of records applied on a terminal.
    pub async fn confirm(&self, console: &Console, what: &str, deadline: Duration) -> Result<(), KafkaTransportError> {
        let phase = console.phase(what, Some(0));
        let mut most = 0i64;
        self.wait_applied(&self.kafka_types, deadline, |lag| {
            most = most.max(lag);
            phase.set_length(most as u64);
            phase.set_position((most - lag) as u64);
        })
        .await
    }

    /// Compares each REST-reachable target's digests with the ledger's.
    /// Targets without a REST receiver are left out.
    pub async fn reconcile(&self, config: &HubConfig) -> anyhow::Result<BTreeMap<String, BTreeMap<DataType, Reconciled>>> {
        let mut out = BTreeMap::new();
        for (name, target) in &config.targets {
            let held = match self.rest.digests(name).await {
                Err(RestTransportError::UnknownTarget(_)) => continue,
                other => other?,
            };
            let mut per_type = BTreeMap::new();
            for t in &target.data_types {
                let theirs = held.get(t).copied().unwrap_or_else(Digest::default);
                let ours = self.ledger.digest(*t)?;
                per_type.insert(*t, Reconciled { records: theirs.count, hub_records: ours.count, digest_matches: ours == theirs });
            }
            out.insert(name.clone(), per_type);
        }
        Ok(out)
    }
}
