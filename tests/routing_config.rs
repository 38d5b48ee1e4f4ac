//! The hub checks its configuration against the transports it has when it
//! is built: a route to an unknown transport, a target its route cannot
//! reach, or a transport that would hand a target a data type the
//! configuration does not give it, is an error naming the file and line.
//! A system's publisher is checked the same way for the master data route.
use hr_sync::hr_core::{ChangeEnvelope, DataType, Ledger, PropagateError, Propagator, Receipt};
use hr_sync::hr_transport_kafka::{EmbeddedKafka, KafkaConfig};
use hr_sync::hr_transport_rest::{RestConfig, RestTarget};
use hr_sync::{Hub, HubConfig, Publisher};
use std::collections::BTreeMap;
use std::sync::Arc;

const CONFIG: &str = r#"
[routes]
employee = "kafka"
permission = "rest"

[targets.erp]
data_types = ["employee", "permission"]
url = "http://127.0.0.1:1"
"#;

fn hub(text: &str, rest: Vec<RestTarget>) -> Result<Hub, String> {
    let mock = EmbeddedKafka::start().unwrap();
    let config = HubConfig::from_toml_str(text, "hub.toml").unwrap();
    Hub::new(&config, KafkaConfig::new(mock.bootstrap_servers()), RestConfig::new(rest), Ledger::in_memory().unwrap()).map_err(|e| e.to_string())
}

fn erp(types: Vec<DataType>) -> RestTarget {
    RestTarget::new("erp", "http://127.0.0.1:1", types)
}

#[test]
fn a_valid_configuration_builds_a_hub_whose_targets_are_the_configured_ones() {
    let hub = hub(CONFIG, vec![erp(vec![DataType::Permission])]).unwrap();
    assert_eq!(hub.targets(), BTreeMap::from([("erp".to_string(), vec![DataType::Employee, DataType::Permission])]));
}

#[test]
fn a_typo_in_a_route_names_the_file_and_line() {
    let err = hub(&CONFIG.replace(r#"employee = "kafka""#, r#"employee = "kafak""#), vec![erp(vec![DataType::Permission])]).unwrap_err();
    assert!(err.starts_with("configuration hub.toml, line 3:") && err.contains("\"kafak\"") && err.contains("kafka, rest"), "{err}");
}

#[test]
fn a_target_its_route_cannot_reach_names_the_target_line() {
    // erp receives permissions over REST, but no REST target named erp exists.
    let err = hub(CONFIG, vec![]).unwrap_err();
    assert!(err.starts_with("configuration hub.toml, line 6:") && err.contains("erp receives permission over rest"), "{err}");
}

#[test]
fn a_transport_that_would_send_a_target_more_than_it_may_receive_is_refused() {
    let text = CONFIG.replace("[routes]", "[routes]\ncompensation = \"rest\"");
    let err = hub(&text, vec![erp(vec![DataType::Permission, DataType::Compensation])]).unwrap_err();
    assert!(err.contains("delivers compensation to erp, which the policy does not allow"), "{err}");
}

/// A third transport, registered without changing the hub.
struct Carrier;

#[async_trait::async_trait]
impl Propagator for Carrier {
    async fn propagate(&self, _batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        Ok(Receipt::default())
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        BTreeMap::from([("erp".to_string(), vec![DataType::Employee, DataType::Permission])])
    }
}

#[test]
fn any_transport_registered_under_a_route_name_serves_that_route() {
    let text = CONFIG.replace("\"kafka\"", "\"pigeon\"").replace("\"rest\"", "\"pigeon\"");
    let config = HubConfig::from_toml_str(&text, "hub.toml").unwrap();
    let hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("pigeon", Arc::new(Carrier) as Arc<dyn Propagator>)]).unwrap();
    assert_eq!(hub.targets()["erp"], vec![DataType::Employee, DataType::Permission]);
}

