use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

fn app() -> (Router, weir_sql::testing::TestDatabase) {
    app_with(weir_mlflow_wire::Authenticator::anonymous())
}

fn app_with(
    authenticator: weir_mlflow_wire::Authenticator,
) -> (Router, weir_sql::testing::TestDatabase) {
    let db = weir_sql::testing::sqlite("t_api");
    let store = TrackingStore::open(&db.url).unwrap();
    (router(Arc::new(Tracking { store }), authenticator), db)
}

async fn call(app: &Router, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    call_as(app, None, method, path, body).await
}

async fn call_as(
    app: &Router,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Body::from(body.to_owned())).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn protobuf_json_numbers_arrive_as_numbers_or_strings() {
    let (app, _db) = app();
    let (status, created) = call(
        &app,
        "POST",
        "/api/2.0/mlflow/runs/create",
        r#"{"experiment_id": "0", "start_time": "1700000000000"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let run_id = created["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created["run"]["info"]["experiment_id"], "0");
    assert_eq!(created["run"]["info"]["start_time"], 1_700_000_000_000_i64);
    let batch = json!({"run_id": run_id, "metrics": [
        {"key": "a", "value": "NaN", "timestamp": "5", "step": "2"},
        {"key": "b", "value": "-Infinity", "timestamp": 5, "step": 0},
        {"key": "c", "value": 1.5, "timestamp": 5},
        // Values serde_json's fast float parser reads one unit in the last place off: a
        // metric must come back as the exact double the client logged.
        {"key": "d", "value": 0.966_666_666_666_666_7, "timestamp": 5},
        {"key": "e", "value": 0.1 + 0.2, "timestamp": 5},
        {"key": "f", "value": 2.225_073_858_507_201_4e-308, "timestamp": 5},
    ]});
    let (status, answer) = call(
        &app,
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        &batch.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, run) = call(
        &app,
        "GET",
        &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"),
        "",
    )
    .await;
    let metrics = &run["run"]["data"]["metrics"];
    assert_eq!(
        metrics[0],
        json!({"key": "a", "value": "NaN", "timestamp": 5, "step": 2})
    );
    assert_eq!(metrics[1]["value"], "-Infinity");
    assert_eq!(metrics[2]["value"], 1.5);
    for (index, exact) in [
        (3, 0.966_666_666_666_666_7),
        (4, 0.1 + 0.2),
        (5, 2.225_073_858_507_201_4e-308),
    ] {
        assert_eq!(
            metrics[index]["value"].as_f64().map(f64::to_bits),
            Some(f64::to_bits(exact))
        );
    }
}

#[tokio::test]
async fn client_mistakes_are_4xx_with_mlflow_codes() {
    let (app, _db) = app();
    let (_, created) = call(&app, "POST", "/api/2.0/mlflow/runs/create", "{}").await;
    let run_id = created["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (
            "POST",
            "/api/2.0/mlflow/runs/log-batch".to_owned(),
            "{not json".to_owned(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-metric".to_owned(),
            json!({"run_id": run_id, "key": "m"}).to_string(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-metric".to_owned(),
            json!({"run_id": run_id, "key": "m", "value": "high"}).to_string(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-metric".to_owned(),
            json!({"key": "m", "value": 1}).to_string(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-parameter".to_owned(),
            json!({"run_id": "nope", "key": "k", "value": "v"}).to_string(),
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=none".to_owned(),
            String::new(),
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            "GET",
            "/api/2.0/mlflow/experiments/get".to_owned(),
            String::new(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "/api/2.0/mlflow/experiments/create".to_owned(),
            json!({"name": "Default"}).to_string(),
            StatusCode::BAD_REQUEST,
            "RESOURCE_ALREADY_EXISTS",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/search".to_owned(),
            json!({"experiment_ids": ["0"], "max_results": 0}).to_string(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/search".to_owned(),
            json!({"experiment_ids": ["0"], "page_token": "zzz"}).to_string(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/search".to_owned(),
            json!({"experiment_ids": ["zero"]}).to_string(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/search".to_owned(),
            json!({"experiment_ids": ["0"], "order_by": ["metrics.a sideways"]}).to_string(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "GET",
            format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}"),
            String::new(),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "PATCH",
            "/api/2.0/mlflow/logged-models/m-none".to_owned(),
            json!({"status": "LOGGED_MODEL_READY"}).to_string(),
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = call(&app, method, &path, &body).await;
        assert_eq!(
            (got, answer["error_code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body}: {answer}"
        );
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn with_tokens_configured_every_call_needs_one() {
    let identities =
        weir_mlflow_wire::Identities::parse("[tokens]\n\"s3cret\" = \"alice\"\n").unwrap();
    let (app, _db) = app_with(weir_mlflow_wire::Authenticator::with_identities(identities));
    let path = "/api/2.0/mlflow/experiments/get?experiment_id=0";
    for token in [None, Some("wrong")] {
        let (status, answer) = call_as(&app, token, "GET", path, "").await;
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED"))
        );
    }
    let (status, answer) = call_as(&app, Some("s3cret"), "GET", path, "").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["experiment"]["name"], "Default");
}
