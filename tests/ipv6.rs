//! A call over IPv6 on `[::1]`, end to end: SIPp calls the engine listening
//! on `[::1]` (SIP) with RTP bound to `::1`, and a caller of our own hears
//! the line (SDP `IN IP6`) and is heard. A dual-stack engine (`sip.listen`
//! and `rtp.bind` with an address per family) takes calls of both families
//! at once, each with media of its own family.

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

/// SIPp calls `target` from `ip` (on the engine's test ports) and hangs
/// up after a second.
fn sipp_calls(engine: &Engine, ip: &str, target: std::net::SocketAddr) -> common::SippRun {
    let p = engine.ports;
    let out = Command::new("sipp")
        .arg("-sf")
        .arg(common::scenario("caller-basic.xml"))
        .args(["-s", "echo", "-d", "1000", "-m", "1"])
        .args([
            "-i",
            ip,
            "-p",
            &p.sipp(0).to_string(),
            "-mp",
            &p.sipp_media(0).to_string(),
        ])
        .args(["-cp", &p.sipp_control(0).to_string()])
        .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
        .arg(target.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("cannot run sipp");
    common::SippRun {
        status: out.status,
        output: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

#[test]
fn sipp_calls_over_ipv6_and_our_caller_hears_and_is_heard() {
    let engine = engine();
    // SIPp on [::1]: the call is set up and torn down.
    let p = engine.ports;
    let run = sipp_calls(&engine, "::1", engine.sip);
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

/// Calls `sip` from `ip` (a caller of ours): the answer's media is of the
/// caller's family, the line's audio comes, and its '#' is heard.
fn call_hears_and_is_heard(
    engine: &Engine,
    ip: &str,
    sip: std::net::SocketAddr,
    ports: (u16, u16),
    sdp: &str,
) {
    let mut ua = TestUa::call_from(ip, sip, ports.0, ports.1, "echo", "0 101");
    assert!(ua.answer.contains(sdp), "{}", ua.answer);
    assert_eq!(ua.engine_rtp.ip(), ip.parse::<std::net::IpAddr>().unwrap());
    let got = ua.receive(Duration::from_secs(2));
    assert!(got.len() >= 50, "only {} packets from {ip}", got.len());
    std::thread::sleep(Duration::from_millis(300));
    ua.press_rfc4733('#');
    assert!(
        ua.expect_bye(Duration::from_secs(8)),
        "the engine did not hear the key from {ip}:\n{}",
        engine.log()
    );
}

#[test]
fn a_dual_stack_engine_takes_calls_of_both_families_each_with_its_own_media() {
    let engine = Engine::start_dual_stack(
        "trunks:\n  - name: both\n    allow: [127.0.0.0/8, '::1/128']\n",
        "rtp: { bind: ['127.0.0.1', '::1'] }\ncalls: { media-timeout: 0s }\n",
    );
    let p = engine.ports;
    let v6 = engine.sip_also.unwrap();
    // One after the other and then at once: each call's SDP, RTP and SIP
    // are of its own family.
    call_hears_and_is_heard(
        &engine,
        "127.0.0.1",
        engine.sip,
        (p.spare(0), p.spare(1)),
        "c=IN IP4 127.0.0.1",
    );
    call_hears_and_is_heard(&engine, "::1", v6, (p.spare(2), p.spare(3)), "c=IN IP6 ::1");
    let e = &engine;
    std::thread::scope(|s| {
        s.spawn(|| call_hears_and_is_heard(e, "::1", v6, (p.spare(4), p.spare(5)), "c=IN IP6 ::1"));
        call_hears_and_is_heard(
            e,
            "127.0.0.1",
            e.sip,
            (p.spare(6), p.spare(7)),
            "c=IN IP4 127.0.0.1",
        );
    });
    // SIPp over IPv4 too, to the same engine.
    let run = sipp_calls(&engine, "127.0.0.1", engine.sip);
    run.assert_ok();
}

#[test]
fn an_ipv6_caller_is_bridged_to_an_ipv4_agent_and_hears_it() {
    let flows = std::env::temp_dir().join(format!("hotline-v6-flows-{}", std::process::id()));
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("q.yaml"),
        "entry: q\nnodes:\n  q: { queue: support }\n",
    )
    .unwrap();
    let engine = Engine::start_dual_stack(
        "trunks:\n  - name: both\n    allow: [127.0.0.0/8, '::1/128']\n",
        &format!(
            "flows-dir: {}\nroutes: {{ default: q }}\nrtp: {{ bind: ['127.0.0.1', '::1'] }}\n\
calls: {{ media-timeout: 0s, leg-check: 0s }}\n\
agents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}\n\
registrar: {{ algorithms: [MD5], keepalive: 0s }}\n",
            flows.display()
        ),
    );
    let port = common::Ports::next().spare(0);
    // The agent's phone registers and answers over IPv4, echoing what it gets.
    common::register(&engine, "1001", port);
    let seen = engine.dir.join("agent-messages.log");
    let agent = common::traced_phone("agent-answer.xml", port, &seen);
    std::thread::sleep(Duration::from_millis(300));
    let p = engine.ports;
    let mut ua = TestUa::call_from(
        "::1",
        engine.sip_also.unwrap(),
        p.spare(0),
        p.spare(1),
        "100",
        "0",
    );
    assert!(ua.answer.contains("c=IN IP6 ::1"), "{}", ua.answer);
    assert!(
        engine.wait_log("caller bridged", Duration::from_secs(5)),
        "{}",
        engine.log()
    );
    // What the caller says over IPv6 comes back from the agent over IPv4.
    let said = [0x55u8; 160];
    for i in 0..75u32 {
        ua.send_rtp(0, false, 160 * i, &said);
        std::thread::sleep(Duration::from_millis(20));
    }
    let back = ua.receive(Duration::from_millis(800));
    let echoed = back.iter().filter(|p| p.payload == said).count();
    assert!(
        echoed >= 50,
        "only {echoed} of 75 packets came back through the agent"
    );
    ua.bye();
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}");
    // The agent was offered media of its own family.
    let messages = std::fs::read_to_string(&seen).unwrap();
    let invite = messages
        .split("INVITE sip:")
        .nth(1)
        .expect("the agent got the INVITE");
    assert!(invite.contains("c=IN IP4 127.0.0.1"), "{invite}");
    assert!(!invite.contains("IP6"), "{invite}");
    let _ = std::fs::remove_dir_all(&flows);
}
