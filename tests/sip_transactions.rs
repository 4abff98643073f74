//! RFC 3261 transaction behaviour of the real binary, seen from a raw UDP
//! peer: what a trunk whose packets get lost, repeated or are odd would see.

mod common;

use std::time::Duration;

use common::raw::{collect, invite, peer, requests, responses};
use common::Engine;

#[test]
fn unacknowledged_200_is_retransmitted_and_a_repeated_invite_gets_it_again() {
    let engine = Engine::start("");
    let port = engine.ports.spare(0);
    let s = peer(port);
    let msg = invite(port, "rtx1", "");
    s.send_to(msg.as_bytes(), engine.sip).unwrap();
    // No ACK: timer G resends the 200 at 0.5 s, 1.5 s, 3.5 s...
    let got = collect(&s, Duration::from_millis(2000));
    let oks = responses(&got, 200);
    assert!(oks.len() >= 3, "{} x 200 in 2 s", oks.len());
    assert!(
        oks.windows(2).all(|w| w[0].1 == w[1].1),
        "the same 200 each time"
    );
    let first_gap = oks[1].0 - oks[0].0;
    assert!(first_gap > Duration::from_millis(350) && first_gap < Duration::from_millis(800));
    // The INVITE again (a retransmission): answered from the transaction.
    s.send_to(msg.as_bytes(), engine.sip).unwrap();
    let again = collect(&s, Duration::from_millis(300));
    assert_eq!(
        responses(&again, 200).first().map(|r| &r.1),
        Some(&oks[0].1)
    );
    assert_eq!(
        engine.log().matches("call arrived").count(),
        1,
        "one call, not two"
    );
}

