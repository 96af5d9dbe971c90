//! A shard column's numbers in the narrowest layout that holds each one
//! exactly, and read back as f64 whatever the layout.
//!
//! Most stored numbers are far narrower than f64 (MNIST's pixels are bytes:
//! a 10,000-row shard was 63 MB as f64, 7.8 MB as bytes), and reading a
//! shard (RocksDB's checksums, blake3, decoding, the feature transform) costs
//! by the byte. Shards written before the narrow layouts hold only
//! `Numeric` columns and still read as they did.

use std::borrow::Cow;

use crate::dataset::{ColumnKind, ShardColumn};

impl ShardColumn {
    /// A numeric column in the narrowest layout that gives back every value
    /// bit for bit (NaN marks a missing value): bytes, then f32, then f64.
    pub fn numbers(values: Vec<f64>) -> Self {
        if values.len() <= u32::MAX as usize && values.iter().all(|&v| v.is_nan() || fits_byte(v)) {
            let mut missing = Vec::new();
            let bytes = values
                .iter()
                .enumerate()
                .map(|(r, &v)| {
                    if v.is_nan() {
                        missing.push(r as u32);
                    }
                    v as u8 // NaN casts to 0
                })
                .collect();
            return ShardColumn::Bytes { values: bytes, missing };
        }
        if values.iter().all(|&v| v.is_nan() || fits_f32(v)) {
            return ShardColumn::Float32(values.iter().map(|&v| v as f32).collect());
        }
        ShardColumn::Numeric(values)
    }

    /// What the column holds, whatever its layout.
    pub fn kind(&self) -> ColumnKind {
        match self {
            ShardColumn::Numeric(_) | ShardColumn::Bytes { .. } | ShardColumn::Float32(_) => ColumnKind::Numeric,
            ShardColumn::Categorical { .. } => ColumnKind::Categorical,
            ShardColumn::Text(_) => ColumnKind::Text,
        }
    }

    pub fn is_numeric(&self) -> bool {
        self.kind() == ColumnKind::Numeric
    }

