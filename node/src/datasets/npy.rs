//! NumPy `.npy` arrays: a labels vector and a features matrix.
//!
//! The body is the labels file followed by the features file (both `.npy`,
//! C order). Labels are small and read first; feature rows then stream into
//! shards like CSV rows. Columns are named `f0..fN-1` and the label column
//! takes the name the user gave.

use std::io::Read;

use mass_protocol::serving::{ColumnValues, Matrix};

use mass_protocol::{
    ContentId,
    dataset::{Column, ColumnKind, ColumnStats, DatasetManifest, Schema, Shard, ShardColumn, ShardInfo},
};

use super::{DataError, IngestOptions};

pub use mass_protocol::npy::{MAGIC, write_matrix};
/// Rows a dataset may have.
pub const MAX_ROWS: usize = 1 << 32;
/// Feature columns an array may have (a CSV has the same bound).
pub const MAX_COLUMNS: usize = 1 << 16;
/// Labels are read in pieces of this many bytes, so memory follows the data
/// that actually arrives, never the sizes a header claims.
const LABEL_PIECE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F4,
    F8,
    I1,
    U1,
    I2,
    U2,
    I4,
    U4,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn parse(descr: &str) -> Option<Self> {
        // Checked: the descr is peer text, and a first character of more
        // than one byte made `split_at` panic (found by fuzzing).
        let (order, code) = descr.split_at_checked(1)?;
        if order == ">" && !matches!(code, "i1" | "u1" | "b1") {
            return None; // big-endian data is rare; refuse rather than misread
        }
        Some(match code {
            "f4" => Self::F4,
            "f8" => Self::F8,
            "i1" => Self::I1,
            "u1" => Self::U1,
            "i2" => Self::I2,
            "u2" => Self::U2,
            "i4" => Self::I4,
            "u4" => Self::U4,
            "i8" => Self::I8,
            "u8" => Self::U8,
            "b1" => Self::Bool,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I1 | Self::U1 | Self::Bool => 1,
            Self::I2 | Self::U2 => 2,
            Self::F4 | Self::I4 | Self::U4 => 4,
            Self::F8 | Self::I8 | Self::U8 => 8,
        }
    }

    fn read(self, b: &[u8]) -> f64 {
        match self {
            Self::F4 => f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            Self::F8 => f64::from_le_bytes(b.try_into().expect("8 bytes")),
            Self::I1 => f64::from(b[0] as i8),
            Self::U1 | Self::Bool => f64::from(b[0]),
            Self::I2 => f64::from(i16::from_le_bytes(b.try_into().expect("2 bytes"))),
            Self::U2 => f64::from(u16::from_le_bytes(b.try_into().expect("2 bytes"))),
            Self::I4 => f64::from(i32::from_le_bytes(b.try_into().expect("4 bytes"))),
            Self::U4 => f64::from(u32::from_le_bytes(b.try_into().expect("4 bytes"))),
            Self::I8 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64,
            Self::U8 => u64::from_le_bytes(b.try_into().expect("8 bytes")) as f64,
        }
    }
}

struct Header {
    dtype: Dtype,
    shape: Vec<usize>,
}

fn bad(what: &str, problem: impl Into<String>) -> DataError {
    DataError::Header(format!("{what} .npy: {}", problem.into()))
}

