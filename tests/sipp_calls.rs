//! Real callers (SIPp) against the real binary on loopback.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{
    digits_reported, payloads_of_busiest, rtp_sink, scenario, scenario_to_sink, sipp,
    spoken_in_order, Engine,
};

#[test]
fn hundred_calls_are_answered_and_hear_audio() {
    let engine = Engine::start("");
    let sink_port = engine.ports.spare(0);
    let sink = rtp_sink(sink_port, Duration::from_secs(25));
    let sc = scenario_to_sink(&engine, "caller-basic.xml", sink_port);
    let run = sipp(
        &engine,
        0,
        &sc,
        &[
            "-s", "100", "-d", "2000", "-m", "100", "-r", "50", "-l", "100",
        ],
    );
    run.assert_ok();
    assert_eq!(run.successful(), 100);
    assert_eq!(run.failed(), 0);
    let report = sink.join().unwrap();
    // Every call's audio comes from its own engine port, as PCMU (offered first).
    let mut heard = 0;
    let mut ssrcs = HashSet::new();
    for packets in report.by_source.values() {
        let infos: Vec<_> = packets
            .iter()
            .filter_map(|(_, p)| hotline::media::rtp::parse(p).map(|(i, _)| i))
            .collect();
        if infos.len() >= 50 {
            heard += 1;
        }
        assert!(infos.iter().all(|i| i.payload_type == 0));
        ssrcs.extend(infos.iter().map(|i| i.ssrc));
    }
    assert_eq!(heard, 100, "calls that received ≥1 s of RTP");
    assert_eq!(ssrcs.len(), 100);
}

#[test]
fn tcp_caller_is_answered() {
    let engine = Engine::start("");
    let run = sipp(
        &engine,
        0,
        &scenario("caller-basic.xml"),
        &["-t", "t1", "-s", "100", "-d", "500", "-m", "3", "-l", "1"],
    );
    run.assert_ok();
    assert_eq!(run.successful(), 3);
}

#[test]
fn cancel_before_answer_gets_487() {
    let engine = Engine::start("calls:\n  answer-delay: 5s\n");
    let run = sipp(
        &engine,
        0,
        &scenario("caller-cancel.xml"),
        &["-s", "100", "-m", "2", "-l", "1"],
    );
    run.assert_ok();
    assert!(engine.wait_log("ending=Cancelled", Duration::from_secs(5)));
}

#[test]
fn invite_without_sdp_gets_an_offer_and_the_answer_in_ack() {
    let engine = Engine::start("");
    let run = sipp(
        &engine,
        0,
        &scenario("caller-no-sdp.xml"),
        &["-s", "100", "-d", "500", "-m", "2", "-l", "1"],
    );
    run.assert_ok();
    assert!(engine.wait_log("answer received in ACK", Duration::from_secs(5)));
}

#[test]
fn hold_and_resume_by_reinvite() {
    let engine = Engine::start("");
    let sink_port = engine.ports.spare(0);
    let sink = rtp_sink(sink_port, Duration::from_secs(8));
    let sc = scenario_to_sink(&engine, "caller-hold.xml", sink_port);
    // Pauses: 1.5 s talking, 1.5 s held, 1.5 s resumed.
    let run = sipp(&engine, 0, &sc, &["-s", "100", "-d", "1500", "-m", "1"]);
    run.assert_ok();
    let report = sink.join().unwrap();
    let packets: Vec<_> = report.by_source.values().flatten().collect();
    // While held (a=sendonly from the caller) the engine sends nothing, so
    // the stream shows one silence of about the held time.
    let longest_gap = packets.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(
        longest_gap > Duration::from_millis(1200) && longest_gap < Duration::from_millis(2500),
        "gap {longest_gap:?}"
    );
    // ...and resumes with the marker bit set.
    let after_gap = packets
        .windows(2)
        .find(|w| w[1].0 - w[0].0 == longest_gap)
        .map(|w| hotline::media::rtp::parse(&w[1].1).unwrap().0)
        .unwrap();
    assert!(after_gap.marker);
}

#[test]
fn options_ping_is_answered() {
    let engine = Engine::start("");
    sipp(&engine, 0, &scenario("options.xml"), &["-m", "3"]).assert_ok();
}

#[test]
fn malformed_invite_gets_400_and_the_next_call_is_answered() {
    let engine = Engine::start("");
    sipp(&engine, 0, &scenario("caller-malformed.xml"), &["-m", "1"]).assert_ok();
    let run = sipp(
        &engine,
        1,
        &scenario("caller-basic.xml"),
        &["-s", "100", "-d", "300", "-m", "1"],
    );
    run.assert_ok();
    assert!(engine.log().contains("malformed SIP message"));
}

