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
