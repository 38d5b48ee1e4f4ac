//! The hub's HTTP API for the HR side: single changes into a running hub.
//!
//! | Method and path | Body | Answer |
//! |---|---|---|
//! | `POST /hr/v1/permissions` | `permissions.jsonl` lines | 200 once every target that receives them applied (REST) or confirmed (Kafka) them |
//! | `PATCH /hr/v1/employees/{id}` | an [`EmployeeChange`] as JSON | the same |
//! | `GET /hr/v1/openapi.json` | | the OpenAPI document |
//! | `GET /healthz` | | 200 |
//!
//! The two changing calls need `Authorization: Bearer <token>` (401
//! otherwise, before the body is read); their body must arrive within the
//! body read timeout (408) and stay under the body limit (413). A bad line or field is a 400 naming
//! it, and nothing of that request is sent; a change older than what the
//! hub holds for its key is a 409 ("newer wins"). Calls wait for the hub's
//! lock, so a call made during a periodic run is applied after it, never
//! interleaved with it.

use crate::hub::{EmployeeChange, Hub, HubError, RealtimeError, SyncOutcome};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Path of the real-time permission call.
pub const PERMISSIONS_PATH: &str = "/hr/v1/permissions";
/// Path of the real-time employee call (`{id}`: unified or source id).
pub const EMPLOYEES_PATH: &str = "/hr/v1/employees/{id}";

/// How the hub's HTTP API runs.
#[derive(Clone)]
pub struct ApiConfig {
    token: String,
    /// How long a call waits until every target applied or confirmed its
    /// changes before answering 504 (default 30 s).
    pub confirm_deadline: Duration,
    /// The largest body accepted (default 1 MiB); larger gets 413.
    pub body_limit: usize,
    /// How long a caller may take to send its body (default 10 s); a
    /// slower one gets 408, so a trickled body cannot hold a connection.
    pub body_read_timeout: Duration,
}

/// Why the API cannot be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiConfigError {
    /// A blank token would admit every caller presenting a blank one.
    #[error("the HR API's bearer token is empty; set a real one (HR_HUB_TOKEN)")]
    EmptyToken,
}

impl ApiConfig {
    /// An API that admits callers presenting `token` as a bearer token; a
    /// blank token is refused.
    pub fn new(token: impl Into<String>) -> Result<Self, ApiConfigError> {
        let token = token.into();
        if token.trim().is_empty() {
            return Err(ApiConfigError::EmptyToken);
        }
        Ok(ApiConfig { token, confirm_deadline: Duration::from_secs(30), body_limit: 1 << 20, body_read_timeout: Duration::from_secs(10) })
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("token", &"[redacted]")
            .field("confirm_deadline", &self.confirm_deadline)
            .field("body_limit", &self.body_limit)
            .field("body_read_timeout", &self.body_read_timeout)
            .finish()
    }
}

struct Api {
    hub: Arc<Mutex<Hub>>,
    config: ApiConfig,
}

/// The API's routes over a shared hub; serve them with
/// [`serve_with_limits`](hr_transport_rest::serve_with_limits), which
/// closes stalled connections and caps open ones (`axum::serve` does
/// neither). Periodic runs that lock the same mutex never interleave with
/// a call.
pub fn hub_api(hub: Arc<Mutex<Hub>>, config: ApiConfig) -> Router {
    let limit = config.body_limit;
    let api = Arc::new(Api { hub, config });
    let changes = Router::new()
        .route(PERMISSIONS_PATH, post(post_permissions))
        .route(EMPLOYEES_PATH, patch(patch_employee))
        .layer(axum::middleware::from_fn_with_state(api.clone(), read_body_in_time))
        .layer(axum::middleware::from_fn_with_state(api.clone(), require_token))
        .layer(DefaultBodyLimit::max(limit));
    Router::new().route("/hr/v1/openapi.json", get(|| async { Json(document()) })).route("/healthz", get(|| async { "ok" })).merge(changes).with_state(api)
}

async fn require_token(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    if hr_transport_rest::bearer_matches(request.headers(), &api.config.token) {
        return next.run(request).await;
    }
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required (the hub's HR_HUB_TOKEN)");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Reads the whole body, within the body limit and the body read timeout,
/// before the call is handled (after the token check).
async fn read_body_in_time(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(api.config.body_read_timeout, axum::body::to_bytes(body, api.config.body_limit)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(_)) => error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body is over {} bytes, or broke off", api.config.body_limit)),
        Err(_) => {
            let message = format!("the body did not arrive within {} s; nothing was sent", api.config.body_read_timeout.as_secs());
            error(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
        }
    }
}

async fn post_permissions(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "the body is not UTF-8");
    };
    let Some(mut hub) = locked(&api).await else { return busy(&api) };
    let sent = hub.apply_permission_lines(body).await;
    drop(hub);
    confirmed(&api, sent).await
}

async fn patch_employee(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    let change: EmployeeChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        // EmployeeChange holds no sensitive field, so serde's message (naming the field) may be shown.
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", format!("not a valid employee change: {e}")),
    };
    let Some(mut hub) = locked(&api).await else { return busy(&api) };
    let sent = hub.change_employee(&id, change).await;
    drop(hub);
    confirmed(&api, sent).await
}

/// The hub, once no run or other call holds it (at most the confirmation deadline).
async fn locked(api: &Api) -> Option<tokio::sync::MutexGuard<'_, Hub>> {
    tokio::time::timeout(api.config.confirm_deadline, api.hub.lock()).await.ok()
}

