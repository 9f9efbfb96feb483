//! Prometheus metrics of the runtime, under the names docs/serving.md lists (dashboards and
//! the autoscaler's queries depend on them).
//!
//! Labels only ever carry names of models the server has loaded: a request for an unknown model
//! is counted nowhere, so a client cannot grow the series set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds, from 50 µs (a tiny model's whole request) to 10 s.
const LATENCY_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub model: String,
    pub version: String,
}

/// Which wire a request came over. Both share the models, the queue and the batches; the
/// label tells their traffic and errors apart.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// `code` is the HTTP status for both protocols (a gRPC answer is counted under the HTTP status
/// its error has on the HTTP side: 200, 400, 404, 413, 503…), so one query covers both.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub version: String,
    pub code: u16,
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub model: String,
    pub version: String,
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub model: String,
    pub version: String,
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn batch_histogram() -> Histogram {
    Histogram::new(BATCH_BUCKETS)
}

/// Every runtime metric, registered once per server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<ProtocolLabels>,
    queue_duration: HistogramFamily<VersionLabels>,
    compute_duration: HistogramFamily<VersionLabels>,
    batch_size: HistogramFamily<VersionLabels>,
    inflight: Family<VersionLabels, Gauge>,
    queue_depth: Family<VersionLabels, Gauge>,
    rejected: Family<RejectionLabels, Counter>,
    /// Requests refused by the server-wide concurrency limit, before any model was chosen.
    pub shed: Counter,
    /// Requests whose handling panicked (answered 500 by the panic layer): always a bug.
    pub panics: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let queue_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let compute_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let batch_size =
            HistogramFamily::new_with_constructor(batch_histogram as fn() -> Histogram);
        let inflight = Family::<VersionLabels, Gauge>::default();
        let queue_depth = Family::<VersionLabels, Gauge>::default();
        let rejected = Family::<RejectionLabels, Counter>::default();
        let shed = Counter::default();
        let panics = Counter::default();
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "weir_inference_requests",
            "Inference requests answered, by protocol and HTTP status code (a gRPC error under its HTTP equivalent)",
            requests.clone(),
        );
        registry.register(
            "weir_inference_request_duration_seconds",
            "Time from a request's arrival to its answer, by protocol",
            request_duration.clone(),
        );
        registry.register(
            "weir_inference_queue_duration_seconds",
            "Time a request waited before its model started on it",
            queue_duration.clone(),
        );
        registry.register(
            "weir_inference_compute_duration_seconds",
            "Time the model spent computing a request's batch",
            compute_duration.clone(),
        );
        registry.register(
            "weir_inference_batch_size",
            "Rows per model execution",
            batch_size.clone(),
        );
        registry.register(
            "weir_inflight_requests",
            "Requests being answered now",
            inflight.clone(),
        );
        registry.register(
            "weir_queue_depth",
            "Requests waiting for their model",
            queue_depth.clone(),
        );
        registry.register(
            "weir_inference_rejected",
            "Requests a model version did not run: queue_full, queue_timeout, or cancelled (the client left)",
            rejected.clone(),
        );
        registry.register(
            "weir_inference_shed",
            "Requests refused at once because the server was at its concurrency limit",
            shed.clone(),
        );
        registry.register(
            "weir_panics",
            "Requests whose handling panicked and were answered 500 (each one is a bug to report)",
            panics.clone(),
        );
        weir_http::build_info::register_build_info(&mut registry);
        Metrics {
            registry,
            requests,
            request_duration,
            queue_duration,
            compute_duration,
            batch_size,
            inflight,
            queue_depth,
            rejected,
            shed,
            panics,
        }
    }

    /// Exports the listener's connection counts (`weir_http_*`, read at each scrape).
    pub fn with_listener(mut self, listener: &weir_http::server::Server) -> Metrics {
        listener.register_metrics(&mut self.registry);
        self
    }

    pub fn for_version(&self, model: &str, version: &str) -> VersionMetrics {
        let labels = VersionLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        let rejected = |reason| {
            self.rejected
                .get_or_create(&RejectionLabels {
                    model: model.to_owned(),
                    version: version.to_owned(),
                    reason,
                })
                .clone()
        };
        VersionMetrics {
            rejected_queue_full: rejected("queue_full"),
            rejected_queue_timeout: rejected("queue_timeout"),
            rejected_cancelled: rejected("cancelled"),
            http: ProtocolMetrics::new(
                &self.requests,
                &self.request_duration,
                &labels,
                Protocol::Http,
            ),
            grpc: std::sync::OnceLock::new(),
            requests: self.requests.clone(),
            request_duration: self.request_duration.clone(),
            queue_duration: self.queue_duration.get_or_create(&labels).clone(),
            compute_duration: self.compute_duration.get_or_create(&labels).clone(),
            batch_size: self.batch_size.get_or_create(&labels).clone(),
            inflight: self.inflight.get_or_create(&labels).clone(),
            queue_depth: self.queue_depth.get_or_create(&labels).clone(),
            labels,
        }
    }

    /// The text exposition (OpenMetrics) of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// One model version's metric handles.
