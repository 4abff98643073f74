//! One task per call: it carries out what the call's state machine
//! ([`state::CallState`]) decides, and feeds it what happens on the
//! caller's dialog and media, the second leg, the ACD and the work done
//! for it elsewhere. One select over those inputs and one sleep until the
//! machine's next deadline; `carry.rs` carries out its outputs.

mod booking;
mod bridge;
mod carry;
mod conversation;
pub mod disposition;
mod feature;
mod io;
pub mod live;
mod notify;
pub mod pci;
mod queue;
mod record;
mod recording;
pub mod simulate;
#[cfg(feature = "local-audio")]
pub mod speaker;
pub mod state;
mod timers;
mod waiting;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use crate::acd::actor::{AcdHandle, Request as AcdRequest, Waiter};
use crate::config::Config;
use crate::events::{Event as BusEvent, PastCall};
use crate::flow::{self, Event, FlowSet};
use crate::leg::{self, LegEvent};
pub(crate) use crate::leg::{sleep_until_opt, stream_of};
use crate::media::{MediaChannel, MediaEngine, MediaEvent, PromptCache};
use crate::sdp;
use crate::sip::{Dialer, DialogEvent, DialogHandle, IncomingCall};
use crate::store::{Callback, Cdr, Outcome as StoreOutcome, RecordKey, StoreError, StoreHandle};
use state::{CallState, Input};

/// What every call task shares.
#[derive(Clone)]
pub struct CallContext {
    /// The config and flows of the version current when the call started,
    /// which it keeps to its end (a reload changes the next calls').
    pub config: Arc<Config>,
    pub prompts: Arc<PromptCache>,
    pub media: Arc<MediaEngine>,
    pub flows: Arc<FlowSet>,
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
    /// Agents' browser phones (their desktop pages).
    pub phones: crate::leg::browser::BrowserPhones,
}

impl CallContext {
    /// Tells the event bus (and the list of calls in progress).
    pub fn publish(&self, event: BusEvent) {
        self.calls.apply(&event);
        self.events.publish(event);
    }
}

pub use record::Ending;

/// Runs one call to its end.
pub async fn run(ctx: CallContext, mut call: IncomingCall) {
    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    // The id the call goes by: its Call-ID, unless another call in progress
    // has that one.
    call.call_id = ctx.calls.arrived(
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
            quality: Vec::new(),
        },
        &call.from_tag,
        kill_tx,
    );
    let span = tracing::info_span!(
        "call",
        call_id = %call.call_id,
        caller = %call.caller,
        dialed = %call.dialed,
    );
    async move {
        info!(trunk = %call.trunk, source = %call.source, "call arrived");
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
            None => Driver::setup(ctx, call, &mut cdr, kill_rx, record.clone()).await,
        };
        record::finish(&mut cdr, ending, jiff::Timestamp::now());
        let legs: Vec<live::LegQuality> = bus
            .calls
            .legs(&cdr.call_id)
            .iter()
            .map(live::LegHandle::now)
            .collect();
        record::quality(&mut cdr, &legs);
        crate::media::quality::observe(&legs);
        record::observe_unanswered(&cdr);
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

/// How long an answer waits for its call's record to be committed.
const OPEN_RECORD_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How a callback request's write went: the stored request, or why not.
type Booking = (
    mpsc::UnboundedSender<Result<Callback, StoreError>>,
    mpsc::UnboundedReceiver<Result<Callback, StoreError>>,
);

/// The call's I/O: what [`CallState`] is fed from and what it asks for is
/// carried out on.
struct Driver {
    ctx: CallContext,
    dialog: DialogHandle,
    events: mpsc::Receiver<DialogEvent>,
    media: MediaChannel,
    /// The record's key in the store.
    record: RecordKey,
    call_id: String,
    caller: String,
    /// The second leg, and media opened for one about to be placed.
    leg: Option<leg::Leg>,
    opening: Option<MediaChannel>,
    /// Offers and positions from the ACD while the caller is queued.
    waiter: Option<Waiter>,
    /// What the call tells the ACD, sent in order after each input.
    to_acd: Vec<AcdRequest>,
    /// Callbacks stored for the caller, for the callback service (with
    /// the queue entry each takes over), sent after each input.
    booked: Vec<(Callback, Option<String>)>,
    /// Results of work done for the flow in other tasks.
    feedback: (mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>),
    /// How a callback request's write went.
    booking: Booking,
    history: Option<tokio::sync::oneshot::Receiver<Vec<PastCall>>>,
    /// The operations API asks the call to end.
    kill: mpsc::UnboundedReceiver<live::Control>,
    /// Where to say how a pause or resume of the recording went.
    recording_reply: Option<tokio::sync::oneshot::Sender<pci::RecordingStatus>>,
    /// The conversation being recorded, and those stopped, still being written.
    conversation: Option<conversation::Conversation>,
    closing: Vec<tokio::task::JoinHandle<Result<(String, std::time::Duration), String>>>,
}

