//! One call from its request to the end of its answer, run in its connection's task: the
//! service's future, then the answer's frames written under the peer's flow control. A stream
//! the peer resets ends its call at the next poll, dropping the service's future (and with it
//! the work queued for it).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::Body;
use hyper::Response;

use super::frame::{self, flag, kind, Reason};
use super::shared::{Shared, State};
use crate::hpack;
use crate::server::connection::Busy;
use crate::server::{AnswerBody, BoxError};

type Answer<B> = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

pub(super) struct Call<B> {
    shared: Arc<Shared>,
    id: u32,
    phase: Phase<B>,
    /// Counts the call in flight for the connection's deadlines until it is dropped.
    _busy: Busy,
}

enum Phase<B> {
    Calling(Answer<B>),
    /// The answer's head is written; its body goes out as it comes. `data`: a chunk taken
    /// from the body and not yet all written (the peer's window was short).
    Sending {
        body: B,
        data: Bytes,
    },
    /// Answered in full.
    Answered,
    /// Reset, by the peer or by the server.
    Done,
}

impl<B: AnswerBody> Call<B> {
    pub(super) fn new(shared: Arc<Shared>, id: u32, answer: Answer<B>, busy: Busy) -> Call<B> {
        Call {
            shared,
            id,
            phase: Phase::Calling(answer),
            _busy: busy,
        }
    }
}

impl<B: AnswerBody> Future for Call<B> {
    /// Whether the call was answered in full (not reset by either side).
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Done => return Poll::Ready(false),
                Phase::Answered => return Poll::Ready(true),
                Phase::Calling(answer) => {
                    if !still_open(&this.shared, this.id, cx) {
                        this.phase = Phase::Done;
                        continue;
                    }
                    // A panic (a bug) ends this call alone, its stream reset; the connection
                    // and the calls beside it go on. The future is never polled again.
                    let polled =
                        std::panic::catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx)));
                    match polled {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(Ok(response))) => {
                            let (parts, body) = response.into_parts();
                            let mut state = this.shared.lock();
                            if !state.streams.contains_key(&this.id) {
                                this.phase = Phase::Done;
                                continue;
                            }
                            let end = body.is_end_stream();
                            write_head(
                                &mut state,
                                this.id,
                                parts.status.as_u16(),
                                &parts.headers,
                                end,
                            );
                            if end {
                                state.close_from_call(this.id, None);
                                this.phase = Phase::Answered;
                            } else {
                                this.phase = Phase::Sending {
                                    body,
                                    data: Bytes::new(),
                                };
                            }
                        }
                        Ok(Poll::Ready(Err(error))) => {
                            tracing::debug!(error = %error, "an HTTP/2 call failed; resetting its stream");
                            this.reset(Reason::InternalError);
                        }
                        Err(_) => this.reset(Reason::InternalError),
                    }
                }
                Phase::Sending { body, data } => {
                    let mut state = this.shared.lock();
                    let Some(stream) = state.streams.get_mut(&this.id) else {
                        this.phase = Phase::Done;
                        continue;
                    };
                    remember(&mut stream.call, cx);
                    if !data.is_empty() || state.output_full() {
                        match send_data(&mut state, this.id, data, body.is_end_stream()) {
                            Sent::Blocked => {
                                state.blocked.push(cx.waker().clone());
                                return Poll::Pending;
                            }
                            Sent::Ended => this.phase = Phase::Answered,
                            Sent::All => {}
                        }
                        continue;
                    }
                    drop(state);
                    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        Pin::new(&mut *body).poll_frame(cx)
                    }));
                    match polled {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(Some(Ok(frame)))) => match frame.into_data() {
                            Ok(mut chunk) => *data = chunk.copy_to_bytes(chunk.remaining()),
                            Err(frame) => {
                                let mut state = this.shared.lock();
                                this.phase = match frame.into_trailers() {
                                    Ok(trailers) if state.streams.contains_key(&this.id) => {
                                        write_trailers(&mut state, this.id, &trailers);
                                        state.close_from_call(this.id, None);
                                        Phase::Answered
                                    }
                                    Ok(_) => Phase::Done,
                                    Err(_) => {
                                        state.close_from_call(this.id, Some(Reason::InternalError));
                                        Phase::Done
                                    }
                                };
                            }
                        },
                        Ok(Poll::Ready(None)) => {
                            let mut state = this.shared.lock();
                            this.phase = if state.streams.contains_key(&this.id) {
                                frame::frame(
                                    &mut state.output,
                                    kind::DATA,
                                    flag::END_STREAM,
                                    this.id,
                                    &[],
                                );
                                state.close_from_call(this.id, None);
                                Phase::Answered
                            } else {
                                Phase::Done
                            };
                        }
                        Ok(Poll::Ready(Some(Err(error)))) => {
                            let error: BoxError = error.into();
                            tracing::debug!(error = %error, "an HTTP/2 answer's body failed; resetting its stream");
                            this.reset(Reason::InternalError);
                        }
                        Err(_) => this.reset(Reason::InternalError),
                    }
                }
            }
        }
    }
}

