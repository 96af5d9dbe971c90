//! Quantile sketches: a column's values summarized so that summaries of
//! shards merge into a summary of the whole column, computed where the
//! shards live. Tree models bin features from them; quantile binning too.

use mass_protocol::features::QuantileSketch;

/// Entries a sketch keeps. A column with at most this many distinct values
/// is summarized exactly; past it every fold shifts a rank by at most
/// `total / SKETCH_CAPACITY`, far below a 255-bin histogram's bin width.
pub const SKETCH_CAPACITY: usize = 4096;

/// The sketch of `values` (NaN values are skipped: they are missing).
pub fn sketch(values: impl Iterator<Item = f64>, capacity: usize) -> QuantileSketch {
    let mut present: Vec<f64> = values.filter(|v| !v.is_nan()).collect();
    present.sort_by(f64::total_cmp);
    let mut entries: Vec<(f64, u64)> = Vec::new();
    for v in present {
        match entries.last_mut() {
            Some((last, count)) if last.total_cmp(&v).is_eq() => *count += 1,
            _ => entries.push((v, 1)),
        }
    }
    let total = entries.iter().map(|(_, n)| n).sum();
    QuantileSketch { entries: compress(entries, capacity), total }
}

/// Adds `other` into `into`. Merging is exact while the merged distinct
/// values fit the capacity.
pub fn merge_sketch(into: &mut QuantileSketch, other: &QuantileSketch, capacity: usize) {
    if other.entries.is_empty() {
        return;
    }
    let (a, b) = (std::mem::take(&mut into.entries), &other.entries);
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0.total_cmp(&y.0).is_eq() => {
                i += 1;
                j += 1;
                (x.0, x.1 + y.1)
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                i += 1;
                *x
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (None, None) => unreachable!("loop condition"),
        };
        merged.push(next);
    }
    into.total += other.total;
    into.entries = compress(merged, capacity);
}

/// Folds runs of neighbouring entries into their last value so that at
/// most `capacity` remain, each run holding about `total / capacity` values.
/// Heavy values keep entries of their own.
fn compress(entries: Vec<(f64, u64)>, capacity: usize) -> Vec<(f64, u64)> {
    if entries.len() <= capacity.max(1) {
        return entries;
    }
    let total: u64 = entries.iter().map(|(_, n)| n).sum();
    let mut step = total.div_ceil(capacity as u64).max(1);
    loop {
        let mut out = Vec::with_capacity(capacity);
        let mut run = 0u64;
        for (i, &(value, count)) in entries.iter().enumerate() {
            run += count;
            let last = i + 1 == entries.len();
            // Close the run once it holds a step's worth, or before a value
            // heavy enough to stand alone.
            let next_heavy = entries.get(i + 1).is_some_and(|(_, n)| *n >= step);
            if last || run >= step || next_heavy {
                out.push((value, run));
                run = 0;
            }
        }
        // Heavy values can leave more runs than the capacity: coarser runs.
        if out.len() <= capacity {
            return out;
        }
        step *= 2;
    }
}

/// The smallest value whose cumulative count reaches `q` of the total.
pub fn quantile(sketch: &QuantileSketch, q: f64) -> Option<f64> {
    let target = (q.clamp(0.0, 1.0) * sketch.total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for &(value, count) in &sketch.entries {
        seen += count;
        if seen >= target {
            return Some(value);
        }
    }
    sketch.entries.last().map(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_columns_are_exact_and_merge_exactly() {
        let a = sketch([3.0, 1.0, f64::NAN, 3.0].into_iter(), 16);
        assert_eq!(a.entries, vec![(1.0, 1), (3.0, 2)]);
        assert_eq!(a.total, 3);
        let mut merged = a.clone();
        merge_sketch(&mut merged, &sketch([2.0, 3.0].into_iter(), 16), 16);
        assert_eq!(merged.entries, vec![(1.0, 1), (2.0, 1), (3.0, 3)]);
        assert_eq!(merged, sketch([3.0, 1.0, 3.0, 2.0, 3.0].into_iter(), 16));
    }

    #[test]
    fn merged_shards_give_nearly_the_quantiles_of_the_whole() {
        let values: Vec<f64> = (0..100_000).map(|i| ((i * 7919) % 100_003) as f64).collect();
        let whole = sketch(values.iter().copied(), 256);
        let mut merged = QuantileSketch::default();
        for part in values.chunks(9_000) {
            merge_sketch(&mut merged, &sketch(part.iter().copied(), 256), 256);
        }
        assert_eq!(merged.total, 100_000);
        assert!(merged.entries.len() <= 256);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.01, 0.25, 0.5, 0.9, 0.999] {
            let exact = sorted[((q * 100_000.0) as usize).min(99_999)];
            for s in [&whole, &merged] {
                let got = quantile(s, q).unwrap();
                // Off by at most a few folds' worth of ranks (100,000 / 256 each).
                assert!((got - exact).abs() <= 4.0 * 100_003.0 / 256.0, "q {q}: {got} vs {exact}");
            }
        }
    }

    #[test]
    fn heavy_values_keep_their_own_entry() {
        let mut values = vec![5.0; 50_000];
        values.extend((0..50_000).map(|i| i as f64 * 0.001));
        let s = sketch(values.into_iter(), 64);
        assert!(s.entries.iter().any(|&(v, n)| v == 5.0 && n >= 50_000), "{:?}", s.entries);
    }
}
