//! `filter`: keep the rows a SQL-like predicate holds for.
//!
//! Args: `{"predicate": "v >= 500 AND grp IN ('g1', 'g3')"}`. Comparisons
//! (= != <> < <= > >=), [NOT] IN (...), IS [NOT] NULL and AND/OR/NOT over
//! columns and literals (numbers, 'strings', TRUE/FALSE, NULL), with SQL's
//! three-valued logic: a row is kept only when the predicate is true, not
//! false or null. The predicate is parsed once, at bind, and checked against
//! the schema; each batch is then one pass of Arrow kernels.

mod eval;
mod parse;

use floe_sdk::arrow_array::RecordBatch;
use floe_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    predicate: String,
}

struct Filter {
    predicate: parse::Expr,
    schema: SchemaRef,
}

impl Plugin for Filter {
    type Args = Args;
    const NAME: &str = "filter";
    const KIND: Kind = Kind::Filter;
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
        Ok(Filter {
            predicate,
            schema: input,
        })
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let mask = eval::mask(&self.predicate, &batch).map_err(Error::Failed)?;
        let kept = arrow_select::filter::filter_record_batch(&batch, &mask)?;
        Ok((kept.num_rows() > 0).then_some(kept))
    }
}

floe_sdk::export_plugin!(Filter);
