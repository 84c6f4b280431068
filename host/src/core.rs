//! The core every front-end calls: the use cases in [`read`](crate::read) and
//! [`write`](crate::write), and the table and plugin administration below. A
//! front-end (floe's JSON commands over Flight today, Flight SQL next) turns its
//! requests into these calls and their answers into its messages; it never reaches
//! past them into the engines or the plugin runtime.

use std::sync::Arc;

use crate::command::{TableName, Target};
use crate::engines::Lakehouse;
use crate::error::Result;
use crate::plugins::Plugins;

// What the core's answers are made of, for front-ends.
pub use crate::engines::duckdb::IcebergReader;
pub use crate::engines::{Compacted, SnapshotInfo, TableInfo, Written};
pub use crate::plugins::Entry;

pub struct Core {
    pub(crate) lakehouse: Arc<Lakehouse>,
    pub(crate) plugins: Arc<Plugins>,
}

impl Core {
    pub fn new(lakehouse: Arc<Lakehouse>, plugins: Arc<Plugins>) -> Self {
        Self { lakehouse, plugins }
    }

    pub fn iceberg_reader(&self) -> IcebergReader {
        self.lakehouse.iceberg_reader().0
    }

    pub async fn list_tables(&self) -> Result<Vec<TableInfo>> {
        self.lakehouse.list_tables().await
    }

    pub async fn drop_table(&self, table: &TableName) -> Result<Target> {
        self.lakehouse.drop_table(table).await
    }

    pub async fn snapshots(&self, table: &TableName) -> Result<Vec<SnapshotInfo>> {
        self.lakehouse.snapshots(table).await
    }

    pub async fn compact(&self, table: &TableName) -> Result<Option<Compacted>> {
        self.lakehouse.compact(table).await
    }

    pub fn list_plugins(&self) -> Result<Vec<Entry>> {
        self.plugins.registry().list()
    }
}
