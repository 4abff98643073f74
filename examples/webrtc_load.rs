//! The load generator of `scripts/bench-webrtc.sh`: AGENTS browser agents
//! (`PREFIX1` … `PREFIXN`, one password) sign in at the engine's desktop,
//! open its socket and go available; each ring is answered by webrtc-rs's
//! own full-ICE peer (the browser's part: DTLS-SRTP, PCMU) on a UDP port of
//! its own, which then sends a 20 ms PCMU frame every 20 ms and counts what
//! it receives. One thread pumps every peer (no task per leg). At the end
//! it prints one line of JSON: signed in, rung, connected, frames sent and
//! received. With `WEBRTC_LOAD_CODEC=opus` the peers answer with Opus and
//! send a second of a 1 kHz tone coded once at start (48 kHz, 20 ms frames,
//! over and over), as a browser on an engine with `webrtc.codec: opus`.
//!
//!   webrtc_load HTTP_ADDR PREFIX AGENTS PASSWORD SECONDS BIND_IP BASE_PORT

#[path = "../tests/common/webrtc.rs"]
#[allow(dead_code)]
mod webrtc;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hotline::media::webrtc::Wire;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// One request: (status, the session cookie it set).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    body: &str,
) -> (u16, Option<String>) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, None);
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let set = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: ")
                .then(|| l[12..].to_owned())
        })
        .and_then(|v| v.split(';').next().map(str::to_owned));
    (status, set)
}

#[derive(Default)]
struct Counts {
    signed_in: AtomicUsize,
    rung: AtomicUsize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 {
        eprintln!("usage: webrtc_load HTTP_ADDR PREFIX AGENTS PASSWORD SECONDS BIND_IP BASE_PORT");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("HTTP_ADDR");
    let prefix = args[2].clone();
    let agents: u16 = args[3].parse().expect("AGENTS");
    let password = args[4].clone();
    let seconds: u64 = args[5].parse().expect("SECONDS");
    let bind_ip: std::net::IpAddr = args[6].parse().expect("BIND_IP");
    let base_port: u16 = args[7].parse().expect("BASE_PORT");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let counts = Arc::new(Counts::default());
    let opus = std::env::var("WEBRTC_LOAD_CODEC").is_ok_and(|c| c == "opus");
    let (wire, frames) = if opus {
        (Wire::Opus, opus_frames())
    } else {
        (Wire::G711(hotline::sdp::Codec::Pcmu), vec![pcmu_frame()])
    };
    // Peers answered by the sockets' tasks go to the one media thread.
    let (peers_tx, peers_rx) = mpsc::channel::<webrtc::BrowserPeer>();
    let media = std::thread::spawn(move || pump(peers_rx, deadline, &frames));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 1..=agents {
            let id = format!("{prefix}{i}");
            let body = serde_json::json!({ "agent": id, "password": password }).to_string();
            // Blocking while signing in: nothing rings before every agent is in.
            let (status, cookie) = http(addr, "POST", "/agent/login", "", &body);
            let Some(cookie) = cookie.filter(|_| status == 200) else {
                eprintln!("{id}: sign-in refused ({status})");
                continue;
            };
            let mut req = format!("ws://{addr}/agent/ws")
                .into_client_request()
                .unwrap();
            req.headers_mut().insert("Cookie", cookie.parse().unwrap());
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await else {
                eprintln!("{id}: no socket");
                continue;
            };
            let _ = ws.next().await; // hello
            let (status, _) = http(addr, "POST", &format!("/agent/{id}/login"), &cookie, "");
            if status != 200 {
                eprintln!("{id}: login refused ({status})");
                continue;
            }
            counts.signed_in.fetch_add(1, Ordering::Relaxed);
            let (tx, counts) = (peers_tx.clone(), counts.clone());
            let bind = SocketAddr::new(bind_ip, base_port + i);
            tasks.push(tokio::spawn(async move {
                let until = tokio::time::Instant::from_std(deadline);
                while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, ws.next()).await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                        continue;
                    };
                    if v["type"] != "ring" {
                        continue;
                    }
                    counts.rung.fetch_add(1, Ordering::Relaxed);
                    let call = v["call"].as_str().unwrap_or_default().to_owned();
                    let offer = v["offer"].as_str().unwrap_or_default();
                    let (peer, answer) = webrtc::BrowserPeer::answer_with(offer, bind, wire);
                    let _ = tx.send(peer);
                    for msg in [
                        serde_json::json!({ "type": "answer", "call": call, "sdp": answer }),
                        serde_json::json!({ "type": "accept", "call": call }),
                    ] {
                        let _ = ws.send(Message::Text(msg.to_string().into())).await;
                    }
                }
            }));
        }
        drop(peers_tx);
        eprintln!(
            "ready: {} agents available",
            counts.signed_in.load(Ordering::Relaxed)
        );
        for t in tasks {
            let _ = t.await;
        }
    });
    let (connected, sent, received) = media.join().unwrap();
    println!(
        "{}",
        serde_json::json!({
            "signed_in": counts.signed_in.load(Ordering::Relaxed),
            "rung": counts.rung.load(Ordering::Relaxed),
            "connected": connected,
            "frames_sent": sent,
            "frames_received": received,
        })
    );
}

/// 20 ms of a 1 kHz tone in PCMU (a whole number of cycles: it repeats).
fn pcmu_frame() -> Vec<u8> {
    (0..160)
        .map(|i| {
            let s = (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / 8000.0).sin())
                as i16;
            hotline::media::g711::ulaw_encode(s)
        })
        .collect()
}

/// One second of a 1 kHz tone as 50 Opus frames of 20 ms, narrowband as a
/// browser codes them for the engine's offer (`maxplaybackrate=8000`).
fn opus_frames() -> Vec<Vec<u8>> {
    let mut encoder =
        opus_rs::OpusEncoder::new(8000, 1, opus_rs::Application::Voip).expect("an encoder");
    encoder.bitrate_bps = 16_000;
    let mut packet = [0u8; 1276];
    (0..50)
        .map(|k| {
            let pcm: Vec<f32> = (0..160)
                .map(|i| {
                    let t = f64::from(k * 160 + i) / 8000.0;
                    (0.25 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as f32
                })
                .collect();
            let n = encoder.encode(&pcm, 160, &mut packet).expect("a frame");
            packet[..n].to_vec()
        })
        .collect()
}

/// Pumps every peer, each sending a frame (the next of `frames`) every
/// 20 ms, until `deadline`: (peers connected, frames sent, frames received).
fn pump(
    new: mpsc::Receiver<webrtc::BrowserPeer>,
    deadline: Instant,
    frames: &[Vec<u8>],
) -> (usize, u64, u64) {
    // (peer, frames sent, frames received, connected once)
    let mut peers: Vec<(webrtc::BrowserPeer, u64, u64, bool)> = Vec::new();
    let mut next = Instant::now();
    while Instant::now() < deadline {
        while let Ok(p) = new.try_recv() {
            peers.push((p, 0, 0, false));
        }
        for (p, sent, received, once) in peers.iter_mut() {
            p.pump();
            *once |= p.connected;
            if p.connected {
                p.send(&frames[(*sent as usize) % frames.len()]);
                *sent += 1;
            }
            // Counted, not kept.
            *received += p.received.len() as u64;
            p.received.clear();
        }
        next += Duration::from_millis(20);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let connected = peers.iter().filter(|(_, _, _, once)| *once).count();
    let sent = peers.iter().map(|(_, s, _, _)| *s).sum();
    let received = peers.iter().map(|(_, _, r, _)| *r).sum();
    (connected, sent, received)
}
