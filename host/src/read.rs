//! The read use case: plan, bind the transform chain once, run.
//!
//! GetFlightInfo (or any front-end's "describe") calls [`Core::plan_read`]: the
//! query's schema through the chain, bound but given no data, and the ticket with
//! the snapshot pinned. DoGet calls [`Core::read`]: the same plan, the chain bound
//! once, and when the chain reads only some columns, a scan of only those.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use futures::stream::BoxStream;

use crate::access;
use crate::auth::Principal;
use crate::cluster::rotated;
use crate::command::{Part, ReadCommand, TableName, TableRead};
use crate::core::Core;
use crate::engines::ReadPlan;
use crate::error::{Error, Result, quote};
use crate::limits::{Scope, holding};
use crate::plugins::Chain;

/// A read, planned: what it will return, the ticket that runs it whole, and the
/// endpoints to fetch it by (one, or one per part of a split read).
pub struct PlannedRead {
    pub schema: SchemaRef,
    pub ticket: ReadCommand,
    pub endpoints: Vec<Endpoint>,
}

/// One part of a read: its ticket, and the hosts that can serve it (none: the host
/// that planned it).
pub struct Endpoint {
    pub ticket: ReadCommand,
    pub locations: Vec<String>,
}

/// A read prepared to run later, perhaps many times (Flight SQL's prepared
/// statements): its result schema when it is known before its parameters' values
/// are, and its parameters.
pub struct PreparedRead {
    pub schema: Option<SchemaRef>,
    pub parameters: SchemaRef,
}

/// A read, running.
pub struct Batches {
    pub schema: SchemaRef,
    pub stream: BoxStream<'static, Result<RecordBatch>>,
}

impl Core {
    pub async fn plan_read(&self, command: ReadCommand, scope: &Scope) -> Result<PlannedRead> {
        scope
            .run("planning the read", async {
                self.check_read(scope.principal(), &command).await?;
                let plan = self.lakehouse.plan_read(command).await?;
                let ticket = plan.ticket.clone();
                let endpoints = self.endpoints(&plan);
                let (_, chain) = self.bind(plan).await?;
                Ok(PlannedRead {
                    schema: chain.output_schema(),
                    ticket,
                    endpoints,
                })
            })
            .await
    }

    /// A table read over enough files is split into parts, one per live host at
    /// most; any host can serve any part (its ticket names its group of files).
    fn endpoints(&self, plan: &ReadPlan) -> Vec<Endpoint> {
        let (parts, hosts) = self.splitter.split(plan.files);
        match &plan.ticket {
            ReadCommand::Table(read) if parts > 1 => (0..parts)
                .map(|index| Endpoint {
                    ticket: ReadCommand::Table(TableRead {
                        part: Some(Part { index, of: parts }),
                        ..read.clone()
                    }),
                    locations: rotated(&hosts, index as usize),
                })
                .collect(),
            ticket => vec![Endpoint {
                ticket: ticket.clone(),
                locations: Vec::new(),
            }],
        }
    }

    /// Check and describe `command` for later runs: what [`Self::plan_read`] does,
    /// except that a SQL query may have parameters (`?`, `$1`) that get values
    /// later; its result schema is then known only when they have them.
    pub async fn prepare_read(&self, command: ReadCommand, scope: &Scope) -> Result<PreparedRead> {
        if let ReadCommand::Sql(read) = &command {
            let described = scope
                .run("preparing the query", async {
                    self.check_read(scope.principal(), &command).await?;
                    self.lakehouse.describe_sql(&read.sql).await
                })
                .await?;
            // Without transforms, preparing told all there is to tell.
            if !described.parameters.fields().is_empty() || read.transforms.is_empty() {
                return Ok(PreparedRead {
                    schema: described.schema,
                    parameters: described.parameters,
                });
            }
        }
        let planned = self.plan_read(command, scope).await?;
        Ok(PreparedRead {
            schema: Some(planned.schema),
            parameters: Arc::new(Schema::empty()),
        })
    }

    /// NotFound unless `table` exists and the principal may read it.
    pub async fn require_table(&self, table: &TableName, scope: &Scope) -> Result<()> {
        access::check_read(scope.principal(), table)?;
        if self.lakehouse.table_exists(table).await? {
            Ok(())
        } else {
            Err(table.not_found())
        }
    }

    /// The read, running within `scope`: past its deadline the query and its
    /// plugins are stopped and the stream ends in an error.
    pub async fn read(&self, command: ReadCommand, scope: Scope) -> Result<Batches> {
        let batches = scope
            .run("the read", async {
                self.check_read(scope.principal(), &command).await?;
                self.start_read(command).await
            })
            .await?;
        Ok(Batches {
            schema: batches.schema,
            stream: scope.stream("the read", batches.stream),
        })
    }

    async fn start_read(&self, command: ReadCommand) -> Result<Batches> {
        let plan = self.lakehouse.plan_read(command).await?;
        let pin = self.lakehouse.pin_streaming(&plan);
        if plan.ticket.transforms().is_empty() {
            tracing::debug!(query = %plan.query, "read");
            let slot = self.limits.query_slot().await?;
            let (schema, stream) = self.lakehouse.run_read(&plan).await?;
            return Ok(Batches {
                schema,
                stream: holding(stream, (slot, pin)),
            });
        }
        let (plan, chain) = self.bind(plan).await?;
        tracing::debug!(query = %plan.query, "read");
        let slot = self.limits.query_slot().await?;
        let (_, stream) = self.lakehouse.run_read(&plan).await?;
        Ok(Batches {
            schema: chain.output_schema(),
            stream: holding(chain.apply(stream), (slot, pin)),
        })
    }

    /// A read's tables, checked against the principal (see [`access`]): a table
    /// read needs the read role on its namespace, a SQL read that role on every
    /// table the statement names, as DuckDB parses it, and each must be one of the
    /// warehouse's tables.
    async fn check_read(&self, principal: &Principal, command: &ReadCommand) -> Result<()> {
        let sql = match command {
            ReadCommand::Table(read) => return access::check_read(principal, &read.table),
            ReadCommand::Sql(_) if principal.is_admin() => return Ok(()),
            ReadCommand::Sql(read) => &read.sql,
        };
        let references = self.lakehouse.sql_references(sql).await?;
        for (schema, table) in access::check_sql(principal, references)? {
            let exists = match TableName::new(&schema, &table) {
                Ok(name) => self.lakehouse.table_exists(&name).await?,
                Err(_) => false,
            };
            if !exists {
                return Err(Error::not_found(format!(
                    "table {} not found",
                    quote(&format!("{schema}.{table}"))
                )));
            }
        }
        Ok(())
    }

    /// The plan and its chain, each plugin bound once to the plan's result
    /// schema. When the chain reads only some columns, the plan reads only those
    /// and the chain is told (not bound again).
    async fn bind(&self, plan: ReadPlan) -> Result<(ReadPlan, Chain)> {
        let schema = self.lakehouse.plan_schema(&plan).await?;
        let mut chain = self
            .bind_chain(plan.ticket.transforms(), schema.clone())
            .await?;
        let Some(columns) = chain.input_columns() else {
            return Ok((plan, chain));
        };
        let indices = columns
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| Error::internal(format!("narrowing the scan: {err}")))?;
        let narrow = schema
            .project(&indices)
            .map_err(|err| Error::internal(format!("narrowing the scan: {err}")))?;
        let narrow = Arc::new(narrow);
        chain.narrow(narrow.clone())?;
        Ok((plan.project(&columns, narrow), chain))
    }
}
