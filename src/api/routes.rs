//! The API's resources: agents, queues, calls in progress, and events.

use crate::acd::AgentStatus;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;
use tracing::info;

use super::auth::Caller;
use super::ApiState;
use crate::acd::Input;
use crate::config::Role;
use crate::events::Event;

type Shared = State<Arc<ApiState>>;

/// One route of the API: the router and the OpenAPI document are both
/// made from this table, so they cannot disagree.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// The least role a token needs.
    pub role: Role,
    pub summary: &'static str,
    /// Query parameters it takes.
    pub query: &'static [&'static str],
    /// The request body's content type, when it takes one.
    pub body: Option<&'static str>,
    router: fn() -> MethodRouter<Arc<ApiState>>,
}

use axum::routing::MethodRouter;

/// Every route, in the order the document lists them.
pub fn table() -> Vec<Route> {
    let r = |method, path, role, summary, query, body, router| Route {
        method,
        path,
        role,
        summary,
        query,
        body,
        router,
    };
    const NONE: &[&str] = &[];
    const JSON: Option<&str> = Some("application/json");
    vec![
        r("get", "/api/agents", Role::Read, "Every agent: state, pause reason, time in state, call, queues, phones, shift, calls answered.", NONE, None, || get(agents)),
        r("get", "/api/agents/{id}", Role::Read, "One agent.", NONE, None, || get(agent)),
        r("post", "/api/agents/{id}/{action}", Role::Agent, "Change an agent's state; action is login, logout, pause (body {\"reason\": \"lunch\"}, optional) or unpause. 409 when the agent's state does not allow it.", NONE, JSON, || post(agent_action)),
        r("get", "/api/queues", Role::Read, "Every queue: waiting callers in serving order, longest wait, agents by state, staffed agents, and today's figures.", NONE, None, || get(queues)),
        r("get", "/api/queues/{name}", Role::Read, "One queue.", NONE, None, || get(queue)),
        r("get", "/api/calls", Role::Read, "Calls in progress.", NONE, None, || get(calls)),
        r("get", "/api/calls/{id}", Role::Read, "One call in progress.", NONE, None, || get(call)),
        r("post", "/api/calls/{id}/hangup", Role::Admin, "End a call in progress (202).", NONE, None, || post(hang_up)),
        r("post", "/api/calls/{id}/disposition", Role::Agent, "Give the call (in progress or in wrap-up) one of its queue's dispositions: body {\"code\": \"resolved\"}. 422 with the queue's codes when the code is not one; 409 when no agent answered the call.", NONE, JSON, || post(disposition)),
        r("post", "/api/calls/{id}/recording/{action}", Role::Agent, "Pause or resume the call's recording (action pause or resume; PCI: the recording holds silence meanwhile and the record lists each pause). 409 when the call is not being recorded.", NONE, None, || post(recording)),
        r("get", "/api/events", Role::Read, "Live events as Server-Sent Events, or a WebSocket when the request upgrades.", &["queue", "agent"], None, || get(events)),
        r("get", "/events", Role::Read, "The same as /api/events.", &["queue", "agent"], None, || get(events)),
        r("get", "/api/callbacks", Role::Read, "Pending callbacks in the order of their place: number, queue, attempts, next attempt, and phase (waiting, queued, delivering).", NONE, None, || get(super::callbacks::list)),
        r("get", "/api/callbacks/{id}", Role::Read, "One callback in any state, with each attempt and its outcome.", NONE, None, || get(super::callbacks::one)),
        r("post", "/api/callbacks/{id}/cancel", Role::Agent, "Cancel a pending callback (409 while it is being delivered).", NONE, None, || post(super::callbacks::cancel)),
        r("post", "/api/callbacks/{id}/reschedule", Role::Agent, "Move a pending callback's next attempt (body {\"at\": RFC 3339}); it keeps its place once that time comes.", NONE, JSON, || post(super::callbacks::reschedule)),
        r("get", "/api/kpis", Role::Read, "Contact-center figures from the call records, grouped.", &["since", "until", "by", "interval", "queue", "agent"], None, || get(kpis)),
        r("get", "/api/cdrs", Role::Read, "Call records in a time range, as JSON or CSV.", &["since", "until", "queue", "agent", "caller", "limit", "format"], None, || get(cdrs)),
        r("get", "/api/flows", Role::Read, "The running flow version and its flows.", NONE, None, || get(super::flows::list)),
        r("post", "/api/flows/reload", Role::Admin, "Load the flows directory again now (422 with the errors when invalid).", NONE, None, || post(super::flows::reload)),
        r("post", "/api/config/reload", Role::Admin, "Load the engine config and the flows again now, as SIGHUP does: the new version and what waits for a restart, or 422 with the errors at file:line:col.", NONE, None, || post(super::flows::reload_config)),
        r("post", "/api/flows/validate", Role::Read, "Check a draft flow (YAML body) with the others, as if saved as NAME.yaml.", &["name"], Some("application/yaml"), || post(super::flows::validate)),
        r("get", "/metrics", Role::Read, "Prometheus metrics (public on loopback with http.public: [metrics]).", NONE, None, || get(super::metrics::render)),
        r("get", "/wallboard", Role::Read, "The wallboard page (token in ?token=, or public on loopback).", &["token"], None, || get(super::wallboard::page)),
        r("get", "/wallboard/data", Role::Read, "What the wallboard shows: queues, agents, today's figures per queue.", &["token"], None, || get(super::wallboard::data)),
        r("get", "/wallboard/events", Role::Read, "The wallboard's event stream (SSE).", &["token"], None, || get(events)),
    ]
}

