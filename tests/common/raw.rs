//! A raw SIP peer over UDP: what a trunk sees, message by message.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use hotline::sip::message::{parse, Message, Request, Response};

/// A UDP socket on 127.0.0.1:`port` that waits 100 ms per read.
pub fn peer(port: u16) -> UdpSocket {
    peer_at("127.0.0.1", port)
}

/// As [`peer`], on another loopback address (127.0.0.2, …).
pub fn peer_at(ip: &str, port: u16) -> UdpSocket {
    let s = UdpSocket::bind((ip, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

pub fn invite(port: u16, call_id: &str, extra: &str) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}\r\n\
From: <sip:t@127.0.0.1>;tag=f{call_id}\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:t@127.0.0.1:{port}>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Everything received for `duration`.
pub fn collect(s: &UdpSocket, duration: Duration) -> Vec<(Instant, Message)> {
    let until = Instant::now() + duration;
    let mut out = vec![];
    let mut buf = [0u8; 8192];
    while Instant::now() < until {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if let Ok(m) = parse(&buf[..n]) {
                out.push((Instant::now(), m));
            }
        }
    }
    out
}

pub fn responses(msgs: &[(Instant, Message)], status: u16) -> Vec<(Instant, Response)> {
    msgs.iter()
        .filter_map(|(t, m)| match m {
            Message::Response(r) if r.status == status => Some((*t, r.clone())),
            _ => None,
        })
        .collect()
}

pub fn requests(msgs: &[(Instant, Message)], method: &str) -> Vec<Request> {
    msgs.iter()
        .filter_map(|(_, m)| match m {
            Message::Request(r) if r.method.as_str() == method => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// `200 OK` to a request (a BYE the engine sends), as a UAS would answer.
pub fn ok_to(req: &Request) -> String {
    let h = |n: &str| req.headers.get(n).unwrap_or_default().to_owned();
    format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        h("Via"),
        h("From"),
        h("To"),
        h("Call-ID"),
        h("CSeq")
    )
}

/// The ACK of a 2xx to our INVITE `call_id` sent from `port`.
pub fn ack_for(ok: &Response, port: u16, call_id: &str) -> String {
    let to = ok.headers.get("To").unwrap_or_default();
    let from = ok.headers.get("From").unwrap_or_default();
    format!(
        "ACK sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKack{call_id}\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )
}
