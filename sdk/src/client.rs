//! [`Client`]: typed calls to the HTTP API of any node, with failover.

use std::{
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use futures::StreamExt;
use mass_protocol::{
    ContentId,
    api::{
        BlobInfo, DrainStatus, ErrorBody, FitPipeline, FittedPipelineView, Health, PeerView, RefView, Rollback, SetRef,
    },
    content_id::ParseContentIdError,
    dataset::{DatasetSummary, DatasetView},
    features::PipelineSpec,
    jobs::{JobRecord, JobSpec, LiveTask, ModelManifest},
    serving::{
        BatchPredict, BatchPrediction, Compose, CompressRequest, ExportFormat, ImportModel, ModelSummary, ModelVersion,
        ModelView, Prediction, Promote, ScoringRecord,
    },
    storage::RefRecord,
    studies::{StudyRecord, StudySpec},
};
use reqwest::Method;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::Error;

/// What to ingest and how (see `POST /v1/datasets`).
#[derive(Debug, Clone, Default)]
pub struct IngestRequest {
    pub name: String,
    pub label: String,
    /// Column kinds to fix: (column, "numeric" | "categorical" | "text").
    pub types: Vec<(String, String)>,
    pub shard_rows: Option<usize>,
    pub seed: Option<u64>,
    pub validation: Option<f64>,
    pub test: Option<f64>,
    /// A file of 0-based test row numbers, one per line.
    pub test_rows: Option<std::path::PathBuf>,
}

/// Default bound on one HTTP call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on calls that do bulk work on the mesh (batch predictions).
pub const LONG_TIMEOUT: Duration = Duration::from_secs(600);

/// A client of the mesh, holding one or more node URLs.
#[derive(Debug)]
pub struct Client {
    nodes: Vec<reqwest::Url>,
    /// Index of the node that answered last; calls start there.
    preferred: AtomicUsize,
    http: reqwest::Client,
    /// Bound on calls that move no bulk data.
    timeout: Duration,
    /// Sent with every call (the API token).
    headers: reqwest::header::HeaderMap,
    /// HTTPS settings when a CA certificate was given.
    tls: Option<rustls::ClientConfig>,
}

impl Client {
    /// Builds a client over node base URLs such as `http://127.0.0.1:8080`.
    pub fn new<I, S>(nodes: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::with_timeout(nodes, DEFAULT_TIMEOUT)
    }

    pub fn with_timeout<I, S>(nodes: I, timeout: Duration) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = nodes.into_iter().map(|n| parse_node_url(n.as_ref())).collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(Error::NoNodes);
        }
        // No client-wide timeout: uploads, downloads and ingests take as long
        // as their data; short calls set `timeout` per request.
        let headers = reqwest::header::HeaderMap::new();
        let http = build_http(timeout, &headers, None)?;
        Ok(Self { nodes, preferred: AtomicUsize::new(0), http, timeout, headers, tls: None })
    }

    /// Sends `token` as `Authorization: Bearer` on every call.
    pub fn with_token(mut self, token: &str) -> Result<Self, Error> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| Error::Invalid("the API token has characters a header cannot carry".into()))?;
        value.set_sensitive(true);
        self.headers.insert(reqwest::header::AUTHORIZATION, value);
        self.http = build_http(self.timeout, &self.headers, self.tls.clone())?;
        Ok(self)
    }

    /// Trusts the CA certificate(s) in the PEM `pem` for `https://` nodes
    /// (a node's `http.tls_cert`, or the CA that signed it).
    pub fn with_ca_cert(mut self, pem: &[u8]) -> Result<Self, Error> {
        self.tls = Some(tls_trusting(pem)?);
        self.http = build_http(self.timeout, &self.headers, self.tls.clone())?;
        Ok(self)
    }

    /// `GET /v1/health` of the first node that answers.
    pub async fn health(&self) -> Result<Health, Error> {
        self.json(Method::GET, "v1/health", None).await
    }

    /// `GET /v1/peers`: the peer table, the answering node first.
    pub async fn peers(&self) -> Result<Vec<PeerView>, Error> {
        self.json(Method::GET, "v1/peers", None).await
    }

    /// `POST /v1/node/drain`: asks the node to hand its blobs, serving
    /// replicas and jobs to the others, then exit (admin role). A drain
    /// names one node, so a client of several refuses: failing over would
    /// drain another node than the one meant.
    pub async fn drain(&self) -> Result<DrainStatus, Error> {
        self.one_node("drain")?;
        self.json(Method::POST, "v1/node/drain", None).await
    }

    /// `GET /v1/node/drain`: how far the node's drain got.
    pub async fn drain_status(&self) -> Result<DrainStatus, Error> {
        self.one_node("a drain's status")?;
        self.json(Method::GET, "v1/node/drain", None).await
    }

    fn one_node(&self, what: &str) -> Result<(), Error> {
        if self.nodes.len() != 1 {
            return Err(Error::Invalid(format!(
                "{what} concerns one node; this client has {} (make one with just that node's URL)",
                self.nodes.len()
            )));
        }
        Ok(())
    }

    /// Uploads a file as a blob, streaming it; `progress` is called with the
    /// bytes sent so far. Pinned blobs stay until unpinned.
    pub async fn put_blob_file(
        &self,
        path: &Path,
        pin: bool,
        progress: impl Fn(u64) + Send + Sync + Clone + 'static,
    ) -> Result<BlobInfo, Error> {
        let shown = path.display().to_string();
        let query = if pin { "v1/blobs" } else { "v1/blobs?pin=false" };
        let response = self
            .call(|http, url| {
                let file = std::fs::File::open(path)
                    .map_err(|e| Error::Io { what: format!("cannot read {shown}"), reason: e.to_string() })?;
                let progress = progress.clone();
                let mut sent = 0u64;
                let stream =
                    ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024).map(move |piece| {
                        if let Ok(bytes) = &piece {
                            sent += bytes.len() as u64;
                            progress(sent);
                        }
                        piece
                    });
                Ok(http.put(url.join(query).expect("relative path")).body(reqwest::Body::wrap_stream(stream)))
            })
            .await?;
        decode(response).await
    }

    /// Uploads bytes as a blob.
    pub async fn put_blob(&self, bytes: Vec<u8>, pin: bool) -> Result<BlobInfo, Error> {
        let query = if pin { "v1/blobs" } else { "v1/blobs?pin=false" };
        let response =
            self.call(|http, url| Ok(http.put(url.join(query).expect("relative path")).body(bytes.clone()))).await?;
        decode(response).await
    }

    /// Downloads a blob into `path` (through a temporary file, so `path` only
    /// ever holds a whole, verified blob), checking its hash on arrival.
    pub async fn get_blob_to_file(&self, id: &str, path: &Path, progress: impl Fn(u64, u64)) -> Result<u64, Error> {
        let expected: ContentId = id.parse().map_err(|e: ParseContentIdError| Error::Invalid(e.to_string()))?;
        let response =
            self.call(|http, url| Ok(http.get(url.join(&format!("v1/blobs/{id}")).expect("relative path")))).await?;
        let url = response.url().to_string();
        let total = response.content_length().unwrap_or(0);
        let tmp = path.with_extension("part");
        let io = |what: &str, e: std::io::Error| Error::Io {
            what: format!("{what} {}", tmp.display()),
            reason: e.to_string(),
        };
        let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| io("cannot create", e))?;
        let mut hasher = blake3::Hasher::new();
        let mut received = 0u64;
        let mut body = response.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| Error::Decode {
                url: url.clone(),
                reason: format!("download interrupted: {}", describe(&e)),
            })?;
            hasher.update(&piece);
            file.write_all(&piece).await.map_err(|e| io("cannot write", e))?;
            received += piece.len() as u64;
            progress(received, total);
        }
        file.sync_all().await.map_err(|e| io("cannot sync", e))?;
        let actual = ContentId::from(hasher.finalize());
        if actual != expected {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(Error::Decode { url, reason: format!("received bytes hash to {actual}, not {expected}") });
        }
        tokio::fs::rename(&tmp, path).await.map_err(|e| io("cannot rename", e))?;
        Ok(received)
    }

    /// Downloads a blob into memory.
    pub async fn get_blob(&self, id: &str) -> Result<Vec<u8>, Error> {
        let expected: ContentId = id.parse().map_err(|e: ParseContentIdError| Error::Invalid(e.to_string()))?;
        let response =
            self.call(|http, url| Ok(http.get(url.join(&format!("v1/blobs/{id}")).expect("relative path")))).await?;
        let url = response.url().to_string();
        let bytes = response.bytes().await.map_err(|e| Error::Decode { url: url.clone(), reason: describe(&e) })?;
        if ContentId::of(&bytes) != expected {
            return Err(Error::Decode { url, reason: format!("received bytes do not hash to {expected}") });
        }
        Ok(bytes.to_vec())
    }

    /// Blobs stored on the answering node.
    pub async fn list_blobs(&self) -> Result<Vec<BlobInfo>, Error> {
        self.json(Method::GET, "v1/blobs", None).await
    }

    /// Unpins a blob mesh-wide; GC removes it where no ref keeps it.
    pub async fn unpin_blob(&self, id: &str) -> Result<(), Error> {
        self.json::<serde_json::Value>(Method::DELETE, &format!("v1/blobs/{id}"), None).await.map(|_| ())
    }

    /// Ingests a CSV file (plain or gzip) as a dataset, streaming it.
    pub async fn ingest_csv(&self, path: &Path, request: &IngestRequest) -> Result<DatasetView, Error> {
        self.ingest_file(path, request, None).await
    }

    /// Ingests a JSON Lines file (plain or gzip: one object of column ->
    /// value per line) as a dataset, streaming it.
    pub async fn ingest_jsonl(&self, path: &Path, request: &IngestRequest) -> Result<DatasetView, Error> {
        self.ingest_file(path, request, Some("application/x-ndjson")).await
    }

    /// Ingests a Parquet file (flat columns; snappy, gzip or zstd pages) as a
    /// dataset. The node spools it whole before reading it: its index is at
    /// its end.
    pub async fn ingest_parquet(&self, path: &Path, request: &IngestRequest) -> Result<DatasetView, Error> {
        self.ingest_file(path, request, Some("application/vnd.apache.parquet")).await
    }

    /// Streams the file at `path` to `POST /v1/datasets`, with its content
    /// type when the node cannot tell the format from the bytes.
    async fn ingest_file(
        &self,
        path: &Path,
        request: &IngestRequest,
        content_type: Option<&str>,
    ) -> Result<DatasetView, Error> {
        let query = self.ingest_query(request).await?;
        let response = self
            .call(|http, url| {
                let mut post = http.post(url.join("v1/datasets").expect("relative path")).query(&query);
                if let Some(kind) = content_type {
                    post = post.header(reqwest::header::CONTENT_TYPE, kind);
                }
                Ok(post.body(reqwest::Body::wrap_stream(file_stream(path)?)))
            })
            .await?;
        decode(response).await
    }

    /// Ingests NumPy arrays: a labels vector and a features matrix (`.npy`),
    /// sent as one stream, labels first.
    pub async fn ingest_npy(
        &self,
        labels: &Path,
        features: &Path,
        request: &IngestRequest,
    ) -> Result<DatasetView, Error> {
        let query = self.ingest_query(request).await?;
        let response = self
            .call(|http, url| {
                let body = file_stream(labels)?.chain(file_stream(features)?);
                Ok(http
                    .post(url.join("v1/datasets").expect("relative path"))
                    .query(&query)
                    .body(reqwest::Body::wrap_stream(body)))
            })
            .await?;
        decode(response).await
    }

    /// The query of an ingest; uploads the test-rows list first if there is one.
    async fn ingest_query(&self, request: &IngestRequest) -> Result<Vec<(&'static str, String)>, Error> {
        let mut query: Vec<(&str, String)> = vec![("name", request.name.clone()), ("label", request.label.clone())];
        if !request.types.is_empty() {
            let types: Vec<String> = request.types.iter().map(|(c, k)| format!("{c}:{k}")).collect();
            query.push(("types", types.join(",")));
        }
        for (key, value) in [
            ("shard_rows", request.shard_rows.map(|v| v.to_string())),
            ("seed", request.seed.map(|v| v.to_string())),
            ("validation", request.validation.map(|v| v.to_string())),
            ("test", request.test.map(|v| v.to_string())),
        ] {
            query.extend(value.map(|v| (key, v)));
        }
        if let Some(list) = &request.test_rows {
            let info = self.put_blob_file(list, true, |_| {}).await?;
            query.push(("test_rows", info.id.to_string()));
        }
        Ok(query)
    }

    pub async fn datasets(&self) -> Result<Vec<DatasetSummary>, Error> {
        self.json(Method::GET, "v1/datasets", None).await
    }

    /// A dataset's manifest and which peers hold each shard.
    pub async fn dataset(&self, name: &str) -> Result<DatasetView, Error> {
        self.json(Method::GET, &format!("v1/datasets/{name}"), None).await
    }

    /// Fits a feature pipeline on a dataset where its shards live.
    pub async fn fit_pipeline(
        &self,
        dataset: &str,
        name: &str,
        spec: PipelineSpec,
    ) -> Result<FittedPipelineView, Error> {
        let body = serde_json::to_value(FitPipeline { name: name.to_owned(), spec }).expect("serializes");
        let path = format!("v1/datasets/{dataset}/pipelines");
        let response =
            self.call(|http, url| Ok(http.post(url.join(&path).expect("relative path")).json(&body))).await?;
        decode(response).await
    }

    /// Submits a training job; answers its id at once (the job runs on).
    pub async fn submit_job(&self, spec: &JobSpec) -> Result<ContentId, Error> {
        let body = serde_json::to_value(spec).expect("serializes");
        let answer: serde_json::Value = self.json(Method::POST, "v1/jobs", Some(body)).await?;
        answer["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| Error::Decode { url: "v1/jobs".into(), reason: format!("no job id in {answer}") })
    }

    /// A job's last checkpoint.
    pub async fn job(&self, id: &str) -> Result<JobRecord, Error> {
        self.json(Method::GET, &format!("v1/jobs/{id}"), None).await
    }

    /// A job's record once it changes: at once if it is over, else when
    /// its next checkpoint (or a cancel) reaches the node, or after `wait`
    /// (at most 30 s), whichever is first.
    pub async fn job_changed(&self, id: &str, wait: Duration) -> Result<JobRecord, Error> {
        self.record_changed(&format!("v1/jobs/{id}"), wait).await
    }

    /// The record at `path` once it changes on the node (`?wait_ms=`),
    /// given the node's wait on top of the usual timeout.
    async fn record_changed<T: DeserializeOwned>(&self, path: &str, wait: Duration) -> Result<T, Error> {
        let path = format!("{path}?wait_ms={}", wait.as_millis());
        self.json_with_timeout(Method::GET, &path, None, wait + self.timeout).await
    }

    /// What each running task of a job last reported (epoch, loss, node).
    pub async fn job_progress(&self, id: &str) -> Result<Vec<LiveTask>, Error> {
        self.json(Method::GET, &format!("v1/jobs/{id}/progress"), None).await
    }

    /// Cancels a job; its driver stops at its next checkpoint.
    pub async fn cancel_job(&self, id: &str) -> Result<JobRecord, Error> {
        self.json(Method::POST, &format!("v1/jobs/{id}/cancel"), None).await
    }

    pub async fn jobs(&self) -> Result<Vec<JobRecord>, Error> {
        self.json(Method::GET, "v1/jobs", None).await
    }

    /// Opens a hyperparameter study; the mesh drives it (no driver to keep
    /// alive on the client's side). Returns the study id.
    pub async fn submit_study(&self, spec: &StudySpec) -> Result<ContentId, Error> {
        let body = serde_json::to_value(spec).expect("serializes");
        let answer: serde_json::Value = self.json(Method::POST, "v1/studies", Some(body)).await?;
        answer["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| Error::Decode { url: "v1/studies".into(), reason: format!("no study id in {answer}") })
    }

    /// A study's journal: every trial's parameters, runs and scores.
    pub async fn study(&self, id: &str) -> Result<StudyRecord, Error> {
        self.json(Method::GET, &format!("v1/studies/{id}"), None).await
    }

    /// The study's journal once it next changes on the node (a trial
    /// proposed, scored or stopped, its end), or after `wait`; at once
    /// when the study is over.
    pub async fn study_changed(&self, id: &str, wait: Duration) -> Result<StudyRecord, Error> {
        self.record_changed(&format!("v1/studies/{id}"), wait).await
    }

    pub async fn studies(&self) -> Result<Vec<StudyRecord>, Error> {
        self.json(Method::GET, "v1/studies", None).await
    }

    /// Cancels a study and its running trials.
    pub async fn cancel_study(&self, id: &str) -> Result<StudyRecord, Error> {
        self.json(Method::POST, &format!("v1/studies/{id}/cancel"), None).await
    }

    /// Models and the version each serves now.
    pub async fn models(&self) -> Result<Vec<ModelSummary>, Error> {
        self.json(Method::GET, "v1/models", None).await
    }

    /// A model: the version served now, its manifest, every version, replicas.
    pub async fn model(&self, name: &str) -> Result<ModelView, Error> {
        self.json(Method::GET, &format!("v1/models/{name}"), None).await
    }

    /// Serves `version` of model `name` from now on, on every node.
    pub async fn promote(&self, name: &str, version: u64) -> Result<ModelVersion, Error> {
        let body = serde_json::to_value(Promote { version }).expect("serializes");
        self.json(Method::POST, &format!("v1/models/{name}/promote"), Some(body)).await
    }

    /// Serves the version before the current one.
    pub async fn rollback_model(&self, name: &str) -> Result<ModelVersion, Error> {
        self.json(Method::POST, &format!("v1/models/{name}/rollback"), None).await
    }

    /// Predicts `rows` (JSON arrays of the feature columns in schema order,
    /// or objects keyed by column name) with the version served now.
    pub async fn predict(&self, name: &str, rows: &[serde_json::Value]) -> Result<Prediction, Error> {
        let body = serde_json::json!({ "rows": rows });
        self.json(Method::POST, &format!("v1/models/{name}/predict"), Some(body)).await
    }

    /// Predicts numeric rows (feature columns in schema order; NaN is a
    /// missing value, allowed with `allow_missing`) sent as a binary
    /// `.npy` matrix: no JSON to write or parse for the rows, and in the
    /// narrowest dtype that holds every value exactly (bytes for pixels).
    pub async fn predict_matrix(
        &self,
        name: &str,
        rows: &[Vec<f64>],
        allow_missing: bool,
    ) -> Result<Prediction, Error> {
        let columns = rows.first().map_or(0, Vec::len);
        if let Some(r) = rows.iter().position(|r| r.len() != columns) {
            return Err(Error::Invalid(format!("row {r} has {} values; row 0 has {columns}", rows[r].len())));
        }
        let values: Vec<f64> = rows.iter().flatten().copied().collect();
        let body = mass_protocol::npy::write_matrix_exact(&values, &[rows.len(), columns]);
        let path = format!("v1/models/{name}/predict");
        let response = self
            .call(|http, url| {
                Ok(http
                    .post(url.join(&path).expect("relative path"))
                    .query(&[("allow_missing", allow_missing)])
                    .header("content-type", "application/x-npy")
                    .body(body.clone()))
            })
            .await?;
        decode(response).await
    }

    /// Runs the served version of `name` over every row of `dataset`, where
    /// its shards live; the CSV is a blob (see [`Client::get_blob`]).
    pub async fn batch_predict(&self, name: &str, dataset: &str) -> Result<BatchPrediction, Error> {
        self.batch_predict_into(name, dataset, None).await
    }

    /// As [`Client::batch_predict`]; with `into`, the rows with the model's
    /// outputs as columns are also stored as dataset `into`.
    pub async fn batch_predict_into(
        &self,
        name: &str,
        dataset: &str,
        into: Option<&str>,
    ) -> Result<BatchPrediction, Error> {
        let request = BatchPredict { dataset: dataset.to_owned(), into: into.map(str::to_owned), wait: true };
        let body = serde_json::to_value(request).expect("serializes");
        self.json_with_timeout(Method::POST, &format!("v1/models/{name}/batch"), Some(body), LONG_TIMEOUT).await
    }

    /// Opens a batch prediction as a job and returns its id at once; follow
    /// it with [`Client::scoring`]. The job survives the node that drives it.
    pub async fn submit_batch_predict(
        &self,
        name: &str,
        dataset: &str,
        into: Option<&str>,
    ) -> Result<ContentId, Error> {
        let request = BatchPredict { dataset: dataset.to_owned(), into: into.map(str::to_owned), wait: false };
        let body = serde_json::to_value(request).expect("serializes");
        let opened: serde_json::Value = self.json(Method::POST, &format!("v1/models/{name}/batch"), Some(body)).await?;
        opened["scoring"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| Error::Invalid(format!("the node answered without a scoring job id: {opened}")))
    }

    /// A scoring job's record: shards scored, drivers, state and result.
    pub async fn scoring(&self, id: &ContentId) -> Result<ScoringRecord, Error> {
        self.json(Method::GET, &format!("v1/scorings/{id}"), None).await
    }

    /// A scoring job's record once it changes: at once if it is over, else
    /// when its next checkpoint (a shard scored, its end) reaches the node,
    /// or after `wait` (at most 30 s), whichever is first.
    pub async fn scoring_changed(&self, id: &ContentId, wait: Duration) -> Result<ScoringRecord, Error> {
        self.record_changed(&format!("v1/scorings/{id}"), wait).await
    }

    /// Makes model `name` (a new version) of registered models.
    pub async fn compose(&self, name: &str, request: &Compose) -> Result<ModelVersion, Error> {
        let body = serde_json::to_value(request).expect("serializes");
        self.json_with_timeout(Method::POST, &format!("v1/models/{name}/compose"), Some(body), LONG_TIMEOUT).await
    }

    /// Version `version` (default: the one served now) of model `name` as a
    /// file in `format`, and the version it is.
    pub async fn export_model(
        &self,
        name: &str,
        version: Option<u64>,
        format: ExportFormat,
    ) -> Result<(Vec<u8>, u64), Error> {
        let mut path = format!("v1/models/{name}/export?format={}", format.name());
        if let Some(v) = version {
            path.push_str(&format!("&version={v}"));
        }
        let response =
            self.call(|http, url| Ok(http.get(url.join(&path).expect("relative path")).timeout(LONG_TIMEOUT))).await?;
        let url = response.url().to_string();
        let exported = response
            .headers()
            .get("x-mass-model-version")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Decode { url: url.clone(), reason: "no x-mass-model-version header".into() })?;
        let bytes = response.bytes().await.map_err(|e| Error::Decode { url, reason: describe(&e) })?;
        Ok((bytes.to_vec(), exported))
    }

    /// Registers a weight file already uploaded as a blob as a new version
    /// of model `name` (see [`ImportModel`]).
    pub async fn import_model(&self, name: &str, request: &ImportModel) -> Result<ModelVersion, Error> {
        let body = serde_json::to_value(request).expect("serializes");
        self.json_with_timeout(Method::POST, &format!("v1/models/{name}/import"), Some(body), LONG_TIMEOUT).await
    }

    /// Compresses a version of model `name` (int8, pruning or distillation)
    /// into a new version, which is served from then on.
    pub async fn compress(&self, name: &str, request: &CompressRequest) -> Result<ModelVersion, Error> {
        let body = serde_json::to_value(request).expect("serializes");
        self.json_with_timeout(Method::POST, &format!("v1/models/{name}/compress"), Some(body), LONG_TIMEOUT).await
    }

    /// The manifest of any stored version of model `name`.
    pub async fn model_version(&self, name: &str, manifest: &str) -> Result<ModelManifest, Error> {
        self.json(Method::GET, &format!("v1/models/{name}/versions/{manifest}"), None).await
    }

    /// Points a ref at a blob (a new version).
    pub async fn set_ref(&self, name: &str, target: &str) -> Result<RefView, Error> {
        let body = serde_json::to_value(SetRef { target: target.to_owned() }).expect("serializes");
        self.json(Method::PUT, &format!("v1/refs/{name}"), Some(body)).await
    }

    pub async fn get_ref(&self, name: &str) -> Result<RefView, Error> {
        self.json(Method::GET, &format!("v1/refs/{name}"), None).await
    }

    pub async fn ref_history(&self, name: &str) -> Result<RefRecord, Error> {
        self.json(Method::GET, &format!("v1/refs/{name}/history"), None).await
    }

    /// A new version of `name` pointing where `version` pointed.
    pub async fn rollback_ref(&self, name: &str, version: u64) -> Result<RefView, Error> {
        let body = serde_json::to_value(Rollback { version }).expect("serializes");
        self.json(Method::POST, &format!("v1/refs/{name}/rollback"), Some(body)).await
    }

    pub async fn refs(&self) -> Result<Vec<RefView>, Error> {
        self.json(Method::GET, "v1/refs", None).await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, Error> {
        self.json_with_timeout(method, path, body, self.timeout).await
    }

    async fn json_with_timeout<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<T, Error> {
        let response = self
            .call(|http, url| {
                let request =
                    http.request(method.clone(), url.join(path).expect("relative API paths join")).timeout(timeout);
                Ok(match &body {
                    Some(body) => request.json(body),
                    None => request,
                })
            })
            .await?;
        decode(response).await
    }

    /// Sends a request to the preferred node, failing over to the others when
    /// a node cannot be reached or answers 5xx. A 4xx is the caller's error and
    /// is returned at once: another node would say the same. Every call the
    /// SDK makes is idempotent (content-addressed puts, versioned refs), so a
    /// retry elsewhere is safe.
    async fn call(
        &self,
        build: impl Fn(&reqwest::Client, &reqwest::Url) -> Result<reqwest::RequestBuilder, Error>,
    ) -> Result<reqwest::Response, Error> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut attempts = Vec::new();
        for offset in 0..self.nodes.len() {
            let index = (start + offset) % self.nodes.len();
            let base = &self.nodes[index];
            match build(&self.http, base)?.send().await {
                Err(e) => attempts.push(format!("{base}: {}", describe(&e))),
                Ok(response) if response.status().is_server_error() => {
                    let status = response.status();
                    attempts.push(format!("{}: {status} {}", response.url().clone(), error_message(response).await));
                }
                Ok(response) if !response.status().is_success() => {
                    let url = response.url().to_string();
                    let status = response.status().as_u16();
                    return Err(Error::Api { url, status, message: error_message(response).await });
                }
                Ok(response) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
            }
        }
        Err(Error::Unreachable { attempts })
    }
}

