//! A call on a virtual clock: the IVR, waiting in a queue, offers to
//! agents, the bridge, hold, transfers and the end, driven by inputs as the
//! driver feeds them, with what the call asks for checked (what the caller
//! hears, what the ACD and the agent's phone are told, the record).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::acd::actor::{Offered, ToCall};
use crate::acd::{Away, Contact, Position};
use crate::config::Config;
use crate::events::Event as BusEvent;
use crate::leg::{playlist::PlayOp, LegEvent, Purpose};
use crate::media::{Digit, DigitSource, MediaEvent, Prompt, PromptCache};
use crate::sdp::Origin;
use crate::sip::DialogEvent;
use crate::store::{Callback, Cdr, Outcome as StoreOutcome};

const CONFIG: &str = "
trunks:
  - name: carrier
    allow: []
    outbound: { proxy: 'sip:127.0.0.1:5090', caller-id: '+15550100' }
    dial-plan: { country-code: '1', allow: ['+1NXXNXXXXXX'], deny: ['+1900.'] }
transfers: { operator: 'sip:operator@127.0.0.1:5070' }
queues:
  support: { announce-position: false }
  announced: { greeting: queue/welcome, announce-position: true, announce-every: 30s, message: queue/web, message-every: 45s }
  offering: { announce-position: false, callback: { trunk: carrier, offer-after: 60s } }
  overdue: { announce-position: true, announce-every: 30s, callback: { trunk: carrier, when-wait-over: 5m } }
  limited: { announce-position: false, max-wait: 2m }
  recorded: { announce-position: false, record: true }
";

/// One node plays `welcome`, then the caller is queued in `queue`
/// (`limited` goes on to `closed` when its wait is over).
fn flow_to(queue: &str) -> String {
    format!(
        "entry: hello\nnodes:\n  hello: {{ play: welcome, next: q }}\n  q: {{ queue: {queue}, on-timeout: closed }}\n  closed: {{ hangup: goodbye }}\n"
    )
}

