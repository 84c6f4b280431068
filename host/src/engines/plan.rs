//! A validated read command becomes a read plan: one query, and the ticket that runs
//! exactly that read again (the snapshot pinned) in DoGet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use floe_wire::expr::parse_filter;

use super::duckdb::sql::{Query, Source};
use super::iceberg::{DirectRead, PinGuard};
use super::{FileSpan, Lakehouse, Located};
use crate::command::{ReadCommand, TableName, TableRead};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// What DuckDB runs.
    pub query: Query,
    /// The command to hand back as the Flight ticket.
    pub ticket: ReadCommand,
    /// For a read of data that never changes (an Iceberg snapshot): the query
    /// without its filter and limit, which has the same result schema and whose
    /// schema can therefore be kept. A filter's column and type errors are then
    /// reported when the read runs.
    pub shape: Option<Query>,
    /// The Iceberg snapshots the query reads: pinned against expiry while the read
    /// is planned and while it streams.
    pub snapshots: Vec<(TableName, i64)>,
    /// The data files the query reads, when it could be split into parts by them
    /// (a whole table read over a list of Parquet files, without a limit).
    pub files: Option<FileSpan>,
    /// The same read as the host can run it without DuckDB, when it may.
    pub direct: Option<DirectRead>,
}

impl ReadPlan {
    /// Only `columns` of the plan's result, whose schema is then `schema`.
    pub fn project(self, columns: &[String], schema: SchemaRef) -> Self {
        Self {
            query: self.query.project(columns),
            direct: self.direct.map(|d| d.project(columns, schema)),
            ..self
        }
    }
}

/// A table read's key among the kept plans: its JSON, as its ticket carries it.
fn json(read: &TableRead) -> String {
    serde_json::to_string(read).expect("commands serialize")
}

impl Lakehouse {
    /// A plan's result schema, without running it; kept once known for reads of
    /// Iceberg snapshots (see [`ReadPlan::shape`]).
    pub async fn plan_schema(&self, plan: &ReadPlan) -> Result<SchemaRef> {
        let Some(shape) = &plan.shape else {
            return self.schema_of(&plan.query).await;
        };
        if let Some(schema) = self.schemas.get(shape.text()) {
            return Ok(schema);
        }
        let schema = self.schema_of(shape).await?;
        self.schemas.put(shape.text().to_string(), schema.clone());
        Ok(schema)
    }

    pub async fn plan_read(&self, command: ReadCommand) -> Result<ReadPlan> {
        match command {
            ReadCommand::Sql(read) => {
                // SQL sees Iceberg tables through views: make sure they are current.
                let snapshots = self.sync_views().await?;
                self.iceberg.pins.planned(&snapshots, PLAN_TTL);
                // The engine refuses anything but a SELECT before running it.
                Ok(ReadPlan {
                    query: Query::client(&read.sql, &read.params),
                    ticket: ReadCommand::Sql(read),
                    shape: None,
                    snapshots,
                    files: None,
                    direct: None,
                })
            }
            ReadCommand::Table(read) => {
                // A ticket from GetFlightInfo pins its snapshot: its plan was just made.
                let pinned = read.snapshot_id.is_some().then(|| json(&read));
                let kept = pinned.as_deref().and_then(|key| self.plans.get(key));
                let plan = match kept {
                    Some(plan) => plan,
                    None => {
                        let plan = self.plan_table_read(read).await?;
                        if let (Some(_), ReadCommand::Table(pinned)) = (&plan.shape, &plan.ticket) {
                            self.plans.put(json(pinned), plan.clone());
                        }
                        plan
                    }
                };
                self.iceberg.pins.planned(&plan.snapshots, PLAN_TTL);
                Ok(plan)
            }
        }
    }

    /// Keep the plan's snapshots from expiry while its read streams.
    pub fn pin_streaming(&self, plan: &ReadPlan) -> PinGuard {
        self.iceberg.pins.streaming(plan.snapshots.clone())
    }

    async fn plan_table_read(&self, mut read: TableRead) -> Result<ReadPlan> {
        if read.columns.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::invalid("\"columns\" is empty"));
        }
        if let Some(part) = &read.part {
            part.check().map_err(Error::invalid)?;
            if read.limit.is_some() {
                return Err(Error::invalid(
                    "\"part\" and \"limit\" cannot be combined: a limited read is one endpoint",
                ));
            }
        }
        // The query gets the parser's rendering of one expression, never the client's
        // text: nothing can follow it or close the parenthesis it sits in.
        let filter = read
            .filter
            .as_deref()
            .map(parse_filter)
            .transpose()
            .map_err(|err| Error::invalid(err.to_string()))?;
        let mut snapshots = Vec::new();
        let (source, whole, files, direct) = match self.locate(&read.table).await? {
            Located::Iceberg(table) => {
                let snapshot = table.snapshot(read.snapshot_id, read.as_of)?;
                snapshots.extend(
                    snapshot
                        .as_ref()
                        .map(|s| (read.table.clone(), s.snapshot_id())),
                );
                // Pin the snapshot so DoGet reads what GetFlightInfo described.
                read.snapshot_id = snapshot.as_ref().map(|s| s.snapshot_id());
                read.as_of = None;
                let source = self
                    .iceberg_source(
                        &read.table,
                        &table,
                        snapshot.as_ref(),
                        filter.as_ref(),
                        read.part,
                    )
                    .await?;
                let files = source.files.filter(|_| read.limit.is_none());
                let direct = source.direct.map(|(files, conditions)| DirectRead {
                    files,
                    conditions,
                    columns: read.columns.clone(),
                    limit: read.limit,
                    schema: None,
                });
                (source.read, Some(source.whole), files, direct)
            }
            Located::Duckdb => {
                if read.snapshot_id.is_some() || read.as_of.is_some() || read.part.is_some() {
                    return Err(Error::invalid(format!(
                        "{} is a DuckDB table: snapshot_id, as_of and part apply to Iceberg \
                         tables only",
                        read.table
                    )));
                }
                (Source::table(&read.table), None, None, None)
            }
        };
        let query = Query::table_read(
            &source,
            read.columns.as_deref(),
            filter.as_ref(),
            read.limit,
        );
        let shape =
            whole.map(|whole| Query::table_read(&whole, read.columns.as_deref(), None, None));
        Ok(ReadPlan {
            query,
            ticket: ReadCommand::Table(read),
            shape,
            snapshots,
            files,
            direct,
        })
    }
}

/// Facts about reads of data that never changes (an Iceberg snapshot): result
/// schemas by query text, plans by pinned ticket. At most `capacity` entries: past
/// it, it starts over. Plans are kept a minute only, long enough for the DoGet
/// after a GetFlightInfo, short enough that a dropped table is soon noticed.
pub struct Recent<V> {
    capacity: usize,
    ttl: Option<Duration>,
    entries: Mutex<HashMap<String, (V, Instant)>>,
}

/// How long a plan is kept for the DoGet its GetFlightInfo announced.
pub const PLAN_TTL: Duration = Duration::from_secs(60);

impl<V: Clone> Recent<V> {
    pub fn new(capacity: usize, ttl: Option<Duration>) -> Self {
        Self {
            capacity,
            ttl,
            entries: Mutex::default(),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().expect("recent entries");
        let (value, added) = entries.get(key)?;
        match self.ttl {
            Some(ttl) if added.elapsed() > ttl => None,
            _ => Some(value.clone()),
        }
    }

    pub fn put(&self, key: String, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("recent entries");
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }
}
