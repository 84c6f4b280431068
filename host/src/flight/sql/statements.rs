//! Prepared statements: the reads Flight SQL clients prepared on this host, by
//! handle, with the parameter values they bound. A handle belongs to the principal
//! that prepared it; another's, a closed or an expired one is not found.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::command::{ReadCommand, SqlValue};
use crate::error::{Error, Result, quote};

/// A statement unused for this long is closed.
const IDLE: Duration = Duration::from_secs(3600);
/// Open statements per principal, and on the host.
const PER_PRINCIPAL: usize = 1_000;
const ON_HOST: usize = 20_000;

#[derive(Default)]
pub struct Statements {
    open: Mutex<HashMap<Vec<u8>, Statement>>,
}

struct Statement {
    owner: String,
    read: ReadCommand,
    used: Instant,
}

impl Statements {
    /// Keep `read` for `owner`; its handle.
    pub fn open(&self, owner: &str, read: ReadCommand) -> Result<Vec<u8>> {
        let mut open = self.open.lock().expect("statements");
        open.retain(|_, s| s.used.elapsed() < IDLE);
        let owned = open.values().filter(|s| s.owner == owner).count();
        if owned >= PER_PRINCIPAL || open.len() >= ON_HOST {
            return Err(Error::ResourceExhausted(format!(
                "too many open prepared statements ({owned} of {PER_PRINCIPAL} for {owner}, {} on the host): close the ones you no longer use",
                open.len()
            )));
        }
        let handle = uuid::Uuid::new_v4().to_string().into_bytes();
        open.insert(
            handle.clone(),
            Statement {
                owner: owner.to_string(),
                read,
                used: Instant::now(),
            },
        );
        Ok(handle)
    }

    /// The read a handle runs, with the values bound to it.
    pub fn read(&self, handle: &[u8], owner: &str) -> Result<ReadCommand> {
        self.with(handle, owner, |s| s.read.clone())
    }

    /// Bind `params` to the statement's parameters, for its next runs.
    pub fn bind(&self, handle: &[u8], owner: &str, params: Vec<SqlValue>) -> Result<()> {
        self.with(handle, owner, |s| match &mut s.read {
            ReadCommand::Sql(read) => {
                read.params = params;
                Ok(())
            }
            ReadCommand::Table(_) => Err(Error::invalid(
                "this prepared statement is a table read: it takes no parameters",
            )),
        })?
    }

    pub fn close(&self, handle: &[u8], owner: &str) -> Result<()> {
        let mut open = self.open.lock().expect("statements");
        match open.get(handle) {
            Some(s) if s.owner == owner => {
                open.remove(handle);
                Ok(())
            }
            _ => Err(not_found(handle)),
        }
    }

    fn with<T>(
        &self,
        handle: &[u8],
        owner: &str,
        f: impl FnOnce(&mut Statement) -> T,
    ) -> Result<T> {
        let mut open = self.open.lock().expect("statements");
        match open.get_mut(handle) {
            Some(s) if s.owner == owner && s.used.elapsed() < IDLE => {
                s.used = Instant::now();
                Ok(f(s))
            }
            _ => Err(not_found(handle)),
        }
    }
}

fn not_found(handle: &[u8]) -> Error {
    Error::not_found(format!(
        "prepared statement {} not found: it was closed, unused for {} min, or prepared on another host (or by another user)",
        quote(&String::from_utf8_lossy(handle)),
        IDLE.as_secs() / 60
    ))
}

/// The values of one row of parameters (DoPut of a prepared query). A query runs
/// with one set of values: more than one row is refused.
pub fn parameter_values(batches: &[RecordBatch]) -> Result<Vec<SqlValue>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    if rows > 1 {
        return Err(Error::invalid(format!(
            "{rows} rows of parameters were bound: a query takes one row (floe does not run a query once per row)"
        )));
    }
    batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(column, field)| value(column, field.name()))
        .collect()
}

/// The first value of `column` as a SQL parameter: numbers and booleans as
/// themselves, dates, times, timestamps and decimals as their text.
fn value(column: &ArrayRef, name: &str) -> Result<SqlValue> {
    if column.is_null(0) {
        return Ok(SqlValue::Null);
    }
    let cast = |to: &DataType| {
        arrow::compute::cast(column, to)
            .map_err(|err| Error::invalid(format!("parameter {}: {err}", quote(name))))
    };
    Ok(match column.data_type() {
        DataType::Null => SqlValue::Null,
        DataType::Boolean => SqlValue::Bool(column.as_boolean().value(0)),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            SqlValue::Int(cast(&DataType::Int64)?.as_primitive::<Int64Type>().value(0))
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => SqlValue::Float(
            cast(&DataType::Float64)?
                .as_primitive::<Float64Type>()
                .value(0),
        ),
        DataType::UInt64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Date32
        | DataType::Date64
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Timestamp(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => SqlValue::Text(
            cast(&DataType::Utf8)?
                .as_string::<i32>()
                .value(0)
                .to_string(),
        ),
        other => {
            return Err(Error::invalid(format!(
                "parameter {} is of type {other}: floe binds nulls, booleans, numbers, strings, \
                 dates, times, timestamps and decimals",
                quote(name)
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::command::SqlRead;

    fn sql(text: &str) -> ReadCommand {
        ReadCommand::Sql(SqlRead {
            sql: text.into(),
            params: Vec::new(),
            transforms: Vec::new(),
        })
    }

    #[test]
    fn handles_belong_to_their_principal_until_closed() {
        let statements = Statements::default();
        let handle = statements.open("ann", sql("SELECT ?")).unwrap();
        statements
            .bind(&handle, "ann", vec![SqlValue::Int(7)])
            .unwrap();
        let ReadCommand::Sql(read) = statements.read(&handle, "ann").unwrap() else {
            panic!("not SQL")
        };
        assert_eq!(read.params, [SqlValue::Int(7)]);
        assert!(matches!(
            statements.read(&handle, "bob"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            statements.close(&handle, "bob"),
            Err(Error::NotFound(_))
        ));
        statements.close(&handle, "ann").unwrap();
        assert!(matches!(
            statements.read(&handle, "ann"),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn one_row_of_parameters_becomes_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(5)])),
                Arc::new(StringArray::from(vec![None::<&str>])),
                Arc::new(Date32Array::from(vec![19723])),
            ],
        )
        .unwrap();
        assert_eq!(
            parameter_values(std::slice::from_ref(&batch)).unwrap(),
            [
                SqlValue::Int(5),
                SqlValue::Null,
                SqlValue::Text("2024-01-01".into())
            ]
        );
        let err = parameter_values(&[batch.clone(), batch]).unwrap_err();
        assert!(err.to_string().contains("one row"), "{err}");
    }
}
