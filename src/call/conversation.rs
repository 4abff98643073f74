//! Recording a bridged conversation: the media clock hands out stereo audio
//! (caller left, agent right) a second at a time, and a task of its own
//! streams it into a WAV file, so a long call never sits in memory.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{warn, Instrument};

use crate::media::wav::StreamWriter;
use crate::media::MediaChannel;

/// A conversation being recorded.
pub struct Conversation {
    /// The media clock's token for its audio.
    pub token: u64,
    chunks: mpsc::UnboundedSender<Vec<i16>>,
    done: oneshot::Receiver<Result<(String, Duration), String>>,
}

/// Where a call's `n`th conversation recording goes.
pub fn path_for(data_dir: &std::path::Path, call_id: &str, n: usize) -> PathBuf {
    let now = jiff::Timestamp::now();
    data_dir
        .join("recordings")
        .join(now.strftime("%Y-%m-%d").to_string())
        .join(format!(
            "{}-{}-{n}.wav",
            now.strftime("%Y%m%d-%H%M%S"),
            super::recording::safe(call_id)
        ))
}

/// Starts recording what `media` and its bridged peer say, into `path`.
pub async fn start(media: &MediaChannel, path: PathBuf, token: u64) -> Conversation {
    media.record_conversation(token).await;
    let (chunks, mut rx) = mpsc::unbounded_channel::<Vec<i16>>();
    let (done_tx, done) = oneshot::channel();
    tokio::spawn(
        async move {
            let result = async {
                let file = path.clone();
                let mut w =
                    tokio::task::spawn_blocking(move || StreamWriter::create(&file, 2, 8000))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                while let Some(chunk) = rx.recv().await {
                    w = tokio::task::spawn_blocking(move || w.append(&chunk).map(|_| w))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                }
                let duration = w.duration();
                let written = tokio::task::spawn_blocking(move || w.finish())
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot finish {}: {e}", path.display()))?;
                Ok((written.display().to_string(), duration))
            }
            .await;
            if let Err(e) = &result {
                warn!(error = %e, "conversation recording failed");
            }
            let _ = done_tx.send(result);
        }
        .in_current_span(),
    );
    Conversation {
        token,
        chunks,
        done,
    }
}

impl Conversation {
    /// More audio for the file.
    pub fn feed(&self, samples: Vec<i16>) {
        let _ = self.chunks.send(samples);
    }

    /// Closes the file once everything fed is written: its path and length.
    pub async fn finish(self) -> Result<(String, Duration), String> {
        drop(self.chunks);
        self.done
            .await
            .map_err(|_| "the recording's writer stopped".to_owned())?
    }
}
