//! The write use case: the upload through its transform chain into one write
//! handle, committed once at the end of the stream. Any failure (bad schema, client
//! gone, commit conflict, a failing plugin) commits nothing and removes what was
//! written. And DoExchange's: batches through a chain and back.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::command::{ExchangeCommand, PutCommand};
use crate::core::Core;
use crate::engines::{WriteHandle, Written};
use crate::error::{Error, Result};
use crate::plugins::bind_chain;

/// Batches received but not yet written, per upload.
const WRITE_AHEAD: usize = 4;

impl Core {
    /// Run one upload to completion: call it from a task of its own, so that a
    /// client hanging up cannot stop the cleanup half-way.
    pub async fn write<S>(
        &self,
        command: PutCommand,
        schema: SchemaRef,
        batches: S,
    ) -> Result<Written>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let chain = bind_chain(&self.plugins, &command.transforms, schema).await?;
        let handle = self
            .lakehouse
            .begin_write(
                &command.table,
                command.mode,
                command.target,
                chain.output_schema(),
            )
            .await?;
        let (handle, fed) = feed(handle, chain.apply(batches)).await?;
        if let Err(err) = fed {
            tracing::info!(table = %handle.table(), error = %err, "upload failed; nothing committed");
            handle.abort().await;
            return Err(err);
        }
        let written = handle.commit().await?;
        tracing::info!(table = %written.table, rows = written.rows, snapshot_id = ?written.snapshot_id, "upload committed");
        Ok(written)
    }

    /// The client's batches through a transform chain: its output schema and batches.
    pub async fn exchange<S>(
        &self,
        command: ExchangeCommand,
        schema: SchemaRef,
        batches: S,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let chain = bind_chain(&self.plugins, &command.transforms, schema).await?;
        Ok((chain.output_schema(), chain.apply(batches)))
    }
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
