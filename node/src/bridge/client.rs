//! The node's side of the bridge protocol: typed calls over HTTP/JSON, each
//! with its own time limit, errors that say which bridge and what happened.

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use super::wire;

/// Why a call to a bridge did not give an answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BridgeError {
    #[error("{endpoint}: cannot reach the bridge: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("{endpoint}: no answer within {after:?}; the bridge may still be running the request")]
    Timeout { endpoint: String, after: Duration },
    #[error("{endpoint}: answered {status}: {message}")]
    Refused { endpoint: String, status: u16, message: String },
    #[error("{endpoint}: {message}")]
    Protocol { endpoint: String, message: String },
}

impl BridgeError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A bridge's base URL from the configured endpoint: `tcp://host:port`
/// (the protocol's transport is HTTP over that TCP address),
/// `http://host:port`, or `host:port`.
pub fn base_url(endpoint: &str) -> Result<String, String> {
    let text = endpoint.trim();
    let rest = match text.split_once("://") {
        Some(("tcp" | "http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!("'{text}': the bridge protocol runs over tcp:// or http://, not {scheme}://"));
        }
        None => text,
    };
    let url = format!("http://{}", rest.trim_end_matches('/'));
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("'{text}' is not a bridge address ({e})"))?;
    if parsed.host_str().is_none() || parsed.port_or_known_default().is_none() || parsed.path() != "/" {
        return Err(format!("'{text}' is not a bridge address such as tcp://127.0.0.1:7000"));
    }
    Ok(url)
}

/// A connection pool to one bridge.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(endpoint: &str) -> Result<Self, String> {
        let base = base_url(endpoint)?;
        // Short idle life: a restarted bridge must not be hit through a
        // connection to the dead process.
        mass_sdk::client::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self { base, http })
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    pub async fn metadata(&self, limit: Duration) -> Result<wire::ServerMetadata, BridgeError> {
        self.call(self.http.get(self.url("/v2")), limit).await
    }

    pub async fn capabilities(&self, limit: Duration) -> Result<wire::Capabilities, BridgeError> {
        self.call(self.http.get(self.url("/v2/hardware/capabilities")), limit).await
    }

    pub async fn health(&self, limit: Duration) -> Result<wire::Health, BridgeError> {
        self.call(self.http.get(self.url("/v2/hardware/health")), limit).await
    }

    pub async fn load(&self, name: &str, model: &wire::MlpModel, limit: Duration) -> Result<(), BridgeError> {
        let body = wire::LoadRequest { parameters: wire::LoadParameters { mass_mlp: model.clone() } };
        let request = self.http.post(self.url(&format!("/v2/repository/models/{name}/load"))).json(&body);
        self.send(request, limit).await.map(drop)
    }

    pub async fn unload(&self, name: &str, limit: Duration) -> Result<(), BridgeError> {
        let request = self.http.post(self.url(&format!("/v2/repository/models/{name}/unload")));
        self.send(request, limit).await.map(drop)
    }

    pub async fn stats(&self, name: &str, limit: Duration) -> Result<wire::ModelStatistics, BridgeError> {
        self.call(self.http.get(self.url(&format!("/v2/models/{name}/stats"))), limit).await
    }

    /// Runs `rows x columns` values (row-major) through model `name`;
    /// the bridge drops the batch once `deadline` has passed, and this call
    /// gives up a little later (the answer's way back).
    pub async fn infer(
        &self,
        name: &str,
        rows: usize,
        columns: usize,
        data: Vec<f32>,
        deadline: Duration,
    ) -> Result<(usize, Vec<f32>), BridgeError> {
        let body = wire::InferRequest {
            id: None,
            parameters: wire::InferParameters { deadline_ms: Some(deadline.as_millis().max(1) as u64) },
            inputs: vec![wire::Tensor::matrix(wire::INPUT, rows, columns, data)],
        };
        let request = self.http.post(self.url(&format!("/v2/models/{name}/infer"))).json(&body);
        let answer: wire::InferResponse = self.call(request, deadline + Duration::from_millis(50)).await?;
        let bad = |message: String| BridgeError::Protocol { endpoint: self.base.clone(), message };
        let [output] = &answer.outputs[..] else {
            return Err(bad(format!("an infer answer with {} output tensors, not one", answer.outputs.len())));
        };
        let (got, width) = output.as_matrix().map_err(bad)?;
        if got != rows {
            return Err(bad(format!("{got} output rows for {rows} input rows")));
        }
        Ok((width, answer.outputs.into_iter().next().expect("one output").data))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        limit: Duration,
    ) -> Result<T, BridgeError> {
        let response = self.send(request, limit).await?;
        let bytes = response.bytes().await.map_err(|e| self.failure(e, limit))?;
        serde_json::from_slice(&bytes).map_err(|e| BridgeError::Protocol {
            endpoint: self.base.clone(),
            message: format!("an answer that is not the protocol's JSON: {e}"),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder, limit: Duration) -> Result<reqwest::Response, BridgeError> {
        let response = request.timeout(limit).send().await.map_err(|e| self.failure(e, limit))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<wire::ErrorBody>(&text).map(|e| e.error).unwrap_or(text);
        Err(BridgeError::Refused { endpoint: self.base.clone(), status: status.as_u16(), message })
    }

    fn failure(&self, error: reqwest::Error, limit: Duration) -> BridgeError {
        let endpoint = self.base.clone();
        if error.is_timeout() {
            return BridgeError::Timeout { endpoint, after: limit };
        }
        // The chain holds the useful part ("Connection refused").
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        BridgeError::Unreachable { endpoint, reason }
    }

    /// Posts any body; for tests of refusals.
    pub async fn post_raw<B: Serialize>(&self, path: &str, body: &B, limit: Duration) -> Result<(), BridgeError> {
        self.send(self.http.post(self.url(path)).json(body), limit).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_base_urls_or_sentences() {
        assert_eq!(base_url("tcp://127.0.0.1:7000").unwrap(), "http://127.0.0.1:7000");
        assert_eq!(base_url("http://fpga.local:80/").unwrap(), "http://fpga.local:80");
        assert_eq!(base_url("10.0.0.9:7000").unwrap(), "http://10.0.0.9:7000");
        assert!(base_url("https://x:1").unwrap_err().contains("not https://"));
        assert!(base_url("tcp://").is_err());
        assert!(base_url("tcp://h:1/path").unwrap_err().contains("such as tcp://127.0.0.1:7000"));
    }
}
