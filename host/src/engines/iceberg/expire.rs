//! Snapshot expiry: the snapshots a table no longer keeps leave its metadata in one
//! commit, then the files only they referenced are deleted (manifest lists,
//! manifests, data files), with the metadata files the metadata log has dropped.
//! A file a kept snapshot still reads is never deleted, nor anything outside the
//! table's own directory.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use iceberg::spec::{SnapshotRef, TableMetadata, TableMetadataBuilder};
use serde::Serialize;

use super::{IcebergEngine, LoadedTable, ident, local_path};
use crate::command::{ExpireOptions, TableName};
use crate::error::{Context, Error, Result};

/// The Iceberg table properties (as Spark and Flink read them) that override the
/// warehouse's retention for one table, and the one that turns file removal off.
pub const MAX_AGE_PROPERTY: &str = "history.expire.max-snapshot-age-ms";
pub const KEEP_LAST_PROPERTY: &str = "history.expire.min-snapshots-to-keep";
pub const GC_ENABLED_PROPERTY: &str = "gc.enabled";

const MAX_ATTEMPTS: u32 = 8;

/// A warehouse's retention: snapshots younger than `max_age` are kept, and at least
/// the `keep_last` newest of each table's main branch (the current one always).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep_last: usize,
    pub max_age: chrono::Duration,
}

/// The snapshots one expiry keeps: the `keep_last` newest, and those from
/// `older_than` on.
struct Keep {
    keep_last: usize,
    older_than: DateTime<Utc>,
}

impl Keep {
    fn of(metadata: &TableMetadata, retention: &Retention, request: &ExpireOptions) -> Self {
        let property = |key: &str| {
            metadata
                .properties()
                .get(key)
                .and_then(|v| v.parse::<i64>().ok())
        };
        let keep_last = request.retain_last.unwrap_or_else(|| {
            property(KEEP_LAST_PROPERTY)
                .filter(|n| *n >= 1)
                .map_or(retention.keep_last, |n| n as usize)
        });
        let older_than = request.older_than.unwrap_or_else(|| {
            let max_age = property(MAX_AGE_PROPERTY)
                .filter(|ms| *ms >= 0)
                .map_or(retention.max_age, chrono::Duration::milliseconds);
            Utc::now() - max_age
        });
        Self {
            keep_last: keep_last.max(1),
            older_than,
        }
    }
}

/// What an expiry did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Expired {
    pub snapshot_ids: Vec<i64>,
    pub deleted_files: usize,
    pub deleted_bytes: u64,
    pub dry_run: bool,
}

/// The files a set of snapshots reaches.
#[derive(Default)]
pub(super) struct Reached {
    pub manifest_lists: HashSet<String>,
    pub manifests: HashSet<String>,
    /// Data and delete files live in at least one of the snapshots.
    pub live: HashSet<String>,
    /// Every file any of their manifests names, live or deleted.
    pub named: HashSet<String>,
}

impl Reached {
    pub(super) async fn of(table: &LoadedTable, snapshots: &[SnapshotRef]) -> Result<Self> {
        let mut reached = Self::default();
        for snapshot in snapshots {
            reached
                .manifest_lists
                .insert(snapshot.manifest_list().to_string());
            for manifest in table.manifests(snapshot).await? {
                if !reached.manifests.insert(manifest.manifest_path.clone()) {
                    continue; // shared with a snapshot already walked
                }
                let entries = manifest
                    .load_manifest(table.table.file_io())
                    .await
                    .context("reading a manifest")?;
                for entry in entries.entries() {
                    let path = entry.data_file().file_path().to_string();
                    if entry.is_alive() {
                        reached.live.insert(path.clone());
                    }
                    reached.named.insert(path);
                }
            }
        }
        Ok(reached)
    }
}

