//! The hub's HTTP API for the HR side: single changes into a running hub.
//!
//! | Method and path | Body | Answer |
//! |---|---|---|
//! | `POST /hr/v1/permissions` | `permissions.jsonl` lines | 200 once every target that receives them applied (REST) or confirmed (Kafka) them |
//! | `PATCH /hr/v1/employees/{id}` | an [`EmployeeChange`] as JSON | the same |
//! | `GET /hr/v1/openapi.json` | | the OpenAPI document |
//! | `GET /healthz` | | 200 (served through an [`ApiGate`]: 503 naming what is down) |
//!
//! The two changing calls need `Authorization: Bearer <token>` (401
//! otherwise, before the body is read); their body must arrive within the
//! body read timeout (408) and stay under the body limit (413). A bad line or field is a 400 naming
//! it, and nothing of that request is sent; a change older than what the
//! hub holds for its key is a 409 ("newer wins"). Calls wait for the hub's
//! lock, so a call made during a periodic run is applied after it, never
//! interleaved with it.

mod console;

pub use console::{LiveStatus, SystemProbe, SystemsLive};

use crate::hub::{EmployeeChange, Hub, HubError, RealtimeError, SyncOutcome};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use hr_transport_rest::json_error as error;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Path of the real-time permission call.
pub const PERMISSIONS_PATH: &str = "/hr/v1/permissions";
/// Path of the real-time employee call (`{id}`: unified or source id).
pub const EMPLOYEES_PATH: &str = "/hr/v1/employees/{id}";

/// Path of the plan of the hub's last periodic run.
pub const PLAN_PATH: &str = "/hr/v1/plan";
/// Path of the approval of a held plan.
pub const APPROVE_PATH: &str = "/hr/v1/plans/{id}/approve";
/// Path of the review cases: employees that may be one person.
pub const CASES_PATH: &str = "/hr/v1/cases";
/// Path of one review case, where it is decided.
pub const CASE_PATH: &str = "/hr/v1/cases/{id}";

/// What a caller of the hub API may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerRight {
    /// `POST /hr/v1/permissions`.
    Permissions,
    /// `PATCH /hr/v1/employees/{id}`.
    Employees,
    /// `POST /hr/v1/plans/{id}/approve`.
    Approve,
    /// `POST /hr/v1/cases/{id}`: decide whether two employees are one person.
    Review,
    /// `GET /hr/v1/plan`, `GET /hr/v1/cases`.
    Read,
}

/// One caller of the API: its name (in the audit log and as the origin of
/// its changes), its token and what it may do.
#[derive(Clone)]
struct Caller {
    name: String,
    token: String,
    rights: Vec<CallerRight>,
}

/// The caller a request was made by, for its handler.
#[derive(Clone)]
struct CallerName(String);

/// How the hub's HTTP API runs.
#[derive(Clone)]
pub struct ApiConfig {
    callers: Vec<Caller>,
    /// How long a call waits until every target applied or confirmed its
    /// changes before answering 504 (default 30 s).
    pub confirm_deadline: Duration,
    /// The largest body accepted (default 1 MiB); larger gets 413.
    pub body_limit: usize,
    /// How long a caller may take to send its body (default 10 s); a
    /// slower one gets 408, so a trickled body cannot hold a connection.
    pub body_read_timeout: Duration,
    /// Whether the console's session cookie is `Secure` (default false):
    /// set it when the API is served over HTTPS, as `hub --tls-cert` does.
    pub secure_cookies: bool,
    /// What the console reads live from the systems ([`with_probe`](Self::with_probe)).
    probe: Option<Arc<dyn SystemProbe>>,
}

/// Why the API cannot be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiConfigError {
    /// A token short enough to be guessed (a blank one included).
    #[error(transparent)]
    WeakToken(#[from] hr_transport_rest::WeakToken),
    /// Two callers with one token could not be told apart.
    #[error("callers {0} and {1} have the same token; give each its own")]
    SharedToken(String, String),
    /// A caller name the audit log could not show plainly.
    #[error("caller name {0:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'")]
    BadCallerName(String),
}

