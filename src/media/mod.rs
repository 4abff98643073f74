//! Media: RTP sockets and the port pool, G.711, DTMF in and out, the prompt
//! cache and the media clock that paces every call's outbound RTP. Call tasks
//! drive a call's media through its [`MediaChannel`].

pub mod clock;
mod conversation;
pub mod dtmf;
pub mod g711;
pub mod learn;
pub mod ports;
pub mod prompt;
pub mod quality;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
mod stamp;
pub mod wav;
pub mod webrtc;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

pub use clock::{MediaEvent, MediaStats, StreamConfig};
pub use dtmf::{Digit, DigitSource};
pub use prompt::{Prompt, PromptCache};
pub use quality::QualityHandle;
pub use rtcp::Quality;

use clock::{Channel, ChannelCommand, ClockCommand};
use ports::PortPool;

use crate::config::RtpConfig;

/// Why a call could not get media.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no free RTP port in {0}")]
    NoPorts(String),
    #[error("cannot open an RTP socket: {0}")]
    Socket(std::io::Error),
    #[error("browser legs are not configured (webrtc:)")]
    NoWebRtc,
    #[error(transparent)]
    WebRtc(#[from] webrtc::WebRtcError),
}

/// How many commands a media clock holds. Calls wait while it is full (a
/// prompt, a bridge or a hang-up is never dropped); the clock never waits
/// on a call (see [`clock::CHANNEL_EVENTS`]).
pub const CLOCK_COMMANDS: usize = 8192;

/// The media side of the engine: ports and the clock tasks.
pub struct MediaEngine {
    /// One address, or one per family (dual stack).
    bind: crate::config::PerFamily<IpAddr>,
    range: String,
    clocks: Vec<mpsc::Sender<ClockCommand>>,
    // A Mutex, not an actor: allocation is a pop from a deque, taken by call
    // tasks on many threads, and never held across an await.
    ports: Mutex<PortPool>,
    next_clock: AtomicUsize,
    next_id: AtomicU64,
    pub stats: Arc<MediaStats>,
    /// The shared WebRTC port, when browser legs are configured.
    webrtc: Option<Arc<webrtc::Hub>>,
}

