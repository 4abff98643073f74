//! Browser legs at the media layer: a WebRTC leg on the shared port,
//! bridged to a plain RTP leg, against webrtc-rs's own full-ICE peer over
//! real UDP on loopback (the browser's part).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::webrtc::BrowserPeer;
use common::Ports;
use hotline::config::{Config, WebRtcConfig};
use hotline::media::webrtc::LinkState;
use hotline::media::{MediaEngine, MediaEvent, StreamConfig};
use hotline::sdp::Codec;

fn engine(ports: &Ports, consent: Duration) -> std::sync::Arc<MediaEngine> {
    let mut config = Config::parse(&format!("rtp: {{ ports: {} }}\n", ports.rtp_range())).unwrap();
    config.webrtc = Some(WebRtcConfig {
        port: ports.spare(0),
        ice_servers: vec![],
        ice_transport_policy: Default::default(),
        consent_timeout: consent,
        codec: Default::default(),
    });
    MediaEngine::start(&config.rtp, config.webrtc.as_ref(), Duration::ZERO).unwrap()
}

fn plain(remote: SocketAddr, dtmf_pt: Option<u8>) -> StreamConfig {
    StreamConfig {
        remote,
        codec: Codec::Pcmu,
        payload_type: 0,
        dtmf_pt,
        send: true,
        receive: true,
        symmetric: false,
        signalling: None,
        srtp: None,
        rtcp: None,
    }
}

