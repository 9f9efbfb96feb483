//! One accepted HTTP/2 connection (the gRPC ports): weir's own HTTP/2 ([`driver`]) under the
//! listener's deadlines. Until its first call a connection has the header deadline (a peer that
//! never sends a call is closed); between calls, the idle deadline from the end of the last one;
//! while any call is in flight, none (each call's body is held to the minimum rate instead).
//! PINGs from the peer do not count as activity, so a client cannot keep an idle connection by
//! pinging.
//!
//! Why not hyper's HTTP/2 (the `h2` crate): profiled, its codec cost a gRPC call more than the
//! whole of hyper's HTTP/1.1 costs an HTTP call, so gRPC trailed HTTP/JSON on the same server.
//! A gRPC server needs a small part of HTTP/2 (no push, no priorities, no upgrade, answers
//! without the dynamic table), and that part, with its defences, is what [`driver`] holds.
//!
//! Deadlines end a connection that has made calls with GOAWAY rather than a reset, so a client
//! about to start a call is told to retry elsewhere instead of seeing it fail; one that never
//! made a call is dropped.
//!
//! A connection's calls run in the connection's own task, not in a task each. A gRPC channel
//! multiplexes every call of a client on one connection; with a task per call, each call's
//! frames would cross threads through the connection's shared state. In one task they never do,
//! and connections still spread over the runtime's threads. Work that takes long does not hold
//! the connection: models run on their own threads, and large messages decode on blocking
//! threads.

mod call;
mod driver;
use crate::http2_frame as frame;
mod shared;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::connection::{sleep_until, Activity, Waiting};
use super::{AnswerBody, Serves};
use driver::{Driver, Ended};

pub use shared::{Http2Body, StreamGone};

/// A PING after this long without frames; the connection is closed when its answer does not
/// come within [`KEEP_ALIVE_TIMEOUT`]: a peer that vanished (a node gone, a NAT that dropped
/// the flow) is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that ended with GOAWAY waits for its peer to close: time enough for
/// the GOAWAY to arrive and be acted on. Closing at once, with the peer's bytes unread, would
/// reset the connection: the peer could lose the GOAWAY (and its reason), or answers it has not
/// read yet.
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
        S: Serves<B, Http2Body>,
        B: AnswerBody,
    {
        let limits = self.server.limits;
        let activity = Arc::new(Activity::new());
        let slow_bodies = self.server.shared.slow_bodies.clone();
        let mut driver = Driver::new(stream, service, limits, slow_bodies, activity.clone());
        let mut calls = FuturesUnordered::new();
        // When GOAWAY went out.
        let mut closing_since: Option<Instant> = None;
        let ended = loop {
            let tick = Instant::now() + TICK;
            let wake = match closing_since {
                None => activity
                    .deadline(&limits)
                    .map_or(tick, |(at, _)| at.min(tick)),
                Some(_) => tick,
            };
            tokio::select! {
                ended = std::future::poll_fn(|cx| driver.poll_drive(&mut calls, cx)) => break ended,
                _ = stop.wait_for(|stop| *stop), if closing_since.is_none() => {
                    if matches!(activity.deadline(&limits), Some((_, Waiting::Head))) {
                        return;
                    }
                    closing_since = Some(Instant::now());
                    driver.go_away();
                }
                () = sleep_until(Some(wake)) => {
                    if let Some(sent) = driver.ping_sent {
                        if sent.elapsed() >= KEEP_ALIVE_TIMEOUT {
                            return;
                        }
                    } else if driver.last_heard.elapsed() >= KEEP_ALIVE_INTERVAL {
                        driver.send_ping();
                    }
                    if closing_since.is_none() {
                        match activity.deadline(&limits) {
                            Some((at, Waiting::Head)) if at <= Instant::now() => {
                                self.server.shared.header_timeouts.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            Some((at, Waiting::Idle)) if at <= Instant::now() => {
                                self.server.shared.idle_closed.fetch_add(1, Ordering::Relaxed);
                                closing_since = Some(Instant::now());
                                driver.go_away();
                            }
                            _ => {}
                        }
                    }
                }
            }
        };
        match ended {
            Ended::Failed(_) => {
                self.server
                    .shared
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                driver.linger(GOAWAY_GRACE).await;
            }
            Ended::Finished => driver.linger(GOAWAY_GRACE).await,
            Ended::Closed => {}
        }
    }
}
