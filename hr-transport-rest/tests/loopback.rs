//! The REST transport over real HTTP on loopback, with SQLite sinks.

use hr_core::{ChangeEnvelope, DataType, MasterData, PropagateError, Propagator, Sink, SqliteSink};
use hr_transport_rest::{serve_receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "loopback-test-token-0123456789abcdef";

async fn serve_on(listener: tokio::net::TcpListener, sink: Arc<SqliteSink>, allowed: Vec<DataType>) -> tokio::task::JoinHandle<()> {
    let config = ReceiverConfig::new(sink, allowed).with_token(TOKEN).unwrap().with_body_limit(4 << 20);
    tokio::spawn(serve_receiver(listener, config).unwrap())
}

async fn start(allowed: Vec<DataType>) -> (SocketAddr, Arc<SqliteSink>, tokio::task::JoinHandle<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(SqliteSink::open(dir.path().join("t.sqlite3")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = serve_on(listener, sink.clone(), allowed).await;
    (addr, sink, task, dir)
}

fn md(i: usize, version: u64) -> ChangeEnvelope {
    let m = MasterData { set: "md.category".into(), code: format!("C{i:05}").into(), name: format!("v{version}").into(), attributes: Default::default() };
    ChangeEnvelope::upsert(DataType::MasterData, m.key(), version, "test", &m).unwrap()
}

fn employees(n: usize) -> Vec<ChangeEnvelope> {
    (0..n)
        .map(|i| {
            let e = hr_core::Employee {
                id: format!("B-{i}").into(),
                source_ids: vec![format!("B-{i}").into()],
                company: hr_core::Company::B,
                name: "이서연".into(),
                name_en: None,
                email: None,
                phone: Some(hr_core::Sensitive::new("010-0000-0000".into())),
                birth_date: None,
                org_unit: "B-1".into(),
                grade: "staff".into(),
                status: hr_core::EmployeeStatus::Active,
                hire_date: chrono::NaiveDate::from_ymd_opt(2021, 3, 1).unwrap(),
                termination_date: None,
                manager: None,
                updated_at: chrono::Utc::now(),
            };
            ChangeEnvelope::upsert(DataType::Employee, e.id.clone(), 1, "hub", &e).unwrap()
        })
        .collect()
}

fn target(name: &str, addr: SocketAddr, types: Vec<DataType>) -> RestTarget {
    RestTarget::new(name, &format!("http://{addr}"), types).with_token(TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_targets_receive_ten_thousand_employees_with_equal_digests() {
    let mut targets = vec![];
    let mut sinks = vec![];
    let mut keep = vec![];
    for name in ["payroll", "orgchart", "erp"] {
        let (addr, sink, task, dir) = start(vec![DataType::Employee]).await;
        targets.push(target(name, addr, vec![DataType::Employee]));
        sinks.push(sink);
        keep.push((task, dir));
    }
    let changes = employees(10_000);
    let report = RestPropagator::new(RestConfig::new(targets)).unwrap().propagate(&changes).await.unwrap();
    assert!(report.is_applied(), "a REST receipt is applied on return");
    assert_eq!(&report.applied(Duration::ZERO).await.unwrap(), report.delivered());
    let local = hr_core::MemorySink::default();
    local.apply(&changes).await.unwrap();
    let hub = local.digest(DataType::Employee).await.unwrap();
    for (sink, name) in sinks.iter().zip(["payroll", "orgchart", "erp"]) {
        assert_eq!(report.delivered().total(name), 10_000);
        assert_eq!(sink.digest(DataType::Employee).await.unwrap(), hub);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_is_named_the_others_apply_and_a_retry_converges() {
    let (a1, s1, _t1, _d1) = start(vec![DataType::MasterData]).await;
    let (a2, s2, _t2, _d2) = start(vec![DataType::MasterData]).await;
    // The third target's port is reserved but nobody listens yet.
    let down = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down_addr = down.local_addr().unwrap();
    drop(down);
    let mut config = RestConfig::new(vec![
        target("payroll", a1, vec![DataType::MasterData]),
        target("orgchart", a2, vec![DataType::MasterData]),
        target("erp", down_addr, vec![DataType::MasterData]),
    ]);
    config.deadline = Duration::from_millis(800);
    config.batch_size = 100;
    let propagator = RestPropagator::new(config).unwrap();
    let changes: Vec<_> = (0..300).map(|i| md(i, 1)).collect();
    let err = propagator.propagate(&changes).await.unwrap_err();
    assert_eq!(err.failed_targets(), vec!["erp"]);
    let text = err.to_string();
    assert!(text.contains("erp") && text.contains("connect"), "{text}");
    match &err {
        hr_core::PropagateError::Incomplete { delivered, .. } => {
            assert_eq!(delivered.total("payroll"), 300);
            assert_eq!(delivered.total("orgchart"), 300);
            assert_eq!(delivered.total("erp"), 0, "nothing reported as applied that was not");
        }
        other => panic!("{other}"),
    }
    assert_eq!(s1.count(DataType::MasterData).unwrap(), 300);

    // erp comes back on its address; the whole batch is re-sent.
    let dir = tempfile::tempdir().unwrap();
    let s3 = Arc::new(SqliteSink::open(dir.path().join("erp.sqlite3")).unwrap());
    let _t3 = serve_on(tokio::net::TcpListener::bind(down_addr).await.unwrap(), s3.clone(), vec![DataType::MasterData]).await;
    propagator.propagate(&changes).await.unwrap();
    let d = s1.digest(DataType::MasterData).await.unwrap();
    assert_eq!(d, s2.digest(DataType::MasterData).await.unwrap());
    assert_eq!(d, s3.digest(DataType::MasterData).await.unwrap());
    assert_eq!(d.count, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_target_hits_the_deadline_with_a_clear_error() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _stall = tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut config = RestConfig::new(vec![target("erp", addr, vec![DataType::MasterData])]);
    config.deadline = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let err = RestPropagator::new(config).unwrap().propagate(&[md(1, 1)]).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("deadline"), "{err}");
    assert_eq!(err.failed_targets(), vec!["erp"]);
}

/// A refusal (403: the receiver does not take this data type) cannot be
/// cured by waiting: the propagator reports it as final at once instead of
/// retrying until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_final_not_retried_until_the_deadline() {
    let (addr, sink, _task, _dir) = start(vec![DataType::Employee]).await;
    let mut config = RestConfig::new(vec![target("erp", addr, vec![DataType::MasterData])]);
    config.deadline = Duration::from_secs(120);
    let err = RestPropagator::new(config).unwrap().propagate(&[md(1, 1)]).await.unwrap_err();
    let PropagateError::Incomplete { failures, .. } = &err else { panic!("{err}") };
    assert!(failures[0].cause.contains("403") && !failures[0].cause.contains("deadline"), "{err}");
    assert!(!failures[0].retriable, "{err}");
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap().count, 0);
}

async fn post(addr: SocketAddr, body: Vec<u8>, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(format!("http://{addr}/hr/v1/changes")).header("content-type", "application/json").body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_the_sink_unchanged() {
    let (addr, sink, _t, _d) = start(vec![DataType::MasterData]).await;
    let one = |c: &ChangeEnvelope| format!("[{}]", c.to_json()).into_bytes();
    let before = sink.digest(DataType::MasterData).await.unwrap();

    assert_eq!(post(addr, one(&md(1, 1)), None).await.0, 401);
    assert_eq!(post(addr, one(&md(1, 1)), Some("wrong")).await.0, 401);

    let comp = hr_core::Compensation {
        employee_id: "A-1".into(),
        base_salary: hr_core::Sensitive::new(1),
        currency: "KRW".into(),
        effective_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    };
    let pay = ChangeEnvelope::upsert(DataType::Compensation, "A-1", 1, "hub", &comp).unwrap();
    let (status, body) = post(addr, format!("[{},{}]", md(1, 1).to_json(), pay.to_json()).into_bytes(), Some(TOKEN)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("data_type_not_allowed")));

    let huge: Vec<_> = (0..20_000).map(|i| md(i, 1)).collect();
    let body = format!("[{}]", huge.iter().map(|c| c.to_json()).collect::<Vec<_>>().join(","));
    assert!(body.len() > 4 << 20);
    assert_eq!(post(addr, body.into_bytes(), Some(TOKEN)).await.0, 413);

    let (status, body) = post(addr, b"[{\"event_id\": ".to_vec(), Some(TOKEN)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("malformed_json")));
    let mut bad = md(2, 1);
    bad.schema = "hr.v0".into();
    let (status, body) = post(addr, format!("[{},{}]", md(1, 1).to_json(), bad.to_json()).into_bytes(), Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("change 1"), "{body}");

    assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), before, "no refusal changed the sink");
    assert_eq!(sink.count(DataType::MasterData).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_reordered_batches_end_exact() {
    let (addr, sink, _t, _d) = start(vec![DataType::MasterData]).await;
    let mut config = RestConfig::new(vec![target("erp", addr, vec![DataType::MasterData])]);
    config.batch_size = 10;
    let p = RestPropagator::new(config).unwrap();
    let v1: Vec<_> = (0..50).map(|i| md(i, 1)).collect();
    let v2: Vec<_> = (0..50).map(|i| md(i, 2)).collect();
    p.propagate(&v2).await.unwrap();
    p.propagate(&v1).await.unwrap(); // late, older
    p.propagate(&v2).await.unwrap(); // same batch again (same idempotency keys)
    let mut expected = hr_core::Digest::default();
    for c in &v2 {
        expected.add(&c.key, 2, Some(hr_core::ContentHash::of(c.payload_json().unwrap())));
    }
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), expected);
    assert_eq!(sink.get(DataType::MasterData, "md.category:C00003").unwrap().unwrap().body.unwrap(), v2[3].payload_json().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_and_digest_are_served() {
    let (addr, sink, _t, _d) = start(vec![DataType::MasterData]).await;
    let doc: serde_json::Value = reqwest::get(format!("http://{addr}/hr/v1/openapi.json")).await.unwrap().json().await.unwrap();
    let responses = &doc["paths"]["/hr/v1/changes"]["post"]["responses"];
    for status in ["401", "408", "413", "415", "422", "503"] {
        assert_eq!(responses[status]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error", "{status}");
    }
    // Every reference resolves from the document's root, as OpenAPI tools resolve them.
    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| match v {
                serde_json::Value::String(r) if k == "$ref" => out.push(r.clone()),
                other => refs(other, out),
            }),
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = vec![];
    refs(&doc, &mut found);
    assert!(found.iter().any(|r| r == "#/components/schemas/Employee"), "the envelope's record types are referenced: {found:?}");
    for reference in found {
        assert!(doc.pointer(reference.trim_start_matches('#')).is_some(), "{reference} does not resolve");
    }

    // A digest of a sink holding data (live records and a tombstone), compared with the expected value.
    let mut changes: Vec<_> = (0..20).map(|i| md(i, 3)).collect();
    changes.push(ChangeEnvelope::delete(DataType::MasterData, md(7, 1).key, 4, "test"));
    sink.apply(&changes).await.unwrap();
    let mut expected = hr_core::Digest::default();
    for (i, change) in changes.iter().take(20).enumerate() {
        if i == 7 {
            expected.add(&change.key, 4, None);
        } else {
            expected.add(&change.key, 3, Some(hr_core::ContentHash::of(change.payload_json().unwrap())));
        }
    }
    let digest = reqwest::Client::new().get(format!("http://{addr}/hr/v1/digest")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(digest.status().as_u16(), 200);
    let served: std::collections::BTreeMap<DataType, hr_core::Digest> = digest.json().await.unwrap();
    assert_eq!(served[&DataType::MasterData], expected);
    assert_eq!((expected.count, expected.tombstones), (19, 1));
    let propagator = RestPropagator::new(RestConfig::new(vec![target("erp", addr, vec![DataType::MasterData])])).unwrap();
    assert_eq!(propagator.digests("erp").await.unwrap()[&DataType::MasterData], expected);
}

/// A store that counts the full reads it is asked for.
#[derive(Default)]
struct CountingRescans {
    inner: hr_core::MemorySink,
    rescans: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Sink for CountingRescans {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<hr_core::ApplyOutcome, hr_core::SinkError> {
        self.inner.apply(batch).await
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<hr_core::DigestEntry>, hr_core::SinkError> {
        self.inner.entries(data_type).await
    }

    async fn rescan(&self) -> Result<(), hr_core::SinkError> {
        self.rescans.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_full_read_is_made_when_the_hub_asks_for_one_and_only_then() {
    let sink = Arc::new(CountingRescans::default());
    sink.apply(&[md(1, 1), md(2, 1)]).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ReceiverConfig::new(sink.clone(), vec![DataType::MasterData]).with_token(TOKEN).unwrap();
    let _served = tokio::spawn(serve_receiver(listener, config).unwrap());
    let p = RestPropagator::new(RestConfig::new(vec![target("erp", addr, vec![DataType::MasterData])])).unwrap();
    let rescans = || sink.rescans.load(std::sync::atomic::Ordering::SeqCst);

    let maintained = p.digests("erp").await.unwrap();
    p.bucket_digests("erp", DataType::MasterData).await.unwrap();
    assert_eq!(rescans(), 0, "a digest is answered as the system maintains it");
    let rescanned = p.rescanned_digests("erp").await.unwrap();
    assert_eq!(rescans(), 1);
    assert_eq!(rescanned, maintained);
    assert_eq!(rescanned[&DataType::MasterData].count, 2);
    let bogus = reqwest::Client::new().get(format!("http://{addr}/hr/v1/digest?scan=some")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(bogus.status().as_u16(), 400);
    assert_eq!(rescans(), 1);
    // A query string that cannot be read at all gets the API's JSON error, as every refusal does.
    for path in ["/hr/v1/digest?scan=full&scan=full", "/hr/v1/entries/master_data?buckets=1&buckets=2", "/hr/v1/entries/master_data"] {
        let unreadable = reqwest::Client::new().get(format!("http://{addr}{path}")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(unreadable.status().as_u16(), 400, "{path}");
        let answer: serde_json::Value = unreadable.json().await.unwrap();
        assert_eq!(answer["error"], "bad_query", "{path}: {answer}");
        assert!(answer["message"].as_str().unwrap().starts_with("the query string cannot be read"), "{path}: {answer}");
    }
    assert_eq!(rescans(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_digests_and_entries_name_exactly_the_rows_that_differ() {
    let (addr, sink, _t, dir) = start(vec![DataType::MasterData]).await;
    let p = RestPropagator::new(RestConfig::new(vec![target("erp", addr, vec![DataType::MasterData])])).unwrap();
    let changes: Vec<_> = (0..300).map(|i| md(i, 1)).collect();
    p.propagate(&changes).await.unwrap();
    let expected: Vec<hr_core::DigestEntry> = changes
        .iter()
        .map(|c| hr_core::DigestEntry { key: c.key.clone(), version: 1, content: Some(hr_core::ContentHash::of(c.payload_json().unwrap())) })
        .collect();
    let before = p.bucket_digests("erp", DataType::MasterData).await.unwrap();
    assert_eq!(before, hr_core::Digest::buckets(&expected));

    // A hand edit of one row's body changes its bucket, and only its bucket.
    let edited = "md.category:C00042";
    let conn = rusqlite::Connection::open(dir.path().join("t.sqlite3")).unwrap();
    conn.execute("UPDATE master_data SET body = replace(body, 'v1', 'v9') WHERE id = ?1", [edited]).unwrap();
    let after = p.bucket_digests("erp", DataType::MasterData).await.unwrap();
    let differing: Vec<usize> = (0..hr_core::BUCKETS).filter(|&b| before[b] != after[b]).collect();
    assert_eq!(differing, vec![hr_core::bucket_of(edited)]);
    let entries = p.entries("erp", DataType::MasterData, &differing).await.unwrap();
    assert!(entries.iter().all(|e| e.bucket() == differing[0]) && !entries.is_empty());
    let held = entries.iter().find(|e| e.key == edited).unwrap();
    assert_ne!(held.content, expected.iter().find(|e| e.key == edited).unwrap().content);
    assert_eq!(sink.entries(DataType::MasterData).await.unwrap().len(), 300);

    // Refusals: a type this system does not take, a bucket out of range, no token.
    let client = reqwest::Client::new();
    let status = |path: String, token: bool| {
        let mut r = client.get(format!("http://{addr}{path}"));
        if token {
            r = r.bearer_auth(TOKEN);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/hr/v1/digest/compensation/buckets".into(), true).await, 403);
    assert_eq!(status("/hr/v1/digest/salary/buckets".into(), true).await, 404);
    assert_eq!(status("/hr/v1/entries/master_data?buckets=256".into(), true).await, 400);
    assert_eq!(status("/hr/v1/entries/master_data?buckets=1".into(), false).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_goes_without_phone_numbers_is_sent_none_and_one_that_keeps_them_is() {
    let (addr_full, full, _t1, _d1) = start(vec![DataType::Employee]).await;
    let (addr_scoped, scoped, _t2, _d2) = start(vec![DataType::Employee]).await;
    let without_phone = hr_core::FieldScope::full().omitting(DataType::Employee, ["phone"]).unwrap();
    let config = RestConfig::new(vec![
        target("payroll", addr_full, vec![DataType::Employee]),
        target("erp", addr_scoped, vec![DataType::Employee]).with_fields(without_phone.clone()),
    ]);
    let propagator = RestPropagator::new(config).unwrap();
    assert_eq!(propagator.field_scope("erp"), without_phone);
    let report = propagator.propagate(&employees(50)).await.unwrap().delivered().clone();
    assert_eq!((report.total("payroll"), report.total("erp")), (50, 50));

    // Read back from the stores (plain sinks: nothing on the receiving side removed anything).
    let phones_in = |sink: &SqliteSink| {
        let conn = rusqlite::Connection::open(sink.path()).unwrap();
        conn.query_row("SELECT count(*) FROM employee WHERE json_extract(body, '$.phone') IS NOT NULL", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    assert_eq!(phones_in(&full), 50);
    assert_eq!(phones_in(&scoped), 0, "the request itself carried no phone number");
    assert_ne!(full.digest(DataType::Employee).await.unwrap(), scoped.digest(DataType::Employee).await.unwrap());
}

/// Read back through [`hr_core::TargetReader`]: what the receiver holds,
/// per data type, per bucket and entry by entry, as its sink holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_is_read_back_as_its_sink_holds_it() {
    use hr_core::TargetReader;
    let (addr, sink, _task, _dir) = start(vec![DataType::Employee, DataType::MasterData]).await;
    let rest = RestPropagator::new(RestConfig::new(vec![target("erp", addr, vec![DataType::Employee, DataType::MasterData])])).unwrap();
    let changes: Vec<ChangeEnvelope> = employees(200).into_iter().chain((0..50).map(|i| md(i, 1))).collect();
    rest.propagate(&changes).await.unwrap();
    let reader: &dyn TargetReader = &rest;
    assert_eq!(reader.readable_targets(), ["erp"]);
    let digests = reader.digests("erp", &[DataType::Employee, DataType::MasterData, DataType::OrgUnit]).await.unwrap();
    assert_eq!(digests[&DataType::Employee], sink.digest(DataType::Employee).await.unwrap());
    assert_eq!(digests[&DataType::MasterData], sink.digest(DataType::MasterData).await.unwrap());
    assert_eq!(digests[&DataType::OrgUnit], hr_core::Digest::default(), "a type it holds none of");
    let held = sink.entries(DataType::Employee).await.unwrap();
    assert_eq!(reader.bucket_digests("erp", DataType::Employee).await.unwrap(), hr_core::Digest::buckets(&held));
    let bucket = held[0].bucket();
    let mut read = reader.entries("erp", DataType::Employee, &[bucket]).await.unwrap();
    let mut want: Vec<_> = held.into_iter().filter(|e| e.bucket() == bucket).collect();
    read.sort_by(|a, b| a.key.cmp(&b.key));
    want.sort_by(|a, b| a.key.cmp(&b.key));
    assert!(!want.is_empty());
    assert_eq!(read, want);
    let unknown = reader.entries("nobody", DataType::Employee, &[0]).await.unwrap_err();
    assert_eq!(unknown.target, "nobody");
}
