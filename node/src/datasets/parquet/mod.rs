//! Parquet ingest: a file's rows become the very records the CSV reader
//! yields, and go through the CSV path from there (kinds, checks,
//! statistics, splits, shards and messages), so the same data as a CSV
//! gives the same shards.
//!
//! Each value is written as the text a CSV cell of it would hold
//! ([`text`]): integers in full, floats in their shortest round-trip form,
//! booleans as `true`/`false`, a null as an empty (missing) cell, strings as
//! they are, decimals as exact decimal text, dates, times and timestamps as
//! ISO 8601 text (so categories or free text, as in a CSV). Only flat
//! columns are read: a list, map, struct, repeated field, interval, BSON,
//! geometry or half-precision float column is refused by name before any
//! row is read ([`columns`]). Snappy, gzip and zstd pages are read.
//!
//! Parquet's index is its footer, at the end, so an upload is first spooled
//! to an unnamed temporary file in the node's data dir (gone when the ingest
//! ends, even on a crash), hashed as it arrives; the upload limit
//! (`http.max_upload`) bounds it. Rows are then read a batch at a time, every
//! column in step, so memory is a batch per column plus the pages being
//! decoded (a page may declare up to 2 GiB uncompressed; the reader believes
//! it).

mod columns;
mod text;

use std::{
    fs::File,
    io::{BufReader, Read, Write},
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
};

use mass_protocol::{
    ContentId,
    dataset::{DatasetManifest, Shard},
};
use parquet::file::{
    reader::{ChunkReader, FileReader, Length},
    serialized_reader::SerializedFileReader,
};

use self::columns::{Cells, Cursor, Kind};
use super::{
    DataError, IngestOptions,
    ingest::{Records, check_names, ingest_records},
};

/// Parquet files start and end with these bytes.
pub const MAGIC: &[u8; 4] = b"PAR1";
/// Rows read from every column at a time.
const BATCH: usize = 1024;

/// Spools `source` to a temporary file in `spool`, then reads it as Parquet
/// and stores it as shards through `store`, as [`super::ingest`] does a
/// CSV. Returns the manifest.
pub fn ingest_parquet(
    source: impl Read,
    spool: &Path,
    options: &IngestOptions,
    store: impl FnMut(&Shard) -> Result<ContentId, DataError>,
) -> Result<DatasetManifest, DataError> {
    options.validate()?;
    let file = spool_to_file(source, spool)?;
    ingest_file(Spooled::new(file)?, options, store)
}

/// [`ingest_parquet`] of a file already in memory.
pub fn ingest_parquet_bytes(
    bytes: bytes::Bytes,
    options: &IngestOptions,
    store: impl FnMut(&Shard) -> Result<ContentId, DataError>,
) -> Result<DatasetManifest, DataError> {
    ingest_file(bytes, options, store)
}

fn ingest_file<R: ChunkReader + 'static>(
    file: R,
    options: &IngestOptions,
    store: impl FnMut(&Shard) -> Result<ContentId, DataError>,
) -> Result<DatasetManifest, DataError> {
    options.validate()?;
    let mut rows = ParquetRows::open(file)?;
    let names: Vec<String> = rows.columns.iter().map(|c| c.name.clone()).collect();
    check_names(&names)?;
    Ok(ingest_records(names, &mut rows, options, store)?.into_manifest(options))
}

/// Copies the upload into an unnamed file in `dir`. A failed read is the upload's fault; a failed write the node's.
fn spool_to_file(mut source: impl Read, dir: &Path) -> Result<File, DataError> {
    let spool_error =
        |e: std::io::Error| DataError::Store(format!("cannot spool the upload in {}: {e}", dir.display()));
    let mut file = tempfile::tempfile_in(dir).map_err(spool_error)?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = source.read(&mut buffer).map_err(|e| DataError::Read(e.to_string()))?;
        if n == 0 {
            break;
        }
        file.write_all(&buffer[..n]).map_err(spool_error)?;
    }
    Ok(file)
}

/// A spooled file, whose reads past its end fail before allocating (a
/// footer can claim any size).
struct Spooled {
    file: File,
    len: u64,
}

impl Spooled {
    fn new(file: File) -> Result<Self, DataError> {
        let len = file.metadata().map_err(|e| DataError::Store(format!("cannot read the spooled upload: {e}")))?.len();
        Ok(Self { file, len })
    }
}

impl Length for Spooled {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Spooled {
    type T = BufReader<File>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.file.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        if start.checked_add(length as u64).is_none_or(|end| end > self.len) {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "{length} bytes at offset {start} are past the end of the file ({} bytes)",
                self.len
            )));
        }
        self.file.get_bytes(start, length)
    }
}

/// A column: its name, how it is read, and whether it has nulls.
struct Column {
    name: String,
    kind: Kind,
    nullable: bool,
}

/// The rows of a Parquet file, as CSV records.
struct ParquetRows<R: ChunkReader + 'static> {
    reader: SerializedFileReader<R>,
    file_len: u64,
    columns: Vec<Column>,
    /// The next row group to open (0-based).
    next_group: usize,
    /// Rows of the open row group not yet read into a batch.
    left_in_group: u64,
    cursors: Vec<Cursor>,
    /// Each column's cells of the current batch.
    batch: Vec<Cells>,
    batch_rows: usize,
    /// The batch's next row to hand out.
    next: usize,
}

