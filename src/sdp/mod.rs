//! SDP offer/answer (RFC 3264) for one audio stream: PCMU, PCMA and
//! telephone-event, hold directions. Hand-written: it is small, and the
//! engine needs only this much.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

pub mod crypto;

use crypto::{Crypto, Policy, Srtp};

/// The audio codecs the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// The payload type we offer for telephone-event when we make the offer.
pub const OFFER_DTMF_PT: u8 = 101;

/// Media direction attributes (RFC 3264 §5.1), from the writer's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answer must carry for this offered one.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
    /// Whether the side that wrote this direction wants to receive media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
    /// Whether the side that wrote this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// Why an SDP body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8 text")]
    NotText,
    #[error("SDP line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("SDP has no audio stream")]
    NoAudio,
    #[error("SDP audio stream has no connection address")]
    NoConnection,
    #[error("no codec in common (offered payload types: {0})")]
    NoCommonCodec(String),
    #[error("{0}")]
    Crypto(#[from] crypto::CryptoRefusal),
}

/// The parts of a session description the engine uses: its first audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOffer {
    /// Where to send RTP (port 0: the stream is refused).
    pub address: IpAddr,
    pub port: u16,
    /// Payload types in preference order, as listed on the m= line.
    pub formats: Vec<u8>,
    /// `a=rtpmap` entries: payload type → encoding name (upper case) and rate.
    pub rtpmap: Vec<(u8, String, u32)>,
    pub direction: Direction,
    pub ptime: Option<u32>,
    /// `c=... 0.0.0.0`: RFC 2543 hold.
    pub null_address: bool,
    /// The m= line's protocol is `RTP/SAVP` (SRTP).
    pub savp: bool,
    /// Its usable `a=crypto` lines (SDES keys), in the offerer's order.
    pub crypto: Vec<Crypto>,
    /// `a=rtcp-mux` (RFC 5761): RTCP shares the RTP port.
    pub rtcp_mux: bool,
    /// `a=rtcp:PORT [IN IP4 ADDRESS]` (RFC 3605): RTCP is elsewhere than
    /// the next port up.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
}

impl AudioOffer {
    fn encoding(&self, pt: u8) -> Option<(&str, u32)> {
        if let Some((_, name, rate)) = self.rtpmap.iter().find(|(p, _, _)| *p == pt) {
            return Some((name.as_str(), *rate));
        }
        match pt {
            0 => Some(("PCMU", 8000)),
            8 => Some(("PCMA", 8000)),
            _ => None,
        }
    }

    /// The RTP destination.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Where its RTCP goes when not multiplexed: `a=rtcp`, else the next
    /// port up (RFC 3550 §11).
    pub fn rtcp_addr(&self) -> SocketAddr {
        match self.rtcp {
            Some((port, addr)) => SocketAddr::new(addr.unwrap_or(self.address), port),
            None => SocketAddr::new(self.address, self.port.saturating_add(1)),
        }
    }

    /// The direction the remote side effectively asks for.
    pub fn effective_direction(&self) -> Direction {
        if self.null_address {
            Direction::Inactive
        } else {
            self.direction
        }
    }
}

