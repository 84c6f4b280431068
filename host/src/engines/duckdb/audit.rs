//! Which functions and tables a query names, read from DuckDB's own parse tree
//! (`json_serialize_sql`): the ones exposing the engine's internals are refused
//! before the query runs, and the tables and table functions it reads are listed
//! so the core can check them against the principal's grants.

use duckdb::Connection;
use serde_json::{Map, Value};

use floe_wire::expr::is_internal_function as is_internal;

use super::error::NOT_A_QUERY;
use crate::error::{Error, Result, quote};

/// What a query reads.
#[derive(Debug, Default, PartialEq)]
pub struct References {
    /// Tables as written: (catalog, schema, table), empty parts left out. CTE names
    /// are not tables and are not listed.
    pub tables: Vec<[String; 3]>,
    /// Table functions (`read_parquet`, `range`, ...).
    pub functions: Vec<String>,
    /// Table references of other kinds (`SHOW TABLES`, ...).
    pub others: Vec<String>,
}

/// Refuse `sql` (already known to prepare as one SELECT) if it names an internal function.
pub fn check_names(conn: &Connection, sql: &str) -> Result<()> {
    let tree = parse(conn, sql)?;
    match first_internal(&tree) {
        Some(name) => Err(Error::PermissionDenied(format!(
            "{} is not allowed: queries may read the warehouse's tables, not the engine's internals",
            quote(name)
        ))),
        None => Ok(()),
    }
}

/// The tables and table functions `sql` reads; an internal name is refused.
pub fn references(conn: &Connection, sql: &str) -> Result<References> {
    check_names(conn, sql)?;
    let mut found = References::default();
    walk(&parse(conn, sql)?, &mut Vec::new(), &mut found);
    Ok(found)
}

fn parse(conn: &Connection, sql: &str) -> Result<Value> {
    let tree: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |row| {
            row.get(0)
        })
        .map_err(|err| Error::internal(format!("parsing the query's names: {err}")))?;
    let tree: Value = serde_json::from_str(&tree)
        .map_err(|err| Error::internal(format!("reading DuckDB's parse tree: {err}")))?;
    if tree.get("error") != Some(&Value::Bool(false)) {
        let message = tree
            .get("error_message")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(match tree.get("error_type").and_then(Value::as_str) {
            Some("parser") => Error::invalid(format!(
                "{NOT_A_QUERY}; this does not parse as one: {message}"
            )),
            _ if message.contains("Only SELECT statements") => {
                Error::invalid(format!("{NOT_A_QUERY}: the statement is not a SELECT"))
            }
            _ => Error::invalid(format!(
                "the query could not be checked: {}",
                quote(message)
            )),
        });
    }
    Ok(tree)
}

/// The first internal name in a parse tree: a function's `function_name`, or a
/// table reference's `table_name`.
fn first_internal(node: &Value) -> Option<&str> {
    match node {
        Value::Object(fields) => {
            fields
                .iter()
                .find_map(|(key, value)| match (key.as_str(), value) {
                    ("function_name" | "table_name", Value::String(name)) if is_internal(name) => {
                        Some(name.as_str())
                    }
                    _ => first_internal(value),
                })
        }
        Value::Array(items) => items.iter().find_map(first_internal),
        _ => None,
    }
}

/// Collect what `node` reads; `ctes` are the CTE names in scope (lowercase, as
/// DuckDB compares them). A CTE's body sees the CTEs before it, not itself, unless
/// it is recursive: DuckDB resolves a name that is not a CTE in scope to a table.
fn walk(node: &Value, ctes: &mut Vec<String>, found: &mut References) {
    let fields = match node {
        Value::Object(fields) => fields,
        Value::Array(items) => return items.iter().for_each(|item| walk(item, ctes, found)),
        _ => return,
    };
    let scope = ctes.len();
    if let Some(Value::Array(map)) = fields.get("cte_map").and_then(|m| m.get("map")) {
        for entry in map {
            walk(&entry["value"], ctes, found);
            if let Some(name) = entry["key"].as_str() {
                ctes.push(name.to_lowercase());
            }
        }
    }
    if let Some(name) = fields.get("cte_name").and_then(Value::as_str) {
        ctes.push(name.to_lowercase());
    }
    if is_table_ref(fields) {
        record(fields, ctes, found);
    }
    for (key, value) in fields {
        if key != "cte_map" {
            walk(value, ctes, found);
        }
    }
    ctes.truncate(scope);
}

