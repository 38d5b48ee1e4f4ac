//! The transports compared on the same work (the seed scenario's 10,000
//! employees into three systems' SQLite files), against the seed pilot's
//! naive design, plus real-time latency and raw producer throughput.
//!
//! Kafka is the real broker when `HR_KAFKA_BROKERS` is set (scripts/bench.sh
//! starts one), else librdkafka's embedded mock cluster. Latency percentiles
//! (p50, p99), which criterion does not compute, are printed and written to
//! `target/bench-latency.json`.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use futures::stream::{FuturesUnordered, StreamExt};
use hr_core::{ChangeEnvelope, DataType, MasterData, PermissionGrant, Propagator, SqliteSink};
use hr_sync::generate::{Dataset, GenerateOptions};
use hr_transport_kafka::{ensure_topics, EmbeddedKafka, KafkaConfig, KafkaPropagator, KafkaSubscriber, LagMonitor};
use hr_transport_rest::{serve_receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const SYSTEMS: [&str; 3] = ["payroll", "orgchart", "erp"];

/// The broker: real if `HR_KAFKA_BROKERS` is set, else embedded.
struct Broker {
    brokers: String,
    embedded: Option<EmbeddedKafka>,
}

impl Broker {
    fn start() -> Self {
        match std::env::var("HR_KAFKA_BROKERS") {
            Ok(brokers) => Broker { brokers, embedded: None },
            Err(_) => {
                let embedded = EmbeddedKafka::start().expect("embedded kafka");
                Broker { brokers: embedded.bootstrap_servers().to_string(), embedded: Some(embedded) }
            }
        }
    }

    fn kind(&self) -> &'static str {
        if self.embedded.is_some() {
            "embedded"
        } else {
            "real"
        }
    }

    /// A config whose topics exist, under a prefix unique to this run.
    fn config(&self, rt: &Runtime, name: &str, types: &[DataType]) -> KafkaConfig {
        let mut config = KafkaConfig::new(&self.brokers);
        config.topic_prefix = format!("bench.{name}.{:x}.", rand::random::<u32>());
        match &self.embedded {
            Some(mock) => mock.create_topics(&config, types).unwrap(),
            None => rt.block_on(ensure_topics(&config, types)).unwrap(),
        }
        config
    }

    /// A config whose `data_type` topic exists with the default cleanup policy (delete).
    fn plain_topic(&self, rt: &Runtime, name: &str, data_type: DataType) -> KafkaConfig {
        let mut config = KafkaConfig::new(&self.brokers);
        config.topic_prefix = format!("bench.{name}.{:x}.", rand::random::<u32>());
        match &self.embedded {
            Some(mock) => mock.create_topics(&config, &[data_type]).unwrap(),
            None => {
                let admin: AdminClient<DefaultClientContext> = config.client_config().create().unwrap();
                let topic = config.topic(data_type);
                let results = rt.block_on(admin.create_topics(&[NewTopic::new(&topic, 6, TopicReplication::Fixed(1))], &AdminOptions::new())).unwrap();
                results.into_iter().for_each(|r| r.map(|_| ()).unwrap());
            }
        }
        config
    }
}

/// The seed's 10,000 employees, merged, as (key, payload) pairs.
fn seed_employees() -> Vec<(String, Box<RawValue>)> {
    let dir = tempfile::tempdir().unwrap();
    Dataset::generate(&GenerateOptions::default()).write(dir.path()).unwrap();
    let outcome = hr_core::merge(hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap());
    outcome.state.records(DataType::Employee).map(|(k, v)| (k.to_string(), v.unwrap())).collect()
}

/// Three subscribed systems and a producer on their own topics, with the
/// monitor that confirms the groups applied what was sent.
struct Fanout {
    producer: KafkaPropagator,
    subscribers: Vec<KafkaSubscriber>,
    monitor: LagMonitor,
}

