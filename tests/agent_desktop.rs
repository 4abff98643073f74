//! The agent desktop in headless Chromium: the agent signs in on the page,
//! goes available, a caller queues, the page rings with the screen pop,
//! the test answers through the DevTools protocol, and audio flows both
//! ways through the engine: the caller hears the browser's microphone (a
//! tone file) and the page's AnalyserNode finds the caller's tone. The
//! agent holds, hangs up with the keyboard shortcuts and gives a
//! disposition at wrap-up, then transfers a second caller to a queue.
//! Through TURN only, too; and the tab closed mid-call. Screenshots of ringing, talking and wrap-up go
//! to target/test-output/.

mod common;

use std::time::{Duration, Instant};

use common::chromium::Browser;
use common::tones::{assert_hears_the_browser, listen, power, tone, CALLER_HZ, MIC_HZ};
use common::ua::TestUa;
use common::{wait_agent_state, Engine};
use serde_json::{json, Value};

fn screenshot(browser: &mut Browser, name: &str) {
    let dir = common::root().join("target/test-output");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), browser.screenshot()).unwrap();
}

fn key(browser: &mut Browser, k: &str) {
    for kind in ["keyDown", "keyUp"] {
        browser.command(
            "Input.dispatchKeyEvent",
            json!({ "type": kind, "key": k, "text": if kind == "keyDown" { k } else { "" } }),
        );
    }
}

/// An engine with agent 1001 in `support` and `webrtc` (YAML) as given,
/// and Chromium signed in as 1001 at its desktop, available.
fn desk(ports: &common::Ports, webrtc: &str) -> (Engine, Browser) {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        &format!(
            "queues:\n  support: {{ announce-position: false, wrap-up: 3s, crm-url: 'https://crm.example/find?phone={{caller}}', \
dispositions: [{{ code: '1', label: Resolved, first-contact-resolution: true }}, {{ code: '2', label: Call back }}] }}\n  \
sales: {{ announce-position: false }}\n\
agents:\n  - {{ id: '1001', name: Ada, password: 1001pass, queues: [support] }}\n\
webrtc: {webrtc}\n"
        ),
    );
    let mut browser = Browser::open_desktop(engine.ports.http(), ports.spare(40), &engine.dir);
    browser.sign_in_available("1001", "1001pass");
    wait_agent_state(&engine, "1001", "available", Duration::from_secs(5));
    (engine, browser)
}

