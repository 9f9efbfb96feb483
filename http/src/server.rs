//! The listener every weir server shares (`weir serve`, `weir registry`, `weir route`'s data
//! and admin ports, `weir autoscale`'s metrics): HTTP/1 on hyper, with the deadlines and caps
//! that `axum::serve` lacks and a server facing hostile clients needs. A connection that stalls
//! in its headers, its body or idle between requests is closed; open connections are capped,
//! with a share per peer address so that one client cannot take them all. The gRPC ports
//! (`weir serve --grpc-port`, `weir route --grpc-port`) are the same listener speaking HTTP/2
//! ([`Server::serve_http2`]), under the same caps and deadlines. Why each default is what it
//! is: docs/serving.md, "Deadlines and limits".

mod connection;
mod http2;
mod metrics;
mod min_rate;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use connection::Connection;

pub use http2::{Http2Body, StreamGone};
pub use min_rate::{BodyTooSlow, MinRateBody};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a listener serves: a service answering requests whose bodies arrive under the minimum
/// rate, cloned per connection (hyper's bounds, named once). `In` is the request body as the
/// protocol delivers it: hyper's for HTTP/1, [`Http2Body`] on the HTTP/2 listener.
pub trait Serves<B, In = Incoming>:
    tower::Service<
        Request<MinRateBody<In>>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B, In> Serves<B, In> for S where
    S: tower::Service<
            Request<MinRateBody<In>>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static
{
}

/// An answer's body as the listener writes it.
pub trait AnswerBody: Body<Data: Send, Error: Into<BoxError>> + Send + Unpin + 'static {}

impl<B> AnswerBody for B where B: Body<Data: Send, Error: Into<BoxError>> + Send + Unpin + 'static {}

/// Deadlines and caps of one server; [`ServerLimits::default`] holds the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to send a request's header block: from connecting for the first request, from its
    /// first byte for later ones on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Slowest a request body may arrive once `body_grace` has passed, in bytes per second
    /// averaged since its headers; 0 turns the check off.
    pub body_min_rate: u64,
    pub body_grace: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_keep_alive_timeout: Duration,
    pub max_connections: usize,
    /// Connections one address (an IPv6 /64) may hold.
    pub max_connections_per_peer: usize,
}

impl ServerLimits {
    /// Headers are a packet or two: 10 s is many round trips on the worst link.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// 64 KiB/s: a slow uplink sends far more; a client that trickles bytes does not.
    pub const DEFAULT_BODY_MIN_RATE: u64 = 64 * 1024;
    /// Room for a client to start sending (and a proxy to connect onwards).
    pub const DEFAULT_BODY_GRACE: Duration = Duration::from_secs(10);
    /// Longer than the pools of weir's own clients keep a connection (router 60 s, weir-http
    /// 90 s), so the server never closes a connection a client is about to reuse.
    pub const DEFAULT_IDLE_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(120);
    /// Each connection holds a descriptor and a few KiB of buffers.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

    /// A quarter of `max_connections` (at least one): a router in front of a replica is often
    /// its only peer and needs room beyond its concurrency, but four hostile addresses are
    /// needed to fill the server.
    pub fn default_share(max_connections: usize) -> usize {
        (max_connections / 4).max(1)
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            body_min_rate: Self::DEFAULT_BODY_MIN_RATE,
            body_grace: Self::DEFAULT_BODY_GRACE,
            idle_keep_alive_timeout: Self::DEFAULT_IDLE_KEEP_ALIVE_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: Self::default_share(Self::DEFAULT_MAX_CONNECTIONS),
        }
    }
}

/// What a server has refused and closed since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    pub open: usize,
    /// Connections closed on arrival, over `max_connections` or the peer's share.
    pub refused: u64,
    pub header_timeouts: u64,
    pub idle_closed: u64,
    pub slow_bodies: u64,
    /// HTTP/2 connections ended with GOAWAY for breaking or abusing the protocol.
    pub protocol_errors: u64,
}

