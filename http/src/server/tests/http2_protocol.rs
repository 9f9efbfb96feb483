//! The HTTP/2 listener (the gRPC ports) held to the protocol, frame by frame: flow control both
//! ways, request trailers, malformed requests (a stream error: that call alone is reset),
//! connection errors (GOAWAY with RFC 9113's code, the connection closed and counted), PING,
//! the client's GOAWAY, paced cancellations against the reset debt, and many calls at once on
//! one connection. The frames are written by hand (`http2_attacks`' raw client), so that every
//! frame the server sends back can be checked; hyper's client where a whole, well-behaved
//! exchange is the point.
//!
//! "Nothing more comes" is never waited out: a PING's ACK marks the point by which the server
//! has handled every frame sent before it and run the calls they started, so what it has not
//! sent by then it was holding back ([`Peer::settle`]).

use std::collections::HashMap;
use std::time::Duration;

use hyper::StatusCode;
use tokio::io::AsyncWriteExt;

use super::http2::{answer, client};
use super::http2_attacks::{
    call_headers, frame, hpack_integer, literal, Frame, RawClient, ACK, CANCEL, COMPRESSION_ERROR,
    CONTINUATION, DATA, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM, GOAWAY, HEADERS, PING, PREFACE,
    RST_STREAM, SETTINGS,
};
use super::{bytes_until_closed, connect_from, limits, start_speaking, Running};
use crate::hpack;

// What the attack tests do not use of RFC 9113 (§6.9, §7, §6.5.2).
const PRIORITY: u8 = 0x2;
const WINDOW_UPDATE: u8 = 0x8;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const STREAM_CLOSED: u32 = 0x5;
const FRAME_SIZE_ERROR: u32 = 0x6;
const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_FRAME_SIZE: u16 = 0x5;

/// The listener's receive windows (its SETTINGS and first WINDOW_UPDATE), the largest frame
/// it takes and sends by default, and the send window every connection starts with.
const STREAM_WINDOW: usize = 1 << 20;
const CONNECTION_WINDOW: usize = 4 << 20;
const MAX_FRAME: usize = 16_384;
const DEFAULT_WINDOW: usize = 65_535;
/// Cancellations a connection may owe before it is cut off.
const MAX_RESET_DEBT: u32 = 100;

fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in values {
        payload.extend(id.to_be_bytes());
        payload.extend(value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

fn goaway(last_stream: u32, code: u32) -> Vec<u8> {
    let mut payload = last_stream.to_be_bytes().to_vec();
    payload.extend(code.to_be_bytes());
    frame(GOAWAY, 0, 0, &payload)
}

/// A header block of literal fields, names written out (none from the static table): any list
/// of fields, in any order, however wrong.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        literal(0, name, value.as_bytes(), &mut block);
    }
    block
}

/// The fields of a good call to `/echo`, to build bad ones from.
const METHOD: (&str, &str) = (":method", "POST");
const SCHEME: (&str, &str) = (":scheme", "http");
const PATH: (&str, &str) = (":path", "/echo");
const AUTHORITY: (&str, &str) = (":authority", "x");

/// HEADERS opening `POST http://x{path}` on `stream`; `end_stream`: the call has no body.
fn open(stream: u32, path: &str, end_stream: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &call_headers(path))
}

/// `body` as DATA frames of at most 16 KiB on `stream`, the last ending the request when `end`.
fn data(stream: u32, body: &[u8], end: bool) -> Vec<u8> {
    let end = if end { END_STREAM } else { 0 };
    if body.is_empty() {
        return frame(DATA, end, stream, &[]);
    }
    let mut out = Vec::new();
    let mut chunks = body.chunks(MAX_FRAME).peekable();
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() { end } else { 0 };
        out.extend(frame(DATA, flags, stream, chunk));
    }
    out
}

/// A whole call: its HEADERS, then `body`, ending the request.
fn call(stream: u32, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = open(stream, path, false);
    out.extend(data(stream, body, true));
    out
}

/// What the server sent on one stream.
#[derive(Debug, Default)]
struct Heard {
    /// The answer's `:status`, once its HEADERS came.
    status: Option<u16>,
    body: Vec<u8>,
    /// Each DATA frame's length and whether it ended the stream, in order.
    frames: Vec<(usize, bool)>,
    /// END_STREAM came, on HEADERS or DATA.
    ended: bool,
    /// RST_STREAM came, with this code.
    reset: Option<u32>,
    /// Receive window the server gave back on the stream.
    window_given: u64,
}

impl Heard {
    fn is_over(&self) -> bool {
        self.ended || self.reset.is_some()
    }
}

/// How a call ended, as its client sees it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Answered(u16, String),
    Reset(u32),
}