async fn next_browser_event(
    ch: &mut hotline::media::MediaChannel,
    timeout: Duration,
) -> Option<MediaEvent> {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(until, ch.events.recv()).await {
            Ok(Some(ev @ (MediaEvent::Browser(_) | MediaEvent::BrowserRefused(_)))) => {
                return Some(ev)
            }
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_leg_bridged_to_a_caller_carries_audio_both_ways_and_nobody_else_gets_in() {
    let ports = Ports::next();
    let media = engine(&ports, Duration::from_secs(10));
    let hub = media.webrtc_addr().unwrap();

    // The caller's side: a plain RTP peer on loopback.
    let caller = UdpSocket::bind(("127.0.0.1", ports.spare(1))).unwrap();
    caller
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let a = media.open().await.unwrap();
    let a_addr = SocketAddr::new(a.local_ip(), a.local_port());
    a.configure(plain(caller.local_addr().unwrap(), None)).await;

    let (mut b, offer) = media.open_browser(&a, Codec::Pcmu).await.unwrap();
    assert!(
        offer.contains(&format!("{} typ host", hub.port())),
        "{offer}"
    );
    let bind: SocketAddr = ([127, 0, 0, 1], ports.spare(2)).into();
    let (mut browser, answer) = BrowserPeer::answer(&offer, bind);
    b.browser_answer(answer).await;
    b.configure(plain(hub, Some(101))).await;
    a.bridge(&b).await;

    let mut browser = tokio::task::spawn_blocking(move || {
        assert!(
            browser.connect(Duration::from_secs(5)),
            "the browser did not connect"
        );
        browser
    })
    .await
    .unwrap();
    assert_eq!(
        next_browser_event(&mut b, Duration::from_secs(2)).await,
        Some(MediaEvent::Browser(LinkState::Connected))
    );

    // Both talk for two seconds: the caller a frame of 0x11, the browser
    // one of 0x22; an intruder sends RTP to the shared port meanwhile.
    let talk = Duration::from_secs(2);
    let caller_side = std::thread::spawn(move || {
        let mut heard = Vec::new();
        let mut buf = [0u8; 2048];
        let mut seq = 0u16;
        let start = Instant::now();
        let mut next = start;
        while start.elapsed() < talk {
            if Instant::now() >= next {
                seq += 1;
                let mut p = vec![0x80, 0, (seq >> 8) as u8, seq as u8, 0, 0, 0, 0, 1, 2, 3, 4];
                p.extend_from_slice(&[0x11; 160]);
                caller.send_to(&p, a_addr).unwrap();
                next += Duration::from_millis(20);
            }
            if let Ok(n) = caller.recv(&mut buf) {
                if let Some((_, payload)) = hotline::media::rtp::parse(&buf[..n]) {
                    heard.push(payload.to_vec());
                }
            }
        }
        heard
    });
    let intruder = UdpSocket::bind(("127.0.0.1", ports.spare(3))).unwrap();
    let browser_side = tokio::task::spawn_blocking(move || {
        let mut forged = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9];
        forged.extend_from_slice(&[0x66; 160]);
        for _ in 0..20 {
            intruder.send_to(&forged, hub).unwrap();
        }
        browser.run(talk, Some(&[0x22; 160]));
        browser
    });
    let heard = caller_side.join().unwrap();
    let browser = browser_side.await.unwrap();

    let from_browser = heard.iter().filter(|p| p[..] == [0x22; 160]).count();
    assert!(
        from_browser >= 75,
        "the caller heard {from_browser} of ~100 browser frames"
    );
    assert!(
        !heard.iter().any(|p| p[..] == [0x66; 160]),
        "the intruder's audio reached the caller"
    );
    let from_caller = browser
        .received
        .iter()
        .filter(|p| p[..] == [0x11; 160])
        .count();
    assert!(
        from_caller >= 75,
        "the browser heard {from_caller} of ~100 caller frames"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_vanishes_is_reported_dead_within_the_consent_timeout() {
    let ports = Ports::next();
    let media = engine(&ports, Duration::from_secs(4));
    let hub = media.webrtc_addr().unwrap();
    let a = media.open().await.unwrap();
    a.configure(plain(([127, 0, 0, 1], ports.spare(1)).into(), None))
        .await;
    let (mut b, offer) = media.open_browser(&a, Codec::Pcmu).await.unwrap();
    let (mut browser, answer) =
        BrowserPeer::answer(&offer, ([127, 0, 0, 1], ports.spare(2)).into());
    b.browser_answer(answer).await;
    b.configure(plain(hub, Some(101))).await;
    let browser = tokio::task::spawn_blocking(move || {
        assert!(browser.connect(Duration::from_secs(5)));
        browser
    })
    .await
    .unwrap();
    assert_eq!(
        next_browser_event(&mut b, Duration::from_secs(2)).await,
        Some(MediaEvent::Browser(LinkState::Connected))
    );
    // The tab closes: its socket goes, nothing more comes.
    drop(browser);
    let gone = Instant::now();
    assert_eq!(
        next_browser_event(&mut b, Duration::from_secs(8)).await,
        Some(MediaEvent::Browser(LinkState::Failed))
    );
    let took = gone.elapsed();
    assert!(
        took >= Duration::from_millis(3500) && took <= Duration::from_millis(5500),
        "reported dead after {took:?} (consent timeout 4 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_answer_is_refused_and_the_leg_stays_unconnected() {
    let ports = Ports::next();
    let media = engine(&ports, Duration::from_secs(10));
    let a = media.open().await.unwrap();
    let (mut b, _offer) = media.open_browser(&a, Codec::Pcmu).await.unwrap();
    b.browser_answer("v=0\r\nthis is not SDP".into()).await;
    assert!(matches!(
        next_browser_event(&mut b, Duration::from_secs(2)).await,
        Some(MediaEvent::BrowserRefused(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webrtc_section_there_is_no_port_and_no_browser_leg() {
    let ports = Ports::next();
    let config = Config::parse(&format!("rtp: {{ ports: {} }}\n", ports.rtp_range())).unwrap();
    let media = MediaEngine::start(&config.rtp, None, Duration::ZERO).unwrap();
    assert!(media.webrtc_addr().is_none());
    let a = media.open().await.unwrap();
    assert!(matches!(
        media.open_browser(&a, Codec::Pcmu).await,
        Err(hotline::media::MediaError::NoWebRtc)
    ));
}
