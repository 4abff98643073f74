//! `webrtc:` browser legs, for agents who take calls in a browser tab.
//! Absent: the engine opens no WebRTC port and has no browser legs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `webrtc:` the shared UDP port and what pages are told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebRtcConfig {
    /// The one UDP port every browser leg shares, on `rtp.bind`; its host
    /// candidate is `rtp.advertise` (else the bind address).
    pub port: u16,
    /// STUN and TURN servers handed to pages (`iceServers`), for agents
    /// behind firewalls that let only a relay through.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    /// `relay`: pages connect only through the TURN servers above (no
    /// direct path is tried: agents behind strict firewalls, or a policy
    /// that agents' addresses are never seen); `all`: any path.
    #[serde(default)]
    pub ice_transport_policy: IceTransportPolicy,
    /// A browser leg from which nothing (consent checks, media) came for
    /// this long is dead: a closed tab or a laptop gone off the network.
    #[serde(default = "consent_timeout", deserialize_with = "super::de_duration")]
    pub consent_timeout: Duration,
    /// What browser legs send: `g711` (the caller's PCMU or PCMA, straight
    /// through) or `opus` (transcoded to and from the caller's G.711: a
    /// quarter of the bandwidth, and Opus's loss concealment, for agents
    /// on home or mobile lines; costs CPU per leg).
    #[serde(default)]
    pub codec: BrowserCodec,
}

/// `webrtc.codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrowserCodec {
    #[default]
    G711,
    Opus,
}

/// Which paths a page's ICE may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IceTransportPolicy {
    #[default]
    All,
    Relay,
}

fn consent_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One entry of `webrtc.ice-servers`: a STUN server, or a TURN server with
/// either a fixed `username` and `credential` (every page gets the same)
/// or a `secret` shared with the TURN server (coturn's `use-auth-secret`):
/// each page then gets credentials of its own, for its agent, that expire
/// after `credential-ttl`, and the secret never leaves the engine.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IceServer {
    /// `stun:HOST:PORT`, `turn:HOST:PORT?transport=udp`, `turns:…`.
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub credential: Option<String>,
    /// The TURN server's shared secret (the "TURN REST API" scheme).
    #[serde(default)]
    pub secret: Option<String>,
    /// How long credentials made from `secret` are good for: longer than
    /// the longest call (a relay's allocation is refreshed with them).
    #[serde(default = "credential_ttl", deserialize_with = "super::de_duration")]
    pub credential_ttl: Duration,
}

fn credential_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<hidden>");
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &hidden(&self.credential))
            .field("secret", &hidden(&self.secret))
            .field("credential_ttl", &self.credential_ttl)
            .finish()
    }
}

/// An entry of a page's `iceServers`, as the page gets it.
#[derive(Clone, PartialEq, Serialize)]
pub struct PageIceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl fmt::Debug for PageIceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageIceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl IceServer {
    /// What `agent`'s page is told of this server at `unix_now` (seconds
    /// since 1970): with a `secret`, the username is the expiry and the
    /// agent (`EXPIRY:AGENT`) and the credential is base64 of its
    /// HMAC-SHA1 under the secret, as coturn checks them.
    pub fn for_page(&self, agent: &str, unix_now: u64) -> PageIceServer {
        use base64::Engine as _;
        use hmac::Mac as _;
        let hmac = |secret: &str, text: &str| {
            // An HMAC takes a key of any length: this never fails.
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(text.as_bytes());
            Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
        };
        let (username, credential) = match &self.secret {
            Some(secret) => {
                let expiry = unix_now.saturating_add(self.credential_ttl.as_secs());
                let username = format!("{expiry}:{agent}");
                let credential = hmac(secret, &username);
                (Some(username), credential)
            }
            None => (self.username.clone(), self.credential.clone()),
        };
        PageIceServer {
            urls: self.urls.clone(),
            username,
            credential,
        }
    }
}

impl WebRtcConfig {
    /// The `iceServers` for `agent`'s page, now.
    pub fn ice_servers_for(&self, agent: &str) -> Vec<PageIceServer> {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.ice_servers
            .iter()
            .map(|s| s.for_page(agent, unix_now))
            .collect()
    }
}

/// `desktop:` the agent desktop (`/agent`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DesktopConfig {
    /// The reasons an agent picks from when pausing.
    pub pause_reasons: Vec<String>,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        DesktopConfig {
            pause_reasons: ["break", "lunch", "meeting", "training"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

impl DesktopConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.pause_reasons.is_empty() {
            return Err("desktop: pause-reasons needs at least one reason".into());
        }
        for r in &self.pause_reasons {
            if r.trim().is_empty() || r.len() > 64 || r.chars().any(char::is_control) {
                return Err(format!(
                    "desktop: pause-reasons: `{r}` must be a short text (1 to 64 characters)"
                ));
            }
        }
        Ok(())
    }
}

