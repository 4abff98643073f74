//! A flood of INVITEs (issue 14's fault harness): 5,000 a second for 10 s
//! from one address that no trunk allows, sent by a flooder of the test's
//! own (SIPp cannot send that here), while 200 calls are played to. The
//! calls in progress keep their pacing (gap p99 at most 40 ms), the engine
//! answers a new call within 5 s of the flood, and nothing restarts. Alone
//! in its binary, so its port blocks are its own.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ua::TestUa;
use common::Engine;

#[test]
fn a_flood_of_invites_leaves_calls_in_progress_paced_and_the_engine_answering() {
    // Alone in this binary: the engine's block, the next one for its RTP
    // ports (250 pairs), the one after for the callers.
    let mut engine = Engine::start_with(
        "trunks:\n  - name: lo\n    allow: [127.0.0.1/32]\n",
        "calls: { max-concurrent: 0 }\n",
    );
    let _rtp = common::Ports::next();
    engine.restart_with_rtp_ports(250);
    let pid = engine.pid();
    // 200 calls that the engine plays prompts (and comfort silence) to.
    let callers = common::Ports::next();
    let mut calls = Vec::new();
    for i in 0..200u16 {
        let (sip, rtp) = (callers.base + 2 * i, callers.base + 2 * i + 1);
        calls.push(TestUa::call(engine.sip, sip, rtp, "echo", "0"));
    }
    // Receive everyone's RTP on one thread, keeping each call's gaps.
    let sockets: Vec<UdpSocket> = calls.iter().map(|c| c.rtp.try_clone().unwrap()).collect();
    for s in &sockets {
        s.set_nonblocking(true).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let receiver = std::thread::spawn(move || {
        let mut last: Vec<Option<Instant>> = vec![None; sockets.len()];
        let mut gaps: Vec<f64> = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::Relaxed) {
            let mut any = false;
            for (i, s) in sockets.iter().enumerate() {
                while s.recv_from(&mut buf).is_ok() {
                    any = true;
                    let now = Instant::now();
                    if let Some(l) = last[i] {
                        gaps.push((now - l).as_secs_f64() * 1000.0);
                    }
                    last[i] = Some(now);
                }
            }
            if !any {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        gaps
    });
    std::thread::sleep(Duration::from_secs(1));

    // 5,000 INVITEs a second for 10 s from 127.0.0.9 (no trunk's address).
    let flooder = UdpSocket::bind("127.0.0.9:0").unwrap();
    let target = engine.sip;
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(10) {
        let due = (started.elapsed().as_secs_f64() * 5000.0) as u64;
        while sent < due {
            let invite = format!(
                "INVITE sip:100@{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKfl{sent}\r\n\
From: <sip:x@127.0.0.9>;tag=f{sent}\r\nTo: <sip:100@{target}>\r\nCall-ID: flood-{sent}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:x@127.0.0.9:5060>\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = flooder.send_to(invite.as_bytes(), target);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let flood_over = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut gaps = receiver.join().unwrap();
    assert!(sent >= 49_000, "{sent} INVITEs sent");
    gaps.sort_by(f64::total_cmp);
    let p99 = gaps[gaps.len() * 99 / 100];
    assert!(
        gaps.len() > 200 * 400,
        "{} gaps: calls were not playing",
        gaps.len()
    );
    eprintln!(
        "flood: {sent} INVITEs; {} gaps, p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        gaps.len(),
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1]
    );
    assert!(p99 <= 40.0, "gap p99 {p99:.1} ms during the flood");

    // Within 5 s a new call is answered, by the same process.
    let mut answered = false;
    while flood_over.elapsed() < Duration::from_secs(5) && !answered {
        let probe = std::panic::catch_unwind(|| {
            TestUa::call(
                engine.sip,
                engine.ports.spare(0),
                engine.ports.spare(1),
                "echo",
                "0",
            )
        });
        answered = probe.is_ok();
    }
    assert!(
        answered,
        "the engine did not answer within 5 s of the flood"
    );
    assert_eq!(engine.pid(), pid, "the engine restarted");
    // The calls in progress are still there.
    let text = common::metrics(&engine);
    let active: f64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("hotline_calls_active{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        active >= 200.0,
        "{active} calls in progress after the flood"
    );
    // The flood was taken and dropped unanswered, not missed.
    let dropped: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hotline_sip_requests_dropped_total{reason=\"rate-limit\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        dropped >= 45_000.0,
        "{dropped} flood INVITEs dropped by the rate limit"
    );
    for c in calls.iter_mut().take(5) {
        c.bye();
    }
}
