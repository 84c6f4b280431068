//! Small reads the host serves itself: a snapshot's Parquet files read with arrow-rs,
//! row groups and pages left out by their statistics, the filter applied while
//! decoding (other columns decoded only for the rows it keeps), stopped at the
//! limit. A 100-row read of a small table costs a fraction of a DuckDB query's
//! fixed cost (planning, scheduling, whole row groups decompressed).
//!
//! Taken only where the result is exactly DuckDB's `read_parquet` result: files
//! without deletes, written under the snapshot's schema, on local storage; a filter
//! that is wholly conditions the host evaluates as DuckDB does (see
//! [`super::prune::decidable`]); columns of flat types whose Arrow form is
//! DuckDB's. Anything else, or a scan that would decode much data, is DuckDB's.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Int32Array, Int64Array, RecordBatch, Scalar,
    StringArray, TimestampMicrosecondArray,
};
use arrow::compute::kernels::cmp;
use arrow::compute::{BatchCoalescer, and_kleene, cast};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::spec::{Datum, PrimitiveLiteral, PrimitiveType};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowFilter, RowSelection, RowSelector,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::footers::{Footers, io_error};
use super::prune::Op;
use crate::error::{Error, Result};
use crate::metrics::{count, metrics};

/// Past this many compressed bytes to decode, DuckDB's parallel scan is the faster.
const MAX_DIRECT_BYTES: u64 = 32 << 20;
/// As DuckDB's reads: fewer, larger batches for Flight clients.
const TARGET_BATCH_ROWS: usize = 64 * 1024;
/// Batches in flight between the reader and the client: bounds memory per request.
const CHANNEL_DEPTH: usize = 4;

/// A table read the host may serve itself, as planned (see the module's rules).
#[derive(Debug, Clone)]
pub struct DirectRead {
    /// The snapshot's files that the filter's bounds did not rule out.
    pub files: Vec<String>,
    /// All of the filter: every condition must hold.
    pub conditions: Vec<Predicate>,
    /// The columns read, as the client named them; None: all, in the files' order.
    pub columns: Option<Vec<String>>,
    pub limit: Option<u64>,
    /// The read's result schema, once known (DuckDB's, for the same read).
    pub schema: Option<SchemaRef>,
}

/// `column <op> value`, the column by name, the value of the column's type.
#[derive(Debug, Clone)]
pub struct Predicate {
    pub column: String,
    pub op: Op,
    pub value: Datum,
}

/// A direct read checked against the files' footers: it runs with [`Scan::run`].
pub struct Scan {
    files: Vec<FileScan>,
    schema: SchemaRef,
    limit: Option<usize>,
}

struct FileScan {
    path: String,
    metadata: ArrowReaderMetadata,
    row_groups: Vec<usize>,
    selection: Option<RowSelection>,
    projection: ProjectionMask,
    /// For each output column, its position in a decoded batch.
    positions: Vec<usize>,
    filter: Option<Filter>,
}

/// The filter's columns and, per condition, the position of its column among them.
struct Filter {
    projection: ProjectionMask,
    tests: Vec<(usize, Op, Scalar<ArrayRef>)>,
}

impl DirectRead {
    /// Only `columns` (names of this read's result), in that order, whose
    /// schema is `schema`.
    pub fn project(self, columns: &[String], schema: SchemaRef) -> Self {
        Self {
            columns: Some(columns.to_vec()),
            schema: Some(schema),
            ..self
        }
    }

    /// The scan of this read, producing `schema` (DuckDB's result schema for it), if
    /// the host can serve it exactly and cheaply; None leaves it to DuckDB. Reads
    /// the files' footers (cached). Blocks.
    pub fn scan(&self, schema: &SchemaRef, footers: &Footers) -> Result<Option<Scan>> {
        let mut files = Vec::with_capacity(self.files.len());
        let mut bytes = 0;
        for path in &self.files {
            let metadata = footers.get(path)?;
            let Some(file) = self.file_scan(path, metadata, schema) else {
                return Ok(None);
            };
            bytes += file.bytes(self.limit.is_some());
            if bytes > MAX_DIRECT_BYTES {
                return Ok(None); // before reading the other files' footers
            }
            if !file.row_groups.is_empty() {
                files.push(file);
            }
        }
        Ok(Some(Scan {
            files,
            schema: schema.clone(),
            limit: self.limit.map(|n| n as usize),
        }))
    }