impl ApiConfig {
    /// An API with one caller, `api`, presenting `token` as a bearer token,
    /// who may send permissions and employee changes and read the plan (not
    /// approve); a token under [`MIN_TOKEN_BYTES`](hr_transport_rest::MIN_TOKEN_BYTES) is refused.
    pub fn new(token: impl Into<String>) -> Result<Self, ApiConfigError> {
        let token = token.into();
        hr_transport_rest::check_token_strength("the hub API's (HR_HUB_TOKEN)", &token)?;
        let caller = Caller { name: "api".into(), token, rights: vec![CallerRight::Permissions, CallerRight::Employees, CallerRight::Read] };
        Ok(ApiConfig { callers: vec![caller], ..Self::without_callers() })
    }

    /// An API whose callers are `callers` (name, token, rights): each call
    /// is made by the caller whose token it presents, may do only what that
    /// caller may (403 otherwise), and is recorded under its name.
    ///
    /// ```
    /// use hr_hub::{ApiConfig, CallerRight};
    /// let config = ApiConfig::for_callers([
    ///     ("hr-portal", "t0ken-of-the-portal-e3b0c44298fc1c14", vec![CallerRight::Permissions, CallerRight::Employees]),
    ///     ("hr-lead", "t0ken-of-the-lead-9afbf4c8996fb924", vec![CallerRight::Read, CallerRight::Approve]),
    /// ]).unwrap();
    /// let same = "the-same-token-27ae41e4649b934ca495991b";
    /// assert!(ApiConfig::for_callers([("a", same, vec![]), ("b", same, vec![])]).is_err());
    /// assert!(ApiConfig::for_callers([("a", "short", vec![])]).is_err());
    /// ```
    pub fn for_callers<N: Into<String>, T: Into<String>>(callers: impl IntoIterator<Item = (N, T, Vec<CallerRight>)>) -> Result<Self, ApiConfigError> {
        let mut config = Self::without_callers();
        for (name, token, rights) in callers {
            let (name, token) = (name.into(), token.into());
            if name.is_empty() || name.len() > 64 || !name.chars().all(hr_core::is_id_char) {
                return Err(ApiConfigError::BadCallerName(name));
            }
            hr_transport_rest::check_token_strength(&format!("caller {name}'s"), &token)?;
            if let Some(other) = config.callers.iter().find(|c| c.token == token) {
                return Err(ApiConfigError::SharedToken(other.name.clone(), name));
            }
            config.callers.push(Caller { name, token, rights });
        }
        Ok(config)
    }

    fn without_callers() -> Self {
        ApiConfig {
            callers: vec![],
            confirm_deadline: Duration::from_secs(30),
            body_limit: 1 << 20,
            body_read_timeout: Duration::from_secs(10),
            secure_cookies: false,
            probe: None,
        }
    }