fn prompts() -> PromptCache {
    let mut names: Vec<String> = [
        "welcome",
        "goodbye",
        "music/default",
        "queue/welcome",
        "queue/web",
        "queue/you-are-caller",
        "queue/in-line",
        "queue/about",
        "queue/minute",
        "queue/minutes",
        "numbers/hundred",
        "callback/offer",
        "callback/confirm-number",
        "callback/press-1-correct",
        "callback/enter-number",
        "callback/booked",
        "callback/refused",
        "digits/star",
        "digits/pound",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend((0..10).map(|d| format!("digits/{d}")));
    names.extend((0..100).map(|n| format!("numbers/{n}")));
    let mut cache = PromptCache::default();
    // Every prompt plays 1 s.
    for n in names {
        cache.insert(Prompt::from_samples(&n, &[0; 8000]));
    }
    cache
}

/// The call, the clock, and what it asked for since the last look.
struct Sim {
    s: CallState,
    now: Instant,
    out: Vec<Do>,
    /// Where the ACD says the caller stands.
    position: Option<Position>,
    /// Opening the second leg's media fails.
    no_media: bool,
    /// The token of the prompt playing now.
    playing: Option<u64>,
}

impl Sim {
    /// A call answered with `flow` (the caller `+12025550123`).
    fn new(flow: &str) -> Sim {
        Sim::from(flow, "+12025550123")
    }

    fn from(flow: &str, caller: &str) -> Sim {
        let mut config = Config::parse(CONFIG).unwrap();
        config.routes.clear();
        let cache = prompts();
        let catalog =
            crate::flow::set::catalog(&config, cache.names().map(str::to_owned).collect());
        let loaded = crate::flow::set::load_sources(
            &config,
            Path::new("hotline.yaml"),
            &catalog,
            vec![(PathBuf::from("main.yaml"), flow.to_owned())],
            1,
        );
        let set = match loaded.set {
            Some(s) => Arc::new(s),
            None => panic!("{:?}", loaded.diagnostics),
        };
        let now = Instant::now();
        let s = CallState::new(
            Setup {
                config: Arc::new(config),
                prompts: Arc::new(cache),
                flow: set.flow("main").expect("the flow is named main"),
                flows: set,
                call_id: "c1".into(),
                caller: caller.into(),
                dialed: "100".into(),
                trunk: "carrier".into(),
                peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                symmetric: true,
                media_port: 20000,
                media_address: "127.0.0.1".parse().unwrap(),
                secure: false,
            },
            now,
            jiff::Timestamp::from_second(1_790_000_000).unwrap(),
        );
        let mut sim = Sim {
            s,
            now,
            out: Vec::new(),
            position: None,
            no_media: false,
            playing: None,
        };
        sim.s.answered(&Cdr::default(), now);
        let offer = crate::sdp::offer(&mut Origin::new("127.0.0.1".parse().unwrap()), 30000);
        let n = crate::sdp::parse(&offer)
            .and_then(|o| crate::sdp::negotiate(&o))
            .unwrap();
        sim.s.answer(Some(n), now);
        sim.drain();
        sim
    }

    /// Takes what the call asked for, answering the leg's media as the
    /// driver does.
    fn drain(&mut self) {
        while let Some(d) = self.s.poll_output() {
            match &d {
                Do::Media(MediaDo::Play(PlayOp::Play { token, .. })) => self.playing = Some(*token),
                Do::Media(MediaDo::Play(_)) => self.playing = None,
                _ => {}
            }
            let opened = matches!(d, Do::OpenLeg);
            self.out.push(d);
            if opened {
                let input = if self.no_media {
                    Input::LegNoMedia("no free RTP port".into())
                } else {
                    Input::LegOpened
                };
                self.s.handle(input, self.now);
            }
        }
    }

    fn input(&mut self, input: Input) {
        self.s.handle(input, self.now);
        self.drain();
    }

    /// The clock moves on by `by`; every deadline on the way is taken.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.s.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            let position = self.position.clone();
            self.input(Input::Timeout { position });
            if self.s.ended().is_some() {
                break;
            }
        }
        self.now = until;
    }

    fn take(&mut self) -> Vec<Do> {
        std::mem::take(&mut self.out)
    }

    /// The names of the prompts (and music) played, in order.
    fn heard(out: &[Do]) -> Vec<String> {
        out.iter()
            .filter_map(|d| match d {
                Do::Media(MediaDo::Play(PlayOp::Play { prompt, .. })) => Some(prompt.name.clone()),
                Do::Media(MediaDo::Play(PlayOp::Music(m))) => Some(format!("music:{}", m.name)),
                _ => None,
            })
            .collect()
    }

    /// The prompt that plays ends; `false` when none did.
    fn prompt_ends(&mut self) -> bool {
        let Some(token) = self.playing.take() else {
            return false;
        };
        self.input(Input::Media(MediaEvent::PlaybackDone { token }));
        true
    }

    /// Every prompt of the sequence that plays ends, one after another.
    fn prompts_end(&mut self) {
        for _ in 0..100 {
            if !self.prompt_ends() {
                return;
            }
        }
        panic!("a sequence that never ends");
    }

    /// Everything asked for since the last look is heard to its end: the
    /// prompts (and music) the caller heard.
    fn hear(&mut self) -> Vec<String> {
        self.prompts_end();
        Sim::heard(&self.take())
    }

    fn key(&mut self, k: char) {
        let d = Digit::from_char(k).unwrap();
        self.input(Input::Media(MediaEvent::Digit(d, DigitSource::Rfc4733)));
    }

    /// The caller, in the IVR, is queued (after the welcome).
    fn queued(flow: &str) -> Sim {
        Sim::queued_from(flow, "+12025550123")
    }

    fn queued_from(flow: &str, caller: &str) -> Sim {
        let mut sim = Sim::from(flow, caller);
        sim.prompts_end();
        assert!(
            sim.out.iter().any(|d| matches!(d, Do::Join(_))),
            "{:?}",
            sim.out
        );
        sim.take();
        sim
    }

    /// The ACD offers the caller to `agents` (one phone each).
    fn offer(&mut self, agents: &[&str], ring: Duration) {
        let agents = agents
            .iter()
            .enumerate()
            .map(|(i, a)| Offered {
                agent: a.to_string(),
                name: None,
                contacts: vec![Contact {
                    uri: format!("sip:{a}@127.0.0.1:{}", 5070 + i),
                    source: SocketAddr::from(([127, 0, 0, 1], 5070 + i as u16)),
                    tcp: false,
                    tls: false,
                    ws: false,
                }],
                browser: false,
            })
            .collect();
        self.input(Input::Offer(ToCall::Offer {
            agents,
            ring_timeout: ring,
        }));
    }

    /// The agent's phone answers.
    fn agent_answers(&mut self, agent: &str) {
        let answer = crate::sdp::offer(&mut Origin::new("127.0.0.1".parse().unwrap()), 40000);
        self.input(Input::LegAnswered {
            agent: Some(agent.into()),
            sdp: Some(answer),
            target: Some(format!("sip:{agent}@127.0.0.1:5070")),
            peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        });
    }

    fn acd(out: &[Do]) -> Vec<&AcdInput> {
        out.iter()
            .filter_map(|d| match d {
                Do::Acd(i) | Do::Join(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    fn record(&mut self) -> Cdr {
        self.s.finish(self.now);
        self.drain();
        let mut cdr = Cdr::default();
        self.s.fill(&mut cdr, Vec::new(), self.now);
        let ending = self.s.ended().unwrap_or(Ending::WeHungUp);
        let end = self.s.wall();
        crate::call::record::finish(&mut cdr, ending, end);
        cdr
    }
}

use crate::acd::Input as AcdInput;

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A re-INVITE's SDP from the agent's phone (`sendonly` holds the call).
fn reinvite(direction: &str) -> Input {
    let sdp = format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    );
    Input::Leg(LegEvent::Dialog(DialogEvent::ReInvite {
        sdp: Some(sdp.into_bytes()),
    }))
}

#[test]
fn the_ivr_answers_plays_and_queues_the_caller_who_then_hears_music() {
    let mut sim = Sim::new(&flow_to("support"));
    let out = sim.take();
    assert!(
        matches!(out[0], Do::Checkpoint(_)),
        "the record opens first"
    );
    assert!(out.iter().any(|d| matches!(d, Do::Answer(_))));
    assert_eq!(Sim::heard(&out), ["welcome"]);
    let configured = out
        .iter()
        .position(|d| matches!(d, Do::Media(MediaDo::Configure(_))))
        .unwrap();
    let played = out
        .iter()
        .position(|d| matches!(d, Do::Media(MediaDo::Play(_))))
        .unwrap();
    assert!(
        played < configured,
        "the prompt is queued before the stream starts"
    );
    sim.prompts_end();
    let out = sim.take();
    let joined = Sim::acd(&out);
    assert!(
        matches!(joined[..], [AcdInput::Join { queue, caller, max_wait: None, .. }] if queue == "support" && caller == "+12025550123"),
        "{joined:?}"
    );
    assert!(out.iter().any(
        |d| matches!(d, Do::Publish(e) if matches!(&**e, BusEvent::QueueJoined { queue, .. } if queue == "support"))
    ));
    assert_eq!(Sim::heard(&out), ["music:music/default"]);
    assert_eq!(sim.record().outcome, StoreOutcome::Abandoned);
}

#[test]
fn a_waiting_caller_hears_where_they_stand_every_30_s_and_the_message_every_45_s() {
    let mut sim = Sim::queued(&flow_to("announced"));
    assert!(
        sim.s.wants_position(),
        "the greeting waits for the position"
    );
    let pos = Position {
        position: 3,
        waiting: 3,
        estimated_wait: s(200),
    };
    sim.position = Some(pos.clone());
    sim.input(Input::Placed(Some(pos)));
    let heard = sim.hear();
    assert_eq!(heard[0], "queue/welcome");
    assert!(heard.contains(&"numbers/3".to_string()), "{heard:?}");
    assert_eq!(heard.last().unwrap(), "music:music/default");
    // The prompts play (1 s each), then 30 s of music.
    let said = heard.len() as u64 - 1;
    sim.advance(s(said + 29));
    assert!(sim.hear().is_empty(), "not yet");
    sim.advance(s(1));
    let heard = sim.hear();
    assert_eq!(
        heard[0], "queue/you-are-caller",
        "no greeting the second time"
    );
    assert!(!heard.contains(&"queue/web".to_string()));
    // The message is due 45 s after joining.
    sim.advance(s(15));
    assert_eq!(sim.hear(), ["queue/web", "music:music/default"]);
}

#[test]
fn a_callback_is_offered_after_offer_after_and_booking_it_ends_the_call_with_the_place_kept() {
    let mut sim = Sim::queued(&flow_to("offering"));
    sim.advance(s(59));
    assert!(sim.hear().is_empty());
    sim.advance(s(1));
    let heard = sim.hear();
    assert!(heard.contains(&"callback/offer".to_string()), "{heard:?}");
    sim.key('1');
    let heard = sim.hear();
    assert!(
        heard.contains(&"callback/confirm-number".to_string()),
        "{heard:?}"
    );
    // The caller's own number is read back.
    assert!(heard.contains(&"digits/2".to_string()), "{heard:?}");
    sim.key('1');
    let out = sim.take();
    let Some(Do::SaveCallback(cb)) = out.iter().find(|d| matches!(d, Do::SaveCallback(_))) else {
        panic!("{out:?}")
    };
    assert_eq!(cb.number, "+12025550123");
    assert_eq!(cb.queue, "offering");
    let stored = Callback {
        id: 7,
        ..(**cb).clone()
    };
    sim.input(Input::Booked(Ok(stored)));
    let out = sim.take();
    assert!(
        out.iter()
            .any(|d| matches!(d, Do::Booked(c, Some(entry)) if c.id == 7 && entry == "c1")),
        "the callback takes over the caller's queue entry: {out:?}"
    );
    assert!(out.iter().any(|d| matches!(d, Do::StopListening)));
    assert!(Sim::heard(&out).contains(&"callback/booked".to_string()));
    assert_eq!(sim.s.ended(), None, "booked plays first");
    sim.prompts_end();
    assert!(sim.take().iter().any(|d| matches!(d, Do::HangUp)));
    assert_eq!(sim.s.ended(), Some(Ending::WeHungUp));
    let cdr = sim.record();
    assert_eq!(cdr.outcome, StoreOutcome::Callback);
    assert!(
        Sim::acd(&sim.take()).is_empty(),
        "the ACD entry is the callback's now: the call does not leave it"
    );
}

#[test]
fn a_callback_is_offered_when_the_estimated_wait_is_over_when_wait_over() {
    let mut sim = Sim::queued(&flow_to("overdue"));
    let long = Position {
        position: 9,
        waiting: 9,
        estimated_wait: s(600),
    };
    sim.position = Some(long.clone());
    sim.input(Input::Placed(Some(long)));
    let heard = sim.hear();
    let at = |p: &str| heard.iter().position(|h| h == p);
    let (Some(announced), Some(offered)) = (at("queue/you-are-caller"), at("callback/offer"))
    else {
        panic!("{heard:?}")
    };
    assert!(
        announced < offered,
        "the offer follows the announcement: {heard:?}"
    );

    let mut sim = Sim::queued(&flow_to("overdue"));
    let short = Position {
        position: 1,
        waiting: 1,
        estimated_wait: s(60),
    };
    sim.position = Some(short.clone());
    sim.input(Input::Placed(Some(short)));
    let heard = sim.hear();
    assert!(!heard.contains(&"callback/offer".to_string()), "{heard:?}");
}

#[test]
fn an_agent_who_does_not_answer_in_time_is_reported_and_the_next_one_is_rung() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::History(Vec::new()));
    sim.offer(&["alice"], s(15));
    let out = sim.take();
    let pop = out
        .iter()
        .position(|d| matches!(d, Do::Publish(e) if matches!(&**e, BusEvent::AgentOffered { agents, .. } if agents == &["alice"])))
        .expect("the screen pop");
    let Some(Do::Dial {
        purpose,
        calls,
        ring_timeout,
        ..
    }) = out.iter().find(|d| matches!(d, Do::Dial { .. }))
    else {
        panic!("{out:?}")
    };
    assert!(
        pop < out
            .iter()
            .position(|d| matches!(d, Do::Dial { .. }))
            .unwrap()
    );
    assert_eq!(*purpose, Purpose::Agents);
    assert_eq!(*ring_timeout, s(15));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1.as_deref(), Some("alice"));
    assert!(calls[0]
        .0
        .headers
        .iter()
        .any(|(k, v)| k == "X-Hotline-Queue" && v == "support"));
    // The leg rings its timeout out.
    sim.input(Input::Leg(LegEvent::NoAnswer));
    let out = sim.take();
    assert!(out.iter().any(|d| matches!(d, Do::DropLeg)));
    assert!(matches!(Sim::acd(&out)[..], [AcdInput::NoAnswer { .. }]));
    assert!(
        !out.iter()
            .any(|d| matches!(d, Do::Media(MediaDo::Play(PlayOp::Stop)))),
        "the caller keeps their music"
    );
    sim.offer(&["bob"], s(15));
    let out = sim.take();
    assert!(out
        .iter()
        .any(|d| matches!(d, Do::Dial { calls, .. } if calls[0].1.as_deref() == Some("bob"))));
}

