//! One call's walk through a flow: a pure state machine.
//! `Run::step(event, now)` returns the [`Action`]s the call task carries out;
//! it does no I/O and keeps no clock, so tests and `hotline simulate` drive
//! it exactly as a live call does.
//!
//! Over 800 lines: one step per node kind, all on the same run state.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::expr::{render_value, Template, Vars};
use super::node::{Collect, Kind, Menu, Method, NodeId, RecordKind, Say, Survey};
use super::set::FlowSet;

/// What happened to the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The call was answered: enter the flow.
    Start,
    Digit(char),
    /// Everything asked by `Action::Play { token }` has been played.
    PlayDone(u64),
    /// The timer set by `Action::Timer { token }` is due.
    Timer(u64),
    Webhook(u64, WebhookOutcome),
    /// A recording ended; `Ok` holds the file's path.
    Recorded(u64, Result<String, Failure>),
    /// A survey answer reached the store (or could not).
    Saved(u64, Result<(), Failure>),
    /// The caller waited in the queue for its `max-wait`: leave by the
    /// queue node's `on-timeout` (if it has none, the caller stays queued).
    QueueTimeout,
    /// The transfer target answered and the call is bridged to it (`Ok`),
    /// or it was busy, did not answer or could not be reached.
    Transferred(u64, Result<(), Failure>),
    /// The callback asked by `Action::OfferCallback { token }` was booked
    /// (`Ok`), or not.
    CallbackBooked(u64, Result<(), Failure>),
    /// The caller hung up.
    Hangup,
}

/// Why work a node asked for did not happen; its text is what the flow's
/// `error` variable and the log say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The target answered with this final status (busy, declined, …).
    #[error("answered {0}")]
    Refused(u16),
    /// It rang its time out.
    #[error("no answer")]
    NoAnswer,
    /// It could not be called, or its call ended before it was answered.
    #[error("{0}")]
    Unreachable(String),
    /// Hotline ran short of something of its own (an RTP port).
    #[error("{0}")]
    Resources(String),
    /// The file or the store could not be written.
    #[error("{0}")]
    NotStored(String),
    /// The node's queue does not offer it.
    #[error("the queue `{0}` offers no callbacks")]
    NotOffered(String),
    /// The caller gave no number to call back.
    #[error("no number to call back was given")]
    NoNumber,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookOutcome {
    /// A 2xx answer; its JSON body (or `null`).
    Ok(Value),
    /// No answer, or not a 2xx, or a body that is not JSON.
    Failed(String),
    TimedOut,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub timeout: Duration,
}

/// What the call task must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The call entered a node (for logs, events and the simulator).
    Entered {
        flow: String,
        node: String,
    },
    /// Play these prompts in order, replacing whatever plays; report
    /// `PlayDone(token)` when the last one ends.
    Play {
        token: u64,
        prompts: Vec<String>,
        barge_in: bool,
    },
    StopPlay,
    /// Report `Timer(token)` after this long; replaces any earlier timer.
    Timer {
        token: u64,
        after: Duration,
    },
    Webhook {
        token: u64,
        request: WebhookRequest,
    },
    /// Record the caller until `end` is pressed (then `StopRecord` follows),
    /// they hang up, or `max` passes; report `Recorded(token, …)`.
    Record {
        token: u64,
        max: Duration,
        kind: RecordKind,
    },
    StopRecord,
    /// Store a survey answer; report `Saved(token, …)`.
    SaveSurvey {
        token: u64,
        question: String,
        score: u8,
    },
    /// Hand the call to a queue.
    Enqueue {
        queue: String,
        priority: i64,
        skills: Vec<String>,
    },
    /// Call a configured target and bridge the caller to it; report
    /// `Transferred(token, …)`.
    /// Book a callback in `queue`: confirm the caller's number (or take
    /// another); answer with `Event::CallbackBooked(token, …)`.
    OfferCallback {
        token: u64,
        queue: String,
    },
    Transfer {
        token: u64,
        target: String,
        uri: String,
    },
    Hangup,
    /// A run-time problem in `node`; the flow has taken its error path.
    Error {
        node: String,
        message: String,
    },
}

