//! Contact-center figures computed from the call records: what supervisors
//! run a call center by. Pure functions over CDRs and survey answers, so
//! `hotline report`, the API and the wallboard agree by construction.
//!
//! Definitions (per group of calls, e.g. one queue for one day):
//! - **offered**: calls that joined a queue.
//! - **answered**: offered calls bridged to an agent.
//! - **abandoned**: offered calls whose caller hung up waiting; **short**
//!   abandons gave up within the short-abandon threshold (wrong number,
//!   impatience) and are reported apart.
//! - **turned away**: sent on by the queue (max wait, full, nobody staffs it).
//! - **service level**: answered within the target wait ÷ offered; the
//!   variant leaves short abandons out of the offered calls.
//! - **ASA**: mean wait of answered calls. **AHT**: mean talk (hold
//!   included) plus wrap-up of answered calls.
//! - **repeat callers**: callers who called again within 24 h of an
//!   earlier call in the period (a first-contact-resolution proxy).
//! - **IVR contained**: calls the flow ended (its `hangup` node, after
//!   self-service) without reaching a queue or a transfer; [`containment`]
//!   breaks them down by flow and node. A caller who hangs up in the IVR
//!   is not contained: they count as **IVR abandoned**.
//! - **NPS**: % of survey scores 9–10 minus % of 0–6.
//! - **occupancy**: of the agents' time logged in and not paused, the share
//!   spent on calls (on a call or in wrap-up; available and ringing are idle).
//! - **callbacks**: offered calls whose caller booked a callback (outcome
//!   `callback`: not abandons), and callbacks that ended: **completed**
//!   (the customer was connected to an agent), **failed** (every attempt
//!   failed, or it expired), with the mean wait of completed ones from the
//!   caller joining the queue to talking to the agent. Callback deliveries
//!   have records of their own (outcome `callback-completed`, …, no
//!   `queued_at`), counted only here.

mod day;
pub use day::{agent_day, AgentDay};

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::store::{AgentStateRow, CallbackState, Cdr, Outcome, SurveyAnswer};

/// The thresholds the figures depend on.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub service_level: Duration,
    pub short_abandon: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            service_level: Duration::from_secs(20),
            short_abandon: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpis {
    pub calls: usize,
    pub offered: usize,
    pub answered: usize,
    pub abandoned: usize,
    pub short_abandoned: usize,
    pub turned_away: usize,
    /// 0–1; `None` with nothing offered.
    pub service_level: Option<f64>,
    pub service_level_excluding_short: Option<f64>,
    pub asa_seconds: Option<f64>,
    pub aht_seconds: Option<f64>,
    pub longest_wait_seconds: f64,
    pub abandon_rate: Option<f64>,
    pub repeat_callers_24h: usize,
    /// 0–1: the share of answered calls whose disposition counts as
    /// resolved on first contact; `None` with nothing answered.
    pub first_contact_resolution: Option<f64>,
    /// Answered calls given a disposition.
    pub dispositioned: usize,
    pub ivr_contained: usize,
    /// Callers who hung up in the IVR (not contained).
    pub ivr_abandoned: usize,
    pub surveys: usize,
    pub nps: Option<f64>,
    /// 0–1; `None` without agent time in the window.
    pub occupancy: Option<f64>,
    pub callbacks_booked: usize,
    pub callbacks_completed: usize,
    /// Failed after every attempt, or expired.
    pub callbacks_failed: usize,
    /// Queue join to connected, for completed callbacks.
    pub callback_wait_seconds: Option<f64>,
    /// Calls with a MOS (RTCP), their mean, and those below
    /// [`POOR_MOS`]: the worst leg's, or grouped by agent the agent's leg
    /// (an agent on a bad home line, not a caller on a bad mobile).
    pub mos_scored: usize,
    pub mos_mean: Option<f64>,
    pub poor_quality: usize,
}

/// Calls scored below this are poor.
pub const POOR_MOS: f64 = 3.6;

/// Calls scored, their mean MOS and the poor ones, of `mos` per call.
fn quality(cdrs: &[&Cdr], mos: impl Fn(&Cdr) -> Option<f64>) -> (usize, Option<f64>, usize) {
    let scores: Vec<f64> = cdrs.iter().filter_map(|c| mos(c)).collect();
    let poor = scores.iter().filter(|&&m| m < POOR_MOS).count();
    let mean = mean(&scores).map(|m| (m * 100.0).round() / 100.0);
    (scores.len(), mean, poor)
}

