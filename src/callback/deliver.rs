//! Delivering one callback attempt, agent first: the reserved agent's
//! phone rings and they hear a whisper ("callback for …, who waited 7
//! minutes"); then the attempt is counted in the store and the customer is
//! called over the trunk; they hear "this is your callback, press 1" (a
//! guard against answering machines) and are bridged to the agent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn};

use super::Context;
use crate::acd::actor::Offered;
use crate::acd::Input as AcdInput;
use crate::config::{CallbackConfig, Outbound};
use crate::events::Event as BusEvent;
use crate::leg::playlist::Playlist;
use crate::leg::{stream_of, Leg, LegEvent, Purpose};
use crate::media::{dtmf, MediaEvent};
use crate::sdp::{self, Origin};
use crate::sip::{Account, DialogEvent, OutboundCall};
use crate::store::Callback;

/// What an attempt tells the callback service as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No reserved agent answered: the callback stays in the queue (the
    /// ACD was told), nobody was dialled.
    AgentMissed,
    /// The attempt is counted (in the store): the customer is being called.
    Started { attempt: i64, n: u32, agent: String },
    /// The customer pressed 1 and is talking to the agent (named when it
    /// was not known at the start).
    Connected { attempt: i64, agent: Option<String> },
    /// It failed: `attempt` is set when the customer was dialled.
    Failed {
        attempt: Option<i64>,
        outcome: &'static str,
    },
    /// The delivered call ended.
    Done,
}

/// Everything one attempt needs.
pub struct Attempt {
    pub ctx: Context,
    pub callback: Callback,
    /// The callback's entry in the ACD.
    pub acd_id: String,
    pub config: CallbackConfig,
    pub trunk: String,
    pub outbound: Outbound,
    /// Send the customer's RTP where theirs comes from (the trunk's `symmetric-rtp`).
    pub symmetric: bool,
    pub agents: Vec<Offered>,
    pub ring_timeout: Duration,
    /// The trunk's free call slots.
    pub slots: Arc<Semaphore>,
    pub progress: mpsc::UnboundedSender<Progress>,
}

/// The token of the prompts the delivery plays (its own playlists).
const WHISPER: u64 = 1;
const GUARD: u64 = 2;

impl Attempt {
    pub(super) fn report(&self, p: Progress) {
        let _ = self.progress.send(p);
    }

    pub async fn run(self) {
        let Some((mut agent_leg, agent)) = self.ring_agent(&self.agents, self.ring_timeout).await
        else {
            self.ctx
                .acd
                .send(AcdInput::NoAnswer {
                    call: self.acd_id.clone(),
                })
                .await;
            return self.report(Progress::AgentMissed);
        };
        self.ctx
            .acd
            .send(AcdInput::Answered {
                call: self.acd_id.clone(),
                agent: agent.clone(),
            })
            .await;
        let outcome = self.with_agent(&mut agent_leg, &agent).await;
        if let Some(d) = agent_leg.dialog() {
            d.hangup();
        }
        let call = self.acd_id.clone();
        self.ctx
            .acd
            .send(match outcome {
                // A conversation: wrap-up follows, and it counts as handled.
                Progress::Done => AcdInput::Ended { call },
                _ => AcdInput::Released { call },
            })
            .await;
        self.report(outcome);
    }