/// Where the call left the flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Queued {
        queue: String,
    },
    Transferred {
        target: String,
    },
    /// The flow hung up.
    Ended,
    CallerHungUp,
    /// A run-time error with no error path left.
    Failed {
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// A `play` node.
    Playing {
        token: u64,
        barge_in: bool,
    },
    /// A menu, collect or survey prompt, which a digit interrupts.
    Prompting {
        token: u64,
    },
    /// Waiting for a digit.
    Waiting {
        token: u64,
    },
    /// "You entered 1 2 3 4, press 1 if correct, 2 to enter it again."
    Confirming {
        token: u64,
        playing: bool,
    },
    Webhook {
        token: u64,
    },
    RecordPrompt {
        token: u64,
    },
    Recording {
        token: u64,
    },
    Saving {
        token: u64,
    },
    Transferring {
        token: u64,
    },
    /// The callback's number is being confirmed or typed.
    OfferingCallback {
        token: u64,
    },
    /// Handed to a queue: the flow waits for the queue's timeout.
    Queued,
    HangingUp {
        token: u64,
    },
    Done,
}

/// More node entries than this in one step is a loop the validator could
/// not see (it cannot happen with a checked set; this is the backstop).
const MAX_HOPS: u32 = 100;

pub struct Run {
    set: Arc<FlowSet>,
    flow: usize,
    node: NodeId,
    vars: Vars,
    phase: Phase,
    /// Digits typed ahead: during a webhook, or the one that interrupted a prompt.
    typed: VecDeque<char>,
    buffer: String,
    attempts: u32,
    next_token: u64,
    hops: u32,
    errors: u32,
    outcome: Option<Outcome>,
    /// Variables a `sensitive` collect filled: masked in [`Run::public_vars`].
    sensitive: std::collections::BTreeSet<String>,
}

/// How a sensitive value is shown outside the flow: `****`, with the last
/// four digits of a card-number-length entry (as receipts show them).
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    if n >= 12 {
        let last: String = value.chars().skip(n - 4).collect();
        format!("****{last}")
    } else {
        "****".to_owned()
    }
}

impl Run {
    /// A run of `flow` in `set`, with the call's first variables (`caller`, `dialed`, …).
    pub fn new(set: Arc<FlowSet>, flow: usize, vars: Vars) -> Run {
        let node = set.flows[flow].entry;
        Run {
            set,
            flow,
            node,
            vars,
            phase: Phase::Idle,
            typed: VecDeque::new(),
            buffer: String::new(),
            attempts: 0,
            next_token: 0,
            hops: 0,
            errors: 0,
            outcome: None,
            sensitive: Default::default(),
        }
    }

    /// The variables as the flow sees them (card data included): for the
    /// flow's own work only. What leaves the call (its record, events,
    /// screen pops, webhooks of the engine's, logs) takes
    /// [`Run::public_vars`].
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// The variables with those of `sensitive` collects masked ([`mask`]).
    pub fn public_vars(&self) -> Vars {
        let mut vars = self.vars.clone();
        for name in &self.sensitive {
            if let Some(v) = vars.get_mut(name) {
                let text = match &*v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                *v = Value::String(mask(&text));
            }
        }
        vars
    }

    /// The flow waits in a `sensitive` collect (card data is being keyed).
    pub fn in_sensitive_collect(&self) -> bool {
        matches!(self.kind(), Kind::Collect(c) if c.sensitive)
    }