impl IcebergEngine {
    /// Expire the snapshots of `name` that `retention` does not keep. Commits
    /// concurrent with it are retried against, never lost.
    pub async fn expire(
        &self,
        name: &TableName,
        retention: &Retention,
        request: &ExpireOptions,
    ) -> Result<Expired> {
        let dry_run = request.dry_run;
        let turn = self.commit_turn(name);
        let _turn = turn.lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            let table = self.load(name).await?.ok_or_else(|| name.not_found())?;
            let metadata = table.metadata();
            if metadata
                .properties()
                .get(GC_ENABLED_PROPERTY)
                .map(String::as_str)
                == Some("false")
            {
                return Err(Error::invalid(format!(
                    "{name} has {GC_ENABLED_PROPERTY}=false: its snapshots are not expired"
                )));
            }
            let mut expired = expired_snapshots(metadata, &Keep::of(metadata, retention, request));
            let in_use = self.pins.of(name);
            expired.retain(|s| !in_use.contains(&s.snapshot_id()));
            if expired.is_empty() {
                return Ok(Expired {
                    dry_run,
                    ..Default::default()
                });
            }
            let doomed = self.doomed_files(&table, &expired).await?;
            let mut outcome = Expired {
                snapshot_ids: expired.iter().map(|s| s.snapshot_id()).collect(),
                deleted_files: doomed.len(),
                deleted_bytes: 0,
                dry_run,
            };
            if dry_run {
                outcome.deleted_bytes = self.sizes(&doomed).await;
                return Ok(outcome);
            }
            if !self
                .commit_expiry(name, &table, &outcome.snapshot_ids)
                .await?
            {
                tracing::info!(table = %name, attempt, "a commit landed during expiry; retrying");
                tokio::time::sleep(super::commit::backoff(attempt)).await;
                continue;
            }
            outcome.deleted_bytes = self.delete(&doomed).await;
            tracing::info!(table = %name, snapshots = outcome.snapshot_ids.len(), files = doomed.len(), "expired snapshots");
            return Ok(outcome);
        }
        Err(Error::internal(format!(
            "gave up expiring snapshots of {name} after {MAX_ATTEMPTS} concurrent commits"
        )))
    }

    /// The files only `expired` reach, under the table's directory, and the metadata
    /// files older than the table's metadata log.
    async fn doomed_files(
        &self,
        table: &LoadedTable,
        expired: &[SnapshotRef],
    ) -> Result<Vec<String>> {
        let metadata = table.metadata();
        let ids: HashSet<i64> = expired.iter().map(|s| s.snapshot_id()).collect();
        let kept: Vec<SnapshotRef> = metadata
            .snapshots()
            .filter(|s| !ids.contains(&s.snapshot_id()))
            .cloned()
            .collect();
        let kept = Reached::of(table, &kept).await?;
        let gone = Reached::of(table, expired).await?;
        let location = metadata.location();
        let mut doomed: Vec<String> = gone
            .manifest_lists
            .into_iter()
            .filter(|p| !kept.manifest_lists.contains(p))
            .chain(
                gone.manifests
                    .into_iter()
                    .filter(|p| !kept.manifests.contains(p)),
            )
            .chain(gone.named.into_iter().filter(|p| !kept.live.contains(p)))
            .filter(|p| inside(p, location))
            .collect();
        doomed.extend(self.stale_metadata_files(table).await);
        doomed.sort();
        Ok(doomed)
    }

    /// One commit removing `expired` from the table's metadata; false if another
    /// commit landed first.
    async fn commit_expiry(
        &self,
        name: &TableName,
        table: &LoadedTable,
        expired: &[i64],
    ) -> Result<bool> {
        let old = table.metadata_location().to_string();
        let metadata =
            TableMetadataBuilder::new_from_metadata(table.metadata().clone(), Some(old.clone()))
                .remove_snapshots(expired)
                .build()
                .context("removing expired snapshots")?
                .metadata;
        let location = self.write_next_metadata(&old, &metadata).await?;
        let swapped = self.swap_metadata(&ident(name)?, &old, &location).await?;
        if !swapped {
            let _ = self.file_io.delete(&location).await;
        }
        Ok(swapped)
    }
}