/// Rings for the configured answer delay; `Some` if the caller gave up.
async fn ring(
    config: &crate::config::Config,
    dialog: &DialogHandle,
    events: &mut mpsc::Receiver<DialogEvent>,
) -> Option<Ending> {
    let delay = config.calls.answer_delay;
    if delay.is_zero() {
        return None;
    }
    dialog.respond(180).await;
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(DialogEvent::Cancelled) => return Some(Ending::Cancelled),
                Some(DialogEvent::Bye) | None => return Some(Ending::CallerHungUp),
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(until) => return None,
        }
    }
}

impl Driver {
    async fn setup(
        ctx: CallContext,
        call: IncomingCall,
        cdr: &mut Cdr,
        kill: mpsc::UnboundedReceiver<live::Control>,
        record: RecordKey,
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
            secure,
            hidden,
            ..
        } = call;
        let set: Arc<FlowSet> = ctx.flows.clone();
        let Some(flow) = set.route(&dialed) else {
            warn!("no route for the dialled number and no default route");
            dialog.respond(404).await;
            cdr.outcome = StoreOutcome::Refused;
            return Ending::Refused;
        };
        // An unusable offer is refused before any ringing (so is one
        // whose encryption the trunk's rule cannot answer).
        let policy = trunk_policy(&ctx.config, &trunk, secure);
        let offered = match offer {
            Some(body) => {
                match sdp::parse(&body).and_then(|o| sdp::negotiate_with(&o, policy, None)) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        warn!(error = %e, "offer refused");
                        dialog.respond(488).await;
                        cdr.outcome = StoreOutcome::Refused;
                        return Ending::Refused;
                    }
                }
            }
            None => None,
        };
        cdr.flow = Some(set.flows[flow].name.clone());
        // Ringing holds no RTP port: a caller who gives up while it rings
        // (or a flood of INVITEs never answered) takes none.
        let mut events = events;
        if let Some(end) = ring(&ctx.config, &dialog, &mut events).await {
            cdr.outcome = StoreOutcome::Cancelled;
            return end;
        }
        // Media of the caller's family (dual stack): its SDP's address,
        // else where its SIP came from.
        let family = offered
            .as_ref()
            .map(|n| n.remote.ip())
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(source.ip());
        let media = match ctx.media.open_for(family).await {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "no media for the call");
                dialog.respond(503).await;
                cdr.outcome = StoreOutcome::Refused;
                return Ending::Refused;
            }
        };
        ctx.calls.add_leg(
            &call_id,
            live::LegHandle {
                leg: "caller",
                who: None,
                handle: media.quality(),
            },
        );
        let symmetric = ctx
            .config
            .trunks
            .iter()
            .find(|t| t.name == trunk)
            .is_none_or(|t| t.symmetric_rtp);
        let mut state = CallState::new(
            state::Setup {
                config: ctx.config.clone(),
                prompts: ctx.prompts.clone(),
                flows: set,
                flow,
                call_id: call_id.clone(),
                // What agents, the flow and the screen pop see: nothing of
                // a caller who withheld their identity. The record and the
                // history lookup keep the number (operator data).
                caller: if hidden {
                    "anonymous".to_owned()
                } else {
                    caller.clone()
                },
                dialed,
                trunk,
                peer_ip: source.ip(),
                symmetric,
                media_port: media.local_port(),
                media_address: ctx.config.media_address_for(media.local_ip()),
                secure,
            },
            std::time::Instant::now(),
            jiff::Timestamp::now(),
        );
        let mut d = Driver {
            ctx,
            dialog,
            events,
            media,
            record,
            call_id,
            caller,
            leg: None,
            opening: None,
            waiter: None,
            to_acd: Vec::new(),
            booked: Vec::new(),
            feedback: mpsc::unbounded_channel(),
            booking: mpsc::unbounded_channel(),
            history: None,
            kill,
            recording_reply: None,
            conversation: None,
            closing: Vec::new(),
        };
        state.answered(cdr, std::time::Instant::now());
        d.carry_out(&mut state).await;
        // The record is committed before the answer goes out (one group
        // commit, a few ms), so a crash from now on leaves it behind; a
        // store that cannot keep up does not hold the caller longer.
        d.ctx.store.flush(OPEN_RECORD_WAIT).await;
        state.answer(offered, std::time::Instant::now());
        // Read while the IVR runs, so it is there when an agent is offered.
        d.look_up_history();
        let end = d.run(&mut state).await;
        if let Some(active) = state.take_unsaved() {
            d.keep_recording(active, state.flow_name()).await;
        }
        state.finish(std::time::Instant::now());
        d.carry_out(&mut state).await;
        let recordings = d.close_recordings().await;
        state.fill(cdr, recordings, std::time::Instant::now());
        end
    }

    /// Feeds the call what happens until it ends.
    async fn run(&mut self, state: &mut CallState) -> Ending {
        let mut hangup_all = self.ctx.hangup_all.clone();
        loop {
            self.carry_out(state).await;
            if let Some(end) = state.ended() {
                return end;
            }
            let deadline = state.poll_timeout().map(Instant::from_std);
            let input = tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => Input::Dialog(ev),
                    None => return Ending::WeHungUp,
                },
                Some(ev) = self.media.events.recv() => match self.media_input(ev) {
                    Some(input) => input,
                    None => continue,
                },
                Some(ev) = self.feedback.1.recv() => Input::Flow(ev),
                ev = leg::next_of(self.leg.as_mut()) => self.leg_input(ev),
                Some(from) = from_acd(self.waiter.as_mut(), state.wants_position()) => from,
                history = recv_history(self.history.as_mut()) => {
                    self.history = None;
                    Input::History(history.unwrap_or_default())
                }
                Some(booked) = self.booking.1.recv() => Input::Booked(booked),
                Some(control) = self.kill.recv() => match control {
                    live::Control::HangUp => Input::Kill,
                    live::Control::Recording { pause, by, reply } => {
                        self.recording_reply = Some(reply);
                        Input::PauseRecording { pause, by }
                    }
                },
                changed = hangup_all.changed() => {
                    if changed.is_ok() && !*hangup_all.borrow() {
                        continue;
                    }
                    Input::Shutdown
                }
                _ = sleep_until_opt(deadline) => Input::Timeout {
                    position: self.waiter.as_ref().and_then(|w| w.position.borrow().clone()),
                },
            };
            state.handle(input, std::time::Instant::now());
            if let Some(reply) = self.recording_reply.take() {
                let _ = reply.send(state.recording_status());
            }
        }
    }

    /// The caller's media event for the machine; the conversation's audio
    /// goes to its file here.
    fn media_input(&mut self, ev: MediaEvent) -> Option<Input> {
        let MediaEvent::Conversation {
            token,
            samples,
            last,
        } = ev
        else {
            return Some(Input::Media(ev));
        };
        let c = self.conversation.as_ref().filter(|c| c.token == token)?;
        c.feed(samples);
        if last {
            if let Some(c) = self.conversation.take() {
                self.closing.push(tokio::spawn(c.finish()));
            }
        }
        None
    }

    /// The leg's event for the machine (an answer with where it came from).
    fn leg_input(&self, ev: LegEvent) -> Input {
        match ev {
            LegEvent::Answered { agent, sdp } => {
                let leg = self.leg.as_ref();
                if let Some(l) = leg {
                    let (kind, who) = match &agent {
                        Some(a) => ("agent", Some(a.clone())),
                        None => ("transfer", l.answered_target().map(str::to_owned)),
                    };
                    self.ctx.calls.add_leg(
                        &self.call_id,
                        live::LegHandle {
                            leg: kind,
                            who,
                            handle: l.media.quality(),
                        },
                    );
                }
                Input::LegAnswered {
                    agent,
                    sdp,
                    target: leg.and_then(|l| l.answered_target()).map(str::to_owned),
                    peer: leg.and_then(|l| l.peer),
                }
            }
            LegEvent::BrowserAnswered { agent, stream } => {
                // The browser's channel is the leg's now: its quality is
                // the agent leg's, as a phone's is.
                if let Some(l) = self.leg.as_ref() {
                    self.ctx.calls.add_leg(
                        &self.call_id,
                        live::LegHandle {
                            leg: "agent",
                            who: Some(agent.clone()),
                            handle: l.media.quality(),
                        },
                    );
                }
                Input::Leg(LegEvent::BrowserAnswered { agent, stream })
            }
            ev => Input::Leg(ev),
        }
    }
}

/// What a waiting caller hears from the ACD: an offer, or (asked for only
/// while an announcement waits for it) where they stand.
async fn from_acd(w: Option<&mut Waiter>, position: bool) -> Option<Input> {
    let Some(w) = w else {
        return std::future::pending().await;
    };
    tokio::select! {
        biased;
        offer = w.offers.recv() => offer.map(Input::Offer),
        Ok(()) = w.position.changed(), if position => {
            Some(Input::Placed(w.position.borrow_and_update().clone()))
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

/// The media encryption rule of calls over `trunk`; `secure`: over TLS.
pub(crate) fn trunk_policy(
    config: &crate::config::Config,
    trunk: &str,
    secure: bool,
) -> sdp::crypto::Policy {
    sdp::crypto::Policy::for_trunk(config, trunk, secure)
}

/// The media encryption rule towards `agent`'s phone; `tls`: over TLS.
pub(crate) fn agent_policy(
    config: &crate::config::Config,
    agent: &str,
    tls: bool,
) -> sdp::crypto::Policy {
    sdp::crypto::Policy::for_agent(config, agent, tls)
}
