//! One HTTP/2 connection's frames: read, checked, turned into calls, and the calls' answers
//! written back. Everything the gRPC listener needs of HTTP/2 and nothing else (no server push,
//! no priorities, no upgrade from HTTP/1.1), with the defences a server facing hostile clients
//! needs built in rather than bolted on:
//!
//! - every buffer is bounded: a frame is at most 16 KiB (the listener never advertises more), a
//!   header block at most [`MAX_HEADER_BLOCK`], request data at most the connection's receive
//!   window (data a call has not read is never given back), output at most
//!   `OUTPUT_HIGH_WATER` (past it the connection stops reading, so a peer that does not read
//!   its answers cannot make the server queue more);
//! - calls at once are capped ([`MAX_CONCURRENT_STREAMS`]); calls past the cap are refused one
//!   by one (REFUSED_STREAM, safe to retry);
//! - calls cancelled by their client before their answer count against it ("rapid reset",
//!   CVE-2023-44487): past [`MAX_RESET_DEBT`] more cancellations than completed calls the
//!   connection is ended with ENHANCE_YOUR_CALM, however the cancellations are paced;
//! - a call whose headers are over [`MAX_HEADER_LIST`] is answered 431 alone, the connection
//!   goes on; a header block past [`MAX_HEADER_BLOCK`] ends the connection (a block that never
//!   ends: CONTINUATION floods);
//! - anything that breaks the protocol ends the connection with GOAWAY and the RFC's error code.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, Method, Request, Uri, Version};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::call::Call;
use super::frame::{self, flag, kind, setting, Head, Input, Reason};
use super::shared::{Http2Body, Shared, State, Stream, CONNECTION_WINDOW, STREAM_WINDOW};
use crate::hpack;
use crate::server::connection::{Activity, Busy};
use crate::server::{AnswerBody, MinRateBody, ServerLimits, Serves};

/// Calls one connection may have open at once: far past any client's pipelining (tritonclient,
/// perf_analyzer and the router multiplex tens), low enough that one connection cannot hold the
/// server's memory in stream state. Work is bounded by the servers' own limits on top.
pub(super) const MAX_CONCURRENT_STREAMS: usize = 256;
/// Metadata of one call: far above what any client sends (a few hundred bytes).
pub(super) const MAX_HEADER_LIST: usize = 64 * 1024;
/// A header block as sent (HPACK-compressed) may be this long before the connection is ended:
/// twice the decoded limit, so that a block just over the limit is still read and answered 431.
const MAX_HEADER_BLOCK: usize = 2 * MAX_HEADER_LIST;
/// Cancelled calls a connection may have made beyond the calls it let finish.
pub(super) const MAX_RESET_DEBT: u32 = 100;
/// The longest header block [`RecentHead`] keeps: a call's metadata as clients send it once
/// their fields are in the dynamic table is tens of bytes.
const RECENT_HEAD_BLOCK: usize = 1024;

/// How a connection's frames ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The peer closed the connection, or it broke (a reset, a write that failed).
    Closed,
    /// After GOAWAY (the server's or the peer's), every call finished and was written.
    Finished,
    /// The peer broke or abused the protocol; GOAWAY with this reason went out.
    Failed(Reason),
}

pub(super) struct Driver<S> {
    io: TcpStream,
    pub(super) shared: Arc<Shared>,
    service: S,
    limits: ServerLimits,
    slow_bodies: Arc<AtomicU64>,
    activity: Arc<Activity>,
    decoder: hpack::Decoder,
    input: Input,
    preface_read: bool,
    settings_read: bool,
    /// A header block still waiting for its CONTINUATION frames.
    block: Option<PartialBlock>,
    /// What the peer may still send on the connection as a whole.
    receive_window: i64,
    /// The highest stream the peer opened.
    last_stream: u32,
    reset_debt: u32,
    /// GOAWAY went out (`Some(NoError)` when draining) or came in.
    going_away: Option<Reason>,
    peer_going_away: bool,
    /// When a frame last arrived, and when the keepalive PING went out unanswered.
    pub(super) last_heard: Instant,
    pub(super) ping_sent: Option<Instant>,
    recent: Option<RecentHead>,
}

