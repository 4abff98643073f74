//! The engine configuration (`hotline.yaml`): plain data that every layer may read.
//!
//! Every key has a default, so an empty file is a valid configuration that runs
//! the demo line on loopback. The README documents each key.
//!
//! Over 800 lines: every key with its default and its check in one place,
//! in the order the README documents them (schedules are in `schedule.rs`);
//! its tests are the last part.

mod addrs;
pub mod schedule;
mod webrtc;

pub use addrs::PerFamily;
pub use webrtc::{
    BrowserCodec, DesktopConfig, IceServer, IceTransportPolicy, PageIceServer, WebRtcConfig,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::diagnostic::Diagnostic;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

/// The whole engine configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub rtp: RtpConfig,
    /// Where recordings, voicemail and the SQLite store live.
    pub data_dir: PathBuf,
    /// Where prompts and hold music are loaded from (every file, recursively).
    pub sounds_dir: PathBuf,
    /// Who may send calls. A source that no trunk allows gets `403 Forbidden`.
    pub trunks: Vec<Trunk>,
    /// Where the IVR flows live: every `*.yaml` in it is loaded.
    pub flows_dir: PathBuf,
    /// Dialled number (Request-URI user) → flow name; `default` for the rest.
    pub routes: BTreeMap<String, String>,
    /// Business hours by name, for `hours` nodes.
    pub schedules: BTreeMap<String, schedule::Schedule>,
    /// Queues by name, for `queue` nodes.
    pub queues: BTreeMap<String, QueueConfig>,
    /// Where a `transfer` node may send a call: name → SIP URI. A flow can
    /// reach only these, never a number a caller typed.
    pub transfers: BTreeMap<String, String>,
    pub calls: CallsConfig,
    /// Agents: who may REGISTER, with what secret, in which queues.
    pub agents: Vec<Agent>,
    /// A file (relative to this one) with more agents, as a YAML list: a
    /// team's roster and secrets kept apart from the rest of the config.
    pub agents_file: Option<PathBuf>,
    pub registrar: RegistrarConfig,
    /// What agents dial from their softphones to change their state.
    pub feature_codes: FeatureCodes,
    pub shutdown: ShutdownConfig,
    pub dns: DnsConfig,
    pub log: LogConfig,
    /// How long call records, recordings and voicemails are kept.
    pub retention: Retention,
    /// Browser legs (agents in a browser tab); absent: none.
    pub webrtc: Option<WebRtcConfig>,
    /// The agent desktop (`/agent`).
    pub desktop: DesktopConfig,
}

/// `retention:` how long what the engine keeps is kept (`400d`, `90d`,
/// `12h`); unset: for ever. A sweep at start and every day deletes what is
/// older. A queue's own `retention` overrides `records` and `recordings`
/// for its calls.
#[derive(Debug, Clone, PartialEq, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retention {
    /// Call records, survey answers and agents' state changes.
    #[serde(deserialize_with = "de_age")]
    pub records: Option<Duration>,
    /// Conversation recordings (the files, and the record's reference).
    #[serde(deserialize_with = "de_age")]
    pub recordings: Option<Duration>,
    /// Voicemails (the files and their index).
    #[serde(deserialize_with = "de_age")]
    pub voicemail: Option<Duration>,
}

/// An age: days (`400d`) or a duration (`12h`).
fn de_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    let age = match text.trim().strip_suffix('d') {
        Some(days) => days
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("'{text}' is not a number of days like 90d")),
        None => parse_duration(&text),
    }
    .map_err(serde::de::Error::custom)?;
    if age.is_zero() {
        return Err(serde::de::Error::custom(
            "a retention of 0 would delete everything at once",
        ));
    }
    Ok(Some(age))
}

/// `log:` how the engine writes its log (to stderr; the journal under
/// systemd). Which lines: `HOTLINE_LOG` (`info`, `hotline=debug`, …).
#[derive(Debug, Clone, PartialEq, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    pub format: LogFormat,
}

/// `text` for people; `json`, one object a line, for a log pipeline (every
/// line of a call carries its `call_id` in its span, as in text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `media-encryption` of a trunk or an agent: SRTP with SDES keys.
/// `optional` answers an offer with `a=crypto` (RTP/AVP or RTP/SAVP) in
/// kind and offers RTP/AVP with `a=crypto`; `required` answers only such
/// offers (`488` otherwise) and offers RTP/SAVP. Keys go only over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaEncryption {
    #[default]
    None,
    Optional,
    Required,
}

/// `dns:`: who resolves trunks' and phones' host names (RFC 3263).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DnsConfig {
    /// `IP` or `IP:PORT` of the DNS servers to ask; none: the system's
    /// (`/etc/resolv.conf`).
    pub servers: Vec<String>,
    /// An INVITE that has heard nothing back (not even `100`) for this long
    /// goes to the host name's next address, when it has one.
    #[serde(deserialize_with = "de_duration")]
    pub failover_after: Duration,
    /// A trunk's proxy that does not resolve is tried again this often.
    #[serde(deserialize_with = "de_duration")]
    pub retry: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            failover_after: Duration::from_secs(4),
            retry: Duration::from_secs(30),
        }
    }
}

impl DnsConfig {
    /// The servers as addresses (port 53 unless given).
    pub fn server_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.servers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        format!("dns: servers: `{s}` is not an IP address (IP or IP:PORT)")
                    })
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SipConfig {
    /// Address for both UDP and TCP; or one per family (IPv4 and IPv6,
    /// dual stack), the first the primary.
    pub listen: PerFamily<SocketAddr>,
    /// The address put in Contact and Via when `listen` is a wildcard or
    /// behind NAT; one per family with a dual-stack `listen`.
    pub advertise: Option<PerFamily<IpAddr>>,
    pub udp: bool,
    pub tcp: bool,
    pub user_agent: String,
    /// The TCP connection budget.
    #[serde(deserialize_with = "de_sip_limits")]
    pub connections: ConnectionLimits,
    /// The largest SIP message taken, on every transport; bigger ones are
    /// dropped (UDP) or end their connection (TCP).
    pub max_message_size: usize,
    /// Requests per source address that is not a trunk (agents' phones,
    /// strangers): past the rate, the source's requests are dropped
    /// unanswered for a while.
    pub rate_limit: RateLimit,
    /// SIP over TLS (RFC 3261 §26): where to listen, with which certificate.
    pub tls: Option<SipTls>,
}

