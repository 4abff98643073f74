//! `webrtc-choice str0m|rtc PAIRS SECONDS`: connects PAIRS pairs of peers
//! of one crate (ICE, DTLS, SRTP) over an in-memory network, then has
//! both sides of every pair send a 20 ms PCMU frame each 20 ms for
//! SECONDS of a virtual clock, as fast as the CPU allows. Prints the CPU
//! and memory each phase took: what a WebRTC leg costs in that crate.

mod rtc_side;
mod str0m_side;

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

/// One crate's pairs, driven by the harness.
pub trait Pairs {
    /// Builds and connects `n` pairs (offer/answer, ICE, DTLS); how many
    /// connected.
    fn connect(n: usize, now: &mut Instant) -> (Self, usize)
    where
        Self: Sized;
    /// Every side sends one 20 ms frame, then everything due by `now` is
    /// delivered and handled.
    fn tick(&mut self, now: Instant);
    fn sent_received(&self) -> (u64, u64);
}

fn run<P: Pairs>(n: usize, seconds: u64) -> Figures {
    let rss0 = rss_kib();
    let cpu0 = cpu();
    let mut now = Instant::now();
    let (mut pairs, connected) = P::connect(n, &mut now);
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
        "str0m" => run::<str0m_side::Str0mPairs>(n, seconds),
        "rtc" => run::<rtc_side::RtcPairs>(n, seconds),
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
