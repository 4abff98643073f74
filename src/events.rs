//! The engine's event bus: what happens to calls and agents, as it happens,
//! for whoever listens (the operations API streams it; the log has it too).
//! Publishing never blocks and never fails a call: a listener that falls
//! behind loses the oldest events and is told how many.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a slow listener may fall behind before losing some.
const BACKLOG: usize = 4096;

/// One of the caller's earlier calls, for the agent's screen pop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PastCall {
    pub arrived_at: Option<jiff::Timestamp>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "call.arrived")]
    CallArrived {
        call_id: String,
        caller: String,
        dialed: String,
        trunk: String,
    },
    #[serde(rename = "ivr.node")]
    IvrNode {
        call_id: String,
        flow: String,
        node: String,
    },
    #[serde(rename = "queue.joined")]
    QueueJoined {
        call_id: String,
        queue: String,
        priority: i64,
    },
    /// The screen pop: sent when the agents' phones start ringing, so the
    /// caller's context is on screen before anyone answers.
    #[serde(rename = "agent.offered")]
    AgentOffered {
        call_id: String,
        agents: Vec<String>,
        caller: String,
        queue: String,
        /// How long the caller has waited in the queue so far.
        wait_ms: u64,
        /// What the IVR learned (account, webhook results, …).
        vars: serde_json::Value,
        /// The caller's earlier calls, newest first.
        history: Vec<PastCall>,
    },
    #[serde(rename = "call.answered")]
    CallAnswered {
        call_id: String,
        agent: Option<String>,
        target: String,
    },
    #[serde(rename = "call.ended")]
    CallEnded {
        call_id: String,
        outcome: String,
        ended_by: String,
    },
    #[serde(rename = "callback.booked")]
    CallbackBooked {
        id: i64,
        /// The call that booked it.
        call_id: String,
        queue: String,
        number: String,
    },
    /// The customer is being dialled (attempt 1, 2, …).
    #[serde(rename = "callback.attempt")]
    CallbackAttempt {
        id: i64,
        attempt: u32,
        number: String,
    },
    /// `completed`, `failed`, `expired` or `cancelled`, with the last outcome.
    #[serde(rename = "callback.ended")]
    CallbackEnded {
        id: i64,
        state: String,
        outcome: String,
    },
    #[serde(rename = "agent.state")]
    AgentState {
        agent: String,
        state: String,
        reason: Option<String>,
    },
}

/// The bus; cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        EventBus {
            tx: broadcast::channel(BACKLOG).0,
        }
    }

    /// Sends `event` to every listener (none is fine).
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_get_events_as_json_and_a_slow_one_learns_what_it_lost() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.publish(Event::QueueJoined {
            call_id: "c1".into(),
            queue: "sales".into(),
            priority: 2,
        });
        let ev = rx.recv().await.unwrap();
        assert_eq!(
            serde_json::to_value(&*ev).unwrap(),
            serde_json::json!({"type": "queue.joined", "call_id": "c1", "queue": "sales", "priority": 2})
        );
        for i in 0..BACKLOG + 10 {
            bus.publish(Event::AgentState {
                agent: format!("a{i}"),
                state: "available".into(),
                reason: None,
            });
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
    }
}
