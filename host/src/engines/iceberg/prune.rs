//! Which of a snapshot's data files can hold rows a filter keeps, judged by the
//! per-column bounds in the manifests, so that DuckDB never opens the others.
//!
//! Only what is certain prunes: a top-level column of an integer, date, timestamp
//! or string type compared with a literal (`=`, `<`, `<=`, `>`, `>=`, `BETWEEN`), in a
//! conjunction (`AND`). Any other part of a filter keeps every file, as does a
//! file without bounds for the column.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use floe_wire::expr::ast::{BinaryOperator, DataType, Expr, UnaryOperator, Value};
use iceberg::spec::{DataFile, Datum, PrimitiveType, Schema, Type};

/// Longer string bounds are not kept: they cost memory and rarely decide anything.
const MAX_STRING_BOUND: usize = 64;

/// One file's bounds, for the columns pruning can use.
#[derive(Debug, Default)]
pub struct FileBounds {
    lower: HashMap<i32, Datum>,
    upper: HashMap<i32, Datum>,
}

impl FileBounds {
    pub fn of(file: &DataFile) -> Self {
        let keep = |bounds: &HashMap<i32, Datum>| {
            bounds
                .iter()
                .filter(|(_, d)| prunable(d.data_type()) && bound_bytes(d) <= MAX_STRING_BOUND)
                .map(|(id, d)| (*id, d.clone()))
                .collect()
        };
        Self {
            lower: keep(file.lower_bounds()),
            upper: keep(file.upper_bounds()),
        }
    }

    pub fn bytes(&self) -> usize {
        self.lower
            .values()
            .chain(self.upper.values())
            .map(|d| 32 + bound_bytes(d))
            .sum()
    }

    /// False only when no row of the file can satisfy every condition.
    pub fn may_match(&self, conditions: &[Condition]) -> bool {
        conditions.iter().all(|c| self.may_satisfy(c))
    }

    fn may_satisfy(&self, c: &Condition) -> bool {
        // None: no bound, or bounds of another type than the literal's.
        let cmp = |bound: Option<&Datum>| bound.and_then(|b| b.partial_cmp(&c.value));
        let lower = || cmp(self.lower.get(&c.field));
        let upper = || cmp(self.upper.get(&c.field));
        use Ordering::*;
        match c.op {
            Op::Eq => lower() != Some(Greater) && upper() != Some(Less),
            Op::Lt => !matches!(lower(), Some(Greater | Equal)),
            Op::LtEq => lower() != Some(Greater),
            Op::Gt => !matches!(upper(), Some(Less | Equal)),
            Op::GtEq => upper() != Some(Less),
        }
    }
}

/// `column <op> value`, the column by field id.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    field: i32,
    op: Op,
    value: Datum,
}

impl Condition {
    /// The column's field id.
    pub fn field(&self) -> i32 {
        self.field
    }

    pub fn op(&self) -> Op {
        self.op
    }

    /// The literal, as a value of the column's type.
    pub fn value(&self) -> &Datum {
        &self.value
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl Op {
    fn of(op: &BinaryOperator) -> Option<Self> {
        Some(match op {
            BinaryOperator::Eq => Op::Eq,
            BinaryOperator::Lt => Op::Lt,
            BinaryOperator::LtEq => Op::LtEq,
            BinaryOperator::Gt => Op::Gt,
            BinaryOperator::GtEq => Op::GtEq,
            _ => return None,
        })
    }

    /// `a op b` as `b op' a`.
    fn flipped(self) -> Self {
        match self {
            Op::Eq => Op::Eq,
            Op::Lt => Op::Gt,
            Op::LtEq => Op::GtEq,
            Op::Gt => Op::Lt,
            Op::GtEq => Op::LtEq,
        }
    }
}

/// Conditions every row of `files` meets: each of `columns` (those bounds can
/// decide) between its least lower and greatest upper bound over the files. A
/// table file that cannot meet them holds none of those rows' values.
pub fn covering(files: &[DataFile], schema: &Schema, columns: &[String]) -> Vec<Condition> {
    let bounds: Vec<FileBounds> = files.iter().map(FileBounds::of).collect();
    let mut found = Vec::new();
    for column in columns {
        let Some(field) = schema
            .as_struct()
            .fields()
            .iter()
            .find(|f| &f.name == column)
        else {
            continue;
        };
        let least = bounds
            .iter()
            .map(|b| b.lower.get(&field.id))
            .collect::<Option<Vec<_>>>();
        let most = bounds
            .iter()
            .map(|b| b.upper.get(&field.id))
            .collect::<Option<Vec<_>>>();
        if let Some(low) = extreme(least, Ordering::Less) {
            found.push(Condition {
                field: field.id,
                op: Op::GtEq,
                value: low.clone(),
            });
        }
        if let Some(high) = extreme(most, Ordering::Greater) {
            found.push(Condition {
                field: field.id,
                op: Op::LtEq,
                value: high.clone(),
            });
        }
    }
    found
}

/// The least (`Less`) or greatest (`Greater`) of `values`; None if one is missing
/// or they do not compare.
fn extreme<'a>(values: Option<Vec<&'a Datum>>, pick: Ordering) -> Option<&'a Datum> {
    let mut best: Option<&Datum> = None;
    for value in values? {
        best = match best {
            Some(b) if value.partial_cmp(b)? != pick => Some(b),
            _ => Some(value),
        };
    }
    best
}

