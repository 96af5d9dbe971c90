//! JSON Lines ingest: one JSON object per line, column -> value.
//!
//! The lines become the very records the CSV reader yields (the columns in
//! the order of the first line's keys, each value as the text a CSV cell
//! would hold), and go through the CSV path from there: the same kind
//! inference, checks, statistics, splits, shards and error messages. Numbers
//! and strings are cells as written, `null` (or a string CSV reads as
//! missing, such as `""` or `"NA"`) is a missing value, and `true`/`false`
//! are two categories. A later line with a key the first line lacks, without
//! one of its keys, or with a nested array or object is refused, naming the
//! line and the key. Blank lines are skipped; plain or gzip, as CSV.

use std::{
    collections::HashMap,
    fmt,
    io::{BufRead, BufReader, Read},
};

use mass_protocol::{
    ContentId,
    dataset::{DatasetManifest, Shard},
};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{
    DataError, IngestOptions,
    ingest::{Records, check_names, ingest_records, read_source},
};

/// Reads JSON Lines (plain or gzip) and stores them as shards through
/// `store`, as [`super::ingest`] does a CSV. Returns the manifest.
pub fn ingest_jsonl(
    source: impl Read,
    options: &IngestOptions,
    store: impl FnMut(&Shard) -> Result<ContentId, DataError>,
) -> Result<DatasetManifest, DataError> {
    read_source(source, options, |decoded| {
        let mut lines = JsonLines::open(BufReader::with_capacity(256 * 1024, decoded))?;
        let names = lines.names.clone();
        check_names(&names)?;
        ingest_records(names, &mut lines, options, store)
    })
}

/// The records of a JSON Lines file.
struct JsonLines<R> {
    reader: R,
    /// Line number of the last line read (1-based).
    line: u64,
    buffer: Vec<u8>,
    /// Keys of the first line: the columns, in order.
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// The first line's cells, read to learn the columns and not yet handed out.
    first: Option<(Vec<String>, u64)>,
}

impl<R: BufRead> JsonLines<R> {
    /// Reads up to the first object, whose keys name the columns.
    fn open(reader: R) -> Result<Self, DataError> {
        let mut lines =
            Self { reader, line: 0, buffer: Vec::new(), names: Vec::new(), index: HashMap::new(), first: None };
        if !lines.next_line()? {
            return Err(DataError::Empty);
        }
        // A byte-order mark, as some editors write, is not part of the JSON.
        if lines.buffer.starts_with(b"\xef\xbb\xbf") {
            lines.buffer.drain(..3);
        }
        let object = parse(&lines.buffer, 1, lines.line)?;
        if object.0.is_empty() {
            return Err(DataError::Header(format!(
                "line {}: the first object has no keys; its keys name the columns",
                lines.line
            )));
        }
        let mut cells = Vec::with_capacity(object.0.len());
        for (key, value) in object.0 {
            if lines.index.contains_key(&key) {
                return Err(DataError::Header(format!("column '{key}' appears twice (line {})", lines.line)));
            }
            cells.push(cell(&value).map_err(|problem| cell_error(1, lines.line, &key, problem))?);
            lines.index.insert(key.clone(), lines.names.len());
            lines.names.push(key);
        }
        lines.first = Some((cells, lines.line));
        Ok(lines)
    }