    /// Rings the reserved agents' phones; the one who answered.
    pub(super) async fn ring_agent(
        &self,
        agents: &[Offered],
        ring_timeout: Duration,
    ) -> Option<(Leg, String)> {
        let media = match self.ctx.media.open() {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "no media for the callback's agent leg");
                return None;
            }
        };
        let cb = &self.callback;
        let mut origin = Origin::new(self.ctx.config.media_address());
        let offer = sdp::offer(&mut origin, media.local_port());
        let names: Vec<String> = agents.iter().map(|a| a.agent.clone()).collect();
        let waited = waited(cb);
        let mut headers = vec![
            ("X-Hotline-Callback".to_owned(), cb.id.to_string()),
            ("X-Hotline-Call-ID".to_owned(), cb.call_id.clone()),
            ("X-Hotline-Queue".to_owned(), cb.queue.clone()),
            ("X-Hotline-Waited".to_owned(), waited.as_secs().to_string()),
        ];
        let vars: serde_json::Value = serde_json::from_str(&cb.vars).unwrap_or_default();
        if let Some(map) = vars.as_object() {
            for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "call_id") {
                let name: String = k.chars().map(|c| if c == '_' { '-' } else { c }).collect();
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                headers.push((format!("X-Hotline-Var-{name}"), value));
            }
        }
        self.ctx.events.publish(BusEvent::AgentOffered {
            call_id: self.acd_id.clone(),
            agents: names.clone(),
            caller: cb.number.clone(),
            queue: cb.queue.clone(),
            wait_ms: waited.as_millis() as u64,
            vars,
            history: Vec::new(),
        });
        let mut leg = Leg::new(
            Purpose::Agents,
            names.join(","),
            media,
            origin,
            ring_timeout,
        );
        for a in agents {
            for contact in &a.contacts {
                info!(agent = %a.agent, contact = %contact.uri, callback = cb.id, "ringing the agent for a callback");
                let call = OutboundCall {
                    target: contact.uri.clone(),
                    from_user: cb.number.clone(),
                    from_display: Some(format!("Callback {}", cb.number)),
                    sdp: offer.clone(),
                    via: Some(contact.source),
                    headers: headers.clone(),
                    auth: None,
                };
                leg.dial(&self.ctx.dialer, call, Some(a.agent.clone()));
            }
        }
        loop {
            match leg.next().await {
                LegEvent::Answered { agent, sdp: answer } => {
                    let Some(n) = answer
                        .as_deref()
                        .and_then(|b| sdp::parse(b).and_then(|a| sdp::accept_answer(&a)).ok())
                    else {
                        warn!("the agent's phone answered without usable SDP");
                        if let Some(d) = leg.dialog() {
                            d.hangup();
                        }
                        return None;
                    };
                    leg.media.configure(stream_of(&n, true, leg.peer));
                    leg.deadline = None;
                    leg.bridged = true;
                    let calls = &self.ctx.config.calls;
                    leg.start_checks(calls.leg_check, calls.leg_check_timeout);
                    return Some((leg, agent.unwrap_or_default()));
                }
                LegEvent::Rejected(_)
                | LegEvent::Failed(_)
                | LegEvent::NoAnswer
                | LegEvent::Gone => {
                    info!(agents = %leg.target, "the agent did not take the callback");
                    return None;
                }
                LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended) => return None,
                _ => {}
            }
        }
    }

    /// With the agent on the line: the whisper, then the customer.
    async fn with_agent(&self, agent_leg: &mut Leg, agent: &str) -> Progress {
        let cb = &self.callback;
        let prompts = &self.ctx.prompts;
        let mut agent_list = Playlist::default();
        let mut whisper = vec!["callback/for".to_owned()];
        whisper.extend(
            cb.number
                .chars()
                .filter(char::is_ascii_digit)
                .map(|d| format!("digits/{d}")),
        );
        let minutes = waited(cb).as_secs().div_ceil(60).max(1);
        whisper.push("callback/waited".into());
        crate::flow::run::number_prompts(minutes as i64, &mut whisper);
        whisper.push(
            if minutes == 1 {
                "queue/minute"
            } else {
                "queue/minutes"
            }
            .into(),
        );
        info!(%agent, callback = cb.id, number = %cb.number, minutes, "callback whisper");
        let mut whispering = self.config.whisper
            && agent_list
                .start(WHISPER, whisper, &mut agent_leg.media, prompts)
                .is_none();
        while whispering {
            match agent_leg.next().await {
                LegEvent::Media(MediaEvent::PlaybackDone { token }) => {
                    whispering =
                        agent_list.on_done(token, &mut agent_leg.media, prompts) != Some(WHISPER);
                }
                LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended) | LegEvent::Gone => {
                    info!(%agent, "the agent hung up during the whisper");
                    return Progress::Failed {
                        attempt: None,
                        outcome: "agent-hung-up",
                    };
                }
                _ => {}
            }
        }
        let music = self
            .ctx
            .config
            .queues
            .get(&cb.queue)
            .map(|q| q.music.clone())
            .unwrap_or_else(|| "music/default".into());
        agent_list.start_then_loop(Vec::new(), music, &mut agent_leg.media, prompts);
        // A free call slot on the trunk; the agent waits with music.
        let slot = tokio::select! {
            permit = self.slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return Progress::Failed { attempt: None, outcome: "failed" },
            },
            _ = wait_for_hangup(agent_leg) => {
                return Progress::Failed { attempt: None, outcome: "agent-hung-up" };
            }
        };
        let (attempt, n) = match self.start_attempt(Some(agent)).await {
            Ok(v) => v,
            Err(failed) => return failed,
        };
        let outcome = self
            .call_customer(agent_leg, &mut agent_list, attempt, n)
            .await;
        drop(slot);
        outcome
    }

    async fn call_customer(
        &self,
        agent_leg: &mut Leg,
        agent_list: &mut Playlist,
        attempt: i64,
        n: u32,
    ) -> Progress {
        let cb = &self.callback;
        let prompts = &self.ctx.prompts;
        let failed = |outcome| Progress::Failed {
            attempt: Some(attempt),
            outcome,
        };
        let media = match self.ctx.media.open_beside(&agent_leg.media) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "no media for the customer leg");
                return failed("failed");
            }
        };
        let mut customer = self.dial_customer(media, n);
        let mut guard = Playlist::default();
        let mut confirm_by: Option<Instant> = None;
        let mut connected = false;
        loop {
            tokio::select! {
                ev = agent_leg.next() => match ev {
                    LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended) | LegEvent::Gone => {
                        info!(callback = cb.id, "the agent hung up");
                        if let Some(d) = customer.dialog() {
                            d.hangup();
                        }
                        drop(customer);
                        return if connected { Progress::Done } else { failed("agent-hung-up") };
                    }
                    LegEvent::Media(MediaEvent::PlaybackDone { token }) => {
                        agent_list.on_done(token, &mut agent_leg.media, prompts);
                    }
                    _ => {}
                },
                ev = customer.next() => match ev {
                    LegEvent::Answered { sdp: answer, .. } => {
                        match self.customer_answered(&mut customer, &mut guard, answer.as_deref()) {
                            Ok(by) => confirm_by = Some(by),
                            Err(outcome) => return failed(outcome),
                        }
                    }
                    LegEvent::Rejected(status) => {
                        info!(callback = cb.id, status, "the customer's side refused the call");
                        return failed(refusal(status));
                    }
                    LegEvent::NoAnswer => {
                        info!(callback = cb.id, "the customer did not answer");
                        if let Some(d) = customer.dialog() {
                            d.hangup();
                        }
                        return failed("no-answer");
                    }
                    LegEvent::Failed(why) => {
                        warn!(callback = cb.id, error = %why, "the callback could not be placed");
                        return failed("failed");
                    }
                    LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended) | LegEvent::Gone => {
                        info!(callback = cb.id, "the customer hung up");
                        return if connected { Progress::Done } else { failed("not-confirmed") };
                    }
                    LegEvent::Dialog(DialogEvent::Info { content_type, body })
                        if !connected
                            && customer.bridged
                            && dtmf::parse_info(&content_type, &body)
                                .is_some_and(|d| d.as_char() == '1') =>
                    {
                        connected = true;
                        self.connect(agent_leg, agent_list, &mut customer, &mut guard, attempt);
                    }
                    LegEvent::Media(MediaEvent::Digit(d, _))
                        if !connected && customer.bridged && d.as_char() == '1' =>
                    {
                        connected = true;
                        self.connect(agent_leg, agent_list, &mut customer, &mut guard, attempt);
                    }
                    LegEvent::Media(MediaEvent::PlaybackDone { token }) => {
                        guard.on_done(token, &mut customer.media, prompts);
                    }
                    _ => {}
                },
                _ = crate::leg::sleep_until_opt(confirm_by.filter(|_| !connected)) => {
                    info!(callback = cb.id, "the customer did not press 1 (an answering machine?)");
                    if let Some(d) = customer.dialog() {
                        d.hangup();
                    }
                    return failed("not-confirmed");
                }
            }
        }
    }

    /// Counts the attempt in the store and reports it, before the INVITE
    /// leaves: a crash from then on cannot lose it or make it happen twice
    /// unawares. `Err` is the outcome when it could not be written (then
    /// nobody is dialled).
    pub(super) async fn start_attempt(&self, agent: Option<&str>) -> Result<(i64, u32), Progress> {
        let cb = &self.callback;
        let (attempt, n) = self
            .ctx
            .store
            .start_attempt(cb.id, agent.map(str::to_owned), jiff::Timestamp::now())
            .await
            .map_err(|e| {
                warn!(error = %e, callback = cb.id, "the attempt could not be recorded; not dialling");
                Progress::Failed {
                    attempt: None,
                    outcome: "failed",
                }
            })?;
        self.report(Progress::Started {
            attempt,
            n,
            agent: agent.unwrap_or_default().to_owned(),
        });
        Ok((attempt, n))
    }

    /// Calls the customer over the trunk (as the trunk's account and caller ID).
    pub(super) fn dial_customer(&self, media: crate::media::MediaChannel, n: u32) -> Leg {
        let cb = &self.callback;
        let mut origin = Origin::new(self.ctx.config.media_address());
        let offer = sdp::offer(&mut origin, media.local_port());
        let target = customer_uri(&cb.number, &self.outbound.proxy);
        let auth = match (&self.outbound.username, &self.outbound.password) {
            (Some(u), Some(p)) => Some(Account {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => None,
        };
        let call = OutboundCall {
            target: target.clone(),
            from_user: self.outbound.caller_id.clone(),
            from_display: None,
            sdp: offer,
            via: None,
            headers: Vec::new(),
            auth,
        };
        info!(callback = cb.id, attempt = n, %target, trunk = %self.trunk, "calling the customer back");
        let mut customer = Leg::new(
            Purpose::Callback,
            cb.number.clone(),
            media,
            origin,
            self.config.ring_timeout,
        );
        customer.dial(&self.ctx.dialer, call, None);
        customer
    }

    /// The customer answered: their stream is set up and they are asked to
    /// press 1; by when they must. `Err` with the outcome when unusable.
    pub(super) fn customer_answered(
        &self,
        customer: &mut Leg,
        guard: &mut Playlist,
        answer: Option<&[u8]>,
    ) -> Result<Instant, &'static str> {
        let cb = &self.callback;
        let prompts = &self.ctx.prompts;
        let Some(neg) =
            answer.and_then(|b| sdp::parse(b).and_then(|a| sdp::accept_answer(&a)).ok())
        else {
            warn!(
                callback = cb.id,
                "the customer's side answered without usable SDP"
            );
            if let Some(d) = customer.dialog() {
                d.hangup();
            }
            return Err("failed");
        };
        customer
            .media
            .configure(stream_of(&neg, self.symmetric, customer.peer));
        customer.deadline = None;
        customer.bridged = true;
        let calls = &self.ctx.config.calls;
        customer.start_checks(calls.leg_check, calls.leg_check_timeout);
        info!(
            callback = cb.id,
            "the customer answered; asking them to press 1"
        );
        guard.start(
            GUARD,
            vec!["callback/this-is".into()],
            &mut customer.media,
            prompts,
        );
        let length = prompts
            .get("callback/this-is")
            .map_or(Duration::ZERO, |p| p.duration());
        Ok(Instant::now() + length + self.config.confirm_timeout)
    }

    /// The customer pressed 1: they and the agent are bridged.
    fn connect(
        &self,
        agent_leg: &mut Leg,
        agent_list: &mut Playlist,
        customer: &mut Leg,
        guard: &mut Playlist,
        attempt: i64,
    ) {
        agent_list.stop(&agent_leg.media);
        guard.stop(&customer.media);
        customer.media.bridge(&agent_leg.media);
        info!(
            callback = self.callback.id,
            "callback connected: customer and agent bridged"
        );
        self.report(Progress::Connected {
            attempt,
            agent: None,
        });
    }
}

