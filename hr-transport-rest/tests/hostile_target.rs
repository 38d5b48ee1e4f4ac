//! A target is not trusted: whatever it answers (a `Retry-After` of any
//! size, a redirect, an endless or foreign body) is that target's error,
//! reported by name, and never panics or stalls the hub past its deadline.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use hr_core::{ChangeEnvelope, DataType, MasterData, Propagator};
use hr_transport_rest::{RestConfig, RestPropagator, RestTarget, CHANGES_PATH, DIGEST_PATH};
use std::time::{Duration, Instant};

/// Serves `router` on loopback; its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn change() -> ChangeEnvelope {
    let md = MasterData { set: "md.category".into(), code: "C1".into(), name: "Food".into(), attributes: Default::default() };
    ChangeEnvelope::of(&md, 1, "hub").unwrap()
}

fn propagator(url: &str, deadline: Duration) -> RestPropagator {
    let mut config = RestConfig::new(vec![RestTarget::new("erp", url, vec![DataType::MasterData])]);
    config.deadline = deadline;
    config.initial_backoff = Duration::from_millis(10);
    config.max_read_answer_bytes = 4096;
    RestPropagator::new(config).unwrap()
}

/// Propagates one change to a target serving `router`; the failure's text.
async fn failure_against(router: Router, deadline: Duration) -> (String, Duration) {
    let url = serve(router).await;
    let started = Instant::now();
    let err = propagator(&url, deadline).propagate(&[change()]).await.expect_err("a hostile answer must fail the call");
    let text = err.to_string();
    assert!(text.contains("erp"), "the failure names the target: {text}");
    (text, started.elapsed())
}

#[tokio::test]
async fn a_retry_after_of_any_size_fails_the_target_at_once_instead_of_panicking() {
    for seconds in ["18446744073709551615", "999999999999", "31536000"] {
        let router =
            Router::new().route(CHANGES_PATH, post(move || async move { (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, seconds)], "busy") }));
        let (text, took) = failure_against(router, Duration::from_secs(5)).await;
        assert!(text.contains(&format!("asked to retry after {seconds} s")) && text.contains("deadline"), "{text}");
        assert!(took < Duration::from_secs(4), "gave up only after {took:?}");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let followed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = followed.clone();
    let elsewhere = serve(Router::new().route(
        CHANGES_PATH,
        post(move || {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            async { axum::Json(serde_json::json!({"applied": 1, "stale": 0})) }
        }),
    ))
    .await;
    let location = format!("{elsewhere}{CHANGES_PATH}");
    let router =
        Router::new().route(CHANGES_PATH, post(move || async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response() }));
    let (text, _) = failure_against(router, Duration::from_secs(5)).await;
    assert!(text.contains("307"), "{text}");
    assert!(!followed.load(std::sync::atomic::Ordering::SeqCst), "the redirect was followed, token and records with it");
}

