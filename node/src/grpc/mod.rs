//! gRPC beside REST: `mass.v1.Predictor/Predict` (`docs/mass.proto`), for
//! clients that already speak gRPC.
//!
//! The same rows, checks, routing and errors as `POST
//! /v1/models/{name}/predict`: the request becomes the same [`Row`]s and
//! goes through [`router::predict`], behind the same admission bounds and
//! the same `predict` role (`authorization: Bearer` metadata). Errors map to
//! status codes: unknown model `NOT_FOUND`, bad rows `INVALID_ARGUMENT`,
//! overload `RESOURCE_EXHAUSTED`, no replica `UNAVAILABLE`, none in time
//! `DEADLINE_EXCEEDED`, no or unknown
//! token `UNAUTHENTICATED`, a role too small `PERMISSION_DENIED`. Served on
//! its own port (`http.grpc`, `--grpc`), over TLS when the HTTP API is.
//!
//! The service is written by hand instead of generated: one unary method
//! does not warrant protoc or a build script.

pub mod messages;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use mass_protocol::{
    api::Role,
    serving::{Cell, Column, ColumnValues, Predicted, Prediction, Row, Rows},
};
use tonic::{Status, body::Body, server::NamedService};

use self::messages::{PredictReply, PredictRequest, value::Kind};
use crate::{
    auth::{Tokens, Verdict},
    mesh::Mesh,
    serving::{
        router::{self, ServeError},
        rows::MAX_ROWS,
    },
};

/// The one method's path.
pub const PREDICT_PATH: &str = "/mass.v1.Predictor/Predict";
/// Largest request or answer, as for the HTTP predict body.
const MAX_MESSAGE: usize = crate::http::models::MAX_PREDICT_BODY;

/// The `mass.v1.Predictor` service of one node.
#[derive(Clone)]
pub struct Predictor {
    mesh: Mesh,
    tokens: Tokens,
}

impl Predictor {
    pub fn new(mesh: Mesh, tokens: Tokens) -> Self {
        Self { mesh, tokens }
    }

    async fn predict(self, request: tonic::Request<PredictRequest>) -> Result<tonic::Response<PredictReply>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        authorize(&self.tokens, header)?;
        let size = prost::Message::encoded_len(request.get_ref());
        let _ticket = self.mesh.serving.admission.admit(Some(size), MAX_MESSAGE).map_err(|refused| {
            self.mesh.metrics.prediction_refused();
            Status::resource_exhausted(refused.to_string())
        })?;
        let request = request.into_inner();
        let rows = rows(&request).map_err(Status::invalid_argument)?;
        match router::predict(&self.mesh, &request.model, rows, request.allow_missing).await {
            Ok(prediction) => Ok(tonic::Response::new(reply(prediction))),
            Err(e) => {
                if matches!(e, ServeError::Overloaded(_)) {
                    self.mesh.metrics.prediction_refused();
                }
                Err(status(e))
            }
        }
    }
}

/// The same rule as the HTTP API's for its predict route.
fn authorize(tokens: &Tokens, header: Option<&str>) -> Result<(), Status> {
    let needed = Role::Predict;
    match tokens.verify(header) {
        Verdict::Open => Ok(()),
        Verdict::Valid { role, .. } if role >= needed => Ok(()),
        Verdict::Valid { id, role } => {
            Err(Status::permission_denied(format!("token '{id}' has the {role} role; Predict needs {needed}")))
        }
        Verdict::Missing => Err(Status::unauthenticated(format!(
            "this node requires an API token: send 'authorization: Bearer <token>' metadata (Predict needs {needed})"
        ))),
        Verdict::Unknown => Err(Status::unauthenticated("the API token is not known to this node")),
    }
}

fn status(e: ServeError) -> Status {
    match e {
        ServeError::NotFound(m) => Status::not_found(m),
        ServeError::BadInput(m) => Status::invalid_argument(m),
        ServeError::Overloaded(m) => Status::resource_exhausted(m),
        ServeError::Unavailable(m) => Status::unavailable(m),
        e @ ServeError::Deadline(_) => Status::deadline_exceeded(e.to_string()),
    }
}

