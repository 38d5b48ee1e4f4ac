//! The operator console: a few server-rendered pages under `/ui` on the
//! hub API's address, for the people who run the hub.
//!
//! | Method and path | What |
//! |---|---|
//! | `GET /ui/login`, `POST /ui/login` | sign in with a caller's token (form field `token`): opens a session |
//! | `GET /ui` | status per system and data type, the last runs, a held plan, open review cases, the last merge's quarantine, the audit log |
//! | `POST /ui/plans/{id}/approve` | approve a held plan (right `approve`) |
//! | `POST /ui/cases/{id}` | decide a review case, `decision=same` or `different` (right `review`) |
//! | `POST /ui/logout` | end the session |
//!
//! **Who.** The console knows the API's callers and nobody else: a caller
//! signs in with its token, or sends it as `Authorization: Bearer` with
//! each request (a script). Reading the console needs the `read` right;
//! the buttons need `approve` and `review`, as the API's calls do.
//!
//! **Sessions.** A login opens a session named by 256 random bits, which
//! the browser keeps in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//! `/ui` (and `Secure` when the API is served over HTTPS). It lasts eight
//! hours; the hub keeps sessions in memory, so a restart signs everyone out.
//! Every form carries the session's CSRF token, compared in constant time,
//! so another site cannot make a signed-in browser approve anything.
//!
//! **Pages.** Plain HTML forms, no JavaScript; every value is escaped.
//! Responses forbid framing, caching and inline scripts
//! (`Content-Security-Policy: default-src 'none'`). The console is served
//! while a peer is down (the API's calls are not): that is when an
//! operator needs it.

mod page;
mod session;

pub(crate) use session::Sessions;

use super::{locked, read_whole_body, Api, CallerRight};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use hr_core::DataType;
use session::Flash;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What the console shows of a system besides the hub's own comparison,
/// read from the system when a page is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStatus {
    /// Records on the system's Kafka topics its consumer group has not
    /// committed; none for a type sent over REST.
    pub kafka_lag: Option<i64>,
    /// When the system last applied a change of the type.
    pub last_applied: Option<chrono::DateTime<chrono::Utc>>,
}

/// [`LiveStatus`] per system and data type.
pub type SystemsLive = BTreeMap<String, BTreeMap<DataType, LiveStatus>>;

/// Reads what the console shows live of each system (the embedding program
/// knows how: brokers, the systems' metrics endpoints). Given to the
/// console with [`ApiConfig::with_probe`](super::ApiConfig::with_probe);
/// without one, the console shows the hub's comparison alone.
#[async_trait::async_trait]
pub trait SystemProbe: Send + Sync {
    /// Each system's live status; what cannot be read is left out.
    async fn live(&self) -> SystemsLive;
}

/// How long a page waits for the probe before it is drawn without it.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);
/// Entries of the audit log the page shows.
const AUDIT_ROWS: usize = 50;
/// Runs the page shows.
const RUN_ROWS: usize = 10;
/// The largest form the console takes: a token, a CSRF token, a decision.
const FORM_LIMIT: usize = 16 * 1024;

/// Who a request of the console is from.
#[derive(Clone)]
struct Operator {
    caller: String,
    rights: Vec<CallerRight>,
    /// The session's id and CSRF token; none when the token came in a header.
    session: Option<(String, String)>,
}

