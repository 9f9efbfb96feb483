//! Start-up and shutdown of `weir serve`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{App, ModelControl, ServeConfig};
use crate::budget::BodyBudget;
use crate::metrics::Metrics;
use crate::registry::{Outcome, RegistrySync, SyncError};
use crate::shed::LoadShedLayer;
use crate::store::ModelStore;

/// Logs when readiness changes (once per change, not per poll), with the reasons while unready.
fn note_readiness(app: &App, was_ready: &mut Option<bool>) {
    let reasons = app.unready_reasons();
    let ready = reasons.is_empty();
    if *was_ready == Some(ready) {
        return;
    }
    *was_ready = Some(ready);
    if ready {
        tracing::info!("server ready: every model serves");
    } else {
        tracing::warn!(reasons = %reasons.join("; "), "server not ready");
    }
}

/// Records, for registry models that serve nothing, why the last sync brought nothing (the
/// registry unreachable, a 401, an unexpected answer), so the repository index shows it. Refused
/// and failed-to-load versions are already recorded with their version.
fn record_sync_failures(app: &App, outcomes: &[(String, Result<Outcome, SyncError>)]) {
    for (name, outcome) in outcomes {
        match outcome {
            Ok(_) | Err(SyncError::Refused(_) | SyncError::Load(_)) => {}
            Err(other) => app.store.record_unavailable(name, other.to_string()),
        }
    }
}

