//! The few structured header values the engine reads: Via, name-addr
//! (From/To/Contact/Record-Route) and SIP URIs.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

pub use crate::uri::{split_host_port, Params, SipUri};

/// One Via entry: `SIP/2.0/UDP host:port;branch=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(value: &str) -> Option<Via> {
        let value = value.trim();
        let (proto, rest) = value.split_once(char::is_whitespace)?;
        let transport = proto.rsplit('/').next()?.trim().to_ascii_uppercase();
        let rest = rest.trim();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(sent_by.trim())?;
        Some(Via {
            transport,
            host,
            port,
            params: Params::parse(params),
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// RFC 3261 §18.2.1 and RFC 3581: note where the request really came
    /// from. Whatever `received` or `rport` value the sender wrote is
    /// dropped first: only our own observation of the source counts.
    pub fn stamp_received(&mut self, source: SocketAddr) {
        let asked_rport = self.params.get("rport").is_some();
        self.params.remove("received");
        self.params.remove("rport");
        if asked_rport {
            self.params.set("rport", Some(source.port().to_string()));
            self.params.set("received", Some(source.ip().to_string()));
        } else if self.host.trim_matches(['[', ']']).parse::<IpAddr>().ok() != Some(source.ip()) {
            self.params.set("received", Some(source.ip().to_string()));
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// `"Display" <uri>;params` or `uri;params` (From, To, Contact, Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(value: &str) -> Option<NameAddr> {
        let value = value.trim();
        if let Some(lt) = find_unquoted(value, '<') {
            let gt = value[lt..].find('>')? + lt;
            let display = value[..lt].trim().trim_matches('"').trim();
            Some(NameAddr {
                display: (!display.is_empty()).then(|| display.to_owned()),
                uri: value[lt + 1..gt].trim().to_owned(),
                params: Params::parse(&value[gt + 1..]),
            })
        } else {
            // Without brackets, parameters after the URI belong to the header.
            let (uri, params) = match value.find(';') {
                Some(i) => (&value[..i], &value[i..]),
                None => (value, ""),
            };
            if uri.is_empty() {
                return None;
            }
            Some(NameAddr {
                display: None,
                uri: uri.to_owned(),
                params: Params::parse(params),
            })
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            let mut quoted = String::with_capacity(d.len() + 2);
            quoted.push('"');
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
            quoted.push('"');
            write!(f, "{quoted} ")?;
        }
        let _ = f.write_char('<');
        write!(f, "{}>{}", self.uri, self.params)
    }
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The tag parameter of a From or To header value.
pub fn tag_of(value: &str) -> Option<String> {
    NameAddr::parse(value).and_then(|n| n.tag().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_rport_and_received() {
        let mut via = Via::parse("SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bKa;rport").unwrap();
        assert_eq!(via.branch(), Some("z9hG4bKa"));
        via.stamp_received("127.0.0.1:40000".parse().unwrap());
        assert_eq!(
            via.to_string(),
            "SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bKa;rport=40000;received=127.0.0.1"
        );
        assert!(Via::parse("garbage").is_none());
    }

    #[test]
    fn what_the_sender_wrote_as_received_or_rport_is_replaced() {
        let source = "127.0.0.1:40000".parse().unwrap();
        // Forged, with and without rport, repeated and in another case.
        for text in [
            "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKa;received=192.0.2.9",
            "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKa;rport=9;received=192.0.2.9",
            "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKa;RECEIVED=192.0.2.9;rport;received=192.0.2.8",
        ] {
            let mut via = Via::parse(text).unwrap();
            via.stamp_received(source);
            let out = via.to_string();
            assert!(!out.contains("192.0.2"), "{out}");
        }
        let mut plain = Via::parse("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKb").unwrap();
        plain.stamp_received(source);
        assert_eq!(
            plain.to_string(),
            "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKb"
        );
        assert!(Via::parse("garbage").is_none());
    }

    #[test]
    fn uris_and_name_addrs() {
        let u = SipUri::parse("sip:100@127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(u.user.as_deref(), Some("100"));
        assert_eq!(u.socket_addr(), Some("127.0.0.1:5070".parse().unwrap()));
        assert!(u.wants_tcp());
        let v6 = SipUri::parse("sip:[::1]:5062").unwrap();
        assert_eq!(v6.socket_addr(), Some("[::1]:5062".parse().unwrap()));
        assert!(SipUri::parse("tel:+123").is_none());
        assert!(SipUri::parse("sip:a@h;transp\0\0.0.1 Sort=tcp").is_none());

        let n = NameAddr::parse("\"Bob <b>\" <sip:bob@h;lr>;tag=x9").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob <b>"));
        assert_eq!(n.uri, "sip:bob@h;lr");
        assert_eq!(n.tag(), Some("x9"));
        let bare = NameAddr::parse("sip:bob@h;tag=x9").unwrap();
        assert_eq!(bare.uri, "sip:bob@h");
        assert_eq!(bare.tag(), Some("x9"));
    }
}
