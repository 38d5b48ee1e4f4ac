//! The receiver a target system mounts in front of its sink.
//!
//! Order of the checks on `POST /hr/v1/changes`, cheapest and least trusting
//! first, so that nobody without the token makes the receiver read, hold or
//! parse a byte of a body: token (401), content type (415), concurrency (503),
//! announced length (413) and in-flight bytes (503), then the body under the
//! request timeout (408, 413), idempotency key (400, 422), structure (400:
//! duplicate keys, nesting over 128), data types (403), unknown fields (400),
//! and the sink's validation (400) and store (503).

use crate::idempotency::{AnsweredKeys, BodyHash, Seen, MAX_IDEMPOTENCY_KEY_BYTES};
use crate::serve::ConnectionLimits;
use crate::strict::{self, bound_echoes, bounded, Refusal, ECHO_CHARS};
use crate::{bearer_matches, json_error, unauthorized};
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Json, Router};
use futures::StreamExt;
use hr_core::describe_json_error;
use hr_core::{ApplyOutcome, ChangeEnvelope, DataType, EnvelopeError, Sensitive, Sink, SinkError, BUCKETS};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

/// Where batches of changes are posted.
pub const CHANGES_PATH: &str = "/hr/v1/changes";
/// Where digests are read; `?scan=full` makes the system read and hash
/// everything it holds rather than answer from the digests it maintains
/// ([`Sink::rescan`](hr_core::Sink::rescan)).
pub const DIGEST_PATH: &str = "/hr/v1/digest";
/// Where one data type's bucket digests are read (`{data_type}` in the path).
pub const BUCKETS_PATH: &str = "/hr/v1/digest/{data_type}/buckets";
/// Where one data type's entries of some buckets are read (`?buckets=3,17`).
pub const ENTRIES_PATH: &str = "/hr/v1/entries/{data_type}";

/// Why a receiver cannot be configured or served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiverError {
    /// A token short enough to be guessed (an empty one included).
    #[error(transparent)]
    WeakToken(#[from] crate::WeakToken),
    /// Without a token only local processes may reach the receiver.
    #[error("refusing to serve the receiver without a token on {0}, which is not a loopback address; set a token")]
    OpenOnNetwork(std::net::SocketAddr),
    /// The listener's address could not be read.
    #[error("cannot serve the receiver: {0}")]
    Io(#[from] std::io::Error),
}

/// What `GET /healthz` asks: `Err(reason)` while the system cannot do its
/// work (for example its broker is unreachable), answered 503 with the reason.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What `GET /metrics` answers: the process's metrics in Prometheus text
/// format (e.g. `metrics_exporter_prometheus::PrometheusHandle::render`).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// How a target system's receiver behaves, and the limits that keep a
/// hostile or broken caller from pinning its memory or connections.
pub struct ReceiverConfig {
    pub(crate) health: Option<HealthCheck>,
    pub(crate) metrics: Option<MetricsRender>,
    pub(crate) metrics_token: Option<Sensitive<String>>,
    pub(crate) tls: Option<crate::TlsIdentity>,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) allowed: Vec<DataType>,
    pub(crate) token: Option<Sensitive<String>>,
    pub(crate) body_limit: usize,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) max_in_flight_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) idempotency_memory: usize,
}

impl ReceiverConfig {
    /// A receiver applying the `allowed` data types to `sink`, without a
    /// token (loopback only, see [`serve_receiver`](crate::serve_receiver))
    /// and with the default limits: 16 MiB bodies, 16 concurrent requests,
    /// 64 MiB of bodies in flight, 30 s per request, 10 s to send the
    /// headers, 256 connections, 4 MiB of remembered idempotency keys.
    pub fn new(sink: Arc<dyn Sink>, allowed: Vec<DataType>) -> Self {
        ReceiverConfig {
            health: None,
            metrics: None,
            metrics_token: None,
            tls: None,
            sink,
            allowed,
            token: None,
            body_limit: 16 << 20,
            max_concurrent_requests: 16,
            max_in_flight_bytes: 64 << 20,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: ConnectionLimits::default().header_read_timeout,
            max_connections: ConnectionLimits::default().max_connections,
            idempotency_memory: 4 << 20,
        }
    }

    /// Requires `Authorization: Bearer <token>` (scheme in any case).
    /// A token under [`MIN_TOKEN_BYTES`](crate::MIN_TOKEN_BYTES) is refused.
    pub fn with_token(mut self, token: &str) -> Result<Self, ReceiverError> {
        crate::check_token_strength("the receiver's", token)?;
        self.token = Some(Sensitive::new(token.to_string()));
        Ok(self)
    }

