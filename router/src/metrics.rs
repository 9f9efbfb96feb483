//! The router's Prometheus metrics, named as `DESIGN.md` fixes them. Labels only carry models
//! and versions from the routes file, never what a client sent.

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

pub struct RouterMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    weight: Family<VersionLabels, Gauge>,
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
        RouterMetrics {
            registry,
            requests,
            duration,
            weight,
        }
    }
}

impl RouterMetrics {
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
