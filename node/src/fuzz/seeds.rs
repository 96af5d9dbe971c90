//! Seed inputs of every fuzz target: valid encodings of each kind of value
//! the target decodes, built from the fixture, and the first rows of the
//! datasets in `tests/data`.

use std::io::Write;

use libp2p::identity::Keypair;
use mass_kernels::models::{Member, gbdt::tree::Tree};
use mass_protocol::{
    Advert, BridgeInfo, BridgeStatus, ContentId, CpuInfo, HardwareProfile, Load, QueueDepth, codec,
    dataset::Split,
    evaluation::{EvaluateShard, EvaluationRows},
    features::{FittedPipeline, PipelineSpec},
    jobs::{
        Assignment, Combine, EnsembleSpec, JobRecord, JobSpec, JobState, Learner, ModelSpec, Placement, TaskRecord,
        TrainingProgress,
    },
    names,
    rpc::{RefUpdate, Request, Response},
    serving::{Cell, PredictCall, Predicted, Prediction, Row},
    storage::{BlobMeta, RefEntry, RefRecord},
};

use crate::{
    fuzz::{
        boost::{merge_roots, root_items},
        fixture::fixture,
        records::fit_pipeline,
    },
    jobs::{
        boost::messages::{BoostReply, BoostRequest, SliceItem, SparseSlice},
        evaluate,
    },
    mesh::moments_of,
};

fn enc<T: serde::Serialize>(value: &T) -> Vec<u8> {
    codec::encode(value).expect("seeds encode")
}

pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("rpc_request", requests().iter().map(enc).collect()),
        ("rpc_response", responses().iter().map(enc).collect()),
        ("advert", vec![enc(&advert())]),
        ("ref_update", vec![enc(&RefUpdate { name: "model/fuzz".into(), entry: signed("model/fuzz", 1, 1) })]),
        ("progress", vec![enc(&progress())]),
        ("boost_request", boost_requests().iter().map(enc).collect()),
        ("boost_reply", boost_replies().iter().map(enc).collect()),
        ("job_record", job_records().iter().map(enc).collect()),
        ("dataset_manifest", vec![enc(&fixture().manifest)]),
        ("model_manifest", model_manifests()),
        ("pipeline", pipelines().iter().map(enc).collect()),
        ("shard", fixture().shards.iter().map(enc).collect()),
        ("member", members().iter().map(enc).collect()),
        ("boost_setup", vec![enc(&fixture().setup)]),
        ("trees", rounds().iter().map(enc).collect()),
        ("ref_record", vec![enc(&ref_record())]),
        ("csv", csvs()),
        ("jsonl", jsonls()),
        ("parquet", parquets()),
        ("npy", npys()),
        ("job_spec_json", job_specs()),
        ("predict_json", predict_bodies()),
        ("predict_arrow", arrow_bodies()),
        ("study_json", studies().iter().map(|s| serde_json::to_vec_pretty(s).expect("studies are JSON")).collect()),
        ("study_record", study_records().iter().map(enc).collect()),
    ]
}

fn advert() -> Advert {
    Advert {
        protocol_version: names::PROTOCOL_VERSION,
        seq: 7,
        agent: "mass/0.1.0".into(),
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into(), "/dns4/example.com/tcp/4001".into()],
        http_addr: Some("127.0.0.1:8080".into()),
        hardware: HardwareProfile {
            cpu: CpuInfo { model: "EPYC".into(), cores: 2 },
            memory_bytes: 1 << 34,
            gemm_gflops: 180.5,
            gpus: vec![],
            bridges: vec![BridgeInfo {
                status: BridgeStatus::Up,
                ..BridgeInfo::declared("fpga0", "fpga", "tcp://x:1")
            }],
            capacity_gflops: 90.25,
        },
        load: Load {
            free_memory_bytes: 1 << 33,
            cpu_load: 0.25,
            queues: vec![QueueDepth { name: "training".into(), depth: 3 }],
        },
        draining: false,
    }
}

fn signed(name: &str, version: u64, clock: u64) -> RefEntry {
    let key = Keypair::ed25519_from_bytes([7u8; 32]).expect("a key");
    let mut entry = RefEntry {
        version,
        target: Some(ContentId::of(name.as_bytes())),
        clock,
        origin: key.public().to_peer_id().to_string(),
        set_at: 1_700_000_000_000,
        signature: vec![],
    };
    entry.signature = crate::net::identity::ref_signer(key)(&entry.signed_bytes(name));
    entry
}

