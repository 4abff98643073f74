//! The estimated wait a caller is told: the recent average handle time
//! (talk plus wrap-up) × the caller's position ÷ the agents staffing the
//! queue. With no history yet, a configured fallback handle time is used.

use std::collections::VecDeque;
use std::time::Duration;

/// The handle times the estimate averages over.
const HISTORY: usize = 20;

#[derive(Debug, Clone)]
pub struct Estimator {
    recent: VecDeque<Duration>,
    fallback: Duration,
}

impl Estimator {
    pub fn new(fallback: Duration) -> Estimator {
        Estimator {
            recent: VecDeque::new(),
            fallback,
        }
    }

    /// A call was handled in `d` (talk + wrap-up).
    pub fn record(&mut self, d: Duration) {
        if self.recent.len() == HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back(d);
    }

    pub fn average_handle_time(&self) -> Duration {
        if self.recent.is_empty() {
            return self.fallback;
        }
        self.recent.iter().sum::<Duration>() / self.recent.len() as u32
    }

    /// The wait for the caller at `position` (1 = next), with `staffed`
    /// agents logged in to the queue (paused and busy ones count: they
    /// come back).
    pub fn wait(&self, position: usize, staffed: usize) -> Duration {
        let aht = self.average_handle_time();
        aht * position as u32 / staffed.max(1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_then_recent_average() {
        let mut e = Estimator::new(Duration::from_secs(180));
        assert_eq!(e.wait(3, 2), Duration::from_secs(270));
        assert_eq!(
            e.wait(1, 0),
            Duration::from_secs(180),
            "no agents: as if one"
        );
        e.record(Duration::from_secs(60));
        e.record(Duration::from_secs(120));
        assert_eq!(e.average_handle_time(), Duration::from_secs(90));
        assert_eq!(e.wait(4, 3), Duration::from_secs(120));
        for _ in 0..HISTORY {
            e.record(Duration::from_secs(30));
        }
        assert_eq!(
            e.average_handle_time(),
            Duration::from_secs(30),
            "only the recent calls count"
        );
    }
}
