//! What the request's principal may do, checked by the use cases before they touch
//! a table. A table the principal may not read answers NotFound, exactly as a table
//! that does not exist, so grants do not leak names; writes and administration
//! answer PermissionDenied naming the role they need.

use crate::auth::{Principal, Role};
use crate::command::{ReadCommand, TableName};
use crate::core::Core;
use crate::engines::References;
use crate::error::{Error, Result, quote};

/// DuckDB's default schema: where an unqualified name in SQL is looked up.
const SQL_DEFAULT_SCHEMA: &str = "main";
/// Table functions that make rows without reading anything.
const PURE_TABLE_FUNCTIONS: &[&str] = &["range", "generate_series", "unnest"];

pub fn not_found(table: &TableName) -> Error {
    Error::not_found(format!("table {table} not found"))
}

/// NotFound unless the principal may read `table`.
pub fn check_read(principal: &Principal, table: &TableName) -> Result<()> {
    if principal.may(Role::Read, &table.namespace) {
        Ok(())
    } else {
        Err(not_found(table))
    }
}

pub fn check_write(principal: &Principal, table: &TableName) -> Result<()> {
    if principal.may(Role::Write, &table.namespace) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{} may not write {table}: that needs the write role on namespace {}",
            principal.name, table.namespace
        )))
    }
}

pub fn check_admin(principal: &Principal, what: &str) -> Result<()> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{} may not {what}: that needs the admin role",
            principal.name
        )))
    }
}

/// Running plugins over a client's own batches: any principal with a grant.
pub fn check_compute(principal: &Principal) -> Result<()> {
    if principal.reads_something() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{} has no grants",
            principal.name
        )))
    }
}

impl Core {
    /// A read's tables, checked against the principal: a table read needs the read
    /// role on its namespace; a SQL read needs it on every table the statement
    /// names (parsed by DuckDB), and only administrators may read files directly.
    pub(crate) async fn check_read(
        &self,
        principal: &Principal,
        command: &ReadCommand,
    ) -> Result<()> {
        match command {
            ReadCommand::Table(read) => check_read(principal, &read.table),
            ReadCommand::Sql(_) if principal.is_admin() => Ok(()),
            ReadCommand::Sql(read) => {
                let references = self.lakehouse.sql_references(&read.sql).await?;
                self.check_sql(principal, references).await
            }
        }
    }

    async fn check_sql(&self, principal: &Principal, references: References) -> Result<()> {
        if let Some(other) = references.others.first() {
            return Err(Error::PermissionDenied(format!(
                "{} is not allowed in {}'s queries: only administrators may inspect the catalog",
                quote(other),
                principal.name
            )));
        }
        if let Some(function) = references
            .functions
            .iter()
            .find(|f| !PURE_TABLE_FUNCTIONS.contains(&f.to_lowercase().as_str()))
        {
            return Err(Error::PermissionDenied(format!(
                "{}() reads files or the engine directly: only administrators may use it; \
                 read tables by name (namespace.table)",
                quote(function)
            )));
        }
        for [catalog, schema, table] in &references.tables {
            if !catalog.is_empty() {
                return Err(Error::PermissionDenied(format!(
                    "{}: name tables as namespace.table, without a catalog",
                    quote(&format!("{catalog}.{schema}.{table}"))
                )));
            }
            let schema = if schema.is_empty() {
                SQL_DEFAULT_SCHEMA
            } else {
                schema
            };
            if !principal.may(Role::Read, schema) {
                return Err(Error::PermissionDenied(format!(
                    "{} may not read {}",
                    principal.name,
                    quote(&format!("{schema}.{table}"))
                )));
            }
            // Only the warehouse's tables, by their exact names (so the table DuckDB
            // reads is the one checked): a quoted path would otherwise be read as a
            // file (DuckDB's replacement scans).
            let name = TableName::new(schema, table).ok();
            let exists = match &name {
                Some(name) => self.lakehouse.table_exists(name).await?,
                None => false,
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
}