#[tokio::test]
async fn a_success_that_is_not_a_receivers_answer_is_the_targets_error() {
    for body in ["<html>proxy login</html>", "{}", "{\"applied\": \"all\"}"] {
        let router = Router::new().route(CHANGES_PATH, post(move || async move { (StatusCode::OK, body) }));
        let (text, _) = failure_against(router, Duration::from_secs(5)).await;
        assert!(text.contains("not a receiver's"), "{body}: {text}");
    }
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_limit() {
    // 1 MiB of error text on a batch, far over what a receiver answers.
    let router = Router::new().route(CHANGES_PATH, post(|| async { (StatusCode::BAD_REQUEST, "x".repeat(1 << 20)) }));
    let (text, _) = failure_against(router, Duration::from_secs(5)).await;
    assert!(text.contains("over the 65536-byte limit"), "{text}");

    // A digest read over the configured read limit (4 KiB here).
    let big = serde_json::json!({"employee": {"count": 1, "hash": "0".repeat(8192)}}).to_string();
    let url = serve(Router::new().route(DIGEST_PATH, get(move || async move { big }))).await;
    let err = propagator(&url, Duration::from_secs(5)).digests("erp").await.unwrap_err().to_string();
    assert!(err.contains("over the 4096-byte limit") && err.contains("erp"), "{err}");
}

/// A receiver that stored less than it was sent (its scope settings differ
/// from the hub's) fails the target, naming the setting to compare.
#[tokio::test]
async fn an_answer_saying_changes_were_left_out_names_the_setting_that_differs() {
    for (answer, setting) in
        [(r#"{"applied": 0, "stale": 0, "out_of_scope": 1}"#, "all_grants"), (r#"{"applied": 1, "stale": 0, "fields_dropped": 1}"#, "omit")]
    {
        let router = Router::new().route(CHANGES_PATH, post(move || async move { (StatusCode::OK, answer) }));
        let (text, _) = failure_against(router, Duration::from_secs(5)).await;
        assert!(text.contains(setting), "{answer}: {text}");
    }
    // Nothing left out: applied, and no stale change counted.
    let url =
        serve(Router::new().route(CHANGES_PATH, post(|| async { (StatusCode::OK, r#"{"applied": 1, "stale": 0, "out_of_scope": 0, "fields_dropped": 0}"#) })))
            .await;
    let rest = propagator(&url, Duration::from_secs(5));
    rest.propagate(&[change()]).await.expect("a receiver's answer");
    assert!(rest.stale_counts().is_empty(), "{:?}", rest.stale_counts());
}

/// A target slower than the request timeout, and one that closes the
/// connection without answering: each is that target's retriable error, said as it is.
#[tokio::test]
async fn a_target_that_times_out_or_hangs_up_is_named_with_what_happened() {
    let slow = Router::new().route(
        CHANGES_PATH,
        post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let url = serve(slow).await;
    let mut config = RestConfig::new(vec![RestTarget::new("erp", &url, vec![DataType::MasterData])]);
    config.request_timeout = Duration::from_millis(200);
    config.deadline = Duration::from_millis(700);
    let err = RestPropagator::new(config).unwrap().propagate(&[change()]).await.unwrap_err().to_string();
    assert!(err.contains("request timed out"), "{err}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await;
            drop(socket); // hangs up without a word
        }
    });
    let err = propagator(&url, Duration::from_millis(500)).propagate(&[change()]).await.unwrap_err().to_string();
    assert!(err.contains("request failed") && !err.contains("cannot connect"), "{err}");
}

/// One data type per request, so a receiver counts what it applied per type.
#[tokio::test]
async fn each_request_carries_one_data_type() {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let seen = bodies.clone();
    let router = Router::new().route(
        CHANGES_PATH,
        post(move |body: String| {
            let seen = seen.clone();
            async move {
                let changes: serde_json::Value = serde_json::from_str(&body).unwrap();
                let n = changes.as_array().map_or(0, Vec::len);
                seen.lock().unwrap().push(changes);
                (StatusCode::OK, format!(r#"{{"applied": {n}, "stale": 0}}"#))
            }
        }),
    );
    let url = serve(router).await;
    let types = vec![DataType::MasterData, DataType::OrgUnit];
    let rest = RestPropagator::new(RestConfig::new(vec![RestTarget::new("erp", &url, types.clone())])).unwrap();
    assert_eq!(hr_core::Propagator::targets(&rest), [("erp".to_string(), types)].into());
    let unit = hr_core::OrgUnit { id: "A-D1".into(), company: None, name: "D1".into(), parent: None, leader: None, updated_at: None };
    let md = |code: &str| MasterData { set: "md.category".into(), code: code.into(), name: "x".into(), attributes: Default::default() };
    let batch =
        vec![ChangeEnvelope::of(&md("C1"), 1, "hub").unwrap(), ChangeEnvelope::of(&md("C2"), 1, "hub").unwrap(), ChangeEnvelope::of(&unit, 1, "hub").unwrap()];
    rest.propagate(&batch).await.unwrap();
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    for body in bodies.iter() {
        let types: std::collections::BTreeSet<&str> = body.as_array().unwrap().iter().map(|c| c["data_type"].as_str().unwrap()).collect();
        assert_eq!(types.len(), 1, "{body}");
    }
}
