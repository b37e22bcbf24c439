//! `peergos-fuse`: mount your encrypted space (or a secret link) as a
//! normal folder. A thin adapter from the kernel's FUSE requests to
//! [`peergos_vfs::Vfs`]; every request runs as a task on a tokio runtime,
//! so a slow read does not hold up a `stat` of another file.
//!
//! ```text
//! peergos-fuse --server http://127.0.0.1:8000 --username alice /mnt/peergos
//! peergos-fuse --link 'http://127.0.0.1:8000/link/alice/ID#s=SECRET' /mnt/shared
//! ```

mod adapter;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use peergos_core::{Device, HttpNetwork, NetworkAccess, RemoteFs, SecretLink, UserContext};
use peergos_vfs::{Options, SpaceSource, Vfs};

/// Mount your Peergos space as a folder.
#[derive(Parser, Clone)]
#[command(name = "peergos-fuse", version)]
struct Cli {
    /// The server's URL.
    #[arg(
        long,
        short,
        env = "PEERGOS_SERVER",
        default_value = "http://127.0.0.1:8000"
    )]
    server: String,
    /// The user whose space to mount (password from `PEERGOS_PASSWORD` or
    /// a prompt).
    #[arg(long, short, env = "PEERGOS_USERNAME")]
    username: Option<String>,
    /// Mount what a secret link points at instead (password, if the link
    /// has one, from `PEERGOS_LINK_PASSWORD` or a prompt). Read-only
    /// unless the link lets its holder write.
    #[arg(long, env = "PEERGOS_LINK", conflicts_with = "username")]
    link: Option<String>,
    /// The folder to mount instead of your whole home: one of yours
    /// (`/alice/photos`) or one a friend shared with you (`/bob/music`).
    #[arg(long, conflicts_with = "link")]
    path: Option<String>,
    /// Mount read-only even where the account could write.
    #[arg(long)]
    read_only: bool,
    /// Seconds between checks for changes made by other clients.
    #[arg(long, default_value_t = 2.0)]
    refresh_secs: f64,
    /// Let other local users see the mount (needs `user_allow_other` in
    /// /etc/fuse.conf unless run as root).
    #[arg(long)]
    allow_other: bool,
    /// Detach after mounting and keep running in the background (logs go
    /// to --log-file). Unmount with `fusermount3 -u MOUNTPOINT`.
    #[arg(long)]
    background: bool,
    /// Where the background process writes its log.
    #[arg(long, requires = "background")]
    log_file: Option<PathBuf>,
    /// Where this device records the newest state it has seen of each
    /// server, so a later run refuses a rolled-back server
    /// (default: ~/.peergos/client).
    #[arg(long, env = "PEERGOS_CLIENT_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The most memory, in MiB, a login's key derivation may take.
    #[arg(long, env = "PEERGOS_MAX_KDF_MIB", value_name = "MIB", default_value_t = peergos_core::DEFAULT_MAX_KDF_MEMORY >> 20)]
    max_kdf_memory: u64,
    /// The empty directory to mount on.
    mountpoint: PathBuf,
}

/// Set in the environment of the process `--background` starts.
const CHILD_MARK: &str = "PEERGOS_FUSE_CHILD";

fn main() {
    let cli = Cli::parse();
    let child = std::env::var_os(CHILD_MARK).is_some();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEERGOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let outcome = if cli.background && !child {
        detach(&cli)
    } else {
        run(cli)
    };
    if let Err(e) = outcome {
        eprintln!("peergos-fuse: {e:#}");
        std::process::exit(1);
    }
}

/// Asks for the passwords here, where there is a terminal, then starts
/// this program again without one and waits until its mount is up.
fn detach(cli: &Cli) -> Result<()> {
    let mut command = std::process::Command::new(
        std::env::current_exe().context("finding this program to start it again")?,
    );
    command
        .args(std::env::args_os().skip(1))
        .env(CHILD_MARK, "1");
    if let Some(username) = &cli.username {
        command.env("PEERGOS_PASSWORD", password(username)?);
    }
    if let Some(url) = &cli.link {
        if SecretLink::parse(url)?.password {
            command.env("PEERGOS_LINK_PASSWORD", link_password()?);
        }
    }
    let log_path = cli
        .log_file
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("peergos-fuse.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening the log file {}", log_path.display()))?;
    use std::os::unix::process::CommandExt;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the background process")?;
    let before = device_of(&cli.mountpoint)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the background process stopped ({status}) before mounting; see {}",
                log_path.display()
            );
        }
        if device_of(&cli.mountpoint)? != before {
            println!(
                "mounted {} (process {}, log {})",
                cli.mountpoint.display(),
                child.id(),
                log_path.display()
            );
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the mount did not appear within 120 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn device_of(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("mount point {}", path.display()))?
        .dev())
}

fn password(username: &str) -> Result<String> {
    if let Ok(password) = std::env::var("PEERGOS_PASSWORD") {
        return Ok(password);
    }
    rpassword::prompt_password(format!("password for {username}: ")).context("reading the password")
}

fn link_password() -> Result<String> {
    if let Ok(password) = std::env::var("PEERGOS_LINK_PASSWORD") {
        return Ok(password);
    }
    rpassword::prompt_password("link password: ").context("reading the link password")
}

/// Where `statfs` gets the user's quota.
struct UserSpace(Arc<UserContext>);

