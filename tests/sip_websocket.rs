//! SIP over WebSocket (RFC 7118) on the HTTP listener, against the binary:
//! a browser phone's connection (subprotocol `sip`) registers an agent
//! with digest, one SIP message a frame; a wrong password is refused; when
//! the connection closes the registration goes with it.

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hotline::sip::digest::{self, Algorithm};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::{api_get, wait_agent_state, Engine};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn engine() -> Engine {
    Engine::start(
        "queues: { sales: {}, support: {}, operator: {} }\n\
agents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n\
registrar: { algorithms: [MD5], keepalive: 0s }\n",
    )
}

async fn connect(engine: &Engine) -> Ws {
    let url = format!("ws://127.0.0.1:{}/sip", engine.ports.http());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip")
    );
    ws
}

fn register(cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKws{cseq}\r\n\
Max-Forwards: 70\r\nTo: <sip:1001@127.0.0.1>\r\nFrom: <sip:1001@127.0.0.1>;tag=ws1\r\n\
Call-ID: ws-register-1\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:1001@df7jal23ls0d.invalid;transport=ws>;expires=600\r\nExpires: 600\r\n\
{auth}Content-Length: 0\r\n\r\n"
    )
}

/// The next SIP message the engine sends (one frame), within 5 s.
async fn next(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no answer over the websocket")
            .expect("websocket closed")
            .unwrap();
        if let Message::Text(t) = msg {
            return t.to_string();
        }
    }
}

/// The Authorization header answering `challenge` (a 401) with `password`.
fn authorization(challenge: &str, password: &str) -> String {
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a nonce");
    let ha1 = digest::ha1(Algorithm::Md5, "1001", "hotline", password);
    let uri = "sip:127.0.0.1";
    let response = digest::response(
        Algorithm::Md5,
        &ha1,
        "REGISTER",
        uri,
        nonce,
        "00000001",
        "c0ffee",
    );
    format!(
        "Authorization: Digest username=\"1001\", realm=\"hotline\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
    )
}

fn contacts(engine: &Engine) -> u64 {
    let (_, body) = api_get(engine, "/api/agents/1001");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["contacts"].as_u64().unwrap_or(99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_phone_registers_over_websocket_with_digest_and_unregisters_by_closing() {
    let engine = engine();
    let mut ws = connect(&engine).await;
    ws.send(Message::Text(register(1, "").into()))
        .await
        .unwrap();
    let challenge = next(&mut ws).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    assert!(
        challenge.contains("Via: SIP/2.0/WS df7jal23ls0d.invalid"),
        "{challenge}"
    );

    // A wrong password is refused and registers nothing.
    let wrong = authorization(&challenge, "guess");
    ws.send(Message::Text(register(2, &wrong).into()))
        .await
        .unwrap();
    let refused = next(&mut ws).await;
    assert!(
        refused.starts_with("SIP/2.0 401") || refused.starts_with("SIP/2.0 403"),
        "{refused}"
    );
    assert_eq!(contacts(&engine), 0);

    // A fresh challenge, answered right.
    ws.send(Message::Text(register(3, "").into()))
        .await
        .unwrap();
    let challenge = next(&mut ws).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let good = authorization(&challenge, "1001pass");
    ws.send(Message::Text(register(4, &good).into()))
        .await
        .unwrap();
    let ok = next(&mut ws).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("df7jal23ls0d.invalid"), "{ok}");
    // The binding reaches the ACD a moment after the 200 is sent.
    let until = Instant::now() + Duration::from_secs(3);
    while contacts(&engine) != 1 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(contacts(&engine), 1);
    wait_agent_state(&engine, "1001", "available", Duration::from_secs(3));

    // The page goes: so does the registration.
    ws.close(None).await.unwrap();
    drop(ws);
    let until = Instant::now() + Duration::from_secs(5);
    while contacts(&engine) != 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(contacts(&engine), 0, "{}", engine.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_without_the_sip_subprotocol_or_from_another_origin_is_refused() {
    let engine = engine();
    // Another site's page.
    let url = format!("ws://127.0.0.1:{}/sip", engine.ports.http());
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
    // A WebSocket that does not ask for SIP.
    let req = url.into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
    // Garbage in a frame gets a clear error or nothing, and the engine goes on.
    let mut ws = connect(&engine).await;
    ws.send(Message::Text("this is not SIP\r\n\r\n".into()))
        .await
        .unwrap();
    ws.send(Message::Text(register(1, "").into()))
        .await
        .unwrap();
    let mut got = next(&mut ws).await;
    if got.starts_with("SIP/2.0 400") {
        got = next(&mut ws).await;
    }
    assert!(got.starts_with("SIP/2.0 401"), "{got}");
}
