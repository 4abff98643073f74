//! webrtc-rs's sans-I/O peers (`rtc`): one `RTCPeerConnection` a side,
//! packets handed over in memory.

use std::net::SocketAddr;
use std::time::Instant;

use crate::{addr, Packet, Peer, Status};

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

pub struct Side {
    pc: RTCPeerConnection,
    addr: SocketAddr,
    inbox: Vec<(SocketAddr, Vec<u8>)>,
    sender: RTCRtpSenderId,
    ssrc: u32,
    seq: u16,
    status: Status,
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
            status: Status::default(),
        }
    }

    fn drain(&mut self, out: &mut Vec<Packet>) {
        while let Some(msg) = self.pc.poll_write() {
            out.push((msg.transport.peer_addr, self.addr, msg.message.to_vec()));
        }
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                if s == RTCPeerConnectionState::Connected {
                    self.status.connected = true;
                }
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(..) = message {
                self.status.received += 1;
            }
        }
    }
}

impl Peer for Side {
    fn step(&mut self, now: Instant, out: &mut Vec<Packet>) {
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
        if !self.status.connected {
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
                self.status.sent += 1;
            }
        }
    }

    fn pair(i: usize, now: Instant) -> (Side, Side) {
        let mut l = Side::new(addr(i, true), now, 1000 + i as u32);
        let mut r = Side::new(addr(i, false), now, 900_000 + i as u32);
        let offer = l.pc.create_offer(None).unwrap();
        l.pc.set_local_description(now, offer.clone()).unwrap();
        r.pc.set_remote_description(now, offer).unwrap();
        let answer = r.pc.create_answer(None).unwrap();
        r.pc.set_local_description(now, answer.clone()).unwrap();
        l.pc.set_remote_description(now, answer).unwrap();
        (l, r)
    }

    fn deliver(&mut self, from: SocketAddr, bytes: Vec<u8>) {
        self.inbox.push((from, bytes));
    }

    fn status(&self) -> &Status {
        &self.status
    }
}
