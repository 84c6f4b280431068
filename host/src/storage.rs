//! Where a warehouse's files live (tables, plugins, principals): a local directory
//! (the default) or a prefix of an S3-compatible bucket. iceberg-rust reads and
//! writes table files through a `FileIO` made here; floe lists, reads, writes and
//! deletes everything else through this one type.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use iceberg::io::{
    FileIO, FileIOBuilder, LocalFsStorageFactory, S3_ACCESS_KEY_ID, S3_DISABLE_CONFIG_LOAD,
    S3_DISABLE_EC2_METADATA, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY,
    S3_SESSION_TOKEN, StorageFactory,
};
use iceberg_storage_opendal::OpenDalStorageFactory;
use opendal::Operator;

use crate::error::{Context as _, Error, Result};

/// How to reach an S3-compatible store. Credentials come from the standard AWS
/// environment variables, never from flags (they would show in `ps`).
#[derive(Debug, Clone, Default)]
pub struct S3Access {
    /// `http(s)://host:port` of a store that is not AWS (MinIO, R2, moto…).
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style URLs (`endpoint/bucket/key`), which most non-AWS stores need.
    pub path_style: bool,
    pub key_id: String,
    pub secret: String,
    pub session_token: Option<String>,
}

impl S3Access {
    /// The credentials in `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`, if set).
    pub fn from_env(endpoint: Option<String>, region: String, path_style: bool) -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(key_id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(Error::invalid(
                "an s3:// warehouse needs credentials: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)",
            ));
        };
        Ok(Self {
            endpoint,
            region,
            path_style,
            key_id,
            secret,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

/// A file found by [`Storage::list`].
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its full location, spelled as Iceberg metadata spells it (`file:///…`, `s3://…`).
    pub location: String,
    pub bytes: u64,
    pub modified: Option<SystemTime>,
}

/// A place in the warehouse (`<warehouse>/iceberg`, `<warehouse>/plugins`): files
/// are named by their full locations, and only those under the root are floe's.
#[derive(Clone)]
pub struct Storage {
    /// Without a trailing `/`.
    root: String,
    place: Place,
}

#[derive(Clone)]
enum Place {
    Local,
    S3 {
        access: S3Access,
        bucket: String,
        /// Rooted at the bucket: paths are keys.
        operator: Operator,
    },
}

impl Storage {
    /// The local directory `dir`.
    pub fn local(dir: &Path) -> Self {
        Self {
            root: format!("file://{}", dir.display())
                .trim_end_matches('/')
                .into(),
            place: Place::Local,
        }
    }

    /// The prefix `url` (`s3://bucket/prefix`) of an S3-compatible store.
    pub fn s3(url: &str, access: S3Access) -> Result<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|err| Error::invalid(format!("the warehouse {url} is not a URL: {err}")))?;
        let bucket = parsed
            .host_str()
            .filter(|b| b.len() >= 3)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "the warehouse {url} names no bucket (s3://bucket/prefix, 3 characters at least)"
                ))
            })?
            .to_string();
        let mut builder = opendal::services::S3::default()
            .bucket(&bucket)
            .root("/")
            .region(&access.region)
            .access_key_id(&access.key_id)
            .secret_access_key(&access.secret)
            .disable_config_load();
        if let Some(endpoint) = &access.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if let Some(token) = &access.session_token {
            builder = builder.session_token(token);
        }
        if !access.path_style {
            builder = builder.enable_virtual_host_style();
        }
        let operator = Operator::new(builder)
            .map_err(|err| Error::invalid(format!("the S3 settings for {url}: {err}")))?
            .layer(opendal::layers::TimeoutLayer::new().with_io_timeout(Duration::from_secs(30)))
            .finish();
        Ok(Self {
            root: url.trim_end_matches('/').to_string(),
            place: Place::S3 {
                access,
                bucket,
                operator,
            },
        })
    }

    /// Its root location, e.g. where new tables go: `<root>/<namespace>/<name>-<id>`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The place `name` under this one, on the same store.
    pub fn child(&self, name: &str) -> Self {
        Self {
            root: format!("{}/{name}", self.root),
            place: self.place.clone(),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.place, Place::Local)
    }

    /// Whether `location` is under the root (floe deletes nothing else).
    pub fn holds(&self, location: &str) -> bool {
        location
            .strip_prefix(&self.root)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The factory and properties iceberg-rust's catalog and FileIO are built with.
    pub fn iceberg_io(&self) -> (Arc<dyn StorageFactory>, HashMap<String, String>) {
        match &self.place {
            Place::Local => (Arc::new(LocalFsStorageFactory), HashMap::new()),
            Place::S3 { access, .. } => {
                let mut props = HashMap::from([
                    (S3_REGION.to_string(), access.region.clone()),
                    (S3_ACCESS_KEY_ID.to_string(), access.key_id.clone()),
                    (S3_SECRET_ACCESS_KEY.to_string(), access.secret.clone()),
                    (
                        S3_PATH_STYLE_ACCESS.to_string(),
                        access.path_style.to_string(),
                    ),
                    (S3_DISABLE_CONFIG_LOAD.to_string(), "true".into()),
                    (S3_DISABLE_EC2_METADATA.to_string(), "true".into()),
                ]);
                if let Some(endpoint) = &access.endpoint {
                    props.insert(S3_ENDPOINT.into(), endpoint.clone());
                }
                if let Some(token) = &access.session_token {
                    props.insert(S3_SESSION_TOKEN.into(), token.clone());
                }
                let factory = OpenDalStorageFactory::S3 {
                    customized_credential_load: None,
                };
                (Arc::new(factory), props)
            }
        }
    }

    pub fn file_io(&self) -> FileIO {
        let (factory, props) = self.iceberg_io();
        FileIOBuilder::new(factory).with_props(props).build()
    }

    /// Reach the store once, so that a wrong endpoint, bucket or credential stops
    /// the host at start with a message naming it.
    pub async fn check(&self) -> Result<()> {
        match &self.place {
            Place::Local => {
                let dir = local_path(&self.root);
                std::fs::create_dir_all(dir)
                    .map_err(|err| Error::internal(format!("creating {dir}: {err}")))
            }
            Place::S3 {
                operator, bucket, ..
            } => {
                operator
                    .list_with(&format!("{}/", self.key(&self.root)?))
                    .limit(1)
                    .await
                    .map_err(|err| self.unreachable(bucket, err))?;
                Ok(())
            }
        }
    }

    fn unreachable(&self, bucket: &str, err: opendal::Error) -> Error {
        let Place::S3 { access, .. } = &self.place else {
            unreachable!("only S3 is reached over the network")
        };
        let endpoint = access.endpoint.as_deref().unwrap_or("AWS");
        // opendal reports S3's error code in its message (a missing bucket is a 404
        // it classes as a configuration error).
        let text = err.to_string();
        let code = s3_error_code(&text);
        let denied = matches!(
            code,
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")
        );
        let why = if code == Some("NoSuchBucket") {
            format!("the bucket {bucket} does not exist")
        } else if denied || err.kind() == opendal::ErrorKind::PermissionDenied {
            format!(
                "access to bucket {bucket} was denied: check AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY ({})",
                code.unwrap_or("PermissionDenied")
            )
        } else {
            format!("the object store did not answer: {err}")
        };
        Error::Unavailable(format!("warehouse {} at {endpoint}: {why}", self.root))
    }

    /// Every file under the directory `location`, at any depth. A directory that
    /// does not exist holds nothing.
    pub async fn list(&self, location: &str) -> Result<Vec<Stored>> {
        match &self.place {
            Place::Local => Ok(files_under(PathBuf::from(local_path(location)))
                .await
                .into_iter()
                .map(|(path, meta)| Stored {
                    location: format!("file://{}", path.display()),
                    bytes: meta.len(),
                    modified: meta.modified().ok(),
                })
                .collect()),
            Place::S3 {
                operator, bucket, ..
            } => {
                let key = format!("{}/", self.key(location)?.trim_end_matches('/'));
                let entries = operator
                    .list_with(&key)
                    .recursive(true)
                    .await
                    .map_err(|err| self.unreachable(bucket, err))?;
                Ok(entries
                    .into_iter()
                    .filter(|entry| entry.metadata().is_file())
                    .map(|entry| {
                        let meta = entry.metadata();
                        Stored {
                            location: format!("s3://{bucket}/{}", entry.path()),
                            bytes: meta.content_length(),
                            modified: meta.last_modified().map(|at| {
                                let ms = at.into_inner().as_millisecond().max(0) as u64;
                                SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
                            }),
                        }
                    })
                    .collect())
            }
        }
    }

    /// Delete one file; `false` when it was not there.
    pub async fn delete(&self, location: &str) -> Result<bool> {
        match &self.place {
            Place::Local => match tokio::fs::remove_file(local_path(location)).await {
                Ok(()) => Ok(true),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(err) => Err(Error::internal(format!("deleting {location}: {err}"))),
            },
            Place::S3 {
                operator, bucket, ..
            } => {
                // S3 deletes are idempotent: a missing key is not an error.
                operator
                    .delete(self.key(location)?)
                    .await
                    .map_err(|err| self.unreachable(bucket, err))?;
                Ok(true)
            }
        }
    }

    /// Delete the directory `location` and everything under it.
    pub async fn delete_all(&self, location: &str) -> Result<()> {
        match &self.place {
            Place::Local => match tokio::fs::remove_dir_all(local_path(location)).await {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(Error::internal(format!("deleting {location}: {err}"))),
            },
            Place::S3 {
                operator, bucket, ..
            } => {
                let key = format!("{}/", self.key(location)?.trim_end_matches('/'));
                operator
                    .delete_with(&key)
                    .recursive(true)
                    .await
                    .map_err(|err| self.unreachable(bucket, err))
            }
        }
    }

    /// Delete the files under `dir` whose names start with `prefix` (a write's
    /// files); how many.
    pub async fn delete_prefixed(&self, dir: &str, prefix: &str) -> usize {
        let listed = match self.list(dir).await {
            Ok(listed) => listed,
            Err(err) => {
                tracing::warn!(%dir, %err, "could not list an aborted write's files");
                return 0;
            }
        };
        let mut deleted = 0;
        for file in listed {
            let name = file.location.rsplit('/').next().unwrap_or_default();
            if !name.starts_with(prefix) {
                continue;
            }
            match self.delete(&file.location).await {
                Ok(_) => deleted += 1,
                Err(err) => {
                    tracing::warn!(location = %file.location, %err, "could not delete an aborted data file")
                }
            }
        }
        deleted
    }

    /// A whole (small) file's bytes; `None` when it is not there.
    pub async fn read(&self, location: &str) -> Result<Option<Vec<u8>>> {
        match &self.place {
            Place::Local => match tokio::fs::read(local_path(location)).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(Error::internal(format!("reading {location}: {err}"))),
            },
            Place::S3 {
                operator, bucket, ..
            } => match operator.read(self.key(location)?).await {
                Ok(buffer) => Ok(Some(buffer.to_vec())),
                Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(self.unreachable(bucket, err)),
            },
        }
    }

    /// Write a (small) file whole or not at all: readers see the old bytes or the
    /// new ones, never part of them.
    pub async fn write(&self, location: &str, bytes: Vec<u8>) -> Result<()> {
        match &self.place {
            Place::Local => {
                let path = PathBuf::from(local_path(location));
                crate::blocking::run(move || write_atomically(&path, &bytes)).await
            }
            // An S3 PUT replaces an object atomically.
            Place::S3 {
                operator, bucket, ..
            } => operator
                .write(self.key(location)?, bytes)
                .await
                .map(|_| ())
                .map_err(|err| self.unreachable(bucket, err)),
        }
    }

    /// On object storage: a (small) file's bytes and their version (ETag), read
    /// together; `None` when it is not there.
    pub async fn read_versioned(&self, location: &str) -> Result<Option<(Vec<u8>, String)>> {
        let Place::S3 {
            operator, bucket, ..
        } = &self.place
        else {
            unreachable!("local files are versioned by their locks")
        };
        let key = self.key(location)?;
        loop {
            let etag = match operator.stat(key).await {
                Ok(meta) => meta.etag().unwrap_or_default().to_string(),
                Err(err) if err.kind() == opendal::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(self.unreachable(bucket, err)),
            };
            match operator.read_with(key).if_match(&etag).await {
                Ok(buffer) => return Ok(Some((buffer.to_vec(), etag))),
                // Replaced between the two requests: read the new one.
                Err(err)
                    if matches!(
                        err.kind(),
                        opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::NotFound
                    ) => {}
                Err(err) => return Err(self.unreachable(bucket, err)),
            }
        }
    }

    /// On object storage: write a (small) file only if it is still at `version`
    /// (`None`: only if it does not exist); `false` if another writer got there first.
    pub async fn write_if(
        &self,
        location: &str,
        bytes: Vec<u8>,
        version: Option<&str>,
    ) -> Result<bool> {
        let Place::S3 {
            operator, bucket, ..
        } = &self.place
        else {
            unreachable!("local files are versioned by their locks")
        };
        let write = operator.write_with(self.key(location)?, bytes);
        let write = match version {
            Some(etag) => write.if_match(etag),
            None => write.if_not_exists(true),
        };
        match write.await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == opendal::ErrorKind::ConditionNotMatch => Ok(false),
            Err(err) => Err(self.unreachable(bucket, err)),
        }
    }

    /// The size of one file, if it is there.
    pub async fn size(&self, location: &str) -> Option<u64> {
        match &self.place {
            Place::Local => tokio::fs::metadata(local_path(location))
                .await
                .ok()
                .map(|m| m.len()),
            Place::S3 { operator, .. } => {
                let key = self.key(location).ok()?;
                operator.stat(key).await.ok().map(|m| m.content_length())
            }
        }
    }

    /// The object key of an `s3://` location in this warehouse's bucket.
    fn key<'a>(&self, location: &'a str) -> Result<&'a str> {
        let Place::S3 { bucket, .. } = &self.place else {
            unreachable!("keys are S3's")
        };
        location
            .strip_prefix("s3://")
            .and_then(|rest| rest.strip_prefix(bucket.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| Error::invalid(format!("{location} is not in bucket {bucket}")))
    }

    /// The store's access and bucket, when it is S3.
    pub fn s3_access(&self) -> Option<(&S3Access, &str)> {
        match &self.place {
            Place::S3 { access, bucket, .. } => Some((access, bucket)),
            Place::Local => None,
        }
    }

    /// The prefixes DuckDB may read: this place, in every spelling Iceberg
    /// metadata may use for it.
    pub fn allowed_directories(&self) -> Vec<String> {
        let dir = format!("{}/", self.root);
        match self.place {
            Place::Local => vec![local_path(&dir).to_string(), dir],
            Place::S3 { .. } => vec![dir],
        }
    }
}

