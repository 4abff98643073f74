//! What the call layer sees of the SIP layer: incoming calls, the events on
//! a call's dialog, and the handle through which a call task answers and
//! hangs up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// A new call offered by a trunk, for the call layer to take.
#[derive(Debug)]
pub struct IncomingCall {
    pub call_id: String,
    /// The caller's From tag: with the Call-ID, it names the dialog.
    pub from_tag: String,
    /// The caller's user part (From), e.g. a phone number.
    pub caller: String,
    pub caller_name: Option<String>,
    /// The dialled number: the Request-URI's user part.
    pub dialed: String,
    pub trunk: String,
    pub source: SocketAddr,
    /// The INVITE came over TLS: SDES keys may be exchanged.
    pub secure: bool,
    /// The caller asked for their identity to be withheld (`Privacy: id`,
    /// `user` or `header`, or an anonymous From): agents never see it.
    pub hidden: bool,
    /// The SDP offer, when the INVITE carried one.
    pub offer: Option<Vec<u8>>,
    pub dialog: DialogHandle,
    pub events: mpsc::Receiver<DialogEvent>,
    /// Set when an agent dialled a feature code (authenticated by digest):
    /// (the agent's id, the code dialled).
    pub feature: Option<(String, String)>,
}

/// What happens on a call's dialog, told to its call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// The caller acknowledged our 2xx; carries the SDP answer for a late offer.
    Ack { sdp: Option<Vec<u8>> },
    /// The caller gave up before the answer.
    Cancelled,
    /// The caller hung up.
    Bye,
    /// A re-INVITE (hold, resume, codec change): answer with [`DialogHandle::answer`].
    ReInvite { sdp: Option<Vec<u8>> },
    /// A SIP INFO (already answered 200), e.g. DTMF.
    Info { content_type: String, body: Vec<u8> },
    /// The 2xx was never acknowledged.
    NoAck,
    /// Our BYE was answered (or timed out): the dialog is gone.
    Ended,
    /// Our INVITE: the far end is ringing (180/183).
    Ringing,
    /// Our INVITE was answered (2xx; ACK sent), with the SDP answer; `peer`
    /// is the IP our requests in the dialog go to (where its RTP may come from).
    Answered {
        sdp: Option<Vec<u8>>,
        peer: std::net::IpAddr,
    },
    /// Our INVITE failed: a final error response, 408 when nothing answered.
    Rejected { status: u16 },
    /// The far end answered our in-dialog OPTIONS ([`DialogHandle::ping`]).
    Alive,
    /// It answered 481: it no longer knows the call.
    Lost,
    /// The far end asks us to transfer the call (REFER, already accepted
    /// with `202`): the Refer-To URI. Report how it went with
    /// [`DialogHandle::notify_refer`].
    Refer { refer_to: String },
    /// The session timer ran out (RFC 4028): no refresh came, or ours
    /// failed. Our BYE is on its way; [`DialogEvent::Ended`] follows.
    Expired,
}

/// A call we place: an INVITE with our SDP offer.
#[derive(Debug, Clone)]
pub struct OutboundCall {
    /// The Request-URI, e.g. `sip:operator@10.0.0.5:5060`.
    pub target: String,
    /// The user part of our From (whom the far end sees calling).
    pub from_user: String,
    pub from_display: Option<String>,
    pub sdp: Vec<u8>,
    /// Send the INVITE here rather than to the URI's host: a registered
    /// phone is reached where its REGISTER came from (NAT).
    pub via: Option<SocketAddr>,
    /// `via` is the peer of a TCP connection (a phone registered over it):
    /// the INVITE goes over that connection.
    pub over_tcp: bool,
    /// Extra headers (`X-Hotline-*`: what the IVR learned, for the agent).
    pub headers: Vec<(String, String)>,
    /// Answer a `401`/`407` challenge with this account (a trunk's).
    pub auth: Option<Account>,
    /// SDES lines to offer (SRTP), and whether as `RTP/SAVP`: what the
    /// target's media encryption rule asks for.
    pub crypto: Vec<crate::sdp::crypto::Crypto>,
    pub savp: bool,
    /// The far end is a browser phone (registered over WebSocket): the
    /// offer is a WebRTC one (ICE, DTLS-SRTP), made by the leg.
    pub webrtc: bool,
}

/// A SIP account Hotline authenticates with (digest).
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.username)
            .field("password", &"<secret>")
            .finish()
    }
}

/// Why a call could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("`{0}` is not a SIP URI")]
    BadUri(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("the SIP layer has stopped")]
    Stopped,
}

