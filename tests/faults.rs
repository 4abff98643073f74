//! Faults a real network brings, against the running binary: media that
//! stops without a BYE (`calls.media-timeout`). The impairment harness
//! (loss, jitter, floods) is in `tests/impairment.rs`.

mod common;

use std::time::{Duration, Instant};

use common::ua::TestUa;
use common::Engine;

/// A caller of our own on the engine's spare ports.
fn caller(engine: &Engine, number: &str, formats: &str) -> TestUa {
    let p = engine.ports;
    TestUa::call(engine.sip, p.spare(0), p.spare(2), number, formats)
}

#[test]
fn a_caller_whose_rtp_stops_without_a_bye_is_ended_and_the_record_says_why() {
    let engine = Engine::start("calls: { media-timeout: 2s }\n");
    let mut ua = caller(&engine, "echo", "0");
    // Audio for a second, then nothing (the phone died; no BYE).
    ua.send_pcmu(&vec![0i16; 8000]);
    let stopped = Instant::now();
    assert!(
        ua.expect_bye(Duration::from_secs(5)),
        "no BYE after the media stopped"
    );
    let after = stopped.elapsed();
    assert!(
        after >= Duration::from_millis(1800) && after < Duration::from_millis(3500),
        "ended {after:?} after the last packet"
    );
    let records = common::cdrs(&engine);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["ended_by"], "media-timeout", "{:?}", records[0]);
    let metrics = common::metrics(&engine);
    assert!(
        metrics.contains("hotline_media_timeouts_total 1"),
        "{metrics}"
    );
}

#[test]
fn a_caller_on_hold_or_sending_comfort_noise_is_not_ended() {
    let engine = Engine::start("calls: { media-timeout: 1500ms }\n");
    let mut ua = caller(&engine, "echo", "0 13");
    // Comfort noise (payload type 13) every 200 ms counts as heard.
    for i in 0..15u32 {
        ua.send_rtp(13, false, 5000 + 1600 * i, &[40]);
        std::thread::sleep(Duration::from_millis(200));
    }
    // On hold (inactive): nothing comes, and nothing should.
    ua.reinvite("inactive");
    assert!(
        !ua.expect_bye(Duration::from_millis(3500)),
        "ended while on hold"
    );
    // Resumed, and then silent: now it counts.
    ua.reinvite("sendrecv");
    assert!(
        ua.expect_bye(Duration::from_secs(4)),
        "no BYE after the resumed media stopped"
    );
    assert_eq!(common::cdrs(&engine)[0]["ended_by"], "media-timeout");
}

#[test]
fn an_agent_whose_phone_dies_mid_call_is_freed_and_the_caller_released() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues: { support: { announce-position: false, wrap-up: 1s } }\n\
agents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n\
registrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s, media-timeout: 2s }\n",
    );
    let agent_port = common::Ports::next().spare(0);
    common::register(&engine, "1001", agent_port);
    // The agent's phone answers and echoes; then it is killed (no BYE).
    let mut phone = common::phone("agent-answer.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let mut ua = caller(&engine, "100", "0");
    common::wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(10));
    ua.send_pcmu(&vec![0i16; 4000]);
    phone.kill().unwrap();
    let _ = phone.wait();
    let died = Instant::now();
    // The caller keeps talking; the agent's side is silent.
    let sender = std::thread::spawn(move || {
        ua.send_pcmu(&vec![0i16; 8000 * 4]);
        ua
    });
    common::wait_agent_state(&engine, "1001", "wrap-up", Duration::from_secs(5));
    assert!(
        died.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        died.elapsed()
    );
    let ua = sender.join().unwrap();
    assert!(
        ua.expect_bye(Duration::from_secs(2)),
        "the caller was not released"
    );
    common::wait_agent_state(&engine, "1001", "available", Duration::from_secs(3));
    let records = common::cdrs(&engine);
    assert_eq!(records[0]["agent"], "1001", "{records:?}");
    assert_eq!(records[0]["ended_by"], "media-timeout", "{records:?}");
}
