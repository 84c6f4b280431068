//! A parsed predicate evaluated over a batch with Arrow kernels, following DuckDB:
//! three-valued logic, `/` divides as doubles, division by zero is NULL.

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, is_not_null, is_null, not, or_kleene};
use arrow_arith::numeric;
use arrow_cast::{CastOptions, can_cast_types, cast_with_options};
use arrow_ord::cmp;
use arrow_select::nullif::nullif;
use arrow_string::like;
use floe_sdk::arrow_array::{
    Array, ArrayRef, BooleanArray, Datum, Float64Array, Int64Array, NullArray, RecordBatch, Scalar,
    StringArray, new_null_array,
};
use floe_sdk::arrow_schema::{DataType, Schema, TimeUnit};
use floe_wire::expr::ast::{
    BinaryOperator as Op, CastKind, DataType as SqlType, ExactNumberInfo, Expr, InTarget,
    TimezoneInfo, UnaryOperator, Value as SqlValue, visit_expressions,
};

/// A literal keeps no type until it meets a column, whose type it then takes
/// (`ts >= '2024-01-01'` compares timestamps, as in DuckDB).
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
}

enum Value {
    Array(ArrayRef),
    Literal(Literal),
}

type Outcome<T> = Result<T, String>;

fn arrow(err: impl std::fmt::Display) -> String {
    err.to_string()
}

