//! Row-group pruning for Parquet: a filter is compared with each row
//! group's min/max statistics before any task is made, and row groups
//! where no row can match are not read at all (as `dd.read_parquet`'s
//! `filters=`). The filter still runs on the rows that are read, so pruning
//! only has to be conservative: whatever it cannot decide is kept.

use std::collections::HashMap;

use polars::prelude::{AnyValue, DataType, Expr, Schema};
use polars_parquet::parquet::metadata::{FileMetadata, RowGroupMetadata};
use polars_parquet::parquet::statistics::Statistics;
use polars_plan::dsl::Operator;

/// A column's value range in one row group.
#[derive(Clone, Debug, PartialEq)]
pub enum Range {
    /// Integers.
    Int(i128, i128),
    /// Floats (NaN is not in the statistics).
    Float(f64, f64),
    /// Strings, compared as bytes (UTF-8 order is code point order).
    Bytes(Vec<u8>, Vec<u8>),
}

/// The ranges of the columns of each row group of `meta` that pruning can
/// use: signed integers, 64-bit floats and strings whose statistics are present.
/// Unsigned and logical types (dates, decimals) are left out, as their
/// physical statistics do not order like their values.
pub fn row_group_ranges(meta: &FileMetadata, schema: &Schema) -> Vec<HashMap<String, Range>> {
    meta.row_groups.iter().map(|rg| ranges_of(rg, meta, schema)).collect()
}

fn ranges_of(
    rg: &RowGroupMetadata,
    meta: &FileMetadata,
    schema: &Schema,
) -> HashMap<String, Range> {
    let mut out = HashMap::new();
    for chunk in rg.parquet_columns() {
        let path = &chunk.descriptor().path_in_schema;
        let [name] = path.as_slice() else { continue };
        let Some(dtype) = schema.get(name.as_str()) else { continue };
        let Some(Ok(stats)) = chunk.statistics(&meta.footer_buf) else { continue };
        let range = match (dtype, stats) {
            (DataType::Int8 | DataType::Int16 | DataType::Int32, Statistics::Int32(s)) => {
                s.min_value.zip(s.max_value).map(|(a, b)| Range::Int(a.into(), b.into()))
            }
            (DataType::Int64, Statistics::Int64(s)) => {
                s.min_value.zip(s.max_value).map(|(a, b)| Range::Int(a.into(), b.into()))
            }
            // Float32 is left out: polars casts the literal to f32 before
            // comparing, which the f64 comparison here would not match.
            (DataType::Float64, Statistics::Double(s)) => {
                s.min_value.zip(s.max_value).map(|(a, b)| Range::Float(a, b))
            }
            (DataType::String, Statistics::Binary(s)) => {
                s.min_value.zip(s.max_value).map(|(a, b)| Range::Bytes(a, b))
            }
            _ => None,
        };
        if let Some(r) = range {
            out.insert(name.to_string(), r);
        }
    }
    out
}

/// Whether some row of a row group with these column `ranges` may satisfy
/// `predicate`. Understood: `&`, `|`, and `==`, `!=`, `<`, `<=`, `>`, `>=`
/// between a column and a literal (either side); anything else may match.
pub fn may_match(predicate: &Expr, ranges: &HashMap<String, Range>) -> bool {
    let Expr::BinaryExpr { left, op, right } = predicate else { return true };
    match op {
        Operator::And | Operator::LogicalAnd => may_match(left, ranges) && may_match(right, ranges),
        Operator::Or | Operator::LogicalOr => may_match(left, ranges) || may_match(right, ranges),
        Operator::Eq
        | Operator::NotEq
        | Operator::Lt
        | Operator::LtEq
        | Operator::Gt
        | Operator::GtEq => {
            let (column, op, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v)) => (c, *op, v),
                (Expr::Literal(v), Expr::Column(c)) => (c, flip(*op), v),
                _ => return true,
            };
            let (Some(range), Some(value)) = (ranges.get(column.as_str()), v_of(value)) else {
                return true;
            };
            compare(range, op, &value)
        }
        _ => true,
    }
}

/// `a op b` as `b flip(op) a`.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// A literal, as pruning compares it.
enum Value {
    Int(i128),
    Float(f64),
    Bytes(Vec<u8>),
}

