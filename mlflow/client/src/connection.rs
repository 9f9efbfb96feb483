//! One server's address, the caller's credential and the HTTP client: what both API clients
//! send every call through.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use weir_http::{HttpClient, JsonCallError};

use crate::ClientError;

/// Uploads of large model files share this limit with ordinary calls; two minutes leaves a
/// slow link room without letting a dead server hang a command forever.
const CALL_LIMIT: Duration = Duration::from_secs(120);

pub(crate) struct Connection {
    base: String,
    /// What the errors call this server ("registry", "tracking server").
    server: &'static str,
    /// The header naming the caller, when there is one.
    credential: Option<(&'static str, String)>,
    http: HttpClient,
}

impl Connection {
    pub(crate) fn new(base: &str, server: &'static str) -> Connection {
        Connection {
            base: base.trim_end_matches('/').to_owned(),
            server,
            credential: None,
            http: HttpClient::default(),
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn server(&self) -> &'static str {
        self.server
    }

    pub(crate) fn set_credential(&mut self, header: &'static str, value: String) {
        self.credential = Some((header, value));
    }

    pub(crate) fn set_http(&mut self, http: HttpClient) {
        self.http = http;
    }

    /// One call: a 2xx answer's JSON (`Null` when empty), else the server's refusal or why no
    /// answer came.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut headers = vec![("content-type", content_type)];
        if let Some((name, value)) = &self.credential {
            headers.push((name, value.as_str()));
        }
        self.http
            .call_json(method, &url, &headers, body, CALL_LIMIT)
            .await
            .map_err(|err| match err {
                JsonCallError::Unreachable(reason) => ClientError::Unreachable {
                    server: self.server,
                    url,
                    reason,
                },
                JsonCallError::Refused(refusal) => ClientError::Refused {
                    code: refusal.field_or_status("error_code"),
                    message: refusal.field_or_text("message"),
                },
            })
    }
}

/// `Authorization: Basic …` with `user` and an empty password, as the mlflow client sends a
/// user name (MLFLOW_TRACKING_USERNAME) to servers without tokens.
pub(crate) fn basic_user(user: &str) -> String {
    format!("Basic {}", base64(format!("{user}:").as_bytes()))
}

/// Standard base64 with padding (RFC 4648 §4); a dozen lines rather than a dependency.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
        assert_eq!(basic_user("alice"), "Basic YWxpY2U6");
    }
}
