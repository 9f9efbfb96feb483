//! Reading MLflow requests the way the official client writes them, for registry and tracking
//! alike: JSON bodies whatever their Content-Type, required query parameters, protobuf's JSON
//! numbers, MLflow's paging; and the bridge that runs a blocking store call off the async
//! threads. Every refusal is `INVALID_PARAMETER_VALUE` naming the parameter.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::MlflowError;

/// What an MLflow handler returns.
pub type Answer = Result<Response, MlflowError>;

/// A 200 with a JSON body.
pub fn ok(value: Value) -> Answer {
    Ok(json_response(StatusCode::OK, &value))
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// A JSON body, whatever the Content-Type (the client does not always send one); an empty body
/// reads as `{}`, and a missing field names itself.
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, MlflowError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| MlflowError::invalid(format!("invalid request body: {e}")))
}

/// A required value, refused in MLflow's own words when missing.
pub fn required<T>(value: Option<T>, name: &str) -> Result<T, MlflowError> {
    value.ok_or_else(|| {
        MlflowError::invalid(format!("Missing value for required parameter '{name}'."))
    })
}

/// A required query parameter.
pub fn query_param<'a>(
    query: &'a HashMap<String, String>,
    name: &str,
) -> Result<&'a str, MlflowError> {
    required(query.get(name).map(String::as_str), name)
}

/// An int64 as protobuf's JSON writes it: a number or a string of one.
pub fn int(value: &Value, name: &str) -> Result<i64, MlflowError> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| MlflowError::invalid(format!("'{name}' must be an integer, got {value}")))
}

/// MLflow's paging: `max_results` (1 to `limit`, `default` when absent) and an opaque
/// `page_token` (an offset here). Returns `(max_results, offset)`.
pub fn paging(
    max_results: Option<i64>,
    page_token: Option<&str>,
    default: usize,
    limit: usize,
) -> Result<(usize, usize), MlflowError> {
    let max = match max_results {
        None => default,
        Some(m) if m >= 1 && (m as u64) <= limit as u64 => m as usize,
        Some(m) => {
            return Err(MlflowError::invalid(format!(
                "Invalid value {m} for parameter 'max_results': it must be between 1 and {limit}"
            )))
        }
    };
    let offset = match page_token.filter(|t| !t.is_empty()) {
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| MlflowError::invalid(format!("Invalid page token '{token}'")))?,
        None => 0,
    };
    Ok((max, offset))
}

/// `max_results` as a query string carries it (GET searches): absent or empty is `None`.
pub fn max_results_param(text: Option<&str>) -> Result<Option<i64>, MlflowError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            t.trim().parse::<i64>().map_err(|_| {
                MlflowError::invalid(format!("Invalid value {t} for parameter 'max_results'"))
            })
        })
        .transpose()
}

/// The `next_page_token` of an answer: the next offset, or null on the last page.
pub fn next_page_token(next: Option<usize>) -> Value {
    next.map_or(Value::Null, |n| Value::String(n.to_string()))
}

/// Runs a store call off the async threads (SQLite syncs to disk on every write; PostgreSQL
/// waits on the network), turning the store's error into MLflow's. Its time goes to the
/// [`StoreTimer`] the request runs under, if any.
pub async fn blocking<S, T, E>(
    state: &Arc<S>,
    work: impl FnOnce(&S) -> Result<T, E> + Send + 'static,
) -> Result<T, MlflowError>
where
    S: Send + Sync + 'static,
    T: Send + 'static,
    E: Into<MlflowError> + Send + 'static,
{
    let state = state.clone();
    let started = std::time::Instant::now();
    let answer = tokio::task::spawn_blocking(move || work(&state)).await;
    // Outside a timed request (a background task, a test) there is nobody to tell.
    let _ = STORE_TIMER.try_with(|timer| (timer.record)(started.elapsed()));
    answer
        .map_err(|e| MlflowError::internal(format!("a store call did not finish: {e}")))?
        .map_err(Into::into)
}

tokio::task_local! {
    static STORE_TIMER: StoreTimer;
}

