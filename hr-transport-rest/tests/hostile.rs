//! The receiver against hostile and broken callers: each test is one finding
//! of the "Receiver security" review, and failed on the receiver before it.

use async_trait::async_trait;
use hr_core::MAX_VERSION;
use hr_core::{ApplyOutcome, ChangeEnvelope, DataType, DigestEntry, MasterData, MemorySink, Propagator, Sink, SinkError, SqliteSink};
use hr_transport_rest::{serve_receiver, serve_with_limits, ConnectionLimits, ReceiverConfig, ReceiverError, RestConfig, RestPropagator, RestTarget};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "hostile-test-token-0123456789abcdef0";
const SSN: &str = "900101-1234567";

async fn serve(config: ReceiverConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_receiver(listener, config).unwrap());
    addr
}

fn config(sink: Arc<dyn Sink>, types: Vec<DataType>) -> ReceiverConfig {
    ReceiverConfig::new(sink, types).with_token(TOKEN).unwrap()
}

fn md(code: &str, version: u64) -> ChangeEnvelope {
    let m = MasterData { set: "md.category".into(), code: code.into(), name: format!("v{version}").into(), attributes: Default::default() };
    ChangeEnvelope::upsert(DataType::MasterData, m.key(), version, "test", &m).unwrap()
}

fn employee(id: &str) -> hr_core::Employee {
    hr_core::Employee {
        id: id.into(),
        source_ids: vec![id.into()],
        company: hr_core::Company::B,
        name: "이서연".into(),
        name_en: None,
        email: None,
        phone: None,
        birth_date: None,
        org_unit: "B-1".into(),
        grade: "staff".into(),
        status: hr_core::EmployeeStatus::Active,
        hire_date: chrono::NaiveDate::from_ymd_opt(2021, 3, 1).unwrap(),
        termination_date: None,
        manager: None,
        updated_at: chrono::Utc::now(),
    }
}

/// An employee upsert whose payload is the record's JSON with `extra` fields added.
fn employee_with(id: &str, extra: &str) -> ChangeEnvelope {
    let record = serde_json::to_string(&employee(id)).unwrap();
    let payload = format!("{},{extra}}}", &record[..record.len() - 1]);
    ChangeEnvelope::with_raw_payload(DataType::Employee, id.into(), 1, "test", Some(serde_json::value::RawValue::from_string(payload).unwrap()))
}

fn batch(changes: &[ChangeEnvelope]) -> Vec<u8> {
    format!("[{}]", changes.iter().map(ChangeEnvelope::to_json).collect::<Vec<_>>().join(",")).into_bytes()
}

async fn post_with(addr: SocketAddr, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("http://{addr}/hr/v1/changes")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("answer {status} is not JSON: {text:?}")))
}

async fn post(addr: SocketAddr, body: Vec<u8>) -> (u16, Value) {
    post_with(addr, body, &[("content-type", "application/json"), ("authorization", &format!("Bearer {TOKEN}"))]).await
}

/// Writes `head` (and `body`) on a fresh connection.
async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// The server's answer: its head and as much body as its content-length
/// says, or what came before it closed the connection; `None` if neither
/// happens within `within`.
async fn answer_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = vec![];
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        while !complete(&received) {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&received).into_owned())
}

fn complete(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
    length.is_some_and(|n| body.len() >= n)
}

/// Whether the server closes the connection within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

