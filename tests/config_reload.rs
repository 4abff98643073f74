//! Changing the engine config while calls run (`hotline reload`, the API):
//! the call in progress keeps its audio and its agent, a new agent
//! registers and takes the next call, a schedule's new hours apply to the
//! next caller, a trunk's narrowed `allow` refuses new calls from the
//! source it dropped, the removed agent goes only once their call is over,
//! and a config with an error is refused with its line:col, changing nothing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ua::TestUa;
use common::{
    api_get, api_get_as, api_post, assert_heard, keys_scenario, keys_scenario_with,
    payloads_of_busiest, phone, register, rtp_sink, scenario, sipp, wait_agent_state, Engine,
    TEST_TOKEN,
};

const ADMIN: &str = "reload-admin-token";

const FRESH: &str = "fresh-read-token";

/// The engine config past the trunks: `agents`, the schedule's `weekly`,
/// whether the `FRESH` token is one, and what else a version adds.
fn config(flows: &Path, agents: &str, weekly: &str, fresh: bool, more: &str) -> String {
    let fresh = if fresh {
        format!("    - {{ name: fresh, token: {FRESH}, role: read }}\n")
    } else {
        String::new()
    };
    format!(
        "flows-dir: {}
routes: {{ '200': direct, default: main }}
schedules:
  support-hours: {{ time-zone: UTC, weekly: {{ {weekly} }} }}
queues:
  support: {{ announce-position: false, wrap-up: 1s }}
agents:
{agents}registrar: {{ algorithms: [MD5], keepalive: 0s }}
http:
  tokens:
    - {{ name: test, token: {TEST_TOKEN}, role: read }}
    - {{ name: ops, token: {ADMIN}, role: admin }}
{fresh}{more}",
        flows.display()
    )
}

fn trunks(allow: &str) -> String {
    format!("trunks:\n  - name: loopback\n    allow: [{allow}]\n    symmetric-rtp: false\n")
}

/// `hotline reload` against the engine: (succeeded, stdout, stderr).
fn hotline_reload(engine: &Engine) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["reload", "--config"])
        .arg(engine.dir.join("hotline.yaml"))
        .args(["--api", &format!("127.0.0.1:{}", engine.ports.http())])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn agent_status(engine: &Engine, id: &str) -> (u16, String) {
    let (status, body) = api_get(engine, &format!("/api/agents/{id}"));
    let state = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, state)
}

/// One 20 ms PCMU frame of a 400 Hz tone: what the call's caller says
/// (the agent's phone echoes it back).
fn tone() -> Vec<i16> {
    (0..160)
        .map(|i| {
            let t = f64::from(i) / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 400.0 * t).sin()) as i16
        })
        .collect()
}

