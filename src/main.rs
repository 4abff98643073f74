//! The `hotline` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hotline::config::{Config, PortRange};
use hotline::flow;

#[derive(Parser)]
#[command(name = "hotline", version, about = "SIP IVR and call-center engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer calls.
    Run(RunArgs),
    /// Check the configuration and the flows; print each problem as
    /// path:line:col and exit 1 if there is an error.
    Validate {
        /// The engine configuration.
        #[arg(long, default_value = "hotline.yaml")]
        config: PathBuf,
        /// Flow files or directories to check (default: every flow in the
        /// config's flows-dir). The flows-dir is always loaded with them, so
        /// `goto` and routes resolve.
        paths: Vec<PathBuf>,
    },
    /// Walk a flow without a network, on a virtual clock, printing each step.
    Simulate(SimulateArgs),
    /// Print the contact-center figures (service level, ASA, AHT, abandon
    /// rate, …) from the call records.
    Report(ReportArgs),
    /// Have the running engine load its config and flows again (as SIGHUP
    /// does) and print how it went: the new version and the settings that
    /// wait for a restart, or every error at file:line:col (exit 1; the
    /// running version stays). It asks the engine's API with an admin
    /// token: HOTLINE_TOKEN, or the config's first admin token.
    Reload {
        /// The engine configuration (its API address and tokens).
        #[arg(long, default_value = "hotline.yaml")]
        config: PathBuf,
        /// The engine's API (default: the config's http.listen).
        #[arg(long, value_name = "IP:PORT")]
        api: Option<SocketAddr>,
    },
    /// Copy the store (call records, callbacks, agents' states, surveys,
    /// voicemail index) to a file while the engine runs: one consistent
    /// snapshot, checked before it is kept.
    Backup {
        /// The engine configuration (its data directory).
        #[arg(long, default_value = "hotline.yaml")]
        config: PathBuf,
        /// The file to write (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The engine configuration (its data directory and queues' targets).
    #[arg(long, default_value = "hotline.yaml")]
    config: PathBuf,
    /// From: RFC 3339, or a duration ago (90m, 24h, 7d).
    #[arg(long, default_value = "24h")]
    since: String,
    /// Until (excluded): RFC 3339, or a duration ago; default now.
    #[arg(long)]
    until: Option<String>,
    /// Group by all, queue, agent or interval.
    #[arg(long, default_value = "queue")]
    by: String,
    /// The length of an interval with --by interval (15m, 1h, 1d).
    #[arg(long, default_value = "1h")]
    interval: String,
    /// Only calls of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only calls taken by this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Abandons within this wait count as short.
    #[arg(long, default_value = "5s")]
    short_abandon: String,
    /// table, csv or json.
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// The flow: its name, or a flow file (checked with the flows directory).
    flow: String,
    /// The engine configuration (schedules, queues, transfers, sounds).
    #[arg(long, default_value = "hotline.yaml")]
    config: PathBuf,
    /// Keys the caller presses, one group each time the flow waits:
    /// "2 1234#" answers a menu with 2, then enters 1234#. Without it, keys
    /// are read from the terminal.
    #[arg(long)]
    digits: Option<String>,
    /// When the call happens (RFC 3339, e.g. 2026-12-25T10:00:00-05:00); default now.
    #[arg(long)]
    at: Option<jiff::Timestamp>,
    /// A variable the call starts with, e.g. --var caller=+15551234567.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// Answer the webhook node NAME with the JSON in FILE instead of calling it.
    #[arg(long = "mock-webhook", value_name = "NAME=FILE.json")]
    mocks: Vec<String>,
    /// Play the prompts on this machine's sound device, in real time
    /// (needs a build with `--features local-audio`).
    #[arg(long)]
    audio: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The engine configuration.
    #[arg(long, default_value = "hotline.yaml")]
    config: PathBuf,
    /// SIP address for UDP and TCP (overrides sip.listen); twice for dual
    /// stack, an IPv4 and an IPv6 address.
    #[arg(long, value_name = "IP:PORT")]
    sip_listen: Vec<SocketAddr>,
    /// HTTP address (overrides http.listen).
    #[arg(long, value_name = "IP:PORT")]
    http_listen: Option<SocketAddr>,
    /// RTP port range (overrides rtp.ports).
    #[arg(long, value_name = "LOW-HIGH")]
    rtp_ports: Option<PortRange>,
    /// Data directory (overrides data-dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The engine's log format is in its config (read again, with errors
    // reported, once the log is set up).
    let json = match &cli.command {
        Command::Run(args) => Config::load(&args.config)
            .is_ok_and(|c| c.log.format == hotline::config::LogFormat::Json),
        _ => false,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOTLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if json {
        log.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        log.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Validate { config, paths } => validate(&config, &paths),
        Command::Simulate(args) => simulate(args),
        Command::Report(args) => report(args),
        Command::Backup { config, to } => backup(&config, &to),
        Command::Reload { config, api } => reload(&config, api),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // What the operator must fix, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn reload(config_path: &Path, api: Option<SocketAddr>) -> anyhow::Result<()> {
    // A file that does not load is refused by the engine too: say why
    // here, without asking it.
    let config = Config::load(config_path)
        .map_err(|e| anyhow::anyhow!("{e}\nnot reloaded: the running engine keeps its version"))?;
    let token = match std::env::var("HOTLINE_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => config
            .http
            .tokens
            .iter()
            .find(|t| t.role == hotline::config::Role::Admin)
            .map(|t| t.token.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "an admin token is needed: set HOTLINE_TOKEN, add one with role admin to http.tokens, or send the engine SIGHUP"
                )
            })?,
    };
    let mut addr = api.unwrap_or(config.http.listen);
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}/api/config/reload");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body): (u16, serde_json::Value) = runtime.block_on(async {
        let resp = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&token)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .with_context(|| format!("cannot reach the engine at {addr}: is it running?"))?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        anyhow::Ok((status, body))
    })?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    match status {
        200 => {
            println!("reloaded: version {} runs for new calls", body["version"]);
            for s in body["restart_needed"].as_array().into_iter().flatten() {
                println!(
                    "{}: changed in the file; applies at the next restart (the running value stays)",
                    text(s)
                );
            }
            Ok(())
        }
        422 => {
            for d in body["diagnostics"].as_array().into_iter().flatten() {
                eprintln!("{}", text(d));
            }
            anyhow::bail!(
                "{}; version {} keeps running",
                text(&body["error"]),
                body["running"]
            )
        }
        _ => anyhow::bail!(
            "the engine answered {status}: {}",
            body.get("error").map(text).unwrap_or_default()
        ),
    }
}

