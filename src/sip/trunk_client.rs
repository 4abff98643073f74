//! Hotline as a client of its carriers: a trunk's account is registered at
//! its proxy (digest on `401`/`407`), refreshed before it expires, and
//! retried with a growing delay when the proxy refuses or is silent; an
//! OPTIONS keep-alive tells whether the proxy is there.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::digest::Challenge;
use super::handle::Account;
use super::header::NameAddr;
use super::message::{Headers, Method, Request, Response};

/// The first delay after a failed registration; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A URI that asks for TLS: `sips:`, or `transport=tls`.
pub fn wants_tls(uri: &super::header::SipUri) -> bool {
    uri.scheme == "sips"
        || uri
            .params
            .value("transport")
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"))
}

/// Which of our requests a transaction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Register,
    Options,
}

/// One trunk's client state.
pub struct TrunkClient {
    pub trunk: String,
    /// Where its requests go.
    pub proxy: SocketAddr,
    /// Over what: TLS when the proxy URI is `sips:` or says `transport=tls`.
    pub transport: super::Transport,
    /// `host[:port]` of the proxy URI, for our URIs.
    domain: String,
    account: Option<Account>,
    expires: Duration,
    keepalive: Duration,
    call_id: String,
    from_tag: String,
    cseq: u32,
    next_register: Option<Instant>,
    register_in_flight: bool,
    /// The REGISTER in flight already answers a challenge.
    challenged: bool,
    backoff: Duration,
    pub registered_until: Option<Instant>,
    next_options: Option<Instant>,
    options_in_flight: bool,
    /// The proxy answered our last OPTIONS (or nothing was asked yet).
    pub up: bool,
}

