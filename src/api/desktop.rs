//! The agent desktop's server side: an agent signs in with their id and
//! password (checked like a REGISTER), gets a session cookie bound to that
//! one agent, and its WebSocket is the agent's browser phone (rings with
//! the screen pop, the WebRTC offer/answer and candidates, the agent's own
//! state). A session acts on its own agent only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use md5::{Digest, Md5};
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::routes::error;
use super::ApiState;
use crate::acd::Input;
use crate::events::Event;
use crate::leg::browser::{FromPage, ToPage, PAGE_QUEUE};

type Shared = State<Arc<ApiState>>;

/// The session cookie's name.
pub const COOKIE: &str = "hotline_agent";
/// A session unused this long is over.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins of one agent within [`FAILURE_WINDOW`] before the
/// account is refused for the rest of that window.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// One signed-in desktop.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: u64,
    pub agent: String,
    last_seen: Instant,
}

#[derive(Default)]
struct Inner {
    by_token: HashMap<String, Session>,
    failures: HashMap<String, (u32, Instant)>,
    next_id: u64,
}

/// Signed-in desktops by their cookie.
// A Mutex, not an actor: a few map operations per request, never held
// across an await.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Inner>>);

impl Sessions {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The session of a cookie, if it is one and not idle too long.
    fn find(&self, token: &str, now: Instant) -> Option<Session> {
        self.with(|i| {
            i.by_token
                .retain(|_, s| now.saturating_duration_since(s.last_seen) < IDLE);
            let s = i.by_token.get_mut(token)?;
            s.last_seen = now;
            Some(s.clone())
        })
    }

    fn open(&self, agent: &str, now: Instant) -> (String, Session) {
        let token = hex::encode(rand::random::<[u8; 32]>());
        self.with(|i| {
            i.next_id += 1;
            let s = Session {
                id: i.next_id,
                agent: agent.to_owned(),
                last_seen: now,
            };
            i.by_token.insert(token.clone(), s.clone());
            i.failures.remove(agent);
            (token, s)
        })
    }

    fn close(&self, token: &str) {
        self.with(|i| i.by_token.remove(token));
    }

    /// Whether the agent's account is refused for now (too many failures).
    fn locked(&self, agent: &str, now: Instant) -> bool {
        self.with(|i| {
            i.failures.get(agent).is_some_and(|(n, since)| {
                *n >= MAX_FAILURES && now.saturating_duration_since(*since) < FAILURE_WINDOW
            })
        })
    }

    fn failed(&self, agent: &str, now: Instant) {
        self.with(|i| {
            let e = i.failures.entry(agent.to_owned()).or_insert((0, now));
            if now.saturating_duration_since(e.1) >= FAILURE_WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        });
    }
}

/// The desktop's routes (their own sign-in, not the API's tokens).
pub fn routes(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/agent", get(page))
        .route("/agent/login", post(login))
        .route("/agent/logout", post(logout))
        .route("/agent/me", get(me))
        .route("/agent/today", get(today))
        .route("/agent/ws", get(socket))
        .route("/sip", get(sip_websocket))
        .route("/agent/{id}/{action}", post(act))
        .route("/agent/calls/{id}/disposition", post(disposition))
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

const PAGE: &str = include_str!("../../web/agent.html");

/// The desktop page (plain HTML and JS of our own, embedded).
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // Its own scripts and the engine only; no framing by others.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; media-src 'self' blob: mediastream:; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// A page of another site (or a name rebound to this address) gets
/// nothing: the same rule as the API's pages. The desktop itself (`/agent`
/// and below) is served over plain HTTP to this machine only: elsewhere a
/// browser would give it no microphone, and the password and the session
/// cookie would cross the network in clear.
async fn guard(State(state): Shared, req: Request, next: Next) -> Response {
    if let Some(why) = plain_http_refusal(&req) {
        return error(StatusCode::FORBIDDEN, why, None);
    }
    let refused = {
        let config = state.config();
        let headers = req.headers();
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        super::auth::refusal(&config.http, text(header::HOST), text(header::ORIGIN), true)
    };
    if let Some(why) = refused {
        return error(StatusCode::FORBIDDEN, why, None);
    }
    next.run(req).await
}

/// Why the desktop refuses this request: plain HTTP from another machine.
fn plain_http_refusal(req: &Request) -> Option<&'static str> {
    let https = req.extensions().get::<super::Https>().is_some_and(|h| h.0);
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    let desktop = req.uri().path() == "/agent" || req.uri().path().starts_with("/agent/");
    (desktop && !https && !loopback)
        .then_some("the agent desktop needs HTTPS off this machine: set http.tls and open https://")
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(COOKIE)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
}

