//! `peergos-shell`: your encrypted space from the command line, one
//! command at a time (`peergos-shell -u alice put ./a /alice/a`) or
//! interactively (no command: line editing, history, tab completion of
//! remote paths).

mod commands;
mod links;
mod transfer;

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::Parser;
use peergos_core::{
    Device, HttpNetwork, NetworkAccess, Place, RemoteFs, SecretLink, SharedView, UserContext,
};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::{Editor, Helper, Highlighter, Hinter, Validator};

use crate::commands::Command;

/// The Peergos shell.
#[derive(Parser)]
#[command(name = "peergos-shell", version)]
struct Cli {
    /// The server's URL.
    #[arg(
        long,
        short,
        env = "PEERGOS_SERVER",
        default_value = "http://127.0.0.1:8000"
    )]
    server: String,
    /// The username to log in as (or sign up, with the `signup` command).
    #[arg(long, short, env = "PEERGOS_USERNAME")]
    username: Option<String>,
    /// Open this secret link (no account needed) and run the command on
    /// what it points at, shown as `/NAME`.
    #[arg(long, env = "PEERGOS_LINK")]
    link: Option<String>,
    /// Where this device records the newest state it has seen of each
    /// server, so a later run refuses a rolled-back server
    /// (default: ~/.peergos/client).
    #[arg(long, env = "PEERGOS_CLIENT_DIR", value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// The most memory, in MiB, a login's key derivation may take (the
    /// server chooses its parameters; raise this only for parameters you
    /// chose yourself).
    #[arg(long, env = "PEERGOS_MAX_KDF_MIB", value_name = "MIB", default_value_t = peergos_core::DEFAULT_MAX_KDF_MEMORY >> 20)]
    max_kdf_memory: u64,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// Run one command and exit (no command: interactive).
    #[command(subcommand)]
    command: Option<Command>,
}

/// What paths are resolved against: a logged-in user (their home and what
/// friends shared with them) or an opened secret link.
#[derive(Clone)]
pub(crate) enum Root {
    User(Arc<UserContext>),
    Link(Arc<SharedView>),
}

impl Root {
    pub(crate) async fn locate(&self, path: &str) -> peergos_core::Result<Place> {
        match self {
            Root::User(user) => user.locate(path).await,
            Root::Link(view) => view.locate(path),
        }
    }
}

/// The session: server, logged-in user or opened link, working directory.
pub(crate) struct Session {
    pub(crate) net: Arc<dyn NetworkAccess>,
    pub(crate) device: Device,
    pub(crate) user: Option<Arc<UserContext>>,
    pub(crate) link: Option<Arc<SharedView>>,
    pub(crate) cwd: String,
    pub(crate) json: bool,
    pub(crate) interactive: bool,
}

impl Session {
    pub(crate) fn user(&self) -> Result<&Arc<UserContext>> {
        self.user
            .as_ref()
            .context("not logged in (use `login USERNAME` or `signup USERNAME`)")
    }

    /// What paths resolve against: the open link, else the user.
    pub(crate) fn root(&self) -> Result<Root> {
        match (&self.link, &self.user) {
            (Some(link), _) => Ok(Root::Link(Arc::clone(link))),
            (None, Some(user)) => Ok(Root::User(Arc::clone(user))),
            (None, None) => {
                bail!("not logged in (use `login USERNAME`, `signup USERNAME` or `open-link URL`)")
            }
        }
    }

