//! Hot reload: when a file in the flows directory changes (inotify, via
//! `notify`) the flows are loaded and checked again; on SIGHUP, `hotline
//! reload` or the API, the engine config file too, then the flows against
//! it. A valid version becomes the one new calls take ([`Running`]); calls
//! in progress keep the version they started with. Anything invalid is
//! refused with its file:line:col errors and the running version stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::load_flows;
use super::running::{keep_running, restart_only, Running};
use crate::config::Config;
use crate::media::PromptCache;

/// Editors write a file in several steps (truncate, write, rename): wait for
/// the burst to settle before loading.
const SETTLE: Duration = Duration::from_millis(300);

/// Why a reload asked for did not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The files are not valid (each problem on a line, with file:line:col);
    /// the running version stays.
    #[error("not valid; the running version stays:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Loading did not finish (its task failed).
    #[error("could not be loaded: {0}")]
    Failed(String),
    /// The engine is stopping.
    #[error("the reloader has stopped")]
    Stopped,
}

/// A reload that took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The version new calls take now.
    pub version: u64,
    /// Settings the file changes that only a restart applies (their
    /// running values stay).
    pub restart_needed: Vec<&'static str>,
}

/// What a reload gives.
pub type Reloaded = Result<Applied, ReloadError>;

/// What a reload reads again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The flows directory, checked against the running config.
    Flows,
    /// The engine config file (and its agents file) with the flows.
    All,
}

/// A reload asked for: why, what, and (when someone waits) where to say
/// how it went.
pub struct Request {
    why: &'static str,
    scope: Scope,
    reply: Option<oneshot::Sender<Reloaded>>,
}

/// Asks for reloads; cheap to clone.
#[derive(Clone)]
pub struct Reloader(mpsc::UnboundedSender<Request>);

impl Reloader {
    /// Reloads now and waits for the outcome.
    pub async fn reload(&self, why: &'static str, scope: Scope) -> Reloaded {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Request {
                why,
                scope,
                reply: Some(tx),
            })
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }

    fn ask(&self, why: &'static str, scope: Scope) -> bool {
        self.0
            .send(Request {
                why,
                scope,
                reply: None,
            })
            .is_ok()
    }
}

/// A channel for reload requests: the handle, and what [`run`] takes.
pub fn channel() -> (Reloader, mpsc::UnboundedReceiver<Request>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Reloader(tx), rx)
}

/// What the reloader works from.
pub struct Sources {
    pub config_path: PathBuf,
    /// The config file as the engine started from it (before the command
    /// line's overrides): what a restart would change is measured from it.
    pub started: Config,
    pub prompts: Arc<PromptCache>,
}

/// Watches the flows directory and SIGHUP, and answers reload requests,
/// for the life of the engine (until nobody follows `running`).
pub async fn run(
    sources: Sources,
    running: watch::Sender<Arc<Running>>,
    reloader: Reloader,
    mut changes: mpsc::UnboundedReceiver<Request>,
) {
    let flows_dir = running.borrow().config.flows_dir.clone();
    let fs = reloader.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() {
                fs.ask("file change", Scope::Flows);
            }
        }
    });
    // Kept alive for as long as this task runs.
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&flows_dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                warn!(dir = %flows_dir.display(), error = %e, "cannot watch the flows directory; reload with SIGHUP");
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
            let reloader = reloader.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if !reloader.ask("SIGHUP", Scope::All) {
                        break;
                    }
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot listen for SIGHUP"),
    }
    let sources = Arc::new(sources);

    while let Some(first) = changes.recv().await {
        let (mut why, mut scope) = (first.why, first.scope);
        let mut replies: Vec<_> = first.reply.into_iter().collect();
        // Let the burst settle; a SIGHUP or API request in it still names
        // the reload (and is answered).
        loop {
            match tokio::time::timeout(SETTLE, changes.recv()).await {
                Ok(Some(r)) => {
                    if r.why != "file change" {
                        why = r.why;
                    }
                    scope = scope.max(r.scope);
                    replies.extend(r.reply);
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let current = running.borrow().clone();
        let version = current.version() + 1;
        let loaded = {
            let sources = sources.clone();
            let current = current.clone();
            tokio::task::spawn_blocking(move || load(&sources, &current, scope, version)).await
        };
        let outcome = match loaded {
            Ok(Ok((next, restart_needed))) => {
                let what = if Arc::ptr_eq(&next.config, &current.config) {
                    "flows"
                } else {
                    "config and flows"
                };
                info!(
                    version,
                    flows = next.flows.flows.len(),
                    trigger = why,
                    "{what} reloaded; new calls use this version"
                );
                for setting in &restart_needed {
                    warn!(
                        setting,
                        "{setting} changed in the config file; it applies at the next restart (the running value stays)"
                    );
                }
                metrics::counter!("hotline_reloads_total", "outcome" => "applied").increment(1);
                if running.send(Arc::new(next)).is_err() {
                    return;
                }
                Ok(Applied {
                    version,
                    restart_needed,
                })
            }
            Ok(Err(e)) => {
                let running = current.version();
                let what = match scope {
                    Scope::Flows => "flow edit",
                    Scope::All => "config reload",
                };
                error!(
                    trigger = why,
                    running,
                    "{what} refused; version {running} keeps running\n{}",
                    e.join("\n")
                );
                metrics::counter!("hotline_reloads_total", "outcome" => "refused").increment(1);
                Err(ReloadError::Invalid(e))
            }
            Err(e) => {
                error!(error = %e, "reload failed");
                metrics::counter!("hotline_reloads_total", "outcome" => "failed").increment(1);
                Err(ReloadError::Failed(e.to_string()))
            }
        };
        for tx in replies.drain(..) {
            let _ = tx.send(outcome.clone());
        }
    }
}

/// Loads and checks the next version: the config file again (for
/// [`Scope::All`]) and the flows against it. The errors, one problem a
/// line, when anything is not valid.
fn load(
    sources: &Sources,
    current: &Running,
    scope: Scope,
    version: u64,
) -> Result<(Running, Vec<&'static str>), Vec<String>> {
    let lines = |e: &dyn std::fmt::Display| -> Vec<String> {
        e.to_string().lines().map(str::to_owned).collect()
    };
    let (config, restart_needed) = match scope {
        Scope::Flows => (current.config.clone(), Vec::new()),
        Scope::All => {
            let file = Config::load(&sources.config_path).map_err(|e| lines(&e))?;
            let restart_needed = restart_only(&sources.started, &file);
            let next = keep_running(file, &current.config);
            // Unchanged: the same version of the config (nobody reapplies it).
            let config = if next == *current.config {
                current.config.clone()
            } else {
                Arc::new(next)
            };
            (config, restart_needed)
        }
    };
    let flows = load_flows(&config, &sources.config_path, &sources.prompts, version)
        .map_err(|e| lines(&e))?;
    Ok((
        Running {
            config,
            flows: Arc::new(flows),
        },
        restart_needed,
    ))
}
