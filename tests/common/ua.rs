//! A minimal SIP caller over UDP for checks that need precision SIPp lacks:
//! what RTP the caller receives, and DTMF content it sends. It never replaces
//! SIPp or baresip; it only looks closer.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hotline::media::rtp::{self, RtpInfo};
use hotline::sip::header::tag_of;
use hotline::sip::message::{parse, Message, Response};

/// One received RTP packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub at: Instant,
    pub info: RtpInfo,
    pub payload: Vec<u8>,
}

pub struct TestUa {
    sip: UdpSocket,
    pub rtp: UdpSocket,
    engine: SocketAddr,
    call_id: String,
    from_tag: String,
    to_tag: String,
    cseq: u32,
    /// Where the engine wants our RTP (from its SDP answer).
    pub engine_rtp: SocketAddr,
    pub answer: String,
    seq: u16,
    ts: u32,
}

impl TestUa {
    /// Calls `number` with an SDP offer of `formats` (e.g. "0 101"); the
    /// offer declares telephone-event on 101 when `formats` lists it.
    pub fn call(
        engine: SocketAddr,
        sip_port: u16,
        rtp_port: u16,
        number: &str,
        formats: &str,
    ) -> TestUa {
        TestUa::call_from("127.0.0.1", engine, sip_port, rtp_port, number, formats)
    }

    /// As [`TestUa::call`], from the address `ip` (a veth of the test's).
    pub fn call_from(
        ip: &str,
        engine: SocketAddr,
        sip_port: u16,
        rtp_port: u16,
        number: &str,
        formats: &str,
    ) -> TestUa {
        TestUa::call_with(ip, engine, sip_port, rtp_port, number, formats, "")
    }

    /// As [`TestUa::call_from`], with `media_lines` (e.g. `a=rtcp-mux\r\n`)
    /// added to the offer's audio stream.
    pub fn call_with(
        ip: &str,
        engine: SocketAddr,
        sip_port: u16,
        rtp_port: u16,
        number: &str,
        formats: &str,
        media_lines: &str,
    ) -> TestUa {
        let sip = UdpSocket::bind((ip, sip_port)).unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let rtp = UdpSocket::bind((ip, rtp_port)).unwrap();
        rtp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut ua = TestUa {
            sip,
            rtp,
            engine,
            call_id: format!("ua-{sip_port}-{}@test", std::process::id()),
            from_tag: format!("ft{sip_port}"),
            to_tag: String::new(),
            cseq: 1,
            engine_rtp: engine,
            answer: String::new(),
            seq: 1000,
            ts: 5000,
        };
        let family = if ip.contains(':') { "IP6" } else { "IP4" };
        let mut sdp = format!(
            "v=0\r\no=ua 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
m=audio {rtp_port} RTP/AVP {formats}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        );
        if formats.split_whitespace().any(|f| f == "101") {
            sdp.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n");
        }
        sdp.push_str(media_lines);
        let invite = ua.request("INVITE", number, Some(&sdp), "z9hG4bKua1");
        ua.send(&invite);
        let resp = ua.final_response("INVITE", Duration::from_secs(10));
        assert_eq!(resp.status, 200, "call not answered");
        ua.to_tag = resp.headers.get("To").and_then(tag_of).expect("To tag");
        ua.answer = String::from_utf8_lossy(&resp.body).into_owned();
        let answer = hotline::sdp::parse(&resp.body).expect("SDP answer");
        ua.engine_rtp = answer.socket_addr();
        let ack = ua.request("ACK", number, None, "z9hG4bKua2");
        ua.send(&ack);
        ua
    }

