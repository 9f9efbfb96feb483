//! `weir registry`: the model registry and experiment tracking (MLflow's REST API) on one port,
//! behind one access layer whose table covers both (docs/security.md). The server itself is
//! `weir-mlflow-server`; this file holds its flags and start-up (identities, exposure check,
//! listener, signals).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use weir_mlflow_server::Config;
use weir_mlflow_wire::Authenticator;

use crate::{announce, shutdown_signal};

/// How often the identities file is reread (rotation takes effect within this).
const IDENTITIES_RELOAD: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Where registry data lives: `sqlite://PATH` (the embedded default) or
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE` (schema created on first start).
    #[arg(
        long,
        env = "WEIR_DB",
        default_value = "sqlite://weir.db",
        hide_env_values = true
    )]
    db: String,
    /// The most PostgreSQL connections the registry opens at once (each replica its own pool;
    /// keep replicas x pool under the server's max_connections). SQLite keeps one writer.
    #[arg(long, env = "WEIR_DB_POOL_SIZE", default_value_t = weir_mlflow_server::DEFAULT_POOL_SIZE,
          value_parser = pool_size_parser())]
    db_pool_size: usize,
    /// Where model and run artifacts (`mlflow-artifacts:/…`) are kept: a folder (or
    /// `file://PATH`), or `s3://BUCKET/PREFIX` in S3-compatible storage, configured from the
    /// standard environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID/…, a credentials
    /// file, or web identity; AWS_ALLOW_HTTP=true for a plain-http endpoint). Any other scheme
    /// is refused at start.
    #[arg(long, env = "WEIR_ARTIFACTS", default_value = "weir-artifacts")]
    artifacts: PathBuf,
    /// Address to listen on. Anything but loopback needs --tokens (or --allow-anonymous).
    #[arg(long, env = "WEIR_HOST", default_value = "127.0.0.1")]
    host: String,
    /// HTTP port; 0 picks a free one (the chosen port is printed).
    #[arg(long, env = "WEIR_HTTP_PORT", default_value_t = 5000)]
    http_port: u16,
    /// Identities file: `[[user]]` entries with `name`, `token` (or `token_sha256`) and `roles`
    /// (reader, submitter, approver, admin); reread when it changes. With it every call but
    /// /health needs a token. Without it callers name themselves (HTTP Basic user,
    /// `X-Weir-User`) and hold every role.
    #[arg(long, env = "WEIR_TOKENS")]
    tokens: Option<PathBuf>,
    /// Serve a non-loopback address without identities: anyone who reaches the port can read,
    /// register, approve and delete under any name.
    #[arg(long, env = "WEIR_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Largest artifact file accepted in one upload, in bytes (413 beyond). Uploads and
    /// downloads stream, so memory does not grow with it.
    #[arg(long, env = "WEIR_MAX_ARTIFACT_BYTES", default_value_t = 1 << 30)]
    max_artifact_bytes: u64,
    /// Aliases that may point only at approved versions.
    #[arg(
        long,
        env = "WEIR_PROTECTED_ALIASES",
        value_delimiter = ',',
        default_value = "production,champion"
    )]
    protected_aliases: Vec<String>,
    #[command(flatten)]
    limits: crate::server_limits::ServerLimitsArgs,
}

/// 1 to 1024 connections: at least one to work at all, and a bound well past any server's
/// `max_connections` so a typo cannot ask for millions.
fn pool_size_parser() -> impl clap::builder::TypedValueParser<Value = usize> {
    use clap::builder::TypedValueParser;
    clap::value_parser!(u16).range(1..=1024).map(usize::from)
}

pub async fn run(args: RegistryArgs) -> anyhow::Result<()> {
    let authenticator = match &args.tokens {
        Some(file) => Authenticator::from_file(file)?,
        None => Authenticator::anonymous(),
    };
    refuse_open_exposure(&args.host, &authenticator, args.allow_anonymous)?;
    let stores = weir_mlflow_server::open(Config {
        database: args.db,
        pool_size: args.db_pool_size,
        artifacts: args.artifacts,
        max_artifact_bytes: args.max_artifact_bytes,
        protected_aliases: args.protected_aliases,
    })
    .await?;
    let bind = format!("{}:{}", args.host, args.http_port);
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    announce(format_args!(
        "weir registry listening on http://{}",
        listener.local_addr()?
    ));
    if let Some(file) = &args.tokens {
        authenticator.watch(file.clone(), IDENTITIES_RELOAD);
    }
    let server = args.limits.server();
    let database = stores.database.clone();
    let metrics = weir_mlflow_server::RegistryMetrics::new()
        .with_listener(&server)
        .with_pool(move || {
            let pool = database.pool_stats();
            (pool.size, pool.in_use)
        });
    let (app, _) = weir_mlflow_server::app_with_metrics(&stores, authenticator, metrics);
    server.serve(listener, app, shutdown_signal()).await;
    Ok(())
}

/// A server without identities answers anyone as anyone; that is only safe where nobody else
/// can reach it, so a non-loopback address needs the operator to say so.
fn refuse_open_exposure(
    host: &str,
    authenticator: &Authenticator,
    allow_anonymous: bool,
) -> anyhow::Result<()> {
    if authenticator.requires_credentials() || weir_http::is_loopback_host(host) {
        return Ok(());
    }
    if !allow_anonymous {
        anyhow::bail!(
            "refusing to serve {host} without identities: anyone who reaches it could approve and delete models as anyone. Give --tokens FILE (see docs/security.md), bind 127.0.0.1, or pass --allow-anonymous to accept that"
        );
    }
    tracing::warn!(
        host,
        "SERVING WITHOUT IDENTITIES on a non-loopback address (--allow-anonymous): anyone who reaches this port can read, register, approve and delete models under any name"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
