//! The media clock: a few ticker tasks, each serving many channels every
//! 20 ms. On each tick a ticker drains every channel's socket (peer
//! learning, DTMF detection) and sends each channel one frame, so
//! thousands of calls cost tens of wake-ups per second, not one timer and one
//! task per call.
//!
//! Over 800 lines: the hot path (receive, relay, send) stays in one file so
//! a frame's whole way through a tick reads top to bottom; half of the rest
//! is its unit tests.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::conversation::Conversation;
use super::dtmf::{Digit, DigitSource, InbandDetector, Rfc4733Receiver, Rfc4733Tone};
use super::g711;
use super::learn::{DropReason, PeerLearning, Verdict};
use super::prompt::{Prompt, FRAME_SAMPLES};
use super::quality::{LegRtcp, QualityHandle};
use super::rtp::{self, RtpInfo};
use super::webrtc::{BrowserLink, LinkState, WebRtcError};
use super::{rtcp, stamp};
use crate::sdp::Codec;

pub const TICK: Duration = Duration::from_millis(20);

/// How many events a channel holds for its call: digits, prompts' ends, a
/// recording, and a recorded conversation's audio (one event a second).
pub const CHANNEL_EVENTS: usize = 128;
/// At most this many packets are read from one channel per tick, so one
/// flooding peer cannot stall the others (a 10 ms-ptime peer needs 2).
const MAX_READS_PER_TICK: usize = 8;
/// A channel's RTCP port is read once every this many ticks (half a
/// second: reports come every few seconds), when its figures are published too.
const RTCP_EVERY: u64 = 25;
/// At most this many RTCP packets are read per visit.
const RTCP_READS: usize = 4;

/// What a call's media tells its call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Digit(Digit, DigitSource),
    /// The prompt started with this token played to its end.
    PlaybackDone {
        token: u64,
    },
    /// The recording started with this token ended (stopped, or full):
    /// the caller's audio as 8 kHz samples.
    Recorded {
        token: u64,
        samples: Vec<i16>,
    },
    /// More of the conversation being recorded: 8 kHz stereo, interleaved
    /// (this channel's caller left, the bridged peer right). `last` when
    /// the recording stopped.
    Conversation {
        token: u64,
        samples: Vec<i16>,
        last: bool,
    },
    /// Nothing came from the peer for the media timeout while it should
    /// have been sending (told once; a packet or a new stream re-arms it).
    Silent,
    /// A browser leg connected, or died (its consent ran out).
    Browser(LinkState),
    /// A browser leg's answer or candidate was refused.
    BrowserRefused(WebRtcError),
}

/// The RTP stream's agreed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    pub remote: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    pub dtmf_pt: Option<u8>,
    /// `false` while the caller holds us (sendonly/inactive) or has no address.
    pub send: bool,
    /// `true` while the peer should be sending to us (not `inactive`, not
    /// `recvonly`): only then does its silence count towards the media timeout.
    pub receive: bool,
    /// Send to where the caller's RTP comes from, once it is learned
    /// (see [`super::learn`]); `false`: only the SDP's address is heard.
    pub symmetric: bool,
    /// The IP the peer's SIP comes from: its RTP may come from there too.
    pub signalling: Option<std::net::IpAddr>,
    /// SRTP keys, when the leg is encrypted: nothing unauthenticated is
    /// taken, nothing leaves in clear.
    pub srtp: Option<crate::sdp::crypto::Srtp>,
    /// Where the peer's RTCP goes; `None`: on the RTP port (`rtcp-mux`).
    pub rtcp: Option<SocketAddr>,
}

/// Counters the operator graphs.
#[derive(Debug, Default)]
pub struct MediaStats {
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub packets_bad: AtomicU64,
    /// Packets on an SRTP leg that failed authentication.
    pub packets_unauthenticated: AtomicU64,
    /// RTCP packets not taken: from another address than the peer's, not
    /// RTCP, or failing SRTCP authentication on an SRTP leg.
    pub rtcp_refused: AtomicU64,
    pub send_errors: AtomicU64,
    /// Sequence numbers skipped (packets that never came).
    pub packets_lost: AtomicU64,
    /// Packets older than one already received.
    pub packets_late: AtomicU64,
    /// Packets not taken from their source, by [`DropReason::index`].
    pub packets_dropped: [AtomicU64; DropReason::ALL.len()],
}

