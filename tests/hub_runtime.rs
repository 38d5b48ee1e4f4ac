//! The hub's ledger work (plans over many keys, SQLite writes with fsync)
//! runs without stalling the other tasks of the runtime it is called on.
use hr_sync::hr_core::{ChangeEnvelope, DataType, Ledger, MasterData, PropagateError, Propagator, Receipt};
use hr_sync::{Hub, HubConfig};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CONFIG: &str = r#"
[routes]
master_data = "pigeon"

[targets.erp]
data_types = ["master_data"]
"#;

/// A transport that notes how far a ticker task got by the time the hub sends.
struct TickReader {
    ticks: Arc<AtomicU64>,
    at_send: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl Propagator for TickReader {
    async fn propagate(&self, _batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        self.at_send.store(self.ticks.load(Ordering::SeqCst), Ordering::SeqCst);
        Ok(Receipt::default())
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        BTreeMap::from([("erp".to_string(), vec![DataType::MasterData])])
    }
}

#[test]
fn another_task_keeps_running_while_the_hub_plans_and_reserves() {
    // One worker: if the hub blocked it, the ticker could not run until the hub awaited.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let at_send = Arc::new(AtomicU64::new(0));
    let records: Vec<(String, MasterData)> = (0..50_000)
        .map(|i| {
            let md =
                MasterData { set: "md.product".into(), code: format!("P{i:06}").into(), name: format!("product {i}").into(), attributes: Default::default() };
            (md.key(), md)
        })
        .collect();
    let config = HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap();
    let transport = Arc::new(TickReader { ticks: ticks.clone(), at_send: at_send.clone() });
    let mut hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("pigeon", transport as Arc<dyn Propagator>)]).unwrap();

    let (before, sent) = runtime.block_on(async {
        let ticker_ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                ticker_ticks.fetch_add(1, Ordering::SeqCst);
            }
        });
        while ticks.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Spawned, so the hub runs on the one worker the ticker also needs.
        let hub_ticks = ticks.clone();
        tokio::spawn(async move {
            let changes: Vec<(&str, Option<&MasterData>)> = records.iter().map(|(k, md)| (k.as_str(), Some(md))).collect();
            let before = hub_ticks.load(Ordering::SeqCst);
            (before, hub.sync_changes(&changes).await.unwrap().sent)
        })
        .await
        .unwrap()
    });
    assert_eq!(sent, 50_000);
    let during = at_send.load(Ordering::SeqCst) - before;
    assert!(during > 0, "the ticker never ran while the hub planned and reserved 50,000 changes: the hub blocked the runtime's only worker");
}
