//! Queries: the output schema without running the query, and a streamed result.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::compute::BatchCoalescer;
use arrow::datatypes::SchemaRef;
use duckdb::types::Value;
use duckdb::{Connection, InterruptHandle};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::DuckEngine;
use super::error::query_error;
use super::sql::{Origin, Query};
use crate::command::SqlValue;
use crate::error::{Error, Result};
use crate::limits::holding;

/// DuckDB produces 2,048-row chunks; Flight clients do better with fewer, larger batches.
const TARGET_BATCH_ROWS: usize = 64 * 1024;
/// Batches in flight between DuckDB and the client: bounds memory per request.
const CHANNEL_DEPTH: usize = 4;

/// A running query: its schema, then its batches as DuckDB produces them.
/// Dropping it interrupts the query.
pub struct QueryStream {
    pub schema: SchemaRef,
    batches: mpsc::Receiver<Result<RecordBatch>>,
    interrupt: Interrupt,
}

impl QueryStream {
    pub fn into_stream(self) -> BoxStream<'static, Result<RecordBatch>> {
        holding(ReceiverStream::new(self.batches).boxed(), self.interrupt)
    }
}

/// Interrupts its connection's query when dropped: a client gone, a deadline
/// passed. Harmless once the query has ended.
struct Interrupt(Arc<Mutex<Option<Arc<InterruptHandle>>>>);

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(handle) = self.0.lock().expect("interrupt lock").as_ref() {
            handle.interrupt();
        }
    }
}

/// Retire `conn`'s interrupt handle before the connection is closed or serves
/// another query: duckdb-rs disconnects before it retires the handle, so an
/// interrupt racing the close would touch a freed connection, and one arriving
/// later would stop the next query.
fn disarm(handle: &Mutex<Option<Arc<InterruptHandle>>>) {
    handle.lock().expect("interrupt lock").take();
}

impl DuckEngine {
    /// Run `query` on a blocking thread and stream its result.
    pub async fn query(self: &Arc<Self>, query: Query) -> Result<QueryStream> {
        let (schema_tx, schema_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let engine = self.clone();
        let conn = self.check_out()?;
        let handle = Arc::new(Mutex::new(Some(conn.interrupt_handle())));
        // Held here until the schema arrives, then by the stream: whichever is
        // dropped first stops the query.
        let interrupt = Interrupt(handle.clone());
        tokio::task::spawn_blocking(move || {
            let failed = tx.clone();
            // duckdb-rs may panic on a failed fetch: the panic fails this request only.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                engine.run(&conn, &query, schema_tx, &tx)
            }));
            disarm(&handle);
            let error = match outcome {
                Ok(Ok(Finished::Ended)) => return engine.check_in(conn),
                Ok(Ok(Finished::Abandoned)) => return,
                Ok(Err(err)) => err,
                Err(panic) => Error::internal(format!("query failed: {}", panic_message(&panic))),
            };
            let _ = failed.blocking_send(Err(error));
        });
        match schema_rx.await {
            Ok(Ok(schema)) => Ok(QueryStream {
                schema,
                batches: rx,
                interrupt,
            }),
            Ok(Err(err)) => Err(err),
            Err(_) => {
                // The task ended before reporting a schema: its error is in the channel.
                let mut rx = rx;
                Err(match rx.recv().await {
                    Some(Err(err)) => err,
                    _ => Error::internal("query ended without a result"),
                })
            }
        }
    }

    fn run(
        &self,
        conn: &Connection,
        query: &Query,
        schema_tx: oneshot::Sender<Result<SchemaRef>>,
        tx: &mpsc::Sender<Result<RecordBatch>>,
    ) -> Result<Finished> {
        // The host's own queries are SELECTs by construction: only a client's text is
        // checked (and so prepared twice).
        let (sql, params) = (query.text(), query.params());
        let checked = match query.origin() {
            Origin::Client => self.check(sql, Origin::Client, params.len()).map(|_| ()),
            Origin::Host => Ok(()),
        };
        let started = checked.and_then(|_| start(conn, sql, values(params)));
        let (stmt, schema) = match started {
            Ok(started) => started,
            Err(err) => {
                let _ = schema_tx.send(Err(err));
                return Ok(Finished::Abandoned);
            }
        };
        if schema_tx.send(Ok(schema.clone())).is_err() {
            return Ok(Finished::Abandoned);
        }
        let mut coalescer = BatchCoalescer::new(schema, TARGET_BATCH_ROWS);
        loop {
            // `step` reports fetch errors where the iterator would panic.
            let chunk = stmt.step().map_err(query_error)?;
            let done = chunk.is_none();
            match chunk {
                Some(chunk) => coalescer.push_batch(RecordBatch::from(&chunk))?,
                None => coalescer.finish_buffered_batch()?,
            }
            while let Some(batch) = coalescer.next_completed_batch() {
                if tx.blocking_send(Ok(batch)).is_err() {
                    return Ok(Finished::Abandoned); // the client went away: stop reading
                }
            }
            if done {
                return Ok(Finished::Ended);
            }
        }
    }
}

/// How a query's run ended: an ended one leaves its connection ready for another.
enum Finished {
    Ended,
    /// Refused, failed to start, or its client went away mid-stream.
    Abandoned,
}

/// Execute `sql` with its parameters' values as a streaming query and report its
/// schema; the statement prepared once per connection.
fn start<'c>(
    conn: &'c duckdb::Connection,
    sql: &str,
    params: Vec<Value>,
) -> Result<(duckdb::CachedStatement<'c>, SchemaRef)> {
    let mut stmt = conn.prepare_cached(sql).map_err(query_error)?;
    let schema = stmt
        .stream_arrow(duckdb::params_from_iter(params))
        .map_err(query_error)?
        .get_schema();
    Ok((stmt, schema))
}

/// Parameter values as DuckDB binds them.
pub(super) fn values(params: &[SqlValue]) -> Vec<Value> {
    params
        .iter()
        .map(|param| match param {
            SqlValue::Null => Value::Null,
            SqlValue::Bool(b) => Value::Boolean(*b),
            SqlValue::Int(i) => Value::BigInt(*i),
            SqlValue::Float(f) => Value::Double(*f),
            SqlValue::Text(s) => Value::Text(s.clone()),
        })
        .collect()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}
