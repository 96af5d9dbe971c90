//! `/v1/models`: the registry (versions, promotion, rollback), predictions
//! from any node, and batch predictions over stored datasets.

use actix_web::{HttpResponse, http::StatusCode, web};
use futures::StreamExt;
use mass_protocol::{
    ContentId,
    serving::{BatchPredict, Compose, CompressRequest, ExportFormat, ImportModel, ModelView, Promote, Rows},
};

use super::openapi::schemas as doc;
use super::{State, arrow, error};
use crate::serving::{
    registry,
    registry::RegistryError,
    router::{self, ServeError},
    rows::MAX_ROWS,
    scoring,
};

/// Largest predict body: 1,000 rows of MNIST as JSON fit with room to spare.
pub const MAX_PREDICT_BODY: usize = 16 * 1024 * 1024;

fn registry_error(e: RegistryError) -> HttpResponse {
    let status = match e {
        RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
        RegistryError::Conflict(_) => StatusCode::CONFLICT,
        RegistryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

fn serve_error(e: ServeError) -> HttpResponse {
    match e {
        ServeError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        ServeError::BadInput(m) => error(StatusCode::BAD_REQUEST, m),
        ServeError::Overloaded(m) => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, m);
            response
                .headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, actix_web::http::header::HeaderValue::from_static("1"));
            response
        }
        ServeError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        e @ ServeError::Deadline(_) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
    }
}

/// `GET /v1/models`.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "models_list",
    tag = "models",
    summary = "Models and the version served now",
    responses(
        (status = 200, description = "OK", body = Vec<doc::ModelSummary>, content_type = "application/json"),
    ),
)]
pub async fn list(state: web::Data<State>) -> HttpResponse {
    match registry::list(&state.mesh).await {
        Ok(models) => HttpResponse::Ok().json(models),
        Err(e) => registry_error(e),
    }
}

/// `GET /v1/models/{name}`: the version served now, its manifest, every version.
#[utoipa::path(
    get,
    path = "/v1/models/{name}",
    operation_id = "models_show",
    tag = "models",
    summary = "A model: current version, manifest (pipeline, weights, metrics, lineage), every version, \
        replicas",
    params(
        ("name" = String, Path),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 404, description = "unknown model", body = doc::ErrorBody),
    ),
)]
pub async fn show(state: web::Data<State>, name: web::Path<String>) -> HttpResponse {
    let mesh = state.mesh();
    let (versions, current) = match registry::versions(&mesh, &name).await {
        Ok(found) => found,
        Err(e) => return registry_error(e),
    };
    let manifest = match mesh.load_model(current.manifest).await {
        Ok(manifest) => manifest,
        Err(message) => return error(StatusCode::SERVICE_UNAVAILABLE, message),
    };
    let replicas = crate::serving::replica_set(&mesh, &current.manifest).await.iter().map(|p| p.to_string()).collect();
    HttpResponse::Ok().json(ModelView {
        name: name.into_inner(),
        version: current.version,
        manifest_id: current.manifest,
        manifest,
        versions,
        replicas,
    })
}

/// `POST /v1/models/{name}/promote` with `{"version": N}`.
#[utoipa::path(
    post,
    path = "/v1/models/{name}/promote",
    operation_id = "models_promote",
    tag = "models",
    summary = "Serve a given version from now on, on every node",
    params(
        ("name" = String, Path),
    ),
    request_body(content = doc::Promote, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = doc::ModelVersion, content_type = "application/json"),
        (status = 404, description = "no such version", body = doc::ErrorBody),
    ),
)]
pub async fn promote(state: web::Data<State>, name: web::Path<String>, body: web::Json<Promote>) -> HttpResponse {
    match registry::promote(&state.mesh, &name, body.version).await {
        Ok(version) => HttpResponse::Ok().json(version),
        Err(e) => registry_error(e),
    }
}

