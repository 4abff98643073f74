//! Whose RTP a channel accepts: the peer is learned from the signalling and
//! the first packets, in the spirit of rtpengine's heuristic mode (not the
//! "first source wins" that Asterisk's `strictrtp` had before AST-2017-005).
//!
//! - A packet from exactly the SDP's address and port latches at once.
//! - From the SDP's IP but another port: after [`PROBATION`] consecutive,
//!   in-sequence packets from that source.
//! - From another IP: only within [`LEARNING_WINDOW`] of the answer or a
//!   re-INVITE, after probation, and only from the IP the peer's SIP came
//!   from (a phone whose SDP names another interface, or a NAT), or when the
//!   SDP's address is one a phone behind NAT writes (private, shared,
//!   link-local). A sprayer elsewhere on the network is never learned.
//! - With symmetric RTP off, only the SDP's IP (a gateway that sends from
//!   another port than it receives on is why one turns it off), and our RTP
//!   always goes to the SDP's address.
//!
//! Once latched, every other source is dropped. A re-INVITE opens a new
//! learning window; the source latched before keeps being heard (and sent
//! to) until another latches or the window closes, when it latches again.
//!
//! Pure: the caller passes `now` and carries out what it is told
//! (`connect()` the socket on a latch, disconnect on a re-learn).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Consecutive in-sequence packets a source other than the SDP's must send
/// before it is believed.
pub const PROBATION: u32 = 4;

/// How long after the answer (or a re-INVITE) a source on another IP may
/// still be learned.
pub const LEARNING_WINDOW: Duration = Duration::from_secs(3);

/// Why a packet was dropped (the `reason` label of
/// `hotline_rtp_packets_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not from the latched source.
    ForeignSource,
    /// From a source still on probation.
    Probation,
    /// From a source that may not be learned (another IP outside the
    /// window or not where the peer's SIP is, or any other IP with
    /// symmetric RTP off).
    NotLearnable,
    /// Before the call's stream was set up.
    NoStream,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::ForeignSource,
        DropReason::Probation,
        DropReason::NotLearnable,
        DropReason::NoStream,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::ForeignSource => "foreign-source",
            DropReason::Probation => "probation",
            DropReason::NotLearnable => "not-learnable",
            DropReason::NoStream => "no-stream",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What to do with one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Accept it: its source is now the peer (connect the socket to it).
    Latch(SocketAddr),
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    from: SocketAddr,
    last_seq: u16,
    run: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Learning {
        /// The source on probation.
        candidate: Option<Candidate>,
        /// The source latched before a re-INVITE, heard until another latches.
        previous: Option<SocketAddr>,
    },
    Latched(SocketAddr),
}

/// One channel's peer learning.
#[derive(Debug, Clone)]
pub struct PeerLearning {
    sdp: SocketAddr,
    symmetric: bool,
    /// The IP the peer's signalling comes from.
    signalling: Option<IpAddr>,
    window_end: Instant,
    state: State,
}

impl PeerLearning {
    /// Starts learning at the answer.
    pub fn new(
        sdp: SocketAddr,
        symmetric: bool,
        signalling: Option<IpAddr>,
        now: Instant,
    ) -> PeerLearning {
        PeerLearning {
            sdp,
            symmetric,
            signalling,
            window_end: now + LEARNING_WINDOW,
            state: State::Learning {
                candidate: None,
                previous: None,
            },
        }
    }

    /// A new offer/answer (re-INVITE): opens a new learning window. Returns
    /// `true` when the socket must be disconnected to hear other sources.
    pub fn renegotiate(
        &mut self,
        sdp: SocketAddr,
        symmetric: bool,
        signalling: Option<IpAddr>,
        now: Instant,
    ) -> bool {
        let latched = self.latched();
        self.sdp = sdp;
        self.symmetric = symmetric;
        self.signalling = signalling;
        self.window_end = now + LEARNING_WINDOW;
        match latched {
            // Nothing moved: the peer already proved itself at this address.
            Some(peer) if peer == sdp => false,
            Some(peer) => {
                self.state = State::Learning {
                    candidate: None,
                    previous: Some(peer),
                };
                true
            }
            None => false,
        }
    }

