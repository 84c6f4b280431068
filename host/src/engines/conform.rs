//! Fitting an upload to an existing table, shared by both engines: which columns
//! differ (named, for the error), and each batch reshaped to the table's layout.

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// How `upload` differs from `table`, column by column, or `None` if it fits.
/// Columns match by name in any order; `storable` says whether an upload column's
/// type can be stored in the table column (each engine has its own sibling types).
pub fn difference(
    table: &Schema,
    upload: &Schema,
    storable: impl Fn(&DataType, &DataType) -> bool,
) -> Option<String> {
    let mut problems = Vec::new();
    for field in table.fields() {
        match upload.field_with_name(field.name()) {
            Err(_) => problems.push(format!(
                "column `{}` is missing from the upload",
                field.name()
            )),
            Ok(up) if !storable(up.data_type(), field.data_type()) => problems.push(format!(
                "column `{}` is {} in the upload but {} in the table",
                field.name(),
                up.data_type(),
                field.data_type()
            )),
            Ok(up) if up.is_nullable() && !field.is_nullable() => problems.push(format!(
                "column `{}` is required in the table but nullable in the upload",
                field.name()
            )),
            Ok(_) => {}
        }
    }
    for up in upload.fields() {
        if table.field_with_name(up.name()).is_err() {
            problems.push(format!("column `{}` is not in the table", up.name()));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The batch's columns in `target`'s order and types (with its field metadata).
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let columns = target
        .fields()
        .iter()
        .map(|field: &std::sync::Arc<Field>| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                Error::invalid(format!("column `{}` is missing from a batch", field.name()))
            })?;
            if column.data_type() == field.data_type() {
                return Ok(column.clone());
            }
            cast(column, field.data_type()).map_err(|err| {
                Error::invalid(format!(
                    "column `{}` cannot be stored as {}: {err}",
                    field.name(),
                    field.data_type()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}
