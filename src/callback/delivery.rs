//! One callback attempt as a pure machine: what happens on the agent's and
//! the customer's legs goes in ([`In`]), what to do comes out ([`Do`]),
//! with one deadline. No sockets, no tasks, no clock: `now` is an argument,
//! so every path is unit-tested in milliseconds. [`super::deliver`] carries
//! out what it asks on real legs.
//!
//! Agent first: the reserved agent's phone rings; they hear a whisper and
//! then music while a trunk slot is free and the attempt is counted; the
//! customer is called, asked to press 1 (a guard against answering
//! machines), and bridged.
//!
//! Customer first: a trunk slot and the attempt first; the customer is
//! called and confirms with 1; they wait at the head of the line with music
//! until the ACD offers an agent, whose phone rings (a miss: the next offer).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::acd::actor::Offered;
use crate::acd::Input as AcdInput;
use crate::leg::LegEvent;
use crate::media::{dtmf, MediaEvent};
use crate::sdp::{self, Negotiated};
use crate::sip::DialogEvent;
use crate::store::AttemptOutcome;

use super::deliver::Progress;

/// Which of the attempt's two legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Agent,
    Customer,
}

/// Which side is called first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    AgentFirst,
    CustomerFirst,
}

/// What happens to the attempt.
#[derive(Debug)]
pub enum In {
    /// Something on a leg (the driver's `Leg` reports it).
    Leg(Side, LegEvent),
    /// A sequence of prompts asked for with [`Do::Play`] ended.
    PlayDone(Side, u64),
    /// A call slot on the trunk is ours (held until the attempt ends).
    Slot,
    /// The trunk's slots are gone (the engine is stopping).
    NoSlot,
    /// The attempt is counted in the store: its id and number.
    Counted { attempt: i64, n: u32 },
    /// It could not be counted: nobody is dialled.
    NotCounted,
    /// The ACD offers agents (customer first, while the customer waits).
    Offer {
        agents: Vec<Offered>,
        ring_timeout: Duration,
    },
    /// The ACD's offers stopped (the entry is gone).
    OffersClosed,
    /// The deadline of [`Delivery::poll_timeout`] passed.
    Timeout,
    /// The agent leg asked for with [`Do::RingAgents`] could not get media:
    /// our own want, not the agents' miss.
    AgentNoMedia,
}

/// What the driver carries out, in order. A leg already ended is not
/// ended twice: the driver forgets it at its first `Hangup`.
#[derive(Debug, Clone, PartialEq)]
pub enum Do {
    /// Ring these agents' phones (a new agent leg).
    RingAgents {
        agents: Vec<Offered>,
        ring_timeout: Duration,
    },
    /// Wait for a call slot on the trunk.
    TakeSlot,
    /// Count the attempt in the store (the agent on it, if known).
    Count {
        agent: Option<String>,
    },
    /// Call the customer over the trunk (attempt number `n`).
    DialCustomer {
        n: u32,
    },
    /// Send RTP as negotiated on that leg; `symmetric`: to where theirs
    /// comes from. Checks that the far end still has the call start.
    Connect {
        side: Side,
        negotiated: Negotiated,
        symmetric: bool,
    },
    /// The agent took it at the desktop: their leg's WebRTC channel
    /// streams so (the caller's codec, DTLS-SRTP).
    ConnectBrowser {
        stream: crate::media::StreamConfig,
    },
    /// Play prompts; their end comes back as [`In::PlayDone`].
    Play {
        side: Side,
        token: u64,
        prompts: Vec<String>,
    },
    /// Loop this music until stopped.
    Music {
        side: Side,
        music: String,
    },
    StopPlay(Side),
    /// Customer and agent hear each other.
    Bridge,
    /// End that leg (BYE, or CANCEL while it rings) and forget it.
    Hangup(Side),
    Acd(AcdInput),
    Report(Progress),
}

