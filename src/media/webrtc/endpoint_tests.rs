//! The endpoint against webrtc-rs's own full-ICE peer (a browser's part),
//! over an in-memory network on a virtual clock.

use super::*;

const ENGINE: &str = "192.0.2.10:3478";
const BROWSER: &str = "198.51.100.7:50000";

fn settings() -> Settings {
    Settings {
        local: ENGINE.parse().unwrap(),
        candidate: ENGINE.parse().unwrap(),
        consent_timeout: Duration::from_secs(10),
    }
}

/// The browser's side: webrtc-rs's full-ICE peer, and what it got.
struct Browser {
    peer: super::super::peer::Peer,
    connected: bool,
    received: Vec<(RtpInfo, Bytes)>,
}

impl Browser {
    fn answer(offer: &str, now: Instant) -> (Browser, String) {
        let (peer, answer) =
            super::super::peer::Peer::answer(offer, BROWSER.parse().unwrap(), 4242, now).unwrap();
        (
            Browser {
                peer,
                connected: false,
                received: Vec::new(),
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
    let (mut engine, offer) = Endpoint::offer(&settings(), Codec::Pcmu, 777, start).unwrap();
    assert!(
        offer.contains("a=rtpmap:101 telephone-event/8000"),
        "{offer}"
    );
    assert!(offer.contains("a=ice-lite"), "{offer}");
    assert!(offer.contains("a=rtcp-mux"), "{offer}");
    assert!(offer.contains(engine.ufrag()), "{offer}");
    let (mut browser, answer) = Browser::answer(&offer, start);
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
    let (_, answer) = Browser::answer(&offer, start);
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