/// The outcome a final refusal of the customer's side stands for.
pub(super) fn refusal(status: u16) -> &'static str {
    match status {
        486 | 600 | 603 => "busy",
        408 | 480 | 487 => "no-answer",
        _ => "failed",
    }
}

/// Waits until the leg's far end hangs up (other events are dropped).
pub(super) async fn wait_for_hangup(leg: &mut Leg) {
    loop {
        if let LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended) | LegEvent::Gone =
            leg.next().await
        {
            return;
        }
    }
}

/// How long the caller has kept their place (since they joined the queue).
pub(super) fn waited(cb: &Callback) -> Duration {
    Duration::try_from(jiff::Timestamp::now().duration_since(cb.queued_at)).unwrap_or_default()
}

/// `sip:+15551234567@carrier.example:5060` from the proxy `sip:carrier.example:5060`.
pub fn customer_uri(number: &str, proxy: &str) -> String {
    let rest = proxy
        .trim()
        .strip_prefix("sip:")
        .or_else(|| proxy.trim().strip_prefix("SIP:"))
        .unwrap_or(proxy.trim());
    // Any user part of the proxy URI is replaced by the number.
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("sip:{number}@{host}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_customer_is_called_at_the_number_on_the_trunks_proxy() {
        assert_eq!(
            super::customer_uri("+15551234567", "sip:127.0.0.1:5090"),
            "sip:+15551234567@127.0.0.1:5090"
        );
        assert_eq!(
            super::customer_uri("+15551234567", "sip:hotline@carrier.example"),
            "sip:+15551234567@carrier.example"
        );
    }
}