/// Table references carry an `alias` and a `sample`; expressions carry a `class`,
/// query nodes a `sample` but no `alias`.
fn is_table_ref(fields: &Map<String, Value>) -> bool {
    fields.contains_key("sample") && fields.contains_key("alias") && !fields.contains_key("class")
}

fn record(fields: &Map<String, Value>, ctes: &[String], found: &mut References) {
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match fields.get("type").and_then(Value::as_str).unwrap_or("") {
        "BASE_TABLE" => {
            let (catalog, schema, table) = (
                text("catalog_name"),
                text("schema_name"),
                text("table_name"),
            );
            let is_cte =
                catalog.is_empty() && schema.is_empty() && ctes.contains(&table.to_lowercase());
            if !is_cte {
                found.tables.push([catalog, schema, table]);
            }
        }
        "TABLE_FUNCTION" => {
            let function = &fields["function"];
            let name = function["function_name"].as_str().unwrap_or("").to_string();
            found.functions.push(name);
        }
        // Their tables are in their children.
        "JOIN" | "SUBQUERY" | "EMPTY" | "EXPRESSION_LIST" | "PIVOT" => {}
        "SHOW_REF" if text("table_name").is_empty() => {}
        other => found.others.push(match text("table_name") {
            name if name.is_empty() => other.to_string(),
            name => format!("{other} {name}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// None when DuckDB's json extension is not installed here.
    fn check(sql: &str) -> Option<Result<()>> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::engines::duckdb::sql::LOAD_JSON)
            .ok()?;
        Some(check_names(&conn, sql))
    }

    #[test]
    fn internals_are_refused_wherever_they_hide() {
        for sql in [
            "SELECT * FROM duckdb_secrets()",
            "SELECT * FROM DuckDB_Settings()",
            "SELECT 1 WHERE 1 = (SELECT count(*) FROM duckdb_databases())",
            "WITH x AS (SELECT current_setting('threads') AS t) SELECT * FROM x",
            "SELECT * FROM pragma_database_list",
            "SELECT * FROM duckdb_tables",
        ] {
            let Some(outcome) = check(sql) else { return };
            let err = outcome.unwrap_err();
            assert!(matches!(err, Error::PermissionDenied(_)), "{sql}: {err}");
        }
    }

    fn refs(sql: &str) -> Option<References> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::engines::duckdb::sql::LOAD_JSON)
            .ok()?;
        Some(references(&conn, sql).unwrap())
    }

    fn table(schema: &str, name: &str) -> [String; 3] {
        [String::new(), schema.into(), name.into()]
    }

    #[test]
    fn references_list_tables_and_functions_but_not_ctes_in_scope() {
        let Some(found) = refs(
            "WITH c AS (SELECT * FROM raw.a) SELECT * FROM C JOIN marts.b USING (x) \
             WHERE 1 IN (SELECT 1 FROM '/w/x.parquet') UNION SELECT * FROM read_parquet('y')",
        ) else {
            return;
        };
        assert_eq!(
            found.tables,
            vec![
                table("raw", "a"),
                table("marts", "b"),
                table("", "/w/x.parquet")
            ]
        );
        assert_eq!(found.functions, vec!["read_parquet"]);
        // A CTE's name is a table outside its scope, and inside its own body.
        let found = refs("SELECT * FROM (WITH z AS (SELECT 1) SELECT 1), z").unwrap();
        assert_eq!(found.tables, vec![table("", "z")]);
        let found = refs("WITH z AS (SELECT * FROM z) SELECT * FROM z").unwrap();
        assert_eq!(found.tables, vec![table("", "z")]);
        let found = refs("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b").unwrap();
        assert!(found.tables.is_empty());
        let found = refs(
            "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 3) SELECT * FROM r",
        )
        .unwrap();
        assert!(found.tables.is_empty(), "{found:?}");
        let found = refs("DESCRIBE raw.t").unwrap();
        assert_eq!(found.tables, vec![table("raw", "t")]);
        assert!(!refs("SHOW TABLES").unwrap().others.is_empty());
    }

    #[test]
    fn ordinary_queries_pass() {
        for sql in [
            "SELECT 1",
            "SELECT upper('duckdb_secrets') AS duckdb_x",
            "SELECT * FROM range(3) t(duckdb_col)",
        ] {
            let Some(outcome) = check(sql) else { return };
            outcome.unwrap();
        }
    }
}