/// Places outbound calls; cheap to clone.
#[derive(Debug, Clone)]
pub struct Dialer {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) ids: Arc<std::sync::atomic::AtomicU64>,
    pub(super) resolver: super::dns::Resolver,
    /// Trunks whose proxy's name does not resolve now.
    pub(super) unresolved: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Dialer {
    /// A new version of the config: the core takes agents' secrets,
    /// trunks and limits from it; dialogs in progress go on as they are.
    pub async fn reconfigure(&self, config: Arc<crate::config::Config>) {
        let _ = self.commands.send(Command::Reconfigure(config)).await;
    }

    /// Whether the SIP core's loop answers (for the service watchdog).
    pub async fn alive(&self) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands.send(Command::Alive(tx)).await.is_ok() && rx.await.is_ok()
    }

    /// The trunk's proxy name did not resolve at its last try: calls over
    /// it would fail, so callbacks wait rather than spend an attempt.
    pub fn trunk_unresolved(&self, trunk: &str) -> bool {
        self.unresolved
            .lock()
            .map(|set| set.contains(trunk))
            .unwrap_or(false)
    }

    /// Sends an INVITE over UDP to the URI's host, located by RFC 3263
    /// (NAPTR, SRV, A/AAAA; an IP literal as it is): when the first
    /// address is silent or answers `503`, the next. Events arrive on the
    /// returned receiver: `Ringing`, then `Answered` or `Rejected`, later
    /// `Bye`.
    pub async fn call(
        &self,
        call: OutboundCall,
    ) -> Result<(DialogHandle, mpsc::Receiver<DialogEvent>), DialError> {
        let uri = super::header::SipUri::parse(&call.target)
            .filter(|u| u.scheme.eq_ignore_ascii_case("sip"))
            .ok_or_else(|| DialError::BadUri(call.target.clone()))?;
        let mut tls_domain = None;
        let addrs = match call.via {
            Some(addr) => vec![addr],
            None => match self.resolver.locate(&call.target).await {
                Ok(located) => {
                    if located.transport == super::Transport::Tls {
                        tls_domain = Some(uri.host.clone());
                    }
                    located.addrs
                }
                Err(super::dns::LocateError::BadUri(u)) => return Err(DialError::BadUri(u)),
                Err(super::dns::LocateError::NoAddress { host, reason }) => {
                    tracing::warn!(%host, %reason, target = %uri.host, "cannot resolve where to send the call");
                    metrics::counter!("hotline_dns_failures_total", "what" => "call").increment(1);
                    return Err(DialError::Resolve { host, reason });
                }
            },
        };
        let id = DialogId(self.ids.fetch_add(1, Ordering::SeqCst) + 1);
        let (tx, rx) = mpsc::channel(DIALOG_EVENTS);
        self.commands
            .send(Command::Invite {
                dialog: id,
                call: Box::new(call),
                addrs,
                tls_domain,
                events: tx,
            })
            .await
            .map_err(|_| DialError::Stopped)?;
        Ok((
            DialogHandle {
                id,
                commands: self.commands.clone(),
            },
            rx,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialogId(pub(super) u64);

#[derive(Debug)]
pub(super) enum Command {
    /// Answer the pending INVITE or re-INVITE.
    Respond {
        dialog: DialogId,
        status: u16,
        sdp: Option<Vec<u8>>,
    },
    /// End the call: BYE when confirmed, a final error response when early.
    Hangup { dialog: DialogId },
    /// The call task is gone.
    Release { dialog: DialogId },
    /// Send an in-dialog OPTIONS (is the far end still there?).
    Ping { dialog: DialogId },
    /// Tell the far end how its REFER went (NOTIFY with a sipfrag).
    NotifyRefer { dialog: DialogId, status: u16 },
    /// Place a call.
    Invite {
        dialog: DialogId,
        call: Box<OutboundCall>,
        /// Where to send it, best first (RFC 3263); never empty.
        addrs: Vec<SocketAddr>,
        /// Over TLS, checking the certificate against this SIP domain.
        tls_domain: Option<String>,
        events: mpsc::Sender<DialogEvent>,
    },
    /// A trunk's proxy (as the config named it when the search began) was
    /// (re)located: its REGISTERs and OPTIONS go here.
    TrunkLocated {
        trunk: String,
        proxy: String,
        addr: SocketAddr,
    },
    /// A new version of the config.
    Reconfigure(Arc<crate::config::Config>),
    /// Answer when this is reached (the core's loop is turning).
    Alive(tokio::sync::oneshot::Sender<()>),
    /// A dialog's next hop (a host name in its Contact or Record-Route)
    /// was located.
    HopLocated {
        dialog: DialogId,
        uri: String,
        addr: SocketAddr,
    },
}

/// How many events a dialog holds for its call. The SIP core never waits
/// on a call: one that has not read this many is stuck, and what comes
/// beyond is dropped and counted ([`deliver`]).
pub const DIALOG_EVENTS: usize = 64;

/// Hands `ev` to the dialog's call without waiting; a call that stopped
/// reading loses it (counted in `hotline_sip_dialog_events_dropped_total`
/// and logged); one that is gone does not care.
pub(super) fn deliver(events: &mpsc::Sender<DialogEvent>, ev: DialogEvent) {
    if let Err(mpsc::error::TrySendError::Full(ev)) = events.try_send(ev) {
        metrics::counter!("hotline_sip_dialog_events_dropped_total").increment(1);
        tracing::warn!(event = ?ev, "a call stopped reading its dialog's events; dropped");
    }
}

/// How many commands the SIP core holds. Calls wait while it is full (a
/// response, a BYE or an INVITE is never dropped); the core never waits on
/// a call (see [`DIALOG_EVENTS`]).
pub const CORE_COMMANDS: usize = 8192;

/// The call task's side of its dialog.
#[derive(Debug)]
pub struct DialogHandle {
    pub(super) id: DialogId,
    pub(super) commands: mpsc::Sender<Command>,
}

impl DialogHandle {
    /// Sends a provisional or final response to the pending (re-)INVITE.
    pub async fn respond(&self, status: u16) {
        self.send(Command::Respond {
            dialog: self.id,
            status,
            sdp: None,
        })
        .await;
    }

    /// Answers the pending (re-)INVITE with `200 OK` and this SDP.
    pub async fn answer(&self, sdp: Vec<u8>) {
        self.send(Command::Respond {
            dialog: self.id,
            status: 200,
            sdp: Some(sdp),
        })
        .await;
    }

    /// Hangs up: BYE once answered; before, `480` to a call we received and
    /// CANCEL for one we placed.
    pub async fn hangup(&self) {
        self.send(Command::Hangup { dialog: self.id }).await;
    }

    /// Asks the far end whether it still has the call (in-dialog OPTIONS).
    /// `Alive` or `Lost` follows, or nothing if it is gone for good: the
    /// caller decides how long to wait.
    pub async fn ping(&self) {
        self.send(Command::Ping { dialog: self.id }).await;
    }

    /// Reports the outcome of a REFER this dialog received: `status` as the
    /// final sipfrag (`200`: transferred; `403`, `503`: not), which ends the
    /// implicit subscription (RFC 3515).
    pub async fn notify_refer(&self, status: u16) {
        self.send(Command::NotifyRefer {
            dialog: self.id,
            status,
        })
        .await;
    }

    /// Waits while the core's inbox is full; a stopped core takes nothing.
    async fn send(&self, cmd: Command) {
        let _ = self.commands.send(cmd).await;
    }
}

impl Drop for DialogHandle {
    fn drop(&mut self) {
        let release = Command::Release { dialog: self.id };
        if let Err(mpsc::error::TrySendError::Full(release)) = self.commands.try_send(release) {
            // The core is behind: the dialog is released once it has room
            // (after everything this handle sent, which went first).
            let commands = self.commands.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = commands.send(release).await;
                });
            }
        }
    }
}

