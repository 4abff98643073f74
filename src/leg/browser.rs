//! Browser phones: an agent desktop's socket is the agent's phone. The
//! registry links each signed-in agent's page to the legs that ring it;
//! a leg's browser branch holds the WebRTC channel it offered and hears the
//! page's answer, candidates and buttons through the registry.
//!
//! A page can act only on calls ringing for its own agent: every message
//! is routed by (call, agent), and the agent is the session's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::PageIceServer;
use crate::media::MediaChannel;
use crate::sdp::Codec;

/// Messages waiting for one page; past this many the page is too slow
/// and what comes is dropped (a ring it never saw times out).
pub const PAGE_QUEUE: usize = 64;

/// What the engine tells an agent's page about one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToPage {
    /// Ring: the offer for the page's peer connection, the servers its
    /// ICE may use, and the screen pop.
    Ring {
        call: String,
        offer: String,
        ice_servers: Vec<PageIceServer>,
        pop: serde_json::Value,
    },
    /// The page's answer or candidate was refused.
    Refused { call: String, error: String },
    /// The call is over for this page: answered elsewhere, the caller
    /// gone, hung up, or it rang too long.
    End { call: String },
}

/// What an agent's page says about one call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FromPage {
    /// The peer connection's answer to the ring's offer (SDP).
    Answer { call: String, sdp: String },
    /// A trickled ICE candidate (`""`: the end of them).
    Candidate { call: String, candidate: String },
    /// The agent takes the call.
    Accept { call: String },
    /// The agent declines it (it goes to another agent).
    Decline { call: String },
    /// The agent hangs up.
    Hangup { call: String },
    /// The agent holds the caller (`on`: they hear music) or takes them back.
    Hold { call: String, on: bool },
    /// The agent transfers the caller (blind) to a queue or a name under
    /// `transfers:`.
    Transfer { call: String, target: String },
}

impl FromPage {
    pub fn call(&self) -> &str {
        match self {
            FromPage::Answer { call, .. }
            | FromPage::Candidate { call, .. }
            | FromPage::Accept { call }
            | FromPage::Decline { call }
            | FromPage::Hangup { call }
            | FromPage::Hold { call, .. }
            | FromPage::Transfer { call, .. } => call,
        }
    }
}

/// What a leg hears from the registry about one of its browser branches.
#[derive(Debug)]
pub(super) enum PageEvent {
    Said(FromPage),
    /// The agent's page closed (or another tab took over).
    Gone,
}

struct Page {
    session: u64,
    tx: mpsc::Sender<ToPage>,
}

#[derive(Default)]
struct Phones {
    pages: HashMap<String, Page>,
    /// (call, agent) → the leg ringing that agent for that call.
    legs: HashMap<(String, String), mpsc::UnboundedSender<(String, PageEvent)>>,
}

/// The registry of browser phones, shared by the API (pages) and calls
/// (legs).
// A Mutex, not an actor: a map looked up by pages and legs on many tasks,
// each use a few map operations, never held across an await.
#[derive(Clone, Default)]
pub struct BrowserPhones(Arc<Mutex<Phones>>);

impl BrowserPhones {
    fn with<R>(&self, f: impl FnOnce(&mut Phones) -> R) -> R {
        let mut phones = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut phones)
    }

    /// The agent's page (session `session`) is its phone from now on; a
    /// page it replaces is told nothing more, and legs ringing it lose it.
    pub fn attach(&self, agent: &str, session: u64, tx: mpsc::Sender<ToPage>) {
        self.with(|p| {
            p.pages.insert(agent.to_owned(), Page { session, tx });
            tell_legs_gone(p, agent);
        });
    }

    /// The page closed: if it is still the agent's phone, the agent has
    /// none, and legs ringing it lose it. Whether it was.
    pub fn detach(&self, agent: &str, session: u64) -> bool {
        self.with(|p| {
            if p.pages.get(agent).is_none_or(|pg| pg.session != session) {
                return false;
            }
            p.pages.remove(agent);
            tell_legs_gone(p, agent);
            true
        })
    }

    /// Whether the agent has a page now.
    pub fn has_page(&self, agent: &str) -> bool {
        self.with(|p| p.pages.contains_key(agent))
    }

    /// A message from the page of `agent` (the session's own): handed to
    /// the leg ringing that agent for its call; `false` when none is.
    pub fn from_page(&self, agent: &str, msg: FromPage) -> bool {
        let key = (msg.call().to_owned(), agent.to_owned());
        self.with(|p| match p.legs.get(&key) {
            Some(tx) => tx.send((agent.to_owned(), PageEvent::Said(msg))).is_ok(),
            None => false,
        })
    }

    /// Registers a leg ringing `agent` for `call`; the agent's page, to
    /// tell it.
    pub(super) fn ring(
        &self,
        call: &str,
        agent: &str,
        leg: mpsc::UnboundedSender<(String, PageEvent)>,
    ) -> Option<mpsc::Sender<ToPage>> {
        self.with(|p| {
            let page = p.pages.get(agent)?.tx.clone();
            p.legs.insert((call.to_owned(), agent.to_owned()), leg);
            Some(page)
        })
    }

    pub(super) fn forget(&self, call: &str, agent: &str) {
        self.with(|p| {
            p.legs.remove(&(call.to_owned(), agent.to_owned()));
        });
    }
}

fn tell_legs_gone(p: &mut Phones, agent: &str) {
    for ((_, a), tx) in p.legs.iter() {
        if a == agent {
            let _ = tx.send((agent.to_owned(), PageEvent::Gone));
        }
    }
}

/// One browser rung by a leg.
pub(super) struct BrowserBranch {
    pub agent: String,
    pub call: String,
    pub codec: Codec,
    /// The WebRTC channel offered; the leg takes it when this branch wins.
    pub media: Option<MediaChannel>,
    pub page: mpsc::Sender<ToPage>,
    pub phones: BrowserPhones,
    pub over: bool,
    /// Taken by the agent: the page hears no `End` until the call ends.
    pub won: bool,
}

impl BrowserBranch {
    /// Tells the page, without waiting (a page that stopped reading loses it).
    pub fn tell(&self, msg: ToPage) {
        let _ = self.page.try_send(msg);
    }

    /// The page stops ringing (or ends the call) and hears no more of it.
    pub fn end(&mut self) {
        if !self.over {
            self.over = true;
            self.tell(ToPage::End {
                call: self.call.clone(),
            });
        }
        self.media = None;
        self.phones.forget(&self.call, &self.agent);
    }
}

impl Drop for BrowserBranch {
    fn drop(&mut self) {
        self.end();
    }
}