fn backup(config_path: &Path, to: &Path) -> anyhow::Result<()> {
    // The copy is the callers' data: never readable by others, even
    // before it is finished.
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let config = Config::load(config_path)?;
    let b = hotline::store::backup(&config.data_dir, to)?;
    println!(
        "{}: {} call records, {} callbacks (integrity checked)",
        to.display(),
        b.records,
        b.callbacks
    );
    Ok(())
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    use hotline::kpi;
    use hotline::store::Store as _;
    let config = Config::load(&args.config)?;
    let now = jiff::Timestamp::now();
    let since = kpi::when(&args.since, now)?;
    let until = match &args.until {
        Some(u) => kpi::when(u, now)?,
        None => now,
    };
    let interval = hotline::config::parse_duration(&args.interval)
        .or_else(
            |e| match args.interval.strip_suffix('d').map(str::parse::<u64>) {
                Some(Ok(d)) => Ok(std::time::Duration::from_secs(d * 86_400)),
                _ => Err(e),
            },
        )
        .map_err(anyhow::Error::msg)?;
    let by = kpi::group_by(&args.by, interval)?;
    let short = hotline::config::parse_duration(&args.short_abandon).map_err(anyhow::Error::msg)?;
    let mut store = hotline::store::SqliteStore::open(&config.data_dir)
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let mut cdrs = store.cdrs_between(since, until)?;
    cdrs.retain(|c| {
        args.queue
            .as_ref()
            .is_none_or(|q| c.queue.as_ref() == Some(q))
            && args
                .agent
                .as_ref()
                .is_none_or(|a| c.agent.as_ref() == Some(a))
    });
    let surveys = store.survey_answers()?;
    let states = store.agent_states(since, until)?;
    let src = kpi::Sources {
        cdrs: &cdrs,
        surveys: &surveys,
        states: &states,
        since,
        until,
    };
    let rows = kpi::report_for(&config, &src, by, short);
    match args.format.as_str() {
        "table" => {
            println!("calls from {since} to {until}");
            print!("{}", kpi::table(&rows));
            print!("{}", kpi::poor_calls_text(&cdrs));
        }
        "csv" => print!("{}", kpi::csv(&rows)),
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&kpi::json(since, until, &args.by, &rows, &cdrs))?
        ),
        other => anyhow::bail!("`{other}`: the format is table, csv or json"),
    }
    Ok(())
}