/// `POST /v1/models/{name}/rollback`: back to the version before the current one.
#[utoipa::path(
    post,
    path = "/v1/models/{name}/rollback",
    operation_id = "models_rollback",
    tag = "models",
    summary = "Serve the version before the current one",
    params(
        ("name" = String, Path),
    ),
    responses(
        (status = 200, description = "OK", body = doc::ModelVersion, content_type = "application/json"),
        (status = 409, description = "already at version 1", body = doc::ErrorBody),
    ),
)]
pub async fn rollback(state: web::Data<State>, name: web::Path<String>) -> HttpResponse {
    match registry::rollback(&state.mesh, &name).await {
        Ok(version) => HttpResponse::Ok().json(version),
        Err(e) => registry_error(e),
    }
}

/// How long `POST /v1/models/{name}/batch` waits for its job (the SDK's
/// long timeout is 600 s); past it the job goes on and the answer says
/// where to follow it.
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_secs(590);

/// `POST /v1/models/{name}/batch` with `{"dataset": NAME}`: opens a scoring
/// job and answers with its result, or at once with its id (`"wait": false`).
#[utoipa::path(
    post,
    path = "/v1/models/{name}/batch",
    operation_id = "models_batch_predict",
    tag = "models",
    summary = "Predict every row of a stored dataset where its shards live, as a checkpointed scoring job that \
        survives its driver; writes a CSV blob named predictions/<model>/<dataset>",
    params(
        ("name" = String, Path),
    ),
    request_body(content = doc::BatchPredict, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 202, description = "the scoring job is open; follow it at GET /v1/scorings/{id}", body = doc::ScoringOpened),
        (status = 404, description = "unknown model or dataset", body = doc::ErrorBody),
        (status = 503, description = "the job failed (the reason names the shard), or is still running after 590 s", body = doc::ErrorBody),
    ),
)]
pub async fn batch_predict(
    state: web::Data<State>,
    name: web::Path<String>,
    body: web::Json<BatchPredict>,
) -> HttpResponse {
    let mesh = state.mesh();
    let id = match scoring::submit(&mesh, &name, &body.dataset, body.into.as_deref()).await {
        Ok(id) => id,
        Err(e) => return serve_error(e),
    };
    if !body.wait {
        return HttpResponse::Accepted().json(serde_json::json!({ "scoring": id }));
    }
    match scoring::wait(&mesh, id, BATCH_WAIT).await {
        Ok(done) => HttpResponse::Ok().json(done),
        Err(e) => serve_error(e),
    }
}

