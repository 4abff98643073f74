//! One call as a state machine: what happens to it comes in as an
//! [`Input`] with the time, what it decides goes out as [`Do`]s, and it
//! says when it next wants to be woken ([`CallState::poll_timeout`]). No
//! tokio, no sockets, no clock: the driver in `mod.rs` carries out what it
//! says, and the unit tests (`state_tests.rs`) drive it on a virtual clock.
//!
//! The IVR and the dialog are here; the second leg (agents, transfers,
//! hold) is in `bridge.rs`, joining and leaving a queue in `queue.rs`,
//! the callback offer in `booking.rs`, what waiting callers hear in
//! `waiting.rs`, the deadlines in `timers.rs`; its inputs and outputs are
//! in `io.rs`.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::{info, warn};

use super::bridge::{LegState, PendingLeg};
pub use super::io::{Do, Input, LegDo, MediaDo};
use super::record::{Ending, Marks};
use super::recording;
use super::timers::{Timer, Timers};
use super::waiting::Waiting;
use crate::acd::actor::ToCall;
use crate::acd::Input as AcdInput;
use crate::config::{Config, QueueConfig};
use crate::events::{Event as BusEvent, PastCall};
use crate::flow::{Action, Event, FlowSet, Outcome, Run, Vars};
use crate::leg::playlist::{PlayOp, Playlist};
use crate::leg::{self, stream_of};
use crate::media::{dtmf, Digit, DigitSource, MediaEvent, PromptCache};
use crate::sdp::{self, Negotiated, Origin};
use crate::sip::{DialogEvent, OutboundCall};
use crate::store::{Cdr, SurveyAnswer};

/// What a call starts with.
pub struct Setup {
    pub config: Arc<Config>,
    pub prompts: Arc<PromptCache>,
    pub flows: Arc<FlowSet>,
    /// The routed flow's index in `flows`.
    pub flow: usize,
    pub call_id: String,
    pub caller: String,
    pub dialed: String,
    pub trunk: String,
    /// Where the caller's SIP came from.
    pub peer_ip: IpAddr,
    /// Send RTP where the caller's comes from (the trunk's `symmetric-rtp`).
    pub symmetric: bool,
    /// The caller's media port.
    pub media_port: u16,
    /// The address our SDP gives (the caller's family, dual stack).
    pub media_address: std::net::IpAddr,
    /// The call came over TLS (SDES keys may be exchanged).
    pub secure: bool,
}

/// The callback offer made to a waiting caller (their answer is awaited
/// until [`Timer::CallbackAnswer`]).
pub(super) struct CallbackOffer {
    pub offer: crate::callback::offer::Offer,
    /// Asked by a flow's `callback` node: its token and queue. (Otherwise
    /// offered to a waiting caller by their queue.)
    pub node: Option<(u64, String)>,
}

/// How many outputs' room a call keeps between inputs.
const OUT_KEPT: usize = 4;

/// The playlist token of "your callback is booked" (flows' tokens are small).
pub(super) const BOOKED_TOKEN: u64 = u64::MAX;
/// The token of a flow's callback node's questions (their end means nothing).
pub(super) const QUESTION_TOKEN: u64 = u64::MAX - 1;

