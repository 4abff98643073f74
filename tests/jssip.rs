//! A third-party browser phone: JsSIP (from npm, bundled at test time) in
//! headless Chromium registers as agent 1001 over `/sip` with digest, and
//! the engine has the agent reachable; stopping it unregisters. It takes
//! a queued call with audio both ways, holds and resumes it (re-INVITEs
//! the engine answers on the same WebRTC connection), and hears the
//! caller's BYE.

mod common;

use std::time::Duration;

use common::chromium::Browser;
use common::ua::TestUa;
use common::{agent_state, api_get, wait_agent_state, Engine};
use serde_json::json;

fn contacts(engine: &Engine) -> u64 {
    let (_, body) = api_get(engine, "/api/agents/1001");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["contacts"].as_u64().unwrap_or(99)
}

#[test]
fn jssip_in_chromium_registers_over_websocket_and_unregisters() {
    let engine = Engine::start(
        "agents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n\
registrar: { keepalive: 0s }\n",
    );
    let ports = common::Ports::next();
    let mut browser = jssip_phone(&engine, &ports);
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

/// JsSIP answering every call, signed in as 1001, in Chromium whose
/// microphone is a 1 kHz tone.
fn jssip_phone(engine: &Engine, ports: &common::Ports) -> Browser {
    let library = std::fs::read_to_string(common::jssip::bundle()).unwrap();
    let mut browser = Browser::open_desktop(engine.ports.http(), ports.spare(40), &engine.dir);
    browser.command(
        "Runtime.evaluate",
        json!({ "expression": format!("{library}\n;true"), "returnByValue": true }),
    );
    browser.eval(&format!(
        "(() => {{
           const socket = new JsSIP.WebSocketInterface('ws://127.0.0.1:{}/sip');
           const ua = window.ua = new JsSIP.UA({{ sockets: [socket], uri: 'sip:1001@127.0.0.1',
             password: '1001pass', register: true, register_expires: 300 }});
           ua.on('registered', () => {{ window.registered = true; }});
           ua.on('registrationFailed', (e) => {{ window.regfailed = String(e.cause); }});
           ua.on('newRTCSession', (e) => {{
             if (e.originator !== 'remote') return;
             const s = window.session = e.session;
             s.on('confirmed', () => {{ window.confirmed = true; }});
             s.on('ended', () => {{ window.ended = true; }});
             s.on('failed', (f) => {{ window.failed = String(f.cause); }});
             s.answer({{ mediaConstraints: {{ audio: true, video: false }} }});
           }});
           ua.start();
           return true; }})()",
        engine.ports.http()
    ));
    browser.dom_when("window.registered === true || !!window.regfailed");
    assert_eq!(browser.eval("window.regfailed || null"), json!(null));
    browser
}

#[test]
fn jssip_takes_a_queued_call_with_audio_both_ways_and_hears_the_callers_bye() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        &format!(
            "queues:\n  support: {{ announce-position: false, wrap-up: 1s }}\n\
agents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}\n\
registrar: {{ keepalive: 0s }}\ncalls: {{ leg-check: 0s }}\nwebrtc: {{ port: {} }}\n",
            common::Ports::next().spare(0)
        ),
    );
    let ports = common::Ports::next();
    let mut browser = jssip_phone(&engine, &ports);
    wait_agent_state(&engine, "1001", "available", Duration::from_secs(5));

    let caller = TestUa::call(engine.sip, ports.spare(2), ports.spare(3), "200", "0");
    browser.dom_when("window.confirmed === true || !!window.failed");
    assert_eq!(browser.eval("window.failed || null"), json!(null));
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(5));
    // The caller hears JsSIP's microphone; JsSIP receives the caller's audio.
    let heard = common::tones::listen(&caller, Duration::from_secs(3));
    let mut caller = {
        let mut c = caller;
        c.send_pcmu(&common::tones::tone(common::tones::CALLER_HZ, 8000, 3));
        c
    };
    common::tones::assert_hears_the_browser(&heard.join().unwrap());
    browser.eval(
        "window.session.connection.getStats().then((s) => { s.forEach((r) => {
           if (r.type === 'inbound-rtp' && r.kind === 'audio') window.inbound = r.packetsReceived; }); }); true",
    );
    browser.dom_when("typeof window.inbound === 'number'");
    let inbound = browser.eval("window.inbound").as_f64().unwrap_or(0.0);
    assert!(inbound >= 100.0, "JsSIP received {inbound} packets");

    // JsSIP holds (a re-INVITE, sendonly): the engine answers it, and the
    // caller hears the queue's music instead of the agent; then resumes.
    browser.eval("window.session.hold(); true");
    browser.dom_when("window.session.isOnHold().local === true");
    std::thread::sleep(Duration::from_millis(500));
    let held = common::tones::listen(&caller, Duration::from_secs(3))
        .join()
        .unwrap();
    assert!(held.len() >= 4000, "the caller heard nothing on hold");
    let at_mic = common::tones::power(&held, common::tones::MIC_HZ);
    assert!(
        at_mic < 1e6,
        "the caller still hears the agent on hold: {at_mic:.0}"
    );
    browser.eval("window.session.unhold(); true");
    browser.dom_when("window.session.isOnHold().local === false");
    std::thread::sleep(Duration::from_millis(300));
    common::tones::assert_hears_the_browser(
        &common::tones::listen(&caller, Duration::from_secs(3))
            .join()
            .unwrap(),
    );
    assert_eq!(browser.eval("window.failed || null"), json!(null));
    assert_eq!(browser.eval("window.ended || null"), json!(null));

    // The caller hangs up: JsSIP's session ends, the agent goes to wrap-up.
    caller.bye();
    browser.dom_when("window.ended === true");
    wait_agent_state(&engine, "1001", "wrap-up", Duration::from_secs(5));
}
