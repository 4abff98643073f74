//! Pausing the conversation's recording while card data is spoken or
//! keyed (PCI DSS): from the operations API, from the agent's feature
//! code, and while a flow's `sensitive` collect runs. The recording holds
//! silence for the paused time (the driver writes zeros in place of the
//! audio, so the file's timeline stays whole) and the record lists each
//! pause: when, until when, and by whom.

use jiff::Timestamp;
use tracing::info;

use super::io::MediaDo;
use super::state::CallState;

/// The pauses of one call's recordings.
#[derive(Debug, Default)]
pub struct Pauses {
    /// The pause going on: since when, by whom.
    open: Option<(Timestamp, String)>,
    done: Vec<(Timestamp, Timestamp, String)>,
}

impl Pauses {
    pub fn is_paused(&self) -> bool {
        self.open.is_some()
    }

    /// Pauses at `at`; `false` when already paused.
    pub fn pause(&mut self, at: Timestamp, by: &str) -> bool {
        if self.open.is_some() {
            return false;
        }
        self.open = Some((at, by.to_owned()));
        true
    }

    /// Ends the pause at `at`; `false` when not paused.
    pub fn resume(&mut self, at: Timestamp) -> bool {
        let Some((from, by)) = self.open.take() else {
            return false;
        };
        self.done.push((from, at, by));
        true
    }

    /// Every pause, as the record keeps it (one still open ends at `end`).
    pub fn to_json(&self, end: Timestamp) -> Option<serde_json::Value> {
        let open = self.open.iter().map(|(from, by)| (*from, end, by.clone()));
        let all: Vec<serde_json::Value> = self
            .done
            .iter()
            .cloned()
            .chain(open)
            .map(|(from, to, by)| {
                serde_json::json!({
                    "from": from.to_string(),
                    "to": to.to_string(),
                    "by": by,
                })
            })
            .collect();
        (!all.is_empty()).then_some(serde_json::Value::Array(all))
    }
}

/// Where a call's recording stands, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingStatus {
    /// Nothing of this call is being recorded now.
    NotRecording,
    Recording,
    Paused,
}

impl RecordingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::NotRecording => "not-recording",
            RecordingStatus::Recording => "recording",
            RecordingStatus::Paused => "paused",
        }
    }
}

impl CallState {
    /// Where the recording stands now.
    pub fn recording_status(&self) -> RecordingStatus {
        match (self.conversation.is_some(), self.pauses.is_paused()) {
            (false, _) => RecordingStatus::NotRecording,
            (true, false) => RecordingStatus::Recording,
            (true, true) => RecordingStatus::Paused,
        }
    }

    /// Pauses (or resumes) the conversation's recording, `by` whom (for
    /// the record). Nothing happens when nothing is recorded, or it is
    /// already so; a pause a `sensitive` collect holds is not lifted by
    /// anyone else.
    pub(super) fn pause_recording(&mut self, pause: bool, by: &str) {
        if self.conversation.is_none() {
            return;
        }
        let at = self.wall();
        if pause {
            if self.pauses.pause(at, by) {
                info!(%by, "recording paused");
                self.media(MediaDo::PauseConversation(true));
            }
        } else if self.sensitive_input && !by.starts_with("flow:") {
            info!(%by, "recording stays paused while the caller keys sensitive data");
        } else if self.pauses.resume(at) {
            info!(%by, "recording resumed");
            self.media(MediaDo::PauseConversation(false));
        }
    }

    /// The recording stops (its feature code, or the call's end): a pause
    /// going on ends with it.
    pub(super) fn recording_stopped(&mut self) {
        let at = self.wall();
        self.pauses.resume(at);
    }

    /// The flow entered a node: a `sensitive` collect pauses the recording
    /// and hides the keys from the log until the flow leaves it.
    pub(super) fn sensitive_node(&mut self, sensitive: bool, node: &str) {
        if sensitive == self.sensitive_input {
            return;
        }
        self.sensitive_input = sensitive;
        self.pause_recording(sensitive, &format!("flow:{node}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_listed_in_order_and_one_still_open_ends_with_the_call() {
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let mut p = Pauses::default();
        assert!(p.to_json(at(0)).is_none());
        assert!(p.pause(at(10), "api:ops"));
        assert!(!p.pause(at(11), "agent:1001"), "already paused");
        assert!(p.resume(at(20)));
        assert!(!p.resume(at(21)), "not paused");
        assert!(p.pause(at(30), "agent:1001"));
        let json = p.to_json(at(40)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                { "from": at(10).to_string(), "to": at(20).to_string(), "by": "api:ops" },
                { "from": at(30).to_string(), "to": at(40).to_string(), "by": "agent:1001" },
            ])
        );
    }
}
