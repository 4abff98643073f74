//! What must survive a restart: voicemails and survey answers now; CDRs
//! and callbacks follow. SQLite by default (one file under the data
//! directory), behind the [`Store`] trait so PostgreSQL can follow.
//!
//! The database is used from one thread of its own; call tasks reach it
//! through a [`StoreHandle`] and await the result, so a row is written
//! before the caller is told it was.

mod callback;
mod sqlite;

use std::path::Path;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

pub use callback::{AttemptEnd, Callback, CallbackAttempt, CallbackState};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the store has stopped")]
    Stopped,
}

/// A message a caller left.
#[derive(Debug, Clone, PartialEq)]
pub struct Voicemail {
    pub created_at: Timestamp,
    pub call_id: String,
    pub caller: String,
    pub mailbox: String,
    pub flow: String,
    /// The WAV file, 8 kHz mono 16-bit.
    pub path: String,
    pub duration_ms: u64,
}

/// A caller's answer to a survey question (0–10).
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyAnswer {
    pub created_at: Timestamp,
    pub call_id: String,
    pub caller: String,
    pub flow: String,
    pub question: String,
    pub score: u8,
}

/// One call's record, written when it ends: when each stage began, who
/// took it, how it ended, and what the IVR learned.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Cdr {
    pub call_id: String,
    pub caller: String,
    pub dialed: String,
    pub trunk: String,
    pub arrived_at: Option<Timestamp>,
    pub answered_at: Option<Timestamp>,
    pub flow: Option<String>,
    /// When the caller left the IVR (queued, transferred, or the call ended there).
    pub ivr_exit_at: Option<Timestamp>,
    pub queue: Option<String>,
    pub queued_at: Option<Timestamp>,
    /// The first time an agent's phone rang for it.
    pub offered_at: Option<Timestamp>,
    pub agent: Option<String>,
    /// When the caller was bridged to an agent or a transfer target.
    pub bridged_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// `agent`, `abandoned`, `transferred`, `ivr`, `ivr-abandoned`,
    /// `refused`, `cancelled`, `failed`.
    pub outcome: String,
    /// Who ended the call: `caller`, `engine`.
    pub ended_by: String,
    /// Queue wait (join to bridge, or to the caller leaving), in ms.
    pub wait_ms: Option<i64>,
    /// Talk (bridge to end), in ms.
    pub talk_ms: Option<i64>,
    /// The flow's variables, as JSON.
    pub vars: String,
    /// Time the agent (or transfer target) held the caller, in ms.
    pub hold_ms: Option<i64>,
    /// The agent's wrap-up after the call, in ms.
    pub wrap_up_ms: Option<i64>,
    /// The conversation's recording (a stereo WAV: caller left, agent right).
    pub recording: Option<String>,
    /// The flow node the call was at when it left the IVR or ended.
    pub exit_node: Option<String>,
}

/// An agent's registered contact, as kept across restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub contact: String,
    /// Where its REGISTER came from (`IP:PORT`).
    pub source: String,
    pub expires_at: Timestamp,
    pub call_id: String,
    pub cseq: u32,
}

/// An agent's state change, kept for occupancy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentStateRow {
    pub agent: String,
    pub state: String,
    pub at: Timestamp,
}

/// The storage operations the engine needs.
pub trait Store: Send {
    fn save_cdr(&mut self, c: &Cdr) -> Result<i64, StoreError>;
    fn cdrs(&mut self) -> Result<Vec<Cdr>, StoreError>;
    /// Calls that arrived in `[since, until)`, oldest first.
    fn cdrs_between(&mut self, since: Timestamp, until: Timestamp) -> Result<Vec<Cdr>, StoreError>;
    /// The caller's latest calls, newest first.
    fn cdrs_of_caller(&mut self, caller: &str, limit: usize) -> Result<Vec<Cdr>, StoreError>;
    fn save_voicemail(&mut self, v: &Voicemail) -> Result<i64, StoreError>;
    /// Replaces the agent's kept contacts.
    fn save_registration(&mut self, agent: &str, bindings: &[Registered])
        -> Result<(), StoreError>;
    fn registrations(&mut self) -> Result<Vec<(String, Registered)>, StoreError>;
    fn save_agent_state(&mut self, row: &AgentStateRow) -> Result<(), StoreError>;
    /// A new callback request; its id.
    fn save_callback(&mut self, c: &Callback) -> Result<i64, StoreError>;
    fn callback(&mut self, id: i64) -> Result<Option<Callback>, StoreError>;
    /// Callbacks booked in `[since, until)`, oldest first.
    fn callbacks_between(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Callback>, StoreError>;
    /// After a restart: the pending callbacks. Attempts cut short are
    /// counted as `interrupted`; their callbacks wait `ring_for` from the
    /// attempt's start, in case that call still rings.
    fn recover_callbacks(
        &mut self,
        now: Timestamp,
        ring_for: std::time::Duration,
    ) -> Result<Vec<Callback>, StoreError>;
    /// Counts an attempt before its call is placed: (its id, its number).
    fn start_attempt(
        &mut self,
        callback_id: i64,
        agent: Option<&str>,
        at: Timestamp,
    ) -> Result<(i64, u32), StoreError>;
    fn end_attempt(&mut self, attempt: i64, end: &AttemptEnd) -> Result<(), StoreError>;
    /// Ends a pending callback (expired, cancelled); `false` if it was not pending.
    fn finish_callback(
        &mut self,
        id: i64,
        state: CallbackState,
        outcome: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    fn reschedule_callback(&mut self, id: i64, at: Timestamp) -> Result<bool, StoreError>;
    fn callback_attempts(&mut self, id: i64) -> Result<Vec<CallbackAttempt>, StoreError>;
    /// Each agent's state as `since` begins, then its changes until `until`.
    fn agent_states(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<AgentStateRow>, StoreError>;
    fn save_survey(&mut self, a: &SurveyAnswer) -> Result<i64, StoreError>;
    fn voicemails(&mut self) -> Result<Vec<Voicemail>, StoreError>;
    fn survey_answers(&mut self) -> Result<Vec<SurveyAnswer>, StoreError>;
}

type Job = Box<dyn FnOnce(&mut dyn Store) + Send>;

/// A handle to the store's thread; cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    jobs: mpsc::UnboundedSender<Job>,
}

impl StoreHandle {
    /// Opens the SQLite store under `data_dir` and starts its thread.
    pub fn open_sqlite(data_dir: &Path) -> Result<StoreHandle, StoreError> {
        let store = SqliteStore::open(data_dir)?;
        Ok(StoreHandle::start(Box::new(store)))
    }

    /// Runs `store` on a thread of its own.
    pub fn start(mut store: Box<dyn Store>) -> StoreHandle {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("hotline-store".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(store.as_mut());
                }
            })
            .ok();
        StoreHandle { jobs: tx }
    }

