//! RFC 3261 §17 transactions as a sans-I/O state machine: messages and `now`
//! go in, datagrams to send and timeouts come out. No sockets, no clock.
//!
//! Server side: INVITE (Proceeding → Completed → Confirmed for non-2xx; the
//! RFC 6026 Accepted state for 2xx, which also retransmits the 2xx until the
//! ACK, timers G/H/L) and non-INVITE (Trying → Completed, timer J).
//! Client side: non-INVITE (timers E/F/K), used for BYE; INVITE (timers A/B,
//! the ACK for a non-2xx built here, timer D; RFC 6026's Accepted state and
//! timer M, passing every 2xx to the TU, which ACKs it).
//!
//! Over 800 lines: the four machines share one timer table and their
//! retransmission code; a third of the file is their tests.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::header::Via;
use super::message::{Headers, Method, Request, Response};

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const T4: Duration = Duration::from_secs(5);
/// How long a client INVITE transaction re-ACKs retransmitted finals (UDP).
const TIMER_D: Duration = Duration::from_secs(32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// A WebSocket on the HTTP listener (RFC 7118): browser phones.
    Ws,
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls | Transport::Ws)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
        }
    }
}

/// Where a message goes: a transport and a peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl From<SocketAddr> for Target {
    /// An address over UDP.
    fn from(addr: SocketAddr) -> Target {
        Target {
            transport: Transport::Udp,
            addr,
        }
    }
}

/// Bytes to put on the wire.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub target: Target,
    pub bytes: Arc<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u64);

/// Matches a request to its server transaction (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    branch: String,
    method: Method,
}

impl ServerKey {
    /// By the top Via's branch and sent-by and the method (RFC 3261
    /// §17.2.3), so two senders reusing one branch never meet in one
    /// transaction. ACK matches the INVITE it acknowledges; a request
    /// without an RFC 3261 branch is keyed by Call-ID and CSeq, which is
    /// what RFC 2543 peers offer.
    pub fn of(req: &Request) -> ServerKey {
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        let via = req.top_via().and_then(Via::parse);
        let sent_by = via.as_ref().map_or(String::new(), |v| {
            format!("{}:{}", v.host.to_ascii_lowercase(), v.port.unwrap_or(5060))
        });
        let branch = match via.as_ref().and_then(Via::branch) {
            Some(b) if b.starts_with("z9hG4bK") => format!("{b}|{sent_by}"),
            _ => format!(
                "2543|{}|{}|{sent_by}",
                req.call_id(),
                req.cseq().map(|(n, _)| n).unwrap_or(0)
            ),
        };
        ServerKey { branch, method }
    }

    /// The INVITE transaction that a CANCEL with this key cancels.
    pub fn invite_of_cancel(&self) -> ServerKey {
        ServerKey {
            branch: self.branch.clone(),
            method: Method::Invite,
        }
    }
}

/// What the transaction layer decided about an incoming request.
#[derive(Debug)]
pub enum RequestMatch {
    /// A new request: the transaction user must answer it.
    New(TxId),
    /// A retransmission: resend this (the last response), if any.
    Retransmission(Option<Transmit>),
    /// An ACK for a non-2xx final response: absorbed.
    AckAbsorbed,
    /// An ACK for a 2xx: it belongs to the dialog, not to a transaction.
    AckForDialog,
}

/// What a timer or a response produced for the transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A server INVITE's final response was never acknowledged (timer H, or
    /// 64·T1 without ACK for a 2xx).
    NoAck(TxId),
    /// A client INVITE got a provisional response (ringing, progress).
    Provisional(TxId, Box<Response>),
    /// A client transaction got its final response. For an INVITE every 2xx
    /// (retransmitted or forked) is reported, since the TU must ACK each.
    Response(TxId, Box<Response>),
    /// A client transaction got no final response (timer F), or its
    /// transport failed.
    Timeout(TxId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    Proceeding,
    /// Non-2xx final sent on an INVITE; waiting for ACK (timers G, H).
    Completed,
    /// 2xx sent on an INVITE (RFC 6026): retransmit until ACK, absorb
    /// retransmitted INVITEs until timer L.
    Accepted {
        acked: bool,
    },
    /// ACK received for a non-2xx; absorbs ACK retransmissions (timer I).
    Confirmed,
    /// Non-INVITE final sent; answers retransmissions (timer J).
    Done,
}

