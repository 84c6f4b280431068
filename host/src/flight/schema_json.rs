//! Arrow schemas as JSON for action results: `[{"name", "type", "nullable"}]`.

use arrow::datatypes::Schema;
use serde_json::json;

pub fn to_json(schema: &Schema) -> serde_json::Value {
    schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
        .collect()
}