    /// Makes `GET /healthz` answer 503 with the reason while `check` fails
    /// (200 otherwise); without one it always answers 200.
    pub fn with_health(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    /// Serves HTTPS with `identity` ([`serve_receiver`](crate::serve_receiver)).
    pub fn with_tls(mut self, identity: crate::TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Requires `Authorization: Bearer <token>` on `GET /metrics` too (a
    /// token of its own, so a scraper cannot write); without one the
    /// metrics (counts only) are open to whoever reaches the port.
    pub fn with_metrics_token(mut self, token: &str) -> Result<Self, ReceiverError> {
        crate::check_token_strength("the metrics endpoint's", token)?;
        self.metrics_token = Some(Sensitive::new(token.to_string()));
        Ok(self)
    }

    /// Serves `GET /metrics` (counts only, never a key or a
    /// value) with what `render` returns.
    pub fn with_metrics(mut self, render: MetricsRender) -> Self {
        self.metrics = Some(render);
        self
    }

    /// Largest accepted body in bytes (413 above; at most 4 GiB).
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes.min(u32::MAX as usize);
        self
    }

    /// Most `POST`s handled at once; more are answered 503 at once, not queued.
    pub fn with_max_concurrent_requests(mut self, requests: usize) -> Self {
        self.max_concurrent_requests = requests.max(1);
        self
    }

    /// Most body bytes held at once across requests, reserved from each
    /// request's announced length (the body limit when it announces none)
    /// before its body is read; a request that does not fit is answered 503.
    /// Never less than the body limit. Parsing holds about as much again.
    pub fn with_max_in_flight_bytes(mut self, bytes: usize) -> Self {
        self.max_in_flight_bytes = bytes;
        self
    }

    /// Longest a `POST` may take from its headers to its answer, body and
    /// apply included (408 after).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Longest a connection may take to send a request's headers, idle
    /// keep-alive time included, before it is closed. Applied by
    /// [`serve_receiver`](crate::serve_receiver) only: `axum::serve` has no such setting.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Most open connections; [`serve_receiver`](crate::serve_receiver)
    /// accepts no more until one closes.
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Bytes of memory for answered idempotency keys (oldest forgotten first).
    pub fn with_idempotency_memory(mut self, bytes: usize) -> Self {
        self.idempotency_memory = bytes;
        self
    }
}

struct Shared {
    sink: Arc<dyn Sink>,
    allowed: Vec<DataType>,
    token: Option<Sensitive<String>>,
    body_limit: usize,
    in_flight: Arc<Semaphore>,
    answered: Mutex<AnsweredKeys>,
}

impl Shared {
    fn answered(&self) -> MutexGuard<'_, AnsweredKeys> {
        // The cache is consistent after every statement, so a poisoned lock is still usable.
        self.answered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The router a target system mounts in front of its sink:
/// `POST /hr/v1/changes`, `GET /hr/v1/digest`, `GET /healthz`,
/// `GET /hr/v1/openapi.json`.
///
/// It enforces the token, content type, body limit, concurrency, in-flight
/// bytes and request timeout itself; the header read timeout and the
/// connection cap need [`serve_receiver`](crate::serve_receiver), which
/// deployers should use instead of `axum::serve`.
pub fn receiver(config: ReceiverConfig) -> Router {
    if config.token.is_none() {
        tracing::warn!("REST receiver WITHOUT a bearer token: anyone who can reach it can write to this system's store; serve it on loopback only");
    }
    let in_flight = config.max_in_flight_bytes.max(config.body_limit).min(Semaphore::MAX_PERMITS);
    let shared = Arc::new(Shared {
        sink: config.sink,
        allowed: config.allowed,
        token: config.token,
        body_limit: config.body_limit,
        in_flight: Arc::new(Semaphore::new(in_flight)),
        answered: Mutex::new(AnsweredKeys::new(config.idempotency_memory)),
    });
    let changes = post(apply_changes).route_layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(shared.clone(), require_token))
            .layer(middleware::from_fn(require_json))
            .layer(HandleErrorLayer::new(answer_limit_error))
            .timeout(config.request_timeout)
            .load_shed()
            .concurrency_limit(config.max_concurrent_requests)
            .layer(middleware::from_fn_with_state(shared.clone(), reserve_body_bytes)),
    );
    let digests = get(digest).route_layer(middleware::from_fn_with_state(shared.clone(), require_token));
    Router::new()
        .route(CHANGES_PATH, changes)
        .route(DIGEST_PATH, digests)
        .route(BUCKETS_PATH, get(bucket_digests).route_layer(middleware::from_fn_with_state(shared.clone(), require_token)))
        .route(ENTRIES_PATH, get(bucket_entries).route_layer(middleware::from_fn_with_state(shared.clone(), require_token)))
        .route("/healthz", get(move || healthz(config.health.clone())))
        .route("/hr/v1/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(shared)
        .merge(metrics_endpoint(config.metrics, config.metrics_token))
}

async fn healthz(check: Option<HealthCheck>) -> Response {
    match check.map_or(Ok(()), |check| check()) {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(reason) => error(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", reason),
    }
}

/// `GET /metrics` answering what `render` returns (404 without one),
/// behind `token` if there is one: for the receiver, and for any other
/// process of a deployment that exports metrics (the hub's `--metrics-listen`).
pub fn metrics_endpoint(render: Option<MetricsRender>, token: Option<Sensitive<String>>) -> Router {
    let token = Arc::new(token);
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let (render, token) = (render.clone(), token.clone());
            async move {
                if let Some(expected) = token.as_ref() {
                    if !bearer_matches(&headers, expected.expose()) {
                        count_refused(StatusCode::UNAUTHORIZED, "unauthorized");
                        return unauthorized("the metrics need a valid bearer token");
                    }
                }
                match render {
                    Some(render) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()).into_response(),
                    None => error(StatusCode::NOT_FOUND, "no_metrics", "this receiver exports no metrics"),
                }
            }
        }),
    )
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    count_refused(status, code);
    json_error(status, code, message)
}