pub fn routes() -> Router<Arc<ApiState>> {
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<Arc<ApiState>>> =
        std::collections::BTreeMap::new();
    for r in table() {
        let method = (r.router)();
        let merged = match by_path.remove(r.path) {
            Some(m) => m.merge(method),
            None => method,
        };
        by_path.insert(r.path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, m)| router.route(path, m))
}

/// The OpenAPI 3.1 document of [`table`].
pub fn openapi() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for r in table() {
        let mut parameters: Vec<serde_json::Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| serde_json::json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        parameters.extend(r.query.iter().map(|name| {
            serde_json::json!({ "name": name, "in": "query", "required": *name == "name", "schema": { "type": "string" } })
        }));
        let mut op = serde_json::json!({
            "summary": r.summary,
            "x-hotline-role": r.role,
            "security": [{ "bearer": [] }],
            "parameters": parameters,
            "responses": {
                "200": { "description": "OK" },
                "400": { "description": "A bad query or body: {\"error\", \"field\"}" },
                "401": { "description": "No token, or an unknown one" },
                "403": { "description": "The token's role is too low" },
                "404": { "description": "No such resource" },
            },
        });
        if let Some(ct) = r.body {
            op["requestBody"] = serde_json::json!({ "required": false, "content": { ct: {} } });
        }
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| serde_json::json!({}));
        entry[r.method] = op;
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Hotline operations API",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": paths,
    })
}

/// A JSON error: `{"error": "...", "field": "..."}` (the field when a body
/// or query named one wrongly).
pub fn error(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    let mut body = serde_json::json!({ "error": message });
    if let Some(f) = field {
        body["field"] = f.into();
    }
    (status, Json(body)).into_response()
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such resource", None)
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the ACD did not answer",
        None,
    )
}

async fn agents(State(state): Shared) -> Response {
    match state.acd.view().await {
        Some((agents, _)) => Json(agents).into_response(),
        None => unavailable(),
    }
}

async fn agent(State(state): Shared, Path(id): Path<String>) -> Response {
    match state.acd.view().await {
        Some((agents, _)) => match agents.into_iter().find(|a| a.id == id) {
            Some(a) => Json(a).into_response(),
            None => error(StatusCode::NOT_FOUND, "no such agent", None),
        },
        None => unavailable(),
    }
}

