//! Writes: DoPut streams the upload (through its transform chain, if any) into
//! the target table batch by batch and commits once, at the end of the stream.
//! Any failure (bad schema, client gone, commit conflict, a failing plugin)
//! commits nothing and removes what was written.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::{FlightData, FlightDescriptor, PutResult};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use super::stream;
use crate::command::{PutCommand, TableName, Target};
use crate::engines::duckdb::DuckWrite;
use crate::engines::iceberg::TableWrite;
use crate::engines::{Lakehouse, blocking};
use crate::error::{Error, Result};
use crate::plugins::{Plugins, bind_chain};

/// Batches received but not yet written, per upload.
const WRITE_AHEAD: usize = 4;

/// The PutResult's app_metadata.
#[derive(Debug, Serialize)]
pub struct PutSummary {
    pub table: TableName,
    pub target: Target,
    pub rows: u64,
    pub snapshot_id: Option<i64>,
    pub data_files: usize,
}

/// Where an upload's batches go.
enum Sink {
    Iceberg(Box<TableWrite>),
    Duckdb(DuckWrite),
}

pub fn put_command(descriptor: &FlightDescriptor) -> Result<PutCommand> {
    match descriptor.r#type() {
        DescriptorType::Cmd => PutCommand::from_json(&descriptor.cmd),
        DescriptorType::Path => PutCommand::from_path(&descriptor.path),
        DescriptorType::Unknown => Err(Error::invalid(
            "the descriptor has neither a command nor a path",
        )),
    }
}

/// Run one upload to completion. Runs in its own task so that a client hanging up
/// cannot stop the cleanup half-way.
pub async fn do_put<S>(
    lakehouse: Arc<Lakehouse>,
    plugins: Arc<Plugins>,
    upload: S,
) -> Result<PutResult>
where
    S: Stream<Item = Result<FlightData, tonic::Status>> + Send + Unpin + 'static,
{
    let (descriptor, mut decoder) = stream::open(upload).await?;
    let command = put_command(&descriptor)?;
    let schema = stream::schema(&mut decoder).await?;

    let chain = bind_chain(&plugins, &command.transforms, schema).await?;
    let sink = begin(&lakehouse, &command, chain.output_schema()).await?;
    let (sink, fed) = feed(sink, chain.apply(stream::batches(decoder))).await?;
    if let Err(err) = fed {
        sink.abort().await;
        tracing::info!(table = %command.table, error = %err, "upload failed; nothing committed");
        return Err(err);
    }
    let summary = sink.commit(&lakehouse, &command).await?;
    tracing::info!(table = %summary.table, rows = summary.rows, snapshot_id = ?summary.snapshot_id, "upload committed");
    let metadata = serde_json::to_vec(&summary).expect("summaries serialize");
    Ok(PutResult {
        app_metadata: metadata.into(),
    })
}

/// Every batch into the sink, until the stream ends or fails. The sink writes on
/// its own task, a few batches behind, so receiving and decoding the upload overlap
/// with encoding it. Gives the sink back (to commit or abort) with the outcome.
async fn feed<S>(sink: Sink, batches: S) -> Result<(Sink, Result<()>)>
where
    S: Stream<Item = Result<RecordBatch>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<RecordBatch>(WRITE_AHEAD);
    let writer = tokio::spawn(async move {
        let mut sink = sink;
        while let Some(batch) = rx.recv().await {
            if let Err(err) = sink.write(batch).await {
                return (sink, Err(err));
            }
        }
        (sink, Ok(()))
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
    let (sink, written) = writer
        .await
        .map_err(|err| Error::internal(format!("the upload's writer failed: {err}")))?;
    Ok((sink, written.and(received)))
}

async fn begin(
    lakehouse: &Arc<Lakehouse>,
    command: &PutCommand,
    schema: SchemaRef,
) -> Result<Sink> {
    let name = &command.table;
    match command.target {
        Target::Iceberg => {
            let (duck, n) = (lakehouse.duck.clone(), name.clone());
            if blocking(move || duck.table_exists(&n)).await? {
                return Err(Error::AlreadyExists(format!(
                    "{name} exists as a DuckDB table"
                )));
            }
            Ok(Sink::Iceberg(Box::new(
                lakehouse
                    .iceberg
                    .begin_write(name, command.mode, &schema)
                    .await?,
            )))
        }
        Target::Duckdb => {
            if lakehouse.iceberg.load(name).await?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "{name} exists as an Iceberg table"
                )));
            }
            Ok(Sink::Duckdb(lakehouse.duck.begin_write(
                name.clone(),
                command.mode,
                schema,
            )))
        }
    }
}

impl Sink {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            Sink::Iceberg(write) => write.write(&batch).await,
            Sink::Duckdb(write) => write.write(batch).await,
        }
    }

    async fn abort(self) {
        match self {
            Sink::Iceberg(write) => write.abort().await,
            Sink::Duckdb(write) => write.abort().await,
        }
    }

    async fn commit(self, lakehouse: &Arc<Lakehouse>, command: &PutCommand) -> Result<PutSummary> {
        let (table, target) = (command.table.clone(), command.target);
        match self {
            Sink::Iceberg(write) => {
                // SQL readers see the new snapshot too: their views are re-pointed
                // when they plan (`sync_views`), not here on every commit.
                let committed = lakehouse.iceberg.commit(*write).await?;
                lakehouse.compact_when_due(&table, &committed);
                Ok(PutSummary {
                    table,
                    target,
                    rows: committed.rows,
                    snapshot_id: Some(committed.snapshot_id),
                    data_files: committed.data_files,
                })
            }
            Sink::Duckdb(write) => {
                let rows = write.commit().await?;
                Ok(PutSummary {
                    table,
                    target,
                    rows,
                    snapshot_id: None,
                    data_files: 0,
                })
            }
        }
    }
}
