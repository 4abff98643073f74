//! The call's second leg, as part of [`CallState`]: offers to agents (the
//! screen pop), transfers, the answer and the bridge, hold, the agent's
//! REFER and feature keys, and what happens when the leg fails or ends.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::state::{CallState, Do, LegDo, MediaDo};
use super::timers::Timer;
use crate::acd::actor::ToCall;
use crate::acd::Input as AcdInput;
use crate::config::{QueueConfig, Record};
use crate::events::Event as BusEvent;
use crate::flow::{self, Event, Failure, Run};
use crate::leg::{stream_of, LegEvent, Purpose};
use crate::media::{dtmf, Digit, MediaEvent, StreamConfig};
use crate::sdp;
use crate::sip::{DialogEvent, OutboundCall};

/// A second leg whose media is being opened.
pub(super) struct PendingLeg {
    pub purpose: Purpose,
    pub target: String,
    pub ring_timeout: Duration,
    pub calls: Vec<(OutboundCall, Option<String>)>,
    /// An offer to agents: the screen pop, and where it is posted.
    pub pop: Option<(Box<BusEvent>, Option<String>)>,
    /// The agents offered.
    pub agents: Vec<String>,
    /// Of them, those whose browser phone rings (not their SIP phones).
    pub browsers: Vec<String>,
}

/// The second leg, once placed.
pub(super) struct LegState {
    pub purpose: Purpose,
    /// Who is rung (for the log): the target, or the agents.
    pub target: String,
    pub bridged: bool,
    /// Since when the far end holds the call (re-INVITE sendonly/inactive).
    pub held_since: Option<Instant>,
    /// Where the answering phone's SIP is (its RTP may be learned from there).
    pub peer: Option<IpAddr>,
    /// Its media is a browser's (WebRTC): a re-INVITE's SDP (a WebSocket
    /// phone's) goes to its endpoint.
    pub browser: bool,
}

impl CallState {
    /// Asks for the leg's media; the rest follows when it is open.
    pub(super) fn open_leg(&mut self, pending: PendingLeg) {
        self.pending_leg = Some(pending);
        self.push(Do::OpenLeg);
    }

    pub(super) fn on_leg_opened(&mut self) {
        let Some(p) = self.pending_leg.take() else {
            return;
        };
        match &p.pop {
            Some((pop, url)) => {
                if let BusEvent::AgentOffered {
                    agents, wait_ms, ..
                } = &**pop
                {
                    info!(?agents, vars = ?self.run.public_vars(), previous_calls = self.history.len(), wait_ms, "screen pop");
                }
                for (call, agent) in &p.calls {
                    let agent = agent.as_deref().unwrap_or_default();
                    info!(%agent, contact = %call.target, via = ?call.via, "ringing the agent");
                }
                if let Some(url) = url {
                    self.push(Do::Post {
                        url: url.clone(),
                        what: "screen pop",
                        body: serde_json::to_value(pop).unwrap_or_default(),
                    });
                }
                self.push(Do::Publish(pop.clone()));
            }
            None => {
                let uri = p.calls.first().map(|(c, _)| c.target.clone());
                info!(target = %p.target, uri = ?uri, "transferring");
                self.play_then_loop(Vec::new(), crate::config::QueueConfig::default().music);
            }
        }
        if p.purpose == Purpose::Agents {
            let wall = self.wall();
            self.marks.offered_at.get_or_insert(wall);
            if let [only] = p.agents.as_slice() {
                self.marks.agent = Some(only.clone());
            }
        }
        self.leg = Some(LegState {
            purpose: p.purpose.clone(),
            target: p.target.clone(),
            bridged: false,
            held_since: None,
            peer: None,
            browser: false,
        });
        let pop = p
            .pop
            .as_ref()
            .map(|(pop, _)| serde_json::to_value(pop).unwrap_or_default())
            .unwrap_or_default();
        let codec = self.negotiated.map_or(sdp::Codec::Pcmu, |n| n.codec);
        self.push(Do::Dial {
            purpose: p.purpose,
            target: p.target,
            ring_timeout: p.ring_timeout,
            calls: p.calls,
            browsers: p.browsers,
            codec,
            pop,
        });
    }

