//! The ACD's task: owns the [`Acd`](super::Acd), takes inputs from call
//! tasks and the SIP layer, ticks once a second, and tells each call task
//! when an agent is offered its caller.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Acd, Input, Output, Position};

/// An agent offered a call, with where their phones are.
#[derive(Debug, Clone)]
pub struct Offered {
    pub agent: String,
    pub name: Option<String>,
    pub contacts: Vec<super::Contact>,
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
    /// A call joins and gives the channel its offers come on.
    Join(Input, mpsc::UnboundedSender<ToCall>),
    Position(String, oneshot::Sender<Option<Position>>),
    AgentState(String, oneshot::Sender<Option<super::AgentStatus>>),
    View(oneshot::Sender<(Vec<super::AgentView>, Vec<super::QueueView>)>),
}

/// A handle to the ACD task; cheap to clone.
#[derive(Clone)]
pub struct AcdHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl AcdHandle {
    pub fn send(&self, input: Input) {
        let _ = self.tx.send(Request::Input(input));
    }

    pub fn join(&self, input: Input, calls: mpsc::UnboundedSender<ToCall>) {
        let _ = self.tx.send(Request::Join(input, calls));
    }

    /// The agent's state name (`available`, `paused`, …), after every input
    /// sent before this call has been handled.
    pub async fn agent_state(&self, agent: &str) -> Option<super::AgentStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::AgentState(agent.to_owned(), tx))
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Every agent and every queue as they are now (after every input
    /// sent before this call).
    pub async fn view(&self) -> Option<(Vec<super::AgentView>, Vec<super::QueueView>)> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::View(tx)).ok()?;
        rx.await.ok()
    }

    pub async fn position(&self, call: &str) -> Option<Position> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Position(call.to_owned(), tx)).ok()?;
        rx.await.ok().flatten()
    }
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
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(acd, shifts, events, rx));
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

async fn run(
    mut acd: Acd,
    shifts: Shifts,
    events: crate::events::EventBus,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut calls: HashMap<String, mpsc::UnboundedSender<ToCall>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut on_shift = HashMap::new();
    loop {
        let mut pending: std::collections::VecDeque<Input> = tokio::select! {
            req = rx.recv() => match req {
                None => return,
                Some(Request::Input(i)) => [i].into(),
                Some(Request::Join(i, to_call)) => {
                    if let Input::Join { call, .. } | Input::Callback { call, .. } = &i {
                        calls.insert(call.clone(), to_call);
                    }
                    [i].into()
                }
                Some(Request::Position(call, reply)) => {
                    let _ = reply.send(acd.position(&call));
                    continue;
                }
                Some(Request::AgentState(agent, reply)) => {
                    let _ = reply.send(acd.agent_state(&agent).map(|s| s.status()));
                    continue;
                }
                Some(Request::View(reply)) => {
                    let now = Instant::now().into_std();
                    let _ = reply.send((acd.agents_view(now), acd.queues_view(now)));
                    continue;
                }
            },
            _ = tick.tick() => {
                let mut inputs = shift_changes(&shifts, &mut on_shift, jiff::Timestamp::now());
                inputs.push(Input::Tick);
                inputs.into()
            }
        };
        while let Some(input) = pending.pop_front() {
            if let Input::Leave { call } | Input::Ended { call } | Input::Released { call } = &input
            {
                calls.remove(call);
            }
            // Offers to one call (ring-all) travel together.
            let mut offers: Vec<(String, Vec<Offered>, Duration)> = Vec::new();
            for out in acd.step(input, Instant::now().into_std()) {
                match out {
                    Output::Away { call, why } => {
                        if let Some(tx) = calls.remove(&call) {
                            let _ = tx.send(ToCall::Away(why));
                        }
                    }
                    Output::Offer {
                        call,
                        agent,
                        name,
                        contacts,
                        ring_timeout,
                    } => {
                        let offered = Offered {
                            agent,
                            name,
                            contacts,
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
                    } => events.publish(crate::events::Event::AgentState {
                        agent,
                        state: state.as_str().to_owned(),
                        reason,
                    }),
                }
            }
            for (call, agents, ring_timeout) in offers {
                match calls.get(&call) {
                    Some(tx)
                        if tx
                            .send(ToCall::Offer {
                                agents,
                                ring_timeout,
                            })
                            .is_ok() => {}
                    // The call is gone: its agents are freed (and may be
                    // offered someone else, so this goes round again).
                    _ => pending.push_back(Input::Leave { call }),
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