/// Shared switches and counters of the running SIP layer.
#[derive(Debug, Default)]
pub struct SipStatus {
    pub(super) draining: AtomicBool,
    pub(super) dialogs: AtomicUsize,
}

impl SipStatus {
    /// Refuse new calls with `503` from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
    pub fn dialogs(&self) -> usize {
        self.dialogs.load(Ordering::SeqCst)
    }
}

/// An agent's registered contacts, after they changed (REGISTER, expiry,
/// a phone that stopped answering). Empty: the agent is unreachable.
#[derive(Debug, Clone)]
pub struct Registration {
    pub agent: String,
    pub contacts: Vec<super::registrar::Binding>,
}

/// The running SIP layer, as seen from outside.
pub struct SipLayer {
    pub incoming: mpsc::Receiver<IncomingCall>,
    pub dialer: Dialer,
    pub registrations: mpsc::UnboundedReceiver<Registration>,
    pub status: Arc<SipStatus>,
    /// Where SIP is taken over UDP and TCP (one address per family).
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    /// Where the HTTP listener hands SIP over WebSocket connections.
    pub websockets: super::transport::WebSocketDoor,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(room: usize) -> (DialogHandle, mpsc::Receiver<Command>) {
        let (commands, rx) = mpsc::channel(room);
        (
            DialogHandle {
                id: DialogId(1),
                commands,
            },
            rx,
        )
    }

    #[tokio::test]
    async fn a_call_waits_while_the_core_is_full_and_nothing_it_sends_is_lost_or_reordered() {
        let (dialog, mut core) = handle(1);
        dialog.respond(180).await;
        // Full: the answer waits for room rather than being dropped.
        {
            let answer = dialog.answer(b"v=0".to_vec());
            tokio::pin!(answer);
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(50), &mut answer)
                    .await
                    .is_err(),
                "the sender waits"
            );
            assert!(matches!(
                core.recv().await,
                Some(Command::Respond { status: 180, .. })
            ));
            answer.await;
        }
        // Dropped while the core is full: released once it has room, last.
        drop(dialog);
        assert!(matches!(
            core.recv().await,
            Some(Command::Respond { status: 200, .. })
        ));
        assert!(matches!(core.recv().await, Some(Command::Release { .. })));
    }

    #[test]
    fn the_core_never_waits_on_a_call_that_stopped_reading() {
        let (tx, mut rx) = mpsc::channel(DIALOG_EVENTS);
        for _ in 0..DIALOG_EVENTS + 5 {
            deliver(&tx, DialogEvent::Alive);
        }
        let mut got = 0;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, DIALOG_EVENTS);
        deliver(&tx, DialogEvent::Bye);
        assert!(matches!(rx.try_recv(), Ok(DialogEvent::Bye)));
    }
}
