//! `weir autoscale`: the autoscaler, and `weir autoscale simulate` to try a policy on a trace.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use weir_autoscaler::config::AutoscalerFile;
use weir_autoscaler::simulate::{self, Trace};

#[derive(clap::Args)]
pub struct AutoscaleArgs {
    /// The autoscaler file (TOML: [[target]] with scaler, signal and policy).
    #[arg(long, env = "WEIR_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address for the autoscaler's own /metrics.
    #[arg(long, env = "WEIR_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port for /metrics; 0 picks a free one (printed).
    #[arg(long, env = "WEIR_HTTP_PORT", default_value_t = 9102)]
    http_port: u16,
    /// Decide and log, but write nothing to Kubernetes.
    #[arg(long, env = "WEIR_DRY_RUN")]
    dry_run: bool,
    /// Check the autoscaler file, print its targets, and exit.
    #[arg(long)]
    check: bool,
    /// Deadlines and caps of the /metrics listener.
    #[command(flatten)]
    limits: crate::server_limits::ServerLimitsArgs,
    #[command(subcommand)]
    command: Option<AutoscaleCommand>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SimulationOutput {
    Table,
    Csv,
}

#[derive(Subcommand)]
enum AutoscaleCommand {
    /// Replay a load trace through a target's policy on a simulated clock.
    Simulate {
        /// CSV with header `t_seconds,concurrency` or `t_seconds,rps`.
        #[arg(long)]
        trace: PathBuf,
        /// Which target's policy (default: the first).
        #[arg(long)]
        target: Option<String>,
        #[arg(long, value_enum, default_value_t = SimulationOutput::Table)]
        output: SimulationOutput,
        /// Also draw the decisions as an SVG chart.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Time between decisions (`2s`, `500ms`, or a number of seconds).
        #[arg(long, default_value = "2s", value_parser = weir_http::duration::parse_duration_arg)]
        tick: Duration,
        /// Time a new replica takes to become ready (`30s`, or a number of seconds).
        #[arg(long, default_value = "0s", value_parser = weir_http::duration::parse_duration_arg)]
        ready_delay: Duration,
    },
}

pub async fn run(args: AutoscaleArgs) -> anyhow::Result<()> {
    let config = args
        .config
        .context("--config is required (the autoscaler file)")?;
    let file = AutoscalerFile::load(&config)?;
    match args.command {
        Some(AutoscaleCommand::Simulate {
            trace,
            target,
            output,
            svg,
            tick,
            ready_delay,
        }) => {
            let chosen = match &target {
                Some(name) => file.target.iter().find(|t| &t.name == name),
                None => file.target.first(),
            }
            .with_context(|| match &target {
                Some(name) => format!("{} has no target named '{name}'", config.display()),
                None => format!("{} has no targets", config.display()),
            })?;
            let text = std::fs::read_to_string(&trace)
                .with_context(|| format!("cannot read {}", trace.display()))?;
            let trace = Trace::parse(&text)?;
            if trace.metric != chosen.policy.metric {
                anyhow::bail!(
                    "the trace measures {} but target '{}' scales on {}",
                    trace.metric,
                    chosen.name,
                    chosen.policy.metric
                );
            }
            anyhow::ensure!(!tick.is_zero(), "--tick must be above 0, got {tick:?}");
            let steps = simulate::simulate(
                &chosen.policy,
                &trace,
                tick.as_secs_f64(),
                ready_delay.as_secs_f64(),
            );
            match output {
                SimulationOutput::Table => print!("{}", simulate::table(&steps, &trace.metric)),
                SimulationOutput::Csv => print!("{}", simulate::csv(&steps)),
            }
            if let Some(path) = svg {
                std::fs::write(&path, simulate::svg(&steps, &trace.metric))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
        None if args.check => {
            for target in &file.target {
                let policy = &target.policy;
                println!(
                    "{}: {:?} on {:?}, {} target {} per replica, {}..{} replicas",
                    target.name,
                    target.scaler,
                    target.signal,
                    policy.metric,
                    policy.target,
                    policy.min_replicas,
                    policy.max_replicas
                );
            }
            Ok(())
        }
        None => {
            let weir =
                std::env::current_exe().context("cannot find the weir binary to start replicas")?;
            let metrics = Arc::new(weir_autoscaler::controller::AutoscalerMetrics::default());
            let bind = format!("{}:{}", args.host, args.http_port);
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .with_context(|| format!("cannot listen on {bind}"))?;
            crate::announce(format_args!(
                "weir autoscale listening on http://{}",
                listener.local_addr()?
            ));
            let served = metrics.clone();
            let app = axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(move || {
                        let metrics = served.clone();
                        async move { metrics.encode() }
                    }),
                )
                .layer(weir_http::panic::PanicLayer::default().layer());
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let server = args.limits.server();
            let mut listening = stopped.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = listening.wait_for(|stop| *stop).await;
                };
                server.serve(listener, app, stop).await;
            });
            let controller = tokio::spawn(weir_autoscaler::controller::run(
                file,
                weir,
                args.dry_run,
                metrics,
                stopped,
            ));
            crate::shutdown_signal().await;
            let _ = stop.send(true);
            controller
                .await
                .context("the autoscaler stopped abnormally")??;
            Ok(())
        }
    }
}
