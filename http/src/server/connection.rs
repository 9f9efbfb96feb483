//! One accepted connection: hyper's HTTP/1 state machine, watched for the header and idle
//! deadlines, its requests' bodies under the minimum rate.
//!
//! Headers and idleness share one watchdog rather than hyper's `header_read_timeout`: hyper
//! starts that timer as soon as a response is written, so it would also close idle kept-alive
//! connections after the (short) header deadline, racing clients that reuse pooled connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::{lock, AnswerBody, MinRateBody, Server, ServerLimits, Serves, Slot};

/// One accepted connection; its slot and the server's wait for it end when it is dropped.
pub(super) struct Connection {
    pub(super) server: Server,
    pub(super) _slot: Slot,
    pub(super) _alive: mpsc::Sender<()>,
}

impl Connection {
    /// `service` as this connection's calls reach it, whichever protocol carries them.
    pub(super) fn admitted<S>(&self, service: S, activity: &Arc<Activity>) -> Admitted<S> {
        Admitted {
            inner: service,
            activity: activity.clone(),
            limits: self.server.limits,
            slow_bodies: self.server.shared.slow_bodies.clone(),
        }
    }

    pub(super) async fn run<S, B>(
        self,
        stream: TcpStream,
        service: S,
        mut stop: watch::Receiver<bool>,
    ) where
        S: Serves<B>,
        B: AnswerBody,
    {
        let limits = self.server.limits;
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let service = self.admitted(service, &activity);
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            let deadline = activity.deadline(&limits);
            tokio::select! {
                // An error here is the client's (reset, malformed request): nothing to do.
                _ = connection.as_mut() => return,
                _ = stop.wait_for(|stop| *stop), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = activity.changed.notified() => {}
                () = sleep_until(deadline.map(|(at, _)| at)) => {
                    match activity.deadline(&limits) {
                        Some((at, Waiting::Head)) if at <= Instant::now() => {
                            self.server.shared.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Some((at, Waiting::Idle)) if at <= Instant::now() => {
                            self.server.shared.idle_closed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a connection without a request in flight waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    /// The rest of a header block (since connecting, or since its first byte).
    Head,
    /// Any byte of a next request.
    Idle,
}

/// Where a connection is between requests, kept by its reads and its requests' starts and ends.
pub(super) struct Activity {
    state: Mutex<ActivityState>,
    /// Idle with nothing received yet: the next byte read starts a header deadline. Checked on
    /// every read, so an atomic in front of the lock.
    idle: AtomicBool,
    changed: Notify,
}

struct ActivityState {
    in_flight: usize,
    since: Instant,
    waiting: Waiting,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                since: Instant::now(),
                waiting: Waiting::Head,
            }),
            idle: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn bytes_arrived(&self) {
        if self.idle.load(Ordering::Relaxed) && self.idle.swap(false, Ordering::AcqRel) {
            let mut state = lock(&self.state);
            if state.in_flight == 0 {
                state.since = Instant::now();
                state.waiting = Waiting::Head;
            }
            drop(state);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.idle.store(false, Ordering::Release);
        lock(&self.state).in_flight += 1;
        self.changed.notify_one();
    }

    fn request_finished(&self) {
        let mut state = lock(&self.state);
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.since = Instant::now();
            state.waiting = Waiting::Idle;
            self.idle.store(true, Ordering::Release);
        }
        drop(state);
        self.changed.notify_one();
    }

    /// When the connection is closed unless something happens first, and what it waits for.
    pub(super) fn deadline(&self, limits: &ServerLimits) -> Option<(Instant, Waiting)> {
        let state = lock(&self.state);
        if state.in_flight > 0 {
            return None;
        }
        let timeout = match state.waiting {
            Waiting::Head => limits.header_read_timeout,
            Waiting::Idle => limits.idle_keep_alive_timeout,
        };
        Some((state.since + timeout, state.waiting))
    }
}

/// The socket, telling the connection's [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The caller's service as hyper calls it: the request body under the minimum rate, the
/// request counted in flight until its response body is done.
pub(super) struct Admitted<S> {
    inner: S,
    activity: Arc<Activity>,
    limits: ServerLimits,
    slow_bodies: Arc<AtomicU64>,
}

type Answer<B, E> = Pin<Box<dyn Future<Output = Result<Response<Tracked<B>>, E>> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for Admitted<S>
where
    S: tower::Service<Request<MinRateBody<Incoming>>, Response = Response<B>> + Clone + Send,
    S::Future: Send + 'static,
    S: 'static,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = Answer<B, S::Error>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = Busy::new(self.activity.clone());
        let (rate, grace) = (self.limits.body_min_rate, self.limits.body_grace);
        let slow = self.slow_bodies.clone();
        let request = request.map(|body| MinRateBody::new(body, rate, grace).counting(slow));
        let service = self.inner.clone();
        Box::pin(async move {
            let response = tower::ServiceExt::oneshot(service, request).await?;
            Ok(response.map(|body| Tracked { body, _busy: busy }))
        })
    }
}

/// A request in flight, from its headers until its response body is written (or dropped).
pub(super) struct Busy(Arc<Activity>);

impl Busy {
    pub(super) fn new(activity: Arc<Activity>) -> Busy {
        activity.request_started();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request counted in flight until hyper drops it.
pub struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
