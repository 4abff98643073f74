//! `GET /metrics`: the Prometheus text format. Counters and histograms are
//! recorded where things happen; the engine's state (calls, queues,
//! agents, registrations, RTP totals) is read as the page is rendered.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::routes::error;
use super::ApiState;

use crate::acd::AgentStatus;
use crate::engine::CallPhase;

pub async fn render(State(state): State<Arc<ApiState>>) -> Response {
    let Some(handle) = crate::telemetry::install() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder", None);
    };
    let calls = state.calls.list();
    for s in CallPhase::ALL {
        let n = calls.iter().filter(|c| c.state == s).count();
        metrics::gauge!("hotline_calls_active", "state" => s.as_str()).set(n as f64);
    }
    if let Some((agents, queues)) = state.acd.view().await {
        for s in AgentStatus::ALL {
            let n = agents.iter().filter(|a| a.state == s).count();
            metrics::gauge!("hotline_agents", "state" => s.as_str()).set(n as f64);
        }
        let phones: usize = agents.iter().map(|a| a.contacts).sum();
        metrics::gauge!("hotline_registrations").set(phones as f64);
        for q in queues {
            metrics::gauge!("hotline_queue_waiting_calls", "queue" => q.name.clone())
                .set(q.waiting.len() as f64);
            metrics::gauge!("hotline_queue_staffed_agents", "queue" => q.name.clone())
                .set(q.staffed as f64);
            metrics::gauge!("hotline_queue_longest_wait_seconds", "queue" => q.name)
                .set(q.longest_wait_ms as f64 / 1000.0);
        }
    }
    let m = &state.media;
    for (name, v) in [
        ("hotline_rtp_packets_received_total", &m.packets_in),
        ("hotline_rtp_packets_sent_total", &m.packets_out),
        ("hotline_rtp_packets_malformed_total", &m.packets_bad),
        ("hotline_rtp_packets_lost_total", &m.packets_lost),
        ("hotline_rtp_packets_late_total", &m.packets_late),
        (
            "hotline_srtp_packets_refused_total",
            &m.packets_unauthenticated,
        ),
        ("hotline_rtcp_packets_refused_total", &m.rtcp_refused),
    ] {
        metrics::counter!(name).absolute(v.load(Ordering::Relaxed));
    }
    for reason in crate::media::learn::DropReason::ALL {
        metrics::counter!("hotline_rtp_packets_dropped_total", "reason" => reason.as_str())
            .absolute(m.packets_dropped[reason.index()].load(Ordering::Relaxed));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
