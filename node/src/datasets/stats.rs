//! The statistics every ingest path keeps of a numeric cell, in one place
//! (CSV and NumPy input give the same manifest for the same numbers).

use mass_protocol::dataset::ColumnStats;

/// Distinct label values counted at most (a label with more is a number to
/// regress, whose manifest must not grow with its rows).
pub const MAX_LABEL_VALUES: usize = 10_000;

/// How a number reads as a class name: integers without a fraction.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { value.to_string() }
}

/// Adds a present, finite number to a column's statistics (the caller
/// counts presence); label values are counted up to [`MAX_LABEL_VALUES`].
pub fn add_number(stat: &mut ColumnStats, value: f64, label: bool) {
    stat.min = Some(stat.min.map_or(value, |m| m.min(value)));
    stat.max = Some(stat.max.map_or(value, |m| m.max(value)));
    stat.sum += value;
    stat.sum_sq += value * value;
    if label {
        let key = format_number(value);
        if stat.counts.len() < MAX_LABEL_VALUES || stat.counts.contains_key(&key) {
            *stat.counts.entry(key).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_counts_stop_growing_at_the_cap() {
        let mut stat = ColumnStats::default();
        for v in 0..(MAX_LABEL_VALUES + 50) {
            add_number(&mut stat, v as f64, true);
        }
        add_number(&mut stat, 3.0, true);
        assert_eq!(stat.counts.len(), MAX_LABEL_VALUES);
        assert_eq!(stat.counts["3"], 2);
        assert_eq!((stat.min, stat.max), (Some(0.0), Some((MAX_LABEL_VALUES + 49) as f64)));
        assert_eq!(format_number(2.0), "2");
        assert_eq!(format_number(2.5), "2.5");
    }
}
