//! An RTP sink for benchmarks: receives on one port for a bounded time and
//! prints the inter-packet gaps per sender (each sender is one call's
//! engine port), because SIPp never reads the audio sent back to it.
//!
//!     cargo run --release --example rtp_sink -- PORT SECONDS

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(39000);
    let seconds: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(30)
        .min(600);
    let socket = UdpSocket::bind(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut last: HashMap<SocketAddr, Instant> = HashMap::new();
    let mut gaps: Vec<f64> = Vec::new();
    let mut packets = 0u64;
    let mut buf = [0u8; 2048];
    while Instant::now() < until {
        if let Ok((_, from)) = socket.recv_from(&mut buf) {
            let now = Instant::now();
            packets += 1;
            if let Some(prev) = last.insert(from, now) {
                gaps.push((now - prev).as_secs_f64() * 1000.0);
            }
        }
    }
    gaps.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let mean = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
    println!(
        "streams={} packets={} gap_mean_ms={:.2} gap_p50_ms={:.2} gap_p99_ms={:.2} gap_max_ms={:.2}",
        last.len(),
        packets,
        mean,
        pick(0.5),
        pick(0.99),
        gaps.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