#[test]
fn calls_from_an_unknown_address_are_refused() {
    // The only trunk allows 127.0.0.2: SIPp on 127.0.0.1 must get 403.
    let engine = Engine::start_with("trunks:\n  - name: other\n    allow: [127.0.0.2]\n", "");
    let run = sipp(
        &engine,
        0,
        &scenario("caller-basic.xml"),
        &["-s", "100", "-m", "1"],
    );
    assert!(!run.status.success());
    assert!(run.output.contains("403") || engine.log().contains("no trunk allows"));
    assert!(engine.wait_log(
        "call from an address no trunk allows",
        Duration::from_secs(2)
    ));
    assert!(!engine.log().contains("call arrived"));
}

/// An engine whose trunk sends RTP where the SDP says (our sink), even when
/// the caller's own RTP comes from elsewhere (SIPp's pcap playback).
fn engine_to_sink() -> Engine {
    Engine::start_with(
        "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
        "",
    )
}

/// Proves from the caller's side that the demo line spoke each digit back.
fn assert_spoken_back(report: &common::SinkReport, digits: &str) {
    let cache = hotline::media::PromptCache::load_dir(&common::root().join("sounds")).unwrap();
    let heard = payloads_of_busiest(report);
    let heard: Vec<&[u8]> = heard.iter().map(Vec::as_slice).collect();
    let names: Vec<String> = digits.chars().map(hotline::call::prompt_for).collect();
    // 12 frames (240 ms): the next key may cut a prompt short.
    if let Err(e) = spoken_in_order(&heard, &cache, &names, hotline::sdp::Codec::Pcmu, 12) {
        panic!("the caller did not hear {digits} spoken back: {e}");
    }
}

#[test]
fn sip_info_digits_are_reported_exactly() {
    let engine = engine_to_sink();
    let sink_port = engine.ports.spare(0);
    let sink = rtp_sink(sink_port, Duration::from_secs(6));
    let sc = scenario_to_sink(&engine, "caller-dtmf-info.xml", sink_port);
    sipp(&engine, 0, &sc, &["-s", "100", "-d", "1500", "-m", "1"]).assert_ok();
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    assert_eq!(digits_reported(&engine.log()), "42*77");
    assert_spoken_back(&sink.join().unwrap(), "42*77");
}

#[test]
fn rfc4733_digits_from_sipp_pcaps_are_reported_exactly() {
    assert!(
        std::path::Path::new("/usr/share/sip-tester/dtmf_2833_1.pcap").exists(),
        "needs sip-tester's DTMF pcaps: apt-get install -y sip-tester"
    );
    let engine = engine_to_sink();
    let sink_port = engine.ports.spare(0);
    let sink = rtp_sink(sink_port, Duration::from_secs(8));
    let sc = scenario_to_sink(&engine, "caller-dtmf-rfc4733.xml", sink_port);
    let run = sipp(&engine, 0, &sc, &["-s", "100", "-d", "1500", "-m", "1"]);
    assert!(
        !run.output.contains("Operation not permitted") || run.status.success(),
        "play_pcap_audio needs root (raw sockets): run the tests as root"
    );
    run.assert_ok();
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    assert_eq!(digits_reported(&engine.log()), "12350*99");
    assert_spoken_back(&sink.join().unwrap(), "12350*99");
}

#[test]
fn sigterm_drains_then_hangs_up_remaining_calls() {
    let mut engine = Engine::start("shutdown:\n  drain-timeout: 2s\n");
    let sc = scenario("caller-basic.xml");
    let ports = engine.ports;
    let sip = engine.sip;
    let dir = engine.dir.clone();
    // A long call (-d 20 s) that the engine must end with BYE after the drain.
    let caller = std::thread::spawn(move || {
        std::process::Command::new("sipp")
            .arg("-sf")
            .arg(&sc)
            .args(["-i", "127.0.0.1", "-p", &ports.sipp(0).to_string()])
            .args(["-mp", &ports.sipp_media(0).to_string()])
            .args(["-cp", &ports.sipp_control(0).to_string()])
            .args([
                "-s", "100", "-d", "20000", "-m", "1", "-nostdin", "-timeout", "30s",
            ])
            .arg(sip.to_string())
            .current_dir(dir)
            .output()
            .unwrap()
    });
    assert!(engine.wait_log("answered", Duration::from_secs(10)));
    std::process::Command::new("kill")
        .args(["-TERM", &engine.pid().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(engine.wait_log("draining", Duration::from_secs(3)));
    // While draining, a new call is refused with 503.
    let port = engine.ports.spare(0);
    let peer = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let invite = format!(
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKlate\r\n\
From: <sip:late@127.0.0.1>;tag=l\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: late\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:late@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
    );
    peer.send_to(invite.as_bytes(), engine.sip).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = peer.recv_from(&mut buf).expect("no answer while draining");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 503"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let status = engine
        .terminate(Duration::from_secs(10))
        .expect("engine did not exit");
    assert!(status.success(), "exit status {status}");
    let log = engine.log();
    assert!(
        log.contains("drain timeout: hanging up the remaining calls"),
        "{log}"
    );
    assert!(log.contains("hanging up"));
    // SIPp got our BYE while it expected to send its own: an unexpected message.
    let out = caller.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Unexpected") || !out.status.success(),
        "{text}"
    );
}
