//! HTTP/2 connections to the replicas' gRPC ports for unary calls, kept per worker thread: up
//! to [`CONNECTIONS`] per replica address, each multiplexing its calls. A call takes the first
//! connection carrying fewer than [`CALLS_BEFORE_SPREADING`] calls, opening the next one when
//! all open ones are that busy: at low load every call rides one warm connection (the replica's
//! task for it is the one running; taking four in turn cost a call through the router about a
//! third more time than HTTP/1's pool, which reuses its most recent connection), and load
//! spreads over more connections as it grows.
//!
//! The calls are sent with the `h2` crate rather than through hyper's client. hyper hands a
//! request's body to a task of its own, which gets flow-control capacity only after the
//! connection has flushed the HEADERS frame, so every call left as two writes (HEADERS, then
//! DATA) and the replica woke twice (`strace`, benches/README.md). Here the message is queued
//! with its HEADERS and both leave in one write. Before that, hyper's pooling client cost a
//! checkout, a spawned task and a cloned request head per call.
//!
//! Why several connections per address: an endpoint that is a Kubernetes Service is balanced per
//! connection (kube-proxy), so one connection per thread would feed one pod per thread however
//! many the Service has. HTTP/1 spreads by opening connections under load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::Request;
use h2::client::SendRequest;

use super::forward::Answer;
use super::{CONNECTION_WINDOW, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, STREAM_WINDOW};
use crate::send::Attempt;

