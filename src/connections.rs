//! Budgets for stream connections (SIP over TCP, the HTTP API): how many may
//! be open at once, from one source and in all, and how long one may take
//! to deliver a message or sit idle. Pure: the accept loops and readers
//! pass `now` and carry out what they are told.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

pub use crate::config::ConnectionLimits;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max` are open.
    Full,
    /// `per-source` are open from its address.
    SourceFull,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Full => "max",
            Refused::SourceFull => "per-source",
        }
    }
}

/// The connections open now, in all and by source address.
#[derive(Debug)]
pub struct OpenConnections {
    limits: ConnectionLimits,
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

impl OpenConnections {
    pub fn new(limits: ConnectionLimits) -> OpenConnections {
        OpenConnections {
            limits,
            total: 0,
            by_source: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`, or says why it is refused.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refused> {
        if self.total >= self.limits.max {
            return Err(Refused::Full);
        }
        let n = self.by_source.entry(ip).or_insert(0);
        if *n >= self.limits.per_source {
            return Err(Refused::SourceFull);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `ip` closed.
    pub fn closed(&mut self, ip: IpAddr) {
        if let Some(n) = self.by_source.get_mut(&ip) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.by_source.remove(&ip);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// Which timeout ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A message did not complete in time (or the first never came).
    Message,
    /// Nothing came for the idle timeout.
    Idle,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Message => "message-timeout",
            Expiry::Idle => "idle-timeout",
        }
    }
}

/// One connection's clock: when its reader must give up waiting.
#[derive(Debug, Clone)]
pub struct ConnectionClock {
    limits: ConnectionLimits,
    /// When the bytes of the message being read began (or the connection
    /// opened, before its first message).
    partial_since: Option<Instant>,
    /// When the last complete message arrived.
    last_message: Instant,
}

impl ConnectionClock {
    pub fn opened(limits: ConnectionLimits, now: Instant) -> ConnectionClock {
        ConnectionClock {
            limits,
            partial_since: Some(now),
            last_message: now,
        }
    }

    /// Bytes arrived: `messages` complete ones, and whether part of another
    /// is left waiting.
    pub fn on_read(&mut self, now: Instant, messages: usize, partial: bool) {
        if messages > 0 {
            self.last_message = now;
            self.partial_since = None;
        }
        if partial {
            self.partial_since.get_or_insert(now);
        }
    }

    /// When to stop waiting, and why.
    pub fn deadline(&self) -> (Instant, Expiry) {
        match self.partial_since {
            Some(since) => (since + self.limits.message_timeout, Expiry::Message),
            None => (self.last_message + self.limits.idle_timeout, Expiry::Idle),
        }
    }

    /// The idle deadline passed but the connection carries a registration
    /// or a dialog: it may stay, from `now`.
    pub fn keep(&mut self, now: Instant) {
        self.last_message = now;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max: 3,
        per_source: 2,
        idle_timeout: Duration::from_secs(120),
        message_timeout: Duration::from_secs(10),
    };

    #[test]
    fn connections_beyond_a_sources_share_or_the_maximum_are_refused() {
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        );
        let mut open = OpenConnections::new(LIMITS);
        assert_eq!(open.admit(a), Ok(()));
        assert_eq!(open.admit(a), Ok(()));
        assert_eq!(open.admit(a), Err(Refused::SourceFull));
        assert_eq!(open.admit(b), Ok(()));
        assert_eq!(open.admit(c), Err(Refused::Full));
        open.closed(a);
        assert_eq!(open.admit(c), Ok(()));
        assert_eq!(open.total(), 3);
        // A close of something never admitted changes nothing.
        open.closed("192.0.2.9".parse().unwrap());
        assert_eq!(open.total(), 3);
    }

    #[test]
    fn a_trickling_connection_runs_out_of_time_for_its_message() {
        let t = Instant::now();
        let mut clock = ConnectionClock::opened(LIMITS, t);
        // Nothing yet: the first message is due 10 s after the open.
        assert_eq!(
            clock.deadline(),
            (t + LIMITS.message_timeout, Expiry::Message)
        );
        // A byte every second does not move the deadline.
        for s in 1..10 {
            clock.on_read(t + Duration::from_secs(s), 0, true);
            assert_eq!(clock.deadline().0, t + LIMITS.message_timeout);
        }
        // A whole message: from now on the idle timeout counts.
        let m = t + Duration::from_secs(9);
        clock.on_read(m, 1, false);
        assert_eq!(clock.deadline(), (m + LIMITS.idle_timeout, Expiry::Idle));
        // The start of the next message sets its own deadline.
        let n = m + Duration::from_secs(30);
        clock.on_read(n, 0, true);
        assert_eq!(
            clock.deadline(),
            (n + LIMITS.message_timeout, Expiry::Message)
        );
        // A connection that carries a dialog is kept past its idle time.
        clock.on_read(n + Duration::from_secs(1), 1, false);
        let later = n + Duration::from_secs(200);
        clock.keep(later);
        assert_eq!(
            clock.deadline(),
            (later + LIMITS.idle_timeout, Expiry::Idle)
        );
    }
}
