//! The SQLite store: one file, `hotline.db`, in the data directory; WAL
//! with full sync, so a committed row survives a crash or power loss.

use std::path::Path;

use jiff::Timestamp;
use rusqlite::{params, Connection};

use super::callback::{self, AttemptEnd, AttemptOutcome, Callback, CallbackAttempt, CallbackState};
use super::{AgentStateRow, Cdr, Outcome, Registered, Store, StoreError, SurveyAnswer, Voicemail};

/// Schema changes, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE voicemail (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    flow TEXT NOT NULL,
    path TEXT NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX voicemail_mailbox ON voicemail (mailbox, created_at);
CREATE TABLE survey_answer (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    flow TEXT NOT NULL,
    question TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 10)
);
CREATE INDEX survey_answer_time ON survey_answer (created_at);
",
    "
CREATE TABLE cdr (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    dialed TEXT NOT NULL,
    trunk TEXT NOT NULL,
    arrived_at TEXT,
    answered_at TEXT,
    flow TEXT,
    ivr_exit_at TEXT,
    queue TEXT,
    queued_at TEXT,
    offered_at TEXT,
    agent TEXT,
    bridged_at TEXT,
    ended_at TEXT,
    outcome TEXT NOT NULL,
    ended_by TEXT NOT NULL,
    wait_ms INTEGER,
    talk_ms INTEGER,
    vars TEXT NOT NULL
);
CREATE INDEX cdr_arrived ON cdr (arrived_at);
CREATE INDEX cdr_queue ON cdr (queue, arrived_at);
CREATE INDEX cdr_agent ON cdr (agent, arrived_at);
CREATE INDEX cdr_caller ON cdr (caller, arrived_at);
",
    "
ALTER TABLE cdr ADD COLUMN hold_ms INTEGER;
ALTER TABLE cdr ADD COLUMN wrap_up_ms INTEGER;
ALTER TABLE cdr ADD COLUMN recording TEXT;
",
    "
CREATE TABLE registration (
    agent TEXT NOT NULL,
    contact TEXT NOT NULL,
    source TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL
);
CREATE INDEX registration_agent ON registration (agent);
",
    "
ALTER TABLE cdr ADD COLUMN exit_node TEXT;
",
    "