#[test]
fn an_agent_answers_in_chromium_and_hears_and_is_heard() {
    let ports = common::Ports::next();
    let (engine, mut browser) = desk(&ports, &format!("{{ port: {} }}", ports.spare(0)));

    // A caller queues: the page rings with who, which queue, how long.
    let caller = TestUa::call(engine.sip, ports.spare(2), ports.spare(3), "200", "0 101");
    let dom = browser.dom_when("!document.getElementById('ringing').hidden");
    assert!(dom.contains("support"), "no queue in the pop");
    screenshot(&mut browser, "agent-desktop-ringing.png");
    // Answered through DevTools, with the page's own button.
    browser.eval("document.getElementById('answer').click(); true");
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(5));

    let caller = talk(&mut browser, caller, "agent-desktop-talking.png");

    let crm = browser.eval("document.getElementById('crm').href");
    assert_eq!(crm, json!("https://crm.example/find?phone=ua"));

    // `O` holds: the caller hears the queue's music, not the agent.
    key(&mut browser, "o");
    std::thread::sleep(Duration::from_millis(300));
    let held = listen(&caller, Duration::from_millis(2800)).join().unwrap();
    assert!(held.len() >= 4000, "the caller heard nothing on hold");
    assert!(
        power(&held, MIC_HZ) < 1e6,
        "the caller still hears the agent on hold: {:.0} at 1 kHz",
        power(&held, MIC_HZ)
    );
    key(&mut browser, "o");
    assert_hears_the_browser(&listen(&caller, Duration::from_secs(3)).join().unwrap());

    keypad(&mut browser, &caller);

    // The engine reports on the browser leg as on a phone's (RTCP through
    // its SRTCP): the page reads our receiver reports as the round trip.
    browser.eval(
        "window.ourReport = null; setInterval(() => window.hotline.pc && window.hotline.pc.getStats().then((s) => s.forEach((r) => {
           if (r.type === 'remote-inbound-rtp' && r.kind === 'audio' && r.roundTripTime !== undefined)
             window.ourReport = { rtt: r.roundTripTime, lost: r.packetsLost }; })), 500); true",
    );
    browser.dom_when("window.ourReport !== null");
    let ours = browser.eval("window.ourReport");
    assert!(ours["rtt"].as_f64() < Some(0.05), "{ours}");
    assert_eq!(ours["lost"].as_i64(), Some(0), "{ours}");

    // `H` hangs up: the caller gets a BYE, the agent goes to wrap-up, and
    // the page shows the countdown and the queue's dispositions.
    key(&mut browser, "h");
    assert!(
        caller.expect_bye(Duration::from_secs(5)),
        "no BYE to the caller"
    );
    wait_agent_state(&engine, "1001", "wrap-up", Duration::from_secs(5));
    browser.dom_when(
        "!document.getElementById('wrapup').hidden && document.querySelectorAll('#dispositions button').length === 2",
    );
    screenshot(&mut browser, "agent-desktop-wrap-up.png");
    browser.eval("document.querySelector('#dispositions button[data-code=\"1\"]').click(); true");
    browser.dom_when("document.getElementById('disposed').textContent.includes('Resolved')");
    let record = common::cdrs(&engine).into_iter().next().expect("no record");
    assert_eq!(record["disposition"], "1", "{record}");
    assert_eq!(record["agent"], "1001", "{record}");
    assert!(record["hold_ms"].as_i64().unwrap_or(0) >= 2500, "{record}");
    // The browser leg's quality is measured like a phone's: what the
    // engine received from the page, and a MOS from it.
    let agent_leg = record["quality"]
        .as_array()
        .and_then(|legs| legs.iter().find(|l| l["leg"] == "agent"))
        .unwrap_or_else(|| panic!("no agent leg in the record: {record}"));
    assert!(agent_leg["received"].as_u64() > Some(100), "{record}");
    assert!(agent_leg["mos"].as_f64() > Some(4.0), "{record}");
    // Jitter as the network has it (each datagram stamped on arrival; by
    // the clock's 20 ms tick it read about 9 ms here).
    assert!(agent_leg["jitter_ms"].as_f64() < Some(3.0), "{record}");
    // And the browser's reports are read back: the page lost nothing of
    // ours, and the round trip is loopback's.
    assert!(agent_leg["reports"].as_u64() > Some(0), "{record}");
    assert_eq!(agent_leg["remote_loss"].as_f64(), Some(0.0), "{record}");
    assert!(agent_leg["rtt_ms"].as_f64() < Some(50.0), "{record}");
    // The wrap-up ends by its time; the page is idle again, and its
    // figures count the call.
    wait_agent_state(&engine, "1001", "available", Duration::from_secs(6));
    browser.dom_when("!document.getElementById('idle').hidden");
    browser.dom_when("document.getElementById('figures').textContent.includes('Calls1')");

    // A second caller; the agent transfers them to the sales queue.
    let second = TestUa::call(engine.sip, ports.spare(4), ports.spare(5), "200", "0");
    browser.dom_when("!document.getElementById('ringing').hidden");
    key(&mut browser, "a");
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(5));
    browser.eval(
        "document.getElementById('transfer-target').value = 'sales';
         document.getElementById('transfer').click(); true",
    );
    wait_agent_state(&engine, "1001", "wrap-up", Duration::from_secs(5));
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = common::api_get(&engine, "/api/queues/sales");
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        if v["waiting"].as_array().is_some_and(|w| w.len() == 1) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the caller is not waiting in sales: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A phone-sized screen: one column, still every control.
    browser.command(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
    );
    let width = browser.eval("document.getElementById('phone').getBoundingClientRect().width");
    assert!(
        width.as_f64().unwrap_or(0.0) > 300.0,
        "the phone card is {width} px wide on a phone"
    );
    screenshot(&mut browser, "agent-desktop-phone.png");
    drop(second);
}

