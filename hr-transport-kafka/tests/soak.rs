//! Soak with faults: many changes through a real broker to three
//! subscribers while the broker is killed (SIGKILL) with a call in flight and
//! kept down past the delivery timeout, and one subscriber is killed holding
//! a batch it has not applied; both faults hit final versions. Every produced
//! (key, version) must then be applied exactly once in every system (applied
//! = n, where a lost record or one overtaken by a newer version counts
//! against it), and every sink's digest must equal the expected one. The run
//! reports records lost and duplicates delivered but skipped.
//!
//! `HR_SOAK_CHANGES` sets the size (default 40,000 for CI; scripts/soak.sh
//! runs 1,000,000). Uses its own broker on port 19192, started and stopped here.

use async_trait::async_trait;
use hr_core::{ApplyOutcome, ChangeEnvelope, DataType, DigestEntry, Propagator, Sink, SinkError, SqliteSink};
use hr_transport_kafka::{ensure_topics, wait_until_applied, KafkaConfig, KafkaPropagator, KafkaSubscriber};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

mod common;
use common::*;

/// Every key's last version; a tenth of the keys end deleted.
const FINAL: u64 = 4;

/// A batch a subscriber held when it was killed: (key, version) of each change.
type InHand = Vec<(String, u64)>;

/// A SQLite sink that records, across subscriber lifetimes, every version
/// handed to it per key in arrival order, so each produced version can be
/// traced to the moment it was applied (or found missing). Armed with a
/// crash, it takes the next batch holding a final version and never returns:
/// the subscriber is then killed with records in hand, neither applied nor
/// (if offsets follow applies) committed.
struct RecordingSink {
    inner: SqliteSink,
    arrived: Mutex<HashMap<String, Vec<u64>>>,
    outcome: Mutex<ApplyOutcome>,
    crash: Mutex<Option<oneshot::Sender<InHand>>>,
}

#[async_trait]
impl Sink for RecordingSink {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        let crash = {
            let mut armed = self.crash.lock().unwrap();
            if armed.is_some() && batch.iter().any(|c| c.version == FINAL) {
                armed.take()
            } else {
                None
            }
        };
        if let Some(crash) = crash {
            let _ = crash.send(batch.iter().map(|c| (c.key.clone(), c.version)).collect());
            return std::future::pending().await;
        }
        let outcome = self.inner.apply(batch).await?;
        let mut arrived = self.arrived.lock().unwrap();
        for c in batch {
            arrived.entry(c.key.clone()).or_default().push(c.version);
        }
        *self.outcome.lock().unwrap() += outcome;
        Ok(outcome)
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.inner.entries(data_type).await
    }
}