/// A raw client that keeps what the server says, stream by stream.
struct Peer {
    raw: RawClient,
    streams: HashMap<u32, Heard>,
    /// Receive window the server gave back on the connection (past the first raise).
    window_given: u64,
    /// The server's GOAWAY: its last stream and error code.
    goaway: Option<(u32, u32)>,
    pings: u64,
}

impl Peer {
    /// A connection from `from` that has exchanged SETTINGS with the server, and been given
    /// the server's whole connection window (4 MiB, past the default 65,535). Its frames go
    /// out as they are written (TCP_NODELAY): the tests wait on round trips, and Nagle's
    /// algorithm against delayed ACKs would make each one 40 ms.
    async fn connect(from: &str, running: &Running) -> Peer {
        let raw = RawClient::connect(from, running).await;
        raw.writer.as_ref().set_nodelay(true).unwrap();
        let mut peer = Peer {
            raw,
            streams: HashMap::new(),
            window_given: 0,
            goaway: None,
            pings: 0,
        };
        peer.settle().await;
        assert_eq!(
            peer.window_given,
            (CONNECTION_WINDOW - DEFAULT_WINDOW) as u64,
            "the connection's window as the server opens it"
        );
        peer.window_given = 0;
        peer
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.raw.send(bytes).await.unwrap();
    }

    fn heard(&mut self, stream: u32) -> &mut Heard {
        self.streams.entry(stream).or_default()
    }

    /// The server's next frame, once kept; `None` once it closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        let frame = self.raw.next().await?;
        let end = frame.flags & END_STREAM != 0;
        match frame.kind {
            HEADERS => {
                assert!(
                    frame.flags & END_HEADERS != 0,
                    "an answer's headers continue"
                );
                let status = status_of(&frame.payload);
                let heard = self.heard(frame.stream);
                heard.status = heard.status.or(status);
                heard.ended |= end;
            }
            DATA => {
                let heard = self.heard(frame.stream);
                heard.body.extend_from_slice(&frame.payload);
                heard.frames.push((frame.payload.len(), end));
                heard.ended |= end;
            }
            RST_STREAM => self.heard(frame.stream).reset = Some(frame.error_code()),
            WINDOW_UPDATE => {
                let increment = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                match frame.stream {
                    0 => self.window_given += u64::from(increment),
                    stream => self.heard(stream).window_given += u64::from(increment),
                }
            }
            GOAWAY => {
                let last = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                self.goaway = Some((last, frame.error_code()));
            }
            _ => {}
        }
        Some(frame)
    }

    /// Reads until `stream` is answered in full or reset; fails the test if the connection
    /// goes away first.
    async fn until_over(&mut self, stream: u32) -> Outcome {
        while !self.heard(stream).is_over() {
            let next = self.next().await;
            assert!(
                next.is_some() && self.goaway.is_none(),
                "the connection ended before stream {stream} did: {:?}",
                self.goaway
            );
        }
        let heard = self.heard(stream);
        match heard.reset {
            Some(code) if !heard.ended => Outcome::Reset(code),
            _ => Outcome::Answered(
                heard.status.expect("an answer without :status"),
                String::from_utf8_lossy(&heard.body).into_owned(),
            ),
        }
    }

    /// Reads until `stream` has had at least `bytes` of answer data.
    async fn until_data(&mut self, stream: u32, bytes: usize) {
        while self.heard(stream).body.len() < bytes {
            assert!(
                self.next().await.is_some(),
                "closed before {bytes} bytes on stream {stream}"
            );
        }
    }

    /// Sends a PING and reads up to its ACK (or to the end of the connection): by then the
    /// server has handled every frame sent before the PING, run the calls those started as
    /// far as they go, and sent what they had to send. Returns the frames read.
    async fn settle(&mut self) -> Vec<Frame> {
        self.pings += 1;
        let payload = self.pings.to_be_bytes();
        self.send(&frame(PING, 0, 0, &payload)).await;
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            if frame.kind == PING && frame.flags & ACK != 0 && frame.payload == payload {
                break;
            }
            frames.push(frame);
        }
        frames
    }

    /// The server's GOAWAY (last stream, error code), and the connection closed after it.
    async fn goaway_then_closed(&mut self) -> (u32, u32) {
        while self.goaway.is_none() {
            assert!(
                self.next().await.is_some(),
                "the server closed the connection without GOAWAY"
            );
        }
        while self.next().await.is_some() {}
        self.goaway.unwrap()
    }

    /// Opens a call whose handler then waits for its body, makes sure the handler was reached
    /// (and the connection is still up), and cancels it.
    async fn cancel_one(&mut self, stream: u32) {
        self.send(&open(stream, "/echo", false)).await;
        self.settle().await;
        assert_eq!(
            self.goaway, None,
            "cut off before cancelling stream {stream}"
        );
        assert_eq!(self.heard(stream).reset, None);
        self.send(&rst_stream(stream, CANCEL)).await;
    }

    /// A call to `/echo` answered in full.
    async fn complete_one(&mut self, stream: u32) {
        self.send(&call(stream, "/echo", b"done")).await;
        assert_eq!(
            self.until_over(stream).await,
            Outcome::Answered(200, "got 4".to_owned())
        );
    }
}