/// The header block that opened the latest call, and its head once the same block came twice.
///
/// A client's calls mostly carry the same metadata, and once it is in the dynamic table each
/// call's block is the same few bytes of indexes. A block decodes to the same fields whenever
/// the table is the same, so while the table is unchanged (`Decoder::generation`) a block equal
/// to this one is not decoded again: its head is cloned. Kept only for a block that left the
/// table as it was (such a block may be skipped without the table missing a change) and that
/// made a well-formed call.
struct RecentHead {
    block: Vec<u8>,
    generation: u64,
    /// The request's head and its `content-length`; `None` until the block came a second
    /// time, so that a client whose blocks all differ costs no clone.
    head: Option<(http::request::Parts, Option<u64>)>,
}

struct PartialBlock {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

/// The keepalive PING's payload.
const PING_PAYLOAD: [u8; 8] = *b"weir-ka!";

impl<S> Driver<S> {
    pub(super) fn new(
        io: TcpStream,
        service: S,
        limits: ServerLimits,
        slow_bodies: Arc<AtomicU64>,
        activity: Arc<Activity>,
    ) -> Driver<S> {
        let mut state = State::new();
        frame::settings(
            &mut state.output,
            &[
                (
                    setting::MAX_CONCURRENT_STREAMS,
                    MAX_CONCURRENT_STREAMS as u32,
                ),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST as u32),
            ],
        );
        let raise = CONNECTION_WINDOW - frame::DEFAULT_WINDOW as u32;
        frame::window_update(&mut state.output, 0, raise);
        Driver {
            io,
            shared: Shared::new(state),
            service,
            limits,
            slow_bodies,
            activity,
            decoder: hpack::Decoder::new(4096),
            input: Input::new(),
            preface_read: false,
            settings_read: false,
            block: None,
            receive_window: i64::from(CONNECTION_WINDOW),
            last_stream: 0,
            reset_debt: 0,
            going_away: None,
            peer_going_away: false,
            last_heard: Instant::now(),
            ping_sent: None,
            recent: None,
        }
    }

    /// Starts a graceful close: GOAWAY naming the last call taken; calls in flight finish.
    pub(super) fn go_away(&mut self) {
        if self.going_away.is_none() {
            self.going_away = Some(Reason::NoError);
            frame::goaway(
                &mut self.shared.lock().output,
                self.last_stream,
                Reason::NoError,
            );
        }
    }

    pub(super) fn send_ping(&mut self) {
        self.ping_sent = Some(Instant::now());
        frame::frame(
            &mut self.shared.lock().output,
            kind::PING,
            0,
            0,
            &PING_PAYLOAD,
        );
    }

    fn fail(&mut self, reason: Reason) {
        self.going_away = Some(reason);
        frame::goaway(&mut self.shared.lock().output, self.last_stream, reason);
    }

    /// Writes what is queued; Ready when all is written. Also returns whether calls waiting
    /// for room in the output were woken.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> (Poll<std::io::Result<()>>, bool) {
        let mut state = self.shared.lock();
        let was_full = state.output_full();
        let result = loop {
            if state.pending_output() == 0 {
                state.output.clear();
                state.written = 0;
                break Poll::Ready(Ok(()));
            }
            let from = state.written;
            match std::pin::Pin::new(&mut self.io).poll_write(cx, &state.output[from..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => state.written += written,
                Poll::Ready(Err(error)) => break Poll::Ready(Err(error)),
                Poll::Pending => {
                    if state.written >= frame::DEFAULT_MAX_FRAME * 4 {
                        let written = state.written;
                        state.output.drain(..written);
                        state.written = 0;
                    }
                    break Poll::Pending;
                }
            }
        };
        let unblocked = was_full && !state.output_full() && !state.blocked.is_empty();
        if unblocked {
            state.unblock();
        }
        (result, unblocked)
    }

