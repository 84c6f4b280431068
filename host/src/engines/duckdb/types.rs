//! Arrow types as DuckDB SQL type names, for DDL and typed empty relations.

use arrow::datatypes::{DataType, Fields, TimeUnit};

use crate::command::quote_ident;
use crate::error::{Error, Result};

pub fn duckdb_type(dt: &DataType) -> Result<String> {
    Ok(match dt {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) if *p <= 38 => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Timestamp(TimeUnit::Second, None) => "TIMESTAMP_S".into(),
        DataType::Timestamp(TimeUnit::Millisecond, None) => "TIMESTAMP_MS".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP_NS".into(),
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::List(f) | DataType::LargeList(f) => format!("{}[]", duckdb_type(f.data_type())?),
        DataType::Struct(fields) => format!("STRUCT({})", column_definitions(fields)?),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!(
                    "MAP({}, {})",
                    duckdb_type(kv[0].data_type())?,
                    duckdb_type(kv[1].data_type())?
                )
            }
            other => return Err(Error::invalid(format!("unsupported map layout {other}"))),
        },
        other => {
            return Err(Error::invalid(format!(
                "Arrow type {other} has no DuckDB equivalent"
            )));
        }
    })
}

/// `"name" TYPE, ...`: a column list for CREATE TABLE or STRUCT(...).
pub fn column_definitions(fields: &Fields) -> Result<String> {
    let columns = fields
        .iter()
        .map(|f| {
            Ok(format!(
                "{} {}",
                quote_ident(f.name()),
                duckdb_type(f.data_type())?
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(columns.join(", "))
}

/// A FROM item with these columns and no rows.
pub fn empty_relation(schema: &arrow::datatypes::Schema) -> Result<String> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            Ok(format!(
                "CAST(NULL AS {}) AS {}",
                duckdb_type(f.data_type())?,
                quote_ident(f.name())
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(format!("(SELECT {} WHERE false)", columns.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn nested_types_are_spelled_out() {
        let dt = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Decimal128(12, 2), true),
            Field::new(
                "b",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]));
        assert_eq!(
            duckdb_type(&dt).unwrap(),
            "STRUCT(\"a\" DECIMAL(12,2), \"b\" VARCHAR[])"
        );
    }
}
