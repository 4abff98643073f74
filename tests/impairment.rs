//! The network's faults, in a harness of their own. Loopback hides loss,
//! jitter and reordering, and these machines have no `netem`: RTP goes
//! through a userspace impairment relay of the test's own (UDP in; dropped,
//! delayed or reordered on a seeded schedule; UDP out), SIP loss comes from
//! nftables `numgen random` rules in a network namespace the test makes
//! (named with its PID, removed even when the test fails), and a flood
//! comes from a sender of our own (SIPp cannot send 5,000 INVITEs a second
//! here; `tests/flood.rs`, alone in its binary for its ports). Needs root
//! for the namespace (CI is root).

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::netns::{sh, Netns};
use common::relay::{Relay, Rng};
use common::ua::TestUa;
use common::Engine;
use hotline::media::dtmf;

/// A flow that collects 10 × 20 digits into `d0`..`d9` and hangs up.
fn collect_flow() -> String {
    let mut flow = String::from("entry: c0\nnodes:\n");
    for i in 0..10 {
        let next = if i == 9 {
            "bye".to_owned()
        } else {
            format!("c{}", i + 1)
        };
        flow.push_str(&format!(
            "  c{i}: {{ collect: {{ into: d{i}, max: 20, end: none, timeout: 20s, inter-digit-timeout: 10s }}, next: {next}, exhausted: {next} }}\n"
        ));
    }
    flow.push_str("  bye: { hangup: goodbye }\n");
    flow
}

/// Keys with no key twice in a row, so a key counted twice shows.
fn keys(n: usize, seed: u64) -> Vec<char> {
    let all: Vec<char> = "0123456789*#".chars().collect();
    let mut rng = Rng(seed);
    let mut out: Vec<char> = Vec::with_capacity(n);
    while out.len() < n {
        let k = all[(rng.next() % 12) as usize];
        if out.last() != Some(&k) {
            out.push(k);
        }
    }
    out
}

/// `got` must be what was `sent` with some keys missing, none added:
/// returns how many were missing.
fn missing(sent: &[char], got: &str) -> usize {
    let mut it = sent.iter();
    for g in got.chars() {
        assert!(
            it.any(|s| *s == g),
            "a key that was not sent, or counted twice: sent {} got {got}",
            sent.iter().collect::<String>()
        );
    }
    sent.len() - got.chars().count()
}

/// The digits the flow collected, from the call's record (as an operator
/// reads it from the API).
fn collected(engine: &Engine) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = common::api_get(engine, "/api/cdrs?since=1h");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(c) = v.as_array().and_then(|a| a.last()) {
            return (0..10)
                .filter_map(|i| c["vars"][format!("d{i}")].as_str().map(str::to_owned))
                .collect();
        }
        assert!(Instant::now() < until, "no call record: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn digits_survive_a_lossy_jittery_path_and_none_is_counted_twice() {
    let engine = Engine::with_flow(&collect_flow(), "");
    let p = engine.ports;

    // RFC 4733: 200 keys over 5 % loss and 30 ms of jitter.
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "100", "0 101");
    let relay = Relay::start(ua.engine_rtp, 0.05, Duration::from_millis(30), 4733);
    ua.engine_rtp = relay.front;
    // A second of audio first: the engine learns the relay's port.
    ua.send_pcmu(&vec![0i16; 8000]);
    let sent = keys(200, 7);
    for &k in &sent {
        ua.press_rfc4733(k);
        ua.send_pcmu(&vec![0i16; 320]);
    }
    assert!(
        ua.expect_bye(Duration::from_secs(15)),
        "the flow did not end"
    );
    let got = collected(&engine);
    let lost = missing(&sent, &got);
    assert!(
        relay.dropped.load(Ordering::Relaxed) > 50,
        "the relay dropped too little to test anything"
    );
    assert!(
        lost <= 2,
        "{lost} of 200 RFC 4733 keys missed (at most 1 %)"
    );
    drop(relay);

    // In-band: 100 tones over 1 % loss.
    let engine = Engine::with_flow(&collect_flow().replace("max: 20", "max: 10"), "");
    let p = engine.ports;
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "100", "0");
    let relay = Relay::start(ua.engine_rtp, 0.01, Duration::ZERO, 1);
    ua.engine_rtp = relay.front;
    ua.send_pcmu(&vec![0i16; 8000]);
    let sent = keys(100, 11);
    let mut audio = Vec::new();
    for &k in &sent {
        audio.extend(dtmf::synthesize(k, 80, 12000.0));
        audio.extend(vec![0i16; 640]);
    }
    ua.send_pcmu(&audio);
    assert!(
        ua.expect_bye(Duration::from_secs(15)),
        "the flow did not end"
    );
    let got = collected(&engine);
    let lost = missing(&sent, &got);
    assert!(lost <= 2, "{lost} of 100 in-band keys missed (at most 2 %)");
}