    /// The console ([`hub_api`]'s `/ui`) shows, beside the hub's own
    /// comparison, what `probe` reads from the systems when a page is drawn
    /// (Kafka lag, last applied).
    pub fn with_probe(mut self, probe: Arc<dyn SystemProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The caller whose token `headers` present, if any (every token is compared, in constant time).
    fn caller(&self, headers: &axum::http::HeaderMap) -> Option<&Caller> {
        // Every token is compared, matched or not, so the time taken does not say which caller a token is near.
        self.callers.iter().fold(None, |found, c| if hr_transport_rest::bearer_matches(headers, &c.token) { Some(c) } else { found })
    }

    /// The caller whose token is `token` (a sign-in form's), compared as [`caller`](Self::caller) compares.
    fn caller_presenting(&self, token: &str) -> Option<&Caller> {
        self.callers.iter().fold(None, |found, c| if hr_transport_rest::token_matches(token, &c.token) { Some(c) } else { found })
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let callers: Vec<(&str, &[CallerRight])> = self.callers.iter().map(|c| (c.name.as_str(), c.rights.as_slice())).collect();
        f.debug_struct("ApiConfig")
            .field("callers", &callers)
            .field("confirm_deadline", &self.confirm_deadline)
            .field("body_limit", &self.body_limit)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("secure_cookies", &self.secure_cookies)
            .field("probe", &self.probe.is_some())
            .finish()
    }
}

struct Api {
    hub: Arc<Mutex<Hub>>,
    config: ApiConfig,
    /// The console's signed-in operators.
    sessions: console::Sessions,
}

/// The API's routes over a shared hub; serve them with
/// [`serve_with_limits`](hr_transport_rest::serve_with_limits), which
/// closes stalled connections and caps open ones (`axum::serve` does
/// neither). Periodic runs that lock the same mutex never interleave with
/// a call.
pub fn hub_api(hub: Arc<Mutex<Hub>>, config: ApiConfig) -> Router {
    let limit = config.body_limit;
    let api = Arc::new(Api { hub, config, sessions: console::Sessions::default() });
    let changes = Router::new()
        .route(PERMISSIONS_PATH, post(post_permissions))
        .route(EMPLOYEES_PATH, patch(patch_employee))
        .route(PLAN_PATH, get(get_plan))
        .route(APPROVE_PATH, post(post_approval))
        .route(CASES_PATH, get(get_cases))
        .route(CASE_PATH, post(post_decision))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), read_body_in_time))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), require_token))
        .layer(DefaultBodyLimit::max(limit));
    Router::new()
        .route("/hr/v1/openapi.json", get(|| async { Json(document()) }))
        .route("/healthz", get(|| async { "ok" }))
        .merge(changes)
        .merge(console::routes(&api))
        .with_state(api)
}

/// The hub's API as a program serves it from its first second, before the
/// hub is connected: until [`open`](Self::open) hands it the connected
/// hub's routes ([`hub_api`]), every call, `/healthz` included, is answered
/// 503 naming what the hub waits for; afterwards, while
/// [`set_down`](Self::set_down) says a peer does not answer (the Kafka
/// brokers, a REST target), calls and `/healthz` are answered 503 naming
/// every such peer at once instead of waiting for a propagation that cannot
/// finish.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tower::ServiceExt;
/// let gate = hr_hub::ApiGate::new("connecting to the Kafka brokers at kafka:9092");
/// let call = || axum::http::Request::get("/healthz").body(axum::body::Body::empty()).unwrap();
/// assert_eq!(gate.router().oneshot(call()).await.unwrap().status(), 503);
/// gate.open(axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" })));
/// assert_eq!(gate.router().oneshot(call()).await.unwrap().status(), 200);
/// gate.set_down("kafka", Some("the Kafka brokers at kafka:9092 do not answer".into()));
/// gate.set_down("erp", Some("target erp at https://erp:8443 does not answer".into()));
/// gate.set_down("kafka", None);
/// assert_eq!(gate.router().oneshot(call()).await.unwrap().status(), 503, "erp is still down");
/// gate.set_down("erp", None);
/// assert_eq!(gate.router().oneshot(call()).await.unwrap().status(), 200);
/// # });
/// ```
#[derive(Clone)]
pub struct ApiGate {
    state: Arc<std::sync::RwLock<GateState>>,
}

impl std::fmt::Debug for ApiGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("ApiGate").field("open", &state.routes.is_some()).field("down", &state.down).finish()
    }
}

struct GateState {
    /// The connected hub's routes, once there are.
    routes: Option<Router>,
    /// What the hub waits for until it is opened.
    waiting_for: Option<String>,
    /// Each peer that does not answer, and how to say so.
    down: BTreeMap<String, String>,
}

impl GateState {
    /// Why calls cannot be taken now, if they cannot.
    fn unavailable(&self) -> Option<String> {
        if let Some(waiting) = &self.waiting_for {
            return Some(waiting.clone());
        }
        (!self.down.is_empty()).then(|| self.down.values().cloned().collect::<Vec<_>>().join("; "))
    }
}

