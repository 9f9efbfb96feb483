//! A gRPC client connection over HTTP/2 for unary calls: what `weir route` forwards calls to
//! the replicas' gRPC ports with. It shares its frames and HPACK with weir's gRPC listener.
//!
//! Why not the `h2` crate: the router's gRPC hop cost more than its HTTP/1.1 hop, and its
//! server side had already shown the `h2` codec to cost a call more than all of hyper's
//! HTTP/1.1. A client for unary calls needs little of HTTP/2 (no push, no priorities, a request
//! held whole, an answer read whole), and that little is cheap to do well:
//!
//! - a call's HEADERS and DATA are encoded into the connection's output and written by the
//!   calling task itself, in one write when the socket takes it, so a call costs no wake of the
//!   connection's task on its way out; the task writes only what the socket would not take;
//! - the connection's task reads the answers and wakes each call once, when its answer is
//!   whole (or has failed);
//! - requests are encoded without the dynamic table (literal `:path`, `:authority` and
//!   metadata), so the peer's table settings never matter; answers are decoded with it.
//!
//! Bounded by design: an answer is held up to the limit each call gives (past it the call is
//! reset and fails), its header blocks up to [`MAX_HEADER_BLOCK`], frames to 16 KiB (the
//! default this client never raises). Request data waits for the peer's flow-control window.
//! A peer that stops answering PINGs ([`Settings::keep_alive_timeout`]) is dropped.
//!
//! Whether a failed call may be sent again matters to a router that retries only calls the
//! replica cannot have processed: [`CallError::Unsent`] is that case (the connection refused
//! it, the peer reset it with REFUSED_STREAM, a GOAWAY says it was not taken, or the connection
//! failed before any of its bytes reached the socket); every other failure is
//! [`CallError::Failed`].

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::{HeaderMap, StatusCode};
use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::hpack;
use crate::http2_frame::{self as frame, flag, kind, setting, Head, Input, Reason};

/// An answer's header block, as sent (HPACK-compressed), may be this long; past it the peer is
/// taken to be broken and the connection ends. gRPC answers carry a few hundred bytes.
const MAX_HEADER_BLOCK: usize = 128 * 1024;
/// An answer's metadata, decoded, as RFC 9113 §6.5.2 counts it; past it the call fails.
const MAX_HEADER_LIST: usize = 64 * 1024;
/// The highest stream id a client may open (RFC 9113 §5.1.1): past it, a new connection.
const LAST_STREAM_ID: u32 = (1 << 31) - 1;
const PING_PAYLOAD: [u8; 8] = *b"weir-cl!";

/// How a connection is set up and kept.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The receive window of each call: a large answer crosses in this much per round trip.
    pub stream_window: u32,
    /// The receive window of the connection as a whole.
    pub connection_window: u32,
    /// A PING after this long without a frame from the peer...
    pub keep_alive_interval: Duration,
    /// ...and the connection is dropped when its answer takes longer than this.
    pub keep_alive_timeout: Duration,
}

impl Settings {
    /// Within what HTTP/2 allows and this client needs: windows from the protocol's default to
    /// its largest, timers that cannot spin.
    fn checked(self) -> Settings {
        let window = |w: u32| w.clamp(frame::DEFAULT_WINDOW as u32, frame::MAX_WINDOW as u32);
        let at_least = Duration::from_millis(10);
        Settings {
            stream_window: window(self.stream_window),
            connection_window: window(self.connection_window),
            keep_alive_interval: self.keep_alive_interval.max(at_least),
            keep_alive_timeout: self.keep_alive_timeout.max(at_least),
        }
    }
}

/// Why a call did not bring an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The peer cannot have processed the call: it may be sent again, here or elsewhere.
    #[error("{0}")]
    Unsent(String),
    /// The call may have reached the peer's application.
    #[error("{0}")]
    Failed(String),
    /// The answer's data passed the call's `max_answer`: the call was reset, the peer is fine.
    #[error("the answer is larger than {0} bytes")]
    AnswerTooLarge(usize),
}

/// A whole answer: its head, its message bytes and its trailers (where gRPC puts its status;
/// `None` for a "trailers-only" answer, whose status is in the head).
#[derive(Debug)]
pub struct Answer {
    pub head: http::response::Parts,
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
}