#[test]
fn unknown_and_unsupported_methods() {
    let engine = Engine::start("");
    let port = engine.ports.spare(0);
    let s = peer(port);
    for (method, status) in [("FROBNICATE", 501), ("SUBSCRIBE", 405)] {
        let req = format!(
            "{method} sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}\r\n\
From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: m-{method}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        s.send_to(req.as_bytes(), engine.sip).unwrap();
        let got = collect(&s, Duration::from_millis(400));
        let r = responses(&got, status);
        assert_eq!(r.len(), 1, "{method} -> {status}");
        assert!(r[0]
            .1
            .headers
            .get("Allow")
            .is_some_and(|a| a.contains("INVITE")));
    }
    // Garbage and a response nobody asked for are dropped; the engine goes on.
    s.send_to(b"\x00\x01garbage", engine.sip).unwrap();
    s.send_to(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKnone\r\n\r\n",
        engine.sip,
    )
    .unwrap();
    let opt = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKo1\r\n\
From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(opt.as_bytes(), engine.sip).unwrap();
    assert_eq!(
        responses(&collect(&s, Duration::from_millis(400)), 200).len(),
        1
    );
}

#[test]
fn our_bye_follows_the_record_route_and_rport() {
    // The call comes "through a proxy" that record-routes; the engine's BYE
    // must go to the proxy with a Route header, and the caller's contact as
    // Request-URI.
    let engine = Engine::start("calls:\n  max-duration: 1s\n");
    let port = engine.ports.spare(0);
    let proxy = peer(port);
    let rr = format!("Record-Route: <sip:proxy@127.0.0.1:{port};lr>\r\n");
    let msg = invite(port, "rr1", &rr).replace(
        &format!("Contact: <sip:t@127.0.0.1:{port}>"),
        "Contact: <sip:t@127.0.0.1:9>",
    );
    proxy.send_to(msg.as_bytes(), engine.sip).unwrap();
    let got = collect(&proxy, Duration::from_millis(500));
    let ok = &responses(&got, 200)[0].1;
    assert!(ok
        .headers
        .get("Record-Route")
        .is_some_and(|r| r.contains("proxy@")));
    let to = ok.headers.get("To").unwrap();
    let ack = format!(
        "ACK sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKack\r\n\
From: <sip:t@127.0.0.1>;tag=frr1\r\nTo: {to}\r\nCall-ID: rr1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    proxy.send_to(ack.as_bytes(), engine.sip).unwrap();
    // max-duration 1 s: the engine hangs up.
    let got = collect(&proxy, Duration::from_millis(2000));
    let byes = requests(&got, "BYE");
    assert!(!byes.is_empty(), "no BYE reached the proxy");
    let bye = &byes[0];
    assert_eq!(bye.uri, "sip:t@127.0.0.1:9");
    assert!(bye
        .headers
        .get("Route")
        .is_some_and(|r| r.contains("proxy@")));
    assert!(bye
        .headers
        .get("To")
        .is_some_and(|t| t.contains("tag=frr1")));
}

#[test]
fn an_offer_without_a_common_codec_gets_488_before_any_ringing() {
    let engine = Engine::start("calls:\n  answer-delay: 3s\n");
    let port = engine.ports.spare(0);
    let s = peer(port);
    // G.729 only: nothing we speak.
    let msg = invite(port, "g729", "").replace("RTP/AVP 0", "RTP/AVP 18");
    s.send_to(msg.as_bytes(), engine.sip).unwrap();
    let got = collect(&s, Duration::from_millis(800));
    // (Twice, as we do not ACK: timer G resends it after 0.5 s.)
    assert!(!responses(&got, 488).is_empty(), "488 within 0.8 s");
    assert!(responses(&got, 180).is_empty(), "no ringing first");
    assert!(!engine.log().contains("answered"));
}

/// Finding 1 of the hardening review: a `received=` (or `rport=`) the sender
/// wrote must not aim our responses at a third address. Responses go where
/// the request came from.
#[test]
fn responses_go_to_the_source_not_where_the_via_points() {
    // The only trunk allows 127.0.0.2: our INVITEs from 127.0.0.1 get 403.
    let engine = Engine::start_with("trunks:\n  - name: other\n    allow: [127.0.0.2]\n", "");
    let port = engine.ports.spare(0);
    let victim_port = engine.ports.spare(1);
    let s = peer(port);
    let victim = peer(victim_port);
    let vias = [
        format!("SIP/2.0/UDP 127.0.0.1:{victim_port};branch=z9hG4bKr1;received=127.0.0.1"),
        format!("SIP/2.0/UDP 127.0.0.1:{victim_port};branch=z9hG4bKr2;rport={victim_port};received=127.0.0.1"),
        format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr3;RECEIVED=127.0.0.1;rport;received=127.0.0.1;rport={victim_port}"),
    ];
    for (i, via) in vias.iter().enumerate() {
        let call_id = format!("recv-{i}");
        let text = invite(port, &call_id, "").replacen(
            &format!("Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}"),
            &format!("Via: {via}"),
            1,
        );
        assert!(text.contains(via.as_str()));
        s.send_to(text.as_bytes(), engine.sip).unwrap();
        let got = collect(&s, Duration::from_millis(700));
        assert!(
            !responses(&got, 403).is_empty(),
            "the sender gets its 403 ({via})"
        );
        let stray = collect(&victim, Duration::from_millis(100));
        assert!(
            stray.is_empty(),
            "nothing goes to the third address ({via})"
        );
    }
    // Nothing arrived later either (the 403 is retransmitted until its ACK).
    assert!(collect(&victim, Duration::from_millis(1500)).is_empty());
}

#[test]
fn in_dialog_requests_go_to_where_dns_locates_the_host_of_the_callers_contact() {
    let own = common::Ports::next();
    let (dns_port, a, b) = (own.spare(0), own.spare(1), own.spare(2));
    let dir = std::env::temp_dir().join(format!("hotline-dns-{}-{}", std::process::id(), own.base));
    std::fs::create_dir_all(&dir).unwrap();
    let dns = common::dnsmasq::Dnsmasq::start(
        dns_port,
        &dir,
        &["--host-record=phone.test,127.0.0.1".into()],
    );
    let engine = Engine::start(&format!(
        "calls: {{ max-duration: 2s, media-timeout: 0s }}\ndns: {{ servers: ['{}'] }}\n",
        dns.addr
    ));
    // The INVITE comes from `a`; its Contact names phone.test, port `b`.
    let (from_a, at_b) = (peer(a), peer(b));
    let msg = invite(a, "dnscontact", "").replace(
        &format!("Contact: <sip:t@127.0.0.1:{a}>"),
        &format!("Contact: <sip:t@phone.test:{b}>"),
    );
    assert!(msg.contains("phone.test"));
    from_a.send_to(msg.as_bytes(), engine.sip).unwrap();
    let got = collect(&from_a, Duration::from_millis(500));
    let ok = &responses(&got, 200).first().expect("answered").1.clone();
    from_a
        .send_to(
            common::raw::ack_for(ok, a, "dnscontact").as_bytes(),
            engine.sip,
        )
        .unwrap();
    // At max-duration the engine hangs up: its BYE goes to phone.test:b.
    let at_contact = requests(&collect(&at_b, Duration::from_millis(3000)), "BYE");
    // (Sent again while unanswered.)
    assert!(
        !at_contact.is_empty(),
        "no BYE at the located contact:\n{}",
        engine.log()
    );
    assert_eq!(at_contact[0].uri, format!("sip:t@phone.test:{b}"));
    assert!(requests(&collect(&from_a, Duration::from_millis(100)), "BYE").is_empty());
    assert!(dns.log().contains("query[A] phone.test"), "{}", dns.log());
    let _ = std::fs::remove_dir_all(&dir);
}
