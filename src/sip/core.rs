//! The SIP core: one task that owns every transaction and dialog. Transports
//! feed it raw messages, call tasks send it commands through their
//! [`DialogHandle`], and it tells each call what happened on its dialog.
//!
//! Here: the task's loop and the routing of what comes in, dialogs' ends
//! and registrations. Its sides have modules of their own: `start.rs`
//! (listeners and the task), `inbound.rs` (INVITEs we answer, CANCEL, ACK,
//! in-dialog requests), `outbound.rs` (INVITEs we place), `refresh.rs`
//! (session timers), `locate.rs` (RFC 3263), `trunks.rs`. It is still one
//! task with its sockets, not yet a pure core and a thin driver as the
//! call has.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::dialog::{Dialog, DialogState, PendingInvite};
use super::handle::{
    deliver, Command, Dialer, DialogEvent, DialogHandle, DialogId, IncomingCall, OutboundCall,
    Registration, SipLayer, SipStatus,
};
use super::header::{tag_of, NameAddr, SipUri, Via};
use super::message::{self, Headers, Message, Method, Request, Response};
use super::registrar::{Binding, Registrar};
use super::reply;
use super::session_timer::{self, Answer as TimerAnswer, Due, Timer};
use super::transaction::{
    RequestMatch, ServerKey, Target, Transactions, Transmit, Transport, TxEvent, TxId,
};
use super::transport::{self, Inbound};
use super::trunk_client::{Kind as TrunkKind, TrunkClient};
use locate::locate_trunk;
use refresh::{allows_update, Refresh};

mod inbound;
mod locate;
mod outbound;
mod refresh;
mod start;
mod trunks;

use crate::config::Config;
pub use start::start;

/// Why the SIP layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen for SIP on {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("SIP over TLS: {0}")]
    Tls(String),
    #[error("sip.listen: {0}")]
    Listen(String),
}

struct DialogSlot {
    dialog: Dialog,
    events: mpsc::Sender<DialogEvent>,
    released: bool,
    /// The trunk (or `agents`) an incoming call was admitted over: it
    /// counts against the caps until the dialog is forgotten.
    admitted: Option<String>,
    /// The session timer (RFC 4028), while the call has one.
    timer: Option<Timer>,
    /// How we answer the peer's refresh request now pending (its INVITE,
    /// re-INVITE or UPDATE with SDP), once the call answers it 2xx.
    timer_answer: Option<TimerAnswer>,
    /// The SDP we last sent: a refresh by re-INVITE offers it again.
    local_sdp: Option<Vec<u8>>,
    /// The peer allows UPDATE: our refreshes go by UPDATE (no SDP).
    peer_update: bool,
}

impl DialogSlot {
    fn new(dialog: Dialog, events: mpsc::Sender<DialogEvent>, admitted: Option<String>) -> Self {
        DialogSlot {
            dialog,
            events,
            released: false,
            admitted,
            timer: None,
            timer_answer: None,
            local_sdp: None,
            peer_update: false,
        }
    }
}

/// An open TCP connection as the core sees it: its writer, and the flag
/// that keeps it past its idle timeout.
type TcpConnection = (
    mpsc::Sender<Arc<[u8]>>,
    Arc<std::sync::atomic::AtomicBool>,
    Transport,
);

