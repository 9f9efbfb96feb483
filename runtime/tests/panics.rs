//! No panic reaches a client: a model that panics, and a panic in a request's handling on the
//! async side, are each answered 500 with a JSON body on a connection that stays open — the
//! next request on it succeeds — and are counted.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::TempRepo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use weir_models::repository::ModelConfig;
use weir_models::{Backend, BackendError, DataType, Dim, Signature, Tensor, TensorSpec};

/// Echoes FP32 `x` as `y`; panics in the model when the first element is negative, and in its
/// signature (read by the handler while decoding, on the async side) while `panic_on_read`.
struct Panicky {
    signature: Signature,
    panic_on_read: AtomicBool,
}

impl Backend for Panicky {
    fn signature(&self) -> &Signature {
        if self.panic_on_read.load(Ordering::Relaxed) {
            panic!("injected panic while a request was decoded");
        }
        &self.signature
    }
    fn platform(&self) -> &'static str {
        "test"
    }
    fn infer(&self, inputs: Vec<Tensor>, _outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
        let x = inputs.into_iter().next().unwrap();
        if let weir_models::TensorData::Fp32(values) = &x.data {
            if values.first().is_some_and(|v| *v < 0.0) {
                panic!("injected panic in the model");
            }
        }
        Ok(vec![Tensor::new("y", x.shape, x.data)])
    }
}

fn spec(name: &str) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        shape: vec![Dim::Variable, Dim::Fixed(2)],
    }
}

/// One HTTP/1.1 exchange on a kept-alive connection: the status and the JSON body.
async fn exchange(
    connection: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    connection
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let mut status_line = String::new();
    let read = connection.read_line(&mut status_line).await.unwrap();
    assert!(read > 0, "the server closed the connection");
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut length = None;
    loop {
        let mut line = String::new();
        connection.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = Some(value.trim().parse::<usize>().unwrap());
        }
        assert!(
            !lower.starts_with("connection: close"),
            "the server closes after this answer"
        );
    }
    let mut body = vec![0; length.expect("a content-length")];
    connection.read_exact(&mut body).await.unwrap();
    (
        status,
        serde_json::from_slice(&body)
            .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned())),
    )
}

fn infer_body(first: f32) -> String {
    format!(
        r#"{{"inputs": [{{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [{first}, 1.0]}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_panics_answer_500_and_never_reset_the_connection() {
    let repo = TempRepo::new("panics");
    let server = common::start(common::config(&repo.dir)).await;
    let backend = Arc::new(Panicky {
        signature: Signature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        },
        panic_on_read: AtomicBool::new(false),
    });
    server
        .app
        .store
        .insert_backend("boom", 1, backend.clone(), &ModelConfig::default());
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut connection = BufReader::new(stream);
    let infer = "/v2/models/boom/infer";

    let (status, answer) = exchange(&mut connection, "POST", infer, &infer_body(1.0)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outputs"][0]["data"], serde_json::json!([1.0, 1.0]));

    // The model panics: its worker catches it; the request fails, the worker lives.
    let (status, answer) = exchange(&mut connection, "POST", infer, &infer_body(-1.0)).await;
    assert_eq!(status, 500, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("panicked"),
        "{answer}"
    );
    let (status, _) = exchange(&mut connection, "POST", infer, &infer_body(2.0)).await;
    assert_eq!(
        status, 200,
        "the next request on the same connection succeeds"
    );

    // A panic on the async side (the handler reading the model's signature): the panic layer.
    backend.panic_on_read.store(true, Ordering::Relaxed);
    let (status, answer) = exchange(&mut connection, "POST", infer, &infer_body(3.0)).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"], weir_http::panic::PANIC_MESSAGE);
    backend.panic_on_read.store(false, Ordering::Relaxed);
    let (status, _) = exchange(&mut connection, "POST", infer, &infer_body(4.0)).await;
    assert_eq!(status, 200, "the connection survived the panic");

    let (status, metrics) = exchange(&mut connection, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("weir_panics_total 1\n"),
        "one panic reached the panic layer:\n{metrics}"
    );
    assert!(
        metrics.contains(r#"weir_inference_requests_total{model="boom",version="1",code="500",protocol="http"} 1"#),
        "the model's panic is a counted failure:\n{metrics}"
    );
}