/// `:status` of an answer's header block.
fn status_of(block: &[u8]) -> Option<u16> {
    let mut status = None;
    hpack::Decoder::new(4096)
        .decode(block, |name, value| {
            if name == b":status" {
                status = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
        })
        .expect("the server's header block decodes");
    status
}

/// Frames back from the bytes they came as.
fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        assert!(bytes.len() >= 9 + length, "a frame cut short: {bytes:?}");
        frames.push(Frame {
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes(bytes[5..9].try_into().unwrap()) & !(1 << 31),
            payload: bytes[9..9 + length].to_vec(),
        });
        bytes = &bytes[9 + length..];
    }
    assert!(bytes.is_empty(), "trailing bytes: {bytes:?}");
    frames
}

/// Everything the server sends, as frames, on a connection whose client sends `hello` and
/// nothing else, until the server closes it.
async fn frames_until_closed(running: &Running, hello: &[u8]) -> Vec<Frame> {
    let mut stream = connect_from("127.0.0.2", running.address).await;
    stream.write_all(hello).await.unwrap();
    parse_frames(&bytes_until_closed(&mut stream).await)
}

/// An answer is held to the client's stream window: with SETTINGS_INITIAL_WINDOW_SIZE 1,000,
/// exactly 1,000 bytes of a 300,000-byte answer come before any WINDOW_UPDATE, then exactly as
/// much as each WINDOW_UPDATE allows, in frames of at most 16 KiB, the last one ending the
/// stream. A server that overran the window would have the call reset by any real client.
#[tokio::test]
async fn an_answer_is_sent_no_faster_than_the_clients_stream_window() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let mut hello = settings(&[(INITIAL_WINDOW_SIZE, 1000)]);
    hello.extend(window_update(0, 1 << 20));
    hello.extend(open(1, "/large/300000", true));
    peer.send(&hello).await;
    peer.until_data(1, 1000).await;
    peer.settle().await;
    assert_eq!(peer.heard(1).body.len(), 1000, "past the stream window");
    assert!(!peer.heard(1).ended);
    peer.send(&window_update(1, 100_000)).await;
    peer.until_data(1, 101_000).await;
    peer.settle().await;
    assert_eq!(peer.heard(1).body.len(), 101_000, "past the updated window");
    peer.send(&window_update(1, 199_000)).await;
    assert_eq!(
        peer.until_over(1).await,
        Outcome::Answered(200, "x".repeat(300_000))
    );
    let heard = peer.heard(1);
    assert!(heard.frames.iter().all(|&(length, _)| length <= MAX_FRAME));
    let ends: Vec<bool> = heard.frames.iter().map(|&(_, end)| end).collect();
    assert_eq!(ends.iter().filter(|&&end| end).count(), 1);
    assert_eq!(ends.last(), Some(&true), "the last DATA ends the stream");
}

/// Answers on two streams share the connection's send window (65,535 until the client raises
/// it): with wide stream windows, together they send exactly 65,535 bytes, then the rest once
/// the connection's window is raised by exactly what is missing.
#[tokio::test]
async fn answers_on_all_streams_share_the_connection_window() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let mut hello = settings(&[(INITIAL_WINDOW_SIZE, 1 << 20)]);
    hello.extend(open(1, "/large/100000", true));
    hello.extend(open(3, "/large/100000", true));
    peer.send(&hello).await;
    let sent = |peer: &mut Peer| peer.heard(1).body.len() + peer.heard(3).body.len();
    while sent(&mut peer) < DEFAULT_WINDOW {
        assert!(peer.next().await.is_some(), "closed");
    }
    peer.settle().await;
    assert_eq!(
        sent(&mut peer),
        DEFAULT_WINDOW,
        "past the connection window"
    );
    peer.send(&window_update(0, (200_000 - DEFAULT_WINDOW) as u32))
        .await;
    for stream in [1, 3] {
        assert_eq!(
            peer.until_over(stream).await,
            Outcome::Answered(200, "x".repeat(100_000))
        );
    }
}

/// A client that raises SETTINGS_MAX_FRAME_SIZE (to 65,536) gets larger DATA frames, and never
/// one larger than it allows.
#[tokio::test]
async fn a_larger_max_frame_size_is_used_and_never_exceeded() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let mut hello = settings(&[(MAX_FRAME_SIZE, 65_536), (INITIAL_WINDOW_SIZE, 1 << 20)]);
    hello.extend(window_update(0, 1 << 20));
    hello.extend(open(1, "/large/300000", true));
    peer.send(&hello).await;
    assert_eq!(
        peer.until_over(1).await,
        Outcome::Answered(200, "x".repeat(300_000))
    );
    let largest = peer.heard(1).frames.iter().map(|&(length, _)| length).max();
    assert!(
        largest.is_some_and(|largest| largest > MAX_FRAME && largest <= 65_536),
        "{largest:?}"
    );
}

