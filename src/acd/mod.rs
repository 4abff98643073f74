//! The ACD: queues, agents and their states, routing. `Acd` is pure — it
//! takes an input and `now` and returns what to do — and one actor task
//! ([`actor`]) owns it, so every queue and agent change happens in one
//! place, in order.
//!
//! Over 800 lines: agents' states, routing strategies, wait estimates and
//! the roster's changes on reload are in their own files; what stays is the one `step` over queues, agents and
//! waiting calls, and the views of them.

pub mod actor;
pub mod agent;
pub mod estimate;
mod roster;
pub mod strategy;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::{Config, QueueConfig};
pub use agent::{AgentEvent, AgentState, AgentStatus, CallId, Contact};
use estimate::Estimator;

/// What the ACD is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A caller joins a queue.
    Join {
        call: CallId,
        queue: String,
        priority: i64,
        skills: Vec<String>,
        caller: String,
        /// The longest the caller waits before leaving by the queue node's
        /// `on-timeout` (`None`: until answered).
        max_wait: Option<Duration>,
        /// Back at the head of the queue (their agent's connection was
        /// lost mid-call): first in line, never turned away.
        ahead: bool,
    },
    /// A callback's virtual entry: it stands where the caller stood
    /// (`waited` before now, with their priority), is counted in others'
    /// positions and waits, and is never turned away (nobody staffing the
    /// queue, a full queue, `max-wait`). `replaces` is the caller's own
    /// entry, which it takes over; their place is kept exactly.
    Callback {
        call: CallId,
        queue: String,
        priority: i64,
        skills: Vec<String>,
        caller: String,
        waited: Duration,
        replaces: Option<CallId>,
    },
    /// The caller hung up (waiting, or while an agent's phone rang).
    Leave {
        call: CallId,
    },
    /// An offered agent answered: the call leaves the queue, and agents
    /// rung with it (ring-all) are free again.
    Answered {
        call: CallId,
        agent: String,
    },
    /// No offered agent answered (or they refused, or could not be reached).
    NoAnswer {
        call: CallId,
    },
    /// The offer could not be placed for a want of our own (no RTP port):
    /// the agents are free again with no miss counted, and the caller keeps
    /// their place, offered again after [`NOT_PLACED_RETRY`], to another
    /// free agent first.
    NotPlaced {
        call: CallId,
    },
    /// A bridged call ended.
    Ended {
        call: CallId,
    },
    /// The agent's browser connection died mid-call: the call is no
    /// handled call, the agent is paused (`connection-lost`) and the caller
    /// joins again ahead of everyone ([`Input::Join`] with `ahead`).
    ConnectionLost {
        call: CallId,
    },
    /// The agent's desktop has a browser phone (`on`), or no longer has
    /// one: offers ring it, and it makes the agent reachable.
    Browser {
        agent: String,
        on: bool,
    },
    /// The agent's leg of a call that never reached its customer (a
    /// callback attempt that failed) is over: the agent is free at once,
    /// and the time is no handle time.
    Released {
        call: CallId,
    },
    /// An agent's registered contacts changed.
    Contacts {
        agent: String,
        contacts: Vec<Contact>,
    },
    Login {
        agent: String,
    },
    Logout {
        agent: String,
    },
    Pause {
        agent: String,
        reason: String,
    },
    Unpause {
        agent: String,
    },
    /// The agent's shift began (`on`) or ended: off shift, they are not
    /// offered calls and do not staff their queues.
    Shift {
        agent: String,
        on: bool,
    },
    /// Time passed (wrap-ups end).
    Tick,
    /// The agent gave the disposition of `call` (their last): a wrap-up
    /// that waited for it may end.
    Disposed {
        agent: String,
        call: CallId,
    },
    /// A new version of the config: agents and queues added, changed or
    /// removed ([`Acd::reconfigure`]).
    Reconfigure(NewConfig),
}

