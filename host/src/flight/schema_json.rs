//! Arrow schemas as JSON for action results: `[{"name", "type", "nullable"}]`.

use arrow::datatypes::Schema;
use serde::Serializer;
use serde::ser::SerializeSeq;
use serde_json::json;

pub fn to_json(schema: &Schema) -> serde_json::Value {
    schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
        .collect()
}

pub fn serialize<S: Serializer>(schema: &std::sync::Arc<Schema>, s: S) -> Result<S::Ok, S::Error> {
    let fields = to_json(schema);
    let fields = fields.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut seq = s.serialize_seq(Some(fields.len()))?;
    for field in fields {
        seq.serialize_element(field)?;
    }
    seq.end()
}
