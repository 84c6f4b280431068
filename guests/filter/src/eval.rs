//! A parsed predicate evaluated over a batch with Arrow kernels.

use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, is_not_null, is_null, not, or_kleene};
use arrow_cast::{CastOptions, can_cast_types, cast_with_options};
use arrow_ord::cmp;
use floe_sdk::arrow_array::{
    Array, ArrayRef, BooleanArray, Datum, Float64Array, Int64Array, NullArray, RecordBatch, Scalar,
    StringArray, new_null_array,
};
use floe_sdk::arrow_schema::{DataType, Schema};

use crate::parse::{Cmp, Expr, Literal};

/// A column, or a literal not yet given a type.
enum Value {
    Array(ArrayRef),
    Literal(Literal),
}

/// Which rows the predicate is true for (null counts as false when filtering).
pub fn mask(expr: &Expr, batch: &RecordBatch) -> Result<BooleanArray, String> {
    match eval(expr, batch)? {
        Value::Array(array) => as_boolean(&array, expr),
        Value::Literal(Literal::Bool(b)) => Ok(BooleanArray::from(vec![b; batch.num_rows()])),
        Value::Literal(Literal::Null) => Ok(BooleanArray::new_null(batch.num_rows())),
        Value::Literal(other) => Err(format!(
            "the predicate is a value ({other:?}), not a condition"
        )),
    }
}

fn eval(expr: &Expr, batch: &RecordBatch) -> Result<Value, String> {
    Ok(match expr {
        Expr::Column(name) => Value::Array(column(batch, name)?),
        Expr::Literal(literal) => Value::Literal(literal.clone()),
        Expr::Compare(left, op, right) => Value::Array(Arc::new(compare(
            eval(left, batch)?,
            *op,
            eval(right, batch)?,
            batch,
        )?)),
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let value = eval(expr, batch)?;
            let mut any = BooleanArray::from(vec![false; batch.num_rows()]);
            for item in list {
                let equal = compare(clone(&value), Cmp::Eq, Value::Literal(item.clone()), batch)?;
                any = or_kleene(&any, &equal).map_err(|e| e.to_string())?;
            }
            Value::Array(Arc::new(if *negated {
                not(&any).map_err(|e| e.to_string())?
            } else {
                any
            }))
        }
        Expr::IsNull { expr, negated } => {
            let array = to_array(eval(expr, batch)?, None, batch.num_rows())?;
            let result = if *negated {
                is_not_null(&array)
            } else {
                is_null(&array)
            };
            Value::Array(Arc::new(result.map_err(|e| e.to_string())?))
        }
        Expr::And(left, right) => Value::Array(Arc::new(
            and_kleene(&mask(left, batch)?, &mask(right, batch)?).map_err(|e| e.to_string())?,
        )),
        Expr::Or(left, right) => Value::Array(Arc::new(
            or_kleene(&mask(left, batch)?, &mask(right, batch)?).map_err(|e| e.to_string())?,
        )),
        Expr::Not(inner) => Value::Array(Arc::new(
            not(&mask(inner, batch)?).map_err(|e| e.to_string())?,
        )),
    })
}

fn clone(value: &Value) -> Value {
    match value {
        Value::Array(array) => Value::Array(array.clone()),
        Value::Literal(literal) => Value::Literal(literal.clone()),
    }
}

/// A column's name as the schema spells it: exact first, then ignoring case (as SQL does).
pub fn resolve(schema: &Schema, name: &str) -> Option<String> {
    let field = schema.field_with_name(name).ok().or_else(|| {
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref())
            .find(|f| f.name().eq_ignore_ascii_case(name))
    })?;
    Some(field.name().clone())
}

fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef, String> {
    let schema = batch.schema();
    match resolve(&schema, name) {
        Some(resolved) => Ok(batch.column_by_name(&resolved).expect("resolved").clone()),
        None => Err(format!(
            "no column {name:?} (columns: {})",
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn compare(
    left: Value,
    op: Cmp,
    right: Value,
    batch: &RecordBatch,
) -> Result<BooleanArray, String> {
    let rows = batch.num_rows();
    let (left, right): (Box<dyn Datum>, Box<dyn Datum>) = match (left, right) {
        (Value::Array(l), Value::Array(r)) => {
            let (l, r) = common_type(l, r)?;
            (Box::new(l), Box::new(r))
        }
        (Value::Array(array), Value::Literal(literal)) => {
            let (array, scalar) = with_literal(array, literal)?;
            (Box::new(array), Box::new(scalar))
        }
        (Value::Literal(literal), Value::Array(array)) => {
            let (array, scalar) = with_literal(array, literal)?;
            (Box::new(scalar), Box::new(array))
        }
        (Value::Literal(l), Value::Literal(r)) => {
            let (l, r) = common_type(
                to_array(Value::Literal(l), None, rows)?,
                to_array(Value::Literal(r), None, rows)?,
            )?;
            (Box::new(l), Box::new(r))
        }
    };
    let (l, r) = (left.as_ref(), right.as_ref());
    match op {
        Cmp::Eq => cmp::eq(l, r),
        Cmp::NotEq => cmp::neq(l, r),
        Cmp::Lt => cmp::lt(l, r),
        Cmp::LtEq => cmp::lt_eq(l, r),
        Cmp::Gt => cmp::gt(l, r),
        Cmp::GtEq => cmp::gt_eq(l, r),
    }
    .map_err(|e| e.to_string())
}

/// A column and a literal made comparable: the literal takes the column's type,
/// except that a fractional number against integers compares as floats.
fn with_literal(array: ArrayRef, literal: Literal) -> Result<(ArrayRef, Scalar<ArrayRef>), String> {
    let array = match (&literal, array.data_type()) {
        (Literal::Float(_), t) if t.is_integer() => cast(&array, &DataType::Float64)?,
        _ => array,
    };
    let scalar = to_array(Value::Literal(literal), Some(array.data_type()), 1)?;
    Ok((array, Scalar::new(scalar)))
}

/// Two columns made comparable: numbers of different types compare as floats;
/// otherwise the right side takes the left side's type.
fn common_type(left: ArrayRef, right: ArrayRef) -> Result<(ArrayRef, ArrayRef), String> {
    let (lt, rt) = (left.data_type().clone(), right.data_type().clone());
    if lt == rt {
        Ok((left, right))
    } else if lt.is_numeric() && rt.is_numeric() {
        Ok((
            cast(&left, &DataType::Float64)?,
            cast(&right, &DataType::Float64)?,
        ))
    } else {
        Ok((left, cast(&right, &lt)?))
    }
}

fn to_array(value: Value, data_type: Option<&DataType>, rows: usize) -> Result<ArrayRef, String> {
    let literal = match value {
        Value::Array(array) => return Ok(array),
        Value::Literal(literal) => literal,
    };
    let natural: ArrayRef = match &literal {
        Literal::Int(i) => Arc::new(Int64Array::from(vec![*i; rows])),
        Literal::Float(f) => Arc::new(Float64Array::from(vec![*f; rows])),
        Literal::Str(s) => Arc::new(StringArray::from(vec![s.as_str(); rows])),
        Literal::Bool(b) => Arc::new(BooleanArray::from(vec![*b; rows])),
        Literal::Null => match data_type {
            Some(t) => return Ok(new_null_array(t, rows)),
            None => Arc::new(NullArray::new(rows)),
        },
    };
    match data_type {
        Some(t) if t != natural.data_type() => cast(&natural, t)
            .map_err(|err| format!("cannot compare a {t} column with {literal:?}: {err}")),
        _ => Ok(natural),
    }
}

fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    if !can_cast_types(array.data_type(), to) {
        return Err(format!("cannot compare {} with {to}", array.data_type()));
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, to, &options)
        .map_err(|e| format!("cannot compare {} with {to}: {e}", array.data_type()))
}

fn as_boolean(array: &ArrayRef, expr: &Expr) -> Result<BooleanArray, String> {
    array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| format!("{expr:?} is a {} value, not a condition", array.data_type()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use floe_sdk::arrow_schema::Field;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("v", DataType::Int64, true),
            Field::new("Grp", DataType::Utf8, true),
        ]);
        let v: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(600), Some(700)]));
        let grp: ArrayRef = Arc::new(StringArray::from(vec![
            Some("g1"),
            Some("g3"),
            None,
            Some("g3"),
        ]));
        RecordBatch::try_new(Arc::new(schema), vec![v, grp]).unwrap()
    }

    fn keep(predicate: &str) -> Vec<Option<bool>> {
        mask(&parse(predicate).unwrap(), &batch())
            .unwrap()
            .iter()
            .collect()
    }

    #[test]
    fn nulls_follow_three_valued_logic() {
        assert_eq!(
            keep("v >= 500"),
            [Some(false), None, Some(true), Some(true)]
        );
        assert_eq!(
            keep("v >= 500 OR grp = 'g3'"),
            [Some(false), Some(true), Some(true), Some(true)]
        );
        assert_eq!(
            keep("NOT v >= 500"),
            [Some(true), None, Some(false), Some(false)]
        );
        assert_eq!(
            keep("grp NOT IN ('g1')"),
            [Some(false), Some(true), None, Some(true)]
        );
        assert_eq!(
            keep("v IS NULL"),
            [Some(false), Some(true), Some(false), Some(false)]
        );
    }

    #[test]
    fn fractions_compare_integers_as_floats() {
        assert_eq!(
            keep("v > 600.5"),
            [Some(false), None, Some(false), Some(true)]
        );
    }

    #[test]
    fn unknown_columns_and_impossible_literals_are_named() {
        let err = mask(&parse("nope = 1").unwrap(), &batch()).unwrap_err();
        assert!(err.contains("no column \"nope\""), "{err}");
        let err = mask(&parse("v = 'abc'").unwrap(), &batch()).unwrap_err();
        assert!(err.contains("cannot compare"), "{err}");
    }
}
