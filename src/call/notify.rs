//! Webhooks the engine sends on its own (not a flow's): the screen pop to a
//! queue's CRM URL, and each call's record when it ends. Sent from a task
//! of their own with a timeout and retries, so they never hold a call up.

use std::time::Duration;

use tracing::{info, warn, Instrument};

/// Tries per webhook, and how long each may take.
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

/// POSTs `body` to `url` in the background: up to three tries (after 1 s,
/// then 2 s) until a 2xx.
pub fn post(client: &reqwest::Client, url: &str, what: &'static str, body: serde_json::Value) {
    let (client, url) = (client.clone(), url.to_owned());
    tokio::spawn(
        async move {
            for attempt in 1..=ATTEMPTS {
                let started = std::time::Instant::now();
                let sent = client.post(&url).timeout(TIMEOUT).json(&body).send().await;
                let outcome = match &sent {
                    Ok(r) if r.status().is_success() => "ok",
                    Ok(_) => "failed",
                    Err(e) if e.is_timeout() => "timeout",
                    Err(_) => "failed",
                };
                metrics::histogram!("hotline_webhook_duration_seconds", "outcome" => outcome)
                    .record(started.elapsed().as_secs_f64());
                match sent {
                    Ok(r) if r.status().is_success() => {
                        info!(%what, %url, attempt, "webhook delivered");
                        return;
                    }
                    Ok(r) => {
                        warn!(%what, %url, attempt, status = r.status().as_u16(), "webhook refused")
                    }
                    Err(e) => warn!(%what, %url, attempt, error = %e, "webhook not delivered"),
                }
                if attempt < ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
            }
            warn!(%what, %url, "webhook given up after {ATTEMPTS} tries");
        }
        .in_current_span(),
    );
}