CREATE TABLE agent_state (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    state TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX agent_state_at ON agent_state (at);
",
    super::callback::MIGRATION,
    // Records open while their call goes on (kept across a crash).
    "
ALTER TABLE cdr ADD COLUMN record_key TEXT;
ALTER TABLE cdr ADD COLUMN open INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX cdr_record_key ON cdr (record_key);
CREATE INDEX cdr_open ON cdr (open) WHERE open = 1;
",
    // Call quality (RTCP): per leg as JSON, and the worst MOS.
    "
ALTER TABLE cdr ADD COLUMN quality TEXT;
ALTER TABLE cdr ADD COLUMN mos REAL;
ALTER TABLE cdr ADD COLUMN agent_mos REAL;
",
    // Recording pauses (PCI): when, by whom, as JSON.
    "
ALTER TABLE cdr ADD COLUMN recording_pauses TEXT;
",
    // Dispositions: the agent's code, and first-contact resolution.
    "
ALTER TABLE cdr ADD COLUMN disposition TEXT;
ALTER TABLE cdr ADD COLUMN first_contact_resolution INTEGER;
CREATE INDEX IF NOT EXISTS cdr_call_id ON cdr (call_id);
",
];

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        private_dir(data_dir).map_err(|source| StoreError::Dir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(data_dir.join("hotline.db"))?;
        SqliteStore::with_connection(conn)
    }

    /// How long a write waits for another process's lock before it fails.
    pub fn set_busy_timeout(&mut self, wait: std::time::Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(wait)?)
    }

    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = SqliteStore { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let applied: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let applied = usize::try_from(applied).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// Creates `dir` (and its parents) for the engine's user only, and takes
/// the group's and others' access away from one that exists.
/// The record filters of a sweep's cutoffs, with their cutoff: each queue
/// that has its own, then every other call by the default (a queue's name
/// is the operator's, quoted as an SQL literal).
fn cutoff_filters(c: &super::Cutoffs) -> Vec<(String, String)> {
    let quote = |q: &str| format!("'{}'", q.replace('\'', "''"));
    let mut out: Vec<(String, String)> = c
        .queues
        .iter()
        .filter_map(|(q, t)| Some((format!("queue = {}", quote(q)), t.as_ref()?.to_string())))
        .collect();
    if let Some(t) = c.default {
        let rest = if c.queues.is_empty() {
            "1".to_owned()
        } else {
            let named: Vec<String> = c.queues.iter().map(|(q, _)| quote(q)).collect();
            format!("(queue IS NULL OR queue NOT IN ({}))", named.join(", "))
        };
        out.push((rest, t.to_string()));
    }
    out
}

/// The recording files named by the records `filter` (with `?1` the
/// cutoff) matches, one path per line of each.
fn recordings_of(conn: &Connection, filter: &str, cutoff: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT recording FROM cdr WHERE {filter}"))?;
    let joined: Vec<String> = stmt
        .query_map([cutoff], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(joined
        .iter()
        .flat_map(|p| p.lines().map(str::to_owned))
        .collect())
}

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    pub records: i64,
    pub callbacks: i64,
}

/// Copies the store in `data_dir` to `to` while the engine may be writing
/// to it: `VACUUM INTO` reads one consistent snapshot (a read transaction;
/// under WAL the engine's writes go on), written to a temporary file
/// beside `to`, checked (`PRAGMA integrity_check`) and then renamed, so
/// `to` is either a whole, checked copy or not there. `to` must not exist.
pub fn backup(data_dir: &Path, to: &Path) -> Result<Backup, StoreError> {
    use rusqlite::OpenFlags;
    if to.exists() {
        return Err(StoreError::Backup(format!("{} exists", to.display())));
    }
    let source = data_dir.join("hotline.db");
    if !source.exists() {
        return Err(StoreError::Backup(format!(
            "no store at {}",
            source.display()
        )));
    }
    let conn = Connection::open_with_flags(&source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let partial = to.with_file_name(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&partial);
    let copied = conn
        .execute("VACUUM INTO ?1", [partial.to_string_lossy()])
        .map(|_| ())
        .and_then(|()| {
            let copy = Connection::open_with_flags(&partial, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            let count = |table: &str| {
                copy.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            };
            Ok((check, count("cdr")?, count("callback")?))
        });
    let (check, records, callbacks) = match copied {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    if check != "ok" {
        let _ = std::fs::remove_file(&partial);
        return Err(StoreError::Backup(format!(
            "the copy failed its integrity check: {check}"
        )));
    }
    // The callers' data: the engine's user's only, as the store is.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Backup(format!("cannot restrict the copy: {e}")))?;
    }
    std::fs::rename(&partial, to)
        .map_err(|e| StoreError::Backup(format!("cannot write {}: {e}", to.display())))?;
    Ok(Backup { records, callbacks })
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

fn ts(s: String) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ts_opt(s: Option<String>) -> Option<Timestamp> {
    s.and_then(|s| s.parse().ok())
}

fn text(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

impl SqliteStore {
    /// CDRs matching `filter` (an SQL condition, then the order and limit;
    /// `open = 0` in it for finished calls only).
    fn query_cdrs<P: rusqlite::Params>(
        &mut self,
        filter: &str,
        params: P,
    ) -> Result<Vec<Cdr>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT call_id, caller, dialed, trunk, arrived_at, answered_at, flow, ivr_exit_at,
                queue, queued_at, offered_at, agent, bridged_at, ended_at, outcome, ended_by,
                wait_ms, talk_ms, vars, hold_ms, wrap_up_ms, recording, exit_node,
                quality, mos, agent_mos, recording_pauses, disposition, first_contact_resolution
             FROM cdr WHERE {filter}"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok(Cdr {
                call_id: r.get(0)?,
                caller: r.get(1)?,
                dialed: r.get(2)?,
                trunk: r.get(3)?,
                arrived_at: ts_opt(r.get(4)?),
                answered_at: ts_opt(r.get(5)?),
                flow: r.get(6)?,
                ivr_exit_at: ts_opt(r.get(7)?),
                queue: r.get(8)?,
                queued_at: ts_opt(r.get(9)?),
                offered_at: ts_opt(r.get(10)?),
                agent: r.get(11)?,
                bridged_at: ts_opt(r.get(12)?),
                ended_at: ts_opt(r.get(13)?),
                outcome: Outcome::parse(&r.get::<_, String>(14)?),
                ended_by: r.get(15)?,
                wait_ms: r.get(16)?,
                talk_ms: r.get(17)?,
                vars: r.get(18)?,
                hold_ms: r.get(19)?,
                wrap_up_ms: r.get(20)?,
                recording: r.get(21)?,
                exit_node: r.get(22)?,
                quality: r
                    .get::<_, Option<String>>(23)?
                    .and_then(|q| serde_json::from_str(&q).ok()),
                mos: r.get(24)?,
                agent_mos: r.get(25)?,
                recording_pauses: r
                    .get::<_, Option<String>>(26)?
                    .and_then(|q| serde_json::from_str(&q).ok()),
                disposition: r.get(27)?,
                first_contact_resolution: r.get(28)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store for SqliteStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn save_cdr(&mut self, c: &Cdr) -> Result<i64, StoreError> {
        self.write_record(None, c, false)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn write_record(&mut self, key: Option<&str>, c: &Cdr, open: bool) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "INSERT INTO cdr (call_id, caller, dialed, trunk, arrived_at, answered_at, flow,
                ivr_exit_at, queue, queued_at, offered_at, agent, bridged_at, ended_at, outcome,
                ended_by, wait_ms, talk_ms, vars, hold_ms, wrap_up_ms, recording, exit_node,
                record_key, open, quality, mos, agent_mos, recording_pauses, disposition,
                first_contact_resolution)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31)
             ON CONFLICT (record_key) DO UPDATE SET call_id = excluded.call_id,
                caller = excluded.caller, dialed = excluded.dialed, trunk = excluded.trunk,
                arrived_at = excluded.arrived_at, answered_at = excluded.answered_at,
                flow = excluded.flow, ivr_exit_at = excluded.ivr_exit_at, queue = excluded.queue,
                queued_at = excluded.queued_at, offered_at = excluded.offered_at,
                agent = excluded.agent, bridged_at = excluded.bridged_at,
                ended_at = excluded.ended_at, outcome = excluded.outcome,
                ended_by = excluded.ended_by, wait_ms = excluded.wait_ms,
                talk_ms = excluded.talk_ms, vars = excluded.vars, hold_ms = excluded.hold_ms,
                wrap_up_ms = excluded.wrap_up_ms, recording = excluded.recording,
                exit_node = excluded.exit_node, open = excluded.open,
                quality = excluded.quality, mos = excluded.mos, agent_mos = excluded.agent_mos,
                recording_pauses = excluded.recording_pauses,
                disposition = COALESCE(excluded.disposition, cdr.disposition),
                first_contact_resolution =
                    COALESCE(excluded.first_contact_resolution, cdr.first_contact_resolution)",
        )?;
        stmt.execute(params![
            c.call_id,
            c.caller,
            c.dialed,
            c.trunk,
            text(c.arrived_at),
            text(c.answered_at),
            c.flow,
            text(c.ivr_exit_at),
            c.queue,
            text(c.queued_at),
            text(c.offered_at),
            c.agent,
            text(c.bridged_at),
            text(c.ended_at),
            c.outcome.as_str(),
            c.ended_by,
            c.wait_ms,
            c.talk_ms,
            c.vars,
            c.hold_ms,
            c.wrap_up_ms,
            c.recording,
            c.exit_node,
            key,
            open,
            c.quality.as_ref().map(|q| q.to_string()),
            c.mos,
            c.agent_mos,
            c.recording_pauses.as_ref().map(|p| p.to_string()),
            c.disposition,
            c.first_contact_resolution
        ])?;
        Ok(())
    }

    fn close_interrupted(&mut self) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE cdr SET open = 0, outcome = 'interrupted', ended_by = 'engine' WHERE open = 1",
            [],
        )?)
    }

    fn cdrs(&mut self) -> Result<Vec<Cdr>, StoreError> {
        self.query_cdrs("open = 0 ORDER BY id", [])
    }

    fn cdrs_between(&mut self, since: Timestamp, until: Timestamp) -> Result<Vec<Cdr>, StoreError> {
        // Timestamps are stored as RFC 3339 in UTC, which sorts as text
        // except for fractions of a second ("…36Z" after "…36.5Z"): the
        // query takes a second more each side, the exact bounds are applied here.
        let slack = jiff::SignedDuration::from_secs(1);
        let wide = |t: Timestamp, d| t.checked_add(d).unwrap_or(t).to_string();
        let mut rows = self.query_cdrs(
            "open = 0 AND arrived_at >= ?1 AND arrived_at < ?2 ORDER BY id",
            params![wide(since, -slack), wide(until, slack)],
        )?;
        rows.retain(|c| c.arrived_at.is_some_and(|a| a >= since && a < until));
        rows.sort_by_key(|c| c.arrived_at);
        Ok(rows)
    }

    fn cdrs_of_caller(&mut self, caller: &str, limit: usize) -> Result<Vec<Cdr>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_cdrs(
            // By the (caller, arrived_at) index, newest first: a caller
            // with thousands of calls costs `limit` rows, not all of them.
            "open = 0 AND caller = ?1 ORDER BY arrived_at DESC LIMIT ?2",
            params![caller, limit],
        )
    }

    fn save_registration(
        &mut self,
        agent: &str,
        bindings: &[Registered],
    ) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        tx.execute("DELETE FROM registration WHERE agent = ?1", params![agent])?;
        for b in bindings {
            tx.execute(
                "INSERT INTO registration (agent, contact, source, expires_at, call_id, cseq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    agent,
                    b.contact,
                    b.source,
                    b.expires_at.to_string(),
                    b.call_id,
                    b.cseq
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn save_callback(&mut self, c: &Callback) -> Result<i64, StoreError> {
        callback::save(&self.conn, c)
    }

    fn callback(&mut self, id: i64) -> Result<Option<Callback>, StoreError> {
        callback::get(&self.conn, id)
    }

    fn callbacks_to_number(&mut self, number: &str, since: Timestamp) -> Result<u32, StoreError> {
        callback::count_to_number(&self.conn, number, since)
    }

    fn callbacks_between(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Callback>, StoreError> {
        callback::between(&self.conn, since, until)
    }

    fn recover_callbacks(
        &mut self,
        now: Timestamp,
        ring_for: std::time::Duration,
    ) -> Result<Vec<Callback>, StoreError> {
        let ring_for = jiff::SignedDuration::try_from(ring_for).unwrap_or_default();
        callback::recover(&mut self.conn, now, |started| {
            started.checked_add(ring_for).unwrap_or(started)
        })
    }

    fn start_attempt(
        &mut self,
        callback_id: i64,
        agent: Option<&str>,
        at: Timestamp,
    ) -> Result<(i64, u32), StoreError> {
        callback::start_attempt(&mut self.conn, callback_id, agent, at)
    }

    fn end_attempt(&mut self, attempt: i64, end: &AttemptEnd) -> Result<(), StoreError> {
        callback::end_attempt(&mut self.conn, attempt, end)
    }

    fn finish_callback(
        &mut self,
        id: i64,
        state: CallbackState,
        outcome: AttemptOutcome,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        callback::finish(&self.conn, id, state, outcome, at)
    }

    fn reschedule_callback(&mut self, id: i64, at: Timestamp) -> Result<bool, StoreError> {
        callback::reschedule(&self.conn, id, at)
    }

    fn callback_attempts(&mut self, id: i64) -> Result<Vec<CallbackAttempt>, StoreError> {
        callback::attempts(&self.conn, id)
    }

    fn save_agent_state(&mut self, row: &AgentStateRow) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO agent_state (agent, state, at) VALUES (?1, ?2, ?3)",
            params![row.agent, row.state, row.at.to_string()],
        )?;
        Ok(())
    }

    fn agent_states(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<AgentStateRow>, StoreError> {
        let row = |r: &rusqlite::Row<'_>| {
            Ok(AgentStateRow {
                agent: r.get(0)?,
                state: r.get(1)?,
                at: ts(r.get(2)?),
            })
        };
        // Each agent's state as the window opens (its latest change
        // before it), then every change within it; by id, which is the
        // order they happened in.
        let mut before = self.conn.prepare(
            "SELECT agent, state, at FROM agent_state WHERE id IN
                (SELECT MAX(id) FROM agent_state WHERE at < ?1 GROUP BY agent)",
        )?;
        let mut rows: Vec<AgentStateRow> = before
            .query_map(params![since.to_string()], row)?
            .collect::<Result<_, _>>()?;
        let mut within = self.conn.prepare(
            "SELECT agent, state, at FROM agent_state WHERE at >= ?1 AND at < ?2 ORDER BY id",
        )?;
        rows.extend(
            within
                .query_map(params![since.to_string(), until.to_string()], row)?
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(rows)
    }

    fn registrations(&mut self) -> Result<Vec<(String, Registered)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT agent, contact, source, expires_at, call_id, cseq FROM registration ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Registered {
                    contact: r.get(1)?,
                    source: r.get(2)?,
                    expires_at: ts(r.get(3)?),
                    call_id: r.get(4)?,
                    cseq: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn save_voicemail(&mut self, v: &Voicemail) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO voicemail (created_at, call_id, caller, mailbox, flow, path, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                v.created_at.to_string(),
                v.call_id,
                v.caller,
                v.mailbox,
                v.flow,
                v.path,
                v.duration_ms as i64
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn save_survey(&mut self, a: &SurveyAnswer) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO survey_answer (created_at, call_id, caller, flow, question, score)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                a.created_at.to_string(),
                a.call_id,
                a.caller,
                a.flow,
                a.question,
                a.score
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn cdr_of_call(&mut self, call_id: &str) -> Result<Option<Cdr>, StoreError> {
        Ok(self
            .query_cdrs("call_id = ?1 ORDER BY id DESC LIMIT 1", [call_id])?
            .pop())
    }

    fn set_disposition(
        &mut self,
        call_id: &str,
        code: &str,
        first_contact_resolution: bool,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE cdr SET disposition = ?2, first_contact_resolution = ?3
             WHERE id = (SELECT max(id) FROM cdr WHERE call_id = ?1)",
            params![call_id, code, first_contact_resolution],
        )?;
        Ok(n > 0)
    }

    fn sweep(&mut self, plan: &super::SweepPlan) -> Result<super::Swept, StoreError> {
        let mut swept = super::Swept::default();
        // Recordings past their time: the files go, the records stay.
        for (which, cutoff) in cutoff_filters(&plan.recordings) {
            let filter = format!("recording IS NOT NULL AND arrived_at < ?1 AND {which}");
            swept
                .recordings
                .extend(recordings_of(&self.conn, &filter, &cutoff)?);
            self.conn.execute(
                &format!("UPDATE cdr SET recording = NULL WHERE {filter}"),
                [&cutoff],
            )?;
        }
        // Records past their time, with whatever recordings they still name.
        for (which, cutoff) in cutoff_filters(&plan.records) {
            let filter = format!("open = 0 AND arrived_at < ?1 AND {which}");
            swept.recordings.extend(recordings_of(
                &self.conn,
                &format!("recording IS NOT NULL AND {filter}"),
                &cutoff,
            )?);
            swept.records += self
                .conn
                .execute(&format!("DELETE FROM cdr WHERE {filter}"), [&cutoff])?;
        }
        if let Some(cutoff) = plan.records.default.map(|t| t.to_string()) {
            self.conn
                .execute("DELETE FROM survey_answer WHERE created_at < ?1", [&cutoff])?;
            self.conn
                .execute("DELETE FROM agent_state WHERE at < ?1", [&cutoff])?;
        }
        if let Some(cutoff) = plan.voicemail.map(|t| t.to_string()) {
            let mut stmt = self
                .conn
                .prepare("SELECT path FROM voicemail WHERE created_at < ?1")?;
            swept.voicemails = stmt
                .query_map([&cutoff], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?;
            drop(stmt);
            self.conn
                .execute("DELETE FROM voicemail WHERE created_at < ?1", [&cutoff])?;
        }
        Ok(swept)
    }

    fn voicemails(&mut self) -> Result<Vec<Voicemail>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT created_at, call_id, caller, mailbox, flow, path, duration_ms
             FROM voicemail ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Voicemail {
                created_at: ts(r.get(0)?),
                call_id: r.get(1)?,
                caller: r.get(2)?,
                mailbox: r.get(3)?,
                flow: r.get(4)?,
                path: r.get(5)?,
                duration_ms: r.get::<_, i64>(6)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn survey_answers(&mut self) -> Result<Vec<SurveyAnswer>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT created_at, call_id, caller, flow, question, score FROM survey_answer ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SurveyAnswer {
                created_at: ts(r.get(0)?),
                call_id: r.get(1)?,
                caller: r.get(2)?,
                flow: r.get(3)?,
                question: r.get(4)?,
                score: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_kept_contacts_are_replaced_as_a_whole() {
        let mut s = SqliteStore::in_memory().unwrap();
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let b = |c: &str| Registered {
            contact: c.into(),
            source: "127.0.0.1:5071".into(),
            expires_at: at,
            call_id: "r1".into(),
            cseq: 7,
        };
        s.save_registration("1001", &[b("sip:desk"), b("sip:soft")])
            .unwrap();
        s.save_registration("1002", &[b("sip:other")]).unwrap();
        s.save_registration("1001", &[b("sip:soft")]).unwrap();
        let rows = s.registrations().unwrap();
        assert_eq!(
            rows,
            vec![
                ("1002".to_string(), b("sip:other")),
                ("1001".to_string(), b("sip:soft"))
            ]
        );
        s.save_registration("1002", &[]).unwrap();
        assert_eq!(s.registrations().unwrap().len(), 1);
    }

    #[test]
    fn a_callback_cut_short_by_a_crash_counts_its_attempt_and_waits_out_the_ring() {
        let mut s = SqliteStore::in_memory().unwrap();
        let at = |t: &str| -> Timestamp { t.parse().unwrap() };
        let c = Callback {
            id: 0,
            created_at: at("2026-11-23T10:05:00Z"),
            call_id: "c1".into(),
            caller: "+15551230000".into(),
            number: "+15551230000".into(),
            queue: "support".into(),
            priority: 2,
            skills: vec!["fr".into()],
            queued_at: at("2026-11-23T10:00:00Z"),
            vars: "{}".into(),
            state: CallbackState::Pending,
            attempts: 0,
            next_attempt_at: None,
            ended_at: None,
            outcome: None,
        };
        let id = s.save_callback(&c).unwrap();
        let (first, n) = s
            .start_attempt(id, Some("1001"), at("2026-11-23T10:10:00Z"))
            .unwrap();
        assert_eq!(n, 1);
        s.end_attempt(
            first,
            &AttemptEnd {
                outcome: AttemptOutcome::Busy,
                at: at("2026-11-23T10:10:05Z"),
                state: CallbackState::Pending,
                next_attempt_at: Some(at("2026-11-23T10:12:05Z")),
            },
        )
        .unwrap();
        let (_, n) = s
            .start_attempt(id, Some("1001"), at("2026-11-23T10:12:10Z"))
            .unwrap();
        assert_eq!(n, 2);
        // The engine dies here, the second attempt's call ringing.
        let pending = s
            .recover_callbacks(
                at("2026-11-23T10:12:20Z"),
                std::time::Duration::from_secs(30),
            )
            .unwrap();
        assert_eq!(pending.len(), 1);
        let p = &pending[0];
        assert_eq!(p.attempts, 2, "the cut-short attempt counts");
        assert_eq!(p.queued_at, c.queued_at, "the caller's place is kept");
        assert_eq!(p.skills, c.skills);
        assert_eq!(
            p.next_attempt_at,
            Some(at("2026-11-23T10:12:40Z")),
            "not before the interrupted call could have stopped ringing"
        );
        let tries = s.callback_attempts(id).unwrap();
        let outcomes: Vec<_> = tries.iter().map(|a| a.outcome.as_deref()).collect();
        assert_eq!(outcomes, vec![Some("busy"), Some("interrupted")]);
        // A second recovery finds nothing more in flight.
        let again = s
            .recover_callbacks(at("2026-11-23T10:13:00Z"), std::time::Duration::ZERO)
            .unwrap();
        assert_eq!(again[0].attempts, 2);
        assert!(s
            .finish_callback(
                id,
                CallbackState::Expired,
                AttemptOutcome::Expired,
                at("2026-11-24T10:00:00Z")
            )
            .unwrap());
        assert!(
            !s.finish_callback(
                id,
                CallbackState::Cancelled,
                AttemptOutcome::Cancelled,
                at("2026-11-24T10:00:00Z")
            )
            .unwrap(),
            "only a pending callback can end"
        );
        assert!(s
            .recover_callbacks(at("2026-11-24T11:00:00Z"), std::time::Duration::ZERO)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn rows_survive_reopening_and_scores_are_checked() {
        let dir = std::env::temp_dir().join(format!("hotline-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        {
            let mut s = SqliteStore::open(&dir).unwrap();
            let v = Voicemail {
                created_at: now,
                call_id: "abc".into(),
                caller: "+1555".into(),
                mailbox: "support".into(),
                flow: "support".into(),
                path: "data/voicemail/support/x.wav".into(),
                duration_ms: 4200,
            };
            assert_eq!(s.save_voicemail(&v).unwrap(), 1);
            let a = SurveyAnswer {
                created_at: now,
                call_id: "abc".into(),
                caller: "+1555".into(),
                flow: "support".into(),
                question: "nps".into(),
                score: 9,
            };
            s.save_survey(&a).unwrap();
            let mut bad = a.clone();
            bad.score = 11;
            assert!(s.save_survey(&bad).is_err(), "11 is off the scale");
        }
        // Reopened (as after a restart), the rows are there and the
        // migrations are not applied twice.
        let mut s = SqliteStore::open(&dir).unwrap();
        let v = s.voicemails().unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].created_at, now);
        assert_eq!(v[0].duration_ms, 4200);
        let a = s.survey_answers().unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].score, 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_open_record_is_replaced_by_its_end_and_a_crash_closes_it_as_interrupted() {
        let mut s = SqliteStore::in_memory().unwrap();
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let open = |id: &str| Cdr {
            call_id: id.into(),
            arrived_at: Some(at),
            answered_at: Some(at),
            queue: Some("support".into()),
            vars: "{}".into(),
            ..Cdr::default()
        };
        s.write_record(Some("k1"), &open("a"), true).unwrap();
        s.write_record(Some("k2"), &open("b"), true).unwrap();
        // Open records are not what reports read.
        assert!(s.cdrs().unwrap().is_empty());
        let done = Cdr {
            outcome: Outcome::Agent,
            ended_by: "caller".into(),
            ..open("a")
        };
        s.write_record(Some("k1"), &done, false).unwrap();
        assert_eq!(s.cdrs().unwrap(), vec![done.clone()]);
        // "b" was going on when the engine died.
        assert_eq!(s.close_interrupted().unwrap(), 1);
        let rows = s.cdrs().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].call_id, "b");
        assert_eq!(rows[1].outcome, Outcome::Interrupted);
        assert_eq!(rows[1].queue.as_deref(), Some("support"));
        assert_eq!(s.close_interrupted().unwrap(), 0);
    }
}