/// A config version as the ACD is given it (compared by identity).
#[derive(Clone)]
pub struct NewConfig(pub std::sync::Arc<Config>);

impl PartialEq for NewConfig {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NewConfig {}

impl std::fmt::Debug for NewConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewConfig")
    }
}

/// What the ACD asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Ring this agent for this call (a ring-all queue gives one for each
    /// free agent, in a row).
    Offer {
        call: CallId,
        agent: String,
        name: Option<String>,
        contacts: Vec<Contact>,
        /// Ring the agent's browser phone (not the contacts).
        browser: bool,
        ring_timeout: Duration,
    },
    /// An agent's state changed (a pause carries its reason).
    State {
        agent: String,
        state: AgentStatus,
        reason: Option<String>,
    },
    /// The caller is out of the queue (or never got in).
    Away { call: CallId, why: Away },
}

/// Why a caller is turned away from a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Away {
    /// No agent staffs it (`join-empty: false`, or `leave-empty: true` and
    /// the last one left).
    Empty,
    /// It holds `max-length` callers already.
    Full,
    /// The caller waited their `max-wait`.
    Timeout,
}

struct Agent {
    name: Option<String>,
    queues: Vec<String>,
    skills: BTreeMap<String, u8>,
    auto_login: bool,
    /// Within their shift (always, without one).
    on_shift: bool,
    contacts: Vec<Contact>,
    state: AgentState,
    calls: u32,
    misses: u32,
    /// When the current call was answered (for its handle time).
    answered_at: Option<Instant>,
    /// The queue of the call offered or being handled.
    call_queue: Option<String>,
    /// When the agent entered its state.
    state_since: Instant,
    /// No longer in the config: logged out and gone once its call ends.
    retiring: bool,
    /// The last call the agent answered (what a disposition is for).
    last_call: Option<CallId>,
    /// Its queue wants a disposition: the wrap-up lasts until it comes.
    awaiting_disposition: bool,
    /// Its desktop has a browser phone.
    browser: bool,
}

impl Agent {
    /// A phone can be rung: a registered contact or a browser phone.
    fn reachable(&self) -> bool {
        self.browser || !self.contacts.is_empty()
    }
}

struct Waiting {
    call: CallId,
    caller: String,
    queue: String,
    priority: i64,
    skills: Vec<String>,
    joined: Instant,
    /// The agents ringing for it now (several in a ring-all queue).
    offered: Vec<String>,
    /// Agents who missed it, or whose offer could not be placed: tried
    /// last.
    missed: Vec<String>,
    /// When it leaves by its `max-wait`.
    deadline: Option<Instant>,
    /// Not offered before this (its last offer could not be placed).
    retry_at: Option<Instant>,
    /// A callback's virtual entry (nobody is on the line).
    callback: bool,
}

impl Waiting {
    /// A caller in line since `joined`, offered to nobody yet, with no
    /// maximum wait.
    fn new(
        call: CallId,
        caller: String,
        queue: String,
        priority: i64,
        skills: Vec<String>,
        joined: Instant,
    ) -> Waiting {
        Waiting {
            call,
            caller,
            queue,
            priority,
            skills,
            joined,
            offered: Vec::new(),
            missed: Vec::new(),
            deadline: None,
            retry_at: None,
            callback: false,
        }
    }
}

struct Queue {
    config: QueueConfig,
    members: Vec<String>,
    last: Option<String>,
    estimator: Estimator,
    /// No longer in the config: serves the callers in it, then goes.
    retired: bool,
}

/// An agent as the operations API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentView {
    pub id: String,
    pub name: Option<String>,
    pub state: AgentStatus,
    /// Why paused.
    pub reason: Option<String>,
    /// The call it rings for or handles.
    pub call: Option<String>,
    pub queues: Vec<String>,
    /// Registered phones.
    pub contacts: usize,
    /// Has a browser phone (the agent desktop).
    pub browser: bool,
    pub on_shift: bool,
    /// Time in the current state.
    pub in_state_ms: u64,
    /// Calls answered since the engine started.
    pub calls: u32,
    /// The last call the agent answered, and whether its wrap-up waits
    /// for its disposition.
    pub last_call: Option<String>,
    pub awaiting_disposition: bool,
}

