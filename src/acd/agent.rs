//! One agent's state: the only place it changes, one explicit transition per
//! event, so no sequence of events leaves an agent "on call" without a call.

use std::time::Instant;

/// A call, as the ACD names it (the caller's Call-ID).
pub type CallId = String;

/// Where one of an agent's phones is rung: the Contact URI it registered
/// and where its registration came from (the ACD's own view of a
/// registration; the SIP layer's binding stays in `sip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub uri: String,
    pub source: std::net::SocketAddr,
    /// Registered over a TCP connection: reached over that connection.
    pub tcp: bool,
    /// That connection is TLS: SDES keys may go over it.
    pub tls: bool,
    /// A browser phone over WebSocket: it is offered WebRTC media.
    pub ws: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    LoggedOut,
    Available {
        since: Instant,
    },
    /// Offered a call; the phone rings.
    Ringing {
        call: CallId,
        since: Instant,
    },
    OnCall {
        call: CallId,
        since: Instant,
    },
    /// After a call; offered nothing until `until`.
    WrapUp {
        until: Instant,
    },
    Paused {
        reason: String,
        since: Instant,
    },
}

/// Which state an agent is in, without its details: what the API, the
/// events, the metrics and the store show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentStatus {
    LoggedOut,
    Available,
    Ringing,
    OnCall,
    WrapUp,
    Paused,
}

impl AgentStatus {
    pub const ALL: [AgentStatus; 6] = [
        AgentStatus::LoggedOut,
        AgentStatus::Available,
        AgentStatus::Ringing,
        AgentStatus::OnCall,
        AgentStatus::WrapUp,
        AgentStatus::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::LoggedOut => "logged-out",
            AgentStatus::Available => "available",
            AgentStatus::Ringing => "ringing",
            AgentStatus::OnCall => "on-call",
            AgentStatus::WrapUp => "wrap-up",
            AgentStatus::Paused => "paused",
        }
    }
}

impl std::fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AgentState {
    pub fn status(&self) -> AgentStatus {
        match self {
            AgentState::LoggedOut => AgentStatus::LoggedOut,
            AgentState::Available { .. } => AgentStatus::Available,
            AgentState::Ringing { .. } => AgentStatus::Ringing,
            AgentState::OnCall { .. } => AgentStatus::OnCall,
            AgentState::WrapUp { .. } => AgentStatus::WrapUp,
            AgentState::Paused { .. } => AgentStatus::Paused,
        }
    }

    pub fn name(&self) -> &'static str {
        self.status().as_str()
    }

    /// The call the agent is busy with, if any.
    pub fn call(&self) -> Option<&str> {
        match self {
            AgentState::Ringing { call, .. } | AgentState::OnCall { call, .. } => Some(call),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    Login,
    Logout,
    Pause(String),
    Unpause,
    Offer(CallId),
    Answered,
    NoAnswer,
    /// The call ended (either side hung up, or the offer was withdrawn).
    Ended,
    /// The agent was on the line for a call that never reached a caller (a
    /// callback whose customer was busy): free at once, no wrap-up.
    Released,
    WrapUpDone,
}

/// Why an event does not apply to an agent in its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("logged out")]
    LoggedOut,
    /// Logging out or pausing waits for the call's end.
    #[error("busy with a call")]
    BusyWithCall,
    #[error("{event:?} does not apply to an agent {state}")]
    NotApplicable {
        event: AgentEvent,
        state: AgentStatus,
    },
}