/// `sip.tls`: the TLS listener. The certificate and key (PEM) are read
/// again on SIGHUP (a renewed certificate needs no restart).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SipTls {
    /// Default: `sip.listen`'s address, port 5061.
    pub listen: Option<SocketAddr>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `sip.rate-limit`: more than `requests` within `per` from one address
/// blocks it for `block`; `requests: 0` turns it off.
#[derive(Debug, Clone, PartialEq, Copy, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimit {
    pub requests: u32,
    #[serde(deserialize_with = "de_duration")]
    pub per: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub block: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            requests: 60,
            per: Duration::from_secs(2),
            block: Duration::from_secs(30),
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: PerFamily::one(SocketAddr::from(([127, 0, 0, 1], 5060))),
            advertise: None,
            udp: true,
            tcp: true,
            user_agent: format!("Hotline/{}", env!("CARGO_PKG_VERSION")),
            connections: ConnectionLimits::SIP,
            max_message_size: 65_535,
            rate_limit: RateLimit::default(),
            tls: None,
        }
    }
}

/// A listener's connection budget (`sip.connections`, `http.connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, from everyone; more are refused at once.
    pub max: usize,
    /// Connections open at once from one IP address.
    pub per_source: usize,
    /// A connection that carries nothing else may sit this long without a
    /// message (SIP: one that carries no registration and no dialog).
    pub idle_timeout: Duration,
    /// A message (a request's head, for HTTP) must be complete this long
    /// after its first byte, and a new connection's first one this long
    /// after it opened.
    pub message_timeout: Duration,
}

/// `connections:` as written: what is not given keeps the listener's default.
#[derive(Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConnectionLimitsText {
    max: Option<usize>,
    per_source: Option<usize>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    message_timeout: Option<Duration>,
}

impl ConnectionLimitsText {
    fn over(self, base: ConnectionLimits) -> ConnectionLimits {
        ConnectionLimits {
            max: self.max.unwrap_or(base.max),
            per_source: self.per_source.unwrap_or(base.per_source),
            idle_timeout: self.idle_timeout.unwrap_or(base.idle_timeout),
            message_timeout: self.message_timeout.unwrap_or(base.message_timeout),
        }
    }
}

fn de_sip_limits<'de, D: Deserializer<'de>>(d: D) -> Result<ConnectionLimits, D::Error> {
    Ok(ConnectionLimitsText::deserialize(d)?.over(ConnectionLimits::SIP))
}

fn de_http_limits<'de, D: Deserializer<'de>>(d: D) -> Result<ConnectionLimits, D::Error> {
    let text = ConnectionLimitsText::deserialize(d)?;
    if text.idle_timeout.is_some() {
        return Err(serde::de::Error::custom(
            "`idle-timeout` is for SIP connections; an HTTP connection waiting for its next request is closed after `message-timeout`",
        ));
    }
    Ok(text.over(ConnectionLimits::HTTP))
}

impl ConnectionLimits {
    /// SIP over TCP: phones and trunks keep a connection each; a NAT'd
    /// office may put a hundred phones behind one address.
    pub const SIP: ConnectionLimits = ConnectionLimits {
        max: 1024,
        per_source: 256,
        idle_timeout: Duration::from_secs(120),
        message_timeout: Duration::from_secs(10),
    };

    /// The operations API: a few operators, wallboards and scrapers.
    pub const HTTP: ConnectionLimits = ConnectionLimits {
        max: 256,
        per_source: 64,
        idle_timeout: Duration::from_secs(60),
        message_timeout: Duration::from_secs(10),
    };
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Who may use the operations API: each request carries one of these
    /// as `Authorization: Bearer TOKEN`. None: every request is refused.
    pub tokens: Vec<ApiToken>,
    /// Pages served without a token to clients on loopback: `metrics`,
    /// `wallboard` (for a scraper or a wall screen on the same machine).
    pub public: Vec<PublicPage>,
    /// Host names (besides IP addresses and `localhost`) a browser may use
    /// to reach the pages and event streams: a name not listed is refused,
    /// so a page on another site cannot rebind its name to this server.
    pub hosts: Vec<String>,
    /// Web origins (`https://ops.example.com`) besides the server's own
    /// whose pages may call the API or open its event streams.
    pub origins: Vec<String>,
    /// The API's connection budget (see [`ConnectionLimits`]); a request
    /// head must be complete within `message-timeout`, also between
    /// requests on a kept-alive connection.
    #[serde(deserialize_with = "de_http_limits")]
    pub connections: ConnectionLimits,
    /// HTTPS on the listener: with it, the listener speaks TLS only.
    /// Browsers give the agent desktop a microphone only in a secure
    /// context, which off this machine means HTTPS.
    pub tls: Option<HttpTls>,
}

/// `http.tls`: the certificate chain and key (PEM), read again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: Vec::new(),
            public: Vec::new(),
            hosts: Vec::new(),
            origins: Vec::new(),
            connections: ConnectionLimits::HTTP,
            tls: None,
        }
    }
}

/// A page that may be served without a token on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublicPage {
    Metrics,
    Wallboard,
}

/// A bearer token of the operations API and what it may do.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiToken {
    /// Who uses it (for the log; the token itself is never logged).
    pub name: String,
    pub token: String,
    pub role: Role,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("token", &"<secret>")
            .field("role", &self.role)
            .finish()
    }
}