/// A request body larger than the connection's receive window (6 MiB against 4 MiB) arrives
/// whole: the server gives the windows back as the handler reads, so a large tensor is never
/// stuck.
#[tokio::test]
async fn a_body_larger_than_the_connection_window_arrives_whole() {
    let running = start_speaking(limits(), true).await;
    let (mut sender, _connection) = client("127.0.0.1", &running).await;
    let body = "x".repeat(6 << 20);
    let answered =
        tokio::time::timeout(Duration::from_secs(60), answer(&mut sender, "/echo", &body))
            .await
            .expect("the body stalled: windows not given back");
    assert_eq!(answered, (StatusCode::OK, "got 6291456".to_owned()));
}

/// A call whose handler does not read is given no window back, and data past its stream's
/// window (1 MiB) resets that stream alone with FLOW_CONTROL_ERROR. The bytes it held are then
/// given back to the connection (else every such reset would shrink the connection's window
/// for good), and the connection goes on.
#[tokio::test]
async fn data_past_the_stream_window_resets_the_stream_and_frees_its_share() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let mut flood = open(1, "/hold", false);
    flood.extend(data(1, &vec![7u8; STREAM_WINDOW], false));
    peer.send(&flood).await;
    peer.settle().await;
    assert_eq!(peer.heard(1).reset, None, "reset within its window");
    assert_eq!(
        peer.heard(1).window_given,
        0,
        "window given for unread data"
    );
    assert_eq!(peer.window_given, 0, "window given for unread data");
    peer.send(&data(1, b"!", false)).await;
    assert_eq!(peer.until_over(1).await, Outcome::Reset(FLOW_CONTROL_ERROR));
    while peer.window_given < STREAM_WINDOW as u64 + 1 {
        assert!(peer.next().await.is_some(), "closed");
    }
    assert_eq!(peer.window_given, STREAM_WINDOW as u64 + 1);
    peer.send(&call(3, "/echo", b"after")).await;
    assert_eq!(
        peer.until_over(3).await,
        Outcome::Answered(200, "got 5".to_owned())
    );
    assert_eq!(running.server.stats().protocol_errors, 0);
}

/// Data past the connection's receive window (4 MiB, here held by four calls that do not read,
/// so none of it is given back) ends the connection with FLOW_CONTROL_ERROR: the server buffers
/// at most its window, however many streams the data is spread over.
#[tokio::test]
async fn data_past_the_connection_window_ends_the_connection() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let streams = (CONNECTION_WINDOW / STREAM_WINDOW) as u32;
    for n in 0..streams {
        let mut flood = open(2 * n + 1, "/hold", false);
        flood.extend(data(2 * n + 1, &vec![7u8; STREAM_WINDOW], false));
        peer.send(&flood).await;
    }
    let frames = peer.settle().await;
    assert!(
        frames.iter().all(|frame| frame.kind != RST_STREAM),
        "{frames:?}"
    );
    assert_eq!((peer.goaway, peer.window_given), (None, 0));
    let last = 2 * streams + 1;
    let mut over = open(last, "/hold", false);
    over.extend(data(last, b"!", false));
    peer.send(&over).await;
    assert_eq!(peer.goaway_then_closed().await, (last, FLOW_CONTROL_ERROR));
    assert_eq!(running.server.stats().protocol_errors, 1);
}

/// Stream-level flow-control errors (RFC 9113 §6.9): a stream WINDOW_UPDATE of 0, or one that
/// takes the stream's send window past 2^31-1, resets that stream alone (PROTOCOL_ERROR,
/// FLOW_CONTROL_ERROR); the connection goes on.
#[tokio::test]
async fn a_bad_stream_window_update_resets_that_stream_alone() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    peer.send(&open(1, "/echo", false)).await;
    peer.send(&window_update(1, 0)).await;
    assert_eq!(peer.until_over(1).await, Outcome::Reset(PROTOCOL_ERROR));
    peer.send(&open(3, "/echo", false)).await;
    peer.send(&window_update(3, 0x7fff_ffff)).await;
    assert_eq!(peer.until_over(3).await, Outcome::Reset(FLOW_CONTROL_ERROR));
    peer.complete_one(5).await;
    assert_eq!(running.server.stats().protocol_errors, 0);
}

