//! Bags of records into dataframes ([`BagToDataFrame::to_dataframe`], as
//! `dask.bag.Bag.to_dataframe`): one partition per bag partition, with the
//! columns and types the caller names.
//!
//! Items are read as JSON ([`Bag::to_json`]: a struct's serde form is an
//! object of its fields). A record is a JSON object (columns by name) or
//! array (columns by position: tuples). A missing field or a JSON `null` is a null, as pandas and
//! polars read records; fields the columns do not name are left out. A value
//! of another type fails the partition, naming the partition, row, column and
//! value.

use polars::prelude::{Column, DataType, Schema, SchemaRef};
use rask_bag::{Bag, Json};
use serde_json::Value;

use crate::frame::{Frame, Wire};
use crate::{DataFrame, FrameError};

/// The column types `to_dataframe` reads from JSON.
pub const SUPPORTED: &[DataType] = &[
    DataType::Boolean,
    DataType::Int32,
    DataType::Int64,
    DataType::UInt32,
    DataType::UInt64,
    DataType::Float32,
    DataType::Float64,
    DataType::String,
];

/// `to_dataframe` on bags.
pub trait BagToDataFrame {
    /// A dataframe of the records, one partition per bag partition, with
    /// `columns` (name and type, in this order). See the [module docs](self)
    /// for how records map to rows.
    fn to_dataframe(&self, columns: &[(&str, DataType)]) -> Result<DataFrame, FrameError>;
}

impl<T: rask_core::Data> BagToDataFrame for Bag<T> {
    fn to_dataframe(&self, columns: &[(&str, DataType)]) -> Result<DataFrame, FrameError> {
        let schema = record_schema(columns)?;
        let parts = self
            .to_json()
            .partitions()
            .iter()
            .enumerate()
            .map(|(i, p)| crate::ops::json_records(p, Wire(schema.clone()), i as u64))
            .collect();
        Ok(DataFrame::from_parts(parts, schema))
    }
}

/// The schema of `columns`, or why it cannot be read from JSON.
fn record_schema(columns: &[(&str, DataType)]) -> Result<SchemaRef, FrameError> {
    let invalid = |message: String| FrameError::Invalid { message };
    if columns.is_empty() {
        return Err(invalid("to_dataframe: name at least one column (name, type)".into()));
    }
    let mut schema = Schema::with_capacity(columns.len());
    for (name, dtype) in columns {
        if !SUPPORTED.contains(dtype) {
            return Err(invalid(format!(
                "to_dataframe: column {name:?} has type {dtype}, which is not read from JSON; use one of {}, and cast afterwards (with_columns)",
                SUPPORTED.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        if schema.insert((*name).into(), dtype.clone()).is_some() {
            return Err(invalid(format!("to_dataframe: column {name:?} is named twice")));
        }
    }
    Ok(std::sync::Arc::new(schema))
}

/// One bag partition's records as a frame of `schema` (`partition`: its
/// number, for errors).
pub fn records_frame(rows: &[Json], schema: &Schema, partition: u64) -> Result<Frame, String> {
    let at = |row: usize| format!("to_dataframe: partition {partition}, row {row}");
    if let Some((i, row)) =
        rows.iter().enumerate().find(|(_, r)| !matches!(r.0, Value::Object(_) | Value::Array(_)))
    {
        return Err(format!(
            "{}: {} is not a record; to_dataframe reads JSON objects ({{\"column\": value, ..}}) or arrays ([value, ..])",
            at(i),
            shown(&row.0)
        ));
    }
    let mut cols = Vec::with_capacity(schema.len());
    for (pos, (name, dtype)) in schema.iter().enumerate() {
        let values = Values { rows, name: name.as_str(), pos, dtype, at: &at };
        let col = match dtype {
            DataType::Boolean => Column::new(name.clone(), values.read(Value::as_bool)?),
            DataType::Int32 => {
                Column::new(name.clone(), values.read(|v| int::<i64, i32>(v.as_i64()))?)
            }
            DataType::Int64 => Column::new(name.clone(), values.read(Value::as_i64)?),
            DataType::UInt32 => {
                Column::new(name.clone(), values.read(|v| int::<u64, u32>(v.as_u64()))?)
            }
            DataType::UInt64 => Column::new(name.clone(), values.read(Value::as_u64)?),
            DataType::Float32 => {
                Column::new(name.clone(), values.read(|v| v.as_f64().map(|x| x as f32))?)
            }
            DataType::Float64 => Column::new(name.clone(), values.read(Value::as_f64)?),
            DataType::String => Column::new(name.clone(), values.read(Value::as_str)?),
            other => return Err(format!("to_dataframe: type {other} is not read from JSON")),
        };
        cols.push(col);
    }
    polars::prelude::DataFrame::new(rows.len(), cols).map(Frame).map_err(|e| e.to_string())
}

/// An integer narrowed to `T`, if it fits.
fn int<S, T: TryFrom<S>>(x: Option<S>) -> Option<T> {
    x.and_then(|x| T::try_from(x).ok())
}

/// One column's values across a partition's records.
struct Values<'a, F> {
    rows: &'a [Json],
    name: &'a str,
    pos: usize,
    dtype: &'a DataType,
    at: &'a F,
}

impl<'a, F: Fn(usize) -> String> Values<'a, F> {
    /// Each row's value through `get`: `None` for a missing field or a null,
    /// an error for a value `get` does not take.
    fn read<T>(&self, get: impl Fn(&'a Value) -> Option<T>) -> Result<Vec<Option<T>>, String> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let field = match &row.0 {
                    Value::Object(m) => m.get(self.name),
                    Value::Array(a) => a.get(self.pos),
                    _ => None,
                };
                match field {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => get(v).map(Some).ok_or_else(|| {
                        format!(
                            "{}, column {:?}: expected {} ({}), found {}; declare the column with the type the data has, or fix the record",
                            (self.at)(i),
                            self.name,
                            self.dtype,
                            json_kind(self.dtype),
                            shown(v)
                        )
                    }),
                }
            })
            .collect()
    }
}

/// What JSON values a column type takes.
fn json_kind(dtype: &DataType) -> &'static str {
    match dtype {
        DataType::Boolean => "true or false",
        DataType::Float32 | DataType::Float64 => "a JSON number",
        DataType::String => "a JSON string",
        _ => "a JSON integer in the type's range",
    }
}

