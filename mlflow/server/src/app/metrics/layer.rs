//! The recording layer: put around the whole server (outside the access layer, so refusals
//! are counted too), it labels each request with its route template, counts it by method and
//! code, times it and its store calls, and counts artifact bytes by wrapping the bodies, so no
//! handler has to know about metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::Router;
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use weir_mlflow_wire::request::StoreTimer;
use weir_mlflow_wire::Endpoint;

use super::endpoints::{method_label, Templates, UNMATCHED};
use super::{EndpointLabels, RegistryMetrics, RequestLabels};

/// What the layer records into and the templates it labels with.
#[derive(Clone)]
struct Recording {
    metrics: Arc<RegistryMetrics>,
    templates: Arc<Templates>,
}

/// `router` with every request recorded into `metrics`, labelled with the templates of
/// `endpoints` (the server's endpoint table).
pub(in crate::app) fn layer(
    router: Router,
    metrics: Arc<RegistryMetrics>,
    endpoints: &[Endpoint],
) -> Router {
    let recording = Recording {
        metrics,
        templates: Arc::new(Templates::new(endpoints)),
    };
    router.layer(from_fn_with_state(recording, record))
}

/// Whether `endpoint` carries artifact files in its bodies: MLflow's artifact routes that name
/// a file (`…/mlflow-artifacts/…/{*path}`), not the JSON listing or multipart bookkeeping.
fn carries_artifacts(endpoint: &str) -> bool {
    endpoint.contains("/mlflow-artifacts/")
        && endpoint.ends_with("{*path}")
        && !endpoint.contains("/mpu/")
}

async fn record(State(recording): State<Recording>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let template = recording
        .templates
        .find(&method, request.uri().path())
        .unwrap_or(UNMATCHED)
        .to_owned();
    let metrics = &recording.metrics;
    let artifacts = carries_artifacts(&template);
    let request = if artifacts && method == Method::PUT {
        request.map(|body| counted(body, metrics.artifact_in.clone()))
    } else {
        request
    };
    let store = metrics.store_duration.clone();
    let labels = EndpointLabels { endpoint: template };
    let store_labels = labels.clone();
    let timer = StoreTimer::new(move |took| {
        store
            .get_or_create(&store_labels)
            .observe(took.as_secs_f64());
    });
    let response = timer.time(next.run(request)).await;
    metrics
        .request_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: labels.endpoint,
            method: method_label(&method),
            code: response.status().as_u16(),
        })
        .inc();
    if artifacts && method == Method::GET && response.status().is_success() {
        return response.map(|body| counted(body, metrics.artifact_out.clone()));
    }
    response
}

/// `body`, adding the length of each of its data frames to `bytes` as it passes: what was
/// actually received or sent, not what a header announced. The body's size hint is kept
/// (`inspect_frame` forwards it): axum writes a download's Content-Length from it.
fn counted(body: Body, bytes: Counter) -> Body {
    Body::new(body.inspect_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            bytes.inc_by(u64::try_from(data.len()).unwrap_or(u64::MAX));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_counted_body_keeps_its_size_and_bytes() {
        use axum::body::HttpBody;
        let bytes = Counter::default();
        let body = counted(Body::from(vec![7u8; 10]), bytes.clone());
        // Without the exact size a download would lose its Content-Length.
        assert_eq!(body.size_hint().exact(), Some(10));
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), 10);
        assert_eq!(bytes.get(), 10);
    }

    #[test]
    fn only_artifact_file_routes_count_bytes() {
        assert!(carries_artifacts(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}"
        ));
        assert!(!carries_artifacts("/api/2.0/mlflow-artifacts/artifacts"));
        assert!(!carries_artifacts(
            "/api/2.0/mlflow-artifacts/mpu/create/{*path}"
        ));
        assert!(!carries_artifacts("/api/2.0/mlflow/runs/log-batch"));
        assert!(!carries_artifacts("unmatched"));
    }
}
