//! HTTP/2 connections to the replicas' gRPC ports for unary calls, kept per worker thread: up
//! to [`CONNECTIONS`] per replica address, each multiplexing its calls. A call takes the first
//! connection carrying fewer than [`CALLS_BEFORE_SPREADING`] calls, opening the next one when
//! all open ones are that busy: at low load every call rides one warm connection (the replica's
//! task for it is the one running; taking four in turn cost a call through the router about a
//! third more time than HTTP/1's pool, which reuses its most recent connection), and load
//! spreads over more connections as it grows.
//!
//! The calls go out on weir-http's own HTTP/2 client (`weir_http::http2_client`), the same
//! frames and HPACK as the gRPC listener: a call's HEADERS and DATA leave in one write, made by
//! the calling task, and its answer wakes it once. Before it, the `h2` crate's codec cost this
//! hop more than HTTP/1.1 costs the HTTP hop (benches/README.md, "gRPC"); before that, hyper's
//! pooling client sent HEADERS and DATA in two writes and cost a checkout, a spawned task and a
//! cloned request head per call.
//!
//! Why several connections per address: an endpoint that is a Kubernetes Service is balanced per
//! connection (kube-proxy), so one connection per thread would feed one pod per thread however
//! many the Service has. HTTP/1 spreads by opening connections under load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use weir_http::http2_client::{CallError, Connection, Settings};

use super::forward::{refusal, Answer};
use super::status;
use super::{CONNECTION_WINDOW, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, STREAM_WINDOW};
use crate::send::Attempt;

/// Connections per replica address and worker thread, at most.
const CONNECTIONS: usize = 4;
/// Calls in flight on a connection before the next connection takes new ones.
const CALLS_BEFORE_SPREADING: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A place for one connection to an address: the connection once open, and the calls using or
/// waiting for it. The first call that needs it opens it; calls arriving meanwhile wait for that
/// one instead of each opening its own (a burst at a cold router would otherwise open a
/// connection per call, past a replica's per-peer connection cap). A failed opening is kept
/// too, so the calls that waited for it fail at once with its reason rather than each trying
/// again in turn (a replica whose packets are dropped would make the last of them wait for
/// every connect timeout before its own).
#[derive(Default)]
struct Slot {
    connection: tokio::sync::OnceCell<Result<Connection, Attempt>>,
    calls: AtomicUsize,
}

impl Slot {
    /// Of no more use: its connection ended, its opening failed, or it is not open and no call
    /// waits for it.
    fn is_spent(&self) -> bool {
        match self.connection.get() {
            Some(Ok(connection)) => connection.is_closed(),
            Some(Err(_)) => true,
            None => self.calls() == 0,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

/// A call counted on its slot until it ends, however it ends.
struct Counted(Arc<Slot>);

impl Counted {
    fn new(slot: Arc<Slot>) -> Counted {
        slot.calls.fetch_add(1, Ordering::Relaxed);
        Counted(slot)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    static OPEN: RefCell<HashMap<String, Vec<Option<Arc<Slot>>>>> =
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

/// The slot for a call to `authority`, the call counted on it: one in use, or a new one in
/// the place [`choose`] gives.
fn take(authority: &str) -> Counted {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        if !open.contains_key(authority) {
            // Replicas come and go (the autoscaler, a rollout): forget the addresses whose
            // slots are all spent, so the map stays as large as the replicas in use.
            open.retain(|_, slots| slots.iter().flatten().any(|slot| !slot.is_spent()));
            open.insert(authority.to_owned(), vec![None; CONNECTIONS]);
        }
        let slot = open.get_mut(authority).map(|slots| {
            let usable = |slot: &Option<Arc<Slot>>| slot.clone().filter(|slot| !slot.is_spent());
            let (index, reuse) = choose(slots.iter().map(|s| usable(s).map(|slot| slot.calls())));
            match usable(&slots[index]).filter(|_| reuse) {
                Some(slot) => slot,
                None => {
                    let fresh = Arc::new(Slot::default());
                    slots[index] = Some(fresh.clone());
                    fresh
                }
            }
        });
        // Always there (inserted above); a slot of its own otherwise.
        Counted::new(slot.unwrap_or_default())
    })
}

/// Sends a call (`path`, `headers`, `body`) to `authority` (`host:port`) on one of this
/// thread's connections to it, opening the connection when it is not open, and reads the whole
/// answer, up to `max_answer` bytes. Only a call that cannot have reached the replica (no
/// connection, one that closed or went away before the call went out, or a stream the replica
/// refused unprocessed) may be retried.
pub(super) async fn send(
    authority: &str,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
    max_answer: usize,
) -> Result<Answer, Attempt> {
    let mut closed = None;
    // A connection found closed as the call is about to go out (its peer went away since the
    // last call) is spent; the call takes another: it has not gone out.
    for _ in 0..2 {
        let call = take(authority);
        let connection = match call.0.connection.get_or_init(|| connect(authority)).await {
            Ok(connection) => connection,
            Err(failed) => return Err(failed.clone()),
        };
        let answer = connection
            .call(authority, path, headers, body.clone(), max_answer)
            .await;
        match answer {
            Ok(answer) => {
                return Ok(Answer {
                    parts: answer.head,
                    data: answer.data,
                    trailers: answer.trailers,
                })
            }
            Err(CallError::AnswerTooLarge(limit)) => {
                // Not the replica's failure: the call is answered RESOURCE_EXHAUSTED, as a
                // gRPC client answers a message past its limit, and counted as such.
                let message = format!(
                    "the replica's answer is larger than the router's limit of {limit} bytes \
                     (max_body_bytes)"
                );
                let (parts, _) = refusal(status::RESOURCE_EXHAUSTED, &message).into_parts();
                return Ok(Answer {
                    parts,
                    data: Bytes::new(),
                    trailers: None,
                });
            }
            Err(CallError::Unsent(why)) if connection.is_closed() => closed = Some(why),
            // Refused unprocessed by a replica that is up (REFUSED_STREAM: busy, or its calls
            // at once used up): another may take it, and this one is not failing.
            Err(CallError::Unsent(why)) => {
                return Err(Attempt {
                    reason: format!("{authority}: {why}"),
                    retry: true,
                    replica_failed: false,
                })
            }
            Err(CallError::Failed(why)) => {
                return Err(Attempt {
                    reason: format!("{authority}: {why}"),
                    retry: false,
                    replica_failed: true,
                })
            }
        }
    }
    Err(unsent(format!(
        "{authority}: {}",
        closed.unwrap_or_else(|| "the connection closed".to_owned())
    )))
}

/// A call that never left: another replica may be tried.
fn unsent(reason: String) -> Attempt {
    Attempt {
        reason,
        retry: true,
        replica_failed: true,
    }
}

/// Opens a connection; weir-http's client drives it on a task of its own, which PINGs the
/// replica after [`KEEP_ALIVE_INTERVAL`] without a frame and closes the connection when a PING
/// goes unanswered for [`KEEP_ALIVE_TIMEOUT`] (a replica whose host vanished is noticed).
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
    Ok(Connection::handshake(
        stream,
        Settings {
            stream_window: STREAM_WINDOW,
            connection_window: CONNECTION_WINDOW,
            keep_alive_interval: KEEP_ALIVE_INTERVAL,
            keep_alive_timeout: KEEP_ALIVE_TIMEOUT,
        },
    ))
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