    /// Reads the next line that is not blank into `buffer`; false at the end.
    fn next_line(&mut self) -> Result<bool, DataError> {
        loop {
            self.buffer.clear();
            let n = self.reader.read_until(b'\n', &mut self.buffer).map_err(|e| DataError::Read(e.to_string()))?;
            if n == 0 {
                return Ok(false);
            }
            self.line += 1;
            if !self.buffer.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
    }

    /// The cells of the line in `buffer`, data row `row`, in column order.
    fn cells(&self, row: u64) -> Result<Vec<String>, DataError> {
        let object = parse(&self.buffer, row, self.line)?;
        let mut cells: Vec<Option<String>> = vec![None; self.names.len()];
        for (key, value) in object.0 {
            let Some(&c) = self.index.get(&key) else {
                return Err(cell_error(
                    row,
                    self.line,
                    &key,
                    format!("the first line has no such key (its keys, the columns, are: {})", self.names.join(", ")),
                ));
            };
            if cells[c].is_some() {
                return Err(cell_error(row, self.line, &key, "the key appears twice on this line".into()));
            }
            cells[c] = Some(cell(&value).map_err(|problem| cell_error(row, self.line, &key, problem))?);
        }
        cells
            .into_iter()
            .zip(&self.names)
            .map(|(cell, name)| {
                cell.ok_or_else(|| {
                    cell_error(
                        row,
                        self.line,
                        name,
                        "the key is missing; every line needs every key of the first line (null for a missing value)"
                            .into(),
                    )
                })
            })
            .collect()
    }
}

impl<R: BufRead> Records for JsonLines<R> {
    fn read(&mut self, record: &mut csv::ByteRecord, row: u64) -> Result<bool, DataError> {
        let (cells, line) = match self.first.take() {
            Some(first) => first,
            None => {
                if !self.next_line()? {
                    return Ok(false);
                }
                (self.cells(row)?, self.line)
            }
        };
        record.clear();
        for cell in &cells {
            record.push_field(cell.as_bytes());
        }
        let mut position = csv::Position::new();
        position.set_line(line).set_record(row);
        record.set_position(Some(position));
        Ok(true)
    }
}

fn cell_error(row: u64, line: u64, key: &str, problem: String) -> DataError {
    DataError::Cell { row, line, column: key.to_owned(), problem }
}

/// A value as the text of a CSV cell.
fn cell(value: &Value) -> Result<String, String> {
    match value {
        Value::Null => Ok(String::new()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(_) => Err("a nested array; values must be numbers, strings, booleans or null".into()),
        Value::Object(_) => Err("a nested object; values must be numbers, strings, booleans or null".into()),
    }
}

/// One line's object, its keys in the order written (duplicates kept, so
/// that they can be refused).
struct Object(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of column -> value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, Value>()? {
                    pairs.push(pair);
                }
                Ok(Object(pairs))
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

/// Parses one line (data row `row`, line `line` of the file).
fn parse(bytes: &[u8], row: u64, line: u64) -> Result<Object, DataError> {
    serde_json::from_slice::<Object>(bytes).map_err(|e| {
        // serde_json says where in the text it stopped; the line is ours to name.
        let message = e.to_string();
        let message = message.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())).unwrap_or(&message);
        let problem = match e.classify() {
            serde_json::error::Category::Data => format!("not an object of column -> value: {message}"),
            serde_json::error::Category::Eof => format!("not valid JSON: the line ends inside a value ({message})"),
            _ => format!("not valid JSON: {message} at column {}", e.column()),
        };
        DataError::Row { row, line, problem }
    })
}

#[cfg(test)]
mod tests {

    use mass_protocol::dataset::ColumnKind;

    use super::*;
    use crate::datasets::ingest::tests::{options, store_into};

    fn run(text: &[u8]) -> Result<(DatasetManifest, Vec<Shard>), DataError> {
        let mut shards = Vec::new();
        let manifest = ingest_jsonl(text, &options(), store_into(&mut shards))?;
        Ok((manifest, shards))
    }

    #[test]
    fn a_good_file_gives_the_rows_of_the_same_csv() {
        let jsonl = br#"{"x": 1.5, "color": "red", "flag": true, "label": "yes"}
{"x": 2, "color": "blue", "flag": false, "label": "no"}

{"label": "yes", "flag": null, "color": "red", "x": null}
"#;
        let csv = b"x,color,flag,label\n1.5,red,true,yes\n2,blue,false,no\n,red,,yes\n";
        let (manifest, shards) = run(jsonl).unwrap();
        let mut csv_shards = Vec::new();
        let from_csv = crate::datasets::ingest(&csv[..], &options(), store_into(&mut csv_shards)).unwrap();
        let kinds: Vec<(String, ColumnKind)> =
            manifest.schema.columns.iter().map(|c| (c.name.clone(), c.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("x".to_owned(), ColumnKind::Numeric),
                ("color".to_owned(), ColumnKind::Categorical),
                ("flag".to_owned(), ColumnKind::Categorical),
                ("label".to_owned(), ColumnKind::Categorical),
            ]
        );
        assert_eq!(manifest.rows, 3);
        assert_eq!(manifest.stats[0].missing, 1);
        assert_eq!(manifest.stats[2].missing, 1);
        assert_eq!(manifest.stats[2].counts.get("true"), Some(&1));
        // (Compared as bytes and ids: a missing number is NaN, unequal to itself.)
        let bytes =
            |shards: &[Shard]| shards.iter().map(|s| mass_protocol::codec::encode(s).unwrap()).collect::<Vec<_>>();
        assert_eq!(bytes(&shards), bytes(&csv_shards), "JSON Lines and the same CSV give the same shards");
        assert_eq!(manifest.shards, from_csv.shards);
        assert_eq!(manifest.schema, from_csv.schema);
        assert_eq!(manifest.stats, from_csv.stats);
        assert_eq!(manifest, from_csv, "the same manifest, so the same dataset id");
        assert_eq!(run(jsonl).unwrap().0, manifest, "ingesting twice gives the same manifest");
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let (manifest, _) = run(b"\xef\xbb\xbf{\"a\": 1, \"label\": 0}\n{\"a\": 2, \"label\": 1}\n").unwrap();
        assert_eq!(manifest.schema.columns[0].name, "a");
        assert_eq!(manifest.rows, 2);
    }

