//! The gRPC client connection against weir's own HTTP/2 listener (whole calls: trailers, large
//! bodies both ways past every window, many calls at once, cancellation) and against a peer
//! written frame by frame, for what a listener that behaves does not do: refusals, resets,
//! GOAWAY, answers too large or out of order, a dynamic-table answer, a PING left unanswered,
//! a peer that breaks the protocol.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::server::{Http2Body, MinRateBody, Server};

fn settings() -> Settings {
    Settings {
        stream_window: 1 << 20,
        connection_window: 4 << 20,
        keep_alive_interval: Duration::from_secs(20),
        keep_alive_timeout: Duration::from_secs(10),
    }
}

fn grpc_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("te", HeaderValue::from_static("trailers"));
    headers.insert("x-weir-version", HeaderValue::from_static("v2"));
    // Never sent: HTTP/2 forbids it.
    headers.insert("connection", HeaderValue::from_static("keep-alive"));
    headers
}

/// weir's gRPC listener with a service that answers a call with its body reversed, the
/// metadata it saw in `x-seen`, and `grpc-status: 0` in trailers. `/hold` never answers.
async fn listener() -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let service = tower::service_fn(|request: Request<MinRateBody<Http2Body>>| async move {
        let seen = format!(
            "{} {} {}",
            request.uri(),
            request.headers().contains_key("connection"),
            request
                .headers()
                .get("x-weir-version")
                .map_or("-", |v| v.to_str().unwrap_or("?")),
        );
        if request.uri().path() == "/hold" {
            std::future::pending::<()>().await;
        }
        let mut body = request
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        body.reverse();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from(body))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut response = Response::new(StreamBody::new(futures_util::stream::iter(frames)));
        response
            .headers_mut()
            .insert("x-seen", HeaderValue::from_str(&seen).unwrap());
        Ok::<_, Infallible>(response)
    });
    let limits = crate::server::tests::limits();
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        Server::new(limits)
            .serve_http2(listener, service, stopped)
            .await;
    });
    (address, stop)
}

async fn connect(address: SocketAddr) -> Connection {
    Connection::handshake(TcpStream::connect(address).await.unwrap(), settings())
}

#[tokio::test]
async fn a_call_round_trips_with_its_metadata_data_and_trailers() {
    let (address, _stop) = listener().await;
    let connection = connect(address).await;
    let answer = connection
        .call(
            "replica:9000",
            "/svc/Method",
            &grpc_headers(),
            Bytes::from_static(b"abc"),
            1024,
        )
        .await
        .unwrap();
    assert_eq!(answer.head.status, StatusCode::OK);
    assert_eq!(answer.data, Bytes::from_static(b"cba"));
    assert_eq!(
        answer.head.headers["x-seen"], "http://replica:9000/svc/Method false v2",
        "the path and authority arrive, connection-specific fields do not"
    );
    assert_eq!(answer.trailers.unwrap()["grpc-status"], "0");
    // A call without a message ends its stream with its headers.
    let empty = connection
        .call(
            "replica:9000",
            "/svc/Empty",
            &grpc_headers(),
            Bytes::new(),
            1024,
        )
        .await
        .unwrap();
    assert!(empty.data.is_empty());
    assert_eq!(connection.calls(), 0);
    assert!(!connection.is_closed());
}

#[tokio::test]
async fn large_messages_cross_both_ways_past_every_window() {
    let (address, _stop) = listener().await;
    let connection = connect(address).await;
    // Past the 64 KiB windows a connection starts with, the listener's 1 MiB stream window and
    // this client's: the request waits for WINDOW_UPDATEs, the answer needs them given back.
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut expected = body.clone();
    expected.reverse();
    let answer = connection
        .call(
            "r",
            "/svc/Large",
            &grpc_headers(),
            Bytes::from(body),
            4 << 20,
        )
        .await
        .unwrap();
    assert_eq!(answer.data.len(), expected.len());
    assert!(answer.data == expected, "the answer's bytes came in order");
}