    fn file_scan(
        &self,
        path: &str,
        metadata: ArrowReaderMetadata,
        schema: &SchemaRef,
    ) -> Option<FileScan> {
        let file_schema = metadata.schema().clone();
        let roots: Vec<usize> = match &self.columns {
            Some(columns) => columns
                .iter()
                .map(|c| column(&file_schema, c))
                .collect::<Option<_>>()?,
            None => (0..file_schema.fields().len()).collect(),
        };
        if roots.len() != schema.fields().len()
            || !roots
                .iter()
                .zip(schema.fields())
                .all(|(&root, out)| converts(file_schema.field(root).data_type(), out.data_type()))
        {
            return None;
        }
        let parquet_schema = metadata.parquet_schema();
        let (projection, positions) = projected(parquet_schema, &roots);
        let mut conditions = Vec::with_capacity(self.conditions.len());
        for c in &self.conditions {
            let root = column(&file_schema, &c.column)?;
            let value = literal(&c.value, file_schema.field(root).data_type())?;
            conditions.push((root, c.op, value));
        }
        let (row_groups, selection) = pruned(&metadata, &conditions)?;
        let filter = (!conditions.is_empty()).then(|| {
            let roots: Vec<usize> = conditions.iter().map(|(root, ..)| *root).collect();
            let (projection, positions) = projected(parquet_schema, &roots);
            Filter {
                projection,
                tests: conditions
                    .into_iter()
                    .zip(positions)
                    .map(|((_, op, value), at)| (at, op, Scalar::new(value)))
                    .collect(),
            }
        });
        Some(FileScan {
            path: path.to_string(),
            metadata,
            row_groups,
            selection,
            projection,
            positions,
            filter,
        })
    }
}

impl FileScan {
    /// The compressed bytes the scan decodes at most: the filter's columns in the
    /// row groups kept, and the other columns too unless a limit stops it early.
    fn bytes(&self, limited: bool) -> u64 {
        let parquet = self.metadata.parquet_schema();
        let mut columns = Vec::new();
        for leaf in 0..parquet.num_columns() {
            let filtered = self
                .filter
                .as_ref()
                .is_some_and(|f| f.projection.leaf_included(leaf));
            if filtered || (!limited && self.projection.leaf_included(leaf)) {
                columns.push(leaf);
            }
        }
        let groups = self.metadata.metadata().row_groups();
        self.row_groups
            .iter()
            .flat_map(|&g| {
                columns
                    .iter()
                    .map(move |&c| groups[g].column(c).compressed_size())
            })
            .map(|n| n.max(0) as u64)
            .sum()
    }

    fn reader(
        self,
        limit: Option<usize>,
    ) -> Result<(String, Vec<usize>, ParquetRecordBatchReader)> {
        let file = File::open(&self.path).map_err(|err| io_error(&self.path, err))?;
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata)
            .with_projection(self.projection)
            .with_row_groups(self.row_groups)
            .with_batch_size(TARGET_BATCH_ROWS);
        if let Some(selection) = self.selection {
            builder = builder.with_row_selection(selection);
        }
        if let Some(filter) = self.filter {
            let tests = filter.tests;
            let predicate =
                ArrowPredicateFn::new(filter.projection, move |batch| keep(&batch, &tests));
            builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
        }
        if let Some(limit) = limit {
            builder = builder.with_limit(limit);
        }
        let reader = builder
            .build()
            .map_err(|err| Error::internal(format!("reading {}: {err}", self.path)))?;
        Ok((self.path, self.positions, reader))
    }
}

/// Scan `read` on a blocking thread, streaming `schema`'s batches, if the host
/// can serve it (see [`DirectRead::scan`]); None leaves it to DuckDB.
pub async fn scan(
    read: DirectRead,
    schema: SchemaRef,
    footers: Arc<Footers>,
) -> Result<Option<BoxStream<'static, Result<RecordBatch>>>> {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        // A malformed file may make the Parquet reader panic: the panic fails this read only.
        let outcome = catch_unwind(AssertUnwindSafe(|| match read.scan(&schema, &footers) {
            Ok(Some(scan)) => {
                let _ = ready_tx.send(Ok(true));
                scan.run(&tx)
            }
            Ok(None) => {
                let _ = ready_tx.send(Ok(false));
                Ok(())
            }
            Err(err) => {
                let _ = ready_tx.send(Err(err));
                Ok(())
            }
        }));
        let error = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(err)) => err,
            Err(_) => Error::internal("reading the table's Parquet files failed (a reader panic)"),
        };
        let _ = tx.blocking_send(Err(error));
    });
    match ready_rx.await {
        Ok(Ok(true)) => {
            count(&metrics().direct_reads);
            Ok(Some(ReceiverStream::new(rx).boxed()))
        }
        Ok(Ok(false)) => Ok(None),
        Ok(Err(err)) => Err(err),
        Err(_) => {
            let mut rx = rx;
            Err(match rx.recv().await {
                Some(Err(err)) => err,
                _ => Error::internal("a direct read ended without a result"),
            })
        }
    }
}

