//! The `hotline` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hotline::config::{Config, PortRange};

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
    /// Check the configuration and the prompts it needs; exit 1 on a problem.
    Validate {
        /// The engine configuration.
        #[arg(long, default_value = "hotline.yaml")]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The engine configuration.
    #[arg(long, default_value = "hotline.yaml")]
    config: PathBuf,
    /// SIP address for UDP and TCP (overrides sip.listen).
    #[arg(long, value_name = "IP:PORT")]
    sip_listen: Option<SocketAddr>,
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Validate { config } => validate(&config),
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

fn validate(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let prompts = hotline::call::engine::load_prompts(&config)?;
    println!(
        "{}: ok ({} trunks, {} prompts)",
        path.display(),
        config.trunks.len(),
        prompts.len()
    );
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = Config::load(&args.config)?;
    if let Some(a) = args.sip_listen {
        config.sip.listen = a;
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
    raise_open_files_limit(config.rtp.ports.low, config.rtp.ports.high);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        hotline::call::engine::run(Arc::new(config), shutdown_signal())
            .await
            .context("the engine stopped")
    })
}

/// Every call holds an RTP socket, so the common soft limit of 1,024 open
/// files would cap the engine near 1,000 calls: raise it to the hard limit.
fn raise_open_files_limit(low: u16, high: u16) {
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
    let calls = u64::from(high - low) / 2 + 1;
    if lim.rlim_cur < calls + 64 {
        tracing::warn!(
            open_files = lim.rlim_cur,
            rtp_ports = calls,
            "the open-file limit allows fewer calls than the RTP port range; raise it (ulimit -n)"
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
