//! `weir route` (the canary router) and `weir canary …` (its admin API from the shell).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};
use weir_router::client::AdminClient;
use weir_router::AdminToken;

use crate::output::{json as print_json, table, text, Output};

#[derive(clap::Args)]
pub struct RouteArgs {
    /// The routes file (TOML: [[route]] with [[route.backend]] version, endpoints, weight).
    #[arg(long, env = "WEIR_CONFIG")]
    config: PathBuf,
    /// Where admin changes are kept across restarts (default: next to the routes file). With
    /// --registry it is a local copy of the shared state, used when the registry is away.
    #[arg(long, env = "WEIR_STATE")]
    state: Option<PathBuf>,
    /// Share weights, promotions and rollouts with the other router replicas through this weir
    /// registry (its database): a change through any replica reaches all within a second, and
    /// one replica at a time drives a rollout. Without it, each router keeps its own state.
    #[arg(long, env = "WEIR_REGISTRY")]
    registry: Option<String>,
    /// A file holding a registry token with the `admin` role (writing the shared state and
    /// taking rollout leases need it).
    #[arg(long, env = "WEIR_REGISTRY_TOKEN_FILE", requires = "registry")]
    registry_token_file: Option<PathBuf>,
    /// A PEM bundle of the CA(s) to trust for an https:// registry, instead of the system's.
    #[arg(long, env = "WEIR_CA_FILE", requires = "registry")]
    ca_file: Option<PathBuf>,
    /// The shared state's name in the registry; replicas serving the same routes must use the
    /// same one (default: routes/ and the routes file's name without extension, e.g.
    /// routes/routes for routes.toml).
    #[arg(long, env = "WEIR_STATE_KEY", requires = "registry")]
    state_key: Option<String>,
    /// Address the data plane (inference traffic and /metrics) listens on.
    #[arg(long, env = "WEIR_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Data-plane HTTP port; 0 picks a free one (printed on the first line).
    #[arg(long, env = "WEIR_HTTP_PORT", default_value_t = 8000)]
    http_port: u16,
    /// Serve gRPC (the Open Inference Protocol's GRPCInferenceService, HTTP/2) on this port of
    /// --host; 0 picks a free one (printed on the third line). Off unless given. The replicas'
    /// gRPC port is `grpc_port` in the routes file's [settings], or each endpoint's own.
    #[arg(long, env = "WEIR_GRPC_PORT")]
    grpc_port: Option<u16>,
    /// Address the admin API listens on. Anything but loopback needs a token (or
    /// --allow-anonymous).
    #[arg(long, env = "WEIR_ADMIN_HOST", default_value = "127.0.0.1")]
    admin_host: String,
    /// Admin API port (weights, promote, rollback, replicas; also /metrics); 0 picks a free one
    /// (printed on the second line).
    #[arg(long, env = "WEIR_ADMIN_PORT", default_value_t = 8001)]
    admin_port: u16,
    /// File holding the bearer token every admin call must carry (surrounding whitespace is
    /// ignored; an empty file is an error).
    #[arg(long, env = "WEIR_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// The admin bearer token itself; prefer --admin-token-file (a flag shows in `ps`).
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Let the admin API listen on a non-loopback address without a token: anyone who can
    /// reach that port can then change weights, promote, roll back and add replicas.
    #[arg(long)]
    allow_anonymous: bool,
    /// Threads serving requests, each with its own event loop (default: one per core).
    #[arg(long, env = "WEIR_WORKERS")]
    workers: Option<usize>,
    /// Check the routes file, print the routes, and exit.
    #[arg(long)]
    check: bool,
    /// Memory the router may use, in bytes; half of it is the budget for request bodies held
    /// at once (503 with Retry-After past it). Default: the cgroup's memory limit when there is
    /// one, else the machine's.
    #[arg(long, env = "WEIR_MAX_MEMORY")]
    max_memory: Option<u64>,
    /// Deadlines and caps, each for the data and the admin listener.
    #[command(flatten)]
    limits: crate::server_limits::ServerLimitsArgs,
}