/// The input columns the predicate reads, as the schema spells them.
pub fn columns(expr: &Expr, schema: &Schema) -> Outcome<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let flow = visit_expressions(expr, |e| {
        let name = match e {
            Expr::Identifier(ident) => &ident.value,
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(last) => &last.value,
                None => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        match resolve(schema, name) {
            Some(found) if names.contains(&found) => ControlFlow::Continue(()),
            Some(found) => {
                names.push(found);
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(no_column(schema, name)),
        }
    });
    match flow {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(names),
    }
}

/// Which rows the predicate is true for (null counts as false when filtering).
pub fn mask(expr: &Expr, batch: &RecordBatch) -> Outcome<BooleanArray> {
    match eval(expr, batch)? {
        Value::Array(array) => as_boolean(&array, expr),
        Value::Literal(Literal::Bool(b)) => Ok(BooleanArray::from(vec![b; batch.num_rows()])),
        Value::Literal(Literal::Null) => Ok(BooleanArray::new_null(batch.num_rows())),
        Value::Literal(other) => Err(format!("{expr} is a value ({other:?}), not a condition")),
    }
}

fn eval(expr: &Expr, batch: &RecordBatch) -> Outcome<Value> {
    let rows = batch.num_rows();
    let boolean = |array: BooleanArray| Value::Array(Arc::new(array));
    Ok(match expr {
        Expr::Identifier(ident) => Value::Array(column(batch, &ident.value)?),
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(last) => Value::Array(column(batch, &last.value)?),
            None => return Err("an empty column name".into()),
        },
        Expr::Value(value) => Value::Literal(literal(&value.value)?),
        Expr::Nested(inner) => eval(inner, batch)?,
        Expr::TypedString(typed) => {
            let text = string(&typed.value.value)?;
            let to = arrow_type(&typed.data_type)?;
            Value::Array(to_array(Literal::Str(text), Some(&to), rows)?)
        }
        Expr::Cast {
            kind,
            expr: inner,
            data_type,
            format: None,
        } => {
            let to = arrow_type(data_type)?;
            let safe = matches!(kind, CastKind::TryCast | CastKind::SafeCast);
            let array = match eval(inner, batch)? {
                Value::Array(array) => array,
                Value::Literal(literal) => to_array(literal, None, rows)?,
            };
            Value::Array(cast(&array, &to, safe)?)
        }
        Expr::UnaryOp { op, expr: inner } => match (op, eval(inner, batch)?) {
            (UnaryOperator::Not, _) => boolean(not(&mask(inner, batch)?).map_err(arrow)?),
            (UnaryOperator::Plus, value) => value,
            (UnaryOperator::Minus, Value::Literal(Literal::Int(i))) => {
                Value::Literal(Literal::Int(-i))
            }
            (UnaryOperator::Minus, Value::Literal(Literal::Float(f))) => {
                Value::Literal(Literal::Float(-f))
            }
            (UnaryOperator::Minus, Value::Array(array)) => {
                Value::Array(numeric::neg(&array).map_err(arrow)?)
            }
            _ => return Err(format!("{expr} is not supported by the filter plugin")),
        },
        Expr::BinaryOp { left, op, right } => match op {
            Op::And => {
                boolean(and_kleene(&mask(left, batch)?, &mask(right, batch)?).map_err(arrow)?)
            }
            Op::Or => boolean(or_kleene(&mask(left, batch)?, &mask(right, batch)?).map_err(arrow)?),
            Op::Eq | Op::NotEq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq => {
                boolean(compare(eval(left, batch)?, op, eval(right, batch)?, rows)?)
            }
            Op::Plus | Op::Minus | Op::Multiply | Op::Divide | Op::Modulo => Value::Array(
                arithmetic(eval(left, batch)?, op, eval(right, batch)?, rows)?,
            ),
            other => {
                return Err(format!(
                    "operator {other} is not supported by the filter plugin"
                ));
            }
        },
        Expr::IsNull(inner) => boolean(is_null(&array(eval(inner, batch)?, rows)?).map_err(arrow)?),
        Expr::IsNotNull(inner) => {
            boolean(is_not_null(&array(eval(inner, batch)?, rows)?).map_err(arrow)?)
        }
        Expr::IsTrue(inner) => boolean(is(&mask(inner, batch)?, true)),
        Expr::IsFalse(inner) => boolean(is(&mask(inner, batch)?, false)),
        Expr::IsNotTrue(inner) => boolean(not(&is(&mask(inner, batch)?, true)).map_err(arrow)?),
        Expr::IsNotFalse(inner) => boolean(not(&is(&mask(inner, batch)?, false)).map_err(arrow)?),
        Expr::In {
            expr: inner,
            target: InTarget::List(list),
            negated,
            ..
        } => {
            let value = array(eval(inner, batch)?, rows)?;
            let mut any = BooleanArray::from(vec![false; rows]);
            for item in list {
                let equal = compare(
                    Value::Array(value.clone()),
                    &Op::Eq,
                    eval(item, batch)?,
                    rows,
                )?;
                any = or_kleene(&any, &equal).map_err(arrow)?;
            }
            boolean(if *negated {
                not(&any).map_err(arrow)?
            } else {
                any
            })
        }
        Expr::Between {
            expr: inner,
            negated,
            low,
            high,
        } => {
            let value = array(eval(inner, batch)?, rows)?;
            let above = compare(
                Value::Array(value.clone()),
                &Op::GtEq,
                eval(low, batch)?,
                rows,
            )?;
            let below = compare(Value::Array(value), &Op::LtEq, eval(high, batch)?, rows)?;
            let between = and_kleene(&above, &below).map_err(arrow)?;
            boolean(if *negated {
                not(&between).map_err(arrow)?
            } else {
                between
            })
        }
        Expr::Like {
            negated,
            any: false,
            expr: inner,
            pattern,
            escape_char: None,
        }
        | Expr::ILike {
            negated,
            any: false,
            expr: inner,
            pattern,
            escape_char: None,
        } => {
            let icase = matches!(expr, Expr::ILike { .. });
            let (value, pattern) = (eval(inner, batch)?, eval(pattern, batch)?);
            boolean(matches(value, pattern, *negated, icase, rows)?)
        }
        other => return Err(format!("{other} is not supported by the filter plugin")),
    })
}

fn literal(value: &SqlValue) -> Outcome<Literal> {
    Ok(match value {
        SqlValue::Number(text, _) => match text.parse::<i64>() {
            Ok(i) => Literal::Int(i),
            Err(_) => Literal::Float(text.parse().map_err(|_| format!("bad number {text}"))?),
        },
        SqlValue::Boolean(b) => Literal::Bool(*b),
        SqlValue::Null => Literal::Null,
        other => Literal::Str(string(other)?),
    })
}