/// Serves with [`ServerLimits`]; cheap to clone, and clones share their connection counts (the
/// router's workers, one listener each, share one cap).
#[derive(Clone)]
pub struct Server {
    limits: ServerLimits,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    peers: Mutex<Peers>,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    idle_closed: AtomicU64,
    slow_bodies: Arc<AtomicU64>,
    protocol_errors: AtomicU64,
    last_warned: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Peers {
    open: usize,
    by_address: HashMap<IpAddr, usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The address a peer's share is counted under: IPv4 as is, IPv6 by its /64 (one host
/// commonly holds a whole /64), IPv4-mapped IPv6 as IPv4.
fn peer_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// What an over-cap connection is told, best effort, before it is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: 46\r\n\r\n{\"error\": \"too many connections; retry later\"}";

impl Server {
    pub fn new(limits: ServerLimits) -> Server {
        Server {
            limits,
            shared: Arc::default(),
        }
    }

    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    pub fn stats(&self) -> ServerStats {
        ServerStats {
            open: lock(&self.shared.peers).open,
            refused: self.shared.refused.load(Ordering::Relaxed),
            header_timeouts: self.shared.header_timeouts.load(Ordering::Relaxed),
            idle_closed: self.shared.idle_closed.load(Ordering::Relaxed),
            slow_bodies: self.shared.slow_bodies.load(Ordering::Relaxed),
            protocol_errors: self.shared.protocol_errors.load(Ordering::Relaxed),
        }
    }

    /// A slot for a connection from `peer`, or `None` over a cap.
    fn admit(&self, peer: IpAddr) -> Option<Slot> {
        let key = peer_key(peer);
        let mut peers = lock(&self.shared.peers);
        let from_peer = peers.by_address.get(&key).copied().unwrap_or(0);
        if peers.open >= self.limits.max_connections
            || from_peer >= self.limits.max_connections_per_peer
        {
            return None;
        }
        peers.open += 1;
        *peers.by_address.entry(key).or_insert(0) += 1;
        Some(Slot {
            shared: self.shared.clone(),
            key,
        })
    }

    fn refuse(&self, stream: TcpStream, peer: IpAddr, protocol: Protocol) {
        let refused = self.shared.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // An HTTP/2 client expects the server's SETTINGS first: it is simply closed.
        if protocol == Protocol::Http1 {
            let _ = stream.try_write(OVER_CAPACITY);
        }
        drop(stream);
        // A flood of refusals must not become a flood of log lines: one every 10 s.
        let mut last = lock(&self.shared.last_warned);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(%peer, refused_total = refused, max_connections = self.limits.max_connections,
                per_peer = self.limits.max_connections_per_peer,
                "refusing connections over the cap (--max-connections, --max-connections-per-peer)");
        }
    }

    /// Serves `service` on `listener` until `shutdown` resolves; then stops accepting, lets
    /// each open connection finish the request it is in (idle ones close at once), and
    /// returns when all are closed. Callers bound that wait with their drain timeout.
    pub async fn serve<S, B>(
        &self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
    ) where
        S: Serves<B>,
        B: AnswerBody,
    {
        let spawn = move |connection: Connection, stream, stopped| {
            tokio::spawn(connection.run(stream, service.clone(), stopped));
        };
        self.accept(listener, shutdown, Protocol::Http1, spawn)
            .await;
    }

    /// [`Server::serve`] for HTTP/2 with prior knowledge, as gRPC clients speak it in the
    /// clear: the same caps; the header deadline until a connection's first call, the idle
    /// deadline after its last; the body rate per call; keepalive PINGs find peers that vanished.
    pub async fn serve_http2<S, B>(
        &self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
    ) where
        S: Serves<B, Http2Body>,
        B: AnswerBody,
    {
        let spawn = move |connection: Connection, stream, stopped| {
            tokio::spawn(connection.run_http2(stream, service.clone(), stopped));
        };
        self.accept(listener, shutdown, Protocol::Http2, spawn)
            .await;
    }

    /// Accepts connections under the caps; `spawn` runs each in a task of its own.
    async fn accept(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
        protocol: Protocol,
        spawn: impl Fn(Connection, TcpStream, watch::Receiver<bool>),
    ) {
        let (alive, mut all_closed) = mpsc::channel::<()>(1);
        let (stop, stopped) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if !is_connection_error(&err) {
                        // Out of descriptors, most likely: wait for some to close.
                        tracing::error!(error = %err, "cannot accept a connection; retrying in 1 s");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = &mut shutdown => break,
                        }
                    }
                    continue;
                }
            };
            let Some(slot) = self.admit(peer.ip()) else {
                self.refuse(stream, peer.ip(), protocol);
                continue;
            };
            // Small answers are the common case; Nagle's delay would add milliseconds to each.
            let _ = stream.set_nodelay(true);
            let connection = Connection {
                server: self.clone(),
                _slot: slot,
                _alive: alive.clone(),
            };
            spawn(connection, stream, stopped.clone());
        }
        drop(listener);
        let _ = stop.send(true);
        drop(alive);
        let _ = all_closed.recv().await;
    }
}

fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// A connection's place under the caps, given back when dropped.
struct Slot {
    shared: Arc<Shared>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut peers = lock(&self.shared.peers);
        peers.open = peers.open.saturating_sub(1);
        if let Some(count) = peers.by_address.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                peers.by_address.remove(&self.key);
            }
        }
    }
}