/// The caller talks (400 Hz) and listens for three seconds: the page's
/// analyser finds the caller's tone, and the caller hears the browser's.
fn talk(browser: &mut Browser, mut caller: TestUa, shot: &str) -> TestUa {
    let heard = listen(&caller, Duration::from_secs(3));
    let speaking = std::thread::spawn(move || {
        caller.send_pcmu(&tone(CALLER_HZ, 8000, 3));
        caller
    });
    std::thread::sleep(Duration::from_millis(2000));
    // The page's analyser: the loudest bin is the caller's tone.
    let peak = browser.eval(
        "(() => { const a = window.hotline.analyser; if (!a) return -1;
           const d = new Float32Array(a.frequencyBinCount); a.getFloatFrequencyData(d);
           let best = 0; for (let i = 1; i < d.length; i++) if (d[i] > d[best]) best = i;
           return best * a.context.sampleRate / a.fftSize; })()",
    );
    screenshot(browser, shot);
    let caller = speaking.join().unwrap();
    let peak = peak.as_f64().unwrap_or(-1.0);
    assert!(
        (peak - CALLER_HZ).abs() < 60.0,
        "the page's loudest frequency is {peak} Hz, not the caller's {CALLER_HZ} Hz"
    );
    assert_hears_the_browser(&heard.join().unwrap());
    caller
}

/// A key pressed on the page's keypad reaches the caller as an RFC 4733
/// event, and nothing else does.
fn keypad(browser: &mut Browser, caller: &TestUa) {
    let rx = caller.rtp.try_clone().unwrap();
    let events = std::thread::spawn(move || {
        let mut keys = Vec::new();
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(n) = rx.recv(&mut buf) {
                if let Some((info, payload)) = hotline::media::rtp::parse(&buf[..n]) {
                    if info.payload_type == 101 && !payload.is_empty() {
                        keys.push(payload[0]);
                    }
                }
            }
        }
        keys
    });
    std::thread::sleep(Duration::from_millis(300));
    browser.eval(
        "[...document.querySelectorAll('#keypad button')].find((b) => b.textContent === '5').click(); true",
    );
    let keys = events.join().unwrap();
    assert!(
        keys.contains(&5),
        "the caller got no key 5 from the page: {keys:?}"
    );
    assert!(keys.iter().all(|&k| k == 5), "{keys:?}");
}

#[test]
fn with_opus_the_page_talks_opus_and_the_caller_still_hears_and_is_heard() {
    let ports = common::Ports::next();
    let webrtc = format!("{{ port: {}, codec: opus }}", ports.spare(0));
    let (engine, mut browser) = desk(&ports, &webrtc);
    let caller = TestUa::call(engine.sip, ports.spare(2), ports.spare(3), "200", "0 101");
    browser.dom_when("!document.getElementById('ringing').hidden");
    browser.eval("document.getElementById('answer').click(); true");
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(5));
    // The page answered with Opus at 48 kHz, and nothing else for audio.
    // Answering can be clicked while the page still opens its microphone,
    // before its SDP answer exists: wait for that answer.
    browser.dom_when("!!(window.hotline.pc && window.hotline.pc.currentLocalDescription)");
    let answer = browser.eval("window.hotline.pc.currentLocalDescription.sdp");
    let answer = answer.as_str().unwrap_or_default().to_owned();
    let m_line = answer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_default();
    assert!(m_line.ends_with(" 111 101"), "{answer}");
    assert!(answer.contains("a=rtpmap:111 opus/48000/2"), "{answer}");
    // The caller (PCMU) and the page (Opus) hear each other through the
    // engine's transcoding, and a keypad key still reaches the caller.
    let caller = talk(&mut browser, caller, "agent-desktop-opus.png");
    keypad(&mut browser, &caller);
    // The page received Opus: its inbound audio's codec says so.
    browser.eval(
        "window.hotline.pc.getStats().then((s) => { s.forEach((r) => {
           if (r.type === 'inbound-rtp' && r.kind === 'audio') window.inCodec = s.get(r.codecId).mimeType; }); }); true",
    );
    browser.dom_when("typeof window.inCodec === 'string'");
    assert_eq!(browser.eval("window.inCodec"), json!("audio/opus"));
    drop(caller);
}

/// coturn on loopback with one long-term user; stopped when dropped.
struct Turn(std::process::Child);

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_agent_behind_a_strict_firewall_connects_through_turn_only() {
    through_turn_only(None);
}

/// TURN with a secret shared with coturn (`use-auth-secret`): the page
/// gets credentials of its own agent that coturn accepts, never the secret.
#[test]
fn a_page_gets_turn_credentials_of_its_own_made_from_a_shared_secret() {
    through_turn_only(Some("hotline-turn-secret-0123456789"));
}