/// Whether the call's stream is still open; if so, the call is woken when it is reset.
fn still_open(shared: &Shared, id: u32, cx: &mut Context<'_>) -> bool {
    let mut state = shared.lock();
    match state.streams.get_mut(&id) {
        Some(stream) => {
            remember(&mut stream.call, cx);
            true
        }
        None => false,
    }
}

impl<B> Call<B> {
    fn reset(&mut self, reason: Reason) {
        self.phase = Phase::Done;
        self.shared.lock().close_from_call(self.id, Some(reason));
    }
}

impl<B> Drop for Call<B> {
    /// A call dropped before its end (its connection is going): its stream is cancelled.
    fn drop(&mut self) {
        if !matches!(self.phase, Phase::Done | Phase::Answered) {
            self.shared.lock().close(self.id, Some(Reason::Cancel));
        }
    }
}

fn remember(slot: &mut Option<std::task::Waker>, cx: &Context<'_>) {
    if !slot
        .as_ref()
        .is_some_and(|waker| waker.will_wake(cx.waker()))
    {
        *slot = Some(cx.waker().clone());
    }
}

/// How far [`send_data`] got.
enum Sent {
    /// All of the data is written; the stream goes on.
    All,
    /// All of it, and the stream ended with it.
    Ended,
    /// The peer's window or the output's room ran out first.
    Blocked,
}

/// Writes as much of `data` as the windows and the output's room allow, the last frame
/// ending the stream when `then_end`.
fn send_data(state: &mut State, id: u32, data: &mut Bytes, then_end: bool) -> Sent {
    loop {
        if state.output_full() {
            return Sent::Blocked;
        }
        if data.is_empty() {
            return Sent::All;
        }
        let Some(stream) = state.streams.get_mut(&id) else {
            data.clear();
            return Sent::All;
        };
        let window = stream.send_window.min(state.send_window);
        let room = usize::try_from(window)
            .unwrap_or(0)
            .min(state.max_send_frame);
        if room == 0 {
            return Sent::Blocked;
        }
        let chunk = data.split_to(room.min(data.len()));
        stream.send_window -= chunk.len() as i64;
        state.send_window -= chunk.len() as i64;
        let end = data.is_empty() && then_end;
        let flags = if end { flag::END_STREAM } else { 0 };
        frame::frame(&mut state.output, kind::DATA, flags, id, &chunk);
        if end {
            state.close_from_call(id, None);
            return Sent::Ended;
        }
    }
}

fn write_head(state: &mut State, id: u32, status: u16, headers: &http::HeaderMap, end: bool) {
    let mut block = std::mem::take(&mut state.scratch);
    block.clear();
    hpack::encode_status(&mut block, status);
    encode_headers(&mut block, headers);
    let max = state.max_send_frame;
    frame::header_block(&mut state.output, id, &block, end, max);
    state.scratch = block;
}

fn write_trailers(state: &mut State, id: u32, trailers: &http::HeaderMap) {
    let mut block = std::mem::take(&mut state.scratch);
    block.clear();
    encode_headers(&mut block, trailers);
    let max = state.max_send_frame;
    frame::header_block(&mut state.output, id, &block, true, max);
    state.scratch = block;
}

fn encode_headers(block: &mut bytes::BytesMut, headers: &http::HeaderMap) {
    for (name, value) in headers {
        // Services written for HTTP/1 may still set them.
        if !frame::connection_specific(name.as_str().as_bytes()) {
            hpack::encode_field(block, name.as_str().as_bytes(), value.as_bytes());
        }
    }
}
