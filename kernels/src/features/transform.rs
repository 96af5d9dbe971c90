//! Applying a fitted pipeline to rows.

use std::{collections::BTreeMap, ops::Range};

use mass_protocol::{
    dataset::{ColumnKind, Shard, ShardColumn},
    features::{ColumnTransform, FittedPipeline, Unseen},
};
use ndarray::Array2;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TransformError {
    #[error("column '{column}': category '{value}' was not seen when the pipeline was fitted")]
    Unseen { column: String, value: String },
    #[error("column '{column}' is {got} but the pipeline expects {expected}")]
    Kind { column: String, got: &'static str, expected: &'static str },
    #[error("the rows have {got} columns but the pipeline was fitted on {expected}")]
    Shape { got: usize, expected: usize },
    #[error("column '{column}' has {got} values for {rows} rows")]
    Length { column: String, got: usize, rows: usize },
}

fn kind(column: &ShardColumn) -> &'static str {
    match column.kind() {
        ColumnKind::Numeric => "numeric",
        ColumnKind::Categorical => "categorical",
        ColumnKind::Text => "text",
    }
}

/// A numeric column's feature: missing values filled, then shifted and scaled.
struct Scaled<'a> {
    feature: usize,
    values: Values<'a>,
    fill: f64,
    shift: f64,
    scale: f64,
}

/// A numeric column's values, as stored.
enum Values<'a> {
    Wide(&'a [f64]),
    Single(&'a [f32]),
    /// Bytes are scaled as numbers (a byte is never NaN); the missing rows
    /// are filled afterwards. `missing` holds the shard's row numbers, and
    /// `values` starts at row `first`.
    Bytes {
        values: &'a [u8],
        missing: &'a [u32],
        first: usize,
    },
}

impl<'a> Scaled<'a> {
    fn new(feature: usize, column: &'a ShardColumn, fill: f64, shift: f64, scale: f64) -> Option<Self> {
        Self::of_rows(feature, column, 0..column.len(), fill, shift, scale)
    }

    /// Rows `rows` of `column`, which holds them (the caller checks).
    fn of_rows(
        feature: usize,
        column: &'a ShardColumn,
        rows: Range<usize>,
        fill: f64,
        shift: f64,
        scale: f64,
    ) -> Option<Self> {
        let values = match column {
            ShardColumn::Numeric(values) => Values::Wide(&values[rows]),
            ShardColumn::Float32(values) => Values::Single(&values[rows]),
            ShardColumn::Bytes { values, missing } => {
                Values::Bytes { values: &values[rows.clone()], missing, first: rows.start }
            }
            _ => return None,
        };
        Some(Self { feature, values, fill, shift, scale })
    }
}

#[inline(always)]
fn feature_of(v: f64, fill: f64, shift: f64, scale: f64) -> f32 {
    ((if v.is_nan() { fill } else { v } - shift) * scale) as f32
}

/// Rows written per pass over the numeric columns: each column's run of
/// values in the block is scaled as vectors, then put in place in rows that
/// are still in cache. (Scaling a whole column with a plain loop was not
/// vectorized, for the NaN test, and took half the time of a 1,000-row
/// MNIST batch.)
const ROW_BLOCK: usize = 64;

/// Numeric columns whose features are side by side are written 8 at a
/// time: each row gets one run of 8 values instead of 8 scattered stores.
const GROUP: usize = 8;

/// Writes the numeric columns' features, compiled for AVX2 where the CPU
/// has it: four values per instruction instead of the baseline's (SSE2)
/// two. The formula is the same IEEE operations at either width (no fused
/// multiply-add), so the features are bit for bit the baseline's. (Compiled
/// for AVX-512 it ran 2-6x slower: LLVM turned the NaN test into masked
/// blends.)
fn write_scaled(out: &mut Array2<f32>, columns: &[Scaled]) {
    on_avx2(WriteScaled { out, columns })
}

/// Runs `op` compiled for AVX2 where the CPU has it, else as built.
fn on_avx2<Op: pulp::WithSimd<Output = ()>>(op: Op) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return pulp::Simd::vectorize(simd, op);
    }
    op.with_simd(pulp::Scalar::new())
}

struct WriteScaled<'a, 'c> {
    out: &'a mut Array2<f32>,
    columns: &'a [Scaled<'c>],
}