pub async fn serve(args: RouteArgs) -> anyhow::Result<()> {
    if args.check {
        let file = weir_router::RoutesFile::load(&args.config)?;
        for route in &file.route {
            let weights: Vec<String> = route
                .backend
                .iter()
                .map(|b| format!("{}={}%", b.version, b.weight))
                .collect();
            println!("{}: {}", route.model, weights.join(" "));
        }
        return Ok(());
    }
    let token = AdminToken::from_value_or_file(
        args.admin_token.as_deref(),
        args.admin_token_file.as_deref(),
        "from --admin-token (or WEIR_ADMIN_TOKEN)",
    )?;
    anyhow::ensure!(
        args.admin_port == 0 || args.admin_port != args.http_port || args.admin_host != args.host,
        "--admin-port {} is the data port too: the admin API needs a listener of its own",
        args.admin_port
    );
    let admin_address = resolve(&args.admin_host, args.admin_port).await?;
    weir_router::auth::check_exposure(admin_address, token.as_ref(), args.allow_anonymous)?;
    let address = resolve(&args.host, args.http_port).await?;
    let (body_budget_bytes, source) = weir_http::body::memory_limit(args.max_memory);
    let body_budget_bytes = body_budget_bytes / 2;
    tracing::info!(
        bytes = body_budget_bytes,
        source,
        "request bodies held at once may use half of the memory limit"
    );
    let shared = match &args.registry {
        Some(registry) => Some(shared_config(
            registry,
            args.registry_token_file.as_deref(),
            args.ca_file.as_deref(),
            args.state_key.clone(),
            &args.config,
        )?),
        None => None,
    };
    let serving = weir_router::Serving {
        listener: args.limits.server(),
        body_budget_bytes,
        shared,
    };
    let router = weir_router::Router::serving(&args.config, args.state, token, serving)
        .with_context(|| format!("cannot start the router with {}", args.config.display()))?;
    let admin_listener = tokio::net::TcpListener::bind(admin_address)
        .await
        .with_context(|| format!("cannot listen on {admin_address} for the admin API"))?;
    let admin_bound = admin_listener.local_addr()?;
    let grpc_address = match args.grpc_port {
        Some(port) => {
            anyhow::ensure!(
                port == 0 || (port != args.http_port && port != args.admin_port),
                "--grpc-port {port} is also the HTTP or admin port: gRPC needs a port of its own"
            );
            Some(resolve(&args.host, port).await?)
        }
        None => None,
    };
    router.spawn_background();
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bound = router
        .serve_on_workers(address, grpc_address, workers, stopped.clone())
        .with_context(|| match grpc_address {
            Some(grpc) => format!("cannot listen on {address} and {grpc} (gRPC)"),
            None => format!("cannot listen on {address}"),
        })?;
    let admin = router.serve_admin(admin_listener, args.limits.server(), stopped);
    // The data address first: scripts and tests read the first line.
    crate::announce(format_args!(
        "weir route listening on http://{}",
        bound.data
    ));
    crate::announce(format_args!("weir route admin API on http://{admin_bound}"));
    if let Some(grpc_bound) = bound.grpc {
        crate::announce(format_args!("weir route gRPC listening on {grpc_bound}"));
    }
    crate::shutdown_signal().await;
    let _ = stop.send(true);
    let _ = admin.await;
    let handles = bound.handles;
    tokio::task::spawn_blocking(move || {
        for handle in handles {
            let _ = handle.join();
        }
    })
    .await
    .context("the router's workers did not stop cleanly")
}

/// How `--registry` and its companions share the router's state; the token is read now, so a
/// missing or empty file stops the start rather than the first change.
fn shared_config(
    registry: &str,
    token_file: Option<&std::path::Path>,
    ca_file: Option<&std::path::Path>,
    key: Option<String>,
    config: &std::path::Path,
) -> anyhow::Result<weir_router::shared::SharedConfig> {
    anyhow::ensure!(
        registry.starts_with("http://") || registry.starts_with("https://"),
        "--registry '{registry}' must be an http:// or https:// URL"
    );
    let token = token_file
        .map(crate::models_cli::read_token_file)
        .transpose()?;
    let key = key.unwrap_or_else(|| weir_router::shared::default_key(config));
    anyhow::ensure!(
        !key.is_empty()
            && key.len() <= 200
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c)),
        "--state-key '{key}' must be 1 to 200 characters of letters, digits and . _ - / : @"
    );
    let mut shared = weir_router::shared::SharedConfig::new(registry, token, key);
    shared.http = weir_http::HttpClient::with_ca_file(ca_file)?;
    tracing::info!(registry, key = %shared.key, "router state shared through the registry");
    Ok(shared)
}

/// The first address `host:port` resolves to.
async fn resolve(host: &str, port: u16) -> anyhow::Result<std::net::SocketAddr> {
    let bind = format!("{host}:{port}");
    let first = tokio::net::lookup_host(&bind)
        .await
        .with_context(|| format!("cannot resolve {bind}"))?
        .next();
    first.with_context(|| format!("{bind} resolves to no address"))
}

#[derive(clap::Args)]
pub struct CanaryArgs {
    /// The router's admin API (`weir route --admin-port`, not its data port).
    #[arg(
        long,
        env = "WEIR_ROUTER",
        default_value = "http://127.0.0.1:8001",
        global = true
    )]
    router: String,
    /// File holding the router's admin token, when it has one.
    #[arg(long, env = "WEIR_TOKEN_FILE", global = true, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The router's admin token itself; prefer --token-file (a flag shows in `ps`).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// How to print answers.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: CanaryCommand,
}