    /// An absolute, normalised path for `path` (relative to the working
    /// directory unless it starts with '/').
    pub(crate) fn absolute(&self, path: &str) -> String {
        let joined = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{path}", self.cwd)
        };
        let mut parts: Vec<&str> = Vec::new();
        for part in joined.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
        }
        format!("/{}", parts.join("/"))
    }

    /// Where a shell path is: own home, a friend's share, a link, or a
    /// listing of names.
    pub(crate) async fn place(&self, path: &str) -> Result<Place> {
        Ok(self.root()?.locate(&self.absolute(path)).await?)
    }

    /// The filesystem and the path in it for a shell path that names a
    /// real file or folder.
    pub(crate) async fn fs_path(&self, path: &str) -> Result<(Arc<RemoteFs>, String)> {
        match self.place(path).await? {
            Place::Fs { fs, path } => Ok((fs, path)),
            Place::Virtual { .. } => bail!(
                "{}: a listing of users and shares, not a folder you can change",
                self.absolute(path)
            ),
        }
    }

    pub(crate) fn set_user(&mut self, user: UserContext) {
        self.cwd = format!("/{}", user.username());
        self.link = None;
        self.user = Some(Arc::new(user));
    }

    pub(crate) fn set_link(&mut self, view: SharedView) {
        self.cwd = format!("/{}", view.entry().name);
        if view.entry().kind != peergos_core::Kind::Dir {
            self.cwd = "/".to_string();
        }
        self.link = Some(Arc::new(view));
    }
}

/// Opens a secret link on the server the link names, asking for its
/// password (`PEERGOS_LINK_PASSWORD` or a prompt) when it has one.
pub(crate) async fn open_link(url: &str) -> Result<SharedView> {
    let link = SecretLink::parse(url)?;
    let net: Arc<dyn NetworkAccess> = Arc::new(HttpNetwork::new(&link.server)?);
    let password = if link.password {
        Some(match std::env::var("PEERGOS_LINK_PASSWORD") {
            Ok(pw) => pw,
            Err(_) => rpassword::prompt_password("link password: ")
                .context("reading the link password")?,
        })
    } else {
        None
    };
    Ok(peergos_core::open_link(net, &link, password.as_deref()).await?)
}

/// The password from `PEERGOS_PASSWORD` or a no-echo prompt.
pub(crate) fn password(prompt: &str) -> Result<String> {
    if let Ok(password) = std::env::var("PEERGOS_PASSWORD") {
        return Ok(password);
    }
    rpassword::prompt_password(prompt).context("reading the password")
}

/// Splits a command line into words: whitespace separates, quotes group,
/// backslash escapes.
fn split_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') | (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                    in_word = true;
                }
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        bail!("unterminated quote");
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// What paths resolve against and the working directory, as the
/// completer sees them.
type LoggedIn = (Root, String);

/// Completes remote paths by listing the directory being typed.
#[derive(Helper, Highlighter, Hinter, Validator)]
struct RemoteCompleter {
    session: Arc<Mutex<Option<LoggedIn>>>,
    runtime: tokio::runtime::Handle,
}

impl Completer for RemoteCompleter {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let Some((root, cwd)) = self.session.lock().ok().and_then(|s| s.clone()) else {
            return Ok((pos, Vec::new()));
        };
        let start = line[..pos].rfind(' ').map_or(0, |i| i + 1);
        let word = &line[start..pos];
        let (dir, prefix) = match word.rfind('/') {
            Some(i) => (&word[..=i], &word[i + 1..]),
            None => ("", word),
        };
        let absolute = if dir.starts_with('/') {
            dir.to_string()
        } else {
            format!("{cwd}/{dir}")
        };
        let entries = self
            .runtime
            .block_on(async {
                match root.locate(&absolute).await? {
                    Place::Fs { fs, path } => fs.ls(&path).await.map_err(Into::into),
                    Place::Virtual { entries } => Ok(entries),
                }
            })
            .unwrap_or_else(|_: peergos_core::Error| Vec::new());
        let candidates = entries
            .into_iter()
            .filter(|e| e.name.starts_with(prefix))
            .map(|e| {
                let suffix = if e.kind == peergos_core::Kind::Dir {
                    "/"
                } else {
                    ""
                };
                Pair {
                    display: format!("{}{suffix}", e.name),
                    replacement: format!("{dir}{}{suffix}", e.name),
                }
            })
            .collect();
        Ok((start, candidates))
    }
}

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME")
        .map(|home| std::path::PathBuf::from(home).join(".peergos_shell_history"))
}