/// One HTTP/2 connection, multiplexing calls. Dropping it lets calls in flight finish, then
/// closes the connection.
pub struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The connection's task, woken when output is left that the socket would not take, or
    /// when the connection is dropped.
    driver: AtomicWaker,
    /// Cleared once the connection takes no new calls (GOAWAY, an error, closed).
    accepting: AtomicBool,
    settings: Settings,
}

struct State {
    /// `None` once the connection has ended.
    writer: Option<OwnedWriteHalf>,
    /// Frames to write, in order; `written` of them are on the wire.
    output: Vec<u8>,
    written: usize,
    /// Bytes on the wire since the connection began: a call whose first byte is at or past
    /// this when the connection fails never left this process, so it can be retried.
    sent: u64,
    /// Scratch for encoding a call's header block.
    block: BytesMut,
    streams: HashMap<u32, Stream>,
    next_stream: u32,
    /// What this client may still send on the connection as a whole, and what a new call may
    /// send until the peer's WINDOW_UPDATEs (RFC 9113 §6.9).
    send_window: i64,
    initial_send_window: i64,
    max_send_frame: usize,
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS.
    max_streams: usize,
    /// Calls whose request data waits for window, in the order they came.
    sending: VecDeque<u32>,
    /// Why the connection takes no new calls.
    closed: Option<String>,
    /// The [`Connection`] was dropped: the task ends once its calls have.
    dropped: bool,
    /// The peer set SETTINGS_HEADER_TABLE_SIZE: the next header block starts with a dynamic
    /// table size update (RFC 7541 §4.2). To 0: requests never use the table.
    table_update_due: bool,
    /// Calls whose answers are done, to wake once the lock is let go.
    woken: Vec<Waker>,
}

struct Stream {
    /// Where the call's first byte is in the connection's output ([`State::sent`]'s count).
    starts_at: u64,
    send_window: i64,
    /// Request data the window has not let out yet; the last of it ends the stream.
    outbound: Bytes,
    receive_window: i64,
    /// Window taken by data received and not yet given back.
    released: u32,
    head: Option<http::response::Parts>,
    data: Vec<Bytes>,
    data_len: usize,
    max_answer: usize,
    trailers: Option<HeaderMap>,
    /// `Some` once the call is over: its answer whole, or why it failed.
    outcome: Option<Result<(), CallError>>,
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what the socket takes now; a write that fails ends the connection.
    fn flush(&self, state: &mut State) {
        while state.written < state.output.len() {
            let Some(writer) = state.writer.as_ref() else {
                return;
            };
            match writer.try_write(&state.output[state.written..]) {
                Ok(0) => return self.end(state, "the connection closed".to_owned()),
                Ok(written) => state.wrote(written),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    // The task writes the rest when the socket is writable.
                    self.driver.wake();
                    return;
                }
                Err(err) => return self.end(state, format!("writing to the connection: {err}")),
            }
        }
    }

    /// Ends the connection: no new calls, and every call not over fails with `why`; those
    /// none of whose bytes reached the socket are [`CallError::Unsent`].
    fn end(&self, state: &mut State, why: String) {
        self.accepting.store(false, Ordering::Relaxed);
        state.writer = None;
        let sent = state.sent;
        let calls: Vec<(u32, u64)> = state
            .streams
            .iter()
            .map(|(&id, stream)| (id, stream.starts_at))
            .collect();
        for (id, starts_at) in calls {
            let error = if starts_at >= sent {
                CallError::Unsent(why.clone())
            } else {
                CallError::Failed(why.clone())
            };
            state.finish(id, Err(error));
        }
        state.closed.get_or_insert(why);
        self.driver.wake();
    }
}