impl ApiGate {
    /// A gate answering 503 with `waiting_for` until it is opened.
    pub fn new(waiting_for: impl Into<String>) -> Self {
        let state = GateState { routes: None, waiting_for: Some(waiting_for.into()), down: BTreeMap::new() };
        ApiGate { state: Arc::new(std::sync::RwLock::new(state)) }
    }

    /// Serves `routes` from now on (while nothing is [`down`](Self::set_down)).
    pub fn open(&self, routes: Router) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.routes = Some(routes);
        state.waiting_for = None;
    }

    /// The peer `peer` (the brokers, a target) does not answer, said as
    /// `Some(message)`, or answers again (`None`).
    pub fn set_down(&self, peer: &str, down: Option<String>) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match down {
            Some(message) => state.down.insert(peer.to_string(), message),
            None => state.down.remove(peer),
        };
    }

    /// The router to serve (with [`serve_with_limits`](hr_transport_rest::serve_with_limits)).
    pub fn router(&self) -> Router {
        let gate = self.clone();
        Router::new().fallback(move |request: Request| {
            let gate = gate.clone();
            async move { gate.handle(request).await }
        })
    }

    async fn handle(&self, request: Request) -> Response {
        let (routes, down) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            (state.routes.clone(), state.unavailable())
        };
        // The console is served while a peer is down: that is when an operator needs it.
        let always_served = request.uri().path() == "/hr/v1/openapi.json" || console::is_console(request.uri().path());
        match (routes, down) {
            (Some(routes), down) if down.is_none() || always_served => {
                use tower::ServiceExt;
                match routes.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            (_, down) => {
                let why = down.unwrap_or_else(|| "the hub is not connected yet".into());
                error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("the hub cannot take calls now: {why}; nothing was sent"))
            }
        }
    }
}

/// The right a call needs: by its method and route.
fn right_of(request: &Request) -> CallerRight {
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    match route.as_str() {
        PERMISSIONS_PATH => CallerRight::Permissions,
        EMPLOYEES_PATH => CallerRight::Employees,
        APPROVE_PATH => CallerRight::Approve,
        CASE_PATH => CallerRight::Review,
        _ => CallerRight::Read,
    }
}

/// Finds the caller by its token (401 without one), checks it may make the
/// call (403), and hands its name to the handler.
async fn require_token(State(api): State<Arc<Api>>, mut request: Request, next: Next) -> Response {
    let Some(caller) = api.config.caller(request.headers()) else {
        return hr_transport_rest::unauthorized("a valid bearer token is required (the hub's HR_HUB_TOKEN, or a caller's)");
    };
    let right = right_of(&request);
    if !caller.rights.contains(&right) {
        let message =
            format!("caller {} may not {}; nothing was done", caller.name, serde_json::to_value(right).unwrap_or_default().as_str().unwrap_or("do this"));
        return error(StatusCode::FORBIDDEN, "forbidden", message);
    }
    request.extensions_mut().insert(CallerName(caller.name.clone()));
    next.run(request).await
}

async fn get_plan(State(api): State<Arc<Api>>) -> Response {
    let Some(hub) = locked(&api).await else { return busy(&api) };
    match hub.last_plan() {
        Some(plan) => (StatusCode::OK, Json(plan.clone())).into_response(),
        None => error(StatusCode::NOT_FOUND, "no_plan", "the hub has not planned a periodic run yet"),
    }
}

async fn post_approval(State(api): State<Arc<Api>>, Path(id): Path<String>, axum::Extension(caller): axum::Extension<CallerName>) -> Response {
    let Some(mut hub) = locked(&api).await else { return busy(&api) };
    match hub.approve(&id, &caller.0) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"plan_id": id, "approved_by": caller.0, "runs": "with the next periodic run, if it is still this plan"})))
            .into_response(),
        Err(e @ HubError::PlanChanged { .. }) => error(StatusCode::CONFLICT, "plan_changed", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "hub_error", e.to_string()),
    }
}

