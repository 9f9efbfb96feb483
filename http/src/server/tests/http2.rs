//! The HTTP/2 listener (the gRPC ports) against the same stalling and crowding clients: the
//! deadlines translated to a multiplexed connection, the caps shared with HTTP/1.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;

use super::{
    connect_from, eventually, limits, start_speaking, until_closed, Running, WAITING_BESIDE,
    WAITING_HTTP2,
};
use crate::server::ServerLimits;

type Connection = tokio::task::JoinHandle<()>;

/// An HTTP/2 client connection from `from`; its task ends when the server closes it.
pub(super) async fn client<B>(from: &str, running: &Running) -> (SendRequest<B>, Connection)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = connect_from(from, running.address).await;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, task)
}

pub(super) fn post<B>(path: &str, body: B) -> Request<B> {
    Request::post(format!("http://x{path}")).body(body).unwrap()
}

pub(super) async fn answer(
    sender: &mut SendRequest<Full<Bytes>>,
    path: &str,
    body: &str,
) -> (StatusCode, String) {
    let response = sender
        .send_request(post(path, Full::new(Bytes::from(body.to_owned()))))
        .await
        .unwrap();
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test]
async fn calls_are_answered_over_http2_and_a_stalled_body_is_cut_off() {
    let running = start_speaking(
        ServerLimits {
            body_min_rate: 1000,
            body_grace: Duration::from_millis(200),
            ..limits()
        },
        true,
    )
    .await;
    let (mut sender, _connection) = client("127.0.0.1", &running).await;
    assert_eq!(
        answer(&mut sender, "/echo", "hello").await,
        (StatusCode::OK, "got 5".to_owned())
    );
    // A body that sends ten bytes and then nothing: after the grace it is far below the rate.
    let (mut slow_sender, _slow) = client("127.0.0.2", &running).await;
    let response = slow_sender
        .send_request(post("/echo", Stalled { sent: false }))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&text).contains("slower than 1000 bytes/s"),
        "{text:?}"
    );
    assert_eq!(running.server.stats().slow_bodies, 1);
    // The stalled call cost only itself: the other connection still answers.
    assert_eq!(
        answer(&mut sender, "/echo", "again").await,
        (StatusCode::OK, "got 5".to_owned())
    );
}

/// A request body that sends ten bytes and then stalls for ever.
struct Stalled {
    sent: bool,
}

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent {
            return std::task::Poll::Pending;
        }
        self.sent = true;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"0123456789")))))
    }
}

#[tokio::test]
async fn a_connection_that_makes_no_call_is_closed_at_the_header_deadline() {
    let running = start_speaking(
        ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            ..limits()
        },
        true,
    )
    .await;
    let mut silent = connect_from("127.0.0.1", running.address).await;
    until_closed(&mut silent).await;
    assert_eq!(running.server.stats().header_timeouts, 1);
}

#[tokio::test]
async fn an_idle_connection_gets_goaway_after_its_last_call_pings_or_not() {
    let running = start_speaking(
        ServerLimits {
            idle_keep_alive_timeout: Duration::from_millis(300),
            ..limits()
        },
        true,
    )
    .await;
    let stream = connect_from("127.0.0.1", running.address).await;
    // The client pings every 100 ms while idle: pings are not calls.
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(100))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    assert_eq!(
        answer(&mut sender, "/echo", "x").await,
        (StatusCode::OK, "got 1".to_owned())
    );
    tokio::time::timeout(Duration::from_secs(30), connection)
        .await
        .expect("the idle connection was not closed")
        .unwrap();
    assert_eq!(running.server.stats().idle_closed, 1);
}

#[tokio::test]
async fn a_peer_over_its_share_is_closed_without_a_byte_and_counted() {
    let running = start_speaking(
        ServerLimits {
            max_connections_per_peer: 1,
            ..limits()
        },
        true,
    )
    .await;
    let mut first = connect_from("127.0.0.1", running.address).await;
    // The server's preface (a SETTINGS frame) shows the first connection was taken.
    let mut preface = [0u8; 9];
    first.read_exact(&mut preface).await.unwrap();
    assert_eq!(preface[3], 4, "a SETTINGS frame");
    let mut second = connect_from("127.0.0.1", running.address).await;
    assert_eq!(until_closed(&mut second).await, "");
    assert_eq!(running.server.stats().refused, 1);
    // Another address has its own share.
    let (mut other, _connection) = client("127.0.0.3", &running).await;
    assert_eq!(
        answer(&mut other, "/echo", "ok").await,
        (StatusCode::OK, "got 2".to_owned())
    );
}

#[tokio::test]
async fn on_shutdown_calls_in_flight_finish_and_no_connection_is_taken() {
    let running = start_speaking(limits(), true).await;
    let (mut sender, _connection) = client("127.0.0.1", &running).await;
    let in_flight = tokio::spawn(async move { answer(&mut sender, "/wait-http2", "late").await });
    eventually("the call waits in the handler", || {
        WAITING_HTTP2.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    running.stop.send(true).unwrap();
    eventually("the listener stops accepting", || {
        std::net::TcpStream::connect(running.address).is_err()
    })
    .await;
    assert!(!running.task.is_finished(), "a call is still in flight");
    running.release.send(true).unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        (StatusCode::OK, "got 4".to_owned())
    );
    tokio::time::timeout(Duration::from_secs(30), running.task)
        .await
        .expect("the server did not stop after its last call")
        .unwrap();
}

#[tokio::test]
async fn calls_on_one_connection_run_side_by_side_in_its_task() {
    let running = start_speaking(limits(), true).await;
    let (sender, _connection) = client("127.0.0.1", &running).await;
    let mut waiting = sender.clone();
    let held = tokio::spawn(async move { answer(&mut waiting, "/wait-beside", "held").await });
    eventually("the first call waits in the handler", || {
        WAITING_BESIDE.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    // The connection runs its calls in its own task: a call that waits must not hold up the
    // calls beside it on the same connection.
    for body in ["one", "three", "sixteen chars.."] {
        let mut sender = sender.clone();
        let answered = tokio::time::timeout(Duration::from_secs(30), async move {
            answer(&mut sender, "/echo", body).await
        })
        .await
        .expect("a call waited behind another call on its connection");
        assert_eq!(answered, (StatusCode::OK, format!("got {}", body.len())));
    }
    assert!(!held.is_finished(), "the first call is still held");
    running.release.send(true).unwrap();
    assert_eq!(held.await.unwrap(), (StatusCode::OK, "got 4".to_owned()));
}

#[tokio::test]
async fn a_call_that_panics_ends_alone_and_its_connection_goes_on() {
    let running = start_speaking(limits(), true).await;
    let (mut sender, connection) = client("127.0.0.1", &running).await;
    // The panicking call's stream is reset; hyper's client reports an error for it.
    let failed = sender
        .send_request(post("/panic", Full::new(Bytes::from_static(b"x"))))
        .await;
    assert!(
        failed.is_err(),
        "a call whose handler panicked got {failed:?}"
    );
    // The calls after it, on the same connection, are answered.
    for _ in 0..3 {
        assert_eq!(
            answer(&mut sender, "/echo", "after").await,
            (StatusCode::OK, "got 5".to_owned())
        );
    }
    assert!(!connection.is_finished(), "the connection was closed");
}