impl State {
    /// `count` more bytes of the output are on the wire.
    fn wrote(&mut self, count: usize) {
        self.written += count;
        self.sent += count as u64;
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
        }
    }

    /// Sends as much of a call's request data as the windows allow; `true` when all is out.
    fn pump(&mut self, id: u32) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else {
            return true;
        };
        while !stream.outbound.is_empty() {
            let allowed = self
                .send_window
                .min(stream.send_window)
                .min(self.max_send_frame as i64);
            let Ok(allowed @ 1..) = usize::try_from(allowed) else {
                return false;
            };
            let chunk = stream.outbound.split_to(allowed.min(stream.outbound.len()));
            let flags = if stream.outbound.is_empty() {
                flag::END_STREAM
            } else {
                0
            };
            frame::frame(&mut self.output, kind::DATA, flags, id, &chunk);
            self.send_window -= chunk.len() as i64;
            stream.send_window -= chunk.len() as i64;
        }
        true
    }

    fn pump_all(&mut self) {
        for _ in 0..self.sending.len() {
            if let Some(id) = self.sending.pop_front() {
                if !self.pump(id) {
                    self.sending.push_back(id);
                }
            }
        }
    }

    /// The call is over; its task is woken (once the lock is let go).
    fn finish(&mut self, id: u32, outcome: Result<(), CallError>) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if stream.outcome.is_none() {
                // An answer whole before its request (a refusal that did not wait for a large
                // message): the request's end never goes out, so the stream is closed with a
                // reset, or the peer would count it open for the connection's life.
                if outcome.is_ok() && !stream.outbound.is_empty() {
                    frame::rst_stream(&mut self.output, id, Reason::Cancel);
                }
                stream.outcome = Some(outcome);
                stream.outbound = Bytes::new();
                self.woken.extend(stream.waker.take());
            }
        }
    }

    /// A frame on a stream this client cannot have opened breaks the protocol.
    fn check_stream(&self, id: u32) -> Result<(), Reason> {
        if id == 0 || id.is_multiple_of(2) || id >= self.next_stream {
            Err(Reason::ProtocolError)
        } else {
            Ok(())
        }
    }

    /// The last call has left a connection that is closing: its task can end now rather than
    /// at its next timer.
    fn wake_driver_if_done(&self, shared: &Shared) {
        if self.streams.is_empty() && (self.dropped || self.closed.is_some()) {
            shared.driver.wake();
        }
    }

    /// The call is over for an error in its answer: the peer is told to stop it.
    fn refuse(&mut self, id: u32, reason: Reason, why: String) {
        frame::rst_stream(&mut self.output, id, reason);
        self.finish(id, Err(CallError::Failed(why)));
    }
}