    /// Gives the peer back the window its data's readers freed.
    fn announce_windows(&mut self) {
        let mut state = self.shared.lock();
        let State {
            streams,
            stream_updates,
            output,
            released,
            ..
        } = &mut *state;
        for id in stream_updates.drain(..) {
            if let Some(stream) = streams.get_mut(&id) {
                stream.update_queued = false;
                if stream.released > 0 && !stream.request_ended {
                    frame::window_update(output, id, stream.released);
                    stream.receive_window += i64::from(stream.released);
                }
                stream.released = 0;
            }
        }
        if *released >= CONNECTION_WINDOW / 4 {
            frame::window_update(output, 0, *released);
            self.receive_window += i64::from(*released);
            *released = 0;
        }
    }
}

impl<S> Driver<S> {
    /// Drives the connection until it ends: reads and handles frames, runs the calls, writes
    /// their answers.
    pub(super) fn poll_drive<B>(
        &mut self,
        calls: &mut FuturesUnordered<Call<B>>,
        cx: &mut Context<'_>,
    ) -> Poll<Ended>
    where
        S: Serves<B, Http2Body>,
        B: AnswerBody,
    {
        self.shared.task.register(cx.waker());
        loop {
            let mut again = false;
            let reading = self
                .going_away
                .is_none_or(|reason| reason == Reason::NoError);
            if reading && !self.shared.lock().output_full() {
                match self.input.poll_read(&mut self.io, cx) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ended::Closed),
                    Poll::Ready(Ok(_)) => {
                        again = true;
                        self.last_heard = Instant::now();
                        if let Err(reason) = self.parse(calls) {
                            self.fail(reason);
                            calls.clear();
                        }
                    }
                    Poll::Pending => {}
                }
            }
            while let Poll::Ready(Some(answered)) = calls.poll_next_unpin(cx) {
                // A call answered in full pays off one cancellation.
                if answered {
                    self.reset_debt = self.reset_debt.saturating_sub(1);
                }
            }
            self.announce_windows();
            let (flushed, unblocked) = self.poll_flush(cx);
            match flushed {
                Poll::Ready(Err(_)) => return Poll::Ready(Ended::Closed),
                Poll::Ready(Ok(())) => match self.going_away {
                    Some(Reason::NoError) | None => {
                        if (self.going_away.is_some() || self.peer_going_away) && calls.is_empty() {
                            return Poll::Ready(Ended::Finished);
                        }
                    }
                    Some(reason) => return Poll::Ready(Ended::Failed(reason)),
                },
                Poll::Pending => {}
            }
            if !again && !unblocked {
                return Poll::Pending;
            }
        }
    }

    /// Handles every whole frame read.
    fn parse<B>(&mut self, calls: &mut FuturesUnordered<Call<B>>) -> Result<(), Reason>
    where
        S: Serves<B, Http2Body>,
        B: AnswerBody,
    {
        if !self.preface_read {
            match self.input.strip_prefix(frame::PREFACE) {
                None => return Ok(()),
                Some(false) => return Err(Reason::ProtocolError),
                Some(true) => self.preface_read = true,
            }
        }
        let mut input = std::mem::take(&mut self.input);
        let result = self.frames(&mut input, calls);
        self.input = input;
        result
    }

    fn frames<B>(
        &mut self,
        input: &mut Input,
        calls: &mut FuturesUnordered<Call<B>>,
    ) -> Result<(), Reason>
    where
        S: Serves<B, Http2Body>,
        B: AnswerBody,
    {
        while let Some((head, payload)) = input.next_frame()? {
            if !self.settings_read && head.kind != kind::SETTINGS {
                return Err(Reason::ProtocolError);
            }
            self.frame(head, payload, calls)?;
        }
        Ok(())
    }

    fn frame<B>(
        &mut self,
        head: Head,
        payload: &[u8],
        calls: &mut FuturesUnordered<Call<B>>,
    ) -> Result<(), Reason>
    where
        S: Serves<B, Http2Body>,
        B: AnswerBody,
    {
        if let Some(block) = &mut self.block {
            if head.kind != kind::CONTINUATION || head.stream != block.stream {
                return Err(Reason::ProtocolError);
            }
            if block.bytes.len() + payload.len() > MAX_HEADER_BLOCK {
                return Err(Reason::EnhanceYourCalm);
            }
            block.bytes.extend_from_slice(payload);
            if head.flags & flag::END_HEADERS != 0 {
                if let Some(block) = self.block.take() {
                    self.header_block(block.stream, block.end_stream, &block.bytes, calls)?;
                }
            }
            return Ok(());
        }
        match head.kind {
            kind::DATA => self.data(head, payload),
            kind::HEADERS => {
                if head.stream == 0 || head.stream.is_multiple_of(2) {
                    return Err(Reason::ProtocolError);
                }
                let skip = if head.flags & flag::PRIORITY != 0 {
                    5
                } else {
                    0
                };
                let fragment =
                    frame::unpadded(payload, head.flags, skip).ok_or(Reason::ProtocolError)?;
                let end_stream = head.flags & flag::END_STREAM != 0;
                if head.flags & flag::END_HEADERS != 0 {
                    self.header_block(head.stream, end_stream, fragment, calls)
                } else {
                    if fragment.len() > MAX_HEADER_BLOCK {
                        return Err(Reason::EnhanceYourCalm);
                    }
                    self.block = Some(PartialBlock {
                        stream: head.stream,
                        end_stream,
                        bytes: fragment.to_vec(),
                    });
                    Ok(())
                }
            }
            kind::CONTINUATION | kind::PUSH_PROMISE => Err(Reason::ProtocolError),
            kind::PRIORITY if head.stream == 0 => Err(Reason::ProtocolError),
            kind::PRIORITY if payload.len() != 5 => Err(Reason::FrameSizeError),
            kind::RST_STREAM => self.rst_stream(head, payload),
            kind::SETTINGS => self.settings(head, payload),
            kind::PING => {
                if frame::ping(head, payload, &mut self.shared.lock().output)? {
                    self.ping_sent = None;
                }
                Ok(())
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    return Err(Reason::ProtocolError);
                }
                self.peer_going_away = true;
                Ok(())
            }
            kind::WINDOW_UPDATE => self.window_update(head, payload),
            // PRIORITY is advice the listener does not take; unknown types are ignored
            // (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn data(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        // Even streams would be the server's, and it opens none.
        if head.stream == 0 || head.stream.is_multiple_of(2) {
            return Err(Reason::ProtocolError);
        }
        let length = payload.len() as i64;
        if length > self.receive_window {
            return Err(Reason::FlowControlError);
        }
        self.receive_window -= length;
        let data = frame::unpadded(payload, head.flags, 0).ok_or(Reason::ProtocolError)?;
        let window = payload.len() as u32;
        let mut state = self.shared.lock();
        let state = &mut *state;
        let Some(stream) = state.streams.get_mut(&head.stream) else {
            if head.stream > self.last_stream {
                return Err(Reason::ProtocolError);
            }
            // A stream already answered or reset: its data is dropped, its window given back.
            state.give_back(head.stream, window);
            return Ok(());
        };
        let ends = head.flags & flag::END_STREAM != 0;
        stream.received += data.len() as u64;
        let refusal = if stream.request_ended {
            Some(Reason::StreamClosed)
        } else if length > stream.receive_window {
            Some(Reason::FlowControlError)
        } else if stream.content_length.is_some_and(|expected| {
            stream.received > expected || (ends && stream.received != expected)
        }) {
            // A body longer or shorter than its content-length is malformed (RFC 9113 §8.1.1).
            Some(Reason::ProtocolError)
        } else {
            None
        };
        if let Some(reason) = refusal {
            state.give_back(head.stream, window);
            state.close(head.stream, Some(reason));
            return charge(&mut self.reset_debt);
        }
        stream.receive_window -= length;
        let kept = if stream.body_dropped || data.is_empty() {
            0
        } else {
            stream
                .inbound
                .push_back(bytes::Bytes::copy_from_slice(data));
            data.len() as u32
        };
        if ends {
            stream.request_ended = true;
        }
        if kept > 0 || stream.request_ended {
            stream.wake_reader();
        }
        state.give_back(head.stream, window - kept);
        Ok(())
    }

    fn rst_stream(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if head.stream == 0 || head.stream.is_multiple_of(2) {
            return Err(Reason::ProtocolError);
        }
        if payload.len() != 4 {
            return Err(Reason::FrameSizeError);
        }
        if head.stream > self.last_stream {
            return Err(Reason::ProtocolError);
        }
        if self.shared.lock().forget(head.stream) {
            return charge(&mut self.reset_debt);
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
                setting::ENABLE_PUSH if value > 1 => return Err(Reason::ProtocolError),
                setting::INITIAL_WINDOW_SIZE => {
                    let State {
                        initial_send_window,
                        streams,
                        ..
                    } = &mut *state;
                    let windows = streams.values_mut().map(|stream| &mut stream.send_window);
                    frame::apply_initial_window(value, initial_send_window, windows)?;
                    state.unblock();
                }
                setting::MAX_FRAME_SIZE => state.max_send_frame = frame::max_frame_size(value)?,
                // The encoder never uses the dynamic table, so the peer's table size does not
                // matter; the listener pushes nothing and takes no limits from a client.
                setting::HEADER_TABLE_SIZE
                | setting::ENABLE_PUSH
                | setting::MAX_CONCURRENT_STREAMS
                | setting::MAX_HEADER_LIST_SIZE => {}
                _ => {}
            }
        }
        frame::frame(&mut state.output, kind::SETTINGS, flag::ACK, 0, &[]);
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        let increment = frame::window_increment(payload)?;
        let mut state = self.shared.lock();
        if head.stream == 0 {
            if increment == 0 {
                return Err(Reason::ProtocolError);
            }
            state.send_window += increment;
            if state.send_window > frame::MAX_WINDOW {
                return Err(Reason::FlowControlError);
            }
            state.unblock();
            return Ok(());
        }
        if head.stream > self.last_stream || head.stream.is_multiple_of(2) {
            return Err(Reason::ProtocolError);
        }
        let Some(stream) = state.streams.get_mut(&head.stream) else {
            return Ok(());
        };
        stream.send_window += increment;
        let refusal = if increment == 0 {
            Reason::ProtocolError
        } else if stream.send_window > frame::MAX_WINDOW {
            Reason::FlowControlError
        } else {
            state.unblock();
            return Ok(());
        };
        state.close(head.stream, Some(refusal));
        charge(&mut self.reset_debt)
    }

    /// A whole header block: a new call, or the trailers of one in progress.
    fn header_block<B>(
        &mut self,
        id: u32,
        end_stream: bool,
        block: &[u8],
        calls: &mut FuturesUnordered<Call<B>>,
    ) -> Result<(), Reason>
    where
        S: Serves<B, Http2Body>,
        B: AnswerBody,
    {
        let generation = self.decoder.generation();
        let recent = self
            .recent
            .as_ref()
            .filter(|recent| id > self.last_stream && recent.generation == generation)
            .filter(|recent| recent.block == block);
        let seen_before = recent.is_some();
        if let Some((parts, content_length)) = recent.and_then(|recent| recent.head.clone()) {
            return self.open_call(id, end_stream, parts, content_length, calls);
        }
        let mut fields = Fields::default();
        self.decoder
            .decode(block, |name, value| fields.add(name, value))
            .map_err(|_| Reason::CompressionError)?;
        let table_unchanged = self.decoder.generation() == generation;
        let mut state = self.shared.lock();
        if id <= self.last_stream {
            // Trailers: the request ends here; they must end it and hold no pseudo-header.
            let Some(stream) = state.streams.get_mut(&id) else {
                // A closed stream: trailers still in flight when it was reset, or a client
                // reusing a stream id. Either way the stream stays closed.
                frame::rst_stream(&mut state.output, id, Reason::StreamClosed);
                return Ok(());
            };
            let short = stream
                .content_length
                .is_some_and(|expected| stream.received != expected);
            if stream.request_ended || !end_stream || fields.pseudo || fields.malformed || short {
                state.close(id, Some(Reason::ProtocolError));
                return charge(&mut self.reset_debt);
            }
            stream.request_ended = true;
            stream.wake_reader();
            return Ok(());
        }
        self.last_stream = id;
        if self.refused(&mut state, id) {
            return Ok(());
        }
        if fields.size > MAX_HEADER_LIST {
            let mut answer = bytes::BytesMut::new();
            hpack::encode_status(&mut answer, 431);
            let max = state.max_send_frame;
            frame::header_block(&mut state.output, id, &answer, true, max);
            if !end_stream {
                frame::rst_stream(&mut state.output, id, Reason::NoError);
            }
            return Ok(());
        }
        let content_length = fields.content_length;
        let Some(parts) = fields.into_request() else {
            frame::rst_stream(&mut state.output, id, Reason::ProtocolError);
            return Ok(());
        };
        drop(state);
        if table_unchanged && block.len() <= RECENT_HEAD_BLOCK {
            self.remember(
                block,
                generation,
                seen_before.then(|| (parts.clone(), content_length)),
            );
        }
        self.open_call(id, end_stream, parts, content_length, calls)
    }

    /// Refuses the call on stream `id` when no call may start now: the connection is closing,
    /// or as many calls as it may have are open.
    fn refused(&self, state: &mut State, id: u32) -> bool {
        let refused = self.going_away.is_some()
            || self.peer_going_away
            || state.streams.len() >= MAX_CONCURRENT_STREAMS;
        if refused {
            frame::rst_stream(&mut state.output, id, Reason::RefusedStream);
        }
        refused
    }

    /// Keeps `block` as [`RecentHead`] (decoded at `generation`, leaving the table as it was),
    /// with its head when it is the second time in a row it came.
    fn remember(
        &mut self,
        block: &[u8],
        generation: u64,
        head: Option<(http::request::Parts, Option<u64>)>,
    ) {
        let recent = self.recent.get_or_insert_with(|| RecentHead {
            block: Vec::new(),
            generation,
            head: None,
        });
        if head.is_none() {
            recent.block.clear();
            recent.block.extend_from_slice(block);
        }
        recent.generation = generation;
        recent.head = head;
    }

    /// Starts the call a well-formed request head opens on stream `id` (refused as
    /// [`Self::refused`] says, and reset when it claims a body its headers ended).
    fn open_call<B>(
        &mut self,
        id: u32,
        end_stream: bool,
        parts: http::request::Parts,
        content_length: Option<u64>,
        calls: &mut FuturesUnordered<Call<B>>,
    ) -> Result<(), Reason>
    where
        S: Serves<B, Http2Body>,
        B: AnswerBody,
    {
        self.last_stream = id;
        let mut state = self.shared.lock();
        if self.refused(&mut state, id) {
            return Ok(());
        }
        if end_stream && content_length.is_some_and(|length| length > 0) {
            frame::rst_stream(&mut state.output, id, Reason::ProtocolError);
            return Ok(());
        }
        let send_window = state.initial_send_window;
        let mut stream = Stream::new(i64::from(STREAM_WINDOW), send_window, end_stream);
        stream.content_length = content_length;
        state.streams.insert(id, stream);
        drop(state);
        let body = Http2Body::new(self.shared.clone(), id, end_stream);
        let body = MinRateBody::new(body, self.limits.body_min_rate, self.limits.body_grace)
            .counting(self.slow_bodies.clone());
        let request = Request::from_parts(parts, body);
        let service = self.service.clone();
        let answer = Box::pin(async move {
            tower::ServiceExt::oneshot(service, request)
                .await
                .map_err(Into::into)
        });
        let busy = Busy::new(self.activity.clone());
        calls.push(Call::new(self.shared.clone(), id, answer, busy));
        Ok(())
    }
}