/// `GET /v1/scorings/{id}`: a scoring job's record.
#[utoipa::path(
    get,
    path = "/v1/scorings/{id}",
    operation_id = "models_scoring_show",
    tag = "models",
    summary = "A scoring job's record: one slot per shard (the blob of its scores and the peer that scored it, \
        once scored), drivers, state (Running, Completed, Failed) and result",
    params(
        ("id" = String, Path),
        ("wait_ms" = Option<u64>, Query, description = "for a running job: answer when its record is next written here (a shard scored, its end) or after this many milliseconds, whichever is first (at most 30000)"),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 400, description = "not a scoring job id, or wait_ms over 30000", body = doc::ErrorBody),
        (status = 404, description = "no such scoring job", body = doc::ErrorBody),
    ),
)]
pub async fn scoring_show(
    state: web::Data<State>,
    id: web::Path<String>,
    query: web::Query<super::wait::WaitQuery>,
) -> HttpResponse {
    let Ok(id) = id.parse::<ContentId>() else {
        return error(StatusCode::BAD_REQUEST, format!("'{id}' is not a scoring job id (64 hex digits)"));
    };
    let wait = match query.wait() {
        Ok(wait) => wait,
        Err(refused) => return refused,
    };
    let mesh = state.mesh();
    let names = [format!("{}{id}", scoring::REF_PREFIX)];
    let over = |r: &mass_protocol::serving::ScoringRecord| r.state.is_over();
    match super::wait::after_change(&mesh, &names, wait, || scoring::record(&mesh, id), over).await {
        Ok(Some(record)) => HttpResponse::Ok().json(record),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no scoring job {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `POST /v1/models/{name}/compose` with `{"serial": [...]}` or `{"parallel": [...]}`.
#[utoipa::path(
    post,
    path = "/v1/models/{name}/compose",
    operation_id = "models_compose",
    tag = "models",
    summary = "Make a model (a new version of it) of registered models: serial (each reads the rows plus the \
        previous model's outputs) or parallel (weighted average)",
    params(
        ("name" = String, Path),
    ),
    request_body(content = doc::Compose, content_type = "application/json"),
    responses(
        (status = 200, description = "the new version", body = doc::ModelVersion, content_type = "application/json"),
        (status = 404, description = "unknown part", body = doc::ErrorBody),
        (status = 422, description = "parts that cannot be composed, named", body = doc::ErrorBody),
    ),
)]
pub async fn compose(state: web::Data<State>, name: web::Path<String>, body: web::Json<Compose>) -> HttpResponse {
    match crate::serving::compose::compose(&state.mesh, &name, body.into_inner()).await {
        Ok(version) => HttpResponse::Ok().json(version),
        Err(ServeError::BadInput(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => serve_error(e),
    }
}

/// `GET /v1/models/{name}/export` query.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    format: String,
    version: Option<u64>,
}

/// `GET /v1/models/{name}/export?format=safetensors|onnx[&version=N]`: the
/// file's bytes.
#[utoipa::path(
    get,
    path = "/v1/models/{name}/export",
    operation_id = "models_export",
    tag = "models",
    summary = "The model as a file other tools read: safetensors (dense weights; the fitted pipeline, classes \
        and combining weights as JSON metadata) or ONNX opset 13 (the whole model, numeric imputation and \
        scaling included)",
    params(
        ("name" = String, Path),
        ("format" = String, Query, description = "One of: safetensors, onnx."),
        ("version" = Option<u64>, Query, description = "default: the version served now", minimum = 1),
    ),
    responses(
        (status = 200, description = "the file's bytes; the x-mass-model-version header says which version", body = doc::Binary, content_type = "application/octet-stream", headers(
            ("x-mass-model-version" = u64, description = "the version exported"),
            ("x-mass-model-manifest" = String, description = "its manifest's content id"),
            ("content-disposition" = String, description = "attachment; filename=\"<name>-v<version>.<format>\""),
        )),
        (status = 400, description = "unknown format", body = doc::ErrorBody),
        (status = 404, description = "unknown model or version", body = doc::ErrorBody),
        (status = 422, description = "a model the format cannot carry (trees, a stacked ensemble, a composition; for ONNX a pipeline that is not numeric scaling), named", body = doc::ErrorBody),
    ),
)]
pub async fn export(state: web::Data<State>, name: web::Path<String>, query: web::Query<ExportQuery>) -> HttpResponse {
    let format = match ExportFormat::parse(&query.format) {
        Ok(format) => format,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match crate::serving::export::export(&state.mesh, &name, query.version, format).await {
        Ok(done) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header(("x-mass-model-version", done.version.version.to_string()))
            .insert_header(("x-mass-model-manifest", done.version.manifest.to_string()))
            .insert_header((
                "content-disposition",
                format!("attachment; filename=\"{name}-v{}.{}\"", done.version.version, format.name()),
            ))
            .body(done.bytes),
        Err(ServeError::BadInput(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => serve_error(e),
    }
}

/// `POST /v1/models/{name}/import` with `{"blob": ID, "dataset": NAME,
/// "pipeline": {"spec": {...}} | {"fitted": {...}}, "activation": "relu"}`.
#[utoipa::path(
    post,
    path = "/v1/models/{name}/import",
    operation_id = "models_import",
    tag = "models",
    summary = "Register a safetensors file of dense networks (uploaded as a blob) as a new version of the \
        model, reading a dataset's columns; checked and evaluated on the dataset's test rows before anything \
        is stored",
    params(
        ("name" = String, Path),
    ),
    request_body(content = doc::ImportModel, content_type = "application/json"),
    responses(
        (status = 200, description = "the new version", body = doc::ModelVersion, content_type = "application/json"),
        (status = 400, description = "a body that is not an import request", body = doc::ErrorBody),
        (status = 404, description = "unknown dataset or blob", body = doc::ErrorBody),
        (status = 422, description = "a file refused, by name: tensors that do not match their declared shapes or do not chain, widths that do not fit the pipeline's features or the classes, no pipeline; nothing is registered", body = doc::ErrorBody),
    ),
)]
pub async fn import(state: web::Data<State>, name: web::Path<String>, body: web::Payload) -> HttpResponse {
    let bytes = match read_body(body, None, "; upload a fitted pipeline's spec instead").await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let request: ImportModel = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    match crate::serving::import::import(&state.mesh, &name, request).await {
        Ok(version) => HttpResponse::Ok().json(version),
        Err(ServeError::BadInput(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => serve_error(e),
    }
}

/// `POST /v1/models/{name}/compress` with `{"quantize": "int8"}`,
/// `{"prune": 0.8, "fine_tune_epochs": 2}` or `{"distill": "mlp:64"}` (and
/// `"version": N` for another than the current): a new version, served now.
#[utoipa::path(
    post,
    path = "/v1/models/{name}/compress",
    operation_id = "models_compress",
    tag = "models",
    summary = "Compress a version of a model (the current one unless \"version\" is given) into a new version, \
        served from then on: int8 quantization, magnitude pruning with optional fine-tuning, or distillation \
        of an ensemble into one network. The new manifest's \"compression\" records the parent, method, stored \
        bytes and latency beside the parent's",
    params(
        ("name" = String, Path),
    ),
    request_body(content = doc::CompressRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the new version", body = doc::ModelVersion, content_type = "application/json"),
        (status = 404, description = "unknown model or version", body = doc::ErrorBody),
        (status = 422, description = "a request that cannot be done, named: an impossible sparsity, a student that does not fit, members of a kind the method does not compress, a single network to distill, a composed model", body = doc::ErrorBody),
    ),
)]
pub async fn compress(
    state: web::Data<State>,
    name: web::Path<String>,
    body: web::Json<CompressRequest>,
) -> HttpResponse {
    match crate::serving::compress::compress(&state.mesh, &name, body.into_inner()).await {
        Ok(version) => HttpResponse::Ok().json(version),
        Err(ServeError::BadInput(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => serve_error(e),
    }
}

/// A request body of at most [`MAX_PREDICT_BODY`] bytes; `hint` follows
/// the refusal of a larger one. `declared`: its Content-Length, reserved
/// up front (up to the limit) so a large body is not copied as it grows.
async fn read_body(mut body: web::Payload, declared: Option<usize>, hint: &str) -> Result<web::BytesMut, HttpResponse> {
    let mut bytes = web::BytesMut::with_capacity(declared.unwrap_or(0).min(MAX_PREDICT_BODY));
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) if bytes.len() + chunk.len() <= MAX_PREDICT_BODY => bytes.extend_from_slice(&chunk),
            Ok(_) => {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body: over the {} MiB limit{hint}", MAX_PREDICT_BODY >> 20),
                ));
            }
            Err(e) => return Err(error(StatusCode::BAD_REQUEST, format!("body: {e}"))),
        }
    }
    Ok(bytes)
}