/// Versions 1..=FINAL of `n / FINAL` keys as a pipeline of waves of
/// `FINAL * group` changes: wave w holds version 1 of key group w, version 2
/// of group w - 1, and so on. From the fourth wave on, every wave carries
/// final versions (some of them deletes) beside earlier ones, so a fault
/// during any wave hits both, and nothing produced after the faults can hide
/// a loss during them.
fn waves(n: usize, group: usize) -> Vec<Vec<ChangeEnvelope>> {
    let keys = (n / FINAL as usize).max(1);
    let groups = keys.div_ceil(group);
    (0..groups + FINAL as usize - 1)
        .map(|w| {
            (1..=FINAL)
                .filter_map(|v| w.checked_sub(v as usize - 1).filter(|g| *g < groups).map(|g| (g, v)))
                .flat_map(|(g, v)| {
                    (g * group..((g + 1) * group).min(keys)).map(move |k| {
                        if v == FINAL && k % 10 == 0 {
                            ChangeEnvelope::delete(DataType::MasterData, md(k, v).key, v, "soak")
                        } else {
                            md(k, v)
                        }
                    })
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_a_broker_kill_and_a_subscriber_kill_loses_nothing() {
    let size: usize = std::env::var("HR_SOAK_CHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(40_000);
    let port = 19192;
    broker_script("start", port);
    let _broker = BrokerGuard(port);
    let mut config = KafkaConfig::new(format!("127.0.0.1:{port}"));
    config.topic_prefix = format!("t.soak.{}.", uuid_suffix());
    // Shorter than the broker's outage, so the call in flight when it dies fails and is resent.
    config.delivery_timeout = Duration::from_secs(5);
    let outage = Duration::from_secs(6);
    ensure_topics(&config, &[DataType::MasterData]).await.unwrap();

    let waves = waves(size, 1_250);
    let changes: Vec<ChangeEnvelope> = waves.iter().flatten().cloned().collect();
    let n = changes.len();
    let expected = digest_of(&changes);
    let dir = tempfile::tempdir().unwrap();
    let sinks: Vec<Arc<RecordingSink>> = (0..3)
        .map(|i| {
            Arc::new(RecordingSink {
                inner: SqliteSink::open(dir.path().join(format!("s{i}.sqlite3"))).unwrap(),
                arrived: Default::default(),
                outcome: Default::default(),
                crash: Default::default(),
            })
        })
        .collect();
    let groups: Vec<String> = (0..3).map(|i| format!("{}system{i}", config.topic_prefix)).collect();
    let start = |i: usize| KafkaSubscriber::start(&config, &groups[i], &[DataType::MasterData], sinks[i].clone()).unwrap();
    let mut subscribers: Vec<Option<KafkaSubscriber>> = (0..3).map(|i| Some(start(i))).collect();

    let propagator = KafkaPropagator::new(&config).unwrap();
    let later = waves.len().saturating_sub(FINAL as usize - 1);
    let (kill_broker_at, kill_subscriber_at) = (FINAL as usize - 1 + later / 3, FINAL as usize - 1 + 2 * later / 3);
    let started = Instant::now();
    let mut failed_waves = BTreeSet::new();
    let mut failed_calls = 0;
    let mut broker_restart = None;
    let mut in_hand = None;
    for (i, wave) in waves.iter().enumerate() {
        if i == kill_broker_at {
            broker_restart = Some(std::thread::spawn(move || {
                broker_script("kill", port);
                std::thread::sleep(outage);
                broker_script("start", port);
            }));
        }
        let crashed = (i == kill_subscriber_at).then(|| {
            let (tx, rx) = oneshot::channel();
            *sinks[1].crash.lock().unwrap() = Some(tx);
            rx
        });
        // A failed call is resent whole: the version rule makes the records it did deliver harmless.
        while let Err(e) = propagator.propagate(wave).await {
            failed_calls += 1;
            failed_waves.insert(i);
            eprintln!("wave {i}: {e}; resending");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(crashed) = crashed {
            let batch = tokio::time::timeout(Duration::from_secs(120), crashed).await.expect("system1 took a batch with final versions").unwrap();
            subscribers[1].take().unwrap().kill();
            in_hand = Some(batch);
            tokio::time::sleep(Duration::from_millis(500)).await;
            subscribers[1] = Some(start(1));
        }
    }
    if let Some(t) = broker_restart {
        t.join().unwrap();
    }
    let group_refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    wait_until_applied(&config, &group_refs, &[DataType::MasterData], Duration::from_secs(600)).await.unwrap();
    for s in subscribers.into_iter().flatten() {
        s.shutdown().await.unwrap();
    }
    let elapsed = started.elapsed();

    // The faults landed with records in flight, final versions among them.
    assert!(!failed_waves.is_empty(), "no call was in flight while the broker was down");
    let in_hand = in_hand.expect("system1 was killed");
    let failed_finals = failed_waves.iter().flat_map(|w| &waves[*w]).filter(|c| c.version == FINAL).count();
    let in_hand_finals = in_hand.iter().filter(|(_, v)| *v == FINAL).count();
    assert!(failed_finals > 0 && in_hand_finals > 0);

    // Versions rise per key, so under the version rule each produced
    // (key, version) is applied exactly when it first arrives, provided
    // nothing newer of its key arrived before it. Applied = n is exactly:
    // nothing lost, nothing overtaken, each applied once.
    let mut produced: HashMap<&str, Vec<u64>> = HashMap::new();
    for c in &changes {
        produced.entry(c.key.as_str()).or_default().push(c.version);
    }
    let mut report = vec![];
    for (i, sink) in sinks.iter().enumerate() {
        let digest = sink.digest(DataType::MasterData).await.unwrap();
        let arrived = sink.arrived.lock().unwrap();
        let (mut lost, mut overtaken, mut deliveries) = (0, 0, 0);
        for (key, versions) in &produced {
            let seen = arrived.get(*key).map(Vec::as_slice).unwrap_or_default();
            deliveries += seen.len();
            let mut held = 0;
            let mut applied = vec![];
            for v in seen {
                if *v > held {
                    held = *v;
                    applied.push(*v);
                }
            }
            lost += versions.iter().filter(|v| !seen.contains(v)).count();
            overtaken += versions.iter().filter(|v| seen.contains(v) && !applied.contains(v)).count();
        }
        let outcome = *sink.outcome.lock().unwrap();
        report.push(format!("system{i}: lost {lost}, applied {} of {n}, {} duplicates delivered and skipped", outcome.applied, outcome.stale));
        assert_eq!((lost, overtaken), (0, 0), "system{i}: produced versions never applied (lost, or overtaken by a newer one)");
        assert_eq!(outcome.applied, n, "system{i}: the sink's own count of applied changes");
        assert_eq!(outcome.applied + outcome.stale, deliveries, "system{i}");
        assert_eq!(digest, expected, "system{i}");
        if i == 1 {
            let missing: Vec<_> = in_hand.iter().filter(|(k, v)| !arrived.get(k).is_some_and(|seen| seen.contains(v))).collect();
            assert!(missing.is_empty(), "records in hand at the kill never applied afterwards: {missing:?}");
        }
    }
    eprintln!(
        "soak: {n} changes ({} keys x {FINAL} versions) to 3 systems in {:.1} s; broker killed during wave {kill_broker_at} and down {} s: {failed_calls} failed calls over waves {failed_waves:?} ({failed_finals} final versions) resent; system1 killed holding {} records ({in_hand_finals} final versions); {}",
        produced.len(),
        elapsed.as_secs_f64(),
        outage.as_secs(),
        in_hand.len(),
        report.join("; ")
    );
}
