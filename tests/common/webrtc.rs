//! A browser's WebRTC side for tests: webrtc-rs's own full-ICE peer
//! (`hotline::media::webrtc::peer`) over a real UDP socket, answering the
//! engine's offer and sending PCMU frames.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hotline::media::webrtc::peer::Peer;
use hotline::media::webrtc::Wire;

const SSRC: u32 = 0x0b0b_0b0b;

pub struct BrowserPeer {
    peer: Peer,
    socket: UdpSocket,
    seq: u16,
    pub connected: bool,
    /// Payloads received, in order.
    pub received: Vec<Bytes>,
}

impl BrowserPeer {
    /// A peer on `bind` answering `offer` with PCMU; returns it and its
    /// answer.
    pub fn answer(offer: &str, bind: SocketAddr) -> (BrowserPeer, String) {
        BrowserPeer::answer_with(offer, bind, Wire::G711(hotline::sdp::Codec::Pcmu))
    }

    /// As [`BrowserPeer::answer`], with `wire` (PCMU, or Opus frames).
    pub fn answer_with(offer: &str, bind: SocketAddr, wire: Wire) -> (BrowserPeer, String) {
        let socket = UdpSocket::bind(bind).expect("the browser peer's port");
        socket.set_nonblocking(true).unwrap();
        let local = socket.local_addr().unwrap();
        let (peer, answer) =
            Peer::answer(offer, local, SSRC, wire, Instant::now()).expect("an answer");
        (
            BrowserPeer {
                peer,
                socket,
                seq: 0,
                connected: false,
                received: Vec::new(),
            },
            answer,
        )
    }

    /// Handles what arrived, runs timers, sends what is due.
    pub fn pump(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            self.peer.receive(from, BytesMut::from(&buf[..n]), now);
        }
        let polled = self.peer.poll(now);
        if let Some(c) = polled.connected {
            self.connected = c;
        }
        self.received
            .extend(polled.received.into_iter().map(|(_, payload)| payload));
        for (to, bytes) in polled.out {
            let _ = self.socket.send_to(&bytes, to);
        }
    }

    /// Sends one PCMU frame (once connected).
    pub fn send(&mut self, frame: &[u8]) {
        if !self.connected {
            return;
        }
        self.seq = self.seq.wrapping_add(1);
        self.peer.send(self.seq, frame, Instant::now());
        self.pump();
    }

    /// Pumps for `time`, sending `frame` every 20 ms when given.
    pub fn run(&mut self, time: Duration, frame: Option<&[u8]>) {
        let until = Instant::now() + time;
        let mut next = Instant::now();
        while Instant::now() < until {
            self.pump();
            if Instant::now() >= next {
                if let Some(f) = frame {
                    self.send(f);
                }
                next += Duration::from_millis(20);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Pumps until connected or `timeout`; whether it connected.
    pub fn connect(&mut self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.connected && Instant::now() < until {
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
        self.connected
    }
}