fn ref_record() -> RefRecord {
    RefRecord { name: "dataset/fuzz".into(), history: vec![signed("dataset/fuzz", 1, 1), signed("dataset/fuzz", 2, 5)] }
}

fn progress() -> TrainingProgress {
    TrainingProgress { job: ContentId::of(b"job"), task: 1, epoch: 3, epochs: 10, loss: 0.5 }
}

fn rows() -> Vec<Row> {
    vec![
        Row::Values(vec![Cell::Number(1.5), Cell::Number(-2.0), Cell::Text("blue".into()), Cell::Text("slow".into())]),
        Row::Named(vec![
            ("x".into(), Cell::Missing),
            ("y".into(), Cell::Bool(true)),
            ("color".into(), Cell::Text("red".into())),
            ("note".into(), Cell::Text("fast red car".into())),
        ]),
    ]
}

fn requests() -> Vec<Request> {
    let f = fixture();
    let shard = f.manifest.shards[0].id;
    let assignment = Assignment {
        job: ContentId::of(b"job"),
        task: 0,
        shards: vec![shard],
        pipeline: ContentId::of(b"pipeline"),
        spec: ModelSpec::of(Learner::Mlp { hidden: vec![8] }),
        seed: 1,
        start: vec![(ContentId::of(b"w"), 10)],
        holdout: false,
        setup: None,
        boost_from: vec![],
        teacher: Some(ContentId::of(b"teacher")),
        fold: Some((2, 5)),
    };
    let call = PredictCall {
        model: "fuzz".into(),
        manifest: ContentId::of(b"model"),
        version: 1,
        rows: rows().into(),
        allow_missing: true,
    };
    let mut requests = vec![
        Request::GetAdvert,
        Request::GetChunk { id: shard, index: 3 },
        Request::ListRefs,
        Request::GetRef { name: "model/fuzz".into() },
        Request::HoldRef { name: ref_record().name, entry: ref_record().history.remove(0) },
        Request::SummarizeShard { shard, schema: f.schema().clone(), spec: f.spec.clone() },
        Request::SummarizeShard {
            shard,
            schema: f.schema().clone(),
            spec: PipelineSpec { bins: Some(4), pca: Some(2), ..f.spec.clone() },
        },
        Request::ShardMoments { shard, pipeline: Box::new(f.pipeline.clone()), features: vec![0, 1] },
        Request::TrainTask(Box::new(assignment)),
        Request::Predict(Box::new(call)),
        Request::PredictShard { manifest: ContentId::of(b"m"), shard, extend: true },
        Request::EvaluateShard(Box::new(EvaluateShard {
            shard,
            pipeline: ContentId::of(b"pipeline"),
            members: vec![ContentId::of(b"linear"), ContentId::of(b"trees")],
            meta: None,
            combine: Combine::WeightedMean(vec![0.5, 1.5]),
            rows: EvaluationRows::Fold { fold: 1, folds: 5 },
            report: true,
        })),
    ];
    requests.extend(boost_requests().iter().map(|r| Request::Boost(enc(r))));
    requests
}

fn responses() -> Vec<Response> {
    let f = fixture();
    let blob = vec![3u8; 100];
    let meta = BlobMeta { id: ContentId::of(&blob), size: 100, chunks: vec![*ContentId::of(&blob).as_bytes()] };
    let moments = moments_of(&f.shards[0], &f.pipeline, &[0, 1]).expect("fixture moments");
    let prediction = Prediction {
        model: "fuzz".into(),
        version: 1,
        manifest: ContentId::of(b"m"),
        predictions: vec![Predicted::Class("c1".into()), Predicted::Value(2.5)],
        probabilities: vec![vec![0.2, 0.8]],
        classes: vec!["c0".into(), "c1".into()],
        served_by: "peer".into(),
    };
    let mut responses = vec![
        Response::Advert(Box::new(advert())),
        Response::BlobMeta(Some(meta)),
        Response::Chunk(Some(blob)),
        Response::Has(true),
        Response::Refs(vec![ref_record()]),
        Response::Summary(f.summary.clone()),
        Response::Moments(moments),
        Response::Trained { weights: ContentId::of(b"w"), rows: 30, curve: vec![0.9, 0.5], backend: "cpu".into() },
        Response::Predicted(Box::new(prediction)),
        Response::ShardPredicted {
            csv: "0,test,c1,c1\n".into(),
            test: vec![(1, 1, 0.9), (0, 2, 0.1)],
            values: vec![],
            extended: None,
        },
    ];
    let rows = EvaluationRows::Split(Split::Test);
    let tallies = evaluate::shard_evaluation(&f.pipeline, &f.members, &Combine::Mean, None, &f.shards[0], rows, true)
        .expect("the fixture's model is judged");
    responses.push(Response::Evaluated(Box::new(tallies)));
    responses.extend(boost_replies().iter().map(|r| Response::Boost(enc(r))));
    responses
}

