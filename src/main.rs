//! The `gatehouse` command: parse arguments, set up logging, load the config, bind, serve.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use gatehouse::cli::{accounts, apikeys, email_check, explain, keys as cli_keys};
use gatehouse::server::{self, ServerOptions, ServerTls};
use gatehouse::store::{self, AccountStore, Role};
use gatehouse::{config, reload, Settings};

#[global_allocator]
static ALLOCATOR: gatehouse::allocator::Mimalloc = gatehouse::allocator::Mimalloc;

/// mimalloc's `mi_option_arena_eager_commit` (its place in `mi_option_e`, mimalloc.h; the same in
/// the v2 and v3 sources libmimalloc-sys builds).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// The allocator's settings for a proxy, made by the binary so its defaults are good without
/// environment variables (each variable, when set, still wins). Called first thing in `main`,
/// before the runtimes allocate.
///
/// - Transparent huge pages off for the process (`PR_SET_THP_DISABLE`, which outranks
///   madvise), unless `MIMALLOC_ALLOW_THP` is set: on a host whose THP mode is `always` or
///   `madvise` (mimalloc advises huge pages), a 2 MiB page backed memory that was barely used,
///   and with 10 000 idle connections that tripled the resident size. The heap is small and its
///   accesses local, so huge pages buy little here.
/// - Arenas committed as they are used, not eagerly, unless `MIMALLOC_ARENA_EAGER_COMMIT` is
///   set: 3.5 MiB less resident at idle.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options under its own rules.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if done != 0 {
        // Old kernels lack it; the proxy works the same, with more resident memory.
        eprintln!(
            "note: could not turn transparent huge pages off: {}",
            std::io::Error::last_os_error()
        );
    }
}

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
    /// Print what the config's access rules decide for one request: `allow`, `deny 401`,
    /// `deny 403` or `signin` (`deny 400` for a refused path), then the deciding route as
    /// FILE:LINE:COLUMN or `service default`.
    Explain {
        /// The request's Host.
        #[arg(long)]
        host: String,
        /// The request's method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request's path, as the client sends it.
        #[arg(long)]
        path: String,
        /// A signed-in caller with this role (user or admin).
        #[arg(
            long,
            value_enum,
            required_unless_present = "anonymous",
            conflicts_with = "anonymous"
        )]
        role: Option<RoleArg>,
        /// An anonymous caller.
        #[arg(long)]
        anonymous: bool,
        /// A browser opening a page (GET/HEAD accepting HTML): anonymous is sent to sign in.
        #[arg(long)]
        html: bool,
    },
    /// Administer accounts in the store (`DATABASE_URL` or the config's `database.url`).
    Accounts {
        #[command(subcommand)]
        action: AccountsCommand,
    },
    /// Administer API keys in the store (`DATABASE_URL` or the config's `database.url`).
    Apikeys {
        #[command(subcommand)]
        action: ApikeysCommand,
    },
    /// Administer the store's signing keys (`DATABASE_URL` or the config's `database.url`;
    /// `rotate` needs GATEHOUSE_KEY_SECRET or the config's `auth.keys.secret_file`).
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// GET an http:// URL (e.g. http://127.0.0.1:8080/health): exit 0 on 2xx, 1 otherwise.
    /// A container health check that needs no curl in the image.
    Probe {
        url: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = parse_timeout)]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account; the password is read from stdin (first line).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
        /// Give the account the admin role.
        #[arg(long)]
        admin: bool,
        /// Read the password from stdin (the default; the flag makes scripts explicit).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts (tab-separated), optionally only those matching a search term.
    List {
        #[arg(long)]
        search: Option<String>,
    },
    /// Disable an account and revoke every token it holds, on every replica.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Report accounts whose stored email or key differs from today's normalisation (NFKC,
    /// lower case), or collides with another's; exits 1 while any need attention.
    CheckEmails {
        /// Rewrite the rows whose new key collides with no other account.
        #[arg(long)]
        apply: bool,
    },
    /// Populate the store with COUNT test accounts.
    Seed {
        #[arg(long)]
        count: usize,
        /// Read their shared password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ApikeysCommand {
    /// Create a key for an account and print it (shown this once; only its hash is stored).
    Create {
        #[arg(long)]
        email: String,
        /// A label for the key: 1-64 letters, digits, spaces, '_', '.', '-', ':' or '/'.
        #[arg(long)]
        name: String,
        /// Lifetime such as 90d, 12h, 30m or seconds (60s to 3650d); without it, no expiry.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List an account's keys (tab-separated; never the keys).
    List {
        #[arg(long)]
        email: String,
    },
    /// Revoke a key, on every replica within a second.
    Revoke {
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a signing key: published in the JWKS at once, signing after
    /// `auth.keys.publish_delay` on every replica; the old key stays published while anything
    /// it signed can still be valid.
    Rotate,
    /// List the keys (tab-separated): kid, created, signs from, state.
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    User,
    Admin,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Some(Command::Accounts { action }) = cli.command {
        return report(accounts(cli.config.as_deref(), action));
    }
    if let Some(Command::Apikeys { action }) = cli.command {
        return report(api_keys(cli.config.as_deref(), action));
    }
    if let Some(Command::Keys { action }) = cli.command {
        return report(keys(cli.config.as_deref(), action));
    }
    if let Some(Command::Probe { url, timeout }) = cli.command {
        return probe(&url, timeout);
    }
    let Some(config_path) = cli.config.clone() else {
        eprintln!("error: --config PATH is required");
        return ExitCode::from(2);
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check => check(&config_path),
        Command::Explain {
            host,
            method,
            path,
            role,
            anonymous: _,
            html,
        } => {
            let question = explain::Question {
                host,
                method,
                path,
                role: role.map(|role| match role {
                    RoleArg::User => Role::User,
                    RoleArg::Admin => Role::Admin,
                }),
                html,
            };
            match explain::explain(&config_path, &question) {
                Ok([decision, route]) => {
                    println!("{decision}\n{route}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("gatehouse explain: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve => {
            init_logging(cli.log_format);
            let served = serve(config_path);
            if let Err(error) = &served {
                tracing::error!("{error:#}");
            }
            report(served)
        }
        Command::Accounts { .. }
        | Command::Apikeys { .. }
        | Command::Probe { .. }
        | Command::Keys { .. } => {
            unreachable!("handled above")
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gatehouse: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config and applies the environment's overrides (the README's "Command line").
fn load_settings(path: &Path) -> anyhow::Result<Settings> {
    let mut settings = config::load(path)?;
    if let Some(url) = env_var("DATABASE_URL")? {
        settings.database.url = url;
    }
    if let Some(secret) = env_var("GATEHOUSE_JWT_SECRET")? {
        settings.auth.jwt.set_secret_override(secret.into_bytes());
    }
    if let Some(secret) = env_var("GATEHOUSE_JWT_PREVIOUS_SECRET")? {
        settings
            .auth
            .jwt
            .set_previous_secret_override(secret.into_bytes());
    }
    if let Some(secret) = env_var("GATEHOUSE_KEY_SECRET")? {
        settings.auth.keys.set_secret_override(secret.into_bytes());
    }
    Ok(settings)
}

/// A set, non-empty environment variable.
fn env_var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{name} is not valid UTF-8"),
    }
}

fn api_keys(config: Option<&Path>, action: ApikeysCommand) -> anyhow::Result<()> {
    let url = store_url(config)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async {
        let store = open_store(&url).await?;
        match action {
            ApikeysCommand::Create {
                email,
                name,
                expires,
            } => apikeys::create(&*store, &email, &name, expires.as_deref()).await?,
            ApikeysCommand::List { email } => apikeys::list(&*store, &email).await?,
            ApikeysCommand::Revoke { id } => apikeys::revoke(&*store, &id).await?,
        }
        Ok(())
    })
}

/// The store's URL for an administration command: `DATABASE_URL`, else the config's.
fn store_url(config: Option<&Path>) -> anyhow::Result<String> {
    Ok(match (env_var("DATABASE_URL")?, config) {
        (Some(url), _) => url,
        (None, Some(path)) => load_settings(path)?.database.url,
        (None, None) => anyhow::bail!("set DATABASE_URL or pass --config PATH"),
    })
}

/// Opens the store for a CLI command, naming it (password hidden) if it cannot be opened.
async fn open_store(url: &str) -> anyhow::Result<Arc<dyn AccountStore>> {
    let store = store::open(url)
        .await
        .with_context(|| format!("cannot open {}", store::redact(url)))?;
    Ok(store.into())
}

fn accounts(config: Option<&Path>, action: AccountsCommand) -> anyhow::Result<()> {
    let url = store_url(config)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async {
        let store = open_store(&url).await?;
        match action {
            AccountsCommand::Create {
                email,
                username,
                admin,
                ..
            } => {
                let password = read_password()?;
                accounts::create(&*store, &email, &username, password, admin).await?
            }
            AccountsCommand::List { search } => accounts::list(&*store, search).await?,
            AccountsCommand::Disable { email } => accounts::disable(&*store, &email).await?,
            AccountsCommand::CheckEmails { apply } => {
                let found = email_check::check_emails(&*store, apply).await?;
                if found.needs_attention(apply) {
                    anyhow::bail!("some accounts need attention (see above)");
                }
            }
            AccountsCommand::Seed {
                count,
                password_stdin,
            } => {
                let password = if password_stdin {
                    read_password()?
                } else {
                    let generated = format!("{:024x}", rand_password());
                    println!("password of every seeded account: {generated}");
                    generated
                };
                accounts::seed(store, count, password).await?
            }
        }
        Ok(())
    })
}

/// `gatehouse keys …`: the store from `DATABASE_URL` or the config; the publish delay, token
/// lifetimes and secret file from the config when one is given (defaults otherwise).
fn keys(config: Option<&Path>, action: KeysCommand) -> anyhow::Result<()> {
    let mut settings = match config {
        Some(path) => load_settings(path)?,
        None => {
            let mut settings = config::parse_str("services: []\n", "(defaults)")?;
            settings.database.url =
                env_var("DATABASE_URL")?.context("set DATABASE_URL or pass --config PATH")?;
            settings
        }
    };
    if let Some(secret) = env_var("GATEHOUSE_KEY_SECRET")? {
        settings.auth.keys.set_secret_override(secret.into_bytes());
    }
    let url = settings.database.url.clone();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async {
        let store = open_store(&url).await?;
        match action {
            KeysCommand::Rotate => cli_keys::rotate(&*store, &settings.auth).await?,
            KeysCommand::List => cli_keys::list(&*store, &settings.auth).await?,
        }
        Ok(())
    })
}

/// The first line of stdin, without its line ending.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprint!("password (shown as typed; pipe it in to hide it): ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn rand_password() -> u128 {
    rand::random::<u128>() >> 32
}

fn probe(url: &str, timeout: std::time::Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gatehouse probe: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(gatehouse::cli::probe::probe(url, timeout)) {
        Ok(status) => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{url}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    gatehouse::config::parse_duration(text)
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
    // Colour codes only for a person at a terminal, never into container logs or files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let settings = load_settings(&config_path)?;
    // Before anything starts: a certificate that cannot be served is the operator's to fix.
    let tls = settings.tls.as_ref().map(ServerTls::load).transpose()?;
    let workers = settings.workers.resolve();
    // This thread is worker 0; `serve_workers` starts the others, each on its own runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        // Keys and the store first: a bad secret or an unreachable database stops the start
        // before the port accepts anyone.
        let state = gatehouse::start(&settings).await?;
        let listener = server::bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        tracing::info!(
            listen = %listener.local_addr()?,
            tls = tls.is_some(),
            workers,
            services = settings.services.len(),
            version = env!("CARGO_PKG_VERSION"),
            "gatehouse started"
        );
        if let Some(admin) = settings.admin_listen {
            let listener =
                server::bind(admin).with_context(|| format!("cannot listen on {admin} (admin_listen)"))?;
            tracing::info!(admin_listen = %listener.local_addr()?, "metrics served on the admin listener only");
            tokio::spawn(server::serve_admin(
                listener,
                Arc::clone(&state),
                std::future::pending(),
            ));
        }
        tokio::spawn(reload::on_sighup(config_path, Arc::clone(&state)));
        // Kept alive until the server stops.
        let _cert_watch = tls.as_ref().and_then(ServerTls::watch);
        if let Some(tls) = &tls {
            tokio::spawn(Arc::clone(tls).reload_on_sighup());
        }
        let options = ServerOptions::from(&settings.limits).with_tls(tls);
        server::serve_workers(listener, settings.listen, state, options, workers, shutdown_signal())
            .await?;
        tracing::info!("gatehouse stopped");
        Ok(())
    })
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
