//! Call quality from RTCP (RFC 3550): a caller of the test's own reads the
//! engine's sender reports and answers with receiver reports of what it
//! got; the engine measures what it receives. Loss comes from the
//! impairment relay (seeded). What an operator sees is checked: the call
//! in progress in the API, the call record, `/metrics` and `hotline report`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::relay::Relay;
use common::ua::TestUa;
use common::Engine;
use hotline::media::rtcp::{self, Reception};
use hotline::media::rtp;
use serde_json::Value;

/// A flow that holds the caller (waiting for a key) for a minute.
const HOLD: &str = "entry: wait\nnodes:\n  wait: { collect: { into: k, max: 1, timeout: 60s }, next: bye, exhausted: bye }\n  bye: { hangup: goodbye }\n";

const UA_SSRC: u32 = 0x1234_5678;

/// What the caller saw of the engine's RTCP.
#[derive(Default)]
struct Seen {
    /// Sender reports: (sender SSRC, packets it says it sent).
    srs: Vec<u32>,
    /// The SSRC of the engine's RTP.
    rtp_ssrc: Option<u32>,
    rtp_packets: u64,
}

fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
}

/// Talks for `secs`: a 20 ms packet out each time; the engine's RTP is
/// measured (every `lose_every`-th packet counted as lost, as a lossy
/// downlink would); its SRs are read from `rtcp` (`None`: muxed on the RTP
/// port) and a receiver report goes to `engine_rtcp` every 2 s.
fn talk(
    ua: &mut TestUa,
    secs: u64,
    rtcp_socket: Option<&UdpSocket>,
    engine_rtcp: SocketAddr,
    lose_every: Option<u64>,
) -> Seen {
    ua.rtp.set_nonblocking(true).unwrap();
    if let Some(s) = rtcp_socket {
        s.set_nonblocking(true).unwrap();
    }
    let mut seen = Seen::default();
    let mut reception = Reception::default();
    let start = Instant::now();
    let mut next_rr = start + Duration::from_secs(2);
    let mut ts = 0u32;
    let mut buf = [0u8; 2048];
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        ts = ts.wrapping_add(160);
        ua.send_rtp(0, false, ts, &[0xff; 160]);
        let mut take = |packet: &[u8], seen: &mut Seen, reception: &mut Reception| {
            let ntp = rtcp::ntp(since_epoch());
            if rtcp::is_rtcp(packet) {
                for r in rtcp::parse(packet).expect("the engine's RTCP parses") {
                    if let Some(their) = r.ntp {
                        reception.on_sender_report(their, ntp);
                        seen.srs.push(r.ssrc);
                    }
                }
            } else if let Some((info, _)) = rtp::parse(packet) {
                seen.rtp_ssrc = Some(info.ssrc);
                seen.rtp_packets += 1;
                n += 1;
                if lose_every.is_some_and(|k| n % k == 0) {
                    return;
                }
                let arrival = (since_epoch().as_micros() * 8 / 1000) as u32;
                reception.on_packet(info.ssrc, info.sequence, info.timestamp, arrival, true);
            }
        };
        while let Ok((len, _)) = ua.rtp.recv_from(&mut buf) {
            take(&buf[..len], &mut seen, &mut reception);
        }
        if let Some(s) = rtcp_socket {
            while let Ok((len, _)) = s.recv_from(&mut buf) {
                take(&buf[..len], &mut seen, &mut reception);
            }
        }
        if Instant::now() >= next_rr {
            next_rr += Duration::from_secs(2);
            let block = reception.block(rtcp::ntp(since_epoch()));
            let mut rr = Vec::new();
            rtcp::write(&mut rr, UA_SSRC, None, block.as_ref(), "ua@test", false);
            let from = rtcp_socket.unwrap_or(&ua.rtp);
            from.send_to(&rr, engine_rtcp).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ua.rtp.set_nonblocking(false).unwrap();
    seen
}

/// The caller's leg in the record of the last call.
fn caller_leg(engine: &Engine) -> (Value, Value) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let cdrs = common::cdrs(engine);
        if let Some(c) = cdrs.last().filter(|c| c["quality"].is_array()) {
            let leg = c["quality"][0].clone();
            return (c.clone(), leg);
        }
        assert!(Instant::now() < until, "no record with quality: {cdrs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_clean_line_scores_high_and_the_api_shows_its_reports_as_they_come() {
    let engine = Engine::with_flow(HOLD, "");
    let p = engine.ports;
    // RTCP muxed on the RTP port (RFC 5761), as the offer asks.
    let mut ua = TestUa::call_with(
        "127.0.0.1",
        engine.sip,
        p.spare(0),
        p.spare(1),
        "100",
        "0",
        "a=rtcp-mux\r\n",
    );
    assert!(ua.answer.contains("a=rtcp-mux"), "{}", ua.answer);
    let engine_rtp = ua.engine_rtp;
    let seen = talk(&mut ua, 9, None, engine_rtp, None);
    assert!(seen.rtp_packets > 300, "{} RTP packets", seen.rtp_packets);
    assert!(
        !seen.srs.is_empty(),
        "no sender report from the engine in 9 s"
    );
    assert!(
        seen.srs.iter().all(|s| Some(*s) == seen.rtp_ssrc),
        "the SRs are for the engine's RTP stream"
    );

    // While the call goes on: the operator sees the caller leg's figures.
    let (status, body) = common::api_get(&engine, "/api/calls");
    assert_eq!(status, 200, "{body}");
    let calls: Value = serde_json::from_str(&body).unwrap();
    let leg = &calls[0]["quality"][0];
    assert_eq!(leg["leg"], "caller", "{calls}");
    assert!(f(&leg["received"]) > 300.0, "{leg}");
    assert!(
        f(&leg["reports"]) >= 1.0,
        "our receiver reports were read: {leg}"
    );
    let rtt = f(&leg["rtt_ms"]);
    assert!(
        (0.0..100.0).contains(&rtt),
        "a round trip on loopback: {leg}"
    );

    ua.bye();
    let (cdr, leg) = caller_leg(&engine);
    assert_eq!(f(&leg["loss"]), 0.0, "{leg}");
    assert_eq!(f(&leg["remote_loss"]), 0.0, "{leg}");
    assert!(f(&leg["jitter_ms"]) < 10.0, "{leg}");
    assert!(f(&leg["mos"]) >= 4.2, "{leg}");
    assert_eq!(cdr["mos"], leg["mos"]);
    // The histogram has the leg.
    let metrics = common::metrics(&engine);
    assert!(
        metrics.contains("hotline_call_mos_count{leg=\"caller\"} 1"),
        "{metrics}"
    );
}

#[test]
fn ten_percent_loss_brings_the_mos_under_3_6_and_the_report_lists_the_call() {
    let engine = Engine::with_flow(HOLD, "");
    let p = engine.ports;
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "100", "0");
    assert!(!ua.answer.contains("rtcp-mux"), "{}", ua.answer);
    // RTCP on the next port up, both sides.
    let rtcp_socket = UdpSocket::bind(("127.0.0.1", p.spare(1) + 1)).unwrap();
    let engine_rtcp = SocketAddr::new(ua.engine_rtp.ip(), ua.engine_rtp.port() + 1);
    // The caller's audio loses 10 % on its way in; the caller loses every
    // 20th packet of the engine's (5 %, which its reports say).
    let relay = Relay::start(ua.engine_rtp, 0.10, Duration::ZERO, 3550);
    ua.engine_rtp = relay.front;
    let seen = talk(&mut ua, 12, Some(&rtcp_socket), engine_rtcp, Some(20));
    assert!(!seen.srs.is_empty(), "no sender report on the RTCP port");
    let dropped = relay.dropped.load(Ordering::Relaxed) as f64;
    ua.bye();
    let (cdr, leg) = caller_leg(&engine);
    let (received, lost) = (f(&leg["received"]), f(&leg["lost"]));
    // What the relay dropped is what the record says was lost (give or
    // take the packets in flight as the call ended).
    assert!(
        (lost - dropped).abs() <= 3.0,
        "lost {lost}, relay dropped {dropped}: {leg}"
    );
    let loss = f(&leg["loss"]);
    assert!((0.07..0.13).contains(&loss), "{leg}");
    assert!((lost / (lost + received) - loss).abs() < 0.001, "{leg}");
    let remote = f(&leg["remote_loss"]);
    assert!(
        (0.04..0.06).contains(&remote),
        "the caller's reports: {leg}"
    );
    let mos = f(&leg["mos"]);
    let model = rtcp::mos_of(rtcp::r_factor(loss, 0.0));
    assert!(
        mos < 3.6 && (mos - model).abs() < 0.1,
        "MOS {mos}, model {model}: {leg}"
    );
    assert_eq!(cdr["mos"], leg["mos"]);

    // The supervisor's report counts it as a poor call.
    let report = common::report_json(&engine, &["--since", "10m"]);
    assert_eq!(
        report["poor_quality_calls"][0]["call_id"], cdr["call_id"],
        "{report}"
    );
    let row = &report["rows"][0];
    assert_eq!(
        (row["mos_scored"].as_u64(), row["poor_quality"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
}
