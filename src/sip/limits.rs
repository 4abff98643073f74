//! How many calls the engine takes, and how fast: the caps on calls in
//! progress (in all and per trunk), each trunk's calls per second, and a
//! rate limit per source address for sources that are not trunks (in the
//! spirit of Kamailio's `pike`). Pure: the time is an argument.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `rate` (and at least
/// one) saved up.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub fn per_second(rate: u32) -> Bucket {
        let rate = f64::from(rate.max(1));
        Bucket {
            rate,
            tokens: rate,
            at: None,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.rate);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to do with a request from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over its rate: dropped without an answer (an answer would only feed
    /// a flood); the source has been blocked until `until` since earlier.
    Drop,
    /// This request took the source over its rate: blocked from now on.
    Blocked {
        until: Instant,
    },
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    window: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

/// Requests per source address: more than `requests` within one `per`
/// window blocks the source for `block`; every request while blocked is
/// dropped (and does not extend the block).
#[derive(Debug)]
pub struct SourceLimit {
    requests: u32,
    per: Duration,
    block: Duration,
    seen: HashMap<IpAddr, Seen>,
    swept: Option<Instant>,
}

/// Sources tracked at most; past this, new sources pass untracked (the
/// caps on calls still hold) rather than the table growing without end.
const MAX_SOURCES: usize = 65_536;

impl SourceLimit {
    /// `requests` 0 turns the limit off.
    pub fn new(requests: u32, per: Duration, block: Duration) -> SourceLimit {
        SourceLimit {
            requests,
            per: per.max(Duration::from_millis(100)),
            block,
            seen: HashMap::new(),
            swept: None,
        }
    }

    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.requests == 0 {
            return Verdict::Pass;
        }
        self.sweep(now);
        if self.seen.len() >= MAX_SOURCES && !self.seen.contains_key(&ip) {
            return Verdict::Pass;
        }
        let seen = self.seen.entry(ip).or_insert(Seen {
            window: now,
            count: 0,
            blocked_until: None,
        });
        if let Some(until) = seen.blocked_until {
            if now < until {
                return Verdict::Drop;
            }
            seen.blocked_until = None;
            seen.window = now;
            seen.count = 0;
        }
        if now.saturating_duration_since(seen.window) >= self.per {
            seen.window = now;
            seen.count = 0;
        }
        seen.count += 1;
        if seen.count > self.requests {
            let until = now + self.block;
            seen.blocked_until = Some(until);
            return Verdict::Blocked { until };
        }
        Verdict::Pass
    }

    /// Sources tracked now (blocked or within their window).
    pub fn tracked(&self) -> usize {
        self.seen.len()
    }

    /// Forgets sources whose window and block are over, at most once a window.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < self.per)
        {
            return;
        }
        self.swept = Some(now);
        let per = self.per;
        self.seen.retain(|_, s| {
            s.blocked_until.is_some_and(|u| now < u)
                || now.saturating_duration_since(s.window) < per
        });
    }
}

/// Why a new call is refused by a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `calls.max-concurrent` calls are in progress.
    MaxConcurrent,
    /// The trunk's `inbound.max-calls` calls are in progress.
    TrunkCalls,
    /// The trunk's `inbound.max-cps` were used this second.
    TrunkRate,
}

impl Refused {
    pub const ALL: [Refused; 3] = [
        Refused::MaxConcurrent,
        Refused::TrunkCalls,
        Refused::TrunkRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::MaxConcurrent => "max-concurrent",
            Refused::TrunkCalls => "trunk-max-calls",
            Refused::TrunkRate => "trunk-max-cps",
        }
    }
}

/// Calls in progress, in all and per trunk, and each trunk's rate.
#[derive(Debug, Default)]
pub struct CallCaps {
    total: usize,
    per_trunk: HashMap<String, usize>,
    rates: HashMap<String, Bucket>,
}

/// One trunk's caps (`trunks[].inbound`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrunkCaps {
    pub max_calls: Option<usize>,
    pub max_cps: Option<u32>,
}

