//! A chain of bound plugins, and running one over a stream of batches.

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceAny;

use floe_wire::ipc;

use super::runtime::Guest;
use crate::error::{Error, Result};
use crate::limits::{Slot, holding};

/// What a plugin's `process` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Batches of its output schema.
    Transform,
    /// A boolean mask over the rows it was sent; the host applies the mask to
    /// the whole batch, so a filter's output schema is its input's.
    Filter,
}

/// One plugin bound to its input schema and arguments: bound once per request.
pub struct Stage {
    guest: Guest,
    instance: ResourceAny,
    role: Role,
    output_schema: SchemaRef,
    /// The input columns the plugin reads, when not all: `process` is sent
    /// exactly these, in this order.
    input_columns: Option<Vec<String>>,
    /// Where those columns are in the batches this stage receives.
    projection: Option<Vec<usize>>,
    /// For a stateless plugin: how to bind a fresh instance in its place.
    renewal: Option<Renewal>,
}

/// What a stateless plugin was bound with, so a fresh instance can replace it
/// between batches: guest runtimes that leak (componentize-py's, for one) would
/// otherwise reach their memory cap on a long stream.
struct Renewal {
    schema: Vec<u8>,
    args: String,
    /// Batches processed by the instance now bound.
    processed: u64,
}

impl Stage {
    pub fn bind(
        mut guest: Guest,
        role: Role,
        stateless: bool,
        input: &SchemaRef,
        args: &str,
    ) -> Result<Self> {
        let schema = ipc::encode_schema(input)?;
        let instance = guest.bind(&schema, args)?;
        let bytes = guest.output_schema(instance)?;
        let output_schema = ipc::decode_schema(bytes).map_err(|err| malformed(&guest, err))?;
        // A plugin refuses args that would leave no columns (InvalidArgs); one that
        // declares such an output anyway is broken.
        if output_schema.fields().is_empty() {
            return Err(broken(
                &guest,
                "declares an output schema with no columns".into(),
            ));
        }
        let input_columns = guest.input_columns(instance)?;
        if role == Role::Filter && output_schema != *input {
            return Err(broken(
                &guest,
                "a filter's output schema must be its input schema".into(),
            ));
        }
        let mut stage = Self {
            guest,
            instance,
            role,
            output_schema,
            input_columns,
            projection: None,
            renewal: stateless.then(|| Renewal {
                schema,
                args: args.to_string(),
                processed: 0,
            }),
        };
        stage.receive(input)?;
        Ok(stage)
    }

    /// A fresh instance in place of the bound one, bound to the same schema and
    /// arguments (and so declaring the same output).
    fn renew(&mut self) -> Result<()> {
        let Some(renewal) = &mut self.renewal else {
            return Ok(());
        };
        tracing::debug!(
            plugin = self.guest.name(),
            after = renewal.processed,
            "renewing a stateless plugin instance"
        );
        self.guest.renew()?;
        self.instance = self.guest.bind(&renewal.schema, &renewal.args)?;
        renewal.processed = 0;
        Ok(())
    }

    /// `process` in the guest. A stateless plugin is renewed before its memory
    /// nears the cap, and once more if a batch fails for memory after earlier
    /// batches grew it.
    fn call_process(&mut self, sent: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(renewal) = &self.renewal else {
            return self.guest.process(self.instance, sent);
        };
        let grown = renewal.processed > 0;
        let output = match self.guest.process(self.instance, sent) {
            Err(Error::ResourceExhausted(_)) if grown => {
                self.renew()?;
                self.guest.process(self.instance, sent)?
            }
            other => other?,
        };
        if let Some(renewal) = &mut self.renewal {
            renewal.processed += 1;
        }
        if self.guest.nears_memory_cap() {
            self.renew()?;
        }
        Ok(output)
    }