fn secs(ms: Option<i64>) -> f64 {
    ms.unwrap_or(0).max(0) as f64 / 1000.0
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// The figures of one group of calls; `surveys` are matched to the calls
/// by Call-ID.
pub fn compute(cdrs: &[&Cdr], surveys: &[SurveyAnswer], t: Thresholds) -> Kpis {
    // Callback deliveries count as callbacks, not as calls.
    let (deliveries, calls): (Vec<&Cdr>, Vec<&Cdr>) = cdrs
        .iter()
        .copied()
        .partition(|c| c.outcome.is_callback_delivery());
    let cdrs = calls.as_slice();
    let completed: Vec<f64> = deliveries
        .iter()
        .filter(|c| c.outcome == Outcome::CallbackDelivery(CallbackState::Completed))
        .map(|c| secs(c.wait_ms))
        .collect();
    let failed = deliveries
        .iter()
        .filter(|c| {
            matches!(
                c.outcome,
                Outcome::CallbackDelivery(CallbackState::Failed | CallbackState::Expired)
            )
        })
        .count();
    let offered: Vec<&&Cdr> = cdrs.iter().filter(|c| c.queued_at.is_some()).collect();
    let answered: Vec<&&Cdr> = offered
        .iter()
        .copied()
        .filter(|c| c.outcome == Outcome::Agent)
        .collect();
    let abandoned: Vec<&&Cdr> = offered
        .iter()
        .copied()
        .filter(|c| c.outcome == Outcome::Abandoned)
        .collect();
    let short_ms = t.short_abandon.as_millis() as i64;
    let short = abandoned
        .iter()
        .filter(|c| c.wait_ms.unwrap_or(0) < short_ms)
        .count();
    let turned_away = offered.iter().filter(|c| c.outcome.is_queue_exit()).count();
    let sl_ms = t.service_level.as_millis() as i64;
    let in_time = answered
        .iter()
        .filter(|c| c.wait_ms.unwrap_or(i64::MAX) <= sl_ms)
        .count();
    let waits: Vec<f64> = answered.iter().map(|c| secs(c.wait_ms)).collect();
    let handles: Vec<f64> = answered
        .iter()
        .map(|c| secs(c.talk_ms) + secs(c.wrap_up_ms))
        .collect();
    let longest = offered.iter().map(|c| secs(c.wait_ms)).fold(0.0, f64::max);
    // Repeat callers: a call less than 24 h after the same caller's previous one.
    let mut by_caller: BTreeMap<&str, Vec<Timestamp>> = BTreeMap::new();
    for c in cdrs {
        if let Some(at) = c.arrived_at {
            by_caller.entry(c.caller.as_str()).or_default().push(at);
        }
    }
    let day = jiff::SignedDuration::from_hours(24);
    let repeat = by_caller
        .values_mut()
        .map(|times| {
            times.sort();
            times.windows(2).any(|w| w[1].duration_since(w[0]) < day)
        })
        .filter(|again| *again)
        .count();
    let contained = cdrs.iter().filter(|c| c.outcome == Outcome::Ivr).count();
    let ivr_abandoned = cdrs
        .iter()
        .filter(|c| c.outcome == Outcome::IvrAbandoned)
        .count();
    let ids: std::collections::HashSet<&str> = cdrs.iter().map(|c| c.call_id.as_str()).collect();
    let scores: Vec<u8> = surveys
        .iter()
        .filter(|s| ids.contains(s.call_id.as_str()))
        .map(|s| s.score)
        .collect();
    // Call quality counts callback deliveries too (an agent's leg is an
    // agent's leg).
    let scored: Vec<&Cdr> = cdrs.iter().chain(deliveries.iter()).copied().collect();
    let (mos_scored, mos_mean, poor_quality) = quality(&scored, |c| c.mos);
    let promoters = scores.iter().filter(|&&s| s >= 9).count();
    let detractors = scores.iter().filter(|&&s| s <= 6).count();
    Kpis {
        calls: cdrs.len(),
        offered: offered.len(),
        answered: answered.len(),
        abandoned: abandoned.len(),
        short_abandoned: short,
        turned_away,
        service_level: ratio(in_time, offered.len()),
        service_level_excluding_short: ratio(in_time, offered.len() - short),
        asa_seconds: mean(&waits),
        aht_seconds: mean(&handles),
        longest_wait_seconds: longest,
        abandon_rate: ratio(abandoned.len(), offered.len()),
        repeat_callers_24h: repeat,
        first_contact_resolution: ratio(
            answered
                .iter()
                .filter(|c| c.first_contact_resolution == Some(true))
                .count(),
            answered.len(),
        ),
        dispositioned: answered.iter().filter(|c| c.disposition.is_some()).count(),
        ivr_contained: contained,
        ivr_abandoned,
        surveys: scores.len(),
        nps: (!scores.is_empty())
            .then(|| (promoters as f64 - detractors as f64) * 100.0 / scores.len() as f64),
        occupancy: None,
        callbacks_booked: offered
            .iter()
            .filter(|c| c.outcome == Outcome::Callback)
            .count(),
        callbacks_completed: completed.len(),
        callbacks_failed: failed,
        callback_wait_seconds: mean(&completed),
        mos_scored,
        mos_mean,
        poor_quality,
    }
}

/// How calls are grouped in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// One group: every call.
    All,
    Queue,
    Agent,
    /// Intervals of this length from midnight UTC (15 min, 1 h, 1 day).
    Interval(Duration),
}