impl Connection {
    /// Starts HTTP/2 on a connected socket (no TLS: the replicas' gRPC ports speak cleartext
    /// HTTP/2 with prior knowledge) and drives it on a task of its own. Calls may start at once;
    /// the peer's SETTINGS apply as they arrive.
    pub fn handshake(io: TcpStream, settings: Settings) -> Connection {
        let settings = settings.checked();
        let _ = io.set_nodelay(true);
        let (reader, writer) = io.into_split();
        let mut output = Vec::with_capacity(4096);
        output.extend_from_slice(frame::PREFACE);
        frame::settings(
            &mut output,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, settings.stream_window),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST as u32),
            ],
        );
        let raise = settings
            .connection_window
            .saturating_sub(frame::DEFAULT_WINDOW as u32);
        if raise > 0 {
            frame::window_update(&mut output, 0, raise);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                writer: Some(writer),
                output,
                written: 0,
                sent: 0,
                block: BytesMut::with_capacity(256),
                streams: HashMap::new(),
                next_stream: 1,
                send_window: frame::DEFAULT_WINDOW,
                initial_send_window: frame::DEFAULT_WINDOW,
                max_send_frame: frame::DEFAULT_MAX_FRAME,
                max_streams: usize::MAX,
                sending: VecDeque::new(),
                closed: None,
                dropped: false,
                table_update_due: false,
                woken: Vec::new(),
            }),
            driver: AtomicWaker::new(),
            accepting: AtomicBool::new(true),
            settings,
        });
        let mut driver = Driver {
            shared: shared.clone(),
            reader,
            decoder: hpack::Decoder::new(4096),
            input: Input::new(),
            settings_read: false,
            block: None,
            receive_window: i64::from(settings.connection_window),
            released: 0,
            last_heard: Instant::now(),
            ping_sent: None,
            tick: Box::pin(tokio::time::sleep(settings.keep_alive_timeout / 2)),
            woken: Vec::new(),
        };
        tokio::spawn(async move { poll_fn(|cx| driver.poll(cx)).await });
        Connection { shared }
    }

    /// Whether the connection takes no more calls (the peer is going away, or it ended).
    pub fn is_closed(&self) -> bool {
        !self.shared.accepting.load(Ordering::Relaxed)
    }

    /// Calls in flight on the connection.
    pub fn calls(&self) -> usize {
        self.shared.lock().streams.len()
    }

    /// A unary call: `POST path` with `headers` (lowercase names; connection-specific ones are
    /// left out) and `body` as its data, its answer read whole up to `max_answer` bytes of
    /// data. Dropping the future cancels the call (RST_STREAM CANCEL).
    pub async fn call(
        &self,
        authority: &str,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        max_answer: usize,
    ) -> Result<Answer, CallError> {
        let id = self.start(authority, path, headers, body, max_answer)?;
        let mut pending = Pending {
            shared: &self.shared,
            id,
            over: false,
        };
        poll_fn(|cx| pending.poll(cx)).await
    }

    fn start(
        &self,
        authority: &str,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        max_answer: usize,
    ) -> Result<u32, CallError> {
        let mut state = self.shared.lock();
        if let Some(why) = &state.closed {
            return Err(CallError::Unsent(why.clone()));
        }
        if state.streams.len() >= state.max_streams {
            return Err(CallError::Unsent(format!(
                "the connection carries {} calls, as many as its peer takes at once",
                state.streams.len()
            )));
        }
        let id = state.next_stream;
        if id > LAST_STREAM_ID {
            self.shared.accepting.store(false, Ordering::Relaxed);
            let why = "the connection has used up its stream ids".to_owned();
            state.closed = Some(why.clone());
            return Err(CallError::Unsent(why));
        }
        state.next_stream += 2;
        let starts_at = state.sent + (state.output.len() - state.written) as u64;
        let mut block = std::mem::take(&mut state.block);
        block.clear();
        if std::mem::take(&mut state.table_update_due) {
            hpack::encode_table_size_update(&mut block, 0);
        }
        encode_request(&mut block, authority, path, headers);
        let max_frame = state.max_send_frame;
        frame::header_block(&mut state.output, id, &block, body.is_empty(), max_frame);
        state.block = block;
        let stream = Stream {
            starts_at,
            send_window: state.initial_send_window,
            outbound: body,
            receive_window: i64::from(self.shared.settings.stream_window),
            released: 0,
            head: None,
            data: Vec::new(),
            data_len: 0,
            max_answer,
            trailers: None,
            outcome: None,
            waker: None,
        };
        state.streams.insert(id, stream);
        if !state.pump(id) {
            state.sending.push_back(id);
        }
        self.shared.flush(&mut state);
        if let Some(why) = state.closed.clone().filter(|_| state.writer.is_none()) {
            let outcome = state.streams.remove(&id).and_then(|stream| stream.outcome);
            return Err(match outcome {
                Some(Err(error)) => error,
                _ => CallError::Failed(why),
            });
        }
        Ok(id)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.lock().dropped = true;
        self.shared.driver.wake();
    }
}

/// The header block of a call: `:method POST` and `:scheme http` from the static table, the
/// rest as literals without indexing.
fn encode_request(block: &mut BytesMut, authority: &str, path: &str, headers: &HeaderMap) {
    hpack::encode_indexed(block, 3);
    hpack::encode_indexed(block, 6);
    hpack::encode_field(block, b":path", path.as_bytes());
    hpack::encode_field(block, b":authority", authority.as_bytes());
    for (name, value) in headers {
        let name = name.as_str().as_bytes();
        if frame::connection_specific(name) || name == b"host" {
            continue;
        }
        hpack::encode_field(block, name, value.as_bytes());
    }
}

/// A call waiting for its answer; dropped before it, the call is cancelled.
struct Pending<'a> {
    shared: &'a Shared,
    id: u32,
    over: bool,
}