    /// Batches of `input` will arrive (the bound schema, or a narrower one with
    /// every column the plugin reads): find its columns in them.
    fn receive(&mut self, input: &SchemaRef) -> Result<()> {
        self.projection = match &self.input_columns {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| input.index_of(name))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| broken(&self.guest, format!("input-columns: {err}")))?,
            ),
        };
        if self.role == Role::Filter {
            self.output_schema = input.clone();
        }
        Ok(())
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    fn process(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        // Only the columns the plugin reads cross into it.
        let sent = match &self.projection {
            Some(columns) => ipc::encode_batch(&batch.project(columns)?)?,
            None => ipc::encode_batch(batch)?,
        };
        let Some(bytes) = self.call_process(&sent)? else {
            return Ok(None);
        };
        match self.role {
            Role::Transform => self.decode(bytes).map(Some),
            Role::Filter => {
                let mask = self.mask(bytes, batch.num_rows())?;
                let kept = filter_record_batch(batch, &mask)?;
                Ok((kept.num_rows() > 0).then_some(kept))
            }
        }
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        let output = self.guest.finish(self.instance)?;
        match self.role {
            Role::Transform => output.map(|bytes| self.decode(bytes)).transpose(),
            Role::Filter => Ok(None),
        }
    }

    /// A guest's batch, held to the schema it declared.
    fn decode(&self, bytes: Vec<u8>) -> Result<RecordBatch> {
        let batch = ipc::decode_batch(bytes).map_err(|err| malformed(&self.guest, err))?;
        RecordBatch::try_new(self.output_schema.clone(), batch.columns().to_vec()).map_err(|err| {
            broken(
                &self.guest,
                format!("returned a batch that does not match its output schema: {err}"),
            )
        })
    }

    /// A filter's answer: one boolean per input row.
    fn mask(&self, bytes: Vec<u8>, rows: usize) -> Result<BooleanArray> {
        let batch = ipc::decode_batch(bytes).map_err(|err| malformed(&self.guest, err))?;
        match batch.columns() {
            [mask] if mask.len() == rows => mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| {
                    broken(
                        &self.guest,
                        format!("returned a {} mask, not booleans", mask.data_type()),
                    )
                }),
            _ => Err(broken(
                &self.guest,
                format!(
                    "must return one boolean column of {rows} rows, not {} column(s) of {}",
                    batch.num_columns(),
                    batch.num_rows()
                ),
            )),
        }
    }
}

fn broken(guest: &Guest, what: String) -> Error {
    Error::internal(format!("plugin '{}' {what}", guest.name()))
}

fn malformed(guest: &Guest, err: arrow::error::ArrowError) -> Error {
    Error::internal(format!(
        "plugin '{}' returned malformed Arrow IPC: {err}",
        guest.name()
    ))
}

/// Plugins applied in order, each to the previous one's output.
pub struct Chain {
    input_schema: SchemaRef,
    stages: Vec<Stage>,
    /// The stages' guests stop within a tick once this is cancelled.
    cancel: CancellationToken,
    /// The host's plugin slot this chain occupies while it lives.
    slot: Option<Slot>,
}

impl Chain {
    pub fn new(input_schema: SchemaRef, stages: Vec<Stage>, cancel: CancellationToken) -> Self {
        Self {
            input_schema,
            stages,
            cancel,
            slot: None,
        }
    }

    /// No plugins: batches pass through as they are.
    pub fn empty(schema: SchemaRef) -> Self {
        Self::new(schema, Vec::new(), CancellationToken::new())
    }

    /// Keep `slot` taken until the chain has run.
    pub fn hold(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }

    /// The columns the chain reads, when fewer than all: a read can then scan only
    /// those and hand them to [`Chain::narrow`]. Walking back from the end: a
    /// transform needs what it declares; a filter passes its input on, so it needs
    /// what follows it needs plus what its predicate reads.
    pub fn input_columns(&self) -> Option<Vec<String>> {
        let mut needed: Option<Vec<String>> = None; // the client gets every column
        for stage in self.stages.iter().rev() {
            needed = match (&stage.role, needed, &stage.input_columns) {
                (Role::Transform, _, own) => own.clone(),
                (Role::Filter, Some(mut after), Some(own)) => {
                    for column in own {
                        if !after.contains(column) {
                            after.push(column.clone());
                        }
                    }
                    Some(after)
                }
                (Role::Filter, _, _) => None,
            };
        }
        let wanted = needed?;
        let narrower = wanted.len() < self.input_schema.fields().len()
            && wanted
                .iter()
                .all(|c| self.input_schema.field_with_name(c).is_ok());
        narrower.then_some(wanted)
    }

    /// The input will be `schema`, narrower than the one the chain was bound to but
    /// holding every column of [`Chain::input_columns`]. No plugin is bound again:
    /// the filters up to the first transform pass the narrower batches on, and each
    /// stage finds its columns in them.
    pub fn narrow(&mut self, schema: SchemaRef) -> Result<()> {
        self.input_schema = schema.clone();
        for stage in &mut self.stages {
            stage.receive(&schema)?;
            if stage.role == Role::Transform {
                break;
            }
        }
        Ok(())
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.stages
            .last()
            .map_or_else(|| self.input_schema.clone(), |s| s.output_schema.clone())
    }

    /// One input batch through every stage; `None` when a stage dropped it.
    pub fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        self.process_from(0, batch)
    }

    fn process_from(
        &mut self,
        first: usize,
        mut batch: RecordBatch,
    ) -> Result<Option<RecordBatch>> {
        for stage in &mut self.stages[first..] {
            match stage.process(&batch)? {
                Some(next) => batch = next,
                None => return Ok(None),
            }
        }
        Ok(Some(batch))
    }

    /// Finish each stage in order, passing what it flushes through the rest.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        let mut flushed = Vec::new();
        for i in 0..self.stages.len() {
            if let Some(batch) = self.stages[i].finish()?
                && let Some(batch) = self.process_from(i + 1, batch)?
            {
                flushed.push(batch);
            }
        }
        Ok(flushed)
    }

    /// The chain applied to a stream of batches (an empty chain passes it through).
    pub fn apply<S>(self, input: S) -> BoxStream<'static, Result<RecordBatch>>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        if self.stages.is_empty() {
            input.boxed()
        } else {
            self.run(input)
        }
    }

    /// Run the chain on a blocking thread (guests run synchronously), a couple
    /// of batches in flight each way so DuckDB or the network and the guests
    /// overlap. Dropping the returned stream stops the chain: the guest call in
    /// progress traps and the input (a query, an upload) is dropped.
    fn run<S>(mut self, input: S) -> BoxStream<'static, Result<RecordBatch>>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let (in_tx, mut in_rx) = mpsc::channel::<Result<RecordBatch>>(2);
        let (out_tx, out_rx) = mpsc::channel::<Result<RecordBatch>>(2);
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            let mut input = std::pin::pin!(input);
            loop {
                let item = tokio::select! {
                    item = input.next() => item,
                    _ = cancel.cancelled() => None,
                };
                let Some(item) = item else { break };
                if in_tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        let stop = self.cancel.clone().drop_guard();
        tokio::task::spawn_blocking(move || {
            let mut step = || -> Result<bool> {
                match in_rx.blocking_recv() {
                    Some(batch) => {
                        if let Some(out) = self.process(batch?)? {
                            return Ok(out_tx.blocking_send(Ok(out)).is_ok());
                        }
                        Ok(true)
                    }
                    None => {
                        for out in self.finish()? {
                            if out_tx.blocking_send(Ok(out)).is_err() {
                                break;
                            }
                        }
                        Ok(false)
                    }
                }
            };
            loop {
                match step() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(err) => {
                        let _ = out_tx.blocking_send(Err(err));
                        break;
                    }
                }
            }
        });
        holding(ReceiverStream::new(out_rx).boxed(), stop)
    }
}
