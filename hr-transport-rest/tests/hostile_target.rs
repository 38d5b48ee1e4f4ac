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
