//! The transports compared on the same work, through the hub as a
//! deployment runs it: the seed scenario (10,000 employees, 10,000 teams and
//! the master data, planned against the ledger, sent, applied in three
//! systems' SQLite files, committed and confirmed), the seed pilot's naive
//! design on the same records, one real-time change through
//! `Hub::sync_changes` and one posted to the hub's HTTP API (`hub_api`),
//! and raw producer throughput. Systems go without the fields the default
//! configuration keeps from them (orgchart and erp: phone and birth date),
//! so employees travel over Kafka once per audience, as deployed.
//!
//! Kafka is the real broker when `HR_KAFKA_BROKERS` is set (scripts/bench.sh
//! starts one), else librdkafka's embedded mock cluster. Latency percentiles
//! (p50, p99), which criterion does not compute, are printed and written to
//! `target/bench-latency.json`; the real-time Kafka change also in its two
//! parts (the hub's: ledger reserve, produce until acknowledged, ledger
//! commit; then the wait until all three groups committed it).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use futures::stream::{FuturesUnordered, StreamExt};
use hr_core::{ChangeEnvelope, DataType, FieldScope, HeldBack, Ledger, MasterData, MergedState, PermissionGrant, Propagator, SqliteSink};
use hr_sync::hr_hub::{hub_api, ApiConfig, Hub, HubConfig, TargetConfig};
use hr_testdata::{Dataset, GenerateOptions};
use hr_transport_kafka::{ensure_topics, EmbeddedKafka, KafkaConfig, KafkaPropagator, KafkaSubscriber};
use hr_transport_rest::{serve_receiver, ReceiverConfig, RestConfig, RestTarget};
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

// The library leaves the allocator to the program. Ours use mimalloc: a
// merge of 2 x 100k employees takes 0.24 s with it and 0.38 s with the
// system allocator (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

    /// A config whose topics exist for every audience of the systems,
    /// under a prefix unique to this run.
    fn config(&self, rt: &Runtime, name: &str, types: &[DataType]) -> KafkaConfig {
        let mut config = KafkaConfig::new(&self.brokers);
        config.topic_prefix = format!("bench.{name}.{:x}.", rand::random::<u32>());
        for audience in SYSTEMS.map(|s| audience_of(&config, s)) {
            match &self.embedded {
                Some(mock) => mock.create_topics(&audience, types).unwrap(),
                None => rt.block_on(ensure_topics(&audience, types)).unwrap(),
            }
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

/// What `system` goes without in the default configuration (orgchart and
/// erp: phone and birth date), so every run here does the work of field
/// scoping: employees go over Kafka once per audience, and over REST each
/// system is sent its reduced copy.
/// `HR_BENCH_ALL_FIELDS=1` measures without it (every system gets every field), for comparison.
fn omitted(system: &str) -> FieldScope {
    if std::env::var_os("HR_BENCH_ALL_FIELDS").is_some_and(|v| v == "1") {
        return FieldScope::full();
    }
    HubConfig::default().targets[system].omit.clone()
}

/// `kafka` as `system`'s consumer group reads it: its audience's topics.
fn audience_of(kafka: &KafkaConfig, system: &str) -> KafkaConfig {
    KafkaConfig { fields: omitted(system), ..kafka.clone() }
}

/// The seed's three data types, the ones its scenario propagates.
const SEED_TYPES: [DataType; 3] = [DataType::Employee, DataType::OrgUnit, DataType::MasterData];

/// The seed's generated data, merged (10,000 employees over both
/// companies, 10,000 teams, 100 master-data rows).
fn seed_state() -> MergedState {
    let dir = tempfile::tempdir().unwrap();
    Dataset::generate(&GenerateOptions::default()).write(dir.path()).unwrap();
    hr_core::merge(hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap()).state
}

/// `state` with every record of the seed's three types changed, so a run
/// that alternates between the two sends every record every time.
fn every_record_changed(state: &MergedState) -> MergedState {
    let mut next = state.clone();
    next.employees.values_mut().for_each(|e| e.updated_at += chrono::Duration::seconds(1));
    next.org_units.values_mut().for_each(|o| o.name.push('\''));
    next.master_data.values_mut().for_each(|m| m.name.push('\''));
    next
}

fn seed_record_count(state: &MergedState) -> u64 {
    SEED_TYPES.iter().map(|t| state.count(*t) as u64).sum()
}

/// A hub routing `types` over `transport` to the three systems, each of
/// which receives all of `types`, with a fresh ledger in `dir`.
fn hub_for(kafka: &KafkaConfig, transport: &str, types: &[DataType], rest: RestConfig, dir: &std::path::Path) -> Hub {
    let config = HubConfig {
        routes: types.iter().map(|t| (*t, transport.to_string())).collect(),
        targets: SYSTEMS
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    TargetConfig { data_types: types.to_vec(), url: None, token_env: None, all_grants: false, omit: omitted(s), ..TargetConfig::default() },
                )
            })
            .collect(),
        topic_prefix: kafka.topic_prefix.clone(),
        ..HubConfig::default()
    };
    let ledger = Ledger::open(dir.join(format!("ledger-{transport}-{:x}.sqlite3", rand::random::<u32>()))).unwrap();
    Hub::new(&config, kafka.clone(), rest, ledger).unwrap()
}

