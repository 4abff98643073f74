//! `webrtc:` browser legs, for agents who take calls in a browser tab.
//! Absent: the engine opens no WebRTC port and has no browser legs.

use std::time::Duration;

use serde::Deserialize;

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

/// One entry of a page's `iceServers`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:HOST:PORT`, `turn:HOST:PORT?transport=udp`, `turns:…`.
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
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
                if turn && (server.username.is_none() || server.credential.is_none()) {
                    return Err(format!(
                        "webrtc: ice-servers: `{url}` needs a username and a credential"
                    ));
                }
            }
        }
        Ok(())
    }
}
