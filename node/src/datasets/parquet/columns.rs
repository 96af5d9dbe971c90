//! Which Parquet columns can be read, and reading them as cells of text.
//!
//! [`plan`] decides once per file how each top-level column is written as
//! text, refusing by name what a CSV cannot hold (nested or repeated
//! columns, intervals, BSON, geometry...). [`Cursor`] then reads a column
//! chunk a batch of rows at a time and writes each row's cell.

use parquet::{
    basic::{ConvertedType, LogicalType, Repetition, TimeUnit, Type as Physical},
    column::reader::{ColumnReader, ColumnReaderImpl},
    data_type::{
        BoolType, ByteArrayType, DataType, DoubleType, FixedLenByteArrayType, FloatType, Int32Type, Int64Type,
        Int96Type,
    },
    schema::types::{SchemaDescriptor, Type},
};

use super::text;
use crate::datasets::DataError;

/// How an integer column's values are written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum IntAs {
    Signed,
    Unsigned,
    Decimal(u32),
    Date,
    Time(TimeUnit),
    Timestamp(TimeUnit, bool),
}

/// How a byte-array column's values are written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum BytesAs {
    /// Strings (and unannotated binary, which older writers used for
    /// strings: bytes that are not UTF-8 are refused later, by row).
    Text,
    Decimal(u32),
    Uuid,
}

/// A column's physical type and how its values are written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Bool,
    Int32(IntAs),
    Int64(IntAs),
    Int96,
    Float,
    Double,
    Bytes(BytesAs),
    Fixed(BytesAs),
}

/// The top-level columns of a file, in order: their names and kinds.
pub(super) fn plan(schema: &SchemaDescriptor) -> Result<Vec<(String, Kind)>, DataError> {
    let fields = schema.root_schema().get_fields();
    if fields.is_empty() {
        return Err(DataError::Header("the Parquet schema has no columns".into()));
    }
    fields.iter().map(|field| Ok((field.name().to_owned(), kind(field)?))).collect()
}

fn kind(field: &Type) -> Result<Kind, DataError> {
    let refuse = |what: &str| {
        DataError::Header(format!(
            "column '{}' is {what}; only flat columns of numbers, strings, booleans, decimals, dates and times \
             can be ingested",
            field.name()
        ))
    };
    let info = field.get_basic_info();
    if field.is_group() {
        return Err(match (info.logical_type_ref(), info.converted_type()) {
            (Some(LogicalType::List), _) | (_, ConvertedType::LIST) => refuse("a list"),
            (Some(LogicalType::Map), _) | (_, ConvertedType::MAP | ConvertedType::MAP_KEY_VALUE) => refuse("a map"),
            _ => refuse("a nested group (a struct)"),
        });
    }
    if info.has_repetition() && info.repetition() == Repetition::REPEATED {
        return Err(refuse("a repeated field (a list)"));
    }
    let scale = || u32::try_from(field.get_scale()).map_err(|_| refuse("a decimal with a negative scale"));
    let int = match (info.logical_type_ref(), info.converted_type()) {
        (Some(LogicalType::Integer(int)), _) if !int.is_signed => IntAs::Unsigned,
        (Some(LogicalType::Decimal(_)), _) | (None, ConvertedType::DECIMAL) => IntAs::Decimal(scale()?),
        (Some(LogicalType::Date), _) | (None, ConvertedType::DATE) => IntAs::Date,
        (Some(LogicalType::Time(t)), _) => IntAs::Time(t.unit),
        (None, ConvertedType::TIME_MILLIS) => IntAs::Time(TimeUnit::MILLIS),
        (None, ConvertedType::TIME_MICROS) => IntAs::Time(TimeUnit::MICROS),
        (Some(LogicalType::Timestamp(t)), _) => IntAs::Timestamp(t.unit, t.is_adjusted_to_u_t_c),
        (None, ConvertedType::TIMESTAMP_MILLIS) => IntAs::Timestamp(TimeUnit::MILLIS, true),
        (None, ConvertedType::TIMESTAMP_MICROS) => IntAs::Timestamp(TimeUnit::MICROS, true),
        (None, ConvertedType::UINT_8 | ConvertedType::UINT_16 | ConvertedType::UINT_32 | ConvertedType::UINT_64) => {
            IntAs::Unsigned
        }
        _ => IntAs::Signed,
    };
    let bytes = match (info.logical_type_ref(), info.converted_type()) {
        (Some(LogicalType::Decimal(_)), _) | (None, ConvertedType::DECIMAL) => Some(BytesAs::Decimal(scale()?)),
        (Some(LogicalType::Uuid), _) => Some(BytesAs::Uuid),
        (Some(LogicalType::String | LogicalType::Enum | LogicalType::Json), _)
        | (None, ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON) => Some(BytesAs::Text),
        (Some(LogicalType::Float16), _) => return Err(refuse("a half-precision float")),
        (Some(LogicalType::Bson), _) | (None, ConvertedType::BSON) => return Err(refuse("BSON")),
        (Some(LogicalType::Geometry(_) | LogicalType::Geography(_)), _) => return Err(refuse("a geometry")),
        (Some(LogicalType::Variant(_)), _) => return Err(refuse("a variant")),
        (None, ConvertedType::INTERVAL) => return Err(refuse("an interval")),
        _ => None,
    };
    Ok(match field.get_physical_type() {
        Physical::BOOLEAN => Kind::Bool,
        Physical::INT32 => Kind::Int32(int),
        Physical::INT64 => Kind::Int64(int),
        Physical::INT96 => Kind::Int96,
        Physical::FLOAT => Kind::Float,
        Physical::DOUBLE => Kind::Double,
        Physical::BYTE_ARRAY => Kind::Bytes(bytes.unwrap_or(BytesAs::Text)),
        Physical::FIXED_LEN_BYTE_ARRAY => {
            Kind::Fixed(bytes.ok_or_else(|| refuse("fixed-length binary with no type (such as decimal or UUID)"))?)
        }
    })
}

