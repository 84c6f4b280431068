//! `filter`: keep the rows a SQL-like predicate holds for.
//!
//! Args: `{"predicate": "v >= 500 AND grp IN ('g1', 'g3')"}`. Comparisons
//! (= != <> < <= > >=), [NOT] IN (...), IS [NOT] NULL and AND/OR/NOT over
//! columns and literals (numbers, 'strings', TRUE/FALSE, NULL), with SQL's
//! three-valued logic: a row is kept only when the predicate is true, not
//! false or null. The predicate is parsed once, at bind, and checked against
//! the schema; each batch is then one pass of Arrow kernels over just the
//! columns the predicate names, and the host applies the resulting mask.

mod eval;
mod parse;

use floe_sdk::prelude::*;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Args {
    predicate: String,
}

struct Filter {
    predicate: parse::Expr,
    /// The columns the predicate reads, as the schema names them.
    columns: Vec<String>,
}

impl RowFilter for Filter {
    type Args = Args;
    const NAME: &str = "filter";
    const DESCRIPTION: &str =
        "Keep rows where a SQL-like predicate is true (comparisons, IN, IS NULL, AND/OR/NOT).";
    const ARGS_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "predicate": {"type": "string", "description": "e.g. v >= 500 AND grp IN ('g1', 'g3')"}
  },
  "required": ["predicate"],
  "additionalProperties": false
}"#;

    fn bind(input: SchemaRef, args: Args) -> Result<Self> {
        let predicate = parse::parse(&args.predicate).map_err(Error::InvalidArgs)?;
        // Evaluate once on no rows: unknown columns and impossible comparisons fail here.
        eval::mask(&predicate, &RecordBatch::new_empty(input.clone()))
            .map_err(Error::UnsupportedSchema)?;
        let columns = predicate
            .columns()
            .iter()
            .filter_map(|name| eval::resolve(&input, name))
            .collect();
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
