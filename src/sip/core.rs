//! The SIP core: one task that owns every transaction and dialog. Transports
//! feed it raw messages, call tasks send it commands through their
//! [`DialogHandle`], and it tells each call what happened on its dialog.
//!
//! Over 800 lines: the core's routing of requests, responses, dialogs and
//! registrations lives in one task; it is a candidate for the split the
//! call had (a pure core and a thin driver), not done yet.

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

mod locate;
mod refresh;
mod trunks;
use crate::config::Config;

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

/// Binds the transports and starts the SIP core task.
/// Starts the SIP layer. `restored` are agents' contacts kept from before
/// a restart: the registrar takes them back (those not expired) and they
/// are published like fresh registrations.
pub async fn start(
    config: Arc<Config>,
    restored: Vec<Registration>,
    admission: Arc<crate::overload::Admission>,
) -> Result<SipLayer, SipError> {
    let listen = config.sip.listen.primary();
    let core_max_message = config.sip.max_message_size;
    let (in_tx, in_rx) = mpsc::channel(8192);
    // One UDP socket and TCP listener per address (a dual-stack engine has
    // an IPv4 and an IPv6 one); what each is bound to, as put in Via and
    // Contact towards a peer of its family.
    let mut udp = Vec::new();
    let mut locals = Vec::new();
    let (mut udp_addrs, mut tcp_addrs) = (Vec::new(), Vec::new());
    for listen in config.sip.listen.iter() {
        let mut bound = None;
        if config.sip.udp {
            let socket = UdpSocket::bind(listen)
                .await
                .map_err(|source| SipError::Bind {
                    transport: "UDP",
                    addr: listen,
                    source,
                })?;
            bound = socket.local_addr().ok();
            udp_addrs.extend(bound);
            let socket = Arc::new(socket);
            tokio::spawn(transport::run_udp(
                socket.clone(),
                in_tx.clone(),
                config.sip.max_message_size,
            ));
            udp.push(socket);
        }
        if config.sip.tcp {
            // With port 0, TCP takes the port UDP was given.
            let addr = bound.unwrap_or(listen);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SipError::Bind {
                    transport: "TCP",
                    addr,
                    source,
                })?;
            tcp_addrs.extend(listener.local_addr().ok());
            bound = bound.or(listener.local_addr().ok());
            tokio::spawn(transport::run_tcp(
                listener,
                in_tx.clone(),
                config.sip.connections,
                config.sip.max_message_size,
                None,
            ));
        }
        let port = bound.map_or(listen.port(), |a| a.port());
        locals.push(SocketAddr::new(config.sip_address_for(listen.ip()), port));
    }
    let locals = crate::config::PerFamily::new(locals).map_err(SipError::Listen)?;
    let mut tls_addr = None;
    if let Some(t) = &config.sip.tls {
        let acceptor = crate::tls::Acceptor::load("sip", &t.cert, &t.key).map_err(SipError::Tls)?;
        let addr = t.listen.unwrap_or(SocketAddr::new(listen.ip(), 5061));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SipError::Bind {
                transport: "TLS",
                addr,
                source,
            })?;
        tls_addr = listener.local_addr().ok();
        tokio::spawn(transport::run_tcp(
            listener,
            in_tx.clone(),
            config.sip.connections,
            config.sip.max_message_size,
            Some(acceptor.clone()),
        ));
        crate::tls::reload_on_sighup(acceptor);
    }
    // A connector per TLS trunk domain, with the trunk's CA file.
    let mut tls_clients = HashMap::new();
    for trunk in &config.trunks {
        let Some(o) = &trunk.outbound else {
            continue;
        };
        let Some(uri) = SipUri::parse(&o.proxy).filter(super::trunk_client::wants_tls) else {
            continue;
        };
        let client = crate::tls::client_config(o.ca_file.as_deref())
            .map_err(|e| SipError::Tls(format!("trunk {}: {e}", trunk.name)))?;
        tls_clients.insert(uri.host.clone(), crate::tls::connector(client));
    }
    let (incoming_tx, incoming_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel(super::handle::CORE_COMMANDS);
    let status = Arc::new(SipStatus::default());
    let ids = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (reg_tx, reg_rx) = mpsc::unbounded_channel();
    let config_for_registrar = config.clone();
    let servers = config.dns.server_addrs().unwrap_or_default();
    let resolver = super::dns::Resolver::new(&servers, config.dns.retry);
    let unresolved = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let dialer = Dialer {
        commands: cmd_tx.clone(),
        ids: ids.clone(),
        resolver: resolver.clone(),
        unresolved: unresolved.clone(),
    };
    let mut core = SipCore {
        locals,
        config,
        txs: Transactions::new(),
        dialogs: HashMap::new(),
        by_call: HashMap::new(),
        by_tx: HashMap::new(),
        next_dialog: ids,
        by_invite: HashMap::new(),
        udp,
        replying_to: None,
        tcp: HashMap::new(),
        incoming: incoming_tx,
        cmd_tx,
        status: status.clone(),
        admission,
        out: Vec::new(),
        events: Vec::new(),
        registrar: Registrar::new(
            &config_for_registrar.registrar,
            &config_for_registrar.agents,
        ),
        registrations: reg_tx,
        keepalives: HashMap::new(),
        pings: HashMap::new(),
        next_keepalive: now(),
        trunk_clients: Vec::new(),
        trunk_txs: HashMap::new(),
        caps: super::limits::CallCaps::default(),
        sources: super::limits::SourceLimit::new(
            config_for_registrar.sip.rate_limit.requests,
            config_for_registrar.sip.rate_limit.per,
            config_for_registrar.sip.rate_limit.block,
        ),
        refreshes: HashMap::new(),
        resolver: resolver.clone(),
        tls_local: tls_addr.map(|a| SocketAddr::new(config_for_registrar.sip_address(), a.port())),
        inbound_tx: in_tx.clone(),
        tls_peers: HashMap::new(),
        connecting: HashMap::new(),
        tls_clients,
        unresolved,
        locators: HashMap::new(),
    };
    for trunk in core.config.trunks.clone() {
        core.locate(&trunk);
    }
    // The calls the caps refuse, counted from 0 (an alert sees the first).
    for r in super::limits::Refused::ALL {
        metrics::counter!("hotline_calls_refused_total", "reason" => r.as_str()).increment(0);
    }
    for r in restored {
        if core.registrar.restore(&r.agent, r.contacts, now()) {
            info!(agent = %r.agent, "registration restored");
            core.publish(&r.agent);
        }
    }
    tokio::spawn(core.run(in_rx, cmd_rx));
    Ok(SipLayer {
        websockets: super::transport::WebSocketDoor {
            to_core: in_tx.clone(),
            max_message: core_max_message,
        },
        incoming: incoming_rx,
        dialer,
        registrations: reg_rx,
        status,
        udp_addrs,
        tcp_addrs,
        tls_addr,
    })
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

    fn on_invite(&mut self, tx: TxId, req: Request, from: Target) {
        let call_id = req.call_id().to_owned();
        if self.status.draining.load(Ordering::SeqCst) {
            info!(%call_id, "refusing call: shutting down");
            let mut resp = self.response(&req, 503, None, None);
            resp.headers.push("Retry-After", "30");
            self.out.extend(self.txs.respond(tx, &resp, now()));
            return;
        }
        if let Some(p) = self.admission.refusing() {
            warn!(%call_id, reason = p.as_str(), "refusing call: overloaded");
            return self.refuse_busy(tx, &req, p.as_str());
        }
        let dialed_user = SipUri::parse(&req.uri)
            .and_then(|u| u.user)
            .unwrap_or_default();
        let codes = &self.config.feature_codes;
        let disposition = !codes.disposition.is_empty()
            && dialed_user.len() > codes.disposition.len()
            && dialed_user.starts_with(&codes.disposition);
        let is_code = disposition
            || [&codes.login, &codes.logout, &codes.pause]
                .iter()
                .any(|c| **c == dialed_user);
        let mut feature = None;
        let trunk = if is_code {
            // An agent's phone, dialling a feature code: prove who it is.
            let agent = req
                .headers
                .get("From")
                .and_then(NameAddr::parse)
                .and_then(|n| SipUri::parse(&n.uri))
                .and_then(|u| u.user)
                .unwrap_or_default();
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if let Err(answer) = self
                .registrar
                .authenticate(&req, &agent, from.addr, now(), wall)
            {
                let mut resp = self.response(&req, answer.status, None, None);
                for (k, v) in answer.headers {
                    resp.headers.push(k, v);
                }
                self.out.extend(self.txs.respond(tx, &resp, now()));
                return;
            }
            info!(%call_id, %agent, code = %dialed_user, "agent feature code");
            feature = Some((agent, dialed_user.clone()));
            "agents".to_owned()
        } else {
            let Some(trunk) = self.config.trunk_for(from.addr.ip()) else {
                warn!(%call_id, peer = %from.addr, "call from an address no trunk allows");
                super::registrar::log_refused(from.addr.ip(), "no-trunk", None);
                return self.reply(tx, &req, 403, None);
            };
            trunk.name.clone()
        };
        if !req.body.is_empty() {
            let ctype = req.headers.get("Content-Type").unwrap_or_default();
            if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
                return self.reply(tx, &req, 415, None);
            }
        }
        let timer_answer = session_timer::on_request(&req.headers, self.timer_settings());
        if let TimerAnswer::TooSmall(min_se) = timer_answer {
            return self.refuse_interval(tx, &req, min_se, None);
        }
        let local_tag = random_token(10);
        let Some(dialog) = Dialog::from_invite(&req, local_tag.clone(), tx, from) else {
            return self.reply(tx, &req, 400, None);
        };
        let inbound = self
            .config
            .trunks
            .iter()
            .find(|t| t.name == trunk)
            .map(|t| super::limits::TrunkCaps {
                max_calls: t.inbound.max_calls,
                max_cps: t.inbound.max_cps,
            })
            .unwrap_or_default();
        if let Err(why) = self
            .caps
            .admit(&trunk, inbound, self.config.calls.max_concurrent, now())
        {
            warn!(%call_id, %trunk, reason = why.as_str(), "refusing call: at its cap");
            return self.refuse_busy(tx, &req, why.as_str());
        }
        let admitted = trunk.clone();
        self.reply(tx, &req, 100, None);

        let from_hdr = req.headers.get("From").and_then(NameAddr::parse);
        let from_user = from_hdr
            .as_ref()
            .and_then(|f| SipUri::parse(&f.uri))
            .and_then(|u| u.user)
            .unwrap_or_else(|| "anonymous".into());
        // A trusted trunk's asserted identity is the caller's number.
        let trusted = self
            .config
            .trunks
            .iter()
            .any(|t| t.name == trunk && t.trust_identity);
        let caller = trusted
            .then(|| super::identity::asserted_user(&req.headers))
            .flatten()
            .unwrap_or(from_user);
        let hidden =
            super::identity::withheld(&req.headers) || caller.eq_ignore_ascii_case("anonymous");
        let caller_name = from_hdr.and_then(|f| f.display);
        let dialed = SipUri::parse(&req.uri)
            .and_then(|u| u.user)
            .unwrap_or_default();

        let id = DialogId(self.next_dialog.fetch_add(1, Ordering::SeqCst) + 1);
        let (ev_tx, ev_rx) = mpsc::channel(super::handle::DIALOG_EVENTS);
        let call = IncomingCall {
            call_id: call_id.clone(),
            from_tag: dialog.remote_tag.clone(),
            caller,
            caller_name,
            dialed,
            trunk,
            source: from.addr,
            secure: from.transport == Transport::Tls,
            hidden,
            offer: (!req.body.is_empty()).then(|| req.body.clone()),
            dialog: DialogHandle {
                id,
                commands: self.cmd_tx.clone(),
            },
            events: ev_rx,
            feature,
        };
        if self.incoming.try_send(call).is_err() {
            warn!(%call_id, "call layer overloaded; refusing call");
            self.caps.release(&admitted);
            // The handle inside the dropped call sends a Release we ignore.
            return self.refuse_busy(tx, &req, "call-layer");
        }
        self.by_call.insert((call_id, local_tag), id);
        self.by_tx.insert(tx, id);
        let mut slot = DialogSlot::new(dialog, ev_tx, Some(admitted));
        slot.timer_answer = Some(timer_answer);
        slot.peer_update = allows_update(&req.headers);
        self.dialogs.insert(id, slot);
        self.locate_next_hop(id);
        self.status.dialogs.fetch_add(1, Ordering::SeqCst);
    }

    fn on_cancel(&mut self, tx: TxId, req: &Request, key: &ServerKey) {
        let invite_tx = self.txs.server(&key.invite_of_cancel());
        let Some(invite_tx) = invite_tx else {
            return self.reply(tx, req, 481, None);
        };
        self.reply(tx, req, 200, None);
        if !self.txs.is_proceeding(invite_tx) {
            return; // already answered: the CANCEL has no effect
        }
        let Some(&id) = self.by_tx.get(&invite_tx) else {
            return;
        };
        if let Some(slot) = self.dialogs.get_mut(&id) {
            info!(call_id = %slot.dialog.call_id, "caller cancelled");
            if let Some(p) = slot.dialog.pending.take() {
                deliver(&slot.events, DialogEvent::Cancelled);
                slot.dialog.state = DialogState::Terminated;
                let resp = self.response(&p.request, 487, Some(id), None);
                self.out.extend(self.txs.respond(p.tx, &resp, now()));
            }
        }
        self.by_tx.remove(&invite_tx);
        self.forget(id);
    }

    fn on_ack(&mut self, req: &Request) {
        let Some(tag) = req.headers.get("To").and_then(tag_of) else {
            return;
        };
        let Some(&id) = self.by_call.get(&(req.call_id().to_owned(), tag)) else {
            return;
        };
        let seq = req.cseq().map(|(n, _)| n);
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        match slot.dialog.awaiting_ack {
            Some((cseq, tx)) if Some(cseq) == seq => {
                slot.dialog.awaiting_ack = None;
                self.txs.acknowledged(tx);
                self.by_tx.remove(&tx);
                let sdp = (!req.body.is_empty()).then(|| req.body.clone());
                deliver(&slot.events, DialogEvent::Ack { sdp });
            }
            _ => {} // a retransmitted ACK
        }
    }

    fn on_in_dialog(&mut self, id: DialogId, tx: TxId, req: Request) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return self.reply(tx, &req, 481, None);
        };
        let seq = req.cseq().map(|(n, _)| n).unwrap_or(0);
        if req.method != Method::Cancel {
            if seq <= slot.dialog.remote_seq && slot.dialog.remote_seq != 0 {
                return self.reply(tx, &req, 500, None);
            }
            slot.dialog.remote_seq = seq;
        }
        match req.method {
            Method::Bye => {
                info!(call_id = %slot.dialog.call_id, "caller hung up");
                slot.dialog.state = DialogState::Terminated;
                deliver(&slot.events, DialogEvent::Bye);
                self.reply(tx, &req, 200, Some(id));
                self.forget(id);
            }
            Method::Invite => {
                if slot.dialog.pending.is_some() || slot.dialog.awaiting_ack.is_some() {
                    return self.reply(tx, &req, 491, Some(id));
                }
                let answer = session_timer::on_request(&req.headers, self.timer_settings());
                if let TimerAnswer::TooSmall(min_se) = answer {
                    return self.refuse_interval(tx, &req, min_se, Some(id));
                }
                let Some(slot) = self.dialogs.get_mut(&id) else {
                    return;
                };
                let sdp = (!req.body.is_empty()).then(|| req.body.clone());
                let contact = req.headers.get("Contact").and_then(NameAddr::parse);
                if let Some(contact) = contact.filter(|c| SipUri::parse(&c.uri).is_some()) {
                    slot.dialog.remote_target = contact.uri;
                }
                slot.timer_answer = Some(answer);
                slot.peer_update |= allows_update(&req.headers);
                slot.dialog.pending = Some(PendingInvite { tx, request: req });
                self.by_tx.insert(tx, id);
                deliver(&slot.events, DialogEvent::ReInvite { sdp });
                self.locate_next_hop(id);
            }
            Method::Update => self.on_update(id, tx, req),
            Method::Info => {
                let content_type = req
                    .headers
                    .get("Content-Type")
                    .unwrap_or_default()
                    .to_owned();
                deliver(
                    &slot.events,
                    DialogEvent::Info {
                        content_type,
                        body: req.body.clone(),
                    },
                );
                self.reply(tx, &req, 200, Some(id));
            }
            Method::Options => self.reply(tx, &req, 200, Some(id)),
            Method::Refer => {
                let refer_to = req
                    .headers
                    .get("Refer-To")
                    .or_else(|| req.headers.get("r"))
                    .and_then(NameAddr::parse)
                    .filter(|n| SipUri::parse(&n.uri).is_some());
                match refer_to {
                    Some(to) => {
                        info!(call_id = %slot.dialog.call_id, refer_to = %to.uri, "REFER received");
                        deliver(&slot.events, DialogEvent::Refer { refer_to: to.uri });
                        self.reply(tx, &req, 202, Some(id));
                    }
                    None => self.reply(tx, &req, 400, Some(id)),
                }
            }
            Method::Other(_) => self.reply(tx, &req, 501, Some(id)),
            _ => self.reply(tx, &req, 405, Some(id)),
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

    /// Places a call: the INVITE on a client transaction, a UAC dialog.
    fn send_invite(
        &mut self,
        id: DialogId,
        call: OutboundCall,
        mut addrs: Vec<SocketAddr>,
        tls_domain: Option<String>,
        events: mpsc::Sender<DialogEvent>,
    ) {
        if let Some(domain) = &tls_domain {
            for a in &addrs {
                self.tls_peers.insert(*a, domain.clone());
            }
        }
        if addrs.is_empty() {
            deliver(&events, DialogEvent::Rejected { status: 400 });
            return;
        }
        let addr = addrs.remove(0);
        // A phone registered over a TCP connection is reached over it,
        // while it is open (RFC 5626 flow reuse); else over UDP.
        let transport = match self.tcp.get(&addr) {
            Some((_, _, t)) if call.over_tcp => *t,
            _ if tls_domain.is_some() => Transport::Tls,
            _ => Transport::Udp,
        };
        let local = pick_local(&self.locals, self.tls_local, transport, addr.ip());
        let (via, branch) = new_via(local, transport);
        let local_tag = random_token(10);
        let call_id = format!("{}@{}", random_token(20), local.ip());
        let host = match local.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let user: String = call
            .from_user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "+-_.!~*'()".contains(*c))
            .collect();
        let user = if user.is_empty() {
            "hotline".to_owned()
        } else {
            user
        };
        let display: Option<String> = call.from_display.map(|d| {
            d.chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect()
        });
        let from_uri = format!("sip:{user}@{host}");
        let from = match &display {
            Some(d) => format!("\"{d}\" <{from_uri}>;tag={local_tag}"),
            None => format!("<{from_uri}>;tag={local_tag}"),
        };
        let mut headers = Headers::default();
        headers.push("Via", via);
        headers.push("Max-Forwards", "70");
        headers.push("From", from);
        headers.push("To", format!("<{}>", call.target));
        headers.push("Call-ID", call_id.clone());
        headers.push("CSeq", "1 INVITE");
        headers.push("Contact", self.contact(transport, addr.ip()));
        headers.push("User-Agent", self.config.sip.user_agent.clone());
        headers.push("Allow", reply::ALLOW);
        let mut extra: Vec<(String, String)> = call
            .headers
            .iter()
            // Only token names and printable values: these come from callers.
            .filter(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.chars().filter(|c| !c.is_control()).take(256).collect(),
                )
            })
            .collect();
        if transport == Transport::Udp {
            // Within RFC 3261 §18.1.1's size for UDP: the IVR's variables
            // give way (a phone registered over TCP or TLS gets them all).
            let mut probe = Request {
                method: Method::Invite,
                uri: call.target.clone(),
                headers: headers.clone(),
                body: call.sdp.clone(),
            };
            for (k, v) in &extra {
                probe.headers.push(k.clone(), v.clone());
            }
            let size = probe.to_bytes().len() + 120;
            let dropped =
                super::identity::fit_for_udp(&mut extra, size, super::identity::UDP_LIMIT);
            if dropped > 0 {
                warn!(%call_id, dropped, "screen pop variables left out to keep the INVITE within UDP's size");
                metrics::counter!("hotline_sip_screen_pop_trimmed_total").increment(1);
                extra.push(("X-Hotline-Vars-Omitted".to_owned(), dropped.to_string()));
            }
        }
        for (k, v) in extra {
            headers.push(k, v);
        }
        for (k, v) in session_timer::invite_headers(self.timer_settings(), 0) {
            headers.push(k, v);
        }
        headers.push("Content-Type", "application/sdp");
        headers.push("Content-Length", call.sdp.len().to_string());
        let sdp = call.sdp.clone();
        let invite = Request {
            method: Method::Invite,
            uri: call.target.clone(),
            headers,
            body: call.sdp,
        };
        let target = Target { transport, addr };
        let (tx, transmit) = self.txs.send_request(&branch, &invite, target, now());
        let Some(mut dialog) = Dialog::outbound(invite, local_tag.clone(), tx, target) else {
            deliver(&events, DialogEvent::Rejected { status: 400 });
            return;
        };
        if let Some(out) = dialog.outbound.as_mut() {
            out.auth = call.auth;
            if !addrs.is_empty() {
                out.failover_at = Some(now() + self.config.dns.failover_after);
            }
            out.alternates = addrs;
        }
        info!(%call_id, to = %call.target, %addr, "placing a call");
        self.out.push(transmit);
        self.by_invite.insert(tx, id);
        self.by_call.insert((call_id, local_tag), id);
        let mut slot = DialogSlot::new(dialog, events, None);
        slot.local_sdp = Some(sdp);
        self.dialogs.insert(id, slot);
        self.status.dialogs.fetch_add(1, Ordering::SeqCst);
    }

    fn on_invite_provisional(&mut self, id: DialogId, resp: &Response) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return;
        };
        // It is there: no failing over from now on.
        out.failover_at = None;
        if resp.status > 100 && !out.ringing && !out.cancelled {
            out.ringing = true;
            deliver(&slot.events, DialogEvent::Ringing);
        }
    }

    /// The final response to our INVITE: ACK a 2xx (again, if it is
    /// retransmitted) and confirm the dialog; report a failure.
    fn on_invite_final(&mut self, id: DialogId, tx: TxId, resp: &Response) {
        if !self.dialogs.contains_key(&id) {
            self.by_invite.remove(&tx);
            return;
        }
        if matches!(resp.status, 401 | 407) && self.resend_with_credentials(id, tx, resp) {
            return;
        }
        if resp.status == 422 && self.resend_with_longer_interval(id, tx, resp) {
            return;
        }
        if resp.status == 503 && self.fail_over(id, tx) {
            return;
        }
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        if !(200..300).contains(&resp.status) {
            self.by_invite.remove(&tx);
            if slot.dialog.state == DialogState::Early {
                info!(call_id = %slot.dialog.call_id, status = resp.status, "our INVITE was refused");
                deliver(
                    &slot.events,
                    DialogEvent::Rejected {
                        status: resp.status,
                    },
                );
                slot.dialog.state = DialogState::Terminated;
                self.forget(id);
            }
            return;
        }
        let target_before = slot.dialog.request_target();
        if let Some(ack) = slot.dialog.outbound.as_ref().and_then(|o| o.ack.clone()) {
            // A retransmitted 2xx: the same ACK again.
            self.out.push(Transmit {
                target: target_before,
                bytes: ack.into(),
            });
            return;
        }
        if slot.dialog.confirm(resp).is_none() {
            warn!(call_id = %slot.dialog.call_id, "unusable 2xx to our INVITE (no To tag or Contact)");
            // Still acknowledged, to the address we sent to, then ended.
        }
        let target = slot.dialog.request_target();
        let peer = target.addr.ip();
        // The ACK goes where the 2xx came from until the hop is located.
        if slot.dialog.next_hop_needs_dns().is_some() {
            self.locate_next_hop(id);
        }
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let (via, _) = via_to(&self.locals, self.tls_local, target);
        let ack = slot.dialog.ack(via, &self.config.sip.user_agent).to_bytes();
        self.out.push(Transmit {
            target,
            bytes: ack.clone().into(),
        });
        let cancelled = slot.dialog.outbound.as_ref().is_some_and(|o| o.cancelled);
        if let Some(out) = slot.dialog.outbound.as_mut() {
            out.ack = Some(ack);
        }
        if cancelled || slot.dialog.state != DialogState::Confirmed || slot.released {
            // Answered after we gave up: end it at once.
            slot.dialog.state = DialogState::Confirmed;
            self.send_bye(id);
            return;
        }
        info!(call_id = %slot.dialog.call_id, "our INVITE was answered");
        slot.timer = session_timer::on_response(&resp.headers).map(|a| Timer::new(a, now()));
        slot.peer_update = allows_update(&resp.headers);
        let sdp = (!resp.body.is_empty()).then(|| resp.body.clone());
        deliver(&slot.events, DialogEvent::Answered { sdp, peer });
    }

    /// Our INVITE was challenged (`401`/`407`): sends it again, once, with
    /// the call's account (a carrier's trunk). `false` when it cannot be
    /// answered: no account, already tried, cancelled, or a challenge we do
    /// not understand. The transaction layer has ACKed the challenge.
    fn resend_with_credentials(&mut self, id: DialogId, old_tx: TxId, resp: &Response) -> bool {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return false;
        };
        if slot.dialog.state != DialogState::Early {
            return false;
        }
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return false;
        };
        let Some(account) = out
            .auth
            .clone()
            .filter(|_| !out.authenticated && !out.cancelled)
        else {
            return false;
        };
        let (header, answer_in) = if resp.status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let Some(challenge) = resp
            .headers
            .get_all(header)
            .find_map(super::digest::Challenge::parse)
        else {
            warn!(call_id = %slot.dialog.call_id, status = resp.status, "a challenge we cannot answer");
            return false;
        };
        let value = challenge.answer(
            &account.username,
            &account.password,
            "INVITE",
            &out.invite.uri,
            &random_token(16),
            1,
        );
        out.authenticated = true;
        info!(call_id = %slot.dialog.call_id, status = resp.status, realm = %challenge.realm, user = %account.username, "our INVITE was challenged; sending it again with credentials");
        self.resend_invite(id, old_tx, vec![(answer_in, value)])
    }

    /// Sends our INVITE again on a new transaction (next CSeq, new branch)
    /// with `set` headers replacing those of the same names.
    fn resend_invite(
        &mut self,
        id: DialogId,
        old_tx: TxId,
        set: Vec<(&'static str, String)>,
    ) -> bool {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return false;
        };
        let target = slot.dialog.source;
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return false;
        };
        let mut invite = out.invite.clone();
        let seq = invite.cseq().map_or(1, |(n, _)| n) + 1;
        let (via, branch) = via_to(&self.locals, self.tls_local, target);
        invite.headers.replace_top_via(&via);
        invite.headers.remove("CSeq");
        invite.headers.push("CSeq", format!("{seq} INVITE"));
        for (k, v) in set {
            invite.headers.remove(k);
            invite.headers.push(k, v);
        }
        // Content-Length stays last for readability only; order is free.
        let (tx, transmit) = self.txs.send_request(&branch, &invite, target, now());
        out.invite = invite;
        out.invite_tx = tx;
        slot.dialog.local_seq = seq;
        self.out.push(transmit);
        self.by_invite.remove(&old_tx);
        self.by_invite.insert(tx, id);
        true
    }

    /// Gives up on our INVITE before its answer.
    fn send_cancel(&mut self, id: DialogId) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return;
        };
        if out.cancelled {
            return;
        }
        out.cancelled = true;
        let Some(cancel) = slot.dialog.cancel() else {
            return;
        };
        let Some(branch) = cancel
            .top_via()
            .and_then(Via::parse)
            .and_then(|v| v.branch().map(str::to_owned))
        else {
            return;
        };
        info!(call_id = %slot.dialog.call_id, "cancelling our INVITE");
        let (_, transmit) = self
            .txs
            .send_request(&branch, &cancel, slot.dialog.source, now());
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
