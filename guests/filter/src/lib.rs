//! `filter`: keep the rows a SQL predicate holds for.
//!
//! Args: `{"predicate": "v >= 500 AND grp IN ('g1', 'g3')"}`. The predicate is parsed
//! by the same parser as the host's `filter` field (`floe_wire::expr`: one SQL
//! expression, DuckDB's dialect) and evaluated with Arrow kernels: comparisons,
//! `[NOT] IN`, `[NOT] BETWEEN`, `[NOT] LIKE`/`ILIKE`, `IS [NOT] NULL`, `IS [NOT]
//! TRUE/FALSE`, AND/OR/NOT, arithmetic (`+ - * / %`), `CAST`/`::`, and typed literals
//! such as `DATE '2024-01-01'`, with SQL's three-valued logic: a row is kept only
//! when the predicate is true. It is parsed and checked against the schema once, at
//! bind; each batch then holds just the columns it names, and the host applies the
//! resulting mask.

mod eval;

use floe_sdk::prelude::*;
use floe_wire::expr::{ast::Expr, parse_filter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    predicate: String,
}

struct Filter {
    predicate: Expr,
    /// The columns the predicate reads, as the schema names them.
    columns: Vec<String>,
}

impl RowFilter for Filter {
    type Args = Args;
    const NAME: &str = "filter";
    const STATELESS: bool = true;
    const VERSION: &str = "0.2.0";
    const DESCRIPTION: &str = "Keep rows where a SQL predicate is true (comparisons, IN, BETWEEN, \
                               LIKE, IS NULL, arithmetic, CAST, typed literals, AND/OR/NOT).";
    const ARGS_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "predicate": {"type": "string", "description": "e.g. v >= 500 AND grp IN ('g1', 'g3')"}
  },
  "required": ["predicate"],
  "additionalProperties": false
}"#;

    fn bind(input: SchemaRef, args: Args) -> Result<Self> {
        let predicate =
            parse_filter(&args.predicate).map_err(|err| Error::InvalidArgs(err.to_string()))?;
        let columns = eval::columns(&predicate, &input).map_err(Error::UnsupportedSchema)?;
        // Evaluate once on no rows: unsupported syntax and impossible comparisons fail here.
        eval::mask(&predicate, &RecordBatch::new_empty(input)).map_err(Error::UnsupportedSchema)?;
        Ok(Filter { predicate, columns })
    }

    fn columns(&self) -> Option<Vec<String>> {
        Some(self.columns.clone())
    }

    fn keep(&mut self, batch: &RecordBatch) -> Result<BooleanArray> {
        eval::mask(&self.predicate, batch).map_err(Error::Failed)
    }
}

floe_sdk::export_filter!(Filter);