impl pulp::WithSimd for WriteScaled<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        write_scaled_on(self.out, self.columns)
    }
}

#[inline(always)]
fn write_scaled_on(out: &mut Array2<f32>, columns: &[Scaled]) {
    let (rows, width) = out.dim();
    assert!(columns.iter().all(|c| c.feature < width), "a feature past the matrix");
    let out = out.as_slice_mut().expect("a new matrix is in standard layout");
    let mut scaled = [[0f32; ROW_BLOCK]; GROUP];
    for start in (0..rows).step_by(ROW_BLOCK) {
        let end = (start + ROW_BLOCK).min(rows);
        let block = &mut out[start * width..end * width];
        for group in columns.chunks(GROUP) {
            for (c, into) in group.iter().zip(&mut scaled) {
                match &c.values {
                    Values::Wide(values) => scale_run(c, &values[start..end], into),
                    Values::Single(values) => scale_run(c, &values[start..end], into),
                    Values::Bytes { values, .. } => scale_run(c, &values[start..end], into),
                }
            }
            let first = group[0].feature;
            if group.len() == GROUP && group.iter().enumerate().all(|(j, c)| c.feature == first + j) {
                for (r, row) in block.chunks_exact_mut(width).enumerate() {
                    let run: &mut [f32; GROUP] =
                        (&mut row[first..first + GROUP]).try_into().expect("a group of features");
                    for (j, value) in run.iter_mut().enumerate() {
                        *value = scaled[j][r];
                    }
                }
            } else {
                for (c, values) in group.iter().zip(&scaled) {
                    for (row, &s) in block.chunks_exact_mut(width).zip(values) {
                        row[c.feature] = s;
                    }
                }
            }
        }
    }
    for c in columns {
        if let Values::Bytes { missing, first, .. } = &c.values {
            let filled = feature_of(f64::NAN, c.fill, c.shift, c.scale);
            // The list is sorted in a valid shard; its part in these rows is found, not assumed.
            let from = missing.partition_point(|&r| (r as usize) < *first);
            let in_rows = |&r: &u32| (r as usize).checked_sub(*first).filter(|&r| r < rows);
            for r in missing[from..].iter().map_while(in_rows) {
                out[r * width + c.feature] = filled;
            }
        }
    }
}

/// `into[i]` is the feature of `values[i]`, in runs of 8 that the compiler
/// turns into vector instructions.
#[inline(always)]
fn scale_run<T: Copy + Into<f64>>(c: &Scaled, values: &[T], into: &mut [f32]) {
    let (fill, shift, scale) = (c.fill, c.shift, c.scale);
    let feature = move |v: T| feature_of(v.into(), fill, shift, scale);
    let mut runs = into.chunks_exact_mut(8).zip(values.chunks_exact(8));
    for (s, v) in &mut runs {
        for i in 0..8 {
            s[i] = feature(v[i]);
        }
    }
    let done = values.len() / 8 * 8;
    for (s, &v) in into[done..].iter_mut().zip(&values[done..]) {
        *s = feature(v);
    }
}

/// Features of a row-major matrix of the pipeline's input columns (the
/// label left out, the others in order), when every one of them is scaled
/// numbers and no feature is derived across columns: each row of the
/// matrix gives the same row of features, in one pass that reads and
/// writes in order. `None` for any other pipeline (it reads a shard).
/// The features are bit for bit those [`transform`] gives the same numbers
/// as a shard.
pub fn transform_matrix<T: Copy + Into<f64>>(
    pipeline: &FittedPipeline,
    values: &[T],
    columns: usize,
) -> Option<Result<Array2<f32>, TransformError>> {
    let params = matrix_params(pipeline)?;
    if params.len() != columns || columns == 0 {
        return Some(Err(TransformError::Shape { got: columns, expected: params.len() }));
    }
    let rows = values.len() / columns;
    let mut out = Array2::<f32>::zeros((rows, columns));
    let into = out.as_slice_mut().expect("a new matrix is in standard layout");
    on_avx2(ScaleRows { values: &values[..rows * columns], params: &params, out: into });
    Some(Ok(match &pipeline.projection {
        Some(projection) => super::derived::project(projection, out),
        None => out,
    }))
}