impl<R: ChunkReader + 'static> ParquetRows<R> {
    /// Checks the magic bytes and reads the footer: the schema, which
    /// decides the columns, and where the row groups are.
    fn open(file: R) -> Result<Self, DataError> {
        let len = file.len();
        if len == 0 {
            return Err(DataError::Empty);
        }
        let at = |start: u64, n: usize| file.get_bytes(start, n).map(|b| b.to_vec()).unwrap_or_default();
        let head = at(0, MAGIC.len().min(len as usize));
        if head.starts_with(&[0x1f, 0x8b]) {
            return Err(DataError::Read(
                "not a Parquet file but gzip (Parquet compresses its pages itself: upload the .parquet file)".into(),
            ));
        }
        if head != MAGIC {
            return Err(DataError::Read("not a Parquet file: it does not start with the magic bytes PAR1".into()));
        }
        if len < 12 || at(len - 4, 4) != MAGIC {
            return Err(DataError::Read(
                "a truncated Parquet file: it does not end with the magic bytes PAR1 (was the upload cut short?)"
                    .into(),
            ));
        }
        let reader = guarded("the Parquet footer (schema and row groups)", || {
            SerializedFileReader::new(file)
                .map_err(|e| DataError::Read(format!("the Parquet footer (schema and row groups) is unreadable: {e}")))
        })?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let columns = columns::plan(schema)?
            .into_iter()
            .enumerate()
            .map(|(i, (name, kind))| Column { name, kind, nullable: schema.column(i).max_def_level() > 0 })
            .collect::<Vec<_>>();
        let batch = columns.iter().map(|_| Cells::default()).collect();
        Ok(Self {
            reader,
            file_len: len,
            columns,
            next_group: 0,
            left_in_group: 0,
            cursors: Vec::new(),
            batch,
            batch_rows: 0,
            next: 0,
        })
    }

    /// Opens the next row group; false when there is none.
    fn open_group(&mut self) -> Result<bool, DataError> {
        let groups = self.reader.num_row_groups();
        if self.next_group == groups {
            return Ok(false);
        }
        let number = self.next_group + 1;
        self.next_group += 1;
        let unreadable = |what: String| DataError::Read(format!("row group {number} of {groups}: {what}"));
        // The reader asserts that each chunk's place is not negative; one
        // past the end of the file is refused here too.
        let chunks = self.reader.metadata().row_group(number - 1).columns();
        for (column, chunk) in self.columns.iter().zip(chunks) {
            let start = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset());
            let length = chunk.compressed_size();
            let end = u64::try_from(start).ok().zip(u64::try_from(length).ok()).map(|(s, l)| s.saturating_add(l));
            if end.is_none_or(|end| end > self.file_len) {
                return Err(unreadable(format!(
                    "column '{}' says it lies at bytes {start}..+{length}, outside the file ({} bytes)",
                    column.name, self.file_len
                )));
            }
        }
        let (rows, cursors) = guarded(&format!("row group {number} of {groups}"), || {
            let group = self.reader.get_row_group(number - 1).map_err(|e| unreadable(e.to_string()))?;
            let rows = u64::try_from(group.metadata().num_rows())
                .map_err(|_| unreadable("a negative number of rows".into()))?;
            let mut cursors = Vec::with_capacity(self.columns.len());
            for (i, column) in self.columns.iter().enumerate() {
                let name = &column.name;
                let reader = group.get_column_reader(i).map_err(|e| unreadable(format!("column '{name}': {e}")))?;
                let cursor = Cursor::new(column.kind, reader).ok_or_else(|| {
                    unreadable(format!("column '{name}' is stored as another type than the schema says"))
                })?;
                cursors.push(cursor);
            }
            Ok((rows, cursors))
        })?;
        self.left_in_group = rows;
        self.cursors = cursors;
        Ok(true)
    }

    /// Reads the next batch of rows from every column; false at the end.
    fn read_batch(&mut self) -> Result<bool, DataError> {
        while self.left_in_group == 0 {
            if !self.open_group()? {
                return Ok(false);
            }
        }
        let rows = self.left_in_group.min(BATCH as u64) as usize;
        let group = self.next_group;
        let groups = self.reader.num_row_groups();
        for ((cursor, column), cells) in self.cursors.iter_mut().zip(&self.columns).zip(&mut self.batch) {
            let name = &column.name;
            let unreadable =
                |what: String| DataError::Read(format!("row group {group} of {groups}, column '{name}': {what}"));
            let read = guarded(&format!("row group {group} of {groups}, column '{name}'"), || {
                cursor.read(rows, column.nullable, cells).map_err(unreadable)
            })?;
            if read != rows {
                return Err(unreadable(format!(
                    "the row group has more rows than the column holds (read {read} of {rows})"
                )));
            }
        }
        self.left_in_group -= rows as u64;
        self.batch_rows = rows;
        self.next = 0;
        Ok(true)
    }
}

impl<R: ChunkReader + 'static> Records for ParquetRows<R> {
    fn read(&mut self, record: &mut csv::ByteRecord, row: u64) -> Result<bool, DataError> {
        if self.next == self.batch_rows && !self.read_batch()? {
            return Ok(false);
        }
        record.clear();
        for cells in &self.batch {
            record.push_field(cells.get(self.next));
        }
        self.next += 1;
        // A Parquet row has no line; messages name the row for both.
        let mut position = csv::Position::new();
        position.set_line(row).set_record(row);
        record.set_position(Some(position));
        Ok(true)
    }
}

/// Runs a call into the parquet crate, which asserts on some malformed
/// files: a panic there is a bad upload, reported as one.
fn guarded<T>(what: &str, call: impl FnOnce() -> Result<T, DataError>) -> Result<T, DataError> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no reason given");
        Err(DataError::Read(format!("{what}: malformed, the Parquet reader stopped: {reason}")))
    })
}

#[cfg(test)]
mod tests;
