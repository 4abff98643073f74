//! `queues:` how callers wait and are offered to agents, and each queue's
//! callback offer and dispositions.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{de_duration, de_duration_opt, Retention};

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