/// The snapshots `retention` lets go: not referenced by a branch or tag, not among
/// the `keep_last` newest of main's history, and older than `older_than`.
fn expired_snapshots(metadata: &TableMetadata, keep: &Keep) -> Vec<SnapshotRef> {
    let mut newest = HashSet::new();
    let mut next = metadata.current_snapshot_id();
    for _ in 0..keep.keep_last {
        let Some(id) = next else { break };
        newest.insert(id);
        next = metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id());
    }
    let cutoff = keep.older_than.timestamp_millis();
    let mut expired: Vec<SnapshotRef> = metadata
        .snapshots()
        .filter(|s| !newest.contains(&s.snapshot_id()) && s.timestamp_ms() < cutoff)
        .cloned()
        .collect();
    // Only now, as it costs a pass over the whole metadata: after most commits
    // nothing is old enough.
    if !expired.is_empty() {
        let tagged = referenced_by_refs(metadata);
        expired.retain(|s| !tagged.contains(&s.snapshot_id()));
    }
    expired
}

/// The snapshots branches and tags point at (iceberg-rust has no accessor for the
/// refs, so they are read from the metadata's JSON form).
fn referenced_by_refs(metadata: &TableMetadata) -> HashSet<i64> {
    let json = serde_json::to_value(metadata).unwrap_or_default();
    json.get("refs")
        .and_then(|refs| refs.as_object())
        .map(|refs| {
            refs.values()
                .filter_map(|r| r.get("snapshot-id")?.as_i64())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `path` lies in the table directory `location`.
fn inside(path: &str, location: &str) -> bool {
    let location = local_path(location).trim_end_matches('/');
    local_path(path)
        .strip_prefix(location)
        .is_some_and(|rest| rest.starts_with('/'))
}

impl IcebergEngine {
    /// Metadata files (`NNNNN-….metadata.json`) older than every one the metadata
    /// log still names: the log has dropped them, so no reader is directed to them.
    async fn stale_metadata_files(&self, table: &LoadedTable) -> Vec<String> {
        let metadata = table.metadata();
        let version = |path: &str| -> Option<u64> {
            let file = path.rsplit('/').next()?;
            file.split_once('-')?.0.parse().ok()
        };
        let oldest_named = metadata
            .metadata_log()
            .iter()
            .map(|entry| entry.metadata_file.as_str())
            .chain([table.metadata_location()])
            .filter_map(version)
            .min();
        let Some(oldest_named) = oldest_named else {
            return Vec::new();
        };
        let dir = format!("{}/metadata", metadata.location().trim_end_matches('/'));
        let Ok(listed) = self.storage.list(&dir).await else {
            return Vec::new();
        };
        listed
            .into_iter()
            .map(|file| file.location)
            .filter(|location| {
                let name = location.rsplit('/').next().unwrap_or_default();
                name.ends_with(".metadata.json") && version(name).is_some_and(|v| v < oldest_named)
            })
            .collect()
    }

    async fn sizes(&self, locations: &[String]) -> u64 {
        let mut bytes = 0;
        for location in locations {
            bytes += self.storage.size(location).await.unwrap_or(0);
        }
        bytes
    }

    /// Delete `locations`; the bytes freed. A file that cannot be deleted stays for
    /// the orphan cleanup.
    async fn delete(&self, locations: &[String]) -> u64 {
        let mut bytes = 0;
        for location in locations {
            let size = self.storage.size(location).await.unwrap_or(0);
            match self.storage.delete(location).await {
                Ok(true) => bytes += size,
                Ok(false) => {}
                Err(err) => tracing::warn!(%location, %err, "could not delete an expired file"),
            }
        }
        bytes
    }
}