impl MediaStats {
    fn dropped(&self, reason: DropReason) {
        self.packets_dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) enum ClockCommand {
    Add(Box<Channel>),
    Remove(u64),
    /// A command for one channel.
    To(u64, ChannelCommand),
}

pub(crate) enum ChannelCommand {
    Configure(StreamConfig),
    /// Play a prompt once, from its start.
    Play {
        prompt: Arc<Prompt>,
        token: u64,
    },
    /// Hold music: the prompt as one endless stream shared by every channel
    /// playing it, joined wherever it is now (see [`music_frame`]).
    Music(Arc<Prompt>),
    Stop,
    SendDigit(Digit),
    /// Keep the caller's audio, up to `max_samples`.
    Record {
        token: u64,
        max_samples: usize,
    },
    StopRecord,
    /// Keep both sides of the conversation (this channel's caller and what
    /// the bridged peer sends), streamed out as [`MediaEvent::Conversation`].
    RecordConversation {
        token: u64,
    },
    StopConversation,
    /// Silence in the recording from now (`true`) until resumed.
    PauseConversation(bool),
    /// Relay this channel's incoming audio to the channel with this id (on
    /// the same clock), and send what it relays back; `None` ends it.
    Bridge(Option<u64>),
    /// A browser leg's answer (SDP).
    BrowserAnswer(String),
    /// A browser leg's trickled ICE candidate.
    BrowserCandidate(String),
    /// A browser phone's re-offer (its re-INVITE): our answer and whether
    /// it holds, or why not.
    BrowserReoffer(
        String,
        tokio::sync::oneshot::Sender<Result<(String, bool), WebRtcError>>,
    ),
}

/// Frames relayed from a bridged peer wait here; past this many the oldest
/// go, so a peer sending faster than 20 ms frames cannot build up delay.
const RELAY_MAX: usize = 5;

/// The largest payload relayed across a bridge: 60 ms of G.711.
const RELAY_FRAME: usize = 480;

/// One relayed payload, held inline: the relay path allocates nothing per
/// packet.
#[derive(Clone, Copy)]
struct Frame {
    len: u16,
    /// The RTP timestamp it came with (to place it in a recording).
    ts: u32,
    data: [u8; RELAY_FRAME],
}

impl Frame {
    fn of(payload: &[u8], ts: u32) -> Option<Frame> {
        let mut data = [0u8; RELAY_FRAME];
        data.get_mut(..payload.len())?.copy_from_slice(payload);
        Some(Frame {
            len: payload.len() as u16,
            ts,
            data,
        })
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[..usize::from(self.len)]
    }

    fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

/// The caller's audio being kept for a voicemail or a recording. Packets
/// are appended in arrival order; a lost packet is a short gap.
struct Recording {
    token: u64,
    samples: Vec<i16>,
    max: usize,
}

enum Source {
    Silence,
    Prompt {
        prompt: Arc<Prompt>,
        pos: usize,
        token: u64,
    },
    Music(Arc<Prompt>),
}

/// The frame of the shared music stream at this moment: frames of 20 ms
/// counted from the first use in this process, the same for every ticker,
/// so all callers on one class hear the same frame at once (a broadcast, as
/// on a radio) and music costs nothing per caller beyond the send.
/// `tick` is the tick's scheduled time, not when it ran: a late tick still
/// counts one frame on, so the stream never repeats or skips a frame.
pub(crate) fn music_frame(tick: std::time::Instant) -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    (tick.saturating_duration_since(epoch).as_millis() / TICK.as_millis()) as u64
}

/// Hands `ev` to the channel's call without waiting: the clock never
/// waits on a call. A call that has not read [`CHANNEL_EVENTS`] events
/// is stuck; what comes beyond is dropped and counted.
fn emit(events: &mpsc::Sender<MediaEvent>, ev: MediaEvent) {
    if let Err(mpsc::error::TrySendError::Full(ev)) = events.try_send(ev) {
        let kind = match ev {
            MediaEvent::Digit(..) => "digit",
            MediaEvent::PlaybackDone { .. } => "playback-done",
            MediaEvent::Recorded { .. } => "recorded",
            MediaEvent::Conversation { .. } => "conversation",
            MediaEvent::Silent => "silent",
            MediaEvent::Browser(_) => "browser",
            MediaEvent::BrowserRefused(_) => "browser-refused",
        };
        metrics::counter!("hotline_media_events_dropped_total", "kind" => kind).increment(1);
    }
}

/// One call's media state, owned by exactly one ticker.
pub(crate) struct Channel {
    id: u64,
    socket: UdpSocket,
    /// The RTCP port (the RTP port + 1).
    rtcp_socket: Option<UdpSocket>,
    /// Where the peer's RTCP comes from (on the RTCP port): replies go there.
    rtcp_peer: Option<SocketAddr>,
    rtcp: LegRtcp,
    events: mpsc::Sender<MediaEvent>,
    stream: Option<StreamConfig>,
    /// Whose packets are taken; set with the first stream.
    learning: Option<PeerLearning>,
    /// The peer the socket is `connect()`ed to: the kernel then drops
    /// every other source before we see it.
    connected: Option<SocketAddr>,
    /// The highest sequence number received (for loss and lateness).
    last_seq: Option<u16>,
    /// When the peer was last heard (or the stream last configured).
    heard_at: Instant,
    /// [`MediaEvent::Silent`] was told and nothing came since.
    silent: bool,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    source: Source,
    tone: Option<(Rfc4733Tone, u32)>,
    rfc4733: Rfc4733Receiver,
    inband: InbandDetector,
    digits: Vec<Digit>,
    pcm: Vec<i16>,
    recording: Option<Recording>,
    conversation: Option<Conversation>,
    /// The channel this one is bridged to.
    bridge: Option<u64>,
    /// Audio received this tick, for the bridged peer (in our codec).
    outbox: Vec<Frame>,
    /// Audio from the bridged peer, in our codec, sent one frame per tick.
    relay: std::collections::VecDeque<Frame>,
    /// The leg's SRTP contexts, when its stream has keys.
    srtp: Option<super::srtp::Session>,
    /// A protected packet on its way out.
    sealed: Vec<u8>,
    /// A browser leg's WebRTC endpoint (its socket is the shared port's).
    browser: Option<Box<Browser>>,
}

/// A browser leg's endpoint and the datagrams routed to it.
struct Browser {
    endpoint: super::webrtc::Endpoint,
    inbox: mpsc::Receiver<super::webrtc::Datagram>,
}

impl Channel {
    pub(crate) fn new(
        id: u64,
        socket: UdpSocket,
        rtcp_socket: Option<UdpSocket>,
        events: mpsc::Sender<MediaEvent>,
        quality: QualityHandle,
    ) -> Channel {
        stamp::enable(&socket);
        if let Some(s) = rtcp_socket.as_ref() {
            stamp::enable(s);
        }
        let ssrc = rand::random();
        Channel {
            id,
            socket,
            rtcp_socket,
            rtcp_peer: None,
            rtcp: LegRtcp::new(ssrc, quality),
            events,
            stream: None,
            learning: None,
            connected: None,
            last_seq: None,
            heard_at: Instant::now(),
            silent: false,
            ssrc,
            seq: rand::random(),
            ts: rand::random(),
            marker: true,
            source: Source::Silence,
            tone: None,
            rfc4733: Rfc4733Receiver::default(),
            inband: InbandDetector::default(),
            digits: Vec::new(),
            pcm: Vec::with_capacity(FRAME_SAMPLES * 2),
            recording: None,
            conversation: None,
            bridge: None,
            outbox: Vec::new(),
            relay: std::collections::VecDeque::new(),
            srtp: None,
            sealed: Vec::with_capacity(256),
            browser: None,
        }
    }