impl Pending<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Answer, CallError>> {
        let mut state = self.shared.lock();
        let Some(stream) = state.streams.get_mut(&self.id) else {
            self.over = true;
            return Poll::Ready(Err(CallError::Failed("the call was lost".to_owned())));
        };
        let Some(outcome) = stream.outcome.take() else {
            if !stream
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                stream.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        };
        self.over = true;
        let stream = state.streams.remove(&self.id);
        state.wake_driver_if_done(self.shared);
        Poll::Ready(match (outcome, stream) {
            (Ok(()), Some(mut stream)) => match stream.head.take() {
                Some(head) => Ok(Answer {
                    head,
                    data: match stream.data.len() {
                        0 => Bytes::new(),
                        1 => stream.data.swap_remove(0),
                        _ => stream.data.concat().into(),
                    },
                    trailers: stream.trailers,
                }),
                None => Err(CallError::Failed("the answer had no headers".to_owned())),
            },
            (Err(err), _) => Err(err),
            (Ok(()), None) => Err(CallError::Failed("the call was lost".to_owned())),
        })
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.over {
            return;
        }
        let mut state = self.shared.lock();
        let removed = state.streams.remove(&self.id);
        state.wake_driver_if_done(self.shared);
        if let Some(stream) = removed {
            if stream.outcome.is_none() && state.writer.is_some() {
                frame::rst_stream(&mut state.output, self.id, Reason::Cancel);
                self.shared.flush(&mut state);
            }
        }
    }
}

/// The connection's task: reads and handles the peer's frames, writes what callers could not,
/// keeps the connection alive.
struct Driver {
    shared: Arc<Shared>,
    reader: OwnedReadHalf,
    decoder: hpack::Decoder,
    input: Input,
    settings_read: bool,
    /// A header block still waiting for its CONTINUATION frames: its stream, whether it ends
    /// the stream, its bytes so far.
    block: Option<(u32, bool, Vec<u8>)>,
    /// What the peer may still send on the connection as a whole, and what has been read and
    /// not yet given back.
    receive_window: i64,
    released: u32,
    last_heard: Instant,
    ping_sent: Option<Instant>,
    tick: Pin<Box<tokio::time::Sleep>>,
    woken: Vec<Waker>,
}

