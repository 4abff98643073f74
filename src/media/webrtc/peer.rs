//! webrtc-rs's own full-ICE peer, as a browser is one: what the tests and
//! the load generator (`examples/webrtc_load.rs`) answer the engine's
//! offers with. The engine itself never uses it.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;

use super::endpoint::{
    add_audio, host_candidate, info_of, media_engine, udp_datagram, write_rtp, Wire,
};
use super::WebRtcError;
use crate::media::rtp::RtpInfo;

/// A browser's side of one leg: answers with one codec (`wire`) and
/// telephone-event from one UDP address, as a DTLS client.
pub struct Peer {
    pc: RTCPeerConnection,
    local: SocketAddr,
    sender: RTCRtpSenderId,
    ssrc: u32,
    wire: Wire,
}

/// What a [`Peer::poll`] found.
#[derive(Default)]
pub struct Polled {
    /// `Some` when the connection came up (`true`) or went (`false`).
    pub connected: Option<bool>,
    /// RTP received: header fields and payload.
    pub received: Vec<(RtpInfo, Bytes)>,
    /// Datagrams to send, and where.
    pub out: Vec<(SocketAddr, BytesMut)>,
    /// RTCP reports received (decrypted, compound).
    pub rtcp: Vec<Bytes>,
}

impl Peer {
    /// A peer on `local` answering `offer`, sending with SSRC `ssrc`; and
    /// its answer (SDP).
    pub fn answer(
        offer: &str,
        local: SocketAddr,
        ssrc: u32,
        wire: Wire,
        now: Instant,
    ) -> Result<(Peer, String), WebRtcError> {
        let setup = |e: rtc::shared::error::Error| WebRtcError::Setup(e.to_string());
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_answering_dtls_role(RTCDtlsRole::Client)
                    .build(),
            )
            .with_media_engine(media_engine(wire)?)
            .with_interceptor_registry(super::reports::registry())
            .build(now)
            .map_err(setup)?;
        pc.add_local_candidate(host_candidate(local)?)
            .map_err(setup)?;
        let sender = add_audio(&mut pc, wire, ssrc)?;
        let offer = RTCSessionDescription::offer(offer.to_owned())
            .map_err(|e| WebRtcError::Answer(e.to_string()))?;
        pc.set_remote_description(now, offer)
            .map_err(|e| WebRtcError::Answer(e.to_string()))?;
        let answer = pc.create_answer(None).map_err(setup)?;
        pc.set_local_description(now, answer.clone())
            .map_err(setup)?;
        Ok((
            Peer {
                pc,
                local,
                sender,
                ssrc,
                wire,
            },
            answer.sdp,
        ))
    }

    /// A datagram from `from`.
    pub fn receive(&mut self, from: SocketAddr, bytes: BytesMut, now: Instant) {
        let _ = self
            .pc
            .handle_read(udp_datagram(self.local, from, bytes, now));
    }

    /// Runs its timers; what happened and what to send.
    pub fn poll(&mut self, now: Instant) -> Polled {
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.pc.handle_timeout(now);
        }
        let mut polled = Polled::default();
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                match s {
                    RTCPeerConnectionState::Connected => polled.connected = Some(true),
                    RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
                    | RTCPeerConnectionState::Disconnected => polled.connected = Some(false),
                    _ => {}
                }
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(_, p) => {
                    polled.received.push((info_of(&p.header), p.payload));
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    if let Ok(raw) = rtc::rtcp::packet::marshal(&packets) {
                        polled.rtcp.push(raw.freeze());
                    }
                }
                _ => {}
            }
        }
        while let Some(m) = self.pc.poll_write() {
            polled.out.push((m.transport.peer_addr, m.message));
        }
        polled
    }

    /// Sends one 20 ms frame of its codec, number `seq`.
    pub fn send(&mut self, seq: u16, payload: &[u8], now: Instant) -> bool {
        let info = RtpInfo {
            payload_type: self.wire.payload_type(),
            sequence: seq,
            timestamp: u32::from(seq).wrapping_mul(self.wire.ticks_per_frame()),
            ssrc: self.ssrc,
            marker: false,
        };
        write_rtp(&mut self.pc, self.sender, &info, payload, now)
    }

    /// Sends an RTCP compound packet (in clear; the peer protects it).
    pub fn send_rtcp(&mut self, compound: &[u8], now: Instant) -> bool {
        let mut raw = Bytes::copy_from_slice(compound);
        let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut raw) else {
            return false;
        };
        match self.pc.rtp_sender(self.sender) {
            Some(mut s) => s.write_rtcp(now, packets).is_ok(),
            None => false,
        }
    }
}
