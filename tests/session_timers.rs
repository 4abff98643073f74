//! Session timers (RFC 4028) and UPDATE (RFC 3311) against the running
//! binary: a SIPp carrier that refreshes its call by UPDATE keeps it past
//! three minutes; one that stops refreshing is hung up at 60 s (90 s less
//! its margin) and the record says why; an agent's leg and a caller that
//! leaves the refreshing to us are refreshed at half the interval.
//!
//! These calls last minutes by nature (RFC 4028's least interval is 90 s).
//! They are mostly idle, so `scripts/test.sh` runs this binary beside the
//! rest of the suite instead of after it (it is `test = false` in
//! `Cargo.toml`: run it with `cargo test --test session_timers`).

mod common;

use std::time::{Duration, Instant};

use common::raw::{collect, invite, peer, requests, responses};
use common::{register, scenario, Engine};
use hotline::sip::message::{Message, Request};

/// This binary runs beside the others: its ports are from 28000 on.
fn own_ports() {
    common::Ports::use_region(28000);
}

/// Seconds between a record's answer and its end.
fn answered_for(record: &serde_json::Value) -> f64 {
    let at = |k: &str| -> jiff::Timestamp {
        record[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} in {record}"))
            .parse()
            .unwrap()
    };
    at("ended_at")
        .duration_since(at("answered_at"))
        .as_secs_f64()
}

/// SIPp streams `load-audio.ulaw` from the directory it runs in.
fn with_audio(engine: &Engine) {
    std::fs::copy(
        scenario("load-audio.ulaw"),
        engine.dir.join("load-audio.ulaw"),
    )
    .unwrap();
}

#[test]
fn a_carrier_that_refreshes_by_update_keeps_its_call_past_three_minutes() {
    own_ports();
    let engine = Engine::start("");
    with_audio(&engine);
    let sc = scenario("caller-session-timer.xml");
    let run = common::sipp(
        &engine,
        0,
        &sc,
        &["-s", "echo", "-m", "1", "-timeout", "300s"],
    );
    run.assert_ok();
    let records = common::cdrs(&engine);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["ended_by"], "caller", "{:?}", records[0]);
    let lasted = answered_for(&records[0]);
    assert!(lasted > 195.0, "the call lasted {lasted} s");
    assert!(
        !common::metrics(&engine).contains("hotline_sip_sessions_expired_total"),
        "no session expired"
    );
}

#[test]
fn a_carrier_that_stops_refreshing_is_hung_up_at_sixty_seconds() {
    own_ports();
    let engine = Engine::start("");
    with_audio(&engine);
    let sc = scenario("caller-session-expires.xml");
    // The scenario fails on a BYE before 50 s or none by 80 s.
    let run = common::sipp(
        &engine,
        0,
        &sc,
        &["-s", "echo", "-m", "1", "-timeout", "120s"],
    );
    run.assert_ok();
    let records = common::cdrs(&engine);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["ended_by"], "session-expired",
        "{:?}",
        records[0]
    );
    let lasted = answered_for(&records[0]);
    assert!((58.0..64.0).contains(&lasted), "ended after {lasted} s");
    assert!(
        common::metrics(&engine).contains("hotline_sip_sessions_expired_total 1"),
        "{}",
        common::metrics(&engine)
    );
}

#[test]
fn an_agent_leg_granting_ninety_seconds_is_refreshed_by_update_at_half() {
    own_ports();
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "agents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\n",
    );
    let port = common::Ports::next().spare(0);
    register(&engine, "1001", port);
    let agent = common::phone("agent-session-timer.xml", port, true);
    std::thread::sleep(Duration::from_millis(300));
    // The caller stays 55 s after the answer: past the refresh at 45 s.
    let sink_port = engine.ports.spare(0);
    let sc = common::keys_scenario_with(&engine, "caller.xml", sink_port, &[], 55_000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the agent's phone saw no refresh by UPDATE:\n{out}\n{}",
        engine.log()
    );
    let records = common::cdrs(&engine);
    assert_eq!(records[0]["agent"], "1001", "{records:?}");
    assert_eq!(records[0]["ended_by"], "caller", "{records:?}");
}

/// The `200` and `ACK` of a raw call: (the 200's To, our CSeq so far).
fn answered_call(
    s: &std::net::UdpSocket,
    engine: &Engine,
    port: u16,
    id: &str,
    extra: &str,
) -> String {
    s.send_to(invite(port, id, extra).as_bytes(), engine.sip)
        .unwrap();
    let got = collect(s, Duration::from_millis(600));
    let ok = responses(&got, 200)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no 200 to {id}: {got:?}"))
        .1;
    s.send_to(common::raw::ack_for(&ok, port, id).as_bytes(), engine.sip)
        .unwrap();
    ok.headers.get("To").unwrap().to_owned()
}