struct SipCore {
    config: Arc<Config>,
    /// Our address as put in Via and Contact, per family (the one of the
    /// peer's family is used).
    locals: crate::config::PerFamily<SocketAddr>,
    /// The source of the request being handled (its responses' Contact is
    /// of its family).
    replying_to: Option<std::net::IpAddr>,
    txs: Transactions,
    dialogs: HashMap<DialogId, DialogSlot>,
    /// (Call-ID, local tag) → dialog, for in-dialog requests.
    by_call: HashMap<(String, String), DialogId>,
    /// Transactions whose outcome a dialog waits for.
    by_tx: HashMap<TxId, DialogId>,
    /// Our INVITEs' client transactions → their dialogs.
    by_invite: HashMap<TxId, DialogId>,
    /// Dialog ids, shared with the [`Dialer`] so it can name a dialog at once.
    next_dialog: Arc<std::sync::atomic::AtomicU64>,
    /// One per family (dual stack), or one.
    udp: Vec<Arc<UdpSocket>>,
    /// Open TCP connections: their writer, and whether they carry a
    /// registration or a dialog (kept past their idle timeout then).
    tcp: HashMap<SocketAddr, TcpConnection>,
    incoming: mpsc::Sender<IncomingCall>,
    cmd_tx: mpsc::Sender<Command>,
    status: Arc<SipStatus>,
    /// Raised pressures refuse new calls.
    admission: Arc<crate::overload::Admission>,
    out: Vec<Transmit>,
    events: Vec<TxEvent>,
    registrar: Registrar,
    registrations: mpsc::UnboundedSender<Registration>,
    /// Keep-alive OPTIONS in flight → (agent, contact).
    keepalives: HashMap<TxId, (String, String)>,
    /// In-dialog OPTIONS in flight → their dialog.
    pings: HashMap<TxId, DialogId>,
    next_keepalive: Instant,
    /// Trunks that register at their carrier or ping it.
    trunk_clients: Vec<TrunkClient>,
    /// Each outbound trunk's proxy search, by trunk.
    locators: HashMap<String, tokio::task::AbortHandle>,
    /// Trunks whose proxy does not resolve now (shared with the [`Dialer`]).
    unresolved: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Their requests in flight → (which trunk's client, what, the request).
    trunk_txs: HashMap<TxId, (String, TrunkKind, Request)>,
    /// Calls in progress, in all and per trunk, and each trunk's rate.
    caps: super::limits::CallCaps,
    /// Requests per source that is not a trunk.
    sources: super::limits::SourceLimit,
    /// Our session refreshes in flight.
    refreshes: HashMap<TxId, Refresh>,
    /// Locates host names (RFC 3263) off the core's task.
    resolver: super::dns::Resolver,
    /// Our TLS listener's address, as put in Via and Contact.
    tls_local: Option<SocketAddr>,
    /// For the connections we open.
    inbound_tx: mpsc::Sender<Inbound>,
    /// TLS peers we may connect to → the SIP domain their certificate names.
    tls_peers: HashMap<SocketAddr, String>,
    /// Our TLS connections being opened, and what waits to go over them.
    connecting: HashMap<SocketAddr, Vec<Arc<[u8]>>>,
    /// TLS connectors by SIP domain (a trunk's CA file; else the system's).
    tls_clients: HashMap<String, tokio_rustls::TlsConnector>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Our address for a transport towards `to`: the TLS listener's for
/// TLS, else the one of `to`'s family.
fn pick_local(
    locals: &crate::config::PerFamily<SocketAddr>,
    tls: Option<SocketAddr>,
    transport: Transport,
    to: std::net::IpAddr,
) -> SocketAddr {
    match (transport, tls) {
        (Transport::Tls, Some(tls)) => tls,
        _ => locals.pick(to),
    }
}

/// A Via for a request of ours to `target`, from our address of its
/// family (the TLS listener's over TLS): (the Via, the branch).
fn via_to(
    locals: &crate::config::PerFamily<SocketAddr>,
    tls: Option<SocketAddr>,
    target: Target,
) -> (String, String) {
    new_via(
        pick_local(locals, tls, target.transport, target.addr.ip()),
        target.transport,
    )
}

/// A Via for a request we start, with a fresh branch: (the Via, the branch).
fn new_via(local: SocketAddr, transport: Transport) -> (String, String) {
    let branch = format!("z9hG4bK{}", random_token(16));
    let via = format!(
        "SIP/2.0/{} {local};branch={branch};rport",
        transport.as_str()
    );
    (via, branch)
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl SipCore {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut housekeeping = tokio::time::interval(std::time::Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.txs.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = inbound.recv() => match msg {
                    Some(msg) => self.on_inbound(msg),
                    None => return,
                },
                Some(cmd) = commands.recv() => self.on_command(cmd),
                _ = sleep => self.on_timers(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        for t in std::mem::take(&mut self.out) {
            match t.target.transport {
                Transport::Udp => {
                    // The socket of the destination's family.
                    let v6 = t.target.addr.is_ipv6();
                    let socket = self
                        .udp
                        .iter()
                        .find(|u| u.local_addr().is_ok_and(|a| a.is_ipv6() == v6))
                        .or(self.udp.first());
                    if let Some(udp) = socket {
                        if let Err(e) = udp.send_to(&t.bytes, t.target.addr).await {
                            debug!(to = %t.target.addr, error = %e, "udp send failed");
                        }
                    }
                }
                Transport::Tcp | Transport::Tls | Transport::Ws => {
                    match self.tcp.get(&t.target.addr) {
                        Some((w, _, _)) => {
                            if w.try_send(t.bytes).is_err() {
                                warn!(to = %t.target.addr, "tcp connection backed up; message dropped");
                            }
                        }
                        None if t.target.transport == Transport::Tls => {
                            self.send_tls(t.target.addr, t.bytes);
                        }
                        None => debug!(to = %t.target.addr, "no tcp connection; message dropped"),
                    }
                }
            }
        }
    }

    fn on_timers(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        self.txs.poll(now(), &mut self.out, &mut events);
        for ev in events.drain(..) {
            self.on_tx_event(ev);
        }
        self.events = events;
    }

    fn on_tx_event(&mut self, ev: TxEvent) {
        match ev {
            TxEvent::NoAck(tx) => {
                if let Some(id) = self.by_tx.remove(&tx) {
                    if let Some(slot) = self.dialogs.get_mut(&id) {
                        warn!(call_id = %slot.dialog.call_id, "final response never acknowledged");
                        deliver(&slot.events, DialogEvent::NoAck);
                        if slot.dialog.state == DialogState::Confirmed
                            && slot.dialog.awaiting_ack.is_some_and(|(_, t)| t == tx)
                        {
                            slot.dialog.awaiting_ack = None;
                            self.send_bye(id);
                        }
                    }
                }
            }
            TxEvent::Provisional(tx, resp) => {
                if let Some(&id) = self.by_invite.get(&tx) {
                    self.on_invite_provisional(id, &resp);
                }
            }
            TxEvent::Response(tx, resp) if self.by_invite.contains_key(&tx) => {
                if let Some(&id) = self.by_invite.get(&tx) {
                    self.on_invite_final(id, tx, &resp);
                }
            }
            TxEvent::Timeout(tx) if self.by_invite.contains_key(&tx) => {
                if let Some(&id) = self.by_invite.get(&tx) {
                    if self.fail_over(id, tx) {
                        return;
                    }
                }
                if let Some(id) = self.by_invite.remove(&tx) {
                    if let Some(slot) = self.dialogs.get_mut(&id) {
                        if slot.dialog.state == DialogState::Early {
                            info!(call_id = %slot.dialog.call_id, "no answer to our INVITE");
                            deliver(&slot.events, DialogEvent::Rejected { status: 408 });
                            slot.dialog.state = DialogState::Terminated;
                            self.forget(id);
                        }
                    }
                }
            }
            TxEvent::Response(tx, resp) if self.pings.contains_key(&tx) => {
                if let Some(id) = self.pings.remove(&tx) {
                    if let Some(slot) = self.dialogs.get(&id) {
                        let ev = if resp.status == 481 {
                            DialogEvent::Lost
                        } else {
                            DialogEvent::Alive
                        };
                        deliver(&slot.events, ev);
                    }
                }
            }
            TxEvent::Timeout(tx) if self.pings.contains_key(&tx) => {
                // The call task has its own, shorter deadline.
                self.pings.remove(&tx);
            }
            TxEvent::Response(tx, resp) if self.refreshes.contains_key(&tx) => {
                self.on_refresh_answer(tx, Some(&resp));
            }
            TxEvent::Timeout(tx) if self.refreshes.contains_key(&tx) => {
                self.on_refresh_answer(tx, None);
            }
            TxEvent::Response(tx, resp) if self.trunk_txs.contains_key(&tx) => {
                self.on_trunk_response(tx, Some(&resp));
            }
            TxEvent::Timeout(tx) if self.trunk_txs.contains_key(&tx) => {
                self.on_trunk_response(tx, None);
            }
            TxEvent::Response(tx, _) if self.keepalives.contains_key(&tx) => {
                // Any answer means the phone is there.
                self.keepalives.remove(&tx);
            }
            TxEvent::Timeout(tx) if self.keepalives.contains_key(&tx) => {
                if let Some((agent, contact)) = self.keepalives.remove(&tx) {
                    if self.registrar.drop_contact(&agent, &contact) {
                        warn!(%agent, %contact, "registered phone stopped answering OPTIONS; contact dropped");
                        self.publish(&agent);
                    }
                }
            }
            TxEvent::Response(tx, _) | TxEvent::Timeout(tx) => {
                if let Some(id) = self.by_tx.remove(&tx) {
                    if let Some(slot) = self.dialogs.get(&id) {
                        deliver(&slot.events, DialogEvent::Ended);
                    }
                    self.forget(id);
                }
            }
        }
    }

    fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::TcpOpened {
                peer,
                writer,
                in_use,
                transport,
            } => {
                // What waited for a connection of ours goes now.
                for bytes in self.connecting.remove(&peer).unwrap_or_default() {
                    let _ = writer.try_send(bytes);
                }
                self.tcp.insert(peer, (writer, in_use, transport));
            }
            Inbound::ConnectFailed { peer, reason } => {
                let dropped = self.connecting.remove(&peer).map_or(0, |q| q.len());
                let domain = self.tls_peers.get(&peer).cloned().unwrap_or_default();
                warn!(%peer, %domain, %reason, dropped, "TLS connection failed; what was to go over it is not sent");
                metrics::counter!("hotline_sip_tls_connect_failures_total").increment(1);
            }
            Inbound::TcpClosed { peer } => {
                self.tcp.remove(&peer);
                // What was registered over it is unreachable now.
                for agent in self.registrar.connection_closed(peer) {
                    info!(%agent, %peer, "connection closed; its registration goes with it");
                    self.publish(&agent);
                }
            }
            Inbound::Message { bytes, from } if !self.source_may_send(&bytes, from) => {}
            Inbound::Message { bytes, from } => match message::parse(&bytes) {
                Ok(Message::Request(req)) => {
                    self.replying_to = Some(from.addr.ip());
                    self.on_request(req, from);
                    self.replying_to = None;
                }
                Ok(Message::Response(resp)) => self.on_response(resp),
                Err(e) => self.on_malformed(&bytes, from, &e),
            },
        }
    }

    /// Requests from a source that is not a trunk count against its rate
    /// (`sip.rate-limit`); past it they are dropped unanswered, so a flood
    /// gets nothing back. Responses are not counted: they only match our
    /// own transactions.
    fn source_may_send(&mut self, bytes: &[u8], from: Target) -> bool {
        if bytes.starts_with(b"SIP/2.0 ") || self.config.trunk_for(from.addr.ip()).is_some() {
            return true;
        }
        match self.sources.check(from.addr.ip(), now()) {
            super::limits::Verdict::Pass => true,
            super::limits::Verdict::Drop => {
                metrics::counter!("hotline_sip_requests_dropped_total", "reason" => "rate-limit")
                    .increment(1);
                false
            }
            super::limits::Verdict::Blocked { .. } => {
                let block = self.config.sip.rate_limit.block.as_secs();
                super::registrar::log_refused(from.addr.ip(), "rate-limit", None);
                info!(source = %from.addr.ip(), "requests above sip.rate-limit; dropped for {block} s");
                metrics::counter!("hotline_sip_sources_blocked_total").increment(1);
                metrics::counter!("hotline_sip_requests_dropped_total", "reason" => "rate-limit")
                    .increment(1);
                false
            }
        }
    }

    /// `503` for overload or a cap, with `Retry-After` (`calls.retry-after`).
    fn refuse_busy(&mut self, tx: TxId, req: &Request, reason: &'static str) {
        metrics::counter!("hotline_calls_refused_total", "reason" => reason).increment(1);
        let mut resp = self.response(req, 503, None, None);
        let after = self.config.calls.retry_after.as_secs();
        if after > 0 {
            resp.headers.push("Retry-After", after.to_string());
        }
        self.out.extend(self.txs.respond(tx, &resp, now()));
    }

    /// Answers a malformed request with 400 when its headers allow a reply.
    fn on_malformed(&mut self, bytes: &[u8], from: Target, err: &message::ParseError) {
        warn!(peer = %from.addr, error = %err, "malformed SIP message");
        if let Some(resp) = message::bad_request(bytes, err, &random_token(8)) {
            self.out.push(Transmit {
                target: from,
                bytes: resp.to_bytes().into(),
            });
        }
    }

    fn on_request(&mut self, mut req: Request, from: Target) {
        metrics::counter!(
            "hotline_sip_requests_total",
            "method" => crate::telemetry::method_label(req.method.as_str())
        )
        .increment(1);
        // Stamp where the request came from (RFC 3261 §18.2.1, RFC 3581).
        let Some(mut via) = req.top_via().and_then(Via::parse) else {
            self.on_malformed(
                &req.to_bytes(),
                from,
                &message::ParseError::MissingHeader("Via"),
            );
            return;
        };
        via.stamp_received(from.addr);
        req.headers.replace_top_via(&via.to_string());
        // Responses go back where the request came from, over UDP as over
        // TCP (symmetric, as RFC 3581 asks for): never to an address the
        // request names, which would let anyone aim our responses at a
        // third party.
        let reply_to = from;

        let key = ServerKey::of(&req);
        let tx = match self.txs.on_request(&req, key.clone(), reply_to, now()) {
            RequestMatch::New(tx) => tx,
            RequestMatch::Retransmission(resend) => {
                self.out.extend(resend);
                return;
            }
            RequestMatch::AckAbsorbed => return,
            RequestMatch::AckForDialog => return self.on_ack(&req),
        };

        let to_tag = req.headers.get("To").and_then(tag_of);
        if let Some(tag) = to_tag {
            let dialog = self.by_call.get(&(req.call_id().to_owned(), tag)).copied();
            return match dialog {
                Some(id) => self.on_in_dialog(id, tx, req),
                None if req.method == Method::Cancel => self.reply(tx, &req, 481, None),
                None => self.reply(tx, &req, 481, None),
            };
        }

        match req.method {
            Method::Invite => self.on_invite(tx, req, from),
            Method::Cancel => self.on_cancel(tx, &req, &key),
            Method::Register => self.on_register(tx, &req, from),
            Method::Options => {
                let status = if self.config.trunk_for(from.addr.ip()).is_some() {
                    200
                } else {
                    403
                };
                self.reply(tx, &req, status, None);
            }
            Method::Bye | Method::Info | Method::Prack | Method::Update => {
                self.reply(tx, &req, 481, None)
            }
            Method::Other(_) => self.reply(tx, &req, 501, None),
            _ => self.reply(tx, &req, 405, None),
        }
    }

    fn on_response(&mut self, resp: Response) {
        let Some(branch) = resp
            .headers
            .get_all_split("Via")
            .next()
            .and_then(Via::parse)
            .and_then(|v| v.branch().map(str::to_owned))
        else {
            return;
        };
        if let Some(ev) = self.txs.on_response(&branch, resp, now(), &mut self.out) {
            self.on_tx_event(ev);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Respond {
                dialog,
                status,
                sdp,
            } => self.respond_pending(dialog, status, sdp),
            Command::Hangup { dialog } => self.hangup(dialog),
            Command::Invite {
                dialog,
                call,
                addrs,
                tls_domain,
                events,
            } => self.send_invite(dialog, *call, addrs, tls_domain, events),
            Command::TrunkLocated { trunk, proxy, addr } => {
                self.trunk_located(&trunk, &proxy, addr)
            }
            Command::Reconfigure(config) => self.reconfigure(config),
            Command::Alive(reply) => {
                let _ = reply.send(());
            }
            Command::HopLocated { dialog, uri, addr } => {
                if let Some(slot) = self.dialogs.get_mut(&dialog) {
                    debug!(call_id = %slot.dialog.call_id, %uri, %addr, "next hop located");
                    slot.dialog.located = Some((uri, addr));
                }
            }
            Command::Ping { dialog } => self.send_ping(dialog),
            Command::NotifyRefer { dialog, status } => self.send_notify_refer(dialog, status),
            Command::Release { dialog } => {
                if let Some(slot) = self.dialogs.get_mut(&dialog) {
                    slot.released = true;
                }
                self.hangup(dialog);
                self.forget_if_idle(dialog);
            }
        }
    }

    fn respond_pending(&mut self, id: DialogId, status: u16, sdp: Option<Vec<u8>>) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(pending) = slot.dialog.pending.clone() else {
            return;
        };
        if status >= 200 {
            slot.dialog.pending = None;
        }
        let initial = slot.dialog.state == DialogState::Early;
        let is_invite = pending.request.method == Method::Invite;
        let ok = (200..300).contains(&status);
        if ok && is_invite {
            slot.dialog.state = DialogState::Confirmed;
            let seq = pending.request.cseq().map(|(n, _)| n).unwrap_or(0);
            slot.dialog.awaiting_ack = Some((seq, pending.tx));
        } else if status >= 300 && initial {
            slot.dialog.state = DialogState::Terminated;
        }
        let timer_answer = if status >= 200 {
            slot.timer_answer.take()
        } else {
            None
        };
        if ok && sdp.is_some() {
            slot.local_sdp.clone_from(&sdp);
        }
        let mut resp = self.response(&pending.request, status, Some(id), sdp);
        if let (true, Some(answer)) = (ok, timer_answer) {
            self.apply_timer_answer(id, answer, &mut resp);
        }
        self.out.extend(self.txs.respond(pending.tx, &resp, now()));
        if status >= 300 {
            self.by_tx.remove(&pending.tx);
            if initial {
                self.forget(id);
            }
        }
    }

    fn hangup(&mut self, id: DialogId) {
        let Some(slot) = self.dialogs.get(&id) else {
            return;
        };
        match slot.dialog.state {
            DialogState::Early if slot.dialog.outbound.is_some() => self.send_cancel(id),
            DialogState::Early => self.respond_pending(id, 480, None),
            DialogState::Confirmed if slot.dialog.bye_tx.is_none() => self.send_bye(id),
            _ => {}
        }
    }

    fn send_bye(&mut self, id: DialogId) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let target = slot.dialog.request_target();
        let (via, branch) = via_to(&self.locals, self.tls_local, target);
        let bye = slot
            .dialog
            .request(Method::Bye, via, &self.config.sip.user_agent);
        info!(call_id = %slot.dialog.call_id, "hanging up");
        slot.dialog.state = DialogState::Terminated;
        if let Some((_, tx)) = slot.dialog.awaiting_ack.take() {
            self.by_tx.remove(&tx);
        }
        let (tx, transmit) = self.txs.send_request(&branch, &bye, target, now());
        slot.dialog.bye_tx = Some(tx);
        self.by_tx.insert(tx, id);
        self.out.push(transmit);
    }