/// A request's header fields as they are decoded.
#[derive(Default)]
struct Fields {
    method: Option<Method>,
    scheme: Option<http::uri::Scheme>,
    authority: Option<http::uri::Authority>,
    path: Option<http::uri::PathAndQuery>,
    headers: HeaderMap,
    content_length: Option<u64>,
    /// The list's size as RFC 9113 §6.5.2 counts it; fields past the limit are not kept.
    size: usize,
    pseudo: bool,
    regular_seen: bool,
    malformed: bool,
}

impl Fields {
    fn add(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + 32;
        if self.size > MAX_HEADER_LIST || self.malformed {
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            self.pseudo = true;
            if self.regular_seen {
                self.malformed = true;
                return;
            }
            let fresh = match pseudo {
                b"method" => Method::from_bytes(value)
                    .ok()
                    .map(|method| self.method.replace(method).is_none()),
                b"scheme" => http::uri::Scheme::try_from(value)
                    .ok()
                    .map(|scheme| self.scheme.replace(scheme).is_none()),
                b"authority" => http::uri::Authority::try_from(value)
                    .ok()
                    .map(|authority| self.authority.replace(authority).is_none()),
                b"path" => http::uri::PathAndQuery::try_from(value)
                    .ok()
                    .map(|path| self.path.replace(path).is_none()),
                _ => None,
            };
            self.malformed |= fresh != Some(true);
            return;
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase)
            || frame::connection_specific(name)
            || (name == b"te" && value != b"trailers")
        {
            self.malformed = true;
            return;
        }
        if name == b"content-length" {
            let length = std::str::from_utf8(value)
                .ok()
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<u64>().ok());
            match (length, self.content_length) {
                (Some(length), None) => self.content_length = Some(length),
                (Some(length), Some(earlier)) if length == earlier => {}
                _ => {
                    self.malformed = true;
                    return;
                }
            }
        }
        if !frame::append_field(&mut self.headers, name, value) {
            self.malformed = true;
        }
    }

    /// The request's head; `None` when it is malformed (RFC 9113 §8.1.1).
    fn into_request(self) -> Option<http::request::Parts> {
        if self.malformed {
            return None;
        }
        let (method, scheme, path) = (self.method?, self.scheme?, self.path?);
        if path.as_str().is_empty() {
            return None;
        }
        let mut uri = http::uri::Parts::default();
        uri.path_and_query = Some(path);
        if let Some(authority) = self.authority {
            uri.scheme = Some(scheme);
            uri.authority = Some(authority);
        }
        let uri = Uri::from_parts(uri).ok()?;
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = Version::HTTP_2;
        parts.headers = self.headers;
        Some(parts)
    }
}

impl<S> Driver<S> {
    /// After a graceful end: tells the peer nothing more comes (FIN), then waits up to
    /// `grace` for it to close, reading what it still sends. Closing at once, with bytes
    /// unread, could reset the connection under answers the peer has not read yet.
    pub(super) async fn linger(&mut self, grace: std::time::Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = self.io.shutdown().await;
        let drain = async {
            let mut sink = [0u8; 4096];
            while let Ok(1..) = self.io.read(&mut sink).await {}
        };
        let _ = tokio::time::timeout(grace, drain).await;
    }
}

/// One more call reset before its answer: cancelled by the client, or reset by the server for
/// the client's error on it (a bad window update, data past its window or its length). Both
/// cost the server a call it never finishes, so both count against the same limit (rapid
/// reset, and its variant that makes the server do the resetting).
fn charge(debt: &mut u32) -> Result<(), Reason> {
    *debt += 1;
    if *debt > MAX_RESET_DEBT {
        Err(Reason::EnhanceYourCalm)
    } else {
        Ok(())
    }
}
