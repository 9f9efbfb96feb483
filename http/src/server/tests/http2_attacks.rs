//! The HTTP/2 listener (the gRPC ports) against clients that abuse the protocol itself: the
//! published HTTP/2 denial-of-service patterns, sent as raw frames. Each test checks that the
//! attacking connection is ended or held to its limits, and that well-behaved calls are still
//! answered: on another connection, or on the same one when only one call was at fault (431).
//! The defences are weir's own HTTP/2 (`server::http2`); these tests pin that a change to it
//! cannot quietly drop one. The protocol's other error cases are in `http2_protocol`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::http2::{answer, client};
use super::{connect_from, limits, start_speaking, until_closed, Running};
use crate::server::ServerLimits;

pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const CONTINUATION: u8 = 0x9;

// Flags.
pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;

// Error codes (RFC 9113 §7).
pub(super) const CANCEL: u32 = 0x8;
pub(super) const REFUSED_STREAM: u32 = 0x7;
pub(super) const COMPRESSION_ERROR: u32 = 0x9;
pub(super) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame the server sent.
#[derive(Debug)]
pub(super) struct Frame {
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
    pub(super) payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY or RST_STREAM frame.
    pub(super) fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// A frame as bytes on the wire.
pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// An HPACK integer with a `prefix`-bit prefix, the first byte's other bits clear (RFC 7541
/// §5.1): all the representations the tests write have them clear.
pub(super) fn hpack_integer(prefix: u32, value: usize, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A header field as a literal that is not indexed, its name given by static-table `index`
/// (0: the name is written out). No Huffman coding: the test needs no encoder.
pub(super) fn literal(index: usize, name: &str, value: &[u8], out: &mut Vec<u8>) {
    hpack_integer(4, index, out);
    if index == 0 {
        hpack_integer(7, name.len(), out);
        out.extend_from_slice(name.as_bytes());
    }
    hpack_integer(7, value.len(), out);
    out.extend_from_slice(value);
}

/// The header block of `POST http://x{path}`.
pub(super) fn call_headers(path: &str) -> Vec<u8> {
    // :method POST and :scheme http are static-table entries 3 and 6.
    let mut block = vec![0x83, 0x86];
    literal(4, ":path", path.as_bytes(), &mut block);
    literal(1, ":authority", b"x", &mut block);
    block
}

/// A client that writes raw frames; what the server sends is read beside it.
pub(super) struct RawClient {
    pub(super) writer: OwnedWriteHalf,
    frames: mpsc::UnboundedReceiver<Frame>,
}

impl RawClient {
    /// Connects from `from`, sends the preface and an empty SETTINGS, and acknowledges the
    /// server's SETTINGS, as a client does before its first call.
    pub(super) async fn connect(from: &str, running: &Running) -> RawClient {
        let stream = connect_from(from, running.address).await;
        let (mut reader, mut writer) = stream.into_split();
        let (sender, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut head = [0u8; 9];
            while reader.read_exact(&mut head).await.is_ok() {
                let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; length];
                if reader.read_exact(&mut payload).await.is_err() {
                    return;
                }
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & !(1 << 31);
                let frame = Frame {
                    kind: head[3],
                    flags: head[4],
                    stream,
                    payload,
                };
                if sender.send(frame).is_err() {
                    return;
                }
            }
        });
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        writer.write_all(&hello).await.unwrap();
        let mut client = RawClient { writer, frames };
        loop {
            let frame = client
                .next()
                .await
                .expect("the server closed before SETTINGS");
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                break;
            }
        }
        client.send(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        client
    }