fn string(value: &SqlValue) -> Outcome<String> {
    match value {
        SqlValue::SingleQuotedString(s) => Ok(s.clone()),
        SqlValue::DollarQuotedString(s) => Ok(s.value.clone()),
        other => Err(format!(
            "literal {other} is not supported by the filter plugin"
        )),
    }
}

/// SQL type names as Arrow types, as DuckDB maps them.
fn arrow_type(sql: &SqlType) -> Outcome<DataType> {
    Ok(match sql {
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::TinyInt(_) => DataType::Int8,
        SqlType::SmallInt(_) | SqlType::Int2(_) => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) | SqlType::Int32 => {
            DataType::Int32
        }
        SqlType::BigInt(_) | SqlType::Int8(_) | SqlType::Int64 => DataType::Int64,
        SqlType::Real | SqlType::Float4 | SqlType::Float(_) => DataType::Float32,
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 | SqlType::Float64 => {
            DataType::Float64
        }
        SqlType::Decimal(info) | SqlType::Numeric(info) => match info {
            ExactNumberInfo::None => DataType::Decimal128(18, 3),
            ExactNumberInfo::Precision(p) => DataType::Decimal128(*p as u8, 0),
            ExactNumberInfo::PrecisionAndScale(p, s) => DataType::Decimal128(*p as u8, *s as i8),
        },
        SqlType::Varchar(_) | SqlType::Text | SqlType::String(_) => DataType::Utf8,
        SqlType::Date => DataType::Date32,
        SqlType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        SqlType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        other => {
            return Err(format!(
                "type {other} is not supported by the filter plugin"
            ));
        }
    })
}

/// A column's name as the schema spells it: exact first, then ignoring case (as SQL does).
fn resolve(schema: &Schema, name: &str) -> Option<String> {
    let field = schema.field_with_name(name).ok().or_else(|| {
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref())
            .find(|f| f.name().eq_ignore_ascii_case(name))
    })?;
    Some(field.name().clone())
}

fn no_column(schema: &Schema, name: &str) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    format!("no column {name:?} (columns: {})", names.join(", "))
}

fn column(batch: &RecordBatch, name: &str) -> Outcome<ArrayRef> {
    let schema = batch.schema();
    match resolve(&schema, name) {
        Some(found) => Ok(batch.column_by_name(&found).expect("resolved").clone()),
        None => Err(no_column(&schema, name)),
    }
}

fn compare(left: Value, op: &Op, right: Value, rows: usize) -> Outcome<BooleanArray> {
    let (left, right) = comparable(left, right, rows)?;
    let (l, r) = (left.as_ref(), right.as_ref());
    match op {
        Op::Eq => cmp::eq(l, r),
        Op::NotEq => cmp::neq(l, r),
        Op::Lt => cmp::lt(l, r),
        Op::LtEq => cmp::lt_eq(l, r),
        Op::Gt => cmp::gt(l, r),
        _ => cmp::gt_eq(l, r),
    }
    .map_err(arrow)
}

type Operand = Box<dyn Datum>;

/// Two operands of one type: a literal takes the other side's type (except that a
/// fraction against integers compares as floats) and stays one value (a scalar);
/// numbers of different types meet as floats; otherwise the right side takes the
/// left side's type.
fn comparable(left: Value, right: Value, rows: usize) -> Outcome<(Operand, Operand)> {
    match (left, right) {
        (Value::Array(array), Value::Literal(literal)) => with_literal(array, literal),
        (Value::Literal(literal), Value::Array(array)) => {
            with_literal(array, literal).map(|(a, l)| (l, a))
        }
        (left, right) => {
            let (left, right) = (array(left, rows)?, array(right, rows)?);
            let (lt, rt) = (left.data_type().clone(), right.data_type().clone());
            let (left, right) = if lt == rt {
                (left, right)
            } else if lt.is_numeric() && rt.is_numeric() {
                (
                    cast(&left, &DataType::Float64, false)?,
                    cast(&right, &DataType::Float64, false)?,
                )
            } else {
                (left, cast(&right, &lt, false)?)
            };
            Ok((Box::new(left), Box::new(right)))
        }
    }
}