#[tokio::test]
async fn many_calls_share_one_connection_and_each_gets_its_own_answer() {
    let (address, _stop) = listener().await;
    let connection = connect(address).await;
    let calls = (0..64).map(|i| {
        let connection = &connection;
        async move {
            let body = Bytes::from(format!("call {i:02} ").repeat(i + 1));
            let answer = connection
                .call("r", "/svc/M", &grpc_headers(), body.clone(), 1 << 20)
                .await
                .unwrap();
            let mut expected = body.to_vec();
            expected.reverse();
            assert_eq!(answer.data, expected);
        }
    });
    futures_util::future::join_all(calls).await;
    assert_eq!(connection.calls(), 0);
}

#[tokio::test]
async fn an_answer_past_the_limit_fails_that_call_alone() {
    let (address, _stop) = listener().await;
    let connection = connect(address).await;
    let failed = connection
        .call(
            "r",
            "/svc/M",
            &grpc_headers(),
            Bytes::from(vec![1u8; 100_000]),
            50_000,
        )
        .await
        .unwrap_err();
    assert_eq!(failed, CallError::AnswerTooLarge(50_000));
    let answer = connection
        .call(
            "r",
            "/svc/M",
            &grpc_headers(),
            Bytes::from_static(b"ok"),
            50_000,
        )
        .await
        .unwrap();
    assert_eq!(answer.data, Bytes::from_static(b"ko"));
}

#[tokio::test]
async fn a_call_dropped_before_its_answer_is_cancelled_and_the_connection_goes_on() {
    let (address, _stop) = listener().await;
    let connection = connect(address).await;
    let headers = grpc_headers();
    let held = connection.call("r", "/hold", &headers, Bytes::from_static(b"x"), 1024);
    tokio::select! {
        _ = held => panic!("/hold never answers"),
        () = tokio::task::yield_now() => {}
    }
    assert_eq!(connection.calls(), 0, "the dropped call is forgotten");
    let answer = connection
        .call(
            "r",
            "/svc/M",
            &grpc_headers(),
            Bytes::from_static(b"12"),
            1024,
        )
        .await
        .unwrap();
    assert_eq!(answer.data, Bytes::from_static(b"21"));
}

/// A peer written frame by frame: it reads the client's preface and SETTINGS and sends its own.
struct Peer {
    io: TcpStream,
}

type RawFrame = (u8, u8, u32, Vec<u8>);

impl Peer {
    async fn pair(settings: Settings) -> (Connection, Peer) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let connection = Connection::handshake(client, settings);
        let (io, _) = listener.accept().await.unwrap();
        let mut peer = Peer { io };
        let mut preface = [0u8; 24];
        peer.io.read_exact(&mut preface).await.unwrap();
        assert_eq!(&preface[..], frame::PREFACE);
        let (kind, flags, _, payload) = peer.read_frame().await;
        assert_eq!((kind, flags), (kind::SETTINGS, 0));
        assert!(
            payload.chunks(6).any(|s| s == [0, 2, 0, 0, 0, 0]),
            "the client says ENABLE_PUSH 0"
        );
        let mut out = Vec::new();
        frame::settings(&mut out, &[]);
        frame::frame(&mut out, kind::SETTINGS, flag::ACK, 0, &[]);
        peer.send(&out).await;
        (connection, peer)
    }

    async fn read_frame(&mut self) -> RawFrame {
        let mut header = [0u8; frame::HEADER_LEN];
        self.io.read_exact(&mut header).await.unwrap();
        let head = Head::parse(&header);
        let mut payload = vec![0u8; head.length];
        self.io.read_exact(&mut payload).await.unwrap();
        (head.kind, head.flags, head.stream, payload)
    }

    /// Frames until one of `kind`, which it returns.
    async fn until(&mut self, wanted: u8) -> RawFrame {
        loop {
            let frame = self.read_frame().await;
            if frame.0 == wanted {
                return frame;
            }
        }
    }

    /// The next call's stream id, its request read to the end.
    async fn call(&mut self) -> u32 {
        let (_, flags, id, _) = self.until(kind::HEADERS).await;
        let mut ended = flags & flag::END_STREAM != 0;
        while !ended {
            let (kind, flags, stream, _) = self.read_frame().await;
            ended = kind == kind::DATA && stream == id && flags & flag::END_STREAM != 0;
        }
        id
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    async fn send_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut out = Vec::new();
        frame::frame(&mut out, kind, flags, stream, payload);
        self.send(&out).await;
    }

    /// `:status 200` and `content-type: application/grpc`.
    async fn answer_head(&mut self, stream: u32, end_stream: bool) {
        let mut block = BytesMut::new();
        hpack::encode_status(&mut block, 200);
        hpack::encode_field(&mut block, b"content-type", b"application/grpc");
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        self.send_frame(kind::HEADERS, flags, stream, &block).await;
    }
}

