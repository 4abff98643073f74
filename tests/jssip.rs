//! A third-party browser phone: JsSIP (from npm, bundled at test time) in
//! headless Chromium registers as agent 1001 over `/sip` with digest, and
//! the engine has the agent reachable; stopping it unregisters.

mod common;

use std::time::Duration;

use common::chromium::Browser;
use common::{agent_state, api_get, Engine};
use serde_json::json;

fn contacts(engine: &Engine) -> u64 {
    let (_, body) = api_get(engine, "/api/agents/1001");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["contacts"].as_u64().unwrap_or(99)
}

#[test]
fn jssip_in_chromium_registers_over_websocket_and_unregisters() {
    let library = std::fs::read_to_string(common::jssip::bundle()).unwrap();
    let engine = Engine::start(
        "agents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n\
registrar: { keepalive: 0s }\n",
    );
    let ports = common::Ports::next();
    // Any page of the engine's own origin will do: its WebSocket's Origin
    // is then the engine's.
    let url = format!("http://127.0.0.1:{}/agent", engine.ports.http());
    let mut browser = Browser::open(&url, ports.spare(40), "/agent", &[]);
    browser.dom_when(
        "document.readyState === 'complete' && !!document.getElementById('signin-button')",
    );
    let loaded = browser.command(
        "Runtime.evaluate",
        json!({ "expression": format!("{library}\n;typeof JsSIP.UA"), "returnByValue": true }),
    );
    assert_eq!(loaded["result"]["value"], "function", "{loaded}");
    browser.eval(&format!(
        "(() => {{
           const socket = new JsSIP.WebSocketInterface('ws://127.0.0.1:{}/sip');
           const ua = window.ua = new JsSIP.UA({{ sockets: [socket], uri: 'sip:1001@127.0.0.1',
             password: '1001pass', register: true, register_expires: 300 }});
           ua.on('registered', () => {{ window.registered = true; }});
           ua.on('unregistered', () => {{ window.unregistered = true; }});
           ua.on('registrationFailed', (e) => {{ window.failed = String(e.cause); }});
           ua.start();
           return true; }})()",
        engine.ports.http()
    ));
    browser.dom_when("window.registered === true || !!window.failed");
    assert_eq!(browser.eval("window.failed || null"), json!(null));
    assert_eq!(contacts(&engine), 1);
    assert_eq!(agent_state(&engine, "1001").0, "available");

    // Stopped: JsSIP unregisters (Expires: 0) and closes its socket.
    browser.eval("window.ua.stop(); true");
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while contacts(&engine) != 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(contacts(&engine), 0, "{}", engine.log());
}