fn interactive(runtime: &tokio::runtime::Runtime, mut session: Session) -> Result<()> {
    let shared = Arc::new(Mutex::new(None));
    let mut editor: Editor<RemoteCompleter, rustyline::history::FileHistory> = Editor::new()?;
    editor.set_helper(Some(RemoteCompleter {
        session: Arc::clone(&shared),
        runtime: runtime.handle().clone(),
    }));
    if let Some(path) = history_path() {
        let _ = editor.load_history(&path);
    }
    println!("peergos shell: type `help` for commands, `exit` to leave");
    loop {
        if let Ok(mut s) = shared.lock() {
            *s = session.root().ok().map(|root| (root, session.cwd.clone()));
        }
        let prompt = match (&session.link, &session.user) {
            (Some(_), _) => format!("link:{}> ", session.cwd),
            (None, Some(user)) => format!("{}:{}> ", user.username(), session.cwd),
            (None, None) => "peergos> ".to_string(),
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let words = match split_words(&line) {
            Ok(words) if words.is_empty() => continue,
            Ok(words) => words,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let _ = editor.add_history_entry(line.as_str());
        // The completer's copy of the session is only needed while
        // reading; dropping it lets `passwd` take the context back.
        if let Ok(mut s) = shared.lock() {
            *s = None;
        }
        if matches!(words[0].as_str(), "exit" | "quit") {
            break;
        }
        if words[0] == "help" {
            commands::help();
            continue;
        }
        let parsed =
            commands::Line::try_parse_from(std::iter::once("peergos".to_string()).chain(words));
        match parsed {
            Ok(commands::Line { command }) => {
                if let Err(e) = runtime.block_on(commands::run(&mut session, command)) {
                    eprintln!("error: {}", one_line(&e));
                }
            }
            Err(e) => {
                let _ = e.print();
            }
        }
    }
    if let Some(path) = history_path() {
        let _ = editor.save_history(&path);
    }
    Ok(())
}

/// An error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn main() {
    let cli = Cli::parse();
    let code = match start(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            1
        }
    };
    std::process::exit(code);
}

/// The device record in `dir` (or the default folder), with the login cost
/// limit in MiB.
fn device(dir: Option<std::path::PathBuf>, max_kdf_mib: u64) -> Result<Device> {
    let dir = dir
        .or_else(Device::default_dir)
        .context("no HOME to keep the device record in: set --state-dir")?;
    let device = Device::open(&dir)
        .with_context(|| format!("opening the device record in {}", dir.display()))?;
    Ok(device.with_max_kdf_memory(max_kdf_mib.saturating_mul(1 << 20)))
}

fn start(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let net: Arc<dyn NetworkAccess> = Arc::new(HttpNetwork::new(&cli.server)?);
    let device = device(cli.state_dir.clone(), cli.max_kdf_memory)?;
    let mut session = Session {
        net,
        device,
        user: None,
        link: None,
        cwd: "/".to_string(),
        json: cli.json,
        interactive: cli.command.is_none(),
    };
    if let Some(url) = &cli.link {
        let view = runtime.block_on(open_link(url))?;
        session.set_link(view);
    }
    let needs_login = cli.link.is_none()
        && !matches!(
            cli.command,
            Some(Command::Signup { .. })
                | Some(Command::Login { .. })
                | Some(Command::OpenLink { .. })
        );
    if let (Some(username), true) = (&cli.username, needs_login) {
        let pw = password(&format!("password for {username}: "))?;
        let user = runtime.block_on(UserContext::login_with(
            Arc::clone(&session.net),
            username,
            &pw,
            &session.device,
        ))?;
        session.set_user(user);
    }
    match cli.command {
        Some(mut command) => {
            // `signup`/`login` without a name take the --username one.
            if let Command::Signup { username, .. } | Command::Login { username } = &mut command {
                if username.is_none() {
                    username.clone_from(&cli.username);
                }
            }
            runtime.block_on(commands::run(&mut session, command))
        }
        None => interactive(&runtime, session),
    }
}