fn validate(config_path: &Path, paths: &[PathBuf]) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let prompts = hotline::loader::load_prompts(&config)?;
    hotline::loader::check_queue_prompts(&config, config_path, &prompts)?;
    let names = prompts.names().map(str::to_owned).collect();
    let catalog = flow::set::catalog(&config, names);
    // The flows directory, plus any file named on the command line.
    let mut files = flow::set::flow_files(&config.flows_dir)
        .with_context(|| format!("cannot read {}", config.flows_dir.display()))?;
    for p in paths {
        let more = if p.is_dir() {
            flow::set::flow_files(p).with_context(|| format!("cannot read {}", p.display()))?
        } else {
            vec![p.clone()]
        };
        for f in more {
            let same = |a: &PathBuf| {
                a == &f
                    || (a.canonicalize().ok().is_some()
                        && a.canonicalize().ok() == f.canonicalize().ok())
            };
            if !files.iter().any(same) {
                files.push(f);
            }
        }
    }
    let loaded = flow::set::load_files(&config, config_path, &catalog, &files, 1);
    for d in &loaded.diagnostics {
        println!("{d}");
    }
    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = loaded.diagnostics.len() - errors;
    match loaded.set {
        Some(set) => {
            hotline::loader::check_queue_flows(&config, config_path, &set)?;
            let nodes: usize = set.flows.iter().map(|f| f.nodes.len()).sum();
            println!(
                "{}: ok ({} flows, {nodes} nodes, {} prompts, {warnings} warnings)",
                config_path.display(),
                set.flows.len(),
                prompts.len(),
            );
            Ok(())
        }
        None => anyhow::bail!("{errors} errors, {warnings} warnings"),
    }
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use hotline::call::simulate::{Keys, Simulation};
    let config = Config::load(&args.config)?;
    let prompts = hotline::loader::load_prompts(&config)?;
    let names = prompts.names().map(str::to_owned).collect();
    let catalog = flow::set::catalog(&config, names);
    let mut files = flow::set::flow_files(&config.flows_dir)
        .with_context(|| format!("cannot read {}", config.flows_dir.display()))?;
    let as_path = PathBuf::from(&args.flow);
    let mut name = args.flow.clone();
    if as_path.is_file() {
        let canon = as_path.canonicalize().ok();
        files.retain(|f| f.canonicalize().ok() != canon);
        files.push(as_path.clone());
        let source = std::fs::read_to_string(&as_path)
            .with_context(|| format!("cannot read {}", as_path.display()))?;
        name = flow::compile::parse(&source)
            .ok()
            .and_then(|raw| raw.flow.map(|f| f.value))
            .or_else(|| {
                as_path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or(name);
    }
    let loaded = flow::set::load_files(&config, &args.config, &catalog, &files, 1);
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let Some(set) = loaded.set else {
        anyhow::bail!("the flows are not valid");
    };
    let index = set.flow(&name).with_context(|| {
        let known: Vec<&str> = set.flows.iter().map(|f| f.name.as_str()).collect();
        format!("there is no flow `{name}` (flows: {})", known.join(", "))
    })?;
    let mut vars = flow::Vars::new();
    vars.insert("caller".into(), "+15550100".into());
    vars.insert("dialed".into(), name.clone().into());
    for v in &args.vars {
        let (k, val) = v
            .split_once('=')
            .with_context(|| format!("--var {v}: write NAME=VALUE"))?;
        vars.insert(k.to_owned(), val.into());
    }
    let mut mocks = std::collections::BTreeMap::new();
    for m in &args.mocks {
        let (node, file) = m
            .split_once('=')
            .with_context(|| format!("--mock-webhook {m}: write NODE=FILE.json"))?;
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
        mocks.insert(node.to_owned(), json);
    }
    let keys = match &args.digits {
        Some(d) => Keys::Script(d.split_whitespace().map(str::to_owned).collect()),
        None => Keys::Interactive,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let sim = Simulation {
        set: Arc::new(set),
        flow: index,
        vars,
        start: args.at.unwrap_or_else(jiff::Timestamp::now),
        keys,
        mocks,
        http: Some((reqwest::Client::new(), runtime.handle().clone())),
        audio: if args.audio { Some(speaker()?) } else { None },
    };
    let mut out = std::io::stdout().lock();
    sim.run(&prompts, &mut out)
        .context("cannot write the trace")?;
    Ok(())
}

use hotline::call::simulate::PlayAloud;

#[cfg(feature = "local-audio")]
fn speaker() -> anyhow::Result<PlayAloud> {
    let speaker = hotline::call::speaker::Speaker::open().map_err(anyhow::Error::msg)?;
    Ok(Box::new(move |prompts| speaker.play(prompts)))
}

#[cfg(not(feature = "local-audio"))]
fn speaker() -> anyhow::Result<PlayAloud> {
    anyhow::bail!(
        "--audio needs a build with the local-audio feature: cargo build --release --features local-audio (on Linux after apt-get install -y libasound2-dev)"
    )
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = Config::load(&args.config)?;
    if !args.sip_listen.is_empty() {
        config.sip.listen = hotline::config::PerFamily::new(args.sip_listen)
            .map_err(|e| anyhow::anyhow!("--sip-listen: {e}"))?;
    }
    if let Some(a) = args.http_listen {
        config.http.listen = a;
    }
    if let Some(r) = args.rtp_ports {
        config.rtp.ports = r;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    check_open_files_budget(&config);
    // Recordings, voicemails and the store are the callers' own: what the
    // engine creates is for its own user only (directories 0700, files 0600).
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        hotline::engine::run(Arc::new(config), &args.config, shutdown_signal())
            .await
            .context("the engine stopped")
    })
}

/// Every call holds an RTP socket, so the common soft limit of 1,024 open
/// files would cap the engine near 1,000 calls: raise it to the hard limit,
/// then check the budget (one socket per RTP port pair, the SIP and HTTP
/// connection limits, the store and some slack) and say what does not fit.
fn check_open_files_budget(config: &hotline::config::Config) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let rtp = u64::from(config.rtp.ports.high - config.rtp.ports.low) / 2 + 1;
    let sip = if config.sip.tcp {
        config.sip.connections.max as u64
    } else {
        0
    };
    let http = config.http.connections.max as u64;
    // The store's files, logs, the listeners, timers, webhooks and recordings.
    let slack = 128;
    let reserve = hotline::overload::descriptor_reserve(lim.rlim_cur);
    let need = rtp + sip + http + slack + reserve;
    if lim.rlim_cur < need {
        tracing::warn!(
            open_files = lim.rlim_cur,
            rtp_sockets = rtp,
            sip_connections = sip,
            http_connections = http,
            slack,
            reserve,
            "the open-file limit is below the budget ({need}): new calls will be refused (503) while fewer than {reserve} descriptors are left; raise it (LimitNOFILE, ulimit -n) or narrow rtp.ports or the connection limits"
        );
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown requested");
}