/// The three systems' consumers of `types`, in the groups a hub on `kafka` confirms.
fn subscribers(rt: &Runtime, kafka: &KafkaConfig, types: &[DataType], sinks: Vec<Arc<SqliteSink>>) -> Vec<KafkaSubscriber> {
    let _guard = rt.enter();
    sinks
        .into_iter()
        .zip(SYSTEMS)
        .map(|(sink, system)| KafkaSubscriber::start(&audience_of(kafka, system), &kafka.group(system), types, sink).unwrap())
        .collect()
}

fn shutdown(rt: &Runtime, subscribers: Vec<KafkaSubscriber>) {
    for s in subscribers {
        rt.block_on(s.shutdown()).unwrap();
    }
}

/// One periodic run of the hub: plan, reserve, send, commit, and for Kafka
/// wait until every group committed (applied) what was sent.
fn periodic_run(rt: &Runtime, hub: &mut Hub, state: &MergedState, expected: u64) -> Duration {
    let t = Instant::now();
    rt.block_on(async {
        let outcome = hub.sync_types(state, &SEED_TYPES, &HeldBack::default()).await.unwrap();
        assert_eq!(outcome.sent, expected, "every record of the three types changed");
        let applied = outcome.receipt.applied(Duration::from_secs(120)).await.unwrap();
        assert_eq!(applied.total(SYSTEMS[0]), expected, "each system applied every record");
    });
    t.elapsed()
}

/// Criterion routine: hub runs alternating between the two states, so each
/// sends every record (updates in the systems' stores).
/// `turn` counts runs across criterion's calls, so consecutive runs always
/// alternate.
fn alternate_runs<'a>(rt: &'a Runtime, hub: &'a mut Hub, states: &'a [MergedState; 2], expected: u64, turn: &'a mut usize) -> impl FnMut(u64) -> Duration + 'a {
    move |iters| {
        (0..iters)
            .map(|_| {
                *turn += 1;
                periodic_run(rt, hub, &states[*turn % 2], expected)
            })
            .sum()
    }
}

