//! The flows: which version runs, a reload on demand, and checking a flow
//! before it is saved (the same checks as `hotline validate`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tracing::info;

use super::auth::Caller;
use super::routes::error;
use super::ApiState;
use crate::config::Role;
use crate::flow;
use crate::loader::reload::{ReloadError, Scope};

/// The running version and its flows.
pub async fn list(State(state): State<Arc<ApiState>>) -> Response {
    let set = state.flows();
    let flows: Vec<serde_json::Value> = set
        .flows
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "file": f.path.display().to_string(),
                "entry": f.nodes.get(f.entry).map(|n| n.name.as_str()),
                "nodes": f.nodes.len(),
            })
        })
        .collect();
    Json(serde_json::json!({ "version": set.version, "flows": flows })).into_response()
}

/// Loads the flows directory again now; `422` with the errors when the
/// files are not valid (the running version stays).
pub async fn reload(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    reload_now(&state, &caller, Scope::Flows).await
}

/// Loads the engine config file and the flows again now (what `hotline
/// reload` and SIGHUP do): `200` with the new version and the settings
/// that wait for a restart, or `422` with every error at file:line:col
/// (the running version stays).
pub async fn reload_config(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    reload_now(&state, &caller, Scope::All).await
}

async fn reload_now(state: &ApiState, caller: &Caller, scope: Scope) -> Response {
    if let Err(r) = caller.needs(Role::Admin) {
        return r;
    }
    let (what, why) = match scope {
        Scope::Flows => ("the flows are", "API flows reload"),
        Scope::All => ("the config or the flows are", "API config reload"),
    };
    info!(by = %caller.name, "{why}");
    match state.reloader.reload(why, scope).await {
        Ok(applied) => Json(serde_json::json!({
            "version": applied.version,
            "restart_needed": applied.restart_needed,
        }))
        .into_response(),
        Err(ReloadError::Invalid(diagnostics)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "error": format!("{what} not valid; the running version stays"),
                "running": state.flows().version,
                "diagnostics": diagnostics,
            })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "error": e.to_string(),
                "running": state.flows().version,
            })),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateQuery {
    /// The flow's name (its file name without `.yaml`).
    name: String,
}

/// Checks a flow (the YAML body) with the other flows of the directory, as
/// if saved as `NAME.yaml`: `200` with warnings, or `422` with each problem
/// at line:column. Nothing is saved or loaded.
pub async fn validate(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<ValidateQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Response {
    let name = match query {
        Ok(Query(q)) => q.name,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text(), Some("name")),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "the name is letters, digits, - and _",
            Some("name"),
        );
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8 text", None);
    };
    let state2 = state.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let state = state2;
        let config = &*state.config();
        let file = config.flows_dir.join(format!("{name}.yaml"));
        let mut sources: Vec<(std::path::PathBuf, String)> =
            flow::set::flow_files(&config.flows_dir)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| *p != file)
                .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
                .collect();
        sources.push((file, text));
        let names = state.prompts.names().map(str::to_owned).collect();
        let catalog = flow::set::catalog(config, names);
        let loaded = flow::set::load_sources(config, &state.config_path, &catalog, sources, 0);
        let diagnostics: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        (loaded.set.is_some(), diagnostics)
    })
    .await;
    match checked {
        Ok((true, diagnostics)) => {
            Json(serde_json::json!({ "valid": true, "diagnostics": diagnostics })).into_response()
        }
        Ok((false, diagnostics)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "valid": false, "diagnostics": diagnostics })),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None),
    }
}
