//! The live loop: read each target's signal every `sample`, decide every `tick`, resize.
//!
//! Each target runs on its own task with its own policy, so a canary is scaled on its own
//! load and never averaged with the stable version's. While a version has no replica the loop
//! looks for requests the router holds every 100 ms and decides at once (what Knative's
//! activator does), so a cold start does not wait for the next tick.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::Value;
use weir_http::router_client::AdminClient;

use crate::config::{AutoscalerFile, Scaler, Settings, Signal, Target};
use crate::kubernetes::{KubernetesError, KubernetesScaler};
use crate::local::LocalScaler;
use crate::policy::{Decision, Policy};
use crate::signal;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    target: String,
    direction: &'static str,
}

/// `weir_autoscaler_*`, named as docs/architecture.md fixes them, plus the observed load and
/// cold starts.
pub struct AutoscalerMetrics {
    registry: Registry,
    desired: Family<TargetLabels, Gauge>,
    panic: Family<TargetLabels, Gauge>,
    observed: Family<TargetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    events: Family<EventLabels, Counter>,
    cold_start: Family<TargetLabels, Histogram, fn() -> Histogram>,
}

impl Default for AutoscalerMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let desired = Family::<TargetLabels, Gauge>::default();
        let panic = Family::<TargetLabels, Gauge>::default();
        let observed = Family::<TargetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let events = Family::<EventLabels, Counter>::default();
        let cold_start =
            Family::<TargetLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
            });
        registry.register(
            "weir_autoscaler_desired_replicas",
            "Replicas the policy asks for",
            desired.clone(),
        );
        registry.register(
            "weir_autoscaler_panic",
            "1 while the policy is in panic mode",
            panic.clone(),
        );
        registry.register(
            "weir_autoscaler_observed",
            "The load the policy last saw (total over replicas)",
            observed.clone(),
        );
        registry.register(
            "weir_autoscaler_scale_events",
            "Resizes, by direction",
            events.clone(),
        );
        registry.register(
            "weir_autoscaler_cold_start_seconds",
            "From deciding to leave zero replicas to the first replica serving",
            cold_start.clone(),
        );
        weir_http::build_info::register_build_info(&mut registry);
        AutoscalerMetrics {
            registry,
            desired,
            panic,
            observed,
            events,
            cold_start,
        }
    }
}

