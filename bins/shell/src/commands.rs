//! The shell's commands.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use peergos_core::{Entry, Kind, Place, UserContext};
use serde_json::json;

use crate::{open_link, password, transfer, Session};

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
    /// Show who you are logged in as, on which server, and until when your
    /// name is held (it is renewed automatically at login).
    Whoami,
    /// Change the password.
    Passwd,
    /// Ask to follow a user (they see the request and may accept it).
    Follow {
        /// Whom to follow.
        username: String,
    },
    /// List follow requests waiting for your answer (and apply answers to
    /// yours).
    Requests,
    /// Accept a follow request: they can then see what you share with them.
    Accept {
        /// Who sent it.
        username: String,
    },
    /// Accept a follow request and follow them back.
    Reciprocate {
        /// Who sent it.
        username: String,
    },
    /// Deny a follow request (nothing is sent back).
    Deny {
        /// Who sent it.
        username: String,
    },
    /// Stop following a user.
    Unfollow {
        /// Whom.
        username: String,
    },
    /// Stop a user following you: everything shared with them is unshared.
    RemoveFollower {
        /// Whom.
        username: String,
    },
    /// Users you follow (you see what they share with you).
    Friends,
    /// Users who follow you (you can share with them).
    Followers,
    /// Share a file or folder with followers.
    Share {
        /// What to share.
        path: String,
        /// With whom.
        #[arg(required = true)]
        usernames: Vec<String>,
        /// Let them write into it too.
        #[arg(short, long)]
        write: bool,
    },
    /// Stop sharing with some followers (the keys are rotated; the others
    /// keep access).
    Unshare {
        /// What to unshare.
        path: String,
        /// From whom.
        #[arg(required = true)]
        usernames: Vec<String>,
    },
    /// What you shared, and with whom.
    Shared,
    /// Secret links: create, list, revoke.
    Link {
        #[command(subcommand)]
        action: crate::links::LinkAction,
    },
    /// Open a secret link (no account needed); then `ls`, `get` and so on.
    OpenLink {
        /// The link.
        url: String,
    },
}

