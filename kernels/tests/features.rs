//! Feature pipelines fitted from merged shard statistics equal those fitted
//! from the whole data at once, for every transform.

use mass_kernels::features::{fit, merge, summarize, transform};
use mass_protocol::{
    dataset::{Column, ColumnKind, Schema, Shard, ShardColumn, Split},
    features::{ColumnTransform, DataSummary, FittedPipeline, Impute, PipelineSpec, Scale, Select, TextSpec, Unseen},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn schema() -> Schema {
    let columns = [
        ("x", ColumnKind::Numeric),
        ("y", ColumnKind::Numeric),
        ("color", ColumnKind::Categorical),
        ("review", ColumnKind::Text),
        ("label", ColumnKind::Categorical),
    ]
    .into_iter()
    .map(|(name, kind)| Column { name: name.into(), kind })
    .collect();
    Schema { columns, label: 4 }
}

const WORDS: [&str; 8] = ["good", "bad", "film", "plot", "great", "boring", "actor", "music"];

/// Rows 0..n with missing values, few distinct values and some signal.
fn shard(first: usize, n: usize, seed: u64) -> Shard {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y, mut codes, mut text, mut labels, mut splits) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let label = rng.random_range(0..2u32);
        x.push(if rng.random_bool(0.1) {
            f64::NAN
        } else {
            f64::from(rng.random_range(0..20) + label as i32 * 5) * 0.5
        });
        y.push(rng.random_range(-3..3) as f64 * 1.25);
        codes.push(if rng.random_bool(0.05) { u32::MAX } else { rng.random_range(0..3) });
        let words: Vec<&str> = (0..rng.random_range(0..6)).map(|_| WORDS[rng.random_range(0..8)]).collect();
        text.push(if words.is_empty() { None } else { Some(words.join(" ")) });
        labels.push(label);
        splits.push(if rng.random_bool(0.2) { Split::Test } else { Split::Train });
    }
    Shard {
        first_row: first as u64,
        columns: vec![
            ShardColumn::Numeric(x),
            ShardColumn::Numeric(y),
            ShardColumn::Categorical { values: vec!["red".into(), "green".into(), "blue".into()], codes },
            ShardColumn::Text(text),
            ShardColumn::Categorical { values: vec!["no".into(), "yes".into()], codes: labels },
        ],
        splits,
    }
}

/// Concatenates shards into one, as a single process would hold the file.
fn concat(parts: &[Shard]) -> Shard {
    let mut whole = parts[0].clone();
    for part in &parts[1..] {
        for (into, from) in whole.columns.iter_mut().zip(&part.columns) {
            match (into, from) {
                (ShardColumn::Numeric(a), ShardColumn::Numeric(b)) => a.extend(b),
                (ShardColumn::Categorical { codes: a, .. }, ShardColumn::Categorical { codes: b, .. }) => a.extend(b),
                (ShardColumn::Text(a), ShardColumn::Text(b)) => a.extend(b.iter().cloned()),
                _ => unreachable!(),
            }
        }
        whole.splits.extend(&part.splits);
    }
    whole
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn assert_same(distributed: &FittedPipeline, whole: &FittedPipeline) {
    assert_eq!(distributed.features, whole.features);
    assert_eq!(distributed.classes, whole.classes);
    for (a, b) in distributed.transforms.iter().zip(&whole.transforms) {
        match (a, b) {
            (
                ColumnTransform::Numeric { fill: f1, offset: o1, scale: s1 },
                ColumnTransform::Numeric { fill: f2, offset: o2, scale: s2 },
            ) => {
                assert!(close(*f1, *f2) && close(*o1, *o2) && close(*s1, *s2), "{a:?} != {b:?}");
            }
            (ColumnTransform::Tfidf { idf: i1, .. }, ColumnTransform::Tfidf { idf: i2, .. }) => {
                assert_eq!(i1.keys().collect::<Vec<_>>(), i2.keys().collect::<Vec<_>>());
                assert!(i1.values().zip(i2.values()).all(|(x, y)| close(*x, *y)));
            }
            _ => assert_eq!(a, b),
        }
    }
}

fn specs() -> Vec<PipelineSpec> {
    let text = TextSpec { buckets: 64, ngram_max: 2, min_df: 3, sublinear_tf: true };
    let mut out = vec![];
    for impute in [Impute::Mean, Impute::Median, Impute::MostFrequent, Impute::Constant(-1.0)] {
        for scale in [Scale::None, Scale::Standard, Scale::MinMax] {
            for select in [Select::All, Select::VarianceThreshold(1.0), Select::MutualInfo { k: 1 }] {
                out.push(PipelineSpec {
                    impute,
                    scale,
                    unseen: Unseen::Ignore,
                    text,
                    select,
                    ..PipelineSpec::default()
                });
            }
        }
    }
    out
}

#[test]
fn merged_shard_statistics_fit_the_same_pipeline_as_the_whole_data() {
    let parts = [shard(0, 400, 1), shard(400, 333, 2), shard(733, 501, 3)];
    let whole = concat(&parts);
    let schema = schema();
    for spec in specs() {
        let mut merged = DataSummary::default();
        // Merged in an order unlike the rows', as nodes answer in any order.
        for part in [&parts[2], &parts[0], &parts[1]] {
            merge(&mut merged, &summarize(part, &schema, &spec));
        }
        let distributed = fit(&spec, &schema, &merged).unwrap();
        let single = fit(&spec, &schema, &summarize(&whole, &schema, &spec)).unwrap();
        assert_same(&distributed, &single);
        // And the features it makes are the same either way.
        let a = transform(&distributed, &whole).unwrap();
        let b = transform(&single, &whole).unwrap();
        assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0)), "{spec:?}");
    }
}

