//! No sensitive value (salary, birth date, phone, person key) and no token
//! appears in the logs of a full run at any level: the whole scenario runs
//! with every tracing event captured at TRACE (librdkafka's and the HTTP
//! stack's included), and the capture is searched for planted values.

use hr_sync::config::HubConfig;
use hr_sync::console::Console;
use hr_sync::generate::{Dataset, GenerateOptions};
use hr_sync::scenario::{run, ScenarioOptions};
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

const TOKEN: &str = "tok-planted-7f3a9c";
const SALARY: u64 = 987_654_321;
const PERSON_KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7abcd";

#[test]
fn a_full_run_logs_no_sensitive_value_and_no_token() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .unwrap();

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
    let written = std::fs::read_to_string(input.join("company_a/employees.csv")).unwrap();
    assert!(written.contains(&phone) && written.contains("19610203") && written.contains(PERSON_KEY), "the values are planted");

    std::env::set_var("HR_DEMO_TOKEN", TOKEN);
    let options = ScenarioOptions { brokers: None, input: Some(input), data_dir: dir.path().join("out"), employees: 0, config: HubConfig::default() };
    let report = tokio::runtime::Runtime::new().unwrap().block_on(run(options, &Console::lines())).unwrap();
    assert!(report.systems["payroll"][&hr_core::DataType::Compensation].digest_matches);
    // A given input is propagated as given: the real-time changes leave every count as merged.
    for (system, types) in &report.systems {
        for (t, r) in types {
            assert!(r.digest_matches, "{system}/{t}");
            assert_eq!(r.records, report.merge.counts[t] as u64, "{system}/{t} holds the input's count");
        }
    }

    let mut text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
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