/// A JSON object body with at most the one field `field`; else a 400
/// naming what is wrong. (The error is the response to send.)
#[allow(clippy::result_large_err)]
pub fn json_object(
    body: &[u8],
    field: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    let bad = |msg: &str, field: Option<&str>| error(StatusCode::BAD_REQUEST, msg, field);
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad(&format!("the body is not JSON: {e}"), None))?;
    let serde_json::Value::Object(obj) = value else {
        return Err(bad("the body must be a JSON object", None));
    };
    if let Some(k) = obj.keys().find(|k| *k != field) {
        return Err(bad(
            &format!("unknown field `{k}`; expected `{field}`"),
            Some(k),
        ));
    }
    Ok(obj)
}

/// The body of `pause`: an optional reason (default `break`). Checked by
/// hand so a mistake names its field. (The error is the response to send.)
#[allow(clippy::result_large_err)]
fn pause_reason(body: &[u8]) -> Result<String, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok("break".into());
    }
    let bad = |msg: &str, field: Option<&str>| error(StatusCode::BAD_REQUEST, msg, field);
    let obj = json_object(body, "reason")?;
    match obj.get("reason") {
        None => Ok("break".into()),
        Some(serde_json::Value::String(r))
            if !r.trim().is_empty() && r.len() <= 64 && !r.chars().any(char::is_control) =>
        {
            Ok(r.trim().to_owned())
        }
        Some(_) => Err(bad(
            "`reason` must be a short text (1 to 64 characters)",
            Some("reason"),
        )),
    }
}

async fn agent_action(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(r) = caller.needs(Role::Agent) {
        return r;
    }
    act_on_agent(&state, &caller.name, id, action, body).await
}

/// Logs an agent in or out, pauses or unpauses them (`action`), for `by`
/// (a token's name, or the agent's own desktop): the agent as it is then,
/// or why not.
pub(super) async fn act_on_agent(
    state: &ApiState,
    by: &str,
    id: String,
    action: String,
    body: Bytes,
) -> Response {
    if !state.config().agents.iter().any(|a| a.id == id) {
        return error(StatusCode::NOT_FOUND, "no such agent", None);
    }
    let (input, done): (Input, fn(AgentStatus) -> bool) = match action.as_str() {
        "login" => (Input::Login { agent: id.clone() }, |s| {
            s != AgentStatus::LoggedOut
        }),
        "logout" => (Input::Logout { agent: id.clone() }, |s| {
            s == AgentStatus::LoggedOut
        }),
        "unpause" => (Input::Unpause { agent: id.clone() }, |s| {
            s != AgentStatus::Paused
        }),
        "pause" => match pause_reason(&body) {
            Ok(reason) => (
                Input::Pause {
                    agent: id.clone(),
                    reason,
                },
                |s| s == AgentStatus::Paused,
            ),
            Err(r) => return r,
        },
        _ => return not_found().await,
    };
    if action != "pause" && !body.iter().all(u8::is_ascii_whitespace) && body.as_ref() != b"{}" {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("`{action}` takes no body"),
            None,
        );
    }
    info!(%by, agent = %id, %action, "agent action from the API");
    state.acd.send(input).await;
    let Some((agents, _)) = state.acd.view().await else {
        return unavailable();
    };
    let Some(a) = agents.into_iter().find(|a| a.id == id) else {
        return error(StatusCode::NOT_FOUND, "no such agent", None);
    };
    if done(a.state) {
        Json(a).into_response()
    } else {
        // Refused by the agent's state machine: a call is under way, or the
        // agent is logged out.
        let message = format!("cannot {action} an agent who is {}", a.state);
        (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "error": message, "agent": a })),
        )
            .into_response()
    }
}

/// Queues as the ACD has them, each with its figures since midnight (UTC)
/// under `today`.
async fn queue_views(state: &ApiState) -> Result<Vec<serde_json::Value>, Response> {
    let Some((_, queues)) = state.acd.view().await else {
        return Err(unavailable());
    };
    let today = super::wallboard::today_by_queue(state)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, &e, None))?;
    Ok(queues
        .into_iter()
        .map(|q| {
            let mut v = serde_json::to_value(&q).unwrap_or_default();
            v["today"] = today
                .get(&q.name)
                .and_then(|k| serde_json::to_value(k).ok())
                .unwrap_or_default();
            v
        })
        .collect())
}

