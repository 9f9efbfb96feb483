//! The inference server's edges end to end: body limits, the metrics it counts, and raw
//! HTTP/1.1 on a real socket (garbage must never take it down).

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{call, iris_two_rows};

#[tokio::test]
async fn bodies_over_the_limit_get_413_declared_or_streamed() {
    let server = common::start_on_test_models(1024).await;
    let big = vec![b' '; 4096];
    let declared = call(
        &server.app,
        Method::POST,
        "/v2/models/iris/infer",
        big.clone(),
    )
    .await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(declared.error().contains("limit of 1024 bytes"));
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..8)
        .map(|_| Ok(bytes::Bytes::from(vec![b' '; 512])))
        .collect();
    let streamed = call(
        &server.app,
        Method::POST,
        "/v1/models/iris:predict",
        Body::from_stream(futures_stream(chunks)),
    )
    .await;
    assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);
}

fn futures_stream(
    chunks: Vec<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn metrics_count_answers_by_model_version_and_code() {
    let server = common::start_on_test_models(1 << 20).await;
    for _ in 0..3 {
        common::post(&server.app, "/v2/models/iris/infer", iris_two_rows()).await;
    }
    common::post(
        &server.app,
        "/v2/models/iris/versions/1/infer",
        json!({"inputs": []}),
    )
    .await;
    common::post(&server.app, "/v2/models/unknown/infer", iris_two_rows()).await;
    let text = String::from_utf8(
        call(&server.app, Method::GET, "/metrics", Body::empty())
            .await
            .body,
    )
    .unwrap();
    assert!(
        text.contains(r#"weir_inference_requests_total{model="iris",version="2",code="200",protocol="http"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"weir_inference_requests_total{model="iris",version="1",code="400",protocol="http"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"weir_inference_batch_size_sum{model="iris",version="2"} 6.0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"weir_inflight_requests{model="iris",version="2"} 0"#),
        "{text}"
    );
    assert!(
        !text.contains("unknown"),
        "unknown model names must not become labels"
    );
}

/// Sends raw bytes on a fresh connection and returns what the server answered.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server left the connection hanging");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn garbage_on_the_socket_never_takes_the_server_down() {
    let server = common::start_on_test_models(1 << 20).await;
    let addr = server.local_addr();
    for garbage in [
        &b"\x00\x01\x02 nonsense\r\n\r\n"[..],
        b"GET /v2 HTTP/9.9\r\n\r\n",
        b"POST /v2/models/iris/infer HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    ] {
        let answer = raw(addr, garbage).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{answer}"
        );
    }
    // tritonclient sends JSON without a Content-Type; it must be accepted.
    let body = iris_two_rows().to_string();
    let request = format!("POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let answer = raw(addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.shutdown().await.unwrap();
}
