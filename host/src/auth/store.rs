//! Users and service tokens, kept in `<warehouse>/security/principals.json` (owner
//! readable only, outside what DuckDB may read). Changes are read-modify-write under
//! a file lock and land by an atomic rename; a running host notices the new file on
//! its next request.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::principal::Grant;
use super::token::{io, tempfile_in};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principals {
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    #[serde(default)]
    pub tokens: BTreeMap<String, ServiceToken>,
}

impl Principals {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// argon2id, in the PHC string format.
    pub password_hash: String,
    pub grants: Vec<Grant>,
    /// Changes with the password, ending the tokens issued before.
    pub epoch: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceToken {
    /// In the token's claims: a token re-created under the same name is a new one.
    pub id: String,
    pub grants: Vec<Grant>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

pub fn security_dir(warehouse: &Path) -> PathBuf {
    warehouse.join("security")
}

/// The principals file of a warehouse.
pub struct Store {
    path: PathBuf,
    /// The last version read, and the file identity it was read from.
    cached: Mutex<Option<(FileStamp, Arc<Principals>)>>,
}

#[derive(Debug, Clone, PartialEq)]
struct FileStamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

impl Store {
    pub fn new(warehouse: &Path) -> Self {
        Self {
            path: security_dir(warehouse).join("principals.json"),
            cached: Mutex::new(None),
        }
    }

    /// The current principals: read again only when the file changed.
    pub fn current(&self) -> Result<Arc<Principals>> {
        use std::os::unix::fs::MetadataExt as _;
        let stamp = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(FileStamp {
                modified: meta
                    .modified()
                    .map_err(|err| io("reading", &self.path, err))?,
                len: meta.len(),
                inode: meta.ino(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(io("reading", &self.path, err)),
        };
        let Some(stamp) = stamp else {
            return Ok(Arc::default());
        };
        let mut cached = self.cached.lock().expect("principals cache");
        if let Some((seen, principals)) = cached.as_ref()
            && *seen == stamp
        {
            return Ok(principals.clone());
        }
        let principals = Arc::new(self.read()?);
        *cached = Some((stamp, principals.clone()));
        Ok(principals)
    }

    fn read(&self) -> Result<Principals> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Principals::default());
            }
            Err(err) => return Err(io("reading", &self.path, err)),
        };
        serde_json::from_str(&text).map_err(|err| {
            Error::internal(format!(
                "{} is not a principals file: {err}",
                self.path.display()
            ))
        })
    }

    /// Change the principals under the lock; the change lands whole or not at all.
    pub fn update<T>(&self, change: impl FnOnce(&mut Principals) -> Result<T>) -> Result<T> {
        let dir = self
            .path
            .parent()
            .expect("the principals file has a directory");
        create_private_dir(dir)?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|err| io("opening", &lock_path, err))?;
        // SAFETY: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io("locking", &lock_path, std::io::Error::last_os_error()));
        }
        let mut principals = self.read()?;
        let outcome = change(&mut principals)?;
        let temp = tempfile_in(dir)?;
        let text = serde_json::to_string_pretty(&principals).expect("principals serialize");
        let written = std::fs::write(&temp, text)
            .and_then(|()| std::fs::File::open(&temp)?.sync_all())
            .and_then(|()| std::fs::rename(&temp, &self.path));
        if let Err(err) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io("writing", &self.path, err));
        }
        Ok(outcome)
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(err) => Err(io("creating", dir, err)),
    }
}

/// A new random id (for epochs and token ids).
pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The argon2id hash of `password` (memory-hard: ~19 MiB and tens of milliseconds).
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|err| Error::internal(format!("salting: {err}")))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|err| Error::internal(format!("salting: {err}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| Error::internal(format!("hashing the password: {err}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A name for a user or service token: what a log line and a CLI can carry.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{kind} name {name:?}: use 1 to 64 letters, digits, _, -, . or @"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_land_and_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.current().unwrap().is_empty());
        let hash = hash_password("s3cret").unwrap();
        assert!(verify_password("s3cret", &hash) && !verify_password("S3cret", &hash));
        store
            .update(|p| {
                p.users.insert("ann".into(), user(&hash));
                Ok(())
            })
            .unwrap();
        // Another process's view (a running host) sees it without restarting.
        let other = Store::new(dir.path());
        assert!(other.current().unwrap().users.contains_key("ann"));
        store.update(|p| Ok(p.users.clear())).unwrap();
        assert!(other.current().unwrap().users.is_empty());
        let failed: Result<()> = store.update(|p| {
            p.users.insert("bob".into(), user(&hash));
            Err(Error::invalid("no"))
        });
        assert!(failed.is_err());
        assert!(
            store.current().unwrap().users.is_empty(),
            "a failed change lands nothing"
        );
    }

    fn user(hash: &str) -> User {
        User {
            password_hash: hash.into(),
            grants: vec![Grant::parse("read:*").unwrap()],
            epoch: random_id(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("user", "dbt-prod@team.x").is_ok());
        for bad in ["", "a b", "ünï", &"a".repeat(65)] {
            assert!(check_name("user", bad).is_err(), "{bad}");
        }
    }
}