impl AutoscalerMetrics {
    /// Exports a decision and logs it when it changes the count; whether it does.
    fn record(&self, target: &str, decision: &Decision, current: u32) -> bool {
        let labels = TargetLabels {
            target: target.to_owned(),
        };
        self.desired
            .get_or_create(&labels)
            .set(i64::from(decision.desired));
        self.panic
            .get_or_create(&labels)
            .set(i64::from(decision.panic));
        if decision.desired == current {
            return false;
        }
        tracing::info!(
            target,
            from = current,
            to = decision.desired,
            panic = decision.panic,
            stable_average = decision.stable_average,
            panic_average = decision.panic_average,
            reason = decision.reason,
            "scaling"
        );
        let direction = if decision.desired > current {
            "up"
        } else {
            "down"
        };
        self.events
            .get_or_create(&EventLabels {
                target: target.to_owned(),
                direction,
            })
            .inc();
        true
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Kubernetes(#[from] KubernetesError),
}

/// Runs every target until `stop` turns true, then takes local replicas down cleanly.
/// `dry_run` logs Kubernetes decisions without writing them.
pub async fn run(
    file: AutoscalerFile,
    weir: PathBuf,
    dry_run: bool,
    metrics: Arc<AutoscalerMetrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    let needs_cluster = file
        .target
        .iter()
        .any(|t| matches!(t.scaler, Scaler::Kubernetes { .. }));
    let client = if needs_cluster {
        Some(KubernetesScaler::client().await?)
    } else {
        None
    };
    let mut tasks = tokio::task::JoinSet::new();
    for target in file.target {
        let (metrics, stop, settings) = (metrics.clone(), stop.clone(), file.settings.clone());
        match (&target.scaler, &client) {
            (
                Scaler::Kubernetes {
                    namespace,
                    deployment,
                    ..
                },
                Some(client),
            ) => {
                let scaler = KubernetesScaler::new(client.clone(), namespace, deployment, dry_run);
                tasks.spawn(async move {
                    run_kubernetes_target(target, settings, scaler, metrics, stop).await
                });
            }
            _ => {
                let weir = weir.clone();
                tasks.spawn(async move { run_target(target, settings, weir, metrics, stop).await });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// A Deployment: sample the Prometheus signal, decide on the ready pods, write the scale.
async fn run_kubernetes_target(
    target: Target,
    settings: Settings,
    scaler: KubernetesScaler,
    metrics: Arc<AutoscalerMetrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let port = match &target.scaler {
        Scaler::Kubernetes { port, .. } => *port,
        Scaler::Local { .. } => return,
    };
    let labels = TargetLabels {
        target: target.name.clone(),
    };
    let mut policy = Policy::new(target.policy.clone());
    let started = Instant::now();
    let (sample, tick) = (settings.sample, settings.tick);
    let mut next_tick = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(sample) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let elapsed = started.elapsed();
        let now = elapsed.as_secs_f64();
        let sample = match &target.signal {
            Signal::Prometheus { url, query } => weir_http::prometheus::query(url, query)
                .await
                .map_err(|e| e.to_string())
                .and_then(|v| v.ok_or_else(|| format!("the query returned no data: {query}"))),
            Signal::Scrape => match scaler.ready_pod_urls(port).await {
                Ok(urls) => signal::scrape(&urls, None).await,
                Err(err) => Err(err.to_string()),
            },
        };
        match sample {
            Ok(value) => {
                policy.observe(now, value);
                metrics.observed.get_or_create(&labels).set(value);
            }
            Err(reason) => tracing::warn!(target = %target.name, %reason, "no sample; holding"),
        }
        if elapsed < next_tick {
            continue;
        }
        next_tick = elapsed + tick;
        let observed = match scaler.observe().await {
            Ok(observed) => observed,
            Err(err) => {
                tracing::error!(target = %target.name, error = %err, "cannot read the deployment");
                continue;
            }
        };
        let decision = policy.decide(now, observed.ready);
        if !metrics.record(&target.name, &decision, observed.replicas) {
            continue;
        }
        match scaler.scale_to(decision.desired).await {
            Ok(_) => {}
            Err(err) => tracing::error!(target = %target.name, error = %err, "resize failed"),
        }
    }
}

async fn run_target(
    target: Target,
    settings: Settings,
    weir: PathBuf,
    metrics: Arc<AutoscalerMetrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Scaler::Local {
        model,
        version,
        repository,
        router,
        args,
        fresh_repository,
        grpc,
        ..
    } = &target.scaler
    else {
        return;
    };
    // Checked when the file was loaded; read again here in case the file changed since.
    let router_token = match target.router_token() {
        Ok(token) => token,
        Err(err) => {
            tracing::error!(target = %target.name, error = %err, "cannot scale this target");
            return;
        }
    };
    let labels = TargetLabels {
        target: target.name.clone(),
    };
    let mut scaler = LocalScaler::new(
        model,
        version,
        weir,
        repository.clone(),
        args.clone(),
        (router, router_token.clone()),
    )
    .with_fresh_repositories(*fresh_repository)
    .with_grpc(*grpc);
    let router = AdminClient::new(router, router_token);
    let mut policy = Policy::new(target.policy.clone());
    let minimum = target.policy.min_replicas as usize;
    if let Err(err) = scaler.scale_to(minimum).await {
        tracing::error!(target = %target.name, error = %err, "cannot start the minimum replicas");
    }
    let started = Instant::now();
    let (sample, tick) = (settings.sample, settings.tick);
    let mut next_tick = Duration::ZERO;
    let mut next_sample = Duration::ZERO;
    let mut ticks: u64 = 0;
    loop {
        let at_zero = scaler.replicas.is_empty();
        let pause = if at_zero {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(50)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let elapsed = started.elapsed();
        let held = if at_zero {
            held(&router, model, version).await.unwrap_or(0.0)
        } else {
            0.0
        };
        let cold = at_zero && held > 0.0;
        if elapsed < next_sample && !cold {
            continue;
        }
        next_sample = elapsed + sample;
        let now = elapsed.as_secs_f64();
        match observe(&target.signal, &scaler, &router, model, version).await {
            Ok(value) => {
                policy.observe(now, value);
                metrics.observed.get_or_create(&labels).set(value);
            }
            Err(reason) => {
                tracing::warn!(target = %target.name, %reason, "no sample this time; holding")
            }
        }
        if elapsed < next_tick && !cold {
            continue;
        }
        next_tick = elapsed + tick;
        ticks += 1;
        let ready = scaler.replicas.len() as u32;
        let decision = policy.decide(now, ready);
        if !metrics.record(&target.name, &decision, ready) {
            if ticks.is_multiple_of(10) {
                let _ = scaler.announce().await;
            }
            continue;
        }
        let resize_started = Instant::now();
        match scaler.scale_to(decision.desired as usize).await {
            Ok(()) if ready == 0 => metrics
                .cold_start
                .get_or_create(&labels)
                .observe(resize_started.elapsed().as_secs_f64()),
            Ok(()) => {}
            Err(err) => tracing::error!(target = %target.name, error = %err, "resize failed"),
        }
    }
    scaler.shutdown().await;
}

/// Requests the router holds for this version while it has no replica.
async fn held(router: &AdminClient, model: &str, version: &str) -> Result<f64, String> {
    let status: Value = router
        .call("GET", &format!("routes/{model}"), None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(status["backends"]
        .as_array()
        .and_then(|backends| backends.iter().find(|b| b["version"] == version))
        .and_then(|b| b["held"].as_f64())
        .unwrap_or(0.0))
}

async fn observe(
    signal: &Signal,
    scaler: &LocalScaler,
    router: &AdminClient,
    model: &str,
    version: &str,
) -> Result<f64, String> {
    match signal {
        Signal::Scrape => {
            let urls: Vec<String> = scaler.replicas.iter().map(|r| r.url.clone()).collect();
            let running = signal::scrape(&urls, Some((model, version))).await?;
            Ok(running + held(router, model, version).await?)
        }
        Signal::Prometheus { url, query } => Ok(weir_http::prometheus::query(url, query)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the query returned no data: {query}"))?),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_info_is_exported() {
        let text = super::AutoscalerMetrics::default().encode();
        let build = format!(
            "weir_build_info{{version=\"{}\",",
            weir_http::build_info::VERSION
        );
        assert!(text.contains(&build), "{build} missing: {text}");
    }
}
