//! The core every front-end calls: the use cases in [`read`](crate::read) and
//! [`write`](crate::write), and the table and plugin administration below. A
//! front-end (floe's JSON commands over Flight today, Flight SQL next) turns its
//! requests into these calls and their answers into its messages; it never reaches
//! past them into the engines or the plugin runtime.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};

use crate::access;
use crate::auth::{Auth, Credentials, Principal, Role};
use crate::cluster::Splitter;
use crate::command::{ExpireCommand, OrphansCommand, TableName, Target, Transform};
use crate::engines::Lakehouse;
use crate::error::Result;
use crate::limits::{Limits, Scope};
use crate::plugins::{Chain, Plugins};

// What the core's answers are made of, for front-ends.
pub use crate::engines::duckdb::IcebergReader;
pub use crate::engines::{Compacted, Expired, Orphans, SnapshotInfo, TableInfo, Written};
pub use crate::plugins::Entry;

pub struct Core {
    pub(crate) lakehouse: Arc<Lakehouse>,
    pub(crate) plugins: Arc<Plugins>,
    pub(crate) limits: Limits,
    auth: Auth,
    pub(crate) splitter: Splitter,
}

impl Core {
    pub fn new(
        lakehouse: Arc<Lakehouse>,
        plugins: Arc<Plugins>,
        limits: Limits,
        auth: Auth,
        splitter: Splitter,
    ) -> Self {
        Self {
            lakehouse,
            plugins,
            limits,
            auth,
            splitter,
        }
    }

    /// Who sent `credentials` (Unauthenticated when nobody the host knows).
    pub async fn authenticate(&self, credentials: Credentials) -> Result<Principal> {
        self.auth.authenticate(credentials).await
    }

    /// A user's password for a bearer token (Flight's Handshake).
    pub async fn login(&self, user: &str, password: &str) -> Result<(Principal, String)> {
        self.auth.login(user, password).await
    }

    /// The scope of a new request from `principal`; `client_timeout` is the
    /// deadline its client set.
    pub fn scope(&self, principal: Principal, client_timeout: Option<Duration>) -> Scope {
        self.limits.scope(Arc::new(principal), client_timeout)
    }

    /// Stop every running request: the end of a shutdown's grace period.
    pub fn cancel_all(&self) {
        self.limits.cancel_all();
    }

    /// `transforms` bound to `input`; a chain of plugins holds one of the host's
    /// plugin slots for as long as it lives.
    pub(crate) async fn bind_chain(
        &self,
        transforms: &[Transform],
        input: SchemaRef,
    ) -> Result<Chain> {
        if transforms.is_empty() {
            return Ok(Chain::empty(input));
        }
        let slot = self.limits.plugin_slot().await?;
        let mut chain = crate::plugins::bind_chain(&self.plugins, transforms, input).await?;
        chain.hold(slot);
        Ok(chain)
    }

    /// The SQL name of a column type, as queries and metadata show it.
    pub fn sql_type_name(data_type: &DataType) -> Option<String> {
        crate::engines::duckdb::sql::type_name(data_type)
    }

    pub fn iceberg_reader(&self) -> IcebergReader {
        self.lakehouse.iceberg_reader().0
    }

    /// The tables the principal may read.
    pub async fn list_tables(&self, scope: &Scope) -> Result<Vec<TableInfo>> {
        let principal = scope.principal();
        let mut tables = self.lakehouse.list_tables().await?;
        tables.retain(|t| principal.may(Role::Read, &t.name.namespace));
        Ok(tables)
    }

    pub async fn drop_table(&self, table: &TableName, scope: &Scope) -> Result<Target> {
        access::check_admin(scope.principal(), "drop tables")?;
        let target = self.lakehouse.drop_table(table).await?;
        tracing::info!(principal = %scope.principal().name, %table, "table dropped");
        Ok(target)
    }

    pub async fn snapshots(&self, table: &TableName, scope: &Scope) -> Result<Vec<SnapshotInfo>> {
        access::check_read(scope.principal(), table)?;
        self.lakehouse.snapshots(table).await
    }

    pub async fn compact(&self, table: &TableName, scope: &Scope) -> Result<Option<Compacted>> {
        access::check_admin(scope.principal(), "compact tables")?;
        self.lakehouse.compact(table).await
    }

    pub async fn expire_snapshots(
        &self,
        command: &ExpireCommand,
        scope: &Scope,
    ) -> Result<Expired> {
        access::check_admin(scope.principal(), "expire snapshots")?;
        self.lakehouse
            .expire_snapshots(&command.table, &command.options)
            .await
    }

    pub async fn remove_orphan_files(
        &self,
        command: &OrphansCommand,
        scope: &Scope,
    ) -> Result<Orphans> {
        access::check_admin(scope.principal(), "remove orphan files")?;
        self.lakehouse
            .remove_orphan_files(&command.table, command.older_than, command.dry_run)
            .await
    }

    pub async fn list_plugins(&self, scope: &Scope) -> Result<Vec<Entry>> {
        access::check_compute(scope.principal())?;
        self.plugins.registry().list().await
    }
}
