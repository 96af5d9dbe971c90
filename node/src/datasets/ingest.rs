//! Streaming CSV ingest, and the record path JSON Lines and Parquet share
//! ([`super::jsonl`], [`super::parquet`]).
//!
//! The first [`INFER_ROWS`] rows are buffered to infer column kinds (unless the
//! user gave them). After that the calling thread reads (and ungzips) the
//! file into batches of `shard_rows` records, `threads` workers parse, check
//! and build a shard from each batch ([`super::parallel`]), and the calling
//! thread folds each shard's statistics and hands it to `store`, in file
//! order: the manifest, shard ids and errors are those of one thread.
//! Memory is a few shards per worker, whatever the file size. Any bad cell
//! stops the ingest with its row and column (the first in the file, when
//! several batches have one); shards stored before that are left
//! unreferenced (GC removes them).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::{BufRead, BufReader, Read},
};

use mass_protocol::{
    ContentId,
    dataset::{
        Column, ColumnKind, ColumnStats, DatasetManifest, Schema, Shard, ShardColumn, ShardInfo, Split, SplitSpec,
    },
};

use super::DataError;

/// Rows read before column kinds are decided.
pub const INFER_ROWS: usize = 1000;
/// A string column of short values with at most this many distinct ones (in
/// the inference rows), or of single words each seen twice on average, is
/// categorical; otherwise text.
const MAX_INFERRED_CATEGORIES: usize = 64;
const MAX_CATEGORY_LEN: usize = 64;
/// Cells read as missing in numeric and categorical columns.
const MISSING: [&str; 8] = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "?"];

/// How rows are split, as the user asked.
#[derive(Debug, Clone)]
pub enum SplitChoice {
    Seeded {
        seed: u64,
        validation: f64,
        test: f64,
    },
    /// 0-based data rows that are test rows; the file listing them has `list`
    /// as its id.
    TestRows {
        rows: BTreeSet<u64>,
        list: ContentId,
        seed: u64,
        validation: f64,
    },
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub name: String,
    pub label: String,
    /// Kinds the user fixed, by column name.
    pub kinds: BTreeMap<String, ColumnKind>,
    pub shard_rows: usize,
    pub split: SplitChoice,
    /// Threads that parse and check rows (the calling thread reads the
    /// file and stores shards besides); the result is the same for any.
    pub threads: usize,
}

impl IngestOptions {
    pub fn validate(&self) -> Result<(), DataError> {
        mass_protocol::storage::validate_ref_name(&format!("{}{}", super::REF_PREFIX, self.name))
            .map_err(|e| DataError::Options(format!("dataset name: {e}")))?;
        if self.label.is_empty() {
            return Err(DataError::Options("no label column given".into()));
        }
        if self.shard_rows == 0 {
            return Err(DataError::Options("shard_rows must be at least 1".into()));
        }
        if self.threads == 0 {
            return Err(DataError::Options("threads must be at least 1".into()));
        }
        let (validation, test) = match &self.split {
            SplitChoice::Seeded { validation, test, .. } => (*validation, *test),
            SplitChoice::TestRows { validation, .. } => (*validation, 0.0),
        };
        for (what, fraction) in [("validation", validation), ("test", test)] {
            if !(0.0..1.0).contains(&fraction) {
                return Err(DataError::Options(format!("{what} fraction must be in [0, 1), not {fraction}")));
            }
        }
        if validation + test >= 1.0 {
            return Err(DataError::Options("validation + test fractions leave no training rows".into()));
        }
        Ok(())
    }
}

