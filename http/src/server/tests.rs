//! The server against stalling and crowding clients on loopback. Deadlines are short so the
//! tests are quick; every assertion is on an outcome (an answer, a closed socket, a count),
//! with generous bounds on how long it may take.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::{BodyTooSlow, Http2Body, MinRateBody, Server, ServerLimits};

/// Set when a request to `/wait` (`/wait-http2`, `/wait-beside`) has reached the handler: one
/// per test that waits, as tests run at once.
static WAITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static WAITING_HTTP2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static WAITING_BESIDE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads the body; answers `got N`, 408 when it came too slowly. The `/wait…` paths wait until
/// `release` turns true; `/hold` waits too but sets no flag (for tests that learn otherwise
/// that it was reached); `/panic` panics; `/large/N` answers N bytes of `x` instead of `got N`.
async fn handle<B>(
    request: Request<MinRateBody<B>>,
    mut release: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let waiting = match request.uri().path() {
        "/wait" => Some(&WAITING),
        "/wait-http2" => Some(&WAITING_HTTP2),
        "/wait-beside" => Some(&WAITING_BESIDE),
        _ => None,
    };
    if request.uri().path() == "/panic" {
        panic!("a handler's bug");
    }
    if let Some(waiting) = waiting {
        waiting.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    if waiting.is_some() || request.uri().path() == "/hold" {
        let _ = release.wait_for(|go| *go).await;
    }
    // `/x-echo` answers the request's `x-echo` header, for the tests of how headers are read.
    let echo = (request.uri().path() == "/x-echo").then(|| {
        let value = request.headers().get("x-echo");
        format!(
            "x-echo {:?}",
            value.map(|v| String::from_utf8_lossy(v.as_bytes()))
        )
    });
    let large = request
        .uri()
        .path()
        .strip_prefix("/large/")
        .and_then(|length| length.parse::<usize>().ok());
    let (status, text) = match request.into_body().collect().await {
        Ok(body) => (StatusCode::OK, format!("got {}", body.to_bytes().len())),
        Err(err) if BodyTooSlow::is_cause_of(&*err) => {
            (StatusCode::REQUEST_TIMEOUT, err.to_string())
        }
        Err(err) => (StatusCode::BAD_REQUEST, err.to_string()),
    };
    let text = echo.unwrap_or(text);
    let body = match large {
        Some(length) if status == StatusCode::OK => Bytes::from(vec![b'x'; length]),
        _ => Bytes::from(text),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    Ok(response)
}

struct Running {
    server: Server,
    address: SocketAddr,
    stop: watch::Sender<bool>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: ServerLimits) -> Running {
    start_speaking(limits, false).await
}

async fn start_speaking(limits: ServerLimits, http2: bool) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = Server::new(limits);
    let (stop, mut stopped) = watch::channel(false);
    let (release, released) = watch::channel(false);
    let serving = server.clone();
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if http2 {
            let service = tower::service_fn(move |request: Request<MinRateBody<Http2Body>>| {
                handle(request, released.clone())
            });
            serving.serve_http2(listener, service, stopped).await;
        } else {
            let service = tower::service_fn(move |request: Request<MinRateBody<Incoming>>| {
                handle(request, released.clone())
            });
            serving.serve(listener, service, stopped).await;
        }
    });
    Running {
        server,
        address,
        stop,
        release,
        task,
    }
}

pub(crate) fn limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_secs(60),
        body_min_rate: 1000,
        body_grace: Duration::from_secs(60),
        idle_keep_alive_timeout: Duration::from_secs(60),
        max_connections: 64,
        max_connections_per_peer: 64,
    }
}

/// A connection to `to` from the loopback address `from` (all of 127/8 is loopback).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Everything the server sends until it closes the connection (EOF or reset: what came before
/// a reset was read); fails the test when it is still open after 30 s.
async fn bytes_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("the server did not close the connection");
        match read {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buffer[..n]),
        }
    }
}

/// [`bytes_until_closed`] as text.
async fn until_closed(stream: &mut TcpStream) -> String {
    String::from_utf8_lossy(&bytes_until_closed(stream).await).into_owned()
}

