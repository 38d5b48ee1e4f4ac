use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hr_core::{ChangeEnvelope, DataType, Digest, DigestEntry, Sink, SinkError, BUCKETS};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Where batches of changes are posted.
pub const CHANGES_PATH: &str = "/hr/v1/changes";
/// Where digests are read.
pub const DIGEST_PATH: &str = "/hr/v1/digest";
/// Where one data type's bucket digests are read (`{data_type}` in the path).
pub const BUCKETS_PATH: &str = "/hr/v1/digest/{data_type}/buckets";
/// Where one data type's entries of some buckets are read (`?buckets=3,17`).
pub const ENTRIES_PATH: &str = "/hr/v1/entries/{data_type}";

/// How a target system's receiver behaves.
pub struct ReceiverConfig {
    sink: Arc<dyn Sink>,
    allowed: Vec<DataType>,
    token: Option<hr_core::Sensitive<String>>,
    body_limit: usize,
    remembered_keys: usize,
}

impl ReceiverConfig {
    /// A receiver applying the `allowed` data types to `sink` (no token, 16 MiB body limit).
    pub fn new(sink: Arc<dyn Sink>, allowed: Vec<DataType>) -> Self {
        ReceiverConfig { sink, allowed, token: None, body_limit: 16 << 20, remembered_keys: 10_000 }
    }

    /// Requires `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(hr_core::Sensitive::new(token.to_string()));
        self
    }

    /// Largest accepted body in bytes (413 above).
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}

struct Shared {
    sink: Arc<dyn Sink>,
    allowed: Vec<DataType>,
    token: Option<hr_core::Sensitive<String>>,
    answered: Mutex<(HashMap<String, serde_json::Value>, VecDeque<String>)>,
    remembered_keys: usize,
}

/// The router a target system mounts in front of its sink:
/// `POST /hr/v1/changes`, `GET /hr/v1/digest`, `GET /healthz`,
/// `GET /hr/v1/openapi.json`.
pub fn receiver(config: ReceiverConfig) -> Router {
    let shared = Arc::new(Shared {
        sink: config.sink,
        allowed: config.allowed,
        token: config.token,
        answered: Mutex::new((HashMap::new(), VecDeque::new())),
        remembered_keys: config.remembered_keys,
    });
    Router::new()
        .route(CHANGES_PATH, post(apply_changes))
        .route(DIGEST_PATH, get(digest))
        .route(BUCKETS_PATH, get(bucket_digests))
        .route(ENTRIES_PATH, get(bucket_entries))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/hr/v1/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": code, "message": message.into()}))).into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(expected) = &shared.token else { return true };
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    presented.as_bytes().ct_eq(expected.expose().as_bytes()).into()
}

async fn apply_changes(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    }
    let idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(key) = &idempotency_key {
        if let Some(previous) = shared.answered.lock().unwrap_or_else(|p| p.into_inner()).0.get(key) {
            return (StatusCode::OK, Json(previous.clone())).into_response();
        }
    }
    let batch: Vec<ChangeEnvelope> = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_json", format!("body is not a JSON array of hr.v1 change envelopes: {}", hr_core::envelope::describe_json_error(&e))),
    };
    if let Some((i, c)) = batch.iter().enumerate().find(|(_, c)| !shared.allowed.contains(&c.data_type)) {
        return error(StatusCode::FORBIDDEN, "data_type_not_allowed", format!("change {i}: this system does not accept {} records", c.data_type));
    }
    // The sink validates every envelope before applying any (Sink contract).
    match shared.sink.apply(&batch).await {
        Ok(outcome) => {
            let answer = json!({"applied": outcome.applied, "stale": outcome.stale});
            if let Some(key) = idempotency_key {
                let mut answered = shared.answered.lock().unwrap_or_else(|p| p.into_inner());
                answered.0.insert(key.clone(), answer.clone());
                answered.1.push_back(key);
                while answered.1.len() > shared.remembered_keys {
                    if let Some(old) = answered.1.pop_front() {
                        answered.0.remove(&old);
                    }
                }
            }
            (StatusCode::OK, Json(answer)).into_response()
        }
        Err(e @ SinkError::Invalid { .. }) => error(StatusCode::BAD_REQUEST, "invalid_envelope", e.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "sink unavailable; answering 503");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "sink_unavailable", e.to_string());
            r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
            r
        }
    }
}

async fn digest(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    }
    let mut out = serde_json::Map::new();
    for t in &shared.allowed {
        match shared.sink.digest(*t).await {
            Ok(d) => {
                out.insert(t.as_str().into(), serde_json::to_value(d).unwrap_or_default());
            }
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "sink_unavailable", e.to_string()),
        }
    }
    Json(serde_json::Value::Object(out)).into_response()
}

/// The entries of an allowed data type, or the error answer.
async fn allowed_entries(shared: &Shared, headers: &HeaderMap, data_type: &str) -> Result<Vec<DigestEntry>, Response> {
    if !authorized(shared, headers) {
        return Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required"));
    }
    let data_type: DataType = data_type.parse().map_err(|e: hr_core::schema::UnknownDataType| error(StatusCode::NOT_FOUND, "unknown_data_type", e.to_string()))?;
    if !shared.allowed.contains(&data_type) {
        return Err(error(StatusCode::FORBIDDEN, "data_type_not_allowed", format!("this system does not accept {data_type} records")));
    }
    shared.sink.entries(data_type).await.map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, "sink_unavailable", e.to_string()))
}

async fn bucket_digests(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(data_type): Path<String>) -> Response {
    match allowed_entries(&shared, &headers, &data_type).await {
        Ok(entries) => Json(json!({"buckets": Digest::buckets(&entries)})).into_response(),
        Err(answer) => answer,
    }
}

#[derive(serde::Deserialize)]
struct BucketQuery {
    buckets: String,
}

async fn bucket_entries(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(data_type): Path<String>, Query(query): Query<BucketQuery>) -> Response {
    let mut wanted = [false; BUCKETS];
    for part in query.buckets.split(',').filter(|p| !p.is_empty()) {
        match part.parse::<usize>() {
            Ok(b) if b < BUCKETS => wanted[b] = true,
            _ => return error(StatusCode::BAD_REQUEST, "bad_bucket", format!("buckets must be numbers from 0 to {}, comma separated", BUCKETS - 1)),
        }
    }
    match allowed_entries(&shared, &headers, &data_type).await {
        Ok(entries) => Json(json!({"entries": entries.into_iter().filter(|e| wanted[e.bucket()]).collect::<Vec<_>>()})).into_response(),
        Err(answer) => answer,
    }
}
