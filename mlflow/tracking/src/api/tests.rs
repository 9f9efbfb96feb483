use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use weir_mlflow_wire::filter::conformance;

fn app() -> (Router, weir_sql::testing::TestDatabase) {
    app_with(weir_mlflow_wire::Authenticator::anonymous())
}

fn app_with(
    authenticator: weir_mlflow_wire::Authenticator,
) -> (Router, weir_sql::testing::TestDatabase) {
    let db = weir_sql::testing::sqlite("t_api");
    let store = TrackingStore::open(&db.url).unwrap();
    // Tracking alone behind its own access layer, as the server puts it beside the registry.
    let (router, endpoints) = routes(Arc::new(Tracking { store }));
    let table = weir_mlflow_wire::EndpointTable::new(endpoints);
    let layer = weir_mlflow_wire::AccessLayer::new(table, authenticator);
    (router.layer(layer), db)
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

/// The searches that take a filter, with the list each answers in.
const SEARCHES: [(&str, &str); 3] = [
    ("/api/2.0/mlflow/runs/search", "runs"),
    ("/api/2.0/mlflow/experiments/search", "experiments"),
    ("/api/2.0/mlflow/logged-models/search", "models"),
];

async fn search(app: &Router, path: &str, filter: &str) -> (StatusCode, Value) {
    let body = json!({"experiment_ids": ["0"], "filter": filter}).to_string();
    call(app, "POST", path, &body).await
}

#[tokio::test]
async fn multi_byte_and_malformed_filters_are_refused_with_400() {
    let (app, _db) = app();
    let long = format!("name = '{}'", "x".repeat(10 * 1024));
    for (path, _) in SEARCHES {
        let tracking_only = ["tags.t NOT IN ('a', é)", "é.x = 'a'", &long];
        for &bad in conformance::MALFORMED.iter().chain(&tracking_only) {
            let (status, answer) = search(&app, path, bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {bad:?}: {answer}");
            if let Some(problem) = conformance::refusal_problem(bad, &answer) {
                panic!("{path}: {problem}");
            }
        }
    }
    let (_, answer) = search(&app, SEARCHES[0].0, "params.x IN (é)").await;
    assert_eq!(
        answer["message"],
        "invalid filter at position 14: expected a quoted string in the list, found 'é'"
    );
    // order_by terms go through the same reader.
    let body = json!({"experiment_ids": ["0"], "order_by": ["metrics.é DESC ü"]}).to_string();
    let (status, answer) = call(&app, "POST", SEARCHES[0].0, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        answer["message"],
        "invalid order_by at position 16: expected the end after ASC or DESC, found 'ü'"
    );
}

#[tokio::test]
async fn operators_quotes_and_backticks_inside_values_are_values() {
    let (app, _db) = app();
    let note = json!([{"key": "note", "value": "x != y"}]);
    let (status, created) = call(
        &app,
        "POST",
        "/api/2.0/mlflow/runs/create",
        &json!({"experiment_id": "0", "run_name": "a=b é", "tags": note}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let run_id = created["run"]["info"]["run_id"].as_str().unwrap();
    let (status, answer) = call(
        &app,
        "POST",
        "/api/2.0/mlflow/runs/log-parameter",
        &json!({"run_id": run_id, "key": "odd key", "value": "1"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = call(
        &app,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &json!({"name": "a=b é", "tags": note}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = call(
        &app,
        "POST",
        "/api/2.0/mlflow/logged-models",
        &json!({"experiment_id": "0", "name": "a=b é", "tags": note, "params": [{"key": "odd key", "value": "1"}]})
            .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let count = |answer: &Value, key: &str| answer[key].as_array().map_or(0, Vec::len);
    let (runs, experiments, models) = (SEARCHES[0], SEARCHES[1], SEARCHES[2]);
    for ((path, key), filter, expected) in [
        (runs, "attributes.run_name LIKE 'a=b%'", 1),
        (runs, "run_name = 'a=b é'", 1),
        (runs, "tags.note = 'x != y'", 1),
        (runs, "tags.`note` != 'x != y'", 0),
        (runs, "params.\"odd key\" = '1'", 1),
        (runs, "params.`odd key` = '1' AND tags.note LIKE 'x !%'", 1),
        (runs, "params.\"odd key\" = '2'", 0),
        (experiments, "name LIKE 'a=b%'", 1),
        (experiments, "name = \"a=b é\"", 1),
        (experiments, "name != 'a=b é'", 1),
        (experiments, "tags.note = 'x != y'", 1),
        (models, "name LIKE 'a=b%'", 1),
        (models, "name = 'a=b é'", 1),
        (models, "tags.`note` = 'x != y'", 1),
        (models, "params.\"odd key\" = '1'", 1),
        (models, "name = 'a=b'", 0),
    ] {
        let (status, answer) = search(&app, path, filter).await;
        assert_eq!(status, StatusCode::OK, "{path} {filter}: {answer}");
        assert_eq!(count(&answer, key), expected, "{path} {filter}: {answer}");
    }
}