/// Whether [`transform_matrix`] reads matrices for `pipeline`: every input
/// column but the label is scaled numbers and no feature is derived across
/// them.
pub fn reads_matrix(pipeline: &FittedPipeline) -> bool {
    pipeline.crosses.is_empty()
        && pipeline.transforms.iter().enumerate().all(|(c, transform)| match transform {
            ColumnTransform::Drop => c == pipeline.label,
            ColumnTransform::Numeric { .. } => true,
            _ => false,
        })
}

/// The (fill, shift, scale) of each input column but the label, for a
/// pipeline that [`reads_matrix`].
fn matrix_params(pipeline: &FittedPipeline) -> Option<Vec<(f64, f64, f64)>> {
    let params = pipeline.transforms.iter().filter_map(|transform| match transform {
        ColumnTransform::Numeric { fill, offset, scale } => Some((*fill, *offset, *scale)),
        _ => None,
    });
    reads_matrix(pipeline).then(|| params.collect())
}

/// Rows of values and the (fill, shift, scale) of each column.
struct ScaleRows<'a, T> {
    values: &'a [T],
    params: &'a [(f64, f64, f64)],
    out: &'a mut [f32],
}

impl<T: Copy + Into<f64>> pulp::WithSimd for ScaleRows<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        scale_rows(self)
    }
}

#[inline(always)]
fn scale_rows<T: Copy + Into<f64>>(op: ScaleRows<'_, T>) {
    let width = op.params.len();
    for (row, out) in op.values.chunks_exact(width).zip(op.out.chunks_exact_mut(width)) {
        for ((o, &v), &(fill, shift, scale)) in out.iter_mut().zip(row).zip(op.params) {
            *o = feature_of(v.into(), fill, shift, scale);
        }
    }
}

/// Features of rows `range` of `shard` for a pipeline that scales numbers
/// and nothing else ([`reads_matrix`]), read where they are stored: scoring
/// a stored shard a block of rows at a time cut each block's rows out
/// first, a copy of the whole shard (5% of a scoring node's samples). Bit
/// for bit what [`transform`] gives the rows cut out; `None` for any other
/// pipeline.
pub fn transform_range(
    pipeline: &FittedPipeline,
    shard: &Shard,
    range: Range<usize>,
) -> Option<Result<Array2<f32>, TransformError>> {
    if !reads_matrix(pipeline) {
        return None;
    }
    if shard.columns.len() != pipeline.transforms.len() {
        return Some(Err(TransformError::Shape { got: shard.columns.len(), expected: pipeline.transforms.len() }));
    }
    let rows = shard.rows();
    let range = range.start.min(rows)..range.end.min(rows);
    let mut numeric = Vec::new();
    for ((transform, column), name) in pipeline.transforms.iter().zip(&shard.columns).zip(&pipeline.columns) {
        let ColumnTransform::Numeric { fill, offset: shift, scale } = transform else { continue };
        if column.len() != rows {
            return Some(Err(TransformError::Length { column: name.clone(), got: column.len(), rows }));
        }
        let Some(scaled) = Scaled::of_rows(numeric.len(), column, range.clone(), *fill, *shift, *scale) else {
            return Some(Err(TransformError::Kind { column: name.clone(), got: kind(column), expected: "numeric" }));
        };
        numeric.push(scaled);
    }
    let mut out = Array2::<f32>::zeros((range.len(), numeric.len()));
    write_scaled(&mut out, &numeric);
    Some(Ok(match &pipeline.projection {
        Some(projection) => super::derived::project(projection, out),
        None => out,
    }))
}