/// The token of the agent's whisper and of the customer's "press 1".
pub const WHISPER: u64 = 1;
pub const GUARD: u64 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Agent first: their phones ring.
    RingingAgent,
    /// Agent first: they hear who is called back.
    Whispering,
    /// Waiting for a trunk slot.
    WaitingSlot,
    /// The attempt is being counted.
    Counting,
    /// The customer is called and must press 1.
    Calling,
    /// Customer first: confirmed, on music, until an agent is offered.
    WaitingAgent,
    /// Customer first: an offered agent's phones ring.
    RingingOffered,
    /// Customer and agent talk.
    Talking,
    Over,
}

/// What the attempt needs to know, fixed when it starts.
#[derive(Debug, Clone)]
pub struct Setup {
    pub order: Order,
    /// The callback's entry in the ACD.
    pub acd_id: String,
    /// The callback's id (for the log).
    pub id: i64,
    /// What the agent hears before the customer is called (empty: nothing).
    pub whisper: Vec<String>,
    /// The queue's music.
    pub music: String,
    /// How long the customer has to press 1 after the question.
    pub confirm_timeout: Duration,
    /// The trunk's `symmetric-rtp`.
    pub symmetric: bool,
    /// Agent first: the agents reserved, and how long they may ring.
    pub agents: Vec<Offered>,
    pub ring_timeout: Duration,
    /// What the customer's side is offered for SRTP (the trunk's rule),
    /// to read its answer with.
    pub customer_crypto: Vec<sdp::crypto::Crypto>,
    pub customer_policy: sdp::crypto::Policy,
}

pub struct Delivery {
    setup: Setup,
    phase: Phase,
    /// The agent on the attempt, once one answered.
    agent: Option<String>,
    attempt: Option<i64>,
    /// The customer answered (their stream is set up).
    answered: bool,
    /// By when the customer must press 1 (from the end of the question).
    confirm_by: Option<Instant>,
    /// Agent first: the agent hung up while the attempt was being counted.
    agent_gone: bool,
    /// Offers that came before the customer confirmed.
    offers: VecDeque<(Vec<Offered>, Duration)>,
    out: VecDeque<Do>,
}

impl Delivery {
    /// Starts the attempt: its first steps are in [`poll_output`](Self::poll_output).
    pub fn start(setup: Setup) -> Delivery {
        let mut d = Delivery {
            phase: Phase::RingingAgent,
            agent: None,
            attempt: None,
            answered: false,
            confirm_by: None,
            agent_gone: false,
            offers: VecDeque::new(),
            out: VecDeque::new(),
            setup,
        };
        match d.setup.order {
            Order::AgentFirst => d.out.push_back(Do::RingAgents {
                agents: d.setup.agents.clone(),
                ring_timeout: d.setup.ring_timeout,
            }),
            Order::CustomerFirst => {
                if !d.setup.agents.is_empty() {
                    d.offers
                        .push_back((d.setup.agents.clone(), d.setup.ring_timeout));
                }
                d.phase = Phase::WaitingSlot;
                d.out.push_back(Do::TakeSlot);
            }
        }
        d
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Do> {
        self.out.pop_front()
    }

    /// When [`In::Timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.confirm_by.filter(|_| self.phase == Phase::Calling)
    }

    /// The attempt is over (its report is out).
    pub fn is_over(&self) -> bool {
        self.phase == Phase::Over
    }

