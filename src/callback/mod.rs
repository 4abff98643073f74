//! Callbacks: a waiting caller hangs up and keeps their place; when their
//! virtual entry reaches the head of the queue and an agent is reserved,
//! the customer is called back over the queue's trunk and bridged.
//!
//! One service task owns every pending callback: it puts each in its
//! queue (as a virtual entry, with the caller's original place) when it
//! may be dialled — its retry delay over, the queue's callback schedule
//! open — starts one delivery per offer, and writes each outcome. Only one
//! attempt per callback runs at a time, and each follows an agent's
//! reservation, so no more customers are dialled than agents wait for them.

pub mod deliver;
pub mod delivery;
pub mod offer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{info, warn};

use crate::acd::actor::ToCall;
use crate::acd::Input as AcdInput;
use crate::config::{CallbackConfig, Delivery};
use crate::store::{AttemptEnd, AttemptOutcome, Callback, CallbackState};
use deliver::{Attempt, Progress};

/// The ACD's name for a callback's virtual entry.
pub fn acd_id(id: i64) -> String {
    format!("callback-{id}")
}

/// A callback as the operations API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallbackView {
    #[serde(flatten)]
    pub callback: Callback,
    /// `waiting` (for its retry time or the schedule), `queued` (its
    /// virtual entry waits for an agent), `delivering`.
    pub phase: Phase,
}

/// Why an operator's change to a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("no pending callback {0}")]
    NotPending(i64),
    #[error("callback {0} is being delivered now")]
    Delivering(i64),
    #[error("the store: {0}")]
    Store(String),
    #[error("the callback service has stopped")]
    Stopped,
}

enum Request {
    Booked {
        callback: Box<Callback>,
        replaces: Option<String>,
    },
    Offer(i64, ToCall),
    Progress(i64, Progress),
    List(oneshot::Sender<Vec<CallbackView>>),
    Cancel(i64, oneshot::Sender<Result<(), CallbackError>>),
    Reschedule(i64, Timestamp, oneshot::Sender<Result<(), CallbackError>>),
}

/// A handle to the callback service; cheap to clone.
#[derive(Clone)]
pub struct CallbackHandle {
    tx: mpsc::Sender<Request>,
}

/// The service's side of the channel, until it starts.
pub struct Inbox(mpsc::Receiver<Request>);

/// Requests waiting for the service before a sender waits for room.
const INBOX: usize = 1024;

/// A handle, and the inbox to start the service with.
pub fn channel() -> (CallbackHandle, Inbox) {
    let (tx, rx) = mpsc::channel(INBOX);
    (CallbackHandle { tx }, Inbox(rx))
}

impl CallbackHandle {
    /// A request was written to the store: it takes over the caller's
    /// queue entry (`replaces`, their Call-ID).
    /// Never dropped: the sender waits while the service's inbox is full.
    pub async fn booked(&self, callback: Callback, replaces: Option<String>) {
        let _ = self
            .tx
            .send(Request::Booked {
                callback: Box::new(callback),
                replaces,
            })
            .await;
    }

    /// The pending callbacks.
    pub async fn list(&self) -> Vec<CallbackView> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::List(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Cancels a pending callback (not one being delivered).
    pub async fn cancel(&self, id: i64) -> Result<(), CallbackError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Cancel(id, tx))
            .await
            .map_err(|_| CallbackError::Stopped)?;
        rx.await.map_err(|_| CallbackError::Stopped)?
    }

    /// Moves a pending callback's next attempt to `at` (it keeps its place
    /// in the queue once that time comes).
    pub async fn reschedule(&self, id: i64, at: Timestamp) -> Result<(), CallbackError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Reschedule(id, at, tx))
            .await
            .map_err(|_| CallbackError::Stopped)?;
        rx.await.map_err(|_| CallbackError::Stopped)?
    }
}

/// Where a pending callback is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Not in the queue: its next attempt's time or the schedule has not come.
    Waiting,
    /// Its virtual entry waits in the ACD.
    Queued,
    /// An attempt is going on.
    Delivering,
}

