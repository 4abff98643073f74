//! HTTP Digest authentication for SIP (RFC 7616 as SIP uses it, RFC 3261
//! §22; RFC 8760 for SHA-256): challenges, the client's Authorization
//! header, and checking it. Nonces carry their issue time and a keyed hash,
//! so any nonce we issued is recognised after a restart of nothing but the
//! secret; `nc` is tracked per nonce so a replayed response is refused.

use std::collections::HashMap;
use std::time::Duration;

use md5::Md5;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "SHA-256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// The lowercase hex hash of `s`.
    pub fn hash(self, s: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(s.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(s.as_bytes())),
        }
    }
}

/// H(username:realm:password).
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.hash(&format!("{user}:{realm}:{password}"))
}

/// The `response` a client with `ha1` computes for qop=auth.
pub fn response(
    alg: Algorithm,
    ha1: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    alg.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
}

/// A client's `Authorization: Digest …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub qop: Option<String>,
    /// As sent (8 hex digits): it goes into the hash exactly so.
    pub nc: Option<String>,
}

impl Credentials {
    pub fn parse(value: &str) -> Option<Credentials> {
        let (mut map, algorithm) = digest_params(value)?;
        Some(Credentials {
            username: map.remove("username")?,
            realm: map.remove("realm")?,
            nonce: map.remove("nonce")?,
            uri: map.remove("uri")?,
            response: map.remove("response")?.to_ascii_lowercase(),
            algorithm,
            cnonce: map.remove("cnonce"),
            qop: map.remove("qop"),
            nc: map.remove("nc"),
        })
    }

    /// The nonce count as a number, from its hex digits.
    pub fn nc_value(&self) -> Option<u32> {
        u32::from_str_radix(self.nc.as_deref()?, 16).ok()
    }
}

/// A `Digest k=v, …` header's parameters (names in lower case) and its
/// algorithm (MD5 when not named); `None` for another scheme or an
/// algorithm we do not speak.
fn digest_params(value: &str) -> Option<(HashMap<String, String>, Algorithm)> {
    let (scheme, params) = value.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    // A directive given twice (two realms, two URIs) is refused: which one
    // a check reads and which one a digest was computed over must not differ.
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in params_of(params) {
        if map.insert(k.to_ascii_lowercase(), v).is_some() {
            return None;
        }
    }
    let algorithm = match map.get("algorithm") {
        Some(a) => Algorithm::parse(a)?,
        None => Algorithm::Md5,
    };
    Some((map, algorithm))
}

/// `k=v, k="v, with comma"` pairs; quoted values may hold commas and `\"`.
fn params_of(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && chars[i] != ',' {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect::<String>().trim().to_owned();
        if i >= chars.len() || chars[i] != '=' {
            continue;
        }
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && chars[i] != ',' {
                value.push(chars[i]);
                i += 1;
            }
            value = value.trim().to_owned();
        }
        if !key.is_empty() {
            out.push((key, value));
        }
    }
    out
}

/// A `WWW-Authenticate` value.
pub fn challenge(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
        alg.name()
    )
}

/// A server's challenge (`WWW-Authenticate`, `Proxy-Authenticate`), as a
/// client answers it: Hotline authenticating to a carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    /// The server offers `qop=auth` (RFC 2617/7616); else the RFC 2069 form.
    pub qop_auth: bool,
    pub opaque: Option<String>,
}

impl Challenge {
    /// `None` for another scheme, a missing realm or nonce, or an
    /// algorithm we do not speak.
    pub fn parse(value: &str) -> Option<Challenge> {
        let (mut map, algorithm) = digest_params(value)?;
        let qop_auth = map
            .get("qop")
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")));
        let challenge = Challenge {
            realm: map.remove("realm")?,
            nonce: map.remove("nonce")?,
            algorithm,
            qop_auth,
            opaque: map.remove("opaque"),
        };
        // What we echo in quotes must be echoed as it came: a quote, a
        // backslash or a control character could not be (and a quote would
        // let the server write directives into our answer).
        let echoable = |v: &str| !v.contains(['"', '\\']) && !v.chars().any(char::is_control);
        let fine = echoable(&challenge.realm)
            && echoable(&challenge.nonce)
            && challenge.opaque.as_deref().is_none_or(echoable);
        fine.then_some(challenge)
    }

