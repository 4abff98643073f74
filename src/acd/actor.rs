//! The ACD's task: owns the [`Acd`](super::Acd), takes inputs from call
//! tasks and the SIP layer, ticks once a second, and tells each call task
//! when an agent is offered its caller.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{Acd, Input, Output, Position};

/// An agent offered a call, with where their phones are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub agent: String,
    pub name: Option<String>,
    pub contacts: Vec<super::Contact>,
    /// Ring the agent's browser phone instead.
    pub browser: bool,
}

/// What a queued call hears from the ACD.
#[derive(Debug, Clone)]
pub enum ToCall {
    /// Ring these agents (one, or every free one in a ring-all queue) on
    /// every phone they registered; report Answered (by whom) or NoAnswer.
    Offer {
        agents: Vec<Offered>,
        ring_timeout: Duration,
    },
    /// Out of the queue: nobody staffs it, or it is full.
    Away(super::Away),
}

pub enum Request {
    Input(Input),
    /// A call joins and gives the link its offers and positions go on.
    Join(Input, CallLink),
    Position(String, oneshot::Sender<Option<Position>>),
    AgentState(String, oneshot::Sender<Option<super::AgentStatus>>),
    View(oneshot::Sender<(Vec<super::AgentView>, Vec<super::QueueView>)>),
    /// A new version of the config (agents, queues, shifts).
    Reconfigure(std::sync::Arc<crate::config::Config>),
}

/// Requests waiting for the ACD before a sender waits for room.
const INBOX: usize = 4096;
/// Messages waiting for one call: it has an offer at a time and goes away
/// once, so this never fills; if it does, the ACD waits.
const TO_CALL: usize = 8;

/// The ACD's end of a waiting call's link.
pub struct CallLink {
    offers: mpsc::Sender<ToCall>,
    position: watch::Sender<Option<Position>>,
}

/// The waiting call's end: its offers (never dropped: the ACD waits for
/// room) and where it stands (only the latest counts).
pub struct Waiter {
    pub offers: mpsc::Receiver<ToCall>,
    pub position: watch::Receiver<Option<Position>>,
}

/// A new link between the ACD and a call about to join a queue.
pub fn link() -> (CallLink, Waiter) {
    let (offers, offers_rx) = mpsc::channel(TO_CALL);
    let (position, position_rx) = watch::channel(None);
    (
        CallLink { offers, position },
        Waiter {
            offers: offers_rx,
            position: position_rx,
        },
    )
}

/// A handle to the ACD task; cheap to clone.
#[derive(Clone)]
pub struct AcdHandle {
    tx: mpsc::Sender<Request>,
}

impl AcdHandle {
    /// Sends an input; waits while the ACD's inbox is full (an answer, a
    /// hang-up or an agent's state change is never dropped).
    pub async fn send(&self, input: Input) {
        let _ = self.tx.send(Request::Input(input)).await;
    }

    /// A call (or a callback's entry) joins a queue; its offers and
    /// positions come on `link`.
    pub async fn join(&self, input: Input, link: CallLink) {
        let _ = self.tx.send(Request::Join(input, link)).await;
    }

    /// A new version of the config: agents, queues and shifts change as
    /// [`Acd::reconfigure`] says, after every input sent before.
    pub async fn reconfigure(&self, config: std::sync::Arc<crate::config::Config>) {
        let _ = self.tx.send(Request::Reconfigure(config)).await;
    }

    /// Sends what a call queued (inputs and joins, in order).
    pub async fn send_all(&self, requests: impl IntoIterator<Item = Request>) {
        for r in requests {
            let _ = self.tx.send(r).await;
        }
    }

    /// The agent's state name (`available`, `paused`, …), after every input
    /// sent before this call has been handled.
    pub async fn agent_state(&self, agent: &str) -> Option<super::AgentStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::AgentState(agent.to_owned(), tx))
            .await
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Every agent and every queue as they are now (after every input
    /// sent before this call).
    pub async fn view(&self) -> Option<(Vec<super::AgentView>, Vec<super::QueueView>)> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::View(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Where a waiting entry stands (the operations API; a waiting call
    /// has it pushed on its link).
    pub async fn position(&self, call: &str) -> Option<Position> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Position(call.to_owned(), tx))
            .await
            .ok()?;
        rx.await.ok().flatten()
    }
}