    fn on_register(&mut self, tx: TxId, req: &Request, from: Target) {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let answer = self.registrar.register(req, from, now(), wall);
        let mut resp = self.response(req, answer.status, None, None);
        for (k, v) in answer.headers {
            resp.headers.push(k, v);
        }
        self.out.extend(self.txs.respond(tx, &resp, now()));
        if let Some(agent) = answer.changed {
            self.publish(&agent);
        }
    }

    /// Tells the engine an agent's current contacts.
    fn publish(&self, agent: &str) {
        let _ = self.registrations.send(Registration {
            agent: agent.to_owned(),
            contacts: self.registrar.contacts(agent).to_vec(),
        });
    }

    /// Marks each TCP connection that carries a dialog or a registration,
    /// so its idle timeout does not close it.
    fn mark_connections_in_use(&self) {
        if self.tcp.is_empty() {
            return;
        }
        let mut used: std::collections::HashSet<SocketAddr> = self
            .dialogs
            .values()
            .filter(|s| s.dialog.source.transport.is_reliable())
            .map(|s| s.dialog.source.addr)
            .collect();
        used.extend(
            self.trunk_clients
                .iter()
                .filter(|c| c.transport == Transport::Tls)
                .map(|c| c.proxy),
        );
        used.extend(
            self.registrar
                .registered()
                .flat_map(|(_, bs)| bs.iter().map(|b| b.source)),
        );
        for (peer, (_, in_use, _)) in &self.tcp {
            in_use.store(used.contains(peer), Ordering::Relaxed);
        }
    }

