//! A system, or a hub serving its real-time API, started while its brokers
//! are unreachable listens at once, says so in its log within seconds and
//! in `/healthz` (503 with the reason; the hub's API calls too), and goes on
//! as soon as the brokers answer: three `system` processes and a `hub
//! --watch --listen` started before their broker (one of its own, on port
//! 19392), then the broker, then a hub run that converges. A REST target
//! that stops answering is named by the hub's `/healthz` until it answers again.

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

/// A real-time grant posted to the hub's API: status and body.
fn post_grant(api: &str) -> (u16, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let line = r#"{"employee": "A-1", "system": "erp", "role": "viewer", "op": "grant", "expires": null, "at": "2026-01-01T00:00:00Z"}"#;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let response = client.post(format!("{api}/hr/v1/permissions")).bearer_auth(HUB_TOKEN).body(line).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

const HUB_TOKEN: &str = "broker-down-hub-token-0123456789abcdef";

#[test]
fn systems_started_before_their_broker_listen_at_once_report_it_and_converge_once_it_answers() {
    brokers(); // the shared broker's jars are in place for the one started here
    broker_script("stop", PORT);
    program("system"); // built before the clock starts
    let started = Instant::now();
    let (deployment, mut systems) = Deployment::start_on(&["payroll", "orgchart", "erp"], format!("127.0.0.1:{PORT}"));
    assert!(started.elapsed() < Duration::from_secs(30), "the systems took {:?} to listen", started.elapsed());
    for system in &systems {
        system.wait_for_log("Kafka brokers unreachable", Duration::from_secs(10));
        let (status, body) = healthz(&system.url);
        assert_eq!(status, 503, "{}: {body}", system.name);
        assert!(body.contains("unreachable"), "{}: {body}", system.name);
        // What is down, not the client library's error text: that is for the log.
        assert!(!body.contains("metadata request"), "{}: {body}", system.name);
    }

    // A watching hub with its API, on a data directory and an input of its own (it never gets to send).
    let hub_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut command = program("hub");
    command
        .arg("--config")
        .arg(&deployment.hub_config)
        .arg("--data-dir")
        .arg(hub_dir.path())
        .arg("--input")
        .arg(hub_dir.path().join("no-input"))
        .args(["--brokers", &deployment.brokers, "--watch", "60", "--listen", "127.0.0.1:0"])
        .env("HR_TEST_TOKEN", TOKEN)
        .env("HR_HUB_TOKEN", HUB_TOKEN);
    let mut hub = start_listening(command);
    let (lines, seen, api) = (&hub.lines, &mut hub.seen, hub.api.clone());
    wait_for_line(lines, "Kafka brokers unreachable", seen);
    assert!(started.elapsed() < Duration::from_secs(20), "the hub said nothing for {:?}:\n{}", started.elapsed(), seen.join("\n"));
    let (status, body) = healthz(&api);
    assert_eq!(status, 503, "hub /healthz: {body}");
    assert!(body.contains(&format!("127.0.0.1:{PORT}")), "the hub's 503 names the brokers: {body}");
    assert!(!body.contains("metadata request"), "the hub's 503 says what is down, not the client's error text: {body}");
    let (status, body) = post_grant(&api);
    assert_eq!(status, 503, "a real-time call while the brokers are down: {body}");
    assert!(body.contains("nothing was sent"), "{body}");

    broker_script("start", PORT);
    let _broker = BrokerGuard(PORT);
    wait_for_line(lines, "Kafka brokers reachable again", seen);
    let until = Instant::now() + Duration::from_secs(30);
    // Connected, but its runs fail (no input): the API answers again, and says it holds no employees yet.
    loop {
        let (status, body) = healthz(&api);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < until, "the hub's API stayed unavailable: {body}\n{}", seen.join("\n"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = post_grant(&api);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("first periodic run"), "{body}");

    // A REST target that stops answering: the hub's /healthz names it within seconds, and recovers with it.
    let erp = systems.pop().unwrap();
    let erp_url = erp.url.clone();
    drop(erp); // killed
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = healthz(&api);
        if status == 503 {
            assert!(body.contains("target erp at") && !body.contains("error sending request"), "{body}");
            break;
        }
        assert!(Instant::now() < until, "the hub's /healthz did not name the stopped target: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_line(lines, "REST target does not answer", seen);
    systems.push(deployment.restart("erp", &erp_url));
    wait_for_line(lines, "REST target answers again", seen);
    let until = Instant::now() + Duration::from_secs(20);
    while healthz(&api).0 != 200 {
        assert!(Instant::now() < until, "the hub's /healthz stayed 503 after the target came back: {}", healthz(&api).1);
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(hub);
    for system in &systems {
        // erp, restarted above, never saw the brokers down.
        if system.log.lock().unwrap().iter().any(|l| l.contains("Kafka brokers unreachable")) {
            system.wait_for_log("Kafka brokers reachable again", Duration::from_secs(60));
        }
        let until = Instant::now() + Duration::from_secs(30);
        while healthz(&system.url).0 != 200 {
            assert!(Instant::now() < until, "{} stayed unhealthy: {}", system.name, healthz(&system.url).1);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    hr_testdata::Dataset::generate(&hr_testdata::GenerateOptions::scaled(200)).write(&deployment.input).unwrap();
    let report = deployment.run_hub(&[]);
    assert_clean(&report, "after the broker came up");
    assert!(report["systems"]["orgchart"]["employee"]["records"].as_u64().unwrap() > 0, "{report}");
}
