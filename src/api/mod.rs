//! The operations API (axum): calls in progress, queues, agents, and the
//! live event stream. Every request needs a bearer token from the config;
//! what it may do depends on the token's role. A refused request changes
//! nothing and says why in JSON.

mod auth;
mod callbacks;
mod flows;
mod metrics;
pub mod routes;
mod wallboard;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::acd::actor::AcdHandle;
use crate::call::live::LiveCalls;
use crate::config::Config;
use crate::events::EventBus;

/// What the API reads and acts on.
pub struct ApiState {
    pub config: Arc<Config>,
    pub media: Arc<crate::media::MediaStats>,
    pub store: crate::store::StoreHandle,
    /// The flows new calls take, and how to reload them.
    pub flows: tokio::sync::watch::Receiver<Arc<crate::flow::FlowSet>>,
    pub reloader: crate::call::reload::Reloader,
    pub prompts: Arc<crate::media::PromptCache>,
    pub config_path: std::path::PathBuf,
    pub acd: AcdHandle,
    pub events: EventBus,
    pub calls: Arc<LiveCalls>,
    pub callbacks: crate::callback::CallbackHandle,
}

/// The API's routes, behind the token check.
pub fn router(state: Arc<ApiState>) -> Router {
    routes::routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        .route(
            "/openapi.json",
            axum::routing::get(|| async { axum::Json(routes::openapi()) }),
        )
        .fallback(routes::not_found)
        .with_state(state)
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, state: Arc<ApiState>) {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the operations API stopped");
    }
}
