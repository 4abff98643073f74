//! One browser leg's WebRTC endpoint, sans I/O: webrtc-rs's `rtc` peer
//! connection as an ICE-lite offerer with one audio m-line (PCMU or PCMA,
//! or Opus when configured, and telephone-event; bundled, rtcp-mux),
//! DTLS-SRTP. With Opus the endpoint transcodes at its edge
//! ([`super::opus`]), so the media clock sees the caller's G.711 either way. It is handed the
//! datagrams the shared port routed to it and `now`; it returns datagrams
//! to send, received RTP and its state. The media clock drives it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::opus::{Transcoder, OPUS_PT};
use crate::media::rtcp::rescale;
use crate::media::rtp::RtpInfo;
use crate::sdp::Codec;

/// The payload type offered for telephone-event (RFC 4733).
pub const DTMF_PT: u8 = 101;

/// The browser's RTCP packets kept for the leg between two readings.
const RTCP_KEPT: usize = 8;

/// A browser leg's audio on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// The caller's own G.711, straight through.
    G711(Codec),
    /// Opus (48 kHz RTP clock), transcoded to and from the caller's G.711.
    Opus,
}

impl Wire {
    /// Its payload type, and RTP clock ticks per 20 ms.
    pub fn payload_type(self) -> u8 {
        match self {
            Wire::G711(c) => c.payload_type(),
            Wire::Opus => OPUS_PT,
        }
    }

    pub fn ticks_per_frame(self) -> u32 {
        match self {
            Wire::G711(_) => 160,
            Wire::Opus => 960,
        }
    }
}

/// Why a browser leg could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebRtcError {
    #[error("the WebRTC endpoint could not be made: {0}")]
    Setup(String),
    #[error("the browser's answer was refused: {0}")]
    Answer(String),
    #[error("the browser's ICE candidate was refused: {0}")]
    Candidate(String),
}

/// Where a leg's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Offered, or checking and handshaking.
    Connecting,
    /// ICE and DTLS done: media flows.
    Connected,
    /// Nothing came from the browser for the consent timeout, or the
    /// handshake failed: the leg is dead.
    Failed,
}

/// What one endpoint needs to know of the engine.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The shared socket's address (packets are tagged with it).
    pub local: SocketAddr,
    /// The host candidate offered (the advertised address, shared port).
    pub candidate: SocketAddr,
    /// Silence from the browser after which the leg is dead.
    pub consent_timeout: Duration,
    /// Opus on the wire (transcoded), instead of the caller's G.711.
    pub opus: bool,
}

/// One browser leg's WebRTC endpoint.
pub struct Endpoint {
    pc: RTCPeerConnection,
    local: SocketAddr,
    sender: RTCRtpSenderId,
    ssrc: u32,
    ufrag: String,
    state: LinkState,
    /// A state change not yet taken by [`Endpoint::poll_state`].
    changed: bool,
    answered: bool,
    /// The browser's ICE username fragment and DTLS fingerprint, from its
    /// answer: a later offer must keep them (no ICE restart, same DTLS).
    theirs: Option<(String, String)>,
    /// Our SDP's version (`o=`), raised by each answer to a re-offer.
    version: u64,
    /// When the browser was last heard (a datagram the connection took),
    /// or answered.
    heard_at: Instant,
    consent: Duration,
    /// With Opus on the wire: the transcoder, and the caller's G.711
    /// payload type the media clock speaks.
    opus: Option<(Box<Transcoder>, u8)>,
    /// RTCP the browser sent (decrypted), each compound packet written out
    /// again for the leg's own reading (`media::rtcp`).
    rtcp_in: std::collections::VecDeque<Bytes>,
}

fn codec(
    mime: &str,
    payload_type: u8,
    clock_rate: u32,
    channels: u16,
    fmtp: &str,
) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type,
    }
}

/// A media engine of one codec and telephone-event on its clock.
pub(super) fn media_engine(wire: Wire) -> Result<MediaEngine, WebRtcError> {
    let setup = |e: rtc::shared::error::Error| WebRtcError::Setup(e.to_string());
    let mut media = MediaEngine::default();
    for c in [codec_parameters(wire), events(wire)] {
        media
            .register_codec(c, RtpCodecKind::Audio)
            .map_err(setup)?;
    }
    Ok(media)
}