/// The conditions of `filter` that file bounds can decide (all must hold for a
/// row to be kept); the rest of the filter is DuckDB's.
pub fn conditions(filter: &Expr, schema: &Schema) -> Vec<Condition> {
    decidable(filter, schema).conditions
}

/// A filter's conditions that bounds can decide, and whether they are the whole of
/// it: then the host can evaluate the filter itself, exactly as DuckDB would.
pub struct Decidable {
    pub conditions: Vec<Condition>,
    pub whole: bool,
}

pub fn decidable(filter: &Expr, schema: &Schema) -> Decidable {
    let mut conditions = Vec::new();
    let whole = collect(filter, schema, &mut conditions);
    Decidable { conditions, whole }
}

/// Add `expr`'s conditions to `found`; true if they are all of it.
fn collect(expr: &Expr, schema: &Schema, found: &mut Vec<Condition>) -> bool {
    match expr {
        Expr::Nested(inner) => collect(inner, schema, found),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            // Both sides, always: what one side cannot decide does not stop the other's pruning.
            let left = collect(left, schema, found);
            let right = collect(right, schema, found);
            left && right
        }
        Expr::BinaryOp { left, op, right } => {
            let Some(op) = Op::of(op) else { return false };
            let found_one = condition(left, op, right, schema)
                .or_else(|| condition(right, op.flipped(), left, schema));
            let whole = found_one.is_some();
            found.extend(found_one);
            whole
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let low = condition(expr, Op::GtEq, low, schema);
            let high = condition(expr, Op::LtEq, high, schema);
            let whole = low.is_some() && high.is_some();
            found.extend(low.into_iter().chain(high));
            whole
        }
        _ => false,
    }
}

fn condition(column: &Expr, op: Op, literal: &Expr, schema: &Schema) -> Option<Condition> {
    let Expr::Identifier(ident) = column else {
        return None;
    };
    // DuckDB resolves column names case-insensitively; only top-level columns count.
    let field = schema
        .as_struct()
        .fields()
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(&ident.value))?;
    let Type::Primitive(ty) = field.field_type.as_ref() else {
        return None;
    };
    Some(Condition {
        field: field.id,
        op,
        value: datum(literal, ty)?,
    })
}