    /// The learned peer, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        match self.state {
            State::Latched(peer) => Some(peer),
            State::Learning { .. } => None,
        }
    }

    /// Where our RTP goes: the learned peer (symmetric RTP), else the SDP's.
    pub fn send_to(&self) -> SocketAddr {
        if !self.symmetric {
            return self.sdp;
        }
        match self.state {
            State::Latched(peer) => peer,
            State::Learning {
                previous: Some(p), ..
            } => p,
            State::Learning { .. } => self.sdp,
        }
    }

    /// Time passing: a re-learning window that closed without a new source
    /// latches the previous one again.
    pub fn poll(&mut self, now: Instant) -> Option<SocketAddr> {
        match self.state {
            State::Learning {
                previous: Some(p), ..
            } if now >= self.window_end => {
                self.state = State::Latched(p);
                Some(p)
            }
            _ => None,
        }
    }

    /// Judges a packet from `from` carrying sequence number `seq`.
    pub fn on_packet(&mut self, from: SocketAddr, seq: u16, now: Instant) -> Verdict {
        let (candidate, previous) = match &mut self.state {
            State::Latched(peer) if *peer == from => return Verdict::Accept,
            State::Latched(_) => return Verdict::Drop(DropReason::ForeignSource),
            State::Learning {
                candidate,
                previous,
            } => (candidate, *previous),
        };
        if from == self.sdp {
            self.state = State::Latched(from);
            return Verdict::Latch(from);
        }
        if previous == Some(from) {
            return Verdict::Accept;
        }
        let elsewhere_ok = now < self.window_end
            && (Some(from.ip()) == self.signalling || behind_nat(self.sdp.ip()));
        let learnable = from.ip() == self.sdp.ip() || (self.symmetric && elsewhere_ok);
        if !learnable {
            return Verdict::Drop(if previous.is_some() {
                DropReason::ForeignSource
            } else {
                DropReason::NotLearnable
            });
        }
        let run = match candidate {
            Some(c) if c.from == from && seq == c.last_seq.wrapping_add(1) => c.run + 1,
            _ => 1,
        };
        if run >= PROBATION {
            self.state = State::Latched(from);
            return Verdict::Latch(from);
        }
        *candidate = Some(Candidate {
            from,
            last_seq: seq,
            run,
        });
        Verdict::Drop(DropReason::Probation)
    }
}