impl Fanout {
    fn start(rt: &Runtime, broker: &Broker, name: &str, dir: &std::path::Path) -> Self {
        let kafka = broker.config(rt, name, &[DataType::Employee]);
        let subscribers: Vec<KafkaSubscriber> = {
            let _guard = rt.enter();
            open_sinks(dir, name)
                .into_iter()
                .zip(SYSTEMS)
                .map(|(sink, system)| KafkaSubscriber::start(&kafka, &format!("{}{system}", kafka.topic_prefix), &[DataType::Employee], sink).unwrap())
                .collect()
        };
        let groups: Vec<&str> = subscribers.iter().map(KafkaSubscriber::group).collect();
        let monitor = LagMonitor::new(&kafka, &groups).unwrap();
        Fanout { producer: KafkaPropagator::new(&kafka).unwrap(), subscribers, monitor }
    }

    /// Produces `batch` and returns once all three groups committed it.
    fn send(&self, rt: &Runtime, batch: &[ChangeEnvelope]) {
        rt.block_on(async {
            self.producer.propagate(batch).await.unwrap();
            self.monitor.wait(&[DataType::Employee], Duration::from_secs(120), |_| {}).await.unwrap();
        })
    }

    fn shutdown(self, rt: &Runtime) {
        for s in self.subscribers {
            rt.block_on(s.shutdown()).unwrap();
        }
    }
}

/// Envelopes of every record at `version`: each round is newer than the
/// last, so every sink applies all of it (nothing is skipped as stale).
fn at_version(records: &[(String, Box<RawValue>)], data_type: DataType, version: u64) -> Vec<ChangeEnvelope> {
    records.iter().map(|(k, v)| ChangeEnvelope::with_raw_payload(data_type, k.clone(), version, "bench", Some(v.clone()))).collect()
}

fn open_sinks(dir: &std::path::Path, tag: &str) -> Vec<Arc<SqliteSink>> {
    SYSTEMS.iter().map(|s| Arc::new(SqliteSink::open(dir.join(format!("{tag}-{s}.sqlite3"))).unwrap())).collect()
}

/// Three REST receivers on loopback, one per sink.
fn start_receivers(rt: &Runtime, sinks: &[Arc<SqliteSink>], types: &[DataType]) -> Vec<RestTarget> {
    sinks
        .iter()
        .zip(SYSTEMS)
        .map(|(sink, name)| {
            let config = ReceiverConfig::new(sink.clone(), types.to_vec()).with_token("bench-token").unwrap();
            let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            rt.spawn(serve_receiver(listener, config).unwrap());
            RestTarget::new(name, &url, types.to_vec()).with_token("bench-token")
        })
        .collect()
}

