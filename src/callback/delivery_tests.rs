//! Callback delivery on a virtual clock: both orders, every way an attempt
//! ends (busy, no answer, not confirmed, either side hanging up).

use super::*;

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn offered(agent: &str) -> Offered {
    Offered {
        agent: agent.into(),
        name: None,
        contacts: Vec::new(),
        browser: false,
    }
}

fn setup(order: Order) -> Setup {
    Setup {
        order,
        acd_id: "callback-7".into(),
        id: 7,
        whisper: vec!["callback/for".into()],
        music: "music/default".into(),
        confirm_timeout: Duration::from_secs(10),
        symmetric: true,
        agents: match order {
            Order::AgentFirst => vec![offered("a1")],
            Order::CustomerFirst => Vec::new(),
        },
        ring_timeout: Duration::from_secs(15),
        customer_crypto: Vec::new(),
        customer_policy: crate::sdp::crypto::Policy::NONE,
    }
}

/// Feeds `input` and returns what comes out.
fn step(d: &mut Delivery, input: In, now: Instant) -> Vec<Do> {
    d.handle(input, now);
    drain(d)
}

fn drain(d: &mut Delivery) -> Vec<Do> {
    std::iter::from_fn(|| d.poll_output()).collect()
}

fn answered(agent: Option<&str>) -> LegEvent {
    LegEvent::Answered {
        agent: agent.map(str::to_owned),
        sdp: Some(SDP.to_vec()),
    }
}

fn bye() -> LegEvent {
    LegEvent::Dialog(DialogEvent::Bye)
}

fn key(c: char) -> LegEvent {
    LegEvent::Media(MediaEvent::Digit(
        crate::media::Digit::from_char(c).unwrap(),
        crate::media::DigitSource::Rfc4733,
    ))
}

fn acd(out: &[Do]) -> Vec<&AcdInput> {
    out.iter()
        .filter_map(|d| match d {
            Do::Acd(i) => Some(i),
            _ => None,
        })
        .collect()
}

