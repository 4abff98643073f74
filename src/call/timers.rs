//! A call's named deadlines in one table (as quinn-proto keeps a
//! connection's): the call sleeps until the earliest, and each that passed
//! is taken in order. Pure: `now` is an argument. (Waiting in a queue keeps
//! its own, in [`super::waiting`].)

use std::time::Instant;

/// Each deadline a call may have, at most one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// `calls.max-duration`: the call is hung up.
    MaxDuration,
    /// A flow node's timeout (its token is kept with the call).
    Flow,
    /// An offer to agents waits this long for the caller's history.
    ScreenPop,
    /// The caller's answer to the callback offer is due.
    CallbackAnswer,
    /// Keys an agent pressed, held back while they may be a feature code.
    AgentKeys,
}

impl Timer {
    const ALL: [Timer; 5] = [
        Timer::MaxDuration,
        Timer::Flow,
        Timer::ScreenPop,
        Timer::CallbackAnswer,
        Timer::AgentKeys,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default, Clone)]
pub struct Timers {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl Timers {
    /// Sets (or moves) `timer` to `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    pub fn stop(&mut self, timer: Timer) {
        self.at[timer.index()] = None;
    }

    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The earliest deadline that passed by `now`, stopped as it is taken.
    pub fn expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .filter(|t| self.get(*t).is_some_and(|at| at <= now))
            .min_by_key(|t| self.get(*t))?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_deadline_wakes_the_call_and_passed_ones_come_in_order() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        timers.set(Timer::MaxDuration, t + s(3600));
        timers.set(Timer::CallbackAnswer, t + s(30));
        timers.set(Timer::AgentKeys, t + s(20));
        assert_eq!(timers.next(), Some(t + s(20)));
        assert_eq!(timers.expired(t + s(19)), None);
        // Both passed: the earlier first, each once.
        assert_eq!(timers.expired(t + s(31)), Some(Timer::AgentKeys));
        assert_eq!(timers.expired(t + s(31)), Some(Timer::CallbackAnswer));
        assert_eq!(timers.expired(t + s(31)), None);
        assert_eq!(timers.next(), Some(t + s(3600)));
        // Moved and stopped.
        timers.set(Timer::Flow, t + s(40));
        timers.set(Timer::Flow, t + s(50));
        assert_eq!(timers.get(Timer::Flow), Some(t + s(50)));
        timers.stop(Timer::Flow);
        assert_eq!(timers.get(Timer::Flow), None);
        assert_eq!(timers.expired(t + s(60)), None);
    }
}