/// An agent whose page may use only the TURN relay (coturn on loopback,
/// with a fixed user or a shared `secret`) takes a call and is heard.
fn through_turn_only(secret: Option<&str>) {
    common::require("turnserver", "coturn");
    let ports = common::Ports::next();
    let turn_port = ports.spare(10);
    let auth = match secret {
        None => vec!["--user=agent:turnpass".to_owned()],
        Some(s) => vec![
            "--use-auth-secret".to_owned(),
            format!("--static-auth-secret={s}"),
        ],
    };
    let _turn = Turn(
        std::process::Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                "--lt-cred-mech",
                "--realm=hotline",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
                "--simple-log",
                "--log-file=stdout",
            ])
            .args(&auth)
            .arg(format!("--listening-port={turn_port}"))
            .arg(format!("--min-port={}", ports.spare(20)))
            .arg(format!("--max-port={}", ports.spare(30)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start turnserver"),
    );
    let credentials = match secret {
        None => "username: agent, credential: turnpass".to_owned(),
        Some(s) => format!("secret: {s}"),
    };
    let webrtc = format!(
        "{{ port: {}, ice-transport-policy: relay, ice-servers: [{{ urls: ['turn:127.0.0.1:{turn_port}?transport=udp'], {credentials} }}] }}",
        ports.spare(0)
    );
    let (engine, mut browser) = desk(&ports, &webrtc);
    if let Some(s) = secret {
        // What the page was told: `EXPIRY:AGENT` and a credential, no secret.
        let told = browser.eval("JSON.stringify(window.hotline.iceServers)");
        let told = told.as_str().unwrap_or_default().to_owned();
        assert!(!told.contains(s), "the page got the secret: {told}");
        let servers: Vec<serde_json::Value> = serde_json::from_str(&told).unwrap();
        let username = servers[0]["username"].as_str().unwrap_or_default();
        let (expiry, agent) = username.split_once(':').unwrap_or_default();
        assert_eq!(agent, "1001", "{told}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expiry: u64 = expiry.parse().unwrap_or_default();
        assert!(expiry > now + 3600, "{told}");
        assert!(servers[0]["credential"]
            .as_str()
            .is_some_and(|c| !c.is_empty()));
    }
    let caller = TestUa::call(engine.sip, ports.spare(2), ports.spare(3), "200", "0");
    browser.dom_when("!document.getElementById('ringing').hidden");
    browser.eval("document.getElementById('answer').click(); true");
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(10));
    let heard = listen(&caller, Duration::from_secs(3));
    assert_hears_the_browser(&heard.join().unwrap());
    // The page's chosen path is its relayed candidate.
    browser.eval(
        "window.hotline.pc.getStats().then((s) => { let pair; s.forEach((r) => {
           if (r.type === 'transport') pair = s.get(r.selectedCandidatePairId); });
           window.pathType = pair ? s.get(pair.localCandidateId).candidateType : 'none'; }); true",
    );
    browser.dom_when("typeof window.pathType === 'string'");
    assert_eq!(browser.eval("window.pathType"), json!("relay"));
    drop(caller);
}

#[test]
fn closing_the_tab_mid_call_pauses_the_agent_and_puts_the_caller_back_in_the_queue() {
    let ports = common::Ports::next();
    let webrtc = format!("{{ port: {}, consent-timeout: 4s }}", ports.spare(0));
    let (engine, mut browser) = desk(&ports, &webrtc);
    let caller = TestUa::call(engine.sip, ports.spare(2), ports.spare(3), "200", "0");
    browser.dom_when("!document.getElementById('ringing').hidden");
    browser.eval("document.getElementById('answer').click(); true");
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(5));
    assert_hears_the_browser(&listen(&caller, Duration::from_secs(3)).join().unwrap());

    // The tab (the whole browser) goes: its socket and its peer connection.
    drop(browser);
    let closed = Instant::now();
    let until = closed + Duration::from_secs(10);
    while common::agent_state(&engine, "1001").0 != "paused" && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        common::agent_state(&engine, "1001"),
        ("paused".into(), Some("connection-lost".into()))
    );
    assert!(
        closed.elapsed() <= Duration::from_secs(6),
        "freed after {:?} (consent timeout 4 s)",
        closed.elapsed()
    );
    let (_, body) = common::api_get(&engine, "/api/queues/support");
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["waiting"].as_array().map(Vec::len), Some(1), "{body}");
    drop(caller);
}