/// A number in [0, 1) drawn from (seed, row): the same on every machine.
fn unit(seed: u64, row: u64) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(&row.to_le_bytes());
    let bits = u64::from_le_bytes(hasher.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl SplitChoice {
    pub(crate) fn of(&self, row: u64) -> Split {
        match self {
            SplitChoice::Seeded { seed, validation, test } => {
                let u = unit(*seed, row);
                if u < *test {
                    Split::Test
                } else if u < test + validation {
                    Split::Validation
                } else {
                    Split::Train
                }
            }
            SplitChoice::TestRows { rows, seed, validation, .. } => {
                if rows.contains(&row) {
                    Split::Test
                } else if unit(*seed, row) < *validation {
                    Split::Validation
                } else {
                    Split::Train
                }
            }
        }
    }

    pub(crate) fn spec(&self) -> SplitSpec {
        match self {
            SplitChoice::Seeded { seed, validation, test } => {
                SplitSpec::Seeded { seed: *seed, validation: *validation, test: *test }
            }
            SplitChoice::TestRows { rows, list, seed, validation } => {
                SplitSpec::TestRows { rows: rows.len() as u64, list: *list, seed: *seed, validation: *validation }
            }
        }
    }
}

/// Parses a file of 0-based test row numbers, one per line.
pub fn parse_test_rows(text: &str) -> Result<BTreeSet<u64>, DataError> {
    let mut rows = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let row = line
            .parse::<u64>()
            .map_err(|_| DataError::Options(format!("test rows file, line {}: '{line}' is not a row number", i + 1)))?;
        rows.insert(row);
    }
    if rows.is_empty() {
        return Err(DataError::Options("the test rows file lists no rows".into()));
    }
    Ok(rows)
}

/// Builds one shard column by column.
struct ShardBuilder {
    first_row: u64,
    columns: Vec<ColumnBuilder>,
    splits: Vec<Split>,
}

enum ColumnBuilder {
    Numeric(Vec<f64>),
    Categorical { index: HashMap<String, u32>, values: Vec<String>, codes: Vec<u32> },
    Text(Vec<Option<String>>),
}

impl ShardBuilder {
    fn new(schema: &Schema, first_row: u64, rows: usize) -> Self {
        let columns = schema
            .columns
            .iter()
            .map(|c| match c.kind {
                ColumnKind::Numeric => ColumnBuilder::Numeric(Vec::with_capacity(rows)),
                ColumnKind::Categorical => ColumnBuilder::Categorical {
                    index: HashMap::new(),
                    values: Vec::new(),
                    codes: Vec::with_capacity(rows),
                },
                ColumnKind::Text => ColumnBuilder::Text(Vec::with_capacity(rows)),
            })
            .collect();
        Self { first_row, columns, splits: Vec::with_capacity(rows) }
    }

    fn finish(self) -> Shard {
        let columns = self
            .columns
            .into_iter()
            .map(|c| match c {
                ColumnBuilder::Numeric(values) => ShardColumn::numbers(values),
                ColumnBuilder::Categorical { values, codes, .. } => ShardColumn::Categorical { values, codes },
                ColumnBuilder::Text(values) => ShardColumn::Text(values),
            })
            .collect();
        Shard { first_row: self.first_row, columns, splits: self.splits }
    }
}

fn is_missing(cell: &str) -> bool {
    MISSING.contains(&cell.trim())
}

fn infer(sample: &[Vec<String>], index: usize) -> ColumnKind {
    let present: Vec<&str> = sample.iter().map(|r| r[index].as_str()).filter(|c| !is_missing(c)).collect();
    let numbers = present.iter().filter(|c| c.trim().parse::<f64>().is_ok_and(f64::is_finite)).count();
    // Mostly numbers is a numeric column with bad cells, which the row
    // checks then report, rather than a column of category names.
    if numbers * 10 >= present.len() * 9 {
        return ColumnKind::Numeric;
    }
    let distinct: BTreeSet<&str> = present.iter().copied().collect();
    let short = present.iter().all(|c| c.len() <= MAX_CATEGORY_LEN);
    let few = distinct.len() <= MAX_INFERRED_CATEGORIES.max(sample.len() / 20);
    // Single words that repeat (airports, carriers, product codes) are
    // categories however many there are; values mostly unlike each other
    // (ids, sentences) are text.
    let words = present.iter().all(|c| !c.trim().contains(char::is_whitespace));
    let repeated_words = words && distinct.len() * 2 <= present.len();
    if short && (few || repeated_words) { ColumnKind::Categorical } else { ColumnKind::Text }
}

/// Reads a CSV (plain or gzip) with a header and stores it as shards through
/// `store`, which returns each shard's id. Returns the manifest.
pub fn ingest(
    source: impl Read,
    options: &IngestOptions,
    store: impl FnMut(&Shard) -> Result<ContentId, DataError>,
) -> Result<DatasetManifest, DataError> {
    read_source(source, options, |decoded| {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(decoded);
        let header = reader.byte_headers().map_err(|e| csv_error(e, 0))?.clone();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(DataError::Empty);
        }
        let names: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, field)| {
                std::str::from_utf8(field)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| DataError::Header(format!("column {} is not valid UTF-8", i + 1)))
            })
            .collect::<Result<_, _>>()?;
        check_names(&names)?;
        ingest_records(names, &mut CsvRecords(reader), options, store)
    })
}

