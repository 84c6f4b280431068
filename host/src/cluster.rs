//! The hosts serving one warehouse, without a coordinator of floe's own: each host
//! registers itself in the catalog database (`floe_hosts`: its advertised address and
//! a heartbeat) and counts as live until its registration expires, three heartbeats
//! after its last. Reads that are split into several endpoints list the live hosts as
//! their locations.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AnyPool, Row as _};

use crate::command::MAX_PARTS;
use crate::engines::FileSpan;
use crate::engines::iceberg::CatalogDb;
use crate::error::{Error, Result};

/// A host missing this many heartbeats in a row is no longer live.
const MISSED_BEATS: u32 = 3;
/// Registrations expired this long ago are deleted.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS floe_hosts (
    host_id VARCHAR(64) NOT NULL PRIMARY KEY,
    address VARCHAR(1024) NOT NULL,
    version VARCHAR(64) NOT NULL,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL)";

/// One registered host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub host_id: String,
    /// Where clients reach it: `grpc://host:port` or `grpc+tls://host:port`.
    pub address: String,
    pub version: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    pub expires_ms: i64,
}

impl Member {
    pub fn live_at(&self, now_ms: i64) -> bool {
        self.expires_ms > now_ms
    }
}

/// The registry in the catalog database.
pub struct Registry {
    db: CatalogDb,
    pool: AnyPool,
}

impl Registry {
    /// The registry of the catalog `db`, through a pool of its own.
    pub async fn open(db: &CatalogDb) -> Result<Self> {
        Self::on(db, db.pool().await?).await
    }

    /// The registry of the catalog `db`, through `pool` (the engine's, when serving).
    pub async fn on(db: &CatalogDb, pool: AnyPool) -> Result<Self> {
        sqlx::query(CREATE)
            .execute(&pool)
            .await
            .map_err(|err| unavailable(db, err))?;
        Ok(Self {
            db: db.clone(),
            pool,
        })
    }

    /// Every registered host, live or not, oldest first.
    pub async fn members(&self) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT host_id, address, version, started_ms, heartbeat_ms, expires_ms \
             FROM floe_hosts ORDER BY started_ms, host_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|err| unavailable(&self.db, err))?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    host_id: row.try_get(0)?,
                    address: row.try_get(1)?,
                    version: row.try_get(2)?,
                    started_ms: row.try_get(3)?,
                    heartbeat_ms: row.try_get(4)?,
                    expires_ms: row.try_get(5)?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|err| Error::internal(format!("reading floe_hosts: {err}")))
    }

    /// Register `member`, or renew its registration.
    async fn beat(&self, member: &Member) -> Result<()> {
        let sql = self.db.sql(
            "INSERT INTO floe_hosts \
             (host_id, address, version, started_ms, heartbeat_ms, expires_ms) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (host_id) DO UPDATE SET address = excluded.address, \
             heartbeat_ms = excluded.heartbeat_ms, expires_ms = excluded.expires_ms",
        );
        sqlx::query(&sql)
            .bind(&member.host_id)
            .bind(&member.address)
            .bind(&member.version)
            .bind(member.started_ms)
            .bind(member.heartbeat_ms)
            .bind(member.expires_ms)
            .execute(&self.pool)
            .await
            .map_err(|err| unavailable(&self.db, err))?;
        let forget = self.db.sql("DELETE FROM floe_hosts WHERE expires_ms < ?");
        sqlx::query(&forget)
            .bind(member.heartbeat_ms - FORGET_AFTER_MS)
            .execute(&self.pool)
            .await
            .map_err(|err| unavailable(&self.db, err))?;
        Ok(())
    }

    async fn leave(&self, host_id: &str) -> Result<()> {
        let sql = self.db.sql("DELETE FROM floe_hosts WHERE host_id = ?");
        sqlx::query(&sql)
            .bind(host_id)
            .execute(&self.pool)
            .await
            .map_err(|err| unavailable(&self.db, err))?;
        Ok(())
    }
}

