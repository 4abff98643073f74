//! The calls in progress, as the operations API lists them: kept up to
//! date from the events each call publishes, with a way to hang one up.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::events::Event;

/// Where a call in progress stands (its `state` in the API and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallPhase {
    /// In its IVR flow.
    Ivr,
    /// Waiting in a queue.
    Queued,
    /// Agents' phones ring for it.
    Ringing,
    /// Bridged to an agent or a transfer target.
    Talking,
}

impl CallPhase {
    pub const ALL: [CallPhase; 4] = [
        CallPhase::Ivr,
        CallPhase::Queued,
        CallPhase::Ringing,
        CallPhase::Talking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Ivr => "ivr",
            CallPhase::Queued => "queued",
            CallPhase::Ringing => "ringing",
            CallPhase::Talking => "talking",
        }
    }
}

/// A call in progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    pub caller: String,
    pub dialed: String,
    pub trunk: String,
    pub arrived_at: jiff::Timestamp,
    pub state: CallPhase,
    pub flow: Option<String>,
    pub node: Option<String>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    /// Each leg's loss, jitter, round trip and MOS so far (RTCP).
    pub quality: Vec<LegQuality>,
}

pub use crate::media::quality::{LegHandle, LegQuality};

/// What the operations API asks of a call in progress.
#[derive(Debug)]
pub enum Control {
    HangUp,
    /// Pause (or resume) its recording, for the caller named; the answer
    /// is where the recording stands then.
    Recording {
        pause: bool,
        by: String,
        reply: tokio::sync::oneshot::Sender<super::pci::RecordingStatus>,
    },
}

type Entry = (LiveCall, mpsc::UnboundedSender<Control>, Vec<LegHandle>);

#[derive(Default)]
pub struct LiveCalls {
    calls: Mutex<HashMap<String, Entry>>,
}

impl LiveCalls {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        // A panic elsewhere never poisons this for good: the map stays usable.
        let mut map = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }

    /// A call arrived; `hangup` is how the API ends it. Returns the id it
    /// goes by from now on (its events, the API, its record): its Call-ID,
    /// unless a call in progress already has that one (two dialogs of one
    /// Call-ID, told apart by the caller's From tag): then
    /// `CALL-ID;from-tag=TAG`, and a number after that if even that is taken.
    pub fn arrived(
        &self,
        mut call: LiveCall,
        from_tag: &str,
        hangup: mpsc::UnboundedSender<Control>,
    ) -> String {
        self.with(|m| {
            let base = call.call_id.clone();
            let mut id = base.clone();
            if m.contains_key(&id) {
                id = format!("{base};from-tag={from_tag}");
            }
            let mut n = 2;
            while m.contains_key(&id) {
                id = format!("{base};from-tag={from_tag};n={n}");
                n += 1;
            }
            call.call_id = id.clone();
            m.insert(id.clone(), (call, hangup, Vec::new()));
            id
        })
    }

    pub fn ended(&self, call_id: &str) {
        self.with(|m| m.remove(call_id));
    }

    /// Follows a call's progress.
    pub fn apply(&self, event: &Event) {
        self.with(|m| match event {
            Event::IvrNode {
                call_id,
                flow,
                node,
            } => {
                if let Some((c, ..)) = m.get_mut(call_id) {
                    c.flow = Some(flow.clone());
                    c.node = Some(node.clone());
                }
            }
            Event::QueueJoined { call_id, queue, .. } => {
                if let Some((c, ..)) = m.get_mut(call_id) {
                    c.state = CallPhase::Queued;
                    c.queue = Some(queue.clone());
                }
            }
            Event::AgentOffered { call_id, .. } => {
                if let Some((c, ..)) = m.get_mut(call_id) {
                    c.state = CallPhase::Ringing;
                }
            }
            Event::CallAnswered { call_id, agent, .. } => {
                if let Some((c, ..)) = m.get_mut(call_id) {
                    c.state = CallPhase::Talking;
                    c.agent = agent.clone();
                }
            }
            _ => {}
        })
    }

    /// Every call in progress, oldest first.
    pub fn list(&self) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self.with(|m| m.values().map(view).collect());
        calls.sort_by(|a, b| (a.arrived_at, &a.call_id).cmp(&(b.arrived_at, &b.call_id)));
        calls
    }

    pub fn get(&self, call_id: &str) -> Option<LiveCall> {
        self.with(|m| m.get(call_id).map(view))
    }

    /// Asks the call to hang up; `false` if there is no such call.
    pub fn hang_up(&self, call_id: &str) -> bool {
        self.with(|m| {
            m.get(call_id)
                .is_some_and(|(_, tx, _)| tx.send(Control::HangUp).is_ok())
        })
    }

    /// Asks the call to pause (or resume) its recording; `None` if there
    /// is no such call, else where its recording stands then.
    pub async fn pause_recording(
        &self,
        call_id: &str,
        pause: bool,
        by: String,
    ) -> Option<super::pci::RecordingStatus> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.with(|m| {
            m.get(call_id)
                .is_some_and(|(_, tx, _)| tx.send(Control::Recording { pause, by, reply }).is_ok())
        });
        if !sent {
            return None;
        }
        answer.await.ok()
    }

    /// A leg of the call now has media (the caller's at the answer, an
    /// agent's or a transfer's when it answers).
    pub fn add_leg(&self, call_id: &str, leg: LegHandle) {
        self.with(|m| {
            if let Some((.., legs)) = m.get_mut(call_id) {
                legs.push(leg);
            }
        })
    }

    /// The call's legs, for its record.
    pub fn legs(&self, call_id: &str) -> Vec<LegHandle> {
        self.with(|m| m.get(call_id).map(|(.., l)| l.clone()).unwrap_or_default())
    }
}

/// A call as the API shows it: its figures as they are now.
fn view((call, _, legs): &Entry) -> LiveCall {
    LiveCall {
        quality: legs.iter().map(LegHandle::now).collect(),
        ..call.clone()
    }
}
