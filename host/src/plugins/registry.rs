//! The warehouse's plugin registry: components stored by the sha256 of their
//! bytes, their precompiled forms, and one small JSON file per registered name.
//!
//! ```text
//! <warehouse>/plugins/index/<name>.json      what `host plugins list` shows
//! <warehouse>/plugins/wasm/<sha256>.wasm     the component as added
//! <warehouse>/plugins/compiled/<sha256>.<engine>.cwasm
//! ```
//! Each name's file is replaced atomically, so a running host sees a plugin
//! either whole or not at all, on its next request.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Context as _, Error, Result};

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
}

pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub fn new(warehouse: &Path) -> Self {
        Self {
            dir: warehouse.join("plugins"),
        }
    }

    pub fn wasm_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("wasm").join(format!("{sha256}.wasm"))
    }

    pub fn compiled_path(&self, sha256: &str, engine: &str) -> PathBuf {
        self.dir
            .join("compiled")
            .join(format!("{sha256}.{engine}.cwasm"))
    }

    fn index_path(&self, name: &str) -> PathBuf {
        self.dir.join("index").join(format!("{name}.json"))
    }

    pub fn get(&self, name: &str) -> Result<Entry> {
        check_name(name)?;
        match std::fs::read(self.index_path(name)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                Error::internal(format!(
                    "the registry entry of plugin '{name}' is corrupt: {err}"
                ))
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let known: Vec<String> = self.list()?.into_iter().map(|e| e.name).collect();
                Err(Error::not_found(format!(
                    "unknown plugin '{name}' (registered: {}); add it with `host plugins add`",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )))
            }
            Err(err) => Err(err).context(format!("reading the registry entry of '{name}'")),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index_path(name).exists()
    }

    /// Every registered plugin, by name.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let dir = self.dir.join("index");
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err).context(format!("listing {}", dir.display())),
        };
        let mut entries = Vec::new();
        for file in listing {
            let path = file.context("listing the plugin registry")?.path();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if path.extension().is_some_and(|e| e == "json") && check_name(name).is_ok() {
                entries.push(self.get(name)?);
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Store a validated component and register it under `entry.name`; the
    /// name's entry is written last, so a failure leaves the registry as it was.
    pub fn insert(&self, entry: &Entry, wasm: &[u8], compiled: &[u8], engine: &str) -> Result<()> {
        write_atomically(&self.wasm_path(&entry.sha256), wasm)?;
        write_atomically(&self.compiled_path(&entry.sha256, engine), compiled)?;
        let json = serde_json::to_vec_pretty(entry).expect("entries serialize");
        write_atomically(&self.index_path(&entry.name), &json)
    }

    /// Unregister a name; its files go too unless another name uses them.
    pub fn remove(&self, name: &str) -> Result<Entry> {
        let entry = self.get(name)?;
        let path = self.index_path(name);
        std::fs::remove_file(&path).context(format!("removing {}", path.display()))?;
        self.drop_unused(&entry.sha256)?;
        Ok(entry)
    }

    /// Delete a component's files if no registered name uses them any more.
    pub fn drop_unused(&self, sha256: &str) -> Result<()> {
        if self.list()?.iter().any(|e| e.sha256 == sha256) {
            return Ok(());
        }
        let _ = std::fs::remove_file(self.wasm_path(sha256));
        let prefix = format!("{sha256}.");
        for file in std::fs::read_dir(self.dir.join("compiled"))
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

/// Write a file whole or not at all (temporary file, then rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("registry paths have a parent");
    std::fs::create_dir_all(dir).context(format!("creating {}", dir.display()))?;
    let temporary = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
        .context(format!("writing {}", path.display()))
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

    #[test]
    fn files_stay_while_another_name_uses_them() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path());
        assert!(registry.list().unwrap().is_empty());
        for name in ["a", "b"] {
            registry
                .insert(&entry(name, "abc"), b"wasm", b"compiled", "e1")
                .unwrap();
        }
        let names: Vec<_> = registry
            .list()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a", "b"]);

        registry.remove("a").unwrap();
        assert!(
            registry.wasm_path("abc").exists(),
            "b still uses the component"
        );
        registry.remove("b").unwrap();
        assert!(!registry.wasm_path("abc").exists());
        assert!(!registry.compiled_path("abc", "e1").exists());

        // A name re-pointed to other bytes leaves the old ones unused.
        registry
            .insert(&entry("c", "old"), b"w", b"c", "e1")
            .unwrap();
        registry
            .insert(&entry("c", "new"), b"w", b"c", "e1")
            .unwrap();
        registry.drop_unused("old").unwrap();
        assert!(!registry.wasm_path("old").exists());
        assert!(registry.wasm_path("new").exists());
        registry.remove("c").unwrap();

        let err = registry.get("a").unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        assert!(err.to_string().contains("unknown plugin 'a'"), "{err}");
    }
}