/// Calls by group key (`-` for calls without a queue or agent); intervals
/// are keyed by their start.
pub fn group(cdrs: &[Cdr], by: GroupBy) -> BTreeMap<String, Vec<&Cdr>> {
    let mut out: BTreeMap<String, Vec<&Cdr>> = BTreeMap::new();
    for c in cdrs {
        let key = match by {
            GroupBy::All => "all".to_owned(),
            GroupBy::Queue => c.queue.clone().unwrap_or_else(|| "-".into()),
            GroupBy::Agent => c.agent.clone().unwrap_or_else(|| "-".into()),
            GroupBy::Interval(len) => {
                let Some(at) = c.arrived_at else { continue };
                let len = len.as_secs().max(60) as i64;
                let start = at.as_second().div_euclid(len) * len;
                Timestamp::from_second(start)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| "-".into())
            }
        };
        out.entry(key).or_default().push(c);
    }
    out
}

/// One row of a report: a group and its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub group: String,
    #[serde(flatten)]
    pub kpis: Kpis,
}

/// What a report is made of: the calls, the surveys, the agents' state
/// changes and the window they cover.
pub struct Sources<'a> {
    pub cdrs: &'a [Cdr],
    pub surveys: &'a [SurveyAnswer],
    pub states: &'a [AgentStateRow],
    pub since: Timestamp,
    pub until: Timestamp,
}

/// A report: the calls grouped by `by`, each group's figures. A queue's
/// own service-level target (`service_level_of`) and agents
/// (`members_of`, for occupancy) apply to its group.
pub fn report(
    src: &Sources<'_>,
    by: GroupBy,
    service_level_of: impl Fn(&str) -> Option<Duration>,
    members_of: impl Fn(&str) -> Vec<String>,
    short_abandon: Duration,
) -> Vec<Row> {
    group(src.cdrs, by)
        .into_iter()
        .map(|(key, calls)| {
            let t = Thresholds {
                service_level: (by == GroupBy::Queue)
                    .then(|| service_level_of(&key))
                    .flatten()
                    .unwrap_or(Thresholds::default().service_level),
                short_abandon,
            };
            let mut kpis = compute(&calls, src.surveys, t);
            if by == GroupBy::Agent {
                (kpis.mos_scored, kpis.mos_mean, kpis.poor_quality) =
                    quality(&calls, |c| c.agent_mos);
            }
            kpis.occupancy = match by {
                GroupBy::All => occupancy(src.states, src.since, src.until, None),
                GroupBy::Queue => {
                    occupancy(src.states, src.since, src.until, Some(&members_of(&key)))
                }
                GroupBy::Agent => occupancy(
                    src.states,
                    src.since,
                    src.until,
                    Some(std::slice::from_ref(&key)),
                ),
                GroupBy::Interval(len) => key.parse::<Timestamp>().ok().and_then(|start| {
                    let end = start
                        .checked_add(jiff::SignedDuration::try_from(len).ok()?)
                        .ok()?;
                    occupancy(src.states, start.max(src.since), end.min(src.until), None)
                }),
            };
            Row { kpis, group: key }
        })
        .collect()
}

