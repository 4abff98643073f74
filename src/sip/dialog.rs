//! Dialogs (RFC 3261 §12): the state one call's SIP signalling keeps, and
//! the in-dialog requests it builds (BYE, ACK, CANCEL). A UAS dialog comes
//! from an INVITE we received; a UAC dialog from one we sent (a transfer, an
//! agent rung, a callback).
//!
//! rsipstack's dialog layer owns its own transactions and tasks; a B2BUA that
//! anchors media needs dialogs driven by the call task, so they are ours.

use std::net::SocketAddr;

use super::header::{NameAddr, SipUri};
use super::message::{Headers, Method, Request, Response};
use super::transaction::{Target, Transport, TxId};

/// Where a dialog stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// INVITE received, no final response yet.
    Early,
    /// 2xx sent (ACK may still be on its way).
    Confirmed,
    /// BYE, CANCEL or a final failure ended it.
    Terminated,
}

/// The server INVITE (initial or re-INVITE) waiting for the call's answer.
#[derive(Debug, Clone)]
pub struct PendingInvite {
    pub tx: TxId,
    pub request: Request,
}

/// One UAS dialog.
#[derive(Debug)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The To header of the INVITE (our identity), without tag.
    pub local_uri: String,
    /// The From header of the INVITE (the caller), with its tag.
    pub remote_party: String,
    /// The caller's Contact URI: where in-dialog requests go.
    pub remote_target: String,
    /// Record-Route entries of the INVITE, in order (RFC 3261 §12.1.1).
    pub route_set: Vec<String>,
    pub local_seq: u32,
    pub remote_seq: u32,
    pub state: DialogState,
    /// The transport and address the INVITE came from.
    pub source: Target,
    pub pending: Option<PendingInvite>,
    /// The 2xx sent for this CSeq waits for its ACK on this transaction.
    pub awaiting_ack: Option<(u32, TxId)>,
    /// Our BYE is in flight on this transaction.
    pub bye_tx: Option<TxId>,
    /// Set when we sent the INVITE.
    pub outbound: Option<Outbound>,
    /// The next hop's URI when it names a host, and where that host was
    /// located (RFC 3263): in-dialog requests go there.
    pub located: Option<(String, SocketAddr)>,
}

/// What a UAC dialog keeps of the INVITE it sent.
#[derive(Debug)]
pub struct Outbound {
    pub invite: Request,
    pub invite_tx: TxId,
    /// A provisional response was reported to the call.
    pub ringing: bool,
    /// We gave up before the answer; a 2xx that crosses our CANCEL is ACKed
    /// and hung up at once.
    pub cancelled: bool,
    /// The ACK of the 2xx, sent again for each retransmitted 2xx.
    pub ack: Option<Vec<u8>>,
    /// The account to answer a `401`/`407` with (once).
    pub auth: Option<super::Account>,
    /// The INVITE was sent again with credentials.
    pub authenticated: bool,
    /// The INVITE was sent again with a longer session interval (after a 422).
    pub interval_raised: bool,
    /// The URI's host's other addresses, next first (RFC 3263): tried when
    /// this one is silent or answers `503`.
    pub alternates: Vec<SocketAddr>,
    /// Nothing heard back by then: the next address.
    pub failover_at: Option<std::time::Instant>,
}

