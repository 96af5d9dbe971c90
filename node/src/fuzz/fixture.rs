//! What a fuzz target needs around the value it decodes: a small dataset
//! (numeric and categorical columns), its fitted pipeline, a trained
//! model of a network and trees, and a boosted job's session. Built once
//! per process by the same code a node runs, so a decoded value meets the
//! state it would meet on a node.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use mass_kernels::models::{Member, gbdt::histogram::Layout};
use mass_protocol::{
    ContentId, codec,
    dataset::{ColumnKind, DatasetManifest, Schema, Shard, Split},
    features::{DataSummary, FittedPipeline, PipelineSpec, TextSpec},
    jobs::{Combine, EnsembleSpec, Evaluation, JobSpec, Learner, ModelManifest, ModelSpec, Placement, Task, TreeSpec},
};

use crate::{
    datasets::{IngestOptions, SplitChoice, ingest},
    jobs::{
        boost::session::{Plan, Rows},
        learners::{self, RowSet},
        task::rows_where,
    },
    serving::model::LoadedModel,
};

pub struct Fixture {
    pub manifest: DatasetManifest,
    pub shards: Vec<Shard>,
    pub spec: PipelineSpec,
    pub summary: DataSummary,
    pub pipeline: FittedPipeline,
    pub members: Vec<Member>,
    pub model_manifest: ModelManifest,
    pub model: Arc<LoadedModel>,
    pub tree_spec: TreeSpec,
    pub setup: mass_kernels::models::gbdt::BoostSetup,
    pub train: Vec<RowSet>,
    pub validation: Vec<RowSet>,
}

impl Fixture {
    pub fn schema(&self) -> &Schema {
        &self.manifest.schema
    }

    /// A boosted job's plan over the fixture's bins, owning every feature.
    pub fn plan(&self, setup: mass_kernels::models::gbdt::BoostSetup) -> Plan {
        let layout = Layout::new(&setup.bins);
        let slice = 0..layout.features();
        Plan { job: ContentId::of(b"fuzz job"), generation: 1, setup, layout, slice, workers: vec![] }
    }

    /// The rows a worker holds for `plan`, as `BoostRequest::Open` builds them.
    pub fn rows(&self, plan: &Plan) -> Rows {
        Rows::new(plan, &self.train, &self.validation, &[])
    }
}

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

/// The fixture's rows as CSV: 48 rows in 3 classes, with missing cells.
pub fn csv() -> String {
    let colors = ["red", "green", "blue"];
    let words = ["fast red car", "slow old bus", "green fast bike", "blue slow boat"];
    let mut csv = String::from("x,y,color,note,label\n");
    for i in 0..48u32 {
        let class = i % 3;
        let x =
            if i % 11 == 5 { String::new() } else { format!("{}", f64::from(class) * 2.0 + f64::from(i % 5) * 0.3) };
        let y = f64::from(i) * 0.25 - 3.0;
        let color = if i % 13 == 7 { "" } else { colors[((i / 3 + class) % 3) as usize] };
        let note = words[(i % 4) as usize];
        csv.push_str(&format!("{x},{y},{color},{note},c{class}\n"));
    }
    csv
}

/// The options the fixture's CSV is ingested with (also the CSV target's).
pub fn ingest_options() -> IngestOptions {
    IngestOptions {
        name: "fuzz".into(),
        label: "label".into(),
        kinds: BTreeMap::from([("note".to_owned(), ColumnKind::Text)]),
        shard_rows: 16,
        split: SplitChoice::Seeded { seed: 7, validation: 0.2, test: 0.2 },
        threads: 1,
    }
}

/// The fixture's CSV ingested with `options`, and a pipeline fitted on it.
fn ingest_and_fit(options: &IngestOptions) -> (DatasetManifest, Vec<Shard>, PipelineSpec, DataSummary, FittedPipeline) {
    let spec = PipelineSpec {
        text: TextSpec { buckets: 64, ngram_max: 2, min_df: 1, sublinear_tf: true },
        quantiles: true,
        ..PipelineSpec::default()
    };
    let (manifest, shards, summary, pipeline) = ingested_and_fitted(&csv(), options, &spec);
    (manifest, shards, spec, summary, pipeline)
}