async fn queues(State(state): Shared) -> Response {
    match queue_views(&state).await {
        Ok(q) => Json(q).into_response(),
        Err(r) => r,
    }
}

async fn queue(State(state): Shared, Path(name): Path<String>) -> Response {
    match queue_views(&state).await {
        Ok(q) => match q.into_iter().find(|q| q["name"] == name.as_str()) {
            Some(q) => Json(q).into_response(),
            None => error(StatusCode::NOT_FOUND, "no such queue", None),
        },
        Err(r) => r,
    }
}

async fn calls(State(state): Shared) -> Response {
    Json(state.calls.list()).into_response()
}

async fn call(State(state): Shared, Path(id): Path<String>) -> Response {
    match state.calls.get(&id) {
        Some(c) => Json(c).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such call in progress", None),
    }
}

async fn hang_up(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = caller.needs(Role::Admin) {
        return r;
    }
    if state.calls.hang_up(&id) {
        info!(by = %caller.name, call_id = %id, "hang-up from the API");
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "call_id": id, "hanging_up": true })),
        )
            .into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such call in progress", None)
    }
}

/// Gives a call one of its queue's dispositions.
async fn disposition(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = caller.needs(Role::Agent) {
        return r;
    }
    dispose(&state, &caller.name, &id, &body, None).await
}

/// Gives call `id` the disposition in `body` for `by`; `by_agent`: only if
/// that agent answered it (the agent's own desktop), else 403.
pub(super) async fn dispose(
    state: &ApiState,
    by: &str,
    id: &str,
    body: &[u8],
    by_agent: Option<&str>,
) -> Response {
    let obj = match json_object(body, "code") {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(code) = obj.get("code").and_then(|c| c.as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`code` is needed (a text)",
            Some("code"),
        );
    };
    let config = state.config();
    let handles = crate::engine::disposition::Handles {
        config: &config,
        calls: &state.calls,
        store: &state.store,
        acd: &state.acd,
    };
    use crate::engine::DispositionError as E;
    match crate::engine::disposition::set(&handles, id, code, by_agent).await {
        Ok(d) => {
            info!(%by, call_id = %id, code = %d.code, "disposition from the API");
            Json(d).into_response()
        }
        Err(E::NoSuchCall) => error(StatusCode::NOT_FOUND, "no such call", None),
        Err(e @ E::NotYours) if by_agent.is_some() => {
            error(StatusCode::FORBIDDEN, &e.to_string(), None)
        }
        Err(e @ (E::NotAnswered | E::NotYours)) => {
            error(StatusCode::CONFLICT, &e.to_string(), None)
        }
        Err(e @ E::UnknownCode { .. }) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &e.to_string(),
            Some("code"),
        ),
        Err(e @ E::Store(_)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None),
    }
}

/// Pauses or resumes a call's conversation recording (card data).
async fn recording(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if let Err(r) = caller.needs(Role::Agent) {
        return r;
    }
    let pause = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "no such action: pause or resume",
                None,
            )
        }
    };
    let by = format!("api:{}", caller.name);
    use crate::engine::RecordingStatus;
    match state.calls.pause_recording(&id, pause, by).await {
        None => error(StatusCode::NOT_FOUND, "no such call in progress", None),
        Some(RecordingStatus::NotRecording) => {
            error(StatusCode::CONFLICT, "the call is not being recorded", None)
        }
        Some(status) => {
            info!(by = %caller.name, call_id = %id, recording = status.as_str(), "recording {action} from the API");
            Json(serde_json::json!({ "call_id": id, "recording": status.as_str() })).into_response()
        }
    }
}