#[test]
fn an_offer_waits_briefly_for_the_callers_history_for_the_screen_pop() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.offer(&["alice"], s(15));
    assert!(
        !sim.take().iter().any(|d| matches!(d, Do::Dial { .. })),
        "waits"
    );
    sim.advance(Duration::from_millis(500));
    assert!(
        sim.take().iter().any(|d| matches!(d, Do::Dial { .. })),
        "not longer"
    );
}

#[test]
fn an_answered_agent_is_bridged_and_when_the_agent_hangs_up_the_caller_is_hung_up() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::History(Vec::new()));
    sim.offer(&["alice"], s(15));
    sim.take();
    sim.now += s(5);
    sim.agent_answers("alice");
    let out = sim.take();
    assert!(out.iter().any(|d| matches!(d, Do::Bridge)));
    assert!(out.iter().any(|d| matches!(d, Do::Leg(LegDo::Connected))));
    assert!(matches!(Sim::acd(&out)[..], [AcdInput::Answered { agent, .. }] if agent == "alice"));
    assert!(out.iter().any(
        |d| matches!(d, Do::Publish(e) if matches!(&**e, BusEvent::CallAnswered { agent: Some(a), .. } if a == "alice"))
    ));
    sim.now += s(60);
    sim.input(Input::Leg(LegEvent::Dialog(DialogEvent::Bye)));
    let out = sim.take();
    assert!(
        matches!(Sim::acd(&out)[..], [AcdInput::Ended { .. }]),
        "the agent goes to wrap-up"
    );
    assert!(out.iter().any(|d| matches!(d, Do::HangUp)));
    let cdr = sim.record();
    assert_eq!(cdr.outcome, StoreOutcome::Agent);
    assert_eq!(cdr.agent.as_deref(), Some("alice"));
    assert_eq!(cdr.ended_by, "engine");
}

