//! Canary router: splits each model's traffic between versions by weight, with pinning, sticky
//! keys and shadow copies; balances a version's replicas (two choices on in-flight requests,
//! health checks, outlier ejection, one retry on connect errors); and changes weights through an
//! admin API, by hand or by a progressive rollout judged on its own measurements. The admin API
//! has its own listener (loopback by default, a token required elsewhere): the data port is
//! what clients and ingresses reach, and must not let them change the weights.
//!
//! Weight changes build a new [`table::RouteTable`] and swap it in with `arc-swap`: requests in
//! flight finish on the table they started with, none is dropped. Changes are persisted next to
//! the routes file so a restart keeps them, and with `--registry` shared with the other router
//! replicas through the registry ([`shared`]).

pub mod admin;
pub mod auth;
pub mod config;
pub mod control;
pub mod endpoint;
pub mod grpc;
mod metrics;
pub mod pool;
pub mod proxy;
mod random;
pub mod rollout;
pub mod send;
pub mod settings;
pub mod shared;
mod state;
pub mod stats;
mod status;
pub mod sticky;
pub mod table;

/// The admin API's client and Prometheus queries moved to weir-http (clients should not
/// compile the router); these names keep working for the binary.
pub use weir_http::prometheus;
pub use weir_http::router_client as client;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use auth::AdminToken;
pub use config::{ConfigError, RoutesFile};
use metrics::RouterMetrics;
use table::RouteTable;

pub struct Router {
    pub table: ArcSwap<RouteTable>,
    metrics: RouterMetrics,
    /// Validated at start-up (never empty): without one the admin API is open, which the
    /// router allows only on loopback or with `--allow-anonymous`.
    admin_token: Option<AdminToken>,
    control: control::Control,
    rollouts: rollout::Rollouts,
    /// The routes file as last loaded (saved weights are checked against it).
    routes_file: ArcSwap<RoutesFile>,
    config_path: PathBuf,
    state_path: PathBuf,
    /// What request bodies held at once may add up to (weir_http::body).
    body_budget: weir_http::body::BodyBudget,
    /// The data listener: its deadlines and caps, and its counts on `/metrics`.
    listener: weir_http::server::Server,
    /// The state shared with the other replicas through the registry (`--registry`).
    shared: Option<shared::Shared>,
    /// This router, for tasks it starts from a `&self` method (a rollout another replica
    /// started, taken in while applying the shared state).
    me: Weak<Router>,
}

/// How a router serves, beside its routes file: the data listener's deadlines and caps, and the
/// memory that request bodies held at once may use.
pub struct Serving {
    pub listener: weir_http::server::Server,
    pub body_budget_bytes: u64,
    /// Share weights and rollouts with the other replicas through the registry; `None` keeps
    /// them in the local state file only.
    pub shared: Option<shared::SharedConfig>,
}

impl Default for Serving {
    /// The documented listener defaults, and half of the memory the process may use (as
    /// `weir serve` takes it).
    fn default() -> Self {
        Serving {
            listener: weir_http::server::Server::new(weir_http::server::ServerLimits::default()),
            body_budget_bytes: weir_http::body::memory_limit(None).0 / 2,
            shared: None,
        }
    }
}

/// Where the router keeps admin changes by default: beside the routes file.
pub fn default_state_path(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_os_string();
    name.push(".state.json");
    config.with_file_name(name)
}

impl Router {
    /// Loads the routes file and any persisted weights that still apply to it.
    pub fn new(
        config_path: &Path,
        state_path: Option<PathBuf>,
        admin_token: Option<AdminToken>,
    ) -> Result<Arc<Router>, ConfigError> {
        Router::serving(config_path, state_path, admin_token, Serving::default())
    }

    /// [`Router::new`] with the listener and body budget `weir route`'s flags chose.
    pub fn serving(
        config_path: &Path,
        state_path: Option<PathBuf>,
        admin_token: Option<AdminToken>,
        serving: Serving,
    ) -> Result<Arc<Router>, ConfigError> {
        let file = RoutesFile::load(config_path)?;
        let state_path = state_path.unwrap_or_else(|| default_state_path(config_path));
        let mut table = RouteTable::build(&file.route, file.settings, None);
        for (model, weights, previous) in state::load(&state_path, &file) {
            table = table.with_weights(&model, &weights, previous);
        }
        let metrics = RouterMetrics::default().with_listener(&serving.listener);
        metrics.set_weights(&table);
        let shared = serving.shared.map(shared::Shared::new);
        Ok(Arc::new_cyclic(|me| Router {
            table: ArcSwap::from_pointee(table),
            metrics,
            admin_token,
            control: control::Control::default(),
            rollouts: rollout::Rollouts::default(),
            routes_file: ArcSwap::from_pointee(file),
            config_path: config_path.to_owned(),
            state_path,
            body_budget: weir_http::body::BodyBudget::new(serving.body_budget_bytes),
            listener: serving.listener,
            shared,
            me: me.clone(),
        }))
    }

