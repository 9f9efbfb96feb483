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
use crate::store::ModelStore;

/// Everything `weir serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model_repository: PathBuf,
    pub host: String,
    pub http_port: u16,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
}

impl ServeConfig {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
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
        let loader = app.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            loader.store.load_all()?;
            loader.ready.store(true, Ordering::Release);
            let elapsed = started.elapsed();
            tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "server ready");
            Ok(elapsed)
        });
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

    /// Stops taking new connections, lets open requests finish, and returns when the server
    /// has stopped.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.app.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(result) => Ok(result?),
            Err(join) => Err(ServeError::Io(std::io::Error::other(join.to_string()))),
        }
    }
}