/// A column chunk's reader and the values of the batch it last read.
pub(super) struct Chunk<T: DataType> {
    reader: ColumnReaderImpl<T>,
    values: Vec<T::T>,
}

impl<T: DataType> Chunk<T> {
    fn new(reader: ColumnReaderImpl<T>) -> Self {
        Self { reader, values: Vec::new() }
    }

    /// Reads up to `rows` rows: their non-null values into `values` and,
    /// for an optional column, their definition levels into `levels`.
    fn read(&mut self, rows: usize, levels: &mut Vec<i16>) -> parquet::errors::Result<usize> {
        self.values.clear();
        levels.clear();
        let (records, _, _) = self.reader.read_records(rows, Some(levels), None, &mut self.values)?;
        Ok(records)
    }
}

/// One column of the row group being read.
pub(super) enum Cursor {
    Bool(Chunk<BoolType>),
    Int32(Chunk<Int32Type>, IntAs),
    Int64(Chunk<Int64Type>, IntAs),
    Int96(Chunk<Int96Type>),
    Float(Chunk<FloatType>),
    Double(Chunk<DoubleType>),
    Bytes(Chunk<ByteArrayType>, BytesAs),
    Fixed(Chunk<FixedLenByteArrayType>, BytesAs),
}

impl Cursor {
    /// The cursor over `reader`, a chunk of a column planned as `kind`.
    pub(super) fn new(kind: Kind, reader: ColumnReader) -> Option<Self> {
        Some(match (kind, reader) {
            (Kind::Bool, ColumnReader::BoolColumnReader(r)) => Cursor::Bool(Chunk::new(r)),
            (Kind::Int32(how), ColumnReader::Int32ColumnReader(r)) => Cursor::Int32(Chunk::new(r), how),
            (Kind::Int64(how), ColumnReader::Int64ColumnReader(r)) => Cursor::Int64(Chunk::new(r), how),
            (Kind::Int96, ColumnReader::Int96ColumnReader(r)) => Cursor::Int96(Chunk::new(r)),
            (Kind::Float, ColumnReader::FloatColumnReader(r)) => Cursor::Float(Chunk::new(r)),
            (Kind::Double, ColumnReader::DoubleColumnReader(r)) => Cursor::Double(Chunk::new(r)),
            (Kind::Bytes(how), ColumnReader::ByteArrayColumnReader(r)) => Cursor::Bytes(Chunk::new(r), how),
            (Kind::Fixed(how), ColumnReader::FixedLenByteArrayColumnReader(r)) => Cursor::Fixed(Chunk::new(r), how),
            _ => return None,
        })
    }