/// The request's rows, as the HTTP API reads its bodies: a matrix as
/// whole columns (a `.npy` body's path), rows one by one.
pub fn rows(request: &PredictRequest) -> Result<Rows, String> {
    if request.matrix.is_empty() && request.columns == 0 {
        return cells(request).map(Rows::Listed);
    }
    if !request.rows.is_empty() {
        return Err("send rows or a matrix, not both".into());
    }
    let columns = request.columns as usize;
    if columns == 0 || request.matrix.len() % columns != 0 {
        return Err(format!(
            "the matrix holds {} numbers, which is not whole rows of its {columns} columns",
            request.matrix.len()
        ));
    }
    check_count(request.matrix.len() / columns)?;
    if let Some(at) = request.matrix.iter().position(|v| v.is_infinite()) {
        return Err(format!("matrix row {} column {}: infinity is refused", at / columns, at % columns));
    }
    let column = |c: usize| Column {
        name: None,
        values: ColumnValues::Numbers(request.matrix.iter().skip(c).step_by(columns).copied().collect()),
    };
    Ok(Rows::Columns((0..columns).map(column).collect()))
}

fn cells(request: &PredictRequest) -> Result<Vec<Row>, String> {
    check_count(request.rows.len())?;
    request
        .rows
        .iter()
        .enumerate()
        .map(|(r, row)| match (row.values.is_empty(), row.named.is_empty()) {
            (false, false) => Err(format!("rows[{r}]: set values or named, not both")),
            (_, true) => {
                let cells = row.values.iter().enumerate().map(|(c, v)| cell(v, || format!("rows[{r}].values[{c}]")));
                Ok(Row::Values(cells.collect::<Result<_, String>>()?))
            }
            (true, false) => {
                let cells =
                    row.named.iter().map(|(name, v)| Ok((name.clone(), cell(v, || format!("rows[{r}].{name}"))?)));
                Ok(Row::Named(cells.collect::<Result<_, String>>()?))
            }
        })
        .collect()
}

fn check_count(rows: usize) -> Result<(), String> {
    match rows {
        0 => Err("no rows to predict".into()),
        n if n > MAX_ROWS => Err(format!("{n} rows; at most {MAX_ROWS} per request")),
        _ => Ok(()),
    }
}

fn cell(value: &messages::Value, at: impl Fn() -> String) -> Result<Cell, String> {
    match &value.kind {
        None => Ok(Cell::Missing),
        Some(Kind::Number(v)) => number(*v, at),
        Some(Kind::Text(t)) => Ok(Cell::Text(t.clone())),
        Some(Kind::Flag(b)) => Ok(Cell::Bool(*b)),
    }
}

/// NaN is a missing value; infinity is refused, as in JSON bodies.
fn number(v: f64, at: impl Fn() -> String) -> Result<Cell, String> {
    if v.is_nan() {
        Ok(Cell::Missing)
    } else if v.is_infinite() {
        Err(format!("{}: infinity is refused", at()))
    } else {
        Ok(Cell::Number(v))
    }
}

fn reply(prediction: Prediction) -> PredictReply {
    let (mut predicted_classes, mut values) = (Vec::new(), Vec::new());
    for p in prediction.predictions {
        match p {
            Predicted::Class(c) => predicted_classes.push(c),
            Predicted::Value(v) => values.push(v),
        }
    }
    PredictReply {
        model: prediction.model,
        version: prediction.version,
        manifest: prediction.manifest.to_string(),
        classes: prediction.classes,
        predicted_classes,
        values,
        probabilities: prediction.probabilities.into_iter().flatten().collect(),
        served_by: prediction.served_by,
    }
}

/// The unary handler tonic drives.
struct PredictCall(Predictor);

impl tonic::server::UnaryService<PredictRequest> for PredictCall {
    type Response = PredictReply;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<PredictReply>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<PredictRequest>) -> Self::Future {
        Box::pin(self.0.clone().predict(request))
    }
}