/// The open review cases (`?all=true`: decided ones too).
async fn get_cases(State(api): State<Arc<Api>>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let Some(hub) = locked(&api).await else { return busy(&api) };
    let all = query.get("all").is_some_and(|v| v == "true");
    match hub.cases() {
        Ok(cases) => Json(cases.into_iter().filter(|c| all || c.decision.is_none()).collect::<Vec<_>>()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "hub_error", e.to_string()),
    }
}

/// Decides a review case: a body `{"decision": "same" | "different"}`.
async fn post_decision(State(api): State<Arc<Api>>, Path(id): Path<String>, axum::Extension(caller): axum::Extension<CallerName>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Decision {
        decision: hr_core::CaseDecision,
    }
    let decision = match serde_json::from_slice::<Decision>(&body) {
        Ok(d) => d.decision,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", format!("the body must be {{\"decision\": \"same\" | \"different\"}}: {e}")),
    };
    let Some(mut hub) = locked(&api).await else { return busy(&api) };
    match hub.decide_case(&id, decision, &caller.0) {
        Ok(case) => (StatusCode::OK, Json(case)).into_response(),
        Err(HubError::Ledger(e @ hr_core::LedgerError::NoSuchCase { .. })) => error(StatusCode::NOT_FOUND, "no_such_case", e.to_string()),
        Err(HubError::Ledger(e @ hr_core::LedgerError::CaseDecided { .. })) => error(StatusCode::CONFLICT, "decided", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "hub_error", e.to_string()),
    }
}

/// Reads the whole body, within the body limit and the body read timeout,
/// before the call is handled (after the token check).
async fn read_body_in_time(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    match read_whole_body(request, api.config.body_limit, api.config.body_read_timeout).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// The request with its whole body read, if it arrived within `timeout`
/// and `limit` bytes; otherwise the answer refusing it (413, 408).
async fn read_whole_body(request: Request, limit: usize, timeout: Duration) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(_)) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body is over {limit} bytes, or broke off"))),
        Err(_) => {
            Err(error(StatusCode::REQUEST_TIMEOUT, "request_timeout", format!("the body did not arrive within {} s; nothing was sent", timeout.as_secs())))
        }
    }
}

async fn post_permissions(State(api): State<Arc<Api>>, axum::Extension(caller): axum::Extension<CallerName>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "the body is not UTF-8");
    };
    let Some(mut hub) = locked(&api).await else { return busy(&api) };
    let sent = hub.apply_permission_lines(body, &caller.0).await;
    drop(hub);
    confirmed(&api, sent).await
}

async fn patch_employee(State(api): State<Arc<Api>>, Path(id): Path<String>, axum::Extension(caller): axum::Extension<CallerName>, body: Bytes) -> Response {
    let change: EmployeeChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        // EmployeeChange holds no sensitive field, so serde's message (naming the field) may be shown.
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", format!("not a valid employee change: {e}")),
    };
    let Some(mut hub) = locked(&api).await else { return busy(&api) };
    let sent = hub.change_employee(&id, change, &caller.0).await;
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
            CASES_PATH: {"get": {
                "summary": "Review cases: employees that may be one person (open ones; `?all=true` for decided ones too)",
                "parameters": [{"name": "all", "in": "query", "required": false, "schema": {"type": "boolean"}}],
                "responses": {"200": {"description": "The cases: id, employees, why, records (no sensitive field), opened_at, decision, decided_by, decided_at"},
                    "401": err("Missing or wrong bearer token"), "403": err("The caller may not read")}}},
            CASE_PATH: {"post": {
                "summary": "Decide a review case, once: `same` joins the employees under the first id from the next run, `different` closes it for good",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["decision"], "additionalProperties": false,
                    "properties": {"decision": {"type": "string", "enum": ["same", "different"]}}}}}},
                "responses": {"200": {"description": "The case, decided"}, "400": err("Not a decision"), "401": err("Missing or wrong bearer token"),
                    "403": err("The caller has no `review` right"), "404": err("No such case"), "409": err("Decided already")}}},
            "/hr/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.0"}}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}}
        }
    })
}