impl WebRtcConfig {
    /// The WebRTC settings' problems, in the words `hotline validate` shows.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.port == 0 {
            return Err("webrtc: port must be a UDP port (1-65535)".into());
        }
        let t = self.consent_timeout;
        if t < Duration::from_secs(2) || t > Duration::from_secs(120) {
            return Err("webrtc: consent-timeout must be between 2s and 120s".into());
        }
        let has_turn = self
            .ice_servers
            .iter()
            .flat_map(|s| &s.urls)
            .any(|u| u.starts_with("turn"));
        if self.ice_transport_policy == IceTransportPolicy::Relay && !has_turn {
            return Err(
                "webrtc: ice-transport-policy: relay needs a turn: server in ice-servers".into(),
            );
        }
        for server in &self.ice_servers {
            if server.urls.is_empty() {
                return Err("webrtc: ice-servers: an entry has no urls".into());
            }
            for url in &server.urls {
                let scheme = url.split(':').next().unwrap_or_default();
                if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
                    return Err(format!(
                        "webrtc: ice-servers: `{url}` is not a stun:, stuns:, turn: or turns: URL"
                    ));
                }
                let turn = scheme.starts_with("turn");
                let fixed = server.username.is_some() && server.credential.is_some();
                if turn && !fixed && server.secret.is_none() {
                    return Err(format!(
                        "webrtc: ice-servers: `{url}` needs a username and a credential, or a secret"
                    ));
                }
                if !turn && server.secret.is_some() {
                    return Err(format!(
                        "webrtc: ice-servers: `{url}`: a secret is for turn: and turns: servers"
                    ));
                }
            }
            if let Some(secret) = &server.secret {
                if server.username.is_some() || server.credential.is_some() {
                    return Err("webrtc: ice-servers: an entry has a secret and a username or credential; the secret makes them (give one or the other)".into());
                }
                if secret.len() < 16 {
                    return Err(
                        "webrtc: ice-servers: a secret must be at least 16 characters".into(),
                    );
                }
            }
            let ttl = server.credential_ttl;
            if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(7 * 86400) {
                return Err(
                    "webrtc: ice-servers: credential-ttl must be between 1m and 168h".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn a_turn_secret_makes_each_agent_credentials_of_its_own_that_expire() {
        let c = Config::parse(
            "webrtc: { port: 40000, ice-servers: [{ urls: ['turn:turn.example:3478'], secret: 0123456789abcdef-secret }] }\n",
        )
        .unwrap();
        let w = c.webrtc.unwrap();
        let page = w.ice_servers[0].for_page("1001", 1_700_000_000);
        // Twelve hours by default; the credential as coturn computes it
        // (checked against `openssl dgst -sha1 -hmac`).
        assert_eq!(page.username.as_deref(), Some("1700043200:1001"));
        assert_eq!(
            page.credential.as_deref(),
            Some("AfOkx2hvI2q/r5wRQiJRVDtp0e0=")
        );
        let other = w.ice_servers[0].for_page("1002", 1_700_000_000);
        assert_ne!(other.credential, page.credential);
        // The page's JSON and the config's debug form never show the secret.
        let json = serde_json::to_string(&w.ice_servers_for("1001")).unwrap();
        assert!(!json.contains("0123456789abcdef-secret"), "{json}");
        assert!(!json.contains("secret"), "{json}");
        let debug = format!("{w:?}");
        assert!(!debug.contains("0123456789abcdef-secret"), "{debug}");
    }

    #[test]
    fn fixed_turn_credentials_go_to_the_page_as_written_and_are_not_logged() {
        let c = Config::parse(
            "webrtc: { port: 40000, ice-servers: [{ urls: ['turn:t:3478'], username: agent, credential: turnpass }] }\n",
        )
        .unwrap();
        let w = c.webrtc.unwrap();
        let page = w.ice_servers[0].for_page("1001", 1);
        assert_eq!(page.username.as_deref(), Some("agent"));
        assert_eq!(page.credential.as_deref(), Some("turnpass"));
        assert!(!format!("{w:?}").contains("turnpass"));
        assert!(!format!("{page:?}").contains("turnpass"));
    }

    #[test]
    fn turn_secrets_that_cannot_work_are_refused_in_words() {
        let refused = |servers: &str| {
            Config::parse(&format!(
                "webrtc: {{ port: 40000, ice-servers: [{servers}] }}\n"
            ))
            .unwrap_err()
        };
        let e = refused("{ urls: ['turn:t:3478'] }");
        assert!(
            e.contains("needs a username and a credential, or a secret"),
            "{e}"
        );
        let e = refused("{ urls: ['stun:t:3478'], secret: 0123456789abcdef }");
        assert!(e.contains("a secret is for turn:"), "{e}");
        let e = refused("{ urls: ['turn:t:3478'], secret: short }");
        assert!(e.contains("at least 16 characters"), "{e}");
        let e = refused(
            "{ urls: ['turn:t:3478'], secret: 0123456789abcdef, username: a, credential: b }",
        );
        assert!(e.contains("one or the other"), "{e}");
        let e = refused("{ urls: ['turn:t:3478'], secret: 0123456789abcdef, credential-ttl: 10s }");
        assert!(e.contains("credential-ttl"), "{e}");
    }
}
