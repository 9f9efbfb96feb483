//! Instant queries against a Prometheus server's HTTP API (the router's rollout judge and the
//! autoscaler's signal both read one number this way).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::HttpClient;

thread_local! {
    /// A pool per thread: a pooled connection is driven by a task on the runtime that opened
    /// it, and the router runs one runtime per worker thread.
    static CLIENT: HttpClient = HttpClient::default();
}

/// Why a query gave no number; the messages name the server or the query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrometheusError {
    #[error("cannot query Prometheus at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// Prometheus answered, but not with success (a bad query, an overloaded server).
    #[error("Prometheus refused `{query}`: {reason}")]
    Refused { query: String, reason: String },
}

/// The first sample of an instant query; `None` when it has no data (or NaN): an absent series
/// is not a zero.
pub async fn query(server: &str, promql: &str) -> Result<Option<f64>, PrometheusError> {
    let encoded = crate::percent_encode(promql);
    let url = format!(
        "{}/api/v1/query?query={encoded}",
        server.trim_end_matches('/')
    );
    let client = CLIENT.with(Clone::clone);
    let (status, bytes) = client
        .send("GET", &url, &[], Bytes::new(), Duration::from_secs(5))
        .await
        .map_err(|reason| PrometheusError::Unreachable {
            server: server.to_owned(),
            reason,
        })?;
    first_sample(status, &bytes, promql)
}

/// Reads an instant query's answer: a scalar's value or the first vector element's.
fn first_sample(status: u16, bytes: &[u8], promql: &str) -> Result<Option<f64>, PrometheusError> {
    let answer: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    if !(200..300).contains(&status) || answer["status"] != "success" {
        return Err(PrometheusError::Refused {
            query: promql.to_owned(),
            reason: answer["error"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_owned),
        });
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn answers_give_their_first_sample_and_absence_is_none() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2.5"]}]}}"#;
        assert_eq!(first_sample(200, vector, "q"), Ok(Some(2.5)));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#;
        assert_eq!(first_sample(200, scalar, "q"), Ok(Some(7.0)));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(first_sample(200, empty, "q"), Ok(None));
        let nan = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert_eq!(first_sample(200, nan, "q"), Ok(None));
    }

    #[test]
    fn refusals_name_the_query_and_the_reason() {
        let bad = br#"{"status":"error","error":"parse error: unexpected end of input"}"#;
        let err = first_sample(400, bad, "sum(").unwrap_err().to_string();
        assert_eq!(
            err,
            "Prometheus refused `sum(`: parse error: unexpected end of input"
        );
        let err = first_sample(502, b"bad gateway", "up")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "Prometheus refused `up`: 502");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        // A port nothing listens on (bound, then closed).
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let server = format!("http://{address}");
        let err = query(&server, "up").await.unwrap_err();
        assert!(
            matches!(&err, PrometheusError::Unreachable { server: s, .. } if *s == server),
            "{err}"
        );
        assert!(err
            .to_string()
            .starts_with(&format!("cannot query Prometheus at {server}: ")));
    }
}