/// What every text format shares: checks the options, refuses an empty
/// file, and ungzips a gzip file; `read` parses the (decoded) rows.
pub(crate) fn read_source<R: Read>(
    source: R,
    options: &IngestOptions,
    read: impl FnOnce(Box<dyn Read + '_>) -> Result<Parsed, DataError>,
) -> Result<DatasetManifest, DataError> {
    options.validate()?;
    let mut raw = BufReader::with_capacity(256 * 1024, source);
    let head = raw.fill_buf().map_err(|e| DataError::Read(e.to_string()))?;
    if head.is_empty() {
        return Err(DataError::Empty);
    }
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let decoded: Box<dyn Read + '_> =
        if gzip { Box::new(flate2::bufread::MultiGzDecoder::new(&mut raw)) } else { Box::new(&mut raw) };
    let parsed = read(decoded)?;
    Ok(parsed.into_manifest(options))
}

/// A dataset's rows once read: the manifest but for its name and split.
pub(crate) struct Parsed {
    schema: Schema,
    rows: u64,
    shards: Vec<ShardInfo>,
    stats: Vec<ColumnStats>,
    split_rows: [u64; 3],
}

impl Parsed {
    /// The manifest of these rows, ingested with `options`.
    pub(crate) fn into_manifest(self, options: &IngestOptions) -> DatasetManifest {
        DatasetManifest {
            content: DatasetManifest::content_of(&self.shards),
            name: options.name.clone(),
            schema: self.schema,
            rows: self.rows,
            shards: self.shards,
            stats: self.stats,
            split: options.split.spec(),
            split_rows: self.split_rows,
        }
    }
}

/// Data rows as CSV records, whatever the file's format: the CSV reader's
/// own, or JSON Lines or Parquet turned into the same records, so that every
/// format gets the same kinds, checks and error messages.
pub(crate) trait Records {
    /// Reads data row `row` (1-based) into `record`, with its position's
    /// line set to the row's line in the file; false at the end.
    fn read(&mut self, record: &mut csv::ByteRecord, row: u64) -> Result<bool, DataError>;
}

struct CsvRecords<R>(csv::Reader<R>);

impl<R: Read> Records for CsvRecords<R> {
    fn read(&mut self, record: &mut csv::ByteRecord, row: u64) -> Result<bool, DataError> {
        read_record(&mut self.0, record, row)
    }
}

/// Column names must be non-empty and distinct.
pub(crate) fn check_names(names: &[String]) -> Result<(), DataError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if name.is_empty() {
            return Err(DataError::Header("a column has no name".into()));
        }
        if !seen.insert(name) {
            return Err(DataError::Header(format!("column '{name}' appears twice")));
        }
    }
    Ok(())
}

