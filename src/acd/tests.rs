//! The ACD on a virtual clock: routing, priorities, skills, no-answer,
//! wrap-up, several queues, and positions.
//!
//! Over 800 lines: one scenario per ACD behaviour, each readable on its own.

use std::time::{Duration, Instant};

use super::*;

const CONFIG: &str = "
queues:
  sales: { ring-timeout: 15s, wrap-up: 5s }
  support: { strategy: skills, max-no-answer: 2 }
  vip: { weight: 10 }
agents:
  - { id: a1, password: x, queues: [sales, support], skills: { spanish: 3 }, auto-login: true }
  - { id: a2, password: x, queues: [sales, support, vip], skills: { spanish: 8 }, auto-login: true }
  - { id: a3, password: x, queues: [support], auto-login: false }
";

fn acd() -> Acd {
    Acd::new(&Config::parse(CONFIG).unwrap())
}

pub(super) fn contact(agent: &str) -> Vec<Contact> {
    vec![Contact {
        uri: format!("sip:{agent}@10.0.0.1"),
        source: "10.0.0.1:5060".parse().unwrap(),
        tcp: false,
        tls: false,
        ws: false,
    }]
}

pub(super) fn join(call: &str, queue: &str, priority: i64, skills: &[&str]) -> Input {
    Input::Join {
        call: call.into(),
        queue: queue.into(),
        priority,
        skills: skills.iter().map(|s| s.to_string()).collect(),
        caller: "+1555".into(),
        max_wait: None,
        ahead: false,
    }
}