#[derive(Debug)]
struct ServerTx {
    key: ServerKey,
    target: Target,
    state: ServerState,
    last: Option<Arc<[u8]>>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    end_at: Option<Instant>,
}

#[derive(Debug)]
struct ClientTx {
    branch: String,
    method: Method,
    target: Target,
    request: Arc<[u8]>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    end_at: Instant,
    /// A final response arrived.
    done: bool,
    /// INVITE only: the request (to build the ACK) and the ACK once sent.
    invite: Option<InviteClient>,
}

#[derive(Debug)]
struct InviteClient {
    request: Request,
    ack: Option<Arc<[u8]>>,
}

/// How long an INVITE may stay in Proceeding before the transaction gives
/// up (the TU normally CANCELs far earlier, at its ring timeout).
const PROCEEDING_LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug)]
enum Tx {
    Server(ServerTx),
    Client(ClientTx),
}

/// Every live transaction of one SIP endpoint.
#[derive(Debug, Default)]
pub struct Transactions {
    next_id: u64,
    txs: HashMap<TxId, Tx>,
    servers: HashMap<ServerKey, TxId>,
    /// By branch and method (RFC 3261 §17.1.3): a CANCEL shares its
    /// INVITE's branch.
    clients: HashMap<(String, Method), TxId>,
    timers: BinaryHeap<Reverse<(Instant, TxId)>>,
}

