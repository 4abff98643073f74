//! Agents with a browser phone: reachable through it, and what happens
//! when its connection dies mid-call.

use std::time::{Duration, Instant};

use super::tests::{join, offers, pair};
use super::*;

const CONFIG: &str = "
queues:
  sales: { ring-timeout: 15s, wrap-up: 5s }
agents:
  - { id: web, password: x, queues: [sales] }
  - { id: desk, password: x, queues: [sales] }
";

fn acd() -> Acd {
    Acd::new(&Config::parse(CONFIG).unwrap())
}

fn browser(agent: &str, on: bool) -> Input {
    Input::Browser {
        agent: agent.into(),
        on,
    }
}

#[test]
fn a_browser_phone_makes_an_agent_reachable_and_offers_ring_it() {
    let mut acd = acd();
    let t = Instant::now();
    acd.step(
        Input::Login {
            agent: "web".into(),
        },
        t,
    );
    // Logged in with no phone at all: nobody staffs the queue.
    assert_eq!(acd.staffed("sales"), 0);
    acd.step(browser("web", true), t);
    assert_eq!(acd.staffed("sales"), 1);
    let out = acd.step(join("c1", "sales", 0, &[]), t + Duration::from_secs(1));
    assert_eq!(offers(&out), vec![pair("c1", "web")]);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Offer { browser: true, contacts, .. } if contacts.is_empty()
    )));
    // The tab is closed: no longer reachable.
    acd.step(browser("web", false), t + Duration::from_secs(2));
    assert_eq!(acd.staffed("sales"), 0);
    let view = acd.agents_view(t + Duration::from_secs(2));
    assert!(!view.iter().find(|a| a.id == "web").unwrap().browser);
}

#[test]
fn a_lost_connection_pauses_the_agent_and_the_caller_goes_back_to_the_head() {
    let mut acd = acd();
    let t = Instant::now();
    for agent in ["web", "desk"] {
        acd.step(
            Input::Login {
                agent: agent.into(),
            },
            t,
        );
    }
    acd.step(browser("web", true), t);
    acd.step(join("first", "sales", 0, &[]), t + Duration::from_secs(1));
    acd.step(
        Input::Answered {
            call: "first".into(),
            agent: "web".into(),
        },
        t + Duration::from_secs(2),
    );
    // Two more callers wait meanwhile, one with a higher priority.
    acd.step(join("second", "sales", 0, &[]), t + Duration::from_secs(3));
    acd.step(join("urgent", "sales", 9, &[]), t + Duration::from_secs(4));
    let at = t + Duration::from_secs(20);
    let out = acd.step(
        Input::ConnectionLost {
            call: "first".into(),
        },
        at,
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::State { agent, state: AgentStatus::Paused, reason: Some(r) } if agent == "web" && r == "connection-lost"
    )));
    assert!(matches!(
        acd.agent_state("web"),
        Some(AgentState::Paused { .. })
    ));
    // The call was not one the agent handled.
    let view = acd.agents_view(at);
    assert_eq!(view.iter().find(|a| a.id == "web").unwrap().calls, 0);
    let mut rejoin = join("first", "sales", 0, &[]);
    if let Input::Join { ahead, .. } = &mut rejoin {
        *ahead = true;
    }
    acd.step(rejoin, at);
    assert_eq!(acd.position("first").unwrap().position, 1);
    assert_eq!(acd.position("urgent").unwrap().position, 2);
    assert_eq!(acd.position("second").unwrap().position, 3);
    // The next free agent gets them first.
    let out = acd.step(
        Input::Contacts {
            agent: "desk".into(),
            contacts: super::tests::contact("desk"),
        },
        at + Duration::from_secs(1),
    );
    assert_eq!(offers(&out)[0], pair("first", "desk"));
}

#[test]
fn a_lost_connection_for_a_call_nobody_talks_on_changes_nothing() {
    let mut acd = acd();
    let t = Instant::now();
    acd.step(
        Input::Login {
            agent: "web".into(),
        },
        t,
    );
    acd.step(browser("web", true), t);
    let out = acd.step(
        Input::ConnectionLost {
            call: "nobody".into(),
        },
        t,
    );
    assert!(out.is_empty());
    assert!(matches!(
        acd.agent_state("web"),
        Some(AgentState::Available { .. })
    ));
}