pub(super) fn offers(out: &[Output]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Offer { call, agent, .. } => Some((call.clone(), agent.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn pair(c: &str, a: &str) -> (String, String) {
    (c.to_owned(), a.to_owned())
}

#[test]
fn registration_logs_in_auto_login_agents_and_the_longest_idle_gets_the_call() {
    let mut acd = acd();
    let t = Instant::now();
    // Nobody is reachable: the caller waits.
    assert!(offers(&acd.step(join("c1", "sales", 0, &[]), t)).is_empty());
    assert_eq!(acd.agent_state("a1"), Some(&AgentState::LoggedOut));
    // a2 registers first, so it has been idle longest when a1 arrives.
    let out = acd.step(
        Input::Contacts {
            agent: "a2".into(),
            contacts: contact("a2"),
        },
        t,
    );
    assert_eq!(offers(&out), vec![pair("c1", "a2")]);
    match &out
        .iter()
        .find(|o| matches!(o, Output::Offer { .. }))
        .unwrap()
    {
        Output::Offer {
            ring_timeout,
            contacts,
            ..
        } => {
            assert_eq!(*ring_timeout, Duration::from_secs(15));
            assert_eq!(contacts[0].uri, "sip:a2@10.0.0.1");
        }
        _ => unreachable!(),
    }
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t + Duration::from_secs(1),
    );
    acd.step(
        Input::Answered {
            call: "c1".into(),
            agent: "a2".into(),
        },
        t + Duration::from_secs(2),
    );
    assert!(matches!(
        acd.agent_state("a2"),
        Some(AgentState::OnCall { .. })
    ));
    // The next caller goes to a1, the only free agent.
    let out = acd.step(join("c2", "sales", 0, &[]), t + Duration::from_secs(3));
    assert_eq!(offers(&out), vec![pair("c2", "a1")]);
    // a3 has no auto-login: registered but not offered calls until it logs in.
    acd.step(
        Input::Contacts {
            agent: "a3".into(),
            contacts: contact("a3"),
        },
        t,
    );
    assert_eq!(acd.agent_state("a3"), Some(&AgentState::LoggedOut));
}

#[test]
fn priority_then_arrival_order_and_heavier_queues_first() {
    let mut acd = acd();
    let t = Instant::now();
    acd.step(join("early", "sales", 0, &[]), t);
    acd.step(join("urgent", "sales", 5, &[]), t + Duration::from_secs(1));
    acd.step(join("late", "sales", 0, &[]), t + Duration::from_secs(2));
    acd.step(join("vip", "vip", 0, &[]), t + Duration::from_secs(3));
    assert_eq!(acd.position("urgent").unwrap().position, 1);
    assert_eq!(acd.position("early").unwrap().position, 2);
    assert_eq!(acd.position("late").unwrap().position, 3);
    // a2 works sales and vip: the vip queue weighs more.
    let out = acd.step(
        Input::Contacts {
            agent: "a2".into(),
            contacts: contact("a2"),
        },
        t + Duration::from_secs(4),
    );
    assert_eq!(offers(&out), vec![pair("vip", "a2")]);
    // a1 (sales only): the urgent caller before the earlier one.
    let out = acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t + Duration::from_secs(5),
    );
    assert_eq!(offers(&out), vec![pair("urgent", "a1")]);
}

#[test]
fn skills_route_to_the_best_level_and_exclude_agents_without_them() {
    let mut acd = acd();
    let t = Instant::now();
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    acd.step(
        Input::Contacts {
            agent: "a2".into(),
            contacts: contact("a2"),
        },
        t + Duration::from_secs(1),
    );
    // a1 has been idle longer, but a2 speaks better Spanish.
    let out = acd.step(
        join("c", "support", 0, &["spanish"]),
        t + Duration::from_secs(2),
    );
    assert_eq!(offers(&out), vec![pair("c", "a2")]);
    // Nobody free speaks German: the caller waits.
    let out = acd.step(
        join("d", "support", 0, &["german"]),
        t + Duration::from_secs(3),
    );
    assert!(offers(&out).is_empty());
}

#[test]
fn no_answer_pauses_after_the_configured_misses_and_the_caller_keeps_their_place() {
    let mut acd = acd();
    let t = Instant::now();
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    acd.step(
        Input::Contacts {
            agent: "a2".into(),
            contacts: contact("a2"),
        },
        t + Duration::from_secs(1),
    );
    acd.step(join("c", "sales", 0, &[]), t + Duration::from_secs(2));
    acd.step(join("d", "sales", 0, &[]), t + Duration::from_secs(3));
    // sales pauses after one miss (the default): c goes to a2.
    let out = acd.step(
        Input::NoAnswer { call: "c".into() },
        t + Duration::from_secs(17),
    );
    assert!(
        matches!(acd.agent_state("a1"), Some(AgentState::Paused { reason, .. }) if reason == "no-answer")
    );
    assert!(offers(&out).is_empty(), "a2 is ringing for d");
    assert_eq!(
        acd.position("c").unwrap().position,
        1,
        "c keeps its place ahead of d"
    );
    // d is answered by a2; c still waits for the next free agent.
    acd.step(
        Input::Answered {
            call: "d".into(),
            agent: "a2".into(),
        },
        t + Duration::from_secs(18),
    );
    let out = acd.step(
        Input::Unpause { agent: "a1".into() },
        t + Duration::from_secs(30),
    );
    assert_eq!(offers(&out), vec![pair("c", "a1")]);

    // support allows two misses before pausing.
    let mut acd = super::Acd::new(&Config::parse(CONFIG).unwrap());
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    acd.step(join("s", "support", 0, &[]), t);
    acd.step(
        Input::NoAnswer { call: "s".into() },
        t + Duration::from_secs(20),
    );
    assert!(
        matches!(acd.agent_state("a1"), Some(AgentState::Ringing { .. })),
        "offered again"
    );
    acd.step(
        Input::NoAnswer { call: "s".into() },
        t + Duration::from_secs(40),
    );
    assert_eq!(acd.agent_state("a1").map(|s| s.name()), Some("paused"));
}

#[test]
fn an_offer_our_own_want_could_not_place_neither_pauses_the_agent_nor_moves_the_caller() {
    let mut acd = acd();
    let t = Instant::now();
    let s = Duration::from_secs;
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    acd.step(join("c", "sales", 0, &[]), t + s(1));
    acd.step(join("d", "sales", 0, &[]), t + s(2));
    // sales pauses after one miss; no RTP port for c's agent leg, again
    // and again, is no miss.
    for n in 0..5 {
        let at = t + s(3) + s(2) * n;
        let out = acd.step(Input::NotPlaced { call: "c".into() }, at);
        assert!(
            matches!(
                acd.agent_state("a1"),
                Some(AgentState::Available { .. }) | Some(AgentState::Ringing { .. })
            ),
            "{:?}",
            acd.agent_state("a1")
        );
        // c is not offered again at once (no busy loop between the call
        // and the ACD); d, behind, may take the free agent meanwhile.
        assert!(!offers(&out).contains(&pair("c", "a1")), "c waits a moment");
        assert_eq!(acd.position("c").unwrap().position, 1, "c keeps its place");
        if offers(&out).contains(&pair("d", "a1")) {
            // d took the agent; it misses too, for our own want.
            acd.step(Input::NotPlaced { call: "d".into() }, at);
        }
        let out = acd.step(Input::Tick, at + NOT_PLACED_RETRY);
        assert_eq!(
            offers(&out),
            vec![pair("c", "a1")],
            "offered again after the pause"
        );
    }
    assert!(!matches!(
        acd.agent_state("a1"),
        Some(AgentState::Paused { .. })
    ));
}

#[test]
fn an_offer_that_could_not_be_placed_goes_to_another_free_agent_first() {
    let mut acd = acd();
    let t = Instant::now();
    let s = Duration::from_secs;
    for a in ["a1", "a2"] {
        acd.step(
            Input::Contacts {
                agent: a.into(),
                contacts: contact(a),
            },
            t,
        );
    }
    // By skills, a2 (Spanish 8) is the best agent, and would be chosen
    // again and again; its leg cannot be opened.
    let out = acd.step(join("c", "support", 0, &["spanish"]), t + s(1));
    assert_eq!(offers(&out), vec![pair("c", "a2")]);
    acd.step(Input::NotPlaced { call: "c".into() }, t + s(1));
    // The retry goes to the other free agent, and no miss is counted.
    let out = acd.step(Input::Tick, t + s(1) + NOT_PLACED_RETRY);
    assert_eq!(offers(&out), vec![pair("c", "a1")]);
    assert!(matches!(
        acd.agent_state("a2"),
        Some(AgentState::Available { .. })
    ));
    // That one's fails as well: with every agent tried, the best again.
    acd.step(Input::NotPlaced { call: "c".into() }, t + s(3));
    let out = acd.step(Input::Tick, t + s(3) + NOT_PLACED_RETRY);
    assert_eq!(offers(&out), vec![pair("c", "a2")]);
}

#[test]
fn wrap_up_then_available_and_a_caller_who_hangs_up_frees_the_ringing_agent() {
    let mut acd = acd();
    let t = Instant::now();
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    acd.step(join("c", "sales", 0, &[]), t);
    acd.step(
        Input::Answered {
            call: "c".into(),
            agent: "a1".into(),
        },
        t + Duration::from_secs(1),
    );
    acd.step(
        Input::Ended { call: "c".into() },
        t + Duration::from_secs(61),
    );
    assert_eq!(acd.agent_state("a1").map(|s| s.name()), Some("wrap-up"));
    let out = acd.step(join("d", "sales", 0, &[]), t + Duration::from_secs(62));
    assert!(offers(&out).is_empty(), "wrap-up is honoured");
    acd.step(Input::Tick, t + Duration::from_secs(65));
    assert_eq!(
        acd.agent_state("a1").map(|s| s.name()),
        Some("wrap-up"),
        "4 s in"
    );
    acd.step(Input::Tick, t + Duration::from_secs(66));
    assert!(
        matches!(acd.agent_state("a1"), Some(AgentState::Ringing { .. })),
        "offered d after 5 s of wrap-up"
    );
    // d hangs up while a1's phone rings: a1 is free again at once.
    acd.step(
        Input::Leave { call: "d".into() },
        t + Duration::from_secs(67),
    );
    assert_eq!(acd.agent_state("a1").map(|s| s.name()), Some("available"));
    assert!(acd.position("d").is_none());
}

#[test]
fn the_estimated_wait_uses_position_staffing_and_recent_handle_times() {
    let mut acd = acd();
    let t = Instant::now();
    for (i, c) in ["x", "y", "z"].iter().enumerate() {
        acd.step(
            join(c, "support", 0, &[]),
            t + Duration::from_secs(i as u64),
        );
    }
    // No agent staffed: fallback 180 s per call ahead.
    assert_eq!(
        acd.position("z").unwrap().estimated_wait,
        Duration::from_secs(540)
    );
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t + Duration::from_secs(10),
    );
    acd.step(
        Input::Answered {
            call: "x".into(),
            agent: "a1".into(),
        },
        t + Duration::from_secs(10),
    );
    acd.step(
        Input::Ended { call: "x".into() },
        t + Duration::from_secs(60),
    );
    // One call handled in 50 s + 10 s wrap-up; one agent staffed; z is now second.
    let p = acd.position("z").unwrap();
    assert_eq!(p.position, 2);
    assert_eq!(p.estimated_wait, Duration::from_secs(120));
}