/// Connections per replica address and worker thread, at most.
const CONNECTIONS: usize = 4;
/// Calls in flight on a connection before the next connection takes new ones.
const CALLS_BEFORE_SPREADING: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One open connection: the handle calls are sent on, whether its task has ended, and its
/// calls in flight.
#[derive(Clone)]
struct Connection {
    sender: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Connection {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

/// A call counted on its connection until it ends, however it ends.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(connection: &Connection) -> Counted {
        connection.calls.fetch_add(1, Ordering::Relaxed);
        Counted(connection.calls.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    static OPEN: RefCell<HashMap<String, Vec<Option<Connection>>>> =
        RefCell::new(HashMap::new());
}

/// The slot a call takes among an address's connections, given each slot's calls in flight
/// (`None`: no open connection there), and whether to use the connection open there (`false`:
/// open one). The first open connection below [`CALLS_BEFORE_SPREADING`], else the first free
/// slot, else the least busy connection.
fn choose(slots: impl Iterator<Item = Option<usize>>) -> (usize, bool) {
    let mut free = None;
    let mut least: Option<(usize, usize)> = None;
    for (index, calls) in slots.enumerate() {
        match calls {
            None => {
                free.get_or_insert(index);
            }
            Some(calls) if calls < CALLS_BEFORE_SPREADING => return (index, true),
            Some(calls) => {
                if least.is_none_or(|(_, fewest)| calls < fewest) {
                    least = Some((index, calls));
                }
            }
        }
    }
    match (free, least) {
        (Some(index), _) => (index, false),
        (None, Some((index, _))) => (index, true),
        (None, None) => (0, false),
    }
}

/// The slot for a call to `authority` and the open connection to use in it, if any.
fn take(authority: &str) -> (usize, Option<Connection>) {
    OPEN.with(|open| {
        let open = open.borrow();
        let Some(slots) = open.get(authority) else {
            return (0, None);
        };
        let open_in = |slot: &Option<Connection>| {
            slot.as_ref()
                .filter(|connection| !connection.is_closed())
                .cloned()
        };
        let (index, reuse) = choose(slots.iter().map(|s| open_in(s).map(|c| c.calls())));
        (index, reuse.then(|| open_in(&slots[index])).flatten())
    })
}

/// Sends `request` with `body` to `authority` (`host:port`) on one of this thread's connections
/// to it, opening the connection when it is not open, and reads the whole answer. Only a call
/// that cannot have reached the replica (no connection, one that closed before the call went
/// out, or a stream the replica refused unprocessed) may be retried.
pub(super) async fn send(
    authority: &str,
    request: Request<()>,
    body: Bytes,
) -> Result<Answer, Attempt> {
    let (slot, open) = take(authority);
    let ready = match open {
        Some(connection) => {
            let counted = Counted::new(&connection);
            connection.sender.ready().await.ok().map(|s| (s, counted))
        }
        None => None,
    };
    // No connection, or one that closed since: a new one (the call has not gone out).
    let (mut sender, _counted) = match ready {
        Some(ready) => ready,
        None => {
            let connection = connect(authority).await?;
            OPEN.with(|open| {
                let mut open = open.borrow_mut();
                if !open.contains_key(authority) {
                    // Replicas come and go (the autoscaler, a rollout): forget the addresses
                    // whose connections have all closed, so the map stays as large as the
                    // replicas in use.
                    open.retain(|_, slots| slots.iter().flatten().any(|c| !c.is_closed()));
                }
                open.entry(authority.to_owned())
                    .or_insert_with(|| vec![None; CONNECTIONS])[slot] = Some(connection.clone());
            });
            let counted = Counted::new(&connection);
            let sender = connection
                .sender
                .ready()
                .await
                .map_err(|err| unsent(format!("{authority}: {err}")))?;
            (sender, counted)
        }
    };
    let (answer, mut outgoing) = sender
        .send_request(request, body.is_empty())
        .map_err(|err| unsent(format!("{authority}: {err}")))?;
    if !body.is_empty() {
        // Queued without reserving capacity: the message is in memory already (under the
        // router's body limit) and leaves with the HEADERS frame when the window allows.
        outgoing
            .send_data(body, true)
            .map_err(|err| unsent(format!("{authority}: {err}")))?;
    }
    let answer = answer.await.map_err(|err| Attempt {
        // Refused unprocessed: a stream past a GOAWAY's last one, or REFUSED_STREAM.
        retry: err.is_go_away() || err.reason() == Some(h2::Reason::REFUSED_STREAM),
        reason: format!("{authority}: {err}"),
        replica_failed: true,
    })?;
    let (parts, mut incoming) = answer.into_parts();
    let broke_off = |err: h2::Error| Attempt {
        reason: format!("the replica's answer broke off: {err}"),
        retry: false,
        replica_failed: true,
    };
    let mut chunks: Vec<Bytes> = Vec::with_capacity(1);
    while let Some(chunk) = incoming.data().await {
        let chunk = chunk.map_err(broke_off)?;
        let _ = incoming.flow_control().release_capacity(chunk.len());
        chunks.push(chunk);
    }
    let trailers = incoming.trailers().await.map_err(broke_off)?;
    let data = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    };
    Ok(Answer {
        parts,
        data,
        trailers,
    })
}

/// A call that never left: another replica may be tried.
fn unsent(reason: String) -> Attempt {
    Attempt {
        reason,
        retry: true,
        replica_failed: true,
    }
}

/// Opens a connection and drives it on a task of its own, which PINGs the replica every
/// [`KEEP_ALIVE_INTERVAL`] and closes the connection when a PING goes unanswered for
/// [`KEEP_ALIVE_TIMEOUT`] (a replica whose host vanished is noticed).
async fn connect(authority: &str) -> Result<Connection, Attempt> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| {
            unsent(format!(
                "connecting to {authority} took longer than {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|err| unsent(format!("cannot connect to {authority}: {err}")))?;
    let _ = stream.set_nodelay(true);
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(stream);
    let (sender, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| unsent(format!("the HTTP/2 handshake with {authority} timed out")))?
        .map_err(|err| unsent(format!("HTTP/2 handshake with {authority} failed: {err}")))?;
    let closed = Arc::new(AtomicBool::new(false));
    let mut pings = connection.ping_pong();
    let ended = closed.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                result = &mut connection => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "gRPC connection to a replica ended");
                    }
                    break;
                }
                () = tokio::time::sleep(KEEP_ALIVE_INTERVAL) => {
                    let Some(pings) = pings.as_mut() else { continue };
                    let pong = tokio::time::timeout(KEEP_ALIVE_TIMEOUT, pings.ping(h2::Ping::opaque()));
                    let answered = tokio::select! {
                        _ = &mut connection => false,
                        answered = pong => matches!(answered, Ok(Ok(_))),
                    };
                    if !answered {
                        tracing::debug!("a replica's gRPC connection did not answer a PING; closed");
                        break;
                    }
                }
            }
        }
        ended.store(true, Ordering::Relaxed);
    });
    Ok(Connection {
        sender,
        closed,
        calls: Arc::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_fill_one_connection_before_the_next_and_spread_when_all_are_busy() {
        let busy = CALLS_BEFORE_SPREADING;
        assert_eq!(
            choose([None, None].into_iter()),
            (0, false),
            "none open: open the first"
        );
        assert_eq!(
            choose([Some(0), None].into_iter()),
            (0, true),
            "an idle one is reused"
        );
        assert_eq!(choose([Some(busy - 1), None].into_iter()), (0, true));
        assert_eq!(
            choose([Some(busy), None].into_iter()),
            (1, false),
            "busy: open the next"
        );
        assert_eq!(choose([Some(busy), Some(3)].into_iter()), (1, true));
        assert_eq!(
            choose([None, Some(busy)].into_iter()),
            (0, false),
            "a closed first connection is reopened before a busy one takes more"
        );
        assert_eq!(
            choose([Some(busy + 5), Some(busy + 1), Some(busy + 9)].into_iter()),
            (1, true),
            "all busy and no room: the least busy"
        );
        assert_eq!(choose(std::iter::empty()), (0, false));
    }
}