/// The request's session, or the response refusing it.
// The refusal is the response itself, built once on the way out.
#[allow(clippy::result_large_err)]
fn session(state: &ApiState, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(token) = cookie(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "sign in first (POST /agent/login)",
            None,
        ));
    };
    let session = state.sessions.find(&token, Instant::now()).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "the session is over; sign in again",
            None,
        )
    })?;
    // An agent removed by a reload has no session any more.
    if !state.config().agents.iter().any(|a| a.id == session.agent) {
        state.sessions.close(&token);
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "no such agent any more",
            None,
        ));
    }
    Ok(session)
}

/// Whether `password` is the agent's, as the registrar would check it:
/// the stored password, or H(id:realm:password) against a stored HA1.
fn password_matches(agent: &crate::config::Agent, realm: &str, password: &str) -> bool {
    let same = |a: &[u8], b: &[u8]| {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    };
    if let Some(p) = &agent.password {
        return same(p.as_bytes(), password.as_bytes());
    }
    let text = format!("{}:{realm}:{password}", agent.id);
    if let Some(h) = &agent.ha1 {
        let ours = hex::encode(Md5::digest(text.as_bytes()));
        return same(ours.as_bytes(), h.to_ascii_lowercase().as_bytes());
    }
    if let Some(h) = &agent.ha1_sha256 {
        let ours = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        return same(ours.as_bytes(), h.to_ascii_lowercase().as_bytes());
    }
    false
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    agent: String,
    password: String,
}

async fn login(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    https: Option<axum::Extension<super::Https>>,
    body: Bytes,
) -> Response {
    let Ok(Login { agent, password }) = serde_json::from_slice::<Login>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "a JSON body { \"agent\": ID, \"password\": PASSWORD } is needed",
            None,
        );
    };
    let now = Instant::now();
    let config = state.config();
    if state.sessions.locked(&agent, now) {
        warn!(%agent, source = %peer.ip(), "desktop sign-in refused: too many failures");
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed sign-ins; wait a minute",
            None,
        );
    }
    let found = config.agents.iter().find(|a| a.id == agent);
    let ok = found.is_some_and(|a| password_matches(a, &config.registrar.realm, &password));
    let Some(a) = found.filter(|_| ok) else {
        state.sessions.failed(&agent, now);
        warn!(%agent, source = %peer.ip(), "desktop sign-in refused: wrong agent or password");
        ::metrics::counter!("hotline_desktop_signins_total", "outcome" => "refused").increment(1);
        return error(StatusCode::UNAUTHORIZED, "wrong agent or password", None);
    };
    let (token, _) = state.sessions.open(&agent, now);
    ::metrics::counter!("hotline_desktop_signins_total", "outcome" => "ok").increment(1);
    info!(%agent, source = %peer.ip(), "agent signed in at the desktop");
    // `Secure` over HTTPS; plain HTTP is served to this machine only.
    let https = https.is_some_and(|h| h.0 .0);
    let secure = if https || !peer.ip().is_loopback() {
        "; Secure"
    } else {
        ""
    };
    let set = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let body = serde_json::json!({ "agent": a.id, "name": a.name });
    ([(header::SET_COOKIE, set)], Json(body)).into_response()
}