    fn housekeeping(&mut self) {
        let t = now();
        self.session_timers(t);
        self.failovers(t);
        self.mark_connections_in_use();
        self.trunk_requests(t);
        for agent in self.registrar.expire(t) {
            self.publish(&agent);
        }
        let every = self.config.registrar.keepalive;
        if every.is_zero() || t < self.next_keepalive {
            return;
        }
        self.next_keepalive = t + every;
        let targets: Vec<(String, Binding)> = self
            .registrar
            .registered()
            .flat_map(|(a, bs)| bs.iter().map(move |b| (a.to_owned(), b.clone())))
            .collect();
        for (agent, b) in targets {
            if self
                .keepalives
                .values()
                .any(|(a, c)| *a == agent && *c == b.contact)
            {
                continue;
            }
            // Over the connection it registered over, if that is how.
            let (via, branch) = new_via(
                pick_local(&self.locals, self.tls_local, b.transport, b.source.ip()),
                b.transport,
            );
            let mut headers = Headers::default();
            headers.push("Via", via);
            headers.push("Max-Forwards", "70");
            headers.push(
                "From",
                format!(
                    "<sip:hotline@{}>;tag={}",
                    self.locals.pick(b.source.ip()),
                    random_token(8)
                ),
            );
            headers.push("To", format!("<{}>", b.contact));
            headers.push(
                "Call-ID",
                format!("{}@{}", random_token(16), self.locals.primary().ip()),
            );
            headers.push("CSeq", "1 OPTIONS");
            headers.push("User-Agent", self.config.sip.user_agent.clone());
            headers.push("Content-Length", "0");
            let req = Request {
                method: Method::Options,
                uri: b.contact.clone(),
                headers,
                body: Vec::new(),
            };
            let target = Target {
                transport: b.transport,
                addr: b.source,
            };
            let (tx, transmit) = self.txs.send_request(&branch, &req, target, t);
            self.keepalives.insert(tx, (agent, b.contact));
            self.out.push(transmit);
        }
    }