fn unavailable(db: &CatalogDb, err: sqlx::Error) -> Error {
    Error::Unavailable(format!(
        "the host registry in the catalog {}: {err}",
        db.describe()
    ))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// This host's place in the cluster: its registration, kept alive by a heartbeat
/// task, and the live hosts as of the last heartbeat.
pub struct Cluster {
    registry: Registry,
    host_id: String,
    address: String,
    started_ms: i64,
    interval: Duration,
    live: RwLock<Vec<String>>,
}

impl Cluster {
    /// Register this host (reachable at `address`) and learn who else is live.
    pub async fn join(
        registry: Registry,
        address: String,
        interval: Duration,
    ) -> Result<Arc<Self>> {
        let cluster = Arc::new(Self {
            registry,
            host_id: uuid::Uuid::new_v4().simple().to_string(),
            live: RwLock::new(vec![address.clone()]),
            address,
            started_ms: now_ms(),
            interval,
        });
        cluster.heartbeat().await?;
        Ok(cluster)
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The live hosts' addresses, in a stable order (oldest first), this host among
    /// them even when the catalog could not be reached.
    pub fn live(&self) -> Vec<String> {
        self.live.read().expect("live hosts").clone()
    }

    /// Renew the registration, then re-read who is live.
    async fn heartbeat(&self) -> Result<()> {
        let now = now_ms();
        self.registry
            .beat(&Member {
                host_id: self.host_id.clone(),
                address: self.address.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_ms: self.started_ms,
                heartbeat_ms: now,
                expires_ms: now + (self.interval * MISSED_BEATS).as_millis() as i64,
            })
            .await?;
        let mut live: Vec<String> = self
            .registry
            .members()
            .await?
            .into_iter()
            .filter(|m| m.live_at(now))
            .map(|m| m.address)
            .collect();
        if !live.contains(&self.address) {
            live.push(self.address.clone());
        }
        crate::metrics::metrics()
            .live_hosts
            .store(live.len() as u64, std::sync::atomic::Ordering::Relaxed);
        *self.live.write().expect("live hosts") = live;
        Ok(())
    }

    /// Beat every interval until the task is dropped. A catalog that cannot be
    /// reached is logged and tried again; the host keeps serving meanwhile.
    pub fn spawn_heartbeat(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(cluster.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(err) = cluster.heartbeat().await {
                    tracing::warn!(%err, "heartbeat failed; trying again");
                }
            }
        })
    }

    /// Deregister: other hosts stop handing this one out at once.
    pub async fn leave(&self) {
        if let Err(err) = self.registry.leave(&self.host_id).await {
            tracing::warn!(%err, "could not deregister; the registration expires by itself");
        }
    }
}

/// How a planned read becomes Flight endpoints: one, or for a read over more than
/// `split_at` bytes of files, one per live host at most, each a group of the files
/// listing every live host, starting from a different one.
pub struct Splitter {
    cluster: Arc<Cluster>,
    split_at: u64,
}

impl Splitter {
    /// `split_at_mib` 0: never split.
    pub fn new(cluster: Arc<Cluster>, split_at_mib: u64) -> Self {
        Self {
            cluster,
            split_at: split_at_mib << 20,
        }
    }

    /// Into how many parts a read over `span` is split, and the hosts to list.
    pub fn split(&self, span: Option<FileSpan>) -> (u32, Vec<String>) {
        let Some(span) = span.filter(|s| self.split_at > 0 && s.bytes > self.split_at) else {
            return (1, Vec::new());
        };
        let hosts = self.cluster.live();
        let by_size = span.bytes.div_ceil(self.split_at);
        let parts = (hosts.len() as u64)
            .min(span.files as u64)
            .min(by_size)
            .min(MAX_PARTS as u64) as u32;
        if parts > 1 {
            crate::metrics::count(&crate::metrics::metrics().split_reads);
        }
        (parts.max(1), hosts)
    }
}

/// Part `index`'s locations: every host, starting from the `index`-th.
pub fn rotated(hosts: &[String], index: usize) -> Vec<String> {
    let n = hosts.len();
    (0..n).map(|i| hosts[(index + i) % n].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_lists_every_host_starting_from_its_own() {
        let hosts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(rotated(&hosts, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&hosts, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&hosts, 5), ["c", "a", "b"]);
    }

    #[tokio::test]
    async fn hosts_see_each_other_until_they_leave_or_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = CatalogDb::new(None, &dir.path().join("catalog.db")).unwrap();
        let beat = Duration::from_millis(100);
        let join = |address: &str| {
            let (db, address) = (db.clone(), address.to_string());
            async move {
                let registry = Registry::open(&db).await.unwrap();
                Cluster::join(registry, address, beat).await.unwrap()
            }
        };
        let a = join("grpc://a:1").await;
        let b = join("grpc://b:2").await;
        assert_eq!(b.live(), ["grpc://a:1", "grpc://b:2"]);
        a.heartbeat().await.unwrap();
        assert_eq!(a.live(), ["grpc://a:1", "grpc://b:2"]);
        let splitter = Splitter::new(a.clone(), 1);
        let big = |files| FileSpan {
            files,
            bytes: 10 << 20,
        };
        assert_eq!(splitter.split(Some(big(8))).0, 2, "one part per live host");
        assert_eq!(
            splitter.split(Some(big(1))).0,
            1,
            "never more parts than files"
        );
        let small = FileSpan {
            files: 8,
            bytes: 1 << 20,
        };
        assert_eq!(splitter.split(Some(small)).0, 1, "small reads stay whole");
        b.leave().await;
        a.heartbeat().await.unwrap();
        assert_eq!(a.live(), ["grpc://a:1"]);
        // A host that stops beating drops out after three missed heartbeats.
        let c = join("grpc://c:3").await;
        a.heartbeat().await.unwrap();
        assert_eq!(a.live().len(), 2);
        drop(c);
        tokio::time::sleep(beat * 4).await;
        a.heartbeat().await.unwrap();
        assert_eq!(a.live(), ["grpc://a:1"]);
        let all = a.registry.members().await.unwrap();
        assert_eq!(all.len(), 2, "the expired host is still listed, as expired");
    }
}
