//! What must survive a restart: voicemails and survey answers now; CDRs
//! and callbacks follow. SQLite by default (one file under the data
//! directory), behind the [`Store`] trait so PostgreSQL can follow.
//!
//! The database is used from one thread of its own; call tasks reach it
//! through a [`StoreHandle`] and await the result, so a row is written
//! before the caller is told it was.
//!
//! Writes are committed in batches (group commit): the thread runs
//! whatever writes are queued in one transaction and answers each of them
//! once that transaction is durable (`synchronous=FULL`), so thousands of
//! records a second cost a few fsyncs, not one each. Call records are
//! never dropped: one that cannot be written stays in memory and is tried
//! again; past [`RECORD_BACKLOG_LIMIT`] of them, new calls are refused
//! (see [`crate::overload`]) before anything already promised is at risk.

mod callback;
mod outcome;
mod sqlite;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::oneshot;
use tracing::{error, warn};

use crate::overload::{Admission, Pressure};

pub use callback::{AttemptEnd, AttemptOutcome, Callback, CallbackAttempt, CallbackState};
pub use outcome::Outcome;
pub use sqlite::{backup, Backup, SqliteStore};

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
    #[error("the batch holding this write was not committed: {0}")]
    NotCommitted(String),
    #[error("{booked} callbacks to this number were booked in the last 24 h (the most allowed)")]
    TooManyCallbacks { booked: u32 },
    #[error("backup: {0}")]
    Backup(String),
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
    /// How it ended (`agent`, `abandoned`, `ivr`, …; `interrupted` when
    /// the engine stopped, a crash, while the call went on).
    pub outcome: Outcome,
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
    /// Each leg's RTCP figures (`leg`: caller, agent, transfer; loss,
    /// jitter, round trip, MOS), as JSON; none for a call without media.
    pub quality: Option<serde_json::Value>,
    /// The worst MOS of the call's legs, and of its agent legs alone
    /// (what the report lists per queue and per agent).
    pub mos: Option<f64>,
    pub agent_mos: Option<f64>,
    /// The stretches the conversation's recording was paused (card data),
    /// as JSON: `[{"from", "to", "by"}]`; none when it never was.
    pub recording_pauses: Option<serde_json::Value>,
    /// The agent's disposition code, and whether it counts as resolved on
    /// first contact (as the queue's config said when it was given).
    pub disposition: Option<String>,
    pub first_contact_resolution: Option<bool>,
}

/// What a retention sweep deletes: rows older than each cutoff (a
/// queue's own cutoffs for its calls, the default's for the rest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepPlan {
    /// Call records (closed ones), survey answers, agents' state changes.
    pub records: Cutoffs,
    /// Recordings: the files records name (the reference is cleared).
    pub recordings: Cutoffs,
    /// Voicemails: rows and their files.
    pub voicemail: Option<Timestamp>,
}

/// A default cutoff, and queues' own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cutoffs {
    pub default: Option<Timestamp>,
    pub queues: Vec<(String, Option<Timestamp>)>,
}

/// What a sweep deleted, and the files to delete now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Swept {
    pub records: usize,
    pub recordings: Vec<String>,
    pub voicemails: Vec<String>,
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
    /// Starts a batch: every write until [`Store::commit`] is one transaction.
    fn begin(&mut self) -> Result<(), StoreError>;
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Undoes an uncommitted batch (nothing if none is open).
    fn rollback(&mut self);
    fn save_cdr(&mut self, c: &Cdr) -> Result<i64, StoreError>;
    /// Writes a call's record under `key`, replacing what that key held;
    /// `open` while the call goes on.
    fn write_record(&mut self, key: Option<&str>, c: &Cdr, open: bool) -> Result<(), StoreError>;
    /// After a crash: records still open are closed as `interrupted`, with
    /// the last state written; how many.
    fn close_interrupted(&mut self) -> Result<usize, StoreError>;
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
    /// Callbacks to `number` booked at or after `since`, in any queue.
    fn callbacks_to_number(&mut self, number: &str, since: Timestamp) -> Result<u32, StoreError>;
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
        outcome: AttemptOutcome,
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
    /// Deletes what the plan says is past its time; returns what went and
    /// the files the caller must delete.
    fn sweep(&mut self, plan: &SweepPlan) -> Result<Swept, StoreError>;
    /// The latest record of `call_id` (open or closed).
    fn cdr_of_call(&mut self, call_id: &str) -> Result<Option<Cdr>, StoreError>;
    /// Sets the disposition of the latest record of `call_id`; `false`
    /// when there is none. A later write of the record keeps it.
    fn set_disposition(
        &mut self,
        call_id: &str,
        code: &str,
        first_contact_resolution: bool,
    ) -> Result<bool, StoreError>;
    fn survey_answers(&mut self) -> Result<Vec<SurveyAnswer>, StoreError>;
}