fn boost_requests() -> Vec<BoostRequest> {
    let f = fixture();
    let job = ContentId::of(b"fuzz job");
    let plan = f.plan(f.setup.clone());
    let mut rows = f.rows(&plan);
    let roots = rows.start_round(&plan, 0);
    let items = root_items(&plan, &roots);
    let slices: Vec<SliceItem> = items.iter().map(|i| SliceItem { output: i.output, order: None, node: 0 }).collect();
    vec![
        BoostRequest::Open {
            job,
            generation: 1,
            setup: ContentId::of(b"setup"),
            pipeline: ContentId::of(b"pipeline"),
            shards: vec![f.manifest.shards[0].id],
            rounds: vec![],
            slice: (0, plan.layout.features() as u32),
            workers: vec!["peer".into()],
        },
        BoostRequest::StartRound { job, generation: 1, round: 2 },
        BoostRequest::Slices { job, generation: 1, features: (0, 2), items: slices },
        BoostRequest::Merge { job, generation: 1, items },
        BoostRequest::EndRound { job, generation: 1, round: 0, trees: rounds()[0].clone() },
        BoostRequest::Close { job },
    ]
}

fn boost_replies() -> Vec<BoostReply> {
    let f = fixture();
    let plan = f.plan(f.setup.clone());
    let mut rows = f.rows(&plan);
    let roots = rows.start_round(&plan, 0);
    let items = root_items(&plan, &roots);
    let wanted: Vec<SliceItem> = items.iter().map(|i| SliceItem { output: i.output, order: None, node: 0 }).collect();
    let slices = rows.slices(&plan, plan.slice.clone(), &wanted).expect("the fixture's own outputs");
    let mut fresh = f.rows(&plan);
    fresh.start_round(&plan, 0);
    let best = merge_roots(&plan, &mut fresh, &roots);
    vec![
        BoostReply::Opened { rows: 30 },
        BoostReply::Roots(roots),
        BoostReply::Best(best),
        BoostReply::Slices(slices),
        BoostReply::Slices(vec![SparseSlice::default()]),
        BoostReply::Losses { train: vec![(3.5, 20)], validation: vec![(1.0, 5)] },
        BoostReply::Closed,
    ]
}

/// The fixture's boosted member's trees, one round (a tree per class) each.
fn rounds() -> Vec<Vec<Tree>> {
    let Member::Gbdt(gbdt) = &fixture().members[1] else { panic!("the fixture's second member is trees") };
    gbdt.trees.chunks(gbdt.objective.scores_per_row()).map(|r| r.to_vec()).collect()
}

fn job_records() -> Vec<JobRecord> {
    let f = fixture();
    let shards: Vec<ContentId> = f.manifest.shards.iter().map(|s| s.id).collect();
    let spec = f.model_manifest.spec.clone();
    let record = |spec: JobSpec| JobRecord {
        state: JobState::Running,
        drivers: vec!["peer".into()],
        dataset_manifest: Some(ContentId::of(b"dataset")),
        tasks: vec![TaskRecord::new(shards.clone(), 1)],
        ..JobRecord::pending(ContentId::of(b"job"), spec)
    };
    let gbdt = JobSpec {
        spec: ModelSpec::of(Learner::Gbdt(f.tree_spec.clone())),
        ensemble: EnsembleSpec::Single,
        ..spec.clone()
    };
    let pca = JobSpec {
        pipeline: PipelineSpec { pca: Some(2), cross: vec![("x".into(), "y".into())], ..spec.pipeline.clone() },
        ensemble: EnsembleSpec::DataParallel { workers: 2, rounds: 3 },
        placement: Placement::Uniform,
        ..spec.clone()
    };
    vec![record(spec), record(gbdt), record(pca)]
}

