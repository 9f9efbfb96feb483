//! Start-up and shutdown of `weir serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::registry::{RegistrySource, RegistrySync};
use crate::store::ModelStore;

/// Everything `weir serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model_repository: PathBuf,
    pub host: String,
    pub http_port: u16,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Inference requests the server holds at once; more get 503 at once.
    pub max_concurrent_requests: usize,
    pub model_control: ModelControl,
    /// How often `poll` mode rereads the repository.
    pub repository_poll: Duration,
    /// How long a shutdown waits for accepted requests to finish.
    pub drain_timeout: Duration,
    /// Models to follow in a registry (`--registry`, `--model`).
    pub registry: Option<RegistrySource>,
}

impl ServeConfig {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
    pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;

    /// Defaults for everything but where the models are and where to listen.
    pub fn new(model_repository: PathBuf, host: impl Into<String>, http_port: u16) -> ServeConfig {
        ServeConfig {
            model_repository,
            host: host.into(),
            http_port,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_concurrent_requests: Self::DEFAULT_MAX_CONCURRENT_REQUESTS,
            model_control: ModelControl::None,
            repository_poll: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(30),
            registry: None,
        }
    }
}

/// How the set of served models may change after start-up (Triton's `--model-control-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelControl {
    /// Load the repository once; load and unload requests are refused.
    None,
    /// Load the repository once, then load and unload on request.
    Explicit,
    /// As explicit, and reread the repository periodically: new and changed versions load,
    /// removed ones go.
    Poll,
}

/// Shared state of a running server.
pub struct App {
    pub config: ServeConfig,
    pub store: ModelStore,
    pub metrics: Arc<Metrics>,
    /// True once the repository has been loaded, false again while draining.
    pub ready: AtomicBool,
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
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    loaded: JoinHandle<Result<Duration, ServeError>>,
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
        if !config.model_repository.is_dir() {
            return Err(weir_models::repository::RepositoryError::Unreadable {
                path: config.model_repository.display().to_string(),
                reason: "not a directory".to_owned(),
            }
            .into());
        }
        let metrics = Arc::new(Metrics::new());
        let app = Arc::new(App {
            store: ModelStore::new(config.model_repository.clone(), metrics.clone()),
            config,
            metrics,
            ready: AtomicBool::new(false),
        });
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let router = crate::routes::router(app.clone());
        // Small answers are the common case; Nagle's delay would add milliseconds to each.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_rx.wait_for(|stop| *stop).await;
                })
                .await
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
            // Registry models are resolved once before the server reports ready; a refusal is
            // logged and recorded, and the server starts with what it could load.
            if let Some(sync) = first_sync {
                sync.sync(&loader).await;
            }
            loader.ready.store(true, Ordering::Release);
            let elapsed = started.elapsed();
            tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "server ready");
            Ok(elapsed)
        });
        if app.config.model_control == ModelControl::Poll {
            tokio::spawn(poll_repository(app.clone(), shutdown.subscribe()));
        }
        if let Some(sync) = registry {
            tokio::spawn(follow_registry(app.clone(), sync, shutdown.subscribe()));
        }
        tracing::info!(%addr, "listening");
        Ok(RunningServer {
            app,
            addr,
            shutdown,
            task,
            loaded,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the repository has loaded; returns the time from start to ready.
    pub async fn wait_ready(&mut self) -> Result<Duration, ServeError> {
        match (&mut self.loaded).await {
            Ok(result) => result,
            Err(join) => Err(ServeError::Io(std::io::Error::other(join.to_string()))),
        }
    }

    /// Drains: turns not-ready, stops accepting connections, lets every accepted request finish
    /// (up to the drain timeout), and returns when the server has stopped.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.app.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        let drain_timeout = self.app.config.drain_timeout;
        match tokio::time::timeout(drain_timeout, self.task).await {
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
    loop {
        tokio::select! {
            _ = tokio::time::sleep(sync.poll_interval()) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        sync.sync(&app).await;
    }
}

/// Rereads the repository every `repository_poll` until shutdown.
async fn poll_repository(app: Arc<App>, mut stop: watch::Receiver<bool>) {
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
    }
}