    fn request(&self, method: &str, number: &str, sdp: Option<&str>, branch: &str) -> String {
        let local = self.sip.local_addr().unwrap();
        let to_tag = if self.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", self.to_tag)
        };
        let cseq = if method == "ACK" { 1 } else { self.cseq };
        let (ctype, body) = match sdp {
            Some(b) => ("Content-Type: application/sdp\r\n", b),
            None => ("", ""),
        };
        format!(
            "{method} sip:{number}@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
From: <sip:ua@{local}>;tag={from}\r\nTo: <sip:{number}@{engine}>{to_tag}\r\nCall-ID: {cid}\r\n\
CSeq: {cseq} {method}\r\nContact: <sip:ua@{local}>\r\nMax-Forwards: 70\r\n{ctype}Content-Length: {len}\r\n\r\n{body}",
            engine = self.engine,
            from = self.from_tag,
            cid = self.call_id,
            len = body.len(),
        )
    }

    fn send(&self, text: &str) {
        self.sip.send_to(text.as_bytes(), self.engine).unwrap();
    }

    /// Waits for the final response to `method`, answering nothing else.
    fn final_response(&self, method: &str, timeout: Duration) -> Response {
        let until = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        while Instant::now() < until {
            let Ok((n, _)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(Message::Response(r)) = parse(&buf[..n]) {
                let ours = r.cseq().is_some_and(|(_, m)| m.as_str() == method);
                if ours && r.status >= 200 {
                    return r;
                }
            }
        }
        panic!("no final response to {method}");
    }

    /// Collects RTP for `duration`.
    pub fn receive(&self, duration: Duration) -> Vec<Packet> {
        let until = Instant::now() + duration;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            if let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                if let Some((info, payload)) = rtp::parse(&buf[..n]) {
                    out.push(Packet {
                        at: Instant::now(),
                        info,
                        payload: payload.to_vec(),
                    });
                }
            }
        }
        out
    }

    /// Sends one RTP packet to the engine.
    pub fn send_rtp(&mut self, payload_type: u8, marker: bool, ts: u32, payload: &[u8]) {
        let info = RtpInfo {
            payload_type,
            sequence: self.seq,
            timestamp: ts,
            ssrc: 0x1234_5678,
            marker,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut buf = [0u8; 400];
        let n = rtp::write(&info, payload, &mut buf).unwrap();
        self.rtp.send_to(&buf[..n], self.engine_rtp).unwrap();
    }

    /// Presses a key as RFC 4733 events on payload type 101 (real time).
    pub fn press_rfc4733(&mut self, key: char) {
        let code = hotline::media::Digit::from_char(key).unwrap().event_code();
        self.ts = self.ts.wrapping_add(1600);
        let ts = self.ts;
        for i in 1..=5u16 {
            let end = i == 5;
            let d = (i * 160).to_be_bytes();
            let payload = [code, if end { 0x8a } else { 0x0a }, d[0], d[1]];
            for _ in 0..(if end { 3 } else { 1 }) {
                self.send_rtp(101, i == 1, ts, &payload);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends 8 kHz samples as PCMU packets in real time.
    pub fn send_pcmu(&mut self, samples: &[i16]) {
        for chunk in samples.chunks(160) {
            let payload: Vec<u8> = chunk
                .iter()
                .map(|&s| hotline::media::g711::ulaw_encode(s))
                .collect();
            self.ts = self.ts.wrapping_add(160);
            let ts = self.ts;
            self.send_rtp(0, false, ts, &payload);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the engine's BYE and answers it 200; `true` if it came.
    pub fn expect_bye(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        while Instant::now() < until {
            let Ok((n, from)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let Ok(Message::Request(req)) = parse(&buf[..n]) else {
                continue;
            };
            if req.method.as_str() != "BYE" {
                continue;
            }
            let mut ok = String::from("SIP/2.0 200 OK\r\n");
            for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                for v in req.headers.get_all(name) {
                    ok.push_str(&format!("{name}: {v}\r\n"));
                }
            }
            ok.push_str("Content-Length: 0\r\n\r\n");
            self.sip.send_to(ok.as_bytes(), from).unwrap();
            return true;
        }
        false
    }

    /// A re-INVITE whose SDP carries `a=DIRECTION` (hold: `inactive` or
    /// `sendonly`; resume: `sendrecv`); waits for the 200 and ACKs it.
    pub fn reinvite(&mut self, direction: &str) {
        self.cseq += 1;
        let port = self.rtp.local_addr().unwrap().port();
        let sdp = format!(
            "v=0\r\no=ua 1 {} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n",
            self.cseq
        );
        let invite = self.request(
            "INVITE",
            "100",
            Some(&sdp),
            &format!("z9hG4bKre{}", self.cseq),
        );
        self.send(&invite);
        let resp = self.final_response("INVITE", Duration::from_secs(5));
        assert_eq!(resp.status, 200, "re-INVITE refused");
        let ack = self.request("ACK", "100", None, &format!("z9hG4bKreack{}", self.cseq));
        // The ACK carries the INVITE's CSeq number.
        let ack = ack.replace("CSeq: 1 ACK", &format!("CSeq: {} ACK", self.cseq));
        self.send(&ack);
    }

    /// Hangs up and waits for the 200.
    pub fn bye(&mut self) {
        self.cseq += 1;
        let bye = self.request("BYE", "100", None, &format!("z9hG4bKbye{}", self.cseq));
        self.send(&bye);
        let resp = self.final_response("BYE", Duration::from_secs(5));
        assert_eq!(resp.status, 200);
    }
}
