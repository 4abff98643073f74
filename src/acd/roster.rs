//! The ACD's agents and queues as the config names them: a new version
//! taken while calls go on, and what it removed retired once nothing
//! holds it any more.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::info;

use super::estimate::Estimator;
use super::{Acd, Agent, AgentEvent, AgentState, Output, Queue, FALLBACK_HANDLE_TIME};
use crate::config::Config;

impl Acd {
    /// Takes a new version of the config while calls go on:
    /// - an agent added starts logged out (its phone's registration and
    ///   `auto-login` bring it in); one changed keeps its state, contacts
    ///   and figures with its new name, queues and skills;
    /// - an agent removed is offered nothing more and is logged out once
    ///   its current call (ringing or talking) is over;
    /// - a queue changed keeps its callers, wait estimate and rotation;
    ///   its members are the agents that name it now;
    /// - a queue removed keeps serving the callers already in it (with the
    ///   members it had, less removed agents) and goes once they have.
    pub fn reconfigure(&mut self, config: &Config, now: Instant, out: &mut Vec<Output>) {
        for (id, a) in &mut self.agents {
            a.retiring = !config.agents.iter().any(|c| c.id == *id);
        }
        for c in &config.agents {
            let a = self.agents.entry(c.id.clone()).or_insert_with(|| Agent {
                name: None,
                queues: Vec::new(),
                skills: BTreeMap::new(),
                auto_login: false,
                on_shift: true,
                contacts: Vec::new(),
                browser: false,
                state: AgentState::LoggedOut,
                calls: 0,
                misses: 0,
                answered_at: None,
                call_queue: None,
                state_since: now,
                retiring: false,
                last_call: None,
                awaiting_disposition: false,
            });
            a.name = c.name.clone();
            a.queues = c.queues.clone();
            a.skills = c.skills.clone();
            a.auto_login = c.auto_login;
            if c.shift.is_none() {
                // A shift removed: always on (a shift's own state comes
                // from the clock, on the next tick).
                a.on_shift = true;
            }
        }
        for q in self.queues.values_mut() {
            q.retired = true;
        }
        for (name, c) in &config.queues {
            let q = self.queues.entry(name.clone()).or_insert_with(|| Queue {
                config: c.clone(),
                members: Vec::new(),
                last: None,
                estimator: Estimator::new(FALLBACK_HANDLE_TIME),
                retired: false,
            });
            q.config = c.clone();
            q.retired = false;
            q.members = config
                .agents
                .iter()
                .filter(|a| a.queues.contains(name))
                .map(|a| a.id.clone())
                .collect();
        }
        let agents = &self.agents;
        for q in self.queues.values_mut().filter(|q| q.retired) {
            q.members
                .retain(|m| agents.get(m).is_some_and(|a| !a.retiring));
        }
        self.retiring = true;
        self.retire(now, out);
    }

    /// Removed agents whose call is over are logged out and go; removed
    /// queues nobody waits in go.
    pub(super) fn retire(&mut self, now: Instant, out: &mut Vec<Output>) {
        if !self.retiring {
            return;
        }
        let done: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.retiring && a.state.call().is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for agent in done {
            if self.agents[&agent].state != AgentState::LoggedOut {
                self.set(&agent, AgentEvent::Logout, now, out);
            }
            info!(%agent, "agent removed from the config: gone");
            self.agents.remove(&agent);
            for q in self.queues.values_mut() {
                q.members.retain(|m| *m != agent);
            }
        }
        let waiting = &self.waiting;
        self.queues.retain(|name, q| {
            let keep = !q.retired || waiting.iter().any(|w| w.queue == *name);
            if !keep {
                info!(queue = %name, "queue removed from the config: its last caller has left; gone");
            }
            keep
        });
        self.retiring =
            self.agents.values().any(|a| a.retiring) || self.queues.values().any(|q| q.retired);
    }
}