/// Request trailers (HEADERS with END_STREAM after the body) end the request: the call is
/// answered. Trailers that do not end the stream are malformed (RFC 9113 §8.1): that call
/// alone is reset with PROTOCOL_ERROR, and the connection goes on.
#[tokio::test]
async fn trailers_end_a_request_and_trailers_that_do_not_end_it_reset_it() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let trailers = block(&[("x-checksum", "abc")]);
    let mut good = open(1, "/echo", false);
    good.extend(data(1, b"abc", false));
    good.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
    peer.send(&good).await;
    assert_eq!(
        peer.until_over(1).await,
        Outcome::Answered(200, "got 3".to_owned())
    );
    let mut bad = open(3, "/echo", false);
    bad.extend(data(3, b"abc", false));
    bad.extend(frame(HEADERS, END_HEADERS, 3, &trailers));
    peer.send(&bad).await;
    assert_eq!(peer.until_over(3).await, Outcome::Reset(PROTOCOL_ERROR));
    peer.complete_one(5).await;
    assert_eq!(running.server.stats().protocol_errors, 0);
}

/// Malformed requests (RFC 9113 §8.1.1, §8.2, §8.3.1) are stream errors: each is reset with
/// PROTOCOL_ERROR and never reaches the handler, and the next call on the same connection is
/// answered. A `te: trailers` header (what gRPC clients send) is not one of them.
#[tokio::test]
async fn malformed_requests_are_reset_alone() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let cases: [(&str, Vec<(&str, &str)>); 10] = [
        ("no :path", vec![METHOD, SCHEME, AUTHORITY]),
        (
            "an empty :path",
            vec![METHOD, SCHEME, (":path", ""), AUTHORITY],
        ),
        ("no :method", vec![SCHEME, PATH, AUTHORITY]),
        ("no :scheme", vec![METHOD, PATH, AUTHORITY]),
        (
            ":status in a request",
            vec![METHOD, SCHEME, PATH, AUTHORITY, (":status", "200")],
        ),
        (
            "a pseudo-header after a regular one",
            vec![METHOD, SCHEME, PATH, ("x-a", "b"), AUTHORITY],
        ),
        (
            "an uppercase name",
            vec![METHOD, SCHEME, PATH, AUTHORITY, ("X-Upper", "v")],
        ),
        (
            "a connection header",
            vec![
                METHOD,
                SCHEME,
                PATH,
                AUTHORITY,
                ("connection", "keep-alive"),
            ],
        ),
        (
            "te other than trailers",
            vec![METHOD, SCHEME, PATH, AUTHORITY, ("te", "gzip")],
        ),
        ("two :path", vec![METHOD, SCHEME, PATH, PATH, AUTHORITY]),
    ];
    let mut stream = 1;
    for (what, fields) in cases {
        let mut calls = frame(HEADERS, END_HEADERS | END_STREAM, stream, &block(&fields));
        calls.extend(call(stream + 2, "/echo", what.as_bytes()));
        peer.send(&calls).await;
        assert_eq!(
            peer.until_over(stream).await,
            Outcome::Reset(PROTOCOL_ERROR),
            "{what}"
        );
        assert_eq!(
            peer.until_over(stream + 2).await,
            Outcome::Answered(200, format!("got {}", what.len())),
            "the call after {what}"
        );
        stream += 4;
    }
    let grpc = block(&[METHOD, SCHEME, PATH, AUTHORITY, ("te", "trailers")]);
    peer.send(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &grpc))
        .await;
    assert_eq!(
        peer.until_over(stream).await,
        Outcome::Answered(200, "got 0".to_owned())
    );
    assert_eq!(running.server.stats().protocol_errors, 0);
}

/// What a server must understand even though it has no use for it: a header block split over
/// HEADERS and CONTINUATION frames, padding on HEADERS and DATA, priority fields in HEADERS,
/// and PRIORITY frames. A call that uses them all is answered as if it used none, its body
/// without the padding.
#[tokio::test]
async fn padding_priority_and_continuation_are_understood() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let headers = call_headers("/echo");
    let (first, rest) = headers.split_at(3);
    let (second, third) = rest.split_at(rest.len() / 2);
    // Pad length 3, then stream dependency 0 and weight 16, the block's start, the padding.
    let mut opening = vec![3, 0, 0, 0, 0, 15];
    opening.extend(first);
    opening.extend([0; 3]);
    let mut wire = frame(PRIORITY, 0, 1, &[0, 0, 0, 0, 15]);
    wire.extend(frame(HEADERS, PADDED | PRIORITY_FLAG, 1, &opening));
    wire.extend(frame(CONTINUATION, 0, 1, second));
    wire.extend(frame(CONTINUATION, END_HEADERS, 1, third));
    let mut padded = vec![10];
    padded.extend(b"abc");
    padded.extend([0; 10]);
    wire.extend(frame(DATA, PADDED, 1, &padded));
    wire.extend(frame(DATA, PADDED | END_STREAM, 1, &[0]));
    peer.send(&wire).await;
    assert_eq!(
        peer.until_over(1).await,
        Outcome::Answered(200, "got 3".to_owned())
    );
}

