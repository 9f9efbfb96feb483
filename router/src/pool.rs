//! The replicas of one version (or of the shadow), and the choice among them: power of two
//! choices on requests in flight, on the caller's RNG and clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::Rng;

use crate::config::EndpointConfig;
use crate::endpoint::Endpoint;

/// The list changes in place when an autoscaler adds or removes replicas, waking requests
/// held while there were none.
pub struct Pool {
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Requests waiting for a first replica (scale from zero).
    held: AtomicUsize,
    arrived: tokio::sync::Notify,
}

impl Pool {
    pub fn new(endpoints: &[EndpointConfig]) -> Arc<Pool> {
        Arc::new(Pool {
            endpoints: ArcSwap::from_pointee(
                endpoints
                    .iter()
                    .map(|e| Endpoint::with_grpc_port(&e.url, e.grpc_port))
                    .collect(),
            ),
            held: AtomicUsize::new(0),
            arrived: tokio::sync::Notify::new(),
        })
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Adds and removes replicas by URL; replicas that stay keep their state. Removed ones get
    /// no new requests; those in flight finish. A replica added again with another gRPC port
    /// (restarted on a new one) replaces the one known.
    pub fn change(&self, add: &[EndpointConfig], remove: &[String]) {
        let current = self.endpoints();
        let same_url = |e: &Endpoint, url: &str| e.base == url.trim_end_matches('/');
        let mut next: Vec<Arc<Endpoint>> = current
            .iter()
            .filter(|e| !remove.iter().any(|url| same_url(e, url)))
            .filter(|e| !add.iter().any(|a| same_url(e, &a.url) && !e.is(a)))
            .cloned()
            .collect();
        for added in add {
            if !next.iter().any(|e| same_url(e, &added.url)) {
                next.push(Endpoint::with_grpc_port(&added.url, added.grpc_port));
            }
        }
        self.endpoints.store(Arc::new(next));
        self.arrived.notify_waiters();
    }

    /// Waits up to `timeout` for a replica while there is none; false when the wait timed out
    /// or `max_held` requests are already waiting.
    pub async fn wait_for_replica(&self, timeout: Duration, max_held: usize) -> bool {
        if self.held.fetch_add(1, Ordering::Relaxed) >= max_held {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let arrived = loop {
            let notified = self.arrived.notified();
            if !self.endpoints().is_empty() {
                break true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break !self.endpoints().is_empty();
            }
        };
        self.held.fetch_sub(1, Ordering::Relaxed);
        arrived
    }

    /// Power of two choices on in-flight requests among the replicas available at `now` (all
    /// of them when none is: a guess beats a refusal), skipping `exclude`.
    pub fn pick(
        &self,
        exclude: Option<&Arc<Endpoint>>,
        rng: &mut impl Rng,
        now: Instant,
    ) -> Option<Arc<Endpoint>> {
        let allowed = |e: &&Arc<Endpoint>| exclude.is_none_or(|x| !Arc::ptr_eq(x, e));
        let endpoints = self.endpoints();
        let mut candidates: Vec<&Arc<Endpoint>> = endpoints
            .iter()
            .filter(|e| e.available(now))
            .filter(allowed)
            .collect();
        if candidates.is_empty() {
            candidates = endpoints.iter().filter(allowed).collect();
        }
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (candidates[a], candidates[b]);
                Some(if b.inflight() < a.inflight() { b } else { a }.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::endpoint::InFlight;

    #[test]
    fn two_choices_prefer_the_idle_replica() {
        let mut rng = StdRng::seed_from_u64(7);
        let now = Instant::now();
        let pool = Pool::new(&["http://a:1".into(), "http://b:1".into()]);
        let endpoints = pool.endpoints();
        let _busy = endpoints[0].start();
        assert!((0..50).all(|_| pool.pick(None, &mut rng, now).unwrap().base == "http://b:1"));
        assert_eq!(
            pool.pick(Some(&endpoints[1]), &mut rng, now).unwrap().base,
            "http://a:1"
        );
        endpoints[1].set_healthy(false);
        assert_eq!(pool.pick(None, &mut rng, now).unwrap().base, "http://a:1");
    }

    #[test]
    fn an_ejected_replica_gets_traffic_again_once_its_time_is_up() {
        let mut rng = StdRng::seed_from_u64(1);
        let pool = Pool::new(&["http://a:1".into(), "http://b:1".into()]);
        let endpoints = pool.endpoints();
        let now = Instant::now();
        assert!(endpoints[0].record_failure(1, Duration::from_secs(10), now));
        let during = now + Duration::from_secs(9);
        assert!((0..50).all(|_| pool.pick(None, &mut rng, during).unwrap().base == "http://b:1"));
        let after = now + Duration::from_secs(10);
        let picked: std::collections::HashSet<String> = (0..50)
            .map(|_| pool.pick(None, &mut rng, after).unwrap().base.clone())
            .collect();
        assert_eq!(picked.len(), 2, "{picked:?}");
        // None available: a guess beats a refusal.
        endpoints[1].set_healthy(false);
        assert!(endpoints[0].record_failure(1, Duration::from_secs(10), after));
        assert!(pool.pick(None, &mut rng, after).is_some());
    }

    #[test]
    fn a_replica_added_again_keeps_its_state_unless_its_grpc_port_changed() {
        let with_port = |port| EndpointConfig {
            url: "http://a:1".to_owned(),
            grpc_port: port,
        };
        let pool = Pool::new(&[with_port(Some(9001)), "http://b:1".into()]);
        let first = pool.endpoints()[0].clone();
        pool.change(&[with_port(Some(9001))], &[]);
        assert!(
            Arc::ptr_eq(&pool.endpoints()[0], &first),
            "the same replica"
        );
        pool.change(&[with_port(Some(9002))], &[]);
        let ports: Vec<(String, Option<u16>)> = pool
            .endpoints()
            .iter()
            .map(|e| (e.base.clone(), e.grpc_port))
            .collect();
        assert_eq!(
            ports,
            [
                ("http://b:1".to_owned(), None),
                ("http://a:1".to_owned(), Some(9002))
            ],
            "restarted on another gRPC port: replaced, not duplicated"
        );
        pool.change(&[], &["http://a:1/".to_owned()]);
        assert_eq!(pool.endpoints().len(), 1, "removed by its URL alone");
    }

    proptest! {
        /// Whatever the loads and the seed: a replica is picked whenever one is allowed, never
        /// the excluded one, an available one whenever there is one, never the one strictly
        /// busiest of two or more; and the same seed picks the same.
        #[test]
        fn picks_follow_the_rules(
            loads in proptest::collection::vec((0usize..5, any::<bool>()), 1..8),
            exclude in proptest::option::of(0usize..8),
            seed in any::<u64>(),
        ) {
            let urls: Vec<EndpointConfig> =
                (0..loads.len()).map(|i| format!("http://r{i}:1").as_str().into()).collect();
            let pool = Pool::new(&urls);
            let endpoints = pool.endpoints();
            let mut guards: Vec<InFlight> = Vec::new();
            for (endpoint, (load, healthy)) in endpoints.iter().zip(&loads) {
                endpoint.set_healthy(*healthy);
                guards.extend((0..*load).map(|_| endpoint.start()));
            }
            let excluded = exclude.and_then(|i| endpoints.get(i));
            let allowed: Vec<&Arc<Endpoint>> = endpoints
                .iter()
                .filter(|e| excluded.is_none_or(|x| !Arc::ptr_eq(x, e)))
                .collect();
            let now = Instant::now();
            let live: Vec<&&Arc<Endpoint>> = allowed.iter().filter(|e| e.available(now)).collect();
            let field: Vec<&Arc<Endpoint>> = if live.is_empty() {
                allowed.clone()
            } else {
                live.into_iter().copied().collect()
            };
            let busiest = field.iter().map(|e| e.inflight()).max();
            let unique_busiest = field.iter().filter(|e| Some(e.inflight()) == busiest).count() == 1;
            let mut rng = StdRng::seed_from_u64(seed);
            let mut again = StdRng::seed_from_u64(seed);
            for _ in 0..20 {
                let picked = pool.pick(excluded, &mut rng, now);
                let repeat = pool.pick(excluded, &mut again, now);
                prop_assert_eq!(
                    picked.as_ref().map(|e| e.base.clone()),
                    repeat.map(|e| e.base.clone())
                );
                match picked {
                    None => prop_assert!(allowed.is_empty()),
                    Some(picked) => {
                        prop_assert!(field.iter().any(|e| Arc::ptr_eq(e, &picked)));
                        if field.len() >= 2 && unique_busiest {
                            prop_assert!(Some(picked.inflight()) != busiest);
                        }
                    }
                }
            }
            drop(guards);
        }
    }
}