fn reports(out: &[Do]) -> Vec<&Progress> {
    out.iter()
        .filter_map(|d| match d {
            Do::Report(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// What the ACD is told about the callback's entry.
fn told(input: fn(String) -> AcdInput) -> AcdInput {
    input("callback-7".into())
}

fn released(call: String) -> AcdInput {
    AcdInput::Released { call }
}

fn ended(call: String) -> AcdInput {
    AcdInput::Ended { call }
}

fn leave(call: String) -> AcdInput {
    AcdInput::Leave { call }
}

fn no_answer(call: String) -> AcdInput {
    AcdInput::NoAnswer { call }
}

/// The ACD offers the agent `agent`.
fn offer(agent: &str) -> In {
    In::Offer {
        agents: vec![offered(agent)],
        ring_timeout: Duration::from_secs(15),
    }
}

fn failed(attempt: Option<i64>, outcome: &str) -> Progress {
    let outcome = crate::store::AttemptOutcome::parse(outcome).expect("an outcome's name");
    Progress::Failed { attempt, outcome }
}

/// Agent first, up to the customer's phone ringing (attempt 42, the 1st).
fn agent_first_to_customer(t: Instant) -> Delivery {
    let mut d = Delivery::start(setup(Order::AgentFirst));
    let out = drain(&mut d);
    assert!(matches!(&out[..], [Do::RingAgents { agents, .. }] if agents[0].agent == "a1"));
    let out = step(&mut d, In::Leg(Side::Agent, answered(Some("a1"))), t);
    assert!(matches!(
        out[0],
        Do::Connect {
            side: Side::Agent,
            ..
        }
    ));
    assert_eq!(
        acd(&out),
        vec![&AcdInput::Answered {
            call: "callback-7".into(),
            agent: "a1".into()
        }]
    );
    assert!(matches!(
        out.last(),
        Some(Do::Play {
            side: Side::Agent,
            token: WHISPER,
            ..
        })
    ));
    // The whisper ends: music, then a trunk slot.
    let out = step(&mut d, In::PlayDone(Side::Agent, WHISPER), t);
    assert!(matches!(
        &out[..],
        [
            Do::Music {
                side: Side::Agent,
                ..
            },
            Do::TakeSlot
        ]
    ));
    let out = step(&mut d, In::Slot, t);
    assert_eq!(
        out,
        vec![Do::Count {
            agent: Some("a1".into())
        }]
    );
    let out = step(&mut d, In::Counted { attempt: 42, n: 1 }, t);
    assert_eq!(
        out,
        vec![
            Do::Report(Progress::Started {
                attempt: 42,
                n: 1,
                agent: "a1".into()
            }),
            Do::DialCustomer { n: 1 }
        ]
    );
    d
}

#[test]
fn agent_first_the_customer_presses_1_and_talks_until_the_agent_hangs_up() {
    let t = Instant::now();
    let mut d = agent_first_to_customer(t);
    let out = step(&mut d, In::Leg(Side::Customer, answered(None)), t);
    assert!(matches!(
        out[0],
        Do::Connect {
            side: Side::Customer,
            ..
        }
    ));
    assert!(matches!(
        &out[1],
        Do::Play {
            side: Side::Customer,
            token: GUARD,
            ..
        }
    ));
    // The question is asked: 10 s from its end.
    let asked = t + Duration::from_secs(3);
    step(&mut d, In::PlayDone(Side::Customer, GUARD), asked);
    assert_eq!(d.poll_timeout(), Some(asked + Duration::from_secs(10)));
    // Another key does nothing; 1 bridges.
    assert!(step(&mut d, In::Leg(Side::Customer, key('2')), asked).is_empty());
    let out = step(&mut d, In::Leg(Side::Customer, key('1')), asked);
    assert!(out.contains(&Do::Bridge));
    assert_eq!(
        reports(&out),
        vec![&Progress::Connected {
            attempt: 42,
            agent: None
        }]
    );
    assert_eq!(d.poll_timeout(), None, "no deadline once connected");
    let out = step(&mut d, In::Leg(Side::Agent, bye()), asked);
    assert_eq!(out[0], Do::Hangup(Side::Customer));
    assert_eq!(acd(&out), vec![&told(ended)]);
    assert_eq!(reports(&out), vec![&Progress::Done]);
    assert!(d.is_over());
}

#[test]
fn agent_first_a_busy_customer_frees_the_agent_without_wrap_up() {
    let t = Instant::now();
    let mut d = agent_first_to_customer(t);
    let out = step(&mut d, In::Leg(Side::Customer, LegEvent::Rejected(486)), t);
    assert!(out.contains(&Do::Hangup(Side::Agent)));
    assert_eq!(acd(&out), vec![&told(released)]);
    assert_eq!(reports(&out), vec![&failed(Some(42), "busy")]);
    assert!(d.is_over());
}

#[test]
fn agent_first_a_customer_who_does_not_answer_or_hangs_up_unconfirmed() {
    let t = Instant::now();
    let mut d = agent_first_to_customer(t);
    let out = step(&mut d, In::Leg(Side::Customer, LegEvent::NoAnswer), t);
    assert_eq!(reports(&out), vec![&failed(Some(42), "no-answer")]);

    let mut d = agent_first_to_customer(t);
    step(&mut d, In::Leg(Side::Customer, answered(None)), t);
    let out = step(&mut d, In::Leg(Side::Customer, bye()), t);
    assert_eq!(reports(&out), vec![&failed(Some(42), "not-confirmed")]);
}

#[test]
fn agent_first_an_answering_machine_that_never_presses_1_is_hung_up_after_the_timeout() {
    let t = Instant::now();
    let mut d = agent_first_to_customer(t);
    step(&mut d, In::Leg(Side::Customer, answered(None)), t);
    // No deadline before the question has been asked.
    assert_eq!(d.poll_timeout(), None);
    step(&mut d, In::PlayDone(Side::Customer, GUARD), t);
    let by = d.poll_timeout().unwrap();
    assert!(step(&mut d, In::Timeout, by - Duration::from_millis(1)).is_empty());
    let out = step(&mut d, In::Timeout, by);
    assert!(out.contains(&Do::Hangup(Side::Customer)));
    assert_eq!(acd(&out), vec![&told(released)]);
    assert_eq!(reports(&out), vec![&failed(Some(42), "not-confirmed")]);
}

#[test]
fn agent_first_the_agent_hangs_up_while_the_customer_rings_or_before_they_are_called() {
    let t = Instant::now();
    let mut d = agent_first_to_customer(t);
    let out = step(&mut d, In::Leg(Side::Agent, bye()), t);
    assert!(out.contains(&Do::Hangup(Side::Customer)));
    assert_eq!(reports(&out), vec![&failed(Some(42), "agent-hung-up")]);

    // During the whisper: nobody was dialled, no attempt counted.
    let mut d = Delivery::start(setup(Order::AgentFirst));
    drain(&mut d);
    step(&mut d, In::Leg(Side::Agent, answered(Some("a1"))), t);
    let out = step(&mut d, In::Leg(Side::Agent, LegEvent::Gone), t);
    assert!(!out.iter().any(|o| matches!(o, Do::DialCustomer { .. })));
    assert_eq!(reports(&out), vec![&failed(None, "agent-hung-up")]);
    assert_eq!(acd(&out), vec![&told(released)]);

    // While the attempt is counted: counted, then not dialled.
    let mut d = Delivery::start(setup(Order::AgentFirst));
    drain(&mut d);
    step(&mut d, In::Leg(Side::Agent, answered(Some("a1"))), t);
    step(&mut d, In::PlayDone(Side::Agent, WHISPER), t);
    step(&mut d, In::Slot, t);
    assert!(step(&mut d, In::Leg(Side::Agent, bye()), t).is_empty());
    let out = step(&mut d, In::Counted { attempt: 43, n: 2 }, t);
    assert!(!out.iter().any(|o| matches!(o, Do::DialCustomer { .. })));
    assert_eq!(
        reports(&out)[1],
        &failed(Some(43), "agent-hung-up"),
        "the attempt is reported started, then failed"
    );
}

#[test]
fn agent_first_an_agent_who_does_not_answer_leaves_the_callback_in_its_place() {
    let t = Instant::now();
    for miss in [
        LegEvent::NoAnswer,
        LegEvent::Rejected(486),
        LegEvent::Failed("x".into()),
    ] {
        let mut d = Delivery::start(setup(Order::AgentFirst));
        drain(&mut d);
        let out = step(&mut d, In::Leg(Side::Agent, miss), t);
        assert_eq!(acd(&out), vec![&told(no_answer)]);
        assert_eq!(reports(&out), vec![&Progress::AgentMissed]);
        assert!(d.is_over());
    }
    // An answer without usable SDP is a miss too (and is hung up).
    let mut d = Delivery::start(setup(Order::AgentFirst));
    drain(&mut d);
    let out = step(
        &mut d,
        In::Leg(
            Side::Agent,
            LegEvent::Answered {
                agent: Some("a1".into()),
                sdp: None,
            },
        ),
        t,
    );
    assert_eq!(out[0], Do::Hangup(Side::Agent));
    assert_eq!(reports(&out), vec![&Progress::AgentMissed]);
}

#[test]
fn no_media_for_the_agent_leg_is_our_want_not_the_agents_miss_in_either_order() {
    let t = Instant::now();
    let not_placed = |call: String| AcdInput::NotPlaced { call };
    // Agent first: the attempt ends before anyone is dialled; the callback
    // keeps its place and the agents are not counted as missing it.
    let mut d = Delivery::start(setup(Order::AgentFirst));
    drain(&mut d);
    let out = step(&mut d, In::AgentNoMedia, t);
    assert_eq!(out[0], Do::Hangup(Side::Agent));
    assert_eq!(acd(&out), vec![&told(not_placed)]);
    assert_eq!(reports(&out), vec![&Progress::AgentMissed]);
    assert!(d.is_over());
    // Customer first: the customer keeps waiting for the next offer.
    let mut d = customer_first_confirmed(t);
    step(&mut d, offer("a1"), t);
    let out = step(&mut d, In::AgentNoMedia, t);
    assert_eq!(acd(&out), vec![&told(not_placed)]);
    assert!(reports(&out).is_empty(), "the customer keeps waiting");
    let out = step(&mut d, offer("a1"), t);
    assert!(matches!(&out[..], [Do::RingAgents { agents, .. }] if agents[0].agent == "a1"));
}

#[test]
fn agent_first_without_a_whisper_the_agent_goes_straight_to_the_slot() {
    let t = Instant::now();
    let mut s = setup(Order::AgentFirst);
    s.whisper.clear();
    let mut d = Delivery::start(s);
    drain(&mut d);
    let out = step(&mut d, In::Leg(Side::Agent, answered(Some("a1"))), t);
    assert!(matches!(
        &out[out.len() - 2..],
        [Do::Music { .. }, Do::TakeSlot]
    ));
}

/// Customer first, up to the customer confirming (attempt 50, the 2nd).
fn customer_first_confirmed(t: Instant) -> Delivery {
    let mut d = Delivery::start(setup(Order::CustomerFirst));
    assert_eq!(drain(&mut d), vec![Do::TakeSlot]);
    assert_eq!(step(&mut d, In::Slot, t), vec![Do::Count { agent: None }]);
    let out = step(&mut d, In::Counted { attempt: 50, n: 2 }, t);
    assert_eq!(out[1], Do::DialCustomer { n: 2 });
    step(&mut d, In::Leg(Side::Customer, answered(None)), t);
    let out = step(&mut d, In::Leg(Side::Customer, key('1')), t);
    assert!(matches!(
        &out[..],
        [
            Do::StopPlay(Side::Customer),
            Do::Music {
                side: Side::Customer,
                ..
            }
        ]
    ));
    d
}

#[test]
fn customer_first_the_customer_waits_then_a_missed_agent_is_followed_by_the_next_offer() {
    let t = Instant::now();
    let mut d = customer_first_confirmed(t);
    let out = step(&mut d, offer("a1"), t);
    assert!(matches!(&out[..], [Do::RingAgents { agents, .. }] if agents[0].agent == "a1"));
    let out = step(&mut d, In::Leg(Side::Agent, LegEvent::NoAnswer), t);
    assert_eq!(out[0], Do::Hangup(Side::Agent));
    assert_eq!(acd(&out), vec![&told(no_answer)]);
    assert!(reports(&out).is_empty(), "the customer keeps waiting");
    step(&mut d, offer("a2"), t);
    let out = step(&mut d, In::Leg(Side::Agent, answered(Some("a2"))), t);
    assert!(out.contains(&Do::Bridge));
    assert_eq!(
        reports(&out),
        vec![&Progress::Connected {
            attempt: 50,
            agent: Some("a2".into())
        }]
    );
    let out = step(&mut d, In::Leg(Side::Customer, bye()), t);
    assert_eq!(out[0], Do::Hangup(Side::Agent));
    assert_eq!(acd(&out), vec![&told(ended)]);
    assert_eq!(reports(&out), vec![&Progress::Done]);
}

#[test]
fn customer_first_an_offer_before_the_customer_confirmed_rings_once_they_have() {
    let t = Instant::now();
    let mut d = Delivery::start(setup(Order::CustomerFirst));
    drain(&mut d);
    step(&mut d, In::Slot, t);
    step(&mut d, In::Counted { attempt: 50, n: 2 }, t);
    let early = offer("a1");
    assert!(
        step(&mut d, early, t).is_empty(),
        "not before the customer confirmed"
    );
    step(&mut d, In::Leg(Side::Customer, answered(None)), t);
    let out = step(&mut d, In::Leg(Side::Customer, key('1')), t);
    assert!(matches!(out.last(), Some(Do::RingAgents { .. })));
}

#[test]
fn customer_first_a_customer_who_hangs_up_while_an_agent_rings_frees_the_entry() {
    let t = Instant::now();
    let mut d = customer_first_confirmed(t);
    step(&mut d, offer("a1"), t);
    let out = step(&mut d, In::Leg(Side::Customer, bye()), t);
    assert!(out.contains(&Do::Hangup(Side::Agent)));
    assert_eq!(acd(&out), vec![&told(leave)]);
    assert_eq!(reports(&out), vec![&failed(Some(50), "abandoned")]);
}

#[test]
fn customer_first_busy_no_answer_and_not_confirmed_leave_the_queue_for_the_next_attempt() {
    let t = Instant::now();
    for (ev, outcome) in [
        (LegEvent::Rejected(603), "busy"),
        (LegEvent::Rejected(480), "no-answer"),
        (LegEvent::NoAnswer, "no-answer"),
        (LegEvent::Failed("no route".into()), "failed"),
    ] {
        let mut d = Delivery::start(setup(Order::CustomerFirst));
        drain(&mut d);
        step(&mut d, In::Slot, t);
        step(&mut d, In::Counted { attempt: 50, n: 2 }, t);
        let out = step(&mut d, In::Leg(Side::Customer, ev), t);
        assert_eq!(acd(&out), vec![&told(leave)]);
        assert_eq!(reports(&out), vec![&failed(Some(50), outcome)]);
    }
    let mut d = Delivery::start(setup(Order::CustomerFirst));
    drain(&mut d);
    step(&mut d, In::Slot, t);
    step(&mut d, In::Counted { attempt: 50, n: 2 }, t);
    step(&mut d, In::Leg(Side::Customer, answered(None)), t);
    step(&mut d, In::PlayDone(Side::Customer, GUARD), t);
    let by = d.poll_timeout().unwrap();
    let out = step(&mut d, In::Timeout, by);
    assert_eq!(reports(&out), vec![&failed(Some(50), "not-confirmed")]);
}

#[test]
fn an_attempt_that_cannot_be_counted_dials_nobody() {
    let t = Instant::now();
    for order in [Order::AgentFirst, Order::CustomerFirst] {
        let mut d = Delivery::start(setup(order));
        drain(&mut d);
        if order == Order::AgentFirst {
            step(&mut d, In::Leg(Side::Agent, answered(Some("a1"))), t);
            step(&mut d, In::PlayDone(Side::Agent, WHISPER), t);
        }
        step(&mut d, In::Slot, t);
        let out = step(&mut d, In::NotCounted, t);
        assert!(!out.iter().any(|o| matches!(o, Do::DialCustomer { .. })));
        assert_eq!(reports(&out), vec![&failed(None, "failed")]);
        assert!(d.is_over());
        assert!(
            step(&mut d, In::Slot, t).is_empty(),
            "nothing after the end"
        );
    }
}

#[test]
fn an_agent_at_the_desktop_takes_the_callback_and_a_lost_browser_ends_it_as_a_hang_up() {
    let t = Instant::now();
    let mut d = Delivery::start(setup(Order::AgentFirst));
    drain(&mut d);
    let stream = crate::media::StreamConfig {
        remote: "127.0.0.1:3478".parse().unwrap(),
        codec: crate::sdp::Codec::Pcmu,
        payload_type: 0,
        dtmf_pt: Some(101),
        send: true,
        receive: true,
        symmetric: false,
        signalling: None,
        srtp: None,
        rtcp: None,
    };
    let answered = LegEvent::BrowserAnswered {
        agent: "a1".into(),
        stream,
    };
    let out = step(&mut d, In::Leg(Side::Agent, answered), t);
    assert!(matches!(&out[0], Do::ConnectBrowser { stream: s } if *s == stream));
    assert_eq!(
        acd(&out),
        vec![&AcdInput::Answered {
            call: "callback-7".into(),
            agent: "a1".into()
        }]
    );
    // The whisper plays to the browser as to a phone.
    assert!(matches!(
        out.last(),
        Some(Do::Play {
            side: Side::Agent,
            token: WHISPER,
            ..
        })
    ));
    // The browser dies before the customer is called: the attempt ends as
    // if the agent had hung up.
    let out = step(&mut d, In::Leg(Side::Agent, LegEvent::ConnectionLost), t);
    assert!(
        reports(&out).contains(&&failed(None, "agent-hung-up")),
        "{out:?}"
    );
    assert!(d.is_over());
}

#[test]
fn an_agent_that_could_not_be_rung_for_a_want_of_ours_leaves_the_callback_in_place_unmissed() {
    let t = Instant::now();
    let mut d = Delivery::start(setup(Order::AgentFirst));
    drain(&mut d);
    let out = step(
        &mut d,
        In::Leg(Side::Agent, LegEvent::NotPlaced("no WebRTC port".into())),
        t,
    );
    assert_eq!(
        acd(&out),
        vec![&AcdInput::NotPlaced {
            call: "callback-7".into()
        }]
    );
    assert_eq!(reports(&out), vec![&Progress::AgentMissed]);
    assert!(d.is_over());
}
