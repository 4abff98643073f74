//! The agent desktop's HTTP side for tests: sign in (the session cookie),
//! requests with it, and its WebSocket.

use std::time::Duration;

use super::Engine;

/// One request with an optional cookie: (status, Set-Cookie value, body).
pub fn request(
    engine: &Engine,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String) {
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let (status, head, body) = super::raw_http(engine, method, path, &cookie, body);
    let set_cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .map(str::to_owned);
    (status, set_cookie, body)
}

/// Signs `agent` in: (status, the `name=value` to send back as Cookie,
/// the whole Set-Cookie header).
pub fn login(
    engine: &Engine,
    agent: &str,
    password: &str,
) -> (u16, Option<String>, Option<String>) {
    let body = serde_json::json!({ "agent": agent, "password": password }).to_string();
    let (status, set, _) = request(engine, "POST", "/agent/login", None, &body);
    let pair = set
        .as_deref()
        .and_then(|s| s.split(';').next())
        .map(str::to_owned);
    (status, pair, set)
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the desktop's WebSocket with `cookie`; `Err` with the HTTP
/// status when refused.
pub async fn connect(engine: &Engine, cookie: &str) -> Result<Socket, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://127.0.0.1:{}/agent/ws", engine.ports.http());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

/// The next JSON message of `type` (others skipped), within `timeout`.
pub async fn next_of(ws: &mut Socket, kind: &str, timeout: Duration) -> Option<serde_json::Value> {
    use futures_util::StreamExt;
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(until, ws.next())
            .await
            .ok()??
            .ok()?;
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).ok()?;
            if v["type"] == kind {
                return Some(v);
            }
        }
    }
}

/// Sends one JSON message.
pub async fn send(ws: &mut Socket, msg: serde_json::Value) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        msg.to_string().into(),
    ))
    .await
    .unwrap();
}