#[derive(Subcommand)]
enum CanaryCommand {
    /// Send PERCENT of MODEL's traffic to the canary, the rest to the stable version.
    Set { model: String, percent: u32 },
    /// The canary takes all traffic and becomes the stable version; the former stable version
    /// stays at 0% (role "previous") for a rollback.
    Promote { model: String },
    /// All traffic back to the stable version (stops a rollout); right after a promotion,
    /// undoes it: the previous stable version takes all traffic again.
    Rollback { model: String },
    /// Weights, per-version traffic, errors and latency, rollout progress and events.
    Status { model: String },
    /// Step the canary through --steps, judging each interval; promote or roll back.
    Rollout {
        model: String,
        /// Canary percentages, e.g. 5,10,25,50,100.
        #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100")]
        steps: Vec<u32>,
        /// Time per check: 30s, 500ms, 2m, 1h or a number of seconds.
        #[arg(long, default_value = "30s", value_parser = weir_http::duration::parse_duration_arg)]
        interval: Duration,
        /// Highest canary error rate (5xx other than 503, timeouts) a check passes with.
        #[arg(long, default_value_t = 0.01)]
        max_error_rate: f64,
        /// Highest canary p99 a check passes with, e.g. 250ms (a bare number is seconds).
        #[arg(long, value_parser = weir_http::duration::parse_duration_arg)]
        max_p99: Option<Duration>,
        /// Failed checks that roll the canary back.
        #[arg(long, default_value_t = 2)]
        failure_threshold: u32,
        /// Canary requests an interval needs to be judged at all (fewer is a failed check).
        #[arg(long, default_value_t = 50)]
        min_requests: u64,
        /// Judge from this Prometheus server (which scrapes the router) instead of the
        /// router's own measurements.
        #[arg(long)]
        prometheus: Option<String>,
    },
}

fn print_status(status: &Value) {
    let rows = status["backends"]
        .as_array()
        .map(|backends| {
            backends
                .iter()
                .map(|b| {
                    let minute = &b["last_minute"];
                    let registry = b["registry_version"]
                        .as_str()
                        .filter(|n| *n != b["version"].as_str().unwrap_or_default());
                    vec![
                        match registry {
                            Some(number) => format!("{} (v{number})", text(&b["version"])),
                            None => text(&b["version"]),
                        },
                        text(&b["role"]),
                        format!("{}%", text(&b["weight"])),
                        text(&minute["requests"]),
                        format!(
                            "{:.1}",
                            minute["requests_per_second"].as_f64().unwrap_or(0.0)
                        ),
                        format!(
                            "{:.2}%",
                            minute["error_rate"].as_f64().unwrap_or(0.0) * 100.0
                        ),
                        format!("{:.2}", minute["p50_ms"].as_f64().unwrap_or(0.0)),
                        format!("{:.2}", minute["p99_ms"].as_f64().unwrap_or(0.0)),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    println!("model {}", text(&status["model"]));
    table(
        &[
            "version",
            "role",
            "weight",
            "requests (1 min)",
            "req/s",
            "errors",
            "p50 ms",
            "p99 ms",
        ],
        rows,
    );
    if let Some(progress) = status["rollout"]["progress"].as_object() {
        println!(
            "\nrollout: {} (step {}, {} failed checks)",
            text(&progress["phase"]),
            progress["step"].as_u64().unwrap_or(0) + 1,
            text(&progress["failures"])
        );
    }
    if let Some(events) = status["events"].as_array().filter(|e| !e.is_empty()) {
        println!("\nevents (newest last):");
        for event in events.iter().rev().take(10).rev() {
            println!("  {}", text(&event["message"]));
        }
    }
}

pub async fn canary(args: CanaryArgs) -> anyhow::Result<()> {
    let token = AdminToken::from_value_or_file(
        args.token.as_deref(),
        args.token_file.as_deref(),
        "from --token (or WEIR_TOKEN)",
    )?;
    let client = AdminClient::new(&args.router, token.map(|t| t.secret().to_owned()));
    let route = |model: &str, action: &str| format!("routes/{model}/{action}");
    let status = match args.command {
        CanaryCommand::Set { model, percent } => {
            client
                .call(
                    "POST",
                    &route(&model, "canary"),
                    Some(json!({ "percent": percent })),
                )
                .await
        }
        CanaryCommand::Promote { model } => {
            client.call("POST", &route(&model, "promote"), None).await
        }
        CanaryCommand::Rollback { model } => {
            client.call("POST", &route(&model, "rollback"), None).await
        }
        CanaryCommand::Status { model } => {
            client.call("GET", &format!("routes/{model}"), None).await
        }
        CanaryCommand::Rollout {
            model,
            steps,
            interval,
            max_error_rate,
            max_p99,
            failure_threshold,
            min_requests,
            prometheus,
        } => {
            let plan = json!({
                "prometheus": prometheus.map(|url| json!({ "url": url })),
                "steps": steps,
                "interval": interval.as_secs_f64(),
                "max_error_rate": max_error_rate,
                "max_p99": max_p99.map(|d| d.as_secs_f64()),
                "failure_threshold": failure_threshold,
                "min_requests": min_requests,
            });
            client
                .call("POST", &route(&model, "rollout"), Some(plan))
                .await
        }
    }
    .context("the router call failed")?;
    match args.output {
        Output::Json => print_json(&status),
        Output::Table => print_status(&status),
    }
    Ok(())
}
