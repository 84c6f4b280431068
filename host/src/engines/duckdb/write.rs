//! Writes to DuckDB-native tables: one transaction per upload, fed batch by batch
//! through DuckDB's Arrow appender on a blocking thread. Nothing is visible until
//! the upload ends and the transaction commits; a failed upload rolls back.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use duckdb::Connection;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{DuckEngine, sql};
use crate::command::{TableName, WriteMode};
use crate::engines::conform::{conform, difference};
use crate::error::{Context, Error, Result};

enum Message {
    Batch(RecordBatch),
    Commit,
}

pub struct DuckWrite {
    tx: mpsc::Sender<Message>,
    /// None once joined (after it stopped early).
    worker: Option<JoinHandle<Result<u64>>>,
}

impl DuckEngine {
    pub fn begin_write(
        self: &Arc<Self>,
        name: TableName,
        mode: WriteMode,
        upload: SchemaRef,
    ) -> DuckWrite {
        let (tx, mut rx) = mpsc::channel(4);
        let engine = self.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let conn = engine.connect()?;
            conn.execute_batch(sql::BEGIN)
                .context("starting a DuckDB transaction")?;
            let result = write_all(&conn, &name, mode, &upload, &mut rx);
            let end = if result.is_ok() {
                sql::COMMIT
            } else {
                sql::ROLLBACK
            };
            let ended = conn
                .execute_batch(end)
                .with_context(|| format!("{end} of the write to {name}"));
            let rows = result?;
            ended.map(|()| rows)
        });
        DuckWrite {
            tx,
            worker: Some(worker),
        }
    }
}

impl DuckWrite {
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.tx.send(Message::Batch(batch)).await.is_err() {
            // The worker stopped early: its error says why.
            return Err(self.worker_error().await);
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<u64> {
        let _ = self.tx.send(Message::Commit).await;
        drop(self.tx);
        let Some(worker) = self.worker else {
            return Err(Error::internal("DuckDB writer ended early"));
        };
        worker
            .await
            .map_err(|err| Error::internal(format!("DuckDB writer failed: {err}")))?
    }

    /// Roll back: dropping the sender without `Commit` ends the transaction unapplied.
    pub async fn abort(self) {
        drop(self.tx);
        if let Some(worker) = self.worker {
            let _ = worker.await;
        }
    }

    /// Why the worker stopped; it is awaited here, once (a task may be joined only once).
    async fn worker_error(&mut self) -> Error {
        let Some(worker) = self.worker.take() else {
            return Error::internal("DuckDB writer ended early");
        };
        match worker.await {
            Ok(Err(err)) => err,
            Ok(Ok(_)) => Error::internal("DuckDB writer ended early"),
            Err(err) => Error::internal(format!("DuckDB writer failed: {err}")),
        }
    }
}

fn write_all(
    conn: &Connection,
    name: &TableName,
    mode: WriteMode,
    upload: &SchemaRef,
    rx: &mut mpsc::Receiver<Message>,
) -> Result<u64> {
    let exists: bool = conn
        .query_row(sql::TABLE_EXISTS, [&name.namespace, &name.name], |r| {
            r.get(0)
        })
        .context("looking up the table")?;
    match (exists, mode) {
        (true, WriteMode::Create | WriteMode::ErrorIfExists) => {
            return Err(Error::AlreadyExists(format!("table {name} already exists")));
        }
        (true, WriteMode::Append) => {}
        (exists, _) => {
            conn.execute_batch(&sql::create_table(name, upload.fields(), exists)?)
                .with_context(|| format!("creating {name}"))?;
        }
    }
    let table_schema = conn
        .prepare(&sql::no_rows(name))
        .and_then(|mut s| s.query_arrow([]).map(|a| a.get_schema()))
        .with_context(|| format!("reading the schema of {name}"))?;
    let storable =
        |up: &DataType, stored: &DataType| normalized(up).equals_datatype(&normalized(stored));
    if let Some(diff) = difference(&table_schema, upload, storable) {
        return Err(Error::invalid(format!("cannot append to {name}: {diff}")));
    }

    let mut appender = conn
        .appender_to_db(&name.name, &name.namespace)
        .context("starting the appender")?;
    let mut rows = 0u64;
    while let Some(message) = rx.blocking_recv() {
        match message {
            Message::Batch(batch) => {
                rows += batch.num_rows() as u64;
                let batch = conform(&batch, &table_schema)?;
                appender
                    .append_record_batch(batch)
                    .with_context(|| format!("appending to {name}"))?;
            }
            Message::Commit => {
                appender
                    .flush()
                    .with_context(|| format!("appending to {name}"))?;
                return Ok(rows);
            }
        }
    }
    Err(Error::Cancelled(format!(
        "the upload to {name} ended without completing"
    )))
}

/// DuckDB reports one Arrow type per SQL type; uploads may use a sibling type.
fn normalized(dt: &DataType) -> DataType {
    match dt {
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, Some("UTC".into())),
        other => other.clone(),
    }
}
