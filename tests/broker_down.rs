//! A system started while its brokers are unreachable listens at once, says
//! so in its log within seconds and in `/healthz` (503 with the reason),
//! and joins its group as soon as the brokers answer: three `system`
//! processes started before their broker (one of its own, on port 19392),
//! then the broker, then a hub run that converges.

use std::time::{Duration, Instant};

mod common;
use common::*;

const PORT: u16 = 19392;

fn healthz(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let response = reqwest::get(format!("{url}/healthz")).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

#[test]
fn systems_started_before_their_broker_listen_at_once_report_it_and_converge_once_it_answers() {
    brokers(); // the shared broker's jars are in place for the one started here
    broker_script("stop", PORT);
    example("system"); // built before the clock starts
    let started = Instant::now();
    let (deployment, systems) = Deployment::start_on(&["payroll", "orgchart", "erp"], format!("127.0.0.1:{PORT}"));
    assert!(started.elapsed() < Duration::from_secs(30), "the systems took {:?} to listen", started.elapsed());
    for system in &systems {
        system.wait_for_log("Kafka brokers unreachable", Duration::from_secs(10));
        let (status, body) = healthz(&system.url);
        assert_eq!(status, 503, "{}: {body}", system.name);
        assert!(body.contains("unreachable"), "{}: {body}", system.name);
    }

    broker_script("start", PORT);
    let _broker = BrokerGuard(PORT);
    for system in &systems {
        system.wait_for_log("Kafka brokers reachable again", Duration::from_secs(60));
        let until = Instant::now() + Duration::from_secs(30);
        while healthz(&system.url).0 != 200 {
            assert!(Instant::now() < until, "{} stayed unhealthy: {}", system.name, healthz(&system.url).1);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    hr_testdata::Dataset::generate(&hr_testdata::GenerateOptions::scaled(200)).write(&deployment.input).unwrap();
    let report = deployment.run_hub(&[]);
    assert_all_match(&report, "after the broker came up");
    assert!(report["systems"]["orgchart"]["employee"]["records"].as_u64().unwrap() > 0, "{report}");
}
