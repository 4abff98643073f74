//! The callback offer, as part of [`CallState`]: offered to a waiting
//! caller by their queue or asked for by a flow's `callback` node, the
//! caller's keys and silence fed to the pure [`Offer`], and the request
//! written, handed to the callback service, or withdrawn.

use std::time::Duration;

use tracing::{info, warn};

use super::state::{CallState, CallbackOffer, Do, BOOKED_TOKEN, QUESTION_TOKEN};
use super::timers::Timer;
use crate::callback::offer::{self, Offer, Step};
use crate::flow::{Event, Failure};
use crate::store::{Callback, CallbackState, Outcome as StoreOutcome, StoreError};

/// How long a caller has to answer the offer's questions, or between keys.
pub(super) const OFFER_ANSWER_TIME: Duration = Duration::from_secs(10);

impl CallState {
    /// Offers the waiting caller a callback, after `first` (an announcement).
    pub(super) fn offer_callback(&mut self, first: Vec<String>) {
        if !self.can_offer_callback() {
            return;
        }
        let Some(cfg) = self.queue_config().and_then(|q| q.callback.clone()) else {
            return;
        };
        let Some(trunk) = self.config.trunks.iter().find(|t| t.name == cfg.trunk) else {
            return;
        };
        let key = cfg.key.chars().next().unwrap_or('1');
        let (offer, first_do) = Offer::start(key, trunk.dial_plan.clone(), &self.caller);
        info!(%key, "callback offered");
        self.callback = Some(CallbackOffer { offer, node: None });
        let mut prompts = first;
        if let offer::Do::Say { prompts: p, .. } = first_do {
            prompts.extend(p);
        }
        self.say_then_music(prompts);
    }

    /// Plays `prompts`, then the queue's music again; their length.
    fn say_then_music(&mut self, prompts: Vec<String>) -> Duration {
        let length = self.length_of(&prompts);
        let music = self.music();
        self.play_then_loop(prompts, music);
        length
    }

    fn length_of(&self, prompts: &[String]) -> Duration {
        prompts
            .iter()
            .filter_map(|p| self.prompts.get(p))
            .map(|p| p.duration())
            .sum()
    }

    /// A flow's `callback` node: straight to the number (the flow asked).
    pub(super) fn callback_node(&mut self, token: u64, queue: String) {
        let cfg = self
            .config
            .queues
            .get(&queue)
            .and_then(|q| q.callback.clone());
        let trunk = cfg
            .as_ref()
            .and_then(|c| self.config.trunks.iter().find(|t| t.name == c.trunk));
        let (Some(cfg), Some(trunk)) = (cfg, trunk) else {
            let why = Failure::NotOffered(queue);
            return self.feed_later(Event::CallbackBooked(token, Err(why)));
        };
        let key = cfg.key.chars().next().unwrap_or('1');
        let (mut offer, _) = Offer::start(key, trunk.dial_plan.clone(), &self.caller);
        let actions = offer.key(key);
        info!(%queue, "callback node: asking for the number");
        self.callback = Some(CallbackOffer {
            offer,
            node: Some((token, queue)),
        });
        self.on_callback_actions(actions);
    }

    /// A flow's callback node ended without a booking: the flow goes on.
    pub(super) fn callback_node_over(&mut self) {
        let closed = self
            .callback
            .as_ref()
            .is_some_and(|c| c.node.is_some() && *c.offer.step() == Step::Closed);
        if !closed {
            return;
        }
        if let Some((token, _)) = self.callback.take().and_then(|c| c.node) {
            self.feed_later(Event::CallbackBooked(token, Err(Failure::NoNumber)));
        }
    }

