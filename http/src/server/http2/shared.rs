//! What a connection's task shares with its calls: the streams' state, the output not yet
//! written, and the flow-control windows. One lock for all of it: the calls run in the
//! connection's own task, so it is all but never contended; only a request body read from
//! another task (the router passing a stream on) takes it from outside.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Body, Frame};

use super::frame::{self, Reason};

/// Output past this much waiting to be written stops the connection reading frames and its
/// calls writing answers, until the peer reads: a peer that never reads (a PING flood, a call
/// whose answer nobody takes) holds at most this much of the server's memory.
pub(super) const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// Receive windows: HTTP/2's default (64 KiB) would let a multi-megabyte tensor cross in dozens
/// of round trips. Data a call has not read is never given back, so one connection buffers at
/// most `CONNECTION_WINDOW` of requests, however many calls it opens.
pub(super) const STREAM_WINDOW: u32 = 1 << 20;
pub(super) const CONNECTION_WINDOW: u32 = 4 << 20;
/// Window is given back in steps of a quarter of it: small calls then cost no WINDOW_UPDATE
/// of their own, and a large one never waits for window.
const GIVE_BACK_AT: u32 = CONNECTION_WINDOW / 4;
const STREAM_GIVE_BACK_AT: u32 = STREAM_WINDOW / 4;

pub(super) struct Shared {
    state: Mutex<State>,
    /// The connection's task: woken when a call frees receive window to announce.
    pub(super) task: AtomicWaker,
}

impl Shared {
    pub(super) fn new(state: State) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(state),
            task: AtomicWaker::new(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        crate::server::lock(&self.state)
    }
}

pub(super) struct State {
    /// Calls not yet answered in full (or reset), by stream id.
    pub(super) streams: HashMap<u32, Stream>,
    /// Frames to write, in order; `written` of them are on the wire.
    pub(super) output: Vec<u8>,
    pub(super) written: usize,
    /// What the peer lets the server send on the connection as a whole.
    pub(super) send_window: i64,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE and SETTINGS_MAX_FRAME_SIZE.
    pub(super) initial_send_window: i64,
    pub(super) max_send_frame: usize,
    /// Bytes calls have read off their bodies (or that were dropped unread) and the connection
    /// window has not been given back for yet.
    pub(super) released: u32,
    /// Streams whose own window has bytes to give back.
    pub(super) stream_updates: Vec<u32>,
    /// Calls waiting for send window or for room in the output.
    pub(super) blocked: Vec<Waker>,
    /// The header block being written, kept to reuse its allocation.
    pub(super) scratch: bytes::BytesMut,
}

impl State {
    pub(super) fn new() -> State {
        State {
            streams: HashMap::new(),
            output: Vec::with_capacity(16 * 1024),
            written: 0,
            send_window: frame::DEFAULT_WINDOW,
            initial_send_window: frame::DEFAULT_WINDOW,
            max_send_frame: frame::DEFAULT_MAX_FRAME,
            released: 0,
            stream_updates: Vec::new(),
            blocked: Vec::new(),
            scratch: bytes::BytesMut::new(),
        }
    }

    /// Output waiting to be written.
    pub(super) fn pending_output(&self) -> usize {
        self.output.len() - self.written
    }

    pub(super) fn output_full(&self) -> bool {
        self.pending_output() >= OUTPUT_HIGH_WATER
    }

    /// Wakes every call waiting to write: window came, or output drained.
    pub(super) fn unblock(&mut self) {
        for waker in self.blocked.drain(..) {
            waker.wake();
        }
    }

    /// Ends a stream from the server's side: answered in full, or reset with `reason`. A peer
    /// still sending the request is told to stop (RST_STREAM NO_ERROR after a full answer,
    /// RFC 9113 §8.1). What it sent that nobody read is given back to the connection window.
    pub(super) fn close(&mut self, id: u32, reset: Option<Reason>) {
        if let Some(stream) = self.remove(id, reset) {
            stream.wake();
        }
    }

    /// [`State::close`] by the stream's own call, which is running and so is not woken: waking
    /// it would poll the connection's task once more for nothing, and the wake of a running
    /// task makes tokio rouse an idle worker thread (a futex call per call, measured).
    pub(super) fn close_from_call(&mut self, id: u32, reset: Option<Reason>) {
        if let Some(mut stream) = self.remove(id, reset) {
            stream.call = None;
            stream.wake();
        }
    }

    fn remove(&mut self, id: u32, reset: Option<Reason>) -> Option<Stream> {
        let stream = self.streams.remove(&id)?;
        self.released = self.released.saturating_add(stream.unread());
        match reset {
            Some(reason) => frame::rst_stream(&mut self.output, id, reason),
            None if !stream.request_ended => {
                frame::rst_stream(&mut self.output, id, Reason::NoError)
            }
            None => {}
        }
        Some(stream)
    }

