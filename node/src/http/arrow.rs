//! Arrow IPC bodies for predictions: rows in, predictions out.
//!
//! A request is an Arrow IPC stream (`application/vnd.apache.arrow.stream`)
//! of record batches whose columns are feature columns, matched by name as
//! JSON's named rows are: numbers (any integer or float width) are numbers,
//! strings (plain, large, view or dictionary-encoded) are categories,
//! booleans are booleans, and nulls (and NaN) are missing values. Any other
//! column type is refused, naming the column. An answer asked for with
//! `Accept: application/vnd.apache.arrow.stream` is one record batch: a
//! `prediction` column (the class, or the value), then one `f32` column of
//! probabilities per class, named by the class.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray,
    cast::AsArray,
    types::{
        Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
        UInt32Type, UInt64Type,
    },
};
use arrow_ipc::{reader::StreamReader, writer::StreamWriter};
use arrow_schema::{DataType, Field, Schema};
use mass_protocol::serving::{Cell, Column, ColumnValues, Predicted, Prediction, Rows};

/// The media type of Arrow IPC streams.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// Rows from an Arrow IPC stream body, at most `max_rows`.
///
/// arrow-ipc 60 panics on some crafted messages (the fuzz target
/// `predict_arrow` found a buffer length past the body's end), so a panic
/// while reading is caught and answered as a malformed body.
pub fn parse(body: &[u8], max_rows: usize) -> Result<Rows, String> {
    std::panic::catch_unwind(|| read(body, max_rows))
        .unwrap_or_else(|_| Err("body: a malformed Arrow IPC stream (its buffers do not fit the body)".into()))
}

/// The stream's batches, column by column: each column whole, as the
/// model's matrix takes it.
fn read(body: &[u8], max_rows: usize) -> Result<Rows, String> {
    let reader = StreamReader::try_new(body, None).map_err(|e| format!("body: not an Arrow IPC stream: {e}"))?;
    let mut columns: Vec<Column> = Vec::new();
    let mut rows = 0;
    for (number, batch) in reader.enumerate() {
        let batch = batch.map_err(|e| format!("body: Arrow record batch {number}: {e}"))?;
        if rows + batch.num_rows() > max_rows {
            return Err(format!("body: more than {max_rows} rows; send fewer rows per request"));
        }
        rows += batch.num_rows();
        let schema = batch.schema();
        for (c, (field, array)) in schema.fields().iter().zip(batch.columns()).enumerate() {
            let more = values(field.name(), array)?;
            match columns.get_mut(c) {
                Some(column) => append(&mut column.values, more),
                None if number == 0 => columns.push(Column { name: Some(field.name().clone()), values: more }),
                None => {}
            }
        }
    }
    if rows == 0 {
        return Err("body: the Arrow stream holds no rows".into());
    }
    Ok(Rows::Columns(columns))
}

/// `more` after `into`: in their layout when both share it; numbers of
/// two layouts become f64, and numbers that meet cells become cells.
fn append(into: &mut ColumnValues, more: ColumnValues) {
    match (&mut *into, more) {
        (ColumnValues::Numbers(a), ColumnValues::Numbers(b)) => a.extend(b),
        (ColumnValues::Bytes(a), ColumnValues::Bytes(b)) => a.extend(b),
        (ColumnValues::Float32(a), ColumnValues::Float32(b)) => a.extend(b),
        (ColumnValues::Cells(a), more) => a.extend(more.into_cells()),
        (_, more @ ColumnValues::Cells(_)) => {
            let mut cells = std::mem::replace(into, ColumnValues::Cells(vec![])).into_cells();
            cells.extend(more.into_cells());
            *into = ColumnValues::Cells(cells);
        }
        (a, b) => {
            let mut numbers = a.numbers().unwrap_or_default().into_owned();
            numbers.extend_from_slice(&b.numbers().unwrap_or_default());
            *into = ColumnValues::Numbers(numbers);
        }
    }
}

/// A column's values: numbers as numbers (nulls as NaN), the rest as cells.
fn values(name: &str, array: &ArrayRef) -> Result<ColumnValues, String> {
    macro_rules! numbers {
        ($t:ty) => {
            ColumnValues::Numbers(array.as_primitive::<$t>().iter().map(|v| v.map_or(f64::NAN, |v| v as f64)).collect())
        };
    }
    Ok(match array.data_type() {
        DataType::Int8 => numbers!(Int8Type),
        DataType::Int16 => numbers!(Int16Type),
        DataType::Int32 => numbers!(Int32Type),
        DataType::Int64 => numbers!(Int64Type),
        // Bytes and f32 stay as they are: forwarded and put in the model's
        // matrix without widening.
        DataType::UInt8 if array.null_count() == 0 => {
            ColumnValues::Bytes(array.as_primitive::<UInt8Type>().values().to_vec())
        }
        DataType::UInt8 => numbers!(UInt8Type),
        DataType::UInt16 => numbers!(UInt16Type),
        DataType::UInt32 => numbers!(UInt32Type),
        DataType::UInt64 => numbers!(UInt64Type),
        DataType::Float16 => ColumnValues::Numbers(
            array.as_primitive::<Float16Type>().iter().map(|v| v.map_or(f64::NAN, f64::from)).collect(),
        ),
        DataType::Float32 => {
            ColumnValues::Float32(array.as_primitive::<Float32Type>().iter().map(|v| v.unwrap_or(f32::NAN)).collect())
        }
        DataType::Float64 => numbers!(Float64Type),
        _ => ColumnValues::Cells(cells(name, array)?),
    })
}

