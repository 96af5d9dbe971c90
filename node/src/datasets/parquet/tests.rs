use std::sync::Arc;

use mass_protocol::dataset::ColumnKind;
use parquet::{
    basic::{Compression, GzipLevel, ZstdLevel},
    data_type::{
        BoolType, ByteArray, ByteArrayType, DataType, DoubleType, FixedLenByteArrayType, Int32Type, Int64Type,
    },
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::parser::parse_message_type,
};

use super::*;
use crate::datasets::ingest::tests::{options, store_into};

/// One column's values, `None` a null.
enum Values {
    Bool(Vec<Option<bool>>),
    Int32(Vec<Option<i32>>),
    Int64(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    Bytes(Vec<Option<&'static [u8]>>),
    Fixed(Vec<Option<Vec<u8>>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::Int32(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Double(v) => v.len(),
            Values::Bytes(v) => v.len(),
            Values::Fixed(v) => v.len(),
        }
    }
}

/// A Parquet file of `columns` under `schema` (a message type), written by
/// the parquet crate's own writer, `group_rows` rows per row group.
fn parquet_file(schema: &str, columns: &[Values], compression: Compression, group_rows: usize) -> Vec<u8> {
    let schema = Arc::new(parse_message_type(schema).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(compression).build());
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, props).unwrap();
    let rows = columns.first().map_or(0, Values::len);
    for start in (0..rows).step_by(group_rows) {
        let range = start..(start + group_rows).min(rows);
        let mut group = writer.next_row_group().unwrap();
        for column in columns {
            let mut out = group.next_column().unwrap().unwrap();
            match column {
                Values::Bool(v) => put::<BoolType, _>(&mut out, &v[range.clone()], |&b| b),
                Values::Int32(v) => put::<Int32Type, _>(&mut out, &v[range.clone()], |&i| i),
                Values::Int64(v) => put::<Int64Type, _>(&mut out, &v[range.clone()], |&i| i),
                Values::Double(v) => put::<DoubleType, _>(&mut out, &v[range.clone()], |&x| x),
                Values::Bytes(v) => put::<ByteArrayType, _>(&mut out, &v[range.clone()], |&b| ByteArray::from(b)),
                Values::Fixed(v) => {
                    put::<FixedLenByteArrayType, _>(&mut out, &v[range.clone()], |b| ByteArray::from(b.clone()).into())
                }
            }
            out.close().unwrap();
        }
        group.close().unwrap();
    }
    writer.into_inner().unwrap()
}

fn put<T: DataType, V>(
    out: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    values: &[Option<V>],
    value: impl Fn(&V) -> T::T,
) {
    let writer = out.typed::<T>();
    let present: Vec<T::T> = values.iter().flatten().map(&value).collect();
    let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
    let optional = writer.get_descriptor().max_def_level() > 0;
    writer.write_batch(&present, optional.then_some(&levels[..]), None).unwrap();
}

fn run(file: &[u8]) -> Result<(DatasetManifest, Vec<Shard>), DataError> {
    let mut shards = Vec::new();
    let manifest = ingest_parquet_bytes(bytes::Bytes::copy_from_slice(file), &options(), store_into(&mut shards))?;
    Ok((manifest, shards))
}

fn csv_run(csv: &[u8]) -> (DatasetManifest, Vec<Shard>) {
    let mut shards = Vec::new();
    let manifest = crate::datasets::ingest(csv, &options(), store_into(&mut shards)).unwrap();
    (manifest, shards)
}

/// Shards as bytes: a missing number is NaN, unequal to itself.
fn encoded(shards: &[Shard]) -> Vec<Vec<u8>> {
    shards.iter().map(|s| mass_protocol::codec::encode(s).unwrap()).collect()
}

const TABLE: &str = "message t {
    OPTIONAL INT64 id;
    OPTIONAL DOUBLE x;
    OPTIONAL BYTE_ARRAY color (UTF8);
    OPTIONAL BOOLEAN flag;
    REQUIRED INT32 small;
    OPTIONAL BYTE_ARRAY label (STRING);
}";