struct Entry {
    callback: Callback,
    phase: Phase,
    /// The caller's own queue entry, taken over on the first submission.
    replaces: Option<String>,
    /// The attempt going on, once the customer is being dialled.
    attempt: Option<i64>,
    /// The ACD's offers, to a customer-first attempt under way.
    offers: Option<mpsc::UnboundedSender<ToCall>>,
    /// The last attempt's agent, start, and when the customer was connected.
    agent: Option<String>,
    started_at: Option<Timestamp>,
    connected_at: Option<Timestamp>,
    /// The connected attempt's legs: the customer's and the agent's.
    legs: Option<(crate::media::QualityHandle, crate::media::QualityHandle)>,
}

impl Entry {
    fn new(callback: Callback, replaces: Option<String>) -> Entry {
        Entry {
            callback,
            phase: Phase::Waiting,
            replaces,
            attempt: None,
            offers: None,
            agent: None,
            started_at: None,
            connected_at: None,
            legs: None,
        }
    }

    /// The delivery's own record (its outcome `callback-…`), for the
    /// reports: it has no `queued_at`, so it is no second queued call.
    fn record(&self, ended: CallbackState, trunk: &str) -> crate::store::Cdr {
        let c = &self.callback;
        let now = Timestamp::now();
        let ms = |a: Timestamp, b: Timestamp| b.duration_since(a).as_millis() as i64;
        let legs: Vec<crate::media::quality::LegQuality> = self
            .legs
            .iter()
            .flat_map(|(customer, agent)| {
                [
                    crate::media::quality::LegHandle {
                        leg: "customer",
                        who: None,
                        handle: customer.clone(),
                    },
                    crate::media::quality::LegHandle {
                        leg: "agent",
                        who: self.agent.clone(),
                        handle: agent.clone(),
                    },
                ]
            })
            .map(|l| l.now())
            .collect();
        crate::media::quality::observe(&legs);
        let (quality, mos, agent_mos) = crate::media::quality::summary(&legs)
            .map_or((None, None, None), |(q, m, a)| (Some(q), m, a));
        crate::store::Cdr {
            quality,
            mos,
            agent_mos,
            call_id: acd_id(c.id),
            caller: c.number.clone(),
            dialed: c.number.clone(),
            trunk: trunk.to_owned(),
            arrived_at: Some(self.started_at.unwrap_or(now)),
            answered_at: self.connected_at,
            queue: Some(c.queue.clone()),
            agent: self.agent.clone(),
            bridged_at: self.connected_at,
            ended_at: Some(now),
            outcome: crate::store::Outcome::CallbackDelivery(ended),
            ended_by: String::new(),
            // The customer's whole wait: from joining the queue to talking.
            wait_ms: self.connected_at.map(|t| ms(c.queued_at, t)),
            talk_ms: self.connected_at.map(|t| ms(t, now)),
            vars: c.vars.clone(),
            ..Default::default()
        }
    }
}

/// What the callback service works with: the engine's handles it needs,
/// and nothing of the call task's.
#[derive(Clone)]
pub struct Context {
    /// The latest config (taken again before each request and tick).
    pub config: Arc<crate::config::Config>,
    /// Where new versions of the config come from.
    pub live: crate::loader::running::Live,
    pub prompts: Arc<crate::media::PromptCache>,
    pub media: Arc<crate::media::MediaEngine>,
    pub store: crate::store::StoreHandle,
    pub dialer: crate::sip::Dialer,
    pub acd: crate::acd::actor::AcdHandle,
    pub events: crate::events::EventBus,
    /// Agents' desktop pages: a callback rings an agent's browser there.
    pub phones: crate::leg::browser::BrowserPhones,
}

