//! An agent in the browser, against the running binary: signs in at the
//! desktop (session cookie), its socket is their phone; a caller queues,
//! the page rings with the screen pop and the WebRTC offer, webrtc-rs's
//! own full-ICE peer (the browser's part) answers over loopback, the agent
//! accepts, and audio flows both ways through the engine. When the
//! browser vanishes mid-call the agent is paused `connection-lost` within
//! the consent timeout and the caller is back at the head of the queue.
//! A session acts on its own agent only.

mod common;

use std::time::{Duration, Instant};

use common::desktop::{self, next_of, send};
use common::ua::TestUa;
use common::webrtc::BrowserPeer;
use common::{agent_state, api_get, phone, register, wait_agent_state, Engine};

fn engine() -> Engine {
    let ports = common::Ports::next();
    Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        &format!(
            "queues:\n  support: {{ announce-position: false, wrap-up: 1s }}\n\
agents:\n  - {{ id: '1001', name: Ada, password: 1001pass, queues: [support] }}\n  \
- {{ id: '1002', password: 1002pass, queues: [support] }}\n\
webrtc: {{ port: {}, consent-timeout: 4s }}\n\
registrar: {{ algorithms: [MD5], keepalive: 0s }}\n",
            ports.spare(0)
        ),
    )
}

/// The waiting callers of `queue`, first first.
fn waiting(engine: &Engine, queue: &str) -> Vec<String> {
    let (_, body) = api_get(engine, "/api/queues");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let q = v
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == queue))
        .cloned()
        .unwrap_or_default();
    let mut w: Vec<(u64, String)> = q["waiting"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    (
                        w["position"].as_u64().unwrap_or(0),
                        w["call_id"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    w.sort();
    w.into_iter().map(|(_, c)| c).collect()
}

#[test]
fn sign_in_is_checked_and_a_session_acts_on_its_own_agent_only() {
    let engine = engine();
    let (status, cookie, _) = desktop::login(&engine, "1001", "wrong");
    assert_eq!(status, 401);
    assert!(cookie.is_none());
    let (status, _, _) = desktop::login(&engine, "9999", "1001pass");
    assert_eq!(status, 401);
    let (status, cookie, set) = desktop::login(&engine, "1001", "1001pass");
    assert_eq!(status, 200);
    let set = set.unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    // Plain HTTP on loopback: no `Secure` (the browser would drop it).
    assert!(!set.contains("Secure"), "{set}");
    let first = cookie.unwrap();
    let (_, second, _) = desktop::login(&engine, "1002", "1002pass");
    let second = second.unwrap();

    // 1002's session cannot touch 1001; 1001's own can.
    let (status, _, body) =
        desktop::request(&engine, "POST", "/agent/1001/login", Some(&second), "");
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = desktop::request(
        &engine,
        "POST",
        "/agent/1001/pause",
        Some(&second),
        "{\"reason\":\"lunch\"}",
    );
    assert_eq!(status, 403);
    assert_eq!(agent_state(&engine, "1001").0, "logged-out");
    let (status, _, body) =
        desktop::request(&engine, "POST", "/agent/1001/login", Some(&first), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent_state(&engine, "1001").0, "available");
    let (status, _, body) = desktop::request(
        &engine,
        "POST",
        "/agent/1001/pause",
        Some(&first),
        "{\"reason\":\"lunch\"}",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        agent_state(&engine, "1001"),
        ("paused".into(), Some("lunch".into()))
    );
    let (status, _, body) = desktop::request(&engine, "GET", "/agent/me", Some(&first), "");
    assert_eq!(status, 200);
    assert!(body.contains("\"id\":\"1001\""), "{body}");
    let (status, _, body) = desktop::request(&engine, "GET", "/agent/today", Some(&first), "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"calls\":0") && body.contains("\"callbacks\":[]"),
        "{body}"
    );

    // No cookie, a made-up one, or one signed out: refused.
    assert_eq!(
        desktop::request(&engine, "GET", "/agent/me", None, "").0,
        401
    );
    assert_eq!(
        desktop::request(&engine, "GET", "/agent/me", Some("hotline_agent=00ff"), "").0,
        401
    );
    assert_eq!(
        desktop::request(&engine, "POST", "/agent/logout", Some(&first), "").0,
        204
    );
    assert_eq!(
        desktop::request(&engine, "GET", "/agent/me", Some(&first), "").0,
        401
    );
    // A page of another site cannot sign in for the agent.
    let body = "{\"agent\":\"1001\",\"password\":\"1001pass\"}";
    let (status, _, _) = common::raw_http(
        &engine,
        "POST",
        "/agent/login",
        "Origin: http://evil.example\r\n",
        body,
    );
    assert_eq!(status, 403);

    // Five wrong passwords lock the account for a while, even for the right one.
    for _ in 0..5 {
        assert_eq!(desktop::login(&engine, "1002", "guess").0, 401);
    }
    assert_eq!(desktop::login(&engine, "1002", "1002pass").0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_agent_takes_a_call_with_audio_both_ways_and_a_lost_browser_puts_the_caller_back_first(
) {
    let engine = engine();
    let (status, cookie, _) = desktop::login(&engine, "1001", "1001pass");
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    // Without a session there is no phone.
    assert_eq!(
        desktop::connect(&engine, "hotline_agent=nope").await.err(),
        Some(401)
    );
    let mut ws = desktop::connect(&engine, &cookie).await.unwrap();
    let hello = next_of(&mut ws, "hello", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(hello["agent"], "1001");
    let (status, _, _) = desktop::request(&engine, "POST", "/agent/1001/login", Some(&cookie), "");
    assert_eq!(status, 200);
    wait_agent_state(&engine, "1001", "available", Duration::from_secs(3));
    let (_, body) = api_get(&engine, "/api/agents/1001");
    assert!(body.contains("\"browser\":true"), "{body}");

    // A caller queues; the page rings with the pop and the offer.
    let ports = common::Ports::next();
    let mut caller = TestUa::call(engine.sip, ports.spare(0), ports.spare(1), "200", "0 101");
    let ring = next_of(&mut ws, "ring", Duration::from_secs(5))
        .await
        .expect("no ring");
    let call = ring["call"].as_str().unwrap().to_owned();
    assert_eq!(ring["pop"]["queue"], "support");
    assert_eq!(ring["pop"]["caller"], "ua");
    let offer = ring["offer"].as_str().unwrap();
    assert!(
        offer.contains("a=ice-lite") && offer.contains("PCMU/8000"),
        "{offer}"
    );
    assert!(!offer.contains("opus"), "{offer}");

    let (mut browser, answer) = BrowserPeer::answer(offer, ([127, 0, 0, 1], ports.spare(2)).into());
    send(
        &mut ws,
        serde_json::json!({ "type": "answer", "call": call, "sdp": answer }),
    )
    .await;
    let connected = tokio::task::spawn_blocking(move || {
        let ok = browser.connect(Duration::from_secs(5));
        (browser, ok)
    });
    let (mut browser, ok) = connected.await.unwrap();
    assert!(ok, "the browser did not connect:\n{}", engine.log());
    send(
        &mut ws,
        serde_json::json!({ "type": "accept", "call": call }),
    )
    .await;
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(3));

    // A second caller waits meanwhile.
    let second = TestUa::call(engine.sip, ports.spare(3), ports.spare(4), "200", "0");

    // Both talk for two seconds: the caller frames of 0x11, the browser
    // frames of 0x22.
    let talk = Duration::from_secs(2);
    let talking = std::thread::spawn(move || {
        let start = Instant::now();
        let mut heard = Vec::new();
        let mut next = start;
        let mut ts = 0u32;
        let mut buf = [0u8; 2048];
        caller
            .rtp
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        while start.elapsed() < talk {
            if Instant::now() >= next {
                caller.send_rtp(0, false, ts, &[0x11; 160]);
                ts += 160;
                next += Duration::from_millis(20);
            }
            if let Ok(n) = caller.rtp.recv(&mut buf) {
                if let Some((_, p)) = hotline::media::rtp::parse(&buf[..n]) {
                    heard.push(p.to_vec());
                }
            }
        }
        (caller, heard)
    });
    let browser_side = tokio::task::spawn_blocking(move || {
        browser.run(talk, Some(&[0x22; 160]));
        browser
    });
    let (caller, heard) = talking.join().unwrap();
    let browser = browser_side.await.unwrap();
    let from_browser = heard.iter().filter(|p| p[..] == [0x22; 160]).count();
    assert!(
        from_browser >= 75,
        "the caller heard {from_browser} of ~100 frames from the browser"
    );
    let from_caller = browser
        .received
        .iter()
        .filter(|p| p[..] == [0x11; 160])
        .count();
    assert!(
        from_caller >= 75,
        "the browser heard {from_caller} of ~100 frames from the caller"
    );
    let second_id = waiting(&engine, "support");
    assert_eq!(second_id.len(), 1, "the second caller waits");

    // The tab closes: its socket and its peer connection go at once.
    drop(browser);
    drop(ws);
    let gone = Instant::now();
    let until = gone + Duration::from_secs(8);
    while agent_state(&engine, "1001").0 != "paused" && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = gone.elapsed();
    assert_eq!(
        agent_state(&engine, "1001"),
        ("paused".into(), Some("connection-lost".into())),
        "{}",
        engine.log()
    );
    assert!(
        took <= Duration::from_secs(6),
        "freed after {took:?} (consent timeout 4 s)"
    );
    // The caller is back, ahead of the one who waited meanwhile.
    let queue = waiting(&engine, "support");
    assert_eq!(queue.len(), 2, "{queue:?}");
    assert_eq!(
        queue[1], second_id[0],
        "the first caller is not back at the head: {queue:?}"
    );
    // And still on the line, hearing the queue's music again. What waits
    // in the socket from before (the browser's last frames, relayed as the
    // talk ended) is read first and let go.
    let _before = caller.receive(Duration::from_millis(300));
    let music = caller.receive(Duration::from_secs(1));
    assert!(
        music.len() >= 40,
        "the caller hears {} packets a second",
        music.len()
    );
    assert!(!music.iter().any(|p| p.payload[..] == [0x22; 160]));
    drop(caller);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_my_desk_phone_rings_the_registered_sip_phone_with_the_pop_on_the_page() {
    let engine = engine();
    let ports = common::Ports::next();
    let desk_port = ports.spare(6);
    register(&engine, "1001", desk_port);
    let mut desk_phone = phone("agent-answer.xml", desk_port, true);
    let (_, cookie, _) = desktop::login(&engine, "1001", "1001pass");
    let cookie = cookie.unwrap();
    let mut ws = desktop::connect(&engine, &cookie).await.unwrap();
    next_of(&mut ws, "hello", Duration::from_secs(3))
        .await
        .unwrap();
    send(
        &mut ws,
        serde_json::json!({ "type": "phone", "desk": true }),
    )
    .await;
    let said = next_of(&mut ws, "phone", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(said["desk"], true);
    let (status, _, _) = desktop::request(&engine, "POST", "/agent/1001/login", Some(&cookie), "");
    assert_eq!(status, 200);
    wait_agent_state(&engine, "1001", "available", Duration::from_secs(3));
    let (_, body) = api_get(&engine, "/api/agents/1001");
    assert!(body.contains("\"browser\":false"), "{body}");

    // The SIP phone rings and answers; the page gets the pop, not a ring.
    let caller = TestUa::call(engine.sip, ports.spare(0), ports.spare(1), "200", "0");
    let pop = next_of(&mut ws, "agent.offered", Duration::from_secs(5))
        .await
        .expect("no pop");
    assert_eq!(pop["queue"], "support");
    wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(5));
    assert!(next_of(&mut ws, "ring", Duration::from_millis(800))
        .await
        .is_none());
    drop(caller);
    let _ = desk_phone.kill();
    let _ = desk_phone.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_webrtc_the_desktop_is_a_screen_and_calls_ring_the_desk_phone() {
    let engine =
        Engine::start("agents:\n  - { id: '1001', password: 1001pass, queues: [support] }\n");
    let (status, cookie, _) = desktop::login(&engine, "1001", "1001pass");
    assert_eq!(status, 200);
    let mut ws = desktop::connect(&engine, &cookie.unwrap()).await.unwrap();
    let hello = next_of(&mut ws, "hello", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(hello["webrtc"], false);
    // No browser phone: the ACD never offers a call to a browser leg the
    // engine could not open (which would be counted against the agent).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = api_get(&engine, "/api/agents/1001");
    assert!(body.contains("\"browser\":false"), "{body}");
}