impl TrunkClient {
    /// `None` when the trunk neither registers nor sends keep-alives.
    pub fn new(
        trunk: &crate::config::Trunk,
        proxy: SocketAddr,
        call_id: String,
        from_tag: String,
        now: Instant,
    ) -> Option<TrunkClient> {
        let o = trunk.outbound.as_ref()?;
        if !o.register && o.keepalive.is_zero() {
            return None;
        }
        let uri = super::header::SipUri::parse(&o.proxy)?;
        let transport = if wants_tls(&uri) {
            super::Transport::Tls
        } else {
            super::Transport::Udp
        };
        let domain = match uri.port {
            Some(p) => format!("{}:{p}", uri.host),
            None => uri.host.clone(),
        };
        let account = match (&o.username, &o.password) {
            (Some(u), Some(p)) => Some(Account {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => None,
        };
        Some(TrunkClient {
            trunk: trunk.name.clone(),
            proxy,
            transport,
            domain,
            account,
            expires: o.register_expires,
            keepalive: o.keepalive,
            call_id,
            from_tag,
            cseq: 0,
            next_register: o.register.then_some(now),
            register_in_flight: false,
            challenged: false,
            backoff: FIRST_BACKOFF,
            registered_until: None,
            next_options: (!o.keepalive.is_zero()).then_some(now),
            options_in_flight: false,
            up: true,
        })
    }

    fn aor(&self) -> String {
        let user = self
            .account
            .as_ref()
            .map_or("hotline", |a| a.username.as_str());
        format!("sip:{user}@{}", self.domain)
    }

    fn request(
        &mut self,
        method: Method,
        via: String,
        local: SocketAddr,
        user_agent: &str,
    ) -> Request {
        self.cseq += 1;
        let aor = self.aor();
        let mut headers = Headers::default();
        headers.push("Via", via);
        headers.push("Max-Forwards", "70");
        headers.push("From", format!("<{aor}>;tag={}", self.from_tag));
        headers.push("To", format!("<{aor}>"));
        headers.push("Call-ID", self.call_id.clone());
        headers.push("CSeq", format!("{} {}", self.cseq, method.as_str()));
        if method == Method::Register {
            let user = self
                .account
                .as_ref()
                .map_or("hotline", |a| a.username.as_str());
            let param = if self.transport == super::Transport::Tls {
                ";transport=tls"
            } else {
                ""
            };
            headers.push("Contact", format!("<sip:{user}@{local}{param}>"));
            headers.push("Expires", self.expires.as_secs().to_string());
        }
        headers.push("User-Agent", user_agent.to_owned());
        Request {
            method,
            uri: format!("sip:{}", self.domain),
            headers,
            body: Vec::new(),
        }
    }

    /// The requests due now; `via` gives a fresh Via and its branch.
    pub fn due(
        &mut self,
        now: Instant,
        local: SocketAddr,
        user_agent: &str,
        mut via: impl FnMut() -> (String, String),
    ) -> Vec<(Kind, Request, String)> {
        let mut out = Vec::new();
        if !self.register_in_flight && self.next_register.is_some_and(|t| t <= now) {
            let (v, branch) = via();
            let mut req = self.request(Method::Register, v, local, user_agent);
            req.headers.push("Content-Length", "0");
            self.register_in_flight = true;
            self.challenged = false;
            out.push((Kind::Register, req, branch));
        }
        if !self.options_in_flight && self.next_options.is_some_and(|t| t <= now) {
            let (v, branch) = via();
            let mut req = self.request(Method::Options, v, local, user_agent);
            req.headers.push("Content-Length", "0");
            self.options_in_flight = true;
            self.next_options = Some(now + self.keepalive);
            out.push((Kind::Options, req, branch));
        }
        out
    }

    fn failed(&mut self, now: Instant, why: &str) {
        self.register_in_flight = false;
        self.registered_until = None;
        warn!(trunk = %self.trunk, %why, retry_in = ?self.backoff, "trunk registration failed");
        self.next_register = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The answer to our REGISTER; `Some` is the REGISTER again with
    /// credentials, to send now.
    pub fn on_register_response(
        &mut self,
        resp: &Response,
        sent: &Request,
        now: Instant,
        via: (String, String),
    ) -> Option<(Request, String)> {
        match resp.status {
            200..=299 => {
                self.register_in_flight = false;
                let granted = granted_expiry(resp, sent).unwrap_or(self.expires);
                // Refreshed well before it lapses: halfway for short
                // registrations, 30 s early for long ones.
                let refresh = if granted <= Duration::from_secs(60) {
                    granted / 2
                } else {
                    granted - Duration::from_secs(30)
                };
                if self.registered_until.is_none() {
                    info!(trunk = %self.trunk, expires = ?granted, "trunk registered");
                }
                self.registered_until = Some(now + granted);
                self.next_register = Some(now + refresh.max(Duration::from_secs(1)));
                self.backoff = FIRST_BACKOFF;
                None
            }
            401 | 407 if !self.challenged => {
                let header = if resp.status == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let (Some(account), Some(challenge)) = (
                    self.account.clone(),
                    resp.headers.get_all(header).find_map(Challenge::parse),
                ) else {
                    self.failed(now, "challenged, and no account or no usable challenge");
                    return None;
                };
                let (v, branch) = via;
                let mut req = sent.clone();
                req.headers.replace_top_via(&v);
                self.cseq += 1;
                req.headers.remove("CSeq");
                req.headers.push("CSeq", format!("{} REGISTER", self.cseq));
                let answer_in = if resp.status == 401 {
                    "Authorization"
                } else {
                    "Proxy-Authorization"
                };
                req.headers.remove(answer_in);
                let cnonce = format!("{:08x}", rand::random::<u32>());
                req.headers.push(
                    answer_in,
                    challenge.answer(
                        &account.username,
                        &account.password,
                        "REGISTER",
                        &req.uri,
                        &cnonce,
                        1,
                    ),
                );
                self.challenged = true;
                Some((req, branch))
            }
            status => {
                self.failed(now, &format!("answered {status}"));
                None
            }
        }
    }

    pub fn on_register_timeout(&mut self, now: Instant) {
        self.failed(now, "no answer");
    }

    /// The proxy answered our OPTIONS (any response), or did not.
    pub fn on_options(&mut self, answered: bool) {
        self.options_in_flight = false;
        if answered != self.up {
            if answered {
                info!(trunk = %self.trunk, "trunk proxy answers again");
            } else {
                warn!(trunk = %self.trunk, "trunk proxy does not answer OPTIONS");
            }
        }
        self.up = answered;
        metrics::gauge!("hotline_trunk_up", "trunk" => self.trunk.clone()).set(if answered {
            1.0
        } else {
            0.0
        });
    }
}

/// The expiry the registrar granted: our Contact's `expires`, else the
/// `Expires` header.
fn granted_expiry(resp: &Response, sent: &Request) -> Option<Duration> {
    let ours = sent
        .headers
        .get("Contact")
        .and_then(NameAddr::parse)
        .map(|c| c.uri);
    let from_contact = resp.headers.get_all_split("Contact").find_map(|c| {
        let c = NameAddr::parse(c)?;
        if ours.as_deref() != Some(c.uri.as_str()) {
            return None;
        }
        c.params.value("expires")?.parse::<u64>().ok()
    });
    let secs = from_contact.or_else(|| resp.headers.get("Expires")?.trim().parse().ok())?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(now: Instant) -> TrunkClient {
        let config = crate::config::Config::parse(
            "trunks:
  - name: carrier
    allow: []
    outbound: { proxy: 'sip:carrier.example:5080', username: u, password: p, register: true, register-expires: 600, keepalive: 20s }
",
        )
        .unwrap();
        TrunkClient::new(
            &config.trunks[0],
            "127.0.0.1:5080".parse().unwrap(),
            "cid".into(),
            "tag".into(),
            now,
        )
        .unwrap()
    }

    fn via() -> (String, String) {
        (
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx".into(),
            "z9hG4bKx".into(),
        )
    }

    fn response(status: u16, extra: &str) -> Response {
        let text = format!(
            "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nCall-ID: cid\r\nCSeq: 1 REGISTER\r\nFrom: <sip:u@carrier.example:5080>;tag=tag\r\nTo: <sip:u@carrier.example:5080>;tag=r\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match super::super::message::parse(text.as_bytes()).unwrap() {
            super::super::message::Message::Response(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn registers_refreshes_before_expiry_and_backs_off_on_failure() {
        let t = Instant::now();
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut c = client(t);
        let due = c.due(t, local, "ua", via);
        let kinds: Vec<Kind> = due.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(kinds, vec![Kind::Register, Kind::Options]);
        let reg = due[0].1.clone();
        assert_eq!(reg.uri, "sip:carrier.example:5080");
        assert_eq!(reg.headers.get("Expires"), Some("600"));
        assert!(
            c.due(t, local, "ua", via).is_empty(),
            "one of each in flight"
        );
        // Challenged: sent again with credentials, once.
        let again = c.on_register_response(
            &response(
                401,
                "WWW-Authenticate: Digest realm=\"c\", nonce=\"n\", qop=\"auth\"\r\n",
            ),
            &reg,
            t,
            via(),
        );
        let (again, _) = again.expect("answered with credentials");
        assert!(again
            .headers
            .get("Authorization")
            .is_some_and(|a| a.contains("username=\"u\"")));
        assert_eq!(
            again.headers.get("CSeq"),
            Some("3 REGISTER"),
            "after the OPTIONS' 2"
        );
        // A second challenge to the same attempt is a failure: back off 2 s, then 4 s.
        assert!(c
            .on_register_response(
                &response(401, "WWW-Authenticate: Digest realm=\"c\", nonce=\"m\"\r\n"),
                &again,
                t,
                via()
            )
            .is_none());
        assert!(c
            .due(t + Duration::from_millis(1900), local, "ua", via)
            .iter()
            .all(|(k, _, _)| *k != Kind::Register));
        assert_eq!(c.due(t + Duration::from_secs(2), local, "ua", via).len(), 1);
        c.on_register_timeout(t + Duration::from_secs(2));
        assert!(c
            .due(t + Duration::from_millis(5900), local, "ua", via)
            .is_empty());
        let due = c.due(t + Duration::from_secs(6), local, "ua", via);
        assert_eq!(due.len(), 1);
        // Granted 300 s (the Contact's expires wins): refreshed 30 s early.
        let contact = due[0].1.headers.get("Contact").unwrap().to_owned();
        let ok = response(
            200,
            &format!("Contact: {contact};expires=300\r\nExpires: 600\r\n"),
        );
        assert!(c
            .on_register_response(&ok, &due[0].1, t + Duration::from_secs(6), via())
            .is_none());
        assert!(c.registered_until.is_some());
        let later = t + Duration::from_secs(6 + 269);
        assert!(c
            .due(later, local, "ua", via)
            .iter()
            .all(|(k, _, _)| *k != Kind::Register));
        let refresh = t + Duration::from_secs(6 + 270);
        assert!(c
            .due(refresh, local, "ua", via)
            .iter()
            .any(|(k, _, _)| *k == Kind::Register));
        // The keep-alive: unanswered, the proxy is down; answered, up again.
        c.on_options(false);
        assert!(!c.up);
        c.on_options(true);
        assert!(c.up);
    }
}
