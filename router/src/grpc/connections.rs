//! HTTP/2 connections to the replicas' gRPC ports for unary calls, kept per worker thread:
//! [`CONNECTIONS`] per replica address, calls taking them in turn, each connection multiplexing
//! its calls. hyper's pooling client did the same at a cost per call the proxy could see in its
//! profile (a checkout with its key hashed, a spawned task, a cloned request head); here a call
//! clones a handle to an open connection and sends on it.
//!
//! Why several connections per address: an endpoint that is a Kubernetes Service is balanced per
//! connection (kube-proxy), so one connection per thread would feed one pod per thread however
//! many the Service has. HTTP/1 spreads by opening connections under load.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{GrpcBody, CONNECTION_WINDOW, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, STREAM_WINDOW};
use crate::send::Attempt;

/// Connections per replica address and worker thread.
const CONNECTIONS: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

thread_local! {
    static OPEN: RefCell<HashMap<String, Vec<Option<SendRequest<GrpcBody>>>>> =
        RefCell::new(HashMap::new());
    static NEXT: Cell<usize> = const { Cell::new(0) };
}

/// Sends `request` to `authority` (`host:port`) on one of this thread's connections to it,
/// opening the connection when it is not open. Only a call that cannot have reached the replica
/// (no connection, or one that closed before the call went out) may be retried.
pub(super) async fn send(
    authority: &str,
    request: Request<GrpcBody>,
) -> Result<Response<Incoming>, Attempt> {
    let turn = NEXT.with(|next| {
        let turn = next.get();
        next.set(turn.wrapping_add(1));
        turn
    }) % CONNECTIONS;
    let open = OPEN.with(|open| {
        open.borrow()
            .get(authority)
            .and_then(|slots| slots[turn].clone())
            .filter(|sender| !sender.is_closed())
    });
    let mut sender = match open {
        Some(sender) => sender,
        None => {
            let sender = connect(authority).await?;
            OPEN.with(|open| {
                let mut open = open.borrow_mut();
                if !open.contains_key(authority) {
                    // Replicas come and go (the autoscaler, a rollout): forget the addresses
                    // whose connections have all closed, so the map stays as large as the
                    // replicas in use.
                    open.retain(|_, slots| slots.iter().flatten().any(|s| !s.is_closed()));
                }
                open.entry(authority.to_owned())
                    .or_insert_with(|| vec![None; CONNECTIONS])[turn] = Some(sender.clone());
            });
            sender
        }
    };
    sender.send_request(request).await.map_err(|err| Attempt {
        reason: format!(
            "{err}{}",
            std::error::Error::source(&err).map_or(String::new(), |s| format!(": {s}"))
        ),
        // Cancelled: the connection closed before the call was sent.
        retry: err.is_canceled(),
        replica_failed: true,
    })
}

async fn connect(authority: &str) -> Result<SendRequest<GrpcBody>, Attempt> {
    let unreachable = |reason: String| Attempt {
        reason,
        retry: true,
        replica_failed: true,
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| {
            unreachable(format!(
                "connecting to {authority} took longer than {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|err| unreachable(format!("cannot connect to {authority}: {err}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|err| unreachable(format!("HTTP/2 handshake with {authority} failed: {err}")))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "gRPC connection to a replica ended");
        }
    });
    Ok(sender)
}