    /// The `Authorization` (or `Proxy-Authorization`) value for a request.
    pub fn answer(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let ha1 = ha1(self.algorithm, user, &self.realm, password);
        let mut v = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={}",
            self.realm,
            self.nonce,
            self.algorithm.name()
        );
        if self.qop_auth {
            let nc = format!("{nc:08x}");
            let r = response(self.algorithm, &ha1, method, uri, &self.nonce, &nc, cnonce);
            v.push_str(&format!(
                ", response=\"{r}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
            ));
        } else {
            let ha2 = self.algorithm.hash(&format!("{method}:{uri}"));
            let r = self.algorithm.hash(&format!("{ha1}:{}:{ha2}", self.nonce));
            v.push_str(&format!(", response=\"{r}\""));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        v
    }
}

/// What a nonce in a client's response turns out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Ours, fresh, and this nc is new.
    Fresh,
    /// Ours but past its lifetime: challenge again with `stale=true`.
    Stale,
    /// Ours, but this nc (or a higher one) was already used: a replay.
    Replayed,
    /// Not a nonce we issued.
    Unknown,
}

/// Issues and checks nonces.
pub struct Nonces {
    secret: [u8; 16],
    lifetime: Duration,
    /// Highest nc seen per nonce (nonces age out with their lifetime).
    seen: HashMap<String, (u32, u64)>,
}

impl Nonces {
    pub fn new(lifetime: Duration) -> Nonces {
        Nonces {
            secret: rand::random(),
            lifetime,
            seen: HashMap::new(),
        }
    }

    fn mac(&self, issued: u64, salt: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(issued.to_be_bytes());
        h.update(salt.to_be_bytes());
        hex::encode(&h.finalize()[..12])
    }

    /// A new nonce, unique even within a second; `now_secs` is wall-clock
    /// seconds.
    pub fn issue(&self, now_secs: u64) -> String {
        let salt: u64 = rand::random();
        format!("{now_secs:x}.{salt:x}.{}", self.mac(now_secs, salt))
    }

    /// Checks a nonce and records `nc` when it is fresh.
    pub fn check(&mut self, nonce: &str, nc: u32, now_secs: u64) -> NonceState {
        let mut parts = nonce.split('.');
        let (Some(ts), Some(salt), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return NonceState::Unknown;
        };
        let (Ok(issued), Ok(salt)) = (u64::from_str_radix(ts, 16), u64::from_str_radix(salt, 16))
        else {
            return NonceState::Unknown;
        };
        if !constant_time_eq(mac.as_bytes(), self.mac(issued, salt).as_bytes()) {
            return NonceState::Unknown;
        }
        if now_secs.saturating_sub(issued) > self.lifetime.as_secs() || issued > now_secs + 60 {
            return NonceState::Stale;
        }
        // Forget nonces past their lifetime so the table stays small.
        let lifetime = self.lifetime.as_secs();
        if self.seen.len() > 10_000 {
            self.seen
                .retain(|_, (_, t)| now_secs.saturating_sub(*t) <= lifetime);
        }
        match self.seen.get_mut(nonce) {
            Some((last, _)) if nc <= *last => NonceState::Replayed,
            Some((last, _)) => {
                *last = nc;
                NonceState::Fresh
            }
            None => {
                self.seen.insert(nonce.to_owned(), (nc, issued));
                NonceState::Fresh
            }
        }
    }
}

