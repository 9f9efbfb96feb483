//! The HTTP/1 client weir's API clients (registry, tracking, router admin, autoscaler signals)
//! share: one request with headers and a body, bounded in time, answered with its status and
//! body. What the body means (JSON, which error fields) stays with each client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled client; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl HttpClient {
    /// Sends one request; the answer's status and body, or why none came (in words for a
    /// person: refused, timed out after N s, broken off).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        limit: Duration,
    ) -> Result<(u16, Bytes), String> {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("invalid request: {e}"))?;
        let response = tokio::time::timeout(limit, self.inner.request(request))
            .await
            .map_err(|_| format!("no answer within {} s", limit.as_secs_f64()))?
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = tokio::time::timeout(limit, response.into_body().collect())
            .await
            .map_err(|_| format!("the answer did not finish within {} s", limit.as_secs_f64()))?
            .map_err(|e| format!("the answer broke off: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for query values.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            super::percent_encode("sum(x{a=\"b c\"})"),
            "sum%28x%7Ba%3D%22b%20c%22%7D%29"
        );
        assert_eq!(super::percent_encode("iris-v2_1.~"), "iris-v2_1.~");
    }
}
