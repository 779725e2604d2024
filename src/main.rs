//! The `gatehouse` command: parse arguments, set up logging, load the config, bind, serve.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::{TcpListener, TcpSocket};
use tracing_subscriber::EnvFilter;

use gatehouse::server::{self, ServerOptions};
use gatehouse::{config, reload, AppState};

/// Authenticating reverse proxy and load balancer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (for `gatehouse --config PATH` without a subcommand, which serves).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve,
    /// Validate a config file: exit 0, or 1 printing PATH:LINE:COLUMN: what is wrong.
    Check,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(config_path) = cli.config.clone() else {
        eprintln!("error: --config PATH is required");
        return ExitCode::from(2);
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check => check(&config_path),
        Command::Serve => {
            init_logging(cli.log_format);
            match serve(config_path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("gatehouse: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(settings) => {
            println!(
                "{}: ok ({} services)",
                path.display(),
                settings.services.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Pending connections the kernel queues while every worker is busy (std's default is 128).
const LISTEN_BACKLOG: u32 = 4096;

fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let settings = config::load(&config_path)?;
    let workers = settings.workers.resolve();
    // This thread is worker 0; `serve_workers` starts the others, each on its own runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let listener = bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        tracing::info!(
            listen = %listener.local_addr()?,
            workers,
            services = settings.services.len(),
            version = env!("CARGO_PKG_VERSION"),
            "gatehouse started"
        );
        let state = Arc::new(AppState::new(&settings));
        tokio::spawn(reload::on_sighup(config_path, Arc::clone(&state)));
        let options = ServerOptions::from(&settings.limits);
        server::serve_workers(listener, state, options, workers, shutdown_signal()).await?;
        tracing::info!("gatehouse stopped");
        Ok(())
    })
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