/// Parses an SDP body and returns its first audio stream.
pub fn parse(body: &[u8]) -> Result<AudioOffer, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
    let mut session_addr: Option<IpAddr> = None;
    let mut session_dir = Direction::SendRecv;
    let mut audio: Option<AudioOffer> = None;
    let mut in_audio = false;
    let mut media_addr: Option<IpAddr> = None;
    let mut seen_audio = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let syntax = |message: &str| SdpError::Syntax {
            line: i + 1,
            message: message.to_owned(),
        };
        let (kind, value) = line
            .split_once('=')
            .filter(|(k, _)| k.len() == 1)
            .ok_or_else(|| syntax("expected TYPE=VALUE"))?;
        match kind {
            "m" => {
                if in_audio {
                    // Only the first audio stream is used.
                    in_audio = false;
                    continue;
                }
                let mut parts = value.split_whitespace();
                let media = parts.next().unwrap_or_default();
                if media != "audio" || seen_audio {
                    continue;
                }
                let port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| syntax("bad port on m= line"))?;
                let proto = parts.next().ok_or_else(|| syntax("missing protocol"))?;
                let savp = proto.to_ascii_uppercase().contains("SAVP");
                let formats = parts
                    .map(|f| f.parse::<u8>().map_err(|_| syntax("bad payload type")))
                    .collect::<Result<Vec<_>, _>>()?;
                seen_audio = true;
                in_audio = true;
                audio = Some(AudioOffer {
                    address: IpAddr::from([0, 0, 0, 0]),
                    port,
                    formats,
                    rtpmap: Vec::new(),
                    direction: session_dir,
                    ptime: None,
                    null_address: false,
                    savp,
                    crypto: Vec::new(),
                    rtcp_mux: false,
                    rtcp: None,
                });
            }
            "c" => {
                let addr = value
                    .split_whitespace()
                    .nth(2)
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .ok_or_else(|| syntax("bad c= line (expected IN IP4 ADDRESS)"))?;
                if in_audio {
                    media_addr = Some(addr);
                } else if !seen_audio {
                    session_addr = Some(addr);
                }
            }
            "a" => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                let dir = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                match (in_audio, audio.as_mut()) {
                    (true, Some(a)) => {
                        if let Some(d) = dir {
                            a.direction = d;
                        } else if name == "rtpmap" {
                            let mut p = arg.split_whitespace();
                            let pt = p.next().and_then(|pt| pt.parse::<u8>().ok());
                            let enc = p.next();
                            if let (Some(pt), Some(enc)) = (pt, enc) {
                                let mut e = enc.split('/');
                                let name = e.next().unwrap_or_default().to_ascii_uppercase();
                                let rate = e.next().and_then(|r| r.parse().ok()).unwrap_or(8000);
                                a.rtpmap.push((pt, name, rate));
                            }
                        } else if name == "ptime" {
                            a.ptime = arg.trim().parse().ok();
                        } else if name == "crypto" {
                            if let Some(c) = crypto::parse_line(arg) {
                                a.crypto.push(c);
                            }
                        } else if name == "rtcp-mux" {
                            a.rtcp_mux = true;
                        } else if name == "rtcp" {
                            let mut p = arg.split_whitespace();
                            if let Some(port) = p.next().and_then(|x| x.parse::<u16>().ok()) {
                                let addr = p.nth(2).and_then(|x| x.parse::<IpAddr>().ok());
                                a.rtcp = Some((port, addr));
                            }
                        }
                    }
                    _ if !seen_audio => {
                        if let Some(d) = dir {
                            session_dir = d;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let mut audio = audio.ok_or(SdpError::NoAudio)?;
    let addr = media_addr.or(session_addr).ok_or(SdpError::NoConnection)?;
    audio.null_address = addr.is_unspecified();
    audio.address = addr;
    Ok(audio)
}

/// What offer/answer agreed on for a call's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type the codec is sent with.
    pub payload_type: u8,
    /// telephone-event's payload type, when both sides support RFC 4733.
    pub dtmf_pt: Option<u8>,
    pub remote: SocketAddr,
    /// The direction of our answer (or the remote's answer to our offer, as
    /// seen from the remote).
    pub direction: Direction,
    /// SRTP, when agreed (keys: ours to send, theirs to receive).
    pub srtp: Option<Srtp>,
    /// Where the remote's RTCP goes; `None`: multiplexed on the RTP port
    /// (both sides said `a=rtcp-mux`).
    pub rtcp: Option<SocketAddr>,
}

impl Negotiated {
    /// Whether we may send audio to the remote.
    pub fn we_send(&self) -> bool {
        self.direction.sends() && self.remote.port() != 0 && !self.remote.ip().is_unspecified()
    }

    /// Whether the remote should be sending us audio (not on hold with
    /// `inactive`, nor `recvonly` itself).
    pub fn we_receive(&self) -> bool {
        self.direction.receives()
    }
}

/// Picks the first offered codec we support, and telephone-event if
/// offered; plain RTP (an `RTP/SAVP` offer is refused).
pub fn negotiate(offer: &AudioOffer) -> Result<Negotiated, SdpError> {
    negotiate_with(offer, Policy::NONE, None)
}

/// As [`negotiate`], answering the offer's SRTP as `policy` allows, with
/// `local` as our key when the call already has one.
pub fn negotiate_with(
    offer: &AudioOffer,
    policy: Policy,
    local: Option<crypto::KeySalt>,
) -> Result<Negotiated, SdpError> {
    let srtp = crypto::answer_offer(offer.savp, &offer.crypto, policy, local)?;
    let mut n = negotiate_plain(offer)?;
    n.srtp = srtp;
    Ok(n)
}

fn negotiate_plain(offer: &AudioOffer) -> Result<Negotiated, SdpError> {
    if offer.port == 0 {
        return Err(SdpError::NoCommonCodec(
            "audio stream refused (port 0)".into(),
        ));
    }
    let mut choice = None;
    for &pt in &offer.formats {
        match offer.encoding(pt) {
            Some(("PCMU", 8000)) => choice = Some((Codec::Pcmu, pt)),
            Some(("PCMA", 8000)) => choice = Some((Codec::Pcma, pt)),
            _ => continue,
        }
        break;
    }
    let (codec, payload_type) = choice.ok_or_else(|| {
        SdpError::NoCommonCodec(
            offer
                .formats
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        )
    })?;
    let dtmf_pt =
        offer.formats.iter().copied().find(
            |&pt| matches!(offer.encoding(pt), Some((name, 8000)) if name == "TELEPHONE-EVENT"),
        );
    Ok(Negotiated {
        codec,
        payload_type,
        dtmf_pt,
        remote: offer.socket_addr(),
        direction: offer.effective_direction().answer(),
        srtp: None,
        // We always take RTCP on either port: an offer's mux is accepted
        // (our answer says so), an answer's is what our offer proposed.
        rtcp: (!offer.rtcp_mux).then(|| offer.rtcp_addr()),
    })
}

/// Reads the remote's answer to our offer (made with [`offer`]).
pub fn accept_answer(answer: &AudioOffer) -> Result<Negotiated, SdpError> {
    accept_answer_with(answer, &[], Policy::NONE)
}

/// As [`accept_answer`], for an offer of ours with `ours` as its
/// `a=crypto` lines.
pub fn accept_answer_with(
    answer: &AudioOffer,
    ours: &[Crypto],
    policy: Policy,
) -> Result<Negotiated, SdpError> {
    let mut n = negotiate_plain(answer)?;
    n.srtp = crypto::accept_answer(&answer.crypto, ours, answer.savp, policy)?;
    // The remote's direction is from its side; ours is the mirror.
    n.direction = answer.effective_direction().answer();
    Ok(n)
}

/// Session origin data kept per call so re-answers bump the version.
#[derive(Debug, Clone)]
pub struct Origin {
    pub session_id: u64,
    pub version: u64,
    pub address: IpAddr,
}

impl Origin {
    pub fn new(address: IpAddr) -> Origin {
        let id = rand::random::<u32>() as u64;
        Origin {
            session_id: id,
            version: id,
            address,
        }
    }
}

fn header(origin: &mut Origin, out: &mut String) {
    let ip = match origin.address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let _ = write!(
        out,
        "v=0\r\no=hotline {} {} IN {ip} {}\r\ns=Hotline\r\nc=IN {ip} {}\r\nt=0 0\r\n",
        origin.session_id, origin.version, origin.address, origin.address
    );
    origin.version += 1;
}

/// Our answer: one codec, telephone-event when agreed, and our direction.
pub fn answer(origin: &mut Origin, port: u16, n: &Negotiated) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    header(origin, &mut out);
    let proto = if n.srtp.is_some_and(|s| s.savp) {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    let _ = write!(out, "m=audio {port} {proto} {}", n.payload_type);
    if let Some(te) = n.dtmf_pt {
        let _ = write!(out, " {te}");
    }
    let _ = write!(
        out,
        "\r\na=rtpmap:{} {}/8000\r\n",
        n.payload_type,
        n.codec.name()
    );
    if let Some(te) = n.dtmf_pt {
        let _ = write!(
            out,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        );
    }
    if let Some(s) = n.srtp {
        let line = crypto::line(&Crypto {
            tag: s.tag,
            suite: s.suite,
            key: s.local,
        });
        let _ = write!(out, "a={line}\r\n");
    }
    if n.rtcp.is_none() {
        out.push_str("a=rtcp-mux\r\n");
    }
    let _ = write!(out, "a=ptime:20\r\na={}\r\n", n.direction.attribute());
    out.into_bytes()
}

/// Our offer, for an INVITE that came without one.
pub fn offer(origin: &mut Origin, port: u16) -> Vec<u8> {
    offer_with(origin, port, &[], false)
}

/// Our offer with `crypto` lines (SDES), as `RTP/SAVP` when `savp`.
pub fn offer_with(origin: &mut Origin, port: u16, crypto: &[Crypto], savp: bool) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    header(origin, &mut out);
    let te = OFFER_DTMF_PT;
    let proto = if savp { "RTP/SAVP" } else { "RTP/AVP" };
    let _ = write!(
        out,
        "m=audio {port} {proto} 0 8 {te}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
    );
    for c in crypto {
        let _ = write!(out, "a={}\r\n", crypto::line(c));
    }
    // RTCP on the RTP port if the answer agrees (we listen on both).
    out.push_str("a=rtcp-mux\r\na=ptime:20\r\na=sendrecv\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=ptime:20\r\n";

    #[test]
    fn answers_with_first_supported_codec_and_their_dtmf_pt() {
        let offer = parse(OFFER.as_bytes()).unwrap();
        let n = negotiate(&offer).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.dtmf_pt, Some(96));
        assert_eq!(
            n.remote,
            "127.0.0.1:6000".parse::<std::net::SocketAddr>().unwrap()
        );
        let mut origin = Origin::new("127.0.0.1".parse().unwrap());
        let body = String::from_utf8(answer(&mut origin, 20000, &n)).unwrap();
        assert!(body.contains("m=audio 20000 RTP/AVP 8 96\r\n"), "{body}");
        assert!(body.contains("a=rtpmap:96 telephone-event/8000"));
        assert!(body.contains("a=sendrecv"));
        // The answer parses back as what it says.
        let back = parse(body.as_bytes()).unwrap();
        assert_eq!(back.formats, vec![8, 96]);
    }

    #[test]
    fn media_level_connection_and_hold_directions() {
        let sdp = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 7000 RTP/AVP 0\r\nc=IN IP4 192.0.2.9\r\na=sendonly\r\n";
        let offer = parse(sdp.as_bytes()).unwrap();
        assert_eq!(offer.address, "192.0.2.9".parse::<IpAddr>().unwrap());
        let n = negotiate(&offer).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(!n.we_send());

        let old_hold = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 7000 RTP/AVP 0\r\n";
        let n = negotiate(&parse(old_hold.as_bytes()).unwrap()).unwrap();
        assert_eq!(n.direction, Direction::Inactive);
    }

    #[test]
    fn refuses_what_cannot_be_used() {
        let g729 = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 7000 RTP/AVP 18\r\n";
        assert!(matches!(
            negotiate(&parse(g729.as_bytes()).unwrap()),
            Err(SdpError::NoCommonCodec(_))
        ));
        assert_eq!(
            parse(b"v=0\r\nc=IN IP4 1.2.3.4\r\n"),
            Err(SdpError::NoAudio)
        );
        assert_eq!(
            parse(b"v=0\r\nm=audio 1 RTP/AVP 0\r\n"),
            Err(SdpError::NoConnection)
        );
        assert!(matches!(parse(b"garbage"), Err(SdpError::Syntax { .. })));
        assert!(matches!(parse(&[0xff, 0xfe]), Err(SdpError::NotText)));
    }

    #[test]
    fn our_offer_is_accepted_back() {
        let mut origin = Origin::new("127.0.0.1".parse().unwrap());
        let body = offer(&mut origin, 20002);
        let parsed = parse(&body).unwrap();
        assert_eq!(parsed.formats, vec![0, 8, 101]);
        let n = accept_answer(&parsed).unwrap();
        assert_eq!((n.codec, n.dtmf_pt), (Codec::Pcmu, Some(101)));
    }

    #[test]
    fn rtcp_goes_to_the_next_port_to_a_rtcp_or_on_the_rtp_port_when_both_mux() {
        let n = negotiate(&parse(OFFER.as_bytes()).unwrap()).unwrap();
        assert_eq!(n.rtcp, Some("127.0.0.1:6001".parse().unwrap()));
        let mut origin = Origin::new("127.0.0.1".parse().unwrap());
        assert!(!String::from_utf8(answer(&mut origin, 20002, &n))
            .unwrap()
            .contains("rtcp-mux"));
        let moved = OFFER.replace("a=ptime:20", "a=rtcp:7001 IN IP4 10.0.0.9\r\na=ptime:20");
        let n = negotiate(&parse(moved.as_bytes()).unwrap()).unwrap();
        assert_eq!(n.rtcp, Some("10.0.0.9:7001".parse().unwrap()));
        let mux = OFFER.replace("a=ptime:20", "a=rtcp-mux\r\na=ptime:20");
        let n = negotiate(&parse(mux.as_bytes()).unwrap()).unwrap();
        assert_eq!(n.rtcp, None);
        assert!(String::from_utf8(answer(&mut origin, 20002, &n))
            .unwrap()
            .contains("a=rtcp-mux\r\n"));
        // Our offer proposes it; an answer that takes it muxes.
        let ours = parse(&offer(&mut origin, 20002)).unwrap();
        assert!(ours.rtcp_mux);
        assert_eq!(accept_answer(&ours).unwrap().rtcp, None);
    }
}
