//! Hosts sharing a PostgreSQL catalog take turns committing to a table: a session
//! advisory lock per table, held across a commit's attempts. The catalog's
//! compare-and-swap alone is not fair: a host whose appenders keep losing the swap
//! to other hosts can lose forty times in a row. The lock is a courtesy, not the
//! proof: other engines do not take it, the swap still decides, and a host that
//! cannot get its turn in time commits without it.

use std::time::Duration;

use sqlx::AnyPool;
use sqlx::pool::PoolConnection;

use crate::command::TableName;

/// Connections a host keeps for turns: tables it commits to at the same moment.
pub(super) const CONNECTIONS: u32 = 8;

/// How long a commit waits for its turn before going ahead without it.
const WAIT: Duration = Duration::from_secs(10);

/// A host's turn at a table. Dropped without [`HostTurn::end`] (a commit cancelled
/// mid-way), it closes its connection, which ends the lock with the session.
pub(super) struct HostTurn {
    conn: Option<PoolConnection<sqlx::Any>>,
    key: i64,
}

impl Drop for HostTurn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

impl HostTurn {
    /// Wait for `table`'s turn; `None` if it did not come within the wait or the
    /// catalog could not give it (the commit then relies on the swap alone).
    pub async fn take(pool: &AnyPool, table: &TableName) -> Option<Self> {
        let key = lock_key(table);
        // Held from the start: a wait given up (or failed) mid-query drops it, which
        // closes the connection, so a lock granted after all cannot outlive the wait.
        let taking = async {
            let mut turn = Self {
                conn: Some(pool.acquire().await?),
                key,
            };
            let conn = turn.conn.as_mut().expect("held until dropped");
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut **conn)
                .await?;
            Ok::<_, sqlx::Error>(turn)
        };
        match tokio::time::timeout(WAIT, taking).await {
            Ok(Ok(turn)) => Some(turn),
            Ok(Err(err)) => {
                tracing::warn!(%table, %err, "committing without a turn");
                None
            }
            Err(_) => {
                tracing::info!(%table, "no turn within {WAIT:?}: committing without one");
                None
            }
        }
    }

    /// End the turn, keeping the connection for the next one.
    pub async fn end(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut *conn)
            .await;
        match unlocked {
            Ok(_) => drop(conn),
            Err(_) => drop(conn.detach()),
        }
    }
}

/// The advisory lock key of a table: the first 8 bytes of a digest of its name,
/// the same in every host.
fn lock_key(table: &TableName) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("floe commit turn {table}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}