#[test]
fn when_the_caller_hangs_up_on_the_agent_the_agent_is_freed() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::History(Vec::new()));
    sim.offer(&["alice"], s(15));
    sim.agent_answers("alice");
    sim.take();
    sim.input(Input::Dialog(DialogEvent::Bye));
    assert_eq!(sim.s.ended(), Some(Ending::CallerHungUp));
    let cdr = sim.record();
    assert!(matches!(
        Sim::acd(&sim.take())[..],
        [AcdInput::Ended { .. }]
    ));
    assert_eq!(cdr.outcome, StoreOutcome::Agent);
    assert_eq!(cdr.ended_by, "caller");
}

#[test]
fn a_hold_plays_music_to_the_caller_and_counts_in_the_record() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::History(Vec::new()));
    sim.offer(&["alice"], s(15));
    sim.agent_answers("alice");
    sim.take();
    sim.now += s(10);
    sim.input(reinvite("sendonly"));
    let out = sim.take();
    assert!(out.iter().any(|d| matches!(d, Do::Leg(LegDo::Answer(_)))));
    assert!(out
        .iter()
        .any(|d| matches!(d, Do::Media(MediaDo::Unbridge))));
    assert_eq!(Sim::heard(&out), ["music:music/default"]);
    sim.now += s(12);
    sim.input(reinvite("sendrecv"));
    let out = sim.take();
    assert!(out.iter().any(|d| matches!(d, Do::Bridge)), "resumed");
    assert!(out
        .iter()
        .any(|d| matches!(d, Do::Media(MediaDo::Play(PlayOp::Stop)))));
    // A second hold still going on at the end counts too.
    sim.input(reinvite("inactive"));
    sim.now += s(3);
    sim.input(Input::Dialog(DialogEvent::Bye));
    let cdr = sim.record();
    assert_eq!(cdr.hold_ms, Some(15_000), "{cdr:?}");
}

