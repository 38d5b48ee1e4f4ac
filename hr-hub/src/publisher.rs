//! A business system publishing the master data it owns.

use crate::config::HubConfig;
use crate::hub::{HubError, SyncOutcome};
use hr_core::{DataType, FieldScope, Ledger, MasterData, Propagator, Router};
use hr_transport_kafka::{KafkaConfig, KafkaPropagator};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Publishes the master-data sets one system owns (`[targets.<name>]
/// publishes = ["md.product"]`) to every system that receives master data,
/// itself included, as the hub publishes what comes from its input.
///
/// The publisher keeps its own [`Ledger`], so the versions of its records
/// are its own: the hub never sends a key of a set another system owns,
/// and a set has one owner, so no two writers ever number the same key.
/// Each [`publish`](Self::publish) is the complete state of the sets it
/// owns: a row absent from a later publish is a deletion, under the same
/// delete guard as the hub's runs.
pub struct Publisher {
    system: String,
    owned: Vec<String>,
    ledger: Ledger,
    propagator: Arc<dyn Propagator>,
    allow_mass_delete: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("system", &self.system).field("owned", &self.owned).finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `system` that sends through `propagator`, which must
    /// reach every target that receives master data, with the fields the
    /// configuration gives each: checked here as the hub checks its
    /// transports ([`ConfigError::Routing`](crate::ConfigError::Routing)
    /// naming the file and line), so that no target is silently left
    /// without the sets.
    pub fn new(config: &HubConfig, system: &str, ledger: Ledger, propagator: Arc<dyn Propagator>) -> Result<Self, HubError> {
        let owned = config.targets.get(system).map(|t| t.publishes.clone()).unwrap_or_default();
        if owned.is_empty() {
            return Err(HubError::NotAPublisher { system: system.into() });
        }
        check_master_data_route(config, &propagator)?;
        Ok(Publisher { system: system.into(), owned, ledger, propagator, allow_mass_delete: false })
    }

    /// A publisher over Kafka (master data's usual route), to the system's
    /// own master-data topic of each audience (`<topic>.from-<system>`),
    /// which every system that receives master data reads and on which
    /// it accepts only the sets this system owns. The topics must exist
    /// (the hub creates them).
    pub fn over_kafka(config: &HubConfig, system: &str, ledger: Ledger, kafka: &KafkaConfig) -> Result<Self, HubError> {
        let hub_side = KafkaConfig { fields: FieldScope::full(), owners: config.owners_by_system(), publishing_as: Some(system.to_string()), ..kafka.clone() };
        let mut producer = KafkaPropagator::new(&hub_side)?;
        for (name, target) in config.targets.iter().filter(|(_, t)| t.data_types.contains(&DataType::MasterData)) {
            producer = producer.with_scoped_target(name, &[DataType::MasterData], target.omit.clone())?;
        }
        Self::new(config, system, ledger, Arc::new(producer))
    }

    /// Lets the next publish delete more than the delete guard allows.
    pub fn allow_mass_delete(&mut self, allow: bool) {
        self.allow_mass_delete = allow;
    }

    /// The sets this system owns.
    pub fn owned_sets(&self) -> &[String] {
        &self.owned
    }

    /// Whether this system owns `set`.
    pub fn owns(&self, set: &str) -> bool {
        self.owned.iter().any(|s| s == set)
    }

    /// Sends what changed in the sets this system owns, given their complete
    /// state; the outcome's receipt learns when every system applied it. A
    /// record of a set the system does not own is refused, and nothing is sent.
    pub async fn publish(&mut self, records: &[MasterData]) -> Result<SyncOutcome, HubError> {
        if let Some(foreign) = records.iter().find(|r| !self.owns(&r.set)) {
            return Err(HubError::NotOwner { system: self.system.clone(), set: foreign.set.to_string(), owned: self.owned.join(", ") });
        }
        let mut payloads = BTreeMap::new();
        for record in records {
            payloads.insert(record.key(), serde_json::value::to_raw_value(record)?);
        }
        let delta = self.ledger.plan(DataType::MasterData, payloads, &self.system, self.allow_mass_delete)?;
        if delta.changes.is_empty() {
            return Ok(SyncOutcome::default());
        }
        self.ledger.reserve(DataType::MasterData, &delta)?;
        let receipt = self.propagator.propagate(&delta.changes).await?;
        self.ledger.commit(DataType::MasterData, &delta)?;
        Ok(SyncOutcome { sent: delta.changes.len() as u64, retried: delta.retried, receipt, ..SyncOutcome::default() })
    }

    /// The digest of what this system published: added to the hub's, what
    /// every system that receives master data should hold.
    pub fn digest(&self) -> Result<hr_core::Digest, HubError> {
        Ok(self.ledger.digest(DataType::MasterData)?)
    }
}

/// The configuration's routing checks for the master data route alone,
/// served by `propagator`.
fn check_master_data_route(config: &HubConfig, propagator: &Arc<dyn Propagator>) -> Result<(), HubError> {
    let mut policy = config.policy();
    let transport = policy.route(DataType::MasterData).unwrap_or("kafka").to_string();
    policy.routes = BTreeMap::from([(DataType::MasterData, transport.clone())]);
    let router = Router::new(policy).with(&transport, Arc::clone(propagator));
    router.check().map_err(|e| HubError::from(config.routing_error(e)))
}