    /// The flow set (version) this run belongs to.
    pub fn flow_set(&self) -> &Arc<FlowSet> {
        &self.set
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn flow_name(&self) -> &str {
        &self.set.flows[self.flow].name
    }

    pub fn node_name(&self) -> &str {
        &self.set.flows[self.flow].nodes[self.node].name
    }

    /// Whether the queue node the call waits in says where to go after the
    /// queue's maximum wait.
    pub fn leaves_queue_on_timeout(&self) -> bool {
        self.phase == Phase::Queued
            && matches!(
                self.kind(),
                Kind::Queue {
                    on_timeout: Some(_),
                    ..
                }
            )
    }

    /// The version of the flow set this call runs on.
    pub fn version(&self) -> u64 {
        self.set.version
    }

    pub fn step(&mut self, event: Event, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        self.hops = 0;
        if self.phase == Phase::Done {
            return out;
        }
        match event {
            Event::Start => {
                if self.phase == Phase::Idle {
                    self.enter(self.set.flows[self.flow].entry, now, &mut out);
                }
            }
            Event::Digit(d) => self.digit(d, now, &mut out),
            Event::PlayDone(t) => self.play_done(t, now, &mut out),
            Event::Timer(t) => self.timer(t, now, &mut out),
            Event::Webhook(t, result) => {
                if self.phase == (Phase::Webhook { token: t }) {
                    self.webhook_done(result, now, &mut out);
                }
            }
            Event::Recorded(t, result) => {
                if self.phase == (Phase::Recording { token: t }) {
                    self.recorded(result, now, &mut out);
                }
            }
            Event::Saved(t, result) => {
                if self.phase == (Phase::Saving { token: t }) {
                    self.saved(result, now, &mut out);
                }
            }
            Event::QueueTimeout => {
                if self.phase == Phase::Queued {
                    if let Kind::Queue {
                        on_timeout: Some(next),
                        ..
                    } = self.kind().clone()
                    {
                        self.outcome = None;
                        self.enter(next, now, &mut out);
                    }
                }
            }
            Event::Transferred(t, result) => {
                if self.phase == (Phase::Transferring { token: t }) {
                    self.transferred(result, now, &mut out);
                }
            }
            Event::CallbackBooked(t, result) => {
                if self.phase == (Phase::OfferingCallback { token: t }) {
                    if let Kind::Callback {
                        queue,
                        next,
                        on_error,
                    } = self.kind().clone()
                    {
                        match result {
                            Ok(()) => self.enter(next, now, &mut out),
                            Err(e) => self.error(
                                format!("callback in {queue}: {e}"),
                                on_error,
                                now,
                                &mut out,
                            ),
                        }
                    }
                }
            }
            Event::Hangup => {
                if matches!(self.phase, Phase::Recording { .. }) {
                    // What the caller said before hanging up is the message.
                    out.push(Action::StopRecord);
                }
                self.phase = Phase::Done;
                if self.outcome.is_none() {
                    self.outcome = Some(Outcome::CallerHungUp);
                }
            }
        }
        out
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn kind(&self) -> &Kind {
        &self.set.flows[self.flow].nodes[self.node].kind
    }

    fn enter(&mut self, id: NodeId, now: Timestamp, out: &mut Vec<Action>) {
        self.hops += 1;
        if self.hops > MAX_HOPS {
            self.give_up(
                "the flow went through more than 100 nodes without waiting for the caller".into(),
                out,
            );
            return;
        }
        self.node = id;
        self.attempts = 0;
        self.buffer.clear();
        let set = self.set.clone();
        let flow = &set.flows[self.flow];
        out.push(Action::Entered {
            flow: flow.name.clone(),
            node: flow.nodes[id].name.clone(),
        });
        match &flow.nodes[id].kind {
            Kind::Play { say, barge_in, .. } => match self.expand(say) {
                Ok(prompts) => {
                    let token = self.token();
                    self.typed.clear();
                    self.phase = Phase::Playing {
                        token,
                        barge_in: *barge_in,
                    };
                    out.push(Action::Play {
                        token,
                        prompts,
                        barge_in: *barge_in,
                    });
                }
                Err(e) => self.error(e, None, now, out),
            },
            Kind::Menu(_) | Kind::Collect(_) | Kind::Survey(_) => {
                self.present(Vec::new(), now, out)
            }
            Kind::Hours {
                schedule,
                open,
                closed,
            } => {
                let is_open = set.schedules.get(schedule).is_some_and(|s| s.is_open(now));
                self.enter(if is_open { *open } else { *closed }, now, out);
            }
            Kind::Webhook(w) => {
                let request = (|| -> Result<WebhookRequest, String> {
                    let url = |t: &Template| t.render_url(&self.vars).map_err(|e| e.to_string());
                    let header =
                        |t: &Template| t.render_header(&self.vars).map_err(|e| e.to_string());
                    Ok(WebhookRequest {
                        method: w.method,
                        url: url(&w.url)?,
                        headers: w
                            .headers
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), header(v)?)))
                            .collect::<Result<_, String>>()?,
                        body: match &w.body {
                            Some(fields) => Some(Value::Object(
                                fields
                                    .iter()
                                    .map(|(k, v)| {
                                        Ok((
                                            k.clone(),
                                            v.eval(&self.vars).map_err(|e| e.to_string())?,
                                        ))
                                    })
                                    .collect::<Result<_, String>>()?,
                            )),
                            None => None,
                        },
                        timeout: w.timeout,
                    })
                })();
                match request {
                    Ok(request) => {
                        let token = self.token();
                        self.phase = Phase::Webhook { token };
                        out.push(Action::Webhook { token, request });
                    }
                    Err(e) => self.error(e, w.on_error, now, out),
                }
            }
            Kind::Set { vars, next } => {
                for (name, t) in vars {
                    match t.eval(&self.vars) {
                        Ok(v) => {
                            self.vars.insert(name.clone(), v);
                        }
                        Err(e) => return self.error(format!("set {name}: {e}"), None, now, out),
                    }
                }
                self.enter(*next, now, out);
            }
            Kind::Branch {
                arms,
                otherwise,
                on_error,
            } => {
                for (cond, target) in arms {
                    match cond.test(&self.vars) {
                        Ok(true) => return self.enter(*target, now, out),
                        Ok(false) => {}
                        Err(e) => return self.error(e.to_string(), *on_error, now, out),
                    }
                }
                self.enter(*otherwise, now, out);
            }
            Kind::Queue {
                queue,
                priority,
                skills,
                ..
            } => {
                let priority = match priority.as_ref().map(|p| p.eval(&self.vars)) {
                    None => 0,
                    Some(Ok(v)) => match render_value(&v).trim().parse::<f64>() {
                        Ok(p) => p as i64,
                        Err(_) => {
                            out.push(Action::Error {
                                node: flow.nodes[id].name.clone(),
                                message: format!(
                                    "priority `{}` is not a number; 0 is used",
                                    render_value(&v)
                                ),
                            });
                            0
                        }
                    },
                    Some(Err(e)) => {
                        // The caller still reaches the queue; only the priority is lost.
                        out.push(Action::Error {
                            node: flow.nodes[id].name.clone(),
                            message: format!("priority: {e}; 0 is used"),
                        });
                        0
                    }
                };
                self.phase = Phase::Queued;
                self.outcome = Some(Outcome::Queued {
                    queue: queue.clone(),
                });
                out.push(Action::Enqueue {
                    queue: queue.clone(),
                    priority,
                    skills: skills.clone(),
                });
            }
            Kind::Callback { queue, .. } => {
                let token = self.token();
                self.phase = Phase::OfferingCallback { token };
                out.push(Action::OfferCallback {
                    token,
                    queue: queue.clone(),
                });
            }
            Kind::Transfer { target, .. } => {
                let uri = set.transfers.get(target).cloned().unwrap_or_default();
                let token = self.token();
                self.phase = Phase::Transferring { token };
                out.push(Action::Transfer {
                    token,
                    target: target.clone(),
                    uri,
                });
            }
            Kind::Record(r) => {
                let mut prompts = match self.expand(&r.prompt) {
                    Ok(p) => p,
                    Err(e) => return self.error(e, r.on_error, now, out),
                };
                if r.beep {
                    prompts.push("beep".into());
                }
                self.typed.clear();
                if prompts.is_empty() {
                    self.start_recording(out);
                } else {
                    let token = self.token();
                    self.phase = Phase::RecordPrompt { token };
                    out.push(Action::Play {
                        token,
                        prompts,
                        barge_in: false,
                    });
                }
            }
            Kind::Goto { flow: target } => match set.flow(target) {
                Some(f) => {
                    self.flow = f;
                    self.enter(set.flows[f].entry, now, out);
                }
                None => self.give_up(format!("there is no flow `{target}`"), out),
            },
            Kind::Hangup { say } => {
                let prompts = self.expand(say).unwrap_or_default();
                if prompts.is_empty() {
                    self.phase = Phase::Done;
                    self.outcome = Some(Outcome::Ended);
                    out.push(Action::Hangup);
                } else {
                    let token = self.token();
                    self.phase = Phase::HangingUp { token };
                    out.push(Action::Play {
                        token,
                        prompts,
                        barge_in: false,
                    });
                }
            }
        }
    }

    fn start_recording(&mut self, out: &mut Vec<Action>) {
        let Kind::Record(r) = self.kind().clone() else {
            return;
        };
        let token = self.token();
        self.phase = Phase::Recording { token };
        out.push(Action::Record {
            token,
            max: r.max,
            kind: r.kind,
        });
    }

    /// Offers a menu, collect or survey: `prefix` (an "invalid" prompt, say)
    /// then the prompt; digits typed ahead are taken first.
    fn present(&mut self, prefix: Vec<Say>, now: Timestamp, out: &mut Vec<Action>) {
        let prompt = match self.kind() {
            Kind::Menu(m) => m.prompt.clone(),
            Kind::Collect(c) => c.prompt.clone(),
            Kind::Survey(s) => s.prompt.clone(),
            _ => return,
        };
        self.buffer.clear();
        if !self.typed.is_empty() {
            // A digit that interrupted the previous prompt answers this one.
            self.phase = Phase::Waiting { token: 0 };
            while let Some(d) = self.typed.pop_front() {
                let before = (self.flow, self.node, self.phase);
                self.digit(d, now, out);
                if (self.flow, self.node) != (before.0, before.1)
                    || !matches!(self.phase, Phase::Waiting { .. })
                {
                    break;
                }
            }
            return;
        }
        let all: Vec<Say> = prefix.into_iter().chain(prompt).collect();
        match self.expand(&all) {
            Ok(prompts) if prompts.is_empty() => self.wait(out),
            Ok(prompts) => {
                let token = self.token();
                self.phase = Phase::Prompting { token };
                out.push(Action::Play {
                    token,
                    prompts,
                    barge_in: true,
                });
            }
            Err(e) => self.error(e, None, now, out),
        }
    }

    /// Starts the digit timer for the current node.
    fn wait(&mut self, out: &mut Vec<Action>) {
        let after = match self.kind() {
            Kind::Menu(m) => m.timeout,
            Kind::Collect(c) if self.buffer.is_empty() => c.timeout,
            Kind::Collect(c) => c.inter_digit_timeout,
            Kind::Survey(s) if self.buffer.is_empty() => s.timeout,
            Kind::Survey(_) => Duration::from_secs(2),
            _ => Duration::from_secs(5),
        };
        let token = self.token();
        self.phase = Phase::Waiting { token };
        out.push(Action::Timer { token, after });
    }

    fn digit(&mut self, d: char, now: Timestamp, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Playing { barge_in: true, .. } => {
                out.push(Action::StopPlay);
                self.typed.push_back(d);
                if let Kind::Play { next, .. } = self.kind() {
                    let next = *next;
                    self.enter(next, now, out);
                }
            }
            Phase::Webhook { .. } => self.typed.push_back(d),
            Phase::Prompting { .. } | Phase::Waiting { .. } => {
                if matches!(self.phase, Phase::Prompting { .. }) {
                    out.push(Action::StopPlay);
                }
                match self.kind().clone() {
                    Kind::Menu(m) => self.menu_digit(&m, d, now, out),
                    Kind::Collect(c) => self.collect_digit(&c, d, now, out),
                    Kind::Survey(s) => self.survey_digit(&s, d, now, out),
                    _ => {}
                }
            }
            Phase::Confirming { playing, .. } => {
                if playing {
                    out.push(Action::StopPlay);
                }
                let Kind::Collect(c) = self.kind().clone() else {
                    return;
                };
                match d {
                    '1' => self.accept(&c, now, out),
                    '2' => self.present(Vec::new(), now, out),
                    _ => self.fail(false, now, out),
                }
            }
            Phase::Recording { .. } => {
                if let Kind::Record(r) = self.kind() {
                    if r.end == Some(d) {
                        out.push(Action::StopRecord);
                    }
                }
            }
            _ => {}
        }
    }

    fn menu_digit(&mut self, m: &Menu, d: char, now: Timestamp, out: &mut Vec<Action>) {
        match m.options.iter().find(|(k, _)| *k == d) {
            Some((_, target)) => self.enter(*target, now, out),
            None => self.fail(false, now, out),
        }
    }

    fn collect_digit(&mut self, c: &Collect, d: char, now: Timestamp, out: &mut Vec<Action>) {
        if c.end == Some(d) {
            return self.finish_collect(c, now, out);
        }
        self.buffer.push(d);
        if self.buffer.chars().count() >= c.max {
            return self.finish_collect(c, now, out);
        }
        self.wait(out);
    }

    fn finish_collect(&mut self, c: &Collect, now: Timestamp, out: &mut Vec<Action>) {
        let n = self.buffer.chars().count();
        let valid =
            n >= c.min && n <= c.max && c.pattern.as_ref().is_none_or(|p| p.matches(&self.buffer));
        if !valid {
            return self.fail(n == 0, now, out);
        }
        if c.confirm {
            let mut prompts = vec!["ask/you-entered".to_owned()];
            prompts.extend(self.buffer.chars().map(digit_prompt));
            prompts.push("ask/confirm-entry".into());
            let token = self.token();
            self.phase = Phase::Confirming {
                token,
                playing: true,
            };
            out.push(Action::Play {
                token,
                prompts,
                barge_in: true,
            });
            return;
        }
        self.accept(c, now, out);
    }

    fn accept(&mut self, c: &Collect, now: Timestamp, out: &mut Vec<Action>) {
        if c.sensitive {
            self.sensitive.insert(c.into.clone());
        } else {
            self.sensitive.remove(&c.into);
        }
        self.vars.insert(
            c.into.clone(),
            Value::String(std::mem::take(&mut self.buffer)),
        );
        self.enter(c.next, now, out);
    }

    fn survey_digit(&mut self, s: &Survey, d: char, now: Timestamp, out: &mut Vec<Action>) {
        if d != '#' {
            self.buffer.push(d);
        }
        // "1" may be the start of "10": wait a moment for a second digit.
        if d != '#' && self.buffer == "1" {
            return self.wait(out);
        }
        match self.buffer.parse::<u8>() {
            Ok(score) if score <= 10 => {
                let token = self.token();
                self.phase = Phase::Saving { token };
                out.push(Action::SaveSurvey {
                    token,
                    question: s.question.clone(),
                    score,
                });
            }
            _ => self.fail(self.buffer.is_empty(), now, out),
        }
    }

    /// A failed attempt at a menu, collect or survey: offer it again after
    /// the `no-input`/`invalid` prompt, or leave by `exhausted`.
    fn fail(&mut self, no_input: bool, now: Timestamp, out: &mut Vec<Action>) {
        self.attempts += 1;
        self.typed.clear();
        self.buffer.clear();
        let (retries, prefix, exhausted) = match self.kind() {
            Kind::Menu(m) => (
                m.retries,
                if no_input { &m.no_input } else { &m.invalid },
                m.exhausted,
            ),
            Kind::Collect(c) => (
                c.retries,
                if no_input { &c.no_input } else { &c.invalid },
                c.exhausted,
            ),
            Kind::Survey(s) => (
                s.retries,
                if no_input { &s.no_input } else { &s.invalid },
                s.next,
            ),
            _ => return,
        };
        let prefix = prefix.clone();
        if self.attempts > retries {
            return self.enter(exhausted, now, out);
        }
        let attempts = self.attempts;
        self.present(prefix, now, out);
        self.attempts = attempts;
    }

    fn play_done(&mut self, t: u64, now: Timestamp, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Playing { token, .. } if token == t => {
                if let Kind::Play { next, .. } = self.kind() {
                    let next = *next;
                    self.enter(next, now, out);
                }
            }
            Phase::Prompting { token } if token == t => self.wait(out),
            Phase::Confirming {
                token,
                playing: true,
            } if token == t => {
                let token = self.token();
                self.phase = Phase::Confirming {
                    token,
                    playing: false,
                };
                out.push(Action::Timer {
                    token,
                    after: Duration::from_secs(5),
                });
            }
            Phase::RecordPrompt { token } if token == t => self.start_recording(out),
            Phase::HangingUp { token } if token == t => {
                self.phase = Phase::Done;
                self.outcome = Some(Outcome::Ended);
                out.push(Action::Hangup);
            }
            _ => {}
        }
    }

    fn timer(&mut self, t: u64, now: Timestamp, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Waiting { token } if token == t => match self.kind().clone() {
                Kind::Collect(c) if !self.buffer.is_empty() => self.finish_collect(&c, now, out),
                Kind::Survey(s) if !self.buffer.is_empty() => self.survey_digit(&s, '#', now, out),
                _ => self.fail(true, now, out),
            },
            Phase::Confirming {
                token,
                playing: false,
            } if token == t => self.fail(true, now, out),
            _ => {}
        }
    }

    fn webhook_done(&mut self, result: WebhookOutcome, now: Timestamp, out: &mut Vec<Action>) {
        let Kind::Webhook(w) = self.kind().clone() else {
            return;
        };
        match result {
            WebhookOutcome::Ok(v) => {
                if let Some(into) = &w.into {
                    self.vars.insert(into.clone(), v);
                }
                self.enter(w.next, now, out);
            }
            WebhookOutcome::Failed(e) => self.error(format!("webhook: {e}"), w.on_error, now, out),
            WebhookOutcome::TimedOut => self.error(
                format!("webhook: no answer within {:?}", w.timeout),
                w.on_timeout.or(w.on_error),
                now,
                out,
            ),
        }
    }

    fn recorded(&mut self, result: Result<String, Failure>, now: Timestamp, out: &mut Vec<Action>) {
        let Kind::Record(r) = self.kind().clone() else {
            return;
        };
        match result {
            Ok(path) => {
                if let RecordKind::Recording { into } = &r.kind {
                    self.vars.insert(into.clone(), Value::String(path));
                }
                self.enter(r.next, now, out);
            }
            Err(e) => self.error(format!("recording: {e}"), r.on_error, now, out),
        }
    }

    fn transferred(&mut self, result: Result<(), Failure>, now: Timestamp, out: &mut Vec<Action>) {
        let Kind::Transfer { target, on_error } = self.kind().clone() else {
            return;
        };
        match result {
            Ok(()) => {
                self.phase = Phase::Done;
                self.outcome = Some(Outcome::Transferred { target });
            }
            Err(e) => self.error(format!("transfer to {target}: {e}"), on_error, now, out),
        }
    }

    fn saved(&mut self, result: Result<(), Failure>, now: Timestamp, out: &mut Vec<Action>) {
        let Kind::Survey(s) = self.kind().clone() else {
            return;
        };
        match result {
            Ok(()) => {
                if let Some(into) = &s.into {
                    if let Ok(score) = self.buffer.parse::<u8>() {
                        self.vars.insert(into.clone(), Value::from(score));
                    }
                }
            }
            // The caller is not told; the answer is logged with the error.
            Err(e) => out.push(Action::Error {
                node: self.node_name().to_owned(),
                message: format!("survey answer {} not stored: {e}", self.buffer),
            }),
        }
        self.enter(s.next, now, out);
    }

    /// A run-time error: the node's error branch, else the flow's
    /// `on-error`, else the call ends. Never silent: `Action::Error` is logged.
    fn error(
        &mut self,
        message: String,
        branch: Option<NodeId>,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Error {
            node: self.node_name().to_owned(),
            message: message.clone(),
        });
        self.errors += 1;
        let flow_branch = self.set.flows[self.flow].on_error;
        let target = branch.or(flow_branch.filter(|b| *b != self.node));
        match target {
            // Errors in a row beyond a few mean the error path itself fails.
            Some(t) if self.errors <= 3 => self.enter(t, now, out),
            _ => self.give_up(message, out),
        }
    }

    fn give_up(&mut self, message: String, out: &mut Vec<Action>) {
        self.phase = Phase::Done;
        self.outcome = Some(Outcome::Failed { message });
        out.push(Action::Hangup);
    }

    /// The prompt names for a list of things to say.
    fn expand(&self, say: &[Say]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for s in say {
            match s {
                Say::Prompt(p) => out.push(p.clone()),
                Say::Digits(t) => {
                    let text = t.render(&self.vars).map_err(|e| e.to_string())?;
                    out.extend(
                        text.chars()
                            .filter(|c| "0123456789*#".contains(*c))
                            .map(digit_prompt),
                    );
                }
                Say::Number(t) => {
                    let n = number(t, &self.vars)?;
                    number_prompts(n, &mut out);
                }
                Say::Duration(t) => {
                    let secs = number(t, &self.vars)?.max(0);
                    duration_prompts(secs, &mut out);
                }
            }
        }
        Ok(out)
    }
}