/// The literal as a value of the column's type, when DuckDB would compare them
/// exactly so (an integer literal with an integer column, a string with a string
/// or a date); None otherwise.
fn datum(literal: &Expr, ty: &PrimitiveType) -> Option<Datum> {
    match (literal, ty) {
        (
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            },
            PrimitiveType::Int | PrimitiveType::Long,
        ) => match expr.as_ref() {
            Expr::Value(v) => integer(&format!("-{}", number(&v.value)?), ty),
            _ => None,
        },
        (Expr::Value(v), PrimitiveType::Int | PrimitiveType::Long) => {
            integer(number(&v.value)?, ty)
        }
        (Expr::Value(v), PrimitiveType::String) => match &v.value {
            Value::SingleQuotedString(s) => Some(Datum::string(s)),
            _ => None,
        },
        (Expr::Value(v), PrimitiveType::Date) => match &v.value {
            Value::SingleQuotedString(s) => Datum::date_from_str(s).ok(),
            _ => None,
        },
        (Expr::Value(v), PrimitiveType::Timestamp | PrimitiveType::Timestamptz) => match &v.value {
            Value::SingleQuotedString(s) => timestamp(s, ty),
            _ => None,
        },
        (Expr::TypedString(typed), PrimitiveType::Date) if typed.data_type == DataType::Date => {
            match &typed.value.value {
                Value::SingleQuotedString(s) => Datum::date_from_str(s).ok(),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A timestamp literal without a zone, as DuckDB casts it for this column: a
/// wall-clock time, or for a zoned column an instant in the host's zone (UTC).
/// Anything finer than microseconds, or with a zone, is left to DuckDB.
fn timestamp(text: &str, ty: &PrimitiveType) -> Option<Datum> {
    let parsed = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    if parsed.and_utc().timestamp_subsec_nanos() % 1000 != 0 {
        return None;
    }
    let micros = parsed.and_utc().timestamp_micros();
    Some(match ty {
        PrimitiveType::Timestamptz => Datum::timestamptz_micros(micros),
        _ => Datum::timestamp_micros(micros),
    })
}

fn number(value: &Value) -> Option<&str> {
    match value {
        Value::Number(n, false) => Some(n),
        _ => None,
    }
}

fn integer(text: &str, ty: &PrimitiveType) -> Option<Datum> {
    let n: i64 = text.parse().ok()?;
    match ty {
        PrimitiveType::Int => i32::try_from(n).ok().map(Datum::int),
        _ => Some(Datum::long(n)),
    }
}

fn prunable(ty: &PrimitiveType) -> bool {
    matches!(
        ty,
        PrimitiveType::Int
            | PrimitiveType::Long
            | PrimitiveType::Date
            | PrimitiveType::Timestamp
            | PrimitiveType::Timestamptz
            | PrimitiveType::String
    )
}

fn bound_bytes(d: &Datum) -> usize {
    match d.data_type() {
        PrimitiveType::String => d.to_string().len(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{NestedField, Schema};

    fn schema() -> Schema {
        Schema::builder()
            .with_fields([
                NestedField::optional(1, "n", Type::Primitive(PrimitiveType::Int)).into(),
                NestedField::optional(2, "day", Type::Primitive(PrimitiveType::Date)).into(),
                NestedField::optional(3, "x", Type::Primitive(PrimitiveType::Double)).into(),
            ])
            .build()
            .unwrap()
    }

    fn found(filter: &str) -> Vec<Condition> {
        conditions(&floe_wire::expr::parse_filter(filter).unwrap(), &schema())
    }

    #[test]
    fn a_filter_is_exact_only_when_every_part_is_a_condition() {
        let exact = |filter: &str| {
            let found = decidable(&floe_wire::expr::parse_filter(filter).unwrap(), &schema());
            found.whole.then_some(found.conditions.len())
        };
        assert_eq!(
            exact("n > 1 AND (day < '2024-01-01' AND n BETWEEN 1 AND 5)"),
            Some(4)
        );
        assert_eq!(exact("3 >= N"), Some(1));
        for partial in [
            "n > 1 OR n < 0",
            "n > 1 AND x < 1",
            "NOT n > 1",
            "n BETWEEN 1 AND 'a'",
            "n NOT BETWEEN 1 AND 5",
            "n = n",
            "n IS NULL",
            "n IN (1, 2)",
        ] {
            assert_eq!(exact(partial), None, "{partial}");
        }
    }

    #[test]
    fn literals_become_values_of_the_column_type_only_when_exact() {
        let day = Datum::date_from_str("2024-03-01").unwrap();
        assert_eq!(
            found("day >= DATE '2024-03-01' AND day < '2024-03-01'"),
            [
                Condition {
                    field: 2,
                    op: Op::GtEq,
                    value: day.clone()
                },
                Condition {
                    field: 2,
                    op: Op::Lt,
                    value: day
                },
            ]
        );
        assert_eq!(
            found("-3 < n"),
            [Condition {
                field: 1,
                op: Op::Gt,
                value: Datum::int(-3)
            }]
        );
        // Out of the column's range, not an integer, a float column, a cast.
        assert!(found("n < 3000000000").is_empty());
        assert!(found("n = '3'").is_empty());
        assert!(found("x < 1").is_empty());
        assert!(found("day < '2024-03'").is_empty());
        assert!(found("CAST(n AS BIGINT) < 3").is_empty());
        let ts = |text| timestamp(text, &PrimitiveType::Timestamptz);
        assert_eq!(
            ts("2024-03-01"),
            Some(Datum::timestamptz_micros(1_709_251_200_000_000))
        );
        assert_eq!(
            ts("2024-03-01 00:00:01.5"),
            Some(Datum::timestamptz_micros(1_709_251_201_500_000))
        );
        assert_eq!(ts("2024-03-01 00:00:00+02"), None);
        assert_eq!(ts("2024-03-01 00:00:00.0000001"), None);
    }
}
