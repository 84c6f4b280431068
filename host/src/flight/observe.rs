//! One record per RPC, written when its response ends (for a stream, when the
//! client has it all or goes away): a span carrying the RPC, principal and table,
//! an info event with rows, bytes, duration and status inside it, and the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow_flight::FlightData;
use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tonic::{Code, Status};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::metrics::metrics;

#[derive(Clone)]
pub struct Call(Arc<Record>);

struct Record {
    rpc: &'static str,
    span: tracing::Span,
    started: Instant,
    /// Whether the data flows to the host (DoPut) or from it.
    inbound: bool,
    rows: AtomicU64,
    bytes: AtomicU64,
    code: AtomicI32,
}

impl Call {
    pub fn start(rpc: &'static str) -> Self {
        Self::new(rpc, false)
    }

    /// An RPC whose data the client sends (DoPut).
    pub fn upload(rpc: &'static str) -> Self {
        Self::new(rpc, true)
    }

    fn new(rpc: &'static str, inbound: bool) -> Self {
        let span =
            tracing::info_span!("rpc", rpc, principal = Empty, action = Empty, table = Empty);
        Self(Arc::new(Record {
            rpc,
            span,
            started: Instant::now(),
            inbound,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            code: AtomicI32::new(Code::Ok as i32),
        }))
    }

    pub fn span(&self) -> tracing::Span {
        self.0.span.clone()
    }

    pub fn principal(&self, name: &str) {
        self.0.span.record("principal", name);
    }

    pub fn action(&self, name: &str) {
        self.0.span.record("action", name);
    }

    pub fn table(&self, table: &dyn std::fmt::Display) {
        self.0.span.record("table", tracing::field::display(table));
    }

    /// `work` inside the call's span; its error's code is the call's status.
    pub async fn run<T>(&self, work: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        self.outcome(work.instrument(self.span()).await)
    }

    fn outcome<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        if let Err(status) = &result {
            self.0.code.store(status.code() as i32, Ordering::Relaxed);
        }
        result
    }

    /// Counts the rows of `batches` as they pass.
    pub fn rows<S, E>(
        &self,
        batches: S,
    ) -> impl Stream<Item = Result<RecordBatch, E>> + Send + 'static
    where
        S: Stream<Item = Result<RecordBatch, E>> + Send + 'static,
    {
        let call = self.clone();
        batches.inspect(move |batch| {
            if let Ok(batch) = batch {
                call.0
                    .rows
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
        })
    }

    pub fn add_rows(&self, rows: u64) {
        self.0.rows.fetch_add(rows, Ordering::Relaxed);
    }

    /// Counts the bytes of Flight data as it passes, and keeps the call open until
    /// the stream is dropped; an error item is the call's status.
    pub fn data<S>(
        &self,
        data: S,
    ) -> impl Stream<Item = Result<FlightData, Status>> + Send + 'static
    where
        S: Stream<Item = Result<FlightData, Status>> + Send + 'static,
    {
        let call = self.clone();
        data.inspect(move |item| match item {
            Ok(data) => {
                let bytes = data.data_header.len() + data.data_body.len();
                call.0.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err(status) => {
                call.0.code.store(status.code() as i32, Ordering::Relaxed);
            }
        })
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let code = Code::from_i32(self.code.load(Ordering::Relaxed));
        let (rows, bytes) = (
            self.rows.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        );
        let m = metrics();
        let (row_counter, byte_counter) = if self.inbound {
            (&m.rows_in, &m.bytes_in)
        } else {
            (&m.rows_out, &m.bytes_out)
        };
        row_counter.fetch_add(rows, Ordering::Relaxed);
        byte_counter.fetch_add(bytes, Ordering::Relaxed);
        m.request(self.rpc, code, took);
        let _inside = self.span.enter();
        tracing::info!(
            rows,
            bytes,
            duration_ms = took.as_secs_f64() * 1000.0,
            status = ?code,
            "rpc done"
        );
    }
}
