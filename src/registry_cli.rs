//! `weir registry`: the model registry and experiment tracking (MLflow's REST API) on one port,
//! behind one access layer whose table covers both (docs/security.md). The server itself is
//! `weir-mlflow-server`; this file holds its flags and start-up (identities, exposure check,
//! listener, signals).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use weir_dashboard::serving::{Serving, ServingConfig};
use weir_http::admin_token::AdminToken;
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
    /// A router's admin API whose routes the dashboard's serving pages show and change
    /// (`http://127.0.0.1:8001`); repeatable, or a comma-separated WEIR_ROUTERS.
    #[arg(
        long = "router",
        env = "WEIR_ROUTERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    routers: Vec<String>,
    /// A file holding the routers' admin token (the one `weir route --admin-token-file` reads),
    /// sent by the dashboard's polls and its set-percent / promote / rollback forms.
    #[arg(long, env = "WEIR_ROUTER_TOKEN_FILE", value_name = "FILE")]
    router_token_file: Option<PathBuf>,
    /// An autoscaler's metrics address (`http://127.0.0.1:9102`) whose decisions the serving
    /// pages show; repeatable, or a comma-separated WEIR_AUTOSCALERS.
    #[arg(
        long = "autoscaler",
        env = "WEIR_AUTOSCALERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    autoscalers: Vec<String>,
    #[command(flatten)]
    limits: crate::server_limits::ServerLimitsArgs,
}

/// What the dashboard watches: the routers and autoscalers named, and the router token read
/// from its file now (a missing or empty file stops the start, naming the file).
fn serving(args: &RegistryArgs) -> anyhow::Result<Serving> {
    let given = |urls: &[String]| -> Vec<String> {
        urls.iter()
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .collect()
    };
    let router_token = args
        .router_token_file
        .as_deref()
        .map(AdminToken::from_file)
        .transpose()?;
    let serving = Serving::new(ServingConfig {
        routers: given(&args.routers),
        router_token,
        autoscalers: given(&args.autoscalers),
    })?;
    if serving.is_watching() {
        tracing::info!(
            routers = ?serving.router_urls(),
            autoscalers = args.autoscalers.len(),
            "the dashboard watches these routers"
        );
    }
    Ok(serving)
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
    let serving = Arc::new(serving(&args)?);
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
    let (app, _) =
        weir_mlflow_server::app_with_dashboard(&stores, authenticator, metrics, serving.clone());
    // Polls the watched routers and autoscalers for the serving pages until the server stops.
    let sampler = serving.start();
    server.serve(listener, app, shutdown_signal()).await;
    sampler.abort();
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

/// `--router`, `--router-token-file` and `--autoscaler` as `weir registry` reads them.
#[cfg(test)]
mod serving_flags {
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Registry {
        #[command(flatten)]
        args: super::RegistryArgs,
    }

    fn serving(flags: &[&str]) -> anyhow::Result<super::Serving> {
        let parsed =
            Registry::try_parse_from(std::iter::once("registry").chain(flags.iter().copied()))?;
        super::serving(&parsed.args)
    }

    #[test]
    fn routers_and_autoscalers_are_repeatable_or_comma_separated() {
        let watched = serving(&[
            "--router",
            "http://127.0.0.1:8001/",
            "--router",
            "http://10.0.0.2:8001,https://r.example",
            "--autoscaler",
            "http://127.0.0.1:9102",
        ])
        .unwrap();
        assert_eq!(
            watched.router_urls(),
            vec![
                "http://127.0.0.1:8001",
                "http://10.0.0.2:8001",
                "https://r.example"
            ]
        );
        assert!(watched.is_watching());
        assert!(!serving(&[]).unwrap().is_watching());
    }

    #[test]
    fn a_bad_url_or_token_file_stops_the_start_naming_it() {
        let bad = serving(&["--router", "127.0.0.1:8001"]).unwrap_err();
        assert!(bad.to_string().contains("'127.0.0.1:8001'"), "{bad}");
        let bad = serving(&["--autoscaler", "ftp://x"]).unwrap_err();
        assert!(bad.to_string().contains("'ftp://x'"), "{bad}");

        let folder =
            std::env::temp_dir().join(format!("weir-registry-flags-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let missing = folder.join("missing.token");
        let refused = serving(&["--router-token-file", missing.to_str().unwrap()]).unwrap_err();
        assert!(refused.to_string().contains("missing.token"), "{refused}");
        let empty = folder.join("empty.token");
        std::fs::write(&empty, " \n").unwrap();
        let refused = serving(&["--router-token-file", empty.to_str().unwrap()]).unwrap_err();
        assert!(refused.to_string().contains("empty"), "{refused}");
        let good = folder.join("good.token");
        std::fs::write(&good, "s3cret-router-token\n").unwrap();
        let watched = serving(&[
            "--router",
            "http://127.0.0.1:8001",
            "--router-token-file",
            good.to_str().unwrap(),
        ])
        .unwrap();
        assert!(!format!("{watched:?}").contains("s3cret-router-token"));
        let _ = std::fs::remove_dir_all(&folder);
    }
}