impl Driver {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.driver.register(cx.waker());
        loop {
            let mut again = false;
            match self.input.poll_read(&mut self.reader, cx) {
                Poll::Ready(Ok(0)) => {
                    return self.close("the peer closed the connection".to_owned());
                }
                Poll::Ready(Ok(_)) => {
                    again = true;
                    self.last_heard = Instant::now();
                    if let Err(reason) = self.parse() {
                        return self.fail(reason);
                    }
                }
                Poll::Ready(Err(err)) => {
                    return self.close(format!("reading from the connection: {err}"));
                }
                Poll::Pending => {}
            }
            {
                let mut state = self.shared.lock();
                if self.released >= self.shared.settings.connection_window / 4 {
                    frame::window_update(&mut state.output, 0, self.released);
                    self.receive_window += i64::from(self.released);
                    self.released = 0;
                }
                again |= self.poll_write(&mut state, cx);
                std::mem::swap(&mut self.woken, &mut state.woken);
                let idle = state.streams.is_empty() && state.written == state.output.len();
                let done =
                    state.writer.is_none() || (idle && (state.dropped || state.closed.is_some()));
                drop(state);
                for waker in self.woken.drain(..) {
                    waker.wake();
                }
                if done {
                    let mut state = self.shared.lock();
                    self.shared
                        .end(&mut state, "the connection is closed".to_owned());
                    return Poll::Ready(());
                }
            }
            if self.tick.as_mut().poll(cx).is_ready() {
                if let Some(closed) = self.keep_alive() {
                    return closed;
                }
                again = true;
            }
            if !again {
                return Poll::Pending;
            }
        }
    }

    /// Writes output the callers left; `true` when some was written.
    fn poll_write(&self, state: &mut State, cx: &mut Context<'_>) -> bool {
        let State {
            writer,
            output,
            written,
            ..
        } = state;
        let Some(writer) = writer.as_mut() else {
            return false;
        };
        if *written == output.len() {
            return false;
        }
        match Pin::new(writer).poll_write(cx, &output[*written..]) {
            Poll::Ready(Ok(0)) => self.shared.end(state, "the connection closed".to_owned()),
            Poll::Ready(Ok(count)) => {
                state.wrote(count);
                return true;
            }
            Poll::Ready(Err(err)) => self
                .shared
                .end(state, format!("writing to the connection: {err}")),
            Poll::Pending => {}
        }
        false
    }

    /// PINGs a peer not heard from for [`Settings::keep_alive_interval`]; ends the connection
    /// when a PING goes unanswered for [`Settings::keep_alive_timeout`].
    fn keep_alive(&mut self) -> Option<Poll<()>> {
        let settings = self.shared.settings;
        let now = Instant::now();
        self.tick
            .as_mut()
            .reset(now + settings.keep_alive_timeout / 2);
        match self.ping_sent {
            Some(sent) if now - sent >= settings.keep_alive_timeout => Some(self.close(format!(
                "the peer did not answer a PING within {} ms",
                settings.keep_alive_timeout.as_millis()
            ))),
            Some(_) => None,
            None => {
                if now - self.last_heard >= settings.keep_alive_interval {
                    self.ping_sent = Some(now);
                    let mut state = self.shared.lock();
                    frame::frame(&mut state.output, kind::PING, 0, 0, &PING_PAYLOAD);
                    self.shared.flush(&mut state);
                }
                None
            }
        }
    }

    /// The connection is over: every call not over fails with `why`.
    fn close(&mut self, why: String) -> Poll<()> {
        let mut state = self.shared.lock();
        self.shared.end(&mut state, why);
        std::mem::swap(&mut self.woken, &mut state.woken);
        drop(state);
        for waker in self.woken.drain(..) {
            waker.wake();
        }
        Poll::Ready(())
    }

    /// The peer broke the protocol: GOAWAY with the reason, then the connection ends.
    fn fail(&mut self, reason: Reason) -> Poll<()> {
        {
            let mut state = self.shared.lock();
            frame::goaway(&mut state.output, 0, reason);
            self.shared.flush(&mut state);
        }
        self.close(format!(
            "the peer broke the HTTP/2 protocol ({})",
            reason_name(reason as u32)
        ))
    }

    /// Handles every whole frame read.
    fn parse(&mut self) -> Result<(), Reason> {
        let mut input = std::mem::take(&mut self.input);
        let result = self.frames(&mut input);
        self.input = input;
        result
    }

    fn frames(&mut self, input: &mut Input) -> Result<(), Reason> {
        while let Some((head, payload)) = input.next_frame()? {
            // The server's connection preface is a SETTINGS frame (RFC 9113 §3.4).
            if !self.settings_read && head.kind != kind::SETTINGS {
                return Err(Reason::ProtocolError);
            }
            self.frame(head, payload)?;
        }
        Ok(())
    }

    fn frame(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if let Some((stream, end_stream, bytes)) = &mut self.block {
            if head.kind != kind::CONTINUATION || head.stream != *stream {
                return Err(Reason::ProtocolError);
            }
            if bytes.len() + payload.len() > MAX_HEADER_BLOCK {
                return Err(Reason::EnhanceYourCalm);
            }
            bytes.extend_from_slice(payload);
            let (stream, end_stream) = (*stream, *end_stream);
            if head.flags & flag::END_HEADERS != 0 {
                if let Some((_, _, bytes)) = self.block.take() {
                    self.header_block(stream, end_stream, &bytes)?;
                }
            }
            return Ok(());
        }
        match head.kind {
            kind::DATA => self.data(head, payload),
            kind::HEADERS => {
                self.shared.lock().check_stream(head.stream)?;
                let skip = if head.flags & flag::PRIORITY != 0 {
                    5
                } else {
                    0
                };
                let fragment =
                    frame::unpadded(payload, head.flags, skip).ok_or(Reason::ProtocolError)?;
                let end_stream = head.flags & flag::END_STREAM != 0;
                if head.flags & flag::END_HEADERS != 0 {
                    self.header_block(head.stream, end_stream, fragment)
                } else {
                    self.block = Some((head.stream, end_stream, fragment.to_vec()));
                    Ok(())
                }
            }
            // This client said ENABLE_PUSH 0.
            kind::CONTINUATION | kind::PUSH_PROMISE => Err(Reason::ProtocolError),
            kind::RST_STREAM => {
                self.shared.lock().check_stream(head.stream)?;
                let code: [u8; 4] = payload.try_into().map_err(|_| Reason::FrameSizeError)?;
                let code = u32::from_be_bytes(code);
                let outcome = if code == Reason::RefusedStream as u32 {
                    CallError::Unsent("the peer refused the call unprocessed".to_owned())
                } else {
                    CallError::Failed(format!("the peer reset the call ({})", reason_name(code)))
                };
                self.shared.lock().finish(head.stream, Err(outcome));
                Ok(())
            }
            kind::SETTINGS => self.settings(head, payload),
            kind::PING => {
                if frame::ping(head, payload, &mut self.shared.lock().output)? {
                    self.ping_sent = None;
                }
                Ok(())
            }
            kind::GOAWAY => self.goaway(head, payload),
            kind::WINDOW_UPDATE => self.window_update(head, payload),
            // PRIORITY is advice for servers; unknown types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn data(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        let mut state = self.shared.lock();
        let state = &mut *state;
        state.check_stream(head.stream)?;
        let length = payload.len() as i64;
        if length > self.receive_window {
            return Err(Reason::FlowControlError);
        }
        self.receive_window -= length;
        // Given back at once: what a call holds is bounded by its `max_answer`, not the window.
        self.released += payload.len() as u32;
        let data = frame::unpadded(payload, head.flags, 0).ok_or(Reason::ProtocolError)?;
        let Some(stream) = state.streams.get_mut(&head.stream) else {
            // A call cancelled or over: its data is dropped.
            return Ok(());
        };
        if stream.outcome.is_some() {
            return Ok(());
        }
        if stream.head.is_none() {
            state.refuse(
                head.stream,
                Reason::ProtocolError,
                "the answer's data came before its headers".to_owned(),
            );
            return Ok(());
        }
        if length > stream.receive_window {
            state.refuse(
                head.stream,
                Reason::FlowControlError,
                "the peer sent more than the call's window".to_owned(),
            );
            return Ok(());
        }
        stream.receive_window -= length;
        stream.data_len += data.len();
        if stream.data_len > stream.max_answer {
            let limit = stream.max_answer;
            frame::rst_stream(&mut state.output, head.stream, Reason::Cancel);
            state.finish(head.stream, Err(CallError::AnswerTooLarge(limit)));
            return Ok(());
        }
        if !data.is_empty() {
            stream.data.push(Bytes::copy_from_slice(data));
        }
        if head.flags & flag::END_STREAM != 0 {
            state.finish(head.stream, Ok(()));
            return Ok(());
        }
        stream.released += payload.len() as u32;
        if stream.released >= self.shared.settings.stream_window / 2 {
            let released = std::mem::take(&mut stream.released);
            stream.receive_window += i64::from(released);
            frame::window_update(&mut state.output, head.stream, released);
        }
        Ok(())
    }

    /// A whole header block: an answer's head, or its trailers.
    fn header_block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), Reason> {
        let mut fields = AnswerFields::default();
        // Decoded even for a call that is over: later blocks depend on the dynamic table.
        self.decoder
            .decode(block, |name, value| fields.add(name, value))
            .map_err(|_| Reason::CompressionError)?;
        let mut state = self.shared.lock();
        let Some(stream) = state.streams.get_mut(&id) else {
            return Ok(());
        };
        if stream.outcome.is_some() {
            return Ok(());
        }
        if fields.size > MAX_HEADER_LIST {
            let why = format!("the answer's metadata is larger than {MAX_HEADER_LIST} bytes");
            state.refuse(id, Reason::Cancel, why);
            return Ok(());
        }
        if stream.head.is_some() {
            // Trailers: they end the answer and hold no pseudo-header.
            if !end_stream || fields.status.is_some() || fields.malformed {
                let why = "the answer's trailers are malformed".to_owned();
                state.refuse(id, Reason::ProtocolError, why);
                return Ok(());
            }
            stream.trailers = Some(fields.headers);
            state.finish(id, Ok(()));
            return Ok(());
        }
        let Some(head) = fields.into_head() else {
            let why = "the answer's headers are malformed".to_owned();
            state.refuse(id, Reason::ProtocolError, why);
            return Ok(());
        };
        if head.status.is_informational() {
            if end_stream {
                let why = "the answer ended after an informational status".to_owned();
                state.refuse(id, Reason::ProtocolError, why);
            }
            return Ok(());
        }
        stream.head = Some(head);
        if end_stream {
            state.finish(id, Ok(()));
        }
        Ok(())
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        let Some(entries) = frame::settings_entries(head, payload)? else {
            return Ok(());
        };
        self.settings_read = true;
        let mut state = self.shared.lock();
        for (id, value) in entries {
            match id {
                setting::INITIAL_WINDOW_SIZE => {
                    let State {
                        initial_send_window,
                        streams,
                        ..
                    } = &mut *state;
                    let windows = streams.values_mut().map(|stream| &mut stream.send_window);
                    frame::apply_initial_window(value, initial_send_window, windows)?;
                }
                setting::MAX_FRAME_SIZE => state.max_send_frame = frame::max_frame_size(value)?,
                setting::MAX_CONCURRENT_STREAMS => state.max_streams = value as usize,
                setting::HEADER_TABLE_SIZE => state.table_update_due = true,
                // Push is for servers to ask of nobody.
                _ => {}
            }
        }
        frame::frame(&mut state.output, kind::SETTINGS, flag::ACK, 0, &[]);
        state.pump_all();
        Ok(())
    }

    fn goaway(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if head.stream != 0 {
            return Err(Reason::ProtocolError);
        }
        let (Some(last), Some(code)) = (payload.get(0..4), payload.get(4..8)) else {
            return Err(Reason::FrameSizeError);
        };
        let last = u32::from_be_bytes([last[0] & 0x7f, last[1], last[2], last[3]]);
        let code = u32::from_be_bytes([code[0], code[1], code[2], code[3]]);
        self.shared.accepting.store(false, Ordering::Relaxed);
        let mut state = self.shared.lock();
        let why = format!("the peer is going away ({})", reason_name(code));
        // Calls past the last one the peer took were not processed (RFC 9113 §6.8).
        let untaken: Vec<u32> = state
            .streams
            .keys()
            .filter(|&&id| id > last)
            .copied()
            .collect();
        for id in untaken {
            state.finish(id, Err(CallError::Unsent(why.clone())));
        }
        state.closed.get_or_insert(why);
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        let increment = frame::window_increment(payload)?;
        if head.stream == 0 {
            if increment == 0 {
                return Err(Reason::ProtocolError);
            }
            let mut state = self.shared.lock();
            state.send_window += increment;
            if state.send_window > frame::MAX_WINDOW {
                return Err(Reason::FlowControlError);
            }
            state.pump_all();
            return Ok(());
        }
        let mut state = self.shared.lock();
        state.check_stream(head.stream)?;
        let Some(stream) = state.streams.get_mut(&head.stream) else {
            return Ok(());
        };
        stream.send_window += increment;
        if increment == 0 || stream.send_window > frame::MAX_WINDOW {
            let why = "the peer sent a bad WINDOW_UPDATE".to_owned();
            state.refuse(head.stream, Reason::FlowControlError, why);
            return Ok(());
        }
        state.pump_all();
        Ok(())
    }
}