    /// The data port: metrics, and the data plane for everything else except `/admin/…`, which
    /// is refused here with a 404 so that clients never reach the admin API through the port
    /// that is exposed to inference traffic.
    pub fn data_app(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/metrics", axum::routing::get(metrics))
            .route("/admin", axum::routing::any(no_admin_here))
            .route("/admin/{*rest}", axum::routing::any(no_admin_here))
            .fallback(proxy::handle)
            .layer(weir_http::panic::PanicLayer::new(self.metrics.panics.clone()).layer())
            .with_state(self.clone())
    }

    /// The admin port: the admin API, and metrics (so one scrape target can be the admin
    /// listener when the data port is not reachable from Prometheus). Anything else is 404.
    pub fn admin_app(self: &Arc<Self>) -> axum::Router {
        admin::routes()
            .route("/metrics", axum::routing::get(metrics))
            .fallback(|| async {
                proxy::error(
                    axum::http::StatusCode::NOT_FOUND,
                    "not an admin API path (see /admin/v1/routes)",
                )
            })
            .layer(weir_http::panic::PanicLayer::new(self.metrics.panics.clone()).layer())
            .with_state(self.clone())
    }

    /// Serves [`Router::admin_app`] on `listener` with `server`'s deadlines and caps (on the
    /// caller's runtime: admin calls are rare, the data plane's per-core workers stay free of
    /// them) until `stop` turns true.
    pub fn serve_admin(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        server: weir_http::server::Server,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let app = self.admin_app();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            server.serve(listener, app, stopped).await;
        })
    }

    /// Health checks, the per-version samplers behind `status`, the routes-file watcher, and
    /// the shared state's poll; they stop when the router is dropped.
    pub fn spawn_background(self: &Arc<Self>) {
        self.spawn_shared_poll();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last_sample = Instant::now();
            let mut config_stamp = modified(&weak);
            loop {
                let interval = match weak.upgrade() {
                    Some(router) => {
                        router.check_health().await;
                        if last_sample.elapsed() >= Duration::from_secs(5) {
                            last_sample = Instant::now();
                            router.sample_stats(last_sample);
                        }
                        let stamp = modified(&weak);
                        if stamp != config_stamp {
                            config_stamp = stamp;
                            router.reload().await;
                        }
                        router.table.load().settings.health_check_interval
                    }
                    None => return,
                };
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Asks every replica `GET /v2/health/ready`; a replica that does not answer 200 within a
    /// second gets no traffic until it does.
    async fn check_health(&self) {
        let table = self.table.load_full();
        let mut checks = tokio::task::JoinSet::new();
        for route in table.routes.values() {
            let pools = route
                .backends
                .iter()
                .map(|b| &b.pool)
                .chain(route.shadow.as_ref().map(|s| &s.pool));
            for pool in pools {
                for endpoint in pool.endpoints().iter() {
                    let (endpoint, client) = (endpoint.clone(), client());
                    checks.spawn(async move {
                        let request = hyper::Request::get(format!("{}/v2/health/ready", endpoint.base))
                            .body(Full::new(Bytes::new()));
                        let healthy = match request {
                            Ok(request) => matches!(
                                tokio::time::timeout(Duration::from_secs(1), client.request(request)).await,
                                Ok(Ok(response)) if response.status().is_success()
                            ),
                            Err(_) => false,
                        };
                        endpoint.set_healthy(healthy);
                    });
                }
            }
        }
        while checks.join_next().await.is_some() {}
    }

    fn sample_stats(&self, now: Instant) {
        for route in self.table.load().routes.values() {
            for backend in &route.backends {
                backend.stats.sample(now);
            }
        }
    }

    /// The routes file changed: its weights win over earlier admin changes (the file is the
    /// newer intention, e.g. a Helm upgrade); replicas that stay keep their state.
    async fn reload(&self) {
        match RoutesFile::load(&self.config_path) {
            Ok(file) => {
                let _guard = self.control.lock().await;
                let previous = self.table.load_full();
                let table = RouteTable::build(&file.route, file.settings, Some(&previous));
                self.metrics.set_weights(&table);
                state::save(&self.state_path, &file, &table);
                self.table.store(Arc::new(table));
                self.routes_file.store(Arc::new(file));
                tracing::info!(config = %self.config_path.display(), "routes file reloaded");
            }
            Err(err) => {
                tracing::error!(error = %err, "the routes file changed but is invalid; keeping the current routes");
            }
        }
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

thread_local! {
    /// A connection pool per thread: connections are driven by the runtime of the thread that
    /// opened them, so with one single-threaded runtime per core a request never changes
    /// thread on its way through the router.
    static CLIENT: HttpClient = {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector)
    };
}

pub(crate) fn client() -> HttpClient {
    CLIENT.with(Clone::clone)
}

impl Router {
    /// Serves on `workers` threads, each running a single-threaded runtime with its own
    /// listener on the same port (`SO_REUSEPORT`: the kernel spreads connections) and its own
    /// connection pool, as nginx runs its workers. On 2 cores this took the router from 23.3 k
    /// to 27.3 k requests/s and its added p50 from 108 to 89 µs, against one multi-threaded
    /// runtime whose requests hopped between threads (benches/README.md). With `grpc` each
    /// worker also serves the gRPC port the same way (and keeps its own HTTP/2 connections to
    /// the replicas). The workers share the data listener's connection caps ([`Serving`]).
    /// Returns the bound data and gRPC addresses; the workers stop (draining) when `stop`
    /// turns true.
    pub fn serve_on_workers(
        self: &Arc<Self>,
        address: std::net::SocketAddr,
        grpc: Option<std::net::SocketAddr>,
        workers: usize,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<WorkersBound> {
        let mut bound = WorkersBound {
            data: address,
            grpc,
            handles: Vec::new(),
        };
        for index in 0..workers.max(1) {
            let (ready, answer) = std::sync::mpsc::channel();
            let (router, stop, server) = (self.clone(), stop.clone(), self.listener.clone());
            let (data, grpc) = (bound.data, bound.grpc);
            let handle = std::thread::Builder::new()
                .name(format!("weir-route-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(err) => {
                            let _ = ready.send(Err(err));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let listeners = listen(data).and_then(|data| {
                            let grpc = grpc.map(listen).transpose()?;
                            Ok((data, grpc))
                        });
                        let (data, grpc) = match listeners {
                            Ok(listeners) => listeners,
                            Err(err) => {
                                let _ = ready.send(Err(err));
                                return;
                            }
                        };
                        let addresses = data.local_addr().and_then(|data| {
                            let grpc = grpc.as_ref().map(|l| l.local_addr()).transpose()?;
                            Ok((data, grpc))
                        });
                        let _ = ready.send(addresses);
                        let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
                            let _ = stop.wait_for(|stop| *stop).await;
                        };
                        let serving_data =
                            server.serve(data, router.data_app(), stopped(stop.clone()));
                        match grpc {
                            Some(grpc) => {
                                let serving_grpc =
                                    server.serve_http2(grpc, router.grpc_service(), stopped(stop));
                                tokio::join!(serving_data, serving_grpc);
                            }
                            None => serving_data.await,
                        }
                    });
                })?;
            (bound.data, bound.grpc) = answer
                .recv()
                .map_err(|_| std::io::Error::other("a router worker stopped before listening"))??;
            bound.handles.push(handle);
        }
        Ok(bound)
    }
}

/// What [`Router::serve_on_workers`] bound, and its worker threads.
pub struct WorkersBound {
    pub data: std::net::SocketAddr,
    pub grpc: Option<std::net::SocketAddr>,
    pub handles: Vec<std::thread::JoinHandle<()>>,
}

fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

async fn metrics(
    axum::extract::State(router): axum::extract::State<Arc<Router>>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        router.metrics.encode(),
    )
}

async fn no_admin_here() -> axum::response::Response {
    proxy::error(
        axum::http::StatusCode::NOT_FOUND,
        "the admin API is not served on the data port; use the router's admin listener (--admin-port)",
    )
}

fn modified(router: &std::sync::Weak<Router>) -> Option<SystemTime> {
    let router = router.upgrade()?;
    std::fs::metadata(&router.config_path)
        .and_then(|m| m.modified())
        .ok()
}