impl Transactions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    fn alloc(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    /// Finds or creates the server transaction for an incoming request.
    pub fn on_request(
        &mut self,
        req: &Request,
        key: ServerKey,
        target: Target,
        now: Instant,
    ) -> RequestMatch {
        if let Some(&id) = self.servers.get(&key) {
            let Some(Tx::Server(tx)) = self.txs.get_mut(&id) else {
                return RequestMatch::Retransmission(None);
            };
            if req.method == Method::Ack {
                return match tx.state {
                    ServerState::Completed => {
                        tx.state = ServerState::Confirmed;
                        tx.retransmit_at = None;
                        let linger = if target.transport.is_reliable() {
                            Duration::ZERO
                        } else {
                            T4
                        };
                        tx.end_at = Some(now + linger);
                        self.timers.push(Reverse((now + linger, id)));
                        RequestMatch::AckAbsorbed
                    }
                    ServerState::Confirmed => RequestMatch::AckAbsorbed,
                    _ => RequestMatch::AckForDialog,
                };
            }
            let resend = tx.last.clone().map(|bytes| Transmit {
                target: tx.target,
                bytes,
            });
            return RequestMatch::Retransmission(resend);
        }
        if req.method == Method::Ack {
            return RequestMatch::AckForDialog;
        }
        let id = self.alloc();
        self.servers.insert(key.clone(), id);
        self.txs.insert(
            id,
            Tx::Server(ServerTx {
                key,
                target,
                state: ServerState::Proceeding,
                last: None,
                retransmit_at: None,
                interval: T1,
                end_at: None,
            }),
        );
        RequestMatch::New(id)
    }

    /// The server transaction a key names, if it is live.
    pub fn server(&self, key: &ServerKey) -> Option<TxId> {
        self.servers.get(key).copied()
    }

    /// `true` while a server INVITE transaction has sent no final response.
    pub fn is_proceeding(&self, id: TxId) -> bool {
        matches!(self.txs.get(&id), Some(Tx::Server(tx)) if tx.state == ServerState::Proceeding)
    }

    /// Sends a response on a server transaction; returns what to transmit.
    pub fn respond(&mut self, id: TxId, resp: &Response, now: Instant) -> Option<Transmit> {
        let Some(Tx::Server(tx)) = self.txs.get_mut(&id) else {
            return None;
        };
        if tx.state != ServerState::Proceeding {
            // A final response was sent already; a second one is a TU bug.
            return None;
        }
        let bytes: Arc<[u8]> = resp.to_bytes().into();
        tx.last = Some(bytes.clone());
        let reliable = tx.target.transport.is_reliable();
        let is_invite = tx.key.method == Method::Invite;
        if resp.status >= 200 {
            let mut wake = None;
            if is_invite {
                tx.state = if resp.status < 300 {
                    ServerState::Accepted { acked: false }
                } else {
                    ServerState::Completed
                };
                // RFC 3261 §13.3.1.4 retransmits a 2xx on any transport
                // until ACK; a non-2xx only over unreliable ones.
                if !reliable || resp.status < 300 {
                    tx.retransmit_at = Some(now + T1);
                    tx.interval = T1;
                    wake = tx.retransmit_at;
                }
                tx.end_at = Some(now + 64 * T1);
            } else {
                tx.state = ServerState::Done;
                let linger = if reliable { Duration::ZERO } else { 64 * T1 };
                tx.end_at = Some(now + linger);
            }
            let end = tx.end_at;
            for at in [wake, end].into_iter().flatten() {
                self.timers.push(Reverse((at, id)));
            }
        }
        Some(Transmit {
            target: tx.target,
            bytes,
        })
    }

    /// The ACK for a 2xx arrived: stop retransmitting it.
    pub fn acknowledged(&mut self, id: TxId) {
        if let Some(Tx::Server(tx)) = self.txs.get_mut(&id) {
            if let ServerState::Accepted { acked } = &mut tx.state {
                *acked = true;
                tx.retransmit_at = None;
            }
        }
    }

    /// Starts a client transaction (INVITE or not); returns its id and the
    /// first transmit.
    pub fn send_request(
        &mut self,
        branch: &str,
        request: &Request,
        target: Target,
        now: Instant,
    ) -> (TxId, Transmit) {
        let id = self.alloc();
        let bytes: Arc<[u8]> = request.to_bytes().into();
        let retransmit_at = (!target.transport.is_reliable()).then_some(now + T1);
        let end_at = now + 64 * T1;
        self.txs.insert(
            id,
            Tx::Client(ClientTx {
                branch: branch.to_owned(),
                method: request.method.clone(),
                target,
                request: bytes.clone(),
                retransmit_at,
                interval: T1,
                end_at,
                done: false,
                invite: (request.method == Method::Invite).then(|| InviteClient {
                    request: request.clone(),
                    ack: None,
                }),
            }),
        );
        self.clients
            .insert((branch.to_owned(), request.method.clone()), id);
        for at in [retransmit_at, Some(end_at)].into_iter().flatten() {
            self.timers.push(Reverse((at, id)));
        }
        (id, Transmit { target, bytes })
    }

    /// Gives up on a client transaction that got no final response (its
    /// server is silent; the TU tries another address): no more
    /// retransmissions, no event.
    pub fn abandon(&mut self, id: TxId) {
        if let Some(Tx::Client(tx)) = self.txs.get(&id) {
            if !tx.done {
                let key = (tx.branch.clone(), tx.method.clone());
                self.clients.remove(&key);
                self.txs.remove(&id);
            }
        }
    }

    /// Matches a response to its client transaction by the top Via branch;
    /// an ACK the transaction sends itself goes to `out`.
    pub fn on_response(
        &mut self,
        branch: &str,
        resp: Response,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> Option<TxEvent> {
        let (_, method) = resp.cseq()?;
        let id = *self.clients.get(&(branch.to_owned(), method))?;
        let Some(Tx::Client(tx)) = self.txs.get_mut(&id) else {
            return None;
        };
        let reliable = tx.target.transport.is_reliable();
        if let Some(invite) = tx.invite.as_mut() {
            if resp.status < 200 {
                if tx.done {
                    return None;
                }
                // Proceeding: stop timer A; the TU decides how long to ring.
                tx.retransmit_at = None;
                if tx.end_at < now + PROCEEDING_LIMIT {
                    tx.end_at = now + PROCEEDING_LIMIT;
                    self.timers.push(Reverse((tx.end_at, id)));
                }
                return Some(TxEvent::Provisional(id, Box::new(resp)));
            }
            if resp.status >= 300 {
                if let Some(ack) = &invite.ack {
                    // A retransmitted final: ACK again, tell nobody.
                    out.push(Transmit {
                        target: tx.target,
                        bytes: ack.clone(),
                    });
                    return None;
                }
                let ack: Arc<[u8]> = ack_for(&invite.request, &resp).to_bytes().into();
                out.push(Transmit {
                    target: tx.target,
                    bytes: ack.clone(),
                });
                invite.ack = Some(ack);
                // Timer D absorbs retransmitted finals.
                tx.end_at = now + if reliable { Duration::ZERO } else { TIMER_D };
            } else if !tx.done {
                // RFC 6026 Accepted: timer M passes later 2xx to the TU.
                tx.end_at = now + 64 * T1;
            }
            tx.done = true;
            tx.retransmit_at = None;
            self.timers.push(Reverse((tx.end_at, id)));
            return Some(TxEvent::Response(id, Box::new(resp)));
        }
        if tx.done {
            return None;
        }
        if resp.status < 200 {
            // Provisional: keep retransmitting at T2 (RFC 3261 §17.1.2.2).
            tx.interval = T2;
            return None;
        }
        tx.done = true;
        tx.retransmit_at = None;
        tx.end_at = now + if reliable { Duration::ZERO } else { T4 };
        self.timers.push(Reverse((tx.end_at, id)));
        Some(TxEvent::Response(id, Box::new(resp)))
    }

    /// When `poll` next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Fires every timer due at `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Transmit>, events: &mut Vec<TxEvent>) {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.fire(id, now, out, events);
        }
    }

    fn fire(&mut self, id: TxId, now: Instant, out: &mut Vec<Transmit>, events: &mut Vec<TxEvent>) {
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        match tx {
            Tx::Server(tx) => {
                if tx.end_at.is_some_and(|end| end <= now) {
                    if matches!(
                        tx.state,
                        ServerState::Completed | ServerState::Accepted { acked: false }
                    ) {
                        events.push(TxEvent::NoAck(id));
                    }
                    let key = tx.key.clone();
                    self.servers.remove(&key);
                    self.txs.remove(&id);
                    return;
                }
                if let (Some(at), Some(bytes)) = (tx.retransmit_at, &tx.last) {
                    if at <= now {
                        out.push(Transmit {
                            target: tx.target,
                            bytes: bytes.clone(),
                        });
                        tx.interval = (tx.interval * 2).min(T2);
                        let next = now + tx.interval;
                        tx.retransmit_at = Some(next);
                        self.timers.push(Reverse((next, id)));
                    }
                }
            }
            Tx::Client(tx) => {
                if tx.end_at <= now {
                    if !tx.done {
                        events.push(TxEvent::Timeout(id));
                    }
                    let key = (tx.branch.clone(), tx.method.clone());
                    self.clients.remove(&key);
                    self.txs.remove(&id);
                    return;
                }
                if let Some(at) = tx.retransmit_at {
                    if at <= now && !tx.done {
                        out.push(Transmit {
                            target: tx.target,
                            bytes: tx.request.clone(),
                        });
                        // Timer A doubles without limit; timer E stops at T2.
                        tx.interval = match tx.invite {
                            Some(_) => tx.interval * 2,
                            None => (tx.interval * 2).min(T2),
                        };
                        let next = now + tx.interval;
                        tx.retransmit_at = Some(next);
                        self.timers.push(Reverse((next, id)));
                    }
                }
            }
        }
    }
}

