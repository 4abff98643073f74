//! The second leg of a call: the INVITE Hotline places to a transfer target
//! or to agents, its media channel on the same media clock as the caller's,
//! and the bridge between the two once it answers.
//!
//! A leg may ring several phones at once (every phone an agent registered;
//! every free agent of a ring-all queue): each is a branch with its own
//! INVITE and the same SDP offer. The first to answer wins; the others are
//! cancelled (or, if they answered too, hung up).

pub mod browser;
pub mod playlist;

use tokio::sync::mpsc;
use tokio::time::Instant;

use browser::{BrowserBranch, BrowserPhones, FromPage, PageEvent, ToPage};

use crate::media::webrtc::{LinkState, DTMF_PT};
use crate::media::{MediaChannel, MediaEvent, StreamConfig};
use crate::sdp::{Negotiated, Origin};
use crate::sip::{Dialer, DialogEvent, DialogHandle, OutboundCall};

/// How long a transfer target may ring before the caller's flow moves on.
pub const RING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the leg was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A transfer node; the flow's token for `Event::Transferred`.
    Transfer { token: u64 },
    /// Agents offered the caller by the ACD.
    Agents,
    /// A target an agent transferred the caller to (REFER).
    Referred,
    /// A callback: the customer called over a trunk.
    Callback,
}

/// One phone rung.
struct Branch {
    target: String,
    /// The agent whose phone it is.
    agent: Option<String>,
    /// Set once the INVITE is out (the target's name is resolved first).
    dialog: Option<DialogHandle>,
    /// It failed, refused, or was dropped.
    over: bool,
    /// A browser phone (SIP over WebSocket): the WebRTC channel its offer
    /// came from, and the codec sent; the leg takes it if it answers.
    webrtc: Option<(MediaChannel, crate::sdp::Codec)>,
}

/// The branch that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Winner {
    Sip(usize),
    Browser(usize),
}

/// What a branch's forwarding task reports.
enum BranchEvent {
    Placed(DialogHandle),
    Failed(String),
    Dialog(DialogEvent),
}

pub struct Leg {
    pub purpose: Purpose,
    /// Who is rung (for the log): the target, or the agents.
    pub target: String,
    pub media: MediaChannel,
    /// Our SDP session on this leg (its version grows with each answer).
    pub origin: Origin,
    branches: Vec<Branch>,
    /// Browsers rung (agents at the desktop).
    browsers: Vec<BrowserBranch>,
    /// What their pages say.
    pages: mpsc::UnboundedReceiver<(String, PageEvent)>,
    pages_tx: mpsc::UnboundedSender<(String, PageEvent)>,
    /// The branch that answered.
    winner: Option<Winner>,
    /// Nothing was rung, and that was reported.
    told_empty: bool,
    events: mpsc::UnboundedReceiver<(usize, BranchEvent)>,
    events_tx: mpsc::UnboundedSender<(usize, BranchEvent)>,
    /// Until the answer: when to give up ringing.
    pub deadline: Option<Instant>,
    /// Where the answering phone's SIP is (its RTP may be learned from there).
    pub peer: Option<std::net::IpAddr>,
    /// Once bridged: when to ask the leg whether it still has the call, and
    /// by when it must have answered.
    check: Option<(std::time::Duration, std::time::Duration)>,
    check_at: Option<Instant>,
    check_deadline: Option<Instant>,
    /// The last refusal, reported when every branch is over.
    last_status: Option<u16>,
    last_failure: Option<String>,
    /// Something could not be rung for a want of our own (no media for
    /// a browser leg): with nothing rung, the leg is not placed.
    our_want: Option<String>,
}

/// What happened on the leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// A branch answered (2xx; ACK sent): the agent it rang, and the SDP.
    Answered {
        agent: Option<String>,
        sdp: Option<Vec<u8>>,
    },
    /// The winning branch's dialog: re-INVITE, INFO, BYE; or `Ringing`.
    Dialog(DialogEvent),
    Media(MediaEvent),
    /// Every branch refused: the last final status.
    Rejected(u16),
    /// No INVITE could be sent (or every branch failed so).
    Failed(String),
    /// Nothing was rung, for a want of ours (no media for the agent's
    /// browser leg): not the agents' doing.
    NotPlaced(String),
    /// Ringing too long.
    NoAnswer,
    /// Bridged, but the leg stopped answering checks (its phone died
    /// without a BYE) or no longer knows the call.
    Gone,
    /// An agent took the call in the browser: its WebRTC channel is now
    /// the leg's, streaming so.
    BrowserAnswered {
        agent: String,
        stream: StreamConfig,
    },
    /// The browser's connection died (consent ran out) after it answered.
    ConnectionLost,
    /// The agent at the desktop holds the caller (`true`) or takes them back.
    Hold(bool),
    /// The agent at the desktop transfers the caller (blind) to a queue or
    /// a name under `transfers:`.
    Transfer(String),
}

