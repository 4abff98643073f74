//! `webrtc-choice str0m|rtc PAIRS SECONDS`: connects PAIRS pairs of peers
//! of one crate (ICE, DTLS, SRTP) over an in-memory network, then has
//! both sides of every pair send a 20 ms PCMU frame each 20 ms for
//! SECONDS of a virtual clock, as fast as the CPU allows. Prints the CPU
//! and memory each phase took: what a WebRTC leg costs in that crate.

mod rtc_side;
mod str0m_side;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// CPU time of this process so far (user + system).
pub fn cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

/// Resident memory now, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// What one crate's run measured.
pub struct Figures {
    pub connected: usize,
    pub setup_cpu: Duration,
    pub setup_rss_kib: u64,
    pub media_cpu: Duration,
    pub frames_sent: u64,
    pub frames_received: u64,
}

/// A packet on the in-memory network: (to, from, bytes).
pub type Packet = (SocketAddr, SocketAddr, Vec<u8>);

/// One peer of a crate, driven by the harness.
pub trait Peer: Sized {
    /// Pair `i`: two peers on `addr(i, true)` and `addr(i, false)`,
    /// offer and answer exchanged.
    fn pair(i: usize, now: Instant) -> (Self, Self);
    /// A packet arrived from `from` (handled at the next `step`).
    fn deliver(&mut self, from: SocketAddr, bytes: Vec<u8>);
    /// Handles what arrived and what is due by `now`; what it sends goes
    /// to `out`.
    fn step(&mut self, now: Instant, out: &mut Vec<Packet>);
    /// One 20 ms frame of audio, once connected.
    fn send_frame(&mut self, now: Instant, start: Instant, frame: &[u8]);
    fn status(&self) -> &Status;
}

/// Where a peer stands.
#[derive(Debug, Default)]
pub struct Status {
    pub connected: bool,
    /// Frames sent and received.
    pub sent: u64,
    pub received: u64,
}

/// Where side `left` of pair `i` is.
pub fn addr(i: usize, left: bool) -> SocketAddr {
    let ip = if left { [10, 0, 0, 1] } else { [10, 0, 0, 2] };
    (Ipv4Addr::from(ip), 10000 + i as u16).into()
}

/// Which side (index into the pairs' sides) is at `a`.
fn index(a: SocketAddr, sides: usize) -> Option<usize> {
    let pair = a.port().checked_sub(10000)? as usize;
    let i = 2 * pair + usize::from(a.ip() != IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    (i < sides).then_some(i)
}

struct Pairs<P> {
    sides: Vec<P>,
    start: Instant,
    frame: Vec<u8>,
}

impl<P: Peer> Pairs<P> {
    /// Builds and connects `n` pairs (ICE, DTLS: 10 ms steps for at most
    /// 10 virtual seconds); how many connected.
    fn connect(n: usize, now: &mut Instant) -> (Self, usize) {
        let mut sides = Vec::with_capacity(2 * n);
        for i in 0..n {
            let (l, r) = P::pair(i, *now);
            sides.push(l);
            sides.push(r);
        }
        let mut pairs = Pairs {
            sides,
            start: *now,
            frame: vec![0xff; 160],
        };
        for _ in 0..1000 {
            pairs.settle(*now);
            if pairs.sides.iter().all(|s| s.status().connected) {
                break;
            }
            *now += Duration::from_millis(10);
        }
        let connected = pairs
            .sides
            .chunks(2)
            .filter(|p| p[0].status().connected && p[1].status().connected)
            .count();
        (pairs, connected)
    }

    /// Until nothing is in flight (at most 64 rounds): every side handles
    /// what came and what is due by `now`.
    fn settle(&mut self, now: Instant) {
        let mut out = Vec::new();
        for _ in 0..64 {
            for s in &mut self.sides {
                s.step(now, &mut out);
            }
            if out.is_empty() {
                return;
            }
            let n = self.sides.len();
            for (to, from, bytes) in out.drain(..) {
                if let Some(i) = index(to, n) {
                    self.sides[i].deliver(from, bytes);
                }
            }
        }
    }

    /// Every side sends one 20 ms frame, then everything due by `now` is
    /// delivered and handled.
    fn tick(&mut self, now: Instant) {
        for s in &mut self.sides {
            s.send_frame(now, self.start, &self.frame);
        }
        self.settle(now);
    }

    fn sent_received(&self) -> (u64, u64) {
        self.sides
            .iter()
            .map(P::status)
            .fold((0, 0), |(a, b), s| (a + s.sent, b + s.received))
    }
}

fn run<P: Peer>(n: usize, seconds: u64) -> Figures {
    let rss0 = rss_kib();
    let cpu0 = cpu();
    let mut now = Instant::now();
    let (mut pairs, connected) = Pairs::<P>::connect(n, &mut now);
    let setup_cpu = cpu() - cpu0;
    let setup_rss_kib = rss_kib().saturating_sub(rss0);
    let cpu1 = cpu();
    for _ in 0..seconds * 50 {
        now += Duration::from_millis(20);
        pairs.tick(now);
    }
    let media_cpu = cpu() - cpu1;
    let (frames_sent, frames_received) = pairs.sent_received();
    Figures {
        connected,
        setup_cpu,
        setup_rss_kib,
        media_cpu,
        frames_sent,
        frames_received,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("str0m");
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20);
    let f = match which {
        "str0m" => run::<str0m_side::Side>(n, seconds),
        "rtc" => run::<rtc_side::Side>(n, seconds),
        other => panic!("`{other}`: str0m or rtc"),
    };
    let legs = (2 * f.connected).max(1) as f64;
    let leg_seconds = legs * seconds as f64;
    println!(
        "{which}: {} of {n} pairs connected; setup {:.0} ms CPU ({:.2} ms a leg), {:.0} KiB RSS ({:.1} KiB a leg); media {:.2} s CPU for {leg_seconds:.0} leg-seconds: {:.1} us CPU per leg-second; frames sent {}, received {}",
        f.connected,
        f.setup_cpu.as_secs_f64() * 1000.0,
        f.setup_cpu.as_secs_f64() * 1000.0 / legs,
        f.setup_rss_kib,
        f.setup_rss_kib as f64 / legs,
        f.media_cpu.as_secs_f64(),
        f.media_cpu.as_secs_f64() * 1e6 / leg_seconds,
        f.frames_sent,
        f.frames_received,
    );
}
