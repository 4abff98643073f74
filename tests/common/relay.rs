//! A UDP impairment relay: these machines have no `netem`, so loss, delay,
//! jitter and reordering come from a relay of the test's own between a peer
//! and the engine, on a seeded schedule (the same seed, the same faults).

use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A small seeded generator (xorshift64*): the same seed, the same faults.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A UDP impairment relay: what arrives on `front` goes to `to` from
/// `back`, each packet dropped with probability `loss` or delayed by a
/// uniform 0..`jitter` (so packets closer than the jitter reorder); what
/// comes back to `back` goes to the last sender on `front` at once.
pub struct Relay {
    pub front: SocketAddr,
    stop: Arc<AtomicBool>,
    pub dropped: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(PartialEq, Eq)]
struct Due(Instant, u64, Vec<u8>);

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.0, other.1).cmp(&(self.0, self.1))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Relay {
    pub fn start(to: SocketAddr, loss: f64, jitter: Duration, seed: u64) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        front.set_nonblocking(true).unwrap();
        back.set_nonblocking(true).unwrap();
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (stop2, dropped2) = (stop.clone(), dropped.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = Rng(seed | 1);
            let mut queue = BinaryHeap::new();
            let mut sender: Option<SocketAddr> = None;
            let mut buf = [0u8; 2048];
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let mut idle = true;
                while let Ok((len, from)) = front.recv_from(&mut buf) {
                    idle = false;
                    sender = Some(from);
                    if rng.unit() < loss {
                        dropped2.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let delay = jitter.mul_f64(rng.unit());
                    n += 1;
                    queue.push(Due(Instant::now() + delay, n, buf[..len].to_vec()));
                }
                while let Ok((len, _)) = back.recv_from(&mut buf) {
                    idle = false;
                    if let Some(s) = sender {
                        let _ = front.send_to(&buf[..len], s);
                    }
                }
                let now = Instant::now();
                while queue.peek().is_some_and(|d: &Due| d.0 <= now) {
                    let Due(_, _, bytes) = queue.pop().unwrap();
                    let _ = back.send_to(&bytes, to);
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        });
        Relay {
            front: addr,
            stop,
            dropped,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
