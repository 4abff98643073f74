//! What goes into a call's state machine ([`Input`]) and what comes out
//! ([`Do`], with what it asks of a media channel and of the second leg).

use std::net::IpAddr;
use std::time::Duration;

use super::recording;
use crate::acd::actor::ToCall;
use crate::acd::{Input as AcdInput, Position};
use crate::events::{Event as BusEvent, PastCall};
use crate::flow::{Event, WebhookRequest};
use crate::leg::{self, playlist::PlayOp};
use crate::media::{Digit, MediaEvent, StreamConfig};
use crate::sdp::{self, Negotiated};
use crate::sip::{DialogEvent, OutboundCall};
use crate::store::{Callback, Cdr, StoreError, SurveyAnswer};

/// What the call is told.
#[derive(Debug)]
pub enum Input {
    /// On the caller's dialog.
    Dialog(DialogEvent),
    /// On the caller's media channel (digits, prompts' ends, a recording).
    Media(MediaEvent),
    /// The result of work done elsewhere for the flow (a webhook, a saved
    /// recording or survey answer).
    Flow(Event),
    /// The media for the second leg asked for with [`Do::OpenLeg`] is
    /// open, or could not be opened (why).
    LegOpened,
    LegNoMedia(String),
    /// The second leg answered: the agent it rang, its SDP, where it was
    /// sent and where its SIP came from.
    LegAnswered {
        agent: Option<String>,
        sdp: Option<Vec<u8>>,
        target: Option<String>,
        peer: Option<IpAddr>,
    },
    /// Anything else on the second leg.
    Leg(leg::LegEvent),
    /// From the ACD while queued: an offer to agents, or away.
    Offer(ToCall),
    /// Where the caller who just joined stands.
    Placed(Option<Position>),
    /// The caller's earlier calls (for the screen pop).
    History(Vec<PastCall>),
    /// How writing the callback request went.
    Booked(Result<Callback, StoreError>),
    /// The operations API hangs the call up.
    Kill,
    /// The operations API pauses (or resumes) the call's recording, for
    /// the caller named.
    PauseRecording {
        pause: bool,
        by: String,
    },
    /// The engine's drain is over: hang up now.
    Shutdown,
    /// A deadline passed ([`CallState::poll_timeout`]); where the caller
    /// stands now, if queued.
    Timeout {
        position: Option<Position>,
    },
}

/// What the call asks for, in order.
#[derive(Debug)]
pub enum Do {
    /// A final response to the caller's INVITE or re-INVITE.
    Respond(u16),
    /// A 2xx with this SDP (to the INVITE or a re-INVITE).
    Answer(Vec<u8>),
    /// NOTIFY the outcome of a REFER on the caller's dialog.
    NotifyRefer(u16),
    /// BYE (or CANCEL's answer) on the caller's dialog; the call is over.
    HangUp,
    /// On the caller's media channel.
    Media(MediaDo),
    /// Open a media channel beside the caller's for a second leg; answer
    /// with [`Input::LegOpened`] or [`Input::LegNoMedia`].
    OpenLeg,
    /// Place the second leg on the media just opened: each call (its SDP
    /// is the leg's offer) rings one phone (of the agent named).
    Dial {
        purpose: leg::Purpose,
        target: String,
        ring_timeout: Duration,
        calls: Vec<(OutboundCall, Option<String>)>,
        /// Agents whose browser phones ring, with the caller's codec
        /// (sent to them as it is) and the screen pop for their pages.
        browsers: Vec<String>,
        codec: sdp::Codec,
        pop: serde_json::Value,
    },
    /// On the second leg.
    Leg(LegDo),
    /// Bridge the caller's media and the leg's.
    Bridge,
    /// Drop the second leg (CANCEL if it rings, BYE if answered).
    DropLeg,
    /// Tell the bus (and the list of calls in progress).
    Publish(Box<BusEvent>),
    /// POST this to a URL (a screen pop).
    Post {
        url: String,
        what: &'static str,
        body: serde_json::Value,
    },
    /// The record as it stands, into the store (a checkpoint).
    Checkpoint(Box<Cdr>),
    Webhook {
        token: u64,
        request: WebhookRequest,
    },
    SaveSurvey {
        token: u64,
        answer: SurveyAnswer,
    },
    /// The caller's recording (a message) is in: save it, then tell the
    /// flow `Recorded`.
    SaveRecording {
        active: recording::Active,
        samples: Vec<i16>,
        flow: String,
    },
    /// Join a queue: the ACD links the call ([`Input::Offer`], [`Input::Placed`]).
    Join(AcdInput),
    /// The call no longer listens to the ACD (an offer that comes frees its agent).
    StopListening,
    Acd(AcdInput),
    /// Write the callback request; answer with [`Input::Booked`].
    SaveCallback(Box<Callback>),
    /// Withdraw a request written meanwhile.
    CancelCallback(i64),
    /// Hand a stored request to the callback service (and the queue entry it takes over).
    Booked(Box<Callback>, Option<String>),
}

/// On a media channel.
#[derive(Debug)]
pub enum MediaDo {
    Configure(StreamConfig),
    Play(PlayOp),
    /// Keep the caller's audio (at most `max`); `Recorded` carries `token`.
    Record {
        token: u64,
        max: Duration,
    },
    StopRecord,
    /// Record the bridged conversation (the call's `n`th recording).
    RecordConversation {
        token: u64,
        n: usize,
    },
    StopConversation,
    /// While `true`, the conversation's recording gets silence in place of
    /// the call's audio (PCI pause).
    PauseConversation(bool),
    SendDigit(Digit),
    Unbridge,
}

/// On the second leg.
#[derive(Debug)]
pub enum LegDo {
    Configure(StreamConfig),
    /// It answered and is bridged: stop ringing, check it stays alive.
    Connected,
    /// Answer its re-INVITE with this (our SDP on the leg's session).
    Answer(Negotiated),
    /// Answer its re-INVITE without SDP with an offer.
    Offer,
    /// A browser phone's re-INVITE (WebRTC SDP): its endpoint answers.
    BrowserReoffer(Vec<u8>),
    Respond(u16),
    NotifyRefer(u16),
    SendDigit(Digit),
    Unbridge,
}