impl tower_service::Service<http::Request<Body>> for Predictor {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if request.uri().path() != PREDICT_PATH {
                let path = request.uri().path().to_owned();
                return Ok(
                    Status::unimplemented(format!("no method {path}; this node serves {PREDICT_PATH}")).into_http()
                );
            }
            let codec = tonic_prost::ProstCodec::<PredictReply, PredictRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            Ok(grpc.unary(PredictCall(service), request).await)
        })
    }
}

impl NamedService for Predictor {
    const NAME: &'static str = "mass.v1.Predictor";
}

/// Serves `predictor` on `listener` until `shutdown` resolves; over TLS
/// with the HTTP API's certificate and key when given.
pub async fn serve(
    listener: std::net::TcpListener,
    predictor: Predictor,
    tls: Option<&crate::http::TlsFiles>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let mut server = tonic::transport::Server::builder();
    if let Some(files) = tls {
        let read = |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        let identity = tonic::transport::Identity::from_pem(read(&files.cert)?, read(&files.key)?);
        server = server
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("gRPC TLS: {e}"))?;
    }
    server
        .add_service(predictor)
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), shutdown)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{messages::Value, *};

    fn number(v: f64) -> Value {
        Value { kind: Some(Kind::Number(v)) }
    }

    #[test]
    fn rows_are_read_as_the_http_api_reads_them() {
        let request = PredictRequest {
            rows: vec![
                messages::Row {
                    values: vec![number(1.5), Value { kind: None }, number(f64::NAN)],
                    ..Default::default()
                },
                messages::Row {
                    named: [("colour".to_owned(), Value { kind: Some(Kind::Text("red".into())) })].into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            rows(&request).unwrap(),
            Rows::Listed(vec![
                Row::Values(vec![Cell::Number(1.5), Cell::Missing, Cell::Missing]),
                Row::Named(vec![("colour".into(), Cell::Text("red".into()))]),
            ])
        );
        let matrix = PredictRequest { matrix: vec![1.0, 2.0, 3.0, f64::NAN], columns: 2, ..Default::default() };
        let Rows::Columns(columns) = rows(&matrix).unwrap() else { panic!("a matrix is read as columns") };
        assert_eq!(columns[0], Column { name: None, values: ColumnValues::Numbers(vec![1.0, 3.0]) });
        let ColumnValues::Numbers(second) = &columns[1].values else { panic!() };
        assert!(second[0] == 2.0 && second[1].is_nan(), "NaN is a missing value");
    }

    #[test]
    fn bad_requests_are_refused_by_name() {
        let refused = |request: PredictRequest| rows(&request).unwrap_err();
        assert!(refused(PredictRequest::default()).contains("no rows"));
        let ragged = PredictRequest { matrix: vec![1.0; 5], columns: 2, ..Default::default() };
        assert!(refused(ragged).contains("5 numbers, which is not whole rows of its 2 columns"));
        let no_columns = PredictRequest { matrix: vec![1.0; 4], ..Default::default() };
        assert!(refused(no_columns).contains("0 columns"));
        let both = PredictRequest {
            matrix: vec![1.0],
            columns: 1,
            rows: vec![messages::Row::default()],
            ..Default::default()
        };
        assert!(refused(both).contains("rows or a matrix, not both"));
        let infinite = PredictRequest { matrix: vec![1.0, f64::INFINITY], columns: 2, ..Default::default() };
        assert!(refused(infinite).contains("matrix row 0 column 1: infinity"));
        let mixed = messages::Row { values: vec![number(1.0)], named: [("x".to_owned(), number(1.0))].into() };
        assert!(refused(PredictRequest { rows: vec![mixed], ..Default::default() }).contains("rows[0]: set values"));
        let many = PredictRequest { matrix: vec![0.0; MAX_ROWS + 1], columns: 1, ..Default::default() };
        assert!(refused(many).contains(&format!("at most {MAX_ROWS}")));
    }
}