/// What a token may do; each role may also do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Look: calls, queues, agents, events.
    Read,
    /// Also log agents in and out, pause and unpause them.
    Agent,
    /// Also hang calls up.
    Admin,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RtpConfig {
    /// The IP address RTP sockets bind to; or one per family (dual
    /// stack): each call's is its peer's family.
    pub bind: PerFamily<IpAddr>,
    /// The address written into SDP, when it differs from `bind` (one per
    /// family with a dual-stack `bind`).
    pub advertise: Option<PerFamily<IpAddr>>,
    /// Local ports for RTP; one even port per call.
    pub ports: PortRange,
    /// How many media clock tasks pace outbound RTP (0: one per core).
    pub clocks: usize,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            bind: PerFamily::one(IpAddr::from([127, 0, 0, 1])),
            advertise: None,
            ports: PortRange {
                low: 20000,
                high: 29999,
            },
            clocks: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Trunk {
    pub name: String,
    /// Source addresses allowed to send calls: `127.0.0.1`, `10.0.0.0/8`, `::1`.
    pub allow: Vec<IpNet>,
    /// Send RTP to where the caller's RTP comes from once it arrives (NAT).
    #[serde(default = "yes")]
    pub symmetric_rtp: bool,
    /// The numbers this trunk may dial out to (callbacks); none by default.
    #[serde(default)]
    pub dial_plan: crate::dialplan::DialPlan,
    /// How calls are placed over this trunk (callbacks); unset: never.
    /// The trunk is in our trust domain (RFC 3325): its
    /// `P-Asserted-Identity` is the caller's number. From others it is
    /// ignored (the From user is used).
    #[serde(default)]
    pub trust_identity: bool,
    /// SRTP with SDES keys (RFC 4568) on calls from (and over) it.
    #[serde(default)]
    pub media_encryption: MediaEncryption,
    /// SDES keys travel in the SDP: only over TLS, unless this is set, in
    /// which case anyone who sees the SIP can decrypt the audio.
    #[serde(default)]
    pub insecure_media_keys_over_plain_sip: bool,
    #[serde(default)]
    pub outbound: Option<Outbound>,
    /// Caps on the calls this trunk brings in.
    #[serde(default)]
    pub inbound: Inbound,
}

/// `trunks[].inbound`: at most `max-calls` calls from the trunk at once and
/// `max-cps` new ones a second; more get `503` with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Inbound {
    pub max_calls: Option<usize>,
    pub max_cps: Option<u32>,
}

/// How Hotline places calls over a trunk: where INVITEs go and as whom.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Outbound {
    /// The carrier's proxy (and registrar): `sip:HOST[:PORT]`.
    pub proxy: String,
    /// The account, for digest on `401`/`407` and for REGISTER.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The number presented as caller ID (From's user part).
    #[serde(default)]
    pub caller_id: String,
    /// At most this many calls placed over the trunk at once.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Register the account at the proxy (refreshed before it expires).
    #[serde(default)]
    pub register: bool,
    /// The registration lifetime asked for.
    #[serde(default = "default_register_expires", deserialize_with = "de_duration")]
    pub register_expires: Duration,
    /// Send OPTIONS to the proxy this often (0: never).
    #[serde(default, deserialize_with = "de_duration")]
    pub keepalive: Duration,
    /// For a TLS proxy (`sips:` or `;transport=tls`): the CA certificates
    /// (PEM) its certificate must chain to; unset: the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_max_calls() -> usize {
    10
}

fn default_register_expires() -> Duration {
    Duration::from_secs(3600)
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("proxy", &self.proxy)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("caller_id", &self.caller_id)
            .field("max_calls", &self.max_calls)
            .field("register", &self.register)
            .field("register_expires", &self.register_expires)
            .field("keepalive", &self.keepalive)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A queue's callback offer: waiting callers may hang up, keep their
/// place, and be called back over `trunk` when their turn comes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CallbackConfig {
    /// The trunk (with `outbound:` and a `dial-plan:`) callbacks go over.
    pub trunk: String,
    /// Offer a callback once the caller has waited this long.
    #[serde(deserialize_with = "de_duration_opt")]
    pub offer_after: Option<Duration>,
    /// Or: offer it on joining when the estimated wait is over this.
    #[serde(deserialize_with = "de_duration_opt")]
    pub when_wait_over: Option<Duration>,
    /// The key that accepts the offer.
    pub key: String,
    /// After a failed attempt (busy, no answer, not confirmed), the next
    /// one comes this much later.
    #[serde(deserialize_with = "de_duration")]
    pub retry_delay: Duration,
    /// Attempts before the callback is given up as failed.
    pub max_attempts: u32,
    /// A callback not delivered this long after it was booked expires.
    #[serde(deserialize_with = "de_duration")]
    pub expire_after: Duration,
    /// Outside this schedule (under `schedules:`), callbacks wait.
    pub schedule: Option<String>,
    /// How long the customer's phone rings.
    #[serde(deserialize_with = "de_duration")]
    pub ring_timeout: Duration,
    /// How long the customer has to press 1 once they answer.
    #[serde(deserialize_with = "de_duration")]
    pub confirm_timeout: Duration,
    /// Tell the agent whom they are calling back and how long that caller
    /// waited, before the customer is dialled.
    pub whisper: bool,
    /// `agent-first` (an agent is reserved, then the customer is called) or
    /// `customer-first` (the customer is called when the callback reaches
    /// the head of the queue, and waits there for the next agent).
    pub delivery: Delivery,
    /// At most this many callbacks to one number may be booked within 24
    /// hours (in any queue), so the offer cannot be used to harass a
    /// number; 0: no cap.
    pub max_per_number_per_day: u32,
}

/// Who is reached first when a callback's turn comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    #[default]
    AgentFirst,
    CustomerFirst,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            trunk: String::new(),
            offer_after: None,
            when_wait_over: None,
            key: "1".into(),
            retry_delay: Duration::from_secs(120),
            max_attempts: 3,
            expire_after: Duration::from_secs(24 * 3600),
            schedule: None,
            ring_timeout: Duration::from_secs(30),
            confirm_timeout: Duration::from_secs(10),
            whisper: true,
            delivery: Delivery::AgentFirst,
            max_per_number_per_day: 3,
        }
    }
}