impl Dialog {
    /// Builds a dialog from the INVITE that creates it.
    pub fn from_invite(
        req: &Request,
        local_tag: String,
        tx: TxId,
        source: Target,
    ) -> Option<Dialog> {
        let from = req.headers.get("From")?;
        let remote_tag = NameAddr::parse(from)?.tag()?.to_owned();
        let to = NameAddr::parse(req.headers.get("To")?)?;
        // The remote target and the route set end up on our BYE's request
        // line and Route headers: they must be URIs we could send to.
        let contact = match req.headers.get("Contact") {
            Some(c) => NameAddr::parse(c)?.uri,
            None => NameAddr::parse(from)?.uri,
        };
        SipUri::parse(&contact)?;
        let route_set: Vec<String> = req
            .headers
            .get_all_split("Record-Route")
            .map(str::to_owned)
            .collect();
        for route in &route_set {
            SipUri::parse(&NameAddr::parse(route)?.uri)?;
        }
        let (seq, _) = req.cseq()?;
        Some(Dialog {
            call_id: req.call_id().to_owned(),
            local_tag,
            remote_tag,
            local_uri: format!("<{}>", to.uri),
            remote_party: from.to_owned(),
            remote_target: contact,
            route_set,
            local_seq: 0,
            remote_seq: seq,
            state: DialogState::Early,
            source,
            pending: Some(PendingInvite {
                tx,
                request: req.clone(),
            }),
            awaiting_ack: None,
            bye_tx: None,
            outbound: None,
            located: None,
        })
    }

    /// The UAC dialog of an INVITE we send to `target` (early until a 2xx).
    pub fn outbound(
        invite: Request,
        local_tag: String,
        invite_tx: TxId,
        target: Target,
    ) -> Option<Dialog> {
        let from = NameAddr::parse(invite.headers.get("From")?)?;
        let to = invite.headers.get("To")?.to_owned();
        let (seq, _) = invite.cseq()?;
        Some(Dialog {
            call_id: invite.call_id().to_owned(),
            local_tag,
            remote_tag: String::new(),
            local_uri: match &from.display {
                Some(d) => format!("\"{d}\" <{}>", from.uri),
                None => format!("<{}>", from.uri),
            },
            remote_party: to,
            remote_target: invite.uri.clone(),
            route_set: Vec::new(),
            local_seq: seq,
            remote_seq: 0,
            state: DialogState::Early,
            source: target,
            pending: None,
            awaiting_ack: None,
            bye_tx: None,
            located: None,
            outbound: Some(Outbound {
                invite,
                invite_tx,
                ringing: false,
                cancelled: false,
                ack: None,
                auth: None,
                authenticated: false,
                interval_raised: false,
                alternates: Vec::new(),
                failover_at: None,
            }),
        })
    }

    /// Takes the answer of our INVITE (RFC 3261 §12.1.2): the remote tag,
    /// target and route set (Record-Route reversed). `None` if the 2xx is
    /// unusable (no To tag, or a Contact we could not send to).
    pub fn confirm(&mut self, resp: &Response) -> Option<()> {
        let to = resp.headers.get("To")?;
        let tag = NameAddr::parse(to)?.tag()?.to_owned();
        let contact = NameAddr::parse(resp.headers.get("Contact")?)?.uri;
        SipUri::parse(&contact)?;
        let mut route_set: Vec<String> = resp
            .headers
            .get_all_split("Record-Route")
            .map(str::to_owned)
            .collect();
        for route in &route_set {
            SipUri::parse(&NameAddr::parse(route)?.uri)?;
        }
        route_set.reverse();
        self.remote_tag = tag;
        self.remote_party = to.to_owned();
        self.remote_target = contact;
        self.route_set = route_set;
        self.state = DialogState::Confirmed;
        Some(())
    }

    /// The ACK for the 2xx of our INVITE: its own branch, the INVITE's CSeq.
    pub fn ack(&self, via: String, user_agent: &str) -> Request {
        let mut ack = self.in_dialog(Method::Ack, via, user_agent, self.local_seq_of_invite());
        ack.headers.push("Content-Length", "0");
        ack
    }

    /// The ACK for the 2xx of our re-INVITE with CSeq `seq`.
    pub fn ack_of(&self, seq: u32, via: String, user_agent: &str) -> Request {
        let mut ack = self.in_dialog(Method::Ack, via, user_agent, seq);
        ack.headers.push("Content-Length", "0");
        ack
    }

