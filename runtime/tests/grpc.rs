//! `weir serve --grpc-port` end to end, through tonic's client on a real listener: the same
//! answers, refusals, limits and statistics as over HTTP, shared batches, health and drain.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{get, post, start, test_models, TempRepo};
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use weir_runtime::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use weir_runtime::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use weir_runtime::grpc::proto::*;
use weir_runtime::{RunningServer, ServeConfig};

type Client = GrpcInferenceServiceClient<Channel>;

async fn channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
}

async fn start_grpc(config: ServeConfig) -> (RunningServer, Client, SocketAddr) {
    let server = start(ServeConfig {
        grpc_port: Some(0),
        ..config
    })
    .await;
    let addr = server.grpc_addr().unwrap();
    let client = GrpcInferenceServiceClient::new(channel(addr).await.unwrap())
        .max_decoding_message_size(usize::MAX);
    (server, client, addr)
}

fn on_test_models(max_body_bytes: usize) -> ServeConfig {
    ServeConfig {
        max_body_bytes,
        ..common::config(&test_models())
    }
}

const IRIS: [f32; 8] = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];

fn fp32_input(name: &str, shape: &[i64], values: &[f32]) -> InferInputTensor {
    InferInputTensor {
        name: name.to_owned(),
        datatype: "FP32".to_owned(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents: Some(Box::new(InferTensorContents {
            fp32_contents: values.to_vec(),
            ..Default::default()
        })),
    }
}

fn iris_request(version: &str) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "iris".to_owned(),
        model_version: version.to_owned(),
        id: "g1".to_owned(),
        inputs: vec![fp32_input("features", &[2, 4], &IRIS)],
        ..Default::default()
    }
}

