//! The runtime under concurrent load: dynamic batching, overload, and clients that leave.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{call, get, post, start, until_metrics, TempRepo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_models::{Tensor, TensorData};

fn simple_rows(client: i32, rows: usize) -> (Vec<i32>, Vec<i32>) {
    let a: Vec<i32> = (0..rows as i32 * 16).map(|v| v + client * 1000).collect();
    let b: Vec<i32> = (0..rows as i32 * 16).map(|v| client - v).collect();
    (a, b)
}

/// Sends one request in one of three protocol forms and returns OUTPUT0 and OUTPUT1.
async fn simple_request(
    app: &Arc<weir_runtime::App>,
    client: i32,
    rows: usize,
) -> (Vec<i64>, Vec<i64>) {
    let (a, b) = simple_rows(client, rows);
    let numbers = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    match client % 3 {
        0 => {
            let body = json!({"inputs": [
                {"name": "INPUT0", "shape": [rows, 16], "datatype": "INT32", "data": a},
                {"name": "INPUT1", "shape": [rows, 16], "datatype": "INT32", "data": b}]});
            let answer = post(app, "/v2/models/simple/infer", body).await;
            let outputs = answer.ok_json()["outputs"].clone();
            (numbers(&outputs[0]["data"]), numbers(&outputs[1]["data"]))
        }
        1 => {
            let header = json!({"inputs": [
                {"name": "INPUT1", "shape": [rows, 16], "datatype": "INT32", "parameters": {"binary_data_size": rows * 64}},
                {"name": "INPUT0", "shape": [rows, 16], "datatype": "INT32", "parameters": {"binary_data_size": rows * 64}}],
                "parameters": {"binary_data_output": false}})
            .to_string();
            let mut body = header.clone().into_bytes();
            TensorData::Int32(b).write_raw(&mut body);
            TensorData::Int32(a).write_raw(&mut body);
            let request = Request::post("/v2/models/simple/infer")
                .header("inference-header-content-length", header.len())
                .body(Body::from(body))
                .unwrap();
            let answer = common::send(app, request).await;
            let outputs = answer.ok_json()["outputs"].clone();
            (numbers(&outputs[0]["data"]), numbers(&outputs[1]["data"]))
        }
        _ => {
            let instances: Vec<Value> = (0..rows)
                .map(|r| json!({"INPUT0": &a[r * 16..(r + 1) * 16], "INPUT1": &b[r * 16..(r + 1) * 16]}))
                .collect();
            let answer = post(
                app,
                "/v1/models/simple:predict",
                json!({ "instances": instances }),
            )
            .await;
            let predictions = answer.ok_json()["predictions"].clone();
            let column = |name: &str| {
                predictions
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|p| numbers(&p[name]))
                    .collect::<Vec<_>>()
            };
            (column("OUTPUT0"), column("OUTPUT1"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_form_batches_and_each_client_gets_its_own_rows() {
    let repo = TempRepo::new("batching");
    repo.copy_version("simple", 1, "simple", 1);
    // A long delay so batches form from whatever arrives together, however slow the machine.
    repo.write_config(
        "simple",
        "max_batch_size = 64\n[dynamic_batching]\nmax_queue_delay = \"200ms\"\n",
    );
    let server = start(common::config(&repo.dir)).await;
    let app = server.app.clone();
    let loaded = app.store.resolve("simple", None).unwrap();

    let clients: Vec<_> = (0..24)
        .map(|client| {
            let app = app.clone();
            tokio::spawn(async move {
                let rows = 1 + client as usize % 3;
                (client, rows, simple_request(&app, client, rows).await)
            })
        })
        .collect();
    let mut total_rows = 0;
    for handle in clients {
        let (client, rows, (sum, difference)) = handle.await.unwrap();
        total_rows += rows;
        // The same rows run in-process, alone, give the answer this client must get.
        let (a, b) = simple_rows(client, rows);
        let expected = loaded
            .backend
            .infer(
                vec![
                    Tensor::new("INPUT0", vec![rows, 16], TensorData::Int32(a)),
                    Tensor::new("INPUT1", vec![rows, 16], TensorData::Int32(b)),
                ],
                &["OUTPUT0".into(), "OUTPUT1".into()],
            )
            .unwrap();
        let as_i64 = |t: &Tensor| match &t.data {
            TensorData::Int32(v) => v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(sum, as_i64(&expected[0]), "client {client} OUTPUT0");
        assert_eq!(difference, as_i64(&expected[1]), "client {client} OUTPUT1");
    }
    let stats = get(&app, "/v2/models/simple/stats").await.json()["model_stats"][0].clone();
    let inferences = stats["inference_count"].as_u64().unwrap();
    let executions = stats["execution_count"].as_u64().unwrap();
    assert_eq!(inferences, total_rows as u64);
    assert!(
        executions < 24,
        "24 requests ran as {executions} executions: no batching happened"
    );
    assert_eq!(stats["inference_stats"]["success"]["count"], 24);
    assert!(stats["batch_stats"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["batch_size"].as_u64().unwrap() > 3));
    let metrics = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    assert!(metrics.contains(r#"weir_inference_batch_size_count{model="simple",version="1"}"#));
}

#[tokio::test]
async fn batched_models_refuse_requests_over_max_batch_size() {
    let repo = TempRepo::new("batch-limit");
    repo.copy_version("simple", 1, "simple", 1);
    repo.write_config("simple", "max_batch_size = 2\n[dynamic_batching]\n");
    let server = start(common::config(&repo.dir)).await;
    let (a, b) = simple_rows(0, 3);
    let body = json!({"inputs": [
        {"name": "INPUT0", "shape": [3, 16], "datatype": "INT32", "data": a},
        {"name": "INPUT1", "shape": [3, 16], "datatype": "INT32", "data": b}]});
    let answer = post(&server.app, "/v2/models/simple/infer", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.error(),
        "a request of 3 rows exceeds the model's max_batch_size of 2"
    );
}

fn mlp_request(rows: usize) -> Value {
    let data: Vec<f32> = (0..rows * 256)
        .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
        .collect();
    json!({"inputs": [{"name": "x", "shape": [rows, 256], "datatype": "FP32", "data": data}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_gets_503_with_retry_after_while_health_checks_and_the_rest_succeed() {
    let repo = TempRepo::new("overload");
    repo.copy_version("mlp", 1, "mlp", 1);
    repo.write_config("mlp", "[queue]\nmax_size = 1\n");
    let server = start(common::config(&repo.dir)).await;
    let app = server.app.clone();
    // Binary bodies decode in microseconds, so the clients' requests arrive together while each
    // 512-row call keeps the model busy: a full queue is certain, not a matter of timing.
    let expected =
        common::send(&app, mlp_binary_request(512)).await.json()["outputs"][0]["data"].clone();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (app, done) = (app.clone(), done.clone());
        tokio::spawn(async move {
            let mut probes = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(
                    call(&app, Method::GET, "/v2/health/ready", Body::empty())
                        .await
                        .status,
                    StatusCode::OK
                );
                assert_eq!(get(&app, "/v2/models/mlp").await.status, StatusCode::OK);
                probes += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            probes
        })
    };
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { common::send(&app, mlp_binary_request(512)).await })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for client in clients {
        let answer = client.await.unwrap();
        match answer.status {
            StatusCode::OK => {
                assert_eq!(answer.json()["outputs"][0]["data"], expected);
                served += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(answer.headers["retry-after"], "1");
                assert!(
                    answer.error().contains("queue is full"),
                    "{}",
                    answer.error()
                );
                refused += 1;
            }
            other => panic!(
                "unexpected {other}: {}",
                String::from_utf8_lossy(&answer.body)
            ),
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let probes = prober.await.unwrap();
    assert!(
        served >= 1 && refused >= 1,
        "served {served}, refused {refused}"
    );
    assert!(probes >= 1);
    let metrics = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    let line = format!(
        r#"weir_inference_rejected_total{{model="mlp",version="1",reason="queue_full"}} {refused}"#
    );
    assert!(
        metrics.contains(&line),
        "{line} not in metrics:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("reject") || l.contains("queue_depth"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A V2 request for the MLP with its input as a binary tensor (quick to build and to decode).
fn mlp_binary_request(rows: usize) -> Request<Body> {
    let header = json!({"inputs": [{"name": "x", "shape": [rows, 256], "datatype": "FP32",
        "parameters": {"binary_data_size": rows * 256 * 4}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    TensorData::Fp32(vec![0.5; rows * 256]).write_raw(&mut body);
    Request::post("/v2/models/mlp/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_disconnects_has_its_queued_work_dropped() {
    let repo = TempRepo::new("disconnect");
    repo.copy_version("mlp", 1, "mlp", 1);
    let server = start(common::config(&repo.dir)).await;
    let app = server.app.clone();
    let addr = server.local_addr();
    // Keep the single model instance busy: one large request running, one queued behind it
    // (the worker takes a request the moment it is free, so a queued one means it is busy).
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { common::send(&app, mlp_binary_request(4096)).await.status })
        })
        .collect();
    let depth = |n: usize| format!(r#"weir_queue_depth{{model="mlp",version="1"}} {n}"#);
    until_metrics(
        &app,
        "the model to be busy with a request queued behind it",
        &depth(1),
    )
    .await;
    // A client queues behind them, then hangs up.
    let body = mlp_request(1).to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    until_metrics(&app, "the socket request to be queued", &depth(2)).await;
    drop(stream);
    for handle in busy {
        assert_eq!(handle.await.unwrap(), StatusCode::OK);
    }
    let cancelled =
        r#"weir_inference_rejected_total{model="mlp",version="1",reason="cancelled"} 1"#;
    until_metrics(
        &app,
        "the abandoned request to be counted and skipped",
        cancelled,
    )
    .await;
    let stats = get(&app, "/v2/models/mlp/stats").await.json()["model_stats"][0].clone();
    assert_eq!(
        stats["execution_count"], 2,
        "the abandoned request never ran"
    );
    let mut check = tokio::net::TcpStream::connect(addr).await.unwrap();
    check
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    check.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"));
}
