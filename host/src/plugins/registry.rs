//! The warehouse's plugin registry: components stored by the sha256 of their
//! bytes and one small JSON file per registered name, in the warehouse itself
//! (a local directory or object storage, so every host sharing it sees the same
//! plugins); each host keeps the precompiled forms in a directory of its own.
//!
//! ```text
//! <warehouse>/plugins/index/<name>.json      what `host plugins list` shows
//! <warehouse>/plugins/wasm/<sha256>.wasm     the component as added
//! <host directory>/plugins/compiled/<sha256>.<engine>.cwasm
//! ```
//! Each name's file is replaced atomically, so a running host sees a plugin
//! either whole or not at all, on its next request.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Storage, write_atomically};

/// A registered plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The name tickets use.
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub added_at: DateTime<Utc>,
    /// What the plugin says of itself.
    pub describe: Description,
}

/// A plugin's `describe` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub description: String,
    pub args_schema: serde_json::Value,
    /// Keeps nothing between batches: the host may replace its instance mid-stream.
    #[serde(default)]
    pub stateless: bool,
}

pub struct Registry {
    /// `<warehouse>/plugins`
    store: Storage,
    /// `<host directory>/plugins/compiled`
    compiled: PathBuf,
}

impl Registry {
    /// The registry of the warehouse `warehouse`, precompiled files under `home`.
    pub fn new(warehouse: &Storage, home: &Path) -> Self {
        Self {
            store: warehouse.child("plugins"),
            compiled: home.join("plugins").join("compiled"),
        }
    }

    fn wasm_location(&self, sha256: &str) -> String {
        format!("{}/wasm/{sha256}.wasm", self.store.root())
    }

    fn index_location(&self, name: &str) -> String {
        format!("{}/index/{name}.json", self.store.root())
    }

    pub fn compiled_path(&self, sha256: &str, engine: &str) -> PathBuf {
        self.compiled.join(format!("{sha256}.{engine}.cwasm"))
    }

    /// The component's bytes, as added.
    pub async fn wasm(&self, sha256: &str) -> Result<Vec<u8>> {
        let location = self.wasm_location(sha256);
        self.store.read(&location).await?.ok_or_else(|| {
            Error::internal(format!(
                "the plugin component {location} is missing: add the plugin again"
            ))
        })
    }

    pub async fn get(&self, name: &str) -> Result<Entry> {
        check_name(name)?;
        match self.entry(name).await? {
            Some(entry) => Ok(entry),
            None => {
                let known: Vec<String> = self.list().await?.into_iter().map(|e| e.name).collect();
                Err(Error::not_found(format!(
                    "unknown plugin '{name}' (registered: {}); add it with `host plugins add`",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )))
            }
        }
    }

    async fn entry(&self, name: &str) -> Result<Option<Entry>> {
        let Some(bytes) = self.store.read(&self.index_location(name)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            Error::internal(format!(
                "the registry entry of plugin '{name}' is corrupt: {err}"
            ))
        })
    }

    /// Every registered plugin, by name.
    pub async fn list(&self) -> Result<Vec<Entry>> {
        let index = format!("{}/index", self.store.root());
        let mut entries = Vec::new();
        for file in self.store.list(&index).await? {
            let Some(name) = file
                .location
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".json"))
            else {
                continue;
            };
            // One removed since the listing is skipped.
            if check_name(name).is_ok()
                && let Some(entry) = self.entry(name).await?
            {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Store a validated component and register it under `entry.name`; the
    /// name's entry is written last, so a failure leaves the registry as it was.
    pub async fn insert(
        &self,
        entry: &Entry,
        wasm: &[u8],
        compiled: &[u8],
        engine: &str,
    ) -> Result<()> {
        self.store
            .write(&self.wasm_location(&entry.sha256), wasm.to_vec())
            .await?;
        write_atomically(&self.compiled_path(&entry.sha256, engine), compiled)?;
        let json = serde_json::to_vec_pretty(entry).expect("entries serialize");
        self.store
            .write(&self.index_location(&entry.name), json)
            .await
    }

    /// Unregister a name; its files go too unless another name uses them.
    pub async fn remove(&self, name: &str) -> Result<Entry> {
        let entry = self.get(name).await?;
        self.store.delete(&self.index_location(name)).await?;
        self.drop_unused(&entry.sha256).await?;
        Ok(entry)
    }

    /// Delete a component's files if no registered name uses them any more
    /// (other hosts' precompiled copies are theirs to keep).
    pub async fn drop_unused(&self, sha256: &str) -> Result<()> {
        if self.list().await?.iter().any(|e| e.sha256 == sha256) {
            return Ok(());
        }
        let _ = self.store.delete(&self.wasm_location(sha256)).await;
        let prefix = format!("{sha256}.");
        for file in std::fs::read_dir(&self.compiled)
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(file.path());
            }
        }
        Ok(())
    }
}

/// Plugin names appear in tickets, file names and logs: keep them plain.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid plugin name {}: use letters, digits, '-' and '_', starting with a letter",
            crate::error::quote(name)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, sha256: &str) -> Entry {
        Entry {
            name: name.into(),
            sha256: sha256.into(),
            size: 4,
            added_at: Utc::now(),
            describe: Description {
                name: "p".into(),
                version: "1".into(),
                kind: "filter".into(),
                description: "d".into(),
                args_schema: serde_json::json!({"type": "object"}),
                stateless: false,
            },
        }
    }

    #[test]
    fn names_are_plain() {
        for good in ["select", "my-filter_2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b", "1st", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn files_stay_while_another_name_uses_them() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&Storage::local(dir.path()), dir.path());
        let wasm = |sha: &str| dir.path().join(format!("plugins/wasm/{sha}.wasm"));
        assert!(registry.list().await.unwrap().is_empty());
        for name in ["a", "b"] {
            registry
                .insert(&entry(name, "abc"), b"wasm", b"compiled", "e1")
                .await
                .unwrap();
        }
        let names: Vec<_> = registry
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(registry.wasm("abc").await.unwrap(), b"wasm");

        registry.remove("a").await.unwrap();
        assert!(wasm("abc").exists(), "b still uses the component");
        registry.remove("b").await.unwrap();
        assert!(!wasm("abc").exists());
        assert!(!registry.compiled_path("abc", "e1").exists());

        // A name re-pointed to other bytes leaves the old ones unused.
        registry
            .insert(&entry("c", "old"), b"w", b"c", "e1")
            .await
            .unwrap();
        registry
            .insert(&entry("c", "new"), b"w", b"c", "e1")
            .await
            .unwrap();
        registry.drop_unused("old").await.unwrap();
        assert!(!wasm("old").exists());
        assert!(wasm("new").exists());
        registry.remove("c").await.unwrap();

        let err = registry.get("a").await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        assert!(err.to_string().contains("unknown plugin 'a'"), "{err}");
    }
}