    pub(super) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// The server's next frame; `None` once it closed the connection. Fails the test when
    /// nothing comes for 30 s.
    pub(super) async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(30), self.frames.recv())
            .await
            .expect("the server sent nothing for 30 s")
    }

    /// The GOAWAY the server ends the connection with; fails the test when it closes without
    /// one.
    pub(super) async fn goaway(&mut self) -> Frame {
        while let Some(frame) = self.next().await {
            if frame.kind == GOAWAY {
                return frame;
            }
        }
        panic!("the server closed the connection without GOAWAY");
    }

    /// Reads on until the server closes the connection.
    pub(super) async fn until_closed(&mut self) {
        while self.next().await.is_some() {}
    }
}

/// A well-behaved client is answered: what each attack must not take away.
async fn bystander_is_answered(sender: &mut SendRequest<Full<Bytes>>) {
    assert_eq!(
        answer(sender, "/echo", "still here").await,
        (StatusCode::OK, "got 10".to_owned())
    );
}

/// How an attack on a connection must end: GOAWAY with one of `reasons`, the connection closed
/// and counted as abuse, and the bystander still answered.
async fn assert_cut_off(
    attacker: &mut RawClient,
    reasons: &[u32],
    running: &Running,
    bystander: &mut SendRequest<Full<Bytes>>,
) {
    let goaway = attacker.goaway().await;
    assert!(reasons.contains(&goaway.error_code()), "{goaway:?}");
    attacker.until_closed().await;
    assert_eq!(running.server.stats().protocol_errors, 1);
    bystander_is_answered(bystander).await;
}

/// "Rapid reset" (CVE-2023-44487): open a stream and cancel it at once, over and over, so the
/// server starts work the client never waits for while the client's own concurrency stays at
/// zero. The server ends such a connection with ENHANCE_YOUR_CALM after a few dozen.
#[tokio::test]
async fn rapid_reset_ends_the_attacking_connection_with_enhance_your_calm() {
    let running = start_speaking(limits(), true).await;
    let (mut bystander, _connection) = client("127.0.0.1", &running).await;
    bystander_is_answered(&mut bystander).await;
    let mut attacker = RawClient::connect("127.0.0.2", &running).await;
    let headers = call_headers("/echo");
    let mut sent = 0;
    for _ in 0..100 {
        let mut burst = Vec::new();
        for _ in 0..100 {
            let stream = 2 * sent + 1;
            burst.extend(frame(HEADERS, END_HEADERS, stream, &headers));
            burst.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
            sent += 1;
        }
        // Once the server has gone away, writing fails: the attack is over.
        if attacker.send(&burst).await.is_err() {
            break;
        }
    }
    assert_cut_off(
        &mut attacker,
        &[ENHANCE_YOUR_CALM],
        &running,
        &mut bystander,
    )
    .await;
}

/// "CONTINUATION flood" (CVE-2024-27316 and its kin in other servers): a header block that
/// never ends, so a server that buffers it until END_HEADERS grows without bound. Here the
/// connection is ended after a handful of frames, long before the flood's 1 MiB is in.
#[tokio::test]
async fn a_header_block_that_never_ends_is_cut_off() {
    let running = start_speaking(limits(), true).await;
    let (mut bystander, _connection) = client("127.0.0.1", &running).await;
    let mut attacker = RawClient::connect("127.0.0.2", &running).await;
    let mut flood = frame(HEADERS, 0, 1, &call_headers("/echo"));
    let mut filler = Vec::new();
    literal(0, "x-filler", &[b'a'; 1000], &mut filler);
    for _ in 0..1000 {
        flood.extend(frame(CONTINUATION, 0, 1, &filler));
    }
    // The server may close before the whole flood is written; that is the defence working.
    let _ = attacker.send(&flood).await;
    let reasons = [ENHANCE_YOUR_CALM, COMPRESSION_ERROR];
    assert_cut_off(&mut attacker, &reasons, &running, &mut bystander).await;
}