#[test]
fn every_waiting_callers_position_comes_in_one_pass_as_each_would_be_asked() {
    let mut acd = acd();
    let t = Instant::now();
    acd.step(join("s1", "sales", 0, &[]), t);
    acd.step(join("p1", "support", 0, &[]), t + Duration::from_secs(1));
    acd.step(join("s2", "sales", 5, &[]), t + Duration::from_secs(2));
    acd.step(join("s3", "sales", 0, &[]), t + Duration::from_secs(3));
    let all = acd.positions();
    assert_eq!(all.len(), 4);
    for (call, p) in &all {
        assert_eq!(Some(p), acd.position(call).as_ref(), "{call}");
    }
    let of = |c: &str| all.iter().find(|(x, _)| x == c).map(|(_, p)| p.position);
    // The priority caller is first in sales; support has its own line.
    assert_eq!(
        (of("s2"), of("s1"), of("s3"), of("p1")),
        (Some(1), Some(2), Some(3), Some(1))
    );
    acd.step(
        Input::Leave { call: "s2".into() },
        t + Duration::from_secs(4),
    );
    let all = acd.positions();
    assert_eq!(all.len(), 3);
    assert!(all
        .iter()
        .any(|(c, p)| c == "s1" && p.position == 1 && p.waiting == 2));
}

