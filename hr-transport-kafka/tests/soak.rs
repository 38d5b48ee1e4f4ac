//! Soak with faults: many changes through a real broker to three
//! subscribers while the broker is killed (SIGKILL) and restarted once and
//! one subscriber is killed and restarted once. At the end every sink's
//! digest equals the expected one; the run reports records lost (must be 0)
//! and duplicates delivered but not applied.
//!
//! `HR_SOAK_CHANGES` sets the size (default 40,000 for CI; scripts/soak.sh
//! runs 1,000,000). Uses its own broker on port 19192, started and stopped here.

use async_trait::async_trait;
use hr_core::{ApplyOutcome, ChangeEnvelope, DataType, DigestEntry, Propagator, Sink, SinkError, SqliteSink};
use hr_transport_kafka::{ensure_topics, wait_until_applied, KafkaConfig, KafkaPropagator, KafkaSubscriber};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// A SQLite sink that counts what it applied and what it skipped as stale,
/// across subscriber lifetimes.
struct CountingSink {
    inner: SqliteSink,
    applied: AtomicU64,
    stale: AtomicU64,
}

#[async_trait]
impl Sink for CountingSink {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        let outcome = self.inner.apply(batch).await?;
        self.applied.fetch_add(outcome.applied as u64, Ordering::Relaxed);
        self.stale.fetch_add(outcome.stale as u64, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.inner.entries(data_type).await
    }
}

/// Versions 1..=4 of `n / 4` keys, in rounds; a tenth of the keys end deleted.
fn history(n: usize) -> Vec<ChangeEnvelope> {
    let keys = (n / 4).max(1);
    (1..=4u64)
        .flat_map(|v| {
            (0..keys).map(move |k| {
                if v == 4 && k % 10 == 0 {
                    ChangeEnvelope::delete(DataType::MasterData, md(k, v).key, v, "soak")
                } else {
                    md(k, v)
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_a_broker_kill_and_a_subscriber_kill_loses_nothing() {
    let n: usize = std::env::var("HR_SOAK_CHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(40_000);
    let port = 19192;
    broker_script("start", port);
    let _broker = BrokerGuard(port);
    let mut config = KafkaConfig::new(format!("127.0.0.1:{port}"));
    config.topic_prefix = format!("t.soak.{}.", uuid_suffix());
    config.delivery_timeout = Duration::from_secs(20);
    ensure_topics(&config, &[DataType::MasterData]).await.unwrap();

    let changes = history(n);
    let expected = digest_of(&changes);
    let dir = tempfile::tempdir().unwrap();
    let sinks: Vec<Arc<CountingSink>> = (0..3)
        .map(|i| Arc::new(CountingSink { inner: SqliteSink::open(dir.path().join(format!("s{i}.sqlite3"))).unwrap(), applied: 0.into(), stale: 0.into() }))
        .collect();
    let groups: Vec<String> = (0..3).map(|i| format!("{}system{i}", config.topic_prefix)).collect();
    let start = |i: usize| KafkaSubscriber::start(&config, &groups[i], &[DataType::MasterData], sinks[i].clone()).unwrap();
    let mut subscribers: Vec<Option<KafkaSubscriber>> = (0..3).map(|i| Some(start(i))).collect();

    let propagator = KafkaPropagator::new(&config).unwrap();
    let chunks: Vec<&[ChangeEnvelope]> = changes.chunks(5_000).collect();
    let (kill_broker_at, kill_subscriber_at) = (chunks.len() / 3, 2 * chunks.len() / 3);
    let started = Instant::now();
    let mut failed_calls = 0;
    let mut broker_restart = None;
    for (i, chunk) in chunks.iter().enumerate() {
        if i == kill_broker_at {
            broker_restart = Some(std::thread::spawn(move || {
                broker_script("kill", port);
                std::thread::sleep(Duration::from_secs(1));
                broker_script("start", port);
            }));
        }
        if i == kill_subscriber_at {
            subscribers[1].take().unwrap().kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            subscribers[1] = Some(start(1));
        }
        // A failed call is retried with the same chunk: the version rule makes the resend harmless.
        while let Err(e) = propagator.propagate(chunk).await {
            failed_calls += 1;
            eprintln!("chunk {i}: {e}; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
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

    // Lost: keys whose final version or deletion differs from the history's last word.
    let mut latest: BTreeMap<&str, &ChangeEnvelope> = BTreeMap::new();
    for c in &changes {
        latest.insert(&c.key, c);
    }
    let mut report = vec![];
    for (i, sink) in sinks.iter().enumerate() {
        let lost = latest
            .values()
            .filter(|c| {
                let held = sink.inner.get(DataType::MasterData, &c.key).unwrap();
                held.is_none_or(|h| h.version != c.version || h.deleted != (c.op == hr_core::Operation::Delete))
            })
            .count();
        let (applied, stale) = (sink.applied.load(Ordering::Relaxed), sink.stale.load(Ordering::Relaxed));
        report.push(format!("system{i}: lost {lost}, applied {applied}, duplicates delivered and not applied {stale}"));
        assert_eq!(lost, 0, "system{i} lost records");
        assert!(applied <= n as u64, "system{i} applied {applied} of {n} changes: something was applied twice");
        assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), expected, "system{i}");
    }
    eprintln!("soak: {n} changes to 3 systems in {:.1} s, broker killed and restarted once, one subscriber killed and restarted once, {failed_calls} failed calls retried; {}", elapsed.as_secs_f64(), report.join("; "));
}
