//! The inference server end to end: a real repository of ONNX models, real ONNX Runtime, the
//! full HTTP stack, driven through the router. Body limits, metrics and raw sockets are in
//! `server_edges.rs`.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use weir_models::{Tensor, TensorData};
use weir_runtime::RunningServer;

mod common;

use common::{call, Answer};

async fn start_with(max_body_bytes: usize) -> RunningServer {
    common::start_on_test_models(max_body_bytes).await
}

async fn start() -> RunningServer {
    start_with(1 << 20).await
}

async fn post(server: &RunningServer, uri: &str, body: Value) -> Answer {
    common::post(&server.app, uri, body).await
}

fn iris_request() -> Value {
    common::iris_two_rows()
}

#[tokio::test]
async fn health_metadata_and_the_repository_index() {
    let server = start().await;
    assert_eq!(
        call(&server.app, Method::GET, "/v2/health/live", Body::empty())
            .await
            .status,
        StatusCode::OK
    );
    // The test repository holds a deliberately broken model: a strict server (Triton's
    // default) is not ready while a model it was given cannot serve, and says which.
    let ready = call(&server.app, Method::GET, "/v2/health/ready", Body::empty()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let reasons = ready.json()["reasons"].to_string();
    assert!(reasons.contains("broken"), "{reasons}");
    let metadata = call(&server.app, Method::GET, "/v2", Body::empty())
        .await
        .json();
    assert_eq!(metadata["name"], "weir");
    assert!(metadata["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));

    let iris = call(&server.app, Method::GET, "/v2/models/iris", Body::empty())
        .await
        .json();
    assert_eq!(iris["versions"], json!(["1", "2"]));
    assert_eq!(iris["platform"], "onnxruntime_onnx");
    assert_eq!(
        iris["inputs"],
        json!([{"name": "features", "datatype": "FP32", "shape": [-1, 4]}])
    );
    let v1 = call(
        &server.app,
        Method::GET,
        "/v2/models/iris/versions/1",
        Body::empty(),
    )
    .await
    .json();
    assert_eq!(v1["versions"], json!(["1"]));
    assert_eq!(
        call(
            &server.app,
            Method::GET,
            "/v2/models/iris/versions/1/ready",
            Body::empty()
        )
        .await
        .status,
        StatusCode::OK
    );

    let states: Vec<(String, String)> = common::index(&server.app)
        .await
        .into_iter()
        .map(|(name, state, _)| (name, state))
        .collect();
    assert!(
        states.contains(&("broken/1".into(), "UNAVAILABLE".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("zipmap/1".into(), "UNAVAILABLE".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("iris/2".into(), "READY".into())),
        "{states:?}"
    );
    let ready_only = call(
        &server.app,
        Method::POST,
        "/v2/repository/index",
        r#"{"ready": true}"#,
    )
    .await
    .json();
    assert!(ready_only
        .as_array()
        .unwrap()
        .iter()
        .all(|row| row["state"] == "READY"));
    let empty_body = call(
        &server.app,
        Method::POST,
        "/v2/repository/index",
        Body::empty(),
    )
    .await;
    assert_eq!(empty_body.status, StatusCode::OK);
}

#[tokio::test]
async fn infer_answers_what_the_model_computes_in_process() {
    let server = start().await;
    let answer = post(&server, "/v2/models/iris/infer", iris_request()).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers["content-type"], "application/json");
    let body = answer.json();
    assert_eq!(body["model_name"], "iris");
    assert_eq!(
        body["model_version"], "2",
        "the highest version answers by default"
    );
    assert_eq!(body["id"], "r1");

    let loaded = server.app.store.resolve("iris", Some("2")).unwrap();
    let features = Tensor::new(
        "features",
        vec![2, 4],
        TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]),
    );
    let expected = loaded
        .backend
        .infer(vec![features], &["label".into(), "probabilities".into()])
        .unwrap();
    let TensorData::Int64(labels) = &expected[0].data else {
        panic!()
    };
    let TensorData::Fp32(probabilities) = &expected[1].data else {
        panic!()
    };
    assert_eq!(body["outputs"][0]["data"], json!(labels));
    let served: Vec<f32> = body["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(&served, probabilities);

    let v1 = post(&server, "/v2/models/iris/versions/1/infer", iris_request())
        .await
        .json();
    assert_eq!(v1["model_version"], "1");
}

#[tokio::test]
async fn binary_tensors_in_and_out() {
    let server = start().await;
    let header = json!({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": vec![1; 16]}],
        "outputs": [{"name": "OUTPUT1", "parameters": {"binary_data": true}}, {"name": "OUTPUT0"}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    TensorData::Int32((0..16).collect()).write_raw(&mut body);
    let request = Request::post("/v2/models/simple/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    let response = common::send(&server.app, request).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.headers["content-type"], "application/octet-stream");
    let length: usize = response.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.body;
    let json: Value = serde_json::from_slice(&bytes[..length]).unwrap();
    assert_eq!(json["outputs"][0]["name"], "OUTPUT1");
    assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 64);
    assert_eq!(
        json["outputs"][1]["data"],
        json!((1..17).collect::<Vec<i32>>())
    );
    let difference =
        TensorData::read_raw(weir_models::DataType::Int32, 16, &bytes[length..]).unwrap();
    assert_eq!(difference, TensorData::Int32((-1..15).collect()));
}

#[tokio::test]
async fn kserve_v1_lists_models_and_predicts() {
    let server = start().await;
    let models = call(&server.app, Method::GET, "/v1/models", Body::empty())
        .await
        .json();
    assert!(models["models"]
        .as_array()
        .unwrap()
        .contains(&json!("iris")));
    assert_eq!(
        call(&server.app, Method::GET, "/v1/models/iris", Body::empty())
            .await
            .json(),
        json!({"name": "iris", "ready": true})
    );
    assert_eq!(
        call(&server.app, Method::GET, "/v1/models/broken", Body::empty())
            .await
            .json()["ready"],
        false
    );
    let predicted = post(
        &server,
        "/v1/models/iris:predict",
        json!({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}),
    )
    .await;
    assert_eq!(predicted.status, StatusCode::OK);
    let predictions = predicted.json()["predictions"].clone();
    assert_eq!(predictions[0]["label"], 0);
    assert_eq!(predictions[1]["label"], 2);
    assert_eq!(predictions[0]["probabilities"].as_array().unwrap().len(), 3);
    let upper = post(
        &server,
        "/v1/models/string_upper:predict",
        json!({"instances": ["a", "b"]}),
    )
    .await
    .json();
    assert_eq!(upper, json!({"predictions": ["A", "B"]}));
    let named = post(
        &server,
        "/v1/models/simple:predict",
        json!({"instances": [{"INPUT0": vec![2; 16], "INPUT1": vec![1; 16]}]}),
    )
    .await
    .json();
    assert_eq!(named["predictions"][0]["OUTPUT1"], json!(vec![1; 16]));
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let server = start().await;
    let cases: Vec<(Method, &str, Body, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/v2/models/nope/infer",
            Body::from("{}"),
            StatusCode::NOT_FOUND,
            "unknown model 'nope'",
        ),
        (
            Method::POST,
            "/v2/models/iris/versions/9/infer",
            Body::from("{}"),
            StatusCode::NOT_FOUND,
            "unknown version '9' of model 'iris'; available versions: 1, 2",
        ),
        (
            Method::POST,
            "/v2/models/iris/versions/x/infer",
            Body::from("{}"),
            StatusCode::NOT_FOUND,
            "unknown version 'x'",
        ),
        (
            Method::POST,
            "/v2/models/broken/infer",
            Body::from("{}"),
            StatusCode::SERVICE_UNAVAILABLE,
            "model 'broken' is not available: version 1: cannot load",
        ),
        (
            Method::GET,
            "/v2/models/zipmap",
            Body::empty(),
            StatusCode::SERVICE_UNAVAILABLE,
            "model 'zipmap' is not available: version 1: output 'probabilities' is a Sequence",
        ),
        (
            Method::GET,
            "/v2/models/broken/ready",
            Body::empty(),
            StatusCode::SERVICE_UNAVAILABLE,
            "model 'broken' is not available",
        ),
        (
            Method::POST,
            "/v2/models/iris/infer",
            Body::from("{"),
            StatusCode::BAD_REQUEST,
            "invalid inference request: EOF",
        ),
        (
            Method::POST,
            "/v2/models/iris/infer",
            Body::from(
                r#"{"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}"#,
            ),
            StatusCode::BAD_REQUEST,
            "input 'features' has shape [1, 3], but dimension 1 must be 4",
        ),
        (
            Method::POST,
            "/v2/models/string_upper/infer",
            Body::from(
                r#"{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a\u0000b"]}]}"#,
            ),
            StatusCode::BAD_REQUEST,
            "input 'text' element 0 contains a NUL byte",
        ),
        (
            Method::POST,
            "/v2/models/fixed/infer",
            Body::from(
                r#"{"inputs": [{"name": "x", "shape": [3, 2], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}"#,
            ),
            StatusCode::BAD_REQUEST,
            "input 'x' has shape [3, 2], but dimension 0 must be 2",
        ),
        (
            Method::POST,
            "/v1/models/iris:explain",
            Body::from("{}"),
            StatusCode::NOT_FOUND,
            "unknown verb ':explain'",
        ),
        (
            Method::POST,
            "/v1/models/iris",
            Body::from("{}"),
            StatusCode::NOT_FOUND,
            "POST /v1/models/iris needs a verb: /v1/models/iris:predict",
        ),
        (
            Method::POST,
            "/v1/models/iris:predict",
            Body::from(r#"{"instances": [[1, 2]]}"#),
            StatusCode::BAD_REQUEST,
            "input 'features' has shape [1, 2]",
        ),
        (
            Method::GET,
            "/v2/models/iris/infer",
            Body::empty(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
        (
            Method::GET,
            "/v3",
            Body::empty(),
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
        (
            Method::POST,
            "/v2/repository/index",
            Body::from("[1"),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
    ];
    for (method, uri, body, status, message) in cases {
        let answer = call(&server.app, method.clone(), uri, body).await;
        assert_eq!(
            answer.status,
            status,
            "{method} {uri}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(
            answer.headers["content-type"], "application/json",
            "{method} {uri}"
        );
        assert!(
            answer.error().starts_with(message),
            "{method} {uri}: {}",
            answer.error()
        );
    }
}