/// Unwritten call records past this many: new calls are refused (503)
/// until the store has caught up to half of it.
pub const RECORD_BACKLOG_LIMIT: usize = 5_000;

/// At most this many writes go into one transaction.
const MAX_BATCH: usize = 1_000;

/// After a failed commit, the records wait this long before they are tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Answers a write once its batch is committed (or not).
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write: runs in a batch, returns how to answer it.
type WriteJob = Box<dyn FnOnce(&mut dyn Store) -> Reply + Send>;
/// A read: runs between batches and answers at once.
type ReadJob = Box<dyn FnOnce(&mut dyn Store) + Send>;

enum Job {
    /// Runs inside a batch's transaction; its reply waits for the commit.
    Write(WriteJob),
    /// Runs between batches, so it never sees an uncommitted row.
    Read(ReadJob),
    /// A call record: kept until a commit holds it.
    Record(Box<RecordWrite>),
    /// Answers once every record queued before it is committed.
    Flush(oneshot::Sender<usize>),
}

struct RecordWrite {
    key: Option<RecordKey>,
    cdr: Cdr,
    open: bool,
}

/// Names one call's record in the store, from its answer to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey(String);

impl RecordKey {
    pub fn new() -> RecordKey {
        RecordKey(format!("{:032x}", rand::random::<u128>()))
    }
}

impl Default for RecordKey {
    fn default() -> Self {
        RecordKey::new()
    }
}

/// Call records queued and not yet committed; raises the store's pressure
/// on call admission past the limit.
struct Backlog {
    records: AtomicUsize,
    admission: Arc<Admission>,
}

impl Backlog {
    fn add(&self) {
        if self.records.fetch_add(1, Ordering::SeqCst) + 1 > RECORD_BACKLOG_LIMIT {
            self.admission.raise(Pressure::StoreBacklog);
        }
    }

    fn written(&self, n: usize) {
        let left = self
            .records
            .fetch_sub(n, Ordering::SeqCst)
            .saturating_sub(n);
        if left <= RECORD_BACKLOG_LIMIT / 2 {
            self.admission.clear(Pressure::StoreBacklog);
        }
    }
}

/// A handle to the store's thread; cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    jobs: mpsc::Sender<Job>,
    backlog: Arc<Backlog>,
}

impl StoreHandle {
    /// Opens the SQLite store under `data_dir` and starts its thread.
    pub fn open_sqlite(
        data_dir: &Path,
        admission: Arc<Admission>,
    ) -> Result<StoreHandle, StoreError> {
        let mut store = SqliteStore::open(data_dir)?;
        let closed = store.close_interrupted()?;
        if closed > 0 {
            warn!(
                records = closed,
                "call records left open by a crash closed as interrupted"
            );
        }
        Ok(StoreHandle::start(Box::new(store), admission))
    }