/// A time window from a query: `since` (default 24 h ago) and `until`
/// (default now), each RFC 3339 or a duration ago; `Err` is the 400.
#[allow(clippy::result_large_err)]
fn window(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(jiff::Timestamp, jiff::Timestamp), Response> {
    let now = jiff::Timestamp::now();
    let at = |field: &str, text: &str| {
        crate::kpi::when(text, now)
            .map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string(), Some(field)))
    };
    let since = at("since", since.unwrap_or("24h"))?;
    let until = match until {
        Some(u) => at("until", u)?,
        None => now,
    };
    Ok((since, until))
}

/// The query of `/api/cdrs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CdrQuery {
    since: Option<String>,
    until: Option<String>,
    queue: Option<String>,
    agent: Option<String>,
    caller: Option<String>,
    limit: Option<usize>,
    format: Option<String>,
}

/// Call records in a time range (default the last 24 h), oldest first,
/// filtered by queue, agent or caller; `format=csv` for a spreadsheet.
async fn cdrs(
    State(state): Shared,
    query: Result<Query<CdrQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text(), None),
    };
    let bad = |field: &str, msg: String| error(StatusCode::BAD_REQUEST, &msg, Some(field));
    let (since, until) = match window(q.since.as_deref(), q.until.as_deref()) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return bad("format", format!("`{other}`: json or csv")),
    };
    let mut rows = match state.store.cdrs_between(since, until).await {
        Ok(rows) => rows,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the store: {e}"),
                None,
            )
        }
    };
    rows.retain(|c| {
        q.queue.as_ref().is_none_or(|x| c.queue.as_ref() == Some(x))
            && q.agent.as_ref().is_none_or(|x| c.agent.as_ref() == Some(x))
            && q.caller.as_ref().is_none_or(|x| c.caller == *x)
    });
    rows.truncate(q.limit.unwrap_or(10_000));
    if csv {
        return (
            [
                (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    "attachment; filename=\"cdrs.csv\"",
                ),
            ],
            crate::kpi::cdr_csv(&rows),
        )
            .into_response();
    }
    // The IVR's variables as JSON, not as a string of JSON.
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            v["vars"] = serde_json::from_str(&c.vars).unwrap_or_default();
            v
        })
        .collect();
    Json(list).into_response()
}

/// The query of `/api/kpis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KpiQuery {
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    interval: Option<String>,
    queue: Option<String>,
    agent: Option<String>,
}

/// The contact-center figures from the call records, as `hotline report`
/// computes them.
async fn kpis(
    State(state): Shared,
    query: Result<Query<KpiQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use crate::kpi;
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text(), None),
    };
    let bad = |field: &str, msg: String| error(StatusCode::BAD_REQUEST, &msg, Some(field));
    let (since, until) = match window(q.since.as_deref(), q.until.as_deref()) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let interval = match crate::config::parse_duration(q.interval.as_deref().unwrap_or("1h")) {
        Ok(d) => d,
        Err(e) => return bad("interval", e),
    };
    let by_name = q.by.clone().unwrap_or_else(|| "queue".into());
    let by = match kpi::group_by(&by_name, interval) {
        Ok(b) => b,
        Err(e) => return bad("by", e.to_string()),
    };
    let (mut cdrs, surveys, states) = match (
        state.store.cdrs_between(since, until).await,
        state.store.survey_answers_all().await,
        state.store.agent_states(since, until).await,
    ) {
        (Ok(c), Ok(s), Ok(a)) => (c, s, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the store: {e}"),
                None,
            )
        }
    };
    cdrs.retain(|c| {
        q.queue.as_ref().is_none_or(|x| c.queue.as_ref() == Some(x))
            && q.agent.as_ref().is_none_or(|x| c.agent.as_ref() == Some(x))
    });
    let src = kpi::Sources {
        cdrs: &cdrs,
        surveys: &surveys,
        states: &states,
        since,
        until,
    };
    let rows = kpi::report_for(&state.config(), &src, by, std::time::Duration::from_secs(5));
    Json(kpi::json(since, until, &by_name, &rows, &cdrs)).into_response()
}