#[test]
fn imputations_match_hand_computed_values() {
    let schema = Schema {
        columns: vec![
            Column { name: "v".into(), kind: ColumnKind::Numeric },
            Column { name: "label".into(), kind: ColumnKind::Numeric },
        ],
        label: 1,
    };
    let shard = Shard {
        first_row: 0,
        columns: vec![
            ShardColumn::Numeric(vec![1.0, 2.0, 2.0, 9.0, f64::NAN]),
            ShardColumn::Numeric(vec![0.0, 1.0, 0.0, 1.0, 1.0]),
        ],
        splits: vec![Split::Train; 5],
    };
    let fill_of = |impute| {
        let spec = PipelineSpec { impute, scale: Scale::None, ..PipelineSpec::default() };
        match &fit(&spec, &schema, &summarize(&shard, &schema, &spec)).unwrap().transforms[0] {
            ColumnTransform::Numeric { fill, .. } => *fill,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(fill_of(Impute::Mean), 3.5);
    assert_eq!(fill_of(Impute::Median), 2.0);
    assert_eq!(fill_of(Impute::MostFrequent), 2.0);
    assert_eq!(fill_of(Impute::Constant(7.0)), 7.0);
}

#[test]
fn standardized_features_have_zero_mean_and_unit_variance_on_training_rows() {
    let schema = schema();
    let data = shard(0, 2000, 9);
    let spec = PipelineSpec { impute: Impute::Mean, scale: Scale::Standard, ..PipelineSpec::default() };
    let fitted = fit(&spec, &schema, &summarize(&data, &schema, &spec)).unwrap();
    let features = transform(&fitted, &data).unwrap();
    let train: Vec<usize> = (0..data.rows()).filter(|&r| data.splits[r] == Split::Train).collect();
    for column in 0..2 {
        let values: Vec<f64> = train.iter().map(|&r| f64::from(features[[r, column]])).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "column {column}: mean {mean} var {var}");
    }
}

#[test]
fn one_hot_follows_the_unseen_policy() {
    let schema = schema();
    let data = shard(0, 50, 4);
    let mut spec = PipelineSpec::default();
    let fitted = fit(&spec, &schema, &summarize(&data, &schema, &spec)).unwrap();
    let mut novel = data.clone();
    if let ShardColumn::Categorical { values, codes } = &mut novel.columns[2] {
        values.push("purple".into());
        codes[0] = 3;
    }
    let features = transform(&fitted, &novel).unwrap();
    assert_eq!((2..5).map(|c| features[[0, c]]).sum::<f32>(), 0.0, "an unseen category is all zeros");
    spec.unseen = Unseen::Error;
    let strict = fit(&spec, &schema, &summarize(&data, &schema, &spec)).unwrap();
    let err = transform(&strict, &novel).unwrap_err().to_string();
    assert!(err.contains("'purple'") && err.contains("'color'"), "{err}");
}

#[test]
fn one_hot_keeps_the_most_frequent_categories_of_a_wide_column() {
    use mass_kernels::features::MAX_ONE_HOT;
    let schema = schema();
    let mut data = shard(0, 2_000, 5);
    // 300 colours: colour i appears about 300 - i times, so the kept ones are known.
    let values: Vec<String> = (0..300).map(|i| format!("c{i:03}")).collect();
    let codes: Vec<u32> = (0..data.rows()).map(|r| ((r * r) % 300).min(r % 300) as u32).collect();
    data.columns[2] = ShardColumn::Categorical { values: values.clone(), codes };
    let mut spec = PipelineSpec::default();
    let fitted = fit(&spec, &schema, &summarize(&data, &schema, &spec)).unwrap();
    let ColumnTransform::OneHot { categories, .. } = &fitted.transforms[2] else {
        panic!("{:?}", fitted.transforms[2])
    };
    assert_eq!(categories.len(), MAX_ONE_HOT);
    let summary = summarize(&data, &schema, &spec);
    let counts = &summary.columns[2].categories;
    let least_kept = categories.iter().map(|c| counts[c]).min().unwrap();
    let most_dropped = counts.iter().filter(|(c, _)| !categories.contains(c)).map(|(_, n)| *n).max().unwrap();
    assert!(least_kept >= most_dropped, "kept {least_kept} times at least, dropped up to {most_dropped}");
    // A dropped value encodes as an unseen one: all of the column's indicators zero.
    let features = transform(&fitted, &data).unwrap();
    let dropped = (0..data.rows()).find(|&r| {
        let ShardColumn::Categorical { codes, .. } = &data.columns[2] else { unreachable!() };
        codes[r] != u32::MAX && !categories.contains(&values[codes[r] as usize])
    });
    let r = dropped.expect("a row with a dropped colour");
    assert_eq!((2..2 + MAX_ONE_HOT).map(|c| features[[r, c]]).sum::<f32>(), 0.0);
    // Refusing unseen values keeps every category: a training value is never refused.
    spec.unseen = Unseen::Error;
    let strict = fit(&spec, &schema, &summarize(&data, &schema, &spec)).unwrap();
    let ColumnTransform::OneHot { categories, .. } = &strict.transforms[2] else { panic!() };
    assert_eq!(categories.len(), counts.len());
    assert!(transform(&strict, &data).is_ok());
}

#[test]
fn tfidf_rows_are_unit_length_and_rare_terms_dropped() {
    let schema = schema();
    let data = shard(0, 300, 5);
    let spec = PipelineSpec {
        text: TextSpec { buckets: 1 << 20, ngram_max: 1, min_df: 2, sublinear_tf: false },
        ..PipelineSpec::default()
    };
    let fitted = fit(&spec, &schema, &summarize(&data, &schema, &spec)).unwrap();
    let ColumnTransform::Tfidf { idf, .. } = &fitted.transforms[3] else { panic!() };
    assert_eq!(idf.len(), WORDS.len(), "each of the 8 words is one term");
    let features = transform(&fitted, &data).unwrap();
    let start = fitted.features - idf.len();
    for r in 0..data.rows() {
        let norm: f32 = (start..fitted.features).map(|c| features[[r, c]].powi(2)).sum();
        let has_text = matches!(&data.columns[3], ShardColumn::Text(t) if t[r].is_some());
        assert!(if has_text { (norm - 1.0).abs() < 1e-5 } else { norm == 0.0 }, "row {r}: {norm}");
    }
}

#[test]
fn mutual_information_keeps_the_column_that_predicts_the_label() {
    let schema = schema();
    let data = shard(0, 2000, 6);
    let spec = PipelineSpec { select: Select::MutualInfo { k: 1 }, ..PipelineSpec::default() };
    let fitted = fit(&spec, &schema, &summarize(&data, &schema, &spec)).unwrap();
    assert!(matches!(fitted.transforms[0], ColumnTransform::Numeric { .. }), "x carries the label");
    assert_eq!(fitted.transforms[1], ColumnTransform::Drop, "y is noise");
}
