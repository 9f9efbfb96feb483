//! The HTTP/1 client weir's API clients (registry, tracking, router admin, autoscaler signals)
//! share: one request with headers and a body, over HTTP or HTTPS, bounded in time, answered
//! with its status and body. What the body means (JSON, which error fields) stays with each
//! client.

pub mod admin_token;
pub mod body;
pub mod build_info;
pub mod download;
pub mod duration;
mod host;
mod hpack;
pub mod http2_client;
mod http2_frame;
pub mod panic;
pub mod prometheus;
pub mod router_client;
pub mod server;
pub mod testing;
mod tls;
pub mod utc;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use host::is_loopback_host;
pub use tls::HttpClientError;

/// A pooled client for `http://` and `https://` URLs; cheap to clone. HTTPS always verifies the
/// server's chain and name.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// HTTPS trusts the system's root certificates.
impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::with_config(tls::system_config())
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// HTTPS trusts exactly the certificates of the PEM bundle `ca_file` (a private CA, as
    /// curl's `--cacert`), or the system's roots without one. A missing, unreadable or empty
    /// bundle is an error naming the file, found now rather than at the first request.
    pub fn with_ca_file(ca_file: Option<&Path>) -> Result<HttpClient, HttpClientError> {
        Ok(match ca_file {
            Some(path) => HttpClient::with_config(tls::ca_file_config(path)?),
            None => HttpClient::default(),
        })
    }

    fn with_config(config: std::sync::Arc<rustls::ClientConfig>) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // The TLS layer decides the scheme; the TCP layer must accept https:// URLs too.
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*config).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(https),
        }
    }
}

/// An error with its causes: hyper's own words ("client error (Connect)") hide the reason a
/// person can act on (refused, unknown issuer, name mismatch) in the source chain.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let words = inner.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        cause = inner.source();
    }
    text
}

/// The largest answer [`HttpClient::send`] holds: API answers (JSON, metrics text) are kilobytes,
/// so a peer that sends more is cut off rather than held in memory. Files stream through
/// [`download`] instead.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

impl HttpClient {
    /// Sends one request; the answer's status and body (at most [`MAX_ANSWER_BYTES`]), or why
    /// none came (in words for a person: refused, timed out after N s, broken off, too large).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        limit: Duration,
    ) -> Result<(u16, Bytes), String> {
        self.send_at_most(method, url, headers, body, limit, MAX_ANSWER_BYTES)
            .await
    }

    async fn send_at_most(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        limit: Duration,
        max_answer_bytes: usize,
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
            .map_err(|e| with_causes(&e))?;
        let status = response.status().as_u16();
        let answer = http_body_util::Limited::new(response.into_body(), max_answer_bytes);
        let body = tokio::time::timeout(limit, answer.collect())
            .await
            .map_err(|_| format!("the answer did not finish within {} s", limit.as_secs_f64()))?
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("the answer is larger than {max_answer_bytes} bytes")
                } else {
                    format!("the answer broke off: {e}")
                }
            })?
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

/// Why a call to a JSON API did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonCallError {
    /// No answer came; the reason in words.
    Unreachable(String),
    /// The server answered with a status outside 2xx.
    Refused(Refusal),
}

/// A non-2xx answer: its status, its body as JSON (`Null` when it was not JSON) and as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub body: serde_json::Value,
    pub text: String,
}

impl Refusal {
    /// The string field `name` of the error body (an error code), else the status number.
    pub fn field_or_status(&self, name: &str) -> String {
        self.body[name]
            .as_str()
            .map_or_else(|| self.status.to_string(), str::to_owned)
    }

    /// The string field `name` of the error body, else the whole body as text: each API names
    /// its message field differently (`message` for MLflow, `error` for Open Inference).
    pub fn field_or_text(&self, name: &str) -> String {
        self.body[name]
            .as_str()
            .map_or_else(|| self.text.clone(), str::to_owned)
    }
}

impl HttpClient {
    /// One call to a JSON API: a 2xx answer's body parsed (`Null` when empty or not JSON).
    pub async fn call_json(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        limit: Duration,
    ) -> Result<serde_json::Value, JsonCallError> {
        let (status, bytes) = self
            .send(method, url, headers, body, limit)
            .await
            .map_err(JsonCallError::Unreachable)?;
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(JsonCallError::Refused(Refusal {
            status,
            body,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }))
    }
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

    /// A one-connection HTTP server on loopback that answers each request with the next of
    /// `answers` (status line and body), closing after each.
    async fn answering(answers: Vec<(&'static str, &'static str)>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{address}/")
    }

    #[tokio::test]
    async fn an_answer_past_the_cap_is_cut_off_not_held() {
        let url = answering(vec![("200 OK", "0123456789"), ("200 OK", "0123456789a")]).await;
        let client = super::HttpClient::default();
        let send = || {
            client.send_at_most(
                "GET",
                &url,
                &[],
                bytes::Bytes::new(),
                std::time::Duration::from_secs(5),
                10,
            )
        };
        assert_eq!(send().await.unwrap().1, "0123456789");
        assert_eq!(
            send().await.unwrap_err(),
            "the answer is larger than 10 bytes"
        );
    }

    #[tokio::test]
    async fn json_calls_parse_successes_and_keep_refusals_whole() {
        use super::{HttpClient, JsonCallError};
        let url = answering(vec![
            ("200 OK", r#"{"ok": true}"#),
            (
                "404 Not Found",
                r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"}"#,
            ),
            ("500 Internal Server Error", "plain words"),
        ])
        .await;
        let client = HttpClient::default();
        let call = || {
            client.call_json(
                "GET",
                &url,
                &[],
                bytes::Bytes::new(),
                std::time::Duration::from_secs(5),
            )
        };
        assert_eq!(call().await.unwrap(), serde_json::json!({"ok": true}));
        let Err(JsonCallError::Refused(refusal)) = call().await else {
            panic!("a 404 is a refusal");
        };
        assert_eq!(refusal.status, 404);
        assert_eq!(refusal.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
        assert_eq!(refusal.field_or_text("message"), "no such run");
        assert_eq!(
            refusal.field_or_status("error_code"),
            "RESOURCE_DOES_NOT_EXIST"
        );
        let Err(JsonCallError::Refused(refusal)) = call().await else {
            panic!("a 500 is a refusal");
        };
        assert_eq!(
            (refusal.status, refusal.body.clone()),
            (500, serde_json::Value::Null)
        );
        assert_eq!(refusal.field_or_text("message"), "plain words");
        assert_eq!(refusal.field_or_status("error_code"), "500");
        // Nobody listens on the discard port.
        let gone = client
            .call_json(
                "GET",
                "http://127.0.0.1:9/",
                &[],
                bytes::Bytes::new(),
                std::time::Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(gone, Err(JsonCallError::Unreachable(_))),
            "{gone:?}"
        );
    }
}
