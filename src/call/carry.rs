//! Carrying out what the call's state machine asks ([`Do`]): on the
//! caller's dialog and media, on the second leg, in the store, on the bus,
//! to the ACD and the callback service; work that takes time runs in a task
//! of its own and its result comes back as an input.

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use super::state::{CallState, Do, Input, LegDo, MediaDo};
use super::{conversation, notify, recording, webhook, Driver};
use crate::acd::actor::Request as AcdRequest;
use crate::events::PastCall;
use crate::flow::{Event, Failure};
use crate::leg::{self, playlist};
use crate::media::MediaEvent;
use crate::sdp::{self, Origin};
use crate::store::{AttemptOutcome, Callback, CallbackState};

impl Driver {
    /// Carries out everything the machine asked for (feeding it what comes
    /// back at once), then sends what it told the ACD and the callback
    /// service, in order; waits while their inboxes are full (nothing is
    /// dropped).
    pub(super) async fn carry_out(&mut self, state: &mut CallState) {
        while let Some(what) = state.poll_output() {
            if let Some(input) = self.execute(what).await {
                state.handle(input, std::time::Instant::now());
            }
        }
        if !self.to_acd.is_empty() {
            self.ctx.acd.send_all(self.to_acd.drain(..)).await;
        }
        for (callback, replaces) in std::mem::take(&mut self.booked) {
            self.ctx.callbacks.booked(callback, replaces).await;
        }
    }