/// `csv` ingested with `options` (shards kept in memory), and a pipeline
/// fitted on it by `spec`, as a node would: statistics shard by shard.
pub fn ingested_and_fitted(
    csv: &str,
    options: &IngestOptions,
    spec: &PipelineSpec,
) -> (DatasetManifest, Vec<Shard>, DataSummary, FittedPipeline) {
    let mut shards = Vec::new();
    let manifest = ingest(csv.as_bytes(), options, |shard| {
        shards.push(shard.clone());
        Ok(ContentId::of(&codec::encode(shard).expect("shards encode")))
    })
    .expect("the CSV ingests");
    let mut summary = DataSummary::default();
    for shard in &shards {
        mass_kernels::features::merge(
            &mut summary,
            &crate::mesh::summarize_rows(shard, &manifest.schema, spec).expect("the shards summarize"),
        );
    }
    let pipeline = mass_kernels::features::fit(spec, &manifest.schema, &summary).expect("the pipeline fits");
    (manifest, shards, summary, pipeline)
}

/// A pipeline with a TF-IDF column (the fixture's `note` read as text), for
/// the pipeline target's seeds: the fixture itself keeps `note`
/// categorical, since tree models refuse text columns.
pub fn text_pipeline() -> FittedPipeline {
    ingest_and_fit(&ingest_options()).4
}

fn build() -> Fixture {
    let options = IngestOptions { kinds: BTreeMap::new(), ..ingest_options() };
    let (manifest, shards, spec, summary, pipeline) = ingest_and_fit(&options);
    let of = |split: Split| -> Vec<RowSet> {
        shards.iter().map(|s| rows_where(&pipeline, s, |got, _| got == split).expect("fixture rows")).collect()
    };
    let (train, validation) = (of(Split::Train), of(Split::Validation));
    let all = RowSet::concat(train.clone(), Task::Classification, pipeline.features).expect("fixture rows");
    let classes = pipeline.classes.len();
    let tree_spec = TreeSpec { trees: 3, leaves: 4, min_rows: 2, bins: 16, ..TreeSpec::default() };
    let setup =
        learners::boost_setup(&ModelSpec::of(Learner::Gbdt(tree_spec.clone())), &tree_spec, &pipeline, &summary, 3)
            .expect("the fixture's trees set up");
    let linear = ModelSpec { epochs: Some(5), ..ModelSpec::of(Learner::Linear) };
    let trees = ModelSpec::of(Learner::Gbdt(tree_spec.clone()));
    let members: Vec<Member> = [(&linear, None), (&trees, Some(&setup))]
        .into_iter()
        .map(|(spec, setup)| {
            learners::fit(spec, Task::Classification, classes, &all, None, None, setup, 1, None, &mut |_, _, _| {})
                .expect("the fixture's members train")
                .member
        })
        .collect();
    let job_spec = JobSpec {
        model: "fuzz".into(),
        dataset: "fuzz".into(),
        pipeline: spec.clone(),
        spec: linear,
        ensemble: EnsembleSpec::Bagging { members: 2 },
        seed: 1,
        task: Some(Task::Classification),
        placement: Placement::Capacity,
        trial: None,
        cv: None,
    };
    let model_manifest = ModelManifest {
        name: "fuzz".into(),
        job: ContentId::of(b"fuzz job"),
        spec: job_spec,
        dataset_manifest: ContentId::of(b"fuzz dataset"),
        pipeline: ContentId::of(b"fuzz pipeline"),
        members: vec![ContentId::of(b"linear"), ContentId::of(b"trees")],
        meta: None,
        curves: vec![],
        classes: pipeline.classes.clone(),
        evaluation: Evaluation::classification(1, 1.0, 1.0, 0.0, vec![]),
        trained_on: vec![],
        task: Task::Classification,
        combine: Combine::Mean,
        parts: vec![],
        study: None,
        compression: None,
        cross_validation: None,
    };
    let model = LoadedModel::trained(
        ContentId::of(b"fuzz model"),
        model_manifest.clone(),
        manifest.schema.clone(),
        pipeline.clone(),
        members.clone(),
        None,
    )
    .map(Arc::new)
    .expect("the fixture's model loads");
    Fixture {
        manifest,
        shards,
        spec,
        summary,
        pipeline,
        members,
        model_manifest,
        model,
        tree_spec,
        setup,
        train,
        validation,
    }
}