async fn call(connection: &Connection) -> Result<Answer, CallError> {
    let headers = HeaderMap::new();
    connection
        .call("r", "/svc/M", &headers, Bytes::from_static(b"hello"), 1024)
        .await
}

#[tokio::test]
async fn a_refused_call_is_unsent_and_another_reset_is_failed() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let refused = tokio::spawn(async move {
        let first = call(&connection).await;
        let second = call(&connection).await;
        (first, second, connection)
    });
    let id = peer.call().await;
    peer.send_frame(
        kind::RST_STREAM,
        0,
        id,
        &(Reason::RefusedStream as u32).to_be_bytes(),
    )
    .await;
    let id = peer.call().await;
    peer.send_frame(
        kind::RST_STREAM,
        0,
        id,
        &(Reason::InternalError as u32).to_be_bytes(),
    )
    .await;
    let (first, second, connection) = refused.await.unwrap();
    assert_eq!(
        first.unwrap_err(),
        CallError::Unsent("the peer refused the call unprocessed".to_owned())
    );
    assert_eq!(
        second.unwrap_err(),
        CallError::Failed("the peer reset the call (INTERNAL_ERROR)".to_owned())
    );
    assert!(
        !connection.is_closed(),
        "a reset ends a call, not the connection"
    );
}

#[tokio::test]
async fn goaway_fails_calls_past_its_last_stream_as_unsent_and_takes_no_new_ones() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let calls = tokio::spawn(async move {
        let (taken, untaken) = tokio::join!(call(&connection), call(&connection));
        (taken, untaken, connection)
    });
    let first = peer.call().await;
    let second = peer.call().await;
    assert!(second > first);
    let mut goaway = Vec::new();
    frame::goaway(&mut goaway, first, Reason::NoError);
    peer.send(&goaway).await;
    peer.answer_head(first, false).await;
    peer.send_frame(kind::DATA, flag::END_STREAM, first, b"fine")
        .await;
    let (taken, untaken, connection) = calls.await.unwrap();
    assert_eq!(taken.unwrap().data, Bytes::from_static(b"fine"));
    assert_eq!(
        untaken.unwrap_err(),
        CallError::Unsent("the peer is going away (NO_ERROR)".to_owned())
    );
    assert!(connection.is_closed());
    assert!(matches!(call(&connection).await, Err(CallError::Unsent(_))));
}

#[tokio::test]
async fn a_connection_closed_under_a_call_fails_it_and_is_closed() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let pending = tokio::spawn(async move { (call(&connection).await, connection) });
    let id = peer.call().await;
    peer.answer_head(id, false).await;
    drop(peer);
    let (failed, connection) = pending.await.unwrap();
    assert_eq!(
        failed.unwrap_err(),
        CallError::Failed("the peer closed the connection".to_owned())
    );
    assert!(connection.is_closed());
    assert!(matches!(call(&connection).await, Err(CallError::Unsent(_))));
}

/// A call queued behind another's large request when the connection fails never reached the
/// socket: it is Unsent (a router may send it elsewhere); the call whose bytes left is Failed.
#[tokio::test]
async fn a_call_still_queued_when_the_connection_fails_is_unsent() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    // Windows wide enough that the whole first request goes into the output at once.
    let mut out = Vec::new();
    frame::window_update(&mut out, 0, 0x7fff_ffff - 65_535);
    frame::settings(&mut out, &[(setting::INITIAL_WINDOW_SIZE, 0x7fff_ffff)]);
    peer.send(&out).await;
    // Two ACKs: of the peer's first SETTINGS, and of these (after the WINDOW_UPDATE).
    for _ in 0..2 {
        while peer.until(kind::SETTINGS).await.1 & flag::ACK == 0 {}
    }
    let connection = std::sync::Arc::new(connection);
    // Larger than any loopback socket buffers here, and the peer reads none of it.
    let large = Bytes::from(vec![7u8; 64 << 20]);
    let first = tokio::spawn({
        let connection = connection.clone();
        async move {
            connection
                .call("r", "/svc/M", &HeaderMap::new(), large, 1024)
                .await
        }
    });
    peer.until(kind::HEADERS).await;
    let second = tokio::spawn({
        let connection = connection.clone();
        async move { call(&connection).await }
    });
    // Both calls open, the second's frames behind the first's in the output.
    while connection.shared.lock().streams.len() < 2 {
        tokio::task::yield_now().await;
    }
    drop(peer);
    let first = first.await.unwrap().unwrap_err();
    assert!(matches!(first, CallError::Failed(_)), "{first:?}");
    let second = second.await.unwrap().unwrap_err();
    assert!(matches!(second, CallError::Unsent(_)), "{second:?}");
}

