//! The wallboard: one page (embedded in the binary, no build step) that
//! shows each queue's waiting callers, longest wait and service level
//! today, and every agent's state with its time, live from the events.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::routes::error;
use super::ApiState;

const PAGE: &str = include_str!("../../web/wallboard.html");

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// Queues, agents, and each queue's figures since midnight (UTC).
pub async fn data(State(state): State<Arc<ApiState>>) -> Response {
    let Some((agents, queues)) = state.acd.view().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ACD did not answer",
            None,
        );
    };
    let today = match today_by_queue(&state).await {
        Ok(t) => t,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e, None),
    };
    Json(serde_json::json!({ "queues": queues, "agents": agents, "today": today })).into_response()
}

/// Each queue's figures since midnight (UTC).
pub async fn today_by_queue(
    state: &ApiState,
) -> Result<BTreeMap<String, crate::kpi::Kpis>, String> {
    let now = jiff::Timestamp::now();
    let midnight =
        jiff::Timestamp::from_second(now.as_second().div_euclid(86_400) * 86_400).unwrap_or(now);
    let (cdrs, surveys, states) = match (
        state.store.cdrs_between(midnight, now).await,
        state.store.survey_answers_all().await,
        state.store.agent_states(midnight, now).await,
    ) {
        (Ok(c), Ok(s), Ok(a)) => (c, s, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(format!("the store: {e}")),
    };
    let src = crate::kpi::Sources {
        cdrs: &cdrs,
        surveys: &surveys,
        states: &states,
        since: midnight,
        until: now,
    };
    Ok(crate::kpi::report_for(
        &state.config(),
        &src,
        crate::kpi::GroupBy::Queue,
        std::time::Duration::from_secs(5),
    )
    .into_iter()
    .map(|r| (r.group, r.kpis))
    .collect())
}
