//! Arrow ↔ Iceberg schemas: what a new table looks like, whether an upload fits an
//! existing table, and how each incoming batch is shaped to the table's Arrow schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{
    DataType, Field, FieldRef, Fields, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef, TimeUnit,
};
use iceberg::arrow::{arrow_schema_to_schema, schema_to_arrow_schema};
use iceberg::spec::Schema;
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

use crate::engines::conform::{conform, difference};
use crate::error::{Context, Result};

/// The Arrow type a column is stored as. Iceberg v2 has no nanosecond timestamps, no
/// small or unsigned integers and one string type, so uploads are normalized first
/// (nanoseconds are truncated to microseconds, as pyiceberg does on write).
fn storage_type(dt: &DataType) -> DataType {
    match dt {
        // Arrow zoned timestamps are UTC instants whatever the zone label.
        DataType::Timestamp(_, Some(_)) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        }
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Date64 => DataType::Date32,
        DataType::List(f) | DataType::LargeList(f) => DataType::List(storage_field(f)),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(storage_field).collect()),
        DataType::Map(f, sorted) => DataType::Map(storage_field(f), *sorted),
        other => other.clone(),
    }
}

fn storage_field(field: &FieldRef) -> FieldRef {
    Arc::new(Field::new(
        field.name(),
        storage_type(field.data_type()),
        field.is_nullable(),
    ))
}

/// The Iceberg schema of an upload, with field ids numbered from `first_id`.
pub fn iceberg_schema_of(upload: &ArrowSchema, first_id: i32) -> Result<Schema> {
    let mut next_id = first_id;
    let fields: Vec<FieldRef> = upload
        .fields()
        .iter()
        .map(|f| number_field(&storage_field(f), &mut next_id))
        .collect();
    arrow_schema_to_schema(&ArrowSchema::new(fields))
        .context("the upload's Arrow schema has no Iceberg equivalent")
}

fn number_field(field: &FieldRef, next_id: &mut i32) -> FieldRef {
    let id = *next_id;
    *next_id += 1;
    let data_type = match field.data_type() {
        DataType::List(child) => DataType::List(number_field(child, next_id)),
        DataType::Struct(children) => DataType::Struct(
            children
                .iter()
                .map(|c| number_field(c, next_id))
                .collect::<Fields>(),
        ),
        DataType::Map(entries, sorted) => DataType::Map(number_field(entries, next_id), *sorted),
        other => other.clone(),
    };
    let metadata = HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_string(), id.to_string())]);
    Arc::new(Field::new(field.name(), data_type, field.is_nullable()).with_metadata(metadata))
}

/// Explain how an upload differs from a table's schema, or `None` if it fits
/// (same column names and types, in any order; no nulls sent into required columns).
pub fn schema_difference(table: &Schema, upload: &ArrowSchema) -> Result<Option<String>> {
    let table_arrow = schema_to_arrow_schema(table).context("table schema has no Arrow form")?;
    Ok(difference(&table_arrow, upload, |up, stored| {
        storage_type(up).equals_datatype(stored)
    }))
}

/// Whether two schemas have the same columns with the same types (ids aside).
pub fn same_columns(a: &Schema, b: &Schema) -> bool {
    match (schema_to_arrow_schema(a), schema_to_arrow_schema(b)) {
        (Ok(a), Ok(b)) => {
            a.fields().len() == b.fields().len()
                && a.fields().iter().zip(b.fields()).all(|(x, y)| {
                    x.name() == y.name()
                        && x.is_nullable() == y.is_nullable()
                        && x.data_type().equals_datatype(y.data_type())
                })
        }
        _ => false,
    }
}

/// Shapes incoming batches to a table's Arrow schema: column order, storage types
/// and the field-id metadata the Parquet writer needs.
#[derive(Debug, Clone)]
pub struct Conformer {
    target: ArrowSchemaRef,
}

impl Conformer {
    pub fn new(table: &Schema) -> Result<Self> {
        let target = schema_to_arrow_schema(table).context("table schema has no Arrow form")?;
        Ok(Self {
            target: Arc::new(target),
        })
    }

    pub fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        conform(batch, &self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload() -> ArrowSchema {
        ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::LargeUtf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
        ])
    }

    #[test]
    fn uploads_are_normalized_to_iceberg_types() {
        let schema = iceberg_schema_of(&upload(), 1).unwrap();
        assert_eq!(schema.highest_field_id(), 3);
        assert_eq!(schema_difference(&schema, &upload()).unwrap(), None);
    }

    #[test]
    fn differences_name_the_columns() {
        let schema = iceberg_schema_of(&upload(), 1).unwrap();
        let other = ArrowSchema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("extra", DataType::Int32, true),
        ]);
        let diff = schema_difference(&schema, &other).unwrap().unwrap();
        for expected in [
            "`id` is Utf8",
            "`name` is missing",
            "`ts` is missing",
            "`extra` is not in the table",
        ] {
            assert!(diff.contains(expected), "{diff}");
        }
    }

    #[test]
    fn conform_reorders_and_casts() {
        let schema = iceberg_schema_of(&upload(), 1).unwrap();
        let reordered = Arc::new(ArrowSchema::new(vec![
            Field::new("name", DataType::LargeUtf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            Field::new("id", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            reordered,
            vec![
                Arc::new(arrow::array::LargeStringArray::from(vec![Some("a"), None])),
                Arc::new(
                    arrow::array::TimestampNanosecondArray::from(vec![Some(1_000_001_000), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let out = Conformer::new(&schema).unwrap().conform(&batch).unwrap();
        assert_eq!(out.schema().field(0).name(), "id");
        assert_eq!(out.column(1).data_type(), &DataType::Utf8);
        let ts = out
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), 1_000_001);
    }
}
