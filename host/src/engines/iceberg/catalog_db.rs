//! The SQL catalog's database: a SQLite file in the warehouse (the default) or a
//! PostgreSQL database many processes share. iceberg-rust's SQL catalog and floe's
//! own statements (the commit's compare-and-swap, the cheap location look-up) reach
//! it through one sqlx `Any` pool each, with the placeholder style of the backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use crate::error::{Error, Result};

/// Where the catalog lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogDb {
    Sqlite(PathBuf),
    /// A `postgres://` (or `postgresql://`) URI.
    Postgres(String),
}

impl CatalogDb {
    /// `uri` if given (a `postgres://` URI or a SQLite file path), else the
    /// warehouse's `catalog.db`.
    pub fn new(uri: Option<&str>, default_file: &Path) -> Result<Self> {
        match uri {
            None => Ok(Self::Sqlite(default_file.to_path_buf())),
            Some(uri) if uri.starts_with("postgres://") || uri.starts_with("postgresql://") => {
                Ok(Self::Postgres(uri.to_string()))
            }
            Some(uri) if uri.contains("://") => Err(Error::invalid(format!(
                "catalog {}: use a postgres:// URI or a SQLite file path",
                redact(uri)
            ))),
            Some(path) => Ok(Self::Sqlite(PathBuf::from(path))),
        }
    }

    /// The URI sqlx and iceberg-rust's SQL catalog open.
    pub fn uri(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            Self::Postgres(uri) => uri.clone(),
        }
    }

    /// The catalog as logs and errors name it: without a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(uri) => redact(uri),
        }
    }

    /// Whether several hosts can share it (a database server, not a file).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// iceberg-rust's name for the backend's placeholder style.
    pub fn bind_style(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "QMark",
            Self::Postgres(_) => "DollarNumeric",
        }
    }

    /// `text` written with `?` placeholders, in the backend's style.
    pub fn sql(&self, text: &str) -> String {
        match self {
            Self::Sqlite(_) => text.to_string(),
            Self::Postgres(_) => {
                let mut out = String::with_capacity(text.len() + 8);
                let mut n = 0;
                for c in text.chars() {
                    if c == '?' {
                        n += 1;
                        out.push_str(&format!("${n}"));
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// A small pool for floe's own statements. SQLite waits up to 30 s for a lock
    /// another writer holds, rather than failing at once; a database that cannot be
    /// reached for 10 s is reported Unavailable.
    pub async fn pool(&self) -> Result<AnyPool> {
        self.pool_of(4).await
    }

    /// Such a pool of at most `connections`.
    pub async fn pool_of(&self, connections: u32) -> Result<AnyPool> {
        install_default_drivers();
        let unreachable = |err: sqlx::Error| {
            Error::Unavailable(format!(
                "cannot open the catalog {}: {err}",
                self.describe()
            ))
        };
        // One connection first, for the real cause (a pool only says it timed out).
        let first = AnyConnection::connect(&self.uri())
            .await
            .map_err(unreachable)?;
        let _ = first.close().await;
        let sqlite = matches!(self, Self::Sqlite(_));
        AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&self.uri())
            .await
            .map_err(|err| {
                Error::Unavailable(format!(
                    "cannot open the catalog {}: {err}",
                    self.describe()
                ))
            })
    }
}

/// `uri` with its password, if any, replaced by `***`.
fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_statements_number_their_placeholders() {
        let pg =
            CatalogDb::new(Some("postgres://floe@127.0.0.1:5432/floe"), Path::new("x")).unwrap();
        assert_eq!(
            pg.sql("UPDATE t SET a = ? WHERE b = ?"),
            "UPDATE t SET a = $1 WHERE b = $2"
        );
        let lite = CatalogDb::new(None, Path::new("/w/catalog.db")).unwrap();
        assert_eq!(lite.sql("WHERE b = ?"), "WHERE b = ?");
        assert_eq!(lite.uri(), "sqlite:///w/catalog.db?mode=rwc");
    }

    #[test]
    fn uris_name_the_catalog_without_the_password() {
        let pg =
            CatalogDb::new(Some("postgres://floe:secret@db:5432/floe"), Path::new("x")).unwrap();
        assert_eq!(pg.describe(), "postgres://floe:***@db:5432/floe");
        let err = CatalogDb::new(Some("mysql://u:p@h/db"), Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("postgres://") && !err.to_string().contains(":p@"));
    }
}
