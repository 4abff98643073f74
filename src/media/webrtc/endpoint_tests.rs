//! The endpoint against webrtc-rs's own full-ICE peer (a browser's part),
//! over an in-memory network on a virtual clock.

use super::super::test_audio::{power, tone};
use super::*;

const ENGINE: &str = "192.0.2.10:3478";
const BROWSER: &str = "198.51.100.7:50000";

fn settings() -> Settings {
    Settings {
        local: ENGINE.parse().unwrap(),
        candidate: ENGINE.parse().unwrap(),
        consent_timeout: Duration::from_secs(10),
        opus: false,
    }
}

/// The browser's side: webrtc-rs's full-ICE peer, and what it got.
struct Browser {
    peer: super::super::peer::Peer,
    connected: bool,
    received: Vec<(RtpInfo, Bytes)>,
    /// RTCP it received (decrypted).
    rtcp: Vec<Bytes>,
    /// Its answer (SDP).
    sdp: String,
}

impl Browser {
    fn answer(offer: &str, wire: Wire, now: Instant) -> (Browser, String) {
        let (peer, answer) =
            super::super::peer::Peer::answer(offer, BROWSER.parse().unwrap(), 4242, wire, now)
                .unwrap();
        (
            Browser {
                peer,
                connected: false,
                received: Vec::new(),
                rtcp: Vec::new(),
                sdp: answer.clone(),
            },
            answer,
        )
    }

    fn receive(&mut self, bytes: BytesMut, now: Instant) {
        self.peer.receive(ENGINE.parse().unwrap(), bytes, now);
    }

    fn step(&mut self, now: Instant) -> Vec<BytesMut> {
        let polled = self.peer.poll(now);
        if let Some(c) = polled.connected {
            self.connected = c;
        }
        self.received.extend(polled.received);
        self.rtcp.extend(polled.rtcp);
        polled
            .out
            .into_iter()
            .map(|(to, bytes)| {
                assert_eq!(to, ENGINE.parse::<SocketAddr>().unwrap());
                bytes
            })
            .collect()
    }

    fn send(&mut self, seq: u16, payload: &[u8], now: Instant) {
        assert!(self.peer.send(seq, payload, now));
    }
}

/// Runs both sides for `ms` virtual milliseconds in 10 ms steps, the
/// browser sending packets only while `browser_alive`.
fn run(
    engine: &mut Endpoint,
    browser: &mut Browser,
    start: Instant,
    from_ms: u64,
    ms: u64,
    browser_alive: bool,
) -> Instant {
    let browser_addr: SocketAddr = BROWSER.parse().unwrap();
    let mut now = start;
    for t in (from_ms..from_ms + ms).step_by(10) {
        now = start + Duration::from_millis(t);
        engine.tick(now);
        while let Some((to, bytes)) = engine.poll_transmit() {
            assert_eq!(to, browser_addr);
            browser.receive(bytes, now);
        }
        for bytes in browser.step(now) {
            if browser_alive {
                engine.receive(browser_addr, bytes, now);
            }
        }
    }
    now
}

fn connected_pair(start: Instant) -> (Endpoint, Browser) {
    connected_pair_of(&settings(), Wire::G711(Codec::Pcmu), start)
}

fn connected_pair_of(settings: &Settings, wire: Wire, start: Instant) -> (Endpoint, Browser) {
    let (mut engine, offer) = Endpoint::offer(settings, Codec::Pcmu, 777, start).unwrap();
    let events = match wire {
        Wire::G711(_) => "a=rtpmap:101 telephone-event/8000",
        Wire::Opus => "a=rtpmap:101 telephone-event/48000",
    };
    assert!(offer.contains(events), "{offer}");
    assert!(offer.contains("a=ice-lite"), "{offer}");
    assert!(offer.contains("a=rtcp-mux"), "{offer}");
    assert!(offer.contains(engine.ufrag()), "{offer}");
    let (mut browser, answer) = Browser::answer(&offer, wire, start);
    engine.answer(&answer, start).unwrap();
    run(&mut engine, &mut browser, start, 0, 2000, true);
    assert_eq!(engine.poll_state(), Some(LinkState::Connected));
    assert!(browser.connected);
    (engine, browser)
}