impl MediaEngine {
    /// Starts the media clock tasks; needs a running tokio runtime.
    /// `silence`: how long a peer that should be sending may send nothing
    /// before its channel reports it (`calls.media-timeout`; zero: never).
    ///
    /// With `webrtc`, binds the shared WebRTC port (on the primary RTP
    /// address); failing that is an error.
    pub fn start(
        config: &RtpConfig,
        webrtc: Option<&crate::config::WebRtcConfig>,
        silence: std::time::Duration,
    ) -> std::io::Result<Arc<MediaEngine>> {
        let hub = match webrtc {
            Some(w) => {
                let bind = config.bind.primary();
                let advertise = config.advertise.as_ref().map_or(bind, |a| a.pick(bind));
                Some(webrtc::Hub::start(bind, advertise, w).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("webrtc: cannot bind UDP {}:{}: {e}", bind, w.port),
                    )
                })?)
            }
            None => None,
        };
        let count = match config.clocks {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let stats = Arc::new(MediaStats::default());
        let clocks = (0..count)
            .map(|_| {
                let (tx, rx) = mpsc::channel(CLOCK_COMMANDS);
                tokio::spawn(clock::run(rx, stats.clone(), silence));
                tx
            })
            .collect();
        Ok(Arc::new(MediaEngine {
            bind: config.bind.clone(),
            range: config.ports.to_string(),
            clocks,
            ports: Mutex::new(PortPool::new(config.ports)),
            next_clock: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            stats,
            webrtc: hub,
        }))
    }

    /// The shared WebRTC port's address, when browser legs are configured.
    pub fn webrtc_addr(&self) -> Option<SocketAddr> {
        self.webrtc.as_ref().map(|h| h.local_addr())
    }

    /// Opens a browser leg on the same clock as `other` (so the two can be
    /// bridged), sending `codec` (the other leg's: no transcoding), and
    /// returns it with its offer (SDP) for the browser.
    pub async fn open_browser(
        self: &Arc<Self>,
        other: &MediaChannel,
        codec: crate::sdp::Codec,
    ) -> Result<(MediaChannel, String), MediaError> {
        let hub = self.webrtc.as_ref().ok_or(MediaError::NoWebRtc)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (link, offer) = hub.link(id, codec, rand::random()).await?;
        let (tx, rx) = mpsc::channel(clock::CHANNEL_EVENTS);
        let quality = QualityHandle::default();
        let channel = Channel::browser(id, link, tx, quality.clone());
        let _ = other.clock.send(ClockCommand::Add(Box::new(channel))).await;
        let local = hub.local_addr();
        Ok((
            MediaChannel {
                id,
                ip: local.ip(),
                port: local.port(),
                pooled: false,
                quality,
                clock: other.clock.clone(),
                events: rx,
                engine: self.clone(),
            },
            offer,
        ))
    }

    /// Opens a channel on a free even port, with RTCP on the next one up,
    /// on the primary family's address.
    pub async fn open(self: &Arc<Self>) -> Result<MediaChannel, MediaError> {
        self.open_on(None, self.bind.primary()).await
    }

    /// As [`MediaEngine::open`], on the address of `peer`'s family (a
    /// dual-stack engine), else the primary.
    pub async fn open_for(self: &Arc<Self>, peer: IpAddr) -> Result<MediaChannel, MediaError> {
        self.open_on(None, self.bind.pick(peer)).await
    }

    /// Whether the engine has an RTP address of `peer`'s family.
    pub fn has_family_of(&self, peer: IpAddr) -> bool {
        self.bind.of_family(peer).is_some()
    }

    async fn open_on(
        self: &Arc<Self>,
        clock: Option<mpsc::Sender<ClockCommand>>,
        bind: IpAddr,
    ) -> Result<MediaChannel, MediaError> {
        // A port whose last socket is still closing in its ticker fails to
        // bind; try a few more.
        let mut last_err = None;
        for _ in 0..8 {
            let port = self
                .ports
                .lock()
                .map_err(|_| MediaError::NoPorts(self.range.clone()))?
                .take(Instant::now(), &mut rand::rng())
                .ok_or_else(|| MediaError::NoPorts(self.range.clone()))?;
            let bound = bind_nonblocking(SocketAddr::new(bind, port))
                .and_then(|rtp| Ok((rtp, bind_nonblocking(SocketAddr::new(bind, port + 1))?)));
            match bound {
                Ok((rtp, rtcp)) => return Ok(self.register(rtp, rtcp, bind, port, clock).await),
                Err(e) => {
                    self.give_back(port);
                    last_err = Some(e);
                }
            }
        }
        Err(MediaError::Socket(last_err.unwrap_or_else(|| {
            std::io::Error::other("no port could be bound")
        })))
    }

    /// Opens a channel on the same clock as `other`, so the two can be
    /// bridged without crossing tasks (on the primary family's address).
    pub async fn open_beside(
        self: &Arc<Self>,
        other: &MediaChannel,
    ) -> Result<MediaChannel, MediaError> {
        self.open_on(Some(other.clock.clone()), self.bind.primary())
            .await
    }

    /// As [`MediaEngine::open_beside`], on the address of `peer`'s family.
    pub async fn open_beside_for(
        self: &Arc<Self>,
        other: &MediaChannel,
        peer: IpAddr,
    ) -> Result<MediaChannel, MediaError> {
        self.open_on(Some(other.clock.clone()), self.bind.pick(peer))
            .await
    }

    async fn register(
        self: &Arc<Self>,
        socket: UdpSocket,
        rtcp: UdpSocket,
        ip: IpAddr,
        port: u16,
        clock: Option<mpsc::Sender<ClockCommand>>,
    ) -> MediaChannel {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let clock = clock.unwrap_or_else(|| {
            self.clocks[self.next_clock.fetch_add(1, Ordering::Relaxed) % self.clocks.len()].clone()
        });
        let (tx, rx) = mpsc::channel(clock::CHANNEL_EVENTS);
        let quality = QualityHandle::default();
        let channel = Channel::new(id, socket, Some(rtcp), tx, quality.clone());
        let _ = clock.send(ClockCommand::Add(Box::new(channel))).await;
        MediaChannel {
            id,
            ip,
            port,
            pooled: true,
            quality,
            clock,
            events: rx,
            engine: self.clone(),
        }
    }

    fn give_back(&self, port: u16) {
        if let Ok(mut pool) = self.ports.lock() {
            pool.give_back(port, Instant::now());
        }
    }

    /// Free RTP ports (each call takes one).
    pub fn free_ports(&self) -> usize {
        self.ports.lock().map(|p| p.available()).unwrap_or(0)
    }
}

