//! Callback requests and their attempts: written before the caller hears
//! "your callback is booked", and before each call is placed, so a crash
//! loses neither a request nor the count of its attempts.

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

/// Where a callback request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallbackState {
    /// Waiting for its turn, or being delivered.
    Pending,
    /// The customer was connected to an agent.
    Completed,
    /// Every attempt failed.
    Failed,
    /// Not delivered within the queue's `expire-after`.
    Expired,
    /// An operator cancelled it.
    Cancelled,
}

impl CallbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Pending => "pending",
            CallbackState::Completed => "completed",
            CallbackState::Failed => "failed",
            CallbackState::Expired => "expired",
            CallbackState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> CallbackState {
        match s {
            "completed" => CallbackState::Completed,
            "failed" => CallbackState::Failed,
            "expired" => CallbackState::Expired,
            "cancelled" => CallbackState::Cancelled,
            _ => CallbackState::Pending,
        }
    }
}

/// A caller's request to be called back, keeping their place in a queue.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Callback {
    /// Set by the store.
    pub id: i64,
    pub created_at: Timestamp,
    /// The call that booked it.
    pub call_id: String,
    /// That call's caller ID.
    pub caller: String,
    /// The number to call, E.164 (`+15551234567`).
    pub number: String,
    pub queue: String,
    pub priority: i64,
    pub skills: Vec<String>,
    /// When the caller joined the queue: the callback keeps that place.
    pub queued_at: Timestamp,
    /// What the IVR learned (JSON), for the agent's screen pop.
    pub vars: String,
    pub state: CallbackState,
    pub attempts: u32,
    /// Not dialled before this (a retry's delay, or an operator's reschedule).
    pub next_attempt_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// The last attempt's outcome, or why it ended.
    pub outcome: Option<String>,
}

/// One call placed to deliver a callback.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallbackAttempt {
    pub callback_id: i64,
    /// 1 for the first.
    pub n: u32,
    /// The agent reserved for it.
    pub agent: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// `connected`, `busy`, `no-answer`, `failed`, `not-confirmed`,
    /// `agent-hung-up`, `interrupted` (the engine stopped during it);
    /// none while it is going on.
    pub outcome: Option<String>,
}

/// How a callback attempt ended, or why a callback ended without one: the
/// same names in the store, the API, events and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// The customer confirmed and was connected to the agent.
    Connected,
    /// The customer's side was busy (486, 600, 603).
    Busy,
    /// Nobody answered (408, 480, 487, or it rang its time out).
    NoAnswer,
    /// The customer answered but did not confirm.
    NotConfirmed,
    /// The agent hung up before the customer was connected.
    AgentHungUp,
    /// The customer hung up before an agent took them (customer first).
    Abandoned,
    /// Anything else went wrong (no media, an unusable answer, a dial error).
    Failed,
    /// It was too old to be delivered.
    Expired,
    /// An operator cancelled it.
    Cancelled,
    /// An agent took the caller while their request was being written.
    AnsweredMeanwhile,
}