#[test]
fn a_browser_connects_to_the_lite_endpoint_and_audio_flows_both_ways_encrypted() {
    let start = Instant::now();
    let (mut engine, mut browser) = connected_pair(start);
    let mut at = 2000;
    for seq in 0..50u16 {
        let now = start + Duration::from_millis(at);
        let info = RtpInfo {
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 0,
            marker: seq == 0,
        };
        assert!(engine.send_rtp(&info, &[seq as u8; 160], now));
        browser.send(seq, &[0x55; 160], now);
        run(&mut engine, &mut browser, start, at, 20, true);
        at += 20;
    }
    let mut got = Vec::new();
    while let Some(p) = engine.poll_rtp() {
        got.push(p);
    }
    assert!(got.len() >= 48, "the engine got {} of 50", got.len());
    assert!(got
        .iter()
        .all(|(i, p)| i.payload_type == 0 && p[..] == [0x55; 160]));
    assert!(
        browser.received.len() >= 48,
        "the browser got {}",
        browser.received.len()
    );
    let (info, payload) = &browser.received[5];
    assert_eq!(info.ssrc, 777);
    assert_eq!(payload[..], [info.sequence as u8; 160]);
    assert_eq!(engine.state(), LinkState::Connected);
}

#[test]
fn with_opus_the_browser_gets_opus_and_the_media_path_speaks_g711_both_ways() {
    use crate::media::g711;
    use opus_rs::{Application, OpusDecoder, OpusEncoder};
    let start = Instant::now();
    let settings = Settings {
        opus: true,
        ..settings()
    };
    let (mut engine, mut browser) = connected_pair_of(&settings, Wire::Opus, start);
    assert_eq!(engine.wire(), Some(Wire::Opus));
    // The browser's side codes a 1 kHz tone at 48 kHz, as a browser does.
    let mut encoder = OpusEncoder::new(48_000, 1, Application::Voip).unwrap();
    let mut packet = [0u8; 1276];
    let mut at = 2000;
    for seq in 0..50u16 {
        let now = start + Duration::from_millis(at);
        // The engine sends the caller's 400 Hz in PCMU.
        let pcm = tone(400.0, 160, usize::from(seq) * 160);
        let ulaw: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
        let info = RtpInfo {
            payload_type: 0,
            sequence: seq,
            timestamp: 5000 + u32::from(seq) * 160,
            ssrc: 0,
            marker: seq == 0,
        };
        assert!(engine.send_rtp(&info, &ulaw, now));
        let wide: Vec<f32> = (0..960)
            .map(|i| {
                let t = (usize::from(seq) * 960 + i) as f32 / 48_000.0;
                0.25 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin()
            })
            .collect();
        let n = encoder.encode(&wide, 960, &mut packet).unwrap();
        browser.send(seq, &packet[..n], now);
        run(&mut engine, &mut browser, start, at, 20, true);
        at += 20;
    }
    // What the media path gets: PCMU frames of 20 ms, on the 8 kHz clock.
    let mut heard = Vec::new();
    let mut stamps = Vec::new();
    while let Some((info, payload)) = engine.poll_rtp() {
        assert_eq!(info.payload_type, 0);
        assert_eq!(payload.len(), 160);
        stamps.push(info.timestamp);
        heard.extend(payload.iter().map(|&b| g711::ulaw_decode(b)));
    }
    assert!(stamps.len() >= 48, "the engine got {}", stamps.len());
    assert!(stamps.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160));
    let settled = &heard[1600..];
    assert!(power(settled, 1000.0) > 1000.0 * power(settled, 1700.0));
    // What the browser gets: Opus on the 48 kHz clock, the caller's tone.
    let mut decoder = OpusDecoder::new(48_000, 1).unwrap();
    let mut out = vec![0f32; 5760];
    let mut got = Vec::new();
    for (info, payload) in &browser.received {
        assert_eq!(info.payload_type, super::super::opus::OPUS_PT);
        assert_eq!(info.timestamp % 960, (5000 * 6) % 960);
        let n = decoder.decode(payload, 5760, &mut out).unwrap();
        // Every sixth sample: 8 kHz, enough to find 400 Hz.
        got.extend(out[..n].iter().step_by(6).map(|&s| (s * 32768.0) as i16));
    }
    assert!(browser.received.len() >= 48);
    let settled = &got[1600..];
    assert!(power(settled, 400.0) > 1000.0 * power(settled, 1700.0));
}

