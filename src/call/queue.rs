//! Joining and leaving a queue, as part of [`CallState`]: the ACD told,
//! the greeting, the announcements and messages the waiting machine says
//! when their time comes, and the way out when the caller is turned away.

use tracing::{info, warn};

use super::record;
use super::state::{CallState, Do};
use super::waiting::{Say, Waiting};
use crate::acd::{Input as AcdInput, Position};
use crate::events::Event as BusEvent;
use crate::flow::Event;

impl CallState {
    /// Puts the caller in `queue`: the ACD learns of them, they hear the
    /// greeting (and where they stand), then the music.
    pub(super) fn enqueue(&mut self, queue: String, priority: i64, skills: Vec<String>) {
        info!(%queue, priority, ?skills, "caller queued");
        self.push(Do::Publish(Box::new(BusEvent::QueueJoined {
            call_id: self.call_id.clone(),
            queue: queue.clone(),
            priority,
        })));
        self.queue_priority = priority;
        self.queue_skills = skills.clone();
        let now = self.wall();
        // The ACD keeps the time; only a node with somewhere to go after
        // it has a maximum wait.
        let max_wait = self
            .config
            .queues
            .get(&queue)
            .map(|q| q.max_wait)
            .filter(|w| !w.is_zero() && self.run.leaves_queue_on_timeout());
        self.marks.queue = Some(queue.clone());
        self.marks.queued_at = Some(now);
        self.marks.ivr_exit_at.get_or_insert(now);
        self.checkpoint();
        self.push(Do::Join(AcdInput::Join {
            call: self.call_id.clone(),
            queue: queue.clone(),
            priority,
            skills,
            caller: self.caller.clone(),
            max_wait,
            ahead: false,
        }));
        self.queued = true;
        let q = self.config.queues.get(&queue).cloned().unwrap_or_default();
        self.queue_name = Some(queue);
        let (waiting, first) = Waiting::join(q, self.now);
        self.waiting = Some(Box::new(waiting));
        if let Some(say) = first {
            self.say(say);
        }
    }

    /// Puts the caller back at the head of `queue` (their agent's
    /// connection was lost): the ACD places them first, and they hear the
    /// queue's music again, without its greeting.
    pub(super) fn rejoin_ahead(&mut self, queue: String) {
        self.push(Do::Join(AcdInput::Join {
            call: self.call_id.clone(),
            queue: queue.clone(),
            priority: self.queue_priority,
            skills: self.queue_skills.clone(),
            caller: self.caller.clone(),
            max_wait: None,
            ahead: true,
        }));
        self.queued = true;
        let q = self.config.queues.get(&queue).cloned().unwrap_or_default();
        let music = q.music.clone();
        self.queue_name = Some(queue);
        let (waiting, _greeting) = Waiting::join(q, self.now);
        self.waiting = Some(Box::new(waiting));
        self.play_then_loop(Vec::new(), music);
    }

    /// The ACD placed the waiting caller: the greeting and where they stand.
    pub(super) fn on_placed(&mut self, pos: Option<Position>) {
        let can_offer = self.can_offer_callback();
        let prompts = self.prompts.clone();
        let lengths = |p: &str| prompts.get(p).map(|p| p.duration());
        let now = self.now;
        if let Some(say) = self
            .waiting
            .as_mut()
            .and_then(|w| w.placed(pos.as_ref(), now, can_offer, &lengths))
        {
            self.say(say);
        }
    }

    /// What the waiting caller hears when its time comes.
    pub(super) fn on_waiting_timeout(&mut self, pos: Option<Position>) {
        let now = self.now;
        let due = self.waiting.as_ref().and_then(|w| w.poll_timeout());
        if due.is_none_or(|at| at > now) {
            return;
        }
        let pos = pos.filter(|_| self.queued);
        let (busy, can_offer) = (self.playlist.busy(), self.can_offer_callback());
        let prompts = self.prompts.clone();
        let lengths = |p: &str| prompts.get(p).map(|p| p.duration());
        let said = match self.waiting.as_mut() {
            Some(w) => w.on_timeout(now, pos.as_ref(), busy, can_offer, &lengths),
            None => Vec::new(),
        };
        for say in said {
            self.say(say);
        }
    }

    /// Plays what the waiting machine says, then the queue's music.
    fn say(&mut self, say: Say) {
        match say {
            Say::Play(prompts) => {
                let music = self.music();
                self.play_then_loop(prompts, music);
            }
            Say::OfferCallback(first) => self.offer_callback(first),
        }
    }

    /// Whether a callback may be offered to the waiting caller now.
    pub(super) fn can_offer_callback(&self) -> bool {
        self.callback.is_none()
            && self.queued
            && self.leg.is_none()
            && self.pending_leg.is_none()
            && !self.hang_up
    }

    /// Out of the queue (nobody staffs it, it is full, or the caller
    /// waited its maximum): on by the node's `on-timeout`, or, without one,
    /// the call ends (the queue's config asked for callers to be turned away).
    pub(super) fn queue_away(&mut self, why: crate::acd::Away) {
        info!(queue = ?self.queue_name, reason = %record::turned_away(why), "the caller leaves the queue");
        self.leave_queue();
        self.waiting = None;
        self.marks.queue_left = Some(record::turned_away(why));
        if self.run.leaves_queue_on_timeout() {
            self.stop_playing();
            self.feed(Event::QueueTimeout);
        } else {
            warn!(queue = ?self.queue_name, reason = %record::turned_away(why), "the caller was turned away from the queue and its node has no on-timeout; hanging up");
            self.hang_up = true;
        }
    }

    /// The call stops listening to the ACD.
    pub(super) fn leave_queue(&mut self) {
        if std::mem::take(&mut self.queued) {
            self.push(Do::StopListening);
        }
    }
}
