//! Conversations with agents are recorded as stereo WAV files (caller left,
//! agent right), always or when the agent asks with the record feature
//! code, and the record of the call names the file.

mod common;

use std::time::Duration;

use common::{keys_scenario_with, phone, register, rtp_sink, scenario, Engine};

/// A 16-bit WAV file: (channels, rate, samples interleaved).
fn read_wav(path: &str) -> (u16, u32, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&bytes[0..4], b"RIFF");
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    let len = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 44, "the header's data length");
    let samples = bytes[44..]
        .chunks(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (channels, rate, samples)
}

fn one_cdr(engine: &Engine) -> hotline::store::Cdr {
    assert!(engine.wait_log("call ended", Duration::from_secs(10)));
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let mut cdrs = hotline::store::Store::cdrs(&mut store).unwrap();
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    cdrs.remove(0)
}

const QUEUE_FLOW: &str = "entry: q\nnodes:\n  q: { queue: support }\n";

fn agents(record: &str) -> String {
    format!(
        "queues:\n  support: {{ announce-position: false, record: {record} }}\nagents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}\nregistrar: {{ algorithms: [MD5], keepalive: 0s }}\ncalls: {{ leg-check: 0s }}\n"
    )
}

/// One call from a speaking caller (on the line `talk_ms` after the
/// answer) to agent 1001 of a queue with `record`, whose phone runs
/// `scenario` (echoing); what the caller heard.
fn agent_call(record: &str, scenario: &str, talk_ms: u64) -> (Engine, common::SinkReport) {
    let engine = Engine::with_flow(QUEUE_FLOW, &agents(record));
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone(scenario, agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_millis(talk_ms + 2000));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], talk_ms, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}\n{}", engine.log());
    (engine, report)
}

#[test]
fn a_recorded_queue_keeps_the_caller_left_and_the_agent_right_in_step() {
    let (engine, _) = agent_call("true", "agent-answer.xml", 6000);

    let cdr = one_cdr(&engine);
    assert_eq!(cdr.outcome, "agent");
    let path = cdr
        .recording
        .clone()
        .expect("the record names the recording");
    let (channels, rate, samples) = read_wav(&path);
    assert_eq!((channels, rate), (2, 8000));
    let seconds = samples.len() as f64 / 2.0 / 8000.0;
    let talk = cdr.talk_ms.unwrap() as f64 / 1000.0;
    assert!(
        (seconds - talk).abs() < 1.0,
        "{seconds:.1} s recorded of {talk:.1} s of talk"
    );
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();

    // What the caller said, 20 ms at a time, as the engine decodes it.
    let spoken: Vec<Vec<i16>> = std::fs::read(scenario("load-audio.ulaw"))
        .unwrap()
        .chunks(160)
        .map(|c| {
            c.iter()
                .map(|&b| hotline::media::g711::ulaw_decode(b))
                .collect()
        })
        .collect();
    let is_spoken = |s: &[i16]| spoken.iter().any(|c| c.as_slice() == s);
    // Left is the caller: most 20 ms frames are the caller's audio as sent.
    let frames = left.len() / 160;
    let caller_frames = (0..frames)
        .filter(|&i| is_spoken(&left[i * 160..(i + 1) * 160]))
        .count();
    assert!(
        caller_frames * 10 >= frames * 7,
        "{caller_frames} of {frames} left frames are the caller's"
    );
    // Right is the agent, who echoes the caller: the same audio, a little
    // later (the echo's round trip), never earlier.
    let mut lags = Vec::new();
    for i in (frames / 4..frames * 3 / 4).step_by(25) {
        let f = &left[i * 160..(i + 1) * 160];
        if !is_spoken(f) || f.iter().all(|&s| s.abs() < 200) {
            continue;
        }
        if let Some(lag) =
            (0..=25).find(|&k| right.get((i + k) * 160..(i + k + 1) * 160) == Some(f))
        {
            lags.push(lag);
        }
    }
    assert!(
        lags.len() >= 3,
        "the agent's side does not follow the caller's: {lags:?}"
    );
    assert!(
        lags.iter().all(|l| (1..=10).contains(l)),
        "echo lags in frames: {lags:?}"
    );
}

#[test]
fn an_agent_starts_and_stops_recording_with_the_feature_code_and_the_caller_never_hears_it() {
    let (engine, report) = agent_call("on-demand", "agent-record.xml", 8000);

    // The caller heard exactly one key from the agent: the 5.
    let events: Vec<u8> = common::payloads_of_busiest(&report)
        .into_iter()
        .zip(report.by_source.values().max_by_key(|p| p.len()).unwrap())
        .filter(|(_, (_, raw))| raw.get(1).map(|b| b & 0x7f) == Some(101))
        .map(|(payload, _)| payload[0])
        .collect();
    let mut keys = events.clone();
    keys.dedup();
    assert_eq!(keys, vec![5], "telephone-events the caller got: {events:?}");

    let cdr = one_cdr(&engine);
    let path = cdr
        .recording
        .clone()
        .expect("the record names the recording");
    assert!(!path.contains('\n'), "one recording: {path}");
    let (channels, _, samples) = read_wav(&path);
    assert_eq!(channels, 2);
    let seconds = samples.len() as f64 / 2.0 / 8000.0;
    assert!(
        (2.6..=3.8).contains(&seconds),
        "recorded {seconds:.2} s between the two presses (3.2 s apart)"
    );
}

