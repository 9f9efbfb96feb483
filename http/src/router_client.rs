//! A client for the router's admin API (`/admin/v1/…`), used by `weir canary` and by the
//! autoscaler to announce replicas. It lives here, not in the router crate, so that a program
//! that only talks to a router (the autoscaler) does not compile one.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::{HttpClient, JsonCallError};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the router at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the router refused ({status}): {message}")]
    Refused { status: u16, message: String },
}

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: HttpClient,
}

impl AdminClient {
    pub fn new(base: &str, token: Option<String>) -> AdminClient {
        AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: HttpClient::default(),
        }
    }

    /// Calls `/admin/v1/{path}`; the router's JSON answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}/admin/v1/{path}", self.base);
        let bearer = self.token.as_ref().map(|token| format!("Bearer {token}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.http
            .call_json(method, &url, &headers, body, Duration::from_secs(30))
            .await
            .map_err(|err| match err {
                JsonCallError::Unreachable(reason) => ClientError::Unreachable { url, reason },
                JsonCallError::Refused(refusal) => ClientError::Refused {
                    status: refusal.status,
                    message: refusal.field_or_text("error"),
                },
            })
    }
}
