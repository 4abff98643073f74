//! `hotline simulate`: a flow run without a network, on a virtual clock.
//! The same `flow::Run` a live call uses; prompts "play" for their real
//! length, timers fire when nothing is typed, webhooks are called for real
//! unless mocked. Each step is printed, so an author sees exactly where a
//! caller would go before a single call is placed.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::flow::expr::render_value;
use crate::flow::{Action, Event, FlowSet, Outcome, Run, Vars, WebhookOutcome};
use crate::media::PromptCache;

/// Where the caller's keys come from.
pub enum Keys {
    /// Groups typed one per wait, in order: `["1", "1234#"]`. When they run
    /// out, every wait times out.
    Script(Vec<String>),
    /// A line from the terminal per wait; an empty line lets it time out.
    Interactive,
}

/// Plays prompts on a sound device and returns once they are heard.
pub type PlayAloud = Box<dyn FnMut(&[Arc<crate::media::Prompt>])>;

pub struct Simulation {
    pub set: Arc<FlowSet>,
    pub flow: usize,
    pub vars: Vars,
    pub start: Timestamp,
    pub keys: Keys,
    /// Webhook node name → the JSON it answers with.
    pub mocks: BTreeMap<String, Value>,
    pub http: Option<(reqwest::Client, tokio::runtime::Handle)>,
    /// Plays prompts aloud (`--audio`) and returns when they are heard.
    pub audio: Option<PlayAloud>,
}

/// A run that never waits this long in all is stopped: a flow that only
/// loops on timeouts would otherwise print forever.
const LIMIT: SignedDuration = SignedDuration::from_secs(3600);

/// What the simulated call is doing between events.
#[derive(Default)]
struct Waits {
    playing: Option<(u64, Duration)>,
    timer: Option<(u64, Duration)>,
}

impl Simulation {
    /// Runs to the end of the flow; returns where the call ended.
    pub fn run(mut self, prompts: &PromptCache, out: &mut dyn Write) -> std::io::Result<Outcome> {
        let mut run = Run::new(self.set.clone(), self.flow, self.vars.clone());
        let mut now = self.start;
        let mut pending = VecDeque::from([Event::Start]);
        let mut waits = Waits::default();
        writeln!(
            out,
            "{}  start {} at {}",
            self.clock(now),
            run.flow_name(),
            self.start
        )?;
        loop {
            while let Some(ev) = pending.pop_front() {
                for action in run.step(ev, now) {
                    self.apply(&run, action, now, prompts, &mut waits, &mut pending, out)?;
                }
            }
            if let Some(outcome) = run.outcome() {
                let outcome = outcome.clone();
                writeln!(out, "{}  end: {}", self.clock(now), describe_end(&outcome))?;
                let vars: Vec<String> = run
                    .vars()
                    .iter()
                    .map(|(k, v)| format!("{k}={}", render_value(v)))
                    .collect();
                writeln!(out, "variables: {}", vars.join(", "))?;
                return Ok(outcome);
            }
            if now.duration_since(self.start) > LIMIT {
                writeln!(
                    out,
                    "{}  stopped: the call would still be going after an hour",
                    self.clock(now)
                )?;
                return Ok(Outcome::Failed {
                    message: "simulation limit".into(),
                });
            }
            if let Some((token, length)) = waits.playing.take() {
                // The prompt plays to its end: keys are typed when the flow waits.
                now += SignedDuration::try_from(length).unwrap_or_default();
                pending.push_back(Event::PlayDone(token));
            } else if let Some((token, after)) = waits.timer.take() {
                match self.next_keys(out, after)? {
                    Some(keys) if !keys.is_empty() => {
                        writeln!(out, "{}  keys {keys}", self.clock(now))?;
                        // Pressed one by one, a quarter second apart.
                        for k in keys.chars() {
                            pending.push_back(Event::Digit(k));
                        }
                        now += SignedDuration::from_millis(250);
                    }
                    _ => {
                        writeln!(
                            out,
                            "{}  no key within {:.1} s",
                            self.clock(now),
                            after.as_secs_f64()
                        )?;
                        now += SignedDuration::try_from(after).unwrap_or_default();
                        pending.push_back(Event::Timer(token));
                    }
                }
            } else {
                writeln!(
                    out,
                    "{}  stopped: the flow waits for nothing",
                    self.clock(now)
                )?;
                return Ok(Outcome::Failed {
                    message: "the flow waits for nothing".into(),
                });
            }
        }
    }

    fn clock(&self, now: Timestamp) -> String {
        let ms = now.duration_since(self.start).as_millis();
        format!("{:02}:{:02}.{:03}", ms / 60_000, ms / 1000 % 60, ms % 1000)
    }