/// A table of ints, floats, strings, booleans and nulls, and the CSV of it.
fn table(rows: usize) -> (Vec<Values>, String) {
    let colors: [&'static [u8]; 3] = [b"red", b"blue", b"green"];
    let id: Vec<Option<i64>> = (0..rows).map(|i| (i % 7 != 3).then_some(i as i64 * 1_000_003)).collect();
    let x: Vec<Option<f64>> =
        (0..rows).map(|i| (i % 5 != 1).then(|| (i as f64 * 0.37).sin() * 10f64.powi(i as i32 % 9 - 4))).collect();
    let color: Vec<Option<&'static [u8]>> = (0..rows).map(|i| (i % 4 != 2).then_some(colors[i % 3])).collect();
    let flag: Vec<Option<bool>> = (0..rows).map(|i| (i % 6 != 5).then_some(i % 2 == 0)).collect();
    let small: Vec<Option<i32>> = (0..rows).map(|i| Some(i as i32 - 50)).collect();
    let label: Vec<Option<&'static [u8]>> = (0..rows).map(|i| Some([b"yes" as &[u8], b"no"][i % 2])).collect();
    // The CSV as Python's csv module writes the same rows: floats as repr.
    let mut csv = String::from("id,x,color,flag,small,label\n");
    for i in 0..rows {
        let cell = |present: bool, text: String| if present { text } else { String::new() };
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            cell(id[i].is_some(), id[i].unwrap_or(0).to_string()),
            cell(x[i].is_some(), format!("{:?}", x[i].unwrap_or(0.0))),
            cell(color[i].is_some(), String::from_utf8_lossy(color[i].unwrap_or(b"")).into_owned()),
            cell(flag[i].is_some(), if flag[i] == Some(true) { "true".into() } else { "false".into() }),
            small[i].unwrap(),
            String::from_utf8_lossy(label[i].unwrap()),
        ));
    }
    let columns = vec![
        Values::Int64(id),
        Values::Double(x),
        Values::Bytes(color),
        Values::Bool(flag),
        Values::Int32(small),
        Values::Bytes(label),
    ];
    (columns, csv)
}

#[test]
fn a_table_gives_the_shards_of_the_same_csv_whatever_the_codec() {
    let (columns, csv) = table(40);
    let (from_csv, csv_shards) = csv_run(csv.as_bytes());
    let kinds: Vec<ColumnKind> = from_csv.schema.columns.iter().map(|c| c.kind).collect();
    use ColumnKind::*;
    assert_eq!(kinds, [Numeric, Numeric, Categorical, Categorical, Numeric, Categorical]);
    for compression in [
        Compression::UNCOMPRESSED,
        Compression::SNAPPY,
        Compression::GZIP(GzipLevel::default()),
        Compression::ZSTD(ZstdLevel::default()),
    ] {
        let file = parquet_file(TABLE, &columns, compression, 1000);
        let (manifest, shards) = run(&file).unwrap();
        assert_eq!(encoded(&shards), encoded(&csv_shards), "{compression:?}: the CSV's shards");
        assert_eq!(manifest.shards, from_csv.shards, "{compression:?}");
        assert_eq!(manifest.schema, from_csv.schema);
        assert_eq!(manifest.stats, from_csv.stats);
        assert_eq!(manifest.split_rows, from_csv.split_rows);
        assert_eq!(manifest, from_csv, "{compression:?}: the same manifest, so the same dataset id");
    }
}

#[test]
fn row_groups_and_batches_do_not_change_the_rows() {
    // Groups of 7 rows and of more than a batch, some ending mid-batch.
    let (columns, csv) = table(2 * BATCH + 300);
    let (from_csv, csv_shards) = csv_run(csv.as_bytes());
    for group_rows in [7, BATCH + 13, 5000] {
        let file = parquet_file(TABLE, &columns, Compression::SNAPPY, group_rows);
        let (manifest, shards) = run(&file).unwrap();
        assert_eq!(manifest.rows, 2 * BATCH as u64 + 300);
        assert!(encoded(&shards) == encoded(&csv_shards), "{group_rows} rows per group");
        assert_eq!(manifest.shards, from_csv.shards);
    }
}