fn with_literal(array: ArrayRef, literal: Literal) -> Outcome<(Operand, Operand)> {
    let array = match (&literal, array.data_type()) {
        (Literal::Float(_), t) if t.is_integer() => cast(&array, &DataType::Float64, false)?,
        _ => array,
    };
    let value = to_array(literal, Some(array.data_type()), 1)?;
    Ok((Box::new(array), Box::new(Scalar::new(value))))
}

/// `+ - * / %` as DuckDB computes them: integers stay integers (overflow is an
/// error), anything else is a double, `/` always divides as doubles, and a
/// division or remainder by zero is NULL.
fn arithmetic(left: Value, op: &Op, right: Value, rows: usize) -> Outcome<ArrayRef> {
    let (lt, rt) = (natural_type(&left), natural_type(&right));
    for t in [&lt, &rt] {
        if !t.is_numeric() && *t != DataType::Null {
            return Err(format!("cannot compute {op} on a {t} value"));
        }
    }
    let to = if lt.is_integer() && rt.is_integer() && *op != Op::Divide {
        DataType::Int64
    } else {
        DataType::Float64
    };
    let dividing = matches!(op, Op::Divide | Op::Modulo);
    let left = cast(&array(left, rows)?, &to, false)?;
    let right: Operand = match right {
        // A literal stays one value.
        Value::Literal(literal) => {
            let value = cast(&to_array(literal, None, 1)?, &to, false)?;
            if dividing && (value.is_null(0) || is_zero(&value)?) {
                return Ok(new_null_array(&to, rows));
            }
            Box::new(Scalar::new(value))
        }
        Value::Array(array) => {
            let mut array = cast(&array, &to, false)?;
            if dividing {
                let zero = Scalar::new(cast(&to_array(Literal::Int(0), None, 1)?, &to, false)?);
                let zeros = cmp::eq(&array, &zero).map_err(arrow)?;
                array = nullif(&array, &zeros).map_err(arrow)?;
            }
            Box::new(array)
        }
    };
    let r = right.as_ref();
    match op {
        Op::Plus => numeric::add(&left, r),
        Op::Minus => numeric::sub(&left, r),
        Op::Multiply => numeric::mul(&left, r),
        Op::Divide => numeric::div(&left, r),
        _ => numeric::rem(&left, r),
    }
    .map_err(arrow)
}

fn natural_type(value: &Value) -> DataType {
    match value {
        Value::Array(array) => array.data_type().clone(),
        Value::Literal(Literal::Int(_)) => DataType::Int64,
        Value::Literal(Literal::Float(_)) => DataType::Float64,
        Value::Literal(Literal::Str(_)) => DataType::Utf8,
        Value::Literal(Literal::Bool(_)) => DataType::Boolean,
        Value::Literal(Literal::Null) => DataType::Null,
    }
}

fn is_zero(value: &ArrayRef) -> Outcome<bool> {
    let zero = cast(
        &to_array(Literal::Int(0), None, 1)?,
        value.data_type(),
        false,
    )?;
    Ok(cmp::eq(value, &Scalar::new(zero)).map_err(arrow)?.value(0))
}

/// `[NOT] LIKE` / `ILIKE` over strings.
fn matches(
    value: Value,
    pattern: Value,
    negated: bool,
    icase: bool,
    rows: usize,
) -> Outcome<BooleanArray> {
    let text = |v: Value| -> Outcome<ArrayRef> {
        match v {
            Value::Literal(Literal::Str(s)) => Ok(Arc::new(StringArray::from(vec![s; rows]))),
            Value::Literal(Literal::Null) => Ok(new_null_array(&DataType::Utf8, rows)),
            Value::Array(array) => cast(&array, &DataType::Utf8, false),
            Value::Literal(other) => Err(format!("LIKE needs strings, not {other:?}")),
        }
    };
    let (value, pattern) = (text(value)?, text(pattern)?);
    let (v, p): (&dyn Datum, &dyn Datum) = (&value, &pattern);
    match (negated, icase) {
        (false, false) => like::like(v, p),
        (true, false) => like::nlike(v, p),
        (false, true) => like::ilike(v, p),
        (true, true) => like::nilike(v, p),
    }
    .map_err(arrow)
}