/// [`report`] with each queue's target and agents from the config.
pub fn report_for(
    config: &crate::config::Config,
    src: &Sources<'_>,
    by: GroupBy,
    short_abandon: Duration,
) -> Vec<Row> {
    report(
        src,
        by,
        |q| config.queues.get(q).map(|q| q.service_level),
        |q| {
            config
                .agents
                .iter()
                .filter(|a| a.queues.iter().any(|x| x == q))
                .map(|a| a.id.clone())
                .collect()
        },
        short_abandon,
    )
}

/// Occupancy over `[since, until)` of `agents` (all, with `None`), from
/// their state changes (each agent's state as the window opens first).
pub fn occupancy(
    rows: &[AgentStateRow],
    since: Timestamp,
    until: Timestamp,
    agents: Option<&[String]>,
) -> Option<f64> {
    let mut by_agent: BTreeMap<&str, Vec<&AgentStateRow>> = BTreeMap::new();
    for r in rows {
        if agents.is_none_or(|a| a.contains(&r.agent)) {
            by_agent.entry(r.agent.as_str()).or_default().push(r);
        }
    }
    let (mut busy, mut idle) = (0.0, 0.0);
    for changes in by_agent.values() {
        for (i, r) in changes.iter().enumerate() {
            let from = r.at.max(since);
            let to = changes.get(i + 1).map_or(until, |n| n.at).min(until);
            if to <= from {
                continue;
            }
            let secs = to.duration_since(from).as_secs_f64();
            match r.state.as_str() {
                "on-call" | "wrap-up" => busy += secs,
                "available" | "ringing" => idle += secs,
                _ => {}
            }
        }
    }
    (busy + idle > 0.0).then(|| busy / (busy + idle))
}

/// A report's or the KPI API's query that cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("`{0}`: group by all, queue, agent or interval")]
    UnknownGrouping(String),
    #[error("the interval must be at least 1m")]
    IntervalTooShort,
    #[error("`{0}` is not a time (RFC 3339) or a duration (90m, 24h, 7d)")]
    NotATime(String),
    #[error("`{0}` is too far back")]
    OutOfRange(String),
}

/// Parses `all`, `queue`, `agent`, `interval` (with its length).
pub fn group_by(name: &str, interval: Duration) -> Result<GroupBy, QueryError> {
    match name {
        "all" => Ok(GroupBy::All),
        "queue" => Ok(GroupBy::Queue),
        "agent" => Ok(GroupBy::Agent),
        "interval" if interval >= Duration::from_secs(60) => Ok(GroupBy::Interval(interval)),
        "interval" => Err(QueryError::IntervalTooShort),
        other => Err(QueryError::UnknownGrouping(other.to_owned())),
    }
}

/// A point in time as the report and the API take it: RFC 3339
/// (`2026-11-23T09:00:00Z`), or a duration before `now` (`90m`, `24h`, `7d`).
pub fn when(text: &str, now: Timestamp) -> Result<Timestamp, QueryError> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let not_a_time = || QueryError::NotATime(text.to_owned());
    let ago = match text.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .map(Duration::from_secs)
            .ok_or_else(not_a_time),
        None => crate::config::parse_duration(text).map_err(|_| not_a_time()),
    }?;
    let too_far = || QueryError::OutOfRange(text.to_owned());
    let ago = jiff::SignedDuration::try_from(ago).map_err(|_| too_far())?;
    now.checked_sub(ago).map_err(|_| too_far())
}

fn cell(v: Option<f64>, scale: f64) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1}", v * scale))
}

const HEADER: [&str; 23] = [
    "group",
    "offered",
    "answered",
    "abandoned",
    "short",
    "turned_away",
    "sl_%",
    "sl_excl_short_%",
    "asa_s",
    "aht_s",
    "longest_wait_s",
    "abandon_%",
    "repeat_24h",
    "fcr_%",
    "ivr_contained",
    "ivr_abandoned",
    "nps",
    "occupancy_%",
    "callbacks",
    "callbacks_done",
    "callbacks_failed",
    "mos",
    "mos_lt_3.6",
];

