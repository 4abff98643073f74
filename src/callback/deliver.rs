//! Carrying out one callback attempt: the legs, prompts, trunk slot and
//! store writes that the pure [`Delivery`] machine asks for, in both
//! orders (agent first, customer first), and what happens on them fed back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn};

use super::delivery::{Delivery, Do, In, Order, Setup, Side};
use super::Context;
use crate::acd::actor::{Offered, ToCall};
use crate::config::{CallbackConfig, Outbound};
use crate::events::Event as BusEvent;
use crate::leg::playlist::{self, Playlist};
use crate::leg::{sleep_until_opt, stream_of, Leg, LegEvent, Purpose};
use crate::media::MediaEvent;
use crate::sdp::{self, Origin};
use crate::sip::{Account, OutboundCall};
use crate::store::{AttemptOutcome, Callback};

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
        outcome: AttemptOutcome,
    },
    /// The customer and the agent are bridged: their legs' quality
    /// handles, for the delivery's record.
    Legs {
        customer: crate::media::QualityHandle,
        agent: crate::media::QualityHandle,
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

impl Attempt {
    pub(super) fn report(&self, p: Progress) {
        let _ = self.progress.send(p);
    }

    /// Runs the attempt to its end: the [`Delivery`] machine decides, this
    /// carries out. A customer-first attempt's offers come on `offers`.
    pub async fn run(self, mut offers: Option<mpsc::UnboundedReceiver<ToCall>>) {
        let order = match self.config.delivery {
            crate::config::Delivery::CustomerFirst => Order::CustomerFirst,
            _ => Order::AgentFirst,
        };
        // The customer is offered SRTP as the trunk's rule allows (keys
        // only when the trunk's proxy is reached over TLS, or said so).
        let secure = crate::uri::SipUri::parse(&self.outbound.proxy)
            .is_some_and(|u| crate::sip::trunk_client::wants_tls(&u));
        let customer_policy = sdp::crypto::Policy::for_trunk(&self.ctx.config, &self.trunk, secure);
        let key = sdp::crypto::KeySalt::random(sdp::crypto::Suite::AesCm128HmacSha1_80);
        let (customer_crypto, customer_savp) = sdp::crypto::offer_lines(customer_policy, key);
        let customer_offer = (customer_crypto.clone(), customer_savp);
        let mut d = Delivery::start(Setup {
            customer_crypto,
            customer_policy,
            order,
            acd_id: self.acd_id.clone(),
            id: self.callback.id,
            whisper: if self.config.whisper {
                whisper(&self.callback)
            } else {
                Vec::new()
            },
            music: self
                .ctx
                .config
                .queues
                .get(&self.callback.queue)
                .map(|q| q.music.clone())
                .unwrap_or_else(|| "music/default".into()),
            confirm_timeout: self.config.confirm_timeout,
            symmetric: self.symmetric,
            agents: self.agents.clone(),
            ring_timeout: self.ring_timeout,
        });
        let mut io = Io {
            customer_offer,
            ..Io::default()
        };
        loop {
            while let Some(step) = d.poll_output() {
                self.carry_out(step, &mut io).await;
                while let Some(input) = io.inputs.pop_front() {
                    d.handle(input, std::time::Instant::now());
                }
            }
            if d.is_over() {
                break;
            }
            let deadline = d.poll_timeout().map(Instant::from_std);
            let input = tokio::select! {
                ev = next_of(io.agent.as_mut()) => io.input_of(Side::Agent, ev).await,
                ev = next_of(io.customer.as_mut()) => io.input_of(Side::Customer, ev).await,
                permit = take_slot(io.slot_wait.as_mut()) => {
                    io.slot_wait = None;
                    match permit {
                        Ok(p) => {
                            io.slot = Some(p);
                            Some(In::Slot)
                        }
                        Err(_) => Some(In::NoSlot),
                    }
                }
                offer = recv_offer(offers.as_mut()) => match offer {
                    Some(ToCall::Offer { agents, ring_timeout }) => Some(In::Offer { agents, ring_timeout }),
                    Some(ToCall::Away(_)) => None,
                    None => {
                        offers = None;
                        Some(In::OffersClosed)
                    }
                },
                _ = sleep_until_opt(deadline) => Some(In::Timeout),
            };
            if let Some(input) = input {
                d.handle(input, std::time::Instant::now());
            }
        }
        // The trunk's slot is freed with `io`, after the legs are ended.
    }

    /// Carries out one step; what follows at once goes to `io.inputs`.
    async fn carry_out(&self, step: Do, io: &mut Io) {
        match step {
            Do::RingAgents {
                agents,
                ring_timeout,
            } => match self
                .ring_agents(&agents, ring_timeout, io.customer.as_ref())
                .await
            {
                Ok(leg) => io.agent = Some((leg, Playlist::default())),
                Err(_) => io.inputs.push_back(In::AgentNoMedia),
            },
            Do::TakeSlot => io.slot_wait = Some(Box::pin(self.slots.clone().acquire_owned())),
            Do::Count { agent } => {
                let cb = &self.callback;
                let counted = self
                    .ctx
                    .store
                    .start_attempt(cb.id, agent, jiff::Timestamp::now())
                    .await;
                io.inputs.push_back(match counted {
                    Ok((attempt, n)) => In::Counted { attempt, n },
                    Err(e) => {
                        warn!(error = %e, callback = cb.id, "the attempt could not be recorded; not dialling");
                        In::NotCounted
                    }
                });
            }
            Do::DialCustomer { n } => {
                let media = match &io.agent {
                    Some((agent, _)) => self.ctx.media.open_beside(&agent.media).await,
                    None => self.ctx.media.open().await,
                };
                match media {
                    Ok(m) => {
                        let leg = self.dial_customer(m, n, &io.customer_offer);
                        io.customer = Some((leg, Playlist::default()));
                    }
                    Err(e) => {
                        warn!(error = %e, "no media for the customer leg");
                        io.inputs
                            .push_back(In::Leg(Side::Customer, LegEvent::Failed(e.to_string())));
                    }
                }
            }
            Do::Connect {
                side,
                negotiated,
                symmetric,
            } => {
                if let Some((leg, _)) = io.side(side) {
                    leg.media
                        .configure(stream_of(&negotiated, symmetric, leg.peer))
                        .await;
                    let calls = &self.ctx.config.calls;
                    leg.connected(calls.leg_check, calls.leg_check_timeout);
                }
            }
            Do::ConnectBrowser { stream } => {
                if let Some((leg, _)) = io.agent.as_mut() {
                    leg.media.configure(stream).await;
                    let calls = &self.ctx.config.calls;
                    leg.connected(calls.leg_check, calls.leg_check_timeout);
                }
            }
            Do::Play {
                side,
                token,
                prompts,
            } => {
                if let Some((leg, list)) = io.side(side) {
                    let mut ops = Vec::new();
                    let done = list.start(token, prompts, &self.ctx.prompts, &mut ops);
                    playlist::apply(&leg.media, ops).await;
                    if let Some(done) = done {
                        io.inputs.push_back(In::PlayDone(side, done));
                    }
                }
            }
            Do::Music { side, music } => {
                if let Some((leg, list)) = io.side(side) {
                    let mut ops = Vec::new();
                    list.start_then_loop(Vec::new(), music, &self.ctx.prompts, &mut ops);
                    playlist::apply(&leg.media, ops).await;
                }
            }
            Do::StopPlay(side) => {
                if let Some((leg, list)) = io.side(side) {
                    let mut ops = Vec::new();
                    list.stop(&mut ops);
                    playlist::apply(&leg.media, ops).await;
                }
            }
            Do::Bridge => {
                if let (Some((agent, _)), Some((customer, _))) = (&io.agent, &io.customer) {
                    customer.media.bridge(&agent.media).await;
                    self.report(Progress::Legs {
                        customer: customer.media.quality(),
                        agent: agent.media.quality(),
                    });
                }
            }
            Do::Hangup(side) => {
                let leg = match side {
                    Side::Agent => io.agent.take(),
                    Side::Customer => io.customer.take(),
                };
                // Dropping a leg that still rings cancels it.
                if let Some(d) = leg.as_ref().and_then(|(l, _)| l.dialog()) {
                    d.hangup().await;
                }
            }
            Do::Acd(input) => self.ctx.acd.send(input).await,
            Do::Report(p) => self.report(p),
        }
    }

    /// Rings the agents' phones with the callback's screen pop; on the
    /// customer's media clock when they are already on the line.
    async fn ring_agents(
        &self,
        agents: &[Offered],
        ring_timeout: Duration,
        customer: Option<&(Leg, Playlist)>,
    ) -> Result<Leg, String> {
        let media = match customer {
            Some((c, _)) => self.ctx.media.open_beside(&c.media).await,
            None => self.ctx.media.open().await,
        }
        .map_err(|e| {
            warn!(error = %e, "no media for the callback's agent leg");
            e.to_string()
        })?;
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
        let offered = BusEvent::AgentOffered {
            call_id: self.acd_id.clone(),
            agents: names.clone(),
            caller: cb.number.clone(),
            queue: cb.queue.clone(),
            wait_ms: waited.as_millis() as u64,
            vars,
            history: Vec::new(),
        };
        // The desktop's ring shows the same pop.
        let pop = serde_json::to_value(&offered).unwrap_or_default();
        self.ctx.events.publish(offered);
        let mut leg = Leg::new(
            Purpose::Agents,
            names.join(","),
            media,
            origin,
            ring_timeout,
        );
        // Browser legs carry G.711 (µ-law); the bridge converts to the
        // customer's A-law if need be.
        let codec = sdp::Codec::Pcmu;
        let webrtc = self.ctx.config.webrtc.as_ref();
        for a in agents {
            // At the desktop, the browser is the agent's phone.
            if a.browser {
                let phones = &self.ctx.phones;
                let ice = webrtc
                    .map(|w| w.ice_servers_for(&a.agent))
                    .unwrap_or_default();
                leg.ring_desktop(
                    &self.ctx.media,
                    phones,
                    &self.acd_id,
                    a.agent.clone(),
                    codec,
                    ice,
                    pop.clone(),
                )
                .await;
                continue;
            }
            for contact in &a.contacts {
                info!(agent = %a.agent, contact = %contact.uri, callback = cb.id, "ringing the agent for a callback");
                let call = OutboundCall {
                    target: contact.uri.clone(),
                    from_user: cb.number.clone(),
                    from_display: Some(format!("Callback {}", cb.number)),
                    sdp: offer.clone(),
                    via: Some(contact.source),
                    over_tcp: contact.tcp,
                    headers: headers.clone(),
                    auth: None,
                    crypto: Vec::new(),
                    savp: false,
                    webrtc: contact.ws,
                };
                let agent = Some(a.agent.clone());
                leg.dial_phone(&self.ctx.media, &self.ctx.dialer, call, agent, codec)
                    .await;
            }
        }
        Ok(leg)
    }

    /// Calls the customer over the trunk (as the trunk's account and caller ID).
    fn dial_customer(
        &self,
        media: crate::media::MediaChannel,
        n: u32,
        (crypto, savp): &(Vec<sdp::crypto::Crypto>, bool),
    ) -> Leg {
        let cb = &self.callback;
        let mut origin = Origin::new(self.ctx.config.media_address());
        let offer = sdp::offer_with(&mut origin, media.local_port(), crypto, *savp);
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
            over_tcp: false,
            headers: Vec::new(),
            auth,
            crypto: Vec::new(),
            savp: false,
            webrtc: false,
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
}

/// A trunk slot being waited for.
type SlotWait = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>,
>;

/// The attempt's legs (each with its playlist), its trunk slot, and what
/// carrying out a step gave back at once.
#[derive(Default)]
struct Io {
    agent: Option<(Leg, Playlist)>,
    customer: Option<(Leg, Playlist)>,
    slot_wait: Option<SlotWait>,
    slot: Option<OwnedSemaphorePermit>,
    inputs: VecDeque<In>,
    /// The SDES lines (and RTP/SAVP or not) the customer is offered.
    customer_offer: (Vec<sdp::crypto::Crypto>, bool),
}

impl Io {
    fn side(&mut self, side: Side) -> Option<&mut (Leg, Playlist)> {
        match side {
            Side::Agent => self.agent.as_mut(),
            Side::Customer => self.customer.as_mut(),
        }
    }

    /// A leg's event for the machine; a prompt's end goes to its playlist
    /// first (only a sequence's end is the machine's).
    async fn input_of(&mut self, side: Side, ev: LegEvent) -> Option<In> {
        if let LegEvent::Media(MediaEvent::PlaybackDone { token }) = ev {
            let (leg, list) = self.side(side)?;
            let mut ops = Vec::new();
            let done = list.on_done(token, &mut ops);
            playlist::apply(&leg.media, ops).await;
            return done.map(|done| In::PlayDone(side, done));
        }
        Some(In::Leg(side, ev))
    }
}

/// The next event of a leg, or never without one.
async fn next_of(leg: Option<&mut (Leg, Playlist)>) -> LegEvent {
    crate::leg::next_of(leg.map(|(l, _)| l)).await
}

async fn take_slot(wait: Option<&mut SlotWait>) -> Result<OwnedSemaphorePermit, AcquireError> {
    match wait {
        Some(w) => w.await,
        None => std::future::pending().await,
    }
}

async fn recv_offer(offers: Option<&mut mpsc::UnboundedReceiver<ToCall>>) -> Option<ToCall> {
    match offers {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the agent hears before the customer is called: "callback for
/// 5 5 5 1 2 3 4, who waited 7 minutes".
fn whisper(cb: &Callback) -> Vec<String> {
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
    whisper
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
