//! A validated read command becomes a read plan: one DuckDB query, and the ticket
//! that runs exactly that read again (the snapshot pinned) in DoGet.

use crate::command::{ReadCommand, TableRead, quote_ident};
use crate::engines::duckdb::read::client_query;
use crate::engines::{Lakehouse, Located};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// The query DuckDB runs.
    pub sql: String,
    /// The command to hand back as the Flight ticket.
    pub ticket: ReadCommand,
}

impl Lakehouse {
    pub async fn plan_read(&self, command: ReadCommand) -> Result<ReadPlan> {
        match command {
            ReadCommand::Sql(read) => {
                // SQL sees Iceberg tables through views: make sure they are current.
                self.sync_views().await?;
                // The engine refuses anything but a SELECT before running it.
                Ok(ReadPlan {
                    sql: client_query(&read.sql),
                    ticket: ReadCommand::Sql(read),
                })
            }
            ReadCommand::Table(read) => self.plan_table_read(read).await,
        }
    }

    async fn plan_table_read(&self, mut read: TableRead) -> Result<ReadPlan> {
        let source = match self.locate(&read.table).await? {
            Located::Iceberg(table) => {
                let snapshot = table.snapshot(read.snapshot_id, read.as_of)?;
                // Pin the snapshot so DoGet reads what GetFlightInfo described.
                read.snapshot_id = snapshot.as_ref().map(|s| s.snapshot_id());
                read.as_of = None;
                self.iceberg_source(&table, snapshot.as_ref()).await?
            }
            Located::Duckdb => {
                if read.snapshot_id.is_some() || read.as_of.is_some() {
                    return Err(Error::invalid(format!(
                        "{} is a DuckDB table: snapshot_id and as_of apply to Iceberg tables only",
                        read.table
                    )));
                }
                read.table.sql()
            }
        };
        let sql = table_query(&read, &source)?;
        Ok(ReadPlan {
            sql,
            ticket: ReadCommand::Table(read),
        })
    }
}

/// SELECT columns FROM source WHERE filter LIMIT n: DuckDB pushes all three into the scan.
fn table_query(read: &TableRead, source: &str) -> Result<String> {
    let columns = match &read.columns {
        None => "*".to_string(),
        Some(columns) if columns.is_empty() => return Err(Error::invalid("\"columns\" is empty")),
        Some(columns) => columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut sql = format!("SELECT {columns} FROM {source}");
    if let Some(filter) = &read.filter {
        check_expression(filter)?;
        sql.push_str(&format!(" WHERE (\n{filter}\n)"));
    }
    if let Some(limit) = read.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    Ok(sql)
}

/// A filter is one boolean expression: it may not close the parenthesis it is
/// placed in or end the statement. (DuckDB parses and type-checks the rest.)
fn check_expression(filter: &str) -> Result<()> {
    if filter.trim().is_empty() {
        return Err(Error::invalid("\"filter\" is empty"));
    }
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in filter.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth < 0 {
                    return Err(Error::invalid(format!(
                        "filter {filter:?} has an unbalanced ')'"
                    )));
                }
            }
            (None, ';') => {
                return Err(Error::invalid(format!(
                    "filter {filter:?} must be one expression (found ';')"
                )));
            }
            _ => {}
        }
    }
    if depth != 0 || quote.is_some() {
        return Err(Error::invalid(format!(
            "filter {filter:?} has an unclosed parenthesis or quote"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::TableName;

    fn read(filter: Option<&str>) -> TableRead {
        TableRead {
            table: TableName::parse("s.t").unwrap(),
            columns: Some(vec!["a".into(), "b c".into()]),
            filter: filter.map(String::from),
            snapshot_id: None,
            as_of: None,
            limit: Some(10),
            transforms: Vec::new(),
        }
    }

    #[test]
    fn columns_filter_and_limit_go_into_the_query() {
        let sql = table_query(&read(Some("a > 1 AND b = ')'")), "src").unwrap();
        assert_eq!(
            sql,
            "SELECT \"a\", \"b c\" FROM src WHERE (\na > 1 AND b = ')'\n) LIMIT 10"
        );
    }

    #[test]
    fn filters_cannot_escape_their_parentheses() {
        for bad in [
            "1=1) UNION ALL (SELECT 1",
            "a > 1; DROP TABLE t",
            "(a",
            "'x",
            "",
        ] {
            assert!(
                table_query(&read(Some(bad)), "src").is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
