//! `peergos-daemon`: the home server. Argument parsing, configuration and
//! wiring only; the server is `peergos-server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use peergos_server::{Accounts, Config, Server, SignupPolicy, DEFAULT_QUOTA};
use serde::{Deserialize, Serialize};

/// The Peergos home server: encrypted blocks, signed pointers, accounts
/// and the PKI, served over HTTP. Runs `serve` when no command is given.
#[derive(Parser)]
#[command(name = "peergos-daemon", version)]
struct Cli {
    /// Data directory (blocks, databases, server key, config.toml).
    #[arg(long, env = "PEERGOS_PATH", global = true)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on for HTTP [default: 127.0.0.1:8000]; port 0
    /// picks a free port (the chosen one is printed).
    #[arg(long, env = "PEERGOS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Who may sign up: "open" or "token" [default: open].
    #[arg(long, env = "PEERGOS_SIGNUP")]
    signup: Option<SignupPolicy>,
    /// Quota for new users, in bytes [default: 10 GiB].
    #[arg(long, env = "PEERGOS_DEFAULT_QUOTA")]
    default_quota: Option<u64>,
    /// The URL users reach this server at, used in signup links
    /// [default: http://LISTEN].
    #[arg(long, env = "PEERGOS_PUBLIC_URL")]
    public_url: Option<String>,
    /// Print a single-use signup link on startup.
    #[arg(long)]
    generate_token: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a single-use signup link (works while the server runs).
    Token,
    /// Set a user's quota in bytes.
    Quota {
        /// The username.
        username: String,
        /// The new quota in bytes.
        bytes: u64,
    },
    /// List users with their usage and quota.
    Usage,
}

/// `config.toml` in the data directory: written on first run with the
/// settings in effect, read on later runs. Flags and environment
/// variables override it.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    signup: Option<String>,
    default_quota: Option<u64>,
    public_url: Option<String>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

fn default_data_dir() -> Result<PathBuf> {
    let home =
        std::env::var_os("HOME").context("HOME is not set; pass --data-dir or set PEERGOS_PATH")?;
    Ok(PathBuf::from(home).join(".peergos"))
}

fn read_config(path: &Path) -> Result<Option<FileConfig>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

struct Settings {
    config: Config,
    listen: SocketAddr,
    public_url: Option<String>,
}

/// Flags and environment over the config file over the defaults; saves
/// the file on first run.
fn settings(data_dir: PathBuf, args: &ServeArgs) -> Result<Settings> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let path = data_dir.join("config.toml");
    let file = read_config(&path)?;
    let first_run = file.is_none();
    let file = file.unwrap_or_default();
    let listen = match args.listen.or(file.listen) {
        Some(listen) => listen,
        None => DEFAULT_LISTEN.parse()?,
    };
    let signup = match (&args.signup, &file.signup) {
        (Some(policy), _) => *policy,
        (None, Some(text)) => text
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", path.display()))?,
        (None, None) => SignupPolicy::Open,
    };
    let default_quota = args
        .default_quota
        .or(file.default_quota)
        .unwrap_or(DEFAULT_QUOTA);
    let public_url = args.public_url.clone().or(file.public_url);
    if first_run {
        let saved = FileConfig {
            listen: Some(listen),
            signup: Some(signup.as_str().to_string()),
            default_quota: Some(default_quota),
            public_url: public_url.clone(),
        };
        let text = format!(
            "# peergos-daemon settings, written on first run. Flags and\n\
             # PEERGOS_* environment variables override them.\n{}",
            toml::to_string(&saved)?
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut config = Config::new(data_dir);
    config.signup = signup;
    config.default_quota = default_quota;
    Ok(Settings {
        config,
        listen,
        public_url,
    })
}

fn signup_link(base: &str, token: &str) -> String {
    format!("{}/?token={token}", base.trim_end_matches('/'))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn serve(data_dir: PathBuf, args: &ServeArgs) -> Result<()> {
    let settings = settings(data_dir, args)?;
    let data_dir = settings.config.data_dir.clone();
    let server = Server::open(settings.config)
        .await
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let base = settings
        .public_url
        .unwrap_or_else(|| format!("http://{address}"));
    tracing::info!(%address, data = %data_dir.display(), signup = server.config().signup.as_str(), "serving");
    println!(
        "peergos-daemon listening on http://{address} (data in {})",
        data_dir.display()
    );
    if args.generate_token {
        let token = server.new_signup_token()?;
        println!("signup link (single use):");
        println!("{}", signup_link(&base, &token));
    }
    peergos_server::http::serve(server, listener, shutdown_signal()).await?;
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(data_dir, &cli.serve)),
        Command::Token => {
            let accounts = open_accounts(&data_dir)?;
            let token = accounts.new_signup_token()?;
            let settings = settings(data_dir, &cli.serve)?;
            let base = settings
                .public_url
                .unwrap_or_else(|| format!("http://{}", settings.listen));
            println!("{}", signup_link(&base, &token));
            Ok(())
        }
        Command::Quota { username, bytes } => {
            if !open_accounts(&data_dir)?.set_quota(&username, bytes)? {
                bail!("no user '{username}' on this server");
            }
            println!("quota of {username} set to {bytes} bytes");
            Ok(())
        }
        Command::Usage => {
            for (name, used, quota) in open_accounts(&data_dir)?.usage()? {
                println!("{name}\t{used}\t{quota}");
            }
            Ok(())
        }
    }
}

fn open_accounts(data_dir: &Path) -> Result<Accounts> {
    let path = data_dir.join("accounts.sqlite");
    if !path.exists() {
        bail!(
            "{} has no accounts database; start the daemon there first",
            data_dir.display()
        );
    }
    Ok(Accounts::open(&path)?)
}