/// `IS [NOT] TRUE/FALSE`: never null.
fn is(mask: &BooleanArray, wanted: bool) -> BooleanArray {
    mask.iter().map(|v| Some(v == Some(wanted))).collect()
}

fn array(value: Value, rows: usize) -> Outcome<ArrayRef> {
    match value {
        Value::Array(array) => Ok(array),
        Value::Literal(literal) => to_array(literal, None, rows),
    }
}

/// A literal as `rows` copies, of `data_type` when given.
fn to_array(literal: Literal, data_type: Option<&DataType>, rows: usize) -> Outcome<ArrayRef> {
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
        Some(t) if t != natural.data_type() => cast(&natural, t, false)
            .map_err(|err| format!("cannot compare a {t} column with {literal:?}: {err}")),
        _ => Ok(natural),
    }
}

/// Arrow's cast, which differs from DuckDB's in one place users may meet: a double
/// cast to an integer is truncated here and rounded by DuckDB.
fn cast(array: &ArrayRef, to: &DataType, safe: bool) -> Outcome<ArrayRef> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    if !can_cast_types(array.data_type(), to) {
        return Err(format!("cannot compare {} with {to}", array.data_type()));
    }
    let options = CastOptions {
        safe,
        ..Default::default()
    };
    cast_with_options(array, to, &options)
        .map_err(|e| format!("cannot cast {} to {to}: {e}", array.data_type()))
}

fn as_boolean(array: &ArrayRef, expr: &Expr) -> Outcome<BooleanArray> {
    array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| format!("{expr} is a {} value, not a condition", array.data_type()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_sdk::arrow_schema::Field;
    use floe_wire::expr::parse_filter;

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
        mask(&parse_filter(predicate).unwrap(), &batch())
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
    fn the_wider_grammar() {
        assert_eq!(
            keep("v BETWEEN 1 AND 600"),
            [Some(true), None, Some(true), Some(false)]
        );
        assert_eq!(
            keep("grp LIKE 'g%'"),
            [Some(true), Some(true), None, Some(true)]
        );
        assert_eq!(
            keep("grp ILIKE 'G1'"),
            [Some(true), Some(false), None, Some(false)]
        );
        assert_eq!(
            keep("v * 2 - 1 > 1000 AND v % 100 = 0"),
            [Some(false), None, Some(true), Some(true)]
        );
        assert_eq!(keep("v / 0 IS NULL"), [Some(true); 4]);
        assert_eq!(
            keep("CAST(v AS VARCHAR) = '600'"),
            [Some(false), None, Some(true), Some(false)]
        );
        assert_eq!(
            keep("v::DOUBLE / 4 = 0.25"),
            [Some(true), None, Some(false), Some(false)]
        );
        assert_eq!(
            keep("-v < -650"),
            [Some(false), None, Some(false), Some(true)]
        );
        assert_eq!(
            keep("(v > 1) IS NOT TRUE"),
            [Some(true), Some(true), Some(false), Some(false)]
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
        let err = mask(&parse_filter("nope = 1").unwrap(), &batch()).unwrap_err();
        assert!(err.contains("no column \"nope\""), "{err}");
        let err = mask(&parse_filter("v = 'abc'").unwrap(), &batch()).unwrap_err();
        assert!(err.contains("cannot"), "{err}");
        let schema = batch().schema();
        let err = columns(&parse_filter("v > 1 AND other.t.x = 1").unwrap(), &schema).unwrap_err();
        assert!(err.contains("no column \"x\""), "{err}");
        assert_eq!(
            columns(&parse_filter("grp = 'a' OR V > 1").unwrap(), &schema).unwrap(),
            ["Grp", "v"]
        );
    }
}
