//! No sensitive value (salary, birth date, phone, person key) and no token
//! appears in the logs of a full run at any level: the whole scenario runs
//! with every tracing event captured at TRACE (librdkafka's and the HTTP
//! stack's included), and the capture is searched for planted values. The
//! failure paths run too, each carrying the planted values: rows quarantined
//! for a bad salary or email, a poison record dead-lettered by a subscriber,
//! batches a receiver refuses (401, 403, 400) and a target that is down
//! (retries, then the error).

use hr_core::{ChangeEnvelope, Compensation, DataType, MemorySink, Propagator, Sensitive};
use hr_demo::console::Console;
use hr_demo::scenario::{run, ScenarioOptions};
use hr_sync::HubConfig;
use hr_testdata::{Dataset, GenerateOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const TOKEN: &str = "tok-planted-7f3a9c-0123456789abcdef0123";
const SALARY: u64 = 987_654_321;
const PERSON_KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7abcd";

#[test]
fn a_full_run_logs_no_sensitive_value_and_no_token() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_ansi(false).with_writer(move || writer.clone()).try_init().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut data = Dataset::generate(&GenerateOptions::scaled(300));
    let a = data.people.iter().position(|p| p.company == 0).unwrap();
    let b = data.people.iter().position(|p| p.company == 1).unwrap();
    for (i, offset) in [(a, 0), (b, 1)] {
        data.people[i].salary = Some(SALARY + offset);
        data.people[i].birth = (1961, 2, 3);
        data.people[i].person_key = Some(PERSON_KEY.into());
    }
    let phone = format!("010-{:04}-{:04}", data.people[a].local_id % 10_000, (data.people[a].local_id * 7) % 10_000);
    let input = dir.path().join("input");
    data.write(&input).unwrap();
    let csv = input.join("company_a/employees.csv");
    let written = std::fs::read_to_string(&csv).unwrap();
    assert!(written.contains(&phone) && written.contains("19610203") && written.contains(PERSON_KEY), "the values are planted");
    // Two rows quarantined while carrying the planted values: a salary that is not a number, an invalid email.
    let planted: Vec<&str> = written.lines().find(|l| l.contains(PERSON_KEY)).unwrap().split(',').collect();
    let variant = |emp_no: &str, column: usize, value: &str| {
        let mut fields = planted.clone();
        fields[0] = emp_no;
        fields[column] = value;
        fields.join(",")
    };
    let bad_salary = variant("990001", 12, &format!("{SALARY}x"));
    let bad_email = variant("990002", 3, "not-an-email");
    std::fs::write(&csv, format!("{written}{bad_salary}\n{bad_email}\n")).unwrap();

    std::env::set_var("HR_DEMO_TOKEN", TOKEN);
    let options = ScenarioOptions { brokers: None, input: Some(input), data_dir: dir.path().join("out"), employees: 0, config: HubConfig::default() };
    let report = tokio::runtime::Runtime::new().unwrap().block_on(run(options, &Console::lines())).unwrap();
    assert!(report.systems["payroll"][&hr_core::DataType::Compensation].digest_matches);
    // A given input is propagated as given: the real-time changes leave every count as merged.
    // Each grant is held by the one system it is for; master data also holds erp's 1,000 published products.
    use hr_core::DataType::{MasterData, Permission};
    for (system, types) in &report.systems {
        for (t, r) in types {
            assert!(r.digest_matches, "{system}/{t}");
            let expected = match t {
                Permission => continue,
                MasterData => report.merge.counts[t] as u64 + 1_000,
                _ => report.merge.counts[t] as u64,
            };
            assert_eq!(r.records, expected, "{system}/{t} holds the input's count");
        }
    }
    let grants: u64 = report.systems.values().map(|types| types[&Permission].records).sum();
    assert_eq!(grants, report.merge.counts[&Permission] as u64, "every grant is in exactly one system");

    let quarantined: Vec<&str> = report.merge.quarantined.iter().filter_map(|q| q.id.as_deref()).collect();
    assert!(quarantined.contains(&"A-990001") && quarantined.contains(&"A-990002"), "{quarantined:?}");
    let failures = tokio::runtime::Runtime::new().unwrap().block_on(failure_paths(&phone));

    let mut text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    text.push_str(&failures);
    text.push_str(&format!("{report:?}"));
    assert!(text.lines().count() > 100, "the capture holds the run's logs ({} lines)", text.lines().count());
    for (what, value) in [
        ("salary", SALARY.to_string()),
        ("salary", (SALARY + 1).to_string()),
        ("birth date", "1961-02-03".into()),
        ("birth date", "19610203".into()),
        ("phone", phone.clone()),
        ("person key", PERSON_KEY.into()),
        ("token", TOKEN.into()),
    ] {
        assert!(!text.contains(&value), "the logs contain a {what}");
    }
}

