//! The `weir` command: parses flags and wires the crates together; nothing else lives here.

mod autoscale_cli;
mod fetch_cli;
mod models_cli;
mod output;
mod registry_cli;
mod route_cli;
mod runs_cli;
mod server_limits;
mod thread_cache;
mod train_cli;
mod up;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use weir_runtime::{ModelControl, RunningServer, ServeConfig};

/// Model serving with canary rollouts, autoscaling and an MLflow-compatible registry.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    /// How logs are written.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    /// Log filter in tracing's syntax (`info`, `weir_runtime=debug`, …); RUST_LOG also works.
    #[arg(long, env = "WEIR_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the models of a model repository over the Open Inference Protocol (V2) and KServe V1.
    Serve(ServeArgs),
    /// Run the model registry and experiment tracking (MLflow's REST API) on SQLite or
    /// PostgreSQL and a local artifact directory.
    Registry(registry_cli::RegistryArgs),
    /// Register, approve and alias model versions in a registry.
    Models(models_cli::ModelsArgs),
    /// Download an approved version's files into a folder, verified against the registry's
    /// digest (for a KServe storage initializer or an init container).
    Fetch(fetch_cli::FetchArgs),
    /// List and show tracked runs.
    Runs(runs_cli::RunsArgs),
    /// Run the canary router in front of `weir serve` replicas.
    Route(route_cli::RouteArgs),
    /// Set, promote, roll back, inspect and roll out canaries on a router.
    Canary(route_cli::CanaryArgs),
    /// Scale model versions on their load; `simulate` tries a policy on a trace.
    Autoscale(autoscale_cli::AutoscaleArgs),
    /// Train a tabular model from a CSV (candle), track the run, register the version.
    Train(train_cli::TrainArgs),
    /// The whole stack on this machine (registry, router, autoscaled replicas); --demo to try it.
    Up(up::UpArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Folder holding `<model>/<version>/model.onnx` (and an optional `<model>/config.toml`).
    /// With --registry it is the cache of downloaded versions, created when missing, and may
    /// be left out (then --cache-dir is used).
    #[arg(
        long,
        env = "WEIR_MODEL_REPOSITORY",
        required_unless_present = "registry"
    )]
    model_repository: Option<PathBuf>,
    /// With --registry and no --model-repository: the folder the registry's versions are
    /// downloaded into, created when missing. Default: $XDG_CACHE_HOME/weir/models, else
    /// $HOME/.cache/weir/models. One folder per `weir serve`: a server removes the versions
    /// of its models that it does not serve.
    #[arg(long, env = "WEIR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "WEIR_HOST", default_value = "127.0.0.1")]
    host: String,
    /// HTTP port; 0 picks a free one (the chosen port is logged).
    #[arg(long, env = "WEIR_HTTP_PORT", default_value_t = 8080)]
    http_port: u16,
    /// Also serve the Open Inference Protocol over gRPC (and grpc.health.v1) on this port of the
    /// same host; 0 picks a free one (printed after the HTTP address). Off unless given.
    #[arg(long, env = "WEIR_GRPC_PORT")]
    grpc_port: Option<u16>,
    /// Largest request body accepted, in bytes; larger requests get 413 (a larger gRPC
    /// message: RESOURCE_EXHAUSTED).
    #[arg(long, env = "WEIR_MAX_BODY_BYTES", default_value_t = ServeConfig::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Inference requests held at once across all models; more get 503 with Retry-After at once.
    #[arg(long, env = "WEIR_MAX_CONCURRENT_REQUESTS", default_value_t = ServeConfig::DEFAULT_MAX_CONCURRENT_REQUESTS)]
    max_concurrent_requests: usize,
    /// none: load the repository once; explicit: also load/unload on request
    /// (POST /v2/repository/models/{m}/load|unload); poll: also reread the repository periodically.
    #[arg(long, env = "WEIR_MODEL_CONTROL_MODE", value_enum, default_value_t = ControlMode::None)]
    model_control_mode: ControlMode,
    /// Time between repository rereads in poll mode (500ms, 10s, 2m; a bare number is seconds).
    #[arg(long = "repository-poll", alias = "repository-poll-secs", env = "WEIR_REPOSITORY_POLL_SECS", default_value = "15s", value_parser = positive_duration)]
    repository_poll: Duration,
    /// How long a shutdown (SIGTERM, Ctrl-C) waits for accepted requests to finish.
    #[arg(long = "drain-timeout", alias = "drain-timeout-secs", env = "WEIR_DRAIN_TIMEOUT_SECS", default_value = "30s", value_parser = weir_http::duration::parse_duration_arg)]
    drain_timeout: Duration,
    /// URL of a `weir registry` to serve approved versions from (with --model).
    #[arg(long, env = "WEIR_REGISTRY")]
    registry: Option<String>,
    /// A registry model to serve: NAME=models:/NAME@ALIAS or NAME=models:/NAME/VERSION; repeat
    /// for several. Its files are verified and placed in the model repository.
    #[arg(
        long = "model",
        env = "WEIR_MODEL",
        value_delimiter = ',',
        requires = "registry"
    )]
    models: Vec<weir_runtime::registry::RegistryModel>,
    /// Time between registry checks (an alias that moves is served within one interval).
    #[arg(long, env = "WEIR_REGISTRY_POLL_INTERVAL", default_value = "10s", value_parser = positive_duration)]
    registry_poll_interval: Duration,
    /// A file holding the bearer token for a registry started with --tokens (a file, not a
    /// flag, so the token stays out of `ps` and shell history).
    #[arg(long, env = "WEIR_REGISTRY_TOKEN_FILE", requires = "registry")]
    registry_token_file: Option<PathBuf>,
    /// Download versions' files straight from the registry's S3 bucket through short-lived
    /// presigned URLs the registry hands out (this server needs no S3 credentials; every file
    /// is still verified against the registry's digests). A registry whose artifacts are in a
    /// folder offers none: the files then come through the registry, as without this flag.
    #[arg(long, env = "WEIR_REGISTRY_DIRECT_DOWNLOAD", requires = "registry")]
    registry_direct_download: bool,
    /// A PEM bundle of the CA(s) to trust for an https:// registry, instead of the system's.
    #[arg(long, env = "WEIR_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Listen beyond loopback with --model-control-mode explicit or poll, although anyone who
    /// can reach the port may then load and unload models (those endpoints have no credentials).
    #[arg(long, env = "WEIR_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Memory weir may use, in bytes; half of it is the budget for request bodies held at once
    /// (503 past it). Default: the cgroup's memory limit when there is one, else the machine's.
    #[arg(long, env = "WEIR_MAX_MEMORY")]
    max_memory: Option<u64>,
    /// Ready (`/v2/health/ready`) only while every model it was given serves, as Triton's
    /// --strict-readiness; false: ready once the repository has been read, whatever failed.
    #[arg(long, env = "WEIR_STRICT_READINESS", default_value_t = true, action = clap::ArgAction::Set)]
    strict_readiness: bool,
    #[command(flatten)]
    limits: server_limits::ServerLimitsArgs,
}