/// The next state, or why the event does not apply in this state.
pub fn next(
    state: &AgentState,
    event: &AgentEvent,
    now: Instant,
    wrap_up: std::time::Duration,
) -> Result<AgentState, Refused> {
    use AgentEvent as E;
    use AgentState as S;
    let available = S::Available { since: now };
    Ok(match (state, event) {
        (S::LoggedOut, E::Login) => available,
        (S::LoggedOut, _) => return Err(Refused::LoggedOut),
        // Logging out or pausing during a call takes effect after it.
        (S::Ringing { .. } | S::OnCall { .. }, E::Logout | E::Pause(_)) => {
            return Err(Refused::BusyWithCall)
        }
        (_, E::Logout) => S::LoggedOut,
        (S::Available { .. } | S::WrapUp { .. }, E::Pause(r)) => S::Paused {
            reason: r.clone(),
            since: now,
        },
        (S::Paused { .. }, E::Pause(r)) => S::Paused {
            reason: r.clone(),
            since: now,
        },
        (S::Paused { .. }, E::Unpause) => available,
        (S::Available { .. }, E::Offer(call)) => S::Ringing {
            call: call.clone(),
            since: now,
        },
        (S::Ringing { call, .. }, E::Answered) => S::OnCall {
            call: call.clone(),
            since: now,
        },
        // The queue decides whether a missed call pauses the agent.
        (S::Ringing { .. }, E::NoAnswer) => available,
        // Withdrawn while ringing (the caller hung up): free at once.
        (S::Ringing { .. }, E::Ended) => available,
        (S::OnCall { .. }, E::Ended) => S::WrapUp {
            until: now + wrap_up,
        },
        (S::OnCall { .. } | S::Ringing { .. }, E::Released) => available,
        (S::WrapUp { .. }, E::WrapUpDone) => available,
        (s, e) => {
            return Err(Refused::NotApplicable {
                event: e.clone(),
                state: s.status(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const WRAP: Duration = Duration::from_secs(10);

    fn run(events: &[AgentEvent]) -> Result<AgentState, Refused> {
        let t = Instant::now();
        let mut s = AgentState::LoggedOut;
        for e in events {
            s = next(&s, e, t, WRAP)?;
        }
        Ok(s)
    }

    #[test]
    fn a_call_from_login_to_wrap_up() {
        use AgentEvent::*;
        let s = run(&[Login, Offer("c1".into()), Answered]).unwrap();
        assert_eq!(s.call(), Some("c1"));
        assert_eq!(
            run(&[Login, Offer("c1".into()), Answered, Ended])
                .unwrap()
                .name(),
            "wrap-up"
        );
        assert_eq!(
            run(&[Login, Offer("c1".into()), Answered, Ended, WrapUpDone])
                .unwrap()
                .name(),
            "available"
        );
        assert_eq!(
            run(&[Login, Offer("c".into()), NoAnswer]).unwrap().name(),
            "available"
        );
        assert_eq!(
            run(&[Login, Pause("lunch".into()), Unpause])
                .unwrap()
                .name(),
            "available"
        );
        assert_eq!(run(&[Login, Logout]).unwrap(), AgentState::LoggedOut);
    }

    #[test]
    fn events_that_do_not_fit_are_refused() {
        use AgentEvent::*;
        assert_eq!(run(&[Offer("c".into())]), Err(Refused::LoggedOut));
        assert!(run(&[Login, Answered]).is_err(), "nothing rings");
        assert!(
            run(&[Login, Offer("a".into()), Offer("b".into())]).is_err(),
            "one call at a time"
        );
        assert_eq!(
            run(&[Login, Offer("a".into()), Answered, Logout]),
            Err(Refused::BusyWithCall),
            "not mid-call"
        );
        assert_eq!(
            run(&[Login, Answered]).unwrap_err().to_string(),
            "Answered does not apply to an agent available"
        );
        assert!(run(&[Login, Pause("x".into()), Offer("a".into())]).is_err());
        assert!(
            run(&[Login, Offer("a".into()), Answered, Ended, Offer("b".into())]).is_err(),
            "wrap-up"
        );
    }

    /// Whatever events arrive, in any order, an agent is on a call only
    /// between an answered offer and that call's end.
    #[test]
    fn no_event_sequence_leaves_an_agent_on_call_without_a_call() {
        use AgentEvent::*;
        let events = [
            Login,
            Logout,
            Pause("p".into()),
            Unpause,
            Offer("c".into()),
            Answered,
            NoAnswer,
            Ended,
            WrapUpDone,
        ];
        let t = Instant::now();
        // Every sequence of length 6 over the events (9^6 = 531,441).
        let mut idx = [0usize; 6];
        loop {
            let mut s = AgentState::LoggedOut;
            let mut live_call = false;
            for &i in &idx {
                let e = &events[i];
                if let Ok(n) = next(&s, e, t, WRAP) {
                    match (e, &n) {
                        (Answered, AgentState::OnCall { .. }) => live_call = true,
                        (Ended, _) => live_call = false,
                        _ => {}
                    }
                    s = n;
                }
                if matches!(s, AgentState::OnCall { .. }) {
                    assert!(live_call, "{idx:?}");
                }
            }
            let mut k = 0;
            loop {
                idx[k] += 1;
                if idx[k] < events.len() {
                    break;
                }
                idx[k] = 0;
                k += 1;
                if k == idx.len() {
                    return;
                }
            }
        }
    }
}