#[test]
fn an_upload_is_spooled_and_hashed_as_sent() {
    let (columns, _) = table(10);
    let file = parquet_file(TABLE, &columns, Compression::SNAPPY, 4);
    let dir = tempfile::tempdir().unwrap();
    let mut shards = Vec::new();
    let manifest = ingest_parquet(&file[..], dir.path(), &options(), store_into(&mut shards)).unwrap();
    assert_eq!(manifest, run(&file).unwrap().0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the spooled file is gone");
    let err = ingest_parquet(&file[..], &dir.path().join("nope"), &options(), |_| Ok(ContentId::of(b""))).unwrap_err();
    assert!(matches!(err, DataError::Store(_)) && err.to_string().contains("cannot spool the upload"), "{err}");
}

#[test]
fn decimals_dates_and_timestamps_are_written_as_text() {
    let schema = "message t {
        OPTIONAL INT32 price (DECIMAL(9, 2));
        OPTIONAL FIXED_LEN_BYTE_ARRAY (4) big (DECIMAL(9, 3));
        OPTIONAL INT32 day (DATE);
        OPTIONAL INT64 at (TIMESTAMP(MILLIS, true));
        OPTIONAL INT32 count (INTEGER(32, false));
        REQUIRED INT32 label;
    }";
    let columns = vec![
        Values::Int32(vec![Some(12345), Some(-5), None]),
        Values::Fixed(vec![Some(vec![0xff, 0xff, 0xff, 0x85]), Some(vec![0, 0, 0x30, 0x39]), None]),
        Values::Int32(vec![Some(19_723), None, Some(0)]),
        Values::Int64(vec![Some(1_704_067_200_123), Some(0), None]),
        Values::Int32(vec![Some(-1), Some(7), None]),
        Values::Int32(vec![Some(0), Some(1), Some(0)]),
    ];
    let mut opts = options();
    opts.kinds.insert("price".into(), ColumnKind::Text);
    opts.kinds.insert("big".into(), ColumnKind::Text);
    let file = parquet_file(schema, &columns, Compression::SNAPPY, 10);
    let mut shards = Vec::new();
    let manifest = ingest_parquet_bytes(file.into(), &opts, store_into(&mut shards)).unwrap();
    let texts = |c: usize| -> Vec<Option<String>> {
        shards
            .iter()
            .flat_map(|s| match &s.columns[c] {
                mass_protocol::dataset::ShardColumn::Text(v) => v.clone(),
                mass_protocol::dataset::ShardColumn::Categorical { values, codes } => {
                    codes.iter().map(|&code| values.get(code as usize).cloned()).collect()
                }
                other => panic!("column {c}: {other:?}"),
            })
            .collect()
    };
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(texts(0), [some("123.45"), some("-0.05"), None]);
    assert_eq!(texts(1), [some("-0.123"), some("12.345"), None]);
    assert_eq!(texts(2), [some("2024-01-01"), None, some("1970-01-01")]);
    assert_eq!(texts(3), [some("2024-01-01T00:00:00.123Z"), some("1970-01-01T00:00:00Z"), None]);
    assert_eq!(manifest.stats[4].max, Some(f64::from(u32::MAX)), "unsigned 32-bit values as unsigned");
    assert_eq!(manifest.schema.columns[5].kind, ColumnKind::Numeric);
}