    /// How many values (rows) the column holds.
    pub fn len(&self) -> usize {
        match self {
            ShardColumn::Numeric(v) => v.len(),
            ShardColumn::Categorical { codes, .. } => codes.len(),
            ShardColumn::Text(v) => v.len(),
            ShardColumn::Bytes { values, .. } => values.len(),
            ShardColumn::Float32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A numeric column's values as f64, NaN where missing (borrowed when
    /// stored as f64); none for categories and text.
    pub fn as_numbers(&self) -> Option<Cow<'_, [f64]>> {
        if let ShardColumn::Numeric(values) = self {
            return Some(Cow::Borrowed(values));
        }
        let mut out = Vec::with_capacity(self.len());
        self.each_number(|v| out.push(v)).then_some(Cow::Owned(out))
    }

    /// Calls `f` with each value of a numeric column in row order, NaN
    /// where missing, without widening the column first; false (and no
    /// call) for categories and text. A byte column's missing rows are in
    /// order ([`crate::dataset::Shard::validate`] refuses others).
    pub fn each_number(&self, mut f: impl FnMut(f64)) -> bool {
        match self {
            ShardColumn::Numeric(values) => values.iter().for_each(|&v| f(v)),
            ShardColumn::Float32(values) => values.iter().for_each(|&v| f(f64::from(v))),
            ShardColumn::Bytes { values, missing } => {
                let mut missing = missing.iter().peekable();
                for (r, &b) in values.iter().enumerate() {
                    let gone = missing.next_if(|&&m| m as usize == r).is_some();
                    f(if gone { f64::NAN } else { f64::from(b) });
                }
            }
            ShardColumn::Categorical { .. } | ShardColumn::Text(_) => return false,
        }
        true
    }

    /// Turns a numeric column of any layout into `Numeric`, for code that
    /// changes its values in place; other kinds are left as they are.
    pub fn widen(&mut self) {
        if !matches!(self, ShardColumn::Numeric(_))
            && let Some(values) = self.as_numbers()
        {
            *self = ShardColumn::Numeric(values.into_owned());
        }
    }

    /// Appends the numbers of `more` (a numeric column) to this numeric
    /// column: in their layout when both share it, else both as f64.
    /// Other kinds are left as they are.
    pub fn extend_numbers(&mut self, more: ShardColumn) {
        let rows = self.len();
        match (&mut *self, more) {
            (ShardColumn::Numeric(a), ShardColumn::Numeric(b)) => a.extend(b),
            (ShardColumn::Float32(a), ShardColumn::Float32(b)) => a.extend(b),
            (ShardColumn::Bytes { values, missing }, ShardColumn::Bytes { values: more, missing: more_missing })
                if rows + more.len() <= u32::MAX as usize =>
            {
                values.extend(more);
                missing.extend(more_missing.into_iter().map(|r| r + rows as u32));
            }
            (this, more) if this.is_numeric() && more.is_numeric() => {
                this.widen();
                if let (ShardColumn::Numeric(a), Some(b)) = (this, more.as_numbers()) {
                    a.extend_from_slice(&b);
                }
            }
            _ => {}
        }
    }

    /// The values of rows `range` (within [`Self::len`]), in the same layout.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        match self {
            ShardColumn::Numeric(v) => ShardColumn::Numeric(v[range].to_vec()),
            ShardColumn::Float32(v) => ShardColumn::Float32(v[range].to_vec()),
            ShardColumn::Bytes { values, missing } => ShardColumn::Bytes {
                values: values[range.clone()].to_vec(),
                missing: missing
                    .iter()
                    .filter(|&&r| range.contains(&(r as usize)))
                    .map(|&r| r - range.start as u32)
                    .collect(),
            },
            ShardColumn::Categorical { values, codes } => {
                ShardColumn::Categorical { values: values.clone(), codes: codes[range].to_vec() }
            }
            ShardColumn::Text(v) => ShardColumn::Text(v[range].to_vec()),
        }
    }

    /// The values at rows `keep` (each below [`Self::len`]), as a column of
    /// the same kind.
    pub fn select(&self, keep: &[usize]) -> Self {
        match self {
            ShardColumn::Categorical { values, codes } => {
                ShardColumn::Categorical { values: values.clone(), codes: keep.iter().map(|&r| codes[r]).collect() }
            }
            ShardColumn::Text(values) => ShardColumn::Text(keep.iter().map(|&r| values[r].clone()).collect()),
            // Bytes stay bytes, without a trip through f64 (what `numbers`
            // would give them back as).
            ShardColumn::Bytes { values, missing } => {
                let gone = |r: usize| missing.binary_search(&(r as u32)).is_ok();
                let missing = (0..keep.len()).filter(|&i| gone(keep[i])).map(|i| i as u32).collect();
                let values = keep.iter().map(|&r| if gone(r) { 0 } else { values[r] }).collect();
                ShardColumn::Bytes { values, missing }
            }
            numeric => {
                let values = numeric.as_numbers().unwrap_or_default();
                ShardColumn::numbers(keep.iter().map(|&r| values[r]).collect())
            }
        }
    }
}

/// Whether the byte layout gives `v` back bit for bit (a whole number in
/// 0..=255, and not -0.0).
pub fn fits_byte(v: f64) -> bool {
    f64::from(v as u8).to_bits() == v.to_bits()
}

/// Whether f32 gives `v` back bit for bit.
pub fn fits_f32(v: f64) -> bool {
    f64::from(v as f32).to_bits() == v.to_bits()
}

