//! The registrar (RFC 3261 §10): agents' softphones REGISTER with digest
//! authentication; each agent may have several contacts, each with its own
//! expiry. Where a contact was registered from (the `received`/`rport`
//! address) is kept, so an agent behind NAT is reached where its packets
//! come from. Failed authentications are counted per source address and a
//! source that keeps failing is locked out for a while.
//!
//! Sans-I/O: the core hands a REGISTER in with `now`, and sends the answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::digest::{self, Algorithm, Credentials, NonceState, Nonces};
use super::header::{NameAddr, SipUri};
use super::message::Request;
use super::transaction::{Target, Transport};
use crate::config::{Agent, RegistrarConfig};

/// One registered contact of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI the phone gave.
    pub contact: String,
    /// Where its REGISTER came from: where to send its calls.
    pub source: SocketAddr,
    /// Over what it came: a contact registered over a TCP connection is
    /// reached over that connection (RFC 5626 flow reuse), and goes when
    /// it closes.
    pub transport: Transport,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
}

/// The registrar's answer to one REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Headers to add to the response (WWW-Authenticate, Contact, …).
    pub headers: Vec<(String, String)>,
    /// The agent whose contacts changed.
    pub changed: Option<String>,
}

impl Answer {
    fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            changed: None,
        }
    }
}

struct Secret {
    ha1: HashMap<Algorithm, String>,
}

pub struct Registrar {
    config: RegistrarConfig,
    algorithms: Vec<Algorithm>,
    secrets: HashMap<String, Secret>,
    nonces: Nonces,
    bindings: HashMap<String, Vec<Binding>>,
    failures: HashMap<IpAddr, (u32, Instant)>,
    locked: HashMap<IpAddr, Instant>,
    /// Per account: failed authentications and the back-off they earned.
    accounts: HashMap<String, AccountGuard>,
    /// Per account: addresses it authenticated from (the last few), which
    /// its back-off never slows.
    known: HashMap<String, Vec<IpAddr>>,
}

/// One account's failures and back-off.
#[derive(Debug, Clone, Copy)]
struct AccountGuard {
    failures: u32,
    last_failure: Instant,
    /// Before this, an unknown address's attempt is not weighed.
    next_try: Instant,
}

/// Addresses remembered per account as known.
const KNOWN_SOURCES: usize = 8;

/// The digest algorithms the registrar offers, strongest first as
/// configured.
fn algorithms(config: &RegistrarConfig) -> Vec<Algorithm> {
    config
        .algorithms
        .iter()
        .filter_map(|a| Algorithm::parse(a))
        .collect()
}

/// Each agent's HA1 per algorithm (given, or from the password).
fn secrets(config: &RegistrarConfig, agents: &[Agent]) -> HashMap<String, Secret> {
    agents
        .iter()
        .map(|a| {
            let mut ha1 = HashMap::new();
            for alg in [Algorithm::Md5, Algorithm::Sha256] {
                let given = match alg {
                    Algorithm::Md5 => a.ha1.clone(),
                    Algorithm::Sha256 => a.ha1_sha256.clone(),
                };
                let h = given.map(|h| h.to_ascii_lowercase()).or_else(|| {
                    a.password
                        .as_ref()
                        .map(|p| digest::ha1(alg, &a.id, &config.realm, p))
                });
                if let Some(h) = h {
                    ha1.insert(alg, h);
                }
            }
            (a.id.clone(), Secret { ha1 })
        })
        .collect()
}

/// One refused request, as one log line a fail2ban filter matches:
/// `hotline refused: source=IP reason=WHY[ user=ID]`.
pub fn log_refused(source: IpAddr, reason: &str, user: Option<&str>) {
    match user {
        Some(u) => warn!(
            "hotline refused: source={source} reason={reason} user={}",
            u.escape_debug()
        ),
        None => warn!("hotline refused: source={source} reason={reason}"),
    }
}