#[test]
fn callers_of_a_queue_that_announces_nothing_are_not_sent_positions() {
    let config =
        Config::parse("queues:\n  quiet: { announce-position: false }\n  loud: {}\nagents: []\n")
            .unwrap();
    let mut acd = Acd::new(&config);
    let t = Instant::now();
    acd.step(join("q1", "quiet", 0, &[]), t);
    acd.step(join("l1", "loud", 0, &[]), t);
    let all: Vec<String> = acd.positions().into_iter().map(|(c, _)| c).collect();
    assert_eq!(all, vec!["l1".to_string()]);
    assert!(!acd.announces_to("q1") && acd.announces_to("l1"));
    // The API still sees where the quiet queue's caller stands.
    assert_eq!(acd.position("q1").map(|p| p.position), Some(1));
}

#[test]
fn join_empty_and_leave_empty() {
    let cfg = "
queues:
  strict: { join-empty: false, leave-empty: true }
  lenient: {}
agents:
  - { id: a1, password: x, queues: [strict, lenient], auto-login: true }
";
    let mut acd = Acd::new(&Config::parse(cfg).unwrap());
    let t = Instant::now();
    let empty = |out: &[Output]| -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Away {
                    call,
                    why: Away::Empty,
                } => Some(call.clone()),
                _ => None,
            })
            .collect()
    };
    // Nobody staffs either queue: strict refuses, lenient keeps the caller.
    assert_eq!(
        empty(&acd.step(join("s1", "strict", 0, &[]), t)),
        vec!["s1".to_string()]
    );
    assert!(empty(&acd.step(join("l1", "lenient", 0, &[]), t)).is_empty());
    assert!(acd.position("l1").is_some());
    // a1 comes, takes l1, and is paused afterwards: still staffing.
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    acd.step(
        Input::Answered {
            call: "l1".into(),
            agent: "a1".into(),
        },
        t,
    );
    acd.step(Input::Ended { call: "l1".into() }, t);
    acd.step(
        Input::Pause {
            agent: "a1".into(),
            reason: "lunch".into(),
        },
        t,
    );
    assert!(
        empty(&acd.step(join("s2", "strict", 0, &[]), t)).is_empty(),
        "a paused agent still staffs"
    );
    acd.step(join("l2", "lenient", 0, &[]), t);
    // The last agent logs out: strict's callers leave, lenient's wait on.
    let out = acd.step(Input::Logout { agent: "a1".into() }, t);
    assert_eq!(empty(&out), vec!["s2".to_string()]);
    assert!(acd.position("s2").is_none());
    assert!(acd.position("l2").is_some());
}