    /// Our Contact, for the transport a request or dialog uses towards `to`.
    fn contact(&self, transport: Transport, to: std::net::IpAddr) -> String {
        let local = self.local_for(transport, to);
        match transport {
            Transport::Tcp => format!("<sip:hotline@{local};transport=tcp>"),
            Transport::Tls => format!("<sip:hotline@{local};transport=tls>"),
            Transport::Ws => format!("<sip:hotline@{local};transport=ws>"),
            Transport::Udp => format!("<sip:hotline@{local}>"),
        }
    }

    /// Our address for a transport towards `to` (the TLS listener's for TLS).
    fn local_for(&self, transport: Transport, to: std::net::IpAddr) -> SocketAddr {
        pick_local(&self.locals, self.tls_local, transport, to)
    }

    fn send_ping(&mut self, id: DialogId) {
        let Some((mut req, branch, target)) = self.in_dialog_request(id, Method::Options) else {
            return;
        };
        req.headers.push("Content-Length", "0");
        let (tx, transmit) = self.txs.send_request(&branch, &req, target, now());
        self.pings.insert(tx, id);
        self.out.push(transmit);
    }

    /// A request of ours within a confirmed dialog that is not ending, with
    /// its branch and where it goes.
    fn in_dialog_request(
        &mut self,
        id: DialogId,
        method: Method,
    ) -> Option<(Request, String, Target)> {
        let slot = self.dialogs.get_mut(&id)?;
        if slot.dialog.state != DialogState::Confirmed || slot.dialog.bye_tx.is_some() {
            return None;
        }
        let target = slot.dialog.request_target();
        let (via, branch) = via_to(&self.locals, self.tls_local, target);
        let req = slot
            .dialog
            .request(method, via, &self.config.sip.user_agent);
        Some((req, branch, target))
    }

