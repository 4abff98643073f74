//! How many calls the engine takes and how fast (issue 14, finding 4), seen
//! from raw UDP peers on several loopback addresses: the cap on calls in
//! progress, each trunk's caps, the rate limit on sources that are not
//! trunks, `Retry-After` on a busy `503`, and ringing that holds no RTP port.

mod common;

use std::time::Duration;

use common::raw::{ack_for, collect, invite, ok_to, peer, peer_at, requests, responses};
use common::Engine;
use hotline::sip::message::Response;

/// Sends an INVITE `call_id` from `s` and returns the final response.
fn call(engine: &Engine, s: &std::net::UdpSocket, port: u16, call_id: &str) -> Response {
    let from_ip = s.local_addr().unwrap().ip().to_string();
    let text = invite(port, call_id, "").replace("127.0.0.1:", &format!("{from_ip}:"));
    s.send_to(text.as_bytes(), engine.sip).unwrap();
    let got = collect(s, Duration::from_millis(400));
    got.into_iter()
        .find_map(|(_, m)| match m {
            hotline::sip::message::Message::Response(r) if r.status >= 200 => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no final response to {call_id}"))
}

#[test]
fn calls_are_capped_in_all_and_per_trunk_with_retry_after_and_freed_when_they_end() {
    let engine = Engine::start_with(
        "trunks:\n  - name: capped\n    allow: [127.0.0.1/32]\n    inbound: { max-calls: 2 }\n  - name: open\n    allow: [127.0.0.2/32]\n",
        "calls: { max-concurrent: 3, max-duration: 2s, retry-after: 7s }\n",
    );
    let port = engine.ports.spare(0);
    let a = peer(port);
    let b = peer_at("127.0.0.2", port);
    let mut answered = vec![];
    for id in ["cap-a1", "cap-a2"] {
        let r = call(&engine, &a, port, id);
        assert_eq!(r.status, 200, "{id}");
        a.send_to(ack_for(&r, port, id).as_bytes(), engine.sip)
            .unwrap();
        answered.push(&a);
    }
    // The capped trunk's third call: 503 with Retry-After.
    let r = call(&engine, &a, port, "cap-a3");
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("Retry-After"), Some("7"));
    // The other trunk has room, until the engine's cap of 3.
    let r = call(&engine, &b, port, "cap-b1");
    assert_eq!(r.status, 200);
    b.send_to(
        ack_for(&r, port, "cap-b1")
            .replace("127.0.0.1:", "127.0.0.2:")
            .as_bytes(),
        engine.sip,
    )
    .unwrap();
    let r = call(&engine, &b, port, "cap-b2");
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("Retry-After"), Some("7"));
    let refused = common::metrics(&engine);
    assert!(
        refused.contains("hotline_calls_refused_total{reason=\"trunk-max-calls\"} 1"),
        "{refused}"
    );
    assert!(
        refused.contains("hotline_calls_refused_total{reason=\"max-concurrent\"} 1"),
        "{refused}"
    );
    // max-duration ends the three calls: their BYEs are answered, and the
    // caps count them no more.
    for s in [&a, &b] {
        let got = collect(s, Duration::from_millis(2500));
        for bye in requests(&got, "BYE") {
            s.send_to(ok_to(&bye).as_bytes(), engine.sip).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let r = call(&engine, &a, port, "cap-a4");
    assert_eq!(r.status, 200, "a call ended frees its place");
    a.send_to(ack_for(&r, port, "cap-a4").as_bytes(), engine.sip)
        .unwrap();
    let r = call(&engine, &a, port, "cap-a5");
    assert_eq!(r.status, 200);
    a.send_to(ack_for(&r, port, "cap-a5").as_bytes(), engine.sip)
        .unwrap();
}

#[test]
fn a_trunk_gets_its_calls_per_second_and_no_more() {
    let engine = Engine::start_with(
        "trunks:\n  - name: slow\n    allow: [127.0.0.0/8]\n    inbound: { max-cps: 2 }\n",
        "",
    );
    let port = engine.ports.spare(0);
    let s = peer(port);
    for i in 0..6 {
        let text = invite(port, &format!("cps-{i}"), "");
        s.send_to(text.as_bytes(), engine.sip).unwrap();
    }
    let got = collect(&s, Duration::from_millis(600));
    let refused: std::collections::BTreeSet<_> = responses(&got, 503)
        .iter()
        .map(|(_, r)| r.headers.get("Call-ID").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(refused.len(), 4, "four of six refused: {refused:?}");
    assert!(responses(&got, 503)
        .iter()
        .all(|(_, r)| r.headers.get("Retry-After") == Some("5")));
    // A second later, room again.
    std::thread::sleep(Duration::from_millis(600));
    let r = call(&engine, &s, port, "cps-later");
    assert_eq!(r.status, 200);
}

#[test]
fn a_source_that_is_no_trunk_is_dropped_past_its_rate_and_others_are_not() {
    let engine = Engine::start_with(
        "trunks:\n  - name: lo\n    allow: [127.0.0.1/32]\n",
        "sip: { rate-limit: { requests: 5, per: 2s, block: 2s } }\n",
    );
    let port = engine.ports.spare(0);
    let stranger = peer_at("127.0.0.3", port);
    let trunk = peer(port);
    let options = |ip: &str, n: usize| {
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{port};branch=z9hG4bKo{n}\r\n\
From: <sip:t@{ip}>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o{n}@{ip}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    for n in 0..20 {
        stranger
            .send_to(options("127.0.0.3", n).as_bytes(), engine.sip)
            .unwrap();
        trunk
            .send_to(options("127.0.0.1", n).as_bytes(), engine.sip)
            .unwrap();
    }
    let got = collect(&stranger, Duration::from_millis(500));
    // (OPTIONS from a stranger get 403; what matters is that they get any.)
    assert_eq!(got.len(), 5, "five answered, then nothing: {got:?}");
    let got = collect(&trunk, Duration::from_millis(100));
    assert_eq!(responses(&got, 200).len(), 20, "a trunk is not limited");
    // Still blocked while the block lasts, then answered again.
    stranger
        .send_to(options("127.0.0.3", 99).as_bytes(), engine.sip)
        .unwrap();
    assert!(collect(&stranger, Duration::from_millis(300)).is_empty());
    std::thread::sleep(Duration::from_millis(1800));
    stranger
        .send_to(options("127.0.0.3", 100).as_bytes(), engine.sip)
        .unwrap();
    assert_eq!(collect(&stranger, Duration::from_millis(300)).len(), 1);
    assert!(engine.log().contains("source=127.0.0.3 reason=rate-limit"));
}

#[test]
fn ringing_holds_no_rtp_port() {
    // One RTP port pair, a 1.5 s ring: a second caller rings while the
    // first does, and gets the port once the first gives up.
    let mut engine = Engine::start("calls: { answer-delay: 1500ms }\n");
    engine.restart_with_rtp_ports(1);
    let port = engine.ports.spare(0);
    let s = peer(port);
    for id in ["ring-1", "ring-2"] {
        s.send_to(invite(port, id, "").as_bytes(), engine.sip)
            .unwrap();
    }
    let got = collect(&s, Duration::from_millis(400));
    assert_eq!(responses(&got, 180).len(), 2, "both ring");
    assert!(responses(&got, 503).is_empty(), "none refused for media");
    // The first caller hangs up (CANCEL) while it rings.
    let invite1 = invite(port, "ring-1", "");
    let via = invite1
        .lines()
        .find(|l| l.starts_with("Via:"))
        .unwrap()
        .to_owned();
    let cancel = format!(
        "CANCEL sip:100@127.0.0.1 SIP/2.0\r\n{via}\r\nFrom: <sip:t@127.0.0.1>;tag=fring-1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: ring-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(cancel.as_bytes(), engine.sip).unwrap();
    let got = collect(&s, Duration::from_millis(1800));
    let oks: std::collections::BTreeMap<_, _> = responses(&got, 200)
        .into_iter()
        .filter(|(_, r)| r.headers.get("CSeq") == Some("1 INVITE"))
        .map(|(_, r)| (r.headers.get("Call-ID").unwrap_or_default().to_owned(), r))
        .collect();
    let oks: Vec<_> = oks.into_values().collect();
    assert_eq!(oks.len(), 1, "the second call is answered: {oks:?}");
    assert_eq!(oks[0].headers.get("Call-ID"), Some("ring-2"));
    assert!(String::from_utf8_lossy(&oks[0].body).contains("m=audio"));
    s.send_to(ack_for(&oks[0], port, "ring-2").as_bytes(), engine.sip)
        .unwrap();
}