pub struct CallState {
    pub(super) config: Arc<Config>,
    pub(super) prompts: Arc<PromptCache>,
    pub(super) call_id: String,
    pub(super) caller: String,
    pub(super) peer_ip: IpAddr,
    pub(super) symmetric: bool,
    origin: Origin,
    port: u16,
    /// The caller's trunk's media encryption rule, for the call's life.
    policy: sdp::crypto::Policy,
    /// The `a=crypto` lines of our last offer (an INVITE without SDP).
    offered_crypto: Vec<sdp::crypto::Crypto>,
    /// What each phone of the ringing leg was offered: (its URI, the SDES
    /// lines, its rule), to read its answer.
    pub(super) leg_crypto: Vec<(String, Vec<sdp::crypto::Crypto>, sdp::crypto::Policy)>,
    pub(super) negotiated: Option<Negotiated>,
    pub(super) run: Run,
    pub(super) playlist: Playlist,
    pub(super) timers: Timers,
    flow_timer: u64,
    /// Events for the flow once the current input is done.
    pub(super) later: VecDeque<Event>,
    /// Set when the call should hang up once the current input is done.
    pub(super) hang_up: bool,
    /// The call ends because a leg's media stopped ([`Ending::MediaTimeout`]).
    media_lost: bool,
    ended: Option<Ending>,
    /// The caller's message being recorded, and one to save after they hung up.
    recording: Option<recording::Active>,
    unsaved: Option<recording::Active>,
    /// The last media token given out (recordings).
    pub(super) last_token: u64,
    /// The second leg: asked for, and placed.
    pub(super) pending_leg: Option<PendingLeg>,
    pub(super) leg: Option<LegState>,
    /// In a queue (the ACD has the call).
    pub(super) queued: bool,
    pub(super) queue_name: Option<String>,
    /// The caller's priority in it (kept when an agent moves them).
    pub(super) queue_priority: i64,
    /// The skills the caller needs there.
    pub(super) queue_skills: Vec<String>,
    pub(super) marks: Marks,
    /// The conversation being recorded (its token), and how many were.
    pub(super) conversation: Option<u64>,
    pub(super) conversations: usize,
    /// The recording's pauses (PCI).
    pub(super) pauses: super::pci::Pauses,
    /// A `sensitive` collect runs: the recording is paused and keys are
    /// not logged.
    pub(super) sensitive_input: bool,
    /// The agent's keys held back while they may be the start of the
    /// record feature code.
    pub(super) agent_keys: String,
    /// The caller's earlier calls, and whether they are still being read.
    pub(super) history: Vec<PastCall>,
    pub(super) history_pending: bool,
    /// An offer that waits (briefly) for the history.
    pub(super) pending_offer: Option<ToCall>,
    pub(super) waiting: Option<Box<Waiting>>,
    /// The call's record as opened at the answer.
    open: Option<Cdr>,
    pub(super) callback: Option<CallbackOffer>,
    out: VecDeque<Do>,
    /// The clock's reading and the wall clock's at the start, so the call
    /// stamps its record from `now` alone.
    epoch: (Instant, Timestamp),
    pub(super) now: Instant,
}

impl CallState {
    /// A call that arrived at `now` (`wall` on the wall clock).
    pub fn new(s: Setup, now: Instant, wall: Timestamp) -> CallState {
        let policy = super::trunk_policy(&s.config, &s.trunk, s.secure);
        let mut vars = Vars::new();
        vars.insert("caller".into(), s.caller.clone().into());
        vars.insert("dialed".into(), s.dialed.into());
        vars.insert("call_id".into(), s.call_id.clone().into());
        vars.insert("trunk".into(), s.trunk.into());
        CallState {
            origin: Origin::new(s.media_address),
            run: Run::new(s.flows, s.flow, vars),
            config: s.config,
            prompts: s.prompts,
            call_id: s.call_id,
            caller: s.caller,
            peer_ip: s.peer_ip,
            symmetric: s.symmetric,
            port: s.media_port,
            policy,
            offered_crypto: Vec::new(),
            leg_crypto: Vec::new(),
            negotiated: None,
            playlist: Playlist::default(),
            timers: Timers::default(),
            flow_timer: 0,
            later: VecDeque::new(),
            hang_up: false,
            media_lost: false,
            ended: None,
            recording: None,
            unsaved: None,
            last_token: 0,
            pending_leg: None,
            leg: None,
            queued: false,
            queue_name: None,
            queue_priority: 0,
            queue_skills: Vec::new(),
            marks: Marks::default(),
            conversation: None,
            conversations: 0,
            pauses: Default::default(),
            sensitive_input: false,
            agent_keys: String::new(),
            history: Vec::new(),
            history_pending: true,
            pending_offer: None,
            waiting: None,
            open: None,
            callback: None,
            out: VecDeque::new(),
            epoch: (now, wall),
            now,
        }
    }

    pub fn flow_name(&self) -> &str {
        self.run.flow_name()
    }

    /// The wall-clock time of `now`.
    pub(super) fn wall(&self) -> Timestamp {
        let since = self.now.saturating_duration_since(self.epoch.0);
        self.epoch.1.checked_add(since).unwrap_or(self.epoch.1)
    }