/// A call whose headers are over the listener's limit (64 KiB) is refused with 431 alone: the
/// connection and the calls after it on it go on.
#[tokio::test]
async fn a_call_with_headers_over_the_limit_gets_431_and_its_connection_goes_on() {
    let running = start_speaking(limits(), true).await;
    let (mut sender, _connection) = client("127.0.0.1", &running).await;
    let mut request = super::http2::post("/echo", Full::new(Bytes::from_static(b"x")));
    let big = "a".repeat(80 * 1024);
    request.headers_mut().insert("x-big", big.parse().unwrap());
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    bystander_is_answered(&mut sender).await;
    assert_eq!(
        running.server.stats().protocol_errors,
        0,
        "one call's fault, not abuse"
    );
}

/// Opening more calls than the connection may have open at once (256): the calls past the cap
/// are refused one by one (REFUSED_STREAM, which tells a client that retrying is safe), the
/// ones under it stay open, and other connections are unaffected.
#[tokio::test]
async fn calls_past_the_concurrency_cap_are_refused_and_the_rest_are_kept() {
    let running = start_speaking(limits(), true).await;
    let (mut bystander, _connection) = client("127.0.0.1", &running).await;
    let mut crowd = RawClient::connect("127.0.0.2", &running).await;
    let headers = call_headers("/echo");
    // Calls whose bodies never come: each one holds its stream open in the handler.
    let mut opened = Vec::new();
    for n in 0..300u32 {
        opened.extend(frame(HEADERS, END_HEADERS, 2 * n + 1, &headers));
    }
    crowd.send(&opened).await.unwrap();
    let mut refused = Vec::new();
    while refused.len() < 44 {
        let frame = crowd
            .next()
            .await
            .expect("the server closed the crowded connection");
        if frame.kind == RST_STREAM {
            assert_eq!(frame.error_code(), REFUSED_STREAM, "{frame:?}");
            refused.push(frame.stream);
        }
    }
    refused.sort_unstable();
    let expected: Vec<u32> = (256..300).map(|n| 2 * n + 1).collect();
    assert_eq!(
        refused, expected,
        "the calls past the first 256 are the ones refused"
    );
    bystander_is_answered(&mut bystander).await;
    // The calls that were taken are still open: one of them, given its body now, is answered.
    crowd
        .send(&frame(DATA, END_STREAM, 1, b"late"))
        .await
        .unwrap();
    loop {
        let frame = crowd
            .next()
            .await
            .expect("the server closed the crowded connection");
        assert_ne!(frame.kind, RST_STREAM, "{frame:?}");
        if frame.kind == DATA && frame.stream == 1 {
            assert_eq!(frame.payload, b"got 4");
            break;
        }
    }
}

/// A PING flood from a client that never reads: PINGs are not calls, so the connection does
/// not live past the header deadline, its unread answers do not pile up in the server, and it
/// costs nobody else their calls.
#[tokio::test]
async fn a_ping_flood_that_never_reads_is_closed_at_the_header_deadline() {
    let running = start_speaking(
        ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..limits()
        },
        true,
    )
    .await;
    let (mut bystander, _connection) = client("127.0.0.1", &running).await;
    // Its first call in, the bystander is past its own header deadline.
    bystander_is_answered(&mut bystander).await;
    let mut flooder = connect_from("127.0.0.2", running.address).await;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    let mut pings = Vec::new();
    for n in 0u64..10_000 {
        pings.extend(frame(PING, 0, 0, &n.to_be_bytes()));
    }
    flooder.write_all(&hello).await.unwrap();
    // Writes stop succeeding once the server stops reading or closes; the flood runs out
    // either way, bounded by its count.
    for _ in 0..50 {
        let write = tokio::time::timeout(Duration::from_secs(5), flooder.write_all(&pings));
        if !matches!(write.await, Ok(Ok(()))) {
            break;
        }
    }
    bystander_is_answered(&mut bystander).await;
    until_closed(&mut flooder).await;
    let stats = running.server.stats();
    assert_eq!((stats.header_timeouts, stats.protocol_errors), (1, 0));
    bystander_is_answered(&mut bystander).await;
}