    pub(super) fn on_leg_no_media(&mut self, why: String) {
        let Some(p) = self.pending_leg.take() else {
            return;
        };
        match p.purpose {
            Purpose::Transfer { token } => {
                self.feed(Event::Transferred(token, Err(Failure::Resources(why))))
            }
            Purpose::Referred => self.referral_failed(Failure::Resources(why)),
            Purpose::Agents => {
                // Our own want: the agents are not counted as missing it,
                // and the caller keeps their place and their music.
                warn!(error = %why, "no media for the agent leg");
                let call = self.call_id.clone();
                self.tell_acd(AcdInput::NotPlaced { call });
            }
            Purpose::Callback => {}
        }
    }

    pub(super) fn on_leg_answered(
        &mut self,
        agent: Option<String>,
        answer: Option<Vec<u8>>,
        answered: Option<String>,
        peer: Option<IpAddr>,
    ) {
        // What was offered to the phone that answered.
        let (ours, policy) = self
            .leg_crypto
            .iter()
            .find(|(target, _, _)| Some(target) == answered.as_ref())
            .map(|(_, c, p)| (c.clone(), *p))
            .unwrap_or_default();
        let negotiated = match answer {
            Some(body) => sdp::parse(&body)
                .and_then(|a| sdp::accept_answer_with(&a, &ours, policy))
                .map_err(|e| e.to_string()),
            None => Err("no SDP in the 2xx".to_owned()),
        };
        let n = match negotiated {
            Ok(n) => n,
            Err(e) => return self.fail_leg(Failure::Unreachable(format!("unusable answer: {e}"))),
        };
        let srtp = n.srtp.map(|s| s.suite.name());
        self.leg_up(agent, stream_of(&n, true, peer), answered, peer, srtp);
    }

    /// An agent took the call in the browser: its WebRTC channel carries
    /// the caller's codec straight through (DTLS-SRTP).
    fn on_browser_answered(&mut self, agent: String, stream: StreamConfig) {
        if let Some(leg) = self.leg.as_mut() {
            leg.browser = true;
        }
        self.leg_up(
            Some(agent),
            stream,
            Some("browser".into()),
            None,
            Some("DTLS-SRTP"),
        );
    }