    pub fn handle(&mut self, input: In, now: Instant) {
        if self.phase == Phase::Over {
            return;
        }
        match input {
            In::Leg(side, ev) => self.on_leg(side, ev, now),
            In::PlayDone(Side::Agent, WHISPER) if self.phase == Phase::Whispering => {
                self.wait_for_slot()
            }
            In::PlayDone(Side::Customer, GUARD) if self.phase == Phase::Calling => {
                if !self.answered {
                    return;
                }
                self.confirm_by = Some(now + self.setup.confirm_timeout);
            }
            In::PlayDone(..) => {}
            In::Slot if self.phase == Phase::WaitingSlot => {
                self.phase = Phase::Counting;
                self.out.push_back(Do::Count {
                    agent: self.agent.clone(),
                });
            }
            In::Slot => {}
            In::NoSlot => self.fail(AttemptOutcome::Failed),
            In::AgentNoMedia
                if matches!(self.phase, Phase::RingingAgent | Phase::RingingOffered) =>
            {
                warn!(callback = self.setup.id, "no media for the agent leg");
                self.out.push_back(Do::Hangup(Side::Agent));
                self.agent_missed(AcdInput::NotPlaced {
                    call: self.setup.acd_id.clone(),
                });
            }
            In::AgentNoMedia => {}
            In::Counted { attempt, n } if self.phase == Phase::Counting => {
                self.attempt = Some(attempt);
                self.out.push_back(Do::Report(Progress::Started {
                    attempt,
                    n,
                    agent: self.agent.clone().unwrap_or_default(),
                }));
                if self.agent_gone {
                    info!(
                        callback = self.setup.id,
                        "the agent hung up before the customer was called"
                    );
                    return self.fail(AttemptOutcome::AgentHungUp);
                }
                self.phase = Phase::Calling;
                self.out.push_back(Do::DialCustomer { n });
            }
            In::Counted { .. } => {}
            In::NotCounted => self.fail(AttemptOutcome::Failed),
            In::Offer {
                agents,
                ring_timeout,
            } => {
                self.offers.push_back((agents, ring_timeout));
                if self.phase == Phase::WaitingAgent {
                    self.next_offer();
                }
            }
            In::OffersClosed => {
                if matches!(self.phase, Phase::WaitingAgent) {
                    self.fail(AttemptOutcome::Failed);
                }
            }
            In::Timeout => {
                if self.phase == Phase::Calling && self.confirm_by.is_some_and(|by| now >= by) {
                    info!(
                        callback = self.setup.id,
                        "the customer did not press 1 (an answering machine?)"
                    );
                    self.fail(AttemptOutcome::NotConfirmed);
                }
            }
        }
    }