/// Checks the model repository folder before anything loads. With a registry the folder is
/// only the cache its versions are downloaded into, so a missing one (a fresh machine, a new
/// pod's empty volume path) is created with its parents. Without a registry the folder is the
/// only source of models: a missing one is almost always a typo, and creating it would start a
/// server with nothing to serve, so it is an error naming the path.
fn prepare_repository(config: &ServeConfig) -> Result<(), ServeError> {
    let path = &config.model_repository;
    let refuse = |reason: String| weir_models::repository::RepositoryError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    if path.is_dir() {
        return Ok(());
    }
    if path.exists() {
        return Err(refuse("it exists but is not a directory".to_owned()).into());
    }
    if config.registry.is_none() {
        return Err(refuse(
            "no such directory (create it and put <model>/<version>/ folders in it, or pass \
             --registry to fill it from a registry)"
                .to_owned(),
        )
        .into());
    }
    std::fs::create_dir_all(path)
        .map_err(|e| refuse(format!("cannot create it as the registry cache: {e}")))?;
    tracing::info!(path = %path.display(), "created the model repository folder (the registry's cache)");
    Ok(())
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Repository(#[from] weir_models::repository::RepositoryError),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A server that is listening; models load in the background.
pub struct RunningServer {
    pub app: Arc<App>,
    addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    grpc_task: Option<JoinHandle<()>>,
    /// The start-up load, until it has been awaited; then how long it took.
    loaded: Option<JoinHandle<Result<Duration, ServeError>>>,
    load_time: Option<Duration>,
}

impl RunningServer {
    /// Binds the port (failing at once if it is taken), then loads the repository while the
    /// server already answers liveness checks, as Triton does.
    pub async fn start(config: ServeConfig) -> Result<RunningServer, ServeError> {
        let started = Instant::now();
        let bind_addr = format!("{}:{}", config.host, config.http_port);
        let listener = TcpListener::bind(&bind_addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: bind_addr.clone(),
                source,
            })?;
        let addr = listener.local_addr()?;
        // Bound before anything loads, like the HTTP port: a taken port fails start-up at once.
        let grpc_listener =
            match config.grpc_port {
                Some(port) => {
                    let bind_addr = format!("{}:{port}", config.host);
                    Some(TcpListener::bind(&bind_addr).await.map_err(|source| {
                        ServeError::Bind {
                            addr: bind_addr.clone(),
                            source,
                        }
                    })?)
                }
                None => None,
            };
        let grpc_addr = grpc_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        prepare_repository(&config)?;
        // Deadlines and connection caps against stalling clients; TCP_NODELAY on every
        // connection (small answers are the common case, Nagle would delay each).
        let server = weir_http::server::Server::new(config.limits);
        let metrics = Arc::new(Metrics::new().with_listener(&server));
        let app = Arc::new(App {
            store: Arc::new(ModelStore::new(
                config.model_repository.clone(),
                metrics.clone(),
            )),
            admission: LoadShedLayer::new(
                config.max_concurrent_requests,
                config.max_body_bytes,
                metrics.shed.clone(),
            )
            .with_budget(BodyBudget::new(config.body_budget_bytes)),
            config,
            metrics,
            ready: AtomicBool::new(false),
        });
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let grpc_task = grpc_listener.map(|listener| {
            let (app, server, stop) = (app.clone(), server.clone(), shutdown.subscribe());
            tokio::spawn(crate::grpc::serve(app, server, listener, stop))
        });
        let router = crate::routes::router(app.clone());
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            };
            server.serve(listener, router, stopped).await;
            Ok(())
        });
        let registry = app
            .config
            .registry
            .clone()
            .map(|source| Arc::new(RegistrySync::new(source)));
        let loader = app.clone();
        let first_sync = registry.clone();
        let loaded = tokio::spawn(async move {
            let store = loader.clone();
            tokio::task::spawn_blocking(move || store.store.sync_all())
                .await
                .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))??;
            // Registry models are resolved once before start-up loading ends; a refusal is
            // logged and recorded, and keeps the server unready until a later poll succeeds.
            if let Some(sync) = first_sync {
                record_sync_failures(&loader, &sync.sync(&loader.store).await);
            }
            loader.ready.store(true, Ordering::Release);
            let elapsed = started.elapsed();
            tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "models loaded");
            note_readiness(&loader, &mut None);
            Ok(elapsed)
        });
        if app.config.model_control == ModelControl::Poll {
            tokio::spawn(poll_repository(app.clone(), shutdown.subscribe()));
        }
        if let Some(sync) = registry {
            tokio::spawn(follow_registry(app.clone(), sync, shutdown.subscribe()));
        }
        match grpc_addr {
            Some(grpc) => tracing::info!(%addr, %grpc, "listening"),
            None => tracing::info!(%addr, "listening"),
        }
        Ok(RunningServer {
            app,
            addr,
            grpc_addr,
            shutdown,
            task,
            grpc_task,
            loaded: Some(loaded),
            load_time: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where gRPC is served, when it is (`ServeConfig::grpc_port`).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Waits until start-up loading has finished, whatever it brought (a refused model leaves
    /// the server up but unready); returns the time it took. An unreadable repository is an
    /// error. Safe to cancel and to call again.
    pub async fn wait_loaded(&mut self) -> Result<Duration, ServeError> {
        if let Some(handle) = &mut self.loaded {
            let outcome = handle.await;
            self.loaded = None;
            self.load_time = Some(
                outcome
                    .map_err(|join| ServeError::Io(std::io::Error::other(join.to_string())))??,
            );
        }
        self.load_time.ok_or_else(|| {
            ServeError::Io(std::io::Error::other(
                "the model repository failed to load at start",
            ))
        })
    }

    /// Waits until the server is ready (see [`App::unready_reasons`]); returns the time from
    /// start to ready. A server that never becomes ready (a model its registry refuses) keeps
    /// waiting here while it runs unready, as Kubernetes expects of a pod out of rotation.
    pub async fn wait_ready(&mut self) -> Result<Duration, ServeError> {
        let loaded = self.wait_loaded().await?;
        let waiting = Instant::now();
        while !self.app.is_ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(loaded + waiting.elapsed())
    }

    /// Drains: turns not-ready, stops accepting connections (HTTP and gRPC; gRPC connections
    /// get a GOAWAY), lets every accepted request finish (up to the drain timeout), and returns
    /// when both listeners have stopped.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.app.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        let drain_timeout = self.app.config.drain_timeout;
        let (http, grpc) = (self.task, self.grpc_task);
        let both = async move {
            let http = http.await;
            let grpc = match grpc {
                Some(task) => task.await,
                None => Ok(()),
            };
            match (http, grpc) {
                (Ok(Ok(())), Err(join)) => Err(join),
                (http, _) => http,
            }
        };
        match tokio::time::timeout(drain_timeout, both).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(join)) => Err(ServeError::Io(std::io::Error::other(join.to_string()))),
            Err(_) => {
                tracing::warn!(
                    timeout_secs = drain_timeout.as_secs(),
                    "drain timeout passed with requests still open; stopping anyway"
                );
                Ok(())
            }
        }
    }
}

/// Re-resolves the registry models every poll interval until shutdown.
async fn follow_registry(app: Arc<App>, sync: Arc<RegistrySync>, mut stop: watch::Receiver<bool>) {
    let mut was_ready = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(sync.poll_interval()) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        record_sync_failures(&app, &sync.sync(&app.store).await);
        note_readiness(&app, &mut was_ready);
    }
}

/// Rereads the repository every `repository_poll` until shutdown.
async fn poll_repository(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut was_ready = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(app.config.repository_poll) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let store = app.clone();
        match tokio::task::spawn_blocking(move || store.store.sync_all()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "cannot poll the model repository"),
            Err(err) => tracing::error!(error = %err, "the repository poll stopped unexpectedly"),
        }
        note_readiness(&app, &mut was_ready);
    }
}
