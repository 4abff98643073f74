//! The pool of local RTP ports: even ports of the configured range (each
//! with the odd one above it, for RTCP). A call
//! gets a random one among those idle for at least [`QUARANTINE`], so its
//! port cannot be guessed from the last call's, and stray packets of a
//! port's last call do not reach the next one. When every free port was
//! freed more recently than that, the least recently used goes first.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::config::PortRange;

/// How long a freed port rests before it is handed out again (unless no
/// other port is free).
pub const QUARANTINE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct PortPool {
    /// Free ports and when each was freed (`None`: never used), least
    /// recently freed first. Taking from the rested prefix keeps the order
    /// good enough: every port in that prefix has rested, and every later
    /// one was freed after all of them.
    free: VecDeque<(u16, Option<Instant>)>,
}

impl PortPool {
    pub fn new(range: PortRange) -> PortPool {
        let first = range.low + range.low % 2;
        PortPool {
            // Each with the odd port above it for RTCP.
            free: (first..range.high).step_by(2).map(|p| (p, None)).collect(),
        }
    }

    /// A random port among those rested at `now`, else the least recently used.
    pub fn take(&mut self, now: Instant, rng: &mut impl Rng) -> Option<u16> {
        let rested = self.free.partition_point(|(_, freed)| {
            freed.is_none_or(|t| now.duration_since(t) >= QUARANTINE)
        });
        let i = if rested > 1 {
            rng.random_range(0..rested)
        } else {
            0
        };
        self.free.swap_remove_front(i).map(|(port, _)| port)
    }

    pub fn give_back(&mut self, port: u16, now: Instant) {
        self.free.push_back((port, Some(now)));
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn pool(low: u16, high: u16) -> PortPool {
        PortPool::new(PortRange { low, high })
    }

    #[test]
    fn even_ports_only() {
        let mut p = pool(10001, 10007);
        assert_eq!(p.available(), 3);
        // An even port at the top has no RTCP port above it.
        assert_eq!(pool(10000, 10004).available(), 2);
        let now = Instant::now();
        let mut rng = rand::rng();
        let mut got: Vec<u16> = (0..3).filter_map(|_| p.take(now, &mut rng)).collect();
        got.sort();
        assert_eq!(got, vec![10002, 10004, 10006]);
        assert_eq!(p.take(now, &mut rng), None);
    }

    #[test]
    fn a_calls_port_does_not_tell_the_next_ones() {
        let mut p = pool(20000, 29999);
        let now = Instant::now();
        let mut rng = rand::rng();
        let ports: Vec<u16> = (0..50).filter_map(|_| p.take(now, &mut rng)).collect();
        let steps: HashSet<i32> = ports
            .windows(2)
            .map(|w| i32::from(w[1]) - i32::from(w[0]))
            .collect();
        // Handed out in order, every step would be +2.
        assert!(steps.len() > 10, "{ports:?}");
    }

    #[test]
    fn a_freed_port_rests_while_others_are_rested_and_else_the_oldest_goes_first() {
        let mut p = pool(10000, 10007); // 10000, 10002, 10004, 10006
        let t = Instant::now();
        let mut rng = rand::rng();
        let all: Vec<u16> = (0..4).filter_map(|_| p.take(t, &mut rng)).collect();
        // Freed one after another; only 10 s later the first two have rested.
        for (i, port) in all.iter().enumerate() {
            p.give_back(*port, t + Duration::from_secs(i as u64));
        }
        let at = t + Duration::from_secs(1) + QUARANTINE;
        for _ in 0..20 {
            let mut q = PortPool {
                free: p.free.clone(),
            };
            let got = q.take(at, &mut rng).unwrap();
            assert!(got == all[0] || got == all[1], "{got} had not rested");
        }
        // Nothing rested: least recently used first.
        let early = t + Duration::from_secs(5);
        assert_eq!(p.take(early, &mut rng), Some(all[0]));
        assert_eq!(p.take(early, &mut rng), Some(all[1]));
        assert_eq!(p.take(early, &mut rng), Some(all[2]));
    }
}