/// A waiting caller as the operations API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WaitingView {
    pub call_id: String,
    pub caller: String,
    pub priority: i64,
    pub position: usize,
    pub waited_ms: u64,
    /// Agents whose phones ring for it now.
    pub ringing: Vec<String>,
    /// A callback keeping the caller's place (nobody is on the line).
    pub callback: bool,
}

/// A queue as the operations API and the wallboard show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueView {
    pub name: String,
    pub waiting: Vec<WaitingView>,
    pub longest_wait_ms: u64,
    /// Its agents, counted by state.
    pub agents: BTreeMap<AgentStatus, usize>,
    /// Agents logged in, reachable and on shift.
    pub staffed: usize,
}

/// A queue's figures, for announcements and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub position: usize,
    pub waiting: usize,
    pub estimated_wait: Duration,
}

pub struct Acd {
    queues: BTreeMap<String, Queue>,
    agents: BTreeMap<String, Agent>,
    waiting: Vec<Waiting>,
    /// Bridged calls → the agent on them.
    talking: HashMap<CallId, String>,
    /// Some agent or queue is no longer in the config and not gone yet.
    retiring: bool,
}

/// The handle time assumed before any call has been handled.
const FALLBACK_HANDLE_TIME: Duration = Duration::from_secs(180);

/// How long a caller whose offer could not be placed (no RTP port) waits
/// before the next offer; the 1 s tick offers them again.
pub const NOT_PLACED_RETRY: Duration = Duration::from_secs(1);

impl Acd {
    pub fn new(config: &Config) -> Acd {
        let mut acd = Acd {
            queues: BTreeMap::new(),
            agents: BTreeMap::new(),
            waiting: Vec::new(),
            talking: HashMap::new(),
            retiring: false,
        };
        acd.reconfigure(config, Instant::now(), &mut Vec::new());
        acd
    }

    pub fn agent_state(&self, agent: &str) -> Option<&AgentState> {
        self.agents.get(agent).map(|a| &a.state)
    }

    /// Every agent, in id order.
    pub fn agents_view(&self, now: Instant) -> Vec<AgentView> {
        self.agents
            .iter()
            .map(|(id, a)| AgentView {
                id: id.clone(),
                name: a.name.clone(),
                state: a.state.status(),
                reason: match &a.state {
                    AgentState::Paused { reason, .. } => Some(reason.clone()),
                    _ => None,
                },
                call: a.state.call().map(str::to_owned),
                queues: a.queues.clone(),
                contacts: a.contacts.len(),
                browser: a.browser,
                on_shift: a.on_shift,
                in_state_ms: now.saturating_duration_since(a.state_since).as_millis() as u64,
                calls: a.calls,
                last_call: a.last_call.clone(),
                awaiting_disposition: a.awaiting_disposition,
            })
            .collect()
    }

    /// Every queue, with its callers in the order they will be served.
    pub fn queues_view(&self, now: Instant) -> Vec<QueueView> {
        self.queues
            .iter()
            .map(|(name, q)| {
                let mut mine: Vec<&Waiting> =
                    self.waiting.iter().filter(|w| w.queue == *name).collect();
                mine.sort_by_key(|w| (std::cmp::Reverse(w.priority), w.joined));
                let waiting: Vec<WaitingView> = mine
                    .iter()
                    .enumerate()
                    .map(|(i, w)| WaitingView {
                        call_id: w.call.clone(),
                        caller: w.caller.clone(),
                        priority: w.priority,
                        position: i + 1,
                        waited_ms: now.saturating_duration_since(w.joined).as_millis() as u64,
                        ringing: w.offered.clone(),
                        callback: w.callback,
                    })
                    .collect();
                let mut agents = BTreeMap::new();
                for m in &q.members {
                    if let Some(a) = self.agents.get(m) {
                        *agents.entry(a.state.status()).or_insert(0) += 1;
                    }
                }
                QueueView {
                    name: name.clone(),
                    longest_wait_ms: waiting.iter().map(|w| w.waited_ms).max().unwrap_or(0),
                    waiting,
                    agents,
                    staffed: self.staffed(name),
                }
            })
            .collect()
    }

