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
    pub contacts: Vec<crate::sip::registrar::Binding>,
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
    /// Out of the queue: nobody staffs it.
    Empty,
}

pub enum Request {
    Input(Input),
    /// A call joins and gives the channel its offers come on.
    Join(Input, mpsc::UnboundedSender<ToCall>),
    Position(String, oneshot::Sender<Option<Position>>),
    AgentState(String, oneshot::Sender<Option<&'static str>>),
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
    pub async fn agent_state(&self, agent: &str) -> Option<&'static str> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::AgentState(agent.to_owned(), tx))
            .ok()?;
        rx.await.ok().flatten()
    }

    pub async fn position(&self, call: &str) -> Option<Position> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Position(call.to_owned(), tx)).ok()?;
        rx.await.ok().flatten()
    }
}

/// Starts the ACD task.
pub fn start(acd: Acd) -> AcdHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(acd, rx));
    AcdHandle { tx }
}

async fn run(mut acd: Acd, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut calls: HashMap<String, mpsc::UnboundedSender<ToCall>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let input = tokio::select! {
            req = rx.recv() => match req {
                None => return,
                Some(Request::Input(i)) => i,
                Some(Request::Join(i, to_call)) => {
                    if let Input::Join { call, .. } = &i {
                        calls.insert(call.clone(), to_call);
                    }
                    i
                }
                Some(Request::Position(call, reply)) => {
                    let _ = reply.send(acd.position(&call));
                    continue;
                }
                Some(Request::AgentState(agent, reply)) => {
                    let _ = reply.send(acd.agent_state(&agent).map(|s| s.name()));
                    continue;
                }
            },
            _ = tick.tick() => Input::Tick,
        };
        if let Input::Leave { call } | Input::Ended { call } = &input {
            calls.remove(call);
        }
        // Offers to one call (ring-all) travel together.
        let mut offers: Vec<(String, Vec<Offered>, Duration)> = Vec::new();
        for out in acd.step(input, Instant::now().into_std()) {
            match out {
                Output::Empty { call } => {
                    if let Some(tx) = calls.remove(&call) {
                        let _ = tx.send(ToCall::Empty);
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
                Output::State { .. } => {}
            }
        }
        for (call, agents, ring_timeout) in offers {
            match calls.get(&call) {
                Some(tx) => {
                    let _ = tx.send(ToCall::Offer {
                        agents,
                        ring_timeout,
                    });
                }
                None => {
                    // The call is gone: free the agents.
                    let _ = acd.step(Input::Leave { call }, Instant::now().into_std());
                }
            }
        }
    }
}
