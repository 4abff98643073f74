//! Picking the agent for a waiting caller among the free ones.

use std::time::Instant;

use crate::config::Strategy;

/// A free agent who could take the call.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub idle_since: Instant,
    /// Calls answered since the engine started.
    pub calls: u32,
    /// The agent's level in the call's required skills (lowest of them;
    /// 0 when none are required).
    pub level: u8,
}

/// The candidate to offer the call to. `last` is the agent this queue
/// chose last time (for round-robin); `members` the queue's agents in
/// their configured order.
pub fn pick<'a>(
    strategy: Strategy,
    candidates: &[Candidate<'a>],
    members: &[String],
    last: Option<&str>,
) -> Option<&'a str> {
    let longest_idle = |c: &[Candidate<'a>]| c.iter().min_by_key(|c| c.idle_since).map(|c| c.id);
    match strategy {
        // Ring-all offers every candidate (the ACD does); asked for one, the
        // longest idle.
        Strategy::LongestIdle | Strategy::RingAll => longest_idle(candidates),
        Strategy::FewestCalls => candidates
            .iter()
            .min_by_key(|c| (c.calls, c.idle_since))
            .map(|c| c.id),
        Strategy::Random => {
            if candidates.is_empty() {
                return None;
            }
            let i = rand::random_range(0..candidates.len());
            Some(candidates[i].id)
        }
        Strategy::RoundRobin => {
            // The first free member after the one chosen last, wrapping.
            let start = last
                .and_then(|l| members.iter().position(|m| m == l))
                .map_or(0, |i| i + 1);
            (0..members.len())
                .map(|k| &members[(start + k) % members.len()])
                .find_map(|m| candidates.iter().find(|c| c.id == m).map(|c| c.id))
        }
        Strategy::Skills => {
            let best = candidates.iter().map(|c| c.level).max()?;
            let top: Vec<Candidate<'a>> = candidates
                .iter()
                .filter(|c| c.level == best)
                .cloned()
                .collect();
            longest_idle(&top)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cands(t: Instant) -> Vec<Candidate<'static>> {
        vec![
            Candidate {
                id: "a",
                idle_since: t + Duration::from_secs(5),
                calls: 3,
                level: 5,
            },
            Candidate {
                id: "b",
                idle_since: t,
                calls: 7,
                level: 2,
            },
            Candidate {
                id: "c",
                idle_since: t + Duration::from_secs(9),
                calls: 1,
                level: 5,
            },
        ]
    }

    #[test]
    fn each_strategy_picks_as_documented() {
        let t = Instant::now();
        let c = cands(t);
        let members: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(pick(Strategy::LongestIdle, &c, &members, None), Some("b"));
        assert_eq!(pick(Strategy::FewestCalls, &c, &members, None), Some("c"));
        // Skills: best level first (a and c have 5), then longest idle (a).
        assert_eq!(pick(Strategy::Skills, &c, &members, None), Some("a"));
        // Round-robin remembers: after a comes b, after c comes a (d is busy).
        assert_eq!(pick(Strategy::RoundRobin, &c, &members, None), Some("a"));
        assert_eq!(
            pick(Strategy::RoundRobin, &c, &members, Some("a")),
            Some("b")
        );
        assert_eq!(
            pick(Strategy::RoundRobin, &c, &members, Some("c")),
            Some("a")
        );
        for _ in 0..20 {
            assert!(matches!(
                pick(Strategy::Random, &c, &members, None),
                Some("a" | "b" | "c")
            ));
        }
        assert_eq!(pick(Strategy::LongestIdle, &[], &members, None), None);
        assert_eq!(pick(Strategy::Random, &[], &members, None), None);
    }
}
