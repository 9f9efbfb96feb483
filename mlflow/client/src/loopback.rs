//! A loopback server for the clients' tests: it records every request and answers each with
//! what the test's function says, as an MLflow server would.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

type Answer = dyn Fn(&Seen) -> (u16, Value) + Send + Sync;

pub struct Loopback {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Loopback {
    pub async fn start(answer: impl Fn(&Seen) -> (u16, Value) + Send + Sync + 'static) -> Loopback {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let record = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (record, answer) = (record.clone(), answer.clone());
                async move {
                    let request = Seen {
                        method: method.to_string(),
                        uri: uri.to_string(),
                        headers,
                        body,
                    };
                    let (status, json) = answer(&request);
                    record.lock().unwrap().push(request);
                    let status = StatusCode::from_u16(status).unwrap();
                    (status, json.to_string()).into_response()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Loopback { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An MLflow refusal body.
pub fn refusal(code: &str, message: &str) -> Value {
    serde_json::json!({ "error_code": code, "message": message })
}

/// A port nothing listens on (bound, then released).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}
