//! SIP URIs and their parameters: plain data and their parser, on the
//! ground floor so the config can check a URI without the SIP layer.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// `;name=value` parameters in order; a flag parameter has no value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, Option<String>)>);

impl Params {
    pub(crate) fn parse(s: &str) -> Params {
        Params(
            s.split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((n, v)) => (n.trim().to_owned(), Some(v.trim().to_owned())),
                    None => (p.to_owned(), None),
                })
                .collect(),
        )
    }

    /// `Some(Some(v))` for `;name=v`, `Some(None)` for a bare `;name`.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// Takes every `name` parameter out (all of them: a sender may repeat one).
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// `host`, `host:port`, `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((format!("[{host}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_owned(), Some(p.parse().ok()?))),
        _ => Some((s.to_owned(), None)),
    }
}

/// A SIP or SIPS URI: `sip:user@host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: String,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl SipUri {
    pub fn parse(s: &str) -> Option<SipUri> {
        let s = s.trim();
        // A URI that we may later put on a request line: no spaces, no controls.
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        // What rsip cannot parse, peers using it would refuse on a request line.
        rsipstack::sip::Uri::try_from(s).ok()?;
        let (scheme, rest) = s.split_once(':')?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return None;
        }
        // Headers (`?x=y`) are not needed by the engine.
        let rest = rest.split('?').next().unwrap_or(rest);
        let (user, hostpart) = match rest.rfind('@') {
            Some(i) => (Some(rest[..i].to_owned()), &rest[i + 1..]),
            None => (None, rest),
        };
        let user = user.map(|u| u.split(':').next().unwrap_or_default().to_owned());
        let (hostport, params) = match hostpart.find(';') {
            Some(i) => (&hostpart[..i], &hostpart[i..]),
            None => (hostpart, ""),
        };
        let (host, port) = split_host_port(hostport)?;
        Some(SipUri {
            scheme,
            user,
            host,
            port,
            params: Params::parse(params),
        })
    }

    /// The address to send to when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.trim_matches(['[', ']']).parse().ok()?;
        let default = if self.scheme == "sips" { 5061 } else { 5060 };
        Some(SocketAddr::new(ip, self.port.unwrap_or(default)))
    }

    /// `true` when the URI names TCP as its transport.
    pub fn wants_tcp(&self) -> bool {
        self.params
            .value("transport")
            .is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
    }
}