    /// The call is answered: its record opens (from `base`) and is
    /// checkpointed; the answer itself follows with [`CallState::answer`].
    pub fn answered(&mut self, base: &Cdr, now: Instant) {
        self.now = now;
        self.marks.answered_at = Some(self.wall());
        let mut open = base.clone();
        open.answered_at = self.marks.answered_at;
        self.open = Some(open);
        self.checkpoint();
    }

    /// Answers with `offered` (the caller's offer, negotiated), or with an
    /// offer of ours when the INVITE had none (the answer comes in the ACK).
    pub fn answer(&mut self, offered: Option<Negotiated>, now: Instant) {
        self.now = now;
        let limit = self.config.calls.max_duration;
        self.timers.set(Timer::MaxDuration, now + limit);
        match offered {
            Some(n) => {
                self.negotiated = Some(n);
                let answer = sdp::answer(&mut self.origin, self.port, &n);
                self.out.push_back(Do::Answer(answer));
                let srtp = n.srtp.map(|s| s.suite.name());
                info!(codec = n.codec.name(), remote = %n.remote, ?srtp, flow = self.run.flow_name(), version = self.run.version(), "answered");
                // The first prompt is queued before the stream starts, so
                // the caller's first packet is its first frame even when
                // the media clock ticks in between (it sends nothing
                // without a stream, and the prompt waits).
                self.feed(Event::Start);
                self.apply(n);
            }
            None => {
                // Late offer (RFC 3261 §13.2.1): we offer in the 200, they answer in the ACK.
                let offer = self.our_offer();
                self.out.push_back(Do::Answer(offer));
                info!("answered with an offer; waiting for the answer in ACK");
            }
        }
        self.settle();
    }

    /// What the call asks for next.
    pub fn poll_output(&mut self) -> Option<Do> {
        let next = self.out.pop_front();
        if next.is_none() && self.out.capacity() > OUT_KEPT {
            // A burst (the answer, an offer) does not stay with the call.
            self.out.shrink_to(OUT_KEPT);
        }
        next
    }