/// The binary body type of predictions, in and out.
pub const NPY: &str = "application/x-npy";

/// `POST /v1/models/{name}/predict` query: for a binary body, whether
/// missing values (NaN) are allowed.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictQuery {
    allow_missing: Option<bool>,
}

/// `POST /v1/models/{name}/predict` with `{"rows": [...], "allow_missing":
/// false}`, with a `.npy` matrix of rows (`Content-Type:
/// application/x-npy`; NaN is a missing value), or with an Arrow IPC
/// stream of named columns ([`arrow`]). Answered in JSON; with `Accept:
/// application/x-npy` as a `.npy` matrix: class probabilities (rows x
/// classes, `f4`, the classes in the `x-mass-classes` header as JSON) or
/// values (`f8`, one per row); with `Accept:
/// application/vnd.apache.arrow.stream` as an Arrow stream.
#[utoipa::path(
    post,
    path = "/v1/models/{name}/predict",
    operation_id = "models_predict",
    tag = "models",
    summary = "Predict rows with the version served now, from any node",
    description = "Rows are objects keyed by column name or arrays of the feature columns in schema order \
        (label left out). null and NaN are refused unless allow_missing is true (then imputed by the \
        pipeline). At most 10,000 rows and 16 MiB per request. With Content-Type application/x-npy the body is \
        a .npy matrix (rows x feature columns, little-endian numbers, C order; a vector is one row; NaN is a \
        missing value, allowed with ?allow_missing=true). With Accept: application/x-npy the answer is a .npy \
        matrix: class probabilities (rows x classes, f4; the classes in the x-mass-classes header as JSON) or \
        predicted values (f8, one per row), with x-mass-model-version, x-mass-model-manifest and \
        x-mass-served-by headers. With Content-Type application/vnd.apache.arrow.stream the body is an Arrow \
        IPC stream of record batches whose columns are feature columns by name (integers and floats as \
        numbers, strings or dictionary-encoded strings as categories, booleans; null and NaN are missing \
        values); other column types are refused naming the column. With Accept: \
        application/vnd.apache.arrow.stream the answer is an Arrow stream of one record batch: a prediction \
        column (the class, or the value) and one f32 column of probabilities per class, named by the class, \
        with the same headers.",
    params(
        ("name" = String, Path),
        ("allow_missing" = Option<bool>, Query, description = "for a binary body: impute NaN cells instead of refusing them"),
    ),
    request_body(content(
        (doc::PredictRequestSchema = "application/json"),
        (doc::Binary = "application/x-npy"),
        (doc::Binary = "application/vnd.apache.arrow.stream"),
    )),
    responses(
        (status = 200, description = "OK", content(
            (doc::Prediction = "application/json"),
            (doc::Binary = "application/x-npy"),
            (doc::Binary = "application/vnd.apache.arrow.stream"),
        ), headers(
            ("x-mass-model-version" = u64, description = "the version that answered (binary answers)"),
            ("x-mass-model-manifest" = String, description = "its manifest's content id (binary answers)"),
            ("x-mass-served-by" = String, description = "peer id of the node that ran the model (binary answers)"),
            ("x-mass-classes" = String, description = "the classes as a JSON array (ASCII-escaped), in the order of the probability columns (binary answers)"),
        )),
        (status = 400, description = "malformed JSON, empty batch, wrong number of columns, unknown column, text in a numeric column, NaN/Inf, naming the row and column", body = doc::ErrorBody),
        (status = 404, description = "unknown model", body = doc::ErrorBody),
        (status = 413, description = "body over the size limit", body = doc::ErrorBody),
        (status = 503, description = "overloaded (Retry-After set) or no replica reachable", body = doc::ErrorBody, headers(("Retry-After" = u32, description = "seconds to wait before retrying"))),
        (status = 504, description = "no replica answered within the deadline", body = doc::ErrorBody),
    ),
)]
pub async fn predict(
    state: web::Data<State>,
    name: web::Path<String>,
    query: web::Query<PredictQuery>,
    request: actix_web::HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    // Refused before the body is read: overload costs a refusal, not memory.
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let _ticket = match state.mesh.serving.admission.admit(declared, MAX_PREDICT_BODY) {
        Ok(ticket) => ticket,
        Err(refused) => {
            state.metrics.prediction_refused();
            return serve_error(ServeError::Overloaded(refused.to_string()));
        }
    };
    let bytes = match read_body(body, declared, "; send fewer rows per request").await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let content_type = header("content-type");
    let allowed = query.allow_missing.unwrap_or(false);
    let parsed = if content_type.starts_with(NPY) {
        parse_npy(&bytes).map(|rows| (rows, allowed))
    } else if content_type.starts_with(arrow::ARROW_STREAM) {
        arrow::parse(&bytes, MAX_ROWS).map(|rows| (rows, allowed))
    } else {
        parse_predict(&bytes).map(|(rows, allow)| (rows.into(), allow || allowed))
    };
    let (rows, allow_missing) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let accept = header("accept").to_owned();
    match router::predict(&state.mesh, &name, rows, allow_missing).await {
        Ok(prediction) if accept.contains(NPY) => npy_answer(&prediction),
        Ok(prediction) if accept.contains(arrow::ARROW_STREAM) => match arrow::write(&prediction) {
            Ok(body) => binary_answer(arrow::ARROW_STREAM, &prediction, body),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        Ok(prediction) => HttpResponse::Ok().json(prediction),
        Err(e) => {
            if matches!(e, ServeError::Overloaded(_)) {
                state.metrics.prediction_refused();
            }
            serve_error(e)
        }
    }
}

/// Rows from a `.npy` body: a matrix of the feature columns in schema
/// order, row-major as sent; NaN cells are missing values.
pub fn parse_npy(body: &[u8]) -> Result<Rows, String> {
    let matrix = crate::datasets::npy::read_matrix(body, MAX_ROWS).map_err(|e| format!("body: {e}"))?;
    Ok(Rows::Matrix(matrix))
}

/// A prediction as a `.npy` matrix, what it means in headers.
fn npy_answer(prediction: &mass_protocol::serving::Prediction) -> HttpResponse {
    use crate::datasets::npy::write_matrix;
    let rows = prediction.predictions.len();
    let body = if prediction.classes.is_empty() {
        let values: Vec<f64> = prediction
            .predictions
            .iter()
            .map(|p| match p {
                mass_protocol::serving::Predicted::Value(v) => f64::from(*v),
                mass_protocol::serving::Predicted::Class(_) => f64::NAN,
            })
            .collect();
        write_matrix(&values, &[rows], true)
    } else {
        let values: Vec<f64> = prediction.probabilities.iter().flatten().map(|p| f64::from(*p)).collect();
        write_matrix(&values, &[rows, prediction.classes.len()], false)
    };
    binary_answer(NPY, prediction, body)
}

/// A binary answer, with what it means (classes, version, server) in headers.
fn binary_answer(content_type: &str, prediction: &mass_protocol::serving::Prediction, body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("x-mass-classes", ascii_json(&prediction.classes)))
        .insert_header(("x-mass-model-version", prediction.version.to_string()))
        .insert_header(("x-mass-model-manifest", prediction.manifest.to_string()))
        .insert_header(("x-mass-served-by", prediction.served_by.clone()))
        .body(body)
}

