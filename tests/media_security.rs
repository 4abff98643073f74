//! Media belongs to its peer: a sprayer on the same network, sending RTP
//! (audio and RFC 4733 digits) at a call's port and its neighbours from
//! another address, takes nothing over. The caller keeps hearing its audio,
//! the sprayer hears nothing, its digits do nothing, and the operator sees
//! the drops counted.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ua::TestUa;
use common::Engine;
use hotline::media::rtp::{self, RtpInfo};
use hotline::media::{Digit, PromptCache};
use hotline::sdp::Codec;

/// What a sprayer got back.
struct Sprayed {
    sent: u64,
    received: u64,
}

/// Sprays in-sequence RTP from 127.0.0.2 at `targets` until `stop`: each
/// round one PCMU frame and one RFC 4733 "9" event to every target, then
/// reads whatever came back.
fn spray(targets: Vec<SocketAddr>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Sprayed> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.2:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let nine = Digit::from_char('9').unwrap().event_code();
        let (mut seq, mut ts) = (1u16, 1000u32);
        let mut out = Sprayed {
            sent: 0,
            received: 0,
        };
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            for (pt, payload) in [
                (0u8, vec![0x55u8; 160]),
                (101u8, vec![nine, 0x0a, 0x01, 0x40]),
            ] {
                let info = RtpInfo {
                    payload_type: pt,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 0xbad,
                    marker: false,
                };
                seq = seq.wrapping_add(1);
                let mut pkt = [0u8; 300];
                let n = rtp::write(&info, &payload, &mut pkt).unwrap();
                for t in &targets {
                    if socket.send_to(&pkt[..n], t).is_ok() {
                        out.sent += 1;
                    }
                }
            }
            ts = ts.wrapping_add(160);
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                if rtp::parse(&buf[..n]).is_some() {
                    out.received += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        out
    })
}

