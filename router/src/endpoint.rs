//! One replica of a version: its requests in flight, its health as the active checks see it,
//! and outlier ejection (a replica that keeps failing gets no traffic for a while).
//!
//! Ejection is decided on the caller's clock (`now`), so the rules can be tested on a
//! simulated one: the hot path passes `Instant::now()`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::EndpointConfig;

/// The longest an ejection lasts, however often the replica was ejected before.
pub const MAX_EJECTION: Duration = Duration::from_secs(60);

/// How long the ejection after `earlier` ejections lasts: `base × 2^earlier`, doubling up to
/// `base × 64`, and never over [`MAX_EJECTION`].
pub fn ejection_time(base: Duration, earlier: u32) -> Duration {
    base.saturating_mul(2u32.pow(earlier.min(6)))
        .min(MAX_EJECTION)
}

pub struct Endpoint {
    pub base: String,
    /// The port this replica serves gRPC on, when it has its own (`None`: `[settings]
    /// grpc_port`).
    pub grpc_port: Option<u16>,
    inflight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the replica is ejected (0: not ejected).
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
    /// The last active health check answered ready.
    healthy: AtomicBool,
    epoch: Instant,
}

impl Endpoint {
    pub fn new(base: &str) -> Arc<Endpoint> {
        Endpoint::with_grpc_port(base, None)
    }

    pub fn with_grpc_port(base: &str, grpc_port: Option<u16>) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            base: base.trim_end_matches('/').to_owned(),
            grpc_port,
            inflight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            epoch: Instant::now(),
        })
    }

    /// Whether `config` names this replica as it is (same URL, same gRPC port).
    pub fn is(&self, config: &EndpointConfig) -> bool {
        self.base == config.url.trim_end_matches('/') && self.grpc_port == config.grpc_port
    }

    fn ms_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Healthy and not ejected at `now`.
    pub fn available(&self, now: Instant) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= self.ms_at(now)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure at `now`; the `threshold`th in a row ejects the replica for
    /// [`ejection_time`]`(base, n)`, n being how often it was ejected before. Returning from an
    /// ejection, a replica is on probation: one more failure ejects it again, for longer.
    pub fn record_failure(&self, threshold: u32, base: Duration, now: Instant) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let on_probation = self.ejections.load(Ordering::Relaxed) > 0;
        if failures < threshold && !on_probation {
            return false;
        }
        let earlier = self.ejections.fetch_add(1, Ordering::Relaxed);
        let ejection = ejection_time(base, earlier);
        self.ejected_until_ms.store(
            self.ms_at(now) + ejection.as_millis() as u64,
            Ordering::Relaxed,
        );
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }

    /// A run of successes after a return forgives past ejections.
    pub fn forgive(&self, now: Instant) {
        if self.consecutive_failures.load(Ordering::Relaxed) == 0 && self.available(now) {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Marks a request as in flight on this replica until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn failures_eject_and_probation_reejects() {
        let endpoint = Endpoint::new("http://127.0.0.1:1");
        let now = Instant::now();
        let base = Duration::from_millis(0);
        assert!(!endpoint.record_failure(3, base, now));
        assert!(!endpoint.record_failure(3, base, now));
        assert!(endpoint.record_failure(3, base, now));
        // Back (the ejection was 0 ms), but one failure on probation ejects again.
        assert!(endpoint.record_failure(3, base, now));
        endpoint.record_success();
        endpoint.forgive(now);
        assert!(!endpoint.record_failure(3, Duration::from_secs(5), now));
    }

    #[test]
    fn an_unhealthy_replica_is_unavailable_whatever_the_clock() {
        let endpoint = Endpoint::new("http://127.0.0.1:1");
        endpoint.set_healthy(false);
        assert!(!endpoint.available(Instant::now() + Duration::from_secs(3600)));
    }

    proptest! {
        #[test]
        fn ejections_double_up_to_the_cap(base_ms in 0u64..100_000, earlier in 0u32..40) {
            let base = Duration::from_millis(base_ms);
            let time = ejection_time(base, earlier);
            prop_assert!(time <= MAX_EJECTION);
            prop_assert_eq!(time, (base * 2u32.pow(earlier.min(6))).min(MAX_EJECTION));
            let next = ejection_time(base, earlier + 1);
            prop_assert!(next >= time, "never shorter for a replica ejected more often");
            if earlier < 6 && time * 2 <= MAX_EJECTION {
                prop_assert_eq!(next, time * 2);
            }
        }

        /// On a simulated clock: `threshold` failures in a row eject for the base time; the
        /// replica is back exactly when it ends; each failure on probation ejects it again for
        /// twice as long (capped); a success while back forgives it.
        #[test]
        fn an_ejected_replica_returns_after_its_time(
            base_ms in 1u64..20_000, threshold in 1u32..6, probation_failures in 0u32..10
        ) {
            let endpoint = Endpoint::new("http://127.0.0.1:1");
            let base = Duration::from_millis(base_ms);
            let mut now = Instant::now();
            for _ in 1..threshold {
                prop_assert!(!endpoint.record_failure(threshold, base, now));
                prop_assert!(endpoint.available(now));
            }
            prop_assert!(endpoint.record_failure(threshold, base, now));
            let mut ejection = base;
            for earlier in 0..=probation_failures {
                prop_assert_eq!(ejection, ejection_time(base, earlier));
                prop_assert!(!endpoint.available(now));
                prop_assert!(!endpoint.available(now + ejection - Duration::from_millis(1)));
                now += ejection;
                prop_assert!(endpoint.available(now), "back after {:?}", ejection);
                if earlier < probation_failures {
                    // On probation: the first failure ejects again, for longer.
                    prop_assert!(endpoint.record_failure(threshold, base, now));
                    ejection = if earlier < 6 { ejection * 2 } else { ejection }.min(MAX_EJECTION);
                }
            }
            endpoint.record_success();
            endpoint.forgive(now);
            if threshold > 1 {
                prop_assert!(!endpoint.record_failure(threshold, base, now), "forgiven");
                prop_assert!(endpoint.available(now));
            }
        }
    }
}
