//! HTTP/2 connections to the replicas' gRPC ports for unary calls, kept per worker thread:
//! [`CONNECTIONS`] per replica address, calls taking them in turn, each connection multiplexing
//! its calls.
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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::Request;
use h2::client::SendRequest;

use super::forward::Answer;
use super::{CONNECTION_WINDOW, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, STREAM_WINDOW};
use crate::send::Attempt;

/// Connections per replica address and worker thread.
const CONNECTIONS: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One open connection: the handle calls are sent on, and whether its task has ended.
#[derive(Clone)]
struct Connection {
    sender: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Connection {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

thread_local! {
    static OPEN: RefCell<HashMap<String, Vec<Option<Connection>>>> =
        RefCell::new(HashMap::new());
    static NEXT: Cell<usize> = const { Cell::new(0) };
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
    let turn = NEXT.with(|next| {
        let turn = next.get();
        next.set(turn.wrapping_add(1));
        turn
    }) % CONNECTIONS;
    let open = OPEN.with(|open| {
        open.borrow()
            .get(authority)
            .and_then(|slots| slots[turn].clone())
            .filter(|connection| !connection.is_closed())
    });
    let ready = match open {
        Some(connection) => connection.sender.ready().await.ok(),
        None => None,
    };
    // No connection, or one that closed since: a new one (the call has not gone out).
    let mut sender = match ready {
        Some(sender) => sender,
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
                    .or_insert_with(|| vec![None; CONNECTIONS])[turn] = Some(connection.clone());
            });
            connection
                .sender
                .ready()
                .await
                .map_err(|err| unsent(format!("{authority}: {err}")))?
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
    Ok(Connection { sender, closed })
}