/// A column of booleans or strings as cells.
fn cells(name: &str, array: &ArrayRef) -> Result<Vec<Cell>, String> {
    Ok(match array.data_type() {
        DataType::Boolean => array.as_boolean().iter().map(|v| v.map_or(Cell::Missing, Cell::Bool)).collect(),
        DataType::Utf8 => texts(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => texts(array.as_string::<i64>().iter()),
        DataType::Utf8View => texts(array.as_string_view().iter()),
        DataType::Dictionary(_, value) if matches!(**value, DataType::Utf8 | DataType::LargeUtf8) => {
            // Decoded through the dictionary's keys, whatever their width.
            let dictionary = array.as_any_dictionary();
            let values = cells(name, dictionary.values())?;
            let keys = dictionary.normalized_keys();
            (0..array.len()).map(|i| if array.is_null(i) { Cell::Missing } else { values[keys[i]].clone() }).collect()
        }
        other => {
            return Err(format!(
                "body: column '{name}' is Arrow {other}; columns must be numbers, strings or booleans"
            ));
        }
    })
}

fn texts<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<Cell> {
    values.map(|v| v.map_or(Cell::Missing, |s| Cell::Text(s.to_owned()))).collect()
}

/// A prediction as an Arrow IPC stream of one record batch.
pub fn write(prediction: &Prediction) -> Result<Vec<u8>, String> {
    let mut fields = Vec::with_capacity(1 + prediction.classes.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    if prediction.classes.is_empty() {
        let values: Float64Array = prediction
            .predictions
            .iter()
            .map(|p| match p {
                Predicted::Value(v) => Some(*v),
                Predicted::Class(_) => None,
            })
            .collect();
        fields.push(Field::new("prediction", DataType::Float64, true));
        columns.push(Arc::new(values));
    } else {
        let classes: StringArray = prediction
            .predictions
            .iter()
            .map(|p| match p {
                Predicted::Class(c) => Some(c.as_str()),
                Predicted::Value(_) => None,
            })
            .collect();
        fields.push(Field::new("prediction", DataType::Utf8, true));
        columns.push(Arc::new(classes));
        for (c, class) in prediction.classes.iter().enumerate() {
            let column: Float32Array = prediction.probabilities.iter().map(|row| row.get(c).copied()).collect();
            fields.push(Field::new(class, DataType::Float32, true));
            columns.push(Arc::new(column));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| format!("answer: {e}"))?;
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &schema).map_err(|e| format!("answer: {e}"))?;
    writer.write(&batch).map_err(|e| format!("answer: {e}"))?;
    writer.finish().map_err(|e| format!("answer: {e}"))?;
    drop(writer);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use arrow_array::{BooleanArray, DictionaryArray, Int64Array, UInt8Array, types::Int8Type};
    use mass_protocol::ContentId;

    use super::*;

    fn stream(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut out = Vec::new();
        let mut writer = StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        out
    }

    #[test]
    fn columns_arrive_whole_and_named() {
        let colour: DictionaryArray<Int8Type> = vec![Some("red"), None, Some("blue")].into_iter().collect();
        let body = stream(vec![
            ("x", Arc::new(Float64Array::from(vec![Some(1.5), None, Some(f64::NAN)])) as ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("colour", Arc::new(colour)),
            ("flag", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None]))),
            ("name", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
        ]);
        let rows = parse(&body, 10).unwrap();
        assert_eq!(rows.len(), 3);
        let Rows::Columns(columns) = rows else { panic!("{rows:?}") };
        let names: Vec<_> = columns.iter().map(|c| c.name.clone().unwrap()).collect();
        assert_eq!(names, ["x", "n", "colour", "flag", "name"]);
        let ColumnValues::Numbers(x) = &columns[0].values else { panic!("{columns:?}") };
        assert!(x[0] == 1.5 && x[1].is_nan() && x[2].is_nan(), "nulls and NaN are missing values");
        assert_eq!(columns[1].values, ColumnValues::Numbers(vec![1.0, 2.0, 3.0]));
        let text = |s: &str| Cell::Text(s.into());
        assert_eq!(columns[2].values, ColumnValues::Cells(vec![text("red"), Cell::Missing, text("blue")]));
        assert_eq!(columns[3].values, ColumnValues::Cells(vec![Cell::Bool(true), Cell::Bool(false), Cell::Missing]));
        assert_eq!(columns[4].values, ColumnValues::Cells(vec![text("a"), text("b"), text("c")]));
    }

    #[test]
    fn batches_of_a_stream_join_column_by_column() {
        let first =
            RecordBatch::try_from_iter(vec![("x", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)]).unwrap();
        let second = RecordBatch::try_from_iter(vec![("x", Arc::new(Int64Array::from(vec![3])) as ArrayRef)]).unwrap();
        let mut body = Vec::new();
        let mut writer = StreamWriter::try_new(&mut body, &first.schema()).unwrap();
        writer.write(&first).unwrap();
        writer.write(&second).unwrap();
        writer.finish().unwrap();
        drop(writer);
        let Rows::Columns(columns) = parse(&body, 10).unwrap() else { panic!() };
        assert_eq!(columns[0].values, ColumnValues::Numbers(vec![1.0, 2.0, 3.0]));
        assert!(parse(&body, 2).unwrap_err().contains("more than 2 rows"));
    }

    /// UInt8 columns without nulls stay bytes and Float32 columns f32,
    /// across batches; a null in a byte column makes it f64 with NaN.
    #[test]
    fn bytes_and_f32_columns_keep_their_width() {
        let batch = |pixels: Vec<Option<u8>>, x: Vec<f32>| {
            RecordBatch::try_from_iter(vec![
                ("pixel", Arc::new(UInt8Array::from(pixels)) as ArrayRef),
                ("x", Arc::new(Float32Array::from(x))),
            ])
            .unwrap()
        };
        let body = |batches: &[RecordBatch]| {
            let mut body = Vec::new();
            let mut writer = StreamWriter::try_new(&mut body, &batches[0].schema()).unwrap();
            for b in batches {
                writer.write(b).unwrap();
            }
            writer.finish().unwrap();
            drop(writer);
            body
        };
        let whole = [batch(vec![Some(0), Some(255)], vec![0.5, -1.0]), batch(vec![Some(7)], vec![f32::NAN])];
        let Rows::Columns(columns) = parse(&body(&whole), 10).unwrap() else { panic!() };
        assert_eq!(columns[0].values, ColumnValues::Bytes(vec![0, 255, 7]));
        let ColumnValues::Float32(x) = &columns[1].values else { panic!("{columns:?}") };
        assert!(x[..2] == [0.5, -1.0] && x[2].is_nan());
        let holed = [batch(vec![None, Some(1)], vec![1.0, 1.0]), batch(vec![Some(2)], vec![2.0])];
        let Rows::Columns(columns) = parse(&body(&holed), 10).unwrap() else { panic!() };
        let ColumnValues::Numbers(pixels) = &columns[0].values else { panic!("{columns:?}") };
        assert!(pixels[0].is_nan() && pixels[1..] == [1.0, 2.0], "a null, then bytes: f64 with a missing value");
    }

    #[test]
    fn bad_bodies_are_refused_by_name() {
        assert!(parse(b"not arrow at all", 10).unwrap_err().contains("not an Arrow IPC stream"));
        let body = stream(vec![("x", Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as ArrayRef)]);
        assert!(parse(&body[..body.len() / 2], 10).unwrap_err().starts_with("body: "));
        assert!(parse(&body, 2).unwrap_err().contains("more than 2 rows"));
        let dates = arrow_array::Date32Array::from(vec![1, 2]);
        let body = stream(vec![("when", Arc::new(dates) as ArrayRef)]);
        let err = parse(&body, 10).unwrap_err();
        assert!(err.contains("column 'when' is Arrow Date32"), "{err}");
        let empty = stream(vec![("x", Arc::new(Float64Array::from(Vec::<f64>::new())) as ArrayRef)]);
        assert!(parse(&empty, 10).unwrap_err().contains("no rows"));
    }

    #[test]
    fn answers_read_back() {
        let prediction = Prediction {
            model: "m".into(),
            version: 1,
            manifest: ContentId::of(b"m"),
            predictions: vec![Predicted::Class("b".into()), Predicted::Class("a".into())],
            probabilities: vec![vec![0.25, 0.75], vec![0.5, 0.5]],
            classes: vec!["a".into(), "b".into()],
            served_by: "p".into(),
        };
        let body = write(&prediction).unwrap();
        let batches: Vec<RecordBatch> =
            StreamReader::try_new(&body[..], None).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        let names: Vec<&str> = batch.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["prediction", "a", "b"]);
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "b");
        assert_eq!(batch.column(2).as_primitive::<Float32Type>().value(0), 0.75);
        let regression = Prediction {
            predictions: vec![Predicted::Value(2.5)],
            probabilities: vec![],
            classes: vec![],
            ..prediction
        };
        let body = write(&regression).unwrap();
        let batch = StreamReader::try_new(&body[..], None).unwrap().next().unwrap().unwrap();
        assert_eq!(batch.column(0).as_primitive::<Float64Type>().value(0), 2.5);
    }
}