/// A file as a stream of byte pieces.
fn file_stream(path: &Path) -> Result<ReaderStream<tokio::fs::File>, Error> {
    std::fs::File::open(path)
        .map(|file| ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024))
        .map_err(|e| Error::Io { what: format!("cannot read {}", path.display()), reason: e.to_string() })
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, Error> {
    let url = response.url().to_string();
    let bytes = response.bytes().await.map_err(|e| Error::Decode { url: url.clone(), reason: describe(&e) })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode { url, reason: e.to_string() })
}

/// Makes aws-lc-rs the process's TLS provider, once, so that any
/// `reqwest::Client` built without explicit TLS settings (the project
/// builds reqwest with no provider of its own) can still be built.
pub fn ensure_crypto_provider() {
    // Fails only when a provider is already installed, which is the goal.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn build_http(
    timeout: Duration,
    headers: &reqwest::header::HeaderMap,
    tls: Option<rustls::ClientConfig>,
) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .default_headers(headers.clone());
    // Without a CA the client still speaks plain HTTP; an https:// node then
    // fails with a message that names the missing certificate.
    builder = builder.use_preconfigured_tls(tls.unwrap_or_else(|| tls_with_roots(rustls::RootCertStore::empty())));
    builder.build().map_err(|e| Error::Launch(format!("HTTP client: {e}")))
}

