//! Waiting in a queue, as its own pure machine: the greeting, where the
//! caller stands and how long they may wait (every `announce-every`), the
//! queue's periodic message, and when to offer a callback (`offer-after`,
//! or an expected wait over `when-wait-over`). It says what to play and
//! when it next needs the clock; the call plays it (always followed by the
//! queue's music) and makes the offer. `now` is an argument.

use std::time::{Duration, Instant};

use tracing::info;

use crate::acd::Position;
use crate::config::QueueConfig;
use crate::flow;

/// What the waiting caller hears next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Say {
    /// These prompts, then the queue's music.
    Play(Vec<String>),
    /// Offer a callback, after these prompts (an announcement).
    OfferCallback(Vec<String>),
}

/// How long a list of prompts plays (from the prompt cache).
pub type Lengths<'a> = &'a dyn Fn(&str) -> Option<Duration>;

/// A message that falls on another prompt waits this long.
const MESSAGE_RETRY: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Waiting {
    config: QueueConfig,
    /// The greeting waiting for the first position (they play together).
    greeting: Option<Option<String>>,
    announce_at: Option<Instant>,
    message_at: Option<Instant>,
    offer_at: Option<Instant>,
}

impl Waiting {
    /// The caller joins the queue `config` describes; what they hear first
    /// (nothing yet when the greeting waits for their position).
    pub fn join(config: QueueConfig, now: Instant) -> (Waiting, Option<Say>) {
        let mut w = Waiting {
            offer_at: config
                .callback
                .as_ref()
                .and_then(|c| c.offer_after)
                .map(|after| now + after),
            message_at: config.message.as_ref().map(|_| now + config.message_every),
            announce_at: None,
            greeting: None,
            config,
        };
        if w.config.announce_position {
            w.greeting = Some(w.config.greeting.clone());
            return (w, None);
        }
        let first = Say::Play(w.config.greeting.iter().cloned().collect());
        (w, Some(first))
    }

    /// Whether the greeting waits for the caller's first position.
    pub fn wants_position(&self) -> bool {
        self.greeting.is_some()
    }

    /// The ACD placed the caller: the greeting plays with the first
    /// announcement. `can_offer`: a callback offer may be made now.
    pub fn placed(
        &mut self,
        pos: Option<&Position>,
        now: Instant,
        can_offer: bool,
        lengths: Lengths,
    ) -> Option<Say> {
        let greeting = self.greeting.take()?;
        Some(self.announce(greeting, pos, now, can_offer, lengths))
    }

    /// When the machine next needs [`on_timeout`](Self::on_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.announce_at, self.message_at, self.offer_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// What is due by `now`: `pos` is where the caller stands now, `busy`
    /// whether a prompt (not the music) plays.
    pub fn on_timeout(
        &mut self,
        now: Instant,
        pos: Option<&Position>,
        busy: bool,
        can_offer: bool,
        lengths: Lengths,
    ) -> Vec<Say> {
        let mut out = Vec::new();
        // Each due deadline in the order it fell due.
        loop {
            let due = [
                (0, self.offer_at),
                (1, self.message_at),
                (2, self.announce_at),
            ]
            .into_iter()
            .filter_map(|(k, at)| Some((k, at.filter(|at| *at <= now)?)))
            .min_by_key(|(_, at)| *at);
            let Some((kind, _)) = due else {
                return out;
            };
            let busy = busy || !out.is_empty();
            let say = match kind {
                0 => {
                    self.offer_at = None;
                    Some(Say::OfferCallback(Vec::new()))
                }
                1 => {
                    self.message_at = None;
                    self.message(now, busy, lengths)
                }
                _ => {
                    self.announce_at = None;
                    Some(self.announce(None, pos, now, can_offer, lengths))
                }
            };
            out.extend(say);
        }
    }

    /// An agent is free: no callback offer comes any more.
    pub fn no_offer(&mut self) {
        self.offer_at = None;
    }

    /// "You are caller number 3 in line. Your expected wait is about 4
    /// minutes.", after `first`; the next one `announce-every` after this
    /// one ends. An expected wait over `when-wait-over` brings the
    /// callback offer instead of the next announcement.
    fn announce(
        &mut self,
        first: Option<String>,
        pos: Option<&Position>,
        now: Instant,
        can_offer: bool,
        lengths: Lengths,
    ) -> Say {
        let mut prompts: Vec<String> = first.into_iter().collect();
        if let Some(p) = pos {
            prompts.push("queue/you-are-caller".into());
            flow::run::number_prompts(p.position as i64, &mut prompts);
            prompts.push("queue/in-line".into());
            let minutes = p.estimated_wait.as_secs().div_ceil(60).max(1);
            prompts.push("queue/about".into());
            flow::run::number_prompts(minutes as i64, &mut prompts);
            prompts.push(
                if minutes == 1 {
                    "queue/minute"
                } else {
                    "queue/minutes"
                }
                .into(),
            );
            info!(position = p.position, waiting = p.waiting, estimated_wait = ?p.estimated_wait, "position announced");
            let long = self
                .config
                .callback
                .as_ref()
                .and_then(|c| c.when_wait_over)
                .is_some_and(|over| p.estimated_wait > over);
            if long && can_offer {
                self.offer_at = None;
                return Say::OfferCallback(prompts);
            }
        }
        if !self.config.announce_every.is_zero() {
            self.announce_at = Some(now + length(&prompts, lengths) + self.config.announce_every);
        }
        Say::Play(prompts)
    }

    /// The queue's periodic message; the next one `message-every` after it
    /// ends. Not over another prompt: it waits a few seconds for that.
    fn message(&mut self, now: Instant, busy: bool, lengths: Lengths) -> Option<Say> {
        let message = self.config.message.clone()?;
        if busy {
            self.message_at = Some(now + MESSAGE_RETRY);
            return None;
        }
        info!(%message, "queue message");
        let prompts = vec![message];
        self.message_at = Some(now + length(&prompts, lengths) + self.config.message_every);
        Some(Say::Play(prompts))
    }
}

fn length(prompts: &[String], lengths: Lengths) -> Duration {
    prompts.iter().filter_map(|p| lengths(p)).sum()
}

#[cfg(test)]
#[path = "waiting_tests.rs"]
mod tests;