impl AttemptOutcome {
    const ALL: [AttemptOutcome; 10] = [
        AttemptOutcome::Connected,
        AttemptOutcome::Busy,
        AttemptOutcome::NoAnswer,
        AttemptOutcome::NotConfirmed,
        AttemptOutcome::AgentHungUp,
        AttemptOutcome::Abandoned,
        AttemptOutcome::Failed,
        AttemptOutcome::Expired,
        AttemptOutcome::Cancelled,
        AttemptOutcome::AnsweredMeanwhile,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Connected => "connected",
            AttemptOutcome::Busy => "busy",
            AttemptOutcome::NoAnswer => "no-answer",
            AttemptOutcome::NotConfirmed => "not-confirmed",
            AttemptOutcome::AgentHungUp => "agent-hung-up",
            AttemptOutcome::Abandoned => "abandoned",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Expired => "expired",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::AnsweredMeanwhile => "answered-meanwhile",
        }
    }

    /// The outcome a stored name stands for.
    pub fn parse(name: &str) -> Option<AttemptOutcome> {
        AttemptOutcome::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt ended, and what becomes of its callback.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd {
    pub outcome: AttemptOutcome,
    pub at: Timestamp,
    /// `Pending` with the time of the next attempt, or the final state.
    pub state: CallbackState,
    pub next_attempt_at: Option<Timestamp>,
}

pub const MIGRATION: &str = "
CREATE TABLE callback (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    number TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    skills TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    vars TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    ended_at TEXT,
    outcome TEXT
);
CREATE INDEX callback_state ON callback (state);
CREATE INDEX callback_created ON callback (created_at);
CREATE TABLE callback_attempt (
    id INTEGER PRIMARY KEY,
    callback_id INTEGER NOT NULL REFERENCES callback (id),
    n INTEGER NOT NULL,
    agent TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT
);
CREATE INDEX callback_attempt_of ON callback_attempt (callback_id);
";

const COLUMNS: &str = "id, created_at, call_id, caller, number, queue, priority, skills, \
     queued_at, vars, state, attempts, next_attempt_at, ended_at, outcome";

fn ts(s: String) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ts_opt(s: Option<String>) -> Option<Timestamp> {
    s.and_then(|s| s.parse().ok())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Callback> {
    let skills: String = r.get(7)?;
    Ok(Callback {
        id: r.get(0)?,
        created_at: ts(r.get(1)?),
        call_id: r.get(2)?,
        caller: r.get(3)?,
        number: r.get(4)?,
        queue: r.get(5)?,
        priority: r.get(6)?,
        skills: serde_json::from_str(&skills).unwrap_or_default(),
        queued_at: ts(r.get(8)?),
        vars: r.get(9)?,
        state: CallbackState::parse(&r.get::<_, String>(10)?),
        attempts: r.get(11)?,
        next_attempt_at: ts_opt(r.get(12)?),
        ended_at: ts_opt(r.get(13)?),
        outcome: r.get(14)?,
    })
}

pub fn save(conn: &Connection, c: &Callback) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO callback (created_at, call_id, caller, number, queue, priority, skills,
             queued_at, vars, state, attempts, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            c.created_at.to_string(),
            c.call_id,
            c.caller,
            c.number,
            c.queue,
            c.priority,
            serde_json::to_string(&c.skills).unwrap_or_else(|_| "[]".into()),
            c.queued_at.to_string(),
            c.vars,
            c.state.as_str(),
            c.attempts,
            c.next_attempt_at.map(|t| t.to_string()),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Callback>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM callback WHERE id = ?1"),
            params![id],
            row,
        )
        .optional()?)
}

/// Callbacks booked in `[since, until)`, oldest first.
pub fn between(
    conn: &Connection,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<Callback>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM callback WHERE created_at >= ?1 AND created_at < ?2 ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![since.to_string(), until.to_string()], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many callbacks to `number` were booked at or after `since` (in any
/// queue, whatever became of them).
pub fn count_to_number(
    conn: &Connection,
    number: &str,
    since: Timestamp,
) -> Result<u32, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM callback WHERE number = ?1 AND created_at >= ?2",
        params![number, since.to_string()],
        |r| r.get(0),
    )?)
}

