//! `select`: keep, drop and rename columns.
//!
//! Args: `{"columns": ["id", "price_*"], "drop": ["*_internal"], "rename": {"old": "new"}}`,
//! every key optional. `columns` keeps the listed columns in the order given (a
//! glob keeps its matches in table order); `drop` then removes columns; `rename`
//! renames what is left. A plain name that matches nothing is an error.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    columns: Option<Vec<String>>,
    #[serde(default)]
    drop: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
}

struct Select {
    /// Each output column's position among the input columns `process` receives.
    positions: Vec<usize>,
    /// The input columns this selection reads, in table order.
    needed: Vec<String>,
    schema: SchemaRef,
}

impl Plugin for Select {
    type Args = Args;
    const NAME: &str = "select";
    const STATELESS: bool = true;
    const DESCRIPTION: &str = "Keep, drop and rename columns (names or globs with * and ?).";
    const ARGS_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "columns": {"type": "array", "items": {"type": "string"}, "description": "columns to keep, in order; globs allowed"},
    "drop": {"type": "array", "items": {"type": "string"}, "description": "columns to remove; globs allowed"},
    "rename": {"type": "object", "additionalProperties": {"type": "string"}, "description": "old name -> new name"}
  },
  "additionalProperties": false
}"#;

    fn bind(input: SchemaRef, args: Args) -> Result<Self> {
        let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        let mut indices: Vec<usize> = match &args.columns {
            None => (0..names.len()).collect(),
            Some(patterns) => {
                let mut kept = Vec::new();
                for pattern in patterns {
                    for i in matches(pattern, &names)? {
                        if !kept.contains(&i) {
                            kept.push(i);
                        }
                    }
                }
                kept
            }
        };
        for pattern in &args.drop {
            let dropped = matches(pattern, &names)?;
            indices.retain(|i| !dropped.contains(i));
        }
        if indices.is_empty() {
            return Err(Error::InvalidArgs(
                "the selection keeps no columns: name at least one".into(),
            ));
        }
        for old in args.rename.keys() {
            if !indices.iter().any(|&i| names[i] == old) {
                return Err(Error::UnsupportedSchema(format!(
                    "cannot rename {old:?}: not among the selected columns"
                )));
            }
        }
        let fields: Vec<Field> = indices
            .iter()
            .map(|&i| {
                let field = input.field(i);
                match args.rename.get(field.name()) {
                    Some(new) => field.clone().with_name(new),
                    None => field.clone(),
                }
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        // `process` receives the kept columns in table order: where is each output column?
        let mut needed = indices.clone();
        needed.sort_unstable();
        let positions = indices
            .iter()
            .map(|i| needed.binary_search(i).expect("kept columns are needed"))
            .collect();
        Ok(Select {
            positions,
            needed: needed.iter().map(|&i| names[i].to_string()).collect(),
            schema,
        })
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Only the kept columns need reading.
    fn input_columns(&self) -> Option<Vec<String>> {
        Some(self.needed.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let columns = self
            .positions
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

/// The indices of the columns a name or glob selects, in table order.
fn matches(pattern: &str, names: &[&str]) -> Result<Vec<usize>> {
    let globbed = is_glob(pattern);
    let found: Vec<usize> = (0..names.len())
        .filter(|&i| {
            if globbed {
                glob(pattern, names[i])
            } else {
                pattern == names[i]
            }
        })
        .collect();
    if found.is_empty() && !globbed {
        return Err(Error::UnsupportedSchema(format!(
            "no column {pattern:?} (columns: {})",
            names.join(", ")
        )));
    }
    Ok(found)
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// `*` matches any run of characters, `?` one character.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

floe_sdk::export_plugin!(Select);

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("l_*", "l_orderkey"));
        assert!(glob("*key", "l_orderkey"));
        assert!(glob("l_?ax", "l_tax"));
        assert!(glob("*", ""));
        assert!(!glob("l_*", "o_orderkey"));
        assert!(!glob("l_?ax", "l_taxes"));
    }
}