/// A header block that comes again while the dynamic table is unchanged is not decoded again
/// (the server reuses the head it made from it); once the table changes, the same bytes mean
/// what the new table says, and the server must read them so.
#[tokio::test]
async fn a_repeated_header_block_means_what_the_table_says_when_it_comes() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    // `x-echo: {value}` as a literal added to the dynamic table (index 62, the newest entry).
    let adding = |value: &str| {
        let mut block = call_headers("/x-echo");
        block.push(0x40);
        hpack_integer(7, "x-echo".len(), &mut block);
        block.extend_from_slice(b"x-echo");
        hpack_integer(7, value.len(), &mut block);
        block.extend_from_slice(value.as_bytes());
        block
    };
    let mut stream = 1;
    let mut answer = |block: Vec<u8>| {
        let id = stream;
        stream += 2;
        frame(HEADERS, END_HEADERS | END_STREAM, id, &block)
    };
    let echoed = |value: &str| Outcome::Answered(200, format!("x-echo Some({value:?})"));
    // The same bytes every time: the call's fields and index 62 (0x80 | 62).
    let mut indexed = call_headers("/x-echo");
    indexed.push(0x80 | 62);

    peer.send(&answer(adding("one"))).await;
    assert_eq!(peer.until_over(1).await, echoed("one"));
    for id in [3, 5, 7, 9] {
        peer.send(&answer(indexed.clone())).await;
        assert_eq!(peer.until_over(id).await, echoed("one"), "stream {id}");
    }
    // A second entry: index 62 is now `x-echo: two`.
    peer.send(&answer(adding("two"))).await;
    assert_eq!(peer.until_over(11).await, echoed("two"));
    for id in [13, 15, 17] {
        peer.send(&answer(indexed.clone())).await;
        assert_eq!(peer.until_over(id).await, echoed("two"), "stream {id}");
    }
    // A size update (to the size in force) changes nothing the block names, but the server
    // cannot know that without reading it; a block that starts with one is read every time.
    let mut updating = vec![0x3f, 0xe1, 0x1f];
    updating.extend(&indexed);
    for id in [19, 21] {
        peer.send(&answer(updating.clone())).await;
        assert_eq!(peer.until_over(id).await, echoed("two"), "stream {id}");
    }
    // Emptied by a size update to 0, the table has no index 62: the same bytes are now a
    // compression error, which ends the connection.
    let mut emptying = vec![0x20];
    emptying.extend(call_headers("/x-echo"));
    peer.send(&answer(emptying)).await;
    assert_eq!(
        peer.until_over(23).await,
        Outcome::Answered(200, "x-echo None".to_owned())
    );
    peer.send(&answer(indexed.clone())).await;
    assert_eq!(peer.goaway_then_closed().await, (23, COMPRESSION_ERROR));
}

/// Connection errors (RFC 9113 §5.4.1): each ends its connection with GOAWAY carrying the RFC's
/// error code and the last stream the server took, closes it, and is counted as a protocol
/// error; a client on another connection is still answered.
#[tokio::test]
async fn connection_errors_end_the_connection_with_the_rfcs_code() {
    let running = start_speaking(limits(), true).await;
    let (mut bystander, _connection) = client("127.0.0.1", &running).await;
    let waiting = open(1, "/echo", false);
    let then = |first: &[u8], second: Vec<u8>| [first.to_vec(), second].concat();
    let cases: Vec<(&str, Vec<u8>, (u32, u32))> = vec![
        (
            "a frame longer than 16,384",
            then(&waiting, frame(DATA, 0, 1, &[0; MAX_FRAME + 1])),
            (1, FRAME_SIZE_ERROR),
        ),
        (
            "HEADERS on an even stream",
            open(2, "/echo", true),
            (0, PROTOCOL_ERROR),
        ),
        (
            "DATA on a stream never opened",
            then(&waiting, data(3, b"x", true)),
            (1, PROTOCOL_ERROR),
        ),
        (
            "DATA whose padding is longer than the frame",
            then(&waiting, frame(DATA, PADDED, 1, &[5, b'a'])),
            (1, PROTOCOL_ERROR),
        ),
        (
            "RST_STREAM on a stream never opened",
            rst_stream(1, CANCEL),
            (0, PROTOCOL_ERROR),
        ),
        (
            "another frame inside a header block",
            then(
                &frame(HEADERS, 0, 1, &call_headers("/echo")),
                frame(PING, 0, 0, &[0; 8]),
            ),
            (0, PROTOCOL_ERROR),
        ),
        (
            "CONTINUATION without HEADERS",
            frame(CONTINUATION, END_HEADERS, 1, &call_headers("/echo")),
            (0, PROTOCOL_ERROR),
        ),
        (
            "a connection WINDOW_UPDATE past 2^31-1",
            window_update(0, 0x7fff_ffff),
            (0, FLOW_CONTROL_ERROR),
        ),
        (
            "a connection WINDOW_UPDATE of 0",
            window_update(0, 0),
            (0, PROTOCOL_ERROR),
        ),
        (
            "a header block that is not HPACK (index 0)",
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x80]),
            (0, COMPRESSION_ERROR),
        ),
        (
            "SETTINGS of 5 bytes",
            frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 1]),
            (0, FRAME_SIZE_ERROR),
        ),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1",
            settings(&[(INITIAL_WINDOW_SIZE, 1 << 31)]),
            (0, FLOW_CONTROL_ERROR),
        ),
        (
            "SETTINGS_MAX_FRAME_SIZE under 16,384",
            settings(&[(MAX_FRAME_SIZE, 16_383)]),
            (0, PROTOCOL_ERROR),
        ),
        (
            "PING of 7 bytes",
            frame(PING, 0, 0, &[0; 7]),
            (0, FRAME_SIZE_ERROR),
        ),
    ];
    for (count, (what, frames, expected)) in (1..).zip(cases) {
        let mut peer = Peer::connect("127.0.0.2", &running).await;
        // The server may close before it has read everything; that is the point.
        let _ = peer.raw.send(&frames).await;
        assert_eq!(peer.goaway_then_closed().await, expected, "{what}");
        assert_eq!(running.server.stats().protocol_errors, count, "{what}");
    }
    assert_eq!(
        answer(&mut bystander, "/echo", "still here").await,
        (StatusCode::OK, "got 10".to_owned())
    );
}