#[test]
fn ring_all_rings_every_free_agent_and_the_first_answer_frees_the_others() {
    let config = "
queues:
  hunt: { strategy: ring-all, max-no-answer: 1 }
agents:
  - { id: a1, password: x, queues: [hunt], auto-login: true }
  - { id: a2, password: x, queues: [hunt], auto-login: true }
  - { id: a3, password: x, queues: [hunt], auto-login: true }
";
    let mut acd = Acd::new(&Config::parse(config).unwrap());
    let t = Instant::now();
    for a in ["a1", "a2", "a3"] {
        acd.step(
            Input::Contacts {
                agent: a.into(),
                contacts: contact(a),
            },
            t,
        );
    }
    // a3 is paused: not rung.
    acd.step(
        Input::Pause {
            agent: "a3".into(),
            reason: "lunch".into(),
        },
        t,
    );
    let out = acd.step(join("c", "hunt", 0, &[]), t);
    assert_eq!(offers(&out), vec![pair("c", "a1"), pair("c", "a2")]);
    let out = acd.step(join("d", "hunt", 0, &[]), t);
    assert!(offers(&out).is_empty(), "both are ringing for c");
    // a2 answers: a1 stops ringing for c and is offered d at once.
    let out = acd.step(
        Input::Answered {
            call: "c".into(),
            agent: "a2".into(),
        },
        t + Duration::from_secs(2),
    );
    assert!(matches!(
        acd.agent_state("a2"),
        Some(AgentState::OnCall { .. })
    ));
    assert_eq!(offers(&out), vec![pair("d", "a1")]);
    // An answer from an agent who was not rung for the call changes nothing.
    acd.step(
        Input::Answered {
            call: "d".into(),
            agent: "a3".into(),
        },
        t + Duration::from_secs(3),
    );
    assert!(matches!(
        acd.agent_state("a1"),
        Some(AgentState::Ringing { .. })
    ));
    assert!(matches!(
        acd.agent_state("a3"),
        Some(AgentState::Paused { .. })
    ));
    // Nobody answers d: a1 missed it and is paused; d keeps waiting.
    acd.step(
        Input::NoAnswer { call: "d".into() },
        t + Duration::from_secs(20),
    );
    assert!(
        matches!(acd.agent_state("a1"), Some(AgentState::Paused { reason, .. }) if reason == "no-answer")
    );
    assert_eq!(acd.position("d").map(|p| p.position), Some(1));
}

