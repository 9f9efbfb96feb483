//! No panic reaches a client: a model that panics, and a panic in a request's handling on the
//! async side, are each answered 500 with a JSON body on a connection that stays open — the
//! next request on it succeeds — and are counted.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::sync::atomic::Ordering;

use common::panicky::Panicky;
use common::TempRepo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

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
    let backend = Panicky::install(&server);
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