#[test]
fn nested_and_unreadable_columns_are_refused_by_name() {
    let cases = [
        (
            "message t { OPTIONAL group tags (LIST) { REPEATED group list { OPTIONAL BYTE_ARRAY element (UTF8); } } \
             REQUIRED INT32 label; }",
            "column 'tags' is a list",
        ),
        (
            "message t { REQUIRED INT32 label; OPTIONAL group point { REQUIRED DOUBLE x; REQUIRED DOUBLE y; } }",
            "column 'point' is a nested group (a struct)",
        ),
        ("message t { REQUIRED INT32 label; REPEATED INT32 scores; }", "column 'scores' is a repeated field"),
        (
            "message t { REQUIRED INT32 label; OPTIONAL FIXED_LEN_BYTE_ARRAY (12) span (INTERVAL); }",
            "column 'span' is an interval",
        ),
        (
            "message t { REQUIRED INT32 label; OPTIONAL FIXED_LEN_BYTE_ARRAY (8) raw; }",
            "column 'raw' is fixed-length binary",
        ),
        ("message t { REQUIRED INT32 label; OPTIONAL BYTE_ARRAY doc (BSON); }", "column 'doc' is BSON"),
    ];
    for (schema, expected) in cases {
        // The schema is enough: no rows are written.
        let schema = Arc::new(parse_message_type(schema).unwrap());
        let file = SerializedFileWriter::new(Vec::new(), schema, Default::default()).unwrap().into_inner().unwrap();
        let err = run(&file).unwrap_err().to_string();
        assert!(err.contains(expected), "'{err}' lacks '{expected}'");
        assert!(err.contains("only flat columns"), "{err}");
    }
}

#[test]
fn bad_files_are_refused_with_what_is_wrong() {
    let (columns, _) = table(30);
    let good = parquet_file(TABLE, &columns, Compression::SNAPPY, 10);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &good).unwrap();
    let mut garbage = b"PAR1".to_vec();
    garbage.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    garbage.extend_from_slice(&[200, 0, 0, 0]);
    garbage.extend_from_slice(b"PAR1");
    // The first row group's data pages overwritten: the footer still reads.
    let mut bad_pages = good.clone();
    for b in &mut bad_pages[4..200] {
        *b = 0xa5;
    }
    let no_label =
        parquet_file("message t { REQUIRED INT32 a; }", &[Values::Int32(vec![Some(1)])], Compression::SNAPPY, 10);
    let no_rows = parquet_file(TABLE, &[], Compression::SNAPPY, 10);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "the file is empty"),
        (b"id,label\n1,0\n".to_vec(), "not a Parquet file: it does not start with the magic bytes PAR1"),
        (gz.finish().unwrap(), "not a Parquet file but gzip"),
        (good[..good.len() - 1].to_vec(), "a truncated Parquet file: it does not end with the magic bytes PAR1"),
        (good[..good.len() / 2].to_vec(), "a truncated Parquet file"),
        (b"PAR1PAR1".to_vec(), "a truncated Parquet file"),
        (garbage, "the Parquet footer (schema and row groups) is unreadable"),
        (bad_pages, "row group 1 of 3, column 'id'"),
        (no_label, "no column named 'label' for the label; columns are: a"),
        (no_rows, "the file has a header but no rows"),
    ];
    for (file, expected) in cases {
        let err = run(&file).unwrap_err().to_string();
        assert!(err.contains(expected), "'{err}' lacks '{expected}'");
    }
}

#[test]
fn cells_are_checked_as_in_a_csv() {
    // The label missing, a string in a numeric column, and bytes that are not UTF-8.
    let schema = "message t { OPTIONAL BYTE_ARRAY a; OPTIONAL INT32 label; }";
    let mut a: Vec<Option<&'static [u8]>> = vec![Some(b"1"); 12];
    a[11] = Some(b"abc");
    let mut label: Vec<Option<i32>> = vec![Some(0); 12];
    let file = parquet_file(schema, &[Values::Bytes(a.clone()), Values::Int32(label.clone())], Compression::SNAPPY, 5);
    let err = run(&file).unwrap_err().to_string();
    assert_eq!(err, "row 12 (line 12), column 'a': 'abc' is not a number");
    a[11] = Some(b"\xff");
    let file = parquet_file(schema, &[Values::Bytes(a.clone()), Values::Int32(label.clone())], Compression::SNAPPY, 5);
    assert_eq!(run(&file).unwrap_err().to_string(), "row 12 (line 12), column 'a': not valid UTF-8");
    a[11] = Some(b"2");
    label[3] = None;
    let file = parquet_file(schema, &[Values::Bytes(a), Values::Int32(label)], Compression::SNAPPY, 5);
    assert_eq!(run(&file).unwrap_err().to_string(), "row 4 (line 4): the label 'label' is missing");
}
