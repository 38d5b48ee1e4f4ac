//! A system scales out as members of its consumer group: three `system`
//! processes named payroll (one store) share the group's partitions; one
//! is killed (SIGKILL) while it applies a run. Nothing is lost, every key
//! ends at its latest version, and the hub's run still ends only once the
//! group, now two members, applied everything. Real broker.

use hr_testdata::{Dataset, GenerateOptions};
use prometheus_parse::{Sample, Scrape, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::*;

fn scrape(url: &str) -> Vec<Sample> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let text = rt.block_on(async { reqwest::get(format!("{url}/metrics")).await.ok()?.error_for_status().ok()?.text().await.ok() }).unwrap_or_default();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map(|s| s.samples).unwrap_or_default()
}

fn gauge(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        _ => 0.0,
    }
}

/// Employees a member applied from Kafka so far.
fn applied_from_kafka(url: &str) -> f64 {
    scrape(url)
        .iter()
        .filter(|s| s.metric == "hr_changes_applied_total" && s.labels.get("transport") == Some("kafka") && s.labels.get("data_type") == Some("employee"))
        .map(gauge)
        .sum()
}

/// The partitions of payroll's employee topic a member reports a lag for (it held them at some point).
fn partitions_reported(url: &str) -> BTreeSet<String> {
    scrape(url)
        .into_iter()
        .filter(|s| s.metric == "hr_consumer_lag" && s.labels.get("topic").is_some_and(|t| t.ends_with(".employee")))
        .filter_map(|s| s.labels.get("partition").map(str::to_string))
        .collect()
}

#[test]
fn three_members_of_one_group_share_its_partitions_and_one_killed_mid_run_loses_nothing() {
    let (deployment, systems) = Deployment::start(&["payroll", "orgchart", "erp"]);
    let mut members: Vec<SystemProcess> =
        (0..2).map(|_| start_system("payroll", "127.0.0.1:0", &deployment.system_config, &deployment.systems_dir, &deployment.brokers)).collect();
    let (survivor, mut victim) = (members.pop().unwrap(), members.pop().unwrap());
    let data = Dataset::generate(&GenerateOptions::scaled(20_000));
    data.write(&deployment.input).unwrap();
    // The group rebalances as the two later members join: give it time to hand each its partitions.
    std::thread::sleep(Duration::from_secs(5));

    let mut hub = deployment.hub(&[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("hub runs");
    let hub_log = BufReader::new(hub.stderr.take().unwrap());
    let mut lines = hub_log.lines().map_while(Result::ok);
    assert!(lines.any(|l| l.contains("waiting until every system applied them")), "the hub never sent");

    // The victim is killed once it has applied part of the run, while the hub waits.
    let until = Instant::now() + Duration::from_secs(60);
    while applied_from_kafka(&victim.url) == 0.0 {
        assert!(Instant::now() < until, "the third member never got records: it holds no partition");
        std::thread::sleep(Duration::from_millis(20));
    }
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let rest: Vec<String> = lines.collect();
    let status = hub.wait().unwrap();
    assert!(status.success(), "the run after a member's death failed:\n{}", rest.join("\n"));

    // Nothing lost: payroll's one store holds the hub's content for every key.
    let report = deployment.last_report();
    assert_clean(&report, "after a member was killed mid-run");
    let employees = report["systems"]["payroll"]["employee"]["records"].as_u64().unwrap();
    assert!(employees > 19_000, "{employees}");

    // The members shared the partitions: each survivor reports some, and
    // between them all six once they took over the dead member's (the
    // statistics come every second).
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (first, second) = (partitions_reported(&systems[0].url), partitions_reported(&survivor.url));
        assert!(!first.is_empty() && !second.is_empty(), "each surviving member held partitions: {first:?} {second:?}");
        if first.union(&second).count() == 6 {
            break;
        }
        assert!(Instant::now() < until, "the dead member's partitions were never taken over: {first:?} {second:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
