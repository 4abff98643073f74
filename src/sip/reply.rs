//! Responses the engine sends: headers copied from the request as RFC 3261
//! §8.2.6 asks, our tag, Contact and the headers each status calls for.

use std::net::SocketAddr;

use super::header::tag_of;
use super::message::{reason_phrase, Headers, Method, Request, Response};

/// The methods we answer, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REFER, UPDATE";

/// Who we are, for Contact and Server.
pub struct Local<'a> {
    pub contact: SocketAddr,
    /// Our TLS listener's address, for a Contact over TLS.
    pub tls: Option<SocketAddr>,
    pub server: &'a str,
}

/// Builds a response to `req`; `to_tag` is added when the request's To has
/// none (never on `100 Trying`).
pub fn response(
    req: &Request,
    status: u16,
    to_tag: &str,
    us: &Local<'_>,
    sdp: Option<Vec<u8>>,
) -> Response {
    let mut headers = Headers::default();
    for via in req.headers.get_all("Via") {
        headers.push("Via", via);
    }
    headers.push("From", req.headers.get("From").unwrap_or_default());
    let to = req.headers.get("To").unwrap_or_default();
    if tag_of(to).is_none() && status > 100 {
        headers.push("To", format!("{to};tag={to_tag}"));
    } else {
        headers.push("To", to);
    }
    headers.push("Call-ID", req.call_id());
    headers.push("CSeq", req.headers.get("CSeq").unwrap_or_default());
    if req.method == Method::Invite && (101..300).contains(&status) {
        for rr in req.headers.get_all("Record-Route") {
            headers.push("Record-Route", rr);
        }
        let via = req.top_via().unwrap_or_default().to_ascii_uppercase();
        let contact = match (via.contains("/TLS"), us.tls) {
            (true, Some(tls)) => format!("<sip:hotline@{tls};transport=tls>"),
            _ if via.contains("/TCP") => format!("<sip:hotline@{};transport=tcp>", us.contact),
            _ => format!("<sip:hotline@{}>", us.contact),
        };
        headers.push("Contact", contact);
    }
    let options_ok = req.method == Method::Options && status == 200;
    if status == 405 || status == 501 || options_ok {
        headers.push("Allow", ALLOW);
    }
    if options_ok {
        headers.push(
            "Accept",
            "application/sdp, application/dtmf-relay, application/dtmf",
        );
    }
    if status == 415 {
        headers.push("Accept", "application/sdp");
    }
    headers.push("Server", us.server);
    let body = match sdp {
        Some(body) => {
            headers.push("Content-Type", "application/sdp");
            body
        }
        None => Vec::new(),
    };
    Response {
        status,
        reason: reason_phrase(status).to_owned(),
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Message};

    fn request(method: &str, via: &str) -> Request {
        let text = format!(
            "{method} sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{via} 127.0.0.1:5070;branch=z9hG4bKa\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\nRecord-Route: <sip:p@10.0.0.1;lr>\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:100@h>\r\nCall-ID: c\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    const US: Local<'static> = Local {
        contact: std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::LOCALHOST,
            5060,
        )),
        tls: None,
        server: "Hotline/test",
    };

    #[test]
    fn a_200_to_invite_carries_tag_contact_record_route_and_sdp() {
        let r = response(
            &request("INVITE", "TCP"),
            200,
            "xyz",
            &US,
            Some(b"v=0\r\n".to_vec()),
        );
        assert_eq!(r.headers.get_all("Via").count(), 2, "every Via, in order");
        assert_eq!(r.headers.get("To"), Some("<sip:100@h>;tag=xyz"));
        assert_eq!(r.headers.get("CSeq"), Some("7 INVITE"));
        assert_eq!(r.headers.get("Record-Route"), Some("<sip:p@10.0.0.1;lr>"));
        assert_eq!(
            r.headers.get("Contact"),
            Some("<sip:hotline@127.0.0.1:5060;transport=tcp>")
        );
        assert_eq!(r.headers.get("Content-Type"), Some("application/sdp"));
        // What we send parses back.
        assert!(parse(&r.to_bytes()).is_ok());
    }

    #[test]
    fn trying_has_no_tag_and_refusals_say_why() {
        let trying = response(&request("INVITE", "UDP"), 100, "xyz", &US, None);
        assert_eq!(trying.headers.get("To"), Some("<sip:100@h>"));
        assert!(trying.headers.get("Contact").is_none());
        let busy = response(&request("INVITE", "UDP"), 503, "t", &US, None);
        // The core adds Retry-After (calls.retry-after) where it refuses.
        assert!(busy.headers.get("Retry-After").is_none());
        assert!(busy.headers.get("Contact").is_none());
        let nope = response(&request("SUBSCRIBE", "UDP"), 405, "t", &US, None);
        assert_eq!(nope.headers.get("Allow"), Some(ALLOW));
    }
}