fn codec_parameters(wire: Wire) -> RTCRtpCodecParameters {
    match wire {
        Wire::G711(Codec::Pcmu) => codec(MIME_TYPE_PCMU, 0, 8000, 0, ""),
        Wire::G711(Codec::Pcma) => codec(MIME_TYPE_PCMA, 8, 8000, 0, ""),
        Wire::Opus => codec(MIME_TYPE_OPUS, OPUS_PT, 48_000, 2, super::opus::FMTP),
    }
}

/// telephone-event on the audio codec's clock (RFC 4733 §2.5.1.1).
fn events(wire: Wire) -> RTCRtpCodecParameters {
    let rate = match wire {
        Wire::G711(_) => 8000,
        Wire::Opus => 48_000,
    };
    codec(MIME_TYPE_TELEPHONE_EVENT, DTMF_PT, rate, 0, "0-16")
}

/// Adds the one audio stream: sending `wire` with SSRC `ssrc`, offering
/// (or answering with) it and telephone-event. A track alone would
/// narrow the transceiver to the track's own codec, and no DTMF could go
/// either way.
pub(super) fn add_audio(
    pc: &mut RTCPeerConnection,
    wire: Wire,
    ssrc: u32,
) -> Result<RTCRtpSenderId, WebRtcError> {
    let setup = |e: rtc::shared::error::Error| WebRtcError::Setup(e.to_string());
    let transceiver = pc
        .add_transceiver_from_kind(RtpCodecKind::Audio, None)
        .map_err(setup)?;
    let codecs = vec![codec_parameters(wire), events(wire)];
    pc.rtp_transceiver(transceiver)
        .ok_or_else(|| WebRtcError::Setup("no transceiver".into()))?
        .set_codec_preferences(codecs)
        .map_err(setup)?;
    // The track takes the transceiver just made, keeping its codecs.
    pc.add_track(audio_track(wire, ssrc)).map_err(setup)
}

/// One audio track sending `wire` with SSRC `ssrc`.
fn audio_track(wire: Wire, ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("hotline-{ssrc}"),
        format!("audio-{ssrc}"),
        "audio".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec_parameters(wire).rtp_codec,
            ..Default::default()
        }],
    )
}

/// The UDP host candidate at `addr`.
pub(super) fn host_candidate(addr: SocketAddr) -> Result<RTCIceCandidateInit, WebRtcError> {
    let setup = |e: rtc::shared::error::Error| WebRtcError::Setup(e.to_string());
    let host = CandidateHostConfig {
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
    .map_err(setup)?;
    RTCIceCandidate::from(&host).to_json().map_err(setup)
}

/// A UDP datagram from `from` to `local`, as webrtc-rs takes it.
pub(super) fn udp_datagram(
    local: SocketAddr,
    from: SocketAddr,
    bytes: BytesMut,
    now: Instant,
) -> TaggedBytesMut {
    TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: bytes,
    }
}

/// Sends one RTP packet (header fields `info`) through `sender`.
pub(super) fn write_rtp(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
    info: &RtpInfo,
    payload: &[u8],
    now: Instant,
) -> bool {
    let packet = rtc::rtp::packet::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker: info.marker,
            payload_type: info.payload_type,
            sequence_number: info.sequence,
            timestamp: info.timestamp,
            ssrc: info.ssrc,
            ..Default::default()
        },
        payload: Bytes::copy_from_slice(payload),
    };
    match pc.rtp_sender(sender) {
        Some(mut s) => s.write_rtp(now, packet).is_ok(),
        None => false,
    }
}

/// The header fields the engine acts on, of a packet webrtc-rs read.
pub(super) fn info_of(h: &rtc::rtp::header::Header) -> RtpInfo {
    RtpInfo {
        payload_type: h.payload_type,
        sequence: h.sequence_number,
        timestamp: h.timestamp,
        ssrc: h.ssrc,
        marker: h.marker,
    }
}

