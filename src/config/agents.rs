//! `agents:` who takes calls, the feature codes their phones dial, and how
//! their softphones register.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{de_duration, MediaEncryption};

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