#[test]
fn a_blind_transfer_that_fails_returns_the_caller_to_their_queue() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::History(Vec::new()));
    sim.offer(&["alice"], s(15));
    sim.agent_answers("alice");
    sim.take();
    sim.input(Input::Leg(LegEvent::Dialog(DialogEvent::Refer {
        refer_to: "sip:operator@hotline.example".into(),
    })));
    let out = sim.take();
    assert!(out
        .iter()
        .any(|d| matches!(d, Do::Leg(LegDo::NotifyRefer(200)))));
    assert!(
        matches!(Sim::acd(&out)[..], [AcdInput::Ended { .. }]),
        "alice is free"
    );
    let Some(Do::Dial { purpose, calls, .. }) = out.iter().find(|d| matches!(d, Do::Dial { .. }))
    else {
        panic!("{out:?}")
    };
    assert_eq!(*purpose, Purpose::Referred);
    assert_eq!(calls[0].0.target, "sip:operator@127.0.0.1:5070");
    assert_eq!(
        Sim::heard(&out),
        ["music:music/default"],
        "hold music while it rings"
    );
    sim.input(Input::Leg(LegEvent::Rejected(486)));
    let out = sim.take();
    assert!(
        matches!(Sim::acd(&out)[..], [AcdInput::Join { queue, .. }] if queue == "support"),
        "{out:?}"
    );
    // A REFER anywhere else is refused.
    sim.input(Input::History(Vec::new()));
    sim.offer(&["bob"], s(15));
    sim.agent_answers("bob");
    sim.take();
    sim.input(Input::Leg(LegEvent::Dialog(DialogEvent::Refer {
        refer_to: "sip:+19005550100@carrier.example".into(),
    })));
    let out = sim.take();
    assert!(out
        .iter()
        .any(|d| matches!(d, Do::Leg(LegDo::NotifyRefer(403)))));
    assert!(!out
        .iter()
        .any(|d| matches!(d, Do::Dial { .. } | Do::DropLeg)));
}