    async fn execute(&mut self, what: Do) -> Option<Input> {
        match what {
            Do::Respond(status) => self.dialog.respond(status).await,
            Do::Answer(sdp) => self.dialog.answer(sdp).await,
            Do::NotifyRefer(status) => self.dialog.notify_refer(status).await,
            Do::HangUp => self.dialog.hangup().await,
            Do::Media(m) => self.on_media(m).await,
            Do::OpenLeg => {
                return Some(match self.ctx.media.open_beside(&self.media).await {
                    Ok(m) => {
                        self.opening = Some(m);
                        Input::LegOpened
                    }
                    Err(e) => Input::LegNoMedia(e.to_string()),
                })
            }
            Do::Dial {
                purpose,
                target,
                ring_timeout,
                calls,
                browsers,
                codec,
                pop,
            } => {
                let mut media = self.opening.take()?;
                // A dual-stack engine meets the phone in its family (where
                // its SIP is; a name resolved later gets the primary's).
                let peer = calls.first().and_then(|(c, _)| {
                    c.via.map(|v| v.ip()).or_else(|| {
                        let uri = crate::uri::SipUri::parse(&c.target)?;
                        uri.host.trim_matches(['[', ']']).parse().ok()
                    })
                });
                if let Some(peer) = peer.filter(|p| {
                    p.is_ipv6() != media.local_ip().is_ipv6() && self.ctx.media.has_family_of(*p)
                }) {
                    match self.ctx.media.open_beside_for(&self.media, peer).await {
                        Ok(m) => media = m,
                        Err(e) => {
                            warn!(error = %e, "no media of the phone's family; offering the other")
                        }
                    }
                }
                let mut origin = Origin::new(self.ctx.config.media_address_for(media.local_ip()));
                let port = media.local_port();
                let mut offers = Vec::with_capacity(calls.len());
                for (mut call, agent) in calls {
                    call.sdp = sdp::offer_with(&mut origin, port, &call.crypto, call.savp);
                    offers.push((call, agent));
                }
                let mut leg = leg::Leg::new(purpose, target, media, origin, ring_timeout);
                for (call, agent) in offers {
                    leg.dial_phone(&self.ctx.media, &self.ctx.dialer, call, agent, codec)
                        .await;
                }
                let webrtc = self.ctx.config.webrtc.as_ref();
                for agent in browsers {
                    // On the caller's clock, in the caller's codec; the
                    // page's TURN credentials are its agent's own.
                    let phones = &self.ctx.phones;
                    let ice = webrtc
                        .map(|w| w.ice_servers_for(&agent))
                        .unwrap_or_default();
                    leg.ring_desktop(
                        &self.ctx.media,
                        phones,
                        &self.call_id,
                        agent,
                        codec,
                        ice,
                        pop.clone(),
                    )
                    .await;
                }
                self.leg = Some(leg);
            }
            Do::Leg(l) => return self.on_leg(l).await,
            Do::Bridge => {
                if let Some(leg) = &self.leg {
                    self.media.bridge(&leg.media).await;
                }
            }
            // Dropping the leg hangs it up (CANCEL or BYE).
            Do::DropLeg => self.leg = None,
            Do::Publish(event) => self.ctx.publish(*event),
            Do::Post { url, what, body } => notify::post(&self.ctx.http, &url, what, body),
            Do::Checkpoint(cdr) => self.ctx.store.record(&self.record, *cdr, true),
            Do::Webhook { token, request } => {
                let (client, tx) = (self.ctx.http.clone(), self.feedback.0.clone());
                tokio::spawn(
                    async move {
                        let outcome = webhook::call(&client, &request).await;
                        let _ = tx.send(Event::Webhook(token, outcome));
                    }
                    .in_current_span(),
                );
            }
            Do::SaveSurvey { token, answer } => {
                let (store, tx) = (self.ctx.store.clone(), self.feedback.0.clone());
                let score = answer.score;
                tokio::spawn(
                    async move {
                        let result = store.save_survey(answer).await;
                        match &result {
                            Ok(id) => info!(id, score, "survey answer stored"),
                            Err(e) => warn!(error = %e, "survey answer not stored"),
                        }
                        let result = result
                            .map(|_| ())
                            .map_err(|e| Failure::NotStored(e.to_string()));
                        let _ = tx.send(Event::Saved(token, result));
                    }
                    .in_current_span(),
                );
            }
            Do::SaveRecording {
                active,
                samples,
                flow,
            } => {
                let (ctx, tx) = (self.ctx.clone(), self.feedback.0.clone());
                let (call_id, caller) = (self.call_id.clone(), self.caller.clone());
                tokio::spawn(
                    async move {
                        let token = active.flow_token;
                        let result =
                            recording::save(&ctx, active, samples, &call_id, &caller, &flow)
                                .await
                                .map_err(Failure::NotStored);
                        let _ = tx.send(Event::Recorded(token, result));
                    }
                    .in_current_span(),
                );
            }
            Do::Join(input) => {
                let (link, waiter) = crate::acd::actor::link();
                self.to_acd.push(AcdRequest::Join(input, link));
                self.waiter = Some(waiter);
            }
            Do::StopListening => self.waiter = None,
            Do::Acd(input) => self.to_acd.push(AcdRequest::Input(input)),
            Do::SaveCallback(callback) => self.save_callback(*callback),
            Do::CancelCallback(id) => {
                let store = self.ctx.store.clone();
                tokio::spawn(async move {
                    let now = jiff::Timestamp::now();
                    let (state, outcome) =
                        (CallbackState::Cancelled, AttemptOutcome::AnsweredMeanwhile);
                    let _ = store.finish_callback(id, state, outcome, now).await;
                });
            }
            Do::Booked(callback, replaces) => self.booked.push((*callback, replaces)),
        }
        None
    }

    async fn on_media(&mut self, m: MediaDo) {
        let media = &self.media;
        match m {
            MediaDo::Configure(stream) => media.configure(stream).await,
            MediaDo::Play(op) => playlist::apply(media, [op]).await,
            MediaDo::Record { token, max } => media.record(max, token).await,
            MediaDo::StopRecord => media.stop_recording().await,
            MediaDo::RecordConversation { token, n } => {
                let dir = &self.ctx.config.data_dir;
                let path = conversation::path_for(dir, &self.call_id, n);
                info!(path = %path.display(), "recording the conversation");
                self.conversation = Some(conversation::start(media, path, token).await);
            }
            MediaDo::StopConversation => media.stop_conversation().await,
            MediaDo::PauseConversation(paused) => media.pause_conversation(paused).await,
            MediaDo::SendDigit(d) => media.send_digit(d).await,
            MediaDo::Unbridge => media.unbridge().await,
        }
    }

