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

/// Serves the API on `listener` until the process ends, within the
/// connection budget (`http.connections`): beyond `per-source` from one
/// address or `max` in all, a new connection is closed at once, and a
/// request head must be complete within `message-timeout` (hyper's timer
/// also runs while a kept-alive connection waits for its next request).
pub async fn serve(listener: TcpListener, state: Arc<ApiState>) {
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
                    tokio::spawn(async move {
                        let connection = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(limits.message_timeout)
                            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                            .with_upgrades();
                        if let Err(e) = connection.await {
                            tracing::debug!(%peer, error = %e, "http connection ended");
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