/// A TLS client configuration trusting the certificates of a PEM file.
fn tls_trusting(pem: &[u8]) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::Invalid(format!("the CA certificate file is not PEM: {e}")))?;
        roots.add(cert).map_err(|e| Error::Invalid(format!("the CA certificate is not usable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Invalid("the CA certificate file holds no certificate".into()));
    }
    Ok(tls_with_roots(roots))
}

fn tls_with_roots(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn parse_node_url(text: &str) -> Result<reqwest::Url, Error> {
    let invalid = |reason: String| Error::InvalidUrl { url: text.to_owned(), reason };
    let mut url = reqwest::Url::parse(text.trim()).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(format!("scheme '{}' is not http", url.scheme())));
    }
    if url.host().is_none() {
        return Err(invalid("no host".into()));
    }
    // Base URLs must end in '/' for join() to append rather than replace.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        error.to_string()
    };
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    if text.contains("certificate") {
        text.push_str(" (trust the node's certificate: Client::with_ca_cert, or --ca-cert / MASS_CA_CERT in the CLI)");
    }
    text
}

async fn error_message(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str::<ErrorBody>(&text).map(|b| b.error).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_are_checked() {
        assert!(matches!(Client::new(Vec::<String>::new()), Err(Error::NoNodes)));
        let err = Client::new(["localhost:8080"]).unwrap_err().to_string();
        assert!(err.contains("'localhost:8080' is not a node URL"), "{err}");
        let err = Client::new(["ftp://x"]).unwrap_err().to_string();
        assert!(err.contains("scheme 'ftp'"), "{err}");
        assert!(Client::new(["http://127.0.0.1:1/mass"]).is_ok());
    }

    #[tokio::test]
    async fn unreachable_nodes_are_all_named() {
        // Port 9 on loopback: nothing listens there.
        let client =
            Client::with_timeout(["http://127.0.0.1:9", "http://127.0.0.2:9"], Duration::from_secs(2)).unwrap();
        let err = client.health().await.unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:9") && err.contains("127.0.0.2:9"), "{err}");
    }
}