fn bind_nonblocking(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// One call's media: an RTP port paced by a media clock.
pub struct MediaChannel {
    id: u64,
    /// The address its socket is bound to (its family is the leg's).
    ip: IpAddr,
    port: u16,
    /// The port is the pool's (a browser leg's is the shared one).
    pooled: bool,
    /// The leg's quality, as its clock last published it.
    quality: QualityHandle,
    clock: mpsc::Sender<ClockCommand>,
    /// Digits and playback completions, for the call task.
    pub events: mpsc::Receiver<MediaEvent>,
    engine: Arc<MediaEngine>,
}

impl MediaChannel {
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// The address the channel's socket is bound to.
    pub fn local_ip(&self) -> IpAddr {
        self.ip
    }

    /// The leg's loss, jitter, round trip and MOS (RTCP); the handle stays
    /// readable after the channel is gone (its final figures).
    pub fn quality(&self) -> QualityHandle {
        self.quality.clone()
    }

    /// Sets (or changes) where and how RTP flows.
    pub async fn configure(&self, stream: StreamConfig) {
        self.send(ChannelCommand::Configure(stream)).await;
    }

    /// Starts a prompt, replacing whatever played; its
    /// [`MediaEvent::PlaybackDone`] will carry `token` (the caller's own).
    pub async fn play(&self, prompt: Arc<Prompt>, token: u64) {
        self.send(ChannelCommand::Play { prompt, token }).await;
    }

    /// Plays hold music until stopped: one stream per music prompt, shared
    /// by every caller on it, joined where it is now.
    pub async fn play_music(&self, prompt: Arc<Prompt>) {
        self.send(ChannelCommand::Music(prompt)).await;
    }

    /// Stops playback; silence follows.
    pub async fn stop(&self) {
        self.send(ChannelCommand::Stop).await;
    }

    /// Starts keeping the caller's audio (at most `max`); its
    /// [`MediaEvent::Recorded`] will carry `token`.
    pub async fn record(&self, max: std::time::Duration, token: u64) {
        let max_samples = usize::try_from(max.as_millis() * 8).unwrap_or(usize::MAX);
        self.send(ChannelCommand::Record { token, max_samples })
            .await;
    }

    /// Ends the recording; its `Recorded` event follows.
    pub async fn stop_recording(&self) {
        self.send(ChannelCommand::StopRecord).await;
    }

    /// Starts recording the conversation on this channel and its bridged
    /// peer (kept across hold and re-bridging); its
    /// [`MediaEvent::Conversation`] events carry `token`.
    pub async fn record_conversation(&self, token: u64) {
        self.send(ChannelCommand::RecordConversation { token })
            .await;
    }

    /// While `paused`, the recording holds silence where the conversation
    /// would be (both sides, placed by time like the audio).
    pub async fn pause_conversation(&self, paused: bool) {
        self.send(ChannelCommand::PauseConversation(paused)).await;
    }

    /// Ends it; the last `Conversation` event (`last: true`) follows.
    pub async fn stop_conversation(&self) {
        self.send(ChannelCommand::StopConversation).await;
    }

    /// Bridges this channel and `other` (opened with
    /// [`MediaEngine::open_beside`]): each sends what the other receives.
    /// Playback on both stops.
    pub async fn bridge(&self, other: &MediaChannel) {
        self.send(ChannelCommand::Bridge(Some(other.id))).await;
        other.send(ChannelCommand::Bridge(Some(self.id))).await;
    }

    /// Ends a bridge on this channel (the peer is told separately).
    pub async fn unbridge(&self) {
        self.send(ChannelCommand::Bridge(None)).await;
    }

    /// Sends a digit as RFC 4733 telephone-events.
    pub async fn send_digit(&self, digit: Digit) {
        self.send(ChannelCommand::SendDigit(digit)).await;
    }

    /// A browser leg's answer (SDP); a refusal comes back as
    /// [`MediaEvent::BrowserRefused`].
    pub async fn browser_answer(&self, sdp: String) {
        self.send(ChannelCommand::BrowserAnswer(sdp)).await;
    }

    /// A browser leg's trickled ICE candidate (`""` ends the trickle).
    pub async fn browser_candidate(&self, candidate: String) {
        self.send(ChannelCommand::BrowserCandidate(candidate)).await;
    }

    /// A browser phone's re-offer on this leg (its re-INVITE): our answer
    /// and whether it holds the call, or why it is refused.
    pub async fn browser_reoffer(
        &self,
        sdp: String,
    ) -> Result<(String, bool), webrtc::WebRtcError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(ChannelCommand::BrowserReoffer(sdp, tx)).await;
        rx.await.unwrap_or_else(|_| {
            Err(webrtc::WebRtcError::Answer(
                "the media clock has stopped".into(),
            ))
        })
    }

    /// Waits while the clock's inbox is full; a stopped clock takes nothing.
    async fn send(&self, cmd: ChannelCommand) {
        let _ = self.clock.send(ClockCommand::To(self.id, cmd)).await;
    }
}

impl Drop for MediaChannel {
    fn drop(&mut self) {
        let remove = ClockCommand::Remove(self.id);
        if let Err(mpsc::error::TrySendError::Full(remove)) = self.clock.try_send(remove) {
            // The clock is behind: the channel goes once it has room
            // (after everything sent for it, which went first).
            let clock = self.clock.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = clock.send(remove).await;
                });
            }
        }
        if self.pooled {
            self.engine.give_back(self.port);
        }
    }
}