    /// When the call next wants [`Input::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let waiting = self.waiting.as_ref().and_then(|w| w.poll_timeout());
        [self.timers.next(), waiting].into_iter().flatten().min()
    }

    /// Whether the caller's position should be given now ([`Input::Placed`]).
    pub fn wants_position(&self) -> bool {
        self.waiting.as_ref().is_some_and(|w| w.wants_position())
    }

    /// How the call ended, once it has.
    pub fn ended(&self) -> Option<Ending> {
        self.ended
    }

    /// The message the caller was recording when they hung up (to save).
    pub fn take_unsaved(&mut self) -> Option<recording::Active> {
        self.unsaved.take()
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        self.now = now;
        if self.ended.is_some() {
            return;
        }
        match input {
            Input::Dialog(ev) => {
                if let Some(end) = self.on_dialog(ev) {
                    self.ended = Some(end);
                    if end != Ending::WeHungUp {
                        self.feed(Event::Hangup);
                    }
                    self.unsaved = self.recording.take();
                }
            }
            Input::Media(ev) => self.on_media(ev),
            Input::Flow(ev) => self.feed(ev),
            Input::LegOpened => self.on_leg_opened(),
            Input::LegNoMedia(why) => self.on_leg_no_media(why),
            Input::LegAnswered {
                agent,
                sdp,
                target,
                peer,
            } => self.on_leg_answered(agent, sdp, target, peer),
            Input::Leg(ev) => self.on_leg(ev),
            Input::Offer(offer) => self.on_offer(offer),
            Input::Placed(pos) => self.on_placed(pos),
            Input::History(history) => {
                self.history = history;
                self.history_pending = false;
                self.timers.stop(Timer::ScreenPop);
                // Out of the queue meanwhile (its ACD entry is gone too): dropped.
                if let Some(offer) = self.pending_offer.take().filter(|_| self.queued) {
                    self.on_offer(offer);
                }
            }
            Input::Booked(booked) => self.on_booked(booked),
            Input::Kill => {
                info!("hung up by the operations API");
                return self.hang_up_now();
            }
            Input::PauseRecording { pause, by } => self.pause_recording(pause, &by),
            Input::Shutdown => {
                info!("engine shutting down");
                return self.hang_up_now();
            }
            Input::Timeout { position } => {
                while let Some(timer) = self.timers.expired(now) {
                    if timer == Timer::MaxDuration {
                        let limit = self.config.calls.max_duration;
                        info!(?limit, "call reached its maximum duration");
                        return self.hang_up_now();
                    }
                    self.on_timer(timer);
                }
                self.on_waiting_timeout(position);
            }
        }
        self.settle();
    }

    /// The call is over: the ACD forgets it (and frees its agent).
    pub fn finish(&mut self, now: Instant) {
        self.now = now;
        if !std::mem::take(&mut self.queued) {
            return;
        }
        let bridged_to_agent = self
            .leg
            .as_ref()
            .is_some_and(|l| l.bridged && l.purpose == leg::Purpose::Agents);
        let call = self.call_id.clone();
        self.tell_acd(if bridged_to_agent {
            AcdInput::Ended { call }
        } else {
            AcdInput::Leave { call }
        });
    }

    /// What the call's record says of its IVR, queue and agent stages;
    /// `recordings`: the conversation recordings written.
    pub fn fill(&mut self, cdr: &mut Cdr, recordings: Vec<String>, now: Instant) {
        self.now = now;
        self.count_hold();
        self.marks.recordings.extend(recordings);
        let wrap_up = self
            .marks
            .queue
            .as_ref()
            .and_then(|q| self.config.queues.get(q))
            .map_or(Duration::ZERO, |q| q.wrap_up);
        cdr.flow = Some(self.run.flow_name().to_owned());
        self.marks.fill(cdr, &self.run, wrap_up);
        cdr.recording_pauses = self.pauses.to_json(self.wall());
    }

    /// Events the flow gets after the input, until the call hangs up.
    fn settle(&mut self) {
        loop {
            if self.ended.is_some() {
                return;
            }
            if self.hang_up {
                return self.hang_up_now();
            }
            let Some(ev) = self.later.pop_front() else {
                return;
            };
            self.feed(ev);
        }
    }

    /// Sends BYE. The SIP core carries the BYE transaction to its end on
    /// its own, so the call's media is freed now, not when the BYE is answered.
    fn hang_up_now(&mut self) {
        self.out.push_back(Do::HangUp);
        self.ended = Some(if self.media_lost {
            Ending::MediaTimeout
        } else {
            Ending::WeHungUp
        });
    }

    /// A leg's peer stopped sending (its phone or network died without a
    /// BYE): the call ends, and its record says why.
    pub(super) fn on_media_lost(&mut self, whose: &str) {
        warn!(leg = whose, "no RTP for the media timeout; ending the call");
        self.media_lost = true;
    }

    pub(super) fn push(&mut self, what: Do) {
        self.out.push_back(what);
    }

    pub(super) fn media(&mut self, what: MediaDo) {
        self.out.push_back(Do::Media(what));
    }

    pub(super) fn play_ops(&mut self, ops: Vec<PlayOp>) {
        self.out
            .extend(ops.into_iter().map(|op| Do::Media(MediaDo::Play(op))));
    }

    /// Plays `names`, then loops `music`.
    pub(super) fn play_then_loop(&mut self, names: Vec<String>, music: String) {
        let mut ops = Vec::new();
        self.playlist
            .start_then_loop(names, music, &self.prompts, &mut ops);
        self.play_ops(ops);
    }

    /// Plays `names` as the sequence `token`; `Some(token)` when nothing plays.
    pub(super) fn play(&mut self, token: u64, names: Vec<String>) -> Option<u64> {
        let mut ops = Vec::new();
        let done = self.playlist.start(token, names, &self.prompts, &mut ops);
        self.play_ops(ops);
        done
    }

    pub(super) fn stop_playing(&mut self) {
        let mut ops = Vec::new();
        self.playlist.stop(&mut ops);
        self.play_ops(ops);
    }

    /// Writes what is known of the call so far into its open record, so a
    /// crash leaves its last state (closed as `interrupted` at restart).
    pub(super) fn checkpoint(&mut self) {
        let Some(base) = &self.open else {
            return;
        };
        let cdr = self
            .marks
            .checkpoint(base, self.run.node_name(), self.wall());
        self.out.push_back(Do::Checkpoint(Box::new(cdr)));
    }

    /// Queues an input for the ACD.
    pub(super) fn tell_acd(&mut self, input: AcdInput) {
        self.out.push_back(Do::Acd(input));
    }

    /// An event to feed once the current one is done.
    pub(super) fn feed_later(&mut self, ev: Event) {
        self.later.push_back(ev);
    }

    /// The config of the queue the caller is (or was last) in.
    pub(super) fn queue_config(&self) -> Option<&QueueConfig> {
        self.config.queues.get(self.queue_name.as_ref()?)
    }

    /// The music the caller hears while waiting on this call: its queue's,
    /// or the default class.
    pub(super) fn music(&self) -> String {
        self.queue_config()
            .map_or_else(|| QueueConfig::default().music, |q| q.music.clone())
    }

    /// A deadline passed.
    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::MaxDuration => {}
            Timer::Flow => self.feed(Event::Timer(self.flow_timer)),
            Timer::ScreenPop => {
                warn!("the caller's history did not come in time for the screen pop");
                self.history_pending = false;
                // Out of the queue meanwhile (its ACD entry is gone too): dropped.
                if let Some(offer) = self.pending_offer.take().filter(|_| self.queued) {
                    self.on_offer(offer);
                }
            }
            Timer::CallbackAnswer => {
                let actions = match self.callback.as_mut() {
                    Some(c) => c.offer.timeout(),
                    None => Vec::new(),
                };
                self.on_callback_actions(actions);
            }
            Timer::AgentKeys => self.flush_agent_keys(),
        }
    }

    fn apply(&mut self, n: Negotiated) {
        let stream = stream_of(&n, self.symmetric, Some(self.peer_ip));
        self.media(MediaDo::Configure(stream));
        self.negotiated = Some(n);
    }

    fn on_dialog(&mut self, ev: DialogEvent) -> Option<Ending> {
        match ev {
            DialogEvent::Ack { sdp: Some(body) } if self.negotiated.is_none() => {
                let answer = sdp::parse(&body)
                    .and_then(|a| sdp::accept_answer_with(&a, &self.offered_crypto, self.policy));
                match answer {
                    Ok(n) => {
                        self.apply(n);
                        info!(codec = n.codec.name(), remote = %n.remote, flow = self.run.flow_name(), "answer received in ACK");
                        self.feed(Event::Start);
                    }
                    Err(e) => {
                        warn!(error = %e, "unusable answer in ACK; hanging up");
                        self.out.push_back(Do::HangUp);
                        return Some(Ending::WeHungUp);
                    }
                }
                None
            }
            DialogEvent::Ack { .. } => {
                if self.negotiated.is_none() {
                    warn!("ACK carried no answer to our offer; hanging up");
                    self.out.push_back(Do::HangUp);
                    return Some(Ending::WeHungUp);
                }
                None
            }
            DialogEvent::ReInvite { sdp: body } => {
                self.on_reinvite(body);
                None
            }
            DialogEvent::Info { content_type, body } => {
                match dtmf::parse_info(&content_type, &body) {
                    Some(d) => self.on_digit(d, DigitSource::SipInfo),
                    None => info!(%content_type, "INFO without a DTMF digit"),
                }
                None
            }
            DialogEvent::Refer { refer_to } => {
                // Callers (trunks) do not move their own calls.
                warn!(%refer_to, "REFER from the caller's side refused");
                self.out.push_back(Do::NotifyRefer(403));
                None
            }
            DialogEvent::Bye => Some(Ending::CallerHungUp),
            DialogEvent::Cancelled => Some(Ending::Cancelled),
            DialogEvent::NoAck => Some(Ending::NoAck),
            DialogEvent::Ended => Some(Ending::WeHungUp),
            DialogEvent::Expired => Some(Ending::SessionExpired),
            // Only for calls we place, or answers to checks we do not send
            // on the caller's dialog.
            DialogEvent::Ringing
            | DialogEvent::Answered { .. }
            | DialogEvent::Rejected { .. }
            | DialogEvent::Alive
            | DialogEvent::Lost => None,
        }
    }

    /// An offer of ours (the INVITE or a re-INVITE came without one), with
    /// SDES lines when the trunk's rule allows (the call's key if it has one).
    fn our_offer(&mut self) -> Vec<u8> {
        let key = self
            .negotiated
            .and_then(|n| n.srtp)
            .map(|s| s.local)
            .filter(|k| k.as_bytes().len() == 30)
            .unwrap_or_else(|| {
                sdp::crypto::KeySalt::random(sdp::crypto::Suite::AesCm128HmacSha1_80)
            });
        let (lines, savp) = sdp::crypto::offer_lines(self.policy, key);
        let offer = sdp::offer_with(&mut self.origin, self.port, &lines, savp);
        self.offered_crypto = lines;
        offer
    }

    fn on_reinvite(&mut self, body: Option<Vec<u8>>) {
        let Some(body) = body else {
            // A re-INVITE without SDP asks for a fresh offer; we keep it simple
            // and offer what we offered first time.
            let offer = self.our_offer();
            self.out.push_back(Do::Answer(offer));
            return;
        };
        let local = self.negotiated.and_then(|n| n.srtp).map(|s| s.local);
        match sdp::parse(&body).and_then(|o| sdp::negotiate_with(&o, self.policy, local)) {
            Ok(n) => {
                info!(direction = ?n.direction, remote = %n.remote, "re-INVITE");
                self.apply(n);
                let answer = sdp::answer(&mut self.origin, self.port, &n);
                self.out.push_back(Do::Answer(answer));
            }
            Err(e) => {
                warn!(error = %e, "re-INVITE refused; the call goes on as before");
                self.out.push_back(Do::Respond(488));
            }
        }
    }

    fn on_media(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::Digit(d, source) => self.on_digit(d, source),
            MediaEvent::Recorded { token, samples } => {
                let Some(active) = self.recording.take_if(|a| a.media_token == token) else {
                    return;
                };
                let flow = self.run.flow_name().to_owned();
                self.out.push_back(Do::SaveRecording {
                    active,
                    samples,
                    flow,
                });
            }
            // The driver writes the conversation's audio.
            MediaEvent::Conversation { .. } => {}
            // A caller's channel is never a browser leg.
            MediaEvent::Browser(_) | MediaEvent::BrowserRefused(_) => {}
            MediaEvent::Silent => {
                self.on_media_lost("caller");
                if self.leg.as_ref().is_some_and(|l| l.bridged) {
                    self.end_bridge();
                }
                self.hang_up_now();
            }
            MediaEvent::PlaybackDone { token } => {
                let mut ops = Vec::new();
                let done = self.playlist.on_done(token, &mut ops);
                self.play_ops(ops);
                match done {
                    Some(BOOKED_TOKEN) => {
                        info!("callback booked; the caller is released");
                        self.hang_up = true;
                    }
                    Some(QUESTION_TOKEN) => self.callback_node_over(),
                    Some(done) => self.feed(Event::PlayDone(done)),
                    None => {}
                }
            }
        }
    }

    fn on_digit(&mut self, d: Digit, source: DigitSource) {
        let method = match source {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::SipInfo => "sip-info",
            DigitSource::InBand => "in-band",
        };
        metrics::counter!("hotline_dtmf_digits_total", "method" => method).increment(1);
        if self.leg.as_ref().is_some_and(|l| l.bridged) {
            // Bridged: the caller's keys go on to the target (RFC 4733).
            self.push(Do::Leg(LegDo::SendDigit(d)));
            return;
        }
        if self.sensitive_input {
            info!(
                ?source,
                node = self.run.node_name(),
                "digit received (sensitive: not logged)"
            );
        } else {
            info!(digit = %d, ?source, node = self.run.node_name(), "digit received");
        }
        let waiting = self.queued && self.leg.is_none();
        if let Some(c) = self
            .callback
            .as_mut()
            .filter(|c| waiting || c.node.is_some())
        {
            let before = c.offer.engaged();
            let actions = c.offer.key(d.as_char());
            if c.offer.engaged() {
                self.timers.set(
                    Timer::CallbackAnswer,
                    self.now + super::booking::OFFER_ANSWER_TIME,
                );
            }
            let taken = before || !actions.is_empty();
            self.on_callback_actions(actions);
            if taken {
                return;
            }
        }
        self.feed(Event::Digit(d.as_char()));
    }

    /// Steps the flow and carries out what it asks, until nothing is left.
    pub(super) fn feed(&mut self, event: Event) {
        let mut pending = vec![event];
        while let Some(ev) = pending.pop() {
            let actions = self.run.step(ev, self.wall());
            for action in actions {
                if let Some(ev) = self.act(action) {
                    pending.push(ev);
                }
            }
        }
    }

    /// Carries out one action; an event that follows at once is returned.
    fn act(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Entered { flow, node } => {
                info!(%flow, %node, "ivr node");
                self.sensitive_node(self.run.in_sensitive_collect(), &node);
                self.push(Do::Publish(Box::new(BusEvent::IvrNode {
                    call_id: self.call_id.clone(),
                    flow,
                    node,
                })));
            }
            Action::Play { token, prompts, .. } => {
                self.timers.stop(Timer::Flow);
                return self.play(token, prompts).map(Event::PlayDone);
            }
            Action::StopPlay => self.stop_playing(),
            Action::Timer { token, after } => {
                self.flow_timer = token;
                self.timers.set(Timer::Flow, self.now + after);
            }
            Action::Webhook { token, request } => self.push(Do::Webhook { token, request }),
            Action::Record { token, max, kind } => {
                self.timers.stop(Timer::Flow);
                self.last_token += 1;
                let media_token = self.last_token;
                self.media(MediaDo::Record {
                    token: media_token,
                    max,
                });
                info!(?kind, max = ?max, "recording");
                self.recording = Some(recording::Active {
                    flow_token: token,
                    media_token,
                    kind,
                    started: self.wall(),
                });
            }
            Action::StopRecord => self.media(MediaDo::StopRecord),
            Action::SaveSurvey {
                token,
                question,
                score,
            } => {
                let answer = SurveyAnswer {
                    created_at: self.wall(),
                    call_id: self.call_id.clone(),
                    caller: self.caller.clone(),
                    flow: self.run.flow_name().to_owned(),
                    question,
                    score,
                };
                self.push(Do::SaveSurvey { token, answer });
            }
            Action::Enqueue {
                queue,
                priority,
                skills,
            } => self.enqueue(queue, priority, skills),
            Action::Transfer { token, target, uri } => {
                self.transfer(leg::Purpose::Transfer { token }, target, uri)
            }
            Action::OfferCallback { token, queue } => self.callback_node(token, queue),
            Action::Hangup => {
                if let Some(Outcome::Failed { message }) = self.run.outcome() {
                    warn!(node = self.run.node_name(), error = %message, "the flow failed; hanging up");
                }
                self.hang_up = true;
            }
            Action::Error { node, message } => {
                warn!(flow = self.run.flow_name(), %node, error = %message, "flow error; taking the error path");
            }
        }
        None
    }

    /// Places a call for a transfer (a flow's node, or an agent's REFER);
    /// the caller hears hold music while it rings.
    pub(super) fn transfer(&mut self, purpose: leg::Purpose, target: String, uri: String) {
        let wall = self.wall();
        self.marks.ivr_exit_at.get_or_insert(wall);
        // SRTP as the target's rule allows (the trunk it is dialled over).
        let policy = sdp::crypto::Policy::for_transfer(&self.config, &uri);
        let key = sdp::crypto::KeySalt::random(sdp::crypto::Suite::AesCm128HmacSha1_80);
        let (crypto, savp) = sdp::crypto::offer_lines(policy, key);
        self.leg_crypto.clear();
        self.leg_crypto.push((uri.clone(), crypto.clone(), policy));
        let call = OutboundCall {
            target: uri,
            from_user: self.caller.clone(),
            from_display: None,
            sdp: Vec::new(),
            via: None,
            over_tcp: false,
            headers: Vec::new(),
            auth: None,
            crypto,
            savp,
            webrtc: false,
        };
        self.open_leg(PendingLeg {
            purpose,
            target,
            ring_timeout: leg::RING_TIMEOUT,
            calls: vec![(call, None)],
            pop: None,
            agents: Vec::new(),
            browsers: Vec::new(),
        });
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