    /// A stream the peer reset, or that the connection gave up on: its call and its body
    /// reader are woken to find it gone.
    /// Returns whether the stream was open.
    pub(super) fn forget(&mut self, id: u32) -> bool {
        let Some(stream) = self.streams.remove(&id) else {
            return false;
        };
        self.released = self.released.saturating_add(stream.unread());
        stream.wake();
        true
    }

    /// `bytes` of stream `id`'s data are done with (read, dropped, or padding); returns whether
    /// enough window is now free that the connection should announce it.
    pub(super) fn give_back(&mut self, id: u32, bytes: u32) -> bool {
        self.released = self.released.saturating_add(bytes);
        let mut due = self.released >= GIVE_BACK_AT;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.released = stream.released.saturating_add(bytes);
            if !stream.request_ended
                && !stream.update_queued
                && stream.released >= STREAM_GIVE_BACK_AT
            {
                stream.update_queued = true;
                self.stream_updates.push(id);
                due = true;
            }
        }
        due
    }
}

/// One call's stream.
pub(super) struct Stream {
    /// Request data received and not yet read by the call.
    pub(super) inbound: VecDeque<Bytes>,
    /// END_STREAM arrived: the request is complete.
    pub(super) request_ended: bool,
    /// The call dropped its body: what still comes is given back at once.
    pub(super) body_dropped: bool,
    /// What the peer may still send on this stream; `released`: bytes read and not yet given
    /// back, `update_queued`: the stream is in `State::stream_updates`.
    pub(super) receive_window: i64,
    pub(super) released: u32,
    pub(super) update_queued: bool,
    /// What the server may still send on this stream.
    pub(super) send_window: i64,
    /// The request's content-length, when it gave one, and the body bytes received so far.
    pub(super) content_length: Option<u64>,
    pub(super) received: u64,
    /// The call's task and the body's reader, woken when the stream changes under them.
    pub(super) call: Option<Waker>,
    pub(super) reader: Option<Waker>,
}

impl Stream {
    pub(super) fn new(receive_window: i64, send_window: i64, request_ended: bool) -> Stream {
        Stream {
            inbound: VecDeque::new(),
            request_ended,
            body_dropped: false,
            receive_window,
            released: 0,
            update_queued: false,
            send_window,
            content_length: None,
            received: 0,
            call: None,
            reader: None,
        }
    }

    fn unread(&self) -> u32 {
        let bytes: usize = self.inbound.iter().map(Bytes::len).sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    pub(super) fn wake_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
    }

    fn wake(mut self) {
        self.wake_reader();
        if let Some(call) = self.call.take() {
            call.wake();
        }
    }
}

/// Why a call's body could not be read to its end.
#[derive(Debug, thiserror::Error)]
#[error("the client cancelled the call, or its connection ended, before the request was complete")]
pub struct StreamGone;

/// A call's request body on the HTTP/2 listener: the DATA frames of its stream as they come.
/// Reading it gives the peer its flow-control window back.
pub struct Http2Body {
    shared: Arc<Shared>,
    id: u32,
    /// Whether the end was seen (a body read past it is not an error).
    done: bool,
}

impl Http2Body {
    pub(super) fn new(shared: Arc<Shared>, id: u32, ended: bool) -> Http2Body {
        Http2Body {
            shared,
            id,
            done: ended,
        }
    }
}

impl Body for Http2Body {
    type Data = Bytes;
    type Error = StreamGone;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamGone>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut state = self.shared.lock();
        let Some(stream) = state.streams.get_mut(&self.id) else {
            drop(state);
            self.done = true;
            return Poll::Ready(Some(Err(StreamGone)));
        };
        if let Some(data) = stream.inbound.pop_front() {
            let read = u32::try_from(data.len()).unwrap_or(u32::MAX);
            let id = self.id;
            let due = state.give_back(id, read);
            drop(state);
            if due {
                self.shared.task.wake();
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if stream.request_ended {
            drop(state);
            self.done = true;
            return Poll::Ready(None);
        }
        if !stream
            .reader
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            stream.reader = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for Http2Body {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.shared.lock();
        if let Some(stream) = state.streams.get_mut(&self.id) {
            stream.body_dropped = true;
            stream.reader = None;
            let unread = stream.unread();
            stream.inbound.clear();
            state.released = state.released.saturating_add(unread);
            if state.released >= GIVE_BACK_AT {
                drop(state);
                self.shared.task.wake();
            }
        }
    }
}
