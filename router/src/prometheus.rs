//! Instant queries against a Prometheus server's HTTP API.

use std::time::Duration;

use serde_json::Value;

/// The first sample of an instant query; `None` when it has no data (or NaN). Errors say what
/// went wrong in words a log reader understands.
pub async fn query(server: &str, promql: &str) -> Result<Option<f64>, String> {
    let encoded = weir_http::percent_encode(promql);
    let url = format!(
        "{}/api/v1/query?query={encoded}",
        server.trim_end_matches('/')
    );
    let request = hyper::Request::get(&url)
        .body(http_body_util::Full::new(axum::body::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(5), crate::client().request(request))
        .await
        .map_err(|_| format!("Prometheus at {server} did not answer within 5 s"))?
        .map_err(|e| format!("cannot query Prometheus at {server}: {e}"))?;
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() || answer["status"] != "success" {
        return Err(format!(
            "Prometheus refused `{promql}`: {}",
            answer["error"].as_str().unwrap_or(status.as_str())
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
