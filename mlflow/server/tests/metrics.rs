//! The registry's `/metrics`: requests counted under their route template (never the raw
//! path), store calls timed, artifact bytes counted exactly, and the endpoint itself guarded
//! like every other read when identities are configured.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use tower::ServiceExt;
use weir_mlflow_server::{app, open, Config};
use weir_mlflow_wire::{Authenticator, Identities};

const IDENTITIES: &str = r#"
[[user]]
name = "rita"
token = "reader-token"
roles = ["reader"]
"#;

const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts/{*path}";

struct Server {
    app: axum::Router,
    folder: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

async fn server(tag: &str, authenticator: Authenticator) -> Server {
    let folder = std::env::temp_dir().join(format!("weir-metrics-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let stores = open(Config {
        database: format!("sqlite://{}", folder.join("r.db").display()),
        pool_size: weir_mlflow_server::DEFAULT_POOL_SIZE,
        artifacts: folder.join("artifacts"),
        max_artifact_bytes: 1 << 20,
        protected_aliases: vec!["production".into()],
    })
    .await
    .unwrap();
    let (app, _) = app(&stores, authenticator);
    Server { app, folder }
}

/// One request; its status, headers and body.
async fn call(
    app: &axum::Router,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Vec<u8>,
) -> (u16, HeaderMap, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-weir-user", "alice");
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

async fn get(app: &axum::Router, path: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = call(app, Method::GET, path, None, Vec::new()).await;
    (status, body)
}

/// The value of the sample whose line starts with `series` followed by a space.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

#[tokio::test]
async fn requests_store_calls_and_artifact_bytes_are_counted() {
    let server = server("counted", Authenticator::anonymous()).await;
    let app = &server.app;
    // A 200 and a 404 of one endpoint (the store answers both), and a path nobody serves.
    assert_eq!(
        get(app, "/api/2.0/mlflow/registered-models/search").await.0,
        200
    );
    for name in ["missing-a", "missing-b"] {
        let path = format!("/api/2.0/mlflow/registered-models/get?name={name}");
        assert_eq!(get(app, &path).await.0, 404);
    }
    assert_eq!(get(app, "/api/2.0/no/such/thing-1").await.0, 404);
    assert_eq!(get(app, "/api/2.0/no/such/thing-2").await.0, 404);
    // An upload of 1000 bytes, read back whole; a second download of a missing file sends
    // an error body, not artifact bytes.
    let file: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let uri = "/api/2.0/mlflow-artifacts/artifacts/models/iris/model-1.onnx";
    let (status, _, _) = call(app, Method::PUT, uri, None, file.clone()).await;
    assert_eq!(status, 200);
    let (status, headers, downloaded) = call(app, Method::GET, uri, None, vec![]).await;
    assert_eq!((status, downloaded.len()), (200, 1000));
    assert_eq!(downloaded, file);
    // Counting the bytes kept the body's size: the download still announces it.
    assert_eq!(headers["content-length"], "1000");
    let (status, _) = get(app, "/api/2.0/mlflow-artifacts/artifacts/models/none.onnx").await;
    assert_eq!(status, 404);
    // A listing is JSON about artifacts, not artifact bytes.
    let listing = "/api/2.0/mlflow-artifacts/artifacts?path=models/iris";
    assert_eq!(get(app, listing).await.0, 200);

    let (status, headers, body) = call(app, Method::GET, "/metrics", None, vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(body).unwrap();
    let requests = |endpoint: &str, method: &str, code: u16| {
        sample(
            &text,
            &format!(
                "weir_registry_requests_total{{endpoint=\"{endpoint}\",method=\"{method}\",code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(
        requests("/api/2.0/mlflow/registered-models/search", "GET", 200),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        requests("/api/2.0/mlflow/registered-models/get", "GET", 404),
        Some(2.0),
        "{text}"
    );
    assert_eq!(requests("unmatched", "GET", 404), Some(2.0), "{text}");
    assert_eq!(requests(ARTIFACTS, "PUT", 200), Some(1.0), "{text}");
    assert_eq!(requests(ARTIFACTS, "GET", 200), Some(1.0), "{text}");
    assert_eq!(requests(ARTIFACTS, "GET", 404), Some(1.0), "{text}");
    // Raw paths never become labels.
    for raw in ["model-1.onnx", "missing-a", "thing-1", "none.onnx"] {
        assert!(!text.contains(raw), "{raw} leaked into a label: {text}");
    }
    // Exactly the artifact's bytes, each way.
    assert_eq!(
        sample(
            &text,
            "weir_registry_artifact_bytes_total{direction=\"in\"}"
        ),
        Some(1000.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "weir_registry_artifact_bytes_total{direction=\"out\"}"
        ),
        Some(1000.0),
        "{text}"
    );
    // Every answered request is in the latency histogram; store calls are timed under the
    // endpoint they served (the two failed lookups went to the store too).
    assert_eq!(
        sample(
            &text,
            "weir_registry_request_duration_seconds_count{endpoint=\"/api/2.0/mlflow/registered-models/get\"}"
        ),
        Some(2.0),
        "{text}"
    );
    let store_calls = sample(
        &text,
        "weir_registry_store_duration_seconds_count{endpoint=\"/api/2.0/mlflow/registered-models/get\"}",
    );
    assert!(store_calls.is_some_and(|n| n >= 2.0), "{text}");
    assert!(
        !text.contains("weir_registry_store_duration_seconds_count{endpoint=\"unmatched\"}"),
        "no store call serves an unknown path: {text}"
    );
    let build = format!(
        "weir_build_info{{version=\"{}\",",
        weir_http::build_info::VERSION
    );
    assert!(text.contains(&build), "{text}");
    assert_eq!(sample(&text, "weir_panics_total"), Some(0.0), "{text}");

    // The scrape itself is counted (by the next one).
    let (_, _, again) = call(app, Method::GET, "/metrics", None, vec![]).await;
    let again = String::from_utf8(again).unwrap();
    assert_eq!(
        sample(
            &again,
            "weir_registry_requests_total{endpoint=\"/metrics\",method=\"GET\",code=\"200\"}"
        ),
        Some(1.0),
        "{again}"
    );
}

#[tokio::test]
async fn metrics_need_a_reader_when_identities_are_configured() {
    let server = server(
        "guarded",
        Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap()),
    )
    .await;
    let app = &server.app;
    let (status, _, body) = call(app, Method::GET, "/metrics", None, vec![]).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("UNAUTHENTICATED"));
    let bad = Some("Bearer not-a-token");
    assert_eq!(call(app, Method::GET, "/metrics", bad, vec![]).await.0, 401);
    let reader = Some("Bearer reader-token");
    let (status, _, body) = call(app, Method::GET, "/metrics", reader, vec![]).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    // The refusals were counted: under the endpoint, with the status they got.
    assert_eq!(
        sample(
            &text,
            "weir_registry_requests_total{endpoint=\"/metrics\",method=\"GET\",code=\"401\"}"
        ),
        Some(2.0),
        "{text}"
    );
    // Refused uploads read no artifact bytes.
    let uri = "/api/2.0/mlflow-artifacts/artifacts/models/x.bin";
    let (status, _, _) = call(app, Method::PUT, uri, reader, vec![7; 64]).await;
    assert_eq!(status, 403);
    let (_, _, body) = call(app, Method::GET, "/metrics", reader, vec![]).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        sample(
            &text,
            "weir_registry_artifact_bytes_total{direction=\"in\"}"
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "weir_registry_requests_total{{endpoint=\"{ARTIFACTS}\",method=\"PUT\",code=\"403\"}}"
            )
        ),
        Some(1.0),
        "{text}"
    );
}