/// f32 values as one run of little-endian bytes: bincode then reads them
/// with one copy instead of value by value.
pub mod f32_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        serializer.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        if bytes.len() % 4 != 0 {
            return Err(D::Error::custom(format!("{} bytes are not a whole number of f32 values", bytes.len())));
        }
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        codec,
        dataset::{Shard, Split},
    };

    fn same_bits(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn each_column_takes_the_narrowest_layout_that_gives_its_values_back() {
        let cases: [(Vec<f64>, &str); 6] = [
            (vec![0.0, 255.0, f64::NAN, 7.0], "bytes"),
            (vec![256.0, 1.0], "f32"),
            (vec![-0.0, 1.0], "f32"), // -0.0 is not the byte 0
            (vec![0.5, f64::NAN, -3.0, 16_777_216.0], "f32"),
            (vec![0.1, 1.0], "f64"),
            (vec![16_777_217.0], "f64"),
        ];
        for (values, layout) in cases {
            let column = ShardColumn::numbers(values.clone());
            let got = match &column {
                ShardColumn::Bytes { .. } => "bytes",
                ShardColumn::Float32(_) => "f32",
                ShardColumn::Numeric(_) => "f64",
                _ => "other",
            };
            assert_eq!(got, layout, "{values:?}");
            assert!(same_bits(&column.as_numbers().unwrap(), &values), "{values:?}");
            assert_eq!(column.len(), values.len());
            assert!(column.is_numeric());
        }
    }

    #[test]
    fn narrow_columns_survive_encoding_and_old_shards_still_decode() {
        let shard = Shard {
            first_row: 3,
            columns: vec![
                ShardColumn::numbers(vec![f64::NAN, 200.0, 0.0]),
                ShardColumn::numbers(vec![1.5, f64::NAN, -2.0]),
                ShardColumn::Numeric(vec![0.1, 0.2, 0.3]),
            ],
            splits: vec![Split::Train; 3],
        };
        let bytes = codec::encode(&shard).unwrap();
        let back: Shard = codec::decode(&bytes, codec::MAX_RECORD).unwrap();
        assert_eq!(back.columns[0], ShardColumn::Bytes { values: vec![0, 200, 0], missing: vec![0] });
        assert!(same_bits(&back.columns[1].as_numbers().unwrap(), &[1.5, f64::NAN, -2.0]));
        assert_eq!(back.columns[2], shard.columns[2]);
        // Pinned bytes: variant, then the bytes as one run, then the missing rows.
        let narrow = ShardColumn::Bytes { values: vec![1, 2], missing: vec![1] };
        assert_eq!(codec::encode(&narrow).unwrap(), [3, 2, 1, 2, 1, 1]);
        assert_eq!(codec::encode(&ShardColumn::Float32(vec![1.0])).unwrap(), [4, 4, 0, 0, 0x80, 0x3f]);
        // The layout of shards written before bytes and f32: variant 0, length, f64s.
        let old = codec::encode(&ShardColumn::Numeric(vec![1.0, 2.0])).unwrap();
        assert_eq!(old[..2], [0, 2]);
        assert_eq!(codec::decode::<ShardColumn>(&old, 1024).unwrap(), ShardColumn::Numeric(vec![1.0, 2.0]));
    }

    #[test]
    fn a_crafted_column_is_refused_not_read_past_its_rows() {
        let shard = Shard {
            first_row: 0,
            columns: vec![ShardColumn::Bytes { values: vec![1, 2], missing: vec![2] }],
            splits: vec![Split::Test; 2],
        };
        assert_eq!(
            shard.validate().unwrap_err().to_string(),
            "shard column 0 lists row 2 as missing, past the shard's 2 rows"
        );
        let unordered = Shard {
            columns: vec![ShardColumn::Bytes { values: vec![1, 2, 3], missing: vec![2, 0] }],
            splits: vec![Split::Test; 3],
            ..shard
        };
        assert_eq!(unordered.validate().unwrap_err().to_string(), "shard column 0 lists its missing rows out of order");
        let torn = codec::encode(&(4u32, serde_bytes::Bytes::new(&[0, 0, 128, 63, 0]))).unwrap();
        assert!(codec::decode::<ShardColumn>(&torn, 1024).unwrap_err().to_string().contains("whole number of f32"));
    }

    #[test]
    fn selected_rows_keep_their_values_and_missing_marks() {
        let column = ShardColumn::numbers(vec![4.0, f64::NAN, 9.0, 1.0]);
        let picked = column.select(&[3, 1, 0]);
        assert!(same_bits(&picked.as_numbers().unwrap(), &[1.0, f64::NAN, 4.0]));
        assert_eq!(
            picked,
            ShardColumn::numbers(vec![1.0, f64::NAN, 4.0]),
            "bytes picked as bytes, as numbers would be"
        );
        let mut joined = picked.clone();
        joined.extend_numbers(ShardColumn::numbers(vec![f64::NAN, 2.0]));
        assert!(matches!(joined, ShardColumn::Bytes { .. }));
        joined.extend_numbers(ShardColumn::numbers(vec![0.5]));
        assert!(same_bits(&joined.as_numbers().unwrap(), &[1.0, f64::NAN, 4.0, f64::NAN, 2.0, 0.5]));
        let sliced = ShardColumn::numbers(vec![1.0, f64::NAN, 3.0, f64::NAN]).slice(1..3);
        assert_eq!(sliced, ShardColumn::Bytes { values: vec![0, 3], missing: vec![0] });
        let mut wide = picked.clone();
        wide.widen();
        assert!(matches!(wide, ShardColumn::Numeric(_)));
        assert!(same_bits(&wide.as_numbers().unwrap(), &[1.0, f64::NAN, 4.0]));
    }
}