    /// The final NOTIFY of a REFER's implicit subscription. Its answer is
    /// not awaited: the transfer has happened (or not) either way.
    fn send_notify_refer(&mut self, id: DialogId, status: u16) {
        let Some((mut req, branch, target)) = self.in_dialog_request(id, Method::Notify) else {
            return;
        };
        let body = format!(
            "SIP/2.0 {status} {}\r\n",
            super::message::reason_phrase(status)
        );
        req.headers.push("Event", "refer");
        req.headers
            .push("Subscription-State", "terminated;reason=noresource");
        req.headers
            .push("Content-Type", "message/sipfrag;version=2.0");
        req.headers.push("Content-Length", body.len().to_string());
        req.body = body.into_bytes();
        let (_tx, transmit) = self.txs.send_request(&branch, &req, target, now());
        self.out.push(transmit);
    }

    /// Drops a dialog once it is over and no transaction waits on it.
    fn forget_if_idle(&mut self, id: DialogId) {
        let Some(slot) = self.dialogs.get(&id) else {
            return;
        };
        if slot.dialog.state == DialogState::Terminated && slot.dialog.bye_tx.is_none() {
            self.forget(id);
        }
    }

    fn forget(&mut self, id: DialogId) {
        if let Some(slot) = self.dialogs.remove(&id) {
            let d = slot.dialog;
            self.by_call
                .remove(&(d.call_id.clone(), d.local_tag.clone()));
            self.by_tx.retain(|_, v| *v != id);
            self.by_invite.retain(|_, v| *v != id);
            self.pings.retain(|_, v| *v != id);
            self.refreshes.retain(|_, r| r.dialog != id);
            if let Some(trunk) = &slot.admitted {
                self.caps.release(trunk);
            }
            self.status.dialogs.fetch_sub(1, Ordering::SeqCst);
            debug!(call_id = %d.call_id, "dialog removed");
        }
    }

