//! str0m's peers: one `Rtc` a side, packets handed over in memory.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

struct Side {
    rtc: Rtc,
    addr: SocketAddr,
    inbox: VecDeque<(SocketAddr, Vec<u8>)>,
    next: Instant,
    mid: Option<Mid>,
    connected: bool,
    sent: u64,
    received: u64,
}

impl Side {
    fn new(addr: SocketAddr, now: Instant) -> Side {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_pcmu(true, false)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        Side {
            rtc,
            addr,
            inbox: VecDeque::new(),
            next: now,
            mid: None,
            connected: false,
            sent: 0,
            received: 0,
        }
    }

    /// Everything the side has to say now; its packets go to `out`.
    fn drain(&mut self, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next = t;
                    return;
                }
                Ok(Output::Transmit(t)) => out.push((t.destination, t.source, t.contents.to_vec())),
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.connected = true,
                    Event::MediaAdded(m) => self.mid = Some(m.mid),
                    Event::MediaData(_) => self.received += 1,
                    _ => {}
                },
                Err(e) => panic!("str0m: {e}"),
            }
        }
    }

    fn step(&mut self, now: Instant, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        while let Some((from, bytes)) = self.inbox.pop_front() {
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: self.addr,
                    contents: (&bytes[..]).try_into().unwrap(),
                },
            );
            if self.rtc.accepts(&input) {
                self.rtc.handle_input(input).unwrap();
            }
            self.drain(out);
        }
        if self.next <= now {
            self.rtc.handle_input(Input::Timeout(now)).unwrap();
            self.drain(out);
        }
    }

    fn send_frame(&mut self, now: Instant, start: Instant, frame: &[u8]) {
        let Some(mid) = self.mid else { return };
        let Some(pt) = self
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::PCMU)
            .map(|p| p.pt())
        else {
            return;
        };
        if let Some(w) = self.rtc.writer(mid) {
            let time = now.duration_since(start).into();
            if w.write(pt, now, time, frame.to_vec()).is_ok() {
                self.sent += 1;
            }
        }
    }
}

pub struct Str0mPairs {
    sides: Vec<Side>,
    start: Instant,
    frame: Vec<u8>,
}

impl Str0mPairs {
    /// Until nothing is in flight: every side handles what came and what
    /// is due by `now`.
    fn settle(&mut self, now: Instant) {
        let index = |addr: SocketAddr, sides: &[Side]| -> Option<usize> {
            let pair = addr.port().checked_sub(10000)? as usize;
            let left = addr.ip() == std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let i = 2 * pair + usize::from(!left);
            (i < sides.len()).then_some(i)
        };
        let mut out = Vec::new();
        loop {
            for s in &mut self.sides {
                s.step(now, &mut out);
            }
            if out.is_empty() {
                return;
            }
            for (to, from, bytes) in out.drain(..) {
                if let Some(i) = index(to, &self.sides) {
                    self.sides[i].inbox.push_back((from, bytes));
                }
            }
        }
    }
}

impl crate::Pairs for Str0mPairs {
    fn connect(n: usize, now: &mut Instant) -> (Self, usize) {
        str0m::crypto::from_feature_flags().install_process_default();
        let mut sides = Vec::with_capacity(2 * n);
        for i in 0..n {
            let port = 10000 + i as u16;
            let mut l = Side::new((Ipv4Addr::new(10, 0, 0, 1), port).into(), *now);
            let mut r = Side::new((Ipv4Addr::new(10, 0, 0, 2), port).into(), *now);
            let mut change = l.rtc.sdp_api();
            let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            let (offer, pending) = change.apply().unwrap();
            let answer = r.rtc.sdp_api().accept_offer(offer).unwrap();
            l.rtc.sdp_api().accept_answer(pending, answer).unwrap();
            l.mid = Some(mid);
            sides.push(l);
            sides.push(r);
        }
        let mut pairs = Str0mPairs {
            sides,
            start: *now,
            frame: vec![0xff; 160],
        };
        // Handshakes: 10 ms steps for at most 10 virtual seconds.
        for _ in 0..1000 {
            pairs.settle(*now);
            if pairs.sides.iter().all(|s| s.connected) {
                break;
            }
            *now += std::time::Duration::from_millis(10);
        }
        let connected = pairs
            .sides
            .chunks(2)
            .filter(|p| p[0].connected && p[1].connected)
            .count();
        (pairs, connected)
    }

    fn tick(&mut self, now: Instant) {
        let (start, frame) = (self.start, std::mem::take(&mut self.frame));
        for s in &mut self.sides {
            s.send_frame(now, start, &frame);
        }
        self.frame = frame;
        self.settle(now);
    }

    fn sent_received(&self) -> (u64, u64) {
        self.sides
            .iter()
            .fold((0, 0), |(a, b), s| (a + s.sent, b + s.received))
    }
}