/// Which events a listener wants.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    queue: Option<String>,
    agent: Option<String>,
    /// The wallboard's `?token=`, already checked by the token layer.
    #[serde(default, rename = "token")]
    _token: Option<serde::de::IgnoredAny>,
}

impl Filter {
    fn wants(&self, event: &Event) -> bool {
        let queue_ok = self.queue.as_ref().is_none_or(|q| match event {
            Event::QueueJoined { queue, .. } | Event::AgentOffered { queue, .. } => queue == q,
            _ => false,
        });
        let agent_ok = self.agent.as_ref().is_none_or(|a| match event {
            Event::AgentOffered { agents, .. } => agents.contains(a),
            Event::CallAnswered { agent, .. } => agent.as_ref() == Some(a),
            Event::AgentState { agent, .. } => agent == a,
            _ => false,
        });
        queue_ok && agent_ok
    }
}

/// The live events: a WebSocket when the request asks to upgrade, else
/// Server-Sent Events. Each is one JSON object with a `type`. A stream
/// ends when a reload removes (or changes) the token it was opened with.
async fn events(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let filter = match query {
        Ok(Query(f)) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text(), None),
    };
    let rx = state.events.subscribe();
    let running = state.running.clone();
    if let Ok(ws) = ws {
        return ws.on_upgrade(move |socket| websocket(socket, rx, filter, running, caller));
    }
    enum Item {
        Event(SseEvent),
        /// A new config: whether the caller's token is still in it.
        Config(bool),
    }
    let events = BroadcastStream::new(rx).filter_map(move |item| {
        let json = match item {
            Ok(ev) if filter.wants(&ev) => serde_json::to_string(&*ev).ok()?,
            Ok(_) => return None,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                serde_json::json!({ "type": "lagged", "missed": n }).to_string()
            }
        };
        Some(Item::Event(SseEvent::default().data(json)))
    });
    let configs = tokio_stream::wrappers::WatchStream::from_changes(running)
        .map(move |r| Item::Config(caller.still_valid(&r.config)));
    let stream = events
        .merge(configs)
        .take_while(|i| !matches!(i, Item::Config(false)))
        .filter_map(|i| match i {
            Item::Event(e) => Some(Ok::<_, Infallible>(e)),
            Item::Config(_) => None,
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn websocket(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    filter: Filter,
    mut running: crate::loader::running::Live,
    caller: Caller,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let json = tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) if filter.wants(&ev) => match serde_json::to_string(&*ev) {
                    Ok(j) => j,
                    Err(_) => continue,
                },
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => serde_json::json!({ "type": "lagged", "missed": n }).to_string(),
                Err(RecvError::Closed) => return,
            },
            // The listener closed, or sent something: only a close matters.
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
            changed = running.changed() => {
                if changed.is_err() || !caller.still_valid(&running.borrow_and_update().config) {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                continue;
            }
        };
        if socket.send(Message::Text(json.into())).await.is_err() {
            return;
        }
    }
}

/// Every parser the handlers run on what a client sends (a query string, a
/// body), on untrusted input: for the fuzz targets, so they exercise the
/// code the API runs. Each either accepts or gives the 400 it would send.
#[doc(hidden)]
pub fn parse_untrusted(query: &str, body: &[u8]) {
    if let Ok(uri) = format!("/x?{query}").parse::<axum::http::Uri>() {
        if let Ok(Query(q)) = Query::<CdrQuery>::try_from_uri(&uri) {
            let _ = window(q.since.as_deref(), q.until.as_deref());
        }
        if let Ok(Query(q)) = Query::<KpiQuery>::try_from_uri(&uri) {
            let _ = window(q.since.as_deref(), q.until.as_deref());
            if let Ok(i) = crate::config::parse_duration(q.interval.as_deref().unwrap_or("1h")) {
                let _ = crate::kpi::group_by(q.by.as_deref().unwrap_or("queue"), i);
            }
        }
        let _ = Query::<Filter>::try_from_uri(&uri);
    }
    let _ = pause_reason(body);
    let _ = super::callbacks::when(body);
}