/// Counts a refused request by reason (`hr_receiver_refused_total`).
fn count_refused(status: StatusCode, code: &str) {
    // Probes of /healthz and /metrics are not requests refused.
    if (status.is_client_error() || status.is_server_error()) && !matches!(code, "unhealthy" | "no_metrics") {
        metrics::counter!("hr_receiver_refused_total", "reason" => code.to_string()).increment(1);
    }
}

/// A refusal found by one step of the handler, answered as a JSON error.
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refused {
    Refused { status, code, message: message.into() }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

fn retry_later(mut response: Response) -> Response {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Longest a refused body is read and discarded after the early answer.
const LINGER: Duration = Duration::from_secs(5);

/// Answers `response` without reading the request's body, then reads and
/// discards what the caller still sends, for at most [`LINGER`]. Closing on
/// unread bytes resets the connection, and a caller still writing its body
/// would see the reset instead of the answer; discarding holds no memory.
fn refuse_unread(request: Request, response: Response) -> Response {
    let mut body = request.into_body().into_data_stream();
    tokio::spawn(tokio::time::timeout(LINGER, async move { while let Some(Ok(_)) = body.next().await {} }));
    response
}

fn busy(message: &str) -> Response {
    retry_later(error(StatusCode::SERVICE_UNAVAILABLE, "busy", message))
}

fn too_large(limit: usize) -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body is over this receiver's limit of {limit} bytes; send smaller batches"))
}

fn applied(outcome: ApplyOutcome) -> Response {
    Json(json!({"applied": outcome.applied, "stale": outcome.stale, "out_of_scope": outcome.out_of_scope, "fields_dropped": outcome.fields_dropped}))
        .into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    shared.token.as_ref().is_none_or(|expected| bearer_matches(headers, expected.expose()))
}

/// Refuses before the body is touched: a caller without the token must not
/// make the receiver read or hold anything.
async fn require_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if authorized(&shared, request.headers()) {
        return next.run(request).await;
    }
    count_refused(StatusCode::UNAUTHORIZED, "unauthorized");
    refuse_unread(request, unauthorized("a valid bearer token is required"))
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

async fn require_json(request: Request, next: Next) -> Response {
    if is_json(request.headers()) {
        return next.run(request).await;
    }
    let response = error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "the body must be sent as Content-Type: application/json");
    refuse_unread(request, response)
}

/// Answers what the tower layers refuse: the request timeout and load shedding.
async fn answer_limit_error(e: BoxError) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        return error(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the request did not complete within this receiver's request timeout; retrying is safe");
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        return busy("too many requests in progress; retry later");
    }
    tracing::warn!(error = %e, "receiver middleware failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the receiver failed; retry later")
}

