//! The router's Prometheus metrics, named as docs/architecture.md fixes them. Labels only carry
//! models and versions from the routes file, never what a client sent.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::table::RouteTable;

const LATENCY_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub model: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub version: String,
    pub code: u16,
}

type HistogramFamily = Family<VersionLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A gRPC call's labels: its status by name (`OK`, `INTERNAL`, …), as gRPC tooling spells it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub model: String,
    pub version: String,
    pub grpc_code: String,
}

pub struct RouterMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    grpc_requests: Family<GrpcLabels, Counter>,
    duration: HistogramFamily,
    weight: Family<VersionLabels, Gauge>,
    shadow_in_flight: Gauge,
    shadow_dropped: Counter,
    /// Panics on either listener, answered 500 by the panic layer (weir_http::panic).
    pub panics: Counter,
}

/// A shadow copy's place among those in flight ([`RouterMetrics::start_shadow`]); dropping it
/// frees the place.
pub struct ShadowSlot {
    in_flight: Gauge,
}

impl Drop for ShadowSlot {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl Default for RouterMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let weight = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "weir_router_requests",
            "Requests the router forwarded, by version and HTTP status (0: no answer)",
            requests.clone(),
        );
        registry.register(
            "weir_router_request_duration_seconds",
            "Time from a request's arrival at the router to its answer",
            duration.clone(),
        );
        registry.register(
            "weir_route_weight",
            "Percent of a model's traffic sent to each version",
            weight.clone(),
        );
        let shadow_in_flight = Gauge::default();
        let shadow_dropped = Counter::default();
        registry.register(
            "weir_router_shadow_in_flight",
            "Shadow copies sent and not yet answered",
            shadow_in_flight.clone(),
        );
        registry.register(
            "weir_router_shadow_dropped",
            "Shadow copies not sent because max_shadow_in_flight were already in flight",
            shadow_dropped.clone(),
        );
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "weir_router_grpc_requests",
            "gRPC calls the router forwarded, by version and grpc-status name (also counted in weir_router_requests under the HTTP code of their status)",
            grpc_requests.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "weir_panics",
            "Panics on the request path, each answered 500 with a JSON body",
            panics.clone(),
        );
        weir_http::build_info::register_build_info(&mut registry);
        RouterMetrics {
            registry,
            requests,
            duration,
            weight,
            shadow_in_flight,
            shadow_dropped,
            panics,
            grpc_requests,
        }
    }
}

impl RouterMetrics {
    /// Exports the data listener's connection counts (`weir_http_*`, read at each scrape).
    pub fn with_listener(mut self, listener: &weir_http::server::Server) -> RouterMetrics {
        listener.register_metrics(&mut self.registry);
        self
    }

    pub fn observe(&self, model: &str, version: &str, code: u16, seconds: f64) {
        let labels = VersionLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        self.requests
            .get_or_create(&RequestLabels {
                model: labels.model.clone(),
                version: labels.version.clone(),
                code,
            })
            .inc();
        self.duration.get_or_create(&labels).observe(seconds);
    }

    /// A gRPC call: counted by its status name, and in `weir_router_requests` under the HTTP
    /// code its status stands for (`http_code`), so the rollout's Prometheus queries and any
    /// alert on 5xx judge both protocols alike.
    pub fn observe_grpc(
        &self,
        model: &str,
        version: &str,
        grpc_code: &str,
        http_code: u16,
        seconds: f64,
    ) {
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                model: model.to_owned(),
                version: version.to_owned(),
                grpc_code: grpc_code.to_owned(),
            })
            .inc();
        self.observe(model, version, http_code, seconds);
    }

    /// A place for one more shadow copy, or `None` (counted as dropped) when `cap` are already
    /// in flight. Never waits: a shadow copy is worth less than the primary request, and a slow
    /// shadow must not grow the router's tasks and memory without bound. The in-flight gauge is
    /// the count itself, so what is exported is exactly what is enforced.
    pub fn start_shadow(&self, cap: usize) -> Option<ShadowSlot> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let taken = self.shadow_in_flight.inner().fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |in_flight| (in_flight < cap).then_some(in_flight + 1),
        );
        if taken.is_err() {
            self.shadow_dropped.inc();
            return None;
        }
        Some(ShadowSlot {
            in_flight: self.shadow_in_flight.clone(),
        })
    }

    /// Shadow copies dropped so far.
    #[cfg(test)]
    pub fn shadow_dropped(&self) -> u64 {
        self.shadow_dropped.get()
    }

    pub fn set_weights(&self, table: &RouteTable) {
        for route in table.routes.values() {
            for backend in &route.backends {
                self.weight
                    .get_or_create(&VersionLabels {
                        model: route.model.clone(),
                        version: backend.version.clone(),
                    })
                    .set(i64::from(backend.weight));
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_exported() {
        let metrics = RouterMetrics::default();
        assert!(metrics.encode().contains("weir_panics_total 0"));
        metrics.panics.inc();
        assert!(metrics.encode().contains("weir_panics_total 1"));
    }

    #[test]
    fn build_info_is_exported() {
        let text = RouterMetrics::default().encode();
        let build = format!(
            "weir_build_info{{version=\"{}\",",
            weir_http::build_info::VERSION
        );
        assert!(text.contains(&build), "{build} missing: {text}");
    }

    #[test]
    fn shadow_copies_past_the_cap_are_dropped_and_counted() {
        let metrics = RouterMetrics::default();
        let first = metrics.start_shadow(2).unwrap();
        let _second = metrics.start_shadow(2).unwrap();
        assert!(
            metrics.start_shadow(2).is_none(),
            "a third fits under a cap of 2"
        );
        assert!(metrics.start_shadow(2).is_none());
        assert_eq!(metrics.shadow_dropped(), 2);
        let text = metrics.encode();
        assert!(
            text.contains("weir_router_shadow_dropped_total 2"),
            "{text}"
        );
        assert!(text.contains("weir_router_shadow_in_flight 2"), "{text}");
        drop(first);
        assert!(
            metrics.start_shadow(2).is_some(),
            "a finished copy frees its place"
        );
        assert_eq!(metrics.shadow_dropped(), 2);
        assert!(metrics.start_shadow(0).is_none(), "a cap of 0 sends none");
    }
}