/// A random string of `n` ICE characters (RFC 8839: ALPHA / DIGIT).
fn ice_chars(n: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

impl Endpoint {
    /// A new endpoint for a leg whose media path speaks `codec_of_leg`
    /// (sent as it is, or as Opus when `settings.opus`), sending with SSRC
    /// `ssrc`; and its offer (SDP).
    pub fn offer(
        settings: &Settings,
        codec_of_leg: Codec,
        ssrc: u32,
        now: Instant,
    ) -> Result<(Endpoint, String), WebRtcError> {
        let setup = |e: rtc::shared::error::Error| WebRtcError::Setup(e.to_string());
        let (wire, opus) = if settings.opus {
            let t = Transcoder::new(codec_of_leg)
                .map_err(|e| WebRtcError::Setup(format!("Opus: {}", e.0)))?;
            (Wire::Opus, Some((Box::new(t), codec_of_leg.payload_type())))
        } else {
            (Wire::G711(codec_of_leg), None)
        };
        let media = media_engine(wire)?;
        let ufrag = ice_chars(16);
        // Liveness is ours (see `tick`): rtc's ICE judges only its first
        // selected pair, and a browser may move to another one.
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_lite(true)
                    .with_ice_credentials(ufrag.clone(), ice_chars(24))
                    .with_ice_timeouts(Some(Duration::ZERO), Some(Duration::ZERO), None)
                    .build(),
            )
            .with_media_engine(media)
            .with_interceptor_registry(super::reports::registry())
            .build(now)
            .map_err(setup)?;
        let sender = add_audio(&mut pc, wire, ssrc)?;
        let offer = pc.create_offer(None).map_err(setup)?;
        pc.set_local_description(now, offer).map_err(setup)?;
        pc.add_local_candidate(host_candidate(settings.candidate)?)
            .map_err(setup)?;
        let sdp = pc
            .local_description()
            .map(|d| d.sdp.clone())
            .ok_or_else(|| WebRtcError::Setup("no local description".into()))?;
        Ok((
            Endpoint {
                pc,
                local: settings.local,
                sender,
                ssrc,
                ufrag,
                state: LinkState::Connecting,
                changed: false,
                answered: false,
                theirs: None,
                version: 0,
                heard_at: now,
                consent: settings.consent_timeout,
                opus,
                rtcp_in: std::collections::VecDeque::new(),
            },
            sdp,
        ))
    }

    /// What the leg sends and receives on the wire.
    pub fn wire(&self) -> Option<Wire> {
        self.opus.as_ref().map(|_| Wire::Opus)
    }

    /// Our ICE username fragment: the shared port routes a browser's first
    /// check by it.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// The SSRC we send with.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The browser's answer (SDP). Refused unless it is a usable answer to
    /// our offer (the codec accepted, DTLS fingerprints present).
    pub fn answer(&mut self, sdp: &str, now: Instant) -> Result<(), WebRtcError> {
        if self.answered {
            return Err(WebRtcError::Answer("the leg already has an answer".into()));
        }
        let answer = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| WebRtcError::Answer(e.to_string()))?;
        self.pc
            .set_remote_description(now, answer)
            .map_err(|e| WebRtcError::Answer(e.to_string()))?;
        self.theirs = sdp_attribute(sdp, "ice-ufrag").zip(sdp_attribute(sdp, "fingerprint"));
        self.answered = true;
        self.heard_at = now;
        Ok(())
    }

    /// A browser phone's re-offer on the same connection (a SIP phone's
    /// re-INVITE: JsSIP's hold and resume). Only a change of direction is
    /// taken: the same ICE credentials and DTLS fingerprint (no restart)
    /// and our codec among its formats. Returns our answer, the session
    /// as it is with the direction that answers theirs, and whether the
    /// browser holds the call (it no longer receives).
    pub fn reanswer(&mut self, offer: &str) -> Result<(String, bool), WebRtcError> {
        let refuse = |why: &str| Err(WebRtcError::Answer(why.to_owned()));
        let Some((ufrag, fingerprint)) = self.theirs.clone() else {
            return refuse("a re-offer before the first answer");
        };
        if sdp_attribute(offer, "ice-ufrag").as_deref() != Some(ufrag.as_str())
            || sdp_attribute(offer, "fingerprint").as_deref() != Some(fingerprint.as_str())
        {
            return refuse("a re-offer with new ICE credentials or DTLS keys (a restart)");
        }
        let Some(ours) = self.pc.local_description().map(|d| d.sdp.clone()) else {
            return refuse("no session of ours");
        };
        let codec_pt = match self.opus {
            Some(_) => OPUS_PT.to_string(),
            None => m_line_formats(&ours)
                .first()
                .map(|f| f.to_string())
                .unwrap_or_default(),
        };
        if !m_line_formats(offer).contains(&codec_pt.as_str()) {
            return refuse("a re-offer without the session's codec");
        }
        let theirs = direction(offer);
        let answer_direction = match theirs {
            "sendonly" => "recvonly",
            "recvonly" => "sendonly",
            "inactive" => "inactive",
            _ => "sendrecv",
        };
        self.version += 1;
        Ok((
            reanswered(&ours, answer_direction, self.version),
            !matches!(theirs, "sendrecv" | "recvonly"),
        ))
    }

    /// A trickled candidate from the browser. An ICE-lite endpoint learns
    /// the browser's addresses from its checks, so one it cannot read
    /// (an mDNS name) is no loss; an empty one ends the trickle.
    pub fn candidate(&mut self, candidate: &str) -> Result<(), WebRtcError> {
        if !self.answered {
            return Err(WebRtcError::Candidate(
                "a candidate before the answer".into(),
            ));
        }
        if candidate.is_empty() {
            return Ok(());
        }
        self.pc
            .add_remote_candidate(RTCIceCandidateInit {
                candidate: candidate.to_owned(),
                ..Default::default()
            })
            .map_err(|e| WebRtcError::Candidate(e.to_string()))
    }

    /// A datagram the shared port routed here.
    pub fn receive(&mut self, from: SocketAddr, bytes: BytesMut, now: Instant) {
        let taken = self
            .pc
            .handle_read(udp_datagram(self.local, from, bytes, now));
        // Consent (RFC 7675) as an ICE-lite end can judge it: the browser's
        // checks and media keep coming, on whichever pair it uses now.
        if taken.is_ok() {
            self.heard_at = now;
        }
        self.take_events();
    }

    /// Runs the endpoint's timers (ICE consent, DTLS retransmission).
    pub fn tick(&mut self, now: Instant) {
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.pc.handle_timeout(now);
        }
        self.take_events();
        // Answered, and nothing heard for the consent timeout (connected or
        // still connecting): a closed tab, a laptop gone, a path that
        // never worked.
        let silent = now.saturating_duration_since(self.heard_at) > self.consent;
        if self.answered && silent && self.state != LinkState::Failed {
            self.state = LinkState::Failed;
            self.changed = true;
        }
    }

    /// Sends one RTP packet (written by the media clock, in clear): the
    /// endpoint protects it. `false` while not connected or on a refusal.
    pub fn send_rtp(&mut self, info: &RtpInfo, payload: &[u8], now: Instant) -> bool {
        if self.state != LinkState::Connected {
            return false;
        }
        let info = RtpInfo {
            ssrc: self.ssrc,
            ..*info
        };
        let Some((opus, _)) = self.opus.as_mut() else {
            return write_rtp(&mut self.pc, self.sender, &info, payload, now);
        };
        let (pc, sender) = (&mut self.pc, self.sender);
        let mut sent = true;
        opus.to_browser(&info, payload, DTMF_PT, |i, p| {
            sent &= write_rtp(pc, sender, i, p, now);
        });
        sent
    }

    /// Sends our RTCP report (a compound packet the leg wrote, in clear,
    /// about its stream): the endpoint protects it (SRTCP, muxed).
    /// `false` while not connected or when it is not RTCP.
    pub fn send_rtcp(&mut self, compound: &[u8], now: Instant) -> bool {
        if self.state != LinkState::Connected {
            return false;
        }
        let mut raw = BytesMut::from(compound);
        if self.opus.is_some() {
            // Written on the caller's 8 kHz; the wire's clock is 48 kHz.
            rescale(&mut raw, |v| v.wrapping_mul(super::opus::TICKS));
        }
        let mut raw = raw.freeze();
        let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut raw) else {
            return false;
        };
        match self.pc.rtp_sender(self.sender) {
            Some(mut s) => s.write_rtcp(now, packets).is_ok(),
            None => false,
        }
    }

    /// The next RTCP packet the browser sent (decrypted, compound), for
    /// the leg's reports: its loss and jitter of our stream, and the round
    /// trip. They are set aside by [`Endpoint::poll_rtp`]: read them once
    /// it has none left.
    pub fn poll_rtcp(&mut self) -> Option<Bytes> {
        self.rtcp_in.pop_front()
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.pc
            .poll_write()
            .map(|m| (m.transport.peer_addr, m.message))
    }

    /// The next RTP packet received (decrypted), as its header fields and
    /// payload: Opus comes out as the caller's G.711.
    pub fn poll_rtp(&mut self) -> Option<(RtpInfo, Bytes)> {
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtcpPacket(_, packets) = &message {
                // Kept for the leg, a few at most (they come every second
                // or so, and the clock takes them each tick).
                if self.rtcp_in.len() < RTCP_KEPT {
                    if let Ok(mut raw) = rtc::rtcp::packet::marshal(packets) {
                        if self.opus.is_some() {
                            // Its jitter of our stream, on our 8 kHz.
                            rescale(&mut raw, |v| v / super::opus::TICKS);
                        }
                        self.rtcp_in.push_back(raw.freeze());
                    }
                }
                continue;
            }
            if let RTCMessage::RtpPacket(_, p) = message {
                let info = info_of(&p.header);
                let Some((opus, g711_pt)) = self.opus.as_mut() else {
                    return Some((info, p.payload));
                };
                if let Some(converted) = opus.from_browser(info, &p.payload, *g711_pt, DTMF_PT) {
                    return Some(converted);
                }
            }
        }
        None
    }

    /// The state, when it changed since last asked.
    pub fn poll_state(&mut self) -> Option<LinkState> {
        std::mem::take(&mut self.changed).then_some(self.state)
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    fn take_events(&mut self) {
        while let Some(ev) = self.pc.poll_event() {
            let next = match ev {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => match s {
                    RTCPeerConnectionState::Connected => LinkState::Connected,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        LinkState::Failed
                    }
                    _ => continue,
                },
                _ => continue,
            };
            // Failed is final: a late packet does not revive a dead leg.
            if self.state != next && self.state != LinkState::Failed {
                self.state = next;
                self.changed = true;
            }
        }
    }
}