fn update(port: u16, id: &str, to: &str, cseq: u32, expires: &str) -> String {
    format!(
        "UPDATE sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKup{cseq}{id}\r\n\
From: <sip:t@127.0.0.1>;tag=f{id}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} UPDATE\r\n\
Contact: <sip:t@127.0.0.1:{port}>\r\nSupported: timer\r\nSession-Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn too_short_an_interval_gets_422_with_our_min_se_and_update_refreshes() {
    own_ports();
    let engine = Engine::start("calls: { media-timeout: 0s, session-timer: { min-se: 120s } }\n");
    let port = engine.ports.spare(0);
    let s = peer(port);
    // An INVITE asking for 90 s, below our 120: 422 with Min-SE 120.
    let short = "Supported: timer\r\nSession-Expires: 90\r\n";
    s.send_to(invite(port, "st-short", short).as_bytes(), engine.sip)
        .unwrap();
    let got = collect(&s, Duration::from_millis(400));
    let refused = responses(&got, 422);
    assert_eq!(refused.len(), 1, "{got:?}");
    assert_eq!(refused[0].1.headers.get("Min-SE"), Some("120"));
    assert!(responses(&got, 200).is_empty());

    // Asking again with 120 s is answered, the caller as refresher.
    let asked = "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n";
    let to = answered_call(&s, &engine, port, "st-ok", asked);
    // An UPDATE without SDP refreshes it: 200 with the interval, at once.
    s.send_to(
        update(port, "st-ok", &to, 2, "150;refresher=uac").as_bytes(),
        engine.sip,
    )
    .unwrap();
    let got = collect(&s, Duration::from_millis(400));
    let ok = responses(&got, 200);
    assert_eq!(ok.len(), 1, "{got:?}");
    let h = &ok[0].1.headers;
    assert_eq!(h.get("CSeq"), Some("2 UPDATE"));
    assert_eq!(h.get("Session-Expires"), Some("150;refresher=uac"));
    assert_eq!(h.get("Require"), Some("timer"));
    // Too short within the dialog: 422 too, and the call goes on.
    s.send_to(update(port, "st-ok", &to, 3, "60").as_bytes(), engine.sip)
        .unwrap();
    let got = collect(&s, Duration::from_millis(400));
    let refused = responses(&got, 422);
    assert!(
        refused
            .iter()
            .any(|(_, r)| r.headers.get("CSeq") == Some("3 UPDATE")
                && r.reason.contains("Session Interval Too Small")),
        "{got:?}"
    );
    assert!(requests(&got, "BYE").is_empty());
    // UPDATE is allowed now.
    s.send_to(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKopt\r\nFrom: <sip:t@127.0.0.1>;tag=o\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: st-opt\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            .replace("127.0.0.1:1;", &format!("127.0.0.1:{port};"))
            .as_bytes(),
        engine.sip,
    )
    .unwrap();
    let got = collect(&s, Duration::from_millis(400));
    let allow = responses(&got, 200)[0]
        .1
        .headers
        .get("Allow")
        .unwrap()
        .to_owned();
    assert!(allow.contains("UPDATE"), "{allow}");
}

#[test]
fn a_caller_that_leaves_the_refreshing_to_us_gets_a_re_invite_at_half_the_interval() {
    own_ports();
    let engine = Engine::start("calls: { media-timeout: 0s }\n");
    let port = engine.ports.spare(0);
    let s = peer(port);
    // No UPDATE in its Allow: the refresh is a re-INVITE with our SDP again.
    let asked =
        "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\nAllow: INVITE, ACK, BYE\r\n";
    s.send_to(invite(port, "st-uas", asked).as_bytes(), engine.sip)
        .unwrap();
    let got = collect(&s, Duration::from_millis(600));
    let ok = responses(&got, 200).into_iter().next().expect("answered").1;
    assert_eq!(ok.headers.get("Session-Expires"), Some("90;refresher=uas"));
    s.send_to(
        common::raw::ack_for(&ok, port, "st-uas").as_bytes(),
        engine.sip,
    )
    .unwrap();
    let answered = Instant::now();

    let mut buf = [0u8; 8192];
    let reinvite: Request = loop {
        assert!(
            answered.elapsed() < Duration::from_secs(50),
            "no refresh within 50 s"
        );
        let Ok((n, _)) = s.recv_from(&mut buf) else {
            continue;
        };
        if let Ok(Message::Request(r)) = hotline::sip::message::parse(&buf[..n]) {
            if r.method.as_str() == "INVITE" {
                break r;
            }
        }
    };
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_secs(44) && after < Duration::from_secs(48),
        "refreshed after {after:?}"
    );
    assert_eq!(reinvite.body, ok.body, "the same SDP, unchanged");
    assert_eq!(
        reinvite.headers.get("Session-Expires"),
        Some("90;refresher=uac")
    );
    // Granted; the engine ACKs the 2xx with the re-INVITE's CSeq.
    let h = |n: &str| reinvite.headers.get(n).unwrap_or_default().to_owned();
    let granted = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:t@127.0.0.1:{port}>\r\nSession-Expires: 90;refresher=uac\r\nRequire: timer\r\nContent-Length: 0\r\n\r\n",
        h("Via"),
        h("From"),
        h("To"),
        h("Call-ID"),
        h("CSeq")
    );
    s.send_to(granted.as_bytes(), engine.sip).unwrap();
    let got = collect(&s, Duration::from_millis(600));
    let acks = requests(&got, "ACK");
    assert_eq!(acks.len(), 1, "{got:?}");
    let seq = h("CSeq").split(' ').next().unwrap().to_owned();
    assert_eq!(
        acks[0].headers.get("CSeq"),
        Some(format!("{seq} ACK").as_str())
    );
    assert!(requests(&got, "BYE").is_empty());
}
