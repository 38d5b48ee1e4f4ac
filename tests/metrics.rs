//! What operators scrape: every `system` serves `GET /metrics` and the hub
//! `--metrics-listen`, in Prometheus text format (parsed here with the
//! `prometheus-parse` crate). After one run of three systems on the real
//! broker, the counts equal what the report says each system holds, pay is
//! counted only where it went, a refused request is counted by reason, each
//! system reports its consumer lag per partition of its own topics, and when
//! it last applied each data type. Under `--watch`, a held run is counted
//! as held and changes nothing, a second hub on the same data directory
//! stops at once, and the corrected export runs on its own.

use prometheus_parse::{Sample, Scrape, Value};
use rusqlite::Connection;
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];

fn scrape(url: &str) -> Vec<Sample> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = rt.block_on(async { reqwest::get(format!("{url}/metrics")).await.unwrap().error_for_status().unwrap().text().await.unwrap() });
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format").samples
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The value of `name` with all of `labels`, summed over any other labels.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

/// The system reports each partition of its audience's employee topic as
/// caught up (`hr_consumer_lag` 0) within a few statistics intervals.
fn assert_caught_up(url: &str, name: &str) {
    let topic_end = if name == "payroll" { "employee" } else { "employee.without-birth_date-phone" };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lags: Vec<Sample> =
            scrape(url).into_iter().filter(|s| s.metric == "hr_consumer_lag" && s.labels.get("topic").is_some_and(|t| t.ends_with(topic_end))).collect();
        let total = value(&lags, "hr_consumer_lag", &[]);
        // Six partitions, each reported once assigned; all applied, so no lag.
        if lags.len() == 6 && total == 0.0 {
            assert!(lags.iter().all(|s| s.labels.get("group").is_some_and(|g| g.ends_with(name))), "{name}: {lags:?}");
            return;
        }
        assert!(std::time::Instant::now() < until, "{name}: consumer lag per partition not reported as caught up: {lags:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn systems_and_the_hub_export_what_they_did_as_prometheus_metrics() {
    let started = unix_seconds();
    let (deployment, systems) = Deployment::start(&NAMES);
    hr_testdata::Dataset::generate(&hr_testdata::GenerateOptions::scaled(200)).write(&deployment.input).unwrap();
    let mut child = deployment.hub(&["--watch", "2", "--metrics-listen", "127.0.0.1:0"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let lines = lines_of(&mut child);
    let _hub = Killed(child);
    let mut seen = vec![];
    let line = wait_for_line(&lines, "metrics on http://", &mut seen);
    let hub_url = line.rsplit(' ').next().unwrap().trim_end_matches("/metrics").to_string();
    wait_for_line(&lines, "run done", &mut seen);
    // The report is written just after the line.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while deployment.last_report()["systems"].is_null() {
        assert!(std::time::Instant::now() < until, "no report");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = deployment.last_report();
    assert_clean(&report, "after the run");

    let hub = scrape(&hub_url);
    assert!(value(&hub, "hr_hub_runs_total", &[("outcome", "ok")]) >= 1.0);
    assert!(hub.iter().any(|s| s.metric.starts_with("hr_hub_run_seconds")), "no run duration");
    let quarantined = report["quarantined"].as_array().map_or(0, Vec::len) as f64;
    assert_eq!(value(&hub, "hr_hub_quarantined_records", &[]), quarantined);
    assert_eq!(value(&hub, "hr_hub_held_back_records", &[]), 0.0);
    assert_eq!(value(&hub, "hr_hub_source_older_total", &[]), 0.0, "no real-time change was made");
    assert!(hub.iter().any(|s| s.metric == "hr_hub_source_older_total"), "source_older not exported");
    assert!(value(&hub, "hr_hub_last_success_timestamp_seconds", &[]) > 1.7e9);
    let employees = report["systems"]["orgchart"]["employee"]["records"].as_f64().unwrap();
    assert_eq!(value(&hub, "hr_hub_changes_sent_total", &[("data_type", "employee")]), employees);
    assert!(value(&hub, "hr_hub_changes_delivered_total", &[("target", "payroll"), ("data_type", "compensation")]) > 0.0);
    assert_eq!(value(&hub, "hr_hub_changes_delivered_total", &[("target", "orgchart"), ("data_type", "compensation")]), 0.0);
    for name in NAMES {
        assert_eq!(value(&hub, "hr_hub_digest_matches", &[("target", name), ("data_type", "employee")]), 1.0, "{name}");
        assert_eq!(value(&hub, "hr_hub_drift_keys", &[("target", name), ("data_type", "employee")]), 0.0, "{name}");
    }

    for system in &systems {
        let samples = scrape(&system.url);
        let held = report["systems"][system.name.as_str()]["employee"]["records"].as_f64().unwrap();
        assert_eq!(value(&samples, "hr_changes_applied_total", &[("data_type", "employee"), ("transport", "kafka")]), held, "{}", system.name);
        let pay = value(&samples, "hr_changes_applied_total", &[("data_type", "compensation"), ("transport", "rest")]);
        assert_eq!(pay > 0.0, system.name == "payroll", "{}: compensation applied {pay}", system.name);
        assert!(samples.iter().any(|s| s.metric.starts_with("hr_apply_seconds")), "{}: no apply latency", system.name);
        // Read from the store at the scrape: this run applied employees everywhere, pay only in payroll.
        let employees_at = value(&samples, "hr_last_applied_timestamp_seconds", &[("data_type", "employee")]);
        assert!((started..=unix_seconds()).contains(&employees_at), "{}: employees last applied at {employees_at}", system.name);
        let pay = samples.iter().find(|s| s.metric == "hr_last_applied_timestamp_seconds" && s.labels.get("data_type") == Some("compensation"));
        match pay.map(|s| &s.value) {
            Some(Value::Gauge(at)) if system.name == "payroll" => assert!(*at >= started, "payroll: pay last applied at {at}"),
            None if system.name != "payroll" => {}
            other => panic!("{}: pay last applied {other:?}; only payroll receives pay", system.name),
        }
        assert_caught_up(&system.url, &system.name);
    }

    // One change posted twice (applied, then stale), and one whose key is not its record's (invalid).
    let erp = &systems[2];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let md = hr_sync::hr_core::MasterData { set: "md.test".into(), code: "X1".into(), name: "x".into(), attributes: Default::default() };
    let good = hr_sync::hr_core::ChangeEnvelope::upsert(hr_sync::hr_core::DataType::MasterData, md.key(), 1, "test", &md).unwrap();
    let mut bad = good.clone();
    bad.key = "md.test:OTHER".into();
    for (change, status) in [(&good, 200), (&good, 200), (&bad, 400)] {
        let body = format!("[{}]", change.to_json());
        let request =
            reqwest::Client::new().post(format!("{}/hr/v1/changes", erp.url)).bearer_auth(TOKEN).header("content-type", "application/json").body(body);
        assert_eq!(rt.block_on(async { request.send().await.unwrap().status().as_u16() }), status);
    }
    let samples = scrape(&erp.url);
    let rest_md = [("data_type", "master_data"), ("transport", "rest")];
    assert_eq!(value(&samples, "hr_changes_applied_total", &rest_md), 1.0);
    assert_eq!(value(&samples, "hr_changes_stale_total", &rest_md), 1.0);
    assert_eq!(value(&samples, "hr_changes_invalid_total", &rest_md), 1.0);
    assert_eq!(value(&samples, "hr_changes_out_of_scope_total", &rest_md), 0.0);
    assert!(samples.iter().any(|s| s.metric == "hr_changes_out_of_scope_total"), "out_of_scope not exported");

    // A row edited in payroll is repaired by the next run, and counted.
    let payroll = Connection::open(deployment.database("payroll")).unwrap();
    payroll.busy_timeout(Duration::from_secs(5)).unwrap();
    payroll.execute("UPDATE employee SET body = json_set(body, '$.name', 'tampered') WHERE id = (SELECT min(id) FROM employee WHERE deleted = 0)", []).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(120);
    while value(&scrape(&hub_url), "hr_hub_repaired_total", &[("data_type", "employee")]) < 1.0 {
        assert!(std::time::Instant::now() < until, "the edited row was never counted as repaired");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A request without the token is refused, and counted by reason.
    let status = rt.block_on(async { reqwest::Client::new().post(format!("{}/hr/v1/changes", erp.url)).body("[]").send().await.unwrap().status() });
    assert_eq!(status, 401);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(value(&scrape(&erp.url), "hr_receiver_refused_total", &[("reason", "unauthorized")]), 1.0);

    // The test row posted to erp above is not the hub's: removed, so the runs below are meant to be clean.
    let conn = Connection::open(deployment.database("erp")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(conn.execute("DELETE FROM master_data WHERE id = 'md.test:X1'", []).unwrap(), 1);
    drop(conn);

    // A third of company B missing from the export: the watching hub holds its runs (counted), nothing changes.
    let live = |name: &str| -> i64 {
        let conn = Connection::open(deployment.database(name)).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.query_row("SELECT count(*) FROM employee WHERE deleted = 0", [], |r| r.get(0)).unwrap()
    };
    let live_before: Vec<i64> = NAMES.iter().map(|n| live(n)).collect();
    let jsonl = deployment.input.join("company_b/employees.jsonl");
    let full = std::fs::read_to_string(&jsonl).unwrap();
    let truncated: String = full.lines().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, l)| format!("{l}\n")).collect();
    // Written whole and renamed into place: the watching hub never reads half a file.
    let replace = |text: &str| {
        let next = jsonl.with_extension("jsonl.next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &jsonl).unwrap();
    };
    replace(&truncated);
    let until = std::time::Instant::now() + Duration::from_secs(120);
    while value(&scrape(&hub_url), "hr_hub_runs_total", &[("outcome", "held")]) < 1.0 {
        assert!(std::time::Instant::now() < until, "no held run counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    let held = deployment.last_report()["held"].clone();
    assert!(held["plan_id"].is_string() && held["reasons"].to_string().contains("deletes"), "{held}");
    assert_eq!(NAMES.iter().map(|n| live(n)).collect::<Vec<_>>(), live_before, "a held run changed a system");

    // A second hub on the watching hub's data directory, watching too, stops at once naming the holder.
    let mut second = deployment.hub(&["--watch", "2"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = second.try_wait().unwrap() {
            break exit;
        }
        if std::time::Instant::now() > until {
            let _ = second.kill();
            panic!("a second hub kept running on a ledger another hub holds");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!exit.success() && stderr.contains("in use by process"), "{exit}: {stderr}");

    // The corrected export: the next run goes on its own, and is clean.
    let ok_before = value(&scrape(&hub_url), "hr_hub_runs_total", &[("outcome", "ok")]);
    replace(&full);
    let until = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let report = deployment.last_report();
        if report["held"].is_null() && report["systems"].is_object() && value(&scrape(&hub_url), "hr_hub_runs_total", &[("outcome", "ok")]) > ok_before {
            assert_clean(&report, "the corrected export under --watch");
            break;
        }
        assert!(std::time::Instant::now() < until, "the corrected export did not run: {}", report["held"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(NAMES.iter().map(|n| live(n)).collect::<Vec<_>>(), live_before);
}
