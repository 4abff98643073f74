//! The operations API (axum): calls in progress, queues, agents, and the
//! live event stream. Every request needs a bearer token from the config;
//! what it may do depends on the token's role. A refused request changes
//! nothing and says why in JSON.

mod auth;
mod callbacks;
pub mod desktop;
mod flows;
mod metrics;
pub mod routes;
mod wallboard;

use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::connections::OpenConnections;

use crate::acd::actor::AcdHandle;
use crate::config::Config;
use crate::engine::Calls;
use crate::events::EventBus;

/// What the API reads and acts on.
pub struct ApiState {
    /// The config and flows new calls take (tokens, `http.public` and the
    /// rest are read from the latest at each request), and how to reload them.
    pub running: crate::loader::running::Live,
    pub media: Arc<crate::media::MediaStats>,
    pub store: crate::store::StoreHandle,
    pub reloader: crate::loader::reload::Reloader,
    pub prompts: Arc<crate::media::PromptCache>,
    pub config_path: std::path::PathBuf,
    pub acd: AcdHandle,
    pub events: EventBus,
    pub calls: Arc<Calls>,
    pub callbacks: crate::callback::CallbackHandle,
    /// Agents' browser phones: their desktop pages.
    pub phones: crate::leg::browser::BrowserPhones,
    /// Signed-in agents' desktop sessions.
    pub sessions: desktop::Sessions,
    /// Where `/sip` hands SIP over WebSocket to the SIP core.
    pub sip_websockets: crate::sip::transport::WebSocketDoor,
}

impl ApiState {
    /// The latest config.
    pub fn config(&self) -> Arc<Config> {
        self.running.borrow().config.clone()
    }

    /// The latest flows.
    pub fn flows(&self) -> Arc<crate::flow::FlowSet> {
        self.running.borrow().flows.clone()
    }
}

/// The API's routes, behind the token check.
pub fn router(state: Arc<ApiState>) -> Router {
    routes::routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        .merge(desktop::routes(state.clone()))
        .route(
            "/openapi.json",
            axum::routing::get(|| async { axum::Json(routes::openapi()) }),
        )
        .fallback(routes::not_found)
        .with_state(state)
}

/// Whether the request came over HTTPS (`http.tls`): a per-connection
/// extension, as `ConnectInfo` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Https(pub bool);

/// Serves the API on `listener` until the process ends, within the
/// connection budget (`http.connections`): beyond `per-source` from one
/// address or `max` in all, a new connection is closed at once, and a
/// request head must be complete within `message-timeout` (hyper's timer
/// also runs while a kept-alive connection waits for its next request).
/// With `tls` (`http.tls`) every connection is HTTPS: the handshake must
/// finish within `message-timeout` too, and a plain HTTP request gets a
/// `400` that says so.
pub async fn serve(listener: TcpListener, state: Arc<ApiState>, tls: Option<crate::tls::Acceptor>) {
    let limits = state.config().http.connections;
    let app = router(state);
    let mut open = OpenConnections::new(limits);
    // Connections tell the accept loop when they close.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<std::net::IpAddr>();
    loop {
        tokio::select! {
            Some(ip) = closed_rx.recv() => open.closed(ip),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(why) = open.admit(peer.ip()) {
                        ::metrics::counter!("hotline_http_connections_refused_total", "reason" => why.as_str())
                            .increment(1);
                        tracing::debug!(%peer, reason = why.as_str(), "http connection refused");
                        drop(stream);
                        continue;
                    }
                    let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
                    let closed = closed_tx.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => http1(stream, app.layer(axum::Extension(Https(false))), limits, peer).await,
                            Some(acceptor) => {
                                // One budget for the first byte and the handshake.
                                let deadline = tokio::time::Instant::now() + limits.message_timeout;
                                match first_byte(&stream, deadline).await {
                                    Some(b) if b.is_ascii_alphabetic() => refuse_plain_http(stream).await,
                                    Some(_) => {
                                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                                        if let Some(stream) = acceptor.handshake(stream, left, peer).await {
                                            http1(stream, app.layer(axum::Extension(Https(true))), limits, peer).await;
                                        }
                                    }
                                    None => {
                                        ::metrics::counter!("hotline_http_tls_handshakes_failed_total", "reason" => "timeout")
                                            .increment(1);
                                    }
                                }
                            }
                        }
                        let _ = closed.send(peer.ip());
                    });
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) among others: wait, do not spin.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves HTTP/1.1 (with upgrades, for WebSockets) on one connection.
async fn http1<IO>(
    io: IO,
    app: Router,
    limits: crate::connections::ConnectionLimits,
    peer: std::net::SocketAddr,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.message_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
        .with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!(%peer, error = %e, "http connection ended");
    }
}

/// The first byte a client sent, without taking it (a TLS handshake
/// begins with 0x16; a plain HTTP request with a method's letter), or
/// None if it sent nothing before `deadline` or closed.
async fn first_byte(stream: &tokio::net::TcpStream, deadline: tokio::time::Instant) -> Option<u8> {
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0]),
        _ => None,
    }
}

/// Tells a plain HTTP client that this listener speaks HTTPS, and closes.
async fn refuse_plain_http(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = "{\"error\":\"this listener speaks HTTPS only (http.tls): use an https:// URL\"}";
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    ::metrics::counter!("hotline_http_tls_handshakes_failed_total", "reason" => "plain-http")
        .increment(1);
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        stream.write_all(reply.as_bytes()),
    )
    .await;
    let _ = stream.shutdown().await;
}