/// An address a phone behind NAT writes in its SDP: its own private,
/// shared (carrier-grade NAT) or link-local one, or none at all.
fn behind_nat(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_unspecified() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn the_sdp_address_latches_at_once_and_then_nobody_else_is_heard() {
        let now = t0();
        let mut l = PeerLearning::new(addr("198.51.100.7:4000"), true, None, now);
        let sprayer = addr("203.0.113.9:4000");
        assert_eq!(
            l.on_packet(sprayer, 1, now),
            Verdict::Drop(DropReason::NotLearnable)
        );
        assert_eq!(
            l.on_packet(addr("198.51.100.7:4000"), 77, now),
            Verdict::Latch(addr("198.51.100.7:4000"))
        );
        for seq in 2..50 {
            assert_eq!(
                l.on_packet(sprayer, seq, now),
                Verdict::Drop(DropReason::ForeignSource)
            );
        }
        // Not even from the peer's own IP on another port.
        assert_eq!(
            l.on_packet(addr("198.51.100.7:4002"), 1, now),
            Verdict::Drop(DropReason::ForeignSource)
        );
        assert_eq!(l.send_to(), addr("198.51.100.7:4000"));
    }

    #[test]
    fn the_sdp_ip_on_another_port_latches_after_probation_in_sequence() {
        let now = t0();
        let mut l = PeerLearning::new(addr("198.51.100.7:4000"), true, None, now);
        let from = addr("198.51.100.7:5123");
        // Out of sequence restarts the run.
        assert_eq!(
            l.on_packet(from, 10, now),
            Verdict::Drop(DropReason::Probation)
        );
        assert_eq!(
            l.on_packet(from, 12, now),
            Verdict::Drop(DropReason::Probation)
        );
        for seq in 13..15 {
            assert_eq!(
                l.on_packet(from, seq, now),
                Verdict::Drop(DropReason::Probation)
            );
        }
        assert_eq!(l.on_packet(from, 15, now), Verdict::Latch(from));
        // Same IP is allowed long after the answer, too (no window).
        let mut late = PeerLearning::new(addr("198.51.100.7:4000"), true, None, now);
        let later = now + Duration::from_secs(60);
        for seq in 0..3 {
            late.on_packet(from, seq, later);
        }
        assert_eq!(late.on_packet(from, 3, later), Verdict::Latch(from));
    }

    #[test]
    fn interleaved_sources_never_finish_probation() {
        let now = t0();
        let mut l = PeerLearning::new(addr("198.51.100.7:4000"), true, None, now);
        let (a, b) = (addr("198.51.100.7:5000"), addr("198.51.100.7:5002"));
        for seq in 0..20u16 {
            assert_ne!(
                l.on_packet(if seq % 2 == 0 { a } else { b }, seq, now),
                Verdict::Latch(a)
            );
        }
        assert_eq!(l.latched(), None);
    }

    #[test]
    fn another_ip_is_learned_only_for_a_nat_address_and_only_in_the_window() {
        let now = t0();
        let nat = addr("203.0.113.50:31000");
        // A phone behind NAT wrote its private address.
        let mut l = PeerLearning::new(addr("192.168.1.20:4000"), true, None, now);
        for seq in 100..103 {
            assert_eq!(
                l.on_packet(nat, seq, now + Duration::from_millis(500)),
                Verdict::Drop(DropReason::Probation)
            );
        }
        assert_eq!(
            l.on_packet(nat, 103, now + Duration::from_millis(560)),
            Verdict::Latch(nat)
        );
        assert_eq!(l.send_to(), nat);
        // Too late: the window closed.
        let mut late = PeerLearning::new(addr("192.168.1.20:4000"), true, None, now);
        for seq in 0..10 {
            assert_eq!(
                late.on_packet(nat, seq, now + LEARNING_WINDOW),
                Verdict::Drop(DropReason::NotLearnable)
            );
        }
        // A public SDP address is where the peer's media is: no NAT learning.
        let mut public = PeerLearning::new(addr("198.51.100.7:4000"), true, None, now);
        for seq in 0..10 {
            assert_eq!(
                public.on_packet(nat, seq, now),
                Verdict::Drop(DropReason::NotLearnable)
            );
        }
    }

    #[test]
    fn another_ip_is_learned_from_where_the_peers_signalling_comes_from() {
        let now = t0();
        // A phone whose SDP names another interface (or a VPN) than the
        // one its packets leave by, which is also where its SIP came from.
        let from = addr("127.0.0.1:40000");
        let sip = Some("127.0.0.1".parse().unwrap());
        let mut l = PeerLearning::new(addr("192.0.2.2:40000"), true, sip, now);
        let sprayer = addr("127.0.0.2:40000");
        for seq in 0..10 {
            assert_eq!(
                l.on_packet(sprayer, seq, now),
                Verdict::Drop(DropReason::NotLearnable)
            );
        }
        for seq in 0..3 {
            assert_eq!(
                l.on_packet(from, seq, now),
                Verdict::Drop(DropReason::Probation)
            );
        }
        assert_eq!(l.on_packet(from, 3, now), Verdict::Latch(from));
        // Outside the window, not even from there.
        let mut late = PeerLearning::new(addr("192.0.2.2:40000"), true, sip, now);
        for seq in 0..10 {
            assert_eq!(
                late.on_packet(from, seq, now + LEARNING_WINDOW),
                Verdict::Drop(DropReason::NotLearnable)
            );
        }
    }

    #[test]
    fn without_symmetric_rtp_only_the_sdp_ip_is_heard_and_rtp_goes_to_the_sdp_address() {
        let now = t0();
        let sip = Some("203.0.113.50".parse().unwrap());
        let mut l = PeerLearning::new(addr("192.168.1.20:4000"), false, sip, now);
        for seq in 0..10 {
            assert_eq!(
                l.on_packet(addr("203.0.113.50:31000"), seq, now),
                Verdict::Drop(DropReason::NotLearnable)
            );
        }
        // A gateway sending from another port than its SDP's.
        let other_port = addr("192.168.1.20:4002");
        for seq in 0..3 {
            assert_eq!(
                l.on_packet(other_port, seq, now),
                Verdict::Drop(DropReason::Probation)
            );
        }
        assert_eq!(l.on_packet(other_port, 3, now), Verdict::Latch(other_port));
        assert_eq!(l.send_to(), addr("192.168.1.20:4000"));
        let mut exact = PeerLearning::new(addr("192.168.1.20:4000"), false, None, now);
        assert!(matches!(
            exact.on_packet(addr("192.168.1.20:4000"), 1, now),
            Verdict::Latch(_)
        ));
    }

    #[test]
    fn a_reinvite_to_a_new_address_relearns_and_keeps_hearing_the_old_peer_meanwhile() {
        let now = t0();
        let old = addr("198.51.100.7:4000");
        let new = addr("198.51.100.99:6000");
        let mut l = PeerLearning::new(old, true, None, now);
        assert_eq!(l.on_packet(old, 1, now), Verdict::Latch(old));
        // The same address again: nothing to relearn.
        assert!(!l.renegotiate(old, true, None, now + Duration::from_secs(5)));
        assert_eq!(l.latched(), Some(old));
        // Media moves to another gateway.
        let t = now + Duration::from_secs(10);
        assert!(l.renegotiate(new, true, None, t));
        assert_eq!(l.send_to(), old);
        assert_eq!(l.on_packet(old, 2, t), Verdict::Accept);
        assert_eq!(
            l.on_packet(addr("203.0.113.9:1"), 1, t),
            Verdict::Drop(DropReason::ForeignSource)
        );
        assert_eq!(l.on_packet(new, 500, t), Verdict::Latch(new));
        assert_eq!(
            l.on_packet(old, 3, t),
            Verdict::Drop(DropReason::ForeignSource)
        );
        // A re-INVITE whose new address never sends: the old peer latches
        // again when the window closes.
        let mut m = PeerLearning::new(old, true, None, now);
        m.on_packet(old, 1, now);
        m.renegotiate(new, true, None, t);
        assert_eq!(m.poll(t + Duration::from_secs(1)), None);
        assert_eq!(m.poll(t + LEARNING_WINDOW), Some(old));
        assert_eq!(m.latched(), Some(old));
    }

    #[test]
    fn nat_addresses() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(behind_nat(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "198.51.100.7", "100.128.0.1", "2001:db8::1"] {
            assert!(!behind_nat(ip.parse().unwrap()), "{ip}");
        }
    }
}