    /// Whether a queue tells its callers where they stand (position
    /// announcements, or a callback offer by expected wait).
    pub fn announces(&self, queue: &str) -> bool {
        self.queues.get(queue).is_some_and(|q| {
            q.config.announce_position
                || q.config
                    .callback
                    .as_ref()
                    .is_some_and(|c| c.when_wait_over.is_some())
        })
    }

    /// Whether the waiting call's queue tells it where it stands.
    pub fn announces_to(&self, call: &str) -> bool {
        self.waiting
            .iter()
            .find(|w| w.call == call)
            .is_some_and(|w| self.announces(&w.queue))
    }

    /// Where every waiting call stands in the queues that tell their
    /// callers, in one pass (the actor pushes these to the calls).
    pub fn positions(&self) -> Vec<(CallId, Position)> {
        let mut by_queue: BTreeMap<&str, Vec<&Waiting>> = BTreeMap::new();
        for w in self.waiting.iter().filter(|w| self.announces(&w.queue)) {
            by_queue.entry(w.queue.as_str()).or_default().push(w);
        }
        let mut out = Vec::with_capacity(self.waiting.len());
        for (queue, mut mine) in by_queue {
            let Some(q) = self.queues.get(queue) else {
                continue;
            };
            mine.sort_by_key(|w| (std::cmp::Reverse(w.priority), w.joined));
            let staffed = self.staffed(queue);
            let waiting = mine.len();
            for (i, w) in mine.into_iter().enumerate() {
                out.push((
                    w.call.clone(),
                    Position {
                        position: i + 1,
                        waiting,
                        estimated_wait: q.estimator.wait(i + 1, staffed),
                    },
                ));
            }
        }
        out
    }

    /// Where a waiting call stands in its queue: one pass, no sort (it is
    /// asked for each caller who joins).
    pub fn position(&self, call: &str) -> Option<Position> {
        let (mine, me) = self
            .waiting
            .iter()
            .enumerate()
            .find(|(_, w)| w.call == call)?;
        // The order callers are served in: priority, then who came first,
        // then (the same instant) who was put in first.
        let key = |i: usize, w: &Waiting| (std::cmp::Reverse(w.priority), w.joined, i);
        let (mut ahead, mut waiting) = (0, 0);
        for (i, w) in self.waiting.iter().enumerate() {
            if w.queue == me.queue {
                waiting += 1;
                if key(i, w) < key(mine, me) {
                    ahead += 1;
                }
            }
        }
        let q = self.queues.get(&me.queue)?;
        let position = ahead + 1;
        Some(Position {
            position,
            waiting,
            estimated_wait: q.estimator.wait(position, self.staffed(&me.queue)),
        })
    }

    fn set(&mut self, agent: &str, event: AgentEvent, now: Instant, out: &mut Vec<Output>) -> bool {
        let wrap_up = self.wrap_up_of(agent);
        let Some(a) = self.agents.get_mut(agent) else {
            return false;
        };
        match agent::next(&a.state, &event, now, wrap_up) {
            Ok(s) => {
                let changed = s.status() != a.state.status();
                a.state = s;
                if changed {
                    a.state_since = now;
                    info!(%agent, state = a.state.name(), ?event, "agent state");
                    let reason = match &a.state {
                        AgentState::Paused { reason, .. } => Some(reason.clone()),
                        _ => None,
                    };
                    out.push(Output::State {
                        agent: agent.to_owned(),
                        state: a.state.status(),
                        reason,
                    });
                }
                true
            }
            Err(why) => {
                info!(%agent, ?event, %why, "agent event ignored");
                false
            }
        }
    }