fn number(t: &Template, vars: &Vars) -> Result<i64, String> {
    let text = render_value(&t.eval(vars).map_err(|e| e.to_string())?);
    text.trim()
        .parse::<f64>()
        .map(|f| f.round() as i64)
        .map_err(|_| format!("`{text}` is not a number to say"))
}

/// The shipped prompt that speaks a key: `digits/5`, `digits/star`.
pub fn digit_prompt(key: char) -> String {
    match key {
        '*' => "digits/star".into(),
        '#' => "digits/pound".into(),
        c => format!("digits/{c}"),
    }
}

/// English number words from the shipped `numbers/` prompts.
pub fn number_prompts(n: i64, out: &mut Vec<String>) {
    if n < 0 {
        out.push("numbers/minus".into());
        return number_prompts(n.saturating_neg(), out);
    }
    let n = n as u64;
    for (scale, name) in [
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1000, "thousand"),
    ] {
        if n >= scale {
            number_prompts((n / scale) as i64, out);
            out.push(format!("numbers/{name}"));
            let rest = n % scale;
            if rest > 0 {
                number_prompts(rest as i64, out);
            }
            return;
        }
    }
    if n >= 100 {
        out.push(format!("numbers/{}", n / 100));
        out.push("numbers/hundred".into());
        if n % 100 > 0 {
            number_prompts((n % 100) as i64, out);
        }
    } else if n >= 20 {
        out.push(format!("numbers/{}", n / 10 * 10));
        if n % 10 > 0 {
            out.push(format!("numbers/{}", n % 10));
        }
    } else {
        out.push(format!("numbers/{n}"));
    }
}

/// "2 minutes 5 seconds"; hours when it is that long.
pub fn duration_prompts(secs: i64, out: &mut Vec<String>) {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut part = |n: i64, one: &str, many: &str| {
        number_prompts(n, out);
        out.push(format!("time/{}", if n == 1 { one } else { many }));
    };
    if h > 0 {
        part(h, "hour", "hours");
    }
    if m > 0 {
        part(m, "minute", "minutes");
    }
    if s > 0 || (h == 0 && m == 0) {
        part(s, "second", "seconds");
    }
}
