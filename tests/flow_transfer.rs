//! A `transfer` node: Hotline calls the configured target (a SIPp answering
//! side), bridges the caller to it, and relays audio both ways; a busy
//! target sends the caller down the node's error path.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_heard, keys_scenario_with, payloads_of_busiest, rtp_sink, sipp, Engine};

/// A SIPp answering side on `port` (media on `port + 2`) for one call.
fn answering_side(args: &[&str], port: u16) -> Child {
    common::require("sipp", "sip-tester");
    Command::new("sipp")
        .args(args)
        .args([
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args([
            "-mp",
            &(port + 2).to_string(),
            "-cp",
            &(port + 1).to_string(),
        ])
        .args(["-m", "1", "-nostdin", "-timeout", "60s", "-timeout_error"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start sipp")
}

fn finish(mut child: Child) -> (bool, String) {
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    (child.wait().map(|s| s.success()).unwrap_or(false), out)
}

fn engine(target_port: u16) -> Engine {
    let flows = std::env::temp_dir().join(format!(
        "hotline-transfer-{}-{target_port}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&flows);
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("desk.yaml"),
        "entry: hello\nnodes:\n  hello: { play: greeting, next: xfer }\n  xfer: { transfer: desk, on-error: sorry }\n  sorry: { hangup: menu/closed }\n",
    )
    .unwrap();
    Engine::start_with(
        "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
        &format!(
            "flows-dir: {}\nroutes: {{ default: desk }}\ntransfers: {{ desk: 'sip:desk@127.0.0.1:{target_port}' }}\n",
            flows.display()
        ),
    )
}

#[test]
fn the_caller_is_bridged_to_the_target_and_audio_flows_both_ways() {
    // The target's ports come from a block of its own.
    let target_port = common::Ports::next().spare(0);
    let engine = engine(target_port);
    // The target answers and echoes every RTP packet back.
    let target = answering_side(&["-sn", "uas", "-rtp_echo"], target_port);
    std::thread::sleep(Duration::from_millis(300));

    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(10));
    // The caller speaks from the answer on and stays 8 s.
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 8000, true);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();

    let (ok, out) = finish(target);
    assert!(
        ok,
        "the target saw no complete call:\n{out}\n{}",
        engine.log()
    );
    let log = engine.log();
    assert!(log.contains("answered; caller bridged"), "{log}");

    // The caller heard the greeting, then their own voice: it crossed the
    // bridge to the target, was echoed, and crossed back.
    assert_heard(&report, &["greeting"], 20);
    let spoken = std::fs::read(common::scenario("load-audio.ulaw")).unwrap();
    let frames: std::collections::HashSet<&[u8]> = spoken.chunks(160).collect();
    let heard = payloads_of_busiest(&report);
    let echoed = heard
        .iter()
        .filter(|p| frames.contains(p.as_slice()))
        .count();
    assert!(
        echoed >= 100,
        "only {echoed} of {} packets were the caller's own audio",
        heard.len()
    );
}

#[test]
fn a_busy_target_sends_the_caller_down_the_error_path() {
    let target_port = common::Ports::next().spare(0);
    let engine = engine(target_port);
    let target = answering_side(
        &[
            "-sf",
            &common::scenario("uas-busy.xml").display().to_string(),
        ],
        target_port,
    );
    std::thread::sleep(Duration::from_millis(300));

    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(8));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 6500, false);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    assert_heard(&sink.join().unwrap(), &["greeting", "menu/closed"], 20);
    let (ok, out) = finish(target);
    assert!(ok, "{out}");
    let log = engine.log();
    assert!(
        log.contains("transfer failed") && log.contains("answered 486"),
        "{log}"
    );
}
