//! `mask`: hide the values of some columns.
//!
//! Args: `{"columns": ["email", "phone"], "salt": "s3cret", "mode": "sha256"}`.
//! `sha256` replaces each value with the hex SHA-256 of salt + value (as text),
//! so equal values stay equal (joins and counts still work) but cannot be read;
//! `redact` replaces each value with "REDACTED". Masked columns become strings;
//! nulls stay null; other columns are untouched.

use std::sync::Arc;

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use floe_sdk::arrow_array::{Array, ArrayRef, StringArray};
use floe_sdk::prelude::*;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    columns: Vec<String>,
    #[serde(default)]
    salt: String,
    #[serde(default)]
    mode: Mode,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Sha256,
    Redact,
}

struct Mask {
    masked: Vec<bool>,
    salt: String,
    mode: Mode,
    schema: SchemaRef,
}

impl Plugin for Mask {
    type Args = Args;
    const NAME: &str = "mask";
    const STATELESS: bool = true;
    const DESCRIPTION: &str =
        "Replace the listed columns' values with a salted SHA-256 hex digest or a redaction.";
    const ARGS_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "columns": {"type": "array", "items": {"type": "string"}},
    "salt": {"type": "string", "default": ""},
    "mode": {"enum": ["sha256", "redact"], "default": "sha256"}
  },
  "required": ["columns"],
  "additionalProperties": false
}"#;

    fn bind(input: SchemaRef, args: Args) -> Result<Self> {
        let mut masked = vec![false; input.fields().len()];
        for name in &args.columns {
            let i = input
                .index_of(name)
                .map_err(|_| Error::UnsupportedSchema(format!("no column {name:?} to mask")))?;
            masked[i] = true;
        }
        let fields: Vec<Field> = input
            .fields()
            .iter()
            .zip(&masked)
            .map(|(field, &m)| match m {
                true => Field::new(field.name(), DataType::Utf8, field.is_nullable()),
                false => field.as_ref().clone(),
            })
            .collect();
        Ok(Mask {
            masked,
            salt: args.salt,
            mode: args.mode,
            schema: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
        })
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let columns = batch
            .columns()
            .iter()
            .zip(&self.masked)
            .map(|(column, &m)| {
                if m {
                    self.mask(column)
                } else {
                    Ok(column.clone())
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

impl Mask {
    fn mask(&self, column: &ArrayRef) -> Result<ArrayRef> {
        let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())?;
        let mut text = String::new();
        let values: StringArray = (0..column.len())
            .map(|i| {
                if column.is_null(i) {
                    return None;
                }
                Some(match self.mode {
                    Mode::Redact => "REDACTED".to_string(),
                    Mode::Sha256 => {
                        text.clear();
                        use std::fmt::Write;
                        let _ = write!(text, "{}", formatter.value(i));
                        let digest = Sha256::new()
                            .chain_update(self.salt.as_bytes())
                            .chain_update(text.as_bytes())
                            .finalize();
                        hex(&digest)
                    }
                })
            })
            .collect();
        Ok(Arc::new(values))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

floe_sdk::export_plugin!(Mask);
