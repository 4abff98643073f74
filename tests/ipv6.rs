//! A call over IPv6 on `[::1]`, end to end: SIPp calls the engine listening
//! on `[::1]` (SIP) with RTP bound to `::1`, and a caller of our own hears
//! the line (SDP `IN IP6`) and is heard. Dual-stack lists (`sip.listen`
//! and `rtp.bind` with one address per family) are not done yet: one
//! family per engine.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::ua::TestUa;
use common::Engine;

fn engine() -> Engine {
    Engine::start_at(
        "::1",
        "trunks:\n  - name: v6\n    allow: ['::1/128']\n",
        "rtp: { bind: '::1' }\ncalls: { media-timeout: 0s }\n",
    )
}

#[test]
fn sipp_calls_over_ipv6_and_our_caller_hears_and_is_heard() {
    let engine = engine();
    // SIPp on [::1]: the call is set up and torn down.
    let p = engine.ports;
    let out = Command::new("sipp")
        .arg("-sf")
        .arg(common::scenario("caller-basic.xml"))
        .args(["-s", "echo", "-d", "1000", "-m", "1"])
        .args([
            "-i",
            "::1",
            "-p",
            &p.sipp(0).to_string(),
            "-mp",
            &p.sipp_media(0).to_string(),
        ])
        .args(["-cp", &p.sipp_control(0).to_string()])
        .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
        .arg(format!("[::1]:{}", engine.sip.port()))
        .stdin(Stdio::null())
        .output()
        .expect("cannot run sipp");
    let run = common::SippRun {
        status: out.status,
        output: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    };
    run.assert_ok();
    assert_eq!(run.successful(), 1);

    // A caller of ours: the answer says IN IP6, the line's audio comes,
    // and its '#' (RFC 4733) is heard: the key-test line hangs up.
    let mut ua = TestUa::call_from("::1", engine.sip, p.spare(0), p.spare(2), "echo", "0 101");
    assert!(ua.answer.contains("c=IN IP6 ::1"), "{}", ua.answer);
    let got = ua.receive(Duration::from_secs(2));
    assert!(got.len() >= 50, "only {} packets over IPv6", got.len());
    std::thread::sleep(Duration::from_millis(300));
    ua.press_rfc4733('#');
    assert!(
        ua.expect_bye(Duration::from_secs(8)),
        "the engine did not hear the key over IPv6:\n{}",
        engine.log()
    );
}
