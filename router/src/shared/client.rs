//! The registry's coordination API (weir-coordination, `/api/2.0/weir/coordination/…`) as the
//! router calls it: each call bounded in time, the token sent as a bearer and never shown.

use std::time::Duration;

use axum::body::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_http::{HttpClient, JsonCallError};

/// Where the API lives on the registry (weir-coordination's `API_PREFIX`; the router speaks
/// HTTP to it and does not compile the registry's side).
const API_PREFIX: &str = "/api/2.0/weir/coordination";

/// Why a call did not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SharedError {
    /// The document is at another revision than the write was made against.
    #[error("the shared state changed meanwhile")]
    Conflict,
    #[error("cannot reach the registry at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the registry refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the registry answered what the router cannot read: {0}")]
    Unreadable(String),
}

/// A lease as the registry granted or denied it.
#[derive(Debug, Clone, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub granted: bool,
    /// How long it still runs, from when the registry decided.
    pub remaining_ms: u64,
}

pub struct Client {
    base: String,
    /// `Bearer TOKEN`, when the registry needs credentials (a secret: never logged).
    authorization: Option<String>,
    http: HttpClient,
    deadline: Duration,
}

impl Client {
    pub fn new(
        registry: &str,
        token: Option<&str>,
        http: HttpClient,
        deadline: Duration,
    ) -> Client {
        Client {
            base: format!("{}{API_PREFIX}", registry.trim_end_matches('/')),
            authorization: token.map(|t| format!("Bearer {t}")),
            http,
            deadline,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, SharedError> {
        let url = format!("{}/{path}", self.base);
        let mut headers = vec![("content-type", "application/json")];
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization.as_str()));
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.http
            .call_json(method, &url, &headers, body, self.deadline)
            .await
            .map_err(|err| match err {
                JsonCallError::Unreachable(reason) => SharedError::Unreachable {
                    url: self.base.clone(),
                    reason,
                },
                JsonCallError::Refused(refusal) if refusal.status == 409 => SharedError::Conflict,
                JsonCallError::Refused(refusal) => SharedError::Refused {
                    status: refusal.status,
                    message: refusal.field_or_text("message"),
                },
            })
    }

    /// The document under `key` (its revision and value), or `None` when it was never written.
    pub async fn get(&self, key: &str) -> Result<Option<(i64, Value)>, SharedError> {
        let path = format!("documents/get?key={}", weir_http::percent_encode(key));
        let answer = self.call("GET", &path, None).await?;
        let Some(document) = answer.get("document") else {
            return Ok(None);
        };
        let revision = document["revision"].as_i64().ok_or_else(|| {
            SharedError::Unreadable(format!("a document without a revision: {document}"))
        })?;
        Ok(Some((revision, document["value"].clone())))
    }

    /// Writes `value` if the document is at `expected` (`None`: not written yet); the new revision.
    pub async fn put(
        &self,
        key: &str,
        value: Value,
        expected: Option<i64>,
    ) -> Result<i64, SharedError> {
        let body = json!({ "key": key, "value": value, "expected_revision": expected });
        let answer = self.call("POST", "documents/put", Some(body)).await?;
        answer["revision"]
            .as_i64()
            .ok_or_else(|| SharedError::Unreadable(format!("a write without a revision: {answer}")))
    }

    pub async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, SharedError> {
        let body = json!({ "name": name, "holder": holder, "ttl": weir_http::duration::format_duration(ttl) });
        let answer = self.call("POST", "leases/acquire", Some(body)).await?;
        serde_json::from_value(answer["lease"].clone())
            .map_err(|e| SharedError::Unreadable(format!("a lease the router cannot read: {e}")))
    }

    pub async fn release(&self, name: &str, holder: &str) -> Result<(), SharedError> {
        let body = json!({ "name": name, "holder": holder });
        self.call("POST", "leases/release", Some(body))
            .await
            .map(|_| ())
    }
}