/// Sends a call its position if it changed.
fn push(link: &CallLink, p: Position) {
    link.position.send_if_modified(|old| {
        let changed = old.as_ref() != Some(&p);
        if changed {
            *old = Some(p);
        }
        changed
    });
}

/// Agents' shifts: each agent with a shift, and its schedule.
pub type Shifts = Vec<(String, crate::config::schedule::Schedule)>;

/// The agents with a shift in `config`, with their schedules.
pub fn shifts(config: &crate::config::Config) -> Shifts {
    config
        .agents
        .iter()
        .filter_map(|a| {
            let s = config.schedules.get(a.shift.as_ref()?)?;
            Some((a.id.clone(), s.clone()))
        })
        .collect()
}

/// Starts the ACD task.
pub fn start(acd: Acd, shifts: Shifts, events: crate::events::EventBus) -> AcdHandle {
    let (tx, rx) = mpsc::channel(INBOX);
    let actor = Actor {
        acd,
        shifts,
        events,
        calls: HashMap::new(),
        joined: Vec::new(),
        on_shift: HashMap::new(),
    };
    tokio::spawn(actor.run(rx));
    AcdHandle { tx }
}

/// Which shifts began or ended since `last` (the wall clock, checked on
/// each tick; the ACD itself only sees the events).
fn shift_changes(
    shifts: &Shifts,
    last: &mut HashMap<String, bool>,
    now: jiff::Timestamp,
) -> Vec<Input> {
    shifts
        .iter()
        .filter_map(|(agent, schedule)| {
            let on = schedule.is_open(now);
            (last.insert(agent.clone(), on) != Some(on)).then(|| Input::Shift {
                agent: agent.clone(),
                on,
            })
        })
        .collect()
}

/// Requests handled in a row before the loop looks at the clock again.
const BATCH: usize = 256;