    /// Carries out a step on the leg; a browser phone's hold or resume
    /// comes back.
    async fn on_leg(&mut self, l: LegDo) -> Option<Input> {
        let leg = self.leg.as_mut()?;
        match l {
            LegDo::Configure(stream) => leg.media.configure(stream).await,
            LegDo::Connected => {
                let calls = &self.ctx.config.calls;
                leg.connected(calls.leg_check, calls.leg_check_timeout);
            }
            LegDo::Answer(n) => {
                let answer = sdp::answer(&mut leg.origin, leg.media.local_port(), &n);
                if let Some(d) = leg.dialog() {
                    d.answer(answer).await;
                }
            }
            LegDo::Offer => {
                let offer = sdp::offer(&mut leg.origin, leg.media.local_port());
                if let Some(d) = leg.dialog() {
                    d.answer(offer).await;
                }
            }
            LegDo::Respond(status) => {
                if let Some(d) = leg.dialog() {
                    d.respond(status).await;
                }
            }
            LegDo::NotifyRefer(status) => {
                if let Some(d) = leg.dialog() {
                    d.notify_refer(status).await;
                }
            }
            LegDo::BrowserReoffer(body) => {
                let offer = String::from_utf8_lossy(&body).into_owned();
                match leg.media.browser_reoffer(offer).await {
                    Ok((answer, holds)) => {
                        if let Some(d) = leg.dialog() {
                            d.answer(answer.into_bytes()).await;
                        }
                        return Some(Input::Leg(crate::leg::LegEvent::Hold(holds)));
                    }
                    Err(e) => {
                        warn!(error = %e, "the browser phone's re-INVITE refused; the call goes on as before");
                        if let Some(d) = leg.dialog() {
                            d.respond(488).await;
                        }
                    }
                }
            }
            LegDo::SendDigit(d) => leg.media.send_digit(d).await,
            LegDo::Unbridge => leg.media.unbridge().await,
        }
        None
    }

    /// Writes the request; how it went comes back as [`Input::Booked`].
    fn save_callback(&mut self, callback: Callback) {
        let (store, tx) = (self.ctx.store.clone(), self.booking.0.clone());
        let (callbacks, call_id) = (self.ctx.callbacks.clone(), self.call_id.clone());
        let max = self
            .ctx
            .config
            .queues
            .get(&callback.queue)
            .and_then(|q| q.callback.as_ref())
            .map_or(0, |c| c.max_per_number_per_day);
        tokio::spawn(
            async move {
                let result = store
                    .save_callback_capped(callback.clone(), max)
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

    /// Looks up the caller's earlier calls (for the screen pop) while they
    /// wait; an answer that comes too late is simply not shown.
    pub(super) fn look_up_history(&mut self) {
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
        self.history = Some(rx);
    }

    /// The caller hung up while recording: what they said is the message.
    /// Waits (bounded) for the media layer to hand it over, then saves it.
    pub(super) async fn keep_recording(&mut self, active: recording::Active, flow: &str) {
        self.media.stop_recording().await;
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
        let (call_id, caller) = (self.call_id.clone(), self.caller.clone());
        if let Err(e) = recording::save(&self.ctx, active, samples, &call_id, &caller, flow).await {
            warn!(error = %e, "message not saved");
        }
    }

    /// Stops a recording still going and waits (bounded) until every file
    /// is written; the files written, for the record.
    pub(super) async fn close_recordings(&mut self) -> Vec<String> {
        if let Some(c) = self.conversation.take() {
            self.media.stop_conversation().await;
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
            self.closing.push(tokio::spawn(c.finish()));
        }
        let mut written = Vec::new();
        for h in std::mem::take(&mut self.closing) {
            match tokio::time::timeout(std::time::Duration::from_secs(10), h).await {
                Ok(Ok(Ok((path, duration)))) => {
                    info!(%path, ?duration, "conversation recorded");
                    written.push(path);
                }
                Ok(Ok(Err(e))) => warn!(error = %e, "conversation recording lost"),
                Ok(Err(e)) => warn!(error = %e, "conversation recording lost"),
                Err(_) => warn!("conversation recording not finished within 10 s"),
            }
        }
        written
    }
}