#[test]
fn a_browser_that_goes_quiet_is_dead_after_the_consent_timeout_not_before() {
    let start = Instant::now();
    let (mut engine, mut browser) = connected_pair(start);
    // Consent checks keep it alive for a while with no media at all.
    run(&mut engine, &mut browser, start, 2000, 15_000, true);
    assert_eq!(engine.poll_state(), None);
    assert_eq!(engine.state(), LinkState::Connected);
    // The tab closes: nothing more comes.
    run(&mut engine, &mut browser, start, 17_000, 9_000, false);
    assert_eq!(
        engine.state(),
        LinkState::Connected,
        "dead before its timeout"
    );
    run(&mut engine, &mut browser, start, 26_000, 3_000, false);
    assert_eq!(engine.poll_state(), Some(LinkState::Failed));
    let info = RtpInfo {
        payload_type: 0,
        sequence: 1,
        timestamp: 160,
        ssrc: 0,
        marker: false,
    };
    assert!(!engine.send_rtp(&info, &[0; 160], start + Duration::from_secs(29)));
}

#[test]
fn a_broken_or_second_answer_is_refused_and_a_candidate_needs_an_answer() {
    let start = Instant::now();
    let (mut engine, offer) = Endpoint::offer(&settings(), Codec::Pcma, 1, start).unwrap();
    assert!(offer.contains("PCMA/8000"), "{offer}");
    assert!(!offer.contains("PCMU"), "{offer}");
    assert!(matches!(
        engine.candidate("candidate:1 1 udp 1 192.0.2.1 9 typ host"),
        Err(WebRtcError::Candidate(_))
    ));
    assert!(matches!(
        engine.answer("v=0\r\nnot an answer", start),
        Err(WebRtcError::Answer(_))
    ));
    // A good answer is taken once; a second is refused.
    let (mut engine, offer) = Endpoint::offer(&settings(), Codec::Pcmu, 2, start).unwrap();
    let (_, answer) = Browser::answer(&offer, Wire::G711(Codec::Pcmu), start);
    engine.answer(&answer, start).unwrap();
    assert_eq!(
        engine.answer(&answer, start),
        Err(WebRtcError::Answer("the leg already has an answer".into()))
    );
    // A candidate we cannot read is refused; the leg goes on.
    assert!(engine.candidate("candidate:garbage").is_err());
    assert!(engine.candidate("").is_ok());
}

#[test]
fn two_endpoints_have_different_ufrags() {
    let now = Instant::now();
    let (a, _) = Endpoint::offer(&settings(), Codec::Pcmu, 1, now).unwrap();
    let (b, _) = Endpoint::offer(&settings(), Codec::Pcmu, 2, now).unwrap();
    assert_ne!(a.ufrag(), b.ufrag());
    assert_eq!(a.ufrag().len(), 16);
}