    /// A write, timed for the metrics.
    async fn write<T: Send + 'static>(
        &self,
        kind: &'static str,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = self.call(f).await;
        metrics::histogram!("hotline_store_write_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    pub async fn save_voicemail(&self, v: Voicemail) -> Result<i64, StoreError> {
        self.write("voicemail", move |s| s.save_voicemail(&v)).await
    }

    pub async fn save_survey(&self, a: SurveyAnswer) -> Result<i64, StoreError> {
        self.write("survey", move |s| s.save_survey(&a)).await
    }

    pub async fn save_cdr(&self, c: Cdr) -> Result<i64, StoreError> {
        self.write("cdr", move |s| s.save_cdr(&c)).await
    }

    /// The caller's latest calls, newest first (their history, for the screen pop).
    pub async fn cdrs_of_caller(&self, caller: &str, limit: usize) -> Result<Vec<Cdr>, StoreError> {
        let caller = caller.to_owned();
        self.call(move |s| s.cdrs_of_caller(&caller, limit)).await
    }

    pub async fn save_registration(
        &self,
        agent: String,
        bindings: Vec<Registered>,
    ) -> Result<(), StoreError> {
        self.write("registration", move |s| {
            s.save_registration(&agent, &bindings)
        })
        .await
    }

    pub async fn save_agent_state(&self, row: AgentStateRow) -> Result<(), StoreError> {
        self.write("agent-state", move |s| s.save_agent_state(&row))
            .await
    }

    pub async fn save_callback(&self, c: Callback) -> Result<i64, StoreError> {
        self.write("callback", move |s| s.save_callback(&c)).await
    }

    pub async fn callback(&self, id: i64) -> Result<Option<Callback>, StoreError> {
        self.call(move |s| s.callback(id)).await
    }

    pub async fn callbacks_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Callback>, StoreError> {
        self.call(move |s| s.callbacks_between(since, until)).await
    }

    pub async fn recover_callbacks(
        &self,
        now: Timestamp,
        ring_for: std::time::Duration,
    ) -> Result<Vec<Callback>, StoreError> {
        self.write("callback", move |s| s.recover_callbacks(now, ring_for))
            .await
    }

    pub async fn start_attempt(
        &self,
        callback_id: i64,
        agent: Option<String>,
        at: Timestamp,
    ) -> Result<(i64, u32), StoreError> {
        self.write("callback", move |s| {
            s.start_attempt(callback_id, agent.as_deref(), at)
        })
        .await
    }

    pub async fn end_attempt(&self, attempt: i64, end: AttemptEnd) -> Result<(), StoreError> {
        self.write("callback", move |s| s.end_attempt(attempt, &end))
            .await
    }

    pub async fn finish_callback(
        &self,
        id: i64,
        state: CallbackState,
        outcome: &'static str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write("callback", move |s| {
            s.finish_callback(id, state, outcome, at)
        })
        .await
    }

    pub async fn reschedule_callback(&self, id: i64, at: Timestamp) -> Result<bool, StoreError> {
        self.write("callback", move |s| s.reschedule_callback(id, at))
            .await
    }

    pub async fn callback_attempts(&self, id: i64) -> Result<Vec<CallbackAttempt>, StoreError> {
        self.call(move |s| s.callback_attempts(id)).await
    }

    pub async fn agent_states(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<AgentStateRow>, StoreError> {
        self.call(move |s| s.agent_states(since, until)).await
    }

    pub async fn registrations(&self) -> Result<Vec<(String, Registered)>, StoreError> {
        self.call(|s| s.registrations()).await
    }

    pub async fn cdrs_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Cdr>, StoreError> {
        self.call(move |s| s.cdrs_between(since, until)).await
    }

    pub async fn survey_answers_all(&self) -> Result<Vec<SurveyAnswer>, StoreError> {
        self.call(|s| s.survey_answers()).await
    }

    pub async fn voicemails(&self) -> Result<Vec<Voicemail>, StoreError> {
        self.call(|s| s.voicemails()).await
    }

    pub async fn survey_answers(&self) -> Result<Vec<SurveyAnswer>, StoreError> {
        self.call(|s| s.survey_answers()).await
    }
}
