//! Saving what a caller recorded: the WAV file under the data directory,
//! then (for a voicemail) its row in the store, before the flow moves on.

use std::path::PathBuf;

use jiff::Timestamp;
use tracing::info;

use super::CallContext;
use crate::flow::node::RecordKind;
use crate::store::Voicemail;

/// A recording in progress.
#[derive(Debug)]
pub struct Active {
    pub flow_token: u64,
    pub media_token: u64,
    pub kind: RecordKind,
    pub started: Timestamp,
}

/// Writes the file and the row; `Ok` holds the file's path.
pub async fn save(
    ctx: &CallContext,
    active: Active,
    samples: Vec<i16>,
    call_id: &str,
    caller: &str,
    flow: &str,
) -> Result<String, String> {
    let stamp = active.started.strftime("%Y%m%d-%H%M%S").to_string();
    let day = active.started.strftime("%Y-%m-%d").to_string();
    let name = format!("{stamp}-{}.wav", safe(call_id));
    let dir: PathBuf = match &active.kind {
        RecordKind::Voicemail { mailbox } => ctx
            .config
            .data_dir
            .join("voicemail")
            .join(safe(mailbox))
            .join(&day),
        RecordKind::Recording { .. } => ctx.config.data_dir.join("recordings").join(&day),
    };
    let path = dir.join(name);
    let duration_ms = samples.len() as u64 / 8;
    let file = path.clone();
    tokio::task::spawn_blocking(move || crate::media::wav::write(&file, &samples, 8000))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let shown = path.display().to_string();
    if let RecordKind::Voicemail { mailbox } = active.kind {
        let id = ctx
            .store
            .save_voicemail(Voicemail {
                created_at: active.started,
                call_id: call_id.to_owned(),
                caller: caller.to_owned(),
                mailbox: mailbox.clone(),
                flow: flow.to_owned(),
                path: shown.clone(),
                duration_ms,
            })
            .await
            .map_err(|e| e.to_string())?;
        info!(id, %mailbox, path = %shown, duration_ms, "voicemail saved");
    } else {
        info!(path = %shown, duration_ms, "recording saved");
    }
    Ok(shown)
}

/// A name safe as one path component: Call-IDs come from the network.
pub(super) fn safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}