impl CallCaps {
    /// Admits a new call over `trunk` and counts it, or says why not.
    /// `max_total` 0 means no cap.
    pub fn admit(
        &mut self,
        trunk: &str,
        caps: TrunkCaps,
        max_total: usize,
        now: Instant,
    ) -> Result<(), Refused> {
        if max_total > 0 && self.total >= max_total {
            return Err(Refused::MaxConcurrent);
        }
        let in_trunk = self.per_trunk.get(trunk).copied().unwrap_or(0);
        if caps.max_calls.is_some_and(|m| in_trunk >= m) {
            return Err(Refused::TrunkCalls);
        }
        if let Some(cps) = caps.max_cps {
            let bucket = self
                .rates
                .entry(trunk.to_owned())
                .or_insert_with(|| Bucket::per_second(cps));
            if !bucket.take(now) {
                return Err(Refused::TrunkRate);
            }
        }
        self.total += 1;
        *self.per_trunk.entry(trunk.to_owned()).or_default() += 1;
        Ok(())
    }

    /// A call admitted over `trunk` is over.
    pub fn release(&mut self, trunk: &str) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_trunk.get_mut(trunk) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_trunk.remove(trunk);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bucket_gives_its_rate_and_refills_with_time() {
        let t0 = Instant::now();
        let mut b = Bucket::per_second(5);
        assert_eq!((0..10).filter(|_| b.take(t0)).count(), 5);
        assert!(!b.take(t0 + ms(100)));
        assert!(b.take(t0 + ms(200)));
        // Never more than a second's worth saved up.
        assert_eq!((0..20).filter(|_| b.take(t0 + ms(60_000))).count(), 5);
    }

    #[test]
    fn a_source_over_its_rate_is_blocked_for_the_block_time_then_passes() {
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut lim = SourceLimit::new(3, ms(2000), ms(30_000));
        for _ in 0..3 {
            assert_eq!(lim.check(a, t0), Verdict::Pass);
        }
        assert_eq!(
            lim.check(a, t0 + ms(10)),
            Verdict::Blocked {
                until: t0 + ms(30_010)
            }
        );
        // Others are not touched; the blocked one is dropped, also later.
        assert_eq!(lim.check(b, t0 + ms(20)), Verdict::Pass);
        assert_eq!(lim.check(a, t0 + ms(29_000)), Verdict::Drop);
        assert_eq!(lim.check(a, t0 + ms(30_010)), Verdict::Pass);
        // A steady sender under the rate is never blocked.
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        for i in 0..100 {
            assert_eq!(lim.check(c, t0 + ms(700 * i)), Verdict::Pass, "{i}");
        }
        // Off.
        let mut off = SourceLimit::new(0, ms(2000), ms(30_000));
        assert!((0..1000).all(|_| off.check(a, t0) == Verdict::Pass));
    }

    #[test]
    fn sources_are_forgotten_once_their_window_is_over() {
        let t0 = Instant::now();
        let mut lim = SourceLimit::new(2, ms(1000), ms(5000));
        for i in 0..1000u32 {
            lim.check(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(lim.tracked(), 1000);
        lim.check("192.0.2.1".parse().unwrap(), t0 + ms(1500));
        assert_eq!(lim.tracked(), 1);
    }

    #[test]
    fn calls_are_capped_in_all_per_trunk_and_per_second() {
        let t0 = Instant::now();
        let mut caps = CallCaps::default();
        let none = TrunkCaps::default();
        let two = TrunkCaps {
            max_calls: Some(2),
            max_cps: None,
        };
        assert_eq!(caps.admit("a", two, 3, t0), Ok(()));
        assert_eq!(caps.admit("a", two, 3, t0), Ok(()));
        assert_eq!(caps.admit("a", two, 3, t0), Err(Refused::TrunkCalls));
        assert_eq!(caps.admit("b", none, 3, t0), Ok(()));
        assert_eq!(caps.admit("b", none, 3, t0), Err(Refused::MaxConcurrent));
        caps.release("a");
        assert_eq!(caps.total(), 2);
        assert_eq!(caps.admit("a", two, 3, t0), Ok(()));
        caps.release("a");
        caps.release("a");
        caps.release("b");
        assert_eq!(caps.total(), 0);
        let rate = TrunkCaps {
            max_calls: None,
            max_cps: Some(2),
        };
        assert_eq!(caps.admit("c", rate, 0, t0), Ok(()));
        assert_eq!(caps.admit("c", rate, 0, t0), Ok(()));
        assert_eq!(caps.admit("c", rate, 0, t0), Err(Refused::TrunkRate));
        assert_eq!(caps.admit("c", rate, 0, t0 + ms(500)), Ok(()));
        // A refused call is not counted.
        assert_eq!(caps.total(), 3);
    }
}
