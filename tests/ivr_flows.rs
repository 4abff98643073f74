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
    // 2 during the greeting (barge-in), then the account number and #.
    let keys = [
        (800, '2'),
        (1500, '1'),
        (300, '2'),
        (300, '3'),
        (300, '4'),
        (300, '#'),
    ];
    let report = call(&engine, &keys, 5000, Duration::from_secs(11));
    assert_heard(
        &report,
        &["greeting", "ask/account", "please-hold", "music/default"],
        20,
    );
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    let log = engine.log();
    assert!(log.contains("queue=support"), "{log}");
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