pub(crate) fn help() {
    println!(
        "commands: signup [NAME] [--token T], login [NAME], ls [-a] [PATH], cd [PATH], pwd,\n\
         \x20 mkdir [-p] PATH, put LOCAL [REMOTE], get [-r] REMOTE [LOCAL], cat PATH,\n\
         \x20 rm [-r] PATH, mv FROM TO, cp FROM TO, stat PATH, space, passwd,\n\
         \x20 follow NAME, requests, accept NAME, reciprocate NAME, deny NAME, unfollow NAME,\n\
         \x20 remove-follower NAME, friends, followers, share [-w] PATH NAME..., unshare PATH NAME...,\n\
         \x20 shared, link create|list|revoke, open-link URL, exit\n\
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
    // Listings made of names only (users, folders above a share) have no time.
    let time = if entry.modified == 0 {
        " ".repeat(16)
    } else {
        format_time(entry.modified)
    };
    format!(
        "{kind}{mode} {:>12} {time} {}{suffix}",
        entry.size, entry.name
    )
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
pub(crate) fn format_time(ms: i64) -> String {
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

pub(crate) fn done(session: &Session, what: serde_json::Value) {
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

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn list(session: &Session, path: &str, all: bool) -> Result<Vec<Entry>> {
    Ok(match session.place(path).await? {
        Place::Fs { fs, path } => {
            if all {
                fs.ls_all(&path).await?
            } else {
                fs.ls(&path).await?
            }
        }
        Place::Virtual { entries } => entries,
    })
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
            let user = UserContext::signup_with(
                Arc::clone(&session.net),
                &username,
                &pw,
                token.as_deref(),
                &session.device,
            )
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
            let user =
                UserContext::login_with(Arc::clone(&session.net), &username, &pw, &session.device)
                    .await?;
            session.set_user(user);
            done(session, json!({"logged_in": username}));
        }
        Command::Ls { path, all } => {
            let shown = path.unwrap_or_else(|| session.cwd.clone());
            let mut entries = list(session, &shown, all).await?;
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
            let target = match (path, &session.user, &session.link) {
                (Some(path), _, _) => session.absolute(&path),
                (None, _, Some(link)) => format!("/{}", link.entry().name),
                (None, Some(user), None) => format!("/{}", user.username()),
                (None, None, None) => "/".to_string(),
            };
            match session.place(&target).await? {
                Place::Virtual { .. } => {}
                Place::Fs { fs, path } => {
                    if fs.stat(&path).await?.kind != Kind::Dir {
                        bail!("{target}: not a directory");
                    }
                }
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
            let (fs, fs_path) = session.fs_path(&path).await?;
            if parents {
                transfer::mkdirs(&fs, &fs_path).await?;
            } else {
                fs.mkdir(&fs_path).await?;
            }
            done(session, json!({"created": session.absolute(&path)}));
        }
        Command::Put { local, remote } => {
            let remote = remote.unwrap_or_else(|| session.cwd.clone());
            let (fs, fs_path) = session.fs_path(&remote).await?;
            let report = transfer::put(&fs, &local, &fs_path, !session.json).await?;
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
            let (fs, fs_path) = session.fs_path(&remote).await?;
            let name = session
                .absolute(&remote)
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let local = local.unwrap_or_else(|| {
                std::path::PathBuf::from(if name.is_empty() { "." } else { &name })
            });
            let report = transfer::get(&fs, &fs_path, &local, recursive, !session.json).await?;
            if session.json {
                println!("{}", report.json());
            } else if session.interactive || report.files > 1 {
                println!("{}", report.line("downloaded"));
            }
        }
        Command::Cat { path } => {
            let (fs, fs_path) = session.fs_path(&path).await?;
            let mut out = tokio::io::stdout();
            fs.download(&fs_path, &mut out).await?;
            tokio::io::AsyncWriteExt::flush(&mut out).await?;
        }
        Command::Rm { path, recursive } => {
            let (fs, fs_path) = session.fs_path(&path).await?;
            if fs_path == "/" {
                bail!(
                    "refusing to remove {} (the root of what you can reach there)",
                    session.absolute(&path)
                );
            }
            let entry = fs.stat(&fs_path).await?;
            match (entry.kind, recursive) {
                (Kind::File, _) => fs.rm(&fs_path).await?,
                (Kind::Dir, true) => transfer::remove_tree(&fs, &fs_path).await?,
                (Kind::Dir, false) => bail!("{path}: is a directory (use rm -r)"),
            }
            done(session, json!({"removed": session.absolute(&path)}));
        }
        Command::Mv { from, to } => {
            let ((fs, src), (to_fs, dst)) =
                (session.fs_path(&from).await?, session.fs_path(&to).await?);
            if !Arc::ptr_eq(&fs, &to_fs) {
                bail!("mv works within one shared tree; copy with get and put instead");
            }
            let dst = into_dir(&fs, &src, dst).await?;
            fs.rename(&src, &dst).await?;
            done(session, json!({"moved": session.absolute(&from)}));
        }
        Command::Cp { from, to } => {
            let ((fs, src), (to_fs, dst)) =
                (session.fs_path(&from).await?, session.fs_path(&to).await?);
            if !Arc::ptr_eq(&fs, &to_fs) {
                bail!("cp works within one shared tree; copy with get and put instead");
            }
            let dst = into_dir(&fs, &src, dst).await?;
            fs.copy(&src, &dst).await?;
            done(session, json!({"copied": session.absolute(&from)}));
        }
        Command::Stat { path } => {
            let entry = match session.place(&path).await? {
                Place::Fs { fs, path } => fs.stat(&path).await?,
                Place::Virtual { .. } => bail!(
                    "{}: a listing of users and shares (use ls)",
                    session.absolute(&path)
                ),
            };
            if session.json {
                println!("{}", entry_json(&entry));
            } else {
                println!("{}", entry_line(&entry));
                if !entry.mime.is_empty() {
                    println!("type: {}", entry.mime);
                }
            }
        }
        Command::Whoami => {
            let user = session.user()?;
            let expiry = user.name_expiry();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let days = expiry.saturating_sub(now) / (24 * 60 * 60);
            if session.json {
                println!(
                    "{}",
                    json!({
                        "username": user.username(),
                        "identity": user.identity().to_string(),
                        "name_expires": expiry,
                    })
                );
            } else {
                println!("{} ({})", user.username(), user.identity());
                println!(
                    "your name is held for {days} more days (until {expiry} s after the Unix \
                     epoch); it is renewed automatically at login once fewer than {} days remain",
                    peergos_core::RENEW_WITHIN_SECS / (24 * 60 * 60)
                );
            }
        }
        Command::Space => {
            let space = session.user()?.space().await?;
            if session.json {
                println!(
                    "{}",
                    json!({"used": space.used, "quota": space.quota, "pending": space.pending})
                );
            } else {
                println!(
                    "{} used of {} ({:.1}%)",
                    transfer::human(space.used),
                    transfer::human(space.quota),
                    100.0 * space.used as f64 / space.quota.max(1) as f64
                );
                if space.pending > 0 {
                    println!(
                        "{} more held by uploads in progress (released when they finish, \
                         or a few minutes after they stop)",
                        transfer::human(space.pending)
                    );
                }
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
        Command::Follow { username } => {
            session.user()?.follow(&username).await?;
            if session.json {
                done(session, json!({"requested": username}));
            } else {
                println!("asked to follow {username}; you will see their shares once they accept");
            }
        }
        Command::Requests => {
            let pending = session.user()?.follow_requests().await?;
            if session.json {
                let list: Vec<_> = pending
                    .iter()
                    .map(|r| json!({"from": r.from, "received": r.received}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if pending.is_empty() {
                println!("no follow requests waiting");
            } else {
                for request in &pending {
                    println!(
                        "{} {}  (accept, reciprocate or deny)",
                        format_time(request.received as i64),
                        request.from
                    );
                }
            }
        }
        Command::Accept { username } => {
            session.user()?.accept(&username, false).await?;
            report_social(session, "accepted", &username, "now follows you");
        }
        Command::Reciprocate { username } => {
            session.user()?.accept(&username, true).await?;
            report_social(
                session,
                "reciprocated",
                &username,
                "and you now follow each other",
            );
        }
        Command::Deny { username } => {
            session.user()?.deny(&username).await?;
            report_social(session, "denied", &username, "was denied");
        }
        Command::Unfollow { username } => {
            session.user()?.unfollow(&username).await?;
            report_social(session, "unfollowed", &username, "is no longer followed");
        }
        Command::RemoveFollower { username } => {
            session.user()?.remove_follower(&username).await?;
            report_social(
                session,
                "removed_follower",
                &username,
                "no longer follows you",
            );
        }
        Command::Friends | Command::Followers => {
            let user = session.user()?;
            // Pick up answers to requests first.
            user.follow_requests().await?;
            let state = user.social().await?;
            let following = matches!(command, Command::Friends);
            let names: Vec<&String> = if following {
                state.following.keys().collect()
            } else {
                state.followers.keys().collect()
            };
            if session.json {
                let list: Vec<_> = names
                    .iter()
                    .map(|name| {
                        json!({
                            "name": name,
                            "mutual": state.is_mutual(name),
                        })
                    })
                    .collect();
                let key = if following { "following" } else { "followers" };
                let mut out = json!({});
                out[key] = json!(list);
                if following {
                    out["pending"] = json!(state.sent.keys().collect::<Vec<_>>());
                }
                println!("{out}");
            } else {
                for name in &names {
                    let mutual = state.is_mutual(name);
                    println!("{name}{}", if mutual { "  (mutual)" } else { "" });
                }
                if following {
                    for name in state.sent.keys() {
                        println!("{name}  (request pending)");
                    }
                }
                if names.is_empty() && (!following || state.sent.is_empty()) {
                    println!(
                        "{}",
                        if following {
                            "you follow nobody yet (follow NAME)"
                        } else {
                            "nobody follows you yet"
                        }
                    );
                }
            }
        }
        Command::Share {
            path,
            usernames,
            write,
        } => {
            let absolute = session.absolute(&path);
            let names: Vec<&str> = usernames.iter().map(String::as_str).collect();
            session.user()?.share(&absolute, &names, write).await?;
            if session.json {
                done(
                    session,
                    json!({"shared": absolute, "with": usernames, "writable": write}),
                );
            } else {
                println!(
                    "shared {absolute} {} with {}",
                    if write { "writable" } else { "read-only" },
                    usernames.join(", ")
                );
            }
        }
        Command::Unshare { path, usernames } => {
            let absolute = session.absolute(&path);
            let names: Vec<&str> = usernames.iter().map(String::as_str).collect();
            session.user()?.unshare(&absolute, &names).await?;
            if session.json {
                done(session, json!({"unshared": absolute, "from": usernames}));
            } else {
                println!(
                    "unshared {absolute} from {} (keys rotated)",
                    usernames.join(", ")
                );
            }
        }
        Command::Shared => {
            let state = session.user()?.social().await?;
            if session.json {
                let list: Vec<_> = state
                    .shares
                    .iter()
                    .map(|(path, with)| json!({"path": path, "with": with}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if state.shares.is_empty() {
                println!("you have shared nothing (share PATH NAME)");
            } else {
                for (path, with) in &state.shares {
                    let with: Vec<String> = with
                        .iter()
                        .map(|(name, w)| format!("{name} ({})", if *w { "rw" } else { "r" }))
                        .collect();
                    println!("{path}: {}", with.join(", "));
                }
            }
        }
        Command::Link { action } => crate::links::run(session, action).await?,
        Command::OpenLink { url } => {
            let view = open_link(&url).await?;
            let entry = view.entry().clone();
            session.set_link(view);
            if session.json {
                println!("{}", entry_json(&entry));
            } else {
                println!("{}", entry_line(&entry));
                if session.interactive {
                    println!(
                        "opened the link: it is /{} here (`ls`, `get`, ...)",
                        entry.name
                    );
                }
            }
        }
    }
    Ok(())
}

fn report_social(session: &Session, key: &str, name: &str, what: &str) {
    if session.json {
        let mut value = json!({});
        value[key] = json!(name);
        println!("{value}");
    } else {
        println!("{name} {what}");
    }
}

/// `mv a dir` and `cp a dir` put `a` inside an existing directory.
async fn into_dir(fs: &peergos_core::RemoteFs, src: &str, dst: String) -> Result<String> {
    match fs.stat(&dst).await {
        Ok(entry) if entry.kind == Kind::Dir => {
            let name = src.rsplit('/').next().unwrap_or_default();
            Ok(format!("{}/{name}", dst.trim_end_matches('/')))
        }
        _ => Ok(dst),
    }
}