fn read_header(reader: &mut impl Read, what: &str) -> Result<Header, DataError> {
    let mut start = [0u8; 8];
    reader.read_exact(&mut start).map_err(|_| bad(what, "too short to be a .npy file"))?;
    if &start[..6] != MAGIC {
        return Err(bad(what, "missing the \\x93NUMPY magic"));
    }
    let len = if start[6] == 1 {
        let mut b = [0u8; 2];
        reader.read_exact(&mut b).map_err(|_| bad(what, "truncated header"))?;
        usize::from(u16::from_le_bytes(b))
    } else {
        let mut b = [0u8; 4];
        reader.read_exact(&mut b).map_err(|_| bad(what, "truncated header"))?;
        u32::from_le_bytes(b) as usize
    };
    if len > 1 << 16 {
        return Err(bad(what, format!("header of {len} bytes is too long")));
    }
    let mut text = vec![0u8; len];
    reader.read_exact(&mut text).map_err(|_| bad(what, "truncated header"))?;
    let text = String::from_utf8(text).map_err(|_| bad(what, "header is not text"))?;
    let field = |key: &str| -> Option<String> {
        let at = text.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
        Some(rest[..end].trim().trim_matches('\'').to_owned())
    };
    let descr = field("descr").ok_or_else(|| bad(what, "header has no 'descr'"))?;
    let dtype =
        Dtype::parse(&descr).ok_or_else(|| bad(what, format!("dtype '{descr}' is not a little-endian number type")))?;
    if field("fortran_order").as_deref() == Some("True") {
        return Err(bad(what, "Fortran-ordered arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape_text = field("shape").ok_or_else(|| bad(what, "header has no 'shape'"))?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(what, format!("shape {shape_text} is not a list of sizes"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header { dtype, shape })
}

/// Reads `rows` labels, piece by piece: a header that claims more rows than
/// the body holds fails when the data ends, having used only what came.
fn read_labels(reader: &mut impl Read, dtype: Dtype, rows: usize) -> Result<Vec<f64>, DataError> {
    let size = dtype.size();
    let total = rows.checked_mul(size).ok_or_else(|| bad("labels", format!("{rows} rows do not fit in memory")))?;
    let mut labels = Vec::new();
    let mut piece = vec![0u8; LABEL_PIECE.min(total).max(size)];
    let mut left = total;
    while left > 0 {
        let take = left.min(piece.len() - piece.len() % size);
        reader
            .read_exact(&mut piece[..take])
            .map_err(|_| bad("labels", format!("data ends after {} of {rows} labels", labels.len())))?;
        labels.extend(piece[..take].chunks(size).map(|b| dtype.read(b)));
        left -= take;
    }
    Ok(labels)
}

/// Ingests labels then features (`.npy` each) as one dataset.
pub fn ingest_npy(
    mut reader: impl Read,
    options: &IngestOptions,
    mut store: impl FnMut(&Shard) -> Result<ContentId, DataError>,
) -> Result<DatasetManifest, DataError> {
    options.validate()?;
    let labels_header = read_header(&mut reader, "labels")?;
    if labels_header.shape.len() != 1 {
        return Err(bad("labels", format!("must be one-dimensional, not shape {:?}", labels_header.shape)));
    }
    let rows = labels_header.shape[0];
    if rows > MAX_ROWS {
        return Err(bad("labels", format!("claims {rows} rows; at most {MAX_ROWS}")));
    }
    let labels = read_labels(&mut reader, labels_header.dtype, rows)?;
    let features = read_header(&mut reader, "features")?;
    let width = match features.shape.as_slice() {
        [n, width] if *n == rows => *width,
        [n, _] => return Err(bad("features", format!("has {n} rows but the labels have {rows}"))),
        other => return Err(bad("features", format!("must be two-dimensional, not shape {other:?}"))),
    };
    if width > MAX_COLUMNS {
        return Err(bad("features", format!("claims {width} columns; at most {MAX_COLUMNS}")));
    }
    if rows == 0 {
        return Err(DataError::HeaderOnly);
    }
    let mut columns: Vec<Column> =
        (0..width).map(|i| Column { name: format!("f{i}"), kind: ColumnKind::Numeric }).collect();
    if columns.iter().any(|c| c.name == options.label) {
        return Err(DataError::Options(format!("label name '{}' collides with a feature column", options.label)));
    }
    columns.push(Column { name: options.label.clone(), kind: ColumnKind::Numeric });
    let schema = Schema { columns, label: width };

    let mut stats = vec![ColumnStats::default(); width + 1];
    let mut shards = Vec::new();
    let mut split_rows = [0u64; 3];
    let mut row_bytes = vec![0u8; width * features.dtype.size()];
    let mut start = 0;
    while start < rows {
        let end = (start + options.shard_rows).min(rows);
        // No capacity reserved from sizes: vectors grow with rows actually read.
        let mut data: Vec<Vec<f64>> = vec![Vec::new(); width + 1];
        let mut splits = Vec::with_capacity(end - start);
        for (offset, &label) in labels[start..end].iter().enumerate() {
            let row = start + offset;
            reader
                .read_exact(&mut row_bytes)
                .map_err(|_| bad("features", format!("data ends at row {} of {rows}", row + 1)))?;
            for (c, bytes) in row_bytes.chunks(features.dtype.size()).enumerate() {
                let value = features.dtype.read(bytes);
                record(&mut stats[c], value, false);
                data[c].push(value);
            }
            if !label.is_finite() {
                return Err(DataError::Row {
                    row: row as u64 + 1,
                    line: 0,
                    problem: format!("label {label} is not a finite number"),
                });
            }
            record(&mut stats[width], label, true);
            data[width].push(label);
            let split = options.split.of(row as u64);
            split_rows[split as usize] += 1;
            splits.push(split);
        }
        let shard =
            Shard { first_row: start as u64, columns: data.into_iter().map(ShardColumn::numbers).collect(), splits };
        shards.push(ShardInfo { id: store(&shard)?, first_row: start as u64, rows: (end - start) as u64 });
        start = end;
    }
    let mut trailing = [0u8; 1];
    if reader.read(&mut trailing).map_err(|e| DataError::Read(e.to_string()))? != 0 {
        return Err(bad("features", "has more data than its shape says"));
    }
    Ok(DatasetManifest {
        name: options.name.clone(),
        schema,
        rows: rows as u64,
        stats,
        split: options.split.spec(),
        split_rows,
        content: DatasetManifest::content_of(&shards),
        shards,
    })
}

fn record(stat: &mut ColumnStats, value: f64, label: bool) {
    if value.is_nan() {
        stat.missing += 1;
        return;
    }
    stat.present += 1;
    super::stats::add_number(stat, value, label);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::SplitChoice;

    /// Issue 12: a header claiming 2^40 rows once allocated 8 TiB and
    /// aborted the node. Now it is refused by name, with flat memory.
    #[test]
    fn headers_claiming_huge_sizes_are_refused_without_allocating() {
        let huge_rows = npy("<f8", &format!("({},)", 1u64 << 40), &[0u8; 16]);
        let err = ingest_npy(&huge_rows[..], &options(), |_| Ok(ContentId::of(b"x"))).unwrap_err().to_string();
        assert!(err.contains("claims 1099511627776 rows"), "{err}");
        let many = npy("<f8", &format!("({},)", 1u64 << 31), &[0u8; 16]);
        let err = ingest_npy(&many[..], &options(), |_| Ok(ContentId::of(b"x"))).unwrap_err().to_string();
        assert!(err.contains("data ends after") && err.contains("of 2147483648 labels"), "{err}");
        let mut wide = npy("<f8", "(2,)", &[0u8; 16]);
        wide.extend(npy("<f8", &format!("(2, {})", 1u64 << 40), &[0u8; 16]));
        let err = ingest_npy(&wide[..], &options(), |_| Ok(ContentId::of(b"x"))).unwrap_err().to_string();
        assert!(err.contains("columns; at most"), "{err}");
    }

    /// Fuzz regression: a dtype whose first character is more than one
    /// byte panicked the header parser (`split_at` inside a character).
    #[test]
    fn a_dtype_starting_with_a_wide_character_is_refused() {
        let file = npy("é8", "(2,)", &[0u8; 16]);
        let err = ingest_npy(&file[..], &options(), |_| Ok(ContentId::of(b"x"))).unwrap_err().to_string();
        assert!(err.contains("dtype 'é8' is not"), "{err}");
    }

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    fn options() -> IngestOptions {
        IngestOptions {
            name: "n".into(),
            label: "label".into(),
            kinds: Default::default(),
            shard_rows: 2,
            split: SplitChoice::Seeded { seed: 1, validation: 0.0, test: 0.0 },
            threads: 1,
        }
    }

    #[test]
    fn labels_then_features_become_a_dataset() {
        let labels = npy("<i8", "(3,)", &[1i64, 0, 1].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
        let features = npy(
            "<f4",
            "(3, 2)",
            &[0.5f32, 1.0, 2.0, 3.0, 4.0, 5.5].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
        );
        let body = [labels, features].concat();
        let mut shards = Vec::new();
        let manifest = ingest_npy(&body[..], &options(), |s| {
            shards.push(s.clone());
            Ok(ContentId::of(&mass_protocol::codec::encode(s).unwrap()))
        })
        .unwrap();
        assert_eq!(manifest.rows, 3);
        assert_eq!(manifest.schema.columns.len(), 3);
        assert_eq!(manifest.label_histogram().get("1"), Some(&2));
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[1].columns[1].as_numbers().unwrap().to_vec(), vec![5.5]);
    }

    #[test]
    fn mismatched_or_malformed_arrays_are_named() {
        let labels = npy("<i8", "(2,)", &[0u8; 16]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not numpy".to_vec(), "labels .npy: missing the \\x93NUMPY magic"),
            (
                [labels.clone(), npy("<f4", "(3, 2)", &[0u8; 24])].concat(),
                "features .npy: has 3 rows but the labels have 2",
            ),
            ([labels.clone(), npy("<f4", "(2, 2)", &[0u8; 12])].concat(), "data ends at row 2 of 2"),
            ([labels.clone(), npy("<c16", "(2, 2)", &[0u8; 64])].concat(), "dtype '<c16'"),
            ([labels.clone(), npy("<f4", "(2, 2)", &[0u8; 20])].concat(), "more data than its shape"),
            ([labels, npy("<f4", "(2,)", &[0u8; 8])].concat(), "must be two-dimensional"),
        ];
        for (body, expected) in cases {
            let err = ingest_npy(&body[..], &options(), |_| Ok(ContentId::of(b""))).unwrap_err().to_string();
            assert!(err.contains(expected), "'{err}' lacks '{expected}'");
        }
    }
}

/// A 2-D numeric array sent whole (a prediction body), row-major as it
/// came, NaN kept as NaN. A 1-D array is one row. The body must hold
/// exactly what the header says, checked before anything is allocated for it.
pub fn read_matrix(bytes: &[u8], max_rows: usize) -> Result<Matrix, DataError> {
    let mut reader = bytes;
    let header = read_header(&mut reader, "rows")?;
    let (rows, columns) = match header.shape[..] {
        [columns] => (1, columns),
        [rows, columns] => (rows, columns),
        _ => return Err(bad("rows", format!("shape {:?}: expected (rows, columns)", header.shape))),
    };
    if rows > max_rows {
        return Err(bad("rows", format!("{rows} rows in one request; at most {max_rows}")));
    }
    if columns == 0 || columns > MAX_COLUMNS {
        return Err(bad("rows", format!("{columns} columns; expected 1 to {MAX_COLUMNS}")));
    }
    let size = header.dtype.size();
    let expected = rows.checked_mul(columns).and_then(|cells| cells.checked_mul(size));
    if expected != Some(reader.len()) {
        return Err(bad(
            "rows",
            format!("the header says {rows} x {columns} values of {size} bytes, the body holds {} bytes", reader.len()),
        ));
    }
    Ok(Matrix { columns, values: values_of(reader, header.dtype) })
}

/// The values of a row-major body, one loop per dtype (a match per value
/// cost more than the rest of a 1,000-row prediction). Bytes and f32 stay
/// as they are (a model's matrix takes them without widening); the rest
/// become f64.
fn values_of(body: &[u8], dtype: Dtype) -> ColumnValues {
    fn each<const N: usize, T>(body: &[u8], read: impl Fn([u8; N]) -> T) -> Vec<T> {
        body.chunks_exact(N).map(|b| read(b.try_into().expect("chunks of N bytes"))).collect()
    }
    let wide = |values: Vec<f64>| ColumnValues::Numbers(values);
    match dtype {
        Dtype::U1 | Dtype::Bool => ColumnValues::Bytes(body.to_vec()),
        Dtype::F4 => ColumnValues::Float32(each(body, f32::from_le_bytes)),
        Dtype::F8 => wide(each(body, f64::from_le_bytes)),
        Dtype::I1 => wide(each(body, |b: [u8; 1]| f64::from(b[0] as i8))),
        Dtype::I2 => wide(each(body, |b| f64::from(i16::from_le_bytes(b)))),
        Dtype::U2 => wide(each(body, |b| f64::from(u16::from_le_bytes(b)))),
        Dtype::I4 => wide(each(body, |b| f64::from(i32::from_le_bytes(b)))),
        Dtype::U4 => wide(each(body, |b| f64::from(u32::from_le_bytes(b)))),
        Dtype::I8 => wide(each(body, |b| i64::from_le_bytes(b) as f64)),
        Dtype::U8 => wide(each(body, |b| u64::from_le_bytes(b) as f64)),
    }
}

#[cfg(test)]
mod matrix_tests {
    use super::*;

    /// The body's columns, as the model's shard reads them.
    fn read_columns(bytes: &[u8], max_rows: usize) -> Result<Vec<ColumnValues>, DataError> {
        read_matrix(bytes, max_rows).map(|m| m.to_columns().expect("numbers"))
    }

    #[test]
    fn a_matrix_written_reads_back_and_one_dimension_is_one_row() {
        let values = [1.0, 2.5, f64::NAN, -4.0, 0.0, 6.0];
        let numbers = |columns: Vec<ColumnValues>| -> Vec<Vec<f64>> {
            columns.iter().map(|c| c.numbers().unwrap().into_owned()).collect()
        };
        let columns = read_columns(&write_matrix(&values, &[2, 3], true), 10).unwrap();
        assert!(matches!(columns[0], ColumnValues::Numbers(_)));
        let columns = numbers(columns);
        assert_eq!(columns.len(), 3);
        assert_eq!(columns[0], [1.0, -4.0]);
        assert_eq!(columns[1], [2.5, 0.0]);
        assert!(columns[2][0].is_nan() && columns[2][1] == 6.0);
        let narrow = read_columns(&write_matrix(&values, &[2, 3], false), 10).unwrap();
        assert_eq!(narrow[1], ColumnValues::Float32(vec![2.5, 0.0]), "f4 stays f32");
        let one = read_columns(&write_matrix(&[1.0, 2.0], &[2], false), 10).unwrap();
        assert_eq!(numbers(one), vec![vec![1.0], vec![2.0]], "a vector is one row");
        // Header length keeps the data aligned to 64 bytes, as numpy writes it.
        let file = write_matrix(&values, &[2, 3], true);
        assert_eq!((file.len() - 48) % 64, 0);
    }

    /// What the SDK sends: the narrowest dtype that gives every value back.
    #[test]
    fn a_matrix_written_exactly_takes_the_narrowest_dtype_and_reads_back() {
        let exact = mass_protocol::npy::write_matrix_exact;
        let read = |values: &[f64]| read_columns(&exact(values, &[2, 2]), 2).unwrap();
        assert_eq!(read(&[0.0, 255.0, 3.0, 4.0]), [ColumnValues::Bytes(vec![0, 3]), ColumnValues::Bytes(vec![255, 4])]);
        assert!(matches!(read(&[0.5, f64::NAN, 3.0, 4.0])[1], ColumnValues::Float32(_)));
        let wide = read(&[0.1, -0.0, 1e300, 4.0]);
        assert_eq!(wide[0], ColumnValues::Numbers(vec![0.1, 1e300]));
        assert_eq!(wide[1].numbers().unwrap()[0].to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn every_malformed_body_is_refused_with_its_reason() {
        let good = write_matrix(&[1.0, 2.0, 3.0, 4.0], &[2, 2], false);
        let err = |bytes: &[u8]| read_columns(bytes, 3).unwrap_err().to_string();
        assert!(err(&good[..good.len() - 1]).contains("the body holds 15 bytes"), "{}", err(&good[..good.len() - 1]));
        assert!(err(b"{\"rows\": []}").contains("magic"));
        assert!(err(&good[..5]).contains("too short"));
        let three = write_matrix(&[0.0; 8], &[4, 2], false);
        assert!(err(&three).contains("4 rows in one request; at most 3"));
        let raw = |descr: &str, shape: &str, body: &[u8]| {
            let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(body);
            out
        };
        assert!(raw("<f4", "(2, 2)", &[0; 16]).len() > 16 && read_columns(&raw("<f4", "(2, 2)", &[0; 16]), 3).is_ok());
        let bytes = read_columns(&raw("|u1", "(2, 2)", &[1, 2, 3, 4]), 3).unwrap();
        assert_eq!(bytes, [ColumnValues::Bytes(vec![1, 3]), ColumnValues::Bytes(vec![2, 4])], "u1 stays bytes");
        assert!(err(&raw("<f4", "(1, 2, 2)", &[0; 16])).contains("expected (rows, columns)"));
        assert!(err(&raw("<f4", "(2, 99999999999999)", &[0; 16])).contains("columns"));
        assert!(err(&raw("<f4", "(3, 1099511627776)", &[0; 16])).contains("columns"));
        assert!(err(&raw("<U4", "(2, 2)", &[0; 16])).contains("dtype"));
        assert!(err(&raw("<f8", "(2, 2)", &[0; 16])).contains("holds 16 bytes"), "8-byte values: 32 expected");
    }
}