impl Scan {
    /// Read the files in order into `tx` until the limit; stops early when the
    /// receiver is gone (the client left). Blocks.
    pub fn run(self, tx: &mpsc::Sender<Result<RecordBatch>>) -> Result<()> {
        let mut remaining = self.limit;
        let mut coalescer = BatchCoalescer::new(self.schema.clone(), TARGET_BATCH_ROWS);
        for file in self.files {
            if remaining == Some(0) {
                break;
            }
            let (path, positions, reader) = file.reader(remaining)?;
            for batch in reader {
                let batch =
                    batch.map_err(|err| Error::internal(format!("reading {path}: {err}")))?;
                let columns = positions
                    .iter()
                    .zip(self.schema.fields())
                    .map(|(&at, field)| conformed(batch.column(at), field.data_type()))
                    .collect::<Result<Vec<_>, _>>()?;
                let rows = batch.num_rows();
                let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
                remaining = remaining.map(|n| n.saturating_sub(rows));
                coalescer.push_batch(batch)?;
                if !sent(&mut coalescer, tx) {
                    return Ok(());
                }
            }
        }
        coalescer.finish_buffered_batch()?;
        sent(&mut coalescer, tx);
        Ok(())
    }
}

/// Send the coalescer's completed batches; false once the receiver is gone.
fn sent(coalescer: &mut BatchCoalescer, tx: &mpsc::Sender<Result<RecordBatch>>) -> bool {
    while let Some(done) = coalescer.next_completed_batch() {
        if tx.blocking_send(Ok(done)).is_err() {
            return false;
        }
    }
    true
}

/// Which rows of `batch` (the filter's columns) meet every test; unknown is no.
fn keep(
    batch: &RecordBatch,
    tests: &[(usize, Op, Scalar<ArrayRef>)],
) -> Result<BooleanArray, ArrowError> {
    let ((at, op, value), rest) = tests.split_first().expect("a filter has conditions");
    let mut kept = compare(batch.column(*at), *op, value)?;
    for (at, op, value) in rest {
        kept = and_kleene(&kept, &compare(batch.column(*at), *op, value)?)?;
    }
    Ok(kept)
}

fn compare(
    column: &dyn Array,
    op: Op,
    value: &Scalar<ArrayRef>,
) -> Result<BooleanArray, ArrowError> {
    match op {
        Op::Eq => cmp::eq(&column, value),
        Op::Lt => cmp::lt(&column, value),
        Op::LtEq => cmp::lt_eq(&column, value),
        Op::Gt => cmp::gt(&column, value),
        Op::GtEq => cmp::gt_eq(&column, value),
    }
}

/// The row groups, and within them the pages, whose statistics allow a row meeting
/// every condition; None if statistics cannot be read as the column's type.
fn pruned(
    metadata: &ArrowReaderMetadata,
    conditions: &[(usize, Op, ArrayRef)],
) -> Option<(Vec<usize>, Option<RowSelection>)> {
    let parquet = metadata.metadata();
    let groups = parquet.row_groups();
    let all: Vec<usize> = (0..groups.len()).collect();
    if conditions.is_empty() {
        return Some((all, None));
    }
    let schema = metadata.schema();
    let converters = conditions
        .iter()
        .map(|(root, ..)| {
            StatisticsConverter::try_new(
                schema.field(*root).name(),
                schema,
                metadata.parquet_schema(),
            )
            .ok()
        })
        .collect::<Option<Vec<_>>>()?;
    let mut kept = vec![true; groups.len()];
    for ((_, op, value), converter) in conditions.iter().zip(&converters) {
        let mins = converter.row_group_mins(groups.iter()).ok()?;
        let maxes = converter.row_group_maxes(groups.iter()).ok()?;
        for (k, may) in kept.iter_mut().zip(may_hold(*op, &mins, &maxes, value)?) {
            *k &= may;
        }
    }
    let (Some(pages), Some(offsets)) = (parquet.column_index(), parquet.offset_index()) else {
        return Some((all.into_iter().filter(|&g| kept[g]).collect(), None));
    };
    let mut row_groups = Vec::new();
    let mut selectors = Vec::new();
    for g in all.into_iter().filter(|&g| kept[g]) {
        let rows = groups[g].num_rows() as usize;
        let mut selection = RowSelection::from(vec![RowSelector::select(rows)]);
        for ((_, op, value), converter) in conditions.iter().zip(&converters) {
            let at = [g];
            let mins = converter.data_page_mins(pages, offsets, at.iter()).ok()?;
            let maxes = converter.data_page_maxes(pages, offsets, at.iter()).ok()?;
            let Ok(Some(counts)) = converter.data_page_row_counts(offsets, groups, at.iter())
            else {
                continue;
            };
            if counts.len() != mins.len() || counts.null_count() > 0 {
                continue;
            }
            let pages: Vec<RowSelector> = may_hold(*op, &mins, &maxes, value)?
                .into_iter()
                .zip(counts.values().iter())
                .map(|(may, &n)| match may {
                    true => RowSelector::select(n as usize),
                    false => RowSelector::skip(n as usize),
                })
                .collect();
            selection = selection.intersection(&RowSelection::from(pages));
        }
        if selection.selects_any() {
            row_groups.push(g);
            selectors.extend(selection.iter().copied());
        }
    }
    Some((row_groups, Some(RowSelection::from(selectors))))
}