/// One request on `stream`; the answer's text up to and including its body (which ends in
/// `got N`, or is the error text).
async fn request(stream: &mut TcpStream, body: &str) -> String {
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&all).contains("got ") {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("no answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Polls `done` until it holds; fails the test after 30 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn stalled_headers_are_closed_and_counted() {
    let running = start(ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..limits()
    })
    .await;
    let mut silent = connect_from("127.0.0.1", running.address).await;
    let mut partial = connect_from("127.0.0.1", running.address).await;
    partial
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert_eq!(until_closed(&mut silent).await, "");
    assert_eq!(until_closed(&mut partial).await, "");
    eventually("both counted", || {
        running.server.stats().header_timeouts == 2
    })
    .await;
    assert_eq!(running.server.stats().open, 0);
    let mut registry = prometheus_client::registry::Registry::default();
    running.server.register_metrics(&mut registry);
    let mut exported = String::new();
    prometheus_client::encoding::text::encode(&mut exported, &registry).unwrap();
    assert!(
        exported.contains("weir_http_header_timeouts_total 2\n"),
        "{exported}"
    );
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout_not_the_header_one() {
    let running = start(ServerLimits {
        header_read_timeout: Duration::from_millis(200),
        idle_keep_alive_timeout: Duration::from_millis(1500),
        ..limits()
    })
    .await;
    let mut client = connect_from("127.0.0.1", running.address).await;
    assert!(request(&mut client, "abc").await.contains("got 3"));
    // Idle for longer than the header deadline: a kept-alive connection is still usable.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(request(&mut client, "abcd").await.contains("got 4"));
    assert_eq!(until_closed(&mut client).await, "");
    eventually("the idle close counted", || {
        running.server.stats().idle_closed == 1
    })
    .await;
    assert_eq!(running.server.stats().header_timeouts, 0);
}

#[tokio::test]
async fn stalled_bodies_fail_with_408_and_the_connection_closes() {
    let running = start(ServerLimits {
        body_grace: Duration::from_millis(300),
        ..limits()
    })
    .await;
    let mut client = connect_from("127.0.0.1", running.address).await;
    client
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let answer = until_closed(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("slower than 1000 bytes/s"), "{answer}");
    assert_eq!(running.server.stats().slow_bodies, 1);
}

#[tokio::test]
async fn a_slow_but_steady_body_is_received_whole() {
    let running = start(ServerLimits {
        body_min_rate: 100,
        body_grace: Duration::from_millis(200),
        ..limits()
    })
    .await;
    let mut client = connect_from("127.0.0.1", running.address).await;
    client
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1200\r\n\r\n")
        .await
        .unwrap();
    // Ten times the minimum rate: 100 bytes every 100 ms, for longer than the grace.
    for _ in 0..12 {
        client.write_all(&[b'x'; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), client.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("got 1200"), "{answer}");
    assert_eq!(running.server.stats().slow_bodies, 0);
}

#[tokio::test]
async fn connections_over_the_caps_are_refused_counted_and_let_in_once_a_slot_frees() {
    let running = start(ServerLimits {
        max_connections: 4,
        max_connections_per_peer: 2,
        ..limits()
    })
    .await;
    let stats = || running.server.stats();
    let _first = connect_from("127.0.0.2", running.address).await;
    let _second = connect_from("127.0.0.2", running.address).await;
    eventually("two open", || stats().open == 2).await;
    // The peer's share is full; other peers still get in.
    let mut third = connect_from("127.0.0.2", running.address).await;
    let refusal = until_closed(&mut third).await;
    assert!(
        refusal.is_empty() || refusal.starts_with("HTTP/1.1 503"),
        "{refusal}"
    );
    assert_eq!(stats().refused, 1);
    let mut other = connect_from("127.0.0.3", running.address).await;
    assert!(request(&mut other, "a").await.contains("got 1"));
    let _fourth = connect_from("127.0.0.3", running.address).await;
    eventually("four open", || stats().open == 4).await;
    // The server is full: anyone is refused.
    let mut fifth = connect_from("127.0.0.1", running.address).await;
    until_closed(&mut fifth).await;
    assert_eq!(stats().refused, 2);
    drop(other);
    eventually("a slot to free", || stats().open == 3).await;
    let mut sixth = connect_from("127.0.0.1", running.address).await;
    assert!(request(&mut sixth, "ab").await.contains("got 2"));
    assert_eq!(stats().refused, 2);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_requests_in_flight_finish() {
    let running = start(limits()).await;
    let mut idle = connect_from("127.0.0.1", running.address).await;
    assert!(request(&mut idle, "").await.contains("got 0"));
    let mut waiting = connect_from("127.0.0.1", running.address).await;
    waiting
        .write_all(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    eventually("the request to be in flight", || {
        WAITING.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    running.stop.send(true).unwrap();
    // The idle connection is closed at once; new ones are not accepted.
    assert_eq!(until_closed(&mut idle).await, "");
    let mut refused = false;
    for _ in 0..300 {
        if TcpStream::connect(running.address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "still accepting after shutdown");
    assert!(!running.task.is_finished(), "a request is still in flight");
    running.release.send(true).unwrap();
    let answer = until_closed(&mut waiting).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(Duration::from_secs(30), running.task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn peers_share_by_address_and_ipv6_by_its_64() {
    use std::net::IpAddr;
    let key = |text: &str| super::peer_key(text.parse::<IpAddr>().unwrap());
    assert_eq!(key("10.0.0.1"), key("::ffff:10.0.0.1"));
    assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
    assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_eq!(ServerLimits::default().max_connections_per_peer, 1024);
    assert_eq!(ServerLimits::default_share(2), 1);
}

mod http2;
mod http2_attacks;
mod http2_protocol;