fn announced_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reserves the body's bytes from the in-flight budget before it is read,
/// and holds them until the answer: the budget bounds what bodies, parsed
/// batches and sink copies can hold at once, whoever sends them.
async fn reserve_body_bytes(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let announced = announced_length(request.headers());
    if announced.is_some_and(|n| n > shared.body_limit) {
        return refuse_unread(request, too_large(shared.body_limit));
    }
    // Without a length (chunked), the body may be as large as the limit.
    let reserved = announced.unwrap_or(shared.body_limit) as u32;
    let Ok(_reservation) = shared.in_flight.clone().try_acquire_many_owned(reserved) else {
        return refuse_unread(request, busy("too many body bytes in flight; retry later"));
    };
    next.run(request).await
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Refused> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    if value.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        let message = format!("the Idempotency-Key is {} bytes; at most {MAX_IDEMPOTENCY_KEY_BYTES} are accepted", value.len());
        return Err(refuse(StatusCode::BAD_REQUEST, "idempotency_key_too_long", message));
    }
    match value.to_str() {
        Ok(key) if !key.is_empty() => Ok(Some(key.to_string())),
        _ => Err(refuse(StatusCode::BAD_REQUEST, "invalid_idempotency_key", "the Idempotency-Key must be 1 to 200 visible ASCII characters")),
    }
}

fn unreadable(rejection: BytesRejection, limit: usize) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(limit);
    }
    tracing::debug!(error = %rejection, "request body could not be read");
    error(StatusCode::BAD_REQUEST, "unreadable_body", "the request body could not be read")
}

fn replayed(shared: &Shared, key: &str, body: &BodyHash) -> Option<Response> {
    match shared.answered().check(key, body) {
        Seen::New => None,
        Seen::Same(outcome) => Some(applied(outcome)),
        Seen::OtherBody => Some(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with another body; nothing applied (send new content under a new key)",
        )),
    }
}

fn malformed(e: &serde_json::Error) -> Refused {
    let message = format!("body is not a JSON array of hr.v1 change envelopes: {}", describe_json_error(e));
    refuse(StatusCode::BAD_REQUEST, "malformed_json", bound_echoes(&message))
}

/// Decodes the body after checking its structure: nothing nested deeper
/// than 128 levels, no object with a key twice (which serde would let the
/// last one win, unseen).
fn decode_batch(body: &[u8]) -> Result<Vec<ChangeEnvelope>, Refused> {
    strict::check_structure(body).map_err(|refusal| match refusal {
        Refusal::Malformed(e) => malformed(&e),
        Refusal::DuplicateKey(message) => refuse(StatusCode::BAD_REQUEST, "duplicate_key", bound_echoes(&message)),
    })?;
    serde_json::from_slice(body).map_err(|e| malformed(&e))
}

fn check_allowed(allowed: &[DataType], batch: &[ChangeEnvelope]) -> Result<(), Refused> {
    match batch.iter().enumerate().find(|(_, c)| !allowed.contains(&c.data_type)) {
        None => Ok(()),
        Some((i, c)) => Err(refuse(StatusCode::FORBIDDEN, "data_type_not_allowed", format!("change {i}: this system does not accept {} records", c.data_type))),
    }
}

/// Refuses payloads with fields their record type does not define: the
/// sink's validation skips them and would store them verbatim.
fn check_known_fields(batch: &[ChangeEnvelope]) -> Result<(), Refused> {
    for (i, change) in batch.iter().enumerate() {
        let unknown = strict::unknown_fields(change);
        if !unknown.is_empty() {
            let message =
                format!("change {i}: the {} payload holds fields hr.v1 does not define: {}; nothing applied", change.data_type, strict::list_fields(&unknown));
            return Err(refuse(StatusCode::BAD_REQUEST, "unknown_fields", message));
        }
    }
    Ok(())
}

fn describe_invalid(index: usize, source: &EnvelopeError) -> String {
    let message = match source {
        EnvelopeError::Invalid { event_id, data_type, problem } => {
            format!("change {index} ({data_type}, event \"{}\") is invalid: {problem}", bounded(event_id, ECHO_CHARS))
        }
        other => format!("change {index} is invalid: {other}"),
    };
    bound_echoes(&message)
}

/// The store's own words may name files and tables: they go to the log, the
/// caller gets a generic answer.
fn unavailable(e: &SinkError) -> Response {
    tracing::warn!(error = %e, "sink unavailable; answering 503");
    retry_later(error(StatusCode::SERVICE_UNAVAILABLE, "sink_unavailable", "the store is unavailable; retry later"))
}