#[test]
fn a_full_queue_turns_callers_away_and_off_shift_agents_take_no_calls() {
    let config = "
queues:
  small: { max-length: 2 }
agents:
  - { id: a1, password: x, queues: [small], auto-login: true }
";
    let mut acd = Acd::new(&Config::parse(config).unwrap());
    let t = Instant::now();
    let away = |out: &[Output]| -> Vec<(String, Away)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Away { call, why } => Some((call.clone(), *why)),
                _ => None,
            })
            .collect()
    };
    assert!(away(&acd.step(join("c1", "small", 0, &[]), t)).is_empty());
    assert!(away(&acd.step(join("c2", "small", 5, &[]), t)).is_empty());
    // Two wait already: the third is turned away, whatever its priority.
    assert_eq!(
        away(&acd.step(join("c3", "small", 9, &[]), t)),
        vec![("c3".to_string(), Away::Full)]
    );
    assert_eq!(acd.position("c3"), None);

    // a1 registers outside its shift: logged in, but offered nothing.
    acd.step(
        Input::Shift {
            agent: "a1".into(),
            on: false,
        },
        t,
    );
    let out = acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    assert!(offers(&out).is_empty());
    assert_eq!(acd.agent_state("a1").map(|s| s.name()), Some("available"));
    assert_eq!(acd.staffed("small"), 0, "off shift, a1 staffs nothing");
    // The shift begins: the highest priority caller goes to a1.
    let out = acd.step(
        Input::Shift {
            agent: "a1".into(),
            on: true,
        },
        t + Duration::from_secs(60),
    );
    assert_eq!(offers(&out), vec![pair("c2", "a1")]);
    // A caller whose agent is ringing still holds a place in line.
    assert_eq!(
        away(&acd.step(join("c4", "small", 0, &[]), t)),
        vec![("c4".to_string(), Away::Full)]
    );
    // Answered, c2 leaves the line: there is room again.
    acd.step(
        Input::Answered {
            call: "c2".into(),
            agent: "a1".into(),
        },
        t + Duration::from_secs(61),
    );
    assert!(away(&acd.step(join("c5", "small", 0, &[]), t)).is_empty());
}

#[test]
fn a_caller_leaves_at_their_max_wait_unless_an_agent_is_ringing_for_them() {
    let mut acd = acd();
    let t = Instant::now();
    let timed_out = |out: &[Output]| -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Away {
                    call,
                    why: Away::Timeout,
                } => Some(call.clone()),
                _ => None,
            })
            .collect()
    };
    let with_max = |call: &str, secs: u64| match join(call, "sales", 0, &[]) {
        Input::Join {
            call,
            queue,
            priority,
            skills,
            caller,
            ..
        } => Input::Join {
            call,
            queue,
            priority,
            skills,
            caller,
            max_wait: Some(Duration::from_secs(secs)),
            ahead: false,
        },
        other => other,
    };
    acd.step(with_max("w", 30), t);
    acd.step(join("forever", "sales", 0, &[]), t);
    assert!(timed_out(&acd.step(Input::Tick, t + Duration::from_secs(29))).is_empty());
    assert_eq!(
        timed_out(&acd.step(Input::Tick, t + Duration::from_secs(30))),
        vec!["w".to_string()]
    );
    assert_eq!(acd.position("w"), None);
    assert_eq!(acd.position("forever").map(|p| p.position), Some(1));
    acd.step(
        Input::Leave {
            call: "forever".into(),
        },
        t,
    );

    // r's agent starts ringing at 25 s; at 30 s r waits for that answer,
    // and leaves on the first tick after the agent does not answer.
    acd.step(with_max("r", 30), t);
    let out = acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t + Duration::from_secs(25),
    );
    assert_eq!(offers(&out), vec![pair("r", "a1")]);
    assert!(timed_out(&acd.step(Input::Tick, t + Duration::from_secs(31))).is_empty());
    acd.step(
        Input::NoAnswer { call: "r".into() },
        t + Duration::from_secs(40),
    );
    assert_eq!(
        timed_out(&acd.step(Input::Tick, t + Duration::from_secs(41))),
        vec!["r".to_string()]
    );
}

