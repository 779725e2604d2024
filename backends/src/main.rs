//! Command-line entry point: `gatehouse-backend --listen ADDR --name NAME [--jwks URL
//! [--audience NAME]]`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use hyper::header::HeaderValue;
use tokio::net::TcpListener;

/// Test backend for Gatehouse: answers every request with a JSON echo of it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port, reported on stdout.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Name reported in the echo and in the `x-backend` response header.
    #[arg(long, value_parser = parse_name)]
    name: String,
    /// Gatehouse's JWKS (`http://HOST:PORT/.well-known/jwks.json`): every request must carry
    /// an `X-Gatehouse-Assertion` that verifies against it (401 otherwise).
    #[arg(long, value_name = "URL")]
    jwks: Option<String>,
    /// With `--jwks`: the `aud` the assertion must name (the service's name); any if absent.
    #[arg(long, value_name = "NAME", requires = "jwks")]
    audience: Option<String>,
    /// With `--jwks`: a path prefix (whole segments; repeatable) answered without an assertion,
    /// for routes Gatehouse forwards anonymously (`auth: none`).
    #[arg(long, value_name = "PREFIX", requires = "jwks")]
    allow_anonymous: Vec<String>,
}

/// Rejects names at the command line instead of panicking inside `serve`.
fn parse_name(name: &str) -> Result<String, String> {
    HeaderValue::from_str(name)
        .map(|_| name.to_owned())
        .map_err(|_| "must be usable as an HTTP header value".to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let verifier = match args.jwks.as_deref() {
        Some(url) => match gatehouse_backend::AssertionVerifier::new(url, args.audience.clone()) {
            Ok(verifier) => Some(verifier.allow_anonymous(args.allow_anonymous.clone())),
            Err(err) => {
                eprintln!("gatehouse-backend: {err}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("gatehouse-backend: cannot listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let announced = listener.local_addr().and_then(|addr| {
        // Scripts block on this line to learn the port, so it must not sit
        // in a buffer when stdout is a pipe.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()
    });
    if let Err(err) = announced {
        eprintln!("gatehouse-backend: cannot announce listening address: {err}");
        return ExitCode::FAILURE;
    }

    tokio::select! {
        () = gatehouse_backend::serve_verifying(listener, args.name, verifier) => {}
        () = shutdown_signal() => {}
    }
    ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM, the ways test harnesses stop the backend.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
