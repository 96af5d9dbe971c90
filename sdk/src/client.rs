//! [`Client`]: typed calls to the HTTP API of any node, with failover.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use mass_protocol::api::{ErrorBody, Health, PeerView};
use serde::de::DeserializeOwned;

use crate::Error;

/// Default bound on one HTTP call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of the mesh, holding one or more node URLs.
#[derive(Debug)]
pub struct Client {
    nodes: Vec<reqwest::Url>,
    /// Index of the node that answered last; calls start there.
    preferred: AtomicUsize,
    http: reqwest::Client,
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
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .build()
            .map_err(|e| Error::Launch(format!("HTTP client: {e}")))?;
        Ok(Self { nodes, preferred: AtomicUsize::new(0), http })
    }

    /// `GET /v1/health` of the first node that answers.
    pub async fn health(&self) -> Result<Health, Error> {
        self.get("v1/health").await
    }

    /// `GET /v1/peers`: the peer table, the answering node first.
    pub async fn peers(&self) -> Result<Vec<PeerView>, Error> {
        self.get("v1/peers").await
    }

    /// GETs `path` from the preferred node, failing over to the others when a
    /// node cannot be reached or answers 5xx. A 4xx is the caller's error and is
    /// returned at once: another node would say the same.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut attempts = Vec::new();
        for offset in 0..self.nodes.len() {
            let index = (start + offset) % self.nodes.len();
            let url = self.nodes[index].join(path).expect("relative API paths join");
            match self.http.get(url.clone()).send().await {
                Err(e) => attempts.push(format!("{url}: {}", describe(&e))),
                Ok(response) if response.status().is_server_error() => {
                    let status = response.status();
                    attempts.push(format!("{url}: {status} {}", error_message(response).await));
                }
                Ok(response) if !response.status().is_success() => {
                    let status = response.status().as_u16();
                    return Err(Error::Api { url: url.to_string(), status, message: error_message(response).await });
                }
                Ok(response) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|e| Error::Decode { url: url.to_string(), reason: describe(&e) })?;
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| Error::Decode { url: url.to_string(), reason: e.to_string() });
                }
            }
        }
        Err(Error::Unreachable { attempts })
    }
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