/// The recording's two channels, and where a pause the record lists lies
/// in it (seconds from the recording's start, which is the bridge).
struct Recorded {
    left: Vec<i16>,
    right: Vec<i16>,
    pauses: Vec<(f64, f64, String)>,
}

fn recorded(cdr: &hotline::store::Cdr) -> Recorded {
    let path = cdr
        .recording
        .clone()
        .expect("the record names the recording");
    let (channels, _, samples) = read_wav(&path);
    assert_eq!(channels, 2);
    let bridged = cdr.bridged_at.expect("bridged");
    let at = |v: &serde_json::Value| {
        let t: jiff::Timestamp = v.as_str().unwrap().parse().unwrap();
        t.duration_since(bridged).as_secs_f64()
    };
    let pauses = cdr
        .recording_pauses
        .as_ref()
        .and_then(|p| p.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                at(&p["from"]),
                at(&p["to"]),
                p["by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    Recorded {
        left: samples.iter().step_by(2).copied().collect(),
        right: samples.iter().skip(1).step_by(2).copied().collect(),
        pauses,
    }
}

impl Recorded {
    /// The loudest sample of either side between `from` and `to` seconds.
    fn peak(&self, from: f64, to: f64) -> i16 {
        let (a, b) = ((from * 8000.0) as usize, (to * 8000.0) as usize);
        let side = |s: &[i16]| {
            s.get(a..b.min(s.len()))
                .unwrap_or_default()
                .iter()
                .map(|x| x.saturating_abs())
                .max()
                .unwrap_or(0)
        };
        side(&self.left).max(side(&self.right))
    }

    /// The recording holds silence over the pause (give or take the 0.2 s
    /// a command takes to reach the media clock), and the conversation
    /// before and after it.
    fn assert_silent_over(&self, from: f64, to: f64) {
        assert!(to - from > 1.5, "the pause ran {from:.2}–{to:.2} s");
        assert_eq!(
            self.peak(from + 0.2, to - 0.2),
            0,
            "sound in the recording while paused ({from:.2}–{to:.2} s)"
        );
        assert!(
            self.peak(from - 1.5, from - 0.2) > 1000,
            "no conversation before the pause"
        );
        assert!(
            self.peak(to + 0.2, to + 1.5) > 1000,
            "no conversation after the pause"
        );
    }
}

#[test]
fn the_agents_pause_code_keeps_card_data_out_of_the_recording_and_the_record_lists_the_pause() {
    let (engine, _) = agent_call("true", "agent-pause.xml", 10000);

    let cdr = one_cdr(&engine);
    let rec = recorded(&cdr);
    assert_eq!(rec.pauses.len(), 1, "{:?}", cdr.recording_pauses);
    let (from, to, by) = &rec.pauses[0];
    assert_eq!(by, "agent:1001");
    assert!(
        (from - 2.2).abs() < 1.0 && (to - from - 3.4).abs() < 0.6,
        "{from} {to}"
    );
    rec.assert_silent_over(*from, *to);
}

#[test]
fn card_digits_keyed_in_a_sensitive_collect_appear_nowhere_and_an_api_pause_silences_the_recording()
{
    const CARD: &str = "4111111111111111";
    const ADMIN: &str = "pci-admin-token";
    let hook = common::Ports::next().spare(0);
    let got = common::webhook_receiver(hook, "");
    let flow = "entry: card\nnodes:\n  card:\n    collect: { prompt: ask/account, into: card, min: 13, max: 19, timeout: 10s, sensitive: true }\n    next: check\n    exhausted: bye\n  check:\n    branch:\n      - if: card == '4111111111111111'\n        then: q\n    else: bye\n  q: { queue: support }\n  bye: { hangup: goodbye }\n";
    let engine = Engine::with_flow(
        flow,
        &format!(
            "http: {{ tokens: [{{ name: test, token: {}, role: read }}, {{ name: ops, token: {ADMIN}, role: admin }}] }}\nqueues:\n  support: {{ announce-position: false, record: true, screen-pop-url: 'http://127.0.0.1:{hook}/pop' }}\nagents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}\nregistrar: {{ algorithms: [MD5], keepalive: 0s }}\ncalls: {{ leg-check: 0s, end-webhook: 'http://127.0.0.1:{hook}/end' }}\n",
            common::TEST_TOKEN
        ),
    );
    let agent_port = common::Ports::next().spare(1);
    register(&engine, "1001", agent_port);
    let messages = engine.dir.join("agent-messages.log");
    let agent = common::traced_phone("agent-answer.xml", agent_port, &messages);

    // The live events, as an operator's listener reads them.
    let http = engine.ports.http();
    let events = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        write!(
            s,
            "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
            common::TEST_TOKEN
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(25);
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while std::time::Instant::now() < until {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            // The call's last event: everything of it has been sent.
            if String::from_utf8_lossy(&text).contains("call.ended") {
                break;
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    std::thread::sleep(Duration::from_millis(300));

    // The caller keys the card number, is queued, and talks to the agent.
    let mut keys = vec![(1500, '4')];
    keys.extend(CARD.chars().skip(1).map(|k| (150, k)));
    keys.push((150, '#'));
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(22));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &keys, 11000, true);
    let pausing = {
        let engine_ports = engine.ports;
        std::thread::spawn(move || {
            let post = |path: &str| {
                use std::io::{Read, Write};
                let mut s =
                    std::net::TcpStream::connect(("127.0.0.1", engine_ports.http())).unwrap();
                write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                text
            };
            // Wait for the agent to answer: the call shows its agent.
            let until = std::time::Instant::now() + Duration::from_secs(15);
            let id = loop {
                assert!(
                    std::time::Instant::now() < until,
                    "the agent never answered"
                );
                let mut s =
                    std::net::TcpStream::connect(("127.0.0.1", engine_ports.http())).unwrap();
                use std::io::{Read, Write};
                write!(s, "GET /api/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n").unwrap();
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                let start = body.find('[').unwrap_or(0);
                let end = body.rfind(']').map_or(body.len(), |e| e + 1);
                let calls: Vec<serde_json::Value> =
                    serde_json::from_str(&body[start..end]).unwrap_or_default();
                if let Some(c) = calls.iter().find(|c| c["agent"].is_string()) {
                    break c["call_id"].as_str().unwrap().to_owned();
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            std::thread::sleep(Duration::from_secs(2));
            let paused = post(&format!("/api/calls/{id}/recording/pause"));
            let again = post(&format!("/api/calls/{id}/recording/pause"));
            std::thread::sleep(Duration::from_secs(3));
            let resumed = post(&format!("/api/calls/{id}/recording/resume"));
            (paused, again, resumed)
        })
    };
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    drop(sink.join());
    let (paused, again, resumed) = pausing.join().unwrap();
    assert!(
        paused.starts_with("HTTP/1.1 200") && paused.contains("\"recording\":\"paused\""),
        "{paused}"
    );
    assert!(
        again.contains("\"recording\":\"paused\""),
        "pausing twice is no error: {again}"
    );
    assert!(resumed.contains("\"recording\":\"recording\""), "{resumed}");
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}\n{}", engine.log());

    // The API's pause is silence in the recording, listed in the record.
    let cdr = one_cdr(&engine);
    assert_eq!(
        cdr.outcome, "agent",
        "the flow saw the real digits and queued the caller"
    );
    let rec = recorded(&cdr);
    assert_eq!(rec.pauses.len(), 1, "{:?}", cdr.recording_pauses);
    assert_eq!(rec.pauses[0].2, "api:ops");
    rec.assert_silent_over(rec.pauses[0].0, rec.pauses[0].1);

    // The digits appear nowhere: the log, the events, the screen pop and
    // end-of-call webhooks, the agent's INVITE, the record. The masked
    // form does.
    let events = events.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let hooks = got.lock().unwrap().clone();
    let log = engine.log();
    let invite = std::fs::read_to_string(&messages).unwrap_or_default();
    let record = serde_json::to_string(&cdr.vars).unwrap();
    for (what, text) in [
        ("the log", log.as_str()),
        ("the events", events.as_str()),
        ("the agent's INVITE", invite.as_str()),
        ("the record", record.as_str()),
    ] {
        assert!(
            !text.contains(CARD) && !text.contains(&CARD[..12]),
            "the card number is in {what}:\n{text}"
        );
    }
    assert!(events.contains("agent.offered"), "{events}");
    assert!(invite.contains("X-Hotline-Var-card: ****1111"), "{invite}");
    assert!(cdr.vars.contains("****1111"), "{}", cdr.vars);
    let paths: Vec<&str> = hooks.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        paths.contains(&"/pop") && paths.contains(&"/end"),
        "{paths:?}"
    );
    for (path, body) in &hooks {
        let text = body.to_string();
        assert!(
            !text.contains(CARD),
            "the card number is in the {path} webhook: {text}"
        );
        assert!(text.contains("****1111"), "{path}: {text}");
    }
    assert!(
        log.contains("digit received (sensitive: not logged)"),
        "{log}"
    );
}
