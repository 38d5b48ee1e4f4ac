//! Versions are never reused: any sequence of failed runs (each target
//! applied some prefix of the batch, or nothing), source changes, hub
//! restarts and good runs ends with every sink holding exactly the last
//! source state, content included, and digests equal to the ledger's.

use hr_core::{ChangeEnvelope, DataType, Ledger, MasterData, MemorySink, Sink};
use proptest::prelude::*;
use std::collections::BTreeMap;

const TARGETS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    /// The source sets a record's name (`None`: the record leaves).
    Change { key: u8, name: Option<u8> },
    /// A run that fails: target `i` applies the first `applied[i]` changes of the batch (clamped).
    FailedRun { applied: [usize; TARGETS] },
    /// The hub process restarts: the ledger is opened again from its file.
    Restart,
    /// A run every target applies, then committed.
    GoodRun,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6, proptest::option::weighted(0.8, 0u8..4)).prop_map(|(key, name)| Step::Change { key, name }),
        3 => proptest::array::uniform3(0usize..8).prop_map(|applied| Step::FailedRun { applied }),
        1 => Just(Step::Restart),
        2 => Just(Step::GoodRun),
    ]
}

fn record(key: u8, name: u8) -> MasterData {
    MasterData { set: "md.category".into(), code: format!("C{key}").into(), name: format!("name {name}").into(), attributes: Default::default() }
}

struct World {
    path: std::path::PathBuf,
    ledger: Ledger,
    source: BTreeMap<u8, u8>,
    sinks: Vec<MemorySink>,
}

impl World {
    fn plan(&self) -> hr_core::Delta {
        let records: Vec<(String, Box<serde_json::value::RawValue>)> = self
            .source
            .iter()
            .map(|(k, n)| {
                let r = record(*k, *n);
                (r.key(), serde_json::value::to_raw_value(&r).unwrap())
            })
            .collect();
        self.ledger.plan(DataType::MasterData, records, "hub", true).unwrap()
    }

    async fn run(&mut self, applied: Option<[usize; TARGETS]>) {
        let delta = self.plan();
        self.ledger.reserve(DataType::MasterData, &delta).unwrap();
        for (i, sink) in self.sinks.iter().enumerate() {
            let n = applied.map(|a| a[i].min(delta.changes.len())).unwrap_or(delta.changes.len());
            sink.apply(&delta.changes[..n]).await.unwrap();
        }
        if applied.is_none() {
            self.ledger.commit(DataType::MasterData, &delta).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn any_sequence_of_failed_runs_ends_with_every_sink_holding_the_last_source_state(steps in proptest::collection::vec(step(), 1..30)) {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ledger.sqlite3");
            let mut world = World { ledger: Ledger::open(&path).unwrap(), path, source: BTreeMap::new(), sinks: (0..TARGETS).map(|_| MemorySink::default()).collect() };
            for step in steps {
                match step {
                    Step::Change { key, name: Some(n) } => { world.source.insert(key, n); }
                    Step::Change { key, name: None } => { world.source.remove(&key); }
                    Step::FailedRun { applied } => world.run(Some(applied)).await,
                    Step::Restart => {
                        // The old ledger lets go of its lock before the new one takes it, as a restarted process would.
                        world.ledger = Ledger::in_memory().unwrap();
                        world.ledger = Ledger::open(&world.path).unwrap();
                    }
                    Step::GoodRun => world.run(None).await,
                }
            }
            world.run(None).await;
            let hub = world.ledger.digest(DataType::MasterData).unwrap();
            for (i, sink) in world.sinks.iter().enumerate() {
                let live: BTreeMap<String, String> = sink
                    .snapshot()
                    .into_iter()
                    .filter(|(_, r)| !r.deleted)
                    .map(|((_, k), r)| (k, r.body.unwrap()))
                    .collect();
                let expected: BTreeMap<String, String> =
                    world.source.iter().map(|(k, n)| { let r = record(*k, *n); (r.key(), serde_json::to_string(&r).unwrap()) }).collect();
                prop_assert_eq!(&live, &expected, "sink {} holds other content than the source", i);
                prop_assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), hub, "sink {}", i);
            }
            prop_assert_eq!(world.ledger.in_doubt(DataType::MasterData).unwrap(), 0);
            Ok(())
        })?;
    }
}

#[test]
fn a_failed_run_then_a_source_change_sends_a_version_no_target_holds() {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
        let mut ledger = Ledger::in_memory().unwrap();
        let sink = MemorySink::default();
        let plan = |ledger: &Ledger, name: u8| {
            let r = record(1, name);
            ledger.plan(DataType::MasterData, [(r.key(), serde_json::value::to_raw_value(&r).unwrap())], "hub", false).unwrap()
        };
        let first = plan(&ledger, 0);
        ledger.reserve(DataType::MasterData, &first).unwrap();
        sink.apply(&first.changes).await.unwrap();
        ledger.commit(DataType::MasterData, &first).unwrap();
        // Content X reaches the sink at version 2, but the run fails before the commit.
        let failed = plan(&ledger, 1);
        ledger.reserve(DataType::MasterData, &failed).unwrap();
        sink.apply(&failed.changes).await.unwrap();
        // The source changes to Y: it must travel at version 3, not at the reused version 2.
        let next = plan(&ledger, 2);
        assert_eq!(next.changes.iter().map(|c| c.version).collect::<Vec<_>>(), [3]);
        assert_eq!(sink.apply(&next.changes).await.unwrap().applied, 1);
        // And back to the committed content W: still sent, since the sink may hold X.
        let mut ledger2 = Ledger::in_memory().unwrap();
        let w = plan(&ledger2, 0);
        ledger2.reserve(DataType::MasterData, &w).unwrap();
        ledger2.commit(DataType::MasterData, &w).unwrap();
        let x = plan(&ledger2, 1);
        ledger2.reserve(DataType::MasterData, &x).unwrap();
        let back = plan(&ledger2, 0);
        assert_eq!((back.changes.len(), back.retried, back.changes[0].version), (1, 1, 3));
        ChangeEnvelope::validate(&back.changes[0]).unwrap();
    });
}