/// The job records' specs as `POST /v1/jobs` bodies.
fn job_specs() -> Vec<Vec<u8>> {
    job_records().iter().map(|r| serde_json::to_vec_pretty(&r.spec).expect("specs are JSON")).collect()
}

fn model_manifests() -> Vec<Vec<u8>> {
    let f = fixture();
    let trained = f.model_manifest.clone();
    let weighted =
        mass_protocol::jobs::ModelManifest { combine: Combine::WeightedMean(vec![1.0, 2.0]), ..trained.clone() };
    let composed = mass_protocol::jobs::ModelManifest {
        members: vec![],
        parts: vec![ContentId::of(b"a"), ContentId::of(b"b")],
        combine: Combine::WeightedMean(vec![0.5, 0.5]),
        ..trained.clone()
    };
    let serial = mass_protocol::jobs::ModelManifest { combine: Combine::Serial, ..composed.clone() };
    let latency = mass_protocol::jobs::Latency { one_row_us: 3.5, thousand_rows_ms: 2.5 };
    let compressed = mass_protocol::jobs::ModelManifest {
        compression: Some(mass_protocol::jobs::Compression {
            parent: ContentId::of(b"parent"),
            parent_version: 1,
            method: mass_protocol::jobs::CompressMethod::Prune { sparsity: 0.8, fine_tune_epochs: 2 },
            bytes: 1_000,
            parent_bytes: 4_000,
            latency: latency.clone(),
            parent_latency: latency,
            measured_on: "fuzz".into(),
            sparsity: Some(0.8),
        }),
        ..trained.clone()
    };
    [trained, weighted, composed, serial, compressed].iter().map(enc).collect()
}

/// The fixture's members, and its network quantized and pruned.
fn members() -> Vec<mass_kernels::models::Member> {
    use mass_kernels::models::{Member, quantized::QuantizedMlp, sparse};
    let mut members = fixture().members.clone();
    if let Some(Member::Mlp(network)) = members.first().cloned() {
        members.push(Member::Int8(QuantizedMlp::quantize(&network).expect("the fixture's network is finite")));
        let (pruned, _) = sparse::prune(&network, 0.8).expect("0.8 is a sparsity");
        members.push(Member::Sparse(sparse::SparseMlp::from_dense(&pruned)));
    }
    members
}

/// The fixture's pipeline and others fitted with quantile bins, crosses,
/// ordinal codes and principal components.
pub(super) fn pipelines() -> Vec<FittedPipeline> {
    let f = fixture();
    let specs = [
        PipelineSpec { bins: Some(4), ..f.spec.clone() },
        PipelineSpec {
            cross: vec![("x".into(), "y".into()), ("color".into(), "color".into())],
            cross_buckets: 8,
            ..f.spec.clone()
        },
        PipelineSpec { encode: mass_protocol::features::Encode::Ordinal, pca: Some(2), ..f.spec.clone() },
    ];
    let mut pipelines = vec![f.pipeline.clone(), super::fixture::text_pipeline()];
    pipelines.extend(specs.iter().filter_map(|spec| fit_pipeline(f.schema(), &f.shards, spec)).map(|(p, _)| p));
    pipelines
}

fn csvs() -> Vec<Vec<u8>> {
    let mut csvs = vec![super::fixture::csv().into_bytes()];
    for name in ["iris", "wine", "diabetes", "breast_cancer"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/data/{name}.csv"));
        let text = std::fs::read_to_string(path).expect("tests/data reads");
        // The header and a few rows: enough to infer kinds, small to mutate.
        let head: String = text.lines().take(12).map(|l| format!("{l}\n")).collect();
        csvs.push(head.into_bytes());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&csvs[1]).unwrap();
    csvs.push(gz.finish().unwrap());
    csvs
}

