//! UAS dialogs (RFC 3261 §12): the state one call's SIP signalling keeps, and
//! the in-dialog requests it builds (BYE).
//!
//! rsipstack's dialog layer owns its own transactions and tasks; a B2BUA that
//! anchors media needs dialogs driven by the call task, so they are ours.

use std::net::SocketAddr;

use super::header::{NameAddr, SipUri};
use super::message::{Headers, Method, Request};
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
        })
    }

    /// Where an in-dialog request goes: the first loose route or the remote
    /// target; over TCP, back over the connection the call came in on.
    pub fn request_target(&self) -> Target {
        if self.source.transport == Transport::Tcp {
            return self.source;
        }
        let next_hop = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .map(|r| r.uri)
            .unwrap_or_else(|| self.remote_target.clone());
        let addr: Option<SocketAddr> = SipUri::parse(&next_hop).and_then(|u| u.socket_addr());
        Target {
            transport: Transport::Udp,
            addr: addr.unwrap_or(self.source.addr),
        }
    }

    /// A new in-dialog request (CSeq incremented, Route set applied).
    pub fn request(&mut self, method: Method, via: String, user_agent: &str) -> Request {
        self.local_seq += 1;
        let mut headers = Headers::default();
        headers.push("Via", via);
        headers.push("Max-Forwards", "70");
        headers.push("From", format!("{};tag={}", self.local_uri, self.local_tag));
        headers.push("To", self.remote_party.clone());
        headers.push("Call-ID", self.call_id.clone());
        headers.push("CSeq", format!("{} {}", self.local_seq, method));
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
        let key = ServerKey::of(&req, Some("z9hG4bKx"));
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
}
