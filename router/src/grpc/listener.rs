//! The gRPC listener: HTTP/2 (prior knowledge, as gRPC clients speak it in the clear) with the
//! data listener's caps and deadlines carried over to HTTP/2. Connections are capped in total
//! and per peer address; a connection that sends no call within the header deadline, or stays
//! without one for the idle deadline, is closed (GOAWAY); a request body slower than the minimum
//! rate is cut off; PINGs find peers that vanished; on stop, GOAWAY and the calls in flight
//! finish.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use weir_http::server::{MinRateBody, ServerLimits};

use super::{CONNECTION_WINDOW, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, STREAM_WINDOW};
use crate::Router;

/// Calls one connection may have in flight at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Metadata of one call: far above what any client sends.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// How long a connection told GOAWAY, with no call left, may stay open for its peer to close
/// it: time enough for the GOAWAY to arrive and be acted on.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);
/// How often a connection's deadlines are looked at, at the least.
const TICK: Duration = Duration::from_millis(250);

/// Open connections, in total and by peer (an IPv6 /64 counts as one peer).
#[derive(Default)]
struct Caps {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

struct Admitted {
    caps: Arc<Caps>,
    peer: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(count) = open.1.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

fn peer_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

impl Caps {
    fn admit(self: &Arc<Self>, peer: IpAddr, limits: &ServerLimits) -> Option<Admitted> {
        let peer = peer_key(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let from_peer = open.1.get(&peer).copied().unwrap_or(0);
        if open.0 >= limits.max_connections || from_peer >= limits.max_connections_per_peer {
            return None;
        }
        open.0 += 1;
        *open.1.entry(peer).or_insert(0) += 1;
        Some(Admitted {
            caps: self.clone(),
            peer,
        })
    }
}

/// When a connection last had a call, and how many it has in flight.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    calls: AtomicU64,
    in_flight: AtomicUsize,
}

struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn start(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.touch();
        CallGuard(self.clone())
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// No call has started on the connection yet.
    fn never_called(&self) -> bool {
        self.calls.load(Ordering::Relaxed) == 0
    }

    /// When the connection is to be closed if nothing happens before; `None` while a call is
    /// in flight (its own deadlines bound it).
    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let wait = if self.calls.load(Ordering::Relaxed) == 0 {
            limits.header_read_timeout
        } else {
            limits.idle_keep_alive_timeout
        };
        Some(self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + wait)
    }
}

impl Router {
    /// Serves gRPC on `listener` with `limits` (the data listener's caps and deadlines) until
    /// `stop` turns true; then sends GOAWAY on every connection and returns when the calls in
    /// flight have finished.
    pub fn serve_grpc(
        self: &Arc<Self>,
        listener: TcpListener,
        limits: ServerLimits,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let router = self.clone();
        tokio::spawn(async move {
            let caps = Arc::new(Caps::default());
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop.wait_for(|stop| *stop) => break,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot accept a gRPC connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(admitted) = caps.admit(peer.ip(), &limits) else {
                    tracing::debug!(%peer, "gRPC connection over the cap closed");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (router, stop) = (router.clone(), stop.clone());
                connections.spawn(async move {
                    let _admitted = admitted;
                    connection(router, stream, limits, stop).await;
                });
                // Reap finished connections as we go.
                while connections.try_join_next().is_some() {}
            }
            drop(listener);
            while connections.join_next().await.is_some() {}
        })
    }
}

async fn connection(
    router: Arc<Router>,
    stream: tokio::net::TcpStream,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let calls = activity.clone();
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let guard = calls.start();
            let router = router.clone();
            let request =
                request.map(|body| MinRateBody::new(body, limits.body_min_rate, limits.body_grace));
            async move {
                if request.uri().path() == super::stream::PATH {
                    let mut response = super::stream::handle(router, request).await;
                    // A stream is in flight until its answer ends, not when it starts.
                    if let http_body_util::Either::Right(observed) = response.body_mut() {
                        observed.hold(Box::new(guard));
                    }
                    return Ok::<_, Infallible>(response);
                }
                let response = super::handle(router, request).await;
                drop(guard);
                Ok(response.map(http_body_util::Either::Left))
            }
        });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // When GOAWAY was sent. A connection that never made a call is dropped instead: before the
    // client's preface, hyper defers a graceful shutdown until a handshake that may never come.
    let mut closing_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // At the deadline, or a second later if sooner: calls starting and ending meanwhile
        // move the deadline (a call in flight has its own deadlines; none applies then).
        let tick = now + TICK;
        let wake = match closing_since {
            None => activity.deadline(&limits).map_or(tick, |d| d.min(tick)),
            Some(_) => tick,
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "gRPC connection ended");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if closing_since.is_none() => {
                if activity.never_called() {
                    return;
                }
                closing_since = Some(Instant::now());
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(wake) => match closing_since {
                None => {
                    if activity.deadline(&limits).is_some_and(|d| Instant::now() >= d) {
                        if activity.never_called() {
                            return;
                        }
                        closing_since = Some(Instant::now());
                        connection.as_mut().graceful_shutdown();
                    }
                }
                // GOAWAY went out and no call is left, yet the peer keeps the connection open
                // (hyper's HTTP/2 server waits for the peer to close it).
                Some(since) => {
                    if activity.idle() && since.elapsed() >= GOAWAY_GRACE {
                        return;
                    }
                }
            },
        }
    }
}
