//! Callbacks for operators: the pending ones (where each stands), one
//! with its attempts, and a supervisor's cancel and reschedule.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tracing::info;

use super::auth::Caller;
use super::routes::error;
use super::ApiState;
use crate::callback::CallbackError;
use crate::config::Role;

type Shared = State<Arc<ApiState>>;

/// The id in the path, or a 404 (ids are numbers).
#[allow(clippy::result_large_err)]
fn id_of(text: &str) -> Result<i64, Response> {
    text.parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such callback", None))
}

/// A supervisor's change: the token's role (`agent` at least), then the id.
#[allow(clippy::result_large_err)]
fn may_change(caller: &Caller, id: &str) -> Result<i64, Response> {
    caller.needs(Role::Agent)?;
    id_of(id)
}

fn refused(e: CallbackError) -> Response {
    let status = match e {
        CallbackError::NotPending(_) => StatusCode::NOT_FOUND,
        CallbackError::Delivering(_) => StatusCode::CONFLICT,
        CallbackError::Store(_) | CallbackError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string(), None)
}

/// The pending callbacks, oldest place first.
pub async fn list(State(state): Shared) -> Response {
    let mut pending = state.callbacks.list().await;
    pending.sort_by_key(|v| (v.callback.queued_at, v.callback.id));
    Json(pending).into_response()
}

/// One callback, whatever its state, with its attempts.
pub async fn one(State(state): Shared, Path(id): Path<String>) -> Response {
    let id = match id_of(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let unavailable =
        |e: crate::store::StoreError| error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None);
    let callback = match state.store.callback(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such callback", None),
        Err(e) => return unavailable(e),
    };
    let attempts = match state.store.callback_attempts(id).await {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    let phase = state
        .callbacks
        .list()
        .await
        .into_iter()
        .find(|v| v.callback.id == id)
        .map(|v| v.phase);
    let mut body = serde_json::to_value(&callback).unwrap_or_default();
    body["phase"] = serde_json::to_value(phase).unwrap_or_default();
    body["attempt_list"] = serde_json::to_value(&attempts).unwrap_or_default();
    Json(body).into_response()
}

pub async fn cancel(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match may_change(&caller, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if !body.iter().all(u8::is_ascii_whitespace) && body.as_ref() != b"{}" {
        return error(StatusCode::BAD_REQUEST, "`cancel` takes no body", None);
    }
    match state.callbacks.cancel(id).await {
        Ok(()) => {
            info!(by = %caller.name, callback = id, "callback cancelled from the API");
            Json(serde_json::json!({ "id": id, "state": "cancelled" })).into_response()
        }
        Err(e) => refused(e),
    }
}

/// The body of `reschedule`: `{"at": "2026-11-24T09:00:00Z"}`.
#[allow(clippy::result_large_err)]
pub(super) fn when(body: &[u8]) -> Result<jiff::Timestamp, Response> {
    let bad = |msg: &str, field: Option<&str>| error(StatusCode::BAD_REQUEST, msg, field);
    super::routes::json_object(body, "at")?
        .get("at")
        .and_then(|v| v.as_str())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            bad(
                "`at` must be a time in RFC 3339 (2026-11-24T09:00:00Z)",
                Some("at"),
            )
        })
}

pub async fn reschedule(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match may_change(&caller, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let at = match when(&body) {
        Ok(at) => at,
        Err(r) => return r,
    };
    match state.callbacks.reschedule(id, at).await {
        Ok(()) => {
            info!(by = %caller.name, callback = id, %at, "callback rescheduled from the API");
            Json(serde_json::json!({ "id": id, "next_attempt_at": at })).into_response()
        }
        Err(e) => refused(e),
    }
}