fn head(length: usize, authorization: Option<&str>, content_type: &str) -> String {
    let auth = authorization.map(|a| format!("authorization: {a}\r\n")).unwrap_or_default();
    format!("POST /hr/v1/changes HTTP/1.1\r\nhost: receiver\r\ncontent-type: {content_type}\r\n{auth}content-length: {length}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_the_token_is_answered_401_before_any_body_is_read() {
    let addr = serve(config(Arc::new(MemorySink::default()), vec![DataType::MasterData])).await;
    // 16 MB announced, nothing sent: the old receiver waited for the body before checking the token.
    for authorization in [None, Some("Bearer wrong"), Some("Basic aGk6aGk=")] {
        let mut stream = raw(addr, &head(16_000_000, authorization, "application/json"), b"").await;
        let answer = answer_within(&mut stream, Duration::from_secs(3)).await.expect("answered without waiting for the body");
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("www-authenticate: bearer"), "{answer}");
        assert!(answer.contains(r#""error":"unauthorized""#), "{answer}");
    }
    // A caller that does send its (large) body still gets the 401, not a reset
    // connection: the refused body is discarded for a while before closing.
    for _ in 0..5 {
        let (status, body) = post_with(addr, vec![b' '; 2 << 20], &[("content-type", "application/json"), ("authorization", "Bearer wrong")]).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_content_type_is_415_before_any_body_is_read() {
    let addr = serve(config(Arc::new(MemorySink::default()), vec![DataType::MasterData])).await;
    let mut stream = raw(addr, &head(16_000_000, Some(&format!("Bearer {TOKEN}")), "text/plain"), b"").await;
    let answer = answer_within(&mut stream, Duration::from_secs(3)).await.expect("answered without waiting for the body");
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    let auth = format!("Bearer {TOKEN}");
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(content_type.map(|c| ("content-type", c)));
        let (status, body) = post_with(addr, batch(&[md("C1", 1)]), &headers).await;
        assert_eq!((status, body["error"].as_str()), (415, Some("unsupported_media_type")), "{content_type:?}");
    }
    let (status, _) = post_with(addr, batch(&[md("C1", 1)]), &[("authorization", &auth), ("content-type", "Application/JSON; charset=utf-8")]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let sink = Arc::new(MemorySink::default());
    let addr = serve(config(sink.clone(), vec![DataType::MasterData])).await;
    for (i, scheme) in ["Bearer", "bearer", "BEARER", "bEaReR"].into_iter().enumerate() {
        let auth = format!("{scheme} {TOKEN}");
        let (status, _) = post_with(addr, batch(&[md(&format!("C{i}"), 1)]), &[("authorization", &auth), ("content-type", "application/json")]).await;
        assert_eq!(status, 200, "{scheme}");
    }
    let digest = reqwest::Client::new().get(format!("http://{addr}/hr/v1/digest")).header("authorization", format!("bearer {TOKEN}")).send().await.unwrap();
    assert_eq!(digest.status().as_u16(), 200);
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap().count, 4);
}

#[tokio::test]
async fn a_short_token_is_refused_and_no_token_serves_only_loopback() {
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::default());
    let one_short = "x".repeat(31);
    for weak in ["", " ", "\t", "s3cret", one_short.as_str()] {
        let refused = ReceiverConfig::new(sink.clone(), vec![DataType::MasterData]).with_token(weak);
        assert!(matches!(refused, Err(ReceiverError::WeakToken(_))), "{weak:?}");
    }
    let open = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    match serve_receiver(open, ReceiverConfig::new(sink.clone(), vec![DataType::MasterData])) {
        Err(e @ ReceiverError::OpenOnNetwork(_)) => assert!(e.to_string().contains("token"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("served without a token on every interface"),
    }
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert!(serve_receiver(local, ReceiverConfig::new(sink.clone(), vec![DataType::MasterData])).is_ok());
    let open = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    assert!(serve_receiver(open, config(sink, vec![DataType::MasterData])).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteSink::open(dir.path().join("payroll.sqlite3")).unwrap());
    let memory = Arc::new(MemorySink::default());
    for sink in [sqlite.clone() as Arc<dyn Sink>, memory.clone()] {
        let addr = serve(config(sink, vec![DataType::Employee, DataType::MasterData])).await;
        let planted = employee_with("B-1", &format!(r#""ssn":"{SSN}""#));
        let valid = ChangeEnvelope::upsert(DataType::Employee, "B-2", 1, "test", &employee("B-2")).unwrap();
        let (status, body) = post(addr, batch(&[valid, planted])).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("unknown_fields")), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("change 1") && message.contains("`ssn`") && !message.contains(SSN), "{message}");

        // Many unknown fields: the answer names a few and stays short.
        let many: Vec<String> = (0..1_000).map(|i| format!(r#""{}{i}":1"#, "f".repeat(500))).collect();
        let (status, body) = post(addr, batch(&[employee_with("B-3", &many.join(","))])).await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().len() < 1_000 && body["message"].as_str().unwrap().contains("995 more"), "{body}");

        // Hidden inside a nested value, 100,000 levels deep, or as a 100,000-digit number.
        let deep = format!(r#""x":{}1{}"#, "[".repeat(100_000), "]".repeat(100_000));
        let (status, body) = post(addr, batch(&[employee_with("B-4", &deep)])).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("malformed_json")), "{body}");
        let long_number = format!(r#""x":{}"#, "9".repeat(100_000));
        let (status, _) = post(addr, batch(&[employee_with("B-5", &long_number)])).await;
        assert_eq!(status, 400);

        // A key twice: serde would keep the last one unseen.
        let twice = employee_with("B-6", &format!(r#""name":"{SSN}""#));
        let (status, body) = post(addr, batch(&[twice])).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("duplicate_key")), "{body}");
        let attributes = r#"{"set":"md.category","code":"C1","name":"Food","attributes":{"a":"1","a":"2"}}"#;
        let dup = ChangeEnvelope::with_raw_payload(
            DataType::MasterData,
            "md.category:C1".into(),
            1,
            "test",
            Some(serde_json::value::RawValue::from_string(attributes.into()).unwrap()),
        );
        let (status, body) = post(addr, batch(&[dup])).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("duplicate_key")), "{body}");
        assert!(body["message"].as_str().unwrap().contains("`a`"), "{body}");

        // The same employee without the planted field is stored.
        let (status, _) = post(addr, batch(&[ChangeEnvelope::upsert(DataType::Employee, "B-1", 1, "test", &employee("B-1")).unwrap()])).await;
        assert_eq!(status, 200);
    }
    for key in ["B-2", "B-3", "B-4", "B-5", "B-6"] {
        assert!(sqlite.get(DataType::Employee, key).unwrap().is_none(), "{key}");
        assert!(memory.get(DataType::Employee, key).is_none(), "{key}");
    }
    let stored = [sqlite.get(DataType::Employee, "B-1").unwrap().unwrap(), memory.get(DataType::Employee, "B-1").unwrap()];
    for record in stored {
        let body = record.body.unwrap();
        assert!(!body.contains("ssn") && !body.contains(SSN), "{body}");
    }
    assert_eq!(sqlite.count(DataType::MasterData).unwrap(), 0);
    // Not in the database file either, whatever the page layout.
    drop(sqlite);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(SSN.len()).any(|w| w == SSN.as_bytes()), "the planted value reached the store");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_deeper_than_128_is_refused_without_blowing_the_stack() {
    let sink = Arc::new(MemorySink::default());
    let addr = serve(config(sink.clone(), vec![DataType::MasterData])).await;
    for depth in [129, 100_000, 1_000_000] {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        let (status, answer) = post(addr, body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("malformed_json")), "{depth}");
        let objects = format!("[{}1{}]", r#"{"a":"#.repeat(depth), "}".repeat(depth)).into_bytes();
        assert_eq!(post(addr, objects).await.0, 400, "{depth}");
    }
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap().count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_idempotency_key_with_another_body_is_422() {
    let sink = Arc::new(MemorySink::default());
    let addr = serve(config(sink.clone(), vec![DataType::MasterData])).await;
    let auth = format!("Bearer {TOKEN}");
    let send = |body: Vec<u8>, key: String| {
        let auth = auth.clone();
        async move { post_with(addr, body, &[("authorization", &auth), ("content-type", "application/json"), ("idempotency-key", &key)]).await }
    };
    let first = batch(&[md("C1", 1)]);
    assert_eq!(send(first.clone(), "k-1".into()).await, (200, json!({"applied": 1, "stale": 0, "out_of_scope": 0, "fields_dropped": 0})));
    // The same body again: the first answer, nothing applied twice.
    assert_eq!(send(first, "k-1".into()).await, (200, json!({"applied": 1, "stale": 0, "out_of_scope": 0, "fields_dropped": 0})));
    // Another body under the same key: refused, and it did not reach the store.
    let (status, body) = send(batch(&[md("C1", 2), md("C2", 1)]), "k-1".into()).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("idempotency_key_reused")), "{body}");
    assert_eq!(sink.get(DataType::MasterData, "md.category:C1").unwrap().version, 1);
    assert!(sink.get(DataType::MasterData, "md.category:C2").is_none());

    let (status, body) = send(batch(&[md("C3", 1)]), "k".repeat(201)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("idempotency_key_too_long")), "{body}");
    assert_eq!(send(batch(&[md("C3", 1)]), "k".repeat(200)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_above_the_ceiling_are_refused_and_stale_answers_reach_the_client() {
    let sink = Arc::new(MemorySink::default());
    let addr = serve(config(sink.clone(), vec![DataType::MasterData])).await;
    // A delete at 2^63-1 would freeze its key: nothing newer could ever apply.
    let frozen = ChangeEnvelope::delete(DataType::MasterData, "md.category:C1", i64::MAX as u64, "test");
    let (status, body) = post(addr, batch(&[frozen])).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_envelope")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("2^53"), "{body}");
    assert_eq!(post(addr, batch(&[ChangeEnvelope::delete(DataType::MasterData, "md.category:C1", MAX_VERSION + 1, "test")])).await.0, 400);
    assert_eq!(post(addr, batch(&[ChangeEnvelope::delete(DataType::MasterData, "md.category:C1", MAX_VERSION, "test")])).await.0, 200);

    let target = RestTarget::new("erp", &format!("http://{addr}"), vec![DataType::MasterData]).with_token(TOKEN);
    let propagator = RestPropagator::new(RestConfig::new(vec![target])).unwrap();
    let changes = [md("C1", 1), md("C2", 1)];
    propagator.propagate(&changes).await.unwrap();
    assert_eq!(propagator.stale_counts().get("erp"), Some(&1), "C1 is held at MAX_VERSION: the client sees it stale");
    assert_eq!(sink.get(DataType::MasterData, "md.category:C2").unwrap().version, 1);
}

/// A sink whose store fails with the kind of message SQLite gives.
struct BrokenSink;

#[async_trait]
impl Sink for BrokenSink {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        hr_core::validate_batch(batch)?;
        Err(SinkError::Unavailable("unable to open database file: /srv/hr/secret/payroll.sqlite3 (SQLITE_CANTOPEN)".into()))
    }

    async fn entries(&self, _: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        Err(SinkError::Unavailable("database disk image is malformed: /srv/hr/secret/payroll.sqlite3".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_are_json_bounded_and_name_no_paths() {
    let addr = serve(config(Arc::new(MemorySink::default()), vec![DataType::MasterData]).with_body_limit(1 << 20)).await;
    // A 200 kB schema string must not come back whole.
    let mut bad = md("C1", 1);
    bad.schema = "x".repeat(200_000);
    bad.event_id = "e".repeat(200_000);
    let (status, body) = post(addr, batch(&[bad])).await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.chars().count() <= 513 && message.contains(&format!("{}…", "x".repeat(64))) && !message.contains(&"x".repeat(65)), "{message}");
    assert!(!message.contains(&"e".repeat(65)), "{message}");
    let (status, body) = post(addr, format!(r#"[{{"{}": 1}}]"#, "f".repeat(200_000)).into_bytes()).await;
    assert_eq!(status, 400);
    assert!(body.to_string().len() < 1_000, "{}", body.to_string().len());

    // 413 is the documented JSON error, whether the length is announced or only sent.
    let auth = format!("Bearer {TOKEN}");
    let mut announced = raw(addr, &head(2 << 20, Some(&auth), "application/json"), b"").await;
    let answer = answer_within(&mut announced, Duration::from_secs(3)).await.expect("answered at once");
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains(r#""error":"body_too_large""#), "{answer}");
    let chunked_head = format!(
        "POST /hr/v1/changes HTTP/1.1\r\nhost: receiver\r\ncontent-type: application/json\r\nauthorization: {auth}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let over = (1 << 20) + 1;
    let mut sent = raw(addr, &chunked_head, &[format!("{over:x}\r\n").into_bytes(), vec![b' '; over]].concat()).await;
    let answer = answer_within(&mut sent, Duration::from_secs(3)).await.expect("answered once over the limit");
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains(r#""error":"body_too_large""#), "{answer}");

    // 503: the store's words (file path, SQLite message) stay in the log.
    let broken = serve(config(Arc::new(BrokenSink), vec![DataType::MasterData])).await;
    let (status, body) = post(broken, batch(&[md("C1", 1)])).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("sink_unavailable")));
    let digest = reqwest::Client::new().get(format!("http://{broken}/hr/v1/digest")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(digest.status().as_u16(), 503);
    for text in [body.to_string(), digest.text().await.unwrap()] {
        assert!(!text.contains("/srv") && !text.contains("SQLITE") && !text.contains("sqlite3") && !text.contains("malformed"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_close_stalled_connections() {
    let config = config(Arc::new(MemorySink::default()), vec![DataType::MasterData])
        .with_header_read_timeout(Duration::from_millis(300))
        .with_request_timeout(Duration::from_millis(500));
    let addr = serve(config).await;
    let started = Instant::now();
    // Connected, nothing sent.
    let mut idle = raw(addr, "", b"").await;
    // Half a request head, then silence.
    let mut slow_head = raw(addr, "POST /hr/v1/changes HTTP/1.1\r\nhost: receiver\r\n", b"").await;
    // Head with the token, 10 of 1,000 body bytes, then silence.
    let mut slow_body = raw(addr, &head(1_000, Some(&format!("Bearer {TOKEN}")), "application/json"), b"[{\"event_i").await;
    for stream in [&mut idle, &mut slow_head] {
        assert!(closed_within(stream, Duration::from_secs(3)).await, "a stalled connection stayed open");
    }
    let answer = answer_within(&mut slow_body, Duration::from_secs(3)).await.expect("a stalled body was never answered");
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains(r#""error":"request_timeout""#), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_and_in_flight_bytes_are_capped() {
    let sink = Arc::new(MemorySink::default());
    let config =
        config(sink.clone(), vec![DataType::MasterData]).with_body_limit(1 << 20).with_max_in_flight_bytes((1 << 20) + 100).with_max_concurrent_requests(2);
    let addr = serve(config).await;
    let auth = format!("Bearer {TOKEN}");
    // Holds the whole byte budget with a body it never finishes.
    let mut holder = raw(addr, &head(1 << 20, Some(&auth), "application/json"), b"[").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = raw(addr, &head(1_000, Some(&auth), "application/json"), b"").await;
    let answer = answer_within(&mut second, Duration::from_secs(3)).await.expect("answered at once");
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains(r#""error":"busy""#) && answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");

    // Two stalled requests hold both request slots (the second fits in the 100 bytes left); a third is shed, not queued.
    let _other = raw(addr, &head(10, Some(&auth), "application/json"), b"[").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = post(addr, batch(&[md("C1", 1)])).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("busy")), "{body}");

    holder.shutdown().await.unwrap();
    drop(holder);
    drop(_other);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(post(addr, batch(&[md("C1", 1)])).await.0, 200, "the budget came back");
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap().count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_router_served_with_limits_closes_stalled_connections_and_caps_them() {
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ConnectionLimits { header_read_timeout: Duration::from_millis(400), max_connections: 1 };
    tokio::spawn(serve_with_limits(listener, app, limits));
    // Connected, nothing sent: it holds the only connection slot.
    let mut idle = raw(addr, "", b"").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut waiting = raw(addr, "GET /healthz HTTP/1.1\r\nhost: api\r\n\r\n", b"").await;
    assert_eq!(answer_within(&mut waiting, Duration::from_millis(150)).await, None, "a second connection was served beyond the cap");
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await, "a stalled connection stayed open");
    let answer = answer_within(&mut waiting, Duration::from_secs(3)).await.expect("served once the slot was free");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
}