    pub(super) fn on_callback_actions(&mut self, actions: Vec<offer::Do>) {
        let in_flow = self.callback.as_ref().is_some_and(|c| c.node.is_some());
        let says = actions.iter().any(|a| matches!(a, offer::Do::Say { .. }));
        for action in actions {
            match action {
                offer::Do::Say { prompts, listen } if in_flow => {
                    let length = self.length_of(&prompts);
                    self.play(QUESTION_TOKEN, prompts);
                    self.listen_for_callback_answer(listen, length);
                }
                offer::Do::SayAndHangUp(_) if in_flow => {
                    // The flow says what follows a booking.
                    if let Some((token, _)) = self.callback.take().and_then(|c| c.node) {
                        self.feed_later(Event::CallbackBooked(token, Ok(())));
                    }
                }
                offer::Do::Say { prompts, listen } => {
                    let length = self.say_then_music(prompts);
                    self.listen_for_callback_answer(listen, length);
                }
                offer::Do::Book(number) => self.book_callback(number),
                offer::Do::SayAndHangUp(prompts) => {
                    self.waiting = None;
                    if self.play(BOOKED_TOKEN, prompts).is_some() {
                        self.hang_up = true;
                    }
                }
            }
        }
        // A flow's node that ended silently (no answer, not stored) goes on
        // now; one that said why goes on when that is said.
        if in_flow && !says {
            self.callback_node_over();
        }
    }

    /// Awaits the caller's answer to the callback offer until `length`
    /// (what is said now) and the answer time are over, if `listen`.
    fn listen_for_callback_answer(&mut self, listen: bool, length: Duration) {
        if listen && self.callback.is_some() {
            let at = self.now + length + OFFER_ANSWER_TIME;
            self.timers.set(Timer::CallbackAnswer, at);
        } else {
            self.timers.stop(Timer::CallbackAnswer);
        }
    }

    /// Writes the request; "booked" plays only once it is stored.
    fn book_callback(&mut self, number: String) {
        let node_queue = self
            .callback
            .as_ref()
            .and_then(|c| c.node.as_ref())
            .map(|(_, q)| q.clone());
        let Some(queue) = node_queue.clone().or_else(|| self.queue_name.clone()) else {
            return;
        };
        self.timers.stop(Timer::CallbackAnswer);
        let now = self.wall();
        // From a flow's node, the callback's place is from now.
        let (priority, skills, queued_at) = match node_queue {
            Some(_) => (0, Vec::new(), now),
            None => (
                self.queue_priority,
                self.queue_skills.clone(),
                self.marks.queued_at.unwrap_or(now),
            ),
        };
        self.push(Do::SaveCallback(Box::new(Callback {
            id: 0,
            created_at: now,
            call_id: self.call_id.clone(),
            caller: self.caller.clone(),
            number,
            queue,
            priority,
            skills,
            queued_at,
            vars: serde_json::to_string(&self.run.public_vars()).unwrap_or_else(|_| "{}".into()),
            state: CallbackState::Pending,
            attempts: 0,
            next_attempt_at: None,
            ended_at: None,
            outcome: None,
        })));
    }

    pub(super) fn on_booked(&mut self, booked: Result<Callback, StoreError>) {
        let callback = match booked {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "the callback request was not stored; the caller waits on the line");
                if let Some(c) = self.callback.as_mut() {
                    let actions = c.offer.stored(false);
                    self.on_callback_actions(actions);
                }
                return;
            }
        };
        let offered = self
            .callback
            .as_ref()
            .is_some_and(|c| matches!(c.offer.step(), Step::Booking(_)));
        let from_node = self.callback.as_ref().is_some_and(|c| c.node.is_some());
        if offered && from_node {
            info!(callback = callback.id, number = %callback.number, queue = %callback.queue, "callback request stored");
            self.push(Do::Booked(Box::new(callback), None));
            if let Some(c) = self.callback.as_mut() {
                let actions = c.offer.stored(true);
                self.on_callback_actions(actions);
            }
            return;
        }
        if !offered || !self.queued {
            // An agent took the caller meanwhile (or they left): the
            // request written is withdrawn.
            info!(
                callback = callback.id,
                "the caller was taken meanwhile; the callback request is cancelled"
            );
            return self.push(Do::CancelCallback(callback.id));
        }
        info!(callback = callback.id, number = %callback.number, "callback request stored");
        // The callback takes over the caller's place in the queue; the
        // call no longer listens for offers (one that comes frees its agent).
        self.leave_queue();
        self.waiting = None;
        self.marks.queue_left = Some(StoreOutcome::Callback);
        let entry = Some(self.call_id.clone());
        self.push(Do::Booked(Box::new(callback), entry));
        if let Some(c) = self.callback.as_mut() {
            let actions = c.offer.stored(true);
            self.on_callback_actions(actions);
        }
    }
}
