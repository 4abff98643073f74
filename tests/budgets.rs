//! Connections have budgets: an engine limited to 1,024 descriptors, under
//! 1,100 trickling TCP connections (SIP, then HTTP) from one address,
//! still answers a UDP trunk call with audio both ways and still answers
//! its API; beyond the budget, connections are refused at once, and the
//! trickling ones are closed by the message timeout.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::ua::TestUa;
use common::Engine;
use hotline::media::PromptCache;
use hotline::sdp::Codec;

const CONNECTIONS: usize = 1100;

/// This test process opens more than a thousand sockets.
fn raise_own_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(lim.rlim_cur >= 4096, "this test needs 4,096 open files");
}

/// Opens `CONNECTIONS` connections from 127.0.0.2 to `target`.
fn connect_all(target: SocketAddr) -> Vec<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..CONNECTIONS {
        let stream = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
            tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await
        });
        if let Ok(Ok(stream)) = stream {
            let stream = stream.into_std().unwrap();
            stream.set_nonblocking(true).unwrap();
            out.push(stream);
        }
    }
    out
}

/// Sends the next byte of `text` on every connection still open; `true`
/// for those the engine closed (EOF, reset).
fn trickle(conns: &mut [TcpStream], closed: &mut [bool], text: &[u8], i: usize) {
    let mut buf = [0u8; 256];
    for (c, done) in conns.iter_mut().zip(closed.iter_mut()) {
        if *done {
            continue;
        }
        match c.read(&mut buf) {
            Ok(0) => *done = true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => *done = true,
        }
        if !*done && c.write(&text[i % text.len()..][..1]).is_err() {
            *done = true;
        }
    }
}

/// Keeps `conns` trickling for up to `limit`, checking meanwhile that a
/// UDP call still has audio both ways and the API still answers; the
/// time until every connection was closed.
fn flood_and_check(
    engine: &Engine,
    conns: &mut [TcpStream],
    text: &[u8],
    ua_ports: u16,
) -> Duration {
    let cache = PromptCache::load_dir(&common::root().join("sounds")).unwrap();
    let started = Instant::now();
    let mut closed = vec![false; conns.len()];
    let mut i = 0;
    let mut checked = false;
    let mut closed_at = None;
    // The check runs half a second in, or as soon as every connection is
    // closed if that comes first (an oversized header can end them all
    // sooner on a fast run).
    while (closed.iter().any(|c| !c) || !checked) && started.elapsed() < Duration::from_secs(20) {
        trickle(conns, &mut closed, text, i);
        i += 1;
        let all_closed = closed.iter().all(|c| *c);
        if all_closed && closed_at.is_none() {
            closed_at = Some(started.elapsed());
        }
        if !checked && (all_closed || started.elapsed() > Duration::from_millis(500)) {
            checked = true;
            // The trunk call over UDP: answered, and the key-test line
            // says back the key the caller sent as RTP.
            let p = engine.ports;
            let mut ua = TestUa::call(
                engine.sip,
                p.spare(ua_ports),
                p.spare(ua_ports + 1),
                "echo",
                "0 101",
            );
            std::thread::sleep(Duration::from_millis(200));
            ua.press_rfc4733('5');
            let heard = ua.receive(Duration::from_millis(1500));
            ua.bye();
            let five = cache.get("digits/5").unwrap();
            let payloads: Vec<&[u8]> = heard.iter().map(|p| p.payload.as_slice()).collect();
            assert!(
                (0..payloads.len())
                    .any(|s| common::prompt_run(&payloads, s, &five, Codec::Pcmu) >= 20),
                "the caller did not hear their key said back ({} packets)",
                heard.len()
            );
            let (status, body) = common::api_get(engine, "/api/calls");
            assert_eq!(status, 200, "the API did not answer: {body}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(checked);
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} trickling connections were never closed");
    closed_at.unwrap_or_else(|| started.elapsed())
}

fn refused(engine: &Engine, metric: &str) -> f64 {
    common::metrics(engine)
        .lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn trickling_connections_starve_neither_calls_nor_the_api() {
    raise_own_open_files();
    let engine = Engine::start_with_open_files(
        "sip:\n  connections: { max: 300, per-source: 100, message-timeout: 2s, idle-timeout: 4s }\n\
         http:\n  tokens: [{ name: test, token: test-read-token, role: read }]\n  connections: { max: 300, per-source: 100, message-timeout: 2s }\n",
        1024,
    );
    let sip_tcp = engine.sip;
    let http = SocketAddr::from(([127, 0, 0, 1], engine.ports.http()));

    let mut conns = connect_all(sip_tcp);
    assert_eq!(conns.len(), CONNECTIONS);
    let took = flood_and_check(
        &engine,
        &mut conns,
        b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: ",
        0,
    );
    println!("SIP: 1,100 trickling connections all closed within {took:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    drop(conns);
    assert!(refused(&engine, "hotline_sip_connections_refused_total") >= 800.0);

    let mut conns = connect_all(http);
    let took = flood_and_check(
        &engine,
        &mut conns,
        b"GET /api/calls HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        2,
    );
    println!("HTTP: 1,100 trickling connections all closed within {took:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(refused(&engine, "hotline_http_connections_refused_total") >= 800.0);
}

#[test]
fn new_calls_are_refused_with_a_short_retry_after_while_descriptors_run_short() {
    // So few descriptors that fewer than the reserve (64) are ever free.
    let engine = Engine::start_with_open_files("", 80);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    let answer = loop {
        n += 1;
        let invite = format!(
            "INVITE sip:echo@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfd{n};rport\r\n\
From: <sip:fd@{local}>;tag=fd{n}\r\nTo: <sip:echo@{sip}>\r\nCall-ID: fd-{n}-{local}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:fd@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            sip = engine.sip
        );
        sock.send_to(invite.as_bytes(), engine.sip).unwrap();
        let mut buf = [0u8; 4096];
        let mut last = String::new();
        while let Ok((len, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if !text.starts_with("SIP/2.0 1") {
                last = text;
                break;
            }
        }
        if last.starts_with("SIP/2.0 503") || Instant::now() > until {
            break last;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        answer.starts_with("SIP/2.0 503"),
        "{answer}\n{}",
        engine.log()
    );
    // A short Retry-After (calls.retry-after), as for every busy 503.
    assert!(answer.contains("Retry-After: 5\r\n"), "{answer}");
    let metrics = common::metrics(&engine);
    assert!(
        metrics.contains("hotline_overload{reason=\"descriptors\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_tcp_connection_that_carries_a_call_outlives_its_idle_timeout() {
    // Idle connections go after 1 s; this call's goes on for 5 s after its
    // last message (the ACK), then its BYE comes over the same connection.
    let engine = Engine::start("sip:\n  connections: { idle-timeout: 1s, message-timeout: 2s }\n");
    common::sipp(
        &engine,
        0,
        &common::scenario("caller-basic.xml"),
        &["-t", "t1", "-s", "echo", "-d", "5000", "-m", "1"],
    )
    .assert_ok();
    let metrics = common::metrics(&engine);
    assert!(
        !metrics.contains("hotline_sip_connections_closed_total{reason=\"idle-timeout\"}"),
        "{metrics}"
    );
}
