//! Hot reload of the flows: when a file in the flows directory changes
//! (inotify, via `notify`) or on SIGHUP, the whole set is loaded and checked
//! again. A valid set becomes the version new calls take; calls in progress
//! keep the version they started with. An invalid edit is refused with its
//! line:col errors and the running version stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::load_flows;
use crate::config::Config;
use crate::flow::FlowSet;
use crate::media::PromptCache;

/// Editors write a file in several steps (truncate, write, rename): wait for
/// the burst to settle before loading.
const SETTLE: Duration = Duration::from_millis(300);

/// Why a reload asked for did not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The files are not valid (each problem on a line, with file:line:col);
    /// the running version stays.
    #[error("the flows are not valid; the running version stays:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Loading did not finish (its task failed).
    #[error("the flows could not be loaded: {0}")]
    Failed(String),
    /// The engine is stopping.
    #[error("the reloader has stopped")]
    Stopped,
}

/// What a reload gives: the new version.
pub type Reloaded = Result<u64, ReloadError>;

/// A reload asked for, and (from the API) where to say how it went.
pub type Request = (&'static str, Option<oneshot::Sender<Reloaded>>);

/// Asks for reloads; cheap to clone.
#[derive(Clone)]
pub struct Reloader(mpsc::UnboundedSender<Request>);

impl Reloader {
    /// Reloads now and waits for the outcome.
    pub async fn reload(&self, why: &'static str) -> Reloaded {
        let (tx, rx) = oneshot::channel();
        self.0
            .send((why, Some(tx)))
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// A channel for reload requests: the handle, and what [`run`] takes.
pub fn channel() -> (Reloader, mpsc::UnboundedReceiver<Request>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Reloader(tx), rx)
}

/// Watches the flows directory and SIGHUP until the sender side of `flows`
/// is the only thing left; runs for the life of the engine.
pub async fn run(
    config: Arc<Config>,
    config_path: PathBuf,
    prompts: Arc<PromptCache>,
    flows: watch::Sender<Arc<FlowSet>>,
    reloader: Reloader,
    mut changes: mpsc::UnboundedReceiver<Request>,
) {
    let tx = reloader.0;
    let fs_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() {
                let _ = fs_tx.send(("file change", None));
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
                    if tx.send(("SIGHUP", None)).is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot listen for SIGHUP"),
    }

    while let Some((mut why, reply)) = changes.recv().await {
        let mut replies: Vec<_> = reply.into_iter().collect();
        // Let the burst settle; a SIGHUP or API request in it still names
        // the reload (and is answered).
        loop {
            match tokio::time::timeout(SETTLE, changes.recv()).await {
                Ok(Some((w, reply))) => {
                    if w != "file change" {
                        why = w;
                    }
                    replies.extend(reply);
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let answer = |replies: &mut Vec<oneshot::Sender<Reloaded>>, r: Reloaded| {
            for tx in replies.drain(..) {
                let _ = tx.send(r.clone());
            }
        };
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
                answer(&mut replies, Ok(version));
            }
            Ok(Err(e)) => {
                let running = flows.borrow().version;
                error!(
                    trigger = why,
                    running, "flow edit refused; version {running} keeps running\n{e}"
                );
                let lines = e.to_string().lines().map(str::to_owned).collect();
                answer(&mut replies, Err(ReloadError::Invalid(lines)));
            }
            Err(e) => {
                error!(error = %e, "flow reload failed");
                answer(&mut replies, Err(ReloadError::Failed(e.to_string())));
            }
        }
    }
}