impl Registrar {
    pub fn new(config: &RegistrarConfig, agents: &[Agent]) -> Registrar {
        Registrar {
            config: config.clone(),
            algorithms: algorithms(config),
            secrets: secrets(config, agents),
            nonces: Nonces::new(config.nonce_lifetime),
            bindings: HashMap::new(),
            failures: HashMap::new(),
            locked: HashMap::new(),
            accounts: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// A new version of the config: each agent's secret as it says now
    /// (a changed one is asked for at the agent's next REGISTER; the
    /// contacts it registered stay until then), and agents no longer in it
    /// lose their contacts. Those agents are returned. Nonces already
    /// given, failures and lockouts carry over.
    pub fn reconfigure(&mut self, config: &RegistrarConfig, agents: &[Agent]) -> Vec<String> {
        self.algorithms = algorithms(config);
        self.secrets = secrets(config, agents);
        if config.nonce_lifetime != self.config.nonce_lifetime {
            self.nonces = Nonces::new(config.nonce_lifetime);
        }
        self.config = config.clone();
        let gone: Vec<String> = self
            .bindings
            .keys()
            .filter(|a| !self.secrets.contains_key(*a))
            .cloned()
            .collect();
        for agent in &gone {
            self.bindings.remove(agent);
        }
        self.accounts.retain(|a, _| self.secrets.contains_key(a));
        self.known.retain(|a, _| self.secrets.contains_key(a));
        gone
    }

    pub fn restore(&mut self, agent: &str, bindings: Vec<Binding>, now: Instant) -> bool {
        if !self.secrets.contains_key(agent) {
            return false;
        }
        let live: Vec<Binding> = bindings
            .into_iter()
            .filter(|b| b.expires_at > now)
            .collect();
        if live.is_empty() {
            return false;
        }
        // Where the agent registered from counts as known to its back-off.
        let known = self.known.entry(agent.to_owned()).or_default();
        for b in &live {
            if !known.contains(&b.source.ip()) && known.len() < KNOWN_SOURCES {
                known.push(b.source.ip());
            }
        }
        self.bindings.insert(agent.to_owned(), live);
        true
    }

    /// The TCP connection from `peer` closed: the contacts registered over
    /// it go with it (nothing else reaches them). Returns the agents whose
    /// contacts changed.
    pub fn connection_closed(&mut self, peer: SocketAddr) -> Vec<String> {
        let mut changed = Vec::new();
        for (agent, list) in &mut self.bindings {
            let before = list.len();
            list.retain(|b| !(b.transport.is_reliable() && b.source == peer));
            if list.len() != before {
                changed.push(agent.clone());
            }
        }
        changed.sort();
        changed
    }

    /// The live contacts of an agent.
    pub fn contacts(&self, agent: &str) -> &[Binding] {
        self.bindings.get(agent).map_or(&[], Vec::as_slice)
    }

    /// Every agent with at least one contact.
    pub fn registered(&self) -> impl Iterator<Item = (&str, &[Binding])> {
        self.bindings
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(a, b)| (a.as_str(), b.as_slice()))
    }

    fn challenges(&self, stale: bool, now_secs: u64) -> Answer {
        let nonce = self.nonces.issue(now_secs);
        let algs: Vec<Algorithm> = self.algorithms.clone();
        Answer {
            status: 401,
            headers: algs
                .into_iter()
                .map(|alg| {
                    (
                        "WWW-Authenticate".to_owned(),
                        digest::challenge(&self.config.realm, &nonce, alg, stale),
                    )
                })
                .collect(),
            changed: None,
        }
    }

    /// A failed authentication of `user` from `source`: logged, counted
    /// towards the source's lockout and the account's back-off.
    fn fail(&mut self, source: IpAddr, user: &str, reason: &str, now: Instant) -> Answer {
        log_refused(source, reason, Some(user));
        metrics::counter!("hotline_sip_auth_failures_total", "reason" => reason.to_owned())
            .increment(1);
        let window = self.config.failure_window;
        let entry = self.failures.entry(source).or_insert((0, now));
        if now.duration_since(entry.1) > window {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 >= self.config.max_failures {
            warn!(%source, failures = entry.0, lockout = ?self.config.lockout, "too many failed registrations; source locked out");
            log_refused(source, "lockout", None);
            self.locked.insert(source, now + self.config.lockout);
            self.failures.remove(&source);
        }
        // Only accounts that exist are followed (the table stays bounded).
        if self.secrets.contains_key(user) && self.config.account_failures > 0 {
            let quiet = self.account_quiet();
            let guard = self
                .accounts
                .entry(user.to_owned())
                .or_insert(AccountGuard {
                    failures: 0,
                    last_failure: now,
                    next_try: now,
                });
            if now.duration_since(guard.last_failure) > quiet {
                guard.failures = 0;
            }
            guard.failures += 1;
            guard.last_failure = now;
            if let Some(over) = guard.failures.checked_sub(self.config.account_failures) {
                let backoff =
                    Duration::from_secs(1u64 << over.min(20)).min(self.config.account_backoff_max);
                guard.next_try = now + backoff;
                if over == 0 {
                    warn!(%user, "failed authentications of this account from several addresses; slowing new addresses down");
                }
            }
        }
        Answer::status(403)
    }

    /// After this long without a failure an account's count starts again.
    fn account_quiet(&self) -> Duration {
        self.config.lockout.max(self.config.account_backoff_max * 2)
    }

    /// `true` while `user`'s back-off holds attempts from `source` (an
    /// address the account has not authenticated from) back.
    fn held_back(&self, user: &str, source: IpAddr, now: Instant) -> bool {
        let known = self.known.get(user).is_some_and(|k| k.contains(&source));
        !known
            && self.accounts.get(user).is_some_and(|g| {
                g.failures >= self.config.account_failures
                    && now < g.next_try
                    && now.duration_since(g.last_failure) <= self.account_quiet()
            })
    }

    /// Answers a REGISTER from `source` (an address: over UDP). `now_secs`
    /// is wall-clock time, for nonces.
    pub fn register(
        &mut self,
        req: &Request,
        source: impl Into<Target>,
        now: Instant,
        now_secs: u64,
    ) -> Answer {
        let from: Target = source.into();
        let source = from.addr;
        let Some(aor) = req
            .headers
            .get("To")
            .and_then(NameAddr::parse)
            .and_then(|n| SipUri::parse(&n.uri))
            .and_then(|u| u.user)
        else {
            return Answer::status(400);
        };
        // An agent registers its own address.
        if let Err(answer) = self.authenticate(req, &aor, source, now, now_secs) {
            return answer;
        }
        self.update_bindings(&aor, req, from, now)
    }

    /// Checks that `req` carries valid digest credentials of agent `user`
    /// (qop=auth, a fresh nonce of ours). `Err` is the answer to send: a
    /// challenge, or 403 (counted towards the source's lockout).
    pub fn authenticate(
        &mut self,
        req: &Request,
        user: &str,
        source: SocketAddr,
        now: Instant,
        now_secs: u64,
    ) -> Result<(), Answer> {
        let ip = source.ip();
        if let Some(until) = self.locked.get(&ip) {
            if now < *until {
                log_refused(ip, "locked-out", Some(user));
                return Err(Answer::status(403));
            }
            self.locked.remove(&ip);
        }
        let Some(creds) = req
            .headers
            .get_all("Authorization")
            .filter_map(Credentials::parse)
            .find(|c| c.realm == self.config.realm)
        else {
            return Err(self.challenges(false, now_secs));
        };
        if !self.algorithms.contains(&creds.algorithm) {
            return Err(self.challenges(false, now_secs));
        }
        // An account under attack: an attempt from a new address is not
        // even weighed before its back-off is over (nor counted again).
        if self.held_back(user, ip, now) {
            log_refused(ip, "account-backoff", Some(user));
            metrics::counter!("hotline_sip_auth_failures_total", "reason" => "account-backoff")
                .increment(1);
            return Err(Answer::status(403));
        }
        // Credentials computed for another request's URI are not for this
        // one (RFC 7616 §3.4.6).
        if !same_uri(&creds.uri, &req.uri) {
            info!(user = %creds.username, uri = %creds.uri, request_uri = %req.uri, %source, method = %req.method, "authentication for another URI refused");
            return Err(self.fail(ip, user, "auth-uri", now));
        }
        let ha1 = self
            .secrets
            .get(user)
            .and_then(|s| s.ha1.get(&creds.algorithm))
            .cloned();
        let (Some(ha1), true, Some(nc), Some(cnonce)) = (
            ha1,
            creds.username == user && creds.qop.as_deref() == Some("auth"),
            creds.nc_value(),
            creds.cnonce.clone(),
        ) else {
            info!(user = %creds.username, expected = %user, %source, method = %req.method, "authentication refused");
            return Err(self.fail(ip, user, "auth", now));
        };
        let expected = digest::response(
            creds.algorithm,
            &ha1,
            req.method.as_str(),
            &creds.uri,
            &creds.nonce,
            creds.nc.as_deref().unwrap_or_default(),
            &cnonce,
        );
        if !digest::constant_time_eq(expected.as_bytes(), creds.response.as_bytes()) {
            info!(user = %creds.username, %source, method = %req.method, "authentication with a wrong password");
            return Err(self.fail(ip, user, "auth", now));
        }
        match self.nonces.check(&creds.nonce, nc, now_secs) {
            NonceState::Fresh => {}
            NonceState::Stale => return Err(self.challenges(true, now_secs)),
            // A nonce from before a restart, or a replay: ask again.
            NonceState::Unknown | NonceState::Replayed => {
                return Err(self.challenges(false, now_secs))
            }
        }
        self.failures.remove(&ip);
        let known = self.known.entry(user.to_owned()).or_default();
        if !known.contains(&ip) {
            if known.len() >= KNOWN_SOURCES {
                known.remove(0);
            }
            known.push(ip);
        }
        Ok(())
    }

    fn update_bindings(&mut self, aor: &str, req: &Request, from: Target, now: Instant) -> Answer {
        let source = from.addr;
        let header_expires: Option<u64> = req
            .headers
            .get("Expires")
            .and_then(|e| e.trim().parse().ok());
        let call_id = req.call_id().to_owned();
        let cseq = req.cseq().map_or(0, |(n, _)| n);
        let contacts: Vec<&str> = req.headers.get_all_split("Contact").collect();
        // Changed on a copy: a REGISTER that is refused changes nothing.
        let before = self.bindings.get(aor).cloned().unwrap_or_default();
        let mut list = before.clone();
        if contacts.iter().any(|c| c.trim() == "*") {
            if header_expires != Some(0) || contacts.len() != 1 {
                return Answer::status(400);
            }
            list.clear();
        }
        for c in contacts.iter().filter(|c| c.trim() != "*") {
            let Some(na) = NameAddr::parse(c) else {
                return Answer::status(400);
            };
            if SipUri::parse(&na.uri).is_none() {
                return Answer::status(400);
            }
            let expires = na
                .params
                .value("expires")
                .and_then(|e| e.trim().parse::<u64>().ok())
                .or(header_expires)
                .unwrap_or(self.config.default_expires.as_secs());
            if expires > 0 && expires < self.config.min_expires.as_secs() {
                return Answer {
                    status: 423,
                    headers: vec![(
                        "Min-Expires".into(),
                        self.config.min_expires.as_secs().to_string(),
                    )],
                    changed: None,
                };
            }
            let expires = expires.min(self.config.max_expires.as_secs());
            let existing = list.iter().position(|b| b.contact == na.uri);
            if let Some(i) = existing {
                // An older or repeated REGISTER of the same Call-ID changes nothing.
                if list[i].call_id == call_id && cseq <= list[i].cseq {
                    continue;
                }
                list.remove(i);
            }
            if expires > 0 {
                list.push(Binding {
                    contact: na.uri.clone(),
                    source,
                    transport: from.transport,
                    expires_at: now + Duration::from_secs(expires),
                    call_id: call_id.clone(),
                    cseq,
                });
            }
        }
        if list.len() > self.config.max_contacts {
            info!(agent = %aor, contacts = list.len(), max = self.config.max_contacts, %source, "registration refused: too many contacts");
            return Answer::status(403);
        }
        let headers = list
            .iter()
            .map(|b| {
                let left = b.expires_at.saturating_duration_since(now).as_secs();
                (
                    "Contact".to_owned(),
                    format!("<{}>;expires={left}", b.contact),
                )
            })
            .collect();
        let changed = (list != before).then(|| aor.to_owned());
        if let Some(agent) = &changed {
            info!(%agent, contacts = list.len(), %source, "registration");
        }
        self.bindings.insert(aor.to_owned(), list);
        Answer {
            status: 200,
            headers,
            changed,
        }
    }

    /// Drops expired contacts; returns the agents whose contacts changed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut changed = Vec::new();
        for (agent, list) in self.bindings.iter_mut() {
            let n = list.len();
            list.retain(|b| b.expires_at > now);
            if list.len() != n {
                info!(%agent, contacts = list.len(), "registration expired");
                changed.push(agent.clone());
            }
        }
        self.locked.retain(|_, until| *until > now);
        changed
    }

    /// Drops one contact (it stopped answering keep-alive OPTIONS).
    pub fn drop_contact(&mut self, agent: &str, contact: &str) -> bool {
        let Some(list) = self.bindings.get_mut(agent) else {
            return false;
        };
        let n = list.len();
        list.retain(|b| b.contact != contact);
        list.len() != n
    }
}

/// Whether the digest's `uri` names the request's Request-URI: the same
/// text, or the same scheme, host and port (case aside) and the same user.
/// A `uri` with no user that names this server is taken too: SIPp computes
/// it so for every request (`sip:host:port`), and the nonce, good for one
/// request only, still binds the credentials to this one.
fn same_uri(digest: &str, request: &str) -> bool {
    if digest.trim() == request.trim() {
        return true;
    }
    match (SipUri::parse(digest), SipUri::parse(request)) {
        (Some(a), Some(b)) => {
            a.scheme.eq_ignore_ascii_case(&b.scheme)
                && (a.user.is_none() || a.user == b.user)
                && a.host.eq_ignore_ascii_case(&b.host)
                && a.port.unwrap_or(5060) == b.port.unwrap_or(5060)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Message};

    fn config() -> (RegistrarConfig, Vec<Agent>) {
        let c = crate::config::Config::parse(
            "queues: { support: {} }\nagents:\n  - { id: '1001', password: s3cret, queues: [support] }\nregistrar: { max-failures: 3 }\n",
        )
        .unwrap();
        (c.registrar, c.agents)
    }

    fn register(contact: &str, expires: Option<u32>, auth: Option<String>, cseq: u32) -> Request {
        let mut text = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK{cseq}\r\nFrom: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: reg1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\nMax-Forwards: 70\r\n"
        );
        if let Some(e) = expires {
            text.push_str(&format!("Expires: {e}\r\n"));
        }
        if let Some(a) = auth {
            text.push_str(&format!("Authorization: {a}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    /// What a phone with `password` answers to the first challenge of `a`.
    fn answer_challenge(a: &Answer, password: &str, nc: u32) -> String {
        let (_, ch) = a
            .headers
            .iter()
            .find(|(k, _)| k == "WWW-Authenticate")
            .unwrap();
        let nonce = ch
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let alg = if ch.contains("SHA-256") {
            Algorithm::Sha256
        } else {
            Algorithm::Md5
        };
        let ha1 = digest::ha1(alg, "1001", "hotline", password);
        let nc = format!("{nc:08x}");
        let r = digest::response(alg, &ha1, "REGISTER", "sip:127.0.0.1", nonce, &nc, "cn");
        format!(
            "Digest username=\"1001\", realm=\"hotline\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{r}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"cn\"",
            alg.name()
        )
    }

    const SRC: &str = "10.0.0.2:5062";

    #[test]
    fn credentials_for_another_uri_are_refused_and_count_towards_the_lockout() {
        let (cfg, agents) = config();
        let mut r = Registrar::new(&cfg, &agents);
        let now = Instant::now();
        let src: SocketAddr = SRC.parse().unwrap();
        let a = r.register(
            &register("<sip:1001@10.0.0.2>", Some(300), None, 1),
            src,
            now,
            1000,
        );
        // Right password, but computed for another Request-URI.
        let auth = answer_challenge(&a, "s3cret", 1)
            .replace("uri=\"sip:127.0.0.1\"", "uri=\"sip:elsewhere.example\"");
        let auth = {
            // Recompute the response for the URI it names, as a replay would carry.
            let nonce = auth
                .split("nonce=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let alg = if auth.contains("SHA-256") {
                Algorithm::Sha256
            } else {
                Algorithm::Md5
            };
            let ha1 = digest::ha1(alg, "1001", "hotline", "s3cret");
            let resp = digest::response(
                alg,
                &ha1,
                "REGISTER",
                "sip:elsewhere.example",
                nonce,
                "00000001",
                "cn",
            );
            let old = auth
                .split("response=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned();
            auth.replace(&old, &resp)
        };
        let refused = r.register(
            &register("<sip:1001@10.0.0.2>", Some(300), Some(auth), 2),
            src,
            now,
            1001,
        );
        assert_eq!(refused.status, 403);
        assert!(r.contacts("1001").is_empty());
        // The same URI in another spelling is the same URI.
        assert!(same_uri("sip:127.0.0.1", "SIP:127.0.0.1:5060"));
        assert!(!same_uri("sip:127.0.0.1", "sip:10.0.0.1"));
        assert!(!same_uri("sip:1001@127.0.0.1", "sip:1002@127.0.0.1"));
        assert!(!same_uri("sip:127.0.0.1:5070", "sip:*45@127.0.0.1"));
        // SIPp's way: the server, without the user.
        assert!(same_uri("sip:127.0.0.1:5060", "sip:*45@127.0.0.1:5060"));
    }

    #[test]
    fn an_agent_may_not_register_more_contacts_than_the_cap_and_a_refused_register_changes_nothing()
    {
        let (mut cfg, agents) = config();
        cfg.max_contacts = 3;
        let mut r = Registrar::new(&cfg, &agents);
        let now = Instant::now();
        let src: SocketAddr = SRC.parse().unwrap();
        let many: Vec<String> = (1..=4).map(|i| format!("<sip:1001@10.0.0.{i}>")).collect();
        let register_all = |r: &mut Registrar, contacts: &[String], cseq: u32, t: u64| {
            let contact = contacts.join(", ");
            let a = r.register(&register(&contact, Some(300), None, cseq), src, now, t);
            let auth = answer_challenge(&a, "s3cret", 1);
            r.register(
                &register(&contact, Some(300), Some(auth), cseq + 1),
                src,
                now,
                t,
            )
        };
        let ok = register_all(&mut r, &many[..3], 1, 1000);
        assert_eq!(ok.status, 200);
        assert_eq!(r.contacts("1001").len(), 3);
        let refused = register_all(&mut r, &many[3..], 3, 1001);
        assert_eq!(refused.status, 403, "a fourth is over the cap");
        assert_eq!(r.contacts("1001").len(), 3, "nothing changed");
        // Two hundred in one REGISTER: refused as a whole.
        let flood: Vec<String> = (0..200)
            .map(|i| format!("<sip:1001@10.1.{}.{}>", i / 250, i % 250))
            .collect();
        let refused = register_all(&mut r, &flood, 5, 1002);
        assert_eq!(refused.status, 403);
        assert_eq!(r.contacts("1001").len(), 3);
    }

    /// One REGISTER answered to a fresh challenge with `password`, from `src`.
    fn attempt(r: &mut Registrar, src: SocketAddr, password: &str, now: Instant, cseq: u32) -> u16 {
        let a = r.register(
            &register("<sip:1001@10.0.0.2>", Some(300), None, cseq),
            src,
            now,
            1000,
        );
        if a.status != 401 {
            return a.status;
        }
        let auth = answer_challenge(&a, password, 1);
        r.register(
            &register("<sip:1001@10.0.0.2>", Some(300), Some(auth), cseq + 1),
            src,
            now,
            1000,
        )
        .status
    }

    #[test]
    fn a_changed_secret_is_asked_for_at_the_next_register_and_a_removed_agent_loses_its_contacts() {
        let (cfg, agents) = config();
        let mut r = Registrar::new(&cfg, &agents);
        let src: SocketAddr = SRC.parse().unwrap();
        let t = Instant::now();
        assert_eq!(attempt(&mut r, src, "s3cret", t, 1), 200);
        assert_eq!(r.contacts("1001").len(), 1);

        let mut changed = agents.clone();
        changed[0].password = Some("n3w".into());
        assert!(r.reconfigure(&cfg, &changed).is_empty());
        assert_eq!(r.contacts("1001").len(), 1, "the phone stays registered");
        assert_eq!(
            attempt(&mut r, src, "s3cret", t, 3),
            403,
            "the old secret is refused"
        );
        assert_eq!(attempt(&mut r, src, "n3w", t, 5), 200);

        assert_eq!(r.reconfigure(&cfg, &[]), vec!["1001".to_owned()]);
        assert!(r.contacts("1001").is_empty());
        assert_eq!(r.registered().count(), 0);
    }

    #[test]
    fn guesses_spread_over_many_addresses_are_slowed_but_the_agent_is_not_locked_out() {
        let (mut cfg, agents) = config();
        cfg.max_failures = 5; // per address: 4 guesses each never lock one out
        let mut r = Registrar::new(&cfg, &agents);
        let t0 = Instant::now();
        let agent: SocketAddr = "10.0.0.2:5062".parse().unwrap();
        assert_eq!(attempt(&mut r, agent, "s3cret", t0, 1), 200);
        // 20 addresses × 4 wrong guesses within 8 s.
        let mut weighed = 0;
        let mut cseq = 10;
        for i in 0..80u32 {
            let src: SocketAddr = format!("192.0.2.{}:5060", i / 4 + 1).parse().unwrap();
            let at = t0 + Duration::from_millis(100 * u64::from(i));
            let before = r.accounts.get("1001").map_or(0, |g| g.failures);
            assert_eq!(attempt(&mut r, src, "guess", at, cseq), 403);
            if r.accounts.get("1001").map_or(0, |g| g.failures) > before {
                weighed += 1;
            }
            cseq += 2;
        }
        // 5 before the back-off, then one per 1, 2, 4 s: 8 s allow a few.
        assert!(
            (5..=8).contains(&weighed),
            "{weighed} of 80 guesses weighed"
        );
        let during = t0 + Duration::from_millis(8000);
        // Even the right password from a new address waits out the back-off…
        let stranger: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        assert_eq!(attempt(&mut r, stranger, "s3cret", during, 500), 403);
        // …while the agent's own address is never slowed,
        assert_eq!(attempt(&mut r, agent, "s3cret", during, 502), 200);
        // and once the back-off is over (at most a minute), the agent gets
        // in from a new address too: slowed, never locked out.
        let later = during + cfg.account_backoff_max;
        assert_eq!(attempt(&mut r, stranger, "s3cret", later, 504), 200);
        assert!(r.locked.is_empty(), "no address was locked out");
    }

    #[test]
    fn challenge_then_register_then_unregister() {
        let (cfg, agents) = config();
        let mut r = Registrar::new(&cfg, &agents);
        let now = Instant::now();
        let src: SocketAddr = SRC.parse().unwrap();
        let a = r.register(
            &register("<sip:1001@10.0.0.2:5062>", Some(300), None, 1),
            src,
            now,
            1000,
        );
        assert_eq!(a.status, 401);
        assert_eq!(a.headers.len(), 2, "SHA-256 and MD5 offered");
        assert!(a.headers[0].1.contains("algorithm=SHA-256"));
        let auth = answer_challenge(&a, "s3cret", 1);
        let ok = r.register(
            &register("<sip:1001@10.0.0.2:5062>", Some(300), Some(auth.clone()), 2),
            src,
            now,
            1001,
        );
        assert_eq!(ok.status, 200);
        assert_eq!(ok.changed.as_deref(), Some("1001"));
        assert_eq!(
            ok.headers,
            vec![(
                "Contact".into(),
                "<sip:1001@10.0.0.2:5062>;expires=300".into()
            )]
        );
        assert_eq!(r.contacts("1001")[0].source, src);
        // The same response again is a replay: challenged, nothing changes.
        let replay = r.register(
            &register("<sip:1001@10.0.0.2:5062>", Some(300), Some(auth), 3),
            src,
            now,
            1002,
        );
        assert_eq!(replay.status, 401);
        // A second contact, then the expiry of the first.
        let a = r.register(
            &register("<sip:1001@10.0.0.9>;expires=900", None, None, 4),
            src,
            now,
            1003,
        );
        let auth = answer_challenge(&a, "s3cret", 1);
        let ok = r.register(
            &register("<sip:1001@10.0.0.9>;expires=900", None, Some(auth), 5),
            src,
            now,
            1003,
        );
        assert_eq!(ok.headers.len(), 2);
        assert_eq!(
            r.expire(now + Duration::from_secs(301)),
            vec!["1001".to_string()]
        );
        assert_eq!(r.contacts("1001").len(), 1);
        // Contact: * with Expires: 0 removes everything.
        let a = r.register(&register("*", Some(0), None, 6), src, now, 1004);
        let auth = answer_challenge(&a, "s3cret", 1);
        let ok = r.register(&register("*", Some(0), Some(auth), 7), src, now, 1004);
        assert_eq!(ok.status, 200);
        assert!(r.contacts("1001").is_empty());
    }

    #[test]
    fn stale_nonces_short_expiries_and_lockout() {
        let (cfg, agents) = config();
        let mut r = Registrar::new(&cfg, &agents);
        let now = Instant::now();
        let src: SocketAddr = SRC.parse().unwrap();
        let a = r.register(
            &register("<sip:1001@10.0.0.2>", Some(300), None, 1),
            src,
            now,
            1000,
        );
        let auth = answer_challenge(&a, "s3cret", 1);
        let stale = r.register(
            &register("<sip:1001@10.0.0.2>", Some(300), Some(auth), 2),
            src,
            now,
            1000 + 301,
        );
        assert_eq!(stale.status, 401);
        assert!(stale.headers[0].1.contains("stale=true"));
        let auth = answer_challenge(&stale, "s3cret", 1);
        let brief = r.register(
            &register("<sip:1001@10.0.0.2>", Some(10), Some(auth), 3),
            src,
            now,
            1302,
        );
        assert_eq!(brief.status, 423);
        assert_eq!(brief.headers, vec![("Min-Expires".into(), "60".into())]);
        // Three wrong passwords lock the source out, even for the right one.
        for i in 0..3 {
            let a = r.register(
                &register("<sip:1001@10.0.0.2>", Some(300), None, 10 + i),
                src,
                now,
                1400,
            );
            let bad = answer_challenge(&a, "guess", 1);
            let res = r.register(
                &register("<sip:1001@10.0.0.2>", Some(300), Some(bad), 20 + i),
                src,
                now,
                1400,
            );
            assert_eq!(res.status, 403);
        }
        let a = r.register(
            &register("<sip:1001@10.0.0.2>", Some(300), None, 30),
            src,
            now,
            1400,
        );
        assert_eq!(a.status, 403, "locked out");
        // Another address is not affected; the lockout ends.
        let other: SocketAddr = "10.0.0.3:5060".parse().unwrap();
        assert_eq!(
            r.register(
                &register("<sip:1001@10.0.0.3>", Some(300), None, 31),
                other,
                now,
                1400
            )
            .status,
            401
        );
        let later = now + Duration::from_secs(301);
        assert_eq!(
            r.register(
                &register("<sip:1001@10.0.0.2>", Some(300), None, 32),
                src,
                later,
                1701
            )
            .status,
            401
        );
    }

    #[test]
    fn unknown_users_and_other_users_addresses_are_refused() {
        let (cfg, agents) = config();
        let mut r = Registrar::new(&cfg, &agents);
        let now = Instant::now();
        let src: SocketAddr = SRC.parse().unwrap();
        let mut req = register("<sip:9999@10.0.0.2>", Some(300), None, 1);
        req.headers.remove("To");
        req.headers.push("To", "<sip:9999@127.0.0.1>");
        let a = r.register(&req, src, now, 1000);
        assert_eq!(a.status, 401, "no hint whether the user exists");
        let auth = answer_challenge(&a, "s3cret", 1);
        req.headers.push("Authorization", auth);
        assert_eq!(r.register(&req, src, now, 1000).status, 403);
    }
}
