//! What the gRPC tests share: gRPC replicas that are raw HTTP/2 servers answering grpc-shaped
//! frames (the router never decodes the protobuf, so none is needed), a client speaking the same,
//! and a router serving gRPC on a loopback port.
//!
//! Most tests have the router reach every replica on one gRPC port (`[settings] grpc_port`) at
//! the host of its HTTP endpoint, so their replicas share a port on different loopback addresses
//! (127.0.0.1, 127.0.0.2, …: all of 127.0.0.0/8 is loopback); others give each replica its own.

#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weir_router::grpc::wire;
use weir_router::grpc::GrpcBody;
use weir_router::Router;

pub const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
pub const METADATA: &str = "/inference.GRPCInferenceService/ModelMetadata";
pub const STREAM: &str = "/inference.GRPCInferenceService/ModelStreamInfer";
/// A routes-file route sending every iris call to version 1 on 127.0.0.1 (its gRPC port comes
/// from `[settings]`).
pub const IRIS_V1_ROUTE: &str = "[[route]]\nmodel = \"iris\"\n\
     [[route.backend]]\nversion = \"1\"\nendpoints = [\"http://127.0.0.1:9\"]\nweight = 100\n";

/// A port free on 127.0.0.1 and on each of `hosts`, with listeners holding it on each (the
/// first is 127.0.0.1's).
pub fn shared_port(hosts: &[&str]) -> (u16, Vec<std::net::TcpListener>) {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        let others: Result<Vec<_>, _> = hosts
            .iter()
            .map(|host| std::net::TcpListener::bind((*host, port)))
            .collect();
        if let Ok(mut others) = others {
            others.insert(0, first);
            return (port, others);
        }
    }
    panic!("no port free on all of {hosts:?}");
}

#[derive(Clone)]
pub enum Behaviour {
    /// Echo the request's message (`x-test-repeat` times, once by default), with the status
    /// the call's `x-test-status` asks for.
    Answer,
    /// Reset the call once its request arrived (the request reached the replica).
    Reset,
    /// Answer as `Answer`, once a permit of the semaphore is given (a call held in flight).
    Hold(Arc<tokio::sync::Semaphore>),
}

/// A replica's calls received so far.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl Calls {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Connections the replica accepted.
    pub fn connections(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }
}

/// Serves gRPC-shaped answers on `listener`: the request's body echoed, headers naming the
/// replica and the `x-weir-version` it was sent, trailers with the status, a message, and
/// two custom trailers (one binary) the router must pass through unchanged.
pub fn replica(listener: std::net::TcpListener, name: &'static str, behaviour: Behaviour) -> Calls {
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let calls = Calls::default();
    let counted = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counted.1.fetch_add(1, Ordering::SeqCst);
            let (counted, behaviour) = (counted.clone(), behaviour.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let counted = counted.clone();
                        let behaviour = behaviour.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map_err(std::io::Error::other)?
                                .to_bytes();
                            counted.0.fetch_add(1, Ordering::SeqCst);
                            match behaviour {
                                Behaviour::Reset => {
                                    return Err(std::io::Error::other(
                                        "reset after the request arrived",
                                    ));
                                }
                                Behaviour::Hold(gate) => {
                                    gate.acquire().await.unwrap().forget();
                                }
                                Behaviour::Answer => {}
                            }
                            let status = parts
                                .headers
                                .get("x-test-status")
                                .cloned()
                                .unwrap_or(HeaderValue::from_static("0"));
                            let mut trailers = HeaderMap::new();
                            trailers.insert("grpc-status", status.clone());
                            if status != "0" {
                                trailers.insert(
                                    "grpc-message",
                                    HeaderValue::from_static("failed%20on%20purpose"),
                                );
                            }
                            trailers.insert("x-test-trailer", HeaderValue::from_static(name));
                            trailers.insert("x-trace-bin", HeaderValue::from_static("AAEC/w"));
                            let repeat = parts
                                .headers
                                .get("x-test-repeat")
                                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                                .unwrap_or(1);
                            let body = Bytes::from(body.repeat(repeat));
                            let mut response = Response::new(GrpcBody::new(body, Some(trailers)));
                            let headers = response.headers_mut();
                            headers.insert(
                                "content-type",
                                HeaderValue::from_static("application/grpc"),
                            );
                            headers.insert("x-replica", HeaderValue::from_static(name));
                            if let Some(version) = parts.headers.get("x-weir-version") {
                                headers.insert("x-sent-version", version.clone());
                            }
                            Ok::<_, std::io::Error>(response)
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    calls
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A request message naming `model` (field 1), `version` (field 2) when given, and `payload`
/// (field 5, where the inputs go).
pub fn message(model: &str, version: Option<&str>, payload: &[u8]) -> Bytes {
    let mut message = Vec::new();
    wire::put_bytes(&mut message, 1, model.as_bytes());
    if let Some(version) = version {
        wire::put_bytes(&mut message, 2, version.as_bytes());
    }
    if !payload.is_empty() {
        wire::put_bytes(&mut message, 5, payload);
    }
    wire::frame(&message)
}

pub struct Reply {
    pub http: u16,
    pub headers: HeaderMap,
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// From the trailers, or the headers of a trailers-only answer.
    pub fn grpc_status(&self) -> Option<u16> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }

    pub fn grpc_message(&self) -> String {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message"))
            .or_else(|| self.headers.get("grpc-message"))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

pub async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    router: SocketAddr,
    path: &str,
    body: Bytes,
    metadata: &[(&str, &str)],
) -> Reply {
    let mut request = Request::post(format!("http://{router}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in metadata {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    Reply {
        http: parts.status.as_u16(),
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        data: collected.to_bytes(),
    }
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-grpc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A router for `routes`, serving gRPC on a loopback port; it stops when the sender drops.
pub async fn router(
    name: &str,
    routes: &str,
) -> (Arc<Router>, SocketAddr, tokio::sync::watch::Sender<bool>) {
    let (router, address, stop, _) =
        router_with_limits(name, routes, weir_http::server::ServerLimits::default()).await;
    (router, address, stop)
}

/// [`router`] with the listener's caps and deadlines, and the listener's task.
pub async fn router_with_limits(
    name: &str,
    routes: &str,
    limits: weir_http::server::ServerLimits,
) -> (
    Arc<Router>,
    SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let dir = folder(name);
    std::fs::write(dir.join("routes.toml"), routes).unwrap();
    let serving = weir_router::Serving {
        listener: weir_http::server::Server::new(limits),
        ..weir_router::Serving::default()
    };
    let router = Router::serving(
        &dir.join("routes.toml"),
        Some(dir.join("state.json")),
        None,
        serving,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = router.serve_grpc(listener, stopped);
    (router, address, stop, task)
}

/// `/metrics` as the data port serves it.
pub async fn metrics(router: &Arc<Router>) -> String {
    use tower::ServiceExt;
    let response = router
        .data_app()
        .oneshot(
            Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `POST /admin/v1/PATH` with a JSON body, as the admin port serves it: status and answer.
pub async fn admin_post(
    router: &Arc<Router>,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let response = router
        .admin_app()
        .oneshot(
            Request::post(format!("/admin/v1/{path}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}
