//! The write use case: the upload through its transform chain into one write
//! handle, committed once at the end of the stream. Any failure (bad schema, client
//! gone, commit conflict, a failing plugin) commits nothing and removes what was
//! written. And DoExchange's: batches through a chain and back.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::access;
use crate::command::{ExchangeCommand, PutCommand};
use crate::core::Core;
use crate::engines::{WriteHandle, WriteOptions, Written};
use crate::error::{Error, Result};
use crate::limits::Scope;

/// Batches received but not yet written, per upload.
const WRITE_AHEAD: usize = 4;

impl Core {
    /// Run one upload to completion: call it from a task of its own, so that a
    /// client hanging up cannot stop the cleanup half-way.
    /// The stream is bounded by `scope` (its deadline, the idle-upload timeout and
    /// the host's shutdown) and checked against the count the client announced.
    pub async fn write<S>(
        &self,
        command: PutCommand,
        schema: SchemaRef,
        batches: S,
        scope: Scope,
    ) -> Result<Written>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        access::check_write(scope.principal(), &command.table)?;
        check_columns(&schema)?;
        let _active = ActiveUpload::new();
        let batches =
            scope
                .clone()
                .upload(expect(batches, command.expect_rows, command.expect_batches));
        let chain = scope
            .run(
                "binding the upload's plugins",
                self.bind_chain(&command.transforms, schema),
            )
            .await?;
        let how = WriteOptions {
            mode: command.mode,
            target: command.target,
            partition_by: command.partition_by.as_deref(),
            keys: command.keys.as_deref(),
            replace_where: command.replace_where.as_deref(),
            idempotency_key: command.idempotency_key.as_deref(),
        };
        let handle = self
            .lakehouse
            .begin_write(&command.table, &how, chain.output_schema())
            .await?;
        let (handle, fed) = feed(handle, chain.apply(batches)).await?;
        if let Err(err) = fed {
            tracing::info!(table = %handle.table(), error = %err, "upload failed; nothing committed");
            handle.abort().await;
            return Err(err);
        }
        let written = handle.commit().await?;
        if written.duplicate {
            tracing::info!(table = %written.table, snapshot_id = ?written.snapshot_id, "upload's idempotency key already committed; nothing committed");
        } else {
            tracing::info!(table = %written.table, rows = written.rows, snapshot_id = ?written.snapshot_id, "upload committed");
        }
        Ok(written)
    }

    /// The client's batches through a transform chain: its output schema and batches.
    pub async fn exchange<S>(
        &self,
        command: ExchangeCommand,
        schema: SchemaRef,
        batches: S,
        scope: Scope,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        access::check_compute(scope.principal())?;
        check_columns(&schema)?;
        let chain = scope
            .run(
                "binding the exchange's plugins",
                self.bind_chain(&command.transforms, schema),
            )
            .await?;
        let schema = chain.output_schema();
        let output = chain.apply(scope.clone().upload(batches));
        Ok((schema, scope.stream("the exchange", output)))
    }
}

/// A table needs a column: Arrow allows a schema without any, SQL does not.
fn check_columns(schema: &SchemaRef) -> Result<()> {
    if schema.fields().is_empty() {
        return Err(Error::invalid("the stream's schema has no columns"));
    }
    Ok(())
}

/// The client's batches, ending in an error when the stream does not hold exactly
/// the rows (or batches) the client announced: a client that closed early, or sent
/// more, commits nothing.
fn expect<S>(
    batches: S,
    rows: Option<u64>,
    count: Option<u64>,
) -> impl Stream<Item = Result<RecordBatch>> + Send + 'static
where
    S: Stream<Item = Result<RecordBatch>> + Send + 'static,
{
    let (wanted, unit) = match (rows, count) {
        (Some(rows), _) => (Some(rows), "rows"),
        (None, Some(count)) => (Some(count), "batches"),
        (None, None) => (None, "rows"),
    };
    let size = move |batch: &RecordBatch| match unit {
        "rows" => batch.num_rows() as u64,
        _ => 1,
    };
    let wrong = move |seen: u64, wanted: u64| {
        let what = if seen < wanted {
            "ended after"
        } else {
            "sent at least"
        };
        Error::invalid(format!(
            "the upload announced {wanted} {unit} (expect_{unit}) but {what} {seen}; \
             nothing was committed"
        ))
    };
    let start = (Box::pin(batches), 0u64, false);
    futures::stream::unfold(start, move |(mut batches, seen, done)| async move {
        if done {
            return None;
        }
        let item = match batches.next().await {
            Some(Ok(batch)) => {
                let seen = seen + size(&batch);
                return match wanted {
                    Some(wanted) if seen > wanted => {
                        Some((Err(wrong(seen, wanted)), (batches, seen, true)))
                    }
                    _ => Some((Ok(batch), (batches, seen, false))),
                };
            }
            Some(Err(err)) => Err(err),
            None => match wanted {
                Some(wanted) if seen != wanted => Err(wrong(seen, wanted)),
                _ => return None,
            },
        };
        Some((item, (batches, seen, true)))
    })
}
/// Every batch into the handle, until the stream ends or fails. The handle writes on
/// its own task, a few batches behind, so receiving and decoding the upload overlap
/// with encoding it. Gives the handle back (to commit or abort) with the outcome.
async fn feed<S>(handle: WriteHandle, batches: S) -> Result<(WriteHandle, Result<()>)>
where
    S: Stream<Item = Result<RecordBatch>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<RecordBatch>(WRITE_AHEAD);
    let writer = tokio::spawn(async move {
        let mut handle = handle;
        while let Some(batch) = rx.recv().await {
            if let Err(err) = handle.write(batch).await {
                return (handle, Err(err));
            }
        }
        (handle, Ok(()))
    });
    let mut batches = std::pin::pin!(batches);
    let mut received = Ok(());
    while let Some(batch) = batches.next().await {
        match batch {
            // A closed channel means the writer failed: its error is the one to report.
            Ok(batch) => {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            Err(err) => {
                received = Err(err);
                break;
            }
        }
    }
    drop(tx);
    let (handle, written) = writer
        .await
        .map_err(|err| Error::internal(format!("the upload's writer failed: {err}")))?;
    Ok((handle, written.and(received)))
}

/// Counted in `floe_active_uploads` while it lives.
struct ActiveUpload;

impl ActiveUpload {
    fn new() -> Self {
        crate::metrics::metrics()
            .active_uploads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self
    }
}

impl Drop for ActiveUpload {
    fn drop(&mut self) {
        crate::metrics::metrics()
            .active_uploads
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
