//! The gRPC listener's caps and deadlines, and its drain: connections over the per-peer cap
//! are closed, a connection that sends no call is closed after the header deadline, and on stop
//! the calls in flight finish while the listener stops taking new connections.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod grpc_support;

use std::sync::Arc;
use std::time::Duration;

use grpc_support::{
    call, client, message, replica, router_with_limits, shared_port, Behaviour, INFER,
};
use tokio::io::AsyncReadExt;
use weir_http::server::ServerLimits;

fn routes(port: u16) -> String {
    format!(
        "[settings]\ngrpc_port = {port}\n\
         [[route]]\nmodel = \"iris\"\n\
         [[route.backend]]\nversion = \"1\"\nendpoints = [\"http://127.0.0.1:9\"]\nweight = 100\n"
    )
}

/// Reads until the peer closes, at most `bound` (a generous bound: the assertion is that the
/// close comes, not when); the bytes read.
async fn read_to_close(stream: &mut tokio::net::TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    tokio::time::timeout(bound, stream.read_to_end(&mut bytes))
        .await
        .ok()
        .map(|_| bytes)
}

#[tokio::test]
async fn a_connection_without_a_call_is_closed_and_the_cap_holds_per_peer() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(200),
        max_connections_per_peer: 1,
        ..ServerLimits::default()
    };
    let (_router, address, _stop, _task) =
        router_with_limits("deadlines", &routes(1), limits).await;
    let mut first = tokio::net::TcpStream::connect(address).await.unwrap();
    // Let the listener take the first one before the second arrives.
    let mut settings = [0u8; 9];
    first.read_exact(&mut settings).await.unwrap();
    assert_eq!(settings[3], 4, "the server's preface is a SETTINGS frame");
    let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
    let refused = read_to_close(&mut second, Duration::from_secs(10)).await;
    assert_eq!(
        refused,
        Some(Vec::new()),
        "over the per-peer cap: closed at once, nothing sent"
    );
    // The first sends nothing, not even the client preface: closed after the header deadline.
    assert!(
        read_to_close(&mut first, Duration::from_secs(10))
            .await
            .is_some(),
        "a connection that sends nothing is closed"
    );
}

#[tokio::test]
async fn on_stop_calls_in_flight_finish_and_new_connections_are_refused() {
    let (port, mut listeners) = shared_port(&[]);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let replica_calls = replica(
        listeners.pop().unwrap(),
        "v1",
        Behaviour::Hold(gate.clone()),
    );
    let (_router, address, stop, task) =
        router_with_limits("drain", &routes(port), ServerLimits::default()).await;
    let client = client();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move {
            call(&client, address, INFER, message("iris", None, b"x"), &[]).await
        })
    };
    for _ in 0..500 {
        if replica_calls.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(replica_calls.count(), 1, "the call reached the replica");
    stop.send(true).unwrap();
    // The listener stops taking connections at once…
    let mut refused = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "a stopped listener takes no new connections");
    assert!(!task.is_finished(), "a call is still in flight");
    // …and the call in flight finishes with its answer.
    gate.add_permits(1);
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.grpc_status(), Some(0));
    assert_eq!(reply.data, message("iris", None, b"x"));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// A connection that made calls and then stays idle past the idle deadline gets GOAWAY and is
/// closed; its client sees the connection end.
#[tokio::test]
async fn an_idle_connection_is_closed_after_its_calls() {
    let (port, mut listeners) = shared_port(&[]);
    let _replica = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    // A header deadline far beyond the wait below: the idle deadline alone must close it.
    let limits = ServerLimits {
        idle_keep_alive_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_secs(60),
        ..ServerLimits::default()
    };
    let (_router, address, _stop, _task) = router_with_limits("idle", &routes(port), limits).await;
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    for _ in 0..3 {
        let request = axum::http::Request::post(format!("http://{address}{INFER}"))
            .header("content-type", "application/grpc")
            .body(http_body_util::Full::new(message("iris", None, b"")))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-weir-version"], "1");
    }
    // Idle now: the router closes the connection (bounded wait; the close is what is asserted).
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(ended.is_ok(), "the idle connection was not closed");
}
