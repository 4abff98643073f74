//! One task per call: it ties a SIP dialog, a media channel and the call's
//! flow run together, and carries out the flow's actions. This is the only
//! place where the layers meet.
//!
//! Over 800 lines while the call becomes a state machine (issue 13): the
//! IVR, legs, bridge and recordings still live here; waiting, deadlines and
//! the record are already their own modules.

mod conversation;
mod feature;
pub mod live;
mod notify;
mod record;
mod recording;
pub mod simulate;
#[cfg(feature = "local-audio")]
pub mod speaker;
mod timers;
mod waiting;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use timers::{Timer, Timers};
use tracing::{info, warn, Instrument};
use waiting::{Say, Waiting};

use crate::acd::actor::{AcdHandle, Request as AcdRequest, ToCall, Waiter};
use crate::acd::Input as AcdInput;
use crate::config::{Config, Record};
use crate::events::{Event as BusEvent, PastCall};
use crate::flow::{self, Action, Event, FlowSet, Outcome, Run, Vars};
use crate::leg::{self, playlist::Playlist};
pub(crate) use crate::leg::{sleep_until_opt, stream_of};
use crate::media::{dtmf, Digit, DigitSource, MediaChannel, MediaEngine, MediaEvent, PromptCache};
use crate::sdp::{self, Negotiated, Origin};
use crate::sip::{Dialer, DialogEvent, DialogHandle, IncomingCall, OutboundCall};
use crate::store::{Callback, Cdr, Outcome as StoreOutcome, RecordKey, StoreError, StoreHandle};

/// What every call task shares.
#[derive(Clone)]
pub struct CallContext {
    pub config: Arc<Config>,
    pub prompts: Arc<PromptCache>,
    pub media: Arc<MediaEngine>,
    /// The current flow set; a call takes the version current when it starts.
    pub flows: watch::Receiver<Arc<FlowSet>>,
    pub http: reqwest::Client,
    pub store: StoreHandle,
    pub dialer: Dialer,
    pub acd: AcdHandle,
    /// What happens to calls, for the operations API and screen pops.
    pub events: crate::events::EventBus,
    /// The calls in progress.
    pub calls: Arc<live::LiveCalls>,
    /// Becomes `true` when the drain timeout is over: hang up now.
    pub hangup_all: watch::Receiver<bool>,
    /// Where booked callbacks go.
    pub callbacks: crate::callback::CallbackHandle,
}

impl CallContext {
    /// Tells the event bus (and the list of calls in progress).
    pub fn publish(&self, event: BusEvent) {
        self.calls.apply(&event);
        self.events.publish(event);
    }
}

pub use record::Ending;
use record::Marks;

/// Runs one call to its end.
pub async fn run(ctx: CallContext, call: IncomingCall) {
    let span = tracing::info_span!(
        "call",
        call_id = %call.call_id,
        caller = %call.caller,
        dialed = %call.dialed,
    );
    async move {
        info!(trunk = %call.trunk, source = %call.source, "call arrived");
        let (kill_tx, kill_rx) = mpsc::unbounded_channel();
        ctx.calls.arrived(
            live::LiveCall {
                call_id: call.call_id.clone(),
                caller: call.caller.clone(),
                dialed: call.dialed.clone(),
                trunk: call.trunk.clone(),
                arrived_at: jiff::Timestamp::now(),
                state: live::CallPhase::Ivr,
                flow: None,
                node: None,
                queue: None,
                agent: None,
            },
            kill_tx,
        );
        ctx.publish(BusEvent::CallArrived {
            call_id: call.call_id.clone(),
            caller: call.caller.clone(),
            dialed: call.dialed.clone(),
            trunk: call.trunk.clone(),
        });
        let bus = ctx.clone();
        let store = ctx.store.clone();
        // Opened in the store at the answer, closed at the end.
        let record = RecordKey::new();
        let mut cdr = Cdr {
            call_id: call.call_id.clone(),
            caller: call.caller.clone(),
            dialed: call.dialed.clone(),
            trunk: call.trunk.clone(),
            arrived_at: Some(jiff::Timestamp::now()),
            vars: "{}".into(),
            ..Cdr::default()
        };
        let ending = match call.feature.clone() {
            Some((agent, code)) => {
                cdr.outcome = StoreOutcome::FeatureCode;
                feature::run(&ctx, call, agent, code).await
            }
            None => Call::setup(ctx, call, &mut cdr, kill_rx, &record).await,
        };
        record::finish(&mut cdr, ending, jiff::Timestamp::now());
        let cdr_call_id = cdr.call_id.clone();
        let ended = BusEvent::CallEnded {
            call_id: cdr.call_id.clone(),
            outcome: cdr.outcome.to_string(),
            ended_by: cdr.ended_by.clone(),
        };
        if let Some(url) = bus.config.calls.end_webhook.as_deref() {
            let mut body = serde_json::to_value(&cdr).unwrap_or_default();
            body["vars"] = serde_json::from_str(&cdr.vars).unwrap_or_default();
            notify::post(&bus.http, url, "call record", body);
        }
        // Queued, never dropped: the store keeps it until it is committed.
        store.record(&record, cdr, false);
        info!(?ending, "call ended");
        bus.calls.ended(&cdr_call_id);
        bus.publish(ended);
    }
    .instrument(span)
    .await
}

/// Results of work the call started in other tasks (webhooks).
type Feedback = (mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>);

struct Call {
    ctx: CallContext,
    dialog: DialogHandle,
    events: mpsc::UnboundedReceiver<DialogEvent>,
    media: MediaChannel,
    origin: Origin,
    symmetric: bool,
    /// The IP the caller's SIP came from.
    peer_ip: std::net::IpAddr,
    negotiated: Option<Negotiated>,
    run: Run,
    playlist: Playlist,
    /// The call's deadlines (each named), and the token of the flow's.
    timers: Timers,
    flow_timer: u64,
    feedback: Feedback,
    /// Set when the flow asked to hang up.
    hang_up: bool,
    call_id: String,
    caller: String,
    recording: Option<recording::Active>,
    /// The call placed for a transfer or to an agent, ringing or bridged.
    leg: Option<leg::Leg>,
    /// Offers and positions from the ACD while the caller is queued.
    queued: Option<Waiter>,
    /// What the call tells the ACD, sent in order after each event.
    to_acd: Vec<AcdRequest>,
    /// Callbacks stored for the caller, for the callback service (with
    /// the queue entry each takes over), sent after each event.
    booked: Vec<(Callback, Option<String>)>,
    queue_name: Option<String>,
    /// The caller's priority in it (kept when an agent moves them).
    queue_priority: i64,
    /// The skills the caller needs there.
    queue_skills: Vec<String>,
    /// When the call's stages began, for its record.
    marks: Marks,
    /// The conversation being recorded, if it is.
    conversation: Option<conversation::Conversation>,
    /// Recordings stopped during the call, still being written.
    recordings_closing: Vec<tokio::task::JoinHandle<Result<(String, std::time::Duration), String>>>,
    /// The agent's keys held back while they may be the start of the
    /// record feature code, and until when.
    agent_keys: String,
    /// The caller's earlier calls, looked up when they join a queue.
    history: Vec<PastCall>,
    history_rx: Option<tokio::sync::oneshot::Receiver<Vec<PastCall>>>,
    /// An offer that waits (briefly) for the history, and until when.
    pending_offer: Option<ToCall>,
    /// The operations API asks the call to end.
    kill: mpsc::UnboundedReceiver<()>,
    /// What the waiting caller hears (while they are in a queue).
    waiting: Option<Box<Waiting>>,
    /// The call's record, open in the store since the answer: its key and
    /// what was known then.
    open_record: Option<(RecordKey, Cdr)>,
    /// The callback offer, once made.
    callback: Option<CallbackOffer>,
    /// How the request's write went.
    booking: Booking,
}

/// How a callback request's write went: the stored request, or why not.
type Booking = (
    mpsc::UnboundedSender<Result<Callback, StoreError>>,
    mpsc::UnboundedReceiver<Result<Callback, StoreError>>,
);