async fn logout(State(state): Shared, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers) {
        state.sessions.close(&token);
    }
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response()
}

/// The signed-in agent: who, their state, their queues.
async fn me(State(state): Shared, headers: HeaderMap) -> Response {
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some((agents, _)) = state.acd.view().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ACD does not answer",
            None,
        );
    };
    match agents.into_iter().find(|a| a.id == s.agent) {
        Some(a) => Json(a).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such agent", None),
    }
}

/// The agent's own day since midnight (UTC) and the callbacks pending in
/// their queues.
async fn today(State(state): Shared, headers: HeaderMap) -> Response {
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = jiff::Timestamp::now();
    let midnight =
        jiff::Timestamp::from_second(now.as_second().div_euclid(86_400) * 86_400).unwrap_or(now);
    let (cdrs, states) = match (
        state.store.cdrs_between(midnight, now).await,
        state
            .store
            .agent_states(midnight - jiff::SignedDuration::from_hours(24), now)
            .await,
    ) {
        (Ok(c), Ok(a)) => (c, a),
        (Err(e), _) | (_, Err(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the store: {e}"),
                None,
            )
        }
    };
    let day = crate::kpi::agent_day(&s.agent, &cdrs, &states, midnight, now);
    let config = state.config();
    let queues: Vec<String> = config
        .agents
        .iter()
        .find(|a| a.id == s.agent)
        .map(|a| a.queues.clone())
        .unwrap_or_default();
    let mut callbacks: Vec<_> = state
        .callbacks
        .list()
        .await
        .into_iter()
        .filter(|c| queues.contains(&c.callback.queue))
        .collect();
    callbacks.sort_by_key(|v| (v.callback.queued_at, v.callback.id));
    Json(serde_json::json!({ "day": day, "callbacks": callbacks })).into_response()
}

/// `login`, `logout`, `pause` (`{ "reason": … }`), `unpause`: on the
/// session's own agent only.
async fn act(
    State(state): Shared,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if s.agent != id {
        warn!(session = %s.agent, %id, %action, "a desktop acted on another agent; refused");
        return error(
            StatusCode::FORBIDDEN,
            "a desktop session acts on its own agent only",
            None,
        );
    }
    let by = format!("desktop:{id}");
    super::routes::act_on_agent(&state, &by, id, action, body).await
}

/// The disposition of a call the session's agent answered.
async fn disposition(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let by = format!("desktop:{}", s.agent);
    super::routes::dispose(&state, &by, &id, &body, Some(&s.agent)).await
}

/// The desktop's socket: the agent's browser phone while it is open.
async fn socket(State(state): Shared, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    ws.on_upgrade(move |socket| phone(socket, state, s))
}

/// SIP over WebSocket (RFC 7118, subprotocol `sip`): third-party browser
/// phones (JsSIP, SIP.js) register as agents with digest, as any phone.
async fn sip_websocket(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // RFC 7118 §4: the client asks for the `sip` subprotocol.
    let asks_sip = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"));
    if !asks_sip {
        return error(
            StatusCode::BAD_REQUEST,
            "SIP over WebSocket needs the `sip` subprotocol (Sec-WebSocket-Protocol: sip)",
            None,
        );
    }
    let door = state.sip_websockets.clone();
    ws.protocols(["sip"])
        .on_upgrade(move |socket| sip_frames(socket, peer, door))
}

