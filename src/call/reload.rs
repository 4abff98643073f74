//! Hot reload of the flows: when a file in the flows directory changes
//! (inotify, via `notify`) or on SIGHUP, the whole set is loaded and checked
//! again. A valid set becomes the version new calls take; calls in progress
//! keep the version they started with. An invalid edit is refused with its
//! line:col errors and the running version stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::engine::load_flows;
use crate::config::Config;
use crate::flow::FlowSet;
use crate::media::PromptCache;

/// Editors write a file in several steps (truncate, write, rename): wait for
/// the burst to settle before loading.
const SETTLE: Duration = Duration::from_millis(300);

/// Watches the flows directory and SIGHUP until the sender side of `flows`
/// is the only thing left; runs for the life of the engine.
pub async fn run(
    config: Arc<Config>,
    config_path: PathBuf,
    prompts: Arc<PromptCache>,
    flows: watch::Sender<Arc<FlowSet>>,
) {
    let (tx, mut changes) = mpsc::unbounded_channel::<&'static str>();
    let fs_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() {
                let _ = fs_tx.send("file change");
            }
        }
    });
    // Kept alive for as long as this task runs.
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&config.flows_dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                warn!(dir = %config.flows_dir.display(), error = %e, "cannot watch the flows directory; reload with SIGHUP");
                None
            }
        },
        Err(e) => {
            warn!(error = %e, "cannot watch files; reload with SIGHUP");
            None
        }
    };
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send("SIGHUP").is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot listen for SIGHUP"),
    }

    while let Some(mut why) = changes.recv().await {
        // Let the burst settle; a SIGHUP in it still names the reload.
        loop {
            match tokio::time::timeout(SETTLE, changes.recv()).await {
                Ok(Some(w)) => {
                    if w == "SIGHUP" {
                        why = w;
                    }
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let version = flows.borrow().version + 1;
        let (config, path, prompts) = (config.clone(), config_path.clone(), prompts.clone());
        let loaded =
            tokio::task::spawn_blocking(move || load_flows(&config, &path, &prompts, version))
                .await;
        match loaded {
            Ok(Ok(set)) => {
                info!(
                    version,
                    flows = set.flows.len(),
                    trigger = why,
                    "flows reloaded; new calls use this version"
                );
                if flows.send(Arc::new(set)).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                let running = flows.borrow().version;
                error!(
                    trigger = why,
                    running, "flow edit refused; version {running} keeps running\n{e}"
                );
            }
            Err(e) => error!(error = %e, "flow reload failed"),
        }
    }
}