struct Service {
    ctx: Context,
    tx: mpsc::Sender<Request>,
    /// What the service tells the ACD, sent in order after each request.
    to_acd: Vec<crate::acd::actor::Request>,
    entries: BTreeMap<i64, Entry>,
    /// Each trunk's free call slots, with their count (`outbound.max-calls`).
    slots: HashMap<String, (usize, Arc<Semaphore>)>,
}

/// The longest a customer's phone may ring, over every queue: after a
/// crash, an interrupted attempt's callback waits this long from its start.
fn longest_ring(ctx: &Context) -> Duration {
    ctx.config
        .queues
        .values()
        .filter_map(|q| q.callback.as_ref())
        .map(|c| c.ring_timeout)
        .max()
        .unwrap_or(Duration::from_secs(30))
        + Duration::from_secs(5)
}

/// Each outbound trunk's call slots (`outbound.max-calls`): those of
/// `kept` whose count did not change, new ones for the rest.
fn trunk_slots(
    config: &crate::config::Config,
    kept: &HashMap<String, (usize, Arc<Semaphore>)>,
) -> HashMap<String, (usize, Arc<Semaphore>)> {
    config
        .trunks
        .iter()
        .filter_map(|t| {
            let max = t.outbound.as_ref()?.max_calls.max(1);
            let slot = match kept.get(&t.name) {
                Some((m, s)) if *m == max => s.clone(),
                _ => Arc::new(Semaphore::new(max)),
            };
            Some((t.name.clone(), (max, slot)))
        })
        .collect()
}

/// Reloads the pending callbacks from the store and starts the service.
pub async fn start(ctx: Context, handle: &CallbackHandle, inbox: Inbox) {
    let pending = match ctx
        .store
        .recover_callbacks(Timestamp::now(), longest_ring(&ctx))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "pending callbacks not read from the store");
            Vec::new()
        }
    };
    if !pending.is_empty() {
        info!(count = pending.len(), "pending callbacks restored");
    }
    let slots = trunk_slots(&ctx.config, &HashMap::new());
    let mut service = Service {
        ctx,
        tx: handle.tx.clone(),
        to_acd: Vec::new(),
        entries: BTreeMap::new(),
        slots,
    };
    for callback in pending {
        service
            .entries
            .insert(callback.id, Entry::new(callback, None));
    }
    service.publish_pending();
    tokio::spawn(service.run(inbox.0));
}