/// Before the first frame: a client whose preface is not HTTP/2's (an HTTP/1.1 request on the
/// gRPC port), or whose first frame is not SETTINGS, gets the server's own preface (SETTINGS,
/// WINDOW_UPDATE) and GOAWAY PROTOCOL_ERROR, and the connection is closed and counted.
#[tokio::test]
async fn a_bad_preface_or_first_frame_gets_goaway_protocol_error() {
    let running = start_speaking(limits(), true).await;
    let mut ping_first = PREFACE.to_vec();
    ping_first.extend(frame(PING, 0, 0, &[0; 8]));
    let http1 = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n".to_vec();
    for (count, (what, hello)) in (1..).zip([("HTTP/1.1", http1), ("PING first", ping_first)]) {
        let frames = frames_until_closed(&running, &hello).await;
        let kinds: Vec<u8> = frames.iter().map(|frame| frame.kind).collect();
        assert_eq!(
            kinds,
            [SETTINGS, WINDOW_UPDATE, GOAWAY],
            "{what}: {frames:?}"
        );
        let goaway = &frames[2];
        assert_eq!(
            (&goaway.payload[..4], goaway.error_code()),
            (&[0u8; 4][..], PROTOCOL_ERROR),
            "{what}"
        );
        assert_eq!(running.server.stats().protocol_errors, count, "{what}");
    }
}

/// Paced rapid reset: calls opened one at a time, each cancelled only once its handler is
/// running, so no burst gives it away. The 101st cancellation (more than the 100 a connection
/// may owe) ends the connection with ENHANCE_YOUR_CALM, naming the last call taken.
#[tokio::test]
async fn paced_cancellations_past_the_reset_debt_end_the_connection() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    for n in 0..=MAX_RESET_DEBT {
        peer.cancel_one(2 * n + 1).await;
    }
    let last = 2 * MAX_RESET_DEBT + 1;
    assert_eq!(peer.goaway_then_closed().await, (last, ENHANCE_YOUR_CALM));
    assert_eq!(running.server.stats().protocol_errors, 1);
}

/// Each call answered in full pays off one cancellation: a client that has cancelled up to the
/// limit (100) and then alternates a completed call and a cancelled one, 300 times, owes 100
/// the whole time and is never cut off (a client that cancels now and then is not an attack).
#[tokio::test]
async fn a_completed_call_pays_off_a_cancellation() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let mut stream = 1;
    let mut next_stream = || {
        stream += 2;
        stream - 2
    };
    for _ in 0..MAX_RESET_DEBT {
        peer.cancel_one(next_stream()).await;
    }
    for _ in 0..300 {
        peer.complete_one(next_stream()).await;
        peer.cancel_one(next_stream()).await;
    }
    peer.complete_one(next_stream()).await;
    assert_eq!(peer.goaway, None);
    assert_eq!(running.server.stats().protocol_errors, 0);
}

/// A PING is answered with ACK and its own 8 bytes; an ACK the server did not ask for is not
/// answered (else two peers could ping-pong for ever).
#[tokio::test]
async fn a_ping_is_answered_with_its_payload() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let mut pings = frame(PING, ACK, 0, b"unasked!");
    pings.extend(frame(PING, 0, 0, b"weir-tst"));
    peer.send(&pings).await;
    let pong = loop {
        let frame = peer.next().await.expect("closed");
        if frame.kind == PING {
            break frame;
        }
    };
    assert_eq!(
        (pong.flags, pong.stream, &pong.payload[..]),
        (ACK, 0, &b"weir-tst"[..])
    );
}