/// The CSV seeds as JSON Lines: numbers as numbers, empty cells as null.
fn jsonls() -> Vec<Vec<u8>> {
    let csvs = csvs();
    let mut out: Vec<Vec<u8>> = csvs[..csvs.len() - 1]
        .iter()
        .map(|csv| {
            let text = String::from_utf8_lossy(csv);
            let mut lines = text.lines();
            let names: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
            let mut jsonl = String::new();
            for line in lines {
                let object: Vec<String> = names
                    .iter()
                    .zip(line.split(','))
                    .map(|(name, cell)| {
                        let value = match cell.parse::<f64>() {
                            Ok(_) => cell.to_owned(),
                            Err(_) if cell.is_empty() => "null".to_owned(),
                            Err(_) => serde_json::Value::from(cell).to_string(),
                        };
                        format!("{}: {value}", serde_json::Value::from(*name))
                    })
                    .collect();
                jsonl.push_str(&format!("{{{}}}\n", object.join(", ")));
            }
            jsonl.into_bytes()
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&out[1]).unwrap();
    out.push(gz.finish().unwrap());
    out
}

/// The CSV seeds as Parquet: a column of numbers (or empty cells) as
/// optional doubles, any other as optional strings; empty cells as nulls.
fn parquets() -> Vec<Vec<u8>> {
    use parquet::{
        basic::{Compression, Repetition, Type as Physical},
        data_type::{ByteArray, ByteArrayType, DoubleType},
        file::{properties::WriterProperties, writer::SerializedFileWriter},
        schema::types::Type,
    };
    let csvs = csvs();
    csvs[..csvs.len() - 1]
        .iter()
        .enumerate()
        .map(|(i, csv)| {
            let text = String::from_utf8_lossy(csv);
            let mut lines = text.lines();
            let names: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
            let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
            let column = |c: usize| rows.iter().map(move |r| r.get(c).copied().unwrap_or_default());
            let numeric: Vec<bool> = (0..names.len())
                .map(|c| column(c).all(|cell| cell.is_empty() || cell.parse::<f64>().is_ok()))
                .collect();
            let fields = names
                .iter()
                .zip(&numeric)
                .map(|(name, &numeric)| {
                    let field = if numeric {
                        Type::primitive_type_builder(name, Physical::DOUBLE)
                    } else {
                        Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                            .with_logical_type(Some(parquet::basic::LogicalType::String))
                    };
                    std::sync::Arc::new(field.with_repetition(Repetition::OPTIONAL).build().expect("a valid column"))
                })
                .collect();
            let schema = Type::group_type_builder("seed").with_fields(fields).build().expect("a valid schema");
            // Each codec in turn, and rows split over row groups.
            let compression =
                [Compression::UNCOMPRESSED, Compression::SNAPPY, Compression::ZSTD(Default::default())][i % 3];
            let props = WriterProperties::builder().set_compression(compression).build();
            let mut writer =
                SerializedFileWriter::new(Vec::new(), schema.into(), props.into()).expect("a Parquet writer");
            for group in rows.chunks(8) {
                let mut out = writer.next_row_group().expect("a row group");
                for (c, &numeric) in numeric.iter().enumerate() {
                    let cells: Vec<&str> = group.iter().map(|r| r.get(c).copied().unwrap_or_default()).collect();
                    let levels: Vec<i16> = cells.iter().map(|cell| i16::from(!cell.is_empty())).collect();
                    let present = cells.iter().filter(|cell| !cell.is_empty());
                    let mut column = out.next_column().expect("a column").expect("as many as the schema");
                    if numeric {
                        let values: Vec<f64> = present.map(|cell| cell.parse().expect("a number")).collect();
                        column.typed::<DoubleType>().write_batch(&values, Some(&levels), None).expect("written");
                    } else {
                        let values: Vec<ByteArray> = present.map(|cell| ByteArray::from(cell.as_bytes())).collect();
                        column.typed::<ByteArrayType>().write_batch(&values, Some(&levels), None).expect("written");
                    }
                    column.close().expect("closed");
                }
                out.close().expect("closed");
            }
            writer.into_inner().expect("the file")
        })
        .collect()
}

/// A `.npy` file of `descr` values with `shape`.
pub fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = crate::datasets::npy::MAGIC.to_vec();
    out.extend([1, 0]);
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

fn npys() -> Vec<Vec<u8>> {
    let labels = npy("<i8", "(4,)", &[1i64, 0, 1, 2].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
    let f4: Vec<u8> = [0.5f32, 1.0, 2.0, 3.0, 4.0, 5.5, f32::NAN, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let f8: Vec<u8> = [0.5f64, -1.0, 2.0, 1e300, 4.0, 5.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let u1 = vec![0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    vec![
        [labels.clone(), npy("<f4", "(4, 2)", &f4)].concat(),
        [
            npy("<f8", "(2,)", &[1.0f64, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()),
            npy("<f8", "(2, 3)", &f8),
        ]
        .concat(),
        [labels, npy("|u1", "(4, 3)", &u1)].concat(),
        [npy("<u2", "(3,)", &[1, 0, 2, 0, 1, 0]), npy("<i4", "(3, 1)", &[1, 0, 0, 0, 255, 255, 255, 255, 7, 0, 0, 0])]
            .concat(),
        // A binary prediction body: one matrix of the fixture's four feature columns.
        mass_protocol::npy::write_matrix(&[1.0, 0.5, 0.0, f64::NAN, 2.0, 1.5, 1.0, 0.0], &[2, 4], false),
    ]
}

fn predict_bodies() -> Vec<Vec<u8>> {
    [
        r#"{"rows": [[1.5, -2, "blue", "slow old bus"], [0, 3.25, "red", "fast red car"]]}"#,
        r#"{"rows": [{"x": 1, "y": 2, "color": "green", "note": "green fast bike"}], "allow_missing": false}"#,
        r#"{"rows": [[null, "NaN", null, null], {"x": "Infinity", "y": true, "color": 7, "note": null, "label": "c1"}], "allow_missing": true}"#,
        r#"{"rows": [[1e308, -1e308, "", ""]]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// Arrow streams of the fixture's columns: plain, with nulls and NaN, and
/// with a dictionary-encoded category.
fn arrow_bodies() -> Vec<Vec<u8>> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, DictionaryArray, Float64Array, Int32Array, RecordBatch, StringArray, types::Int8Type};
    let stream = |columns: Vec<(&str, ArrayRef)>| {
        let batch = RecordBatch::try_from_iter(columns).expect("a record batch");
        let mut out = Vec::new();
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).expect("a writer");
        writer.write(&batch).expect("written");
        writer.finish().expect("finished");
        drop(writer);
        out
    };
    let colors: DictionaryArray<Int8Type> = vec![Some("red"), None].into_iter().collect();
    vec![
        stream(vec![
            ("x", Arc::new(Float64Array::from(vec![1.5, 0.0])) as ArrayRef),
            ("y", Arc::new(Int32Array::from(vec![-2, 3]))),
            ("color", Arc::new(StringArray::from(vec!["blue", "red"]))),
            ("note", Arc::new(StringArray::from(vec!["slow old bus", "fast red car"]))),
        ]),
        stream(vec![
            ("x", Arc::new(Float64Array::from(vec![Some(f64::NAN), None])) as ArrayRef),
            ("color", Arc::new(colors)),
        ]),
    ]
}

/// Studies over the fixture's job: random, TPE with successive halving,
/// grid and genetic.
fn studies() -> Vec<mass_protocol::studies::StudySpec> {
    use mass_protocol::studies::{Asha, Domain, Metric, ParamValue, Strategy, StudySpec};
    let space = std::collections::BTreeMap::from([
        ("learning_rate".to_owned(), Domain::LogUniform([1e-4, 1e-1])),
        (
            "model".to_owned(),
            Domain::Choice(vec![ParamValue::Text("linear".into()), ParamValue::Text("mlp:16".into())]),
        ),
    ]);
    let study = |strategy, asha| StudySpec {
        name: "fuzz".into(),
        base: fixture().model_manifest.spec.clone(),
        space: space.clone(),
        strategy,
        asha,
        metric: Some(Metric::Accuracy),
        trials: 6,
        parallel: 2,
        seed: 3,
    };
    vec![
        study(Strategy::Random, None),
        study(Strategy::Tpe { startup: 2 }, Some(Asha { min_resource: 2, eta: 2 })),
        study(Strategy::Grid { steps: 3 }, None),
        study(Strategy::Genetic { population: 3, mutation: 0.2 }, None),
    ]
}

/// The studies' journals part-way: opened, then a step with every run
/// finished.
fn study_records() -> Vec<mass_protocol::studies::StudyRecord> {
    studies()
        .into_iter()
        .map(|spec| {
            let mut record = crate::studies::plan::open(ContentId::of(b"study"), spec);
            let id_of = |job: &JobSpec| ContentId::of(&enc(job));
            crate::studies::plan::advance(&mut record, &Default::default(), &id_of);
            record
        })
        .collect()
}
