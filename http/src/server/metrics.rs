//! The listener's counts as Prometheus metrics (`weir_http_*`), read from the [`Server`] at
//! each scrape rather than copied into counters, so every server that registers them exports the
//! same names with the same meaning and no scrape can double-count.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Server;

/// What each counter means to an operator reading `/metrics`.
const COUNTERS: [(&str, &str); 5] = [
    (
        "weir_http_connections_refused",
        "Connections closed on arrival: over --max-connections or the peer's share",
    ),
    (
        "weir_http_header_timeouts",
        "Connections closed because their headers did not arrive within --header-timeout",
    ),
    (
        "weir_http_idle_closed",
        "Kept-alive connections closed after --idle-timeout without a request",
    ),
    (
        "weir_http_slow_bodies",
        "Request bodies cut off for arriving slower than --body-min-rate",
    ),
    (
        "weir_http_protocol_errors",
        "HTTP/2 (gRPC) connections ended with GOAWAY for breaking or abusing the protocol",
    ),
];

struct ListenerCollector {
    server: Server,
}

impl std::fmt::Debug for ListenerCollector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ListenerCollector")
    }
}

impl Collector for ListenerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.server.stats();
        let open = ConstGauge::new(i64::try_from(stats.open).unwrap_or(i64::MAX));
        open.encode(encoder.encode_descriptor(
            "weir_http_connections_open",
            "Connections open now",
            None,
            open.metric_type(),
        )?)?;
        let totals = [
            stats.refused,
            stats.header_timeouts,
            stats.idle_closed,
            stats.slow_bodies,
            stats.protocol_errors,
        ];
        for ((name, help), total) in COUNTERS.into_iter().zip(totals) {
            let counter = ConstCounter::new(total);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

impl Server {
    /// Exports this listener's counts (and those of every clone of it) in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(ListenerCollector {
            server: self.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerLimits;

    #[test]
    fn every_listener_metric_is_exported_with_its_current_value() {
        let server = Server::new(ServerLimits::default());
        let mut registry = Registry::default();
        server.register_metrics(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for line in [
            "weir_http_connections_open 0",
            "weir_http_connections_refused_total 0",
            "weir_http_header_timeouts_total 0",
            "weir_http_idle_closed_total 0",
            "weir_http_slow_bodies_total 0",
            "weir_http_protocol_errors_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