    fn local_seq_of_invite(&self) -> u32 {
        self.outbound
            .as_ref()
            .and_then(|o| o.invite.cseq())
            .map_or(self.local_seq, |(n, _)| n)
    }

    /// The CANCEL of our INVITE (RFC 3261 §9.1): the same Via, Call-ID,
    /// From, To and Route, CSeq number with the method CANCEL.
    pub fn cancel(&self) -> Option<Request> {
        let invite = &self.outbound.as_ref()?.invite;
        let mut headers = Headers::default();
        headers.push("Via", invite.top_via()?.to_owned());
        headers.push("Max-Forwards", "70");
        for name in ["From", "To", "Call-ID"] {
            headers.push(name, invite.headers.get(name)?.to_owned());
        }
        headers.push("CSeq", format!("{} CANCEL", invite.cseq()?.0));
        for route in invite.headers.get_all("Route") {
            headers.push("Route", route.to_owned());
        }
        headers.push("Content-Length", "0");
        Some(Request {
            method: Method::Cancel,
            uri: invite.uri.clone(),
            headers,
            body: Vec::new(),
        })
    }

    /// Where an in-dialog request goes: the first loose route or the remote
    /// target; over TCP, back over the connection the call came in on.
    pub fn request_target(&self) -> Target {
        if self.source.transport.is_reliable() {
            return self.source;
        }
        let next_hop = self.next_hop();
        let located = self
            .located
            .as_ref()
            .filter(|(uri, _)| *uri == next_hop)
            .map(|(_, addr)| *addr);
        let addr: Option<SocketAddr> =
            located.or_else(|| SipUri::parse(&next_hop).and_then(|u| u.socket_addr()));
        Target {
            transport: Transport::Udp,
            addr: addr.unwrap_or(self.source.addr),
        }
    }

    /// The URI in-dialog requests are sent towards: the first loose route,
    /// else the remote target.
    pub fn next_hop(&self) -> String {
        self.route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .map(|r| r.uri)
            .unwrap_or_else(|| self.remote_target.clone())
    }

    /// The next hop names a host (not an IP): it must be located first.
    pub fn next_hop_needs_dns(&self) -> Option<String> {
        let hop = self.next_hop();
        let uri = SipUri::parse(&hop)?;
        if uri.socket_addr().is_some() || self.source.transport.is_reliable() {
            return None;
        }
        if self.located.as_ref().is_some_and(|(u, _)| *u == hop) {
            return None;
        }
        Some(hop)
    }

    /// A new in-dialog request (CSeq incremented, Route set applied).
    pub fn request(&mut self, method: Method, via: String, user_agent: &str) -> Request {
        self.local_seq += 1;
        self.in_dialog(method, via, user_agent, self.local_seq)
    }

