//! What a call's record is made of: when its stages began, how it ended
//! (a typed [`Outcome`]), and the record as written at the answer, at each
//! stage (a checkpoint a crash leaves behind) and at the end. Pure: times
//! are arguments.

use std::time::Duration;

use jiff::Timestamp;

use super::live::LegQuality;
use crate::acd::Away;
use crate::flow;
use crate::store::{Cdr, Outcome};

/// How a call ended, for the log line and who ended it in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    CallerHungUp,
    WeHungUp,
    Cancelled,
    Refused,
    NoAck,
    /// A leg's peer stopped sending RTP without a BYE (`calls.media-timeout`).
    MediaTimeout,
    /// The session timer (RFC 4028) ran out: no refresh came.
    SessionExpired,
}

/// When a call's stages began, for its record.
#[derive(Debug, Default)]
pub struct Marks {
    pub answered_at: Option<Timestamp>,
    pub ivr_exit_at: Option<Timestamp>,
    pub queue: Option<String>,
    pub queued_at: Option<Timestamp>,
    pub offered_at: Option<Timestamp>,
    pub agent: Option<String>,
    pub bridged_at: Option<Timestamp>,
    /// Conversation recordings written, in order.
    pub recordings: Vec<String>,
    /// The flow and node the call left for the survey after its agent.
    pub before_survey: Option<(String, String)>,
    /// Time on hold so far (a hold still going on is added at the end).
    pub held: Duration,
    /// Why the caller left the queue without an agent (its maximum wait,
    /// nobody staffing it, a callback taking their place).
    pub queue_left: Option<Outcome>,
}

impl Marks {
    /// Writes when the IVR, queue and agent stages began into `cdr`.
    fn stamp_stages(&self, cdr: &mut Cdr) {
        cdr.ivr_exit_at = self.ivr_exit_at;
        cdr.queue = self.queue.clone();
        cdr.queued_at = self.queued_at;
        cdr.offered_at = self.offered_at;
        cdr.agent = self.agent.clone();
        cdr.bridged_at = self.bridged_at;
    }

    /// The record's outcome, from how the flow ended and what happened
    /// in the queue.
    pub fn outcome(&self, flow: Option<&flow::Outcome>) -> Outcome {
        use flow::Outcome as F;
        match (flow, self.bridged_at, &self.queue_left) {
            _ if self.before_survey.is_some() => Outcome::Agent,
            (Some(F::Queued { .. }), Some(_), _) => Outcome::Agent,
            (_, None, Some(left)) => left.clone(),
            (Some(F::Queued { .. }), None, _) => Outcome::Abandoned,
            (Some(F::Transferred { .. }), _, _) => Outcome::Transferred,
            (Some(F::Ended), _, _) => Outcome::Ivr,
            (Some(F::Failed { .. }), _, _) => Outcome::Failed,
            (Some(F::CallerHungUp), _, _) | (None, _, _) => Outcome::IvrAbandoned,
        }
    }

    /// The record as it stands while the call goes on (`now` is the last
    /// moment it was known to go on).
    pub fn checkpoint(&self, base: &Cdr, node: &str, now: Timestamp) -> Cdr {
        let mut cdr = base.clone();
        self.stamp_stages(&mut cdr);
        cdr.exit_node = Some(node.to_owned());
        cdr.ended_at = Some(now);
        cdr
    }

    /// Fills what the call's stages say into its final record: `run` is the
    /// flow run it ended in, `wrap_up` its queue's.
    pub fn fill(&self, cdr: &mut Cdr, run: &flow::Run, wrap_up: Duration) {
        if self.bridged_at.is_some() {
            cdr.hold_ms = Some(self.held.as_millis() as i64);
        }
        if !self.recordings.is_empty() {
            cdr.recording = Some(self.recordings.join("\n"));
        }
        cdr.answered_at = self.answered_at;
        cdr.flow = Some(run.flow_name().to_owned());
        cdr.exit_node = Some(run.node_name().to_owned());
        if let Some((flow, node)) = &self.before_survey {
            cdr.flow = Some(flow.clone());
            cdr.exit_node = Some(node.clone());
        }
        self.stamp_stages(cdr);
        cdr.vars = serde_json::to_string(&run.public_vars()).unwrap_or_else(|_| "{}".into());
        cdr.outcome = self.outcome(run.outcome());
        if cdr.outcome == Outcome::Agent {
            cdr.wrap_up_ms = Some(wrap_up.as_millis() as i64);
        }
    }
}

/// Writes each leg's quality into the record, with the worst MOS of all
/// legs and of the agent legs.
pub fn quality(cdr: &mut Cdr, legs: &[LegQuality]) {
    if let Some((json, mos, agent_mos)) = crate::media::quality::summary(legs) {
        (cdr.quality, cdr.mos, cdr.agent_mos) = (Some(json), mos, agent_mos);
    }
}

/// A queued caller reached an agent at `at`: counted for the queue's
/// service level (`hotline_queue_answered_total`, and
/// `hotline_queue_answered_in_time_total` when within `target`) as it
/// happens, not when the conversation ends.
pub fn observe_answered(marks: &Marks, target: Duration, at: Timestamp) {
    let (Some(queue), Some(queued)) = (&marks.queue, marks.queued_at) else {
        return;
    };
    metrics::counter!("hotline_queue_answered_total", "queue" => queue.clone()).increment(1);
    let waited = at.duration_since(queued);
    if waited <= jiff::SignedDuration::try_from(target).unwrap_or(jiff::SignedDuration::MAX) {
        metrics::counter!("hotline_queue_answered_in_time_total", "queue" => queue.clone())
            .increment(1);
    }
}