    #[test]
    fn gzip_and_crlf_are_read() {
        use std::io::Write;
        let text = b"{\"a\": 1, \"label\": 0}\r\n{\"a\": 2, \"label\": 1}\r\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        let (manifest, _) = run(&gz.finish().unwrap()).unwrap();
        assert_eq!(manifest.rows, 2);
        assert_eq!(manifest.stats[0].sum, 3.0);
    }

    #[test]
    fn every_kind_of_bad_line_is_named_by_row_line_and_key() {
        let numbers: String = (0..12).map(|i| format!("{{\"a\": {i}, \"label\": {}}}\n", i % 2)).collect();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "the file is empty"),
            (b"\n  \n".to_vec(), "the file is empty"),
            (b"{}\n".to_vec(), "the first object has no keys"),
            (b"{\"a\": 1, \"a\": 2, \"label\": 0}\n".to_vec(), "column 'a' appears twice"),
            (b"{\"a\": 1, \"b\": 2}\n".to_vec(), "no column named 'label' for the label; columns are: a, b"),
            (b"{\"\": 1, \"label\": 0}\n".to_vec(), "a column has no name"),
            (b"[1, 0]\n".to_vec(), "row 1 (line 1): not an object of column -> value"),
            (b"{\"a\": 1, \"label\": 0}\n{\"a\": 2, \"label\": 1\n".to_vec(), "row 2 (line 2): not valid JSON"),
            (b"{\"a\": 1, \"label\": 0}\n{\"a\": 2, label: 1}\n".to_vec(), "row 2 (line 2): not valid JSON"),
            (
                b"{\"a\": 1, \"label\": 0}\n\n{\"a\": 2, \"label\": 1, \"b\": 3}\n".to_vec(),
                "row 2 (line 3), column 'b': the first line has no such key (its keys, the columns, are: a, label)",
            ),
            (b"{\"a\": 1, \"label\": 0}\n{\"label\": 1}\n".to_vec(), "row 2 (line 2), column 'a': the key is missing"),
            (
                b"{\"a\": 1, \"label\": 0}\n{\"a\": 2, \"a\": 3, \"label\": 1}\n".to_vec(),
                "row 2 (line 2), column 'a': the key appears twice",
            ),
            (
                b"{\"a\": 1, \"label\": 0}\n{\"a\": [2], \"label\": 1}\n".to_vec(),
                "row 2 (line 2), column 'a': a nested array",
            ),
            (b"{\"a\": {\"b\": 1}, \"label\": 0}\n".to_vec(), "row 1 (line 1), column 'a': a nested object"),
            (
                b"{\"a\": 1, \"label\": 0}\n{\"a\": 2, \"label\": null}\n".to_vec(),
                "row 2 (line 2): the label 'label' is missing",
            ),
            (
                format!("{numbers}{{\"a\": \"abc\", \"label\": 1}}\n").into_bytes(),
                "row 13 (line 13), column 'a': 'abc' is not a number",
            ),
            (b"{\"a\": 1, \"label\": 0}\n\xff\n".to_vec(), "row 2 (line 2): not valid JSON"),
        ];
        for (text, expected) in cases {
            let err = run(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{:?}: '{err}' lacks '{expected}'", String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn given_kinds_and_text_columns_work_as_in_csv() {
        let mut opts = options();
        opts.kinds.insert("code".into(), ColumnKind::Categorical);
        let text = b"{\"code\": 7, \"note\": \"\", \"label\": 1}\n{\"code\": 8, \"note\": \"ok\", \"label\": 0}\n";
        let manifest = ingest_jsonl(&text[..], &opts, |_| Ok(ContentId::of(b""))).unwrap();
        assert_eq!(manifest.schema.columns[0].kind, ColumnKind::Categorical);
        assert_eq!(manifest.stats[0].counts.get("7"), Some(&1));
        assert_eq!(manifest.stats[1].missing, 1);
        opts.kinds.insert("nope".into(), ColumnKind::Text);
        let err = ingest_jsonl(&text[..], &opts, |_| Ok(ContentId::of(b""))).unwrap_err().to_string();
        assert!(err.contains("a type was given for 'nope', which is not a column"), "{err}");
    }
}