#[test]
fn a_caller_turned_away_from_the_queue_goes_on_by_on_timeout_with_the_reason_in_the_record() {
    // The ACD keeps the time: it is told the maximum wait.
    let mut sim = Sim::new(&flow_to("limited"));
    sim.prompts_end();
    let joined = Sim::acd(&sim.out)
        .into_iter()
        .find_map(|i| match i {
            AcdInput::Join { max_wait, .. } => Some(*max_wait),
            _ => None,
        })
        .unwrap();
    assert_eq!(joined, Some(s(120)));
    for (why, outcome) in [
        (Away::Timeout, StoreOutcome::QueueTimeout),
        (Away::Full, StoreOutcome::QueueFull),
        (Away::Empty, StoreOutcome::QueueEmpty),
    ] {
        let mut sim = Sim::queued(&flow_to("limited"));
        sim.input(Input::Offer(ToCall::Away(why)));
        let out = sim.take();
        assert!(out.iter().any(|d| matches!(d, Do::StopListening)));
        assert_eq!(Sim::heard(&out), ["goodbye"], "the on-timeout node");
        sim.prompts_end();
        assert_eq!(sim.s.ended(), Some(Ending::WeHungUp));
        let cdr = sim.record();
        assert_eq!(cdr.outcome, outcome);
        assert!(
            Sim::acd(&sim.take()).is_empty(),
            "the ACD let the caller go already"
        );
    }
}