#[test]
fn a_hundred_calls_over_sip_with_ten_percent_loss_all_succeed() {
    common::require("nft", "nftables");
    let ns = Netns::new("a");
    let engine = Engine::start_at(
        &ns.host_ip,
        &format!("trunks:\n  - name: far\n    allow: [{}/32]\n", ns.inside_ip),
        &format!("rtp: {{ bind: {} }}\n", ns.host_ip),
    );
    let port = engine.sip.port();
    // 10 % of SIP packets each way are dropped where they arrive (ingress
    // of each end of the veth pair, so no sender sees an error): towards
    // the engine on the host's end (a table named for this test, removed
    // with the namespace), towards SIPp inside the namespace.
    let toward_engine = format!(
        "table netdev {table} {{\n  chain loss {{ type filter hook ingress device \"{dev}\" priority 0; policy accept; udp dport {port} numgen random mod 100 < 10 counter drop; }}\n}}\n",
        table = ns.table(),
        dev = ns.host_dev()
    );
    let toward_sipp = format!(
        "table netdev hotline_loss {{\n  chain loss {{ type filter hook ingress device \"{dev}\" priority 0; policy accept; udp sport {port} numgen random mod 100 < 10 counter drop; }}\n}}\n",
        dev = ns.inside_dev()
    );
    let file = engine.dir.join("loss-host.nft");
    std::fs::write(&file, toward_engine).unwrap();
    sh(&format!("nft -f {}", file.display()));
    let file = engine.dir.join("loss-inside.nft");
    std::fs::write(&file, toward_sipp).unwrap();
    let out = ns.exec().args(["nft", "-f"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sc = common::scenario("caller-basic.xml");
    let p = engine.ports;
    let out = ns
        .exec()
        .arg("sipp")
        .args(["-sf", &sc.display().to_string(), "-s", "100", "-d", "500"])
        .args(["-i", &ns.inside_ip, "-mi", &ns.inside_ip])
        .args([
            "-p",
            &p.sipp(0).to_string(),
            "-mp",
            &p.sipp_media(0).to_string(),
        ])
        .args(["-cp", &p.sipp_control(0).to_string()])
        .args(["-m", "100", "-r", "20", "-l", "40"])
        .args(["-timeout", "120s", "-timeout_error", "-nostdin"])
        .arg(engine.sip.to_string())
        .current_dir(&engine.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let run = common::SippRun {
        status: out.status,
        output: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    };
    let inside = ns
        .exec()
        .args(["nft", "list", "table", "netdev", "hotline_loss"])
        .output()
        .unwrap();
    let host = Command::new("nft")
        .args(["list", "table", "netdev", &ns.table()])
        .output()
        .unwrap();
    let counters = String::from_utf8_lossy(&inside.stdout).into_owned()
        + &String::from_utf8_lossy(&host.stdout);
    assert_eq!(
        (run.successful(), run.failed()),
        (100, 0),
        "{} {}\n{counters}",
        run.status,
        run.output
    );
    run.assert_ok();
    // The rules did drop packets (else this tested nothing).
    let drops: u64 = counters
        .split("packets ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(drops >= 40, "only {drops} packets dropped:\n{counters}");
}