fn seed_scenario(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let first = seed_state();
    // Measured runs alternate: odd turns send the changed state, even turns the first again.
    let states = [first.clone(), every_record_changed(&first)];
    let records = seed_record_count(&first);

    let mut g = c.benchmark_group(format!("seed_scenario_3_types_3_systems/{}", broker.kind()));
    g.sample_size(10).throughput(Throughput::Elements(records));

    // Kafka: the hub's run, then every group's committed offsets reach the end.
    let kafka = broker.config(&rt, "seed", &SEED_TYPES);
    let systems = subscribers(&rt, &kafka, &SEED_TYPES, open_sinks(dir.path(), "kafka"));
    let mut hub = hub_for(&kafka, "kafka", &SEED_TYPES, RestConfig::new(vec![]), dir.path());
    // The first run inserts and the groups join; measured runs update every record.
    let inserted = periodic_run(&rt, &mut hub, &first, records);
    println!("{}/kafka first run (inserts, groups joining): {inserted:?}", broker.kind());
    let mut turn = 0;
    g.bench_function("kafka", |b| b.iter_custom(alternate_runs(&rt, &mut hub, &states, records, &mut turn)));
    shutdown(&rt, systems);

    // REST, batched (1,000 per request) and one record per request.
    for (name, batch_size) in [("rest_batched", 1_000), ("rest_one_per_request", 1)] {
        let mut rest = RestConfig::new(start_receivers(&rt, &open_sinks(dir.path(), name), &SEED_TYPES));
        (rest.batch_size, rest.deadline) = (batch_size, Duration::from_secs(600));
        let mut hub = hub_for(&kafka, "rest", &SEED_TYPES, rest, dir.path());
        let inserted = periodic_run(&rt, &mut hub, &first, records);
        println!("{}/{name} first run (inserts): {inserted:?}", broker.kind());
        let mut turn = 0;
        g.bench_function(name, |b| b.iter_custom(alternate_runs(&rt, &mut hub, &states, records, &mut turn)));
    }

    // The seed pilot's design: every record sent as one unkeyed message per
    // run (no delta), applied one at a time with its own SELECT then INSERT
    // or UPDATE. Its topic is not compacted (compaction needs keys).
    let naive = broker.plain_topic(&rt, "naive", DataType::Employee);
    let pilot = NaivePilot::start(&naive, dir.path());
    let plain: FutureProducer = naive.client_config().create().unwrap();
    let topic = naive.topic(DataType::Employee);
    let version = AtomicU64::new(1);
    let mut turn = 0usize;
    g.bench_function("naive_seed_pilot", |b| {
        b.iter(|| {
            turn += 1;
            let v = version.fetch_add(1, Ordering::Relaxed);
            let goal = pilot.applied() + records * SYSTEMS.len() as u64;
            rt.block_on(async {
                let messages: Vec<String> = naive_envelopes(&states[turn % 2], v).iter().map(ChangeEnvelope::to_json).collect();
                let sends: FuturesUnordered<_> =
                    messages.iter().map(|m| plain.send::<(), _, _>(FutureRecord::to(&topic).payload(m), Duration::from_secs(30))).collect();
                sends.for_each(|r| async move { r.map(|_| ()).unwrap() }).await;
                while pilot.applied() < goal {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
    });
    pilot.stop();
    g.finish();
}

/// Every record of the seed's three types as an envelope at `version`, the
/// way the pilot sends them: all of them, each run.
fn naive_envelopes(state: &MergedState, version: u64) -> Vec<ChangeEnvelope> {
    SEED_TYPES
        .iter()
        .flat_map(|t| state.records(*t).map(move |(k, v)| ChangeEnvelope::with_raw_payload(*t, k.to_string(), version, "bench", Some(v.unwrap()))))
        .collect()
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
                let consumer: BaseConsumer =
                    config.client_config().set("group.id", format!("{}{name}", config.topic_prefix)).set("auto.offset.reset", "earliest").create().unwrap();
                consumer.subscribe(&[&config.topic(DataType::Employee)]).unwrap();
                let db = rusqlite::Connection::open(dir.join(format!("naive-{name}.sqlite3"))).unwrap();
                // The same pragmas as our sink, so the comparison is of designs, not settings.
                db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;").unwrap();
                for t in SEED_TYPES {
                    db.execute_batch(&format!("CREATE TABLE {t} (id TEXT PRIMARY KEY, version INTEGER, body TEXT);")).unwrap();
                }
                let (applied, stop) = (applied.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else { continue };
                        naive_apply(&db, m.payload().unwrap());
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

/// One message, the pilot's way: look the row up, then update or insert it
/// (statements cached, as JPA caches them; its own transaction per record).
fn naive_apply(db: &rusqlite::Connection, payload: &[u8]) {
    let envelope: serde_json::Value = serde_json::from_slice(payload).unwrap();
    let table = envelope["data_type"].as_str().unwrap();
    let id = envelope["key"].as_str().unwrap();
    let body = envelope["payload"].to_string();
    let version = envelope["version"].as_i64().unwrap();
    let exists = db.prepare_cached(&format!("SELECT count(*) FROM {table} WHERE id = ?1")).unwrap().query_row([id], |r| r.get::<_, i64>(0)).unwrap() > 0;
    let sql = if exists {
        format!("UPDATE {table} SET version = ?2, body = ?3 WHERE id = ?1")
    } else {
        format!("INSERT INTO {table} (id, version, body) VALUES (?1, ?2, ?3)")
    };
    db.prepare_cached(&sql).unwrap().execute(rusqlite::params![id, version, body]).unwrap();
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
            let config = ReceiverConfig::new(sink.clone(), types.to_vec()).with_token("bench-token-0123456789abcdef012345").unwrap();
            let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            rt.spawn(serve_receiver(listener, config).unwrap());
            RestTarget::new(name, &url, types.to_vec()).with_token("bench-token-0123456789abcdef012345").with_fields(omitted(name))
        })
        .collect()
}

/// Per-sample latencies collected while criterion measures, for p50 and p99.
#[derive(Default)]
struct Latencies(Mutex<BTreeMap<String, Vec<f64>>>);

impl Latencies {
    fn record(&self, name: &str, d: Duration) {
        self.0.lock().unwrap().entry(name.to_string()).or_default().push(d.as_secs_f64() * 1000.0);
    }

    /// Prints each sample set's percentiles and adds them to `target/bench-latency.json`.
    fn write(&self) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-latency.json");
        let mut out: serde_json::Map<String, serde_json::Value> =
            std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
        for (name, samples) in self.0.lock().unwrap().iter_mut() {
            samples.sort_by(f64::total_cmp);
            let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
            println!("{name}: p50 {:.2} ms, p99 {:.2} ms over {} changes", at(0.5), at(0.99), samples.len());
            out.insert(name.clone(), serde_json::json!({"p50_ms": at(0.5), "p99_ms": at(0.99), "samples": samples.len()}));
        }
        let _ = std::fs::write(path, serde_json::to_vec_pretty(&out).unwrap());
    }
}

/// Times `change` once per iteration and records each sample for p50/p99.
fn timed_samples<'a>(latencies: &'a Latencies, name: String, mut change: impl FnMut() + 'a) -> impl FnMut(u64) -> Duration + 'a {
    move |iters| {
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                change();
                let d = t.elapsed();
                latencies.record(&name, d);
                d
            })
            .sum()
    }
}

fn realtime_change(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let latencies = Latencies::default();
    let mut g = c.benchmark_group(format!("realtime_one_change_3_systems/{}", broker.kind()));
    g.sample_size(20).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    let state = seed_state();
    let kafka = broker.config(&rt, "realtime", &[DataType::Employee]);

    // REST: one permission grant through Hub::sync_changes (ledger plan,
    // reservation, send, commit), applied before it returns in erp, the one
    // system it is for (grants reach only their own system).
    let rest = RestConfig::new(start_receivers(&rt, &open_sinks(dir.path(), "rt-rest"), &[DataType::Permission]));
    let mut hub = hub_for(&kafka, "rest", &[DataType::Permission], rest, dir.path());
    let mut grant =
        PermissionGrant { employee: "A-100001".into(), system: "erp".into(), role: "approver".into(), granted: true, expires: None, at: chrono::Utc::now() };
    let rest_name = "rest/permission_grant";
    g.bench_function(rest_name, |b| {
        b.iter_custom(timed_samples(&latencies, format!("{}/{rest_name}", broker.kind()), || {
            grant.at += chrono::Duration::milliseconds(1);
            let outcome = rt.block_on(hub.sync_changes(&[(grant.key().as_str(), Some(&grant))])).unwrap();
            assert_eq!(outcome.sent, 1);
        }))
    });

    // Kafka: one team transfer through Hub::sync_changes, until all three
    // groups committed it.
    let systems = subscribers(&rt, &kafka, &[DataType::Employee], open_sinks(dir.path(), "rt-kafka"));
    let mut hub = hub_for(&kafka, "kafka", &[DataType::Employee], RestConfig::new(vec![]), dir.path());
    let mut employee = state.employees.values().next().unwrap().clone();
    let teams: Vec<hr_core::CompactString> = state.org_units.keys().filter(|t| t.contains('-')).take(2).cloned().collect();
    // Where the time goes: the hub's part (ledger reserve, produce until
    // acknowledged, ledger commit) and the wait until all three groups
    // committed it.
    let hub_part = format!("{}/kafka/team_transfer (the hub: ledger reserve, produce until acknowledged, ledger commit)", broker.kind());
    let applied_part = format!("{}/kafka/team_transfer (then applied in all three)", broker.kind());
    let mut transfer = |turn: usize, timed: bool| {
        employee.org_unit = teams[turn % 2].clone();
        rt.block_on(async {
            let started = Instant::now();
            let outcome = hub.sync_changes(&[(employee.id.as_str(), Some(&employee))]).await.unwrap();
            assert_eq!(outcome.sent, 1);
            let sent = Instant::now();
            outcome.receipt.applied(Duration::from_secs(30)).await.unwrap();
            if timed {
                latencies.record(&hub_part, sent - started);
                latencies.record(&applied_part, sent.elapsed());
            }
        })
    };
    // The groups join, and the broker's new partitions and code paths warm
    // up: the first changes after a start take tens of milliseconds.
    const WARM_UP: usize = 20;
    (0..WARM_UP).for_each(|turn| transfer(turn, false));
    let mut turn = WARM_UP - 1; // the last turn: each next one moves the employee
    let kafka_name = "kafka/team_transfer";
    g.bench_function(kafka_name, |b| {
        b.iter_custom(timed_samples(&latencies, format!("{}/{kafka_name}", broker.kind()), || {
            turn += 1;
            transfer(turn, true)
        }))
    });
    g.finish();
    shutdown(&rt, systems);
    latencies.write();
}

/// Real-time changes posted to the hub's HTTP API, each answered once
/// applied: a grant over REST (in erp, the system it is for) and a team
/// transfer over Kafka (confirmed by all three consumer groups). The hub
/// first syncs the seed's employees, teams and grants.
fn hub_api_change(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let latencies = Latencies::default();
    let types = [DataType::Employee, DataType::OrgUnit, DataType::Permission];
    let kafka = broker.config(&rt, "hubapi", &[DataType::Employee, DataType::OrgUnit]);
    let target =
        |s: &str| TargetConfig { data_types: types.to_vec(), url: None, token_env: None, all_grants: false, omit: omitted(s), ..TargetConfig::default() };
    let config = HubConfig {
        routes: [(DataType::Employee, "kafka".to_string()), (DataType::OrgUnit, "kafka".to_string()), (DataType::Permission, "rest".to_string())].into(),
        targets: SYSTEMS.iter().map(|s| (s.to_string(), target(s))).collect(),
        topic_prefix: kafka.topic_prefix.clone(),
        ..HubConfig::default()
    };
    let sinks = open_sinks(dir.path(), "hub-api");
    let rest = RestConfig::new(start_receivers(&rt, &sinks, &[DataType::Permission]));
    let systems = subscribers(&rt, &kafka, &[DataType::Employee, DataType::OrgUnit], sinks);
    let mut hub = Hub::new(&config, kafka.clone(), rest, Ledger::open(dir.path().join("hub-api-ledger.sqlite3")).unwrap()).unwrap();
    let state = seed_state();
    rt.block_on(async {
        let sent = hub.sync_types(&state, &types, &HeldBack::default()).await.unwrap();
        sent.receipt.applied(Duration::from_secs(300)).await.unwrap();
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let app = hub_api(Arc::new(tokio::sync::Mutex::new(hub)), ApiConfig::new("bench-token-0123456789abcdef012345").unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let call = |request: reqwest::RequestBuilder| {
        rt.block_on(async {
            let response = request.bearer_auth("bench-token-0123456789abcdef012345").send().await.unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        })
    };

    let mut g = c.benchmark_group(format!("hub_api_one_change_3_systems/{}", broker.kind()));
    g.sample_size(20).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    let employee = state.employees.values().find(|e| e.status == hr_core::EmployeeStatus::Active).unwrap().id.clone();
    let mut at = chrono::Utc::now();
    let mut turn = 0_u64;
    let name = "rest/permission_grant";
    g.bench_function(name, |b| {
        b.iter_custom(timed_samples(&latencies, format!("{}/hub_api/{name}", broker.kind()), || {
            turn += 1;
            at += chrono::Duration::milliseconds(1);
            let op = if turn.is_multiple_of(2) { "revoke" } else { "grant" };
            let line = serde_json::json!({"employee": employee, "system": "erp", "role": "approver", "op": op, "at": at.to_rfc3339()});
            call(client.post(format!("{api}/hr/v1/permissions")).body(line.to_string()));
        }))
    });
    let teams: Vec<hr_core::CompactString> = state.org_units.keys().filter(|t| t.contains('-')).take(2).cloned().collect();
    let name = "kafka/team_transfer";
    g.bench_function(name, |b| {
        b.iter_custom(timed_samples(&latencies, format!("{}/hub_api/{name}", broker.kind()), || {
            turn += 1;
            at += chrono::Duration::milliseconds(1);
            let change = serde_json::json!({"at": at.to_rfc3339(), "org_unit": teams[turn as usize % 2]});
            call(client.patch(format!("{api}/hr/v1/employees/{employee}")).json(&change));
        }))
    });
    g.finish();
    shutdown(&rt, systems);
    latencies.write();
}

/// Envelopes of every record at `version`.
fn at_version(records: &[(String, Box<RawValue>)], data_type: DataType, version: u64) -> Vec<ChangeEnvelope> {
    records.iter().map(|(k, v)| ChangeEnvelope::with_raw_payload(data_type, k.clone(), version, "bench", Some(v.clone()))).collect()
}

fn producer_throughput(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let broker = Broker::start();
    let kafka = broker.config(&rt, "throughput", &[DataType::MasterData]);
    // 10,000 envelopes of about 1 KB each.
    let records: Vec<(String, Box<RawValue>)> = (0..10_000)
        .map(|i| {
            let md = MasterData {
                set: "bench".into(),
                code: format!("{i:06}").into(),
                name: format!("record {i}").into(),
                attributes: [("text".into(), format!("{i:x}").repeat(900 / format!("{i:x}").len()).into())].into(),
            };
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
            || {
                at_version(&records, DataType::MasterData, version.fetch_add(1, Ordering::Relaxed))
                    .iter()
                    .map(|c| (c.key.clone(), c.to_json()))
                    .collect::<Vec<_>>()
            },
            |messages| {
                rt.block_on(async {
                    let sends: FuturesUnordered<_> =
                        messages.iter().map(|(k, v)| raw.send(FutureRecord::to(&topic).key(k).payload(v), Duration::from_secs(30))).collect();
                    sends.for_each(|r| async move { r.map(|_| ()).unwrap() }).await;
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, seed_scenario, realtime_change, hub_api_change, producer_throughput);
criterion_main!(benches);