fn v_of(lit: &polars_plan::plans::LiteralValue) -> Option<Value> {
    let av = lit.to_any_value()?;
    Some(match av {
        AnyValue::String(s) => Value::Bytes(s.as_bytes().to_vec()),
        AnyValue::StringOwned(ref s) => Value::Bytes(s.as_bytes().to_vec()),
        AnyValue::Float32(f) => Value::Float(f.into()),
        AnyValue::Float64(f) => Value::Float(f),
        AnyValue::Int8(_)
        | AnyValue::Int16(_)
        | AnyValue::Int32(_)
        | AnyValue::Int64(_)
        | AnyValue::UInt8(_)
        | AnyValue::UInt16(_)
        | AnyValue::UInt32(_)
        | AnyValue::UInt64(_) => Value::Int(av.extract::<i128>()?),
        _ => return None,
    })
}

/// Whether some value in `range` may satisfy `x op value`.
fn compare(range: &Range, op: Operator, value: &Value) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    // How the minimum and the maximum compare with the value; None where a
    // bound does not compare (a NaN bound: polars writes NaN for both when
    // a row group holds one), which rules nothing out on that side.
    let (lo, hi) = match (range, value) {
        (Range::Int(a, b), Value::Int(v)) => (Some(a.cmp(v)), Some(b.cmp(v))),
        (Range::Int(a, b), Value::Float(v)) => {
            ((*a as f64).partial_cmp(v), (*b as f64).partial_cmp(v))
        }
        (Range::Float(a, b), Value::Float(_) | Value::Int(_)) => {
            // A NaN row is outside the statistics and sorts above every
            // number in polars: only the bounds NaN cannot meet are used.
            if !matches!(op, Operator::Eq | Operator::Lt | Operator::LtEq) {
                return true;
            }
            let v = match value {
                Value::Float(v) => *v,
                Value::Int(v) => *v as f64,
                Value::Bytes(_) => return true,
            };
            (a.partial_cmp(&v), b.partial_cmp(&v))
        }
        (Range::Bytes(a, b), Value::Bytes(v)) => {
            (Some(a.as_slice().cmp(v)), Some(b.as_slice().cmp(v)))
        }
        _ => return true,
    };
    match op {
        Operator::Eq => lo != Some(Greater) && hi != Some(Less),
        Operator::NotEq => !(lo == Some(Equal) && hi == Some(Equal)),
        Operator::Lt => !matches!(lo, Some(Greater | Equal)),
        Operator::LtEq => lo != Some(Greater),
        Operator::Gt => !matches!(hi, Some(Less | Equal)),
        Operator::GtEq => hi != Some(Less),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{col, lit};

    fn ranges() -> HashMap<String, Range> {
        HashMap::from([
            ("id".to_string(), Range::Int(100, 199)),
            ("x".to_string(), Range::Float(0.5, 2.5)),
            ("nan".to_string(), Range::Float(f64::NAN, f64::NAN)),
            ("s".to_string(), Range::Bytes(b"b".to_vec(), b"d".to_vec())),
        ])
    }

    #[test]
    fn comparisons_against_the_range() {
        let r = ranges();
        let cases = [
            (col("id").eq(lit(150)), true),
            (col("id").eq(lit(200)), false),
            (col("id").gt(lit(199)), false),
            (col("id").gt_eq(lit(199)), true),
            (col("id").lt(lit(100)), false),
            (col("id").lt_eq(lit(100)), true),
            (lit(99).gt(col("id")), false),
            (lit(100).gt_eq(col("id")), true),
            (col("id").neq(lit(150)), true),
            (col("id").gt(lit(120.5)), true),
            (col("id").lt(lit(99.5)), false),
            (col("x").lt(lit(0.5)), false),
            (col("x").eq(lit(3.0)), false),
            // NaN may sit above the statistics: not pruned.
            (col("x").gt(lit(10.0)), true),
            // NaN bounds (a row group with a NaN): nothing is ruled out.
            (col("nan").lt(lit(-1.0)), true),
            (col("nan").eq(lit(3.0)), true),
            (col("s").eq(lit("a")), false),
            (col("s").eq(lit("c")), true),
            (col("s").gt(lit("d")), false),
            (col("id").gt(lit(500)).and(col("x").lt(lit(1.0))), false),
            (col("id").gt(lit(500)).or(col("x").lt(lit(1.0))), true),
            (col("id").gt(lit(500)).or(col("s").eq(lit("z"))), false),
            // Not understood: kept.
            (col("id").is_null(), true),
            (col("missing").eq(lit(1)), true),
            ((col("id") + lit(1)).eq(lit(1000)), true),
            (col("s").eq(lit(5)), true),
        ];
        for (p, want) in cases {
            assert_eq!(may_match(&p, &r), want, "{p:?}");
        }
    }
}