/// Features of every row of a shard, as a rows x features matrix.
pub fn transform(pipeline: &FittedPipeline, shard: &Shard) -> Result<Array2<f32>, TransformError> {
    if shard.columns.len() != pipeline.transforms.len() {
        return Err(TransformError::Shape { got: shard.columns.len(), expected: pipeline.transforms.len() });
    }
    let rows = shard.rows();
    let base = pipeline.column_features();
    let crossed: usize = pipeline.crosses.iter().map(super::derived::cross_width).sum();
    let mut out = Array2::<f32>::zeros((rows, base + crossed));
    let mut offset = 0;
    let mut numeric = Vec::new();
    for ((transform, column), name) in pipeline.transforms.iter().zip(&shard.columns).zip(&pipeline.columns) {
        let mismatch = |expected| TransformError::Kind { column: name.clone(), got: kind(column), expected };
        match transform {
            ColumnTransform::Drop => {}
            ColumnTransform::Numeric { fill, offset: shift, scale } => {
                let Some(scaled) = Scaled::new(offset, column, *fill, *shift, *scale) else {
                    return Err(mismatch("numeric"));
                };
                if column.len() != rows {
                    return Err(TransformError::Length { column: name.clone(), got: column.len(), rows });
                }
                numeric.push(scaled);
                offset += 1;
            }
            ColumnTransform::OneHot { categories, unseen } => {
                let ShardColumn::Categorical { values, codes } = column else { return Err(mismatch("categorical")) };
                let index: BTreeMap<&str, usize> =
                    categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
                for (r, code) in codes.iter().enumerate() {
                    let Some(value) = values.get(*code as usize) else { continue };
                    match (index.get(value.as_str()), unseen) {
                        (Some(i), _) => out[[r, offset + i]] = 1.0,
                        (None, Unseen::Ignore) => {}
                        (None, Unseen::Error) => {
                            return Err(TransformError::Unseen { column: name.clone(), value: value.clone() });
                        }
                    }
                }
                offset += categories.len();
            }
            ColumnTransform::Binned { fill, edges } => {
                let Some(values) = column.as_numbers() else { return Err(mismatch("numeric")) };
                for (r, v) in values.iter().enumerate() {
                    let v = if v.is_nan() { *fill } else { *v };
                    out[[r, offset + super::derived::bin_of(edges, v)]] = 1.0;
                }
                offset += edges.len() + 1;
            }
            ColumnTransform::Ordinal { categories } => {
                let ShardColumn::Categorical { values, codes } = column else { return Err(mismatch("categorical")) };
                let index: BTreeMap<&str, usize> =
                    categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
                // Codes are per shard: map each of this shard's values once.
                let position: Vec<f32> =
                    values.iter().map(|v| index.get(v.as_str()).map_or(-1.0, |i| *i as f32)).collect();
                for (r, code) in codes.iter().enumerate() {
                    out[[r, offset]] = position.get(*code as usize).copied().unwrap_or(f32::NAN);
                }
                offset += 1;
            }
            ColumnTransform::Tfidf { spec, idf } => {
                let ShardColumn::Text(values) = column else { return Err(mismatch("text")) };
                let position: BTreeMap<u32, usize> = idf.keys().enumerate().map(|(i, b)| (*b, i)).collect();
                for (r, text) in values.iter().enumerate() {
                    let Some(text) = text else { continue };
                    let mut tf: BTreeMap<u32, f64> = BTreeMap::new();
                    for bucket in super::text::buckets(text, spec.ngram_max, spec.buckets) {
                        if idf.contains_key(&bucket) {
                            *tf.entry(bucket).or_default() += 1.0;
                        }
                    }
                    let weights: Vec<(usize, f64)> = tf
                        .into_iter()
                        .map(|(b, tf)| (position[&b], if spec.sublinear_tf { 1.0 + tf.ln() } else { tf } * idf[&b]))
                        .collect();
                    let norm = weights.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
                    for (i, w) in weights {
                        out[[r, offset + i]] = if norm > 0.0 { (w / norm) as f32 } else { 0.0 };
                    }
                }
                offset += idf.len();
            }
        }
    }
    write_scaled(&mut out, &numeric);
    if !pipeline.crosses.is_empty() {
        let columns = out.slice(ndarray::s![.., ..base]).to_owned();
        super::derived::apply_crosses(&pipeline.crosses, columns.view(), shard, &mut out, base);
    }
    if let Some(projection) = &pipeline.projection {
        out = super::derived::project(projection, out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mass_protocol::dataset::Split;

    fn scaled(fill: f64, shift: f64, scale: f64) -> ColumnTransform {
        ColumnTransform::Numeric { fill, offset: shift, scale }
    }

    fn pipeline(columns: &[&str], transforms: Vec<ColumnTransform>) -> FittedPipeline {
        FittedPipeline {
            spec: Default::default(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            transforms,
            label: columns.len(),
            classes: Vec::new(),
            features: 0,
            task: mass_protocol::jobs::Task::Regression,
            target: None,
            crosses: Vec::new(),
            projection: None,
        }
    }

    /// Numeric columns around a one-hot one, over more rows than one block
    /// and not a multiple of it, with missing values: every cell is the
    /// formula's, wherever its feature lands.
    #[test]
    fn numeric_columns_written_in_row_blocks_give_every_cell_its_value() {
        let rows = 2 * ROW_BLOCK + 7;
        let value = |c: usize, r: usize| if (r + c).is_multiple_of(11) { f64::NAN } else { (r * 3 + c) as f64 };
        let pipeline = pipeline(
            &["a", "colour", "b"],
            vec![
                scaled(1.5, 2.0, 0.5),
                ColumnTransform::OneHot { categories: vec!["red".into(), "blue".into()], unseen: Unseen::Ignore },
                scaled(-1.0, 0.0, 2.0),
            ],
        );
        let shard = Shard {
            first_row: 0,
            columns: vec![
                ShardColumn::Numeric((0..rows).map(|r| value(0, r)).collect()),
                ShardColumn::Categorical {
                    values: vec!["blue".into(), "red".into()],
                    codes: (0..rows as u32).map(|r| r % 2).collect(),
                },
                ShardColumn::Numeric((0..rows).map(|r| value(2, r)).collect()),
            ],
            splits: vec![Split::Train; rows],
        };
        let out = transform(&pipeline, &shard).unwrap();
        assert_eq!(out.dim(), (rows, 4));
        for r in 0..rows {
            let a = if value(0, r).is_nan() { 1.5 } else { value(0, r) };
            let b = if value(2, r).is_nan() { -1.0 } else { value(2, r) };
            let (red, blue) = if r % 2 == 1 { (1.0, 0.0) } else { (0.0, 1.0) };
            assert_eq!(out.row(r).to_vec(), vec![((a - 2.0) * 0.5) as f32, red, blue, (b * 2.0) as f32], "row {r}");
        }
    }

    /// Columns stored as bytes (with missing rows), f32 and f64 give the
    /// features the same values stored as f64 give, bit for bit.
    #[test]
    fn narrow_layouts_give_the_features_of_the_same_numbers_stored_wide() {
        let rows = ROW_BLOCK + 9;
        let nan_every = |k: usize, r: usize, v: f64| if r.is_multiple_of(k) { f64::NAN } else { v };
        let columns: Vec<Vec<f64>> = vec![
            (0..rows).map(|r| nan_every(5, r, (r * 37 % 256) as f64)).collect(),
            (0..rows).map(|r| nan_every(7, r, r as f64 * 1.5 - 40.0)).collect(),
            (0..rows).map(|r| nan_every(9, r, r as f64 * 0.1)).collect(),
        ];
        let pipeline = pipeline(
            &["bytes", "single", "wide"],
            vec![scaled(3.0, 100.0, 0.01), scaled(-1.0, 2.0, 0.3), scaled(0.5, 0.0, 3.0)],
        );
        let shard = |narrow: bool| Shard {
            first_row: 0,
            columns: columns
                .iter()
                .map(|v| if narrow { ShardColumn::numbers(v.clone()) } else { ShardColumn::Numeric(v.clone()) })
                .collect(),
            splits: vec![Split::Test; rows],
        };
        let narrow = shard(true);
        assert!(matches!(narrow.columns[0], ShardColumn::Bytes { .. }));
        assert!(matches!(narrow.columns[1], ShardColumn::Float32(_)));
        assert!(matches!(narrow.columns[2], ShardColumn::Numeric(_)));
        assert_eq!(transform(&pipeline, &narrow).unwrap(), transform(&pipeline, &shard(false)).unwrap());
    }

    /// Twenty numeric columns with a one-hot column after the tenth: runs of
    /// 8 side-by-side features are written together, the rest one by one,
    /// and every cell is the formula's.
    #[test]
    fn groups_of_side_by_side_features_give_every_cell_its_value() {
        let rows = ROW_BLOCK + 5;
        let value =
            |c: usize, r: usize| if (r * 7 + c).is_multiple_of(13) { f64::NAN } else { ((r * 5 + c * 3) % 256) as f64 };
        let mut names = Vec::new();
        let mut transforms = Vec::new();
        let mut columns = Vec::new();
        for c in 0..20 {
            if c == 10 {
                names.push("colour".to_string());
                transforms.push(ColumnTransform::OneHot {
                    categories: vec!["red".into(), "blue".into()],
                    unseen: Unseen::Ignore,
                });
                columns.push(ShardColumn::Categorical {
                    values: vec!["blue".into(), "red".into()],
                    codes: (0..rows as u32).map(|r| r % 2).collect(),
                });
            }
            names.push(format!("n{c}"));
            transforms.push(scaled(c as f64, 1.5, 0.25 + c as f64));
            columns.push(ShardColumn::numbers((0..rows).map(|r| value(c, r)).collect()));
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let shard = Shard { first_row: 0, columns, splits: vec![Split::Test; rows] };
        let out = transform(&pipeline(&names, transforms), &shard).unwrap();
        assert_eq!(out.dim(), (rows, 22));
        for r in 0..rows {
            for c in 0..20 {
                let v = if value(c, r).is_nan() { c as f64 } else { value(c, r) };
                let feature = if c < 10 { c } else { c + 2 };
                assert_eq!(out[[r, feature]], ((v - 1.5) * (0.25 + c as f64)) as f32, "row {r} column {c}");
            }
            let (red, blue) = if r % 2 == 1 { (1.0, 0.0) } else { (0.0, 1.0) };
            assert_eq!((out[[r, 10]], out[[r, 11]]), (red, blue), "row {r}");
        }
    }

    /// `count` numeric columns of `rows` cells, `value`'s, NaN for missing,
    /// stored in turn as bytes, f32 (scaled) and f64 (scaled and shifted).
    fn mixed_layouts(count: usize, rows: usize, value: impl Fn(usize, usize) -> f64) -> Vec<ShardColumn> {
        (0..count)
            .map(|c| {
                let values = (0..rows).map(|r| value(c, r));
                match c % 3 {
                    0 => ShardColumn::numbers(values.collect()),
                    1 => ShardColumn::Float32(values.map(|v| v as f32 * 0.37).collect()),
                    _ => ShardColumn::Numeric(values.map(|v| v * 0.013 - 1.0).collect()),
                }
            })
            .collect()
    }

    /// The features written with the CPU's widest vectors are the
    /// baseline loop's, bit for bit, in every layout and with missing values.
    #[test]
    fn wide_vectors_give_the_baseline_features_bit_for_bit() {
        let rows = 3 * ROW_BLOCK + 5;
        let value = |c: usize, r: usize| {
            if (r * 7 + c).is_multiple_of(17) { f64::NAN } else { ((r * 31 + c * 7) % 256) as f64 }
        };
        let columns = mixed_layouts(19, rows, value);
        assert!(matches!(columns[0], ShardColumn::Bytes { .. }));
        let scaled: Vec<Scaled> = columns
            .iter()
            .enumerate()
            .map(|(c, column)| Scaled::new(c, column, c as f64 * 0.5, 3.1 - c as f64, 0.013 * (c + 1) as f64).unwrap())
            .collect();
        let mut dispatched = Array2::zeros((rows, 19));
        write_scaled(&mut dispatched, &scaled);
        let mut baseline = Array2::zeros((rows, 19));
        write_scaled_on(&mut baseline, &scaled);
        let bits = |m: &Array2<f32>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&dispatched), bits(&baseline));
    }

    /// Rows read in place give the features of the same rows cut out, bit
    /// for bit, over ranges inside and across blocks, with missing bytes
    /// and a label column skipped; ranges past the rows are cut to them; a
    /// pipeline with other columns reads the rows cut out.
    #[test]
    fn rows_read_in_place_give_the_features_of_the_rows_cut_out() {
        let rows = 3 * ROW_BLOCK + 9;
        let value = |c: usize, r: usize| {
            if (r * 5 + c).is_multiple_of(7) { f64::NAN } else { ((r * 13 + c * 29) % 256) as f64 }
        };
        let mut columns = mixed_layouts(10, rows, value);
        assert!(matches!(&columns[0], ShardColumn::Bytes { missing, .. } if !missing.is_empty()));
        columns.insert(4, ShardColumn::Categorical { values: vec!["a".into()], codes: vec![0; rows] });
        let mut names: Vec<String> = (0..10).map(|c| format!("c{c}")).collect();
        names.insert(4, "label".into());
        let mut transforms: Vec<ColumnTransform> =
            (0..10).map(|c| scaled(c as f64, 2.0 - c as f64, 0.02 * (c + 1) as f64)).collect();
        transforms.insert(4, ColumnTransform::Drop);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut pipeline = pipeline(&names, transforms);
        pipeline.label = 4;
        let shard = Shard { first_row: 100, columns, splits: vec![Split::Test; rows] };
        let bits = |m: &Array2<f32>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for range in [0..rows, 0..1, 3..ROW_BLOCK + 3, ROW_BLOCK..2 * ROW_BLOCK, rows - 5..rows, 7..7] {
            let in_place = transform_range(&pipeline, &shard, range.clone()).unwrap().unwrap();
            let cut_out = transform(&pipeline, &shard.slice_rows(range.clone())).unwrap();
            assert_eq!(in_place.dim(), (range.len(), 10));
            assert_eq!(bits(&in_place), bits(&cut_out), "rows {range:?}");
        }
        let past = transform_range(&pipeline, &shard, rows - 2..rows + 5).unwrap().unwrap();
        assert_eq!(bits(&past), bits(&transform(&pipeline, &shard.slice_rows(rows - 2..rows)).unwrap()));
        let mut categorical = pipeline.clone();
        categorical.transforms[4] = ColumnTransform::Ordinal { categories: vec!["a".into()] };
        assert!(transform_range(&categorical, &shard, 0..3).is_none());
    }

    /// A row-major matrix of the input columns gives the features the same
    /// numbers give as a shard, bit for bit, in each layout and with
    /// missing values; a pipeline with another kind of column reads shards.
    #[test]
    fn a_matrix_gives_the_features_of_the_same_rows_as_a_shard() {
        let (rows, columns) = (ROW_BLOCK + 11, 5);
        let value = |r: usize, c: usize| {
            if (r + 2 * c).is_multiple_of(13) { f64::NAN } else { ((r * 17 + c * 5) % 256) as f64 }
        };
        let mut names: Vec<String> = (0..columns).map(|c| format!("c{c}")).collect();
        names.insert(2, "label".into());
        let mut transforms: Vec<ColumnTransform> =
            (0..columns).map(|c| scaled(c as f64 + 0.5, 7.0 * c as f64, 0.03 + c as f64 * 0.1)).collect();
        transforms.insert(2, ColumnTransform::Drop);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut pipeline = pipeline(&names, transforms);
        pipeline.label = 2;
        let flat: Vec<f64> = (0..rows).flat_map(|r| (0..columns).map(move |c| value(r, c))).collect();
        let mut shard_columns: Vec<ShardColumn> =
            (0..columns).map(|c| ShardColumn::Numeric((0..rows).map(|r| value(r, c)).collect())).collect();
        shard_columns.insert(2, ShardColumn::Numeric(vec![f64::NAN; rows]));
        let shard = Shard { first_row: 0, columns: shard_columns, splits: vec![Split::Test; rows] };
        let expected = transform(&pipeline, &shard).unwrap();
        let bits = |m: &Array2<f32>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let wide = transform_matrix(&pipeline, &flat, columns).unwrap().unwrap();
        assert_eq!(bits(&wide), bits(&expected));
        let single: Vec<f32> = flat.iter().map(|&v| v as f32).collect();
        assert_eq!(bits(&transform_matrix(&pipeline, &single, columns).unwrap().unwrap()), bits(&expected));
        let whole: Vec<f64> = flat.iter().map(|v| if v.is_nan() { 3.0 } else { *v }).collect();
        let bytes: Vec<u8> = whole.iter().map(|&v| v as u8).collect();
        assert_eq!(
            bits(&transform_matrix(&pipeline, &bytes, columns).unwrap().unwrap()),
            bits(&transform_matrix(&pipeline, &whole, columns).unwrap().unwrap())
        );
        assert_eq!(
            transform_matrix(&pipeline, &flat, columns + 1).unwrap().unwrap_err(),
            TransformError::Shape { got: columns + 1, expected: columns }
        );
        pipeline.transforms[0] = ColumnTransform::Ordinal { categories: vec!["a".into()] };
        assert!(transform_matrix(&pipeline, &flat, columns).is_none(), "a categorical column reads a shard");
    }

    #[test]
    fn a_numeric_column_shorter_than_the_rows_is_refused_by_name() {
        let pipeline = pipeline(&["a"], vec![scaled(0.0, 0.0, 1.0)]);
        let shard =
            Shard { first_row: 0, columns: vec![ShardColumn::Numeric(vec![1.0])], splits: vec![Split::Test; 2] };
        assert_eq!(transform(&pipeline, &shard).unwrap_err().to_string(), "column 'a' has 1 values for 2 rows");
    }
}