fn cells(r: &Row) -> [String; 23] {
    let k = &r.kpis;
    [
        r.group.clone(),
        k.offered.to_string(),
        k.answered.to_string(),
        k.abandoned.to_string(),
        k.short_abandoned.to_string(),
        k.turned_away.to_string(),
        cell(k.service_level, 100.0),
        cell(k.service_level_excluding_short, 100.0),
        cell(k.asa_seconds, 1.0),
        cell(k.aht_seconds, 1.0),
        format!("{:.1}", k.longest_wait_seconds),
        cell(k.abandon_rate, 100.0),
        k.repeat_callers_24h.to_string(),
        cell(k.first_contact_resolution, 100.0),
        k.ivr_contained.to_string(),
        k.ivr_abandoned.to_string(),
        cell(k.nps, 1.0),
        cell(k.occupancy, 100.0),
        k.callbacks_booked.to_string(),
        k.callbacks_completed.to_string(),
        k.callbacks_failed.to_string(),
        k.mos_mean.map_or_else(|| "-".into(), |m| format!("{m:.2}")),
        k.poor_quality.to_string(),
    ]
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let all: Vec<[String; 23]> = std::iter::once(HEADER.map(str::to_owned))
        .chain(rows.iter().map(cells))
        .collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| all.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &all {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One CSV cell, quoted when it holds a comma, a quote or a line break.
/// A value a spreadsheet would run as a formula (a caller ID such as
/// `=2+5` or `@SUM(1+1)`) is neutralised with a leading `'`; a plain
/// number such as `+15551234567` is kept as it is.
fn csv_cell(c: &str) -> String {
    let formula = match c.chars().next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => !c[1..].chars().all(|d| d.is_ascii_digit()),
        _ => false,
    };
    let c = if formula {
        std::borrow::Cow::Owned(format!("'{c}"))
    } else {
        std::borrow::Cow::Borrowed(c)
    };
    if formula || c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.into_owned()
    }
}

/// The rows as CSV (a header line, then one line per group).
pub fn csv(rows: &[Row]) -> String {
    let mut out = HEADER.join(",");
    out.push('\n');
    for r in rows {
        let line: Vec<String> = cells(r).iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Call records as CSV: a header line, one line per call.
pub fn cdr_csv(cdrs: &[Cdr]) -> String {
    let t = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
    let s = |s: &Option<String>| s.clone().unwrap_or_default();
    let n = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let mut out = String::from(
        "call_id,caller,dialed,trunk,arrived_at,answered_at,flow,exit_node,ivr_exit_at,queue,queued_at,offered_at,agent,bridged_at,ended_at,outcome,ended_by,wait_ms,talk_ms,hold_ms,wrap_up_ms,recording,vars,mos,agent_mos,disposition,first_contact_resolution\n",
    );
    for c in cdrs {
        let cells = [
            c.call_id.clone(),
            c.caller.clone(),
            c.dialed.clone(),
            c.trunk.clone(),
            t(c.arrived_at),
            t(c.answered_at),
            s(&c.flow),
            s(&c.exit_node),
            t(c.ivr_exit_at),
            s(&c.queue),
            t(c.queued_at),
            t(c.offered_at),
            s(&c.agent),
            t(c.bridged_at),
            t(c.ended_at),
            c.outcome.to_string(),
            c.ended_by.clone(),
            n(c.wait_ms),
            n(c.talk_ms),
            n(c.hold_ms),
            n(c.wrap_up_ms),
            s(&c.recording),
            c.vars.clone(),
            c.mos.map(|m| m.to_string()).unwrap_or_default(),
            c.agent_mos.map(|m| m.to_string()).unwrap_or_default(),
            s(&c.disposition),
            c.first_contact_resolution
                .map(|f| f.to_string())
                .unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// A report as JSON: its window, grouping, rows and IVR containment.
pub fn json(
    since: Timestamp,
    until: Timestamp,
    by: &str,
    rows: &[Row],
    cdrs: &[Cdr],
) -> serde_json::Value {
    let containment: Vec<serde_json::Value> = containment(cdrs)
        .into_iter()
        .map(
            |((flow, node), calls)| serde_json::json!({"flow": flow, "node": node, "calls": calls}),
        )
        .collect();
    let poor: Vec<serde_json::Value> = poor_calls(cdrs)
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "call_id": c.call_id, "arrived_at": c.arrived_at, "queue": c.queue,
                "agent": c.agent, "mos": c.mos, "agent_mos": c.agent_mos,
            })
        })
        .collect();
    serde_json::json!({
        "since": since, "until": until, "by": by, "rows": rows,
        "ivr_containment": containment,
        "poor_quality_calls": poor,
    })
}

/// The calls (and callback deliveries) whose worst leg scored under
/// [`POOR_MOS`], oldest first: where a supervisor starts looking.
pub fn poor_calls(cdrs: &[Cdr]) -> Vec<&Cdr> {
    let mut poor: Vec<&Cdr> = cdrs
        .iter()
        .filter(|c| c.mos.is_some_and(|m| m < POOR_MOS))
        .collect();
    poor.sort_by_key(|c| c.arrived_at);
    poor
}

/// [`poor_calls`] as text lines, for the table report (empty without any).
pub fn poor_calls_text(cdrs: &[Cdr]) -> String {
    let poor = poor_calls(cdrs);
    if poor.is_empty() {
        return String::new();
    }
    let mut out = format!("\ncalls with a MOS under {POOR_MOS}:\n");
    for c in poor {
        let score = |m: Option<f64>| m.map_or_else(|| "-".into(), |m| format!("{m:.2}"));
        let arrived = c.arrived_at.map(|t| t.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{arrived}  {}  queue {}  agent {}  mos {}  agent leg {}\n",
            c.call_id,
            c.queue.as_deref().unwrap_or("-"),
            c.agent.as_deref().unwrap_or("-"),
            score(c.mos),
            score(c.agent_mos),
        ));
    }
    out
}