#[derive(Clone)]
pub struct VersionMetrics {
    labels: VersionLabels,
    http: ProtocolMetrics,
    /// Made on the first gRPC request, so a server without `--grpc-port` exports no gRPC series.
    grpc: std::sync::OnceLock<ProtocolMetrics>,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<ProtocolLabels>,
    pub queue_duration: Histogram,
    pub compute_duration: Histogram,
    pub batch_size: Histogram,
    pub inflight: Gauge,
    pub queue_depth: Gauge,
    pub rejected_queue_full: Counter,
    pub rejected_queue_timeout: Counter,
    pub rejected_cancelled: Counter,
}

/// A version's per-protocol handles; the common codes are kept at hand so counting them
/// takes no lookup.
#[derive(Clone)]
struct ProtocolMetrics {
    ok: Counter,
    bad_request: Counter,
    request_duration: Histogram,
}

impl ProtocolMetrics {
    fn new(
        requests: &Family<RequestLabels, Counter>,
        request_duration: &HistogramFamily<ProtocolLabels>,
        labels: &VersionLabels,
        protocol: Protocol,
    ) -> ProtocolMetrics {
        let code = |code| {
            requests
                .get_or_create(&RequestLabels {
                    model: labels.model.clone(),
                    version: labels.version.clone(),
                    code,
                    protocol: protocol.as_str(),
                })
                .clone()
        };
        ProtocolMetrics {
            ok: code(200),
            bad_request: code(400),
            request_duration: request_duration
                .get_or_create(&ProtocolLabels {
                    model: labels.model.clone(),
                    version: labels.version.clone(),
                    protocol: protocol.as_str(),
                })
                .clone(),
        }
    }
}

impl VersionMetrics {
    fn of(&self, protocol: Protocol) -> &ProtocolMetrics {
        match protocol {
            Protocol::Http => &self.http,
            Protocol::Grpc => self.grpc.get_or_init(|| {
                ProtocolMetrics::new(
                    &self.requests,
                    &self.request_duration,
                    &self.labels,
                    Protocol::Grpc,
                )
            }),
        }
    }

    /// Counts an answered request by its protocol and (HTTP) status code.
    pub fn count(&self, protocol: Protocol, code: u16) {
        let handles = self.of(protocol);
        match code {
            200 => handles.ok.inc(),
            400 => handles.bad_request.inc(),
            other => self
                .requests
                .get_or_create(&RequestLabels {
                    model: self.labels.model.clone(),
                    version: self.labels.version.clone(),
                    code: other,
                    protocol: protocol.as_str(),
                })
                .inc(),
        };
    }

    /// Records a request's time from arrival to answer.
    pub fn observe_duration(&self, protocol: Protocol, seconds: f64) {
        self.of(protocol).request_duration.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_under_the_design_names() {
        let metrics = Metrics::new();
        let version = metrics.for_version("iris", "2");
        assert!(
            !metrics.encode().contains(r#"protocol="grpc""#),
            "no gRPC series before a gRPC request"
        );
        version.count(Protocol::Http, 200);
        version.count(Protocol::Http, 200);
        version.count(Protocol::Http, 503);
        version.count(Protocol::Grpc, 200);
        version.count(Protocol::Grpc, 404);
        version.observe_duration(Protocol::Grpc, 0.0001);
        version.inflight.inc();
        version.rejected_cancelled.inc();
        metrics.shed.inc();
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"weir_inference_rejected_total{model="iris",version="2",reason="cancelled"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("weir_inference_shed_total 1"), "{text}");
        let build = format!(
            "weir_build_info{{version=\"{}\",",
            weir_http::build_info::VERSION
        );
        assert!(text.contains(&build), "{build} missing: {text}");
        assert!(
            text.contains(
                r#"weir_inference_requests_total{model="iris",version="2",code="200",protocol="http"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_inference_requests_total{model="iris",version="2",code="503",protocol="http"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_inference_requests_total{model="iris",version="2",code="200",protocol="grpc"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_inference_requests_total{model="iris",version="2",code="404",protocol="grpc"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_inference_request_duration_seconds_count{model="iris",version="2",protocol="grpc"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_inference_request_duration_seconds_count{model="iris",version="2",protocol="http"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_inflight_requests{model="iris",version="2"} 1"#),
            "{text}"
        );
        for name in [
            "weir_inference_queue_duration_seconds",
            "weir_inference_compute_duration_seconds",
            "weir_inference_batch_size",
            "weir_queue_depth",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