/// Carries one SIP WebSocket: frames in to the SIP core, its messages out.
async fn sip_frames(
    mut socket: WebSocket,
    peer: SocketAddr,
    door: crate::sip::transport::WebSocketDoor,
) {
    let (frames, frames_rx) = mpsc::channel::<Vec<u8>>(64);
    let (out_tx, mut out) = mpsc::channel::<Arc<[u8]>>(256);
    let serving = tokio::spawn(async move { door.serve(peer, frames_rx, out_tx).await });
    info!(%peer, "SIP over WebSocket opened");
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if frames.send(t.as_bytes().to_vec()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    if frames.send(b.to_vec()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            sent = out.recv() => match sent {
                // SIP is text; a message that is not UTF-8 goes as binary.
                Some(bytes) => {
                    let msg = match std::str::from_utf8(&bytes) {
                        Ok(text) => Message::Text(text.to_owned().into()),
                        Err(_) => Message::Binary(bytes.to_vec().into()),
                    };
                    if socket.send(msg).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    drop(frames);
    let _ = serving.await;
    info!(%peer, "SIP over WebSocket closed");
}

/// What the page sends besides a call's signalling.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum PageSays {
    /// Keeps the socket (and the session) alive.
    Ping,
    /// Ring the agent's registered desk phone (`desk: true`) instead of
    /// the browser, or the browser again.
    Phone { desk: bool },
}

async fn phone(mut socket: WebSocket, state: Arc<ApiState>, s: Session) {
    let agent = s.agent.clone();
    let (tx, mut rx) = mpsc::channel::<ToPage>(PAGE_QUEUE);
    state.phones.attach(&agent, s.id, tx);
    // Without `webrtc:` there are no browser legs: the page is the
    // agent's screen, its calls ring the desk phone.
    let webrtc = state.config().webrtc.is_some();
    state
        .acd
        .send(Input::Browser {
            agent: agent.clone(),
            on: webrtc,
        })
        .await;
    if webrtc {
        info!(%agent, "the agent's browser phone is on");
    }
    let mut events = state.events.subscribe();
    let config = state.config();
    let hello = serde_json::json!({
        "type": "hello",
        "agent": agent,
        "name": config.agents.iter().find(|a| a.id == agent).and_then(|a| a.name.clone()),
        "ice_servers": config.webrtc.as_ref().map(|w| w.ice_servers_for(&agent)).unwrap_or_default(),
        "ice_transport_policy": config.webrtc.as_ref().map(|w| w.ice_transport_policy).unwrap_or_default(),
        "pause_reasons": config.desktop.pause_reasons,
        "webrtc": config.webrtc.is_some(),
        "queues": queues_of(&config, &agent),
        "transfer_targets": config.queues.keys().chain(config.transfers.keys()).collect::<Vec<_>>(),
    });
    drop(config);
    let mut out = Some(hello.to_string());
    let mut desk = false;
    loop {
        if let Some(text) = out.take() {
            if socket.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        out = tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => serde_json::to_string(&m).ok(),
                // Another tab took the phone over.
                None => break,
            },
            ev = events.recv() => match ev {
                Ok(ev) => match &*ev {
                    Event::AgentState { agent: a, .. } if *a == agent => serde_json::to_string(&*ev).ok(),
                    // The screen pop when the desk phone rings.
                    Event::AgentOffered { agents, .. } if desk && agents.contains(&agent) => {
                        serde_json::to_string(&*ev).ok()
                    }
                    _ => None,
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                Err(_) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<PageSays>(text.as_str()) {
                    Ok(PageSays::Phone { desk: d }) => {
                        desk = d;
                        info!(%agent, desk, "the agent's phone");
                        state.acd.send(Input::Browser { agent: agent.clone(), on: webrtc && !desk }).await;
                        Some(serde_json::json!({ "type": "phone", "desk": desk }).to_string())
                    }
                    _ => said(&state, &agent, text.as_str()),
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => None,
            },
        };
    }
    if state.phones.detach(&agent, s.id) {
        state
            .acd
            .send(Input::Browser {
                agent: agent.clone(),
                on: false,
            })
            .await;
        info!(%agent, "the agent's browser phone is off");
    }
}

/// What the desktop shows of the agent's queues: their dispositions,
/// wrap-up and CRM link.
fn queues_of(config: &crate::config::Config, agent: &str) -> serde_json::Value {
    let mine = config.agents.iter().find(|a| a.id == agent);
    let queues = mine.map(|a| a.queues.as_slice()).unwrap_or_default();
    let map: serde_json::Map<String, serde_json::Value> = queues
        .iter()
        .filter_map(|name| {
            let q = config.queues.get(name)?;
            let dispositions: Vec<_> = q
                .dispositions
                .iter()
                .map(|d| serde_json::json!({ "code": d.code, "label": d.label }))
                .collect();
            Some((
                name.clone(),
                serde_json::json!({
                    "dispositions": dispositions,
                    "disposition_required": q.disposition == crate::config::DispositionRule::Required,
                    "wrap_up_ms": q.wrap_up.as_millis() as u64,
                    "crm_url": q.crm_url,
                }),
            ))
        })
        .collect();
    serde_json::Value::Object(map)
}

/// A message from the page: a call's signalling goes to the leg ringing
/// this agent for it; what is not understood is answered with an error.
fn said(state: &ApiState, agent: &str, text: &str) -> Option<String> {
    if let Ok(msg) = serde_json::from_str::<FromPage>(text) {
        let call = msg.call().to_owned();
        if !state.phones.from_page(agent, msg) {
            return Some(
                serde_json::json!({ "type": "error", "call": call, "error": "no such call ringing for you" })
                    .to_string(),
            );
        }
        return None;
    }
    match serde_json::from_str::<PageSays>(text) {
        Ok(PageSays::Ping) => Some(serde_json::json!({ "type": "pong" }).to_string()),
        // Handled by the socket's loop.
        Ok(PageSays::Phone { .. }) => None,
        Err(e) => Some(serde_json::json!({ "type": "error", "error": e.to_string() }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(yaml: &str) -> crate::config::Agent {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn a_password_is_checked_like_a_register_would() {
        let plain = agent("{ id: '1001', password: s3cret }");
        assert!(password_matches(&plain, "hotline", "s3cret"));
        assert!(!password_matches(&plain, "hotline", "s3cre"));
        assert!(!password_matches(&plain, "hotline", ""));
        let md5 = hex::encode(Md5::digest(b"1001:hotline:s3cret"));
        let hashed = agent(&format!("{{ id: '1001', ha1: {} }}", md5.to_uppercase()));
        assert!(password_matches(&hashed, "hotline", "s3cret"));
        assert!(!password_matches(&hashed, "other-realm", "s3cret"));
        let sha = hex::encode(sha2::Sha256::digest(b"1001:hotline:s3cret"));
        let hashed = agent(&format!("{{ id: '1001', ha1-sha256: {sha} }}"));
        assert!(password_matches(&hashed, "hotline", "s3cret"));
        assert!(!password_matches(&agent("{ id: '1001' }"), "hotline", ""));
    }

    #[test]
    fn five_failures_lock_the_account_for_a_minute_and_a_sign_in_clears_them() {
        let s = Sessions::default();
        let t = Instant::now();
        for _ in 0..4 {
            s.failed("1001", t);
        }
        assert!(!s.locked("1001", t));
        s.failed("1001", t);
        assert!(s.locked("1001", t + Duration::from_secs(30)));
        assert!(!s.locked("1002", t));
        assert!(!s.locked("1001", t + FAILURE_WINDOW));
        s.open("1001", t);
        assert!(!s.locked("1001", t));
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_idles_out() {
        let s = Sessions::default();
        let t = Instant::now();
        let (token, session) = s.open("1001", t);
        assert_eq!(
            s.find(&token, t + Duration::from_secs(60)).unwrap().id,
            session.id
        );
        assert!(s.find("nope", t).is_none());
        assert!(s.find(&token, t + Duration::from_secs(61) + IDLE).is_none());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("a=b; {COOKIE}={token}").parse().unwrap(),
        );
        assert_eq!(cookie(&headers), Some(token));
    }
}