    /// Runs `store` on a thread of its own.
    pub fn start(store: Box<dyn Store>, admission: Arc<Admission>) -> StoreHandle {
        let (tx, rx) = mpsc::channel::<Job>();
        let backlog = Arc::new(Backlog {
            records: AtomicUsize::new(0),
            admission,
        });
        let b = backlog.clone();
        std::thread::Builder::new()
            .name("hotline-store".into())
            .spawn(move || run(store, rx, &b))
            .ok();
        StoreHandle { jobs: tx, backlog }
    }

    /// Call records queued and not yet committed.
    pub fn backlog(&self) -> usize {
        self.backlog.records.load(Ordering::SeqCst)
    }

    /// Queues a call's record: `open` at its answer and as it goes on, then
    /// closed at its end. Never waits and never drops it: it is kept in
    /// memory until a commit holds it.
    pub fn record(&self, key: &RecordKey, cdr: Cdr, open: bool) {
        self.queue_record(Some(key.clone()), cdr, open);
    }

    /// Queues the record of a call that was never open (refused, or a
    /// callback's delivery), as [`StoreHandle::record`] does.
    pub fn save_cdr(&self, cdr: Cdr) {
        self.queue_record(None, cdr, false);
    }

    fn queue_record(&self, key: Option<RecordKey>, cdr: Cdr, open: bool) {
        self.backlog.add();
        let job = Job::Record(Box::new(RecordWrite { key, cdr, open }));
        if let Err(mpsc::SendError(Job::Record(r))) = self.jobs.send(job) {
            // Only after the store thread died: the record goes to the log.
            self.backlog.written(1);
            lost(&r, "the store has stopped");
        }
    }