#[test]
fn a_callback_keeps_the_callers_place_and_is_never_turned_away() {
    let cfg = "
queues:
  q: { leave-empty: true, max-length: 3 }
agents:
  - { id: a1, password: x, queues: [q], auto-login: true }
";
    let mut acd = Acd::new(&Config::parse(cfg).unwrap());
    let t = Instant::now();
    let s = Duration::from_secs(1);
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    acd.step(
        Input::Pause {
            agent: "a1".into(),
            reason: "busy".into(),
        },
        t,
    );
    // C joins, then A, then B; A books a callback at t+30s.
    let mut c = join("C", "q", 0, &[]);
    if let Input::Join { max_wait, .. } = &mut c {
        *max_wait = Some(60 * s);
    }
    acd.step(c, t);
    acd.step(join("A", "q", 0, &[]), t + 10 * s);
    let out = acd.step(
        Input::Callback {
            call: "cb-1".into(),
            queue: "q".into(),
            priority: 0,
            skills: Vec::new(),
            caller: "+1555".into(),
            waited: Duration::ZERO,
            replaces: Some("A".into()),
        },
        t + 30 * s,
    );
    assert!(offers(&out).is_empty());
    assert!(
        acd.position("A").is_none(),
        "the caller's own entry is gone"
    );
    acd.step(join("B", "q", 0, &[]), t + 40 * s);
    let order: Vec<(String, bool)> = acd.queues_view(t + 40 * s)[0]
        .waiting
        .iter()
        .map(|w| (w.call_id.clone(), w.callback))
        .collect();
    assert_eq!(
        order,
        vec![
            ("C".to_string(), false),
            ("cb-1".to_string(), true),
            ("B".to_string(), false)
        ],
        "the callback stands where A stood: after C, before B"
    );
    assert_eq!(acd.position("B").unwrap().position, 3);
    // Past max-wait, the callers on the line leave; the callback stays.
    let out = acd.step(Input::Tick, t + 75 * s);
    let away: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Away { call, .. } => Some(call.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(away, vec!["C".to_string()]);
    // The last agent logs out (leave-empty): the callback still waits,
    // and is served first when an agent comes back.
    let out = acd.step(Input::Logout { agent: "a1".into() }, t + 80 * s);
    assert!(out
        .iter()
        .all(|o| !matches!(o, Output::Away { call, .. } if call == "cb-1")));
    acd.step(Input::Login { agent: "a1".into() }, t + 90 * s);
    acd.step(Input::Unpause { agent: "a1".into() }, t + 90 * s);
    assert_eq!(acd.position("cb-1").unwrap().position, 1);
    // Restored after a restart, with the time it had waited, it goes
    // before a caller who joined since.
    let mut acd = Acd::new(&Config::parse(cfg).unwrap());
    acd.step(join("D", "q", 0, &[]), t);
    acd.step(
        Input::Callback {
            call: "cb-2".into(),
            queue: "q".into(),
            priority: 0,
            skills: Vec::new(),
            caller: "+1555".into(),
            waited: 300 * s,
            replaces: None,
        },
        t + 5 * s,
    );
    assert_eq!(acd.position("cb-2").unwrap().position, 1);
}

#[test]
fn an_agent_released_from_a_failed_callback_is_free_at_once_without_a_call_counted() {
    let mut acd = acd();
    let t = Instant::now();
    acd.step(
        Input::Contacts {
            agent: "a1".into(),
            contacts: contact("a1"),
        },
        t,
    );
    let out = acd.step(
        Input::Callback {
            call: "callback-1".into(),
            queue: "sales".into(),
            priority: 0,
            skills: Vec::new(),
            caller: "+1555".into(),
            waited: Duration::from_secs(60),
            replaces: None,
        },
        t,
    );
    assert_eq!(offers(&out), vec![pair("callback-1", "a1")]);
    acd.step(
        Input::Answered {
            call: "callback-1".into(),
            agent: "a1".into(),
        },
        t,
    );
    // The customer was busy: no wrap-up, no call handled.
    acd.step(
        Input::Released {
            call: "callback-1".into(),
        },
        t + Duration::from_secs(20),
    );
    assert_eq!(acd.agent_state("a1").map(|s| s.name()), Some("available"));
    let view = acd.agents_view(t + Duration::from_secs(20));
    assert_eq!(view.iter().find(|a| a.id == "a1").unwrap().calls, 0);
}