    /// Reads the next `rows` rows and writes their cells (a null as an
    /// empty cell); the rows read, or why a value could not be written.
    pub(super) fn read(&mut self, rows: usize, nullable: bool, cells: &mut Cells) -> Result<usize, String> {
        let mut levels = std::mem::take(&mut cells.levels);
        let read = match self {
            Cursor::Bool(chunk) => write(chunk, rows, nullable, &mut levels, cells, |v, out| {
                text::boolean(*v, out);
                Ok(())
            }),
            Cursor::Int32(chunk, how) => {
                let how = *how;
                write(chunk, rows, nullable, &mut levels, cells, |&v, out| {
                    let value = if how == IntAs::Unsigned { i128::from(v as u32) } else { i128::from(v) };
                    integer(value, how, out);
                    Ok(())
                })
            }
            Cursor::Int64(chunk, how) => {
                let how = *how;
                write(chunk, rows, nullable, &mut levels, cells, |&v, out| {
                    let value = if how == IntAs::Unsigned { i128::from(v as u64) } else { i128::from(v) };
                    integer(value, how, out);
                    Ok(())
                })
            }
            Cursor::Int96(chunk) => write(chunk, rows, nullable, &mut levels, cells, |v, out| {
                text::int96(v.data(), out);
                Ok(())
            }),
            Cursor::Float(chunk) => write(chunk, rows, nullable, &mut levels, cells, |v, out| {
                text::float32(*v, out);
                Ok(())
            }),
            Cursor::Double(chunk) => write(chunk, rows, nullable, &mut levels, cells, |v, out| {
                text::float64(*v, out);
                Ok(())
            }),
            Cursor::Bytes(chunk, how) => {
                let how = *how;
                write(chunk, rows, nullable, &mut levels, cells, |v, out| bytes(v.data(), how, out))
            }
            Cursor::Fixed(chunk, how) => {
                let how = *how;
                write(chunk, rows, nullable, &mut levels, cells, |v, out| bytes(v.data(), how, out))
            }
        };
        cells.levels = levels;
        read
    }
}

/// Reads a batch from `chunk` and writes each row's cell into `cells`.
fn write<T: DataType>(
    chunk: &mut Chunk<T>,
    rows: usize,
    nullable: bool,
    levels: &mut Vec<i16>,
    cells: &mut Cells,
    mut cell: impl FnMut(&T::T, &mut Vec<u8>) -> Result<(), String>,
) -> Result<usize, String> {
    cells.clear();
    let read = chunk.read(rows, levels).map_err(|e| e.to_string())?;
    let mut values = chunk.values.iter();
    for row in 0..read {
        // A top-level optional column has levels 0 (null) and 1 (a value).
        let present = !nullable || levels.get(row).is_some_and(|&level| level > 0);
        if present {
            let value = values.next().ok_or("fewer values than the definition levels say")?;
            cell(value, &mut cells.bytes).map_err(|problem| format!("row {} of the batch: {problem}", row + 1))?;
        }
        cells.ends.push(cells.bytes.len());
    }
    Ok(read)
}

fn integer(value: i128, how: IntAs, out: &mut Vec<u8>) {
    // Dates and times came from an i32 or i64, so they fit an i64.
    match how {
        IntAs::Signed | IntAs::Unsigned => text::integer(value, out),
        IntAs::Decimal(scale) => text::decimal(value, scale, out),
        IntAs::Date => text::date(value as i64, out),
        IntAs::Time(unit) => text::time(value as i64, unit, out),
        IntAs::Timestamp(unit, utc) => text::timestamp(value as i64, unit, utc, out),
    }
}

fn bytes(value: &[u8], how: BytesAs, out: &mut Vec<u8>) -> Result<(), String> {
    match how {
        BytesAs::Text => out.extend_from_slice(value),
        BytesAs::Decimal(scale) => text::decimal(text::big_endian(value)?, scale, out),
        BytesAs::Uuid => text::uuid(value, out),
    }
    Ok(())
}

/// One column's cells of a batch, end to end, and the definition levels
/// its reads reuse.
#[derive(Debug, Default)]
pub(super) struct Cells {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    levels: Vec<i16>,
}

impl Cells {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// The cell of row `row` of the batch.
    pub(super) fn get(&self, row: usize) -> &[u8] {
        let start = if row == 0 { 0 } else { self.ends[row - 1] };
        &self.bytes[start..self.ends[row]]
    }
}
