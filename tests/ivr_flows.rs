//! The demo support line (`ivr-flows/support.yaml`) driven by SIPp callers
//! pressing keys. Each path is proved from outside: by which prompts' RTP
//! reached the caller, in order.

mod common;

use std::time::Duration;

use common::{assert_heard, keys_scenario, rtp_sink, sipp, Engine};

/// The shipped flows and config sections, calls routed to `support`; RTP
/// goes where the SDP says (the sink), whatever address it comes from.
fn support_line(extra: &str) -> Engine {
    Engine::start_with(
        "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
        &format!("routes:\n  default: support\n{extra}"),
    )
}

fn call(
    engine: &Engine,
    keys: &[(u64, char)],
    tail_ms: u64,
    listen: Duration,
) -> common::SinkReport {
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, listen);
    let sc = keys_scenario(engine, "keys.xml", port, keys, tail_ms);
    sipp(engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    sink.join().unwrap()
}

#[test]
fn pressing_2_and_an_account_number_reaches_the_support_queue() {
    let engine = support_line("");
    // The shipped scenario: 2 during the greeting (barge-in), then 1234#.
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(20));
    let sc = common::scenario_to_sink(&engine, "caller-ivr-account.xml", port);
    sipp(&engine, 0, &sc, &["-s", "100", "-d", "14000", "-m", "1"]).assert_ok();
    assert_heard(
        &sink.join().unwrap(),
        &["greeting", "ask/account", "please-hold", "music/default"],
        20,
    );
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    let log = engine.log();
    assert!(log.contains("caller queued queue=support"), "{log}");
    // No agent is staffed: the record says the caller gave up in the queue,
    // with the account number the IVR collected.
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let cdrs = hotline::store::Store::cdrs(&mut store).unwrap();
    assert_eq!(cdrs.len(), 1);
    assert_eq!(
        (cdrs[0].outcome.as_str(), cdrs[0].queue.as_deref()),
        ("abandoned", Some("support"))
    );
    assert!(
        cdrs[0].vars.contains("\"account\":\"1234\""),
        "{}",
        cdrs[0].vars
    );
    assert!(cdrs[0].wait_ms.unwrap() > 5000, "{:?}", cdrs[0]);
}

#[test]
fn pressing_3_plays_the_hours_and_returns_to_the_menu() {
    let engine = support_line("");
    let report = call(&engine, &[(800, '3')], 9000, Duration::from_secs(11));
    // The hours, then the main menu again.
    assert_heard(&report, &["greeting", "menu/hours", "menu/main"], 30);
}

#[test]
fn three_invalid_choices_go_to_the_support_queue() {
    let engine = support_line("");
    let keys = [(800, '7'), (1500, '8'), (1500, '6')];
    let report = call(&engine, &keys, 4500, Duration::from_secs(10));
    assert_heard(
        &report,
        &["greeting", "menu/invalid", "menu/invalid", "please-hold"],
        20,
    );
}

#[test]
fn pressing_9_leaves_a_voicemail_kept_when_the_caller_hangs_up() {
    let engine = support_line("");
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(12));
    // 9 during the greeting; the prompt and beep take about 6 s; the caller
    // speaks all along and hangs up 4 s into the recording.
    let sc = common::keys_scenario_with(&engine, "vm.xml", port, &[(800, '9')], 10_000, true);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    assert_heard(
        &sink.join().unwrap(),
        &["greeting", "ask/voicemail", "beep"],
        15,
    );
    assert!(
        engine.wait_log("voicemail saved", Duration::from_secs(5)),
        "{}",
        engine.log()
    );

    // A row in the store, and the file it names holds what the caller said.
    let data = engine.dir.join("data");
    let mut store = hotline::store::SqliteStore::open(&data).unwrap();
    let rows = hotline::store::Store::voicemails(&mut store).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let vm = &rows[0];
    assert_eq!(vm.mailbox, "support");
    assert_eq!(vm.flow, "support");
    assert!((2500..=6000).contains(&vm.duration_ms), "{vm:?}");
    let samples = hotline::media::prompt::decode_file(std::path::Path::new(&vm.path)).unwrap();
    assert_eq!(samples.len() as u64, vm.duration_ms * 8);
    let rms =
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 300.0, "the message is silent (rms {rms})");
    assert!(
        vm.path
            .starts_with(&data.join("voicemail/support").display().to_string()),
        "{}",
        vm.path
    );
}

#[test]
fn a_waiting_caller_hears_position_and_estimated_wait_between_the_music() {
    // Announced on joining and 5 s after each announcement ends; no agent
    // is staffed, so the wait is the fallback 3 minutes per caller ahead.
    let engine =
        support_line("queues:\n  support: { announce-every: 5s }\n  sales: {}\n  operator: {}\n");
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(26));
    let sc = keys_scenario(
        &engine,
        "wait.xml",
        port,
        &[
            (800, '2'),
            (1500, '1'),
            (300, '2'),
            (300, '3'),
            (300, '4'),
            (300, '#'),
        ],
        21_000,
    );
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    assert_heard(
        &sink.join().unwrap(),
        &[
            "ask/account",
            "please-hold",
            "queue/you-are-caller",
            "numbers/1",
            "queue/in-line",
            "queue/about",
            "numbers/3",
            "queue/minutes",
            "music/default",
            // Again, 5 s after the first ended.
            "queue/you-are-caller",
            "numbers/1",
        ],
        8,
    );
}