    /// The leg answered with `stream`: it is bridged to the caller.
    fn leg_up(
        &mut self,
        agent: Option<String>,
        stream: StreamConfig,
        answered: Option<String>,
        peer: Option<IpAddr>,
        srtp: Option<&str>,
    ) {
        let wall = self.wall();
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        leg.peer = peer;
        leg.bridged = true;
        let (purpose, target) = (leg.purpose.clone(), leg.target.clone());
        let codec = stream.codec.name();
        self.push(Do::Leg(LegDo::Configure(stream)));
        self.push(Do::Leg(LegDo::Connected));
        self.marks.bridged_at = Some(wall);
        self.waiting = None;
        self.stop_playing();
        self.push(Do::Bridge);
        info!(%target, answered = ?answered, ?agent, codec, ?srtp, "answered; caller bridged");
        match purpose {
            Purpose::Transfer { token } => self.feed(Event::Transferred(token, Ok(()))),
            Purpose::Referred | Purpose::Callback => {}
            Purpose::Agents => {
                self.marks.agent = agent.clone();
                let target = self
                    .queue_config()
                    .map_or(QueueConfig::default().service_level, |q| q.service_level);
                super::record::observe_answered(&self.marks, target, wall);
                self.push(Do::Publish(Box::new(BusEvent::CallAnswered {
                    call_id: self.call_id.clone(),
                    agent: agent.clone(),
                    target: answered.unwrap_or_default(),
                })));
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

    pub(super) fn on_leg(&mut self, ev: LegEvent) {
        let Some(leg) = self.leg.as_ref() else {
            return;
        };
        match ev {
            LegEvent::Dialog(DialogEvent::Ringing) => info!(target = %leg.target, "ringing"),
            // The driver turns it into `Input::LegAnswered`.
            LegEvent::Answered { agent, sdp } => self.on_leg_answered(agent, sdp, None, None),
            LegEvent::Rejected(status) => self.fail_leg(Failure::Refused(status)),
            LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended | DialogEvent::Expired) => {
                if leg.bridged {
                    info!(target = %leg.target, "the other side hung up");
                    self.end_bridge();
                } else {
                    let why = "the call ended before it was answered".to_owned();
                    self.fail_leg(Failure::Unreachable(why));
                }
            }
            LegEvent::Dialog(DialogEvent::ReInvite { sdp: body }) => self.on_leg_reinvite(body),
            LegEvent::Dialog(DialogEvent::Refer { refer_to }) => self.on_refer(refer_to),
            LegEvent::Dialog(DialogEvent::Info { content_type, body }) => {
                if let Some(d) = dtmf::parse_info(&content_type, &body) {
                    self.on_leg_digit(d);
                }
            }
            LegEvent::Dialog(_) => {}
            LegEvent::Media(MediaEvent::Digit(d, _)) => self.on_leg_digit(d),
            LegEvent::Media(MediaEvent::Silent) if leg.bridged => {
                self.end_bridge();
                // Only when that ends the call (a survey may go on).
                if self.hang_up {
                    self.on_media_lost("agent");
                }
            }
            LegEvent::Media(_) => {}
            LegEvent::Failed(e) => self.fail_leg(Failure::Unreachable(e)),
            LegEvent::NotPlaced(why) => self.leg_not_placed(why),
            LegEvent::BrowserAnswered { agent, stream } => self.on_browser_answered(agent, stream),
            LegEvent::ConnectionLost => self.connection_lost(),
            LegEvent::Hold(on) => self.agent_hold(on),
            LegEvent::Transfer(target) => {
                if !self.agent_transfer(&target) {
                    warn!(%target, "transfer from the desktop to neither a queue nor a configured target; refused");
                }
            }
            LegEvent::NoAnswer => self.fail_leg(Failure::NoAnswer),
            LegEvent::Gone => {
                warn!(target = %leg.target, "the other leg stopped answering (no BYE came); ending the call");
                if leg.bridged {
                    self.end_bridge();
                } else {
                    self.fail_leg(Failure::Unreachable("gone".into()));
                }
            }
        }
    }

    /// Whether this call's queue records its conversations.
    fn record_mode(&self) -> Record {
        self.queue_config().map_or(Record::Off, |q| q.record)
    }

    /// A key the agent (or transfer target) pressed. It reaches the caller
    /// as sent, except the agent's in-call feature codes, held back while
    /// they may be one: `record` in an `on-demand` queue (start or stop the
    /// recording) and `pause-recording` while it records (pause or resume).
    fn on_leg_digit(&mut self, d: Digit) {
        let agent_on_call = self
            .leg
            .as_ref()
            .is_some_and(|l| l.bridged && l.purpose == Purpose::Agents);
        let codes = &self.config.feature_codes;
        let mut live: Vec<String> = Vec::new();
        if self.record_mode() == Record::OnDemand {
            live.push(codes.record.clone());
        }
        if self.conversation.is_some() {
            live.push(codes.pause_recording.clone());
        }
        live.retain(|c| !c.is_empty());
        if !agent_on_call || live.is_empty() {
            return self.media(MediaDo::SendDigit(d));
        }
        self.agent_keys.push(d.as_char());
        if live.contains(&self.agent_keys) {
            let code = std::mem::take(&mut self.agent_keys);
            self.timers.stop(Timer::AgentKeys);
            if code == self.config.feature_codes.pause_recording && self.conversation.is_some() {
                let by = format!("agent:{}", self.marks.agent.clone().unwrap_or_default());
                let pause = !self.pauses.is_paused();
                self.pause_recording(pause, &by);
            } else if self.conversation.take().is_some() {
                info!("the agent stopped the recording");
                self.recording_stopped();
                self.media(MediaDo::StopConversation);
            } else {
                info!("the agent started the recording");
                self.start_recording();
            }
        } else if live.iter().any(|c| c.starts_with(&self.agent_keys)) {
            let at = self.now + Duration::from_millis(1500);
            self.timers.set(Timer::AgentKeys, at);
        } else {
            self.flush_agent_keys();
        }
    }

    /// Keys held back that were not the feature code go on to the caller.
    pub(super) fn flush_agent_keys(&mut self) {
        self.timers.stop(Timer::AgentKeys);
        for c in std::mem::take(&mut self.agent_keys).chars() {
            if let Some(d) = Digit::from_char(c) {
                self.media(MediaDo::SendDigit(d));
            }
        }
    }

    /// Records the conversation from now on (caller left, agent right).
    fn start_recording(&mut self) {
        self.conversations += 1;
        self.last_token += 1;
        let token = self.last_token;
        self.conversation = Some(token);
        let n = self.conversations;
        self.media(MediaDo::RecordConversation { token, n });
    }

    /// The agent (or transfer target) sent a re-INVITE. It is answered;
    /// when it holds the call (sendonly, inactive) the caller hears hold
    /// music until it resumes, and the time counts as hold in the record.
    fn on_leg_reinvite(&mut self, body: Option<Vec<u8>>) {
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        if leg.browser {
            // A WebSocket phone (JsSIP's hold and resume): its endpoint
            // answers, and a hold comes back as `LegEvent::Hold`.
            return self.push(Do::Leg(match body {
                Some(body) => LegDo::BrowserReoffer(body),
                None => LegDo::Respond(488),
            }));
        }
        let Some(body) = body else {
            // It asks for our offer; the answer comes in its ACK, and the
            // stream stays as it was.
            return self.push(Do::Leg(LegDo::Offer));
        };
        let parsed = sdp::parse(&body).and_then(|o| {
            let holds = !o.effective_direction().receives();
            sdp::negotiate(&o).map(|n| (n, holds))
        });
        let (n, holds) = match parsed {
            Ok(x) => x,
            Err(e) => {
                warn!(target = %leg.target, error = %e, "re-INVITE from the other leg refused; the call goes on as before");
                return self.push(Do::Leg(LegDo::Respond(488)));
            }
        };
        let stream = stream_of(&n, true, leg.peer);
        self.push(Do::Leg(LegDo::Configure(stream)));
        self.push(Do::Leg(LegDo::Answer(n)));
        self.agent_hold(holds);
    }

    /// The other leg holds the call (`true`: the caller hears the queue's
    /// music, and the time counts as hold in the record) or takes it back.
    fn agent_hold(&mut self, holds: bool) {
        let music = self.music();
        let now = self.now;
        let Some(leg) = self.leg.as_mut().filter(|l| l.bridged) else {
            return;
        };
        let target = leg.target.clone();
        match (holds, leg.held_since) {
            (true, None) => {
                leg.held_since = Some(now);
                info!(%target, "the caller is on hold");
                self.media(MediaDo::Unbridge);
                self.push(Do::Leg(LegDo::Unbridge));
                self.play_then_loop(Vec::new(), music);
            }
            (false, Some(since)) => {
                leg.held_since = None;
                info!(%target, "the caller is off hold");
                self.marks.held += now.saturating_duration_since(since);
                self.stop_playing();
                self.push(Do::Bridge);
            }
            _ => {}
        }
    }

    /// The agent's browser died mid-call (its consent ran out): our side
    /// of the call is gone, not the caller. The agent is paused
    /// (`connection-lost`) and the caller goes back to the head of their
    /// queue, hearing its music again.
    fn connection_lost(&mut self) {
        let Some(leg) = self.leg.as_ref() else {
            return;
        };
        let (bridged, from_agent) = (leg.bridged, leg.purpose == Purpose::Agents);
        if !bridged {
            return self.fail_leg(Failure::Unreachable(
                "the browser's connection failed".into(),
            ));
        }
        let Some(queue) = self.queue_name.clone().filter(|_| from_agent) else {
            // A transfer target is no browser; nothing to go back to.
            return self.end_bridge();
        };
        warn!(agent = ?self.marks.agent, %queue, "the agent's browser connection was lost; the caller goes back to the head of the queue");
        self.count_hold();
        if self.conversation.take().is_some() {
            self.recording_stopped();
            self.media(MediaDo::StopConversation);
        }
        self.media(MediaDo::Unbridge);
        self.leg = None;
        self.push(Do::DropLeg);
        let call = self.call_id.clone();
        self.tell_acd(AcdInput::ConnectionLost { call });
        self.marks.bridged_at = None;
        self.marks.agent = None;
        self.rejoin_ahead(queue);
    }

    /// A hold still going on ends with the bridge.
    pub(super) fn count_hold(&mut self) {
        let now = self.now;
        if let Some(since) = self.leg.as_mut().and_then(|l| l.held_since.take()) {
            self.marks.held += now.saturating_duration_since(since);
        }
    }

    /// The bridged leg ended: the agent (if it was one) is freed into
    /// wrap-up and the caller is hung up.
    pub(super) fn end_bridge(&mut self) {
        self.count_hold();
        let from_agent = self.leg.as_ref().map(|l| &l.purpose) == Some(&Purpose::Agents);
        if from_agent {
            let call = self.call_id.clone();
            self.tell_acd(AcdInput::Ended { call });
            self.leave_queue();
        }
        self.leg = None;
        self.push(Do::DropLeg);
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
        self.media(MediaDo::Unbridge);
        self.stop_playing();
        self.timers.stop(Timer::Flow);
        self.marks.before_survey = Some((
            self.run.flow_name().to_owned(),
            self.run.node_name().to_owned(),
        ));
        let mut vars = self.run.public_vars();
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
    /// Nothing could be rung for a want of ours: to the ACD the offer was
    /// not placed (the agents miss nothing, the caller keeps their place).
    fn leg_not_placed(&mut self, why: String) {
        let purpose = self.leg.as_ref().map(|l| l.purpose.clone());
        if purpose != Some(Purpose::Agents) {
            return self.fail_leg(Failure::Resources(why));
        }
        self.leg = None;
        self.push(Do::DropLeg);
        warn!(error = %why, "the agents could not be rung; the caller keeps their place");
        let call = self.call_id.clone();
        self.tell_acd(AcdInput::NotPlaced { call });
    }

    fn fail_leg(&mut self, why: Failure) {
        let Some(leg) = self.leg.take() else {
            return;
        };
        self.push(Do::DropLeg);
        match leg.purpose {
            Purpose::Transfer { token } => {
                warn!(target = %leg.target, error = %why, "transfer failed");
                self.stop_playing();
                self.media(MediaDo::Unbridge);
                self.feed(Event::Transferred(token, Err(why)));
            }
            Purpose::Agents => {
                warn!(agents = %leg.target, error = %why, "agent did not take the call");
                let call = self.call_id.clone();
                self.tell_acd(AcdInput::NoAnswer { call });
            }
            Purpose::Referred => self.referral_failed(why),
            // Placed by the callback service, never by a caller's call.
            Purpose::Callback => {}
        }
    }

    /// The ACD offers the caller to agents: ring every phone they
    /// registered, where it registered from; the caller keeps hearing the
    /// queue's music. The first phone to answer is bridged.
    pub(super) fn on_offer(&mut self, offer: ToCall) {
        if matches!(offer, ToCall::Offer { .. }) && self.history_pending {
            // The screen pop should show the caller's history: wait for it
            // a moment (it is one indexed query).
            let at = self.now + Duration::from_millis(500);
            self.timers.set(Timer::ScreenPop, at);
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
        let busy = self.leg.is_some() || self.pending_leg.is_some();
        if busy || agents.iter().all(|a| a.contacts.is_empty() && !a.browser) {
            let call = self.call_id.clone();
            return self.tell_acd(AcdInput::NoAnswer { call });
        }
        // An agent is free: better than a callback. The offer is dropped
        // (a request being written is cancelled when the write is done).
        if self.callback.take().is_some() {
            info!("an agent is free; the callback offer is dropped");
            if let Some(w) = self.waiting.as_mut() {
                w.no_offer();
            }
        }
        let headers = self.screen_pop_headers();
        let names: Vec<String> = agents.iter().map(|a| a.agent.clone()).collect();
        let wait_ms = self.marks.queued_at.map_or(0, |q| {
            self.wall().duration_since(q).as_millis().max(0) as u64
        });
        let pop = BusEvent::AgentOffered {
            call_id: self.call_id.clone(),
            agents: names.clone(),
            caller: self.caller.clone(),
            queue: self.queue_name.clone().unwrap_or_default(),
            wait_ms,
            vars: serde_json::to_value(self.run.public_vars()).unwrap_or_default(),
            history: self.history.clone(),
        };
        let url = self.queue_config().and_then(|q| q.screen_pop_url.clone());
        let mut calls = Vec::new();
        // One key for the leg; each phone is offered SRTP as its agent's
        // rule and its connection allow.
        let key = sdp::crypto::KeySalt::random(sdp::crypto::Suite::AesCm128HmacSha1_80);
        self.leg_crypto.clear();
        let mut browsers = Vec::new();
        for a in &agents {
            // At the desktop, the browser is the agent's phone.
            if a.browser {
                browsers.push(a.agent.clone());
                continue;
            }
            for contact in &a.contacts {
                let policy = super::agent_policy(&self.config, &a.agent, contact.tls);
                let (crypto, savp) = sdp::crypto::offer_lines(policy, key);
                self.leg_crypto
                    .push((contact.uri.clone(), crypto.clone(), policy));
                let call = OutboundCall {
                    target: contact.uri.clone(),
                    from_user: self.caller.clone(),
                    // The agent's phone shows who is calling.
                    from_display: Some(self.caller.clone()),
                    sdp: Vec::new(),
                    via: Some(contact.source),
                    over_tcp: contact.tcp,
                    headers: headers.clone(),
                    auth: None,
                    crypto,
                    savp,
                    webrtc: contact.ws,
                };
                calls.push((call, Some(a.agent.clone())));
            }
        }
        self.open_leg(PendingLeg {
            purpose: Purpose::Agents,
            target: names.join(","),
            ring_timeout,
            calls,
            pop: Some((Box::new(pop), url)),
            agents: names,
            browsers,
        });
    }

    /// The agent transfers the caller (blind, REFER) to a queue or to a
    /// target under `transfers:`, named by the Refer-To URI's user part.
    /// Anything else is refused: a phone must never make Hotline dial where
    /// the config does not allow (toll fraud).
    fn on_refer(&mut self, refer_to: String) {
        let target = crate::uri::SipUri::parse(&refer_to)
            .and_then(|u| u.user)
            .unwrap_or_default();
        if self.leg.as_ref().is_some_and(|l| l.bridged) && !self.agent_transfer(&target) {
            warn!(%refer_to, "REFER to neither a queue nor a configured transfer target; refused");
            self.push(Do::Leg(LegDo::NotifyRefer(403)));
        }
    }

    /// The agent's blind transfer of the caller (a REFER, or the desktop's
    /// button) to a queue or a name under `transfers:`; `false` (nothing
    /// changes) for any other target.
    fn agent_transfer(&mut self, target: &str) -> bool {
        let Some(leg) = self.leg.as_ref().filter(|l| l.bridged) else {
            return false;
        };
        let from_agent = leg.purpose == Purpose::Agents;
        let to_queue = self.config.queues.contains_key(target);
        let to_uri = self.config.transfers.get(target).cloned();
        if !to_queue && to_uri.is_none() {
            return false;
        }
        let target = target.to_owned();
        info!(%target, agent = ?self.marks.agent, "blind transfer by the agent");
        // A REFER hears how it went (a browser has no dialog: nothing sent).
        self.push(Do::Leg(LegDo::NotifyRefer(200)));
        self.count_hold();
        self.media(MediaDo::Unbridge);
        // Dropping the leg hangs it up (the NOTIFY goes first).
        self.leg = None;
        self.push(Do::DropLeg);
        if from_agent {
            let call = self.call_id.clone();
            self.tell_acd(AcdInput::Ended { call });
            self.leave_queue();
        }
        match to_uri {
            Some(uri) => self.transfer(Purpose::Referred, target, uri),
            None => self.enqueue(target, self.queue_priority, Vec::new()),
        }
        true
    }

    /// A transfer the agent asked for did not come up: rather than leave
    /// the caller alone, they go back to the queue they came from.
    pub(super) fn referral_failed(&mut self, why: Failure) {
        self.stop_playing();
        self.media(MediaDo::Unbridge);
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
        for (k, v) in &self.run.public_vars() {
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
        if let Some(after) = self.queue_config().and_then(|q| q.answer_after) {
            // Phones that honour it answer by themselves (headset agents).
            headers.push((
                "Call-Info".to_owned(),
                format!(
                    "<sip:{}>;answer-after={}",
                    self.config.sip_address(),
                    after.as_secs()
                ),
            ));
        }
        headers
    }
}