    /// A response to `req`; within a dialog the To tag is the dialog's.
    fn response(
        &self,
        req: &Request,
        status: u16,
        dialog: Option<DialogId>,
        sdp: Option<Vec<u8>>,
    ) -> Response {
        metrics::counter!("hotline_sip_responses_total", "code" => status.to_string()).increment(1);
        let to_tag = dialog
            .and_then(|id| self.dialogs.get(&id))
            .map(|s| s.dialog.local_tag.clone())
            .unwrap_or_else(|| random_token(8));
        // Towards the request's source: the dialog's peer, or the sender of
        // the request being handled.
        let to = dialog
            .and_then(|id| self.dialogs.get(&id))
            .map(|s| s.dialog.source.addr.ip())
            .or(self.replying_to)
            .unwrap_or(self.locals.primary().ip());
        let us = reply::Local {
            contact: self.locals.pick(to),
            tls: self.tls_local,
            server: &self.config.sip.user_agent,
        };
        reply::response(req, status, &to_tag, &us, sdp)
    }

    /// Replies on a server transaction; `dialog` adds our To tag.
    fn reply(&mut self, tx: TxId, req: &Request, status: u16, dialog: Option<DialogId>) {
        let resp = self.response(req, status, dialog, None);
        self.out.extend(self.txs.respond(tx, &resp, now()));
    }
}
