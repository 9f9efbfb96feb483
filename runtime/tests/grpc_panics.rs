//! No panic reaches a gRPC client as a broken connection: a model that panics and a panic in a
//! call's handling on the async side are each answered INTERNAL, counted, and the next call on
//! the same connection succeeds.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::panicky::Panicky;
use common::{get, TempRepo};
use tonic::transport::Channel;
use tonic::Code;
use weir_runtime::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use weir_runtime::grpc::proto::model_infer_request::InferInputTensor;
use weir_runtime::grpc::proto::{InferTensorContents, ModelInferRequest};
use weir_runtime::ServeConfig;

fn request(first: f32) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "boom".to_owned(),
        inputs: vec![InferInputTensor {
            name: "x".to_owned(),
            datatype: "FP32".to_owned(),
            shape: vec![1, 2],
            parameters: HashMap::new(),
            contents: Some(Box::new(InferTensorContents {
                fp32_contents: vec![first, 1.0],
                ..Default::default()
            })),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_panics_answer_internal_and_never_break_the_connection() {
    let repo = TempRepo::new("grpc-panics");
    let server = common::start(ServeConfig {
        grpc_port: Some(0),
        ..common::config(&repo.dir)
    })
    .await;
    let backend = Panicky::install(&server);
    // One channel, one HTTP/2 connection, for every call below.
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr().unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let answer = client.model_infer(request(1.0)).await.unwrap().into_inner();
    assert_eq!(answer.raw_output_contents[0].len(), 8);

    // The model panics: its worker catches it; the call fails, the worker lives.
    let status = client.model_infer(request(-1.0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        status.message().contains("panicked"),
        "{}",
        status.message()
    );
    client.model_infer(request(2.0)).await.unwrap();

    // A panic on the async side: the listener's outer layer answers it.
    backend.panic_on_read.store(true, Ordering::Relaxed);
    let status = client.model_infer(request(3.0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), weir_http::panic::PANIC_MESSAGE);
    backend.panic_on_read.store(false, Ordering::Relaxed);
    client
        .model_infer(request(4.0))
        .await
        .expect("the connection survived the panic");

    let metrics = String::from_utf8(get(&server.app, "/metrics").await.body).unwrap();
    assert!(metrics.contains("weir_panics_total 1\n"), "{metrics}");
    assert!(
        metrics.contains(
            r#"weir_inference_requests_total{model="boom",version="1",code="500",protocol="grpc"} 1"#
        ),
        "the model's panic is a counted failure:\n{metrics}"
    );
    server.shutdown().await.unwrap();
}