/// A duration that must not be zero: a poll every 0 s would spin.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match weir_http::duration::parse_duration_arg(text)? {
        Duration::ZERO => Err(format!("'{text}' is not allowed: it must be more than 0")),
        positive => Ok(positive),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ControlMode {
    None,
    Explicit,
    Poll,
}

fn init_logging(cli: &Cli) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour codes only for a person at a terminal: in a file, a pipe or a log collector they are
/// noise (`\x1b[32m INFO`), and `NO_COLOR` (no-color.org) turns them off everywhere.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if let Err(message) = weir_models::onnx::find_library() {
        tracing::error!("{message}");
    }
    let model_control = !matches!(args.model_control_mode, ControlMode::None);
    if model_control && !weir_http::is_loopback_host(&args.host) {
        anyhow::ensure!(
            args.allow_anonymous,
            "refusing to listen on {} with --model-control-mode explicit or poll: anyone who can \
             reach it could load and unload models; listen on 127.0.0.1, or pass --allow-anonymous \
             to accept that",
            args.host
        );
        tracing::warn!(
            host = %args.host,
            "ANONYMOUS MODEL CONTROL: --allow-anonymous lets anyone who can reach {} load and unload models",
            args.host
        );
    }
    let registry_token = args
        .registry_token_file
        .as_deref()
        .map(models_cli::read_token_file)
        .transpose()?;
    let registry_http = weir_http::HttpClient::with_ca_file(args.ca_file.as_deref())?;
    let model_repository = match (args.model_repository, args.cache_dir) {
        (Some(repository), _) => repository,
        (None, Some(cache)) => cache,
        (None, None) => {
            let (xdg, home) = (std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"));
            default_cache_dir(xdg, home).context(
                "no folder for the registry's versions: pass --cache-dir or --model-repository \
                 (neither XDG_CACHE_HOME nor HOME is set to an absolute path)",
            )?
        }
    };
    let config = ServeConfig {
        grpc_port: args.grpc_port,
        max_body_bytes: args.max_body_bytes,
        max_concurrent_requests: args.max_concurrent_requests.max(1),
        limits: args.limits.limits(),
        strict_readiness: args.strict_readiness,
        body_budget_bytes: {
            let (bytes, source) = weir_runtime::budget::memory_limit(args.max_memory);
            tracing::info!(
                bytes,
                source,
                "memory limit; half of it holds request bodies"
            );
            bytes / 2
        },
        model_control: match args.model_control_mode {
            ControlMode::None => ModelControl::None,
            ControlMode::Explicit => ModelControl::Explicit,
            ControlMode::Poll => ModelControl::Poll,
        },
        repository_poll: args.repository_poll,
        drain_timeout: args.drain_timeout,
        registry: args
            .registry
            .map(|url| weir_runtime::registry::RegistrySource {
                url,
                models: args.models,
                poll: args.registry_poll_interval,
                token: registry_token,
                http: registry_http,
                direct_download: args.registry_direct_download,
            }),
        ..ServeConfig::new(model_repository, args.host, args.http_port)
    };
    let mut server = RunningServer::start(config)
        .await
        .context("cannot start the inference server")?;
    announce(format_args!(
        "weir serve listening on http://{}",
        server.local_addr()
    ));
    // The second line, so scripts reading the first (the HTTP address) are unaffected.
    if let Some(grpc) = server.grpc_addr() {
        announce(format_args!("weir serve gRPC listening on {grpc}"));
    }
    tokio::select! {
        loaded = server.wait_ready() => {
            let elapsed = loaded.context("cannot load the model repository")?;
            announce(format_args!("weir serve ready in {} ms", elapsed.as_millis()));
        }
        _ = shutdown_signal() => return server.shutdown().await.context("shutdown failed"),
    }
    shutdown_signal().await;
    tracing::info!("draining: not ready, finishing accepted requests");
    server.shutdown().await.context("shutdown failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Where `weir serve --registry` keeps versions without --model-repository or --cache-dir:
/// `weir/models` in the user's cache folder as the XDG base directory spec places it
/// ($XDG_CACHE_HOME, else $HOME/.cache; relative values are ignored, as the spec says).
fn default_cache_dir(
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let absolute =
        |value: std::ffi::OsString| Some(PathBuf::from(value)).filter(|p| p.is_absolute());
    xdg_cache_home
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|home| home.join(".cache")))
        .map(|cache| cache.join("weir").join("models"))
}