/// The S3 error code (`AccessDenied`, `SignatureDoesNotMatch`…) opendal quotes.
fn s3_error_code(text: &str) -> Option<&str> {
    let rest = &text[text.find("code: \"")? + "code: \"".len()..];
    rest.get(..rest.find('"')?)
}

/// Write a file whole or not at all (temporary file, then rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("files have a directory");
    std::fs::create_dir_all(dir).context(format!("creating {}", dir.display()))?;
    let temporary = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
        .context(format!("writing {}", path.display()))
}

/// A `file:` URL's path; other strings unchanged.
pub fn local_path(location: &str) -> &str {
    // `file:/x` is the same place as `file:///x` (some writers use the short form).
    location
        .strip_prefix("file://")
        .or_else(|| location.strip_prefix("file:"))
        .unwrap_or(location)
}

/// Every file under `root`, at any depth, with its metadata. Unreadable entries are
/// skipped.
async fn files_under(root: PathBuf) -> Vec<(PathBuf, std::fs::Metadata)> {
    let (mut files, mut dirs) = (Vec::new(), vec![root]);
    while let Some(dir) = dirs.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            continue;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            match entry.metadata().await {
                Ok(meta) if meta.is_dir() => dirs.push(entry.path()),
                Ok(meta) => files.push((entry.path(), meta)),
                Err(_) => {}
            }
        }
    }
    files
}