/// After a restart: every pending callback, oldest place first. Attempts
/// that were going on when the engine stopped are ended as `interrupted`
/// (they count), and their callback waits until `not_before(started_at)`,
/// so a call that may still be ringing is not doubled.
pub fn recover(
    conn: &mut Connection,
    now: Timestamp,
    not_before: impl Fn(Timestamp) -> Timestamp,
) -> Result<Vec<Callback>, StoreError> {
    let tx = conn.savepoint()?;
    let open: Vec<(i64, i64, String)> = {
        let mut stmt = tx.prepare(
            "SELECT id, callback_id, started_at FROM callback_attempt WHERE outcome IS NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (attempt, callback, started) in open {
        tx.execute(
            "UPDATE callback_attempt SET outcome = 'interrupted', ended_at = ?2 WHERE id = ?1",
            params![attempt, now.to_string()],
        )?;
        let planned: Option<String> = tx.query_row(
            "SELECT next_attempt_at FROM callback WHERE id = ?1",
            params![callback],
            |r| r.get(0),
        )?;
        let after = not_before(ts(started)).max(ts_opt(planned).unwrap_or(Timestamp::UNIX_EPOCH));
        tx.execute(
            "UPDATE callback SET outcome = 'interrupted', next_attempt_at = ?2 WHERE id = ?1",
            params![callback, after.to_string()],
        )?;
    }
    let pending = {
        let mut stmt = tx.prepare(&format!(
            "SELECT {COLUMNS} FROM callback WHERE state = 'pending' ORDER BY queued_at, id"
        ))?;
        let rows = stmt.query_map([], row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(pending)
}

/// An attempt begins: it is counted before the call is placed.
pub fn start_attempt(
    conn: &mut Connection,
    callback: i64,
    agent: Option<&str>,
    at: Timestamp,
) -> Result<(i64, u32), StoreError> {
    let tx = conn.savepoint()?;
    tx.execute(
        "UPDATE callback SET attempts = attempts + 1 WHERE id = ?1",
        params![callback],
    )?;
    let n: u32 = tx.query_row(
        "SELECT attempts FROM callback WHERE id = ?1",
        params![callback],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO callback_attempt (callback_id, n, agent, started_at) VALUES (?1, ?2, ?3, ?4)",
        params![callback, n, agent, at.to_string()],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok((id, n))
}

/// An attempt ended; its callback goes on (`Pending`) or ends.
pub fn end_attempt(
    conn: &mut Connection,
    attempt: i64,
    end: &AttemptEnd,
) -> Result<(), StoreError> {
    let tx = conn.savepoint()?;
    let callback: i64 = tx.query_row(
        "SELECT callback_id FROM callback_attempt WHERE id = ?1",
        params![attempt],
        |r| r.get(0),
    )?;
    tx.execute(
        "UPDATE callback_attempt SET outcome = ?2, ended_at = ?3 WHERE id = ?1",
        params![attempt, end.outcome.as_str(), end.at.to_string()],
    )?;
    let ended = (end.state != CallbackState::Pending).then(|| end.at.to_string());
    tx.execute(
        "UPDATE callback SET outcome = ?2, state = ?3, next_attempt_at = ?4, ended_at = ?5
         WHERE id = ?1",
        params![
            callback,
            end.outcome.as_str(),
            end.state.as_str(),
            end.next_attempt_at.map(|t| t.to_string()),
            ended
        ],
    )?;
    tx.commit()?;
    Ok(())
}

/// Ends a pending callback without an attempt (expired, cancelled);
/// `false` if it was not pending.
pub fn finish(
    conn: &Connection,
    id: i64,
    state: CallbackState,
    outcome: AttemptOutcome,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE callback SET state = ?2, outcome = ?3, ended_at = ?4
         WHERE id = ?1 AND state = 'pending'",
        params![id, state.as_str(), outcome.as_str(), at.to_string()],
    )?;
    Ok(n == 1)
}

/// Moves a pending callback's next attempt; `false` if it is not pending.
pub fn reschedule(conn: &Connection, id: i64, at: Timestamp) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE callback SET next_attempt_at = ?2 WHERE id = ?1 AND state = 'pending'",
        params![id, at.to_string()],
    )?;
    Ok(n == 1)
}

pub fn attempts(conn: &Connection, callback: i64) -> Result<Vec<CallbackAttempt>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT callback_id, n, agent, started_at, ended_at, outcome FROM callback_attempt
         WHERE callback_id = ?1 ORDER BY n",
    )?;
    let rows = stmt.query_map(params![callback], |r| {
        Ok(CallbackAttempt {
            callback_id: r.get(0)?,
            n: r.get(1)?,
            agent: r.get(2)?,
            started_at: ts(r.get(3)?),
            ended_at: ts_opt(r.get(4)?),
            outcome: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
