//! An agent's own day, as their desktop shows it: calls answered, average
//! handle time, talk time, and pauses (how many, how long).

use jiff::Timestamp;
use serde::Serialize;

use crate::store::{AgentStateRow, Cdr};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentDay {
    pub calls: usize,
    /// (talk + hold + wrap-up) per answered call; `None` without calls.
    pub aht_seconds: Option<f64>,
    pub talk_seconds: f64,
    pub pauses: usize,
    pub paused_seconds: f64,
}

/// `agent`'s figures over `[since, until)` from the call records and its
/// state changes (each row is a state entered at its time).
pub fn agent_day(
    agent: &str,
    cdrs: &[Cdr],
    states: &[AgentStateRow],
    since: Timestamp,
    until: Timestamp,
) -> AgentDay {
    let answered: Vec<&Cdr> = cdrs
        .iter()
        .filter(|c| c.agent.as_deref() == Some(agent) && c.talk_ms.is_some())
        .collect();
    let ms = |v: Option<i64>| v.unwrap_or(0).max(0) as f64 / 1000.0;
    let talk: f64 = answered.iter().map(|c| ms(c.talk_ms)).sum();
    let handled: f64 = answered
        .iter()
        .map(|c| ms(c.talk_ms) + ms(c.hold_ms) + ms(c.wrap_up_ms))
        .sum();
    let mut mine: Vec<&AgentStateRow> = states.iter().filter(|s| s.agent == agent).collect();
    mine.sort_by_key(|s| s.at);
    let (mut pauses, mut paused) = (0, 0.0);
    for (i, s) in mine.iter().enumerate() {
        if s.state != "paused" {
            continue;
        }
        // A pause that began before the window counts from its start.
        let from = s.at.max(since);
        let to = mine.get(i + 1).map_or(until, |n| n.at).min(until);
        if to > from {
            paused += to.duration_since(from).as_secs_f64();
        }
        if s.at >= since && s.at < until {
            pauses += 1;
        }
    }
    AgentDay {
        calls: answered.len(),
        aht_seconds: (!answered.is_empty()).then(|| handled / answered.len() as f64),
        talk_seconds: talk,
        pauses,
        paused_seconds: paused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn state(agent: &str, state: &str, s: i64) -> AgentStateRow {
        AgentStateRow {
            agent: agent.into(),
            state: state.into(),
            at: at(s),
        }
    }

    fn call(agent: Option<&str>, talk: Option<i64>, hold: i64, wrap: i64) -> Cdr {
        Cdr {
            agent: agent.map(str::to_owned),
            talk_ms: talk,
            hold_ms: Some(hold),
            wrap_up_ms: Some(wrap),
            ..Cdr::default()
        }
    }

    #[test]
    fn the_agents_own_calls_handle_time_and_pauses_in_the_window() {
        let cdrs = [
            call(Some("ada"), Some(60_000), 10_000, 20_000),
            call(Some("ada"), Some(120_000), 0, 10_000),
            // Another agent's, and one ada never answered.
            call(Some("bob"), Some(999_000), 0, 0),
            call(Some("ada"), None, 0, 0),
        ];
        let states = [
            // Paused since before the window: 100 s of it count.
            state("ada", "paused", -50),
            state("ada", "available", 100),
            state("ada", "paused", 200),
            state("bob", "paused", 0),
            state("ada", "available", 260),
        ];
        let d = agent_day("ada", &cdrs, &states, at(0), at(1000));
        assert_eq!(d.calls, 2);
        assert_eq!(d.talk_seconds, 180.0);
        assert_eq!(d.aht_seconds, Some(110.0));
        assert_eq!(d.pauses, 1);
        assert_eq!(d.paused_seconds, 160.0);
        let none = agent_day("cy", &cdrs, &states, at(0), at(1000));
        assert_eq!(none.calls, 0);
        assert_eq!(none.aht_seconds, None);
    }
}