/// Told how long each [`blocking`] store call of a request took (from handing it to a
/// blocking thread to its answer, so a wait for a database connection counts), for a server's
/// store-latency metric. Scoped to the request's task rather than global, so two servers in
/// one process (tests, embedding) keep their own numbers, and handlers need no change.
#[derive(Clone)]
pub struct StoreTimer {
    record: Arc<dyn Fn(std::time::Duration) + Send + Sync>,
}

impl std::fmt::Debug for StoreTimer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("StoreTimer")
    }
}

impl StoreTimer {
    pub fn new(record: impl Fn(std::time::Duration) + Send + Sync + 'static) -> StoreTimer {
        StoreTimer {
            record: Arc::new(record),
        }
    }

    /// Runs `work` (a request's handling) with every store call in it timed by this timer.
    pub async fn time<F: std::future::Future>(self, work: F) -> F::Output {
        STORE_TIMER.scope(self, work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn paging_reads_mlflow_tokens_and_refuses_the_rest() {
        assert_eq!(paging(None, None, 100, 1000), Ok((100, 0)));
        assert_eq!(paging(Some(5), Some("10"), 100, 1000), Ok((5, 10)));
        assert_eq!(paging(Some(5), Some(""), 100, 1000), Ok((5, 0)));
        for (max, token) in [(Some(0), None), (Some(1001), None), (None, Some("x"))] {
            let refused = paging(max, token, 100, 1000).unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidParameterValue);
        }
        assert_eq!(max_results_param(Some("7")), Ok(Some(7)));
        assert_eq!(max_results_param(Some("")), Ok(None));
        assert!(max_results_param(Some("seven")).is_err());
        assert_eq!(next_page_token(Some(3)), Value::String("3".into()));
        assert_eq!(next_page_token(None), Value::Null);
    }

    #[test]
    fn bodies_and_numbers_are_read_as_the_client_writes_them() {
        #[derive(serde::Deserialize, Debug)]
        struct Named {
            #[serde(default)]
            name: Option<String>,
        }
        let empty: Named = body(&Bytes::from_static(b"  ")).unwrap();
        assert!(empty.name.is_none());
        assert!(body::<Named>(&Bytes::from_static(b"{\"name\": 3}")).is_err());
        assert_eq!(int(&serde_json::json!("42"), "n"), Ok(42));
        assert_eq!(int(&serde_json::json!(42.0), "n"), Ok(42));
        let refused = int(&serde_json::json!("4x"), "step").unwrap_err();
        assert!(refused.message.contains("'step'"), "{refused}");
        let missing = required::<u8>(None, "run_id").unwrap_err();
        assert!(missing.message.contains("'run_id'"), "{missing}");
    }

    #[tokio::test]
    async fn blocking_calls_map_the_store_error() {
        struct Store;
        let state = Arc::new(Store);
        let answer = blocking(&state, |_: &Store| Ok::<_, MlflowError>(7)).await;
        assert_eq!(answer, Ok(7));
        let refused = blocking(&state, |_: &Store| {
            Err::<u8, _>(MlflowError::new(ErrorCode::ResourceDoesNotExist, "gone"))
        })
        .await
        .unwrap_err();
        assert_eq!(refused.code, ErrorCode::ResourceDoesNotExist);
    }

    #[tokio::test]
    async fn store_calls_are_timed_only_inside_a_timer_scope() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Store;
        let state = Arc::new(Store);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let timer = StoreTimer::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let state_in = state.clone();
        let answer = timer
            .time(async move {
                let first = blocking(&state_in, |_: &Store| Ok::<_, MlflowError>(1)).await;
                let second = blocking(&state_in, |_: &Store| {
                    Err::<u8, _>(MlflowError::new(ErrorCode::ResourceDoesNotExist, "gone"))
                })
                .await;
                (first, second.is_err())
            })
            .await;
        assert_eq!(answer, (Ok(1), true));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "failed calls are timed too"
        );
        // Outside the scope nothing is recorded, and the call still answers.
        assert_eq!(
            blocking(&state, |_: &Store| Ok::<_, MlflowError>(3)).await,
            Ok(3)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
