//! Prometheus metrics: counters and histograms recorded where things
//! happen (SIP, media, DTMF, prompts, webhooks, the store), and gauges of
//! the engine's state taken when `/metrics` is read. Names and labels
//! follow Prometheus conventions (`_total`, `_seconds`, snake case); label
//! values come from fixed sets or the config, never from the network as is.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, in seconds: 1 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// MOS buckets: 3.6 and below is poor (what `hotline report` lists), 4.3
/// and above what G.711 without loss gets.
const MOS_BUCKETS: &[f64] = &[1.0, 2.0, 2.6, 3.1, 3.6, 4.0, 4.3, 4.5];

/// Loss ratio buckets: 0.5 % to all.
const LOSS_BUCKETS: &[f64] = &[0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// Installs the process-wide recorder (once); `None` if another recorder
/// was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("hotline_call_mos".into()), MOS_BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("hotline_call_loss_ratio".into()),
                    LOSS_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// Starts at 0 the counters that alerts take the increase of, for each
/// queue of `config` (a counter that first appears at 1 has no increase
/// to show): at start and after each reload.
pub fn zero_series(config: &crate::config::Config) {
    for queue in config.queues.keys() {
        let q = queue.clone();
        metrics::counter!("hotline_queue_answered_total", "queue" => q.clone()).increment(0);
        metrics::counter!("hotline_queue_answered_in_time_total", "queue" => q.clone())
            .increment(0);
        metrics::counter!("hotline_queue_unanswered_total", "queue" => q, "outcome" => "abandoned")
            .increment(0);
    }
    for outcome in ["applied", "refused", "failed"] {
        metrics::counter!("hotline_reloads_total", "outcome" => outcome).increment(0);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("hotline_calls_active", "Calls in progress, by state.");
    describe_counter!(
        "hotline_sip_requests_total",
        "SIP requests received, by method."
    );
    describe_counter!(
        "hotline_sip_responses_total",
        "SIP responses sent, by status code."
    );
    describe_gauge!("hotline_registrations", "Agents' phones registered.");
    describe_counter!(
        "hotline_rtp_packets_received_total",
        "RTP packets received."
    );
    describe_counter!("hotline_rtp_packets_sent_total", "RTP packets sent.");
    describe_counter!(
        "hotline_rtp_packets_malformed_total",
        "UDP datagrams on RTP ports that were not RTP."
    );
    describe_counter!(
        "hotline_rtp_packets_lost_total",
        "RTP packets never received (sequence gaps)."
    );
    describe_counter!(
        "hotline_rtp_packets_late_total",
        "RTP packets received out of order."
    );
    describe_counter!(
        "hotline_srtp_packets_refused_total",
        "Packets on SRTP legs that failed authentication (forged, replayed, plain or damaged)."
    );
    describe_gauge!(
        "hotline_queue_staffed_agents",
        "Agents of the queue logged in, reachable and on shift."
    );
    describe_counter!(
        "hotline_queue_answered_total",
        "Queued callers answered by an agent, counted as the agent answers."
    );
    describe_counter!(
        "hotline_queue_answered_in_time_total",
        "Queued callers answered within their queue's service-level time."
    );
    describe_counter!(
        "hotline_queue_unanswered_total",
        "Queued callers who left without an agent, by how (abandoned, timeout, callback, ...)."
    );
    describe_counter!(
        "hotline_reloads_total",
        "Reloads of the config and flows, by outcome (applied, refused, failed)."
    );
    describe_counter!(
        "hotline_retention_deleted_total",
        "What the retention sweep deleted, by kind (records, recordings, voicemail)."
    );
    describe_counter!(
        "hotline_rtcp_packets_refused_total",
        "RTCP packets not taken: from another address than the leg's peer, unreadable, or failing SRTCP authentication (some phones send a plain keep-alive on SRTP legs)."
    );
    describe_counter!(
        "hotline_dtmf_digits_total",
        "DTMF digits received, by method."
    );
    describe_counter!("hotline_prompt_plays_total", "Prompts started.");
    describe_gauge!("hotline_queue_waiting_calls", "Callers waiting, by queue.");
    describe_gauge!(
        "hotline_queue_longest_wait_seconds",
        Unit::Seconds,
        "The longest current wait, by queue."
    );
    describe_gauge!("hotline_agents", "Agents, by state.");
    describe_histogram!(
        "hotline_webhook_duration_seconds",
        Unit::Seconds,
        "Webhook round trips, by outcome."
    );
    describe_histogram!(
        "hotline_call_mos",
        "Each leg's MOS (E-model, from RTCP and what we received) as its call ends, by leg (caller, agent, transfer, a callback's customer)."
    );
    describe_histogram!(
        "hotline_call_loss_ratio",
        "Each leg's packet loss as its call ends, by leg and direction (in: what we received; out: what the peer reported)."
    );
    describe_histogram!(
        "hotline_call_jitter_seconds",
        Unit::Seconds,
        "Each leg's interarrival jitter (RFC 3550) as its call ends, by leg."
    );
    describe_histogram!(
        "hotline_call_rtt_seconds",
        Unit::Seconds,
        "Each leg's round-trip time from RTCP as its call ends, by leg."
    );
    describe_histogram!(
        "hotline_store_write_duration_seconds",
        Unit::Seconds,
        "Store writes, by kind."
    );
}

/// The SIP method as a label: the standard ones, else `other`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "UPDATE",
        "PRACK",
        "MESSAGE",
        "PUBLISH",
    ];
    KNOWN
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_known_methods_become_labels() {
        assert_eq!(super::method_label("invite"), "INVITE");
        assert_eq!(super::method_label("X-EVIL-{}"), "other");
    }
}