/// Everything after the column names: kinds (inferred from the first
/// [`INFER_ROWS`] rows unless given), every cell checked, statistics,
/// splits, and shards handed to `store` as they fill.
pub(crate) fn ingest_records(
    names: Vec<String>,
    records: &mut impl Records,
    options: &IngestOptions,
    mut store: impl FnMut(&Shard) -> Result<ContentId, DataError>,
) -> Result<Parsed, DataError> {
    let label = names
        .iter()
        .position(|n| *n == options.label)
        .ok_or_else(|| DataError::NoLabel { label: options.label.clone(), columns: names.join(", ") })?;
    for name in options.kinds.keys() {
        if !names.contains(name) {
            return Err(DataError::Options(format!("a type was given for '{name}', which is not a column")));
        }
    }

    // The first INFER_ROWS rows are kept to decide the column kinds; after
    // that one record buffer is reused for every row.
    let mut sample: Vec<csv::ByteRecord> = Vec::new();
    let mut record = csv::ByteRecord::new();
    while sample.len() < INFER_ROWS && records.read(&mut record, sample.len() as u64 + 1)? {
        sample.push(record.clone());
    }
    if sample.is_empty() {
        return Err(DataError::HeaderOnly);
    }
    let cells: Vec<Vec<String>> =
        sample.iter().enumerate().map(|(i, r)| text_cells(r, &names, i as u64 + 1)).collect::<Result<_, _>>()?;
    let columns: Vec<Column> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Column {
            name: name.clone(),
            kind: options.kinds.get(name).copied().unwrap_or_else(|| infer(&cells, i)),
        })
        .collect();
    drop(cells);
    if columns[label].kind == ColumnKind::Text {
        return Err(DataError::Options(format!(
            "label column '{}' holds free text; a label must be numeric or categorical (override with --type {}=categorical)",
            names[label], names[label]
        )));
    }
    let schema = Schema { columns, label };

    let mut stats = vec![ColumnStats::default(); names.len()];
    let mut shards = Vec::new();
    let mut split_rows = [0u64; 3];
    let mut count = 0u64;
    let batches = Batches { records, sample: sample.into_iter(), rows: options.shard_rows, next_row: 0, error: None };
    let build = |batch: Batch| build_shard(&schema, &options.split, batch);
    super::parallel::ordered_map(options.threads, batches, build, |built| {
        let shard = built?;
        super::stats::add_shard(&mut stats, &schema, &shard);
        for split in &shard.splits {
            split_rows[*split as usize] += 1;
        }
        count += shard.rows() as u64;
        shards.push(ShardInfo { id: store(&shard)?, first_row: shard.first_row, rows: shard.rows() as u64 });
        Ok(())
    })?;
    if let SplitChoice::TestRows { rows: test_rows, .. } = &options.split
        && let Some(&past) = test_rows.range(count..).next()
    {
        return Err(DataError::Options(format!("test row {past} is past the last row ({count} rows)")));
    }
    Ok(Parsed { schema, rows: count, shards, stats, split_rows })
}

/// Rows read, in file order, for one shard.
struct Batch {
    first_row: u64,
    records: Vec<csv::ByteRecord>,
}

/// The file's rows in batches of `rows`: the inference sample first, then
/// rows as read. A read error ends the batches; the rows read before it
/// come first, as a batch of their own, so that a bad cell before the error
/// is reported rather than it.
struct Batches<'a, R> {
    records: &'a mut R,
    sample: std::vec::IntoIter<csv::ByteRecord>,
    rows: usize,
    /// 0-based index of the next batch's first row.
    next_row: u64,
    error: Option<DataError>,
}

impl<R: Records> Iterator for Batches<'_, R> {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.error.take() {
            return Some(Err(error));
        }
        // (Capacity capped: `shard_rows` may be "the whole file".)
        let mut records = Vec::with_capacity(self.rows.min(1 << 16));
        while records.len() < self.rows {
            if let Some(record) = self.sample.next() {
                records.push(record);
                continue;
            }
            // Sized as the last row, so reading rarely grows it.
            let mut record = match records.last() {
                Some(last) => csv::ByteRecord::with_capacity(last.as_slice().len(), last.len()),
                None => csv::ByteRecord::new(),
            };
            match self.records.read(&mut record, self.next_row + records.len() as u64 + 1) {
                Ok(true) => records.push(record),
                Ok(false) => break,
                Err(error) => {
                    self.error = Some(error);
                    break;
                }
            }
        }
        if records.is_empty() {
            return self.error.take().map(Err);
        }
        let first_row = self.next_row;
        self.next_row += records.len() as u64;
        Some(Ok(Batch { first_row, records }))
    }
}

/// Parses and checks a batch of rows into a shard (a worker's job).
fn build_shard(schema: &Schema, split: &SplitChoice, batch: Batch) -> Result<Shard, DataError> {
    let mut shard = ShardBuilder::new(schema, batch.first_row, batch.records.len());
    for (index, record) in (batch.first_row..).zip(&batch.records) {
        append(schema, &mut shard, index, record)?;
        shard.splits.push(split.of(index));
    }
    Ok(shard.finish())
}

/// Reads the next record; false at the end of the file.
fn read_record(reader: &mut csv::Reader<impl Read>, record: &mut csv::ByteRecord, row: u64) -> Result<bool, DataError> {
    reader.read_byte_record(record).map_err(|e| csv_error(e, row))
}