impl Leg {
    pub fn new(
        purpose: Purpose,
        target: String,
        media: MediaChannel,
        origin: Origin,
        ring_timeout: std::time::Duration,
    ) -> Leg {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (pages_tx, pages) = mpsc::unbounded_channel();
        Leg {
            purpose,
            target,
            media,
            origin,
            branches: Vec::new(),
            browsers: Vec::new(),
            pages,
            pages_tx,
            winner: None,
            told_empty: false,
            events,
            events_tx,
            deadline: Some(Instant::now() + ring_timeout),
            peer: None,
            check: None,
            check_at: None,
            check_deadline: None,
            last_status: None,
            last_failure: None,
            our_want: None,
        }
    }

    /// A phone (an agent's browser) could not be rung for a want of ours.
    pub fn not_placed(&mut self, why: String) {
        self.our_want = Some(why);
    }

    /// Rings one more phone.
    pub fn dial(&mut self, dialer: &Dialer, call: OutboundCall, agent: Option<String>) {
        self.dial_with(dialer, call, agent, None);
    }

    /// Rings a browser phone registered over WebSocket: `call`'s SDP is the
    /// offer of `media`, a WebRTC channel sending `codec`.
    /// Rings `call`: a phone over SIP as it is, a browser phone over
    /// WebSocket (`call.webrtc`) with a WebRTC offer of its own, opened
    /// by `engine` on this leg's media clock.
    pub async fn dial_phone(
        &mut self,
        engine: &std::sync::Arc<crate::media::MediaEngine>,
        dialer: &Dialer,
        mut call: OutboundCall,
        agent: Option<String>,
        codec: crate::sdp::Codec,
    ) {
        if !call.webrtc {
            return self.dial(dialer, call, agent);
        }
        match engine.open_browser(&self.media, codec).await {
            Ok((m, offer)) => {
                call.sdp = offer.into_bytes();
                self.dial_webrtc(dialer, call, agent, m, codec);
            }
            Err(e) => {
                tracing::warn!(target = %call.target, error = %e, "no WebRTC media for the browser phone");
                self.not_placed(e.to_string());
            }
        }
    }

    /// Rings `agent`'s desktop page for `call` with a WebRTC offer of its
    /// own (in `codec`, on this leg's media clock), the screen `pop` shown.
    #[allow(clippy::too_many_arguments)]
    pub async fn ring_desktop(
        &mut self,
        engine: &std::sync::Arc<crate::media::MediaEngine>,
        phones: &BrowserPhones,
        call: &str,
        agent: String,
        codec: crate::sdp::Codec,
        ice_servers: Vec<crate::config::PageIceServer>,
        pop: serde_json::Value,
    ) {
        match engine.open_browser(&self.media, codec).await {
            Ok((m, offer)) => {
                tracing::info!(%agent, %call, "ringing the agent's browser");
                self.ring_browser(phones, call, agent, codec, m, offer, ice_servers, pop);
            }
            Err(e) => {
                tracing::warn!(%agent, error = %e, "no browser leg for the agent");
                self.not_placed(e.to_string());
            }
        }
    }

    pub fn dial_webrtc(
        &mut self,
        dialer: &Dialer,
        call: OutboundCall,
        agent: Option<String>,
        media: MediaChannel,
        codec: crate::sdp::Codec,
    ) {
        self.dial_with(dialer, call, agent, Some((media, codec)));
    }

