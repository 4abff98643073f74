//! A `transfer` node: Hotline calls the configured target (a SIPp answering
//! side), bridges the caller to it, and relays audio both ways; a busy
//! target sends the caller down the node's error path.

mod common;

use std::time::Duration;

use common::{assert_heard, keys_scenario_with, payloads_of_busiest, rtp_sink, sipp, Engine};

fn engine(target_port: u16) -> Engine {
    Engine::with_flow(
        "entry: hello\nnodes:\n  hello: { play: greeting, next: xfer }\n  xfer: { transfer: desk, on-error: sorry }\n  sorry: { hangup: menu/closed }\n",
        &format!("transfers: {{ desk: 'sip:desk@127.0.0.1:{target_port}' }}\n"),
    )
}

#[test]
fn the_caller_is_bridged_to_the_target_and_audio_flows_both_ways() {
    // The target's ports come from a block of its own.
    let target_port = common::Ports::next().spare(0);
    let engine = engine(target_port);
    // The target answers and echoes every RTP packet back.
    let target = common::sipp_side(&["-sn", "uas", "-rtp_echo"], target_port, None);
    std::thread::sleep(Duration::from_millis(300));

    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(10));
    // The caller speaks from the answer on and stays 8 s.
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 8000, true);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();

    let (ok, out) = common::finish(target);
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
    let busy = common::scenario("uas-busy.xml").display().to_string();
    let target = common::sipp_side(&["-sf", &busy], target_port, None);
    std::thread::sleep(Duration::from_millis(300));

    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(8));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 6500, false);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    assert_heard(&sink.join().unwrap(), &["greeting", "menu/closed"], 20);
    let (ok, out) = common::finish(target);
    assert!(ok, "{out}");
    let log = engine.log();
    assert!(
        log.contains("transfer failed") && log.contains("answered 486"),
        "{log}"
    );
}

#[test]
fn a_transfer_to_a_name_in_dns_goes_to_the_srv_target_that_answers() {
    let p = common::Ports::next();
    let (dns_port, down_port, up_port) = (p.spare(0), p.spare(10), p.spare(20));
    // NAPTR then SRV: the first target (priority 10) is a socket of ours
    // that only listens; the second (priority 20) is an answering SIPp.
    let (dns, silent, dir) =
        common::dnsmasq::Dnsmasq::with_two_targets(dns_port, "desk.test", down_port, up_port);
    let engine = Engine::with_flow(
        "entry: hello\nnodes:\n  hello: { play: greeting, next: xfer }\n  xfer: { transfer: desk, on-error: sorry }\n  sorry: { hangup: menu/closed }\n",
        &format!(
            "transfers: {{ desk: 'sip:desk@desk.test' }}\ndns: {{ servers: ['{}'], failover-after: 2s }}\n",
            dns.addr
        ),
    );
    let target = common::sipp_side(&["-sn", "uas", "-rtp_echo"], up_port, None);
    std::thread::sleep(Duration::from_millis(300));

    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(12));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 9000, true);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();
    let (ok, out) = common::finish(target);
    assert!(
        ok,
        "the second target saw no complete call:\n{out}\n{}",
        engine.log()
    );
    // The caller was bridged there: their voice came back from it.
    assert_heard(&report, &["greeting"], 20);
    let spoken = std::fs::read(common::scenario("load-audio.ulaw")).unwrap();
    let frames: std::collections::HashSet<&[u8]> = spoken.chunks(160).collect();
    let echoed = payloads_of_busiest(&report)
        .iter()
        .filter(|p| frames.contains(p.as_slice()))
        .count();
    assert!(
        echoed >= 50,
        "only {echoed} of the caller's packets came back"
    );
    // The first target was asked first, by NAPTR and SRV order.
    dns.assert_first_target_tried("desk.test", &silent, "sip:desk@desk.test");
    assert!(common::metrics(&engine).contains("hotline_sip_failovers_total 1"));
    let _ = std::fs::remove_dir_all(&dir);
}
