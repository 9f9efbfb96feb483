//! The registry's Prometheus metrics (`GET /metrics`, the `reader` role when identities are
//! configured), named as docs/metrics.md lists them: requests by endpoint, method and code,
//! their latency, the time spent in store calls, artifact bytes in and out, the database pool,
//! the listener's connection counts and `weir_build_info`.
//!
//! Labels carry only route templates from the server's endpoint table, standard method names
//! and status codes, never a raw path: no client can grow the series set.

mod endpoints;
mod layer;
mod pool;

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use weir_mlflow_wire::{Access, Endpoint, Role, Routes};

pub(super) use layer::layer;

/// The exposition format's content type, as the runtime and router answer /metrics.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds, from a cached read (half a millisecond) to a large artifact's upload (a minute).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    method: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every registry metric. Build it, add the listener and the pool with [`with_listener`] and
/// [`with_pool`], then hand it to `app_with_metrics`, which serves and records it.
///
/// [`with_listener`]: RegistryMetrics::with_listener
/// [`with_pool`]: RegistryMetrics::with_pool
pub struct RegistryMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily,
    store_duration: HistogramFamily,
    artifact_in: Counter,
    artifact_out: Counter,
    panics: Counter,
}

impl Default for RegistryMetrics {
    fn default() -> Self {
        RegistryMetrics::new()
    }
}

impl std::fmt::Debug for RegistryMetrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RegistryMetrics")
    }
}

impl RegistryMetrics {
    pub fn new() -> RegistryMetrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let store_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let artifact_bytes = Family::<DirectionLabels, Counter>::default();
        // Both directions exist from the start: a dashboard's rate() needs a zero to begin from.
        let artifact_in = artifact_bytes
            .get_or_create(&DirectionLabels { direction: "in" })
            .clone();
        let artifact_out = artifact_bytes
            .get_or_create(&DirectionLabels { direction: "out" })
            .clone();
        let panics = Counter::default();
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "weir_registry_requests",
            "Requests answered, by route template (endpoint), method and HTTP status code",
            requests.clone(),
        );
        registry.register(
            "weir_registry_request_duration_seconds",
            "Time from a request's arrival to its response headers, by route template",
            request_duration.clone(),
        );
        registry.register(
            "weir_registry_store_duration_seconds",
            "Time each database or artifact-store call took, by the route template it served",
            store_duration.clone(),
        );
        registry.register(
            "weir_registry_artifact_bytes",
            "Artifact bytes received in uploads (in) and sent in successful downloads (out)",
            artifact_bytes,
        );
        registry.register(
            "weir_panics",
            "Requests whose handling panicked and were answered 500 (each one is a bug to report)",
            panics.clone(),
        );
        weir_http::build_info::register_build_info(&mut registry);
        RegistryMetrics {
            registry,
            requests,
            request_duration,
            store_duration,
            artifact_in,
            artifact_out,
            panics,
        }
    }
}

// `weir registry` calls these once the crate root re-exports `RegistryMetrics` and
// `app_with_metrics` (until then nothing outside the tests reaches them).
impl RegistryMetrics {
    /// Exports the listener's connection counts (`weir_http_*`, read at each scrape).
    pub fn with_listener(mut self, listener: &weir_http::server::Server) -> RegistryMetrics {
        listener.register_metrics(&mut self.registry);
        self
    }

    /// Exports the database pool (`weir_db_pool_*`), read at each scrape from `stats`, which
    /// answers `(size, in_use)`: `weir_sql::Database::pool_stats`'s two numbers.
    pub fn with_pool(
        mut self,
        stats: impl Fn() -> (usize, usize) + Send + Sync + 'static,
    ) -> RegistryMetrics {
        pool::register(&mut self.registry, stats);
        self
    }
}

impl RegistryMetrics {
    /// Counts panics on the request path (handed to the panic layer).
    pub(super) fn panics(&self) -> &Counter {
        &self.panics
    }

    /// The text exposition (OpenMetrics) of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// `GET /metrics`, needing the reader role like every other read of the registry.
pub(super) fn routes(metrics: Arc<RegistryMetrics>) -> (Router, Vec<Endpoint>) {
    Routes::new()
        .get("/metrics", Access::Needs(Role::Reader), move || {
            let metrics = metrics.clone();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()).into_response() }
        })
        .into_parts()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_pool_and_build_info_are_exported_when_added() {
        let bare = RegistryMetrics::new().encode();
        assert!(bare.contains("weir_build_info{version=\""), "{bare}");
        assert!(bare.contains("weir_panics_total 0"), "{bare}");
        assert!(
            bare.contains(r#"weir_registry_artifact_bytes_total{direction="in"} 0"#),
            "{bare}"
        );
        assert!(!bare.contains("weir_db_pool"), "no pool was added: {bare}");
        assert!(!bare.contains("weir_http_connections_open"), "{bare}");

        let listener = weir_http::server::Server::new(Default::default());
        let text = RegistryMetrics::new()
            .with_listener(&listener)
            .with_pool(|| (8, 3))
            .encode();
        for line in [
            "weir_http_connections_open 0",
            "weir_http_connections_refused_total 0",
            r#"weir_db_pool_connections{state="in_use"} 3"#,
            r#"weir_db_pool_connections{state="idle"} 5"#,
            "weir_db_pool_size 8",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing: {text}");
        }
    }
}
