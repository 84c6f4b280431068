//! `host users` and `host tokens`: the warehouse's principals, changed in place. A
//! running host sees a change on its next request.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::{Args, Subcommand};

use crate::auth::{Auth, Grant, User, check_name, hash_password, random_id};
use crate::config::Warehouse;

const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user with roles per namespace pattern, e.g.
    /// `host users add dbt --grant write:raw,marts --grant 'read:*'`.
    /// The password is asked for on the terminal, or read from standard input.
    Add {
        name: String,
        #[command(flatten)]
        grants: Grants,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        warehouse: Warehouse,
    },
    /// List the users and their grants.
    List {
        #[command(flatten)]
        warehouse: Warehouse,
    },
    /// Remove a user; the bearer tokens it obtained stop working at once.
    Remove {
        name: String,
        #[command(flatten)]
        warehouse: Warehouse,
    },
    /// Change a user's password; its earlier bearer tokens stop working.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        warehouse: Warehouse,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a long-lived service token for an unattended client (dbt, a
    /// scheduler) and print it once on standard output. Re-creating a name
    /// replaces its token.
    Create {
        name: String,
        #[command(flatten)]
        grants: Grants,
        /// Expire after this many days [default: never].
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
        expires_in: Option<u32>,
        #[command(flatten)]
        warehouse: Warehouse,
    },
    /// List the service tokens (names and grants; tokens are never shown again).
    List {
        #[command(flatten)]
        warehouse: Warehouse,
    },
    /// Revoke a service token: it stops working at once.
    Revoke {
        name: String,
        #[command(flatten)]
        warehouse: Warehouse,
    },
}

#[derive(Debug, Args)]
pub struct Grants {
    /// A role on namespace patterns: `read:NS[,NS...]`, `write:NS[,...]` (`*`
    /// matches any characters) or `admin` (everything). Repeat for several.
    #[arg(long = "grant", value_name = "ROLE:NAMESPACES", required = true, value_parser = Grant::parse)]
    grants: Vec<Grant>,
}

#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input (for scripts).
    #[arg(long)]
    password_stdin: bool,
}

fn auth(warehouse: &Warehouse) -> anyhow::Result<Auth> {
    Ok(Auth::new(
        &super::warehouse::storage(warehouse)?,
        false,
        std::time::Duration::ZERO,
    ))
}

pub async fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add {
            name,
            grants,
            password,
            warehouse,
        } => {
            check_name("user", &name)?;
            let auth = auth(&warehouse)?;
            if auth.store().current().await?.users.contains_key(&name) {
                bail!("user {name:?} exists: `host users passwd {name}` changes its password");
            }
            let hash = hash_password(&password.read(&name)?)?;
            auth.store()
                .update(|p| {
                    let user = User {
                        password_hash: hash,
                        grants: grants.grants.clone(),
                        epoch: random_id(),
                        created_at: Utc::now(),
                    };
                    p.users.insert(name.clone(), user);
                    Ok(())
                })
                .await?;
            eprintln!("added user {name} ({})", list(&grants.grants));
        }
        UsersCommand::List { warehouse } => {
            let principals = auth(&warehouse)?.store().current().await?;
            println!("{:<24} {:<26} grants", "user", "created");
            for (name, user) in &principals.users {
                println!(
                    "{name:<24} {:<26} {}",
                    user.created_at.to_rfc3339(),
                    list(&user.grants)
                );
            }
        }
        UsersCommand::Remove { name, warehouse } => {
            auth(&warehouse)?
                .store()
                .update(|p| {
                    p.users
                        .remove(&name)
                        .map(drop)
                        .ok_or_else(|| crate::Error::not_found(format!("no user {name:?}")))
                })
                .await?;
            eprintln!("removed user {name}");
        }
        UsersCommand::Passwd {
            name,
            password,
            warehouse,
        } => {
            let auth = auth(&warehouse)?;
            if !auth.store().current().await?.users.contains_key(&name) {
                bail!("no user {name:?}: `host users add` adds one");
            }
            let hash = hash_password(&password.read(&name)?)?;
            auth.store()
                .update(|p| {
                    let user = p.users.get_mut(&name).ok_or_else(|| {
                        crate::Error::not_found(format!("user {name:?} was removed meanwhile"))
                    })?;
                    user.password_hash = hash;
                    user.epoch = random_id();
                    Ok(())
                })
                .await?;
            eprintln!("changed the password of {name}");
        }
    }
    Ok(())
}

pub async fn tokens(command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create {
            name,
            grants,
            expires_in,
            warehouse,
        } => {
            let expires_at =
                expires_in.map(|days| Utc::now() + chrono::Duration::days(days.into()));
            let token = auth(&warehouse)?
                .create_service_token(&name, grants.grants.clone(), expires_at)
                .await?;
            println!("{token}");
            eprintln!(
                "created service token {name} ({}; {}): it is shown only this once",
                list(&grants.grants),
                expires_at.map_or("never expires".into(), |t| format!(
                    "expires {}",
                    t.to_rfc3339()
                ))
            );
        }
        TokensCommand::List { warehouse } => {
            let principals = auth(&warehouse)?.store().current().await?;
            println!("{:<24} {:<26} {:<26} grants", "token", "created", "expires");
            for (name, token) in &principals.tokens {
                let expires = token.expires_at.map_or("never".into(), |t| t.to_rfc3339());
                println!(
                    "{name:<24} {:<26} {expires:<26} {}",
                    token.created_at.to_rfc3339(),
                    list(&token.grants)
                );
            }
        }
        TokensCommand::Revoke { name, warehouse } => {
            auth(&warehouse)?
                .store()
                .update(|p| {
                    p.tokens.remove(&name).map(drop).ok_or_else(|| {
                        crate::Error::not_found(format!("no service token {name:?}"))
                    })
                })
                .await?;
            eprintln!("revoked service token {name}");
        }
    }
    Ok(())
}

fn list(grants: &[Grant]) -> String {
    grants
        .iter()
        .map(Grant::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl PasswordSource {
    fn read(&self, user: &str) -> anyhow::Result<String> {
        let password = if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        } else if std::io::stdin().is_terminal() {
            let first = ask(&format!("password for {user}: "))?;
            if ask("again: ")? != first {
                bail!("the passwords differ");
            }
            first
        } else {
            bail!(
                "no terminal to ask for the password on: pass --password-stdin and write it to standard input"
            );
        };
        if password.chars().count() < MIN_PASSWORD_CHARS {
            bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
        }
        Ok(password)
    }
}

/// A line from the terminal, not echoed.
fn ask(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios calls on standard input with a zeroed struct they fill in.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let echo_off = unsafe { libc::tcgetattr(fd, &mut saved) } == 0 && {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) == 0 }
    };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        eprintln!();
    }
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