fn seed_scenario(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let employees = seed_employees();
    let version = AtomicU64::new(1);
    let next = || version.fetch_add(1, Ordering::Relaxed) + 1;

    let mut g = c.benchmark_group(format!("seed_10k_employees_3_systems/{}", broker.kind()));
    g.sample_size(10).throughput(Throughput::Elements(employees.len() as u64));

    // Kafka: produce, then wait until all three groups committed (applied).
    let fanout = Fanout::start(&rt, &broker, "fanout", dir.path());
    // The groups join before measuring (the target counts after the join).
    fanout.send(&rt, &at_version(&employees, DataType::Employee, next()));
    g.bench_function("kafka", |b| {
        b.iter_batched(|| at_version(&employees, DataType::Employee, next()), |batch| fanout.send(&rt, &batch), criterion::BatchSize::PerIteration)
    });
    fanout.shutdown(&rt);

    // REST, batched (1,000 per request) and one record per request.
    let rest_sinks = open_sinks(dir.path(), "rest");
    let targets = start_receivers(&rt, &rest_sinks, &[DataType::Employee]);
    for (name, batch_size) in [("rest_batched", 1_000), ("rest_one_per_request", 1)] {
        let mut config = RestConfig::new(targets.clone());
        config.batch_size = batch_size;
        config.deadline = Duration::from_secs(600);
        let rest = RestPropagator::new(config).unwrap();
        g.bench_function(name, |b| {
            b.iter_batched(
                || at_version(&employees, DataType::Employee, next()),
                |batch| rt.block_on(rest.propagate(&batch)).unwrap(),
                criterion::BatchSize::PerIteration,
            )
        });
    }

    // The seed pilot's design: one unkeyed message per record, applied one
    // at a time with its own SELECT then INSERT or UPDATE. Its topic is not
    // compacted (compaction needs keys).
    let naive = broker.plain_topic(&rt, "naive", DataType::Employee);
    let pilot = NaivePilot::start(&naive, dir.path());
    let plain: FutureProducer = naive.client_config().create().unwrap();
    let topic = naive.topic(DataType::Employee);
    g.bench_function("naive_seed_pilot", |b| {
        b.iter_batched(
            || at_version(&employees, DataType::Employee, next()).iter().map(|c| c.to_json()).collect::<Vec<_>>(),
            |messages| {
                let goal = pilot.applied() + (messages.len() * SYSTEMS.len()) as u64;
                rt.block_on(async {
                    let sends: FuturesUnordered<_> =
                        messages.iter().map(|m| plain.send::<(), _, _>(FutureRecord::to(&topic).payload(m), Duration::from_secs(30))).collect();
                    sends.for_each(|r| async move { r.map(|_| ()).unwrap() }).await;
                    while pilot.applied() < goal {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });
    pilot.stop();
    g.finish();
}

/// Consumers written the way the seed pilot wrote them.
struct NaivePilot {
    applied: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl NaivePilot {
    fn start(config: &KafkaConfig, dir: &std::path::Path) -> Self {
        let applied = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = SYSTEMS
            .iter()
            .map(|name| {
                let consumer: BaseConsumer = config
                    .client_config()
                    .set("group.id", format!("{}{name}", config.topic_prefix))
                    .set("auto.offset.reset", "earliest")
                    .create()
                    .unwrap();
                consumer.subscribe(&[&config.topic(DataType::Employee)]).unwrap();
                let db = rusqlite::Connection::open(dir.join(format!("naive-{name}.sqlite3"))).unwrap();
                // The same pragmas as our sink, so the comparison is of designs, not settings.
                db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE employee (id TEXT PRIMARY KEY, version INTEGER, body TEXT);").unwrap();
                let (applied, stop) = (applied.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else { continue };
                        let envelope: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                        let id = envelope["key"].as_str().unwrap();
                        let body = envelope["payload"].to_string();
                        let version = envelope["version"].as_i64().unwrap();
                        let exists: bool = db.query_row("SELECT count(*) FROM employee WHERE id = ?1", [id], |r| r.get::<_, i64>(0)).unwrap() > 0;
                        if exists {
                            db.execute("UPDATE employee SET version = ?2, body = ?3 WHERE id = ?1", rusqlite::params![id, version, body]).unwrap();
                        } else {
                            db.execute("INSERT INTO employee (id, version, body) VALUES (?1, ?2, ?3)", rusqlite::params![id, version, body]).unwrap();
                        }
                        applied.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        NaivePilot { applied, stop, threads }
    }

    fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Per-sample latencies collected while criterion measures, for p50 and p99.
#[derive(Default)]
struct Latencies(Mutex<BTreeMap<String, Vec<f64>>>);

impl Latencies {
    fn record(&self, name: &str, d: Duration) {
        self.0.lock().unwrap().entry(name.to_string()).or_default().push(d.as_secs_f64() * 1000.0);
    }

    fn write(&self) {
        let mut out = serde_json::Map::new();
        for (name, samples) in self.0.lock().unwrap().iter_mut() {
            samples.sort_by(f64::total_cmp);
            let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
            println!("{name}: p50 {:.2} ms, p99 {:.2} ms over {} changes", at(0.5), at(0.99), samples.len());
            out.insert(name.clone(), serde_json::json!({"p50_ms": at(0.5), "p99_ms": at(0.99), "samples": samples.len()}));
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-latency.json");
        let _ = std::fs::write(path, serde_json::to_vec_pretty(&out).unwrap());
    }
}

fn realtime_change(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let latencies = Latencies::default();
    let mut g = c.benchmark_group(format!("realtime_one_change_3_systems/{}", broker.kind()));
    g.sample_size(20).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    let version = AtomicU64::new(1);

    // REST: one permission grant, applied in all three before the call returns.
    let sinks = open_sinks(dir.path(), "rt-rest");
    let rest = RestPropagator::new(RestConfig::new(start_receivers(&rt, &sinks, &[DataType::Permission]))).unwrap();
    let grant = PermissionGrant { employee: "A-100001".into(), system: "erp".into(), role: "approver".into(), granted: true, expires: None, at: chrono::Utc::now() };
    let payload = serde_json::value::to_raw_value(&grant).unwrap();
    let rest_name = "rest/permission_grant";
    g.bench_function(rest_name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let change = ChangeEnvelope::with_raw_payload(DataType::Permission, grant.key(), version.fetch_add(1, Ordering::Relaxed), "bench", Some(payload.clone()));
                let t = Instant::now();
                rt.block_on(rest.propagate(&[change])).unwrap();
                let d = t.elapsed();
                latencies.record(&format!("{}/{rest_name}", broker.kind()), d);
                total += d;
            }
            total
        })
    });

    // Kafka: one team transfer, until all three groups committed it.
    let fanout = Fanout::start(&rt, &broker, "realtime", dir.path());
    let employee = seed_employees().into_iter().next().unwrap();
    let send = |v: u64| fanout.send(&rt, &[ChangeEnvelope::with_raw_payload(DataType::Employee, employee.0.clone(), v, "bench", Some(employee.1.clone()))]);
    send(version.fetch_add(1, Ordering::Relaxed)); // the groups join
    let kafka_name = "kafka/team_transfer";
    g.bench_function(kafka_name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                send(version.fetch_add(1, Ordering::Relaxed));
                let d = t.elapsed();
                latencies.record(&format!("{}/{kafka_name}", broker.kind()), d);
                total += d;
            }
            total
        })
    });
    g.finish();
    fanout.shutdown(&rt);
    latencies.write();
}

fn producer_throughput(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let broker = Broker::start();
    let kafka = broker.config(&rt, "throughput", &[DataType::MasterData]);
    // 10,000 envelopes of about 1 KB each.
    let records: Vec<(String, Box<RawValue>)> = (0..10_000)
        .map(|i| {
            let md = MasterData { set: "bench".into(), code: format!("{i:06}"), name: format!("record {i}"), attributes: [("text".to_string(), format!("{i:x}").repeat(900 / format!("{i:x}").len()))].into() };
            (md.key(), serde_json::value::to_raw_value(&md).unwrap())
        })
        .collect();
    let sample = at_version(&records, DataType::MasterData, 1);
    let bytes: u64 = sample.iter().map(|c| c.to_json().len() as u64).sum();
    let mut g = c.benchmark_group(format!("producer_10k_1kb_envelopes/{}", broker.kind()));
    g.sample_size(10).throughput(Throughput::Bytes(bytes));
    let ours = KafkaPropagator::new(&kafka).unwrap();
    let version = AtomicU64::new(1);
    g.bench_function(BenchmarkId::new("hr_transport_kafka", "propagate"), |b| {
        b.iter_batched(
            || at_version(&records, DataType::MasterData, version.fetch_add(1, Ordering::Relaxed)),
            |batch| rt.block_on(ours.propagate(&batch)).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    // The same bytes through rdkafka directly, with exactly our producer's settings.
    let raw: FutureProducer = KafkaPropagator::client_config(&kafka).create().unwrap();
    let topic = kafka.topic(DataType::MasterData);
    g.bench_function(BenchmarkId::new("rdkafka_raw", "send"), |b| {
        b.iter_batched(
            || at_version(&records, DataType::MasterData, version.fetch_add(1, Ordering::Relaxed)).iter().map(|c| (c.key.clone(), c.to_json())).collect::<Vec<_>>(),
            |messages| {
                rt.block_on(async {
                    let sends: FuturesUnordered<_> = messages.iter().map(|(k, v)| raw.send(FutureRecord::to(&topic).key(k).payload(v), Duration::from_secs(30))).collect();
                    sends.for_each(|r| async move { r.map(|_| ()).unwrap() }).await;
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, seed_scenario, realtime_change, producer_throughput);
criterion_main!(benches);