    /// A browser leg's channel: media goes through its WebRTC endpoint on
    /// the shared port.
    pub(crate) fn browser(
        id: u64,
        link: BrowserLink,
        events: mpsc::Sender<MediaEvent>,
        quality: QualityHandle,
    ) -> Channel {
        let BrowserLink {
            endpoint,
            inbox,
            socket,
        } = link;
        // The socket only sends: the hub's task reads the shared port.
        let mut ch = Channel::new(id, socket, None, events, quality);
        ch.ssrc = endpoint.ssrc();
        // Our reports and the browser's are about the endpoint's stream.
        ch.rtcp = LegRtcp::new(ch.ssrc, ch.rtcp.handle.clone());
        ch.browser = Some(Box::new(Browser { endpoint, inbox }));
        ch
    }

    /// Reports once that the peer went silent for `limit` while it should
    /// be sending.
    fn check_silence(&mut self, now: Instant, limit: Duration) {
        let expected = self.stream.is_some_and(|s| s.receive);
        if limit.is_zero() || !expected || self.silent {
            return;
        }
        if now.saturating_duration_since(self.heard_at) >= limit {
            // Told once; a call that cannot take it now is told next tick.
            if self.events.try_send(MediaEvent::Silent).is_ok() {
                self.silent = true;
                metrics::counter!("hotline_media_timeouts_total").increment(1);
            }
        }
    }

    fn apply(&mut self, cmd: ChannelCommand, now: Instant) {
        match cmd {
            ChannelCommand::Configure(mut cfg) => {
                // New keys (or none): new contexts; the same keys keep
                // theirs (a re-INVITE that changed nothing else).
                if self.srtp.as_ref().map(|s| s.keys) != cfg.srtp {
                    self.srtp = match cfg.srtp {
                        Some(keys) => match super::srtp::Session::new(keys) {
                            Ok(s) => Some(s),
                            Err(e) => {
                                // Never in clear what was agreed encrypted.
                                tracing::error!(error = %e, "SRTP contexts not made; the leg sends nothing");
                                cfg.send = false;
                                None
                            }
                        },
                        None => None,
                    };
                }
                let resumed = cfg.send && !self.stream.is_some_and(|s| s.send);
                self.marker |= resumed;
                // The answer starts learning; a re-INVITE opens a new window.
                // A browser leg's peer is the one its ICE checks proved.
                match self.learning.as_mut() {
                    _ if self.browser.is_some() => {}
                    None => {
                        self.learning = Some(PeerLearning::new(
                            cfg.remote,
                            cfg.symmetric,
                            cfg.signalling,
                            now,
                        ))
                    }
                    Some(l) => {
                        if l.renegotiate(cfg.remote, cfg.symmetric, cfg.signalling, now) {
                            self.disconnect();
                        }
                    }
                }
                if self.stream.is_some_and(|s| s.rtcp != cfg.rtcp) {
                    self.rtcp_peer = None;
                }
                self.stream = Some(cfg);
                self.heard_at = now;
                self.silent = false;
                self.rtcp.start(now);
            }
            ChannelCommand::Play { prompt, token } => {
                self.source = Source::Prompt {
                    prompt,
                    pos: 0,
                    token,
                };
                self.marker = true;
            }
            ChannelCommand::Music(prompt) => {
                self.source = Source::Music(prompt);
                self.marker = true;
            }
            ChannelCommand::Stop => self.source = Source::Silence,
            ChannelCommand::SendDigit(digit) => {
                self.tone = Some((Rfc4733Tone::new(digit), self.ts))
            }
            ChannelCommand::Record { token, max_samples } => {
                self.finish_recording();
                self.recording = Some(Recording {
                    token,
                    // A minute up front; longer messages grow as they come.
                    samples: Vec::with_capacity(max_samples.min(8000 * 60)),
                    max: max_samples,
                });
            }
            ChannelCommand::StopRecord => self.finish_recording(),
            ChannelCommand::RecordConversation { token } => {
                self.finish_conversation();
                self.conversation = Some(Conversation::new(token));
            }
            ChannelCommand::StopConversation => self.finish_conversation(),
            ChannelCommand::PauseConversation(paused) => {
                if let Some(c) = self.conversation.as_mut() {
                    c.pause(paused);
                }
            }
            ChannelCommand::BrowserAnswer(sdp) => {
                if let Some(b) = self.browser.as_mut() {
                    if let Err(e) = b.endpoint.answer(&sdp, now) {
                        emit(&self.events, MediaEvent::BrowserRefused(e));
                    }
                }
            }
            ChannelCommand::BrowserCandidate(c) => {
                if let Some(b) = self.browser.as_mut() {
                    if let Err(e) = b.endpoint.candidate(&c) {
                        emit(&self.events, MediaEvent::BrowserRefused(e));
                    }
                }
            }
            ChannelCommand::BrowserReoffer(sdp, reply) => {
                let answer = match self.browser.as_mut() {
                    Some(b) => b.endpoint.reanswer(&sdp),
                    None => Err(WebRtcError::Answer("not a browser leg".into())),
                };
                let _ = reply.send(answer);
            }
            ChannelCommand::Bridge(peer) => {
                self.bridge = peer;
                self.relay.clear();
                self.outbox.clear();
                if peer.is_some() {
                    self.source = Source::Silence;
                    // Sized once, so relaying never grows them.
                    self.relay.reserve(RELAY_MAX);
                    self.outbox.reserve(MAX_READS_PER_TICK);
                }
            }
        }
    }