/// A record's cells as text, for kind inference.
fn text_cells(record: &csv::ByteRecord, names: &[String], row: u64) -> Result<Vec<String>, DataError> {
    let line = record.position().map(|p| p.line()).unwrap_or(0);
    record
        .iter()
        .enumerate()
        .map(|(c, field)| {
            std::str::from_utf8(field).map(str::to_owned).map_err(|_| DataError::Cell {
                row,
                line,
                column: names[c].clone(),
                problem: "not valid UTF-8".into(),
            })
        })
        .collect()
}

/// Parses one row into the shard (its statistics are folded from the
/// finished shard, [`super::stats::add_shard`]).
fn append(schema: &Schema, shard: &mut ShardBuilder, index: u64, record: &csv::ByteRecord) -> Result<(), DataError> {
    let row = index + 1;
    let line = record.position().map(|p| p.line()).unwrap_or(0);
    for (c, field) in record.iter().enumerate() {
        if let ColumnBuilder::Numeric(values) = &mut shard.columns[c]
            && let Some(value) = plain_integer(field)
        {
            values.push(value);
            continue;
        }
        let column = &schema.columns[c];
        let cell_error = |problem: String| DataError::Cell { row, line, column: column.name.clone(), problem };
        let cell = std::str::from_utf8(field).map_err(|_| cell_error("not valid UTF-8".into()))?;
        let missing = if column.kind == ColumnKind::Text { cell.is_empty() } else { is_missing(cell) };
        if missing && c == schema.label {
            return Err(DataError::Row { row, line, problem: format!("the label '{}' is missing", column.name) });
        }
        match &mut shard.columns[c] {
            ColumnBuilder::Numeric(values) => {
                let value = if missing {
                    f64::NAN
                } else {
                    let value =
                        cell.trim().parse::<f64>().map_err(|_| cell_error(format!("'{cell}' is not a number")))?;
                    if !value.is_finite() {
                        return Err(cell_error(format!("'{cell}' is not a finite number")));
                    }
                    value
                };
                values.push(value);
            }
            ColumnBuilder::Categorical { index, values, codes } => {
                if missing {
                    codes.push(u32::MAX);
                } else {
                    let value = cell.trim();
                    let code = match index.get(value) {
                        Some(code) => *code,
                        None => {
                            values.push(value.to_owned());
                            index.insert(value.to_owned(), (values.len() - 1) as u32);
                            (values.len() - 1) as u32
                        }
                    };
                    codes.push(code);
                }
            }
            ColumnBuilder::Text(values) => values.push((!missing).then(|| cell.to_owned())),
        }
    }
    Ok(())
}

/// A cell of ASCII digits with an optional '-' first, as most numeric
/// files hold, read without the UTF-8 check, the trim and the float parser
/// (they were half the ingest's time on MNIST): the value `parse::<f64>`
/// gives, since whole numbers of up to 15 digits are exact. None for any
/// other cell, which takes the general path.
fn plain_integer(cell: &[u8]) -> Option<f64> {
    let (negative, digits) = match cell {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, cell),
    };
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n = 0u64;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + digit as u64;
    }
    Some(if negative { -(n as f64) } else { n as f64 })
}