impl Service {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                req = rx.recv() => match req {
                    None => return,
                    Some(req) => {
                        self.follow_config();
                        self.on_request(req).await
                    }
                },
                _ = tick.tick() => {
                    self.follow_config();
                    self.on_tick().await
                }
            }
            self.flush_acd().await;
        }
    }

    /// Takes the latest config: callbacks booked and attempts started from
    /// now on use it. A trunk's `max-calls` that changed gets a new count
    /// (attempts in progress finish on the old one).
    fn follow_config(&mut self) {
        let config = self.ctx.live.borrow().config.clone();
        if Arc::ptr_eq(&config, &self.ctx.config) {
            return;
        }
        self.slots = trunk_slots(&config, &self.slots);
        self.ctx.config = config;
    }

    /// Queues an input for the ACD (sent, in order, after this request).
    fn tell_acd(&mut self, input: AcdInput) {
        self.to_acd.push(crate::acd::actor::Request::Input(input));
    }

    /// Sends what the service told the ACD; waits while its inbox is full.
    async fn flush_acd(&mut self) {
        if !self.to_acd.is_empty() {
            self.ctx.acd.send_all(self.to_acd.drain(..)).await;
        }
    }

    fn config_of(&self, queue: &str) -> Option<&CallbackConfig> {
        self.ctx.config.queues.get(queue)?.callback.as_ref()
    }

    fn publish_pending(&self) {
        metrics::gauge!("hotline_callbacks_pending").set(self.entries.len() as f64);
    }

    fn publish(&self, event: crate::events::Event) {
        self.ctx.events.publish(event);
    }

    /// Queues the delivery's record (the store keeps it until written).
    fn keep_record(&self, e: &Entry, ended: CallbackState) {
        let trunk = self
            .config_of(&e.callback.queue)
            .map(|c| c.trunk.clone())
            .unwrap_or_default();
        self.ctx.store.save_cdr(e.record(ended, &trunk));
    }

    async fn on_request(&mut self, req: Request) {
        match req {
            Request::Booked { callback, replaces } => {
                let id = callback.id;
                info!(callback = id, queue = %callback.queue, number = %callback.number, "callback booked");
                self.publish(crate::events::Event::CallbackBooked {
                    id,
                    call_id: callback.call_id.clone(),
                    queue: callback.queue.clone(),
                    number: callback.number.clone(),
                });
                self.entries.insert(id, Entry::new(*callback, replaces));
                self.publish_pending();
                // At once: the caller's place must not be left empty.
                self.submit_due(Timestamp::now());
            }
            Request::Offer(
                id,
                ToCall::Offer {
                    agents,
                    ring_timeout,
                },
            ) => self.deliver(id, agents, ring_timeout),
            Request::Offer(id, ToCall::Away(why)) => {
                // Virtual entries are never turned away; if one is, it is
                // put back on the next tick.
                warn!(callback = id, ?why, "the callback's entry left the queue");
                if let Some(e) = self.entries.get_mut(&id) {
                    e.phase = Phase::Waiting;
                }
            }
            Request::Progress(id, p) => self.on_progress(id, p).await,
            Request::List(reply) => {
                let views = self
                    .entries
                    .values()
                    .map(|e| CallbackView {
                        callback: e.callback.clone(),
                        phase: e.phase,
                    })
                    .collect();
                let _ = reply.send(views);
            }
            Request::Cancel(id, reply) => {
                let _ = reply.send(
                    self.end_without_attempt(
                        id,
                        CallbackState::Cancelled,
                        AttemptOutcome::Cancelled,
                    )
                    .await,
                );
            }
            Request::Reschedule(id, at, reply) => {
                let result = match self.entries.get(&id).map(|e| e.phase) {
                    None => Err(CallbackError::NotPending(id)),
                    Some(Phase::Delivering) => Err(CallbackError::Delivering(id)),
                    Some(phase) => match self.ctx.store.reschedule_callback(id, at).await {
                        Ok(true) => {
                            if phase == Phase::Queued {
                                self.tell_acd(AcdInput::Leave { call: acd_id(id) });
                            }
                            if let Some(e) = self.entries.get_mut(&id) {
                                e.callback.next_attempt_at = Some(at);
                                e.phase = Phase::Waiting;
                            }
                            info!(callback = id, %at, "callback rescheduled");
                            Ok(())
                        }
                        Ok(false) => Err(CallbackError::NotPending(id)),
                        Err(e) => Err(CallbackError::Store(e.to_string())),
                    },
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Ends a callback that is not being delivered (expired, cancelled).
    async fn end_without_attempt(
        &mut self,
        id: i64,
        state: CallbackState,
        outcome: AttemptOutcome,
    ) -> Result<(), CallbackError> {
        let phase = match self.entries.get(&id) {
            None => return Err(CallbackError::NotPending(id)),
            Some(e) if e.phase == Phase::Delivering => return Err(CallbackError::Delivering(id)),
            Some(e) => e.phase,
        };
        match self
            .ctx
            .store
            .finish_callback(id, state, outcome, Timestamp::now())
            .await
        {
            Ok(_) => {}
            Err(e) => return Err(CallbackError::Store(e.to_string())),
        }
        if phase == Phase::Queued {
            self.tell_acd(AcdInput::Leave { call: acd_id(id) });
        }
        if let Some(e) = self.entries.remove(&id) {
            self.keep_record(&e, state);
        }
        self.publish_pending();
        info!(callback = id, %outcome, "callback ended");
        self.publish(crate::events::Event::CallbackEnded {
            id,
            state: state.as_str().to_owned(),
            outcome: outcome.to_string(),
        });
        Ok(())
    }

    async fn on_tick(&mut self) {
        let now = Timestamp::now();
        let expired: Vec<i64> = self
            .entries
            .values()
            .filter(|e| e.phase != Phase::Delivering)
            .filter(|e| {
                self.config_of(&e.callback.queue).is_some_and(|c| {
                    let age = now.duration_since(e.callback.created_at);
                    Duration::try_from(age).is_ok_and(|age| age >= c.expire_after)
                })
            })
            .map(|e| e.callback.id)
            .collect();
        for id in expired {
            info!(callback = id, "callback expired undelivered");
            let _ = self
                .end_without_attempt(id, CallbackState::Expired, AttemptOutcome::Expired)
                .await;
        }
        self.submit_due(now);
        // Its entries are in the queue before their places are asked for.
        self.flush_acd().await;
        self.start_heads().await;
    }

    /// Puts in the queue every waiting callback whose time has come and
    /// whose schedule is open; takes out queued ones whose schedule closed.
    fn submit_due(&mut self, now: Timestamp) {
        let mut submit = Vec::new();
        let mut withdraw = Vec::new();
        for e in self.entries.values() {
            let cfg = self.config_of(&e.callback.queue);
            let open = cfg
                .and_then(|c| c.schedule.as_ref())
                .and_then(|s| self.ctx.config.schedules.get(s))
                .is_none_or(|s| s.is_open(now));
            if cfg.is_none() {
                // Its queue no longer offers callbacks (the config changed):
                // it waits, and an operator may cancel it.
                continue;
            }
            match e.phase {
                Phase::Waiting if open && e.callback.next_attempt_at.is_none_or(|t| t <= now) => {
                    submit.push(e.callback.id)
                }
                Phase::Queued if !open => withdraw.push(e.callback.id),
                _ => {}
            }
        }
        for id in withdraw {
            info!(
                callback = id,
                "the callback schedule closed; the callback waits for it"
            );
            self.tell_acd(AcdInput::Leave { call: acd_id(id) });
            if let Some(e) = self.entries.get_mut(&id) {
                e.phase = Phase::Waiting;
            }
        }
        for id in submit {
            self.submit(id);
        }
        // A callback booked while it may not be dialled yet (its schedule
        // is closed): the caller's own entry must not wait on without them.
        for e in self.entries.values_mut() {
            if e.phase == Phase::Waiting {
                if let Some(call) = e.replaces.take() {
                    self.to_acd
                        .push(crate::acd::actor::Request::Input(AcdInput::Leave { call }));
                }
            }
        }
    }

    /// The callback's virtual entry joins its queue at the caller's place.
    fn submit(&mut self, id: i64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let c = &e.callback;
        let waited =
            Duration::try_from(Timestamp::now().duration_since(c.queued_at)).unwrap_or_default();
        let (link, mut waiter) = crate::acd::actor::link();
        self.to_acd.push(crate::acd::actor::Request::Join(
            AcdInput::Callback {
                call: acd_id(id),
                queue: c.queue.clone(),
                priority: c.priority,
                skills: c.skills.clone(),
                caller: c.number.clone(),
                waited,
                replaces: e.replaces.take(),
            },
            link,
        ));
        e.phase = Phase::Queued;
        let inbox = self.tx.clone();
        tokio::spawn(async move {
            while let Some(m) = waiter.offers.recv().await {
                if inbox.send(Request::Offer(id, m)).await.is_err() {
                    return;
                }
            }
        });
    }

    /// An agent is reserved for the callback: one attempt starts.
    fn deliver(
        &mut self,
        id: i64,
        agents: Vec<crate::acd::actor::Offered>,
        ring_timeout: Duration,
    ) {
        let Some(e) = self.entries.get_mut(&id) else {
            // Cancelled or expired meanwhile: its agents are freed.
            self.tell_acd(AcdInput::Leave { call: acd_id(id) });
            return;
        };
        if let Some(tx) = &e.offers {
            // A customer-first attempt: the customer waits for this agent.
            let offer = ToCall::Offer {
                agents,
                ring_timeout,
            };
            if tx.send(offer).is_err() {
                self.tell_acd(AcdInput::NoAnswer { call: acd_id(id) });
            }
            return;
        }
        if e.phase == Phase::Delivering {
            warn!(
                callback = id,
                "an offer for a callback already being delivered; refused"
            );
            self.tell_acd(AcdInput::NoAnswer { call: acd_id(id) });
            return;
        }
        let queue = e.callback.queue.clone();
        let Some(cfg) = self.config_of(&queue).cloned() else {
            warn!(callback = id, %queue, "the queue no longer offers callbacks; the callback waits");
            self.tell_acd(AcdInput::Leave { call: acd_id(id) });
            if let Some(e) = self.entries.get_mut(&id) {
                e.phase = Phase::Waiting;
                e.callback.next_attempt_at = Some(Timestamp::now() + Duration::from_secs(60));
            }
            return;
        };
        let trunk = self.ctx.config.trunks.iter().find(|t| t.name == cfg.trunk);
        let symmetric = trunk.is_none_or(|t| t.symmetric_rtp);
        let (Some(outbound), Some(slots)) = (
            trunk.and_then(|t| t.outbound.clone()),
            self.slots.get(&cfg.trunk).map(|(_, s)| s.clone()),
        ) else {
            warn!(callback = id, trunk = %cfg.trunk, "the callback's trunk cannot place calls");
            return;
        };
        if self.ctx.dialer.trunk_unresolved(&cfg.trunk) {
            // The call would fail before reaching anyone: the callback
            // keeps its attempts and its place, and is tried again soon.
            warn!(callback = id, trunk = %cfg.trunk, proxy = %outbound.proxy, "the trunk's proxy does not resolve; the callback waits");
            self.tell_acd(AcdInput::Leave { call: acd_id(id) });
            if let Some(e) = self.entries.get_mut(&id) {
                e.phase = Phase::Waiting;
                e.callback.next_attempt_at = Some(Timestamp::now() + self.ctx.config.dns.retry);
            }
            return;
        }
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        e.phase = Phase::Delivering;
        let (ptx, mut prx) = mpsc::unbounded_channel();
        let attempt = Attempt {
            ctx: self.ctx.clone(),
            callback: e.callback.clone(),
            acd_id: acd_id(id),
            config: cfg.clone(),
            trunk: cfg.trunk.clone(),
            outbound,
            symmetric,
            agents,
            ring_timeout,
            slots,
            progress: ptx,
        };
        let inbox = self.tx.clone();
        tokio::spawn(async move {
            while let Some(p) = prx.recv().await {
                if inbox.send(Request::Progress(id, p)).await.is_err() {
                    return;
                }
            }
        });
        let offers = (cfg.delivery == Delivery::CustomerFirst).then(|| {
            let (otx, orx) = mpsc::unbounded_channel();
            if let Some(e) = self.entries.get_mut(&id) {
                e.offers = Some(otx);
            }
            orx
        });
        tokio::spawn(attempt.run(offers));
    }

    /// Customer first: a queued callback at the head of its queue is
    /// called now, before an agent is free.
    async fn start_heads(&mut self) {
        let candidates: Vec<i64> = self
            .entries
            .values()
            .filter(|e| e.phase == Phase::Queued)
            .filter(|e| {
                self.config_of(&e.callback.queue)
                    .is_some_and(|c| c.delivery == Delivery::CustomerFirst)
            })
            .map(|e| e.callback.id)
            .collect();
        for id in candidates {
            let head = self
                .ctx
                .acd
                .position(&acd_id(id))
                .await
                .is_some_and(|p| p.position == 1);
            let still_queued = self
                .entries
                .get(&id)
                .is_some_and(|e| e.phase == Phase::Queued);
            if head && still_queued {
                info!(
                    callback = id,
                    "the callback is at the head of its queue; calling the customer first"
                );
                self.deliver(id, Vec::new(), Duration::ZERO);
            }
        }
    }

    async fn on_progress(&mut self, id: i64, p: Progress) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        match p {
            Progress::AgentMissed => {
                // Its virtual entry is still in the queue, for the next agent.
                e.phase = Phase::Queued;
            }
            Progress::Started { attempt, n, agent } => {
                e.attempt = Some(attempt);
                e.callback.attempts = n;
                e.agent = (!agent.is_empty()).then_some(agent);
                e.started_at = Some(Timestamp::now());
                e.connected_at = None;
                e.legs = None;
                let number = e.callback.number.clone();
                metrics::counter!("hotline_callback_attempts_total").increment(1);
                self.publish(crate::events::Event::CallbackAttempt {
                    id,
                    attempt: n,
                    number,
                });
            }
            Progress::Connected { attempt, agent } => {
                if agent.is_some() {
                    e.agent = agent;
                }
                let end = AttemptEnd {
                    outcome: AttemptOutcome::Connected,
                    at: Timestamp::now(),
                    state: CallbackState::Completed,
                    next_attempt_at: None,
                };
                // Written at once: a crash during the conversation must not
                // call the customer again.
                if let Err(err) = self.ctx.store.end_attempt(attempt, end).await {
                    warn!(callback = id, error = %err, "the callback's completion was not stored");
                }
                if let Some(e) = self.entries.get_mut(&id) {
                    e.attempt = None;
                    e.connected_at = Some(Timestamp::now());
                }
                metrics::counter!("hotline_callbacks_total", "outcome" => "completed").increment(1);
                self.publish(crate::events::Event::CallbackEnded {
                    id,
                    state: "completed".into(),
                    outcome: AttemptOutcome::Connected.to_string(),
                });
            }
            Progress::Legs { customer, agent } => e.legs = Some((customer, agent)),
            Progress::Done => {
                if let Some(e) = self.entries.remove(&id) {
                    self.keep_record(&e, CallbackState::Completed);
                }
                self.publish_pending();
            }
            Progress::Failed { attempt, outcome } => {
                let queue = e.callback.queue.clone();
                let max = self.config_of(&queue).map_or(1, |c| c.max_attempts);
                let delay = self
                    .config_of(&queue)
                    .map_or(Duration::from_secs(120), |c| c.retry_delay);
                let Some(e) = self.entries.get_mut(&id) else {
                    return;
                };
                e.attempt = None;
                e.offers = None;
                let Some(attempt) = attempt else {
                    // Nobody was dialled (the agent hung up first, no slot):
                    // back in the queue at once, at its place.
                    e.phase = Phase::Waiting;
                    return;
                };
                let now = Timestamp::now();
                let last = e.callback.attempts >= max;
                let next = (!last).then(|| now + delay);
                let end = AttemptEnd {
                    outcome,
                    at: now,
                    state: if last {
                        CallbackState::Failed
                    } else {
                        CallbackState::Pending
                    },
                    next_attempt_at: next,
                };
                if let Err(err) = self.ctx.store.end_attempt(attempt, end).await {
                    warn!(callback = id, error = %err, "the attempt's outcome was not stored");
                }
                info!(
                    callback = id,
                    attempt = e.callback.attempts,
                    %outcome,
                    last,
                    "callback attempt failed"
                );
                if last {
                    if let Some(e) = self.entries.remove(&id) {
                        self.keep_record(&e, CallbackState::Failed);
                    }
                    self.publish_pending();
                    metrics::counter!("hotline_callbacks_total", "outcome" => "failed")
                        .increment(1);
                    self.publish(crate::events::Event::CallbackEnded {
                        id,
                        state: "failed".into(),
                        outcome: outcome.to_string(),
                    });
                } else {
                    e.phase = Phase::Waiting;
                    e.callback.next_attempt_at = next;
                    e.callback.outcome = Some(outcome.to_string());
                }
            }
        }
    }
}