    fn on_leg(&mut self, side: Side, ev: LegEvent, now: Instant) {
        // A browser that died (its consent ran out) is gone like a phone
        // that hung up.
        let hung_up = matches!(
            ev,
            LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended | DialogEvent::Expired)
                | LegEvent::Gone
                | LegEvent::ConnectionLost
        );
        match (side, &self.phase) {
            (Side::Agent, Phase::RingingAgent | Phase::RingingOffered) => self.agent_ringing(ev),
            (Side::Agent, Phase::Whispering | Phase::WaitingSlot) if hung_up => {
                info!(
                    callback = self.setup.id,
                    "the agent hung up before the customer was called"
                );
                self.fail(AttemptOutcome::AgentHungUp);
            }
            (Side::Agent, Phase::Counting) if hung_up => self.agent_gone = true,
            (Side::Agent, Phase::Calling) if hung_up => {
                info!(callback = self.setup.id, "the agent hung up");
                self.fail(AttemptOutcome::AgentHungUp);
            }
            (Side::Customer, Phase::Calling) => self.calling(ev, now),
            (Side::Customer, Phase::WaitingAgent | Phase::RingingOffered) if hung_up => {
                info!(
                    callback = self.setup.id,
                    "the customer hung up while waiting for an agent"
                );
                self.fail(AttemptOutcome::Abandoned);
            }
            (_, Phase::Talking) if hung_up => {
                info!(
                    callback = self.setup.id,
                    ?side,
                    "the callback's conversation ended"
                );
                let other = match side {
                    Side::Agent => Side::Customer,
                    Side::Customer => Side::Agent,
                };
                // The other side first: it is the one still on the line.
                self.out.push_back(Do::Hangup(other));
                self.finish(Progress::Done);
            }
            _ => {}
        }
    }

    /// The agent's phones ring (agent first, or an offer customer first).
    fn agent_ringing(&mut self, ev: LegEvent) {
        match ev {
            LegEvent::Answered { agent, sdp: answer } => {
                let Some(n) = usable(answer.as_deref()) else {
                    warn!(
                        callback = self.setup.id,
                        "the agent's phone answered without usable SDP"
                    );
                    self.out.push_back(Do::Hangup(Side::Agent));
                    let call = self.setup.acd_id.clone();
                    return self.agent_missed(AcdInput::NoAnswer { call });
                };
                self.out.push_back(Do::Connect {
                    side: Side::Agent,
                    negotiated: n,
                    symmetric: true,
                });
                self.agent_answered(agent.unwrap_or_default());
            }
            LegEvent::BrowserAnswered { agent, stream } => {
                self.out.push_back(Do::ConnectBrowser { stream });
                self.agent_answered(agent);
            }
            LegEvent::NotPlaced(why) => {
                warn!(callback = self.setup.id, error = %why, "the agent could not be rung; the callback keeps its place");
                self.out.push_back(Do::Hangup(Side::Agent));
                self.agent_missed(AcdInput::NotPlaced {
                    call: self.setup.acd_id.clone(),
                });
            }
            LegEvent::Rejected(_)
            | LegEvent::Failed(_)
            | LegEvent::NoAnswer
            | LegEvent::Gone
            | LegEvent::ConnectionLost
            | LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended | DialogEvent::Expired) => {
                info!(
                    callback = self.setup.id,
                    "the agent did not take the callback"
                );
                self.out.push_back(Do::Hangup(Side::Agent));
                self.agent_missed(AcdInput::NoAnswer {
                    call: self.setup.acd_id.clone(),
                });
            }
            _ => {}
        }
    }

    /// The agent took it (their leg is being connected): whisper, or the
    /// customer, or (customer first) the bridge.
    fn agent_answered(&mut self, agent: String) {
        self.out.push_back(Do::Acd(AcdInput::Answered {
            call: self.setup.acd_id.clone(),
            agent: agent.clone(),
        }));
        self.agent = Some(agent.clone());
        if self.phase == Phase::RingingOffered {
            info!(callback = self.setup.id, %agent, "callback connected: customer and agent bridged");
            self.out.push_back(Do::StopPlay(Side::Customer));
            self.out.push_back(Do::Bridge);
            self.out.push_back(Do::Report(Progress::Connected {
                attempt: self.attempt.unwrap_or_default(),
                agent: Some(agent),
            }));
            self.phase = Phase::Talking;
            return;
        }
        if self.setup.whisper.is_empty() {
            return self.wait_for_slot();
        }
        info!(%agent, callback = self.setup.id, "callback whisper");
        self.phase = Phase::Whispering;
        self.out.push_back(Do::Play {
            side: Side::Agent,
            token: WHISPER,
            prompts: self.setup.whisper.clone(),
        });
    }

    /// No reserved agent took it: agent first, the attempt ends (the
    /// callback keeps its place); customer first, the next offer.
    fn agent_missed(&mut self, tell: AcdInput) {
        self.out.push_back(Do::Acd(tell));
        match self.setup.order {
            Order::AgentFirst => {
                self.out.push_back(Do::Report(Progress::AgentMissed));
                self.phase = Phase::Over;
            }
            Order::CustomerFirst => {
                self.phase = Phase::WaitingAgent;
                self.next_offer();
            }
        }
    }

    fn next_offer(&mut self) {
        if let Some((agents, ring_timeout)) = self.offers.pop_front() {
            self.phase = Phase::RingingOffered;
            self.out.push_back(Do::RingAgents {
                agents,
                ring_timeout,
            });
        }
    }

    /// The agent waits with music for a trunk slot.
    fn wait_for_slot(&mut self) {
        self.phase = Phase::WaitingSlot;
        self.out.push_back(Do::Music {
            side: Side::Agent,
            music: self.setup.music.clone(),
        });
        self.out.push_back(Do::TakeSlot);
    }

    /// The customer is being called: answered, asked, confirmed or not.
    fn calling(&mut self, ev: LegEvent, _now: Instant) {
        let id = self.setup.id;
        let key = match ev {
            LegEvent::Answered { sdp: answer, .. } => {
                let n = answer.as_deref().and_then(|b| {
                    sdp::parse(b)
                        .and_then(|a| {
                            sdp::accept_answer_with(
                                &a,
                                &self.setup.customer_crypto,
                                self.setup.customer_policy,
                            )
                        })
                        .ok()
                });
                let Some(n) = n else {
                    warn!(
                        callback = id,
                        "the customer's side answered without usable SDP"
                    );
                    return self.fail(AttemptOutcome::Failed);
                };
                info!(
                    callback = id,
                    "the customer answered; asking them to press 1"
                );
                self.answered = true;
                self.out.push_back(Do::Connect {
                    side: Side::Customer,
                    negotiated: n,
                    symmetric: self.setup.symmetric,
                });
                self.out.push_back(Do::Play {
                    side: Side::Customer,
                    token: GUARD,
                    prompts: vec!["callback/this-is".into()],
                });
                return;
            }
            LegEvent::Rejected(status) => {
                info!(
                    callback = id,
                    status, "the customer's side refused the call"
                );
                return self.fail(refusal(status));
            }
            LegEvent::NoAnswer => {
                info!(callback = id, "the customer did not answer");
                return self.fail(AttemptOutcome::NoAnswer);
            }
            LegEvent::Failed(why) => {
                warn!(callback = id, error = %why, "the callback could not be placed");
                return self.fail(AttemptOutcome::Failed);
            }
            LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended | DialogEvent::Expired)
            | LegEvent::Gone => {
                info!(callback = id, "the customer hung up");
                return self.fail(AttemptOutcome::NotConfirmed);
            }
            LegEvent::Dialog(DialogEvent::Info { content_type, body }) => {
                dtmf::parse_info(&content_type, &body).map(|d| d.as_char())
            }
            LegEvent::Media(MediaEvent::Digit(d, _)) => Some(d.as_char()),
            _ => None,
        };
        if key != Some('1') || !self.answered {
            return;
        }
        self.confirm_by = None;
        self.out.push_back(Do::StopPlay(Side::Customer));
        match self.setup.order {
            Order::AgentFirst => {
                info!(
                    callback = id,
                    "callback connected: customer and agent bridged"
                );
                self.out.push_back(Do::StopPlay(Side::Agent));
                self.out.push_back(Do::Bridge);
                self.out.push_back(Do::Report(Progress::Connected {
                    attempt: self.attempt.unwrap_or_default(),
                    agent: None,
                }));
                self.phase = Phase::Talking;
            }
            Order::CustomerFirst => {
                info!(callback = id, "the customer waits at the head of the queue");
                self.out.push_back(Do::Music {
                    side: Side::Customer,
                    music: self.setup.music.clone(),
                });
                self.phase = Phase::WaitingAgent;
                self.next_offer();
            }
        }
    }

    /// The attempt failed with `outcome`.
    fn fail(&mut self, outcome: AttemptOutcome) {
        self.finish(Progress::Failed {
            attempt: self.attempt,
            outcome,
        });
    }

    /// The attempt is over: the legs are ended, the ACD told, the outcome reported.
    fn finish(&mut self, outcome: Progress) {
        let acd_id = self.setup.acd_id.clone();
        let done = outcome == Progress::Done;
        let agent_answered = self.agent.is_some();
        self.out.push_back(Do::Hangup(Side::Agent));
        self.out.push_back(Do::Hangup(Side::Customer));
        let tell = match (self.setup.order, done, agent_answered) {
            // A conversation: wrap-up follows, and it counts as handled.
            (_, true, _) => Some(AcdInput::Ended { call: acd_id }),
            // The agent took it but there was no conversation: free again.
            (Order::AgentFirst, false, true) => Some(AcdInput::Released { call: acd_id }),
            // Agent first, no agent yet: told already (no answer).
            (Order::AgentFirst, false, false) => None,
            // Customer first, not bridged: the entry leaves the queue (the
            // service puts it back at its place for the next attempt).
            (Order::CustomerFirst, false, _) => Some(AcdInput::Leave { call: acd_id }),
        };
        if let Some(t) = tell {
            self.out.push_back(Do::Acd(t));
        }
        self.out.push_back(Do::Report(outcome));
        self.phase = Phase::Over;
    }
}

/// The answer in a 2xx, if it is one we can use.
fn usable(answer: Option<&[u8]>) -> Option<Negotiated> {
    answer.and_then(|b| sdp::parse(b).and_then(|a| sdp::accept_answer(&a)).ok())
}

/// The outcome a final refusal of the customer's side stands for.
pub fn refusal(status: u16) -> AttemptOutcome {
    match status {
        486 | 600 | 603 => AttemptOutcome::Busy,
        408 | 480 | 487 => AttemptOutcome::NoAnswer,
        _ => AttemptOutcome::Failed,
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
