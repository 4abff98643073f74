//! How a call ended, as its record says: one name per outcome, the same in
//! the store, the API, webhooks, reports and events.

use super::CallbackState;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Outcome {
    /// The caller talked to an agent.
    Agent,
    /// The caller hung up while waiting in a queue.
    Abandoned,
    /// The caller left the queue at its `max-wait`.
    QueueTimeout,
    /// Nobody staffed the queue.
    QueueEmpty,
    /// The queue held `max-length` callers already.
    QueueFull,
    /// The caller booked a callback that took their place.
    Callback,
    /// A transfer node bridged the caller elsewhere.
    Transferred,
    /// The flow ended the call.
    Ivr,
    /// The caller hung up in the IVR.
    IvrAbandoned,
    /// Refused before the answer (no route, no media, an unusable offer).
    Refused,
    /// The caller cancelled while it rang.
    Cancelled,
    /// Something went wrong.
    #[default]
    Failed,
    /// An agent's feature code call (login, pause, …).
    FeatureCode,
    /// The engine stopped (a crash) while the call went on.
    Interrupted,
    /// A callback delivery's own record, by how the callback ended.
    CallbackDelivery(CallbackState),
    /// A name this version does not know (written by another version):
    /// kept as it is.
    Other(String),
}

impl Outcome {
    pub fn as_str(&self) -> &str {
        match self {
            Outcome::Agent => "agent",
            Outcome::Abandoned => "abandoned",
            Outcome::QueueTimeout => "queue-timeout",
            Outcome::QueueEmpty => "queue-empty",
            Outcome::QueueFull => "queue-full",
            Outcome::Callback => "callback",
            Outcome::Transferred => "transferred",
            Outcome::Ivr => "ivr",
            Outcome::IvrAbandoned => "ivr-abandoned",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::FeatureCode => "feature-code",
            Outcome::Interrupted => "interrupted",
            Outcome::CallbackDelivery(state) => match state {
                CallbackState::Pending => "callback-pending",
                CallbackState::Completed => "callback-completed",
                CallbackState::Failed => "callback-failed",
                CallbackState::Expired => "callback-expired",
                CallbackState::Cancelled => "callback-cancelled",
            },
            Outcome::Other(name) => name,
        }
    }

    /// The outcome a name stands for (any name: one this version does not
    /// know is kept as [`Outcome::Other`]).
    pub fn parse(name: &str) -> Outcome {
        let known = [
            Outcome::Agent,
            Outcome::Abandoned,
            Outcome::QueueTimeout,
            Outcome::QueueEmpty,
            Outcome::QueueFull,
            Outcome::Callback,
            Outcome::Transferred,
            Outcome::Ivr,
            Outcome::IvrAbandoned,
            Outcome::Refused,
            Outcome::Cancelled,
            Outcome::Failed,
            Outcome::FeatureCode,
            Outcome::Interrupted,
            Outcome::CallbackDelivery(CallbackState::Pending),
            Outcome::CallbackDelivery(CallbackState::Completed),
            Outcome::CallbackDelivery(CallbackState::Failed),
            Outcome::CallbackDelivery(CallbackState::Expired),
            Outcome::CallbackDelivery(CallbackState::Cancelled),
        ];
        known
            .into_iter()
            .find(|o| o.as_str() == name)
            .unwrap_or_else(|| Outcome::Other(name.to_owned()))
    }

    /// A callback delivery's own record (not a call of the caller's).
    pub fn is_callback_delivery(&self) -> bool {
        matches!(self, Outcome::CallbackDelivery(_))
    }

    /// The caller left a queue without an agent because of the queue.
    pub fn is_queue_exit(&self) -> bool {
        matches!(
            self,
            Outcome::QueueTimeout | Outcome::QueueEmpty | Outcome::QueueFull
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compared with its name (`cdr.outcome == "agent"`).
impl PartialEq<str> for Outcome {
    fn eq(&self, name: &str) -> bool {
        self.as_str() == name
    }
}

impl PartialEq<&str> for Outcome {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Outcome::parse(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_reads_back_as_written_and_an_unknown_name_is_kept() {
        for name in [
            "agent",
            "abandoned",
            "queue-timeout",
            "queue-empty",
            "queue-full",
            "callback",
            "transferred",
            "ivr",
            "ivr-abandoned",
            "refused",
            "cancelled",
            "failed",
            "feature-code",
            "interrupted",
            "callback-completed",
            "callback-failed",
            "callback-expired",
            "callback-cancelled",
        ] {
            let o = Outcome::parse(name);
            assert!(!matches!(o, Outcome::Other(_)), "{name} is known");
            assert_eq!(o.as_str(), name);
        }
        assert_eq!(
            Outcome::parse("voicemail"),
            Outcome::Other("voicemail".into())
        );
        assert_eq!(Outcome::parse("voicemail").as_str(), "voicemail");
        assert_eq!(
            serde_json::to_string(&Outcome::QueueTimeout).unwrap(),
            "\"queue-timeout\""
        );
    }
}