/// The ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3):
/// same Request-URI, Call-ID, From, CSeq number, top Via and Route; the To
/// of the response.
fn ack_for(invite: &Request, resp: &Response) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = invite.top_via() {
        headers.push("Via", via);
    }
    headers.push("Max-Forwards", "70");
    headers.push("From", invite.headers.get("From").unwrap_or_default());
    headers.push("To", resp.headers.get("To").unwrap_or_default());
    headers.push("Call-ID", invite.call_id());
    let seq = invite.cseq().map(|(n, _)| n).unwrap_or(1);
    headers.push("CSeq", format!("{seq} ACK"));
    for route in invite.headers.get_all("Route") {
        headers.push("Route", route);
    }
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Message};

    fn invite(method: &str, branch: &str) -> Request {
        let text = format!(
            "{method} sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    /// A response to the BYE of these tests (parsed ones always have a CSeq).
    fn response(status: u16) -> Response {
        let mut headers = Headers::default();
        headers.push("CSeq", "1 BYE");
        Response {
            status,
            reason: "x".into(),
            headers,
            body: vec![],
        }
    }

    /// Polls at every deadline up to `until`, as the SIP core's loop does.
    fn run_until(txs: &mut Transactions, until: Instant) -> (Vec<Transmit>, Vec<TxEvent>) {
        let (mut out, mut ev) = (vec![], vec![]);
        while let Some(at) = txs.next_deadline().filter(|at| *at <= until) {
            txs.poll(at, &mut out, &mut ev);
        }
        (out, ev)
    }

    fn udp() -> Target {
        Target {
            transport: Transport::Udp,
            addr: "127.0.0.1:5070".parse().unwrap(),
        }
    }

    #[test]
    fn one_branch_from_two_senders_is_two_transactions() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let a = invite("INVITE", "z9hG4bKsame");
        // The same INVITE from another sender (its own Via).
        let text = String::from_utf8(a.to_bytes())
            .unwrap()
            .replace("127.0.0.1:5070", "127.0.0.1:5072");
        let Ok(Message::Request(b)) = parse(text.as_bytes()) else {
            panic!()
        };
        let (ka, kb) = (ServerKey::of(&a), ServerKey::of(&b));
        assert_ne!(ka, kb);
        let new = |m: RequestMatch| matches!(m, RequestMatch::New(_));
        assert!(new(txs.on_request(&a, ka.clone(), udp(), t0)));
        assert!(new(txs.on_request(&b, kb, udp(), t0)));
        assert!(!new(txs.on_request(&a, ka, udp(), t0)));
    }

    #[test]
    fn invite_2xx_is_retransmitted_until_ack_then_absorbs_retransmissions() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let req = invite("INVITE", "z9hG4bKa");
        let key = ServerKey::of(&req);
        let RequestMatch::New(id) = txs.on_request(&req, key.clone(), udp(), t0) else {
            panic!()
        };
        assert!(txs.respond(id, &response(200), t0).is_some());
        let (mut out, mut ev) = (vec![], vec![]);
        // Timer G: T1, then 2·T1, 4·T1 …
        txs.poll(t0 + T1, &mut out, &mut ev);
        txs.poll(t0 + T1 * 3, &mut out, &mut ev);
        assert_eq!(out.len(), 2);
        // A retransmitted INVITE is answered with the 2xx again.
        assert!(matches!(
            txs.on_request(&req, key.clone(), udp(), t0 + T1 * 3),
            RequestMatch::Retransmission(Some(_))
        ));
        txs.acknowledged(id);
        out.clear();
        txs.poll(t0 + T1 * 20, &mut out, &mut ev);
        assert!(out.is_empty() && ev.is_empty());
        txs.poll(t0 + T1 * 65, &mut out, &mut ev);
        assert!(ev.is_empty(), "acknowledged 2xx must not time out");
        assert!(txs.is_empty());
    }

    #[test]
    fn unacknowledged_final_response_reports_no_ack() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let req = invite("INVITE", "z9hG4bKb");
        let key = ServerKey::of(&req);
        let RequestMatch::New(id) = txs.on_request(&req, key, udp(), t0) else {
            panic!()
        };
        txs.respond(id, &response(486), t0);
        let (out, ev) = run_until(&mut txs, t0 + 64 * T1);
        assert_eq!(ev, vec![TxEvent::NoAck(id)]);
        // G doubles to T2: 0.5, 1.5, 3.5, 7.5, then every 4 s to 31.5 s: 10 retransmissions.
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn ack_to_non_2xx_is_absorbed_and_bye_is_cached() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let req = invite("INVITE", "z9hG4bKc");
        let key = ServerKey::of(&req);
        let RequestMatch::New(id) = txs.on_request(&req, key, udp(), t0) else {
            panic!()
        };
        txs.respond(id, &response(487), t0);
        let ack = invite("ACK", "z9hG4bKc");
        let ack_key = ServerKey::of(&ack);
        assert!(matches!(
            txs.on_request(&ack, ack_key, udp(), t0),
            RequestMatch::AckAbsorbed
        ));

        let bye = invite("BYE", "z9hG4bKd");
        let bye_key = ServerKey::of(&bye);
        let RequestMatch::New(bid) = txs.on_request(&bye, bye_key.clone(), udp(), t0) else {
            panic!()
        };
        txs.respond(bid, &response(200), t0);
        assert!(matches!(
            txs.on_request(&bye, bye_key, udp(), t0),
            RequestMatch::Retransmission(Some(_))
        ));
    }

    #[test]
    fn client_request_retransmits_then_times_out() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let bye = invite("BYE", "z9hG4bKe");
        let (id, _) = txs.send_request("z9hG4bKe", &bye, udp(), t0);
        let (out, ev) = run_until(&mut txs, t0 + 64 * T1);
        assert_eq!(ev, vec![TxEvent::Timeout(id)]);
        assert!(out.len() >= 10);

        let (id2, _) = txs.send_request("z9hG4bKf", &bye, udp(), t0);
        let mut out = vec![];
        assert_eq!(
            txs.on_response("z9hG4bKf", response(200), t0, &mut out),
            Some(TxEvent::Response(id2, Box::new(response(200))))
        );
        assert_eq!(
            txs.on_response("z9hG4bKf", response(200), t0, &mut out),
            None
        );
        assert!(out.is_empty());
    }

    fn final_to_invite(status: u16) -> Response {
        let text = format!(
            "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKi\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:1@h>;tag=agent\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Message::Response(r) => r,
            Message::Request(_) => unreachable!(),
        }
    }

    #[test]
    fn client_invite_retransmits_by_timer_a_until_provisional_then_waits() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let (id, _) = txs.send_request("z9hG4bKi", &invite("INVITE", "z9hG4bKi"), udp(), t0);
        // Timer A doubles without a cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
        let (out, ev) = run_until(&mut txs, t0 + 64 * T1);
        assert_eq!(out.len(), 6);
        assert_eq!(ev, vec![TxEvent::Timeout(id)], "timer B");

        let (id, _) = txs.send_request("z9hG4bKi", &invite("INVITE", "z9hG4bKi"), udp(), t0);
        let mut out = vec![];
        let ringing = txs.on_response("z9hG4bKi", final_to_invite(180), t0, &mut out);
        assert!(matches!(ringing, Some(TxEvent::Provisional(i, _)) if i == id));
        let (out, ev) = run_until(&mut txs, t0 + 64 * T1);
        assert!(
            out.is_empty() && ev.is_empty(),
            "ringing: no retransmission, no timeout"
        );
    }

    #[test]
    fn client_invite_acks_a_failure_itself_and_again_on_its_retransmission() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let (id, _) = txs.send_request("z9hG4bKi", &invite("INVITE", "z9hG4bKi"), udp(), t0);
        let mut out = vec![];
        let ev = txs.on_response("z9hG4bKi", final_to_invite(486), t0, &mut out);
        assert!(matches!(ev, Some(TxEvent::Response(i, ref r)) if i == id && r.status == 486));
        assert_eq!(out.len(), 1);
        let Ok(Message::Request(ack)) = parse(&out[0].bytes) else {
            panic!("the ACK does not parse")
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.cseq(), Some((1, Method::Ack)));
        assert!(
            ack.top_via().unwrap().contains("z9hG4bKi"),
            "same branch as the INVITE"
        );
        assert!(ack.headers.get("To").unwrap().contains("tag=agent"));
        // The 486 again: ACK again, no second event.
        let again = txs.on_response("z9hG4bKi", final_to_invite(486), t0, &mut out);
        assert_eq!(again, None);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn client_invite_passes_every_2xx_to_the_tu() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let (id, _) = txs.send_request("z9hG4bKi", &invite("INVITE", "z9hG4bKi"), udp(), t0);
        let mut out = vec![];
        for _ in 0..2 {
            let ev = txs.on_response("z9hG4bKi", final_to_invite(200), t0, &mut out);
            assert!(matches!(ev, Some(TxEvent::Response(i, _)) if i == id));
        }
        assert!(out.is_empty(), "the TU, not the transaction, ACKs a 2xx");
        let (_, ev) = run_until(&mut txs, t0 + 64 * T1);
        assert!(ev.is_empty(), "an answered INVITE does not time out");
        assert!(txs.is_empty(), "timer M ended it");
    }

    #[test]
    fn cancel_shares_the_invite_branch_but_is_its_own_transaction() {
        let mut txs = Transactions::new();
        let t0 = Instant::now();
        let (inv, _) = txs.send_request("z9hG4bKi", &invite("INVITE", "z9hG4bKi"), udp(), t0);
        let (can, _) = txs.send_request("z9hG4bKi", &invite("CANCEL", "z9hG4bKi"), udp(), t0);
        let mut out = vec![];
        let mut ok_cancel = final_to_invite(200);
        ok_cancel.headers = {
            let mut h = Headers::default();
            h.push("CSeq", "1 CANCEL");
            h
        };
        assert!(matches!(
            txs.on_response("z9hG4bKi", ok_cancel, t0, &mut out),
            Some(TxEvent::Response(i, _)) if i == can
        ));
        assert!(matches!(
            txs.on_response("z9hG4bKi", final_to_invite(487), t0, &mut out),
            Some(TxEvent::Response(i, ref r)) if i == inv && r.status == 487
        ));
        assert_eq!(out.len(), 1, "the 487 is ACKed");
    }
}
