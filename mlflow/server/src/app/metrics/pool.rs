//! The database pool as gauges (`weir_db_pool_*`), read from the pool at each scrape: a pool
//! whose connections are all in use is what a slow registry under load most often is, and
//! this is where an operator sees it (and the number to raise: `--db-pool-size`).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// `(size, in_use)` of the pool, now.
type Stats = Arc<dyn Fn() -> (usize, usize) + Send + Sync>;

struct PoolCollector {
    stats: Stats,
}

impl std::fmt::Debug for PoolCollector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PoolCollector")
    }
}

fn gauge(value: usize) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (size, in_use) = (self.stats)();
        let mut family = encoder.encode_descriptor(
            "weir_db_pool_connections",
            "Database connection slots lent to a request now (in_use) and free (idle)",
            None,
            MetricType::Gauge,
        )?;
        for (state, value) in [("in_use", in_use), ("idle", size.saturating_sub(in_use))] {
            gauge(value).encode(family.encode_family(&[("state", state)])?)?;
        }
        let size = gauge(size);
        size.encode(encoder.encode_descriptor(
            "weir_db_pool_size",
            "Most database connections the registry opens (--db-pool-size; 1 for SQLite)",
            None,
            size.metric_type(),
        )?)
    }
}

/// Exports the pool `stats` describes in `registry`.
pub(super) fn register(
    registry: &mut Registry,
    stats: impl Fn() -> (usize, usize) + Send + Sync + 'static,
) {
    registry.register_collector(Box::new(PoolCollector {
        stats: Arc::new(stats),
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_pool_is_read_at_each_scrape() {
        let in_use = Arc::new(AtomicUsize::new(0));
        let read = in_use.clone();
        let mut registry = Registry::default();
        register(&mut registry, move || (4, read.load(Ordering::SeqCst)));
        let scrape = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        let first = scrape();
        assert!(
            first.contains("# TYPE weir_db_pool_connections gauge"),
            "{first}"
        );
        assert!(
            first.contains("weir_db_pool_connections{state=\"in_use\"} 0\n"),
            "{first}"
        );
        assert!(
            first.contains("weir_db_pool_connections{state=\"idle\"} 4\n"),
            "{first}"
        );
        assert!(first.contains("weir_db_pool_size 4\n"), "{first}");
        in_use.store(4, Ordering::SeqCst);
        let busy = scrape();
        assert!(
            busy.contains("weir_db_pool_connections{state=\"in_use\"} 4\n"),
            "{busy}"
        );
        assert!(
            busy.contains("weir_db_pool_connections{state=\"idle\"} 0\n"),
            "{busy}"
        );
        // A pool that reports more in use than its size (it never should) shows no negative.
        in_use.store(6, Ordering::SeqCst);
        assert!(scrape().contains("weir_db_pool_connections{state=\"idle\"} 0\n"));
    }
}