    /// Waits until every record queued so far is committed, or `timeout`;
    /// how many were still unwritten.
    pub async fn flush(&self, timeout: Duration) -> usize {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Flush(tx)).is_err() {
            return self.backlog();
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(left)) => left,
            _ => self.backlog(),
        }
    }

    /// A write, timed for the metrics.
    async fn write<T: Send + 'static>(
        &self,
        kind: &'static str,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        let job = Job::Write(Box::new(move |s| {
            let result = f(s);
            Box::new(move |committed: Result<(), String>| {
                let _ = tx.send(match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::NotCommitted(e)),
                });
            })
        }));
        self.jobs.send(job).map_err(|_| StoreError::Stopped)?;
        let result = rx.await.map_err(|_| StoreError::Stopped)?;
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
            .send(Job::Read(Box::new(move |s| {
                let _ = tx.send(f(s));
            })))
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    pub async fn save_voicemail(&self, v: Voicemail) -> Result<i64, StoreError> {
        self.write("voicemail", move |s| s.save_voicemail(&v)).await
    }

    pub async fn save_survey(&self, a: SurveyAnswer) -> Result<i64, StoreError> {
        self.write("survey", move |s| s.save_survey(&a)).await
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

    /// Stores a callback unless `max` callbacks to its number were booked
    /// in the 24 hours before it (counted and written in one step, so two
    /// bookings at once cannot both slip under the cap). `max` 0: no cap.
    pub async fn save_callback_capped(&self, c: Callback, max: u32) -> Result<i64, StoreError> {
        self.write("callback", move |s| {
            if max > 0 {
                let since = c
                    .created_at
                    .checked_sub(jiff::SignedDuration::from_hours(24))
                    .unwrap_or(c.created_at);
                let booked = s.callbacks_to_number(&c.number, since)?;
                if booked >= max {
                    return Err(StoreError::TooManyCallbacks { booked });
                }
            }
            s.save_callback(&c)
        })
        .await
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
        outcome: AttemptOutcome,
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

    /// The latest record of `call_id` (open or closed).
    pub async fn cdr_of_call(&self, call_id: &str) -> Result<Option<Cdr>, StoreError> {
        let call_id = call_id.to_owned();
        self.call(move |s| s.cdr_of_call(&call_id)).await
    }

    /// Sets a call's disposition (see [`Store::set_disposition`]).
    pub async fn set_disposition(
        &self,
        call_id: &str,
        code: &str,
        first_contact_resolution: bool,
    ) -> Result<bool, StoreError> {
        let (call_id, code) = (call_id.to_owned(), code.to_owned());
        self.write("disposition", move |s| {
            s.set_disposition(&call_id, &code, first_contact_resolution)
        })
        .await
    }

    /// Deletes what retention says is past its time (in one transaction).
    pub async fn sweep(&self, plan: SweepPlan) -> Result<Swept, StoreError> {
        self.write("retention", move |s| s.sweep(&plan)).await
    }

    pub async fn survey_answers(&self) -> Result<Vec<SurveyAnswer>, StoreError> {
        self.call(|s| s.survey_answers()).await
    }
}

/// A record that could not be kept: its whole content goes to the log at
/// error level, so the operator can still recover it.
fn lost(r: &RecordWrite, why: &str) {
    let json = serde_json::to_string(&r.cdr).unwrap_or_default();
    error!(record = %json, reason = why, "call record not written to the store");
}

/// The store thread: batches of writes, each one transaction, and reads
/// between them.
fn run(mut store: Box<dyn Store>, rx: mpsc::Receiver<Job>, backlog: &Backlog) {
    // Records not yet committed, oldest first (a failed batch keeps them).
    let mut records: Vec<RecordWrite> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<usize>> = Vec::new();
    let mut retry_at: Option<Instant> = None;
    let mut failures = 0u64;
    loop {
        let first = match retry_at {
            None => match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        let mut writes = Vec::new();
        let mut read = None;
        let mut next = first;
        let mut taken = 0;
        while let Some(job) = next.take() {
            taken += 1;
            match job {
                Job::Write(f) => writes.push(f),
                Job::Record(r) => records.push(*r),
                Job::Flush(tx) => flushes.push(tx),
                Job::Read(f) => {
                    read = Some(f);
                    break;
                }
            }
            if taken < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let retry_due = retry_at.is_none_or(|at| Instant::now() >= at);
        if !writes.is_empty() || (!records.is_empty() && retry_due) {
            let (replies, committed) = batch(store.as_mut(), writes, &records);
            match &committed {
                Ok(()) => {
                    backlog.written(records.len());
                    records.clear();
                    retry_at = None;
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    if failures.is_power_of_two() {
                        error!(error = %e, records = records.len(), failures, "store commit failed; the records are kept and tried again");
                    }
                    retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                }
            }
            for reply in replies {
                reply(committed.clone());
            }
        }
        if records.is_empty() {
            for tx in flushes.drain(..) {
                let _ = tx.send(0);
            }
        }
        if let Some(f) = read {
            f(store.as_mut());
        }
    }
    // Every handle is gone: one last try, then the log keeps the rest.
    if !records.is_empty() {
        let (_, committed) = batch(store.as_mut(), Vec::new(), &records);
        if let Err(e) = committed {
            for r in &records {
                lost(r, &e);
            }
        }
    }
}

/// Runs one batch in one transaction: the writes' replies and whether it
/// was committed.
fn batch(
    store: &mut dyn Store,
    writes: Vec<WriteJob>,
    records: &[RecordWrite],
) -> (Vec<Reply>, Result<(), String>) {
    let started = Instant::now();
    if let Err(e) = store.begin() {
        // Each write then commits on its own (autocommit); the records wait.
        let replies = writes
            .into_iter()
            .map(|f| {
                let reply = f(store);
                Box::new(move |_: Result<(), String>| reply(Ok(()))) as Reply
            })
            .collect();
        return (replies, Err(e.to_string()));
    }
    let replies = writes.into_iter().map(|f| f(store)).collect();
    let mut result = Ok(());
    for r in records {
        if let Err(e) = store.write_record(r.key.as_ref().map(|k| k.0.as_str()), &r.cdr, r.open) {
            result = Err(e.to_string());
            break;
        }
    }
    let result = result.and_then(|()| store.commit().map_err(|e| e.to_string()));
    if result.is_err() {
        store.rollback();
    } else {
        metrics::histogram!("hotline_store_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("hotline_store_records_written_total").increment(records.len() as u64);
    }
    (replies, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdr(i: usize) -> Cdr {
        Cdr {
            call_id: format!("call-{i}"),
            outcome: Outcome::Ivr,
            ended_by: "caller".into(),
            vars: "{}".into(),
            ..Cdr::default()
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hotline-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn records_queued_while_the_database_is_locked_are_kept_written_later_and_never_lost() {
        let dir = temp_dir("locked");
        let admission = Arc::new(Admission::default());
        let mut store = SqliteStore::open(&dir).unwrap();
        store.set_busy_timeout(Duration::from_millis(50)).unwrap();
        let handle = StoreHandle::start(Box::new(store), admission.clone());
        // Another process holds the write lock: every commit fails meanwhile.
        let other = rusqlite::Connection::open(dir.join("hotline.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let n = RECORD_BACKLOG_LIMIT + 10;
        for i in 0..n {
            handle.save_cdr(cdr(i));
        }
        std::thread::sleep(Duration::from_millis(300));
        // Past the limit, new calls are refused; nothing queued is gone.
        assert_eq!(admission.refusing(), Some(Pressure::StoreBacklog));
        assert_eq!(handle.backlog(), n);
        other.execute_batch("COMMIT").unwrap();
        let left = runtime().block_on(handle.flush(Duration::from_secs(10)));
        assert_eq!(left, 0);
        assert_eq!(handle.backlog(), 0);
        assert_eq!(admission.refusing(), None);
        let mut check = SqliteStore::open(&dir).unwrap();
        let rows = check.cdrs().unwrap();
        assert_eq!(rows.len(), n);
        // In the order they were queued.
        assert!(rows
            .iter()
            .enumerate()
            .all(|(i, c)| c.call_id == format!("call-{i}")));
    }

    #[test]
    fn a_write_is_answered_only_once_its_batch_is_committed() {
        let dir = temp_dir("answered");
        let handle = StoreHandle::open_sqlite(&dir, Arc::new(Admission::default())).unwrap();
        let rt = runtime();
        let survey = SurveyAnswer {
            created_at: Timestamp::UNIX_EPOCH,
            call_id: "c".into(),
            caller: "x".into(),
            flow: "f".into(),
            question: "q".into(),
            score: 9,
        };
        // Many writers at once share a few commits.
        let ids = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..200 {
                let (h, a) = (handle.clone(), survey.clone());
                set.spawn(async move { h.save_survey(a).await });
            }
            let mut ids = Vec::new();
            while let Some(r) = set.join_next().await {
                ids.push(r.unwrap().unwrap());
            }
            ids
        });
        assert_eq!(ids.len(), 200);
        // Each one answered was durable: another connection sees them all.
        let mut check = SqliteStore::open(&dir).unwrap();
        assert_eq!(check.survey_answers().unwrap().len(), 200);
        // A read sees every write queued before it.
        for i in 0..50 {
            handle.save_cdr(cdr(i));
        }
        let rows = rt.block_on(handle.cdrs_between(Timestamp::MIN, Timestamp::MAX));
        assert!(rows.is_ok());
        let all = rt.block_on(handle.call(|s| s.cdrs())).unwrap();
        assert_eq!(all.len(), 50);
    }

    #[test]
    fn a_crash_leaves_answered_calls_as_interrupted_records() {
        let dir = temp_dir("crash");
        {
            let mut s = SqliteStore::open(&dir).unwrap();
            let open = Cdr {
                agent: Some("1001".into()),
                ..cdr(1)
            };
            s.write_record(Some("k"), &open, true).unwrap();
        }
        let handle = StoreHandle::open_sqlite(&dir, Arc::new(Admission::default())).unwrap();
        let rows = runtime().block_on(handle.call(|s| s.cdrs())).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].outcome, Outcome::Interrupted);
        assert_eq!(rows[0].agent.as_deref(), Some("1001"));
    }
}