#[tokio::test]
async fn answers_in_huffman_and_the_dynamic_table_decode_and_trailers_only_answers_end_calls() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let calls = tokio::spawn(async move {
        let first = call(&connection).await.unwrap();
        let second = call(&connection).await.unwrap();
        let third = call(&connection).await.unwrap();
        (first, second, third)
    });
    // RFC 7541 C.6.1: Huffman-coded literals, each added to the dynamic table...
    let first_block = hpack::tests::hex(
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 \
         66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
    );
    // ...then `:status 200` from the static table, `location` (62) and `cache-control` (64)
    // from the dynamic one.
    let second_block = [0x88, 0xbe, 0xc0];
    let id = peer.call().await;
    peer.send_frame(kind::HEADERS, flag::END_HEADERS, id, &first_block)
        .await;
    peer.send_frame(kind::DATA, flag::END_STREAM, id, b"1")
        .await;
    let id = peer.call().await;
    peer.send_frame(kind::HEADERS, flag::END_HEADERS, id, &second_block)
        .await;
    let mut trailers = BytesMut::new();
    hpack::encode_field(&mut trailers, b"grpc-status", b"0");
    peer.send_frame(kind::DATA, 0, id, b"2").await;
    peer.send_frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        id,
        &trailers,
    )
    .await;
    let id = peer.call().await;
    peer.answer_head(id, true).await;
    let (first, second, third) = calls.await.unwrap();
    assert_eq!(first.head.status, StatusCode::FOUND);
    assert_eq!(first.head.headers["date"], "Mon, 21 Oct 2013 20:13:21 GMT");
    assert_eq!(first.head.headers["location"], "https://www.example.com");
    assert_eq!(second.head.status, StatusCode::OK);
    assert_eq!(second.head.headers["location"], "https://www.example.com");
    assert_eq!(second.head.headers["cache-control"], "private");
    assert_eq!(second.data, Bytes::from_static(b"2"));
    assert_eq!(second.trailers.unwrap()["grpc-status"], "0");
    assert!(third.data.is_empty() && third.trailers.is_none());
    assert_eq!(third.head.headers["content-type"], "application/grpc");
}

#[tokio::test]
async fn data_before_headers_fails_the_call_and_resets_its_stream() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let pending = tokio::spawn(async move { call(&connection).await });
    let id = peer.call().await;
    peer.send_frame(kind::DATA, 0, id, b"early").await;
    let (_, _, stream, code) = peer.until(kind::RST_STREAM).await;
    assert_eq!(
        (stream, code),
        (id, (Reason::ProtocolError as u32).to_be_bytes().to_vec())
    );
    assert_eq!(
        pending.await.unwrap().unwrap_err(),
        CallError::Failed("the answer's data came before its headers".to_owned())
    );
}

#[tokio::test]
async fn an_answer_past_the_limit_is_cancelled_on_the_wire() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let pending = tokio::spawn(async move {
        let headers = HeaderMap::new();
        connection
            .call("r", "/svc/M", &headers, Bytes::from_static(b"x"), 10)
            .await
    });
    let id = peer.call().await;
    peer.answer_head(id, false).await;
    peer.send_frame(kind::DATA, 0, id, &[0u8; 11]).await;
    let (_, _, stream, code) = peer.until(kind::RST_STREAM).await;
    assert_eq!(
        (stream, code),
        (id, (Reason::Cancel as u32).to_be_bytes().to_vec())
    );
    assert_eq!(
        pending.await.unwrap().unwrap_err(),
        CallError::AnswerTooLarge(10)
    );
}