/// JSON of `values` with every non-ASCII character escaped, so it fits a
/// header.
fn ascii_json(values: &[String]) -> String {
    let json = serde_json::to_string(values).unwrap_or_else(|_| "[]".into());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Reads a predict body; every structural problem is named.
pub use super::predict_body::parse_predict;

/// `GET /v1/models/{name}/versions/{id}`: any stored version's manifest.
#[utoipa::path(
    get,
    path = "/v1/models/{name}/versions/{id}",
    operation_id = "models_version_manifest",
    tag = "models",
    summary = "The manifest of any version",
    params(
        ("name" = String, Path),
        ("id" = String, Path, description = "64 hex digits (blake3)"),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 400, description = "not a manifest id (64 hex digits)", body = doc::ErrorBody),
        (status = 404, description = "not a version of this model", body = doc::ErrorBody),
    ),
)]
pub async fn version_manifest(state: web::Data<State>, path: web::Path<(String, String)>) -> HttpResponse {
    let id: ContentId = match path.1.parse() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e}")),
    };
    match state.mesh.load_model(id).await {
        Ok(manifest) if manifest.name == path.0 => HttpResponse::Ok().json(manifest),
        Ok(_) => error(StatusCode::NOT_FOUND, format!("{id} is not a version of model '{}'", path.0)),
        Err(message) => error(StatusCode::NOT_FOUND, message),
    }
}
