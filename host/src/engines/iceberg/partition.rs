//! `partition_by`: how a table's rows are split into data files by value, as an
//! Iceberg partition spec. Each item is one expression, read by the filter parser:
//! a column (identity), `year(c)`, `month(c)`, `day(c)`, `hour(c)`, `bucket(n, c)`
//! or `truncate(w, c)`.

use floe_wire::expr::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value};
use floe_wire::expr::parse_filter;
use iceberg::spec::{PartitionSpec, Schema, Transform, UnboundPartitionSpec};

use crate::error::{Error, Result, quote};

/// The most items a `partition_by` may list.
const MAX_FIELDS: usize = 16;

/// The unbound spec `items` describe over `schema` (unpartitioned when empty).
pub fn partition_spec(items: &[String], schema: &Schema) -> Result<UnboundPartitionSpec> {
    if items.len() > MAX_FIELDS {
        return Err(Error::invalid(format!(
            "partition_by lists {} items; at most {MAX_FIELDS}",
            items.len()
        )));
    }
    let mut spec = UnboundPartitionSpec::builder();
    for item in items {
        let (transform, column) = parse_item(item)?;
        let field = schema
            .as_struct()
            .fields()
            .iter()
            .find(|f| f.name == column)
            .ok_or_else(|| refuse(item, format!("the table has no column {}", quote(&column))))?;
        if transform.result_type(&field.field_type).is_err() {
            return Err(refuse(
                item,
                format!(
                    "{} does not apply to {} of type {}",
                    transform_name(transform),
                    quote(&column),
                    field.field_type
                ),
            ));
        }
        spec = spec
            .add_partition_field(field.id, field_name(&column, transform), transform)
            .map_err(|err| refuse(item, err.message().to_string()))?;
    }
    Ok(spec.build())
}

/// Whether `spec` partitions as `wanted` does (same columns, transforms and names).
pub fn same_spec(spec: &PartitionSpec, wanted: &UnboundPartitionSpec) -> bool {
    spec.fields().len() == wanted.fields().len()
        && spec.fields().iter().zip(wanted.fields()).all(|(a, b)| {
            a.source_id == b.source_id && a.transform == b.transform && a.name == b.name
        })
}

/// A spec as `partition_by` items: what `list_tables` shows.
pub fn describe(spec: &PartitionSpec, schema: &Schema) -> Vec<String> {
    spec.fields()
        .iter()
        .map(|f| {
            let column = schema
                .name_by_field_id(f.source_id)
                .unwrap_or("?")
                .to_string();
            match f.transform {
                Transform::Identity => column,
                Transform::Bucket(n) => format!("bucket({n}, {column})"),
                Transform::Truncate(w) => format!("truncate({w}, {column})"),
                other => format!("{}({column})", transform_name(other)),
            }
        })
        .collect()
}

fn refuse(item: &str, reason: String) -> Error {
    Error::invalid(format!("partition_by item {}: {reason}", quote(item)))
}

fn parse_item(item: &str) -> Result<(Transform, String)> {
    let expr = parse_filter(item).map_err(|err| refuse(item, err.reason))?;
    let usage = || {
        refuse(
            item,
            "use a column, year(c), month(c), day(c), hour(c), bucket(n, c) or truncate(w, c)"
                .into(),
        )
    };
    let call = match &expr {
        Expr::Identifier(column) => return Ok((Transform::Identity, column.value.clone())),
        Expr::Function(call) => call,
        _ => return Err(usage()),
    };
    let name = call.name.to_string().to_ascii_lowercase();
    let FunctionArguments::List(list) = &call.args else {
        return Err(usage());
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(usage)?;
    let column = |e: &Expr| match e {
        Expr::Identifier(c) => Ok(c.value.clone()),
        _ => Err(usage()),
    };
    let width = |e: &Expr| {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, false) => n.parse::<u32>().ok().filter(|n| *n > 0),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| refuse(item, format!("{name} needs a positive whole number first")))
    };
    match (name.as_str(), args.as_slice()) {
        ("identity", [c]) => Ok((Transform::Identity, column(c)?)),
        ("year" | "years", [c]) => Ok((Transform::Year, column(c)?)),
        ("month" | "months", [c]) => Ok((Transform::Month, column(c)?)),
        ("day" | "days", [c]) => Ok((Transform::Day, column(c)?)),
        ("hour" | "hours", [c]) => Ok((Transform::Hour, column(c)?)),
        ("bucket", [n, c]) => Ok((Transform::Bucket(width(n)?), column(c)?)),
        ("truncate", [w, c]) => Ok((Transform::Truncate(width(w)?), column(c)?)),
        (
            "identity" | "year" | "years" | "month" | "months" | "day" | "days" | "hour" | "hours"
            | "bucket" | "truncate",
            _,
        ) => Err(usage()),
        _ => Err(refuse(
            item,
            format!(
                "unknown transform {}: use identity, year, month, day, hour, bucket or truncate",
                quote(&name)
            ),
        )),
    }
}

fn transform_name(transform: Transform) -> &'static str {
    match transform {
        Transform::Identity => "identity",
        Transform::Year => "year",
        Transform::Month => "month",
        Transform::Day => "day",
        Transform::Hour => "hour",
        Transform::Bucket(_) => "bucket",
        Transform::Truncate(_) => "truncate",
        Transform::Void => "void",
        Transform::Unknown => "unknown",
    }
}

/// Iceberg's conventional partition field names (as Spark and pyiceberg name them).
fn field_name(column: &str, transform: Transform) -> String {
    match transform {
        Transform::Identity => column.to_string(),
        Transform::Bucket(_) => format!("{column}_bucket"),
        Transform::Truncate(_) => format!("{column}_trunc"),
        other => format!("{column}_{}", transform_name(other)),
    }
}