#[test]
fn a_browser_phones_re_offer_changes_direction_only_and_says_whether_it_holds() {
    let start = Instant::now();
    let (mut engine, browser) = connected_pair(start);
    // JsSIP's hold: the browser offers again on the same connection,
    // sending only (its answer's credentials, the DTLS role open again).
    let reoffer = |direction: &str| {
        browser
            .sdp
            .replace("a=setup:active", "a=setup:actpass")
            .replace("a=sendrecv", &format!("a={direction}"))
    };
    let (answer, holds) = engine.reanswer(&reoffer("sendonly")).unwrap();
    assert!(holds);
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(answer.contains("a=setup:passive"), "{answer}");
    assert!(!answer.contains("a=sendrecv"), "{answer}");
    assert!(answer.contains(engine.ufrag()), "{answer}");
    let version = |sdp: &str| -> u64 {
        let o = sdp.lines().find(|l| l.starts_with("o=")).unwrap();
        o.split(' ').nth(2).unwrap().parse().unwrap()
    };
    let (resumed, holds) = engine.reanswer(&reoffer("sendrecv")).unwrap();
    assert!(!holds);
    assert!(resumed.contains("a=sendrecv"), "{resumed}");
    assert_eq!(version(&resumed), version(&answer) + 1);
    let (_, holds) = engine.reanswer(&reoffer("inactive")).unwrap();
    assert!(holds);
    // An ICE restart, other DTLS keys or another codec: refused.
    let ufrag = browser
        .sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_owned();
    let restart = reoffer("sendrecv").replace(&format!("a=ice-ufrag:{ufrag}"), "a=ice-ufrag:zzzz");
    assert!(engine.reanswer(&restart).is_err());
    let fingerprint =
        reoffer("sendrecv").replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 00:");
    assert!(engine.reanswer(&fingerprint).is_err());
    let other_codec = reoffer("sendrecv").replace("SAVPF 0 101", "SAVPF 8 101");
    assert!(engine.reanswer(&other_codec).is_err());
    assert_eq!(engine.state(), LinkState::Connected);
}

#[test]
fn reports_cross_both_ways_through_srtcp_and_an_opus_legs_sr_is_on_its_clock() {
    use crate::media::quality::{LegRtcp, QualityHandle};
    use crate::media::rtcp;
    let mut jitters = Vec::new();
    for (wire, ticks) in [(Wire::G711(Codec::Pcmu), 1), (Wire::Opus, 6)] {
        let start = Instant::now();
        let settings = Settings {
            opus: wire == Wire::Opus,
            ..settings()
        };
        let (mut engine, mut browser) = connected_pair_of(&settings, wire, start);
        let at = start + Duration::from_secs(2);
        let ntp = rtcp::ntp(Duration::from_secs(1_800_000_000));
        // Our sender report, as the leg writes it (the caller's 8 kHz).
        let mut ours = LegRtcp::new(engine.ssrc(), QualityHandle::default());
        for i in 0..50u16 {
            ours.on_sent(i, 160 * u32::from(i), 160);
        }
        let sr = ours.write(at, ntp, false).to_vec();
        assert!(engine.send_rtcp(&sr, at), "{wire:?}");
        run(&mut engine, &mut browser, start, 2000, 40, true);
        let got = browser.rtcp.first().expect("the browser got no report");
        assert_eq!(got[1], 200, "an SR first");
        assert_eq!(got[4..8], engine.ssrc().to_be_bytes());
        let ts = u32::from_be_bytes([got[16], got[17], got[18], got[19]]);
        assert_eq!(ts, 49 * 160 * ticks, "{wire:?}");

        // The browser's receiver report: it lost 4 of our 49 packets, and
        // they came unevenly (jitter), counted on the wire's clock.
        let mut theirs = LegRtcp::new(4242, QualityHandle::default());
        for i in (1..50u16).filter(|i| i % 10 != 0) {
            let ts = 160 * u32::from(i);
            let arrival = ts + 40 * u32::from(i % 3);
            theirs
                .reception
                .on_packet(engine.ssrc(), i, ts, arrival, true);
        }
        let mut rr = theirs.write(at, ntp, false).to_vec();
        rtcp::rescale(&mut rr, |v| v * ticks);
        assert!(browser.peer.send_rtcp(&rr, at));
        run(&mut engine, &mut browser, start, 2040, 40, true);
        // Reports are set aside as the endpoint reads its RTP.
        while engine.poll_rtp().is_some() {}
        let report = engine.poll_rtcp().expect("the endpoint kept no report");
        assert!(ours.on_packet(&report, ntp));
        let q = ours.quality();
        assert_eq!(q.reports, 1, "{wire:?}");
        let loss = q.remote_loss.expect("no remote loss");
        assert!((0.07..0.09).contains(&loss), "{loss}");
        jitters.push(q.remote_jitter_ms.expect("no remote jitter"));
    }
    // The same jitter in milliseconds, whichever clock the wire counts in.
    assert!(jitters[0] > 1.0, "{jitters:?}");
    assert!((jitters[0] - jitters[1]).abs() < 0.01, "{jitters:?}");
}