fn yes() -> bool {
    true
}

/// A queue: how callers wait in it and how its agents are offered them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct QueueConfig {
    /// The prompt callers hear first (`null`: none).
    pub greeting: Option<String>,
    /// The prompt looped while callers wait.
    pub music: String,
    /// How the next agent is picked: `longest-idle` (default),
    /// `round-robin`, `fewest-calls`, `random`, `skills`, `ring-all`.
    pub strategy: Strategy,
    /// How long an agent's phone rings before the next agent is tried.
    #[serde(deserialize_with = "de_duration")]
    pub ring_timeout: Duration,
    /// After a call, the agent is not offered another for this long.
    #[serde(deserialize_with = "de_duration")]
    pub wrap_up: Duration,
    /// Consecutive unanswered offers after which an agent is paused
    /// (reason `no-answer`).
    pub max_no_answer: u32,
    /// Higher is served first when an agent works several queues.
    pub weight: i64,
    /// Tell callers their position and estimated wait when they join.
    pub announce_position: bool,
    /// And again this often while they wait (0: only on joining).
    #[serde(deserialize_with = "de_duration")]
    pub announce_every: Duration,
    /// After waiting this long, a caller leaves by the queue node's
    /// `on-timeout` (voicemail, another queue, …); 0: no limit.
    #[serde(deserialize_with = "de_duration")]
    pub max_wait: Duration,
    /// Callers may join while no agent of the queue is logged in and
    /// reachable; `false` sends them on by `on-timeout` at once.
    pub join_empty: bool,
    /// Waiting callers leave (by `on-timeout`) when the queue's last agent
    /// logs out or becomes unreachable.
    pub leave_empty: bool,
    /// Record the conversation with the agent (stereo WAV, caller left,
    /// agent right): `false`, `true`, or `on-demand` (the agent starts and
    /// stops it with the `record` feature code during the call).
    pub record: Record,
    /// At most this many callers wait; more go on by `on-timeout` (0: no limit).
    pub max_length: usize,
    /// A prompt played to waiting callers every `message-every` (e.g. "you
    /// can also reach us at example.com"), between the music.
    pub message: Option<String>,
    #[serde(deserialize_with = "de_duration")]
    pub message_every: Duration,
    /// The service-level target: calls answered within this wait count as
    /// answered in time (the KPIs' "80 % within 20 s").
    #[serde(deserialize_with = "de_duration")]
    pub service_level: Duration,
    /// A flow (e.g. with a `survey` node) the caller is sent to when the
    /// agent hangs up first, instead of being hung up.
    pub survey: Option<String>,
    /// The screen pop (caller, IVR variables, history) is POSTed here as
    /// JSON when an agent's phone starts ringing.
    pub screen_pop_url: Option<String>,
    /// Ask agents' phones to answer by themselves after this long
    /// (`Call-Info: …;answer-after=N`); unset: they ring.
    #[serde(deserialize_with = "de_duration_opt")]
    pub answer_after: Option<Duration>,
    /// Offer waiting callers a callback that keeps their place.
    pub callback: Option<CallbackConfig>,
    /// How long this queue's call records and recordings are kept (over
    /// the top-level `retention`; `voicemail` is not per queue).
    pub retention: Retention,
    /// What the agent may say of how a call ended (from the API, or with
    /// `feature-codes.disposition` and the code from a SIP phone).
    pub dispositions: Vec<Disposition>,
    /// `required`: the agent's wrap-up lasts until a disposition is given;
    /// `optional` (default): it ends by its time.
    pub disposition: DispositionRule,
    /// The agent desktop's link to the caller in a CRM: `{caller}` and
    /// `{VAR}` (an IVR variable) are replaced, URL-encoded.
    pub crm_url: Option<String>,
}

/// A disposition code of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Disposition {
    /// What is given (`1`, `resolved`, …); digits, to be dialled from a phone.
    pub code: String,
    pub label: String,
    /// The caller's need was met on this call (first-contact resolution).
    #[serde(default)]
    pub first_contact_resolution: bool,
}

/// Whether a queue's calls need a disposition before the agent is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DispositionRule {
    #[default]
    Optional,
    Required,
}

impl QueueConfig {
    /// The disposition of this queue with `code`.
    pub fn disposition_of(&self, code: &str) -> Option<&Disposition> {
        self.dispositions.iter().find(|d| d.code == code)
    }
}

/// Whether a queue's conversations are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Record {
    #[default]
    Off,
    Always,
    OnDemand,
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Record, D::Error> {
        #[derive(Deserialize, PartialEq)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(Record::Always),
            Raw::Flag(false) => Ok(Record::Off),
            Raw::Word(w) if w == "on-demand" => Ok(Record::OnDemand),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "`{w}`: expected true, false or on-demand"
            ))),
        }
    }
}

/// How a queue picks among free agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    LongestIdle,
    RoundRobin,
    FewestCalls,
    Random,
    Skills,
    /// Every free agent's phone rings at once; the first to answer takes it.
    RingAll,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            greeting: Some("please-hold".into()),
            music: "music/default".into(),
            strategy: Strategy::LongestIdle,
            ring_timeout: Duration::from_secs(20),
            wrap_up: Duration::from_secs(10),
            max_no_answer: 1,
            weight: 0,
            announce_position: true,
            announce_every: Duration::from_secs(60),
            max_wait: Duration::ZERO,
            join_empty: true,
            leave_empty: false,
            record: Record::Off,
            max_length: 0,
            message: None,
            message_every: Duration::from_secs(45),
            service_level: Duration::from_secs(20),
            answer_after: None,
            screen_pop_url: None,
            survey: None,
            callback: None,
            retention: Retention::default(),
            dispositions: Vec::new(),
            disposition: DispositionRule::Optional,
            crm_url: None,
        }
    }
}