/// A call that was queued ended without an agent: counted by how it left
/// (`hotline_queue_unanswered_total{queue, outcome}`: abandoned, timeout,
/// callback, …).
pub fn observe_unanswered(cdr: &Cdr) {
    let Some(queue) = cdr.queue.as_ref().filter(|_| cdr.queued_at.is_some()) else {
        return;
    };
    if cdr.outcome == Outcome::Agent {
        return;
    }
    metrics::counter!(
        "hotline_queue_unanswered_total",
        "queue" => queue.clone(),
        "outcome" => cdr.outcome.as_str().to_owned()
    )
    .increment(1);
}

/// The outcome of a caller turned away from a queue.
pub fn turned_away(why: Away) -> Outcome {
    match why {
        Away::Empty => Outcome::QueueEmpty,
        Away::Full => Outcome::QueueFull,
        Away::Timeout => Outcome::QueueTimeout,
    }
}

/// Ends the record at `end`: who ended it, the wait and talk times.
pub fn finish(cdr: &mut Cdr, ending: Ending, end: Timestamp) {
    cdr.ended_at = Some(end);
    cdr.ended_by = match ending {
        Ending::CallerHungUp | Ending::Cancelled => "caller",
        Ending::WeHungUp | Ending::Refused | Ending::NoAck => "engine",
        Ending::MediaTimeout => "media-timeout",
        Ending::SessionExpired => "session-expired",
    }
    .into();
    let ms = |a: Timestamp, b: Timestamp| b.duration_since(a).as_millis() as i64;
    if let Some(q) = cdr.queued_at {
        cdr.wait_ms = Some(ms(q, cdr.bridged_at.unwrap_or(end)));
    }
    if let Some(b) = cdr.bridged_at {
        cdr.talk_ms = Some(ms(b, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_795_420_800 + s).unwrap()
    }

    fn queued() -> flow::Outcome {
        flow::Outcome::Queued {
            queue: "support".into(),
        }
    }

    #[test]
    fn the_outcome_follows_the_flow_and_the_queue() {
        let mut m = Marks::default();
        assert_eq!(m.outcome(None), Outcome::IvrAbandoned);
        assert_eq!(m.outcome(Some(&flow::Outcome::Ended)), Outcome::Ivr);
        assert_eq!(m.outcome(Some(&queued())), Outcome::Abandoned);
        m.queue_left = Some(turned_away(Away::Timeout));
        assert_eq!(m.outcome(Some(&queued())), Outcome::QueueTimeout);
        m.queue_left = Some(Outcome::Callback);
        assert_eq!(m.outcome(Some(&queued())), Outcome::Callback);
        // Bridged to an agent: the agent's, even after a survey flow.
        m.queue_left = None;
        m.bridged_at = Some(at(60));
        assert_eq!(m.outcome(Some(&queued())), Outcome::Agent);
        m.before_survey = Some(("main".into(), "q".into()));
        assert_eq!(m.outcome(Some(&flow::Outcome::Ended)), Outcome::Agent);
    }

    #[test]
    fn the_wait_runs_from_the_queue_to_the_bridge_and_the_talk_to_the_end() {
        let mut cdr = Cdr {
            queued_at: Some(at(10)),
            bridged_at: Some(at(70)),
            ..Cdr::default()
        };
        finish(&mut cdr, Ending::CallerHungUp, at(190));
        assert_eq!(
            (cdr.wait_ms, cdr.talk_ms, cdr.ended_by.as_str()),
            (Some(60_000), Some(120_000), "caller")
        );
        // Never bridged: the wait runs to the end.
        let mut cdr = Cdr {
            queued_at: Some(at(10)),
            ..Cdr::default()
        };
        finish(&mut cdr, Ending::WeHungUp, at(40));
        assert_eq!(
            (cdr.wait_ms, cdr.talk_ms, cdr.ended_by.as_str()),
            (Some(30_000), None, "engine")
        );
    }

    #[test]
    fn the_record_keeps_each_legs_figures_and_the_worst_mos() {
        let leg = |leg, who: Option<&str>, mos| LegQuality {
            leg,
            who: who.map(str::to_owned),
            figures: crate::media::Quality {
                mos,
                ..Default::default()
            },
        };
        let mut cdr = Cdr::default();
        quality(&mut cdr, &[]);
        assert_eq!(
            (cdr.quality.is_none(), cdr.mos, cdr.agent_mos),
            (true, None, None)
        );
        quality(
            &mut cdr,
            &[
                leg("caller", None, Some(3.2)),
                leg("agent", Some("alice"), Some(4.4)),
                leg("agent", Some("bob"), Some(3.9)),
                leg("transfer", Some("sip:x@y"), None),
            ],
        );
        assert_eq!((cdr.mos, cdr.agent_mos), (Some(3.2), Some(3.9)));
        let q = cdr.quality.unwrap();
        assert_eq!(q[1]["leg"], "agent");
        assert_eq!(q[1]["who"], "alice");
        assert_eq!(q[1]["mos"], 4.4);
        assert!(q[3].get("mos").is_none());
    }
}
