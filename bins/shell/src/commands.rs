//! The shell's commands.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use peergos_core::{Entry, Kind, UserContext};
use serde_json::json;

use crate::{password, transfer, Session};

/// A line typed in the interactive shell.
#[derive(Parser)]
#[command(
    no_binary_name = false,
    disable_help_flag = true,
    disable_version_flag = true
)]
pub(crate) struct Line {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Create an account on the server and log in.
    Signup {
        /// The username (lowercase letters, digits, '_' and '-').
        username: Option<String>,
        /// A signup token or link, when the server needs one.
        #[arg(long)]
        token: Option<String>,
    },
    /// Log in.
    Login {
        /// The username.
        username: Option<String>,
    },
    /// List a directory.
    Ls {
        /// The directory (default: the working directory).
        path: Option<String>,
        /// Include hidden entries.
        #[arg(short, long)]
        all: bool,
    },
    /// Change the working directory.
    Cd {
        /// The directory (default: home).
        path: Option<String>,
    },
    /// Print the working directory.
    Pwd,
    /// Create a directory.
    Mkdir {
        /// The directory.
        path: String,
        /// Create missing parents too; an existing directory is fine.
        #[arg(short, long)]
        parents: bool,
    },
    /// Upload a file or a whole folder (resumable: run it again to finish
    /// an interrupted upload).
    Put {
        /// The local file or folder.
        local: std::path::PathBuf,
        /// Where to put it (default: the working directory). An existing
        /// directory receives it under its own name.
        remote: Option<String>,
    },
    /// Download a file, or a folder with -r (resumable).
    Get {
        /// The remote file or folder.
        remote: String,
        /// Where to write it (default: its name in the current directory).
        local: Option<std::path::PathBuf>,
        /// Download a folder and everything in it.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Print a file.
    Cat {
        /// The file.
        path: String,
    },
    /// Remove a file, or a folder with -r.
    Rm {
        /// The path.
        path: String,
        /// Remove a folder and everything in it.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Move or rename.
    Mv {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// Copy a file or folder.
    Cp {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// Show a file's or folder's details.
    Stat {
        /// The path.
        path: String,
    },
    /// Show space used and the quota.
    Space,
    /// Change the password.
    Passwd,
}

pub(crate) fn help() {
    println!(
        "commands: signup [NAME] [--token T], login [NAME], ls [-a] [PATH], cd [PATH], pwd,\n\
         \x20 mkdir [-p] PATH, put LOCAL [REMOTE], get [-r] REMOTE [LOCAL], cat PATH,\n\
         \x20 rm [-r] PATH, mv FROM TO, cp FROM TO, stat PATH, space, passwd, exit\n\
         `COMMAND --help` explains one command"
    );
}

fn entry_json(entry: &Entry) -> serde_json::Value {
    json!({
        "name": entry.name,
        "kind": if entry.kind == Kind::Dir { "dir" } else { "file" },
        "size": entry.size,
        "modified": entry.modified,
        "mime": entry.mime,
        "hidden": entry.hidden,
        "writable": entry.writable,
    })
}

fn entry_line(entry: &Entry) -> String {
    let kind = if entry.kind == Kind::Dir { "d" } else { "-" };
    let mode = if entry.writable { "rw" } else { "r-" };
    let suffix = if entry.kind == Kind::Dir { "/" } else { "" };
    format!(
        "{kind}{mode} {:>12} {} {}{suffix}",
        entry.size,
        format_time(entry.modified),
        entry.name
    )
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's method).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn done(session: &Session, what: serde_json::Value) {
    if session.json {
        println!("{what}");
    }
}

/// A token from `--token`: the bare token or a signup link holding it.
fn token_of(text: &str) -> String {
    match text.split_once("token=") {
        Some((_, rest)) => rest.split(['&', '#']).next().unwrap_or(rest).to_string(),
        None => text.to_string(),
    }
}

pub(crate) async fn run(session: &mut Session, command: Command) -> Result<()> {
    match command {
        Command::Signup { username, token } => {
            let username = username.context("signup needs a username")?;
            let pw = password(&format!("choose a password for {username}: "))?;
            if std::env::var("PEERGOS_PASSWORD").is_err() {
                let again = password("repeat it: ")?;
                if again != pw {
                    bail!("the passwords differ");
                }
            }
            let token = token.as_deref().map(token_of);
            let user =
                UserContext::signup(Arc::clone(&session.net), &username, &pw, token.as_deref())
                    .await?;
            session.set_user(user);
            if session.json {
                done(session, json!({"signed_up": username}));
            } else {
                println!("signed up as {username}; your home is /{username}");
            }
        }
        Command::Login { username } => {
            let username = username.context("login needs a username")?;
            let pw = password(&format!("password for {username}: "))?;
            let user = UserContext::login(Arc::clone(&session.net), &username, &pw).await?;
            session.set_user(user);
            done(session, json!({"logged_in": username}));
        }
        Command::Ls { path, all } => {
            let shown = path.unwrap_or_else(|| session.cwd.clone());
            let fs_path = session.fs_path(&shown)?;
            let user = session.user()?;
            let mut entries = if all {
                user.fs().ls_all(&fs_path).await?
            } else {
                user.fs().ls(&fs_path).await?
            };
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            if session.json {
                let list: Vec<_> = entries.iter().map(entry_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for entry in &entries {
                    println!("{}", entry_line(entry));
                }
            }
        }
        Command::Cd { path } => {
            let target = match path {
                Some(path) => session.absolute(&path),
                None => format!("/{}", session.user()?.username()),
            };
            let entry = session
                .user()?
                .fs()
                .stat(&session.fs_path(&target)?)
                .await?;
            if entry.kind != Kind::Dir {
                bail!("{target}: not a directory");
            }
            session.cwd = target;
        }
        Command::Pwd => {
            if session.json {
                println!("{}", json!({"cwd": session.cwd}));
            } else {
                println!("{}", session.cwd);
            }
        }
        Command::Mkdir { path, parents } => {
            let fs_path = session.fs_path(&path)?;
            let user = session.user()?;
            if parents {
                transfer::mkdirs(user, &fs_path).await?;
            } else {
                user.fs().mkdir(&fs_path).await?;
            }
            done(session, json!({"created": session.absolute(&path)}));
        }
        Command::Put { local, remote } => {
            let remote = remote.unwrap_or_else(|| session.cwd.clone());
            let fs_path = session.fs_path(&remote)?;
            let user = Arc::clone(session.user()?);
            let report = transfer::put(&user, &local, &fs_path, !session.json).await?;
            if session.json {
                println!("{}", report.json());
            } else if session.interactive || report.files > 1 {
                println!("{}", report.line("uploaded"));
            }
        }
        Command::Get {
            remote,
            local,
            recursive,
        } => {
            let fs_path = session.fs_path(&remote)?;
            let user = Arc::clone(session.user()?);
            let name = fs_path.rsplit('/').next().unwrap_or("").to_string();
            let local = local.unwrap_or_else(|| {
                std::path::PathBuf::from(if name.is_empty() { "." } else { &name })
            });
            let report = transfer::get(&user, &fs_path, &local, recursive, !session.json).await?;
            if session.json {
                println!("{}", report.json());
            } else if session.interactive || report.files > 1 {
                println!("{}", report.line("downloaded"));
            }
        }
        Command::Cat { path } => {
            let fs_path = session.fs_path(&path)?;
            let mut out = tokio::io::stdout();
            session.user()?.fs().download(&fs_path, &mut out).await?;
            tokio::io::AsyncWriteExt::flush(&mut out).await?;
        }
        Command::Rm { path, recursive } => {
            let fs_path = session.fs_path(&path)?;
            if fs_path == "/" {
                bail!("refusing to remove your home directory");
            }
            let user = session.user()?;
            let entry = user.fs().stat(&fs_path).await?;
            match (entry.kind, recursive) {
                (Kind::File, _) => user.fs().rm(&fs_path).await?,
                (Kind::Dir, true) => transfer::remove_tree(user, &fs_path).await?,
                (Kind::Dir, false) => bail!("{path}: is a directory (use rm -r)"),
            }
            done(session, json!({"removed": session.absolute(&path)}));
        }
        Command::Mv { from, to } => {
            let (src, dst) = (session.fs_path(&from)?, session.fs_path(&to)?);
            let dst = into_dir(session.user()?, &src, dst).await?;
            session.user()?.fs().rename(&src, &dst).await?;
            done(session, json!({"moved": session.absolute(&from)}));
        }
        Command::Cp { from, to } => {
            let (src, dst) = (session.fs_path(&from)?, session.fs_path(&to)?);
            let dst = into_dir(session.user()?, &src, dst).await?;
            session.user()?.fs().copy(&src, &dst).await?;
            done(session, json!({"copied": session.absolute(&from)}));
        }
        Command::Stat { path } => {
            let entry = session.user()?.fs().stat(&session.fs_path(&path)?).await?;
            if session.json {
                println!("{}", entry_json(&entry));
            } else {
                println!("{}", entry_line(&entry));
                if !entry.mime.is_empty() {
                    println!("type: {}", entry.mime);
                }
            }
        }
        Command::Space => {
            let space = session.user()?.space().await?;
            if session.json {
                println!("{}", json!({"used": space.used, "quota": space.quota}));
            } else {
                println!(
                    "{} used of {} ({:.1}%)",
                    transfer::human(space.used),
                    transfer::human(space.quota),
                    100.0 * space.used as f64 / space.quota.max(1) as f64
                );
            }
        }
        Command::Passwd => {
            let user = session.user.take().context("not logged in")?;
            let mut user = Arc::try_unwrap(user).map_err(|user| {
                session.user = Some(user);
                anyhow::anyhow!("a transfer is still running; try again when it ends")
            })?;
            let outcome = async {
                let old = password("current password: ")?;
                let new = match std::env::var("PEERGOS_NEW_PASSWORD") {
                    Ok(new) => new,
                    Err(_) => {
                        let new = rpassword::prompt_password("new password: ")?;
                        if rpassword::prompt_password("repeat it: ")? != new {
                            bail!("the passwords differ");
                        }
                        new
                    }
                };
                user.change_password(&old, &new).await?;
                Ok(())
            }
            .await;
            session.user = Some(Arc::new(user));
            outcome?;
            if session.json {
                done(session, json!({"password_changed": true}));
            } else {
                println!("password changed");
            }
        }
    }
    Ok(())
}

/// `mv a dir` and `cp a dir` put `a` inside an existing directory.
async fn into_dir(user: &UserContext, src: &str, dst: String) -> Result<String> {
    match user.fs().stat(&dst).await {
        Ok(entry) if entry.kind == Kind::Dir => {
            let name = src.rsplit('/').next().unwrap_or_default();
            Ok(format!("{}/{name}", dst.trim_end_matches('/')))
        }
        _ => Ok(dst),
    }
}