/// A compensation change carrying the planted salary.
fn pay(version: u64) -> ChangeEnvelope {
    let c = Compensation {
        employee_id: "A-1".into(),
        base_salary: Sensitive::new(SALARY),
        currency: "KRW".into(),
        effective_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    };
    ChangeEnvelope::upsert(DataType::Compensation, "A-1", version, "hub", &c).unwrap()
}

/// Runs every failure path with the planted values; returns what the callers
/// were told (error texts), to be searched with the logs.
async fn failure_paths(phone: &str) -> String {
    let mut told = String::new();
    // A poison record, dead-lettered by a subscriber.
    let cluster = hr_transport_kafka::EmbeddedKafka::start().unwrap();
    let kafka = hr_transport_kafka::KafkaConfig::new(cluster.bootstrap_servers());
    cluster.create_topics(&kafka, &[DataType::Employee]).unwrap();
    let subscriber =
        hr_transport_kafka::KafkaSubscriber::start(&kafka, "poison-probe", &[DataType::Employee], std::sync::Arc::new(MemorySink::default())).unwrap();
    let poison = format!(
        r#"{{"event_id":"e1","data_type":"employee","key":"A-1","op":"upsert","version":1,"occurred_at":"2026-01-01T00:00:00Z","origin":"x","schema":"hr.v1","payload":{{"id":"A-1","phone":"{phone}","birth_date":"1961-02-03","salary":{SALARY},"person_key":"{PERSON_KEY}"}}}}"#
    );
    let producer: rdkafka::producer::FutureProducer = kafka.client_config().create().unwrap();
    producer
        .send(rdkafka::producer::FutureRecord::to(&kafka.topic(DataType::Employee)).key("A-1").payload(&poison), std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while subscriber.stats().dead_lettered == 0 {
        assert!(std::time::Instant::now() < until, "the poison record was never dead-lettered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    subscriber.shutdown().await.unwrap();
    drop(producer);

    // A receiver refusing batches: wrong token (401), a data type it does not take (403), an invalid payload (400).
    let sink = std::sync::Arc::new(MemorySink::default());
    let app = hr_transport_rest::receiver(
        hr_transport_rest::ReceiverConfig::new(sink, vec![DataType::Employee]).with_token("another-token-0123456789abcdef01234").unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let invalid = format!("[{poison}]");
    for (token, body) in [
        (TOKEN, format!("[{}]", pay(1).to_json())),
        ("another-token-0123456789abcdef01234", format!("[{}]", pay(1).to_json())),
        ("another-token-0123456789abcdef01234", invalid),
    ] {
        let answer = client.post(format!("{url}/hr/v1/changes")).bearer_auth(token).header("content-type", "application/json").body(body).send().await.unwrap();
        assert!(answer.status().is_client_error(), "{}", answer.status());
        told.push_str(&answer.text().await.unwrap());
    }

    // A target that is down: retries until the deadline, then an error naming it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut config =
        hr_transport_rest::RestConfig::new(vec![
            hr_transport_rest::RestTarget::new("payroll", &format!("http://{closed}"), vec![DataType::Compensation]).with_token(TOKEN)
        ]);
    config.deadline = std::time::Duration::from_millis(500);
    let propagator = hr_transport_rest::RestPropagator::new(config).unwrap();
    let err = propagator.propagate(&[pay(2)]).await.unwrap_err();
    assert!(err.to_string().contains("payroll"), "{err}");
    told.push_str(&format!("{err} {err:?}"));
    told
}