    /// The queue of the agent's current call (its first queue otherwise).
    fn queue_of(&self, agent: &str) -> Option<&str> {
        let a = self.agents.get(agent)?;
        a.call_queue
            .as_deref()
            .or(a.queues.first().map(String::as_str))
    }

    /// The wrap-up time after the agent's current call.
    fn wrap_up_of(&self, agent: &str) -> Duration {
        self.queue_of(agent)
            .and_then(|q| self.queues.get(q))
            .map_or(Duration::from_secs(10), |q| q.config.wrap_up)
    }

    pub fn step(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Join {
                call,
                queue,
                priority,
                skills,
                caller,
                max_wait,
                ahead,
            } => {
                if !self.queues.contains_key(&queue) {
                    warn!(%call, %queue, "no such queue");
                } else if ahead {
                    let first = self.waiting.iter().filter(|w| w.queue == queue);
                    let joined = first
                        .clone()
                        .map(|w| w.joined)
                        .min()
                        .and_then(|j| j.checked_sub(Duration::from_millis(1)))
                        .map_or(now, |j| j.min(now));
                    let priority = first
                        .map(|w| w.priority)
                        .max()
                        .map_or(priority, |p| p.max(priority));
                    info!(%call, %queue, priority, %caller, "caller back at the head of the queue");
                    let w = Waiting::new(call, caller, queue, priority, skills, joined);
                    self.waiting.push(w);
                } else if !self.queues[&queue].config.join_empty && self.staffed(&queue) == 0 {
                    info!(%call, %queue, "no agent staffs the queue; the caller is not queued");
                    out.push(Output::Away {
                        call,
                        why: Away::Empty,
                    });
                } else if self.queues[&queue].config.max_length > 0
                    && self.waiting.iter().filter(|w| w.queue == queue).count()
                        >= self.queues[&queue].config.max_length
                {
                    info!(%call, %queue, "the queue is full; the caller is not queued");
                    out.push(Output::Away {
                        call,
                        why: Away::Full,
                    });
                } else {
                    info!(%call, %queue, priority, %caller, "caller joined the queue");
                    self.waiting.push(Waiting {
                        deadline: max_wait.map(|w| now + w),
                        ..Waiting::new(call, caller, queue, priority, skills, now)
                    });
                }
            }
            Input::Callback {
                call,
                queue,
                priority,
                skills,
                caller,
                waited,
                replaces,
            } => {
                let mut joined = now.checked_sub(waited).unwrap_or(now);
                if let Some(old) = replaces {
                    if let Some(i) = self.waiting.iter().position(|w| w.call == old) {
                        let w = self.waiting.remove(i);
                        joined = w.joined;
                        for agent in w.offered {
                            self.set(&agent, AgentEvent::Ended, now, &mut out);
                        }
                    }
                }
                if !self.queues.contains_key(&queue) {
                    warn!(%call, %queue, "no such queue for the callback");
                } else {
                    info!(%call, %queue, priority, %caller, waited = ?now.saturating_duration_since(joined), "callback keeps its place in the queue");
                    self.waiting.push(Waiting {
                        callback: true,
                        ..Waiting::new(call, caller, queue, priority, skills, joined)
                    });
                }
            }
            Input::Leave { call } => {
                if let Some(i) = self.waiting.iter().position(|w| w.call == call) {
                    let w = self.waiting.remove(i);
                    info!(%call, queue = %w.queue, waited = ?now.duration_since(w.joined), "caller left the queue");
                    for agent in w.offered {
                        self.set(&agent, AgentEvent::Ended, now, &mut out);
                    }
                }
            }
            Input::Answered { call, agent } => {
                if let Some(i) = self
                    .waiting
                    .iter()
                    .position(|w| w.call == call && w.offered.contains(&agent))
                {
                    let w = self.waiting.remove(i);
                    // The others rung with it stop ringing.
                    for other in w.offered.iter().filter(|a| **a != agent) {
                        self.set(other, AgentEvent::Ended, now, &mut out);
                    }
                    if self.set(&agent, AgentEvent::Answered, now, &mut out) {
                        if let Some(a) = self.agents.get_mut(&agent) {
                            a.calls += 1;
                            a.misses = 0;
                            a.answered_at = Some(now);
                            a.last_call = Some(call.clone());
                            a.awaiting_disposition = false;
                        }
                        self.talking.insert(call, agent);
                    }
                }
            }
            Input::NoAnswer { call } => {
                let Some(w) = self.waiting.iter_mut().find(|w| w.call == call) else {
                    return out;
                };
                let missed = std::mem::take(&mut w.offered);
                w.missed.extend(missed.iter().cloned());
                let queue = w.queue.clone();
                let max = self
                    .queues
                    .get(&queue)
                    .map_or(1, |q| q.config.max_no_answer.max(1));
                for agent in missed {
                    if self.set(&agent, AgentEvent::NoAnswer, now, &mut out) {
                        if let Some(a) = self.agents.get_mut(&agent) {
                            a.misses += 1;
                            if a.misses >= max {
                                a.misses = 0;
                                warn!(%agent, %call, "agent did not answer; paused");
                                self.set(
                                    &agent,
                                    AgentEvent::Pause("no-answer".into()),
                                    now,
                                    &mut out,
                                );
                            }
                        }
                    }
                }
            }
            Input::NotPlaced { call } => {
                let Some(w) = self.waiting.iter_mut().find(|w| w.call == call) else {
                    return out;
                };
                let offered = std::mem::take(&mut w.offered);
                w.retry_at = Some(now + NOT_PLACED_RETRY);
                // Offered again, another free agent comes first (their own
                // leg may open where this one's did not); with none, the
                // same one, as before.
                w.missed.extend(offered.iter().cloned());
                warn!(%call, agents = ?offered, "the offer could not be placed; the agents stay free and the caller keeps their place");
                for agent in offered {
                    self.set(&agent, AgentEvent::Released, now, &mut out);
                }
            }
            Input::Ended { call } => {
                if let Some(agent) = self.talking.remove(&call) {
                    let handled = self
                        .agents
                        .get(&agent)
                        .and_then(|a| a.answered_at)
                        .map(|t| now.duration_since(t));
                    let wrap = self.wrap_up_of(&agent);
                    let queue = self.queue_of(&agent).map(str::to_owned);
                    let required =
                        queue
                            .as_ref()
                            .and_then(|q| self.queues.get(q))
                            .is_some_and(|q| {
                                q.config.disposition == crate::config::DispositionRule::Required
                            });
                    if let (Some(h), Some(q)) =
                        (handled, queue.and_then(|q| self.queues.get_mut(&q)))
                    {
                        q.estimator.record(h + wrap);
                    }
                    if self.set(&agent, AgentEvent::Ended, now, &mut out) && required {
                        if let Some(a) = self.agents.get_mut(&agent) {
                            a.awaiting_disposition = a.last_call.as_ref() == Some(&call);
                        }
                    }
                }
            }
            Input::ConnectionLost { call } => {
                if let Some(agent) = self.talking.remove(&call) {
                    if let Some(a) = self.agents.get_mut(&agent) {
                        // Not a call handled.
                        a.calls = a.calls.saturating_sub(1);
                        a.last_call = None;
                    }
                    warn!(%call, %agent, "the agent's connection was lost; paused");
                    self.set(&agent, AgentEvent::Released, now, &mut out);
                    self.set(
                        &agent,
                        AgentEvent::Pause("connection-lost".into()),
                        now,
                        &mut out,
                    );
                }
            }
            Input::Browser { agent, on } => {
                let Some(a) = self.agents.get_mut(&agent) else {
                    return out;
                };
                info!(%agent, on, "browser phone");
                a.browser = on;
            }
            Input::Released { call } => {
                if let Some(agent) = self.talking.remove(&call) {
                    if let Some(a) = self.agents.get_mut(&agent) {
                        // Not a call handled.
                        a.calls = a.calls.saturating_sub(1);
                    }
                    self.set(&agent, AgentEvent::Released, now, &mut out);
                }
            }
            Input::Contacts { agent, contacts } => {
                let Some(a) = self.agents.get_mut(&agent) else {
                    return out;
                };
                let was = a.reachable();
                a.contacts = contacts;
                let now_reachable = a.reachable();
                let auto = a.auto_login;
                if now_reachable && !was && auto && a.state == AgentState::LoggedOut {
                    self.set(&agent, AgentEvent::Login, now, &mut out);
                }
            }
            Input::Login { agent } => {
                self.set(&agent, AgentEvent::Login, now, &mut out);
            }
            Input::Logout { agent } => {
                if self.set(&agent, AgentEvent::Logout, now, &mut out) {
                    if let Some(a) = self.agents.get_mut(&agent) {
                        a.awaiting_disposition = false;
                    }
                }
            }
            Input::Disposed { agent, call } => {
                if let Some(a) = self
                    .agents
                    .get_mut(&agent)
                    .filter(|a| a.last_call.as_ref() == Some(&call))
                {
                    a.awaiting_disposition = false;
                }
                // A wrap-up past its time that waited for it ends at once.
                let done = self.agents.get(&agent).is_some_and(|a| {
                    !a.awaiting_disposition
                        && matches!(a.state, AgentState::WrapUp { until } if until <= now)
                });
                if done {
                    self.set(&agent, AgentEvent::WrapUpDone, now, &mut out);
                }
            }
            Input::Pause { agent, reason } => {
                self.set(&agent, AgentEvent::Pause(reason), now, &mut out);
            }
            Input::Unpause { agent } => {
                self.set(&agent, AgentEvent::Unpause, now, &mut out);
            }
            Input::Shift { agent, on } => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    if a.on_shift != on {
                        info!(%agent, on_shift = on, "agent shift");
                        a.on_shift = on;
                    }
                }
            }
            Input::Reconfigure(config) => self.reconfigure(&config.0, now, &mut out),
            Input::Tick => {
                // Callers out of time leave; one whose agent's phone is
                // ringing waits for that answer (it may be taken yet).
                let (gone, stay): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
                    .into_iter()
                    .partition(|w| w.offered.is_empty() && w.deadline.is_some_and(|d| d <= now));
                self.waiting = stay;
                for w in gone {
                    info!(call = %w.call, queue = %w.queue, "the caller waited the queue's maximum");
                    out.push(Output::Away {
                        call: w.call,
                        why: Away::Timeout,
                    });
                }
                let done: Vec<String> = self
                    .agents
                    .iter()
                    .filter(|(_, a)| {
                        matches!(a.state, AgentState::WrapUp { until } if until <= now)
                            && !a.awaiting_disposition
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for agent in done {
                    self.set(&agent, AgentEvent::WrapUpDone, now, &mut out);
                }
            }
        }
        self.retire(now, &mut out);
        self.leave_empty(&mut out);
        self.dispatch(now, &mut out);
        out
    }

    /// Agents logged in to `queue` with a reachable phone (paused ones count:
    /// they come back).
    fn staffed(&self, queue: &str) -> usize {
        self.queues.get(queue).map_or(0, |q| {
            q.members
                .iter()
                .filter(|m| {
                    self.agents.get(*m).is_some_and(|a| {
                        a.on_shift && a.state != AgentState::LoggedOut && a.reachable()
                    })
                })
                .count()
        })
    }

    /// Callers of `leave-empty` queues that nobody staffs any more leave.
    fn leave_empty(&mut self, out: &mut Vec<Output>) {
        let empty: Vec<String> = self
            .queues
            .iter()
            .filter(|(name, q)| q.config.leave_empty && self.staffed(name) == 0)
            .map(|(name, _)| name.clone())
            .collect();
        if empty.is_empty() {
            return;
        }
        let (gone, stay): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| empty.contains(&w.queue) && w.offered.is_empty() && !w.callback);
        self.waiting = stay;
        for w in gone {
            info!(call = %w.call, queue = %w.queue, "the last agent left the queue; the caller leaves");
            out.push(Output::Away {
                call: w.call,
                why: Away::Empty,
            });
        }
    }

    /// Offers waiting callers to free agents: the longest-waiting caller
    /// first (higher priority first; across queues, heavier queues first).
    fn dispatch(&mut self, now: Instant, out: &mut Vec<Output>) {
        let mut order: Vec<usize> = (0..self.waiting.len()).collect();
        order.sort_by_key(|&i| {
            let w = &self.waiting[i];
            let weight = self.queues.get(&w.queue).map_or(0, |q| q.config.weight);
            (
                std::cmp::Reverse(weight),
                std::cmp::Reverse(w.priority),
                w.joined,
            )
        });
        for i in order {
            let w = &self.waiting[i];
            if !w.offered.is_empty() || w.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            let (queue_name, skills, missed, call) = {
                let w = &self.waiting[i];
                (
                    w.queue.clone(),
                    w.skills.clone(),
                    w.missed.clone(),
                    w.call.clone(),
                )
            };
            let Some(q) = self.queues.get(&queue_name) else {
                continue;
            };
            let free: Vec<strategy::Candidate> = q
                .members
                .iter()
                .filter_map(|m| {
                    let a = self.agents.get(m)?;
                    let AgentState::Available { since } = a.state else {
                        return None;
                    };
                    if !a.reachable() || !a.on_shift {
                        return None;
                    }
                    let level = if skills.is_empty() {
                        0
                    } else {
                        skills
                            .iter()
                            .map(|s| a.skills.get(s).copied().unwrap_or(0))
                            .min()
                            .unwrap_or(0)
                    };
                    if !skills.is_empty() && level == 0 {
                        return None;
                    }
                    Some(strategy::Candidate {
                        id: m.as_str(),
                        idle_since: since,
                        calls: a.calls,
                        level,
                    })
                })
                .collect();
            // Agents who already missed this caller come last.
            let fresh: Vec<strategy::Candidate> = free
                .iter()
                .filter(|c| !missed.iter().any(|m| m == c.id))
                .cloned()
                .collect();
            let pool = if fresh.is_empty() { &free } else { &fresh };
            let chosen: Vec<String> = if q.config.strategy == crate::config::Strategy::RingAll {
                pool.iter().map(|c| c.id.to_owned()).collect()
            } else {
                strategy::pick(q.config.strategy, pool, &q.members, q.last.as_deref())
                    .map(str::to_owned)
                    .into_iter()
                    .collect()
            };
            let ring_timeout = q.config.ring_timeout;
            for agent in chosen {
                if !self.set(&agent, AgentEvent::Offer(call.clone()), now, out) {
                    continue;
                }
                if let Some(q) = self.queues.get_mut(&queue_name) {
                    q.last = Some(agent.clone());
                }
                self.waiting[i].offered.push(agent.clone());
                let Some(a) = self.agents.get_mut(&agent) else {
                    continue;
                };
                a.call_queue = Some(queue_name.clone());
                info!(%call, %agent, queue = %queue_name, "offering the caller to an agent");
                out.push(Output::Offer {
                    call: call.clone(),
                    agent: agent.clone(),
                    name: a.name.clone(),
                    contacts: a.contacts.clone(),
                    browser: a.browser,
                    ring_timeout,
                });
            }
        }
    }
}

#[cfg(test)]
mod browser_tests;
#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod tests;
