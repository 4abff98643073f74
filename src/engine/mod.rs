//! The composition root: starts prompts, flows, the store, media, SIP, the
//! ACD, callbacks and the API; hands each incoming call to its own task; and
//! drains calls on shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

/// Dispositions of calls (from the API).
pub use crate::call::disposition::{self, Disposed, DispositionError};
/// The calls in progress (list, hang up): the one call item the API may use.
pub use crate::call::live::{CallPhase, LiveCall, LiveCalls as Calls};
/// Where a call's recording stands (pause and resume from the API).
pub use crate::call::pci::RecordingStatus;
use crate::call::{self, CallContext};
use crate::config::Config;
use crate::loader::running::{Live, Running};
use crate::loader::{load_flows, load_prompts, reload, LoadError};
use crate::media::MediaEngine;
use crate::sip::{self, SipError};
use crate::store::{StoreError, StoreHandle};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Sip(#[from] SipError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Media(#[from] std::io::Error),
    #[error("http.tls: {0}")]
    HttpTls(String),
    #[error("cannot listen for the API on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Counts live call tasks; the guard decrements when a task ends, however it ends.
struct CallGuard(Arc<AtomicUsize>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Agents' state changes go into the store (for occupancy). Every agent
/// starts logged out: a state from before a stop or crash ends here.
async fn keep_agent_states(config: &Config, store: &StoreHandle, events: &crate::events::EventBus) {
    let now = jiff::Timestamp::now();
    for a in &config.agents {
        let row = crate::store::AgentStateRow {
            agent: a.id.clone(),
            state: "logged-out".into(),
            at: now,
        };
        if let Err(e) = store.save_agent_state(row).await {
            warn!(agent = %a.id, error = %e, "agent state not kept");
        }
    }
    let mut rx = events.subscribe();
    let store = store.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if let crate::events::Event::AgentState { agent, state, .. } = &*ev {
                        let row = crate::store::AgentStateRow {
                            agent: agent.clone(),
                            state: state.clone(),
                            at: jiff::Timestamp::now(),
                        };
                        if let Err(e) = store.save_agent_state(row).await {
                            warn!(%agent, error = %e, "agent state not kept");
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "agent states missed by the store");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Each new version of the config goes to those that follow the latest:
/// the SIP core (agents' secrets, trunks, limits) and the ACD (agents,
/// queues, shifts). `started` is the version they were built from (a
/// reload during start-up is applied too).
async fn follow_config(
    mut live: Live,
    started: Arc<Config>,
    sip: sip::Dialer,
    acd: crate::acd::actor::AcdHandle,
) {
    let mut applied = started;
    loop {
        let config = live.borrow_and_update().config.clone();
        // Unchanged: a reload of the flows alone.
        if !Arc::ptr_eq(&config, &applied) {
            applied = config.clone();
            crate::telemetry::zero_series(&config);
            sip.reconfigure(config.clone()).await;
            acd.reconfigure(config).await;
        }
        if live.changed().await.is_err() {
            return;
        }
    }
}

/// Pings the service manager's watchdog while the SIP core and the ACD
/// both answer within the interval: a loop that hangs stops the pings, and
/// systemd restarts the engine (`WatchdogSec`).
async fn watchdog(
    notifier: crate::service::Notifier,
    every: Duration,
    sip: sip::Dialer,
    acd: crate::acd::actor::AcdHandle,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let checks = async { sip.alive().await && acd.view().await.is_some() };
        match tokio::time::timeout(every, checks).await {
            Ok(true) => notifier.notify("WATCHDOG=1"),
            Ok(false) => return, // stopping
            Err(_) => warn!(
                waited = ?every,
                "the SIP core or the ACD did not answer: the watchdog is not told we are alive"
            ),
        }
    }
}

/// A registered contact as the store keeps it (wall-clock expiry).
fn to_registered(b: &crate::sip::registrar::Binding) -> crate::store::Registered {
    let left = b
        .expires_at
        .saturating_duration_since(std::time::Instant::now());
    let left = jiff::SignedDuration::try_from(left).unwrap_or(jiff::SignedDuration::ZERO);
    crate::store::Registered {
        contact: b.contact.clone(),
        source: b.source.to_string(),
        expires_at: jiff::Timestamp::now()
            .checked_add(left)
            .unwrap_or_else(|_| jiff::Timestamp::now()),
        call_id: b.call_id.clone(),
        cseq: b.cseq,
    }
}

/// The contacts kept before the last stop or crash that have not expired.
async fn restored_registrations(store: &StoreHandle) -> Vec<sip::Registration> {
    let rows = match store.registrations().await {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "kept registrations not read; agents must register again");
            return Vec::new();
        }
    };
    let now = jiff::Timestamp::now();
    let mut by_agent: std::collections::BTreeMap<String, Vec<crate::sip::registrar::Binding>> =
        Default::default();
    for (agent, r) in rows {
        let Ok(source) = r.source.parse() else {
            continue;
        };
        let Ok(left) = std::time::Duration::try_from(r.expires_at.duration_since(now)) else {
            continue; // expired
        };
        by_agent
            .entry(agent)
            .or_default()
            .push(crate::sip::registrar::Binding {
                contact: r.contact,
                source,
                transport: crate::sip::Transport::Udp,
                expires_at: std::time::Instant::now() + left,
                call_id: r.call_id,
                cseq: r.cseq,
            });
    }
    by_agent
        .into_iter()
        .map(|(agent, contacts)| sip::Registration { agent, contacts })
        .collect()
}

/// Runs the engine until `shutdown` completes, then drains: new calls get
/// `503`, calls in progress may finish for the drain timeout, then the rest
/// are hung up.
pub async fn run(
    config: Arc<Config>,
    config_path: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EngineError> {
    if crate::telemetry::install().is_none() {
        warn!("metrics recorder not installed (another one was); /metrics will be empty");
    }
    crate::telemetry::zero_series(&config);
    let prompts = Arc::new(load_prompts(&config)?);
    let flows = load_flows(&config, config_path, &prompts, 1)?;
    info!(flows = flows.flows.len(), "flows loaded");
    let (running_tx, live) = watch::channel(Arc::new(Running {
        config: config.clone(),
        flows: Arc::new(flows),
    }));
    let (reload_handle, reload_requests) = reload::channel();
    let sources = reload::Sources {
        config_path: config_path.to_owned(),
        // What a restart would change is measured from the file as it was
        // (the command line's overrides are the running values).
        started: Config::load(config_path).unwrap_or_else(|_| (*config).clone()),
        prompts: prompts.clone(),
    };
    let reloader = tokio::spawn(reload::run(
        sources,
        running_tx,
        reload_handle.clone(),
        reload_requests,
    ));
    let admission = Arc::new(crate::overload::Admission::default());
    tokio::spawn(crate::overload::watch_descriptors(admission.clone()));
    let store = StoreHandle::open_sqlite(&config.data_dir, admission.clone())?;
    tokio::spawn(crate::retention::run(live.clone(), store.clone()));
    let media = MediaEngine::start(
        &config.rtp,
        config.webrtc.as_ref(),
        config.calls.media_timeout,
    )?;
    let restored = restored_registrations(&store).await;
    let mut sip = sip::start(config.clone(), restored, admission.clone()).await?;
    let events = crate::events::EventBus::new();
    keep_agent_states(&config, &store, &events).await;
    let acd = crate::acd::actor::start(
        crate::acd::Acd::new(&config),
        crate::acd::actor::shifts(&config),
        events.clone(),
    );
    tokio::spawn(follow_config(
        live.clone(),
        config.clone(),
        sip.dialer.clone(),
        acd.clone(),
    ));
    // Agents' registrations go to the ACD.
    let mut registrations = sip.registrations;
    let acd_regs = acd.clone();
    let regs_store = store.clone();
    tokio::spawn(async move {
        while let Some(r) = registrations.recv().await {
            // Kept, so a restart finds the agents where their phones are.
            // Only contacts over UDP: one registered over a TCP connection
            // is reachable only over it, and none survives a restart.
            let kept = r
                .contacts
                .iter()
                .filter(|b| b.transport == crate::sip::Transport::Udp)
                .map(to_registered)
                .collect();
            if let Err(e) = regs_store.save_registration(r.agent.clone(), kept).await {
                warn!(agent = %r.agent, error = %e, "registration not kept in the store");
            }
            let contacts: Vec<String> = r
                .contacts
                .iter()
                .map(|b| format!("{} via {} {}", b.contact, b.transport.as_str(), b.source))
                .collect();
            info!(agent = %r.agent, contacts = ?contacts, "agent contacts");
            acd_regs
                .send(crate::acd::Input::Contacts {
                    agent: r.agent,
                    contacts: r
                        .contacts
                        .iter()
                        .map(|b| crate::acd::Contact {
                            uri: b.contact.clone(),
                            source: b.source,
                            tcp: b.transport.is_reliable(),
                            tls: b.transport == crate::sip::Transport::Tls,
                            ws: b.transport == crate::sip::Transport::Ws,
                        })
                        .collect(),
                })
                .await;
        }
    });
    let (hangup_tx, hangup_rx) = watch::channel(false);
    let (callbacks, callback_inbox) = crate::callback::channel();
    let ctx = CallContext {
        config: config.clone(),
        prompts,
        media: media.clone(),
        flows: live.borrow().flows.clone(),
        http: reqwest::Client::new(),
        store,
        dialer: sip.dialer.clone(),
        acd,
        events,
        calls: Default::default(),
        hangup_all: hangup_rx,
        callbacks: callbacks.clone(),
        phones: Default::default(),
    };
    let callback_ctx = crate::callback::Context {
        config: ctx.config.clone(),
        live: live.clone(),
        prompts: ctx.prompts.clone(),
        media: ctx.media.clone(),
        store: ctx.store.clone(),
        dialer: ctx.dialer.clone(),
        acd: ctx.acd.clone(),
        events: ctx.events.clone(),
        phones: ctx.phones.clone(),
    };
    crate::callback::start(callback_ctx, &callbacks, callback_inbox).await;
    // HTTPS (`http.tls`): a certificate that cannot be read stops the start.
    let http_tls = match &config.http.tls {
        Some(t) => {
            let acceptor = crate::tls::Acceptor::load("http", &t.cert, &t.key)
                .map_err(EngineError::HttpTls)?;
            crate::tls::reload_on_sighup(acceptor.clone());
            Some(acceptor)
        }
        None => None,
    };
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| EngineError::Http {
            addr: config.http.listen,
            source,
        })?;
    let http_addr = http.local_addr().ok();
    if config.http.tokens.is_empty() {
        warn!("no API tokens configured (http.tokens): every API request is refused");
    }
    if config.webrtc.is_some() && http_tls.is_none() && !config.http.listen.ip().is_loopback() {
        warn!(
            listen = %config.http.listen,
            "no http.tls: the agent desktop (/agent) answers only on this machine; browsers elsewhere need HTTPS for a microphone"
        );
    }
    tokio::spawn(crate::api::serve(
        http,
        Arc::new(crate::api::ApiState {
            running: live.clone(),
            media: media.stats.clone(),
            store: ctx.store.clone(),
            reloader: reload_handle,
            prompts: ctx.prompts.clone(),
            config_path: config_path.to_owned(),
            acd: ctx.acd.clone(),
            events: ctx.events.clone(),
            calls: ctx.calls.clone(),
            callbacks: ctx.callbacks.clone(),
            phones: ctx.phones.clone(),
            sessions: Default::default(),
            sip_websockets: sip.websockets.clone(),
        }),
        http_tls.clone(),
    ));
    let active = Arc::new(AtomicUsize::new(0));
    info!(
        udp = ?sip.udp_addrs,
        tcp = ?sip.tcp_addrs,
        tls = ?sip.tls_addr,
        rtp = %config.rtp.ports,
        http = ?http_addr,
        https = http_tls.is_some(),
        "hotline ready"
    );
    let notifier = crate::service::Notifier::from_env();
    notifier.notify("READY=1\nSTATUS=answering calls");
    if let Some(every) = crate::service::watchdog_interval() {
        tokio::spawn(watchdog(
            notifier.clone(),
            every,
            sip.dialer.clone(),
            ctx.acd.clone(),
        ));
    }

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            call = sip.incoming.recv() => {
                let Some(call) = call else { break };
                active.fetch_add(1, Ordering::SeqCst);
                let guard = CallGuard(active.clone());
                // The call keeps the version current as it starts.
                let mut ctx = ctx.clone();
                let version = live.borrow().clone();
                ctx.config = version.config.clone();
                ctx.flows = version.flows.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    call::run(ctx, call).await;
                });
            }
            _ = &mut shutdown => break,
        }
    }

    notifier.notify("STOPPING=1\nSTATUS=draining calls");
    let drain = live.borrow().config.shutdown.drain_timeout;
    info!(calls = active.load(Ordering::SeqCst), timeout = ?drain, "draining: new calls are refused");
    sip.status.start_draining();
    // Calls that arrive while draining get 503 from the SIP core; the ones
    // already handed over are dropped here, which ends their dialogs.
    let deadline = tokio::time::Instant::now() + drain;
    while active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        while let Ok(call) = sip.incoming.try_recv() {
            call.dialog.respond(503).await;
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
    // Every call's record is committed before the process goes.
    let unwritten = ctx.store.flush(Duration::from_secs(10)).await;
    if unwritten > 0 {
        warn!(records = unwritten, "call records still unwritten at exit");
    }
    reloader.abort();
    info!("stopped");
    Ok(())
}
