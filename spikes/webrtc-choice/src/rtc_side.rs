//! webrtc-rs's sans-I/O peers (`rtc`): one `RTCPeerConnection` a side,
//! packets handed over in memory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_PCMU};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

fn pcmu() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_PCMU.to_owned(),
            clock_rate: 8000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        payload_type: 0,
        ..Default::default()
    }
}

struct Side {
    pc: RTCPeerConnection,
    addr: SocketAddr,
    inbox: Vec<(SocketAddr, Vec<u8>)>,
    sender: RTCRtpSenderId,
    ssrc: u32,
    seq: u16,
    connected: bool,
    sent: u64,
    received: u64,
}

impl Side {
    fn new(addr: SocketAddr, now: Instant, ssrc: u32) -> Side {
        let mut media = MediaEngine::default();
        media.register_codec(pcmu(), RtpCodecKind::Audio).unwrap();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_answering_dtls_role(RTCDtlsRole::Server)
                    .build(),
            )
            .with_media_engine(media)
            .build(now)
            .unwrap();
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
            .unwrap();
        let track = MediaStreamTrack::new(
            format!("s{ssrc}"),
            format!("t{ssrc}"),
            format!("audio{ssrc}"),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: pcmu().rtp_codec,
                ..Default::default()
            }],
        );
        let sender = pc.add_track(track).unwrap();
        Side {
            pc,
            addr,
            inbox: Vec::new(),
            sender,
            ssrc,
            seq: 0,
            connected: false,
            sent: 0,
            received: 0,
        }
    }

    fn drain(&mut self, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        while let Some(msg) = self.pc.poll_write() {
            out.push((msg.transport.peer_addr, self.addr, msg.message.to_vec()));
        }
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                if s == RTCPeerConnectionState::Connected {
                    self.connected = true;
                }
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(..) = message {
                self.received += 1;
            }
        }
    }

    fn step(&mut self, now: Instant, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        for (from, bytes) in std::mem::take(&mut self.inbox) {
            let _ = self.pc.handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: self.addr,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: BytesMut::from(&bytes[..]),
            });
            self.drain(out);
        }
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.pc.handle_timeout(now);
        }
        self.drain(out);
    }

    fn send_frame(&mut self, now: Instant, start: Instant, frame: &[u8]) {
        if !self.connected {
            return;
        }
        self.seq = self.seq.wrapping_add(1);
        let packet = rtp::packet::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 0,
                sequence_number: self.seq,
                timestamp: (now.duration_since(start).as_millis() * 8) as u32,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(frame),
        };
        if let Some(mut s) = self.pc.rtp_sender(self.sender) {
            if s.write_rtp(now, packet).is_ok() {
                self.sent += 1;
            }
        }
    }
}

pub struct RtcPairs {
    sides: Vec<Side>,
    start: Instant,
    frame: Vec<u8>,
}

impl RtcPairs {
    fn settle(&mut self, now: Instant) {
        let index = |addr: SocketAddr, n: usize| -> Option<usize> {
            let pair = addr.port().checked_sub(10000)? as usize;
            let left = addr.ip() == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let i = 2 * pair + usize::from(!left);
            (i < n).then_some(i)
        };
        let mut out = Vec::new();
        for _ in 0..64 {
            for s in &mut self.sides {
                s.step(now, &mut out);
            }
            if out.is_empty() {
                return;
            }
            let n = self.sides.len();
            for (to, from, bytes) in out.drain(..) {
                if let Some(i) = index(to, n) {
                    self.sides[i].inbox.push((from, bytes));
                }
            }
        }
    }
}

impl crate::Pairs for RtcPairs {
    fn connect(n: usize, now: &mut Instant) -> (Self, usize) {
        let mut sides = Vec::with_capacity(2 * n);
        for i in 0..n {
            let port = 10000 + i as u16;
            let mut l = Side::new(
                (Ipv4Addr::new(10, 0, 0, 1), port).into(),
                *now,
                1000 + i as u32,
            );
            let mut r = Side::new(
                (Ipv4Addr::new(10, 0, 0, 2), port).into(),
                *now,
                900_000 + i as u32,
            );
            let offer = l.pc.create_offer(None).unwrap();
            l.pc.set_local_description(*now, offer.clone()).unwrap();
            r.pc.set_remote_description(*now, offer).unwrap();
            let answer = r.pc.create_answer(None).unwrap();
            r.pc.set_local_description(*now, answer.clone()).unwrap();
            l.pc.set_remote_description(*now, answer).unwrap();
            sides.push(l);
            sides.push(r);
        }
        let mut pairs = RtcPairs {
            sides,
            start: *now,
            frame: vec![0xff; 160],
        };
        for _ in 0..1000 {
            pairs.settle(*now);
            if pairs.sides.iter().all(|s| s.connected) {
                break;
            }
            *now += Duration::from_millis(10);
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