async fn apply_changes(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unreadable(rejection, shared.body_limit),
    };
    let body_hash: BodyHash = Sha256::digest(&body).into();
    if let Some(answer) = key.as_deref().and_then(|k| replayed(&shared, k, &body_hash)) {
        return answer;
    }
    let batch = match decode_batch(&body) {
        Ok(batch) => batch,
        Err(refusal) => return refusal.into_response(),
    };
    drop(body);
    if let Err(refusal) = check_allowed(&shared.allowed, &batch).and_then(|()| check_known_fields(&batch)) {
        return refusal.into_response();
    }
    // The sink validates every envelope before applying any (Sink contract).
    match shared.sink.apply(&batch).await {
        Ok(outcome) => {
            if let Some(key) = key {
                shared.answered().remember(key, body_hash, outcome);
            }
            applied(outcome)
        }
        Err(SinkError::Invalid { index, source }) => error(StatusCode::BAD_REQUEST, "invalid_envelope", describe_invalid(index, &source)),
        Err(e) => unavailable(&e),
    }
}

/// A query string the endpoint cannot read, answered in the API's own
/// JSON error form (axum's answer is plain text). Its words name the
/// parameter and the problem, bounded as every echo is.
fn bad_query(rejection: &QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_query", bound_echoes(&format!("the query string cannot be read: {}", rejection.body_text())))
}

#[derive(serde::Deserialize)]
struct DigestQuery {
    scan: Option<String>,
}

async fn digest(State(shared): State<Arc<Shared>>, query: Result<Query<DigestQuery>, QueryRejection>) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return bad_query(&rejection),
    };
    match query.scan.as_deref() {
        None => {}
        Some("full") => {
            if let Err(e) = shared.sink.rescan().await {
                return unavailable(&e);
            }
        }
        Some(_) => return error(StatusCode::BAD_REQUEST, "bad_scan", "scan must be `full` (read everything held) or left out"),
    }
    let mut out = serde_json::Map::new();
    for t in &shared.allowed {
        match shared.sink.digest(*t).await {
            Ok(d) => {
                out.insert(t.as_str().into(), serde_json::to_value(d).unwrap_or_default());
            }
            Err(e) => return unavailable(&e),
        }
    }
    Json(serde_json::Value::Object(out)).into_response()
}

/// A data type this system takes, named in a path, or the error answer.
fn allowed_type(shared: &Shared, data_type: &str) -> Result<DataType, Box<Response>> {
    let Ok(data_type) = data_type.parse::<DataType>() else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "unknown_data_type",
            "no such data type; expected one of employee, org_unit, master_data, permission, compensation",
        )));
    };
    if !shared.allowed.contains(&data_type) {
        return Err(Box::new(error(StatusCode::FORBIDDEN, "data_type_not_allowed", format!("this system does not accept {data_type} records"))));
    }
    Ok(data_type)
}

async fn bucket_digests(State(shared): State<Arc<Shared>>, Path(data_type): Path<String>) -> Response {
    let data_type = match allowed_type(&shared, &data_type) {
        Ok(data_type) => data_type,
        Err(answer) => return *answer,
    };
    match shared.sink.bucket_digests(data_type).await {
        Ok(buckets) => Json(json!({"buckets": buckets})).into_response(),
        Err(e) => unavailable(&e),
    }
}

#[derive(serde::Deserialize)]
struct BucketQuery {
    buckets: String,
}

async fn bucket_entries(State(shared): State<Arc<Shared>>, Path(data_type): Path<String>, query: Result<Query<BucketQuery>, QueryRejection>) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return bad_query(&rejection),
    };
    let mut wanted = [false; BUCKETS];
    for part in query.buckets.split(',').filter(|p| !p.is_empty()) {
        match part.parse::<usize>() {
            Ok(b) if b < BUCKETS => wanted[b] = true,
            _ => return error(StatusCode::BAD_REQUEST, "bad_bucket", format!("buckets must be numbers from 0 to {}, comma separated", BUCKETS - 1)),
        }
    }
    let data_type = match allowed_type(&shared, &data_type) {
        Ok(data_type) => data_type,
        Err(answer) => return *answer,
    };
    match shared.sink.entries(data_type).await {
        Ok(entries) => Json(json!({"entries": entries.into_iter().filter(|e| wanted[e.bucket()]).collect::<Vec<_>>()})).into_response(),
        Err(e) => unavailable(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn an_empty_idempotency_key_is_refused_and_an_absent_one_is_none() {
        assert!(idempotency_key(&headers(&[("idempotency-key", "")])).is_err());
        assert_eq!(idempotency_key(&headers(&[("idempotency-key", "k-1")])).ok().flatten().as_deref(), Some("k-1"));
        assert!(matches!(idempotency_key(&HeaderMap::new()), Ok(None)));
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[("content-type", "Application/JSON; charset=utf-8")])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[("content-type", "application/jsonx")])));
        assert!(!is_json(&HeaderMap::new()));
    }
}