/// Compares two secrets without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    /// Fuzzing found a challenge with two realms and two nonces: which one
    /// a check read and which one the answer used could differ. A
    /// directive given twice is refused, in challenges and credentials.
    #[test]
    fn a_directive_given_twice_is_refused() {
        let crash = include_bytes!("../../fuzz/seeds/digest/regression-duplicate-realm");
        let text = String::from_utf8_lossy(crash);
        assert!(Challenge::parse(&text).is_none());
        assert!(Credentials::parse(&text).is_none());
        let two_uris = "Digest username=\"1001\", realm=\"hotline\", nonce=\"n\", uri=\"sip:a\", uri=\"sip:b\", response=\"r\"";
        assert!(Credentials::parse(two_uris).is_none());
        assert!(Credentials::parse(&two_uris.replace(", uri=\"sip:b\"", "")).is_some());
    }

    /// Fuzzing found a challenge whose `opaque` held a quote: echoed as it
    /// came, it broke our answer (and a server could have written
    /// directives into it). A realm, nonce or opaque we could not echo
    /// faithfully makes the challenge unanswerable.
    #[test]
    fn a_challenge_we_could_not_echo_is_refused() {
        let crash = include_bytes!("../../fuzz/seeds/digest/regression-opaque-quote");
        assert!(Challenge::parse(&String::from_utf8_lossy(crash)).is_none());
        let quoted = "Digest realm=\"r\", nonce=\"n\", opaque=x\", response=\"forged";
        assert!(Challenge::parse(quoted).is_none());
        let fine = Challenge::parse("Digest realm=\"r\", nonce=\"n\", opaque=\"o\"").unwrap();
        let answer = fine.answer("u", "p", "INVITE", "sip:x", "c", 1);
        let back = Credentials::parse(&answer).unwrap();
        assert_eq!((back.realm.as_str(), back.nonce.as_str()), ("r", "n"));
    }

    use super::*;

    #[test]
    fn our_answer_to_a_challenge_is_what_a_registrar_checks() {
        // RFC 2617 §3.5's example, with qop=auth.
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(c.qop_auth);
        let v = c.answer(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert!(
            v.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{v}"
        );
        assert!(
            v.contains("nc=00000001") && v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"")
        );
        // And our own registrar accepts what we send.
        let creds = Credentials::parse(&v).unwrap();
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(
            response(
                Algorithm::Md5,
                &ha1,
                "GET",
                "/dir/index.html",
                &creds.nonce,
                creds.nc.as_deref().unwrap(),
                creds.cnonce.as_deref().unwrap()
            ),
            creds.response
        );
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
        assert!(Challenge::parse("Digest realm=\"x\"").is_none(), "no nonce");
    }

    #[test]
    fn rfc_7616_example_values() {
        // RFC 7616 §3.9.1 (HTTP, but the arithmetic is the same).
        let ha1_md5 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = response(
            Algorithm::Md5,
            &ha1_md5,
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
        let ha1_sha = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = response(
            Algorithm::Sha256,
            &ha1_sha,
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn authorization_header_parses_with_quotes_and_commas() {
        let c = Credentials::parse(
            r#"Digest username="1001", realm="hotline", nonce="abc.def", uri="sip:127.0.0.1", response="ABCDEF", algorithm=SHA-256, cnonce="x,y", qop=auth, nc=000001ff"#,
        )
        .unwrap();
        assert_eq!(c.username, "1001");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.cnonce.as_deref(), Some("x,y"));
        assert_eq!(c.response, "abcdef");
        assert_eq!(c.nc_value(), Some(511));
        assert!(Credentials::parse("Basic dXNlcjpwYXNz").is_none());
        assert!(Credentials::parse("Digest username=\"a\"").is_none());
    }

    #[test]
    fn nonces_expire_and_nc_must_grow_past_255() {
        let mut n = Nonces::new(Duration::from_secs(300));
        let nonce = n.issue(1_000);
        assert_eq!(n.check(&nonce, 1, 1_010), NonceState::Fresh);
        assert_eq!(n.check(&nonce, 1, 1_010), NonceState::Replayed);
        for nc in 2..=300 {
            assert_eq!(n.check(&nonce, nc, 1_020), NonceState::Fresh, "nc {nc}");
        }
        assert_eq!(n.check(&nonce, 256, 1_020), NonceState::Replayed);
        assert_eq!(n.check(&nonce, 301, 1_400), NonceState::Stale);
        assert_eq!(n.check("1f4.0.0000", 1, 1_010), NonceState::Unknown);
        assert_ne!(n.issue(1_000), n.issue(1_000), "unique within a second");
        assert_eq!(n.check("garbage", 1, 1_010), NonceState::Unknown);
        // Another engine's (another secret's) nonce is not ours.
        let other = Nonces::new(Duration::from_secs(300)).issue(1_000);
        assert_eq!(n.check(&other, 1, 1_010), NonceState::Unknown);
    }
}