fn raw_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn raw_i64(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[tokio::test]
async fn metadata_health_and_config_match_the_http_answers() {
    let (server, mut client, _) = start_grpc(on_test_models(1 << 20)).await;
    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    let metadata = client
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.name, "weir");
    assert!(metadata.extensions.contains(&"statistics".to_owned()));
    let model = client
        .model_metadata(ModelMetadataRequest {
            name: "simple".to_owned(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let http = get(&server.app, "/v2/models/simple").await.ok_json();
    assert_eq!(model.versions, ["1"]);
    assert_eq!(model.platform, http["platform"]);
    assert_eq!(model.inputs[0].name, "INPUT0");
    assert_eq!(model.inputs[0].shape, [-1, 16]);
    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.to_owned(),
        version: version.to_owned(),
    };
    assert!(
        client
            .model_ready(ready("iris", "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !client
            .model_ready(ready("iris", "7"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !client
            .model_ready(ready("nope", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !client
            .model_ready(ready("broken", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let config = client
        .model_config(ModelConfigRequest {
            name: "iris".to_owned(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.name, "iris");
    assert_eq!(config.input[0].name, "features");
    assert_eq!(config.input[0].data_type, DataType::TypeFp32 as i32);
    let index = client
        .repository_index(RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    let row = |name: &str, version: &str| {
        index
            .iter()
            .find(|m| m.name == name && m.version == version)
            .unwrap()
            .clone()
    };
    assert_eq!(row("iris", "2").state, "READY");
    assert_eq!(row("broken", "1").state, "UNAVAILABLE");
    assert!(!row("broken", "1").reason.is_empty());
    let refused = client
        .repository_model_unload(RepositoryModelUnloadRequest {
            model_name: "iris".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("model control is disabled"),
        "{}",
        refused.message()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn inference_answers_as_http_does_in_typed_and_raw_form() {
    let (server, mut client, _) = start_grpc(on_test_models(1 << 20)).await;
    let http = post(
        &server.app,
        "/v2/models/iris/infer",
        json!({"inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": IRIS}]}),
    )
    .await
    .ok_json();
    let http_labels: Vec<i64> = serde_json::from_value(http["outputs"][0]["data"].clone()).unwrap();
    let http_probabilities: Vec<f32> =
        serde_json::from_value(http["outputs"][1]["data"].clone()).unwrap();

    // Typed input, raw answer (the default, as Triton answers).
    let answer = client
        .model_infer(iris_request(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answer.model_name.as_str(), answer.model_version.as_str()),
        ("iris", "2")
    );
    assert_eq!(answer.id, "g1");
    assert_eq!(answer.outputs[0].name, "label");
    assert_eq!(answer.outputs[0].shape, [2]);
    assert_eq!(raw_i64(&answer.raw_output_contents[0]), http_labels);
    assert_eq!(raw_f32(&answer.raw_output_contents[1]), http_probabilities);

    // Raw input, one typed output chosen by name.
    let mut raw = iris_request("2");
    raw.inputs[0].contents = None;
    raw.raw_input_contents = vec![IRIS.iter().flat_map(|v| v.to_le_bytes()).collect()];
    let mut parameters = HashMap::new();
    parameters.insert(
        "binary_data".to_owned(),
        InferParameter {
            parameter_choice: Some(infer_parameter::ParameterChoice::BoolParam(false)),
        },
    );
    raw.outputs = vec![InferRequestedOutputTensor {
        name: "probabilities".to_owned(),
        parameters,
    }];
    let answer = client.model_infer(raw).await.unwrap().into_inner();
    assert!(answer.raw_output_contents.is_empty());
    assert_eq!(answer.outputs.len(), 1);
    assert_eq!(
        answer.outputs[0].contents.as_ref().unwrap().fp32_contents,
        http_probabilities
    );

    let stats = client
        .model_statistics(ModelStatisticsRequest {
            name: "iris".to_owned(),
            version: "2".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .model_stats;
    assert_eq!(
        stats[0]
            .inference_stats
            .as_ref()
            .unwrap()
            .success
            .as_ref()
            .unwrap()
            .count,
        3
    );
    assert_eq!(stats[0].inference_count, 6);
    let metrics = String::from_utf8(get(&server.app, "/metrics").await.body).unwrap();
    for series in [
        r#"weir_inference_requests_total{model="iris",version="2",code="200",protocol="grpc"} 2"#,
        r#"weir_inference_requests_total{model="iris",version="2",code="200",protocol="http"} 1"#,
        r#"weir_inference_request_duration_seconds_count{model="iris",version="2",protocol="grpc"} 2"#,
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn refusals_keep_their_http_meaning_as_grpc_codes() {
    let (server, mut client, _) = start_grpc(on_test_models(64 * 1024)).await;
    let mut unknown_model = iris_request("");
    unknown_model.model_name = "nope".to_owned();
    let status = client.model_infer(unknown_model).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("unknown model 'nope'"),
        "{}",
        status.message()
    );

    let status = client.model_infer(iris_request("7")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("unknown version '7'"),
        "{}",
        status.message()
    );

    let mut bad_shape = iris_request("");
    bad_shape.inputs[0] = fp32_input("features", &[1, 3], &[1.0, 2.0, 3.0]);
    let status = client.model_infer(bad_shape).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("input 'features' has shape [1, 3], but dimension 1 must be 4"),
        "{}",
        status.message()
    );

    let mut bad_type = iris_request("");
    bad_type.inputs[0].datatype = "FP64".to_owned();
    let status = client.model_infer(bad_type).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status
        .message()
        .contains("has datatype FP64, but the model expects FP32"));

    let mut broken = iris_request("");
    broken.model_name = "broken".to_owned();
    assert_eq!(
        client.model_infer(broken).await.unwrap_err().code(),
        Code::Unavailable
    );

    let big = vec![0.5f32; 20_000 * 4]; // 320 kB, over this server's 64 KiB limit
    let mut too_large = iris_request("");
    too_large.inputs[0] = fp32_input("features", &[20_000, 4], &big);
    let status = client.model_infer(too_large).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("larger than the limit"),
        "{}",
        status.message()
    );

    // A failed request is counted under its protocol and the HTTP status of its meaning.
    let metrics = String::from_utf8(get(&server.app, "/metrics").await.body).unwrap();
    assert!(metrics.contains(
        r#"weir_inference_requests_total{model="iris",version="2",code="400",protocol="grpc"} 2"#
    ));
    // And the server still answers.
    client.model_infer(iris_request("")).await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_shed_call_gets_unavailable_with_retry_after() {
    let (server, mut client, _) = start_grpc(ServeConfig {
        max_concurrent_requests: 1,
        ..on_test_models(1 << 20)
    })
    .await;
    // The one slot, shared with HTTP, is taken.
    let held = server.app.admission.admit().unwrap();
    let status = client.model_infer(iris_request("")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    assert!(
        status.message().contains("limit of 1 concurrent"),
        "{}",
        status.message()
    );
    // Metadata calls are not shed.
    assert!(client
        .model_metadata(ModelMetadataRequest {
            name: "iris".to_owned(),
            version: String::new(),
        })
        .await
        .is_ok());
    drop(held);
    client.model_infer(iris_request("")).await.unwrap();
    let metrics = String::from_utf8(get(&server.app, "/metrics").await.body).unwrap();
    assert!(metrics.contains("weir_inference_shed_total 1"), "{metrics}");
    server.shutdown().await.unwrap();
}

fn simple_rows(client: i32) -> (Vec<i32>, Vec<i32>) {
    let a: Vec<i32> = (0..16).map(|v| v + client * 1000).collect();
    let b: Vec<i32> = (0..16).map(|v| client - v).collect();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_and_grpc_requests_share_one_batch_and_each_gets_its_own_rows() {
    let repo = TempRepo::new("grpc-batching");
    repo.copy_version("simple", 1, "simple", 1);
    // The batch goes only when full (4 rows) — the long delay is a bound, not a wait — so the
    // two HTTP and two gRPC requests below run as exactly one execution.
    repo.write_config(
        "simple",
        "max_batch_size = 4\n[dynamic_batching]\nmax_queue_delay = \"60s\"\n",
    );
    let (server, client, _) = start_grpc(common::config(&repo.dir)).await;
    let app = server.app.clone();
    let mut calls = Vec::new();
    for id in 0..4 {
        let (app, mut client) = (app.clone(), client.clone());
        calls.push(tokio::spawn(async move {
            let (a, b) = simple_rows(id);
            if id % 2 == 0 {
                let body = json!({"inputs": [
                    {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": a},
                    {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": b}]});
                let answer = post(&app, "/v2/models/simple/infer", body).await.ok_json();
                let sum: Vec<i32> =
                    serde_json::from_value(answer["outputs"][0]["data"].clone()).unwrap();
                (id, sum)
            } else {
                let input = |name: &str, values: Vec<i32>| InferInputTensor {
                    name: name.to_owned(),
                    datatype: "INT32".to_owned(),
                    shape: vec![1, 16],
                    parameters: HashMap::new(),
                    contents: Some(Box::new(InferTensorContents {
                        int_contents: values,
                        ..Default::default()
                    })),
                };
                let answer = client
                    .model_infer(ModelInferRequest {
                        model_name: "simple".to_owned(),
                        inputs: vec![input("INPUT0", a), input("INPUT1", b)],
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let sum = answer.raw_output_contents[0]
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                (id, sum)
            }
        }));
    }
    for call in calls {
        let (id, sum) = call.await.unwrap();
        let (a, b) = simple_rows(id);
        let expected: Vec<i32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(sum, expected, "client {id} got another client's rows");
    }
    let stats = get(&app, "/v2/models/simple/stats").await.json()["model_stats"][0].clone();
    assert_eq!(stats["execution_count"], 1, "{stats}");
    assert_eq!(stats["batch_stats"][0]["batch_size"], 4, "{stats}");
    let metrics = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    for protocol in ["http", "grpc"] {
        let series = format!(
            r#"weir_inference_requests_total{{model="simple",version="1",code="200",protocol="{protocol}"}} 2"#
        );
        assert!(metrics.contains(&series), "{series} missing");
    }
    server.shutdown().await.unwrap();
}

async fn health(addr: SocketAddr, service: &str) -> Result<i32, tonic::Status> {
    let mut client = HealthClient::new(channel(addr).await.unwrap());
    client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|answer| answer.into_inner().status)
}

#[tokio::test]
async fn the_health_service_follows_readiness() {
    let (server, _, addr) = start_grpc(on_test_models(1 << 20)).await;
    // The test repository holds a broken model: strict readiness keeps the server unready.
    let mut checks = 0;
    let unready = loop {
        let status = health(addr, "").await.unwrap();
        checks += 1;
        if status == ServingStatus::NotServing as i32 || checks > 100 {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(unready, ServingStatus::NotServing as i32);
    assert_eq!(
        health(addr, "live").await.unwrap(),
        ServingStatus::Serving as i32
    );
    let unknown = health(addr, "no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.shutdown().await.unwrap();

    let repo = TempRepo::new("grpc-health");
    repo.copy_version("iris", 1, "iris", 1);
    let (server, _, addr) = start_grpc(common::config(&repo.dir)).await;
    let mut server = server;
    server.wait_ready().await.unwrap();
    let mut status = 0;
    for _ in 0..100 {
        status = health(addr, "inference.GRPCInferenceService")
            .await
            .unwrap();
        if status == ServingStatus::Serving as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, ServingStatus::Serving as i32);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_finishes_in_flight_calls_and_refuses_new_connections() {
    let repo = TempRepo::new("grpc-drain");
    repo.copy_version("simple", 1, "simple", 1);
    // Requests wait in the batch until four rows are there: three are in flight when the
    // drain starts, and the fourth (sent after it, on the open connection) completes them.
    repo.write_config(
        "simple",
        "max_batch_size = 4\n[dynamic_batching]\nmax_queue_delay = \"60s\"\n",
    );
    let (server, client, addr) = start_grpc(common::config(&repo.dir)).await;
    let app = server.app.clone();
    let request = || {
        let input = |name: &str| InferInputTensor {
            name: name.to_owned(),
            datatype: "INT32".to_owned(),
            shape: vec![1, 16],
            parameters: HashMap::new(),
            contents: Some(Box::new(InferTensorContents {
                int_contents: vec![1; 16],
                ..Default::default()
            })),
        };
        ModelInferRequest {
            model_name: "simple".to_owned(),
            inputs: vec![input("INPUT0"), input("INPUT1")],
            ..Default::default()
        }
    };
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let mut client = client.clone();
            let request = request();
            tokio::spawn(async move { client.model_infer(request).await })
        })
        .collect();
    let loaded = app.store.resolve("simple", None).unwrap();
    for _ in 0..200 {
        if loaded.metrics.inflight.get() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(loaded.metrics.inflight.get(), 3, "three calls in flight");
    let draining = tokio::spawn(server.shutdown());
    for _ in 0..200 {
        if !app.ready.load(std::sync::atomic::Ordering::Acquire) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A new connection is refused once the listener has stopped accepting.
    let mut refused = false;
    for _ in 0..200 {
        if channel(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        refused,
        "the gRPC listener kept accepting connections while draining"
    );
    // The fourth row goes in through HTTP (the queue is shared), completing the batch.
    let body = json!({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": vec![1; 16]},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": vec![1; 16]}]});
    post(&app, "/v2/models/simple/infer", body).await.ok_json();
    for call in in_flight {
        let answer = call
            .await
            .unwrap()
            .expect("an in-flight call failed during the drain");
        assert_eq!(answer.into_inner().raw_output_contents[0].len(), 64);
    }
    draining.await.unwrap().unwrap();
}

/// The gRPC port is the HTTP listener speaking HTTP/2: one per-peer share across both ports,
/// and a call whose message stalls is cut off at the body rate with DEADLINE_EXCEEDED (not
/// held for ever with its memory reservation).
#[tokio::test]
async fn the_grpc_port_shares_the_listeners_caps_and_body_deadline() {
    let limits = weir_http::server::ServerLimits {
        max_connections_per_peer: 2,
        body_min_rate: 1000,
        body_grace: Duration::from_millis(200),
        ..weir_http::server::ServerLimits::default()
    };
    let (server, mut client, addr) = start_grpc(ServeConfig {
        limits,
        ..on_test_models(1 << 20)
    })
    .await;
    // The tonic client's connection is one of the two; an HTTP/1 connection takes the other.
    client
        .server_live(ServerLiveRequest {})
        .await
        .expect("the first connection is served");
    let http = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut bytes = Vec::new();
    let closed = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read_to_end(&mut over, &mut bytes),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "a third connection from the same peer is closed at once: {closed:?}"
    );
    drop(http);

    // A ModelInfer call whose message promises 1000 bytes and sends 5.
    let (mut sender, request) = raw_infer_call(addr, StallingMessage { sent: false }).await;
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .expect("the stalled call is answered")
        .unwrap();
    let status = tonic::Status::from_header_map(response.headers())
        .expect("a trailers-only answer with grpc-status");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("slower than"), "{status:?}");
    server.shutdown().await.unwrap();
}

/// A gRPC message header announcing 1000 bytes, then nothing more.
struct StallingMessage {
    sent: bool,
}

impl hyper::body::Body for StallingMessage {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.sent {
            return std::task::Poll::Pending;
        }
        self.sent = true;
        let mut header = vec![0u8];
        header.extend_from_slice(&1000u32.to_be_bytes());
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(header.into()))))
    }
}

/// A raw HTTP/2 connection to `addr` and a `ModelInfer` request carrying `body` as it is: the
/// calls tonic's client would never make.
async fn raw_infer_call<B>(
    addr: SocketAddr,
    body: B,
) -> (hyper::client::conn::http2::SendRequest<B>, http::Request<B>)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!(
        "http://{addr}/inference.GRPCInferenceService/ModelInfer"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(body)
    .unwrap();
    (sender, request)
}

/// `ModelInfer` with `body` as its bytes: the answer's status (from the trailers-only headers
/// or the trailers).
async fn raw_infer(addr: SocketAddr, body: Vec<u8>) -> tonic::Status {
    let body = http_body_util::Full::new(bytes::Bytes::from(body));
    let (mut sender, request) = raw_infer_call(addr, body).await;
    let response = sender.send_request(request).await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let collected = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    tonic::Status::from_header_map(collected.trailers().unwrap()).unwrap()
}

#[tokio::test]
async fn malformed_messages_are_refused_with_a_reason() {
    let (server, _, addr) = start_grpc(on_test_models(1 << 20)).await;
    let cases = [
        (
            vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff],
            Code::InvalidArgument,
            "cannot be decoded",
        ),
        (
            vec![0, 0, 0, 0, 9, 1],
            Code::InvalidArgument,
            "announces 9 bytes",
        ),
        (vec![1, 0, 0, 0, 1, 0], Code::Unimplemented, "compressed"),
        (vec![0, 0], Code::InvalidArgument, "length-prefixed"),
    ];
    for (body, code, says) in cases {
        let status = raw_infer(addr, body.clone()).await;
        assert_eq!(status.code(), code, "{body:?}: {status:?}");
        assert!(status.message().contains(says), "{body:?}: {status:?}");
    }
    server.shutdown().await.unwrap();
}
