//! The second leg of a call: the INVITE Hotline places to a transfer target
//! (later: to an agent), its media channel on the same media clock as the
//! caller's, and the bridge between the two once it answers.

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::media::{MediaChannel, MediaEvent};
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
    /// Set once the INVITE is out (the target's name is resolved first).
    pub dialog: Option<DialogHandle>,
    events: Option<mpsc::UnboundedReceiver<DialogEvent>>,
    dialed: Option<oneshot::Receiver<Dialed>>,
    /// Until the answer: when to give up ringing.
    pub deadline: Option<Instant>,
    pub bridged: bool,
}

/// What happened on the leg.
pub enum LegEvent {
    Dialog(DialogEvent),
    Media(MediaEvent),
    /// The INVITE could not be sent.
    Failed(String),
    /// Ringing too long.
    NoAnswer,
}

impl Leg {
    pub fn new(
        purpose: Purpose,
        target: String,
        media: MediaChannel,
        dialed: oneshot::Receiver<Dialed>,
        ring_timeout: std::time::Duration,
    ) -> Leg {
        Leg {
            purpose,
            target,
            media,
            dialog: None,
            events: None,
            dialed: Some(dialed),
            deadline: Some(Instant::now() + ring_timeout),
            bridged: false,
        }
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
            let events = self.events.as_mut();
            return tokio::select! {
                ev = recv_opt(events) => match ev {
                    Some(ev) => LegEvent::Dialog(ev),
                    None => LegEvent::Failed("the SIP layer stopped".into()),
                },
                Some(ev) = self.media.events.recv() => LegEvent::Media(ev),
                _ = sleep_until_opt(deadline) => LegEvent::NoAnswer,
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
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
