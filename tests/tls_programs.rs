//! The programs as deployed over TLS: three `system` processes serve their
//! receivers over HTTPS with a private CA's certificate, the hub reaches
//! and compares them through `rest_ca_file`, and the seed scenario runs
//! clean. Every `/metrics` (the systems' and the hub's) requires its token,
//! and the hub's real-time API and metrics speak only HTTPS when given a
//! certificate.

use hr_testdata::{Dataset, GenerateOptions};
use std::process::Stdio;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];
const METRICS_TOKEN: &str = "tls-programs-metrics-token-0123456789abcdef";

/// A client that trusts only the test CA.
fn client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()).tls_built_in_root_certs(false).build().unwrap()
}

/// The status of GET `url`, with `token` as bearer if given.
fn status(client: &reqwest::Client, url: &str, token: Option<&str>) -> Result<u16, reqwest::Error> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let request = client.get(url);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().await.map(|r| r.status().as_u16())
    })
}

#[test]
fn systems_and_the_hub_serve_https_and_metrics_need_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki("hr-sync TLS programs test CA");
    let (ca, cert, key) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&ca, &pki.ca).unwrap();
    std::fs::write(&cert, &pki.cert).unwrap();
    std::fs::write(&key, &pki.key).unwrap();
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let tls = ["--tls-cert", cert_arg.as_str(), "--tls-key", key_arg.as_str()];
    let (deployment, systems) = Deployment::start_configured(
        &NAMES,
        brokers(),
        &tls,
        &[("HR_METRICS_TOKEN", METRICS_TOKEN)],
        &format!("rest_ca_file = {:?}", ca.display().to_string()),
    );
    for system in &systems {
        assert!(system.url.starts_with("https://127.0.0.1:"), "{} serves {}", system.name, system.url);
    }

    // The hub sends, confirms and compares over HTTPS, trusting the private CA only.
    Dataset::generate(&GenerateOptions::scaled(200)).write(&deployment.input).unwrap();
    assert_clean(&deployment.run_hub(&[]), "the first run over TLS");
    assert_clean(&deployment.run_hub(&[]), "the second run over TLS");

    // A system's metrics: its token or 401; a client without the CA does not connect at all.
    let trusting = client(&pki.ca);
    let metrics = format!("{}/metrics", systems[0].url);
    assert_eq!(status(&trusting, &metrics, None).unwrap(), 401);
    assert_eq!(status(&trusting, &metrics, Some("not-the-metrics-token-0123456789abcdef")).unwrap(), 401);
    assert_eq!(status(&trusting, &metrics, Some(METRICS_TOKEN)).unwrap(), 200);
    assert!(status(&reqwest::Client::new(), &metrics, Some(METRICS_TOKEN)).is_err(), "a client that does not trust the CA connected");
    assert!(status(&trusting, &metrics.replace("https://", "http://"), Some(METRICS_TOKEN)).is_err(), "the receiver answered plain http");

    // The hub's API and metrics over HTTPS, the metrics behind their token.
    let mut hub = deployment
        .hub(&["--watch", "60", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tls-cert", &cert_arg, "--tls-key", &key_arg])
        .env("HR_METRICS_TOKEN", METRICS_TOKEN)
        .env("HR_HUB_TOKEN", "tls-programs-api-token-0123456789abcdefgh")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut hub);
    let mut seen = vec![];
    // The metrics listener starts first, then the API.
    let hub_metrics = wait_for_line(&lines, "metrics on ", &mut seen).rsplit(' ').next().unwrap().to_string();
    let api = wait_for_line(&lines, "real-time API listening on ", &mut seen).rsplit(' ').next().unwrap().to_string();
    assert!(api.starts_with("https://") && hub_metrics.starts_with("https://"), "{api} {hub_metrics}");
    wait_for_line(&lines, "run done", &mut seen);
    assert_eq!(status(&trusting, &format!("{api}/healthz"), None).unwrap(), 200);
    assert!(status(&trusting, &format!("{}/healthz", api.replace("https://", "http://")), None).is_err(), "the hub API answered plain http");
    assert_eq!(status(&trusting, &hub_metrics, None).unwrap(), 401);
    assert_eq!(status(&trusting, &hub_metrics, Some(METRICS_TOKEN)).unwrap(), 200);
    let _ = hub.kill();
    let _ = hub.wait();
    assert!(!seen.iter().any(|l| l.contains(METRICS_TOKEN)), "the hub logged the metrics token");
    for system in systems {
        assert!(!system.log.lock().unwrap().iter().any(|l| l.contains(METRICS_TOKEN)), "{} logged the metrics token", system.name);
        stop(system);
    }
}