#[test]
fn a_premium_number_is_refused_at_entry_and_only_an_allowed_one_is_booked() {
    // A premium caller ID is not read back: the caller is asked for a number.
    let mut sim = Sim::queued_from(&flow_to("offering"), "+19005550100");
    sim.advance(s(60));
    sim.hear();
    sim.key('1');
    assert_eq!(sim.hear()[0], "callback/enter-number");
    for k in "9005551234#".chars() {
        sim.key(k);
    }
    let heard = sim.hear();
    assert_eq!(heard[..2], ["callback/refused", "callback/enter-number"]);
    for k in "2125550123#".chars() {
        sim.key(k);
    }
    assert_eq!(sim.hear()[0], "callback/confirm-number");
    sim.key('1');
    let out = sim.take();
    let booked: Vec<&str> = out
        .iter()
        .filter_map(|d| match d {
            Do::SaveCallback(cb) => Some(cb.number.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(booked, ["+12125550123"]);
}

#[test]
fn a_caller_who_hangs_up_while_an_agent_rings_leaves_the_queue() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::History(Vec::new()));
    sim.offer(&["alice"], s(15));
    sim.take();
    sim.input(Input::Dialog(DialogEvent::Bye));
    assert_eq!(sim.s.ended(), Some(Ending::CallerHungUp));
    let cdr = sim.record();
    assert!(
        matches!(Sim::acd(&sim.take())[..], [AcdInput::Leave { .. }]),
        "not answered: the ACD takes the caller out and alice is free"
    );
    assert_eq!(cdr.outcome, StoreOutcome::Abandoned);
    assert!(cdr.offered_at.is_some());
}

#[test]
fn no_media_for_the_agent_leg_is_not_the_agents_miss_and_the_caller_keeps_waiting() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::History(Vec::new()));
    sim.no_media = true;
    sim.offer(&["alice"], s(15));
    let out = sim.take();
    assert!(!out.iter().any(|d| matches!(d, Do::Dial { .. })));
    assert!(!out
        .iter()
        .any(|d| matches!(d, Do::Publish(e) if matches!(&**e, BusEvent::AgentOffered { .. }))));
    assert!(
        matches!(Sim::acd(&out)[..], [AcdInput::NotPlaced { .. }]),
        "our own want, not the agent's miss: {out:?}"
    );
    assert_eq!(sim.s.ended(), None);
}

#[test]
fn the_engines_drain_and_the_operations_api_hang_up() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::Shutdown);
    assert!(sim.take().iter().any(|d| matches!(d, Do::HangUp)));
    assert_eq!(sim.s.ended(), Some(Ending::WeHungUp));
    assert!(matches!(
        Sim::acd(&{
            sim.s.finish(sim.now);
            sim.drain();
            sim.take()
        })[..],
        [AcdInput::Leave { .. }]
    ));

    let mut sim = Sim::new(&flow_to("support"));
    sim.input(Input::Kill);
    assert!(sim.take().iter().any(|d| matches!(d, Do::HangUp)));
    // Nothing more happens to a call that ended.
    sim.key('1');
    assert!(sim.take().is_empty());
}

#[test]
fn a_call_is_hung_up_at_its_maximum_duration() {
    let mut sim = Sim::queued(&flow_to("support"));
    let max = sim.s.config.calls.max_duration;
    sim.advance(max - s(1));
    assert_eq!(sim.s.ended(), None);
    sim.advance(s(1));
    assert_eq!(sim.s.ended(), Some(Ending::WeHungUp));
    assert!(sim.take().iter().any(|d| matches!(d, Do::HangUp)));
}

