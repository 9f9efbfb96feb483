//! Instant queries against a Prometheus server's HTTP API.

use std::time::Duration;

use axum::body::Bytes;
use serde_json::Value;
use weir_http::HttpClient;

thread_local! {
    /// A pool per thread, like the data plane's: a pooled connection is driven by a task on the
    /// runtime that opened it, and the router runs one runtime per worker thread.
    static CLIENT: HttpClient = HttpClient::default();
}

/// The first sample of an instant query; `None` when it has no data (or NaN). Errors say what
/// went wrong in words a log reader understands.
pub async fn query(server: &str, promql: &str) -> Result<Option<f64>, String> {
    let encoded = weir_http::percent_encode(promql);
    let url = format!(
        "{}/api/v1/query?query={encoded}",
        server.trim_end_matches('/')
    );
    let client = CLIENT.with(Clone::clone);
    let (status, bytes) = client
        .send("GET", &url, &[], Bytes::new(), Duration::from_secs(5))
        .await
        .map_err(|reason| format!("cannot query Prometheus at {server}: {reason}"))?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !(200..300).contains(&status) || answer["status"] != "success" {
        return Err(format!(
            "Prometheus refused `{promql}`: {}",
            answer["error"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_owned)
        ));
    }
    let data = &answer["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"][1],
        _ => &data["result"][0]["value"][1],
    };
    Ok(sample
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite()))
}