/// Prints a line for whoever started the server (scripts read the address from the first one).
/// A closed stdout (`weir serve | head -1`) must not take a running server down, as `println!`
/// would by panicking, so write errors are ignored.
pub(crate) fn announce(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends).
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// candle asks for its thread count on every matrix multiplication, and unless
/// `RAYON_NUM_THREADS` is set that means parsing `/proc/cpuinfo` each time: a third of
/// `weir train`'s time and 7% of a MiniLM batch's, measured with `perf` (benches/README.md).
/// Setting it once makes the answer an environment lookup. `available_parallelism` honours CPU
/// affinity and cgroup quotas, so a pod with a CPU limit does not oversubscribe.
fn settle_candle_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // No other thread exists yet, so nothing can be reading the environment meanwhile.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

fn main() -> std::process::ExitCode {
    // First, before any thread exists: on success this process is replaced by its second start.
    let thread_cache = thread_cache::start_with_larger_cache();
    settle_candle_threads();
    let cli = Cli::parse();
    init_logging(&cli);
    if let Err(error) = thread_cache {
        tracing::warn!(%error, "cannot start again with a larger malloc thread cache; running with glibc's default");
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                match cli.command {
                    Command::Serve(args) => serve(args).await,
                    Command::Registry(args) => registry_cli::run(args).await,
                    Command::Models(args) => models_cli::run(args).await,
                    Command::Fetch(args) => fetch_cli::run(args).await,
                    Command::Runs(args) => runs_cli::run(args).await,
                    Command::Route(args) => route_cli::serve(args).await,
                    Command::Canary(args) => route_cli::canary(args).await,
                    Command::Autoscale(args) => autoscale_cli::run(args).await,
                    Command::Up(args) => up::run(args).await,
                    Command::Train(args) => train_cli::run(args).await,
                }
            })
        });
    // The cause chain is what a user needs; a backtrace is noise at this edge.
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::default_cache_dir;
    use std::path::PathBuf;

    #[test]
    fn the_cache_follows_xdg_then_home() {
        let cache = |xdg: Option<&str>, home: Option<&str>| {
            default_cache_dir(xdg.map(Into::into), home.map(Into::into))
        };
        assert_eq!(
            cache(Some("/x/cache"), Some("/home/a")),
            Some(PathBuf::from("/x/cache/weir/models"))
        );
        assert_eq!(
            cache(None, Some("/home/a")),
            Some(PathBuf::from("/home/a/.cache/weir/models"))
        );
        assert_eq!(
            cache(Some("relative"), Some("/home/a")),
            Some(PathBuf::from("/home/a/.cache/weir/models")),
            "a relative XDG_CACHE_HOME is ignored"
        );
        assert_eq!(cache(Some(""), Some("")), None);
        assert_eq!(cache(None, None), None);
    }
}