fn pauses(out: &[Do]) -> Vec<bool> {
    out.iter()
        .filter_map(|d| match d {
            Do::Media(MediaDo::PauseConversation(p)) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn the_agents_pause_code_pauses_and_resumes_the_recording_and_the_record_lists_it() {
    let mut sim = Sim::queued(&flow_to("recorded"));
    sim.input(Input::History(Vec::new()));
    sim.offer(&["alice"], s(15));
    sim.take();
    sim.agent_answers("alice");
    let out = sim.take();
    assert!(out
        .iter()
        .any(|d| matches!(d, Do::Media(MediaDo::RecordConversation { .. }))));
    assert_eq!(
        sim.s.recording_status(),
        crate::call::pci::RecordingStatus::Recording
    );
    let press = |sim: &mut Sim, k: char| {
        sim.input(Input::Leg(LegEvent::Media(MediaEvent::Digit(
            Digit::from_char(k).unwrap(),
            DigitSource::Rfc4733,
        ))))
    };
    // *2 (the default code) pauses at 10 s; the keys never reach the caller.
    sim.now += s(10);
    press(&mut sim, '*');
    press(&mut sim, '2');
    let out = sim.take();
    assert_eq!(pauses(&out), vec![true]);
    assert!(!out
        .iter()
        .any(|d| matches!(d, Do::Media(MediaDo::SendDigit(_)))));
    assert_eq!(
        sim.s.recording_status(),
        crate::call::pci::RecordingStatus::Paused
    );
    // Another key goes on to the caller as before.
    press(&mut sim, '5');
    let out = sim.take();
    assert!(out
        .iter()
        .any(|d| matches!(d, Do::Media(MediaDo::SendDigit(d)) if d.as_char() == '5')));
    // The API cannot pause twice; *2 again resumes at 40 s.
    sim.input(Input::PauseRecording {
        pause: true,
        by: "api:ops".into(),
    });
    assert!(pauses(&sim.take()).is_empty());
    sim.now += s(30);
    press(&mut sim, '*');
    press(&mut sim, '2');
    assert_eq!(pauses(&sim.take()), vec![false]);
    // Then the API pauses at 50 s, and the call ends paused at 60 s.
    sim.now += s(10);
    sim.input(Input::PauseRecording {
        pause: true,
        by: "api:ops".into(),
    });
    assert_eq!(pauses(&sim.take()), vec![true]);
    sim.now += s(10);
    sim.input(Input::Leg(LegEvent::Dialog(DialogEvent::Bye)));
    let cdr = sim.record();
    let listed = cdr.recording_pauses.expect("the record lists the pauses");
    let list = listed.as_array().unwrap();
    assert_eq!(list.len(), 2, "{listed}");
    assert_eq!(list[0]["by"], "agent:alice");
    assert_eq!(list[1]["by"], "api:ops");
    let at = |v: &serde_json::Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert_eq!(
        at(&list[0]["to"])
            .duration_since(at(&list[0]["from"]))
            .as_secs(),
        30
    );
    assert_eq!(
        at(&list[1]["to"])
            .duration_since(at(&list[1]["from"]))
            .as_secs(),
        10
    );
}

#[test]
fn a_sensitive_collect_hides_its_keys_and_masks_its_variable_outside_the_flow() {
    let flow = "entry: card\nnodes:\n  card:\n    collect: { prompt: welcome, into: card, min: 4, max: 19, sensitive: true }\n    next: check\n    exhausted: bye\n  check:\n    branch:\n      - if: card == '4111111111111111'\n        then: q\n    else: bye\n  q: { queue: support }\n  bye: { hangup: goodbye }\n";
    let mut sim = Sim::new(flow);
    sim.prompts_end();
    assert!(sim.s.sensitive_input, "the collect runs");
    for k in "4111111111111111#".chars() {
        sim.key(k);
    }
    let out = sim.take();
    assert!(!sim.s.sensitive_input, "the flow has left the collect");
    // The flow saw the digits (it queued the caller) ...
    assert!(
        matches!(Sim::acd(&out)[..], [AcdInput::Join { .. }]),
        "the flow compared the real digits: {out:?}"
    );
    // ... and nothing that leaves the call does.
    let cdr = sim.record();
    assert!(!cdr.vars.contains("4111111111111111"), "{}", cdr.vars);
    assert!(cdr.vars.contains("****1111"), "{}", cdr.vars);
}

#[test]
fn agents_that_could_not_be_rung_for_a_want_of_ours_are_not_counted_as_missing_the_caller() {
    let mut sim = Sim::queued(&flow_to("support"));
    sim.input(Input::History(Vec::new()));
    sim.offer(&["alice"], s(15));
    sim.take();
    // The agent's browser leg could not be opened: nothing rang.
    sim.input(Input::Leg(LegEvent::NotPlaced("no WebRTC port".into())));
    let out = sim.take();
    assert!(out.iter().any(|d| matches!(d, Do::DropLeg)));
    assert!(
        matches!(Sim::acd(&out)[..], [AcdInput::NotPlaced { .. }]),
        "{out:?}"
    );
    assert!(
        !out.iter()
            .any(|d| matches!(d, Do::Media(MediaDo::Play(PlayOp::Stop)))),
        "the caller keeps their music"
    );
}