/// Calls contained in the IVR, by (flow, node where they ended).
pub fn containment(cdrs: &[Cdr]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for c in cdrs.iter().filter(|c| c.outcome == Outcome::Ivr) {
        let flow = c.flow.clone().unwrap_or_else(|| "-".into());
        let node = c.exit_node.clone().unwrap_or_else(|| "-".into());
        *out.entry((flow, node)).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn caller_ids_a_spreadsheet_would_run_as_formulas_are_neutralised() {
        let cell = super::csv_cell;
        assert_eq!(cell("=2+5"), "\"'=2+5\"");
        assert_eq!(cell("@SUM(1+1)"), "\"'@SUM(1+1)\"");
        assert_eq!(cell("+1+1"), "\"'+1+1\"");
        assert_eq!(cell("-2+3"), "\"'-2+3\"");
        assert_eq!(cell("\t=1"), "\"'\t=1\"");
        assert_eq!(
            cell("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        // Plain numbers and names stay as they are.
        assert_eq!(cell("+15551234567"), "+15551234567");
        assert_eq!(cell("-5"), "-5");
        assert_eq!(cell("sipp"), "sipp");
        assert_eq!(cell("a,b"), "\"a,b\"");
        let cdr = crate::store::Cdr {
            caller: "=cmd|' /C calc'!A0".into(),
            ..crate::store::Cdr::default()
        };
        let csv = super::cdr_csv(&[cdr]);
        let line = csv.lines().nth(1).unwrap();
        assert!(line.contains(",\"'=cmd|' /C calc'!A0\","), "{line}");
    }

    use super::*;

    #[test]
    fn first_contact_resolution_is_the_share_of_answered_calls_whose_disposition_says_so() {
        let disposed = |id: &str, code: Option<&str>, fcr: Option<bool>| Cdr {
            disposition: code.map(str::to_owned),
            first_contact_resolution: fcr,
            ..cdr(id, "+1", 1, "agent", Some(1_000), Some(60_000))
        };
        let cdrs = [
            disposed("a", Some("1"), Some(true)),
            disposed("b", Some("1"), Some(true)),
            disposed("c", Some("2"), Some(false)),
            // Answered, never given one: not resolved as far as anyone knows.
            disposed("d", None, None),
            // Not answered: not counted.
            cdr("e", "+2", 1, "abandoned", Some(9_000), None),
        ];
        let refs: Vec<&Cdr> = cdrs.iter().collect();
        let k = compute(&refs, &[], Thresholds::default());
        assert_eq!(k.answered, 4);
        assert_eq!(k.dispositioned, 3);
        assert_eq!(k.first_contact_resolution, Some(0.5));
        assert_eq!(
            compute(&[], &[], Thresholds::default()).first_contact_resolution,
            None
        );
    }

    #[test]
    fn poor_calls_are_counted_per_queue_by_the_worst_leg_and_per_agent_by_theirs() {
        let scored = |id: &str, agent: &str, mos: f64, agent_mos: f64| Cdr {
            agent: Some(agent.into()),
            mos: Some(mos),
            agent_mos: Some(agent_mos),
            ..cdr(id, "+1", 1, "agent", Some(1_000), Some(60_000))
        };
        let cdrs = [
            // A caller on a bad mobile line: poor for the queue, not for alice.
            scored("a", "alice", 3.1, 4.4),
            scored("b", "alice", 4.4, 4.4),
            // Bob's home line is bad.
            scored("c", "bob", 3.3, 3.3),
            scored("d", "bob", 3.5, 3.5),
            // No RTCP figures: not scored.
            cdr("e", "+2", 1, "agent", Some(1_000), Some(60_000)),
        ];
        let src = Sources {
            cdrs: &cdrs,
            surveys: &[],
            states: &[],
            since: Timestamp::UNIX_EPOCH,
            until: Timestamp::UNIX_EPOCH,
        };
        let no_target = |_: &str| None;
        let nobody = |_: &str| Vec::new();
        let rows = report(&src, GroupBy::Queue, no_target, nobody, Duration::ZERO);
        let k = &rows[0].kpis;
        assert_eq!(
            (k.mos_scored, k.poor_quality, k.mos_mean),
            (4, 3, Some(3.58))
        );
        let rows = report(&src, GroupBy::Agent, no_target, nobody, Duration::ZERO);
        let by: BTreeMap<&str, (usize, usize)> = rows
            .iter()
            .map(|r| (r.group.as_str(), (r.kpis.mos_scored, r.kpis.poor_quality)))
            .collect();
        assert_eq!(by["alice"], (2, 0));
        assert_eq!(by["bob"], (2, 2));
        let text = table(&rows);
        assert!(
            text.lines().next().unwrap().ends_with("mos  mos_lt_3.6"),
            "{text}"
        );
        // The poor calls themselves, oldest first: a, c, d (not b, nor e).
        let ids: Vec<&str> = poor_calls(&cdrs)
            .iter()
            .map(|c| c.call_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c", "d"]);
        let poor = poor_calls_text(&cdrs);
        assert!(
            poor.contains("  c  queue sales  agent bob  mos 3.30  agent leg 3.30"),
            "{poor}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("bob") && l.ends_with("3.40           2")),
            "{text}"
        );
    }

    fn cdr(
        id: &str,
        caller: &str,
        at_min: i64,
        outcome: &str,
        wait: Option<i64>,
        talk: Option<i64>,
    ) -> Cdr {
        let at = Timestamp::from_second(1_795_420_800 + at_min * 60).unwrap();
        Cdr {
            call_id: id.into(),
            caller: caller.into(),
            arrived_at: Some(at),
            queue: wait.map(|_| "sales".into()),
            queued_at: wait.map(|_| at),
            agent: (outcome == "agent").then(|| "1001".into()),
            outcome: Outcome::parse(outcome),
            wait_ms: wait,
            talk_ms: talk,
            wrap_up_ms: talk.map(|_| 10_000),
            flow: Some("support".into()),
            exit_node: Some(if outcome == "ivr" { "closed" } else { "q" }.into()),
            ..Cdr::default()
        }
    }

    #[test]
    fn the_figures_follow_their_definitions() {
        let cdrs = vec![
            cdr("a", "+1", 0, "agent", Some(10_000), Some(60_000)),
            cdr("b", "+2", 1, "agent", Some(30_000), Some(120_000)),
            cdr("c", "+3", 2, "abandoned", Some(2_000), None),
            cdr("d", "+4", 3, "abandoned", Some(40_000), None),
            cdr("e", "+5", 4, "queue-timeout", Some(90_000), None),
            cdr("f", "+1", 90, "ivr", None, None),
            cdr("g", "+6", 100, "ivr-abandoned", None, None),
        ];
        let refs: Vec<&Cdr> = cdrs.iter().collect();
        let survey = |id: &str, score| SurveyAnswer {
            created_at: Timestamp::UNIX_EPOCH,
            call_id: id.into(),
            caller: String::new(),
            flow: String::new(),
            question: "nps".into(),
            score,
        };
        let surveys = [survey("a", 10), survey("b", 3), survey("zz", 10)];
        let k = compute(&refs, &surveys, Thresholds::default());
        assert_eq!((k.calls, k.offered, k.answered), (7, 5, 2));
        assert_eq!((k.abandoned, k.short_abandoned, k.turned_away), (2, 1, 1));
        // 1 of 5 answered within 20 s; 1 of 4 leaving out the short abandon.
        assert_eq!(k.service_level, Some(0.2));
        assert_eq!(k.service_level_excluding_short, Some(0.25));
        assert_eq!(k.asa_seconds, Some(20.0));
        assert_eq!(k.aht_seconds, Some(100.0));
        assert_eq!(k.longest_wait_seconds, 90.0);
        assert_eq!(k.abandon_rate, Some(0.4));
        assert_eq!(k.repeat_callers_24h, 1, "+1 called twice within 24 h");
        assert_eq!(k.ivr_contained, 1, "the flow ended f");
        assert_eq!(k.ivr_abandoned, 1, "g hung up in the IVR: not contained");
        // Surveys of these calls only: one promoter, one detractor.
        assert_eq!((k.surveys, k.nps), (2, Some(0.0)));
        let by = group(&cdrs, GroupBy::Interval(Duration::from_secs(3600)));
        assert_eq!(by.values().map(Vec::len).collect::<Vec<_>>(), [5, 2]);
        let by = group(&cdrs, GroupBy::Queue);
        assert_eq!(by["sales"].len(), 5);
        assert_eq!(by["-"].len(), 2);
        assert_eq!(
            containment(&cdrs),
            [(("support".to_string(), "closed".to_string()), 1)].into()
        );
        // Occupancy: a1 is on calls 30 of its 60 idle-or-busy minutes (its
        // lunch pause counts for neither); a2 only from 09:30, all idle.
        let t = |hm: &str| format!("2026-11-23T{hm}:00Z").parse::<Timestamp>().unwrap();
        let row = |agent: &str, state: &str, at: &str| AgentStateRow {
            agent: agent.into(),
            state: state.into(),
            at: t(at),
        };
        let states = [
            row("a1", "available", "08:00"),
            row("a1", "on-call", "09:10"),
            row("a1", "wrap-up", "09:30"),
            row("a1", "available", "09:40"),
            row("a1", "paused", "09:50"),
            row("a1", "available", "10:00"),
            row("a2", "available", "09:30"),
        ];
        let occ = |agents: Option<&[String]>| occupancy(&states, t("09:00"), t("10:10"), agents);
        assert_eq!(occ(Some(&["a1".to_string()])), Some(0.5));
        assert_eq!(occ(Some(&["a2".to_string()])), Some(0.0));
        assert_eq!(occ(None), Some(30.0 / 100.0));
        assert_eq!(occ(Some(&["nobody".to_string()])), None);
        // Callbacks: the booking call is offered and not an abandon; the
        // deliveries count only as callbacks.
        let mut with_callbacks = cdrs.clone();
        with_callbacks.push(cdr("h", "+7", 5, "callback", Some(50_000), None));
        let mut done = cdr(
            "callback-1",
            "+7",
            20,
            "callback-completed",
            None,
            Some(30_000),
        );
        done.wait_ms = Some(900_000);
        with_callbacks.push(done);
        with_callbacks.push(cdr("callback-2", "+8", 21, "callback-expired", None, None));
        let refs: Vec<&Cdr> = with_callbacks.iter().collect();
        let c = compute(&refs, &[], Thresholds::default());
        assert_eq!((c.calls, c.offered, c.abandoned), (8, 6, 2));
        assert_eq!(
            (
                c.callbacks_booked,
                c.callbacks_completed,
                c.callbacks_failed
            ),
            (1, 1, 1)
        );
        assert_eq!(c.callback_wait_seconds, Some(900.0));
        assert_eq!(c.repeat_callers_24h, 1, "a callback is not a repeat call");
        let empty = compute(&[], &[], Thresholds::default());
        assert_eq!(
            (empty.service_level, empty.asa_seconds, empty.nps),
            (None, None, None)
        );
    }
}
