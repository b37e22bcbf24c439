//! `link create`, `link list` and `link revoke`: the user's secret links.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use peergos_core::LinkOptions;
use serde_json::json;

use crate::commands::{done, format_time, now_ms};
use crate::Session;

#[derive(Subcommand)]
pub(crate) enum LinkAction {
    /// Make a secret link to a file or folder and print it.
    Create {
        /// What it opens.
        path: String,
        /// Let its holder write too.
        #[arg(short, long)]
        write: bool,
        /// Stop working after this long (e.g. 30m, 12h, 7d; plain numbers
        /// are seconds).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Open at most this many times.
        #[arg(long, value_name = "N")]
        uses: Option<u64>,
        /// Also ask for a password (from `PEERGOS_LINK_PASSWORD` or a prompt).
        #[arg(long)]
        password: bool,
    },
    /// Your links, with how often each was opened.
    List,
    /// Revoke a link: it stops opening.
    Revoke {
        /// The link's id (see `link list`) or the whole link.
        id: String,
    },
}

pub(crate) async fn run(session: &Session, action: LinkAction) -> Result<()> {
    let user = session.user()?;
    match action {
        LinkAction::Create {
            path,
            write,
            expires,
            uses,
            password,
        } => {
            let expiry = match expires {
                Some(text) => Some(now_ms() + parse_duration(&text)?),
                None => None,
            };
            let password = if password {
                Some(match std::env::var("PEERGOS_LINK_PASSWORD") {
                    Ok(pw) => pw,
                    Err(_) => {
                        let pw = rpassword::prompt_password("link password: ")?;
                        if rpassword::prompt_password("repeat it: ")? != pw {
                            bail!("the passwords differ");
                        }
                        pw
                    }
                })
            } else {
                None
            };
            let link = user
                .create_link(
                    &session.absolute(&path),
                    LinkOptions {
                        writable: write,
                        expiry,
                        max_uses: uses,
                        password,
                    },
                )
                .await?;
            if session.json {
                println!("{}", json!({"id": link.id, "url": link.to_url()}));
            } else {
                // The link alone on its line, ready to paste.
                println!("{}", link.to_url());
            }
        }
        LinkAction::List => {
            let links = user.links().await?;
            if session.json {
                let list: Vec<_> = links
                    .iter()
                    .map(|l| {
                        json!({
                            "id": l.id,
                            "path": l.info.path,
                            "url": l.info.url,
                            "writable": l.info.writable,
                            "password": l.info.password,
                            "expiry": l.info.expiry,
                            "max_uses": l.info.max_uses,
                            "uses": l.status.as_ref().map(|s| s.uses),
                            "revoked": l.status.as_ref().is_none_or(|s| s.revoked),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if links.is_empty() {
                println!("no secret links (link create PATH)");
            } else {
                for l in &links {
                    let mut notes = vec![if l.info.writable { "rw" } else { "r" }.to_string()];
                    match &l.status {
                        Some(s) if s.revoked => notes.push("revoked".into()),
                        Some(s) => notes.push(match s.max_uses {
                            Some(max) => format!("opened {}/{max}", s.uses),
                            None => format!("opened {}", s.uses),
                        }),
                        None => notes.push("not on the server".into()),
                    }
                    if let Some(expiry) = l.info.expiry {
                        let word = if expiry <= now_ms() {
                            "expired"
                        } else {
                            "expires"
                        };
                        notes.push(format!("{word} {}", format_time(expiry as i64)));
                    }
                    if l.info.password {
                        notes.push("password".into());
                    }
                    println!("{} {} [{}]", l.id, l.info.path, notes.join(", "));
                }
            }
        }
        LinkAction::Revoke { id } => {
            let id = match peergos_core::SecretLink::parse(&id) {
                Ok(link) => link.id,
                Err(_) => id,
            };
            user.revoke_link(&id).await?;
            if session.json {
                done(session, json!({"revoked": id}));
            } else {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}

/// `30m`, `12h`, `7d`, `90s` or plain seconds, as milliseconds.
fn parse_duration(text: &str) -> Result<u64> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("'{text}' is not a duration like 30m, 12h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("'{text}': the unit must be s, m, h or d"),
    };
    Ok(n.saturating_mul(seconds).saturating_mul(1000))
}