/// A target with a transport of its own gets every type it receives over
/// it, and the other transports do not deliver to it; a name nobody
/// registered is refused naming the target's line; a target no transport
/// reads back is named, never skipped silently.
#[test]
fn a_target_naming_its_own_transport_is_served_by_it_alone() {
    let text = format!("{CONFIG}\n[targets.directory]\ndata_types = [\"employee\"]\ntransport = \"pigeon\"\n\n[targets.audit]\ndata_types = [\"employee\"]\n");
    let config = HubConfig::from_toml_str(&text, "hub.toml").unwrap();
    let policy = config.policy();
    assert_eq!(policy.route_for("directory", DataType::Employee), Some("pigeon"));
    assert_eq!(policy.route_for("erp", DataType::Employee), Some("kafka"));
    assert_eq!(policy.transports_for(DataType::Employee).into_iter().collect::<Vec<_>>(), ["kafka", "pigeon"]);
    assert_eq!(config.kafka_types_of("directory"), vec![]);
    assert_eq!(config.kafka_types_of("erp"), vec![DataType::Employee]);

    struct Directory;
    #[async_trait::async_trait]
    impl Propagator for Directory {
        async fn propagate(&self, _batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
            Ok(Receipt::default())
        }
        fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
            BTreeMap::from([("directory".to_string(), vec![DataType::Employee])])
        }
    }
    let mock = EmbeddedKafka::start().unwrap();
    let kafka: Arc<dyn Propagator> = Arc::new(
        hr_sync::hr_transport_kafka::KafkaPropagator::new(&KafkaConfig::new(mock.bootstrap_servers()))
            .unwrap()
            .with_scoped_target("erp", &[DataType::Employee], Default::default())
            .unwrap()
            .with_scoped_target("audit", &[DataType::Employee], Default::default())
            .unwrap(),
    );
    let rest: Arc<dyn Propagator> = Arc::new(hr_sync::hr_transport_rest::RestPropagator::new(RestConfig::new(vec![erp(vec![DataType::Permission])])).unwrap());
    let hub = Hub::with_transports(
        &config,
        Ledger::in_memory().unwrap(),
        [("kafka", kafka.clone()), ("rest", rest.clone()), ("pigeon", Arc::new(Directory) as Arc<dyn Propagator>)],
    )
    .unwrap();
    assert_eq!(hub.targets()["directory"], vec![DataType::Employee]);
    assert_eq!(hub.not_comparable(), ["audit", "directory", "erp"], "no reader registered");

    // The Kafka transport must not also claim the directory.
    let greedy: Arc<dyn Propagator> = Arc::new(
        hr_sync::hr_transport_kafka::KafkaPropagator::new(&KafkaConfig::new(mock.bootstrap_servers()))
            .unwrap()
            .with_scoped_target("erp", &[DataType::Employee], Default::default())
            .unwrap()
            .with_scoped_target("audit", &[DataType::Employee], Default::default())
            .unwrap()
            .with_scoped_target("directory", &[DataType::Employee], Default::default())
            .unwrap(),
    );
    let transports = |kafka: Arc<dyn Propagator>| [("kafka", kafka), ("rest", rest.clone()), ("pigeon", Arc::new(Directory) as Arc<dyn Propagator>)];
    let err = Hub::with_transports(&config, Ledger::in_memory().unwrap(), transports(greedy)).unwrap_err().to_string();
    assert!(err.contains("transport kafka delivers to directory, which receives everything over its own transport pigeon"), "{err}");

    let unknown = text.replace("transport = \"pigeon\"", "transport = \"pigeonn\"");
    let config = HubConfig::from_toml_str(&unknown, "hub.toml").unwrap();
    let err = Hub::with_transports(&config, Ledger::in_memory().unwrap(), transports(kafka)).unwrap_err().to_string();
    assert!(err.starts_with("configuration hub.toml, line 10:") && err.contains("target directory names transport \"pigeonn\""), "{err}");
}

/// A REST receiver is read back: the hub built with the shipped transports
/// compares every target with a url and names the others.
#[test]
fn a_target_without_a_receiver_is_named_as_not_comparable() {
    let text = format!("{CONFIG}\n[targets.audit]\ndata_types = [\"employee\"]\n");
    let hub = hub(&text, vec![erp(vec![DataType::Permission])]).unwrap();
    assert_eq!(hub.not_comparable(), ["audit"]);
}

const PUBLISHING: &str = r#"
[routes]
master_data = "kafka"

[targets.erp]
data_types = ["master_data"]
publishes = ["md.product"]

[targets.payroll]
data_types = ["master_data"]
"#;

/// A transport that reaches the named targets with master data.
struct MasterDataTo(&'static [&'static str]);

#[async_trait::async_trait]
impl Propagator for MasterDataTo {
    async fn propagate(&self, _batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        Ok(Receipt::default())
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        self.0.iter().map(|t| (t.to_string(), vec![DataType::MasterData])).collect()
    }
}

fn publisher(reaches: &'static [&'static str]) -> Result<Publisher, String> {
    let config = HubConfig::from_toml_str(PUBLISHING, "hub.toml").unwrap();
    Publisher::new(&config, "erp", Ledger::in_memory().unwrap(), Arc::new(MasterDataTo(reaches))).map_err(|e| e.to_string())
}

#[test]
fn a_publisher_whose_transport_misses_a_target_of_master_data_is_refused_naming_it() {
    assert!(publisher(&["erp", "payroll"]).is_ok());
    let err = publisher(&["erp"]).unwrap_err();
    assert!(err.starts_with("configuration hub.toml, line 9:") && err.contains("payroll receives master_data over kafka"), "{err}");
}

#[test]
fn a_publisher_whose_transport_would_send_master_data_where_it_is_not_received_is_refused() {
    let err = publisher(&["erp", "payroll", "orgchart"]).unwrap_err();
    assert!(err.contains("delivers master_data to orgchart, which the policy does not allow"), "{err}");
}
