//! Users and service tokens, kept in `<warehouse>/security/principals.json` beside
//! the token signing key (outside what DuckDB may read). In a local warehouse the
//! file is owner-readable only, changes are read-modify-write under a file lock and
//! land by an atomic rename, and a running host notices them on its next request.
//! On object storage every host sharing the warehouse reads the same object:
//! changes land by a conditional write (refused if another landed since the read),
//! and a host reads it again at most once a second.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::principal::Grant;
use super::token::{SigningKey, io, tempfile_in};
use crate::error::{Error, Result};
use crate::storage::{Storage, local_path};

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

/// How long a host on object storage uses the principals it read before reading
/// them again.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The principals and the signing key of a warehouse.
pub struct Store {
    place: Place,
    /// The last version read, and how it was stamped.
    cached: Mutex<Option<(Stamp, Arc<Principals>)>>,
}

enum Place {
    /// `<dir>/principals.json` and `<dir>/token.key`.
    Files(PathBuf),
    /// `<security>/principals.json` and `<security>/token.key` on object storage.
    Objects(Storage),
}

#[derive(Debug, Clone, PartialEq)]
enum Stamp {
    /// The file's identity when it was read.
    File(FileStamp),
    Fetched(Instant),
}

#[derive(Debug, Clone, PartialEq)]
struct FileStamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

impl Store {
    /// The store of the warehouse `warehouse` (its `security/`).
    pub fn new(warehouse: &Storage) -> Self {
        let security = warehouse.child("security");
        let place = match security.is_local() {
            true => Place::Files(PathBuf::from(local_path(security.root()))),
            false => Place::Objects(security),
        };
        Self {
            place,
            cached: Mutex::new(None),
        }
    }

    /// Where the principals are, as messages name it.
    fn principals_location(&self) -> String {
        match &self.place {
            Place::Files(dir) => dir.join("principals.json").display().to_string(),
            Place::Objects(security) => format!("{}/principals.json", security.root()),
        }
    }

    /// The current principals: read again only when they may have changed.
    pub async fn current(&self) -> Result<Arc<Principals>> {
        let Place::Objects(security) = &self.place else {
            return self.current_file();
        };
        if let Some((Stamp::Fetched(at), principals)) = self.cached().as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return Ok(principals.clone());
        }
        let location = self.principals_location();
        let principals = Arc::new(match security.read(&location).await? {
            Some(bytes) => self.parse(&bytes)?,
            None => Principals::default(),
        });
        *self.cached() = Some((Stamp::Fetched(Instant::now()), principals.clone()));
        Ok(principals)
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<(Stamp, Arc<Principals>)>> {
        self.cached.lock().expect("principals cache")
    }

    fn current_file(&self) -> Result<Arc<Principals>> {
        use std::os::unix::fs::MetadataExt as _;
        let path = PathBuf::from(self.principals_location());
        let stamp = match std::fs::metadata(&path) {
            Ok(meta) => Some(FileStamp {
                modified: meta.modified().map_err(|err| io("reading", &path, err))?,
                len: meta.len(),
                inode: meta.ino(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(io("reading", &path, err)),
        };
        let Some(stamp) = stamp.map(Stamp::File) else {
            return Ok(Arc::default());
        };
        let mut cached = self.cached();
        if let Some((seen, principals)) = cached.as_ref()
            && *seen == stamp
        {
            return Ok(principals.clone());
        }
        let principals = Arc::new(self.read_file(&path)?);
        *cached = Some((stamp, principals.clone()));
        Ok(principals)
    }

    fn read_file(&self, path: &Path) -> Result<Principals> {
        match std::fs::read(path) {
            Ok(bytes) => self.parse(&bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Principals::default()),
            Err(err) => Err(io("reading", path, err)),
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<Principals> {
        serde_json::from_slice(bytes).map_err(|err| {
            Error::internal(format!(
                "{} is not a principals file: {err}",
                self.principals_location()
            ))
        })
    }

    /// Change the principals; the change lands whole or not at all.
    pub async fn update<T>(&self, change: impl FnOnce(&mut Principals) -> Result<T>) -> Result<T> {
        let Place::Objects(security) = &self.place else {
            return self.update_file(change);
        };
        let location = self.principals_location();
        let (mut principals, version) = match security.read_versioned(&location).await? {
            Some((bytes, version)) => (self.parse(&bytes)?, Some(version)),
            None => (Principals::default(), None),
        };
        let outcome = change(&mut principals)?;
        let text = serde_json::to_vec_pretty(&principals).expect("principals serialize");
        if !security
            .write_if(&location, text, version.as_deref())
            .await?
        {
            return Err(Error::Unavailable(format!(
                "{location} was changed by another process at the same moment: nothing \
                 was changed, run the command again"
            )));
        }
        *self.cached() = None;
        Ok(outcome)
    }

    /// Change the principals file under its lock.
    fn update_file<T>(&self, change: impl FnOnce(&mut Principals) -> Result<T>) -> Result<T> {
        let path = PathBuf::from(self.principals_location());
        let dir = path.parent().expect("the principals file has a directory");
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
        let mut principals = self.read_file(&path)?;
        let outcome = change(&mut principals)?;
        let temp = tempfile_in(dir)?;
        let text = serde_json::to_string_pretty(&principals).expect("principals serialize");
        let written = std::fs::write(&temp, text)
            .and_then(|()| std::fs::File::open(&temp)?.sync_all())
            .and_then(|()| std::fs::rename(&temp, &path));
        if let Err(err) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io("writing", &path, err));
        }
        Ok(outcome)
    }

    /// The warehouse's token signing key, made on first use. Two processes racing
    /// to make it agree on one.
    pub async fn signing_key(&self) -> Result<SigningKey> {
        match &self.place {
            Place::Files(dir) => SigningKey::load_or_create(&dir.join("token.key")),
            Place::Objects(security) => {
                let location = format!("{}/token.key", security.root());
                if let Some(bytes) = security.read(&location).await? {
                    return SigningKey::parse(&bytes, &location);
                }
                let made = SigningKey::generate()?;
                match security
                    .write_if(&location, made.to_hex().into_bytes(), None)
                    .await?
                {
                    true => Ok(made),
                    false => {
                        let bytes = security.read(&location).await?.ok_or_else(|| {
                            Error::internal("the signing key vanished while being created")
                        })?;
                        SigningKey::parse(&bytes, &location)
                    }
                }
            }
        }
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

    #[tokio::test]
    async fn changes_land_and_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&Storage::local(dir.path()));
        assert!(store.current().await.unwrap().is_empty());
        let hash = hash_password("s3cret").unwrap();
        assert!(verify_password("s3cret", &hash) && !verify_password("S3cret", &hash));
        store
            .update(|p| {
                p.users.insert("ann".into(), user(&hash));
                Ok(())
            })
            .await
            .unwrap();
        // Another process's view (a running host) sees it without restarting.
        let other = Store::new(&Storage::local(dir.path()));
        assert!(other.current().await.unwrap().users.contains_key("ann"));
        store.update(|p| Ok(p.users.clear())).await.unwrap();
        assert!(other.current().await.unwrap().users.is_empty());
        let failed: Result<()> = store
            .update(|p| {
                p.users.insert("bob".into(), user(&hash));
                Err(Error::invalid("no"))
            })
            .await;
        assert!(failed.is_err());
        assert!(
            store.current().await.unwrap().users.is_empty(),
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