    fn dial_with(
        &mut self,
        dialer: &Dialer,
        call: OutboundCall,
        agent: Option<String>,
        webrtc: Option<(MediaChannel, crate::sdp::Codec)>,
    ) {
        let i = self.branches.len();
        self.branches.push(Branch {
            target: call.target.clone(),
            agent,
            dialog: None,
            over: false,
            webrtc,
        });
        let (dialer, tx) = (dialer.clone(), self.events_tx.clone());
        // If the leg is gone, sends fail and the dialog handle is dropped:
        // the SIP layer cancels (or hangs up) the call.
        tokio::spawn(async move {
            match dialer.call(call).await {
                Ok((handle, mut rx)) => {
                    if tx.send((i, BranchEvent::Placed(handle))).is_err() {
                        return;
                    }
                    while let Some(ev) = rx.recv().await {
                        if tx.send((i, BranchEvent::Dialog(ev))).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send((i, BranchEvent::Failed(e.to_string())));
                }
            }
        });
    }

    /// Rings an agent's browser phone: `media` is the WebRTC channel
    /// whose `offer` the page gets with the screen pop. `false` (and the
    /// branch is over) when the agent has no page now.
    #[allow(clippy::too_many_arguments)]
    pub fn ring_browser(
        &mut self,
        phones: &BrowserPhones,
        call: &str,
        agent: String,
        codec: crate::sdp::Codec,
        media: MediaChannel,
        offer: String,
        ice_servers: Vec<crate::config::PageIceServer>,
        pop: serde_json::Value,
    ) -> bool {
        let Some(page) = phones.ring(call, &agent, self.pages_tx.clone()) else {
            self.last_failure = Some(format!("agent {agent} has no browser page"));
            return false;
        };
        let branch = BrowserBranch {
            agent,
            call: call.to_owned(),
            codec,
            media: Some(media),
            page,
            phones: phones.clone(),
            over: false,
            won: false,
        };
        branch.tell(ToPage::Ring {
            call: call.to_owned(),
            offer,
            ice_servers,
            pop,
        });
        self.browsers.push(branch);
        true
    }

    /// The answered branch's dialog (none for a browser).
    pub fn dialog(&self) -> Option<&DialogHandle> {
        match self.winner? {
            Winner::Sip(i) => self.branches.get(i)?.dialog.as_ref(),
            Winner::Browser(_) => None,
        }
    }

    /// Where the answered branch was sent.
    pub fn answered_target(&self) -> Option<&str> {
        match self.winner? {
            Winner::Sip(i) => Some(&self.branches.get(i)?.target),
            Winner::Browser(i) => self.browsers.get(i).map(|_| "browser"),
        }
    }

    /// Whether every branch, SIP and browser, is over.
    fn all_over(&self) -> bool {
        self.branches.iter().all(|b| b.over) && self.browsers.iter().all(|b| b.over)
    }

    /// The report when every branch is over.
    fn report(&mut self) -> LegEvent {
        match (self.last_status, self.last_failure.take()) {
            (Some(status), _) => LegEvent::Rejected(status),
            (None, Some(why)) => LegEvent::Failed(why),
            (None, None) => LegEvent::Failed("the call ended before it was answered".into()),
        }
    }

    /// What a page said (or that it went) about its branch.
    async fn on_page(&mut self, agent: String, ev: PageEvent) -> Option<LegEvent> {
        let i = self
            .browsers
            .iter()
            .position(|b| b.agent == agent && !b.over)?;
        let won = self.winner == Some(Winner::Browser(i));
        let msg = match ev {
            PageEvent::Said(msg) => msg,
            // A page that goes after taking the call: its media's consent
            // says whether the call is still there.
            PageEvent::Gone if won => return None,
            PageEvent::Gone => {
                self.last_failure = Some(format!("agent {agent}'s page closed"));
                return self.browser_over(i);
            }
        };
        match msg {
            FromPage::Answer { sdp, .. } => {
                let media = if won {
                    Some(&self.media)
                } else {
                    self.browsers[i].media.as_ref()
                };
                if let Some(m) = media {
                    m.browser_answer(sdp).await;
                }
                None
            }
            FromPage::Candidate { candidate, .. } => {
                let media = if won {
                    Some(&self.media)
                } else {
                    self.browsers[i].media.as_ref()
                };
                if let Some(m) = media {
                    m.browser_candidate(candidate).await;
                }
                None
            }
            FromPage::Accept { .. } if self.winner.is_none() => {
                let media = self.browsers[i].media.take()?;
                self.winner = Some(Winner::Browser(i));
                self.browsers[i].won = true;
                // The SIP channel offered to phones goes; the browser's is
                // the leg's from now on.
                self.media = media;
                for b in self.branches.iter_mut() {
                    if let Some(d) = b.dialog.take() {
                        d.hangup().await;
                    }
                    b.over = true;
                }
                for (k, b) in self.browsers.iter_mut().enumerate() {
                    if k != i {
                        b.end();
                    }
                }
                let stream = self.browser_stream(self.browsers[i].codec);
                Some(LegEvent::BrowserAnswered { agent, stream })
            }
            // Taken elsewhere already: this page stops ringing.
            FromPage::Accept { .. } => {
                self.browsers[i].end();
                None
            }
            FromPage::Hangup { .. } if won => Some(LegEvent::Dialog(DialogEvent::Bye)),
            FromPage::Hold { on, .. } if won => Some(LegEvent::Hold(on)),
            FromPage::Transfer { target, .. } if won => Some(LegEvent::Transfer(target)),
            // Not the agent's call (yet): nothing to hold or transfer.
            FromPage::Hold { .. } | FromPage::Transfer { .. } => None,
            FromPage::Decline { .. } | FromPage::Hangup { .. } => {
                self.last_status = Some(603);
                self.browser_over(i)
            }
        }
    }

    /// How the leg's WebRTC channel (now `self.media`) streams `codec`.
    fn browser_stream(&self, codec: crate::sdp::Codec) -> StreamConfig {
        StreamConfig {
            remote: std::net::SocketAddr::new(self.media.local_ip(), self.media.local_port()),
            codec,
            payload_type: codec.payload_type(),
            dtmf_pt: Some(DTMF_PT),
            send: true,
            receive: true,
            symmetric: false,
            signalling: None,
            srtp: None,
            rtcp: None,
        }
    }

    /// A browser branch is over; when all are, what to report.
    fn browser_over(&mut self, i: usize) -> Option<LegEvent> {
        if let Some(b) = self.browsers.get_mut(i) {
            b.end();
        }
        if self.winner.is_some() || !self.all_over() {
            return None;
        }
        Some(self.report())
    }

    /// An event of a browser branch's channel before anyone answered.
    fn on_branch_media(&mut self, i: usize, ev: MediaEvent) -> Option<LegEvent> {
        match ev {
            MediaEvent::BrowserRefused(e) => {
                let b = self.browsers.get(i)?;
                b.tell(ToPage::Refused {
                    call: b.call.clone(),
                    error: e.to_string(),
                });
                self.last_failure = Some(e.to_string());
                self.browser_over(i)
            }
            MediaEvent::Browser(LinkState::Failed) => {
                self.last_failure = Some("the browser's connection failed".into());
                self.browser_over(i)
            }
            _ => None,
        }
    }

    /// It answered and is bridged: it rings no more, and from now on it is
    /// checked every `every`, each answer due within `timeout`.
    pub fn connected(&mut self, every: std::time::Duration, timeout: std::time::Duration) {
        self.deadline = None;
        self.start_checks(every, timeout);
    }

    /// Checks every `every` that the leg still has the call, each answer
    /// due within `timeout` (zero `every`: never).
    fn start_checks(&mut self, every: std::time::Duration, timeout: std::time::Duration) {
        if every.is_zero() {
            return;
        }
        self.check = Some((every, timeout));
        self.check_at = Some(Instant::now() + every);
    }

    /// A branch is over; when all are, what to report.
    fn branch_over(&mut self, i: usize) -> Option<LegEvent> {
        if let Some(b) = self.branches.get_mut(i) {
            b.over = true;
            b.dialog = None;
        }
        if self.winner.is_some() || !self.all_over() {
            return None;
        }
        Some(self.report())
    }

    /// The next thing that happens on the leg.
    pub async fn next(&mut self) -> LegEvent {
        // Nothing could be rung at all (no phone, no page): said once.
        if self.winner.is_none() && self.all_over() && !self.told_empty {
            self.told_empty = true;
            let nothing_rung = self.branches.is_empty() && self.browsers.is_empty();
            if let Some(why) = self.our_want.take().filter(|_| nothing_rung) {
                return LegEvent::NotPlaced(why);
            }
            return self.report();
        }
        loop {
            let deadline = self.deadline;
            let (check_at, check_deadline) = (self.check_at, self.check_deadline);
            let (i, ev) = tokio::select! {
                Some(ev) = self.events.recv() => ev,
                Some(ev) = self.media.events.recv() => {
                    if ev == MediaEvent::Browser(LinkState::Failed)
                        && matches!(self.winner, Some(Winner::Browser(_)))
                    {
                        return LegEvent::ConnectionLost;
                    }
                    return LegEvent::Media(ev);
                }
                Some((agent, ev)) = self.pages.recv() => {
                    match self.on_page(agent, ev).await {
                        Some(report) => return report,
                        None => continue,
                    }
                }
                (i, ev) = branch_media(&mut self.browsers) => {
                    match self.on_branch_media(i, ev) {
                        Some(report) => return report,
                        None => continue,
                    }
                }
                _ = sleep_until_opt(deadline) => return LegEvent::NoAnswer,
                _ = sleep_until_opt(check_at) => {
                    self.check_at = None;
                    if let (Some(dialog), Some((_, timeout))) = (self.dialog(), self.check) {
                        dialog.ping().await;
                        self.check_deadline = Some(Instant::now() + timeout);
                    }
                    continue;
                }
                _ = sleep_until_opt(check_deadline) => return LegEvent::Gone,
            };
            let ev = match ev {
                BranchEvent::Placed(handle) => {
                    match self.branches.get_mut(i) {
                        Some(b) if !b.over && self.winner.is_none() => b.dialog = Some(handle),
                        // Answered elsewhere meanwhile: dropping it cancels it.
                        _ => drop(handle),
                    }
                    continue;
                }
                BranchEvent::Failed(why) => {
                    self.last_failure = Some(why);
                    match self.branch_over(i) {
                        Some(report) => return report,
                        None => continue,
                    }
                }
                BranchEvent::Dialog(ev) => ev,
            };
            match self.winner {
                Some(Winner::Sip(w)) if w == i => match ev {
                    DialogEvent::Alive => {
                        self.check_deadline = None;
                        if let Some((every, _)) = self.check {
                            self.check_at = Some(Instant::now() + every);
                        }
                    }
                    DialogEvent::Lost => return LegEvent::Gone,
                    ev => return LegEvent::Dialog(ev),
                },
                Some(_) => {
                    // Another phone answered too late: it gets a BYE.
                    if let DialogEvent::Answered { .. } = ev {
                        if let Some(d) = self.branches.get(i).and_then(|b| b.dialog.as_ref()) {
                            d.hangup().await;
                        }
                    }
                }
                None => match ev {
                    DialogEvent::Answered { sdp, peer } => {
                        self.winner = Some(Winner::Sip(i));
                        self.peer = Some(peer);
                        // The other phones stop ringing.
                        for (k, b) in self.branches.iter_mut().enumerate() {
                            if k != i {
                                if let Some(d) = b.dialog.take() {
                                    d.hangup().await;
                                }
                                b.over = true;
                            }
                        }
                        for b in self.browsers.iter_mut() {
                            b.end();
                        }
                        let agent = self.branches.get(i).and_then(|b| b.agent.clone());
                        // A browser phone's answer is its WebRTC channel's.
                        if let Some((media, codec)) =
                            self.branches.get_mut(i).and_then(|b| b.webrtc.take())
                        {
                            let answer =
                                String::from_utf8_lossy(sdp.as_deref().unwrap_or_default())
                                    .into_owned();
                            media.browser_answer(answer).await;
                            self.media = media;
                            let stream = self.browser_stream(codec);
                            return LegEvent::BrowserAnswered {
                                agent: agent.unwrap_or_default(),
                                stream,
                            };
                        }
                        return LegEvent::Answered { agent, sdp };
                    }
                    DialogEvent::Ringing => return LegEvent::Dialog(DialogEvent::Ringing),
                    DialogEvent::Rejected { status } => {
                        self.last_status = Some(status);
                        if let Some(report) = self.branch_over(i) {
                            return report;
                        }
                    }
                    DialogEvent::Bye | DialogEvent::Ended => {
                        if let Some(report) = self.branch_over(i) {
                            return report;
                        }
                    }
                    _ => {}
                },
            }
        }
    }
}

/// The next event of a browser branch's channel that still rings (none:
/// never).
async fn branch_media(browsers: &mut [BrowserBranch]) -> (usize, MediaEvent) {
    std::future::poll_fn(|cx| {
        for (i, b) in browsers.iter_mut().enumerate() {
            if let Some(m) = b.media.as_mut().filter(|_| !b.over) {
                if let std::task::Poll::Ready(Some(ev)) = m.events.poll_recv(cx) {
                    return std::task::Poll::Ready((i, ev));
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Waits for the leg's next event, or forever when there is no leg.
pub async fn next_of(leg: Option<&mut Leg>) -> LegEvent {
    match leg {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

/// How RTP flows for a negotiated stream; `symmetric`: send to where the
/// far end's packets come from; `signalling`: the IP its SIP comes from.
pub fn stream_of(
    n: &Negotiated,
    symmetric: bool,
    signalling: Option<std::net::IpAddr>,
) -> StreamConfig {
    StreamConfig {
        remote: n.remote,
        codec: n.codec,
        payload_type: n.payload_type,
        dtmf_pt: n.dtmf_pt,
        send: n.we_send(),
        receive: n.we_receive(),
        symmetric,
        signalling,
        srtp: n.srtp,
        rtcp: n.rtcp,
    }
}

/// Sleeps until `at`, or forever without one (a `select!` arm with no
/// deadline).
pub async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