fn dropped_total(engine: &Engine) -> u64 {
    let body = common::metrics(engine);
    assert!(body.contains("# TYPE"), "no metrics: {body}");
    body.lines()
        .filter(|l| l.starts_with("hotline_rtp_packets_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn a_sprayer_takes_over_neither_the_callers_audio_nor_their_keys() {
    let engine = Engine::start("");
    let cache = PromptCache::load_dir(&common::root().join("sounds")).unwrap();
    let p = engine.ports;
    // The key-test line: it says back every key it hears.
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "echo", "0 101");
    let answered = Instant::now();
    let port = ua.engine_rtp.port();
    let targets: Vec<SocketAddr> = [-4i32, -2, 0, 2, 4]
        .iter()
        .map(|d| SocketAddr::from(([127, 0, 0, 1], (i32::from(port) + d) as u16)))
        .collect();
    // The sprayer starts before the caller sends anything.
    let stop = Arc::new(AtomicBool::new(false));
    let sprayer = spray(targets, stop.clone());
    std::thread::sleep(Duration::from_millis(400));
    // Then the caller sends its audio (silence) for 3 s, the sprayer on.
    let started = Instant::now();
    let mut heard = Vec::new();
    ua.rtp
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    while started.elapsed() < Duration::from_secs(3) {
        ua.send_pcmu(&[0i16; 160]);
        heard.extend(ua.receive(Duration::from_millis(1)));
    }
    heard.extend(ua.receive(Duration::from_millis(500)));
    let listened = answered.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sprayed = sprayer.join().unwrap();
    // A key of the caller's own is still heard (and said back).
    ua.rtp
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    ua.press_rfc4733('5');
    let after = ua.receive(Duration::from_millis(1500));
    let dropped = dropped_total(&engine);
    ua.bye();

    println!(
        "sprayer sent {} packets and received {}; the caller received {} in {:?} ({} after pressing 5); {} dropped",
        sprayed.sent,
        sprayed.received,
        heard.len(),
        started.elapsed(),
        after.len(),
        dropped
    );
    assert!(sprayed.sent > 500, "the sprayer sent {}", sprayed.sent);
    assert_eq!(sprayed.received, 0, "the sprayer heard the call");
    // One packet each 20 ms since the answer: at least 99 % of them reached
    // the caller (the call's audio went nowhere else).
    let expected = listened.as_millis() as f64 / 20.0;
    assert!(
        heard.len() as f64 >= 0.99 * expected - 2.0,
        "the caller received {} of {expected} packets",
        heard.len()
    );
    let payloads = |packets: &[common::ua::Packet]| -> Vec<Vec<u8>> {
        packets.iter().map(|p| p.payload.clone()).collect()
    };
    let said = |packets: &[common::ua::Packet], key: &str| {
        let prompt = cache.get(key).unwrap();
        let payloads = payloads(packets);
        let payloads: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        (0..payloads.len())
            .any(|start| common::prompt_run(&payloads, start, &prompt, Codec::Pcmu) >= 20)
    };
    assert!(!said(&heard, "digits/9"), "the sprayer's 9 was acted on");
    assert!(said(&after, "digits/5"), "the caller's own 5 was not heard");
    assert!(dropped > 0, "no drop was counted");
}

/// An INVITE from `ip:port` (its media on `mport`) whose audio is offered
/// as `proto` with `crypto` lines.
fn invite_from(
    ip: &str,
    port: u16,
    mport: u16,
    id: &str,
    proto: &str,
    crypto: &[String],
) -> String {
    let mut sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {mport} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    for c in crypto {
        sdp.push_str(&format!("a={c}\r\n"));
    }
    format!(
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK{id}\r\n\
From: <sip:t@{ip}>;tag=f{id}\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:t@{ip}:{port}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The final response to an INVITE sent from `s`.
fn final_response(s: &UdpSocket, engine: &Engine, msg: &str) -> hotline::sip::message::Response {
    s.send_to(msg.as_bytes(), engine.sip).unwrap();
    let got = common::raw::collect(s, Duration::from_millis(500));
    got.into_iter()
        .find_map(|(_, m)| match m {
            hotline::sip::message::Message::Response(r) if r.status >= 200 => Some(r),
            _ => None,
        })
        .expect("no final response")
}

const TRUNKS: &str = "trunks:
  - name: required
    allow: [127.0.0.1/32]
    media-encryption: required
  - name: optional
    allow: [127.0.0.2/32]
    media-encryption: optional
  - name: keys-in-clear
    allow: [127.0.0.3/32]
    media-encryption: optional
    insecure-media-keys-over-plain-sip: true
    symmetric-rtp: false
";

#[test]
fn srtp_is_answered_as_each_trunk_allows_and_keys_stay_off_plain_sip_unless_said() {
    use hotline::sdp::crypto::{line, Crypto, KeySalt, Suite};
    let engine = Engine::start_with(TRUNKS, "calls: { media-timeout: 0s }\n");
    let base = engine.ports.spare(0);
    let ours = Crypto {
        tag: 1,
        suite: Suite::AesCm128HmacSha1_80,
        key: KeySalt::random(Suite::AesCm128HmacSha1_80),
    };
    let crypto = vec![line(&ours)];
    // `required` over plain UDP: the keys would travel in clear: 488.
    let s1 = common::raw::peer_at("127.0.0.1", base);
    let r = final_response(
        &s1,
        &engine,
        &invite_from("127.0.0.1", base, base + 1, "srtp-req", "RTP/SAVP", &crypto),
    );
    assert_eq!(r.status, 488);
    // `optional` over plain UDP: RTP/SAVP cannot be answered (488); RTP/AVP
    // with a=crypto is answered in clear, without keys.
    let s2 = common::raw::peer_at("127.0.0.2", base);
    let r = final_response(
        &s2,
        &engine,
        &invite_from(
            "127.0.0.2",
            base,
            base + 1,
            "srtp-opt1",
            "RTP/SAVP",
            &crypto,
        ),
    );
    assert_eq!(r.status, 488);
    let r = final_response(
        &s2,
        &engine,
        &invite_from("127.0.0.2", base, base + 1, "srtp-opt2", "RTP/AVP", &crypto),
    );
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains("RTP/AVP") && !body.contains("a=crypto"),
        "{body}"
    );

    // Where the config accepts keys in clear: SRTP, and it is real.
    let s3 = common::raw::peer_at("127.0.0.3", base);
    let media = UdpSocket::bind(("127.0.0.3", base + 1)).unwrap();
    media
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let r = final_response(
        &s3,
        &engine,
        &invite_from("127.0.0.3", base, base + 1, "srtp-ok", "RTP/SAVP", &crypto),
    );
    assert_eq!(r.status, 200);
    let answer = hotline::sdp::parse(&r.body).unwrap();
    assert!(answer.savp, "{}", String::from_utf8_lossy(&r.body));
    let theirs = answer.crypto.first().expect("a key in the answer");
    assert_eq!((theirs.tag, theirs.suite), (1, Suite::AesCm128HmacSha1_80));
    s3.send_to(
        common::raw::ack_for(&r, base, "srtp-ok").as_bytes(),
        engine.sip,
    )
    .unwrap();
    // What the engine sends decrypts with its key and is PCMU audio.
    let keys = hotline::sdp::crypto::Srtp {
        suite: theirs.suite,
        tag: 1,
        local: ours.key,
        remote: theirs.key,
        savp: true,
    };
    let mut session = hotline::media::srtp::Session::new(keys).unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    let (mut sealed, mut opened) = (0, 0);
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        if let Ok((n, _)) = media.recv_from(&mut buf) {
            sealed += 1;
            if let Some(m) = session.unprotect(&mut buf, n) {
                let (info, payload) = rtp::parse(&buf[..m]).expect("RTP inside");
                assert_eq!((info.payload_type, payload.len()), (0, 160));
                opened += 1;
            }
        }
    }
    assert!(
        sealed >= 50 && opened == sealed,
        "{opened} of {sealed} packets decrypted"
    );
    // Plain RTP at the call's port, from the caller's own address: refused
    // and counted, never taken.
    let port = answer.port;
    for seq in 0..20u16 {
        let info = RtpInfo {
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 7,
            marker: false,
        };
        let mut pkt = [0u8; 200];
        let n = rtp::write(&info, &[0xff; 160], &mut pkt).unwrap();
        media.send_to(&pkt[..n], ("127.0.0.1", port)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let metrics = common::metrics(&engine);
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hotline_srtp_packets_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 20.0, "{metrics}");
}
