//! A browser's WebRTC side for tests: webrtc-rs's own full-ICE peer over a
//! real UDP socket, answering the engine's offer and sending PCMU frames.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

const SSRC: u32 = 0x0b0b_0b0b;

fn codec(mime: &str, pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: 8000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

pub struct BrowserPeer {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    sender: RTCRtpSenderId,
    seq: u16,
    pub connected: bool,
    /// Payloads received, in order.
    pub received: Vec<Bytes>,
}

impl BrowserPeer {
    /// A peer on `bind` answering `offer`; returns it and its answer.
    pub fn answer(offer: &str, bind: SocketAddr) -> (BrowserPeer, String) {
        let socket = UdpSocket::bind(bind).expect("the browser peer's port");
        socket.set_nonblocking(true).unwrap();
        let local = socket.local_addr().unwrap();
        let now = Instant::now();
        let mut media = MediaEngine::default();
        media
            .register_codec(codec(MIME_TYPE_PCMU, 0), RtpCodecKind::Audio)
            .unwrap();
        media
            .register_codec(codec(MIME_TYPE_TELEPHONE_EVENT, 101), RtpCodecKind::Audio)
            .unwrap();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_answering_dtls_role(RTCDtlsRole::Client)
                    .build(),
            )
            .with_media_engine(media)
            .build(now)
            .unwrap();
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&host).to_json().unwrap())
            .unwrap();
        let track = MediaStreamTrack::new(
            "browser".into(),
            "browser-audio".into(),
            "audio".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(SSRC),
                    ..Default::default()
                },
                codec: codec(MIME_TYPE_PCMU, 0).rtp_codec,
                ..Default::default()
            }],
        );
        let sender = pc.add_track(track).unwrap();
        pc.set_remote_description(now, RTCSessionDescription::offer(offer.to_owned()).unwrap())
            .unwrap();
        let answer = pc.create_answer(None).unwrap();
        pc.set_local_description(now, answer.clone()).unwrap();
        (
            BrowserPeer {
                pc,
                socket,
                local,
                sender,
                seq: 0,
                connected: false,
                received: Vec::new(),
            },
            answer.sdp,
        )
    }

    /// Handles what arrived, runs timers, sends what is due.
    pub fn pump(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            let _ = self.pc.handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: self.local,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: BytesMut::from(&buf[..n]),
            });
        }
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.pc.handle_timeout(now);
        }
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                self.connected = s == RTCPeerConnectionState::Connected;
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, p) = message {
                self.received.push(p.payload);
            }
        }
        while let Some(m) = self.pc.poll_write() {
            let _ = self.socket.send_to(&m.message, m.transport.peer_addr);
        }
    }

    /// Sends one PCMU frame (once connected).
    pub fn send(&mut self, frame: &[u8]) {
        if !self.connected {
            return;
        }
        self.seq = self.seq.wrapping_add(1);
        let packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 0,
                sequence_number: self.seq,
                timestamp: u32::from(self.seq) * 160,
                ssrc: SSRC,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(frame),
        };
        if let Some(mut s) = self.pc.rtp_sender(self.sender) {
            let _ = s.write_rtp(Instant::now(), packet);
        }
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