/// The console's routes, for [`hub_api`](super::hub_api).
pub(super) fn routes(api: &Arc<Api>) -> Router<Arc<Api>> {
    // The last route layer runs first: a form's body is read only once its sender is signed in.
    let signed_in_routes = Router::new()
        .route("/ui", get(dashboard))
        .route("/ui/logout", post(logout))
        .route("/ui/plans/{id}/approve", post(approve))
        .route("/ui/cases/{id}", post(decide))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), read_form_in_time))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), signed_in));
    let login_routes = Router::new()
        .route("/ui/login", get(|| async { html(StatusCode::OK, page::login(None)) }).post(login))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), read_form_in_time));
    Router::new()
        .route("/ui/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], page::STYLE) }))
        // Any other path under /ui: a page of the console's own, with its headers.
        .route("/ui/{*rest}", axum::routing::any(|| async { html(StatusCode::NOT_FOUND, page::login(Some("There is no such page in the console."))) }))
        .merge(login_routes)
        .merge(signed_in_routes)
        .layer(axum::middleware::from_fn(from_the_console_only))
        .layer(axum::middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
}

/// Reads a form's whole body, at most [`FORM_LIMIT`] bytes within the API's body read timeout.
async fn read_form_in_time(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    match read_whole_body(request, FORM_LIMIT, api.config.body_read_timeout).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// Refuses a form another site's page posts (403), sign-in included: the
/// browser says where a request comes from (`Sec-Fetch-Site`, `Origin`).
/// A client that says nothing (a script) is judged by its token alone.
async fn from_the_console_only(request: Request, next: Next) -> Response {
    if request.method() != Method::GET && !same_origin(request.headers()) {
        tracing::warn!("console form from another site refused");
        return html(StatusCode::FORBIDDEN, page::login(Some("That form came from another site; nothing was done.")));
    }
    next.run(request).await
}

/// Whether a request's own headers say it comes from the console's origin (or say nothing).
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Whether the gate serves `path` while a peer is down.
pub(super) fn is_console(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    (status, markup).into_response()
}

fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/ui")));
    response
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let policy = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Finds the operator by a bearer token or a session cookie; sends a
/// browser without either to the sign-in page.
async fn signed_in(State(api): State<Arc<Api>>, mut request: Request, next: Next) -> Response {
    let operator = if request.headers().contains_key(header::AUTHORIZATION) {
        let Some(caller) = api.config.caller(request.headers()) else {
            return html(StatusCode::UNAUTHORIZED, page::login(Some("That token is not one of the API's callers.")));
        };
        Operator { caller: caller.name.clone(), rights: caller.rights.clone(), session: None }
    } else {
        let session = session::session_id(request.headers()).and_then(|id| api.sessions.get(&id).map(|s| (id, s)));
        // A session outlives no change of the callers: its caller must still be one.
        let found = session.and_then(|(id, s)| api.config.callers.iter().find(|c| c.name == s.caller).map(|c| (c, id, s.csrf)));
        let Some((caller, id, csrf)) = found else {
            let mut response = if request.method() == Method::GET {
                see_other("/ui/login")
            } else {
                html(StatusCode::UNAUTHORIZED, page::login(Some("Your session has ended; sign in again. Nothing was done.")))
            };
            // A cookie naming no session (ended, expired, from before a restart) is of no further use.
            if session::session_id(request.headers()).is_some() {
                set_session_cookie(&mut response, &api, None);
            }
            return response;
        };
        Operator { caller: caller.name.clone(), rights: caller.rights.clone(), session: Some((id, csrf)) }
    };
    if !operator.rights.contains(&CallerRight::Read) {
        return html(StatusCode::FORBIDDEN, page::login(Some(&format!("Caller {} may not read the console (it needs the read right).", operator.caller))));
    }
    request.extensions_mut().insert(operator);
    next.run(request).await
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(api): State<Arc<Api>>, headers: axum::http::HeaderMap, Form(form): Form<LoginForm>) -> Response {
    // A new sign-in in this browser ends the session it held, on the hub too.
    if let Some(earlier) = session::session_id(&headers) {
        api.sessions.close(&earlier);
    }
    let Some(caller) = api.config.caller_presenting(&form.token) else {
        tracing::warn!("console sign-in refused: the token is no caller's");
        return html(StatusCode::UNAUTHORIZED, page::login(Some("That token is not one of the API's callers.")));
    };
    if !caller.rights.contains(&CallerRight::Read) {
        return html(StatusCode::FORBIDDEN, page::login(Some(&format!("Caller {} may not read the console (it needs the read right).", caller.name))));
    }
    tracing::info!(caller = %caller.name, "console sign-in");
    let id = api.sessions.open(&caller.name);
    let mut response = see_other("/ui");
    set_session_cookie(&mut response, &api, Some(&id));
    response
}

/// Hands the browser session `id`, or (`None`) ends the one it holds.
fn set_session_cookie(response: &mut Response, api: &Api, id: Option<&str>) {
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(id, api.config.secure_cookies)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
}

/// A form's CSRF field (every form of a session carries it).
#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// The answer that refuses a form of a session without the session's CSRF
/// token (403), or from a caller without `right` (back to the console,
/// saying so); none when the form may act.
fn refusal(api: &Api, operator: &Operator, csrf: Option<&str>, right: CallerRight) -> Option<Response> {
    if let Some((_, expected)) = &operator.session {
        if !hr_transport_rest::token_matches(csrf.unwrap_or(""), expected) {
            tracing::warn!(caller = %operator.caller, "console form without its session's CSRF token refused");
            return Some(html(StatusCode::FORBIDDEN, page::login(Some("That form did not come from this console; nothing was done. Sign in again."))));
        }
    }
    if !operator.rights.contains(&right) {
        let what = serde_json::to_value(right).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        return Some(done(api, operator, StatusCode::FORBIDDEN, format!("Caller {} may not {what}; nothing was done.", operator.caller)));
    }
    None
}

/// What an action did: a signed-in browser goes back to the console, which
/// says `text` once; a script (signed in by header) gets `status` and `text`.
fn done(api: &Api, operator: &Operator, status: StatusCode, text: String) -> Response {
    let ok = status.is_success();
    tracing::info!(caller = %operator.caller, ok, "console: {text}");
    match &operator.session {
        Some((id, _)) => {
            api.sessions.set_flash(id, Flash { ok, text });
            see_other("/ui")
        }
        None => (status, text).into_response(),
    }
}

async fn logout(State(api): State<Arc<Api>>, Extension(operator): Extension<Operator>, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = refusal(&api, &operator, form.csrf.as_deref(), CallerRight::Read) {
        return refused;
    }
    if let Some((id, _)) = &operator.session {
        api.sessions.close(id);
    }
    let mut response = see_other("/ui/login");
    set_session_cookie(&mut response, &api, None);
    response
}

async fn approve(State(api): State<Arc<Api>>, Path(plan_id): Path<String>, Extension(operator): Extension<Operator>, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = refusal(&api, &operator, form.csrf.as_deref(), CallerRight::Approve) {
        return refused;
    }
    let Some(mut hub) = locked(&api).await else { return done(&api, &operator, StatusCode::SERVICE_UNAVAILABLE, busy(&api)) };
    match hub.approve(&plan_id, &operator.caller) {
        Ok(()) => done(&api, &operator, StatusCode::OK, format!("Plan {plan_id} approved: the next periodic run sends it, if it is still this plan.")),
        Err(e) => done(&api, &operator, StatusCode::CONFLICT, format!("Not approved: {e}")),
    }
}

#[derive(serde::Deserialize)]
struct DecisionForm {
    csrf: Option<String>,
    decision: hr_core::CaseDecision,
}

async fn decide(State(api): State<Arc<Api>>, Path(case): Path<String>, Extension(operator): Extension<Operator>, Form(form): Form<DecisionForm>) -> Response {
    if let Some(refused) = refusal(&api, &operator, form.csrf.as_deref(), CallerRight::Review) {
        return refused;
    }
    let Some(mut hub) = locked(&api).await else { return done(&api, &operator, StatusCode::SERVICE_UNAVAILABLE, busy(&api)) };
    match hub.decide_case(&case, form.decision, &operator.caller) {
        Ok(decided) => {
            let what = match form.decision {
                hr_core::CaseDecision::Same => {
                    format!("one person: from the next run the records join under {}", decided.employees.first().map_or("", |e| e.as_str()))
                }
                hr_core::CaseDecision::Different => "different people: the case is closed for good".to_string(),
            };
            done(&api, &operator, StatusCode::OK, format!("Case {case} decided, {what}."))
        }
        Err(e) => done(&api, &operator, StatusCode::CONFLICT, format!("Case {case} not decided: {e}")),
    }
}

fn busy(api: &Api) -> String {
    format!("The hub stayed busy (a periodic run) for {} s; nothing was done. Try again.", api.config.confirm_deadline.as_secs())
}

async fn dashboard(State(api): State<Arc<Api>>, Extension(operator): Extension<Operator>) -> Response {
    // Read from the systems before the hub's lock is taken: a slow system must not hold up runs.
    let live = match &api.config.probe {
        Some(probe) => tokio::time::timeout(PROBE_DEADLINE, probe.live()).await.unwrap_or_default(),
        None => SystemsLive::new(),
    };
    let flash = operator.session.as_ref().and_then(|(id, _)| api.sessions.take_flash(id));
    let mut view = page::Dashboard {
        caller: operator.caller.clone(),
        rights: operator.rights.clone(),
        csrf: operator.session.as_ref().map(|(_, csrf)| csrf.clone()),
        flash,
        held: None,
        approved: None,
        comparison: None,
        live,
        runs: vec![],
        audit: vec![],
        cases: vec![],
        quarantine: vec![],
        busy: None,
    };
    match locked(&api).await {
        Some(hub) => {
            if let Err(e) = crate::hub::blocking(|| read_hub(&hub, &mut view)) {
                view.busy = Some(format!("Part of the page could not be read from the hub's ledger: {e}"));
            }
        }
        None => view.busy = Some(busy(&api)),
    }
    html(StatusCode::OK, page::dashboard(&view))
}

/// What the page shows of the hub itself.
fn read_hub(hub: &crate::Hub, view: &mut page::Dashboard) -> Result<(), crate::HubError> {
    view.approved = hub.pending_approval().map(|(plan, by)| (plan.to_string(), by.to_string()));
    view.comparison = hub.last_comparison();
    view.quarantine = hub.last_quarantine().to_vec();
    let ledger = hub.ledger();
    view.cases = ledger.cases()?.into_iter().filter(|c| c.decision.is_none()).collect();
    view.runs = ledger.latest_audit_entries(RUN_ROWS, Some("run"))?;
    view.held = hub.held_run()?.map(|run| run.detail);
    view.audit = ledger.latest_audit_entries(AUDIT_ROWS, None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// The console is what an operator looks at while a peer is down, so the
    /// gate serves it then; the API's calls get 503.
    #[tokio::test]
    async fn the_gate_serves_the_console_while_a_peer_is_down() {
        let gate = crate::ApiGate::new("connecting");
        let routes = Router::new().route("/ui/login", get(|| async { "sign in" })).route("/healthz", get(|| async { "ok" }));
        gate.open(routes);
        gate.set_down("kafka", Some("the Kafka brokers do not answer".into()));
        let call = |path: &str| axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        assert_eq!(gate.router().oneshot(call("/ui/login")).await.unwrap().status(), StatusCode::OK);
        assert_eq!(gate.router().oneshot(call("/healthz")).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!is_console("/uix") && !is_console("/hr/v1/ui") && is_console("/ui") && is_console("/ui/cases/x"));
    }
}