    fn in_dialog(&self, method: Method, via: String, user_agent: &str, seq: u32) -> Request {
        let mut headers = Headers::default();
        headers.push("Via", via);
        headers.push("Max-Forwards", "70");
        headers.push("From", format!("{};tag={}", self.local_uri, self.local_tag));
        headers.push("To", self.remote_party.clone());
        headers.push("Call-ID", self.call_id.clone());
        headers.push("CSeq", format!("{seq} {method}"));
        for route in &self.route_set {
            headers.push("Route", route.clone());
        }
        headers.push("User-Agent", user_agent.to_owned());
        // Strict routers (no ;lr) are not supported: the Request-URI is
        // always the remote target, which every RFC 3261 proxy expects.
        Request {
            method,
            uri: self.remote_target.clone(),
            headers,
            body: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Message};
    use crate::sip::transaction::{ServerKey, Transactions};
    use std::time::Instant;

    /// Whatever INVITE a dialog accepts, the BYE it builds must parse.
    fn bye_of(invite: &[u8]) -> Option<Request> {
        let Ok(Message::Request(req)) = parse(invite) else {
            return None;
        };
        let target = Target {
            transport: Transport::Udp,
            addr: "127.0.0.1:5070".parse().unwrap(),
        };
        let mut txs = Transactions::new();
        let key = ServerKey::of(&req);
        let super::super::transaction::RequestMatch::New(id) =
            txs.on_request(&req, key, target, Instant::now())
        else {
            return None;
        };
        let mut d = Dialog::from_invite(&req, "lt".into(), id, target)?;
        Some(d.request(
            Method::Bye,
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKb".into(),
            "t",
        ))
    }

    #[test]
    fn fuzzer_found_invites_give_a_bye_that_parses() {
        for invite in [
            &include_bytes!("../../fuzz/seeds/sip_message/regression-contact-nul")[..],
            &include_bytes!("../../fuzz/seeds/sip_message/regression-contact-transport")[..],
            &include_bytes!("../../fuzz/seeds/sip_message/invite")[..],
        ] {
            if let Some(bye) = bye_of(invite) {
                let bytes = bye.to_bytes();
                let r = parse(&bytes);
                assert!(r.is_ok(), "{:?}\n{}", r, String::from_utf8_lossy(&bytes));
            }
        }
        // The good INVITE does make a dialog.
        assert!(bye_of(include_bytes!("../../fuzz/seeds/sip_message/invite")).is_some());
    }

    #[test]
    fn our_invite_gives_ack_cancel_and_bye_that_follow_the_answer() {
        let invite = b"INVITE sip:desk@10.0.0.5:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv;rport\r\nMax-Forwards: 70\r\nFrom: <sip:555@127.0.0.1>;tag=ours\r\nTo: <sip:desk@10.0.0.5:5070>\r\nCall-ID: c1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:hotline@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Request(req)) = parse(invite) else {
            panic!("invite");
        };
        let target = Target {
            transport: Transport::Udp,
            addr: "10.0.0.5:5070".parse().unwrap(),
        };
        let mut txs = Transactions::new();
        let (tx, _) = txs.send_request("z9hG4bKinv", &req, target, Instant::now());
        let mut d = Dialog::outbound(req, "ours".into(), tx, target).unwrap();

        // CANCEL before the answer: the INVITE's Via and CSeq number.
        let cancel = d.cancel().unwrap();
        assert_eq!(
            cancel.top_via(),
            Some("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv;rport")
        );
        assert_eq!(cancel.headers.get("CSeq"), Some("1 CANCEL"));
        assert!(parse(&cancel.to_bytes()).is_ok());

        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv;rport\r\nRecord-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:10.0.0.9:5062;lr>\r\nFrom: <sip:555@127.0.0.1>;tag=ours\r\nTo: <sip:desk@10.0.0.5:5070>;tag=theirs\r\nCall-ID: c1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:desk@10.0.0.7:5080>\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Response(resp)) = parse(ok) else {
            panic!("200");
        };
        d.confirm(&resp).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        // The route set is the Record-Route reversed; the first hop is its head.
        assert_eq!(
            d.route_set,
            ["<sip:10.0.0.9:5062;lr>", "<sip:p2.example;lr>"]
        );
        assert_eq!(
            d.request_target().addr,
            "10.0.0.9:5062".parse::<std::net::SocketAddr>().unwrap()
        );

        let ack = d.ack("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKack".into(), "t");
        assert_eq!(ack.uri, "sip:desk@10.0.0.7:5080");
        assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
        assert_eq!(
            ack.headers.get("To"),
            Some("<sip:desk@10.0.0.5:5070>;tag=theirs")
        );
        let bye = d.request(
            Method::Bye,
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbye".into(),
            "t",
        );
        assert_eq!(bye.headers.get("CSeq"), Some("2 BYE"));
        assert_eq!(
            bye.headers.get("From"),
            Some("<sip:555@127.0.0.1>;tag=ours")
        );
        assert!(parse(&bye.to_bytes()).is_ok());
    }
}
