//! Carries out a flow's webhook: an HTTP GET or POST with JSON, bounded by
//! the node's timeout. The answer's JSON body becomes a flow variable.

use crate::flow::node::Method;
use crate::flow::{WebhookOutcome, WebhookRequest};

/// Webhook answers larger than this are refused: a CRM record is small, and
/// a call task must not hold megabytes.
const MAX_BODY: usize = 256 * 1024;

pub async fn call(client: &reqwest::Client, req: &WebhookRequest) -> WebhookOutcome {
    let started = std::time::Instant::now();
    let outcome = match tokio::time::timeout(req.timeout, send(client, req)).await {
        Ok(outcome) => outcome,
        Err(_) => WebhookOutcome::TimedOut,
    };
    let label = match &outcome {
        WebhookOutcome::Ok(_) => "ok",
        WebhookOutcome::Failed(_) => "failed",
        WebhookOutcome::TimedOut => "timeout",
    };
    metrics::histogram!("hotline_webhook_duration_seconds", "outcome" => label)
        .record(started.elapsed().as_secs_f64());
    outcome
}

async fn send(client: &reqwest::Client, req: &WebhookRequest) -> WebhookOutcome {
    let mut builder = match req.method {
        Method::Get => client.get(&req.url),
        Method::Post => client.post(&req.url),
    };
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    if let Some(body) = &req.body {
        builder = builder.json(body);
    }
    let resp = match builder.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return WebhookOutcome::TimedOut,
        Err(e) => return WebhookOutcome::Failed(without_url(&e)),
    };
    let status = resp.status();
    if !status.is_success() {
        return WebhookOutcome::Failed(format!("answered {status}"));
    }
    if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
        return WebhookOutcome::Failed(format!("the answer is larger than {MAX_BODY} bytes"));
    }
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return WebhookOutcome::Failed(without_url(&e)),
    };
    if bytes.len() > MAX_BODY {
        return WebhookOutcome::Failed(format!("the answer is larger than {MAX_BODY} bytes"));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return WebhookOutcome::Ok(serde_json::Value::Null);
    }
    match serde_json::from_slice(&bytes) {
        Ok(v) => WebhookOutcome::Ok(v),
        Err(e) => WebhookOutcome::Failed(format!("the answer is not JSON: {e}")),
    }
}

/// The error and its causes, without the URL: a URL may carry a token.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