    /// Prints one action and does what the call task would, virtually.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        run: &Run,
        action: Action,
        now: Timestamp,
        prompts: &PromptCache,
        waits: &mut Waits,
        pending: &mut VecDeque<Event>,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let t = self.clock(now);
        match action {
            Action::Entered { flow, node } => writeln!(out, "{t}  node {flow}:{node}")?,
            Action::Play {
                token,
                prompts: names,
                ..
            } => {
                let length: Duration = names
                    .iter()
                    .filter_map(|n| prompts.get(n))
                    .map(|p| p.duration())
                    .sum();
                writeln!(
                    out,
                    "{t}  play {} ({:.1} s)",
                    names.join(", "),
                    length.as_secs_f64()
                )?;
                if let Some(audio) = self.audio.as_mut() {
                    out.flush()?;
                    let heard: Vec<_> = names.iter().filter_map(|n| prompts.get(n)).collect();
                    audio(&heard);
                }
                waits.playing = Some((token, length));
                waits.timer = None;
            }
            Action::StopPlay => {
                writeln!(out, "{t}  prompt interrupted")?;
                waits.playing = None;
            }
            Action::Timer { token, after } => waits.timer = Some((token, after)),
            Action::Webhook { token, request } => {
                let node = run.node_name().to_owned();
                let outcome = match self.mocks.get(&node) {
                    Some(v) => {
                        writeln!(out, "{t}  webhook {node}: mocked")?;
                        WebhookOutcome::Ok(v.clone())
                    }
                    None => {
                        writeln!(
                            out,
                            "{t}  webhook {node}: {:?} {}",
                            request.method, request.url
                        )?;
                        match &self.http {
                            Some((client, rt)) => {
                                rt.block_on(super::webhook::call(client, &request))
                            }
                            None => WebhookOutcome::Failed("no HTTP client".into()),
                        }
                    }
                };
                writeln!(out, "{t}  webhook result: {}", describe(&outcome))?;
                pending.push_back(Event::Webhook(token, outcome));
            }
            Action::Record { token, max, kind } => {
                writeln!(
                    out,
                    "{t}  record {kind:?} (up to {} s; simulated)",
                    max.as_secs()
                )?;
                pending.push_back(Event::Recorded(token, Ok("simulated.wav".into())));
            }
            Action::StopRecord => writeln!(out, "{t}  recording stopped")?,
            Action::SaveSurvey {
                token,
                question,
                score,
            } => {
                writeln!(out, "{t}  survey {question} = {score} (stored)")?;
                pending.push_back(Event::Saved(token, Ok(())));
            }
            Action::Enqueue {
                queue,
                priority,
                skills,
            } => writeln!(
                out,
                "{t}  queue {queue} (priority {priority}, skills {skills:?})"
            )?,
            Action::Transfer { token, target, uri } => {
                writeln!(
                    out,
                    "{t}  transfer to {target} ({uri}); simulated as answered"
                )?;
                pending.push_back(Event::Transferred(token, Ok(())));
            }
            Action::OfferCallback { token, queue } => {
                writeln!(
                    out,
                    "{t}  callback in {queue}: the caller's number read back; simulated as booked"
                )?;
                pending.push_back(Event::CallbackBooked(token, Ok(())));
            }
            Action::Hangup => writeln!(out, "{t}  hang up")?,
            Action::Error { node, message } => writeln!(out, "{t}  error in {node}: {message}")?,
        }
        Ok(())
    }

    fn next_keys(
        &mut self,
        out: &mut dyn Write,
        after: Duration,
    ) -> std::io::Result<Option<String>> {
        match &mut self.keys {
            Keys::Script(groups) => Ok((!groups.is_empty()).then(|| groups.remove(0))),
            Keys::Interactive => {
                write!(
                    out,
                    "keys (Enter alone: wait {:.0} s)> ",
                    after.as_secs_f64()
                )?;
                out.flush()?;
                let mut line = String::new();
                if std::io::stdin().read_line(&mut line)? == 0 {
                    // End of input: the caller types nothing more.
                    self.keys = Keys::Script(Vec::new());
                    return Ok(None);
                }
                let keys: String = line
                    .chars()
                    .filter(|c| "0123456789*#".contains(*c))
                    .collect();
                Ok(Some(keys))
            }
        }
    }
}

fn describe(o: &WebhookOutcome) -> String {
    match o {
        WebhookOutcome::Ok(v) => format!("ok {v}"),
        WebhookOutcome::Failed(e) => format!("failed: {e}"),
        WebhookOutcome::TimedOut => "timed out".into(),
    }
}

fn describe_end(o: &Outcome) -> String {
    match o {
        Outcome::Queued { queue } => format!("queued in {queue}"),
        Outcome::Transferred { target } => format!("transferred to {target}"),
        Outcome::Ended => "the flow hung up".into(),
        Outcome::CallerHungUp => "the caller hung up".into(),
        Outcome::Failed { message } => format!("failed: {message}"),
    }
}
