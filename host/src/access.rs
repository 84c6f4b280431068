//! What the request's principal may do, checked by the use cases before they touch
//! a table. A table the principal may not read answers NotFound, exactly as a table
//! that does not exist, so grants do not leak names; writes and administration
//! answer PermissionDenied naming the role they need.

use crate::auth::{Principal, Role};
use crate::command::TableName;
use crate::engines::References;
use crate::error::{Error, Result, quote};

/// DuckDB's default schema: where an unqualified name in SQL is looked up.
const SQL_DEFAULT_SCHEMA: &str = "main";
/// Table functions that make rows without reading anything.
const PURE_TABLE_FUNCTIONS: &[&str] = &["range", "generate_series", "unnest"];

/// NotFound unless the principal may read `table`.
pub fn check_read(principal: &Principal, table: &TableName) -> Result<()> {
    if principal.may(Role::Read, &table.namespace) {
        Ok(())
    } else {
        Err(table.not_found())
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

/// The tables a principal's SQL reads, once everything else about it is allowed:
/// only administrators may use table functions that read files or the engine,
/// catalogs or `SHOW`; every table named needs the read role on its namespace. The
/// caller checks that each returned table exists: only the warehouse's tables may be
/// read, by their exact names (so the table DuckDB reads is the one checked), since
/// a quoted path would otherwise be read as a file (DuckDB's replacement scans).
pub fn check_sql(principal: &Principal, references: References) -> Result<Vec<(String, String)>> {
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
    let mut tables = Vec::new();
    for [catalog, schema, table] in references.tables {
        if !catalog.is_empty() {
            return Err(Error::PermissionDenied(format!(
                "{}: name tables as namespace.table, without a catalog",
                quote(&format!("{catalog}.{schema}.{table}"))
            )));
        }
        let schema = if schema.is_empty() {
            SQL_DEFAULT_SCHEMA.to_string()
        } else {
            schema
        };
        if !principal.may(Role::Read, &schema) {
            return Err(Error::PermissionDenied(format!(
                "{} may not read {}",
                principal.name,
                quote(&format!("{schema}.{table}"))
            )));
        }
        tables.push((schema, table));
    }
    Ok(tables)
}
