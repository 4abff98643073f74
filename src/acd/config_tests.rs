//! What the config asks of the ACD (on a virtual clock): a new version
//! while calls go on (agents and queues added, changed and removed), and
//! a queue's required disposition holding the wrap-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{contact, join, offers, pair};
use super::*;

fn version(text: &str) -> Input {
    Input::Reconfigure(NewConfig(Arc::new(Config::parse(text).unwrap())))
}

fn states(out: &[Output]) -> Vec<(String, AgentStatus)> {
    out.iter()
        .filter_map(|o| match o {
            Output::State { agent, state, .. } => Some((agent.clone(), *state)),
            _ => None,
        })
        .collect()
}

const V1: &str = "
queues: { sales: { wrap-up: 5s }, old: {} }
agents:
  - { id: a1, password: x, queues: [sales, old], auto-login: true }
  - { id: a2, password: x, queues: [sales], auto-login: true }
";

fn reachable(acd: &mut Acd, agents: &[&str], t: Instant) {
    for a in agents {
        acd.step(
            Input::Contacts {
                agent: (*a).into(),
                contacts: contact(a),
            },
            t,
        );
    }
}

#[test]
fn an_agent_removed_on_a_call_is_logged_out_when_it_ends_and_one_added_takes_the_next() {
    let mut acd = Acd::new(&Config::parse(V1).unwrap());
    let t = Instant::now();
    reachable(&mut acd, &["a1"], t);
    let out = acd.step(join("c1", "sales", 0, &[]), t);
    assert_eq!(offers(&out), vec![pair("c1", "a1")]);
    acd.step(
        Input::Answered {
            call: "c1".into(),
            agent: "a1".into(),
        },
        t,
    );

    // a1 is removed, a3 added; a2 now also in `old`.
    let out = acd.step(
        version(
            "
queues: { sales: { wrap-up: 5s }, old: {} }
agents:
  - { id: a2, password: x, queues: [sales, old], auto-login: true }
  - { id: a3, password: y, queues: [sales], auto-login: true }
",
        ),
        t,
    );
    assert!(states(&out).is_empty(), "nobody's state changes: {out:?}");
    assert!(
        matches!(acd.agent_state("a1"), Some(AgentState::OnCall { .. })),
        "a1 keeps their call"
    );
    assert_eq!(acd.agent_state("a3"), Some(&AgentState::LoggedOut));

    // a3 registers and takes the next caller; a1 is offered nothing.
    let t2 = t + Duration::from_secs(1);
    reachable(&mut acd, &["a3"], t2);
    let out = acd.step(join("c2", "sales", 0, &[]), t2);
    assert_eq!(offers(&out), vec![pair("c2", "a3")]);

    // a1's call ends: logged out at once (no wrap-up), and gone.
    let t3 = t + Duration::from_secs(30);
    let out = acd.step(Input::Ended { call: "c1".into() }, t3);
    assert_eq!(
        states(&out),
        vec![
            ("a1".to_owned(), AgentStatus::WrapUp),
            ("a1".to_owned(), AgentStatus::LoggedOut)
        ]
    );
    assert_eq!(acd.agent_state("a1"), None);
    assert!(acd.agents_view(t3).iter().all(|a| a.id != "a1"));
    let old = acd
        .queues_view(t3)
        .into_iter()
        .find(|q| q.name == "old")
        .unwrap();
    assert_eq!(old.agents.values().sum::<usize>(), 1, "only a2 is in `old`");
}

#[test]
fn a_queue_removed_serves_its_callers_then_goes_and_an_idle_removed_agent_goes_at_once() {
    let mut acd = Acd::new(&Config::parse(V1).unwrap());
    let t = Instant::now();
    // Nobody reachable yet: c1 waits in `old`.
    acd.step(join("c1", "old", 0, &[]), t);
    reachable(&mut acd, &["a2"], t);

    let out = acd.step(
        version(
            "
queues: { sales: { wrap-up: 5s } }
agents:
  - { id: a1, password: x, queues: [sales], auto-login: true }
",
        ),
        t,
    );
    // a2 was available, with no call: logged out and gone now.
    assert_eq!(
        states(&out),
        vec![("a2".to_owned(), AgentStatus::LoggedOut)]
    );
    assert_eq!(acd.agent_state("a2"), None);
    // `old` still holds c1, and is still served by the member it had.
    assert!(acd.queues_view(t).iter().any(|q| q.name == "old"));
    let t2 = t + Duration::from_secs(1);
    let out = acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t2,
    );
    assert_eq!(offers(&out), vec![pair("c1", "a1")]);
    acd.step(
        Input::Answered {
            call: "c1".into(),
            agent: "a1".into(),
        },
        t2,
    );
    // Its last caller answered, the queue is gone.
    assert!(acd.queues_view(t2).iter().all(|q| q.name != "old"));
    assert!(acd.queues_view(t2).iter().any(|q| q.name == "sales"));
}

#[test]
fn a_required_disposition_holds_the_wrap_up_past_its_time_until_it_comes() {
    let mut acd = Acd::new(
        &Config::parse(
            "
queues:
  support:
    wrap-up: 5s
    disposition: required
    dispositions: [{ code: '1', label: Resolved, first-contact-resolution: true }]
agents:
  - { id: a1, password: x, queues: [support], auto-login: true }
",
        )
        .unwrap(),
    );
    let t = Instant::now();
    reachable(&mut acd, &["a1"], t);
    acd.step(join("c1", "support", 0, &[]), t);
    acd.step(
        Input::Answered {
            call: "c1".into(),
            agent: "a1".into(),
        },
        t,
    );
    acd.step(
        Input::Ended { call: "c1".into() },
        t + Duration::from_secs(60),
    );
    let view = |acd: &Acd, at| acd.agents_view(at).into_iter().next().unwrap();
    let v = view(&acd, t);
    assert_eq!(v.last_call.as_deref(), Some("c1"));
    assert!(v.awaiting_disposition);
    // Its 5 s are over; it waits.
    let later = t + Duration::from_secs(120);
    assert!(states(&acd.step(Input::Tick, later)).is_empty());
    assert!(matches!(
        acd.agent_state("a1"),
        Some(AgentState::WrapUp { .. })
    ));
    // A disposition for another call changes nothing; its own ends it.
    assert!(states(&acd.step(
        Input::Disposed {
            agent: "a1".into(),
            call: "c0".into(),
        },
        later,
    ))
    .is_empty());
    let out = acd.step(
        Input::Disposed {
            agent: "a1".into(),
            call: "c1".into(),
        },
        later,
    );
    assert_eq!(
        states(&out),
        vec![("a1".to_owned(), AgentStatus::Available)]
    );
    assert!(!view(&acd, later).awaiting_disposition);
}