/// For each (min, max) pair, whether a value in it may meet `column <op> value`
/// (unknown bounds may).
fn may_hold(op: Op, mins: &ArrayRef, maxes: &ArrayRef, value: &ArrayRef) -> Option<Vec<bool>> {
    let value = Scalar::new(value.clone());
    let may = match op {
        Op::Eq => and_kleene(
            &cmp::lt_eq(mins, &value).ok()?,
            &cmp::gt_eq(maxes, &value).ok()?,
        )
        .ok()?,
        Op::Lt => cmp::lt(mins, &value).ok()?,
        Op::LtEq => cmp::lt_eq(mins, &value).ok()?,
        Op::Gt => cmp::gt(maxes, &value).ok()?,
        Op::GtEq => cmp::gt_eq(maxes, &value).ok()?,
    };
    Some(may.iter().map(|m| m.unwrap_or(true)).collect())
}

/// The root column named `name` as DuckDB resolves it (case-insensitively), if
/// exactly one has that name and it is not nested.
fn column(schema: &Schema, name: &str) -> Option<usize> {
    let mut found = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name().eq_ignore_ascii_case(name));
    let (at, field) = found.next()?;
    (found.next().is_none() && !field.data_type().is_nested()).then_some(at)
}

/// A projection of `roots` (flat columns: a root is its leaf) and where each lands
/// in a decoded batch (columns come in file order, once each).
fn projected(
    parquet: &parquet::schema::types::SchemaDescriptor,
    roots: &[usize],
) -> (ProjectionMask, Vec<usize>) {
    let mut unique = roots.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let positions = roots
        .iter()
        .map(|r| unique.binary_search(r).expect("from roots"))
        .collect();
    (ProjectionMask::roots(parquet, unique), positions)
}

/// Whether a file's column of type `file` becomes DuckDB's `out` unchanged in value.
fn converts(file: &DataType, out: &DataType) -> bool {
    use DataType::*;
    match (file, out) {
        (Utf8View | LargeUtf8, Utf8) | (BinaryView | LargeBinary, Binary) => true,
        (Timestamp(TimeUnit::Microsecond, a), Timestamp(TimeUnit::Microsecond, b)) => {
            a.as_deref().map(utc) == b.as_deref().map(utc) && a.as_deref().is_none_or(utc)
        }
        (a, b) if a == b => matches!(
            a,
            Boolean
                | Int8
                | Int16
                | Int32
                | Int64
                | UInt8
                | UInt16
                | UInt32
                | UInt64
                | Float32
                | Float64
                | Utf8
                | Binary
                | Date32
                | Decimal128(..)
        ),
        _ => false,
    }
}

fn utc(zone: &str) -> bool {
    matches!(zone, "UTC" | "utc" | "Etc/UTC" | "+00:00" | "Z")
}

/// `column` as DuckDB's type `to` (see [`converts`]).
fn conformed(column: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    if column.data_type() == to {
        return Ok(column.clone());
    }
    cast(column, to)
}

/// The condition's value as a one-element array of the file column's type, when
/// it is exactly that type's value.
fn literal(value: &Datum, ty: &DataType) -> Option<ArrayRef> {
    use PrimitiveLiteral as L;
    Some(match (value.data_type(), value.literal(), ty) {
        (PrimitiveType::Int, L::Int(v), DataType::Int32) => Arc::new(Int32Array::from(vec![*v])),
        (PrimitiveType::Long, L::Long(v), DataType::Int64) => Arc::new(Int64Array::from(vec![*v])),
        (PrimitiveType::Date, L::Int(v), DataType::Date32) => Arc::new(Date32Array::from(vec![*v])),
        (
            PrimitiveType::Timestamp,
            L::Long(v),
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ) => Arc::new(TimestampMicrosecondArray::from(vec![*v])),
        (
            PrimitiveType::Timestamptz,
            L::Long(v),
            DataType::Timestamp(TimeUnit::Microsecond, Some(zone)),
        ) if utc(zone) => {
            Arc::new(TimestampMicrosecondArray::from(vec![*v]).with_timezone(zone.clone()))
        }
        (
            PrimitiveType::String,
            L::String(s),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
        ) => cast(&StringArray::from(vec![s.as_str()]), ty).ok()?,
        _ => return None,
    })
}