/// The callback offer made to a waiting caller (their answer is awaited
/// until [`Timer::CallbackAnswer`]).
struct CallbackOffer {
    offer: crate::callback::offer::Offer,
    /// Asked by a flow's `callback` node: its token and queue. (Otherwise
    /// offered to a waiting caller by their queue.)
    node: Option<(u64, String)>,
}

/// How long an answer waits for its call's record to be committed.
const OPEN_RECORD_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The playlist token of "your callback is booked" (flows' tokens are small).
const BOOKED_TOKEN: u64 = u64::MAX;
/// The token of a flow's callback node's questions (their end means nothing).
const QUESTION_TOKEN: u64 = u64::MAX - 1;
/// How long a caller has to answer the offer's questions, or between keys.
const OFFER_ANSWER_TIME: std::time::Duration = std::time::Duration::from_secs(10);

impl Call {
    async fn setup(
        ctx: CallContext,
        call: IncomingCall,
        cdr: &mut Cdr,
        kill: mpsc::UnboundedReceiver<()>,
        record: &RecordKey,
    ) -> Ending {
        let IncomingCall {
            dialog,
            events,
            offer,
            trunk,
            call_id,
            caller,
            dialed,
            source,
            ..
        } = call;
        let set = ctx.flows.borrow().clone();
        let Some(flow) = set.route(&dialed) else {
            warn!("no route for the dialled number and no default route");
            dialog.respond(404);
            cdr.outcome = StoreOutcome::Refused;
            return Ending::Refused;
        };
        let media = match ctx.media.open() {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "no media for the call");
                dialog.respond(503);
                cdr.outcome = StoreOutcome::Refused;
                return Ending::Refused;
            }
        };
        let symmetric = ctx
            .config
            .trunks
            .iter()
            .find(|t| t.name == trunk)
            .is_none_or(|t| t.symmetric_rtp);
        let mut vars = Vars::new();
        vars.insert("caller".into(), caller.clone().into());
        vars.insert("dialed".into(), dialed.clone().into());
        vars.insert("call_id".into(), call_id.clone().into());
        vars.insert("trunk".into(), trunk.clone().into());
        let mut call = Call {
            origin: Origin::new(ctx.config.media_address()),
            run: Run::new(set, flow, vars),
            ctx,
            dialog,
            events,
            media,
            symmetric,
            peer_ip: source.ip(),
            negotiated: None,
            playlist: Playlist::default(),
            timers: Timers::default(),
            flow_timer: 0,
            feedback: mpsc::unbounded_channel(),
            hang_up: false,
            call_id,
            caller,
            recording: None,
            leg: None,
            queued: None,
            to_acd: Vec::new(),
            booked: Vec::new(),
            queue_name: None,
            queue_priority: 0,
            queue_skills: Vec::new(),
            marks: Marks::default(),
            conversation: None,
            recordings_closing: Vec::new(),
            agent_keys: String::new(),
            history: Vec::new(),
            history_rx: None,
            pending_offer: None,
            waiting: None,
            kill,
            open_record: None,
            callback: None,
            booking: mpsc::unbounded_channel(),
        };
        // An unusable offer is refused before any ringing.
        let offered = match offer {
            Some(body) => match sdp::parse(&body).and_then(|o| sdp::negotiate(&o)) {
                Ok(n) => Some(n),
                Err(e) => {
                    warn!(error = %e, "offer refused");
                    call.dialog.respond(488);
                    cdr.outcome = StoreOutcome::Refused;
                    return Ending::Refused;
                }
            },
            None => None,
        };
        cdr.flow = Some(call.run.flow_name().to_owned());
        if let Some(end) = call.ring().await {
            cdr.outcome = StoreOutcome::Cancelled;
            return end;
        }
        call.marks.answered_at = Some(jiff::Timestamp::now());
        let mut open = cdr.clone();
        open.answered_at = call.marks.answered_at;
        call.open_record = Some((record.clone(), open));
        call.checkpoint();
        // The record is committed before the answer goes out (one group
        // commit, a few ms), so a crash from now on leaves it behind; a
        // store that cannot keep up does not hold the caller longer.
        call.ctx.store.flush(OPEN_RECORD_WAIT).await;
        match offered {
            Some(n) => {
                call.negotiated = Some(n);
                let answer = sdp::answer(&mut call.origin, call.media.local_port(), &n);
                call.dialog.answer(answer);
                info!(codec = n.codec.name(), remote = %n.remote, flow = call.run.flow_name(), version = call.run.version(), "answered");
                // The first prompt is queued before the stream starts, so
                // the caller's first packet is its first frame even when
                // the media clock ticks in between (it sends nothing
                // without a stream, and the prompt waits).
                call.feed(Event::Start);
                call.apply(n);
            }
            None => {
                // Late offer (RFC 3261 §13.2.1): we offer in the 200, they answer in the ACK.
                let offer = sdp::offer(&mut call.origin, call.media.local_port());
                call.dialog.answer(offer);
                info!("answered with an offer; waiting for the answer in ACK");
            }
        }
        // Read while the IVR runs, so it is there when an agent is offered.
        call.look_up_history();
        let end = call.run().await;
        call.leave_acd();
        call.flush_out().await;
        call.close_recordings().await;
        call.fill_cdr(cdr);
        end
    }

    /// Writes what is known of the call so far into its open record, so a
    /// crash leaves its last state (closed as `interrupted` at restart).
    fn checkpoint(&self) {
        let Some((key, base)) = &self.open_record else {
            return;
        };
        let cdr = self
            .marks
            .checkpoint(base, self.run.node_name(), jiff::Timestamp::now());
        self.ctx.store.record(key, cdr, true);
    }

    /// A hold still going on ends with the bridge.
    fn count_hold(&mut self) {
        if let Some(since) = self.leg.as_mut().and_then(|l| l.held_since.take()) {
            self.marks.held += since.elapsed();
        }
    }

    /// What the call's record says of its IVR, queue and agent stages.
    fn fill_cdr(&mut self, cdr: &mut Cdr) {
        self.count_hold();
        let wrap_up = self
            .marks
            .queue
            .as_ref()
            .and_then(|q| self.ctx.config.queues.get(q))
            .map_or(std::time::Duration::ZERO, |q| q.wrap_up);
        self.marks.fill(cdr, &self.run, wrap_up);
    }

    /// Rings for the configured answer delay; `Some` if the caller gave up.
    async fn ring(&mut self) -> Option<Ending> {
        let delay = self.ctx.config.calls.answer_delay;
        if delay.is_zero() {
            return None;
        }
        self.dialog.respond(180);
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(DialogEvent::Cancelled) => return Some(Ending::Cancelled),
                    Some(DialogEvent::Bye) | None => return Some(Ending::CallerHungUp),
                    Some(_) => {}
                },
                _ = tokio::time::sleep_until(until) => return None,
            }
        }
    }

    async fn run(&mut self) -> Ending {
        let limit = self.ctx.config.calls.max_duration;
        self.timers
            .set(Timer::MaxDuration, std::time::Instant::now() + limit);
        let mut hangup_all = self.ctx.hangup_all.clone();
        loop {
            self.flush_out().await;
            if self.hang_up {
                return self.hang_up();
            }
            let next = [
                self.timers.next(),
                self.waiting.as_ref().and_then(|w| w.poll_timeout()),
            ];
            let deadline = next.into_iter().flatten().min().map(Instant::from_std);
            tokio::select! {
                ev = self.events.recv() => {
                    let Some(ev) = ev else { return Ending::WeHungUp };
                    if let Some(end) = self.on_dialog(ev) {
                        if end != Ending::WeHungUp {
                            self.feed(Event::Hangup);
                        }
                        self.keep_recording().await;
                        return end;
                    }
                }
                Some(ev) = self.media.events.recv() => self.on_media(ev),
                Some(ev) = self.feedback.1.recv() => self.feed(ev),
                ev = leg::next_of(self.leg.as_mut()) => self.on_leg(ev),
                Some(from) = from_acd(self.queued.as_mut(), self.waiting.as_ref().is_some_and(|w| w.wants_position())) => match from {
                    FromAcd::Offer(offer) => self.on_offer(offer),
                    FromAcd::Position(pos) => self.on_placed(pos),
                },
                history = recv_history(self.history_rx.as_mut()) => {
                    self.history = history.unwrap_or_default();
                    self.history_rx = None;
                    self.timers.stop(Timer::ScreenPop);
                    // Out of the queue meanwhile (its ACD entry is gone too): dropped.
                    if let Some(offer) = self.pending_offer.take().filter(|_| self.queued.is_some()) {
                        self.on_offer(offer);
                    }
                }
                Some(booked) = self.booking.1.recv() => self.on_booked(booked),
                Some(()) = self.kill.recv() => {
                    info!("hung up by the operations API");
                    return self.hang_up();
                }
                changed = hangup_all.changed() => {
                    if changed.is_err() || *hangup_all.borrow() {
                        info!("engine shutting down");
                        return self.hang_up();
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    let now = std::time::Instant::now();
                    while let Some(timer) = self.timers.expired(now) {
                        if timer == Timer::MaxDuration {
                            info!(?limit, "call reached its maximum duration");
                            return self.hang_up();
                        }
                        self.on_timer(timer);
                    }
                    self.on_waiting_timeout(now);
                }
            }
        }
    }

    /// A deadline passed.
    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::MaxDuration => {}
            Timer::Flow => self.feed(Event::Timer(self.flow_timer)),
            Timer::ScreenPop => {
                warn!("the caller's history did not come in time for the screen pop");
                self.history_rx = None;
                // Out of the queue meanwhile (its ACD entry is gone too): dropped.
                if let Some(offer) = self.pending_offer.take().filter(|_| self.queued.is_some()) {
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

    /// Sends BYE. The SIP core carries the BYE transaction to its end on
    /// its own, so the call's media is freed now, not when the BYE is answered.
    fn hang_up(&mut self) -> Ending {
        self.dialog.hangup();
        Ending::WeHungUp
    }

    fn apply(&mut self, n: Negotiated) {
        self.media
            .configure(stream_of(&n, self.symmetric, Some(self.peer_ip)));
        self.negotiated = Some(n);
    }

    fn on_dialog(&mut self, ev: DialogEvent) -> Option<Ending> {
        match ev {
            DialogEvent::Ack { sdp: Some(body) } if self.negotiated.is_none() => {
                match sdp::parse(&body).and_then(|a| sdp::accept_answer(&a)) {
                    Ok(n) => {
                        self.apply(n);
                        info!(codec = n.codec.name(), remote = %n.remote, flow = self.run.flow_name(), "answer received in ACK");
                        self.feed(Event::Start);
                    }
                    Err(e) => {
                        warn!(error = %e, "unusable answer in ACK; hanging up");
                        return Some(self.hang_up());
                    }
                }
                None
            }
            DialogEvent::Ack { .. } => {
                if self.negotiated.is_none() {
                    warn!("ACK carried no answer to our offer; hanging up");
                    return Some(self.hang_up());
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
                self.dialog.notify_refer(403);
                None
            }
            DialogEvent::Bye => Some(Ending::CallerHungUp),
            DialogEvent::Cancelled => Some(Ending::Cancelled),
            DialogEvent::NoAck => Some(Ending::NoAck),
            DialogEvent::Ended => Some(Ending::WeHungUp),
            // Only for calls we place, or answers to checks we do not send
            // on the caller's dialog.
            DialogEvent::Ringing
            | DialogEvent::Answered { .. }
            | DialogEvent::Rejected { .. }
            | DialogEvent::Alive
            | DialogEvent::Lost => None,
        }
    }

    fn on_reinvite(&mut self, body: Option<Vec<u8>>) {
        let port = self.media.local_port();
        let Some(body) = body else {
            // A re-INVITE without SDP asks for a fresh offer; we keep it simple
            // and offer what we offered first time.
            let offer = sdp::offer(&mut self.origin, port);
            self.dialog.answer(offer);
            return;
        };
        match sdp::parse(&body).and_then(|o| sdp::negotiate(&o)) {
            Ok(n) => {
                info!(direction = ?n.direction, remote = %n.remote, "re-INVITE");
                self.apply(n);
                let answer = sdp::answer(&mut self.origin, port, &n);
                self.dialog.answer(answer);
            }
            Err(e) => {
                warn!(error = %e, "re-INVITE refused; the call goes on as before");
                self.dialog.respond(488);
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
                let (ctx, tx) = (self.ctx.clone(), self.feedback.0.clone());
                let (call_id, caller) = (self.call_id.clone(), self.caller.clone());
                let flow = self.run.flow_name().to_owned();
                tokio::spawn(
                    async move {
                        let token = active.flow_token;
                        let result =
                            recording::save(&ctx, active, samples, &call_id, &caller, &flow).await;
                        let _ = tx.send(Event::Recorded(token, result));
                    }
                    .in_current_span(),
                );
            }
            MediaEvent::Conversation {
                token,
                samples,
                last,
            } => {
                let Some(c) = self.conversation.as_ref().filter(|c| c.token == token) else {
                    return;
                };
                c.feed(samples);
                if last {
                    if let Some(c) = self.conversation.take() {
                        self.recordings_closing.push(tokio::spawn(c.finish()));
                    }
                }
            }
            MediaEvent::PlaybackDone { token } => {
                match self
                    .playlist
                    .on_done(token, &mut self.media, &self.ctx.prompts)
                {
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

    /// Places the call to the transfer target; the caller hears hold music
    /// while it rings.
    fn transfer(&mut self, purpose: leg::Purpose, target: String, uri: String) {
        self.marks.ivr_exit_at.get_or_insert(jiff::Timestamp::now());
        let media = match self.ctx.media.open_beside(&self.media) {
            Ok(m) => m,
            Err(e) => {
                match purpose {
                    leg::Purpose::Transfer { token } => {
                        self.feedback_now(Event::Transferred(token, Err(e.to_string())))
                    }
                    _ => self.referral_failed(e.to_string()),
                }
                return;
            }
        };
        let mut origin = Origin::new(self.ctx.config.media_address());
        let offer = sdp::offer(&mut origin, media.local_port());
        let call = OutboundCall {
            target: uri.clone(),
            from_user: self.caller.clone(),
            from_display: None,
            sdp: offer,
            via: None,
            headers: Vec::new(),
            auth: None,
        };
        info!(%target, %uri, "transferring");
        let q = crate::config::QueueConfig::default();
        self.playlist
            .start_then_loop(Vec::new(), q.music, &mut self.media, &self.ctx.prompts);
        let mut leg = leg::Leg::new(purpose, target, media, origin, leg::RING_TIMEOUT);
        leg.dial(&self.ctx.dialer, call, None);
        self.leg = Some(leg);
    }

    /// An event to feed once the current one is done.
    fn feedback_now(&self, ev: Event) {
        let _ = self.feedback.0.send(ev);
    }

    fn on_leg(&mut self, ev: leg::LegEvent) {
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        match ev {
            leg::LegEvent::Dialog(DialogEvent::Ringing) => {
                info!(target = %leg.target, "ringing")
            }
            leg::LegEvent::Answered { agent, sdp: answer } => {
                let negotiated = match answer {
                    Some(body) => sdp::parse(&body)
                        .and_then(|a| sdp::accept_answer(&a))
                        .map_err(|e| e.to_string()),
                    None => Err("no SDP in the 2xx".to_owned()),
                };
                match negotiated {
                    Ok(n) => {
                        leg.media.configure(stream_of(&n, true, leg.peer));
                        leg.deadline = None;
                        leg.bridged = true;
                        self.marks.bridged_at = Some(jiff::Timestamp::now());
                        let calls = &self.ctx.config.calls;
                        leg.start_checks(calls.leg_check, calls.leg_check_timeout);
                        self.waiting = None;
                        self.playlist.stop(&self.media);
                        self.media.bridge(&leg.media);
                        info!(target = %leg.target, answered = ?leg.answered_target(), ?agent, codec = n.codec.name(), "answered; caller bridged");
                        match leg.purpose.clone() {
                            leg::Purpose::Transfer { token } => {
                                self.feed(Event::Transferred(token, Ok(())))
                            }
                            leg::Purpose::Referred | leg::Purpose::Callback => {}
                            leg::Purpose::Agents => {
                                self.marks.agent = agent.clone();
                                self.ctx.publish(BusEvent::CallAnswered {
                                    call_id: self.call_id.clone(),
                                    agent: agent.clone(),
                                    target: leg.answered_target().unwrap_or_default().to_owned(),
                                });
                                self.tell_acd(AcdInput::Answered {
                                    call: self.call_id.clone(),
                                    agent: agent.unwrap_or_default(),
                                });
                                if self.record_mode() == Record::Always {
                                    self.start_recording();
                                }
                                self.checkpoint();
                            }
                        }
                    }
                    Err(e) => self.fail_leg(format!("unusable answer: {e}")),
                }
            }
            leg::LegEvent::Rejected(status) => self.fail_leg(format!("answered {status}")),
            leg::LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended) => {
                if leg.bridged {
                    info!(target = %leg.target, "the other side hung up");
                    self.end_bridge();
                } else {
                    self.fail_leg("the call ended before it was answered".into());
                }
            }
            leg::LegEvent::Dialog(DialogEvent::ReInvite { sdp: body }) => {
                self.on_leg_reinvite(body)
            }
            leg::LegEvent::Dialog(DialogEvent::Refer { refer_to }) => self.on_refer(refer_to),
            leg::LegEvent::Dialog(DialogEvent::Info { content_type, body }) => {
                if let Some(d) = dtmf::parse_info(&content_type, &body) {
                    self.on_leg_digit(d);
                }
            }
            leg::LegEvent::Dialog(_) => {}
            leg::LegEvent::Media(MediaEvent::Digit(d, _)) => self.on_leg_digit(d),
            leg::LegEvent::Media(_) => {}
            leg::LegEvent::Failed(e) => self.fail_leg(e),
            leg::LegEvent::NoAnswer => self.fail_leg("no answer".into()),
            leg::LegEvent::Gone => {
                warn!(target = %leg.target, "the other leg stopped answering (no BYE came); ending the call");
                if leg.bridged {
                    self.end_bridge();
                } else {
                    self.fail_leg("gone".into());
                }
            }
        }
    }

    /// The config of the queue the caller is (or was last) in.
    fn queue_config(&self) -> Option<&crate::config::QueueConfig> {
        self.ctx.config.queues.get(self.queue_name.as_ref()?)
    }

    /// Whether this call's queue records its conversations.
    fn record_mode(&self) -> Record {
        self.queue_config().map_or(Record::Off, |q| q.record)
    }

    /// A key the agent (or transfer target) pressed. It reaches the caller
    /// as sent, except the record feature code of an `on-demand` queue,
    /// which is held back while it may be that code.
    fn on_leg_digit(&mut self, d: Digit) {
        let code = &self.ctx.config.feature_codes.record;
        let agent_on_call = self
            .leg
            .as_ref()
            .is_some_and(|l| l.bridged && l.purpose == leg::Purpose::Agents);
        if !agent_on_call || code.is_empty() || self.record_mode() != Record::OnDemand {
            self.media.send_digit(d);
            return;
        }
        self.agent_keys.push(d.as_char());
        if *code == self.agent_keys {
            self.agent_keys.clear();
            self.timers.stop(Timer::AgentKeys);
            if self.conversation.is_some() {
                info!("the agent stopped the recording");
                self.media.stop_conversation();
            } else {
                info!("the agent started the recording");
                self.start_recording();
            }
        } else if code.starts_with(&self.agent_keys) {
            self.timers.set(
                Timer::AgentKeys,
                std::time::Instant::now() + std::time::Duration::from_millis(1500),
            );
        } else {
            self.flush_agent_keys();
        }
    }

    /// Keys held back that were not the feature code go on to the caller.
    fn flush_agent_keys(&mut self) {
        self.timers.stop(Timer::AgentKeys);
        for c in std::mem::take(&mut self.agent_keys).chars() {
            if let Some(d) = Digit::from_char(c) {
                self.media.send_digit(d);
            }
        }
    }

    /// Records the conversation from now on (caller left, agent right).
    fn start_recording(&mut self) {
        let n = self.recordings_closing.len() + 1;
        let path = conversation::path_for(&self.ctx.config.data_dir, &self.call_id, n);
        info!(path = %path.display(), "recording the conversation");
        self.conversation = Some(conversation::start(&mut self.media, path));
    }

    /// Stops a recording still going and waits (bounded) until every file
    /// is written, so the record can name them.
    async fn close_recordings(&mut self) {
        if let Some(c) = self.conversation.take() {
            self.media.stop_conversation();
            let until = Instant::now() + std::time::Duration::from_secs(2);
            loop {
                tokio::select! {
                    ev = self.media.events.recv() => match ev {
                        Some(MediaEvent::Conversation { token, samples, last }) if token == c.token => {
                            c.feed(samples);
                            if last {
                                break;
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = tokio::time::sleep_until(until) => {
                        warn!("the end of the recording did not come back from the media layer");
                        break;
                    }
                }
            }
            self.recordings_closing.push(tokio::spawn(c.finish()));
        }
        for h in std::mem::take(&mut self.recordings_closing) {
            match tokio::time::timeout(std::time::Duration::from_secs(10), h).await {
                Ok(Ok(Ok((path, duration)))) => {
                    info!(%path, ?duration, "conversation recorded");
                    self.marks.recordings.push(path);
                }
                Ok(Ok(Err(e))) => warn!(error = %e, "conversation recording lost"),
                Ok(Err(e)) => warn!(error = %e, "conversation recording lost"),
                Err(_) => warn!("conversation recording not finished within 10 s"),
            }
        }
    }

    /// The music the caller hears while waiting on this call: its queue's,
    /// or the default class.
    fn music(&self) -> String {
        self.queue_config().map_or_else(
            || crate::config::QueueConfig::default().music,
            |q| q.music.clone(),
        )
    }

    /// The agent (or transfer target) sent a re-INVITE. It is answered;
    /// when it holds the call (sendonly, inactive) the caller hears hold
    /// music until it resumes, and the time counts as hold in the record.
    fn on_leg_reinvite(&mut self, body: Option<Vec<u8>>) {
        let music = self.music();
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        if leg.dialog().is_none() {
            return;
        }
        let port = leg.media.local_port();
        let Some(body) = body else {
            // It asks for our offer; the answer comes in its ACK, and the
            // stream stays as it was.
            let offer = sdp::offer(&mut leg.origin, port);
            if let Some(d) = leg.dialog() {
                d.answer(offer);
            }
            return;
        };
        let parsed = sdp::parse(&body).and_then(|o| {
            let holds = !o.effective_direction().receives();
            sdp::negotiate(&o).map(|n| (n, holds))
        });
        let (n, holds) = match parsed {
            Ok(x) => x,
            Err(e) => {
                warn!(target = %leg.target, error = %e, "re-INVITE from the other leg refused; the call goes on as before");
                if let Some(d) = leg.dialog() {
                    d.respond(488);
                }
                return;
            }
        };
        leg.media.configure(stream_of(&n, true, leg.peer));
        let answer = sdp::answer(&mut leg.origin, port, &n);
        if let Some(d) = leg.dialog() {
            d.answer(answer);
        }
        if !leg.bridged {
            return;
        }
        match (holds, leg.held_since) {
            (true, None) => {
                info!(target = %leg.target, "the caller is on hold");
                leg.held_since = Some(Instant::now());
                self.media.unbridge();
                leg.media.unbridge();
                self.playlist.start_then_loop(
                    Vec::new(),
                    music,
                    &mut self.media,
                    &self.ctx.prompts,
                );
            }
            (false, Some(since)) => {
                info!(target = %leg.target, "the caller is off hold");
                leg.held_since = None;
                self.marks.held += since.elapsed();
                self.playlist.stop(&self.media);
                self.media.bridge(&leg.media);
            }
            _ => {}
        }
    }

    /// The bridged leg ended: the agent (if it was one) is freed into
    /// wrap-up and the caller is hung up.
    fn end_bridge(&mut self) {
        self.count_hold();
        let from_agent = self.leg.as_ref().map(|l| &l.purpose) == Some(&leg::Purpose::Agents);
        if from_agent {
            self.tell_acd(AcdInput::Ended {
                call: self.call_id.clone(),
            });
            self.queued = None;
        }
        self.leg = None;
        let survey = self.queue_config().and_then(|q| q.survey.clone());
        if let Some(flow) = survey.filter(|_| from_agent) {
            if self.start_survey(&flow) {
                return;
            }
        }
        self.hang_up = true;
    }

    /// The agent hung up: the caller goes on to the queue's survey flow,
    /// with what the IVR learned and the agent's id (`agent`). The call
    /// stays the agent's in its record.
    fn start_survey(&mut self, name: &str) -> bool {
        let set = self.run.flow_set().clone();
        let Some(flow) = set.flow(name) else {
            warn!(flow = %name, "the queue's survey flow does not exist; hanging up");
            return false;
        };
        info!(flow = %name, "the agent hung up; the caller goes on to the survey");
        self.media.unbridge();
        self.playlist.stop(&self.media);
        self.timers.stop(Timer::Flow);
        self.marks.before_survey = Some((
            self.run.flow_name().to_owned(),
            self.run.node_name().to_owned(),
        ));
        let mut vars = self.run.vars().clone();
        if let Some(agent) = &self.marks.agent {
            vars.insert("agent".into(), agent.clone().into());
        }
        self.run = Run::new(set, flow, vars);
        self.feed(Event::Start);
        true
    }

    /// The second leg did not come up: it is dropped (CANCEL or BYE). A
    /// transfer takes the flow's error path; an agent's miss goes back to
    /// the ACD, and the caller keeps their place and their music.
    fn fail_leg(&mut self, why: String) {
        let Some(leg) = self.leg.take() else {
            return;
        };
        match leg.purpose {
            leg::Purpose::Transfer { token } => {
                warn!(target = %leg.target, error = %why, "transfer failed");
                self.playlist.stop(&self.media);
                self.media.unbridge();
                self.feed(Event::Transferred(token, Err(why)));
            }
            leg::Purpose::Agents => {
                warn!(agents = %leg.target, error = %why, "agent did not take the call");
                self.tell_acd(AcdInput::NoAnswer {
                    call: self.call_id.clone(),
                });
            }
            leg::Purpose::Referred => self.referral_failed(why),
            // Placed by the callback service, never by a caller's call.
            leg::Purpose::Callback => {}
        }
    }

    /// The ACD offers the caller to agents: ring every phone they
    /// registered, where it registered from; the caller keeps hearing the
    /// queue's music. The first phone to answer is bridged.
    fn on_offer(&mut self, offer: ToCall) {
        if matches!(offer, ToCall::Offer { .. }) && self.history_rx.is_some() {
            // The screen pop should show the caller's history: wait for it
            // a moment (it is one indexed query).
            self.timers.set(
                Timer::ScreenPop,
                std::time::Instant::now() + std::time::Duration::from_millis(500),
            );
            self.pending_offer = Some(offer);
            return;
        }
        let (agents, ring_timeout) = match offer {
            ToCall::Offer {
                agents,
                ring_timeout,
            } => (agents, ring_timeout),
            ToCall::Away(why) => return self.queue_away(why),
        };
        let no_answer = |call: &mut Call| {
            let id = call.call_id.clone();
            call.tell_acd(AcdInput::NoAnswer { call: id })
        };
        if self.leg.is_some() || agents.iter().all(|a| a.contacts.is_empty()) {
            return no_answer(self);
        }
        // An agent is free: better than a callback. The offer is dropped
        // (a request being written is cancelled when the write is done).
        if self.callback.take().is_some() {
            info!("an agent is free; the callback offer is dropped");
            if let Some(w) = self.waiting.as_mut() {
                w.no_offer();
            }
        }
        let media = match self.ctx.media.open_beside(&self.media) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "no media for the agent leg");
                return no_answer(self);
            }
        };
        let mut origin = Origin::new(self.ctx.config.media_address());
        let offer = sdp::offer(&mut origin, media.local_port());
        let headers = self.screen_pop_headers();
        let names: Vec<&str> = agents.iter().map(|a| a.agent.as_str()).collect();
        let wait_ms = self.marks.queued_at.map_or(0, |q| {
            jiff::Timestamp::now().duration_since(q).as_millis().max(0) as u64
        });
        info!(agents = ?names, vars = ?self.run.vars(), previous_calls = self.history.len(), wait_ms, "screen pop");
        let pop = BusEvent::AgentOffered {
            call_id: self.call_id.clone(),
            agents: names.iter().map(|n| n.to_string()).collect(),
            caller: self.caller.clone(),
            queue: self.queue_name.clone().unwrap_or_default(),
            wait_ms,
            vars: serde_json::to_value(self.run.vars()).unwrap_or_default(),
            history: self.history.clone(),
        };
        if let Some(url) = self.queue_config().and_then(|q| q.screen_pop_url.clone()) {
            notify::post(
                &self.ctx.http,
                &url,
                "screen pop",
                serde_json::to_value(&pop).unwrap_or_default(),
            );
        }
        self.ctx.publish(pop);
        let mut leg = leg::Leg::new(
            leg::Purpose::Agents,
            names.join(","),
            media,
            origin,
            ring_timeout,
        );
        for a in &agents {
            for contact in &a.contacts {
                info!(agent = %a.agent, name = ?a.name, contact = %contact.uri, via = %contact.source, "ringing the agent");
                let call = OutboundCall {
                    target: contact.uri.clone(),
                    from_user: self.caller.clone(),
                    // The agent's phone shows who is calling.
                    from_display: Some(self.caller.clone()),
                    sdp: offer.clone(),
                    via: Some(contact.source),
                    headers: headers.clone(),
                    auth: None,
                };
                leg.dial(&self.ctx.dialer, call, Some(a.agent.clone()));
            }
        }
        self.marks.offered_at.get_or_insert(jiff::Timestamp::now());
        if let [only] = agents.as_slice() {
            self.marks.agent = Some(only.agent.clone());
        }
        self.leg = Some(leg);
    }

    /// Puts the caller in `queue`: the ACD learns of them, they hear the
    /// greeting (and where they stand), then the music.
    fn enqueue(&mut self, queue: String, priority: i64, skills: Vec<String>) {
        info!(%queue, priority, ?skills, "caller queued");
        self.ctx.publish(BusEvent::QueueJoined {
            call_id: self.call_id.clone(),
            queue: queue.clone(),
            priority,
        });
        self.queue_priority = priority;
        self.queue_skills = skills.clone();
        let now = jiff::Timestamp::now();
        // The ACD keeps the time; only a node with somewhere to go after
        // it has a maximum wait.
        let max_wait = self
            .ctx
            .config
            .queues
            .get(&queue)
            .map(|q| q.max_wait)
            .filter(|w| !w.is_zero() && self.run.leaves_queue_on_timeout());
        self.marks.queue = Some(queue.clone());
        self.marks.queued_at = Some(now);
        self.marks.ivr_exit_at.get_or_insert(now);
        self.checkpoint();
        let (link, waiter) = crate::acd::actor::link();
        self.to_acd.push(AcdRequest::Join(
            AcdInput::Join {
                call: self.call_id.clone(),
                queue: queue.clone(),
                priority,
                skills,
                caller: self.caller.clone(),
                max_wait,
            },
            link,
        ));
        self.queued = Some(waiter);
        let q = self
            .ctx
            .config
            .queues
            .get(&queue)
            .cloned()
            .unwrap_or_default();
        self.queue_name = Some(queue);
        let (waiting, first) = Waiting::join(q, std::time::Instant::now());
        self.waiting = Some(Box::new(waiting));
        if let Some(say) = first {
            self.say(say);
        }
    }

    /// The agent transfers the caller (blind, REFER) to a queue or to a
    /// target under `transfers:`, named by the Refer-To URI's user part.
    /// Anything else is refused: a phone must never make Hotline dial where
    /// the config does not allow (toll fraud).
    fn on_refer(&mut self, refer_to: String) {
        let Some(leg) = self.leg.as_ref().filter(|l| l.bridged) else {
            return;
        };
        let target = crate::sip::header::SipUri::parse(&refer_to)
            .and_then(|u| u.user)
            .unwrap_or_default();
        let to_queue = self.ctx.config.queues.contains_key(&target);
        let to_uri = self.ctx.config.transfers.get(&target).cloned();
        if !to_queue && to_uri.is_none() {
            warn!(%refer_to, "REFER to neither a queue nor a configured transfer target; refused");
            if let Some(d) = leg.dialog() {
                d.notify_refer(403);
            }
            return;
        }
        info!(%target, agent = ?self.marks.agent, "blind transfer by the agent");
        if let Some(d) = leg.dialog() {
            d.notify_refer(200);
        }
        let from_agent = leg.purpose == leg::Purpose::Agents;
        self.count_hold();
        self.media.unbridge();
        // Dropping the leg hangs it up (the NOTIFY goes first).
        self.leg = None;
        if from_agent {
            self.tell_acd(AcdInput::Ended {
                call: self.call_id.clone(),
            });
            self.queued = None;
        }
        match to_uri {
            Some(uri) => self.transfer(leg::Purpose::Referred, target, uri),
            None => self.enqueue(target, self.queue_priority, Vec::new()),
        }
    }

    /// A transfer the agent asked for did not come up: rather than leave
    /// the caller alone, they go back to the queue they came from.
    fn referral_failed(&mut self, why: String) {
        self.playlist.stop(&self.media);
        self.media.unbridge();
        match self.queue_name.clone() {
            Some(queue) => {
                warn!(error = %why, %queue, "the agent's transfer failed; the caller goes back to the queue");
                self.enqueue(queue, self.queue_priority, Vec::new());
            }
            None => {
                warn!(error = %why, "the agent's transfer failed; hanging up");
                self.hang_up = true;
            }
        }
    }

    /// Looks up the caller's earlier calls (for the screen pop) while they
    /// wait; an answer that comes too late is simply not shown.
    fn look_up_history(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (store, caller) = (self.ctx.store.clone(), self.caller.clone());
        tokio::spawn(
            async move {
                let past = match store.cdrs_of_caller(&caller, 5).await {
                    Ok(cdrs) => cdrs
                        .into_iter()
                        .map(|c| PastCall {
                            arrived_at: c.arrived_at,
                            queue: c.queue,
                            agent: c.agent,
                            outcome: c.outcome.to_string(),
                        })
                        .collect(),
                    Err(e) => {
                        warn!(error = %e, "the caller's history could not be read");
                        Vec::new()
                    }
                };
                let _ = tx.send(past);
            }
            .in_current_span(),
        );
        self.history_rx = Some(rx);
    }

    /// The screen pop: what the IVR learned travels with the INVITE (and
    /// to the log), so the caller never repeats themselves.
    fn screen_pop_headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            ("X-Hotline-Call-ID".to_owned(), self.call_id.clone()),
            (
                "X-Hotline-Queue".to_owned(),
                self.queue_name.clone().unwrap_or_default(),
            ),
        ];
        for (k, v) in self.run.vars() {
            if !matches!(k.as_str(), "call_id") {
                let name: String = k.chars().map(|c| if c == '_' { '-' } else { c }).collect();
                headers.push((format!("X-Hotline-Var-{name}"), flow::expr::render_value(v)));
            }
        }
        // The caller's history: how many earlier calls, and the last one.
        headers.push((
            "X-Hotline-Previous-Calls".to_owned(),
            self.history.len().to_string(),
        ));
        if let Some(last) = self.history.first() {
            headers.push((
                "X-Hotline-Last-Call".to_owned(),
                format!(
                    "{}; queue={}; agent={}; outcome={}",
                    last.arrived_at.map(|t| t.to_string()).unwrap_or_default(),
                    last.queue.as_deref().unwrap_or("-"),
                    last.agent.as_deref().unwrap_or("-"),
                    last.outcome
                ),
            ));
        }
        let answer_after = self.queue_config().and_then(|q| q.answer_after);
        if let Some(after) = answer_after {
            // Phones that honour it answer by themselves (headset agents).
            headers.push((
                "Call-Info".to_owned(),
                format!(
                    "<sip:{}>;answer-after={}",
                    self.ctx.config.sip_address(),
                    after.as_secs()
                ),
            ));
        }
        headers
    }

    /// Queues an input for the ACD (sent, in order, after this event).
    fn tell_acd(&mut self, input: AcdInput) {
        self.to_acd.push(AcdRequest::Input(input));
    }

    /// Sends what the call told the ACD and the callback service, in
    /// order; waits while their inboxes are full (nothing is dropped).
    async fn flush_out(&mut self) {
        if !self.to_acd.is_empty() {
            self.ctx.acd.send_all(self.to_acd.drain(..)).await;
        }
        for (callback, replaces) in std::mem::take(&mut self.booked) {
            self.ctx.callbacks.booked(callback, replaces).await;
        }
    }

    /// The ACD placed the waiting caller: the greeting and where they stand.
    fn on_placed(&mut self, pos: Option<crate::acd::Position>) {
        let can_offer = self.can_offer_callback();
        let prompts = self.ctx.prompts.clone();
        let lengths = |p: &str| prompts.get(p).map(|p| p.duration());
        let now = std::time::Instant::now();
        if let Some(say) = self
            .waiting
            .as_mut()
            .and_then(|w| w.placed(pos.as_ref(), now, can_offer, &lengths))
        {
            self.say(say);
        }
    }

    /// What the waiting caller hears when its time comes.
    fn on_waiting_timeout(&mut self, now: std::time::Instant) {
        let due = self.waiting.as_ref().and_then(|w| w.poll_timeout());
        if due.is_none_or(|at| at > now) {
            return;
        }
        let pos = self
            .queued
            .as_ref()
            .and_then(|w| w.position.borrow().clone());
        let (busy, can_offer) = (self.playlist.busy(), self.can_offer_callback());
        let prompts = self.ctx.prompts.clone();
        let lengths = |p: &str| prompts.get(p).map(|p| p.duration());
        let said = match self.waiting.as_mut() {
            Some(w) => w.on_timeout(now, pos.as_ref(), busy, can_offer, &lengths),
            None => Vec::new(),
        };
        for say in said {
            self.say(say);
        }
    }

    /// Plays what the waiting machine says, then the queue's music.
    fn say(&mut self, say: Say) {
        match say {
            Say::Play(prompts) => {
                let music = self.music();
                self.playlist
                    .start_then_loop(prompts, music, &mut self.media, &self.ctx.prompts);
            }
            Say::OfferCallback(first) => self.offer_callback(first),
        }
    }

    /// Whether a callback may be offered to the waiting caller now.
    fn can_offer_callback(&self) -> bool {
        self.callback.is_none() && self.queued.is_some() && self.leg.is_none() && !self.hang_up
    }

    /// Out of the queue (nobody staffs it, it is full, or the caller
    /// waited its maximum): on by the node's `on-timeout`, or, without one,
    /// the call ends (the queue's config asked for callers to be turned away).
    fn queue_away(&mut self, why: crate::acd::Away) {
        info!(queue = ?self.queue_name, reason = %record::turned_away(why), "the caller leaves the queue");
        self.queued = None;
        self.waiting = None;
        self.marks.queue_left = Some(record::turned_away(why));
        if self.run.leaves_queue_on_timeout() {
            self.playlist.stop(&self.media);
            self.feed(Event::QueueTimeout);
        } else {
            warn!(queue = ?self.queue_name, reason = %record::turned_away(why), "the caller was turned away from the queue and its node has no on-timeout; hanging up");
            self.hang_up = true;
        }
    }

    /// The call is over: the ACD forgets it (and frees its agent).
    fn leave_acd(&mut self) {
        if self.queued.take().is_none() {
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

    fn on_digit(&mut self, d: Digit, source: DigitSource) {
        let method = match source {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::SipInfo => "sip-info",
            DigitSource::InBand => "in-band",
        };
        metrics::counter!("hotline_dtmf_digits_total", "method" => method).increment(1);
        if let Some(leg) = self.leg.as_ref().filter(|l| l.bridged) {
            // Bridged: the caller's keys go on to the target (RFC 4733).
            leg.media.send_digit(d);
            return;
        }
        info!(digit = %d, ?source, node = self.run.node_name(), "digit received");
        let waiting = self.queued.is_some() && self.leg.is_none();
        if let Some(c) = self
            .callback
            .as_mut()
            .filter(|c| waiting || c.node.is_some())
        {
            {
                let before = c.offer.engaged();
                let actions = c.offer.key(d.as_char());
                if c.offer.engaged() {
                    self.timers.set(
                        Timer::CallbackAnswer,
                        std::time::Instant::now() + OFFER_ANSWER_TIME,
                    );
                }
                let taken = before || !actions.is_empty();
                self.on_callback_actions(actions);
                if taken {
                    return;
                }
            }
        }
        self.feed(Event::Digit(d.as_char()));
    }

    /// Steps the flow and carries out what it asks, until nothing is left.
    fn feed(&mut self, event: Event) {
        let mut pending = vec![event];
        while let Some(ev) = pending.pop() {
            let actions = self.run.step(ev, jiff::Timestamp::now());
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
                self.ctx.publish(BusEvent::IvrNode {
                    call_id: self.call_id.clone(),
                    flow,
                    node,
                });
                None
            }
            Action::Play { token, prompts, .. } => {
                self.timers.stop(Timer::Flow);
                self.playlist
                    .start(token, prompts, &mut self.media, &self.ctx.prompts)
                    .map(Event::PlayDone)
            }
            Action::StopPlay => {
                self.playlist.stop(&self.media);
                None
            }
            Action::Timer { token, after } => {
                self.flow_timer = token;
                self.timers
                    .set(Timer::Flow, std::time::Instant::now() + after);
                None
            }
            Action::Webhook { token, request } => {
                let client = self.ctx.http.clone();
                let tx = self.feedback.0.clone();
                let span = tracing::Span::current();
                tokio::spawn(
                    async move {
                        let outcome = webhook::call(&client, &request).await;
                        let _ = tx.send(Event::Webhook(token, outcome));
                    }
                    .instrument(span),
                );
                None
            }
            Action::Record { token, max, kind } => {
                self.timers.stop(Timer::Flow);
                let media_token = self.media.record(max);
                info!(?kind, max = ?max, "recording");
                self.recording = Some(recording::Active {
                    flow_token: token,
                    media_token,
                    kind,
                    started: jiff::Timestamp::now(),
                });
                None
            }
            Action::StopRecord => {
                self.media.stop_recording();
                None
            }
            Action::SaveSurvey {
                token,
                question,
                score,
            } => {
                let answer = crate::store::SurveyAnswer {
                    created_at: jiff::Timestamp::now(),
                    call_id: self.call_id.clone(),
                    caller: self.caller.clone(),
                    flow: self.run.flow_name().to_owned(),
                    question,
                    score,
                };
                let (store, tx) = (self.ctx.store.clone(), self.feedback.0.clone());
                tokio::spawn(
                    async move {
                        let result = store.save_survey(answer).await;
                        match &result {
                            Ok(id) => info!(id, score, "survey answer stored"),
                            Err(e) => warn!(error = %e, "survey answer not stored"),
                        }
                        let result = result.map(|_| ()).map_err(|e| e.to_string());
                        let _ = tx.send(Event::Saved(token, result));
                    }
                    .in_current_span(),
                );
                None
            }
            Action::Enqueue {
                queue,
                priority,
                skills,
            } => {
                self.enqueue(queue, priority, skills);
                None
            }
            Action::Transfer { token, target, uri } => {
                self.transfer(leg::Purpose::Transfer { token }, target, uri);
                None
            }
            Action::OfferCallback { token, queue } => {
                self.callback_node(token, queue);
                None
            }
            Action::Hangup => {
                if let Some(Outcome::Failed { message }) = self.run.outcome() {
                    warn!(node = self.run.node_name(), error = %message, "the flow failed; hanging up");
                }
                self.hang_up = true;
                None
            }
            Action::Error { node, message } => {
                warn!(flow = self.run.flow_name(), %node, error = %message, "flow error; taking the error path");
                None
            }
        }
    }
}

impl Call {
    /// Offers the waiting caller a callback, after `first` (an announcement).
    fn offer_callback(&mut self, first: Vec<String>) {
        if self.callback.is_some() || self.queued.is_none() || self.leg.is_some() || self.hang_up {
            return;
        }
        let Some(cfg) = self.queue_config().and_then(|q| q.callback.clone()) else {
            return;
        };
        let Some(trunk) = self.ctx.config.trunks.iter().find(|t| t.name == cfg.trunk) else {
            return;
        };
        let key = cfg.key.chars().next().unwrap_or('1');
        let (offer, first_do) =
            crate::callback::offer::Offer::start(key, trunk.dial_plan.clone(), &self.caller);
        info!(%key, "callback offered");
        self.callback = Some(CallbackOffer { offer, node: None });
        let mut prompts = first;
        if let crate::callback::offer::Do::Say { prompts: p, .. } = first_do {
            prompts.extend(p);
        }
        self.say_then_music(prompts);
    }

    /// Plays `prompts`, then the queue's music again; their length.
    fn say_then_music(&mut self, prompts: Vec<String>) -> std::time::Duration {
        let length = prompts
            .iter()
            .filter_map(|p| self.ctx.prompts.get(p))
            .map(|p| p.duration())
            .sum();
        let music = self.music();
        self.playlist
            .start_then_loop(prompts, music, &mut self.media, &self.ctx.prompts);
        length
    }

    /// A flow's `callback` node: straight to the number (the flow asked).
    fn callback_node(&mut self, token: u64, queue: String) {
        let cfg = self
            .ctx
            .config
            .queues
            .get(&queue)
            .and_then(|q| q.callback.clone());
        let trunk = cfg
            .as_ref()
            .and_then(|c| self.ctx.config.trunks.iter().find(|t| t.name == c.trunk));
        let (Some(cfg), Some(trunk)) = (cfg, trunk) else {
            self.feedback_now(Event::CallbackBooked(
                token,
                Err(format!("the queue `{queue}` offers no callbacks")),
            ));
            return;
        };
        let key = cfg.key.chars().next().unwrap_or('1');
        let (mut offer, _) =
            crate::callback::offer::Offer::start(key, trunk.dial_plan.clone(), &self.caller);
        let actions = offer.key(key);
        info!(%queue, "callback node: asking for the number");
        self.callback = Some(CallbackOffer {
            offer,
            node: Some((token, queue)),
        });
        self.on_callback_actions(actions);
    }

    /// A flow's callback node ended without a booking: the flow goes on.
    fn callback_node_over(&mut self) {
        let closed = self.callback.as_ref().is_some_and(|c| {
            c.node.is_some() && *c.offer.step() == crate::callback::offer::Step::Closed
        });
        if !closed {
            return;
        }
        if let Some((token, _)) = self.callback.take().and_then(|c| c.node) {
            self.feedback_now(Event::CallbackBooked(
                token,
                Err("no number to call back was given".into()),
            ));
        }
    }

    fn on_callback_actions(&mut self, actions: Vec<crate::callback::offer::Do>) {
        use crate::callback::offer::Do;
        let in_flow = self.callback.as_ref().is_some_and(|c| c.node.is_some());
        let says = actions.iter().any(|a| matches!(a, Do::Say { .. }));
        for action in actions {
            match action {
                Do::Say { prompts, listen } if in_flow => {
                    let length: std::time::Duration = prompts
                        .iter()
                        .filter_map(|p| self.ctx.prompts.get(p))
                        .map(|p| p.duration())
                        .sum();
                    self.playlist.start(
                        QUESTION_TOKEN,
                        prompts,
                        &mut self.media,
                        &self.ctx.prompts,
                    );
                    self.listen_for_callback_answer(listen, length);
                }
                Do::SayAndHangUp(_) if in_flow => {
                    // The flow says what follows a booking.
                    if let Some((token, _)) = self.callback.take().and_then(|c| c.node) {
                        self.feedback_now(Event::CallbackBooked(token, Ok(())));
                    }
                }
                Do::Say { prompts, listen } => {
                    let length = self.say_then_music(prompts);
                    self.listen_for_callback_answer(listen, length);
                }
                Do::Book(number) => self.book_callback(number),
                Do::SayAndHangUp(prompts) => {
                    self.waiting = None;
                    if let Some(done) = self.playlist.start(
                        BOOKED_TOKEN,
                        prompts,
                        &mut self.media,
                        &self.ctx.prompts,
                    ) {
                        debug_assert_eq!(done, BOOKED_TOKEN);
                        self.hang_up = true;
                    }
                }
            }
        }
        // A flow's node that ended silently (no answer, not stored) goes on
        // now; one that said why goes on when that is said.
        if in_flow && !says {
            self.callback_node_over();
        }
    }

    /// Awaits the caller's answer to the callback offer until `length`
    /// (what is said now) and the answer time are over, if `listen`.
    fn listen_for_callback_answer(&mut self, listen: bool, length: std::time::Duration) {
        if listen && self.callback.is_some() {
            self.timers.set(
                Timer::CallbackAnswer,
                std::time::Instant::now() + length + OFFER_ANSWER_TIME,
            );
        } else {
            self.timers.stop(Timer::CallbackAnswer);
        }
    }

    /// Writes the request; "booked" plays only once it is stored.
    fn book_callback(&mut self, number: String) {
        let node_queue = self
            .callback
            .as_ref()
            .and_then(|c| c.node.as_ref())
            .map(|(_, q)| q.clone());
        let Some(queue) = node_queue.clone().or_else(|| self.queue_name.clone()) else {
            return;
        };
        self.timers.stop(Timer::CallbackAnswer);
        let now = jiff::Timestamp::now();
        // From a flow's node, the callback's place is from now.
        let (priority, skills, queued_at) = match node_queue {
            Some(_) => (0, Vec::new(), now),
            None => (
                self.queue_priority,
                self.queue_skills.clone(),
                self.marks.queued_at.unwrap_or(now),
            ),
        };
        let callback = Callback {
            id: 0,
            created_at: now,
            call_id: self.call_id.clone(),
            caller: self.caller.clone(),
            number,
            queue,
            priority,
            skills,
            queued_at,
            vars: serde_json::to_string(self.run.vars()).unwrap_or_else(|_| "{}".into()),
            state: crate::store::CallbackState::Pending,
            attempts: 0,
            next_attempt_at: None,
            ended_at: None,
            outcome: None,
        };
        let (store, tx) = (self.ctx.store.clone(), self.booking.0.clone());
        let (callbacks, call_id) = (self.ctx.callbacks.clone(), self.call_id.clone());
        tokio::spawn(
            async move {
                let result = store
                    .save_callback(callback.clone())
                    .await
                    .map(|id| Callback { id, ..callback });
                // The caller confirmed; if they hung up while it was being
                // written, the request stands all the same.
                if let Err(mpsc::error::SendError(Ok(booked))) = tx.send(result) {
                    info!(
                        callback = booked.id,
                        "the caller hung up as the callback was stored; it stands"
                    );
                    callbacks.booked(booked, Some(call_id)).await;
                }
            }
            .in_current_span(),
        );
    }

    fn on_booked(&mut self, booked: Result<Callback, StoreError>) {
        let callback = match booked {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "the callback request was not stored; the caller waits on the line");
                if let Some(c) = self.callback.as_mut() {
                    let actions = c.offer.stored(false);
                    self.on_callback_actions(actions);
                }
                return;
            }
        };
        let offered = self
            .callback
            .as_ref()
            .is_some_and(|c| matches!(c.offer.step(), crate::callback::offer::Step::Booking(_)));
        let from_node = self.callback.as_ref().is_some_and(|c| c.node.is_some());
        if offered && from_node {
            info!(callback = callback.id, number = %callback.number, queue = %callback.queue, "callback request stored");
            self.booked.push((callback, None));
            if let Some(c) = self.callback.as_mut() {
                let actions = c.offer.stored(true);
                self.on_callback_actions(actions);
            }
            return;
        }
        if !offered || self.queued.is_none() {
            // An agent took the caller meanwhile (or they left): the
            // request written is withdrawn.
            info!(
                callback = callback.id,
                "the caller was taken meanwhile; the callback request is cancelled"
            );
            let store = self.ctx.store.clone();
            tokio::spawn(async move {
                let _ = store
                    .finish_callback(
                        callback.id,
                        crate::store::CallbackState::Cancelled,
                        "answered-meanwhile",
                        jiff::Timestamp::now(),
                    )
                    .await;
            });
            return;
        }
        info!(callback = callback.id, number = %callback.number, "callback request stored");
        // The callback takes over the caller's place in the queue; the
        // call no longer listens for offers (one that comes frees its agent).
        self.queued = None;
        self.waiting = None;
        self.marks.queue_left = Some(StoreOutcome::Callback);
        self.booked.push((callback, Some(self.call_id.clone())));
        if let Some(c) = self.callback.as_mut() {
            let actions = c.offer.stored(true);
            self.on_callback_actions(actions);
        }
    }
}

impl Call {
    /// The caller hung up while recording: what they said is the message.
    /// Waits (bounded) for the media layer to hand it over, then saves it.
    async fn keep_recording(&mut self) {
        let Some(active) = self.recording.take() else {
            return;
        };
        self.media.stop_recording();
        let until = Instant::now() + std::time::Duration::from_secs(2);
        let samples = loop {
            tokio::select! {
                ev = self.media.events.recv() => match ev {
                    Some(MediaEvent::Recorded { token, samples }) if token == active.media_token => break samples,
                    Some(_) => {}
                    None => return,
                },
                _ = tokio::time::sleep_until(until) => {
                    warn!("the recording did not come back from the media layer; lost");
                    return;
                }
            }
        };
        let flow = self.run.flow_name().to_owned();
        if let Err(e) = recording::save(
            &self.ctx,
            active,
            samples,
            &self.call_id,
            &self.caller,
            &flow,
        )
        .await
        {
            warn!(error = %e, "message not saved");
        }
    }
}

/// What a waiting caller hears from the ACD.
enum FromAcd {
    Offer(ToCall),
    /// Where they stand (asked for only while an announcement waits).
    Position(Option<crate::acd::Position>),
}

async fn from_acd(w: Option<&mut Waiter>, position: bool) -> Option<FromAcd> {
    let Some(w) = w else {
        return std::future::pending().await;
    };
    tokio::select! {
        biased;
        offer = w.offers.recv() => offer.map(FromAcd::Offer),
        Ok(()) = w.position.changed(), if position => {
            Some(FromAcd::Position(w.position.borrow_and_update().clone()))
        }
    }
}

async fn recv_history(
    rx: Option<&mut tokio::sync::oneshot::Receiver<Vec<PastCall>>>,
) -> Option<Vec<PastCall>> {
    match rx {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

/// The shipped prompt that speaks a key: `digits/5`, `digits/star`.
pub fn prompt_for(key: char) -> String {
    flow::run::digit_prompt(key)
}
