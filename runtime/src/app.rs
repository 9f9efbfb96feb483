//! The shared state of a running server ([`App`]) and what it was told to do ([`ServeConfig`]).
//!
//! Kept apart from start-up (`server`) so the request handlers (`routes`) and the start-up code
//! both depend on it, and neither on the other.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::registry::RegistrySource;
use crate::store::ModelStore;

/// Everything `weir serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model_repository: PathBuf,
    pub host: String,
    pub http_port: u16,
    /// The gRPC port (Open Inference Protocol over gRPC) on the same host; none: no gRPC.
    /// 0 picks a free port ([`crate::RunningServer::grpc_addr`] tells which).
    pub grpc_port: Option<u16>,
    /// Largest request body accepted; larger ones get 413 (a gRPC message: RESOURCE_EXHAUSTED).
    pub max_body_bytes: usize,
    /// Inference requests the server holds at once; more get 503 at once.
    pub max_concurrent_requests: usize,
    /// Request body bytes held at once across all requests (crate::budget); past it, 503.
    pub body_budget_bytes: u64,
    /// Header, body and idle deadlines, and the connection caps (docs/serving.md).
    pub limits: weir_http::server::ServerLimits,
    pub model_control: ModelControl,
    /// How often `poll` mode rereads the repository.
    pub repository_poll: Duration,
    /// How long a shutdown waits for accepted requests to finish.
    pub drain_timeout: Duration,
    /// Models to follow in a registry (`--registry`, `--model`).
    pub registry: Option<RegistrySource>,
    /// Ready only when every model serves (the default, as Triton's `--strict-readiness`);
    /// false: ready once start-up loading has finished, whatever it loaded.
    pub strict_readiness: bool,
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
            grpc_port: None,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_concurrent_requests: Self::DEFAULT_MAX_CONCURRENT_REQUESTS,
            body_budget_bytes: crate::budget::memory_limit(None).0 / 2,
            limits: weir_http::server::ServerLimits::default(),
            model_control: ModelControl::None,
            repository_poll: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(30),
            registry: None,
            strict_readiness: true,
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
    /// Shared with the registry sync, which needs the models and nothing else of the server.
    pub store: Arc<ModelStore>,
    pub metrics: Arc<Metrics>,
    /// The server-wide inference slots and request-body budget, one for both listeners: an
    /// HTTP and a gRPC request draw on the same limits (crate::shed).
    pub admission: crate::shed::LoadShedLayer,
    /// True once start-up loading (the repository, then the registry's first answer) has
    /// finished, false again while draining. Readiness also needs every model to serve: see
    /// [`App::unready_reasons`].
    pub ready: AtomicBool,
}

impl App {
    /// Why the server must not get traffic yet, empty when it may: it is ready only once
    /// start-up loading is done and every model it was told to serve (each repository model,
    /// each registry `--model`) serves a version. A refused registry version, an unreachable
    /// registry or a model whose config makes it unavailable keeps it unready, so Kubernetes
    /// keeps the pod out of rotation rather than send it requests for a model it lacks.
    pub fn unready_reasons(&self) -> Vec<String> {
        if !self.ready.load(Ordering::Acquire) {
            return vec!["the server is loading its models or draining".to_owned()];
        }
        if !self.config.strict_readiness {
            return Vec::new();
        }
        let registry_models = self
            .config
            .registry
            .iter()
            .flat_map(|source| source.models.iter().map(|m| m.served_as.as_str()));
        self.store.not_serving(registry_models)
    }

    pub fn is_ready(&self) -> bool {
        self.unready_reasons().is_empty()
    }
}