fn busy(api: &Api) -> Response {
    let message =
        format!("the hub stayed busy (a periodic run planning or comparing) for {} s; nothing was sent, retry", api.config.confirm_deadline.as_secs());
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// Answers once every target applied the changes sent, or why not.
async fn confirmed(api: &Api, sent: Result<SyncOutcome, RealtimeError>) -> Response {
    let sent = match sent {
        Ok(sent) => sent,
        Err(refused) => return refusal(refused),
    };
    match sent.receipt.applied(api.config.confirm_deadline).await {
        Ok(applied) => {
            tracing::info!(changes = sent.sent, "real-time change applied in every target");
            (StatusCode::OK, Json(json!({"changes": sent.sent, "applied": applied.delivered}))).into_response()
        }
        Err(e) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "not_confirmed",
            format!(
                "sent, but not every target confirmed it within {} s: {e}; the hub's next run repairs what is missing",
                api.config.confirm_deadline.as_secs()
            ),
        ),
    }
}

fn refusal(refused: RealtimeError) -> Response {
    let message = refused.to_string();
    tracing::warn!(error = %message, "real-time change refused");
    match refused {
        RealtimeError::Invalid(problems) => {
            (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid", "message": message, "problems": problems}))).into_response()
        }
        RealtimeError::UnknownEmployee(_) => error(StatusCode::NOT_FOUND, "unknown_employee", message),
        RealtimeError::Hub(HubError::InvalidRecord { .. }) | RealtimeError::Hub(HubError::ImplausibleTime { .. }) => {
            error(StatusCode::BAD_REQUEST, "invalid", message)
        }
        RealtimeError::NotReady => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
        RealtimeError::Hub(HubError::OlderThanCurrent { .. }) => error(StatusCode::CONFLICT, "older_than_current", message),
        RealtimeError::Hub(HubError::Propagate(_)) => error(StatusCode::BAD_GATEWAY, "not_delivered", message),
        RealtimeError::Hub(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "hub_error", message),
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": code, "message": message.into()}))).into_response()
}

/// The OpenAPI 3.0 description of the API, as served at `/hr/v1/openapi.json`.
fn document() -> serde_json::Value {
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let applied = json!({"description": "Every target that receives the changes applied (REST) or confirmed (Kafka) them",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Applied"}}}});
    let common = |extra: &[(&str, serde_json::Value)]| {
        let mut responses = serde_json::Map::new();
        responses.insert("200".into(), applied.clone());
        responses.insert("401".into(), err("Missing or wrong bearer token; answered before the body is read"));
        responses.insert("408".into(), err("The body did not arrive within the body read timeout; nothing sent"));
        responses.insert("409".into(), err("The change happened before the one the hub holds for its key (newer wins); nothing sent"));
        responses.insert("413".into(), err("Body over the limit"));
        responses.insert("502".into(), err("Not every target could be reached; the change is not recorded: retry"));
        responses.insert("504".into(), err("Sent, but not confirmed by every target in time; the next run repairs what is missing"));
        extra.iter().for_each(|(code, r)| drop(responses.insert(code.to_string(), r.clone())));
        serde_json::Value::Object(responses)
    };
    let status = json!({"type": "string", "enum": ["active", "on_leave", "terminated"]});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "HR hub: real-time changes", "version": "1.0.0",
            "description": "Single changes from the HR side into a running hub, applied in every target before the answer. Newer wins: every change carries the time it happened, and periodic runs never undo a newer real-time change."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string"}, "message": {"type": "string"},
                    "problems": {"type": "array", "items": {"type": "object", "required": ["detail"], "properties": {"line": {"type": "integer"}, "detail": {"type": "string"}}}}}},
                "Applied": {"type": "object", "required": ["changes", "applied"], "properties": {
                    "changes": {"type": "integer", "description": "Changes sent (a termination also sends each revoked grant)"},
                    "applied": {"type": "object", "description": "target -> data type -> changes applied", "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}}}}},
                "EmployeeChange": {"type": "object", "required": ["at"], "additionalProperties": false, "properties": {
                    "at": {"type": "string", "format": "date-time", "description": "When the change happened"},
                    "org_unit": {"type": "string", "description": "Unified id of a current org unit (a transfer)"},
                    "grade": {"type": "string"},
                    "status": status,
                    "termination_date": {"type": "string", "format": "date", "description": "Defaults to the day of `at` for a termination"},
                    "manager": {"type": "string", "description": "Unified or source id of a current employee"},
                    "email": {"type": "string"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            PERMISSIONS_PATH: {"post": {
                "summary": "Grant or revoke roles: one or more lines in permissions.jsonl's format",
                "requestBody": {"required": true, "content": {"application/x-ndjson": {"schema": {"type": "string",
                    "description": "Lines {\"employee\", \"system\", \"role\", \"op\": \"grant\"|\"revoke\", \"expires\"?, \"at\"}; employee by unified or source id"}}}},
                "responses": common(&[("400", err("A malformed line, a missing field, an unknown employee or a grant to a leaver: `problems` names each line and field; nothing sent"))])}},
            EMPLOYEES_PATH: {"patch": {
                "summary": "Change one employee (transfer, grade, status, manager, email); a termination revokes every grant the person holds",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "Unified or source id"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EmployeeChange"}}}},
                "responses": common(&[
                    ("400", err("An unknown field, or a field naming no current org unit or manager; nothing sent")),
                    ("404", err("No current employee has this id")),
                    ("503", err("The hub has not completed its first run yet; retry after Retry-After seconds"))])}},
            "/hr/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.0"}}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}}
        }
    })
}