    /// Only `peer`'s packets reach the socket from now on, and sends skip
    /// the route lookup.
    fn connect(&mut self, peer: SocketAddr) {
        if self.connected != Some(peer) && self.socket.connect(peer).is_ok() {
            self.connected = Some(peer);
        }
    }

    /// Every source reaches the socket again (a re-INVITE's learning).
    fn disconnect(&mut self) {
        if self.connected.take().is_some() {
            disconnect(&self.socket);
        }
    }

    /// Reads every waiting packet (up to the per-tick bound).
    fn receive_all(&mut self, buf: &mut [u8], stats: &MediaStats, now: Instant) {
        if self.browser.is_some() {
            return self.receive_browser(stats, now);
        }
        if let Some(peer) = self.learning.as_mut().and_then(|l| l.poll(now)) {
            self.connect(peer);
        }
        for _ in 0..MAX_READS_PER_TICK {
            if !self.receive_one(buf, stats, now) {
                return;
            }
        }
    }

    /// Reads and handles one datagram; `false` when none was waiting (or the
    /// socket failed).
    fn receive_one(&mut self, buf: &mut [u8], stats: &MediaStats, now: Instant) -> bool {
        let (mut n, from, at) = match stamp::recv(&self.socket, buf) {
            Ok(got) => got,
            // An ICMP error for an earlier send to the connected peer.
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionRefused,
        };
        if rtcp::is_rtcp(&buf[..n]) {
            // Multiplexed RTCP (RFC 5761).
            self.take_rtcp(&buf[..n], from, at, false, stats);
            return true;
        }
        if self.stream.is_some_and(|s| s.srtp.is_some()) {
            // Only what authenticates is taken (and may teach the peer's
            // address): forged, replayed and plain packets are dropped.
            if rtp::parse(&buf[..n]).is_none() {
                stats.packets_bad.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            match self.srtp.as_mut().and_then(|s| s.unprotect(buf, n)) {
                Some(plain) => n = plain,
                None => {
                    stats
                        .packets_unauthenticated
                        .fetch_add(1, Ordering::Relaxed);
                    return true;
                }
            }
        }
        let Some((info, payload)) = rtp::parse(&buf[..n]) else {
            stats.packets_bad.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        let Some(learning) = self.learning.as_mut() else {
            stats.dropped(DropReason::NoStream);
            return true;
        };
        match learning.on_packet(from, info.sequence, now) {
            Verdict::Accept => {}
            Verdict::Latch(peer) => self.connect(peer),
            Verdict::Drop(reason) => {
                stats.dropped(reason);
                return true;
            }
        }
        self.take_rtp(info, payload, at, now, stats);
        true
    }

    /// What a browser leg's endpoint was handed since the last tick: ICE,
    /// DTLS and SRTP are its own; the RTP it decrypted is taken like any
    /// leg's, and its state changes go to the call.
    fn receive_browser(&mut self, stats: &MediaStats, now: Instant) {
        let Some(mut link) = self.browser.take() else {
            return;
        };
        // Each datagram's RTP is taken with the time it arrived, so the
        // leg's jitter is the network's, not the tick's.
        while let Ok(d) = link.inbox.try_recv() {
            link.endpoint.receive(d.from, d.bytes, now);
            while let Some((info, payload)) = link.endpoint.poll_rtp() {
                self.take_rtp(info, &payload, Some(d.at), now, stats);
            }
            // The browser's reports, read as any leg's (when they arrived:
            // the round trip).
            while let Some(report) = link.endpoint.poll_rtcp() {
                self.rtcp.on_packet(&report, rtcp::ntp(d.at));
            }
        }
        link.endpoint.tick(now);
        flush_browser(&mut link, &self.socket, stats);
        if let Some(state) = link.endpoint.poll_state() {
            emit(&self.events, MediaEvent::Browser(state));
        }
        while let Some((info, payload)) = link.endpoint.poll_rtp() {
            self.take_rtp(info, &payload, None, now, stats);
        }
        self.browser = Some(link);
    }

    /// An RTP packet from the leg's peer (learnt, decrypted).
    fn take_rtp(
        &mut self,
        info: RtpInfo,
        payload: &[u8],
        at: Option<Duration>,
        now: Instant,
        stats: &MediaStats,
    ) {
        stats.packets_in.fetch_add(1, Ordering::Relaxed);
        // Anything from the peer counts as heard (comfort noise too).
        self.heard_at = now;
        self.silent = false;
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let known =
            info.payload_type == stream.payload_type || Some(info.payload_type) == stream.dtmf_pt;
        if !known {
            return;
        }
        if let Some(last) = self.last_seq {
            let ahead = info.sequence.wrapping_sub(last);
            // Up to a few seconds ahead is loss; far ahead is old (late)
            // or a new stream, which is counted as neither.
            if (2..1000).contains(&ahead) {
                stats
                    .packets_lost
                    .fetch_add(u64::from(ahead - 1), Ordering::Relaxed);
            } else if ahead > u16::MAX - 1000 {
                stats.packets_late.fetch_add(1, Ordering::Relaxed);
            }
            if ahead != 0 && ahead < u16::MAX / 2 {
                self.last_seq = Some(info.sequence);
            }
        } else {
            self.last_seq = Some(info.sequence);
        }
        let arrival = at.unwrap_or_else(since_epoch);
        // In RTP timestamp units (8 kHz), wrapping as timestamps do.
        let arrival = (arrival.as_nanos() * u128::from(rtcp::CLOCK_RATE) / 1_000_000_000) as u32;
        let audio = info.payload_type == stream.payload_type;
        self.rtcp
            .reception
            .on_packet(info.ssrc, info.sequence, info.timestamp, arrival, audio);
        if self.bridge.is_some() && info.payload_type == stream.payload_type {
            match Frame::of(payload, info.timestamp) {
                Some(f) => self.outbox.push(f),
                None => {
                    stats.packets_bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if Some(info.payload_type) == stream.dtmf_pt {
            if let Some(d) = self.rfc4733.on_packet(info.timestamp, info.marker, payload) {
                emit(&self.events, MediaEvent::Digit(d, DigitSource::Rfc4733));
            }
        } else if stream.dtmf_pt.is_none()
            || self.recording.is_some()
            || self.conversation.is_some()
        {
            self.pcm.clear();
            match stream.codec {
                Codec::Pcmu => self
                    .pcm
                    .extend(payload.iter().map(|&b| g711::ulaw_decode(b))),
                Codec::Pcma => self
                    .pcm
                    .extend(payload.iter().map(|&b| g711::alaw_decode(b))),
            }
            if stream.dtmf_pt.is_none() {
                self.inband.push(&self.pcm, &mut self.digits);
                for d in self.digits.drain(..) {
                    emit(&self.events, MediaEvent::Digit(d, DigitSource::InBand));
                }
            }
            if let Some(c) = self.conversation.as_mut() {
                c.left.put(info.timestamp, &self.pcm, c.now, c.flushed);
            }
            if let Some(rec) = self.recording.as_mut() {
                let room = rec.max.saturating_sub(rec.samples.len());
                rec.samples
                    .extend_from_slice(&self.pcm[..room.min(self.pcm.len())]);
                if rec.samples.len() >= rec.max {
                    self.finish_recording();
                }
            }
        }
    }

    /// An RTCP packet from `from` (on the RTCP port, or muxed): taken only
    /// from the peer's address, and when the leg is SRTP only if it
    /// authenticates (SRTCP).
    fn take_rtcp(
        &mut self,
        packet: &[u8],
        from: SocketAddr,
        at: Option<Duration>,
        own_port: bool,
        stats: &MediaStats,
    ) {
        let Some(stream) = self.stream else {
            return;
        };
        let peer = self
            .learning
            .as_ref()
            .map_or(stream.remote, |l| l.send_to());
        let refused = || {
            stats.rtcp_refused.fetch_add(1, Ordering::Relaxed);
        };
        if from.ip() != peer.ip() {
            return refused();
        }
        let plain;
        let packet = if stream.srtp.is_some() {
            match self.srtp.as_mut().and_then(|s| s.unprotect_rtcp(packet)) {
                Some(p) => {
                    plain = p;
                    &plain[..]
                }
                // Some phones send a plain RTCP keep-alive on SRTP legs
                // (baresip's APP "PINGPONG"): refused here, apart from RTP.
                None => return refused(),
            }
        } else {
            packet
        };
        // When it arrived, not when it was read (the round trip).
        let ntp = rtcp::ntp(at.unwrap_or_else(since_epoch));
        if self.rtcp.on_packet(packet, ntp) {
            if own_port && stream.symmetric {
                self.rtcp_peer = Some(from);
            }
        } else {
            refused();
        }
    }

    /// Reads what waits on the RTCP port.
    fn poll_rtcp(&mut self, buf: &mut [u8], stats: &MediaStats) {
        for _ in 0..RTCP_READS {
            let Some(socket) = self.rtcp_socket.as_ref() else {
                return;
            };
            let Ok((n, from, at)) = stamp::recv(socket, buf) else {
                return;
            };
            let packet = buf[..n].to_vec();
            self.take_rtcp(&packet, from, at, true, stats);
        }
    }

    /// Sends our report (with a BYE when the leg ends): on the RTP port
    /// when multiplexed, else from the RTCP port to the peer's.
    fn send_report(&mut self, now: Instant, bye: bool, stats: &MediaStats) {
        let Some(stream) = self.stream else {
            return;
        };
        // A browser leg's report goes through its endpoint (SRTCP, muxed).
        if let Some(link) = self.browser.as_mut() {
            let report = self.rtcp.write(now, rtcp::ntp(since_epoch()), bye);
            link.endpoint.send_rtcp(report, now);
            flush_browser(link, &self.socket, stats);
            return;
        }
        let rtp_to = self
            .learning
            .as_ref()
            .map_or(stream.remote, |l| l.send_to());
        let (socket, to) = match stream.rtcp {
            None => (&self.socket, rtp_to),
            Some(addr) => match self.rtcp_socket.as_ref() {
                Some(s) => (s, self.rtcp_peer.unwrap_or(addr)),
                None => return,
            },
        };
        if to.port() == 0 || to.ip().is_unspecified() {
            return;
        }
        let report = self.rtcp.write(now, rtcp::ntp(since_epoch()), bye);
        let sealed;
        let packet = match self.srtp.as_mut() {
            Some(s) => match s.protect_rtcp(report) {
                Some(p) => {
                    sealed = p;
                    &sealed[..]
                }
                None => return,
            },
            // Never in clear what was agreed encrypted.
            None if stream.srtp.is_some() => return,
            None => report,
        };
        if socket.send_to(packet, to).is_err() {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The leg ends: a last report with a BYE, and its final figures.
    fn close(&mut self, stats: &MediaStats) {
        self.send_report(Instant::now(), true, stats);
        self.rtcp.publish();
    }

    fn finish_conversation(&mut self) {
        if let Some(mut c) = self.conversation.take() {
            emit(
                &self.events,
                MediaEvent::Conversation {
                    token: c.token,
                    samples: c.finish(),
                    last: true,
                },
            );
        }
    }

    /// A tick of the conversation's clock; hands out what is settled.
    fn conversation_tick(&mut self) {
        let Some(c) = self.conversation.as_mut() else {
            return;
        };
        if let Some(samples) = c.tick() {
            emit(
                &self.events,
                MediaEvent::Conversation {
                    token: c.token,
                    samples,
                    last: false,
                },
            );
        }
    }

    fn finish_recording(&mut self) {
        if let Some(rec) = self.recording.take() {
            emit(
                &self.events,
                MediaEvent::Recorded {
                    token: rec.token,
                    samples: rec.samples,
                },
            );
        }
    }

    /// Moves the playback position one frame on; returns the frame index to
    /// send (`None`: silence) and whether playback just ended. `music` is
    /// the shared music stream's frame now.
    fn advance(&mut self, music: u64) -> (Option<usize>, bool) {
        match &mut self.source {
            Source::Silence => (None, false),
            Source::Music(prompt) => {
                let n = prompt.frames() as u64;
                ((n > 0).then(|| (music % n.max(1)) as usize), false)
            }
            Source::Prompt { prompt, pos, token } => {
                let i = *pos;
                *pos += 1;
                if *pos < prompt.frames() {
                    return (Some(i), false);
                }
                emit(&self.events, MediaEvent::PlaybackDone { token: *token });
                (Some(i), true)
            }
        }
    }
}

/// Runs one ticker until its command channel closes.
/// Runs one media clock. `silence`: a channel whose peer should be sending
/// but was not heard for this long is reported [`MediaEvent::Silent`]
/// (zero: never).
pub(crate) async fn run(
    mut commands: mpsc::Receiver<ClockCommand>,
    stats: Arc<MediaStats>,
    silence: Duration,
) {
    let mut channels = Channels::default();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut rbuf = vec![0u8; 2048];
    let mut wbuf = [0u8; 12 + 4 * 15 + FRAME_SAMPLES];
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                Some(cmd) => channels.apply(cmd, Instant::now(), &stats),
                None => return,
            },
            at = interval.tick() => {
                // Probing a silent socket costs one EAGAIN; an epoll set
                // checked once per tick measured no clear gain over it.
                let now = Instant::now();
                for ch in channels.list.iter_mut() {
                    ch.receive_all(&mut rbuf, &stats, now);
                }
                channels.relay();
                let music = music_frame(at.into_std());
                ticks += 1;
                for ch in channels.list.iter_mut() {
                    tick(ch, &mut wbuf, &stats, music);
                    ch.conversation_tick();
                    ch.check_silence(now, silence);
                    if ch.rtcp.due(now) {
                        ch.send_report(now, false, &stats);
                    }
                    // Spread over the ticks by channel id.
                    if (ticks + ch.id) % RTCP_EVERY == 0 {
                        ch.poll_rtcp(&mut rbuf, &stats);
                        ch.rtcp.publish();
                    }
                }
            }
        }
    }
}

/// A clock's channels, with an index by id for commands.
#[derive(Default)]
struct Channels {
    list: Vec<Channel>,
    index: HashMap<u64, usize>,
    /// Frames on their way from one bridged channel to its peer.
    moving: Vec<Frame>,
}

impl Channels {
    fn get_mut(&mut self, id: u64) -> Option<&mut Channel> {
        let i = *self.index.get(&id)?;
        self.list.get_mut(i)
    }

    /// Moves what bridged channels received to their peers, transcoding
    /// between μ-law and A-law when the two legs differ.
    fn relay(&mut self) {
        for i in 0..self.list.len() {
            let Some(peer) = self.list[i].bridge else {
                continue;
            };
            if self.list[i].outbox.is_empty() {
                continue;
            }
            // Through a buffer kept here, so no Vec is made per tick.
            let mut moving = std::mem::take(&mut self.moving);
            moving.append(&mut self.list[i].outbox);
            let from = self.list[i].stream.map(|s| s.codec);
            if let Some(p) = self.get_mut(peer) {
                let to = p.stream.map(|s| s.codec);
                for mut frame in moving.drain(..) {
                    if let (Some(c), Some(codec)) = (p.conversation.as_mut(), from) {
                        let mut pcm = [0i16; RELAY_FRAME];
                        let pcm = &mut pcm[..frame.bytes().len()];
                        for (s, b) in pcm.iter_mut().zip(frame.bytes()) {
                            *s = match codec {
                                Codec::Pcmu => g711::ulaw_decode(*b),
                                Codec::Pcma => g711::alaw_decode(*b),
                            };
                        }
                        c.right.put(frame.ts, pcm, c.now, c.flushed);
                    }
                    match (from, to) {
                        (Some(Codec::Pcmu), Some(Codec::Pcma)) => frame
                            .bytes_mut()
                            .iter_mut()
                            .for_each(|b| *b = g711::alaw_encode(g711::ulaw_decode(*b))),
                        (Some(Codec::Pcma), Some(Codec::Pcmu)) => frame
                            .bytes_mut()
                            .iter_mut()
                            .for_each(|b| *b = g711::ulaw_encode(g711::alaw_decode(*b))),
                        _ => {}
                    }
                    if p.relay.len() >= RELAY_MAX {
                        p.relay.pop_front();
                    }
                    p.relay.push_back(frame);
                }
            }
            moving.clear();
            self.moving = moving;
        }
    }

    fn apply(&mut self, cmd: ClockCommand, now: Instant, stats: &MediaStats) {
        match cmd {
            ClockCommand::Add(ch) => {
                self.index.insert(ch.id, self.list.len());
                self.list.push(*ch);
            }
            ClockCommand::Remove(id) => {
                if let Some(i) = self.index.remove(&id) {
                    // Dropping the channel closes its socket.
                    self.list.swap_remove(i).close(stats);
                    if let Some(moved) = self.list.get(i) {
                        self.index.insert(moved.id, i);
                    }
                }
            }
            ClockCommand::To(id, cmd) => {
                if let Some(ch) = self.get_mut(id) {
                    ch.apply(cmd, now);
                }
            }
        }
    }
}

/// Undoes `connect()` on a UDP socket (connect to `AF_UNSPEC`), so it hears
/// every source again; std has no call for it.
fn disconnect(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC is a valid argument,
    // its size is passed, and the descriptor is owned by `socket`.
    let ok = unsafe {
        let mut addr: libc::sockaddr = std::mem::zeroed();
        addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        libc::connect(
            socket.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        ) == 0
    };
    if !ok {
        tracing::debug!("cannot disconnect an RTP socket");
    }
}

/// Sends what a browser leg's endpoint has for the network.
fn flush_browser(link: &mut Browser, socket: &UdpSocket, stats: &MediaStats) {
    while let Some((to, bytes)) = link.endpoint.poll_transmit() {
        if socket.send_to(&bytes, to).is_err() {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The wall clock since the Unix epoch (RTCP's NTP times, and a packet's
/// arrival when the kernel did not stamp it).
fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn silence(codec: Codec) -> &'static [u8] {
    const ULAW: [u8; FRAME_SAMPLES] = [g711::ULAW_SILENCE; FRAME_SAMPLES];
    const ALAW: [u8; FRAME_SAMPLES] = [g711::ALAW_SILENCE; FRAME_SAMPLES];
    match codec {
        Codec::Pcmu => &ULAW,
        Codec::Pcma => &ALAW,
    }
}

/// Sends one 20 ms packet (audio, or a telephone-event while a digit is sent).
fn tick(ch: &mut Channel, wbuf: &mut [u8], stats: &MediaStats, music: u64) {
    let Some(stream) = ch.stream else {
        return;
    };
    ch.ts = ch.ts.wrapping_add(FRAME_SAMPLES as u32);
    let mut info = RtpInfo {
        payload_type: stream.payload_type,
        sequence: ch.seq,
        timestamp: ch.ts,
        ssrc: ch.ssrc,
        marker: false,
    };
    let mut len = None;
    if let (Some((tone, start)), Some(pt)) = (ch.tone.as_mut(), stream.dtmf_pt) {
        match tone.next_payload() {
            Some((payload, first)) => {
                info.payload_type = pt;
                info.timestamp = *start;
                info.marker = first;
                len = rtp::write(&info, &payload, wbuf);
            }
            None => ch.tone = None,
        }
    }
    // The prompt advances even while a digit is sent or the call is held,
    // so playback keeps real time.
    let (index, finished) = ch.advance(music);
    let marker = std::mem::take(&mut ch.marker);
    if len.is_none() {
        info.marker = marker;
        let relayed = if ch.bridge.is_some() {
            ch.relay.pop_front()
        } else {
            None
        };
        let payload: &[u8] = match (&ch.source, index, &relayed) {
            (_, _, Some(frame)) => frame.bytes(),
            (Source::Prompt { prompt, .. } | Source::Music(prompt), Some(i), _) => {
                prompt.frame(stream.codec, i)
            }
            _ => silence(stream.codec),
        };
        len = rtp::write(&info, payload, wbuf);
    }
    if finished {
        ch.source = Source::Silence;
    }
    let Some(len) = len else {
        return;
    };
    if !stream.send {
        return;
    }
    ch.seq = ch.seq.wrapping_add(1);
    ch.rtcp
        .on_sent(info.sequence, info.timestamp, len.saturating_sub(12));
    if let Some(link) = ch.browser.as_mut() {
        // Written in clear; the endpoint protects it (DTLS-SRTP keys).
        let payload = rtp::parse(&wbuf[..len]).map(|(_, p)| p).unwrap_or_default();
        if link.endpoint.send_rtp(&info, payload, Instant::now()) {
            stats.packets_out.fetch_add(1, Ordering::Relaxed);
        }
        flush_browser(link, &ch.socket, stats);
        return;
    }
    let to = ch.learning.as_ref().map_or(stream.remote, |l| l.send_to());
    let packet: &[u8] = if stream.srtp.is_some() {
        let sealed = ch
            .srtp
            .as_mut()
            .and_then(|s| s.protect(&wbuf[..len], &mut ch.sealed));
        if sealed.is_none() {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        &ch.sealed
    } else {
        &wbuf[..len]
    };
    let sent = if ch.connected == Some(to) {
        ch.socket.send(packet)
    } else {
        ch.socket.send_to(packet, to)
    };
    match sent {
        Ok(_) => {
            stats.packets_out.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> (Channel, mpsc::Receiver<MediaEvent>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
        (
            Channel::new(1, socket, None, tx, QualityHandle::default()),
            rx,
        )
    }

    #[test]
    fn a_call_that_stops_reading_loses_its_events_and_the_clock_never_waits() {
        let (ch, mut rx) = channel();
        let tx = ch.events.clone();
        let d = Digit::from_char('5').unwrap();
        for _ in 0..CHANNEL_EVENTS + 10 {
            // Never blocks, whatever the call does.
            emit(&tx, MediaEvent::Digit(d, DigitSource::Rfc4733));
        }
        let mut got = 0;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, CHANNEL_EVENTS, "what was held is delivered, in order");
        // Once it reads again, events come again.
        emit(&tx, MediaEvent::PlaybackDone { token: 9 });
        assert!(matches!(
            rx.try_recv(),
            Ok(MediaEvent::PlaybackDone { token: 9 })
        ));
    }

    #[test]
    fn callers_on_one_music_class_hear_the_same_frame_whenever_they_joined() {
        let music = Arc::new(Prompt::from_samples("music/test", &vec![0i16; 160 * 50]));
        let (mut early, _e) = channel();
        let (mut late, _l) = channel();
        early.apply(ChannelCommand::Music(music.clone()), Instant::now());
        let mut frames = Vec::new();
        for t in 1000..1010u64 {
            frames.push(early.advance(t).0);
        }
        // The second caller joins at frame 1010 and is in step at once.
        late.apply(ChannelCommand::Music(music.clone()), Instant::now());
        for t in 1010..1200u64 {
            let (a, b) = (early.advance(t).0, late.advance(t).0);
            assert_eq!(a, b);
            assert_eq!(a, Some((t % 50) as usize));
        }
        assert_eq!(frames[0], Some((1000 % 50) as usize));
        // Music never ends by itself.
        assert!(!early.advance(5000).1);
    }

    #[test]
    fn a_prompt_plays_once_from_its_start_and_reports_its_end() {
        let p = Arc::new(Prompt::from_samples("beep", &vec![0i16; 160 * 3]));
        let (mut ch, mut events) = channel();
        ch.apply(
            ChannelCommand::Play {
                prompt: p,
                token: 7,
            },
            Instant::now(),
        );
        let played: Vec<_> = (0..3).map(|t| ch.advance(900 + t)).collect();
        assert_eq!(
            played,
            vec![(Some(0), false), (Some(1), false), (Some(2), true)]
        );
        assert_eq!(
            events.try_recv().ok(),
            Some(MediaEvent::PlaybackDone { token: 7 })
        );
    }
}
