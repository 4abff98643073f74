//! The engine configuration (`hotline.yaml`): plain data that every layer may read.
//!
//! Every key has a default, so an empty file is a valid configuration that runs
//! the demo line on loopback. The README documents each key.
//!
//! Here: the top-level keys with their defaults, in the order the README
//! documents them. Queues, agents, schedules and WebRTC have modules of
//! their own; `check.rs` holds the checks across keys, `values.rs` the
//! value types (port ranges, address blocks, durations).

mod addrs;
mod agents;
mod check;
mod queues;
pub mod schedule;
mod values;
mod webrtc;

pub use addrs::PerFamily;
pub use agents::{Agent, FeatureCodes, RegistrarConfig};
pub use queues::{
    CallbackConfig, Delivery, Disposition, DispositionRule, QueueConfig, Record, Strategy,
};
use values::{de_duration, de_duration_opt};
pub use values::{parse_duration, IpNet, PortRange};
pub use webrtc::{
    BrowserCodec, DesktopConfig, IceServer, IceTransportPolicy, PageIceServer, WebRtcConfig,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
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

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests;