#[test]
fn a_reload_changes_agents_hours_and_trunks_for_new_calls_while_a_call_keeps_its_audio() {
    let flows = std::env::temp_dir().join(format!("hotline-config-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&flows);
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("main.yaml"),
        "entry: hours\nnodes:\n  hours:\n    hours: support-hours\n    open: q\n    closed: closed\n  q: { queue: support }\n  closed:\n    play: menu/closed\n    next: bye\n  bye:\n    hangup: goodbye\n",
    )
    .unwrap();
    std::fs::write(
        flows.join("direct.yaml"),
        "entry: q\nnodes:\n  q: { queue: support }\n",
    )
    .unwrap();
    let agent_1001 =
        "  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n";
    let agent_1002 =
        "  - { id: '1002', password: 1002pass, queues: [support], auto-login: true }\n";
    // Version 1: closed all week; agent 1001; every loopback address is the trunk.
    let engine = Engine::start_with(
        &trunks("127.0.0.0/8"),
        &config(&flows, agent_1001, "", false, ""),
    );
    let config_path = engine.dir.join("hotline.yaml");

    let phone_1001 = common::Ports::next().spare(0);
    register(&engine, "1001", phone_1001);
    let agent_a = phone("agent-answer.xml", phone_1001, true);
    wait_agent_state(&engine, "1001", "available", Duration::from_secs(3));

    // Before the reload the line is closed.
    let port0 = engine.ports.spare(0);
    let sink0 = rtp_sink(port0, Duration::from_secs(6));
    let sc0 = keys_scenario(&engine, "closed.xml", port0, &[], 4000);
    sipp(&engine, 0, &sc0, &["-s", "100", "-m", "1"]).assert_ok();
    assert_heard(&sink0.join().unwrap(), &["menu/closed"], 20);

    // Call A, from 127.0.0.2, straight to the queue: agent 1001 takes it
    // and echoes what the caller says, for the whole test.
    let mut ua = TestUa::call_from(
        "127.0.0.2",
        engine.sip,
        engine.ports.spare(2),
        engine.ports.spare(3),
        "200",
        "0",
    );
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(5));
    let rx = ua.rtp.try_clone().unwrap();
    let frame: Vec<u8> = tone()
        .iter()
        .map(|&s| hotline::media::g711::ulaw_encode(s))
        .collect();
    let talk = Duration::from_secs(24);
    let started = Instant::now();
    let heard = std::thread::spawn(move || {
        let mut at = Vec::new();
        let mut buf = [0u8; 2048];
        while started.elapsed() < talk + Duration::from_millis(500) {
            if let Ok(n) = rx.recv(&mut buf) {
                if let Some((_, payload)) = hotline::media::rtp::parse(&buf[..n]) {
                    if payload == frame.as_slice() {
                        at.push(started.elapsed());
                    }
                }
            }
        }
        at
    });
    let speaking = std::thread::spawn(move || {
        let samples: Vec<i16> = tone().repeat(talk.as_millis() as usize / 20);
        ua.send_pcmu(&samples);
        ua
    });
    std::thread::sleep(Duration::from_secs(3));

    // Version 2, by `hotline reload`: 1001 removed and 1002 added, the
    // line open all day, only 127.0.0.1 on the trunk, and a listen address
    // that needs a restart.
    std::fs::write(
        &config_path,
        format!(
            "sounds-dir: {}\ndata-dir: {}\n{}{}",
            common::root().join("sounds").display(),
            engine.dir.join("data").display(),
            trunks("127.0.0.1/32"),
            config(
                &flows,
                agent_1002,
                "daily: 00:00-24:00",
                true,
                "sip: { listen: 127.0.0.1:5999 }\n"
            ),
        ),
    )
    .unwrap();
    assert_eq!(
        api_get_as(&engine, "/api/agents", FRESH).0,
        401,
        "a token not yet in the config"
    );
    let reload_at = started.elapsed();
    let (ok, out, err) = hotline_reload(&engine);
    assert!(ok, "{out}{err}\n{}", engine.log());
    assert!(out.contains("reloaded: version 2"), "{out}");
    assert!(
        out.contains("sip.listen: changed in the file; applies at the next restart"),
        "{out}"
    );

    // The new token opens the API at once.
    assert_eq!(api_get_as(&engine, "/api/agents", FRESH).0, 200);

    // The removed agent stays on their call; the new one is known.
    assert_eq!(agent_status(&engine, "1001"), (200, "on-call".to_owned()));
    assert_eq!(
        agent_status(&engine, "1002"),
        (200, "logged-out".to_owned())
    );

    // 127.0.0.2 is no longer a trunk's: its new call is refused.
    let refused = common::raw::peer_at("127.0.0.2", engine.ports.spare(4));
    refused
        .send_to(
            common::raw::invite(engine.ports.spare(4), "after-reload", "").as_bytes(),
            engine.sip,
        )
        .unwrap();
    let answers = common::raw::collect(&refused, Duration::from_secs(1));
    assert!(
        !common::raw::responses(&answers, 403).is_empty()
            && common::raw::responses(&answers, 200).is_empty(),
        "a new call from a source the trunk dropped is refused:\n{}",
        engine.log()
    );

    // The new agent registers with the new secret and takes the next call,
    // which the new hours let through.
    let phone_1002 = common::Ports::next().spare(0);
    register(&engine, "1002", phone_1002);
    let agent_b = phone("agent-answer.xml", phone_1002, true);
    wait_agent_state(&engine, "1002", "available", Duration::from_secs(3));
    let port_b = engine.ports.spare(1);
    let sink_b = rtp_sink(port_b, Duration::from_secs(10));
    let sc_b = keys_scenario_with(&engine, "open.xml", port_b, &[], 6000, true);
    sipp(&engine, 1, &sc_b, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent_b);
    assert!(ok, "agent 1002 took no call:\n{out}\n{}", engine.log());
    let spoken = std::fs::read(scenario("load-audio.ulaw")).unwrap();
    let frames: std::collections::HashSet<&[u8]> = spoken.chunks(160).collect();
    let echoed = payloads_of_busiest(&sink_b.join().unwrap())
        .iter()
        .filter(|p| frames.contains(p.as_slice()))
        .count();
    assert!(echoed >= 100, "call B heard {echoed} frames of its agent");

    // Call A kept its audio through the reload, to its end.
    let mut ua = speaking.join().unwrap();
    let echoes = heard.join().unwrap();
    ua.bye();
    let (ok, out) = common::finish(agent_a);
    assert!(ok, "agent 1001's call did not end well:\n{out}");
    let first = *echoes.first().expect("call A's caller heard its agent");
    let last = *echoes.last().unwrap();
    assert!(
        first < reload_at && last > talk - Duration::from_secs(2),
        "call A's audio ran from {first:?} to {last:?}; the reload was at {reload_at:?}"
    );
    let gap = echoes
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        gap < Duration::from_millis(500),
        "call A's audio stopped for {gap:?} (the reload was at {reload_at:?})"
    );
    let expected = (last - first).as_millis() / 20;
    assert!(
        echoes.len() as u128 >= expected * 9 / 10,
        "call A heard {} of about {expected} frames",
        echoes.len()
    );

    // Its call over, the removed agent is logged out and gone.
    let until = Instant::now() + Duration::from_secs(5);
    while agent_status(&engine, "1001").0 != 404 {
        assert!(Instant::now() < until, "agent 1001 is still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = common::cdrs(&engine);
    let agents: Vec<&str> = records.iter().filter_map(|r| r["agent"].as_str()).collect();
    assert!(
        agents.contains(&"1001") && agents.contains(&"1002"),
        "{records:?}"
    );

    // Version 3 takes the fresh token away: a live-event stream opened
    // with it ends, and it opens nothing more.
    let http = engine.ports.http();
    let stream = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        write!(s, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {FRESH}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut text = Vec::new();
        let mut buf = [0u8; 1024];
        // Until the engine ends the stream (or 10 s without a byte).
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                return (String::from_utf8_lossy(&text).into_owned(), true);
            }
            text.extend_from_slice(&buf[..n]);
        }
        (String::from_utf8_lossy(&text).into_owned(), false)
    });
    std::thread::sleep(Duration::from_millis(500));
    let without = std::fs::read_to_string(&config_path).unwrap().replace(
        &format!("    - {{ name: fresh, token: {FRESH}, role: read }}\n"),
        "",
    );
    std::fs::write(&config_path, &without).unwrap();
    let (status, body) = api_post(&engine, "/api/config/reload", ADMIN, "");
    assert_eq!(status, 200, "{body}");
    let reloaded = Instant::now();
    let (opened, ended) = stream.join().unwrap();
    assert!(
        reloaded.elapsed() < Duration::from_secs(3),
        "the stream ended {:?} after the reload",
        reloaded.elapsed()
    );
    assert!(opened.starts_with("HTTP/1.1 200"), "{opened}");
    assert!(ended, "the stream of a removed token goes on:\n{opened}");
    assert_eq!(api_get_as(&engine, "/api/agents", FRESH).0, 401);

    // Version 4 has an error: refused with its line and column, from the
    // API and from `hotline reload`, and version 3 keeps running.
    let good = std::fs::read_to_string(&config_path).unwrap();
    let bad = good.replace("announce-position: false", "announce-positon: false");
    let line = bad
        .lines()
        .position(|l| l.contains("announce-positon"))
        .unwrap()
        + 1;
    std::fs::write(&config_path, &bad).unwrap();
    let (status, body) = api_post(&engine, "/api/config/reload", ADMIN, "");
    assert_eq!(status, 422, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["running"], 3, "{body}");
    let diagnostics = v["diagnostics"].to_string();
    assert!(
        diagnostics.contains(&format!("hotline.yaml:{line}:"))
            && diagnostics.contains("announce-position"),
        "the error names its line and the setting meant: {body}"
    );
    let (ok, out, err) = hotline_reload(&engine);
    assert!(!ok, "{out}");
    assert!(err.contains(&format!("hotline.yaml:{line}:")), "{err}");
    let (status, body) = api_post(&engine, "/api/config/reload", TEST_TOKEN, "");
    assert_eq!(status, 403, "a read token may not reload: {body}");
    assert_eq!(
        agent_status(&engine, "1002").0,
        200,
        "agent 1002 is still there"
    );
    let (_, flows_now) = api_get(&engine, "/api/flows");
    assert!(flows_now.contains("\"version\":3"), "{flows_now}");
    let _ = std::fs::remove_dir_all(&flows);
}
