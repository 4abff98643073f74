//! Starting the engine: prompts, media, SIP; handing each incoming call to
//! its own task; and draining calls on shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::{demo, CallContext};
use crate::config::Config;
use crate::media::prompt::PromptError;
use crate::media::{MediaEngine, PromptCache};
use crate::sip::{self, SipError};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Sip(#[from] SipError),
    #[error(transparent)]
    Prompts(#[from] PromptError),
    #[error("the prompt '{name}' is missing from {dir}")]
    MissingPrompt { name: String, dir: String },
}

/// Counts live call tasks; the guard decrements when a task ends, however it ends.
struct CallGuard(Arc<AtomicUsize>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Loads every prompt and checks that those the line needs are there.
pub fn load_prompts(config: &Config) -> Result<PromptCache, EngineError> {
    let prompts = PromptCache::load_dir(&config.sounds_dir)?;
    let mut needed = vec![config.demo.welcome.clone(), "goodbye".to_owned()];
    needed.extend("0123456789*#".chars().map(demo::prompt_for));
    for name in needed {
        if prompts.get(&name).is_none() {
            return Err(EngineError::MissingPrompt {
                name,
                dir: config.sounds_dir.display().to_string(),
            });
        }
    }
    Ok(prompts)
}

/// Runs the engine until `shutdown` completes, then drains: new calls get
/// `503`, calls in progress may finish for the drain timeout, then the rest
/// are hung up.
pub async fn run(
    config: Arc<Config>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EngineError> {
    let prompts = Arc::new(load_prompts(&config)?);
    let media = MediaEngine::start(&config.rtp);
    let mut sip = sip::start(config.clone()).await?;
    let (hangup_tx, hangup_rx) = watch::channel(false);
    let ctx = CallContext {
        config: config.clone(),
        prompts,
        media: media.clone(),
        hangup_all: hangup_rx,
    };
    let active = Arc::new(AtomicUsize::new(0));
    info!(
        udp = ?sip.udp_addr,
        tcp = ?sip.tcp_addr,
        rtp = %config.rtp.ports,
        "hotline ready"
    );

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            call = sip.incoming.recv() => {
                let Some(call) = call else { break };
                active.fetch_add(1, Ordering::SeqCst);
                let guard = CallGuard(active.clone());
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    super::run(ctx, call).await;
                });
            }
            _ = &mut shutdown => break,
        }
    }

    let drain = config.shutdown.drain_timeout;
    info!(calls = active.load(Ordering::SeqCst), timeout = ?drain, "draining: new calls are refused");
    sip.status.start_draining();
    // Calls that arrive while draining get 503 from the SIP core; the ones
    // already handed over are dropped here, which ends their dialogs.
    let deadline = tokio::time::Instant::now() + drain;
    while active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        while let Ok(call) = sip.incoming.try_recv() {
            call.dialog.respond(503);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = active.load(Ordering::SeqCst);
    if left > 0 {
        info!(
            calls = left,
            "drain timeout: hanging up the remaining calls"
        );
        let _ = hangup_tx.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while (active.load(Ordering::SeqCst) > 0 || sip.status.dialogs() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let left = active.load(Ordering::SeqCst);
    if left > 0 {
        warn!(calls = left, "calls still open at exit");
    }
    info!("stopped");
    Ok(())
}