/// An agent, who works from a SIP softphone registered as `id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Agent {
    /// The SIP user name and extension, e.g. `1001`.
    pub id: String,
    /// The name supervisors see.
    #[serde(default)]
    pub name: Option<String>,
    /// The digest password (or give `ha1`/`ha1-sha256` instead).
    #[serde(default)]
    pub password: Option<String>,
    /// H(id:realm:password) with MD5, for who keeps no plain password.
    #[serde(default)]
    pub ha1: Option<String>,
    /// The same with SHA-256.
    #[serde(default)]
    pub ha1_sha256: Option<String>,
    /// Queues the agent takes calls from.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Skill levels, 1 (some) to 10 (expert): `{ spanish: 8, billing: 5 }`.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// The agent's own time zone (for their shift), IANA name.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// A schedule (under `schedules:`) outside of which the agent is not offered calls.
    #[serde(default)]
    pub shift: Option<String>,
    /// Logged in as soon as a softphone registers (the demo's agents).
    /// SRTP with SDES keys (RFC 4568) towards the agent's phones.
    #[serde(default)]
    pub media_encryption: MediaEncryption,
    /// As for a trunk: keys outside TLS only when this says so.
    #[serde(default)]
    pub insecure_media_keys_over_plain_sip: bool,
    #[serde(default)]
    pub auto_login: bool,
}

/// Numbers an agent dials (authenticated as the agent) to log in, log out
/// and pause or resume.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FeatureCodes {
    pub login: String,
    pub logout: String,
    /// Pauses an available agent; resumes a paused one.
    pub pause: String,
    /// Pressed by the agent during a call of an `on-demand` queue: starts
    /// recording the conversation, or stops it.
    pub record: String,
    /// Dialled by an agent in wrap-up followed by a disposition code
    /// (`*48` then `1`: `*481`): the disposition of their last call.
    pub disposition: String,
    /// Pressed by the agent during a recorded call: pauses the recording
    /// (while the caller gives card data), or resumes it. The recording
    /// holds silence for the paused time; the record lists each pause.
    pub pause_recording: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            login: "*45".into(),
            logout: "*46".into(),
            pause: "*47".into(),
            record: "*1".into(),
            pause_recording: "*2".into(),
            disposition: "*48".into(),
        }
    }
}

/// How agents' softphones register.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistrarConfig {
    /// The digest realm.
    pub realm: String,
    /// Challenges offered, in order of preference: `SHA-256`, `MD5`.
    pub algorithms: Vec<String>,
    #[serde(deserialize_with = "de_duration")]
    pub nonce_lifetime: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub min_expires: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub max_expires: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub default_expires: Duration,
    /// Failed authentications from one address before it is locked out.
    pub max_failures: u32,
    /// The window in which failures count.
    #[serde(deserialize_with = "de_duration")]
    pub failure_window: Duration,
    /// How long a locked-out address gets `403`.
    #[serde(deserialize_with = "de_duration")]
    pub lockout: Duration,
    /// Failed authentications of one account (from any addresses) before
    /// its back-off starts: from then on, from an address the account has
    /// not authenticated from, one attempt is weighed per back-off interval
    /// (1 s, doubling up to `account-backoff-max`) and the rest get `403`
    /// unweighed. Addresses the agent authenticated from are never slowed.
    pub account_failures: u32,
    #[serde(deserialize_with = "de_duration")]
    pub account_backoff_max: Duration,
    /// OPTIONS to every registered contact this often; one that does not
    /// answer is dropped (0 turns it off).
    #[serde(deserialize_with = "de_duration")]
    pub keepalive: Duration,
    /// Contacts one agent may have registered at once.
    pub max_contacts: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "hotline".into(),
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            nonce_lifetime: Duration::from_secs(300),
            min_expires: Duration::from_secs(60),
            max_expires: Duration::from_secs(3600),
            default_expires: Duration::from_secs(600),
            max_failures: 5,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            account_failures: 5,
            account_backoff_max: Duration::from_secs(60),
            keepalive: Duration::from_secs(30),
            max_contacts: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CallsConfig {
    /// A call is ended after this long.
    #[serde(deserialize_with = "de_duration")]
    pub max_duration: Duration,
    /// Ring (180) this long before answering; 0 answers at once.
    #[serde(deserialize_with = "de_duration")]
    pub answer_delay: Duration,
    /// Every call's record (with the IVR's variables) is POSTed here as
    /// JSON when it ends: a CRM or help desk logs the contact.
    pub end_webhook: Option<String>,
    /// While a caller is bridged to an agent (or a transfer target), ask the
    /// other leg this often whether it still has the call (in-dialog
    /// OPTIONS); 0 turns it off.
    #[serde(deserialize_with = "de_duration")]
    pub leg_check: Duration,
    /// A leg that does not answer the check within this long is gone (its
    /// phone died without a BYE): the call ends and the agent is freed.
    #[serde(deserialize_with = "de_duration")]
    pub leg_check_timeout: Duration,
    /// At most this many calls in progress (answered or not, from trunks
    /// and agents' feature codes); more get `503`. 0: no cap.
    pub max_concurrent: usize,
    /// The `Retry-After` of a `503` for overload or a cap (0: none).
    #[serde(deserialize_with = "de_duration")]
    pub retry_after: Duration,
    /// A leg whose peer should be sending RTP but sent nothing for this
    /// long (its phone or network died without a BYE) is ended (0: never).
    /// A leg on hold (`inactive`) is not; comfort noise counts as heard.
    #[serde(deserialize_with = "de_duration")]
    pub media_timeout: Duration,
    /// Session timers (RFC 4028) on every call and leg.
    pub session_timer: SessionTimerConfig,
}

/// `calls.session-timer`: the interval we ask for (and insert when a
/// caller asks for none; 0: none of our own) and the least we accept
/// (90 s at least); a shorter one asked for gets `422`.
#[derive(Debug, Clone, PartialEq, Copy, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SessionTimerConfig {
    #[serde(deserialize_with = "de_duration")]
    pub expires: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub min_se: Duration,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig {
            expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
        }
    }
}

