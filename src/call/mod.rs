//! One task per call: it ties a SIP dialog, a media channel and the call's
//! behaviour together. This is the only place where the layers meet.

pub mod demo;
pub mod engine;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use crate::config::Config;
use crate::media::{
    dtmf, Digit, DigitSource, MediaChannel, MediaEngine, MediaEvent, PromptCache, StreamConfig,
};
use crate::sdp::{self, Negotiated, Origin};
use crate::sip::{DialogEvent, DialogHandle, IncomingCall};

/// What every call task shares.
#[derive(Clone)]
pub struct CallContext {
    pub config: Arc<Config>,
    pub prompts: Arc<PromptCache>,
    pub media: Arc<MediaEngine>,
    /// Becomes `true` when the drain timeout is over: hang up now.
    pub hangup_all: watch::Receiver<bool>,
}

/// How a call ended, for the log line (and the CDR once the store exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    CallerHungUp,
    WeHungUp,
    Cancelled,
    Refused,
    NoAck,
}

/// What the call's behaviour asks of the call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Play this prompt (by name) now, replacing what plays.
    Play(String),
    /// Play this prompt, then hang up.
    PlayThenHangUp(String),
    HangUp,
}

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
        let ending = Call::setup(ctx, call).await;
        info!(?ending, "call ended");
    }
    .instrument(span)
    .await
}

struct Call {
    ctx: CallContext,
    dialog: DialogHandle,
    events: tokio::sync::mpsc::UnboundedReceiver<DialogEvent>,
    media: MediaChannel,
    origin: Origin,
    symmetric: bool,
    negotiated: Option<Negotiated>,
    demo: demo::EchoDemo,
    hangup_after: Option<u64>,
    digits: String,
}

impl Call {
    async fn setup(ctx: CallContext, call: IncomingCall) -> Ending {
        let IncomingCall {
            dialog,
            events,
            offer,
            trunk,
            ..
        } = call;
        let media = match ctx.media.open() {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "no media for the call");
                dialog.respond(503);
                return Ending::Refused;
            }
        };
        let symmetric = ctx
            .config
            .trunks
            .iter()
            .find(|t| t.name == trunk)
            .is_none_or(|t| t.symmetric_rtp);
        let mut call = Call {
            origin: Origin::new(ctx.config.media_address()),
            demo: demo::EchoDemo::new(&ctx.config.demo),
            ctx,
            dialog,
            events,
            media,
            symmetric,
            negotiated: None,
            hangup_after: None,
            digits: String::new(),
        };
        // An unusable offer is refused before any ringing.
        let offered = match offer {
            Some(body) => match sdp::parse(&body).and_then(|o| sdp::negotiate(&o)) {
                Ok(n) => Some(n),
                Err(e) => {
                    warn!(error = %e, "offer refused");
                    call.dialog.respond(488);
                    return Ending::Refused;
                }
            },
            None => None,
        };
        if let Some(end) = call.ring().await {
            return end;
        }
        match offered {
            Some(n) => {
                call.apply(n);
                let answer = sdp::answer(&mut call.origin, call.media.local_port(), &n);
                call.dialog.answer(answer);
                info!(codec = n.codec.name(), remote = %n.remote, "answered");
                call.run_steps(vec![call.demo.on_answer()]);
            }
            None => {
                // Late offer (RFC 3261 §13.2.1): we offer in the 200, they answer in the ACK.
                let offer = sdp::offer(&mut call.origin, call.media.local_port());
                call.dialog.answer(offer);
                info!("answered with an offer; waiting for the answer in ACK");
            }
        }
        call.run().await
    }

    /// Rings for the configured answer delay; `Some` if the caller gave up.
    async fn ring(&mut self) -> Option<Ending> {
        let delay = self.ctx.config.demo.answer_delay;
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
        let max = Instant::now() + self.ctx.config.demo.max_duration;
        let mut hangup_all = self.ctx.hangup_all.clone();
        loop {
            tokio::select! {
                ev = self.events.recv() => {
                    let Some(ev) = ev else { return Ending::WeHungUp };
                    if let Some(end) = self.on_dialog(ev) {
                        return end;
                    }
                }
                Some(ev) = self.media.events.recv() => {
                    if self.on_media(ev) {
                        return self.hang_up();
                    }
                }
                _ = tokio::time::sleep_until(max) => {
                    info!(limit = ?self.ctx.config.demo.max_duration, "call reached its maximum duration");
                    return self.hang_up();
                }
                changed = hangup_all.changed() => {
                    if changed.is_err() || *hangup_all.borrow() {
                        info!("engine shutting down");
                        return self.hang_up();
                    }
                }
            }
        }
    }

    /// Sends BYE. The SIP core carries the BYE transaction to its end on
    /// its own, so the call's media is freed now, not when the BYE is answered.
    fn hang_up(&mut self) -> Ending {
        self.dialog.hangup();
        Ending::WeHungUp
    }

    fn apply(&mut self, n: Negotiated) {
        self.media.configure(StreamConfig {
            remote: n.remote,
            codec: n.codec,
            payload_type: n.payload_type,
            dtmf_pt: n.dtmf_pt,
            send: n.we_send(),
            symmetric: self.symmetric,
        });
        self.negotiated = Some(n);
    }

    fn on_dialog(&mut self, ev: DialogEvent) -> Option<Ending> {
        match ev {
            DialogEvent::Ack { sdp: Some(body) } if self.negotiated.is_none() => {
                match sdp::parse(&body).and_then(|a| sdp::accept_answer(&a)) {
                    Ok(n) => {
                        self.apply(n);
                        info!(codec = n.codec.name(), remote = %n.remote, "answer received in ACK");
                        let step = self.demo.on_answer();
                        self.run_steps(vec![step]);
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
                    Some(d) => {
                        if self.on_digit(d, DigitSource::SipInfo) {
                            return Some(self.hang_up());
                        }
                    }
                    None => info!(%content_type, "INFO without a DTMF digit"),
                }
                None
            }
            DialogEvent::Bye => Some(Ending::CallerHungUp),
            DialogEvent::Cancelled => Some(Ending::Cancelled),
            DialogEvent::NoAck => Some(Ending::NoAck),
            DialogEvent::Ended => Some(Ending::WeHungUp),
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

    /// Returns `true` when the call should end now.
    fn on_media(&mut self, ev: MediaEvent) -> bool {
        match ev {
            MediaEvent::Digit(d, source) => self.on_digit(d, source),
            MediaEvent::PlaybackDone { token } => self.hangup_after == Some(token),
        }
    }

    fn on_digit(&mut self, d: Digit, source: DigitSource) -> bool {
        self.digits.push(d.as_char());
        info!(digit = %d, ?source, digits = %self.digits, "digit received");
        let step = self.demo.on_digit(d);
        self.run_steps(vec![step])
    }

    /// Carries out the behaviour's steps; `true` when the call should end now.
    fn run_steps(&mut self, steps: Vec<Step>) -> bool {
        for step in steps {
            match step {
                Step::Play(name) => {
                    self.play(&name);
                }
                Step::PlayThenHangUp(name) => match self.play(&name) {
                    Some(token) => self.hangup_after = Some(token),
                    None => return true,
                },
                Step::HangUp => return true,
            }
        }
        false
    }

    fn play(&mut self, name: &str) -> Option<u64> {
        match self.ctx.prompts.get(name) {
            Some(prompt) => Some(self.media.play(prompt, false)),
            None => {
                warn!(prompt = name, "prompt not found; skipped");
                None
            }
        }
    }
}
