//! SIP parse-and-answer: whatever arrives on the wire is parsed, and either
//! answered the way the SIP core answers it (400 for a malformed request, a
//! dialog and a response for a good one) or dropped; never a panic.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use hotline::sip::dialog::Dialog;
use hotline::sip::header::{NameAddr, SipUri, Via};
use hotline::sip::message::{bad_request, parse, Message};
use hotline::sip::transaction::{RequestMatch, ServerKey, Target, Transactions, Transport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let from = Target {
        transport: Transport::Udp,
        addr: SocketAddr::from(([127, 0, 0, 1], 5070)),
    };
    match parse(data) {
        Err(e) => {
            if let Some(resp) = bad_request(data, &e, "t") {
                let _ = parse(&resp.to_bytes());
            }
        }
        Ok(Message::Response(r)) => {
            let _ = r.headers.get_all_split("Via").next().and_then(Via::parse);
        }
        Ok(Message::Request(req)) => {
            let mut via = req.top_via().and_then(Via::parse);
            if let Some(v) = via.as_mut() {
                v.stamp_received(from.addr);
                // What the sender wrote is gone: only our own observation.
                let text = v.to_string();
                assert!(Via::parse(&text).is_some(), "{text}");
            }
            let _ = SipUri::parse(&req.uri).map(|u| u.socket_addr());
            for name in ["From", "To", "Contact", "Record-Route"] {
                for v in req.headers.get_all_split(name) {
                    let _ = NameAddr::parse(v).map(|n| SipUri::parse(&n.uri));
                }
            }
            let mut txs = Transactions::new();
            let key = ServerKey::of(&req);
            if let RequestMatch::New(id) = txs.on_request(&req, key, from, Instant::now()) {
                if let Some(mut d) = Dialog::from_invite(&req, "x".into(), id, from) {
                    let _ = d.request_target();
                    let bye = d.request(
                        hotline::sip::message::Method::Bye,
                        "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKf".into(),
                        "f",
                    );
                    assert!(parse(&bye.to_bytes()).is_ok(), "our own BYE must parse");
                }
            }
            // What we parsed serialises to something we parse again.
            let _ = parse(&req.to_bytes());
        }
    }
});