/// An error code's name (RFC 9113 §7), for messages.
fn reason_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("error code {other:#x}"),
    };
    name.to_owned()
}

/// An answer's header fields as they are decoded.
#[derive(Default)]
struct AnswerFields {
    status: Option<StatusCode>,
    headers: HeaderMap,
    size: usize,
    regular_seen: bool,
    malformed: bool,
}

impl AnswerFields {
    fn add(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + 32;
        if self.size > MAX_HEADER_LIST || self.malformed {
            return;
        }
        if name.first() == Some(&b':') {
            let status = (name == b":status" && !self.regular_seen && self.status.is_none())
                .then(|| StatusCode::from_bytes(value).ok())
                .flatten();
            match status {
                Some(status) => self.status = Some(status),
                None => self.malformed = true,
            }
            return;
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) || frame::connection_specific(name) {
            self.malformed = true;
            return;
        }
        if !frame::append_field(&mut self.headers, name, value) {
            self.malformed = true;
        }
    }

    /// The answer's head; `None` when it is malformed (RFC 9113 §8.1.1).
    fn into_head(self) -> Option<http::response::Parts> {
        if self.malformed {
            return None;
        }
        let (mut head, ()) = http::Response::new(()).into_parts();
        head.status = self.status?;
        head.version = http::Version::HTTP_2;
        head.headers = self.headers;
        Some(head)
    }
}

#[cfg(test)]
mod tests;