/// A value for an error message, cut at 100 characters.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(values: Vec<Value>) -> Vec<Json> {
        values.into_iter().map(Json).collect()
    }

    fn schema(cols: &[(&str, DataType)]) -> SchemaRef {
        record_schema(cols).unwrap()
    }

    #[test]
    fn objects_and_arrays_fill_columns_with_nulls_for_missing_fields() {
        let s = schema(&[
            ("id", DataType::Int64),
            ("score", DataType::Float64),
            ("ok", DataType::Boolean),
            ("name", DataType::String),
        ]);
        let data = rows(vec![
            json!({"id": 1, "score": 2.5, "ok": true, "name": "a", "extra": [1]}),
            json!({"id": 2, "score": 3, "name": null}),
            json!([3, null, false, "c"]),
            json!([4]),
        ]);
        let f = records_frame(&data, &s, 0).unwrap().0;
        assert_eq!(f.height(), 4);
        let id: Vec<Option<i64>> = f.column("id").unwrap().i64().unwrap().iter().collect();
        assert_eq!(id, [Some(1), Some(2), Some(3), Some(4)]);
        let score: Vec<Option<f64>> = f.column("score").unwrap().f64().unwrap().iter().collect();
        assert_eq!(score, [Some(2.5), Some(3.0), None, None]);
        let ok: Vec<Option<bool>> = f.column("ok").unwrap().bool().unwrap().iter().collect();
        assert_eq!(ok, [Some(true), None, Some(false), None]);
        let name: Vec<Option<&str>> = f.column("name").unwrap().str().unwrap().iter().collect();
        assert_eq!(name, [Some("a"), None, Some("c"), None]);
        // An empty partition has the columns and no rows.
        let empty = records_frame(&[], &s, 0).unwrap().0;
        assert_eq!((empty.height(), empty.width()), (0, 4));
    }

    #[test]
    fn a_value_of_another_type_names_partition_row_and_column() {
        let s = schema(&[("id", DataType::Int64), ("n", DataType::UInt32)]);
        let err =
            records_frame(&rows(vec![json!({"id": 1}), json!({"id": "2"})]), &s, 3).unwrap_err();
        assert!(err.contains("partition 3, row 1, column \"id\": expected i64"), "{err}");
        assert!(err.contains("found \"2\""), "{err}");
        let err = records_frame(&rows(vec![json!({"id": 1.5})]), &s, 0).unwrap_err();
        assert!(err.contains("found 1.5"), "{err}");
        let err = records_frame(&rows(vec![json!({"n": -1})]), &s, 0).unwrap_err();
        assert!(err.contains("column \"n\"") && err.contains("in the type's range"), "{err}");
        let err = records_frame(&rows(vec![json!({"id": 1}), json!(7)]), &s, 0).unwrap_err();
        assert!(err.contains("row 1: 7 is not a record"), "{err}");
    }

    #[test]
    fn columns_are_checked_when_the_graph_is_built() {
        assert!(record_schema(&[]).is_err());
        let twice = record_schema(&[("a", DataType::Int64), ("a", DataType::String)]);
        assert!(twice.unwrap_err().to_string().contains("named twice"));
        let date = record_schema(&[("d", DataType::Date)]).unwrap_err().to_string();
        assert!(date.contains("not read from JSON") && date.contains("cast afterwards"), "{date}");
    }
}