fn csv_error(error: csv::Error, row: u64) -> DataError {
    match error.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
            let line = pos.as_ref().map(|p| p.line()).unwrap_or(0);
            DataError::Row {
                row,
                line,
                problem: format!(
                    "has {len} fields but the header has {expected_len} (a stray or unclosed quote can cause this)"
                ),
            }
        }
        csv::ErrorKind::Io(e) => DataError::Read(e.to_string()),
        _ => DataError::Row { row, line: error.position().map(|p| p.line()).unwrap_or(0), problem: error.to_string() },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The options the ingest tests (CSV, JSON Lines, Parquet) share.
    pub(crate) fn options() -> IngestOptions {
        IngestOptions {
            name: "t".into(),
            label: "label".into(),
            kinds: BTreeMap::new(),
            shard_rows: 2,
            split: SplitChoice::Seeded { seed: 1, validation: 0.0, test: 0.25 },
            threads: 1,
        }
    }

    /// A store callback that keeps each shard and names it by its hash.
    pub(crate) fn store_into(shards: &mut Vec<Shard>) -> impl FnMut(&Shard) -> Result<ContentId, DataError> + '_ {
        |shard| {
            shards.push(shard.clone());
            Ok(ContentId::of(&mass_protocol::codec::encode(shard).unwrap()))
        }
    }

    fn run(csv: &[u8]) -> Result<(DatasetManifest, Vec<Shard>), DataError> {
        let mut shards = Vec::new();
        let manifest = ingest(csv, &options(), |shard| {
            shards.push(shard.clone());
            Ok(ContentId::of(&mass_protocol::codec::encode(shard).unwrap()))
        })?;
        Ok((manifest, shards))
    }

    #[test]
    fn plain_integers_read_as_the_float_parser_reads_them() {
        for cell in ["0", "7", "255", "007", "-0", "-12", "123456789012345", "999999999999999"] {
            let parsed: f64 = cell.parse().unwrap();
            let fast = plain_integer(cell.as_bytes()).unwrap();
            assert_eq!(fast.to_bits(), parsed.to_bits(), "{cell}");
        }
        for cell in ["", "-", "1.5", " 1", "1 ", "+1", "1e3", "1234567890123456", "--1", "1-", "NA", "٣"] {
            assert_eq!(plain_integer(cell.as_bytes()), None, "{cell}");
        }
    }

    #[test]
    fn kinds_are_inferred_and_rows_sharded() {
        let csv = b"x,color,review,label\n1.5,red,a long free text review number one,yes\n2,blue,another quite different review text,no\n,red,third review with other words entirely,yes\n";
        let (manifest, shards) = run(csv).unwrap();
        let kinds: Vec<ColumnKind> = manifest.schema.columns.iter().map(|c| c.kind).collect();
        assert_eq!(kinds[0], ColumnKind::Numeric);
        assert_eq!(kinds[1], ColumnKind::Categorical);
        assert_eq!(kinds[3], ColumnKind::Categorical);
        assert_eq!(manifest.rows, 3);
        assert_eq!(shards.len(), 2);
        assert_eq!(manifest.stats[0].missing, 1);
        assert_eq!(manifest.stats[0].sum, 3.5);
        assert_eq!(manifest.label_histogram().get("yes"), Some(&2));
        assert_eq!(manifest.split_rows.iter().sum::<u64>(), 3);
    }

    #[test]
    fn gzip_is_read_transparently_and_ids_are_stable() {
        use std::io::Write;
        let csv = b"a,label\n1,0\n2,1\n3,0\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(csv).unwrap();
        let gz = gz.finish().unwrap();
        let (plain, _) = run(csv).unwrap();
        let (zipped, _) = run(&gz).unwrap();
        assert_eq!(plain.shards, zipped.shards, "same rows, same shard ids");
        assert_eq!(run(csv).unwrap().0, plain, "ingesting twice gives the same manifest");
    }

    #[test]
    fn malformed_files_name_the_row_and_column() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "the file is empty"),
            (b"a,label\n", "header but no rows"),
            (b"a,b\n1,2\n", "no column named 'label'"),
            (b"a,label\n1,0\n2,1,9\n", "row 2 (line 3): has 3 fields"),
            (b"a,label\n1,0\n\"2,1\n3,0\n", "row 2"),
            (
                b"a,label\n1,0\n2,1\n3,0\n4,1\n5,0\n6,1\n7,0\n8,1\n9,0\n10,1\nabc,1\n",
                "row 11 (line 12), column 'a': 'abc' is not a number",
            ),
            (b"a,label\n1,0\n2,\xff\n", "row 2 (line 3), column 'label': not valid UTF-8"),
            (b"a,label\n1,0\n2,\n", "row 2 (line 3): the label 'label' is missing"),
            (b"a,a,label\n1,2,0\n", "column 'a' appears twice"),
            (b"a,label\n1,0\n2,1\n3,0\n4,1\n5,0\n6,1\n7,0\n8,1\n9,0\n10,1\ninf,1\n", "not a finite number"),
        ];
        for (csv, expected) in cases {
            let err = run(csv).unwrap_err().to_string();
            assert!(err.contains(expected), "{:?}: '{err}' lacks '{expected}'", String::from_utf8_lossy(csv));
        }
    }

    #[test]
    fn single_words_that_repeat_are_categories_however_many_and_ids_are_text() {
        // Like flights: 87 airports in 1,000 rows, 741 tail numbers.
        let column = |distinct: usize, word: &str| -> Vec<Vec<String>> {
            (0..1000).map(|i| vec![format!("{word}{}", i % distinct)]).collect()
        };
        assert_eq!(infer(&column(87, "JFK"), 0), ColumnKind::Categorical);
        assert_eq!(infer(&column(500, "JFK"), 0), ColumnKind::Categorical);
        assert_eq!(infer(&column(741, "N"), 0), ColumnKind::Text);
        assert_eq!(infer(&column(87, "a review "), 0), ColumnKind::Text, "sentences are text");
        assert_eq!(infer(&column(40, "a review "), 0), ColumnKind::Categorical, "few values are categories");
    }

    #[test]
    fn numeric_kind_inferred_from_the_sample_is_enforced_later() {
        let mut csv = String::from("a,label\n");
        for i in 0..INFER_ROWS + 5 {
            csv.push_str(&format!("{i},{}\n", i % 2));
        }
        csv.push_str("oops,1\n");
        let err = run(csv.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(&format!("row {}", INFER_ROWS + 6)) && err.contains("'oops' is not a number"), "{err}");
    }

    #[test]
    fn test_rows_split_marks_exactly_the_listed_rows() {
        let mut opts = options();
        opts.split = SplitChoice::TestRows {
            rows: [0, 2].into_iter().collect(),
            list: ContentId::of(b"0\n2\n"),
            seed: 1,
            validation: 0.0,
        };
        let mut shards = Vec::new();
        let manifest = ingest(&b"a,label\n1,0\n2,1\n3,0\n"[..], &opts, |s| {
            shards.push(s.clone());
            Ok(ContentId::of(b""))
        })
        .unwrap();
        assert_eq!(manifest.split_rows, [1, 0, 2]);
        assert_eq!(shards[0].splits, vec![Split::Test, Split::Train]);
        opts.split = SplitChoice::TestRows {
            rows: [7].into_iter().collect(),
            list: ContentId::of(b""),
            seed: 1,
            validation: 0.0,
        };
        let err = ingest(&b"a,label\n1,0\n"[..], &opts, |_| Ok(ContentId::of(b""))).unwrap_err().to_string();
        assert!(err.contains("test row 7 is past the last row (1 rows)"), "{err}");
    }

    /// A CSV of `rows` rows with numbers whose float sums depend on their
    /// order, categories, quoted text holding commas and newlines, and
    /// missing cells; `bad` rows (0-based) get a cell that is not a number.
    fn generated(rows: usize, bad: &[usize]) -> String {
        let mut csv = String::from("x,color,note,label\n");
        for i in 0..rows {
            let x = if bad.contains(&i) {
                "x!".to_owned()
            } else if i % 17 == 0 {
                String::new()
            } else {
                format!("{}", (i as f64 * 0.1).sin() * 1e3 + 1.0 / (i + 1) as f64)
            };
            let color = ["red", "green", "blue", "NA"][i % 4];
            let note = if i % 5 == 0 { String::new() } else { format!("\"line {i},\nnext \"\"{}\"\"\"", i % 7) };
            csv.push_str(&format!("{x},{color},{note},c{}\n", i % 3));
        }
        csv
    }

    /// The manifest and shards (as bytes: a missing number is NaN) of an
    /// ingest on `threads` threads, or its error.
    fn run_on(threads: usize, shard_rows: usize, text: &[u8], jsonl: bool) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
        let opts = IngestOptions {
            shard_rows,
            threads,
            kinds: BTreeMap::from([("note".into(), ColumnKind::Text)]),
            ..options()
        };
        let mut shards = Vec::new();
        let store = |shard: &Shard| {
            let bytes = mass_protocol::codec::encode(shard).unwrap();
            let id = ContentId::of(&bytes);
            shards.push(bytes);
            Ok(id)
        };
        let manifest = if jsonl { super::super::ingest_jsonl(text, &opts, store) } else { ingest(text, &opts, store) };
        let manifest = manifest.map_err(|e| e.to_string())?;
        Ok((mass_protocol::codec::encode(&manifest).unwrap(), shards))
    }

    #[test]
    fn every_thread_count_gives_the_same_manifest_shards_and_stats() {
        let csv = generated(3 * INFER_ROWS + 77, &[]);
        let one = run_on(1, 128, csv.as_bytes(), false).unwrap();
        assert_eq!(one.1.len(), (3 * INFER_ROWS + 77).div_ceil(128));
        for threads in [2, 3, 8] {
            assert!(run_on(threads, 128, csv.as_bytes(), false).unwrap() == one, "{threads} threads");
        }
        // One shard for the whole file, and shards smaller than the sample.
        assert!(
            run_on(4, usize::MAX, csv.as_bytes(), false).unwrap()
                == run_on(1, usize::MAX, csv.as_bytes(), false).unwrap()
        );
        assert!(run_on(3, 7, csv.as_bytes(), false).unwrap() == run_on(1, 7, csv.as_bytes(), false).unwrap());
        // The quoted newlines were read as cells, not rows.
        let manifest: DatasetManifest = mass_protocol::codec::decode(&one.0, usize::MAX).unwrap();
        assert_eq!(manifest.rows, 3 * INFER_ROWS as u64 + 77);
        assert_eq!(manifest.schema.columns[2].kind, ColumnKind::Text);
    }

    #[test]
    fn json_lines_on_many_threads_give_the_same_dataset() {
        let text: String = (0..2500)
            .map(|i| {
                format!(
                    "{{\"x\": {}, \"color\": \"{}\", \"note\": \"n{i}\", \"label\": {}}}\n",
                    (i as f64).sqrt(),
                    ["a", "b"][i % 2],
                    i % 3
                )
            })
            .collect();
        let one = run_on(1, 100, text.as_bytes(), true).unwrap();
        assert!(run_on(3, 100, text.as_bytes(), true).unwrap() == one);
    }

    #[test]
    fn the_first_bad_cell_in_the_file_is_reported_whatever_finishes_first() {
        // Row 2,901 is bad in a late batch, row 1,501 in an earlier one; on
        // many threads the late batch may well fail first.
        let csv = generated(3000, &[2900, 1500]);
        for threads in [1, 2, 4] {
            let err = run_on(threads, 100, csv.as_bytes(), false).unwrap_err();
            assert!(err.starts_with("row 1501 (line "), "{threads} threads: {err}");
            assert!(err.contains("column 'x': 'x!' is not a number"), "{err}");
        }
        // A bad cell in the batch a read error cuts short comes first too,
        // and a read error after it is not what is reported.
        let mut csv = generated(3000, &[2450]);
        csv.push_str("1,red,\"unclosed,c1\n");
        for threads in [1, 3] {
            let err = run_on(threads, 100, csv.as_bytes(), false).unwrap_err();
            assert!(err.starts_with("row 2451 (line "), "{threads} threads: {err}");
        }
        let mut csv = generated(2000, &[]);
        csv.push_str("1,red,x,c1,9\n");
        let one = run_on(1, 100, csv.as_bytes(), false).unwrap_err();
        assert!(one.starts_with("row 2001 (line ") && one.contains("has 5 fields"), "{one}");
        assert_eq!(run_on(3, 100, csv.as_bytes(), false).unwrap_err(), one);
    }

    #[test]
    fn a_store_error_comes_before_a_bad_cell_in_a_later_shard() {
        let csv = generated(2000, &[1800]);
        for threads in [1, 3] {
            let opts = IngestOptions { shard_rows: 100, threads, ..options() };
            let mut stored = 0;
            let err = ingest(csv.as_bytes(), &opts, |_| {
                stored += 1;
                if stored == 12 { Err(DataError::Store("disk full".into())) } else { Ok(ContentId::of(b"")) }
            })
            .unwrap_err();
            assert_eq!(err.to_string(), "cannot store the dataset: disk full", "{threads} threads");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn threads_never_change_the_outcome(
            rows in 1usize..1500,
            shard_rows in 1usize..400,
            threads in 2usize..6,
            bad in proptest::collection::vec(0usize..1500, 0..3),
        ) {
            let csv = generated(rows, &bad);
            let one = run_on(1, shard_rows, csv.as_bytes(), false);
            let many = run_on(threads, shard_rows, csv.as_bytes(), false);
            proptest::prop_assert!(one == many, "{:?} vs {:?}", one.as_ref().err(), many.as_ref().err());
        }
    }
}