/// The value of the first `a=NAME:` line of `sdp`.
fn sdp_attribute(sdp: &str, name: &str) -> Option<String> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(prefix.as_str()))
        .map(str::to_owned)
}

/// The formats of the first audio m-line.
fn m_line_formats(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("m=audio "))
        .map(|rest| rest.split(' ').skip(2).collect())
        .unwrap_or_default()
}

/// The direction an SDP (its one audio section, else the session) asks.
fn direction(sdp: &str) -> &'static str {
    let mut found = "sendrecv";
    for l in sdp.lines().map(str::trim_end) {
        for d in ["sendrecv", "sendonly", "recvonly", "inactive"] {
            if l.strip_prefix("a=") == Some(d) {
                found = d;
            }
        }
    }
    found
}

/// Our first offer as an answer to a re-offer: the DTLS role we took
/// (passive: the browser is the client), the direction, a new version.
fn reanswered(ours: &str, direction: &str, version: u64) -> String {
    let mut out = String::with_capacity(ours.len() + 16);
    for l in ours.lines().map(str::trim_end) {
        let line = match l {
            "a=setup:actpass" => "a=setup:passive".to_owned(),
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive" => format!("a={direction}"),
            _ if l.starts_with("o=") => {
                let mut f: Vec<String> = l.split(' ').map(str::to_owned).collect();
                if let Some(v) = f.get_mut(2) {
                    let base: u64 = v.parse().unwrap_or(0);
                    *v = base.wrapping_add(version).to_string();
                }
                f.join(" ")
            }
            _ => l.to_owned(),
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