impl SessionTimerConfig {
    /// The least `min-se` RFC 4028 allows.
    pub const MIN_SE_FLOOR: Duration = Duration::from_secs(90);
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            max_duration: Duration::from_secs(4 * 3600),
            leg_check: Duration::from_secs(15),
            leg_check_timeout: Duration::from_secs(6),
            answer_delay: Duration::ZERO,
            end_webhook: None,
            max_concurrent: 1000,
            retry_after: Duration::from_secs(5),
            media_timeout: Duration::from_secs(60),
            session_timer: SessionTimerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ShutdownConfig {
    /// On SIGINT/SIGTERM, calls in progress may go on this long before they are hung up.
    #[serde(deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse_file(path, &text).map_err(|d| ConfigError::Invalid(Box::new(d)))
    }

    /// Parses configuration text; errors name `path`, line and column.
    pub fn parse_file(path: &Path, text: &str) -> Result<Config, Diagnostic> {
        let mut config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| Diagnostic::from_yaml(path, &e))?
        };
        if config.sounds_dir.as_os_str().is_empty() {
            config.sounds_dir = PathBuf::from("sounds");
        }
        if config.data_dir.as_os_str().is_empty() {
            config.data_dir = PathBuf::from("data");
        }
        if config.flows_dir.as_os_str().is_empty() {
            config.flows_dir = PathBuf::from("ivr-flows");
        }
        if config.routes.is_empty() {
            config.routes.insert("default".into(), "support".into());
        }
        if let Some(file) = config.agents_file.clone() {
            let file = path.parent().unwrap_or(Path::new(".")).join(file);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                Diagnostic::whole_file(
                    path,
                    format!("agents-file: cannot read {}: {e}", file.display()),
                )
            })?;
            if !text.trim().is_empty() {
                let more: Vec<Agent> =
                    serde_saphyr::from_str(&text).map_err(|e| Diagnostic::from_yaml(&file, &e))?;
                config.agents.extend(more);
            }
        }
        config
            .check()
            .map_err(|m| Diagnostic::whole_file(path, m))?;
        Ok(config)
    }

    /// Parses configuration text (tests, tools); the error names line and column.
    pub fn parse(text: &str) -> Result<Config, String> {
        Config::parse_file(Path::new("<config>"), text).map_err(|d| d.to_string())
    }

    fn check(&self) -> Result<(), String> {
        self.dns.server_addrs()?;
        if let Some(w) = &self.webrtc {
            w.check()?;
        }
        self.desktop.check()?;
        if self.dns.retry.is_zero() {
            return Err("dns: retry must be more than 0s".into());
        }
        let timer = &self.calls.session_timer;
        if timer.min_se < SessionTimerConfig::MIN_SE_FLOOR {
            return Err("calls: session-timer: min-se must be at least 90s (RFC 4028)".into());
        }
        if !timer.expires.is_zero() && timer.expires < timer.min_se {
            return Err(
                "calls: session-timer: expires must be at least min-se (or 0 for no timer of ours)"
                    .into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for trunk in &self.trunks {
            if !names.insert(trunk.name.as_str()) {
                return Err(format!("trunks: the name '{}' is used twice", trunk.name));
            }
            if let Some(p) = trunk.dial_plan.problems().first() {
                return Err(format!("trunks: {}: dial-plan: {p}", trunk.name));
            }
        }
        for trunk in &self.trunks {
            if let Some(o) = &trunk.outbound {
                let ok = crate::uri::SipUri::parse(&o.proxy)
                    .is_some_and(|u| u.scheme.eq_ignore_ascii_case("sip"));
                if !ok {
                    return Err(format!(
                        "trunks: {}: outbound.proxy: `{}` is not a SIP URI (sip:HOST[:PORT])",
                        trunk.name, o.proxy
                    ));
                }
                if o.password.is_some() != o.username.is_some() {
                    return Err(format!(
                        "trunks: {}: outbound: give both username and password, or neither",
                        trunk.name
                    ));
                }
                if o.register && o.username.is_none() {
                    return Err(format!(
                        "trunks: {}: outbound.register needs a username and password",
                        trunk.name
                    ));
                }
            }
        }
        for (name, q) in &self.queues {
            if let Some(cb) = &q.callback {
                self.check_callback(name, cb)?;
            }
            let mut codes = std::collections::HashSet::new();
            for d in &q.dispositions {
                if d.code.trim().is_empty() {
                    return Err(format!("queues.{name}.dispositions: a code is empty"));
                }
                if !codes.insert(d.code.as_str()) {
                    return Err(format!(
                        "queues.{name}.dispositions: the code `{}` is given twice",
                        d.code
                    ));
                }
            }
            if q.disposition == DispositionRule::Required && q.dispositions.is_empty() {
                return Err(format!(
                    "queues.{name}.disposition: required, but the queue has no dispositions"
                ));
            }
        }
        for origin in &self.http.origins {
            let ok = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', '@']));
            if !ok {
                return Err(format!(
                    "http.origins: `{origin}` is not an origin (http://HOST[:PORT] or https://HOST[:PORT], no path)"
                ));
            }
        }
        for host in &self.http.hosts {
            if host.is_empty() || host.contains(['/', ':', '@', ' ']) {
                return Err(format!(
                    "http.hosts: `{host}` is not a host name (a name such as wallboard.example.com, without port)"
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for a in &self.agents {
            if a.id.is_empty()
                || !a
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "agents: `{}` is not a SIP user name (letters, digits, - _ .)",
                    a.id
                ));
            }
            if !ids.insert(a.id.as_str()) {
                return Err(format!("agents: the id '{}' is used twice", a.id));
            }
            if a.password.is_none() && a.ha1.is_none() && a.ha1_sha256.is_none() {
                return Err(format!(
                    "agents: {} needs a password, ha1 or ha1-sha256",
                    a.id
                ));
            }
            for q in &a.queues {
                if !self.queues.contains_key(q) {
                    return Err(format!(
                        "agents: {} is in the queue `{q}`, which is not under `queues:`",
                        a.id
                    ));
                }
            }
            if let Some(s) = &a.shift {
                if !self.schedules.contains_key(s) {
                    return Err(format!(
                        "agents: {} works the shift `{s}`, which is not under `schedules:`",
                        a.id
                    ));
                }
            }
            if let Some(tz) = &a.time_zone {
                if jiff::tz::TimeZone::get(tz).is_err() {
                    return Err(format!("agents: {}: `{tz}` is not an IANA time zone", a.id));
                }
            }
        }
        let urls =
            self.queues
                .iter()
                .filter_map(|(n, q)| {
                    Some((
                        format!("queues.{n}.screen-pop-url"),
                        q.screen_pop_url.as_ref()?,
                    ))
                })
                .chain(self.queues.iter().filter_map(|(n, q)| {
                    Some((format!("queues.{n}.crm-url"), q.crm_url.as_ref()?))
                }))
                .chain(
                    self.calls
                        .end_webhook
                        .iter()
                        .map(|u| ("calls.end-webhook".to_owned(), u)),
                );
        for (key, url) in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{key}: `{url}` is not an http:// or https:// URL"));
            }
        }
        for alg in &self.registrar.algorithms {
            if !matches!(alg.to_ascii_uppercase().as_str(), "MD5" | "SHA-256") {
                return Err(format!(
                    "registrar.algorithms: `{alg}` is not MD5 or SHA-256"
                ));
            }
        }
        if self.registrar.algorithms.is_empty() {
            return Err("registrar.algorithms: give at least one of SHA-256, MD5".into());
        }
        Ok(())
    }

    fn check_callback(&self, queue: &str, cb: &CallbackConfig) -> Result<(), String> {
        let key = format!("queues.{queue}.callback");
        match self.trunks.iter().find(|t| t.name == cb.trunk) {
            None if cb.trunk.is_empty() => {
                return Err(format!(
                    "{key}: give the `trunk` callbacks are dialled over"
                ))
            }
            None => {
                return Err(format!(
                    "{key}.trunk: `{}` is not under `trunks:`",
                    cb.trunk
                ))
            }
            Some(t) if t.outbound.is_none() => {
                return Err(format!(
                    "{key}.trunk: the trunk `{}` has no `outbound:` settings",
                    cb.trunk
                ))
            }
            Some(_) => {}
        }
        if cb.offer_after.is_none() && cb.when_wait_over.is_none() {
            return Err(format!(
                "{key}: give `offer-after` (a wait) or `when-wait-over` (an estimated wait)"
            ));
        }
        let mut k = cb.key.chars();
        match (k.next(), k.next()) {
            (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => {}
            _ => {
                return Err(format!(
                    "{key}.key: `{}` is not one key (0-9, *, #)",
                    cb.key
                ))
            }
        }
        if cb.max_attempts == 0 {
            return Err(format!("{key}.max-attempts: must be at least 1"));
        }
        if let Some(s) = &cb.schedule {
            if !self.schedules.contains_key(s) {
                return Err(format!("{key}.schedule: `{s}` is not under `schedules:`"));
            }
        }
        Ok(())
    }

    /// The trunk that allows `source`, if any.
    pub fn trunk_for(&self, source: IpAddr) -> Option<&Trunk> {
        self.trunks
            .iter()
            .find(|t| t.allow.iter().any(|net| net.contains(source)))
    }

    /// The IP address written into SDP (the primary family's).
    pub fn media_address(&self) -> IpAddr {
        self.media_address_for(self.rtp.bind.primary())
    }

    /// The IP address written into SDP for a peer at `peer` (its family's).
    pub fn media_address_for(&self, peer: IpAddr) -> IpAddr {
        let bind = self.rtp.bind.pick(peer);
        self.rtp
            .advertise
            .as_ref()
            .and_then(|a| a.of_family(bind))
            .unwrap_or(bind)
    }

    /// The IP address written into Via and Contact (the primary family's).
    pub fn sip_address(&self) -> IpAddr {
        self.sip_address_for(self.sip.listen.primary().ip())
    }

    /// The IP address written into Via and Contact towards `peer`.
    pub fn sip_address_for(&self, peer: IpAddr) -> IpAddr {
        let listen = self.sip.listen.pick(peer).ip();
        self.sip
            .advertise
            .as_ref()
            .and_then(|a| a.of_family(listen))
            .unwrap_or(listen)
    }
}

/// An inclusive range of UDP ports, written `LOW-HIGH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (low, high) = s
            .split_once('-')
            .ok_or_else(|| format!("expected a port range LOW-HIGH, found '{s}'"))?;
        let low: u16 = low
            .trim()
            .parse()
            .map_err(|_| format!("'{low}' is not a port"))?;
        let high: u16 = high
            .trim()
            .parse()
            .map_err(|_| format!("'{high}' is not a port"))?;
        if low > high || high - low < 1 {
            return Err(format!(
                "port range {low}-{high} must be LOW-HIGH with room for one even/odd pair"
            ));
        }
        Ok(PortRange { low, high })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

/// An address block for ACLs: `192.0.2.0/24`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V6(_), IpAddr::V4(ip)) => self.contains(IpAddr::V6(ip.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => self.contains(IpAddr::V4(v4)),
                None => false,
            },
        }
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or ADDRESS/PREFIX block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': prefix must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 500ms, 5s, 2m or 1h"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("'{other}' is not a duration unit (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is out of range"))
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize, PartialEq)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