#[tokio::test]
async fn a_call_dropped_before_its_answer_is_reset_with_cancel() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let pending = tokio::spawn(async move { call(&connection).await });
    let id = peer.call().await;
    pending.abort();
    let (_, _, stream, code) = peer.until(kind::RST_STREAM).await;
    assert_eq!(
        (stream, code),
        (id, (Reason::Cancel as u32).to_be_bytes().to_vec())
    );
}

#[tokio::test]
async fn a_peer_that_sets_its_header_table_size_gets_a_size_update_in_the_next_block() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let mut out = Vec::new();
    frame::settings(&mut out, &[(setting::HEADER_TABLE_SIZE, 0)]);
    peer.send(&out).await;
    // The client's ACKs of the peer's first SETTINGS and of this one.
    for _ in 0..2 {
        while peer.until(kind::SETTINGS).await.1 & flag::ACK == 0 {}
    }
    let calls = tokio::spawn(async move {
        let _ = tokio::join!(call(&connection), call(&connection));
    });
    let (_, _, _, first) = peer.until(kind::HEADERS).await;
    let (_, _, _, second) = peer.until(kind::HEADERS).await;
    assert_eq!(
        first[0], 0x20,
        "a size update to 0 starts the first block after the change"
    );
    assert_ne!(second[0] & 0xe0, 0x20, "and only that one");
    calls.abort();
}

#[tokio::test]
async fn an_answer_whole_before_its_request_closes_the_stream_with_a_reset() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    // More than the 64 KiB window a stream starts with, which this peer never raises.
    let pending = tokio::spawn(async move {
        let headers = HeaderMap::new();
        connection
            .call(
                "r",
                "/svc/M",
                &headers,
                Bytes::from(vec![0u8; 100_000]),
                1024,
            )
            .await
    });
    let (_, _, id, _) = peer.until(kind::HEADERS).await;
    // A trailers-only refusal, as a server answers a message it will not read.
    peer.answer_head(id, true).await;
    let (_, _, stream, code) = peer.until(kind::RST_STREAM).await;
    assert_eq!(
        (stream, code),
        (id, (Reason::Cancel as u32).to_be_bytes().to_vec())
    );
    assert_eq!(pending.await.unwrap().unwrap().head.status, StatusCode::OK);
}

#[tokio::test]
async fn a_peer_that_breaks_the_protocol_gets_goaway_and_its_calls_fail() {
    let (connection, mut peer) = Peer::pair(settings()).await;
    let pending = tokio::spawn(async move { (call(&connection).await, connection) });
    peer.call().await;
    // PUSH_PROMISE, though the client said ENABLE_PUSH 0.
    peer.send_frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2])
        .await;
    let (_, _, _, payload) = peer.until(kind::GOAWAY).await;
    assert_eq!(payload[4..8], (Reason::ProtocolError as u32).to_be_bytes());
    let (failed, connection) = pending.await.unwrap();
    assert_eq!(
        failed.unwrap_err(),
        CallError::Failed("the peer broke the HTTP/2 protocol (PROTOCOL_ERROR)".to_owned())
    );
    assert!(connection.is_closed());
}

#[tokio::test]
async fn pings_are_answered_and_a_peer_that_answers_none_is_dropped() {
    let quick = Settings {
        keep_alive_interval: Duration::from_millis(50),
        keep_alive_timeout: Duration::from_millis(100),
        ..settings()
    };
    let (connection, mut peer) = Peer::pair(quick).await;
    peer.send_frame(kind::PING, 0, 0, b"12345678").await;
    let (_, flags, _, payload) = peer.until(kind::PING).await;
    // The client's own keepalive PING may come first; the ACK is the one with the flag.
    let (flags, payload) = if flags & flag::ACK != 0 {
        (flags, payload)
    } else {
        let (_, flags, _, payload) = peer.until(kind::PING).await;
        (flags, payload)
    };
    assert_eq!((flags, &payload[..]), (flag::ACK, &b"12345678"[..]));
    // The peer now answers nothing: the connection ends, and says so to callers.
    let mut rest = Vec::new();
    let _ = peer.io.read_to_end(&mut rest).await;
    assert!(connection.is_closed());
    assert_eq!(
        call(&connection).await.unwrap_err(),
        CallError::Unsent("the peer did not answer a PING within 100 ms".to_owned())
    );
}
