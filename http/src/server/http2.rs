//! One accepted HTTP/2 connection (the gRPC ports): hyper's HTTP/2 state machine under the
//! listener's deadlines, translated to a multiplexed connection. Until its first call a
//! connection has the header deadline (a peer that never sends a call is closed); between
//! calls, the idle deadline from the end of the last one; while any call is in flight, none
//! (each call's body is held to the minimum rate instead). PINGs from the peer do not count as
//! activity, so a client cannot keep an idle connection by pinging.
//!
//! Deadlines end a connection that has made calls with GOAWAY rather than a reset, so a client
//! about to start a call is told to retry elsewhere instead of seeing it fail; one that never
//! made a call is dropped (before the client's preface, hyper defers GOAWAY until a handshake
//! that may never come).
//!
//! A connection's calls run in the connection's own task, not in a task each (hyper's default).
//! A gRPC channel multiplexes every call of a client on one connection, and with a task per
//! call the calls ran on other threads than the connection: each call's frames then crossed
//! threads through h2's shared stream state (a contended lock, a cross-thread wake per frame).
//! In one task they never do, and connections still spread over the runtime's threads. Work
//! that takes long does not hold the connection: models run on their own threads, and large
//! messages decode on blocking threads.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::connection::{sleep_until, Activity, Waiting};
use super::{AnswerBody, Serves};

/// A PING after this long without frames; the connection is closed when its answer does not
/// come within [`KEEP_ALIVE_TIMEOUT`]: a peer that vanished (a node gone, a NAT that dropped
/// the flow) is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls one connection may have open at once: far past any client's pipelining (tritonclient,
/// perf_analyzer and the router multiplex tens), low enough that one connection cannot hold the
/// server's memory in stream state. Work is bounded by the servers' own limits on top.
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Metadata of one call: far above what any client sends (a few hundred bytes).
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Flow-control windows: HTTP/2's default (64 KiB) would let a multi-megabyte tensor cross in
/// dozens of round trips.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;
/// How long a connection told GOAWAY, with no call left, may stay open for its peer to close
/// it: time enough for the GOAWAY to arrive and be acted on.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);
/// How often an HTTP/2 connection's deadlines are looked at, at the least. Calls start and end
/// without waking the watchdog (a wake per call would cost a task switch per call); a deadline
/// is kept to within this.
const TICK: Duration = Duration::from_millis(250);

impl super::connection::Connection {
    pub(super) async fn run_http2<S, B>(
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
        let service = self.admitted(service, &activity);
        let calls = Calls::default();
        let mut running = FuturesUnordered::new();
        let mut builder = hyper::server::conn::http2::Builder::new(calls.clone());
        builder
            .timer(TokioTimer::new())
            // gRPC has no use for a Date header; hyper would format and encode one per call.
            .auto_date_header(false)
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        // When GOAWAY went out.
        let mut closing_since: Option<Instant> = None;
        loop {
            let tick = Instant::now() + TICK;
            let wake = match closing_since {
                None => activity
                    .deadline(&limits)
                    .map_or(tick, |(at, _)| at.min(tick)),
                Some(_) => tick,
            };
            tokio::select! {
                // An error here is the client's (gone, or breaking the protocol): calls still
                // running then cannot be answered, and are dropped with the connection. Only
                // abuse is counted; a client that went away is not news.
                finished = std::future::poll_fn(|cx| loop {
                    if let Poll::Ready(finished) = connection.as_mut().poll(cx) {
                        return Poll::Ready(finished);
                    }
                    calls.start(&mut running);
                    let mut answered = false;
                    while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
                        answered = true;
                    }
                    // A call that finished left its answer queued: the connection writes it
                    // now rather than after another turn of the scheduler.
                    if !answered {
                        return Poll::Pending;
                    }
                }) => {
                    if finished.as_ref().is_err_and(ended_for_abuse) {
                        self.server.shared.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop), if closing_since.is_none() => {
                    if matches!(activity.deadline(&limits), Some((_, Waiting::Head))) {
                        return;
                    }
                    closing_since = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
                () = sleep_until(Some(wake)) => match closing_since {
                    None => match activity.deadline(&limits) {
                        Some((at, Waiting::Head)) if at <= Instant::now() => {
                            self.server.shared.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Some((at, Waiting::Idle)) if at <= Instant::now() => {
                            self.server.shared.idle_closed.fetch_add(1, Ordering::Relaxed);
                            closing_since = Some(Instant::now());
                            connection.as_mut().graceful_shutdown();
                        }
                        _ => {}
                    },
                    // GOAWAY went out and no call is left, yet the peer keeps the connection
                    // open (hyper's HTTP/2 server waits for the peer to close it).
                    Some(since) => {
                        if activity.deadline(&limits).is_some() && since.elapsed() >= GOAWAY_GRACE {
                            return;
                        }
                    }
                },
            }
        }
    }
}

/// Whether h2 ended the connection with GOAWAY and an error code of its own: the peer broke or
/// abused the protocol (rapid resets, a header block that never ends, a malformed frame).
/// Those defences are h2's; the count is what shows an operator they are being used.
fn ended_for_abuse(error: &hyper::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|cause| cause.downcast_ref::<h2::Error>())
        .is_some_and(|cause| cause.is_go_away() && cause.is_library())
}

/// The executor hyper hands each call to: the calls wait here until the connection's task
/// takes them into its own set (see the module doc). hyper starts calls only while the
/// connection is polled, in that task, so a call never waits here past that poll.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    /// Moves the calls hyper started into `running`.
    fn start(&self, running: &mut FuturesUnordered<Call>) {
        let mut started = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        running.extend(started.drain(..));
    }
}

impl<F> hyper::rt::Executor<F> for Calls
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, call: F) {
        let mut started = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        started.push(Call(Box::pin(call)));
    }
}

/// One call in its connection's task. A panic while it is polled (a bug) ends that call
/// alone: the call is dropped, which resets its stream, as when the call had a task of its
/// own; the connection and the calls beside it go on. Unwind safety: a call that panicked is
/// never polled again.
struct Call(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Future for Call {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let call = self.0.as_mut();
        std::panic::catch_unwind(AssertUnwindSafe(|| call.poll(cx))).unwrap_or(Poll::Ready(()))
    }
}