fn de_duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dual_stack_engine_has_an_address_per_family_and_uses_the_peers() {
        let c = Config::parse(
            "sip: { listen: ['0.0.0.0:5060', '[::]:5060'], advertise: ['203.0.113.5', '2001:db8::5'] }\n\
rtp: { bind: ['0.0.0.0', '::'], advertise: ['203.0.113.5', '2001:db8::5'] }\n",
        )
        .unwrap();
        let v6: IpAddr = "2001:db8::77".parse().unwrap();
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            c.sip_address_for(v6),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            c.sip_address_for(v4),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            c.media_address_for(v6),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c.media_address(), "203.0.113.5".parse::<IpAddr>().unwrap());
        // One family only: its address whatever the peer.
        let c = Config::parse("rtp: { bind: '::1' }\n").unwrap();
        assert_eq!(c.media_address_for(v4), "::1".parse::<IpAddr>().unwrap());
        let e =
            Config::parse("sip: { listen: ['127.0.0.1:5060', '127.0.0.2:5060'] }\n").unwrap_err();
        assert!(e.to_string().contains("two addresses of one family"), "{e}");
    }

    #[test]
    fn empty_config_is_the_loopback_demo() {
        let c = Config::parse("").unwrap();
        assert_eq!(
            c.sip.listen.primary(),
            "127.0.0.1:5060".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.sounds_dir, PathBuf::from("sounds"));
        assert!(c.trunk_for("127.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn trunk_acl_matches_blocks() {
        let c = Config::parse("trunks:\n  - name: lo\n    allow: [127.0.0.0/8, '::1']\n").unwrap();
        assert_eq!(
            c.trunk_for("127.4.5.6".parse().unwrap()).unwrap().name,
            "lo"
        );
        assert!(c.trunk_for("::1".parse().unwrap()).is_some());
        assert!(c.trunk_for("10.0.0.1".parse().unwrap()).is_none());
        assert!(c.trunks[0].symmetric_rtp);
    }

    #[test]
    fn connection_budgets_keep_each_listeners_defaults_for_what_is_not_given() {
        let c = Config::parse(
            "sip:\n  connections: { max: 50, idle-timeout: 30s }\nhttp:\n  connections: { per-source: 8 }\n",
        )
        .unwrap();
        let sip = c.sip.connections;
        assert_eq!(
            (sip.max, sip.per_source),
            (50, ConnectionLimits::SIP.per_source)
        );
        assert_eq!(sip.idle_timeout, Duration::from_secs(30));
        let http = c.http.connections;
        assert_eq!((http.max, http.per_source), (ConnectionLimits::HTTP.max, 8));
        let err = Config::parse("http:\n  connections: { idle-timeout: 5s }\n").unwrap_err();
        assert!(
            err.contains("`idle-timeout` is for SIP connections"),
            "{err}"
        );
        let err = Config::parse("sip:\n  connections: { maxx: 5 }\n").unwrap_err();
        assert!(err.contains("unknown field `maxx`"), "{err}");
    }

    #[test]
    fn https_takes_a_certificate_and_a_key() {
        let c = Config::parse(
            "http:\n  tls: { cert: /etc/hotline/web.pem, key: /etc/hotline/web.key }\n",
        )
        .unwrap();
        let tls = c.http.tls.expect("no http.tls");
        assert_eq!(tls.cert, PathBuf::from("/etc/hotline/web.pem"));
        assert_eq!(tls.key, PathBuf::from("/etc/hotline/web.key"));
        assert!(Config::parse("").unwrap().http.tls.is_none());
        let err = Config::parse("http:\n  tls: { cert: a.pem }\n").unwrap_err();
        assert!(err.contains("missing field `key`"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused_with_its_position() {
        let err = Config::parse("sip:\n  listne: 127.0.0.1:5060\n").unwrap_err();
        let first = err.lines().next().unwrap();
        assert!(
            first.starts_with("<config>:2:3: unknown field `listne`"),
            "{err}"
        );
        assert!(first.ends_with("(did you mean `listen`?)"), "{err}");
        let dup = Config::parse("trunks:\n  - {name: a, allow: []}\n  - {name: a, allow: []}\n");
        assert_eq!(
            dup.unwrap_err(),
            "<config>: trunks: the name 'a' is used twice"
        );
    }

    #[test]
    fn durations_and_ranges() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(
            "20000-20099".parse::<PortRange>().unwrap(),
            PortRange {
                low: 20000,
                high: 20099
            }
        );
        assert!("9-3".parse::<PortRange>().is_err());
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    }

    #[test]
    fn agents_can_live_in_a_file_of_their_own_and_its_mistakes_are_placed_there() {
        let dir = std::env::temp_dir().join(format!("hotline-agents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let main = dir.join("hotline.yaml");
        std::fs::write(
            &main,
            "queues: { sales: {} }\nagents:\n  - { id: '1001', password: a, queues: [sales] }\nagents-file: team.yaml\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("team.yaml"),
            "- id: '2001'\n  password: b\n  queues: [sales]\n",
        )
        .unwrap();
        let c = Config::load(&main).unwrap();
        let ids: Vec<&str> = c.agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["1001", "2001"]);
        // The roster's own mistakes name the roster; its agents are checked
        // like any other.
        std::fs::write(dir.join("team.yaml"), "- id: '2001'\n  pasword: b\n").unwrap();
        let err = Config::load(&main).unwrap_err().to_string();
        assert!(
            err.contains("team.yaml:2:3: unknown field `pasword`"),
            "{err}"
        );
        std::fs::write(dir.join("team.yaml"), "- { id: '1001', password: b }\n").unwrap();
        let err = Config::load(&main).unwrap_err().to_string();
        assert!(err.contains("the id '1001' is used twice"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_trunks_dial_plan_is_read_and_a_bad_pattern_refused() {
        let c = Config::parse(
            "trunks:\n  - name: carrier\n    allow: [192.0.2.0/24]\n    dial-plan: { country-code: '1', national-prefix: '1', allow: ['+1NXXNXXXXXX'], deny: ['+1900.'] }\n",
        )
        .unwrap();
        assert_eq!(
            c.trunks[0].dial_plan.check("202 555 0100").as_deref(),
            Ok("+12025550100")
        );
        let err = Config::parse(
            "trunks:\n  - name: carrier\n    allow: [192.0.2.0/24]\n    dial-plan: { allow: ['+1[5-'] }\n",
        )
        .unwrap_err();
        assert!(err.contains("trunks: carrier: dial-plan: `+1[5-`"), "{err}");
    }
}
