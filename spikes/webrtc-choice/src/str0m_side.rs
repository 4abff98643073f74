//! str0m's peers: one `Rtc` a side, packets handed over in memory.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::{addr, Packet, Peer, Status};

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

pub struct Side {
    rtc: Rtc,
    addr: SocketAddr,
    inbox: VecDeque<(SocketAddr, Vec<u8>)>,
    next: Instant,
    mid: Option<Mid>,
    status: Status,
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
            status: Status::default(),
        }
    }

    /// Everything the side has to say now; its packets go to `out`.
    fn drain(&mut self, out: &mut Vec<Packet>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next = t;
                    return;
                }
                Ok(Output::Transmit(t)) => out.push((t.destination, t.source, t.contents.to_vec())),
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.status.connected = true,
                    Event::MediaAdded(m) => self.mid = Some(m.mid),
                    Event::MediaData(_) => self.status.received += 1,
                    _ => {}
                },
                Err(e) => panic!("str0m: {e}"),
            }
        }
    }
}

impl Peer for Side {
    fn step(&mut self, now: Instant, out: &mut Vec<Packet>) {
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
                self.status.sent += 1;
            }
        }
    }

    fn pair(i: usize, now: Instant) -> (Side, Side) {
        static CRYPTO: std::sync::Once = std::sync::Once::new();
        CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
        let mut l = Side::new(addr(i, true), now);
        let mut r = Side::new(addr(i, false), now);
        let mut change = l.rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let answer = r.rtc.sdp_api().accept_offer(offer).unwrap();
        l.rtc.sdp_api().accept_answer(pending, answer).unwrap();
        l.mid = Some(mid);
        (l, r)
    }

    fn deliver(&mut self, from: SocketAddr, bytes: Vec<u8>) {
        self.inbox.push_back((from, bytes));
    }

    fn status(&self) -> &Status {
        &self.status
    }
}
