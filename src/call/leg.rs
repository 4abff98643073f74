//! The second leg of a call: the INVITE Hotline places to a transfer target
//! or to an agent, its media channel on the same media clock as the
//! caller's, and the bridge between the two once it answers.

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::sleep_until_opt;
use crate::media::{MediaChannel, MediaEvent};
use crate::sdp::Origin;
use crate::sip::{DialError, DialogEvent, DialogHandle};

/// How long a transfer target may ring before the caller's flow moves on.
pub const RING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type Dialed = Result<(DialogHandle, mpsc::UnboundedReceiver<DialogEvent>), DialError>;

/// Why the leg was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A transfer node; the flow's token for `Event::Transferred`.
    Transfer { token: u64 },
    /// An agent offered the caller by the ACD.
    Agent { agent: String },
}

pub struct Leg {
    pub purpose: Purpose,
    pub target: String,
    pub media: MediaChannel,
    /// Our SDP session on this leg (its version grows with each answer).
    pub origin: Origin,
    /// Since when the far end holds the call (re-INVITE sendonly/inactive).
    pub held_since: Option<Instant>,
    /// Set once the INVITE is out (the target's name is resolved first).
    pub dialog: Option<DialogHandle>,
    events: Option<mpsc::UnboundedReceiver<DialogEvent>>,
    dialed: Option<oneshot::Receiver<Dialed>>,
    /// Until the answer: when to give up ringing.
    pub deadline: Option<Instant>,
    pub bridged: bool,
    /// Once bridged: when to ask the leg whether it still has the call, and
    /// by when it must have answered.
    check: Option<(std::time::Duration, std::time::Duration)>,
    check_at: Option<Instant>,
    check_deadline: Option<Instant>,
}

/// What happened on the leg.
pub enum LegEvent {
    Dialog(DialogEvent),
    Media(MediaEvent),
    /// The INVITE could not be sent.
    Failed(String),
    /// Ringing too long.
    NoAnswer,
    /// Bridged, but the leg stopped answering checks (its phone died
    /// without a BYE) or no longer knows the call.
    Gone,
}

impl Leg {
    pub fn new(
        purpose: Purpose,
        target: String,
        media: MediaChannel,
        origin: Origin,
        dialed: oneshot::Receiver<Dialed>,
        ring_timeout: std::time::Duration,
    ) -> Leg {
        Leg {
            purpose,
            target,
            media,
            origin,
            held_since: None,
            dialog: None,
            events: None,
            dialed: Some(dialed),
            deadline: Some(Instant::now() + ring_timeout),
            bridged: false,
            check: None,
            check_at: None,
            check_deadline: None,
        }
    }

    /// Checks every `every` that the leg still has the call, each answer
    /// due within `timeout` (zero `every`: never).
    pub fn start_checks(&mut self, every: std::time::Duration, timeout: std::time::Duration) {
        if every.is_zero() {
            return;
        }
        self.check = Some((every, timeout));
        self.check_at = Some(Instant::now() + every);
    }

    /// The next thing that happens on the leg.
    pub async fn next(&mut self) -> LegEvent {
        loop {
            if let Some(rx) = self.dialed.as_mut() {
                let deadline = self.deadline;
                tokio::select! {
                    res = rx => {
                        self.dialed = None;
                        match res {
                            Ok(Ok((dialog, events))) => {
                                self.dialog = Some(dialog);
                                self.events = Some(events);
                                continue;
                            }
                            Ok(Err(e)) => return LegEvent::Failed(e.to_string()),
                            Err(_) => return LegEvent::Failed("the dialer stopped".into()),
                        }
                    }
                    _ = sleep_until_opt(deadline) => return LegEvent::NoAnswer,
                }
            }
            let deadline = self.deadline;
            let (check_at, check_deadline) = (self.check_at, self.check_deadline);
            let events = self.events.as_mut();
            return tokio::select! {
                ev = recv_opt(events) => match ev {
                    Some(DialogEvent::Alive) => {
                        self.check_deadline = None;
                        if let Some((every, _)) = self.check {
                            self.check_at = Some(Instant::now() + every);
                        }
                        continue;
                    }
                    Some(DialogEvent::Lost) => LegEvent::Gone,
                    Some(ev) => LegEvent::Dialog(ev),
                    None => LegEvent::Failed("the SIP layer stopped".into()),
                },
                Some(ev) = self.media.events.recv() => LegEvent::Media(ev),
                _ = sleep_until_opt(deadline) => LegEvent::NoAnswer,
                _ = sleep_until_opt(check_at) => {
                    self.check_at = None;
                    if let (Some(dialog), Some((_, timeout))) = (&self.dialog, self.check) {
                        dialog.ping();
                        self.check_deadline = Some(Instant::now() + timeout);
                    }
                    continue;
                }
                _ = sleep_until_opt(check_deadline) => LegEvent::Gone,
            };
        }
    }
}

async fn recv_opt(rx: Option<&mut mpsc::UnboundedReceiver<DialogEvent>>) -> Option<DialogEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits for the leg's next event, or forever when there is no leg.
pub async fn next_of(leg: Option<&mut Leg>) -> LegEvent {
    match leg {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}