#[async_trait::async_trait]
impl SpaceSource for UserSpace {
    async fn space(&self) -> std::result::Result<(u64, u64), String> {
        let space = self.0.space().await.map_err(|e| e.to_string())?;
        Ok((space.used, space.quota))
    }
}

fn run(cli: Cli) -> Result<()> {
    let meta = std::fs::metadata(&cli.mountpoint)
        .with_context(|| format!("mount point {}", cli.mountpoint.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", cli.mountpoint.display());
    }
    // The mount's files belong to whoever runs this program.
    let me = std::fs::metadata("/proc/self").context("reading this process's owner")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (vfs, name) = runtime.block_on(open(&cli))?;
    let refresher = {
        let _guard = runtime.enter();
        vfs.spawn_refresher(Duration::from_secs_f64(cli.refresh_secs.max(0.1)))
    };
    let fs = adapter::FuseFs::new(vfs.clone(), runtime.handle().clone(), me.uid(), me.gid());
    let mut options = vec![
        fuser::MountOption::FSName(name),
        fuser::MountOption::Subtype("peergos".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if cli.read_only {
        options.push(fuser::MountOption::RO);
    }
    let mut config = fuser::Config::default();
    config.mount_options = options;
    if cli.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    let session = fuser::Session::new(fs, &cli.mountpoint, &config)
        .with_context(|| format!("mounting on {}", cli.mountpoint.display()))?;
    let background = session.spawn().context("starting the FUSE session")?;
    eprintln!(
        "peergos-fuse: mounted on {} (Ctrl-C or `fusermount3 -u {}` to unmount)",
        cli.mountpoint.display(),
        cli.mountpoint.display()
    );
    // Until a signal comes or the mount is taken away from outside.
    let ended_outside = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok::<bool, std::io::Error>(false),
                _ = term.recv() => return Ok(false),
                _ = ticker.tick() => {
                    if background.guard.is_finished() {
                        return Ok(true);
                    }
                }
            }
        }
    })?;
    refresher.abort();
    // Commit whatever open files still hold before the mount goes.
    let committed = runtime.block_on(vfs.commit_all());
    let ended = if ended_outside {
        background.join()
    } else {
        background.umount_and_join()
    };
    if let Err(e) = ended {
        eprintln!("peergos-fuse: unmounting: {e}");
    }
    committed.context("committing open files")?;
    eprintln!("peergos-fuse: unmounted {}", cli.mountpoint.display());
    Ok(())
}

/// Logs in (or opens the link) and builds the view; returns it with the
/// mount's name.
async fn open(cli: &Cli) -> Result<(Vfs<peergos_core::Remote, peergos_core::Remote>, String)> {
    if let Some(url) = &cli.link {
        let link = SecretLink::parse(url)?;
        let net: Arc<dyn NetworkAccess> = Arc::new(HttpNetwork::new(&link.server)?);
        let pw = if link.password {
            Some(link_password()?)
        } else {
            None
        };
        let view = peergos_core::open_link(net, &link, pw.as_deref()).await?;
        let entry = view.entry().clone();
        let fs: Arc<RemoteFs> = Arc::clone(view.fs());
        let options = Options {
            read_only: cli.read_only || !entry.writable,
            single_file: (entry.kind == peergos_core::Kind::File).then(|| entry.name.clone()),
            root: None,
        };
        return Ok((Vfs::new(fs, options), format!("peergos-link:{}", link.id)));
    }
    let Some(username) = &cli.username else {
        bail!(
            "say whose space to mount with --username NAME, or mount a secret link with --link URL"
        );
    };
    let net: Arc<dyn NetworkAccess> = Arc::new(HttpNetwork::new(&cli.server)?);
    let pw = password(username)?;
    let dir = cli
        .state_dir
        .clone()
        .or_else(Device::default_dir)
        .context("no HOME to keep the device record in: set --state-dir")?;
    let device = Device::open(&dir)
        .with_context(|| format!("opening the device record in {}", dir.display()))?
        .with_max_kdf_memory(cli.max_kdf_memory.saturating_mul(1 << 20));
    let user = Arc::new(UserContext::login_with(net, username, &pw, &device).await?);
    // A mount can stay up for months: its name is renewed when due.
    {
        let user = Arc::clone(&user);
        tokio::spawn(async move {
            let mut daily = tokio::time::interval(std::time::Duration::from_secs(24 * 60 * 60));
            loop {
                daily.tick().await;
                if let Err(e) = user.renew_name_if_due().await {
                    tracing::warn!("renewing the name failed (tried again tomorrow): {e}");
                }
            }
        });
    }
    let (fs, root) = match &cli.path {
        None => (user.fs_arc(), None),
        Some(path) => match user.locate(path).await? {
            peergos_core::Place::Fs { fs, path: inner } => {
                let entry = fs.stat(&inner).await?;
                if entry.kind != peergos_core::Kind::Dir {
                    bail!("{path} is a file; mount the folder it is in");
                }
                (fs, Some(inner))
            }
            peergos_core::Place::Virtual { entries } => {
                let names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
                bail!(
                    "{path} is a listing of names, not a folder; mount one of: {}",
                    names.join(", ")
                );
            }
        },
    };
    let options = Options {
        read_only: cli.read_only,
        single_file: None,
        root,
    };
    let vfs = Vfs::new(fs, options).with_space(Arc::new(UserSpace(Arc::clone(&user))));
    Ok((vfs, format!("peergos:{username}")))
}