/// A client's GOAWAY while a call is in flight: the call is still answered (its request even
/// ends after the GOAWAY), and then the server closes the connection, cleanly (not counted as
/// an error).
#[tokio::test]
async fn after_the_clients_goaway_calls_in_flight_finish_then_the_connection_closes() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    peer.send(&open(1, "/echo", false)).await;
    peer.settle().await;
    peer.send(&goaway(0, 0)).await;
    peer.settle().await;
    assert!(!peer.heard(1).is_over());
    peer.send(&data(1, b"abc", true)).await;
    assert_eq!(
        peer.until_over(1).await,
        Outcome::Answered(200, "got 3".to_owned())
    );
    while peer.next().await.is_some() {}
    assert!(
        peer.goaway.is_none_or(|(_, code)| code == 0),
        "{:?}",
        peer.goaway
    );
    assert_eq!(running.server.stats().protocol_errors, 0);
}

/// 32 calls opened at once on one connection, their bodies (each of its own length) sent in
/// interleaved DATA frames: each call is answered with its own body's length, so data is never
/// given to the wrong call.
#[tokio::test]
async fn interleaved_calls_each_get_their_own_body() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let bodies: Vec<(u32, Vec<u8>)> = (0..32u32)
        .map(|n| {
            (
                2 * n + 1,
                vec![n as u8; 1000 * n as usize + 17 * n as usize + 1],
            )
        })
        .collect();
    let mut wire = Vec::new();
    for (stream, _) in &bodies {
        wire.extend(open(*stream, "/echo", false));
    }
    // Round after round, each call's next 777 bytes (the last of them ending its request).
    let mut at = 0;
    while at < bodies.iter().map(|(_, body)| body.len()).max().unwrap() {
        for (stream, body) in &bodies {
            if at < body.len() {
                let end = (at + 777).min(body.len());
                let flags = if end == body.len() { END_STREAM } else { 0 };
                wire.extend(frame(DATA, flags, *stream, &body[at..end]));
            }
        }
        at += 777;
    }
    peer.send(&wire).await;
    for (stream, body) in &bodies {
        assert_eq!(
            peer.until_over(*stream).await,
            Outcome::Answered(200, format!("got {}", body.len())),
            "stream {stream}"
        );
    }
}

/// MadeYouReset (CVE-2025-8671): the client does not cancel, it makes the server reset the
/// call, here with a stream WINDOW_UPDATE of 0 (a stream error, RFC 9113 §6.9), once the
/// handler runs. The work started and thrown away is the same as in rapid reset, so such
/// resets must count against the reset debt like cancellations.
#[tokio::test]
async fn resets_a_client_provokes_count_against_its_reset_debt() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    for n in 0..=MAX_RESET_DEBT {
        let stream = 2 * n + 1;
        peer.send(&open(stream, "/echo", false)).await;
        peer.settle().await;
        assert_eq!(peer.goaway, None, "cut off before {stream}");
        peer.send(&window_update(stream, 0)).await;
        if n < MAX_RESET_DEBT {
            assert_eq!(
                peer.until_over(stream).await,
                Outcome::Reset(PROTOCOL_ERROR)
            );
        }
    }
    peer.settle().await;
    assert_eq!(
        peer.goaway.map(|(_, code)| code),
        Some(ENHANCE_YOUR_CALM),
        "101 provoked resets and the connection goes on"
    );
}

/// A header block on a stream id at or below the highest one opened, when that stream is not
/// open, is not taken as a call (stream ids only grow, RFC 9113 §5.1.1), and its client is not
/// left waiting: the stream is reset STREAM_CLOSED. Not a connection error, because the same
/// frames are legitimate trailers still in flight on a stream the server already reset.
#[tokio::test]
async fn a_call_on_a_lower_stream_id_is_reset_not_taken() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    peer.complete_one(3).await;
    peer.send(&open(1, "/echo", true)).await;
    assert_eq!(peer.until_over(1).await, Outcome::Reset(STREAM_CLOSED));
    peer.settle().await;
    assert_eq!(peer.goaway, None);
    peer.complete_one(5).await;
}

/// A request whose body is not as long as its content-length says is malformed (RFC 9113
/// §8.1.1): it must be reset with PROTOCOL_ERROR, not handed to the handler as if whole.
#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_reset() {
    let running = start_speaking(limits(), true).await;
    let mut peer = Peer::connect("127.0.0.1", &running).await;
    let fields = block(&[METHOD, SCHEME, PATH, AUTHORITY, ("content-length", "10")]);
    let mut short = frame(HEADERS, END_HEADERS, 1, &fields);
    short.extend(data(1, b"abc", true));
    peer.send(&short).await;
    assert_eq!(peer.until_over(1).await, Outcome::Reset(PROTOCOL_ERROR));
}