struct Actor {
    acd: Acd,
    shifts: Shifts,
    events: crate::events::EventBus,
    /// Waiting calls and callbacks, by id.
    calls: HashMap<String, CallLink>,
    /// Those that joined since positions were last pushed: theirs goes
    /// out at once (a greeting waits for it); everyone's each second.
    joined: Vec<String>,
    on_shift: HashMap<String, bool>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let ticked = tokio::select! {
                req = rx.recv() => match req {
                    None => return,
                    Some(req) => {
                        self.on_request(req).await;
                        false
                    }
                },
                _ = tick.tick() => {
                    let mut inputs =
                        shift_changes(&self.shifts, &mut self.on_shift, jiff::Timestamp::now());
                    inputs.push(Input::Tick);
                    self.apply(inputs.into()).await;
                    true
                }
            };
            // What else is waiting is handled before positions go out.
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(req) => self.on_request(req).await,
                    Err(_) => break,
                }
            }
            if ticked {
                self.push_positions();
            } else {
                self.push_joined();
            }
        }
    }

    async fn on_request(&mut self, req: Request) {
        match req {
            Request::Input(i) => self.apply([i].into()).await,
            Request::Join(i, link) => {
                if let Input::Join { call, .. } | Input::Callback { call, .. } = &i {
                    self.calls.insert(call.clone(), link);
                    self.joined.push(call.clone());
                }
                self.apply([i].into()).await
            }
            Request::Position(call, reply) => {
                let _ = reply.send(self.acd.position(&call));
            }
            Request::AgentState(agent, reply) => {
                let _ = reply.send(self.acd.agent_state(&agent).map(|s| s.status()));
            }
            Request::View(reply) => {
                let now = Instant::now().into_std();
                let _ = reply.send((self.acd.agents_view(now), self.acd.queues_view(now)));
            }
            Request::Reconfigure(config) => {
                self.shifts = shifts(&config);
                // Every shift is reported again on the next tick, as it
                // stands then (a new or changed one included).
                self.on_shift.clear();
                self.apply([Input::Reconfigure(super::NewConfig(config))].into())
                    .await
            }
        }
    }

    /// Tells each waiting call where it stands, when that changed (each
    /// second: announcements need no fresher figures, and a queue of
    /// thousands is sorted once, not at every join).
    fn push_positions(&mut self) {
        self.joined.clear();
        if self.calls.is_empty() {
            return;
        }
        for (call, p) in self.acd.positions() {
            if let Some(link) = self.calls.get(&call) {
                push(link, p);
            }
        }
    }

    /// Tells the calls that just joined where they stand.
    fn push_joined(&mut self) {
        for call in std::mem::take(&mut self.joined) {
            let Some(link) = self.calls.get(&call) else {
                continue;
            };
            if let Some(p) = self
                .acd
                .position(&call)
                .filter(|_| self.acd.announces_to(&call))
            {
                push(link, p);
            }
        }
    }

    async fn apply(&mut self, mut pending: std::collections::VecDeque<Input>) {
        while let Some(input) = pending.pop_front() {
            if let Input::Leave { call } | Input::Ended { call } | Input::Released { call } = &input
            {
                self.calls.remove(call);
            }
            // Offers to one call (ring-all) travel together.
            let mut offers: Vec<(String, Vec<Offered>, Duration)> = Vec::new();
            for out in self.acd.step(input, Instant::now().into_std()) {
                match out {
                    Output::Away { call, why } => {
                        if let Some(link) = self.calls.remove(&call) {
                            let _ = link.offers.send(ToCall::Away(why)).await;
                        }
                    }
                    Output::Offer {
                        call,
                        agent,
                        name,
                        contacts,
                        browser,
                        ring_timeout,
                    } => {
                        let offered = Offered {
                            agent,
                            name,
                            contacts,
                            browser,
                        };
                        match offers.iter_mut().find(|(c, _, _)| *c == call) {
                            Some((_, agents, _)) => agents.push(offered),
                            None => offers.push((call, vec![offered], ring_timeout)),
                        }
                    }
                    Output::State {
                        agent,
                        state,
                        reason,
                    } => self.events.publish(crate::events::Event::AgentState {
                        agent,
                        state: state.as_str().to_owned(),
                        reason,
                    }),
                }
            }
            for (call, agents, ring_timeout) in offers {
                let offer = ToCall::Offer {
                    agents,
                    ring_timeout,
                };
                let sent = match self.calls.get(&call) {
                    Some(link) => link.offers.send(offer).await.is_ok(),
                    None => false,
                };
                if !sent {
                    // The call is gone: its agents are freed (and may be
                    // offered someone else, so this goes round again).
                    pending.push_back(Input::Leave { call });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_is_reported_when_it_begins_and_when_it_ends_not_every_tick() {
        let config = crate::config::Config::parse(
            "
schedules:
  days: { time-zone: UTC, weekly: { mon-fri: '09:00-17:00' } }
queues: { q: {} }
agents:
  - { id: a1, password: x, queues: [q], shift: days }
  - { id: a2, password: x, queues: [q] }
",
        )
        .unwrap();
        let shifts = shifts(&config);
        assert_eq!(shifts.len(), 1, "only a1 has a shift");
        let mut last = HashMap::new();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        // Monday 2026-11-23.
        let names = |v: Vec<Input>| -> Vec<(String, bool)> {
            v.into_iter()
                .filter_map(|i| match i {
                    Input::Shift { agent, on } => Some((agent, on)),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            names(shift_changes(
                &shifts,
                &mut last,
                at("2026-11-23T08:59:00Z")
            )),
            vec![("a1".to_string(), false)]
        );
        assert!(shift_changes(&shifts, &mut last, at("2026-11-23T08:59:30Z")).is_empty());
        assert_eq!(
            names(shift_changes(
                &shifts,
                &mut last,
                at("2026-11-23T09:00:00Z")
            )),
            vec![("a1".to_string(), true)]
        );
        assert!(shift_changes(&shifts, &mut last, at("2026-11-23T16:59:59Z")).is_empty());
        assert_eq!(
            names(shift_changes(
                &shifts,
                &mut last,
                at("2026-11-23T17:00:00Z")
            )),
            vec![("a1".to_string(), false)]
        );
    }
}
