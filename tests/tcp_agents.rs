//! An agent's phone registered over TCP (issue 14, finding 6) is reached over
//! that connection (RFC 5626 flow reuse): its keep-alive OPTIONS and its
//! calls come over it, a CRLF ping gets a pong, and when the connection
//! closes the registration goes with it. The phone is a raw TCP client of
//! the test's own, so every message it gets is seen where it arrives.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::ua::TestUa;
use common::Engine;
use hotline::sip::digest::{self, Algorithm};
use hotline::sip::message::{parse, Message, Request, Response};
use hotline::sip::transport::{frame, Framing};

struct TcpPhone {
    stream: TcpStream,
    buf: Vec<u8>,
    /// CRLF pongs received.
    pongs: usize,
    local: std::net::SocketAddr,
}

impl TcpPhone {
    fn connect(engine: &Engine) -> TcpPhone {
        let stream = TcpStream::connect(engine.sip).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let local = stream.local_addr().unwrap();
        TcpPhone {
            stream,
            buf: Vec::new(),
            pongs: 0,
            local,
        }
    }

    fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).unwrap();
    }

    /// The next message within `timeout`.
    fn next(&mut self, timeout: Duration) -> Option<Message> {
        let until = Instant::now() + timeout;
        loop {
            match frame(&self.buf) {
                Framing::Skip(n) => {
                    self.pongs += 1;
                    self.buf.drain(..n);
                    continue;
                }
                Framing::Message(n) => {
                    let bytes: Vec<u8> = self.buf.drain(..n).collect();
                    return parse(&bytes).ok();
                }
                Framing::Incomplete => {}
            }
            if Instant::now() >= until {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    /// Waits for a `method` request, answering any other request `200`.
    fn request(&mut self, method: &str, timeout: Duration, engine: &Engine) -> Request {
        loop {
            match self.next(timeout) {
                Some(Message::Request(r)) if r.method.as_str() == method => return r,
                Some(Message::Request(r)) => self.ok(&r, ""),
                Some(Message::Response(_)) => {}
                None => panic!("no {method} over the connection:\n{}", engine.log()),
            }
        }
    }

    /// Answers requests with `200` (OPTIONS) until a response comes.
    fn response(&mut self, timeout: Duration) -> Option<Response> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            match self.next(until - Instant::now()) {
                Some(Message::Response(r)) => return Some(r),
                Some(Message::Request(r)) => self.ok(&r, ""),
                None => {}
            }
        }
        None
    }

    fn ok(&mut self, req: &Request, extra: &str) {
        let h = |n: &str| req.headers.get(n).unwrap_or_default().to_owned();
        let to = if h("To").contains("tag=") {
            h("To")
        } else {
            format!("{};tag=phone", h("To"))
        };
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}",
            h("Via"),
            h("From"),
            h("Call-ID"),
            h("CSeq")
        );
        let text = if extra.is_empty() {
            format!("{text}Content-Length: 0\r\n\r\n")
        } else {
            text
        };
        self.send(&text);
    }

    fn register(&mut self, engine: &Engine, auth: Option<String>, cseq: u32) -> Response {
        let local = self.local;
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        self.send(&format!(
            "REGISTER sip:{sip} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKreg{cseq}\r\nMax-Forwards: 70\r\n\
From: <sip:1001@{sip}>;tag=r1\r\nTo: <sip:1001@{sip}>\r\nCall-ID: tcpreg@{local}\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:1001@{local};transport=tcp>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
            sip = engine.sip
        ));
        self.response(Duration::from_secs(2))
            .expect("no answer to REGISTER")
    }
}

fn contacts(engine: &Engine) -> u64 {
    let (_, body) = common::api_get(engine, "/api/agents/1001");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["contacts"].as_u64().unwrap()
}

/// Waits (up to 3 s) until the API shows agent 1001 with `n` contacts (a
/// registration reaches the ACD a moment after its 200).
fn wait_contacts(engine: &Engine, n: u64, why: &str) {
    let until = Instant::now() + Duration::from_secs(3);
    while contacts(engine) != n {
        assert!(
            Instant::now() < until,
            "{why}: {} contacts, not {n}",
            contacts(engine)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_phone_registered_over_tcp_is_reached_over_its_connection_and_goes_with_it() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues: { support: { announce-position: false } }\n\
agents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n\
registrar: { algorithms: [MD5], keepalive: 1s }\ncalls: { leg-check: 0s }\n",
    );
    let mut phone = TcpPhone::connect(&engine);
    let challenge = phone.register(&engine, None, 1);
    assert_eq!(challenge.status, 401);
    let www = challenge.headers.get("WWW-Authenticate").unwrap();
    let nonce = www
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let uri = format!("sip:{}", engine.sip);
    let ha1 = digest::ha1(Algorithm::Md5, "1001", "hotline", "1001pass");
    let resp = digest::response(
        Algorithm::Md5,
        &ha1,
        "REGISTER",
        &uri,
        nonce,
        "00000001",
        "cn",
    );
    let auth = format!(
        "Digest username=\"1001\", realm=\"hotline\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"cn\""
    );
    assert_eq!(phone.register(&engine, Some(auth), 2).status, 200);
    wait_contacts(&engine, 1, "registered");

    // A CRLF ping gets its pong; keep-alive OPTIONS come over the connection.
    phone.send("\r\n\r\n");
    let mut options = 0;
    let until = Instant::now() + Duration::from_millis(2600);
    while Instant::now() < until {
        if let Some(Message::Request(r)) = phone.next(Duration::from_millis(200)) {
            assert_eq!(r.method.as_str(), "OPTIONS");
            assert!(r.headers.get("Via").unwrap().contains("SIP/2.0/TCP"));
            options += 1;
            phone.ok(&r, "");
        }
    }
    assert!(phone.pongs >= 1, "no pong to the CRLF ping");
    // (Keep-alives go every 1 to 2 s: one within the window is enough.)
    assert!(
        options >= 1,
        "{options} keep-alive OPTIONS over the connection"
    );
    assert_eq!(contacts(&engine), 1, "still registered");

    // A caller (UDP) is put through to the agent: the INVITE comes over
    // the phone's connection, and so does everything after it.
    let mut caller = TestUa::call(
        engine.sip,
        engine.ports.spare(0),
        engine.ports.spare(2),
        "100",
        "0",
    );
    let invite = phone.request("INVITE", Duration::from_secs(5), &engine);
    assert!(invite.headers.get("Via").unwrap().contains("SIP/2.0/TCP"));
    assert!(invite
        .headers
        .get("Contact")
        .is_some_and(|c| c.contains("transport=tcp")));
    let rtp = std::net::UdpSocket::bind(("127.0.0.1", engine.ports.spare(4))).unwrap();
    let port = rtp.local_addr().unwrap().port();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let local = phone.local;
    phone.ok(
        &invite,
        &format!(
            "Contact: <sip:1001@{local};transport=tcp>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
    let ack = phone.request("ACK", Duration::from_secs(3), &engine);
    assert!(ack.headers.get("Via").unwrap().contains("SIP/2.0/TCP"));
    common::wait_agent_state(&engine, "1001", "on-call", Duration::from_secs(3));
    // The caller hangs up: the agent's BYE comes over the connection.
    caller.bye();
    let bye = phone.request("BYE", Duration::from_secs(3), &engine);
    phone.ok(&bye, "");

    // The connection closes: the registration goes with it.
    drop(phone);
    wait_contacts(&engine, 0, "still registered after the connection closed");
    assert!(engine
        .log()
        .contains("connection closed; its registration goes with it"));
}
